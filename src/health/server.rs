//! The HTTP server on `[agent] http_listen`: `GET /metrics` (Prometheus text), `/health`
//! (readiness, JSON), `/live` (liveness) and `/` (an index), and `HEAD` of each.
//!
//! hyper's HTTP/1 server parses the requests (already in the tree through reqwest; only its
//! server half is added). One request per connection, a bounded head (a longer one gets 431
//! from hyper), a deadline per connection, at most [`MAX_CONNECTIONS`] at once; the answers
//! come from [`route`], a pure function of the method and the path.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::Health;
use crate::metrics::Metrics;

/// The buffer a request head must fit in (hyper's smallest allowed); a longer head gets 431.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Reading the request and writing the answer must fit in this, or the connection is dropped:
/// a stalled client must not hold a task forever.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 32;

/// Binds the listener for [`serve`]. Separate so that `run` reports a taken port at start-up,
/// as a configuration error, and tests can bind port 0 and read the address.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Answers until `stop` turns `true` or its sender is dropped; connections still open then are
/// closed.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed; nothing sensible to do if it were
            },
            changed = stop.changed() => {
                if changed.is_err() { break }
                continue;
            }
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Usually out of file descriptors; pause rather than spin.
                    tracing::warn!(error = %e, "metrics/health server: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            changed = stop.changed() => {
                if changed.is_err() { break }
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        let health = Arc::clone(&health);
        connections.spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection(stream, metrics, health))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "metrics/health connection failed"),
                Err(_) => tracing::debug!("metrics/health connection timed out"),
            }
        });
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

/// Serves one request on `stream`, then closes it.
async fn connection(
    stream: TcpStream,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> Result<(), hyper::Error> {
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let answer = route(req.method(), req.uri().path(), &metrics, &health);
        async move { Ok::<_, Infallible>(answer.into_response()) }
    });
    hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await
}

/// An answer, before it becomes a hyper response.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Send `Allow: GET, HEAD` (with 405).
    pub allow: bool,
}

impl Answer {
    fn text(status: u16, body: &str) -> Self {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
            allow: false,
        }
    }

    /// hyper leaves the body out of the answer to a HEAD itself, keeping its length.
    fn into_response(self) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(Bytes::from(self.body)));
        *r.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.allow {
            h.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        r
    }
}

/// What each method and path gets.
pub fn route(method: &Method, path: &str, metrics: &Metrics, health: &Health) -> Answer {
    let known = matches!(path, "/metrics" | "/health" | "/live" | "/");
    if known && method != Method::GET && method != Method::HEAD {
        return Answer {
            allow: true,
            ..Answer::text(405, "method not allowed\n")
        };
    }
    match path {
        "/metrics" => Answer {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics.render(),
            allow: false,
        },
        "/health" => {
            let report = health.report();
            Answer {
                status: report.http_status,
                content_type: "application/json",
                body: report.body,
                allow: false,
            }
        }
        "/live" => {
            let (status, body) = health.live();
            Answer::text(status, body)
        }
        "/" => Answer::text(200, "dcrship: see /metrics, /health and /live\n"),
        _ => Answer::text(404, "not found; try /metrics, /health or /live\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Heartbeat, OutputState};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn routes_by_method_and_path() {
        let (m, h) = (Metrics::new(), Health::new());
        let cases: &[(Method, &str, u16, bool)] = &[
            (Method::GET, "/metrics", 200, false),
            (Method::HEAD, "/metrics", 200, false),
            (Method::GET, "/health", 503, false), // no outputs
            (Method::GET, "/live", 200, false),
            (Method::GET, "/", 200, false),
            (Method::GET, "/nope", 404, false),
            (Method::POST, "/nope", 404, false),
            (Method::POST, "/metrics", 405, true),
            (Method::PUT, "/health", 405, true),
            (Method::DELETE, "/", 405, true),
        ];
        for (method, path, status, allow) in cases {
            let a = route(method, path, &m, &h);
            assert_eq!((a.status, a.allow), (*status, *allow), "{method} {path}");
        }
        assert!(route(&Method::GET, "/metrics", &m, &h)
            .body
            .contains("# TYPE dcrship_build_info gauge"));
    }

    // --- over a real socket -----------------------------------------------------------------

    struct Server {
        addr: SocketAddr,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    }

    async fn start() -> Server {
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::new());
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(serve(
            listener,
            Arc::clone(&metrics),
            Arc::clone(&health),
            rx,
        ));
        Server {
            addr,
            stop,
            task,
            metrics,
            health,
        }
    }

    fn client() -> reqwest::Client {
        // Installs the rustls provider reqwest needs even for plain http; `local` never uses
        // a proxy, so a proxy in the test environment cannot intercept 127.0.0.1.
        crate::http::HttpClients::new(Duration::from_secs(10))
            .expect("client")
            .local
    }

    /// Writes raw bytes and reads the whole answer until the server closes.
    async fn raw(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request).await.expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn serves_metrics_health_and_index_over_http() {
        let srv = start().await;
        srv.metrics.records_sent("app").add(3);
        srv.health.add_output("app");
        let c = client();
        let url = |p: &str| format!("http://{}{p}", srv.addr);

        let r = c.get(url("/metrics")).send().await.expect("metrics");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert_eq!(r.headers()["cache-control"], "no-store");
        let text = r.text().await.expect("body");
        assert!(text.contains("dcrship_records_sent_total{output=\"app\"} 3\n"));

        let r = c.get(url("/health")).send().await.expect("health");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        let v: serde_json::Value =
            serde_json::from_str(&r.text().await.expect("body")).expect("json");
        assert_eq!(v["status"], "ok");
        assert_eq!(v["outputs"]["app"]["state"], "ok");

        srv.health.set_state("app", OutputState::Failing);
        let r = c.get(url("/health")).send().await.expect("health");
        assert_eq!(r.status(), 503);
        let v: serde_json::Value =
            serde_json::from_str(&r.text().await.expect("body")).expect("json");
        assert_eq!(v["status"], "down");

        let r = c.get(url("/")).send().await.expect("index");
        assert_eq!(r.status(), 200);
        assert!(r.text().await.expect("body").contains("/metrics"));

        let r = c.get(url("/nope")).send().await.expect("404");
        assert_eq!(r.status(), 404);

        let r = c
            .post(url("/metrics"))
            .body("x".repeat(100_000))
            .send()
            .await
            .expect("405");
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["allow"], "GET, HEAD");

        let r = c.head(url("/metrics")).send().await.expect("head");
        assert_eq!(r.status(), 200);
        assert!(r.text().await.expect("body").is_empty());

        srv.stop.send(true).expect("stop");
        tokio::time::timeout(Duration::from_secs(5), srv.task)
            .await
            .expect("server stops")
            .expect("no panic");
    }

    #[tokio::test]
    async fn live_turns_503_when_the_pipeline_stops_beating() {
        let srv = start().await;
        let get = |path: &'static str| {
            let url = format!("http://{}{path}", srv.addr);
            async move {
                let r = client().get(url).send().await.expect("live");
                (r.status().as_u16(), r.text().await.expect("body"))
            }
        };
        assert_eq!(
            get("/live").await.0,
            200,
            "no pipeline yet: the process answers"
        );
        // A pipeline that beat last a minute ago, with a 30 s window.
        let started = tokio::time::Instant::now()
            .checked_sub(Duration::from_secs(60))
            .expect("a minute ago");
        let beat = Arc::new(std::sync::atomic::AtomicU64::new(0));
        srv.health.watch_heartbeat(Heartbeat {
            beat_ms: beat.clone(),
            started,
            stale_after: Duration::from_secs(30),
        });
        let (status, body) = get("/live").await;
        assert_eq!((status, body.contains("stuck")), (503, true), "{body}");
        // the delivery state says nothing about liveness, and the other way round
        assert_eq!(get("/health").await.0, 503, "no outputs: not ready");
        beat.store(
            started.elapsed().as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        assert_eq!(get("/live").await, (200, "alive\n".to_string()));
        srv.stop.send(true).expect("stop");
    }

    #[tokio::test]
    async fn malformed_and_oversized_requests_are_refused() {
        let srv = start().await;
        for bad in [
            &b"NONSENSE\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
            b"GET / HTTP/1.1\r\nbad name: x\r\n\r\n",
        ] {
            let answer = raw(srv.addr, bad).await;
            assert!(
                answer.starts_with("HTTP/1.1 400 ") || answer.starts_with("HTTP/1.1 505 "),
                "{:?}: {answer}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
        while big.len() <= MAX_HEAD_BYTES + 100 {
            big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        big.extend_from_slice(b"\r\n");
        let answer = raw(srv.addr, &big).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");

        // HTTP/1.0, and a query string, still get their answer; the connection then closes.
        let answer = raw(srv.addr, b"GET /health?verbose=1 HTTP/1.0\r\n\r\n").await;
        assert!(
            answer.starts_with("HTTP/1.0 503 ") || answer.starts_with("HTTP/1.1 503 "),
            "{answer}"
        );
        assert!(
            answer.ends_with(r#"{"status":"down","outputs":{}}"#),
            "{answer}"
        );
        let answer = raw(srv.addr, b"GET /live HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        let _ = srv.stop.send(true);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_dropped_after_the_timeout() {
        let srv = start().await;
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\n")
            .await
            .expect("write");
        // With time paused, the runtime jumps to the connection deadline once idle.
        let mut out = Vec::new();
        let n = tokio::time::timeout(CONNECTION_TIMEOUT * 2, s.read_to_end(&mut out))
            .await
            .expect("closed by the server before our own timeout")
            .expect("read");
        assert_eq!(n, 0, "closed without an answer");
        // The server still answers others.
        let answer = raw(srv.addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        let _ = srv.stop.send(true);
    }

    #[tokio::test]
    async fn dropping_the_stop_sender_also_stops_the_server() {
        let srv = start().await;
        drop(srv.stop);
        tokio::time::timeout(Duration::from_secs(5), srv.task)
            .await
            .expect("server stops")
            .expect("no panic");
        assert!(
            TcpStream::connect(srv.addr).await.is_err(),
            "listener closed"
        );
    }
}
