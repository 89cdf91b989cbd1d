//! Container logs: files a container runtime writes, with its envelope around every line of the
//! app's output (`[inputs.NAME.container]`).
//!
//! ```text
//! file lines ─▶ envelope: cri | docker | plain ─▶ join parts, per stream ─▶ the input's format
//!   (cri.rs, docker.rs; `auto`: per file,        (join.rs: bounded)        (text, json, regex,
//!    from its first line)                                                   logfmt, syslog, multiline)
//!                                      ─▶ row + TimeGenerated, LogSource, pod columns (columns.rs,
//!                                         kubelet.rs: from the file's names, once per file)
//! ```
//!
//! - **Envelope**: `runtime = "cri"` (containerd, CRI-O), `"docker"` (json-file), or `"auto"`:
//!   each file's first non-blank line decides; a file that is neither is read as plain lines.
//!   A line that does not fit its file's envelope is not lost: it becomes a row of its own with
//!   the whole line as its message, and counts as a parse failure.
//! - **Parts**: a line the runtime cut (CRI `P`, json-file without `\n`) is joined with the
//!   next parts of the same file and stream, up to the input's cap (the field limit; for
//!   `format = "json"`, the output's request cap), past which the message is cut and counted
//!   (`dcrship_row_issues_total{issue="truncated"}`). A part whose next part does not come
//!   within [`PARTIAL_TIMEOUT`] is sent as it is.
//! - **Inner format**: the message then goes through the input's `format` as a line of a plain
//!   file would: `text` → `LogMessage`; `json` → the app's fields as columns (or, with
//!   `json_fields = "log-message"`, the object as `LogMessage`), and a message that is not a
//!   JSON object → `LogMessage` (a parse failure); `regex`/`logfmt`/`syslog` and `multiline`
//!   work per stream, so stderr lines never join a stdout event.
//! - **Checkpoints**: a row's offset never passes the start of a message still being joined in
//!   another stream of its file, so a restart re-reads (never skips) a half-joined line.
//!
//! Enrichment from the API server (labels, annotations, owner) would fill `KubernetesMetadata`
//! in [`FileColumns::new`], once per file; it is not built (see the crate's README).

pub mod columns;
pub mod cri;
pub mod docker;
pub mod join;
pub mod kubelet;

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use self::columns::{Envelope, FileColumns};
use self::join::{Joiner, Message, Part};
use self::kubelet::PodRef;
use super::decode::{lossy, Record};
use super::file::{FileKey, FileLines};
use super::lines::Line;
use super::parse::{LineEvents, ParseCounts, TextRules};
use super::Format;
use crate::input::RecordSink;
use crate::transform::row::{floor_char_boundary, MAX_FIELD_BYTES};
use crate::transform::time::{canonical_utc, parse_time_str, rfc3339_utc_bytes};

/// How long a part waits for the rest of its line. The runtime writes the parts of one line
/// back to back, so this only matters for a last line without a newline.
pub const PARTIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// The state of a file not read for this long, with nothing pending, is dropped (the tailer has
/// closed it, or will read it again from a fresh state that resolves its names again).
const IDLE_FORGET: Duration = Duration::from_secs(600);

/// `[inputs.NAME.container] runtime`: the envelope around each line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// each file's first line decides: CRI, json-file, or plain lines
    #[default]
    Auto,
    /// containerd and CRI-O: `<time> <stdout|stderr> <P|F> <message>`
    Cri,
    /// Docker's json-file driver: `{"log":"…\n","stream":"…","time":"…"}`
    Docker,
}

/// `[inputs.NAME.container] json_fields`: where the fields of a JSON message go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JsonFields {
    /// The app's fields are the row's columns.
    #[default]
    Columns,
    /// The object is the `LogMessage` column (dynamic), as in ContainerLogV2.
    LogMessage,
}

/// stdout or stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One runtime line, read.
#[derive(Debug)]
pub struct Entry<'a> {
    pub time: Option<[u8; 27]>,
    pub stream: Stream,
    pub partial: bool,
    pub message: Cow<'a, [u8]>,
}

/// A runtime timestamp (RFC 3339, nanoseconds) as `TimeGenerated`'s text, to the microsecond.
pub fn time_generated(text: &str) -> Option<[u8; 27]> {
    canonical_utc(text.as_bytes()).or_else(|| parse_time_str(text).map(rfc3339_utc_bytes))
}

/// How a message becomes a record.
#[derive(Debug)]
enum Inner {
    Text,
    Json(JsonFields),
    Rules(Arc<TextRules>),
}

/// What one input's container files share, built once from its configuration.
#[derive(Debug)]
pub struct ContainerSettings {
    runtime: Runtime,
    inner: Inner,
    /// Bytes one joined message may hold.
    cap: usize,
    computer_json: String,
}

impl ContainerSettings {
    /// `rules` are the input's parser and multiline rules (when it has any); `max_record` is
    /// its output's request cap; `computer_json` the host name as a JSON string.
    pub fn new(
        runtime: Runtime,
        json_fields: JsonFields,
        format: Format,
        rules: Option<Arc<TextRules>>,
        max_record: usize,
        computer_json: &str,
    ) -> Self {
        let (inner, cap) = match (rules, format) {
            (Some(r), _) => (Inner::Rules(r), MAX_FIELD_BYTES),
            (None, Format::Json | Format::Ndjson) => (Inner::Json(json_fields), max_record),
            (None, _) => (Inner::Text, MAX_FIELD_BYTES),
        };
        ContainerSettings {
            runtime,
            inner,
            cap,
            computer_json: computer_json.to_string(),
        }
    }
}

/// The envelope a file turned out to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cri,
    Docker,
    Plain,
}

fn detect(runtime: Runtime, line: &[u8]) -> Kind {
    match runtime {
        Runtime::Cri => Kind::Cri,
        Runtime::Docker => Kind::Docker,
        Runtime::Auto if cri::parse(line).is_some() => Kind::Cri,
        Runtime::Auto if docker::parse(line).is_some() => Kind::Docker,
        Runtime::Auto => Kind::Plain,
    }
}

/// Streams of a file: stdout, stderr, and lines without an envelope.
const PLAIN: usize = 2;

/// A message handed to a multiline parser and not yet out as a record.
#[derive(Debug, Clone, Copy)]
struct Fed {
    number: u64,
    time: Option<[u8; 27]>,
    start: u64,
}

#[derive(Debug)]
struct StreamState {
    stream: Option<Stream>,
    joiner: Joiner,
    events: Option<LineEvents>,
    fed: VecDeque<Fed>,
    due: Option<Instant>,
}

impl StreamState {
    fn new(stream: Option<Stream>, s: &ContainerSettings) -> Self {
        StreamState {
            stream,
            joiner: Joiner::new(s.cap),
            events: match &s.inner {
                Inner::Rules(r) => Some(LineEvents::new(r.clone())),
                _ => None,
            },
            fed: VecDeque::new(),
            due: None,
        }
    }

    /// Where the earliest message not yet out as a row starts.
    fn pending_start(&self) -> Option<u64> {
        let fed = self.fed.front().map(|f| f.start);
        match (self.joiner.pending_start(), fed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn pending_timeout(&self) -> Option<Duration> {
        let joining = self.joiner.pending_start().map(|_| PARTIAL_TIMEOUT);
        let events = self.events.as_ref().and_then(LineEvents::pending_timeout);
        match (joining, events) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What the rows of one call go to.
struct Out<'s> {
    sink: &'s mut dyn RecordSink,
    counts: &'s mut ParseCounts,
    scratch: &'s mut Vec<u8>,
}

#[derive(Debug)]
struct FileState {
    path: Arc<PathBuf>,
    kind: Option<Kind>,
    columns: FileColumns,
    streams: [StreamState; 3],
    /// The end offset of the last line seen: where the next one starts.
    last_end: Option<u64>,
    seen: Instant,
}

impl FileState {
    fn new(path: Arc<PathBuf>, s: &ContainerSettings, now: Instant) -> Self {
        let pod = PodRef::resolve(&path);
        FileState {
            columns: FileColumns::new(&s.computer_json, &pod),
            path,
            kind: None,
            streams: [
                StreamState::new(Some(Stream::Stdout), s),
                StreamState::new(Some(Stream::Stderr), s),
                StreamState::new(None, s),
            ],
            last_end: None,
            seen: now,
        }
    }

    /// The offset no row may pass while stream `except` takes a line: the start of the earliest
    /// message the other streams still hold.
    fn floor(&self, except: usize) -> u64 {
        (0..3)
            .filter(|&i| i != except)
            .filter_map(|i| self.streams[i].pending_start())
            .min()
            .unwrap_or(u64::MAX)
    }

    fn line(&mut self, s: &ContainerSettings, l: Line<'_>, now: Instant, out: &mut Out<'_>) {
        // The first line seen of a file starts where its length says; `- 2` rather than `- 1`
        // keeps a `\r\n` line exact and puts a `\n` one on the newline before it (read again
        // as a blank line). Only a line cut at the reader's cap can be misplaced here.
        let start = self
            .last_end
            .unwrap_or_else(|| l.end_offset.saturating_sub(l.bytes.len() as u64 + 2));
        self.last_end = Some(l.end_offset);
        self.seen = now;
        if l.bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let kind = *self.kind.get_or_insert_with(|| detect(s.runtime, l.bytes));
        let entry = match kind {
            Kind::Cri => cri::parse(l.bytes),
            Kind::Docker => docker::parse(l.bytes),
            Kind::Plain => None,
        };
        if entry.is_none() && kind != Kind::Plain {
            out.counts.mismatched += 1;
        }
        let (idx, part) = match &entry {
            Some(e) => (
                e.stream as usize,
                Part {
                    message: &e.message,
                    partial: e.partial,
                    time: e.time,
                    number: l.number,
                    start,
                    end: l.end_offset,
                    cut: l.truncated,
                },
            ),
            None => (
                PLAIN,
                Part {
                    message: l.bytes,
                    partial: false,
                    time: None,
                    number: l.number,
                    start,
                    end: l.end_offset,
                    cut: l.truncated,
                },
            ),
        };
        let floor = self.floor(idx);
        let FileState {
            streams, columns, ..
        } = self;
        let st = &mut streams[idx];
        let StreamState {
            stream,
            joiner,
            events,
            fed,
            ..
        } = st;
        joiner.push(part, &mut |m| {
            deliver(s, m, *stream, floor, columns, events, fed, out)
        });
        st.due = st.pending_timeout().map(|t| now + t);
    }

    /// Emits what streams hold: those due by `now`, or all (`None`).
    fn flush(&mut self, s: &ContainerSettings, now: Option<Instant>, out: &mut Out<'_>) {
        for idx in 0..3 {
            let st = &self.streams[idx];
            let due = match (st.due, now) {
                (Some(d), Some(now)) => d <= now,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if !due {
                continue;
            }
            let floor = self.floor(idx);
            let FileState {
                streams, columns, ..
            } = self;
            let StreamState {
                stream,
                joiner,
                events,
                fed,
                due,
            } = &mut streams[idx];
            joiner.flush(&mut |m| deliver(s, m, *stream, floor, columns, events, fed, out));
            if let Some(ev) = events {
                ev.flush(&mut |rec, offset| {
                    let time = take_time(fed, &rec);
                    let env = Envelope {
                        time,
                        stream: *stream,
                    };
                    emit(rec, env, columns, offset.min(floor), out);
                });
                add_counts(out.counts, ev.take_counts());
            }
            fed.clear();
            *due = None;
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.streams.iter().filter_map(|s| s.due).min()
    }
}

/// One whole message through the input's format, to rows.
#[allow(clippy::too_many_arguments)]
fn deliver(
    s: &ContainerSettings,
    m: Message<'_>,
    stream: Option<Stream>,
    floor: u64,
    cols: &FileColumns,
    events: &mut Option<LineEvents>,
    fed: &mut VecDeque<Fed>,
    out: &mut Out<'_>,
) {
    let offset = m.end.min(floor);
    let env = Envelope {
        time: m.time,
        stream,
    };
    if let Some(ev) = events {
        fed.push_back(Fed {
            number: m.number,
            time: m.time,
            start: m.start,
        });
        let line = Line {
            bytes: m.bytes,
            number: m.number,
            truncated: m.cut,
            end_offset: m.end,
        };
        ev.line(line, &mut |rec, off| {
            let time = take_time(fed, &rec);
            let env = Envelope { time, stream };
            emit(rec, env, cols, off.min(floor), out);
        });
        add_counts(out.counts, ev.take_counts());
        if ev.pending_timeout().is_none() {
            // Whatever was fed is out (or was a blank line the parser skipped).
            fed.clear();
        }
        return;
    }
    if m.bytes.iter().all(u8::is_ascii_whitespace) {
        return; // a blank line is no row, as in a plain text file
    }
    let text = lossy(m.bytes, m.cut);
    if let Inner::Json(fields) = s.inner {
        let object = text.trim();
        if !m.cut && object.starts_with('{') && crate::transform::raw_object::parse(object).is_ok()
        {
            out.scratch.clear();
            match fields {
                JsonFields::Columns => columns::fields_row(out.scratch, object, &env, cols),
                JsonFields::LogMessage if object.len() <= MAX_FIELD_BYTES => {
                    columns::object_message_row(out.scratch, object, &env, cols)
                }
                // Too long for one field: the text, cut, below.
                JsonFields::LogMessage => return text_record(&text, m, env, cols, offset, out),
            }
            return json_record(m.number, offset, out);
        }
        out.counts.mismatched += 1;
    }
    text_record(&text, m, env, cols, offset, out)
}

/// A text message as a `LogMessage` row, cut to the field limit (and counted) here.
fn text_record(
    text: &str,
    m: Message<'_>,
    env: Envelope,
    cols: &FileColumns,
    offset: u64,
    out: &mut Out<'_>,
) {
    let keep = floor_char_boundary(text, MAX_FIELD_BYTES);
    if m.cut || keep < text.len() {
        out.sink.truncated(1);
    }
    out.scratch.clear();
    columns::text_row(out.scratch, &text[..keep], &env, cols);
    json_record(m.number, offset, out);
}

/// Hands the row in `scratch` to the sink.
fn json_record(number: u64, offset: u64, out: &mut Out<'_>) {
    // Everything written there came from `&str`s: the check is the fast one.
    let text = super::decode::utf8_lossy(out.scratch);
    out.sink.record(Record::Json { text, number }, offset);
}

/// The time of the message a parser's record starts with; messages before it are done.
fn take_time(fed: &mut VecDeque<Fed>, rec: &Record<'_>) -> Option<[u8; 27]> {
    let number = match rec {
        Record::Line { number, .. }
        | Record::Json { number, .. }
        | Record::Object { number, .. }
        | Record::Bad { number, .. } => *number,
    };
    while let Some(f) = fed.front() {
        if f.number < number {
            fed.pop_front();
        } else {
            break;
        }
    }
    match fed.front() {
        Some(f) if f.number == number => fed.pop_front().and_then(|f| f.time),
        _ => None,
    }
}

/// A parser's record, with our columns.
fn emit(rec: Record<'_>, env: Envelope, cols: &FileColumns, offset: u64, out: &mut Out<'_>) {
    match rec {
        Record::Object { mut map, number } => {
            columns::add_to_object(&mut map, &env, cols);
            out.sink.record(Record::Object { map, number }, offset);
        }
        Record::Line {
            text,
            number,
            truncated,
        } => {
            let keep = floor_char_boundary(&text, MAX_FIELD_BYTES);
            if truncated || keep < text.len() {
                out.sink.truncated(1);
            }
            out.scratch.clear();
            columns::text_row(out.scratch, &text[..keep], &env, cols);
            json_record(number, offset, out);
        }
        other => out.sink.record(other, offset),
    }
}

fn add_counts(to: &mut ParseCounts, o: ParseCounts) {
    to.mismatched += o.mismatched;
    to.cut += o.cut;
    to.truncated += o.truncated;
}

/// The container state of one input's files.
#[derive(Debug)]
pub struct ContainerFiles {
    settings: Arc<ContainerSettings>,
    files: HashMap<FileKey, FileState>,
    scratch: Vec<u8>,
    swept: Option<Instant>,
}

impl ContainerFiles {
    pub fn new(settings: Arc<ContainerSettings>) -> Self {
        ContainerFiles {
            settings,
            files: HashMap::new(),
            scratch: Vec::new(),
            swept: None,
        }
    }

    /// One batch of a file's lines to rows in `sink`; returns what the parsers counted.
    pub fn batch(
        &mut self,
        batch: &FileLines,
        now: Instant,
        sink: &mut dyn RecordSink,
    ) -> ParseCounts {
        self.forget_idle(now);
        let s = &*self.settings;
        let file = self
            .files
            .entry(batch.file)
            .or_insert_with(|| FileState::new(batch.path.clone(), s, now));
        // The path it has now (a rename), for the sink of a later flush; its names were read
        // when it was first seen.
        if file.path != batch.path {
            file.path = batch.path.clone();
        }
        let mut counts = ParseCounts::default();
        let mut out = Out {
            sink,
            counts: &mut counts,
            scratch: &mut self.scratch,
        };
        for (line, bytes) in batch.iter() {
            let l = Line {
                bytes,
                number: line.number,
                truncated: line.truncated,
                end_offset: line.end_offset,
            };
            file.line(s, l, now, &mut out);
        }
        take_truncated(counts, sink)
    }

    /// When the next file has a part or event that waited long enough.
    pub fn next_due(&self) -> Option<Instant> {
        self.files.values().filter_map(FileState::next_due).min()
    }

    /// Files with something due by `now`, each with its path (for its sink).
    pub fn due(&self, now: Instant) -> Vec<(FileKey, Arc<PathBuf>)> {
        self.files
            .iter()
            .filter(|(_, f)| f.next_due().is_some_and(|d| d <= now))
            .map(|(k, f)| (*k, f.path.clone()))
            .collect()
    }

    /// Every file that holds something, with its path.
    pub fn holding(&self) -> Vec<(FileKey, Arc<PathBuf>)> {
        self.files
            .iter()
            .filter(|(_, f)| f.next_due().is_some())
            .map(|(k, f)| (*k, f.path.clone()))
            .collect()
    }

    /// Emits what `file` holds: what is due by `now`, or everything (`None`: the input stops).
    pub fn flush(
        &mut self,
        file: FileKey,
        now: Option<Instant>,
        sink: &mut dyn RecordSink,
    ) -> ParseCounts {
        let mut counts = ParseCounts::default();
        if let Some(f) = self.files.get_mut(&file) {
            let mut out = Out {
                sink,
                counts: &mut counts,
                scratch: &mut self.scratch,
            };
            f.flush(&self.settings, now, &mut out);
            return take_truncated(counts, sink);
        }
        counts
    }

    fn forget_idle(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|t| now.duration_since(t) < IDLE_FORGET / 10)
        {
            return;
        }
        self.swept = Some(now);
        self.files
            .retain(|_, f| f.next_due().is_some() || now.duration_since(f.seen) < IDLE_FORGET);
    }

    /// Files with state (for tests of the bound).
    #[cfg(test)]
    pub fn files(&self) -> usize {
        self.files.len()
    }
}

/// Parsed rows made from cut messages are truncated rows: counted with the others.
fn take_truncated(mut counts: ParseCounts, sink: &mut dyn RecordSink) -> ParseCounts {
    sink.truncated(std::mem::take(&mut counts.truncated));
    counts
}

#[cfg(test)]
mod tests;
