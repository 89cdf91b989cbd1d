//! Input tasks: read records, build rows, hand them to their output in bounded chunks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::sources::{SafeUpTo, Sources};
use super::Rows;
use crate::config::{Config, InputConfig, InputFormat};
use crate::deadletter::{DeadLetter, Refused};
use crate::input::checkpoint::Checkpoints;
use crate::input::decode::line_record;
use crate::input::file::{FileKey, FileLines, FileTailer};
use crate::input::journald::cursor::CursorLog;
use crate::input::journald::rows::{JournalRows, UNIT_COLUMN};
use crate::input::journald::{JournalBatch, JournalError, JournalOptions, JournalReader, Read};
use crate::input::lines::Line;
use crate::input::parse::{LineEvents, ParseCounts, TextRules};
use crate::input::{Decoder, Format, Record};
use crate::metrics::Counter;
use crate::transform::row::json_string;
use crate::transform::sink::{RowBuf, RowSink, SinkCounts};
use crate::transform::time::rfc3339_utc;
use crate::transform::RowEncoder;

/// Hand rows on once this many bytes are buffered (or the chunk read is done).
const HANDOFF_BYTES: usize = 256 * 1024;

/// What every input task needs.
pub struct InputCtx {
    pub name: String,
    pub format: InputFormat,
    pub encoder: RowEncoder,
    pub sources: Sources,
    pub deadletter: Arc<DeadLetter>,
    pub received: Counter,
    /// Records refused before they became rows (invalid JSON, too long).
    pub dropped: Counter,
    pub out: mpsc::Sender<Rows>,
    /// The output's request cap: a JSON record longer than this can never be sent.
    pub max_record: usize,
    pub checkpointer: Arc<super::Checkpointer>,
    /// `dcrship_row_issues_total{input,issue}`.
    pub issues: crate::transform::IssueCounters,
    /// Parser and multiline rules; `None` for plain `text` and `json`, which skip them.
    pub rules: Option<Arc<TextRules>>,
    /// `dcrship_parse_failures_total{input}`.
    pub parse_failures: Counter,
    /// `dcrship_multiline_cut_total{input}`.
    pub multiline_cut: Counter,
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
        self.out.send(Rows { rows: full }).await.is_ok()
    }

    fn count_parsed(&self, c: ParseCounts) {
        self.parse_failures.add(c.mismatched);
        self.multiline_cut.add(c.cut);
    }

    fn decoder(&self) -> Decoder {
        match &self.rules {
            Some(rules) => Decoder::with_rules(rules.clone(), self.max_record),
            None => Decoder::new(decoder_format(self.format), self.max_record),
        }
    }
}

/// Resolves at `deadline`; never when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn decoder_format(f: InputFormat) -> Format {
    match f {
        InputFormat::Json => Format::Ndjson,
        _ => Format::Text,
    }
}

/// Reads stdin to its end (or until stopped).
pub async fn stdin(ctx: InputCtx, mut stop: watch::Receiver<bool>) {
    let source = ctx.sources.stream("<stdin>");
    let mut reader = tokio::io::stdin();
    let mut decoder = ctx.decoder();
    let mut buf = vec![0u8; 64 * 1024];
    let mut rows = RowBuf::with_capacity(HANDOFF_BYTES * 2);
    // When a pending multiline event has waited its timeout for another line.
    let mut pending_until: Option<Instant> = None;
    loop {
        // `None`: emit the pending multiline event; `Some(0)`: the end (or stop).
        let n = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => Some(0),
            _ = sleep_until(pending_until) => None,
            r = reader.read(&mut buf) => Some(match r {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(input = %ctx.name, error = %e, "reading stdin failed");
                    0
                }
            }),
        };
        let time_read = rfc3339_utc(jiff::Timestamp::now());
        let mut sink = RowSink {
            encoder: &ctx.encoder,
            deadletter: &ctx.deadletter,
            name: "<stdin>",
            source,
            file_path_json: None,
            time_read: &time_read,
            out: &mut rows,
            counts: SinkCounts::default(),
        };
        match n {
            Some(n) => sink.decode(&mut decoder, &buf[..n]),
            None => decoder.flush_pending(&mut |rec| sink.record(rec, 0)),
        }
        let counts = sink.counts;
        ctx.count_parsed(decoder.take_parse_counts());
        pending_until = decoder.pending_timeout().map(|t| Instant::now() + t);
        if !ctx.hand_off(&mut rows, counts).await || n == Some(0) {
            return;
        }
    }
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
pub async fn files(ctx: InputCtx, tailer: FileTailer, stop: watch::Receiver<bool>) {
    let (tx, mut rx) = mpsc::channel::<FileLines>(4);
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
    loop {
        let next = pending.values().map(|p| p.until).min();
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
                if !open {
                    break;
                }
                continue;
            }
        };
        let Some(batch) = batch else { break };
        if let Some(start) = batch.started_at {
            // Nothing before `start` will ever be sent: safe to checkpoint now.
            ctx.checkpointer.advance(batch.file, &batch.path, start);
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
        match &ctx.rules {
            None => {
                let format = decoder_format(ctx.format);
                for l in lines {
                    let offset = l.end_offset;
                    line_record(format, l, ctx.max_record, &mut |rec| {
                        sink.record(rec, offset)
                    });
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
    let _ = tail.await;
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
    pub fn for_input(
        name: &str,
        input: &InputConfig,
        cfg: &Config,
        shared: &super::Shared,
        saved: &Checkpoints,
    ) -> Result<Journal, JournalError> {
        let output = cfg.outputs.get(&input.output);
        let cap = output.map_or(crate::config::DEFAULT_MAX_REQUEST_BYTES, |o| {
            o.max_request_bytes
        });
        let opts = JournalOptions::from_input(input, cap);
        let max_entry_bytes = opts.max_entry_bytes;
        let shape = opts.shape;
        let cursor = saved.journal(name).map(|c| c.cursor.clone());
        let reader = JournalReader::new(name, opts, cursor)?;
        // The unit column goes out unless the stream declares columns without it.
        let declared = output.map(|o| o.declared_columns()).unwrap_or_default();
        let unit_column = input
            .rename
            .get(UNIT_COLUMN)
            .map_or(UNIT_COLUMN, String::as_str);
        let unit = declared.is_empty() || declared.contains_key(unit_column);
        Ok(Journal {
            reader,
            rows: JournalRows::new(shape, &shared.computer, unit),
            position: Arc::new(JournalPosition {
                input: name.to_string(),
                cursors: std::sync::Mutex::new(CursorLog::new()),
                checkpointer: shared.checkpointer.clone(),
            }),
            max_entry_bytes,
            too_large: shared.metrics.records_dropped(&input.output, "too_large"),
        })
    }
}

/// A journald input's cursors between read and safe; saves the cursor of the last safe row.
struct JournalPosition {
    input: String,
    cursors: std::sync::Mutex<CursorLog>,
    checkpointer: Arc<super::Checkpointer>,
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
            .field("pending", &self.log().len())
            .finish()
    }
}

impl SafeUpTo for JournalPosition {
    fn safe_up_to(&self, offset: u64) {
        let cursor = self.log().safe(offset);
        if let Some(c) = cursor {
            self.checkpointer.advance_journal(&self.input, &c);
        }
    }
}

/// Reads a journald input: entries become rows through the input's encoder, like any record.
pub async fn journald(ctx: InputCtx, journal: Journal, stop: watch::Receiver<bool>) {
    let Journal {
        reader,
        rows,
        position,
        max_entry_bytes,
        too_large,
    } = journal;
    let (tx, mut rx) = mpsc::channel::<JournalBatch>(4);
    let read = tokio::spawn(reader.run(tx, stop));
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
            ctx.checkpointer.advance_journal(&ctx.name, cursor);
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
