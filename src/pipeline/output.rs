//! One output at run time: a batcher task packing the rows of its inputs; sealing tasks that
//! gzip each batch and hand it on; and delivery, which depends on the output's [`Queue`]:
//!
//! ```text
//!  rows ─▶ batcher ─(Seq, RawBatch)─▶ N sealers ─append─▶ spool ─next─▶ N deliverers ─▶ DCE
//!                                        │ fsynced                 ▲ ack ──┘
//!                                        ▼
//!                           ack tracker → checkpoints
//! ```
//!
//! - [`Queue::Spool`] (the agent, and `send --spool`): sealers append to the disk spool; once
//!   fsynced, the ack tracker lets the file checkpoints move past its rows; deliverers take the
//!   spool's records in order, deliver them under the policy and acknowledge them there.
//! - [`Queue::Direct`] (`send`): each sealer delivers what it sealed, straight from memory.
//! - [`Queue::DryRun`] (`send --dry-run`): each sealed body is counted as if accepted.
//!
//! Of the N sealers (N = `concurrency`) only as many as there are cores compress at a time: more
//! gain nothing but raw batches held in memory. A sealer takes a batch only once it holds a
//! compression slot, and a sealed batch keeps its gzip and row index, not its raw body.
//!
//! A failure the policy calls fatal (only in a one-shot run) stops everything through [`Stop`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Mutex as AsyncMutex, Semaphore};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::acks::{AckTracker, Seq};
use super::sources::Sources;
use super::stop::Stop;
use super::{Checkpointer, Rows};
use crate::batch::{Batcher, Gzip, Pushed, RawBatch, SealedBatch};
use crate::deadletter::DeadLetter;
use crate::health::{Health, OutputState};
use crate::ingest::sender::{DeliveryReport, ProbeFailure, RetryReason, Sender};
use crate::ingest::Sealer;
use crate::metrics::{DropReason, Encoding, Family, Metrics};
use crate::rows::Origin;
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
    /// Probe the output with `POST []` after this long without a request (see `probe`).
    pub probe_interval: Option<Duration>,
}

/// Where sealed bodies go on their way to the service.
#[derive(Clone)]
pub enum Queue {
    /// A durable FIFO on disk; delivered from there, acknowledged there.
    Spool(Arc<Spool>),
    /// Delivered by the sealer that sealed it, from memory.
    Direct,
    /// Counted as accepted, sent nowhere.
    DryRun,
}

/// The running output.
pub struct OutputRuntime {
    pub name: String,
    pub rows: mpsc::Sender<Rows>,
    /// Batcher and sealers: done once every row handed in is sealed (and spooled or delivered).
    packing: TaskTracker,
    /// Deliverers of the spool, and of adopted spools.
    delivery: TaskTracker,
    spool: Option<Arc<Spool>>,
    /// Spools left by outputs since renamed away, delivered here (same DCR and stream).
    adopted: Vec<Arc<Spool>>,
    sender: Option<Arc<Sender>>,
    report: Arc<OutputReport>,
    stop: Arc<Stop>,
    replayed: Origin,
    level: u32,
    /// The idle-output probe, stopped with the output.
    probe: Option<tokio::task::JoinHandle<()>>,
}

/// What an output needs from the pipeline around it.
pub struct OutputParts {
    pub queue: Queue,
    /// `None` in a dry run.
    pub sender: Option<Arc<Sender>>,
    pub report: Arc<OutputReport>,
    pub sources: Sources,
    /// `None` when no input keeps checkpoints (`send`).
    pub checkpointer: Option<Arc<Checkpointer>>,
    pub heartbeat: Arc<AtomicU64>,
    pub started: Instant,
    pub stop: Arc<Stop>,
}

impl OutputRuntime {
    pub fn start(spec: OutputSpec, parts: OutputParts) -> Self {
        let OutputParts {
            queue,
            sender,
            report,
            sources,
            checkpointer,
            heartbeat,
            started,
            stop,
        } = parts;
        // Two chunks of up to 512 KiB wait for the batcher: more only cost memory (send at
        // 1M rows: peak RSS 27-30 MB with 8, 23-26 MB with 2, the same CPU).
        let (rows_tx, rows_rx) = mpsc::channel::<Rows>(2);
        let slots = compression_slots(spec.concurrency);
        // One batch waits per slot: a slot freed finds the next batch ready.
        let (work_tx, work_rx) = mpsc::channel::<(Seq, RawBatch)>(slots);
        let compressing = Arc::new(Semaphore::new(slots));
        let acks = Arc::new(Mutex::new(AckTracker::default()));
        let packing = TaskTracker::new();
        packing.spawn(batch_loop(
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
        let first_row = Arc::new(AtomicBool::new(false));
        for _ in 0..spec.concurrency {
            packing.spawn(seal_loop(
                work_rx.clone(),
                compressing.clone(),
                queue.clone(),
                sender.clone(),
                report.clone(),
                safe.clone(),
                Sealer::new(spec.max_request_bytes, spec.compression_level),
                stop.clone(),
                first_row.clone(),
            ));
        }
        packing.close();
        // Rows read back from the spool have lost their line numbers; dead-letters name this.
        let replayed = Origin {
            source: sources.stream(&format!("<spool of output {}>", spec.name)),
            line: 0,
            offset: 0,
        };
        let delivery = TaskTracker::new();
        let spool = match (&queue, &sender) {
            (Queue::Spool(spool), Some(sender)) => {
                for _ in 0..spec.concurrency {
                    delivery.spawn(deliver_loop(
                        spool.clone(),
                        sender.clone(),
                        stop.clone(),
                        replayed,
                        spec.compression_level,
                    ));
                }
                Some(spool.clone())
            }
            (Queue::Spool(spool), None) => Some(spool.clone()),
            _ => None,
        };
        let probe = match (spec.probe_interval, &sender) {
            (Some(every), Some(sender)) => Some(tokio::spawn(super::probe::run(
                sender.clone(),
                report.clone(),
                every,
            ))),
            _ => None,
        };
        OutputRuntime {
            probe,
            name: spec.name,
            rows: rows_tx,
            packing,
            delivery,
            spool,
            adopted: Vec::new(),
            sender,
            report,
            stop,
            replayed,
            level: spec.compression_level,
        }
    }

    /// Delivers what another output's spool holds (an output renamed by the configuration, to
    /// the same DCR and stream), then deletes that spool.
    pub fn adopt(&mut self, spool: Arc<Spool>) {
        let Some(sender) = self.sender.clone() else {
            return;
        };
        spool.close_input();
        self.delivery.spawn(deliver_and_remove(
            spool.clone(),
            sender,
            self.report.clone(),
            self.stop.clone(),
            self.replayed,
            self.level,
        ));
        self.adopted.push(spool);
    }

    /// Seals every row handed in, then waits until it is delivered (or, when the stop aborts,
    /// until the tasks have stopped). The inputs must have stopped (their senders dropped) first.
    pub async fn drain(self) {
        if let Some(p) = &self.probe {
            p.abort();
        }
        drop(self.rows);
        self.packing.wait().await;
        if let Some(spool) = &self.spool {
            spool.close_input();
        }
        self.delivery.close();
        self.delivery.wait().await;
    }

    /// Stops its tasks at once (a start that failed half-way).
    pub fn abort(&self) {
        self.stop.abort.cancel();
        if let Some(p) = &self.probe {
            p.abort();
        }
    }

    /// The output's spools (its own and adopted ones), to close once the tasks are done.
    pub fn spools(&self) -> Vec<Arc<Spool>> {
        self.spool
            .iter()
            .chain(self.adopted.iter())
            .cloned()
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
    report: Arc<OutputReport>,
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
    checkpointer: Option<Arc<Checkpointer>>,
}

impl SafeRows {
    fn finished(&self, seq: Seq) {
        let moved = self
            .acks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finished(seq);
        let Some(checkpointer) = &self.checkpointer else {
            return;
        };
        for (source, offset) in moved {
            if let Some(src) = self.sources.get(source) {
                if let Some((key, path)) = src.file {
                    checkpointer.advance(key, &path, offset);
                }
                if let Some(position) = src.position {
                    position.safe_up_to(offset);
                }
            }
        }
    }
}

/// Seals batches (gzip, on the blocking pool) and hands each body to the queue. A batch sealed
/// into several bodies is safe once all of them are.
#[allow(clippy::too_many_arguments)]
async fn seal_loop(
    rx: Arc<AsyncMutex<mpsc::Receiver<(Seq, RawBatch)>>>,
    compressing: Arc<Semaphore>,
    queue: Queue,
    sender: Option<Arc<Sender>>,
    report: Arc<OutputReport>,
    safe: Arc<SafeRows>,
    mut sealer: Sealer,
    stop: Arc<Stop>,
    first_row: Arc<AtomicBool>,
) {
    loop {
        let next = tokio::select! {
            next = async {
                // Never closed; a batch is taken only with a slot to compress it in.
                let slot = compressing.acquire().await.ok();
                (rx.lock().await.recv().await, slot)
            } => next,
            _ = stop.abort.cancelled() => return,
        };
        let (Some((seq, raw)), slot) = next else {
            return;
        };
        let sealed = sealer.seal(raw, &*report).await;
        drop(slot);
        let sealed = match sealed {
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
        match (&queue, &sender) {
            (Queue::Spool(spool), _) => {
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
            (Queue::Direct, Some(sender)) => {
                for body in sealed {
                    tokio::select! {
                        r = sender.deliver(body, sealer.gzip()) => {
                            if let Err(f) = r {
                                stop.fail(f);
                                return;
                            }
                        }
                        _ = stop.abort.cancelled() => return,
                    }
                }
                safe.finished(seq);
            }
            _ => {
                for body in sealed {
                    show_first_row(&body, &first_row);
                    report.accepted(&body);
                }
                safe.finished(seq);
            }
        }
    }
}

/// How many batches are compressed at once: one per core, at most `concurrency`.
fn compression_slots(concurrency: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    concurrency.clamp(1, cores.max(1))
}

/// A dry run logs its first row, so the user sees what a row looks like.
fn show_first_row(body: &SealedBatch, shown: &AtomicBool) {
    if body.is_empty() || shown.swap(true, Relaxed) {
        return;
    }
    match body.unseal() {
        Ok(raw) => {
            if let Some((row, _)) = raw.rows().next() {
                tracing::info!(row = %String::from_utf8_lossy(row), "first row (dry run)");
            }
        }
        Err(e) => tracing::warn!(error = %e, "the first row cannot be shown"),
    }
}

/// Delivers an adopted spool to its end, then deletes its directory.
async fn deliver_and_remove(
    spool: Arc<Spool>,
    sender: Arc<Sender>,
    report: Arc<OutputReport>,
    stop: Arc<Stop>,
    replayed: Origin,
    level: u32,
) {
    deliver_loop(spool.clone(), sender, stop, replayed, level).await;
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

/// Takes records from the spool in order, delivers each, and acknowledges it there. Stops when
/// the spool is closed and empty, or at once when the stop aborts.
async fn deliver_loop(
    spool: Arc<Spool>,
    sender: Arc<Sender>,
    stop: Arc<Stop>,
    replayed: Origin,
    level: u32,
) {
    let mut gz = Gzip::new(level);
    loop {
        let rec = tokio::select! {
            rec = spool.next() => rec,
            _ = stop.abort.cancelled() => return,
        };
        let Some(rec) = rec else { return };
        let delivered = async {
            match rec.body {
                Body::Sealed(b) => sender.deliver(b, &mut gz).await,
                // Sent as stored; unsealed (on the blocking pool) only if the service refuses it.
                Body::Gzip(g) => {
                    let unseal = |g| async move {
                        tokio::task::spawn_blocking(move || unseal(g, replayed))
                            .await
                            .map_err(|e| e.to_string())?
                    };
                    sender
                        .deliver_spooled(g, rec.rows as usize, &mut gz, unseal)
                        .await
                }
            }
        };
        tokio::select! {
            r = delivered => match r {
                Ok(()) => {}
                // The agent's policy has nothing fatal: deliver() returns when every row is
                // done. A one-shot run stops at the first fatal failure; the request stays in
                // the spool for the next run.
                Err(f) => {
                    stop.fail(f);
                    return;
                }
            },
            // Dropped from a full spool (when_full = "drop_oldest"): counted there.
            _ = spool.dropped(rec.seq) => continue,
            _ = stop.abort.cancelled() => return,
        }
        spool.ack(rec.seq);
    }
}

/// Creates every series an output has at 0 — each status the policy knows, each retry and drop
/// reason — so a scraper sees the first 403 as an increase from 0, not as a new series.
pub fn declare_series(metrics: &Metrics, output: &str) {
    for status in crate::ingest::classify::KNOWN_STATUSES {
        metrics.requests(output, Some(*status));
    }
    metrics.requests(output, None);
    for reason in RetryReason::ALL {
        metrics.retries(output, reason.label());
    }
    for reason in DropReason::ALL {
        metrics.records_dropped(output, reason);
    }
    metrics.records_sent(output);
    metrics.request_bytes(output, Encoding::Raw);
    metrics.request_bytes(output, Encoding::Gzip);
    metrics.request_duration(output);
    metrics.request_rows(output);
    metrics.request_size(output);
    metrics.last_success(output);
}

/// Reports deliveries into metrics, health and the dead-letter.
pub struct OutputReport {
    pub output: String,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub deadletter: Arc<DeadLetter>,
    pub sources: Sources,
    /// Rows delivered or refused, for STATUS (shared across reloads).
    pub done: Arc<AtomicU64>,
}

impl OutputReport {
    fn name_of(&self, source: u32) -> Arc<str> {
        self.sources
            .get(source)
            .map(|s| s.name)
            .unwrap_or_else(|| Arc::from("?"))
    }

    fn refuse_row(&self, row: &[u8], origin: crate::rows::Origin, reason: &str) {
        self.deadletter
            .write_rows(std::iter::once((row, origin)), reason, |s| self.name_of(s));
        self.metrics
            .records_dropped(&self.output, DropReason::TooLarge)
            .inc();
    }
}

impl OutputReport {
    /// What a probe of the idle output found.
    pub fn probed(&self, result: Result<(), ProbeFailure>) {
        match result {
            Ok(()) => self
                .health
                .record_probe(&self.output, OutputState::Ok, None),
            Err(f) => self.health.record_probe(
                &self.output,
                state_of(f.reason),
                Some(&format!("probe (POST []) of the idle output: {}", f.detail)),
            ),
        }
    }
}

/// The `/health` state a failure puts an output in.
fn state_of(reason: RetryReason) -> OutputState {
    match reason {
        RetryReason::Permission => OutputState::WaitingForPermission,
        RetryReason::Misconfigured => OutputState::Misconfigured,
        RetryReason::Throttled => OutputState::Throttled,
        RetryReason::ServerError
        | RetryReason::Network
        | RetryReason::Timeout
        | RetryReason::Unauthorized => OutputState::Failing,
    }
}

impl DeliveryReport for OutputReport {
    fn accepted(&self, batch: &SealedBatch) {
        self.accepted_spooled(batch.len(), batch.raw_len(), batch.gzip.len());
    }

    fn accepted_spooled(&self, rows: usize, raw_bytes: usize, gzip_bytes: usize) {
        self.metrics.records_sent(&self.output).add(rows as u64);
        self.metrics.request_rows(&self.output).observe(rows as f64);
        self.metrics
            .request_size(&self.output)
            .observe(raw_bytes as f64);
        self.metrics
            .request_bytes(&self.output, Encoding::Raw)
            .add(raw_bytes as u64);
        self.metrics
            .request_bytes(&self.output, Encoding::Gzip)
            .add(gzip_bytes as u64);
        self.done.fetch_add(rows as u64, Relaxed);
        self.health.record_success(&self.output);
    }

    fn rejected(&self, batch: &RawBatch, reason: &str) {
        self.deadletter
            .write_rows(batch.rows(), reason, |s| self.name_of(s));
        self.metrics
            .records_dropped(&self.output, DropReason::Rejected)
            .add(batch.len() as u64);
        self.done.fetch_add(batch.len() as u64, Relaxed);
    }

    fn unreadable(&self, rows: usize, reason: &str) {
        tracing::error!(output = %self.output, rows, error = %reason, "a refused request cannot be read back to split it; its rows are dropped");
        self.metrics
            .records_dropped(&self.output, DropReason::SpoolCorrupt)
            .add(rows as u64);
        self.done.fetch_add(rows as u64, Relaxed);
    }

    fn request(&self, status: Option<u16>, took: Duration) {
        self.metrics.requests(&self.output, status).inc();
        self.metrics
            .request_duration(&self.output)
            .observe(took.as_secs_f64());
    }

    fn retry(&self, reason: RetryReason, detail: &str) {
        self.metrics.retries(&self.output, reason.label()).inc();
        self.health.set_state(&self.output, state_of(reason));
        self.health.record_error(
            &self.output,
            &format!("retrying ({}): {detail}", reason.label()),
        );
    }

    fn backlog(&self) -> Option<String> {
        let bytes = self.metrics.spool_bytes(&self.output).get();
        if bytes > 0.0 {
            return Some(format!(
                "{} waiting in the spool",
                crate::stats::bytes(bytes as u64)
            ));
        }
        // Without a spool: rows read and not yet delivered or refused.
        let read = self.metrics.sum(Family::RecordsReceived, &[]);
        let done = self
            .metrics
            .sum(Family::RecordsSent, &[("output", &self.output)])
            + self
                .metrics
                .sum(Family::RecordsDropped, &[("output", &self.output)]);
        (read > done).then(|| format!("{} rows read and not yet delivered", read - done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17 item 2: before, a status or reason appeared at its first increment, so
    /// `increase()` missed the first 403s and an alert on them could not fire.
    #[test]
    fn every_known_status_and_reason_of_an_output_starts_at_zero() {
        let m = Metrics::new();
        declare_series(&m, "app");
        let text = m.render();
        let zero = |sample: String| {
            assert!(
                text.contains(&format!("{sample} 0\n")),
                "{sample} in\n{text}"
            );
        };
        for status in [
            "204", "400", "401", "403", "404", "408", "413", "429", "500", "503", "error",
        ] {
            zero(format!(
                "dcrship_requests_total{{output=\"app\",status=\"{status}\"}}"
            ));
        }
        for reason in RetryReason::ALL {
            zero(format!(
                "dcrship_retries_total{{output=\"app\",reason=\"{}\"}}",
                reason.label()
            ));
        }
        for reason in DropReason::ALL {
            zero(format!(
                "dcrship_records_dropped_total{{output=\"app\",reason=\"{}\"}}",
                reason.label()
            ));
        }
        zero("dcrship_records_sent_total{output=\"app\"}".into());
        zero("dcrship_request_duration_seconds_count{output=\"app\"}".into());
        zero("dcrship_last_success_timestamp_seconds{output=\"app\"}".into());
        assert_eq!(m.sum(Family::Requests, &[]), 0);
    }

    #[test]
    fn each_failure_puts_the_output_in_its_state() {
        use OutputState::*;
        let cases = [
            (RetryReason::Permission, WaitingForPermission),
            (RetryReason::Misconfigured, Misconfigured),
            (RetryReason::Throttled, Throttled),
            (RetryReason::ServerError, Failing),
            (RetryReason::Network, Failing),
            (RetryReason::Timeout, Failing),
            (RetryReason::Unauthorized, Failing),
        ];
        assert_eq!(cases.len(), RetryReason::ALL.len());
        for (reason, state) in cases {
            assert_eq!(state_of(reason), state, "{reason:?}");
        }
    }
}
