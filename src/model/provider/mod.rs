//! The providers: vendor APIs over HTTP (OpenAI-compatible chat
//! completions, Anthropic messages), llama.cpp in-process, and OpenAI's
//! tokenizer; each implements [`ChatModel`](crate::model::ChatModel) and
//! nothing else, so layers and states never know which one they hold.

#[cfg(feature = "http")]
mod anthropic;
#[cfg(feature = "http")]
mod anthropic_wire;
#[cfg(feature = "http")]
pub(crate) mod http;
#[cfg(feature = "local")]
mod local;
#[cfg(feature = "http")]
mod openai;
#[cfg(feature = "http")]
mod openai_body;
#[cfg(feature = "tiktoken")]
mod tiktoken;
#[cfg(feature = "http")]
mod window;

#[cfg(feature = "http")]
pub(crate) use anthropic::message_reply;
#[cfg(feature = "http")]
pub use anthropic::{Anthropic, AnthropicBuilder, ANTHROPIC_BASE_URL};
#[cfg(feature = "local")]
pub use local::{default_model_path, LocalModel, LocalOptions, DEFAULT_MODEL_FILE};
#[cfg(feature = "http")]
pub(crate) use openai::completion_reply;
#[cfg(feature = "http")]
pub use openai::{OpenAi, OpenAiBuilder, OPENAI_BASE_URL};
#[cfg(feature = "tiktoken")]
pub use tiktoken::Tiktoken;
