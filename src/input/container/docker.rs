//! One line of Docker's `json-file` log driver (`/var/lib/docker/containers/<id>/<id>-json.log`,
//! and the kubelet's files on dockershim nodes):
//!
//! ```text
//! {"log":"GET / 200\n","stream":"stdout","time":"2026-12-07T05:00:00.123456789Z"}
//! ```
//! A `log` that ends in `\n` is a whole line (or the last part of one); without it, a part:
//! Docker cut a line longer than its 16 KiB buffer, or the container wrote no newline before it
//! stopped. Docker encodes the bytes as a JSON string, so a character cut at a part boundary is
//! already U+FFFD in the file: nothing after can mend it.

use std::borrow::Cow;

use super::{time_generated, Entry, Stream};

#[derive(serde::Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(borrow, default)]
    time: Option<Cow<'a, str>>,
}

/// The line as an [`Entry`], or `None` when it is not a json-file line. A time that cannot be
/// read leaves the entry without one (the row gets the time read).
pub fn parse(line: &[u8]) -> Option<Entry<'_>> {
    // Cheap check first: auto-detection tries this on lines of every kind.
    if line.first() != Some(&b'{') {
        return None;
    }
    let l: Line<'_> = serde_json::from_slice(line).ok()?;
    let stream = match &*l.stream {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = !l.log.ends_with('\n');
    let time = l.time.as_deref().and_then(time_generated);
    let message = match l.log {
        Cow::Borrowed(s) => Cow::Borrowed(s.strip_suffix('\n').unwrap_or(s).as_bytes()),
        Cow::Owned(mut s) => {
            if !partial {
                s.pop();
            }
            Cow::Owned(s.into_bytes())
        }
    };
    Some(Entry {
        time,
        stream,
        partial,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_file_lines_and_what_is_not_one() {
        let t = "2026-12-07T05:00:00.123456Z";
        type Want<'a> = Option<(Option<&'a str>, Stream, bool, &'a str)>;
        let cases: &[(&str, Want<'_>)] = &[
            (
                r#"{"log":"hello\n","stream":"stdout","time":"2026-12-07T05:00:00.123456789Z"}"#,
                Some((Some(t), Stream::Stdout, false, "hello")),
            ),
            (
                r#"{"log":"a \"quoted\" \u00e9","stream":"stderr","time":"2026-12-07T05:00:00.123456789Z"}"#,
                Some((Some(t), Stream::Stderr, true, "a \"quoted\" é")),
            ),
            (
                r#"{"log":"esc\t\n","stream":"stderr","attrs":{"tag":"x"},"time":"2026-12-07T05:00:00.123456789Z"}"#,
                Some((Some(t), Stream::Stderr, false, "esc\t")),
            ),
            (
                r#"{"log":"\n","stream":"stdout","time":"bad"}"#,
                Some((None, Stream::Stdout, false, "")),
            ),
            (r#"{"log":"x\n","stream":"stdin","time":"t"}"#, None),
            (r#"{"log":"x\n"}"#, None),
            (r#"{"level":"info","msg":"app json"}"#, None),
            (r#"{"log":"cut"#, None),
            ("2026-12-07T05:00:00Z stdout F x", None),
        ];
        for (line, want) in cases {
            let got = parse(line.as_bytes()).map(|e| {
                (
                    e.time.map(|t| String::from_utf8_lossy(&t).into_owned()),
                    e.stream,
                    e.partial,
                    String::from_utf8_lossy(&e.message).into_owned(),
                )
            });
            let want = want.map(|(t, s, p, m)| (t.map(str::to_string), s, p, m.to_string()));
            assert_eq!(got, want, "{line}");
        }
    }
}
