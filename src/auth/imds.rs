//! Managed identity on an Azure VM or VM scale set, through the Instance Metadata Service.
//!
//! One GET to `169.254.169.254` with `Metadata: true`, never through a proxy (IMDS refuses
//! proxied requests). IMDS is briefly unavailable while the host updates (404, 410) and throttles
//! (429), so those are retried per Microsoft's guidance: 404, 429 and 5xx on the IMDS schedule
//! (about 1 s doubling, six tries), 410 for at least [`UPDATE_WINDOW`] (75 s, as azure-identity
//! does: a host update lasts up to 70 s); other 4xx mean a wrong request and are not retried.
//!
//! `auto` first asks whether this is Azure's IMDS at all, as MSAL and azure-identity do: a GET
//! without `Metadata: true`, which Azure's IMDS answers at once with 400. Anything else (another
//! cloud's metadata service answering 404, a proxy's page, silence) means this is not an Azure
//! VM, and `auto` moves on within [`PING_TIMEOUT`] instead of retrying for a minute.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::time::Instant;

use super::env::Env;
use super::local_endpoint::{self, LocalEndpoint, Ping, Refusal, Reply, Wording};
use super::retry::{Outcome, RetrySchedule};
use super::{AccessToken, AuthConfig, AuthError, BoxFuture, TokenSource};
use crate::http::HttpClients;

const NAME: &str = "managed-identity";
const DEFAULT_BASE: &str = "http://169.254.169.254";
const API_VERSION: &str = "2018-02-01";
/// How long a 410 ("IMDS is updating") is retried, from the first one.
pub(crate) const UPDATE_WINDOW: Duration = Duration::from_secs(75);
/// How long `auto`'s header-less request to IMDS may take: Azure's answers in milliseconds.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(1);

const WORDING: Wording = Wording {
    unreachable: |base, cause| format!("IMDS not reachable at {base} (not an Azure VM?): {cause}"),
    send_failed: |base, cause| format!("request to IMDS at {base} failed: {cause}"),
    read_failed: |cause| format!("reading the IMDS answer failed: {cause}"),
};

/// A user-assigned identity, named by exactly one of its ids.
// The variants are named for Azure's own keys (`client_id`, `object_id`, `msi_res_id`).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAssigned {
    ClientId(String),
    ObjectId(String),
    /// The identity's ARM resource id.
    ResourceId(String),
}

impl UserAssigned {
    /// Reads the id from the configuration: none means the system-assigned identity.
    pub fn from_config(cfg: &AuthConfig) -> Result<Option<Self>, AuthError> {
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let ids: Vec<UserAssigned> = [
            given(&cfg.client_id).map(UserAssigned::ClientId),
            given(&cfg.object_id).map(UserAssigned::ObjectId),
            given(&cfg.resource_id).map(UserAssigned::ResourceId),
        ]
        .into_iter()
        .flatten()
        .collect();
        match ids.len() {
            0 => Ok(None),
            1 => Ok(ids.into_iter().next()),
            _ => Err(AuthError::Config(format!(
                "a user-assigned managed identity is named by one id, but {} were given ({}); \
                 keep only one of client_id, object_id, resource_id",
                ids.len(),
                ids.iter()
                    .map(|id| id.param())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The IMDS (and Arc) query parameter for this id.
    pub(crate) fn param(&self) -> &'static str {
        match self {
            UserAssigned::ClientId(_) => "client_id",
            UserAssigned::ObjectId(_) => "object_id",
            UserAssigned::ResourceId(_) => "msi_res_id",
        }
    }

    /// The id itself.
    pub(crate) fn value(&self) -> &str {
        match self {
            UserAssigned::ClientId(v) | UserAssigned::ObjectId(v) | UserAssigned::ResourceId(v) => {
                v
            }
        }
    }
}

impl fmt::Display for UserAssigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.param(), self.value())
    }
}

/// Tokens from IMDS. Holds no secret.
#[derive(Debug)]
pub struct ImdsSource {
    /// The full token URL with its query.
    url: reqwest::Url,
    /// The client, with where IMDS is (for messages).
    endpoint: LocalEndpoint,
    identity: Option<UserAssigned>,
}

impl ImdsSource {
    /// Validates the configuration; sends nothing. Uses the no-proxy client.
    pub fn new(cfg: &AuthConfig, http: &HttpClients, env: &Env) -> Result<Self, AuthError> {
        let identity = UserAssigned::from_config(cfg)?;
        // AAD Pod Identity (legacy) points this at its own endpoint.
        let base = env
            .get("AZURE_POD_IDENTITY_AUTHORITY_HOST")
            .unwrap_or_else(|| DEFAULT_BASE.to_string());
        let base = base.trim().trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&format!("{base}/metadata/identity/oauth2/token")).map_err(
            |e| AuthError::Config(format!("IMDS address {base:?} is not a valid URL: {e}")),
        )?;
        let url = local_endpoint::token_url(
            url,
            API_VERSION,
            cfg,
            identity.as_ref(),
            UserAssigned::param,
        );
        Ok(ImdsSource {
            url,
            endpoint: LocalEndpoint::new(NAME, http, base, &WORDING, RetrySchedule::IMDS),
            identity,
        })
    }

    /// Replaces the retry schedule (tests use a short one).
    #[cfg(test)]
    pub fn with_retry(mut self, retry: RetrySchedule) -> Self {
        self.endpoint.set_retry(retry);
        self
    }

    /// The token request, retried within `deadline`.
    async fn request(&self, deadline: Option<Instant>) -> Result<AccessToken, AuthError> {
        self.endpoint
            .retried(false, deadline, |fail_fast| self.attempt(fail_fast))
            .await
    }

    /// `auto`'s question first (is this Azure's IMDS?), then the token request.
    async fn probe(&self, deadline: Option<Instant>) -> Result<AccessToken, AuthError> {
        let timeout = deadline.map_or(PING_TIMEOUT, |d| {
            PING_TIMEOUT.min(d.saturating_duration_since(Instant::now()))
        });
        match self.endpoint.ping(&self.url, timeout).await {
            Ping::Answered(StatusCode::BAD_REQUEST) => self.request(deadline).await,
            Ping::Answered(status) => Err(AuthError::Unavailable {
                source_name: NAME,
                reason: format!(
                    "the metadata service at {} is not Azure's IMDS (not an Azure VM?): asked \
                     without the Metadata header, it answered HTTP {status} where Azure's \
                     answers 400",
                    self.endpoint.endpoint()
                ),
            }),
            Ping::NoAnswer(cause) => Err(AuthError::Unavailable {
                source_name: NAME,
                reason: (WORDING.unreachable)(self.endpoint.endpoint(), &cause),
            }),
        }
    }

    async fn attempt(&self, fail_fast: bool) -> Outcome<AccessToken> {
        match self.endpoint.get(&self.url, None, fail_fast).await {
            Reply::Token(token) => Outcome::Done(token),
            Reply::Refused(refusal) => self.judge(refusal),
            Reply::Stop(outcome) => outcome,
        }
    }

    /// IMDS is briefly away while the host updates (404, 410) and throttles (429): retried. A
    /// missing identity is a 400 worth explaining; other 4xx mean a wrong request.
    fn judge(&self, refusal: Refusal) -> Outcome<AccessToken> {
        let Refusal {
            status,
            after,
            summary,
            ..
        } = refusal;
        match status.as_u16() {
            400 if summary.to_ascii_lowercase().contains("identity not found") => {
                Outcome::Fail(self.endpoint.failed(format!(
                    "no managed identity assigned to this VM, or the user-assigned id is wrong \
                     (asked for {}); IMDS said: {summary}",
                    self.identity_text()
                )))
            }
            404 | 410 | 429 | 500..=599 => transient(
                status,
                self.endpoint
                    .failed(format!("IMDS answered HTTP {status}: {summary}")),
                after,
            ),
            _ => Outcome::Fail(self.endpoint.failed(format!(
                "IMDS refused the request (HTTP {status}, asked for {}): {summary}",
                self.identity_text()
            ))),
        }
    }

    fn identity_text(&self) -> String {
        local_endpoint::asked_for(self.identity.as_ref(), UserAssigned::param)
    }
}

/// A retry outcome for an IMDS-like endpoint (IMDS, the Arc agent): a 410 is retried for the
/// whole [`UPDATE_WINDOW`], the rest on the schedule.
pub(crate) fn transient(
    status: StatusCode,
    error: AuthError,
    after: Option<Duration>,
) -> Outcome<AccessToken> {
    if status == StatusCode::GONE {
        Outcome::RetryFor {
            error,
            after,
            window: UPDATE_WINDOW,
        }
    } else {
        Outcome::Retry { error, after }
    }
}

impl TokenSource for ImdsSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(self.request(None))
    }

    fn fetch_by(&self, deadline: Option<Instant>) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(self.request(deadline))
    }

    fn probe(&self, deadline: Option<Instant>) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(ImdsSource::probe(self, deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::{
        fast_retry, pairs, read_head, serve, serve_raw, unused_port, Recorded,
    };
    use axum::http::{HeaderMap, StatusCode as AxumStatus};
    use axum::routing::get;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    fn http() -> HttpClients {
        HttpClients::new(Duration::from_secs(5)).unwrap()
    }

    fn source(base: &str, cfg: &AuthConfig) -> ImdsSource {
        let env = Env::from_pairs([("AZURE_POD_IDENTITY_AUTHORITY_HOST", base)]);
        ImdsSource::new(cfg, &http(), &env)
            .unwrap()
            .with_retry(fast_retry())
    }

    /// A fake IMDS answering each request with the next scripted (status, body); the last repeats.
    async fn fake_imds(script: Vec<(u16, &'static str)>) -> (String, Recorded) {
        let recorded = Recorded::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let rec = recorded.clone();
        let app = axum::Router::new().route(
            "/metadata/identity/oauth2/token",
            get(move |headers: HeaderMap, uri: axum::http::Uri| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let (status, body) = script[n.min(script.len() - 1)];
                rec.push(headers, pairs(uri.query().unwrap_or_default()));
                async move { (AxumStatus::from_u16(status).unwrap(), body) }
            }),
        );
        (serve(app).await, recorded)
    }

    const OK_BODY: &str = r#"{"access_token":"tok-imds","refresh_token":"","expires_in":"3599","expires_on":"1506484173","not_before":"1506480273","resource":"https://monitor.azure.com","token_type":"Bearer"}"#;

    #[tokio::test]
    async fn system_assigned_request_shape() {
        let (base, rec) = fake_imds(vec![(200, OK_BODY)]).await;
        let token = source(&base, &AuthConfig::default()).fetch().await.unwrap();
        assert_eq!(token.token.expose(), "tok-imds");
        let (headers, query) = rec.only();
        assert_eq!(headers.get("metadata").unwrap(), "true");
        assert_eq!(query.get("api-version").unwrap(), "2018-02-01");
        assert_eq!(query.get("resource").unwrap(), "https://monitor.azure.com");
        assert_eq!(query.len(), 2, "{query:?}");
    }

    #[tokio::test]
    async fn user_assigned_ids_and_cloud_audience() {
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
                "object_id",
                "oid",
            ),
            (
                AuthConfig {
                    resource_id: Some("/subscriptions/x/rg/y".into()),
                    cloud: crate::auth::Cloud::UsGov,
                    ..Default::default()
                },
                "msi_res_id",
                "/subscriptions/x/rg/y",
            ),
        ];
        for (cfg, param, value) in cases {
            let (base, rec) = fake_imds(vec![(200, OK_BODY)]).await;
            source(&base, &cfg).fetch().await.unwrap();
            let (_, query) = rec.only();
            assert_eq!(query.get(param).map(String::as_str), Some(value));
            let expected = cfg.cloud.audience();
            assert_eq!(query.get("resource").map(String::as_str), Some(expected));
        }
    }

    #[test]
    fn two_ids_is_a_config_error() {
        let cfg = AuthConfig {
            client_id: Some("a".into()),
            resource_id: Some("b".into()),
            ..Default::default()
        };
        let err = ImdsSource::new(&cfg, &http(), &Env::from_pairs::<&str, &str>([])).unwrap_err();
        assert!(matches!(err, AuthError::Config(_)), "{err:?}");
        assert!(err.to_string().contains("client_id, msi_res_id"), "{err}");
    }

    #[tokio::test]
    async fn retries_500_410_then_succeeds() {
        let (base, rec) = fake_imds(vec![(500, "oops"), (410, ""), (200, OK_BODY)]).await;
        let token = source(&base, &AuthConfig::default()).fetch().await.unwrap();
        assert_eq!(token.token.expose(), "tok-imds");
        assert_eq!(rec.count(), 3);
    }

    #[tokio::test]
    async fn identity_not_found_is_explained_and_not_retried() {
        let body = r#"{"error":"invalid_request","error_description":"Identity not found"}"#;
        let (base, rec) = fake_imds(vec![(400, body)]).await;
        let cfg = AuthConfig {
            client_id: Some("wrong-id".into()),
            ..Default::default()
        };
        let err = source(&base, &cfg).fetch().await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(
                "no managed identity assigned to this VM, or the user-assigned id is wrong"
            ),
            "{text}"
        );
        assert!(text.contains("client_id=wrong-id"), "{text}");
        assert!(text.contains("Identity not found"), "{text}");
        assert_eq!(rec.count(), 1);
    }

    #[tokio::test]
    async fn other_4xx_is_not_retried() {
        let body = r#"{"error":"bad_request_102","error_description":"Required metadata header not specified"}"#;
        let (base, rec) = fake_imds(vec![(403, body)]).await;
        let err = source(&base, &AuthConfig::default())
            .fetch()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("bad_request_102"), "{err}");
        assert_eq!(rec.count(), 1);
    }

    #[tokio::test]
    async fn gives_up_after_the_schedule() {
        let (base, rec) = fake_imds(vec![(503, "busy")]).await;
        let err = source(&base, &AuthConfig::default())
            .fetch()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("HTTP 503"), "{err}");
        assert_eq!(rec.count(), fast_retry().retries + 1);
    }

    #[tokio::test]
    async fn probe_fails_fast_when_nothing_listens() {
        let base = format!("http://127.0.0.1:{}", unused_port().await);
        let src = ImdsSource::new(
            &AuthConfig::default(),
            &http(),
            &Env::from_pairs([("AZURE_POD_IDENTITY_AUTHORITY_HOST", base.as_str())]),
        )
        .unwrap()
        // A long schedule: the probe must not use it.
        .with_retry(RetrySchedule::IMDS);
        let started = std::time::Instant::now();
        let err = src.probe(None).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(err, AuthError::Unavailable { .. }), "{err:?}");
        assert!(
            err.to_string().contains("IMDS not reachable")
                && err.to_string().contains("not an Azure VM?"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn fetch_retries_connection_failures() {
        let base = format!("http://127.0.0.1:{}", unused_port().await);
        let src = source(&base, &AuthConfig::default());
        let err = src.fetch().await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("IMDS not reachable"), "{text}");
        assert!(text.contains("gave up after"), "{text}");
    }

    #[tokio::test]
    async fn a_410_is_retried_past_the_schedule_while_the_update_window_lasts() {
        // Ten 410s: more than the schedule's retries (3 here), well inside the 75 s window.
        let mut script = vec![(410, r#"{"error":"IMDS is updating"}"#); 10];
        script.push((200, OK_BODY));
        let (base, rec) = fake_imds(script).await;
        let token = source(&base, &AuthConfig::default()).fetch().await.unwrap();
        assert_eq!(token.token.expose(), "tok-imds");
        assert_eq!(rec.count(), 11);
        // Other retryable answers keep to the schedule.
        let (base, rec) = fake_imds(vec![
            (404, ""),
            (404, ""),
            (404, ""),
            (404, ""),
            (200, OK_BODY),
        ])
        .await;
        assert!(source(&base, &AuthConfig::default()).fetch().await.is_err());
        assert_eq!(rec.count(), fast_retry().retries + 1);
    }

    /// A metadata service that is not Azure's: 404 to everything, as AWS's, GCP's and
    /// OpenStack's answer an Azure path.
    async fn foreign_metadata_service(status: u16) -> (String, Recorded) {
        let recorded = Recorded::default();
        let rec = recorded.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            rec.push(headers, Default::default());
            async move {
                (
                    AxumStatus::from_u16(status).unwrap(),
                    "<html>Not Found</html>",
                )
            }
        });
        (serve(app).await, recorded)
    }

    #[tokio::test]
    async fn the_probe_tells_a_foreign_metadata_service_at_once() {
        for status in [404, 200, 403, 500] {
            let (base, rec) = foreign_metadata_service(status).await;
            let src = ImdsSource::new(
                &AuthConfig::default(),
                &http(),
                &Env::from_pairs([("AZURE_POD_IDENTITY_AUTHORITY_HOST", base.as_str())]),
            )
            .unwrap()
            // The real schedule: the probe must not get to use it.
            .with_retry(RetrySchedule::IMDS);
            let err = src.probe(None).await.unwrap_err();
            assert!(matches!(err, AuthError::Unavailable { .. }), "{err:?}");
            let text = err.to_string();
            assert!(
                text.contains("not Azure's IMDS") && text.contains(&format!("HTTP {status}")),
                "{text}"
            );
            // One question, without the Metadata header, and no token request at all.
            let asked = rec.all();
            assert_eq!(asked.len(), 1, "{status}");
            assert!(asked[0].0.get("metadata").is_none());
        }
    }

    #[tokio::test]
    async fn the_probe_then_asks_azures_imds_for_the_token() {
        let recorded = Recorded::default();
        let rec = recorded.clone();
        let app = axum::Router::new().route(
            "/metadata/identity/oauth2/token",
            get(move |headers: HeaderMap| {
                let answer = crate::auth::test_support::imds_answer(&headers, OK_BODY);
                rec.push(headers, Default::default());
                async move { answer }
            }),
        );
        let base = serve(app).await;
        let token = source(&base, &AuthConfig::default())
            .probe(None)
            .await
            .unwrap();
        assert_eq!(token.token.expose(), "tok-imds");
        let asked = recorded.all();
        assert_eq!(asked.len(), 2);
        assert!(asked[0].0.get("metadata").is_none());
        assert_eq!(asked[1].0.get("metadata").unwrap(), "true");
    }

    /// An IMDS that accepts the connection and then says nothing.
    async fn silent_imds() -> String {
        serve_raw(|mut socket| async move {
            read_head(&mut socket).await;
            tokio::time::sleep(Duration::from_secs(600)).await;
            drop(socket);
        })
        .await
    }

    #[tokio::test]
    async fn a_silent_imds_costs_the_probe_a_second_and_a_fetch_its_deadline() {
        let base = silent_imds().await;
        let src = source(&base, &AuthConfig::default());
        let err = src.probe(None).await.unwrap_err();
        assert!(matches!(err, AuthError::Unavailable { .. }), "{err:?}");
        assert!(
            err.to_string().contains("no answer within 1000 ms"),
            "{err}"
        );

        let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
        let err = src.fetch_by(Some(deadline)).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("no answer within the time allowed for a token"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_huge_answer_is_refused_after_64_kib() {
        // With a Content-Length of 100 MB, and without one (chunked, never ending).
        for declared in [true, false] {
            let written = Arc::new(AtomicUsize::new(0));
            let w = written.clone();
            let base = serve_raw(move |mut socket| {
                let w = w.clone();
                async move {
                    read_head(&mut socket).await;
                    let head = if declared {
                        "HTTP/1.1 200 OK\r\ncontent-length: 104857600\r\n\r\n"
                    } else {
                        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                    };
                    if socket.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = vec![b'a'; 64 * 1024];
                    let framed = [
                        format!("{:x}\r\n", chunk.len()).into_bytes(),
                        chunk.clone(),
                        b"\r\n".to_vec(),
                    ]
                    .concat();
                    for _ in 0..1600 {
                        let part = if declared { &chunk } else { &framed };
                        if socket.write_all(part).await.is_err() {
                            return;
                        }
                        w.fetch_add(part.len(), Ordering::SeqCst);
                    }
                }
            })
            .await;
            let err = source(&base, &AuthConfig::default())
                .fetch()
                .await
                .unwrap_err();
            assert!(err.to_string().contains("larger than 64 KiB"), "{err}");
            // Not retried: the same endpoint would send the same.
            assert!(!err.to_string().contains("gave up after"), "{err}");
            // The client stopped reading long before 100 MB.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let sent = written.load(Ordering::SeqCst);
            assert!(sent < 50 * 1024 * 1024, "{sent} bytes were sent");
        }
    }

    #[test]
    fn default_base_is_the_link_local_address() {
        let src = ImdsSource::new(
            &AuthConfig::default(),
            &http(),
            &Env::from_pairs::<&str, &str>([]),
        )
        .unwrap();
        assert!(src
            .url
            .as_str()
            .starts_with("http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmonitor.azure.com"));
    }
}
