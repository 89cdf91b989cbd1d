//! The spool's state and file I/O, driven by one thread (see `mod.rs`). Synchronous and
//! single-owner, so the unit tests drive it directly.
//!
//! Records are appended to the newest segment file; a reader walks the segments in order and
//! hands records out for delivery (from memory when they were appended by this process and are
//! still cached, else from disk); acknowledgements come back in any order. A segment is deleted
//! once every record in it is acknowledged (or dropped). A record that cannot be written yet —
//! the spool is full, or the disk refuses the write — waits in memory (at most one per sealing
//! task, as each waits for its record to be taken) and may be delivered from there; if it is
//! acknowledged first it is never written.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::sync::{oneshot, watch};

use super::acked::{sync_dir, AckedSet};
use super::frame::{self, Header, HEADER_BYTES};
use super::{Body, OnSafe, Options, Record, SpoolError, SpoolMetrics, WhenFull};
use crate::batch::SealedBatch;
use crate::trouble::Trouble;

const CURSOR: &str = "cursor";

/// One segment file, named after the first sequence number it may hold.
#[derive(Debug)]
struct Segment {
    id: u64,
    /// Bytes of whole, valid records.
    bytes: u64,
    /// Records written here and not yet acknowledged, their rows and their frames' bytes.
    outstanding: u64,
    outstanding_rows: u64,
    outstanding_bytes: u64,
    last_seq: Option<u64>,
}

/// A record not on disk (yet).
struct Unwritten {
    seq: u64,
    enqueued_ms: u64,
    batch: SealedBatch,
    handed: bool,
    on_safe: Option<OnSafe>,
    taken: Option<oneshot::Sender<()>>,
}

/// A record handed out for delivery and not acknowledged yet.
#[derive(Debug, Clone, Copy)]
struct Flight {
    segment: Option<u64>,
    rows: u32,
    /// The record's frame (header and body) bytes.
    bytes: u64,
    enqueued_ms: u64,
}

/// Where the reader is: the next record to look at is at `offset` in segment `segment`.
#[derive(Debug, Default)]
struct Reader {
    segment: u64,
    offset: u64,
    /// Every record below this was handed out (or skipped as done).
    next_seq: u64,
    file: Option<(u64, File)>,
}

pub(super) struct Store {
    dir: PathBuf,
    opts: Options,
    segment_target: u64,
    segments: VecDeque<Segment>,
    /// The write handle of the last segment, while it takes appends.
    active: Option<File>,
    /// Closed segments written since the last fsync.
    closed_unsynced: Vec<File>,
    total_bytes: u64,
    next_seq: u64,
    acked: AckedSet,
    acked_dirty: bool,
    last_cursor_save: Instant,
    reader: Reader,
    cache: BTreeMap<u64, SealedBatch>,
    cache_bytes: usize,
    unwritten: VecDeque<Unwritten>,
    in_flight: BTreeMap<u64, Flight>,
    /// Written, waiting for the next fsync to be safe.
    unsynced: Vec<OnSafe>,
    pub(super) dirty_since: Option<Instant>,
    dir_dirty: bool,
    /// After a failed write: when to try again.
    pub(super) write_retry_at: Option<Instant>,
    full_logged: bool,
    dropped_through: watch::Sender<u64>,
    metrics: SpoolMetrics,
    trouble: DiskTrouble,
    #[cfg(test)]
    pub(super) fail_writes: bool,
}

/// Disk operations that may fail again and again (every 20 ms for the cursor): each logs at most
/// once a minute, with a count, and once when it works again.
#[derive(Debug)]
struct DiskTrouble {
    write: Trouble,
    fsync: Trouble,
    cursor: Trouble,
    delete: Trouble,
}

impl Default for DiskTrouble {
    fn default() -> Self {
        DiskTrouble {
            write: Trouble::new("write to the spool (disk full or failing?)"),
            fsync: Trouble::new("fsync the spool"),
            cursor: Trouble::new("save the spool cursor"),
            delete: Trouble::new("delete a delivered spool segment"),
        }
    }
}

fn now_ms() -> u64 {
    jiff::Timestamp::now().as_millisecond().max(0) as u64
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn batch_bytes(b: &SealedBatch) -> usize {
    b.mem_bytes()
}

/// The bytes a record takes in a segment: its header and gzip body.
fn frame_bytes(b: &SealedBatch) -> u64 {
    HEADER_BYTES as u64 + b.gzip.len() as u64
}

impl Store {
    /// Opens (creating) the spool directory and recovers what an earlier run left: every valid
    /// record not acknowledged is delivered again; a torn or corrupt tail is cut off and logged.
    pub(super) fn open(
        dir: &Path,
        opts: Options,
        metrics: SpoolMetrics,
        dropped_through: watch::Sender<u64>,
    ) -> Result<Store, SpoolError> {
        let io = |what: &str, e: std::io::Error| SpoolError::Io {
            path: dir.to_path_buf(),
            what: what.to_string(),
            source: e,
        };
        crate::private_fs::create_dir_all(dir).map_err(|e| io("cannot create", e))?;
        let acked = match AckedSet::load(&dir.join(CURSOR)) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "spool cursor unreadable; every record in the spool will be sent again (duplicates, no loss)");
                AckedSet::default()
            }
        };
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io("cannot list", e))? {
            let entry = entry.map_err(|e| io("cannot list", e))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
                continue;
            };
            if let Ok(id) = stem.parse::<u64>() {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let _ = std::fs::remove_file(dir.join(CURSOR).with_extension("tmp"));
        let mut segments = VecDeque::new();
        let mut last: Option<u64> = None;
        let mut seq_bound = acked.high();
        let (mut records, mut rows) = (0u64, 0u64);
        for id in ids {
            let path = segment_path(dir, id);
            let mut seg = Segment {
                id,
                bytes: 0,
                outstanding: 0,
                outstanding_rows: 0,
                outstanding_bytes: 0,
                last_seq: None,
            };
            let scanned = File::open(&path).and_then(|f| {
                let len = f.metadata()?.len();
                let s = frame::scan(&mut BufReader::new(f), last, |found| {
                    let h = found.header;
                    seg.last_seq = Some(h.seq);
                    if !acked.contains(h.seq) {
                        seg.outstanding += 1;
                        seg.outstanding_rows += u64::from(h.rows);
                        seg.outstanding_bytes += h.frame_len();
                    }
                })?;
                Ok((s, len))
            });
            let (scan, len) = match scanned {
                Ok(s) => s,
                Err(e) => {
                    // Leave it for a later start; keep new numbers clear of its records.
                    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    seq_bound = seq_bound.max(id + len / HEADER_BYTES as u64 + 1);
                    tracing::error!(file = %path.display(), error = %e, "cannot read a spool segment; skipping it until the next start");
                    continue;
                }
            };
            if let Some(why) = &scan.problem {
                tracing::warn!(
                    file = %path.display(),
                    offset = scan.valid_len,
                    cut_bytes = len - scan.valid_len,
                    "spool segment ends in {why} (a crash while writing, or disk damage); keeping the records before it and cutting the rest"
                );
                if let Err(e) = cut_file(&path, scan.valid_len) {
                    tracing::warn!(file = %path.display(), error = %e, "cannot cut the spool segment; its bad tail is ignored");
                }
            }
            seg.bytes = scan.valid_len;
            if seg.last_seq.is_some() {
                last = seg.last_seq;
            }
            if seg.outstanding == 0 {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            records += seg.outstanding;
            rows += seg.outstanding_rows;
            segments.push_back(seg);
        }
        let next_seq = last.map_or(0, |l| l + 1).max(seq_bound);
        if records > 0 {
            tracing::info!(dir = %dir.display(), records, rows, "the spool holds rows from an earlier run; delivering them first");
        }
        let segment_target = (opts.max_bytes / 8).clamp(64 << 10, 64 << 20);
        let total_bytes = segments.iter().map(|s| s.bytes).sum();
        let reader = Reader {
            segment: segments.front().map_or(0, |s| s.id),
            ..Reader::default()
        };
        let store = Store {
            dir: dir.to_path_buf(),
            opts,
            segment_target,
            segments,
            active: None,
            closed_unsynced: Vec::new(),
            total_bytes,
            next_seq,
            acked,
            acked_dirty: false,
            last_cursor_save: Instant::now(),
            reader,
            cache: BTreeMap::new(),
            cache_bytes: 0,
            unwritten: VecDeque::new(),
            in_flight: BTreeMap::new(),
            unsynced: Vec::new(),
            dirty_since: None,
            dir_dirty: false,
            write_retry_at: None,
            full_logged: false,
            dropped_through,
            metrics,
            trouble: DiskTrouble::default(),
            #[cfg(test)]
            fail_writes: false,
        };
        store.metrics.max_bytes.set(store.opts.max_bytes as f64);
        store.update_metrics();
        Ok(store)
    }

    /// Takes a sealed body. `taken` is answered once the record is written (or delivered from
    /// memory and acknowledged): until then the caller waits, which is the backpressure when
    /// the spool is full or the disk refuses writes.
    pub(super) fn append(
        &mut self,
        batch: SealedBatch,
        on_safe: OnSafe,
        taken: oneshot::Sender<()>,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unwritten.push_back(Unwritten {
            seq,
            enqueued_ms: now_ms(),
            batch,
            handed: false,
            on_safe: Some(on_safe),
            taken: Some(taken),
        });
        self.pump();
    }

    /// Writes waiting records while there is room and the disk takes them.
    pub(super) fn pump(&mut self) {
        while let Some(front) = self.unwritten.front() {
            if self.write_retry_at.is_some_and(|t| Instant::now() < t) {
                return;
            }
            let frame_len = frame_bytes(&front.batch);
            if !self.make_room(frame_len) {
                return;
            }
            let Some(mut rec) = self.unwritten.pop_front() else {
                return;
            };
            match self.write(&rec) {
                Ok(segment) => {
                    self.write_retry_at = None;
                    self.trouble.write.worked(&self.dir);
                    let rows = rec.batch.len() as u64;
                    if let Some(seg) = self.segments.back_mut() {
                        debug_assert_eq!(seg.id, segment);
                        seg.outstanding += 1;
                        seg.outstanding_rows += rows;
                        seg.outstanding_bytes += frame_len;
                    }
                    if rec.handed {
                        if let Some(f) = self.in_flight.get_mut(&rec.seq) {
                            f.segment = Some(segment);
                        }
                    } else if self.cache_bytes + batch_bytes(&rec.batch) <= self.opts.cache_bytes {
                        self.cache_bytes += batch_bytes(&rec.batch);
                        self.cache.insert(rec.seq, rec.batch);
                    }
                    if let Some(f) = rec.on_safe.take() {
                        self.unsynced.push(f);
                    }
                    if let Some(t) = rec.taken.take() {
                        let _ = t.send(());
                    }
                    self.dirty_since.get_or_insert_with(Instant::now);
                }
                Err(e) => {
                    self.trouble.write.failed(
                        &self.dir,
                        &e,
                        "delivering from memory meanwhile and retrying the write every second",
                    );
                    self.write_retry_at = Some(Instant::now() + std::time::Duration::from_secs(1));
                    self.unwritten.push_front(rec);
                    return;
                }
            }
        }
    }

    /// True when `frame_len` more bytes fit under `max_bytes`, after reclaiming or (with
    /// `drop_oldest`) dropping what it takes. A spool holding nothing takes any one record.
    fn make_room(&mut self, frame_len: u64) -> bool {
        loop {
            if self.total_bytes + frame_len <= self.opts.max_bytes || self.total_bytes == 0 {
                if self.full_logged {
                    self.full_logged = false;
                    tracing::info!(dir = %self.dir.display(), "spool has room again; reading resumes");
                }
                return true;
            }
            // The active segment may be all acknowledged: that space is free for the asking.
            if self.segments.back().is_some_and(|s| s.outstanding == 0) {
                self.close_active();
                self.delete_done_segments();
                continue;
            }
            match self.opts.when_full {
                WhenFull::Block => {
                    if !self.full_logged {
                        self.full_logged = true;
                        tracing::warn!(dir = %self.dir.display(), bytes = self.total_bytes, max_bytes = self.opts.max_bytes, "spool full: reading paused until the endpoint takes data (files wait on disk, stdin is not read)");
                    }
                    return false;
                }
                WhenFull::DropOldest => self.drop_oldest(),
            }
        }
    }

    /// Deletes the oldest segment, counting its unacknowledged rows as dropped; deliveries of
    /// its records still under way are cancelled.
    fn drop_oldest(&mut self) {
        if self.segments.len() == 1 {
            self.close_active();
        }
        let Some(seg) = self.segments.front() else {
            return;
        };
        let (seg_id, rows, records) = (seg.id, seg.outstanding_rows, seg.outstanding);
        let last = seg.last_seq.unwrap_or(seg_id);
        self.acked.insert_range(0, last + 1);
        self.acked_dirty = true;
        self.in_flight.retain(|_, f| f.segment != Some(seg_id));
        let keep = self.cache.split_off(&(last + 1));
        for b in std::mem::replace(&mut self.cache, keep).values() {
            self.cache_bytes -= batch_bytes(b);
        }
        self.dropped_through.send_replace(last + 1);
        self.metrics.dropped.add(rows);
        tracing::warn!(dir = %self.dir.display(), records, rows, "spool full: dropped its oldest rows (when_full = \"drop_oldest\"); they are counted in dcrship_records_dropped_total{{reason=\"spool_full\"}}");
        if let Some(seg) = self.segments.front_mut() {
            seg.outstanding = 0;
            seg.outstanding_rows = 0;
            seg.outstanding_bytes = 0;
        }
        self.delete_done_segments();
    }

    fn write(&mut self, rec: &Unwritten) -> std::io::Result<u64> {
        #[cfg(test)]
        if self.fail_writes {
            return Err(std::io::Error::other("injected write failure"));
        }
        let frame_len = frame_bytes(&rec.batch);
        let roll = self
            .segments
            .back()
            .is_some_and(|s| s.bytes > 0 && s.bytes + frame_len > self.segment_target);
        if roll {
            self.close_active();
            self.delete_done_segments();
        }
        if self.active.is_none() {
            let path = segment_path(&self.dir, rec.seq);
            let f = crate::private_fs::options()
                .create_new(true)
                .append(true)
                .open(&path)?;
            self.active = Some(f);
            self.dir_dirty = true;
            self.segments.push_back(Segment {
                id: rec.seq,
                bytes: 0,
                outstanding: 0,
                outstanding_rows: 0,
                outstanding_bytes: 0,
                last_seq: None,
            });
        }
        let (Some(f), Some(seg)) = (self.active.as_mut(), self.segments.back_mut()) else {
            return Err(std::io::Error::other("no active segment"));
        };
        let header = frame::encode_header(
            rec.seq,
            rec.batch.len() as u32,
            rec.enqueued_ms,
            &rec.batch.gzip,
        );
        let written = f
            .write_all(&header)
            .and_then(|()| f.write_all(&rec.batch.gzip));
        if let Err(e) = written {
            // Cut the partial record; if even that fails, start a new segment next time (the
            // reader never reads past `bytes`, and a restart cuts the tail).
            if f.set_len(seg.bytes).is_err() {
                self.close_active();
            }
            return Err(e);
        }
        seg.bytes += frame_len;
        seg.last_seq = Some(rec.seq);
        self.total_bytes += frame_len;
        Ok(seg.id)
    }

    /// Stops appending to the current segment (it is fsynced at the next commit).
    fn close_active(&mut self) {
        if let Some(f) = self.active.take() {
            self.closed_unsynced.push(f);
        }
    }

    /// Deletes every segment (but the one taking appends) with nothing left to deliver.
    fn delete_done_segments(&mut self) {
        let active_id = self.active.as_ref().and(self.segments.back().map(|s| s.id));
        let mut kept = VecDeque::with_capacity(self.segments.len());
        for seg in std::mem::take(&mut self.segments) {
            if seg.outstanding == 0 && Some(seg.id) != active_id {
                let path = segment_path(&self.dir, seg.id);
                if let Err(e) = std::fs::remove_file(&path) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        self.trouble
                            .delete
                            .failed(&path, &e, "it is deleted at the next start");
                    }
                }
                self.total_bytes -= seg.bytes;
                if self
                    .reader
                    .file
                    .as_ref()
                    .is_some_and(|(id, _)| *id == seg.id)
                {
                    self.reader.file = None;
                }
            } else {
                kept.push_back(seg);
            }
        }
        self.segments = kept;
    }

    /// The next record to deliver, if one is ready.
    pub(super) fn next_record(&mut self) -> Option<Record> {
        loop {
            let Some(idx) = self
                .segments
                .iter()
                .position(|s| s.id >= self.reader.segment)
            else {
                return self.next_unwritten();
            };
            let seg = &self.segments[idx];
            if seg.id != self.reader.segment {
                self.reader.segment = seg.id;
                self.reader.offset = 0;
            }
            if self.reader.offset >= seg.bytes {
                match self.segments.get(idx + 1) {
                    Some(next) => {
                        self.reader.segment = next.id;
                        self.reader.offset = 0;
                        continue;
                    }
                    None => return self.next_unwritten(),
                }
            }
            let seg_id = seg.id;
            let seg_bytes = seg.bytes;
            let raw = match self.read_header(seg_id, self.reader.offset) {
                Ok(raw) => raw,
                Err(e) => {
                    self.skip_unreadable(seg_id, &e.to_string());
                    continue;
                }
            };
            let Some(h) = Header::parse(&raw) else {
                self.skip_unreadable(seg_id, "a corrupt record header");
                continue;
            };
            let at = self.reader.offset;
            self.reader.offset += h.frame_len();
            if self.reader.offset > seg_bytes {
                self.skip_unreadable(seg_id, "a record past the end of the segment");
                continue;
            }
            if h.seq < self.reader.next_seq || self.acked.contains(h.seq) {
                continue;
            }
            self.reader.next_seq = h.seq + 1;
            let body = match self.cache.remove(&h.seq) {
                Some(b) => {
                    self.cache_bytes -= batch_bytes(&b);
                    Body::Sealed(b)
                }
                None => match self.read_body(seg_id, at, &h, &raw) {
                    Ok(b) => Body::Gzip(b),
                    Err(e) => {
                        tracing::error!(dir = %self.dir.display(), seq = h.seq, rows = h.rows, error = %e, "a spooled request is unreadable; its rows are dropped");
                        self.metrics.corrupt.add(u64::from(h.rows));
                        self.in_flight.insert(
                            h.seq,
                            Flight {
                                segment: Some(seg_id),
                                rows: h.rows,
                                bytes: h.frame_len(),
                                enqueued_ms: h.enqueued_ms,
                            },
                        );
                        self.ack(h.seq);
                        continue;
                    }
                },
            };
            self.in_flight.insert(
                h.seq,
                Flight {
                    segment: Some(seg_id),
                    rows: h.rows,
                    bytes: h.frame_len(),
                    enqueued_ms: h.enqueued_ms,
                },
            );
            return Some(Record {
                seq: h.seq,
                rows: h.rows,
                enqueued_ms: h.enqueued_ms,
                body,
            });
        }
    }

    /// Once the disk is read to its end: a record still waiting to be written, from memory.
    fn next_unwritten(&mut self) -> Option<Record> {
        let rec = self
            .unwritten
            .iter_mut()
            .find(|u| !u.handed && u.seq >= self.reader.next_seq)?;
        rec.handed = true;
        self.reader.next_seq = rec.seq + 1;
        let rows = rec.batch.len() as u32;
        self.in_flight.insert(
            rec.seq,
            Flight {
                segment: None,
                rows,
                bytes: frame_bytes(&rec.batch),
                enqueued_ms: rec.enqueued_ms,
            },
        );
        Some(Record {
            seq: rec.seq,
            rows,
            enqueued_ms: rec.enqueued_ms,
            body: Body::Sealed(rec.batch.clone()),
        })
    }

    fn reader_file(&mut self, seg_id: u64) -> std::io::Result<&File> {
        if self
            .reader
            .file
            .as_ref()
            .is_none_or(|(id, _)| *id != seg_id)
        {
            let f = File::open(segment_path(&self.dir, seg_id))?;
            self.reader.file = Some((seg_id, f));
        }
        match &self.reader.file {
            Some((_, f)) => Ok(f),
            None => Err(std::io::Error::other("no reader file")),
        }
    }

    fn read_header(&mut self, seg_id: u64, offset: u64) -> std::io::Result<[u8; HEADER_BYTES]> {
        let mut raw = [0u8; HEADER_BYTES];
        self.reader_file(seg_id)?.read_exact_at(&mut raw, offset)?;
        Ok(raw)
    }

    fn read_body(
        &mut self,
        seg_id: u64,
        at: u64,
        h: &Header,
        raw: &[u8; HEADER_BYTES],
    ) -> std::io::Result<Vec<u8>> {
        let mut body = vec![0u8; h.len as usize];
        self.reader_file(seg_id)?
            .read_exact_at(&mut body, at + HEADER_BYTES as u64)?;
        if !h.check(raw, &body) {
            return Err(std::io::Error::other("CRC mismatch"));
        }
        Ok(body)
    }

    /// The rest of a segment cannot be read: its records not yet handed out are counted as
    /// dropped, and the reader moves on.
    fn skip_unreadable(&mut self, seg_id: u64, why: &str) {
        let in_flight: u64 = self
            .in_flight
            .values()
            .filter(|f| f.segment == Some(seg_id))
            .map(|f| u64::from(f.rows))
            .sum();
        let flying = self
            .in_flight
            .values()
            .filter(|f| f.segment == Some(seg_id))
            .count() as u64;
        let flying_bytes: u64 = self
            .in_flight
            .values()
            .filter(|f| f.segment == Some(seg_id))
            .map(|f| f.bytes)
            .sum();
        if let Some(seg) = self.segments.iter_mut().find(|s| s.id == seg_id) {
            let lost = seg.outstanding_rows.saturating_sub(in_flight);
            tracing::error!(file = %segment_path(&self.dir, seg_id).display(), offset = self.reader.offset, error = %why, rows = lost, "cannot read the rest of a spool segment; its rows are dropped");
            self.metrics.corrupt.add(lost);
            seg.outstanding = flying;
            seg.outstanding_rows = in_flight;
            seg.outstanding_bytes = flying_bytes;
            self.reader.offset = seg.bytes;
            if let Some(last) = seg.last_seq {
                self.reader.next_seq = self.reader.next_seq.max(last + 1);
            }
        }
        self.delete_done_segments();
    }

    /// The service took the record (or refused its rows, which are dead-lettered).
    pub(super) fn ack(&mut self, seq: u64) {
        let Some(f) = self.in_flight.remove(&seq) else {
            return; // dropped meanwhile, or acknowledged twice
        };
        self.acked.insert(seq);
        self.acked_dirty = true;
        match f.segment {
            Some(id) => {
                if let Some(seg) = self.segments.iter_mut().find(|s| s.id == id) {
                    seg.outstanding = seg.outstanding.saturating_sub(1);
                    seg.outstanding_rows = seg.outstanding_rows.saturating_sub(u64::from(f.rows));
                    seg.outstanding_bytes = seg.outstanding_bytes.saturating_sub(f.bytes);
                    if seg.outstanding == 0 {
                        self.delete_done_segments();
                    }
                }
            }
            None => {
                // Delivered before it could be written: safe now, never to be written.
                if let Some(i) = self.unwritten.iter().position(|u| u.seq == seq) {
                    if let Some(mut u) = self.unwritten.remove(i) {
                        if let Some(f) = u.on_safe.take() {
                            f();
                        }
                        if let Some(t) = u.taken.take() {
                            let _ = t.send(());
                        }
                    }
                }
            }
        }
        self.pump();
    }

    /// True when nothing is left to hand out (in flight does not count).
    pub(super) fn drained(&self) -> bool {
        let on_disk = self.segments.iter().any(|s| {
            s.id > self.reader.segment
                || (s.id == self.reader.segment && self.reader.offset < s.bytes)
        });
        !on_disk && self.unwritten.iter().all(|u| u.handed)
    }

    /// Records and rows not yet acknowledged.
    pub(super) fn pending(&self) -> (u64, u64) {
        let disk = self
            .segments
            .iter()
            .map(|s| (s.outstanding, s.outstanding_rows));
        let mem = self.unwritten.iter().map(|u| (1, u.batch.len() as u64));
        disk.chain(mem).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// Makes written records durable (one fsync for all of them) and tells their owners.
    pub(super) fn sync(&mut self) {
        if self.dirty_since.is_none() && self.closed_unsynced.is_empty() && !self.dir_dirty {
            return;
        }
        let mut result = Ok(());
        for f in self.closed_unsynced.iter().chain(self.active.as_ref()) {
            result = result.and_then(|()| f.sync_data());
        }
        if self.dir_dirty {
            result = result.and_then(|()| sync_dir(&self.dir));
        }
        if let Err(e) = result {
            self.trouble
                .fsync
                .failed(&self.dir, &e, "its rows are not counted safe yet");
            self.dirty_since = Some(Instant::now());
            return;
        }
        self.trouble.fsync.worked(&self.dir);
        self.closed_unsynced.clear();
        self.dir_dirty = false;
        self.dirty_since = None;
        for f in self.unsynced.drain(..) {
            f();
        }
    }

    /// When the cursor should next be saved, if acknowledgements changed it.
    pub(super) fn cursor_due(&self, every: std::time::Duration) -> Option<Instant> {
        self.acked_dirty.then(|| self.last_cursor_save + every)
    }

    /// Saves the cursor when acknowledgements changed it and `every` has passed (or `force`,
    /// which also fsyncs it).
    pub(super) fn save_cursor(&mut self, every: std::time::Duration, force: bool) {
        if !self.acked_dirty || (!force && self.last_cursor_save.elapsed() < every) {
            return;
        }
        self.last_cursor_save = Instant::now();
        let path = self.dir.join(CURSOR);
        match self.acked.save(&path, force) {
            Ok(()) => {
                self.acked_dirty = false;
                self.trouble.cursor.worked(&path);
            }
            Err(e) => self.trouble.cursor.failed(
                &path,
                &e,
                "a restart would send some delivered requests again",
            ),
        }
    }

    /// Bytes of records not acknowledged yet: written ones, and those waiting in memory.
    pub(super) fn backlog_bytes(&self) -> u64 {
        let disk: u64 = self.segments.iter().map(|s| s.outstanding_bytes).sum();
        let mem: u64 = self.unwritten.iter().map(|u| frame_bytes(&u.batch)).sum();
        disk + mem
    }

    /// `dcrship_spool_bytes`, `dcrship_spool_disk_bytes` and `dcrship_oldest_unsent_seconds`.
    pub(super) fn update_metrics(&self) {
        self.metrics.bytes.set(self.backlog_bytes() as f64);
        self.metrics.disk_bytes.set(self.total_bytes as f64);
        let mut oldest = self.in_flight.values().map(|f| f.enqueued_ms).min();
        let mem = self.unwritten.iter().map(|u| u.enqueued_ms).min();
        oldest = oldest.into_iter().chain(mem).min();
        if let Some(h) = self.peek_next_header() {
            oldest = Some(oldest.map_or(h.enqueued_ms, |o| o.min(h.enqueued_ms)));
        }
        let age = oldest.map_or(0.0, |t| now_ms().saturating_sub(t) as f64 / 1000.0);
        self.metrics.oldest.set(age);
    }

    /// The header at the reader's position, without moving it (for the age metric).
    fn peek_next_header(&self) -> Option<Header> {
        let seg = self
            .segments
            .iter()
            .find(|s| s.id >= self.reader.segment && s.bytes > 0)?;
        let offset = if seg.id == self.reader.segment {
            self.reader.offset
        } else {
            0
        };
        if offset >= seg.bytes {
            return None;
        }
        let mut raw = [0u8; HEADER_BYTES];
        let f = File::open(segment_path(&self.dir, seg.id)).ok()?;
        f.read_exact_at(&mut raw, offset).ok()?;
        Header::parse(&raw)
    }

    #[cfg(test)]
    pub(super) fn segment_count(&self) -> usize {
        self.segments.len()
    }

    #[cfg(test)]
    pub(super) fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    #[cfg(test)]
    pub(super) fn unwritten_len(&self) -> usize {
        self.unwritten.len()
    }
}

/// Cuts a file to `len` bytes, durably.
fn cut_file(path: &Path, len: u64) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.set_len(len)?;
    f.sync_all()
}
