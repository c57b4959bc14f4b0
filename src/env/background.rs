//! [`Background`]: work a state hands off and does not wait for (a
//! notification, an audit log line), tracked so none is lost silently.
//!
//! A task's error or panic is logged at error level with the task's name
//! and counted in `statewise_background_failures_total`; the run goes on
//! either way. Whoever shuts the process down waits for
//! [`Background::idle`], so tasks under way are not cut off.

use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use futures::FutureExt;
use tracing::Instrument;

/// Spawns and tracks fire-and-forget tasks; clones share them.
///
/// ```
/// use statewise::env::Background;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let background = Background::new();
/// background.spawn("notify", async { Err::<(), _>("the webhook answered 500") });
/// background.idle().await;
/// assert_eq!(background.failed(), 1);
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Background {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    running: AtomicUsize,
    failed: AtomicU64,
    idle: tokio::sync::Notify,
}

impl Background {
    /// No tasks yet.
    pub fn new() -> Self {
        Background::default()
    }

    /// Runs `task` on its own tokio task, in the current span. Needs a
    /// tokio runtime (a state's run has one).
    pub fn spawn<F, E>(&self, name: &str, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        let inner = Arc::clone(&self.inner);
        inner.running.fetch_add(1, Ordering::SeqCst);
        let name = name.to_owned();
        let span = tracing::info_span!("statewise.background", task = %name);
        tokio::spawn(
            async move {
                let failure = match AssertUnwindSafe(task).catch_unwind().await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(panic) => Some(crate::panic::panic_message(&*panic)),
                };
                if let Some(error) = failure {
                    tracing::error!(task = %name, %error, "a background task failed");
                    crate::metric::background_failed(&name);
                    inner.failed.fetch_add(1, Ordering::SeqCst);
                }
                if inner.running.fetch_sub(1, Ordering::SeqCst) == 1 {
                    inner.idle.notify_waiters();
                }
            }
            .instrument(span),
        );
    }

    /// Tasks still running.
    pub fn running(&self) -> usize {
        self.inner.running.load(Ordering::SeqCst)
    }

    /// Tasks that failed (returned an error or panicked) so far.
    pub fn failed(&self) -> u64 {
        self.inner.failed.load(Ordering::SeqCst)
    }

    /// Waits until no task is running.
    pub async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if self.running() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_and_panics_are_counted_and_successes_are_not() {
        let background = Background::new();
        background.spawn("ok", async { Ok::<(), String>(()) });
        background.spawn("err", async { Err::<(), _>("boom") });
        background.spawn("panic", async {
            if background_panics() {
                panic!("a bug");
            }
            Ok::<(), String>(())
        });
        background.idle().await;
        assert_eq!((background.running(), background.failed()), (0, 2));
    }

    fn background_panics() -> bool {
        true
    }
}
