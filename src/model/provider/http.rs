//! What HTTP providers share: endpoints, clients, and turning failed
//! responses into typed errors with credentials redacted.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::model::{ModelError, TimeoutStage};
use crate::redact::{redact, Secret};

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

/// Whether an error answer says the prompt is longer than the context
/// window, with the prompt's and the window's tokens where it says them.
/// The shapes: llama.cpp's server (`exceed_context_size_error` with
/// `n_prompt_tokens` and `n_ctx`), OpenAI (`context_length_exceeded`),
/// vLLM and others copying OpenAI's wording ("maximum context length is N
/// tokens"), Anthropic ("prompt is too long: N tokens > M maximum", its
/// only mark).
pub(crate) fn context_overflow(status: u16, body: &str) -> Option<(Option<u32>, Option<u32>)> {
    if !matches!(status, 400 | 413 | 422) {
        return None;
    }
    let v: Value = serde_json::from_str(body).ok()?;
    let e = v.get("error").filter(|e| e.is_object()).unwrap_or(&v);
    let field = |name: &str| e.get(name).and_then(Value::as_str).unwrap_or_default();
    let number = |name: &str| e.get(name).and_then(Value::as_u64).map(|n| n as u32);
    let message = field("message");
    if field("type") == "exceed_context_size_error" {
        return Some((number("n_prompt_tokens"), number("n_ctx")));
    }
    if field("code") == "context_length_exceeded" || message.contains("maximum context length is") {
        let window = number_after(message, "maximum context length is");
        let prompt =
            number_after(message, "resulted in").or_else(|| number_after(message, "you requested"));
        return Some((prompt, window));
    }
    if let Some(rest) = message.strip_prefix("prompt is too long:") {
        return Some((number_after(rest, ""), number_after(rest, ">")));
    }
    None
}

/// The whole number right after the first `phrase` in `text`.
fn number_after(text: &str, phrase: &str) -> Option<u32> {
    let rest = &text[text.find(phrase)? + phrase.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
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
    if let Some((prompt_tokens, window)) = context_overflow(status.as_u16(), &body) {
        return Err(ModelError::ContextOverflow {
            provider: provider.to_owned(),
            prompt_tokens,
            window,
            message: redact(&error_message(&body), secret),
        });
    }
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

/// The setters every HTTP provider's builder shares, written once: where
/// to connect, with what key and client, and whether to stream. The
/// builder holds an `endpoint: Endpoint` and a `streaming: bool`; the two
/// arguments are the docs that differ by vendor.
macro_rules! endpoint_setters {
    (base_url: $base_doc:literal, from_env: $env_doc:literal $(,)?) => {
        #[doc = $base_doc]
        pub fn base_url(mut self, url: impl Into<String>) -> Self {
            self.endpoint.base_url = Some(url.into());
            self
        }

        /// The API key. It is kept as a [`Secret`](crate::redact::Secret):
        /// never printed in logs, traces or errors.
        pub fn api_key(mut self, key: impl Into<String>) -> Self {
            self.endpoint.key = Some(crate::redact::Secret::new(key));
            self
        }

        #[doc = $env_doc]
        pub fn from_env(mut self) -> Self {
            self.endpoint.from_env = true;
            self
        }

        /// The longest wait for a connection (default 10 s).
        pub fn connect_timeout(mut self, limit: std::time::Duration) -> Self {
            self.endpoint.connect_timeout = Some(limit);
            self
        }

        /// The HTTP client to use (shares its connection pool).
        pub fn client(mut self, client: reqwest::Client) -> Self {
            self.endpoint.client = Some(client);
            self
        }

        /// Streams replies (the default), or asks for them whole.
        pub fn streaming(mut self, on: bool) -> Self {
            self.streaming = on;
            self
        }
    };
}
pub(crate) use endpoint_setters;

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

/// How a vendor takes its key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Auth {
    /// `Authorization: Bearer` (OpenAI and compatible servers).
    Bearer,
    /// `x-api-key` and `anthropic-version` (Anthropic).
    Anthropic(&'static str),
}

/// Where and how a provider reaches its vendor, for the vendor's other
/// endpoints (the Batch APIs): same client, key and errors as its calls.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    pub(crate) provider: &'static str,
    pub(crate) client: reqwest::Client,
    /// The base URL, without a trailing `/`.
    pub(crate) base: String,
    pub(crate) key: Option<Secret>,
    pub(crate) auth: Auth,
    pub(crate) connect_timeout: Duration,
}

impl Api {
    /// A request to `url` carrying the key.
    pub(crate) fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let http = self.client.request(method, url);
        match (&self.key, self.auth) {
            (None, _) => http,
            (Some(key), Auth::Bearer) => http.bearer_auth(key.expose()),
            (Some(key), Auth::Anthropic(version)) => http
                .header("x-api-key", key.expose())
                .header("anthropic-version", version),
        }
    }

    /// Sends what `make` builds; a failure is a typed error, redacted.
    pub(crate) async fn send(
        &self,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ModelError> {
        send(
            make,
            self.provider,
            self.key.as_ref(),
            Some(self.connect_timeout),
        )
        .await
    }

    /// The whole body of `response`; a cut one is a typed error.
    pub(crate) async fn bytes(&self, response: reqwest::Response) -> Result<Bytes, ModelError> {
        response.bytes().await.map_err(|e| ModelError::StreamCut {
            provider: self.provider.to_owned(),
            chunks: 0,
            message: redact(&error_chain(&e), self.key.as_ref()),
        })
    }

    /// Sends what `make` builds and reads the answer as JSON.
    pub(crate) async fn json<T: serde::de::DeserializeOwned>(
        &self,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, ModelError> {
        let body = self.bytes(self.send(make).await?).await?;
        serde_json::from_slice(&body).map_err(|e| ModelError::Protocol {
            provider: self.provider.to_owned(),
            chunks: 0,
            message: redact(
                &format!(
                    "{e} in {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
                self.key.as_ref(),
            ),
        })
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
    fn context_overflow_in_each_providers_words() {
        let llama = r#"{"error":{"code":400,"message":"request (1544 tokens) exceeds the available context size (1024 tokens), try increasing it","type":"exceed_context_size_error","n_prompt_tokens":1544,"n_ctx":1024}}"#;
        assert_eq!(context_overflow(400, llama), Some((Some(1544), Some(1024))));
        let openai = r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130,512 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        assert_eq!(
            context_overflow(400, openai),
            Some((Some(130_512), Some(128_000)))
        );
        let vllm = r#"{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion).","type":"BadRequestError","code":400}"#;
        assert_eq!(context_overflow(400, vllm), Some((Some(5000), Some(4096))));
        let anthropic = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#;
        assert_eq!(
            context_overflow(400, anthropic),
            Some((Some(208_310), Some(200_000)))
        );
        // Other bad requests, and overflow words with another status, are not.
        let bad =
            r#"{"error":{"message":"messages: field required","type":"invalid_request_error"}}"#;
        assert_eq!(context_overflow(400, bad), None);
        assert_eq!(context_overflow(500, llama), None);
        assert_eq!(context_overflow(400, "not json"), None);
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
