//! A GGUF model run in-process by llama.cpp (feature `local`).
//!
//! One worker thread per loaded model owns the model and its context and
//! serves requests in arrival order, so concurrent runs never share a
//! sequence, inference never blocks the async runtime, and dropping a
//! reply stream stops its generation at the next token.
//!
//! llama.cpp aborts the whole process on some misuse (a failed `GGML_ASSERT`
//! cannot be caught), so everything it is handed is checked first: the
//! file's GGUF header, the grammar (built by llama.cpp's own JSON-Schema
//! converter, then compiled, before generation starts), and every sampler
//! call follows the documented sequence (each token accepted exactly once).

use std::collections::HashMap;
use std::io::Read;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, OnceLock, Weak};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc as async_mpsc;

use super::{
    Capabilities, ChatModel, ChatRequest, Chunk, ChunkStream, ContextWindow, FinishReason,
    ModelError, Params, TokenCounter,
};
use crate::env::{Role, Usage};

const PROVIDER: &str = "local";

/// The default model's file name (SmolLM2-135M-Instruct, Q4_1).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

const HOW_TO_GET_ONE: &str =
    "run scripts/fetch-model to download the default model, or set STATEWISE_MODEL to a .gguf file";

/// Where the default model lives: `$STATEWISE_MODEL` if set, else
/// `$STATEWISE_MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf` (the directory
/// defaulting to `~/.cache/statewise/models`, where `scripts/fetch-model`
/// puts it).
pub fn default_model_path() -> PathBuf {
    if let Some(path) = std::env::var_os("STATEWISE_MODEL").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let dir = std::env::var_os("STATEWISE_MODEL_DIR")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/statewise/models")
        });
    dir.join(DEFAULT_MODEL_FILE)
}

/// How a local model runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOptions {
    /// Context length in tokens (prompt plus reply).
    pub context: u32,
    /// Threads for generation; default: the machine's cores.
    pub threads: Option<u32>,
    /// Constrain replies to `ChatRequest::response_schema` with a grammar
    /// (default on).
    pub grammar: bool,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            context: 4096,
            threads: None,
            grammar: true,
        }
    }
}

/// A GGUF model loaded in this process.
///
/// Cloning is cheap and shares the loaded model; loading the same file with
/// the same options twice also shares it.
///
/// ```no_run
/// use statewise::model::{ChatModel, ChatRequest, LocalModel};
/// use statewise::Message;
///
/// # async fn demo() -> Result<(), statewise::model::ModelError> {
/// let model = LocalModel::load(statewise::model::default_model_path())?;
/// let reply = model.complete(ChatRequest::new(vec![Message::user("Hi!")])).await?;
/// println!("{}", reply.text);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LocalModel {
    inner: Arc<Shared>,
}

struct Shared {
    name: String,
    grammar: bool,
    window: ContextWindow,
    jobs: Mutex<mpsc::Sender<Job>>,
}

/// Counts with the model's own vocabulary, on the caller's thread:
/// llama.cpp's tokenizer only reads the vocabulary, so it runs beside the
/// worker's generation.
struct Vocabulary {
    name: String,
    model: Arc<LlamaModel>,
}

impl TokenCounter for Vocabulary {
    fn name(&self) -> &str {
        &self.name
    }

    fn count(&self, text: &str) -> usize {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, true)
            .len()
    }
}

/// What the worker hands back once the model is loaded.
struct Ready {
    model: Arc<LlamaModel>,
    /// The context's size in tokens.
    context: u32,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

struct Job {
    request: ChatRequest,
    out: async_mpsc::Sender<Result<Chunk, ModelError>>,
}

type Loaded = Mutex<HashMap<(PathBuf, LocalOptionsKey), Weak<Shared>>>;

#[derive(Clone, PartialEq, Eq, Hash)]
struct LocalOptionsKey(u32, Option<u32>, bool);

fn loaded() -> &'static Loaded {
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    LOADED.get_or_init(Default::default)
}

fn backend() -> Result<&'static LlamaBackend, ModelError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp logs every load and decode to stderr; keep it quiet.
            llama_cpp_2::send_logs_to_tracing(
                llama_cpp_2::LogOptions::default().with_logs_enabled(false),
            );
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| backend_error(format!("cannot start llama.cpp: {e}")))
}

fn backend_error(message: String) -> ModelError {
    ModelError::Backend {
        provider: PROVIDER.to_owned(),
        message,
    }
}

fn config_error(message: String) -> ModelError {
    ModelError::Config {
        provider: PROVIDER.to_owned(),
        message,
    }
}

impl LocalModel {
    /// Loads the GGUF file at `path` with default options. Blocks while the
    /// file loads (call it from `spawn_blocking` inside a busy runtime).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        Self::load_with(path, LocalOptions::default())
    }

    /// Loads the GGUF file at `path`.
    pub fn load_with(path: impl AsRef<Path>, options: LocalOptions) -> Result<Self, ModelError> {
        let path = path.as_ref();
        check_gguf(path)?;
        let key = (
            path.canonicalize().unwrap_or_else(|_| path.to_path_buf()),
            LocalOptionsKey(options.context, options.threads, options.grammar),
        );
        let mut loaded = loaded()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(inner) = loaded.get(&key).and_then(Weak::upgrade) {
            return Ok(LocalModel { inner });
        }
        let backend = backend()?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let file = path.to_path_buf();
        let worker_options = options.clone();
        std::thread::Builder::new()
            .name("statewise-local".into())
            .spawn(move || worker(backend, &file, &worker_options, queue, ready_tx))
            .map_err(|e| backend_error(format!("cannot start the worker thread: {e}")))?;
        let ready = ready_rx
            .recv()
            .map_err(|_| backend_error("the worker stopped while loading".to_owned()))??;
        let name = format!(
            "{PROVIDER}:{}",
            path.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let counter = Vocabulary {
            name: name.clone(),
            model: ready.model,
        };
        let inner = Arc::new(Shared {
            name,
            grammar: options.grammar,
            window: ContextWindow::new(ready.context).with_counter(Arc::new(counter)),
            jobs: Mutex::new(jobs),
        });
        loaded.insert(key, Arc::downgrade(&inner));
        Ok(LocalModel { inner })
    }
}

/// Checks that `path` is a readable GGUF file before llama.cpp sees it.
fn check_gguf(path: &Path) -> Result<(), ModelError> {
    let mut header = [0u8; 24];
    let mut file = std::fs::File::open(path).map_err(|e| {
        config_error(format!(
            "cannot open model file {}: {e}; {HOW_TO_GET_ONE}",
            path.display()
        ))
    })?;
    file.read_exact(&mut header).map_err(|_| {
        config_error(format!(
            "{} is too short to be a GGUF model; {HOW_TO_GET_ONE}",
            path.display()
        ))
    })?;
    let version = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let tensors = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
    let keys = u64::from_le_bytes(header[16..24].try_into().unwrap_or_default());
    if &header[..4] != b"GGUF" || !(2..=3).contains(&version) || tensors > 1 << 20 || keys > 1 << 20
    {
        return Err(config_error(format!(
            "{} is not a GGUF model file (bad header); {HOW_TO_GET_ONE}",
            path.display()
        )));
    }
    Ok(())
}

impl ChatModel for LocalModel {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_tools: false,
            json_schema: self.inner.grammar,
        }
    }

    /// The context the model was loaded with ([`LocalOptions::context`],
    /// at most what the GGUF was trained for), counted by its own tokenizer.
    fn context_window(&self) -> BoxFuture<'_, Option<ContextWindow>> {
        futures::future::ready(Some(self.inner.window.clone())).boxed()
    }

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        // Small buffer: generation runs ahead of a slow reader by a few tokens only.
        let (out, rx) = async_mpsc::channel(16);
        let sent = self
            .inner
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(Job { request, out });
        if sent.is_err() {
            let error = backend_error("the local model's worker has stopped".to_owned());
            return futures::stream::once(async { Err(error) }).boxed();
        }
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed()
    }
}

/// Owns the model and its context; serves jobs until every handle is gone.
fn worker(
    backend: &'static LlamaBackend,
    path: &Path,
    options: &LocalOptions,
    queue: mpsc::Receiver<Job>,
    ready: mpsc::Sender<Result<Ready, ModelError>>,
) {
    let model = match LlamaModel::load_from_file(backend, path, &LlamaModelParams::default()) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            let _ = ready.send(Err(config_error(format!(
                "llama.cpp cannot load {}: {e}; {HOW_TO_GET_ONE}",
                path.display()
            ))));
            return;
        }
    };
    let threads = options
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as u32))
        .max(1) as i32;
    let n_ctx = options.context.clamp(256, model.n_ctx_train().max(256));
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(512)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = match model.new_context(backend, params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(backend_error(format!("cannot create a context: {e}"))));
            return;
        }
    };
    let template = model
        .chat_template(None)
        .or_else(|_| LlamaChatTemplate::new("chatml").map_err(|_| ()))
        .ok();
    let _ = ready.send(Ok(Ready {
        model: Arc::clone(&model),
        context: n_ctx,
    }));

    let mut grammars: HashMap<String, String> = HashMap::new();
    // The tokens whose keys and values are in the context, in order: the
    // next prompt reuses the prefix it shares with them.
    let mut cached: Vec<LlamaToken> = Vec::new();
    while let Ok(job) = queue.recv() {
        let out = job.out.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut run = Generation {
                model: &model,
                ctx: &mut ctx,
                template: template.as_ref(),
                grammars: &mut grammars,
                grammar_on: options.grammar,
                cached: &mut cached,
                out: &job.out,
            };
            run.serve(job.request)
        }));
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(backend_error(
                "llama.cpp binding panicked while generating".to_owned(),
            )),
        };
        if let Some(e) = error {
            // After a failure the cache's contents are unknown: start afresh.
            ctx.clear_kv_cache();
            cached.clear();
            let _ = out.blocking_send(Err(e));
        }
    }
}

struct Generation<'m, 'c> {
    model: &'m LlamaModel,
    ctx: &'c mut LlamaContext<'m>,
    template: Option<&'c LlamaChatTemplate>,
    grammars: &'c mut HashMap<String, String>,
    grammar_on: bool,
    cached: &'c mut Vec<LlamaToken>,
    out: &'c async_mpsc::Sender<Result<Chunk, ModelError>>,
}

/// Why generation stopped early without an error.
enum Stop {
    Cancelled,
}

impl Generation<'_, '_> {
    fn serve(&mut self, request: ChatRequest) -> Result<(), ModelError> {
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
fn take_utf8(bytes: &mut Vec<u8>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_tokens_waits() {
        let mut b = "a😀".as_bytes()[..3].to_vec();
        assert_eq!(take_utf8(&mut b), "a");
        b.extend_from_slice(&"😀".as_bytes()[2..]);
        assert_eq!(take_utf8(&mut b), "😀");
        assert!(b.is_empty());
        let mut bad = vec![b'x', 0xff, b'y'];
        assert_eq!(take_utf8(&mut bad), "x\u{fffd}y");
    }

    #[test]
    fn a_bad_file_is_a_typed_error_saying_how_to_get_a_model() {
        let dir = std::env::temp_dir().join(format!("statewise-gguf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.gguf");
        let e = LocalModel::load(&missing).unwrap_err();
        assert!(
            matches!(e, ModelError::Config { .. }) && e.to_string().contains("scripts/fetch-model"),
            "{e}"
        );
        let junk = dir.join("junk.gguf");
        std::fs::write(&junk, b"this is not a model at all, just text").unwrap();
        let e = LocalModel::load(&junk).unwrap_err();
        assert!(e.to_string().contains("not a GGUF model"), "{e}");
        std::fs::write(&junk, b"GGUF").unwrap();
        assert!(LocalModel::load(&junk)
            .unwrap_err()
            .to_string()
            .contains("too short"));
    }
}
