//! The process's descriptor limit (`RLIMIT_NOFILE`): raised to its hard limit when `run` starts,
//! and what the file tailers may take of it.
//!
//! systemd and most shells give a process a soft limit of 1024 descriptors and a hard limit far
//! above it; the soft limit can be raised to the hard one without privileges. The tailers then
//! take all but a reserve ([`reserve`]): the spool's segments and cursor, the checkpoint file,
//! the dead-letter file, sockets to the endpoint and the token service, inotify, and the
//! directories a glob scan reads, which must never fail for want of a descriptor.

use std::io;

/// What an unknown limit counts as: the usual soft limit.
const FALLBACK_LIMIT: u64 = 1024;
/// The tailers never get fewer than this, however low the limit.
const MIN_FOR_FILES: u64 = 16;

/// The soft limit now (an infinite one counts as `u32::MAX`).
pub fn nofile_limit() -> u64 {
    getrlimit().map_or(FALLBACK_LIMIT, |(soft, _)| soft)
}

/// Raises the soft limit to the hard limit; returns the limits before and after (the same when
/// there was nothing to raise).
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let (soft, hard) = getrlimit()?;
    if soft >= hard {
        return Ok((soft, soft));
    }
    let lim = libc::rlimit {
        rlim_cur: hard as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((soft, nofile_limit()))
}

/// Descriptors kept for everything but tailed files: 256 (what an agent with a few outputs at
/// high concurrency needs, with room to spare), or half of a smaller limit.
pub fn reserve(limit: u64) -> u64 {
    (limit / 2).min(256)
}

/// `[agent] max_open_files` when it is not set: the limit less the [`reserve`].
pub fn default_max_open_files(limit: u64) -> usize {
    let files = limit.saturating_sub(reserve(limit)).max(MIN_FOR_FILES);
    usize::try_from(files).unwrap_or(usize::MAX)
}

/// The budget of tailed files: `configured` or the default, and whether it leaves fewer than
/// the [`reserve`] of `limit` for the rest of the process (worth a warning).
pub fn max_open_files(configured: Option<usize>, limit: u64) -> (usize, bool) {
    let files = configured.unwrap_or_else(|| default_max_open_files(limit));
    let tight = (files as u64).saturating_add(reserve(limit)) > limit;
    (files, tight)
}

fn getrlimit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let clamp = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            u64::from(u32::MAX)
        } else {
            v
        }
    };
    Ok((clamp(lim.rlim_cur), clamp(lim.rlim_max)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_get_the_limit_less_a_reserve() {
        // (limit, reserve, files)
        let table = [
            (64, 32, 32),
            (256, 128, 128),
            (1024, 256, 768),
            (4096, 256, 3840),
            (524_288, 256, 524_032),
            (20, 10, 16),
            (0, 0, 16),
        ];
        for (limit, want_reserve, want_files) in table {
            assert_eq!(reserve(limit), want_reserve, "reserve of {limit}");
            assert_eq!(
                default_max_open_files(limit),
                want_files,
                "files of {limit}"
            );
        }
    }

    #[test]
    fn a_configured_budget_wins_and_a_tight_one_is_flagged() {
        assert_eq!(max_open_files(None, 1024), (768, false));
        assert_eq!(max_open_files(Some(100), 1024), (100, false));
        assert_eq!(max_open_files(Some(768), 1024), (768, false));
        assert_eq!(max_open_files(Some(1000), 1024), (1000, true));
    }

    #[test]
    fn the_limit_is_read_and_raising_it_never_lowers_it() {
        let before = nofile_limit();
        assert!(before > 0);
        let (old, new) = raise_nofile_limit().expect("raise");
        assert!(old <= new && new >= before);
    }
}
