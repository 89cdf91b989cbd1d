//! `format = "syslog"`: RFC 3164 and RFC 5424 lines → the columns of Azure's `Syslog` table, so
//! rows fit the `Microsoft-Syslog` stream as they are, or a custom table with the same columns.
//!
//! | column | from | type |
//! |---|---|---|
//! | `Facility` | PRI, as its name (`auth`, `daemon`, `local0`, …) | string |
//! | `SeverityLevel` | PRI, as its name (`emerg` … `debug`, e.g. `info`, `err`) | string |
//! | `HostName` | the HOSTNAME field | string |
//! | `ProcessName` | the tag / APP-NAME (`sshd`) | string |
//! | `ProcessID` | `[pid]` / PROCID: a number when it is digits, else the text | int |
//! | `SyslogMessage` | the message | string |
//! | `EventTime`, `TimeGenerated` | the line's timestamp, as RFC 3339 UTC | datetime |
//! | `MsgId`, `StructuredData` | RFC 5424 MSGID and STRUCTURED-DATA (as written) | string |
//!
//! Lines without PRI (files written by rsyslog or syslog-ng: `Nov 23 10:00:01 vm1 sshd[1234]:
//! …`) have no `Facility` or `SeverityLevel`. A field that is absent, or RFC 5424's `-`, is left
//! out of the row.
//!
//! Times: an RFC 5424 timestamp, or the RFC 3339 one rsyslog writes by default on recent
//! distributions (`2025-11-23T10:00:01.123456+00:00 vm1 …`), is exact. An RFC 3164 timestamp
//! (`Nov 23 10:00:01`) has no year and no zone: it is read in the system time zone (the one the
//! syslog daemon wrote it in) and given the year that puts it at most a day after now — so a
//! December line read in January falls in the previous year.
//!
//! The format is told per line: `<PRI>1 ` starts RFC 5424; anything else is read as RFC 3164.
//! A line with neither shape (no timestamp where one must be) does not match.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};

use crate::transform::time::rfc3339_utc;

/// Facility names by code, as the Syslog table writes them (also read by the journald input).
pub const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// Severity names by level, as the Syslog table writes them (also read by the journald input).
pub const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Reads syslog lines; holds the time zone RFC 3164 timestamps are read in.
#[derive(Debug, Clone)]
pub struct SyslogParser {
    tz: TimeZone,
}

impl Default for SyslogParser {
    fn default() -> Self {
        SyslogParser::new(TimeZone::system())
    }
}

impl SyslogParser {
    pub fn new(tz: TimeZone) -> Self {
        SyslogParser { tz }
    }

    /// The columns of one line, or `None` when it is not syslog.
    pub fn parse(&self, line: &str) -> Option<Map<String, Value>> {
        self.parse_with(line, &Timestamp::now)
    }

    /// [`SyslogParser::parse`] with the clock given: `now` places an RFC 3164 timestamp in its
    /// year (and is only read for those).
    pub fn parse_with(
        &self,
        line: &str,
        now: &dyn Fn() -> Timestamp,
    ) -> Option<Map<String, Value>> {
        // At most the nine columns a line can have: one allocation for the map.
        let mut map = Map::with_capacity(9);
        let rest = match line.strip_prefix('<') {
            Some(after) => {
                let (pri, rest) = pri(after)?;
                map.insert("Facility".into(), FACILITIES[(pri >> 3) as usize].into());
                map.insert(
                    "SeverityLevel".into(),
                    SEVERITIES[(pri & 7) as usize].into(),
                );
                rest
            }
            None => line,
        };
        match rest.strip_prefix("1 ") {
            Some(rest) => rfc5424(rest, &mut map)?,
            None => self.rfc3164(rest, now, &mut map)?,
        }
        Some(map)
    }

    fn rfc3164(
        &self,
        line: &str,
        now: &dyn Fn() -> Timestamp,
        map: &mut Map<String, Value>,
    ) -> Option<()> {
        let (time, rest) = match bsd_time(line) {
            Some((dt, rest)) => (self.place_in_year(dt, now())?, rest),
            None => {
                let (word, rest) = split_word(line);
                (word.parse::<Timestamp>().ok()?, rest)
            }
        };
        put_time(map, time);
        let rest = rest.trim_start_matches(' ');
        let (host, after_host) = split_word(rest);
        // No hostname when the word after the time is already the tag (`su: …`), as some
        // senders write over the network.
        let rest = if host.is_empty() || host.ends_with(':') || host.contains('[') {
            rest
        } else {
            map.insert("HostName".into(), host.into());
            after_host
        };
        let (word, msg) = split_word(rest);
        let message = match word.strip_suffix(':') {
            Some(tag) if !tag.is_empty() => {
                let (name, pid) = match tag.strip_suffix(']').and_then(|t| t.split_once('[')) {
                    Some((name, pid)) => (name, Some(pid)),
                    None => (tag, None),
                };
                if !name.is_empty() {
                    map.insert("ProcessName".into(), name.into());
                }
                if let Some(pid) = pid.filter(|p| !p.is_empty()) {
                    map.insert("ProcessID".into(), process_id(pid));
                }
                msg
            }
            _ => rest,
        };
        map.insert("SyslogMessage".into(), message.into());
        Some(())
    }

    /// A year-less local time → the instant in the year that puts it at most a day after `now`.
    fn place_in_year(&self, (month, day, h, m, s): Bsd, now: Timestamp) -> Option<Timestamp> {
        let year = self.tz.to_datetime(now).year();
        let latest = now.checked_add(SignedDuration::from_hours(24)).ok()?;
        // Feb 29 may only exist in one of the two years.
        [year, year - 1].into_iter().find_map(|y| {
            let dt = DateTime::new(y, month, day, h, m, s, 0).ok()?;
            let ts = self.tz.to_ambiguous_timestamp(dt).compatible().ok()?;
            (ts <= latest).then_some(ts)
        })
    }
}

/// `PRI>` (after the `<`): the priority (0–191) and what follows.
fn pri(s: &str) -> Option<(u8, &str)> {
    let end = s.as_bytes().iter().take(4).position(|&b| b == b'>')?;
    let digits = &s[..end];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pri: u8 = digits.parse().ok().filter(|p| *p <= 191)?;
    Some((pri, &s[end + 1..]))
}

/// The word up to the next space, and what follows that space.
fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(' ') {
        Some((word, rest)) => (word, rest),
        None => (s, ""),
    }
}

fn process_id(pid: &str) -> Value {
    match pid.parse::<u64>() {
        Ok(n) => Value::from(n),
        Err(_) => Value::from(pid),
    }
}

fn put_time(map: &mut Map<String, Value>, ts: Timestamp) {
    let text = rfc3339_utc(ts);
    map.insert("EventTime".into(), Value::String(text.clone()));
    map.insert("TimeGenerated".into(), Value::String(text));
}

/// Month, day, hour, minute, second.
type Bsd = (i8, i8, i8, i8, i8);

/// `Mmm dd hh:mm:ss ` (day space- or zero-padded, or one digit) and what follows.
fn bsd_time(s: &str) -> Option<(Bsd, &str)> {
    let b = s.as_bytes();
    let month = MONTHS.iter().position(|m| b.get(..3) == Some(&m[..]))? as i8 + 1;
    let mut i = 3;
    if b.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    if b.get(i) == Some(&b' ') {
        i += 1;
    }
    let (day, next) = number(b, i, 2)?;
    i = next;
    if b.get(i) != Some(&b' ') {
        return None;
    }
    let (h, next) = number(b, i + 1, 2)?;
    let (m, next) = colon_number(b, next)?;
    let (sec, next) = colon_number(b, next)?;
    // Some writers add fractions (`10:00:01.123`); they are dropped.
    let mut i = next;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    let rest = match b.get(i) {
        None => "",
        Some(b' ') => &s[i + 1..],
        Some(_) => return None,
    };
    Some(((month, day, h, m, sec), rest))
}

/// One or `max` ASCII digits at `i`.
fn number(b: &[u8], i: usize, max: usize) -> Option<(i8, usize)> {
    let mut n: i8 = 0;
    let mut j = i;
    while j < i + max && b.get(j).is_some_and(u8::is_ascii_digit) {
        n = n * 10 + (b[j] - b'0') as i8;
        j += 1;
    }
    (j > i).then_some((n, j))
}

fn colon_number(b: &[u8], i: usize) -> Option<(i8, usize)> {
    if b.get(i) != Some(&b':') {
        return None;
    }
    let (n, j) = number(b, i + 1, 2)?;
    (j == i + 3).then_some((n, j))
}

/// After `<PRI>1 `: `TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`.
fn rfc5424(s: &str, map: &mut Map<String, Value>) -> Option<()> {
    let mut rest = s;
    let mut fields = [""; 5];
    for f in &mut fields {
        let (word, after) = rest.split_once(' ')?;
        if word.is_empty() {
            return None;
        }
        *f = word;
        rest = after;
    }
    let [time, host, app, procid, msgid] = fields;
    if time != "-" {
        put_time(map, time.parse::<Timestamp>().ok()?);
    }
    for (key, value) in [("HostName", host), ("ProcessName", app), ("MsgId", msgid)] {
        if value != "-" {
            map.insert(key.into(), value.into());
        }
    }
    if procid != "-" {
        map.insert("ProcessID".into(), process_id(procid));
    }
    let (sd, msg) = structured_data(rest)?;
    if sd != "-" {
        map.insert("StructuredData".into(), sd.into());
    }
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    map.insert("SyslogMessage".into(), msg.into());
    Some(())
}

/// `-` or `[id k="v" …][…]`, then an optional ` MSG`: the structured data as written and the
/// message.
fn structured_data(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let end = if b.first() == Some(&b'-') {
        1
    } else {
        let mut i = 0;
        while b.get(i) == Some(&b'[') {
            i += 1;
            let mut quoted = false;
            loop {
                match *b.get(i)? {
                    b'\\' if quoted => i += 1,
                    b'"' => quoted = !quoted,
                    b']' if !quoted => break,
                    _ => {}
                }
                i += 1;
            }
            i += 1;
        }
        if i == 0 {
            return None;
        }
        i
    };
    match b.get(end) {
        None => Some((s, "")),
        Some(b' ') => Some((&s[..end], &s[end + 1..])),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2025-11-23T12:00:00Z".parse().expect("ts")
    }

    fn parse(line: &str) -> Option<Value> {
        SyslogParser::new(TimeZone::UTC)
            .parse_with(line, &now)
            .map(Value::Object)
    }

    #[test]
    fn rfc3164_lines() {
        let t = "2025-11-23T10:00:01.000000Z";
        let cases: Vec<(&str, Option<Value>)> = vec![
            (
                "Nov 23 10:00:01 vm1 sshd[1234]: Accepted publickey for azureuser",
                Some(
                    json!({"EventTime": t, "TimeGenerated": t, "HostName": "vm1",
                    "ProcessName": "sshd", "ProcessID": 1234,
                    "SyslogMessage": "Accepted publickey for azureuser"}),
                ),
            ),
            (
                "<38>Nov 23 10:00:01 vm1 CRON[77]: (root) CMD (run-parts)",
                Some(
                    json!({"Facility": "auth", "SeverityLevel": "info", "EventTime": t,
                    "TimeGenerated": t, "HostName": "vm1", "ProcessName": "CRON",
                    "ProcessID": 77, "SyslogMessage": "(root) CMD (run-parts)"}),
                ),
            ),
            (
                "<0>Nov  3 10:00:01 vm1 kernel: [    1.5] Booting",
                Some(json!({"Facility": "kern", "SeverityLevel": "emerg",
                    "EventTime": "2025-11-03T10:00:01.000000Z",
                    "TimeGenerated": "2025-11-03T10:00:01.000000Z", "HostName": "vm1",
                    "ProcessName": "kernel", "SyslogMessage": "[    1.5] Booting"})),
            ),
            // no tag: the whole rest is the message
            (
                "<191>Nov 23 10:00:01 vm1 free text here",
                Some(
                    json!({"Facility": "local7", "SeverityLevel": "debug", "EventTime": t,
                    "TimeGenerated": t, "HostName": "vm1", "SyslogMessage": "free text here"}),
                ),
            ),
            // no hostname, as some network senders write
            (
                "<34>Nov 23 10:00:01 su: 'su root' failed",
                Some(
                    json!({"Facility": "auth", "SeverityLevel": "crit", "EventTime": t,
                    "TimeGenerated": t, "ProcessName": "su",
                    "SyslogMessage": "'su root' failed"}),
                ),
            ),
            (
                "Nov 23 10:00:01 vm1 postfix/smtpd[9]:",
                Some(
                    json!({"EventTime": t, "TimeGenerated": t, "HostName": "vm1",
                    "ProcessName": "postfix/smtpd", "ProcessID": 9, "SyslogMessage": ""}),
                ),
            ),
            // rsyslog's default on recent distributions: an RFC 3339 timestamp
            (
                "2025-11-23T10:00:01.250000+01:00 vm1 systemd[1]: Started x.",
                Some(json!({"EventTime": "2025-11-23T09:00:01.250000Z",
                    "TimeGenerated": "2025-11-23T09:00:01.250000Z", "HostName": "vm1",
                    "ProcessName": "systemd", "ProcessID": 1, "SyslogMessage": "Started x."})),
            ),
            // fractions after a BSD time are dropped
            (
                "Nov 23 10:00:01.123 h app: m",
                Some(json!({"EventTime": t, "TimeGenerated": t, "HostName": "h",
                    "ProcessName": "app", "SyslogMessage": "m"})),
            ),
            ("not syslog at all", None),
            ("<13>garbage", None),
            ("<999>Nov 23 10:00:01 h a: m", None),
            ("<1x>Nov 23 10:00:01 h a: m", None),
            ("Nov 23 25:00:01 h a: m", None),
            ("Nov 31 10:00:01 h a: m", None),
            ("Nov 23 10:00 h a: m", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), want, "{line:?}");
        }
    }

    #[test]
    fn rfc3164_years_are_placed_at_most_a_day_ahead() {
        let p = SyslogParser::new(TimeZone::UTC);
        let jan: Timestamp = "2026-01-01T00:30:00Z".parse().expect("ts");
        let got = p
            .parse_with("Dec 31 23:59:59 h a: m", &|| jan)
            .expect("row");
        assert_eq!(got["EventTime"], json!("2025-12-31T23:59:59.000000Z"));
        let got = p
            .parse_with("Jan  1 10:00:00 h a: m", &|| jan)
            .expect("row");
        assert_eq!(got["EventTime"], json!("2026-01-01T10:00:00.000000Z"));
        // Feb 29 only exists in the leap year before
        let mar: Timestamp = "2025-03-01T00:00:00Z".parse().expect("ts");
        let got = p
            .parse_with("Feb 29 10:00:00 h a: m", &|| mar)
            .expect("row");
        assert_eq!(got["EventTime"], json!("2024-02-29T10:00:00.000000Z"));
        // read in the given zone
        let berlin = TimeZone::get("Europe/Berlin").expect("tzdb");
        let got = SyslogParser::new(berlin)
            .parse_with("Nov 23 10:00:01 h a: m", &now)
            .expect("row");
        assert_eq!(got["EventTime"], json!("2025-11-23T09:00:01.000000Z"));
    }

    #[test]
    fn rfc5424_lines() {
        let t = "2003-10-11T22:14:15.003000Z";
        let cases: Vec<(&str, Option<Value>)> = vec![
            (
                "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \u{feff}'su root' failed",
                Some(json!({"Facility": "auth", "SeverityLevel": "crit", "EventTime": t,
                    "TimeGenerated": t, "HostName": "mymachine.example.com",
                    "ProcessName": "su", "MsgId": "ID47",
                    "SyslogMessage": "'su root' failed"})),
            ),
            (
                r#"<165>1 2003-10-11T22:14:15.003Z host evntslog 8710 - [exampleSDID@32473 iut="3" eventID="1011" note="a \"q\" ] x"][b@1 c="d"] An application event"#,
                Some(json!({"Facility": "local4", "SeverityLevel": "notice", "EventTime": t,
                    "TimeGenerated": t, "HostName": "host", "ProcessName": "evntslog",
                    "ProcessID": 8710,
                    "StructuredData": r#"[exampleSDID@32473 iut="3" eventID="1011" note="a \"q\" ] x"][b@1 c="d"]"#,
                    "SyslogMessage": "An application event"})),
            ),
            // every field NIL, no message
            (
                "<13>1 - - - - - -",
                Some(json!({"Facility": "user", "SeverityLevel": "notice", "SyslogMessage": ""})),
            ),
            (
                "<13>1 - h app proc-x - - m",
                Some(json!({"Facility": "user", "SeverityLevel": "notice", "HostName": "h",
                    "ProcessName": "app", "ProcessID": "proc-x", "SyslogMessage": "m"})),
            ),
            ("<13>1 yesterday h a - - - m", None),
            ("<13>1 - h a - -", None),
            ("<13>1 - h a - - [unterminated", None),
            ("<13>1 - h a - - [a]x", None),
            ("<13>1 - h a - - x", None),
            ("<13>1 -  a - - - m", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), want, "{line:?}");
        }
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panic(text in any::<String>()) {
            let _ = parse(&text);
        }

        #[test]
        fn syslog_shaped_text_parses_without_panic(
            pri in 0u16..300,
            month in 0usize..12,
            rest in "[ -~]{0,40}",
            five in any::<bool>(),
        ) {
            let line = if five {
                format!("<{pri}>1 {rest}")
            } else {
                format!("<{pri}>{} {rest}", String::from_utf8_lossy(MONTHS[month]))
            };
            let _ = parse(&line);
        }
    }
}
