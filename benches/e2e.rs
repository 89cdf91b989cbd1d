//! End-to-end throughput: the release `dcrship send` uploads an NDJSON file to a fake DCE on
//! loopback; we print rows/s, MB/s, the child's CPU seconds and its peak RSS.
//!
//! ```text
//! cargo bench --bench e2e     # cargo builds target/release/dcrship before any bench
//! DCRSHIP_BENCH_ROWS=200000 DCRSHIP_BENCH_CONCURRENCY=8 DCRSHIP_BENCH_LATENCY_MS=20 \
//!   DCRSHIP_BENCH_VERIFY=1 cargo bench --bench e2e
//! ```
//!
//! | env | default | |
//! |---|---|---|
//! | `DCRSHIP_BENCH_ROWS` | 1000000 | rows of about 200 bytes |
//! | `DCRSHIP_BENCH_CONCURRENCY` | dcrship's own | `--concurrency` |
//! | `DCRSHIP_BENCH_LATENCY_MS` | 0 | delay before each 204, to mimic a remote DCE |
//! | `DCRSHIP_BENCH_VERIFY` | off | gunzip every body, count rows, check the 1 MB caps |
//! | `DCRSHIP_BENCH_MODE` | `send` | `send` uploads the file; `run` starts the agent tailing it from the beginning (with `--batch-timeout 20ms`, so the last partial request does not wait the default 1 s for more lines), waits until `/metrics` counts every row sent, then stops it with SIGTERM |
//! | `DCRSHIP_BENCH_FORMAT` | `ndjson` | `ndjson` or `text` (about 200-byte lines either way) |
//! | `DCRSHIP_BENCH_LEVEL` | dcrship's own | `--compression-level` |
//! | `DCRSHIP_BENCH_BYTES_PER_MINUTE` | `1TiB` | `--max-bytes-per-minute`; the bench measures dcrship, so Azure's 2 GB/min per DCR (dcrship's default, about 33 MB/s of rows) is lifted unless set here |
//!
//! One run per process: CPU and peak RSS come from `getrusage(RUSAGE_CHILDREN)`, whose
//! `ru_maxrss` is the largest of all reaped children, so a second child would blur it. Sweep with
//! a shell loop. The fake DCE runs in this process on one thread; its CPU is printed separately
//! because on a small machine it competes with dcrship for cores (and more so with VERIFY).

mod common;

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The Logs Ingestion API's cap on one body, before and after gzip.
const BODY_CAP: usize = 1_000_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Send,
    Run,
}

struct Settings {
    rows: u64,
    mode: Mode,
    text: bool,
    level: Option<u32>,
    bytes_per_minute: String,
    concurrency: Option<u32>,
    latency: Duration,
    verify: bool,
}

impl Settings {
    fn from_env() -> Self {
        fn var<T: std::str::FromStr>(name: &str) -> Option<T> {
            let v = std::env::var(name).ok()?;
            Some(
                v.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
            )
        }
        Settings {
            rows: var("DCRSHIP_BENCH_ROWS").unwrap_or(1_000_000),
            mode: match std::env::var("DCRSHIP_BENCH_MODE").as_deref() {
                Ok("run") => Mode::Run,
                Ok("send") | Err(_) => Mode::Send,
                Ok(other) => panic!("DCRSHIP_BENCH_MODE={other:?}: expected send or run"),
            },
            text: match std::env::var("DCRSHIP_BENCH_FORMAT").as_deref() {
                Ok("text") => true,
                Ok("ndjson") | Err(_) => false,
                Ok(other) => panic!("DCRSHIP_BENCH_FORMAT={other:?}: expected ndjson or text"),
            },
            level: var("DCRSHIP_BENCH_LEVEL"),
            bytes_per_minute: std::env::var("DCRSHIP_BENCH_BYTES_PER_MINUTE")
                .unwrap_or_else(|_| "1TiB".into()),
            concurrency: var("DCRSHIP_BENCH_CONCURRENCY"),
            latency: Duration::from_millis(var("DCRSHIP_BENCH_LATENCY_MS").unwrap_or(0)),
            verify: std::env::var("DCRSHIP_BENCH_VERIFY").is_ok_and(|v| v == "1"),
        }
    }
}

/// What the fake DCE saw.
#[derive(Default)]
struct Received {
    requests: AtomicU64,
    gzip_bytes: AtomicU64,
    /// Only counted with VERIFY.
    raw_bytes: AtomicU64,
    rows: AtomicU64,
    /// Bodies over the cap, not gzip, or not a JSON array: each one a product bug.
    bad_bodies: AtomicU64,
}

fn main() {
    // `cargo test --benches` runs bench targets without `--bench`: a 200 MB upload is not a
    // test, so only `cargo bench` runs it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("e2e: skipped (run it with `cargo bench --bench e2e`)");
        return;
    }
    let settings = Settings::from_env();
    let binary = find_binary();
    eprintln!("e2e: {}", binary.display());

    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join(if settings.text {
        "bench.log"
    } else {
        "bench.ndjson"
    });
    let input_bytes = write_input(&input, settings.rows, settings.text);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let received = Arc::new(Received::default());
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind the fake DCE");
    let port = listener.local_addr().expect("local addr").port();
    rt.spawn(fake_dce(
        listener,
        received.clone(),
        settings.latency,
        settings.verify,
    ));

    let mut cmd = Command::new(&binary);
    let metrics_port = free_port();
    match settings.mode {
        Mode::Send => {
            cmd.args(["send", "--no-progress", "--summary", "json"]);
            if !settings.text {
                cmd.args(["--format", "ndjson"]);
            }
            cmd.arg(&input);
        }
        Mode::Run => {
            let state = dir.path().join("state");
            cmd.args(["run", "--start-at", "beginning", "--path"])
                .arg(&input)
                .arg("--state-dir")
                .arg(&state)
                .args(["--http-listen", &format!("127.0.0.1:{metrics_port}")])
                // A tailed file may still grow, so the last partial request waits for
                // --batch-timeout (1 s by default); keep that wait out of the throughput.
                .args(["--batch-timeout", "20ms"])
                .args(["--format", if settings.text { "text" } else { "json" }]);
        }
    }
    cmd.args(["--endpoint", &format!("http://127.0.0.1:{port}")])
        .args(["--dcr", "dcr-0123456789abcdef0123456789abcdef"])
        .args(["--stream", "Custom-Bench_CL", "--auth", "static"]);
    if let Some(c) = settings.concurrency {
        cmd.args(["--concurrency", &c.to_string()]);
    }
    if let Some(l) = settings.level {
        cmd.args(["--compression-level", &l.to_string()]);
    }
    cmd.args(["--max-bytes-per-minute", &settings.bytes_per_minute]);
    cmd.env("DCRSHIP_ACCESS_TOKEN", "x")
        // A proxy from the environment must not sit between dcrship and the fake.
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());

    let (children_before, self_before) = (usage(libc::RUSAGE_CHILDREN), usage(libc::RUSAGE_SELF));
    let started = Instant::now();
    let (out, rows_sent, wall) = match settings.mode {
        Mode::Send => {
            let out = cmd.output().expect("run dcrship");
            let wall = started.elapsed().as_secs_f64();
            let rows_sent = if out.status.success() {
                let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
                    .expect("--summary json prints one JSON object");
                summary["rows_sent"].as_u64().expect("summary.rows_sent")
            } else {
                0
            };
            (out, rows_sent, wall)
        }
        Mode::Run => {
            let child = cmd.spawn().expect("start dcrship run");
            let pid = child.id() as libc::pid_t;
            // Wall time is until the last row was sent, not until the agent stopped.
            let mut sent = 0;
            let deadline = Instant::now() + Duration::from_secs(600);
            while sent < settings.rows && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
                sent = records_sent(metrics_port).unwrap_or(sent);
            }
            let wall = started.elapsed().as_secs_f64();
            // SAFETY: pid is our child, not yet reaped (we hold its handle until wait below).
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let out = child.wait_with_output().expect("wait for dcrship run");
            (out, sent, wall)
        }
    };
    let (children, me) = (usage(libc::RUSAGE_CHILDREN), usage(libc::RUSAGE_SELF));

    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        panic!("dcrship failed: {}", out.status);
    }

    let cpu = cpu_seconds(&children) - cpu_seconds(&children_before);
    let fake_cpu = cpu_seconds(&me) - cpu_seconds(&self_before);
    let rows = settings.rows as f64;
    let mb = input_bytes as f64 / 1e6;
    let r = &received;
    let mode = match settings.mode {
        Mode::Send => "send",
        Mode::Run => "run",
    };
    let check = if settings.verify {
        let got = r.rows.load(Relaxed);
        let ok =
            got == settings.rows && rows_sent == settings.rows && r.bad_bodies.load(Relaxed) == 0;
        format!(
            "received={got} raw_MB={:.1} bad_bodies={} rows_ok={ok}",
            r.raw_bytes.load(Relaxed) as f64 / 1e6,
            r.bad_bodies.load(Relaxed)
        )
    } else {
        format!("rows_ok={} (summary only)", rows_sent == settings.rows)
    };
    println!(
        "e2e mode={mode} format={} level={} rows={} row_bytes={:.0} concurrency={} latency_ms={} max_bytes_per_minute={} wall_s={wall:.2} rows_per_s={:.0} \
         MB_per_s={:.1} cpu_s={cpu:.2} (user {:.2} sys {:.2}) cpu_s_per_Mrows={:.2} \
         cpu_s_per_GB={:.1} peak_rss_MB={:.1} requests={} gzip_MB={:.1} fake_dce_cpu_s={fake_cpu:.2} {check}",
        if settings.text { "text" } else { "ndjson" },
        settings
            .level
            .map_or_else(|| "default".to_string(), |l| l.to_string()),
        settings.rows,
        input_bytes as f64 / rows,
        settings
            .concurrency
            .map_or_else(|| "default".to_string(), |c| c.to_string()),
        settings.latency.as_millis(),
        settings.bytes_per_minute,
        rows / wall,
        mb / wall,
        tv(children.ru_utime) - tv(children_before.ru_utime),
        tv(children.ru_stime) - tv(children_before.ru_stime),
        cpu / (rows / 1e6),
        cpu / (mb / 1e3),
        // Linux reports ru_maxrss in KiB.
        children.ru_maxrss as f64 / 1024.0,
        r.requests.load(Relaxed),
        r.gzip_bytes.load(Relaxed) as f64 / 1e6,
    );
}

/// The binary cargo built for this bench (cargo builds a package's binaries before its benches
/// and names them in `CARGO_BIN_EXE_*`), else the one next to this executable
/// (`target/release/deps/e2e-…`), else `target/release/dcrship` under the crate.
fn find_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let beside = exe
        .parent()
        .and_then(Path::parent)
        .map(|release| release.join("dcrship"));
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/dcrship");
    option_env!("CARGO_BIN_EXE_dcrship")
        .map(PathBuf::from)
        .into_iter()
        .chain(beside)
        .chain([built])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("no release binary of dcrship found; run `cargo build --release` first")
        })
}

/// Writes `rows` NDJSON (or text) lines; returns the file's size.
fn write_input(path: &Path, rows: u64, text: bool) -> u64 {
    let line_of: fn(u64, &mut Vec<u8>) = if text {
        common::text_line
    } else {
        common::ndjson_line
    };
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create"));
    let mut line = Vec::with_capacity(512);
    for i in 0..rows {
        line.clear();
        line_of(i, &mut line);
        w.write_all(&line).expect("write input");
    }
    w.into_inner().expect("flush input");
    std::fs::metadata(path).expect("stat input").len()
}

async fn fake_dce(listener: TcpListener, received: Arc<Received>, latency: Duration, verify: bool) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        let received = received.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(sock, &received, latency, verify).await {
                eprintln!("fake DCE: connection failed: {e}");
            }
        });
    }
}

/// HTTP/1.1 with keep-alive, just enough for reqwest: a head, a `Content-Length` body, a 204.
async fn serve(
    mut sock: TcpStream,
    received: &Received,
    latency: Duration,
    verify: bool,
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
    loop {
        let head_end = loop {
            if let Some(i) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            buf.reserve(64 * 1024);
            if sock.read_buf(&mut buf).await? == 0 {
                // The client closed an idle connection: the normal end.
                return Ok(());
            }
        };
        let len = content_length(&buf[..head_end]).ok_or_else(|| {
            std::io::Error::other("request without Content-Length (chunked is not expected)")
        })?;
        while buf.len() < head_end + len {
            buf.reserve(head_end + len - buf.len());
            if sock.read_buf(&mut buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        let body = &buf[head_end..head_end + len];
        received.requests.fetch_add(1, Relaxed);
        received.gzip_bytes.fetch_add(len as u64, Relaxed);
        if verify {
            check_body(body, received);
        }
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        sock.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await?;
        buf.drain(..head_end + len);
    }
}

fn content_length(head: &[u8]) -> Option<usize> {
    let head = std::str::from_utf8(head).ok()?;
    head.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("content-length") {
            value.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Gunzips a body and counts its rows; anything the real API would refuse counts as bad.
fn check_body(gzip: &[u8], received: &Received) {
    let mut raw = Vec::with_capacity(BODY_CAP);
    let unzipped = flate2::read::GzDecoder::new(gzip).read_to_end(&mut raw);
    received.raw_bytes.fetch_add(raw.len() as u64, Relaxed);
    // IgnoredAny checks the JSON and counts the elements without building them.
    let rows = serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(&raw);
    match (unzipped, rows) {
        (Ok(_), Ok(rows)) if gzip.len() <= BODY_CAP && raw.len() <= BODY_CAP => {
            received.rows.fetch_add(rows.len() as u64, Relaxed);
        }
        _ => {
            received.bad_bodies.fetch_add(1, Relaxed);
        }
    }
}

fn usage(who: libc::c_int) -> libc::rusage {
    // SAFETY: rusage is plain integers, so all-zero is a valid value, and getrusage writes at
    // most one rusage through the pointer, which is valid for the call.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(who, &mut ru), 0, "getrusage failed");
        ru
    }
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

fn cpu_seconds(ru: &libc::rusage) -> f64 {
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A loopback port nobody listens on right now, for the agent's `/metrics`.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `dcrship_records_sent_total` summed over outputs, from the agent's `/metrics`.
fn records_sent(port: u16) -> Option<u64> {
    use std::io::Write as _;
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    sock.read_to_string(&mut text).ok()?;
    let sum = text
        .lines()
        .filter(|l| l.starts_with("dcrship_records_sent_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    Some(sum as u64)
}
