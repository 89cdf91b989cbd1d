//! File system notifications, used only to wake the poll loop early.
//!
//! inotify misses changes on NFS and drops events when its queue overflows, so nothing here is
//! trusted: an event only makes the next stat poll (and, for names appearing or disappearing, the
//! next glob rescan) happen now instead of at its interval. Without a watcher the tailer polls.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use notify::event::ModifyKind;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// Shared between the watcher's thread and the poll loop.
#[derive(Debug, Default)]
pub(super) struct Wake {
    notify: Notify,
    rescan: AtomicBool,
}

impl Wake {
    /// Resolves when an event arrived since the last call (events are coalesced).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// Whether a name appeared or disappeared since the last call.
    pub fn take_rescan(&self) -> bool {
        self.rescan.swap(false, Ordering::Relaxed)
    }

    fn event(&self, kind: Option<&EventKind>) {
        match kind {
            // Our own opens and reads, and directory listings by the rescan: not news.
            Some(EventKind::Access(_)) => return,
            Some(EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Metadata(_))) => {}
            // Create, remove, rename, or an error (queue overflow): names may have changed.
            _ => self.rescan.store(true, Ordering::Relaxed),
        }
        self.notify.notify_one();
    }
}

/// Watches directories (not recursively) for as long as it lives.
pub(super) struct DirWatcher {
    watcher: Option<RecommendedWatcher>,
    watched: HashSet<PathBuf>,
}

impl DirWatcher {
    /// A watcher that pokes `wake`; without one (no inotify instances left, unsupported platform)
    /// the tailer just polls.
    pub fn new(wake: Arc<Wake>) -> Self {
        let handler = move |event: notify::Result<notify::Event>| {
            wake.event(event.as_ref().ok().map(|e| &e.kind));
        };
        let watcher = match notify::recommended_watcher(handler) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::info!("no file system notifications, polling only: {e}");
                None
            }
        };
        DirWatcher {
            watcher,
            watched: HashSet::new(),
        }
    }

    /// Watches `dir` unless it is watched already. A directory that cannot be watched (missing
    /// yet, or out of inotify watches) is tried again on the next call.
    pub fn watch(&mut self, dir: &Path) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        if dir.as_os_str().is_empty() || self.watched.contains(dir) {
            return;
        }
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.watched.insert(dir.to_path_buf());
            }
            Err(e) => tracing::debug!(dir = %dir.display(), "cannot watch directory: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, CreateKind, DataChange};

    #[test]
    fn only_name_changes_ask_for_a_rescan() {
        let wake = Wake::default();
        wake.event(Some(&EventKind::Access(AccessKind::Any)));
        wake.event(Some(&EventKind::Modify(ModifyKind::Data(DataChange::Any))));
        assert!(!wake.take_rescan());
        wake.event(Some(&EventKind::Create(CreateKind::File)));
        assert!(wake.take_rescan());
        assert!(!wake.take_rescan());
        wake.event(None);
        assert!(wake.take_rescan());
    }
}
