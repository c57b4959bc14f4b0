//! `tracing` spans of runs, states, model calls and tools. In a test binary
//! of its own: tracing caches per-callsite interest process-wide, and tests
//! running on other threads without a subscriber could race with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use statewise::model::{Reply, ScriptedModel};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Env, Machine, Usage};
use statewise_states::tools::Calculator;

#[cfg(feature = "otel")]
#[path = "it/otlp_receiver.rs"]
mod otlp_receiver;

#[cfg(all(feature = "otel", feature = "redis"))]
#[allow(dead_code)]
#[path = "it/services.rs"]
mod services;

/// What `services` needs of the integration tests' support module.
#[cfg(all(feature = "otel", feature = "redis"))]
mod support {
    pub fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("statewise-spans-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

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

impl Spans {
    /// Spans seen on this thread from now until the guard drops.
    fn capture() -> (Spans, tracing::subscriber::DefaultGuard) {
        use tracing_subscriber::layer::SubscriberExt;
        let spans = Spans::default();
        let subscriber = tracing_subscriber::registry().with(spans.clone());
        (spans, tracing::subscriber::set_default(subscriber))
    }
}

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
    let (spans, _guard) = Spans::capture();
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
    assert_eq!(states[0].1["next"], "To(\"tools\")");
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
    let (spans, _guard) = Spans::capture();
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

/// The spans as OpenTelemetry sees them: through the SDK's in-memory
/// exporter, and over OTLP/HTTP to a receiver this test starts.
#[cfg(feature = "otel")]
mod otel {
    use super::*;
    use opentelemetry::trace::SpanKind;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
    use tracing_subscriber::layer::SubscriberExt;

    /// A provider exporting to memory, at once as each span ends.
    fn in_memory() -> (InMemorySpanExporter, SdkTracerProvider) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        (exporter, provider)
    }

    fn attribute(span: &SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    #[tokio::test]
    async fn spans_reach_opentelemetry_with_names_attributes_and_parents() {
        let (exporter, provider) = in_memory();
        let subscriber = tracing_subscriber::registry().with(statewise::otel::layer(&provider));
        let _guard = tracing::subscriber::set_default(subscriber);
        let out = agent()
            .named("calculator-agent")
            .run(Env::from_user("1234 * 5678?"))
            .await
            .unwrap();
        provider.force_flush().unwrap();

        let spans = exporter.get_finished_spans().unwrap();
        let named = |n: &str| -> Vec<&SpanData> { spans.iter().filter(|s| s.name == n).collect() };
        let run = named("invoke_agent calculator-agent");
        assert_eq!(
            run.len(),
            1,
            "{:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        let run = run[0];
        assert_eq!(
            attribute(run, "gen_ai.operation.name").as_deref(),
            Some("invoke_agent")
        );
        assert_eq!(
            attribute(run, "gen_ai.conversation.id"),
            Some(out.run_id.clone())
        );
        assert_eq!(
            attribute(run, "statewise.outcome").as_deref(),
            Some("finished")
        );
        let chats = named("chat scripted");
        assert_eq!(chats.len(), 2);
        let chat = chats[0];
        assert_eq!(chat.span_kind, SpanKind::Client);
        assert_eq!(
            attribute(chat, "gen_ai.provider.name").as_deref(),
            Some("scripted")
        );
        assert_eq!(
            attribute(chat, "gen_ai.usage.input_tokens").as_deref(),
            Some("210")
        );
        assert_eq!(
            attribute(chat, "gen_ai.response.finish_reasons").as_deref(),
            Some("stop")
        );
        let tool = named("execute_tool calculator")[0];
        assert_eq!(
            attribute(tool, "gen_ai.tool.name").as_deref(),
            Some("calculator")
        );
        assert_eq!(tool.span_kind, SpanKind::Internal);

        // One trace: model and tool calls under a state, the states under the run.
        let trace = run.span_context.trace_id();
        assert!(spans.iter().all(|s| s.span_context.trace_id() == trace));
        let states = named("statewise.state");
        assert_eq!(states.len(), out.path.len());
        assert!(states
            .iter()
            .all(|s| s.parent_span_id == run.span_context.span_id()));
        let state_ids: Vec<_> = states.iter().map(|s| s.span_context.span_id()).collect();
        assert!(chats.iter().all(|c| state_ids.contains(&c.parent_span_id)));
        assert!(state_ids.contains(&tool.parent_span_id));
    }

    #[tokio::test]
    async fn a_traceparent_continues_another_process_trace() {
        let (exporter, provider) = in_memory();
        let subscriber = tracing_subscriber::registry().with(statewise::otel::layer(&provider));
        let _guard = tracing::subscriber::set_default(subscriber);
        // The submitter's side.
        let sent = tracing::info_span!("submit");
        let traceparent = sent.in_scope(statewise::otel::current_traceparent).unwrap();
        let sender_trace = traceparent.split('-').nth(1).unwrap().to_owned();
        assert!(traceparent.starts_with("00-"), "{traceparent}");
        // The worker's side.
        let received = tracing::info_span!("job");
        statewise::otel::continue_trace(&received, &traceparent);
        use tracing::Instrument;
        agent()
            .run(Env::from_user("1234 * 5678?"))
            .instrument(received)
            .await
            .unwrap();
        drop(sent);
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let run = spans
            .iter()
            .find(|s| s.name == "invoke_agent agent")
            .unwrap();
        assert_eq!(run.span_context.trace_id().to_string(), sender_trace);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_arrive_at_an_otlp_http_receiver() {
        let (url, received) = crate::otlp_receiver::start().await;
        let provider = statewise::otel::otlp_provider("statewise-test", Some(&url)).unwrap();
        let subscriber = tracing_subscriber::registry().with(statewise::otel::layer(&provider));
        let dispatch = tracing::Dispatch::new(subscriber);
        let machine = agent();
        // The run's spans go to this subscriber on whichever thread polls it.
        let run = async move { machine.run(Env::from_user("1234 * 5678?")).await };
        let out = tracing::dispatcher::with_default(&dispatch, || {
            use tracing::instrument::WithSubscriber;
            run.with_subscriber(dispatch.clone())
        })
        .await
        .unwrap();
        // Flushing blocks on the exporter's HTTP call: off the runtime.
        tokio::task::spawn_blocking(move || provider.force_flush())
            .await
            .unwrap()
            .unwrap();

        let (names, services) = crate::otlp_receiver::spans(&received);
        let count = |n: &str| names.iter().filter(|m| *m == n).count();
        assert_eq!(count("invoke_agent agent"), 1);
        assert_eq!(count("chat scripted"), 2);
        assert_eq!(count("execute_tool calculator"), 1);
        assert_eq!(count("statewise.state"), out.path.len());
        assert_eq!(names.len(), 4 + out.path.len(), "{names:?}");
        assert!(
            services.iter().all(|s| s.contains("statewise-test")),
            "{services:?}"
        );
        assert!(!services.is_empty());
    }

    /// A request to the web server with a W3C `traceparent` header is run
    /// in the client's trace.
    #[cfg(feature = "server")]
    #[tokio::test]
    async fn the_web_server_continues_the_clients_trace() {
        let (exporter, provider) = in_memory();
        let subscriber = tracing_subscriber::registry().with(statewise::otel::layer(&provider));
        let _guard = tracing::subscriber::set_default(subscriber);
        let server = statewise::server::Server::new(|_| agent());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/agent", listener.local_addr().unwrap());
        tokio::spawn(server.serve(listener));
        let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
        let input = serde_json::json!({"threadId": "t", "runId": "traced",
            "messages": [{"id": "u", "role": "user", "content": "1234 * 5678?"}]});
        let body = reqwest::Client::new()
            .post(url)
            .header("traceparent", format!("00-{trace}-{parent}-01"))
            .json(&input)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.contains("RUN_FINISHED"), "{body}");
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let run = spans
            .iter()
            .find(|s| s.name == "invoke_agent agent")
            .unwrap();
        assert_eq!(run.span_context.trace_id().to_string(), trace);
        let request = spans
            .iter()
            .find(|s| s.name == "statewise.request")
            .unwrap();
        assert_eq!(request.parent_span_id.to_string(), parent);
    }

    /// A run queued in one trace is run by a worker in the same trace: the
    /// submitter's traceparent travels with the queue entry.
    #[cfg(feature = "redis")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queued_run_continues_the_submitters_trace() {
        use statewise::worker::{RunQueue, Worker};
        use tracing::instrument::WithSubscriber;
        use tracing::Instrument;
        let (exporter, provider) = in_memory();
        let dispatch = tracing::Dispatch::new(
            tracing_subscriber::registry().with(statewise::otel::layer(&provider)),
        );
        let redis = crate::services::Redis::shared_or_own();
        let prefix = format!("otel{:08x}", fastrand::u32(..));
        let worker = Worker::new(&redis.url)
            .unwrap()
            .with_prefix(&prefix)
            .machine("agent", agent());
        let shutdown = tokio_util::sync::CancellationToken::new();
        let running = tokio::spawn(
            worker
                .run(shutdown.clone())
                .with_subscriber(dispatch.clone()),
        );

        let queue = RunQueue::open(&redis.url).unwrap().with_prefix(&prefix);
        let submit = tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("submit"));
        let traceparent = tracing::dispatcher::with_default(&dispatch, || {
            submit.in_scope(statewise::otel::current_traceparent)
        })
        .unwrap();
        queue
            .submit("agent", "traced-run", &Env::from_user("1234 * 5678?"))
            .instrument(submit.clone())
            .with_subscriber(dispatch.clone())
            .await
            .unwrap();
        let outcome = queue
            .wait("traced-run", std::time::Duration::from_secs(30))
            .await
            .unwrap();
        assert!(outcome.answer.is_some(), "{outcome:?}");
        shutdown.cancel();
        running.await.unwrap().unwrap();
        drop(submit);
        provider.force_flush().unwrap();

        let spans = exporter.get_finished_spans().unwrap();
        let trace = traceparent.split('-').nth(1).unwrap();
        let run = spans
            .iter()
            .find(|s| s.name == "invoke_agent agent")
            .unwrap();
        assert_eq!(run.span_context.trace_id().to_string(), trace);
        let job = spans.iter().find(|s| s.name == "statewise.job").unwrap();
        assert_eq!(run.parent_span_id, job.span_context.span_id());
    }
}

/// A provider puts on its call's span the server it called, the model that
/// answered and the reasoning tokens the vendor reported.
#[cfg(feature = "http")]
#[tokio::test]
async fn a_providers_call_names_its_server_and_the_model_that_answered() {
    use statewise::model::{ChatRequest, OpenAi, ReplyStream};
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async {
            axum::Json(serde_json::json!({
                "model": "gpt-test-2026-01-01",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 20,
                    "completion_tokens_details": {"reasoning_tokens": 17}}
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let model = OpenAi::builder("gpt-test")
        .base_url(format!("http://127.0.0.1:{port}/v1"))
        .streaming(false)
        .build()
        .unwrap();

    let (spans, _guard) = Spans::capture();
    let request = ChatRequest::new(vec![statewise::Message::user("2+2?")]);
    let mut call = ReplyStream::call(&model, request, &Default::default());
    use futures::StreamExt;
    while let Some(item) = call.next().await {
        item.unwrap();
    }
    assert_eq!(call.finish().text, "4");

    let spans = spans.0.lock().unwrap().clone();
    let chat = &spans.iter().find(|s| s.0 == "chat").unwrap().1;
    assert_eq!(chat["server.address"], "\"127.0.0.1\"");
    assert_eq!(chat["server.port"], port.to_string());
    assert_eq!(chat["gen_ai.provider.name"], "\"openai\"");
    assert_eq!(chat["gen_ai.response.model"], "\"gpt-test-2026-01-01\"");
    assert_eq!(chat["gen_ai.usage.reasoning.output_tokens"], "17");
    assert_eq!(chat["gen_ai.usage.output_tokens"], "20");
}

/// A fork's branches are runs of their own, traced beneath a fork span in
/// the run: one trace for the whole fan-out.
#[tokio::test]
async fn a_forks_branches_are_spans_beneath_the_fork() {
    use serde_json::json;
    use statewise::state::{FnState, Fork};
    use statewise::Next;
    let (spans, _guard) = Spans::capture();
    let machine = Machine::new("plan")
        .with_state(FnState::new(
            "plan",
            |_: &mut Env| Ok(()),
            |_: &Env| {
                Next::fork(
                    ["a", "b", "c"]
                        .iter()
                        .fold(Fork::join_at("join"), |f, q| f.branch("leaf", json!(q))),
                )
            },
        ))
        .with_state(FnState::new(
            "leaf",
            |env: &mut Env| {
                env.answer = Some("leaf".into());
                Ok(())
            },
            |_: &Env| Next::End,
        ))
        .with_state(FnState::new(
            "join",
            |env: &mut Env| {
                env.answer = Some(format!("{} branches", env.branches.len()));
                Ok(())
            },
            |_: &Env| Next::End,
        ));
    let out = machine.run(Env::new()).await.unwrap();
    assert_eq!(out.answer.as_deref(), Some("3 branches"));

    let spans = spans.0.lock().unwrap().clone();
    let runs: Vec<_> = spans.iter().filter(|s| s.0 == "invoke_agent").collect();
    assert_eq!(runs.len(), 4, "the run and its three branches");
    let branches: Vec<_> = runs.iter().filter(|s| s.2.is_some()).collect();
    assert_eq!(branches.len(), 3, "{runs:?}");
    assert!(
        branches
            .iter()
            .all(|b| b.2.as_deref() == Some("statewise.fork")),
        "{branches:?}"
    );
    let fork = spans.iter().find(|s| s.0 == "statewise.fork").unwrap();
    assert_eq!(fork.2.as_deref(), Some("invoke_agent"));
    assert_eq!(fork.1["branches"], "3");
    assert!(branches
        .iter()
        .all(|b| b.1["statewise.run_id"].starts_with(&out.run_id)));
}

/// A sub-machine's run is traced beneath the parent's state that runs it.
#[tokio::test]
async fn a_sub_machines_run_is_a_span_beneath_its_state() {
    use statewise::machine::SubMachine;
    use statewise::state::FnState;
    use statewise::Next;
    let (spans, _guard) = Spans::capture();
    let inner = Machine::new("look")
        .named("researcher")
        .with_state(FnState::new(
            "look",
            |env: &mut Env| {
                env.answer = Some("found".into());
                Ok(())
            },
            |_: &Env| Next::End,
        ));
    let machine = Machine::new("research")
        .with_machine(SubMachine::new("research", inner).transition(|_: &Env| Next::End));
    let out = machine.run(Env::new()).await.unwrap();
    assert_eq!(out.answer.as_deref(), Some("found"));

    let spans = spans.0.lock().unwrap().clone();
    let runs: Vec<_> = spans.iter().filter(|s| s.0 == "invoke_agent").collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let sub = runs
        .iter()
        .find(|s| s.2.is_some())
        .expect("the sub-machine's run has a parent");
    assert_eq!(sub.2.as_deref(), Some("statewise.state"));
}

#[tokio::test]
async fn a_routed_call_names_the_model_that_served_it() {
    use statewise::layer::{Cascade, ParsesAsAction, Router, Rules, Tier};
    let tier = |label: &str, model: &str, text: &str| {
        Tier::new(
            label,
            ScriptedModel::new()
                .named(model)
                .reply(Reply::text(text))
                .reply(Reply::text(text)),
        )
    };
    let cascade = Cascade::new(vec![
        tier("small", "openai:mini", "thinking..."),
        tier("large", "openai:big", r#"{"final_answer": "42"}"#),
    ])
    .unwrap()
    .check(ParsesAsAction);
    let router = Router::new(
        vec![
            Tier::new("cascade", cascade),
            tier("direct", "openai:other", "x"),
        ],
        Rules::new("cascade"),
    )
    .unwrap();
    let agent = statewise_states::agent(
        Arc::new(router),
        Toolbox::new(ToolRegistry::new().with(Calculator)),
    );
    let (spans, _guard) = Spans::capture();
    let out = agent.run(Env::from_user("6 * 7?")).await.unwrap();
    assert_eq!(out.answer.as_deref(), Some("42"));
    let spans = spans.0.lock().unwrap().clone();
    let call = spans.iter().find(|s| s.0 == "chat").unwrap();
    assert_eq!(call.1["gen_ai.request.model"], "\"big\"");
    assert_eq!(
        call.1["statewise.route"],
        "\"small rejected → large accepted → cascade routed\""
    );
}
