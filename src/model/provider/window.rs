//! How an HTTP provider learns its model's context window: a table for the
//! vendors' own models, and for any other server one question, asked once,
//! to the endpoints that say it.
//!
//! llama.cpp's server gives the size of a slot in `/props`
//! (`default_generation_settings.n_ctx`); vLLM gives `max_model_len` and
//! OpenRouter and LM Studio `context_length` in `/v1/models`. A server that
//! says neither leaves the window unknown, and requests go as they are
//! until an overflow error reports it.

use std::time::Duration;

use serde_json::Value;

use crate::redact::Secret;

/// Longest wait for a server's answer about its window.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// The context windows of OpenAI's models, by name prefix (longest first).
const OPENAI: &[(&str, u32)] = &[
    ("gpt-4.1", 1_047_576),
    ("gpt-5", 400_000),
    ("gpt-4o", 128_000),
    ("gpt-4-turbo", 128_000),
    ("gpt-4-32k", 32_768),
    ("gpt-4", 8_192),
    ("gpt-3.5-turbo", 16_385),
    ("o1-mini", 128_000),
    ("o1", 200_000),
    ("o3", 200_000),
    ("o4-mini", 200_000),
];

/// The window of an OpenAI model, if it is one we know.
pub(crate) fn openai_window(model: &str) -> Option<u32> {
    let model = model.strip_prefix("ft:").unwrap_or(model);
    OPENAI
        .iter()
        .find(|(prefix, _)| model.starts_with(prefix))
        .map(|(_, tokens)| *tokens)
}

/// The window of an Anthropic model: 200k for every Claude model (the
/// larger windows some offer are a beta one opts into).
pub(crate) fn anthropic_window(model: &str) -> Option<u32> {
    model.starts_with("claude").then_some(200_000)
}

/// Asks the server behind `base` (an OpenAI-compatible base URL, up to
/// `/v1`) how large `model`'s window is: llama.cpp's `/props`, then
/// `/models`. `None` when neither says.
pub(crate) async fn ask_server(
    client: &reqwest::Client,
    base: &str,
    key: Option<&Secret>,
    model: &str,
) -> Option<u32> {
    let root = base.strip_suffix("/v1").unwrap_or(base);
    if let Some(props) = get_json(client, &format!("{root}/props"), key).await {
        if let Some(n) = slot_size(&props) {
            return Some(n);
        }
    }
    let models = get_json(client, &format!("{base}/models"), key).await?;
    listed_window(&models, model)
}

async fn get_json(client: &reqwest::Client, url: &str, key: Option<&Secret>) -> Option<Value> {
    let mut request = client.get(url).timeout(ASK_TIMEOUT);
    if let Some(key) = key {
        request = request.bearer_auth(key.expose());
    }
    let response = request.send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// llama.cpp's `/props`: the context of one slot.
fn slot_size(props: &Value) -> Option<u32> {
    props
        .pointer("/default_generation_settings/n_ctx")
        .or_else(|| props.get("n_ctx"))
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
}

/// `/models`: the entry for `model` (or the only one), with its window.
fn listed_window(models: &Value, model: &str) -> Option<u32> {
    let list = models.get("data")?.as_array()?;
    let entry = list
        .iter()
        .find(|m| m.get("id").and_then(Value::as_str) == Some(model))
        .or_else(|| (list.len() == 1).then(|| &list[0]))?;
    ["max_model_len", "context_length", "max_context_length"]
        .iter()
        .find_map(|field| entry.get(*field).and_then(Value::as_u64))
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vendor_tables() {
        assert_eq!(openai_window("gpt-4o-mini"), Some(128_000));
        assert_eq!(openai_window("gpt-4.1-nano"), Some(1_047_576));
        assert_eq!(openai_window("gpt-4"), Some(8_192));
        assert_eq!(openai_window("ft:gpt-4o:org::id"), Some(128_000));
        assert_eq!(openai_window("o1-mini"), Some(128_000));
        assert_eq!(openai_window("llama-3"), None);
        assert_eq!(anthropic_window("claude-sonnet-4-5"), Some(200_000));
        assert_eq!(anthropic_window("other"), None);
    }

    #[test]
    fn what_servers_say() {
        let llama = json!({"default_generation_settings": {"n_ctx": 1024}, "total_slots": 1});
        assert_eq!(slot_size(&llama), Some(1024));
        assert_eq!(slot_size(&json!({"n_ctx": 0})), None);
        let vllm = json!({"data": [{"id": "qwen", "max_model_len": 32768}]});
        assert_eq!(listed_window(&vllm, "qwen"), Some(32768));
        assert_eq!(listed_window(&vllm, "other"), Some(32768), "the only model");
        let two = json!({"data": [
            {"id": "a", "context_length": 8192},
            {"id": "b", "context_length": 4096}
        ]});
        assert_eq!(listed_window(&two, "b"), Some(4096));
        assert_eq!(listed_window(&two, "c"), None);
        assert_eq!(listed_window(&json!({"data": [{"id": "a"}]}), "a"), None);
    }
}
