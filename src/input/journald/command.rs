//! The `journalctl` command lines the reader runs. Pure.
//!
//! Following: `journalctl --output=json --all --follow --no-tail` with the filters, and
//! `--after-cursor=C` to resume. `--all` keeps fields over 4096 bytes (journalctl writes them
//! as `null` otherwise); `--no-tail` keeps `--follow` from starting at the last 10 entries,
//! which it does even after a cursor (journalctl 252 prints only the last 10 entries after
//! `--after-cursor` without it: entries would be lost after a long stop).
//!
//! Resuming from a cursor is done in two runs: the entries after it are read first *without*
//! `--follow` (a catch-up that ends at the newest entry), then `--follow` starts after the last
//! of those. journalctl 252, following after a seek, skips the first entry of another journal
//! file of another boot (seen with files written by systemd-journal-remote; without `--follow`
//! it does not), so the seek of the following run is always to the newest entry.
//!
//! The first start with `since_now` asks for the newest entry's cursor first
//! ([`tail_args`]), saves it, and follows after it: what is written from then on is read, even
//! across a restart before the first row was delivered. Without `since_now` (or with an empty
//! journal) following starts at the oldest entry kept.
//!
//! Filters: `units` become `--unit=` (journalctl ORs them, and also matches the messages
//! systemd writes about the unit); `priority` is `--priority=`; `match` fields become
//! `FIELD=VALUE` matches (values of one field ORed, fields ANDed, as journalctl combines them).
//! `exclude_units` has no journalctl form and is applied to the entries read (see
//! [`super::filter::UnitFilter`]).

use std::ffi::OsString;

use super::options::JournalOptions;

/// Where following starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// After the entry with this cursor.
    After(String),
    /// At the oldest entry kept.
    Oldest,
}

/// `journalctl` reading from `start`: with `follow`, on and on; else to the newest entry.
pub fn read_args(o: &JournalOptions, start: &Start, follow: bool) -> Vec<OsString> {
    let fixed: &[&str] = if follow {
        &["--output=json", "--all", "--follow", "--no-tail"]
    } else {
        &["--output=json", "--all", "--no-tail"]
    };
    let mut args: Vec<OsString> = fixed.iter().map(OsString::from).collect();
    push_source(o, &mut args);
    if let Start::After(cursor) = start {
        args.push(format!("--after-cursor={cursor}").into());
    }
    for unit in &o.units {
        args.push(format!("--unit={unit}").into());
    }
    if let Some(p) = o.priority {
        args.push(format!("--priority={}", p.level()).into());
    }
    for (field, values) in &o.matches {
        for v in values {
            args.push(format!("{field}={v}").into());
        }
    }
    args
}

/// `journalctl` asked for the newest entry's cursor only (no filters: any entry's cursor is a
/// place to start from).
pub fn tail_args(o: &JournalOptions) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["--output=json", "--lines=1", "--output-fields=__CURSOR"]
        .iter()
        .map(OsString::from)
        .collect();
    push_source(o, &mut args);
    args
}

fn push_source(o: &JournalOptions, args: &mut Vec<OsString>) {
    if let Some(dir) = &o.directory {
        let mut a = OsString::from("--directory=");
        a.push(dir.as_os_str());
        args.push(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::journald::options::{Priority, RowShape};
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn opts() -> JournalOptions {
        JournalOptions {
            journalctl: PathBuf::from("journalctl"),
            directory: None,
            units: Vec::new(),
            exclude_units: Vec::new(),
            priority: None,
            matches: BTreeMap::new(),
            since_now: true,
            shape: RowShape::Syslog,
            max_entry_bytes: 1 << 20,
        }
    }

    fn strings(v: Vec<OsString>) -> Vec<String> {
        v.into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn follow_command_lines() {
        let base = ["--output=json", "--all", "--follow", "--no-tail"];
        let mut filtered = opts();
        filtered.directory = Some(PathBuf::from("/host/journal"));
        filtered.units = vec!["ssh.service".into(), "cron.service".into()];
        filtered.priority = Some(Priority::Warning);
        filtered.matches = BTreeMap::from([
            ("_TRANSPORT".into(), vec!["kernel".into(), "syslog".into()]),
            ("_UID".into(), vec!["0".into()]),
        ]);
        let cases: Vec<(JournalOptions, Start, Vec<&str>)> = vec![
            (opts(), Start::Oldest, vec![]),
            (
                opts(),
                Start::After("s=1;i=2".into()),
                vec!["--after-cursor=s=1;i=2"],
            ),
            (
                filtered,
                Start::After("c".into()),
                vec![
                    "--directory=/host/journal",
                    "--after-cursor=c",
                    "--unit=ssh.service",
                    "--unit=cron.service",
                    "--priority=4",
                    "_TRANSPORT=kernel",
                    "_TRANSPORT=syslog",
                    "_UID=0",
                ],
            ),
        ];
        for (o, start, extra) in cases {
            let want: Vec<String> = base.iter().chain(&extra).map(|s| s.to_string()).collect();
            assert_eq!(strings(read_args(&o, &start, true)), want, "{start:?}");
        }
        let catch_up = strings(read_args(&opts(), &Start::After("c".into()), false));
        assert_eq!(
            catch_up,
            ["--output=json", "--all", "--no-tail", "--after-cursor=c"]
        );
    }

    #[test]
    fn tail_command_reads_one_cursor_without_filters() {
        let mut o = opts();
        o.units = vec!["a.service".into()];
        o.directory = Some(PathBuf::from("/j"));
        assert_eq!(
            strings(tail_args(&o)),
            [
                "--output=json",
                "--lines=1",
                "--output-fields=__CURSOR",
                "--directory=/j"
            ]
        );
    }
}
