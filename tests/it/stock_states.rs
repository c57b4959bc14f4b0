//! Each stock state on its own: transitions on hand-made envs, and single
//! steps against a scripted model.

use std::sync::Arc;

use serde_json::json;
use statewise::model::{Reply, ScriptedModel};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{
    Action as Act, Emit, Env, Machine, MachineError, Next, Role, State, StateError, ToolCall, Usage,
};
use statewise_states::tools::Calculator;
use statewise_states::{Answer, Reasoning, RunTools};

fn tools() -> Toolbox {
    Toolbox::new(ToolRegistry::new().with(Calculator))
}

fn calc(id: &str, expression: &str) -> ToolCall {
    ToolCall::new(id, "calculator", json!({ "expression": expression }))
}

fn reasoning(model: Arc<ScriptedModel>) -> Reasoning {
    Reasoning::new(model, tools())
}

#[test]
fn reasoning_routes_on_the_pending_action() {
    let r = reasoning(Arc::new(ScriptedModel::new()));
    let env = Env::new().with_action(Act::ToolCalls(vec![calc("c", "1+1")]));
    assert_eq!(r.transition(&env), Next::to("tools"));
    let env = Env::new().with_action(Act::FinalAnswer("2".into()));
    assert_eq!(r.transition(&env), Next::to("answer"));
    assert_eq!(r.transition(&Env::new()), Next::to("reasoning"));
}

#[test]
fn reasoning_routes_to_renamed_states() {
    let r = reasoning(Arc::new(ScriptedModel::new()))
        .named("think")
        .on_tool_calls("tools")
        .on_answer("reply");
    let env = Env::new().with_action(Act::ToolCalls(vec![calc("c", "1")]));
    assert_eq!(r.transition(&env), Next::to("tools"));
    assert_eq!(
        r.transition(&Env::new().with_action(Act::FinalAnswer("x".into()))),
        Next::to("reply")
    );
    assert_eq!(r.transition(&Env::new()), Next::to("think"));
}

#[test]
fn action_and_answer_routes() {
    assert_eq!(
        RunTools::new(tools()).transition(&Env::new()),
        Next::to("reasoning")
    );
    assert_eq!(
        RunTools::new(tools())
            .then("critic")
            .transition(&Env::new()),
        Next::to("critic")
    );
    assert_eq!(
        Answer::new().transition(&Env::new().with_answer("x")),
        Next::End
    );
}

#[test]
fn reasoning_prompt_lists_tools_and_format() {
    let r = reasoning(Arc::new(ScriptedModel::new())).instructions("Be terse.");
    let req = r.request(&Env::from_user("2+2?"));
    let system = &req.messages[0];
    assert_eq!(system.role, Role::System);
    assert!(system.content.starts_with("Be terse."));
    assert!(system.content.contains("- calculator: Evaluates"));
    assert!(system.content.contains(r#"{"final_answer": "#));
    assert_eq!(req.messages[1].content, "2+2?");
}

#[tokio::test]
async fn reasoning_step_parses_a_repaired_action_and_counts_usage() {
    let usage = Usage {
        prompt_tokens: 30,
        completion_tokens: 12,
        ..Usage::default()
    };
    let model = Arc::new(
        ScriptedModel::new().reply(
            Reply::text(
                "Sure!\n```json\n{'tool': 'calculator', 'args': {'expression': '6*7'},}\n```",
            )
            .with_usage(usage),
        ),
    );
    let machine = Machine::new("reasoning").with_state(reasoning(model.clone()));
    let out = machine
        .step("reasoning", Env::from_user("6*7?"))
        .await
        .unwrap();
    assert_eq!(out.next, Next::to("tools"));
    let calls = out.env.pending_calls().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].arguments, json!({"expression": "6*7"}));
    assert_eq!(out.env.usage, usage);
    // The raw reply is kept in the conversation.
    assert_eq!(out.env.messages.last().unwrap().role, Role::Assistant);
    assert!(out
        .env
        .messages
        .last()
        .unwrap()
        .content
        .starts_with("Sure!"));
    let tokens: String = out.events.iter().filter_map(|e| e.token()).collect();
    assert!(tokens.contains("'calculator'"));
    assert!(out
        .events
        .iter()
        .any(|e| e.custom::<statewise::state::ActionParsed>().is_some()));
    model.assert_complete();
}

#[tokio::test]
async fn reasoning_takes_prose_as_the_answer_by_default() {
    let model = Arc::new(ScriptedModel::new().text("  I think the answer is four. "));
    let out = Machine::new("reasoning")
        .with_state(reasoning(model))
        .step("reasoning", Env::from_user("2+2?"))
        .await
        .unwrap();
    assert_eq!(out.next, Next::to("answer"));
    assert_eq!(
        out.env.action,
        Some(statewise::Action::FinalAnswer(
            "I think the answer is four.".into()
        ))
    );
}

#[tokio::test]
async fn reasoning_feeds_the_parse_error_back() {
    let model = Arc::new(
        ScriptedModel::new()
            .text("I think the answer is four.")
            .text(r#"{"final_answer": "4"}"#),
    );
    let state = reasoning(model.clone()).prose_is_answer(false);
    let machine = Machine::new("reasoning").with_state(state.clone());
    let out = machine
        .step("reasoning", Env::from_user("2+2?"))
        .await
        .unwrap();
    assert_eq!(out.next, Next::to("reasoning"));
    assert_eq!(out.env.action, None);
    assert_eq!(
        out.env
            .scratch
            .get::<u32>("reasoning.parse_failures")
            .unwrap(),
        Some(1)
    );
    // The unreadable reply and the feedback go to the model with the next
    // call, after the conversation, which they do not join.
    assert_eq!(out.env.messages.len(), 1);
    let next = state.request(&out.env);
    let [.., reply, feedback] = next.messages.as_slice() else {
        panic!("{next:?}");
    };
    assert_eq!(reply.role, Role::Assistant);
    assert_eq!(reply.content, "I think the answer is four.");
    assert_eq!(feedback.role, Role::User);
    assert!(
        feedback.content.contains("no JSON object or array found"),
        "{}",
        feedback.content
    );

    // They leave once a reply is readable.
    let out = machine.step("reasoning", out.env).await.unwrap();
    assert_eq!(out.next, Next::to("answer"));
    assert!(state.notes(&out.env).is_empty());
    assert_eq!(out.env.messages.len(), 2);
    assert_eq!(model.calls()[1], next);
}

#[tokio::test]
async fn reasoning_gives_up_after_its_retries() {
    let model = Arc::new(ScriptedModel::new().text(r#"{"still": "not an action"}"#));
    let r = reasoning(model).max_parse_retries(1);
    let env = Env::from_user("?")
        .with_scratch("reasoning.parse_failures", &1u32)
        .unwrap();
    let failure = Machine::new("reasoning")
        .with_state(r)
        .step("reasoning", env)
        .await
        .unwrap_err();
    match &failure.error {
        MachineError::State {
            source: StateError::Action { attempts: 2, .. },
            ..
        } => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(failure.error.code(), "action");
    // The conversation survives the failure.
    assert_eq!(failure.env.messages.len(), 1);
}

#[tokio::test]
async fn reasoning_takes_native_tool_calls_as_they_are() {
    let model =
        Arc::new(ScriptedModel::new().tool_call("calculator", json!({"expression": "1+1"})));
    let machine = Machine::new("reasoning").with_state(reasoning(model));
    let out = machine
        .step("reasoning", Env::from_user("1+1"))
        .await
        .unwrap();
    let calls = out.env.pending_calls().unwrap();
    assert_eq!(calls[0].id, "call_0");
    assert_eq!(out.env.messages.last().unwrap().tool_calls, calls);
}

#[tokio::test]
async fn reasoning_reports_model_errors() {
    let model = Arc::new(ScriptedModel::new().error("overloaded"));
    let failure = Machine::new("reasoning")
        .with_state(reasoning(model))
        .step("reasoning", Env::from_user("?"))
        .await
        .unwrap_err();
    assert!(
        failure.error.code().starts_with("model:"),
        "{}",
        failure.error.code()
    );
    assert!(failure.error.to_string().contains("overloaded"));
}

#[tokio::test]
async fn action_records_observations_and_tool_messages() {
    let env =
        Env::from_user("?").with_action(Act::ToolCalls(vec![calc("a", "2*21"), calc("b", "1/0")]));
    let out = Machine::new("tools")
        .with_state(RunTools::new(tools()))
        .step("tools", env)
        .await
        .unwrap();
    assert_eq!(out.env.action, None);
    let obs = &out.env.observations;
    assert_eq!(
        (
            obs[0].call_id.as_str(),
            obs[0].content.clone(),
            obs[0].is_error
        ),
        ("a", json!(42), false)
    );
    assert!(obs[1].is_error);
    assert!(obs[1].render().contains("division by zero"));
    let tool_msgs: Vec<_> = out
        .env
        .messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .collect();
    assert_eq!(tool_msgs.len(), 2);
    assert_eq!(tool_msgs[0].tool_call_id.as_deref(), Some("a"));
    assert_eq!(tool_msgs[0].content, "42");
}

#[tokio::test]
async fn action_respects_its_allow_list() {
    let env = Env::new().with_action(Act::ToolCalls(vec![calc("a", "1")]));
    let out = Machine::new("tools")
        .with_state(RunTools::new(tools().allow(["clock"])))
        .step("tools", env)
        .await
        .unwrap();
    assert!(out.env.observations[0].is_error);
    assert!(out.env.observations[0].render().contains("not allowed"));
}

#[tokio::test]
async fn action_without_calls_is_a_typed_error_that_keeps_the_env() {
    let env = Env::new().with_action(Act::FinalAnswer("4".into()));
    let failure = Machine::new("tools")
        .with_state(RunTools::new(tools()))
        .step("tools", env)
        .await
        .unwrap_err();
    assert_eq!(failure.error.code(), "precondition");
    assert_eq!(failure.env.action, Some(Act::FinalAnswer("4".into())));
}

#[tokio::test]
async fn answer_streams_the_given_answer() {
    let env = Env::new().with_action(Act::FinalAnswer("It is 42.".into()));
    let out = Machine::new("answer")
        .with_state(Answer::new())
        .step("answer", env)
        .await
        .unwrap();
    assert_eq!(out.next, Next::End);
    assert_eq!(out.env.answer.as_deref(), Some("It is 42."));
    assert_eq!(crate::support::answer_text(&out.events), "It is 42.");
}

#[tokio::test]
async fn answer_sends_nothing_when_reasoning_gave_the_answer() {
    let mut env = Env::new().with_action(Act::FinalAnswer("It is 42.".into()));
    env.answer = Some("It is 42.".into());
    let out = Machine::new("answer")
        .with_state(Answer::new())
        .step("answer", env)
        .await
        .unwrap();
    assert_eq!(out.env.answer.as_deref(), Some("It is 42."));
    assert_eq!(out.env.action, None);
    assert_eq!(crate::support::answer_text(&out.events), "");
}

#[tokio::test]
async fn answer_with_its_own_model() {
    let model = Arc::new(ScriptedModel::new().text("Forty-two."));
    let env = Env::from_user("6*7?").with_action(Act::FinalAnswer("42".into()));
    let out = Machine::new("answer")
        .with_state(Answer::with_model(model.clone()))
        .step("answer", env)
        .await
        .unwrap();
    assert_eq!(out.env.answer.as_deref(), Some("Forty-two."));
    let sent = &model.calls()[0].messages;
    assert!(sent.last().unwrap().content.contains("Draft answer: 42"));
}

#[tokio::test]
async fn reasoning_announces_the_tool_name_while_streaming() {
    use statewise::action::PartialAction;
    let model = Arc::new(ScriptedModel::new().text(
        r#"{"tool_calls": [{"name": "calculator", "arguments": {"expression": "a very long expression indeed"}}]}"#,
    ));
    let machine = Machine::new("reasoning").with_state(reasoning(model));
    let out = machine
        .step("reasoning", Env::from_user("?"))
        .await
        .unwrap();
    let announced = out
        .events
        .iter()
        .position(
            |e| matches!(e.custom(), Some(PartialAction::ToolCalls(n)) if n == ["calculator"]),
        )
        .expect("tool name announced");
    let parsed = out
        .events
        .iter()
        .position(|e| e.custom::<statewise::state::ActionParsed>().is_some())
        .unwrap();
    let tokens_after = out.events[announced..parsed]
        .iter()
        .filter(|e| e.token().is_some())
        .count();
    assert!(
        tokens_after >= 4,
        "announced early, with {tokens_after} tokens still to come"
    );
    // Announced once: nothing new was learnt later.
    let partials = out
        .events
        .iter()
        .filter(|e| e.custom::<PartialAction>().is_some())
        .count();
    assert_eq!(partials, 1);
}

/// A scripted model that calls tools natively, as OpenAI's and Anthropic's
/// APIs do.
struct NativeTools(Arc<ScriptedModel>);

impl statewise::model::ChatModel for NativeTools {
    fn name(&self) -> &str {
        "native"
    }
    fn capabilities(&self) -> statewise::model::Capabilities {
        statewise::model::Capabilities {
            native_tools: true,
            ..self.0.capabilities()
        }
    }
    fn stream(&self, request: statewise::model::ChatRequest) -> statewise::model::ChunkStream<'_> {
        self.0.stream(request)
    }
}

/// What OpenAI's and Anthropic's APIs require of a conversation: an
/// assistant message with tool calls is followed by one tool message per
/// call (and a tool message answers a call just made).
fn vendors_accept(messages: &[statewise::Message]) -> Result<(), String> {
    let mut open: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        match m.role {
            statewise::Role::Tool => {
                let id = m.tool_call_id.clone().unwrap_or_default();
                if !open.contains(&id) {
                    return Err(format!(
                        "message {i}: a tool result for `{id}`, which is not an open call"
                    ));
                }
                open.retain(|o| *o != id);
            }
            _ if !open.is_empty() => {
                return Err(format!(
                    "message {i}: calls {open:?} have no tool results before it"
                ));
            }
            statewise::Role::Assistant => {
                open = m.tool_calls.iter().map(|c| c.id.clone()).collect()
            }
            _ => {}
        }
    }
    match open.is_empty() {
        true => Ok(()),
        false => Err(format!("calls {open:?} have no tool results")),
    }
}

#[tokio::test]
async fn past_max_tool_rounds_a_native_tools_model_gets_a_conversation_vendors_accept() {
    let scripted = Arc::new(
        ScriptedModel::new()
            .reply(Reply::tool_calls(vec![calc("c1", "6*7")]))
            .text(r#"{"final_answer": "42"}"#),
    );
    let model = Arc::new(NativeTools(scripted.clone()));
    let machine = Machine::new("reasoning")
        .with_state(Reasoning::new(model, tools()).max_tool_rounds(1))
        .with_state(RunTools::new(tools()))
        .with_state(Answer::new());
    let out = machine.run(Env::from_user("What is 6*7?")).await.unwrap();
    assert_eq!(out.answer.as_deref(), Some("42"));
    let calls = scripted.calls();
    // The first request offered tools natively; the second, past the
    // limit, prompts for JSON without tools.
    assert!(!calls[0].tools.is_empty() && calls[1].tools.is_empty());
    for (n, call) in calls.iter().enumerate() {
        vendors_accept(&call.messages)
            .unwrap_or_else(|e| panic!("request {n}: {e}\n{:#?}", call.messages));
    }
    // The model still sees what it called and what came back.
    let second = &calls[1].messages;
    assert!(
        second.iter().any(|m| m.content.contains("6*7")),
        "{second:#?}"
    );
    assert!(
        second.iter().any(|m| m.content.contains("42")),
        "{second:#?}"
    );
}

/// Sends its replies one chunk every 10 ms, noting when each chunk went
/// out; a reply scripted as text goes a byte at a time.
struct Trickle {
    replies: std::sync::Mutex<std::collections::VecDeque<Vec<statewise::model::Chunk>>>,
    native: bool,
    sent: Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
}

impl Trickle {
    fn new(replies: Vec<Vec<statewise::model::Chunk>>, native: bool) -> Self {
        Trickle {
            replies: std::sync::Mutex::new(replies.into()),
            native,
            sent: Arc::default(),
        }
    }

    fn bytes(text: &str) -> Vec<statewise::model::Chunk> {
        text.bytes()
            .map(|b| statewise::model::Chunk::Text(char::from(b).to_string()))
            .collect()
    }
}

impl statewise::model::ChatModel for Trickle {
    fn name(&self) -> &str {
        "trickle"
    }
    fn capabilities(&self) -> statewise::model::Capabilities {
        statewise::model::Capabilities {
            native_tools: self.native,
            ..Default::default()
        }
    }
    fn stream(&self, _request: statewise::model::ChatRequest) -> statewise::model::ChunkStream<'_> {
        let chunks = self
            .replies
            .lock()
            .unwrap()
            .pop_front()
            .expect("a scripted reply");
        Box::pin(async_stream::stream! {
            for (i, chunk) in chunks.into_iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                self.sent.lock().unwrap().push(tokio::time::Instant::now());
                yield Ok(chunk);
            }
        })
    }
}

/// The drafts a run streamed, each with when it reached the caller, and
/// the run's events.
async fn drafts_of(
    model: Arc<Trickle>,
) -> (
    Vec<(tokio::time::Instant, statewise::ToolCallDraft)>,
    Vec<statewise::Event>,
) {
    use futures::StreamExt;
    use statewise::EventKind;

    let machine = statewise_states::agent(model, tools());
    let mut events = machine.stream(Env::from_user("What is 6*7?"));
    let mut drafts = Vec::new();
    let mut all = Vec::new();
    while let Some(event) = events.next().await {
        if let EventKind::Emitted(Emit::ToolCallDraft(d)) = &event.kind {
            drafts.push((tokio::time::Instant::now(), d.clone()));
        }
        all.push(event);
    }
    (drafts, all)
}

/// The id of the first tool call the run made.
fn first_call_id(events: &[statewise::Event]) -> String {
    events
        .iter()
        .find_map(|e| match e.custom() {
            Some(statewise::state::ActionParsed(Act::ToolCalls(calls))) => {
                Some(calls[0].id.clone())
            }
            _ => None,
        })
        .expect("a tool call")
}

#[tokio::test(start_paused = true)]
async fn json_tool_calls_stream_as_the_model_writes_them() {
    use statewise::ToolCallDraft;

    let text = r#"{"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]}"#;
    let model = Arc::new(Trickle::new(
        vec![
            Trickle::bytes(text),
            Trickle::bytes(r#"{"final_answer": "42"}"#),
        ],
        false,
    ));
    let (drafts, events) = drafts_of(model.clone()).await;
    let sent = model.sent.lock().unwrap().clone();
    assert_eq!(crate::support::answer_text(&events), "42");
    let id = first_call_id(&events);
    // Named the instant the name's closing quote went out.
    let (at, named) = &drafts[0];
    assert_eq!(
        named,
        &ToolCallDraft::Named {
            call_id: id.clone(),
            tool: "calculator".into()
        }
    );
    assert_eq!(
        *at,
        sent[text.find("calculator").unwrap() + "calculator".len()]
    );
    // The arguments' text, byte by byte as written, each the instant it was sent.
    let arguments_at = text.find(r#"{"expression"#).unwrap();
    let mut joined = String::new();
    for (n, (at, draft)) in drafts[1..].iter().enumerate() {
        let ToolCallDraft::Arguments { call_id, delta } = draft else {
            panic!("{draft:?}")
        };
        assert_eq!(call_id, &id);
        assert_eq!(*at, sent[arguments_at + n], "{delta:?}");
        joined.push_str(delta);
    }
    assert_eq!(joined, r#"{"expression": "6*7"}"#);
}

#[tokio::test(start_paused = true)]
async fn native_tool_calls_stream_as_their_fragments_arrive() {
    use statewise::model::{Chunk, FinishReason, ToolCallDelta};
    use statewise::ToolCallDraft;

    let fragment = |id: Option<&str>, name: Option<&str>, arguments: &str| {
        Chunk::ToolCall(ToolCallDelta {
            index: 0,
            id: id.map(Into::into),
            name: name.map(Into::into),
            arguments: arguments.into(),
        })
    };
    let model = Arc::new(Trickle::new(
        vec![
            vec![
                fragment(Some("call_abc"), Some("calculator"), ""),
                fragment(None, None, r#"{"expr"#),
                fragment(None, None, r#"ession": "6"#),
                fragment(None, None, r#"*7"}"#),
                Chunk::Finish(FinishReason::ToolCalls),
            ],
            vec![Chunk::Text("42".into())],
        ],
        true,
    ));
    let (drafts, events) = drafts_of(model.clone()).await;
    let sent = model.sent.lock().unwrap().clone();
    assert_eq!(crate::support::answer_text(&events), "42");
    assert_eq!(first_call_id(&events), "call_abc");
    let id = || "call_abc".to_string();
    let args = |delta: &str| ToolCallDraft::Arguments {
        call_id: id(),
        delta: delta.into(),
    };
    let expected = [
        ToolCallDraft::Named {
            call_id: id(),
            tool: "calculator".into(),
        },
        args(r#"{"expr"#),
        args(r#"ession": "6"#),
        args(r#"*7"}"#),
    ];
    assert_eq!(
        drafts.iter().map(|d| d.1.clone()).collect::<Vec<_>>(),
        expected
    );
    // Each at the instant its fragment arrived.
    for (n, (at, _)) in drafts.iter().enumerate() {
        assert_eq!(*at, sent[n]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_json_answer_streams_as_the_model_writes_it() {
    use futures::StreamExt;
    use statewise::EventKind;

    let text = r#"{"final_answer": "Paris,\nthe capital \"Ville Lumi\u00e8re\"."}"#;
    let model = Arc::new(Trickle::new(vec![Trickle::bytes(text)], false));
    let sent = model.sent.clone();
    let machine = statewise_states::agent(model, Toolbox::new(ToolRegistry::new()));
    let mut events = machine.stream(Env::from_user("Capital of France?"));
    let mut arrived = Vec::new();
    let mut all = Vec::new();
    while let Some(event) = events.next().await {
        if let EventKind::Emitted(Emit::AnswerToken(t)) = &event.kind {
            arrived.push((tokio::time::Instant::now(), t.clone()));
        }
        all.push(event);
    }
    let answer = "Paris,\nthe capital \"Ville Lumière\".";
    assert_eq!(crate::support::answer_text(&all), answer);
    let streamed: String = arrived.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(streamed, answer, "all of it streamed, decoded, once");
    // The first piece reached the caller within one chunk of the model
    // sending its byte (on a paused clock: at the same instant).
    let first_byte = text.find("Paris").unwrap();
    let sent = sent.lock().unwrap().clone();
    let lag = arrived[0].0 - sent[first_byte];
    assert!(lag < std::time::Duration::from_millis(10), "{lag:?}");
    // And the last piece came with the answer's last byte, not after the
    // whole reply: the closing `"}` were still to come.
    let last_byte = text.rfind('.').unwrap();
    assert_eq!(arrived.last().unwrap().0, sent[last_byte]);
    assert!(sent[last_byte] < *sent.last().unwrap());
}
