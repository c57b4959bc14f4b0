//! Per-tool time limits and retries ([`ToolPolicy`]), and [`Blocking`], which
//! runs a synchronous tool on tokio's blocking threads.
//!
//! A policy is data the toolbox holds per tool name, applied around each
//! call: a call past its time limit fails with [`ToolError::TimedOut`], and
//! a failure worth another try (the tool's own error or a time limit, never
//! a wrong name or bad arguments) is tried again after a pause. A blocking
//! tool must not run on the async threads, where it would stall every
//! other run of the process until it returned.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use schemars::JsonSchema;

use super::{Tool, ToolContext, ToolError};

/// How the toolbox runs one tool's calls: a time limit per attempt and how
/// often a failed call is tried again.
///
/// ```
/// use std::time::Duration;
/// use statewise::tool::{ToolPolicy, ToolRegistry, Toolbox};
///
/// let tools = Toolbox::new(ToolRegistry::new())
///     .policy("search", ToolPolicy::default().timeout(Duration::from_secs(5)).retries(2));
/// assert_eq!(tools.policy_of("search").retries, 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ToolPolicy {
    /// The longest one attempt may take; `None` for no limit.
    pub timeout: Option<Duration>,
    /// Further attempts after a failed one.
    pub retries: u32,
    /// The pause before the first retry, doubled before each next one.
    pub backoff: Duration,
}

impl Default for ToolPolicy {
    /// No time limit and no retry: a tool's call runs once, as long as it
    /// takes.
    fn default() -> Self {
        ToolPolicy {
            timeout: None,
            retries: 0,
            backoff: Duration::from_millis(100),
        }
    }
}

impl ToolPolicy {
    /// Sets the time limit of one attempt.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Sets how often a failed call is tried again.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sets the pause before the first retry.
    pub fn backoff(mut self, pause: Duration) -> Self {
        self.backoff = pause;
        self
    }

    /// Runs `attempt` on `arguments` as the policy says: each try within
    /// the time limit, retried while retries are left and the failure is
    /// worth it. The arguments are copied only for a try that may be
    /// followed by another.
    pub(super) async fn run<F, Fut>(
        &self,
        tool: &str,
        mut arguments: Value,
        ctx: &ToolContext,
        attempt: F,
    ) -> Result<Value, ToolError>
    where
        F: Fn(Value, ToolContext) -> Fut,
        Fut: Future<Output = Result<Value, ToolError>>,
    {
        let mut pause = self.backoff;
        let mut tries = 0;
        loop {
            let these = match tries < self.retries {
                true => arguments.clone(),
                false => std::mem::take(&mut arguments),
            };
            let this_ctx = ctx.attempt(self.timeout);
            // An abandoned attempt (time limit, or the run dropped) tells
            // the tool's work outside its future to stop.
            let _cancel = this_ctx.cancel.clone().drop_guard();
            let outcome = match self.timeout {
                Some(limit) => tokio::time::timeout(limit, attempt(these, this_ctx))
                    .await
                    .unwrap_or_else(|_| {
                        Err(ToolError::TimedOut {
                            tool: tool.to_owned(),
                            after: limit,
                        })
                    }),
                None => attempt(these, this_ctx).await,
            };
            match outcome {
                Err(e) if tries < self.retries && retryable(&e) => {
                    tries += 1;
                    tokio::time::sleep(pause).await;
                    pause = pause.saturating_mul(2);
                }
                outcome => return outcome,
            }
        }
    }
}

/// Whether trying again could help: not for a name or arguments that are
/// wrong, which stay wrong.
fn retryable(error: &ToolError) -> bool {
    matches!(error, ToolError::Failed { .. } | ToolError::TimedOut { .. })
}

/// A tool whose work blocks the thread (file system, a C library, heavy
/// computation): [`Blocking`] runs it on tokio's blocking threads.
pub trait BlockingTool: Send + Sync + 'static {
    /// The arguments, deserialized from the model's JSON.
    type Args: DeserializeOwned + JsonSchema + Send + 'static;
    /// The result, serialized into the observation.
    type Output: Serialize + Send + 'static;
    /// The tool's failure.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The name the model calls it by.
    fn name(&self) -> &str;
    /// What it does, for the model.
    fn description(&self) -> &str;
    /// JSON Schema of [`BlockingTool::Args`]: derived from the type unless
    /// written by hand.
    fn parameters(&self) -> Value {
        super::parameters_of::<Self::Args>()
    }
    /// Runs the tool, blocking the calling thread; a long loop checks
    /// [`ToolContext::is_cancelled`] and stops early.
    fn call(&self, args: Self::Args, ctx: ToolContext) -> Result<Self::Output, Self::Error>;
}

/// Runs a [`BlockingTool`] on tokio's blocking threads
/// (`spawn_blocking`), so it cannot stall the runs sharing the async
/// threads; a panic in it is reported as the tool's, like any tool's.
///
/// ```
/// use statewise::tool::{Blocking, BlockingTool, ToolContext, ToolRegistry};
///
/// struct Checksum;
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Args {
///     /// The file to sum.
///     path: String,
/// }
///
/// impl BlockingTool for Checksum {
///     type Args = Args;
///     type Output = u32;
///     type Error = std::io::Error;
///     fn name(&self) -> &str { "checksum" }
///     fn description(&self) -> &str { "Sums a file's bytes." }
///     fn call(&self, args: Args, _ctx: ToolContext) -> Result<u32, std::io::Error> {
///         Ok(std::fs::read(args.path)?.iter().map(|b| u32::from(*b)).sum())
///     }
/// }
///
/// let tools = ToolRegistry::new().with(Blocking::new(Checksum));
/// ```
#[derive(Debug)]
pub struct Blocking<T> {
    inner: Arc<T>,
}

impl<T> Blocking<T> {
    /// Wraps `tool`.
    pub fn new(tool: T) -> Self {
        Blocking {
            inner: Arc::new(tool),
        }
    }

    /// The wrapped tool.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The wrapped tool, if this is its only handle.
    pub fn into_inner(self) -> Result<T, Self> {
        Arc::try_unwrap(self.inner).map_err(|inner| Blocking { inner })
    }
}

impl<T: BlockingTool> Tool for Blocking<T> {
    type Args = T::Args;
    type Output = T::Output;
    type Error = T::Error;

    fn name(&self) -> &str {
        self.inner.name()
    }
    fn description(&self) -> &str {
        self.inner.description()
    }
    fn parameters(&self) -> Value {
        self.inner.parameters()
    }
    async fn call(&self, args: T::Args, ctx: ToolContext) -> Result<T::Output, T::Error> {
        let tool = Arc::clone(&self.inner);
        match tokio::task::spawn_blocking(move || tool.call(args, ctx)).await {
            Ok(outcome) => outcome,
            // Raised again here, the toolbox reports it as this tool's panic.
            Err(joined) => match joined.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(cancelled) => panic!("`{}` was cancelled: {cancelled}", self.inner.name()),
            },
        }
    }
}
