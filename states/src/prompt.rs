//! Turning an env into the messages a model sees.

use statewise::tool::ToolSpec;
use statewise::{Env, Message, Role};

/// The env's conversation for a model prompted with JSON actions: tool
/// results become user messages that say which call they answer, since such
/// a model has no native tool role.
pub(crate) fn conversation(system: String, env: &Env) -> Vec<Message> {
    let mut messages = Vec::with_capacity(env.messages.len() + 1);
    messages.push(Message::system(system));
    for m in &env.messages {
        if m.role == Role::Assistant && !m.tool_calls.is_empty() {
            // Calls made natively (before tools were withdrawn) become the
            // JSON action they stand for: vendors reject an assistant
            // message with tool calls that no tool message answers, and
            // the results below are user messages here.
            let calls: Vec<serde_json::Value> = m
                .tool_calls
                .iter()
                .map(|c| serde_json::json!({"name": c.name, "arguments": c.arguments}))
                .collect();
            let action = serde_json::json!({ "tool_calls": calls }).to_string();
            let content = match m.content.trim() {
                "" => action,
                text => format!("{text}\n{action}"),
            };
            messages.push(Message::assistant(content));
            continue;
        }
        if m.role != Role::Tool {
            messages.push(m.clone());
            continue;
        }
        let id = m.tool_call_id.as_deref().unwrap_or_default();
        let tool = tool_of(env, m);
        // It keeps the call's id: fitting the context keeps it with its call.
        messages.push(Message {
            tool_call_id: m.tool_call_id.clone(),
            ..Message::user(format!(
                "Observation from `{tool}` (call {id}):\n{}",
                m.content
            ))
        });
    }
    messages
}

/// The tool whose result tool message `m` holds (`tool` if unknown).
pub(crate) fn tool_of<'e>(env: &'e Env, m: &Message) -> &'e str {
    let id = m.tool_call_id.as_deref().unwrap_or_default();
    env.observations
        .iter()
        .find(|o| o.call_id == id)
        .map_or("tool", |o| o.tool.as_str())
}

/// How a model with native tool calling is told to finish.
pub(crate) const NATIVE_TOOLS_GUIDE: &str =
    "Call the tools you need. When you have what you need, reply to the user in plain text.";

/// The env's conversation as it is, for a model with native tool calling.
pub(crate) fn native_conversation(system: String, env: &Env) -> Vec<Message> {
    std::iter::once(Message::system(system))
        .chain(env.messages.iter().cloned())
        .collect()
}

/// The part of the system prompt that lists the tools and the action format.
pub(crate) fn action_format(tools: &[ToolSpec]) -> String {
    let mut out = String::new();
    if tools.is_empty() {
        out.push_str("Reply with exactly one JSON object and nothing else:\n");
        out.push_str("{\"final_answer\": \"<your answer to the user>\"}\n");
        return out;
    }
    out.push_str("You can call these tools:\n");
    for t in tools {
        out.push_str(&format!(
            "- {}: {}\n  arguments (JSON Schema): {}\n",
            t.name, t.description, t.parameters
        ));
    }
    out.push_str(
        "\nReply with exactly one JSON object and nothing else, in one of these forms:\n\
         {\"tool_calls\": [{\"name\": \"<tool name>\", \"arguments\": {...}}]}\n\
         {\"final_answer\": \"<your answer to the user>\"}\n\
         Several tool calls in one reply run in parallel. \
         After tool calls you will receive their observations.\n",
    );
    out
}
