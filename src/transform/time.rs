//! Event times: read from a field (RFC 3339, ISO 8601 without offset = UTC, epoch numbers, or a
//! configured `time_format` and `timezone`) and written as RFC 3339 UTC with six fractional
//! digits, the precision every Azure table plan accepts (Auxiliary tables take exactly six).
//! [`year`] places a time written without a year.

mod year;

pub use year::place_in_year;

use jiff::civil::DateTime;
use jiff::fmt::strtime::{self, BrokenDownTime};
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

/// Nanoseconds per unit of an epoch number.
const NANOS_S: i128 = 1_000_000_000;
const NANOS_MS: i128 = 1_000_000;
const NANOS_US: i128 = 1_000;

/// How a time field is read (`time_format`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    /// RFC 3339 / ISO 8601 (no offset: in the time zone), or an epoch number whose unit follows
    /// from its size. What is used when no `time_format` is set.
    Auto,
    /// RFC 3339 / ISO 8601 with an offset (`Z` or `+01:00`) only.
    Rfc3339,
    /// An epoch number (or a string of one) in a fixed unit; the value is nanoseconds per unit.
    Epoch(i128),
    /// A strftime format read with `jiff::fmt::strtime`; `has_year` is false for formats like
    /// syslog's `%b %d %H:%M:%S`, whose year is guessed ([`place_in_year`]). `alternates` are
    /// the same format with its offset written the other ways (see [`offset_alternates`]), tried
    /// when the format itself does not read a value.
    Strftime {
        format: String,
        has_year: bool,
        alternates: Vec<Alternate>,
    },
}

/// A variant of a strftime format: `zulu` when its offset directive became a literal `Z`, so what
/// it reads is UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternate {
    format: String,
    zulu: bool,
}

/// Reads event times: a [`TimeFormat`] plus the zone for times written without an offset.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeParser {
    format: TimeFormat,
    /// `None` is UTC.
    zone: Option<TimeZone>,
}

impl Default for TimeParser {
    fn default() -> Self {
        TimeParser {
            format: TimeFormat::Auto,
            zone: None,
        }
    }
}

/// What `time_format` accepts, for messages.
pub const TIME_FORMAT_HINT: &str = "rfc3339, epoch, epoch_ms, epoch_us, epoch_ns, or a strftime \
     format like \"%d/%b/%Y:%H:%M:%S %z\"";

impl TimeParser {
    /// `format`: `None`/`auto`, `rfc3339`, `epoch`, `epoch_ms`, `epoch_us`, `epoch_ns`, or a
    /// strftime format (anything with a `%`). `timezone`: an IANA name (`Europe/Berlin`), `UTC`
    /// or `local` (the system's zone), for times written without an offset. `Err` says what is
    /// wrong, for a config or usage error.
    pub fn new(format: Option<&str>, timezone: Option<&str>) -> Result<Self, String> {
        let format = match format.map(str::trim) {
            None | Some("") | Some("auto") => TimeFormat::Auto,
            Some("rfc3339") | Some("iso8601") => TimeFormat::Rfc3339,
            Some("epoch") | Some("epoch_s") => TimeFormat::Epoch(NANOS_S),
            Some("epoch_ms") => TimeFormat::Epoch(NANOS_MS),
            Some("epoch_us") => TimeFormat::Epoch(NANOS_US),
            Some("epoch_ns") => TimeFormat::Epoch(1),
            Some(f) if f.contains('%') => strftime_format(f)?,
            Some(f) => {
                return Err(format!(
                    "unknown time format {f:?}; expected {TIME_FORMAT_HINT}"
                ))
            }
        };
        let zone = match timezone.map(str::trim) {
            None | Some("") | Some("UTC" | "utc" | "Z") => None,
            Some(name) => Some(zone(name)?),
        };
        Ok(TimeParser { format, zone })
    }

    /// True for the parser used without configuration (auto formats, UTC).
    pub fn is_default(&self) -> bool {
        self.format == TimeFormat::Auto && self.zone.is_none()
    }

    /// Reads a time from a string.
    pub fn parse_str(&self, s: &str) -> Option<Timestamp> {
        let s = s.trim();
        match &self.format {
            TimeFormat::Auto if self.zone.is_none() => parse_time_str(s),
            TimeFormat::Auto => {
                if let Ok(ts) = s.parse::<Timestamp>() {
                    return Some(ts);
                }
                if let Ok(dt) = s.parse::<DateTime>() {
                    return self.civil(dt);
                }
                epoch_decimal(s, None)
            }
            TimeFormat::Rfc3339 => s.parse::<Timestamp>().ok(),
            TimeFormat::Epoch(scale) => epoch_decimal(s, Some(*scale)),
            TimeFormat::Strftime { .. } => self.strftime(s, Timestamp::now),
        }
    }

    /// What `time_format` this parser reads, for messages.
    pub fn describe(&self) -> String {
        match &self.format {
            TimeFormat::Auto => "auto (RFC 3339 / ISO 8601 or an epoch number)".to_string(),
            TimeFormat::Rfc3339 => "rfc3339".to_string(),
            TimeFormat::Epoch(NANOS_S) => "epoch".to_string(),
            TimeFormat::Epoch(NANOS_MS) => "epoch_ms".to_string(),
            TimeFormat::Epoch(NANOS_US) => "epoch_us".to_string(),
            TimeFormat::Epoch(_) => "epoch_ns".to_string(),
            TimeFormat::Strftime { format, .. } => format!("{format:?}"),
        }
    }

    /// Reads a time from a JSON number's text: an epoch number (in the configured unit, or by
    /// magnitude); a strftime format reads the digits as text (`%s`, `%Y%m%d`).
    pub fn parse_number(&self, text: &str) -> Option<Timestamp> {
        match &self.format {
            TimeFormat::Auto => {
                epoch_decimal(text, None).or_else(|| text.parse::<f64>().ok().and_then(from_epoch))
            }
            TimeFormat::Epoch(scale) => epoch_decimal(text, Some(*scale)),
            TimeFormat::Rfc3339 => None,
            TimeFormat::Strftime { .. } => self.strftime(text, Timestamp::now),
        }
    }

    /// Reads a time from a JSON value's text (a string or a number) without building a value.
    pub fn parse_json_text(&self, text: &str) -> Option<Timestamp> {
        if text.starts_with('"') {
            return super::raw_object::json_text_str(text).and_then(|s| self.parse_str(&s));
        }
        match text.as_bytes().first() {
            Some(b'-' | b'0'..=b'9') => self.parse_number(text),
            _ => None,
        }
    }

    /// Reads a time from a JSON value.
    pub fn parse_value(&self, v: &Value) -> Option<Timestamp> {
        match v {
            Value::String(s) => self.parse_str(s),
            Value::Number(n) => self.parse_number(&n.to_string()),
            _ => None,
        }
    }

    /// A civil time in the zone. In a DST gap (a time that never happened) the offset before
    /// the gap is used, so 02:30 on a spring-forward day reads as 03:30 summer time; in a fold
    /// (a time that happened twice) the earlier one is taken ("compatible", as RFC 5545 and
    /// Temporal do).
    fn civil(&self, dt: DateTime) -> Option<Timestamp> {
        match &self.zone {
            None => Offset::UTC.to_timestamp(dt).ok(),
            Some(tz) => tz.to_ambiguous_timestamp(dt).compatible().ok(),
        }
    }

    /// Reads `s` with the strftime format, then with its alternates; `now` places a time
    /// without a year (and is only called for those).
    fn strftime(&self, s: &str, now: impl Fn() -> Timestamp) -> Option<Timestamp> {
        let TimeFormat::Strftime {
            format,
            has_year,
            alternates,
        } = &self.format
        else {
            return None;
        };
        let first = std::iter::once((format.as_str(), false));
        first
            .chain(alternates.iter().map(|a| (a.format.as_str(), a.zulu)))
            .find_map(|(f, zulu)| {
                let tm = BrokenDownTime::parse(f, s).ok()?;
                self.strftime_time(&tm, *has_year, zulu, &now)
            })
    }

    /// The instant a parsed strftime value names.
    fn strftime_time(
        &self,
        tm: &BrokenDownTime,
        has_year: bool,
        zulu: bool,
        now: &dyn Fn() -> Timestamp,
    ) -> Option<Timestamp> {
        if let Some(ts) = tm.timestamp() {
            // `%s` reads whole seconds; a `%f` / `%.f` after it adds the fraction.
            let frac = SignedDuration::from_nanos(i64::from(tm.subsec_nanosecond().unwrap_or(0)));
            return if ts.as_second() < 0 {
                ts.checked_sub(frac).ok()
            } else {
                ts.checked_add(frac).ok()
            };
        }
        let offset = if zulu { Some(Offset::UTC) } else { tm.offset() };
        if !has_year {
            let zone = match (offset, &self.zone) {
                (Some(o), _) => TimeZone::fixed(o),
                (None, Some(tz)) => tz.clone(),
                (None, None) => TimeZone::UTC,
            };
            return place_in_year(tm.month()?, tm.day()?, tm.to_time().ok()?, now(), &zone);
        }
        let dt = tm.to_datetime().ok()?;
        match offset {
            Some(offset) => offset.to_timestamp(dt).ok(),
            None => self.civil(dt),
        }
    }
}

/// The ways a strftime format's offset may also be written: `%z` (`+0530`) also as `%:z`
/// (`+05:30`) and the other way round, as Fluent Bit and Go read both, and either as `Z` (UTC),
/// as RFC 3339 writers put it. Empty when the format has no `%z` or `%:z`.
fn offset_alternates(f: &str) -> Vec<Alternate> {
    let mut swapped = String::with_capacity(f.len() + 2);
    let mut zulu = String::with_capacity(f.len());
    let mut found = false;
    let mut rest = f;
    while let Some(at) = rest.find('%') {
        swapped.push_str(&rest[..at]);
        zulu.push_str(&rest[..at]);
        let directive = &rest[at..];
        // `%` [flags] [width] [colons] conversion
        let body = directive[1..].trim_start_matches(['-', '_', '0', '^', '#']);
        let body = body.trim_start_matches(|c: char| c.is_ascii_digit());
        let colons = body.len() - body.trim_start_matches(':').len();
        let body = &body[colons..];
        let len = directive.len() - body.len() + body.chars().next().map_or(0, char::len_utf8);
        match (body.chars().next(), colons) {
            (Some('z'), 0) => {
                swapped.push_str("%:z");
                zulu.push('Z');
                found = true;
            }
            (Some('z'), 1) => {
                swapped.push_str("%z");
                zulu.push('Z');
                found = true;
            }
            _ => {
                swapped.push_str(&directive[..len]);
                zulu.push_str(&directive[..len]);
            }
        }
        rest = &directive[len..];
    }
    if !found {
        return Vec::new();
    }
    swapped.push_str(rest);
    zulu.push_str(rest);
    vec![
        Alternate {
            format: swapped,
            zulu: false,
        },
        Alternate {
            format: zulu,
            zulu: true,
        },
    ]
}

/// Checks a strftime format once, at configuration time: jiff must be able to write it and read
/// back what it wrote, and it must name a day (a time alone is not an event time).
fn strftime_format(f: &str) -> Result<TimeFormat, String> {
    let bad = |why: String| format!("time format {f:?}: {why}; expected {TIME_FORMAT_HINT}");
    let sample = Timestamp::from_second(1_700_000_000)
        .map_err(|e| bad(e.to_string()))?
        .to_zoned(TimeZone::UTC);
    let text = strtime::format(f, &sample).map_err(|e| bad(e.to_string()))?;
    let mut tm = BrokenDownTime::parse(f, &text)
        .map_err(|e| bad(format!("it cannot be read back ({e})")))?;
    if tm.timestamp().is_some() {
        return Ok(TimeFormat::Strftime {
            format: f.to_string(),
            has_year: true,
            alternates: offset_alternates(f),
        });
    }
    let has_year = tm.year().is_some();
    if !has_year {
        tm.set_year(Some(2024)).map_err(|e| bad(e.to_string()))?;
    }
    tm.to_datetime()
        .map_err(|_| bad("it has no date (a month and day at least)".to_string()))?;
    Ok(TimeFormat::Strftime {
        format: f.to_string(),
        has_year,
        alternates: offset_alternates(f),
    })
}

/// Looks a zone up: `UTC`, `local` (the system's), or an IANA name from the system's time zone
/// database (/usr/share/zoneinfo; a container image without it knows only UTC).
fn zone(name: &str) -> Result<TimeZone, String> {
    match name {
        "UTC" | "utc" | "Z" => Ok(TimeZone::UTC),
        "local" => TimeZone::try_system().map_err(|e| {
            format!(
                "the system time zone cannot be determined ({e}); name one, like \"Europe/Berlin\""
            )
        }),
        _ => TimeZone::get(name).map_err(|_| {
            format!(
                "unknown time zone {name:?}; expected an IANA name like \"Europe/Berlin\" or \
                 \"America/New_York\", \"UTC\", or \"local\""
            )
        }),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (what [`rfc3339_utc_bytes`] writes) → microseconds since the
/// epoch, without a parser: rows carry their time this way to the batcher.
pub fn fixed_rfc3339_micros(b: &[u8]) -> Option<i64> {
    // A fixed-size array and constant indices: no bounds checks (this runs per row).
    let b: &[u8; 27] = b.get(..27)?.try_into().ok()?;
    const DIGITS: [usize; 20] = [
        0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24, 25,
    ];
    if b[26] != b'Z' || DIGITS.iter().any(|&i| !b[i].is_ascii_digit()) {
        return None;
    }
    let n = |from: usize, to: usize| {
        b[from..to]
            .iter()
            .fold(0i64, |v, &c| v * 10 + i64::from(c - b'0'))
    };
    let days = days_from_civil_checked(n(0, 4), n(5, 7), n(8, 10))?;
    let seconds = ((days * 24 + n(11, 13)) * 60 + n(14, 16)) * 60 + n(17, 19);
    Some(seconds * 1_000_000 + n(20, 26))
}

/// The seconds of `YYYY-MM-DDTHH:MM:SS` (a row's or the read time's), without the fraction.
pub fn fixed_rfc3339_seconds(b: &[u8]) -> Option<i64> {
    let b: &[u8; 19] = b.get(..19)?.try_into().ok()?;
    const DIGITS: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    if DIGITS.iter().any(|&i| !b[i].is_ascii_digit()) {
        return None;
    }
    let n = |from: usize, to: usize| {
        b[from..to]
            .iter()
            .fold(0i64, |v, &c| v * 10 + i64::from(c - b'0'))
    };
    let days = days_from_civil_checked(n(0, 4), n(5, 7), n(8, 10))?;
    Some(((days * 24 + n(11, 13)) * 60 + n(14, 16)) * 60 + n(17, 19))
}

/// [`days_from_civil`] of a month 1–12 and a day 1–31.
pub fn days_from_civil_checked(y: i64, m: i64, d: i64) -> Option<i64> {
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then(|| days_from_civil(y, m, d))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The time of a row built here: every row starts `{"TimeGenerated":"…"`.
pub fn row_time_micros(row: &[u8]) -> Option<i64> {
    const PREFIX: &[u8] = b"{\"TimeGenerated\":\"";
    let rest = row.strip_prefix(PREFIX)?;
    fixed_rfc3339_micros(rest.get(..27)?)
}

/// `ts` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, in a stack buffer (this runs per row).
pub fn rfc3339_utc_bytes(ts: Timestamp) -> [u8; 27] {
    let dt = Offset::UTC.to_datetime(ts);
    let year = dt.year().clamp(0, 9999) as u32;
    let mut buf = [0u8; 27];
    let mut put = |at: usize, v: u32, width: usize| {
        let mut v = v;
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, dt.month() as u32, 2);
    put(8, dt.day() as u32, 2);
    put(11, dt.hour() as u32, 2);
    put(14, dt.minute() as u32, 2);
    put(17, dt.second() as u32, 2);
    put(20, (dt.subsec_nanosecond() / 1000) as u32, 6);
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ] {
        buf[at] = c;
    }
    buf
}

/// Appends `ts` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn format_rfc3339_utc(ts: Timestamp, out: &mut String) {
    // Every byte of the buffer is ASCII.
    out.push_str(std::str::from_utf8(&rfc3339_utc_bytes(ts)).unwrap_or_default());
}

/// [`format_rfc3339_utc`] into a new string.
pub fn rfc3339_utc(ts: Timestamp) -> String {
    let mut s = String::with_capacity(27);
    format_rfc3339_utc(ts, &mut s);
    s
}

/// Reads an event time from a JSON value: a string in RFC 3339 / ISO 8601 (no offset means UTC,
/// a space may stand for `T`), or a number of epoch seconds, milliseconds, microseconds or
/// nanoseconds (told apart by magnitude), also when written as a string.
#[cfg(test)]
pub fn parse_time_value(v: &Value) -> Option<Timestamp> {
    match v {
        Value::String(s) => parse_time_str(s),
        Value::Number(n) => {
            epoch_decimal(&n.to_string(), None).or_else(|| n.as_f64().and_then(from_epoch))
        }
        _ => None,
    }
}

/// Reads an event time from a raw JSON value's text: a string in RFC 3339 / ISO 8601 (no offset
/// means UTC, a space may stand for `T`), or a number of epoch seconds, milliseconds,
/// microseconds or nanoseconds (told apart by magnitude), also when written as a string.
pub fn parse_time_raw(t: &str) -> Option<Timestamp> {
    match super::raw_object::json_text_str(t) {
        Some(s) => parse_time_str(&s),
        None => epoch_decimal(t, None).or_else(|| t.parse::<f64>().ok().and_then(from_epoch)),
    }
}

/// Reads an event time from a string, as [`parse_time_raw`] reads a JSON string's contents.
pub fn parse_time_str(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Some(ts);
    }
    if let Ok(dt) = s.parse::<DateTime>() {
        return Offset::UTC.to_timestamp(dt).ok();
    }
    epoch_decimal(s, None)
}

/// An epoch number written in decimal (`1699974602.123`), read exactly: no float rounding.
/// `scale` is nanoseconds per unit; `None` tells the unit from the integer part's magnitude, as
/// in [`from_epoch`].
fn epoch_decimal(s: &str, scale: Option<i128>) -> Option<Timestamp> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty()
        || int.len() > 20
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i128 = int.parse().ok()?;
    // nanoseconds per unit: seconds below 1e11, ms below 1e14, µs below 1e17, else ns
    let scale: i128 = scale.unwrap_or(match whole {
        w if w < 100_000_000_000 => NANOS_S,
        w if w < 100_000_000_000_000 => NANOS_MS,
        w if w < 100_000_000_000_000_000 => NANOS_US,
        _ => 1,
    });
    let scale_digits = scale.ilog10() as usize;
    let mut frac_nanos: i128 = 0;
    for (i, b) in frac.bytes().take(scale_digits).enumerate() {
        frac_nanos += i128::from(b - b'0') * 10i128.pow((scale_digits - 1 - i) as u32);
    }
    let nanos = whole.checked_mul(scale)?.checked_add(frac_nanos)?;
    Timestamp::from_nanosecond(if neg { -nanos } else { nanos }).ok()
}

/// Epoch number → timestamp. Below 1e11 it is seconds (up to year 5138), below 1e14
/// milliseconds, below 1e17 microseconds, else nanoseconds.
fn from_epoch(x: f64) -> Option<Timestamp> {
    if !x.is_finite() {
        return None;
    }
    let a = x.abs();
    let nanos = if a < 1e11 {
        x * 1e9
    } else if a < 1e14 {
        x * 1e6
    } else if a < 1e17 {
        x * 1e3
    } else {
        x
    };
    if nanos.abs() > 9.0e18 {
        return None;
    }
    Timestamp::from_nanosecond(nanos as i128).ok()
}

/// The fast path for the common case: `text` is already RFC 3339 in UTC
/// (`YYYY-MM-DDTHH:MM:SS[.f…]Z`, or `+00:00` for `Z`), so the row's `TimeGenerated` is the same
/// text with the fraction cut or padded to six digits — exactly what parsing and
/// [`rfc3339_utc_bytes`] would write, without either. Anything else (other offsets, a space for
/// `T`, leap seconds, invalid dates) is `None` and takes the general path.
pub fn canonical_utc(text: &[u8]) -> Option<[u8; 27]> {
    if text.len() < 20 {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        text[range].iter().try_fold(0u32, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    let sep = |at: usize, c: u8| text[at] == c;
    if !(sep(4, b'-')
        && sep(7, b'-')
        && (sep(10, b'T') || sep(10, b't'))
        && sep(13, b':')
        && sep(16, b':'))
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    // Far years take the general path, which knows the edges of the representable range.
    if !(1000..=8999).contains(&year) {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut at = 19;
    let mut frac = [b'0'; 6];
    if text[at] == b'.' {
        at += 1;
        let start = at;
        while at < text.len() && text[at].is_ascii_digit() {
            if at - start < 6 {
                frac[at - start] = text[at];
            }
            at += 1;
        }
        // RFC 3339 wants at least one digit; more than nine is beyond nanoseconds.
        if at == start || at - start > 9 {
            return None;
        }
    }
    match &text[at..] {
        b"Z" | b"z" | b"+00:00" => {}
        _ => return None,
    }
    let mut out = [0u8; 27];
    out[..19].copy_from_slice(&text[..19]);
    out[10] = b'T';
    out[19] = b'.';
    out[20..26].copy_from_slice(&frac);
    out[26] = b'Z';
    Some(out)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Option<String> {
        parse_time_str(s).map(rfc3339_utc)
    }

    #[test]
    fn reads_the_usual_forms() {
        let want = Some("2023-11-14T15:10:02.123000Z".to_string());
        let cases = [
            "2023-11-14T15:10:02.123Z",
            "2023-11-14T16:10:02.123+01:00",
            "2023-11-14T10:10:02.123-05:00",
            "2023-11-14 15:10:02.123",
            "2023-11-14T15:10:02.123",
            "1699974602.123",
            "1699974602123",
            "1699974602123000",
            "1699974602123000000",
        ];
        for c in cases {
            assert_eq!(at(c), want, "{c}");
        }
        assert_eq!(
            parse_time_value(&json!(1699974602)).map(rfc3339_utc),
            Some("2023-11-14T15:10:02.000000Z".to_string())
        );
        assert_eq!(
            parse_time_value(&json!(1699974602123u64)).map(rfc3339_utc),
            Some("2023-11-14T15:10:02.123000Z".to_string())
        );
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for bad in [
            "",
            "yesterday",
            "2023-13-45T00:00:00Z",
            "12:00",
            "1e400",
            "--",
        ] {
            assert_eq!(at(bad), None, "{bad}");
        }
        for v in [json!(null), json!(true), json!({"a":1}), json!([1])] {
            assert_eq!(parse_time_value(&v), None);
        }
    }

    #[test]
    fn raw_values_read_like_values() {
        for text in [
            r#""2023-11-14T15:10:02.123Z""#,
            "1699974602123",
            "1699974602.123",
            r#""1699974602.123""#,
            "null",
            r#""x""#,
            "true",
        ] {
            let v: Value = serde_json::from_str(text).expect("value");
            assert_eq!(parse_time_raw(text), parse_time_value(&v), "{text}");
        }
    }

    fn with(format: Option<&str>, tz: Option<&str>) -> TimeParser {
        TimeParser::new(format, tz).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Each configured format, with offsets and DST in both directions: (format, zone, input,
    /// want as RFC 3339 UTC, or None when it must not read).
    #[test]
    fn configured_formats_table() {
        let nginx = Some("%d/%b/%Y:%H:%M:%S %z");
        let local = Some("%Y-%m-%d %H:%M:%S");
        let berlin = Some("Europe/Berlin");
        type Case<'a> = (Option<&'a str>, Option<&'a str>, &'a str, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            // nginx / Apache common log time, with its offset
            (
                nginx,
                None,
                "10/Oct/2000:13:55:36 -0700",
                Some("2000-10-10T20:55:36.000000Z"),
            ),
            (
                nginx,
                None,
                "29/Mar/2026:03:30:00 +0200",
                Some("2026-03-29T01:30:00.000000Z"),
            ),
            (
                nginx,
                berlin,
                "01/Jan/2026:00:00:00 +0000",
                Some("2026-01-01T00:00:00.000000Z"),
            ),
            (nginx, None, "10/Oct/2000 13:55:36", None),
            (nginx, None, "32/Oct/2000:13:55:36 -0700", None),
            // no offset: the zone's offset of that day (CET +1 in winter, CEST +2 in summer)
            (
                local,
                berlin,
                "2026-01-15 12:00:00",
                Some("2026-01-15T11:00:00.000000Z"),
            ),
            (
                local,
                berlin,
                "2026-07-15 12:00:00",
                Some("2026-07-15T10:00:00.000000Z"),
            ),
            (
                local,
                None,
                "2026-07-15 12:00:00",
                Some("2026-07-15T12:00:00.000000Z"),
            ),
            (
                local,
                Some("UTC"),
                "2026-07-15 12:00:00",
                Some("2026-07-15T12:00:00.000000Z"),
            ),
            // spring forward, 2026-03-29 02:00 CET → 03:00 CEST
            (
                local,
                berlin,
                "2026-03-29 01:59:59",
                Some("2026-03-29T00:59:59.000000Z"),
            ),
            (
                local,
                berlin,
                "2026-03-29 03:00:00",
                Some("2026-03-29T01:00:00.000000Z"),
            ),
            // 02:30 never happened: read with the offset before the gap (+1), i.e. 03:30 CEST
            (
                local,
                berlin,
                "2026-03-29 02:30:00",
                Some("2026-03-29T01:30:00.000000Z"),
            ),
            // fall back, 2026-10-25 03:00 CEST → 02:00 CET: 02:30 happened twice, the earlier wins
            (
                local,
                berlin,
                "2026-10-25 02:30:00",
                Some("2026-10-25T00:30:00.000000Z"),
            ),
            (
                local,
                berlin,
                "2026-10-25 03:30:00",
                Some("2026-10-25T02:30:00.000000Z"),
            ),
            (
                local,
                berlin,
                "2026-10-25 01:30:00",
                Some("2026-10-24T23:30:00.000000Z"),
            ),
            (
                local,
                Some("America/New_York"),
                "2026-03-08 02:30:00",
                Some("2026-03-08T07:30:00.000000Z"),
            ),
            // fractions
            (
                Some("%Y-%m-%dT%H:%M:%S%.f%:z"),
                None,
                "2026-05-01T10:00:00.123456789+05:30",
                Some("2026-05-01T04:30:00.123456Z"),
            ),
            (
                Some("%s"),
                None,
                "1700000000",
                Some("2023-11-14T22:13:20.000000Z"),
            ),
            // RFC 3339 only with an offset
            (
                Some("rfc3339"),
                None,
                "2026-05-01T10:00:00+02:00",
                Some("2026-05-01T08:00:00.000000Z"),
            ),
            (
                Some("rfc3339"),
                None,
                "2026-05-01T10:00:00Z",
                Some("2026-05-01T10:00:00.000000Z"),
            ),
            (Some("rfc3339"), None, "2026-05-01T10:00:00", None),
            (Some("rfc3339"), None, "1700000000", None),
            // epochs in a fixed unit, whatever their size
            (
                Some("epoch"),
                None,
                "1700000000.5",
                Some("2023-11-14T22:13:20.500000Z"),
            ),
            (
                Some("epoch"),
                None,
                "86400",
                Some("1970-01-02T00:00:00.000000Z"),
            ),
            (
                Some("epoch_ms"),
                None,
                "1700000000123",
                Some("2023-11-14T22:13:20.123000Z"),
            ),
            (
                Some("epoch_ms"),
                None,
                "86400000",
                Some("1970-01-02T00:00:00.000000Z"),
            ),
            (
                Some("epoch_us"),
                None,
                "1700000000123456",
                Some("2023-11-14T22:13:20.123456Z"),
            ),
            (
                Some("epoch_ns"),
                None,
                "1700000000123456789",
                Some("2023-11-14T22:13:20.123456Z"),
            ),
            (Some("epoch"), None, "soon", None),
            // auto with a zone: offsets win, naive times are local
            (
                None,
                berlin,
                "2026-07-15T12:00:00",
                Some("2026-07-15T10:00:00.000000Z"),
            ),
            (
                None,
                berlin,
                "2026-07-15T12:00:00Z",
                Some("2026-07-15T12:00:00.000000Z"),
            ),
            (
                None,
                berlin,
                "1700000000",
                Some("2023-11-14T22:13:20.000000Z"),
            ),
        ];
        for (format, tz, input, want) in cases {
            let p = with(*format, *tz);
            let got = p.parse_str(input).map(rfc3339_utc);
            assert_eq!(got.as_deref(), *want, "{format:?} {tz:?} {input}");
            // the same through a JSON string's text
            let text = serde_json::to_string(input).expect("json");
            assert_eq!(
                p.parse_json_text(&text).map(rfc3339_utc).as_deref(),
                *want,
                "{text}"
            );
        }
        // numbers (not strings) in epoch formats
        assert_eq!(
            with(Some("epoch_ms"), None)
                .parse_json_text("1700000000123")
                .map(rfc3339_utc)
                .as_deref(),
            Some("2023-11-14T22:13:20.123000Z")
        );
        assert_eq!(
            with(Some("epoch"), None)
                .parse_value(&json!(1700000000))
                .map(rfc3339_utc)
                .as_deref(),
            Some("2023-11-14T22:13:20.000000Z")
        );
    }

    /// Offsets written either way (and `Z`), and `%s` with its fraction: (format, input, want).
    #[test]
    fn offsets_read_with_or_without_colon_and_epochs_keep_their_fraction() {
        let nginx = "%d/%b/%Y:%H:%M:%S %z";
        let iso = "%Y-%m-%dT%H:%M:%S%:z";
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                nginx,
                "10/Oct/2000:13:55:36 -0700",
                Some("2000-10-10T20:55:36.000000Z"),
            ),
            (
                nginx,
                "10/Oct/2000:13:55:36 -07:00",
                Some("2000-10-10T20:55:36.000000Z"),
            ),
            (
                nginx,
                "10/Oct/2000:13:55:36 +05:30",
                Some("2000-10-10T08:25:36.000000Z"),
            ),
            (
                nginx,
                "10/Oct/2000:13:55:36 +0530",
                Some("2000-10-10T08:25:36.000000Z"),
            ),
            (
                nginx,
                "10/Oct/2000:13:55:36 Z",
                Some("2000-10-10T13:55:36.000000Z"),
            ),
            (nginx, "10/Oct/2000:13:55:36 +5", None),
            (nginx, "10/Oct/2000:13:55:36 CET", None),
            (
                iso,
                "2026-05-01T10:00:00+05:30",
                Some("2026-05-01T04:30:00.000000Z"),
            ),
            (
                iso,
                "2026-05-01T10:00:00+0530",
                Some("2026-05-01T04:30:00.000000Z"),
            ),
            (
                iso,
                "2026-05-01T10:00:00Z",
                Some("2026-05-01T10:00:00.000000Z"),
            ),
            (iso, "2026-05-01T10:00:00", None),
            // a literal %z is text, not an offset
            (
                "%Y-%m-%d %%z",
                "2026-05-01 %z",
                Some("2026-05-01T00:00:00.000000Z"),
            ),
            (
                "%s.%f",
                "1700000000.123456",
                Some("2023-11-14T22:13:20.123456Z"),
            ),
            ("%s.%f", "1700000000.5", Some("2023-11-14T22:13:20.500000Z")),
            (
                "%s%.3f",
                "1700000000.250",
                Some("2023-11-14T22:13:20.250000Z"),
            ),
            ("%s%.f", "1700000000", Some("2023-11-14T22:13:20.000000Z")),
            ("%s%.f", "-1.5", Some("1969-12-31T23:59:58.500000Z")),
            ("%s.%f", "1700000000", None),
        ];
        for (format, input, want) in cases {
            let got = with(Some(format), None).parse_str(input).map(rfc3339_utc);
            assert_eq!(got.as_deref(), *want, "{format} on {input}");
        }
    }

    #[test]
    fn offset_alternates_swap_only_offset_directives() {
        let got = |f: &str| -> Vec<(String, bool)> {
            offset_alternates(f)
                .into_iter()
                .map(|a| (a.format, a.zulu))
                .collect()
        };
        assert_eq!(
            got("%d/%b/%Y:%H:%M:%S %z"),
            vec![
                ("%d/%b/%Y:%H:%M:%S %:z".to_string(), false),
                ("%d/%b/%Y:%H:%M:%S Z".to_string(), true)
            ]
        );
        assert_eq!(
            got("%FT%T%.3f%:z!"),
            vec![
                ("%FT%T%.3f%z!".to_string(), false),
                ("%FT%T%.3fZ!".to_string(), true)
            ]
        );
        assert!(got("%Y-%m-%d %%z").is_empty());
        assert!(got("%Y-%m-%d %::z").is_empty());
        assert!(got("%b %d %H:%M:%S").is_empty());
        assert!(got("trailing %").is_empty());
    }

    /// Yearless formats take the year rule of [`place_in_year`], with the offset when there is
    /// one, else the zone.
    #[test]
    fn yearless_formats_are_placed_nearest_to_now() {
        let dec31: Timestamp = "2026-12-31T23:00:00Z".parse().expect("ts");
        let jan1: Timestamp = "2027-01-01T00:10:00Z".parse().expect("ts");
        let cases: &[(&str, Option<&str>, &str, Timestamp, &str)] = &[
            (
                "%b %d %H:%M:%S",
                None,
                "Jan 01 00:00:05",
                dec31,
                "2027-01-01T00:00:05.000000Z",
            ),
            (
                "%b %d %H:%M:%S",
                None,
                "Dec 31 23:59:00",
                jan1,
                "2026-12-31T23:59:00.000000Z",
            ),
            (
                "%b %d %H:%M:%S",
                Some("Europe/Berlin"),
                "Jan 01 00:20:00",
                "2026-12-31T23:30:00Z".parse().expect("ts"),
                "2026-12-31T23:20:00.000000Z",
            ),
            (
                "%b %d %H:%M:%S %z",
                Some("Europe/Berlin"),
                "Jan 01 01:00:05 +01:00",
                dec31,
                "2027-01-01T00:00:05.000000Z",
            ),
            (
                "%m-%d %H:%M:%S%.f",
                None,
                "03-17 16:13:38.811",
                "2026-06-01T00:00:00Z".parse().expect("ts"),
                "2026-03-17T16:13:38.811000Z",
            ),
        ];
        for (format, zone, input, now, want) in cases {
            let p = with(Some(format), *zone);
            let got = p.strftime(input, || *now).map(rfc3339_utc);
            assert_eq!(
                got.as_deref(),
                Some(*want),
                "{format} {zone:?} {input} at {now}"
            );
        }
    }

    #[test]
    fn formats_are_described_for_messages() {
        assert_eq!(with(Some("%s"), None).describe(), "\"%s\"");
        assert_eq!(with(Some("epoch_ms"), None).describe(), "epoch_ms");
        assert!(with(None, None).describe().starts_with("auto"));
    }

    #[test]
    fn a_format_without_a_year_takes_the_current_one_unless_that_is_ahead() {
        let p = with(Some("%b %d %H:%M:%S"), None);
        let now = Timestamp::now();
        let today = now.to_zoned(TimeZone::UTC);
        let text = jiff::fmt::strtime::format("%b %d %H:%M:%S", &today).expect("fmt");
        let got = p.parse_str(&text).expect("reads");
        assert!((got.as_second() - now.as_second()).abs() <= 1, "{got}");
        // two days ahead of today is last year's
        let ahead = now + jiff::SignedDuration::from_hours(48);
        let text = jiff::fmt::strtime::format("%b %d %H:%M:%S", &ahead.to_zoned(TimeZone::UTC))
            .expect("fmt");
        let got = p.parse_str(&text).expect("reads").to_zoned(TimeZone::UTC);
        assert!(
            got.year() < ahead.to_zoned(TimeZone::UTC).year() || got.timestamp() < now,
            "{got}"
        );
    }

    #[test]
    fn bad_settings_say_what_to_write() {
        for (format, tz, says) in [
            (Some("iso"), None, "unknown time format"),
            (Some("%H:%M:%S"), None, "no date"),
            (Some("%Q %Y"), None, "%"),
            (None, Some("Mars/Olympus"), "unknown time zone"),
            (None, Some("Europe/Berln"), "Europe/Berlin"),
        ] {
            let e = TimeParser::new(format, tz).expect_err("bad");
            assert!(e.contains(says), "{format:?} {tz:?}: {e}");
        }
        assert!(TimeParser::new(None, None).expect("ok").is_default());
        assert!(!TimeParser::new(Some("epoch"), None)
            .expect("ok")
            .is_default());
        assert!(TimeParser::new(None, Some("UTC")).expect("ok").is_default());
        assert!(TimeParser::new(None, Some("local")).is_ok());
    }

    #[test]
    fn fixed_format_times_read_back_exactly() {
        for ts in [
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59.999999Z",
            "2026-03-29T01:30:00.5Z",
            "1969-12-31T23:59:59Z",
            "9999-12-30T00:00:00Z",
        ] {
            let t: Timestamp = ts.parse().expect("ts");
            let bytes = rfc3339_utc_bytes(t);
            let us = fixed_rfc3339_micros(&bytes).expect("reads");
            assert_eq!(fixed_rfc3339_seconds(&bytes), Some(t.as_second()), "{ts}");
            assert_eq!(
                i128::from(us) * 1000,
                t.as_nanosecond() / 1000 * 1000,
                "{ts}"
            );
            let row = format!("{{\"TimeGenerated\":\"{}\",\"a\":1}}", rfc3339_utc(t));
            assert_eq!(row_time_micros(row.as_bytes()), Some(us));
        }
        assert_eq!(fixed_rfc3339_micros(b"2026-13-01T00:00:00.000000Z"), None);
        assert_eq!(fixed_rfc3339_micros(b"2026-01-01T00:00:00.000000"), None);
        assert_eq!(row_time_micros(b"{\"a\":1}"), None);
        assert_eq!(row_time_micros(b"{}"), None);
    }

    #[test]
    fn formats_with_six_fraction_digits() {
        let ts: Timestamp = "2024-02-29T23:59:59.9999999Z".parse().expect("ts");
        assert_eq!(rfc3339_utc(ts), "2024-02-29T23:59:59.999999Z");
        assert_eq!(
            rfc3339_utc(Timestamp::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn canonical_utc_agrees_with_the_general_path() {
        let cases = [
            "2025-11-23T10:00:00Z",
            "2025-11-23T10:00:00.1Z",
            "2025-11-23T10:00:00.123456789Z",
            "2025-11-23t10:00:00.5z",
            "2024-02-29T23:59:59.999999+00:00",
            "1000-01-01T00:00:00Z",
            "8999-12-31T23:59:59.999999Z",
            "2000-02-29T00:00:00Z",
        ];
        for c in cases {
            let fast = canonical_utc(c.as_bytes()).unwrap_or_else(|| panic!("{c}: no fast path"));
            let slow = rfc3339_utc_bytes(parse_time_str(c).unwrap_or_else(|| panic!("{c}")));
            assert_eq!(fast, slow, "{c}");
        }
    }

    #[test]
    fn canonical_utc_leaves_the_rest_to_the_general_path() {
        for c in [
            "2023-02-29T10:00:00Z",
            "1900-02-29T10:00:00Z",
            "9999-12-31T23:59:59Z",
            "2025-04-31T10:00:00Z",
            "2025-11-23T24:00:00Z",
            "2025-11-23T10:60:00Z",
            "2016-12-31T23:59:60Z",
            "2025-11-23T10:00:00.Z",
            "2025-11-23T10:00:00.1234567890Z",
            "2025-11-23T10:00:00+01:00",
            "2025-11-23 10:00:00Z",
            "2025-11-23T10:00:00",
            "2025-11-23T10:00:00ZZ",
            "2025-1a-23T10:00:00Z",
            "+2025-11-23T10:00:00Z",
            "",
        ] {
            assert_eq!(canonical_utc(c.as_bytes()), None, "{c}");
        }
    }

    proptest::proptest! {
        #[test]
        fn canonical_utc_never_disagrees(s in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,10})?(Z|z|\\+00:00|\\+01:00)?") {
            if let Some(fast) = canonical_utc(s.as_bytes()) {
                let slow = parse_time_str(&s).map(rfc3339_utc_bytes);
                proptest::prop_assert_eq!(Some(fast), slow);
            }
        }
    }
}
