//! [`Jwt`]: bearer tokens signed by an identity provider (HS256 with a
//! shared secret, RS256 with its public key), mapped to a principal by
//! their `sub` and `scope` claims.
//!
//! The algorithm is the server's choice, never the token's: a token
//! signed any other way (`none`, or HS256 with the RSA public key as its
//! secret) is rejected. Expiry is required and checked.

use axum::http::HeaderMap;
use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::auth::{bearer_token, AuthError, Authenticate};
use crate::guard::Principal;

/// Accepts JWTs signed with one key and algorithm.
///
/// ```
/// use statewise::server::Jwt;
///
/// let jwt = Jwt::hs256(b"a shared secret of enough length")?.audience("statewise");
/// # let _ = jwt;
/// # Ok::<(), statewise::server::JwtKeyError>(())
/// ```
#[derive(Clone)]
pub struct Jwt {
    key: DecodingKey,
    validation: Validation,
}

/// Says which algorithm it takes, never the key.
impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

/// A key that cannot check tokens (an RS256 key that is not a
/// PEM-encoded RSA public key, say).
#[derive(Debug, thiserror::Error)]
#[error("the JWT key cannot be used: {0}")]
pub struct JwtKeyError(String);

/// The claims read: the subject, and its scopes as OAuth's
/// space-separated `scope` or a `scopes` list.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

impl Jwt {
    /// Tokens signed with HS256 and `secret`.
    pub fn hs256(secret: &[u8]) -> Result<Self, JwtKeyError> {
        let key = DecodingKey::from_secret(secret).map_err(|e| JwtKeyError(e.to_string()))?;
        Ok(Jwt {
            key,
            validation: Validation::new(Algorithm::HS256),
        })
    }

    /// Tokens signed with RS256 by the holder of the private key of
    /// `public_pem`.
    pub fn rs256(public_pem: &[u8]) -> Result<Self, JwtKeyError> {
        let key = DecodingKey::from_rsa_pem(public_pem).map_err(|e| JwtKeyError(e.to_string()))?;
        Ok(Jwt {
            key,
            validation: Validation::new(Algorithm::RS256),
        })
    }

    /// Accepts only tokens for audience `aud`.
    pub fn audience(mut self, aud: &str) -> Self {
        self.validation.set_audience(&[aud]);
        self
    }

    /// Accepts only tokens issued by `iss`.
    pub fn issuer(mut self, iss: &str) -> Self {
        self.validation.set_issuer(&[iss]);
        self
    }

    fn principal(&self, token: &str) -> Result<Principal, AuthError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| {
                // Which check failed is the server's to know, not the caller's.
                tracing::info!(error = %e, "a bearer token was rejected");
                AuthError::Rejected
            })?
            .claims;
        let from_scope = claims
            .scope
            .iter()
            .flat_map(|s| s.split_whitespace().map(str::to_owned));
        Ok(Principal::new(claims.sub).with_scopes(from_scope.chain(claims.scopes)))
    }
}

impl Authenticate for Jwt {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> BoxFuture<'a, Result<Principal, AuthError>> {
        let found = match bearer_token(headers) {
            None => Err(AuthError::Missing),
            Some(token) => self.principal(token),
        };
        Box::pin(std::future::ready(found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h
    }

    #[tokio::test]
    async fn an_hs256_token_proves_its_subject_and_scopes() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let jwt = Jwt::hs256(secret).unwrap().audience("statewise");
        let key = |secret: &[u8]| EncodingKey::from_secret(secret).unwrap();
        let sign = |claims: serde_json::Value| {
            encode(&Header::new(Algorithm::HS256), &claims, &key(secret)).unwrap()
        };
        let good = sign(
            json!({"sub": "alice", "scope": "email:send files:read", "aud": "statewise", "exp": now() + 60}),
        );
        let alice = jwt.authenticate(&bearer(&good)).await.unwrap();
        assert_eq!(alice.id, "alice");
        assert!(alice.holds(["email:send", "files:read"]));
        for bad in [
            sign(json!({"sub": "alice", "aud": "statewise", "exp": now() - 3_600})),
            sign(json!({"sub": "alice", "aud": "elsewhere", "exp": now() + 60})),
            sign(json!({"sub": "alice", "aud": "statewise"})),
            encode(
                &Header::new(Algorithm::HS256),
                &json!({"sub": "mallory", "aud": "statewise", "exp": now() + 60}),
                &key(b"another secret of the same size!"),
            )
            .unwrap(),
            format!("{}x", &good[..good.len() - 1]),
        ] {
            assert!(matches!(
                jwt.authenticate(&bearer(&bad)).await,
                Err(AuthError::Rejected)
            ));
        }
        assert!(matches!(
            jwt.authenticate(&HeaderMap::new()).await,
            Err(AuthError::Missing)
        ));
    }

    #[tokio::test]
    async fn an_rs256_token_is_checked_with_the_public_key_only() {
        let private = include_bytes!("../../tests/data/jwt/test-rsa-private.pem");
        let public = include_bytes!("../../tests/data/jwt/test-rsa-public.pem");
        let jwt = Jwt::rs256(public).unwrap();
        let claims = json!({"sub": "svc", "scopes": ["reports:read"], "exp": now() + 60});
        let token = encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_pem(private).unwrap(),
        )
        .unwrap();
        let svc = jwt.authenticate(&bearer(&token)).await.unwrap();
        assert_eq!(
            (svc.id.as_str(), svc.holds(["reports:read"])),
            ("svc", true)
        );
        // The public key used as an HS256 secret does not pass.
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(public).unwrap(),
        )
        .unwrap();
        assert!(jwt.authenticate(&bearer(&forged)).await.is_err());
        assert!(Jwt::rs256(b"not a key").is_err());
    }
}
