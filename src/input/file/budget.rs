//! How many files the tailers may hold open at once, shared by every file input of the agent.
//!
//! Each open file takes a [`Slot`]; dropping the slot (with its file) gives it back. A tailer that
//! finds no free slot leaves the file closed and tries again on its next poll, and files that are
//! fully read are closed early while the budget is crowded (see [`super::tracked`]), so ten
//! thousand files share a few hundred descriptors and the rest of the process (spool, cursor,
//! checkpoints, sockets) never runs out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The budget. Cheap to share: the tailers hold an `Arc` of it.
#[derive(Debug)]
pub struct OpenFiles {
    max: usize,
    open: AtomicUsize,
}

impl OpenFiles {
    /// A budget of `max` files (at least 1).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(OpenFiles {
            max: max.max(1),
            open: AtomicUsize::new(0),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Files open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// A slot if one is free.
    pub fn try_slot(self: &Arc<Self>) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(self)))
    }

    /// A slot even past the budget, for a file that must be read now or never (a rotated file
    /// found at startup). The descriptors kept in reserve cover these few.
    pub fn slot(self: &Arc<Self>) -> Slot {
        self.open.fetch_add(1, Ordering::AcqRel);
        Slot(Arc::clone(self))
    }

    /// Three quarters or more of the budget is in use: close files as soon as they are read, so
    /// files that have something to read find a slot.
    pub fn crowded(&self) -> bool {
        self.open() * 4 >= self.max * 3
    }
}

/// One open file's share of the budget; given back on drop.
#[derive(Debug)]
pub struct Slot(Arc<OpenFiles>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back_on_drop() {
        let budget = OpenFiles::new(4);
        let slots: Vec<Slot> = (0..4).filter_map(|_| budget.try_slot()).collect();
        assert_eq!((slots.len(), budget.open()), (4, 4));
        assert!(budget.try_slot().is_none());
        assert!(budget.crowded());
        let forced = budget.slot();
        assert_eq!(budget.open(), 5);
        drop(forced);
        drop(slots);
        assert_eq!(budget.open(), 0);
        assert!(!budget.crowded());
        assert!(budget.try_slot().is_some());
    }

    #[test]
    fn crowded_from_three_quarters() {
        let budget = OpenFiles::new(8);
        let mut held = Vec::new();
        for n in 1..=8 {
            held.push(budget.try_slot().expect("free"));
            assert_eq!(budget.crowded(), n >= 6, "{n} open");
        }
        assert_eq!(OpenFiles::new(0).max(), 1);
    }
}
