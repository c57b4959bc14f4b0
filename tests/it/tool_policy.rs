//! Per-tool time limits and retries, and blocking tools kept off the async
//! threads.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use statewise::tool::{
    Blocking, BlockingTool, Tool, ToolContext, ToolPolicy, ToolRegistry, Toolbox,
};
use statewise::ToolCall;

/// Fails its first `fail` calls, sleeping `pause` in each call.
#[derive(Clone)]
struct Flaky {
    calls: Arc<AtomicU32>,
    fail: u32,
    pause: Duration,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct Query {
    q: String,
}

#[derive(Debug, thiserror::Error)]
#[error("backend busy")]
struct Busy;

impl Tool for Flaky {
    type Args = Query;
    type Output = String;
    type Error = Busy;

    fn name(&self) -> &str {
        "search"
    }
    fn description(&self) -> &str {
        "Searches."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"q": {"type": "string"}}})
    }
    async fn call(&self, args: Query, _ctx: statewise::tool::ToolContext) -> Result<String, Busy> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(self.pause).await;
        if n <= self.fail {
            return Err(Busy);
        }
        Ok(format!("results for {}", args.q))
    }
}

fn flaky(fail: u32, pause: Duration) -> Flaky {
    Flaky {
        calls: Arc::new(AtomicU32::new(0)),
        fail,
        pause,
    }
}

fn call(arguments: Value) -> ToolCall {
    ToolCall::new("c1", "search", arguments)
}

#[tokio::test(start_paused = true)]
async fn a_call_past_its_time_limit_is_an_error_observation() {
    let tool = flaky(0, Duration::from_secs(30));
    let tools = Toolbox::new(ToolRegistry::new().with(tool.clone())).policy(
        "search",
        ToolPolicy::default().timeout(Duration::from_millis(50)),
    );
    let started = tokio::time::Instant::now();
    let observation = tools
        .observe(&call(json!({"q": "x"})), ToolContext::default())
        .await;
    assert!(observation.is_error);
    assert!(
        observation.render().contains("took longer than 50ms"),
        "{}",
        observation.render()
    );
    assert_eq!(started.elapsed(), Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn failed_calls_are_retried_as_the_policy_says() {
    let tool = flaky(2, Duration::ZERO);
    let tools = Toolbox::new(ToolRegistry::new().with(tool.clone()))
        .default_policy(ToolPolicy::default().retries(2));
    let observation = tools
        .observe(&call(json!({"q": "x"})), ToolContext::default())
        .await;
    assert!(!observation.is_error, "{}", observation.render());
    assert_eq!(observation.content, json!("results for x"));
    assert_eq!(tool.calls.load(Ordering::SeqCst), 3);

    // One retry is not enough for two failures.
    let tool = flaky(2, Duration::ZERO);
    let tools = Toolbox::new(ToolRegistry::new().with(tool.clone()))
        .policy("search", ToolPolicy::default().retries(1));
    assert!(
        tools
            .observe(&call(json!({"q": "x"})), ToolContext::default())
            .await
            .is_error
    );
    assert_eq!(tool.calls.load(Ordering::SeqCst), 2);

    // Arguments that do not fit stay wrong: no retry, no call.
    let tool = flaky(0, Duration::ZERO);
    let tools = Toolbox::new(ToolRegistry::new().with(tool.clone()))
        .default_policy(ToolPolicy::default().retries(3));
    let observation = tools
        .observe(&call(json!({"query": 1})), ToolContext::default())
        .await;
    assert!(observation.render().contains("invalid arguments"));
    assert_eq!(tool.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_retried_too() {
    // Every attempt takes 1 s; the limit is 100 ms; three attempts in all.
    let tool = flaky(0, Duration::from_secs(1));
    let tools = Toolbox::new(ToolRegistry::new().with(tool.clone())).policy(
        "search",
        ToolPolicy::default()
            .timeout(Duration::from_millis(100))
            .retries(2)
            .backoff(Duration::from_millis(10)),
    );
    assert!(
        tools
            .observe(&call(json!({"q": "x"})), ToolContext::default())
            .await
            .is_error
    );
    assert_eq!(tool.calls.load(Ordering::SeqCst), 3);
}

/// Reports the thread it ran on; panics on "boom".
struct WhereAmI;

impl BlockingTool for WhereAmI {
    type Args = String;
    type Output = String;
    type Error = std::io::Error;

    fn name(&self) -> &str {
        "where"
    }
    fn description(&self) -> &str {
        "Says which thread it ran on."
    }
    fn parameters(&self) -> Value {
        json!({"type": "string"})
    }
    fn call(
        &self,
        what: String,
        _ctx: statewise::tool::ToolContext,
    ) -> Result<String, std::io::Error> {
        assert_ne!(what, "boom", "asked to blow up");
        // Blocks its thread, as a blocking tool does.
        std::thread::sleep(Duration::from_millis(20));
        Ok(format!("{:?}", std::thread::current().id()))
    }
}

#[tokio::test]
async fn a_blocking_tool_runs_off_the_async_thread() {
    let tools = Toolbox::new(ToolRegistry::new().with(Blocking::new(WhereAmI)));
    let here = format!("{:?}", std::thread::current().id());
    let observation = tools
        .observe(
            &ToolCall::new("c1", "where", json!("hi")),
            ToolContext::default(),
        )
        .await;
    assert!(!observation.is_error, "{}", observation.render());
    assert_ne!(observation.content, json!(here), "it ran on another thread");
    // While it blocks, the runtime's own thread is free.
    let ticked = Arc::new(AtomicU32::new(0));
    let ticker = {
        let ticked = ticked.clone();
        tokio::spawn(async move {
            loop {
                ticked.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    tools
        .observe(
            &ToolCall::new("c2", "where", json!("again")),
            ToolContext::default(),
        )
        .await;
    ticker.abort();
    assert!(
        ticked.load(Ordering::SeqCst) > 1,
        "the runtime kept running"
    );
    // A panic in it is the tool's error, not the run's.
    let boom = tools
        .observe(
            &ToolCall::new("c3", "where", json!("boom")),
            ToolContext::default(),
        )
        .await;
    assert!(boom.is_error);
    assert!(boom.render().contains("panicked"), "{}", boom.render());
}
