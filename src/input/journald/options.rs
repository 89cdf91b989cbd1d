//! What a `type = "journald"` input reads: its options, and the checks they get at load time.
//!
//! The configuration's keys (`units`, `exclude_units`, `priority`, `match`, `since_now`,
//! `journal_directory`) are checked and gathered into [`JournalOptions`] by `config`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The journal's (and syslog's) levels, most severe first: `priority = "warning"` reads
/// `emerg` … `warning`, as `journalctl -p warning` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Emerg,
    Alert,
    Crit,
    Err,
    Warning,
    Notice,
    Info,
    Debug,
}

impl Priority {
    /// The level's number (0 = emerg … 7 = debug), as `PRIORITY=` holds it.
    pub fn level(self) -> u8 {
        self as u8
    }
}

/// The columns of a journal row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowShape {
    /// The columns of Azure's `Syslog` table (the default).
    Syslog,
    /// Every journal field, under a valid column name.
    Raw,
}

/// One journald input's reading options.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalOptions {
    /// The `journalctl` program (found on `PATH` when it has no `/`).
    pub journalctl: PathBuf,
    pub directory: Option<PathBuf>,
    /// Unit names as journalctl reads them (`sshd` is `sshd.service`); empty = every unit.
    pub units: Vec<String>,
    pub exclude_units: Vec<String>,
    pub priority: Option<Priority>,
    /// FIELD → accepted values: values of one field are alternatives, fields all must hold.
    pub matches: BTreeMap<String, Vec<String>>,
    /// First start (no saved cursor): from now, or from the oldest entry kept.
    pub since_now: bool,
    pub shape: RowShape,
    /// A journal entry's JSON longer than this is dropped (counted, logged).
    pub max_entry_bytes: usize,
}

/// `journalctl -o json` prints a binary field as an array of byte numbers, up to four bytes of
/// text per byte: an entry with a 1 MB binary message takes some 4 MB.
pub const ENTRY_BYTES_PER_REQUEST_BYTE: usize = 8;

/// The longest entry read for an output whose request cap is `max_request_bytes` (its values
/// are cut to the field limit when the row is built).
pub fn max_entry_bytes(max_request_bytes: usize) -> usize {
    max_request_bytes
        .saturating_mul(ENTRY_BYTES_PER_REQUEST_BYTE)
        .max(1 << 20)
}

/// A unit name as `journalctl -u` reads it: a name without a type suffix is a service
/// (`sshd` → `sshd.service`), so `exclude_units` means what `units` would.
pub fn unit_name(u: &str) -> String {
    const TYPES: [&str; 11] = [
        ".service",
        ".socket",
        ".target",
        ".device",
        ".mount",
        ".automount",
        ".swap",
        ".timer",
        ".path",
        ".slice",
        ".scope",
    ];
    if TYPES.iter().any(|t| u.ends_with(t)) {
        u.to_string()
    } else {
        format!("{u}.service")
    }
}

/// A journal field name as journald accepts it: upper-case letters, digits and `_`, not
/// starting with a digit, at most 64 characters.
pub fn check_field_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    let first_ok = name.bytes().next().is_some_and(|b| !b.is_ascii_digit());
    if ok_chars && first_ok && name.len() <= 64 {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a journal field name (upper-case letters, digits and _, not \
             starting with a digit, like _SYSTEMD_UNIT or SYSLOG_IDENTIFIER)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_get_service_when_they_have_no_type() {
        for (given, want) in [
            ("sshd", "sshd.service"),
            ("sshd.service", "sshd.service"),
            ("docker.socket", "docker.socket"),
            ("user@1000.service", "user@1000.service"),
            ("getty@*", "getty@*.service"),
            ("my.app", "my.app.service"),
        ] {
            assert_eq!(unit_name(given), want, "{given}");
        }
    }

    #[test]
    fn field_names_follow_journald() {
        for ok in [
            "_SYSTEMD_UNIT",
            "MESSAGE",
            "SYSLOG_IDENTIFIER",
            "CODE_LINE",
            "_PID",
        ] {
            assert!(check_field_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "message", "1ABC", "A-B", "A B", &"A".repeat(65)] {
            assert!(check_field_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn priorities_are_ordered_by_severity() {
        assert_eq!(Priority::Emerg.level(), 0);
        assert_eq!(Priority::Warning.level(), 4);
        assert_eq!(Priority::Debug.level(), 7);
        assert!(Priority::Err < Priority::Info);
    }
}
