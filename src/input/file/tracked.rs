//! One open file: its identity, reading position, and whether it is still at a watched path.
//!
//! [`TrackedFile::poll`] is the stat poll the design calls the source of truth. Each call:
//! 1. checks the path still names this file (else it is *draining*: renamed or deleted);
//! 2. fstats the open handle: smaller than the offset means truncated (copytruncate), and a
//!    changed head means replaced in place; either way it is read again from 0 under a new key;
//! 3. fixes the file's [`FileKey`] once the fingerprint rule allows, choosing where to start;
//! 4. reads one batch of lines, or, at the end of the file, hands out an unfinished last line
//!    once the file has not grown for `line_timeout`;
//! 5. says the file is finished once it is draining, fully read and idle for `rotate_wait`.
//!
//! Everything here is blocking file I/O; the tailer runs it in `spawn_blocking`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::discover::{FileId, Found};
use super::reader::{Batch, LineReader};
use super::{FileLines, TailerConfig};
use crate::input::fingerprint::{self, FileKey};

/// Where files the tailer does not hold right now were read up to: the checkpoints it started
/// with, and files it closed that still exist (so they are not read twice if they come back).
#[derive(Debug, Default)]
pub(super) struct KnownOffsets(HashMap<FileKey, u64>);

impl KnownOffsets {
    pub fn new(offsets: impl IntoIterator<Item = (FileKey, u64)>) -> Self {
        KnownOffsets(offsets.into_iter().collect())
    }

    /// Removes and returns the offset of `key`: a file held open needs no second record.
    fn take(&mut self, key: &FileKey) -> Option<u64> {
        self.0.remove(key)
    }

    fn insert(&mut self, key: FileKey, offset: u64) {
        self.0.insert(key, offset);
    }
}

pub(super) type SharedOffsets = Arc<Mutex<KnownOffsets>>;

fn lock(known: &SharedOffsets) -> std::sync::MutexGuard<'_, KnownOffsets> {
    // The map holds plain numbers; a panic elsewhere cannot leave it half-updated.
    known.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where a newly found file starts when no checkpoint names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StartPolicy {
    Beginning,
    /// After the last complete line present now (`start_at = "end"` at the first scan).
    End,
}

#[derive(Debug, Clone, Copy)]
enum Identity {
    /// No fingerprint yet; reading starts at `start` unless a checkpoint says otherwise.
    Pending {
        start: u64,
    },
    Known {
        key: FileKey,
        provisional: bool,
    },
}

/// What one poll of a file produced.
#[derive(Debug, Default)]
pub(super) struct Polled {
    pub batch: Option<FileLines>,
    /// More bytes are waiting: poll again soon.
    pub more: bool,
    /// The path no longer names this file: a rescan should look for what replaced it.
    pub moved: bool,
    /// Fully read, gone from the watched paths and idle for `rotate_wait`: close it.
    pub finished: bool,
}

#[derive(Debug)]
pub(super) struct TrackedFile {
    /// The start offset of a file first seen without a checkpoint, until a batch carries it.
    announce_start: Option<u64>,
    id: FileId,
    file: File,
    path: Arc<PathBuf>,
    identity: Identity,
    reader: LineReader,
    /// The last time the file was seen to grow (or was found).
    last_growth: Instant,
    /// Since when no watched path names this file.
    draining_since: Option<Instant>,
    /// A read error was logged already; later ones go to debug.
    error_logged: bool,
}

impl TrackedFile {
    /// Opens a file a scan found. `None` when the path now names another file (it changed between
    /// the scan and the open; the next scan sees the new one).
    pub fn open(
        found: &Found,
        policy: StartPolicy,
        config: &TailerConfig,
        now: Instant,
    ) -> io::Result<Option<Self>> {
        let file = File::open(&found.path)?;
        let meta = file.metadata()?;
        if FileId::of(&meta) != found.id {
            return Ok(None);
        }
        let start = match policy {
            StartPolicy::Beginning => 0,
            StartPolicy::End => end_offset(&file, meta.len(), config.max_line_bytes)?,
        };
        Ok(Some(TrackedFile {
            id: found.id,
            file,
            path: Arc::new(found.path.clone()),
            identity: Identity::Pending { start },
            announce_start: None,
            reader: LineReader::new(start, config.max_line_bytes),
            last_growth: now,
            draining_since: None,
            error_logged: false,
        }))
    }

    pub fn id(&self) -> FileId {
        self.id
    }

    /// A scan found this file at `path` (possibly a new name after a rename within the globs).
    pub fn seen_at(&mut self, path: PathBuf) {
        if *self.path != path {
            tracing::info!(from = %self.path.display(), to = %path.display(), "file renamed, still tailed");
            self.path = Arc::new(path);
        }
    }

    /// One step of the stat poll; see the module documentation.
    pub fn poll(
        &mut self,
        config: &TailerConfig,
        known: &SharedOffsets,
        now: Instant,
    ) -> io::Result<Polled> {
        let moved = self.check_path(now);
        let size = self.file.metadata()?.len();
        self.check_replaced(size)?;
        let mut polled = Polled {
            moved,
            ..Polled::default()
        };
        if !self.identify(size, known, now)? {
            polled.finished = self.idle_for_rotate_wait(config, now) && size == 0;
            return Ok(polled);
        }
        let mut batch = Batch::default();
        if size > self.reader.offset() {
            if self
                .reader
                .read(&self.file, config.max_batch_bytes, &mut batch)?
                > 0
            {
                self.last_growth = now;
            }
        } else if self.reader.has_partial()
            && now.duration_since(self.last_growth) >= config.line_timeout
        {
            self.reader.flush_partial(&mut batch);
        }
        polled.more = self.reader.offset() < size;
        if !polled.more && self.ready_to_close(config, now)? {
            self.reader.flush_partial(&mut batch);
            polled.finished = true;
            self.remember(known)?;
        }
        polled.batch = self.take_lines(batch);
        self.error_logged = false;
        Ok(polled)
    }

    /// Logs a failed poll once (then at debug, so a broken mount does not flood the log) and says
    /// whether to give the file up: only once it left the watched paths long ago.
    pub fn poll_failed(&mut self, err: &io::Error, config: &TailerConfig, now: Instant) -> bool {
        if self.error_logged {
            tracing::debug!(path = %self.path.display(), "cannot read file: {err}");
        } else {
            tracing::warn!(path = %self.path.display(), "cannot read file, will retry: {err}");
            self.error_logged = true;
        }
        self.idle_for_rotate_wait(config, now)
    }

    /// Whether the path still names this file; starts draining when it does not. Returns true
    /// when draining started now.
    fn check_path(&mut self, now: Instant) -> bool {
        let here = fs::metadata(&*self.path).is_ok_and(|m| FileId::of(&m) == self.id);
        if here {
            self.draining_since = None;
            false
        } else if self.draining_since.is_none() {
            tracing::info!(path = %self.path.display(), "file rotated or deleted; reading the rest of it");
            self.draining_since = Some(now);
            true
        } else {
            false
        }
    }

    /// Starts over under a new key when the file shrank (copytruncate) or its head changed
    /// (truncated and rewritten past our offset between two polls).
    fn check_replaced(&mut self, size: u64) -> io::Result<()> {
        let Identity::Known { key, provisional } = self.identity else {
            return Ok(());
        };
        let reason = if size < self.reader.offset() {
            "file truncated (copytruncate?)"
        } else if size > self.reader.offset()
            && !provisional
            && fingerprint::fingerprint(&fingerprint::read_head(&self.file)?)
                != Some(key.fingerprint)
        {
            "file head rewritten"
        } else {
            return Ok(());
        };
        tracing::info!(path = %self.path.display(), offset = self.reader.offset(), size, "{reason}; reading it again from the start");
        self.identity = Identity::Pending { start: 0 };
        self.reader.reset(0);
        Ok(())
    }

    /// Fixes the key once the fingerprint rule allows and picks the start offset; returns whether
    /// the file has a key (and may be read).
    fn identify(&mut self, size: u64, known: &SharedOffsets, now: Instant) -> io::Result<bool> {
        let Identity::Pending { start } = self.identity else {
            return Ok(true);
        };
        if size == 0 {
            return Ok(false);
        }
        let head = fingerprint::read_head(&self.file)?;
        let (fingerprint, provisional) = match fingerprint::fingerprint(&head) {
            Some(fp) => (fp, false),
            // Leaving the watched paths with an unfinished first line: read it anyway, it will
            // never be looked up again.
            None if self.draining_since.is_some() => {
                (fingerprint::provisional_fingerprint(&head), true)
            }
            None => return Ok(false),
        };
        let key = FileKey {
            dev: self.id.dev,
            ino: self.id.ino,
            fingerprint,
        };
        let offset = match lock(known).take(&key) {
            Some(offset) if offset <= size => {
                tracing::info!(path = %self.path.display(), %key, offset, "resuming from checkpoint");
                offset
            }
            Some(offset) => {
                tracing::info!(path = %self.path.display(), %key, offset, size, "file shorter than its checkpoint (truncated); reading from the start");
                0
            }
            None => {
                tracing::info!(path = %self.path.display(), %key, offset = start, "tailing new file");
                self.announce_start = Some(start);
                start
            }
        };
        self.identity = Identity::Known { key, provisional };
        self.reader.reset(offset);
        self.last_growth = now;
        Ok(true)
    }

    /// Draining, no longer growing, and the last check shows nothing left to read.
    fn ready_to_close(&self, config: &TailerConfig, now: Instant) -> io::Result<bool> {
        if !self.idle_for_rotate_wait(config, now) {
            return Ok(false);
        }
        // A write may have landed since the poll's fstat; closing now would lose it.
        Ok(self.file.metadata()?.len() <= self.reader.offset())
    }

    fn idle_for_rotate_wait(&self, config: &TailerConfig, now: Instant) -> bool {
        self.draining_since.is_some_and(|since| {
            now.duration_since(since.max(self.last_growth)) >= config.rotate_wait
        })
    }

    /// On close: a file that still exists somewhere may come back under a watched name; remember
    /// how far it was read so it is not read twice. A deleted one cannot come back.
    fn remember(&self, known: &SharedOffsets) -> io::Result<()> {
        if let Identity::Known { key, .. } = self.identity {
            if self.file.metadata()?.nlink() > 0 {
                lock(known).insert(key, self.reader.offset());
            }
        }
        tracing::info!(path = %self.path.display(), offset = self.reader.offset(), "closed file that left the watched paths");
        Ok(())
    }

    fn take_lines(&mut self, batch: Batch) -> Option<FileLines> {
        let Identity::Known { key, .. } = self.identity else {
            return None;
        };
        let started_at = self.announce_start.take();
        (!batch.is_empty() || started_at.is_some()).then(|| FileLines {
            file: key,
            path: Arc::clone(&self.path),
            buf: batch.buf,
            lines: batch.lines,
            started_at,
        })
    }
}

/// The offset after the last complete line among the file's last `max_line` bytes: where
/// `start_at = "end"` begins, so a line half-written at startup is read whole.
fn end_offset(file: &File, size: u64, max_line: usize) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    const MAX_WINDOW: u64 = 1 << 20;
    let window = size.min(max_line as u64).min(MAX_WINDOW);
    let from = size - window;
    let mut tail = vec![0; usize::try_from(window).unwrap_or(0)];
    file.read_exact_at(&mut tail, from)?;
    Ok(match memchr::memrchr(b'\n', &tail) {
        Some(nl) => from + nl as u64 + 1,
        None if from == 0 => 0,
        None => size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offset_starts_after_the_last_complete_line() -> io::Result<()> {
        let check = |bytes: &[u8], max_line: usize| -> io::Result<u64> {
            let tmp = tempfile::NamedTempFile::new()?;
            fs::write(tmp.path(), bytes)?;
            let file = File::open(tmp.path())?;
            end_offset(&file, bytes.len() as u64, max_line)
        };
        assert_eq!(check(b"", 100)?, 0);
        assert_eq!(check(b"a\nb\n", 100)?, 4);
        assert_eq!(check(b"a\nhalf", 100)?, 2);
        assert_eq!(check(b"only a partial line", 100)?, 0);
        // A partial line longer than the window: start at the end, mid-line.
        assert_eq!(check(b"a\nxxxxxxxxxx", 4)?, 12);
        Ok(())
    }
}
