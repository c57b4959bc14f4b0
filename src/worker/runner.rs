//! [`Worker`]: claims queued runs, runs them under a fenced claim, records
//! their outcomes and acknowledges them.
//!
//! The claim loop never drops a read it sent (a dropped XREADGROUP reply
//! would strand its entries until their lease ran out), so it blocks for at
//! most half a second at a time and checks for shutdown between reads;
//! leases are renewed by a task of their own.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use redis::streams::StreamId;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::instrument::WithSubscriber;
use tracing::Instrument;

use super::children::QueueDispatch;
use super::decide::{dead_error, disposition, is_poison, Disposition, Ended};
use super::delivery::{open, Delivery, Opened};
use super::keys::Keys;
use super::protocol::{Consumer, DeadLetterArgs, Fence, TakenOver};
use super::stats::WorkerStats;
use super::{Outcome, OutcomeStatus, QueueError};
use crate::backend::BackendError;
use crate::machine::event::{Event, EventKind};
use crate::machine::Machine;
use crate::metric;
use crate::store::RedisStore;

/// A run a worker holds, as its lease renewal sees it.
struct Lease {
    run_id: String,
    token: u64,
    /// Fired when the lease is lost: the run stops.
    lost: CancellationToken,
}

type Leases = Arc<Mutex<HashMap<String, Lease>>>;

/// Runs queued runs of the machines it knows: claims them from the queue
/// (new ones, and those whose worker stopped renewing its lease), runs each
/// under a fenced claim with the Redis store and tool journal, records the
/// outcome once and acknowledges.
///
/// Run as many workers as you like, in as many processes; give them all
/// the same machines under the same names.
pub struct Worker {
    consumer: Consumer,
    store: RedisStore,
    machines: BTreeMap<String, Machine>,
    concurrency: usize,
    lease: Duration,
    max_deliveries: u64,
    /// Whether completed tool calls are journaled in the store.
    journal: bool,
    /// Whether forks' branches go on the queue as child runs.
    fork_out: bool,
    stats: Arc<WorkerStats>,
    /// Where the last scan for lapsed leases stopped, and when the next
    /// is due.
    reclaim: Mutex<(String, tokio::time::Instant)>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.consumer.id)
            .field("machines", &self.machines.keys().collect::<Vec<_>>())
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .field("max_deliveries", &self.max_deliveries)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker on the queue at `url`, under the key prefix `statewise`,
    /// with a generated id, 8 runs at a time, a 30 s lease and at most 5
    /// deliveries per run. Connects when it runs.
    pub fn new(url: &str) -> Result<Self, QueueError> {
        Ok(Worker {
            consumer: Consumer::new(
                url,
                Keys::new("statewise"),
                format!("worker-{}-{:08x}", std::process::id(), fastrand::u32(..)),
            )?,
            store: RedisStore::open(url)?,
            machines: BTreeMap::new(),
            concurrency: 8,
            lease: Duration::from_secs(30),
            max_deliveries: 5,
            journal: true,
            fork_out: true,
            stats: Arc::default(),
            reclaim: Mutex::new(("0-0".to_owned(), tokio::time::Instant::now())),
        })
    }

    /// Starts every key with `prefix` instead of `statewise` (the same as
    /// the [`RunQueue`](super::RunQueue)'s).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.consumer.keys = Keys::new(prefix);
        self.store = self.store.with_prefix(prefix);
        self
    }

    /// Runs submitted for `name` on `machine` (its store, and its journal
    /// unless [`journal`](Self::journal) is off, are replaced by the
    /// worker's).
    pub fn machine(mut self, name: impl Into<String>, machine: Machine) -> Self {
        self.machines.insert(name.into(), machine);
        self
    }

    /// Runs at most `runs` at once (at least 1).
    pub fn concurrency(mut self, runs: usize) -> Self {
        self.concurrency = runs.max(1);
        self
    }

    /// How long a run may go without its worker renewing the claim before
    /// another worker may take it over (at least 300 ms; workers look for
    /// such runs every half lease). The worker renews every third of it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(300));
        self
    }

    /// Sends a run to the dead-letter stream instead of delivering it a
    /// `(deliveries + 1)`th time.
    pub fn max_deliveries(mut self, deliveries: u64) -> Self {
        self.max_deliveries = deliveries.max(1);
        self
    }

    /// Whether each completed tool call is journaled in the store, under
    /// the run's claim (default yes): a run taken over after a crash then
    /// answers the calls its last step had completed from the journal
    /// instead of making them again. Off, the machine keeps the journal it
    /// has (none unless given one), and a crashed worker's last step runs
    /// its tools again: for tools idempotent by themselves, or to see what
    /// the journal prevents.
    pub fn journal(mut self, on: bool) -> Self {
        self.journal = on;
        self
    }

    /// Whether a run's fork branches go on the queue as child runs of
    /// their own (default yes): the forking run gives its slot back while
    /// it waits and is queued again when the last child ends. Off, a
    /// worker runs a fork's branches itself, in the run's slot.
    pub fn fork_out(mut self, on: bool) -> Self {
        self.fork_out = on;
        self
    }

    /// Names this worker `id` in the consumer group and in the outcomes it
    /// records (default: `worker-<pid>-<random>`).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.consumer.id = id.into();
        self
    }

    /// The worker's id.
    pub fn id(&self) -> &str {
        &self.consumer.id
    }

    /// What it has done so far.
    pub fn stats(&self) -> Arc<WorkerStats> {
        Arc::clone(&self.stats)
    }

    /// Claims and runs queued runs until `shutdown` fires, then finishes
    /// the runs it holds and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), QueueError> {
        self.consumer.ensure_group().await?;
        let worker = Arc::new(self);
        let leases: Leases = Arc::default();
        let stop_renewing = CancellationToken::new();
        // Spawned work logs where the worker's caller does (a scoped
        // subscriber too, not only the global one).
        let renewer = tokio::spawn(
            Arc::clone(&worker)
                .renew_leases(Arc::clone(&leases), stop_renewing.clone())
                .with_current_subscriber(),
        );
        let mut tasks = JoinSet::new();
        while !shutdown.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            let free = worker.concurrency.saturating_sub(tasks.len());
            if free == 0 {
                tokio::select! {
                    _ = tasks.join_next() => {}
                    () = shutdown.cancelled() => {}
                }
                continue;
            }
            match worker.claim(free).await {
                Ok(deliveries) => {
                    for delivery in deliveries {
                        let work = Arc::clone(&worker).work(delivery, Arc::clone(&leases));
                        tasks.spawn(work.with_current_subscriber());
                    }
                }
                Err(e) => {
                    tracing::warn!(worker = %worker.consumer.id, error = %e, "claiming runs failed; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        while tasks.join_next().await.is_some() {}
        stop_renewing.cancel();
        renewer.await.ok();
        Ok(())
    }

    /// Up to `count` deliveries: runs whose lease ran out first, else new
    /// ones (waiting up to half a second for some).
    async fn claim(&self, count: usize) -> Result<Vec<Delivery>, BackendError> {
        let due = {
            let reclaim = self.reclaim.lock().unwrap_or_else(|p| p.into_inner());
            tokio::time::Instant::now() >= reclaim.1
        };
        if due {
            let taken = self.reclaim(count).await?;
            if !taken.is_empty() {
                return Ok(taken);
            }
        }
        let mut out = Vec::new();
        for entry in self.consumer.read_new(count).await? {
            self.stats.claimed.fetch_add(1, Ordering::Relaxed);
            metric::queue_claims("new", 1);
            if let Some(d) = self.delivery(entry, 1).await? {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Up to `count` runs whose lease lapsed (`XAUTOCLAIM`). A full scan
    /// that found none is not repeated for half a lease: a lapsed lease is
    /// taken over within one and a half leases.
    async fn reclaim(&self, count: usize) -> Result<Vec<Delivery>, BackendError> {
        let cursor = self
            .reclaim
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone();
        let idle = self.lease.as_millis() as u64;
        let TakenOver { reply, depth } = self.consumer.take_over(idle, &cursor, count).await?;
        metric::queue_depth(depth);
        metric::queue_claims("reclaimed", reply.claimed.len() as u64);
        {
            let mut reclaim = self.reclaim.lock().unwrap_or_else(|p| p.into_inner());
            if reply.claimed.is_empty() && reply.next_stream_id == "0-0" {
                reclaim.1 = tokio::time::Instant::now() + self.lease / 2;
            }
            reclaim.0 = reply.next_stream_id;
        }
        // Entries deleted while pending (their run was recorded): forget them.
        for entry in &reply.deleted_ids {
            self.consumer.ack(entry).await?;
        }
        let mut out = Vec::new();
        for entry in reply.claimed {
            let deliveries = self.consumer.deliveries(&entry.id).await?;
            self.stats.reclaimed.fetch_add(1, Ordering::Relaxed);
            if let Some(d) = self.delivery(entry, deliveries).await? {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// The delivery an entry describes; a malformed entry is acknowledged
    /// and dropped (it can never run).
    async fn delivery(
        &self,
        entry: StreamId,
        deliveries: u64,
    ) -> Result<Option<Delivery>, BackendError> {
        let delivery = Delivery::read(&entry, deliveries);
        if delivery.is_none() {
            tracing::warn!(entry = %entry.id, "queue entry without run, machine and env (or a child run that does not read); dropped");
            self.consumer.ack(&entry.id).await?;
        }
        Ok(delivery)
    }

    /// Claims the run (a new fencing token) and runs it; a panic is noted
    /// as the delivery's error and the delivery left for another try.
    async fn work(self: Arc<Self>, delivery: Delivery, leases: Leases) {
        let token = match self.store.claim(&delivery.run_id).await {
            Ok(token) => token,
            Err(e) => {
                // Unacknowledged: delivered again once the lease runs out.
                tracing::warn!(run_id = %delivery.run_id, error = %e, "claiming a run failed");
                self.stats.released.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let lost = CancellationToken::new();
        leases.lock().unwrap_or_else(|p| p.into_inner()).insert(
            delivery.entry.clone(),
            Lease {
                run_id: delivery.run_id.clone(),
                token,
                lost: lost.clone(),
            },
        );
        let ran = AssertUnwindSafe(self.execute(&delivery, token, &lost))
            .catch_unwind()
            .await;
        leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&delivery.entry);
        if let Err(panic) = ran {
            let message = crate::panic::panic_message(&*panic);
            self.release(&delivery.run_id, &format!("the run panicked: {message}"))
                .await;
        }
    }

    async fn execute(&self, d: &Delivery, token: u64, lost: &CancellationToken) {
        if is_poison(d.deliveries, self.max_deliveries) {
            let last = self.consumer.last_error(&d.run_id).await.ok().flatten();
            let error = dead_error(last, d.deliveries);
            let ended = Ended::failed(OutcomeStatus::Dead, "dead", error);
            self.record(d, token, ended).await;
            return;
        }
        let Some(machine) = self.machines.get(&d.machine) else {
            let known: Vec<&str> = self.machines.keys().map(String::as_str).collect();
            let error = format!(
                "no machine `{}` on this worker; it runs: {}",
                d.machine,
                known.join(", ")
            );
            let ended = Ended::failed(OutcomeStatus::Failed, "unknown_machine", error);
            self.record(d, token, ended).await;
            return;
        };
        let store = self.store.fenced(&d.run_id, token);
        let mut machine = machine.clone().with_store(store.clone());
        if self.journal {
            // Fenced too: a worker whose claim was taken over journals no
            // effect as the run's.
            machine = machine.with_journal(store.clone());
        }
        if self.fork_out {
            machine = machine.with_dispatch(QueueDispatch {
                conn: self.consumer.conn.clone(),
                keys: self.consumer.keys.clone(),
                machine: d.machine.clone(),
                trace: d.trace.clone().unwrap_or_default(),
            });
        }
        let events = match open(&machine, d, &store).await {
            Opened::Events(events) => events,
            Opened::Record(ended) => return self.record(d, token, ended).await,
            Opened::Release(why) => return self.release(&d.run_id, &why).await,
        };
        // The run's spans belong to this delivery, in the submitter's trace.
        let span = tracing::info_span!(
            "statewise.job",
            run_id = %d.run_id,
            machine = %d.machine,
            deliveries = d.deliveries,
            traceparent = d.trace.as_deref(),
        );
        #[cfg(feature = "otel")]
        if let Some(trace) = &d.trace {
            crate::otel::continue_trace(&span, trace);
        }
        // The events ready at once (a burst of tokens) go out in one round
        // trip, in order.
        let mut events = std::pin::pin!(events.ready_chunks(256));
        let mut last = None;
        loop {
            let ready = tokio::select! {
                () = lost.cancelled() => {
                    self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                ready = events.next().instrument(span.clone()) => ready,
            };
            let Some(ready) = ready else { break };
            self.publish(&d.run_id, &ready).await;
            for event in ready {
                if matches!(
                    event.kind,
                    EventKind::Finished(_) | EventKind::Failed(_) | EventKind::Interrupted(_)
                ) {
                    last = Some(event.kind);
                }
            }
        }
        match disposition(last.as_ref()) {
            Disposition::Record(ended) => self.record(d, token, ended).await,
            Disposition::Release(why) => self.release(&d.run_id, &why).await,
            Disposition::Abandon => {
                self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
            }
            Disposition::Park(children) => self.park(d, token, &children).await,
        }
    }

    /// Parks a parent until its child runs end, giving its slot back.
    async fn park(&self, d: &Delivery, token: u64, children: &[String]) {
        let fence = Fence {
            key: self.store.fence_key(&d.run_id),
            token,
        };
        let trace = d.trace.as_deref().unwrap_or_default();
        match self
            .consumer
            .park(&fence, &d.run_id, &d.machine, &d.entry, trace, children)
            .await
        {
            Ok(-1) => {
                self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {
                self.stats.parked.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(run_id = %d.run_id, error = %e, "parking a run failed; it will be delivered again");
                self.stats.released.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Appends events to the run's event stream, in one round trip; a
    /// failure only loses them for watchers, not the run.
    async fn publish(&self, run_id: &str, events: &[Event]) {
        let texts: Vec<String> = events
            .iter()
            .filter_map(|e| serde_json::to_string(e).ok())
            .collect();
        if let Err(e) = self.consumer.publish(run_id, &texts).await {
            tracing::warn!(run_id, error = %e, "publishing a run's events failed");
        }
    }

    /// Records the outcome (once, under the current claim) and acknowledges.
    async fn record(&self, d: &Delivery, token: u64, ended: Ended) {
        let Ended {
            status,
            answer,
            error,
            code,
            path,
            usage,
        } = ended;
        let outcome = Outcome {
            run_id: d.run_id.clone(),
            status,
            answer,
            error: error.clone(),
            code,
            worker: self.consumer.id.clone(),
            deliveries: d.deliveries,
            token,
            path,
            usage,
            recorded_ms: crate::backend::now_ms(),
        };
        let Ok(text) = serde_json::to_string(&outcome) else {
            return;
        };
        let dead = status == OutcomeStatus::Dead;
        let error = error.unwrap_or_default();
        let letter = dead.then(|| DeadLetterArgs {
            machine: &d.machine,
            error: &error,
        });
        let fence = Fence {
            key: self.store.fence_key(&d.run_id),
            token,
        };
        let recorded = self
            .consumer
            .finish(
                &fence,
                &d.run_id,
                &d.entry,
                &text,
                letter,
                d.deliveries,
                d.parent(),
            )
            .await;
        match recorded {
            Ok(-1) => {
                self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) if dead => {
                self.stats.dead.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {
                self.stats.recorded.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(run_id = %d.run_id, error = %e, "recording a run's outcome failed; it will be delivered again");
                self.stats.released.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Leaves the delivery unacknowledged for another try, noting why.
    async fn release(&self, run_id: &str, why: &str) {
        tracing::warn!(run_id, why, "leaving a run for another delivery");
        self.stats.released.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.consumer.note_error(run_id, why).await {
            tracing::warn!(run_id, error = %e, "noting a run's error failed");
        }
    }

    /// Renews every lease a third of the lease time apart; a lease found
    /// lost (another worker claimed the run) stops its run.
    async fn renew_leases(self: Arc<Self>, leases: Leases, stop: CancellationToken) {
        let every = self.lease / 3;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let held: Vec<(String, String, u64, CancellationToken)> = leases
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(entry, l)| (entry.clone(), l.run_id.clone(), l.token, l.lost.clone()))
                .collect();
            for (entry, run_id, token, lost) in held {
                let fence = Fence {
                    key: self.store.fence_key(&run_id),
                    token,
                };
                let renewed = self.consumer.renew(&entry, &fence).await;
                match renewed {
                    Ok(1) => {}
                    Ok(_) => {
                        tracing::warn!(
                            run_id,
                            "lease lost: another worker claimed the run; stopping it"
                        );
                        lost.cancel();
                    }
                    Err(e) => tracing::warn!(run_id, error = %e, "renewing a lease failed"),
                }
            }
        }
    }
}
