//! Failures that repeat (a full disk, a read-only state directory) logged without flooding the
//! log: the first at error, then at most one line a minute with the count since, and one info
//! line when the operation works again. Used for the dead-letter file, the checkpoints and the
//! spool (segments, fsync, cursor).

use std::fmt::Display;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a write that keeps failing is logged again.
const TROUBLE_LOG_EVERY: Duration = Duration::from_secs(60);

/// One operation on a file or directory that may keep failing (`what`: "write the checkpoints",
/// "save the spool cursor"): the first failure is logged at error, then at most one a minute
/// with the count since, and one info line when the operation works again.
#[derive(Debug)]
pub struct Trouble {
    what: &'static str,
    state: Mutex<TroubleState>,
}

#[derive(Debug, Default)]
struct TroubleState {
    failing: bool,
    failures: u64,
    unlogged: u64,
    last_log: Option<Instant>,
}

impl Trouble {
    /// `what` completes "cannot …" and "can … again".
    pub fn new(what: &'static str) -> Self {
        Trouble {
            what,
            state: Mutex::new(TroubleState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TroubleState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The operation on `path` failed; `then` says what follows for the user.
    pub fn failed(&self, path: &Path, error: &dyn Display, then: &str) {
        self.failed_at(Instant::now(), path, error, then);
    }

    /// [`failed`](Self::failed) at a given time; returns whether it logged.
    fn failed_at(&self, now: Instant, path: &Path, error: &dyn Display, then: &str) -> bool {
        let mut s = self.state();
        s.failing = true;
        s.failures += 1;
        s.unlogged += 1;
        if s.last_log
            .is_some_and(|t| now.duration_since(t) < TROUBLE_LOG_EVERY)
        {
            return false;
        }
        let failed_writes = s.unlogged;
        s.unlogged = 0;
        s.last_log = Some(now);
        drop(s);
        tracing::error!(
            path = %path.display(),
            failed_writes,
            "cannot {}: {error}; {then}; retrying (this is logged at most once a minute)",
            self.what
        );
        true
    }

    /// The operation on `path` worked; says so once after failures. Returns whether it logged.
    pub fn worked(&self, path: &Path) -> bool {
        let mut s = self.state();
        if !s.failing {
            return false;
        }
        let failures = s.failures;
        *s = TroubleState::default();
        drop(s);
        tracing::info!(
            path = %path.display(),
            failed_writes = failures,
            "can {} again",
            self.what
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trouble_is_logged_once_a_minute_and_recovery_once() {
        let t = Trouble::new("x");
        let p = Path::new("/x");
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert!(!t.worked(p), "no recovery to report before a failure");
        assert!(t.failed_at(at(0), p, &"ENOSPC", "then"));
        assert!(!t.failed_at(at(1), p, &"ENOSPC", "then"));
        assert!(!t.failed_at(at(59), p, &"ENOSPC", "then"));
        assert!(t.failed_at(at(60), p, &"ENOSPC", "then"));
        assert!(t.worked(p));
        assert!(!t.worked(p), "said once");
        assert!(
            t.failed_at(at(61), p, &"ENOSPC", "then"),
            "a new episode logs at once"
        );
    }
}
