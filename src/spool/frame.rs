//! The on-disk record: a fixed header, then the gzip request body exactly as it is POSTed.
//!
//! ```text
//!  0..4   magic "DSR1"
//!  4..8   CRC32 of bytes 8.. of the header and of the body
//!  8..12  body length            (u32 LE)
//! 12..16  rows in the body       (u32 LE)
//! 16..24  sequence number        (u64 LE, strictly increasing across the spool)
//! 24..32  enqueued at, Unix ms   (u64 LE, for dcrship_oldest_unsent_seconds)
//! 32..    body
//! ```
//! [`scan`] reads a segment and stops at the first record that is torn (short), corrupt (CRC,
//! magic, absurd length) or out of sequence: everything before it is trusted, nothing after it.

use std::io::{self, Read};

pub const MAGIC: [u8; 4] = *b"DSR1";
pub const HEADER_BYTES: usize = 32;
/// No request body is near this (the API caps them at 1 MiB); a larger length is corruption,
/// and refusing it keeps garbage from making us allocate gigabytes.
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// A record's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    pub rows: u32,
    pub enqueued_ms: u64,
    pub len: u32,
    pub crc: u32,
}

impl Header {
    /// Bytes of the record on disk, header included.
    pub fn frame_len(&self) -> u64 {
        HEADER_BYTES as u64 + u64::from(self.len)
    }

    /// Parses a header; `None` if the magic or the length is wrong.
    pub fn parse(b: &[u8; HEADER_BYTES]) -> Option<Header> {
        if b[0..4] != MAGIC {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let h = Header {
            crc: u32_at(4),
            len: u32_at(8),
            rows: u32_at(12),
            seq: u64_at(16),
            enqueued_ms: u64_at(24),
        };
        (h.len as usize <= MAX_BODY_BYTES).then_some(h)
    }

    /// True when `body` (and this header) are what was written.
    pub fn check(&self, raw_header: &[u8; HEADER_BYTES], body: &[u8]) -> bool {
        let mut h = crc32fast::Hasher::new();
        h.update(&raw_header[8..]);
        h.update(body);
        body.len() == self.len as usize && h.finalize() == self.crc
    }
}

/// The header of a record holding `body`.
pub fn encode_header(seq: u64, rows: u32, enqueued_ms: u64, body: &[u8]) -> [u8; HEADER_BYTES] {
    let mut b = [0u8; HEADER_BYTES];
    b[0..4].copy_from_slice(&MAGIC);
    // Bodies are capped far below 4 GiB (MAX_BODY_BYTES), so the length fits.
    b[8..12].copy_from_slice(&(body.len() as u32).to_le_bytes());
    b[12..16].copy_from_slice(&rows.to_le_bytes());
    b[16..24].copy_from_slice(&seq.to_le_bytes());
    b[24..32].copy_from_slice(&enqueued_ms.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&b[8..]);
    h.update(body);
    b[4..8].copy_from_slice(&h.finalize().to_le_bytes());
    b
}

/// A valid record found by [`scan`], and where it starts in the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub offset: u64,
    pub header: Header,
}

/// What [`scan`] found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Bytes of valid records from the start; the file should be cut here.
    pub valid_len: u64,
    /// Why scanning stopped before the end, if it did.
    pub problem: Option<String>,
}

/// Reads records from `r` (a segment from its start), calling `each` for every valid one, and
/// stops at the end or at the first bad record. Sequence numbers must be above `after`.
pub fn scan(
    r: &mut impl Read,
    mut after: Option<u64>,
    mut each: impl FnMut(Found),
) -> io::Result<Scan> {
    let mut offset = 0u64;
    let mut body = Vec::new();
    loop {
        let mut raw = [0u8; HEADER_BYTES];
        match read_full(r, &mut raw)? {
            0 => {
                return Ok(Scan {
                    valid_len: offset,
                    problem: None,
                })
            }
            n if n < HEADER_BYTES => return Ok(stop(offset, "a torn record header")),
            _ => {}
        }
        let Some(h) = Header::parse(&raw) else {
            return Ok(stop(offset, "a corrupt record header"));
        };
        body.resize(h.len as usize, 0);
        if read_full(r, &mut body)? < body.len() {
            return Ok(stop(offset, "a torn record body"));
        }
        if !h.check(&raw, &body) {
            return Ok(stop(offset, "a record whose CRC does not match"));
        }
        if after.is_some_and(|a| h.seq <= a) {
            return Ok(stop(offset, "a record out of sequence"));
        }
        after = Some(h.seq);
        each(Found { offset, header: h });
        offset += h.frame_len();
    }
}

fn stop(offset: u64, why: &str) -> Scan {
    Scan {
        valid_len: offset,
        problem: Some(why.to_string()),
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(seq: u64, rows: u32, body: &[u8]) -> Vec<u8> {
        let mut v = encode_header(seq, rows, 1_700_000_000_000 + seq, body).to_vec();
        v.extend_from_slice(body);
        v
    }

    fn segment(bodies: &[Vec<u8>]) -> (Vec<u8>, Vec<u64>) {
        let mut seg = Vec::new();
        let mut ends = Vec::new();
        for (i, b) in bodies.iter().enumerate() {
            seg.extend(frame(10 + i as u64, i as u32 + 1, b));
            ends.push(seg.len() as u64);
        }
        (seg, ends)
    }

    fn read_all(data: &[u8]) -> (Vec<Found>, Scan) {
        let mut found = Vec::new();
        let result = scan(&mut &data[..], None, |f| found.push(f)).expect("in-memory read");
        (found, result)
    }

    #[test]
    fn framing_round_trips() {
        let bodies = vec![b"abc".to_vec(), Vec::new(), vec![7u8; 70_000]];
        let (seg, ends) = segment(&bodies);
        let (found, scan) = read_all(&seg);
        assert_eq!(scan.problem, None);
        assert_eq!(scan.valid_len, seg.len() as u64);
        assert_eq!(found.len(), 3);
        for (i, f) in found.iter().enumerate() {
            assert_eq!(f.header.seq, 10 + i as u64);
            assert_eq!(f.header.rows, i as u32 + 1);
            assert_eq!(f.header.enqueued_ms, 1_700_000_000_010 + i as u64);
            assert_eq!(f.header.len as usize, bodies[i].len());
            assert_eq!(f.offset + f.header.frame_len(), ends[i]);
            let start = (f.offset as usize) + HEADER_BYTES;
            assert_eq!(&seg[start..start + bodies[i].len()], &bodies[i][..]);
        }
    }

    #[test]
    fn a_truncated_tail_is_cut_at_the_last_whole_record() {
        let (seg, ends) = segment(&[b"one".to_vec(), b"two".to_vec()]);
        let (found, scan) = read_all(&seg[..seg.len() - 1]);
        assert_eq!(found.len(), 1);
        assert_eq!(scan.valid_len, ends[0]);
        assert_eq!(scan.problem.as_deref(), Some("a torn record body"));
        let (found, scan) = read_all(&seg[..ends[0] as usize + 5]);
        assert_eq!(found.len(), 1);
        assert_eq!(scan.problem.as_deref(), Some("a torn record header"));
    }

    #[test]
    fn garbage_after_the_last_record_is_refused() {
        let (mut seg, ends) = segment(&[b"one".to_vec()]);
        seg.extend_from_slice(&[0xff; 100]);
        let (found, scan) = read_all(&seg);
        assert_eq!(found.len(), 1);
        assert_eq!(scan.valid_len, ends[0]);
        assert!(scan.problem.is_some());
    }

    #[test]
    fn a_huge_length_is_corruption_not_an_allocation() {
        let mut h = encode_header(1, 1, 0, b"x");
        h[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        let (found, scan) = read_all(&h);
        assert!(found.is_empty());
        assert_eq!(scan.problem.as_deref(), Some("a corrupt record header"));
    }

    #[test]
    fn sequence_numbers_must_increase() {
        let mut seg = frame(5, 1, b"a");
        seg.extend(frame(5, 1, b"b"));
        let (found, result) = read_all(&seg);
        assert_eq!(found.len(), 1);
        assert_eq!(result.problem.as_deref(), Some("a record out of sequence"));
        let mut found = Vec::new();
        let s = scan(&mut &seg[..], Some(5), |f| found.push(f)).expect("read");
        assert!(found.is_empty());
        assert_eq!(s.valid_len, 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any truncation, flipped byte or appended garbage: what is recovered is exactly a
        /// prefix of what was written (same bodies, same order), and scanning never panics.
        #[test]
        fn recovery_yields_a_prefix_of_what_was_written(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..12),
            cut in any::<prop::sample::Index>(),
            flip in proptest::option::of((any::<prop::sample::Index>(), 1u8..=255)),
            garbage in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let (seg, ends) = segment(&bodies);
            let mut data = seg[..cut.index(seg.len() + 1)].to_vec();
            if let Some((at, x)) = flip {
                if !data.is_empty() {
                    let i = at.index(data.len());
                    data[i] ^= x;
                }
            }
            data.extend_from_slice(&garbage);
            let (found, result) = read_all(&data);
            prop_assert!(found.len() <= bodies.len());
            for (i, f) in found.iter().enumerate() {
                let start = f.offset as usize + HEADER_BYTES;
                prop_assert_eq!(f.header.seq, 10 + i as u64);
                prop_assert_eq!(&data[start..start + f.header.len as usize], &bodies[i][..]);
                prop_assert_eq!(f.offset + f.header.frame_len(), ends[i]);
            }
            prop_assert_eq!(result.valid_len, if found.is_empty() { 0 } else { ends[found.len() - 1] });
        }
    }
}
