//! One type that turns chunks of an input, in any format, into records.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::csv::{header_names, split_record, CsvSplit};
use super::format::{sniff, Format};
use super::json_stream::{JsonFramer, JsonRecord};
use super::lines::{Line, LineSplitter};
use super::parse::{LineEvents, OnMismatch, ParseCounts, Parser, SyslogParser, TextRules};
use crate::transform::row::floor_char_boundary;

/// Dead-letter samples of refused records keep at most this much of the raw text.
const SAMPLE_BYTES: usize = 64 * 1024;

/// A record read from an input.
#[derive(Debug)]
pub enum Record<'a> {
    /// A text line (format `text`).
    Line {
        text: Cow<'a, str>,
        number: u64,
        truncated: bool,
    },
    /// The text of one JSON value that should be an object (formats `ndjson`, `json`); the row
    /// encoder parses it, and refuses it when it is not an object.
    Json { text: Cow<'a, str>, number: u64 },
    /// An object built here (formats `csv`, `regex`, `logfmt`, `syslog`).
    Object {
        map: Map<String, Value>,
        number: u64,
    },
    /// Refused: not a row, and why. `raw` is the record's text (cut to 64 KiB).
    Bad {
        reason: String,
        raw: Cow<'a, str>,
        number: u64,
    },
}

#[derive(Debug)]
enum Kind {
    Text(LineSplitter),
    Ndjson(LineSplitter),
    Json(JsonFramer),
    Csv(LineSplitter, CsvState),
    /// Text lines through a parser and/or multiline joining.
    Events(LineSplitter, Box<LineEvents>),
}

#[derive(Debug, Default)]
struct CsvState {
    header: Option<Vec<String>>,
    pending: String,
    pending_from: u64,
}

/// Feeds on chunks of one input; `auto` is resolved from the first bytes.
#[derive(Debug)]
pub struct Decoder {
    format: Format,
    max_record: usize,
    kind: Option<Kind>,
    /// Set for parsed or multiline text: the rules `auto` or a parser format uses.
    rules: Option<Arc<TextRules>>,
}

impl Decoder {
    /// `max_record` bounds the memory held for one record; longer ones are cut (text) or
    /// refused (structured formats).
    /// `regex` needs a pattern: give it with [`Decoder::with_rules`]; here it reads as text.
    pub fn new(format: Format, max_record: usize) -> Self {
        let rules = match format {
            Format::Logfmt => Some(Parser::Logfmt),
            Format::Syslog => Some(Parser::Syslog(SyslogParser::default())),
            _ => None,
        }
        .map(|p| Arc::new(TextRules::new(p, OnMismatch::Raw, None)));
        Self::build(format, max_record, rules)
    }

    /// A decoder of text lines through `rules` (a parser, multiline joining, or both).
    pub fn with_rules(rules: Arc<TextRules>, max_record: usize) -> Self {
        Self::build(Format::Text, max_record, Some(rules))
    }

    fn build(format: Format, max_record: usize, rules: Option<Arc<TextRules>>) -> Self {
        let mut d = Decoder {
            format,
            max_record,
            kind: None,
            rules,
        };
        if format != Format::Auto {
            d.kind = Some(d.make(format));
        }
        d
    }

    /// The format in use (`auto` until the first bytes were seen).
    pub fn format(&self) -> Format {
        self.format
    }

    fn make(&self, format: Format) -> Kind {
        // Text lines longer than the field limit are cut anyway, so hold no more than that.
        let text_cap = crate::transform::row::MAX_FIELD_BYTES;
        // A line one byte over the cap tells "too long" from "exactly the cap".
        let record_cap = self.max_record + 1;
        if let Some(rules) = &self.rules {
            let events = Box::new(LineEvents::new(rules.clone()));
            return Kind::Events(LineSplitter::new(text_cap), events);
        }
        match format {
            Format::Auto
            | Format::Text
            | Format::Regex
            | Format::Logfmt
            | Format::Syslog
            | Format::Raw => Kind::Text(LineSplitter::new(text_cap)),
            Format::Ndjson => Kind::Ndjson(LineSplitter::new(record_cap)),
            Format::Json => Kind::Json(JsonFramer::new(record_cap)),
            Format::Csv => Kind::Csv(LineSplitter::new(record_cap), CsvState::default()),
        }
    }

    pub fn feed(&mut self, mut chunk: &[u8], emit: &mut dyn FnMut(Record<'_>)) {
        if self.kind.is_none() {
            if chunk.is_empty() {
                return;
            }
            self.format = sniff(chunk);
            self.kind = Some(self.make(self.format));
        }
        if let Some(rest) = chunk.strip_prefix(b"\xEF\xBB\xBF") {
            // A byte-order mark at the very start of an input is not data.
            if self.at_start() {
                chunk = rest;
            }
        }
        let max = self.max_record;
        match &mut self.kind {
            Some(Kind::Text(s)) => s.feed(chunk, &mut |l| text_line(l, emit)),
            Some(Kind::Ndjson(s)) => s.feed(chunk, &mut |l| ndjson_line(l, max, emit)),
            Some(Kind::Json(f)) => f.feed(chunk, &mut |r| json_record(r, max, emit)),
            Some(Kind::Csv(s, st)) => s.feed(chunk, &mut |l| csv_line(l, st, max, emit)),
            Some(Kind::Events(s, ev)) => s.feed(chunk, &mut |l| ev.line(l, &mut |r, _| emit(r))),
            None => {}
        }
    }

    /// At end of input: the last record without a trailing newline, and any open one.
    pub fn finish(&mut self, emit: &mut dyn FnMut(Record<'_>)) {
        let max = self.max_record;
        match &mut self.kind {
            Some(Kind::Text(s)) => s.finish(&mut |l| text_line(l, emit)),
            Some(Kind::Ndjson(s)) => s.finish(&mut |l| ndjson_line(l, max, emit)),
            Some(Kind::Json(f)) => f.finish(&mut |r| json_record(r, max, emit)),
            Some(Kind::Events(s, ev)) => {
                s.finish(&mut |l| ev.line(l, &mut |r, _| emit(r)));
                ev.flush(&mut |r, _| emit(r));
            }
            Some(Kind::Csv(s, st)) => {
                s.finish(&mut |l| csv_line(l, st, max, emit));
                if !st.pending.is_empty() {
                    let raw = std::mem::take(&mut st.pending);
                    emit(Record::Bad {
                        reason: "CSV record ends inside a quoted field".into(),
                        raw: Cow::Owned(sample(&raw).to_string()),
                        number: st.pending_from,
                    });
                }
            }
            None => {}
        }
    }

    /// The bytes of the unfinished line (of line formats), handed out and forgotten: what a
    /// stopped input gives back to its stream, for the next reader (a reload's) to begin with.
    /// A JSON value under way, a quoted CSV record or a multiline event are not given back.
    pub fn take_unread(&mut self) -> Vec<u8> {
        match &mut self.kind {
            Some(Kind::Text(s))
            | Some(Kind::Ndjson(s))
            | Some(Kind::Csv(s, _))
            | Some(Kind::Events(s, _)) => s.take_partial(),
            Some(Kind::Json(_)) | None => Vec::new(),
        }
    }

    /// Emits a pending multiline event (its `timeout` passed without a new line).
    pub fn flush_pending(&mut self, emit: &mut dyn FnMut(Record<'_>)) {
        if let Some(Kind::Events(_, ev)) = &mut self.kind {
            ev.flush(&mut |r, _| emit(r));
        }
    }

    /// How long a pending multiline event may wait for its next line; `None` when none is.
    pub fn pending_timeout(&self) -> Option<Duration> {
        match &self.kind {
            Some(Kind::Events(_, ev)) => ev.pending_timeout(),
            _ => None,
        }
    }

    /// Parse failures and multiline cuts since the last call.
    pub fn take_parse_counts(&mut self) -> ParseCounts {
        match &mut self.kind {
            Some(Kind::Events(_, ev)) => ev.take_counts(),
            _ => ParseCounts::default(),
        }
    }

    fn at_start(&self) -> bool {
        match &self.kind {
            Some(Kind::Text(s))
            | Some(Kind::Ndjson(s))
            | Some(Kind::Csv(s, _))
            | Some(Kind::Events(s, _)) => s.pending_bytes() == 0 && s.lines_seen() == 0,
            Some(Kind::Json(f)) => f.pending_bytes() == 0 && f.records_seen() == 0,
            None => true,
        }
    }
}

/// The start of a refused record's text, as kept in the dead-letter file.
pub fn sample(s: &str) -> &str {
    &s[..floor_char_boundary(s, SAMPLE_BYTES)]
}

pub(crate) fn lossy(bytes: &[u8], cut: bool) -> Cow<'_, str> {
    let bytes = if cut { trim_partial_char(bytes) } else { bytes };
    utf8_lossy(bytes)
}

/// `String::from_utf8_lossy`, but the common case — valid UTF-8 — checked first with the
/// SIMD validator, which is several times faster than the lossy scan.
pub fn utf8_lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// A line cut at a byte cap may end inside a character: drop that partial character rather than
/// turning it into U+FFFD.
fn trim_partial_char(bytes: &[u8]) -> &[u8] {
    match std::str::from_utf8(bytes) {
        Err(e) if e.error_len().is_none() => &bytes[..e.valid_up_to()],
        _ => bytes,
    }
}

/// One line of a line-oriented format (`text`, `ndjson`) as a record; none for a blank line.
/// The decoder uses it, and so does the file tailer's input, which frames lines itself.
pub fn line_record(format: Format, l: Line<'_>, max: usize, emit: &mut dyn FnMut(Record<'_>)) {
    match format {
        Format::Ndjson | Format::Json => ndjson_line(l, max, emit),
        _ => text_line(l, emit),
    }
}

fn text_line(l: Line<'_>, emit: &mut dyn FnMut(Record<'_>)) {
    if l.bytes.is_empty() {
        return;
    }
    emit(Record::Line {
        text: lossy(l.bytes, l.truncated),
        number: l.number,
        truncated: l.truncated,
    });
}

fn too_long(number: u64, max: usize, raw: &[u8]) -> Record<'_> {
    Record::Bad {
        reason: format!("record is longer than {max} bytes, the request cap"),
        raw: Cow::Owned(sample(&lossy(raw, true)).to_string()),
        number,
    }
}

fn ndjson_line(l: Line<'_>, max: usize, emit: &mut dyn FnMut(Record<'_>)) {
    if l.bytes.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    if l.truncated || l.bytes.len() > max {
        emit(too_long(l.number, max, l.bytes));
        return;
    }
    emit(Record::Json {
        text: utf8_lossy(l.bytes),
        number: l.number,
    });
}

fn json_record(r: JsonRecord<'_>, max: usize, emit: &mut dyn FnMut(Record<'_>)) {
    if r.oversize || r.bytes.len() > max {
        emit(too_long(r.number, max, r.bytes));
        return;
    }
    let text = utf8_lossy(r.bytes);
    if r.unterminated {
        emit(Record::Bad {
            reason: "input ends inside this JSON record".into(),
            raw: Cow::Owned(sample(&text).to_string()),
            number: r.number,
        });
        return;
    }
    emit(Record::Json {
        text,
        number: r.number,
    });
}

/// CSV records of a file read line by line (a tailed file): the header is its first line, a
/// quoted field may carry a record over several lines.
#[derive(Debug, Default)]
pub struct CsvLines(CsvState);

impl CsvLines {
    /// The records of the next line, at most `max` bytes each.
    pub fn line(&mut self, l: Line<'_>, max: usize, emit: &mut dyn FnMut(Record<'_>)) {
        csv_line(l, &mut self.0, max, emit);
    }
}

fn csv_line(l: Line<'_>, st: &mut CsvState, max: usize, emit: &mut dyn FnMut(Record<'_>)) {
    let text = utf8_lossy(l.bytes);
    let (record, number) = if st.pending.is_empty() {
        if text.trim().is_empty() {
            return;
        }
        if l.truncated {
            emit(too_long(l.number, max, l.bytes));
            return;
        }
        (text, l.number)
    } else {
        st.pending.push('\n');
        st.pending.push_str(&text);
        if st.pending.len() > max || l.truncated {
            let raw = std::mem::take(&mut st.pending);
            emit(too_long(st.pending_from, max, raw.as_bytes()));
            return;
        }
        (Cow::Owned(std::mem::take(&mut st.pending)), st.pending_from)
    };
    match split_record(&record) {
        CsvSplit::Incomplete => {
            st.pending = record.into_owned();
            st.pending_from = number;
        }
        CsvSplit::Invalid(reason) => emit(Record::Bad {
            reason: format!("invalid CSV: {reason}"),
            raw: Cow::Owned(sample(&record).to_string()),
            number,
        }),
        CsvSplit::Fields(fields) => match &st.header {
            None => st.header = Some(header_names(fields)),
            Some(header) if header.len() != fields.len() => emit(Record::Bad {
                reason: format!(
                    "CSV row has {} fields, the header has {}",
                    fields.len(),
                    header.len()
                ),
                raw: Cow::Owned(sample(&record).to_string()),
                number,
            }),
            Some(header) => {
                let map = header
                    .iter()
                    .cloned()
                    .zip(fields.into_iter().map(Value::String))
                    .collect();
                emit(Record::Object { map, number });
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, PartialEq)]
    enum R {
        Line(String, u64, bool),
        Obj(Value, u64),
        Bad(String, u64),
    }

    fn decode(format: Format, chunks: &[&[u8]], max: usize) -> (Vec<R>, Format) {
        let mut d = Decoder::new(format, max);
        let mut out = Vec::new();
        let mut emit = |r: Record<'_>| {
            out.push(match r {
                Record::Line {
                    text,
                    number,
                    truncated,
                } => R::Line(text.into_owned(), number, truncated),
                Record::Object { map, number } => R::Obj(Value::Object(map), number),
                // the row encoder's parse decides; mirror it here
                Record::Json { text, number } => match crate::transform::raw_object::parse(&text) {
                    Ok(_) => R::Obj(serde_json::from_str(&text).expect("valid"), number),
                    Err(reason) => R::Bad(reason, number),
                },
                Record::Bad { reason, number, .. } => R::Bad(reason, number),
            })
        };
        for c in chunks {
            d.feed(c, &mut emit);
        }
        d.finish(&mut emit);
        (out, d.format())
    }

    #[test]
    fn text_lines_skip_blanks_and_replace_bad_utf8() {
        let (got, _) = decode(
            Format::Text,
            &[b"\xEF\xBB\xBFone\n\ntw\xFFo\r\nthree"],
            1000,
        );
        assert_eq!(
            got,
            vec![
                R::Line("one".into(), 1, false),
                R::Line("tw\u{FFFD}o".into(), 3, false),
                R::Line("three".into(), 4, false),
            ]
        );
    }

    #[test]
    fn ndjson_refuses_bad_lines_and_keeps_going() {
        let input = b"{\"a\":1}\nnot json\n[1,2]\n\n{\"b\":\"\xFF\"}\n";
        let (got, _) = decode(Format::Ndjson, &[input], 1000);
        assert_eq!(got[0], R::Obj(json!({"a":1}), 1));
        assert!(matches!(&got[1], R::Bad(r, 2) if r.starts_with("invalid JSON")));
        assert!(matches!(&got[2], R::Bad(r, 3) if r.contains("an array")));
        assert_eq!(got[3], R::Obj(json!({"b":"\u{FFFD}"}), 5));
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn ndjson_line_over_the_cap_is_refused() {
        let long = format!("{{\"a\":\"{}\"}}\n{{\"b\":2}}\n", "x".repeat(100));
        let (got, _) = decode(Format::Ndjson, &[long.as_bytes()], 50);
        assert!(matches!(&got[0], R::Bad(r, 1) if r.contains("longer than 50")));
        assert_eq!(got[1], R::Obj(json!({"b":2}), 2));
    }

    #[test]
    fn auto_sniffs_the_first_bytes() {
        let (got, f) = decode(Format::Auto, &[b"  {\"a\":1}\n{\"a\":2}\n"], 1000);
        assert_eq!(f, Format::Ndjson);
        assert_eq!(got.len(), 2);
        let (got, f) = decode(Format::Auto, &[b"[{\"a\":1},", b"{\"a\":2}]"], 1000);
        assert_eq!(f, Format::Json);
        assert_eq!(got[1], R::Obj(json!({"a":2}), 2));
        let (_, f) = decode(Format::Auto, &[b"plain"], 1000);
        assert_eq!(f, Format::Text);
    }

    #[test]
    fn csv_reads_header_quotes_and_refuses_ragged_rows() {
        let input =
            b"name,msg\r\nal,\"hi, there\"\nbo,\"two\nlines\"\nragged\n,\"x\"\"y\"\n\"open,1\n";
        let (got, _) = decode(Format::Csv, &[input], 1000);
        assert_eq!(got[0], R::Obj(json!({"name":"al","msg":"hi, there"}), 2));
        assert_eq!(got[1], R::Obj(json!({"name":"bo","msg":"two\nlines"}), 3));
        assert!(matches!(&got[2], R::Bad(r, 5) if r.contains("1 fields, the header has 2")));
        assert_eq!(got[3], R::Obj(json!({"name":"","msg":"x\"y"}), 6));
        assert!(matches!(&got[4], R::Bad(r, 7) if r.contains("quoted")));
        assert_eq!(got.len(), 5);
    }

    #[test]
    fn json_array_elements_are_rows() {
        let (got, _) = decode(Format::Json, &[b"[{\"a\":1}, 5, {\"a\":"], 1000);
        assert_eq!(got[0], R::Obj(json!({"a":1}), 1));
        assert!(matches!(&got[1], R::Bad(r, 2) if r.contains("a number")));
        assert!(matches!(&got[2], R::Bad(r, 3) if r.contains("ends inside")));
    }

    #[test]
    fn parser_formats_make_objects_and_keep_unmatched_lines() {
        let (got, _) = decode(Format::Logfmt, &[b"a=1 b=\"x\"\nprose\n", b"c=2"], 1000);
        assert_eq!(
            got,
            vec![
                R::Obj(json!({"a":"1","b":"x"}), 1),
                R::Line("prose".into(), 2, false),
                R::Obj(json!({"c":"2"}), 3),
            ]
        );
        let (got, _) = decode(
            Format::Syslog,
            &[b"\xEF\xBB\xBF<13>1 - h a - - - m\n"],
            1000,
        );
        assert!(matches!(&got[0], R::Obj(v, 1) if v["HostName"] == "h"));
        // regex without a pattern cannot parse: it reads as text
        let (got, _) = decode(Format::Regex, &[b"x\n"], 1000);
        assert_eq!(got, vec![R::Line("x".into(), 1, false)]);
    }

    #[test]
    fn the_unfinished_line_is_given_back_for_the_next_reader() {
        for format in [Format::Text, Format::Ndjson] {
            let mut old = Decoder::new(format, 1000);
            let mut got = Vec::new();
            old.feed(b"{\"a\":1}\n{\"b\":", &mut |r| got.push(format!("{r:?}")));
            assert_eq!(got.len(), 1);
            let unread = old.take_unread();
            assert_eq!(unread, b"{\"b\":");
            assert!(old.take_unread().is_empty(), "given back once");
            let mut next = Decoder::new(format, 1000);
            next.feed(&unread, &mut |r| got.push(format!("{r:?}")));
            next.feed(b"2}\n", &mut |r| got.push(format!("{r:?}")));
            assert_eq!(got.len(), 2, "{format:?}: {got:?}");
            assert!(got[1].contains("b") && got[1].contains('2'), "{got:?}");
        }
        // Past the cap the rest of a line is skipped, not given back as a line of its own.
        let mut d = Decoder::new(Format::Text, 1000);
        d.feed(&vec![b'x'; 70_000], &mut |_| {});
        assert!(d.take_unread().is_empty());
    }

    #[test]
    fn a_pending_multiline_event_waits_for_its_timeout_or_the_end() {
        use crate::input::multiline::{MultilineRules, DEFAULT_TIMEOUT};
        let re =
            crate::input::parse::RegexParser::new(r"(?s)^(?P<First>\S+)(?P<Rest>.*)$").expect("re");
        let ml = MultilineRules::new(Some(r"^\S"), None, DEFAULT_TIMEOUT, 10, 1000).expect("ml");
        let rules = TextRules::new(Parser::Regex(re), OnMismatch::Raw, Some(ml));
        let mut d = Decoder::with_rules(Arc::new(rules), 1000);
        let mut got = Vec::new();
        d.feed(b"one\n two\nthree\n", &mut |r| got.push(format!("{r:?}")));
        assert_eq!(got.len(), 1, "three waits for more lines");
        assert_eq!(d.pending_timeout(), Some(DEFAULT_TIMEOUT));
        d.flush_pending(&mut |r| got.push(format!("{r:?}")));
        assert_eq!(d.pending_timeout(), None);
        d.feed(b"four", &mut |r| got.push(format!("{r:?}")));
        d.finish(&mut |r| got.push(format!("{r:?}")));
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].contains(r#""Rest": String("\n two")"#), "{got:?}");
        assert!(got[2].contains("four"));
        assert_eq!(d.take_parse_counts(), ParseCounts::default());
    }
}
