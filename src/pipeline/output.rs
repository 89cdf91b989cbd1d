//! One output at run time: a batcher task packing the rows of its inputs, and sender workers
//! that seal (gzip) and deliver batches, then tell the ack tracker so checkpoints can advance.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Mutex as AsyncMutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::acks::{AckTracker, Seq};
use super::sources::Sources;
use super::{Checkpointer, Rows};
use crate::batch::{Batcher, Pushed, RawBatch};
use crate::deadletter::DeadLetter;
use crate::health::{Health, OutputState};
use crate::ingest::sender::{DeliveryReport, RetryReason, Sender};
use crate::ingest::Sealer;
use crate::metrics::{Encoding, Metrics};

/// Settings of one output's runtime.
pub struct OutputSpec {
    pub name: String,
    pub concurrency: usize,
    pub max_request_bytes: usize,
    pub batch_timeout: Duration,
    pub compression_level: u32,
}

/// The running output.
pub struct OutputRuntime {
    pub name: String,
    pub rows: mpsc::Sender<Rows>,
    batcher: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
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
    ) -> Self {
        let (rows_tx, rows_rx) = mpsc::channel::<Rows>(8);
        let (work_tx, work_rx) = mpsc::channel::<(Seq, RawBatch)>(spec.concurrency * 2);
        let acks = Arc::new(Mutex::new(AckTracker::default()));
        let batcher = tokio::spawn(batch_loop(
            rows_rx,
            work_tx,
            Batcher::new(spec.max_request_bytes),
            spec.batch_timeout,
            acks.clone(),
            report.clone(),
            heartbeat,
            started,
        ));
        let work_rx = Arc::new(AsyncMutex::new(work_rx));
        let workers = (0..spec.concurrency)
            .map(|_| {
                tokio::spawn(worker(
                    work_rx.clone(),
                    sender.clone(),
                    report.clone(),
                    acks.clone(),
                    sources.clone(),
                    checkpointer.clone(),
                    spec.max_request_bytes,
                    spec.compression_level,
                ))
            })
            .collect();
        OutputRuntime {
            name: spec.name,
            rows: rows_tx,
            batcher,
            workers,
        }
    }

    /// Waits until every row handed in has been delivered or refused. The inputs must have
    /// stopped (their senders dropped) first.
    pub async fn drain(self) {
        drop(self.rows);
        let _ = self.batcher.await;
        for w in self.workers {
            let _ = w.await;
        }
    }

    /// Handles that stop the tasks at once; rows in flight stay unacknowledged (their offsets
    /// were never saved).
    pub fn abort_handles(&self) -> Vec<tokio::task::AbortHandle> {
        std::iter::once(self.batcher.abort_handle())
            .chain(self.workers.iter().map(JoinHandle::abort_handle))
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

#[allow(clippy::too_many_arguments)]
async fn worker(
    rx: Arc<AsyncMutex<mpsc::Receiver<(Seq, RawBatch)>>>,
    sender: Arc<Sender>,
    report: Arc<RunReport>,
    acks: Arc<Mutex<AckTracker>>,
    sources: Sources,
    checkpointer: Arc<Checkpointer>,
    cap: usize,
    level: u32,
) {
    let mut sealer = Sealer::new(cap, level);
    loop {
        let next = rx.lock().await.recv().await;
        let Some((seq, raw)) = next else { return };
        match sealer.seal(raw, &*report).await {
            Ok(sealed) => {
                for b in sealed {
                    // In run mode nothing is fatal: deliver() returns when every row is done.
                    if let Err(e) = sender.deliver(b, sealer.gzip()).await {
                        tracing::error!(error = %e, "delivery stopped");
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "compressing a batch failed; its rows will be read again after a restart");
                continue;
            }
        }
        let moved = acks.lock().unwrap_or_else(|p| p.into_inner()).finished(seq);
        for (source, offset) in moved {
            if let Some(src) = sources.get(source) {
                if let Some((key, path)) = src.file {
                    checkpointer.advance(key, &path, offset);
                }
            }
        }
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

    fn retry(&self, reason: RetryReason) {
        self.metrics.retries(&self.output, reason.label()).inc();
        let state = match reason {
            RetryReason::Permission => OutputState::WaitingForPermission,
            RetryReason::Throttled => OutputState::Throttled,
            _ => OutputState::Failing,
        };
        self.health.set_state(&self.output, state);
        self.health
            .record_error(&self.output, &format!("retrying: {}", reason.label()));
    }
}
