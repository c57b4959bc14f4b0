//! Scheduled runs: a [`Schedule`] starts a background run of the server's
//! agent whenever its cron expression fires (croner parses it, seconds
//! optional). What a firing does while the last run is still going is
//! [`Overlap`]'s, decided by [`on_fire`], a plain function.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use croner::Cron;

use super::{RunStatus, Server};
use crate::agui::RunAgentInput;

/// What a firing does while the schedule's last run is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overlap {
    /// Nothing: the firing is skipped.
    Skip,
    /// One run waits and starts when the running one ends; further
    /// firings meanwhile are skipped.
    Queue,
}

/// What a firing does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fire {
    Start,
    Skip,
    Queue,
}

/// Decides a firing, given whether a run is still going and whether one
/// already waits.
pub(crate) fn on_fire(running: bool, queued: bool, overlap: Overlap) -> Fire {
    match (running, overlap) {
        (false, _) => Fire::Start,
        (true, Overlap::Queue) if !queued => Fire::Queue,
        (true, _) => Fire::Skip,
    }
}

/// A cron expression that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("schedule {name}: {expression:?} is not a cron expression (\"*/5 * * * *\", or with seconds first): {reason}")]
pub struct ScheduleError {
    name: String,
    expression: String,
    reason: String,
}

/// Runs of the server's agent on a cron schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    name: String,
    cron: Cron,
    input: RunAgentInput,
    overlap: Overlap,
}

impl Schedule {
    /// A schedule `name` firing at `cron` (five fields, or six with
    /// seconds first), each run starting from `input` (its thread is the
    /// schedule's name; each run gets an id of its own). Overlapping runs
    /// are skipped.
    pub fn new(
        name: impl Into<String>,
        cron: &str,
        input: RunAgentInput,
    ) -> Result<Self, ScheduleError> {
        let name = name.into();
        let parsed = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(cron)
            .map_err(|e| ScheduleError {
                name: name.clone(),
                expression: cron.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Schedule {
            name,
            cron: parsed,
            input,
            overlap: Overlap::Skip,
        })
    }

    /// What a firing does while the last run still runs.
    pub fn overlap(mut self, overlap: Overlap) -> Self {
        self.overlap = overlap;
        self
    }
}

/// A running schedule: its counts, and stopping it.
#[derive(Debug, Clone)]
pub struct ScheduleHandle {
    counts: Arc<Counts>,
    task: Arc<tokio::task::AbortHandle>,
}

#[derive(Debug, Default)]
struct Counts {
    started: AtomicU64,
    skipped: AtomicU64,
    queued: AtomicU64,
}

impl ScheduleHandle {
    /// Runs started so far.
    pub fn started(&self) -> u64 {
        self.counts.started.load(Ordering::SeqCst)
    }

    /// Firings skipped because a run was still going.
    pub fn skipped(&self) -> u64 {
        self.counts.skipped.load(Ordering::SeqCst)
    }

    /// Firings that queued a run to start when the last one ends
    /// ([`Overlap::Queue`]).
    pub fn queued(&self) -> u64 {
        self.counts.queued.load(Ordering::SeqCst)
    }

    /// Stops firing (runs under way go on).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Server {
    /// Starts firing `schedule` on this server's runtime.
    pub fn schedule(&self, schedule: Schedule) -> ScheduleHandle {
        let counts = Arc::new(Counts::default());
        let server = self.clone();
        let task = tokio::spawn(fire(server, schedule, Arc::clone(&counts)));
        ScheduleHandle {
            counts,
            task: Arc::new(task.abort_handle()),
        }
    }
}

async fn fire(server: Server, schedule: Schedule, counts: Arc<Counts>) {
    let mut last: Option<Arc<super::RunLog>> = None;
    let mut queued = false;
    loop {
        let now = chrono::Utc::now();
        let Ok(next) = schedule.cron.find_next_occurrence(&now, false) else {
            tracing::warn!(schedule = %schedule.name, "the schedule never fires again");
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        // A queued run starts as soon as the running one ends.
        let ended = async {
            match (&last, queued) {
                (Some(log), true) => log.ended().await,
                _ => std::future::pending().await,
            }
        };
        let fired = tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = ended => false,
        };
        // The schedule's latest run may be another replica's.
        last = server.latest_run(&schedule.name, last).await;
        let running = last
            .as_ref()
            .is_some_and(|l| l.info().status == RunStatus::Running);
        let decision = if fired {
            on_fire(running, queued, schedule.overlap)
        } else {
            Fire::Start
        };
        match decision {
            Fire::Skip => {
                counts.skipped.fetch_add(1, Ordering::SeqCst);
                tracing::info!(schedule = %schedule.name, "skipped: the last run is still going");
            }
            Fire::Queue => {
                counts.queued.fetch_add(1, Ordering::SeqCst);
                queued = true;
            }
            Fire::Start => {
                queued = false;
                let mut input = schedule.input.clone();
                input.thread_id = schedule.name.clone();
                // The same id on every replica for the same firing (the
                // slot's time, or the run it waited for), so one starts it.
                input.run_id = match (fired, &last) {
                    (false, Some(after)) => format!("{}-after-{}", schedule.name, after.run_id()),
                    _ => format!("{}-{}", schedule.name, next.timestamp_millis()),
                };
                if !server.claim(&input.run_id, &schedule.name).await {
                    counts.skipped.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                match server
                    .start_new(input, server.background_stops_when_unread, true, None)
                    .await
                {
                    Ok(log) => {
                        counts.started.fetch_add(1, Ordering::SeqCst);
                        last = Some(log);
                    }
                    Err(e) => {
                        tracing::error!(schedule = %schedule.name, error = %e, "a scheduled run could not start")
                    }
                }
            }
        }
    }
}

impl Server {
    /// Whether this replica starts run `run_id` of schedule `thread_id`:
    /// without shared logs, yes; with them, if its claim is won. A
    /// failed claim starts nothing (a run twice is worse than a firing
    /// missed), and says so.
    async fn claim(&self, run_id: &str, thread_id: &str) -> bool {
        let Some(logs) = &self.logs else { return true };
        match logs.claim(run_id, thread_id).await {
            Ok(won) => {
                if !won {
                    tracing::info!(run_id, "skipped: another replica started this firing");
                }
                won
            }
            Err(e) => {
                tracing::error!(run_id, error = %e, "claiming a scheduled run failed; not started");
                false
            }
        }
    }

    /// The schedule's latest run: `last` (started here), or the run a
    /// replica started since, read from the shared logs.
    async fn latest_run(
        &self,
        thread_id: &str,
        last: Option<Arc<super::RunLog>>,
    ) -> Option<Arc<super::RunLog>> {
        let Some(logs) = &self.logs else { return last };
        let latest = match logs.latest(thread_id).await {
            Ok(Some(run_id)) => run_id,
            _ => return last,
        };
        if last.as_ref().is_some_and(|l| l.run_id() == latest) {
            return last;
        }
        self.run(&latest).await.ok().or(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_firing_starts_skips_or_queues() {
        assert_eq!(on_fire(false, false, Overlap::Skip), Fire::Start);
        assert_eq!(on_fire(true, false, Overlap::Skip), Fire::Skip);
        assert_eq!(on_fire(true, false, Overlap::Queue), Fire::Queue);
        assert_eq!(on_fire(true, true, Overlap::Queue), Fire::Skip);
        assert_eq!(on_fire(false, true, Overlap::Queue), Fire::Start);
    }

    #[test]
    fn a_bad_expression_is_a_typed_error_naming_it() {
        let e = Schedule::new("nightly", "every day", RunAgentInput::default()).unwrap_err();
        assert!(e.to_string().contains("\"every day\""), "{e}");
        assert!(Schedule::new("often", "*/2 * * * * *", RunAgentInput::default()).is_ok());
    }
}
