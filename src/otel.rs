//! OpenTelemetry export (feature `otel`): the engine's `tracing` spans
//! (`invoke_agent`, `chat`, `execute_tool`, after the GenAI conventions of
//! [`crate::semconv`]) sent to any OTLP/HTTP backend, and W3C trace
//! context carried from one process to another.
//!
//! The spans stay plain `tracing` spans; `tracing-opentelemetry` turns them
//! into OpenTelemetry spans, so an application that already has a
//! subscriber adds one layer ([`layer`]) and one that has none calls
//! [`init`]. Spans leave in batches from the SDK's own thread, with a
//! blocking HTTP client there, so exporting never waits on the runtime
//! the agents run on.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Why telemetry could not be set up or flushed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// The OTLP exporter could not be built (a malformed endpoint).
    #[error("cannot build the OTLP exporter: {message}; check OTEL_EXPORTER_OTLP_ENDPOINT")]
    Exporter {
        /// What the exporter said.
        message: String,
    },
    /// A global subscriber was already installed.
    #[error("a tracing subscriber is already installed; add statewise::otel::layer to it instead of calling init")]
    Subscriber {
        /// What tracing-subscriber said.
        message: String,
    },
    /// Spans could not be flushed at shutdown.
    #[error("flushing spans at shutdown failed: {message}; is the OTLP endpoint reachable?")]
    Shutdown {
        /// What the SDK said.
        message: String,
    },
}

/// How [`init`] writes log lines beside exporting spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines on stderr (the default).
    #[default]
    Text,
    /// One JSON object per line on stderr, for log collectors.
    Json,
    /// No log lines; spans only.
    Off,
}

/// Exported telemetry: flushes what is left when dropped (or at
/// [`shutdown`](Self::shutdown), which says whether it worked).
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// The tracer provider, for spans of your own.
    pub fn provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }

    /// Flushes the spans not sent yet and stops exporting.
    pub fn shutdown(mut self) -> Result<(), OtelError> {
        match self.provider.take() {
            Some(provider) => shutdown(provider),
            None => Ok(()),
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = shutdown(provider) {
                eprintln!("statewise: {e}");
            }
        }
    }
}

/// Shuts `provider` down off the async runtime: its exporter's blocking
/// HTTP client must not be dropped on a runtime thread.
fn shutdown(provider: SdkTracerProvider) -> Result<(), OtelError> {
    std::thread::spawn(move || provider.shutdown())
        .join()
        .map_err(|_| OtelError::Shutdown {
            message: "the shutdown thread panicked".to_owned(),
        })?
        .map_err(|e| OtelError::Shutdown {
            message: e.to_string(),
        })
}

/// A tracer provider exporting to the OTLP/HTTP (protobuf) endpoint that
/// the standard variables name (`OTEL_EXPORTER_OTLP_ENDPOINT`, else
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `http://localhost:4318`),
/// or `endpoint` (the full traces URL, `…/v1/traces`) when given, with
/// `service.name` set to `service`.
pub fn otlp_provider(
    service: &str,
    endpoint: Option<&str>,
) -> Result<SdkTracerProvider, OtelError> {
    let endpoint = endpoint.map(str::to_owned);
    let service = service.to_owned();
    // Built off the runtime, for the blocking client's sake.
    std::thread::spawn(move || {
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
        if let Some(url) = endpoint {
            builder = builder.with_endpoint(url);
        }
        let exporter = builder.build().map_err(|e| OtelError::Exporter {
            message: e.to_string(),
        })?;
        Ok(SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(service).build())
            .build())
    })
    .join()
    .map_err(|_| OtelError::Exporter {
        message: "building the exporter panicked".to_owned(),
    })?
}

/// The layer that sends a subscriber's spans to `provider`, for an
/// application composing its own subscriber.
pub fn layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("statewise"))
}

/// Sets up telemetry in one call: spans to the OTLP/HTTP endpoint from the
/// standard variables ([`otlp_provider`]), log lines in `logs` format on
/// stderr filtered by `RUST_LOG` (default `info`), installed as the global
/// subscriber. Keep the returned value alive; dropping it flushes.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), statewise::otel::OtelError> {
/// let telemetry = statewise::otel::init("my-agent", statewise::otel::LogFormat::Json)?;
/// // ... run machines ...
/// telemetry.shutdown()
/// # }
/// ```
pub fn init(service: &str, logs: LogFormat) -> Result<Telemetry, OtelError> {
    let provider = otlp_provider(service, None)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (text, json) = match logs {
        LogFormat::Text => (
            Some(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            ),
        ),
        LogFormat::Off => (None, None),
    };
    tracing_subscriber::registry()
        .with(layer(&provider))
        .with(text)
        .with(json)
        .with(filter)
        .try_init()
        .map_err(|e| OtelError::Subscriber {
            message: e.to_string(),
        })?;
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// The W3C `traceparent` of the current span, to send with work another
/// process continues; `None` outside any exported span.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` continue the trace `traceparent` names (a W3C header
/// from another process), so its spans join the sender's trace. A
/// malformed value is ignored: the span starts a trace of its own.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    use opentelemetry::trace::TraceContextExt;
    if context.span().span_context().is_valid() {
        // Fails only for a span already started, which a fresh one is not.
        let _ = span.set_parent(context);
    }
}
