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

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use memchr::memchr;

/// How much of a file's head the fingerprint covers at most.
pub const FINGERPRINT_BYTES: usize = 1024;

/// The identity of a tailed file: what a checkpoint is stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    /// See the module documentation for the rule.
    pub fingerprint: u64,
}

impl fmt::Display for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{:016x}", self.dev, self.ino, self.fingerprint)
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
    let mut filled = 0;
    while filled < head.len() {
        match file.read_at(&mut head[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    head.truncate(filled);
    Ok(head)
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
        };
        assert_eq!(key.to_string(), "2049:77:00000000000000ab");
    }
}
