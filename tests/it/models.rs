//! Choosing models: a registry giving states different models, and prices
//! turning usage into cost in the env.

use std::sync::Arc;

use statewise::layer::Priced;
use statewise::model::{Price, PriceTable, Reply, ScriptedModel};
use statewise::spec::{ModelRegistry, ModelSpecError};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Env, Machine, Usage};
use statewise_states::{Answer, Reasoning};

fn usage(prompt: u64, completion: u64) -> Usage {
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        ..Usage::default()
    }
}

#[tokio::test]
async fn a_large_model_reasons_and_a_small_one_answers_with_costs_summed() {
    let large = Arc::new(
        ScriptedModel::new()
            .named("large")
            .reply(Reply::text(r#"{"final_answer": "draft"}"#).with_usage(usage(1_000, 100))),
    );
    let small = Arc::new(
        ScriptedModel::new()
            .named("small")
            .reply(Reply::text("Final answer.").with_usage(usage(2_000, 50))),
    );
    let registry = ModelRegistry::new()
        .with(
            "large",
            Arc::new(Priced::new(large.clone(), Price::per_million(10.0, 30.0))),
        )
        .with(
            "small",
            Arc::new(Priced::new(small.clone(), Price::per_million(0.5, 1.5))),
        );

    let machine = Machine::new("reasoning")
        .with_state(Reasoning::new(
            registry.resolve("large").unwrap(),
            Toolbox::new(ToolRegistry::new()),
        ))
        .with_state(Answer::with_model(registry.resolve("small").unwrap()));
    let out = machine.run(Env::from_user("?")).await.unwrap();

    assert_eq!(out.answer.as_deref(), Some("Final answer."));
    assert_eq!((large.calls().len(), small.calls().len()), (1, 1));
    let u = out.usage();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (3_000, 150));
    let expected = (1_000.0 * 10.0 + 100.0 * 30.0 + 2_000.0 * 0.5 + 50.0 * 1.5) / 1e6;
    assert!(
        (u.cost - expected).abs() < 1e-12,
        "{} vs {expected}",
        u.cost
    );
}

#[test]
fn cached_and_cache_write_tokens_have_their_own_prices() {
    let price = Price::per_million(3.0, 15.0).cached(0.3).cache_write(3.75);
    let u = Usage {
        prompt_tokens: 170,
        cached_tokens: 50,
        cache_write_tokens: 100,
        completion_tokens: 12,
        ..Usage::default()
    };
    let expected = (20.0 * 3.0 + 50.0 * 0.3 + 100.0 * 3.75 + 12.0 * 15.0) / 1e6;
    assert!((price.cost(&u) - expected).abs() < 1e-15);
}

#[test]
fn the_registry_explains_unknown_names_and_prices_model_strings() {
    let registry = ModelRegistry::new()
        .with("small", Arc::new(ScriptedModel::new()))
        .with_prices(PriceTable::new().with("scripted", Price::per_million(1.0, 1.0)));
    match registry.resolve("medium") {
        Err(ModelSpecError::NotFound { registered, .. }) => assert_eq!(registered, ["small"]),
        other => panic!("{:?}", other.map(|m| m.name().to_owned())),
    }
    assert_eq!(
        registry.price("scripted"),
        Some(Price::per_million(1.0, 1.0))
    );
    // Model strings still work through the registry.
    assert_eq!(registry.resolve("scripted").unwrap().name(), "scripted");
    let e = registry.resolve("gemini:pro").err().unwrap();
    assert!(e.to_string().contains("unknown provider"), "{e}");
}
