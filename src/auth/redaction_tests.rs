//! Every type and error that handles a secret is formatted both ways (and the logs captured)
//! and searched for it.

use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::{get, post};

use super::test_support::{serve, Scripted};
use super::*;
use crate::http::HttpClients;
use crate::secret::Secret;

const SECRET: &str = "CLIENT-SECRET-d0n7-l34k";
const TOKEN: &str = "eyJ0eXAi.TOKEN-d0n7-l34k.c2ln";

fn assert_clean(what: &str, text: &str) {
    for secret in [SECRET, TOKEN, "d0n7-l34k"] {
        assert!(!text.contains(secret), "{what} leaks {secret:?}: {text}");
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

#[tokio::test(flavor = "current_thread")]
async fn no_secret_in_debug_display_errors_or_logs() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

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
    let cache = TokenCache::primed(Box::new(failing), token);
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
