//! Prometheus metrics, scraped and parsed: runs by outcome, state and
//! model call durations, tokens by kind, cost, tool calls by outcome,
//! retries, the circuit breaker's state, and the run queue's depth and
//! claims. In a binary of its own: the recorder is process-wide.
#![cfg(feature = "prometheus")]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use statewise::layer::Priced;
use statewise::layer::{BreakerConfig, CircuitBreaker, Retry, RetryPolicy};
use statewise::metric;
use statewise::model::{ChatRequest, FnModel, ModelError, Price, Reply};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Env, Usage};
use statewise_states::tools::Calculator;

/// One sample of the exposition: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the text exposition format's sample lines.
fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        out.push((name, labels, value));
    }
    out
}

/// The value of the sample `name` whose labels include `want`.
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, labels, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

/// Plans the calculator, then answers; the first call of all fails with a
/// 503 once, so the retry layer makes it again.
fn model() -> impl statewise::model::ChatModel {
    let calls = Arc::new(AtomicUsize::new(0));
    let plan = FnModel::new("openai:gpt-test", move |r: &ChatRequest| {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(ModelError::Http {
                provider: "openai".into(),
                status: 503,
                message: "overloaded".into(),
                retry_after: None,
            });
        }
        let seen = r.messages.iter().any(|m| m.content.contains("7006652"));
        let text = match seen {
            false => r#"{"name": "calculator", "arguments": {"expression": "1234 * 5678"}}"#,
            true => r#"{"final_answer": "It is 7006652."}"#,
        };
        Ok(Reply::text(text).with_usage(Usage {
            prompt_tokens: 1000,
            completion_tokens: 100,
            cached_tokens: 400,
            ..Usage::default()
        }))
    });
    let retry = Retry::new(
        plan,
        RetryPolicy {
            base: Duration::from_millis(1),
            ..RetryPolicy::default()
        },
    );
    Priced::new(
        CircuitBreaker::new(retry, BreakerConfig::default()),
        Price::per_million(2.0, 8.0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prometheus_endpoint_shows_runs_calls_tokens_tools_and_the_queue() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let handle = metric::serve_prometheus(addr).unwrap();

    let agent = statewise_states::agent(
        Arc::new(model()),
        Toolbox::new(ToolRegistry::new().with(Calculator)),
    );
    for _ in 0..2 {
        let out = agent.run(Env::from_user("1234 * 5678?")).await.unwrap();
        assert_eq!(out.answer.as_deref(), Some("It is 7006652."));
    }
    // A run that fails: its model always errs.
    let broken = statewise_states::agent(
        Arc::new(FnModel::new("openai:gpt-broken", |_: &ChatRequest| {
            Err(ModelError::Http {
                provider: "openai".into(),
                status: 400,
                message: "bad request".into(),
                retry_after: None,
            })
        })),
        Toolbox::new(ToolRegistry::new().with(Calculator)),
    );
    assert!(broken.run(Env::from_user("hi")).await.is_err());
    cascade_run().await;
    #[cfg(feature = "redis")]
    let _redis = queue_some_runs().await;

    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let s = samples(&text);
    let v = |name: &str, want: &[(&str, &str)]| value(&s, name, want);

    let finished = [("machine", "agent"), ("outcome", "finished")];
    assert!(v(metric::RUNS_TOTAL, &finished).unwrap() >= 2.0, "{text}");
    let failed = [("machine", "agent"), ("outcome", "failed")];
    assert!(v(metric::RUNS_TOTAL, &failed).unwrap() >= 1.0);
    let gpt = [("provider", "openai"), ("model", "gpt-test")];
    let calls = v("statewise_model_call_duration_seconds_count", &gpt).unwrap();
    assert_eq!(calls, 4.0, "two calls a run, two runs");
    assert!(v(
        "statewise_model_call_duration_seconds_bucket",
        &[("model", "gpt-test"), ("le", "+Inf")]
    )
    .is_some());
    assert!(v("statewise_model_time_to_first_token_seconds_count", &gpt).is_some());
    let kind = |k| v(metric::TOKENS_TOTAL, &[("model", "gpt-test"), ("kind", k)]);
    assert_eq!(
        (kind("input"), kind("output"), kind("cache_read")),
        (Some(4000.0), Some(400.0), Some(1600.0))
    );
    // Four calls at (1000 × $2 + 100 × $8) / 1M = $0.0028 each.
    let cost = v("statewise_model_call_cost_dollars_sum", &gpt).unwrap();
    assert!((cost - 4.0 * 0.0028).abs() < 1e-9, "{cost}");
    let broken = [("model", "gpt-broken"), ("error", "http_400")];
    assert!(v(metric::MODEL_ERRORS_TOTAL, &broken).unwrap() >= 1.0);
    assert_eq!(
        v(
            metric::TOOL_CALLS_TOTAL,
            &[("tool", "calculator"), ("outcome", "ok")]
        ),
        Some(2.0)
    );
    assert_eq!(v(metric::MODEL_RETRIES_TOTAL, &gpt), Some(1.0));
    assert_eq!(v(metric::CIRCUIT_BREAKER_STATE, &gpt), Some(0.0));
    let states = v(
        "statewise_state_duration_seconds_count",
        &[("machine", "agent"), ("state", "reasoning")],
    );
    assert!(states.unwrap() >= 4.0, "{text}");
    #[cfg(feature = "redis")]
    {
        assert!(v(metric::QUEUE_CLAIMS_TOTAL, &[("kind", "new")]).unwrap() >= 3.0);
        assert!(v(metric::QUEUE_DEPTH, &[]).is_some(), "{text}");
    }
    // Each tier of a cascade, by verdict, with its tokens and cost.
    let small = [("model", "small-test"), ("verdict", "rejected")];
    let large = [("model", "large-test"), ("verdict", "accepted")];
    assert_eq!(v(metric::ROUTE_STEPS_TOTAL, &small), Some(1.0), "{text}");
    assert_eq!(v(metric::ROUTE_STEPS_TOTAL, &large), Some(1.0));
    let tokens = v(
        metric::ROUTE_TOKENS_TOTAL,
        &[("model", "small-test"), ("kind", "input")],
    );
    assert_eq!(tokens, Some(1000.0));
    let cost = v("statewise_route_step_cost_dollars_sum", &large).unwrap();
    assert!((cost - 0.011).abs() < 1e-9, "{cost}");
    #[cfg(feature = "server")]
    web_server_metrics(handle).await;
    #[cfg(not(feature = "server"))]
    drop(handle);
}

/// One run through a cascade whose small tier is rejected.
async fn cascade_run() {
    use statewise::layer::{Cascade, ParsesAsAction, Tier};
    let reply = |text: &'static str| {
        move |_: &ChatRequest| {
            Ok(Reply::text(text).with_usage(Usage {
                prompt_tokens: 1000,
                completion_tokens: 100,
                ..Usage::default()
            }))
        }
    };
    let cascade = Cascade::new(vec![
        Tier::new("small", FnModel::new("openai:small-test", reply("hmm")))
            .price(Price::per_million(1.0, 1.0)),
        Tier::new(
            "large",
            FnModel::new("openai:large-test", reply(r#"{"final_answer": "ok"}"#)),
        )
        .price(Price::per_million(10.0, 10.0)),
    ])
    .unwrap()
    .check(ParsesAsAction);
    let agent = statewise_states::agent(
        Arc::new(cascade),
        Toolbox::new(ToolRegistry::new().with(Calculator)),
    );
    let out = agent.run(Env::from_user("hi")).await.unwrap();
    assert_eq!(out.answer.as_deref(), Some("ok"));
}

/// The web server's `/metrics` renders the same recorder, its runs
/// counted under the server's machine name.
#[cfg(feature = "server")]
async fn web_server_metrics(handle: metrics_exporter_prometheus::PrometheusHandle) {
    use statewise::server::Server;
    let server = Server::new(|_| {
        statewise_states::agent(
            Arc::new(FnModel::new("openai:gpt-web", |_: &ChatRequest| {
                Ok(Reply::text(r#"{"final_answer": "hi"}"#))
            })),
            Toolbox::new(ToolRegistry::new()),
        )
        .named("web")
    })
    .with_metrics(move || handle.render());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server.serve(listener));
    let http = reqwest::Client::new();
    let input = serde_json::json!({"threadId": "t", "runId": "web-1", "messages": [{"id": "u", "role": "user", "content": "hi"}]});
    let body = http
        .post(format!("{url}/agent"))
        .json(&input)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("RUN_FINISHED"), "{body}");
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let s = samples(&text);
    let web = [("machine", "web"), ("outcome", "finished")];
    assert_eq!(value(&s, metric::RUNS_TOTAL, &web), Some(1.0), "{text}");
}

/// Three runs through the Redis queue and a worker, so the queue's
/// metrics are there.
#[cfg(feature = "redis")]
async fn queue_some_runs() -> Redis {
    use statewise::worker::{RunQueue, Worker};
    let redis = Redis::shared_or_own();
    let prefix = format!("metrics{:08x}", fastrand::u32(..));
    let agent = statewise_states::agent(
        Arc::new(FnModel::new("scripted", |_: &ChatRequest| {
            Ok(Reply::text(r#"{"final_answer": "yes"}"#))
        })),
        Toolbox::new(ToolRegistry::new()),
    );
    let worker = Worker::new(&redis.url)
        .unwrap()
        .with_prefix(&prefix)
        .lease(Duration::from_millis(200))
        .machine("agent", agent);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker.run(shutdown.clone()));
    let queue = RunQueue::open(&redis.url).unwrap().with_prefix(&prefix);
    for i in 0..3 {
        let run = format!("m{i}");
        queue
            .submit("agent", &run, &Env::from_user("go"))
            .await
            .unwrap();
        queue.wait(&run, Duration::from_secs(30)).await.unwrap();
    }
    // A reclaim scan (every half lease) reads the depth.
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    running.await.unwrap().unwrap();
    redis
}

#[cfg(feature = "redis")]
#[allow(dead_code)]
#[path = "it/services.rs"]
mod services;
#[cfg(feature = "redis")]
use services::Redis;

/// What `services` needs of the integration tests' support module.
#[cfg(feature = "redis")]
mod support {
    pub fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("statewise-metrics-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
