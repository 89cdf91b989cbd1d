//! One line of `journalctl -o json` → an [`Entry`]: its fields as text, and its cursor.
//!
//! journalctl writes every field as a JSON string, except a value that is not valid UTF-8 or
//! holds control characters, which it writes as an array of byte numbers, and a field that
//! occurs more than once in the entry, which it writes as an array of such values. Byte arrays
//! are decoded lossily (invalid sequences become U+FFFD); a repeated field stays a list. Pure.

use serde_json::{Map, Value};

/// A journal entry, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Every field but `__CURSOR`, in journalctl's order; values are strings, or arrays of
    /// strings for repeated fields.
    pub fields: Map<String, Value>,
    /// `__CURSOR`: where reading resumes after this entry.
    pub cursor: Option<String>,
}

impl Entry {
    /// A field's text; the first value of a repeated field.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.fields.get(name)? {
            Value::String(s) => Some(s),
            Value::Array(a) => a.first().and_then(Value::as_str),
            _ => None,
        }
    }
}

/// Why a line is not a journal entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("journalctl printed a line that is not JSON ({0})")]
    NotJson(String),
    #[error("journalctl printed JSON that is not an object")]
    NotObject,
}

/// Parses one line.
pub fn parse(line: &[u8]) -> Result<Entry, EntryError> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| EntryError::NotJson(e.to_string()))?;
    let Value::Object(raw) = value else {
        return Err(EntryError::NotObject);
    };
    let mut fields = Map::with_capacity(raw.len());
    let mut cursor = None;
    for (k, v) in raw {
        if k == "__CURSOR" {
            cursor = v.as_str().map(str::to_string);
            continue;
        }
        if let Some(v) = decode(v) {
            fields.insert(k, v);
        }
    }
    Ok(Entry { fields, cursor })
}

/// A field's value as text: a string as it is, bytes lossily, a repeated field as a list of
/// texts. `null` (a field journalctl left out for its size, which `--all` prevents) is dropped.
fn decode(v: Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Array(items) if is_bytes(&items) => Some(Value::String(bytes_text(&items))),
        Value::Array(items) => Some(Value::Array(
            items
                .into_iter()
                .filter_map(|item| match item {
                    Value::Array(b) if is_bytes(&b) => Some(Value::String(bytes_text(&b))),
                    Value::Null => None,
                    other => Some(other),
                })
                .collect(),
        )),
        other => Some(other),
    }
}

/// An array of numbers 0..=255 (an empty array is an empty value).
fn is_bytes(items: &[Value]) -> bool {
    items
        .iter()
        .all(|i| i.as_u64().is_some_and(|n| n <= u64::from(u8::MAX)))
}

fn bytes_text(items: &[Value]) -> String {
    let bytes: Vec<u8> = items
        .iter()
        .filter_map(|i| i.as_u64().and_then(|n| u8::try_from(n).ok()))
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_decode_to_fields_and_a_cursor() {
        type Want<'a> = Result<(Value, Option<&'a str>), EntryError>;
        let cases: Vec<(&str, Want<'_>)> = vec![
            (
                r#"{"MESSAGE":"hi","_PID":"7","__CURSOR":"s=a;i=1"}"#,
                Ok((json!({"MESSAGE":"hi","_PID":"7"}), Some("s=a;i=1"))),
            ),
            // bytes: invalid UTF-8 and a control character, decoded lossily
            (
                r#"{"MESSAGE":[98,105,110,0,255,1],"__CURSOR":"c"}"#,
                Ok((json!({"MESSAGE":"bin\u{0}\u{fffd}\u{1}"}), Some("c"))),
            ),
            // a repeated field, one of its values binary
            (
                r#"{"TAG":["a",[104,255]],"__CURSOR":"c"}"#,
                Ok((json!({"TAG":["a","h\u{fffd}"]}), Some("c"))),
            ),
            // a repeated field of plain strings stays a list; an empty byte array is ""
            (
                r#"{"REP":["1","2"],"EMPTY":[]}"#,
                Ok((json!({"REP":["1","2"],"EMPTY":""}), None)),
            ),
            // null (too large without --all) is left out
            (r#"{"BIG":null,"A":"b"}"#, Ok((json!({"A":"b"}), None))),
            ("[1,2]", Err(EntryError::NotObject)),
            ("\"x\"", Err(EntryError::NotObject)),
        ];
        for (line, want) in cases {
            let got = parse(line.as_bytes()).map(|e| (Value::Object(e.fields), e.cursor.clone()));
            let want = want.map(|(v, c)| (v, c.map(str::to_string)));
            assert_eq!(got, want, "{line}");
        }
        for garbage in ["", "not json", "{\"MESSAGE\":\"cut", "Failed to seek"] {
            assert!(
                matches!(parse(garbage.as_bytes()), Err(EntryError::NotJson(_))),
                "{garbage}"
            );
        }
    }

    #[test]
    fn text_reads_the_first_value_of_a_repeated_field() {
        let e = parse(br#"{"A":"x","B":["y","z"]}"#).expect("entry");
        assert_eq!(
            (e.text("A"), e.text("B"), e.text("C")),
            (Some("x"), Some("y"), None)
        );
    }
}
