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
    let run: Vec<_> = named("invoke_agent").collect();
    assert_eq!(run.len(), 1);
    assert_eq!(run[0].1["statewise.run_id"], out.run_id);
    assert_eq!(run[0].1["gen_ai.conversation.id"], out.run_id);
    assert_eq!(run[0].1["otel.name"], "invoke_agent agent");
    assert_eq!(run[0].1["gen_ai.operation.name"], "\"invoke_agent\"");
    assert_eq!(run[0].1["statewise.outcome"], "\"finished\"");
    let states: Vec<_> = named("statewise.state").collect();
    assert_eq!(states.len(), out.path.len());
    assert!(states
        .iter()
        .all(|s| s.2.as_deref() == Some("invoke_agent")));
    assert_eq!(states[0].1["next"], "To(\"action\")");
    let calls: Vec<_> = named("chat").collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].1["otel.name"], "chat scripted");
    assert_eq!(calls[0].1["otel.kind"], "\"client\"");
    assert_eq!(calls[0].1["gen_ai.provider.name"], "\"scripted\"");
    assert_eq!(calls[0].1["gen_ai.request.model"], "\"scripted\"");
    assert_eq!(calls[0].1["gen_ai.usage.input_tokens"], "210");
    assert_eq!(calls[1].1["gen_ai.usage.output_tokens"], "15");
    assert_eq!(calls[0].1["gen_ai.response.finish_reasons"], "\"stop\"");
    assert!(
        !calls[0].1.contains_key("gen_ai.input.messages"),
        "content is opt-in"
    );
    assert!(calls
        .iter()
        .all(|c| c.2.as_deref() == Some("statewise.state")));
    let tools: Vec<_> = named("execute_tool").collect();
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0].1["otel.name"], "execute_tool calculator");
    assert_eq!(tools[0].1["gen_ai.tool.name"], "calculator");
    assert_eq!(tools[0].1["gen_ai.tool.type"], "\"function\"");
    assert_eq!(tools[0].1["statewise.is_error"], "false");
    assert!(!tools[0].1.contains_key("gen_ai.tool.call.arguments"));
    assert_eq!(tools[0].2.as_deref(), Some("statewise.state"));
}

#[tokio::test]
async fn content_is_on_spans_only_when_asked_and_then_redacted() {
    use tracing_subscriber::layer::SubscriberExt;
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut redactor = statewise::trace::Redactor::default();
    redactor.add("hunter2-hunter2");
    let machine = agent().named("calculator-agent").span_content(redactor);
    machine
        .run(Env::from_user(
            "1234 * 5678? My password is hunter2-hunter2.",
        ))
        .await
        .unwrap();

    let spans = spans.0.lock().unwrap().clone();
    let get = |name: &str| spans.iter().find(|s| s.0 == name).unwrap().1.clone();
    assert_eq!(
        get("invoke_agent")["otel.name"],
        "invoke_agent calculator-agent"
    );
    let chat = get("chat");
    let input = &chat["gen_ai.input.messages"];
    assert!(input.contains("1234 * 5678?"), "{input}");
    assert!(
        input.contains("[redacted]") && !input.contains("hunter2-hunter2"),
        "{input}"
    );
    assert!(
        chat["gen_ai.output.messages"].contains("tool_calls"),
        "{chat:?}"
    );
    let tool = get("execute_tool");
    assert!(tool["gen_ai.tool.call.arguments"].contains("1234 * 5678"));
    assert!(tool["gen_ai.tool.call.result"].contains("7006652"));
}
