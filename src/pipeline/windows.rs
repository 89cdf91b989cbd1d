//! Windows waiting for their checkpoint: checksums of bytes the tailer read just before an offset
//! ([`Window`]), kept until a file's checkpoint moves past them, so the saved checkpoint carries
//! the latest window at or before its offset. Pure, and bounded: a full book forgets its oldest
//! windows, which only leaves a checkpoint with an older (still true) window.

use std::collections::{HashMap, VecDeque};

use crate::input::fingerprint::{FileKey, Window};

/// Windows kept per file: the tailer makes one per 4 KiB read and one per batch, so this covers
/// far more than the rows in flight between reading and the spool's fsync.
const PER_FILE: usize = 64;
/// Windows kept in all: beyond this the book starts over (a few hundred KiB).
const TOTAL: usize = 16_384;

#[derive(Debug, Default)]
pub struct WindowBook {
    by_file: HashMap<FileKey, VecDeque<Window>>,
    total: usize,
}

impl WindowBook {
    /// Adds windows the tailer read for `key`, in file order. A window that does not come after
    /// the last one means the file is read again from an earlier offset: the older ones go.
    pub fn note(&mut self, key: FileKey, windows: &[Window]) {
        if windows.is_empty() {
            return;
        }
        if self.total + windows.len() > TOTAL {
            self.by_file.clear();
            self.total = 0;
        }
        let queue = self.by_file.entry(key).or_default();
        for w in windows {
            if queue.back().is_some_and(|last| last.end >= w.end) {
                self.total -= queue.len();
                queue.clear();
            }
            queue.push_back(*w);
            self.total += 1;
            if queue.len() > PER_FILE {
                queue.pop_front();
                self.total -= 1;
            }
        }
    }

    /// The latest window of `key` that ends at or before `offset`; it and every earlier one
    /// are dropped (the checkpoint only moves forward).
    pub fn take_upto(&mut self, key: &FileKey, offset: u64) -> Option<Window> {
        let queue = self.by_file.get_mut(key)?;
        let mut found = None;
        while let Some(w) = queue.front().filter(|w| w.end <= offset) {
            found = Some(*w);
            queue.pop_front();
            self.total -= 1;
        }
        if queue.is_empty() {
            self.by_file.remove(key);
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64) -> FileKey {
        FileKey {
            dev: 1,
            ino,
            fingerprint: 9,
            generation: 0,
        }
    }

    fn w(end: u64) -> Window {
        Window {
            end,
            len: 1,
            crc: end as u32,
        }
    }

    #[test]
    fn take_upto_gives_the_latest_window_not_past_the_offset() {
        let mut book = WindowBook::default();
        book.note(key(1), &[w(10), w(20), w(30)]);
        book.note(key(2), &[w(5)]);
        // (offset asked, window expected)
        let table = [
            (5, None),
            (25, Some(w(20))),
            (25, None),
            (30, Some(w(30))),
            (99, None),
        ];
        for (offset, want) in table {
            assert_eq!(book.take_upto(&key(1), offset), want, "offset {offset}");
        }
        assert_eq!(book.take_upto(&key(2), 5), Some(w(5)));
        assert_eq!(book.total, 0);
        assert!(book.by_file.is_empty());
    }

    #[test]
    fn reading_again_from_an_earlier_offset_forgets_the_later_windows() {
        let mut book = WindowBook::default();
        book.note(key(1), &[w(100), w(200)]);
        book.note(key(1), &[w(50)]);
        assert_eq!(book.take_upto(&key(1), 150), Some(w(50)));
        assert_eq!(book.total, 0);
    }

    #[test]
    fn the_book_stays_bounded() {
        let mut book = WindowBook::default();
        let many: Vec<Window> = (1..=1000).map(w).collect();
        book.note(key(1), &many);
        assert_eq!(book.total, PER_FILE);
        assert_eq!(book.take_upto(&key(1), 1000), Some(w(1000)));
        for ino in 0..(TOTAL as u64 / PER_FILE as u64 + 10) {
            book.note(key(ino), &many[..PER_FILE]);
            assert!(book.total <= TOTAL);
        }
    }
}
