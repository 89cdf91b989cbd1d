//! A journal [`Entry`] → the object the row encoder turns into a row (the same encoder as every
//! other input: the input's `fields`/`rename`/`drop` and the output's declared columns apply).
//!
//! Default (`format = "syslog"`): the columns of Azure's `Syslog` table, so a DCR made for Azure
//! Monitor Agent's syslog collection takes the rows as they are:
//!
//! | column | from |
//! |---|---|
//! | `TimeGenerated` | `__REALTIME_TIMESTAMP` (when journald stored the entry), RFC 3339 UTC |
//! | `EventTime` | `SOURCE_REALTIME_TIMESTAMP` (when the program logged it), else as TimeGenerated |
//! | `Computer`, `HostName` | `_HOSTNAME` (else the agent's host name) |
//! | `Facility` | `SYSLOG_FACILITY` as its name (`daemon`, `auth`, …); kernel entries `kern`, others `user` |
//! | `SeverityLevel` | `PRIORITY` as its name (`emerg` `alert` `crit` `err` `warning` `notice` `info` `debug`); without one `notice` |
//! | `ProcessName` | `SYSLOG_IDENTIFIER`, else `_COMM` |
//! | `ProcessID` | `_PID`, else `SYSLOG_PID` (a number) |
//! | `SyslogMessage` | `MESSAGE` (binary decoded lossily; a repeated one joined by newlines) |
//! | `SystemdUnit` | `_SYSTEMD_UNIT` (not a Syslog table column: see [`JournalRows::new`]) |
//!
//! The defaults for a missing facility and severity are rsyslog's (`imjournal`), which is the
//! way Azure Monitor Agent reads the journal, so the same entry gets the same names.
//!
//! `format = "raw"`: every field is a column, named by [`column_name`] (`_PID` → `PID`,
//! `__REALTIME_TIMESTAMP` → `REALTIME_TIMESTAMP`, the cursor as `CURSOR`), values as text
//! (a repeated field as a list), plus `TimeGenerated` as above.

use std::borrow::Cow;

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::entry::Entry;
use super::options::RowShape;
use crate::input::parse::syslog::{FACILITIES, SEVERITIES};
use crate::transform::columns::MAX_COLUMN_NAME;
use crate::transform::time::rfc3339_utc;

/// The column the entry's unit goes to.
pub const UNIT_COLUMN: &str = "SystemdUnit";

/// The default rows' columns and what fills each (for `dcrship check`'s column report).
pub const SYSLOG_SOURCES: [(&str, &str); 10] = [
    ("TimeGenerated", "journal field __REALTIME_TIMESTAMP"),
    ("EventTime", "journal field SOURCE_REALTIME_TIMESTAMP"),
    ("Computer", "journal field _HOSTNAME"),
    ("HostName", "journal field _HOSTNAME"),
    ("Facility", "journal field SYSLOG_FACILITY, as its name"),
    ("SeverityLevel", "journal field PRIORITY, as its name"),
    ("ProcessName", "journal field SYSLOG_IDENTIFIER or _COMM"),
    ("ProcessID", "journal field _PID"),
    ("SyslogMessage", "journal field MESSAGE"),
    (UNIT_COLUMN, "journal field _SYSTEMD_UNIT"),
];

/// Builds row objects for one input.
#[derive(Debug, Clone)]
pub struct JournalRows {
    shape: RowShape,
    computer: String,
    unit: bool,
}

impl JournalRows {
    /// `unit`: write [`UNIT_COLUMN`]. The pipeline leaves it out when the output declares its
    /// columns without it (the `Syslog` table has no such column), so rows to that table carry
    /// no field the encoder would remove and count on every row.
    pub fn new(shape: RowShape, computer: &str, unit: bool) -> Self {
        JournalRows {
            shape,
            computer: computer.to_string(),
            unit,
        }
    }

    pub fn object(&self, entry: Entry) -> Map<String, Value> {
        match self.shape {
            RowShape::Syslog => self.syslog(&entry),
            RowShape::Raw => raw(entry),
        }
    }

    fn syslog(&self, e: &Entry) -> Map<String, Value> {
        let mut m = Map::with_capacity(11);
        let stored = e.text("__REALTIME_TIMESTAMP").and_then(micros_time);
        if let Some(t) = &stored {
            m.insert("TimeGenerated".into(), t.clone().into());
        }
        let event = e.text("SOURCE_REALTIME_TIMESTAMP").and_then(micros_time);
        if let Some(t) = event.or(stored) {
            m.insert("EventTime".into(), t.into());
        }
        let host = e.text("_HOSTNAME");
        m.insert("Computer".into(), host.unwrap_or(&self.computer).into());
        if let Some(h) = host {
            m.insert("HostName".into(), h.into());
        }
        m.insert("Facility".into(), facility(e).into());
        m.insert("SeverityLevel".into(), severity(e).into());
        if let Some(p) = e.text("SYSLOG_IDENTIFIER").or_else(|| e.text("_COMM")) {
            m.insert("ProcessName".into(), p.into());
        }
        let pid = e.text("_PID").or_else(|| e.text("SYSLOG_PID"));
        if let Some(pid) = pid.and_then(|p| p.trim().parse::<u64>().ok()) {
            m.insert("ProcessID".into(), pid.into());
        }
        m.insert("SyslogMessage".into(), message(e).into());
        if self.unit {
            if let Some(u) = e.text("_SYSTEMD_UNIT") {
                m.insert(UNIT_COLUMN.into(), u.into());
            }
        }
        m
    }
}

/// `SYSLOG_FACILITY`'s name; else `kern` for the kernel's entries and `user` for the rest.
fn facility(e: &Entry) -> &'static str {
    let code = e
        .text("SYSLOG_FACILITY")
        .and_then(|f| f.parse::<usize>().ok());
    match code.and_then(|c| FACILITIES.get(c)) {
        Some(name) => name,
        None if e.text("_TRANSPORT") == Some("kernel") => "kern",
        None => "user",
    }
}

/// `PRIORITY`'s name; `notice` without one.
fn severity(e: &Entry) -> &'static str {
    let level = e.text("PRIORITY").and_then(|p| p.parse::<usize>().ok());
    level
        .and_then(|l| SEVERITIES.get(l))
        .copied()
        .unwrap_or("notice")
}

fn message(e: &Entry) -> String {
    match e.fields.get("MESSAGE") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Microseconds since the epoch (as the journal writes times) → RFC 3339 UTC.
pub fn micros_time(us: &str) -> Option<String> {
    let us: i64 = us.trim().parse().ok()?;
    Timestamp::from_microsecond(us).ok().map(rfc3339_utc)
}

/// `format = "raw"`: the journal's own fields (leading `_`) first, so that a client field of
/// the same name after stripping (`PID` next to `_PID`) is the one renamed (`PID_2`).
fn raw(entry: Entry) -> Map<String, Value> {
    let mut m = Map::with_capacity(entry.fields.len() + 2);
    if let Some(t) = entry.text("__REALTIME_TIMESTAMP").and_then(micros_time) {
        m.insert("TimeGenerated".into(), t.into());
    }
    if let Some(c) = entry.cursor {
        m.insert("CURSOR".into(), c.into());
    }
    let (trusted, client): (Vec<_>, Vec<_>) = entry
        .fields
        .into_iter()
        .partition(|(k, _)| k.starts_with('_'));
    for (k, v) in trusted.into_iter().chain(client) {
        let name = column_name(&k).into_owned();
        let name = if m.contains_key(&name) {
            unique(&m, &name)
        } else {
            name
        };
        m.insert(name, v);
    }
    m
}

/// `NAME_2`, `NAME_3`, … whichever is free.
fn unique(m: &Map<String, Value>, name: &str) -> String {
    (2..)
        .map(|n| {
            let suffix = format!("_{n}");
            let keep = name.len().min(MAX_COLUMN_NAME - suffix.len());
            format!("{}{suffix}", &name[..keep])
        })
        .find(|n| !m.contains_key(n))
        .unwrap_or_else(|| name.to_string())
}

/// A journal field name → a valid Azure column name: leading `_` stripped (`_PID` → `PID`,
/// `__MONOTONIC_TIMESTAMP` → `MONOTONIC_TIMESTAMP`); a name that would then not start with a
/// letter gets `F` in front; other characters than letters, digits and `_` become `_`; cut to
/// 45 characters. Journald's names (upper-case letters, digits, `_`) only ever need the first
/// step and the cut.
pub fn column_name(field: &str) -> Cow<'_, str> {
    let stripped = field.trim_start_matches('_');
    let valid_chars = stripped
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let starts_ok = stripped
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic());
    if valid_chars && starts_ok && stripped.len() <= MAX_COLUMN_NAME {
        return Cow::Borrowed(stripped);
    }
    let mut name = String::with_capacity(stripped.len() + 1);
    if !starts_ok {
        name.push('F');
    }
    name.extend(stripped.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    name.truncate(MAX_COLUMN_NAME);
    Cow::Owned(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::journald::entry::parse;
    use crate::transform::columns::validate_column_name;
    use serde_json::json;

    fn syslog_row(line: &str) -> Value {
        let rows = JournalRows::new(RowShape::Syslog, "agent-host", true);
        Value::Object(rows.object(parse(line.as_bytes()).expect("entry")))
    }

    #[test]
    fn syslog_columns_from_journal_fields() {
        let cases = [
            (
                r#"{"__REALTIME_TIMESTAMP":"1767261600123456","_HOSTNAME":"vm1","SYSLOG_FACILITY":"4",
                   "PRIORITY":"3","SYSLOG_IDENTIFIER":"sshd","_COMM":"sshd-session","_PID":"812",
                   "MESSAGE":"Failed password","_SYSTEMD_UNIT":"ssh.service","__CURSOR":"c"}"#,
                json!({"TimeGenerated":"2026-01-01T10:00:00.123456Z",
                       "EventTime":"2026-01-01T10:00:00.123456Z","Computer":"vm1","HostName":"vm1",
                       "Facility":"auth","SeverityLevel":"err","ProcessName":"sshd",
                       "ProcessID":812,"SyslogMessage":"Failed password","SystemdUnit":"ssh.service"}),
            ),
            // kernel: no facility field, no pid; the source time is the event time
            (
                r#"{"__REALTIME_TIMESTAMP":"1767261600000000","SOURCE_REALTIME_TIMESTAMP":"1767261599000001",
                   "_TRANSPORT":"kernel","PRIORITY":"6","SYSLOG_IDENTIFIER":"kernel","MESSAGE":"eth0: link up"}"#,
                json!({"TimeGenerated":"2026-01-01T10:00:00.000000Z",
                       "EventTime":"2026-01-01T09:59:59.000001Z","Computer":"agent-host",
                       "Facility":"kern","SeverityLevel":"info","ProcessName":"kernel",
                       "SyslogMessage":"eth0: link up"}),
            ),
            // a program's stdout: no facility, no priority; _COMM names it; binary message
            (
                r#"{"_COMM":"app","SYSLOG_PID":"9","MESSAGE":[104,105,255],"SYSLOG_FACILITY":"99"}"#,
                json!({"Computer":"agent-host","Facility":"user","SeverityLevel":"notice",
                       "ProcessName":"app","ProcessID":9,"SyslogMessage":"hi\u{fffd}"}),
            ),
            // a repeated MESSAGE is joined; no MESSAGE is an empty message
            (
                r#"{"MESSAGE":["a","b"],"PRIORITY":"7","SYSLOG_FACILITY":"23"}"#,
                json!({"Computer":"agent-host","Facility":"local7","SeverityLevel":"debug",
                       "SyslogMessage":"a\nb"}),
            ),
            (
                r#"{"PRIORITY":"x","_PID":"12a"}"#,
                json!({"Computer":"agent-host","Facility":"user","SeverityLevel":"notice",
                       "SyslogMessage":""}),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(syslog_row(line), want, "{line}");
        }
    }

    #[test]
    fn the_unit_column_can_be_left_out() {
        let rows = JournalRows::new(RowShape::Syslog, "h", false);
        let e = parse(br#"{"_SYSTEMD_UNIT":"a.service"}"#).expect("entry");
        assert!(!rows.object(e).contains_key(UNIT_COLUMN));
    }

    #[test]
    fn raw_keeps_every_field_under_valid_names() {
        let rows = JournalRows::new(RowShape::Raw, "h", true);
        let e = parse(
            br#"{"__REALTIME_TIMESTAMP":"1767261600000000","_PID":"1","PID":"client","MESSAGE":"m",
                 "REP":["1","2"],"__CURSOR":"s=x;i=1"}"#,
        )
        .expect("entry");
        let got = Value::Object(rows.object(e));
        assert_eq!(
            got,
            json!({"TimeGenerated":"2026-01-01T10:00:00.000000Z","CURSOR":"s=x;i=1",
                   "REALTIME_TIMESTAMP":"1767261600000000","PID":"1","PID_2":"client",
                   "MESSAGE":"m","REP":["1","2"]})
        );
    }

    #[test]
    fn column_names_are_valid_azure_names() {
        for (field, want) in [
            ("_PID", "PID"),
            ("__REALTIME_TIMESTAMP", "REALTIME_TIMESTAMP"),
            ("MESSAGE", "MESSAGE"),
            ("_1X", "F1X"),
            ("___", "F"),
            ("A-B.c", "A_B_c"),
        ] {
            assert_eq!(column_name(field), want, "{field}");
        }
        let long = format!("_{}", "A".repeat(64));
        assert_eq!(column_name(&long).len(), MAX_COLUMN_NAME);
        for f in ["_PID", "___", "A-B.c", &long, "_1X", "_SYSTEMD_USER_UNIT"] {
            assert!(validate_column_name(&column_name(f)).is_ok(), "{f}");
        }
        let mut m = Map::new();
        m.insert("A".repeat(MAX_COLUMN_NAME), Value::Null);
        let u = unique(&m, &"A".repeat(MAX_COLUMN_NAME));
        assert!(u.len() == MAX_COLUMN_NAME && u.ends_with("_2"), "{u}");
    }

    #[test]
    fn times_are_read_as_microseconds() {
        assert_eq!(
            micros_time("1767261600123456").as_deref(),
            Some("2026-01-01T10:00:00.123456Z")
        );
        assert_eq!(micros_time("x"), None);
        assert_eq!(micros_time("99999999999999999999"), None);
    }
}
