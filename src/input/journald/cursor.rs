//! Journal cursors of rows on their way: the pipeline's ack tracker moves numeric offsets, so
//! each journal row carries a sequence number as its offset, and this log turns "rows safe up to
//! number N" back into the cursor of entry N — the one to save. Holds only the rows between
//! being read and being safe (bounded by the pipeline's channels). Pure.

use std::collections::VecDeque;

/// Sequence numbers (from 1) → cursors, in reading order.
#[derive(Debug, Default)]
pub struct CursorLog {
    next: u64,
    pending: VecDeque<(u64, String)>,
}

impl CursorLog {
    pub fn new() -> Self {
        CursorLog {
            next: 1,
            pending: VecDeque::new(),
        }
    }

    /// Records the cursor of the next row; returns that row's number (its offset).
    pub fn push(&mut self, cursor: String) -> u64 {
        let seq = self.next.max(1);
        self.next = seq + 1;
        self.pending.push_back((seq, cursor));
        seq
    }

    /// The number of the last row pushed (0 before any).
    pub fn last(&self) -> u64 {
        self.next.saturating_sub(1)
    }

    /// Rows up to `seq` are safe: the cursor to save (that of the highest number ≤ `seq`), if
    /// any is newly safe. Older entries are forgotten.
    pub fn safe(&mut self, seq: u64) -> Option<String> {
        let mut last = None;
        while self.pending.front().is_some_and(|(s, _)| *s <= seq) {
            last = self.pending.pop_front().map(|(_, c)| c);
        }
        last
    }

    /// Cursors held (rows read, not yet safe).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_safe_number_gives_its_cursor() {
        let mut log = CursorLog::new();
        let a = log.push("a".into());
        let b = log.push("b".into());
        let c = log.push("c".into());
        assert_eq!((a, b, c), (1, 2, 3));
        assert_eq!(log.last(), 3);
        assert_eq!(log.safe(0), None);
        assert_eq!(log.safe(2).as_deref(), Some("b"));
        assert_eq!(log.pending(), 1);
        // the same or an older number again: nothing new
        assert_eq!(log.safe(2), None);
        assert_eq!(log.safe(1), None);
        // a number past a gap (a row refused, never acked) still finds the one below it
        let d = log.push("d".into());
        assert_eq!(log.safe(d + 10).as_deref(), Some("d"));
        assert!(log.pending() == 0);
    }
}
