//! Reads one open file from an offset and cuts it into lines that know where they end.
//!
//! This is [`LineSplitter`](crate::input::lines::LineSplitter)'s algorithm with one addition the
//! tailer needs: every line carries the file offset just past its newline, which is what a
//! checkpoint stores. A line longer than the cap is cut and the rest skipped up to its newline, so
//! one file never holds more than `max_line` bytes of an unfinished line.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use memchr::memchr;

use super::LineRef;

/// How much is read from the file per system call.
const READ_CHUNK: usize = 64 * 1024;

/// Lines cut from one file, collected into one buffer on their way to a [`super::FileLines`].
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub buf: Vec<u8>,
    pub lines: Vec<LineRef>,
}

impl Batch {
    fn push(&mut self, bytes: &[u8], number: u64, end_offset: u64, truncated: bool) {
        // The tailer's settings keep a batch far below 4 GiB (see `TailerConfig::validate`).
        let start = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(bytes);
        let end = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.lines.push(LineRef {
            start,
            end,
            number,
            end_offset,
            truncated,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// The reading position in one file and the start of a line not yet finished.
#[derive(Debug)]
pub(super) struct LineReader {
    max_line: usize,
    /// The next byte to read.
    offset: u64,
    /// The beginning of the unfinished line, at most `max_line` bytes.
    partial: Vec<u8>,
    /// The unfinished line went past `max_line`; its remaining bytes are being dropped.
    skipping: bool,
    /// Lines handed out since `offset` was last set.
    number: u64,
}

impl LineReader {
    pub fn new(offset: u64, max_line: usize) -> Self {
        LineReader {
            max_line: max_line.max(1),
            offset,
            partial: Vec::new(),
            skipping: false,
            number: 0,
        }
    }

    /// The next byte to read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether bytes of an unfinished line are waiting for their newline.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty() || self.skipping
    }

    /// Bytes held for the unfinished line: never more than `max_line`.
    #[cfg(test)]
    pub fn held_bytes(&self) -> usize {
        self.partial.len()
    }

    /// Starts over at `offset`, forgetting the unfinished line (the file was truncated or replaced).
    pub fn reset(&mut self, offset: u64) {
        *self = LineReader::new(offset, self.max_line);
    }

    /// Reads until about `budget` bytes were read, `batch` holds `budget` bytes of lines, or the
    /// end of the file; returns the number of bytes read (0 at the end of the file).
    pub fn read(&mut self, file: &File, budget: usize, batch: &mut Batch) -> io::Result<usize> {
        let mut chunk = vec![0; READ_CHUNK.min(budget.max(1))];
        let mut total = 0;
        while total < budget && batch.buf.len() < budget {
            let n = match file.read_at(&mut chunk, self.offset) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.split(&chunk[..n], batch);
            total += n;
        }
        Ok(total)
    }

    /// Hands out the unfinished line as if it had ended here: its writer stopped without a newline
    /// (`line_timeout`) or the file is being closed. Its end offset is the current offset.
    pub fn flush_partial(&mut self, batch: &mut Batch) {
        if !self.has_partial() {
            return;
        }
        self.number += 1;
        let truncated = self.skipping;
        batch.push(
            trim_cr(&self.partial, truncated),
            self.number,
            self.offset,
            truncated,
        );
        self.partial.clear();
        self.skipping = false;
    }

    /// Cuts `chunk` (the bytes at `self.offset`) into lines, advancing `self.offset` past it.
    fn split(&mut self, chunk: &[u8], batch: &mut Batch) {
        let base = self.offset;
        let mut pos = 0;
        while let Some(i) = memchr(b'\n', &chunk[pos..]) {
            let nl = pos + i;
            let head = &chunk[pos..nl];
            let end_offset = base + nl as u64 + 1;
            self.number += 1;
            if self.partial.is_empty() && !self.skipping {
                let truncated = head.len() > self.max_line;
                let bytes = &head[..head.len().min(self.max_line)];
                batch.push(
                    trim_cr(bytes, truncated),
                    self.number,
                    end_offset,
                    truncated,
                );
            } else {
                self.hold(head);
                let truncated = self.skipping;
                batch.push(
                    trim_cr(&self.partial, truncated),
                    self.number,
                    end_offset,
                    truncated,
                );
                self.partial.clear();
                self.skipping = false;
            }
            pos = nl + 1;
        }
        self.hold(&chunk[pos..]);
        self.offset = base + chunk.len() as u64;
    }

    /// Keeps bytes of the unfinished line up to the cap; past it, drops them and remembers that.
    fn hold(&mut self, bytes: &[u8]) {
        if self.skipping || bytes.is_empty() {
            return;
        }
        let room = self.max_line - self.partial.len();
        if bytes.len() > room {
            self.partial.extend_from_slice(&bytes[..room]);
            self.skipping = true;
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }
}

/// Drops the `\r` of a `\r\n` ending; a cut line keeps its bytes as they were.
fn trim_cr(bytes: &[u8], truncated: bool) -> &[u8] {
    match bytes.split_last() {
        Some((b'\r', rest)) if !truncated => rest,
        _ => bytes,
    }
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
        assert_eq!(reader.read(&file, 1 << 20, &mut batch)?, 10);
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
        reader.read(&file, 1 << 20, &mut batch)?;
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
            if reader.read(&file, 7, &mut batch)? == 0 {
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
            let n = reader.read(&file, 4096, &mut batch)?;
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
    fn reset_forgets_the_unfinished_line_and_the_numbering() -> io::Result<()> {
        let (_tmp, file) = file_with(b"a\nunfinished")?;
        let mut reader = LineReader::new(0, 100);
        reader.read(&file, 1 << 20, &mut Batch::default())?;
        reader.reset(0);
        assert!(!reader.has_partial());
        let mut batch = Batch::default();
        reader.read(&file, 1 << 20, &mut batch)?;
        assert_eq!(lines(&batch), vec![("a".into(), 1, 2, false)]);
        Ok(())
    }
}
