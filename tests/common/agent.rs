//! A running `dcrship run`: its log collected as it comes, signals, deadline-bounded waits, and
//! its HTTP listener (`/metrics`, `/health`, `/live`) when it has one.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};

pub struct Agent {
    pub child: Child,
    pub pid: u32,
    /// The agent's stdin when the command asked for a pipe (`.stdin(Stdio::piped())`).
    pub stdin: Option<ChildStdin>,
    log: Arc<Mutex<String>>,
    http: Option<SocketAddr>,
}

impl Agent {
    /// Starts `cmd` with stderr and stdout collected into [`Agent::log`] as they come, stdout
    /// lines prefixed `stdout: ` (`dcrship run` writes nothing there; a line would be a bug
    /// worth seeing).
    pub fn spawn(mut cmd: tokio::process::Command) -> Agent {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn dcrship run");
        let pid = child.id().expect("pid");
        let log = Arc::new(Mutex::new(String::new()));
        let pipes: [(&str, Box<dyn tokio::io::AsyncRead + Unpin + Send>); 2] = [
            ("", Box::new(child.stderr.take().expect("stderr"))),
            ("stdout: ", Box::new(child.stdout.take().expect("stdout"))),
        ];
        for (prefix, pipe) in pipes {
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut g = log.lock().expect("log");
                    g.push_str(prefix);
                    g.push_str(&line);
                    g.push('\n');
                }
            });
        }
        let stdin = child.stdin.take();
        Agent {
            child,
            pid,
            stdin,
            log,
            http: None,
        }
    }

    /// The agent listens on `addr` (its `--http-listen` or `http_listen`): for [`Agent::get`]
    /// and the metric helpers.
    pub fn with_http(mut self, addr: SocketAddr) -> Agent {
        self.http = Some(addr);
        self
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    pub fn log_has(&self, text: &str) -> bool {
        self.log.lock().expect("log").contains(text)
    }

    /// How many times `text` is in the log.
    pub fn count(&self, text: &str) -> usize {
        self.log.lock().expect("log").matches(text).count()
    }

    /// Sends a signal with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([format!("-{sig}"), self.pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} {}", self.pid);
    }

    /// Waits for the process to end; panics (with its log) after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => {
                let status = status.expect("wait");
                // let the log readers catch the last lines
                tokio::time::sleep(Duration::from_millis(50)).await;
                status
            }
            Err(_) => panic!(
                "dcrship run did not exit within {within:?}\n--- log ---\n{}",
                self.log()
            ),
        }
    }

    /// SIGTERM; the agent must exit 0 within `within`. How long the exit took.
    pub async fn stop(&mut self, within: Duration) -> Duration {
        self.stop_with("TERM", within).await
    }

    /// `sig` (TERM or INT); the agent must exit 0 within `within`. How long the exit took.
    pub async fn stop_with(&mut self, sig: &str, within: Duration) -> Duration {
        let t = Instant::now();
        self.signal(sig);
        let status = self.wait_exit(within).await;
        let took = t.elapsed();
        assert_eq!(
            status.code(),
            Some(0),
            "exit after SIG{sig}: {status:?}\n--- log ---\n{}",
            self.log()
        );
        took
    }

    /// SIGKILL, and the wait for it to be gone.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        let status = self.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(status.code(), None, "killed by a signal");
    }

    /// Polls `cond` every 50 ms until it holds; panics with `what` and the log after `within`.
    pub async fn wait_for(&self, what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        loop {
            if cond() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {within:?} waiting for: {what}\n--- log (last 4000 bytes) ---\n{}",
                    tail(&self.log(), 4000)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One GET to the agent's HTTP listener: (status, body).
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.http.expect("with_http"), path).await
    }

    /// The value of one sample line of `/metrics` (`name{labels}` exactly), if present.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await?;
        metric_value(&body, sample)
    }

    /// Polls `/metrics` every 50 ms until `sample` is there and `cond` holds for it; its value
    /// then. Panics with the log after `within`.
    pub async fn wait_metric(
        &self,
        sample: &str,
        within: Duration,
        cond: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = self.metric(sample).await {
                if cond(v) {
                    return v;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "{sample} is {:?} after {within:?}\n--- log ---\n{}",
                    self.metric(sample).await,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the agent has read `rows` rows from stdin (by its metric).
    pub async fn wait_stdin_read(&self, rows: u64, within: Duration) {
        self.wait_metric(
            "dcrship_records_received_total{input=\"stdin\"}",
            within,
            |v| v == rows as f64,
        )
        .await;
    }

    /// Peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid, "VmHWM")
    }

    /// The pids of the agent's children (journalctl).
    pub fn children(&self) -> Vec<u32> {
        // Listed under the thread that spawned them.
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid)).expect("tasks");
        tasks
            .flatten()
            .flat_map(|t| {
                std::fs::read_to_string(t.path().join("children"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect()
    }
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`, …).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// A plain HTTP/1.1 GET (the agent's server answers one request per connection, then closes):
/// (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The value of the sample `name{labels}` (exactly) in a `/metrics` body.
pub fn metric_value(body: &str, sample: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(sample)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// The last `n` bytes of `text` (from a line start).
pub fn tail(text: &str, n: usize) -> &str {
    let mut from = text.len().saturating_sub(n);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    let from = text[from..].find('\n').map_or(from, |i| from + i + 1);
    text.get(from..).unwrap_or(text)
}
