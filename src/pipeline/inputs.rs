//! Input tasks: read records, build rows, hand them to their output in bounded chunks. Each
//! stops when its source ends or the pipeline's [`Stop`] says to stop reading.
//!
//! - [`stdin`]: standard input to its end.
//! - [`once`]: files (and `-`, stdin) read start to end, in order (`send`).
//! - [`files`]: files tailed, their offsets handed on for checkpoints (`run`).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::sources::{SafeUpTo, Sources};
use super::stop::Stop;
use super::Rows;
use crate::deadletter::{DeadLetter, Refused};
use crate::input::checkpoint::Checkpoints;
use crate::input::chunks::{self, Chunks, Resumed};
use crate::input::container::{ContainerFiles, ContainerSettings};
use crate::input::decode::{line_record, CsvLines};
use crate::input::file::{FileKey, FileLines, FileTailer};
use crate::input::journald::cursor::CursorLog;
use crate::input::journald::rows::JournalRows;
use crate::input::journald::{JournalBatch, JournalError, JournalReader, Read};
use crate::input::lines::Line;
use crate::input::parse::{LineEvents, ParseCounts, TextRules};
use crate::input::{format, Decoder, Format, Record};
use crate::metrics::Counter;
use crate::pipeline::sink::{RowSink, SinkCounts};
use crate::rows::RowBuf;
use crate::transform::row::json_string;
use crate::transform::time::rfc3339_utc;
use crate::transform::RowEncoder;

/// Hand rows on once this many bytes are buffered (or the chunk read is done).
const HANDOFF_BYTES: usize = 256 * 1024;
/// Bytes read from a stream at a time.
const READ_CHUNK: usize = 256 * 1024;

/// What every input task needs.
pub struct InputCtx {
    pub name: String,
    /// How records are framed; `Auto` decides per file.
    pub format: Format,
    pub encoder: RowEncoder,
    pub sources: Sources,
    pub deadletter: Arc<DeadLetter>,
    pub received: Counter,
    /// `dcrship_input_bytes_total{input}`: bytes read (files and stdin).
    pub bytes: Counter,
    /// Records refused before they became rows (invalid JSON, too long).
    pub dropped: Counter,
    pub out: mpsc::Sender<Rows>,
    /// The output's request cap: a JSON record longer than this can never be sent.
    pub max_record: usize,
    /// File offsets; `None` when nothing keeps them.
    pub checkpointer: Option<Arc<super::Checkpointer>>,
    /// `dcrship_row_issues_total{input,issue}`.
    pub issues: crate::transform::IssueCounters,
    /// Parser and multiline rules; `None` for plain `text` and `json`, which skip them.
    pub rules: Option<Arc<TextRules>>,
    /// `dcrship_parse_failures_total{input}`.
    pub parse_failures: Counter,
    /// `dcrship_multiline_cut_total{input}`.
    pub multiline_cut: Counter,
    pub stop: Arc<Stop>,
    /// `[inputs.NAME.container]`: files of a container runtime (file inputs only).
    pub container: Option<Arc<ContainerSettings>>,
}

impl InputCtx {
    async fn hand_off(&self, rows: &mut RowBuf, counts: SinkCounts) -> bool {
        self.received.add(counts.read);
        self.dropped.add(counts.rejected);
        self.issues.add(&counts.notes);
        if rows.is_empty() {
            return true;
        }
        let full = std::mem::replace(rows, RowBuf::with_capacity(HANDOFF_BYTES * 2));
        // An aborted stop ends a hand-off the stalled output would never take.
        tokio::select! {
            biased;
            sent = self.out.send(Rows { rows: full }) => sent.is_ok(),
            _ = self.stop.abort.cancelled() => false,
        }
    }

    fn count_parsed(&self, c: ParseCounts) {
        self.parse_failures.add(c.mismatched);
        self.multiline_cut.add(c.cut);
        self.issues.add_truncated(c.truncated);
    }

    /// What [`InputCtx::decoder`] builds a stream's decoder from, as text: two inputs whose
    /// settings read the same build the same decoder. (The rules are compared through their
    /// `Debug`, which shows each regex by its pattern: the compiled form has no equality.)
    fn decoder_settings(&self) -> String {
        format!("{:?} {} {:?}", self.format, self.max_record, self.rules)
    }

    /// The decoder of one stream; `path` decides `auto` by its extension when it has one.
    fn decoder(&self, path: Option<&Path>) -> Decoder {
        if let Some(rules) = &self.rules {
            return Decoder::with_rules(rules.clone(), self.max_record);
        }
        let format = match (self.format, path) {
            (Format::Auto, Some(p)) => format::from_extension(p).unwrap_or(Format::Auto),
            // Parsers without rules read lines as text (their rules are always set).
            (Format::Regex | Format::Logfmt | Format::Syslog, _) => Format::Text,
            (f, _) => f,
        };
        Decoder::new(format, self.max_record)
    }
}

/// Resolves at `deadline`; never when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Reads stdin to its end (or until stopped).
pub async fn stdin(ctx: InputCtx) {
    if let Err(e) = read_stdin(&ctx).await {
        tracing::error!(input = %ctx.name, error = %e, "reading stdin failed");
        ctx.stop.input_failed(e);
    }
}

/// Reads each file (`-` is stdin) from its start to its end, in order, then ends. A file that
/// cannot be read is reported and the next one read.
pub async fn once(ctx: InputCtx, paths: Vec<PathBuf>) {
    for path in paths {
        if ctx.stop.inputs.is_cancelled() {
            return;
        }
        let read = if path.as_os_str() == "-" {
            if std::io::stdin().is_terminal() {
                crate::console::err("dcrship: reading rows from the terminal; end with Ctrl-D");
            }
            read_stdin(&ctx).await
        } else {
            let name = path.display().to_string();
            match tokio::fs::File::open(&path).await {
                Ok(file) => {
                    let source = ctx.sources.stream(&name);
                    let path_json = json_string(&absolute(&path));
                    let mut decoder = ctx.decoder(Some(&path));
                    let mut file = Chunks::file(file.into_std().await);
                    let stream = Stream {
                        name: &name,
                        source,
                        file_path_json: Some(&path_json),
                        held_at_stop: Held::Dropped,
                    };
                    read_stream(&ctx, &mut file, &stream, &mut decoder).await
                }
                Err(e) => Err(format!("cannot read {name}: {}", io_reason(&e))),
            }
        };
        match read {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!(input = %ctx.name, "{e}");
                ctx.stop.input_failed(e);
            }
        }
    }
}

/// Reads the process's stdin (see [`chunks::stdin`]) to its end, as [`read_stream`]. After a
/// reload it goes on with the decoder the last pipeline's stdin input left, when it was built
/// from the same settings; a stop that is no reload sends what the decoder holds.
async fn read_stdin(ctx: &InputCtx) -> Result<bool, String> {
    let mut stdin = chunks::stdin()
        .await
        .map_err(|e| format!("cannot read stdin: {}", io_reason(&e)))?;
    let settings = ctx.decoder_settings();
    let source = ctx.sources.stream("<stdin>");
    let stream = Stream {
        name: "<stdin>",
        source,
        file_path_json: None,
        held_at_stop: Held::Sent,
    };
    let mut decoder = match stdin.resume(&settings) {
        Resumed::Same(d) => d,
        Resumed::Other(mut old) => {
            // The reload changed how stdin is read: what the old decoder held beside its
            // unfinished line (a multiline event, a quoted CSV record) goes out now, as rows or
            // dead-lettered, rather than with the old pipeline.
            if !send_held(ctx, &stream, &mut old).await {
                return Ok(false);
            }
            ctx.decoder(None)
        }
        Resumed::Nothing => ctx.decoder(None),
    };
    let read = read_stream(ctx, &mut stdin.chunks, &stream, &mut decoder).await;
    if ctx.stop.stdin_handed_over() {
        stdin.park(settings, decoder);
    }
    read
}

/// Sends what `decoder` holds, as at its stream's end; false when the output is gone.
async fn send_held(ctx: &InputCtx, stream: &Stream<'_>, decoder: &mut Decoder) -> bool {
    let time_read = rfc3339_utc(jiff::Timestamp::now());
    let mut rows = RowBuf::with_capacity(HANDOFF_BYTES);
    let mut sink = stream.sink(ctx, &time_read, &mut rows);
    sink.decode(decoder, &[]);
    let counts = sink.counts;
    ctx.count_parsed(decoder.take_parse_counts());
    ctx.hand_off(&mut rows, counts).await
}

/// One stream an input reads.
struct Stream<'a> {
    name: &'a str,
    source: u32,
    /// The `FilePath` column, as JSON; `None` for stdin.
    file_path_json: Option<&'a str>,
    /// What becomes of the records the decoder holds when the pipeline stops reading.
    held_at_stop: Held,
}

impl Stream<'_> {
    /// Where this stream's records become rows.
    fn sink<'s>(
        &'s self,
        ctx: &'s InputCtx,
        time_read: &'s str,
        out: &'s mut RowBuf,
    ) -> RowSink<'s> {
        RowSink {
            encoder: &ctx.encoder,
            deadletter: &ctx.deadletter,
            name: self.name,
            source: self.source,
            file_path_json: self.file_path_json,
            time_read,
            out,
            counts: SinkCounts::default(),
        }
    }
}

/// What a stop (one that is no reload's hand-over) does with what the decoder holds: an
/// unfinished line, a pending multiline event, a JSON value or quoted CSV record under way.
#[derive(Clone, Copy, PartialEq)]
enum Held {
    /// Dropped: the stream is still there to be read again (a file `send` was stopped in).
    Dropped,
    /// Sent, as at the stream's end: nothing else holds them (stdin, whose bytes were taken
    /// from the pipe).
    Sent,
}

/// What one turn of [`read_stream`] has to do.
enum Step {
    /// A chunk of this many bytes was read; 0 at the end.
    Read(usize),
    /// The pending multiline event waited its timeout.
    Pending,
}

/// Reads one stream to its end through `decoder`, handing rows on as they are built. Ok(false):
/// stopped, or the output is gone. A stop for a reload leaves what `decoder` holds in it.
async fn read_stream(
    ctx: &InputCtx,
    reader: &mut Chunks,
    stream: &Stream<'_>,
    decoder: &mut Decoder,
) -> Result<bool, String> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut rows = RowBuf::with_capacity(HANDOFF_BYTES * 2);
    // When a pending multiline event (perhaps one a reload carried over) waits no longer.
    let mut pending_until = decoder.pending_timeout().map(|t| Instant::now() + t);
    let mut time_read = String::new();
    loop {
        let replay = reader.replays();
        let step = tokio::select! {
            biased;
            _ = ctx.stop.inputs.cancelled() => None,
            _ = sleep_until(pending_until) => Some(Step::Pending),
            r = reader.next(&mut buf) => {
                Some(Step::Read(r.map_err(|e| format!("reading {} failed: {e}", stream.name))?))
            }
        };
        let Some(step) = step else {
            // Stopped. Each turn hands its rows on, so only what the decoder holds is left.
            if !ctx.stop.stdin_handed_over() && stream.held_at_stop == Held::Sent {
                send_held(ctx, stream, decoder).await;
            }
            return Ok(false);
        };
        if let (Step::Read(n), false) = (&step, replay) {
            ctx.bytes.add(*n as u64);
        }
        if !matches!(step, Step::Read(0)) || time_read.is_empty() {
            time_read.clear();
            crate::transform::time::format_rfc3339_utc(jiff::Timestamp::now(), &mut time_read);
        }
        let mut sink = stream.sink(ctx, &time_read, &mut rows);
        match step {
            Step::Read(n) => sink.decode(decoder, &buf[..n]),
            Step::Pending => decoder.flush_pending(&mut |rec| sink.record(rec, 0)),
        }
        let counts = sink.counts;
        ctx.count_parsed(decoder.take_parse_counts());
        pending_until = decoder.pending_timeout().map(|t| Instant::now() + t);
        if !ctx.hand_off(&mut rows, counts).await {
            return Ok(false);
        }
        if let Step::Read(0) = step {
            return Ok(true);
        }
    }
}

/// The `FilePath` column: the absolute path, so rows from two hosts' relative paths differ.
fn absolute(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// A short reason for a file that cannot be read.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Files whose line format is remembered at once; past this the map starts over.
const MAX_FILE_FORMATS: usize = 65_536;

/// How the lines of one tailed file become records.
#[derive(Debug)]
enum FileFormat {
    Text,
    /// One JSON object per line.
    Ndjson,
    /// CSV with the file's first line as its header; lines up to `header_end` are the header.
    Csv {
        lines: CsvLines,
        header_end: u64,
    },
}

impl FileFormat {
    /// `auto` is decided by the file's extension, else by its first bytes (`{`: JSON lines);
    /// a CSV file's header is read from its start, wherever reading resumes.
    fn of(format: Format, path: &Path, max_line: usize) -> FileFormat {
        let format = match format {
            // Sniffed, only `{` means JSON lines: many text logs start with `[` (a timestamp).
            Format::Auto => format::from_extension(path).unwrap_or_else(|| {
                match format::sniff(&read_head(path, 1024).unwrap_or_default()) {
                    Format::Ndjson => Format::Ndjson,
                    _ => Format::Text,
                }
            }),
            f => f,
        };
        match format {
            Format::Ndjson | Format::Json => FileFormat::Ndjson,
            Format::Csv => {
                let mut lines = CsvLines::default();
                let mut header_end = 0;
                match read_head(path, max_line) {
                    Ok(head) => {
                        if let Some(end) = memchr::memchr(b'\n', &head) {
                            header_end = end as u64 + 1;
                            let bytes = head[..end].strip_suffix(b"\r").unwrap_or(&head[..end]);
                            let header = Line {
                                bytes,
                                number: 1,
                                truncated: false,
                                end_offset: header_end,
                            };
                            lines.line(header, max_line, &mut |_| {});
                        }
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot read the CSV header; the first line read is taken as the header")
                    }
                }
                FileFormat::Csv { lines, header_end }
            }
            _ => FileFormat::Text,
        }
    }

    fn line(&mut self, l: Line<'_>, max: usize, emit: &mut dyn FnMut(crate::input::Record<'_>)) {
        match self {
            FileFormat::Text => line_record(Format::Text, l, max, emit),
            FileFormat::Ndjson => line_record(Format::Ndjson, l, max, emit),
            // The header was read from the file already.
            FileFormat::Csv { header_end, .. } if l.end_offset <= *header_end => {}
            FileFormat::Csv { lines, .. } => lines.line(l, max, emit),
        }
    }
}

/// Up to `max` bytes from the start of the file.
fn read_head(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)?
        .take(max as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// A file whose multiline event waits for its next line.
struct PendingFile {
    events: LineEvents,
    until: Instant,
    path: Arc<PathBuf>,
    source: u32,
}

impl PendingFile {
    /// Emits the pending event into `rows`.
    fn flush(&mut self, ctx: &InputCtx, rows: &mut RowBuf) -> SinkCounts {
        let path_json = json_string(&self.path.display().to_string());
        let name = self.path.display().to_string();
        let time_read = rfc3339_utc(jiff::Timestamp::now());
        let mut sink = RowSink {
            encoder: &ctx.encoder,
            deadletter: &ctx.deadletter,
            name: &name,
            source: self.source,
            file_path_json: Some(&path_json),
            time_read: &time_read,
            out: rows,
            counts: SinkCounts::default(),
        };
        self.events
            .flush(&mut |rec, offset| sink.record(rec, offset));
        ctx.count_parsed(self.events.take_counts());
        sink.counts
    }
}

/// Tails the files of one input.
pub async fn files(ctx: InputCtx, tailer: FileTailer) {
    let (tx, mut rx) = mpsc::channel::<FileLines>(4);
    let stop = ctx.stop.inputs.clone();
    let name = ctx.name.clone();
    let tail = tokio::spawn(async move {
        if let Err(e) = tailer.run(tx, stop).await {
            tracing::error!(input = %name, error = %e, "file input stopped");
        }
    });
    let mut rows = RowBuf::with_capacity(HANDOFF_BYTES * 2);
    // Files with a multiline event pending. An event's checkpoint offset is the end of its last
    // line, so until it is emitted the checkpoint stays before its first line.
    let mut pending: HashMap<FileKey, PendingFile> = HashMap::new();
    // How each file's lines are read (`auto` and `csv` depend on the file).
    let mut formats: HashMap<FileKey, FileFormat> = HashMap::new();
    let mut containers = ctx.container.clone().map(ContainerFiles::new);
    loop {
        let next = pending
            .values()
            .map(|p| p.until)
            .chain(containers.as_ref().and_then(ContainerFiles::next_due))
            .min();
        let batch = tokio::select! {
            b = rx.recv() => b,
            _ = sleep_until(next) => {
                let now = Instant::now();
                let due: Vec<FileKey> = pending
                    .iter()
                    .filter(|(_, p)| p.until <= now)
                    .map(|(k, _)| *k)
                    .collect();
                let mut open = true;
                for key in due {
                    if let Some(mut p) = pending.remove(&key) {
                        let counts = p.flush(&ctx, &mut rows);
                        open &= ctx.hand_off(&mut rows, counts).await;
                    }
                }
                if let Some(c) = &mut containers {
                    open &= flush_containers(&ctx, c, Some(now), &mut rows).await;
                }
                if !open {
                    break;
                }
                continue;
            }
        };
        let Some(batch) = batch else { break };
        ctx.bytes.add(batch.buf.len() as u64);
        if let Some(c) = &ctx.checkpointer {
            c.note_windows(batch.file, &batch.windows);
        }
        if let Some(start) = batch.started_at {
            // Nothing before `start` will ever be sent: safe to checkpoint now.
            if let Some(c) = &ctx.checkpointer {
                c.advance(batch.file, &batch.path, start);
            }
        }
        let source = ctx.sources.file(batch.file, &batch.path);
        let path_json = json_string(&batch.path.display().to_string());
        let name = batch.path.display().to_string();
        let time_read = rfc3339_utc(jiff::Timestamp::now());
        let mut sink = RowSink {
            encoder: &ctx.encoder,
            deadletter: &ctx.deadletter,
            name: &name,
            source,
            file_path_json: Some(&path_json),
            time_read: &time_read,
            out: &mut rows,
            counts: SinkCounts::default(),
        };
        let lines = batch.iter().map(|(line, bytes)| Line {
            bytes,
            number: line.number,
            truncated: line.truncated,
            end_offset: line.end_offset,
        });
        if let Some(c) = &mut containers {
            ctx.count_parsed(c.batch(&batch, Instant::now(), &mut sink));
            let counts = sink.counts;
            if !ctx.hand_off(&mut rows, counts).await {
                break;
            }
            continue;
        }
        match &ctx.rules {
            None => {
                if formats.len() > MAX_FILE_FORMATS {
                    // Files rotated away long ago; the live ones are looked at again.
                    formats.clear();
                }
                let lines_of = formats
                    .entry(batch.file)
                    .or_insert_with(|| FileFormat::of(ctx.format, &batch.path, ctx.max_record));
                for l in lines {
                    let offset = l.end_offset;
                    lines_of.line(l, ctx.max_record, &mut |rec| sink.record(rec, offset));
                }
            }
            Some(rules) => {
                let mut events = match pending.remove(&batch.file) {
                    Some(p) => p.events,
                    None => LineEvents::new(rules.clone()),
                };
                for l in lines {
                    events.line(l, &mut |rec, offset| sink.record(rec, offset));
                }
                ctx.count_parsed(events.take_counts());
                if let Some(timeout) = events.pending_timeout() {
                    let p = PendingFile {
                        events,
                        until: Instant::now() + timeout,
                        path: batch.path.clone(),
                        source,
                    };
                    pending.insert(batch.file, p);
                }
            }
        }
        let counts = sink.counts;
        if !ctx.hand_off(&mut rows, counts).await {
            break;
        }
    }
    // The tailer stopped (shutdown, reload): what is pending is complete as far as we will know.
    for (_, mut p) in pending.drain() {
        let counts = p.flush(&ctx, &mut rows);
        ctx.hand_off(&mut rows, counts).await;
    }
    if let Some(c) = &mut containers {
        flush_containers(&ctx, c, None, &mut rows).await;
    }
    let _ = tail.await;
}

/// Emits what container files hold: what is due by `now`, or everything (`None`).
async fn flush_containers(
    ctx: &InputCtx,
    c: &mut ContainerFiles,
    now: Option<Instant>,
    rows: &mut RowBuf,
) -> bool {
    let files = match now {
        Some(now) => c.due(now),
        None => c.holding(),
    };
    let mut open = true;
    for (key, path) in files {
        let path_json = json_string(&path.display().to_string());
        let name = path.display().to_string();
        let time_read = rfc3339_utc(jiff::Timestamp::now());
        let mut sink = RowSink {
            encoder: &ctx.encoder,
            deadletter: &ctx.deadletter,
            name: &name,
            source: ctx.sources.file(key, &path),
            file_path_json: Some(&path_json),
            time_read: &time_read,
            out: rows,
            counts: SinkCounts::default(),
        };
        ctx.count_parsed(c.flush(key, now, &mut sink));
        let counts = sink.counts;
        open &= ctx.hand_off(rows, counts).await;
    }
    open
}

/// A journald input, ready to run: its reader, how its entries become rows, and where its
/// position is kept.
pub struct Journal {
    reader: JournalReader,
    rows: JournalRows,
    position: Arc<JournalPosition>,
    max_entry_bytes: usize,
    too_large: Counter,
}

impl Journal {
    /// Resumes after the input's saved cursor. Fails when journalctl cannot be found.
    pub fn new(
        name: &str,
        plan: &super::plan::JournalPlan,
        output: &str,
        shared: &super::Shared,
        saved: &Checkpoints,
    ) -> Result<Journal, JournalError> {
        let opts = plan.options.clone();
        let max_entry_bytes = opts.max_entry_bytes;
        let shape = opts.shape;
        let cursor = saved.journal(name).map(|c| c.cursor.clone());
        let reader = JournalReader::new(name, opts, cursor)?;
        Ok(Journal {
            reader,
            rows: JournalRows::new(shape, &shared.computer, plan.unit_column),
            position: Arc::new(JournalPosition {
                input: name.to_string(),
                cursors: std::sync::Mutex::new(CursorLog::new()),
                checkpointer: shared.checkpointer.clone(),
            }),
            max_entry_bytes,
            too_large: shared
                .metrics
                .records_dropped(output, crate::metrics::DropReason::TooLarge),
        })
    }
}

/// A journald input's cursors between read and safe; saves the cursor of the last safe row.
struct JournalPosition {
    input: String,
    cursors: std::sync::Mutex<CursorLog>,
    /// `None` only where nothing keeps positions (a journal is read by the agent alone).
    checkpointer: Option<Arc<super::Checkpointer>>,
}

impl JournalPosition {
    fn log(&self) -> std::sync::MutexGuard<'_, CursorLog> {
        self.cursors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The row number of an entry: a new one for an entry with a cursor, else the last one's
    /// (an entry without a cursor cannot move the checkpoint).
    fn number(&self, cursor: Option<String>) -> u64 {
        let mut log = self.log();
        match cursor {
            Some(c) => log.push(c),
            None => log.last(),
        }
    }
}

impl std::fmt::Debug for JournalPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalPosition")
            .field("input", &self.input)
            .field("pending", &self.log().pending())
            .finish()
    }
}

impl SafeUpTo for JournalPosition {
    fn safe_up_to(&self, offset: u64) {
        let cursor = self.log().safe(offset);
        if let (Some(c), Some(checkpointer)) = (cursor, &self.checkpointer) {
            checkpointer.advance_journal(&self.input, &c);
        }
    }
}

/// Reads a journald input: entries become rows through the input's encoder, like any record.
pub async fn journald(ctx: InputCtx, journal: Journal) {
    let Journal {
        reader,
        rows,
        position,
        max_entry_bytes,
        too_large,
    } = journal;
    let (tx, mut rx) = mpsc::channel::<JournalBatch>(4);
    let read = tokio::spawn(reader.run(tx, ctx.stop.inputs.clone()));
    let label = format!("<journal {}>", ctx.name);
    let source = ctx.sources.positioned(&label, position.clone());
    let too_large_reason = format!(
        "a journal entry of more than {max_entry_bytes} bytes of JSON (8 times the output's \
         max_request_bytes); skipped"
    );
    let mut buf = RowBuf::with_capacity(HANDOFF_BYTES * 2);
    while let Some(batch) = rx.recv().await {
        if let Some(cursor) = &batch.started_after {
            // A first start from now: nothing before this entry will be read.
            if let Some(c) = &ctx.checkpointer {
                c.advance_journal(&ctx.name, cursor);
            }
        }
        let time_read = rfc3339_utc(jiff::Timestamp::now());
        let mut sink = RowSink {
            encoder: &ctx.encoder,
            deadletter: &ctx.deadletter,
            name: &label,
            source,
            file_path_json: None,
            time_read: &time_read,
            out: &mut buf,
            counts: SinkCounts::default(),
        };
        let mut skipped = 0;
        for r in batch.reads {
            match r {
                Read::Entry(e) => {
                    let number = position.number(e.cursor.clone());
                    let map = rows.object(e);
                    sink.record(Record::Object { map, number }, number);
                }
                Read::Bad { reason, sample } => {
                    let raw = std::borrow::Cow::Owned(sample);
                    sink.record(
                        Record::Bad {
                            reason,
                            raw,
                            number: 0,
                        },
                        0,
                    );
                }
                Read::TooLarge { sample } => {
                    skipped += 1;
                    ctx.deadletter
                        .write(&label, 0, &too_large_reason, Refused::Record(&sample));
                }
            }
        }
        let mut counts = sink.counts;
        counts.read += skipped;
        too_large.add(skipped);
        if !ctx.hand_off(&mut buf, counts).await {
            break;
        }
    }
    let _ = read.await;
}
