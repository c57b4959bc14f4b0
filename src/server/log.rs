//! [`RunLog`]: one run's AG-UI events as they were sent, kept so a late
//! or reconnecting client reads them from the start or from where it left
//! off, and the run's status.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::Stream;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::agui::AgUiEvent;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunStatus {
    /// It is running.
    Running,
    /// It finished.
    Finished,
    /// It paused for a person or for client tools.
    Interrupted,
    /// It failed.
    Failed,
    /// It was cancelled.
    Cancelled,
}

/// One run's events (each as the JSON sent) and its status.
#[derive(Debug)]
pub struct RunLog {
    run_id: String,
    thread_id: String,
    inner: Mutex<Inner>,
    /// The number of events, for the readers waiting on more.
    count: watch::Sender<usize>,
    cancel: CancellationToken,
    readers: AtomicUsize,
    /// Whether the last reader leaving before the end cancels the run.
    stop_when_unread: bool,
    /// Whether a queue worker runs it.
    queued: bool,
}

#[derive(Debug)]
struct Inner {
    events: Vec<Arc<str>>,
    status: RunStatus,
}

/// What `GET /runs/{id}` answers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    /// The AG-UI run id.
    pub run_id: String,
    /// The thread.
    pub thread_id: String,
    /// Where it is.
    pub status: RunStatus,
    /// How many events it has sent.
    pub events: usize,
    /// Clients reading its events now.
    pub readers: usize,
}

impl RunLog {
    pub(crate) fn new(
        run_id: String,
        thread_id: String,
        stop_when_unread: bool,
        queued: bool,
    ) -> Self {
        RunLog {
            run_id,
            thread_id,
            inner: Mutex::new(Inner {
                events: Vec::new(),
                status: RunStatus::Running,
            }),
            count: watch::channel(0).0,
            cancel: CancellationToken::new(),
            readers: AtomicUsize::new(0),
            stop_when_unread,
            queued,
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Only pushes and reads happen under the lock; none can panic
        // halfway, so a poisoned lock's data is whole.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The AG-UI run id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The run's status and counts.
    pub fn info(&self) -> RunInfo {
        let inner = self.inner();
        RunInfo {
            run_id: self.run_id.clone(),
            thread_id: self.thread_id.clone(),
            status: inner.status,
            events: inner.events.len(),
            readers: self.readers.load(Ordering::Relaxed),
        }
    }

    /// Whether a queue worker runs it (and the server only follows it).
    pub fn queued(&self) -> bool {
        self.queued
    }

    /// Asks the run to stop; it ends with `RUN_FINISHED` (cancelled).
    pub(crate) fn cancel(&self) {
        self.cancel.cancel();
    }

    pub(crate) fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Appends events; the last one of a run sets the status.
    pub(crate) fn append(
        &self,
        events: impl IntoIterator<Item = AgUiEvent>,
        status: Option<RunStatus>,
    ) {
        let mut inner = self.inner();
        for event in events {
            // Serializing these types cannot fail: no maps with non-string keys.
            let json = serde_json::to_string(&event).unwrap_or_default();
            inner.events.push(Arc::from(json));
        }
        if let Some(status) = status {
            inner.status = status;
        }
        let n = inner.events.len();
        drop(inner);
        self.count.send_replace(n);
    }

    fn has_ended(&self) -> bool {
        self.inner().status != RunStatus::Running
    }

    /// Waits until the run has ended, without reading its events (so
    /// without counting as a reader).
    pub(crate) async fn ended(&self) {
        let mut count = self.count.subscribe();
        while !self.has_ended() {
            if count.changed().await.is_err() {
                return;
            }
        }
    }

    /// The events from index `from` on, each with its index: those sent
    /// so far, then each new one as it comes, ending after the run's last.
    /// While it is read, the run counts a reader; for a run that stops
    /// when unread, the last reader leaving before the run ended cancels
    /// it.
    pub fn events(
        self: &Arc<Self>,
        from: usize,
    ) -> impl Stream<Item = (usize, Arc<str>)> + Send + 'static {
        let log = Arc::clone(self);
        let mut count = self.count.subscribe();
        let reader = Reader::new(Arc::clone(self));
        async_stream::stream! {
            let _reader = reader;
            let mut at = from;
            loop {
                let (batch, ended) = {
                    let inner = log.inner();
                    let batch: Vec<Arc<str>> = inner.events.get(at..).map(<[_]>::to_vec).unwrap_or_default();
                    (batch, inner.status != RunStatus::Running)
                };
                for event in batch {
                    yield (at, event);
                    at += 1;
                }
                if ended && at >= log.count.borrow().to_owned() {
                    break;
                }
                if count.changed().await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Counts a reader while alive; the last one gone before the run ended
/// cancels it, if so configured.
struct Reader {
    log: Arc<RunLog>,
}

impl Reader {
    fn new(log: Arc<RunLog>) -> Self {
        log.readers.fetch_add(1, Ordering::Relaxed);
        Reader { log }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let left = self.log.readers.fetch_sub(1, Ordering::Relaxed) - 1;
        if left == 0 && self.log.stop_when_unread && !self.log.has_ended() {
            tracing::info!(run_id = %self.log.run_id, "the run's last client left; cancelling it");
            self.log.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    const STOP: bool = true;

    fn step(name: &str) -> AgUiEvent {
        AgUiEvent::StepStarted {
            step_name: name.into(),
        }
    }

    #[tokio::test]
    async fn a_reader_gets_what_was_sent_then_what_comes_and_ends_with_the_run() {
        let log = Arc::new(RunLog::new("r".into(), "t".into(), STOP, false));
        log.append([step("a"), step("b")], None);
        let reading = tokio::spawn({
            let log = Arc::clone(&log);
            async move { log.events(1).collect::<Vec<_>>().await }
        });
        tokio::task::yield_now().await;
        log.append([step("c")], Some(RunStatus::Finished));
        let got = reading.await.unwrap();
        let indexes: Vec<usize> = got.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, [1, 2]);
        assert!(got[1].1.contains("\"c\""));
        assert_eq!(log.info().readers, 0);
    }

    #[tokio::test]
    async fn waiting_for_the_end_is_not_reading() {
        let log = Arc::new(RunLog::new("r".into(), "t".into(), STOP, false));
        let waiting = tokio::spawn({
            let log = Arc::clone(&log);
            async move { log.ended().await }
        });
        tokio::task::yield_now().await;
        assert_eq!(log.info().readers, 0);
        assert!(!waiting.is_finished());
        log.append([step("end")], Some(RunStatus::Finished));
        waiting.await.unwrap();
        assert!(!log.cancelled().is_cancelled());
    }

    #[tokio::test]
    async fn the_last_reader_leaving_cancels_a_run_that_stops_when_unread() {
        let log = Arc::new(RunLog::new("r".into(), "t".into(), STOP, false));
        log.append([step("a")], None);
        let mut first = Box::pin(log.events(0));
        assert!(first.next().await.is_some());
        let second = Box::pin(log.events(0));
        drop(first);
        assert!(!log.cancelled().is_cancelled(), "a reader is left");
        drop(second);
        assert!(log.cancelled().is_cancelled());

        let kept = Arc::new(RunLog::new("r2".into(), "t".into(), false, false));
        drop(Box::pin(kept.events(0)));
        assert!(!kept.cancelled().is_cancelled(), "a background run goes on");
    }
}
