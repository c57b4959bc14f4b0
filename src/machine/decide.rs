//! The machine's decisions, as plain functions: which state to enter,
//! whether a state cut off restarts, where a state that ended goes, and
//! whether the run goes on.
//!
//! The driver (`driver.rs`) does the I/O: it polls states, keeps time,
//! writes traces and checkpoints. Everything it decides, it asks here, so
//! every decision is unit-tested without a runtime.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::error::{MachineError, Resource};
use crate::env::{Env, ErrorRecord};
use crate::state::{Next, State, StateError};

/// The limits a run is held to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) max_steps: u32,
    pub(super) state_retries: u32,
    pub(super) state_timeout: Option<Duration>,
    pub(super) deadline: Option<Duration>,
    pub(super) max_tokens: Option<u64>,
    pub(super) max_cost: Option<f64>,
}

impl Limits {
    /// The budget `env` has gone over, if any.
    pub(super) fn over_budget(&self, env: &Env) -> Option<MachineError> {
        let used = env.usage.total_tokens();
        if let Some(limit) = self.max_tokens.filter(|l| used > *l) {
            return Some(MachineError::Budget {
                resource: Resource::Tokens,
                limit: limit as f64,
                used: used as f64,
            });
        }
        let cost = env.usage.cost;
        self.max_cost
            .filter(|l| cost > *l)
            .map(|limit| MachineError::Budget {
                resource: Resource::Cost,
                limit,
                used: cost,
            })
    }
}

/// Why a state's attempt ended early.
#[derive(Debug)]
pub(super) enum Failure {
    /// The state failed (a timeout of its own included).
    State(StateError),
    /// The run's deadline passed.
    Deadline(Duration),
}

/// The state to enter next, or why the run cannot: the name is unknown
/// (the error lists the known ones) or the step limit is reached.
pub(super) fn enter<'s>(
    states: &'s BTreeMap<String, Arc<dyn State>>,
    name: &str,
    from: Option<&str>,
    env: &Env,
    limits: &Limits,
) -> Result<&'s Arc<dyn State>, MachineError> {
    let state = states.get(name).ok_or_else(|| MachineError::UnknownState {
        name: name.to_owned(),
        from: from.map(str::to_owned),
        known: states.keys().cloned().collect(),
    })?;
    if env.step >= limits.max_steps {
        return Err(MachineError::MaxSteps {
            limit: limits.max_steps,
        });
    }
    Ok(state)
}

/// The sooner of the state's and the run's deadlines, with its length and
/// whether it is the run's.
pub(super) fn earliest(
    state: Option<(Instant, Duration)>,
    run: Option<(Instant, Duration)>,
) -> Option<(Instant, Duration, bool)> {
    match (state, run) {
        (Some((s, sd)), Some((r, rd))) => Some(if r <= s {
            (r, rd, true)
        } else {
            (s, sd, false)
        }),
        (Some((s, sd)), None) => Some((s, sd, false)),
        (None, Some((r, rd))) => Some((r, rd, true)),
        (None, None) => None,
    }
}

/// What to do once a state's attempt has ended.
#[derive(Debug)]
pub(super) enum Attempt {
    /// Run the state again from the env it started with: a model stream
    /// was cut after it had streamed, so nothing it wrote is kept twice.
    Restart {
        /// 1 for the first restart.
        attempt: u32,
        /// What cut it off.
        reason: String,
    },
    /// The state is done, well or not.
    Settled(Option<Failure>),
}

/// Whether the attempt that ended with `failure` (after `attempts`
/// restarts) restarts: a transient model error after tokens were streamed,
/// while restarts are left and the env it started with was kept.
pub(super) fn after_attempt(
    failure: Option<Failure>,
    attempts: u32,
    snapshot_kept: bool,
    limits: &Limits,
) -> Attempt {
    match failure {
        Some(Failure::State(StateError::Model(e)))
            if snapshot_kept
                && e.is_transient()
                && e.emitted()
                && attempts < limits.state_retries =>
        {
            Attempt::Restart {
                attempt: attempts + 1,
                reason: e.to_string(),
            }
        }
        failure => Attempt::Settled(failure),
    }
}

/// Where a settled state sends the run.
#[derive(Debug)]
pub(super) enum Route {
    /// Its transition's choice.
    To(Next),
    /// It failed, and its `on_error` named where to go; the error is
    /// recorded in the env.
    Recovered(Next, ErrorRecord),
    /// The run fails.
    Fail(MachineError),
}

/// Where `state` (named `name`, at `step`), settled with `failure`, sends
/// the run: its transition, its error route, or a failure.
pub(super) fn route(
    state: &dyn State,
    name: &str,
    step: u32,
    env: &Env,
    failure: Option<Failure>,
) -> Route {
    match failure {
        None => Route::To(state.transition(env)),
        Some(Failure::Deadline(after)) => Route::Fail(MachineError::Deadline { after }),
        Some(Failure::State(source)) => match state.on_error(&source) {
            Some(next) => Route::Recovered(next, ErrorRecord::new(step, name, &source)),
            None => Route::Fail(MachineError::State {
                state: name.to_owned(),
                source,
            }),
        },
    }
}

/// What the run does after a state routed it to `next`.
#[derive(Debug, PartialEq)]
pub(super) enum Then {
    /// The run is over.
    End,
    /// A single step ([`Machine::step`](super::Machine::step)) stops
    /// before entering `next`.
    Pause(Next),
    /// Enter this state.
    Enter(Arc<str>),
}

/// Whether the run goes on to `next`: not over its budgets, and not a
/// single step.
pub(super) fn then(
    next: Next,
    env: &Env,
    limits: &Limits,
    single_step: bool,
) -> Result<Then, MachineError> {
    if let Some(error) = limits.over_budget(env) {
        return Err(error);
    }
    Ok(match next {
        Next::End => Then::End,
        next @ Next::To(_) if single_step => Then::Pause(next),
        Next::To(to) => Then::Enter(Arc::from(&*to)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelError;
    use crate::state::FnState;

    fn limits() -> Limits {
        Limits {
            max_steps: 3,
            state_retries: 2,
            state_timeout: None,
            deadline: None,
            max_tokens: None,
            max_cost: None,
        }
    }

    fn states() -> BTreeMap<String, Arc<dyn State>> {
        let mut states: BTreeMap<String, Arc<dyn State>> = BTreeMap::new();
        for name in ["plan", "act"] {
            states.insert(
                name.to_owned(),
                Arc::new(FnState::new(
                    name,
                    |_: &mut Env| Ok(()),
                    |_: &Env| Next::End,
                )),
            );
        }
        states
    }

    fn cut(chunks: usize) -> Failure {
        Failure::State(StateError::Model(ModelError::StreamCut {
            provider: "p".into(),
            chunks,
            message: "reset".into(),
        }))
    }

    #[test]
    fn enter_a_known_state_within_the_step_limit() {
        let states = states();
        let env = Env::new();
        let state = enter(&states, "act", None, &env, &limits()).unwrap();
        assert_eq!(state.name(), "act");

        let Err(err) = enter(&states, "nope", Some("plan"), &env, &limits()) else {
            panic!("an unknown name is refused");
        };
        let MachineError::UnknownState { name, from, known } = &err else {
            panic!("{err:?}");
        };
        assert_eq!((name.as_str(), from.as_deref()), ("nope", Some("plan")));
        assert_eq!(known, &["act", "plan"]);
        assert!(err.to_string().contains("registered states: act, plan"));

        let env = Env {
            step: 3,
            ..Env::new()
        };
        let Err(err) = enter(&states, "act", None, &env, &limits()) else {
            panic!("the step limit is kept");
        };
        assert!(matches!(err, MachineError::MaxSteps { limit: 3 }));
    }

    #[test]
    fn a_stream_cut_after_tokens_restarts_while_restarts_are_left() {
        let l = limits();
        let Attempt::Restart { attempt, reason } = after_attempt(Some(cut(3)), 0, true, &l) else {
            panic!("should restart");
        };
        assert_eq!(attempt, 1);
        assert!(reason.contains("cut after 3 chunks"), "{reason}");
        // The second restart is the last.
        assert!(matches!(
            after_attempt(Some(cut(3)), 1, true, &l),
            Attempt::Restart { attempt: 2, .. }
        ));
        assert!(matches!(
            after_attempt(Some(cut(3)), 2, true, &l),
            Attempt::Settled(Some(Failure::State(_)))
        ));
    }

    #[test]
    fn other_endings_settle() {
        let l = limits();
        // Nothing streamed yet: the model layer retries that, not the machine.
        assert!(matches!(
            after_attempt(Some(cut(0)), 0, true, &l),
            Attempt::Settled(Some(_))
        ));
        // No env kept to restart from (state_retries 0).
        assert!(matches!(
            after_attempt(Some(cut(3)), 0, false, &l),
            Attempt::Settled(Some(_))
        ));
        // Not transient.
        let config = Failure::State(StateError::Model(ModelError::Config {
            provider: "p".into(),
            message: "no key".into(),
        }));
        assert!(matches!(
            after_attempt(Some(config), 0, true, &l),
            Attempt::Settled(Some(_))
        ));
        let deadline = Failure::Deadline(Duration::from_secs(1));
        assert!(matches!(
            after_attempt(Some(deadline), 0, true, &l),
            Attempt::Settled(Some(Failure::Deadline(_)))
        ));
        assert!(matches!(
            after_attempt(None, 0, true, &l),
            Attempt::Settled(None)
        ));
    }

    #[test]
    fn routes_by_transition_error_route_or_failure() {
        let to_act = FnState::new("plan", |_: &mut Env| Ok(()), |_: &Env| Next::to("act"));
        let env = Env::new();
        assert!(matches!(
            route(&to_act, "plan", 1, &env, None),
            Route::To(Next::To(ref n)) if n == "act"
        ));
        let failed = || Failure::State(StateError::custom("disk full"));
        // Without an error route the run fails, naming the state.
        let Route::Fail(MachineError::State { state, .. }) =
            route(&to_act, "plan", 1, &env, Some(failed()))
        else {
            panic!("should fail");
        };
        assert_eq!(state, "plan");
        // With one, the error is recorded and the run goes on.
        let recovering = Recovering;
        let Route::Recovered(next, record) = route(&recovering, "r", 4, &env, Some(failed()))
        else {
            panic!("should recover");
        };
        assert_eq!(next, Next::to("apology"));
        assert_eq!((record.step, record.state.as_str()), (4, "r"));
        assert!(matches!(
            route(
                &recovering,
                "r",
                4,
                &env,
                Some(Failure::Deadline(Duration::from_secs(2)))
            ),
            Route::Fail(MachineError::Deadline { .. })
        ));
    }

    /// Goes to `apology` on any error.
    struct Recovering;

    impl State for Recovering {
        fn name(&self) -> &str {
            "r"
        }
        fn run<'a>(&'a self, _env: &'a mut Env) -> crate::state::EmitStream<'a> {
            Box::pin(futures::stream::empty())
        }
        fn on_error(&self, _error: &StateError) -> Option<Next> {
            Some(Next::to("apology"))
        }
        fn transition(&self, _env: &Env) -> Next {
            Next::End
        }
    }

    #[test]
    fn then_ends_pauses_enters_or_stops_on_budget() {
        let l = limits();
        let env = Env::new();
        assert_eq!(then(Next::End, &env, &l, false).unwrap(), Then::End);
        assert_eq!(
            then(Next::to("act"), &env, &l, false).unwrap(),
            Then::Enter(Arc::from("act"))
        );
        assert_eq!(
            then(Next::to("act"), &env, &l, true).unwrap(),
            Then::Pause(Next::to("act"))
        );

        let mut spent = Env::new();
        spent.usage.prompt_tokens = 90;
        spent.usage.completion_tokens = 20;
        spent.usage.cost = 0.5;
        let tokens = Limits {
            max_tokens: Some(100),
            ..l
        };
        let err = then(Next::End, &spent, &tokens, false).unwrap_err();
        assert!(matches!(
            err,
            MachineError::Budget {
                resource: Resource::Tokens,
                ..
            }
        ));
        let cost = Limits {
            max_cost: Some(0.25),
            ..l
        };
        let err = then(Next::to("act"), &spent, &cost, false).unwrap_err();
        assert!(matches!(
            err,
            MachineError::Budget {
                resource: Resource::Cost,
                ..
            }
        ));
    }

    #[test]
    fn the_sooner_deadline_wins() {
        let now = Instant::now();
        let (s, r) = (Duration::from_secs(5), Duration::from_secs(9));
        let state = Some((now + s, s));
        let run = Some((now + r, r));
        assert_eq!(earliest(state, run), Some((now + s, s, false)));
        let run_sooner = Some((now + Duration::from_secs(1), Duration::from_secs(1)));
        assert_eq!(earliest(state, run_sooner).map(|e| e.2), Some(true));
        assert_eq!(earliest(None, run).map(|e| e.2), Some(true));
        assert_eq!(earliest(None, None), None);
    }
}
