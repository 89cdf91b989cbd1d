//! One output at run time: a batcher task packing the rows of its inputs; sealing tasks that
//! gzip each batch and append it to the output's disk spool (once fsynced, the ack tracker lets
//! the file checkpoints move past its rows); and delivery tasks that take the spool's records in
//! order, deliver them under the policy and acknowledge them in the spool.
//!
//! ```text
//!  rows ─▶ batcher ─(Seq, RawBatch)─▶ N sealers ─append─▶ spool ─next─▶ N deliverers ─▶ DCE
//!                                        │ fsynced                 ▲ ack ──┘
//!                                        ▼
//!                           ack tracker → checkpoints
//! ```

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Mutex as AsyncMutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::acks::{AckTracker, Seq};
use super::sources::Sources;
use super::{Checkpointer, Rows};
use crate::batch::{Batcher, Gzip, Origin, Pushed, RawBatch};
use crate::deadletter::DeadLetter;
use crate::health::{Health, OutputState};
use crate::ingest::sender::{DeliveryReport, RetryReason, Sender};
use crate::ingest::Sealer;
use crate::metrics::{Encoding, Metrics};
use crate::spool::{unseal, Body, Spool};

/// Settings of one output's runtime.
pub struct OutputSpec {
    pub name: String,
    pub concurrency: usize,
    pub max_request_bytes: usize,
    pub batch_timeout: Duration,
    pub compression_level: u32,
    /// `max_time_span`: the `TimeGenerated` span one request may cover.
    pub max_time_span: Option<Duration>,
}

/// The running output.
pub struct OutputRuntime {
    pub name: String,
    pub rows: mpsc::Sender<Rows>,
    batcher: JoinHandle<()>,
    sealers: Vec<JoinHandle<()>>,
    deliverers: Vec<JoinHandle<()>>,
    spool: Arc<Spool>,
    /// Spools left by outputs since renamed away, delivered here (same DCR and stream).
    adopted: Vec<(Arc<Spool>, JoinHandle<()>)>,
    sender: Arc<Sender>,
    report: Arc<RunReport>,
    replayed: Origin,
    level: u32,
}

impl OutputRuntime {
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        spec: OutputSpec,
        sender: Arc<Sender>,
        report: Arc<RunReport>,
        sources: Sources,
        checkpointer: Arc<Checkpointer>,
        heartbeat: Arc<AtomicU64>,
        started: Instant,
        spool: Arc<Spool>,
    ) -> Self {
        let (rows_tx, rows_rx) = mpsc::channel::<Rows>(8);
        let (work_tx, work_rx) = mpsc::channel::<(Seq, RawBatch)>(spec.concurrency);
        let acks = Arc::new(Mutex::new(AckTracker::default()));
        let batcher = tokio::spawn(batch_loop(
            rows_rx,
            work_tx,
            Batcher::new(spec.max_request_bytes).with_max_time_span(spec.max_time_span),
            spec.batch_timeout,
            acks.clone(),
            report.clone(),
            heartbeat,
            started,
        ));
        let work_rx = Arc::new(AsyncMutex::new(work_rx));
        let safe = Arc::new(SafeRows {
            acks,
            sources: sources.clone(),
            checkpointer,
        });
        let sealers = (0..spec.concurrency)
            .map(|_| {
                tokio::spawn(seal_loop(
                    work_rx.clone(),
                    spool.clone(),
                    report.clone(),
                    safe.clone(),
                    Sealer::new(spec.max_request_bytes, spec.compression_level),
                ))
            })
            .collect();
        // Rows read back from the spool have lost their line numbers; dead-letters name this.
        let replayed = Origin {
            source: sources.stream(&format!("<spool of output {}>", spec.name)),
            line: 0,
            offset: 0,
        };
        let deliverers = (0..spec.concurrency)
            .map(|_| {
                tokio::spawn(deliver_loop(
                    spool.clone(),
                    sender.clone(),
                    report.clone(),
                    replayed,
                    spec.compression_level,
                ))
            })
            .collect();
        OutputRuntime {
            name: spec.name,
            rows: rows_tx,
            batcher,
            sealers,
            deliverers,
            spool,
            adopted: Vec::new(),
            sender,
            report,
            replayed,
            level: spec.compression_level,
        }
    }

    /// Delivers what another output's spool holds (an output renamed by the configuration, to
    /// the same DCR and stream), then deletes that spool.
    pub fn adopt(&mut self, spool: Arc<Spool>) {
        spool.close_input();
        let task = tokio::spawn(deliver_and_remove(
            spool.clone(),
            self.sender.clone(),
            self.report.clone(),
            self.replayed,
            self.level,
        ));
        self.adopted.push((spool, task));
    }

    /// Spools every row handed in, then waits until the spool is delivered. The inputs must
    /// have stopped (their senders dropped) first.
    pub async fn drain(self) {
        drop(self.rows);
        let _ = self.batcher.await;
        for s in self.sealers {
            let _ = s.await;
        }
        self.spool.close_input();
        for w in self.deliverers {
            let _ = w.await;
        }
        for (_, w) in self.adopted {
            let _ = w.await;
        }
    }

    /// The output's spools (its own and adopted ones), to close once the tasks are done or
    /// aborted.
    pub fn spools(&self) -> Vec<Arc<Spool>> {
        std::iter::once(self.spool.clone())
            .chain(self.adopted.iter().map(|(s, _)| s.clone()))
            .collect()
    }

    /// Handles that stop the tasks at once; records in flight stay unacknowledged in the spool
    /// and are delivered after the next start.
    pub fn abort_handles(&self) -> Vec<tokio::task::AbortHandle> {
        std::iter::once(self.batcher.abort_handle())
            .chain(self.sealers.iter().map(JoinHandle::abort_handle))
            .chain(self.deliverers.iter().map(JoinHandle::abort_handle))
            .chain(self.adopted.iter().map(|(_, t)| t.abort_handle()))
            .collect()
    }
}

/// Milliseconds since `started`, for the heartbeat.
fn beat(heartbeat: &AtomicU64, started: Instant) {
    heartbeat.store(started.elapsed().as_millis() as u64, Relaxed);
}

#[allow(clippy::too_many_arguments)]
async fn batch_loop(
    mut rows_rx: mpsc::Receiver<Rows>,
    work_tx: mpsc::Sender<(Seq, RawBatch)>,
    mut batcher: Batcher,
    batch_timeout: Duration,
    acks: Arc<Mutex<AckTracker>>,
    report: Arc<RunReport>,
    heartbeat: Arc<AtomicU64>,
    started: Instant,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut deadline: Option<Instant> = None;
    loop {
        beat(&heartbeat, started);
        let mut ready = Vec::new();
        tokio::select! {
            r = rows_rx.recv() => match r {
                Some(rows) => {
                    for (row, origin) in rows.rows.rows() {
                        match batcher.push(row, origin) {
                            Pushed::Added => {}
                            Pushed::Full(b) => ready.push(b),
                            Pushed::TooLarge { row_bytes, cap } => report.refuse_row(
                                row,
                                origin,
                                &format!("row is {row_bytes} bytes as JSON; one request holds at most {cap} bytes"),
                            ),
                        }
                    }
                    if batcher.pending() > 0 && (deadline.is_none() || !ready.is_empty()) {
                        deadline = Some(Instant::now() + batch_timeout);
                    }
                }
                None => {
                    ready.extend(batcher.flush());
                    for b in ready {
                        if !hand_to_workers(&work_tx, &acks, b, &mut tick, &heartbeat, started).await {
                            return;
                        }
                    }
                    return;
                }
            },
            _ = sleep_until(deadline) => {
                deadline = None;
                ready.extend(batcher.flush());
            }
            _ = tick.tick() => {}
        }
        for b in ready {
            if !hand_to_workers(&work_tx, &acks, b, &mut tick, &heartbeat, started).await {
                return;
            }
        }
    }
}

/// Waits for room among the workers, beating the heartbeat meanwhile: a full queue during an
/// outage is backpressure, not a hang.
async fn hand_to_workers(
    work_tx: &mpsc::Sender<(Seq, RawBatch)>,
    acks: &Mutex<AckTracker>,
    batch: RawBatch,
    tick: &mut tokio::time::Interval,
    heartbeat: &AtomicU64,
    started: Instant,
) -> bool {
    loop {
        tokio::select! {
            permit = work_tx.reserve() => {
                let Ok(permit) = permit else { return false };
                let seq = acks.lock().unwrap_or_else(|p| p.into_inner()).sealed(&batch);
                permit.send((seq, batch));
                return true;
            }
            _ = tick.tick() => beat(heartbeat, started),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Moves file checkpoints once a batch's rows are safe (spooled and fsynced).
struct SafeRows {
    acks: Arc<Mutex<AckTracker>>,
    sources: Sources,
    checkpointer: Arc<Checkpointer>,
}

impl SafeRows {
    fn finished(&self, seq: Seq) {
        let moved = self
            .acks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finished(seq);
        for (source, offset) in moved {
            if let Some(src) = self.sources.get(source) {
                if let Some((key, path)) = src.file {
                    self.checkpointer.advance(key, &path, offset);
                }
                if let Some(position) = src.position {
                    position.safe_up_to(offset);
                }
            }
        }
    }
}

/// Seals batches (gzip, on the blocking pool) and appends them to the spool. A batch sealed
/// into several bodies is safe once all of them are.
async fn seal_loop(
    rx: Arc<AsyncMutex<mpsc::Receiver<(Seq, RawBatch)>>>,
    spool: Arc<Spool>,
    report: Arc<RunReport>,
    safe: Arc<SafeRows>,
    mut sealer: Sealer,
) {
    loop {
        let next = rx.lock().await.recv().await;
        let Some((seq, raw)) = next else { return };
        let sealed = match sealer.seal(raw, &*report).await {
            Ok(sealed) => sealed,
            Err(e) => {
                tracing::error!(error = %e, "compressing a batch failed; file rows will be read again after a restart, stdin rows are lost");
                continue;
            }
        };
        if sealed.is_empty() {
            safe.finished(seq);
            continue;
        }
        let left = Arc::new(AtomicUsize::new(sealed.len()));
        for body in sealed {
            let (left, safe) = (left.clone(), safe.clone());
            let on_safe = Box::new(move || {
                if left.fetch_sub(1, Relaxed) == 1 {
                    safe.finished(seq);
                }
            });
            if !spool.append(body, on_safe).await {
                return; // the spool closed: shutting down
            }
        }
    }
}

/// Delivers an adopted spool to its end, then deletes its directory.
async fn deliver_and_remove(
    spool: Arc<Spool>,
    sender: Arc<Sender>,
    report: Arc<RunReport>,
    replayed: Origin,
    level: u32,
) {
    deliver_loop(spool.clone(), sender, report.clone(), replayed, level).await;
    let (records, _) = spool.pending().await;
    spool.close().await;
    if records == 0 {
        let dir = spool.dir().to_path_buf();
        match tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir)).await {
            Ok(Ok(())) => {
                tracing::info!(output = %report.output, dir = %spool.dir().display(), "delivered the spool of a renamed output and deleted it")
            }
            Ok(Err(e)) => {
                tracing::warn!(dir = %spool.dir().display(), error = %e, "cannot delete a delivered spool")
            }
            Err(_) => {}
        }
    }
}

/// Takes records from the spool in order, delivers each, and acknowledges it there.
async fn deliver_loop(
    spool: Arc<Spool>,
    sender: Arc<Sender>,
    report: Arc<RunReport>,
    replayed: Origin,
    level: u32,
) {
    let mut gz = Gzip::new(level);
    while let Some(rec) = spool.next().await {
        let batch = match rec.body {
            Body::Sealed(b) => b,
            Body::Gzip(g) => match tokio::task::spawn_blocking(move || unseal(g, replayed)).await {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    tracing::error!(output = %report.output, rows = rec.rows, error = %e, "a spooled request cannot be read back; its rows are dropped");
                    report
                        .metrics
                        .records_dropped(&report.output, "spool_corrupt")
                        .add(u64::from(rec.rows));
                    spool.ack(rec.seq);
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading back a spooled request failed; it is sent after a restart");
                    continue;
                }
            },
        };
        tokio::select! {
            r = sender.deliver(batch, &mut gz) => {
                // In run mode nothing is fatal: deliver() returns when every row is done.
                if let Err(e) = r {
                    tracing::error!(error = %e, "delivery stopped; the request stays in the spool for the next start");
                    continue;
                }
            }
            // Dropped from a full spool (when_full = "drop_oldest"): counted there.
            _ = spool.dropped(rec.seq) => continue,
        }
        spool.ack(rec.seq);
    }
}

/// Reports deliveries into metrics, health and the dead-letter.
pub struct RunReport {
    pub output: String,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub deadletter: Arc<DeadLetter>,
    pub sources: Sources,
    /// Rows delivered or refused, for STATUS (shared across reloads).
    pub done: Arc<AtomicU64>,
}

impl RunReport {
    fn name_of(&self, source: u32) -> Arc<str> {
        self.sources
            .get(source)
            .map(|s| s.name)
            .unwrap_or_else(|| Arc::from("?"))
    }

    fn refuse_row(&self, row: &[u8], origin: crate::batch::Origin, reason: &str) {
        self.deadletter
            .write_rows(std::iter::once((row, origin)), reason, |s| self.name_of(s));
        self.metrics
            .records_dropped(&self.output, "too_large")
            .inc();
    }
}

impl DeliveryReport for RunReport {
    fn accepted(&self, batch: &RawBatch, gzip_bytes: usize) {
        self.metrics
            .records_sent(&self.output)
            .add(batch.len() as u64);
        self.metrics
            .request_bytes(&self.output, Encoding::Raw)
            .add(batch.body().len() as u64);
        self.metrics
            .request_bytes(&self.output, Encoding::Gzip)
            .add(gzip_bytes as u64);
        self.done.fetch_add(batch.len() as u64, Relaxed);
        self.health.record_success(&self.output);
    }

    fn rejected(&self, batch: &RawBatch, reason: &str) {
        self.deadletter
            .write_rows(batch.rows(), reason, |s| self.name_of(s));
        self.metrics
            .records_dropped(&self.output, "rejected")
            .add(batch.len() as u64);
        self.done.fetch_add(batch.len() as u64, Relaxed);
    }

    fn request(&self, status: Option<u16>) {
        self.metrics.requests(&self.output, status).inc();
    }

    fn retry(&self, reason: RetryReason, detail: &str) {
        self.metrics.retries(&self.output, reason.label()).inc();
        let state = match reason {
            RetryReason::Permission => OutputState::WaitingForPermission,
            RetryReason::Misconfigured => OutputState::Misconfigured,
            RetryReason::Throttled => OutputState::Throttled,
            _ => OutputState::Failing,
        };
        self.health.set_state(&self.output, state);
        self.health.record_error(
            &self.output,
            &format!("retrying ({}): {detail}", reason.label()),
        );
    }

    fn backlog(&self) -> Option<String> {
        let bytes = self.metrics.spool_bytes(&self.output).get();
        (bytes > 0.0).then(|| format!("{} waiting in the spool", crate::stats::bytes(bytes as u64)))
    }
}
