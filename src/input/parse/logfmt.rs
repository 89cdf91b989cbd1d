//! `format = "logfmt"`: `key=value key2="quoted \"value\"" flag` → columns.
//!
//! Rules (those of Go's `go-logfmt`, which most logfmt writers follow):
//! - pairs are separated by spaces or tabs; a key is any run of characters other than space,
//!   `=` and `"`;
//! - `key=value`: the value runs to the next space; `key="…"` is quoted, with `\"`, `\\`, `\n`,
//!   `\r` and `\t` escapes (any other `\x` is kept as written); `key=` is the empty string;
//! - a bare `key` (no `=`) is the boolean `true`;
//! - every value is a string (`status=200` gives `"200"`): the stream's declared column types
//!   decide what it becomes;
//! - a key written twice keeps its last value.
//!
//! A line without a single `key=value` pair (plain prose), with an unterminated quote, or with a
//! quote where a key should start is not logfmt: the caller sends it as `RawData` or
//! dead-letters it.

use serde_json::{Map, Value};

/// The pairs of one line, or `None` when the line is not logfmt.
pub fn parse(line: &str) -> Option<Map<String, Value>> {
    let b = line.as_bytes();
    let mut i = 0;
    // Every pair has an `=`: a good first size for the map (bare flags may add a few).
    let mut map = Map::with_capacity(memchr::memchr_iter(b'=', b).count().min(64));
    let mut pairs = 0usize;
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let key_start = i;
        while i < b.len() && b[i] != b' ' && b[i] != b'\t' && b[i] != b'=' && b[i] != b'"' {
            i += 1;
        }
        if i == key_start {
            // `=` or `"` where a key should start
            return None;
        }
        // Every delimiter is ASCII, so these are character boundaries.
        let key = &line[key_start..i];
        match b.get(i) {
            Some(b'=') => {
                i += 1;
                let value = if b.get(i) == Some(&b'"') {
                    let (value, next) = quoted(line, i + 1)?;
                    i = next;
                    value
                } else {
                    let start = i;
                    while i < b.len() && b[i] != b' ' && b[i] != b'\t' {
                        i += 1;
                    }
                    line[start..i].to_string()
                };
                pairs += 1;
                map.insert(key.to_string(), Value::String(value));
            }
            Some(b'"') => return None,
            _ => {
                map.insert(key.to_string(), Value::Bool(true));
            }
        }
    }
    (pairs > 0).then_some(map)
}

/// A quoted value starting just after its opening quote: the unescaped text and the index past
/// the closing quote; `None` when the quote is never closed.
fn quoted(line: &str, from: usize) -> Option<(String, usize)> {
    let b = line.as_bytes();
    let mut out = String::new();
    let mut run = from;
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'"' => {
                out.push_str(&line[run..i]);
                return Some((out, i + 1));
            }
            b'\\' if i + 1 < b.len() => {
                out.push_str(&line[run..i]);
                let escaped = match b[i + 1] {
                    b'"' => Some('"'),
                    b'\\' => Some('\\'),
                    b'n' => Some('\n'),
                    b'r' => Some('\r'),
                    b't' => Some('\t'),
                    _ => None,
                };
                match escaped {
                    Some(c) => {
                        out.push(c);
                        i += 2;
                    }
                    None => {
                        // Kept as written: the backslash now, the next character with the run.
                        out.push('\\');
                        i += 1;
                    }
                }
                run = i;
            }
            _ => i += 1,
        }
    }
    None
}

/// Writes `map` as one logfmt line (quoting where needed), the inverse of [`parse`] for string
/// values and `true` flags. Used by the tests and the benchmark to make input.
#[cfg(test)]
pub fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a Value)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(k);
        let s = match v {
            Value::Bool(true) => continue,
            Value::String(s) => s.as_str(),
            _ => "",
        };
        out.push('=');
        let plain = !s.is_empty()
            && !s
                .bytes()
                .any(|c| c == b' ' || c == b'\t' || c == b'"' || c == b'\\' || c < b' ');
        if plain {
            out.push_str(s);
            continue;
        }
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn table() {
        let cases: &[(&str, Option<Value>)] = &[
            (
                r#"level=info msg="user logged in" user=alice took=12ms"#,
                Some(json!({"level":"info","msg":"user logged in","user":"alice","took":"12ms"})),
            ),
            (
                r#"msg="say \"hi\"\tnow\\n\q" k=v"#,
                Some(json!({"msg":"say \"hi\"\tnow\\n\\q","k":"v"})),
            ),
            (
                "a= b=1 debug\tc=x=y",
                Some(json!({"a":"","b":"1","debug":true,"c":"x=y"})),
            ),
            ("  k=v  k=w ", Some(json!({"k":"w"}))),
            ("ключ=значение", Some(json!({"ключ":"значение"}))),
            ("just some prose", None),
            ("", None),
            (r#"k="unterminated"#, None),
            ("=v k=1", None),
            (r#""quoted" k=1"#, None),
            (r#"k"x=1"#, None),
            // a quote inside a bare value is kept
            (r#"k=a"b"#, Some(json!({"k":"a\"b"}))),
        ];
        for (line, want) in cases {
            assert_eq!(&parse(line).map(Value::Object), want, "{line:?}");
        }
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panic(text in any::<String>()) {
            let _ = parse(&text);
        }

        #[test]
        fn an_encoded_map_parses_back(
            pairs in proptest::collection::btree_map(
                "[a-zA-Z_][a-zA-Z0-9_.-]{0,12}",
                prop_oneof![any::<String>().prop_map(Value::String), Just(Value::Bool(true))],
                1..8,
            ),
        ) {
            let line = encode(pairs.iter().map(|(k, v)| (k.as_str(), v)));
            let got = parse(&line);
            let want: Map<String, Value> = pairs.clone().into_iter().collect();
            if pairs.values().all(|v| v == &Value::Bool(true)) {
                // flags alone are not a logfmt line: no key=value pair
                prop_assert_eq!(got, None);
            } else {
                prop_assert_eq!(got, Some(want), "{}", line);
            }
        }
    }
}
