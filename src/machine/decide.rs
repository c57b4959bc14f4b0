//! The machine's decisions, as plain functions: which state to enter,
//! whether a state cut off restarts, where a state that ended goes,
//! whether the run goes on, forks, pauses for a person or ends, and what a
//! fork's branches add up to.
//!
//! The driver (`driver.rs`) does the I/O: it polls states, keeps time,
//! writes traces and checkpoints. Everything it decides, it asks here, so
//! every decision is unit-tested without a runtime.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::error::{MachineError, Resource};
use super::event::{EventKind, RunFailure, RunOutput};
use super::sub::SubMachine;
use crate::env::{BranchOutcome, Env, ErrorRecord, Interrupt, Usage};
use crate::state::{Branch, Fork, Next, OnBranchFailure, State, StateError};

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
    /// The budget the run, having `spent` so far, has gone over, if any.
    pub(super) fn over_budget(&self, spent: &Usage) -> Option<MachineError> {
        let used = spent.total_tokens();
        if let Some(limit) = self.max_tokens.filter(|l| used > *l) {
            return Some(MachineError::Budget {
                resource: Resource::Tokens,
                limit: limit as f64,
                used: used as f64,
            });
        }
        let cost = spent.cost;
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
    /// The state asked a person ([`Emit::Interrupt`](crate::Emit::Interrupt)).
    Interrupt(Box<Interrupt>),
}

/// What a run enters: a state, or a machine run as a child.
pub(super) enum Node {
    State(Arc<dyn State>),
    Sub(Arc<SubMachine>),
}

/// The state (or sub-machine) to enter next, or why the run cannot: the
/// name is unknown (the error lists the known ones) or the step limit is
/// reached.
pub(super) fn enter(
    states: &BTreeMap<String, Arc<dyn State>>,
    subs: &BTreeMap<String, Arc<SubMachine>>,
    name: &str,
    from: Option<&str>,
    env: &Env,
    limits: &Limits,
) -> Result<Node, MachineError> {
    let node = match (states.get(name), subs.get(name)) {
        (Some(state), _) => Node::State(Arc::clone(state)),
        (None, Some(sub)) => Node::Sub(Arc::clone(sub)),
        (None, None) => {
            return Err(MachineError::UnknownState {
                name: name.to_owned(),
                from: from.map(str::to_owned),
                known: known_names(states, subs),
            })
        }
    };
    if env.step >= limits.max_steps {
        return Err(MachineError::MaxSteps {
            limit: limits.max_steps,
        });
    }
    Ok(node)
}

/// Every registered name, sorted: states and sub-machines.
pub(super) fn known_names(
    states: &BTreeMap<String, Arc<dyn State>>,
    subs: &BTreeMap<String, Arc<SubMachine>>,
) -> Vec<String> {
    let mut names: Vec<String> = states.keys().chain(subs.keys()).cloned().collect();
    names.sort();
    names
}

/// The sooner of the state's and the run's deadlines, with its length and
/// whether it is the run's.
pub(super) fn earliest<I: Ord>(
    state: Option<(I, Duration)>,
    run: Option<(I, Duration)>,
) -> Option<(I, Duration, bool)> {
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
        // Once the reply is in, the state runs again and finds it.
        Some(Failure::Interrupt(request)) => Route::To(Next::Interrupt {
            request,
            then: Box::new(Next::to(name.to_owned())),
        }),
        Some(Failure::Deadline(after)) => Route::Fail(MachineError::Deadline { after }),
        Some(Failure::State(source)) => match state.on_error(&source) {
            Some(next) => Route::Recovered(next, source.record(step, name)),
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
    /// before going on to `next`.
    Stop(Next),
    /// Enter this state.
    Enter(Cow<'static, str>),
    /// Run these branches, then their join.
    Fork(Box<Fork>),
    /// Pause for a person: the run ends interrupted with this request and
    /// goes on at the second field once the reply is in.
    Interrupt(Box<Interrupt>, Next),
}

/// Whether the run goes on to `next`, having `spent` so far: not over its
/// budgets, and not a single step.
pub(super) fn then(
    next: Next,
    spent: &Usage,
    limits: &Limits,
    single_step: bool,
) -> Result<Then, MachineError> {
    if let Some(error) = limits.over_budget(spent) {
        return Err(error);
    }
    Ok(match next {
        Next::End => Then::End,
        next if single_step => Then::Stop(next),
        Next::To(to) => Then::Enter(to),
        Next::Fork(fork) => Then::Fork(fork),
        Next::Interrupt { request, then } => Then::Interrupt(request, *then),
    })
}

/// The env branch `branch` of a fork starts with: the parent's, with the
/// branch's input, and nothing of the parent's own bookkeeping (usage is
/// counted per branch and summed at the join; replies and interrupts are
/// the parent's).
pub(super) fn branch_env(parent: &Env, branch: &Branch) -> Env {
    let mut env = parent.clone();
    env.input = Some(branch.input.clone());
    env.usage = Usage::default();
    env.branches.clear();
    env.interrupt = None;
    env.replies.clear();
    env
}

/// How a branch (or a sub-machine) run ended: its last event.
#[derive(Debug)]
pub(super) enum BranchEnd {
    Finished(RunOutput),
    Failed(RunFailure),
    Interrupted(RunOutput),
}

impl BranchEnd {
    /// The end a terminal event's kind tells of; `None` for other events.
    pub(super) fn of(kind: EventKind) -> Option<BranchEnd> {
        match kind {
            EventKind::Finished(out) => Some(BranchEnd::Finished(*out)),
            EventKind::Failed(failure) => Some(BranchEnd::Failed(*failure)),
            EventKind::Interrupted(out) => Some(BranchEnd::Interrupted(*out)),
            _ => None,
        }
    }
}

/// A fork that fails fast stops at a failed branch, with the error the
/// run fails with; otherwise the fork goes on, keeping the branch's end.
pub(super) fn fail_fast(
    fork: &Fork,
    branch: &str,
    end: BranchEnd,
) -> Result<BranchEnd, MachineError> {
    match (fork.on_failure, end) {
        (OnBranchFailure::FailFast, BranchEnd::Failed(failure)) => Err(MachineError::Branch {
            branch: branch.to_owned(),
            source: Box::new(failure.error),
        }),
        (_, end) => Ok(end),
    }
}

/// What the join state sees of a fork, and whether the run pauses first.
#[derive(Debug)]
pub(super) struct Joined {
    /// Every branch's outcome, in branch order.
    pub(super) outcomes: Vec<BranchOutcome>,
    /// The first branch's request, if a branch paused for a person: the
    /// run pauses at the fork and runs the join once it has the reply.
    pub(super) interrupt: Option<Box<Interrupt>>,
}

/// Where a fork started in its parent: what [`join`] needs of the parent's
/// env, without a copy of it.
#[derive(Debug, Clone, Copy)]
pub(super) struct ForkedAt {
    /// The parent's step.
    pub(super) step: u32,
    /// Its observations so far (a branch's outcome keeps only those after).
    pub(super) observations: usize,
}

impl ForkedAt {
    pub(super) fn of(parent: &Env) -> Self {
        ForkedAt {
            step: parent.step,
            observations: parent.observations.len(),
        }
    }
}

/// Sums up a fork's branches, which ended as `ends` (`None`: a branch's
/// stream stopped without saying how, counted as failed). `at` is where
/// the fork started: a branch's outcome keeps only the observations it
/// added.
pub(super) fn join(fork: &Fork, at: ForkedAt, ends: Vec<Option<BranchEnd>>) -> Joined {
    let mut interrupt = None;
    let known = at.observations;
    let outcomes = fork
        .branches
        .iter()
        .zip(ends)
        .enumerate()
        .map(|(index, (branch, end))| {
            let (env, path, error) = match end {
                Some(BranchEnd::Finished(out)) => (out.env, out.path, None),
                Some(BranchEnd::Interrupted(out)) => {
                    if interrupt.is_none() {
                        interrupt = out.env.interrupt.clone();
                    }
                    (out.env, out.path, None)
                }
                Some(BranchEnd::Failed(failure)) => {
                    let record = ErrorRecord {
                        step: failure.env.step,
                        state: failure.path.last().cloned().unwrap_or_default(),
                        kind: failure.error.code(),
                        message: failure.error.to_string(),
                    };
                    (failure.env, failure.path, Some(record))
                }
                None => {
                    let record = ErrorRecord {
                        step: at.step,
                        state: branch.target.to_string(),
                        kind: MachineError::Interrupted.code(),
                        message: MachineError::Interrupted.to_string(),
                    };
                    (Env::default(), Vec::new(), Some(record))
                }
            };
            BranchOutcome {
                index: index as u32,
                target: branch.target.to_string(),
                input: branch.input.clone(),
                answer: env.answer,
                scratch: env.scratch,
                observations: env.observations.into_iter().skip(known).collect(),
                usage: env.usage,
                path,
                error,
            }
        })
        .collect();
    Joined {
        outcomes,
        interrupt,
    }
}

/// Puts a finished fork's outcomes into the parent env for the join state
/// to read, and adds the branches' usage to the run's; returns that usage.
pub(super) fn take_outcomes(env: &mut Env, outcomes: Vec<BranchOutcome>) -> Usage {
    let mut used = Usage::default();
    for outcome in &outcomes {
        used.add(&outcome.usage);
    }
    env.usage.add(&used);
    env.branches = outcomes;
    used
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
        let subs = BTreeMap::new();
        let env = Env::new();
        let Ok(Node::State(state)) = enter(&states, &subs, "act", None, &env, &limits()) else {
            panic!("act is a state");
        };
        assert_eq!(state.name(), "act");

        let Err(err) = enter(&states, &subs, "nope", Some("plan"), &env, &limits()) else {
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
        let Err(err) = enter(&states, &subs, "act", None, &env, &limits()) else {
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
        let spent = env.usage;
        assert_eq!(then(Next::End, &spent, &l, false).unwrap(), Then::End);
        assert_eq!(
            then(Next::to("act"), &spent, &l, false).unwrap(),
            Then::Enter("act".into())
        );
        assert_eq!(
            then(Next::to("act"), &spent, &l, true).unwrap(),
            Then::Stop(Next::to("act"))
        );

        let mut spent = Env::new();
        spent.usage.prompt_tokens = 90;
        spent.usage.completion_tokens = 20;
        spent.usage.cost = 0.5;
        let tokens = Limits {
            max_tokens: Some(100),
            ..l
        };
        let err = then(Next::End, &spent.usage, &tokens, false).unwrap_err();
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
        let err = then(Next::to("act"), &spent.usage, &cost, false).unwrap_err();
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
        // Any clock: the driver's is tokio's, this one std's.
        let now = std::time::Instant::now();
        let (s, r) = (Duration::from_secs(5), Duration::from_secs(9));
        let state = Some((now + s, s));
        let run = Some((now + r, r));
        assert_eq!(earliest(state, run), Some((now + s, s, false)));
        let run_sooner = Some((now + Duration::from_secs(1), Duration::from_secs(1)));
        assert_eq!(earliest(state, run_sooner).map(|e| e.2), Some(true));
        assert_eq!(earliest(None, run).map(|e| e.2), Some(true));
        assert_eq!(earliest::<u8>(None, None), None);
    }

    fn fork3() -> Fork {
        Fork::join_at("join")
            .branch("search", serde_json::json!("a"))
            .branch("search", serde_json::json!("b"))
            .branch("search", serde_json::json!("c"))
    }

    fn finished(answer: &str, parent: &Env, spent: u64) -> BranchEnd {
        let mut env = parent.clone();
        env.answer = Some(answer.into());
        env.usage.prompt_tokens = spent;
        env.observations.push(crate::env::Observation {
            call_id: answer.into(),
            tool: "search".into(),
            content: serde_json::json!(answer),
            is_error: false,
        });
        BranchEnd::Finished(RunOutput {
            answer: env.answer.clone(),
            path: vec!["search".into()],
            env,
            run_id: "r/1/0".into(),
        })
    }

    fn failed(parent: &Env) -> BranchEnd {
        BranchEnd::Failed(RunFailure {
            error: MachineError::State {
                state: "search".into(),
                source: StateError::custom("index offline"),
            },
            path: vec!["search".into()],
            env: parent.clone(),
            run_id: "r/1/1".into(),
        })
    }

    #[test]
    fn a_fork_and_a_pause_are_what_then_goes_on_to() {
        let l = limits();
        let used = Usage::default();
        let Then::Fork(fork) = then(Next::fork(fork3()), &used, &l, false).unwrap() else {
            panic!("a fork runs its branches");
        };
        assert_eq!((fork.branches.len(), &*fork.join), (3, "join"));
        // A single step stops before a fork, as before any next state.
        assert!(matches!(
            then(Next::fork(fork3()), &used, &l, true).unwrap(),
            Then::Stop(Next::Fork(_))
        ));
        let ask = Next::interrupt(Interrupt::new("ok?", "Go on?"), Next::to("act"));
        let Then::Interrupt(request, resume) = then(ask, &used, &l, false).unwrap() else {
            panic!("an interrupt pauses");
        };
        assert_eq!((request.id.as_str(), resume), ("ok?", Next::to("act")));
        // Budgets are checked before either.
        let over = Usage {
            prompt_tokens: 500,
            ..Usage::default()
        };
        let tight = Limits {
            max_tokens: Some(100),
            ..l
        };
        assert!(then(Next::fork(fork3()), &over, &tight, false).is_err());
    }

    #[test]
    fn a_state_that_asks_is_run_again_once_answered() {
        let to_act = FnState::new("plan", |_: &mut Env| Ok(()), |_: &Env| Next::to("act"));
        let asked = Failure::Interrupt(Box::new(Interrupt::new("ok?", "Go on?")));
        let Route::To(Next::Interrupt { request, then }) =
            route(&to_act, "plan", 2, &Env::new(), Some(asked))
        else {
            panic!("an interrupt routes to a pause");
        };
        assert_eq!(request.id, "ok?");
        // Not its transition's target: the state itself, which finds the reply.
        assert_eq!(*then, Next::to("plan"));
    }

    #[test]
    fn a_branch_starts_from_the_parent_with_its_input_and_nothing_spent() {
        let mut parent = Env::from_user("compare");
        parent.usage.prompt_tokens = 40;
        parent.step = 2;
        parent.replies.insert("x".into(), serde_json::json!(true));
        parent.interrupt = Some(Box::new(Interrupt::new("y", "?")));
        let fork = fork3();
        let env = branch_env(&parent, &fork.branches[1]);
        assert_eq!(env.input, Some(serde_json::json!("b")));
        assert_eq!(env.messages, parent.messages);
        assert_eq!(env.step, 2, "the step count goes on");
        assert_eq!(env.usage, Usage::default());
        assert!(env.replies.is_empty() && env.interrupt.is_none());
    }

    #[test]
    fn the_join_sees_every_branch_failed_ones_included() {
        let parent = Env::from_user("compare");
        let fork = fork3();
        let ends = vec![
            Some(finished("A", &parent, 10)),
            Some(failed(&parent)),
            Some(finished("C", &parent, 5)),
        ];
        let joined = join(&fork, ForkedAt::of(&parent), ends);
        assert!(joined.interrupt.is_none());
        let o = &joined.outcomes;
        assert_eq!(o.len(), 3);
        assert_eq!(o[0].answer.as_deref(), Some("A"));
        assert_eq!(o[0].input, serde_json::json!("a"));
        assert_eq!(o[0].observations.len(), 1, "only what the branch added");
        assert!(o[0].succeeded() && !o[1].succeeded());
        let error = o[1].error.as_ref().unwrap();
        assert_eq!(
            (error.kind.as_str(), error.state.as_str()),
            ("custom", "search")
        );
        assert!(error.message.contains("index offline"));
        assert_eq!(o[2].index, 2);

        let mut env = parent.clone();
        env.usage.prompt_tokens = 7;
        let used = take_outcomes(&mut env, joined.outcomes);
        assert_eq!(used.prompt_tokens, 15);
        assert_eq!(
            env.usage.prompt_tokens, 22,
            "branches' usage is summed into the parent"
        );
        assert_eq!(env.branches.len(), 3);
    }

    #[test]
    fn a_branch_that_never_said_how_it_ended_counts_as_failed() {
        let parent = Env::new();
        let joined = join(&fork3(), ForkedAt::of(&parent), vec![None, None, None]);
        assert!(joined
            .outcomes
            .iter()
            .all(|o| o.error.as_ref().is_some_and(|e| e.kind == "interrupted")));
    }

    #[test]
    fn a_branch_that_asks_pauses_the_fork_after_the_others() {
        let parent = Env::new();
        let mut waiting = parent.clone();
        let mut request = Interrupt::new("approve", "Run it?");
        request.run_id = "r/1/1".into();
        waiting.interrupt = Some(Box::new(request));
        let asked = BranchEnd::Interrupted(RunOutput {
            answer: None,
            path: vec!["tools".into()],
            env: waiting,
            run_id: "r/1/1".into(),
        });
        let ends = vec![Some(finished("A", &parent, 1)), Some(asked), None];
        let joined = join(&fork3(), ForkedAt::of(&parent), ends);
        let request = joined.interrupt.expect("the branch's request goes up");
        assert_eq!(request.run_id, "r/1/1");
    }

    #[test]
    fn fail_fast_turns_the_first_failure_into_the_runs() {
        let parent = Env::new();
        // By default the fork goes on.
        assert!(matches!(
            fail_fast(&fork3(), "plan/fork[1]", failed(&parent)),
            Ok(BranchEnd::Failed(_))
        ));
        let fast = fork3().fail_fast();
        let Err(MachineError::Branch { branch, source }) =
            fail_fast(&fast, "plan/fork[1]", failed(&parent))
        else {
            panic!("a fail-fast fork fails");
        };
        assert_eq!(branch, "plan/fork[1]");
        assert_eq!(source.code(), "custom");
        assert!(fail_fast(&fast, "plan/fork[0]", finished("A", &parent, 1)).is_ok());
    }

    #[test]
    fn a_sub_machine_is_entered_like_a_state() {
        let states = states();
        let mut subs = BTreeMap::new();
        let inner = crate::machine::Machine::new("x");
        subs.insert(
            "research".to_owned(),
            Arc::new(SubMachine::new("research", inner)),
        );
        let env = Env::new();
        assert!(matches!(
            enter(&states, &subs, "research", None, &env, &limits()),
            Ok(Node::Sub(_))
        ));
        let Err(MachineError::UnknownState { known, .. }) =
            enter(&states, &subs, "nope", None, &env, &limits())
        else {
            panic!("unknown");
        };
        assert_eq!(known, ["act", "plan", "research"]);
    }
}
