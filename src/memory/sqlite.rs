//! [`SqliteMemory`]: memories in a SQLite file, words indexed by FTS5.
//!
//! Keyword ranking is FTS5's BM25, run in SQL under the namespace prefix;
//! vectors are little-endian `f32` blobs, ranked by cosine in Rust over
//! the rows under the prefix (exact, one pass). The model and dimension
//! the file was filled with are kept in it, so a store opened with another
//! embedder refuses, never mixes. Namespaces are stored as their segments
//! joined by U+001F with one more at the end, so a prefix is a string
//! prefix.

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use rusqlite::{params_from_iter, OptionalExtension};
use serde_json::Value;

use super::rank::{cosine, fuse, query_words};
use super::{
    check_namespace, check_put, embed_checked, indexed_text, now_ms, Embedder, Item, MemoryError,
    MemoryStore, Namespace, PutOptions, Search, SearchMode,
};
use crate::backend::sqlite::Db;
use crate::backend::BackendError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS memory_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS memories (
    id INTEGER PRIMARY KEY,
    ns TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    text TEXT NOT NULL,
    vector BLOB,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    ttl_ms INTEGER,
    expires_ms INTEGER,
    UNIQUE (ns, key)
);
CREATE INDEX IF NOT EXISTS memories_ns ON memories (ns);
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5(text, content='memories', content_rowid='id');
CREATE TRIGGER IF NOT EXISTS memories_ai AFTER INSERT ON memories BEGIN
  INSERT INTO memories_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS memories_ad AFTER DELETE ON memories BEGIN
  INSERT INTO memories_fts (memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER IF NOT EXISTS memories_au AFTER UPDATE OF text ON memories BEGIN
  INSERT INTO memories_fts (memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
  INSERT INTO memories_fts (rowid, text) VALUES (new.id, new.text);
END;
";

/// The largest value stored by default: 16 MiB of JSON.
const DEFAULT_MAX_VALUE: usize = 16 << 20;
/// How many of each ranking's best are fused.
const FUSED: usize = 100;

/// Memories in a SQLite database: FTS5 for words, vectors ranked exactly.
/// Clones share the connection.
#[derive(Clone)]
pub struct SqliteMemory {
    db: Db,
    embedder: Arc<dyn Embedder>,
    max_value: usize,
}

impl std::fmt::Debug for SqliteMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteMemory")
            .field("embedder", &self.embedder.model_id())
            .finish_non_exhaustive()
    }
}

fn encode(namespace: &[String]) -> String {
    namespace.iter().map(|s| format!("{s}\u{1f}")).collect()
}

fn decode(ns: &str) -> Namespace {
    ns.split_terminator('\u{1f}').map(str::to_owned).collect()
}

fn blob(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn unblob(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn sql(e: rusqlite::Error) -> MemoryError {
    MemoryError::Backend(BackendError::new(e))
}

/// The WHERE clause of memories under a prefix, alive at a time, with the
/// filters, and its parameters: (prefix, now, filter values...).
fn scope(search: &Search, now: i64) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let mut clause = String::from(
        "substr(m.ns, 1, length(?1)) = ?1 AND (m.expires_ms IS NULL OR m.expires_ms > ?2)",
    );
    let mut params = vec![V::Text(encode(&search.prefix)), V::Integer(now)];
    for (field, want) in &search.filter {
        let path = format!("$.\"{}\"", field.replace('"', "\\\""));
        params.push(V::Text(path));
        let at = params.len();
        match want {
            Value::Null => clause.push_str(&format!(" AND json_type(m.value, ?{at}) = 'null'")),
            Value::Bool(b) => {
                params.push(V::Integer(i64::from(*b)));
                clause.push_str(&format!(
                    " AND json_type(m.value, ?{at}) IN ('true', 'false') AND json_extract(m.value, ?{at}) = ?{}",
                    at + 1
                ));
            }
            Value::String(s) => {
                params.push(V::Text(s.clone()));
                clause.push_str(&format!(
                    " AND json_type(m.value, ?{at}) = 'text' AND json_extract(m.value, ?{at}) = ?{}",
                    at + 1
                ));
            }
            other => {
                params.push(V::Text(other.to_string()));
                clause.push_str(&format!(
                    " AND json(json_extract(m.value, ?{at})) = json(?{})",
                    at + 1
                ));
            }
        }
    }
    (clause, params)
}

impl SqliteMemory {
    /// Opens (creating) the memories in the file at `path`, embedded by
    /// `embedder`.
    pub fn open(
        path: impl AsRef<Path>,
        embedder: impl Embedder + 'static,
    ) -> Result<Self, MemoryError> {
        Ok(SqliteMemory {
            db: Db::open(path.as_ref(), SCHEMA)?,
            embedder: Arc::new(embedder),
            max_value: DEFAULT_MAX_VALUE,
        })
    }

    /// A private in-memory database.
    pub fn in_memory(embedder: impl Embedder + 'static) -> Result<Self, MemoryError> {
        Ok(SqliteMemory {
            db: Db::in_memory(SCHEMA)?,
            embedder: Arc::new(embedder),
            max_value: DEFAULT_MAX_VALUE,
        })
    }

    /// The same database, embedded from now on by `embedder` (refused on
    /// use when the database holds another model's vectors).
    pub fn with_embedder(&self, embedder: Arc<dyn Embedder>) -> Self {
        SqliteMemory {
            embedder,
            ..self.clone()
        }
    }

    /// Takes values of at most `bytes` of JSON (default 16 MiB).
    pub fn max_value(mut self, bytes: usize) -> Self {
        self.max_value = bytes;
        self
    }

    /// The vectors of `texts` (none for an empty text), checked against
    /// the dimension the database was filled with.
    async fn vectors(&self, texts: &[String]) -> Result<Vec<Option<Vec<f32>>>, MemoryError> {
        let model = self.embedder.model_id().to_owned();
        let dimensions = self.embedder.dimensions();
        let (expected, kept_model) = self
            .db
            .call(move |conn| {
                let tx = conn.transaction().map_err(sql)?;
                let kept: Option<String> = tx
                    .query_row("SELECT value FROM memory_meta WHERE name = 'dimensions'", [], |r| r.get(0))
                    .optional()
                    .map_err(sql)?;
                let found = match kept {
                    Some(d) => {
                        let m: String = tx
                            .query_row("SELECT value FROM memory_meta WHERE name = 'model'", [], |r| r.get(0))
                            .map_err(sql)?;
                        (d.parse::<usize>().unwrap_or(0), m)
                    }
                    None => {
                        tx.execute(
                            "INSERT INTO memory_meta (name, value) VALUES ('dimensions', ?1), ('model', ?2)",
                            rusqlite::params![dimensions.to_string(), model],
                        )
                        .map_err(sql)?;
                        (dimensions, model)
                    }
                };
                tx.commit().map_err(sql)?;
                Ok::<_, MemoryError>(found)
            })
            .await?;
        embed_checked(&*self.embedder, texts, expected, &kept_model).await
    }

    async fn write(&self, rows: Vec<Written>, ttl_ms: Option<i64>) -> Result<(), MemoryError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction().map_err(sql)?;
                let now = now_ms() as i64;
                {
                    let mut put = tx
                        .prepare_cached(
                            "INSERT INTO memories (ns, key, value, text, vector, created_ms, updated_ms, ttl_ms, expires_ms)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8)
                             ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, text = excluded.text,
                               vector = excluded.vector, updated_ms = excluded.updated_ms, ttl_ms = excluded.ttl_ms,
                               expires_ms = excluded.expires_ms,
                               created_ms = CASE WHEN memories.expires_ms IS NOT NULL AND memories.expires_ms <= ?6
                                                 THEN excluded.created_ms ELSE memories.created_ms END",
                        )
                        .map_err(sql)?;
                    for Written { namespace, key, value, text, vector } in rows {
                        put.execute(rusqlite::params![
                            encode(&namespace),
                            key,
                            value.to_string(),
                            text,
                            vector.as_deref().map(blob),
                            now,
                            ttl_ms,
                            ttl_ms.map(|t| now + t),
                        ])
                        .map_err(sql)?;
                    }
                }
                tx.commit().map_err(sql)
            })
            .await
    }
}

/// One memory as written: its value, indexed text and vector.
struct Written {
    namespace: Namespace,
    key: String,
    value: Value,
    text: String,
    vector: Option<Vec<f32>>,
}

/// An FTS5 query matching any of the query's words, each quoted.
fn fts_query(query: &str) -> Option<String> {
    let terms: Vec<String> = query_words(query)
        .iter()
        .map(|w| format!("\"{w}\""))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" OR "))
}

impl MemoryStore for SqliteMemory {
    fn put<'a>(
        &'a self,
        namespace: &'a [String],
        key: &'a str,
        value: Value,
        options: PutOptions,
    ) -> BoxFuture<'a, Result<(), MemoryError>> {
        let items = vec![(namespace.to_vec(), key.to_owned(), value)];
        self.put_many(items, options)
    }

    fn put_many<'a>(
        &'a self,
        items: Vec<(Namespace, String, Value)>,
        options: PutOptions,
    ) -> BoxFuture<'a, Result<(), MemoryError>> {
        Box::pin(async move {
            for (namespace, key, value) in &items {
                check_put(namespace, key, value, self.max_value)?;
            }
            let texts: Vec<String> = items
                .iter()
                .map(|(_, _, v)| indexed_text(v, options.index.as_deref()))
                .collect();
            let vectors = self.vectors(&texts).await?;
            let rows = items
                .into_iter()
                .zip(texts)
                .zip(vectors)
                .map(|(((namespace, key, value), text), vector)| Written {
                    namespace,
                    key,
                    value,
                    text,
                    vector,
                })
                .collect();
            let ttl_ms = options.ttl.map(|t| t.as_millis() as i64);
            self.write(rows, ttl_ms).await
        })
    }

    fn get<'a>(
        &'a self,
        namespace: &'a [String],
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Item>, MemoryError>> {
        Box::pin(async move {
            check_namespace(namespace)?;
            let (ns, key) = (encode(namespace), key.to_owned());
            self.db
                .call(move |conn| {
                    let now = now_ms() as i64;
                    conn.execute(
                        "UPDATE memories SET expires_ms = ?3 + ttl_ms WHERE ns = ?1 AND key = ?2
                         AND ttl_ms IS NOT NULL AND expires_ms > ?3",
                        rusqlite::params![ns, key, now],
                    )
                    .map_err(sql)?;
                    conn.query_row(
                        "SELECT ns, key, value, created_ms, updated_ms FROM memories m
                         WHERE ns = ?1 AND key = ?2 AND (expires_ms IS NULL OR expires_ms > ?3)",
                        rusqlite::params![ns, key, now],
                        row_item,
                    )
                    .optional()
                    .map_err(sql)
                })
                .await
        })
    }

    fn delete<'a>(
        &'a self,
        namespace: &'a [String],
        key: &'a str,
    ) -> BoxFuture<'a, Result<bool, MemoryError>> {
        Box::pin(async move {
            check_namespace(namespace)?;
            let (ns, key) = (encode(namespace), key.to_owned());
            self.db
                .call(move |conn| {
                    let now = now_ms() as i64;
                    conn.execute(
                        "DELETE FROM memories WHERE ns = ?1 AND key = ?2 AND (expires_ms IS NULL OR expires_ms > ?3)",
                        rusqlite::params![ns, key, now],
                    )
                    .map(|n| n > 0)
                    .map_err(sql)
                })
                .await
        })
    }

    fn search<'a>(&'a self, search: &'a Search) -> BoxFuture<'a, Result<Vec<Item>, MemoryError>> {
        Box::pin(async move {
            let query_vector = match (&search.query, search.mode) {
                (Some(q), SearchMode::Hybrid | SearchMode::Vector) => {
                    self.vectors(std::slice::from_ref(q)).await?.pop().flatten()
                }
                _ => None,
            };
            let search = search.clone();
            self.db
                .call(move |conn| ranked(conn, &search, query_vector.as_deref()))
                .await
        })
    }

    fn list_namespaces<'a>(
        &'a self,
        prefix: &'a [String],
        limit: usize,
        offset: usize,
    ) -> BoxFuture<'a, Result<Vec<Namespace>, MemoryError>> {
        let prefix = encode(prefix);
        Box::pin(async move {
            self.db
                .call(move |conn| {
                    let mut stmt = conn
                        .prepare_cached(
                            "SELECT DISTINCT ns FROM memories m
                             WHERE substr(ns, 1, length(?1)) = ?1 AND (expires_ms IS NULL OR expires_ms > ?2)
                             ORDER BY ns LIMIT ?3 OFFSET ?4",
                        )
                        .map_err(sql)?;
                    let rows = stmt
                        .query_map(
                            rusqlite::params![prefix, now_ms() as i64, limit as i64, offset as i64],
                            |r| r.get::<_, String>(0),
                        )
                        .map_err(sql)?;
                    rows.map(|r| r.map(|ns| decode(&ns)).map_err(sql)).collect()
                })
                .await
        })
    }

    fn sweep(&self) -> BoxFuture<'_, Result<usize, MemoryError>> {
        Box::pin(async move {
            self.db
                .call(move |conn| {
                    conn.execute(
                        "DELETE FROM memories WHERE expires_ms IS NOT NULL AND expires_ms <= ?1",
                        [now_ms() as i64],
                    )
                    .map_err(sql)
                })
                .await
        })
    }
}

fn row_item(row: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let ns: String = row.get(0)?;
    let value: String = row.get(2)?;
    Ok(Item {
        namespace: decode(&ns),
        key: row.get(1)?,
        value: serde_json::from_str(&value).unwrap_or(Value::Null),
        created_ms: row.get::<_, i64>(3)? as u64,
        updated_ms: row.get::<_, i64>(4)? as u64,
        score: None,
    })
}

/// The page of memories `search` finds, ranked as it asks.
fn ranked(
    conn: &mut rusqlite::Connection,
    search: &Search,
    query_vector: Option<&[f32]>,
) -> Result<Vec<Item>, MemoryError> {
    let now = now_ms() as i64;
    let (clause, params) = scope(search, now);
    let next = params.len() + 1;
    let select = "SELECT m.ns, m.key, m.value, m.created_ms, m.updated_ms FROM memories m";
    let Some(query) = &search.query else {
        let sql_text = format!(
            "{select} WHERE {clause} ORDER BY m.updated_ms DESC, m.key LIMIT ?{next} OFFSET ?{}",
            next + 1
        );
        let mut all = params;
        all.push(rusqlite::types::Value::Integer(search.limit as i64));
        all.push(rusqlite::types::Value::Integer(search.offset as i64));
        let mut stmt = conn.prepare(&sql_text).map_err(sql)?;
        let rows = stmt
            .query_map(params_from_iter(all), row_item)
            .map_err(sql)?;
        return rows.map(|r| r.map_err(sql)).collect();
    };
    let wanted = (search.offset + search.limit).max(FUSED);
    // Keyword ranking: FTS5's BM25 (lower is better), under the scope.
    let keyword: Vec<(i64, f64)> = match (search.mode, fts_query(query)) {
        (SearchMode::Keyword | SearchMode::Hybrid, Some(fts)) => {
            let sql_text = format!(
                "SELECT m.id, bm25(memories_fts) FROM memories_fts JOIN memories m ON m.id = memories_fts.rowid
                 WHERE memories_fts MATCH ?{next} AND {clause} ORDER BY bm25(memories_fts) LIMIT ?{}",
                next + 1
            );
            let mut all = params.clone();
            all.push(rusqlite::types::Value::Text(fts));
            all.push(rusqlite::types::Value::Integer(wanted as i64));
            let mut stmt = conn.prepare(&sql_text).map_err(sql)?;
            let rows = stmt
                .query_map(params_from_iter(all), |r| {
                    Ok((r.get::<_, i64>(0)?, -r.get::<_, f64>(1)?))
                })
                .map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)?
        }
        _ => Vec::new(),
    };
    // Vector ranking: cosine over every vector under the scope.
    let vector: Vec<(i64, f64)> = match query_vector {
        Some(q) if search.mode != SearchMode::Keyword => {
            let sql_text = format!(
                "SELECT m.id, m.vector FROM memories m WHERE {clause} AND m.vector IS NOT NULL"
            );
            let mut stmt = conn.prepare(&sql_text).map_err(sql)?;
            let rows = stmt
                .query_map(params_from_iter(params.clone()), |r| {
                    let bytes: Vec<u8> = r.get(1)?;
                    Ok((r.get::<_, i64>(0)?, cosine(&unblob(&bytes), q)))
                })
                .map_err(sql)?;
            let mut scored: Vec<(i64, f64)> = rows.collect::<Result<_, _>>().map_err(sql)?;
            scored.sort_by(|a, b| b.1.total_cmp(&a.1));
            scored.truncate(wanted);
            scored
        }
        _ => Vec::new(),
    };
    let order: Vec<(i64, f64)> = match search.mode {
        SearchMode::Keyword => keyword,
        SearchMode::Vector => vector,
        SearchMode::Hybrid => {
            let ids: Vec<i64> = keyword.iter().chain(&vector).map(|(id, _)| *id).collect();
            let index_of = |id: i64| ids.iter().position(|x| *x == id).unwrap_or(0);
            let rankings: [Vec<(usize, f64)>; 2] = [
                keyword.iter().map(|(id, s)| (index_of(*id), *s)).collect(),
                vector.iter().map(|(id, s)| (index_of(*id), *s)).collect(),
            ];
            fuse(&rankings[0], &rankings[1])
                .into_iter()
                .map(|f| (ids[f.index], f.score))
                .collect()
        }
    };
    let page: Vec<(i64, f64)> = order
        .into_iter()
        .skip(search.offset)
        .take(search.limit)
        .collect();
    let mut hits = Vec::with_capacity(page.len());
    let tx = conn.transaction().map_err(sql)?;
    {
        let mut fetch = tx
            .prepare_cached(&format!("{select} WHERE m.id = ?1"))
            .map_err(sql)?;
        let mut touch = tx
            .prepare_cached(
                "UPDATE memories SET expires_ms = ?2 + ttl_ms WHERE id = ?1 AND ttl_ms IS NOT NULL",
            )
            .map_err(sql)?;
        for (id, score) in page {
            let item = fetch.query_row([id], row_item).map_err(sql)?;
            // A memory found is a memory read: its time to live starts again.
            touch.execute(rusqlite::params![id, now]).map_err(sql)?;
            hits.push(Item {
                score: Some(score),
                ..item
            });
        }
    }
    tx.commit().map_err(sql)?;
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::super::{conformance, HashEmbedder};
    use super::*;

    #[tokio::test]
    async fn the_sqlite_store_conforms() {
        let store = SqliteMemory::in_memory(HashEmbedder::new(64)).unwrap();
        conformance::check(move |embedder| store.with_embedder(embedder))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_file_keeps_its_memories_and_the_model_they_were_made_with() {
        let dir = std::env::temp_dir().join(format!("sw-mem-{:x}", fastrand::u64(..)));
        let path = dir.join("memory.db");
        let alice = vec!["users".to_owned(), "alice".to_owned()];
        let store = SqliteMemory::open(&path, HashEmbedder::new(64)).unwrap();
        store
            .put(
                &alice,
                "tea",
                serde_json::json!({"text": "Alice drinks tea"}),
                PutOptions::default(),
            )
            .await
            .unwrap();
        drop(store);
        let again = SqliteMemory::open(&path, HashEmbedder::new(64)).unwrap();
        let hits = again
            .search(&Search::under(alice.clone()).query("what does alice drink"))
            .await
            .unwrap();
        assert_eq!(hits[0].key, "tea");
        let other = SqliteMemory::open(&path, HashEmbedder::new(384)).unwrap();
        let refused = other.search(&Search::under(alice).query("tea")).await;
        assert!(matches!(
            refused,
            Err(MemoryError::Dimension {
                expected: 64,
                got: 384,
                ..
            })
        ));
        std::fs::remove_dir_all(dir).ok();
    }
}
