//! Files and directories only their owner may read: what dcrship keeps holds log data (spool
//! segments, dead-letter rows) and positions in the host's logs, so whatever the umask (a
//! container, a manual run without the unit's `UMask=0077`) it creates directories 0700 and
//! files 0600. An umask can only take permission bits away, so these modes hold under any umask.
//! Directories and files that already exist keep the modes their owner gave them.

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Mode of the directories dcrship creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files dcrship creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and any missing parents, each 0700.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// `OpenOptions` whose `create`/`create_new` makes the file 0600; add the access flags.
pub fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Writes `bytes` as the whole of `path` (created 0600 if new), like `std::fs::write`.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?
        .write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn modes_are_owner_only_whatever_the_umask() {
        let tmp = tempfile::tempdir().expect("tmp");
        // SAFETY: umask only changes this process's creation mask; the test restores it. Tests
        // in this binary that create files meanwhile get at most a tighter mask.
        let old = unsafe { libc::umask(0) };
        let dir = tmp.path().join("a/b");
        let made = create_dir_all(&dir);
        let file = dir.join("f");
        let opened = options().write(true).create_new(true).open(&file);
        unsafe { libc::umask(old) };
        made.expect("mkdir");
        opened.expect("open");
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
    }
}
