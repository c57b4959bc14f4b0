//! How [`Answer`] writes a typed output: ask for the schema, stream the
//! object as it is written ([`Emit::PartialOutput`]), repair and check the
//! reply, ask again with its problems, and fail with the last reply kept
//! when retries run out.
//!
//! The checks are the engine's ([`Output::check`], [`repair`]); this is
//! only the loop around them, which a custom state can write the same way.

use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;
use statewise::action::{repair, repair_prefix};
use statewise::output::{Output, OutputError};
use statewise::schema::Problem;
use statewise::{Action, Emit, EmitStream, Env, Message, State, StateError};

use crate::Answer;

/// Runs `answer` for a run that asks for `output`.
pub(crate) fn write<'a>(
    answer: &'a Answer,
    output: Arc<Output>,
    env: &'a mut Env,
) -> EmitStream<'a> {
    Box::pin(statewise::try_stream! {
        let Some(model) = answer.writer() else {
            Err(StateError::Precondition {
                state: answer.name().to_owned(),
                missing: "a model to write the typed output (Answer::with_model or Answer::output_model)".to_owned(),
            })?;
            return;
        };
        let draft = usize::from(matches!(env.action, Some(Action::FinalAnswer(_))));
        // The replies that did not fit, each followed by what was wrong.
        let mut corrections: Vec<Message> = Vec::new();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let snapshot: &Env = env;
            let keep = draft + corrections.len();
            let mut call = answer.fitting().call(&**model, keep, &snapshot.settings, || {
                let mut request = answer.request(snapshot);
                request.messages.extend(corrections.iter().cloned());
                request
            });
            // The reply so far, and the last partial object sent of it.
            let (mut text, mut partial) = (String::new(), Value::Null);
            while let Some(streamed) = call.next().await {
                let emit = Emit::from(streamed?);
                let grown = match &emit {
                    Emit::Token(t) => {
                        text.push_str(t);
                        repair_prefix(&text).ok().filter(|v| v.is_object() && *v != partial)
                    }
                    _ => None,
                };
                yield emit;
                if let Some(grown) = grown {
                    partial = grown.clone();
                    yield Emit::PartialOutput(grown);
                }
            }
            let reply = call.finish();
            reply.charge(env);
            match read(&output, &reply.text) {
                Ok(value) => {
                    let text = value.to_string();
                    yield Emit::AnswerToken(text.clone());
                    env.action = None;
                    env.messages.push(Message::assistant(text.clone()));
                    env.answer = Some(text);
                    return;
                }
                Err(problems) if attempts <= output.max_retries() => {
                    corrections.push(Message::assistant(reply.text));
                    corrections.push(Message::user(output.correction(&problems)));
                }
                Err(problems) => {
                    // Nothing lost: the last reply stays in the conversation.
                    env.messages.push(Message::assistant(reply.text.clone()));
                    Err(OutputError::Invalid {
                        name: output.name().to_owned(),
                        attempts,
                        problems,
                        raw: reply.text,
                    })?;
                }
            }
        }
    })
}

/// The reply as the output's value: repaired, then checked.
fn read(output: &Output, text: &str) -> Result<Value, Vec<Problem>> {
    let value = repair(text).map_err(|e| {
        vec![Problem {
            field: None,
            message: format!("the reply is not one JSON object ({e})"),
        }]
    })?;
    output.check(&value).map(|()| value)
}
