//! Every type and error that handles a secret is formatted both ways (and the logs captured)
//! and searched for it.

use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use super::auto::{resolve_on, Host};
use super::client_cert::tests::{CERT_PEM, KEY_PKCS8_PEM};
use super::test_support::{fast_retry, serve, Scripted};
use super::*;
use crate::http::HttpClients;
use crate::secret::Secret;

const SECRET: &str = "CLIENT-SECRET-d0n7-l34k";
const TOKEN: &str = "eyJ0eXAi.TOKEN-d0n7-l34k.c2ln";
const IDENTITY_HEADER: &str = "IDENTITY-HEADER-d0n7-l34k";
const ARC_KEY: &str = "ARC-KEY-d0n7-l34k";
const FEDERATED_TOKEN: &str = "FEDERATED-TOKEN-d0n7-l34k";

fn assert_clean(what: &str, text: &str) {
    for secret in [
        SECRET,
        TOKEN,
        IDENTITY_HEADER,
        ARC_KEY,
        FEDERATED_TOKEN,
        "d0n7-l34k",
    ] {
        assert!(!text.contains(secret), "{what} leaks {secret:?}: {text}");
    }
    // The certificate's private key: no line of its base64 body.
    for line in KEY_PKCS8_PEM.lines().filter(|l| !l.starts_with("-----")) {
        assert!(
            !text.contains(line),
            "{what} leaks a line of the private key: {text}"
        );
    }
}

fn check<T: fmt::Debug + fmt::Display>(what: &str, value: &T) {
    assert_clean(what, &format!("{value:?}"));
    assert_clean(what, &format!("{value}"));
    assert_clean(what, &format!("{value:#?}"));
}

fn check_debug<T: fmt::Debug>(what: &str, value: &T) {
    assert_clean(what, &format!("{value:?}"));
    assert_clean(what, &format!("{value:#?}"));
}

/// Collects every log line written while it is the default subscriber.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Endpoints that misbehave in every way that could drag a secret into a message: Entra
/// echoes the secret in its error, IMDS returns the token in a malformed answer.
async fn hostile_endpoints() -> (String, String) {
    let entra_body = format!(
        r#"{{"error":"invalid_client","error_description":"AADSTS7000215: bad secret {SECRET}"}}"#
    );
    let entra = axum::Router::new().route(
        "/t/oauth2/v2.0/token",
        post(move || async move { (axum::http::StatusCode::UNAUTHORIZED, entra_body) }),
    );
    let imds_body = format!(r#"{{"access_token":"{TOKEN}","expires_in":"never"}}"#);
    let imds = axum::Router::new().route(
        "/metadata/identity/oauth2/token",
        get(move || async move { imds_body }),
    );
    (serve(entra).await, serve(imds).await)
}

/// Captures every event at TRACE while the guard lives.
fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

#[tokio::test(flavor = "current_thread")]
async fn no_secret_in_debug_display_errors_or_logs() {
    let (logs, _guard) = capture_logs();

    let (entra, imds) = hostile_endpoints().await;
    let env = Env::from_pairs([
        ("AZURE_TENANT_ID", "t"),
        ("AZURE_CLIENT_ID", "app"),
        ("AZURE_CLIENT_SECRET", SECRET),
        ("AZURE_AUTHORITY_HOST", entra.as_str()),
        ("AZURE_POD_IDENTITY_AUTHORITY_HOST", imds.as_str()),
        ("DCRSHIP_ACCESS_TOKEN", TOKEN),
    ]);
    let http = HttpClients::new(Duration::from_secs(5)).unwrap();
    let cfg = AuthConfig {
        client_secret: Some(Secret::new(SECRET)),
        ..Default::default()
    };
    check_debug("AuthConfig", &cfg);
    check_debug("Env", &env);

    // Sources.
    let sp = ClientSecretSource::new(&cfg, &http, &env).unwrap();
    check_debug("ClientSecretSource", &sp);
    check_debug("StaticSource", &StaticSource::new(&env));
    check_debug("ImdsSource", &ImdsSource::new(&cfg, &http, &env).unwrap());

    // Errors from each source, and auto's summary of them.
    check("client-secret error", &sp.fetch().await.unwrap_err());
    let imds_source = ImdsSource::new(&cfg, &http, &env).unwrap();
    check("imds error", &imds_source.fetch().await.unwrap_err());
    let err = build_with_env(&cfg, &http, &env).await.unwrap_err();
    assert!(matches!(err, AuthError::NoSource(_)), "{err:?}");
    check("NoSource", &err);

    // Tokens and the cache, including a refresh that fails and falls back.
    let token = AccessToken {
        token: Secret::new(TOKEN),
        expires_at: jiff::Timestamp::now()
            .checked_add(Duration::from_secs(3600))
            .unwrap(),
    };
    check_debug("AccessToken", &token);
    let failing = Scripted::new(vec![Err(AuthError::Failed {
        source_name: "scripted",
        reason: "down".into(),
    })]);
    let cache = TokenCache::primed(Box::new(failing), token, crate::auth::DEFAULT_FETCH_TIMEOUT);
    cache.invalidate();
    check("cache error", &cache.token().await.unwrap_err());
    check_debug("TokenCache", &cache);
    let cache = build_with_env(
        &AuthConfig {
            method: AuthMethod::Static,
            ..Default::default()
        },
        &http,
        &env,
    )
    .await
    .unwrap();
    assert_eq!(cache.token().await.unwrap().expose(), TOKEN);
    check_debug("TokenCache", &cache);

    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("identity source"),
        "logs captured: {logged}"
    );
    assert_clean("logs", &logged);
}

/// What echoes a credential back: one local identity endpoint playing App Service (echoes
/// `X-IDENTITY-HEADER`) and Arc (challenges, then echoes the `Authorization` it gets), first
/// with a 500 (retried, so logged) and then a 403; and an Entra that echoes the assertion.
async fn echoing_endpoints(realm: std::path::PathBuf) -> (String, String) {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let local = axum::Router::new().route(
        "/metadata/identity/oauth2/token",
        get(move |headers: HeaderMap| {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let realm = realm.clone();
            async move {
                let status = if n.is_multiple_of(2) {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::FORBIDDEN
                };
                let echo = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                if let Some(value) = echo("x-identity-header").or_else(|| echo("authorization")) {
                    let body = format!(r#"{{"error":"bad","error_description":"got {value}"}}"#);
                    return (status, body).into_response();
                }
                (
                    axum::http::StatusCode::UNAUTHORIZED,
                    [(
                        "www-authenticate",
                        format!("Basic realm={}", realm.display()),
                    )],
                    "",
                )
                    .into_response()
            }
        }),
    );
    let entra = axum::Router::new().route(
        "/t/oauth2/v2.0/token",
        post(move |form: String| async move {
            let form = super::test_support::pairs(&form);
            let body = format!(
                r#"{{"error":"invalid_client","error_description":"AADSTS700027: bad assertion {}"}}"#,
                form.get("client_assertion").cloned().unwrap_or_default()
            );
            (axum::http::StatusCode::BAD_REQUEST, body)
        }),
    );
    (serve(local).await, serve(entra).await)
}

#[tokio::test(flavor = "current_thread")]
async fn no_identity_header_arc_key_federated_token_or_private_key_leaks() {
    let (logs, _guard) = capture_logs();

    let dir = tempfile::tempdir().unwrap();
    let key_dir = dir.path().join("tokens");
    std::fs::create_dir(&key_dir).unwrap();
    let realm = key_dir.join("challenge.key");
    std::fs::write(&realm, ARC_KEY).unwrap();
    let federated = dir.path().join("azure-identity-token");
    std::fs::write(&federated, FEDERATED_TOKEN).unwrap();
    let pem = dir.path().join("cert.pem");
    std::fs::write(&pem, [CERT_PEM, KEY_PKCS8_PEM].concat()).unwrap();

    let (local, entra) = echoing_endpoints(realm).await;
    let endpoint = format!("{local}/metadata/identity/oauth2/token");
    let vars = |app_service: bool| {
        let mut vars = vec![
            ("AZURE_TENANT_ID", "t".to_string()),
            ("AZURE_CLIENT_ID", "app".to_string()),
            ("AZURE_AUTHORITY_HOST", entra.clone()),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                federated.display().to_string(),
            ),
            ("AZURE_CLIENT_CERTIFICATE_PATH", pem.display().to_string()),
            ("IDENTITY_ENDPOINT", endpoint.clone()),
            ("IMDS_ENDPOINT", local.clone()),
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", local.clone()),
        ];
        if app_service {
            vars.push(("IDENTITY_HEADER", IDENTITY_HEADER.to_string()));
        }
        Env::from_pairs(vars)
    };
    let env = vars(true);
    let http = HttpClients::new(Duration::from_secs(5)).unwrap();
    let cfg = AuthConfig {
        arc_key_dir: Some(key_dir.clone()),
        certificate_path: Some(pem.clone()),
        ..Default::default()
    };
    check_debug("AuthConfig", &cfg);

    let app_service = AppServiceSource::new(&cfg, &http, &env)
        .unwrap()
        .with_retry(fast_retry());
    check_debug("AppServiceSource", &app_service);
    check("app-service error", &app_service.fetch().await.unwrap_err());

    // Arc without IDENTITY_HEADER in the environment, so the endpoint plays Arc.
    let arc = ArcSource::new(&cfg, &http, &vars(false))
        .unwrap()
        .with_retry(fast_retry());
    check_debug("ArcSource", &arc);
    check("arc error", &arc.fetch().await.unwrap_err());

    let workload = WorkloadIdentitySource::new(&cfg, &http, &env).unwrap();
    check_debug("WorkloadIdentitySource", &workload);
    check(
        "workload-identity error",
        &workload.fetch().await.unwrap_err(),
    );

    let certificate = ClientCertificateSource::new(&cfg, &http, &env).unwrap();
    check_debug("ClientCertificateSource", &certificate);
    let err = certificate.fetch().await.unwrap_err();
    check("client-certificate error", &err);
    assert!(err.to_string().contains("AADSTS700027"), "{err}");

    // A key file that is not a usable key says so without quoting it.
    std::fs::write(&pem, KEY_PKCS8_PEM).unwrap();
    check(
        "certificate config error",
        &ClientCertificateSource::new(&cfg, &http, &env).unwrap_err(),
    );
    std::fs::write(&pem, [CERT_PEM, KEY_PKCS8_PEM].concat()).unwrap();

    // The whole chain, and its summary.
    let host = Host {
        himds_installed: true,
        az_command: Some(vec!["/nonexistent/bin/az".into()]),
    };
    let err = resolve_on(&cfg, &http, &env, &host).await.unwrap_err();
    let AuthError::NoSource(reasons) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(reasons.len(), 8, "{err}");
    check("NoSource", &err);

    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("retrying"), "logs captured: {logged}");
    assert_clean("logs", &logged);
}

const JOB_TOKEN: &str = "JOB-TOKEN-d0n7-l34k";
const ID_TOKEN: &str = "ID-TOKEN-d0n7-l34k";
const PASSWORD: &str = "dcrship-test";

/// A CI platform that echoes the job token it got in an error (once, then hands out an ID
/// token), and an Entra that echoes the assertion.
async fn echoing_ci() -> String {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let echo = move |headers: HeaderMap| {
        let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            if n.is_multiple_of(2) {
                let body = format!(r#"{{"message":"busy, {auth}"}}"#);
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, body)
            } else {
                let body = format!(r#"{{"value":"{ID_TOKEN}","oidcToken":"{ID_TOKEN}"}}"#);
                (axum::http::StatusCode::OK, body)
            }
        }
    };
    let app = axum::Router::new()
        .route("/github", get(echo.clone()))
        .route("/ado", post(echo))
        .route(
            "/t/oauth2/v2.0/token",
            post(move |form: String| async move {
                let form = super::test_support::pairs(&form);
                let body = format!(
                    r#"{{"error":"invalid_client","error_description":"AADSTS700213: no match for {}"}}"#,
                    form.get("client_assertion").cloned().unwrap_or_default()
                );
                (axum::http::StatusCode::BAD_REQUEST, body)
            }),
        );
    serve(app).await
}

#[tokio::test(flavor = "current_thread")]
async fn no_ci_token_id_token_or_certificate_password_leaks() {
    let (logs, _guard) = capture_logs();
    let base = echoing_ci().await;
    let dir = tempfile::tempdir().unwrap();
    let pfx = dir.path().join("cert.pfx");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-client-aes.pfx"),
        &pfx,
    )
    .unwrap();
    let env = Env::from_pairs([
        ("AZURE_TENANT_ID", "t".to_string()),
        ("AZURE_CLIENT_ID", "app".to_string()),
        ("AZURE_AUTHORITY_HOST", format!("{base}/")),
        ("ACTIONS_ID_TOKEN_REQUEST_URL", format!("{base}/github?x=1")),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", JOB_TOKEN.to_string()),
        ("SYSTEM_OIDCREQUESTURI", format!("{base}/ado")),
        ("SYSTEM_ACCESSTOKEN", JOB_TOKEN.to_string()),
        (
            "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID",
            "conn".to_string(),
        ),
        ("AZURE_CLIENT_CERTIFICATE_PATH", pfx.display().to_string()),
        ("AZURE_CLIENT_CERTIFICATE_PASSWORD", PASSWORD.to_string()),
    ]);
    let http = HttpClients::new(Duration::from_secs(5)).unwrap();
    let cfg = AuthConfig {
        certificate_password: Some(Secret::new(PASSWORD)),
        ..Default::default()
    };
    let clean = |what: &str, text: &str| {
        assert_clean(what, text);
        for secret in [JOB_TOKEN, ID_TOKEN, PASSWORD] {
            assert!(!text.contains(secret), "{what} leaks {secret:?}: {text}");
        }
    };
    check_debug("AuthConfig", &cfg);
    clean("AuthConfig", &format!("{cfg:?}"));

    let github = GithubActionsSource::new(&cfg, &http, &env)
        .unwrap()
        .with_retry(fast_retry());
    clean("GithubActionsSource", &format!("{github:?}"));
    let err = github.fetch().await.unwrap_err();
    assert!(err.to_string().contains("AADSTS700213"), "{err}");
    clean("github-actions error", &format!("{err} {err:?}"));

    let pipelines = AzurePipelinesSource::new(&cfg, &http, &env)
        .unwrap()
        .with_retry(fast_retry());
    clean("AzurePipelinesSource", &format!("{pipelines:?}"));
    let err = pipelines.fetch().await.unwrap_err();
    clean("azure-pipelines error", &format!("{err} {err:?}"));

    let certificate = ClientCertificateSource::new(&cfg, &http, &env).unwrap();
    clean("ClientCertificateSource", &format!("{certificate:?}"));
    let err = certificate.fetch().await.unwrap_err();
    clean("client-certificate error", &format!("{err} {err:?}"));
    let wrong = AuthConfig {
        certificate_password: Some(Secret::new("WRONG-d0n7-l34k")),
        ..Default::default()
    };
    let err = ClientCertificateSource::new(&wrong, &http, &env).unwrap_err();
    assert!(err.to_string().contains("password is wrong"), "{err}");
    clean("certificate password error", &format!("{err} {err:?}"));

    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("retrying"), "logs captured: {logged}");
    clean("logs", &logged);
}
