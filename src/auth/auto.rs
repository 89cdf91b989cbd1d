//! `--auth auto`: try the sources in order and keep the first that yields a token.
//!
//! Order: a service principal's client secret (from the configuration or the `AZURE_*`
//! variables), then the VM's managed identity through IMDS. A source whose prerequisites are
//! missing is skipped without a request; one that is tried and fails is recorded too, so when
//! nothing works the error lists every source with the reason it did not.

use std::sync::Arc;

use super::env::Env;
use super::{AuthConfig, AuthError, ClientSecretSource, ImdsSource, TokenCache, TokenSource};
use crate::http::HttpClients;

type Make = fn(&AuthConfig, &HttpClients, &Env) -> Result<Box<dyn TokenSource>, AuthError>;

/// The candidates, in the order they are tried.
const CANDIDATES: [Make; 2] = [client_secret, imds];

fn client_secret(
    cfg: &AuthConfig,
    http: &HttpClients,
    env: &Env,
) -> Result<Box<dyn TokenSource>, AuthError> {
    Ok(Box::new(ClientSecretSource::new(cfg, http, env)?))
}

fn imds(
    cfg: &AuthConfig,
    http: &HttpClients,
    env: &Env,
) -> Result<Box<dyn TokenSource>, AuthError> {
    Ok(Box::new(ImdsSource::new(cfg, http, env)?))
}

/// Finds the first working source and returns a cache primed with its token.
///
/// A configuration error (two user-assigned ids, a plain-http authority host) stops the search:
/// the user asked for something impossible, and another identity would hide it.
pub(super) async fn resolve(
    cfg: &AuthConfig,
    http: &HttpClients,
    env: &Env,
) -> Result<Arc<TokenCache>, AuthError> {
    let mut reasons = Vec::new();
    for make in CANDIDATES {
        let source = match make(cfg, http, env) {
            Ok(source) => source,
            Err(e @ AuthError::Config(_)) => return Err(e),
            Err(skipped) => {
                tracing::debug!(reason = %skipped, "identity source skipped");
                reasons.push(skipped);
                continue;
            }
        };
        match source.probe().await {
            Ok(token) => {
                let cache = TokenCache::primed(source, token);
                tracing::info!(
                    source = cache.source_name(),
                    principal = cache.principal_id().as_deref().unwrap_or("unknown"),
                    "identity source chosen"
                );
                return Ok(cache);
            }
            Err(e @ AuthError::Config(_)) => return Err(e),
            Err(failed) => {
                // A source that was set up but failed deserves a warning: the next one may be a
                // different identity, with different permissions.
                if matches!(failed, AuthError::Failed { .. }) {
                    tracing::warn!(error = %failed, "identity source failed; trying the next");
                } else {
                    tracing::debug!(reason = %failed, "identity source not available");
                }
                reasons.push(failed);
            }
        }
    }
    Err(AuthError::NoSource(reasons))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::tests::make_jwt;
    use crate::auth::test_support::{serve, unused_port};
    use crate::auth::{build_with_env, AuthMethod};
    use axum::routing::{get, post};
    use std::time::Duration;

    fn http() -> HttpClients {
        HttpClients::new(Duration::from_secs(5)).unwrap()
    }

    fn token_body(oid: &str) -> String {
        let jwt = make_jwt(&serde_json::json!({ "oid": oid }));
        format!(r#"{{"access_token":"{jwt}","expires_in":"3599","token_type":"Bearer"}}"#)
    }

    /// A fake IMDS that always answers with a token for principal `vm-oid`.
    async fn fake_imds() -> String {
        let body = token_body("vm-oid");
        let app = axum::Router::new().route(
            "/metadata/identity/oauth2/token",
            get(move || async move { body }),
        );
        serve(app).await
    }

    /// A fake Entra that answers every token request with `(status, body)`.
    async fn fake_entra(status: u16, body: String) -> String {
        let app = axum::Router::new().route(
            "/tenant-1/oauth2/v2.0/token",
            post(move || async move { (axum::http::StatusCode::from_u16(status).unwrap(), body) }),
        );
        serve(app).await
    }

    fn sp_env(authority: &str, imds: &str) -> Env {
        Env::from_pairs([
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "app-1"),
            ("AZURE_CLIENT_SECRET", "the-secret"),
            ("AZURE_AUTHORITY_HOST", authority),
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", imds),
        ])
    }

    #[tokio::test]
    async fn client_secret_wins_when_configured() {
        let entra = fake_entra(200, token_body("sp-oid")).await;
        let imds = fake_imds().await;
        let cache = build_with_env(&AuthConfig::default(), &http(), &sp_env(&entra, &imds))
            .await
            .unwrap();
        assert_eq!(cache.source_name(), "client-secret");
        assert_eq!(cache.principal_id().as_deref(), Some("sp-oid"));
    }

    #[tokio::test]
    async fn without_a_secret_imds_is_used() {
        let imds = fake_imds().await;
        let env = Env::from_pairs([("AZURE_POD_IDENTITY_AUTHORITY_HOST", imds.as_str())]);
        let cache = build_with_env(&AuthConfig::default(), &http(), &env)
            .await
            .unwrap();
        assert_eq!(cache.source_name(), "managed-identity");
        assert_eq!(cache.principal_id().as_deref(), Some("vm-oid"));
    }

    #[tokio::test]
    async fn a_failing_secret_falls_through_to_imds() {
        let entra = fake_entra(
            401,
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#
                .into(),
        )
        .await;
        let imds = fake_imds().await;
        let cache = build_with_env(&AuthConfig::default(), &http(), &sp_env(&entra, &imds))
            .await
            .unwrap();
        assert_eq!(cache.source_name(), "managed-identity");
    }

    #[tokio::test]
    async fn nothing_works_lists_every_reason() {
        let imds = format!("http://127.0.0.1:{}", unused_port().await);
        let env = Env::from_pairs([("AZURE_POD_IDENTITY_AUTHORITY_HOST", imds.as_str())]);
        let started = std::time::Instant::now();
        let err = build_with_env(&AuthConfig::default(), &http(), &env)
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the probe must fail fast"
        );
        let AuthError::NoSource(reasons) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(reasons.len(), 2);
        let text = err.to_string();
        assert!(text.contains("client-secret: missing tenant id"), "{text}");
        assert!(
            text.contains("managed-identity: IMDS not reachable"),
            "{text}"
        );
        assert!(text.contains("not an Azure VM?"), "{text}");
    }

    #[tokio::test]
    async fn a_config_error_stops_the_search() {
        let cfg = AuthConfig {
            client_id: Some("a".into()),
            object_id: Some("b".into()),
            ..Default::default()
        };
        let err = build_with_env(&cfg, &http(), &Env::from_pairs::<&str, &str>([]))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::Config(_)), "{err:?}");
    }

    #[tokio::test]
    async fn explicit_methods() {
        let env = Env::from_pairs::<&str, &str>([]);
        let cases = [
            (AuthMethod::ManagedIdentity, Some("managed-identity")),
            (AuthMethod::Static, Some("static")),
            (AuthMethod::ClientSecret, None),
            (AuthMethod::Arc, None),
            (AuthMethod::AppService, None),
            (AuthMethod::WorkloadIdentity, None),
            (AuthMethod::ClientCertificate, None),
            (AuthMethod::AzureCli, None),
        ];
        for (method, expected) in cases {
            let cfg = AuthConfig {
                method,
                ..Default::default()
            };
            match (build_with_env(&cfg, &http(), &env).await, expected) {
                (Ok(cache), Some(name)) => assert_eq!(cache.source_name(), name),
                (Err(AuthError::Config(msg)), None) => {
                    if method != AuthMethod::ClientSecret {
                        assert_eq!(
                            msg,
                            format!("auth method {} is not supported yet", method.as_str())
                        );
                    }
                }
                (other, _) => panic!("{method:?}: {other:?}"),
            }
        }
    }
}
