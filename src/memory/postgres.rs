//! [`PostgresMemory`]: memories in PostgreSQL, vectors in pgvector with an
//! HNSW index, words in a `tsvector` with a GIN index.
//!
//! The table is made on first use, when the embedder's dimension is known
//! (an HNSW index needs a fixed one); the model and dimension are kept in
//! a table beside it, so a database filled with one model refuses
//! another's vectors. Namespaces are stored as their segments joined by
//! U+001F with one more at the end, so a prefix is a string prefix, and
//! they sort with the "C" collation, byte by byte.

use std::str::FromStr;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::{Mutex, OnceCell};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row};

use super::rank::{fuse, query_words};
use super::{
    check_namespace, check_put, embed_checked, indexed_text, now_ms, Embedder, Item, MemoryError,
    MemoryStore, Namespace, PutOptions, Search, SearchMode,
};
use crate::backend::BackendError;

/// The largest value stored by default: 16 MiB of JSON.
const DEFAULT_MAX_VALUE: usize = 16 << 20;
/// How many of each ranking's best are fused.
const FUSED: usize = 100;

type Param = Box<dyn ToSql + Sync + Send>;

/// Memories in PostgreSQL with pgvector. Clones share the connection.
#[derive(Clone)]
pub struct PostgresMemory {
    config: Arc<Config>,
    client: Arc<Mutex<Option<Arc<Client>>>>,
    /// The dimension and model of the vectors held, read or set once.
    fixed: Arc<OnceCell<(usize, String)>>,
    embedder: Arc<dyn Embedder>,
    max_value: usize,
}

// The config can hold a password: never print it.
impl std::fmt::Debug for PostgresMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresMemory")
            .field("dbname", &self.config.get_dbname())
            .field("embedder", &self.embedder.model_id())
            .finish_non_exhaustive()
    }
}

fn pg(e: tokio_postgres::Error) -> MemoryError {
    MemoryError::Backend(BackendError::new(e))
}

fn encode(namespace: &[String]) -> String {
    namespace.iter().map(|s| format!("{s}\u{1f}")).collect()
}

fn decode(ns: &str) -> Namespace {
    ns.split_terminator('\u{1f}').map(str::to_owned).collect()
}

/// pgvector's text form of a vector: `[0.1,0.2]`.
fn vector_text(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(","))
}

fn item(row: &Row) -> Result<Item, MemoryError> {
    let ns: String = row.try_get(0).map_err(pg)?;
    let value: String = row.try_get(2).map_err(pg)?;
    Ok(Item {
        namespace: decode(&ns),
        key: row.try_get(1).map_err(pg)?,
        value: serde_json::from_str(&value).unwrap_or(Value::Null),
        created_ms: row.try_get::<_, i64>(3).map_err(pg)? as u64,
        updated_ms: row.try_get::<_, i64>(4).map_err(pg)? as u64,
        score: None,
    })
}

const COLUMNS: &str = "ns, key, value::text, created_ms, updated_ms";

impl PostgresMemory {
    /// Memories in the database at `url`, embedded by `embedder`; nothing
    /// is connected until first use.
    pub fn open(url: &str, embedder: impl Embedder + 'static) -> Result<Self, MemoryError> {
        Ok(PostgresMemory {
            config: Arc::new(Config::from_str(url).map_err(pg)?),
            client: Arc::default(),
            fixed: Arc::default(),
            embedder: Arc::new(embedder),
            max_value: DEFAULT_MAX_VALUE,
        })
    }

    /// The same database, embedded from now on by `embedder` (refused on
    /// use when the database holds another model's vectors).
    pub fn with_embedder(&self, embedder: Arc<dyn Embedder>) -> Self {
        PostgresMemory {
            embedder,
            ..self.clone()
        }
    }

    async fn client(&self) -> Result<Arc<Client>, MemoryError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(client));
        }
        let (client, connection) = self.config.connect(NoTls).await.map_err(pg)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection closed");
            }
        });
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// The dimension and model the database holds, making its tables (with
    /// the embedder's) on first use.
    async fn fixed(&self) -> Result<(usize, String), MemoryError> {
        let fixed = self
            .fixed
            .get_or_try_init(|| async {
                let client = self.client().await?;
                let dims = self.embedder.dimensions();
                let model = self.embedder.model_id().to_owned();
                let schema = format!(
                    "SELECT pg_advisory_lock(7217700002);
                     CREATE EXTENSION IF NOT EXISTS vector;
                     CREATE TABLE IF NOT EXISTS statewise_memory_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
                     INSERT INTO statewise_memory_meta VALUES ('dimensions', '{dims}'), ('model', $q${model}$q$)
                       ON CONFLICT DO NOTHING;
                     CREATE TABLE IF NOT EXISTS statewise_memories (
                       ns TEXT NOT NULL, key TEXT NOT NULL, value JSONB NOT NULL, text TEXT NOT NULL,
                       tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED,
                       embedding VECTOR({dims}),
                       created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL, ttl_ms BIGINT, expires_ms BIGINT,
                       PRIMARY KEY (ns, key));
                     CREATE INDEX IF NOT EXISTS statewise_memories_tsv ON statewise_memories USING gin (tsv);
                     CREATE INDEX IF NOT EXISTS statewise_memories_hnsw ON statewise_memories
                       USING hnsw (embedding vector_cosine_ops);
                     SELECT pg_advisory_unlock(7217700002);",
                    model = model.replace('$', "")
                );
                client.batch_execute(&schema).await.map_err(pg)?;
                let rows = client
                    .query("SELECT name, value FROM statewise_memory_meta", &[])
                    .await
                    .map_err(pg)?;
                let get = |name: &str| {
                    rows.iter()
                        .find(|r| r.get::<_, String>(0) == name)
                        .map(|r| r.get::<_, String>(1))
                        .unwrap_or_default()
                };
                Ok::<_, MemoryError>((get("dimensions").parse().unwrap_or(0), get("model")))
            })
            .await?;
        Ok(fixed.clone())
    }

    /// The vectors of `texts` (none for an empty text), checked against
    /// the dimension the database was filled with.
    async fn vectors(&self, texts: &[String]) -> Result<Vec<Option<String>>, MemoryError> {
        let (expected, kept_model) = self.fixed().await?;
        let checked = embed_checked(&*self.embedder, texts, expected, &kept_model).await?;
        Ok(checked
            .into_iter()
            .map(|v| v.as_deref().map(vector_text))
            .collect())
    }
}

/// The WHERE clause of memories under the search's prefix, alive now,
/// with its filters, and its parameters ($1 prefix, $2 now, then filters).
fn scope(search: &Search, now: i64) -> (String, Vec<Param>) {
    let mut clause =
        String::from("left(ns, length($1)) = $1 AND (expires_ms IS NULL OR expires_ms > $2)");
    let mut params: Vec<Param> = vec![Box::new(encode(&search.prefix)), Box::new(now)];
    for (field, want) in &search.filter {
        params.push(Box::new(field.clone()));
        params.push(Box::new(want.to_string()));
        let n = params.len();
        clause.push_str(&format!(
            " AND value -> ${}::text = ${}::text::jsonb",
            n - 1,
            n
        ));
    }
    (clause, params)
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

impl MemoryStore for PostgresMemory {
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
            let client = self.client().await?;
            let statement = client
                .prepare(
                    "INSERT INTO statewise_memories AS m
                       (ns, key, value, text, embedding, created_ms, updated_ms, ttl_ms, expires_ms)
                     VALUES ($1, $2, $3::text::jsonb, $4, $5::text::vector, $6, $6, $7, $8)
                     ON CONFLICT (ns, key) DO UPDATE SET value = EXCLUDED.value, text = EXCLUDED.text,
                       embedding = EXCLUDED.embedding, updated_ms = EXCLUDED.updated_ms,
                       ttl_ms = EXCLUDED.ttl_ms, expires_ms = EXCLUDED.expires_ms,
                       created_ms = CASE WHEN m.expires_ms IS NOT NULL AND m.expires_ms <= $6
                                         THEN EXCLUDED.created_ms ELSE m.created_ms END",
                )
                .await
                .map_err(pg)?;
            let now = now_ms() as i64;
            let ttl_ms = options.ttl.map(|t| t.as_millis() as i64);
            let expires_ms = ttl_ms.map(|t| now + t);
            let rows: Vec<_> = items
                .into_iter()
                .zip(texts)
                .zip(vectors)
                .map(|(((namespace, key, value), text), vector)| {
                    (
                        encode(&namespace),
                        key,
                        value.to_string(),
                        text.replace('\0', ""),
                        vector,
                    )
                })
                .collect();
            // One statement per row, so a batch that fails partway leaves
            // each memory either written whole or not at all; up to 64 in
            // flight at once, pipelined on the one connection.
            type Param<'p> = &'p (dyn tokio_postgres::types::ToSql + Sync);
            for chunk in rows.chunks(64) {
                let params: Vec<[Param<'_>; 8]> = chunk
                    .iter()
                    .map(|(ns, key, value, text, vector)| -> [Param<'_>; 8] {
                        [ns, key, value, text, vector, &now, &ttl_ms, &expires_ms]
                    })
                    .collect();
                let writes = params.iter().map(|p| client.execute(&statement, p));
                futures::future::try_join_all(writes).await.map_err(pg)?;
            }
            Ok(())
        })
    }

    fn get<'a>(
        &'a self,
        namespace: &'a [String],
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Item>, MemoryError>> {
        Box::pin(async move {
            check_namespace(namespace)?;
            self.fixed().await?;
            let client = self.client().await?;
            let (ns, now) = (encode(namespace), now_ms() as i64);
            let row = client
                .query_opt(
                    &format!(
                        "UPDATE statewise_memories SET expires_ms = CASE WHEN ttl_ms IS NULL THEN NULL ELSE $3 + ttl_ms END
                         WHERE ns = $1 AND key = $2 AND (expires_ms IS NULL OR expires_ms > $3)
                         RETURNING {COLUMNS}"
                    ),
                    &[&ns, &key, &now],
                )
                .await
                .map_err(pg)?;
            row.as_ref().map(item).transpose()
        })
    }

    fn delete<'a>(
        &'a self,
        namespace: &'a [String],
        key: &'a str,
    ) -> BoxFuture<'a, Result<bool, MemoryError>> {
        Box::pin(async move {
            check_namespace(namespace)?;
            self.fixed().await?;
            let client = self.client().await?;
            let deleted = client
                .execute(
                    "DELETE FROM statewise_memories WHERE ns = $1 AND key = $2
                     AND (expires_ms IS NULL OR expires_ms > $3)",
                    &[&encode(namespace), &key, &(now_ms() as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(deleted > 0)
        })
    }

    fn search<'a>(&'a self, search: &'a Search) -> BoxFuture<'a, Result<Vec<Item>, MemoryError>> {
        Box::pin(async move {
            let query_vector = match (&search.query, search.mode) {
                (Some(q), SearchMode::Hybrid | SearchMode::Vector) => {
                    self.vectors(std::slice::from_ref(q)).await?.pop().flatten()
                }
                _ => {
                    self.fixed().await?;
                    None
                }
            };
            let client = self.client().await?;
            ranked(&client, search, query_vector).await
        })
    }

    fn list_namespaces<'a>(
        &'a self,
        prefix: &'a [String],
        limit: usize,
        offset: usize,
    ) -> BoxFuture<'a, Result<Vec<Namespace>, MemoryError>> {
        Box::pin(async move {
            self.fixed().await?;
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT DISTINCT ns COLLATE \"C\" AS ns FROM statewise_memories
                     WHERE left(ns, length($1)) = $1 AND (expires_ms IS NULL OR expires_ms > $2)
                     ORDER BY ns LIMIT $3 OFFSET $4",
                    &[
                        &encode(prefix),
                        &(now_ms() as i64),
                        &(limit as i64),
                        &(offset as i64),
                    ],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| decode(&r.get::<_, String>(0)))
                .collect())
        })
    }

    fn sweep(&self) -> BoxFuture<'_, Result<usize, MemoryError>> {
        Box::pin(async move {
            self.fixed().await?;
            let client = self.client().await?;
            let swept = client
                .execute(
                    "DELETE FROM statewise_memories WHERE expires_ms IS NOT NULL AND expires_ms <= $1",
                    &[&(now_ms() as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(swept as usize)
        })
    }
}

/// The page of memories `search` finds, ranked as it asks.
async fn ranked(
    client: &Client,
    search: &Search,
    query_vector: Option<String>,
) -> Result<Vec<Item>, MemoryError> {
    let now = now_ms() as i64;
    let (clause, mut params) = scope(search, now);
    let next = params.len() + 1;
    let Some(query) = &search.query else {
        params.push(Box::new(search.limit as i64));
        params.push(Box::new(search.offset as i64));
        let sql = format!(
            "SELECT {COLUMNS} FROM statewise_memories WHERE {clause}
             ORDER BY updated_ms DESC, key COLLATE \"C\" LIMIT ${next} OFFSET ${}",
            next + 1
        );
        let rows = client.query(&sql, &refs(&params)).await.map_err(pg)?;
        return rows.iter().map(item).collect();
    };
    let wanted = (search.offset + search.limit).max(FUSED) as i64;
    let terms: Vec<String> = query_words(query);
    let keyword: Vec<(String, String, f64)> = match search.mode {
        SearchMode::Keyword | SearchMode::Hybrid if !terms.is_empty() => {
            // Words are letters and digits only: safe inside a tsquery.
            let mut all = scope(search, now).1;
            all.push(Box::new(terms.join(" | ")));
            all.push(Box::new(wanted));
            let sql = format!(
                "SELECT ns, key, ts_rank_cd(tsv, to_tsquery('simple', ${next}))::float8 AS r
                 FROM statewise_memories WHERE {clause} AND tsv @@ to_tsquery('simple', ${next})
                 ORDER BY r DESC, key COLLATE \"C\" LIMIT ${}",
                next + 1
            );
            let rows = client.query(&sql, &refs(&all)).await.map_err(pg)?;
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect()
        }
        _ => Vec::new(),
    };
    let vector: Vec<(String, String, f64)> = match (&query_vector, search.mode) {
        (Some(v), SearchMode::Vector | SearchMode::Hybrid) => {
            let mut all = scope(search, now).1;
            all.push(Box::new(v.clone()));
            all.push(Box::new(wanted));
            // `order` is the HNSW index's operator, or an expression the
            // index cannot serve, for an exact scan of the scope.
            let sql = |order: &str| {
                format!(
                    "SELECT ns, key, (1 - (embedding <=> ${next}::text::vector))::float8 AS s
                     FROM statewise_memories WHERE {clause} AND embedding IS NOT NULL
                     ORDER BY {order} LIMIT ${}",
                    next + 1
                )
            };
            let indexed = sql(&format!("embedding <=> ${next}::text::vector"));
            // The index's candidate list, wide enough for what is asked
            // (set on each vector search, so the pooled connection's
            // setting is always this search's).
            let candidates = (wanted * 4).clamp(40, 1000);
            client
                .batch_execute(&format!("SET hnsw.ef_search = {candidates}"))
                .await
                .map_err(pg)?;
            let mut rows = client.query(&indexed, &refs(&all)).await.map_err(pg)?;
            // pgvector 0.6 filters the index's nearest (`hnsw.ef_search`)
            // by the scope afterwards: a narrow scope can keep fewer
            // than asked for, or none, though the scope holds more. Then
            // the scope is ranked exactly.
            if (rows.len() as i64) < wanted {
                let exact = sql(&format!("(embedding <=> ${next}::text::vector) + 0"));
                rows = client.query(&exact, &refs(&all)).await.map_err(pg)?;
            }
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect()
        }
        _ => Vec::new(),
    };
    let order: Vec<((String, String), f64)> = match search.mode {
        SearchMode::Keyword => keyword.into_iter().map(|(n, k, s)| ((n, k), s)).collect(),
        SearchMode::Vector => vector.into_iter().map(|(n, k, s)| ((n, k), s)).collect(),
        SearchMode::Hybrid => {
            let ids: Vec<(String, String)> = keyword
                .iter()
                .chain(&vector)
                .map(|(n, k, _)| (n.clone(), k.clone()))
                .collect();
            let index_of =
                |n: &str, k: &str| ids.iter().position(|(a, b)| a == n && b == k).unwrap_or(0);
            let rankings: [Vec<(usize, f64)>; 2] = [
                keyword
                    .iter()
                    .map(|(n, k, s)| (index_of(n, k), *s))
                    .collect(),
                vector
                    .iter()
                    .map(|(n, k, s)| (index_of(n, k), *s))
                    .collect(),
            ];
            fuse(&rankings[0], &rankings[1])
                .into_iter()
                .map(|f| (ids[f.index].clone(), f.score))
                .collect()
        }
    };
    let mut hits = Vec::new();
    for ((ns, key), score) in order.into_iter().skip(search.offset).take(search.limit) {
        // A memory found is a memory read: its time to live starts again.
        let row = client
            .query_opt(
                &format!(
                    "UPDATE statewise_memories SET expires_ms = CASE WHEN ttl_ms IS NULL THEN NULL ELSE $3 + ttl_ms END
                     WHERE ns = $1 AND key = $2 RETURNING {COLUMNS}"
                ),
                &[&ns, &key, &now],
            )
            .await
            .map_err(pg)?;
        if let Some(row) = row {
            hits.push(Item {
                score: Some(score),
                ..item(&row)?
            });
        }
    }
    Ok(hits)
}
