//! The AG-UI web server (feature `server`): agents on the web, over
//! Server-Sent Events and WebSockets, with runs that outlive a request.
//!
//! Every run, direct or background, writes its AG-UI events to a
//! [`RunLog`]; clients read the log. So a direct `POST /agent` and a
//! reconnecting `GET /runs/{id}/events` are the same code, a late client
//! gets the run from its start (or from `Last-Event-ID`), and whether a
//! run stops when its clients leave is one setting per kind of run
//! (default: a direct run stops, a background run goes on). Pauses are
//! checkpoints in the server's [`Store`]: the next request on the thread
//! resumes them (`plan.rs` decides how). With a Redis `RunQueue`
//! (feature `redis`, `Server::with_queue`), background runs go to the
//! queue's workers instead, and their logs follow the events the workers
//! stream. Replicas share a fleet through three things kept on Redis:
//! checkpoints ([`Store`]), paused threads ([`Threads`]) and runs' event
//! logs ([`RunLogs`]); any replica then answers for any run.
//!
//! Routes ([`Server::router`]):
//!
//! | route | what |
//! |---|---|
//! | `POST /agent` | AG-UI: a `RunAgentInput` in, `text/event-stream` out |
//! | `POST /runs` | starts a background run; answers `{"runId", "threadId"}` |
//! | `GET /runs/{id}` | its status |
//! | `GET /runs/{id}/events` | its events, replayed, then live (`Last-Event-ID`) |
//! | `DELETE /runs/{id}` | cancels it |
//! | `GET /ws` | a WebSocket: run, resume and cancel messages in, events out |
//! | `GET /` | the page, if one is set ([`Server::with_page`]) |
//! | `GET /metrics` | the metrics, if set ([`Server::with_metrics`]) |

mod auth;
mod error;
mod http;
#[cfg(feature = "jwt")]
mod jwt;
mod log;
mod plan;
mod replica;
mod run_logs;
mod schedule;
mod threads;
mod ws;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use tracing::instrument::WithSubscriber;
use tracing::Instrument;

use crate::agui::{AgUiEvent, RunAgentInput, RunFinishedOutcome, Translator};
use crate::env::Background;
use crate::guard::Principal;
use crate::machine::event::EventKind;
use crate::machine::Machine;
use crate::store::{MemoryStore, Store};
use log::Driver;

pub use auth::{bearer_token, ApiKeys, AuthError, Authenticate, DEFAULT_MAX_BODY};
pub use error::ServerError;
#[cfg(feature = "jwt")]
pub use jwt::{Jwt, JwtKeyError};
pub use log::{RunInfo, RunLog, RunStatus};
#[cfg(feature = "redis")]
pub use run_logs::RedisRunLogs;
pub use run_logs::{Entry, MemoryRunLogs, Page, RunLogs, DEFAULT_MAX_AGE, DEFAULT_MAX_EVENTS};
pub use schedule::{Overlap, Schedule, ScheduleError, ScheduleHandle};
#[cfg(feature = "redis")]
pub use threads::RedisThreads;
pub use threads::{MemoryThreads, Threads};

/// What builds the machine for a request (its client tools, say).
pub type Agent = dyn Fn(&RunAgentInput) -> Machine + Send + Sync;

/// What builds the machine for a request acting for a principal (its
/// model held to the principal's budget, say).
pub type AgentFor = dyn Fn(&RunAgentInput, Option<&Principal>) -> Machine + Send + Sync;

/// An AG-UI server for one agent.
///
/// ```no_run
/// use statewise::server::Server;
/// use statewise::state::FnState;
/// use statewise::{Env, Machine, Next};
///
/// # async fn run() -> std::io::Result<()> {
/// // A machine per request, built from it: the stock agent with
/// // `Toolbox::with_client_tools(input.client_tools())`, say.
/// let server = Server::new(|_input| {
///     Machine::new("hello").with_state(FnState::new(
///         "hello",
///         |env: &mut Env| { env.answer = Some("hello".into()); Ok(()) },
///         |_: &Env| Next::End,
///     ))
/// });
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// server.serve(listener).await
/// # }
/// ```
#[derive(Clone)]
pub struct Server {
    agent: Arc<AgentFor>,
    store: Arc<dyn Store>,
    /// The run each paused thread waits in.
    threads: Arc<dyn Threads>,
    /// Runs' event logs shared with the other replicas, if any.
    logs: Option<Arc<dyn RunLogs>>,
    /// The most events a run's log here keeps.
    max_events: usize,
    shared: Arc<Shared>,
    direct_stops_when_unread: bool,
    background_stops_when_unread: bool,
    keep_ended: Duration,
    page: Option<Arc<str>>,
    metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
    background: Background,
    /// Where background runs go, and the name the workers know the
    /// machine by.
    #[cfg(feature = "redis")]
    queue: Option<(crate::worker::RunQueue, Arc<str>)>,
    access: auth::Access,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("direct_stops_when_unread", &self.direct_stops_when_unread)
            .field(
                "background_stops_when_unread",
                &self.background_stops_when_unread,
            )
            .field("keep_ended", &self.keep_ended)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shared {
    /// Runs by AG-UI run id.
    runs: Mutex<HashMap<String, Arc<RunLog>>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only inserts and lookups happen under these locks; none panics
    // halfway.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Server {
    /// A server whose runs `agent` builds, one machine per request, with
    /// checkpoints in memory; the answer is what the run's states stream
    /// as [`Emit::AnswerToken`](crate::state::Emit::AnswerToken)s.
    pub fn new(agent: impl Fn(&RunAgentInput) -> Machine + Send + Sync + 'static) -> Self {
        Self::new_per_principal(move |input, _| agent(input))
    }

    /// A server whose runs `agent` builds for the request and the
    /// principal it acts for ([`with_auth`](Self::with_auth)): a model per
    /// principal ([`PerPrincipal`](crate::layer::PerPrincipal)) holds each
    /// to its own budget.
    pub fn new_per_principal(
        agent: impl Fn(&RunAgentInput, Option<&Principal>) -> Machine + Send + Sync + 'static,
    ) -> Self {
        Server {
            agent: Arc::new(agent),
            store: Arc::new(MemoryStore::new()),
            threads: Arc::new(MemoryThreads::new()),
            logs: None,
            max_events: DEFAULT_MAX_EVENTS,
            shared: Arc::default(),
            direct_stops_when_unread: true,
            background_stops_when_unread: false,
            keep_ended: Duration::from_secs(600),
            page: None,
            metrics: None,
            background: Background::new(),
            #[cfg(feature = "redis")]
            queue: None,
            access: auth::Access::default(),
        }
    }

    /// Sends new background runs (`POST /runs`, schedules) to `queue`'s
    /// workers as runs of the machine they know as `machine`, instead of
    /// running them here; their events are those the workers stream. A
    /// queued run that pauses is resumed here, from the store: give the
    /// server the workers' [`RedisStore`](crate::store::RedisStore) (same
    /// prefix). Queued runs cannot be cancelled from the server.
    #[cfg(feature = "redis")]
    pub fn with_queue(
        mut self,
        queue: crate::worker::RunQueue,
        machine: impl Into<String>,
    ) -> Self {
        self.queue = Some((queue, Arc::from(machine.into())));
        self
    }

    /// Keeps checkpoints (and so pauses) in `store`.
    pub fn with_store(mut self, store: impl Store + 'static) -> Self {
        self.store = Arc::new(store);
        self
    }

    /// Keeps the run each paused thread waits in `threads` (default: in
    /// this process's memory). With [`RedisThreads`] and a shared store
    /// ([`with_store`](Self::with_store)), a thread paused on one server
    /// resumes on any other, or on this one after a restart.
    pub fn with_threads(mut self, threads: impl Threads + 'static) -> Self {
        self.threads = Arc::new(threads);
        self
    }

    /// Writes every run's events to `logs` as well, and reads from there
    /// the runs other replicas run: with [`RedisRunLogs`] (and
    /// [`with_threads`](Self::with_threads), [`with_store`](Self::with_store)
    /// on the same Redis), any replica answers a run's status, replays its
    /// events from `Last-Event-ID`, follows it live, and cancels it (the
    /// running replica stops it at its next event).
    pub fn with_logs(mut self, logs: impl RunLogs + 'static) -> Self {
        self.logs = Some(Arc::new(logs));
        self
    }

    /// Keeps at most `max_events` of each run's events in this server's
    /// memory (default [`DEFAULT_MAX_EVENTS`]); readers from an older
    /// index start at the oldest kept.
    pub fn max_events(mut self, max_events: usize) -> Self {
        self.max_events = max_events;
        self
    }

    /// Whether a run stops once its last client disconnects: for direct
    /// runs (`POST /agent`, default yes) and background ones (`POST /runs`,
    /// default no).
    pub fn stop_when_unread(mut self, direct: bool, background: bool) -> Self {
        self.direct_stops_when_unread = direct;
        self.background_stops_when_unread = background;
        self
    }

    /// How long an ended run's events stay readable (default 10 min).
    pub fn keep_ended(mut self, keep: Duration) -> Self {
        self.keep_ended = keep;
        self
    }

    /// Serves `html` at `/`.
    pub fn with_page(mut self, html: impl Into<Arc<str>>) -> Self {
        self.page = Some(html.into());
        self
    }

    /// Serves `render()` at `/metrics` (a Prometheus exposition, say:
    /// `move || handle.render()`).
    pub fn with_metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.metrics = Some(Arc::new(render));
        self
    }

    /// The tracker of the states' fire-and-forget work, shared by every
    /// run's machine; [`serve`](Self::serve) waits for it on shutdown.
    pub fn background(&self) -> &Background {
        &self.background
    }

    /// Serves the routes on `listener` until the process ends, then waits
    /// for background work.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let background = self.background.clone();
        let served = axum::serve(listener, self.router()).await;
        background.idle().await;
        served
    }

    /// Starts the run `input` asks for (a new one, or the thread's paused
    /// run resumed) on a task of its own, writing its events to the
    /// returned log. With `stop_when_unread`, it stops once nobody reads
    /// them.
    pub async fn start(
        &self,
        input: RunAgentInput,
        stop_when_unread: bool,
    ) -> Result<Arc<RunLog>, ServerError> {
        self.start_as(input, stop_when_unread, false, None).await
    }

    /// Starts a background run: on the Redis queue if the server has one
    /// and the request starts a new run, else here (going on without
    /// clients unless [`stop_when_unread`](Self::stop_when_unread) says
    /// otherwise).
    pub async fn start_background(&self, input: RunAgentInput) -> Result<Arc<RunLog>, ServerError> {
        self.start_as(input, self.background_stops_when_unread, true, None)
            .await
    }

    /// Starts (or resumes) a run acting for `caller`: a run id or a paused
    /// thread of another principal's is refused.
    async fn start_as(
        &self,
        input: RunAgentInput,
        stop_when_unread: bool,
        enqueue: bool,
        caller: Option<Principal>,
    ) -> Result<Arc<RunLog>, ServerError> {
        if let Ok(existing) = self.run(&input.run_id).await {
            auth::owned(caller.as_ref(), existing.owner(), &input.run_id)?;
            if existing.info().status == RunStatus::Running {
                return Err(ServerError::RunExists {
                    run_id: input.run_id,
                });
            }
        }
        self.start_new(input, stop_when_unread, enqueue, caller)
            .await
    }

    /// [`start_as`](Self::start_as) for a run id known to be free.
    async fn start_new(
        &self,
        input: RunAgentInput,
        stop_when_unread: bool,
        enqueue: bool,
        caller: Option<Principal>,
    ) -> Result<Arc<RunLog>, ServerError> {
        let paused_run = self
            .threads
            .paused(&input.thread_id)
            .await
            .map_err(ServerError::Threads)?;
        let paused = match &paused_run {
            Some(run_id) => self
                .store
                .get(run_id, None)
                .await?
                .map(|c| {
                    let owner = c.env.principal.as_ref().map(|p| p.id.clone());
                    auth::owned(caller.as_ref(), owner.as_deref(), run_id)?;
                    Ok::<_, ServerError>(c.env.interrupt.map(|i| (run_id.clone(), *i)))
                })
                .transpose()?
                .flatten(),
            None => None,
        };
        let start = plan::start(&input, paused.as_ref().map(|(id, i)| (id.as_str(), i)))?;
        #[cfg(feature = "redis")]
        if let (Some((queue, machine)), plan::Start::Fresh, true) = (&self.queue, &start, enqueue) {
            return self.enqueue(queue.clone(), machine, input, caller).await;
        }
        #[cfg(not(feature = "redis"))]
        let _ = enqueue;
        let machine = (self.agent)(&input, caller.as_ref())
            .with_store(Arc::clone(&self.store))
            .with_background(self.background.clone())
            .snapshots(true);
        let env = match caller.clone() {
            Some(principal) => input.env().with_principal(principal),
            None => input.env(),
        };
        let events = match start {
            plan::Start::Fresh => machine.stream_as(input.run_id.clone(), env),
            plan::Start::Resume { run_id, response } => {
                machine.resume_with(&run_id, response).await?
            }
        };
        let owner = caller.map(|p| p.id);
        let (translator, log) = self.open(&input, stop_when_unread, Driver::Here, owner);
        let span = tracing::info_span!("statewise.agui_run", thread_id = %input.thread_id, run_id = %input.run_id);
        // In the request's span, with the caller's subscriber (a scoped
        // one, too): the run's spans join the request's trace.
        tokio::spawn(
            self.clone()
                .drive(Arc::clone(&log), events, translator, input.thread_id)
                .instrument(span)
                .with_current_subscriber(),
        );
        Ok(log)
    }

    /// A run's translator, and its log, registered under its run id.
    fn open(
        &self,
        input: &RunAgentInput,
        stop_when_unread: bool,
        driver: Driver,
        owner: Option<String>,
    ) -> (Translator, Arc<RunLog>) {
        let translator = Translator::new(&input.thread_id, &input.run_id)
            .known_calls(input.tool_call_ids())
            .with_state(input.state.clone().filter(|s| !s.is_null()));
        let log = Arc::new(
            RunLog::new(
                input.run_id.clone(),
                input.thread_id.clone(),
                stop_when_unread,
                driver,
                self.max_events,
            )
            .owned_by(owner),
        );
        locked(&self.shared.runs).insert(input.run_id.clone(), Arc::clone(&log));
        (translator, log)
    }

    /// Moves a run's events into its log until it ends or is cancelled.
    async fn drive(
        self,
        log: Arc<RunLog>,
        mut events: crate::machine::EventStream,
        mut translator: Translator,
        thread_id: String,
    ) {
        let mut out = vec![translator.start()];
        self.record(&log, out.drain(..), None).await;
        let cancelled = log.cancelled().clone();
        while !translator.ended() {
            tokio::select! {
                biased;
                () = cancelled.cancelled() => translator.cancel(&mut out),
                event = events.next() => match event {
                    Some(event) => {
                        match &event.kind {
                            EventKind::Interrupted(output) => {
                                self.set_paused(&thread_id, Some(&output.run_id)).await;
                            }
                            EventKind::Finished(_) | EventKind::Failed(_) => {
                                self.set_paused(&thread_id, None).await;
                            }
                            _ => {}
                        }
                        translator.push(&event, &mut out);
                    }
                    None => translator.cut(&mut out),
                },
            }
            let status = out.last().and_then(status_of);
            self.record(&log, out.drain(..), status).await;
        }
        // Dropping the machine's stream stops a cancelled run's work.
        drop(events);
        self.forget_later(log);
    }

    /// Records the run `thread_id` is paused in; a failure is logged (the
    /// run goes on, and a resume of the thread then says it has nothing to
    /// resume).
    async fn set_paused(&self, thread_id: &str, run_id: Option<&str>) {
        if let Err(e) = self.threads.set_paused(thread_id, run_id).await {
            tracing::error!(thread_id, error = %e, "recording the thread's paused run failed");
        }
    }

    /// Submits a new run to the Redis queue, and follows its events.
    #[cfg(feature = "redis")]
    async fn enqueue(
        &self,
        queue: crate::worker::RunQueue,
        machine: &str,
        input: RunAgentInput,
        caller: Option<Principal>,
    ) -> Result<Arc<RunLog>, ServerError> {
        let span = tracing::info_span!("statewise.agui_run", thread_id = %input.thread_id, run_id = %input.run_id);
        let owner = caller.as_ref().map(|p| p.id.clone());
        let env = match caller {
            Some(principal) => input.env().with_principal(principal),
            None => input.env(),
        };
        // In the request's span: the queue entry carries its trace.
        queue
            .submit(machine, &input.run_id, &env)
            .instrument(span.clone())
            .await?;
        let (translator, log) = self.open(&input, false, Driver::Queue, owner);
        tokio::spawn(
            self.clone()
                .follow(Arc::clone(&log), queue, translator, input.thread_id)
                .instrument(span)
                .with_current_subscriber(),
        );
        Ok(log)
    }

    /// Moves the events a queue worker streams for a run into its log.
    #[cfg(feature = "redis")]
    async fn follow(
        self,
        log: Arc<RunLog>,
        queue: crate::worker::RunQueue,
        mut translator: Translator,
        thread_id: String,
    ) {
        let mut out = vec![translator.start()];
        self.record(&log, out.drain(..), None).await;
        let run_id = log.run_id().to_owned();
        let mut events = std::pin::pin!(queue.events(&run_id));
        while !translator.ended() {
            match events.next().await {
                Some(Ok(event)) => {
                    match event["type"].as_str() {
                        Some("interrupted") => self.set_paused(&thread_id, Some(&run_id)).await,
                        Some("finished" | "failed") => self.set_paused(&thread_id, None).await,
                        _ => {}
                    }
                    if let Err(e) = translator.push_json(&event, &mut out) {
                        tracing::warn!(run_id = %run_id, error = %e, "an event from the queue could not be read; skipped");
                    }
                }
                Some(Err(e)) => {
                    tracing::error!(run_id = %run_id, error = %e, "the queue's events could not be read");
                    translator.cut(&mut out);
                }
                None => translator.cut(&mut out),
            }
            let status = out.last().and_then(status_of);
            self.record(&log, out.drain(..), status).await;
        }
        self.forget_later(log);
    }

    /// Forgets an ended run once it has been kept long enough.
    fn forget_later(&self, log: Arc<RunLog>) {
        let (shared, run_id, keep) = (
            Arc::clone(&self.shared),
            log.run_id().to_owned(),
            self.keep_ended,
        );
        tokio::spawn(async move {
            tokio::time::sleep(keep).await;
            let mut runs = locked(&shared.runs);
            if runs.get(&run_id).is_some_and(|l| Arc::ptr_eq(l, &log)) {
                runs.remove(&run_id);
            }
        });
    }
}

/// The status a run's last event sets.
fn status_of(event: &AgUiEvent) -> Option<RunStatus> {
    match event {
        AgUiEvent::RunError { .. } => Some(RunStatus::Failed),
        AgUiEvent::RunFinished { outcome, .. } => Some(match outcome {
            Some(RunFinishedOutcome::Cancelled) => RunStatus::Cancelled,
            Some(RunFinishedOutcome::Interrupt { .. }) => RunStatus::Interrupted,
            Some(RunFinishedOutcome::Success {
                pending_tool_call_ids,
            }) if !pending_tool_call_ids.is_empty() => RunStatus::Interrupted,
            _ => RunStatus::Finished,
        }),
        _ => None,
    }
}
