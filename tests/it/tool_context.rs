//! What a tool is told (its context) and what it is spared (arguments its
//! schema rejects).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use statewise::env::MemoryJournal;
use statewise::model::ScriptedModel;
use statewise::store::MemoryStore;
use statewise::tool::{DynTool, Tool, ToolContext, ToolError, ToolPolicy, ToolRegistry, Toolbox};
use statewise::{Emit, Env, EventKind, ToolCall};

#[derive(Deserialize, schemars::JsonSchema)]
struct Account {
    /// The account's IBAN.
    iban: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct TransferArgs {
    /// Amount in cents.
    amount: u64,
    /// Where the money goes.
    to: Account,
}

/// Records the context of every call; its first call hangs until the run
/// is gone, noting whether the cancellation signal fired.
#[derive(Clone, Default)]
struct Transfer {
    seen: Arc<Mutex<Vec<ToolContext>>>,
    calls: Arc<AtomicU32>,
    cancelled: Arc<AtomicBool>,
    hang_first: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Tool for Transfer {
    type Args = TransferArgs;
    type Output = String;
    type Error = Never;

    fn name(&self) -> &str {
        "transfer"
    }
    fn description(&self) -> &str {
        "Sends money."
    }
    async fn call(&self, args: TransferArgs, ctx: ToolContext) -> Result<String, Never> {
        self.seen.lock().unwrap().push(ctx.clone());
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.hang_first && n == 0 {
            // Work outside the tool's future stops when the signal fires.
            let cancelled = self.cancelled.clone();
            let cancel = ctx.cancel.clone();
            tokio::spawn(async move {
                cancel.cancelled().await;
                cancelled.store(true, Ordering::SeqCst);
            });
            std::future::pending::<()>().await;
        }
        Ok(format!("sent {} to {}", args.amount, args.to.iban))
    }
}

#[test]
fn the_schema_is_derived_from_the_argument_type() {
    let spec = Transfer::default().spec();
    let schema = &spec.parameters;
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], json!(["amount", "to"]));
    assert_eq!(
        schema["properties"]["amount"]["description"],
        "Amount in cents."
    );
    // Nested types are inlined, not behind `$ref`s a model must follow.
    assert_eq!(
        schema["properties"]["to"]["properties"]["iban"]["description"],
        "The account's IBAN."
    );
    assert!(schema.get("$schema").is_none() && schema.get("$defs").is_none());
}

#[tokio::test]
async fn arguments_the_schema_rejects_name_the_field_and_never_reach_the_tool() {
    let tool = Transfer::default();
    let tools = Toolbox::new(ToolRegistry::new().with(tool.clone()));
    let cases = [
        (json!({"amount": "ten", "to": {"iban": "DE1"}}), "amount"),
        (json!({"amount": 5, "to": {}}), "to.iban"),
        (json!({"amount": 5}), "to"),
    ];
    for (arguments, field) in cases {
        let error = tools
            .call("transfer", arguments.clone(), ToolContext::default())
            .await
            .unwrap_err();
        match &error {
            ToolError::InvalidArguments { field: Some(f), .. } => assert_eq!(f, field),
            other => panic!("{arguments}: {other:?}"),
        }
        // The model reads the same error as its observation.
        let observation = tools
            .observe(
                &ToolCall::new("c", "transfer", arguments),
                ToolContext::default(),
            )
            .await;
        assert!(observation.is_error);
        assert!(
            observation.render().contains(&format!("field `{field}`")),
            "{}",
            observation.render()
        );
    }
    assert_eq!(tool.calls.load(Ordering::SeqCst), 0);
    let fine = tools
        .call(
            "transfer",
            json!({"amount": 5, "to": {"iban": "DE1"}}),
            ToolContext::default(),
        )
        .await
        .unwrap();
    assert_eq!(fine, json!("sent 5 to DE1"));
}

#[tokio::test]
async fn a_dropped_run_cancels_its_tools_and_the_resumed_call_keeps_its_idempotency_key() {
    let tool = Transfer {
        hang_first: true,
        ..Transfer::default()
    };
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"tool_calls": [{"name": "transfer", "arguments": {"amount": 5, "to": {"iban": "DE1"}}}]}"#)
            .text(r#"{"final_answer": "Sent."}"#),
    );
    let store = MemoryStore::new();
    let machine =
        statewise_states::agent(model, Toolbox::new(ToolRegistry::new().with(tool.clone())))
            .with_store(store.clone())
            .deadline(Duration::from_secs(600));

    // The process "dies" while the transfer is under way.
    let mut events = machine.stream_as("run-7", Env::from_user("Send 5 cents to DE1"));
    while let Some(event) = events.next().await {
        if matches!(event.kind, EventKind::Emitted(Emit::ToolCallStarted(_))) {
            break;
        }
    }
    // The run goes on into the call, which hangs.
    let polled = tokio::time::timeout(Duration::from_millis(100), events.next()).await;
    assert!(polled.is_err(), "the run waits for the transfer");
    assert_eq!(tool.calls.load(Ordering::SeqCst), 1);
    assert!(
        !tool.cancelled.load(Ordering::SeqCst),
        "not before the run is gone"
    );
    drop(events);
    for _ in 0..100 {
        if tool.cancelled.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        tool.cancelled.load(Ordering::SeqCst),
        "dropping the run cancels the call"
    );

    // Another machine (the same checkpoints) resumes the run: the call is
    // made again, under the same idempotency key.
    let out = machine.resume("run-7").await.unwrap();
    let events: Vec<_> = out.collect().await;
    assert_eq!(crate::support::answer_text(&events), "Sent.");
    let seen = tool.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let (first, again) = (&seen[0], &seen[1]);
    assert_eq!(&*first.run_id, "run-7");
    assert_eq!(
        first.idempotency_key,
        format!("run-7/{}/{}", first.step, first.call_id)
    );
    assert_eq!(again.idempotency_key, first.idempotency_key);
    assert!(
        first.deadline.is_some(),
        "the run's deadline reaches the tool"
    );
}

#[tokio::test(start_paused = true)]
async fn every_retry_of_a_call_has_the_same_key_and_its_own_deadline() {
    #[derive(Clone, Default)]
    struct Slow {
        seen: Arc<Mutex<Vec<ToolContext>>>,
    }
    impl Tool for Slow {
        type Args = serde_json::Value;
        type Output = ();
        type Error = Never;
        fn name(&self) -> &str {
            "slow"
        }
        fn description(&self) -> &str {
            "Takes its time."
        }
        async fn call(&self, _: serde_json::Value, ctx: ToolContext) -> Result<(), Never> {
            self.seen.lock().unwrap().push(ctx);
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        }
    }
    let tool = Slow::default();
    let tools = Toolbox::new(ToolRegistry::new().with(tool.clone())).policy(
        "slow",
        ToolPolicy::default()
            .timeout(Duration::from_secs(1))
            .retries(1),
    );
    let settings = statewise::RunSettings::default();
    let ctx = ToolContext::for_call(&settings, 3, "call_3_0");
    let started = tokio::time::Instant::now();
    let error = tools.call("slow", json!({}), ctx).await.unwrap_err();
    assert!(matches!(error, ToolError::TimedOut { .. }), "{error:?}");
    let seen = tool.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].idempotency_key, seen[1].idempotency_key);
    assert!(seen[0].idempotency_key.ends_with("/3/call_3_0"));
    // Each attempt is told its own time limit, and was cancelled at it.
    assert_eq!(seen[0].deadline, Some(started + Duration::from_secs(1)));
    assert!(seen[1].deadline > seen[0].deadline);
    assert!(seen.iter().all(ToolContext::is_cancelled));
}

/// Counts its calls.
#[derive(Clone, Default)]
struct Counter {
    calls: Arc<AtomicU32>,
}

impl Tool for Counter {
    type Args = serde_json::Value;
    type Output = u32;
    type Error = Never;

    fn name(&self) -> &str {
        "count"
    }
    fn description(&self) -> &str {
        "Counts."
    }
    async fn call(&self, _: serde_json::Value, _: ToolContext) -> Result<u32, Never> {
        Ok(self.calls.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

/// A state makes two calls; the run is dropped after `count` finished and
/// while `transfer` hangs, then resumed. How often was `count` called?
async fn count_calls_after_a_resume(journal: Option<MemoryJournal>) -> u32 {
    let (counter, transfer) = (
        Counter::default(),
        Transfer {
            hang_first: true,
            ..Transfer::default()
        },
    );
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"tool_calls": [{"name": "count", "arguments": {}}, {"name": "transfer", "arguments": {"amount": 5, "to": {"iban": "DE1"}}}]}"#)
            .text(r#"{"final_answer": "Sent."}"#),
    );
    let tools = ToolRegistry::new()
        .with(counter.clone())
        .with(transfer.clone());
    let mut machine =
        statewise_states::agent(model, Toolbox::new(tools)).with_store(MemoryStore::new());
    if let Some(journal) = journal {
        machine = machine.with_journal(journal);
    }
    let mut events = machine.stream_as("run-8", Env::from_user("Count, then send 5 cents"));
    while let Some(event) = events.next().await {
        if matches!(&event.kind, EventKind::Emitted(Emit::ToolCallFinished { tool, .. }) if tool == "count")
        {
            break;
        }
    }
    // The run goes on into the transfer, which hangs.
    let polled = tokio::time::timeout(Duration::from_millis(100), events.next()).await;
    assert!(polled.is_err(), "the run waits for the transfer");
    assert_eq!(
        transfer.calls.load(Ordering::SeqCst),
        1,
        "the transfer is under way"
    );
    drop(events);
    let events: Vec<_> = machine.resume("run-8").await.unwrap().collect().await;
    assert_eq!(crate::support::answer_text(&events), "Sent.");
    assert_eq!(
        transfer.calls.load(Ordering::SeqCst),
        2,
        "the unfinished call is made again"
    );
    counter.calls.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_resumed_run_answers_completed_calls_from_the_journal() {
    let journal = MemoryJournal::new();
    assert_eq!(count_calls_after_a_resume(Some(journal.clone())).await, 1);
    assert_eq!(journal.len(), 2, "both calls recorded once they completed");
    // Without a journal the checkpoint (written after the state) knows
    // nothing of the finished call, and it is made again.
    assert_eq!(count_calls_after_a_resume(None).await, 2);
}
