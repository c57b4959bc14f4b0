//! [`Tiktoken`]: OpenAI's own tokenizers (through `tiktoken-rs`), so
//! requests to OpenAI's models are fitted by exact counts.

use tiktoken_rs::CoreBPE;

use crate::model::TokenCounter;

/// Counts tokens with the tokenizer OpenAI uses for a model (`o200k_base`
/// for the GPT-4o, GPT-4.1, GPT-5 and o-series models, `cl100k_base` for
/// GPT-4 and GPT-3.5). [`OpenAi`](super::OpenAi) uses it for OpenAI's own
/// endpoint when the `tiktoken` feature is on.
#[derive(Clone)]
pub struct Tiktoken {
    name: String,
    bpe: &'static CoreBPE,
}

impl std::fmt::Debug for Tiktoken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tiktoken")
            .field("name", &self.name)
            .finish()
    }
}

impl Tiktoken {
    /// The tokenizer of the OpenAI model `model`, if it is one tiktoken
    /// knows. The tokenizer's tables are built on first use (and shared).
    pub fn for_model(model: &str) -> Option<Self> {
        let tokenizer = tiktoken_rs::tokenizer::get_tokenizer(model)?;
        let bpe = tiktoken_rs::bpe_for_tokenizer(tokenizer).ok()?;
        Some(Tiktoken {
            // `O200kBase` → `o200k_base`, as OpenAI names them.
            name: format!("{tokenizer:?}")
                .to_lowercase()
                .replace("base", "_base")
                .replace("edit", "_edit")
                .replace("harmony", "_harmony"),
            bpe,
        })
    }
}

impl TokenCounter for Tiktoken {
    fn name(&self) -> &str {
        &self.name
    }

    fn count(&self, text: &str) -> usize {
        self.bpe.encode_ordinary(text).len()
    }
}
