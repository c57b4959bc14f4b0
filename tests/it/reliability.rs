//! The reliability layers and machine limits, each on its own, with a model
//! that plays scripted chunks, errors and pauses (time is paused: no test
//! here waits for real).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use statewise::layer::{Fallback, Limits, ModelExt, RetryPolicy, Timeouts};
use statewise::model::{
    ChatModel, ChatRequest, Chunk, ChunkStream, FinishReason, ModelError, ScriptedModel,
    TimeoutStage,
};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Env, EventKind, Machine, MachineError, Resource, Role, Usage};
use statewise_states::{Answer, Reasoning, RunTools};

#[derive(Clone, Debug)]
enum Step {
    Text(&'static str),
    Usage(u64, u64),
    Fail(fn(usize) -> ModelError),
    Pause(Duration),
}

/// Plays one scripted list of steps per call; counts calls.
struct Steps {
    calls: Mutex<VecDeque<Vec<Step>>>,
    made: AtomicUsize,
}

impl Steps {
    fn new(calls: Vec<Vec<Step>>) -> Arc<Self> {
        Arc::new(Steps {
            calls: Mutex::new(calls.into()),
            made: AtomicUsize::new(0),
        })
    }
    fn made(&self) -> usize {
        self.made.load(Ordering::SeqCst)
    }
}

impl ChatModel for Steps {
    fn name(&self) -> &str {
        "steps"
    }
    fn stream(&self, _: ChatRequest) -> ChunkStream<'_> {
        self.made.fetch_add(1, Ordering::SeqCst);
        let steps = self
            .calls
            .lock()
            .unwrap()
            .pop_front()
            .expect("a scripted call");
        Box::pin(async_stream::try_stream! {
            let mut sent = 0;
            for step in steps {
                match step {
                    Step::Text(t) => {
                        sent += 1;
                        yield Chunk::Text(t.to_owned());
                    }
                    Step::Usage(p, c) => yield Chunk::Usage(Usage { prompt_tokens: p, completion_tokens: c, ..Usage::default() }),
                    Step::Fail(make) => Err(make(sent))?,
                    Step::Pause(d) => tokio::time::sleep(d).await,
                }
            }
            yield Chunk::Finish(FinishReason::Stop);
        })
    }
}

fn http(status: u16) -> fn(usize) -> ModelError {
    match status {
        500 => |_| ModelError::Http {
            provider: "p".into(),
            status: 500,
            message: "boom".into(),
            retry_after: None,
        },
        429 => |_| ModelError::Http {
            provider: "p".into(),
            status: 429,
            message: "slow".into(),
            retry_after: Some(Duration::from_secs(7)),
        },
        _ => |_| ModelError::Http {
            provider: "p".into(),
            status: 401,
            message: "who".into(),
            retry_after: None,
        },
    }
}

fn cut(chunks: usize) -> ModelError {
    ModelError::StreamCut {
        provider: "p".into(),
        chunks,
        message: "reset".into(),
    }
}

async fn text_of(model: &dyn ChatModel) -> Result<String, ModelError> {
    model.complete(ChatRequest::default()).await.map(|r| r.text)
}

#[tokio::test(start_paused = true)]
async fn retry_waits_and_sends_again_only_when_safe() {
    let m = Steps::new(vec![
        vec![Step::Fail(http(500))],
        vec![Step::Fail(http(429))],
        vec![Step::Text("ok")],
    ]);
    let started = tokio::time::Instant::now();
    assert_eq!(
        text_of(&m.clone().retry(RetryPolicy::default()))
            .await
            .unwrap(),
        "ok"
    );
    assert_eq!(m.made(), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(7),
        "Retry-After honoured"
    );

    // Not for 401, not after tokens were delivered, not past max_retries.
    let m = Steps::new(vec![vec![Step::Fail(http(401))]]);
    assert_eq!(
        text_of(&m.clone().retry(RetryPolicy::default()))
            .await
            .unwrap_err()
            .status(),
        Some(401)
    );
    assert_eq!(m.made(), 1);
    let m = Steps::new(vec![vec![Step::Text("half"), Step::Fail(cut)]]);
    assert!(text_of(&m.clone().retry(RetryPolicy::default()))
        .await
        .unwrap_err()
        .emitted());
    assert_eq!(m.made(), 1);
    let m = Steps::new(vec![vec![Step::Fail(http(500))]; 3]);
    let policy = RetryPolicy {
        max_retries: 2,
        ..RetryPolicy::default()
    };
    assert_eq!(
        text_of(&m.clone().retry(policy))
            .await
            .unwrap_err()
            .status(),
        Some(500)
    );
    assert_eq!(m.made(), 3);
}

#[test]
fn backoff_has_full_jitter_under_a_growing_cap() {
    let policy = RetryPolicy {
        base: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    let err = ModelError::Connect {
        provider: "p".into(),
        message: String::new(),
    };
    for attempt in 0..4 {
        let cap = Duration::from_millis(100 << attempt).min(Duration::from_secs(1));
        let delays: Vec<_> = (0..200)
            .map(|_| policy.delay(attempt, &err).unwrap())
            .collect();
        assert!(delays.iter().all(|d| *d <= cap));
        assert!(
            delays.iter().any(|d| *d < cap / 4) && delays.iter().any(|d| *d > cap * 3 / 4),
            "spread over [0, cap]"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn each_time_limit_is_its_own_typed_error() {
    let limits = Timeouts {
        first_token: Some(Duration::from_secs(5)),
        idle: Some(Duration::from_secs(2)),
        call: Some(Duration::from_secs(10)),
    };
    let stage = |e: ModelError| match e {
        ModelError::Timeout { stage, chunks, .. } => (stage, chunks),
        other => panic!("{other:?}"),
    };
    let m = Steps::new(vec![vec![
        Step::Pause(Duration::from_secs(6)),
        Step::Text("late"),
    ]]);
    assert_eq!(
        stage(text_of(&m.timeouts(limits)).await.unwrap_err()),
        (TimeoutStage::FirstToken, 0)
    );
    let m = Steps::new(vec![vec![
        Step::Text("a"),
        Step::Pause(Duration::from_secs(3)),
        Step::Text("b"),
    ]]);
    assert_eq!(
        stage(text_of(&m.timeouts(limits)).await.unwrap_err()),
        (TimeoutStage::Idle, 1)
    );
    let slow_but_steady: Vec<Step> = (0..8)
        .flat_map(|_| [Step::Pause(Duration::from_millis(1500)), Step::Text("x")])
        .collect();
    let m = Steps::new(vec![slow_but_steady]);
    assert_eq!(
        stage(text_of(&m.timeouts(limits)).await.unwrap_err()),
        (TimeoutStage::Call, 6)
    );
    // A timeout before any token is retryable; the retry layer resends.
    let m = Steps::new(vec![
        vec![Step::Pause(Duration::from_secs(6))],
        vec![Step::Text("ok")],
    ]);
    assert_eq!(
        text_of(&m.clone().timeouts(limits).retry(RetryPolicy::default()))
            .await
            .unwrap(),
        "ok"
    );
}

fn no_tools() -> Toolbox {
    Toolbox::new(ToolRegistry::new())
}

/// A reply cut after tokens restarts the state from the env it started
/// with: the event stream marks it, and the env holds only the good reply.
#[tokio::test(start_paused = true)]
async fn a_cut_after_tokens_restarts_the_state_without_duplicating_text() {
    let m = Steps::new(vec![
        vec![Step::Text("{\"final_"), Step::Fail(cut)],
        vec![
            Step::Text("{\"final_answer\": "),
            Step::Text("\"4\"}"),
            Step::Usage(10, 5),
        ],
    ]);
    let machine = Machine::new("reasoning")
        .with_state(Reasoning::new(m.clone(), no_tools()))
        .with_state(Answer::new());
    let events: Vec<_> = machine.stream(Env::from_user("2+2?")).collect().await;
    let retried = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::StateRetried { attempt: 1, .. }))
        .count();
    assert_eq!(retried, 1);
    let Some(EventKind::Finished(out)) = events.last().map(|e| &e.kind) else {
        panic!("{:?}", events.last())
    };
    assert_eq!(out.answer.as_deref(), Some("4"));
    let assistant: Vec<_> = out
        .env
        .messages
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(assistant, ["{\"final_answer\": \"4\"}"]);
    assert_eq!(out.usage().total_tokens(), 15);

    // Restarts are bounded.
    let m = Steps::new(vec![vec![Step::Text("a"), Step::Fail(cut)]; 3]);
    let machine = Machine::new("reasoning")
        .with_state(Reasoning::new(m.clone(), no_tools()))
        .with_state(Answer::new())
        .state_retries(2);
    let failure = machine.run(Env::from_user("?")).await.unwrap_err();
    assert!(
        failure.error.code().starts_with("model:"),
        "{}",
        failure.error.code()
    );
    assert_eq!(m.made(), 3);
}

#[tokio::test(start_paused = true)]
async fn state_timeout_and_run_deadline() {
    let slow = || {
        Steps::new(vec![vec![
            Step::Pause(Duration::from_secs(30)),
            Step::Text("{\"final_answer\": \"x\"}"),
        ]])
    };
    let machine = Machine::new("reasoning")
        .with_state(Reasoning::new(slow(), no_tools()))
        .with_state(Answer::new())
        .state_timeout(Duration::from_secs(5));
    let failure = machine.run(Env::from_user("?")).await.unwrap_err();
    assert_eq!(failure.error.code(), "state_timeout");

    let machine = Machine::new("reasoning")
        .with_state(Reasoning::new(slow(), no_tools()))
        .with_state(Answer::new())
        .state_timeout(Duration::from_secs(60))
        .deadline(Duration::from_secs(10));
    let failure = machine.run(Env::from_user("?")).await.unwrap_err();
    assert!(
        matches!(failure.error, MachineError::Deadline { after } if after == Duration::from_secs(10))
    );
    assert_eq!(failure.env.messages.len(), 1, "the env is kept");
}

#[tokio::test]
async fn budgets_end_the_run_and_keep_what_it_has() {
    let looping = || {
        Arc::new(ScriptedModel::from_script(
            "loop",
            (0..10).map(|_| {
                statewise::model::Scripted::Reply(
                    statewise::model::Reply::text(
                        r#"{"name": "calculator", "arguments": {"expression": "1+1"}}"#,
                    )
                    .with_usage(Usage {
                        prompt_tokens: 100,
                        completion_tokens: 20,
                        cost: 0.01,
                        ..Usage::default()
                    }),
                )
            }),
        ))
    };
    let tools = Toolbox::new(ToolRegistry::new().with(statewise_states::tools::Calculator));
    let agent = |m| statewise_states::agent(m, tools.clone());
    let failure = agent(looping())
        .max_tokens(300)
        .run(Env::from_user("?"))
        .await
        .unwrap_err();
    assert!(
        matches!(failure.error, MachineError::Budget { resource: Resource::Tokens, limit, used } if limit == 300.0 && used == 360.0)
    );
    assert_eq!(failure.env.observations.len(), 2, "work done is kept");
    let failure = agent(looping())
        .max_cost(0.015)
        .run(Env::from_user("?"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            failure.error,
            MachineError::Budget {
                resource: Resource::Cost,
                ..
            }
        ),
        "{}",
        failure.error
    );
    assert_eq!(failure.error.code(), "budget");
}

/// Reasoning → Answer with an apology when the model is unavailable.
#[tokio::test(start_paused = true)]
async fn an_error_transition_answers_with_an_apology() {
    let down = Steps::new(vec![vec![Step::Fail(http(500))]]);
    let machine = Machine::new("reasoning")
        .with_state(Reasoning::new(down, no_tools()).on_model_error("answer"))
        .with_state(Answer::new().apology("Sorry, the model is unavailable right now."));
    let events: Vec<_> = machine.stream(Env::from_user("?")).collect().await;
    assert!(events.iter().any(
        |e| matches!(&e.kind, EventKind::StateFailed { error } if error.kind == "model:http_500")
    ));
    let Some(EventKind::Finished(out)) = events.last().map(|e| &e.kind) else {
        panic!()
    };
    assert_eq!(
        out.answer.as_deref(),
        Some("Sorry, the model is unavailable right now.")
    );
    assert_eq!(out.path, ["reasoning", "answer"]);
    assert_eq!(out.env.errors[0].state, "reasoning");
    // Without a declared transition the run fails with the error.
    let down = Steps::new(vec![vec![Step::Fail(http(500))]]);
    let failure = Machine::new("reasoning")
        .with_state(Reasoning::new(down, no_tools()))
        .with_state(Answer::new())
        .run(Env::from_user("?"))
        .await
        .unwrap_err();
    assert!(
        failure.error.code().starts_with("model:"),
        "{}",
        failure.error.code()
    );
}

#[tokio::test(start_paused = true)]
async fn fallback_goes_down_the_chain_before_anything_is_delivered() {
    let large = Steps::new(vec![
        vec![Step::Fail(http(500))],
        vec![Step::Text("par"), Step::Fail(cut)],
    ]);
    let small = Steps::new(vec![vec![Step::Text("small says hi")]]);
    let chain = Fallback::new(vec![large.clone(), small.clone()]).unwrap();
    assert_eq!(chain.name(), "steps | steps");
    assert_eq!(text_of(&chain).await.unwrap(), "small says hi");
    // After tokens were delivered the failure is passed on, not hidden.
    assert!(text_of(&chain).await.unwrap_err().emitted());
    assert_eq!((large.made(), small.made()), (2, 1));
    // A circuit that is open moves on at once; a 401 does not.
    let auth = Steps::new(vec![vec![Step::Fail(http(401))]]);
    let spare = Steps::new(vec![]);
    let chain = Fallback::new(vec![auth, spare.clone()]).unwrap();
    assert_eq!(text_of(&chain).await.unwrap_err().status(), Some(401));
    assert_eq!(spare.made(), 0);
    assert!(Fallback::new(vec![]).is_err());
}

#[tokio::test(start_paused = true)]
async fn concurrency_and_rate_limits_hold_calls_back() {
    let m = Steps::new(
        (0..8)
            .map(|_| vec![Step::Pause(Duration::from_secs(1)), Step::Text("x")])
            .collect(),
    );
    let limited = Arc::new(m.clone().limit(Limits {
        concurrency: Some(2),
        ..Limits::default()
    }));
    let peak = Arc::new(AtomicUsize::new(0));
    let calls = (0..8).map(|_| {
        let (limited, peak) = (limited.clone(), peak.clone());
        tokio::spawn(async move {
            let mut s = limited.stream(ChatRequest::default());
            while s.next().await.is_some() {
                peak.fetch_max(limited.in_flight(), Ordering::SeqCst);
            }
        })
    });
    let started = tokio::time::Instant::now();
    futures::future::join_all(calls).await;
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "8 calls of 1 s, 2 at a time"
    );

    let m = Steps::new((0..4).map(|_| vec![Step::Text("x")]).collect());
    let rpm = m.limit(Limits {
        requests_per_minute: Some(2),
        ..Limits::default()
    });
    let started = tokio::time::Instant::now();
    for _ in 0..4 {
        text_of(&rpm).await.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_secs(59),
        "2 at once, then one per 30 s: {:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn adaptive_concurrency_halves_on_429_and_grows_on_success() {
    let mut calls: Vec<Vec<Step>> = vec![vec![Step::Fail(http(429))]];
    calls.extend((0..40).map(|_| vec![Step::Text("x")]));
    let m = Steps::new(calls);
    let limited = m.limit(Limits {
        concurrency: Some(8),
        adaptive: true,
        ..Limits::default()
    });
    let _ = text_of(&limited).await;
    assert_eq!(limited.current_concurrency(), 4);
    for _ in 0..40 {
        text_of(&limited).await.unwrap();
    }
    assert!(
        limited.current_concurrency() > 4,
        "grew back to {}",
        limited.current_concurrency()
    );
}

#[tokio::test]
async fn model_strings_come_with_the_default_stack() {
    // An unreachable endpoint: the default stack retries connect errors,
    // then reports the typed error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let m = statewise::spec::from_spec(&format!("openai:x@http://127.0.0.1:{port}/v1")).unwrap();
    let started = std::time::Instant::now();
    let e = m.complete(ChatRequest::default()).await.unwrap_err();
    assert!(matches!(e, ModelError::Connect { .. }), "{e:?}");
    assert!(
        started.elapsed() > Duration::from_millis(100),
        "it waited between retries"
    );
}

#[tokio::test]
async fn action_state_is_unchanged_by_the_new_limits() {
    // A plain run still works with every limit set.
    let m = Arc::new(ScriptedModel::new().text(r#"{"final_answer": "ok"}"#));
    let out = Machine::new("reasoning")
        .with_state(Reasoning::new(m, no_tools()))
        .with_state(Answer::new())
        .with_state(RunTools::new(no_tools()))
        .state_timeout(Duration::from_secs(5))
        .deadline(Duration::from_secs(10))
        .max_tokens(1_000_000)
        .max_cost(100.0)
        .run(Env::from_user("?"))
        .await
        .unwrap();
    assert_eq!(out.answer.as_deref(), Some("ok"));
}
