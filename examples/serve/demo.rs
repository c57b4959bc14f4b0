//! The demo's stand-in model and its email tool.

use serde::Deserialize;
use serde_json::{json, Value};
use statewise::model::{ChatRequest, ModelError, Reply};
use statewise::tool::{Tool, ToolContext};
use statewise::{Role, ToolCall};

/// "Sends" an email: answers that it did.
pub struct SendEmail;

#[derive(Deserialize, schemars::JsonSchema)]
pub struct EmailArgs {
    to: String,
    subject: String,
}

impl Tool for SendEmail {
    type Args = EmailArgs;
    type Output = String;
    type Error = std::convert::Infallible;

    fn name(&self) -> &str {
        "send_email"
    }
    fn description(&self) -> &str {
        "Sends an email."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object",
               "properties": {"to": {"type": "string"}, "subject": {"type": "string"}},
               "required": ["to", "subject"]})
    }
    async fn call(&self, args: EmailArgs, _ctx: ToolContext) -> Result<String, Self::Error> {
        Ok(format!("sent to {} ({})", args.to, args.subject))
    }
}

/// Calls the clock for a question about time, `send_email` for one about
/// email, and answers from the tool's result once it has one.
pub fn assistant(request: &ChatRequest) -> Result<Reply, ModelError> {
    let question = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User && m.tool_call_id.is_none())
        .map(|m| m.content.to_lowercase())
        .unwrap_or_default();
    // A tool result after the question: a tool message, or (in JSON-action
    // prompts) a user message that keeps the call's id; its last line is
    // the result.
    let result = request
        .messages
        .iter()
        .rev()
        .take_while(|m| !(m.role == Role::User && m.tool_call_id.is_none()))
        .find(|m| m.role == Role::Tool || m.tool_call_id.is_some())
        .and_then(|m| m.content.lines().last().map(str::to_owned));
    let action = match result {
        Some(r) => {
            let result: Value = serde_json::from_str(&r).unwrap_or(Value::String(r));
            let answer = match (result["error"].as_str(), result.as_str()) {
                (Some(error), _) => format!("I could not do that: {error}."),
                // The clock says the time in a sentence of its own.
                (None, Some(text)) if question.contains("time") => {
                    format!("The clock says: {text}")
                }
                (None, Some(text)) => format!("Done: the email was {text}."),
                (None, None) => format!("Done: {result}."),
            };
            json!({"final_answer": answer})
        }
        None if question.contains("time") => {
            json!({"tool_calls": [{"name": "clock", "arguments": {}}]})
        }
        None if question.contains("mail") => json!({"tool_calls": [{"name": "send_email",
            "arguments": {"to": "team@example.com", "subject": "The release is out"}}]}),
        None => json!({"final_answer": format!(
            "I am a stand-in model: ask me what time it is, or to email the team. You asked: {question}")}),
    };
    Ok(Reply::text(action.to_string()))
}

/// The same assistant calling its tools natively: its tool calls as the
/// reply's calls, its answer as the reply's text (`--native`).
pub fn native_assistant(request: &ChatRequest) -> Result<Reply, ModelError> {
    let action: Value = serde_json::from_str(&assistant(request)?.text).unwrap_or_default();
    if let Some(answer) = action["final_answer"].as_str() {
        return Ok(Reply::text(answer));
    }
    let calls = action["tool_calls"].as_array().cloned().unwrap_or_default();
    let step = request.messages.len();
    Ok(Reply::tool_calls(
        calls
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let name = c["name"].as_str().unwrap_or_default();
                ToolCall::new(format!("call_{step}_{i}"), name, c["arguments"].clone())
            })
            .collect(),
    ))
}
