//! What `/health` says about each output (readiness: can anything be delivered), whether the
//! pipeline still beats (`/live`: liveness), and the small HTTP server that answers `/health`,
//! `/live` and `/metrics` on `[agent] http_listen`.
//!
//! The server is hand-written on a tokio `TcpListener` because it answers three fixed GETs to a
//! local scraper or kubelet probe: one request per connection, a bounded head, a deadline, then
//! close. An HTTP framework would be most of the agent's dependency tree for that.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::metrics::Metrics;

/// Where an output stands, as far as delivering goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputState {
    /// Delivering, or nothing has gone wrong yet.
    Ok,
    /// 403/404 inside the permission grace: an RBAC grant or a new DCR is still propagating.
    WaitingForPermission,
    /// The service refuses the request as a whole (400 `InvalidStream`: a stream the DCR does
    /// not declare, …): the rows wait in the spool until the configuration or the DCR is fixed;
    /// `last_error_message` says what to fix.
    Misconfigured,
    /// 429/503 with Retry-After: the service is pacing us, data still flows.
    Throttled,
    /// Network errors, 5xx, or no token: nothing gets through right now.
    Failing,
}

impl OutputState {
    /// The name used in the `/health` body.
    pub fn label(self) -> &'static str {
        match self {
            OutputState::Ok => "ok",
            OutputState::WaitingForPermission => "waiting_for_permission",
            OutputState::Misconfigured => "misconfigured",
            OutputState::Throttled => "throttled",
            OutputState::Failing => "failing",
        }
    }

    /// Throttled still delivers, only slower; waiting and failing deliver nothing.
    fn can_deliver(self) -> bool {
        matches!(self, OutputState::Ok | OutputState::Throttled)
    }
}

/// One output's entry in the `/health` body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutputHealth {
    pub state: OutputState,
    /// RFC 3339 UTC, milliseconds; `null` until the first accepted request.
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    pub last_error_message: Option<String>,
}

impl OutputHealth {
    fn new() -> Self {
        OutputHealth {
            state: OutputState::Ok,
            last_success: None,
            last_error: None,
            last_error_message: None,
        }
    }
}

/// The whole answer to `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// 200 when at least one output can deliver, else 503.
    pub http_status: u16,
    /// `ok`, `degraded` or `down`.
    pub status: &'static str,
    /// A snapshot of every output, by name.
    pub outputs: BTreeMap<String, OutputHealth>,
    /// `{"status":"ok"|"degraded"|"down","outputs":{…}}`
    pub body: String,
}

impl HealthReport {
    /// One line for systemd's `STATUS=` and logs: the overall status, then each output that is
    /// not `ok` with its state (`degraded: web throttled`), or how many outputs are fine.
    pub fn summary_line(&self) -> String {
        let troubled: Vec<String> = self
            .outputs
            .iter()
            .filter(|(_, o)| o.state != OutputState::Ok)
            .map(|(name, o)| format!("{name} {}", o.state.label()))
            .collect();
        match (self.outputs.len(), troubled.is_empty()) {
            (0, _) => format!("{}: no outputs", self.status),
            (1, true) => format!("{}: 1 output", self.status),
            (n, true) => format!("{}: {n} outputs", self.status),
            (_, false) => format!("{}: {}", self.status, troubled.join(", ")),
        }
    }
}

#[derive(serde::Serialize)]
struct Body<'a> {
    status: &'static str,
    outputs: &'a BTreeMap<String, OutputHealth>,
}

/// Error messages are cut to this many bytes: a service error text can be long, and a probe
/// body should stay small.
const MAX_MESSAGE_BYTES: usize = 512;

/// Per-output health, shared by the senders (writers) and the server (reader). Writes happen
/// once per request at most, so a mutex is cheap here.
///
/// Messages passed in must be free of secrets: pass the classifier's reason or the error's
/// text, never a request or its headers.
#[derive(Debug, Default)]
pub struct Health {
    outputs: Mutex<BTreeMap<String, OutputHealth>>,
    /// What `/live` reports on, once the agent has a pipeline.
    heartbeat: std::sync::OnceLock<Heartbeat>,
}

/// The pipeline's heartbeat — the one that gates the systemd watchdog: milliseconds since
/// `started` at the last beat of the batch loops (they beat at least every second, also while
/// waiting on a full queue, so only a loop that no longer runs falls silent).
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub beat_ms: Arc<std::sync::atomic::AtomicU64>,
    pub started: tokio::time::Instant,
    /// Silent for longer than this is stuck.
    pub stale_after: Duration,
}

impl Heartbeat {
    /// Whether the last beat is recent (a beat after `now` — a clock read before it — is fine).
    pub fn alive(beat_ms: u64, now_ms: u64, stale_after: Duration) -> bool {
        now_ms.saturating_sub(beat_ms) <= stale_after.as_millis() as u64
    }

    fn check(&self) -> bool {
        let now_ms = self.started.elapsed().as_millis() as u64;
        let beat = self.beat_ms.load(std::sync::atomic::Ordering::Relaxed);
        Self::alive(beat, now_ms, self.stale_after)
    }
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares an output (state `ok`) so it is listed before its first request; without
    /// this, an agent that has not sent anything yet would report `down`. Keeps an existing
    /// entry as it is.
    pub fn add_output(&self, output: &str) {
        self.with(output, |_| {});
    }

    /// `/live` answers from `hb` from now on (before, it answers 200 while the process does).
    pub fn watch_heartbeat(&self, hb: Heartbeat) {
        let _ = self.heartbeat.set(hb);
    }

    /// What `GET /live` answers: 200 while the pipeline beats, 503 once it fell silent.
    pub fn live(&self) -> (u16, &'static str) {
        match self.heartbeat.get().map(Heartbeat::check) {
            Some(false) => (503, "stuck: the pipeline has not made progress\n"),
            _ => (200, "alive\n"),
        }
    }

    /// Forgets an output that a reload removed.
    pub fn remove_output(&self, output: &str) {
        self.lock().remove(output);
    }

    /// Entries that do not exist yet are created, as by [`Health::add_output`].
    pub fn set_state(&self, output: &str, state: OutputState) {
        self.with(output, |o| o.state = state);
    }

    /// A request was accepted: the output is `ok` again.
    pub fn record_success(&self, output: &str) {
        let now = now_rfc3339();
        self.with(output, |o| {
            o.state = OutputState::Ok;
            o.last_success = Some(now);
        });
    }

    /// A request failed. The state is left alone: the caller knows whether this means
    /// throttled, waiting or failing, and says so with [`Health::set_state`].
    pub fn record_error(&self, output: &str, message: &str) {
        let now = now_rfc3339();
        let message = truncate(message, MAX_MESSAGE_BYTES);
        self.with(output, |o| {
            o.last_error = Some(now);
            o.last_error_message = Some(message);
        });
    }

    /// One output's entry, if it exists.
    pub fn output(&self, output: &str) -> Option<OutputHealth> {
        self.lock().get(output).cloned()
    }

    /// `ok` when every output is `ok`; `degraded` (still 200) when some can deliver but not
    /// all are `ok`; `down` (503) when none can deliver, including when there are no outputs,
    /// because then nothing is being shipped.
    pub fn report(&self) -> HealthReport {
        let outputs = self.lock();
        let delivering = outputs.values().filter(|o| o.state.can_deliver()).count();
        let all_ok = outputs.values().all(|o| o.state == OutputState::Ok);
        let (http_status, status) = match delivering {
            0 => (503, "down"),
            _ if all_ok => (200, "ok"),
            _ => (200, "degraded"),
        };
        let outputs = outputs.clone();
        let body = serde_json::to_string(&Body {
            status,
            outputs: &outputs,
        })
        // Strings and enums only: serialization cannot fail; say so rather than panic.
        .unwrap_or_else(|_| format!(r#"{{"status":"{status}","outputs":{{}}}}"#));
        HealthReport {
            http_status,
            status,
            outputs,
            body,
        }
    }

    fn with(&self, output: &str, f: impl FnOnce(&mut OutputHealth)) {
        let mut outputs = self.lock();
        match outputs.get_mut(output) {
            Some(o) => f(o),
            None => f(outputs
                .entry(output.to_string())
                .or_insert_with(OutputHealth::new)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, OutputHealth>> {
        // Each update is a few field stores; a panic mid-update leaves nothing worse than a
        // stale field, so a poisoned lock is safe to keep using.
        self.outputs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    now.round(jiff::Unit::Millisecond)
        .unwrap_or(now)
        .to_string()
}

/// At most `max` bytes, cut on a character boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

// ---------------------------------------------------------------------------------------------
// The HTTP server
// ---------------------------------------------------------------------------------------------

/// A request head (request line and headers) longer than this gets 431.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Reading the request and writing the answer must fit in this, or the connection is dropped:
/// a stalled client must not hold a task forever.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Limits of [`linger`].
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;
/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 32;

/// Binds the listener for [`serve`]. Separate so that `run` reports a taken port at start-up,
/// as a configuration error, and tests can bind port 0 and read the address.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Answers `GET /metrics`, `GET /health` and `GET /` (and `HEAD` of each) until `stop` turns
/// `true` or its sender is dropped; connections still open then are closed.
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
            match tokio::time::timeout(CONNECTION_TIMEOUT, answer(stream, &metrics, &health)).await
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
async fn answer(mut stream: TcpStream, metrics: &Metrics, health: &Health) -> io::Result<()> {
    let response = match read_head(&mut stream).await? {
        Head::Complete(bytes) => match parse_request(&bytes) {
            Ok(req) => route(&req, metrics, health),
            Err(status) => Response::text(status, "bad request\n"),
        },
        Head::TooLarge => Response::text(431, "request header too large\n"),
        Head::Closed => return Ok(()),
    };
    stream.write_all(&response.encode()).await?;
    stream.shutdown().await?;
    linger(&mut stream).await;
    Ok(())
}

/// Reads and discards what the client still sends (a request body, the rest of an oversized
/// head) until it closes, briefly: closing a socket with unread bytes sends a reset, which can
/// destroy our answer before the client has read it.
async fn linger(stream: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    let mut budget = LINGER_BYTES;
    let drain = async {
        while budget > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

enum Head {
    /// Request line and headers, without the blank line.
    Complete(Vec<u8>),
    TooLarge,
    /// The client went away before finishing its head.
    Closed,
}

async fn read_head(stream: &mut TcpStream) -> io::Result<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        // Search from a little before the new bytes: the terminator may straddle reads.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf[from..]) {
            buf.truncate(from + end);
            return Ok(Head::Complete(buf));
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Ok(Head::TooLarge);
        }
    }
}

/// Offset of the blank line that ends a head: `\r\n\r\n`, or `\n\n` from lenient clients.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = memchr::memmem::find(buf, b"\r\n\r\n");
    let lf = memchr::memmem::find(buf, b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: Method,
    /// The path, without the query string.
    path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    Other,
}

/// The request line must be `METHOD SP target SP HTTP/1.x` with an origin-form target, and
/// every header line `name: value`; anything else is 400.
fn parse_request(head: &[u8]) -> Result<Request, u16> {
    let text = std::str::from_utf8(head).map_err(|_| 400u16)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().ok_or(400u16)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
        || !matches!(version, "HTTP/1.0" | "HTTP/1.1")
    {
        return Err(400);
    }
    for line in lines {
        let Some((name, _value)) = line.split_once(':') else {
            return Err(400);
        };
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(400);
        }
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    let path = target.split('?').next().unwrap_or(target).to_string();
    Ok(Request { method, path })
}

fn route(req: &Request, metrics: &Metrics, health: &Health) -> Response {
    let mut response = match req.path.as_str() {
        "/metrics" | "/health" | "/live" | "/" if req.method == Method::Other => {
            let mut r = Response::text(405, "method not allowed\n");
            r.allow = true;
            r
        }
        "/metrics" => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics.render(),
            allow: false,
            head_only: false,
        },
        "/health" => {
            let report = health.report();
            Response {
                status: report.http_status,
                content_type: "application/json",
                body: report.body,
                allow: false,
                head_only: false,
            }
        }
        "/live" => {
            let (status, body) = health.live();
            Response::text(status, body)
        }
        "/" => Response::text(200, "dcrship: see /metrics, /health and /live\n"),
        _ => Response::text(404, "not found; try /metrics, /health or /live\n"),
    };
    response.head_only = req.method == Method::Head;
    response
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
    /// Send `Allow: GET, HEAD` (with 405).
    allow: bool,
    /// HEAD: the headers of the GET answer, no body.
    head_only: bool,
}

impl Response {
    fn text(status: u16, body: &str) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
            allow: false,
            head_only: false,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if self.allow {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(report: &HealthReport) -> serde_json::Value {
        serde_json::from_str(&report.body).expect("health body is JSON")
    }

    #[test]
    fn no_outputs_is_down() {
        let h = Health::new();
        let r = h.report();
        assert_eq!(r.http_status, 503);
        assert_eq!(
            json(&r),
            serde_json::json!({"status": "down", "outputs": {}})
        );
    }

    #[test]
    fn declared_outputs_start_ok_with_nulls() {
        let h = Health::new();
        h.add_output("app");
        let r = h.report();
        assert_eq!(r.http_status, 200);
        assert_eq!(
            json(&r),
            serde_json::json!({"status": "ok", "outputs": {"app": {
                "state": "ok", "last_success": null, "last_error": null,
                "last_error_message": null
            }}})
        );
    }

    #[test]
    fn status_follows_the_states_of_all_outputs() {
        use OutputState::*;
        let cases: &[(&[OutputState], u16, &str)] = &[
            (&[Ok, Ok], 200, "ok"),
            (&[Ok, Failing], 200, "degraded"),
            (&[Throttled], 200, "degraded"),
            (&[Throttled, WaitingForPermission], 200, "degraded"),
            (&[Failing], 503, "down"),
            (&[WaitingForPermission], 503, "down"),
            (&[Failing, WaitingForPermission], 503, "down"),
            (&[Misconfigured], 503, "down"),
            (&[Ok, Misconfigured], 200, "degraded"),
        ];
        for (states, code, status) in cases {
            let h = Health::new();
            for (i, s) in states.iter().enumerate() {
                h.set_state(&format!("out{i}"), *s);
            }
            let r = h.report();
            assert_eq!(r.http_status, *code, "{states:?}");
            assert_eq!(json(&r)["status"], *status, "{states:?}");
        }
    }

    #[test]
    fn summary_line_names_the_outputs_in_trouble() {
        let h = Health::new();
        assert_eq!(h.report().summary_line(), "down: no outputs");
        h.add_output("app");
        assert_eq!(h.report().summary_line(), "ok: 1 output");
        h.add_output("web");
        assert_eq!(h.report().summary_line(), "ok: 2 outputs");
        h.set_state("web", OutputState::Throttled);
        assert_eq!(h.report().summary_line(), "degraded: web throttled");
        h.set_state("app", OutputState::WaitingForPermission);
        h.set_state("web", OutputState::Failing);
        assert_eq!(
            h.report().summary_line(),
            "down: app waiting_for_permission, web failing"
        );
        // The label and the JSON spelling agree.
        for s in [
            OutputState::Ok,
            OutputState::WaitingForPermission,
            OutputState::Misconfigured,
            OutputState::Throttled,
            OutputState::Failing,
        ] {
            assert_eq!(serde_json::to_value(s).expect("json"), s.label());
        }
    }

    #[test]
    fn success_and_error_are_recorded_with_rfc3339_times() {
        let h = Health::new();
        h.set_state("app", OutputState::WaitingForPermission);
        h.record_error("app", "403: grant Monitoring Metrics Publisher");
        let o = h.output("app").expect("entry");
        // An error leaves the state to the caller.
        assert_eq!(o.state, OutputState::WaitingForPermission);
        let at = o.last_error.expect("last_error");
        assert!(at.ends_with('Z'), "{at}");
        at.parse::<jiff::Timestamp>().expect("RFC 3339");
        assert_eq!(
            o.last_error_message.as_deref(),
            Some("403: grant Monitoring Metrics Publisher")
        );

        h.record_success("app");
        let o = h.output("app").expect("entry");
        assert_eq!(o.state, OutputState::Ok);
        let ok = o.last_success.expect("last_success");
        ok.parse::<jiff::Timestamp>().expect("RFC 3339");
        // The last error stays visible after recovery.
        assert!(o.last_error_message.is_some());
        let v = json(&h.report());
        assert_eq!(v["outputs"]["app"]["state"], "ok");
        assert_eq!(v["outputs"]["app"]["last_success"], ok.as_str());
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary_and_outputs_can_be_removed() {
        let h = Health::new();
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        h.record_error("app", &long);
        let msg = h
            .output("app")
            .and_then(|o| o.last_error_message)
            .expect("msg");
        assert!(msg.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
        assert!(msg.ends_with('…'));
        h.remove_output("app");
        assert!(h.output("app").is_none());
        assert_eq!(h.report().http_status, 503);
    }

    #[test]
    fn request_parsing() {
        let ok = |s: &str| parse_request(s.as_bytes());
        assert_eq!(
            ok("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*"),
            Ok(Request {
                method: Method::Get,
                path: "/metrics".into()
            })
        );
        assert_eq!(
            ok("HEAD /health HTTP/1.0\nHost: a").map(|r| r.method),
            Ok(Method::Head)
        );
        assert_eq!(ok("POST / HTTP/1.1").map(|r| r.method), Ok(Method::Other));
        for bad in [
            "",
            "GET",
            "GET /",
            "GET / HTTP/2.0",
            "GET  / HTTP/1.1",
            "GET http://x/ HTTP/1.1",
            "get / HTTP/1.1",
            "GET / HTTP/1.1 extra",
            "GET / HTTP/1.1\r\nno colon here",
            "GET / HTTP/1.1\r\nbad name: x",
            "GET / HTTP/1.1\r\n: empty",
        ] {
            assert_eq!(ok(bad), Err(400), "{bad:?}");
        }
        assert_eq!(parse_request(b"GET /\xff HTTP/1.1"), Err(400));
    }

    #[test]
    fn head_end_finds_either_terminator() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
    }

    // --- the server, over a real socket -----------------------------------------------------

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
        s.read_to_end(&mut out).await.expect("read");
        String::from_utf8(out).expect("utf-8")
    }

    #[tokio::test]
    async fn serves_metrics_health_and_index_over_http() {
        let srv = start().await;
        srv.metrics.records_sent("app").add(3);
        srv.health.add_output("app");
        let c = client();

        let r = c
            .get(format!("http://{}/metrics", srv.addr))
            .send()
            .await
            .expect("metrics");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = r.text().await.expect("body");
        assert!(text.contains("dcrship_records_sent_total{output=\"app\"} 3\n"));

        let r = c
            .get(format!("http://{}/health", srv.addr))
            .send()
            .await
            .expect("health");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        let v: serde_json::Value =
            serde_json::from_str(&r.text().await.expect("body")).expect("json");
        assert_eq!(v["status"], "ok");
        assert_eq!(v["outputs"]["app"]["state"], "ok");

        srv.health.set_state("app", OutputState::Failing);
        let r = c
            .get(format!("http://{}/health", srv.addr))
            .send()
            .await
            .expect("health");
        assert_eq!(r.status(), 503);
        let v: serde_json::Value =
            serde_json::from_str(&r.text().await.expect("body")).expect("json");
        assert_eq!(v["status"], "down");

        let r = c
            .get(format!("http://{}/", srv.addr))
            .send()
            .await
            .expect("index");
        assert_eq!(r.status(), 200);
        assert!(r.text().await.expect("body").contains("/metrics"));

        let r = c
            .get(format!("http://{}/nope", srv.addr))
            .send()
            .await
            .expect("404");
        assert_eq!(r.status(), 404);

        let r = c
            .post(format!("http://{}/metrics", srv.addr))
            .send()
            .await
            .expect("405");
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["allow"], "GET, HEAD");

        let r = c
            .head(format!("http://{}/metrics", srv.addr))
            .send()
            .await
            .expect("head");
        assert_eq!(r.status(), 200);
        assert!(r.text().await.expect("body").is_empty());

        srv.stop.send(true).expect("stop");
        tokio::time::timeout(Duration::from_secs(5), srv.task)
            .await
            .expect("server stops")
            .expect("no panic");
    }

    #[test]
    fn the_heartbeat_is_alive_until_it_is_older_than_the_window() {
        let w = Duration::from_secs(30);
        let cases = [
            (100_000, 100_500, true),
            (100_000, 130_000, true),
            (100_000, 130_001, false),
            (0, 3_600_000, false),
            (5_000, 0, true), // a clock read before the beat
        ];
        for (beat, now, want) in cases {
            assert_eq!(Heartbeat::alive(beat, now, w), want, "{beat} {now}");
        }
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
        let answer = raw(srv.addr, b"NONSENSE\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(answer.contains("Content-Length: 12\r\n"), "{answer}");
        assert!(answer.contains("Connection: close\r\n"));

        let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
        while big.len() <= MAX_HEAD_BYTES + 100 {
            big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let answer = raw(srv.addr, &big).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");

        // A bare-LF client still gets its answer.
        let answer = raw(srv.addr, b"GET /health HTTP/1.0\n\n").await;
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert!(
            answer.ends_with(r#"{"status":"down","outputs":{}}"#),
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
