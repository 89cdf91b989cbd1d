//! Column types from sample rows: each value of each row (the rows `send` builds) is classified
//! as one of the DCR stream types, and a column's type is the narrowest that holds every value
//! seen — the type `send` would then write every value as, without turning one into `null`.
//!
//! | values seen (nulls and blank strings aside) | type |
//! |---|---|
//! | whole numbers within 32 bits | `int` |
//! | whole numbers, some beyond 32 bits (within 64) | `long` |
//! | numbers, some with a fraction or exponent (or beyond 64 bits) | `real` |
//! | `true` / `false` | `boolean` |
//! | strings that are ISO 8601 / RFC 3339 times the time parser reads | `datetime` |
//! | objects or arrays | `dynamic` |
//! | only strings, or a mix of the above (reported) | `string` |
//! | objects or arrays mixed with anything (reported) | `dynamic` |
//! | nothing but null | `string` (reported) |
//!
//! `TimeGenerated` is always `datetime`. How a string is read depends on where it came from
//! ([`Source`]): in JSON a string stays a string unless it is a time (`"42"` is text, and a
//! zip code `"01234"` keeps its zero); in CSV and parsed lines every value is text, so `42`,
//! `4.2`, `true` and `{"a":1}` are read as the number, boolean or object they spell — what
//! `send` does when the column is declared so (a bracketed `[…]` stays text: in log lines it
//! is a pid or a list far more often than JSON).

use std::collections::HashMap;

use crate::transform::columns::ColumnType;
use crate::transform::raw_object;
use crate::transform::row::floor_char_boundary;
use crate::transform::time::TimeParser;

/// A table holds at most this many columns (Azure Monitor workspace limits).
pub const MAX_TABLE_COLUMNS: usize = 500;
/// Columns tracked; names past this are only counted, so rows of ever-new keys cannot grow
/// memory.
const MAX_TRACKED: usize = MAX_TABLE_COLUMNS + 100;
/// Example values are kept this short.
const EXAMPLE_BYTES: usize = 40;

/// What one value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Boolean,
    Int,
    Long,
    Real,
    Datetime,
    String,
    Dynamic,
}

const KINDS: [Kind; 7] = [
    Kind::Boolean,
    Kind::Int,
    Kind::Long,
    Kind::Real,
    Kind::Datetime,
    Kind::String,
    Kind::Dynamic,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Boolean => "boolean",
            Kind::Int => "int",
            Kind::Long => "long",
            Kind::Real => "real",
            Kind::Datetime => "datetime",
            Kind::String => "string",
            Kind::Dynamic => "dynamic",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Where a row's values come from, which decides how a string is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A JSON record: its values have JSON types of their own.
    Json,
    /// CSV or a parsed line (regex, logfmt, syslog): values are text.
    Text,
    /// A text row (`RawData`, `Computer`, `FilePath`): strings, always.
    Line,
}

/// The kind of a value given as its JSON text; `None` for null and blank strings (no value:
/// `send` writes them as null in any column but a string one).
pub fn classify(raw: &str, source: Source, time: &TimeParser) -> Option<Kind> {
    match raw.as_bytes().first()? {
        b'n' => None,
        b't' | b'f' => Some(Kind::Boolean),
        b'{' | b'[' => Some(Kind::Dynamic),
        b'"' => {
            let s = raw_object::json_text_str(raw)?;
            classify_str(&s, source, time)
        }
        _ => Some(number_kind(raw)),
    }
}

/// A JSON number's kind: whole numbers by size, anything else `real`.
fn number_kind(t: &str) -> Kind {
    if t.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        return Kind::Real;
    }
    match t.parse::<i64>() {
        Ok(n) if i32::try_from(n).is_ok() => Kind::Int,
        Ok(_) => Kind::Long,
        Err(_) => Kind::Real, // beyond 64 bits: only a real holds it
    }
}

fn classify_str(s: &str, source: Source, time: &TimeParser) -> Option<Kind> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    if source == Source::Line {
        return Some(Kind::String);
    }
    if source == Source::Text {
        if t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("false") {
            return Some(Kind::Boolean);
        }
        if let Some(k) = text_number(t) {
            return Some(k);
        }
        // An object only: a bracketed list in a log line (`[31211]`, a pid) is text far more
        // often than JSON, and a string column holds it either way.
        if t.starts_with('{') && serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok() {
            return Some(Kind::Dynamic);
        }
    }
    if is_time(t, time) {
        return Some(Kind::Datetime);
    }
    Some(Kind::String)
}

/// A number written as text: `-?digits` without a leading zero (`007` is an identifier, not
/// seven), within 64 bits; or `-?digits.digits` with an optional exponent. Anything else
/// (`+1`, `1e5`, `0x1F`, a 30-digit id) stays text.
fn text_number(t: &str) -> Option<Kind> {
    let digits = t.strip_prefix('-').unwrap_or(t);
    let (int, rest) = digits.split_at(
        digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len()),
    );
    if int.is_empty() || (int.len() > 1 && int.starts_with('0')) {
        return None;
    }
    if rest.is_empty() {
        return match t.parse::<i64>() {
            Ok(n) if i32::try_from(n).is_ok() => Some(Kind::Int),
            Ok(_) => Some(Kind::Long),
            Err(_) => None,
        };
    }
    let frac = rest.strip_prefix('.')?;
    let (frac_digits, exp) = frac.split_at(
        frac.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len()),
    );
    if frac_digits.is_empty() {
        return None;
    }
    if !exp.is_empty() {
        let e = exp.strip_prefix(['e', 'E'])?;
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    t.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .map(|_| Kind::Real)
}

/// A time: shaped like an ISO 8601 date (`2026-05-01…`), and read by the parser `send` would
/// read the column with (so a declared `datetime` column gets every such value).
fn is_time(t: &str, time: &TimeParser) -> bool {
    let b = t.as_bytes();
    let date = b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit);
    date && time.parse_str(t).is_some()
}

/// The type a column gets from the kinds of its values, and whether they were a mix that does
/// not widen cleanly (reported: some values will not be what the type suggests).
pub fn resolve(kinds: &[Kind]) -> (ColumnType, bool) {
    let has = |k: Kind| kinds.contains(&k);
    let numbers = [Kind::Int, Kind::Long, Kind::Real];
    if kinds.is_empty() {
        return (ColumnType::String, false);
    }
    if kinds.iter().all(|k| numbers.contains(k)) {
        let ty = if has(Kind::Real) {
            ColumnType::Real
        } else if has(Kind::Long) {
            ColumnType::Long
        } else {
            ColumnType::Int
        };
        return (ty, false);
    }
    if let [one] = kinds {
        let ty = match one {
            Kind::Boolean => ColumnType::Boolean,
            Kind::Datetime => ColumnType::Datetime,
            Kind::Dynamic => ColumnType::Dynamic,
            _ => ColumnType::String,
        };
        return (ty, false);
    }
    if has(Kind::Dynamic) {
        (ColumnType::Dynamic, true)
    } else {
        (ColumnType::String, true)
    }
}

/// Where a value was seen: the input's index and line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    pub input: u32,
    pub line: u64,
}

/// The first value of one kind in a column.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The value's JSON text, cut to a few dozen bytes.
    pub text: String,
    pub at: At,
}

#[derive(Debug, Clone)]
struct Stats {
    name: String,
    present: u64,
    counts: [u64; KINDS.len()],
    examples: [Option<Example>; KINDS.len()],
}

/// One column as inferred.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    /// Rows that have the field (with any value, null included).
    pub present: u64,
    /// Each kind of value seen, how often, and its first example.
    pub kinds: Vec<(Kind, u64, Example)>,
    /// The values were a mix that does not widen cleanly (see [`resolve`]).
    pub mixed: bool,
}

impl Column {
    /// Rows with a value (not null, not blank).
    #[cfg(test)]
    pub fn values(&self) -> u64 {
        self.kinds.iter().map(|(_, n, _)| n).sum()
    }
}

/// What the sample says.
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    pub rows: u64,
    /// `TimeGenerated` first, then in the order they were first seen.
    pub columns: Vec<Column>,
    /// Field names beyond the ones tracked (more than a table can hold).
    pub untracked: u64,
    /// The time field, which became `TimeGenerated` and is not a column of its own.
    pub time_field: Option<String>,
}

impl Inference {
    /// The columns and their types, for a template or a config.
    pub fn declared(&self) -> Vec<(String, ColumnType)> {
        self.columns
            .iter()
            .map(|c| (c.name.clone(), c.ty))
            .collect()
    }
}

/// Collects the kinds of every value of the sample rows.
#[derive(Debug)]
pub struct Sampler {
    time: TimeParser,
    time_field: Option<String>,
    columns: Vec<Stats>,
    index: HashMap<String, usize>,
    rows: u64,
    untracked: u64,
}

impl Sampler {
    /// `time` reads times as `send` will (the shaping's parser); `time_field` is left out of the
    /// columns: it has become `TimeGenerated`.
    pub fn new(time: TimeParser, time_field: Option<String>) -> Self {
        let mut s = Sampler {
            time,
            time_field: time_field.filter(|f| f != "TimeGenerated"),
            columns: Vec::new(),
            index: HashMap::new(),
            rows: 0,
            untracked: 0,
        };
        s.column("TimeGenerated");
        s
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// One row (a JSON object, as `send` builds it). `Err` when it is not an object.
    pub fn add(&mut self, row: &str, source: Source, at: At) -> Result<(), String> {
        let obj = raw_object::parse(row)?;
        self.rows += 1;
        for (key, raw) in &obj.members {
            if self.time_field.as_deref() == Some(key.as_ref()) {
                continue;
            }
            let Some(i) = self.column(key) else {
                self.untracked += 1;
                continue;
            };
            let kind = if key == "TimeGenerated" {
                Some(Kind::Datetime) // always written as an RFC 3339 time
            } else {
                classify(raw, source, &self.time)
            };
            let c = &mut self.columns[i];
            c.present += 1;
            if let Some(k) = kind {
                c.counts[k.index()] += 1;
                c.examples[k.index()].get_or_insert_with(|| Example {
                    text: raw[..floor_char_boundary(raw, EXAMPLE_BYTES)].to_string(),
                    at,
                });
            }
        }
        Ok(())
    }

    /// The index of column `name`, added if there is room.
    fn column(&mut self, name: &str) -> Option<usize> {
        if let Some(&i) = self.index.get(name) {
            return Some(i);
        }
        if self.columns.len() >= MAX_TRACKED {
            return None;
        }
        self.index.insert(name.to_string(), self.columns.len());
        self.columns.push(Stats {
            name: name.to_string(),
            present: 0,
            counts: [0; KINDS.len()],
            examples: Default::default(),
        });
        Some(self.columns.len() - 1)
    }

    pub fn finish(self) -> Inference {
        let columns = self
            .columns
            .into_iter()
            .filter(|s| s.present > 0 || s.name == "TimeGenerated")
            .map(|s| {
                let kinds: Vec<(Kind, u64, Example)> = KINDS
                    .iter()
                    .filter_map(|k| {
                        let n = s.counts[k.index()];
                        let ex = s.examples[k.index()].clone()?;
                        (n > 0).then_some((*k, n, ex))
                    })
                    .collect();
                let seen: Vec<Kind> = kinds.iter().map(|(k, _, _)| *k).collect();
                let (ty, mixed) = if s.name == "TimeGenerated" {
                    (ColumnType::Datetime, false)
                } else {
                    resolve(&seen)
                };
                Column {
                    name: s.name,
                    ty,
                    present: s.present,
                    kinds,
                    mixed,
                }
            })
            .collect();
        Inference {
            rows: self.rows,
            columns,
            untracked: self.untracked,
            time_field: self.time_field,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Kind::*;

    fn kind(raw: &str, source: Source) -> Option<Kind> {
        classify(raw, source, &TimeParser::default())
    }

    #[test]
    fn json_values_keep_their_json_types() {
        let cases: &[(&str, Option<Kind>)] = &[
            ("null", None),
            ("true", Some(Boolean)),
            ("false", Some(Boolean)),
            ("0", Some(Int)),
            ("-2147483648", Some(Int)),
            ("2147483647", Some(Int)),
            ("2147483648", Some(Long)),
            ("-9223372036854775808", Some(Long)),
            ("9223372036854775808", Some(Real)),
            ("4.5", Some(Real)),
            ("1e3", Some(Real)),
            ("42.0", Some(Real)),
            ("{\"a\":1}", Some(Dynamic)),
            ("[]", Some(Dynamic)),
            ("\"\"", None),
            ("\"  \"", None),
            ("\"hello\"", Some(String)),
            ("\"42\"", Some(String)),
            ("\"01234\"", Some(String)),
            ("\"true\"", Some(String)),
            ("\"{\\\"a\\\":1}\"", Some(String)),
            ("\"2026-05-01T12:00:00Z\"", Some(Datetime)),
            ("\"2026-05-01T12:00:00.123+02:00\"", Some(Datetime)),
            ("\"2026-05-01 12:00:00\"", Some(Datetime)),
            ("\"2026-13-01T12:00:00Z\"", Some(String)),
            ("\"1699974602\"", Some(String)),
            ("\"May 1 12:00:00\"", Some(String)),
        ];
        for (raw, want) in cases {
            assert_eq!(kind(raw, Source::Json), *want, "{raw}");
        }
    }

    #[test]
    fn text_values_are_read_for_what_they_spell() {
        let cases: &[(&str, Option<Kind>)] = &[
            ("\"\"", None),
            ("\"42\"", Some(Int)),
            ("\"-7\"", Some(Int)),
            ("\"0\"", Some(Int)),
            ("\"5000000000\"", Some(Long)),
            ("\"99999999999999999999\"", Some(String)),
            ("\"007\"", Some(String)),
            ("\"-01\"", Some(String)),
            ("\"+1\"", Some(String)),
            ("\"0.25\"", Some(Real)),
            ("\"-3.5e-2\"", Some(Real)),
            ("\"1.\"", Some(String)),
            ("\".5\"", Some(String)),
            ("\"1e5\"", Some(String)),
            ("\"1.5e\"", Some(String)),
            ("\"0x1F\"", Some(String)),
            ("\"1,5\"", Some(String)),
            ("\"TRUE\"", Some(Boolean)),
            ("\"false\"", Some(Boolean)),
            ("\"yes\"", Some(String)),
            ("\"{\\\"a\\\":1}\"", Some(Dynamic)),
            ("\"[1, 2]\"", Some(String)),
            ("\"[31211]\"", Some(String)),
            ("\"{not json\"", Some(String)),
            ("\"2026-05-01T12:00:00Z\"", Some(Datetime)),
            ("\"10.0.0.1\"", Some(String)),
            ("\"1.2.3\"", Some(String)),
            ("\"GET /index.html\"", Some(String)),
            ("1234", Some(Int)),
        ];
        for (raw, want) in cases {
            assert_eq!(kind(raw, Source::Text), *want, "{raw}");
        }
        for raw in ["\"42\"", "\"true\"", "\"2026-05-01T12:00:00Z\"", "\"{}\""] {
            assert_eq!(kind(raw, Source::Line), Some(String), "{raw}");
        }
    }

    #[test]
    fn times_are_what_the_time_parser_reads() {
        let strict = TimeParser::new(Some("rfc3339"), None).expect("parser");
        let raw = "\"2026-05-01 12:00:00\"";
        assert_eq!(classify(raw, Source::Json, &strict), Some(String));
        let with_offset = "\"2026-05-01T12:00:00+02:00\"";
        assert_eq!(classify(with_offset, Source::Json, &strict), Some(Datetime));
        // A strftime time format reads only its own shape: ISO strings are not times then.
        let apache = TimeParser::new(Some("%d/%b/%Y:%H:%M:%S %z"), None).expect("parser");
        assert_eq!(classify(with_offset, Source::Json, &apache), Some(String));
    }

    #[test]
    fn the_widening_table() {
        let cases: &[(&[Kind], ColumnType, bool)] = &[
            (&[], ColumnType::String, false),
            (&[Int], ColumnType::Int, false),
            (&[Int, Long], ColumnType::Long, false),
            (&[Long], ColumnType::Long, false),
            (&[Int, Real], ColumnType::Real, false),
            (&[Int, Long, Real], ColumnType::Real, false),
            (&[Boolean], ColumnType::Boolean, false),
            (&[Datetime], ColumnType::Datetime, false),
            (&[String], ColumnType::String, false),
            (&[Dynamic], ColumnType::Dynamic, false),
            (&[Int, String], ColumnType::String, true),
            (&[Long, Real, String], ColumnType::String, true),
            (&[Datetime, String], ColumnType::String, true),
            (&[Boolean, Int], ColumnType::String, true),
            (&[Datetime, Long], ColumnType::String, true),
            (&[Int, Dynamic], ColumnType::Dynamic, true),
            (&[String, Dynamic], ColumnType::Dynamic, true),
        ];
        for (kinds, ty, mixed) in cases {
            assert_eq!(resolve(kinds), (*ty, *mixed), "{kinds:?}");
        }
    }

    fn at(line: u64) -> At {
        At { input: 0, line }
    }

    #[test]
    fn a_sample_becomes_columns() {
        let mut s = Sampler::new(TimeParser::default(), Some("ts".into()));
        let rows = [
            r#"{"TimeGenerated":"2026-05-01T12:00:00.000000Z","ts":"2026-05-01T12:00:00Z","n":1,"msg":"a","tags":{"k":1},"x":null}"#,
            r#"{"TimeGenerated":"2026-05-01T12:00:01.000000Z","ts":"2026-05-01T12:00:01Z","n":5000000000,"msg":"b","x":null}"#,
            r#"{"TimeGenerated":"2026-05-01T12:00:02.000000Z","n":"three","msg":"c","ok":true}"#,
        ];
        for (i, r) in rows.iter().enumerate() {
            s.add(r, Source::Json, at(i as u64 + 1)).expect("row");
        }
        assert!(s.add("[1]", Source::Json, at(4)).is_err());
        let inf = s.finish();
        assert_eq!(inf.rows, 3);
        assert_eq!(inf.time_field.as_deref(), Some("ts"));
        let got: Vec<(&str, ColumnType, bool, u64)> = inf
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.ty, c.mixed, c.present))
            .collect();
        assert_eq!(
            got,
            vec![
                ("TimeGenerated", ColumnType::Datetime, false, 3),
                ("n", ColumnType::String, true, 3),
                ("msg", ColumnType::String, false, 3),
                ("tags", ColumnType::Dynamic, false, 1),
                ("x", ColumnType::String, false, 2),
                ("ok", ColumnType::Boolean, false, 1),
            ]
        );
        let n = &inf.columns[1];
        let kinds: Vec<(Kind, u64, u64)> = n
            .kinds
            .iter()
            .map(|(k, c, e)| (*k, *c, e.at.line))
            .collect();
        assert_eq!(kinds, vec![(Int, 1, 1), (Long, 1, 2), (String, 1, 3)]);
        assert_eq!(n.kinds[2].2.text, "\"three\"");
        assert_eq!(inf.columns[4].values(), 0);
    }

    #[test]
    fn columns_past_the_limit_are_only_counted() {
        let mut s = Sampler::new(TimeParser::default(), None);
        let mut row = std::string::String::from("{\"TimeGenerated\":\"2026-05-01T12:00:00Z\"");
        for i in 0..MAX_TRACKED + 50 {
            row.push_str(&format!(",\"c{i}\":{i}"));
        }
        row.push('}');
        s.add(&row, Source::Json, at(1)).expect("row");
        s.add(&row, Source::Json, at(2)).expect("row");
        let inf = s.finish();
        assert_eq!(inf.columns.len(), MAX_TRACKED);
        assert_eq!(inf.untracked, 2 * 51);
        let long = "é".repeat(100);
        let mut s = Sampler::new(TimeParser::default(), None);
        s.add(&format!("{{\"v\":\"{long}\"}}"), Source::Json, at(1))
            .expect("row");
        let ex = &s.finish().columns[1].kinds[0].2.text;
        assert!(ex.len() <= EXAMPLE_BYTES && ex.starts_with("\"é"), "{ex}");
    }
}
