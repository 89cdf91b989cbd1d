//! One tailed file: its identity, reading position, whether it is still at a watched path, and
//! whether it is held open.
//!
//! [`TrackedFile::poll`] is the stat poll the design calls the source of truth. Each call:
//! 1. for a file not held open (found but not opened yet, or closed to save descriptors): stats
//!    its path; the same inode with the size it was closed at needs nothing, anything else opens
//!    it again once the budget has a slot. A file gone from its path while closed is reported
//!    *lost*, for the tailer to look for beside it (see [`super::rotated`]);
//! 2. checks the path still names this file (else it is *draining*: renamed or deleted);
//! 3. fstats the handle: smaller than the offset (copytruncate), another first line, or no longer
//!    the bytes of its latest window (rewritten with the same first line) means replaced in
//!    place: it is read again from 0 under the next generation, and the old content is reported
//!    lost (its unread rest may sit in a copy);
//! 4. fixes the file's [`FileKey`] once the fingerprint rule allows, choosing where to start
//!    (a checkpoint only counts if the file still holds its window, see [`super::known`]);
//! 5. reads one batch of lines, or, at the end of the file, hands out an unfinished last line
//!    once the file has not grown for `line_timeout`;
//! 6. says the file is finished once it is draining, fully read and idle for `rotate_wait`; and
//!    closes a fully read file idle for `close_idle`, or at once while the budget is crowded.
//!
//! Everything here is blocking file I/O; the tailer runs it in `spawn_blocking`.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::budget::{OpenFiles, Slot};
use super::discover::{FileId, Found};
use super::known::{lock, Claim, Known, SharedOffsets};
use super::reader::{Batch, LineReader};
use super::rotated::Lost;
use super::{FileLines, TailerConfig};
use crate::input::fingerprint::{self, FileKey, Window};

/// Where a newly found file starts when no checkpoint names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StartPolicy {
    Beginning,
    /// After the last complete line present now (`start_at = "end"` at the first scan).
    End,
}

#[derive(Debug, Clone, Copy)]
enum Start {
    At(u64),
    /// After the last complete line of the first `size` bytes (the size when it was found).
    EndOf(u64),
}

#[derive(Debug, Clone, Copy)]
enum Identity {
    /// No fingerprint yet; reading starts at `start` unless a checkpoint says otherwise.
    Pending {
        start: Start,
    },
    Known {
        key: FileKey,
        provisional: bool,
    },
}

/// What a poll needs besides the file.
pub(super) struct PollCx<'a> {
    pub config: &'a TailerConfig,
    pub known: &'a SharedOffsets,
    pub budget: &'a Arc<OpenFiles>,
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
    /// Files this one turned out not to be, or that left while closed: to look for elsewhere.
    pub lost: Vec<Lost>,
    /// It needed a descriptor and the budget had none free.
    pub starved: bool,
}

/// An open file and its share of the budget.
#[derive(Debug)]
struct Handle {
    file: File,
    _slot: Slot,
}

#[derive(Debug)]
pub(super) struct TrackedFile {
    id: FileId,
    /// The watched name: what lines carry as their path.
    path: Arc<PathBuf>,
    /// Where it is open from when that is not `path`: a rotated name a search found it under.
    rotated_to: Option<PathBuf>,
    handle: Option<Handle>,
    /// The size it had when it was closed; `None` until it was first opened.
    closed_at: Option<u64>,
    /// The size at the last look (the scan's, until it is opened).
    size: u64,
    identity: Identity,
    /// The key it had before it was found replaced in place: the next key with the same
    /// device, inode and fingerprint takes a later generation.
    replaced: Option<FileKey>,
    reader: LineReader,
    /// The latest window of bytes read (or of the checkpoint resumed): the file must still
    /// hold it.
    window: Option<Window>,
    /// The start offset of a file first seen without a checkpoint, and its window, until a
    /// batch carries them.
    announce_start: Option<(u64, Option<Window>)>,
    /// The last time the file was seen to grow (or was found).
    last_growth: Instant,
    /// Since when no watched path names this file.
    draining_since: Option<Instant>,
    /// A read error was logged already; later ones go to debug.
    error_logged: bool,
}

impl TrackedFile {
    /// A file a scan found; it is opened by its first poll.
    pub fn found(found: &Found, policy: StartPolicy, config: &TailerConfig, now: Instant) -> Self {
        let start = match policy {
            StartPolicy::Beginning => Start::At(0),
            StartPolicy::End => Start::EndOf(found.size),
        };
        TrackedFile {
            id: found.id,
            path: Arc::new(found.path.clone()),
            rotated_to: None,
            handle: None,
            closed_at: None,
            size: found.size,
            identity: Identity::Pending { start },
            replaced: None,
            reader: LineReader::new(0, config.max_line_bytes),
            window: None,
            announce_start: None,
            last_growth: now,
            draining_since: None,
            error_logged: false,
        }
    }

    /// A lost file found under a rotated name, open, checked to be `lost`'s, read from its
    /// offset to its end (it drains: no watched name holds it).
    pub fn rotated(
        lost: &Lost,
        at: PathBuf,
        file: File,
        id: FileId,
        slot: Slot,
        config: &TailerConfig,
        now: Instant,
    ) -> Self {
        TrackedFile {
            id,
            path: Arc::clone(&lost.path),
            rotated_to: Some(at),
            handle: Some(Handle { file, _slot: slot }),
            closed_at: None,
            size: lost.offset,
            identity: Identity::Known {
                key: lost.key,
                provisional: false,
            },
            replaced: None,
            reader: LineReader::new(lost.offset, config.max_line_bytes),
            window: lost.window,
            announce_start: None,
            last_growth: now,
            draining_since: Some(now),
            error_logged: false,
        }
    }

    pub fn id(&self) -> FileId {
        self.id
    }

    /// Its size at the last look while it has no key yet: a checkpoint of its inode may still
    /// turn out to be it.
    pub fn unidentified_size(&self) -> Option<u64> {
        matches!(self.identity, Identity::Pending { .. }).then_some(self.size)
    }

    /// A scan found this file at `path` (possibly a new name after a rename within the globs).
    pub fn seen_at(&mut self, path: PathBuf) {
        if *self.path != path && self.rotated_to.is_none() {
            tracing::info!(from = %self.path.display(), to = %path.display(), "file renamed, still tailed");
            self.path = Arc::new(path);
        }
    }

    /// One step of the stat poll; see the module documentation.
    pub fn poll(&mut self, cx: &PollCx<'_>, now: Instant) -> io::Result<Polled> {
        let mut polled = Polled::default();
        if self.handle.is_none() && !self.open_again(cx, now, &mut polled)? {
            return Ok(polled);
        }
        polled.moved = self.check_path(now);
        let size = self.file()?.metadata()?.len();
        self.size = size;
        self.check_replaced(size, &mut polled)?;
        if !self.identify(size, cx, now, &mut polled)? {
            polled.finished = self.idle_for_rotate_wait(cx.config, now) && size == 0;
            if !polled.finished {
                self.close_if_idle(cx, now, size);
            }
            return Ok(polled);
        }
        let mut batch = Batch::default();
        if let Some(handle) = self.handle.as_ref().filter(|_| size > self.reader.offset()) {
            batch.reserve_for(size - self.reader.offset(), cx.config.max_batch_bytes);
            if self
                .reader
                .read(&mut &handle.file, cx.config.max_batch_bytes, &mut batch)?
                > 0
            {
                self.last_growth = now;
            }
        } else if self.reader.has_partial()
            && now.duration_since(self.last_growth) >= cx.config.line_timeout
        {
            self.reader.flush_partial(&mut batch);
        }
        if let Some(w) = batch.windows.last() {
            self.window = Some(*w);
        }
        polled.more = self.reader.offset() < size;
        if !polled.more && self.ready_to_close(cx.config, now)? {
            self.reader.flush_partial(&mut batch);
            polled.finished = true;
            self.remember(cx.known)?;
        }
        polled.batch = self.take_lines(batch);
        self.error_logged = false;
        if !polled.more && !polled.finished {
            self.close_if_idle(cx, now, size);
        }
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

    fn file(&self) -> io::Result<&File> {
        self.handle
            .as_ref()
            .map(|h| &h.file)
            .ok_or_else(|| io::Error::other("file not open"))
    }

    /// Opens a file not held open when it may have something to read; returns whether it is open
    /// now. A file gone from its path while closed is reported lost and finished.
    fn open_again(
        &mut self,
        cx: &PollCx<'_>,
        now: Instant,
        polled: &mut Polled,
    ) -> io::Result<bool> {
        let here = fs::metadata(&*self.path)
            .ok()
            .filter(|m| FileId::of(m) == self.id);
        let Some(meta) = here else {
            self.left_while_closed(polled);
            return Ok(false);
        };
        if self.closed_at == Some(meta.len()) {
            if self.reader.has_partial()
                && now.duration_since(self.last_growth) >= cx.config.line_timeout
            {
                let mut batch = Batch::default();
                self.reader.flush_partial(&mut batch);
                polled.batch = self.take_lines(batch);
            }
            return Ok(false);
        }
        let Some(slot) = cx.budget.try_slot() else {
            polled.starved = true;
            return Ok(false);
        };
        let file = match File::open(&*self.path) {
            Ok(file) => file,
            Err(e) if is_out_of_descriptors(&e) => {
                polled.starved = true;
                tracing::debug!(path = %self.path.display(), "cannot open file yet: {e}");
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        if FileId::of(&file.metadata()?) != self.id {
            self.left_while_closed(polled);
            return Ok(false);
        }
        if let Identity::Pending {
            start: Start::EndOf(size),
        } = self.identity
        {
            let start = end_offset(&file, size, cx.config.max_line_bytes)?;
            self.identity = Identity::Pending {
                start: Start::At(start),
            };
        }
        self.handle = Some(Handle { file, _slot: slot });
        Ok(true)
    }

    /// Closed, and its path no longer names it: renamed, deleted or replaced meanwhile. What it
    /// held is handed out; a search may find where it went.
    fn left_while_closed(&mut self, polled: &mut Polled) {
        if let Identity::Known { key, .. } = self.identity {
            let mut batch = Batch::default();
            self.reader.flush_partial(&mut batch);
            polled.batch = self.take_lines(batch);
            polled.lost.push(Lost {
                key,
                offset: self.reader.offset(),
                window: self.window,
                path: Arc::clone(&self.path),
                late_writes: true,
            });
            tracing::debug!(path = %self.path.display(), "a file closed to save descriptors left its path");
        }
        polled.moved = true;
        polled.finished = true;
    }

    /// Closes a fully read file that is idle past `close_idle`, or at once when the budget is
    /// crowded. Its position, unfinished line and identity stay; the next poll that sees it
    /// change opens it again.
    fn close_if_idle(&mut self, cx: &PollCx<'_>, now: Instant, size: u64) {
        if self.draining_since.is_some() || self.rotated_to.is_some() {
            return;
        }
        let read = match self.identity {
            Identity::Known { .. } => self.reader.offset() >= size,
            Identity::Pending { .. } => true,
        };
        let idle = now.duration_since(self.last_growth) >= cx.config.close_idle;
        if read && (idle || cx.budget.crowded()) {
            self.handle = None;
            self.closed_at = Some(size);
        }
    }

    /// Whether the path still names this file; starts draining when it does not. Returns true
    /// when draining started now. A file found under a rotated name drains from the start.
    fn check_path(&mut self, now: Instant) -> bool {
        if self.rotated_to.is_some() {
            return false;
        }
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

    /// Starts over under a new key when the file shrank (copytruncate), its head changed, or it
    /// no longer holds the bytes of its latest window (truncated and rewritten past our offset
    /// between two polls, with the same first line or another). What was not read of the old
    /// content may sit in a copy: it is reported lost.
    fn check_replaced(&mut self, size: u64, polled: &mut Polled) -> io::Result<()> {
        let Identity::Known { key, provisional } = self.identity else {
            return Ok(());
        };
        let offset = self.reader.offset();
        let file = self.file()?;
        let reason = if size < offset {
            "file truncated (copytruncate?)"
        } else if size == offset {
            return Ok(());
        } else if !provisional
            && fingerprint::fingerprint(&fingerprint::read_head(file)?) != Some(key.fingerprint)
        {
            "file head rewritten"
        } else if self.window.map_or(Ok(true), |w| w.holds(file))? {
            return Ok(());
        } else {
            "file rewritten in place with the same first line"
        };
        tracing::info!(path = %self.path.display(), offset, size, "{reason}; reading it again from the start");
        polled.lost.push(Lost {
            key,
            offset,
            window: self.window,
            path: Arc::clone(&self.path),
            late_writes: false,
        });
        self.replaced = Some(key);
        self.identity = Identity::Pending {
            start: Start::At(0),
        };
        self.window = None;
        self.reader.reset(0);
        Ok(())
    }

    /// Fixes the key once the fingerprint rule allows and picks the start offset; returns whether
    /// the file has a key (and may be read).
    fn identify(
        &mut self,
        size: u64,
        cx: &PollCx<'_>,
        now: Instant,
        polled: &mut Polled,
    ) -> io::Result<bool> {
        let Identity::Pending { start } = self.identity else {
            return Ok(true);
        };
        if size == 0 {
            return Ok(false);
        }
        let file = self.file()?;
        let head = fingerprint::read_head(file)?;
        let (fingerprint, provisional) = match fingerprint::fingerprint(&head) {
            Some(fp) => (fp, false),
            // Leaving the watched paths with an unfinished first line: read it anyway, it will
            // never be looked up again.
            None if self.draining_since.is_some() => {
                (fingerprint::provisional_fingerprint(&head), true)
            }
            None => return Ok(false),
        };
        let triple = (self.id.dev, self.id.ino, fingerprint);
        let min_generation = self
            .replaced
            .filter(|k| k.triple() == triple)
            .map_or(0, |k| k.generation.saturating_add(1));
        let claim = lock(cx.known).claim(triple, size, min_generation, |w| w.holds(file))?;
        let (key, offset) = match claim {
            Claim::Resume(key, known) => {
                tracing::info!(path = %self.path.display(), %key, offset = known.offset, "resuming from checkpoint");
                self.window = known.window;
                (key, known.offset)
            }
            Claim::New { generation, lost } => {
                let key = FileKey {
                    dev: self.id.dev,
                    ino: self.id.ino,
                    fingerprint,
                    generation,
                };
                let start = match start {
                    _ if !lost.is_empty() => 0,
                    Start::At(offset) => offset,
                    Start::EndOf(size) => end_offset(file, size, cx.config.max_line_bytes)?,
                };
                for (old, known) in lost {
                    let why = if known.offset > size {
                        "file shorter than its checkpoint (truncated)"
                    } else {
                        "same inode and first line as a checkpointed file, but not the bytes before its offset: another file"
                    };
                    tracing::info!(path = %self.path.display(), checkpoint = %old, offset = known.offset, size, new_key = %key, "{why}; reading from the start");
                    polled.lost.push(lost_of(old, known));
                }
                tracing::info!(path = %self.path.display(), %key, offset = start, "tailing new file");
                let window = Window::read(file, start)?;
                self.announce_start = Some((start, window));
                self.window = window;
                (key, start)
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
        Ok(self.file()?.metadata()?.len() <= self.reader.offset())
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
            if self.file()?.metadata()?.nlink() > 0 {
                lock(known).insert(
                    key,
                    Known {
                        offset: self.reader.offset(),
                        window: self.window,
                        path: self.path.to_path_buf(),
                    },
                );
            }
        }
        let at = self.rotated_to.as_deref().unwrap_or(&self.path);
        tracing::info!(path = %at.display(), offset = self.reader.offset(), "closed file that left the watched paths");
        Ok(())
    }

    fn take_lines(&mut self, batch: Batch) -> Option<FileLines> {
        let Identity::Known { key, .. } = self.identity else {
            return None;
        };
        let (started_at, window) = self.announce_start.take().unzip();
        file_lines(
            key,
            &self.path,
            batch,
            started_at,
            window.flatten().into_iter().collect(),
        )
    }
}

/// A [`FileLines`] of `batch` (with `windows` before the batch's own), unless there is nothing
/// to hand out.
pub(super) fn file_lines(
    key: FileKey,
    path: &Arc<PathBuf>,
    batch: Batch,
    started_at: Option<u64>,
    mut windows: Vec<Window>,
) -> Option<FileLines> {
    windows.extend(batch.windows);
    (!batch.lines.is_empty() || started_at.is_some() || !windows.is_empty()).then(|| FileLines {
        file: key,
        path: Arc::clone(path),
        buf: batch.buf,
        lines: batch.lines,
        started_at,
        windows,
    })
}

fn lost_of(key: FileKey, known: Known) -> Lost {
    Lost {
        key,
        offset: known.offset,
        window: known.window,
        path: Arc::new(known.path),
        late_writes: false,
    }
}

/// EMFILE or ENFILE: the process or the system has no descriptor left.
fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// The offset after the last complete line among the file's last `max_line` bytes: where
/// `start_at = "end"` begins, so a line half-written at startup is read whole.
fn end_offset(file: &File, size: u64, max_line: usize) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    const MAX_WINDOW: u64 = 1 << 20;
    let size = size.min(file.metadata()?.len());
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

    #[test]
    fn only_emfile_and_enfile_mean_out_of_descriptors() {
        let os = io::Error::from_raw_os_error;
        assert!(is_out_of_descriptors(&os(libc::EMFILE)));
        assert!(is_out_of_descriptors(&os(libc::ENFILE)));
        assert!(!is_out_of_descriptors(&os(libc::EACCES)));
        assert!(!is_out_of_descriptors(&os(libc::ENOENT)));
    }
}
