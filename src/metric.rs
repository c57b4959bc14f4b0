//! Metrics of runs, states, model and tool calls, retries, circuit
//! breakers and the run queue, recorded through the `metrics` facade.
//!
//! A leaf: its functions take names and plain numbers (a model as its
//! provider and id, `semconv::provider_and_model`), so every layer of the
//! engine records without this module knowing its types.
//!
//! The engine only records; the application chooses where metrics go by
//! installing a recorder (Prometheus with [`serve_prometheus`], feature
//! `prometheus`, or any `metrics` exporter). Without one, recording is a
//! no-op. The names below are the Prometheus names; labels are few and
//! bounded (machine, state, provider, model, tool, outcome, kind), never a
//! run id or any content.

use std::time::Duration;

/// Runs that ended, by `machine` and `outcome` (`finished`, `interrupted`,
/// `failed`).
pub const RUNS_TOTAL: &str = "statewise_runs_total";
/// How long a state ran, by `machine` and `state`.
pub const STATE_DURATION_SECONDS: &str = "statewise_state_duration_seconds";
/// How long a model call took, by `provider` and `model`.
pub const MODEL_CALL_DURATION_SECONDS: &str = "statewise_model_call_duration_seconds";
/// Time to a call's first token, by `provider` and `model`.
pub const MODEL_TIME_TO_FIRST_TOKEN_SECONDS: &str = "statewise_model_time_to_first_token_seconds";
/// Model calls that failed, by `provider`, `model` and `error` (its code).
pub const MODEL_ERRORS_TOTAL: &str = "statewise_model_errors_total";
/// Tokens, by `provider`, `model` and `kind` (`input`, `output`,
/// `cache_read`, `cache_creation`).
pub const TOKENS_TOTAL: &str = "statewise_tokens_total";
/// Cost of each priced call in US dollars, by `provider` and `model`; its
/// sum is the total spent.
pub const MODEL_CALL_COST_DOLLARS: &str = "statewise_model_call_cost_dollars";
/// Tool calls, by `tool` and `outcome` (`ok`, or the error's kind).
pub const TOOL_CALLS_TOTAL: &str = "statewise_tool_calls_total";
/// How long a tool call took, by `tool`.
pub const TOOL_CALL_DURATION_SECONDS: &str = "statewise_tool_call_duration_seconds";
/// Model calls made again after a transient failure, by `provider` and
/// `model`.
pub const MODEL_RETRIES_TOTAL: &str = "statewise_model_retries_total";
/// A circuit breaker's state by `provider` and `model`: 0 closed, 1 half
/// open, 2 open.
pub const CIRCUIT_BREAKER_STATE: &str = "statewise_circuit_breaker_state";
/// Runs queued and not yet claimed, as a worker last saw.
pub const QUEUE_DEPTH: &str = "statewise_queue_depth";
/// Runs a worker claimed, by `kind` (`new`, or `reclaimed` from a worker
/// whose lease lapsed).
pub const QUEUE_CLAIMS_TOTAL: &str = "statewise_queue_claims_total";
/// Counter: background tasks that failed, by task name
/// ([`Background`](crate::env::Background)).
pub const BACKGROUND_FAILURES_TOTAL: &str = "statewise_background_failures_total";
/// Guardrails that tripped, by `guardrail`, `stage` (`input`, `output`,
/// `tool_call`, `tool_result`) and `stops` (`true` when the run stopped).
pub const GUARDRAIL_TRIPS_TOTAL: &str = "statewise_guardrail_trips_total";

/// Models a router or cascade asked, by `provider`, `model` and `verdict`
/// (`routed`, `accepted`, `rejected`, `failed`): how often the cheap tier
/// was enough.
pub const ROUTE_STEPS_TOTAL: &str = "statewise_route_steps_total";
/// Tokens of each routed or cascaded model's part of a call, by
/// `provider`, `model` and `kind` (`input`, `output`); a rejected reply's
/// tokens count here too, since they were paid for.
pub const ROUTE_TOKENS_TOTAL: &str = "statewise_route_tokens_total";
/// Cost in US dollars of each routed or cascaded model's part of a call,
/// by `provider`, `model` and `verdict`; its sum is what each tier cost.
pub const ROUTE_STEP_COST_DOLLARS: &str = "statewise_route_step_cost_dollars";

pub(crate) fn route_step(model: (&str, &str), verdict: &'static str, usage: CallUsage) {
    let labels = model_labels(model);
    let mut with_verdict = labels.to_vec();
    with_verdict.push(("verdict", verdict.to_owned()));
    metrics::counter!(ROUTE_STEPS_TOTAL, &with_verdict).increment(1);
    for (kind, tokens) in [("input", usage.input), ("output", usage.output)] {
        if tokens > 0 {
            let mut labels = labels.to_vec();
            labels.push(("kind", kind.to_owned()));
            metrics::counter!(ROUTE_TOKENS_TOTAL, &labels).increment(tokens);
        }
    }
    if usage.cost > 0.0 {
        metrics::histogram!(ROUTE_STEP_COST_DOLLARS, &with_verdict).record(usage.cost);
    }
}

pub(crate) fn run_ended(machine: &str, outcome: &'static str) {
    metrics::counter!(RUNS_TOTAL, "machine" => machine.to_owned(), "outcome" => outcome)
        .increment(1);
}

pub(crate) fn state_ran(machine: &str, state: &str, elapsed: Duration) {
    metrics::histogram!(
        STATE_DURATION_SECONDS,
        "machine" => machine.to_owned(),
        "state" => state.to_owned()
    )
    .record(elapsed);
}

/// A model call's token counts and cost, as plain numbers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CallUsage {
    pub(crate) input: u64,
    pub(crate) output: u64,
    pub(crate) cache_read: u64,
    pub(crate) cache_creation: u64,
    /// US dollars; 0 when the call was not priced.
    pub(crate) cost: f64,
}

pub(crate) fn model_call(
    model: (&str, &str),
    usage: CallUsage,
    elapsed: Duration,
    first: Option<Duration>,
) {
    let labels = model_labels(model);
    metrics::histogram!(MODEL_CALL_DURATION_SECONDS, &labels).record(elapsed);
    if let Some(first) = first {
        metrics::histogram!(MODEL_TIME_TO_FIRST_TOKEN_SECONDS, &labels).record(first);
    }
    for (kind, tokens) in [
        ("input", usage.input),
        ("output", usage.output),
        ("cache_read", usage.cache_read),
        ("cache_creation", usage.cache_creation),
    ] {
        if tokens > 0 {
            let mut labels = labels.to_vec();
            labels.push(("kind", kind.to_owned()));
            metrics::counter!(TOKENS_TOTAL, &labels).increment(tokens);
        }
    }
    if usage.cost > 0.0 {
        metrics::histogram!(MODEL_CALL_COST_DOLLARS, &labels).record(usage.cost);
    }
}

pub(crate) fn model_error(model: (&str, &str), code: String) {
    let [provider, model] = model_labels(model);
    metrics::counter!(MODEL_ERRORS_TOTAL, &[provider, model, ("error", code)]).increment(1);
}

pub(crate) fn tool_call(tool: &str, outcome: &'static str, elapsed: Duration) {
    metrics::counter!(TOOL_CALLS_TOTAL, "tool" => tool.to_owned(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!(TOOL_CALL_DURATION_SECONDS, "tool" => tool.to_owned()).record(elapsed);
}

pub(crate) fn guardrail_tripped(guardrail: &str, stage: &'static str, stops: bool) {
    let stops = if stops { "true" } else { "false" };
    metrics::counter!(GUARDRAIL_TRIPS_TOTAL, "guardrail" => guardrail.to_owned(), "stage" => stage, "stops" => stops)
        .increment(1);
}

pub(crate) fn retry(model: (&str, &str)) {
    metrics::counter!(MODEL_RETRIES_TOTAL, &model_labels(model)).increment(1);
}

pub(crate) fn breaker_state(model: (&str, &str), state: u8) {
    metrics::gauge!(CIRCUIT_BREAKER_STATE, &model_labels(model)).set(f64::from(state));
}

pub(crate) fn background_failed(task: &str) {
    metrics::counter!(BACKGROUND_FAILURES_TOTAL, "task" => task.to_owned()).increment(1);
}

/// The `provider` and `model` labels.
fn model_labels((provider, model): (&str, &str)) -> [(&'static str, String); 2] {
    [
        ("provider", provider.to_owned()),
        ("model", model.to_owned()),
    ]
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn queue_depth(depth: u64) {
    metrics::gauge!(QUEUE_DEPTH).set(depth as f64);
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn queue_claims(kind: &'static str, runs: u64) {
    metrics::counter!(QUEUE_CLAIMS_TOTAL, "kind" => kind).increment(runs);
}

/// Why the Prometheus endpoint could not be started.
#[cfg(feature = "prometheus")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// The listener or the recorder could not be installed.
    #[error("cannot serve Prometheus metrics on {addr}: {message}; is the port free, and no other recorder installed?")]
    Install {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// What the exporter said.
        message: String,
    },
    /// The recorder could not be installed (another one is).
    #[error(
        "cannot install the Prometheus recorder: {message}; is another metrics recorder installed?"
    )]
    Recorder {
        /// What the exporter said.
        message: String,
    },
}

/// The Prometheus builder with duration buckets from 5 ms to 2 min.
#[cfg(feature = "prometheus")]
fn prometheus() -> Result<metrics_exporter_prometheus::PrometheusBuilder, String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    const SECONDS: [f64; 13] = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("seconds".to_owned()), &SECONDS)
        .map_err(|e| e.to_string())
}

/// Installs a Prometheus recorder as the process's metrics recorder and
/// serves its exposition at `http://{addr}/metrics` (any path answers).
/// Call it from within a Tokio runtime, once. The handle renders the same
/// exposition, for another endpoint
/// (the web server's `Server::with_metrics`, say).
#[cfg(feature = "prometheus")]
pub fn serve_prometheus(
    addr: std::net::SocketAddr,
) -> Result<metrics_exporter_prometheus::PrometheusHandle, MetricsError> {
    let install = |message: String| MetricsError::Install { addr, message };
    let (recorder, exporter) = prometheus()
        .map_err(install)?
        .with_http_listener(addr)
        .build()
        .map_err(|e| install(e.to_string()))?;
    let handle = recorder.handle();
    tokio::spawn(exporter);
    metrics::set_global_recorder(recorder).map_err(|e| install(e.to_string()))?;
    describe();
    Ok(handle)
}

/// Installs a Prometheus recorder as the process's metrics recorder,
/// without a listener of its own: the handle renders the exposition for
/// an endpoint of yours (the web server's `/metrics`:
/// `server.with_metrics(move || handle.render())`). A thread runs the
/// recorder's upkeep every 5 s.
#[cfg(feature = "prometheus")]
pub fn install_prometheus() -> Result<metrics_exporter_prometheus::PrometheusHandle, MetricsError> {
    let recorder = |message: String| MetricsError::Recorder { message };
    let handle = prometheus()
        .map_err(recorder)?
        .install_recorder()
        .map_err(|e| recorder(e.to_string()))?;
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("statewise-prometheus-upkeep".to_owned())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(5));
            upkeep.run_upkeep();
        })
        .map_err(|e| recorder(e.to_string()))?;
    describe();
    Ok(handle)
}

/// Help texts for the exposition.
#[cfg(feature = "prometheus")]
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(RUNS_TOTAL, "Runs that ended, by machine and outcome");
    describe_histogram!(
        STATE_DURATION_SECONDS,
        Unit::Seconds,
        "How long a state ran"
    );
    describe_histogram!(
        MODEL_CALL_DURATION_SECONDS,
        Unit::Seconds,
        "How long a model call took"
    );
    describe_histogram!(
        MODEL_TIME_TO_FIRST_TOKEN_SECONDS,
        Unit::Seconds,
        "Time to a model call's first token"
    );
    describe_counter!(MODEL_ERRORS_TOTAL, "Model calls that failed, by error code");
    describe_counter!(TOKENS_TOTAL, "Tokens by model and kind");
    describe_histogram!(
        MODEL_CALL_COST_DOLLARS,
        "Cost of each priced model call in US dollars"
    );
    describe_counter!(TOOL_CALLS_TOTAL, "Tool calls by tool and outcome");
    describe_histogram!(
        TOOL_CALL_DURATION_SECONDS,
        Unit::Seconds,
        "How long a tool call took"
    );
    describe_counter!(
        MODEL_RETRIES_TOTAL,
        "Model calls made again after a transient failure"
    );
    describe_gauge!(
        CIRCUIT_BREAKER_STATE,
        "Circuit breaker state: 0 closed, 1 half open, 2 open"
    );
    describe_gauge!(QUEUE_DEPTH, "Runs queued and not yet claimed");
    describe_counter!(
        ROUTE_STEPS_TOTAL,
        "Models a router or cascade asked, by verdict"
    );
    describe_counter!(
        ROUTE_TOKENS_TOTAL,
        "Tokens of each routed or cascaded model's part of a call"
    );
    describe_histogram!(
        ROUTE_STEP_COST_DOLLARS,
        "Cost of each routed or cascaded model's part of a call in US dollars"
    );
    describe_counter!(
        QUEUE_CLAIMS_TOTAL,
        "Runs claimed by workers, new or reclaimed"
    );
}
