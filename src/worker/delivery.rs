//! One delivery of a queue entry, read from the entry's fields: a run
//! submitted, a child run a parent's fork handed out, or a parked parent's
//! wake-up.

use redis::streams::StreamId;

use super::decide::Ended;
use super::OutcomeStatus;
use crate::env::Env;
use crate::machine::{ChildRun, Machine, MachineError, MachineErrorKind};
use crate::store::Store;

/// What a delivery asks the worker to do.
#[derive(Debug, Clone)]
pub(super) enum Work {
    /// Start the run from this env (JSON), or go on from its checkpoint.
    Run(String),
    /// Run (or go on with) a fork's branch.
    Child(Box<ChildRun>),
    /// Go on with a parent whose child runs have all ended.
    Wake,
}

/// One delivery of a queued run.
#[derive(Debug)]
pub(super) struct Delivery {
    pub(super) entry: String,
    pub(super) run_id: String,
    pub(super) machine: String,
    pub(super) work: Work,
    pub(super) deliveries: u64,
    /// The submitter's W3C traceparent, if it sent one.
    pub(super) trace: Option<String>,
}

impl Delivery {
    /// The delivery `entry` describes (its `deliveries`th); `None` for an
    /// entry that can never run (no run or machine, a child that does not
    /// read).
    pub(super) fn read(entry: &StreamId, deliveries: u64) -> Option<Self> {
        let run_id = entry.get::<String>("run")?;
        let machine = entry.get::<String>("machine")?;
        let work = if entry.get::<String>("wake").is_some() {
            Work::Wake
        } else if let Some(child) = entry.get::<String>("child") {
            Work::Child(Box::new(serde_json::from_str(&child).ok()?))
        } else {
            Work::Run(entry.get::<String>("env")?)
        };
        Some(Delivery {
            entry: entry.id.clone(),
            run_id,
            machine,
            work,
            deliveries,
            trace: entry.get::<String>("trace").filter(|t| !t.is_empty()),
        })
    }

    /// The parent run, for a child run.
    pub(super) fn parent(&self) -> Option<&str> {
        match &self.work {
            Work::Child(child) => Some(&child.parent),
            _ => None,
        }
    }
}

/// How a delivery's run opened.
pub(super) enum Opened {
    /// Its events, to run it.
    Events(crate::machine::EventStream),
    /// It cannot run: record this.
    Record(Ended),
    /// Not now: leave the delivery for another try, noting why.
    Release(String),
}

/// Opens the run `d` delivers on `machine` (with the worker's fenced store
/// and journal): started, continued from its checkpoint, or woken.
pub(super) async fn open(machine: &Machine, d: &Delivery, store: &dyn Store) -> Opened {
    let resumed = |r: Result<crate::machine::EventStream, MachineError>| match r {
        Ok(events) => Opened::Events(events),
        Err(e) => Opened::Release(format!("resuming failed: {e}")),
    };
    match &d.work {
        Work::Child(child) => Opened::Events(machine.stream_child((**child).clone()).await),
        // Its children have ended: the empty response re-enters the fork.
        // Woken twice, the second finds it no longer waiting and goes on
        // from its checkpoint.
        Work::Wake => match machine
            .resume_with(&d.run_id, serde_json::Value::Null)
            .await
        {
            Err(e) if e.kind() == MachineErrorKind::NotPaused => {
                resumed(machine.resume(&d.run_id).await)
            }
            other => resumed(other),
        },
        Work::Run(env) => {
            let env: Env = match serde_json::from_str(env) {
                Ok(env) => env,
                Err(e) => {
                    let error = format!("the submitted env is not an Env: {e}");
                    return Opened::Record(Ended::failed(OutcomeStatus::Failed, "bad_env", error));
                }
            };
            match store.get(&d.run_id, None).await {
                Ok(Some(_)) => resumed(machine.resume(&d.run_id).await),
                Ok(None) => Opened::Events(machine.stream_as(d.run_id.as_str(), env)),
                Err(e) => Opened::Release(format!("reading its checkpoint failed: {e}")),
            }
        }
    }
}
