//! One line of the CRI log format, as containerd and CRI-O write it under `/var/log/pods`:
//!
//! ```text
//! 2026-12-07T05:00:00.123456789Z stdout F {"level":"info","msg":"ready"}
//! <RFC 3339 time, nanoseconds>   <stream> <tag> <message, raw bytes>
//! ```
//! The tag is `F` (the line is whole, or this is its last part) or `P` (a part: the runtime cut a
//! line longer than its buffer, 16 KiB by default); further tags may follow after `:`. The time
//! is the runtime's clock when it read the bytes, usually in UTC (`Z`), in the node's offset on
//! some nodes: both are read.

use memchr::memchr;

use super::{time_generated, Entry, Stream};
use std::borrow::Cow;

/// The line as an [`Entry`], or `None` when it is not a CRI line.
pub fn parse(line: &[u8]) -> Option<Entry<'_>> {
    let sp = memchr(b' ', line)?;
    let (time, rest) = (&line[..sp], &line[sp + 1..]);
    // Cheap checks first: auto-detection tries this on lines of every kind.
    if time.len() < 20 || !time[0].is_ascii_digit() || time[4] != b'-' {
        return None;
    }
    let (stream, rest) = if let Some(r) = rest.strip_prefix(b"stdout ") {
        (Stream::Stdout, r)
    } else if let Some(r) = rest.strip_prefix(b"stderr ") {
        (Stream::Stderr, r)
    } else {
        return None;
    };
    let (tag, message) = match memchr(b' ', rest) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        // An empty message may come without the space before it.
        None => (rest, &b""[..]),
    };
    let partial = match tag.split(|&b| b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return None,
    };
    let time = time_generated(std::str::from_utf8(time).ok()?)?;
    Some(Entry {
        time: Some(time),
        stream,
        partial,
        message: Cow::Borrowed(message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Option<(String, Stream, bool, String)> {
        parse(line.as_bytes()).map(|e| {
            (
                String::from_utf8_lossy(&e.time.expect("time")).into_owned(),
                e.stream,
                e.partial,
                String::from_utf8_lossy(&e.message).into_owned(),
            )
        })
    }

    #[test]
    fn cri_lines_and_what_is_not_one() {
        let t = "2026-12-07T05:00:00.123456Z";
        type Want<'a> = Option<(&'a str, Stream, bool, &'a str)>;
        let cases: &[(&str, Want<'_>)] = &[
            (
                "2026-12-07T05:00:00.123456789Z stdout F {\"a\":1}",
                Some((t, Stream::Stdout, false, "{\"a\":1}")),
            ),
            (
                "2026-12-07T05:00:00.123456789Z stderr P part one ",
                Some((t, Stream::Stderr, true, "part one ")),
            ),
            // Go's RFC3339Nano drops trailing zeros; a node in another offset
            (
                "2026-12-07T05:00:00.1234Z stdout F x",
                Some(("2026-12-07T05:00:00.123400Z", Stream::Stdout, false, "x")),
            ),
            (
                "2026-12-07T06:00:00.123456789+01:00 stdout F x",
                Some((t, Stream::Stdout, false, "x")),
            ),
            (
                "2026-12-07T05:00:00Z stdout F",
                Some(("2026-12-07T05:00:00.000000Z", Stream::Stdout, false, "")),
            ),
            (
                "2026-12-07T05:00:00Z stdout F ",
                Some(("2026-12-07T05:00:00.000000Z", Stream::Stdout, false, "")),
            ),
            // more tags after ':'
            (
                "2026-12-07T05:00:00.123456Z stdout P:x y",
                Some((t, Stream::Stdout, true, "y")),
            ),
            ("2026-12-07T05:00:00Z stdin F x", None),
            ("2026-12-07T05:00:00Z stdout X x", None),
            ("2026-13-07T05:00:00Z stdout F x", None),
            ("Dec  7 05:00:00 host app: hi", None),
            ("{\"log\":\"x\\n\",\"stream\":\"stdout\"}", None),
            ("", None),
        ];
        for (line, want) in cases {
            let want = want.map(|(t, s, p, m)| (t.to_string(), s, p, m.to_string()));
            assert_eq!(p(line), want, "{line}");
        }
    }

    #[test]
    fn the_message_is_raw_bytes() {
        let line = b"2026-12-07T05:00:00Z stdout F caf\xC3";
        let e = parse(line).expect("cri");
        assert_eq!(&*e.message, b"caf\xC3", "a part may end inside a character");
    }
}
