//! The agent remembers: a fact user A tells is recalled in A's later run,
//! never in B's, through the stock `remember` and `recall` tools scoped to
//! the run's principal.

use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;
use statewise::guard::Principal;
use statewise::memory::{HashEmbedder, InMemoryStore, MemoryStore, Search};
use statewise::model::ScriptedModel;
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Emit, Env, EventKind};
use statewise_states::{agent, Recall, Remember};

/// The results of the run's `recall` calls.
async fn recalled(store: &Arc<dyn MemoryStore>, model: ScriptedModel, env: Env) -> Vec<Value> {
    let tools = Toolbox::new(
        ToolRegistry::new()
            .with(Remember::new(Arc::clone(store)))
            .with(Recall::new(Arc::clone(store))),
    );
    let events: Vec<_> = agent(Arc::new(model), tools).stream(env).collect().await;
    assert!(
        matches!(events.last().unwrap().kind, EventKind::Finished(_)),
        "{:?}",
        events.last()
    );
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Emitted(Emit::Observation(o)) if o.tool == "recall" => {
                Some(o.content.clone())
            }
            _ => None,
        })
        .collect()
}

fn asking_to_recall() -> ScriptedModel {
    ScriptedModel::new()
        .text(r#"{"tool_calls": [{"name": "recall", "arguments": {"query": "what is my cat called"}}]}"#)
        .text(r#"{"final_answer": "Let me see."}"#)
}

#[tokio::test]
async fn a_fact_told_by_one_user_is_recalled_for_that_user_only() {
    let store: Arc<dyn MemoryStore> = Arc::new(InMemoryStore::new(HashEmbedder::new(256)));
    let alice = Principal::new("alice");
    let tell = ScriptedModel::new()
        .text(r#"{"tool_calls": [{"name": "remember", "arguments": {"text": "The user's cat is called Miso."}}]}"#)
        .text(r#"{"final_answer": "I will remember that."}"#);
    let env = Env::from_user("My cat is called Miso.").with_principal(alice.clone());
    recalled(&store, tell, env).await;
    // Other facts of Alice's, and one of Bob's, around it.
    let bob = Principal::new("bob");
    for (who, text) in [
        (&alice, "The user lives in Lisbon."),
        (&bob, "The user's dog is called Rex."),
    ] {
        let model = ScriptedModel::new()
            .text(format!(
                r#"{{"tool_calls": [{{"name": "remember", "arguments": {{"text": "{text}"}}}}]}}"#
            ))
            .text(r#"{"final_answer": "Noted."}"#);
        recalled(
            &store,
            model,
            Env::from_user(text).with_principal(who.clone()),
        )
        .await;
    }

    let later = Env::from_user("What is my cat called?").with_principal(alice);
    let for_alice = recalled(&store, asking_to_recall(), later).await;
    assert_eq!(
        for_alice[0][0]["text"], "The user's cat is called Miso.",
        "{for_alice:?}"
    );

    let for_bob = recalled(
        &store,
        asking_to_recall(),
        Env::from_user("What is my cat called?").with_principal(bob),
    )
    .await;
    let texts = for_bob[0].to_string();
    assert!(
        !texts.contains("Miso") && !texts.contains("Lisbon"),
        "{texts}"
    );
    assert!(texts.contains("Rex"), "{texts}");

    // Every memory is under its principal's namespace.
    let spaces = store
        .list_namespaces(&["memories".into()], 10, 0)
        .await
        .unwrap();
    assert_eq!(
        spaces,
        [
            vec!["memories".to_owned(), "alice".into()],
            vec!["memories".into(), "bob".into()]
        ]
    );
    let alices = store
        .search(&Search::under(["memories", "alice"]))
        .await
        .unwrap();
    assert_eq!(alices.len(), 2);
}

#[tokio::test]
async fn without_a_principal_the_memory_tools_refuse() {
    let store: Arc<dyn MemoryStore> = Arc::new(InMemoryStore::new(HashEmbedder::new(64)));
    let observed = recalled(
        &store,
        asking_to_recall(),
        Env::from_user("What is my cat called?"),
    )
    .await;
    let error = observed[0]["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("no principal"), "{observed:?}");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn the_postgres_store_with_pgvector_conforms() {
    use statewise::memory::{conformance, PostgresMemory};
    let pg = crate::services::Postgres::with_vector();
    let store = PostgresMemory::open(&pg.url, HashEmbedder::new(64)).unwrap();
    conformance::check(move |embedder| store.with_embedder(embedder))
        .await
        .unwrap();
}

#[cfg(feature = "memory-local")]
#[tokio::test]
async fn the_embedded_minilm_finds_a_fact_by_a_question_in_other_words() {
    use statewise::memory::{cosine, Embedder, MiniLm, PutOptions, SearchMode};
    let minilm = MiniLm::load_default().expect("the embedder (scripts/fetch-model embedder)");
    let texts: Vec<String> = [
        "Alice drinks green tea every morning.",
        "Which beverage does Alice have at breakfast?",
        "The train to Paris leaves at noon.",
        "When does the Paris train depart?",
    ]
    .map(String::from)
    .to_vec();
    let v = minilm.embed(&texts).await.unwrap();
    assert_eq!((v.len(), v[0].len()), (4, 384));
    let norm: f32 = v[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.2);
    assert!(cosine(&v[2], &v[3]) > cosine(&v[2], &v[1]) + 0.2);
    // The same text gives the same vector alone and in a batch.
    let alone = minilm.embed(&texts[2..3]).await.unwrap();
    assert!(cosine(&alone[0], &v[2]) > 0.9999);

    // In a store: a question sharing no word with the fact finds it.
    let store = InMemoryStore::new(minilm);
    let ns = vec!["users".to_owned(), "alice".to_owned()];
    let facts = [
        ("tea", "Alice drinks green tea every morning."),
        ("cat", "Alice has a cat named Miso."),
        ("job", "Alice works night shifts at the hospital."),
    ];
    for (key, text) in facts {
        let value = serde_json::json!({ "text": text });
        store
            .put(&ns, key, value, PutOptions::default())
            .await
            .unwrap();
    }
    let asked = Search::under(ns)
        .query("Which beverage at breakfast?")
        .mode(SearchMode::Vector);
    let hits = store.search(&asked).await.unwrap();
    assert_eq!(hits[0].key, "tea", "{hits:?}");
}

/// Recall@3 of the embedded model over the 40 facts and questions in other
/// words of `tests/data/memory_facts.json`, each fact stored in one
/// namespace among distractors: each question's fact among its three best
/// hits.
#[cfg(feature = "memory-local")]
#[tokio::test]
async fn the_embedded_model_recalls_facts_from_questions_in_other_words() {
    use statewise::memory::{MiniLm, PutOptions, SearchMode, SqliteMemory};
    let data: Value = serde_json::from_str(include_str!("../data/memory_facts.json")).unwrap();
    let pairs = data["pairs"].as_array().unwrap();
    let store =
        SqliteMemory::in_memory(MiniLm::load_default().expect("scripts/fetch-model embedder"))
            .unwrap();
    let ns = vec!["users".to_owned(), "me".to_owned()];
    let items = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                ns.clone(),
                format!("f{i}"),
                serde_json::json!({"text": p["fact"]}),
            )
        })
        .collect();
    store.put_many(items, PutOptions::default()).await.unwrap();
    let mut recall = Vec::new();
    for mode in [SearchMode::Keyword, SearchMode::Vector, SearchMode::Hybrid] {
        let mut found = 0;
        for (i, pair) in pairs.iter().enumerate() {
            let question = pair["question"].as_str().unwrap();
            let search = Search::under(ns.clone())
                .query(question)
                .mode(mode)
                .page(3, 0);
            let hits = store.search(&search).await.unwrap();
            if hits.iter().any(|h| h.key == format!("f{i}")) {
                found += 1;
            } else if mode == SearchMode::Hybrid {
                println!("missed: {question}");
            }
        }
        println!("{mode:?} recall@3 {found}/{}", pairs.len());
        recall.push(f64::from(found) / pairs.len() as f64);
    }
    assert!(recall[2] >= 0.9, "hybrid recall@3 {:.2}", recall[2]);
    assert!(recall[2] >= recall[0], "hybrid below keyword: {recall:?}");
}

/// Keyword, vector and hybrid search with MiniLM on the 250 pairs of
/// `tests/data/retrieval_set.json`, where a question needs both the
/// person's name (words) and the kind of fact (meaning): hybrid search
/// finds more than either alone, at 1 and at 3.
#[cfg(feature = "memory-local")]
#[tokio::test]
async fn hybrid_search_beats_keyword_and_vector_alone() {
    use statewise::memory::{CachedEmbedder, MiniLm, PutOptions, SearchMode};
    let data: Value = serde_json::from_str(include_str!("../data/retrieval_set.json")).unwrap();
    let pairs = data["pairs"].as_array().unwrap();
    assert!(pairs.len() >= 200);
    // Cached: each question is embedded once for the three modes.
    let minilm = MiniLm::load_default().expect("scripts/fetch-model embedder");
    let store = InMemoryStore::new(CachedEmbedder::new(minilm, 1_000));
    let ns = vec!["people".to_owned()];
    let items = pairs
        .iter()
        .map(|p| {
            let id = p["id"].as_str().unwrap().to_owned();
            (ns.clone(), id, serde_json::json!({"text": p["passage"]}))
        })
        .collect();
    store.put_many(items, PutOptions::default()).await.unwrap();
    // found[mode] = (at 1, at 3)
    let mut found = Vec::new();
    for mode in [SearchMode::Keyword, SearchMode::Vector, SearchMode::Hybrid] {
        let (mut at1, mut at3) = (0, 0);
        for pair in pairs {
            let search = Search::under(ns.clone())
                .query(pair["question"].as_str().unwrap())
                .mode(mode)
                .page(3, 0);
            let hits = store.search(&search).await.unwrap();
            let rank = hits.iter().position(|h| pair["id"] == h.key.as_str());
            at1 += usize::from(rank == Some(0));
            at3 += usize::from(rank.is_some());
        }
        eprintln!(
            "{mode:?}: recall@1 {at1}/{n}, recall@3 {at3}/{n}",
            n = pairs.len()
        );
        found.push((at1, at3));
    }
    let (keyword, vector, hybrid) = (found[0], found[1], found[2]);
    assert!(hybrid.0 > keyword.0 && hybrid.0 > vector.0, "{found:?}");
    assert!(hybrid.1 > keyword.1 && hybrid.1 > vector.1, "{found:?}");
}

#[cfg(feature = "memory-local")]
#[test]
fn the_memory_example_adds_then_finds_a_fact() {
    let dir = crate::support::temp_dir("memory-example");
    let db = dir.join("mem.db");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(crate::support::example("memory"))
            .arg("--db")
            .arg(&db)
            .args(args)
            .output()
            .expect("the memory example runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let key = run(&["add", "--ns", "alice", "Alice's cat is called Miso."]);
    assert_eq!(key.trim().len(), 64, "{key}");
    assert_eq!(
        run(&["add", "--ns", "alice", "Alice's cat is called Miso."]),
        key
    );
    run(&["add", "--ns", "alice", "Alice works at the hospital."]);
    run(&["add", "--ns", "bob", "Bob's cat is called Tiger."]);
    let lines = run(&[
        "search",
        "--ns",
        "alice",
        "--k",
        "3",
        "What is the name of the pet?",
    ]);
    let hits: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.len(), 2, "{lines}");
    assert_eq!(hits[0]["text"], "Alice's cat is called Miso.");
    assert!(hits[0]["score"].as_f64().unwrap() >= hits[1]["score"].as_f64().unwrap());
}

/// `OpenAiEmbedder` against a recorded server: a 429 with Retry-After is
/// sent again, the answer's vectors are put back in text order, texts go
/// in batches, and a failure's message carries no key.
#[tokio::test]
async fn the_openai_embedder_retries_orders_and_keeps_its_key() {
    use crate::support::{MockServer, Response};
    use statewise::layer::RetryPolicy;
    use statewise::memory::{EmbedError, Embedder, OpenAiEmbedder};
    use std::time::Duration;

    const KEY: &str = "sk-embed-0123456789abcdef";
    // Vectors say which text they are for: [index, 1.0].
    let answer = |count: usize| {
        let data: Vec<Value> = (0..count)
            .rev()
            .map(|i| serde_json::json!({"object": "embedding", "index": i, "embedding": [i as f32, 1.0]}))
            .collect();
        Response::json(
            200,
            serde_json::json!({"object": "list", "data": data}).to_string(),
        )
    };
    let server = MockServer::script(vec![
        Response::json(429, r#"{"error": {"message": "slow down"}}"#).header("retry-after", "0"),
        answer(2),
        answer(1),
    ])
    .await;
    let embedder = OpenAiEmbedder::builder("text-embedding-3-small")
        .base_url(server.url("/v1"))
        .api_key(KEY)
        .dimensions(2)
        .batch(2)
        .build()
        .unwrap();
    let texts: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let vectors = embedder.embed(&texts).await.unwrap();
    assert_eq!(
        vectors,
        vec![vec![0.0, 1.0], vec![1.0, 1.0], vec![0.0, 1.0]]
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "one retry, then two batches");
    assert_eq!(requests[1].path, "/v1/embeddings");
    assert_eq!(requests[1].json()["input"], serde_json::json!(["a", "b"]));
    assert_eq!(requests[2].json()["input"], serde_json::json!(["c"]));
    assert_eq!(
        requests[1].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );

    // A failure that outlasts the retries is typed, and says no key.
    let server = MockServer::script(vec![Response::json(
        500,
        format!(r#"{{"error": {{"message": "backend down for {KEY}"}}}}"#),
    )])
    .await;
    let embedder = OpenAiEmbedder::builder("text-embedding-3-small")
        .base_url(server.url("/v1"))
        .api_key(KEY)
        .retry(RetryPolicy {
            max_retries: 1,
            base: Duration::from_millis(1),
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();
    let error = embedder.embed(&texts[..1]).await.unwrap_err();
    assert!(matches!(error, EmbedError::Provider(_)), "{error:?}");
    assert!(!error.to_string().contains(KEY), "{error}");
    assert_eq!(server.requests().len(), 2);
}

/// Alice's memories, one of Bob's, in a store with the deterministic
/// embedder.
async fn remembered() -> Arc<dyn MemoryStore> {
    use statewise::memory::PutOptions;
    let store: Arc<dyn MemoryStore> = Arc::new(InMemoryStore::new(HashEmbedder::new(256)));
    for (who, text) in [
        ("alice", "The user's dog is called Rex."),
        ("alice", "The user lives in Lisbon."),
        ("alice", "The user works night shifts as a nurse."),
        ("bob", "The user's dog is called Bolt."),
    ] {
        let ns = vec!["memories".to_string(), who.to_string()];
        store
            .put(
                &ns,
                text,
                serde_json::json!({ "text": text }),
                PutOptions::default(),
            )
            .await
            .unwrap();
    }
    store
}

/// `agent_with_memory` puts the asker's best-matching memories in the
/// prompt, as a second system message, and never another user's.
#[tokio::test]
async fn the_agent_reads_the_askers_memories_into_its_prompt() {
    use statewise_states::{agent_with_memory, Memories, MemoriesRecalled};
    let store = remembered().await;
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"final_answer": "Your dog is Rex."}"#)
            .text("[]"),
    );
    let machine = agent_with_memory(
        model.clone(),
        Toolbox::new(ToolRegistry::new()),
        Memories::new(Arc::clone(&store)).top(2),
    );
    let env = Env::from_user("What is my dog called?").with_principal(Principal::new("alice"));
    let events: Vec<_> = machine.stream(env).collect().await;
    machine.background().idle().await;
    let sent = &model.calls()[0].messages;
    assert_eq!(sent[1].role, statewise::Role::System);
    assert!(sent[1].content.contains("Rex"), "{:?}", sent[1]);
    assert!(!sent.iter().any(|m| m.content.contains("Bolt")), "{sent:?}");
    // top(2): the dog, and one other of Alice's, not all three.
    assert_eq!(
        sent[1].content.matches("\n- ").count(),
        2,
        "{}",
        sent[1].content
    );
    let told: Vec<MemoriesRecalled> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Emitted(Emit::Custom(c)) => c.decode::<MemoriesRecalled>(),
            _ => None,
        })
        .collect();
    assert_eq!(told.len(), 1, "searched once per question");
    assert_eq!(told[0].memories, 2);

    // No principal: no memories, and none stored.
    let model = Arc::new(ScriptedModel::new().text(r#"{"final_answer": "I don't know."}"#));
    let machine = agent_with_memory(
        model.clone(),
        Toolbox::new(ToolRegistry::new()),
        Memories::new(Arc::clone(&store)),
    );
    machine
        .run(Env::from_user("What is my dog called?"))
        .await
        .unwrap();
    machine.background().idle().await;
    assert!(model.calls()[0]
        .messages
        .iter()
        .all(|m| !m.content.contains("Rex")));
    assert_eq!(
        model.remaining(),
        0,
        "no extraction call without a principal"
    );
}

/// A small window: the fitter drops old turns and keeps the memories
/// whole, and they stay within their own budget.
#[tokio::test]
async fn memories_stay_in_a_fitted_prompt_within_their_budget() {
    use statewise::model::{message_tokens, request_tokens, ContextWindow, Estimate};
    use statewise::Message;
    use statewise_states::{Answer, Memories, Reasoning};
    let store = remembered().await;
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"final_answer": "Rex."}"#)
            .with_context_window(ContextWindow {
                tokens: 600,
                counter: None,
            }),
    );
    let budget = 60;
    let machine = statewise::Machine::new("reasoning")
        .with_state(
            Reasoning::new(model.clone(), Toolbox::new(ToolRegistry::new()))
                .memories(Memories::new(Arc::clone(&store)).budget(budget)),
        )
        .with_state(Answer::new());
    let mut env = Env::new().with_principal(Principal::new("alice"));
    for i in 0..40 {
        env.messages.push(Message::user(format!(
            "Earlier question number {i} about the weather in some town."
        )));
        env.messages.push(Message::assistant(format!(
            "Earlier answer number {i}: it was sunny and mild all day."
        )));
    }
    env.messages.push(Message::user("What is my dog called?"));
    machine.run(env).await.unwrap();
    let sent = &model.calls()[0];
    assert!(
        sent.messages.len() < 40,
        "old turns were dropped: {}",
        sent.messages.len()
    );
    assert!(request_tokens(sent, &Estimate) <= 600);
    assert_eq!(sent.messages[1].role, statewise::Role::System);
    assert!(sent.messages[1].content.contains("Rex"));
    assert!(message_tokens(&sent.messages[1], &Estimate) <= budget);
    assert_eq!(
        sent.messages.last().unwrap().content,
        "What is my dog called?"
    );
}

/// After the answer, what the run taught is stored in the background; a
/// near-duplicate of a memory already there is skipped, a new fact kept,
/// and the answer never waits for it.
#[tokio::test]
async fn facts_are_extracted_after_the_run_and_near_duplicates_skipped() {
    use statewise_states::{agent_with_memory, Memories};
    let store: Arc<dyn MemoryStore> = Arc::new(InMemoryStore::new(HashEmbedder::new(256)));
    let alice = Principal::new("alice");
    let ns = |who: &str| vec!["memories".to_string(), who.to_string()];
    let run = |model: Arc<ScriptedModel>, text: &'static str| {
        let machine = agent_with_memory(
            model,
            Toolbox::new(ToolRegistry::new()),
            Memories::new(Arc::clone(&store)),
        );
        let env = Env::from_user(text).with_principal(alice.clone());
        async move {
            let out = machine.run(env).await.unwrap();
            machine.background().idle().await;
            assert_eq!(machine.background().failed(), 0);
            out
        }
    };
    let first = Arc::new(
        ScriptedModel::new()
            .text(r#"{"final_answer": "Nice to meet Rex!"}"#)
            .text(r#"["The user's dog is called Rex."]"#),
    );
    let out = run(first.clone(), "My dog is called Rex.").await;
    assert_eq!(out.answer.as_deref(), Some("Nice to meet Rex!"));
    assert_eq!(out.path.last().map(String::as_str), Some("memorize"));
    // The extraction read the user's turn and the answer.
    let asked = &first.calls()[1].messages[1].content;
    assert!(
        asked.contains("User: My dog is called Rex.")
            && asked.contains("Assistant: Nice to meet Rex!"),
        "{asked}"
    );
    let second = Arc::new(
        ScriptedModel::new()
            .text(r#"{"final_answer": "Noted."}"#)
            .text(r#"["the user's dog is called rex", "The user plays the cello."]"#),
    );
    run(second, "Rex is my dog. I also play the cello.").await;
    let stored = store.list(&ns("alice"), 10, 0).await.unwrap();
    let mut texts: Vec<&str> = stored
        .iter()
        .filter_map(|i| i.value["text"].as_str())
        .collect();
    texts.sort_unstable();
    assert_eq!(
        texts,
        ["The user plays the cello.", "The user's dog is called Rex."]
    );
    assert!(store.list(&ns("bob"), 10, 0).await.unwrap().is_empty());
}

/// The seed's pattern, end to end: the `documents` example serves an agent
/// whose memory a cron schedule keeps in step with a folder. A question is
/// answered from the right file and names it; a file added later is
/// indexed by the next firing and answers the next question; a removed
/// one leaves the store.
#[cfg(all(feature = "memory-local", feature = "server"))]
#[tokio::test]
async fn a_scheduled_job_keeps_the_agents_documents_current() {
    use std::io::BufRead;
    use std::time::{Duration, Instant};
    let dir = crate::support::temp_dir("documents-example");
    let docs = dir.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/docs");
    for name in ["warranty.md", "shipping.md", "care.md"] {
        std::fs::copy(source.join(name), docs.join(name)).unwrap();
    }
    let mut child = std::process::Command::new(crate::support::example("documents"))
        .args(["--docs", docs.to_str().unwrap(), "--db"])
        .arg(dir.join("docs.db"))
        .args(["--port", "0", "--every", "* * * * * *"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the documents example starts");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _child = Kill(child);
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // The next printed line that passes `want`.
    let wait_for = |want: &dyn Fn(&str) -> bool| -> String {
        let started = Instant::now();
        loop {
            let left = Duration::from_secs(120).saturating_sub(started.elapsed());
            let line = lines
                .recv_timeout(left)
                .expect("the documents example printed what was expected in time");
            if want(&line) {
                return line;
            }
        }
    };
    assert_eq!(
        wait_for(&|l| l.starts_with("indexed")),
        "indexed 3 files: 3 changed, 0 removed, 3 passages"
    );
    let url = wait_for(&|l| l.starts_with("serving on "))
        .trim_start_matches("serving on ")
        .to_owned();
    // A firing with nothing new changes nothing.
    assert_eq!(
        wait_for(&|l| l.starts_with("indexed")),
        "indexed 3 files: 0 changed, 0 removed, 3 passages"
    );

    let ask = |question: &str| {
        let body = serde_json::json!({
            "threadId": "t", "runId": format!("r-{}", question.len()), "tools": [], "context": [],
            "state": null, "forwardedProps": null,
            "messages": [{"id": "q", "role": "user", "content": question}],
        });
        let url = format!("{url}/agent");
        async move {
            let text = reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let events: Vec<Value> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str(d).ok())
                .collect();
            let answer: String = events
                .iter()
                .filter(|e| e["type"] == "TEXT_MESSAGE_CONTENT")
                .filter_map(|e| e["delta"].as_str())
                .collect();
            let sources = events
                .iter()
                .find(|e| e["type"] == "CUSTOM" && e["name"] == "retrieved")
                .map(|e| e["value"]["sources"].clone())
                .unwrap_or(Value::Null);
            (answer, sources)
        }
    };
    let (answer, sources) = ask("How many years of warranty does the kettle have?").await;
    assert_eq!(sources[0], "warranty.md", "{sources}");
    assert!(answer.contains("\nSources: warranty.md"), "{answer}");

    // Written aside and renamed in, so no firing reads half a file.
    std::fs::write(
        dir.join("hours.md"),
        "# Opening hours\n\nThe Kestrel shop in Porto opens at nine in the morning and closes at six in the evening, Monday to Saturday.\n",
    )
    .unwrap();
    std::fs::rename(dir.join("hours.md"), docs.join("hours.md")).unwrap();
    assert_eq!(
        wait_for(&|l| l.starts_with("indexed 4")),
        "indexed 4 files: 1 changed, 0 removed, 4 passages"
    );
    let (answer, sources) = ask("When does the shop open in the morning?").await;
    assert_eq!(sources[0], "hours.md", "{sources}");
    assert!(answer.contains("Sources: hours.md"), "{answer}");

    std::fs::remove_file(docs.join("hours.md")).unwrap();
    assert_eq!(
        wait_for(&|l| l.contains("removed") && !l.contains(" 0 removed")),
        "indexed 3 files: 0 changed, 1 removed, 3 passages"
    );
    let (_, sources) = ask("When does the shop open in the morning?").await;
    assert!(!sources.to_string().contains("hours.md"), "{sources}");
}

/// The in-memory store's approximate index against its exact search:
/// recall@10 of at least 0.95 over 100 queries in a namespace of 3,000,
/// and writes and deletions after the index was built are seen at once.
#[cfg(feature = "memory-ann")]
#[tokio::test]
async fn the_approximate_index_finds_what_exact_search_finds() {
    use statewise::memory::{PutOptions, SearchMode};
    let words: Vec<String> = (0..300).map(|i| format!("w{i}")).collect();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut sentence = |n: usize| -> String {
        (0..n)
            .map(|_| words[rng.usize(..words.len())].as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let texts: Vec<String> = (0..3000).map(|_| sentence(8)).collect();
    let queries: Vec<String> = (0..100).map(|_| sentence(4)).collect();
    let approximate = InMemoryStore::new(HashEmbedder::new(384)).approximate_above(Some(2000));
    let exact = InMemoryStore::new(HashEmbedder::new(384)).approximate_above(None);
    let ns = vec!["docs".to_string()];
    let items: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                ns.clone(),
                format!("m{i}"),
                serde_json::json!({ "text": t }),
            )
        })
        .collect();
    for store in [&approximate, &exact] {
        store
            .put_many(items.clone(), PutOptions::default())
            .await
            .unwrap();
    }
    let top10 = |store: &InMemoryStore, query: &str| {
        let search = Search::under(["docs"])
            .query(query)
            .mode(SearchMode::Vector)
            .page(10, 0);
        let store = store.clone();
        async move {
            let hits = store.search(&search).await.unwrap();
            hits.into_iter()
                .map(|h| (h.key, h.score.unwrap()))
                .collect::<Vec<_>>()
        }
    };
    // The first search builds the index (and is exact itself).
    top10(&approximate, &queries[0]).await;
    assert_eq!(approximate.approximate_indexes(), [(ns.clone(), 3000)]);
    // A hit counts when it is as near as the exact tenth: texts tie often
    // here, and any of the tied ones is a right answer.
    let mut found = 0;
    for query in &queries {
        let (a, e) = (top10(&approximate, query).await, top10(&exact, query).await);
        let tenth = e.last().unwrap().1;
        found += a.iter().filter(|(_, score)| *score >= tenth - 1e-6).count();
    }
    let recall = found as f64 / (10 * queries.len()) as f64;
    eprintln!("approximate recall@10: {recall}");
    assert!(recall >= 0.95, "recall@10 {recall}");

    // Written after the build: found; deleted: gone.
    let fresh = "w1 w2 w3 w4 w5 w6 w7 w8";
    approximate
        .put(
            &ns,
            "fresh",
            serde_json::json!({ "text": fresh }),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(top10(&approximate, fresh).await[0].0, "fresh");
    approximate.delete(&ns, "fresh").await.unwrap();
    assert!(top10(&approximate, fresh)
        .await
        .iter()
        .all(|(k, _)| k != "fresh"));
}

/// With `OPENAI_BASE_URL` set, the memory example embeds through that
/// server: `add` and `search` work, and every text went to
/// `/v1/embeddings` with the model asked for.
#[cfg(feature = "memory-local")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_example_embeds_through_an_openai_compatible_server() {
    use crate::support::{MockServer, Response};
    let embedder = HashEmbedder::new(64);
    let server = MockServer::start(move |request| {
        let inputs = request.json()["input"].as_array().cloned().unwrap_or_default();
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, text)| {
                serde_json::json!({"index": i, "embedding": embedder.vector(text.as_str().unwrap_or(""))})
            })
            .collect();
        Response::json(200, serde_json::json!({ "data": data }).to_string())
    })
    .await;
    let dir = crate::support::temp_dir("memory-example-openai");
    let db = dir.join("mem.db");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(crate::support::example("memory"))
            .arg("--db")
            .arg(&db)
            .args(args)
            .env("OPENAI_BASE_URL", server.url("/v1"))
            .env("OPENAI_EMBEDDING_MODEL", "hash-embedder")
            .env("OPENAI_EMBEDDING_DIMENSIONS", "64")
            .env_remove("OPENAI_API_KEY")
            .output()
            .expect("the memory example runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["add", "--ns", "alice", "Alice's cat is called Miso."]);
    run(&["add", "--ns", "alice", "Alice works at the hospital."]);
    let lines = run(&["search", "--ns", "alice", "--k", "1", "Alice cat Miso"]);
    let best: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(best["text"], "Alice's cat is called Miso.");
    let requests = tokio::task::spawn_blocking(move || server.requests())
        .await
        .unwrap();
    assert_eq!(requests.len(), 3, "two texts and one query");
    assert!(requests
        .iter()
        .all(|r| r.path == "/v1/embeddings" && r.json()["model"] == "hash-embedder"));
}
