//! File identity that survives restarts and notices inode reuse.
//!
//! A tailed file is known by [`FileKey`]: device, inode and a fingerprint of its head. Device and
//! inode alone are not enough: once a file is deleted the kernel gives its inode number to the next
//! file created, and a checkpoint keyed by inode would resume that new file at the old one's
//! offset, skipping its head (Vector #25079, Fluent Bit #8025). The fingerprint tells the two
//! apart.
//!
//! # The rule
//!
//! The fingerprint is the 64-bit FNV-1a hash of the file's **first line including its `\n`**, or of
//! its **first 1 KiB** ([`FINGERPRINT_BYTES`]) when those bytes hold no newline. An append-only file
//! never changes bytes it already has, so the value is fixed from the moment it exists. Until it
//! exists (an empty file, or a first line shorter than 1 KiB still being written) the file has no
//! fingerprint and is not read: reading it would pin a key that changes a moment later.
//!
//! FNV-1a is fixed by its specification, so the value is the same across restarts, builds and
//! Rust versions; std's `DefaultHasher` promises none of that.
//!
//! # Lookalikes
//!
//! A log that always starts with the same header (a CSV header, a banner) gets the same
//! fingerprint every time, so an inode reused for such a file, or the file refilled after
//! copytruncate, would look like the old one. A [`Window`] closes that gap: a CRC-32 of up to
//! [`WINDOW_BYTES`] bytes read just before an offset. A checkpoint keeps one, and a file resumed
//! at that offset must still hold those bytes there; a file that does not is another file with
//! the same key apart from [`FileKey::generation`].

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use memchr::memchr;

/// How much of a file's head the fingerprint covers at most.
pub const FINGERPRINT_BYTES: usize = 1024;
/// How many bytes before an offset a [`Window`] covers at most.
pub const WINDOW_BYTES: usize = 1024;

/// The identity of a tailed file: what a checkpoint is stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    /// See the module documentation for the rule.
    pub fingerprint: u64,
    /// Which of the files that had this device, inode and fingerprint: 0 for the first, one more
    /// for each lookalike that replaced it (see the module documentation).
    pub generation: u32,
}

impl FileKey {
    /// Device, inode and fingerprint: what lookalikes share.
    pub fn triple(&self) -> (u64, u64, u64) {
        (self.dev, self.ino, self.fingerprint)
    }
}

impl fmt::Display for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{:016x}", self.dev, self.ino, self.fingerprint)?;
        if self.generation > 0 {
            write!(f, "+{}", self.generation)?;
        }
        Ok(())
    }
}

/// A checksum of the bytes just before `end`: `len` bytes (at most [`WINDOW_BYTES`], fewer only
/// near the start of the file) whose CRC-32 is `crc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub end: u64,
    pub len: u32,
    pub crc: u32,
}

impl Window {
    /// The window of `before`, the bytes that end at `end` (only the last [`WINDOW_BYTES`]
    /// count). `None` when there are none.
    pub fn of(before: &[u8], end: u64) -> Option<Window> {
        let bytes = &before[before.len().saturating_sub(WINDOW_BYTES)..];
        let len = u32::try_from(bytes.len()).ok().filter(|&n| n > 0)?;
        (u64::from(len) <= end).then(|| Window {
            end,
            len,
            crc: crc32fast::hash(bytes),
        })
    }

    /// Where the covered bytes start.
    pub fn start(&self) -> u64 {
        self.end - u64::from(self.len)
    }

    /// Whether `bytes` are the covered bytes.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        bytes.len() == self.len as usize && crc32fast::hash(bytes) == self.crc
    }

    /// Whether `file` still holds the covered bytes (false when it is too short).
    pub fn holds(&self, file: &File) -> io::Result<bool> {
        let mut buf = vec![0; self.len as usize];
        let n = read_full_at(file, &mut buf, self.start())?;
        Ok(n == buf.len() && self.matches(&buf))
    }

    /// The window ending at `end` in `file` (for an offset reading starts from, so later
    /// checkpoints of the file carry one from the start).
    pub fn read(file: &File, end: u64) -> io::Result<Option<Window>> {
        let len = end.min(WINDOW_BYTES as u64);
        let mut buf = vec![0; len as usize];
        let n = read_full_at(file, &mut buf, end - len)?;
        Ok(if n == buf.len() {
            Window::of(&buf, end)
        } else {
            None
        })
    }
}

/// The fingerprint of a file whose first bytes are `head`, or `None` while the rule cannot fix it
/// yet (no newline and fewer than [`FINGERPRINT_BYTES`] bytes). Bytes past the first line or past
/// 1 KiB are ignored, so any `head` at least that long gives the same answer.
pub fn fingerprint(head: &[u8]) -> Option<u64> {
    let window = &head[..head.len().min(FINGERPRINT_BYTES)];
    match memchr(b'\n', window) {
        Some(nl) => Some(fnv1a(&window[..=nl])),
        None if window.len() == FINGERPRINT_BYTES => Some(fnv1a(window)),
        None => None,
    }
}

/// A fingerprint of whatever head a file has, for a file that will never be looked up again
/// (it left the watched paths with an unfinished first line) but whose bytes must still be read.
pub fn provisional_fingerprint(head: &[u8]) -> u64 {
    fingerprint(head).unwrap_or_else(|| fnv1a(head))
}

/// Reads up to [`FINGERPRINT_BYTES`] from the start of `file` without moving any file position.
pub fn read_head(file: &File) -> io::Result<Vec<u8>> {
    let mut head = vec![0; FINGERPRINT_BYTES];
    let filled = read_full_at(file, &mut head, 0)?;
    head.truncate(filled);
    Ok(head)
}

/// Fills `buf` from `offset` as far as the file goes; returns how many bytes it got.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// 64-bit FNV-1a (offset basis and prime from the FNV specification).
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        // From the FNV reference test suite: a change here would orphan every stored checkpoint.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn no_fingerprint_until_the_first_line_is_complete() {
        assert_eq!(fingerprint(b""), None);
        assert_eq!(fingerprint(b"2026-01-01 starting"), None);
        assert_eq!(
            fingerprint(b"2026-01-01 starting\n"),
            Some(fnv1a(b"2026-01-01 starting\n"))
        );
    }

    #[test]
    fn appending_never_changes_the_fingerprint() {
        let first = fingerprint(b"first line\n");
        assert_eq!(fingerprint(b"first line\nsecond"), first);
        assert_eq!(fingerprint(b"first line\nsecond line\nthird\n"), first);
    }

    #[test]
    fn a_long_first_line_is_fingerprinted_by_its_first_kib() {
        let mut head = vec![b'x'; FINGERPRINT_BYTES - 1];
        assert_eq!(fingerprint(&head), None);
        head.push(b'y');
        let fixed = fingerprint(&head);
        assert_eq!(fixed, Some(fnv1a(&head)));
        head.extend_from_slice(b"more of the same line\nand another\n");
        assert_eq!(fingerprint(&head), fixed);
    }

    #[test]
    fn a_newline_exactly_at_the_last_fingerprinted_byte_counts() {
        let mut head = vec![b'x'; FINGERPRINT_BYTES - 1];
        head.push(b'\n');
        assert_eq!(fingerprint(&head), Some(fnv1a(&head)));
    }

    #[test]
    fn different_first_lines_give_different_fingerprints() {
        assert_ne!(fingerprint(b"old file\n"), fingerprint(b"new file\n"));
        // The newline is part of the hash, so a line and its prefix cut at 1 KiB differ.
        assert_ne!(fingerprint(b"a\n"), fingerprint(b"a\r\n"));
    }

    #[test]
    fn provisional_fingerprint_agrees_with_the_rule_once_it_applies() {
        assert_eq!(provisional_fingerprint(b"a\nb"), fnv1a(b"a\n"));
        assert_eq!(provisional_fingerprint(b"partial"), fnv1a(b"partial"));
    }

    #[test]
    fn read_head_reads_at_most_one_kib_from_the_start() -> io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new()?;
        tmp.write_all(&vec![b'z'; 3000])?;
        let file = File::open(tmp.path())?;
        let head = read_head(&file)?;
        assert_eq!(head.len(), FINGERPRINT_BYTES);
        let empty = tempfile::NamedTempFile::new()?;
        assert!(read_head(&File::open(empty.path())?)?.is_empty());
        Ok(())
    }

    #[test]
    fn file_key_displays_compactly() {
        let key = FileKey {
            dev: 2049,
            ino: 77,
            fingerprint: 0xab,
            generation: 0,
        };
        assert_eq!(key.to_string(), "2049:77:00000000000000ab");
        let lookalike = FileKey {
            generation: 2,
            ..key
        };
        assert_eq!(lookalike.to_string(), "2049:77:00000000000000ab+2");
    }

    #[test]
    fn a_window_covers_at_most_the_last_kib_before_its_end() {
        assert_eq!(Window::of(b"", 0), None);
        let w = Window::of(b"abc\n", 10).expect("window");
        assert_eq!((w.end, w.len, w.start()), (10, 4, 6));
        assert!(w.matches(b"abc\n"));
        assert!(!w.matches(b"abd\n"));
        assert!(!w.matches(b"abc\n\n"));
        let long = vec![b'q'; 3 * WINDOW_BYTES];
        let w = Window::of(&long, 5000).expect("window");
        assert_eq!(w.len as usize, WINDOW_BYTES);
        assert!(w.matches(&long[..WINDOW_BYTES]));
        // More bytes than the offset allows is not a window of this file.
        assert_eq!(Window::of(b"abcdef", 3), None);
    }

    #[test]
    fn a_window_is_held_only_by_a_file_with_the_same_bytes_there() -> io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new()?;
        tmp.write_all(b"header\nline one\nline two\n")?;
        let file = File::open(tmp.path())?;
        let w = Window::read(&file, 16)?.expect("window");
        assert_eq!((w.start(), w.len), (0, 16));
        assert!(w.holds(&file)?);
        // The same header, other lines: a lookalike.
        std::fs::write(tmp.path(), b"header\nline 111\nline two\n")?;
        assert!(!w.holds(&File::open(tmp.path())?)?);
        // Too short to hold it.
        std::fs::write(tmp.path(), b"header\n")?;
        assert!(!w.holds(&File::open(tmp.path())?)?);
        assert_eq!(Window::read(&File::open(tmp.path())?, 0)?, None);
        Ok(())
    }
}
