//! Managed identity on an Azure Arc-enabled server, through the Connected Machine agent (himds).
//!
//! The agent serves an IMDS-like endpoint on `localhost:40342` (or `IDENTITY_ENDPOINT`). It proves
//! the caller is privileged with a challenge: the first GET is answered 401 with
//! `WWW-Authenticate: Basic realm=<path of a .key file>`; whoever can read that file (root or the
//! `himds` group) repeats the GET with `Authorization: Basic <file contents>` and gets the token.
//!
//! The path comes from an HTTP answer, so it is checked as the Azure SDKs do before anything is
//! read: it must resolve to a file directly inside `arc_key_dir` (symlinks resolved on both
//! sides), end in `.key` and be at most 4096 bytes. The file is read afresh for each token,
//! never kept, and its contents appear in no message.

use std::path::{Path, PathBuf};

use reqwest::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;

use super::env::Env;
use super::imds::{transient, UserAssigned};
use super::local_endpoint::{self, LocalEndpoint, Refusal, Reply, SecretHeader, Wording};
use super::retry::{Outcome, RetrySchedule};
use super::{jwt, AccessToken, AuthConfig, AuthError, BoxFuture, TokenSource};
use crate::http::HttpClients;
use crate::secret::Secret;
use tokio::time::Instant;

const NAME: &str = "arc";
const API_VERSION: &str = "2020-06-01";
/// Where the agent listens when the environment does not say.
pub const DEFAULT_ENDPOINT: &str = "http://localhost:40342/metadata/identity/oauth2/token";
/// The only directory a challenge file is read from, unless `arc_key_dir` says otherwise.
pub const DEFAULT_KEY_DIR: &str = "/var/opt/azcmagent/tokens";
/// The agent's binary: its presence means "this is an Arc-enabled server" even when the
/// service's variables are not in our environment (they are set for the agent's own units).
pub const HIMDS_PATH: &str = "/opt/azcmagent/bin/himds";
/// The largest challenge file accepted (the SDKs' limit).
const MAX_KEY_BYTES: u64 = 4096;

const WORDING: Wording = Wording {
    unreachable: |endpoint, cause| {
        format!(
            "Arc agent not reachable at {endpoint} (is azcmagent installed and himds running?): \
             {cause}"
        )
    },
    send_failed: |endpoint, cause| {
        format!("request to the Arc agent at {endpoint} failed: {cause}")
    },
    read_failed: |cause| format!("reading the Arc agent's answer failed: {cause}"),
};

/// Whether the Connected Machine agent is installed here.
pub fn himds_installed() -> bool {
    Path::new(HIMDS_PATH).exists()
}

/// Tokens from the Arc agent. Holds no secret: the challenge key is read per request.
#[derive(Debug)]
pub struct ArcSource {
    /// The full token URL with its query.
    url: reqwest::Url,
    /// The client, with the endpoint without a query (for messages).
    endpoint: LocalEndpoint,
    key_dir: PathBuf,
    identity: Option<UserAssigned>,
}

impl ArcSource {
    /// Validates the configuration; sends and reads nothing. Uses the no-proxy client.
    ///
    /// The endpoint is `IDENTITY_ENDPOINT` when it comes with `IMDS_ENDPOINT` (the pair the
    /// agent sets), else the agent's default: `IDENTITY_ENDPOINT` alone belongs to App Service.
    /// (Whether this is an Arc server at all is `auto`'s question, answered before this is built.)
    pub fn new(cfg: &AuthConfig, http: &HttpClients, env: &Env) -> Result<Self, AuthError> {
        let identity = UserAssigned::from_config(cfg)?;
        let endpoint = match (env.get("IDENTITY_ENDPOINT"), env.get("IMDS_ENDPOINT")) {
            (Some(endpoint), Some(_)) => endpoint.trim().to_string(),
            _ => DEFAULT_ENDPOINT.to_string(),
        };
        let url = local_endpoint::parse_http_url("Arc identity endpoint", &endpoint)?;
        // Newer agents honour a user-assigned id; older ones return the system identity,
        // which `check_identity` catches when the token says whose it is.
        let url = local_endpoint::token_url(
            url,
            API_VERSION,
            cfg,
            identity.as_ref(),
            UserAssigned::param,
        );
        let key_dir = cfg
            .arc_key_dir
            .clone()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_DIR));
        Ok(ArcSource {
            url,
            endpoint: LocalEndpoint::new(NAME, http, endpoint, &WORDING, RetrySchedule::IMDS),
            key_dir,
            identity,
        })
    }

    /// Replaces the retry schedule (tests use a short one).
    #[cfg(test)]
    pub fn with_retry(mut self, retry: RetrySchedule) -> Self {
        self.endpoint.set_retry(retry);
        self
    }

    /// The exchange, retried; with `probe`, a refused connection on the first try ends it (a
    /// stopped agent should not cost `auto` a minute of retries).
    async fn request(
        &self,
        probe: bool,
        deadline: Option<Instant>,
    ) -> Result<AccessToken, AuthError> {
        self.endpoint
            .retried(probe, deadline, |fail_fast| self.attempt(fail_fast))
            .await
    }

    /// Challenge, read the key, answer the challenge.
    async fn attempt(&self, fail_fast: bool) -> Outcome<AccessToken> {
        let challenge = match self.get(None, fail_fast).await {
            Step::Token(token) => return self.checked(token),
            Step::Challenge(realm) => realm,
            Step::Stop(outcome) => return outcome,
        };
        let key = match read_challenge_key(&challenge, &self.key_dir).await {
            Ok(key) => key,
            Err(reason) => return Outcome::Fail(self.endpoint.failed(reason)),
        };
        match self.get(Some(&key), false).await {
            Step::Token(token) => self.checked(token),
            Step::Challenge(_) => Outcome::Fail(
                self.endpoint.failed(
                    "the Arc agent rejected the contents of its own challenge file (answered 401 \
                 again); is the file being rewritten, or is another agent listening?"
                        .into(),
                ),
            ),
            Step::Stop(outcome) => outcome,
        }
    }

    /// One GET, with the challenge answer when there is one.
    async fn get(&self, key: Option<&Secret>, fail_fast: bool) -> Step {
        let authorization = match key
            .map(|k| HeaderValue::from_str(&format!("Basic {}", k.expose())))
        {
            None => None,
            Some(Ok(value)) => Some(value),
            Some(Err(_)) => {
                return Step::Stop(Outcome::Fail(self.endpoint.failed(
                    "the Arc challenge file holds characters an HTTP header cannot carry".into(),
                )))
            }
        };
        let header = match (authorization, key) {
            (Some(value), Some(key)) => Some(SecretHeader {
                name: AUTHORIZATION,
                value,
                secret: key.expose(),
            }),
            _ => None,
        };
        match self.endpoint.get(&self.url, header, fail_fast).await {
            Reply::Token(token) => Step::Token(token),
            Reply::Refused(refusal) => self.judge(refusal, key),
            Reply::Stop(outcome) => Step::Stop(outcome),
        }
    }

    /// A 401 to the first GET is the challenge; to the second, a rejected key. Otherwise the
    /// agent is judged as IMDS is: 404, 410, 429 and 5xx are retried, the rest refused.
    fn judge(&self, refusal: Refusal, key: Option<&Secret>) -> Step {
        let Refusal {
            status,
            headers,
            after,
            summary,
        } = refusal;
        if status == StatusCode::UNAUTHORIZED && key.is_none() {
            let realm = headers
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(basic_realm);
            return match realm {
                Some(realm) => Step::Challenge(realm),
                None => Step::Stop(Outcome::Fail(self.endpoint.failed(format!(
                    "the Arc agent answered 401 without a `Basic realm=<file>` challenge: {summary}"
                )))),
            };
        }
        if status == StatusCode::UNAUTHORIZED {
            return Step::Challenge(String::new());
        }
        Step::Stop(match status.as_u16() {
            404 | 410 | 429 | 500..=599 => transient(
                status,
                self.endpoint
                    .failed(format!("the Arc agent answered HTTP {status}: {summary}")),
                after,
            ),
            _ => Outcome::Fail(self.endpoint.failed(format!(
                "the Arc agent refused the request (HTTP {status}, asked for {}): {summary}",
                self.identity_text()
            ))),
        })
    }

    /// Fails closed when a user-assigned identity was asked for and the token, which names its
    /// identity, is someone else's: older agents ignore the id and return the system identity.
    fn checked(&self, token: AccessToken) -> Outcome<AccessToken> {
        let Some(id) = &self.identity else {
            return Outcome::Done(token);
        };
        match check_identity(token.token.expose(), id) {
            Ok(()) => Outcome::Done(token),
            Err(got) => Outcome::Fail(self.endpoint.failed(format!(
                "asked the Arc agent for user-assigned {id} but got a token for {got}; this agent \
                 version supports only the system-assigned identity (update azcmagent, or drop \
                 the user-assigned id)"
            ))),
        }
    }

    fn identity_text(&self) -> String {
        local_endpoint::asked_for(self.identity.as_ref(), UserAssigned::param)
    }
}

/// Where one GET left the exchange.
enum Step {
    Token(AccessToken),
    /// 401 with the challenge file's path.
    Challenge(String),
    /// Retry or give up with this.
    Stop(Outcome<AccessToken>),
}

/// The path in `Basic realm=<path>` (quotes allowed), or `None` for any other challenge.
fn basic_realm(header: &str) -> Option<String> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let rest = rest.trim();
    let (key, value) = rest.split_once('=')?;
    if !key.trim().eq_ignore_ascii_case("realm") {
        return None;
    }
    let value = value.trim().trim_matches('"').trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// `Err(claim=value)` when the token names an identity other than `id`; `Ok` when it matches or
/// does not say (a token that is not a JWT, or lacks the claim, cannot be checked).
fn check_identity(token: &str, id: &UserAssigned) -> Result<(), String> {
    let claims: &[&str] = match id {
        UserAssigned::ClientId(_) => &["appid", "azp"],
        UserAssigned::ObjectId(_) => &["oid"],
        UserAssigned::ResourceId(_) => &["xms_mirid"],
    };
    for claim in claims {
        if let Some(serde_json::Value::String(got)) = jwt::claim(token, claim) {
            return if got.eq_ignore_ascii_case(id.value()) {
                Ok(())
            } else {
                Err(format!("{claim}={got}"))
            };
        }
    }
    Ok(())
}

/// Reads the challenge file named by the agent, after checking it is one: directly inside
/// `key_dir` once symlinks are resolved, named `*.key`, a regular file of at most 4096 bytes.
/// Errors are messages for [`AuthError::Failed`]; none holds the contents.
async fn read_challenge_key(realm: &str, key_dir: &Path) -> Result<Secret, String> {
    let path = Path::new(realm);
    let is_key = |p: &Path| p.extension().is_some_and(|e| e == "key");
    if !path.is_absolute() || !is_key(path) {
        return Err(format!(
            "the Arc agent's challenge names {realm:?}, which is not an absolute path to a .key \
             file; refusing to read it"
        ));
    }
    let dir = tokio::fs::canonicalize(key_dir)
        .await
        .map_err(|e| key_error(key_dir, &e, "arc_key_dir"))?;
    let file = tokio::fs::canonicalize(path)
        .await
        .map_err(|e| key_error(path, &e, "challenge file"))?;
    if file.parent() != Some(dir.as_path()) || !is_key(&file) {
        return Err(format!(
            "the Arc agent's challenge file {} is not a .key file directly inside {} \
             (arc_key_dir); refusing to read it",
            path.display(),
            key_dir.display()
        ));
    }
    let opened = tokio::fs::File::open(&file)
        .await
        .map_err(|e| key_error(path, &e, "challenge file"))?;
    let meta = opened
        .metadata()
        .await
        .map_err(|e| key_error(path, &e, "challenge file"))?;
    if !meta.is_file() || meta.len() > MAX_KEY_BYTES {
        return Err(format!(
            "the Arc agent's challenge file {} is not a regular file of at most \
             {MAX_KEY_BYTES} bytes; refusing to use it",
            path.display()
        ));
    }
    let mut raw = Vec::with_capacity(meta.len() as usize);
    use tokio::io::AsyncReadExt;
    opened
        .take(MAX_KEY_BYTES + 1)
        .read_to_end(&mut raw)
        .await
        .map_err(|e| key_error(path, &e, "challenge file"))?;
    if raw.len() as u64 > MAX_KEY_BYTES {
        return Err(format!(
            "the Arc agent's challenge file {} grew past {MAX_KEY_BYTES} bytes while being read",
            path.display()
        ));
    }
    let text = String::from_utf8(raw).map_err(|_| {
        format!(
            "the Arc agent's challenge file {} is not text",
            path.display()
        )
    })?;
    let key = text.trim();
    if key.is_empty() {
        return Err(format!(
            "the Arc agent's challenge file {} is empty",
            path.display()
        ));
    }
    Ok(Secret::new(key))
}

/// An I/O error on the key directory or file, with the fix for the common one.
fn key_error(path: &Path, e: &std::io::Error, what: &str) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => format!(
            "permission denied reading the Arc {what} {}: the service user must be root or in \
             the himds group (usermod -aG himds <user>, then restart dcrship)",
            path.display()
        ),
        std::io::ErrorKind::NotFound => {
            format!("the Arc {what} {} does not exist", path.display())
        }
        _ => format!("cannot read the Arc {what} {}: {e}", path.display()),
    }
}

impl TokenSource for ArcSource {
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
pub(crate) mod tests {
    use super::*;
    use crate::auth::jwt::tests::make_jwt;
    use crate::auth::test_support::{fast_retry, pairs, serve, unused_port, Recorded};
    use axum::http::{HeaderMap, StatusCode as AxumStatus};
    use axum::response::IntoResponse;
    use axum::routing::get;
    use std::time::Duration;

    const KEY: &str = "arc-challenge-d0n7-l34k";

    fn http() -> HttpClients {
        HttpClients::new(Duration::from_secs(5)).unwrap()
    }

    pub(crate) fn token_body(claims: &serde_json::Value) -> String {
        let jwt = make_jwt(claims);
        format!(
            r#"{{"access_token":"{jwt}","expires_in":"86399","expires_on":"1906484173","resource":"https://monitor.azure.com","token_type":"Bearer"}}"#
        )
    }

    /// A fake himds: without `Authorization` it answers 401 with `realm` as the challenge; with
    /// `Basic <contents of the realm file>` it answers `body`; otherwise 401 again.
    pub(crate) async fn fake_himds(realm: PathBuf, body: String) -> (String, Recorded) {
        let recorded = Recorded::default();
        let rec = recorded.clone();
        let app = axum::Router::new().route(
            "/metadata/identity/oauth2/token",
            get(move |headers: HeaderMap, uri: axum::http::Uri| {
                rec.push(headers.clone(), pairs(uri.query().unwrap_or_default()));
                let expected = std::fs::read_to_string(&realm)
                    .map(|k| format!("Basic {}", k.trim()))
                    .unwrap_or_default();
                let body = body.clone();
                let realm = realm.clone();
                async move {
                    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
                        Some(auth) if auth == expected => body.into_response(),
                        Some(_) => AxumStatus::UNAUTHORIZED.into_response(),
                        None => (
                            AxumStatus::UNAUTHORIZED,
                            [(
                                "www-authenticate",
                                format!("Basic realm={}", realm.display()),
                            )],
                            "",
                        )
                            .into_response(),
                    }
                }
            }),
        );
        (serve(app).await, recorded)
    }

    /// A key directory holding `<name>` with [`KEY`] in it.
    pub(crate) fn key_dir(name: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(name);
        std::fs::write(&file, KEY).unwrap();
        (dir, file)
    }

    fn source(base: &str, dir: &Path, cfg: AuthConfig) -> ArcSource {
        let env = Env::from_pairs([
            (
                "IDENTITY_ENDPOINT",
                format!("{base}/metadata/identity/oauth2/token"),
            ),
            ("IMDS_ENDPOINT", base.to_string()),
        ]);
        let cfg = AuthConfig {
            arc_key_dir: Some(dir.to_path_buf()),
            ..cfg
        };
        ArcSource::new(&cfg, &http(), &env)
            .unwrap()
            .with_retry(fast_retry())
    }

    #[tokio::test]
    async fn answers_the_challenge_with_the_file_read_afresh() {
        let (dir, file) = key_dir("0123.key");
        let (base, rec) =
            fake_himds(file.clone(), token_body(&serde_json::json!({"oid": "o"}))).await;
        let src = source(&base, dir.path(), AuthConfig::default());
        let token = src.fetch().await.unwrap();
        assert_eq!(jwt::object_id(token.token.expose()).as_deref(), Some("o"));

        // The agent writes a new key for each challenge; the next fetch must use the new one.
        std::fs::write(&file, "second-key").unwrap();
        src.fetch().await.unwrap();

        let all = rec.all();
        assert_eq!(all.len(), 4, "challenge + answer, twice");
        let (first, query) = &all[0];
        assert_eq!(first.get("metadata").unwrap(), "true");
        assert!(first.get("authorization").is_none());
        assert_eq!(query["api-version"], "2020-06-01");
        assert_eq!(query["resource"], "https://monitor.azure.com");
        assert_eq!(query.len(), 2, "{query:?}");
        let (second, _) = &all[1];
        assert_eq!(second.get("metadata").unwrap(), "true");
        assert_eq!(
            second.get("authorization").unwrap(),
            &format!("Basic {KEY}")
        );
        assert_eq!(all[3].0.get("authorization").unwrap(), "Basic second-key");
    }

    #[tokio::test]
    async fn refuses_files_outside_the_key_dir() {
        let (dir, _) = key_dir("ok.key");
        let (_elsewhere, outside) = key_dir("evil.key");
        let (base, rec) = fake_himds(outside.clone(), token_body(&serde_json::json!({}))).await;
        let err = source(&base, dir.path(), AuthConfig::default())
            .fetch()
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("not a .key file directly inside"),
            "{err}"
        );
        assert_eq!(rec.count(), 1, "the key must not be sent anywhere");

        // A symlink inside the directory pointing out of it is no better.
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let (base, rec) = fake_himds(link, token_body(&serde_json::json!({}))).await;
        let err = source(&base, dir.path(), AuthConfig::default())
            .fetch()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("refusing to read it"), "{err}");
        assert_eq!(rec.count(), 1);
    }

    #[tokio::test]
    async fn refuses_other_extensions_relative_paths_and_big_files() {
        let (dir, txt) = key_dir("secret.txt");
        let big = dir.path().join("big.key");
        std::fs::write(&big, "x".repeat(4097)).unwrap();
        let relative = PathBuf::from("tokens/a.key");
        for realm in [txt, big, relative] {
            let (base, rec) = fake_himds(realm.clone(), token_body(&serde_json::json!({}))).await;
            let err = source(&base, dir.path(), AuthConfig::default())
                .fetch()
                .await
                .unwrap_err();
            assert!(
                matches!(err, AuthError::Failed { .. }),
                "{realm:?}: {err:?}"
            );
            assert!(err.to_string().contains("refusing"), "{realm:?}: {err}");
            assert_eq!(rec.count(), 1);
        }
    }

    #[test]
    fn permission_denied_names_the_himds_group() {
        let e = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let text = key_error(
            Path::new("/var/opt/azcmagent/tokens/x.key"),
            &e,
            "challenge file",
        );
        assert!(text.contains("usermod -aG himds <user>"), "{text}");
    }

    #[tokio::test]
    async fn unreadable_key_file_names_the_himds_group() {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return; // root reads everything; the mapping is covered above.
        }
        let (dir, file) = key_dir("locked.key");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
        let (base, _) = fake_himds(file, token_body(&serde_json::json!({}))).await;
        let err = source(&base, dir.path(), AuthConfig::default())
            .fetch()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("himds group"), "{err}");
    }

    #[tokio::test]
    async fn user_assigned_id_is_sent_and_checked() {
        let (dir, file) = key_dir("k.key");
        let cfg = || AuthConfig {
            client_id: Some("wanted-app".into()),
            ..Default::default()
        };
        // A new agent honours the id.
        let (base, rec) = fake_himds(
            file.clone(),
            token_body(&serde_json::json!({"appid": "wanted-app", "oid": "o"})),
        )
        .await;
        source(&base, dir.path(), cfg()).fetch().await.unwrap();
        assert_eq!(rec.all()[0].1["client_id"], "wanted-app");

        // An old agent returns the system identity: fail closed.
        let (base, _) = fake_himds(
            file,
            token_body(&serde_json::json!({"appid": "system-app", "oid": "o"})),
        )
        .await;
        let err = source(&base, dir.path(), cfg()).fetch().await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("appid=system-app"), "{text}");
        assert!(
            text.contains("supports only the system-assigned identity"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn probe_fails_fast_when_the_agent_is_down() {
        let base = format!("http://127.0.0.1:{}", unused_port().await);
        let dir = tempfile::tempdir().unwrap();
        let src = source(&base, dir.path(), AuthConfig::default());
        let started = std::time::Instant::now();
        let err = src.probe(None).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(matches!(err, AuthError::Unavailable { .. }), "{err:?}");
        assert!(err.to_string().contains("is azcmagent installed"), "{err}");
    }

    #[test]
    fn realm_parsing_and_defaults() {
        assert_eq!(
            basic_realm("Basic realm=/var/opt/azcmagent/tokens/a.key").as_deref(),
            Some("/var/opt/azcmagent/tokens/a.key")
        );
        assert_eq!(
            basic_realm("basic  realm=\"/t/a.key\"").as_deref(),
            Some("/t/a.key")
        );
        assert_eq!(basic_realm("Bearer realm=/t/a.key"), None);
        assert_eq!(basic_realm("Basic realm="), None);

        let src = ArcSource::new(
            &AuthConfig::default(),
            &http(),
            &Env::from_pairs::<&str, &str>([]),
        )
        .unwrap();
        assert!(src
            .url
            .as_str()
            .starts_with("http://localhost:40342/metadata/identity/oauth2/token?api-version=2020-06-01&resource=https%3A%2F%2Fmonitor.azure.com"));
        assert_eq!(src.key_dir, Path::new(DEFAULT_KEY_DIR));
    }
}
