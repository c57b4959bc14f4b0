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

mod generation;

use std::collections::HashMap;
use std::io::Read;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, OnceLock, Weak};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc as async_mpsc;

use crate::model::{
    Capabilities, ChatModel, ChatRequest, Chunk, ChunkStream, ContextWindow, ModelError,
    TokenCounter,
};
use generation::Generation;

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

    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        self.inner.window.counter.clone()
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

#[cfg(test)]
mod tests {
    use super::generation::take_utf8;
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
