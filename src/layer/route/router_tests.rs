use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;

use super::*;
use crate::env::Message;
use crate::layer::route::{Classify, Rules};
use crate::model::{FnModel, Price, PriceTable, Reply, SharedModel};

/// A model named `name` answering `name`, counting its calls.
fn counted(name: &'static str, calls: Arc<AtomicUsize>) -> FnModel {
    FnModel::new(name, move |_req: &ChatRequest| {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(Reply::text(name).with_usage(Usage {
            prompt_tokens: 1_000,
            completion_tokens: 1_000,
            ..Usage::default()
        }))
    })
}

/// The tiers' prices, by model id, as a deployment keeps them.
fn prices() -> PriceTable {
    PriceTable::new()
        .with("small-m", Price::per_million(1.0, 1.0))
        .with("large-m", Price::per_million(50.0, 50.0))
}

fn router(policy: impl Policy + 'static) -> (Router, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (small, large) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let tiers = vec![
        Tier::new("small", counted("small-m", small.clone())).price_from(&prices()),
        Tier::new("large", counted("large-m", large.clone())).price_from(&prices()),
    ];
    (Router::new(tiers, policy).unwrap(), small, large)
}

fn ask(text: &str) -> ChatRequest {
    ChatRequest::new(vec![Message::user(text)])
}

#[tokio::test]
async fn rules_pick_the_tier_and_the_step_says_why() {
    let (router, small, large) = router(Rules::new("small").when_tokens_over(100, "large"));
    let reply = router.complete(ask("hi")).await.unwrap();
    assert_eq!(reply.text, "small-m");
    let step = &reply.route[0];
    assert_eq!(
        (step.tier.as_str(), step.verdict),
        ("small", Verdict::Routed)
    );
    assert_eq!(step.reason, "no rule matched");
    assert!((step.usage.cost - 0.002).abs() < 1e-9);

    let reply = router.complete(ask(&"word ".repeat(300))).await.unwrap();
    assert_eq!(reply.text, "large-m");
    assert!(reply.route[0].reason.contains("over 100"));
    assert_eq!(
        (small.load(Ordering::SeqCst), large.load(Ordering::SeqCst)),
        (1, 1)
    );
}

#[tokio::test]
async fn near_its_budget_a_run_moves_to_the_cheaper_tier() {
    let budget = Budget::new(0.25).near(0.8);
    let (router, small, large) = router(Rules::new("large"));
    let router = router.budget(budget.clone());
    // Each large call costs $0.10 (2,000 tokens at $50/M).
    for _ in 0..2 {
        let reply = router.complete(ask("hi")).await.unwrap();
        assert_eq!(reply.text, "large-m");
    }
    assert!((budget.spent() - 0.2).abs() < 1e-9);
    // $0.05 left: the next large call would overspend; the small one fits.
    let reply = router.complete(ask("hi")).await.unwrap();
    assert_eq!(reply.text, "small-m");
    assert!(
        reply.route[0].reason.contains("cheap"),
        "{}",
        reply.route[0].reason
    );
    assert_eq!(
        (small.load(Ordering::SeqCst), large.load(Ordering::SeqCst)),
        (1, 2)
    );
    // The same choice, asked without a call, is the same.
    assert_eq!(router.route(&ask("hi")).await.unwrap().tier, 0);
}

#[tokio::test]
async fn a_classifier_routes_and_its_call_is_paid() {
    let classifier: SharedModel = Arc::new(FnModel::new("judge", |req: &ChatRequest| {
        let hard = req.messages[1].content.contains("prove");
        Ok(
            Reply::text(if hard { "hard" } else { "simple" }).with_usage(Usage {
                prompt_tokens: 50,
                completion_tokens: 1,
                cost: 0.001,
                ..Usage::default()
            }),
        )
    }));
    let (router, _, _) = router(Classify::new(
        classifier,
        [("simple", "small"), ("hard", "large")],
    ));
    let easy = router.complete(ask("2+2?")).await.unwrap();
    assert_eq!(easy.text, "small-m");
    let hard = router
        .complete(ask("prove Fermat's last theorem"))
        .await
        .unwrap();
    assert_eq!(hard.text, "large-m");
    assert_eq!(hard.route[0].reason, "classified as `hard`");
    assert_eq!(hard.usage.prompt_tokens, 1_050);
    assert!((hard.route[0].usage.cost - 0.101).abs() < 1e-9);
}

struct Wild;

impl Policy for Wild {
    fn choose<'a>(
        &'a self,
        _: &'a ChatRequest,
        _: &'a [Tier],
    ) -> BoxFuture<'a, Result<Choice, ModelError>> {
        Box::pin(async { Ok(Choice::new(7, "why not")) })
    }
}

#[tokio::test]
async fn a_policy_out_of_range_is_a_config_error() {
    let (router, _, _) = router(Wild);
    let err = router.complete(ask("hi")).await.unwrap_err();
    assert_eq!(err.kind(), crate::model::ModelErrorKind::Config);
    assert!(err.to_string().contains("small, large"), "{err}");
}

#[tokio::test]
async fn a_replayed_reply_carries_the_same_route() {
    let (router, _, _) = router(Rules::new("small").when_tokens_over(100, "large"));
    let reply = router.complete(ask(&"word ".repeat(300))).await.unwrap();
    let replayed = Reply::from_chunks(reply.to_chunks());
    assert_eq!(replayed.route, reply.route);
    assert_eq!(replayed, reply);
}
