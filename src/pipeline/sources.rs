//! Numbers for the places rows come from (a file, stdin), so a row's [`crate::rows::Origin`]
//! stays small and a finished batch can be turned back into file checkpoints.

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
        });
        g.by_key.insert(key, id);
        id
    }

    /// A source without checkpoints (stdin).
    pub fn stream(&self, name: &str) -> u32 {
        let mut g = self.inner();
        let id = g.list.len() as u32;
        g.list.push(Source {
            name: Arc::from(name),
            file: None,
        });
        id
    }

    pub fn get(&self, id: u32) -> Option<Source> {
        self.inner().list.get(id as usize).cloned()
    }
}
