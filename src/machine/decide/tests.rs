//! Unit tests of the decision core: each decision a plain function of
//! plain values.

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
    let Route::Recovered(next, record) = route(&recovering, "r", 4, &env, Some(failed())) else {
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
    parent.responses.insert("x".into(), serde_json::json!(true));
    parent.interrupt = Some(Box::new(Interrupt::new("y", "?")));
    let fork = fork3();
    let env = branch_env(&parent, &fork.branches[1]);
    assert_eq!(env.input, Some(serde_json::json!("b")));
    assert_eq!(env.messages, parent.messages);
    assert_eq!(env.step, 2, "the step count goes on");
    assert_eq!(env.usage, Usage::default());
    assert!(env.responses.is_empty() && env.interrupt.is_none());
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
        .all(|o| o.error.as_ref().is_some_and(|e| e.kind == "cut")));
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

#[test]
fn an_ended_run_reports_its_outcome_and_last_event() {
    let env = || Env::from_user("q");
    let (outcome, kind) = ended(env(), vec!["a".into()], "r".into(), None, false);
    assert_eq!(outcome, "finished");
    assert!(matches!(kind, EventKind::Finished(out) if out.path == ["a"] && out.run_id == "r"));
    let (outcome, kind) = ended(env(), Vec::new(), "r".into(), None, true);
    assert_eq!(outcome, "interrupted");
    assert!(matches!(kind, EventKind::Interrupted(_)));
    // An error wins over a pause.
    let error = MachineError::MaxSteps { limit: 2 };
    let (outcome, kind) = ended(env(), Vec::new(), "r".into(), Some(error), true);
    assert_eq!(outcome, "failed");
    assert!(matches!(kind, EventKind::Failed(f) if f.error.code() == "max_steps"));
}

#[test]
fn a_checkpoint_says_whether_its_run_goes_on() {
    let env = Env::from_user("q");
    assert!(matches!(
        resumed(&Next::to("b"), &env, None),
        Resumed::Continue
    ));
    assert!(matches!(
        resumed(&Next::End, &env, None),
        Resumed::Ended {
            error: None,
            interrupted: false,
            state: None
        }
    ));
    let mut paused = env.clone();
    paused.interrupt = Some(Box::new(Interrupt::new("i1", "approve?")));
    assert!(matches!(
        resumed(&Next::to("b"), &paused, None),
        Resumed::Ended {
            interrupted: true,
            ..
        }
    ));
    let record = ErrorRecord {
        step: 2,
        state: "search".into(),
        kind: "model:http_503".into(),
        message: "overloaded".into(),
    };
    match resumed(&Next::to("b"), &env, Some(record)) {
        Resumed::Ended {
            error: Some(error),
            interrupted: false,
            state: Some(state),
        } => {
            assert_eq!(error.code(), "model:http_503");
            assert_eq!(state, "search");
        }
        other => panic!("{other:?}"),
    }
}
