//! Which sequence numbers the service has acknowledged (or that were dropped), persisted as the
//! spool's cursor.
//!
//! Acknowledgements arrive out of order (several requests in flight), so the set is a floor
//! ("everything below is done") plus a few ranges above it. It stays small: one range per gap,
//! and a gap is a record still in flight. The cursor file is replaced atomically (temporary
//! file, fsync, rename), so a crash leaves the old cursor or the new one, never a mix; an old
//! cursor only means a few acknowledged records are sent again.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckedSet {
    /// Every sequence number below this is done.
    floor: u64,
    /// Done ranges above the floor, `start → end` (half-open), disjoint and not touching.
    ranges: BTreeMap<u64, u64>,
}

impl AckedSet {
    pub fn contains(&self, seq: u64) -> bool {
        seq < self.floor
            || self
                .ranges
                .range(..=seq)
                .next_back()
                .is_some_and(|(_, &end)| seq < end)
    }

    pub fn insert(&mut self, seq: u64) {
        self.insert_range(seq, seq.saturating_add(1));
    }

    /// Marks `[start, end)` done.
    pub fn insert_range(&mut self, start: u64, end: u64) {
        if end <= start || end <= self.floor {
            return;
        }
        let mut start = start.max(self.floor);
        let mut end = end;
        // Absorb every range that overlaps or touches [start, end).
        let touching: Vec<(u64, u64)> = self
            .ranges
            .range(..=end)
            .rev()
            .take_while(|(_, &e)| e >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            self.ranges.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        if start <= self.floor {
            self.floor = end;
        } else {
            self.ranges.insert(start, end);
        }
    }

    /// One past the highest sequence number known done (0 when none).
    pub fn high(&self) -> u64 {
        self.ranges
            .values()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(self.floor)
    }

    /// Ranges above the floor (for tests and the log).
    #[cfg(test)]
    pub fn gaps(&self) -> usize {
        self.ranges.len()
    }

    /// Reads the cursor; a missing file is an empty set. A damaged one is reported, and the
    /// caller starts from nothing acknowledged (everything is sent again: duplicates, no loss).
    pub fn load(path: &Path) -> Result<AckedSet, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<AckedSet>(&bytes)
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|s| {
                    s.validated()
                        .ok_or_else(|| format!("{}: ranges out of order", path.display()))
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AckedSet::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    fn validated(self) -> Option<AckedSet> {
        let mut prev = self.floor;
        for (&s, &e) in &self.ranges {
            if s <= prev || e <= s {
                return None;
            }
            prev = e;
        }
        Some(self)
    }

    /// Replaces the cursor file atomically; with `durable`, also fsyncs it. Without, a process
    /// crash still finds the new cursor (the page cache survives it); a power loss may find an
    /// older or damaged one, which only means delivered records are sent again.
    pub fn save(&self, path: &Path, durable: bool) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let mut f = crate::private_fs::options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        if durable {
            f.sync_data()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|_| durable) {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

/// Makes a directory's entries (a created, renamed or removed file) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn out_of_order_acks_merge_into_the_floor() {
        let mut a = AckedSet::default();
        a.insert(2);
        a.insert(4);
        assert!(!a.contains(0) && a.contains(2) && !a.contains(3) && a.contains(4));
        assert_eq!(a.gaps(), 2);
        a.insert(3);
        assert_eq!(a.gaps(), 1);
        a.insert(0);
        a.insert(1);
        assert_eq!(a.gaps(), 0);
        assert!(a.contains(4) && !a.contains(5));
        assert_eq!(a.high(), 5);
        a.insert_range(10, 20);
        assert!(a.contains(19) && !a.contains(20) && !a.contains(9));
        assert_eq!(a.high(), 20);
    }

    #[test]
    fn the_cursor_survives_a_save_and_a_load() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("cursor");
        assert_eq!(AckedSet::load(&path), Ok(AckedSet::default()));
        let mut a = AckedSet::default();
        for s in [0, 1, 2, 7, 9, 10] {
            a.insert(s);
        }
        a.save(&path, true).expect("save");
        assert_eq!(AckedSet::load(&path), Ok(a.clone()));
        assert!(!path.with_extension("tmp").exists());
        std::fs::write(&path, b"{\"floor\":3,\"ran").expect("write");
        assert!(AckedSet::load(&path).is_err());
        std::fs::write(&path, br#"{"floor":3,"ranges":{"2":5}}"#).expect("write");
        assert!(
            AckedSet::load(&path).is_err(),
            "a range below the floor is refused"
        );
    }

    proptest! {
        /// The set answers like a plain set of the inserted numbers.
        #[test]
        fn behaves_like_a_set(ops in proptest::collection::vec((0u64..60, 1u64..5), 0..40)) {
            let mut a = AckedSet::default();
            let mut plain = std::collections::BTreeSet::new();
            for (s, n) in ops {
                a.insert_range(s, s + n);
                plain.extend(s..s + n);
            }
            for x in 0..70 {
                prop_assert_eq!(a.contains(x), plain.contains(&x), "{}", x);
            }
            prop_assert!(a.clone().validated().is_some());
        }
    }
}
