//! One request's generation on the worker thread: the prompt through the
//! model's chat template, prefix reuse of the KV cache, sampling (with the
//! action grammar when asked), and the tokens sent as UTF-8 chunks.

use std::collections::HashMap;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc as async_mpsc;

use super::{backend_error, PROVIDER};
use crate::env::{Role, Usage};
use crate::model::{ChatRequest, Chunk, FinishReason, ModelError, Params};

pub(super) struct Generation<'m, 'c> {
    pub(super) model: &'m LlamaModel,
    pub(super) ctx: &'c mut LlamaContext<'m>,
    pub(super) template: Option<&'c LlamaChatTemplate>,
    pub(super) grammars: &'c mut HashMap<String, String>,
    pub(super) grammar_on: bool,
    pub(super) cached: &'c mut Vec<LlamaToken>,
    pub(super) out: &'c async_mpsc::Sender<Result<Chunk, ModelError>>,
}

/// Why generation stopped early without an error.
enum Stop {
    Cancelled,
}

impl Generation<'_, '_> {
    pub(super) fn serve(&mut self, request: ChatRequest) -> Result<(), ModelError> {
        let prompt = self.prompt(&request)?;
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), true, true);
        let n_ctx = self.ctx.n_ctx() as usize;
        let max_new = request.params.max_tokens.map_or(n_ctx, |m| m as usize);
        if tokens.is_empty() {
            return Err(ModelError::Request {
                provider: PROVIDER.to_owned(),
                message: "the prompt is empty".to_owned(),
            });
        }
        if tokens.len() >= n_ctx {
            return Err(ModelError::ContextOverflow {
                provider: PROVIDER.to_owned(),
                prompt_tokens: Some(tokens.len() as u32),
                window: Some(n_ctx as u32),
                message: format!(
                    "the prompt has {} tokens; the context holds {n_ctx} (LocalOptions::context)",
                    tokens.len()
                ),
            });
        }
        let mut grammar = match (&request.response_schema, self.grammar_on) {
            (Some(schema), true) => Some(self.grammar(schema)?),
            _ => None,
        };
        let mut chain = sampler_chain(&request.params);

        // Keep the prefix shared with what the context holds (the system
        // prompt and tool list repeat across calls); decode the rest. At
        // least one token is decoded, for its logits.
        let mut keep = self
            .cached
            .iter()
            .zip(&tokens)
            .take_while(|(a, b)| a == b)
            .count()
            .min(tokens.len() - 1);
        if self
            .ctx
            .kv_cache_seq_rm(0, Some(keep as u32), None)
            .is_err()
        {
            self.ctx.clear_kv_cache();
            keep = 0;
        }
        self.cached.truncate(keep);
        let mut batch = LlamaBatch::new(512, 1);
        let mut last_logits = 0;
        for (chunk_start, piece) in tokens[keep..]
            .chunks(512)
            .enumerate()
            .map(|(i, c)| (keep + i * 512, c))
        {
            batch.clear();
            for (offset, token) in piece.iter().enumerate() {
                let pos = chunk_start + offset;
                let is_last = pos + 1 == tokens.len();
                batch
                    .add(*token, pos as i32, &[0], is_last)
                    .map_err(|e| backend_error(format!("batch: {e}")))?;
                if is_last {
                    last_logits = offset as i32;
                }
            }
            self.ctx
                .decode(&mut batch)
                .map_err(|e| backend_error(format!("decode: {e}")))?;
            self.cached.extend_from_slice(piece);
        }

        let mut pos = tokens.len();
        let mut generated = 0usize;
        let mut text = String::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut logprobs: Vec<f32> = Vec::new();
        let finish = loop {
            if generated >= max_new || pos >= n_ctx {
                break FinishReason::Length;
            }
            if self.out.is_closed() {
                return Ok(()); // nobody listens: stop generating
            }
            let Some(token) = self.next_token(last_logits, &mut chain, grammar.as_mut()) else {
                break FinishReason::Stop; // the grammar admits nothing more
            };
            if vocab.is_eog(token) {
                break FinishReason::Stop;
            }
            if let Some(g) = grammar.as_mut() {
                g.try_accept(token).map_err(|e| {
                    backend_error(format!("grammar rejected an accepted token: {e}"))
                })?;
            }
            chain.accept(token);
            generated += 1;
            if request.params.logprobs {
                logprobs.push(log_softmax_at(self.ctx.get_logits_ith(last_logits), token));
            }

            pending.extend(vocab.token_to_piece(token, false, None));
            let piece = take_utf8(&mut pending);
            if !piece.is_empty() {
                text.push_str(&piece);
                if let Err(Stop::Cancelled) = self.send(Chunk::Text(piece)) {
                    return Ok(());
                }
                if request
                    .params
                    .stop
                    .iter()
                    .any(|s| !s.is_empty() && text.ends_with(s.as_str()))
                {
                    break FinishReason::Stop;
                }
            }

            batch.clear();
            batch
                .add(token, pos as i32, &[0], true)
                .map_err(|e| backend_error(format!("batch: {e}")))?;
            self.ctx
                .decode(&mut batch)
                .map_err(|e| backend_error(format!("decode: {e}")))?;
            self.cached.push(token);
            last_logits = 0;
            pos += 1;
        };
        let usage = Usage {
            prompt_tokens: tokens.len() as u64,
            completion_tokens: generated as u64,
            cached_tokens: keep as u64,
            ..Usage::default()
        };
        if !logprobs.is_empty() {
            let _ = self.send(Chunk::Logprobs(logprobs));
        }
        let _ = self.send(Chunk::Finish(finish));
        let _ = self.send(Chunk::Usage(usage));
        Ok(())
    }

    fn send(&self, chunk: Chunk) -> Result<(), Stop> {
        self.out
            .blocking_send(Ok(chunk))
            .map_err(|_| Stop::Cancelled)
    }

    /// The conversation through the model's own chat template.
    fn prompt(&self, request: &ChatRequest) -> Result<String, ModelError> {
        let template = self.template.ok_or_else(|| ModelError::Request {
            provider: PROVIDER.to_owned(),
            message: "the model has no chat template".to_owned(),
        })?;
        let messages = request
            .messages
            .iter()
            .map(|m| {
                let role = match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                    Role::Tool => "tool",
                };
                // NUL cannot cross into C; it carries no meaning in a prompt.
                LlamaChatMessage::new(role.to_owned(), m.content.replace('\0', ""))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ModelError::Request {
                provider: PROVIDER.to_owned(),
                message: format!("message not representable: {e}"),
            })?;
        self.model
            .apply_chat_template(template, &messages, true)
            .map_err(|e| backend_error(format!("chat template: {e}")))
    }

    /// A grammar sampler for `schema`, compiled and checked before use.
    fn grammar(&mut self, schema: &serde_json::Value) -> Result<LlamaSampler, ModelError> {
        let key = schema.to_string();
        let gbnf = match self.grammars.get(&key) {
            Some(g) => g.clone(),
            None => {
                let g =
                    llama_cpp_2::json_schema_to_grammar(&key).map_err(|e| ModelError::Request {
                        provider: PROVIDER.to_owned(),
                        message: format!(
                            "the response schema cannot be turned into a grammar: {e}"
                        ),
                    })?;
                self.grammars.insert(key, g.clone());
                g
            }
        };
        compile_grammar(self.model, &gbnf)
    }

    /// The next token: the unconstrained pick when the grammar allows it
    /// (cheap), else a pick among the tokens the grammar allows. Nothing is
    /// accepted here; the caller accepts the result exactly once.
    fn next_token(
        &self,
        idx: i32,
        chain: &mut LlamaSampler,
        grammar: Option<&mut LlamaSampler>,
    ) -> Option<LlamaToken> {
        let mut candidates = self.ctx.token_data_array_ith(idx);
        candidates.apply_sampler(chain);
        let pick = candidates.selected_token()?;
        let Some(grammar) = grammar else {
            return Some(pick);
        };
        let mut single = LlamaTokenDataArray::new(vec![LlamaTokenData::new(pick, 1.0, 0.0)], false);
        single.apply_sampler(grammar);
        if single.data.first().is_some_and(|d| d.logit().is_finite()) {
            return Some(pick);
        }
        let mut allowed = self.ctx.token_data_array_ith(idx);
        allowed.apply_sampler(grammar);
        allowed.data.retain(|d| d.logit().is_finite());
        if allowed.data.is_empty() {
            return None;
        }
        allowed.apply_sampler(chain);
        allowed.selected_token()
    }
}

/// The natural-log probability of `token` under `logits` (the model's own
/// distribution, before sampling or the grammar narrow it).
fn log_softmax_at(logits: &[f32], token: LlamaToken) -> f32 {
    let Some(&chosen) = usize::try_from(token.0).ok().and_then(|i| logits.get(i)) else {
        return f32::NEG_INFINITY;
    };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    chosen - max - sum.ln()
}

/// Compiles `gbnf` for `model`, or says why it cannot.
fn compile_grammar(model: &LlamaModel, gbnf: &str) -> Result<LlamaSampler, ModelError> {
    LlamaSampler::grammar(model, gbnf, "root").map_err(|e| ModelError::Request {
        provider: PROVIDER.to_owned(),
        message: format!("invalid grammar: {e}"),
    })
}

/// Greedy at temperature 0 (or unset); otherwise top-k, top-p, temperature
/// and a seeded draw, as llama.cpp's defaults do.
fn sampler_chain(params: &Params) -> LlamaSampler {
    match params.temperature {
        Some(t) if t > 0.0 => LlamaSampler::chain_simple([
            LlamaSampler::top_k(40),
            LlamaSampler::top_p(0.95, 1),
            LlamaSampler::min_p(0.05, 1),
            LlamaSampler::temp(t),
            LlamaSampler::dist(params.seed.unwrap_or(0) as u32),
        ]),
        _ => LlamaSampler::greedy(),
    }
}

/// The longest valid UTF-8 prefix of `bytes`, removed from it; a character
/// split across tokens waits for its remaining bytes.
pub(super) fn take_utf8(bytes: &mut Vec<u8>) -> String {
    let valid = match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) if e.error_len().is_some() => {
            // Invalid bytes (not just incomplete): replace them rather than stall.
            let text = String::from_utf8_lossy(bytes).into_owned();
            bytes.clear();
            return text;
        }
        Err(e) => e.valid_up_to(),
    };
    let rest = bytes.split_off(valid);
    String::from_utf8(std::mem::replace(bytes, rest)).unwrap_or_default()
}
