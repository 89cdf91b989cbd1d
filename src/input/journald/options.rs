//! What a `type = "journald"` input reads: its options, and the checks they get at load time.
//!
//! The keys live in [`crate::config::InputConfig`] (`units`, `exclude_units`, `priority`,
//! `match`, `since_now`, `journal_directory`); [`JournalOptions::from_input`] gathers them for
//! the reader, and [`check`] says which key is wrong and why (the config check and `run`'s flag
//! mode both call it).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{InputConfig, InputFormat, InputKind, StartAt};
use crate::input::parse::OnMismatch;

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

impl JournalOptions {
    /// The options of `input`; `max_request_bytes` is its output's request cap (an entry may
    /// take [`ENTRY_BYTES_PER_REQUEST_BYTE`] times that as JSON: its values are cut to the
    /// field limit when the row is built).
    pub fn from_input(input: &InputConfig, max_request_bytes: usize) -> Self {
        JournalOptions {
            journalctl: PathBuf::from("journalctl"),
            directory: input.journal_directory.clone(),
            units: input.units.iter().map(|u| unit_name(u)).collect(),
            exclude_units: input.exclude_units.iter().map(|u| unit_name(u)).collect(),
            priority: input.priority,
            matches: input.matches.clone(),
            since_now: input.since_now.unwrap_or(true),
            shape: match input.format {
                InputFormat::Raw => RowShape::Raw,
                _ => RowShape::Syslog,
            },
            max_entry_bytes: max_request_bytes
                .saturating_mul(ENTRY_BYTES_PER_REQUEST_BYTE)
                .max(1 << 20),
        }
    }
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

/// A configuration mistake: the key (under `inputs.NAME`) and what to do.
pub type Mistake = (Vec<String>, String);

fn mistake(key: &[&str], msg: impl Into<String>) -> Mistake {
    (key.iter().map(|k| k.to_string()).collect(), msg.into())
}

/// Journald keys only on journald inputs, and on those only the keys and formats they read.
pub fn check(input: &InputConfig) -> Result<(), Mistake> {
    let journald = input.kind == InputKind::Journald;
    if !journald {
        let set = [
            ("units", !input.units.is_empty()),
            ("exclude_units", !input.exclude_units.is_empty()),
            ("priority", input.priority.is_some()),
            ("match", !input.matches.is_empty()),
            ("since_now", input.since_now.is_some()),
            ("journal_directory", input.journal_directory.is_some()),
        ];
        if let Some((key, _)) = set.iter().find(|(_, s)| *s) {
            return Err(mistake(
                &[key],
                format!("{key} is only read with type = \"journald\""),
            ));
        }
        if input.format == InputFormat::Raw {
            return Err(mistake(
                &["format"],
                "format = \"raw\" is for type = \"journald\" (every journal field a column); \
                 for JSON lines use format = \"json\"",
            ));
        }
        return Ok(());
    }
    let file_only = [
        ("paths", !input.paths.is_empty()),
        ("exclude", !input.exclude.is_empty()),
        ("pattern", input.pattern.is_some()),
        ("multiline", input.multiline.is_some()),
        ("on_mismatch", input.on_mismatch != OnMismatch::Raw),
    ];
    if let Some((key, _)) = file_only.iter().find(|(_, s)| *s) {
        return Err(mistake(
            &[key],
            format!("{key} is not read by a journald input (it reads journal entries, not lines)"),
        ));
    }
    if input.start_at != StartAt::End {
        return Err(mistake(
            &["start_at"],
            "a journald input says where it starts with since_now = false (the whole journal \
             on the first start) or true (the default: from now)",
        ));
    }
    if !matches!(
        input.format,
        InputFormat::Text | InputFormat::Syslog | InputFormat::Raw
    ) {
        return Err(mistake(
            &["format"],
            "a journald input writes the Syslog table's columns (format = \"syslog\", the \
             default) or every journal field (format = \"raw\")",
        ));
    }
    for (key, units) in [
        ("units", &input.units),
        ("exclude_units", &input.exclude_units),
    ] {
        if let Some(bad) = units.iter().find(|u| u.is_empty() || u.contains('/')) {
            return Err(mistake(
                &[key],
                format!("{bad:?} is not a unit name, like \"sshd.service\" or \"nginx\""),
            ));
        }
    }
    for (field, values) in &input.matches {
        check_field_name(field).map_err(|m| mistake(&["match", field], m))?;
        if values.is_empty() {
            return Err(mistake(
                &["match", field],
                "give a value, or a list of values any of which matches",
            ));
        }
    }
    if let Some(dir) = &input.journal_directory {
        if !dir.is_absolute() {
            return Err(mistake(
                &["journal_directory"],
                format!(
                    "{:?} is not an absolute path; write it in full, like \"/var/log/journal\"",
                    dir.display().to_string()
                ),
            ));
        }
    }
    Ok(())
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
