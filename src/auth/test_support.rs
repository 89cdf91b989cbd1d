//! Test helpers shared by the auth tests: fake HTTP endpoints on 127.0.0.1:0, a recorder of
//! what they received, a short retry schedule, and a scripted in-memory [`TokenSource`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use super::retry::RetrySchedule;
use super::{AccessToken, AuthError, BoxFuture, TokenSource};
use crate::secret::Secret;

/// Retries in milliseconds, so tests doing real network I/O stay fast (no paused clock there:
/// it would fire reqwest's timeouts).
pub(crate) fn fast_retry() -> RetrySchedule {
    RetrySchedule {
        first_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        retries: 3,
    }
}

/// Serves `app` on an ephemeral loopback port; returns its base URL (`http://127.0.0.1:port`).
pub(crate) async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A raw TCP server on 127.0.0.1 that hands every connection to `handle` (for answers no HTTP
/// framework would send: endless bodies, silence). Returns its base URL.
pub(crate) async fn serve_raw<F, Fut>(handle: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(handle(socket));
        }
    });
    format!("http://{addr}")
}

/// Reads one request's head from `socket` (up to the blank line).
pub(crate) async fn read_head(socket: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match socket.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A loopback port nobody listens on, for "connection refused".
pub(crate) async fn unused_port() -> u16 {
    // Bound but not listening: connections are refused, and no other test's fake can be given
    // the port while this test runs (a released port was, and a test read its answers). The
    // socket is leaked on purpose, to the end of the test process.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    std::mem::forget(socket);
    port
}

/// Parses `a=1&b=2` (a query string or a form body).
pub(crate) fn pairs(encoded: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(encoded.as_bytes())
        .into_owned()
        .collect()
}

/// A fake Entra token endpoint for `tenant`, answering each POST with the next scripted
/// (status, body); the last repeats. Returns its base URL (an authority host) and the recorder
/// of the form fields posted.
pub(crate) async fn fake_entra(tenant: &str, script: Vec<(u16, String)>) -> (String, Recorded) {
    let recorded = Recorded::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let rec = recorded.clone();
    let app = axum::Router::new().route(
        &format!("/{tenant}/oauth2/v2.0/token"),
        post(move |headers: HeaderMap, form: String| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let (status, body) = script[n.min(script.len() - 1)].clone();
            rec.push(headers, pairs(&form));
            async move { (StatusCode::from_u16(status).unwrap(), body) }
        }),
    );
    (serve(app).await, recorded)
}

/// What Azure's IMDS answers: 400 `bad_request_102` to a request without `Metadata: true` (the
/// question `auto` asks first), else `body` with 200.
pub(crate) fn imds_answer(headers: &HeaderMap, body: &str) -> (StatusCode, String) {
    if headers.get("metadata").is_some_and(|v| v == "true") {
        (StatusCode::OK, body.to_string())
    } else {
        (
            StatusCode::BAD_REQUEST,
            r#"{"error":"invalid_request","error_description":"Required metadata header not specified"}"#
                .to_string(),
        )
    }
}

/// One request a fake endpoint received: its headers and its query or form fields.
pub(crate) type Request = (HeaderMap, HashMap<String, String>);

/// What a fake endpoint received, in order.
#[derive(Clone, Default)]
pub(crate) struct Recorded(Arc<Mutex<Vec<Request>>>);

impl Recorded {
    pub(crate) fn push(&self, headers: HeaderMap, fields: HashMap<String, String>) {
        self.0.lock().unwrap().push((headers, fields));
    }

    pub(crate) fn all(&self) -> Vec<Request> {
        self.0.lock().unwrap().clone()
    }

    pub(crate) fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The one request received; fails the test if there were more or none.
    pub(crate) fn only(&self) -> Request {
        let all = self.0.lock().unwrap();
        assert_eq!(all.len(), 1, "expected exactly one request");
        all[0].clone()
    }
}

/// A token with the given value, expiring `secs` from now.
pub(crate) fn token_for(value: &str, secs: u64) -> AccessToken {
    AccessToken {
        token: Secret::new(value),
        expires_at: jiff::Timestamp::now()
            .checked_add(Duration::from_secs(secs))
            .unwrap(),
    }
}

/// Counts fetches.
#[derive(Clone, Default, Debug)]
pub(crate) struct Calls(Arc<AtomicUsize>);

impl Calls {
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A source answering each fetch with the next scripted result.
#[derive(Debug)]
pub(crate) struct Scripted {
    script: Mutex<VecDeque<Result<AccessToken, AuthError>>>,
    calls: Calls,
    delay: Option<Duration>,
}

impl Scripted {
    pub(crate) fn new(script: Vec<Result<AccessToken, AuthError>>) -> Self {
        Scripted {
            script: Mutex::new(script.into()),
            calls: Calls::default(),
            delay: None,
        }
    }

    /// Each fetch first sleeps this long (on tokio's clock).
    pub(crate) fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    pub(crate) fn calls(&self) -> Calls {
        self.calls.clone()
    }
}

impl TokenSource for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }

    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(async move {
            self.calls.0.fetch_add(1, Ordering::SeqCst);
            if let Some(delay) = self.delay {
                tokio::time::sleep(delay).await;
            }
            self.script.lock().unwrap().pop_front().unwrap_or_else(|| {
                Err(AuthError::Failed {
                    source_name: "scripted",
                    reason: "script exhausted".into(),
                })
            })
        })
    }
}
