//! A bearer token handed in through `DCRSHIP_ACCESS_TOKEN` (from `az account get-access-token`,
//! a pipeline step, a test). We cannot renew it, only re-read it and refuse it once it expired.

use std::time::Duration;

use super::env::Env;
use super::{jwt, AccessToken, AuthError, BoxFuture, TokenSource};
use crate::secret::Secret;

const NAME: &str = "static";
const VAR: &str = "DCRSHIP_ACCESS_TOKEN";
/// The lifetime assumed for an opaque token: Entra's usual one.
const OPAQUE_LIFETIME: Duration = Duration::from_secs(3600);

/// Reads the token at every fetch. Holds no secret itself.
#[derive(Debug)]
pub struct StaticSource {
    env: Env,
}

impl StaticSource {
    pub fn new(env: &Env) -> Self {
        StaticSource { env: env.clone() }
    }

    fn read(&self) -> Result<AccessToken, AuthError> {
        let Some(raw) = self.env.get(VAR) else {
            return Err(AuthError::Unavailable {
                source_name: NAME,
                reason: format!("{VAR} is not set"),
            });
        };
        // Accept a pasted `Authorization` value too.
        let raw = raw.trim();
        let token = raw
            .strip_prefix("Bearer ")
            .or_else(|| raw.strip_prefix("bearer "))
            .unwrap_or(raw)
            .trim();
        let now = jiff::Timestamp::now();
        let exp = jwt::claim(token, "exp")
            .and_then(|v| v.as_i64())
            .and_then(|secs| jiff::Timestamp::from_second(secs).ok());
        let expires_at = match exp {
            Some(exp) if exp <= now => {
                return Err(AuthError::Failed {
                    source_name: NAME,
                    reason: format!("the token in {VAR} expired at {exp}; get a new one"),
                })
            }
            Some(exp) => exp,
            None => now
                .checked_add(OPAQUE_LIFETIME)
                .map_err(|e| AuthError::Failed {
                    source_name: NAME,
                    reason: format!("cannot compute the expiry: {e}"),
                })?,
        };
        Ok(AccessToken {
            token: Secret::new(token),
            expires_at,
        })
    }
}

impl TokenSource for StaticSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(async move { self.read() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::tests::make_jwt;

    async fn fetch_with(value: Option<&str>) -> Result<AccessToken, AuthError> {
        let env = Env::from_pairs(value.map(|v| (VAR, v)));
        StaticSource::new(&env).fetch().await
    }

    #[tokio::test]
    async fn jwt_expiry_comes_from_exp() {
        let exp = jiff::Timestamp::now().as_second() + 1800;
        let token = make_jwt(&serde_json::json!({ "exp": exp, "oid": "o" }));
        let got = fetch_with(Some(&format!("Bearer {token}"))).await.unwrap();
        assert_eq!(got.token.expose(), token);
        assert_eq!(got.expires_at.as_second(), exp);
    }

    #[tokio::test]
    async fn opaque_token_lives_an_hour() {
        let got = fetch_with(Some("opaque-token")).await.unwrap();
        let left = got
            .expires_at
            .duration_since(jiff::Timestamp::now())
            .as_secs();
        assert!((3590..=3600).contains(&left), "{left}");
    }

    #[tokio::test]
    async fn missing_empty_and_expired() {
        for value in [None, Some(""), Some("   ")] {
            let err = fetch_with(value).await.unwrap_err();
            assert!(matches!(err, AuthError::Unavailable { .. }), "{err:?}");
            assert!(err.to_string().contains(VAR));
        }
        let token = make_jwt(&serde_json::json!({ "exp": 1_000_000_000 }));
        let err = fetch_with(Some(&token)).await.unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        assert!(!err.to_string().contains(&token));
    }
}
