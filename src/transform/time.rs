//! Event times: read from a field (RFC 3339, ISO 8601 without offset = UTC, epoch numbers) and
//! written as RFC 3339 UTC with six fractional digits, the precision every Azure table plan
//! accepts (Auxiliary tables take exactly six).

use jiff::civil::DateTime;
use jiff::tz::Offset;
use jiff::Timestamp;
use serde_json::Value;

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
pub fn parse_time_value(v: &Value) -> Option<Timestamp> {
    match v {
        Value::String(s) => parse_time_str(s),
        Value::Number(n) => {
            epoch_decimal(&n.to_string()).or_else(|| n.as_f64().and_then(from_epoch))
        }
        _ => None,
    }
}

/// Reads an event time from a raw JSON value's text (a string or a number), as
/// [`parse_time_value`] does, without building a value.
pub fn parse_time_raw(raw: &serde_json::value::RawValue) -> Option<Timestamp> {
    match super::raw_object::raw_str(raw) {
        Some(s) => parse_time_str(&s),
        None => {
            let t = raw.get();
            epoch_decimal(t).or_else(|| t.parse::<f64>().ok().and_then(from_epoch))
        }
    }
}

/// See [`parse_time_value`].
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
    epoch_decimal(s)
}

/// An epoch number written in decimal (`1699974602.123`), read exactly: no float rounding.
/// The unit follows from the integer part's magnitude, as in [`from_epoch`].
fn epoch_decimal(s: &str) -> Option<Timestamp> {
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
    let scale: i128 = match whole {
        w if w < 100_000_000_000 => 1_000_000_000,
        w if w < 100_000_000_000_000 => 1_000_000,
        w if w < 100_000_000_000_000_000 => 1_000,
        _ => 1,
    };
    let scale_digits = scale.ilog10() as usize;
    let mut frac_nanos: i128 = 0;
    for (i, b) in frac.bytes().take(scale_digits).enumerate() {
        frac_nanos += i128::from(b - b'0') * 10i128.pow((scale_digits - 1 - i) as u32);
    }
    let nanos = whole * scale + frac_nanos;
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
            let raw: Box<serde_json::value::RawValue> = serde_json::from_str(text).expect("raw");
            let v: Value = serde_json::from_str(text).expect("value");
            assert_eq!(parse_time_raw(&raw), parse_time_value(&v), "{text}");
        }
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
}
