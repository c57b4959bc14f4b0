//! What an AG-UI client sends: [`RunAgentInput`], its messages, tools and
//! resume entries, and how they become an [`Env`] and client tools.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::env::{Env, ToolCall};
use crate::tool::ToolSpec;

/// A request to run the agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunAgentInput {
    /// The conversation.
    pub thread_id: String,
    /// This run.
    pub run_id: String,
    /// The protocol version the client speaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// The run that spawned this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<String>,
    /// The client's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
    /// The conversation so far.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Tools the client runs.
    #[serde(default)]
    pub tools: Vec<Tool>,
    /// Ambient information for the run.
    #[serde(default)]
    pub context: Vec<Context>,
    /// Application values passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_props: Option<Value>,
    /// Answers to the interrupts a previous run of the thread ended on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resume: Vec<ResumeEntry>,
}

/// A message of the conversation, tagged by `role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "role",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum Message {
    /// Instructions from the developer.
    Developer {
        /// Its id.
        id: String,
        /// Its text.
        content: String,
    },
    /// Instructions.
    System {
        /// Its id.
        id: String,
        /// Its text.
        content: String,
    },
    /// The assistant's text and tool calls.
    Assistant {
        /// Its id.
        id: String,
        /// Its text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        /// Its tool calls.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_calls: Option<Vec<AssistantToolCall>>,
    },
    /// The person.
    User {
        /// Its id.
        id: String,
        /// Text, or content parts.
        content: Content,
    },
    /// A tool call's result.
    Tool {
        /// Its id.
        id: String,
        /// The result.
        content: Content,
        /// The call it answers.
        tool_call_id: String,
        /// Set when the call failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// An activity shown in the conversation (not sent to the model).
    Activity {
        /// Its id.
        id: String,
        /// What kind of activity.
        activity_type: String,
        /// Its content.
        content: Value,
    },
    /// Reasoning text (not sent to the model).
    Reasoning {
        /// Its id.
        id: String,
        /// Its text.
        content: String,
    },
}

/// A message's content: text, or content parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Parts: text, images, audio, video, documents.
    Parts(Vec<Value>),
}

impl Content {
    /// The text of the content: its text parts joined (media parts have
    /// none).
    pub fn text(&self) -> String {
        match self {
            Content::Text(t) => t.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter(|p| p["type"] == "text")
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

/// A tool call in an assistant message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantToolCall {
    /// The call's id.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The tool and its arguments.
    pub function: FunctionCall,
}

/// The tool and arguments of a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The tool.
    pub name: String,
    /// Its arguments, as JSON text.
    pub arguments: String,
}

/// A tool the client offers (and runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The JSON Schema of its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

/// Ambient information for a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// What it is.
    pub description: String,
    /// The information.
    pub value: String,
}

/// An answer to an interrupt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumeEntry {
    /// The interrupt answered.
    pub interrupt_id: String,
    /// Answered or abandoned.
    pub status: ResumeStatus,
    /// The answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// Whether an interrupt was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumeStatus {
    /// Answered: the payload is the answer.
    Resolved,
    /// Abandoned.
    Cancelled,
}

impl RunAgentInput {
    /// The env a new run of this request starts from: the conversation
    /// (developer messages as system ones; activity and reasoning messages
    /// left out, as the model never saw them) and each context entry as a
    /// system message before it.
    pub fn env(&self) -> Env {
        let mut env = Env::new();
        for c in &self.context {
            env.messages.push(crate::env::Message::system(format!(
                "{}: {}",
                c.description, c.value
            )));
        }
        for m in &self.messages {
            match m {
                Message::Developer { content, .. } | Message::System { content, .. } => {
                    env.messages
                        .push(crate::env::Message::system(content.clone()));
                }
                Message::User { content, .. } => {
                    env.messages.push(crate::env::Message::user(content.text()));
                }
                Message::Assistant {
                    content,
                    tool_calls,
                    ..
                } => {
                    let mut message =
                        crate::env::Message::assistant(content.clone().unwrap_or_default());
                    message.tool_calls = tool_calls
                        .iter()
                        .flatten()
                        .map(|c| {
                            let arguments = serde_json::from_str(&c.function.arguments)
                                .unwrap_or(Value::String(c.function.arguments.clone()));
                            ToolCall::new(c.id.clone(), c.function.name.clone(), arguments)
                        })
                        .collect();
                    env.messages.push(message);
                }
                Message::Tool {
                    content,
                    tool_call_id,
                    ..
                } => {
                    env.messages.push(crate::env::Message::tool(
                        tool_call_id.clone(),
                        content.text(),
                    ));
                }
                Message::Activity { .. } | Message::Reasoning { .. } => {}
            }
        }
        env
    }

    /// The client's tools, as specs for
    /// [`Toolbox::with_client_tools`](crate::tool::Toolbox::with_client_tools).
    pub fn client_tools(&self) -> Vec<ToolSpec> {
        self.tools
            .iter()
            .map(|t| ToolSpec {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters: t
                    .parameters
                    .clone()
                    .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
            })
            .collect()
    }

    /// The results the request's tool messages carry, by call id, for the
    /// calls in `pending` (a failed one as `{"error": ...}`).
    pub fn tool_results(&self, pending: &[String]) -> serde_json::Map<String, Value> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                Message::Tool {
                    content,
                    tool_call_id,
                    error,
                    ..
                } if pending.contains(tool_call_id) => {
                    let result = match error {
                        Some(e) => serde_json::json!({ "error": e }),
                        None => Value::String(content.text()),
                    };
                    Some((tool_call_id.clone(), result))
                }
                _ => None,
            })
            .collect()
    }

    /// The ids of every tool call the request's messages hold.
    pub fn tool_call_ids(&self) -> impl Iterator<Item = &str> {
        self.messages.iter().flat_map(|m| match m {
            Message::Assistant {
                tool_calls: Some(calls),
                ..
            } => calls.iter().map(|c| c.id.as_str()).collect(),
            _ => Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_clients_request_becomes_an_env_and_client_tools() {
        let input: RunAgentInput = serde_json::from_value(json!({
            "threadId": "t1", "runId": "r1",
            "messages": [
                {"id": "1", "role": "user", "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Oslo?"}]},
                {"id": "2", "role": "assistant", "toolCalls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
                {"id": "3", "role": "tool", "toolCallId": "c1", "content": "4 °C"},
                {"id": "4", "role": "reasoning", "content": "hm"}
            ],
            "tools": [{"name": "weather", "description": "Weather by city"}],
            "context": [{"description": "user's city", "value": "Oslo"}]
        }))
        .unwrap();
        let env = input.env();
        assert_eq!(env.messages.len(), 4);
        assert_eq!(env.messages[0].content, "user's city: Oslo");
        assert_eq!(env.messages[1].content, "Weather in Oslo?");
        assert_eq!(
            env.messages[2].tool_calls[0].arguments,
            json!({"city": "Oslo"})
        );
        assert_eq!(env.messages[3].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(input.client_tools()[0].name, "weather");
        assert_eq!(input.tool_results(&["c1".into()])["c1"], json!("4 °C"));
        assert!(input.tool_results(&["c9".into()]).is_empty());
        assert_eq!(input.tool_call_ids().collect::<Vec<_>>(), ["c1"]);
    }
}
