//! Reads one open file from an offset and cuts it into lines that know where they end.
//!
//! The framing is [`LineSplitter`](crate::input::lines::LineSplitter)'s, started at the file's
//! offset, so every line carries the offset just past its newline, which is what a checkpoint
//! stores. A line longer than the cap is cut and the rest skipped up to its newline, so one file
//! never holds more than `max_line` bytes of an unfinished line.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::input::lines::{Line, LineSplitter};

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

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// Reads a file from an offset into complete lines, with [`LineSplitter`] doing the framing
/// (cap on line length, `\r\n`, numbering) and counting the offsets a checkpoint stores.
#[derive(Debug)]
pub(super) struct LineReader {
    max_line: usize,
    lines: LineSplitter,
}

impl LineReader {
    pub fn new(offset: u64, max_line: usize) -> Self {
        LineReader {
            max_line,
            lines: LineSplitter::at(offset, max_line),
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

    /// Reads up to about `budget` bytes, adding the complete lines to `batch`; returns the bytes
    /// read.
    pub fn read(&mut self, file: &File, budget: usize, batch: &mut Batch) -> io::Result<usize> {
        let mut chunk = vec![0; READ_CHUNK.min(budget.max(1))];
        let mut total = 0;
        while total < budget && batch.buf.len() < budget {
            let n = match file.read_at(&mut chunk, self.lines.offset()) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.lines.feed(&chunk[..n], &mut |l| batch.push(&l));
            total += n;
        }
        Ok(total)
    }

    /// Emits the unfinished line as it is (its writer went quiet past `line_timeout`, or the
    /// file is being closed).
    pub fn flush_partial(&mut self, batch: &mut Batch) {
        self.lines.finish(&mut |l| batch.push(&l));
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
