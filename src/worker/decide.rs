//! The worker's decisions, as plain functions: what a delivery's end means
//! for the queue, and when a run is poison.

use crate::env::Usage;
use crate::machine::event::EventKind;
use crate::machine::{waiting_for, MachineError};
use crate::store::StoreError;

use super::OutcomeStatus;

/// How a delivery ended, to be recorded as the run's outcome.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ended {
    pub(crate) status: OutcomeStatus,
    pub(crate) answer: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) code: Option<String>,
    pub(crate) path: Vec<String>,
    pub(crate) usage: Usage,
}

impl Ended {
    /// Ended without running: given up, or it cannot run here.
    pub(crate) fn failed(status: OutcomeStatus, code: &str, error: String) -> Self {
        Ended {
            status,
            answer: None,
            error: Some(error),
            code: Some(code.to_owned()),
            path: Vec::new(),
            usage: Usage::default(),
        }
    }
}

/// What a worker does with a delivery once its run's stream ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Disposition {
    /// Record this outcome and acknowledge the delivery.
    Record(Ended),
    /// Leave the delivery unacknowledged, to be delivered again after the
    /// lease, noting why: the run did not end, or the store failed.
    Release(String),
    /// Another worker took the run over: stop without writing anything.
    Abandon,
    /// The run waits for these child runs: park it (no outcome) and give
    /// its slot back until the last of them ends.
    Park(Vec<String>),
}

/// The disposition of a run whose stream ended with `last` (its last event;
/// `None` if it ended without one).
pub(crate) fn disposition(last: Option<&EventKind>) -> Disposition {
    match last {
        Some(EventKind::Finished(out)) => Disposition::Record(Ended {
            status: OutcomeStatus::Finished,
            answer: out.answer.clone(),
            error: None,
            code: None,
            path: out.path.clone(),
            usage: out.env.usage,
        }),
        Some(EventKind::Interrupted(out)) => {
            match out.env.interrupt.as_deref().and_then(waiting_for) {
                Some(children) => Disposition::Park(children),
                None => Disposition::Record(Ended {
                    status: OutcomeStatus::Interrupted,
                    answer: out.answer.clone(),
                    error: None,
                    code: None,
                    path: out.path.clone(),
                    usage: out.env.usage,
                }),
            }
        }
        Some(EventKind::Failed(failure)) => match &failure.error {
            MachineError::Store(StoreError::Fenced { .. }) => Disposition::Abandon,
            // The run did not fail; what keeps it failed. Another delivery
            // resumes it from its last checkpoint.
            MachineError::Store(e) => Disposition::Release(format!("store failed: {e}")),
            MachineError::Trace(e) => Disposition::Release(format!("trace failed: {e}")),
            e => Disposition::Record(Ended {
                status: OutcomeStatus::Failed,
                answer: None,
                error: Some(e.to_string()),
                code: Some(e.code()),
                path: failure.path.clone(),
                usage: failure.env.usage,
            }),
        },
        _ => Disposition::Release("the run's stream ended before the run did".to_owned()),
    }
}

/// Whether a run delivered `deliveries` times goes to the dead-letter
/// stream instead of being run again.
pub(crate) fn is_poison(deliveries: u64, max_deliveries: u64) -> bool {
    deliveries > max_deliveries
}

/// What the dead-letter record says went wrong.
pub(crate) fn dead_error(last_error: Option<String>, deliveries: u64) -> String {
    last_error.unwrap_or_else(|| {
        format!(
            "delivered {deliveries} times without ending (its workers stopped while running it)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{Env, Interrupt};
    use crate::machine::event::{RunFailure, RunOutput};
    use crate::machine::WAITING_FOR_CHILDREN;

    fn failed(error: MachineError) -> EventKind {
        EventKind::Failed(Box::new(RunFailure {
            error,
            path: vec!["reasoning".into()],
            env: Env::default(),
            run_id: "r".into(),
        }))
    }

    #[test]
    fn a_finished_run_is_recorded_with_its_answer() {
        let out = RunOutput {
            answer: Some("4".into()),
            path: vec!["reasoning".into(), "answer".into()],
            env: Env::default(),
            run_id: "r".into(),
        };
        match disposition(Some(&EventKind::Finished(Box::new(out)))) {
            Disposition::Record(ended) => {
                assert_eq!(ended.status, OutcomeStatus::Finished);
                assert_eq!(ended.answer.as_deref(), Some("4"));
                assert_eq!(ended.path.len(), 2);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_fenced_write_abandons_and_a_store_failure_releases() {
        let fenced = failed(MachineError::Store(StoreError::Fenced {
            run_id: "r".into(),
            token: 3,
        }));
        assert_eq!(disposition(Some(&fenced)), Disposition::Abandon);
        let down = failed(MachineError::Store(StoreError::backend(
            std::io::Error::other("down"),
        )));
        assert!(matches!(disposition(Some(&down)), Disposition::Release(_)));
        assert!(matches!(disposition(None), Disposition::Release(_)));
    }

    #[test]
    fn the_run_s_own_failure_is_its_outcome() {
        let failure = failed(MachineError::MaxSteps { limit: 3 });
        match disposition(Some(&failure)) {
            Disposition::Record(ended) => {
                assert_eq!(ended.status, OutcomeStatus::Failed);
                assert!(ended.error.is_some_and(|e| e.contains('3')));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_run_waiting_for_its_children_is_parked_and_a_person_s_pause_recorded() {
        let paused = |interrupt: Interrupt| {
            let env = Env {
                interrupt: Some(Box::new(interrupt)),
                ..Env::default()
            };
            EventKind::Interrupted(Box::new(RunOutput {
                answer: None,
                path: Vec::new(),
                env,
                run_id: "p".into(),
            }))
        };
        let mut waiting = Interrupt::new(format!("{WAITING_FOR_CHILDREN}p/2"), "");
        waiting.payload = serde_json::json!({"children": ["p/2/0", "p/2/1"]});
        assert_eq!(
            disposition(Some(&paused(waiting))),
            Disposition::Park(vec!["p/2/0".into(), "p/2/1".into()])
        );
        let person = paused(Interrupt::new("approve", "May I?"));
        assert!(matches!(
            disposition(Some(&person)),
            Disposition::Record(Ended {
                status: OutcomeStatus::Interrupted,
                ..
            })
        ));
    }

    #[test]
    fn poison_after_the_limit() {
        assert!(!is_poison(5, 5));
        assert!(is_poison(6, 5));
        assert!(dead_error(None, 6).contains("6 times"));
        assert_eq!(dead_error(Some("boom".into()), 6), "boom");
    }
}
