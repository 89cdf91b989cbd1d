//! What would stop `run` on this host, as this user — found by `check` before the service
//! starts rather than by a service that then logs nothing: log files the globs match but this
//! user cannot read (naming the group to join), globs that match nothing yet, a state directory
//! that cannot be written, an `http_listen` address another program holds. Run it as the
//! service user: `sudo -u dcrship dcrship check`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::config::Config;
use crate::dirlock::{DirLock, LockError};
use crate::pipeline::plan::Source;

/// Files looked at per input: enough to find a permission problem, bounded for huge trees.
const MAX_FILES: usize = 1000;

/// One thing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// `run` would fail, or read nothing from an input.
    Error(String),
    /// Worth knowing; `run` works.
    Warning(String),
}

/// Looks at the host as this process's user sees it.
pub fn preflight(cfg: &Config) -> Vec<Finding> {
    let user = user_name();
    let mut found = Vec::new();
    for (name, input) in &cfg.plan.inputs {
        if let Source::Files(tail) = &input.source {
            files(name, tail, &user, &mut found);
        }
    }
    let agent = cfg.agent();
    let held = state_dir(&agent.state_dir, &user, &mut found);
    if let Some(addr) = agent.http_listen {
        match bind_briefly(addr) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => match &held {
                Some(holder) => found.push(Finding::Warning(format!(
                    "http_listen {addr} is in use by the running agent{holder}"
                ))),
                None => found.push(Finding::Error(format!(
                    "http_listen {addr} is in use by another program: run would exit 2; set \
                     [agent] http_listen to a free address, or \"\" to turn /metrics and /health off"
                ))),
            },
            Err(e) => found.push(Finding::Error(format!(
                "cannot listen on http_listen {addr}: {e}; set [agent] http_listen to an address \
                 of this host, or \"\" to turn /metrics and /health off"
            ))),
        }
    }
    found
}

/// Binds `addr` and lets go, asking again a few times: another `check` may hold it a moment.
fn bind_briefly(addr: std::net::SocketAddr) -> std::io::Result<()> {
    let mut tries = 0;
    loop {
        match std::net::TcpListener::bind(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 3 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other.map(|_| ()),
        }
    }
}

fn files(
    input: &str,
    tail: &crate::input::file::TailerConfig,
    user: &str,
    found: &mut Vec<Finding>,
) {
    let Ok(per_glob) = tail.files_per_glob() else {
        return; // the globs were checked at load
    };
    for (glob, paths) in per_glob {
        if paths.is_empty() {
            found.push(Finding::Warning(format!(
                "inputs.{input}: {glob} matches no file yet; run tails what it matches once \
                 a file appears (check the path for a typo)"
            )));
        }
        for path in paths.iter().take(MAX_FILES) {
            if let Err(e) = std::fs::File::open(path) {
                let hint = match (e.kind(), std::fs::metadata(path)) {
                    (std::io::ErrorKind::PermissionDenied, Ok(meta)) => {
                        unreadable_hint(user, &group_name(meta.gid()), meta.mode(), path)
                    }
                    _ => e.to_string(),
                };
                found.push(Finding::Error(format!(
                    "inputs.{input}: cannot read {} as {user}: {hint}",
                    path.display()
                )));
            }
        }
    }
}

/// How a user gets to read a log file it may not read. Pure.
pub fn unreadable_hint(user: &str, group: &str, mode: u32, path: &Path) -> String {
    let path = path.display();
    if mode & 0o040 != 0 {
        format!(
            "permission denied; the file is readable by group {group}: add {user} to it \
             (sudo usermod -aG {group} {user}, then restart the service)"
        )
    } else {
        format!(
            "permission denied; the file is mode {:o}, readable by its owner only: give {user} \
             read access (sudo setfacl -m u:{user}:r {path}; for files rotated in later, a \
             default ACL on the directory or the logger's create mode)",
            mode & 0o777
        )
    }
}

/// Can `run` keep its state there? Returns who holds the directory's lock, if anyone does.
fn state_dir(dir: &Path, user: &str, found: &mut Vec<Finding>) -> Option<String> {
    let fix = "the shipped unit's StateDirectory=dcrship creates /var/lib/dcrship for the service \
               user; another directory needs ReadWritePaths= and to be owned by that user";
    if !dir.exists() {
        let parent = dir.ancestors().skip(1).find(|a| a.exists());
        if parent.is_some_and(|p| !writable(p)) {
            found.push(Finding::Error(format!(
                "state directory {} does not exist and {user} cannot create it; {fix}",
                dir.display()
            )));
        }
        return None;
    }
    let probe = dir.join(".dcrship-check");
    match crate::private_fs::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => found.push(Finding::Error(format!(
            "state directory {} is not writable as {user}: {e}; {fix}",
            dir.display()
        ))),
    }
    match DirLock::acquire(dir) {
        Err(LockError::Held { holder, .. }) => {
            Some(holder.map(|p| format!(" (pid {p})")).unwrap_or_default())
        }
        _ => None,
    }
}

fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access() only reads the NUL-terminated path it is given.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// This process's user name (its uid when the name cannot be had).
fn user_name() -> String {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let mut buf = vec![0u8; 4096];
    // SAFETY: a zeroed passwd is a valid out-parameter; getpwuid_r writes into `buf` only.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || pw.pw_name.is_null() {
        return uid.to_string();
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`.
    unsafe { std::ffi::CStr::from_ptr(pw.pw_name) }
        .to_string_lossy()
        .into_owned()
}

/// The name of group `gid` (its number when the name cannot be had).
fn group_name(gid: u32) -> String {
    let mut buf = vec![0u8; 4096];
    // SAFETY: a zeroed group is a valid out-parameter; getgrgid_r writes into `buf` only.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    let rc =
        unsafe { libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || gr.gr_name.is_null() {
        return gid.to_string();
    }
    // SAFETY: on success gr_name points to a NUL-terminated string inside `buf`.
    unsafe { std::ffi::CStr::from_ptr(gr.gr_name) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_names_the_group_to_join_or_the_acl_to_set() {
        let p = Path::new("/var/log/syslog");
        let group = unreadable_hint("dcrship", "adm", 0o100640, p);
        assert!(group.contains("sudo usermod -aG adm dcrship"), "{group}");
        let owner = unreadable_hint("dcrship", "root", 0o100600, p);
        assert!(
            owner.contains("mode 600") && owner.contains("setfacl -m u:dcrship:r /var/log/syslog"),
            "{owner}"
        );
    }

    #[test]
    fn names_of_this_user_and_group_zero() {
        assert!(!user_name().is_empty());
        assert_eq!(group_name(0), "root");
    }
}
