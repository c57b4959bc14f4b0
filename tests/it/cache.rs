//! The response cache: hits stream what the model streamed, count as
//! cached usage, survive a restart on disk, and a cached rerun of the
//! openai example makes no request at all.

use crate::support;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{react_response, temp_dir, usage, MockServer};
use futures::StreamExt;
use statewise::layer::{
    cache_conformance, cache_key, Cache, CacheStore, MemoryCache, ModelExt, SqliteCache,
};
use statewise::model::{ChatModel, ChatRequest, Chunk, Params, Reply, ScriptedModel};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Emit, Env, EventKind, Message, Usage};
use statewise_states::tools::Calculator;
use statewise_states::{Answer, Reasoning};

fn ask(text: &str) -> ChatRequest {
    ChatRequest::new(vec![Message::user(text)])
}

async fn chunks(model: &impl ChatModel, request: ChatRequest) -> Vec<Chunk> {
    model
        .stream(request)
        .map(|c| c.unwrap())
        .collect::<Vec<_>>()
        .await
}

#[tokio::test]
async fn a_hit_streams_the_same_chunks_with_cached_usage() {
    let model = ScriptedModel::new()
        .reply(Reply::text("The answer is four.").with_usage(usage(12, 5)))
        .cache(Arc::new(MemoryCache::new(10)));
    let first = chunks(&model, ask("2+2?")).await;
    let second = chunks(&model, ask("2+2?")).await;
    let text = |c: &[Chunk]| -> Vec<String> {
        c.iter()
            .filter_map(|c| match c {
                Chunk::Text(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(text(&second), text(&first));
    assert_eq!(text(&second).len(), 4, "the same pieces, not one block");
    let used = second.iter().find_map(|c| match c {
        Chunk::Usage(u) => Some(*u),
        _ => None,
    });
    assert_eq!(
        used,
        Some(Usage {
            prompt_tokens: 12,
            completion_tokens: 5,
            cached_tokens: 12,
            cached_responses: 1,
            ..Usage::default()
        })
    );
    assert_eq!((model.stats().hits(), model.stats().misses()), (1, 1));
}

#[tokio::test]
async fn the_key_covers_model_messages_tools_and_parameters() {
    let base = ask("2+2?");
    let key = cache_key("m", &base);
    assert_eq!(key, cache_key("m", &ask("2+2?")));
    assert_eq!(key.len(), 64);
    assert_ne!(key, cache_key("other", &base));
    assert_ne!(key, cache_key("m", &ask("2+3?")));
    let hot = ChatRequest {
        params: Params {
            temperature: Some(0.9),
            ..Params::default()
        },
        ..base.clone()
    };
    assert_ne!(key, cache_key("m", &hot));
    let with_tools = ChatRequest {
        tools: Toolbox::new(ToolRegistry::new().with(Calculator))
            .specs()
            .to_vec(),
        ..base
    };
    assert_ne!(key, cache_key("m", &with_tools));
}

#[tokio::test]
async fn failed_calls_are_not_cached_and_old_entries_are_evicted() {
    let store = Arc::new(MemoryCache::new(2));
    let model = ScriptedModel::new()
        .error("down")
        .text("a")
        .text("b")
        .text("c")
        .text("again")
        .cache(store.clone());
    assert!(model.complete(ask("a")).await.is_err());
    assert!(store.is_empty(), "a failure was cached");
    for q in ["a", "b", "c"] {
        assert_eq!(model.complete(ask(q)).await.unwrap().text, q);
    }
    assert_eq!(store.len(), 2);
    // "a" was least recently used: asked again, it goes to the model.
    assert_eq!(model.complete(ask("a")).await.unwrap().text, "again");
    assert_eq!(model.complete(ask("c")).await.unwrap().text, "c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_cache_outlives_the_process_that_wrote_it() {
    let path = temp_dir("cache-sqlite").join("responses.sqlite");
    let first = ScriptedModel::new()
        .reply(Reply::text("stored").with_usage(usage(3, 1)))
        .cache(Arc::new(SqliteCache::open(&path).unwrap()));
    assert_eq!(first.complete(ask("q")).await.unwrap().text, "stored");
    drop(first);
    // A new model with an empty script: only the file can answer.
    let second = ScriptedModel::new().cache(Arc::new(SqliteCache::open(&path).unwrap()));
    let reply = second.complete(ask("q")).await.unwrap();
    assert_eq!(reply.text, "stored");
    assert_eq!(reply.usage.cached_responses, 1);
    let store = SqliteCache::open(&path).unwrap();
    assert!(store
        .get(&cache_key("scripted", &ask("q")))
        .await
        .unwrap()
        .is_some());
    assert!(store.get("no such key").await.unwrap().is_none());
}

/// Caching is chosen per state: here Reasoning's model is cached and
/// Answer's is not, so a rerun calls only Answer's model.
#[tokio::test]
async fn caching_is_chosen_per_state() {
    let store: Arc<dyn CacheStore> = Arc::new(MemoryCache::new(100));
    let run = |answer_text: &'static str| {
        let reasoning = Arc::new(ScriptedModel::new().text(r#"{"final_answer": "draft"}"#));
        let answer = Arc::new(ScriptedModel::new().text(answer_text));
        let cached = Cache::new(reasoning.clone(), store.clone());
        let tools = Toolbox::new(ToolRegistry::new());
        let machine = statewise::Machine::new("reasoning")
            .with_state(Reasoning::new(cached.shared(), tools))
            .with_state(Answer::with_model(answer.clone()));
        async move {
            let out = machine.run(Env::from_user("hi")).await.unwrap();
            (out, reasoning.calls().len(), answer.calls().len())
        }
    };
    let (first, r1, a1) = run("first answer").await;
    assert_eq!((r1, a1), (1, 1));
    assert_eq!(first.answer.as_deref(), Some("first answer"));
    let (second, r2, a2) = run("fresh answer").await;
    assert_eq!(
        (r2, a2),
        (0, 1),
        "reasoning came from the cache, answer did not"
    );
    assert_eq!(second.answer.as_deref(), Some("fresh answer"));
    assert_eq!(second.env.usage.cached_responses, 1);
}

/// The acceptance check: the openai example with `--cache`, run twice.
/// The second run makes no HTTP request and prints the same tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_rerun_of_the_openai_example_makes_no_request() {
    let server = MockServer::start(|req| react_response(req, usage(40, 12))).await;
    let dir = temp_dir("cache-openai");
    let run = || {
        let out = Command::new(support::example("openai"))
            .args(["What is 6 * 7?", "--verbose", "--cache"])
            .arg(&dir)
            .env("OPENAI_BASE_URL", server.url("/v1"))
            .env_remove("OPENAI_API_KEY")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    assert_eq!(server.requests().len(), 2);
    // The window was asked for (`/props`, then `/v1/models`; this server
    // has neither) once, by the first run.
    assert_eq!(server.gets().len(), 2);
    let second = run();
    assert_eq!(server.requests().len(), 2, "the cached run made a request");
    assert_eq!(
        server.gets().len(),
        2,
        "the cached run asked for the window"
    );

    // Every line but the usage summary is the same; the summary says why.
    let (body1, summary1) = first.trim_end().rsplit_once('\n').unwrap();
    let (body2, summary2) = second.trim_end().rsplit_once('\n').unwrap();
    assert!(body1.contains("6 * 7 = 42") && body1.contains("calculator"));
    assert_eq!(body2, body1);
    assert!(!summary1.contains("response cache"), "{summary1}");
    assert!(
        summary2.contains("2 replies from the response cache"),
        "{summary2}"
    );
}

#[tokio::test]
async fn streamed_tokens_of_a_hit_match_the_original_events() {
    let store: Arc<dyn CacheStore> = Arc::new(MemoryCache::new(10));
    let tokens = |answer: &'static str| {
        let model = Cache::new(ScriptedModel::new().text(answer), store.clone()).shared();
        let machine = statewise::Machine::new("reasoning")
            .with_state(Reasoning::new(model, Toolbox::new(ToolRegistry::new())))
            .with_state(Answer::new());
        async move {
            machine
                .stream(Env::from_user("hi"))
                .filter_map(|e| async move {
                    match e.kind {
                        EventKind::Emitted(Emit::Token(t) | Emit::AnswerToken(t)) => {
                            Some((e.state.to_string(), t))
                        }
                        _ => None,
                    }
                })
                .collect::<Vec<_>>()
                .await
        }
    };
    let first = tokens(r#"{"final_answer": "Hello there, friend."}"#).await;
    let second = tokens(r#"{"final_answer": "never streamed"}"#).await;
    assert!(first.len() > 4);
    assert_eq!(second, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cache_conforms() {
    let cache = Arc::new(MemoryCache::new(100));
    cache_conformance::check(move || Arc::clone(&cache))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_cache_conforms() {
    let path = crate::support::temp_dir("sqlite-cache-conformance").join("cache.sqlite");
    cache_conformance::check(|| SqliteCache::open(&path).unwrap())
        .await
        .unwrap();
    cache_conformance::check(|| SqliteCache::open(&path).unwrap())
        .await
        .unwrap();
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cache_conforms() {
    let redis = crate::services::Redis::shared_or_own();
    let open = || statewise::layer::RedisCache::open(&redis.url).unwrap();
    cache_conformance::check(open).await.unwrap();
    cache_conformance::check(open).await.unwrap();
}

/// Replies expire after the time to live.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cache_entries_expire() {
    let redis = crate::services::Redis::shared_or_own();
    let cache = statewise::layer::RedisCache::open(&redis.url)
        .unwrap()
        .with_prefix(format!("ttl{:08x}", fastrand::u32(..)))
        .with_ttl(Duration::from_millis(300));
    let chunks = [statewise::model::Chunk::Text("4".into())];
    cache.put("k", &chunks).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&chunks[..]));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(cache.get("k").await.unwrap(), None);
}

/// A cache that keeps at most 1,000 chunks of a reply, as a size-capped
/// backend might: the suite must notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_conformance_suite_catches_a_truncating_cache() {
    struct Truncating(MemoryCache);
    impl CacheStore for Truncating {
        fn get<'a>(
            &'a self,
            key: &'a str,
        ) -> futures::future::BoxFuture<
            'a,
            Result<Option<Vec<Chunk>>, statewise::backend::BackendError>,
        > {
            self.0.get(key)
        }
        fn put<'a>(
            &'a self,
            key: &'a str,
            chunks: &'a [Chunk],
        ) -> futures::future::BoxFuture<'a, Result<(), statewise::backend::BackendError>> {
            self.0.put(key, &chunks[..chunks.len().min(1000)])
        }
    }
    let cache = Arc::new(Truncating(MemoryCache::new(100)));
    let failure = cache_conformance::check(move || Arc::clone(&cache))
        .await
        .unwrap_err();
    assert_eq!(failure.check, "large");
}

/// Answers "4" after `delay`, or fails with HTTP 503; counts its calls.
struct Slow {
    calls: std::sync::atomic::AtomicUsize,
    delay: Duration,
    fail: bool,
}

impl Slow {
    fn new(delay: Duration, fail: bool) -> Self {
        Slow {
            calls: Default::default(),
            delay,
            fail,
        }
    }
    fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl ChatModel for Slow {
    fn name(&self) -> &str {
        "slow"
    }
    fn stream(&self, _request: ChatRequest) -> statewise::model::ChunkStream<'_> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(statewise::try_stream! {
            tokio::time::sleep(self.delay).await;
            if self.fail {
                Err(statewise::model::ModelError::Http {
                    provider: "slow".into(),
                    status: 503,
                    message: "overloaded".into(),
                    retry_after: None,
                })?;
            }
            yield Chunk::Text("4".into());
            yield Chunk::Usage(usage(10, 1));
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_requests_in_flight_make_one_call() {
    let cached = Arc::new(
        Slow::new(Duration::from_millis(200), false).cache(Arc::new(MemoryCache::new(10))),
    );
    let calls = (0..10).map(|_| {
        let cached = Arc::clone(&cached);
        tokio::spawn(async move { cached.complete(ask("2+2?")).await })
    });
    let replies: Vec<Reply> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert_eq!(cached.get_ref().calls(), 1);
    assert!(replies.iter().all(|r| r.text == "4"));
    // One paid call; the nine others are served as hits, at no cost.
    let paid = replies
        .iter()
        .filter(|r| r.usage.cached_responses == 0)
        .count();
    assert_eq!(paid, 1);
    // The nine waited for the call, unless a loaded machine started one
    // only after it ended (then it is a plain hit).
    let stats = cached.stats();
    assert_eq!(stats.misses(), 1);
    assert_eq!(stats.coalesced() + stats.hits(), 9);
    assert!(stats.coalesced() >= 1);
    // A different request is not held behind them.
    cached.complete(ask("3+3?")).await.unwrap();
    assert_eq!(cached.get_ref().calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_waiting_on_a_failed_call_get_its_error() {
    let cached =
        Arc::new(Slow::new(Duration::from_millis(200), true).cache(Arc::new(MemoryCache::new(10))));
    let calls = (0..5).map(|_| {
        let cached = Arc::clone(&cached);
        tokio::spawn(async move { cached.complete(ask("2+2?")).await })
    });
    for r in futures::future::join_all(calls).await {
        match r.unwrap() {
            Err(statewise::model::ModelError::Http { status: 503, .. }) => {}
            other => panic!("expected the 503, got {other:?}"),
        }
    }
    assert_eq!(cached.get_ref().calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_caller_makes_the_call_when_the_first_is_dropped() {
    let cached = Arc::new(
        Slow::new(Duration::from_millis(300), false).cache(Arc::new(MemoryCache::new(10))),
    );
    let first = {
        let cached = Arc::clone(&cached);
        tokio::spawn(async move { cached.complete(ask("2+2?")).await })
    };
    // The first is calling the model: the second can only wait for it.
    while cached.get_ref().calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = {
        let cached = Arc::clone(&cached);
        tokio::spawn(async move { cached.complete(ask("2+2?")).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    first.abort();
    let reply = second.await.unwrap().unwrap();
    assert_eq!(reply.text, "4");
    assert_eq!(
        reply.usage.cached_responses, 0,
        "the waiting caller made the call itself"
    );
    assert_eq!(cached.get_ref().calls(), 2);
}

/// Two processes (two caches on one Redis, each with its own connection)
/// asked the same request at once make one provider call between them.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_redis_cache_make_one_call() {
    let redis = crate::services::Redis::shared_or_own();
    let prefix = format!("coalesce{:08x}", fastrand::u32(..));
    let model = Arc::new(Slow::new(Duration::from_millis(500), false));
    let process = || {
        let store = statewise::layer::RedisCache::open(&redis.url)
            .unwrap()
            .with_prefix(&prefix);
        Arc::new(Arc::clone(&model).cache(Arc::new(store)))
    };
    let (a, b) = (process(), process());
    let calls = (0..8).map(|i| {
        let cached = Arc::clone(if i % 2 == 0 { &a } else { &b });
        tokio::spawn(async move { cached.complete(ask("2+2?")).await })
    });
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.unwrap().unwrap().text, "4");
    }
    assert_eq!(model.calls(), 1, "one call for both processes");
    let waited =
        a.stats().coalesced() + b.stats().coalesced() + a.stats().hits() + b.stats().hits();
    assert_eq!(waited, 7);
}

/// A process whose call fails gives up its claim: the other makes the call
/// itself rather than wait for the claim to lapse.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_lets_another_process_make_it() {
    let redis = crate::services::Redis::shared_or_own();
    let prefix = format!("coalesce{:08x}", fastrand::u32(..));
    let open = || {
        Arc::new(
            statewise::layer::RedisCache::open(&redis.url)
                .unwrap()
                .with_prefix(&prefix),
        )
    };
    let failing = Arc::new(Slow::new(Duration::from_millis(300), true));
    let working = Arc::new(Slow::new(Duration::from_millis(10), false));
    let a = Arc::new(
        Arc::clone(&failing)
            .cache(open())
            .claim_ttl(Duration::from_secs(600)),
    );
    let b = Arc::new(Arc::clone(&working).cache(open()));
    let first = {
        let a = Arc::clone(&a);
        tokio::spawn(async move { a.complete(ask("2+2?")).await })
    };
    while failing.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = std::time::Instant::now();
    let second = b.complete(ask("2+2?")).await.unwrap();
    assert!(first.await.unwrap().is_err());
    assert_eq!(second.text, "4");
    assert_eq!(working.calls(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "it did not wait for the claim to lapse"
    );
}

/// The window a server reported is kept in the store: a new process (a new
/// provider and cache over the same store) asks the server nothing.
#[tokio::test]
async fn the_context_window_is_cached_beside_the_replies() {
    let server = MockServer::with_gets(
        |req| react_response(req, usage(1, 1)),
        |req| match req.path.as_str() {
            "/props" => {
                support::Response::json(200, r#"{"default_generation_settings": {"n_ctx": 1536}}"#)
            }
            _ => support::Response::json(404, "{}"),
        },
    )
    .await;
    let store: Arc<dyn CacheStore> = Arc::new(MemoryCache::new(10));
    let process = || {
        let model = statewise::model::OpenAi::builder("m")
            .base_url(server.url("/v1"))
            .build()
            .unwrap();
        model.cache(Arc::clone(&store))
    };
    let first = process();
    assert_eq!(first.context_window().await.map(|w| w.tokens), Some(1536));
    assert_eq!(first.context_window().await.map(|w| w.tokens), Some(1536));
    assert_eq!(server.gets().len(), 1);
    let second = process();
    let window = second.context_window().await.unwrap();
    assert_eq!(window.tokens, 1536);
    assert!(window.counter.is_none(), "the provider estimates");
    assert_eq!(
        server.gets().len(),
        1,
        "the second process asked the server"
    );
}
