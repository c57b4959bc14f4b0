//! How a request meets its thread: a new run, or the paused run it
//! answers. A plain function of the request and the thread's paused run,
//! with unit tests; the server does the I/O around it.

use serde_json::Value;

use super::ServerError;
use crate::agui::{ResumeStatus, RunAgentInput};
use crate::env::Interrupt;
use crate::tool::client::{is_client_request, requested_call_ids, ClientResults};

/// What a request starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Start {
    /// A new run, from the request's messages.
    Fresh,
    /// The paused run `run_id`, resumed with `response`.
    Resume { run_id: String, response: Value },
}

/// Decides what `input` starts, given the run its thread is paused on
/// (`paused`: its statewise run id and request).
///
/// Resume entries must answer the paused request; `cancelled` answers an
/// approval with a rejection of every call and any other request with
/// `null`. A request without resume entries on a thread paused on client
/// tools resumes it with the results its tool messages carry (a call they
/// leave out fails); one whose messages carry none, or one on a thread
/// paused on a person, starts afresh (the pause is abandoned).
pub(crate) fn start(
    input: &RunAgentInput,
    paused: Option<(&str, &Interrupt)>,
) -> Result<Start, ServerError> {
    if !input.resume.is_empty() {
        let Some((run_id, request)) = paused else {
            return Err(ServerError::NothingToResume {
                thread_id: input.thread_id.clone(),
            });
        };
        let Some(entry) = input.resume.iter().find(|e| e.interrupt_id == request.id) else {
            return Err(ServerError::UnknownInterrupt {
                answered: input
                    .resume
                    .iter()
                    .map(|e| e.interrupt_id.clone())
                    .collect(),
                waiting: request.id.clone(),
            });
        };
        let response = match entry.status {
            ResumeStatus::Resolved => entry.payload.clone().unwrap_or(Value::Null),
            ResumeStatus::Cancelled if request.id.starts_with("approve:") => Value::Bool(false),
            ResumeStatus::Cancelled => Value::Null,
        };
        return Ok(Start::Resume {
            run_id: run_id.to_owned(),
            response,
        });
    }
    match paused {
        Some((run_id, request)) if is_client_request(request) => {
            let results = input.tool_results(&requested_call_ids(request));
            if results.is_empty() {
                return Ok(Start::Fresh);
            }
            let response = results
                .into_iter()
                .fold(ClientResults::new(), |r, (id, v)| r.with(id, v))
                .into_response();
            Ok(Start::Resume {
                run_id: run_id.to_owned(),
                response,
            })
        }
        _ => Ok(Start::Fresh),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::ToolCall;
    use crate::tool::approval::approval_request;
    use crate::tool::client::client_request;
    use serde_json::json;

    fn input(v: Value) -> RunAgentInput {
        let mut base = json!({"threadId": "t", "runId": "r2", "messages": []});
        base.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn a_resume_entry_answers_the_paused_request() {
        let call = ToolCall::new("c1", "send_email", json!({}));
        let asked = approval_request(&[&call]);
        let ok = input(
            json!({"resume": [{"interruptId": asked.id, "status": "resolved", "payload": true}]}),
        );
        assert_eq!(
            start(&ok, Some(("r1", &asked))).unwrap(),
            Start::Resume {
                run_id: "r1".into(),
                response: json!(true)
            }
        );
        let no = input(json!({"resume": [{"interruptId": asked.id, "status": "cancelled"}]}));
        assert_eq!(
            start(&no, Some(("r1", &asked))).unwrap(),
            Start::Resume {
                run_id: "r1".into(),
                response: json!(false)
            }
        );
        let wrong = input(json!({"resume": [{"interruptId": "other", "status": "resolved"}]}));
        assert!(matches!(
            start(&wrong, Some(("r1", &asked))),
            Err(ServerError::UnknownInterrupt { .. })
        ));
        assert!(matches!(
            start(&ok, None),
            Err(ServerError::NothingToResume { .. })
        ));
        assert_eq!(
            start(&input(json!({})), Some(("r1", &asked))).unwrap(),
            Start::Fresh
        );
    }

    #[test]
    fn tool_messages_answer_a_pause_on_client_tools() {
        let call = ToolCall::new("c1", "weather", json!({}));
        let asked = client_request(&[&call]);
        let answered = input(json!({"messages": [
            {"id": "m1", "role": "assistant", "toolCalls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
            {"id": "m2", "role": "tool", "toolCallId": "c1", "content": "sunny"}
        ]}));
        assert_eq!(
            start(&answered, Some(("r1", &asked))).unwrap(),
            Start::Resume {
                run_id: "r1".into(),
                response: json!({"c1": "sunny"})
            }
        );
        let unanswered =
            input(json!({"messages": [{"id": "m3", "role": "user", "content": "never mind"}]}));
        assert_eq!(
            start(&unanswered, Some(("r1", &asked))).unwrap(),
            Start::Fresh
        );
    }
}
