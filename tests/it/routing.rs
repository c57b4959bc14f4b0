//! Routers and cascades inside runs: the route in events, traces, per-model
//! usage and replays; with the `local` feature, the in-process model as a
//! cascade's cheap tier and a real llama.cpp server as the next, both
//! returning log-probabilities.

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::StreamExt;
use statewise::env::Role;
use statewise::layer::{Cascade, Choice, ParsesAsAction, Policy, Router, Tier};
use statewise::model::{
    ChatModel, ChatRequest, ModelError, Price, Reply, ScriptedModel, SharedModel, Verdict,
};
use statewise::replay::Recording;
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::trace::Tracer;
use statewise::{Emit, Env, EventKind, Machine, Usage};
use statewise_states::tools::Calculator;

use crate::support::temp_dir;

fn agent(model: SharedModel) -> Machine {
    statewise_states::agent(model, Toolbox::new(ToolRegistry::new().with(Calculator)))
}

fn used(prompt: u64, completion: u64) -> Usage {
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        ..Usage::default()
    }
}

/// Requests that carry a tool result go to the large tier: a policy of
/// our own, as users write them.
struct AfterTools;

impl Policy for AfterTools {
    fn choose<'a>(
        &'a self,
        request: &'a ChatRequest,
        _tiers: &'a [Tier],
    ) -> BoxFuture<'a, Result<Choice, ModelError>> {
        let observed = request.messages.iter().any(|m| m.role == Role::Tool)
            || request.messages.iter().any(|m| m.content.contains("391"));
        Box::pin(async move {
            Ok(match observed {
                true => Choice::new(1, "a tool result to read"),
                false => Choice::new(0, "first look"),
            })
        })
    }
}

fn routed() -> SharedModel {
    let small = ScriptedModel::new().named("small-m").reply(
        Reply::text(
            r#"{"tool_calls": [{"name": "calculator", "arguments": {"expression": "17 * 23"}}]}"#,
        )
        .with_usage(used(200, 20)),
    );
    let large = ScriptedModel::new()
        .named("large-m")
        .reply(Reply::text(r#"{"final_answer": "17 * 23 = 391"}"#).with_usage(used(250, 12)));
    let tiers = vec![
        Tier::new("small", small).price(Price::per_million(1.0, 1.0)),
        Tier::new("large", large).price(Price::per_million(10.0, 10.0)),
    ];
    Arc::new(Router::new(tiers, AfterTools).unwrap())
}

async fn record(model: SharedModel, path: &Path) -> statewise::RunOutput {
    agent(model)
        .with_tracer(Tracer::jsonl(path).unwrap())
        .run(Env::from_user("What is 17 * 23?"))
        .await
        .unwrap()
}

/// Each step's state, and its route: tier, verdict, reason.
type Routes = Vec<(String, Vec<(String, Verdict, String)>)>;

fn routes(recording: &Recording) -> Routes {
    recording
        .steps
        .iter()
        .map(|s| {
            let steps = s
                .routes
                .iter()
                .map(|r| (r.tier.clone(), r.verdict, r.reason.clone()))
                .collect();
            (s.state.clone(), steps)
        })
        .collect()
}

#[tokio::test]
async fn route_decisions_show_in_events_and_usage_and_replay_identically() {
    let dir = temp_dir("routing-replay");
    let first = dir.join("first.jsonl");
    let out = record(routed(), &first).await;
    assert_eq!(out.answer.as_deref(), Some("17 * 23 = 391"));
    // Each tier's share of the run, priced at its own rate.
    let small = out.env.usage_by_model["small-m"];
    let large = out.env.usage_by_model["large-m"];
    assert_eq!((small.prompt_tokens, large.prompt_tokens), (200, 250));
    assert!((small.cost - 0.000220).abs() < 1e-12, "{}", small.cost);
    assert!((large.cost - 0.002620).abs() < 1e-12, "{}", large.cost);
    assert!((out.env.usage.cost - small.cost - large.cost).abs() < 1e-12);

    let recording = Recording::from_jsonl(&first, None).unwrap();
    let original = routes(&recording);
    let decided: Vec<_> = original.iter().flat_map(|(_, r)| r.clone()).collect();
    assert_eq!(
        decided,
        [
            ("small".to_owned(), Verdict::Routed, "first look".to_owned()),
            (
                "large".to_owned(),
                Verdict::Routed,
                "a tool result to read".to_owned()
            ),
        ]
    );

    // Offline, from the recording alone: the same route, step by step.
    let second = dir.join("replayed.jsonl");
    let replay_model: SharedModel = Arc::new(recording.model());
    let replayed_out = record(replay_model, &second).await;
    assert_eq!(replayed_out.env.usage_by_model, out.env.usage_by_model);
    let replayed = Recording::from_jsonl(&second, None).unwrap();
    assert_eq!(routes(&replayed), original);

    // The route is an event as the run streams.
    let mut events = agent(routed()).stream(Env::from_user("What is 17 * 23?"));
    let mut seen = Vec::new();
    while let Some(event) = events.next().await {
        if let EventKind::Emitted(Emit::Routed(step)) = event.kind {
            seen.push((step.tier, step.model));
        }
    }
    assert_eq!(
        seen,
        [
            ("small".to_owned(), "small-m".to_owned()),
            ("large".to_owned(), "large-m".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_cascade_in_a_run_escalates_an_unreadable_action() {
    let small = ScriptedModel::new()
        .named("small-m")
        .reply(Reply::text("Let me think, 17 times 23...").with_usage(used(200, 9)));
    let large = ScriptedModel::new()
        .named("large-m")
        .reply(Reply::text(r#"{"final_answer": "391"}"#).with_usage(used(200, 8)));
    let cascade = Cascade::new(vec![
        Tier::new("small", small).price(Price::per_million(1.0, 1.0)),
        Tier::new("large", large).price(Price::per_million(10.0, 10.0)),
    ])
    .unwrap()
    .check(ParsesAsAction);
    let out = agent(Arc::new(cascade))
        .run(Env::from_user("What is 17 * 23?"))
        .await
        .unwrap();
    assert_eq!(out.answer.as_deref(), Some("391"));
    // No unreadable reply reached the Reasoning state: no feedback round.
    assert_eq!(out.path.first().map(String::as_str), Some("reasoning"));
    assert_eq!(
        out.env.usage.prompt_tokens, 400,
        "the rejected reply is paid too"
    );
    assert!(out.env.usage_by_model["small-m"].cost > 0.0);
}

#[cfg(feature = "local")]
mod local_then_server {
    use super::*;
    use statewise::layer::Confident;
    use statewise::model::{LocalModel, OpenAi, Params};
    use statewise::Message;

    fn ask() -> ChatRequest {
        ChatRequest {
            params: Params {
                temperature: Some(0.0),
                max_tokens: Some(24),
                ..Params::default()
            },
            ..ChatRequest::new(vec![Message::user("Name a color.")])
        }
    }

    #[tokio::test]
    async fn the_in_process_model_escalates_to_a_llama_cpp_server_when_unsure() {
        let server = crate::llama_server::start_server().await;
        let base = format!("http://127.0.0.1:{}/v1", server.port);
        let local = LocalModel::load(crate::support::model_path()).expect("the test model loads");
        let local: SharedModel = Arc::new(local);
        let remote: SharedModel =
            Arc::new(OpenAi::builder("smollm2").base_url(&base).build().unwrap());
        let tiers = || {
            vec![
                Tier::new("local", local.clone()),
                Tier::new("server", remote.clone()),
            ]
        };

        // Both providers return log-probabilities when asked.
        let mut asked = ask();
        asked.params.logprobs = true;
        let here = local.complete(asked.clone()).await.unwrap();
        let there = remote.complete(asked).await.unwrap();
        for (who, reply) in [("local", &here), ("server", &there)] {
            assert!(!reply.logprobs.is_empty(), "{who} returned no logprobs");
            assert!(
                reply.logprobs.iter().all(|l| *l <= 0.0 && l.is_finite()),
                "{who}: {:?}",
                reply.logprobs
            );
            let c = reply.confidence().unwrap();
            assert!(c > 0.0 && c <= 1.0);
        }
        let local_confidence = here.confidence().unwrap();

        // A floor above the local reply's confidence: the server answers.
        let floor = (local_confidence + 1.0) / 2.0;
        let unsure = Cascade::new(tiers())
            .unwrap()
            .check(Confident::above(floor));
        let reply = unsure.complete(ask()).await.unwrap();
        let steps: Vec<_> = reply
            .route
            .iter()
            .map(|s| (s.tier.as_str(), s.verdict))
            .collect();
        assert_eq!(
            steps,
            [("local", Verdict::Rejected), ("server", Verdict::Accepted)]
        );
        let rejected = &reply.route[0];
        assert!((rejected.confidence.unwrap() - local_confidence).abs() < 1e-3);
        assert!(rejected.reason.contains("below"), "{}", rejected.reason);
        assert!(
            reply.route[1].confidence.is_some(),
            "the server's logprobs were read"
        );
        assert!(!reply.text.is_empty());

        // A floor below it: the local reply is kept, the server not asked.
        let sure = Cascade::new(tiers())
            .unwrap()
            .check(Confident::above(local_confidence / 2.0));
        let reply = sure.complete(ask()).await.unwrap();
        assert_eq!(reply.route.len(), 1);
        assert_eq!(reply.route[0].verdict, Verdict::Accepted);
        assert_eq!(reply.text, here.text);
    }
}

#[tokio::test]
async fn a_cached_cascade_answers_again_with_the_same_route_at_no_cost() {
    use statewise::layer::{MemoryCache, ModelExt};
    let small = Arc::new(
        ScriptedModel::new()
            .named("small-m")
            .reply(Reply::text("no idea").with_usage(used(100, 3))),
    );
    let large = Arc::new(
        ScriptedModel::new()
            .named("large-m")
            .reply(Reply::text(r#"{"final_answer": "391"}"#).with_usage(used(100, 8))),
    );
    let cached = Cascade::new(vec![
        Tier::new("small", small.clone()).price(Price::per_million(1.0, 1.0)),
        Tier::new("large", large.clone()).price(Price::per_million(10.0, 10.0)),
    ])
    .unwrap()
    .check(ParsesAsAction)
    .cache(Arc::new(MemoryCache::new(16)));
    let ask = || ChatRequest::new(vec![statewise::Message::user("What is 17 * 23?")]);
    let first = cached.complete(ask()).await.unwrap();
    let again = cached.complete(ask()).await.unwrap();
    assert_eq!((small.calls().len(), large.calls().len()), (1, 1));
    assert_eq!(
        again.route, first.route,
        "the route comes back with the reply"
    );
    assert_eq!(again.text, first.text);
    assert!(first.usage.cost > 0.0);
    assert_eq!(again.usage.cost, 0.0);
}

#[test]
fn the_cascade_bench_meets_its_targets_and_ends_with_its_figures() {
    let out = std::process::Command::new(crate::support::example("cascade_bench"))
        .args(["--questions", "400", "--seed", "11"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let figure = |who: &str, what: &str| last[who][what].as_f64().unwrap();
    for who in ["small", "large", "cascade"] {
        assert!((0.0..=1.0).contains(&figure(who, "accuracy")), "{last}");
        assert!(figure(who, "cost") > 0.0, "{last}");
    }
    assert!(figure("small", "accuracy") < figure("large", "accuracy") - 0.1);
    assert!(
        figure("cascade", "accuracy") >= figure("large", "accuracy") - 0.01,
        "{last}"
    );
    assert!(
        figure("cascade", "cost") <= 0.4 * figure("large", "cost"),
        "{last}"
    );
    assert!(
        figure("cascade", "cost") > figure("small", "cost"),
        "{last}"
    );
    assert!(stdout.contains("escalated"), "{stdout}");
}

#[tokio::test]
async fn a_stock_state_asks_the_router_for_its_tier() {
    use statewise::layer::Rules;
    use statewise_states::Reasoning;
    let small = Arc::new(ScriptedModel::new().named("small-m"));
    let large = Arc::new(
        ScriptedModel::new()
            .named("large-m")
            .reply(Reply::text(r#"{"final_answer": "391"}"#)),
    );
    let router: SharedModel = Arc::new(
        Router::new(
            vec![
                Tier::new("small", small.clone()),
                Tier::new("large", large.clone()),
            ],
            Rules::new("small"),
        )
        .unwrap(),
    );
    let tools = Toolbox::new(ToolRegistry::new().with(Calculator));
    let machine = agent(router.clone()).with_state(Reasoning::new(router, tools).tier("large"));
    let out = machine
        .run(Env::from_user("What is 17 * 23?"))
        .await
        .unwrap();
    assert_eq!(out.answer.as_deref(), Some("391"));
    assert_eq!(large.calls()[0].tier.as_deref(), Some("large"));
    assert!(small.calls().is_empty());
}
