//! The one data path of `run` and `send`: inputs → rows → per-output batcher → sealers →
//! queue (disk spool, or memory) → deliverers, and checkpoints.
//!
//! ```text
//!  file tailer ─FileLines─▶ input task ─Rows─▶ output batcher ─RawBatch─▶ N sealers (gzip)
//!  stdin, files once ─────▶ input task ─┤        (batch_timeout)               │ append
//!  journalctl ─entries───▶ input task ─┘                                      │
//!                                                                             ▼
//!  checkpoints ◀── ack tracker (safe prefix per file) ◀── fsynced ── spool (state_dir/spool/<output>)
//!                                                                             │ next / ack
//!                                                                             ▼
//!                                                                  N deliverers (policy) ─▶ DCE
//! ```
//! Every hand-off is bounded: a full channel, or a full spool (`when_full = "block"`), stops the
//! file readers (the files are the buffer) and blocks stdin, and memory stays flat; during an
//! outage the spool grows on disk, not in memory. A file offset is saved only once every row
//! before it is fsynced in the spool (invariant 2).
//!
//! [`Mode`] says how the same path is used: the agent spools every output under its state
//! directory, keeps file checkpoints and retries forever; a one-shot upload (`send`) delivers
//! from memory (or through the spool of `--spool DIR`) and stops at the first failure no later
//! request can cure, which [`Stop`] carries to every task. [`Pipeline::shutdown`] stops the
//! inputs, seals what was read, delivers within a timeout and saves the checkpoints; what is not
//! delivered stays in the spool for the next start. SIGHUP reload is a shutdown
//! ([`Pipeline::hand_over`]: a stdin input leaves its decoder to the next pipeline) followed by
//! a start from the new configuration, so nothing is lost.

pub mod acks;
pub mod heartbeat;
pub mod inputs;
pub mod output;
pub mod plan;
pub mod probe;
pub mod sink;
pub mod sources;
pub mod stop;
pub mod windows;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::TokenCache;
use crate::deadletter::DeadLetter;
use crate::health::Health;
use crate::http::HttpClients;
use crate::ingest::sender::{Policy, Sender, Target};
use crate::ingest::HttpTransport;
use crate::input::checkpoint::{CheckpointError, CheckpointStore, Checkpoints};
use crate::input::file::{FileTailer, OpenFiles};
use crate::input::fingerprint::{FileKey, Window};
use crate::metrics::Metrics;
use crate::rows::RowBuf;
use crate::transform::RowEncoder;

use inputs::InputCtx;
use output::{OutputParts, OutputReport, OutputRuntime, OutputSpec, Queue};
use plan::{OutputPlan, Plan, Source};
use sources::Sources;
pub use stop::Stop;

/// Rows on their way from an input to its output.
#[derive(Debug)]
pub struct Rows {
    pub rows: RowBuf,
}

/// The pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("output {output}: {reason}")]
    Output { output: String, reason: String },
    #[error("input {input}: {reason}")]
    Input { input: String, reason: String },
}

/// How the pipeline delivers.
#[derive(Debug, Clone)]
pub enum Mode {
    /// `run`: every output spools under `state_dir/spool/<output>` and retries forever; spools
    /// of outputs renamed away are delivered by their heirs. `open_files` is what every file
    /// input together may hold open.
    Agent {
        state_dir: PathBuf,
        open_files: Arc<OpenFiles>,
    },
    /// `send`: straight from memory, or through the spool of `--spool DIR`; the first failure
    /// no later request can cure stops the run. A dry run seals and counts, and sends nothing.
    Once {
        spool: Option<PathBuf>,
        dry_run: bool,
    },
}

/// File checkpoints in memory, saved to the state directory when they changed.
pub struct Checkpointer {
    store: CheckpointStore,
    state: Mutex<Checkpoints>,
    /// Windows read by the tailers, waiting for the checkpoint that moves past them.
    windows: Mutex<windows::WindowBook>,
    dirty: AtomicBool,
    /// Held while a save runs: the last save at shutdown waits for one the periodic saver has
    /// begun (else it would see nothing dirty, return, and the process could exit before that
    /// write ended — a restart would then re-read every row since the save before).
    saving: Mutex<()>,
}

impl Checkpointer {
    pub fn open(state_dir: &Path) -> Result<Arc<Self>, CheckpointError> {
        let store = CheckpointStore::open(state_dir)?;
        let state = store.load();
        Ok(Arc::new(Checkpointer {
            store,
            state: Mutex::new(state),
            windows: Mutex::default(),
            dirty: AtomicBool::new(false),
            saving: Mutex::new(()),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Checkpoints> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> Checkpoints {
        self.lock().clone()
    }

    /// Keeps the windows a tailer read in `key` until the checkpoint reaches them.
    pub fn note_windows(&self, key: FileKey, windows: &[Window]) {
        self.book().note(key, windows);
    }

    /// Everything before `offset` in `key` is safe; the entry takes the latest window noted at
    /// or before `offset`.
    pub fn advance(&self, key: FileKey, path: &Path, offset: u64) {
        let window = self.book().take_upto(&key, offset);
        if self.lock().advance(key, path, offset, window) {
            self.dirty.store(true, Relaxed);
        }
    }

    /// A journald input's rows are safe up to the entry at `cursor`.
    pub fn advance_journal(&self, input: &str, cursor: &str) {
        if self.lock().advance_journal(input, cursor) {
            self.dirty.store(true, Relaxed);
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, windows::WindowBook> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops entries of files gone for longer than a week. Blocking (stats the files).
    pub fn prune(&self) {
        let removed = self
            .lock()
            .prune_stale(crate::input::checkpoint::DEFAULT_MAX_AGE);
        if removed > 0 {
            self.dirty.store(true, Relaxed);
            tracing::info!(removed, "forgot checkpoints of files gone for a week");
        }
    }

    /// Writes the checkpoints if they changed; a failure is logged and retried next time.
    pub fn save(&self) {
        let _saving = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        if !self.dirty.swap(false, Relaxed) {
            return;
        }
        let snapshot = self.snapshot();
        // Logged by the store, at most once a minute while the disk is in trouble.
        if !self.store.save_or_report(&snapshot) {
            self.dirty.store(true, Relaxed);
        }
    }
}

/// What the pipeline shares with the rest of the agent, across reloads.
#[derive(Clone)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub deadletter: Arc<DeadLetter>,
    /// File offsets; `None` when nothing keeps them (`send`).
    pub checkpointer: Option<Arc<Checkpointer>>,
    pub heartbeat: Arc<AtomicU64>,
    /// Rows delivered or refused since start, over every output and reload.
    pub rows_done: Arc<AtomicU64>,
    pub started: Instant,
    pub http: HttpClients,
    pub computer: String,
}

/// A running pipeline.
pub struct Pipeline {
    stop: Arc<Stop>,
    inputs: TaskTracker,
    /// Heartbeat rows (`heartbeat_interval`), stopped with the inputs.
    heartbeats: TaskTracker,
    outputs: Vec<OutputRuntime>,
    saver: Option<JoinHandle<()>>,
    checkpointer: Option<Arc<Checkpointer>>,
}

/// An input's task, set up and not yet started.
type InputTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// How a one-shot run ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The failure that stopped it, if one did.
    pub fatal: Option<crate::ingest::sender::Fatal>,
    /// An input that could not be read to its end.
    pub input_error: Option<String>,
    /// A signal cut it short: the inputs were not read to their end, or what was read was
    /// not all delivered within the grace.
    pub interrupted: bool,
    /// Rows left in the spool (`send --spool`) for a later run.
    pub waiting: u64,
}

impl Pipeline {
    /// Opens every output's queue and starts the output, then every input. `tokens` is `None`
    /// only in a dry run.
    pub async fn start(
        plan: &Plan,
        mode: &Mode,
        shared: &Shared,
        tokens: Option<&Arc<TokenCache>>,
    ) -> Result<Pipeline, PipelineError> {
        let mut outputs = Vec::new();
        let started = Self::start_inner(plan, mode, shared, tokens, &mut outputs).await;
        if started.is_err() {
            // No second spool thread on the same directory when the caller starts again.
            for o in &outputs {
                o.abort();
                for s in o.spools() {
                    s.close().await;
                }
            }
        }
        started
    }

    async fn start_inner(
        plan: &Plan,
        mode: &Mode,
        shared: &Shared,
        tokens: Option<&Arc<TokenCache>>,
        outputs: &mut Vec<OutputRuntime>,
    ) -> Result<Pipeline, PipelineError> {
        let sources = Sources::default();
        let stop = Arc::new(Stop::default());
        let mut by_name = std::collections::HashMap::new();
        // Outputs to one DCR share its rate limits and Retry-After pauses.
        let gates = crate::ingest::limits::DcrGates::for_outputs(
            plan.outputs
                .iter()
                .map(|(n, o)| (n.as_str(), o.dcr.as_str(), o.limits)),
        );
        for (name, out) in &plan.outputs {
            let bad = |reason: String| PipelineError::Output {
                output: name.clone(),
                reason,
            };
            let report = Arc::new(OutputReport {
                output: name.clone(),
                metrics: shared.metrics.clone(),
                health: shared.health.clone(),
                deadletter: shared.deadletter.clone(),
                sources: sources.clone(),
                done: shared.rows_done.clone(),
            });
            shared.health.add_output(name);
            output::declare_series(&shared.metrics, name);
            let sender = match (tokens, &out.endpoint) {
                (Some(tokens), Some(endpoint)) => Some(Arc::new(
                    sender(shared, tokens, out, endpoint, mode, report.clone())
                        .with_gate(gates.get(&out.dcr)),
                )),
                _ => None,
            };
            let queue = match mode {
                Mode::Agent { state_dir, .. } => Queue::Spool(
                    open_spool(
                        &spool_dir(state_dir, name),
                        plan,
                        out,
                        &shared.metrics,
                        name,
                    )
                    .await
                    .map_err(bad)?,
                ),
                Mode::Once { dry_run: true, .. } => Queue::DryRun,
                Mode::Once {
                    spool: Some(dir), ..
                } => Queue::Spool(
                    open_spool(dir, plan, out, &shared.metrics, name)
                        .await
                        .map_err(bad)?,
                ),
                Mode::Once { spool: None, .. } => Queue::Direct,
            };
            if sender.is_none() && !matches!(queue, Queue::DryRun) {
                return Err(bad("no endpoint to deliver to".into()));
            }
            let rt = OutputRuntime::start(
                OutputSpec {
                    name: name.clone(),
                    concurrency: out.concurrency,
                    max_request_bytes: out.max_request_bytes,
                    batch_timeout: out.batch_timeout,
                    compression_level: out.compression_level,
                    max_time_span: out.max_time_span,
                    // The agent's idle outputs are probed; a one-shot run sends or says why not.
                    probe_interval: match mode {
                        Mode::Agent { .. } => out.probe_interval,
                        Mode::Once { .. } => None,
                    },
                },
                OutputParts {
                    queue,
                    sender,
                    report,
                    sources: sources.clone(),
                    checkpointer: shared.checkpointer.clone(),
                    heartbeat: shared.heartbeat.clone(),
                    started: shared.started,
                    stop: stop.clone(),
                },
            );
            by_name.insert(name.clone(), rt.rows.clone());
            match &out.endpoint {
                Some(url) => {
                    tracing::info!(output = %name, url = %url, stream = %out.stream, "output ready")
                }
                None => tracing::info!(output = %name, "output ready (dry run)"),
            }
            outputs.push(rt);
        }
        if let Mode::Agent { state_dir, .. } = mode {
            adopt_orphan_spools(state_dir, plan, shared, outputs).await;
        }
        let snapshot = shared
            .checkpointer
            .as_ref()
            .map(|c| c.snapshot())
            .unwrap_or_default();
        // Every input is set up before any starts: an input that cannot be set up fails the
        // start with none running (a stdin input already running would hold stdin, and the
        // decoder a reload left it, from the pipeline started in this one's place).
        let mut ready: Vec<(&str, &str, InputTask)> = Vec::new();
        for (name, input) in &plan.inputs {
            let bad = |reason: String| PipelineError::Input {
                input: name.clone(),
                reason,
            };
            let out: mpsc::Sender<Rows> = by_name
                .get(&input.output)
                .cloned()
                .ok_or_else(|| bad(format!("no output named {:?}", input.output)))?;
            let max_record = plan
                .outputs
                .get(&input.output)
                .map_or(crate::azure::DEFAULT_MAX_REQUEST_BYTES, |o| {
                    o.max_request_bytes
                });
            let container = input.container.as_ref().map(|c| {
                Arc::new(crate::input::container::ContainerSettings::new(
                    c.runtime,
                    c.json_fields,
                    input.format,
                    input.rules.clone(),
                    max_record,
                    &crate::transform::row::json_string(&shared.computer),
                ))
            });
            let ctx = InputCtx {
                container,
                max_record,
                name: name.clone(),
                format: input.format,
                encoder: RowEncoder::with_shaping(&shared.computer, input.shaping.clone()),
                issues: crate::transform::IssueCounters::new(&shared.metrics, name),
                sources: sources.clone(),
                deadletter: shared.deadletter.clone(),
                received: shared.metrics.records_received(name),
                bytes: shared.metrics.input_bytes(name),
                dropped: shared
                    .metrics
                    .records_dropped(&input.output, crate::metrics::DropReason::Invalid),
                out,
                checkpointer: shared.checkpointer.clone(),
                rules: input.rules.clone(),
                parse_failures: shared.metrics.parse_failures(name),
                multiline_cut: shared.metrics.multiline_cut(name),
                stop: stop.clone(),
            };
            let task: InputTask = match &input.source {
                Source::Stdin => Box::pin(inputs::stdin(ctx)),
                Source::Once(paths) => Box::pin(inputs::once(ctx, paths.clone())),
                Source::Files(tail) => {
                    let mut tailer =
                        FileTailer::new(tail.clone(), &snapshot).map_err(|e| bad(e.to_string()))?;
                    if let Mode::Agent { open_files, .. } = mode {
                        tailer = tailer.with_open_files(open_files.clone());
                    }
                    Box::pin(inputs::files(ctx, tailer))
                }
                Source::Journal(journal) => {
                    let journal =
                        inputs::Journal::new(name, journal, &input.output, shared, &snapshot)
                            .map_err(|e| bad(e.to_string()))?;
                    Box::pin(inputs::journald(ctx, journal))
                }
            };
            ready.push((name, &input.output, task));
        }
        let inputs = TaskTracker::new();
        for (name, output, task) in ready {
            inputs.spawn(task);
            tracing::info!(input = %name, output = %output, "input started");
        }
        // Heartbeat rows stop with the inputs, but are not one: a stdin-only agent still ends
        // when stdin does.
        let heartbeats = TaskTracker::new();
        if let Mode::Agent { .. } = mode {
            for (name, out) in &plan.outputs {
                let (Some(every), Some(rows)) = (out.heartbeat_interval, by_name.get(name)) else {
                    continue;
                };
                heartbeats.spawn(heartbeat::run(heartbeat::Heartbeat {
                    output: name.clone(),
                    every,
                    rows: rows.clone(),
                    source: sources.stream("<heartbeat>"),
                    computer: shared.computer.clone(),
                    done: shared.rows_done.clone(),
                    started: shared.started,
                    stop: stop.clone(),
                }));
            }
        }
        inputs.close();
        heartbeats.close();
        drop(by_name);
        let saver = shared
            .checkpointer
            .clone()
            .map(|c| tokio::spawn(save_loop(c, plan.spool.fsync_interval)));
        Ok(Pipeline {
            stop,
            inputs,
            heartbeats,
            outputs: std::mem::take(outputs),
            saver,
            checkpointer: shared.checkpointer.clone(),
        })
    }

    /// Resolves when every input has ended by itself (stdin or the files reached their end),
    /// or a one-shot run failed.
    pub async fn inputs_ended(&mut self) {
        self.inputs.wait().await;
    }

    /// Delivers everything already read, with no time limit, until `stop` fires; then allows
    /// `timeout` more (as [`Pipeline::shutdown`]). For stdin-only agents after stdin ended.
    pub async fn shutdown_until(self, stop: CancellationToken, timeout: Duration) -> bool {
        self.finish(Some(stop), Some(timeout)).await.0
    }

    /// Stops reading, delivers what was read within `timeout`, saves the checkpoints. Returns
    /// false when the timeout cut delivery short (those rows are read again after a restart,
    /// except stdin's, which are lost with the process and counted in the log).
    pub async fn shutdown(self, timeout: Duration) -> bool {
        self.finish(None, Some(timeout)).await.0
    }

    /// [`Pipeline::shutdown`] for a reload to `next`: when it reads stdin too, a stdin input
    /// leaves the record it has under way (and its CSV header) to it rather than sending it now.
    pub async fn hand_over(self, next: &Plan, timeout: Duration) -> bool {
        self.stop.hand_over(next.reads_stdin());
        self.finish(None, Some(timeout)).await.0
    }

    /// A one-shot run's end: once the inputs have ended (or a failure stopped them), delivers
    /// what was read — however long the policy's retries take — and says how it went. When
    /// `interrupt` fires first, reading stops there and delivery gets `grace` more.
    pub async fn finish_once(mut self, interrupt: CancellationToken, grace: Duration) -> Outcome {
        let ended = tokio::select! {
            biased;
            _ = self.inputs_ended() => true,
            _ = interrupt.cancelled() => false,
        };
        let stop = self.stop.clone();
        let (drained, waiting) = self.finish(Some(interrupt.clone()), Some(grace)).await;
        Outcome {
            fatal: stop.fatal().cloned(),
            input_error: stop.input_error().map(str::to_string),
            interrupted: interrupt.is_cancelled() && !(ended && drained),
            waiting,
        }
    }

    /// Returns whether everything read was delivered, and the rows left in spools.
    async fn finish(
        self,
        unlimited_until: Option<CancellationToken>,
        timeout: Option<Duration>,
    ) -> (bool, u64) {
        self.stop.inputs.cancel();
        // The time allowed runs over the inputs' end too: an input blocked handing rows to a
        // stalled output would otherwise hold it off for as long as the output retries.
        let deadline = deadline(unlimited_until, timeout);
        tokio::pin!(deadline);
        let inputs_ended = async {
            self.inputs.wait().await;
            self.heartbeats.wait().await;
        };
        tokio::pin!(inputs_ended);
        let in_time = tokio::select! {
            _ = &mut inputs_ended => true,
            _ = &mut deadline => false,
        };
        if !in_time {
            // Abort ends the outputs, and with them the inputs' hand-offs.
            self.stop.abort.cancel();
            inputs_ended.await;
        }
        let spools: Vec<_> = self
            .outputs
            .iter()
            .flat_map(OutputRuntime::spools)
            .collect();
        let mut drains = Box::pin(drain_all(self.outputs));
        let drained = in_time
            && tokio::select! {
                _ = &mut drains => true,
                _ = &mut deadline => false,
            };
        if !drained {
            // Records in flight stay unacknowledged in the spool and go out after a restart.
            self.stop.abort.cancel();
            drains.await;
            tracing::warn!("stopped with rows not yet delivered: what is in the spool goes out after the next start; file rows not yet spooled are read again, stdin rows not yet spooled are lost");
        }
        let mut waiting = 0;
        // The last fsync moves the checkpoints of the last spooled rows: before the save.
        for s in spools {
            waiting += s.pending().await.1;
            s.close().await;
        }
        if let Some(saver) = self.saver {
            saver.abort();
        }
        if let Some(c) = &self.checkpointer {
            c.save();
        }
        (drained, waiting)
    }
}

/// The sender of one output: its endpoint, policy and target; the agent retries forever.
fn sender(
    shared: &Shared,
    tokens: &Arc<TokenCache>,
    out: &OutputPlan,
    endpoint: &reqwest::Url,
    mode: &Mode,
    report: Arc<OutputReport>,
) -> Sender {
    let agent = matches!(mode, Mode::Agent { .. });
    let transport = HttpTransport::new(shared.http.remote.clone(), endpoint, &out.dcr, &out.stream);
    let policy = Policy {
        permission_grace: out.permission_grace,
        retry_timeout: (!agent).then_some(out.retry_timeout),
        max_request_bytes: out.max_request_bytes,
        request_timeout: out.request_timeout,
        retry_forever: agent,
        limits: out.limits,
        ..Policy::default()
    };
    let target = Target::new(
        out.dcr.clone(),
        out.stream.clone(),
        endpoint.host_str().unwrap_or_default(),
    );
    Sender::new(Arc::new(transport), tokens.clone(), policy, target, report)
}

/// Resolves `timeout` after `after` fires (at once when there is none); never without a
/// timeout.
async fn deadline(after: Option<CancellationToken>, timeout: Option<Duration>) {
    if let Some(after) = after {
        after.cancelled().await;
    }
    match timeout {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}

/// Drains every output concurrently.
async fn drain_all(outputs: Vec<OutputRuntime>) {
    let drains = TaskTracker::new();
    for o in outputs {
        drains.spawn(o.drain());
    }
    drains.close();
    drains.wait().await;
}

fn spool_dir(state_dir: &Path, output: &str) -> PathBuf {
    state_dir.join("spool").join(output)
}

/// What a spool directory was filled for, so a renamed output's rows still reach their table.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Destination {
    dcr: String,
    stream: String,
}

const DESTINATION: &str = "destination.json";

/// Spool directories of outputs no longer configured: delivered by an output to the same DCR
/// and stream (a rename), else kept and logged until such an output exists again.
async fn adopt_orphan_spools(
    state_dir: &Path,
    plan: &Plan,
    shared: &Shared,
    outputs: &mut [OutputRuntime],
) {
    let root = state_dir.join("spool");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if plan.outputs.contains_key(&name) {
            continue;
        }
        let Some(dest) = std::fs::read(entry.path().join(DESTINATION))
            .ok()
            .and_then(|b| serde_json::from_slice::<Destination>(&b).ok())
        else {
            continue;
        };
        let heir = plan
            .outputs
            .iter()
            .find(|(_, o)| o.dcr == dest.dcr && o.stream == dest.stream);
        let Some((heir, out)) = heir else {
            tracing::warn!(dir = %entry.path().display(), dcr = %dest.dcr, stream = %dest.stream, "a spool of an output no longer configured; its rows are delivered once an output to that DCR and stream exists");
            continue;
        };
        match open_spool(&entry.path(), plan, out, &shared.metrics, &name).await {
            Ok(spool) => {
                if let Some(rt) = outputs.iter_mut().find(|o| &o.name == heir) {
                    tracing::info!(from = %name, to = %heir, "delivering the spool of a renamed output");
                    rt.adopt(spool);
                } else {
                    spool.close().await;
                }
            }
            Err(e) => {
                tracing::error!(dir = %entry.path().display(), error = %e, "cannot open the spool of a renamed output")
            }
        }
    }
}

/// Opens the spool in `dir` for `output` (recovery reads it once: on the blocking pool), and
/// notes there which DCR and stream it is filled for. `metrics_name` labels its gauges.
async fn open_spool(
    dir: &Path,
    plan: &Plan,
    out: &OutputPlan,
    metrics: &Metrics,
    metrics_name: &str,
) -> Result<Arc<crate::spool::Spool>, String> {
    let dir = dir.to_path_buf();
    let dest = Destination {
        dcr: out.dcr.clone(),
        stream: out.stream.clone(),
    };
    let opts = plan.spool.clone();
    let m = crate::spool::SpoolMetrics {
        bytes: metrics.spool_bytes(metrics_name),
        disk_bytes: metrics.spool_disk_bytes(metrics_name),
        max_bytes: metrics.spool_max_bytes(metrics_name),
        oldest: metrics.oldest_unsent_seconds(metrics_name),
        dropped: metrics.records_dropped(metrics_name, crate::metrics::DropReason::SpoolFull),
        corrupt: metrics.records_dropped(metrics_name, crate::metrics::DropReason::SpoolCorrupt),
    };
    tokio::task::spawn_blocking(move || {
        let spool = crate::spool::Spool::open(&dir, opts, m)?;
        // Best effort: without it, a later rename leaves these rows waiting (logged).
        if let Ok(text) = serde_json::to_vec(&dest) {
            let _ = crate::private_fs::write(&dir.join(DESTINATION), &text);
        }
        Ok::<_, crate::spool::SpoolError>(spool)
    })
    .await
    .map_err(|e| format!("opening the spool failed: {e}"))?
    .map(Arc::new)
    .map_err(|e| e.to_string())
}

/// Saves changed checkpoints soon after rows are spooled (a quarter of the spool's fsync
/// interval): a crash then re-reads, and sends twice, only the rows spooled since the last save.
async fn save_loop(cp: Arc<Checkpointer>, fsync_interval: Duration) {
    let every = (fsync_interval / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<Instant> = None;
    loop {
        tick.tick().await;
        let c = cp.clone();
        // Once an hour, forget files gone for a week, so the file does not grow forever.
        let prune = last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600));
        if prune {
            last_prune = Some(Instant::now());
        } else if !cp.dirty.load(Relaxed) {
            continue;
        }
        let _ = tokio::task::spawn_blocking(move || {
            if prune {
                c.prune();
            }
            c.save()
        })
        .await;
    }
}
