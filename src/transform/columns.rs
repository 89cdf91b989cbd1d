//! DCR stream columns: names, declared types, and the coercion of values to those types.
//!
//! Azure drops a row, or a value, silently (a 204 and no data) when it does not match the
//! stream declaration, so values are made right here: a declared column gets a value of its type
//! or `null` (counted), and a field the stream does not declare is removed (counted, its name
//! logged once). The coercion table is in the README ("Columns, types and time").

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Write as _;

use serde_json::Value;

/// A DCR stream column type, as written in `streamDeclarations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Int,
    Long,
    Real,
    Boolean,
    Datetime,
    Dynamic,
}

use super::raw_object;
use super::row::{floor_char_boundary, write_json_string, RowNotes};
use super::time::{rfc3339_utc_bytes, TimeParser};

/// Azure's limit on a column name's length.
pub const MAX_COLUMN_NAME: usize = 45;

/// Checks a column name against Azure's rules: a letter first, then letters, digits and `_`, at
/// most 45 characters. `Err` says what is wrong.
pub fn validate_column_name(name: &str) -> Result<(), String> {
    let first = name.chars().next();
    if !first.is_some_and(|c| c.is_ascii_alphabetic()) {
        return Err(format!(
            "column name {name:?} must start with a letter (Azure's rule: a letter, then letters, \
             digits and _)"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!(
            "column name {name:?} has {c:?}; Azure allows only letters, digits and _"
        ));
    }
    if name.len() > MAX_COLUMN_NAME {
        return Err(format!(
            "column name {name:?} is {} characters; Azure allows at most {MAX_COLUMN_NAME}",
            name.len()
        ));
    }
    Ok(())
}

impl ColumnType {
    /// Reads a type as written in a DCR (`streamDeclarations` also spells `dateTime`).
    pub fn parse(s: &str) -> Result<ColumnType, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "string" => ColumnType::String,
            "int" => ColumnType::Int,
            "long" => ColumnType::Long,
            "real" => ColumnType::Real,
            "boolean" | "bool" => ColumnType::Boolean,
            "datetime" => ColumnType::Datetime,
            "dynamic" => ColumnType::Dynamic,
            "guid" => {
                return Err("guid is not a stream column type (Azure refuses it in \
                            streamDeclarations); declare string and convert with toguid() in \
                            the DCR's transformKql"
                    .to_string())
            }
            _ => {
                return Err(format!(
                    "unknown column type {s:?}; expected one of: string, int, long, real, \
                     boolean, datetime, dynamic"
                ))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Int => "int",
            ColumnType::Long => "long",
            ColumnType::Real => "real",
            ColumnType::Boolean => "boolean",
            ColumnType::Datetime => "datetime",
            ColumnType::Dynamic => "dynamic",
        }
    }
}

/// FNV-1a: column lookups run per field per row, on short keys, with names from the operator's
/// own configuration, so a DoS-resistant hash buys nothing here.
#[derive(Default)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// The declared columns of a stream, for lookups per field.
#[derive(Debug, Clone, Default)]
pub struct Columns {
    types: HashMap<Box<str>, ColumnType, BuildHasherDefault<Fnv>>,
}

impl Columns {
    pub fn new(declared: &BTreeMap<String, ColumnType>) -> Self {
        Columns {
            types: declared
                .iter()
                .map(|(k, v)| (k.as_str().into(), *v))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<ColumnType> {
        self.types.get(name).copied()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.types.contains_key(name)
    }
}

/// A value on its way into a row.
#[derive(Debug, Clone)]
pub enum Val<'a> {
    /// Valid JSON text (a raw value of the source line, or pre-encoded): copied verbatim when
    /// no type asks for a change.
    Json(&'a str),
    /// A string, not yet escaped.
    Str(Cow<'a, str>),
    /// A parsed value (CSV and parser records).
    Value(Value),
}

/// What a value is, seen without building a tree.
enum View<'b> {
    Null,
    Bool(bool),
    /// A JSON number's text.
    Num(Cow<'b, str>),
    Str(Cow<'b, str>),
    /// An object or array, as JSON text.
    Compound(Cow<'b, str>),
}

impl Val<'_> {
    fn view(&self) -> View<'_> {
        match self {
            Val::Str(s) => View::Str(Cow::Borrowed(s)),
            Val::Json(t) => match t.as_bytes().first() {
                Some(b'"') => match raw_object::json_text_str(t) {
                    Some(s) => View::Str(s),
                    None => View::Null,
                },
                Some(b't') => View::Bool(true),
                Some(b'f') => View::Bool(false),
                Some(b'n') | None => View::Null,
                Some(b'{' | b'[') => View::Compound(Cow::Borrowed(t)),
                Some(_) => View::Num(Cow::Borrowed(t)),
            },
            Val::Value(v) => match v {
                Value::Null => View::Null,
                Value::Bool(b) => View::Bool(*b),
                Value::Number(n) => View::Num(Cow::Owned(n.to_string())),
                Value::String(s) => View::Str(Cow::Borrowed(s)),
                Value::Array(_) | Value::Object(_) => View::Compound(Cow::Owned(v.to_string())),
            },
        }
    }

    /// The string this value holds, if it is a string.
    pub fn as_str(&self) -> Option<Cow<'_, str>> {
        match self.view() {
            View::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Writes `v` unchanged (no declared type), cutting a string over `max` bytes.
pub fn write_plain(v: &Val<'_>, max: usize, out: &mut Vec<u8>, notes: &mut RowNotes) {
    match v {
        Val::Json(t) => {
            if t.len() > max && t.starts_with('"') {
                if let View::Str(s) = v.view() {
                    if s.len() > max {
                        write_cut(&s, max, out, notes);
                        return;
                    }
                }
            }
            out.extend_from_slice(t.as_bytes());
        }
        Val::Str(s) => write_cut(s, max, out, notes),
        Val::Value(Value::String(s)) => write_cut(s, max, out, notes),
        // Serializing a Value into a Vec cannot fail.
        Val::Value(other) => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// A string that stands for no value in a typed column: empty, blank, or `-` — the "no value"
/// mark of the Common Log Format (`%b` writes `-` for no body), RFC 5424's NILVALUE and many
/// text logs. In a `string` column it stays as written.
pub fn is_no_value(s: &str) -> bool {
    matches!(s.trim(), "" | "-")
}

/// Writes `v` as a value of type `ty`. When it cannot be one, writes `null` and counts it in
/// `notes.uncoercible`. `null` stays `null`, and a string of no value ([`is_no_value`]: empty,
/// blank or `-`) is `null` for every type but string, uncounted (an absent optional field is no
/// value, not a bad one).
pub fn write_typed(
    ty: ColumnType,
    v: &Val<'_>,
    time: &TimeParser,
    max: usize,
    out: &mut Vec<u8>,
    notes: &mut RowNotes,
) {
    if ty == ColumnType::String {
        if let Val::Json(t) = v {
            if t.starts_with('"') && t.len() <= max {
                out.extend_from_slice(t.as_bytes()); // already a string, within the limit
                return;
            }
        }
    }
    if ty == ColumnType::Dynamic {
        if let Val::Json(t) = v {
            if !t.starts_with('"') {
                out.extend_from_slice(t.as_bytes()); // any JSON but a string is kept as is
                return;
            }
        }
    }
    let view = v.view();
    if let View::Str(s) = &view {
        if ty != ColumnType::String && is_no_value(s) {
            out.extend_from_slice(b"null");
            return;
        }
    }
    let ok = match (ty, view) {
        (_, View::Null) => {
            out.extend_from_slice(b"null");
            true
        }
        (ColumnType::String, View::Str(s)) => {
            write_cut(&s, max, out, notes);
            true
        }
        (ColumnType::String, View::Num(n)) => {
            write_json_string(&n, out);
            true
        }
        (ColumnType::String, View::Bool(b)) => {
            out.extend_from_slice(if b { b"\"true\"" } else { b"\"false\"" });
            true
        }
        (ColumnType::String, View::Compound(t)) => {
            write_cut(&t, max, out, notes);
            true
        }
        (ColumnType::Int | ColumnType::Long, view) => {
            let range = if ty == ColumnType::Int {
                i64::from(i32::MIN)..=i64::from(i32::MAX)
            } else {
                i64::MIN..=i64::MAX
            };
            let n = match view {
                View::Num(t) => whole_number(&t),
                View::Str(s) => whole_number(s.trim()),
                View::Bool(b) => Some(i64::from(b)),
                _ => None,
            };
            match n.filter(|n| range.contains(n)) {
                Some(n) => {
                    // Writing to a Vec cannot fail.
                    let _ = write!(out, "{n}");
                    true
                }
                None => false,
            }
        }
        (ColumnType::Real, View::Num(t)) => {
            out.extend_from_slice(t.as_bytes());
            true
        }
        (ColumnType::Real, View::Str(s)) => match s.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => {
                let _ = serde_json::to_writer(&mut *out, &x);
                true
            }
            _ => false,
        },
        (ColumnType::Real, View::Bool(b)) => {
            out.push(if b { b'1' } else { b'0' });
            true
        }
        (ColumnType::Boolean, view) => {
            let b = match view {
                View::Bool(b) => Some(b),
                View::Num(t) => match t.parse::<f64>() {
                    Ok(0.0) => Some(false),
                    Ok(1.0) => Some(true),
                    _ => None,
                },
                View::Str(s) => parse_bool(s.trim()),
                _ => None,
            };
            match b {
                Some(b) => {
                    out.extend_from_slice(if b { b"true" } else { b"false" });
                    true
                }
                None => false,
            }
        }
        (ColumnType::Datetime, view) => {
            let ts = match view {
                View::Str(s) => time.parse_str(&s),
                View::Num(t) => time.parse_number(&t),
                _ => None,
            };
            match ts {
                Some(ts) => {
                    out.push(b'"');
                    out.extend_from_slice(&rfc3339_utc_bytes(ts));
                    out.push(b'"');
                    true
                }
                None => false,
            }
        }
        (ColumnType::Dynamic, View::Str(s)) => {
            let t = s.trim();
            if (t.starts_with('{') || t.starts_with('['))
                && serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok()
            {
                out.extend_from_slice(t.as_bytes()); // a string holding an object or array
            } else {
                write_cut(&s, max, out, notes);
            }
            true
        }
        (ColumnType::Dynamic, View::Num(t) | View::Compound(t)) => {
            out.extend_from_slice(t.as_bytes());
            true
        }
        (ColumnType::Dynamic, View::Bool(b)) => {
            out.extend_from_slice(if b { b"true" } else { b"false" });
            true
        }
        (ColumnType::Real, View::Compound(_)) => false,
    };
    if !ok {
        notes.uncoercible += 1;
        out.extend_from_slice(b"null");
    }
}

/// A number that is whole, written as an integer (`42`, `-7`) or as a decimal or exponent
/// whose value is whole (`42.0`, `4.2e1`). `4.2` is not: nothing is rounded away silently.
fn whole_number(t: &str) -> Option<i64> {
    if let Ok(n) = t.parse::<i64>() {
        return Some(n);
    }
    if !t
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    let x: f64 = t.parse().ok()?;
    // 2^63 is the first f64 past i64::MAX; every f64 below it in magnitude converts exactly.
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    (x.is_finite() && x.fract() == 0.0 && x.abs() < TWO_POW_63).then_some(x as i64)
}

/// The strings read as booleans, case-insensitively.
fn parse_bool(s: &str) -> Option<bool> {
    const TRUE: [&str; 5] = ["true", "yes", "y", "on", "1"];
    const FALSE: [&str; 5] = ["false", "no", "n", "off", "0"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(s)) {
        Some(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(s)) {
        Some(false)
    } else {
        None
    }
}

/// Writes `s` as a JSON string, cut to `max` bytes on a character boundary (counted).
fn write_cut(s: &str, max: usize, out: &mut Vec<u8>, notes: &mut RowNotes) {
    if s.len() > max {
        notes.truncated_fields += 1;
        write_json_string(&s[..floor_char_boundary(s, max)], out);
    } else {
        write_json_string(s, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const MAX: usize = 64 * 1024;

    fn typed(ty: ColumnType, v: Val<'_>) -> (Value, RowNotes) {
        let mut out = Vec::new();
        let mut notes = RowNotes::default();
        write_typed(ty, &v, &TimeParser::default(), MAX, &mut out, &mut notes);
        let text = String::from_utf8(out).expect("utf-8");
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        (v, notes)
    }

    /// Every case through all three value forms: raw JSON text, a parsed Value, and (for
    /// strings) an unescaped string.
    fn check(ty: ColumnType, input: Value, want: Value) {
        let text = input.to_string();
        let mut forms = vec![Val::Json(&text), Val::Value(input.clone())];
        if let Value::String(s) = &input {
            forms.push(Val::Str(Cow::Owned(s.clone())));
        }
        for v in forms {
            let (got, notes) = typed(ty, v.clone());
            assert_eq!(got, want, "{} {input} ({v:?})", ty.name());
            let blank = input.as_str().is_some_and(is_no_value);
            let bad = want.is_null() && !input.is_null() && !blank;
            assert_eq!(
                notes.uncoercible,
                u64::from(bad),
                "{} {input} counted",
                ty.name()
            );
        }
    }

    #[test]
    fn the_coercion_table() {
        use ColumnType::*;
        let cases = [
            (Int, json!("42"), json!(42)),
            (Int, json!(" -7 "), json!(-7)),
            (Int, json!(42), json!(42)),
            (Int, json!(42.0), json!(42)),
            (Int, json!("4.2e1"), json!(42)),
            (Int, json!("4.2"), Value::Null),
            (Int, json!(4.2), Value::Null),
            (Int, json!("2147483648"), Value::Null),
            (Int, json!(-2147483648i64), json!(-2147483648i64)),
            (Int, json!(true), json!(1)),
            (Int, json!("x"), Value::Null),
            (Int, json!(""), Value::Null),
            // `-` is no value (an access log's byte count of a body-less answer)
            (Int, json!("-"), Value::Null),
            (Long, json!(" - "), Value::Null),
            (Real, json!("-"), Value::Null),
            (Boolean, json!("-"), Value::Null),
            (Datetime, json!("-"), Value::Null),
            (String, json!("-"), json!("-")),
            (Dynamic, json!("-"), Value::Null),
            (Int, json!("--"), Value::Null),
            (Int, json!("-1"), json!(-1)),
            (Int, json!({"a": 1}), Value::Null),
            (Long, json!("9007199254740993"), json!(9007199254740993i64)),
            (Long, json!("9223372036854775807"), json!(i64::MAX)),
            (Long, json!("9223372036854775808"), Value::Null),
            (Long, json!("1e300"), Value::Null),
            (Real, json!("4.2"), json!(4.2)),
            (Real, json!(4.2), json!(4.2)),
            (Real, json!(7), json!(7)),
            (Real, json!(" 1e3"), json!(1000.0)),
            (Real, json!("NaN"), Value::Null),
            (Real, json!("inf"), Value::Null),
            (Real, json!("4,2"), Value::Null),
            (Real, json!(false), json!(0)),
            (Real, json!([1]), Value::Null),
            (Boolean, json!("true"), json!(true)),
            (Boolean, json!("FALSE"), json!(false)),
            (Boolean, json!("yes"), json!(true)),
            (Boolean, json!("off"), json!(false)),
            (Boolean, json!("1"), json!(true)),
            (Boolean, json!(0), json!(false)),
            (Boolean, json!(1.0), json!(true)),
            (Boolean, json!(2), Value::Null),
            (Boolean, json!("maybe"), Value::Null),
            (Boolean, json!(true), json!(true)),
            (String, json!(42), json!("42")),
            (String, json!(4.5), json!("4.5")),
            (String, json!(true), json!("true")),
            (String, json!("a\"b"), json!("a\"b")),
            (String, json!(""), json!("")),
            (String, json!({"a": [1, 2]}), json!("{\"a\":[1,2]}")),
            (
                Datetime,
                json!("2023-11-14T16:10:02.123+01:00"),
                json!("2023-11-14T15:10:02.123000Z"),
            ),
            (
                Datetime,
                json!(1699974602),
                json!("2023-11-14T15:10:02.000000Z"),
            ),
            (Datetime, json!("yesterday"), Value::Null),
            (Datetime, json!(true), Value::Null),
            (Dynamic, json!({"a": [1, null]}), json!({"a": [1, null]})),
            (Dynamic, json!("{\"a\": 1}"), json!({"a": 1})),
            (Dynamic, json!(" [1,2] "), json!([1, 2])),
            (Dynamic, json!("{not json"), json!("{not json")),
            (Dynamic, json!("text"), json!("text")),
            (Dynamic, json!(3), json!(3)),
            (Dynamic, json!(false), json!(false)),
        ];
        for (ty, input, want) in cases {
            check(ty, input, want);
        }
        for ty in [String, Int, Long, Real, Boolean, Datetime, Dynamic] {
            check(ty, Value::Null, Value::Null);
        }
    }

    #[test]
    fn long_strings_are_cut_whatever_the_type() {
        let long = "é".repeat(40_000); // 80,000 bytes
        for ty in [ColumnType::String, ColumnType::Dynamic] {
            let (v, notes) = typed(ty, Val::Value(json!(long)));
            assert_eq!(v.as_str().map(str::len), Some(MAX));
            assert_eq!(notes.truncated_fields, 1);
        }
        let text = json!(long).to_string();
        let (v, notes) = typed(ColumnType::String, Val::Json(&text));
        assert_eq!(v.as_str().map(str::len), Some(MAX));
        assert_eq!(notes.truncated_fields, 1);
        let mut out = Vec::new();
        let mut notes = RowNotes::default();
        write_plain(&Val::Json(&text), MAX, &mut out, &mut notes);
        assert_eq!(notes.truncated_fields, 1);
        assert_eq!(out.len(), MAX + 2);
    }

    #[test]
    fn column_names_follow_azures_rules() {
        for ok in ["a", "TimeGenerated", "Level_2", &"x".repeat(45)] {
            assert!(validate_column_name(ok).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("", "start with a letter"),
            ("1a", "start with a letter"),
            ("_ResourceId", "start with a letter"),
            ("my-field", "'-'"),
            ("a.b", "'.'"),
            ("naïve", "'ï'"),
            (&"x".repeat(46), "at most 45"),
        ] {
            let e = validate_column_name(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn types_read_as_azure_writes_them() {
        assert_eq!(ColumnType::parse("dateTime"), Ok(ColumnType::Datetime));
        assert_eq!(ColumnType::parse("Long"), Ok(ColumnType::Long));
        assert!(ColumnType::parse("guid").is_err_and(|e| e.contains("toguid")));
        assert!(ColumnType::parse("decimal").is_err_and(|e| e.contains("expected")));
    }

    proptest! {
        /// Whatever goes in, a typed value comes out as valid JSON of the declared type (or
        /// null, counted), and no input panics.
        #[test]
        fn coercion_always_yields_the_declared_type(s in any::<String>(), n in any::<i64>(), x in any::<f64>(), b in any::<bool>()) {
            use ColumnType::*;
            let inputs = [json!(s), json!(n), json!(x), json!(b), json!(n.to_string()), json!(x.to_string()), json!({"k": s.clone()})];
            for ty in [String, Int, Long, Real, Boolean, Datetime, Dynamic] {
                for input in &inputs {
                    let text = input.to_string();
                    for v in [Val::Json(&text), Val::Value(input.clone())] {
                        let (got, notes) = typed(ty, v);
                        let fits = match ty {
                            String => got.is_string(),
                            Int => got.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                            Long => got.is_i64() || got.is_u64() && got.as_u64() <= Some(i64::MAX as u64),
                            Real => got.is_number(),
                            Boolean => got.is_boolean(),
                            Datetime => got.as_str().is_some_and(|t| t.len() == 27 && t.ends_with('Z')),
                            Dynamic => true,
                        };
                        prop_assert!(fits || got.is_null(), "{} {} -> {}", ty.name(), input, got);
                        if got.is_null() && !input.as_str().is_some_and(is_no_value) {
                            prop_assert_eq!(notes.uncoercible, 1);
                        }
                    }
                }
            }
        }

        /// Integers survive int/long/string/real round trips exactly, from numbers and strings.
        #[test]
        fn integers_round_trip(n in any::<i64>()) {
            let (v, _) = typed(ColumnType::Long, Val::Value(json!(n.to_string())));
            prop_assert_eq!(v, json!(n));
            let (v, _) = typed(ColumnType::String, Val::Value(json!(n)));
            prop_assert_eq!(v, json!(n.to_string()));
            let (v, notes) = typed(ColumnType::Int, Val::Value(json!(n)));
            if i32::try_from(n).is_ok() {
                prop_assert_eq!(v, json!(n));
            } else {
                prop_assert!(v.is_null());
                prop_assert_eq!(notes.uncoercible, 1);
            }
        }
    }
}
