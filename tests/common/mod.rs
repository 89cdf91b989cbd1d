//! Fakes of the Azure endpoints for end-to-end tests: a small HTTP/1.1 server on 127.0.0.1 that
//! records every request and answers from a script — including the faults real networks have
//! (a dropped connection, an answer after the work was done, a slow answer). Also the helpers to
//! run the real `dcrship` binary against it.
//!
//! For ingestion requests the fake first answers as the real service does before any script
//! runs (bodies as recorded against Azure): a DCR it does not know gets 404 `NotFound`, a stream
//! the DCR does not declare 400 `InvalidStream`, a body over 1 MiB (gzip or not) 413
//! `ContentLengthLimitExceeded`. It knows [`DCR`] with [`STREAM`] unless told otherwise
//! ([`Fake::declare`], [`Fake::forget_dcr`]). Every answer carries an `x-ms-request-id`.

#![allow(dead_code)] // each test file uses a different part

pub mod agent;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Req {
    pub n: usize,
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The status the script answered with; `None` when it dropped the connection.
    pub answered: Option<u16>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The body, gunzipped when it says gzip.
    pub fn raw_body(&self) -> Vec<u8> {
        if self.header("content-encoding") == Some("gzip") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&self.body[..])
                .read_to_end(&mut out)
                .expect("gzip body");
            out
        } else {
            self.body.clone()
        }
    }

    /// The body's length gunzipped, from the gzip trailer (ISIZE), without decompressing.
    pub fn raw_len(&self) -> usize {
        match self.header("content-encoding") {
            Some("gzip") if self.body.len() >= 18 => {
                let t = &self.body[self.body.len() - 4..];
                u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as usize
            }
            _ => self.body.len(),
        }
    }

    /// The rows of an ingestion request (the body must be a JSON array).
    pub fn rows(&self) -> Vec<Value> {
        match serde_json::from_slice(&self.raw_body()).expect("JSON body") {
            Value::Array(rows) => rows,
            other => panic!("body is not a JSON array: {other}"),
        }
    }

    pub fn is_ingest(&self) -> bool {
        self.method == "POST" && self.path.contains("/dataCollectionRules/")
    }

    pub fn form(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }

    pub fn query_map(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .into_owned()
            .collect()
    }
}

/// What the fake does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Close the connection without answering.
    Drop,
    /// Answer after a delay.
    Late(Duration, Box<Reply>),
}

impl Reply {
    fn status(&self) -> Option<u16> {
        match self {
            Reply::Status(s) | Reply::Full { status: s, .. } => Some(*s),
            Reply::Drop => None,
            Reply::Late(_, r) => r.status(),
        }
    }

    pub fn json(status: u16, body: Value) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    pub fn with_header(status: u16, name: &str, value: &str) -> Reply {
        Reply::Full {
            status,
            headers: vec![(name.into(), value.into())],
            body: String::new(),
        }
    }

    /// An error as the ingestion service writes it: `x-ms-error-code` and
    /// `{"error":{"code","message"}}`.
    pub fn azure_error(status: u16, code: &str, message: &str) -> Reply {
        Reply::Full {
            status,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-ms-error-code".into(), code.into()),
            ],
            body: serde_json::json!({"error": {"code": code, "message": message}}).to_string(),
        }
    }

    /// The service's 413 (text from Azure.Monitor.Ingestion's live tests).
    pub fn too_large() -> Reply {
        Reply::azure_error(
            413,
            "ContentLengthLimitExceeded",
            "Maximum allowed content length: 1048576 bytes (1 MB).",
        )
    }

    /// The same answer with `x-ms-request-id` added (unless the script set one).
    fn with_request_id(self, id: &str) -> Reply {
        let add = |mut headers: Vec<(String, String)>| {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("x-ms-request-id"))
            {
                headers.push(("x-ms-request-id".into(), id.into()));
            }
            headers
        };
        match self {
            Reply::Status(status) => Reply::Full {
                status,
                headers: add(Vec::new()),
                body: String::new(),
            },
            Reply::Full {
                status,
                headers,
                body,
            } => Reply::Full {
                status,
                headers: add(headers),
                body,
            },
            Reply::Drop => Reply::Drop,
            Reply::Late(d, r) => Reply::Late(d, Box::new(r.with_request_id(id))),
        }
    }
}

/// The `x-ms-request-id` of the fake's `n`th answer: GUID-shaped, like the service's.
pub fn fake_request_id(n: usize) -> String {
    format!("5e7a0000-0000-4000-8000-{n:012x}")
}

type Script = dyn Fn(&Req) -> Reply + Send + Sync;

/// The DCRs and streams the fake's ingestion endpoint knows.
#[derive(Debug, Clone)]
pub struct Rules {
    dcrs: HashMap<String, Vec<String>>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            dcrs: HashMap::from([(DCR.to_string(), vec![STREAM.to_string()])]),
        }
    }
}

/// The service's cap on a body, compressed and not (413 past it).
pub const MAX_BODY: usize = 1_048_576;

impl Rules {
    /// The real service's answer to an ingestion request it refuses before looking at rows.
    fn refuse(&self, req: &Req) -> Option<Reply> {
        if !req.is_ingest() {
            return None;
        }
        let mut segs = req.path.rsplit('/');
        let (stream, _, dcr) = (segs.next()?, segs.next()?, segs.next()?);
        let Some(streams) = self.dcrs.get(dcr) else {
            return Some(Reply::azure_error(
                404,
                "NotFound",
                &format!("Data collection rule with immutable Id '{dcr}' not found."),
            ));
        };
        if !streams.iter().any(|s| s == stream) {
            return Some(Reply::azure_error(
                400,
                "InvalidStream",
                &format!(
                    "The stream {stream} was not configured in the data collection rule with immutable Id {dcr}."
                ),
            ));
        }
        if req.body.len() > MAX_BODY || req.raw_len() > MAX_BODY {
            return Some(Reply::too_large());
        }
        None
    }
}

/// The fake server. Dropping it stops accepting.
pub struct Fake {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<Req>>>,
    rules: Arc<Mutex<Rules>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    pub async fn start(script: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve_on(listener, script)
    }

    /// A fake on a given loopback address (to bring back an endpoint that was down).
    pub async fn start_on(
        addr: SocketAddr,
        script: impl Fn(&Req) -> Reply + Send + Sync + 'static,
    ) -> Fake {
        assert!(addr.ip().is_loopback());
        let listener = TcpListener::bind(addr).await.expect("bind");
        Self::serve_on(listener, script)
    }

    fn serve_on(
        listener: TcpListener,
        script: impl Fn(&Req) -> Reply + Send + Sync + 'static,
    ) -> Fake {
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let rules = Arc::new(Mutex::new(Rules::default()));
        let script: Arc<Script> = Arc::new(script);
        let counter = Arc::new(AtomicUsize::new(0));
        let (l2, r2) = (log.clone(), rules.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (log, rules, script, counter) =
                    (l2.clone(), r2.clone(), script.clone(), counter.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, log, rules, script, counter).await;
                });
            }
        });
        Fake {
            addr,
            log,
            rules,
            task,
        }
    }

    /// The DCR `dcr` declares `stream` (as well as what it declared before).
    pub fn declare(&self, dcr: &str, stream: &str) {
        self.rules
            .lock()
            .expect("rules")
            .dcrs
            .entry(dcr.to_string())
            .or_default()
            .push(stream.to_string());
    }

    /// The service no longer knows `dcr` (404 `NotFound`).
    pub fn forget_dcr(&self, dcr: &str) {
        self.rules.lock().expect("rules").dcrs.remove(dcr);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Req> {
        self.log.lock().expect("log").clone()
    }

    pub fn ingest_requests(&self) -> Vec<Req> {
        self.requests().into_iter().filter(Req::is_ingest).collect()
    }

    /// Ingestion requests answered 2xx: the rows that landed.
    pub fn accepted(&self) -> Vec<Req> {
        self.ingest_requests()
            .into_iter()
            .filter(|r| r.answered.is_some_and(|s| (200..300).contains(&s)))
            .collect()
    }
}

async fn serve(
    sock: tokio::net::TcpStream,
    log: Arc<Mutex<Vec<Req>>>,
    rules: Arc<Mutex<Rules>>,
    script: Arc<Script>,
    counter: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let mut rd = BufReader::new(sock);
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            rd.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        rd.read_exact(&mut body).await?;
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target.clone(), String::new()),
        };
        let req = Req {
            n: counter.fetch_add(1, Ordering::SeqCst),
            at: Instant::now(),
            method,
            path,
            query,
            headers,
            body,
            answered: None,
        };
        let refused = rules.lock().expect("rules").refuse(&req);
        let mut reply = refused
            .unwrap_or_else(|| script(&req))
            .with_request_id(&fake_request_id(req.n));
        let mut req = req;
        req.answered = reply.status();
        log.lock().expect("log").push(req);
        loop {
            match reply {
                Reply::Late(d, r) => {
                    tokio::time::sleep(d).await;
                    reply = *r;
                }
                Reply::Drop => return Ok(()),
                Reply::Status(s) => {
                    write_answer(rd.get_mut(), s, &[], "").await?;
                    break;
                }
                Reply::Full {
                    status,
                    headers,
                    body,
                } => {
                    write_answer(rd.get_mut(), status, &headers, &body).await?;
                    break;
                }
            }
        }
    }
}

async fn write_answer(
    sock: &mut tokio::net::TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    sock.write_all(out.as_bytes()).await
}

pub const DCR: &str = "dcr-0123456789abcdef0123456789abcdef";
pub const STREAM: &str = "Custom-Test_CL";

/// An unsigned JWT with the given `oid`, good for `static` auth (the service fake does not
/// verify signatures; dcrship only reads claims).
pub fn fake_jwt(oid: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let exp = jiff::Timestamp::now().as_second() + 3600;
    format!(
        "{}.{}.{}",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(format!(
            r#"{{"oid":"{oid}","exp":{exp},"aud":"https://monitor.azure.com"}}"#
        )),
        b64.encode("sig-not-checked")
    )
}

/// `dcrship` with a clean environment: no Azure variables from the machine leak in.
/// `DCRSHIP_TEST_BIN` runs another build instead (to measure an older one).
pub fn dcrship() -> tokio::process::Command {
    let bin = std::env::var_os("DCRSHIP_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_dcrship").into());
    let mut c = tokio::process::Command::new(bin);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        // nothing on this machine is an identity endpoint: fail fast if one is tried
        .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    c
}

/// `dcrship send` aimed at the fake with a static token.
pub fn send_to(fake: &Fake, token: &str) -> tokio::process::Command {
    let mut c = dcrship();
    c.arg("send")
        .args(["--endpoint", &fake.url(), "--dcr", DCR, "--stream", STREAM])
        .args(["--auth", "static", "--no-progress"])
        .env("DCRSHIP_ACCESS_TOKEN", token);
    c
}

/// `dcrship run` from flags aimed at the fake: [`DCR`] and [`STREAM`], a static `token`, 200 ms
/// batches, state in `state`, `--http-listen` on `http` (none when `None`).
pub fn run_to(
    fake: &Fake,
    state: &Path,
    http: Option<SocketAddr>,
    token: &str,
) -> tokio::process::Command {
    run_at(&fake.url(), state, http, token)
}

/// [`run_to`] with any `endpoint` URL (one nothing listens on, say).
pub fn run_at(
    endpoint: &str,
    state: &Path,
    http: Option<SocketAddr>,
    token: &str,
) -> tokio::process::Command {
    let mut c = dcrship();
    c.arg("run")
        .args(["--endpoint", endpoint, "--dcr", DCR, "--stream", STREAM])
        .args(["--auth", "static", "--batch-timeout", "200ms"])
        .arg("--state-dir")
        .arg(state)
        .args([
            "--http-listen",
            &http.map(|a| a.to_string()).unwrap_or_default(),
        ])
        .env("DCRSHIP_ACCESS_TOKEN", token);
    c
}

/// `dcrship run --config FILE` with a static `token`.
pub fn run_config(config: &Path, token: &str) -> tokio::process::Command {
    let mut c = dcrship();
    c.arg("run")
        .arg("--config")
        .arg(config)
        .env("DCRSHIP_ACCESS_TOKEN", token);
    c
}

/// A loopback address nobody listens on right now (bound, read, released).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub async fn run(mut c: tokio::process::Command) -> Output {
    tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .expect("dcrship finished within 2 minutes")
        .expect("dcrship ran")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn summary(o: &Output) -> Value {
    let out = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(out.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("summary JSON ({e}): {out}\nstderr: {}", stderr(o)))
}

/// NDJSON rows `{"id":i,"msg":"..."}` for ids in the range.
pub fn ndjson(ids: std::ops::Range<u64>, pad: usize) -> String {
    ids.map(|i| {
        format!(
            "{{\"id\":{i},\"msg\":\"message {i} {}\"}}\n",
            "x".repeat(pad)
        )
    })
    .collect()
}

/// How many times each id arrived in the fake's accepted requests (status from the script is
/// not known here, so callers pass the requests that were answered 204).
pub fn id_counts(reqs: &[Req]) -> HashMap<u64, usize> {
    let mut m = HashMap::new();
    for r in reqs {
        for row in r.rows() {
            if let Some(id) = row["id"].as_u64() {
                *m.entry(id).or_insert(0) += 1;
            }
        }
    }
    m
}

/// Lines `"{tag}-{i:05} …"` for i in the range.
pub fn lines(tag: &str, ids: std::ops::Range<usize>) -> Vec<String> {
    ids.map(|i| format!("{tag}-{i:05} some log text")).collect()
}

/// `lines` as text, each with its newline.
pub fn text_of(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Appends `lines`, each with a newline, to `path` (created if need be).
pub fn append(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text_of(lines).as_bytes()).expect("append");
}

/// How many times each `RawData` arrived in requests the fake answered 2xx.
pub fn raw_counts(fake: &Fake) -> HashMap<String, usize> {
    column_counts(fake, "RawData")
}

/// How many times each string value of `column` arrived in requests the fake answered 2xx.
pub fn column_counts(fake: &Fake, column: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in fake.accepted() {
        for row in r.rows() {
            if let Some(raw) = row[column].as_str() {
                *m.entry(raw.to_string()).or_insert(0) += 1;
            }
        }
    }
    m
}

/// Every value of `want` counted exactly once in `got`, and nothing else (the value of
/// [`raw_counts`] or [`column_counts`]); the failure lists the first ten of each kind.
pub fn assert_each_once(got: &HashMap<String, usize>, want: &[String]) {
    let missing: Vec<&String> = want.iter().filter(|l| !got.contains_key(*l)).collect();
    let dup: Vec<(&String, &usize)> = got.iter().filter(|(_, n)| **n > 1).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains(k)).collect();
    assert!(
        missing.is_empty() && dup.is_empty() && extra.is_empty(),
        "missing {} {:?}\nduplicated {} {:?}\nunexpected {} {:?}",
        missing.len(),
        missing.iter().take(10).collect::<Vec<_>>(),
        dup.len(),
        dup.iter().take(10).collect::<Vec<_>>(),
        extra.len(),
        extra.iter().take(10).collect::<Vec<_>>(),
    );
}

/// True when every line of `lines` arrived at least once (as `RawData`).
pub fn all_arrived(fake: &Fake, lines: &[String]) -> bool {
    let got = raw_counts(fake);
    lines.iter().all(|l| got.contains_key(l))
}

pub fn write_file(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// Entra's answer to a client-credentials grant (numbers, as Entra writes them).
pub fn entra_token(access_token: &str, expires_in: i64) -> Reply {
    Reply::json(
        200,
        serde_json::json!({
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": access_token,
        }),
    )
}

/// The answer of IMDS or the Arc agent: every value a string, as they write them.
pub fn identity_endpoint_token(access_token: &str) -> Reply {
    let now = jiff::Timestamp::now().as_second();
    Reply::json(
        200,
        serde_json::json!({
            "access_token": access_token,
            "refresh_token": "",
            "expires_in": "3599",
            "expires_on": (now + 3599).to_string(),
            "not_before": (now - 300).to_string(),
            "resource": "https://monitor.azure.com",
            "token_type": "Bearer",
        }),
    )
}

/// Every one of `rows` rows arrived exactly once, and the summary says so.
pub fn assert_all_rows_once(fake: &Fake, out: &Output, rows: u64) {
    let counts = id_counts(&fake.accepted());
    assert_eq!(counts.len() as u64, rows, "{}", stderr(out));
    assert!(counts.values().all(|&n| n == 1), "duplicates: {counts:?}");
    let s = summary(out);
    assert_eq!(s["rows_read"], rows);
    assert_eq!(s["rows_sent"], rows);
    assert_eq!(s["rows_unsent"], 0);
    assert_eq!(s["exit_code"], 0);
}

/// None of `secrets` is in stderr or stdout.
pub fn assert_no_leak(out: &Output, secrets: &[&str]) {
    let all = format!("{}\n{}", stderr(out), String::from_utf8_lossy(&out.stdout));
    for s in secrets {
        assert!(!s.is_empty() && !all.contains(s), "{s:?} leaked:\n{all}");
    }
}

/// The `pattern = '…'` of the `[inputs.access]` recipe in README.md or agent.toml.example (where
/// it is commented out), so tests run the recipe as documented.
pub fn recipe_pattern(doc: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(doc);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{doc}: {e}"));
    let block = text
        .split("[inputs.access]")
        .nth(1)
        .unwrap_or_else(|| panic!("{doc} has no [inputs.access] recipe"));
    let line = block
        .lines()
        .map(|l| l.trim_start_matches("# "))
        .find(|l| l.starts_with("pattern = '"))
        .unwrap_or_else(|| panic!("{doc}: no pattern in the access recipe"));
    line["pattern = '".len()..line.len() - 1].to_string()
}
