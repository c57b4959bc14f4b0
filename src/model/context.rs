//! What a model's context window holds and how its tokens are counted.
//!
//! A model reports its [`ContextWindow`] (from the local GGUF, a server's
//! `/props`, a table of vendor models, or configuration) and, where it can
//! count exactly on this machine, a [`TokenCounter`]. Everywhere else the
//! [`Estimate`] counts: it is deliberately pessimistic, because a request
//! cut a little too short costs an old turn while one a little too long
//! costs the whole call.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ChatRequest;
use crate::env::Message;

/// What a chat template adds around each message (role markers, separators):
/// ChatML's `<|im_start|>user\n` and `<|im_end|>\n` are five tokens, OpenAI
/// counts four; one more for safety.
pub const MESSAGE_OVERHEAD: usize = 6;

/// What a template adds once: the assistant's opening for the reply.
pub const REQUEST_OVERHEAD: usize = 8;

/// Counts the tokens of a text the way a model's tokenizer does.
pub trait TokenCounter: Send + Sync {
    /// A short name for traces: `estimate`, `o200k_base`, `local:...`.
    fn name(&self) -> &str;

    /// How many tokens `text` is.
    fn count(&self, text: &str) -> usize;
}

impl std::fmt::Debug for dyn TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenCounter({})", self.name())
    }
}

/// A model's context window: how many tokens a request and its reply may
/// hold together, and the model's own token counter where one is at hand.
#[derive(Debug, Clone)]
pub struct ContextWindow {
    /// Tokens the window holds, prompt and reply together.
    pub tokens: u32,
    /// Counts tokens exactly for this model; `None` means estimate.
    pub counter: Option<Arc<dyn TokenCounter>>,
}

impl ContextWindow {
    /// A window of `tokens` whose tokens are estimated.
    pub fn new(tokens: u32) -> Self {
        ContextWindow {
            tokens,
            counter: None,
        }
    }

    /// The same window, counted by `counter`.
    pub fn with_counter(mut self, counter: Arc<dyn TokenCounter>) -> Self {
        self.counter = Some(counter);
        self
    }
}

/// The tokens `message` takes in a prompt: its text, its tool calls as
/// JSON, and the template's markers around it.
pub fn message_tokens(message: &Message, counter: &dyn TokenCounter) -> usize {
    let calls: usize = message
        .tool_calls
        .iter()
        .map(|c| counter.count(&c.name) + counter.count(&c.arguments.to_string()) + 4)
        .sum();
    counter.count(&message.content) + calls + MESSAGE_OVERHEAD
}

/// The tokens `request` takes before the reply: its messages, its tools'
/// specs and response schema (vendors put both into the prompt), and the
/// template's markers.
pub fn request_tokens(request: &ChatRequest, counter: &dyn TokenCounter) -> usize {
    let messages: usize = request
        .messages
        .iter()
        .map(|m| message_tokens(m, counter))
        .sum();
    messages + fixed_tokens(request, counter)
}

/// The tokens of `request` that do not depend on its messages.
pub fn fixed_tokens(request: &ChatRequest, counter: &dyn TokenCounter) -> usize {
    let tools: usize = request
        .tools
        .iter()
        .map(|t| {
            counter.count(&t.name)
                + counter.count(&t.description)
                + counter.count(&t.parameters.to_string())
        })
        .sum();
    let schema = request
        .response_schema
        .as_ref()
        .map_or(0, |s| counter.count(&s.to_string()));
    tools + schema + REQUEST_OVERHEAD
}

/// A conservative token estimate for text of unknown tokenizer: it counts
/// at least as many tokens as the BPE tokenizers of current models do
/// (checked against SmolLM2's and OpenAI's o200k in the tests), usually
/// 1.2 to 2 times as many.
///
/// Words are counted a token per three letters (two right after a digit,
/// as in hex and ids), every digit, punctuation mark and line break as one
/// (several tokenizers split digits one by one), and other characters a
/// token per two bytes of UTF-8.
#[derive(Debug, Clone, Copy, Default)]
pub struct Estimate;

impl TokenCounter for Estimate {
    fn name(&self) -> &str {
        "estimate"
    }

    fn count(&self, text: &str) -> usize {
        let mut tokens = 0;
        // Letters in the current word, whether it began right after a
        // digit (hex and ids split finer), and spaces in the current run.
        let mut letters: usize = 0;
        let mut glued = false;
        let mut spaces: usize = 0;
        let mut last_digit = false;
        let word = |letters: usize, glued: bool| match glued {
            true => letters.div_ceil(2),
            false => letters.div_ceil(3),
        };
        for c in text.chars() {
            if c.is_ascii_alphabetic() {
                if letters == 0 {
                    glued = last_digit;
                }
                letters += 1;
                // One space before a word is part of the word's token.
                if spaces > 1 {
                    tokens += spaces.div_ceil(4);
                }
                spaces = 0;
                last_digit = false;
                continue;
            }
            tokens += word(letters, glued);
            letters = 0;
            last_digit = c.is_ascii_digit();
            if c == ' ' {
                spaces += 1;
                continue;
            }
            tokens += spaces.div_ceil(4);
            spaces = 0;
            tokens += if c.is_ascii() {
                1
            } else {
                c.len_utf8().div_ceil(2)
            };
        }
        tokens + word(letters, glued) + spaces.div_ceil(4)
    }
}

/// What fitting a request to its context window did
/// ([`Fitter`](crate::fit::Fitter)); a fitted call streams it as
/// [`Streamed::Fitted`](super::Streamed::Fitted) when it changed the
/// request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fitted {
    /// The model's context window, in tokens.
    pub window: u32,
    /// What counted the tokens (`estimate`, a tokenizer's name).
    pub counter: String,
    /// Tokens the request may take, the reply's share set aside.
    pub budget: u32,
    /// The request's tokens before fitting.
    pub tokens_before: u32,
    /// The request's tokens as sent.
    pub tokens_after: u32,
    /// Messages left out.
    pub dropped: u32,
    /// Messages cut short.
    pub truncated: u32,
    /// Whether this is the tighter second fit after the provider still
    /// reported an overflow.
    pub tighter: bool,
}

impl Fitted {
    /// Whether the request was changed.
    pub fn changed(&self) -> bool {
        self.dropped > 0 || self.truncated > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_counts_words_digits_and_symbols() {
        let e = Estimate;
        assert_eq!(e.count(""), 0);
        assert_eq!(e.count("cat"), 1);
        assert_eq!(e.count("house"), 2);
        assert_eq!(e.count("the cat"), 2);
        assert_eq!(e.count("12345"), 5);
        assert_eq!(e.count("{\"a\": 1}"), 8);
        assert_eq!(e.count("        x"), 3);
        assert_eq!(e.count("日本"), 4);
        assert_eq!(e.count("\n\n"), 2);
        assert_eq!(e.count("0xdeadbeef"), 6);
    }
}
