//! What HTTP providers share: endpoints, clients, and turning failed
//! responses into typed errors with credentials redacted.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::secret::{redact, Secret};
use super::{ModelError, TimeoutStage};

/// How long a `Retry-After` (seconds or an HTTP date is not parsed; seconds
/// are what model APIs send) or OpenAI's `retry-after-ms` asks to wait.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    get("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0))
        .or_else(|| get("retry-after").map(|s| Duration::from_secs_f64(s.max(0.0))))
}

/// The human part of a provider's error body: `error.message` when it is
/// JSON in the usual shapes, else the text itself, shortened.
pub(crate) fn error_message(body: &str) -> String {
    const MAX: usize = 2000;
    let from_json = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        let e = v.get("error").unwrap_or(&v);
        let message = e
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| e.as_str())?;
        let kind = e
            .get("type")
            .or_else(|| e.get("code"))
            .and_then(Value::as_str);
        Some(match kind {
            Some(kind) => format!("{message} ({kind})"),
            None => message.to_owned(),
        })
    });
    let text = from_json.unwrap_or_else(|| body.trim().to_owned());
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A JSON body serialized once. Sending it again clones a reference, not
/// the bytes, and no copy of the request is held while the reply is awaited.
pub(crate) fn json_body(provider: &str, body: &impl serde::Serialize) -> Result<Bytes, ModelError> {
    let mut bytes = serde_json::to_vec(body).map_err(|e| ModelError::Config {
        provider: provider.to_owned(),
        message: format!("cannot write the request as JSON: {e}"),
    })?;
    // Shrunk: the body lives as long as the call (reqwest keeps it to
    // follow redirects).
    bytes.shrink_to_fit();
    Ok(Bytes::from(bytes))
}

/// Sends the request `make` builds; a transport failure or a non-success
/// status becomes the matching typed error, with credentials redacted.
///
/// `make` is called a second time only when a pooled connection the server
/// had already closed (llama.cpp's server closes every fifth keep-alive
/// request's connection) failed before the server read anything: the
/// request is sent once more, on a new connection.
pub(crate) async fn send(
    make: impl Fn() -> reqwest::RequestBuilder,
    provider: &str,
    secret: Option<&Secret>,
    connect_limit: Option<Duration>,
) -> Result<reqwest::Response, ModelError> {
    let sent = match make().send().await {
        Err(e) if closed_before_response(&e) => make().send().await,
        result => result,
    };
    let response = sent.map_err(|e| match (e.is_timeout(), connect_limit) {
        (true, Some(after)) => ModelError::Timeout {
            model: provider.to_owned(),
            stage: TimeoutStage::Connect,
            after,
            chunks: 0,
        },
        _ => ModelError::Connect {
            provider: provider.to_owned(),
            message: redact(&error_chain(&e), secret),
        },
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    Err(ModelError::Http {
        provider: provider.to_owned(),
        status: status.as_u16(),
        message: redact(&error_message(&body), secret),
        retry_after,
    })
}

/// Whether the connection closed before any of the response arrived.
fn closed_before_response(error: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            return h.is_incomplete_message();
        }
        source = e.source();
    }
    false
}

/// What an HTTP provider's builder collects about where and how to connect.
#[derive(Debug, Clone, Default)]
pub(crate) struct Endpoint {
    pub(crate) base_url: Option<String>,
    pub(crate) key: Option<Secret>,
    pub(crate) from_env: bool,
    pub(crate) client: Option<reqwest::Client>,
    pub(crate) connect_timeout: Option<Duration>,
}

/// An [`Endpoint`] checked and filled in.
pub(crate) struct Resolved {
    pub(crate) base: String,
    pub(crate) key: Option<Secret>,
    pub(crate) client: reqwest::Client,
}

impl Endpoint {
    /// The connect timeout in force.
    pub(crate) fn connect_limit(&self) -> Duration {
        self.connect_timeout.unwrap_or(Duration::from_secs(10))
    }

    /// The base URL and key (what was set, else `url_var` and `key_var`
    /// from the environment when asked to read it, else `default_base`),
    /// and an HTTP client.
    pub(crate) fn resolve(
        &self,
        provider: &str,
        url_var: &str,
        key_var: &str,
        default_base: &str,
    ) -> Result<Resolved, ModelError> {
        let config = |message: String| ModelError::Config {
            provider: provider.to_owned(),
            message,
        };
        let env = |name: &str| {
            self.from_env
                .then(|| std::env::var(name).ok())
                .flatten()
                .filter(|v| !v.trim().is_empty())
        };
        let base = self
            .base_url
            .clone()
            .or_else(|| env(url_var))
            .unwrap_or_else(|| default_base.to_owned());
        let base = base.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base)
            .map_err(|e| config(format!("base URL {base:?} is not a URL: {e}")))?;
        let key = self.key.clone().or_else(|| env(key_var).map(Secret::new));
        let client = match &self.client {
            Some(c) => c.clone(),
            None => reqwest::Client::builder()
                .connect_timeout(self.connect_limit())
                .build()
                .map_err(|e| config(format!("cannot build an HTTP client: {e}")))?,
        };
        Ok(Resolved { base, key, client })
    }
}

/// An error and its sources, on one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_in_the_usual_shapes() {
        assert_eq!(
            error_message(r#"{"error": {"message": "Rate limit", "type": "rate_limit_error"}}"#),
            "Rate limit (rate_limit_error)"
        );
        assert_eq!(
            error_message(
                r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#
            ),
            "Overloaded (overloaded_error)"
        );
        assert_eq!(error_message("  upstream timeout \n"), "upstream timeout");
        assert_eq!(error_message(&"x".repeat(3000)).chars().count(), 2001);
    }

    #[test]
    fn retry_after_in_seconds_or_milliseconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
    }
}
