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

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::transform::time::{place_in_year, rfc3339_utc};

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
        let line = line.trim_start_matches([' ', '\t']);
        let rest = match line.strip_prefix('<') {
            Some(after) => {
                let (pri, rest) = pri(after)?;
                map.insert("Facility".into(), FACILITIES[(pri >> 3) as usize].into());
                map.insert(
                    "SeverityLevel".into(),
                    SEVERITIES[(pri & 7) as usize].into(),
                );
                rest.trim_start_matches(' ')
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
            Some((bsd, rest)) => (self.bsd_instant(bsd, now)?, rest),
            None => {
                let (word, rest) = split_word(line);
                (word.parse::<Timestamp>().ok()?, rest)
            }
        };
        put_time(map, time);
        let rest = rest.trim_start_matches(' ');
        let (host, after_host) = split_word(rest);
        // No hostname when the word after the time is already the tag (`su: …`, `app[42]: …`),
        // as some senders write over the network.
        let rest = if host.is_empty() || host.ends_with(':') || host.contains('[') {
            rest
        } else {
            map.insert("HostName".into(), host.into());
            after_host
        };
        let message = match tag(rest) {
            Some(Tag { name, pid, message }) => {
                if !name.is_empty() {
                    map.insert("ProcessName".into(), name.into());
                }
                if let Some(pid) = pid {
                    map.insert("ProcessID".into(), process_id(pid));
                }
                message
            }
            None => rest,
        };
        map.insert("SyslogMessage".into(), message.into());
        Some(())
    }

    /// A BSD timestamp → its instant: in the year written, else in the one [`place_in_year`]
    /// picks, read in the parser's zone.
    fn bsd_instant(&self, b: Bsd, now: &dyn Fn() -> Timestamp) -> Option<Timestamp> {
        match b.year {
            Some(year) => {
                let dt = Date::new(year, b.month, b.day).ok()?.to_datetime(b.time);
                self.tz.to_ambiguous_timestamp(dt).compatible().ok()
            }
            None => place_in_year(b.month, b.day, b.time, now(), &self.tz),
        }
    }
}

/// The tag of an RFC 3164 line, split: `name[pid]: message`.
#[derive(Debug, PartialEq, Eq)]
struct Tag<'a> {
    name: &'a str,
    pid: Option<&'a str>,
    message: &'a str,
}

/// The longest program name with spaces read before a `[pid]` (macOS: `Microsoft Word[42]:`).
const MAX_SPACED_NAME: usize = 64;

/// Reads the tag at the start of `s`, as rsyslog and syslog-ng do: the program name ends at `[`,
/// `:` or a space (RFC 3164 §4.1.3 lets a space end it); `[pid]` and the `:` are optional, and so
/// is the space after the colon (`root[8539]:msg`). A name with spaces is taken only before a
/// `[pid]` (`Google Chrome Helper[123]: …`); macOS's `proc[pid] (context):` gives the name and
/// pid, and the context is not kept. `None` when `s` does not start with a name (no letter or
/// digit in it): then all of `s` is the message.
fn tag(s: &str) -> Option<Tag<'_>> {
    let b = s.as_bytes();
    if b.first() == Some(&b' ') {
        return None;
    }
    // A `:` inside parentheses is part of the name (`audit(1131538222.234:0):`).
    let mut depth = 0usize;
    let end = b
        .iter()
        .position(|&c| {
            match c {
                b'(' => depth += 1,
                b')' => depth = depth.saturating_sub(1),
                _ => {}
            }
            matches!(c, b'[' | b' ') || (c == b':' && depth == 0)
        })
        .unwrap_or(b.len());
    // A spaced name: up to a `[` that comes before any `:`.
    let name_end = match b.get(end) {
        Some(b' ') => b[..b.len().min(MAX_SPACED_NAME)]
            .iter()
            .position(|&c| matches!(c, b'[' | b':'))
            .filter(|&i| b[i] == b'[' && b[i - 1] != b' ')
            .filter(|&i| pid_part(&s[i..]).is_some())
            .unwrap_or(end),
        _ => end,
    };
    let name = &s[..name_end];
    let after = &s[name_end..];
    let (pid, after) = match pid_part(after) {
        Some((pid, rest)) => (Some(pid).filter(|p| !p.is_empty() && *p != "-"), rest),
        None if after.starts_with('[') => return None, // `x[` that is no pid: not a tag
        None => (None, after),
    };
    // A name has a letter or digit (`-` or `[42]` are no names); an empty one only before `:`.
    let named = name.bytes().any(|c| c.is_ascii_alphanumeric());
    if !(named || name.is_empty() && after.starts_with(':')) {
        return None;
    }
    // `name: msg`, `name:msg`, and the kernel's `scsi0 : msg`
    let after = after
        .strip_prefix(':')
        .or_else(|| after.strip_prefix(" :"))
        .unwrap_or(after);
    let message = after.strip_prefix(' ').unwrap_or(after);
    Some(Tag { name, pid, message })
}

/// `[pid]` at the start of `s`, then the macOS ` (context)` if there is one: the pid and what
/// follows (a `:`, a space or the end; anything else is no pid).
fn pid_part(s: &str) -> Option<(&str, &str)> {
    let inner = s.strip_prefix('[')?;
    let close = inner.find(']')?;
    let (pid, rest) = (&inner[..close], &inner[close + 1..]);
    if pid.contains(' ') {
        return None;
    }
    let rest = match rest.strip_prefix(" (") {
        Some(ctx) => match ctx.find("):") {
            Some(i) if !ctx[..i].contains(' ') => &ctx[i + 1..],
            _ => rest,
        },
        None => rest,
    };
    matches!(rest.as_bytes().first(), None | Some(b':' | b' ')).then_some((pid, rest))
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

/// A BSD timestamp: month, day, the year when one is written, and the time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bsd {
    month: i8,
    day: i8,
    year: Option<i16>,
    time: Time,
}

/// `Mmm dd [yyyy ]hh:mm:ss[.fff][:] ` and what follows. The month in any case (`OCT`), the day
/// space- or zero-padded or one digit, a year inside (`Mar  7 2008 19:06:53`, as Cisco and some
/// appliances write), a fraction (kept), and a colon after the time (Cisco's
/// `May 21 2008 10:50:11: %FWSM…`).
fn bsd_time(s: &str) -> Option<(Bsd, &str)> {
    let b = s.as_bytes();
    let head = b.get(..3)?;
    let month = MONTHS
        .iter()
        .position(|m| head.eq_ignore_ascii_case(&m[..]))? as i8
        + 1;
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
    i += 1;
    let mut year = None;
    if b.get(i + 4) == Some(&b' ') {
        if let Some((y, next)) = number(b, i, 4).filter(|&(_, next)| next == i + 4) {
            year = Some(y);
            i = next + 1;
        }
    }
    let (h, next) = number(b, i, 2)?;
    let (m, next) = colon_number(b, next)?;
    let (sec, next) = colon_number(b, next)?;
    let mut i = next;
    let mut nanos = 0i32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos += i32::from(b[i] - b'0') * 10i32.pow(8 - (i - start) as u32);
            }
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    if b.get(i) == Some(&b':') {
        i += 1;
    }
    let rest = match b.get(i) {
        None => "",
        Some(b' ') => &s[i + 1..],
        Some(_) => return None,
    };
    let time = Time::new(h as i8, m as i8, sec as i8, nanos).ok()?;
    let bsd = Bsd {
        month,
        day: day as i8,
        year: year.map(|y| y as i16),
        time,
    };
    Some((bsd, rest))
}

/// One to `max` ASCII digits at `i`.
fn number(b: &[u8], i: usize, max: usize) -> Option<(u16, usize)> {
    let mut n: u16 = 0;
    let mut j = i;
    while j < i + max && b.get(j).is_some_and(u8::is_ascii_digit) {
        n = n * 10 + u16::from(b[j] - b'0');
        j += 1;
    }
    (j > i).then_some((n, j))
}

fn colon_number(b: &[u8], i: usize) -> Option<(u16, usize)> {
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
            // a tag ended by a space (RFC 3164 §4.1.3), as rsyslog and syslog-ng read it
            (
                "<191>Nov 23 10:00:01 vm1 free text here",
                Some(
                    json!({"Facility": "local7", "SeverityLevel": "debug", "EventTime": t,
                    "TimeGenerated": t, "HostName": "vm1", "ProcessName": "free",
                    "SyslogMessage": "text here"}),
                ),
            ),
            // no word that can be a tag: the whole rest is the message
            (
                "<191>Nov 23 10:00:01 vm1 [42] -- free text",
                Some(
                    json!({"Facility": "local7", "SeverityLevel": "debug", "EventTime": t,
                    "TimeGenerated": t, "HostName": "vm1", "SyslogMessage": "[42] -- free text"}),
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
            // fractions after a BSD time are kept
            (
                "Nov 23 10:00:01.123 h app: m",
                Some(json!({"EventTime": "2025-11-23T10:00:01.123000Z",
                    "TimeGenerated": "2025-11-23T10:00:01.123000Z", "HostName": "h",
                    "ProcessName": "app", "SyslogMessage": "m"})),
            ),
            ("not syslog at all", None),
            ("<13>garbage", None),
            ("<999>Nov 23 10:00:01 h a: m", None),
            ("<1x>Nov 23 10:00:01 h a: m", None),
            ("Nov 23 25:00:01 h a: m", None),
            ("Nov 31 10:00:01 h a: m", None),
            ("Nov 23 10:00 h a: m", None),
            ("Nov 23 10:00:01. h a: m", None),
            ("Nob 23 10:00:01 h a: m", None),
            ("Nov 23 2025x10:00:01 h a: m", None),
            ("", None),
            ("   ", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), want, "{line:?}");
        }
    }

    /// The shapes peers accept beyond the strict RFC 3164 layout, with cases from rsyslog's,
    /// syslog_loose's (Vector's) and Tenzir's test suites and from real macOS and Cisco lines:
    /// (line, HostName, ProcessName, ProcessID, SyslogMessage, EventTime).
    #[test]
    fn rfc3164_shapes_peers_accept() {
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Option<Value>,
            &'a str,
            &'a str,
        );
        let cases: &[Case<'_>] = &[
            // rsyslog pmrfc3164-defaultTag: a tag ended by a space
            (
                "<129>Mar 10 01:00:00 Hostname3 tag msgnum:3",
                Some("Hostname3"),
                Some("tag"),
                None,
                "msgnum:3",
                "2025-03-10T01:00:00.000000Z",
            ),
            // syslog_loose parse_european_chars
            (
                "<46>Jan 5 10:01:00 Übergröße außerplanmäßig größenordnungsmäßig",
                Some("Übergröße"),
                Some("außerplanmäßig"),
                None,
                "größenordnungsmäßig",
                "2025-01-05T10:01:00.000000Z",
            ),
            // rsyslog pmrfc3164-AtSignsInHostname: no space after the colon
            (
                "<129>Mar 10 01:00:00 Hostname3 tag:msgnum:3",
                Some("Hostname3"),
                Some("tag"),
                None,
                "msgnum:3",
                "2025-03-10T01:00:00.000000Z",
            ),
            (
                "<13>Feb 13 20:07:26 74794bfb6795 root[8539]:i am foobar",
                Some("74794bfb6795"),
                Some("root"),
                Some(json!(8539)),
                "i am foobar",
                "2025-02-13T20:07:26.000000Z",
            ),
            // macOS: `proc[pid] (context):` and program names with spaces (loghub Mac)
            (
                "Jul  1 09:29:02 calvisitor-10-105-160-95 sandboxd[129] ([31211]): com.apple.Addres(31211) deny network-outbound",
                Some("calvisitor-10-105-160-95"),
                Some("sandboxd"),
                Some(json!(129)),
                "com.apple.Addres(31211) deny network-outbound",
                "2025-07-01T09:29:02.000000Z",
            ),
            (
                "Jul  1 09:00:00 mac com.apple.xpc.launchd[1] (com.apple.xpc.launchd.domain.pid.WebContent.35830): Path not allowed",
                Some("mac"),
                Some("com.apple.xpc.launchd"),
                Some(json!(1)),
                "Path not allowed",
                "2025-07-01T09:00:00.000000Z",
            ),
            (
                "Jul  1 09:04:37 mac Microsoft Word[14463]: Starting up",
                Some("mac"),
                Some("Microsoft Word"),
                Some(json!(14463)),
                "Starting up",
                "2025-07-01T09:04:37.000000Z",
            ),
            (
                "Jul  1 09:04:37 mac BezelServices 255.10[94]: ASSERTION FAILED",
                Some("mac"),
                Some("BezelServices 255.10"),
                Some(json!(94)),
                "ASSERTION FAILED",
                "2025-07-01T09:04:37.000000Z",
            ),
            // a spaced name only before a [pid]: else the first word is the tag
            (
                "Jun 19 04:09:11 combo syslogd 1.4.1: restart.",
                Some("combo"),
                Some("syslogd"),
                None,
                "1.4.1: restart.",
                "2025-06-19T04:09:11.000000Z",
            ),
            // upper-case month (syslog_loose parse_3164_timestamp_uppercase)
            (
                "<34>OCT 11 22:14:15 mymachine su: 'su root' failed",
                Some("mymachine"),
                Some("su"),
                None,
                "'su root' failed",
                "2025-10-11T22:14:15.000000Z",
            ),
            // a space after <PRI> (Tenzir #3718, syslog_loose parse_3164_host_with_space)
            (
                "<34> Oct 11 22:14:15 mymachine su: x",
                Some("mymachine"),
                Some("su"),
                None,
                "x",
                "2025-10-11T22:14:15.000000Z",
            ),
            (
                "<54> 1970-01-01T00:01:31+00:00 host :",
                Some("host"),
                None,
                None,
                "",
                "1970-01-01T00:01:31.000000Z",
            ),
            // a year inside the timestamp, and Cisco's colon after the time (rsyslog's
            // malformed-message samples)
            (
                "<164>May 21 2008 10:50:11: %FWSM-4-106023: Deny udp src outside:123.123.123.123/1985",
                None,
                Some("%FWSM-4-106023"),
                None,
                "Deny udp src outside:123.123.123.123/1985",
                "2008-05-21T10:50:11.000000Z",
            ),
            (
                "Mar  7 2008 19:06:53 fw01 app[7]: m",
                Some("fw01"),
                Some("app"),
                Some(json!(7)),
                "m",
                "2008-03-07T19:06:53.000000Z",
            ),
            (
                "<189>May 28 16:09:56.185: %SYS-5-CONFIG_I: Configured from console",
                None,
                Some("%SYS-5-CONFIG_I"),
                None,
                "Configured from console",
                "2025-05-28T16:09:56.185000Z",
            ),
            (
                "<167>Mar  6 16:57:54 172.20.245.8 %PIX-7-710005: UDP request discarded",
                Some("172.20.245.8"),
                Some("%PIX-7-710005"),
                None,
                "UDP request discarded",
                "2025-03-06T16:57:54.000000Z",
            ),
            // leading spaces (syslog_loose handles_weird_whitespace)
            (
                "   \t<13>Feb 13 20:07:26 h root[8539]: i am foobar",
                Some("h"),
                Some("root"),
                Some(json!(8539)),
                "i am foobar",
                "2025-02-13T20:07:26.000000Z",
            ),
            // no hostname (syslog_loose parse_haproxy), and an empty pid (Tenzir #5426)
            (
                "<133>Jan 13 16:33:35 haproxy[73411]: Proxy sticky-servers started.",
                None,
                Some("haproxy"),
                Some(json!(73411)),
                "Proxy sticky-servers started.",
                "2025-01-13T16:33:35.000000Z",
            ),
            (
                "<21>Aug 18 12:00:00 hostname_redacted .NetRuntime[-]: content...",
                Some("hostname_redacted"),
                Some(".NetRuntime"),
                None,
                "content...",
                "2025-08-18T12:00:00.000000Z",
            ),
            // syslog_loose parse_3164_timestamp: no host, no tag
            (
                "<34>Oct 11 22:14:15 : a message",
                None,
                None,
                None,
                "a message",
                "2025-10-11T22:14:15.000000Z",
            ),
            // syslog_loose parse_rsyslog: structured-data-looking text stays in the message
            (
                "<46>Jan  5 15:33:03 plertrood-ThinkPad-X220 rsyslogd:  [origin software=\"rsyslogd\"] start",
                Some("plertrood-ThinkPad-X220"),
                Some("rsyslogd"),
                None,
                " [origin software=\"rsyslogd\"] start",
                "2025-01-05T15:33:03.000000Z",
            ),
            // a `:` inside parentheses is part of the name; `name :` is a tag too
            (
                "Nov  9 12:10:43 local@tbird-admin1 audit(1131538222.234:0): initialized",
                Some("local@tbird-admin1"),
                Some("audit(1131538222.234:0)"),
                None,
                "initialized",
                "2025-11-09T12:10:43.000000Z",
            ),
            (
                "Nov  9 12:10:43 tbird scsi0 : LSI Logic MegaRAID driver",
                Some("tbird"),
                Some("scsi0"),
                None,
                "LSI Logic MegaRAID driver",
                "2025-11-09T12:10:43.000000Z",
            ),
            // `x[` that is no pid is no tag
            (
                "Nov 23 10:00:01 h a[: m",
                Some("h"),
                None,
                None,
                "a[: m",
                "2025-11-23T10:00:01.000000Z",
            ),
        ];
        for (line, host, name, pid, msg, time) in cases {
            let got = parse(line).unwrap_or_else(|| panic!("{line:?} does not parse"));
            let s = |k: &str| got.get(k).and_then(Value::as_str);
            assert_eq!(s("HostName"), *host, "HostName of {line:?}");
            assert_eq!(s("ProcessName"), *name, "ProcessName of {line:?}");
            assert_eq!(got.get("ProcessID"), pid.as_ref(), "ProcessID of {line:?}");
            assert_eq!(s("SyslogMessage"), Some(*msg), "SyslogMessage of {line:?}");
            assert_eq!(s("EventTime"), Some(*time), "EventTime of {line:?}");
        }
    }

    #[test]
    fn rfc3164_years_are_placed_nearest_to_now() {
        let p = SyslogParser::new(TimeZone::UTC);
        // New Year: a line of the first seconds of next year, read just before midnight
        let dec31: Timestamp = "2026-12-31T23:00:00Z".parse().expect("ts");
        let got = p
            .parse_with("Jan  1 00:00:05 h a: m", &|| dec31)
            .expect("row");
        assert_eq!(got["EventTime"], json!("2027-01-01T00:00:05.000000Z"));
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
