//! End-to-end throughput: the release `dcrship send` (or `run`) uploads an NDJSON file to a fake
//! DCE on loopback; we print rows/s, MB/s, the child's CPU seconds and its peak RSS, and the
//! gzip floor measured in the same run: the same bytes gzipped by dcrship's own encoder (the same
//! backend and level) on one thread, in bodies of at most 1 MB, with nothing else — and the
//! ratio of dcrship's CPU to it.
//!
//! ```text
//! cargo bench --bench e2e     # cargo builds target/release/dcrship before any bench
//! DCRSHIP_BENCH_ROWS=200000 DCRSHIP_BENCH_CONCURRENCY=8 DCRSHIP_BENCH_LATENCY_MS=20 \
//!   DCRSHIP_BENCH_VERIFY=1 cargo bench --bench e2e
//! DCRSHIP_BENCH_MODE=floor cargo bench --bench e2e    # the floor alone
//! ```
//!
//! | env | default | |
//! |---|---|---|
//! | `DCRSHIP_BENCH_ROWS` | 1000000 | rows of about 200 bytes |
//! | `DCRSHIP_BENCH_CONCURRENCY` | dcrship's own | `--concurrency` |
//! | `DCRSHIP_BENCH_LATENCY_MS` | 0 | delay before each 204, to mimic a remote DCE |
//! | `DCRSHIP_BENCH_VERIFY` | off | gunzip every body, count rows, check the 1 MB caps (as a strict fake of the API does) |
//! | `DCRSHIP_BENCH_MODE` | `send` | `send` uploads the file; `run` starts the agent tailing it from the beginning (with `--batch-timeout 20ms`, so the last partial request does not wait the default 1 s for more lines), waits until `/metrics` counts every row sent, then stops it with SIGTERM; `floor` measures only the floor |
//! | `DCRSHIP_BENCH_FAKE` | `process` | `process`: the fake DCE is a child process (this bench started again as a server), so requests cross real sockets between processes and the fake competes for the cores as a real local fake does; `python`: `benches/fake_dce.py`, a strict fake in Python (gunzips and parses every body, checks the caps; much slower, as the issue's was); `inproc`: a thread of this process |
//! | `DCRSHIP_BENCH_STDIN` | off | `1`: `send -` reads the rows from a pipe this bench writes the file into, as `cat FILE \| dcrship send -` does (the writer's CPU is the bench's, not dcrship's) |
//! | `DCRSHIP_BENCH_FLOOR` | `1` | `0` skips the floor after a `send` or `run` |
//! | `DCRSHIP_BENCH_FORMAT` | `ndjson` | `ndjson` or `text` (about 200-byte lines either way) |
//! | `DCRSHIP_BENCH_LEVEL` | dcrship's own | `--compression-level`, and the floor's level |
//! | `DCRSHIP_BENCH_BIN` | the release build | the dcrship binary to run: paired runs of two builds alternate it |
//! | `DCRSHIP_BENCH_WRAP` | none | a command to run dcrship under, e.g. `valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out` (instruction counts, which do not vary with the machine's load) or `perf record -g -o /tmp/perf.data`; its CPU then includes the tool's |
//! | `DCRSHIP_BENCH_BYTES_PER_MINUTE` | `1TiB` | `--max-bytes-per-minute`; the bench measures dcrship, so Azure's 2 GB/min per DCR (dcrship's default, about 33 MB/s of rows) is lifted unless set here |
//!
//! CPU and peak RSS of each child come from `wait4`, so dcrship's figures are its own whichever
//! fake runs; the fake's CPU is printed separately because on a small machine it competes with
//! dcrship for cores (and more so with VERIFY). The floor's CPU is this thread's own
//! (`CLOCK_THREAD_CPUTIME_ID`), measured after dcrship has stopped. Sweep with a shell loop.

mod common;

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The Logs Ingestion API's cap on one body, before and after gzip.
const BODY_CAP: usize = 1_000_000;
/// The argument that makes this executable the fake DCE.
const FAKE_ARG: &str = "--fake-dce";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Send,
    Run,
    Floor,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Send => "send",
            Mode::Run => "run",
            Mode::Floor => "floor",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FakeKind {
    Process,
    Python,
    InProcess,
}

struct Settings {
    rows: u64,
    mode: Mode,
    fake: FakeKind,
    floor: bool,
    text: bool,
    level: Option<u32>,
    bytes_per_minute: String,
    concurrency: Option<u32>,
    latency: Duration,
    verify: bool,
    stdin: bool,
}

fn var<T: std::str::FromStr>(name: &str) -> Option<T> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

impl Settings {
    fn from_env() -> Self {
        Settings {
            rows: var("DCRSHIP_BENCH_ROWS").unwrap_or(1_000_000),
            mode: match std::env::var("DCRSHIP_BENCH_MODE").as_deref() {
                Ok("run") => Mode::Run,
                Ok("floor") => Mode::Floor,
                Ok("send") | Err(_) => Mode::Send,
                Ok(other) => panic!("DCRSHIP_BENCH_MODE={other:?}: expected send, run or floor"),
            },
            fake: match std::env::var("DCRSHIP_BENCH_FAKE").as_deref() {
                Ok("inproc") => FakeKind::InProcess,
                Ok("python") => FakeKind::Python,
                Ok("process") | Err(_) => FakeKind::Process,
                Ok(other) => {
                    panic!("DCRSHIP_BENCH_FAKE={other:?}: expected process, python or inproc")
                }
            },
            floor: var::<u32>("DCRSHIP_BENCH_FLOOR").unwrap_or(1) != 0,
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
            stdin: std::env::var("DCRSHIP_BENCH_STDIN").is_ok_and(|v| v == "1"),
        }
    }

    /// `send -` from a pipe this bench fills.
    fn reads_a_pipe(&self) -> bool {
        self.stdin && self.mode == Mode::Send
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

impl Received {
    fn counts(&self) -> [u64; 5] {
        [
            &self.requests,
            &self.gzip_bytes,
            &self.raw_bytes,
            &self.rows,
            &self.bad_bodies,
        ]
        .map(|c| c.load(Relaxed))
    }
}

/// What the fake reports at the end: [`Received::counts`] and its CPU seconds.
struct FakeReport {
    counts: [u64; 5],
    cpu: f64,
}

fn main() {
    if std::env::args().any(|a| a == FAKE_ARG) {
        fake_process_main();
        return;
    }
    // `cargo test --benches` runs bench targets without `--bench`: a 200 MB upload is not a
    // test, so only `cargo bench` runs it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("e2e: skipped (run it with `cargo bench --bench e2e`)");
        return;
    }
    let settings = Settings::from_env();
    let level = settings
        .level
        .unwrap_or(dcrship::batch::DEFAULT_COMPRESSION_LEVEL);

    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join(if settings.text {
        "bench.log"
    } else {
        "bench.ndjson"
    });
    let input_bytes = write_input(&input, settings.rows, settings.text);
    let mb = input_bytes as f64 / 1e6;
    let rows = settings.rows as f64;

    if settings.mode == Mode::Floor {
        for (backend, f) in [
            (dcrship::batch::Gzip::BACKEND, floor(&input, level)),
            ("zlib-rs", floor_zlib_rs(&input, level)),
        ] {
            println!(
                "e2e mode=floor backend={backend} format={} level={level} rows={} row_bytes={:.0} \
                 cpu_s={:.2} cpu_s_per_Mrows={:.2} MB_per_s={:.1} bodies={} gzip_MB={:.2} \
                 ratio={:.2}",
                format_name(settings.text),
                settings.rows,
                input_bytes as f64 / rows,
                f.cpu,
                f.cpu / (rows / 1e6),
                mb / f.cpu,
                f.bodies,
                f.gzip_bytes as f64 / 1e6,
                input_bytes as f64 / f.gzip_bytes as f64,
            );
        }
        return;
    }

    let binary = find_binary();
    eprintln!("e2e: {}", binary.display());
    let fake = Fake::start(settings.fake, settings.latency, settings.verify);
    let port = fake.port;

    // A profiler to run dcrship under (`valgrind --tool=callgrind`, `perf record -g`).
    let wrap = std::env::var("DCRSHIP_BENCH_WRAP").unwrap_or_default();
    let mut wrap = wrap.split_whitespace();
    let mut cmd = match wrap.next() {
        Some(tool) => {
            let mut cmd = Command::new(tool);
            cmd.args(wrap).arg(&binary);
            cmd
        }
        None => Command::new(&binary),
    };
    let metrics_port = free_port();
    match settings.mode {
        Mode::Send => {
            cmd.args(["send", "--no-progress", "--summary", "json"]);
            if !settings.text {
                cmd.args(["--format", "ndjson"]);
            }
            if settings.reads_a_pipe() {
                cmd.arg("-");
            } else {
                cmd.arg(&input);
            }
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
        Mode::Floor => unreachable!("handled above"),
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
        .stdin(if settings.reads_a_pipe() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());

    let started = Instant::now();
    let mut child = cmd.spawn().expect("start dcrship");
    let pid = child.id() as libc::pid_t;
    let writer = child.stdin.take().map(|mut pipe| {
        let input = input.clone();
        std::thread::spawn(move || {
            let mut file = std::fs::File::open(&input).expect("open the input");
            std::io::copy(&mut file, &mut pipe).expect("write the rows into dcrship's stdin");
        })
    });
    let output = Output::collect(&mut child);
    let mut wall = None;
    let mut sent = 0;
    if settings.mode == Mode::Run {
        // Wall time is until the last row was sent, not until the agent stopped.
        let deadline = Instant::now() + Duration::from_secs(1800);
        while sent < settings.rows && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            sent = records_sent(metrics_port).unwrap_or(sent);
        }
        wall = Some(started.elapsed().as_secs_f64());
        // SAFETY: pid is our child, not yet reaped (wait4 below reaps it).
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let (status, usage) = wait4(pid);
    if let Some(w) = writer {
        w.join().expect("the stdin writer");
    }
    let wall = wall.unwrap_or_else(|| started.elapsed().as_secs_f64());
    let (stdout, stderr) = output.finish();
    if status != 0 {
        eprintln!("{}", String::from_utf8_lossy(&stderr));
        panic!("dcrship failed: wait status {status}");
    }
    if settings.mode == Mode::Send {
        let summary: serde_json::Value =
            serde_json::from_slice(&stdout).expect("--summary json prints one JSON object");
        sent = summary["rows_sent"].as_u64().expect("summary.rows_sent");
    }
    let fake = fake.finish();
    let [requests, gzip_bytes, raw_bytes, got, bad_bodies] = fake.counts;

    let cpu = cpu_seconds(&usage);
    let check = if settings.verify {
        let ok = got == settings.rows && sent == settings.rows && bad_bodies == 0;
        format!(
            "received={got} raw_MB={:.1} bad_bodies={bad_bodies} rows_ok={ok}",
            raw_bytes as f64 / 1e6
        )
    } else {
        format!("rows_ok={} (summary only)", sent == settings.rows)
    };
    let floor_text = if settings.floor {
        let (f, z) = (floor(&input, level), floor_zlib_rs(&input, level));
        format!(
            " floor_backend={} floor_cpu_s={:.2} floor_gzip_MB={:.1} ratio={:.2} \
             zlib_rs_floor_cpu_s={:.2} ratio_to_zlib_rs={:.2}",
            dcrship::batch::Gzip::BACKEND,
            f.cpu,
            f.gzip_bytes as f64 / 1e6,
            cpu / f.cpu,
            z.cpu,
            cpu / z.cpu,
        )
    } else {
        String::new()
    };
    println!(
        "e2e mode={}{} fake={} format={} level={} rows={} row_bytes={:.0} concurrency={} latency_ms={} max_bytes_per_minute={} wall_s={wall:.2} rows_per_s={:.0} \
         MB_per_s={:.1} cpu_s={cpu:.2} (user {:.2} sys {:.2}) cpu_s_per_Mrows={:.2} \
         cpu_s_per_GB={:.1} peak_rss_MB={:.1} requests={requests} gzip_MB={:.1} fake_dce_cpu_s={:.2} {check}{floor_text}",
        settings.mode.name(),
        if settings.reads_a_pipe() {
            " input=stdin"
        } else {
            ""
        },
        match settings.fake {
            FakeKind::Process => "process",
            FakeKind::Python => "python",
            FakeKind::InProcess => "inproc",
        },
        format_name(settings.text),
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
        tv(usage.ru_utime),
        tv(usage.ru_stime),
        cpu / (rows / 1e6),
        cpu / (mb / 1e3),
        // Linux reports ru_maxrss in KiB.
        usage.ru_maxrss as f64 / 1024.0,
        gzip_bytes as f64 / 1e6,
        fake.cpu,
    );
}

fn format_name(text: bool) -> &'static str {
    if text {
        "text"
    } else {
        "ndjson"
    }
}

/// The floor: what gzip alone costs for the same bytes.
#[derive(Clone, Copy)]
struct Floor {
    cpu: f64,
    bodies: u64,
    gzip_bytes: u64,
}

/// Reads `input` and gzips it with dcrship's encoder at `level`, one member per run of whole
/// lines of at most [`BODY_CAP`] bytes (as bodies are), on this thread; its CPU seconds.
fn floor(input: &Path, level: u32) -> Floor {
    let mut gz = dcrship::batch::Gzip::new(level);
    floor_with(input, &mut |body| gz.compress(body).len())
}

/// The same with flate2 on zlib-rs, streaming into a growing `Vec` (the issue's reference
/// program, and dcrship's encoder before libdeflate).
fn floor_zlib_rs(input: &Path, level: u32) -> Floor {
    floor_with(input, &mut |body| {
        let mut enc =
            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level.min(9)));
        enc.write_all(body).expect("gzip into a Vec");
        enc.finish().expect("gzip into a Vec").len()
    })
}

fn floor_with(input: &Path, gzip: &mut dyn FnMut(&[u8]) -> usize) -> Floor {
    let started = thread_cpu();
    let mut file = std::fs::File::open(input).expect("open the input");
    let mut buf = vec![0u8; BODY_CAP];
    let (mut filled, mut bodies, mut gzip_bytes) = (0, 0u64, 0u64);
    loop {
        let n = file.read(&mut buf[filled..]).expect("read the input");
        filled += n;
        if filled < buf.len() && n > 0 {
            continue;
        }
        if filled == 0 {
            break;
        }
        // Whole lines only, unless a line is longer than a body (never, here).
        let cut = match n {
            0 => filled,
            _ => memchr::memrchr(b'\n', &buf[..filled]).map_or(filled, |i| i + 1),
        };
        gzip_bytes += std::hint::black_box(gzip(&buf[..cut])) as u64;
        bodies += 1;
        buf.copy_within(cut..filled, 0);
        filled -= cut;
    }
    Floor {
        cpu: thread_cpu() - started,
        bodies,
        gzip_bytes,
    }
}

fn thread_cpu() -> f64 {
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        assert_eq!(
            libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts),
            0,
            "clock_gettime failed"
        );
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    }
}

/// A child's stdout and stderr, read on threads so that it never blocks on a full pipe.
struct Output {
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
}

impl Output {
    fn collect(child: &mut Child) -> Self {
        fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let _ = r.read_to_end(&mut out);
                out
            })
        }
        Output {
            stdout: drain(child.stdout.take().expect("piped stdout")),
            stderr: drain(child.stderr.take().expect("piped stderr")),
        }
    }

    fn finish(self) -> (Vec<u8>, Vec<u8>) {
        (
            self.stdout.join().expect("stdout reader"),
            self.stderr.join().expect("stderr reader"),
        )
    }
}

/// Reaps `pid`: its wait status and its own resource usage (CPU, peak RSS).
fn wait4(pid: libc::pid_t) -> (libc::c_int, libc::rusage) {
    // SAFETY: rusage is plain integers (all-zero is valid); wait4 writes one status and one
    // rusage through valid pointers.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        let mut status = 0;
        let r = libc::wait4(pid, &mut status, 0, &mut ru);
        assert_eq!(r, pid, "wait4 failed");
        (status, ru)
    }
}

/// The fake DCE, in this process or in a child.
struct Fake {
    port: u16,
    kind: FakeImpl,
}

enum FakeImpl {
    InProcess {
        // Kept alive while dcrship runs.
        _rt: tokio::runtime::Runtime,
        received: Arc<Received>,
        self_before: libc::rusage,
    },
    Process {
        child: Child,
        stdin: Option<ChildStdin>,
        stdout: BufReader<std::process::ChildStdout>,
    },
}

impl Fake {
    fn start(kind: FakeKind, latency: Duration, verify: bool) -> Self {
        match kind {
            FakeKind::InProcess => {
                let self_before = usage(libc::RUSAGE_SELF);
                let (rt, port, received) = serve_on_runtime(latency, verify);
                Fake {
                    port,
                    kind: FakeImpl::InProcess {
                        _rt: rt,
                        received,
                        self_before,
                    },
                }
            }
            FakeKind::Process | FakeKind::Python => {
                let mut cmd = if kind == FakeKind::Python {
                    let mut cmd = Command::new("python3");
                    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fake_dce.py"));
                    cmd
                } else {
                    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
                    cmd.arg(FAKE_ARG);
                    cmd
                };
                let mut child = cmd
                    .env("DCRSHIP_BENCH_LATENCY_MS", latency.as_millis().to_string())
                    .env("DCRSHIP_BENCH_VERIFY", if verify { "1" } else { "0" })
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("start the fake DCE");
                let stdin = child.stdin.take();
                let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
                let mut line = String::new();
                stdout.read_line(&mut line).expect("the fake's port");
                let port = line
                    .trim()
                    .strip_prefix("port ")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("the fake said {line:?}, not its port"));
                Fake {
                    port,
                    kind: FakeImpl::Process {
                        child,
                        stdin,
                        stdout,
                    },
                }
            }
        }
    }

    /// Stops the fake: what it received and its CPU seconds.
    fn finish(self) -> FakeReport {
        match self.kind {
            FakeImpl::InProcess {
                received,
                self_before,
                ..
            } => FakeReport {
                counts: received.counts(),
                // This process did nothing else meanwhile but wait for dcrship.
                cpu: cpu_seconds(&usage(libc::RUSAGE_SELF)) - cpu_seconds(&self_before),
            },
            FakeImpl::Process {
                child,
                mut stdin,
                mut stdout,
            } => {
                // Its standard input closing is the fake's signal to report and exit.
                drop(stdin.take());
                let mut line = String::new();
                stdout.read_line(&mut line).expect("the fake's counts");
                let counts: Vec<u64> = line
                    .split_whitespace()
                    .map(|n| n.parse().expect("a count"))
                    .collect();
                let counts: [u64; 5] = counts
                    .try_into()
                    .unwrap_or_else(|_| panic!("the fake said {line:?}, not five counts"));
                let (_, ru) = wait4(child.id() as libc::pid_t);
                FakeReport {
                    counts,
                    cpu: cpu_seconds(&ru),
                }
            }
        }
    }
}

/// The fake DCE as a process of its own: prints `port N`, serves until its stdin closes, then
/// prints its five counts and exits.
fn fake_process_main() {
    let latency = Duration::from_millis(var("DCRSHIP_BENCH_LATENCY_MS").unwrap_or(0));
    let verify = std::env::var("DCRSHIP_BENCH_VERIFY").is_ok_and(|v| v == "1");
    let (_rt, port, received) = serve_on_runtime(latency, verify);
    println!("port {port}");
    std::io::stdout().flush().expect("flush stdout");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    let [a, b, c, d, e] = received.counts();
    println!("{a} {b} {c} {d} {e}");
}

/// A one-thread runtime serving the fake DCE on a loopback port.
fn serve_on_runtime(
    latency: Duration,
    verify: bool,
) -> (tokio::runtime::Runtime, u16, Arc<Received>) {
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
    rt.spawn(fake_dce(listener, received.clone(), latency, verify));
    (rt, port, received)
}

/// `DCRSHIP_BENCH_BIN` (another build, for paired before/after runs), else the binary cargo
/// built for this bench (cargo builds a package's binaries before its benches
/// and names them in `CARGO_BIN_EXE_*`), else the one next to this executable
/// (`target/release/deps/e2e-…`), else `target/release/dcrship` under the crate.
fn find_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("DCRSHIP_BENCH_BIN") {
        return PathBuf::from(bin);
    }
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
