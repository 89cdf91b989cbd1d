//! Joins the parts of one long line (CRI `P` … `F`; json-file lines without `\n`) back into one
//! message, holding at most `cap` bytes: a longer message keeps its first `cap` bytes and is
//! flagged `cut`; the rest of its parts are read and dropped. One joiner serves one stream of one
//! file, so stdout and stderr parts that interleave are joined apart.
//!
//! Parts are joined as bytes and decoded once whole, so a character the runtime cut across two
//! parts comes out whole.

/// One runtime line: a whole message, or a part of one.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    pub message: &'a [u8],
    pub partial: bool,
    /// `TimeGenerated` of the line, when it has one.
    pub time: Option<[u8; 27]>,
    /// The file line number.
    pub number: u64,
    /// File offsets of the line's start and just past its newline.
    pub start: u64,
    pub end: u64,
    /// The file reader already cut the line at its cap.
    pub cut: bool,
}

/// A whole message: its bytes, and where it came from.
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub bytes: &'a [u8],
    /// Longer than the cap: these are its first `cap` bytes (maybe ending inside a character).
    pub cut: bool,
    /// The time of its first part.
    pub time: Option<[u8; 27]>,
    /// The line number of its first part.
    pub number: u64,
    /// The start of its first part and the end of its last.
    pub start: u64,
    pub end: u64,
    pub parts: u32,
}

#[derive(Debug, Clone, Copy)]
struct Head {
    time: Option<[u8; 27]>,
    number: u64,
    start: u64,
    end: u64,
    parts: u32,
}

/// Buffers over this are let go once their message is out, so one long line does not keep its
/// memory for the life of the file.
const KEEP_CAPACITY: usize = 64 * 1024;

#[derive(Debug)]
pub struct Joiner {
    cap: usize,
    buf: Vec<u8>,
    head: Option<Head>,
    cut: bool,
}

impl Joiner {
    pub fn new(cap: usize) -> Self {
        Joiner {
            cap: cap.max(1),
            buf: Vec::new(),
            head: None,
            cut: false,
        }
    }

    /// Takes one line; `emit` gets the message it completes, if any.
    pub fn push(&mut self, p: Part<'_>, emit: &mut dyn FnMut(Message<'_>)) {
        if self.head.is_none() && !p.partial {
            // The common case, a whole line: no copy.
            let n = p.message.len().min(self.cap);
            emit(Message {
                bytes: &p.message[..n],
                cut: p.cut || n < p.message.len(),
                time: p.time,
                number: p.number,
                start: p.start,
                end: p.end,
                parts: 1,
            });
            return;
        }
        let head = self.head.get_or_insert(Head {
            time: p.time,
            number: p.number,
            start: p.start,
            end: p.end,
            parts: 0,
        });
        head.end = p.end;
        head.parts += 1;
        // Once cut, nothing more is taken: a part the reader cut lost bytes in the middle.
        if !self.cut {
            let room = self.cap - self.buf.len();
            let n = p.message.len().min(room);
            self.buf.extend_from_slice(&p.message[..n]);
            self.cut = p.cut || n < p.message.len();
        }
        if !p.partial {
            self.flush(emit);
        }
    }

    /// Emits the message being joined as it is (its last part never came: the timeout passed,
    /// or the file is closing).
    pub fn flush(&mut self, emit: &mut dyn FnMut(Message<'_>)) {
        let Some(head) = self.head.take() else {
            return;
        };
        emit(Message {
            bytes: &self.buf,
            cut: self.cut,
            time: head.time,
            number: head.number,
            start: head.start,
            end: head.end,
            parts: head.parts,
        });
        self.cut = false;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }

    /// Where the message being joined starts in the file, if one is.
    pub fn pending_start(&self) -> Option<u64> {
        self.head.map(|h| h.start)
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(message: &[u8], partial: bool, number: u64) -> Part<'_> {
        Part {
            message,
            partial,
            time: None,
            number,
            start: number * 100,
            end: number * 100 + 100,
            cut: false,
        }
    }

    type Got = (Vec<u8>, bool, u64, u64, u64, u32);

    fn collect(j: &mut Joiner, parts: &[Part<'_>]) -> Vec<Got> {
        let mut got = Vec::new();
        for p in parts {
            j.push(*p, &mut |m| {
                got.push((m.bytes.to_vec(), m.cut, m.number, m.start, m.end, m.parts))
            });
        }
        got
    }

    #[test]
    fn parts_are_joined_and_whole_lines_pass() {
        let mut j = Joiner::new(1000);
        let got = collect(
            &mut j,
            &[
                part(b"one", false, 1),
                part(b"tw", true, 2),
                part(b"o ", true, 3),
                part(b"parts", false, 4),
                part(b"", false, 5),
            ],
        );
        assert_eq!(
            got,
            vec![
                (b"one".to_vec(), false, 1, 100, 200, 1),
                (b"two parts".to_vec(), false, 2, 200, 500, 3),
                (b"".to_vec(), false, 5, 500, 600, 1),
            ]
        );
        assert_eq!(j.pending_start(), None);
    }

    #[test]
    fn a_message_over_the_cap_is_cut_and_the_rest_of_its_parts_dropped() {
        let mut j = Joiner::new(5);
        let got = collect(
            &mut j,
            &[
                part(b"abc", true, 1),
                part(b"def", true, 2),
                part(b"ghi", false, 3),
                part(b"toolong", false, 4),
                part(b"ok", false, 5),
            ],
        );
        assert_eq!(
            got,
            vec![
                (b"abcde".to_vec(), true, 1, 100, 400, 3),
                (b"toolo".to_vec(), true, 4, 400, 500, 1),
                (b"ok".to_vec(), false, 5, 500, 600, 1),
            ]
        );
    }

    #[test]
    fn a_pending_part_is_flushed_as_it_is() {
        let mut j = Joiner::new(100);
        assert!(collect(&mut j, &[part(b"no newline", true, 7)]).is_empty());
        assert_eq!(j.pending_start(), Some(700));
        let mut got = Vec::new();
        j.flush(&mut |m| got.push((m.bytes.to_vec(), m.parts, m.end)));
        assert_eq!(got, vec![(b"no newline".to_vec(), 1, 800)]);
        assert_eq!(j.pending_start(), None);
        j.flush(&mut |_| panic!("nothing left"));
    }

    #[test]
    fn a_mebibyte_in_16k_parts_holds_no_more_than_the_cap() {
        let cap = 1_000_000;
        let mut j = Joiner::new(cap);
        let chunk = vec![b'x'; 16 * 1024];
        let mut got = Vec::new();
        for i in 0..64u64 {
            j.push(part(&chunk, i < 63, i), &mut |m| {
                got.push((m.bytes.len(), m.cut, m.parts))
            });
            assert!(j.held() <= 2 * cap, "held {}", j.held());
        }
        assert_eq!(got, vec![(cap, true, 64)]);
        assert_eq!(j.held(), 0, "the big buffer is let go");
    }
}
