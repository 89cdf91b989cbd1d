//! GitHub Actions OIDC federation: the job's ID token exchanged at Entra, so a workflow needs no
//! secret (what the `azure/login` action does with `client-id` and `tenant-id`).
//!
//! A job with `permissions: id-token: write` gets `ACTIONS_ID_TOKEN_REQUEST_URL` and
//! `ACTIONS_ID_TOKEN_REQUEST_TOKEN`. A GET of that URL with `&audience=api://AzureADTokenExchange`
//! (the cloud's token-exchange audience) and the request token as the bearer answers
//! `{"value": "<ID token>"}`; the ID token is the client assertion for the app registration named
//! by `AZURE_CLIENT_ID` in `AZURE_TENANT_ID`, whose federated credential trusts the repository.
//! Both tokens are secrets.

use reqwest::Method;

use super::entra::{self, EntraApp};
use super::env::Env;
use super::federated::{CiIdToken, FederatedSource, IdTokenRequest, Platform};
use super::retry::RetrySchedule;
use super::{AuthConfig, AuthError};
use crate::http::{parse_secure_url, HttpClients};
use crate::secret::Secret;

const NAME: &str = "github-actions";
pub(crate) const URL_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
pub(crate) const TOKEN_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

/// Tokens for a GitHub Actions job.
pub type GithubActionsSource = FederatedSource<CiIdToken<GithubActions>>;

/// The platform whose ID token is the assertion.
#[derive(Debug)]
pub struct GithubActions;

impl Platform for GithubActions {
    const NAME: &'static str = NAME;
}

impl GithubActionsSource {
    /// Validates the configuration; sends nothing. Missing values are [`AuthError::Unavailable`],
    /// listed together.
    pub fn new(cfg: &AuthConfig, http: &HttpClients, env: &Env) -> Result<Self, AuthError> {
        let url = env.get(URL_VAR);
        let token = env.get(TOKEN_VAR);
        let tenant = entra::tenant(cfg, env);
        let client_id = entra::client_id(cfg, env);
        let (url, token, tenant, client_id) = match (url, token, tenant, client_id) {
            (Some(u), Some(k), Some(t), Some(c)) => (u, k, t, c),
            (url, token, tenant, client_id) => {
                return Err(entra::missing(
                    NAME,
                    &[
                        (url.is_none() || token.is_none()).then_some(
                            "the job's ID token request (ACTIONS_ID_TOKEN_REQUEST_URL and \
                             ACTIONS_ID_TOKEN_REQUEST_TOKEN: give the job `permissions: \
                             id-token: write`)",
                        ),
                        tenant.is_none().then_some("tenant id (AZURE_TENANT_ID)"),
                        client_id.is_none().then_some("client id (AZURE_CLIENT_ID)"),
                    ],
                ))
            }
        };
        let mut url = parse_secure_url("ACTIONS_ID_TOKEN_REQUEST_URL", &url)
            .map_err(|e| AuthError::Config(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("audience", cfg.cloud.token_exchange_audience());
        let app = EntraApp::new(NAME, cfg, http, env, &tenant, client_id)?;
        let request = IdTokenRequest {
            source_name: NAME,
            http: http.remote.clone(),
            method: Method::GET,
            url,
            bearer: Secret::new(token.trim()),
            field: "value",
            what: "GitHub's ID token endpoint",
            refused_hint: "the job needs `permissions: id-token: write`",
            retry: RetrySchedule::ENTRA,
        };
        Ok(FederatedSource::from_parts(app, CiIdToken::new(request)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::{fast_retry, pairs, serve, Recorded};
    use crate::auth::TokenSource;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const REQUEST_TOKEN: &str = "gh-request-token-secret";
    const ID_TOKEN: &str = "gh-id-token-jwt";

    fn http() -> HttpClients {
        HttpClients::new(Duration::from_secs(5)).unwrap()
    }

    /// GitHub's ID-token endpoint and Entra on one fake; GitHub answers `github` in turn.
    async fn fake(github: Vec<(u16, &'static str)>) -> (String, Recorded, Recorded) {
        let (gh, entra) = (Recorded::default(), Recorded::default());
        let (g, e) = (gh.clone(), entra.clone());
        let calls = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .route(
                "/_apis/token",
                get(move |headers: HeaderMap, uri: axum::http::Uri| {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = github[n.min(github.len() - 1)];
                    g.push(headers, pairs(uri.query().unwrap_or_default()));
                    async move { (StatusCode::from_u16(status).unwrap(), body) }
                }),
            )
            .route(
                &format!("/{TENANT}/oauth2/v2.0/token"),
                post(move |headers: HeaderMap, form: String| {
                    e.push(headers, pairs(&form));
                    async { r#"{"token_type":"Bearer","expires_in":3599,"access_token":"tok-gh"}"# }
                }),
            );
        (serve(app).await, gh, entra)
    }

    fn env(base: &str) -> Env {
        Env::from_pairs([
            (URL_VAR, format!("{base}/_apis/token?api-version=2.0")),
            (TOKEN_VAR, REQUEST_TOKEN.into()),
            ("AZURE_CLIENT_ID", "gh-app".into()),
            ("AZURE_TENANT_ID", TENANT.into()),
            ("AZURE_AUTHORITY_HOST", format!("{base}/")),
        ])
    }

    #[tokio::test]
    async fn asks_github_for_the_id_token_and_exchanges_it() {
        let body = r#"{"count":1,"value":"gh-id-token-jwt"}"#;
        let (base, gh, entra) = fake(vec![(500, "busy"), (200, body)]).await;
        let src = GithubActionsSource::new(&AuthConfig::default(), &http(), &env(&base))
            .unwrap()
            .with_retry(fast_retry());
        assert_eq!(src.name(), "github-actions");
        assert_eq!(src.fetch().await.unwrap().token.expose(), "tok-gh");
        let asked = gh.all();
        assert_eq!(asked.len(), 2, "the 500 was retried");
        let (headers, query) = &asked[1];
        assert_eq!(
            headers.get("authorization").unwrap(),
            &format!("Bearer {REQUEST_TOKEN}")
        );
        assert_eq!(query["api-version"], "2.0");
        assert_eq!(query["audience"], "api://AzureADTokenExchange");
        let (_, form) = entra.only();
        assert_eq!(form["client_id"], "gh-app");
        assert_eq!(form["client_assertion"], ID_TOKEN);
        assert_eq!(form["client_assertion_type"], entra::JWT_BEARER);
        assert_eq!(form["grant_type"], "client_credentials");
    }

    #[tokio::test]
    async fn a_refusal_says_what_to_fix_and_leaks_no_token() {
        let body = r#"{"message":"Unauthorized gh-request-token-secret"}"#;
        let (base, gh, entra) = fake(vec![(401, body)]).await;
        let cfg = AuthConfig {
            cloud: crate::auth::Cloud::UsGov,
            ..Default::default()
        };
        let src = GithubActionsSource::new(&cfg, &http(), &env(&base))
            .unwrap()
            .with_retry(fast_retry());
        let err = src.fetch().await.unwrap_err();
        let text = format!("{err} {err:?} {src:?}");
        assert!(text.contains("id-token: write"), "{text}");
        assert!(!text.contains(REQUEST_TOKEN), "{text}");
        assert_eq!(gh.count(), 1, "a 401 is not retried");
        assert_eq!(gh.only().1["audience"], "api://AzureADTokenExchangeUSGov");
        assert_eq!(entra.count(), 0);
    }

    #[test]
    fn missing_values_are_listed_and_plain_http_refused() {
        let err = GithubActionsSource::new(
            &AuthConfig::default(),
            &http(),
            &Env::from_pairs([(URL_VAR, "https://x/y")]),
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::Unavailable { .. }), "{err:?}");
        let text = err.to_string();
        for want in ["id-token: write", "AZURE_TENANT_ID", "AZURE_CLIENT_ID"] {
            assert!(text.contains(want), "{text}");
        }
        let err = GithubActionsSource::new(
            &AuthConfig::default(),
            &http(),
            &Env::from_pairs([
                (URL_VAR, "http://token.example.com/x"),
                (TOKEN_VAR, "t"),
                ("AZURE_CLIENT_ID", "c"),
                ("AZURE_TENANT_ID", "t"),
            ]),
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::Config(_)), "{err:?}");
    }
}
