//! [`OpenAiEmbedder`]: vectors from an OpenAI-compatible `/v1/embeddings`
//! endpoint (OpenAI, llama.cpp's server with embeddings on, vLLM, Ollama).
//!
//! It connects exactly as the chat provider does (the same endpoint
//! settings, key handling and typed, redacted errors) and retries by the
//! same [`RetryPolicy`] as the [`Retry`](crate::layer::Retry) layer, with a
//! time limit on every try: an embedding call has no stream, so the chat
//! layers' per-chunk limits do not apply to it.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::embed::{EmbedError, Embedder};
use crate::layer::RetryPolicy;
use crate::model::provider::http::Api;
use crate::model::{ModelError, OpenAi, TimeoutStage};

/// OpenAI's own embedding models and their dimensions, so they need no
/// [`OpenAiEmbedderBuilder::dimensions`].
const KNOWN: [(&str, usize); 3] = [
    ("text-embedding-3-small", 1536),
    ("text-embedding-3-large", 3072),
    ("text-embedding-ada-002", 1536),
];

/// Embeds texts with an OpenAI-compatible `/v1/embeddings` endpoint, in
/// requests of at most [`OpenAiEmbedderBuilder::batch`] texts, retried
/// when they fail transiently.
#[derive(Debug, Clone)]
pub struct OpenAiEmbedder {
    api: Api,
    model: String,
    dimensions: usize,
    retry: RetryPolicy,
    timeout: Duration,
    batch: usize,
}

/// Configures an [`OpenAiEmbedder`].
#[derive(Debug, Clone)]
pub struct OpenAiEmbedderBuilder {
    model: String,
    endpoint: crate::model::OpenAiBuilder,
    dimensions: Option<usize>,
    retry: RetryPolicy,
    timeout: Duration,
    batch: usize,
}

impl OpenAiEmbedder {
    /// Starts configuring the embedding model `model`.
    pub fn builder(model: impl Into<String>) -> OpenAiEmbedderBuilder {
        let model = model.into();
        OpenAiEmbedderBuilder {
            endpoint: OpenAi::builder(model.clone()),
            model,
            dimensions: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(60),
            batch: 256,
        }
    }

    /// `model` with `OPENAI_API_KEY` and `OPENAI_BASE_URL` from the
    /// environment; `dimensions` as the model makes them.
    pub fn from_env(model: impl Into<String>, dimensions: usize) -> Result<Self, ModelError> {
        Self::builder(model)
            .from_env()
            .dimensions(dimensions)
            .build()
    }

    /// One request for `texts`, within the time limit.
    async fn call(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        let url = format!("{}/embeddings", self.api.base);
        let body = json!({ "model": self.model, "input": texts });
        let answer = self
            .api
            .json::<Answer>(|| self.api.request(reqwest::Method::POST, &url).json(&body));
        let answer = tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| ModelError::Timeout {
                model: self.model.clone(),
                stage: TimeoutStage::Call,
                after: self.timeout,
                chunks: 0,
            })??;
        let mut data = answer.data;
        // The API may answer out of order; `index` says whose vector it is.
        data.sort_by_key(|d| d.index);
        Ok(data.into_iter().map(|d| d.embedding).collect())
    }

    /// One request for `texts`, sent again by the retry policy.
    async fn call_retried(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut attempt = 0;
        loop {
            match self.call(texts).await {
                Ok(vectors) => return Ok(vectors),
                Err(error) => match self.retry.delay(attempt, &error) {
                    Some(wait) => {
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    None => return Err(EmbedError::Provider(error)),
                },
            }
        }
    }
}

/// The part of an embeddings answer read here.
#[derive(Deserialize)]
struct Answer {
    data: Vec<Datum>,
}

#[derive(Deserialize)]
struct Datum {
    #[serde(default)]
    index: usize,
    embedding: Vec<f32>,
}

impl OpenAiEmbedderBuilder {
    /// The API's base URL, up to and including `/v1`.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint = self.endpoint.base_url(url);
        self
    }

    /// The API key, kept as a [`Secret`](crate::redact::Secret).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.endpoint = self.endpoint.api_key(key);
        self
    }

    /// Fills what was not set explicitly from `OPENAI_API_KEY` and
    /// `OPENAI_BASE_URL`.
    pub fn from_env(mut self) -> Self {
        self.endpoint = self.endpoint.from_env();
        self
    }

    /// The HTTP client to use (shares its connection pool).
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.endpoint = self.endpoint.client(client);
        self
    }

    /// The length of the model's vectors. Needed for any model but
    /// OpenAI's own (`text-embedding-3-small`, `-3-large`, `ada-002`); a
    /// vector of another length is an [`EmbedError::Shape`], never stored.
    pub fn dimensions(mut self, dimensions: usize) -> Self {
        self.dimensions = Some(dimensions);
        self
    }

    /// When to send a failed request again (default: the
    /// [`Retry`](crate::layer::Retry) layer's default policy).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The longest wait for one request's answer (default 60 s); a request
    /// over it fails as [`ModelError::Timeout`] and is retried.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// The most texts in one request (default 256; OpenAI takes 2,048).
    pub fn batch(mut self, texts: usize) -> Self {
        self.batch = texts.max(1);
        self
    }

    /// Checks the configuration and builds the embedder.
    pub fn build(self) -> Result<OpenAiEmbedder, ModelError> {
        let known = KNOWN
            .iter()
            .find(|(name, _)| *name == self.model)
            .map(|(_, d)| *d);
        let dimensions = match self.dimensions.or(known) {
            Some(d) if d > 0 => d,
            _ => {
                return Err(ModelError::Config {
                    provider: "openai".to_owned(),
                    message: format!(
                        "the dimensions of {:?} are not known: set them with .dimensions(n)",
                        self.model
                    ),
                })
            }
        };
        let api = self.endpoint.build()?.api();
        Ok(OpenAiEmbedder {
            api,
            model: self.model,
            dimensions,
            retry: self.retry,
            timeout: self.timeout,
            batch: self.batch,
        })
    }
}

impl Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(texts.len());
            for chunk in texts.chunks(self.batch) {
                let vectors = self.call_retried(chunk).await?;
                let shape = |asked: String, got: String| EmbedError::Shape {
                    model: self.model.clone(),
                    asked,
                    got,
                };
                if vectors.len() != chunk.len() {
                    return Err(shape(
                        format!("{} texts", chunk.len()),
                        format!("{} vectors", vectors.len()),
                    ));
                }
                if let Some(v) = vectors.iter().find(|v| v.len() != self.dimensions) {
                    return Err(shape(
                        format!("{} dimensions", self.dimensions),
                        format!("a vector of {}", v.len()),
                    ));
                }
                out.extend(vectors);
            }
            Ok(out)
        })
    }
}
