//! # Long-term memory
//!
//! [`memory`](crate::memory) keeps JSON values under namespaces
//! (`["memories", "alice"]`) and finds them again by key, by field, by
//! their words and by their meaning. One
//! [`MemoryStore`](crate::memory::MemoryStore) trait covers
//! [`InMemoryStore`](crate::memory::InMemoryStore), `SqliteMemory` (FTS5
//! for words) and `PostgresMemory` (pgvector); each passes the public
//! suite [`memory::conformance`](crate::memory::conformance). A query is
//! ranked by BM25 and by cosine similarity, and the two rankings are fused
//! ([`SearchMode::Hybrid`](crate::memory::SearchMode), the default).
//!
//! ```
//! use statewise::memory::{HashEmbedder, InMemoryStore, MemoryStore, PutOptions, Search};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), statewise::memory::MemoryError> {
//! // HashEmbedder is deterministic, for tests; MiniLm (feature
//! // `memory-local`) runs all-MiniLM-L6-v2 in process.
//! let store = InMemoryStore::new(HashEmbedder::new(256));
//! let alice = vec!["memories".to_string(), "alice".to_string()];
//! for (key, text) in [("dog", "Alice's dog is called Rex."), ("city", "Alice lives in Lisbon.")] {
//!     store.put(&alice, key, json!({ "text": text }), PutOptions::default()).await?;
//! }
//! let hits = store.search(&Search::under(["memories", "alice"]).query("dog name").page(1, 0)).await?;
//! assert_eq!(hits[0].key, "dog");
//! // Another user's namespace holds none of them.
//! assert!(store.search(&Search::under(["memories", "bob"])).await?.is_empty());
//! # Ok(())
//! # }
//! ```
//!
//! A store keeps the embedding model and dimension it was filled with and
//! refuses another's vectors with a typed error, never a silently wrong
//! ranking. [`Embedder`](crate::memory::Embedder)s embed in batches;
//! [`CachedEmbedder`](crate::memory::CachedEmbedder) embeds a text once,
//! and `OpenAiEmbedder` calls any OpenAI-compatible `/v1/embeddings`.
//!
//! ## An agent that remembers
//!
//! `statewise_states::agent_with_memory` uses memory without being asked:
//! Reasoning searches the principal's memories once per question and puts
//! the best in its prompt, within a token budget; after the answer, the
//! `Memorize` state asks the model for the turn's lasting facts and stores
//! the new ones as background work, so the answer never waits. The stock
//! tools `Remember` and `Recall` keep each principal's memories under
//! `["memories", <id>]`, so no prompt can reach another user's.
//!
//! ```
//! use std::sync::Arc;
//! use serde_json::json;
//! use statewise::guard::Principal;
//! use statewise::memory::{HashEmbedder, InMemoryStore, MemoryStore, PutOptions};
//! use statewise::model::ScriptedModel;
//! use statewise::tool::Toolbox;
//! use statewise::Env;
//! use statewise_states::{agent_with_memory, Memories};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store: Arc<dyn MemoryStore> = Arc::new(InMemoryStore::new(HashEmbedder::new(256)));
//! let alice = vec!["memories".to_string(), "alice".to_string()];
//! let fact = json!({ "text": "The user's dog is called Rex." });
//! store.put(&alice, "dog", fact, PutOptions::default()).await.unwrap();
//!
//! // The answer, then the facts to keep from this turn (none).
//! let model = Arc::new(ScriptedModel::new().text(r#"{"final_answer": "Rex."}"#).text("[]"));
//! let machine = agent_with_memory(model.clone(), Toolbox::default(), Memories::new(store));
//! let env = Env::from_user("What is my dog called?").with_principal(Principal::new("alice"));
//! machine.run(env).await.unwrap();
//! machine.background().idle().await;
//! assert!(model.calls()[0].messages[1].content.contains("Rex"));
//! # }
//! ```
//!
//! `examples/memory.rs` adds, searches and asks from the command line, and
//! `examples/documents.rs` keeps a folder of documents indexed on a
//! schedule and answers from it with sources. The stores' speed and the
//! search's recall are in [`figures`](super::figures).
