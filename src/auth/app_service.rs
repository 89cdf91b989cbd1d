//! Managed identity on App Service, Azure Functions, Container Apps and Azure Automation.
//!
//! The platform sets `IDENTITY_ENDPOINT` (a local URL such as `http://localhost:42356/msi/token`)
//! and `IDENTITY_HEADER` (a rotated GUID that proves the caller runs inside the app: a secret,
//! held as [`Secret`]). One GET `?api-version=2019-08-01&resource=…` with
//! `X-IDENTITY-HEADER`, never through a proxy. `Metadata: true` is sent too, which Automation
//! asks for and App Service ignores. The answer carries `expires_on` (epoch seconds, as a string)
//! and no `expires_in`.

use reqwest::header::{HeaderName, HeaderValue};

use super::env::Env;
use super::imds::UserAssigned;
use super::local_endpoint::{self, LocalEndpoint, Refusal, Reply, SecretHeader, Wording};
use super::retry::{Outcome, RetrySchedule};
use super::{AccessToken, AuthConfig, AuthError, BoxFuture, TokenSource};
use crate::http::HttpClients;
use crate::secret::Secret;
use tokio::time::Instant;

const NAME: &str = "app-service";
const API_VERSION: &str = "2019-08-01";
pub(crate) const ENDPOINT_VAR: &str = "IDENTITY_ENDPOINT";
pub(crate) const HEADER_VAR: &str = "IDENTITY_HEADER";
/// The header that carries `IDENTITY_HEADER`.
const SECRET_HEADER: HeaderName = HeaderName::from_static("x-identity-header");

const WORDING: Wording = Wording {
    unreachable: |endpoint, cause| format!("identity endpoint {endpoint} not reachable: {cause}"),
    send_failed: |endpoint, cause| format!("request to {endpoint} failed: {cause}"),
    read_failed: |cause| format!("reading the answer failed: {cause}"),
};

/// Tokens from the App Service identity endpoint. `Debug` is safe: the header is a [`Secret`].
#[derive(Debug)]
pub struct AppServiceSource {
    /// The full token URL with its query.
    url: reqwest::Url,
    /// The client, with `IDENTITY_ENDPOINT` without a query (for messages).
    endpoint: LocalEndpoint,
    header: Secret,
    identity: Option<UserAssigned>,
}

/// App Service's name for each kind of user-assigned id (not IMDS's).
fn param(id: &UserAssigned) -> &'static str {
    match id {
        UserAssigned::ClientId(_) => "client_id",
        UserAssigned::ObjectId(_) => "principal_id",
        UserAssigned::ResourceId(_) => "mi_res_id",
    }
}

impl AppServiceSource {
    /// Validates the configuration; sends nothing. Uses the no-proxy client.
    ///
    /// Without `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` this is [`AuthError::Unavailable`].
    pub fn new(cfg: &AuthConfig, http: &HttpClients, env: &Env) -> Result<Self, AuthError> {
        let identity = UserAssigned::from_config(cfg)?;
        let (endpoint, header) = match (env.get(ENDPOINT_VAR), env.get(HEADER_VAR)) {
            (Some(e), Some(h)) => (e.trim().to_string(), Secret::new(h.trim())),
            (endpoint, header) => {
                let missing: Vec<&str> = [
                    endpoint.is_none().then_some(ENDPOINT_VAR),
                    header.is_none().then_some(HEADER_VAR),
                ]
                .into_iter()
                .flatten()
                .collect();
                return Err(AuthError::Unavailable {
                    source_name: NAME,
                    reason: format!(
                        "{} not set (not App Service, Functions, Container Apps or Automation)",
                        missing.join(" and ")
                    ),
                });
            }
        };
        secret_header(&header)?;
        let url = local_endpoint::parse_http_url(ENDPOINT_VAR, &endpoint)?;
        let url = local_endpoint::token_url(url, API_VERSION, cfg, identity.as_ref(), param);
        Ok(AppServiceSource {
            url,
            endpoint: LocalEndpoint::new(
                NAME,
                http,
                endpoint,
                &WORDING,
                RetrySchedule::APP_SERVICE,
            ),
            header,
            identity,
        })
    }

    /// Replaces the retry schedule (tests use a short one).
    #[cfg(test)]
    pub fn with_retry(mut self, retry: RetrySchedule) -> Self {
        self.endpoint.set_retry(retry);
        self
    }

    /// The token request, retried. With `probe`, a refused connection on the first try ends it.
    async fn request(
        &self,
        probe: bool,
        deadline: Option<Instant>,
    ) -> Result<AccessToken, AuthError> {
        self.endpoint
            .retried(probe, deadline, |fail_fast| self.attempt(fail_fast))
            .await
    }

    async fn attempt(&self, fail_fast: bool) -> Outcome<AccessToken> {
        let header = match secret_header(&self.header) {
            Ok(value) => SecretHeader {
                name: SECRET_HEADER,
                value,
                secret: self.header.expose(),
            },
            Err(e) => return Outcome::Fail(e),
        };
        match self.endpoint.get(&self.url, Some(header), fail_fast).await {
            Reply::Token(token) => Outcome::Done(token),
            Reply::Refused(refusal) => self.judge(refusal),
            Reply::Stop(outcome) => outcome,
        }
    }

    /// 404, 429 and 5xx are retried, a few times only: a wrong user-assigned id or audience also
    /// shows as a 500 there. (The summary has the header redacted, in case the endpoint echoes
    /// it.)
    fn judge(&self, refusal: Refusal) -> Outcome<AccessToken> {
        let status = refusal.status;
        let summary = refusal.summary;
        match status.as_u16() {
            404 | 429 | 500..=599 => Outcome::Retry {
                error: self.endpoint.failed(format!(
                    "identity endpoint answered HTTP {status} (asked for {}; a wrong \
                     user-assigned id or audience also shows as a 500): {summary}",
                    self.identity_text()
                )),
                after: refusal.after,
            },
            _ => Outcome::Fail(self.endpoint.failed(format!(
                "identity endpoint refused the request (HTTP {status}, asked for {}): {summary}",
                self.identity_text()
            ))),
        }
    }

    fn identity_text(&self) -> String {
        local_endpoint::asked_for(self.identity.as_ref(), param)
    }
}

/// `IDENTITY_HEADER` as a header value, or a configuration error when it cannot be one.
fn secret_header(header: &Secret) -> Result<HeaderValue, AuthError> {
    HeaderValue::from_str(header.expose()).map_err(|_| {
        AuthError::Config(format!(
            "{HEADER_VAR} holds characters an HTTP header cannot carry"
        ))
    })
}

impl TokenSource for AppServiceSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(self.request(false, None))
    }

    fn fetch_by(&self, deadline: Option<Instant>) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(self.request(false, deadline))
    }

    fn probe(&self, deadline: Option<Instant>) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(self.request(true, deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::{fast_retry, pairs, serve, unused_port, Recorded};
    use axum::http::{HeaderMap, StatusCode as AxumStatus};
    use axum::routing::get;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    const HEADER: &str = "7c2d1f1e-hdr-d0n7-l34k";
    const OK_BODY: &str = r#"{"access_token":"tok-app","expires_on":"1906484173","resource":"https://monitor.azure.com","token_type":"Bearer","client_id":"c"}"#;

    fn http() -> HttpClients {
        HttpClients::new(Duration::from_secs(5)).unwrap()
    }

    fn env(endpoint: &str) -> Env {
        Env::from_pairs([(ENDPOINT_VAR, endpoint), (HEADER_VAR, HEADER)])
    }

    fn source(base: &str, cfg: &AuthConfig) -> AppServiceSource {
        AppServiceSource::new(cfg, &http(), &env(&format!("{base}/msi/token")))
            .unwrap()
            .with_retry(fast_retry())
    }

    /// A fake identity endpoint at `/msi/token`, answering with the next scripted (status, body).
    async fn fake(script: Vec<(u16, String)>) -> (String, Recorded) {
        let recorded = Recorded::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let rec = recorded.clone();
        let app = axum::Router::new().route(
            "/msi/token",
            get(move |headers: HeaderMap, uri: axum::http::Uri| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let (status, body) = script[n.min(script.len() - 1)].clone();
                rec.push(headers, pairs(uri.query().unwrap_or_default()));
                async move { (AxumStatus::from_u16(status).unwrap(), body) }
            }),
        );
        (serve(app).await, recorded)
    }

    #[tokio::test]
    async fn request_shape_and_string_expiry() {
        let (base, rec) = fake(vec![(200, OK_BODY.into())]).await;
        let token = source(&base, &AuthConfig::default()).fetch().await.unwrap();
        assert_eq!(token.token.expose(), "tok-app");
        assert_eq!(token.expires_at.as_second(), 1_906_484_173);
        let (headers, query) = rec.only();
        assert_eq!(headers.get("x-identity-header").unwrap(), HEADER);
        assert_eq!(query["api-version"], "2019-08-01");
        assert_eq!(query["resource"], "https://monitor.azure.com");
        assert_eq!(query.len(), 2, "{query:?}");
    }

    #[tokio::test]
    async fn numeric_expiry_is_accepted() {
        let body = r#"{"access_token":"tok-app","expires_on":1906484173,"token_type":"Bearer"}"#;
        let (base, _) = fake(vec![(200, body.into())]).await;
        let token = source(&base, &AuthConfig::default()).fetch().await.unwrap();
        assert_eq!(token.expires_at.as_second(), 1_906_484_173);
    }

    #[tokio::test]
    async fn user_assigned_ids_use_app_service_names() {
        let cases = [
            (
                AuthConfig {
                    client_id: Some("cid".into()),
                    ..Default::default()
                },
                "client_id",
                "cid",
            ),
            (
                AuthConfig {
                    object_id: Some("oid".into()),
                    ..Default::default()
                },
                "principal_id",
                "oid",
            ),
            (
                AuthConfig {
                    resource_id: Some("/subscriptions/s/resourcegroups/r/providers/x".into()),
                    ..Default::default()
                },
                "mi_res_id",
                "/subscriptions/s/resourcegroups/r/providers/x",
            ),
        ];
        for (cfg, param, value) in cases {
            let (base, rec) = fake(vec![(200, OK_BODY.into())]).await;
            source(&base, &cfg).fetch().await.unwrap();
            let (_, query) = rec.only();
            assert_eq!(
                query.get(param).map(String::as_str),
                Some(value),
                "{query:?}"
            );
            assert_eq!(query.len(), 3, "{query:?}");
        }
    }

    #[tokio::test]
    async fn retries_500_and_stops_on_400() {
        let (base, rec) = fake(vec![
            (500, r#"{"statusCode":500,"message":"x"}"#.into()),
            (200, OK_BODY.into()),
        ])
        .await;
        source(&base, &AuthConfig::default()).fetch().await.unwrap();
        assert_eq!(rec.count(), 2);

        let body = r#"{"statusCode":400,"message":"Unable to load the proper Managed Identity."}"#;
        let (base, rec) = fake(vec![(400, body.into())]).await;
        let cfg = AuthConfig {
            client_id: Some("wrong".into()),
            ..Default::default()
        };
        let err = source(&base, &cfg).fetch().await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("Unable to load the proper Managed Identity"),
            "{text}"
        );
        assert!(text.contains("client_id=wrong"), "{text}");
        assert_eq!(rec.count(), 1);
    }

    #[tokio::test]
    async fn the_header_never_reaches_an_error() {
        // A hostile endpoint that echoes the header back in its error.
        let body = format!(r#"{{"message":"bad header {HEADER}"}}"#);
        let (base, _) = fake(vec![(403, body)]).await;
        let src = source(&base, &AuthConfig::default());
        assert!(!format!("{src:?}").contains(HEADER));
        let err = src.fetch().await.unwrap_err();
        assert!(!format!("{err} {err:?}").contains(HEADER), "{err}");
    }

    #[test]
    fn missing_variables_are_named() {
        let err = AppServiceSource::new(
            &AuthConfig::default(),
            &http(),
            &Env::from_pairs([(ENDPOINT_VAR, "http://localhost:1/msi/token")]),
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::Unavailable { .. }), "{err:?}");
        assert!(err.to_string().contains("IDENTITY_HEADER not set"), "{err}");
        assert!(!err.to_string().contains("IDENTITY_ENDPOINT"), "{err}");
    }

    #[tokio::test]
    async fn probe_fails_fast_when_nothing_listens() {
        let base = format!("http://127.0.0.1:{}", unused_port().await);
        let src = AppServiceSource::new(
            &AuthConfig::default(),
            &http(),
            &env(&format!("{base}/msi/token")),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let err = src.probe(None).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(matches!(err, AuthError::Unavailable { .. }), "{err:?}");
        assert!(err.to_string().contains("not reachable"), "{err}");
    }
}
