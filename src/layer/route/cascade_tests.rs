use std::sync::Arc;

use futures::StreamExt;

use super::*;
use crate::env::{Env, Message};
use crate::layer::route::{Confident, FnCheck, ParsesAsAction};
use crate::model::{Price, ScriptedModel};

fn usage(prompt: u64, completion: u64) -> Usage {
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        ..Usage::default()
    }
}

fn answer(text: &str, logprobs: &[f32]) -> Reply {
    let mut r = Reply::text(text).with_usage(usage(1_000, 100));
    r.logprobs = logprobs.to_vec();
    r
}

fn tiers(small: &Arc<ScriptedModel>, large: &Arc<ScriptedModel>) -> Vec<Tier> {
    vec![
        Tier::new("small", small.clone()).price(Price::per_million(1.0, 1.0)),
        Tier::new("large", large.clone()).price(Price::per_million(10.0, 10.0)),
    ]
}

fn ask() -> ChatRequest {
    ChatRequest::new(vec![Message::user("What is 6*7?")])
}

async fn run(cascade: &Cascade) -> (Vec<Chunk>, Reply) {
    let chunks: Vec<Chunk> = cascade
        .stream(ask())
        .map(|c| c.expect("no error"))
        .collect()
        .await;
    let reply = Reply::from_chunks(chunks.clone());
    (chunks, reply)
}

#[tokio::test]
async fn a_reply_that_passes_is_kept_and_the_large_model_is_not_asked() {
    let small = Arc::new(ScriptedModel::new().reply(answer(r#"{"final_answer": "42"}"#, &[-0.01])));
    let large = Arc::new(ScriptedModel::new());
    let cascade = Cascade::new(tiers(&small, &large))
        .unwrap()
        .check(ParsesAsAction)
        .check(Confident::above(0.9));
    let (_, reply) = run(&cascade).await;
    assert_eq!(reply.text, r#"{"final_answer": "42"}"#);
    assert!(large.calls().is_empty());
    // A confidence check asks the tiers for log-probabilities.
    assert!(small.calls()[0].params.logprobs);
    assert_eq!(reply.route.len(), 1);
    let step = &reply.route[0];
    assert_eq!(
        (step.tier.as_str(), step.verdict),
        ("small", Verdict::Accepted)
    );
    assert!(
        (step.usage.cost - 0.0011).abs() < 1e-9,
        "{}",
        step.usage.cost
    );
    assert!((reply.usage.cost - 0.0011).abs() < 1e-9);
}

#[tokio::test]
async fn a_failed_check_escalates_and_the_held_reply_never_streams() {
    let small = Arc::new(ScriptedModel::new().reply(answer("It is probably 41", &[-0.01])));
    let large = Arc::new(ScriptedModel::new().reply(answer(r#"{"final_answer": "42"}"#, &[])));
    let cascade = Cascade::new(tiers(&small, &large))
        .unwrap()
        .check(ParsesAsAction);
    let (chunks, reply) = run(&cascade).await;
    let text: String = chunks
        .iter()
        .filter_map(|c| match c {
            Chunk::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        text, r#"{"final_answer": "42"}"#,
        "the small reply was held back"
    );
    let verdicts: Vec<_> = reply
        .route
        .iter()
        .map(|s| (s.tier.as_str(), s.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [("small", Verdict::Rejected), ("large", Verdict::Accepted)]
    );
    assert!(
        reply.route[0].reason.starts_with("parses as an action"),
        "{}",
        reply.route[0].reason
    );
    // Both calls are paid: 1,100 tokens at $1/M and 1,100 at $10/M.
    assert_eq!(reply.usage.prompt_tokens, 2_000);
    assert!(
        (reply.usage.cost - 0.0121).abs() < 1e-9,
        "{}",
        reply.usage.cost
    );

    let mut env = Env::default();
    reply.charge(&mut env);
    assert!((env.usage_by_model["scripted"].cost - 0.0121).abs() < 1e-9);
    assert_eq!(env.usage.completion_tokens, 200);
}

#[tokio::test]
async fn low_confidence_escalates_and_an_error_is_a_failed_step() {
    let small = Arc::new(
        ScriptedModel::new()
            .reply(answer("42", &[-1.2, -0.9]))
            .named("small-m"),
    );
    let large = Arc::new(
        ScriptedModel::new()
            .reply(answer("42", &[-0.01]))
            .named("large-m"),
    );
    let cascade = Cascade::new(tiers(&small, &large))
        .unwrap()
        .check(Confident::above(0.8));
    let (_, reply) = run(&cascade).await;
    let first = &reply.route[0];
    assert_eq!(first.verdict, Verdict::Rejected);
    assert!(first.confidence.unwrap() < 0.5);
    assert!(reply.route[1].confidence.unwrap() > 0.98);
    let mut env = Env::default();
    reply.charge(&mut env);
    assert!((env.usage_by_model["small-m"].cost - 0.0011).abs() < 1e-9);
    assert!((env.usage_by_model["large-m"].cost - 0.011).abs() < 1e-9);

    let small = Arc::new(ScriptedModel::new().error("overloaded"));
    let large = Arc::new(ScriptedModel::new().reply(answer("42", &[])));
    let cascade = Cascade::new(tiers(&small, &large)).unwrap();
    let (_, reply) = run(&cascade).await;
    assert_eq!(reply.route[0].verdict, Verdict::Failed);
    assert!(reply.route[0].reason.contains("overloaded"));
    assert_eq!(reply.text, "42");
}

#[tokio::test]
async fn the_last_tier_is_kept_whatever_its_checks_say() {
    let small = Arc::new(ScriptedModel::new().reply(answer("no", &[])));
    let large = Arc::new(ScriptedModel::new().reply(answer("still no", &[])));
    let cascade = Cascade::new(tiers(&small, &large))
        .unwrap()
        .check(FnCheck::new("says yes", |_, r| {
            match r.text.contains("yes") {
                true => Ok(()),
                false => Err("no yes".into()),
            }
        }));
    let (_, reply) = run(&cascade).await;
    assert_eq!(reply.text, "still no");
    let last = &reply.route[1];
    assert_eq!(last.verdict, Verdict::Accepted);
    assert!(
        last.reason.contains("kept as the last tier"),
        "{}",
        last.reason
    );
}

#[test]
fn tiers_need_distinct_labels() {
    let m = || Tier::new("same", ScriptedModel::new());
    let err = Cascade::new(vec![m(), m()]).unwrap_err();
    assert!(err.to_string().contains("`same`"), "{err}");
    assert!(Cascade::new(vec![]).is_err());
}

/// A model whose one reply streams as the test sends its chunks.
struct Live(std::sync::Mutex<Option<futures::channel::mpsc::UnboundedReceiver<Chunk>>>);

impl ChatModel for Live {
    fn name(&self) -> &str {
        "live"
    }

    fn stream(&self, _request: ChatRequest) -> ChunkStream<'_> {
        let chunks = self.0.lock().unwrap().take().expect("asked once");
        Box::pin(chunks.map(Ok))
    }
}

#[tokio::test]
async fn the_last_tier_streams_live() {
    let small = Arc::new(ScriptedModel::new().reply(answer("not an action", &[])));
    let (send, chunks) = futures::channel::mpsc::unbounded();
    let cascade = Cascade::new(vec![
        Tier::new("small", small),
        Tier::new("large", Live(std::sync::Mutex::new(Some(chunks)))),
    ])
    .unwrap()
    .check(ParsesAsAction);
    let mut stream = cascade.stream(ask());
    send.unbounded_send(Chunk::Text("first ".into())).unwrap();
    // The small reply's step and usage come first, then the large model's
    // first words, while its reply is still being written.
    let mut seen = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        let text = matches!(chunk, Chunk::Text(_));
        seen.push(chunk);
        if text {
            break;
        }
    }
    assert!(
        matches!(&seen[..], [.., Chunk::Route(s), Chunk::Text(t)] if s.verdict == Verdict::Rejected && t == "first "),
        "{seen:?}"
    );
    send.unbounded_send(Chunk::Text("second".into())).unwrap();
    drop(send);
    let rest: Vec<Chunk> = stream.map(|c| c.unwrap()).collect().await;
    assert_eq!(rest[0], Chunk::Text("second".into()));
    assert!(matches!(rest.last(), Some(Chunk::Route(s)) if s.verdict == Verdict::Accepted));
}
