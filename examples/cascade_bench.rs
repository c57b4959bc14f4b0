//! What a cascade saves: a question set answered by a small model alone, a
//! large one alone, and a [`Cascade`] that asks the small one first and
//! the large one only when the small reply fails its checks.
//!
//! ```sh
//! cargo run --release --example cascade_bench -- [--questions 1000] [--seed 7] [--floor 0.6]
//! ```
//!
//! The two models are mocks of known accuracy and price, so the figures
//! measure the cascade, not a model. Each question has a difficulty; the
//! small model is right below 0.75, the large one below 0.95 (so they
//! mostly fail on the same hard questions, as real models do). A wrong
//! small reply shows it the ways real ones do — prose instead of the JSON
//! asked for, a value of the wrong type, a right-looking number written
//! with low token probabilities — except for a few confident wrong
//! answers no check can catch; and a few right replies come with low
//! probabilities too (false alarms, which cost a large call). The checks
//! are the library's own: [`MatchesSchema`] and [`Confident`]. Prices are
//! gpt-4o-mini's and gpt-4o's list prices per million tokens.
//!
//! The last line of output is a JSON object with `small`, `large` and
//! `cascade`, each `{"accuracy": .., "cost": ..}`; the exit status is 1 if
//! the cascade is more than one point less accurate than the large model
//! or costs more than 40% of it.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use statewise::layer::{Cascade, Confident, MatchesSchema, ModelExt, Tier};
use statewise::model::{
    request_tokens, ChatModel, ChatRequest, Estimate, FnModel, ModelError, Price, Reply,
    SharedModel, Verdict,
};
use statewise::{Message, Usage};

/// The per-million prices: gpt-4o-mini's and gpt-4o's.
const SMALL_PRICE: (f64, f64) = (0.15, 0.60);
const LARGE_PRICE: (f64, f64) = (2.50, 10.00);
/// Difficulty below which each model is right.
const SMALL_SKILL: f64 = 0.75;
const LARGE_SKILL: f64 = 0.95;

/// A deterministic draw in [0, 1) for `text` and `salt` (splitmix64).
fn draw(text: &str, salt: u64) -> f64 {
    let fnv = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut x = fnv ^ salt.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
    }
    (x >> 11) as f64 / (1u64 << 53) as f64
}

struct Question {
    text: String,
    answer: i64,
}

fn questions(n: usize, seed: u64) -> Vec<Question> {
    (0..n)
        .map(|i| {
            let key = format!("{seed}/{i}");
            let a = (draw(&key, 1) * 900.0) as i64 + 10;
            let b = (draw(&key, 2) * 90.0) as i64 + 2;
            let (text, answer) = match i % 3 {
                0 => (format!("What is {a} + {b}?"), a + b),
                1 => (format!("What is {a} - {b}?"), a - b),
                _ => (format!("What is {a} times {b}?"), a * b),
            };
            Question { text, answer }
        })
        .collect()
}

/// The question a request asks, and its right answer.
fn asked(request: &ChatRequest) -> Option<(String, i64)> {
    let text = request.messages.last()?.content.clone();
    let words: Vec<&str> = text.trim_end_matches('?').split_whitespace().collect();
    let [_, _, a, op, b] = words[..] else {
        return None;
    };
    let (a, b): (i64, i64) = (a.parse().ok()?, b.parse().ok()?);
    let answer = match op {
        "+" => a + b,
        "-" => a - b,
        _ => a * b,
    };
    Some((text, answer))
}

/// A reply of `text` whose tokens have probability about `confidence`.
fn reply(request: &ChatRequest, text: String, confidence: f64, jitter: f64) -> Reply {
    let tokens = text.len().div_ceil(4).max(1);
    let lp = confidence.ln() as f32;
    let mut r = Reply::text(text).with_usage(Usage {
        prompt_tokens: request_tokens(request, &Estimate) as u64,
        completion_tokens: tokens as u64,
        ..Usage::default()
    });
    // Token probabilities vary around the reply's level; their mean stays.
    let swing = (jitter - 0.5) as f32 * 0.2;
    r.logprobs = (0..tokens)
        .map(|i| if i % 2 == 0 { lp + swing } else { lp - swing })
        .collect();
    r
}

/// A mock model right on questions easier than `skill`. `small` says
/// whether its wrong replies show the small model's tells.
fn mock(name: &str, skill: f64, small: bool) -> FnModel {
    let salt = if small { 10 } else { 20 };
    FnModel::new(name, move |request: &ChatRequest| {
        let Some((text, truth)) = asked(request) else {
            return Err(ModelError::Request {
                provider: "mock".into(),
                message: "not a bench question".into(),
            });
        };
        let difficulty = draw(&text, 0);
        let (how, level, jitter) = (
            draw(&text, salt),
            draw(&text, salt + 1),
            draw(&text, salt + 2),
        );
        let off = 1 + (draw(&text, salt + 3) * 9.0) as i64;
        if difficulty < skill {
            // Right; now and then written with low probabilities.
            let confidence = match small && how < 0.05 {
                true => 0.30 + 0.28 * level,
                false => 0.75 + 0.24 * level,
            };
            let body = json!({"answer": truth}).to_string();
            return Ok(reply(request, body, confidence, jitter));
        }
        let wrong = truth + off;
        Ok(match (small, how) {
            (true, h) if h < 0.35 => reply(
                request,
                format!("I believe the answer is close to {wrong}."),
                0.6 + 0.3 * level,
                jitter,
            ),
            (true, h) if h < 0.55 => reply(
                request,
                json!({"answer": format!("about {wrong}")}).to_string(),
                0.6 + 0.3 * level,
                jitter,
            ),
            (true, h) if h < 0.985 => reply(
                request,
                json!({"answer": wrong}).to_string(),
                0.20 + 0.35 * level,
                jitter,
            ),
            // Confidently wrong: no check catches these.
            _ => reply(
                request,
                json!({"answer": wrong}).to_string(),
                0.70 + 0.25 * level,
                jitter,
            ),
        })
    })
}

fn request(question: &Question) -> ChatRequest {
    ChatRequest {
        response_schema: Some(json!({
            "type": "object",
            "properties": {"answer": {"type": "integer"}},
            "required": ["answer"]
        })),
        ..ChatRequest::new(vec![
            Message::system(
                "Answer the arithmetic question. Reply with JSON: {\"answer\": <integer>}.",
            ),
            Message::user(question.text.clone()),
        ])
    }
}

fn right(reply: &Reply, truth: i64) -> bool {
    statewise::action::repair(&reply.text)
        .ok()
        .and_then(|v| v.get("answer").and_then(Value::as_i64))
        == Some(truth)
}

#[derive(Default)]
struct Tally {
    right: usize,
    asked: usize,
    usage: Usage,
    escalated: usize,
    reasons: BTreeMap<String, usize>,
    by_tier: BTreeMap<String, f64>,
}

impl Tally {
    fn accuracy(&self) -> f64 {
        self.right as f64 / self.asked.max(1) as f64
    }
}

async fn score(model: &SharedModel, set: &[Question]) -> Result<Tally, ModelError> {
    let mut tally = Tally::default();
    for q in set {
        let reply = model.complete(request(q)).await?;
        tally.asked += 1;
        tally.right += usize::from(right(&reply, q.answer));
        tally.usage.add(&reply.usage);
        if reply.route.iter().any(|s| s.verdict == Verdict::Rejected) {
            tally.escalated += 1;
        }
        for step in &reply.route {
            *tally.by_tier.entry(step.tier.clone()).or_default() += step.usage.cost;
            if step.verdict == Verdict::Rejected {
                let check = step.reason.split(':').next().unwrap_or_default().to_owned();
                *tally.reasons.entry(check).or_default() += 1;
            }
        }
    }
    Ok(tally)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = arg("--questions").map_or(Ok(1000), |v| v.parse())?;
    let seed: u64 = arg("--seed").map_or(Ok(7), |v| v.parse())?;
    let floor: f64 = arg("--floor").map_or(Ok(0.6), |v| v.parse())?;
    let set = questions(n, seed);
    let small_price = Price::per_million(SMALL_PRICE.0, SMALL_PRICE.1);
    let large_price = Price::per_million(LARGE_PRICE.0, LARGE_PRICE.1);

    let small: SharedModel = mock("small", SMALL_SKILL, true)
        .priced(small_price)
        .shared();
    let large: SharedModel = mock("large", LARGE_SKILL, false)
        .priced(large_price)
        .shared();
    let cascade: SharedModel = Cascade::new(vec![
        Tier::new("small", mock("small", SMALL_SKILL, true)).price(small_price),
        Tier::new("large", mock("large", LARGE_SKILL, false)).price(large_price),
    ])?
    .check(MatchesSchema)
    .check(Confident::above(floor))
    .shared();

    let small = score(&small, &set).await?;
    let large = score(&large, &set).await?;
    let cascade = score(&cascade, &set).await?;

    println!(
        "cascade bench: {n} questions (seed {seed}); small model right below difficulty {SMALL_SKILL} at ${}/${} per M tokens, large below {LARGE_SKILL} at ${}/${}",
        SMALL_PRICE.0, SMALL_PRICE.1, LARGE_PRICE.0, LARGE_PRICE.1
    );
    println!("checks: the response schema, confidence at least {floor}\n");
    println!(
        "{:<10} {:>9} {:>11} {:>14}",
        "", "accuracy", "cost ($)", "cost vs large"
    );
    for (name, t) in [("small", &small), ("large", &large), ("cascade", &cascade)] {
        println!(
            "{name:<10} {:>8.1}% {:>11.5} {:>13.0}%",
            100.0 * t.accuracy(),
            t.usage.cost,
            100.0 * t.usage.cost / large.usage.cost
        );
    }
    let reasons: Vec<String> = cascade
        .reasons
        .iter()
        .map(|(check, count)| format!("{count} {check}"))
        .collect();
    println!(
        "\ncascade: {} of {n} escalated ({:.1}%), rejected by: {}; spent ${:.5} on the small tier, ${:.5} on the large",
        cascade.escalated,
        100.0 * cascade.escalated as f64 / n.max(1) as f64,
        reasons.join(", "),
        cascade.by_tier.get("small").copied().unwrap_or_default(),
        cascade.by_tier.get("large").copied().unwrap_or_default(),
    );
    let close = cascade.accuracy() >= large.accuracy() - 0.01;
    let cheap = cascade.usage.cost <= 0.40 * large.usage.cost;
    println!(
        "targets: within one point of the large model's accuracy: {}; at most 40% of its cost: {}",
        if close { "yes" } else { "NO" },
        if cheap { "yes" } else { "NO" }
    );
    let figures = |t: &Tally| json!({"accuracy": t.accuracy(), "cost": t.usage.cost});
    println!(
        "{}",
        json!({"small": figures(&small), "large": figures(&large), "cascade": figures(&cascade)})
    );
    if !(close && cheap) {
        std::process::exit(1);
    }
    Ok(())
}
