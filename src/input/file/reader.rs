//! Reads one open file from an offset and cuts it into lines that know where they end.
//!
//! The framing is [`crate::input::lines::LineSplitter`]'s, started at the file's
//! offset, so every line carries the offset just past its newline, which is what a checkpoint
//! stores. A line longer than the cap is cut and the rest skipped up to its newline, so one file
//! never holds more than `max_line` bytes of an unfinished line.
//!
//! As it cuts lines the reader also takes [`Window`]s, checksums of the bytes just before a line's
//! end: one at a line end at least [`WINDOW_STRIDE`] past the previous one, and one at the last
//! line end of every read. A checkpoint keeps the latest one at or before its offset, and the
//! tailer checks its file still holds the latest one (see [`crate::input::fingerprint`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::input::fingerprint::{Window, WINDOW_BYTES};
use crate::input::lines::{Line, LineSplitter};

use super::LineRef;

/// How much is read from the file per system call.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes read between two windows within one read.
const WINDOW_STRIDE: u64 = 4 * 1024;

/// Where a [`LineReader`] gets its bytes: a file read at offsets, or a decompressed stream read
/// in order.
pub(super) trait ByteSource {
    /// Reads into `buf` from `offset`; 0 at the end.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Up to [`WINDOW_BYTES`] bytes just before `offset`.
    fn before(&mut self, offset: u64) -> io::Result<Vec<u8>>;
}

impl ByteSource for &File {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(*self, buf, offset)
    }

    fn before(&mut self, offset: u64) -> io::Result<Vec<u8>> {
        let len = offset.min(WINDOW_BYTES as u64);
        let mut buf = vec![0; len as usize];
        match FileExt::read_exact_at(*self, &mut buf, offset - len) {
            Ok(()) => Ok(buf),
            // Shrunk since the poll's fstat: the poll after this one sees it.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// Lines cut from one file, collected into one buffer on their way to a [`super::FileLines`].
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub buf: Vec<u8>,
    pub lines: Vec<LineRef>,
    /// Windows at line ends of this batch, in file order.
    pub windows: Vec<Window>,
}

impl Batch {
    /// Room for the lines of a read of up to `budget` bytes with `available` bytes left in the
    /// file, in one allocation: the lines hold at most the bytes read (and a carried-over
    /// unfinished line), and a buffer grown by doubling copies them once more on the way.
    pub fn reserve_for(&mut self, available: u64, budget: usize) {
        let most = budget.saturating_add(READ_CHUNK);
        self.buf
            .reserve(usize::try_from(available).map_or(most, |a| a.min(most)));
    }

    fn push(&mut self, line: &Line<'_>) {
        // The tailer's settings keep a batch far below 4 GiB (see `TailerConfig::validate`).
        let start = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(line.bytes);
        let end = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.lines.push(LineRef {
            start,
            end,
            number: line.number,
            end_offset: line.end_offset,
            truncated: line.truncated,
        });
    }
}

/// Reads a file from an offset into complete lines, with [`LineSplitter`] doing the framing
/// (cap on line length, `\r\n`, numbering) and counting the offsets a checkpoint stores.
#[derive(Debug)]
pub(super) struct LineReader {
    max_line: usize,
    lines: LineSplitter,
    /// Where the last window ended (or reading started).
    last_window: u64,
}

impl LineReader {
    pub fn new(offset: u64, max_line: usize) -> Self {
        LineReader {
            max_line,
            lines: LineSplitter::at(offset, max_line),
            last_window: offset,
        }
    }

    /// Offset of the next byte to read.
    pub fn offset(&self) -> u64 {
        self.lines.offset()
    }

    /// An unfinished line is held (or being skipped past the cap).
    pub fn has_partial(&self) -> bool {
        self.lines.has_partial()
    }

    #[cfg(test)]
    pub fn held_bytes(&self) -> usize {
        self.lines.pending_bytes()
    }

    /// Starts over at `offset`: the unfinished line and the numbering are forgotten.
    pub fn reset(&mut self, offset: u64) {
        *self = LineReader::new(offset, self.max_line);
    }

    /// Reads up to about `budget` bytes, adding the complete lines (and their windows) to
    /// `batch`; returns the bytes read.
    pub fn read(
        &mut self,
        src: &mut impl ByteSource,
        budget: usize,
        batch: &mut Batch,
    ) -> io::Result<usize> {
        let mut chunk = vec![0; READ_CHUNK.min(budget.max(1))];
        let mut total = 0;
        // The bytes before the chunk being cut, for windows that reach back past its start.
        let mut recent: Option<Vec<u8>> = None;
        let mut last_end: Option<Window> = None;
        while total < budget && batch.buf.len() < budget {
            let at = self.lines.offset();
            let before = match recent.take() {
                Some(bytes) => bytes,
                None => src.before(at)?,
            };
            let n = match src.read_at(&mut chunk, at) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    recent = Some(before);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let data = &chunk[..n];
            let first = batch.lines.len();
            self.lines.feed(data, &mut |l| batch.push(&l));
            let ends: Vec<u64> = batch.lines[first..].iter().map(|l| l.end_offset).collect();
            for (i, &end) in ends.iter().enumerate() {
                let last = i + 1 == ends.len();
                if end < self.last_window + WINDOW_STRIDE && !last {
                    continue;
                }
                let w = window_at(&before, data, at, end);
                if end >= self.last_window + WINDOW_STRIDE {
                    batch.windows.extend(w);
                    self.last_window = end;
                } else {
                    last_end = w;
                }
            }
            recent = Some(last_bytes(&before, data));
            total += n;
        }
        if let Some(w) = last_end.filter(|w| w.end > self.last_window) {
            batch.windows.push(w);
            self.last_window = w.end;
        }
        Ok(total)
    }

    /// Emits the unfinished line as it is (its writer went quiet past `line_timeout`, or the
    /// file is being closed).
    pub fn flush_partial(&mut self, batch: &mut Batch) {
        self.lines.finish(&mut |l| batch.push(&l));
    }
}

/// The window ending at `end`, a line end inside `data` (which starts at file offset `at` and
/// follows `before`).
fn window_at(before: &[u8], data: &[u8], at: u64, end: u64) -> Option<Window> {
    let upto = usize::try_from(end - at).ok()?.min(data.len());
    if upto >= WINDOW_BYTES || before.is_empty() {
        return Window::of(&data[..upto], end);
    }
    let mut bytes = before[before.len().saturating_sub(WINDOW_BYTES - upto)..].to_vec();
    bytes.extend_from_slice(&data[..upto]);
    Window::of(&bytes, end)
}

/// The last [`WINDOW_BYTES`] of `before` followed by `data`.
fn last_bytes(before: &[u8], data: &[u8]) -> Vec<u8> {
    if data.len() >= WINDOW_BYTES {
        return data[data.len() - WINDOW_BYTES..].to_vec();
    }
    let mut bytes = before[before.len().saturating_sub(WINDOW_BYTES - data.len())..].to_vec();
    bytes.extend_from_slice(data);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    type Got = Vec<(String, u64, u64, bool)>;

    fn lines(batch: &Batch) -> Got {
        batch
            .lines
            .iter()
            .map(|l| {
                let bytes = &batch.buf[l.start as usize..l.end as usize];
                (
                    String::from_utf8_lossy(bytes).into_owned(),
                    l.number,
                    l.end_offset,
                    l.truncated,
                )
            })
            .collect()
    }

    fn file_with(bytes: &[u8]) -> io::Result<(tempfile::NamedTempFile, File)> {
        let mut tmp = tempfile::NamedTempFile::new()?;
        tmp.write_all(bytes)?;
        let file = File::open(tmp.path())?;
        Ok((tmp, file))
    }

    #[test]
    fn lines_carry_the_offset_just_past_their_newline() -> io::Result<()> {
        let (_tmp, file) = file_with(b"ab\r\ncd\n\nef")?;
        let mut reader = LineReader::new(0, 100);
        let mut batch = Batch::default();
        assert_eq!(reader.read(&mut &file, 1 << 20, &mut batch)?, 10);
        assert_eq!(
            lines(&batch),
            vec![
                ("ab".into(), 1, 4, false),
                ("cd".into(), 2, 7, false),
                ("".into(), 3, 8, false),
            ]
        );
        assert!(reader.has_partial());
        reader.flush_partial(&mut batch);
        assert_eq!(lines(&batch)[3], ("ef".into(), 4, 10, false));
        assert!(!reader.has_partial());
        Ok(())
    }

    #[test]
    fn reading_resumes_at_the_given_offset() -> io::Result<()> {
        let (_tmp, file) = file_with(b"one\ntwo\nthree\n")?;
        let mut reader = LineReader::new(4, 100);
        let mut batch = Batch::default();
        reader.read(&mut &file, 1 << 20, &mut batch)?;
        assert_eq!(
            lines(&batch),
            vec![("two".into(), 1, 8, false), ("three".into(), 2, 14, false)]
        );
        Ok(())
    }

    #[test]
    fn a_small_budget_reads_in_steps_without_losing_lines() -> io::Result<()> {
        let text: String = (0..200).map(|i| format!("line {i}\n")).collect();
        let (_tmp, file) = file_with(text.as_bytes())?;
        let mut reader = LineReader::new(0, 100);
        let mut all = Vec::new();
        loop {
            let mut batch = Batch::default();
            if reader.read(&mut &file, 7, &mut batch)? == 0 {
                break;
            }
            all.extend(lines(&batch));
        }
        assert_eq!(all.len(), 200);
        assert_eq!(all[199].0, "line 199");
        assert_eq!(all[199].2, text.len() as u64);
        Ok(())
    }

    #[test]
    fn a_long_line_is_cut_and_reported_at_its_newline() -> io::Result<()> {
        let mut data = vec![b'x'; 300_000];
        data.extend_from_slice(b"\nnext\n");
        let (_tmp, file) = file_with(&data)?;
        let mut reader = LineReader::new(0, 1000);
        let mut got = Vec::new();
        loop {
            let mut batch = Batch::default();
            let n = reader.read(&mut &file, 4096, &mut batch)?;
            assert!(reader.held_bytes() <= 1000);
            got.extend(lines(&batch));
            if n == 0 {
                break;
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0.len(), got[0].2, got[0].3), (1000, 300_001, true));
        assert_eq!(got[1], ("next".into(), 2, 300_006, false));
        Ok(())
    }

    #[test]
    fn windows_checksum_the_bytes_just_before_line_ends() -> io::Result<()> {
        let text: String = (0..2000).map(|i| format!("line {i:05}\n")).collect();
        let (_tmp, file) = file_with(text.as_bytes())?;
        let bytes = text.as_bytes();
        let check = |w: &Window| {
            let end = w.end as usize;
            assert_eq!(bytes[end - 1], b'\n', "at a line end");
            assert_eq!(w.len as usize, WINDOW_BYTES.min(end));
            assert!(w.matches(&bytes[w.start() as usize..end]), "{w:?}");
        };
        // Small budgets: windows reach back into earlier reads and earlier chunks.
        let mut reader = LineReader::new(0, 100);
        let mut windows = Vec::new();
        loop {
            let mut batch = Batch::default();
            if reader.read(&mut &file, 3000, &mut batch)? == 0 {
                break;
            }
            // The last line end of every read has a window.
            assert_eq!(
                batch.windows.last().map(|w| w.end),
                batch.lines.last().map(|l| l.end_offset)
            );
            windows.extend(batch.windows);
        }
        windows.iter().for_each(check);
        assert!(windows.windows(2).all(|p| p[0].end < p[1].end));
        assert_eq!(windows.last().map(|w| w.end), Some(bytes.len() as u64));
        // One big read: a window every 4 KiB or so, not one per line.
        let mut reader = LineReader::new(0, 100);
        let mut batch = Batch::default();
        reader.read(&mut &file, 1 << 20, &mut batch)?;
        batch.windows.iter().for_each(check);
        let strides = bytes.len() / WINDOW_STRIDE as usize;
        assert!(
            (strides..=strides + 1).contains(&batch.windows.len()),
            "{} windows for {} bytes",
            batch.windows.len(),
            bytes.len()
        );
        // Resumed in the middle: the first window still covers bytes before the resume point.
        let mut reader = LineReader::new(5500, 100);
        let mut batch = Batch::default();
        reader.read(&mut &file, 20, &mut batch)?;
        assert_eq!(batch.windows.len(), 1);
        check(&batch.windows[0]);
        assert_eq!(batch.windows[0].len as usize, WINDOW_BYTES);
        Ok(())
    }

    #[test]
    fn reset_forgets_the_unfinished_line_and_the_numbering() -> io::Result<()> {
        let (_tmp, file) = file_with(b"a\nunfinished")?;
        let mut reader = LineReader::new(0, 100);
        reader.read(&mut &file, 1 << 20, &mut Batch::default())?;
        reader.reset(0);
        assert!(!reader.has_partial());
        let mut batch = Batch::default();
        reader.read(&mut &file, 1 << 20, &mut batch)?;
        assert_eq!(lines(&batch), vec![("a".into(), 1, 2, false)]);
        Ok(())
    }
}
