//! Runs `journalctl` and hands its entries on, restarting it when it ends.
//!
//! The child's stdout is split into lines of at most `max_entry_bytes` (a longer entry is
//! skipped to its end and reported as [`Read::TooLarge`], so memory stays bounded); each line
//! is parsed ([`super::entry`]); entries of excluded units are left out. Batches go through a
//! bounded channel: when the pipeline is slow the reader waits, the pipe fills and journalctl
//! waits too — the journal is the buffer.
//!
//! When journalctl ends (it died, was killed, printed something we cannot read and exited),
//! the reader logs it (the first time at error, then at most once a minute while it keeps
//! failing, and once at info when it has run a minute again), waits (1 s, doubling to 60 s;
//! back to 1 s after a run of a minute) and starts it again after the cursor of the last entry it
//! *read*: entries already handed on are not read twice, and none is skipped. A saved cursor
//! that journalctl refuses (`Failed to seek to cursor`) is dropped with a warning, and reading
//! starts as on a first start.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::command::{read_args, tail_args, Start};
use super::entry::{self, Entry};
use super::filter::UnitFilter;
use super::options::JournalOptions;
use crate::input::lines::LineSplitter;
use crate::trouble::Trouble;

/// The first wait before starting journalctl again.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait.
pub const MAX_RETRY: Duration = Duration::from_secs(60);
/// A run of journalctl this long is a recovery: the next failure is logged at once again and
/// waits from [`FIRST_RETRY`]. (One that keeps dying after a few entries is still one episode,
/// logged once a minute, with growing waits.)
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// Lines of journalctl's stderr kept for the message when it exits.
const STDERR_LINES: usize = 8;
/// Dead-letter samples of unreadable lines keep at most this much.
const SAMPLE_BYTES: usize = 4096;

/// One thing read from journalctl.
#[derive(Debug)]
pub enum Read {
    Entry(Entry),
    /// A line that is not a journal entry: why, and its start.
    Bad {
        reason: String,
        sample: String,
    },
    /// An entry whose JSON was longer than `max_entry_bytes`: skipped.
    TooLarge {
        sample: String,
    },
}

/// What the reader hands on.
#[derive(Debug, Default)]
pub struct JournalBatch {
    pub reads: Vec<Read>,
    /// A first start from now: nothing before this cursor will be read, so it may be saved at
    /// once (as a file's start offset is).
    pub started_after: Option<String>,
}

/// journalctl cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "{} not found on PATH: the journald input reads the journal through journalctl, which \
         comes with systemd; install the systemd package (e.g. apt-get install systemd), or in \
         a container image add journalctl and mount the host's /var/log/journal \
         (journal_directory)",
        program.display()
    )]
    NotFound { program: PathBuf },
}

/// How long to wait before the next start, after waiting `last` (doubling, capped).
pub fn next_retry(last: Duration) -> Duration {
    (last * 2).clamp(FIRST_RETRY, MAX_RETRY)
}

/// Finds `program` as a shell would: a path with `/` as it is, else in `PATH`'s directories.
pub fn find_program(program: &Path, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        return executable(program).then(|| program.to_path_buf());
    }
    std::env::split_paths(path_var?)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

/// Reads one journald input's entries.
pub struct JournalReader {
    opts: JournalOptions,
    program: PathBuf,
    filter: UnitFilter,
    /// The cursor of the last entry read: where a restarted journalctl resumes.
    last_read: Option<String>,
    trouble: Trouble,
    /// When a line of journalctl's stderr was last logged, over all its runs.
    stderr_logged: StderrLog,
    label: String,
}

/// Shared by the stderr readers of successive runs: at most one line a minute is logged.
type StderrLog = Arc<Mutex<Option<tokio::time::Instant>>>;

/// How one run of journalctl ended.
struct Ended {
    entries: u64,
    /// It ran for [`HEALTHY_RUN`] or longer.
    healthy: bool,
    status: String,
    success: bool,
    stderr: Vec<String>,
}

impl JournalReader {
    /// A reader that resumes after `saved` (the checkpoint), or starts as `since_now` says.
    /// Fails when journalctl cannot be found.
    pub fn new(
        label: &str,
        opts: JournalOptions,
        saved: Option<String>,
    ) -> Result<Self, JournalError> {
        let program = find_program(&opts.journalctl, std::env::var_os("PATH").as_deref())
            .ok_or_else(|| JournalError::NotFound {
                program: opts.journalctl.clone(),
            })?;
        Ok(JournalReader {
            filter: UnitFilter::new(&opts.exclude_units),
            opts,
            program,
            last_read: saved,
            trouble: Trouble::new("read the journal with journalctl"),
            stderr_logged: StderrLog::default(),
            label: label.to_string(),
        })
    }

    /// Reads until `stop` is set or `tx` is closed.
    pub async fn run(mut self, tx: mpsc::Sender<JournalBatch>, stop: CancellationToken) {
        let mut wait = Duration::ZERO;
        // Entries after the cursor were read to the newest: follow (see `command`).
        let mut caught_up = false;
        loop {
            if !wait.is_zero() && !pause(wait, &stop).await {
                return;
            }
            let start = match self.last_read.clone() {
                Some(c) => Start::After(c),
                None if self.opts.since_now => match self.tail(&stop).await {
                    Ok(Some(c)) => {
                        self.last_read = Some(c.clone());
                        let batch = JournalBatch {
                            reads: Vec::new(),
                            started_after: Some(c.clone()),
                        };
                        if tx.send(batch).await.is_err() {
                            return;
                        }
                        Start::After(c)
                    }
                    Ok(None) => Start::Oldest,
                    Err(Some(why)) => {
                        wait = next_retry(wait);
                        self.failed(&why, wait);
                        continue;
                    }
                    Err(None) => return, // stopped
                },
                None => Start::Oldest,
            };
            let follow = caught_up || start == Start::Oldest;
            let ended = match self.read(&start, follow, &tx, &stop).await {
                Ok(Some(ended)) => ended,
                Ok(None) => return, // stopped, or the pipeline is gone
                Err(why) => {
                    caught_up = false;
                    wait = next_retry(wait);
                    self.failed(&why, wait);
                    continue;
                }
            };
            if ended.healthy {
                wait = Duration::ZERO;
            }
            if !follow && ended.success {
                caught_up = true;
                continue;
            }
            caught_up = false;
            let refused_cursor = ended.entries == 0
                && !ended.success
                && matches!(start, Start::After(_))
                && ended.stderr.iter().any(|l| l.contains("cursor"));
            if refused_cursor {
                tracing::warn!(
                    input = %self.label,
                    cursor = ?self.last_read,
                    stderr = %ended.stderr.join(" | "),
                    "journalctl refuses the saved cursor; reading from {}",
                    if self.opts.since_now { "now" } else { "the oldest entry" }
                );
                self.last_read = None;
                continue;
            }
            wait = next_retry(wait);
            let why = format!(
                "journalctl ended ({}) after {} entries{}",
                ended.status,
                ended.entries,
                match ended.stderr.is_empty() {
                    true => String::new(),
                    false => format!(": {}", ended.stderr.join(" | ")),
                }
            );
            self.failed(&why, wait);
        }
    }

    fn failed(&self, why: &str, wait: Duration) {
        self.trouble.failed(
            &self.program,
            &why,
            &format!(
                "input {}: starting it again in {}s after the last entry read",
                self.label,
                wait.as_secs()
            ),
        );
    }

    fn command(&self, args: Vec<OsString>) -> Command {
        let mut c = Command::new(&self.program);
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // journalctl's own pager and colours are for terminals; make sure.
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0")
            .kill_on_drop(true);
        c
    }

    /// The newest entry's cursor (`None`: the journal is empty). `Err(None)`: stopped.
    async fn tail(&self, stop: &CancellationToken) -> Result<Option<String>, Option<String>> {
        let mut child = self
            .command(tail_args(&self.opts))
            .spawn()
            .map_err(|e| Some(format!("cannot start {}: {e}", self.program.display())))?;
        let stderr = collect_stderr(&mut child, None);
        let mut out = Vec::new();
        let read = async {
            if let Some(stdout) = child.stdout.take() {
                // One entry with one field: anything longer is not what was asked for.
                let _ = stdout.take(1 << 20).read_to_end(&mut out).await;
            }
            child.wait().await
        };
        let status = tokio::select! {
            s = read => Some(s),
            _ = stop.cancelled() => None,
        };
        let status = status
            .ok_or(None)?
            .map_err(|e| Some(format!("journalctl: {e}")))?;
        let stderr = stderr.await.unwrap_or_default();
        if !status.success() {
            return Err(Some(format!(
                "journalctl (asked for the newest entry) ended ({status}){}",
                if stderr.is_empty() {
                    String::new()
                } else {
                    format!(": {}", stderr.join(" | "))
                }
            )));
        }
        let line = out.split(|b| *b == b'\n').find(|l| !l.is_empty());
        match line.map(entry::parse) {
            None => Ok(None),
            Some(Ok(e)) => Ok(e.cursor),
            Some(Err(e)) => Err(Some(e.to_string())),
        }
    }

    /// One run of journalctl, following or not. `Ok(None)`: stopped or the pipeline closed.
    async fn read(
        &mut self,
        start: &Start,
        follow: bool,
        tx: &mpsc::Sender<JournalBatch>,
        stop: &CancellationToken,
    ) -> Result<Option<Ended>, String> {
        let mut child = self
            .command(read_args(&self.opts, start, follow))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.program.display()))?;
        let live = (self.label.clone(), self.stderr_logged.clone());
        let stderr = collect_stderr(&mut child, Some(live));
        let Some(mut stdout) = child.stdout.take() else {
            return Err("journalctl has no stdout".into());
        };
        let mut splitter = LineSplitter::new(self.opts.max_entry_bytes);
        let mut buf = vec![0u8; 64 * 1024];
        let mut entries = 0u64;
        let mut batch = JournalBatch::default();
        let started = tokio::time::Instant::now();
        let mut recovered = false;
        loop {
            let n = tokio::select! {
                biased;
                _ = stop.cancelled() => None,
                r = stdout.read(&mut buf) => Some(r.unwrap_or(0)),
            };
            let Some(n) = n else {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Ok(None);
            };
            if n == 0 {
                splitter.finish(&mut |line| {
                    self.line(line.bytes, line.truncated, &mut batch, &mut entries)
                });
            } else {
                splitter.feed(&buf[..n], &mut |line| {
                    self.line(line.bytes, line.truncated, &mut batch, &mut entries)
                });
            }
            if !batch.reads.is_empty() {
                if !recovered && entries > 0 && started.elapsed() >= HEALTHY_RUN {
                    recovered = true;
                    self.trouble.worked(&self.program);
                }
                let full = std::mem::take(&mut batch);
                if tx.send(full).await.is_err() {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return Ok(None);
                }
            }
            if n == 0 {
                break;
            }
        }
        let status = child.wait().await;
        let stderr = stderr.await.unwrap_or_default();
        Ok(Some(Ended {
            entries,
            healthy: started.elapsed() >= HEALTHY_RUN,
            success: status.as_ref().is_ok_and(|s| s.success()),
            status: match status {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            },
            stderr,
        }))
    }

    /// One line of journalctl's output into the batch.
    fn line(&mut self, bytes: &[u8], truncated: bool, batch: &mut JournalBatch, entries: &mut u64) {
        if truncated {
            batch.reads.push(Read::TooLarge {
                sample: sample(bytes),
            });
            return;
        }
        if bytes.is_empty() {
            return;
        }
        match entry::parse(bytes) {
            Ok(e) => {
                *entries += 1;
                if let Some(c) = &e.cursor {
                    self.last_read = Some(c.clone());
                }
                if !self.filter.excludes(&e) {
                    batch.reads.push(Read::Entry(e));
                }
            }
            Err(e) => batch.reads.push(Read::Bad {
                reason: e.to_string(),
                sample: sample(bytes),
            }),
        }
    }
}

fn sample(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(SAMPLE_BYTES)];
    String::from_utf8_lossy(cut).into_owned()
}

/// Waits `d` unless stopped first; false when stopped.
async fn pause(d: Duration, stop: &CancellationToken) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.cancelled() => true,
    };
    !stopped
}

/// Reads the child's stderr to its end, keeping the last lines; with a label, also logs them
/// as they come (at most one a minute over every run, so a journalctl that warns about every
/// file, or keeps failing, does not flood the log; the lines also go with the exit's message).
fn collect_stderr(
    child: &mut Child,
    label: Option<(String, StderrLog)>,
) -> tokio::task::JoinHandle<Vec<String>> {
    let pipe = child.stderr.take();
    tokio::spawn(async move {
        let Some(pipe) = pipe else {
            return Vec::new();
        };
        read_stderr(pipe, label).await
    })
}

async fn read_stderr(
    pipe: impl AsyncRead + Unpin,
    label: Option<(String, StderrLog)>,
) -> Vec<String> {
    let mut kept = VecDeque::with_capacity(STDERR_LINES);
    let mut lines = BufReader::new(pipe.take(1 << 20)).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line: String = line.chars().take(1000).collect();
        if let Some((label, logged)) = &label {
            let now = tokio::time::Instant::now();
            let mut last = logged.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60)) {
                *last = Some(now);
                drop(last);
                tracing::warn!(input = %label, "journalctl says: {line} (its messages are logged at most once a minute)");
            }
        }
        if kept.len() == STDERR_LINES {
            kept.pop_front();
        }
        kept.push_back(line);
    }
    kept.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_one_second_to_a_minute() {
        let mut d = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..9 {
            d = next_retry(d);
            seen.push(d.as_secs());
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn programs_are_found_on_path_or_by_path() -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let prog = dir.path().join("journalctl");
        std::fs::write(&prog, "#!/bin/sh\n")?;
        let plain = dir.path().join("not-executable");
        std::fs::write(&plain, "")?;
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755))?;
        let path = std::env::join_paths(["/nonexistent", &dir.path().display().to_string()])
            .map_err(std::io::Error::other)?;
        assert_eq!(
            find_program(Path::new("journalctl"), Some(&path)),
            Some(prog.clone())
        );
        assert_eq!(find_program(&prog, None), Some(prog.clone()));
        assert_eq!(find_program(Path::new("not-executable"), Some(&path)), None);
        assert_eq!(find_program(Path::new("journalctl"), None), None);
        let missing = JournalError::NotFound {
            program: PathBuf::from("journalctl"),
        }
        .to_string();
        assert!(
            missing.contains("systemd") && missing.contains("apt-get install"),
            "{missing}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn stderr_keeps_the_last_lines() {
        let text: String = (0..20).map(|i| format!("line {i}\n")).collect();
        let kept = read_stderr(text.as_bytes(), None).await;
        assert_eq!(kept.len(), STDERR_LINES);
        assert_eq!(kept.last().map(String::as_str), Some("line 19"));
    }
}
