//! `tracing` spans of runs, states, model calls and tools. In a test binary
//! of its own: tracing caches per-callsite interest process-wide, and tests
//! running on other threads without a subscriber could race with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use statewise::model::{Reply, ScriptedModel};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Env, Machine, Usage};
use statewise_states::tools::Calculator;

fn agent() -> Machine {
    let usage = |prompt, completion| Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        ..Usage::default()
    };
    let model = ScriptedModel::new()
        .reply(
            Reply::text(r#"{"tool_calls": [{"name": "calculator", "arguments": {"expression": "1234 * 5678"}}]}"#)
                .with_usage(usage(210, 24)),
        )
        .reply(Reply::text(r#"{"final_answer": "It is 7006652."}"#).with_usage(usage(262, 15)));
    statewise_states::agent(
        Arc::new(model),
        Toolbox::new(ToolRegistry::new().with(Calculator)),
    )
}

/// A span as a subscriber sees it: name, fields, parent's name.
type SeenSpan = (String, HashMap<String, String>, Option<String>);

#[derive(Default, Clone)]
struct Spans(Arc<Mutex<Vec<SeenSpan>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S> tracing_subscriber::Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent().map(|p| p.name().to_owned()));
        let mut spans = self.0.lock().unwrap();
        spans.push((attrs.metadata().name().to_owned(), fields, parent));
        // Remember where this span's record goes.
        let index = spans.len() - 1;
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(index);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let Some(index) = ctx
            .span(id)
            .and_then(|s| s.extensions().get::<usize>().copied())
        else {
            return;
        };
        values.record(&mut Fields(&mut self.0.lock().unwrap()[index].1));
    }
}

#[tokio::test]
async fn runs_states_model_calls_and_tools_are_tracing_spans() {
    use tracing_subscriber::layer::SubscriberExt;
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let out = agent().run(Env::from_user("1234 * 5678?")).await.unwrap();

    let spans = spans.0.lock().unwrap().clone();
    let named = |n: &'static str| spans.iter().filter(move |s| s.0 == n);
    let run: Vec<_> = named("statewise.run").collect();
    assert_eq!(run.len(), 1);
    assert_eq!(run[0].1["run_id"], out.run_id);
    let states: Vec<_> = named("statewise.state").collect();
    assert_eq!(states.len(), out.path.len());
    assert!(states
        .iter()
        .all(|s| s.2.as_deref() == Some("statewise.run")));
    assert_eq!(states[0].1["next"], "To(\"action\")");
    let calls: Vec<_> = named("gen_ai.chat").collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].1["gen_ai.request.model"], "\"scripted\"");
    assert_eq!(calls[0].1["gen_ai.usage.input_tokens"], "210");
    assert_eq!(calls[1].1["gen_ai.usage.output_tokens"], "15");
    assert_eq!(calls[0].1["gen_ai.response.finish_reasons"], "\"stop\"");
    assert!(calls
        .iter()
        .all(|c| c.2.as_deref() == Some("statewise.state")));
    let tools: Vec<_> = named("statewise.tool").collect();
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0].1["tool"], "calculator");
    assert_eq!(tools[0].1["is_error"], "false");
    assert_eq!(tools[0].2.as_deref(), Some("statewise.state"));
}
