//! A running `dcrship run`: its log collected as it comes, signals, and deadline-bounded waits.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

pub struct Agent {
    pub child: Child,
    pub pid: u32,
    log: Arc<Mutex<String>>,
}

impl Agent {
    pub fn spawn(mut cmd: tokio::process::Command) -> Agent {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn dcrship run");
        let pid = child.id().expect("pid");
        let log = Arc::new(Mutex::new(String::new()));
        let pipes: [Box<dyn tokio::io::AsyncRead + Unpin + Send>; 2] = [
            Box::new(child.stderr.take().expect("stderr")),
            Box::new(child.stdout.take().expect("stdout")),
        ];
        for pipe in pipes {
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut g = log.lock().expect("log");
                    g.push_str(&line);
                    g.push('\n');
                }
            });
        }
        Agent { child, pid, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    pub fn log_has(&self, text: &str) -> bool {
        self.log.lock().expect("log").contains(text)
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

    /// SIGTERM; the agent must exit 0 within `within`.
    pub async fn stop(&mut self, within: Duration) {
        self.signal("TERM");
        let status = self.wait_exit(within).await;
        assert_eq!(
            status.code(),
            Some(0),
            "exit after SIGTERM: {status:?}\n--- log ---\n{}",
            self.log()
        );
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
}

/// The last `n` bytes of `text` (from a line start).
pub fn tail(text: &str, n: usize) -> &str {
    let from = text.len().saturating_sub(n);
    let from = text[from..].find('\n').map_or(from, |i| from + i + 1);
    text.get(from..).unwrap_or(text)
}
