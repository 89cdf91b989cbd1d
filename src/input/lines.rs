//! Splits a byte stream into lines, holding at most `max_line` bytes of any line.
//!
//! Lines wholly inside a chunk are handed out as slices of it (no copy). A line longer than
//! `max_line` is cut: its first `max_line` bytes are emitted with `truncated = true` and the rest
//! is skipped up to the next newline, so a 1 GB line costs `max_line` bytes of memory.

use memchr::memchr;

/// One line, without its `\n` (and without a `\r` before it).
#[derive(Debug, PartialEq, Eq)]
pub struct Line<'a> {
    pub bytes: &'a [u8],
    /// 1-based line number in the stream.
    pub number: u64,
    /// The line was longer than the cap and was cut.
    pub truncated: bool,
    /// The stream offset just past this line's newline (or past its last byte, for a final
    /// line without one): what a file checkpoint stores.
    pub end_offset: u64,
}

#[derive(Debug)]
pub struct LineSplitter {
    max_line: usize,
    partial: Vec<u8>,
    /// Bytes of the current line dropped past the cap.
    skipping: bool,
    number: u64,
    /// Stream offset of the next byte fed.
    offset: u64,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        Self::at(0, max_line)
    }

    /// A splitter whose stream starts at `offset` (a file resumed from a checkpoint).
    pub fn at(offset: u64, max_line: usize) -> Self {
        LineSplitter {
            max_line: max_line.max(1),
            partial: Vec::new(),
            skipping: false,
            number: 0,
            offset,
        }
    }

    /// Stream offset of the next byte to be fed.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes of an unfinished line are held (or were skipped past the cap).
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty() || self.skipping
    }

    /// Feeds a chunk; calls `emit` for every line it completes.
    pub fn feed(&mut self, mut chunk: &[u8], emit: &mut dyn FnMut(Line<'_>)) {
        while let Some(nl) = memchr(b'\n', chunk) {
            let (head, rest) = (&chunk[..nl], &chunk[nl + 1..]);
            chunk = rest;
            self.number += 1;
            self.offset += nl as u64 + 1;
            let end_offset = self.offset;
            if self.partial.is_empty() && !self.skipping {
                let (bytes, truncated) = cap(head, self.max_line);
                emit(Line {
                    bytes: trim_cr(bytes, truncated),
                    number: self.number,
                    truncated,
                    end_offset,
                });
            } else {
                self.append(head);
                let truncated = self.skipping;
                emit(Line {
                    bytes: trim_cr(&self.partial, truncated),
                    number: self.number,
                    truncated,
                    end_offset,
                });
                self.partial.clear();
                self.skipping = false;
            }
        }
        self.offset += chunk.len() as u64;
        self.append(chunk);
    }

    /// At end of stream: the last line, if it had no newline.
    pub fn finish(&mut self, emit: &mut dyn FnMut(Line<'_>)) {
        if self.partial.is_empty() && !self.skipping {
            return;
        }
        self.number += 1;
        let truncated = self.skipping;
        emit(Line {
            bytes: trim_cr(&self.partial, truncated),
            number: self.number,
            truncated,
            end_offset: self.offset,
        });
        self.partial.clear();
        self.skipping = false;
    }

    /// Lines completed so far.
    pub fn lines_seen(&self) -> u64 {
        self.number
    }

    /// The bytes of the unfinished line, handed out and forgotten (none while the rest of a
    /// line past the cap is being skipped): for a reader that goes on where this one stops.
    pub fn take_partial(&mut self) -> Vec<u8> {
        if self.skipping {
            return Vec::new();
        }
        std::mem::take(&mut self.partial)
    }

    /// Bytes held for an unfinished line.
    pub fn pending_bytes(&self) -> usize {
        self.partial.len()
    }

    fn append(&mut self, bytes: &[u8]) {
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

fn cap(b: &[u8], max: usize) -> (&[u8], bool) {
    if b.len() > max {
        (&b[..max], true)
    } else {
        (b, false)
    }
}

fn trim_cr(b: &[u8], truncated: bool) -> &[u8] {
    match b.split_last() {
        Some((b'\r', rest)) if !truncated => rest,
        _ => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(chunks: &[&[u8]], max: usize) -> Vec<(Vec<u8>, u64, bool)> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut emit = |l: Line<'_>| out.push((l.bytes.to_vec(), l.number, l.truncated));
        for c in chunks {
            s.feed(c, &mut emit);
        }
        s.finish(&mut emit);
        out
    }

    #[test]
    fn splits_across_chunks_and_strips_cr() {
        let got = split(&[b"ab\r\ncd", b"e\n\nf", b"g"], 100);
        assert_eq!(
            got,
            vec![
                (b"ab".to_vec(), 1, false),
                (b"cde".to_vec(), 2, false),
                (b"".to_vec(), 3, false),
                (b"fg".to_vec(), 4, false),
            ]
        );
    }

    #[test]
    fn lines_carry_the_stream_offset_past_their_newline() {
        let mut s = LineSplitter::at(100, 3);
        let mut got = Vec::new();
        let mut emit = |l: Line<'_>| got.push((l.bytes.to_vec(), l.end_offset));
        s.feed(b"ab\r\nlonger\nc", &mut emit);
        s.feed(b"d", &mut emit);
        s.finish(&mut emit);
        assert_eq!(
            got,
            vec![
                (b"ab".to_vec(), 104),
                (b"lon".to_vec(), 111),
                (b"cd".to_vec(), 113)
            ]
        );
        assert_eq!(s.offset(), 113);
    }

    #[test]
    fn long_lines_are_cut_and_the_rest_skipped() {
        let got = split(&[b"0123456789", b"abc\nxy\n0123", b"456789\n"], 4);
        assert_eq!(
            got,
            vec![
                (b"0123".to_vec(), 1, true),
                (b"xy".to_vec(), 2, false),
                (b"0123".to_vec(), 3, true),
            ]
        );
    }

    #[test]
    fn memory_stays_at_the_cap_for_an_endless_line() {
        let mut s = LineSplitter::new(1000);
        let chunk = vec![b'x'; 64 * 1024];
        let mut n = 0;
        for _ in 0..100 {
            s.feed(&chunk, &mut |_| n += 1);
            assert!(s.pending_bytes() <= 1000);
        }
        assert_eq!(n, 0);
    }

    proptest! {
        #[test]
        fn same_lines_whatever_the_chunking(data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'a'), Just(b'\r')], 0..300), cut in 1usize..50) {
            let whole = split(&[&data], 10_000);
            let chunks: Vec<&[u8]> = data.chunks(cut).collect();
            prop_assert_eq!(split(&chunks, 10_000), whole);
        }
    }
}
