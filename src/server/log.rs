//! [`RunLog`]: one run's AG-UI events as they were sent, kept so a late
//! or reconnecting client reads them from the start or from where it left
//! off, and the run's status.
//!
//! Events keep the index they were sent with even after the oldest are
//! dropped (a log holds at most `max_events`): `Last-Event-ID` names an
//! index, so a reader resumes at the same event on every replica.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::Stream;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::agui::AgUiEvent;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
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

impl RunStatus {
    /// Its name, as in `GET /runs/{id}`'s `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// The status named `name` ([`as_str`](Self::as_str)'s inverse).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            RunStatus::Running,
            RunStatus::Finished,
            RunStatus::Interrupted,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// Whether the run has ended (any status but running).
    pub fn ended(self) -> bool {
        self != RunStatus::Running
    }
}

/// Who moves a run's events into the log a server keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Driver {
    /// This server runs it.
    Here,
    /// A queue worker runs it; this server follows its events.
    Queue,
    /// Another server replica runs it; this one reads the shared log.
    Replica,
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
    driver: Driver,
    /// The most events kept; older ones are dropped.
    max_events: usize,
    /// The principal that started the run, on a server with auth.
    owner: Option<String>,
}

#[derive(Debug)]
struct Inner {
    /// The events kept, from index `first` on.
    events: VecDeque<Arc<str>>,
    first: usize,
    status: RunStatus,
}

impl Inner {
    /// How many events the run has sent (kept or not).
    fn sent(&self) -> usize {
        self.first + self.events.len()
    }
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
    /// How many events it has sent (the oldest may no longer be kept).
    pub events: usize,
    /// Clients reading its events now.
    pub readers: usize,
}

impl RunLog {
    pub(crate) fn new(
        run_id: String,
        thread_id: String,
        stop_when_unread: bool,
        driver: Driver,
        max_events: usize,
    ) -> Self {
        RunLog {
            run_id,
            thread_id,
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                first: 0,
                status: RunStatus::Running,
            }),
            count: watch::channel(0).0,
            cancel: CancellationToken::new(),
            readers: AtomicUsize::new(0),
            stop_when_unread,
            driver,
            max_events: max_events.max(1),
            owner: None,
        }
    }

    /// The same log, of a run `owner` started.
    pub(crate) fn owned_by(mut self, owner: Option<String>) -> Self {
        self.owner = owner;
        self
    }

    /// The id of the principal that started the run, on a server with
    /// auth ([`Server::with_auth`](super::Server::with_auth)).
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
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

    /// The thread.
    pub fn thread_id(&self) -> &str {
        &self.thread_id
    }

    /// The run's status and counts.
    pub fn info(&self) -> RunInfo {
        let inner = self.inner();
        RunInfo {
            run_id: self.run_id.clone(),
            thread_id: self.thread_id.clone(),
            status: inner.status,
            events: inner.sent(),
            readers: self.readers.load(Ordering::Relaxed),
        }
    }

    /// Whether this server runs it (rather than following a queue worker
    /// or another replica).
    pub fn runs_here(&self) -> bool {
        self.driver == Driver::Here
    }

    pub(crate) fn driver(&self) -> Driver {
        self.driver
    }

    /// Asks the run to stop; it ends with `RUN_FINISHED` (cancelled).
    pub(crate) fn cancel(&self) {
        self.cancel.cancel();
    }

    pub(crate) fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Appends events; the last one of a run sets the status. Answers
    /// the index of the first and the events as kept (JSON), to pass on.
    pub(crate) fn append(
        &self,
        events: impl IntoIterator<Item = AgUiEvent>,
        status: Option<RunStatus>,
    ) -> (usize, Vec<Arc<str>>) {
        // Serializing these types cannot fail: no maps with non-string keys.
        let batch: Vec<Arc<str>> = events
            .into_iter()
            .map(|e| Arc::from(serde_json::to_string(&e).unwrap_or_default()))
            .collect();
        let first = self.append_json(None, batch.iter().cloned(), status);
        (first, batch)
    }

    /// Appends events already in JSON, the first of them at index `at`
    /// if given (events this log already has are skipped, and a gap is
    /// closed by starting after it), else after the last; `status`, if
    /// given, becomes the run's. Answers the index of the first appended.
    pub(crate) fn append_json(
        &self,
        at: Option<usize>,
        events: impl IntoIterator<Item = Arc<str>>,
        status: Option<RunStatus>,
    ) -> usize {
        let mut inner = self.inner();
        let start = inner.sent();
        let at = at.unwrap_or(start);
        if at > start {
            // The oldest events are gone from where they came from: the
            // log goes on from where it can.
            inner.events.clear();
            inner.first = at;
        }
        for (index, event) in (at..).zip(events) {
            if index >= inner.sent() {
                inner.events.push_back(event);
                if inner.events.len() > self.max_events {
                    inner.events.pop_front();
                    inner.first += 1;
                }
            }
        }
        if let Some(status) = status {
            inner.status = status;
        }
        let n = inner.sent();
        drop(inner);
        self.count.send_replace(n);
        start
    }

    fn has_ended(&self) -> bool {
        self.inner().status.ended()
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

    /// The events from index `from` on (or from the oldest kept), each
    /// with its index: those sent so far, then each new one as it comes, ending after the run's last.
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
                    // What was dropped is skipped.
                    at = at.max(inner.first);
                    let batch: Vec<Arc<str>> = inner.events.iter().skip(at - inner.first).cloned().collect();
                    (batch, inner.status.ended())
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
        let log = Arc::new(RunLog::new("r".into(), "t".into(), STOP, Driver::Here, 100));
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
        let log = Arc::new(RunLog::new("r".into(), "t".into(), STOP, Driver::Here, 100));
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
        let log = Arc::new(RunLog::new("r".into(), "t".into(), STOP, Driver::Here, 100));
        log.append([step("a")], None);
        let mut first = Box::pin(log.events(0));
        assert!(first.next().await.is_some());
        let second = Box::pin(log.events(0));
        drop(first);
        assert!(!log.cancelled().is_cancelled(), "a reader is left");
        drop(second);
        assert!(log.cancelled().is_cancelled());

        let kept = Arc::new(RunLog::new(
            "r2".into(),
            "t".into(),
            false,
            Driver::Here,
            100,
        ));
        drop(Box::pin(kept.events(0)));
        assert!(!kept.cancelled().is_cancelled(), "a background run goes on");
    }

    #[tokio::test]
    async fn a_full_log_drops_its_oldest_events_and_keeps_the_indexes() {
        let log = Arc::new(RunLog::new("r".into(), "t".into(), STOP, Driver::Here, 3));
        for name in ["a", "b", "c", "d", "e"] {
            log.append([step(name)], None);
        }
        log.append([], Some(RunStatus::Finished));
        assert_eq!(log.info().events, 5);
        let got: Vec<(usize, Arc<str>)> = log.events(0).collect().await;
        let indexes: Vec<usize> = got.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, [2, 3, 4], "the oldest two are gone");
        assert!(got[0].1.contains("\"c\""));
        let after: Vec<usize> = log.events(4).map(|(i, _)| i).collect().await;
        assert_eq!(after, [4]);
    }

    #[tokio::test]
    async fn events_copied_from_elsewhere_land_at_their_own_index_once() {
        let log = RunLog::new("r".into(), "t".into(), STOP, Driver::Replica, 100);
        let json = |s: &str| Arc::<str>::from(s);
        log.append_json(Some(0), [json("0"), json("1")], None);
        // Read again from 1 (one already here), then a gap to 5.
        log.append_json(Some(1), [json("1"), json("2")], None);
        assert_eq!(log.info().events, 3);
        log.append_json(Some(5), [json("5")], Some(RunStatus::Finished));
        let log = Arc::new(log);
        let got: Vec<(usize, String)> = log
            .events(0)
            .map(|(i, e)| (i, e.to_string()))
            .collect()
            .await;
        assert_eq!(got, [(5, "5".to_owned())]);
        assert_eq!(log.info().status, RunStatus::Finished);
    }

    #[test]
    fn statuses_go_by_their_names() {
        for status in [
            RunStatus::Running,
            RunStatus::Finished,
            RunStatus::Interrupted,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ] {
            assert_eq!(RunStatus::from_name(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert_eq!(RunStatus::from_name("done"), None);
        assert!(!RunStatus::Running.ended() && RunStatus::Interrupted.ended());
    }
}
