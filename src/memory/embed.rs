//! [`Embedder`]: text to vectors, in batches; [`HashEmbedder`], a
//! deterministic one for tests and for running without a model; and
//! [`CachedEmbedder`], which embeds a text once however often it is
//! indexed.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

/// Why texts could not be embedded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The embedding model or service failed.
    #[error("embedding with {model} failed: {message}")]
    Failed {
        /// The model.
        model: String,
        /// What went wrong.
        message: String,
    },
    /// It returned another number of vectors than texts, or vectors of
    /// another dimension than it declares.
    #[error("{model} returned {got} for {asked}")]
    Shape {
        /// The model.
        model: String,
        /// What was asked: texts, or the declared dimension.
        asked: String,
        /// What came back.
        got: String,
    },
    /// An embedding service answered with an error, or not at all, after
    /// its retries.
    #[error(transparent)]
    Provider(#[from] crate::model::ModelError),
}

/// Turns texts into vectors of a fixed dimension.
pub trait Embedder: Send + Sync {
    /// The model's id, stored with the vectors it makes.
    fn model_id(&self) -> &str;
    /// The length of every vector.
    fn dimensions(&self) -> usize;
    /// One vector per text, in order.
    fn embed<'a>(&'a self, texts: &'a [String])
        -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>>;
}

impl<E: Embedder + ?Sized> Embedder for Arc<E> {
    fn model_id(&self) -> &str {
        (**self).model_id()
    }
    fn dimensions(&self) -> usize {
        (**self).dimensions()
    }
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        (**self).embed(texts)
    }
}

/// A deterministic embedder: each word (lower-cased, letters and digits)
/// and each pair of neighbouring words is hashed into one of `dimensions`
/// slots with a sign, and the vector normalised. Texts sharing words are
/// close; it knows no synonyms. For tests, and as a keyword-like fallback.
#[derive(Debug, Clone)]
pub struct HashEmbedder {
    dimensions: usize,
    id: String,
}

impl HashEmbedder {
    /// Vectors of `dimensions` (at least 1).
    pub fn new(dimensions: usize) -> Self {
        let dimensions = dimensions.max(1);
        HashEmbedder {
            dimensions,
            id: format!("hash-{dimensions}"),
        }
    }

    /// The vector of one text.
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let words: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let mut v = vec![0f32; self.dimensions];
        let mut add = |feature: &str, weight: f32| {
            let digest = Sha256::digest(feature.as_bytes());
            let slot = u64::from_le_bytes(digest[..8].try_into().unwrap_or_default());
            let sign = if digest[8] & 1 == 0 { 1.0 } else { -1.0 };
            v[(slot % self.dimensions as u64) as usize] += sign * weight;
        };
        for w in &words {
            add(w, 1.0);
        }
        for pair in words.windows(2) {
            add(&format!("{} {}", pair[0], pair[1]), 0.5);
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

impl Embedder for HashEmbedder {
    fn model_id(&self) -> &str {
        &self.id
    }
    fn dimensions(&self) -> usize {
        self.dimensions
    }
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(std::future::ready(Ok(texts
            .iter()
            .map(|t| self.vector(t))
            .collect())))
    }
}

/// The key a text's vector is cached under: the model and a SHA-256 of
/// the text, hex.
pub fn content_key(model: &str, text: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(model.as_bytes());
    hash.update([0]);
    hash.update(text.as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Embeds each distinct text once: vectors are kept by content hash (the
/// most recent `capacity`), and a batch asks the inner embedder only for
/// the texts it has not seen, in one call.
pub struct CachedEmbedder<E> {
    inner: E,
    cache: Mutex<lru::LruCache<String, Arc<[f32]>>>,
}

impl<E: Embedder> CachedEmbedder<E> {
    /// Caches `inner`'s vectors, `capacity` of them at most.
    pub fn new(inner: E, capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        CachedEmbedder {
            inner,
            cache: Mutex::new(lru::LruCache::new(capacity)),
        }
    }

    /// The embedder inside.
    pub fn get_ref(&self) -> &E {
        &self.inner
    }

    /// The embedder inside, without its cache.
    pub fn into_inner(self) -> E {
        self.inner
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, lru::LruCache<String, Arc<[f32]>>> {
        // Only lookups and inserts happen under the lock.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<E: Embedder> Embedder for CachedEmbedder<E> {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            let model = self.inner.model_id().to_owned();
            let keys: Vec<String> = texts.iter().map(|t| content_key(&model, t)).collect();
            let mut found: Vec<Option<Arc<[f32]>>> = {
                let mut cache = self.cache();
                keys.iter().map(|k| cache.get(k).cloned()).collect()
            };
            let missing: Vec<usize> = (0..texts.len()).filter(|i| found[*i].is_none()).collect();
            if !missing.is_empty() {
                let asked: Vec<String> = missing.iter().map(|i| texts[*i].clone()).collect();
                let vectors = self.inner.embed(&asked).await?;
                if vectors.len() != asked.len() {
                    return Err(EmbedError::Shape {
                        model,
                        asked: format!("{} texts", asked.len()),
                        got: format!("{} vectors", vectors.len()),
                    });
                }
                let mut cache = self.cache();
                for (i, vector) in missing.into_iter().zip(vectors) {
                    let vector: Arc<[f32]> = vector.into();
                    cache.put(keys[i].clone(), Arc::clone(&vector));
                    found[i] = Some(vector);
                }
            }
            Ok(found.into_iter().flatten().map(|v| v.to_vec()).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(HashEmbedder, AtomicUsize);

    impl Embedder for Counting {
        fn model_id(&self) -> &str {
            self.0.model_id()
        }
        fn dimensions(&self) -> usize {
            self.0.dimensions()
        }
        fn embed<'a>(
            &'a self,
            texts: &'a [String],
        ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
            self.1.fetch_add(texts.len(), Ordering::SeqCst);
            self.0.embed(texts)
        }
    }

    #[tokio::test]
    async fn a_text_is_embedded_once_however_often_it_is_indexed() {
        let cached = CachedEmbedder::new(Counting(HashEmbedder::new(64), AtomicUsize::new(0)), 100);
        let texts = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let first = cached.embed(&texts(&["tea", "coffee"])).await.unwrap();
        let again = cached
            .embed(&texts(&["coffee", "tea", "water"]))
            .await
            .unwrap();
        assert_eq!(cached.get_ref().1.load(Ordering::SeqCst), 3);
        assert_eq!(
            (first[0].clone(), first[1].clone()),
            (again[1].clone(), again[0].clone())
        );
    }

    #[test]
    fn shared_words_make_close_vectors() {
        let e = HashEmbedder::new(256);
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let tea = e.vector("Alice drinks green tea every morning");
        let near = e.vector("What does Alice drink in the morning? Green tea?");
        let far = e.vector("The train to Paris leaves at noon");
        assert!(dot(&tea, &near) > dot(&tea, &far) + 0.2);
        assert!((dot(&tea, &tea) - 1.0).abs() < 1e-5);
    }
}
