//! Input tasks: read records, build rows, hand them to their output in bounded chunks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::sources::Sources;
use super::Rows;
use crate::config::InputFormat;
use crate::deadletter::DeadLetter;
use crate::input::container::{ContainerFiles, ContainerSettings};
use crate::input::decode::line_record;
use crate::input::file::{FileKey, FileLines, FileTailer};
use crate::input::lines::Line;
use crate::input::parse::{LineEvents, ParseCounts, TextRules};
use crate::input::{Decoder, Format};
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
        ctx.checkpointer.note_windows(batch.file, &batch.windows);
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
