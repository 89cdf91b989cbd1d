//! One process per state directory. Two `run`s sharing a `state_dir` would each move the
//! other's file checkpoints and deliver — then delete — the other's spool records: duplicates,
//! or rows skipped. So `run` holds an exclusive lock on `state_dir/lock`, and `send --spool DIR`
//! on `DIR/lock`, for as long as it lives.
//!
//! The lock is an advisory `flock` (`File::try_lock`) on the open file: the kernel drops it when the process ends
//! in any way (`kill -9` included), so a stale lock file never blocks a restart. The file holds
//! the holder's pid, for the message the second process prints.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The name of the lock file inside the directory.
pub const LOCK_FILE: &str = "lock";

/// Held while alive; dropping it (or exiting) releases the lock.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Keeps the lock until the process ends, past the return of the code that took it: after
    /// `run` returns, blocking tasks (an fsync, a checkpoint write) may still be finishing while
    /// the process exits, and a new agent must not start on the directory before that.
    pub fn hold_until_exit(self) {
        std::mem::forget(self);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{} is in use by another dcrship{}; stop that one first, or give each its own directory", dir.display(), holder.as_deref().map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Held {
        dir: PathBuf,
        holder: Option<String>,
    },
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl DirLock {
    /// Takes the lock of `dir` (which must exist) without waiting.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = crate::private_fs::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        // std's try_lock is flock(LOCK_EX | LOCK_NB) on Linux.
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let holder = file
                    .read_to_string(&mut text)
                    .ok()
                    .map(|_| text.trim().to_string())
                    .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
        }
        // Only a note for the next one to come: a failure to write it does not matter.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().expect("tmp");
        let first = DirLock::acquire(dir.path()).expect("first");
        let refused = DirLock::acquire(dir.path()).expect_err("second");
        let text = refused.to_string();
        assert!(
            text.contains(&format!(
                "in use by another dcrship (pid {})",
                std::process::id()
            )),
            "{text}"
        );
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        drop(first);
        let again = DirLock::acquire(dir.path());
        assert!(again.is_ok(), "released on drop: {again:?}");
    }

    #[test]
    fn a_missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = DirLock::acquire(&dir.path().join("nope")).expect_err("missing");
        assert!(matches!(e, LockError::Io { .. }), "{e}");
    }
}
