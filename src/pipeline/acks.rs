//! Which input offsets are safe to checkpoint.
//!
//! Batches are numbered in order but finish — their bodies fsynced in the spool (or delivered
//! from memory when the disk refuses writes) — in any order, and one batch may hold rows of
//! several sources. A source's checkpoint may only move to the end of a batch once that batch
//! *and every earlier batch holding rows of the source* has finished — otherwise a crash would
//! skip rows not yet safe (invariant 2). Pure: no I/O.

use std::collections::{HashMap, VecDeque};

use crate::batch::RawBatch;

/// A sealed batch's number, in sealing order.
pub type Seq = u64;

#[derive(Debug, Default)]
pub struct AckTracker {
    next_seq: Seq,
    /// Per source: (batch, offset just past that batch's last row of the source, finished?).
    pending: HashMap<u32, VecDeque<(Seq, u64, bool)>>,
}

impl AckTracker {
    /// Registers a sealed batch; returns its number for [`AckTracker::finished`].
    pub fn sealed(&mut self, batch: &RawBatch) -> Seq {
        let seq = self.next_seq;
        self.next_seq += 1;
        // Rows come in runs of one source, and a batch holds few sources: a short list with
        // the current run's entry at hand beats hashing every row.
        let mut last: Vec<(u32, u64)> = Vec::new();
        let mut at = usize::MAX;
        for o in batch.origins() {
            if last.get(at).is_none_or(|e| e.0 != o.source) {
                at = match last.iter().position(|e| e.0 == o.source) {
                    Some(i) => i,
                    None => {
                        last.push((o.source, 0));
                        last.len() - 1
                    }
                };
            }
            if let Some(e) = last.get_mut(at) {
                e.1 = e.1.max(o.offset);
            }
        }
        for (source, offset) in last {
            self.pending
                .entry(source)
                .or_default()
                .push_back((seq, offset, false));
        }
        seq
    }

    /// Marks a batch finished; returns the sources whose safe offset moved, with the new offset.
    pub fn finished(&mut self, seq: Seq) -> Vec<(u32, u64)> {
        let mut moved = Vec::new();
        for (source, q) in self.pending.iter_mut() {
            let mut advanced = None;
            for e in q.iter_mut() {
                if e.0 == seq {
                    e.2 = true;
                }
            }
            while let Some(&(_, offset, true)) = q.front() {
                advanced = Some(offset);
                q.pop_front();
            }
            if let Some(offset) = advanced {
                moved.push((*source, offset));
            }
        }
        self.pending.retain(|_, q| !q.is_empty());
        moved.sort_unstable();
        moved
    }

    /// Batches sealed but not finished.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        let mut seqs: Vec<Seq> = self
            .pending
            .values()
            .flat_map(|q| q.iter().filter(|e| !e.2).map(|e| e.0))
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        seqs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::Origin;

    fn batch(rows: &[(u32, u64)]) -> RawBatch {
        RawBatch::from_rows(rows.iter().map(|&(source, offset)| {
            (
                &b"{}"[..],
                Origin {
                    source,
                    line: 0,
                    offset,
                },
            )
        }))
    }

    #[test]
    fn offsets_move_only_over_a_finished_prefix() {
        let mut t = AckTracker::default();
        let a = t.sealed(&batch(&[(0, 10), (0, 20)]));
        let b = t.sealed(&batch(&[(0, 30), (1, 5)]));
        let c = t.sealed(&batch(&[(1, 9), (0, 40)]));
        assert_eq!(t.in_flight(), 3);
        // b finishes first: source 1's first batch is b, so it moves; source 0 waits for a
        assert_eq!(t.finished(b), vec![(1, 5)]);
        // c: source 0 still waits for a; source 1 moves to 9
        assert_eq!(t.finished(c), vec![(1, 9)]);
        // a: source 0 jumps over a, b and c
        assert_eq!(t.finished(a), vec![(0, 40)]);
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn unknown_or_repeated_completions_change_nothing() {
        let mut t = AckTracker::default();
        let a = t.sealed(&batch(&[(2, 7)]));
        assert!(t.finished(99).is_empty());
        assert_eq!(t.finished(a), vec![(2, 7)]);
        assert!(t.finished(a).is_empty());
    }
}
