//! The names of the OpenTelemetry attributes statewise's spans carry: the
//! GenAI semantic conventions (`gen-ai-spans.md`, `gen-ai-agent-spans.md`)
//! and the general ones they use.
//!
//! Written out here, rather than taken from `opentelemetry-semantic-conventions`,
//! which marks the GenAI names deprecated while they are in development,
//! and which the core crate would otherwise depend on without the `otel`
//! feature. Spans name a field `{ GEN_AI_OPERATION_NAME } = ...` with these.
//! `otel.name` and `otel.kind` are how `tracing-opentelemetry` takes a
//! span's exported name (`chat gpt-4o-mini`) and kind.

/// The exported span name (`tracing-opentelemetry`'s special field).
pub const OTEL_NAME: &str = "otel.name";
/// The exported span kind: `client` for model calls, `internal` otherwise.
pub const OTEL_KIND: &str = "otel.kind";

/// `chat`, `execute_tool`, `invoke_agent`.
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// The provider: `openai`, `anthropic`, or the model's own name.
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
/// The model asked for.
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
/// The model that answered, when the provider says.
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
/// Why the model stopped, one per choice.
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
/// The request's token budget.
pub const GEN_AI_REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
/// The request's temperature.
pub const GEN_AI_REQUEST_TEMPERATURE: &str = "gen_ai.request.temperature";
/// Prompt tokens (cached ones included).
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
/// Generated tokens.
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// Prompt tokens read from the provider's cache.
pub const GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
/// Prompt tokens written to the provider's cache.
pub const GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: &str =
    "gen_ai.usage.cache_creation.input_tokens";
/// Generated tokens spent on reasoning.
pub const GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: &str = "gen_ai.usage.reasoning.output_tokens";
/// The conversation sent (opt-in content).
pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
/// The reply (opt-in content).
pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
/// The tool's name.
pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
/// The tool call's id.
pub const GEN_AI_TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
/// `function` for statewise's tools.
pub const GEN_AI_TOOL_TYPE: &str = "gen_ai.tool.type";
/// The tool call's arguments (opt-in content).
pub const GEN_AI_TOOL_CALL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
/// The tool call's result (opt-in content).
pub const GEN_AI_TOOL_CALL_RESULT: &str = "gen_ai.tool.call.result";
/// The agent (machine) name.
pub const GEN_AI_AGENT_NAME: &str = "gen_ai.agent.name";
/// The conversation a run belongs to: its run id.
pub const GEN_AI_CONVERSATION_ID: &str = "gen_ai.conversation.id";
/// The class of error that ended the operation.
pub const ERROR_TYPE: &str = "error.type";
/// The model server's host.
pub const SERVER_ADDRESS: &str = "server.address";
/// The model server's port.
pub const SERVER_PORT: &str = "server.port";

/// A model name's provider and model id: `openai:gpt-4o-mini` is
/// (`openai`, `gpt-4o-mini`); a name without a provider is both.
pub(crate) fn provider_and_model(name: &str) -> (&str, &str) {
    name.split_once(':').unwrap_or((name, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_provider_and_model() {
        assert_eq!(
            provider_and_model("openai:gpt-4o-mini"),
            ("openai", "gpt-4o-mini")
        );
        assert_eq!(
            provider_and_model("local:/m/smol.gguf"),
            ("local", "/m/smol.gguf")
        );
        assert_eq!(provider_and_model("scripted"), ("scripted", "scripted"));
    }
}
