//! Fakes of the Azure endpoints for end-to-end tests: a small HTTP/1.1 server on 127.0.0.1 that
//! records every request and answers from a script — including the faults real networks have
//! (a dropped connection, an answer after the work was done, a slow answer). Also the helpers to
//! run the real `dcrship` binary against it.

#![allow(dead_code)] // each test file uses a different part

pub mod agent;

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
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
}

type Script = dyn Fn(&Req) -> Reply + Send + Sync;

/// The fake server. Dropping it stops accepting.
pub struct Fake {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<Req>>>,
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
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let counter = Arc::new(AtomicUsize::new(0));
        let l2 = log.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (log, script, counter) = (l2.clone(), script.clone(), counter.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, log, script, counter).await;
                });
            }
        });
        Fake { addr, log, task }
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
        let mut reply = script(&req);
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
