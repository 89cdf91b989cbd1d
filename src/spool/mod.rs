//! The disk spool: a durable, bounded FIFO of sealed request bodies, one per output.
//!
//! ```text
//!  sealing tasks ──append──▶ ┌ spool thread ─────────────────────────────┐ ──next──▶ delivery
//!  (gzip bodies)             │ segment files state_dir/spool/<output>/    │           tasks
//!       ▲                    │ group fsync every fsync_interval (sooner   │ ◀──ack───
//!       └──── on_safe ◀──────│ when idle) · cursor of acknowledged seqs   │
//!        (checkpoints move)  └───────────────────────────────────────────┘
//! ```
//! A record is the gzip body exactly as it is POSTed, framed with length, CRC32 and sequence
//! number ([`frame`]). Appends are written at once and fsynced together; only then is a record's
//! `on_safe` called, which is when file checkpoints may move past its rows. Delivery takes
//! records in order — from memory when this process appended them (no disk read, no gunzip), from
//! disk after a restart or when the in-memory cache was full — and acknowledges each when the
//! service answered; a segment file is deleted once all its records are acknowledged, and the
//! acknowledged sequence numbers are saved atomically ([`acked`]). On start, unacknowledged
//! records are delivered again; a torn or corrupt tail is cut and logged.
//!
//! Two sizes are reported: the bytes of records not acknowledged yet (the backlog, written or
//! still waiting in memory to be written) and the segment files' size on disk, which also holds
//! acknowledged records until their whole segment is done.
//!
//! Bound: `max_bytes` of segment files. When full, `when_full = "block"` makes appends wait
//! (inputs pause), `"drop_oldest"` deletes the oldest segment and counts its rows as dropped.
//! All file I/O runs on the spool's own thread, never on the async workers.

pub mod acked;
pub mod frame;
mod store;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{oneshot, watch};

use crate::batch::{RawBatch, SealedBatch};
use crate::metrics::{Counter, Gauge};
use crate::rows::Origin;
use store::Store;

/// What to do when the spool holds `max_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Stop taking new bodies: file inputs pause (the files are the buffer), stdin is not read.
    #[default]
    Block,
    /// Delete the oldest segment; its rows are counted as dropped (`reason="spool_full"`).
    DropOldest,
}

/// Default `[spool] max_bytes`.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// The spool must hold at least one full request, or delivery could never make progress.
pub const MIN_MAX_BYTES: u64 = 1 << 20;

/// Default `[spool] fsync_interval`: the longest a written record waits for its fsync.
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_millis(200);
/// Bodies kept in memory for delivery without a disk read, per output: gzip bytes (sealed
/// batches keep no raw body), so about a dozen 1 MB requests. `run`, 10M rows, paired: peak RSS
/// 34.7-36.3 MB with 2 MiB vs 42.3-43.1 with 8 MiB, the same CPU (11.4-11.6 s).
pub const DEFAULT_CACHE_BYTES: usize = 2 << 20;
/// With nothing else arriving for this long, fsync at once rather than wait the interval.
const IDLE_SYNC: Duration = Duration::from_millis(5);
/// How often acknowledgements are written to the cursor file (without fsync).
const CURSOR_EVERY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct Options {
    pub max_bytes: u64,
    pub fsync_interval: Duration,
    pub when_full: WhenFull,
    pub cache_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_bytes: DEFAULT_MAX_BYTES,
            fsync_interval: DEFAULT_FSYNC_INTERVAL,
            when_full: WhenFull::Block,
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

/// Where the spool reports its size, age and losses.
#[derive(Clone, Default)]
pub struct SpoolMetrics {
    /// `dcrship_spool_bytes{output}`: bytes of records not yet acknowledged (the backlog).
    pub bytes: Gauge,
    /// `dcrship_spool_disk_bytes{output}`: the segment files' size, which `max_bytes` bounds.
    pub disk_bytes: Gauge,
    /// `dcrship_spool_max_bytes{output}`: `max_bytes`, set once at open.
    pub max_bytes: Gauge,
    /// `dcrship_oldest_unsent_seconds{output}`
    pub oldest: Gauge,
    /// Rows dropped because the spool was full (`drop_oldest`).
    pub dropped: Counter,
    /// Rows of records that could not be read back (disk damage).
    pub corrupt: Counter,
}

/// Called once a record's rows are safe: fsynced in the spool, or delivered.
pub type OnSafe = Box<dyn FnOnce() + Send>;

/// A record handed out for delivery.
pub struct Record {
    pub seq: u64,
    pub rows: u32,
    pub enqueued_ms: u64,
    pub body: Body,
}

/// A record's body: the sealed batch still in memory, or the gzip bytes read back from disk
/// (see [`unseal`]).
pub enum Body {
    Sealed(SealedBatch),
    Gzip(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {}: {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: String,
        source: std::io::Error,
    },
}

enum Cmd {
    Append {
        batch: SealedBatch,
        on_safe: OnSafe,
        taken: oneshot::Sender<()>,
    },
    Next(oneshot::Sender<Option<Record>>),
    Ack(u64),
    CloseInput,
    Pending(oneshot::Sender<(u64, u64)>),
    Close(oneshot::Sender<()>),
}

/// A handle on one spool directory; its thread owns the files.
pub struct Spool {
    tx: std::sync::mpsc::Sender<Cmd>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    dropped: watch::Receiver<u64>,
    dir: PathBuf,
}

impl Spool {
    /// Opens the directory and recovers it (blocking: reads every segment once).
    pub fn open(dir: &Path, opts: Options, metrics: SpoolMetrics) -> Result<Spool, SpoolError> {
        let (dropped_tx, dropped) = watch::channel(0);
        let store = Store::open(dir, opts.clone(), metrics, dropped_tx)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("dcrship-spool".into())
            .spawn(move || run(store, rx, opts.fsync_interval))
            .map_err(|e| SpoolError::Io {
                path: dir.to_path_buf(),
                what: "cannot start its thread".into(),
                source: e,
            })?;
        Ok(Spool {
            tx,
            thread: Mutex::new(Some(thread)),
            dropped,
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Hands a sealed body to the spool; returns once it is written (so a full spool makes the
    /// caller wait). `on_safe` runs when it is fsynced (or delivered). False if the spool closed.
    pub async fn append(&self, batch: SealedBatch, on_safe: OnSafe) -> bool {
        let (taken, rx) = oneshot::channel();
        let cmd = Cmd::Append {
            batch,
            on_safe,
            taken,
        };
        self.tx.send(cmd).is_ok() && rx.await.is_ok()
    }

    /// The next record to deliver, waiting for one; `None` once input is closed and everything
    /// was handed out (or the spool closed).
    pub async fn next(&self) -> Option<Record> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Cmd::Next(tx)).ok()?;
        rx.await.ok().flatten()
    }

    /// The service took the record (or its rows were dead-lettered).
    pub fn ack(&self, seq: u64) {
        let _ = self.tx.send(Cmd::Ack(seq));
    }

    /// No more appends: [`Spool::next`] answers `None` when the rest is handed out.
    pub fn close_input(&self) {
        let _ = self.tx.send(Cmd::CloseInput);
    }

    /// Resolves if record `seq` is dropped (`drop_oldest`) before it is acknowledged.
    pub async fn dropped(&self, seq: u64) {
        let mut rx = self.dropped.clone();
        if rx.wait_for(|&through| through > seq).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Records and rows not acknowledged yet.
    pub async fn pending(&self) -> (u64, u64) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Pending(tx)).is_err() {
            return (0, 0);
        }
        rx.await.unwrap_or((0, 0))
    }

    /// Fsyncs, saves the cursor and stops the thread. Records not acknowledged stay for the
    /// next start.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Close(tx)).is_ok() {
            let _ = rx.await;
        }
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// The spool thread: commands in, group fsync, periodic cursor and metrics.
fn run(mut store: Store, rx: Receiver<Cmd>, interval: Duration) {
    let tick = Duration::from_secs(1);
    let mut waiters: VecDeque<oneshot::Sender<Option<Record>>> = VecDeque::new();
    let mut input_closed = false;
    let mut closing: Option<oneshot::Sender<()>> = None;
    let mut last_cmd = Instant::now();
    let mut last_tick = Instant::now();
    let mut disconnected = false;
    while closing.is_none() && !disconnected {
        let mut deadline = last_tick + tick;
        if let Some(d) = store.dirty_since {
            deadline = deadline.min(d + interval).min(last_cmd + IDLE_SYNC);
        }
        if let Some(t) = store.write_retry_at {
            deadline = deadline.min(t);
        }
        if let Some(t) = store.cursor_due(CURSOR_EVERY) {
            deadline = deadline.min(t);
        }
        let mut handle = |cmd: Cmd, store: &mut Store| match cmd {
            Cmd::Append {
                batch,
                on_safe,
                taken,
            } => store.append(batch, on_safe, taken),
            Cmd::Next(w) => waiters.push_back(w),
            Cmd::Ack(seq) => store.ack(seq),
            Cmd::CloseInput => input_closed = true,
            Cmd::Pending(w) => {
                let _ = w.send(store.pending());
            }
            Cmd::Close(w) => closing = Some(w),
        };
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(cmd) => {
                last_cmd = Instant::now();
                handle(cmd, &mut store);
                while let Ok(cmd) = rx.try_recv() {
                    handle(cmd, &mut store);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => disconnected = true,
        }
        if store
            .dirty_since
            .is_some_and(|d| d.elapsed() >= interval || last_cmd.elapsed() >= IDLE_SYNC)
        {
            store.sync();
        }
        if store.write_retry_at.is_some_and(|t| t <= Instant::now()) {
            store.pump();
        }
        serve(&mut store, &mut waiters, input_closed);
        // Often and cheap (no fsync): a crash then resends only what was acknowledged in the
        // last few milliseconds.
        store.save_cursor(CURSOR_EVERY, false);
        if last_tick.elapsed() >= tick {
            last_tick = Instant::now();
            store.update_metrics();
        }
    }
    store.pump();
    store.sync();
    store.save_cursor(interval, true);
    store.update_metrics();
    for w in waiters {
        let _ = w.send(None);
    }
    if let Some(c) = closing {
        let _ = c.send(());
    }
}

/// Gives ready records to waiting delivery tasks.
fn serve(
    store: &mut Store,
    waiters: &mut VecDeque<oneshot::Sender<Option<Record>>>,
    input_closed: bool,
) {
    while let Some(w) = waiters.front() {
        if w.is_closed() {
            waiters.pop_front();
            continue;
        }
        match store.next_record() {
            Some(rec) => {
                if let Some(w) = waiters.pop_front() {
                    // A delivery task gone (aborted at shutdown) leaves its record unacknowledged:
                    // it is sent after the next start.
                    let _ = w.send(Some(rec));
                }
            }
            None if input_closed && store.drained() => {
                for w in waiters.drain(..) {
                    let _ = w.send(None);
                }
            }
            None => return,
        }
    }
}

/// Turns a body read back from disk into a batch again (for 400 bisection, 413 splits and
/// dead-letters): gunzip, and cut the JSON array into its rows. Every row gets `origin` (line
/// numbers are not kept in the spool).
pub fn unseal(gzip: Vec<u8>, origin: Origin) -> Result<RawBatch, String> {
    let raw = crate::batch::gunzip(&gzip, frame::MAX_BODY_BYTES)
        .map_err(|e| format!("spooled body is not valid gzip: {e}"))?;
    let bad = "spooled body is not a JSON array of objects";
    let ends = split_rows(&raw).ok_or(bad)?;
    Ok(RawBatch::from_body(raw, ends, origin).ok_or(bad)?)
}

/// Where each element of `[{..},{..}]` ends, as the batcher writes it (no whitespace between
/// elements). A scan of strings and nesting, much cheaper than parsing the JSON: the body was
/// written by us and its CRC checked, so only its framing is needed.
fn split_rows(body: &[u8]) -> Option<Vec<u32>> {
    if body.first() != Some(&b'[') || body.last() != Some(&b']') || body.len() > u32::MAX as usize {
        return None;
    }
    let end = body.len() - 1;
    let mut ends = Vec::new();
    if end == 1 {
        return Some(ends);
    }
    let (mut i, mut depth, mut start) = (1usize, 0usize, 1usize);
    while i < end {
        match body[i] {
            b'"' => {
                // Jump to the closing quote, over escaped characters.
                i += 1;
                loop {
                    i += memchr::memchr2(b'"', b'\\', body.get(i..end)?)?;
                    if body[i] == b'\\' {
                        i += 2;
                    } else {
                        break;
                    }
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1)?,
            b',' if depth == 0 => {
                if i == start {
                    return None;
                }
                ends.push(i as u32);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if depth != 0 || start >= end {
        return None;
    }
    ends.push(end as u32);
    Some(ends)
}

#[cfg(test)]
mod tests;
