//! Input tasks: read records, build rows, hand them to their output in bounded chunks.

use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

use super::sources::Sources;
use super::Rows;
use crate::config::InputFormat;
use crate::deadletter::DeadLetter;
use crate::input::decode::line_record;
use crate::input::file::{FileLines, FileTailer};
use crate::input::lines::Line;
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
}

impl InputCtx {
    async fn hand_off(&self, rows: &mut RowBuf, counts: SinkCounts) -> bool {
        self.received.add(counts.read);
        self.dropped.add(counts.rejected);
        if rows.is_empty() {
            return true;
        }
        let full = std::mem::replace(rows, RowBuf::with_capacity(HANDOFF_BYTES * 2));
        self.out.send(Rows { rows: full }).await.is_ok()
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
    let mut decoder = Decoder::new(decoder_format(ctx.format), ctx.max_record);
    let mut buf = vec![0u8; 64 * 1024];
    let mut rows = RowBuf::with_capacity(HANDOFF_BYTES * 2);
    loop {
        let n = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => 0,
            r = reader.read(&mut buf) => match r {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(input = %ctx.name, error = %e, "reading stdin failed");
                    0
                }
            },
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
        sink.decode(&mut decoder, &buf[..n]);
        let counts = sink.counts;
        if !ctx.hand_off(&mut rows, counts).await || n == 0 {
            return;
        }
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
    while let Some(batch) = rx.recv().await {
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
        let format = decoder_format(ctx.format);
        for (line, bytes) in batch.iter() {
            let l = Line {
                bytes,
                number: line.number,
                truncated: line.truncated,
                end_offset: line.end_offset,
            };
            line_record(format, l, ctx.max_record, &mut |rec| {
                sink.record(rec, line.end_offset)
            });
        }
        let counts = sink.counts;
        if !ctx.hand_off(&mut rows, counts).await {
            break;
        }
    }
    let _ = tail.await;
}
