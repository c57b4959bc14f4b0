//! `--log-json` and `--otlp`, shared by the examples.
//!
//! `--log-json`: structured logs on stderr, one JSON object per line,
//! through tracing-subscriber's JSON formatter. Each line carries the
//! current span's fields, and each span's close is a line of its own
//! (`invoke_agent`, `chat`, `execute_tool` with their GenAI attributes and
//! timings). `RUST_LOG` filters them (default `info`).
//!
//! `--otlp` (built with `--features otel`): the spans go to the OTLP/HTTP
//! endpoint `OTEL_EXPORTER_OTLP_ENDPOINT` names (default
//! `http://localhost:4318`), with JSON logs too when `--log-json` is given.
//!
//! Without either flag an example logs nothing.

/// Keeps exporting until dropped (then flushes).
pub struct Telemetry {
    #[cfg(feature = "otel")]
    _otel: Option<statewise::otel::Telemetry>,
}

/// Sets up what the command line asks for; `service` names the program
/// in exported spans.
#[cfg_attr(not(feature = "otel"), allow(unused_variables))]
pub fn init_from_args(service: &str) -> Telemetry {
    let has = |flag: &str| std::env::args().any(|a| a == flag);
    let json = has("--log-json");
    if has("--otlp") {
        #[cfg(feature = "otel")]
        {
            use statewise::otel::LogFormat;
            let logs = if json {
                LogFormat::Json
            } else {
                LogFormat::Off
            };
            match statewise::otel::init(service, logs) {
                Ok(telemetry) => {
                    return Telemetry {
                        _otel: Some(telemetry),
                    }
                }
                Err(e) => eprintln!("--otlp: {e}"),
            }
        }
        #[cfg(not(feature = "otel"))]
        eprintln!("--otlp needs the otel feature: build with --features otel");
    }
    if json {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        tracing_subscriber::fmt()
            .json()
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_current_span(true)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    Telemetry {
        #[cfg(feature = "otel")]
        _otel: None,
    }
}
