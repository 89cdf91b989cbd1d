//! Builds one DCR row, serialized, straight into a reusable buffer.
//!
//! Without shaping (no `time_format`/`timezone`, no field edits, no declared columns) a JSON
//! line's values are copied verbatim and only `TimeGenerated` is rewritten. With shaping, the
//! record's members are borrowed (raw JSON text, no value tree), edited, and each value is
//! written as its column's type. Every row starts with `{"TimeGenerated":"…"`, which the batcher
//! relies on to read a row's time (`max_time_span`).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::columns::{write_plain, write_typed, ColumnType, Columns, Val};
use super::fields::{FieldOps, Member};
use super::raw_object;
use super::time::{
    canonical_utc, fixed_rfc3339_seconds, parse_time_raw, rfc3339_utc_bytes, TimeParser,
};

pub use crate::azure::MAX_FIELD_BYTES;

/// Azure replaces a `TimeGenerated` older than this (relative to when it receives the row)...
const MAX_AGE_SECONDS: i64 = 2 * 86_400;
/// ...or further ahead than this with the time it received the row.
const MAX_AHEAD_SECONDS: i64 = 86_400;
/// Undeclared field names are logged one by one up to this many, so data with ever-new keys
/// cannot grow the set without bound.
const MAX_NAMED_UNDECLARED: usize = 100;

/// Things noticed while building rows, added to the run's counters by the caller.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RowNotes {
    /// values cut to [`MAX_FIELD_BYTES`]
    pub truncated_fields: u64,
    /// rows whose time field was missing or unreadable, so the time read was used
    pub time_unparsable: u64,
    /// values that could not be made their column's type, sent as null
    pub uncoercible: u64,
    /// fields removed because the stream does not declare them
    pub undeclared: u64,
    /// rows whose `TimeGenerated` is more than 2 days old or 1 day ahead (Azure replaces it)
    pub time_out_of_range: u64,
}

impl RowNotes {
    #[cfg(test)]
    pub fn add(&mut self, o: &RowNotes) {
        self.truncated_fields += o.truncated_fields;
        self.time_unparsable += o.time_unparsable;
        self.uncoercible += o.uncoercible;
        self.undeclared += o.undeclared;
        self.time_out_of_range += o.time_out_of_range;
    }
}

/// What an input asks of its rows beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Shaping {
    /// The input's name, for log lines.
    pub label: String,
    /// Source field holding the event time (default: the record's own `TimeGenerated`).
    pub time_field: Option<String>,
    /// How that field is read.
    pub time: TimeParser,
    /// `drop`, `rename`, `fields`.
    pub ops: FieldOps,
    /// The stream's declared columns; empty when not declared.
    pub columns: BTreeMap<String, ColumnType>,
}

/// The shaping an encoder applies.
#[derive(Debug, Default)]
struct Shape {
    time: TimeParser,
    ops: FieldOps,
    /// `None` when the stream's columns are not declared: values pass as they are.
    columns: Option<Columns>,
}

/// Lets one warning through a minute, by the second of the time read, and counts those it let
/// through (for tests of the rate limit).
#[derive(Debug)]
struct EveryMinute {
    last: AtomicI64,
    passed: AtomicU64,
}

impl EveryMinute {
    fn new() -> Self {
        EveryMinute {
            last: AtomicI64::new(i64::MIN),
            passed: AtomicU64::new(0),
        }
    }

    /// True when a warning may be logged at second `now`.
    fn pass(&self, now: i64) -> bool {
        let last = self.last.load(Relaxed);
        if last != i64::MIN && now < last + 60 {
            return false;
        }
        let won = self
            .last
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_ok();
        if won {
            self.passed.fetch_add(1, Relaxed);
        }
        won
    }
}

/// How much of a value an unparsable-time warning shows.
const WARN_SAMPLE_BYTES: usize = 100;

/// Rate-limited warnings, shared by the clones of one encoder.
#[derive(Debug)]
struct Warnings {
    label: String,
    /// Out-of-range times.
    time: EveryMinute,
    /// Time fields missing or unreadable.
    unparsable: EveryMinute,
    undeclared: Mutex<BTreeSet<String>>,
}

impl Warnings {
    fn new(label: String) -> Self {
        Warnings {
            label,
            time: EveryMinute::new(),
            unparsable: EveryMinute::new(),
            undeclared: Mutex::new(BTreeSet::new()),
        }
    }

    /// A time field that is missing (`value` None) or that `format` does not read, at most once
    /// a minute: every row of a misconfigured input would otherwise log.
    fn unparsable(&self, time_read: &str, field: &str, value: Option<&Val<'_>>, format: &str) {
        if !read_seconds(time_read).is_some_and(|now| self.unparsable.pass(now)) {
            return;
        }
        let then = "the row gets the time it was read instead (counted as time_unparsable; this \
                    warning repeats at most once a minute)";
        match value {
            Some(v) => {
                let text = match v {
                    Val::Json(t) => Cow::Borrowed(*t),
                    Val::Str(s) => Cow::Borrowed(&**s),
                    Val::Value(v) => Cow::Owned(v.to_string()),
                };
                let sample = &text[..floor_char_boundary(&text, WARN_SAMPLE_BYTES)];
                tracing::warn!(
                    input = %self.label,
                    time_field = %field,
                    value = %sample,
                    time_format = %format,
                    "time field {field:?} holds {sample}, which time_format {format} does not \
                     read: {then}"
                );
            }
            None => tracing::warn!(
                input = %self.label,
                time_field = %field,
                "a record has no time field {field:?}: {then}"
            ),
        }
    }

    /// At most one line a minute: a replay of old logs would otherwise log every row.
    fn time(&self, now: i64, time_generated: &[u8], old: bool) {
        if !self.time.pass(now) {
            return;
        }
        let time = String::from_utf8_lossy(time_generated);
        let why = if old {
            "more than 2 days old"
        } else {
            "more than 1 day in the future"
        };
        tracing::warn!(
            input = %self.label,
            time_generated = %time,
            "TimeGenerated {time} is {why}: Azure replaces such times with the time it receives \
             the row (counted as time_out_of_range; this warning repeats at most once a minute)"
        );
    }

    /// Once per field name.
    fn undeclared(&self, name: &str) {
        let mut seen = self
            .undeclared
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if seen.len() > MAX_NAMED_UNDECLARED || seen.contains(name) {
            return;
        }
        if seen.len() == MAX_NAMED_UNDECLARED {
            seen.insert(String::new());
            tracing::warn!(input = %self.label, "more undeclared fields are being removed; no longer naming each");
            return;
        }
        seen.insert(name.to_string());
        tracing::warn!(
            input = %self.label,
            field = %name,
            "field {name:?} is not a column of the stream: it is removed from rows (Azure would \
             drop it silently); declare the column, or rename or drop the field (counted as \
             undeclared; named once)"
        );
    }
}

/// Turns records into rows. One per input; cheap to clone.
#[derive(Debug, Clone)]
pub struct RowEncoder {
    /// `"host"` as a JSON string, escaped once.
    computer_json: String,
    time_field: Option<String>,
    max_field_bytes: usize,
    /// False keeps the fast paths that copy values verbatim.
    shaped: bool,
    shape: Arc<Shape>,
    warnings: Arc<Warnings>,
}

impl RowEncoder {
    /// An encoder without shaping: `time_field` (read in the automatic formats) is all.
    pub fn new(computer: &str, time_field: Option<String>) -> Self {
        Self::with_shaping(
            computer,
            Shaping {
                time_field,
                ..Shaping::default()
            },
        )
    }

    pub fn with_shaping(computer: &str, s: Shaping) -> Self {
        let shaped = !s.time.is_default() || !s.ops.is_empty() || !s.columns.is_empty();
        RowEncoder {
            computer_json: json_string(computer),
            time_field: s.time_field,
            max_field_bytes: MAX_FIELD_BYTES,
            shaped,
            shape: Arc::new(Shape {
                time: s.time,
                ops: s.ops,
                columns: (!s.columns.is_empty()).then(|| Columns::new(&s.columns)),
            }),
            warnings: Arc::new(Warnings::new(s.label)),
        }
    }

    /// Out-of-range time warnings logged so far (for tests of the rate limit).
    #[cfg(test)]
    pub fn time_warnings(&self) -> u64 {
        self.warnings.time.passed.load(Relaxed)
    }

    /// Unparsable-time warnings logged so far (for tests of the rate limit).
    #[cfg(test)]
    pub fn unparsable_time_warnings(&self) -> u64 {
        self.warnings.unparsable.passed.load(Relaxed)
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
        if self.shaped {
            let mut members: Vec<Member<'_>> = Vec::with_capacity(4);
            members.push((Cow::Borrowed("RawData"), Val::Str(Cow::Borrowed(line))));
            members.push((Cow::Borrowed("Computer"), Val::Json(&self.computer_json)));
            if let Some(path) = file_path_json {
                members.push((Cow::Borrowed("FilePath"), Val::Json(path)));
            }
            self.write_members(members, false, None, time_read, out, notes);
            return;
        }
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
    /// field limit, which are cut (unshaped); or shaped as configured. `Err` is the reason the
    /// text is not a row; `out` is then left as it was. `file_path_json` fills a declared
    /// `FilePath` column.
    pub fn json(
        &self,
        text: &str,
        time_read: &str,
        out: &mut Vec<u8>,
        notes: &mut RowNotes,
    ) -> Result<(), String> {
        self.json_from(text, None, time_read, out, notes)
    }

    /// [`Self::json`] for a record of a file.
    pub fn json_from(
        &self,
        text: &str,
        file_path_json: Option<&str>,
        time_read: &str,
        out: &mut Vec<u8>,
        notes: &mut RowNotes,
    ) -> Result<(), String> {
        if self.shaped {
            let members = raw_object::parse_members(text)?;
            self.write_members(members, true, file_path_json, time_read, out, notes);
            return Ok(());
        }
        if self.json_one_pass(text, time_read, out, notes).is_some() {
            return Ok(());
        }
        self.json_members(text, time_read, out, notes)
    }

    /// [`Self::json_from`] without shaping, through the object's members: the general path.
    fn json_members(
        &self,
        text: &str,
        time_read: &str,
        out: &mut Vec<u8>,
        notes: &mut RowNotes,
    ) -> Result<(), String> {
        let obj = raw_object::parse(text)?;
        let key = self.time_field.as_deref().unwrap_or("TimeGenerated");
        let (found, time) = match obj.members.iter().find(|(k, _)| k == key) {
            Some((_, v)) => (true, time_of_raw(v)),
            None => (false, None),
        };
        if time.is_none() && (found || self.time_field.is_some()) {
            notes.time_unparsable += 1;
            let value = obj
                .members
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| Val::Json(v));
            self.warnings
                .unparsable(time_read, key, value.as_ref(), &self.shape.time.describe());
        }
        out.extend_from_slice(b"{\"TimeGenerated\":\"");
        match time {
            Some(tg) => {
                out.extend_from_slice(&tg);
                self.check_range(&tg, time_read, notes);
            }
            None => out.extend_from_slice(time_read.as_bytes()),
        }
        out.push(b'"');
        for (k, v) in &obj.members {
            if k == "TimeGenerated" {
                continue;
            }
            out.push(b',');
            write_key(k, out);
            out.push(b':');
            let raw = *v;
            if raw.len() > self.max_field_bytes {
                if let Some(s) = raw_object::json_text_str(v) {
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

    /// [`Self::json_from`] without shaping, in one pass over the line and without allocating:
    /// each member is written as the scanner meets it, after a `TimeGenerated` of the fixed
    /// 27 bytes whose text is filled in at the end. `None`, with `out` and `notes` as they were,
    /// for what the general path decides: a line the scanner leaves to serde_json (or that is
    /// not a row), a repeated key, more than [`raw_object::Prints::SMALL`] keys. The same rows
    /// either way (a test holds the two paths to each other).
    fn json_one_pass(
        &self,
        text: &str,
        time_read: &str,
        out: &mut Vec<u8>,
        notes: &mut RowNotes,
    ) -> Option<()> {
        const HEAD: &[u8] = b"{\"TimeGenerated\":\"";
        let read: &[u8; 27] = time_read.as_bytes().try_into().ok()?;
        let key = self.time_field.as_deref().unwrap_or("TimeGenerated");
        let start = out.len();
        out.extend_from_slice(HEAD);
        let time_at = out.len();
        out.extend_from_slice(read);
        out.push(b'"');
        let mut keys: [&str; raw_object::Prints::SMALL] = [""; raw_object::Prints::SMALL];
        let mut prints = raw_object::Prints::default();
        let mut time_value = None;
        let mut truncated = 0;
        let mut ok = true;
        let max = self.max_field_bytes;
        // Members written as they stand in the line, `"key":value,"key":value`, are copied as
        // one run of the line's text (a compact line is one run after its `TimeGenerated`).
        let mut run: Option<std::ops::Range<usize>> = None;
        let at = |part: &str| part.as_ptr() as usize - text.as_ptr() as usize;
        let scanned = super::json_scan::object(text, &mut |k, v| {
            if !ok {
                return;
            }
            if prints.insert(k, |i| keys[i]) != raw_object::Seen::New {
                ok = false;
                return;
            }
            keys[prints.len() - 1] = k;
            if k == key {
                time_value = Some(v);
            }
            let long = v.len() > max && raw_object::json_text_str(v).is_some_and(|s| s.len() > max);
            // The key's opening quote, and the end of its value.
            let (from, to) = (at(k) - 1, at(v) + v.len());
            let compact = at(v) == at(k) + k.len() + 2;
            if k != "TimeGenerated" && !long && compact {
                match &mut run {
                    Some(r) if from == r.end + 1 && text.as_bytes().get(r.end) == Some(&b',') => {
                        r.end = to
                    }
                    _ => {
                        if let Some(r) = run.replace(from..to) {
                            out.extend_from_slice(&text.as_bytes()[r]);
                        }
                        out.push(b',');
                    }
                }
                return;
            }
            if let Some(r) = run.take() {
                out.extend_from_slice(&text.as_bytes()[r]);
            }
            if k == "TimeGenerated" {
                return;
            }
            // The scanner hands over only keys without escapes: their text is a JSON string.
            out.extend_from_slice(b",\"");
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
            match raw_object::json_text_str(v) {
                Some(s) if long => {
                    truncated += 1;
                    write_json_string(&s[..floor_char_boundary(&s, max)], out);
                }
                _ => out.extend_from_slice(v.as_bytes()),
            }
        });
        if let Some(r) = run.take() {
            out.extend_from_slice(&text.as_bytes()[r]);
        }
        if scanned.is_none() || !ok {
            out.truncate(start);
            return None;
        }
        out.push(b'}');
        notes.truncated_fields += truncated;
        match time_value.and_then(time_of_raw) {
            Some(tg) => {
                out[time_at..time_at + 27].copy_from_slice(&tg);
                self.check_range(&tg, time_read, notes);
            }
            None if time_value.is_some() || self.time_field.is_some() => {
                notes.time_unparsable += 1;
                let value = time_value.map(Val::Json);
                self.warnings.unparsable(
                    time_read,
                    key,
                    value.as_ref(),
                    &self.shape.time.describe(),
                );
            }
            None => {}
        }
        Some(())
    }

    /// A JSON or CSV object → the same object with `TimeGenerated` resolved: from the time field
    /// when one is configured, else the object's own `TimeGenerated`, else the time read; always
    /// rewritten as RFC 3339 UTC. Top-level string values over the field limit are truncated.
    pub fn object(
        &self,
        obj: Map<String, Value>,
        time_read: &str,
        out: &mut Vec<u8>,
        notes: &mut RowNotes,
    ) {
        self.object_from(obj, None, time_read, out, notes)
    }

    /// [`Self::object`] for a record of a file.
    pub fn object_from(
        &self,
        obj: Map<String, Value>,
        file_path_json: Option<&str>,
        time_read: &str,
        out: &mut Vec<u8>,
        notes: &mut RowNotes,
    ) {
        let members: Vec<Member<'_>> = obj
            .into_iter()
            .map(|(k, v)| (Cow::Owned(k), Val::Value(v)))
            .collect();
        self.write_members(members, true, file_path_json, time_read, out, notes);
    }

    /// Writes a row from members: resolves the time (`structured`: from the record), applies
    /// the field edits, fills declared `Computer`/`FilePath` columns the record lacks, and
    /// writes each value as its column's type (or as it is, without declared columns).
    fn write_members<'a>(
        &'a self,
        mut members: Vec<Member<'a>>,
        structured: bool,
        file_path_json: Option<&'a str>,
        time_read: &str,
        out: &mut Vec<u8>,
        notes: &mut RowNotes,
    ) {
        let shape = &*self.shape;
        let time_key = self.time_field.as_deref().unwrap_or("TimeGenerated");
        let mut ts = None;
        if structured {
            match members.iter().find(|(k, _)| k == time_key) {
                Some((_, v)) => {
                    ts = read_time(&shape.time, v);
                    if ts.is_none() {
                        notes.time_unparsable += 1;
                        let format = shape.time.describe();
                        self.warnings
                            .unparsable(time_read, time_key, Some(v), &format);
                    }
                }
                None if self.time_field.is_some() => {
                    notes.time_unparsable += 1;
                    self.warnings.unparsable(time_read, time_key, None, "");
                }
                None => {}
            }
        }
        shape.ops.apply(&mut members);
        if let (Some(columns), true) = (&shape.columns, structured) {
            let fill = [
                ("Computer", Some(self.computer_json.as_str())),
                ("FilePath", file_path_json),
            ];
            for (name, value) in fill {
                if let Some(value) = value {
                    if columns.contains(name) && !members.iter().any(|(k, _)| k == name) {
                        members.push((Cow::Borrowed(name), Val::Json(value)));
                    }
                }
            }
        }
        out.extend_from_slice(b"{\"TimeGenerated\":\"");
        match ts {
            Some(ts) => {
                let tg = rfc3339_utc_bytes(ts);
                out.extend_from_slice(&tg);
                self.check_range(&tg, time_read, notes);
            }
            None => out.extend_from_slice(time_read.as_bytes()),
        }
        out.push(b'"');
        let max = self.max_field_bytes;
        for (k, v) in &members {
            if k == "TimeGenerated" {
                continue; // written first, from the resolved time
            }
            let ty = match &shape.columns {
                Some(columns) => match columns.get(k) {
                    Some(ty) => Some(ty),
                    // A time field the stream does not declare has done its job: it is not
                    // counted as an undeclared field.
                    None if self.time_field.is_some() && k == time_key => continue,
                    None => {
                        notes.undeclared += 1;
                        self.warnings.undeclared(k);
                        continue;
                    }
                },
                None => None,
            };
            out.push(b',');
            write_key(k, out);
            out.push(b':');
            match ty {
                Some(ty) => write_typed(ty, v, &shape.time, max, out, notes),
                None => write_plain(v, max, out, notes),
            }
        }
        out.push(b'}');
    }

    /// Counts (and warns about, once a minute) a `TimeGenerated` Azure would replace.
    fn check_range(&self, tg: &[u8; 27], time_read: &str, notes: &mut RowNotes) {
        let read = time_read.as_bytes();
        if read.get(..10) == Some(&tg[..10]) {
            return; // the same day: neither 2 days old nor 1 day ahead
        }
        // To the second: under a second off at a boundary days away does not matter here.
        let Some(w) = read_window(time_read) else {
            return;
        };
        let (old, ahead) = w.out_of_range(tg);
        if old || ahead {
            notes.time_out_of_range += 1;
            self.warnings.time(w.now, tg, old);
        }
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

/// The seconds of the time read (`YYYY-MM-DDTHH:MM:SS…`).
fn read_seconds(time_read: &str) -> Option<i64> {
    read_window(time_read).map(|w| w.now)
}

/// A time read, and the range of `TimeGenerated` seconds Azure keeps around it, as text.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// The first 19 bytes of the time read (`YYYY-MM-DDTHH:MM:SS`).
    key: [u8; 19],
    /// Its seconds since the epoch.
    now: i64,
    /// The first 19 bytes of `now` − 2 days and of `now` + 1 day.
    oldest: [u8; 19],
    latest: [u8; 19],
}

impl Window {
    fn new(key: [u8; 19]) -> Option<Self> {
        let now = fixed_rfc3339_seconds(&key)?;
        let text = |s: i64| -> Option<[u8; 19]> {
            let t = rfc3339_utc_bytes(Timestamp::from_second(s).ok()?);
            t[..19].try_into().ok()
        };
        Some(Window {
            key,
            now,
            oldest: text(now - MAX_AGE_SECONDS)?,
            latest: text(now + MAX_AHEAD_SECONDS)?,
        })
    }

    /// Whether a canonical `TimeGenerated` is more than 2 days before the time read (to the
    /// second), and whether it is more than 1 day after it. Text of the fixed form
    /// `YYYY-MM-DDTHH:MM:SS` (four-digit years, as written) sorts as the times do, so two
    /// comparisons of bytes answer without reading the date.
    fn out_of_range(&self, tg: &[u8; 27]) -> (bool, bool) {
        let s = &tg[..19];
        (s < &self.oldest[..], s > &self.latest[..])
    }
}

/// [`Window`] of a time read. This runs per row (replays of old files put every row in range
/// checks) with the same read time for a whole chunk, so it is kept per thread.
fn read_window(time_read: &str) -> Option<Window> {
    thread_local! {
        static LAST: std::cell::Cell<Option<Window>> = const { std::cell::Cell::new(None) };
    }
    let key = <[u8; 19]>::try_from(time_read.as_bytes().get(..19)?).ok()?;
    match LAST.with(std::cell::Cell::get) {
        Some(w) if w.key == key => Some(w),
        _ => {
            let w = Window::new(key)?;
            LAST.with(|c| c.set(Some(w)));
            Some(w)
        }
    }
}

/// The time a member holds, read by `time`.
fn read_time(time: &TimeParser, v: &Val<'_>) -> Option<Timestamp> {
    match v {
        Val::Json(t) => time.parse_json_text(t),
        Val::Str(s) => time.parse_str(s),
        Val::Value(v) => time.parse_value(v),
    }
}

/// A key: borrowed keys have no escapes (read without any from the source, or checked column
/// names), so their text is already a valid JSON string body.
#[inline]
#[allow(clippy::ptr_arg)] // whether the key is borrowed is the point
fn write_key(k: &Cow<'_, str>, out: &mut Vec<u8>) {
    match k {
        Cow::Borrowed(key) => {
            out.push(b'"');
            out.extend_from_slice(key.as_bytes());
            out.push(b'"');
        }
        Cow::Owned(key) => write_json_string(key, out),
    }
}

/// A raw JSON time value → `TimeGenerated`'s text: a string already in RFC 3339 UTC is copied
/// (the usual case, and the hot path), anything else is parsed.
fn time_of_raw(v: &str) -> Option<[u8; 27]> {
    let raw = v.as_bytes();
    if let [b'"', inner @ .., b'"'] = raw {
        if let Some(text) = canonical_utc(inner) {
            return Some(text);
        }
    }
    parse_time_raw(v).map(rfc3339_utc_bytes)
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

pub fn write_json_string(s: &str, out: &mut Vec<u8>) {
    // Serializing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::columns::ColumnType;
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

    fn shaped(s: Shaping) -> RowEncoder {
        RowEncoder::with_shaping("web-01", s)
    }

    fn cols(c: &[(&str, ColumnType)]) -> BTreeMap<String, ColumnType> {
        c.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn json_row(enc: &RowEncoder, text: &str, path: Option<&str>) -> (Value, RowNotes, String) {
        let mut out = Vec::new();
        let mut notes = RowNotes::default();
        enc.json_from(text, path, T, &mut out, &mut notes)
            .expect("row");
        let raw = String::from_utf8(out).expect("utf-8");
        (serde_json::from_str(&raw).expect("json"), notes, raw)
    }

    #[test]
    fn declared_columns_get_typed_values_and_nothing_else() {
        use ColumnType::*;
        let enc = shaped(Shaping {
            label: "app".into(),
            time_field: Some("ts".into()),
            columns: cols(&[
                ("TimeGenerated", Datetime),
                ("Count", Long),
                ("Ratio", Real),
                ("Ok", Boolean),
                ("Msg", String),
                ("Extra", Dynamic),
                ("Computer", String),
                ("FilePath", String),
            ]),
            ..Shaping::default()
        });
        let path = json_string("/var/log/a.log");
        let (v, notes, raw) = json_row(
            &enc,
            r#"{"ts":"2026-01-02T04:04:05+01:00","Count":"42","Ratio":"0.5","Ok":"yes","Msg":7,"Extra":"{\"k\":[1]}","junk":1,"more":"x","Count2":"n"}"#,
            Some(&path),
        );
        assert_eq!(
            v,
            json!({"TimeGenerated": "2026-01-02T03:04:05.000000Z", "Count": 42, "Ratio": 0.5,
                   "Ok": true, "Msg": "7", "Extra": {"k": [1]}, "Computer": "web-01",
                   "FilePath": "/var/log/a.log"})
        );
        assert!(
            raw.starts_with("{\"TimeGenerated\":\"2026-01-02T03:04:05.000000Z\""),
            "{raw}"
        );
        assert_eq!(
            notes.undeclared, 3,
            "junk, more, Count2; ts is the time field, not counted"
        );
        assert_eq!(notes.uncoercible, 0);
        let (v, notes, _) = json_row(
            &enc,
            r#"{"Count":"many","Ok":"perhaps","Computer":"mine"}"#,
            None,
        );
        assert_eq!(v["Count"], Value::Null);
        assert_eq!(v["Ok"], Value::Null);
        assert_eq!(
            v["Computer"],
            json!("mine"),
            "the record's own Computer is kept"
        );
        assert!(v.get("FilePath").is_none(), "no file, no FilePath");
        assert_eq!((notes.uncoercible, notes.time_unparsable), (2, 1));
    }

    #[test]
    fn a_declared_time_field_stays_a_column() {
        let enc = shaped(Shaping {
            time_field: Some("ts".into()),
            columns: cols(&[("ts", ColumnType::Long)]),
            ..Shaping::default()
        });
        let (v, notes, _) = json_row(&enc, r#"{"ts":1767323045}"#, None);
        assert_eq!(
            v,
            json!({"TimeGenerated": "2026-01-02T03:04:05.000000Z", "ts": 1767323045})
        );
        assert_eq!(notes, RowNotes::default());
        // renamed: the column it is renamed to is filled too
        let enc = shaped(Shaping {
            time_field: Some("ts".into()),
            ops: FieldOps::new(
                &BTreeMap::new(),
                &BTreeMap::from([("ts".to_string(), "EventTime".to_string())]),
                &[],
            ),
            columns: cols(&[("EventTime", ColumnType::Datetime)]),
            ..Shaping::default()
        });
        let (v, notes, _) = json_row(&enc, r#"{"ts":1767323045}"#, None);
        assert_eq!(
            v,
            json!({"TimeGenerated": "2026-01-02T03:04:05.000000Z", "EventTime": "2026-01-02T03:04:05.000000Z"})
        );
        assert_eq!(notes, RowNotes::default());
    }

    #[test]
    fn field_edits_apply_to_every_kind_of_record() {
        let ops = FieldOps::new(
            &BTreeMap::from([
                ("Env".to_string(), json!("prod")),
                ("Shard".to_string(), json!(2)),
            ]),
            &BTreeMap::from([
                ("RawData".to_string(), "Message".to_string()),
                ("msg".to_string(), "Message".to_string()),
            ]),
            &["pid".to_string(), "FilePath".to_string()],
        );
        let enc = shaped(Shaping {
            ops,
            ..Shaping::default()
        });
        let (v, notes, _) = json_row(&enc, r#"{"msg":"hi","pid":7,"n":1.50}"#, None);
        assert_eq!(
            v,
            json!({"TimeGenerated": T, "Message": "hi", "n": 1.50, "Env": "prod", "Shard": 2})
        );
        assert_eq!(notes, RowNotes::default());

        let mut out = Vec::new();
        let mut notes = RowNotes::default();
        let path = json_string("/x.log");
        enc.text("a line", false, T, Some(&path), &mut out, &mut notes);
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            v,
            json!({"TimeGenerated": T, "Message": "a line", "Computer": "web-01", "Env": "prod", "Shard": 2})
        );

        let mut out = Vec::new();
        enc.object(
            obj(json!({"msg": "csv", "pid": "1"})),
            T,
            &mut out,
            &mut notes,
        );
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            v,
            json!({"TimeGenerated": T, "Message": "csv", "Env": "prod", "Shard": 2})
        );
    }

    #[test]
    fn text_rows_are_typed_too() {
        let enc = shaped(Shaping {
            columns: cols(&[
                ("RawData", ColumnType::String),
                ("Computer", ColumnType::String),
            ]),
            ..Shaping::default()
        });
        let mut out = Vec::new();
        let mut notes = RowNotes::default();
        let path = json_string("/x.log");
        let long = "é".repeat(40_000);
        enc.text(&long, false, T, Some(&path), &mut out, &mut notes);
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["RawData"].as_str().map(str::len), Some(MAX_FIELD_BYTES));
        assert_eq!(v["Computer"], json!("web-01"));
        assert!(v.get("FilePath").is_none(), "not declared");
        assert_eq!((notes.truncated_fields, notes.undeclared), (1, 1));
    }

    #[test]
    fn a_no_op_shaping_writes_what_the_fast_path_writes() {
        let plain = RowEncoder::new("h", Some("ts".into()));
        let noop = RowEncoder::with_shaping(
            "h",
            Shaping {
                time_field: Some("ts".into()),
                ops: FieldOps::new(&BTreeMap::new(), &BTreeMap::new(), &["absent".to_string()]),
                ..Shaping::default()
            },
        );
        let long = "é".repeat(40_000);
        for input in [
            json!({"a": 1, "b": {"c": [1, 2.5, null]}, "s": "x\ty", "k\"q": 1}),
            json!({"TimeGenerated": "2020-05-06T07:08:09+02:00", "m": "m"}),
            json!({"ts": 1588741689, "k": true}),
            json!({"ts": "no"}),
            json!({"m": long}),
            json!({}),
        ] {
            let text = input.to_string();
            let (want, want_notes, want_raw) = json_row(&plain, &text, None);
            let (got, notes, raw) = json_row(&noop, &text, None);
            assert_eq!(got, want, "{text}");
            assert_eq!(raw, want_raw, "byte for byte: {text}");
            assert_eq!(notes, want_notes, "{text}");
        }
    }

    #[test]
    fn unparsable_times_are_warned_once_a_minute() {
        let enc = shaped(Shaping {
            time_field: Some("ts".into()),
            time: TimeParser::new(Some("%d/%b/%Y:%H:%M:%S %z"), None).expect("fmt"),
            ..Shaping::default()
        });
        let row = |v: Value, read: &str| {
            let mut out = Vec::new();
            let mut notes = RowNotes::default();
            enc.object(obj(v), read, &mut out, &mut notes);
            notes.time_unparsable
        };
        let t0 = "2026-01-10T12:00:00.000000Z";
        let t59 = "2026-01-10T12:00:59.000000Z";
        let t60 = "2026-01-10T12:01:00.000000Z";
        assert_eq!(row(json!({"ts": "10/Oct/2000:13:55:36 +0000"}), t0), 0);
        assert_eq!(
            enc.unparsable_time_warnings(),
            0,
            "a time that reads warns nothing"
        );
        assert_eq!(row(json!({"ts": "yesterday"}), t0), 1);
        assert_eq!(enc.unparsable_time_warnings(), 1);
        // every row is counted, but within the minute no more is logged
        assert_eq!(row(json!({"ts": 17}), t0), 1);
        assert_eq!(row(json!({"other": 1}), t59), 1);
        assert_eq!(enc.unparsable_time_warnings(), 1);
        assert_eq!(row(json!({"other": 1}), t60), 1);
        assert_eq!(enc.unparsable_time_warnings(), 2);
        // the JSON fast path warns through the same gate
        let plain = RowEncoder::new("h", None);
        let mut out = Vec::new();
        let mut notes = RowNotes::default();
        for read in [t0, t59, t60] {
            plain
                .json(r#"{"TimeGenerated":"soon"}"#, read, &mut out, &mut notes)
                .expect("row");
        }
        assert_eq!(notes.time_unparsable, 3);
        assert_eq!(plain.unparsable_time_warnings(), 2);
    }

    #[test]
    fn times_azure_would_replace_are_counted_and_warned_once_a_minute() {
        for enc in [
            RowEncoder::new("h", None),
            shaped(Shaping {
                time: TimeParser::new(Some("epoch"), None).expect("fmt"),
                ..Shaping::default()
            }),
        ] {
            let now = "2026-01-10T12:00:00.000000Z";
            let later = "2026-01-10T12:00:59.000000Z";
            let minute_on = "2026-01-10T12:01:00.000000Z";
            let row = |t: &str, read: &str| {
                let mut out = Vec::new();
                let mut notes = RowNotes::default();
                enc.json(
                    &format!("{{\"TimeGenerated\":{t}}}"),
                    read,
                    &mut out,
                    &mut notes,
                )
                .expect("row");
                notes.time_out_of_range
            };
            let days = |d: i64| (1_768_046_400 + d * 86_400).to_string(); // 2026-01-10T12:00Z ± d days
            assert_eq!(row(&days(0), now), 0);
            assert_eq!(row(&days(-1), now), 0);
            assert_eq!(
                row(&(1_768_046_400 - 2 * 86_400).to_string(), now),
                0,
                "exactly 2 days"
            );
            assert_eq!(row(&(1_768_046_400 - 2 * 86_400 - 1).to_string(), now), 1);
            assert_eq!(enc.time_warnings(), 1);
            assert_eq!(row(&days(-30), later), 1);
            assert_eq!(row(&(1_768_046_400 + 86_460).to_string(), later), 1);
            assert_eq!(
                enc.time_warnings(),
                1,
                "within the minute: counted, not logged"
            );
            assert_eq!(row(&days(2), minute_on), 1);
            assert_eq!(enc.time_warnings(), 2);
            assert_eq!(
                row(&(1_768_046_400 + 86_400).to_string(), now),
                0,
                "exactly 1 day ahead"
            );
        }
    }

    /// The range check by text agrees with the arithmetic on seconds it replaced, whatever the
    /// offset and the fraction of the second.
    #[test]
    fn the_range_check_by_text_agrees_with_seconds() {
        let read_at = |s: i64, micros: i64| {
            rfc3339_utc_bytes(Timestamp::from_microsecond(s * 1_000_000 + micros).expect("ts"))
        };
        let mut n = 0u64;
        for now in [1_768_046_400i64, 1_767_225_599, 951_782_400, 4_102_444_799] {
            for delta in (-3 * 86_400 - 3..=-3 * 86_400 + 3)
                .chain(-2 * 86_400 - 3..=-2 * 86_400 + 3)
                .chain(86_400 - 3..=86_400 + 3)
                .chain([-400 * 86_400, -1, 0, 1, 2 * 86_400, 900 * 86_400])
            {
                for (fr, fr_read) in [(0, 0), (999_999, 0), (0, 999_999), (500_000, 400_000)] {
                    let read = read_at(now, fr_read);
                    let read = std::str::from_utf8(&read).expect("ascii");
                    let tg = read_at(now + delta, fr);
                    let w = read_window(read).expect("window");
                    let want = (delta < -2 * 86_400, delta > 86_400);
                    assert_eq!(w.out_of_range(&tg), want, "now {now} delta {delta} fr {fr}");
                    n += 1;
                }
            }
        }
        assert!(n > 100);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// The one-pass writer of unshaped JSON rows writes what the general path writes, with
        /// the same notes; and it takes every line without a repeated or escaped key.
        #[test]
        fn one_pass_rows_are_the_general_rows(
            members in proptest::collection::vec((0usize..8, 0usize..14), 0..10),
            spaced in proptest::bool::ANY,
            time_field in proptest::bool::ANY,
        ) {
            const KEYS: [&str; 8] = ["TimeGenerated", "ts", "a", "b", "Message", "c d", "é", "q\\\"x"];
            const VALUES: [&str; 14] = [
                "1", "-2.5e3", "true", "null", r#""short""#, r#""tab\tnew\nline""#,
                r#""\u00e9t\u00e9""#, r#""a string well over the limit""#, r#"{"n":[1,{"x":null}]}"#,
                "[]", r#""2026-01-02T03:04:05Z""#, r#""2026-01-02T03:04:05.123+02:00""#,
                "1768046400", r#""not a time""#,
            ];
            let sep = if spaced { " , " } else { "," };
            let colon = if spaced { " : " } else { ":" };
            let body: Vec<String> = members
                .iter()
                .map(|&(k, v)| format!("\"{}\"{colon}{}", KEYS[k], VALUES[v]))
                .collect();
            let text = format!("{{{}}}", body.join(sep));
            let mut enc = RowEncoder::new("h", time_field.then(|| "ts".to_string()));
            enc.max_field_bytes = 12;
            let read = "2026-01-02T00:00:00.000000Z";
            let (mut fast, mut general) = (b"x".to_vec(), b"x".to_vec());
            let (mut fast_notes, mut general_notes) = (RowNotes::default(), RowNotes::default());
            let a = enc.json(&text, read, &mut fast, &mut fast_notes);
            let b = enc.json_members(&text, read, &mut general, &mut general_notes);
            proptest::prop_assert_eq!(a.is_ok(), b.is_ok(), "{}", text);
            proptest::prop_assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&general), "{}", text);
            proptest::prop_assert_eq!(fast_notes, general_notes, "{}", text);
            // Repeats, escaped keys and `\\u` escapes are left to the general path.
            let mut keys: Vec<usize> = members.iter().map(|m| m.0).collect();
            keys.sort_unstable();
            keys.dedup();
            if keys.len() == members.len() && !keys.contains(&7) && !members.iter().any(|m| m.1 == 6) {
                let mut out = Vec::new();
                let took = enc.json_one_pass(&text, read, &mut out, &mut RowNotes::default());
                proptest::prop_assert!(took.is_some(), "{}", text);
            }
        }

        /// The day-level shortcut decides as the exact comparison does.
        #[test]
        fn out_of_range_is_decided_exactly(now in 0i64..4_000_000_000, off in -400_000i64..400_000) {
            let enc = RowEncoder::new("h", None);
            let read = crate::transform::time::rfc3339_utc(Timestamp::from_second(now).expect("now"));
            let ts = Timestamp::from_second(now + off).expect("ts");
            let mut notes = RowNotes::default();
            enc.check_range(&rfc3339_utc_bytes(ts), &read, &mut notes);
            let want = !(-MAX_AGE_SECONDS..=MAX_AHEAD_SECONDS).contains(&off);
            proptest::prop_assert_eq!(notes.time_out_of_range, u64::from(want), "{} {}", read, off);
        }
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
