//! Where files the tailer does not hold right now were read up to: the checkpoints it started
//! with, and files it closed that still exist (so they are not read twice if they come back).
//!
//! Entries are found by device, inode and fingerprint (the *triple*); several entries may share
//! one, each a generation of lookalikes (see [`crate::input::fingerprint`]). [`KnownOffsets::claim`]
//! decides which one, if any, a file now at that inode is: the one whose offset the file reaches
//! and whose window it still holds.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::input::checkpoint::Checkpoints;
use crate::input::fingerprint::{FileKey, Window};

/// Device, inode, fingerprint.
pub(super) type Triple = (u64, u64, u64);

/// How far a file was read, and what it held just before that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Known {
    pub offset: u64,
    pub window: Option<Window>,
    /// The watched name it was read under.
    pub path: PathBuf,
}

/// What a file found at a triple is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Claim {
    /// The file of this entry: resume it.
    Resume(FileKey, Known),
    /// None of them: a new file with this generation. The entries it is not are `lost`: their
    /// file may sit elsewhere (a copy, a compressed rotation).
    New {
        generation: u32,
        lost: Vec<(FileKey, Known)>,
    },
}

#[derive(Debug, Default)]
pub(super) struct KnownOffsets {
    by_triple: HashMap<Triple, Vec<(u32, Known)>>,
}

impl KnownOffsets {
    pub fn from_checkpoints(checkpoints: &Checkpoints) -> Self {
        let mut known = KnownOffsets::default();
        for (key, cp) in checkpoints.iter() {
            known.insert(
                *key,
                Known {
                    offset: cp.offset,
                    window: cp.window,
                    path: cp.path.clone(),
                },
            );
        }
        known
    }

    pub fn insert(&mut self, key: FileKey, known: Known) {
        let list = self.by_triple.entry(key.triple()).or_default();
        list.retain(|(g, _)| *g != key.generation);
        list.push((key.generation, known));
    }

    pub fn get(&self, key: &FileKey) -> Option<&Known> {
        self.by_triple
            .get(&key.triple())?
            .iter()
            .find(|(g, _)| *g == key.generation)
            .map(|(_, k)| k)
    }

    /// Removes and returns the entry of `key`.
    pub fn take(&mut self, key: &FileKey) -> Option<Known> {
        let list = self.by_triple.get_mut(&key.triple())?;
        let at = list.iter().position(|(g, _)| *g == key.generation)?;
        let (_, known) = list.remove(at);
        if list.is_empty() {
            self.by_triple.remove(&key.triple());
        }
        Some(known)
    }

    /// Which entry of `triple` a file of `size` bytes is (`holds` tells whether the file still
    /// has a window's bytes), taking it out; or, when none, the generation for a new file (at
    /// least `min_generation`) and the entries it is not, taken out too. A file held open needs
    /// no second record, and an entry it is not cannot be at this inode.
    pub fn claim(
        &mut self,
        triple: Triple,
        size: u64,
        min_generation: u32,
        mut holds: impl FnMut(&Window) -> io::Result<bool>,
    ) -> io::Result<Claim> {
        let key = |generation| FileKey {
            dev: triple.0,
            ino: triple.1,
            fingerprint: triple.2,
            generation,
        };
        let Some(mut list) = self.by_triple.remove(&triple) else {
            return Ok(Claim::New {
                generation: min_generation,
                lost: Vec::new(),
            });
        };
        // The latest generation first: it is the likeliest to be the file there now.
        list.sort_by_key(|e| std::cmp::Reverse(e.0));
        let mut found = None;
        for (i, (_, known)) in list.iter().enumerate() {
            let fits = known.offset <= size
                && match &known.window {
                    Some(w) => holds(w)?,
                    None => true,
                };
            if fits {
                found = Some(i);
                break;
            }
        }
        if let Some(i) = found {
            let (generation, known) = list.remove(i);
            if !list.is_empty() {
                self.by_triple.insert(triple, list);
            }
            return Ok(Claim::Resume(key(generation), known));
        }
        let generation = list
            .iter()
            .map(|(g, _)| g.saturating_add(1))
            .max()
            .unwrap_or(0)
            .max(min_generation);
        let lost = list.into_iter().map(|(g, k)| (key(g), k)).collect();
        Ok(Claim::New { generation, lost })
    }

    /// The keys of every entry whose path `wanted` accepts.
    pub fn keys_where(&self, wanted: impl Fn(&Known) -> bool) -> Vec<FileKey> {
        self.by_triple
            .iter()
            .flat_map(|(t, list)| {
                list.iter()
                    .filter(|(_, k)| wanted(k))
                    .map(|(g, _)| FileKey {
                        dev: t.0,
                        ino: t.1,
                        fingerprint: t.2,
                        generation: *g,
                    })
            })
            .collect()
    }
}

pub(super) type SharedOffsets = Arc<Mutex<KnownOffsets>>;

pub(super) fn lock(known: &SharedOffsets) -> MutexGuard<'_, KnownOffsets> {
    // The map holds plain values; a panic elsewhere cannot leave it half-updated.
    known.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Triple = (1, 2, 3);

    fn w(end: u64) -> Option<Window> {
        Some(Window {
            end,
            len: 1,
            crc: end as u32,
        })
    }

    fn known(offset: u64, window: Option<Window>) -> Known {
        Known {
            offset,
            window,
            path: PathBuf::from("/l/app.log"),
        }
    }

    fn key(generation: u32) -> FileKey {
        FileKey {
            dev: 1,
            ino: 2,
            fingerprint: 3,
            generation,
        }
    }

    /// The decision for a file of 100 bytes whose bytes hold the windows ending at 10 and 50.
    #[test]
    fn claim_table() {
        let holds = |w: &Window| Ok(w.end == 10 || w.end == 50);
        type Case = (&'static str, Vec<(u32, Known)>, u32, Claim);
        let cases: Vec<Case> = vec![
            (
                "nothing known",
                vec![],
                0,
                Claim::New {
                    generation: 0,
                    lost: vec![],
                },
            ),
            (
                "known, window held",
                vec![(0, known(60, w(50)))],
                0,
                Claim::Resume(key(0), known(60, w(50))),
            ),
            (
                "an old entry without a window resumes as before",
                vec![(0, known(60, None))],
                0,
                Claim::Resume(key(0), known(60, None)),
            ),
            (
                "window not held: a lookalike",
                vec![(0, known(60, w(40)))],
                0,
                Claim::New {
                    generation: 1,
                    lost: vec![(key(0), known(60, w(40)))],
                },
            ),
            (
                "shorter than the offset: truncated",
                vec![(0, known(500, w(10)))],
                0,
                Claim::New {
                    generation: 1,
                    lost: vec![(key(0), known(500, w(10)))],
                },
            ),
            (
                "two generations: the one held wins",
                vec![(0, known(60, w(50))), (1, known(30, w(20)))],
                0,
                Claim::Resume(key(0), known(60, w(50))),
            ),
            (
                "reset after a truncation: a later generation",
                vec![],
                4,
                Claim::New {
                    generation: 4,
                    lost: vec![],
                },
            ),
        ];
        for (what, entries, min_generation, want) in cases {
            let mut k = KnownOffsets::default();
            for (g, e) in entries {
                k.insert(key(g), e);
            }
            let got = k.claim(T, 100, min_generation, holds).expect("claim");
            let resumed = matches!(got, Claim::Resume(..));
            assert_eq!(got, want, "{what}");
            // A claimed entry, and every entry reported lost, is taken out.
            if !resumed {
                assert!(k.by_triple.is_empty(), "{what}");
            }
        }
    }

    #[test]
    fn take_get_and_keys_where() {
        let mut k = KnownOffsets::default();
        k.insert(key(0), known(5, None));
        k.insert(key(2), known(7, w(7)));
        k.insert(key(2), known(9, w(9)));
        assert_eq!(k.get(&key(2)).map(|k| k.offset), Some(9));
        let mut keys = k.keys_where(|k| k.offset > 6);
        keys.sort();
        assert_eq!(keys, vec![key(2)]);
        assert_eq!(k.take(&key(0)).map(|k| k.offset), Some(5));
        assert_eq!(k.take(&key(0)), None);
        assert!(k.take(&key(2)).is_some());
        assert!(k.by_triple.is_empty());
    }
}
