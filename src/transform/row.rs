//! Builds one DCR row, serialized, straight into a reusable buffer.

use serde_json::{Map, Value};

use super::raw_object;
use super::time::{parse_time_raw, parse_time_value, rfc3339_utc, rfc3339_utc_bytes};

/// Azure truncates field values over 64 KB; we truncate first, on a character boundary, and
/// count it, so the row that lands is the row we reported.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

/// Things noticed while building rows, added to the run's counters by the caller.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RowNotes {
    /// values cut to [`MAX_FIELD_BYTES`]
    pub truncated_fields: u64,
    /// rows whose time field was missing or unreadable, so the time read was used
    pub time_unparsable: u64,
}

/// Turns records into rows. One per input; cheap to build.
#[derive(Debug, Clone)]
pub struct RowEncoder {
    /// `"host"` as a JSON string, escaped once.
    computer_json: String,
    time_field: Option<String>,
    max_field_bytes: usize,
}

impl RowEncoder {
    pub fn new(computer: &str, time_field: Option<String>) -> Self {
        RowEncoder {
            computer_json: json_string(computer),
            time_field,
            max_field_bytes: MAX_FIELD_BYTES,
        }
    }

    /// A text line → `{"TimeGenerated","RawData","Computer"[,"FilePath"]}`, the columns of Azure
    /// Monitor Agent's custom text log stream. `file_path_json` is the path already escaped by
    /// [`json_string`]; `time_read` is the RFC 3339 time the line was read.
    /// `cut` says the reader already cut the line at the field limit.
    #[allow(clippy::too_many_arguments)]
    pub fn text(
        &self,
        line: &str,
        cut: bool,
        time_read: &str,
        file_path_json: Option<&str>,
        out: &mut Vec<u8>,
        notes: &mut RowNotes,
    ) {
        let line = self.truncate(line, cut, notes);
        out.extend_from_slice(b"{\"TimeGenerated\":\"");
        out.extend_from_slice(time_read.as_bytes());
        out.extend_from_slice(b"\",\"RawData\":");
        write_json_string(line, out);
        out.extend_from_slice(b",\"Computer\":");
        out.extend_from_slice(self.computer_json.as_bytes());
        if let Some(path) = file_path_json {
            out.extend_from_slice(b",\"FilePath\":");
            out.extend_from_slice(path.as_bytes());
        }
        out.push(b'}');
    }

    /// A JSON object's text → the row: `TimeGenerated` first (resolved as in [`Self::object`]),
    /// then every other member with its value copied verbatim, except string values over the
    /// field limit, which are cut. `Err` is the reason the text is not a row; `out` is then
    /// left as it was.
    pub fn json(
        &self,
        text: &str,
        time_read: &str,
        out: &mut Vec<u8>,
        notes: &mut RowNotes,
    ) -> Result<(), String> {
        let obj = raw_object::parse(text)?;
        let key = self.time_field.as_deref().unwrap_or("TimeGenerated");
        let (found, time) = match obj.members.iter().find(|(k, _)| k == key) {
            Some((_, v)) => (true, parse_time_raw(v)),
            None => (false, None),
        };
        if time.is_none() && (found || self.time_field.is_some()) {
            notes.time_unparsable += 1;
        }
        out.extend_from_slice(b"{\"TimeGenerated\":\"");
        match time {
            Some(ts) => out.extend_from_slice(&rfc3339_utc_bytes(ts)),
            None => out.extend_from_slice(time_read.as_bytes()),
        }
        out.push(b'"');
        for (k, v) in &obj.members {
            if k == "TimeGenerated" {
                continue;
            }
            out.push(b',');
            match k {
                // Borrowed means the key had no escapes in the source: its text is already a
                // valid JSON string body.
                std::borrow::Cow::Borrowed(key) => {
                    out.push(b'"');
                    out.extend_from_slice(key.as_bytes());
                    out.push(b'"');
                }
                std::borrow::Cow::Owned(key) => write_json_string(key, out),
            }
            out.push(b':');
            let raw = v.get();
            if raw.len() > self.max_field_bytes {
                if let Some(s) = raw_object::raw_str(v) {
                    if s.len() > self.max_field_bytes {
                        notes.truncated_fields += 1;
                        write_json_string(&s[..floor_char_boundary(&s, self.max_field_bytes)], out);
                        continue;
                    }
                }
            }
            out.extend_from_slice(raw.as_bytes());
        }
        out.push(b'}');
        Ok(())
    }

    /// A JSON or CSV object → the same object with `TimeGenerated` resolved: from the time field
    /// when one is configured, else the object's own `TimeGenerated`, else the time read; always
    /// rewritten as RFC 3339 UTC. Top-level string values over the field limit are truncated.
    pub fn object(
        &self,
        mut obj: Map<String, Value>,
        time_read: &str,
        out: &mut Vec<u8>,
        notes: &mut RowNotes,
    ) {
        let key = self.time_field.as_deref().unwrap_or("TimeGenerated");
        let time = match obj.get(key) {
            Some(v) => match parse_time_value(v) {
                Some(ts) => rfc3339_utc(ts),
                None => {
                    notes.time_unparsable += 1;
                    time_read.to_string()
                }
            },
            None => {
                if self.time_field.is_some() {
                    notes.time_unparsable += 1;
                }
                time_read.to_string()
            }
        };
        obj.insert("TimeGenerated".to_string(), Value::String(time));
        for v in obj.values_mut() {
            if let Value::String(s) = v {
                if s.len() > self.max_field_bytes {
                    let keep = floor_char_boundary(s, self.max_field_bytes);
                    s.truncate(keep);
                    notes.truncated_fields += 1;
                }
            }
        }
        // Serializing a Map of Values into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &obj);
    }

    fn truncate<'a>(&self, s: &'a str, cut: bool, notes: &mut RowNotes) -> &'a str {
        if s.len() <= self.max_field_bytes {
            if cut {
                notes.truncated_fields += 1;
            }
            return s;
        }
        notes.truncated_fields += 1;
        &s[..floor_char_boundary(s, self.max_field_bytes)]
    }
}

/// The largest index ≤ `max` that is a character boundary of `s`.
pub fn floor_char_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `s` as a JSON string literal, quotes included.
pub fn json_string(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    write_json_string(s, &mut out);
    // serde_json writes valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

fn write_json_string(s: &str, out: &mut Vec<u8>) {
    // Serializing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: &str = "2026-01-02T03:04:05.000000Z";

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    fn encode(enc: &RowEncoder, v: Value) -> (Value, RowNotes) {
        let mut out = Vec::new();
        let mut notes = RowNotes::default();
        enc.object(obj(v), T, &mut out, &mut notes);
        (serde_json::from_slice(&out).expect("json"), notes)
    }

    #[test]
    fn text_rows_have_the_ama_columns() {
        let enc = RowEncoder::new("web-01", None);
        let mut out = Vec::new();
        let mut notes = RowNotes::default();
        let path = json_string("/var/log/app.log");
        enc.text("GET / \"q\"\t", false, T, Some(&path), &mut out, &mut notes);
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            v,
            json!({"TimeGenerated": T, "RawData": "GET / \"q\"\t", "Computer": "web-01", "FilePath": "/var/log/app.log"})
        );
        out.clear();
        enc.text("x", false, T, None, &mut out, &mut notes);
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert!(v.get("FilePath").is_none());
        assert_eq!(notes, RowNotes::default());
    }

    #[test]
    fn time_generated_is_resolved_in_order() {
        let plain = RowEncoder::new("h", None);
        let with_field = RowEncoder::new("h", Some("ts".into()));
        let cases = [
            // (encoder, input, want TimeGenerated, want unparsable count)
            (&plain, json!({"a": 1}), T, 0),
            (
                &plain,
                json!({"TimeGenerated": "2020-05-06T07:08:09+02:00"}),
                "2020-05-06T05:08:09.000000Z",
                0,
            ),
            (&plain, json!({"TimeGenerated": "garbage"}), T, 1),
            (
                &with_field,
                json!({"ts": 1588741689}),
                "2020-05-06T05:08:09.000000Z",
                0,
            ),
            (
                &with_field,
                json!({"ts": "2020-05-06 05:08:09.5"}),
                "2020-05-06T05:08:09.500000Z",
                0,
            ),
            (&with_field, json!({"ts": "no"}), T, 1),
            (&with_field, json!({"other": 1}), T, 1),
            (
                &with_field,
                json!({"ts": 1588741689, "TimeGenerated": "2001-01-01T00:00:00Z"}),
                "2020-05-06T05:08:09.000000Z",
                0,
            ),
        ];
        for (enc, input, want, bad) in cases {
            let (v, notes) = encode(enc, input.clone());
            assert_eq!(v["TimeGenerated"], json!(want), "{input}");
            assert_eq!(notes.time_unparsable, bad, "{input}");
        }
        // the source field is kept
        let (v, _) = encode(&with_field, json!({"ts": 1588741689, "msg": "m"}));
        assert_eq!(v["ts"], json!(1588741689));
        assert_eq!(v["msg"], json!("m"));
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let enc = RowEncoder::new("h", None);
        // 'é' is two bytes: 40,000 of them is 80,000 bytes, and 65,536 is a boundary;
        // shift by one byte so the cut falls inside a character.
        let long = format!("a{}", "é".repeat(40_000));
        let (v, notes) = encode(&enc, json!({"m": long, "short": "s"}));
        let m = v["m"].as_str().expect("string");
        assert_eq!(m.len(), MAX_FIELD_BYTES - 1);
        assert!(long.starts_with(m));
        assert_eq!(notes.truncated_fields, 1);

        let mut out = Vec::new();
        let mut notes = RowNotes::default();
        enc.text(&long, false, T, None, &mut out, &mut notes);
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            v["RawData"].as_str().map(str::len),
            Some(MAX_FIELD_BYTES - 1)
        );
        assert_eq!(notes.truncated_fields, 1);
    }

    #[test]
    fn the_json_fast_path_makes_the_same_rows_as_the_object_path() {
        let plain = RowEncoder::new("h", None);
        let with_field = RowEncoder::new("h", Some("ts".into()));
        let long = "é".repeat(40_000);
        let inputs = [
            json!({"a": 1, "b": {"c": [1, 2.5, null]}, "s": "x\ty"}),
            json!({"TimeGenerated": "2020-05-06T07:08:09+02:00", "m": "m"}),
            json!({"TimeGenerated": "garbage"}),
            json!({"ts": 1588741689, "k": true}),
            json!({"ts": "no"}),
            json!({"m": long}),
            json!({}),
        ];
        for enc in [&plain, &with_field] {
            for input in &inputs {
                let text = input.to_string();
                let (want, want_notes) = encode(enc, input.clone());
                let mut out = Vec::new();
                let mut notes = RowNotes::default();
                enc.json(&text, T, &mut out, &mut notes).expect("row");
                let got: Value = serde_json::from_slice(&out).expect("json");
                assert_eq!(got, want, "{text}");
                assert_eq!(notes, want_notes, "{text}");
            }
        }
        let mut out = Vec::new();
        assert!(plain
            .json("[1]", T, &mut out, &mut RowNotes::default())
            .is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn floor_char_boundary_never_splits_a_character() {
        let s = "aé€😀";
        for max in 0..=s.len() + 2 {
            let i = floor_char_boundary(s, max);
            assert!(s.is_char_boundary(i) && i <= max.min(s.len()));
        }
    }
}
