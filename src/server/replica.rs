//! Runs across replicas: finding a run here or in the shared logs,
//! writing a run's events through to them, following a run another
//! replica runs, and cancelling one.
//!
//! A server answers every run from a [`RunLog`] in its memory, whoever
//! runs it; for a run another replica runs, that log is a copy this
//! server fills from the shared logs, so readers, `Last-Event-ID` and the
//! reader count work the same for every run.

use std::sync::Arc;
use std::time::Duration;

use super::log::{Driver, RunInfo, RunLog, RunStatus};
use super::run_logs::Entry;
use super::{auth, locked, Server, ServerError};
use crate::agui::AgUiEvent;
use crate::guard::Principal;

impl Server {
    /// The run `run_id`: kept here, or (with [`with_logs`](Self::with_logs))
    /// in the shared logs, then followed here until it ends.
    pub async fn run(&self, run_id: &str) -> Result<Arc<RunLog>, ServerError> {
        if let Some(log) = locked(&self.shared.runs).get(run_id) {
            return Ok(Arc::clone(log));
        }
        let unknown = || ServerError::UnknownRun {
            run_id: run_id.to_owned(),
            kept_secs: self.keep_ended.as_secs(),
        };
        let Some(logs) = &self.logs else {
            return Err(unknown());
        };
        let page = logs
            .read(run_id, 0)
            .await
            .map_err(ServerError::Logs)?
            .ok_or_else(unknown)?;
        let log = {
            let mut runs = locked(&self.shared.runs);
            // Another request may have found it meanwhile: one copy.
            if let Some(log) = runs.get(run_id) {
                return Ok(Arc::clone(log));
            }
            let log = Arc::new(
                RunLog::new(
                    run_id.to_owned(),
                    page.thread_id,
                    false,
                    Driver::Replica,
                    self.max_events,
                )
                .owned_by(page.owner),
            );
            runs.insert(run_id.to_owned(), Arc::clone(&log));
            log
        };
        let (mut status, mut events) = (page.status, page.events);
        // An ended run is read whole now (a page holds a bounded number
        // of events), so its status is right from the first answer.
        while status.ended() && !events.is_empty() {
            copy(&log, events, None);
            match logs.read(run_id, log.info().events).await {
                Ok(Some(page)) => (status, events) = (page.status, page.events),
                Ok(None) => (status, events) = (RunStatus::Failed, Vec::new()),
                Err(e) => {
                    // The follower below goes on reading.
                    tracing::warn!(run_id, error = %e, "reading the shared run logs failed");
                    (status, events) = (RunStatus::Running, Vec::new());
                }
            }
        }
        if status.ended() {
            copy(&log, Vec::new(), Some(status));
            self.forget_later(Arc::clone(&log));
        } else {
            copy(&log, events, None);
            tokio::spawn(self.clone().follow_replica(Arc::clone(&log)));
        }
        Ok(log)
    }

    /// The run `run_id`, if `caller` may see it
    /// ([`with_auth`](Self::with_auth)): 403 for another principal's run.
    pub async fn run_for(
        &self,
        run_id: &str,
        caller: Option<&Principal>,
    ) -> Result<Arc<RunLog>, ServerError> {
        let log = self.run(run_id).await?;
        auth::owned(caller, log.owner(), run_id)?;
        Ok(log)
    }

    /// Cancels run `run_id`: it ends with `RUN_FINISHED` (cancelled). A
    /// run another replica runs stops at its next event there.
    pub async fn cancel(&self, run_id: &str) -> Result<RunInfo, ServerError> {
        self.cancel_for(run_id, None).await
    }

    /// [`cancel`](Self::cancel), if `caller` may: 403 for another
    /// principal's run.
    pub async fn cancel_for(
        &self,
        run_id: &str,
        caller: Option<&Principal>,
    ) -> Result<RunInfo, ServerError> {
        let log = self.run_for(run_id, caller).await?;
        match log.driver() {
            Driver::Here => log.cancel(),
            Driver::Queue => {
                return Err(ServerError::NotCancellable {
                    run_id: run_id.to_owned(),
                })
            }
            Driver::Replica => {
                if let Some(logs) = &self.logs {
                    logs.cancel(run_id).await.map_err(ServerError::Logs)?;
                }
            }
        }
        Ok(log.info())
    }

    /// Appends events to a run's log here and, with shared logs, there;
    /// a cancel asked on another replica cancels the run. A failed shared
    /// write is logged: the run goes on, and readers here miss nothing.
    pub(super) async fn record(
        &self,
        log: &RunLog,
        events: impl IntoIterator<Item = AgUiEvent>,
        status: Option<RunStatus>,
    ) {
        let (first, batch) = log.append(events, status);
        let Some(logs) = &self.logs else { return };
        let entry = Entry {
            run_id: log.run_id(),
            thread_id: log.thread_id(),
            first,
            events: &batch,
            status: log.info().status,
            owner: log.owner(),
        };
        match logs.append(entry).await {
            Ok(true) if log.runs_here() => log.cancel(),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(run_id = %log.run_id(), error = %e, "writing the run's events to the shared logs failed")
            }
        }
    }

    /// Copies the events another replica writes for a run into its log
    /// here until the run ends (or its shared log is gone: then the copy
    /// ends as failed).
    async fn follow_replica(self, log: Arc<RunLog>) {
        let Some(logs) = self.logs.clone() else {
            return;
        };
        let mut pause = Duration::from_millis(10);
        loop {
            let from = log.info().events;
            match logs.read(log.run_id(), from).await {
                Ok(Some(page)) => {
                    let got = !page.events.is_empty();
                    let ended = page.status.ended();
                    // Only a page read after the last event carries the
                    // final status with nothing left to read.
                    copy(&log, page.events, (ended && !got).then_some(page.status));
                    if ended && !got {
                        break;
                    }
                    pause = if got {
                        Duration::from_millis(10)
                    } else {
                        (pause * 2).min(Duration::from_millis(200))
                    };
                }
                Ok(None) => {
                    tracing::warn!(run_id = %log.run_id(), "the run's shared log is gone; its copy here ends");
                    copy(&log, Vec::new(), Some(RunStatus::Failed));
                    break;
                }
                Err(e) => {
                    tracing::warn!(run_id = %log.run_id(), error = %e, "reading the shared run logs failed; trying again");
                    pause = Duration::from_millis(200);
                }
            }
            tokio::time::sleep(pause).await;
        }
        self.forget_later(log);
    }
}

/// Appends events read from the shared logs at their own indexes.
fn copy(log: &RunLog, events: Vec<(usize, Arc<str>)>, status: Option<RunStatus>) {
    let at = events.first().map(|(i, _)| *i);
    log.append_json(at, events.into_iter().map(|(_, e)| e), status);
}
