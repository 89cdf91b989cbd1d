//! Numbers for the places rows come from (a file, stdin, a journal), so a row's
//! [`crate::rows::Origin`] stays small and a finished batch can be turned back into file
//! checkpoints (or a journal cursor, through [`SafeUpTo`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::input::fingerprint::FileKey;

/// What a source number stands for.
#[derive(Debug, Clone)]
pub struct Source {
    /// For dead-letters: the file path, or `<stdin>`.
    pub name: Arc<str>,
    /// A file's identity and path, for checkpoints; `None` for stdin.
    pub file: Option<(FileKey, PathBuf)>,
    /// A source whose position is not a file offset (a journal cursor): told when its rows
    /// are safe.
    pub position: Option<Arc<dyn SafeUpTo>>,
}

/// Keeps the position of a source whose rows carry numbers, not file offsets, as their offset:
/// told the highest number whose rows (and every earlier one's) are safe.
pub trait SafeUpTo: Send + Sync + std::fmt::Debug {
    fn safe_up_to(&self, offset: u64);
}

#[derive(Debug, Default)]
struct Inner {
    by_key: HashMap<FileKey, u32>,
    list: Vec<Source>,
}

/// The registry, shared by inputs (which add) and senders (which look up).
#[derive(Debug, Default, Clone)]
pub struct Sources(Arc<Mutex<Inner>>);

impl Sources {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The number of a file (the same for the same identity, whatever its path now).
    pub fn file(&self, key: FileKey, path: &std::path::Path) -> u32 {
        let mut g = self.inner();
        if let Some(&id) = g.by_key.get(&key) {
            let src = &mut g.list[id as usize];
            if src.file.as_ref().is_some_and(|(_, p)| p != path) {
                src.file = Some((key, path.to_path_buf()));
                src.name = Arc::from(path.display().to_string());
            }
            return id;
        }
        let id = g.list.len() as u32;
        g.list.push(Source {
            name: Arc::from(path.display().to_string()),
            file: Some((key, path.to_path_buf())),
            position: None,
        });
        g.by_key.insert(key, id);
        id
    }

    /// A source without checkpoints (stdin).
    pub fn stream(&self, name: &str) -> u32 {
        self.add(name, None)
    }

    /// A source whose position `position` keeps (a journald input).
    pub fn positioned(&self, name: &str, position: Arc<dyn SafeUpTo>) -> u32 {
        self.add(name, Some(position))
    }

    fn add(&self, name: &str, position: Option<Arc<dyn SafeUpTo>>) -> u32 {
        let mut g = self.inner();
        let id = g.list.len() as u32;
        g.list.push(Source {
            name: Arc::from(name),
            file: None,
            position,
        });
        id
    }

    pub fn get(&self, id: u32) -> Option<Source> {
        self.inner().list.get(id as usize).cloned()
    }
}
