//! The file input: finds files by glob, tails them, and hands out batches of complete lines.
//!
//! [`FileTailer::run`] sends [`FileLines`] into a bounded channel (a full channel pauses reading:
//! that is the backpressure) until the stop signal is raised. Each line carries the file offset
//! just past it, which the pipeline stores in [`Checkpoints`] once the line's row is safe; a new
//! tailer started with those checkpoints resumes each file where the safe rows end, so a restart
//! neither skips nor (beyond what was in flight) repeats lines.
//!
//! Behaviour, and why:
//! - **Truth is a stat poll** every `poll_interval`: path → (device, inode), handle → size.
//!   inotify (via `notify`) only wakes the poll early, because it misses NFS changes and drops
//!   events on overflow. Globs are expanded again every `rescan_interval` (and at once when a
//!   notification or a poll says names changed), so new files are found.
//! - **Identity** is [`FileKey`]: device, inode, and a fingerprint of the first line (see
//!   [`crate::input::fingerprint`] for the rule). A file is not read until its first line is
//!   complete, or it has 1 KiB. The same inode with another fingerprint is another file.
//! - **Rename rotation**: when a path names another file, the old handle is kept and read until it
//!   has not grown for `rotate_wait`, so late writes by a writer that has not reopened yet are not
//!   lost; the new file is read from its beginning. A rotated file whose new name still matches
//!   the globs simply goes on being tailed under that name (and is not read twice).
//! - **Deleted files** are drained the same way: read to the end, closed once idle for
//!   `rotate_wait` (a writer may still hold the unlinked file open).
//! - **copytruncate**: a file smaller than the read offset, or whose head changed, is read again
//!   from 0 (logged at info) under its new key.
//! - **start_at**: `end` applies only to files present at the tailer's first scan that have no
//!   checkpoint, and starts after their last complete line; files that appear later, and all files
//!   with `beginning`, are read from 0. A checkpoint for the same key wins over both (a
//!   checkpoint past the end of the file means it was truncated: read from 0).
//! - **Unfinished last line**: handed out only when the file has not grown for `line_timeout`
//!   (or when the file is closed), since a writer may be halfway through it.
//! - **Memory**: a line longer than `max_line_bytes` is cut (flagged `truncated`) and its rest
//!   skipped, so a file costs at most `max_line_bytes` of held line plus the batch being built.

mod discover;
mod reader;
mod tracked;
mod wake;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, Instant};

use crate::input::checkpoint::Checkpoints;
pub use crate::input::fingerprint::FileKey;

use discover::{FileId, Globs};
use tracked::{KnownOffsets, SharedOffsets, StartPolicy, TrackedFile};
use wake::{DirWatcher, Wake};

/// How often the globs are expanded again to find new files.
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(5);
/// How often every open file is stat'ed: the longest a change goes unnoticed without inotify.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long a rotated or deleted file is kept open after it last grew.
pub const DEFAULT_ROTATE_WAIT: Duration = Duration::from_secs(5);
/// How long a last line without a newline waits for the rest of it.
pub const DEFAULT_LINE_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines are cut here; the same cap as [`crate::input::lines`] users get by default.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;
/// About how many bytes of lines one [`FileLines`] holds.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 256 * 1024;
/// Upper bound for the two byte settings, which keeps batch ranges within `u32`.
const MAX_SETTING_BYTES: usize = 1 << 30;
/// Batches read from one file before the others get their turn.
const BATCHES_PER_TURN: usize = 4;
/// After a notification, wait this long so a burst of events costs one poll.
const WAKE_COALESCE: Duration = Duration::from_millis(5);

/// `start_at`: where a file seen for the first time (no checkpoint) is read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Only lines written from now on, so installing the agent does not re-ship old logs.
    #[default]
    End,
    Beginning,
}

/// One line of a [`FileLines`] batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRef {
    /// The line's bytes are `buf[start..end]`, without `\n` and without a `\r` before it.
    pub start: u32,
    pub end: u32,
    /// 1-based line number counted from where reading started (best effort: a restart or a
    /// truncation counts from 1 again).
    pub number: u64,
    /// The file offset just past this line's newline: what a checkpoint stores once the line is
    /// safe.
    pub end_offset: u64,
    /// The line was longer than `max_line_bytes` and was cut; the rest of it was skipped.
    pub truncated: bool,
}

/// Consecutive complete lines of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLines {
    pub file: FileKey,
    /// The path the file had when these lines were read.
    pub path: Arc<PathBuf>,
    pub buf: Vec<u8>,
    pub lines: Vec<LineRef>,
    /// Set once, on the first batch of a file seen without a checkpoint: the offset reading
    /// started from (the end, for `start_at = "end"`). Nothing before it will ever be sent, so
    /// it may be checkpointed at once — else a restart (or reload) before the file's first row
    /// is delivered would start at the end again and skip what was written meanwhile.
    pub started_at: Option<u64>,
}

impl FileLines {
    /// The bytes of `line` (empty for a range that is not in `buf`).
    pub fn line(&self, line: &LineRef) -> &[u8] {
        self.buf
            .get(line.start as usize..line.end as usize)
            .unwrap_or_default()
    }

    /// Each line with its bytes, in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&LineRef, &[u8])> {
        self.lines.iter().map(|l| (l, self.line(l)))
    }

    /// The offset to checkpoint once every line of this batch is safe.
    pub fn end_offset(&self) -> Option<u64> {
        self.lines.last().map(|l| l.end_offset)
    }
}

/// Settings of one file input. [`TailerConfig::new`] fills in the defaults above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailerConfig {
    /// Globs of files to tail (`*` stays in one directory, `**` recurses).
    pub paths: Vec<String>,
    /// Globs of files to skip; one without `/` is matched against the file name only.
    pub exclude: Vec<String>,
    pub start_at: StartAt,
    pub rescan_interval: Duration,
    pub poll_interval: Duration,
    pub rotate_wait: Duration,
    pub line_timeout: Duration,
    pub max_line_bytes: usize,
    pub max_batch_bytes: usize,
}

impl TailerConfig {
    pub fn new(paths: Vec<String>, exclude: Vec<String>, start_at: StartAt) -> Self {
        TailerConfig {
            paths,
            exclude,
            start_at,
            rescan_interval: DEFAULT_RESCAN_INTERVAL,
            poll_interval: DEFAULT_POLL_INTERVAL,
            rotate_wait: DEFAULT_ROTATE_WAIT,
            line_timeout: DEFAULT_LINE_TIMEOUT,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
        }
    }

    /// Compiles the globs, so that a bad one is a configuration error naming its key
    /// (`paths` or `exclude`) before anything starts.
    pub fn check_globs(&self) -> Result<(), (&'static str, TailError)> {
        Globs::new(&self.paths, &self.exclude)
            .map(|_| ())
            .map_err(|e| {
                let key = match &e {
                    TailError::Glob { pattern, .. } if self.exclude.contains(pattern) => "exclude",
                    _ => "paths",
                };
                (key, e)
            })
    }

    /// The files each of `paths` matches now (excludes applied). Blocking.
    pub fn files_per_glob(&self) -> Result<Vec<(String, Vec<PathBuf>)>, TailError> {
        Ok(Globs::new(&self.paths, &self.exclude)?.scan_each())
    }

    fn validate(&self) -> Result<(), TailError> {
        let setting = |name, reason| Err(TailError::Setting { name, reason });
        if self.paths.is_empty() {
            return setting("paths", "at least one glob is needed");
        }
        if self.poll_interval.is_zero() || self.rescan_interval.is_zero() {
            return setting("poll_interval/rescan_interval", "must be more than 0");
        }
        for (name, value) in [
            ("max_line_bytes", self.max_line_bytes),
            ("max_batch_bytes", self.max_batch_bytes),
        ] {
            if value == 0 || value > MAX_SETTING_BYTES {
                return setting(name, "must be from 1 byte to 1 GiB");
            }
        }
        Ok(())
    }
}

/// The tailer could not start, or its task failed.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("invalid path glob {pattern:?}: {source}")]
    Glob {
        pattern: String,
        source: glob::PatternError,
    },
    #[error("invalid file input setting {name}: {reason}")]
    Setting {
        name: &'static str,
        reason: &'static str,
    },
    #[error("file tailer I/O task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Tails the files of one input. Build it with [`FileTailer::new`], then `spawn` [`FileTailer::run`].
pub struct FileTailer {
    config: Arc<TailerConfig>,
    globs: Arc<Globs>,
    known: SharedOffsets,
    files: HashMap<FileId, Box<TrackedFile>>,
    /// `start_at = "end"` applies to what the first scan finds.
    first_scan: bool,
    /// Paths that could not be opened, so each is warned about once.
    open_failures: HashSet<PathBuf>,
}

/// What one pass over the open files saw.
#[derive(Debug, Default)]
struct Round {
    /// A file has more to read right away.
    busy: bool,
    /// A path stopped naming its file: rescan now to find the replacement.
    moved: bool,
}

impl FileTailer {
    /// Checks the settings and globs. `checkpoints` is the snapshot loaded at startup: files it
    /// names resume at its offsets.
    pub fn new(config: TailerConfig, checkpoints: &Checkpoints) -> Result<Self, TailError> {
        config.validate()?;
        let globs = Globs::new(&config.paths, &config.exclude)?;
        let known = KnownOffsets::new(checkpoints.iter().map(|(k, c)| (*k, c.offset)));
        Ok(FileTailer {
            config: Arc::new(config),
            globs: Arc::new(globs),
            known: Arc::new(Mutex::new(known)),
            files: HashMap::new(),
            first_scan: true,
            open_failures: HashSet::new(),
        })
    }

    /// Tails until `stop` holds `true` (or its sender is dropped) or `lines`' receiver is
    /// dropped. Lines read but not yet sent when it stops are dropped: their offsets were never
    /// handed out, so a restart from the checkpoints reads them again.
    pub async fn run(
        mut self,
        lines: mpsc::Sender<FileLines>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), TailError> {
        let wake = Arc::new(Wake::default());
        let mut watcher = DirWatcher::new(Arc::clone(&wake));
        let mut next_rescan = Instant::now();
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            if wake.take_rescan() || Instant::now() >= next_rescan {
                self.rescan(&mut watcher).await?;
                next_rescan = Instant::now() + self.config.rescan_interval;
            }
            let Some(round) = self.poll_round(&lines, &mut stop).await? else {
                return Ok(());
            };
            if round.moved {
                next_rescan = Instant::now();
            }
            if round.busy {
                tokio::task::yield_now().await;
                continue;
            }
            let deadline = next_rescan.min(Instant::now() + self.config.poll_interval);
            tokio::select! {
                _ = stopped(&mut stop) => return Ok(()),
                _ = wake.notified() => sleep(WAKE_COALESCE).await,
                _ = sleep_until(deadline) => {}
            }
        }
    }

    /// Expands the globs, opens files not seen before, updates the names of known ones, and
    /// watches their directories.
    async fn rescan(&mut self, watcher: &mut DirWatcher) -> Result<(), TailError> {
        let globs = Arc::clone(&self.globs);
        let config = Arc::clone(&self.config);
        let tracked: HashSet<FileId> = self.files.keys().copied().collect();
        let policy = match (self.first_scan, config.start_at) {
            (true, StartAt::End) => StartPolicy::End,
            _ => StartPolicy::Beginning,
        };
        let mut failures = std::mem::take(&mut self.open_failures);
        let (found, opened, failures) = tokio::task::spawn_blocking(move || {
            let found = globs.scan();
            let now = std::time::Instant::now();
            let mut opened = Vec::new();
            for f in found.iter().filter(|f| !tracked.contains(&f.id)) {
                match TrackedFile::open(f, policy, &config, now) {
                    Ok(file) => {
                        failures.remove(&f.path);
                        opened.extend(file);
                    }
                    Err(e) if failures.insert(f.path.clone()) => {
                        tracing::warn!(path = %f.path.display(), "cannot open file: {e}");
                    }
                    Err(e) => tracing::debug!(path = %f.path.display(), "cannot open file: {e}"),
                }
            }
            failures.retain(|p| found.iter().any(|f| &f.path == p));
            (found, opened, failures)
        })
        .await?;
        self.open_failures = failures;
        self.first_scan = false;
        for f in found {
            if let Some(dir) = f.path.parent() {
                watcher.watch(dir);
            }
            if let Some(file) = self.files.get_mut(&f.id) {
                file.seen_at(f.path);
            }
        }
        for file in opened {
            self.files.insert(file.id(), Box::new(file));
        }
        for dir in self.globs.base_dirs() {
            watcher.watch(&dir);
        }
        Ok(())
    }

    /// Polls every open file once (up to a few batches each), sending what it reads. `None`
    /// means stop: the signal was raised or the receiver is gone.
    async fn poll_round(
        &mut self,
        lines: &mpsc::Sender<FileLines>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<Round>, TailError> {
        let mut round = Round::default();
        let ids: Vec<FileId> = self.files.keys().copied().collect();
        for id in ids {
            let Some(mut file) = self.files.remove(&id) else {
                continue;
            };
            let mut keep = true;
            for turn in 1..=BATCHES_PER_TURN {
                let (config, known) = (Arc::clone(&self.config), Arc::clone(&self.known));
                let (back, polled) = tokio::task::spawn_blocking(move || {
                    let polled = file.poll(&config, &known, std::time::Instant::now());
                    (file, polled)
                })
                .await?;
                file = back;
                let polled = match polled {
                    Ok(polled) => polled,
                    Err(e) => {
                        keep = !file.poll_failed(&e, &self.config, std::time::Instant::now());
                        break;
                    }
                };
                round.moved |= polled.moved;
                if let Some(batch) = polled.batch {
                    if !send(lines, stop, batch).await {
                        return Ok(None);
                    }
                }
                if polled.finished {
                    keep = false;
                    break;
                }
                if !polled.more {
                    break;
                }
                round.busy |= turn == BATCHES_PER_TURN;
            }
            if keep {
                self.files.insert(id, file);
            }
        }
        Ok(Some(round))
    }
}

/// Sends a batch unless the stop signal comes first; false means stop.
async fn send(
    lines: &mpsc::Sender<FileLines>,
    stop: &mut watch::Receiver<bool>,
    batch: FileLines,
) -> bool {
    tokio::select! {
        biased;
        _ = stopped(stop) => false,
        sent = lines.send(batch) => sent.is_ok(),
    }
}

/// Resolves when the stop signal is raised or can no longer be (its sender was dropped).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
