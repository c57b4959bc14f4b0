//! Who is asking: [`Authenticate`] maps a request to a [`Principal`] or a
//! rejection, [`ApiKeys`] is the stock bearer-key check, and a run is
//! answered only to the principal that started it.
//!
//! Key design decision: the server never keeps a key, only its SHA-256
//! digest, and compares a presented key's digest with every stored one in
//! constant time, so neither a leaked configuration nor response timing
//! gives a key away. Everything a request may touch goes through
//! [`Server::caller`] (credentials, then the principal's request limit)
//! and every run it names through [`Server::owned`], so no route can
//! forget either.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::{Server, ServerError};
use crate::guard::Principal;

/// Maps a request's headers to the principal it acts for, or rejects it.
pub trait Authenticate: Send + Sync + std::fmt::Debug {
    /// The principal `headers` prove, or why not.
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> BoxFuture<'a, Result<Principal, AuthError>>;
}

/// Why a request's credentials were not accepted. The message never
/// repeats what was sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// None were sent.
    #[error("this server needs credentials: send `Authorization: Bearer <key>`")]
    Missing,
    /// They were not valid.
    #[error("the credentials sent were not accepted")]
    Rejected,
}

/// API keys, each its own principal, sent as `Authorization: Bearer KEY`
/// (or `X-API-Key: KEY`). Keys are kept as SHA-256 digests and compared in
/// constant time.
///
/// ```
/// use statewise::guard::Principal;
/// use statewise::server::ApiKeys;
///
/// let keys = ApiKeys::new()
///     .key("k-alice-0123456789", Principal::new("alice").with_scopes(["email:send"]))
///     .key("k-bob-0123456789", Principal::new("bob"));
/// assert_eq!(keys.len(), 2);
/// ```
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<([u8; 32], Principal)>,
}

/// Names the principals, never the keys.
impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(_, p)| p.id.as_str()).collect();
        f.debug_struct("ApiKeys").field("principals", &ids).finish()
    }
}

impl ApiKeys {
    /// No keys: every request is rejected.
    pub fn new() -> Self {
        ApiKeys::default()
    }

    /// Accepts `key` as `principal`.
    pub fn key(mut self, key: &str, principal: Principal) -> Self {
        self.keys.push((digest(key), principal));
        self
    }

    /// How many keys are accepted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The principal of `key`, looked at every stored digest whatever
    /// matches, in time that does not depend on where it matches.
    fn principal_of(&self, key: &str) -> Option<&Principal> {
        let presented = digest(key);
        let mut found = None;
        for (stored, principal) in &self.keys {
            let same = stored
                .iter()
                .zip(presented.iter())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0;
            if same {
                found = Some(principal);
            }
        }
        found
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The token of `Authorization: Bearer TOKEN`, or of `X-API-Key: TOKEN`.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

impl Authenticate for ApiKeys {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> BoxFuture<'a, Result<Principal, AuthError>> {
        let found = match bearer_token(headers) {
            None => Err(AuthError::Missing),
            Some(key) => self.principal_of(key).cloned().ok_or(AuthError::Rejected),
        };
        Box::pin(std::future::ready(found))
    }
}

/// How the server lets requests in: who they are, how many, how big, and
/// from which origins browsers may send them.
#[derive(Clone, Debug)]
pub(super) struct Access {
    pub(super) auth: Option<Arc<dyn Authenticate>>,
    limit: Option<Arc<Limiter>>,
    pub(super) max_body: usize,
    pub(super) origins: Vec<String>,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            auth: None,
            limit: None,
            max_body: DEFAULT_MAX_BODY,
            origins: Vec::new(),
        }
    }
}

/// The largest request body accepted by default: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// Requests per principal per minute, counted in fixed windows.
#[derive(Debug)]
struct Limiter {
    per_minute: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Limiter {
    const WINDOW: Duration = Duration::from_secs(60);

    /// Counts a request of `who`: `Err(seconds)` until the next is allowed.
    fn admit(&self, who: &str) -> Result<(), u64> {
        let now = Instant::now();
        // Only counts change under the lock.
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < Self::WINDOW);
        }
        let (start, count) = windows.entry(who.to_owned()).or_insert((now, 0));
        if now.duration_since(*start) >= Self::WINDOW {
            (*start, *count) = (now, 0);
        }
        if *count >= self.per_minute {
            let left = Self::WINDOW.saturating_sub(now.duration_since(*start));
            return Err(left.as_secs().max(1));
        }
        *count += 1;
        Ok(())
    }
}

impl Server {
    /// Lets in only requests `auth` maps to a principal: others get 401.
    /// Each run is then answered only to the principal that started it
    /// (403 for any other, on every route and WebSocket message), and runs
    /// act for it ([`Env::principal`](crate::env::Env::principal)), so the
    /// tools its scopes allow are the only ones offered.
    pub fn with_auth(mut self, auth: impl Authenticate + 'static) -> Self {
        self.access.auth = Some(Arc::new(auth));
        self
    }

    /// Lets each principal (or, without auth, all callers together) send
    /// at most `per_minute` requests a minute; more get 429 with
    /// `Retry-After`.
    pub fn rate_limit(mut self, per_minute: u32) -> Self {
        self.access.limit = Some(Arc::new(Limiter {
            per_minute,
            windows: Mutex::default(),
        }));
        self
    }

    /// Refuses request bodies over `bytes` with 413 (default
    /// [`DEFAULT_MAX_BODY`]).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.access.max_body = bytes;
        self
    }

    /// Lets browser pages from `origins` (`https://app.example.com`) call
    /// the server; by default none may, and only same-origin pages can
    /// read its answers.
    pub fn allow_origins<S: Into<String>>(mut self, origins: impl IntoIterator<Item = S>) -> Self {
        self.access.origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// The principal a request acts for (`None` on a server without
    /// auth), once its credentials and its request limit let it in.
    pub(super) async fn caller(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Principal>, ServerError> {
        let principal = match &self.access.auth {
            Some(auth) => Some(auth.authenticate(headers).await?),
            None => None,
        };
        if let Some(limit) = &self.access.limit {
            let who = principal.as_ref().map_or("", |p| p.id.as_str());
            limit
                .admit(who)
                .map_err(|retry_after_secs| ServerError::TooManyRequests { retry_after_secs })?;
        }
        Ok(principal)
    }
}

/// Whether `caller` may see and act on a run `owner` started: a run
/// started without credentials is anyone's, any other only its owner's.
pub(super) fn owned(
    caller: Option<&Principal>,
    owner: Option<&str>,
    run_id: &str,
) -> Result<(), ServerError> {
    match (caller, owner) {
        (Some(caller), Some(owner)) if caller.id != owner => Err(ServerError::Forbidden {
            run_id: run_id.to_owned(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn a_key_proves_its_principal_and_nothing_else_does() {
        let keys = ApiKeys::new()
            .key("alice-key-0123", Principal::new("alice"))
            .key("bob-key-0123", Principal::new("bob"));
        let alice = keys
            .authenticate(&headers("authorization", "Bearer alice-key-0123"))
            .await
            .unwrap();
        assert_eq!(alice.id, "alice");
        let bob = keys
            .authenticate(&headers("x-api-key", "bob-key-0123"))
            .await
            .unwrap();
        assert_eq!(bob.id, "bob");
        for (name, value) in [
            ("authorization", "Bearer alice-key-0124"),
            ("authorization", "Basic alice-key-0123"),
            ("authorization", "Bearer "),
        ] {
            assert!(keys.authenticate(&headers(name, value)).await.is_err());
        }
        assert!(matches!(
            keys.authenticate(&HeaderMap::new()).await,
            Err(AuthError::Missing)
        ));
        assert!(!format!("{keys:?}").contains("key-0123"));
    }

    #[test]
    fn a_principal_over_its_limit_waits_for_the_next_window() {
        let limiter = Limiter {
            per_minute: 2,
            windows: Mutex::default(),
        };
        assert!(limiter.admit("a").is_ok() && limiter.admit("a").is_ok());
        assert!(matches!(limiter.admit("a"), Err(s) if (1..=60).contains(&s)));
        assert!(limiter.admit("b").is_ok());
    }

    #[test]
    fn only_the_owner_may_touch_an_owned_run() {
        let alice = Principal::new("alice");
        assert!(owned(Some(&alice), Some("alice"), "r").is_ok());
        assert!(matches!(
            owned(Some(&alice), Some("bob"), "r"),
            Err(ServerError::Forbidden { .. })
        ));
        assert!(owned(Some(&alice), None, "r").is_ok());
        assert!(owned(None, Some("bob"), "r").is_ok());
    }
}
