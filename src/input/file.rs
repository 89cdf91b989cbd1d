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
//!   complete, or it has 1 KiB. The same inode with another fingerprint is another file; so is
//!   the same inode and fingerprint without the bytes a checkpoint saw before its offset (a
//!   lookalike: it is read from 0 under the key's next generation).
//! - **Rename rotation**: when a path names another file, the old handle is kept and read until it
//!   has not grown for `rotate_wait`, so late writes by a writer that has not reopened yet are not
//!   lost; the new file is read from its beginning. A rotated file whose new name still matches
//!   the globs simply goes on being tailed under that name (and is not read twice).
//! - **Deleted files** are drained the same way: read to the end, closed once idle for
//!   `rotate_wait` (a writer may still hold the unlinked file open).
//! - **copytruncate**: a file smaller than the read offset, whose head changed, or that no longer
//!   holds the bytes last read before the offset, is read again from 0 (logged at info) under a
//!   new key; what was not read of the old content is looked for in a copy beside it.
//! - **Files that left while not held**: a checkpointed file no longer at its path at startup
//!   (rotated while the agent was stopped), or one closed to save descriptors that moved, is
//!   looked for beside its path, by inode or, for copies and `.gz` rotations, by its bytes (see
//!   [`rotated`]), and read from its checkpoint to its end (logged at info).
//! - **Open files are bounded** by a budget shared by every file input ([`OpenFiles`]): a file
//!   is opened when it has something to read and a slot is free, and closed once fully read and
//!   idle for `close_idle`, or at once while the budget is crowded. Reopened, it must still be
//!   the same device and inode with the same first line and window.
//! - **start_at**: `end` applies only to files present at the tailer's first scan that have no
//!   checkpoint, and starts after their last complete line; files that appear later, and all files
//!   with `beginning`, are read from 0. A checkpoint for the same key wins over both (a
//!   checkpoint past the end of the file means it was truncated: read from 0).
//! - **Unfinished last line**: handed out only when the file has not grown for `line_timeout`
//!   (or when the file is closed), since a writer may be halfway through it.
//! - **Memory**: a line longer than `max_line_bytes` is cut (flagged `truncated`) and its rest
//!   skipped, so a file costs at most `max_line_bytes` of held line plus the batch being built.

mod budget;
mod discover;
mod gzip;
mod known;
mod reader;
mod rotated;
mod tracked;
mod wake;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::input::checkpoint::Checkpoints;
pub use crate::input::fingerprint::FileKey;
use crate::input::fingerprint::Window;

pub use budget::OpenFiles;
use discover::{FileId, Globs};
use gzip::GzDrain;
use known::Known;
use known::{lock, KnownOffsets, SharedOffsets};
use rotated::{History, Lost, Rotated, Search, Siblings};
use tracked::{PollCx, Polled, StartPolicy, TrackedFile};
use wake::{DirWatcher, Wake};

/// How often the globs are expanded again to find new files.
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(5);
/// How often a glob that matches nothing is said again.
const EMPTY_GLOB_LOG_EVERY: Duration = Duration::from_secs(60);
/// How often every open file is stat'ed: the longest a change goes unnoticed without inotify.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long a rotated or deleted file is kept open after it last grew.
pub const DEFAULT_ROTATE_WAIT: Duration = Duration::from_secs(5);
/// How long a last line without a newline waits for the rest of it.
pub const DEFAULT_LINE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a fully read file stays open without growing.
pub const DEFAULT_CLOSE_IDLE: Duration = Duration::from_secs(60);
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
/// Files polled in one blocking task.
const GROUP_FILES: usize = 128;
/// Bytes of lines one blocking task reads before the rest of its group waits a round.
const GROUP_BYTES: usize = 1 << 20;

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
    /// Checksums of bytes just before some of the offsets above (and `started_at`), in file
    /// order: a checkpoint keeps the latest at or before its offset, so a lookalike file is not
    /// resumed (see [`crate::input::fingerprint`]).
    pub windows: Vec<Window>,
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
    #[cfg(test)]
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
    /// A fully read file idle this long is closed (and opened again when it grows).
    pub close_idle: Duration,
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
            close_idle: DEFAULT_CLOSE_IDLE,
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
    files: HashMap<FileId, Tailed>,
    /// The descriptors the tailers may hold.
    budget: Arc<OpenFiles>,
    /// `start_at = "end"` applies to what the first scan finds.
    first_scan: bool,
    /// Checkpoints of this input not matched yet: once no file the scan found can be them,
    /// they are looked for beside their paths.
    startup: Vec<FileKey>,
    /// What was read under each watched name before this start: once `startup` is resolved,
    /// rotations of those names never read are looked for (then this is emptied).
    history: Vec<History>,
    /// Lost files not looked for yet: a search pass takes only as many as the budget has free
    /// descriptors for what it finds.
    deferred: Vec<Lost>,
    /// (fingerprint, offset) of every checkpoint it started with: a rotated file of that size
    /// and first line was read to its end.
    ends: Arc<HashSet<(u64, u64)>>,
    /// A file found no descriptor free this round.
    starved: bool,
    /// Globs that match no file, with when that was last logged.
    empty_globs: HashMap<String, std::time::Instant>,
}

/// What the tailer reads: a file by its path (or a rotated name), or a compressed rotation.
#[derive(Debug)]
enum Tailed {
    File(Box<TrackedFile>),
    Gzip(Box<GzDrain>),
}

impl Tailed {
    fn poll(&mut self, cx: &PollCx<'_>, now: std::time::Instant) -> io::Result<Polled> {
        match self {
            Tailed::File(f) => f.poll(cx, now),
            Tailed::Gzip(g) => Ok(g.poll(cx.config)),
        }
    }

    fn poll_failed(&mut self, err: &io::Error, cx: &PollCx<'_>, now: std::time::Instant) -> bool {
        match self {
            Tailed::File(f) => f.poll_failed(err, cx.config, now),
            Tailed::Gzip(_) => true,
        }
    }
}

/// What one pass over the open files saw.
#[derive(Debug, Default)]
struct Round {
    /// A file has more to read right away.
    busy: bool,
    /// A path stopped naming its file: rescan now to find the replacement.
    moved: bool,
}

/// One file's part of a group poll.
struct Outcome {
    id: FileId,
    /// Still tailed (`None`: finished, or given up).
    file: Option<Tailed>,
    batches: Vec<FileLines>,
    lost: Vec<Lost>,
    moved: bool,
    starved: bool,
    busy: bool,
}

impl FileTailer {
    /// Checks the settings and globs. `checkpoints` is the snapshot loaded at startup: files it
    /// names resume at its offsets.
    pub fn new(config: TailerConfig, checkpoints: &Checkpoints) -> Result<Self, TailError> {
        config.validate()?;
        let globs = Globs::new(&config.paths, &config.exclude)?;
        let known = KnownOffsets::from_checkpoints(checkpoints);
        let startup = known.keys_where(|k| globs.matches(&k.path));
        let history = history(checkpoints, &globs);
        let ends = checkpoints
            .iter()
            .map(|(k, c)| (k.fingerprint, c.offset))
            .collect();
        Ok(FileTailer {
            config: Arc::new(config),
            globs: Arc::new(globs),
            known: Arc::new(Mutex::new(known)),
            files: HashMap::new(),
            budget: OpenFiles::new(crate::fdlimit::default_max_open_files(
                crate::fdlimit::nofile_limit(),
            )),
            first_scan: true,
            startup,
            history,
            deferred: Vec::new(),
            ends: Arc::new(ends),
            starved: false,
            empty_globs: HashMap::new(),
        })
    }

    /// Shares `budget` (one for every file input of the agent) instead of a budget of its own.
    pub fn with_open_files(mut self, budget: Arc<OpenFiles>) -> Self {
        self.budget = budget;
        self
    }

    /// Tails until `stop` is cancelled or `lines`' receiver is
    /// dropped. Lines read but not yet sent when it stops are dropped: their offsets were never
    /// handed out, so a restart from the checkpoints reads them again.
    pub async fn run(
        mut self,
        lines: mpsc::Sender<FileLines>,
        stop: CancellationToken,
    ) -> Result<(), TailError> {
        let wake = Arc::new(Wake::default());
        let mut watcher = DirWatcher::new(Arc::clone(&wake));
        let mut next_rescan = Instant::now();
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            if wake.take_rescan() || Instant::now() >= next_rescan {
                self.rescan(&mut watcher).await?;
                next_rescan = Instant::now() + self.config.rescan_interval;
            }
            let Some(round) = self.poll_round(&lines, &stop).await? else {
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
                _ = stop.cancelled() => return Ok(()),
                _ = wake.notified() => sleep(WAKE_COALESCE).await,
                _ = sleep_until(deadline) => {}
            }
        }
    }

    /// Expands the globs, tracks files not seen before (they are opened by their first poll),
    /// updates the names of known ones, and watches their directories.
    async fn rescan(&mut self, watcher: &mut DirWatcher) -> Result<(), TailError> {
        let globs = Arc::clone(&self.globs);
        let (found, empty) = tokio::task::spawn_blocking(move || globs.scan_noting_empty()).await?;
        self.note_empty_globs(empty, std::time::Instant::now());
        let policy = match (self.first_scan, self.config.start_at) {
            (true, StartAt::End) => StartPolicy::End,
            _ => StartPolicy::Beginning,
        };
        self.first_scan = false;
        let now = std::time::Instant::now();
        for f in found {
            if let Some(dir) = f.path.parent() {
                watcher.watch(dir);
            }
            match self.files.get_mut(&f.id) {
                Some(Tailed::File(file)) => file.seen_at(f.path),
                Some(Tailed::Gzip(_)) => {}
                None => {
                    let file = TrackedFile::found(&f, policy, &self.config, now);
                    self.files.insert(f.id, Tailed::File(Box::new(file)));
                }
            }
        }
        for dir in self.globs.base_dirs() {
            watcher.watch(&dir);
        }
        Ok(())
    }

    /// A glob that matches nothing may be a typo: said at WARN when first seen and then at most
    /// once a minute while it lasts, and once (INFO) when it matches again.
    fn note_empty_globs(&mut self, empty: Vec<String>, now: std::time::Instant) {
        self.empty_globs.retain(|glob, _| {
            let matches = !empty.contains(glob);
            if matches {
                tracing::info!(glob = %glob, "the glob matches files again");
            }
            !matches
        });
        for glob in empty {
            let due = self
                .empty_globs
                .get(&glob)
                .is_none_or(|last| now.duration_since(*last) >= EMPTY_GLOB_LOG_EVERY);
            if due {
                tracing::warn!(glob = %glob, "no file matches the glob; files that appear are tailed (check the path for a typo; this repeats at most once a minute)");
                self.empty_globs.insert(glob, now);
            }
        }
    }

    /// Polls every file once (up to a few batches each), a group of files per blocking task,
    /// sending what it reads; then looks for the files it found lost. `None` means stop: the
    /// signal was raised or the receiver is gone.
    async fn poll_round(
        &mut self,
        lines: &mpsc::Sender<FileLines>,
        stop: &CancellationToken,
    ) -> Result<Option<Round>, TailError> {
        let mut round = Round::default();
        let mut lost = Vec::new();
        let ids: Vec<FileId> = self.files.keys().copied().collect();
        self.starved = false;
        for chunk in ids.chunks(GROUP_FILES) {
            let group: Vec<(FileId, Tailed)> = chunk
                .iter()
                .filter_map(|id| self.files.remove_entry(id))
                .collect();
            let (config, known, budget) = (
                Arc::clone(&self.config),
                Arc::clone(&self.known),
                Arc::clone(&self.budget),
            );
            let outcomes = tokio::task::spawn_blocking(move || {
                let cx = PollCx {
                    config: &config,
                    known: &known,
                    budget: &budget,
                };
                poll_group(group, &cx)
            })
            .await?;
            for o in outcomes {
                round.moved |= o.moved;
                round.busy |= o.busy;
                self.starved |= o.starved;
                lost.extend(o.lost);
                if let Some(file) = o.file {
                    self.files.insert(o.id, file);
                }
                for batch in o.batches {
                    if !send(lines, stop, batch).await {
                        return Ok(None);
                    }
                }
            }
        }
        lost.extend(self.lost_at_startup());
        lost.append(&mut self.deferred);
        let history = if self.startup.is_empty() && lost.is_empty() {
            std::mem::take(&mut self.history)
        } else {
            Vec::new()
        };
        self.find_lost(lost, history).await?;
        Ok(Some(round))
    }

    /// The checkpoints of this input that no tailed file can be any more: their file is not at
    /// its path (rotated while the agent was stopped, deleted) or another file is. A file still
    /// without a key (not read yet, or its first line unfinished) may be one of them: those wait.
    fn lost_at_startup(&mut self) -> Vec<Lost> {
        if self.startup.is_empty() {
            return Vec::new();
        }
        let undecided: HashMap<(u64, u64), u64> = self
            .files
            .values()
            .filter_map(|t| match t {
                Tailed::File(f) => f
                    .unidentified_size()
                    .map(|size| ((f.id().dev, f.id().ino), size)),
                Tailed::Gzip(_) => None,
            })
            .collect();
        let mut known = lock(&self.known);
        let mut lost = Vec::new();
        self.startup.retain(|key| {
            if known.get(key).is_none() {
                return false; // resumed
            }
            // An empty file cannot be it; one with bytes is looked at first.
            if undecided
                .get(&(key.dev, key.ino))
                .is_some_and(|&size| size > 0)
            {
                return true;
            }
            if let Some(k) = known.take(key) {
                lost.push(Lost {
                    key: *key,
                    offset: k.offset,
                    window: k.window,
                    path: Arc::new(k.path),
                    late_writes: false,
                });
            }
            false
        });
        lost
    }

    /// Looks for lost files beside their paths, then for rotations of the names in `history`
    /// never read, and tails what it finds, from each one's offset to its end.
    async fn find_lost(&mut self, lost: Vec<Lost>, history: Vec<History>) -> Result<(), TailError> {
        if lost.is_empty() && history.is_empty() {
            return Ok(());
        }
        let skip: HashSet<FileId> = self.files.keys().copied().collect();
        let (globs, config, budget, known, ends) = (
            Arc::clone(&self.globs),
            Arc::clone(&self.config),
            Arc::clone(&self.budget),
            Arc::clone(&self.known),
            Arc::clone(&self.ends),
        );
        let (found, deferred, history) = tokio::task::spawn_blocking(move || {
            let mut siblings = Siblings::new(&lost, &ends);
            let now = std::time::Instant::now();
            // Each file found takes a descriptor: no more than the budget has free.
            let room = budget.max().saturating_sub(budget.open()).max(1);
            let (mut found, mut deferred, mut later) = (Vec::new(), Vec::new(), Vec::new());
            for l in lost {
                if found.len() >= room {
                    deferred.push(l);
                    continue;
                }
                match siblings.find(&l, &skip, &|p| globs.matches(p)) {
                    Search::Found(r) => found.push(resume(&l, r, &config, &budget, now)),
                    Search::Known => lock(&known).insert(
                        l.key,
                        Known {
                            offset: l.offset,
                            window: l.window,
                            path: l.path.to_path_buf(),
                        },
                    ),
                    Search::Nothing => {
                        tracing::debug!(path = %l.path.display(), key = %l.key, offset = l.offset, "no rotated file holds the rest of a file that left its path")
                    }
                }
            }
            for h in history {
                if found.len() >= room {
                    later.push(h);
                    continue;
                }
                for (l, r) in siblings.unseen(&h, &skip, &|p| globs.matches(p)) {
                    found.push(resume(&l, r, &config, &budget, now));
                }
            }
            (found, deferred, later)
        })
        .await?;
        for (id, tailed) in found {
            self.files.entry(id).or_insert(tailed);
        }
        self.deferred = deferred;
        self.history.extend(history);
        Ok(())
    }
}

/// Polls each file of `group` once, up to [`BATCHES_PER_TURN`] batches while it has more, until
/// the group read [`GROUP_BYTES`]; the files after that wait for the next round.
fn poll_group(group: Vec<(FileId, Tailed)>, cx: &PollCx<'_>) -> Vec<Outcome> {
    let mut bytes = 0;
    group
        .into_iter()
        .map(|(id, mut file)| {
            let mut out = Outcome {
                id,
                file: None,
                batches: Vec::new(),
                lost: Vec::new(),
                moved: false,
                starved: false,
                busy: bytes >= GROUP_BYTES,
            };
            let mut keep = true;
            for turn in 1..=BATCHES_PER_TURN {
                if bytes >= GROUP_BYTES {
                    break;
                }
                let now = std::time::Instant::now();
                let polled = match file.poll(cx, now) {
                    Ok(polled) => polled,
                    Err(e) => {
                        keep = !file.poll_failed(&e, cx, now);
                        break;
                    }
                };
                out.moved |= polled.moved;
                out.starved |= polled.starved;
                out.lost.extend(polled.lost);
                if let Some(batch) = polled.batch {
                    bytes += batch.buf.len();
                    out.batches.push(batch);
                }
                if polled.finished {
                    keep = false;
                    break;
                }
                if !polled.more {
                    break;
                }
                out.busy |= turn == BATCHES_PER_TURN || bytes >= GROUP_BYTES;
            }
            out.file = keep.then_some(file);
            out
        })
        .collect()
}

/// What the checkpoints say was read under each watched name of this input, and when it last
/// moved. Names never checkpointed have none: their old rotations are history, and `start_at`
/// decides.
fn history(checkpoints: &Checkpoints, globs: &Globs) -> Vec<History> {
    let mut by_path: HashMap<&std::path::Path, History> = HashMap::new();
    for (key, cp) in checkpoints.iter() {
        if !globs.matches(&cp.path) {
            continue;
        }
        let updated = std::time::SystemTime::from(cp.updated);
        let h = by_path.entry(&cp.path).or_insert_with(|| History {
            path: cp.path.clone(),
            since: updated,
            seen: Vec::new(),
        });
        h.since = h.since.max(updated);
        h.seen.push(Lost {
            key: *key,
            offset: cp.offset,
            window: cp.window,
            path: Arc::new(cp.path.clone()),
            late_writes: false,
        });
    }
    by_path.into_values().collect()
}

/// Tails a lost file found under a rotated name, from its offset (logged at info when it has
/// something left to read).
fn resume(
    lost: &Lost,
    found: Rotated,
    config: &TailerConfig,
    budget: &Arc<OpenFiles>,
    now: std::time::Instant,
) -> (FileId, Tailed) {
    match found {
        Rotated::Plain {
            path,
            file,
            id,
            how,
            size,
        } => {
            let how = how.as_str();
            let left = size.saturating_sub(lost.offset);
            if left > 0 {
                tracing::info!(path = %path.display(), was = %lost.path.display(), offset = lost.offset, bytes = left, "found a rotated file ({how}) with lines not yet read; reading it from its checkpoint");
            } else {
                tracing::debug!(path = %path.display(), was = %lost.path.display(), offset = lost.offset, "found a rotated file ({how}), read to its end already; watching it for late writes");
            }
            let tracked = TrackedFile::rotated(lost, path, file, id, budget.slot(), config, now);
            (id, Tailed::File(Box::new(tracked)))
        }
        Rotated::Gzip {
            path,
            stream,
            id,
            how,
        } => {
            let how = how.as_str();
            tracing::info!(path = %path.display(), was = %lost.path.display(), offset = lost.offset, "found a compressed rotated file ({how}) with lines not yet read; reading it from offset {}", lost.offset);
            let drain = GzDrain::new(
                Arc::clone(&lost.path),
                path,
                lost.key,
                stream,
                lost.offset,
                config,
                budget.slot(),
            );
            (id, Tailed::Gzip(Box::new(drain)))
        }
    }
}

/// Sends a batch unless the stop signal comes first; false means stop.
async fn send(lines: &mpsc::Sender<FileLines>, stop: &CancellationToken, batch: FileLines) -> bool {
    tokio::select! {
        biased;
        _ = stop.cancelled() => false,
        sent = lines.send(batch) => sent.is_ok(),
    }
}
