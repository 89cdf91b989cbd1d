//! The agent's data path: inputs → rows → per-output batcher → sealers → disk spool →
//! deliverers, and checkpoints.
//!
//! ```text
//!  file tailer ─FileLines─▶ input task ─Rows─▶ output batcher ─RawBatch─▶ N sealers (gzip)
//!  stdin ──────chunks────▶ input task ─┤        (batch_timeout)                │ append
//!  journalctl ─entries───▶ input task ─┘                                       │
//!                                                                              ▼
//!  checkpoints ◀── ack tracker (safe prefix per file) ◀── fsynced ── spool (state_dir/spool/<output>)
//!                                                                              │ next / ack
//!                                                                              ▼
//!                                                                   N deliverers (policy) ─▶ DCE
//! ```
//! Every hand-off is bounded: a full channel, or a full spool (`when_full = "block"`), stops the
//! file readers (the files are the buffer) and blocks stdin, and memory stays flat; during an
//! outage the spool grows on disk, not in memory. A file offset is saved only once every row
//! before it is fsynced in the spool (invariant 2). [`Pipeline::shutdown`] stops the inputs,
//! spools what was read, delivers within a timeout and saves the checkpoints; what is not
//! delivered stays in the spool for the next start. SIGHUP reload is a shutdown followed by a
//! start from the new configuration, so nothing is lost.

pub mod acks;
pub mod inputs;
pub mod output;
pub mod sources;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::auth::TokenCache;
use crate::config::{Config, InputKind};
use crate::deadletter::DeadLetter;
use crate::health::Health;
use crate::http::{parse_secure_url, HttpClients};
use crate::ingest::sender::{Policy, Sender, Target};
use crate::ingest::HttpTransport;
use crate::input::checkpoint::{CheckpointError, CheckpointStore, Checkpoints};
use crate::input::file::{FileTailer, TailerConfig};
use crate::input::fingerprint::FileKey;
use crate::metrics::Metrics;
use crate::transform::sink::RowBuf;
use crate::transform::RowEncoder;

use inputs::InputCtx;
use output::{OutputRuntime, OutputSpec, RunReport};
use sources::Sources;

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

/// File checkpoints in memory, saved to the state directory when they changed.
pub struct Checkpointer {
    store: CheckpointStore,
    state: Mutex<Checkpoints>,
    dirty: AtomicBool,
}

impl Checkpointer {
    pub fn open(state_dir: &Path) -> Result<Arc<Self>, CheckpointError> {
        let store = CheckpointStore::open(state_dir)?;
        let state = store.load();
        Ok(Arc::new(Checkpointer {
            store,
            state: Mutex::new(state),
            dirty: AtomicBool::new(false),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Checkpoints> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> Checkpoints {
        self.lock().clone()
    }

    pub fn advance(&self, key: FileKey, path: &Path, offset: u64) {
        if self.lock().advance(key, path, offset) {
            self.dirty.store(true, Relaxed);
        }
    }

    /// A journald input's rows are safe up to the entry at `cursor`.
    pub fn advance_journal(&self, input: &str, cursor: &str) {
        if self.lock().advance_journal(input, cursor) {
            self.dirty.store(true, Relaxed);
        }
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
    pub checkpointer: Arc<Checkpointer>,
    pub heartbeat: Arc<AtomicU64>,
    /// Rows delivered or refused since start, over every output and reload.
    pub rows_done: Arc<AtomicU64>,
    pub started: Instant,
    pub http: HttpClients,
    pub computer: String,
}

/// A running pipeline.
pub struct Pipeline {
    stop: watch::Sender<bool>,
    inputs: Vec<JoinHandle<()>>,
    outputs: Vec<OutputRuntime>,
    saver: JoinHandle<()>,
    checkpointer: Arc<Checkpointer>,
}

impl Pipeline {
    /// Opens every output's spool and starts the output, then every input.
    pub async fn start(
        cfg: &Config,
        shared: &Shared,
        tokens: &Arc<TokenCache>,
    ) -> Result<Pipeline, PipelineError> {
        let mut outputs = Vec::new();
        let started = Self::start_inner(cfg, shared, tokens, &mut outputs).await;
        if started.is_err() {
            // No second spool thread on the same directory when the caller starts again.
            for o in &outputs {
                for a in o.abort_handles() {
                    a.abort();
                }
                for s in o.spools() {
                    s.close().await;
                }
            }
        }
        started
    }

    async fn start_inner(
        cfg: &Config,
        shared: &Shared,
        tokens: &Arc<TokenCache>,
        outputs: &mut Vec<OutputRuntime>,
    ) -> Result<Pipeline, PipelineError> {
        let sources = Sources::default();
        let mut by_name = std::collections::HashMap::new();
        // Outputs to one DCR share its rate limits and Retry-After pauses.
        let gates = crate::ingest::limits::DcrGates::for_config(&cfg.outputs);
        for (name, out) in &cfg.outputs {
            let bad = |reason: String| PipelineError::Output {
                output: name.clone(),
                reason,
            };
            let endpoint =
                parse_secure_url("endpoint", &out.endpoint).map_err(|e| bad(e.to_string()))?;
            let transport =
                HttpTransport::new(shared.http.remote.clone(), &endpoint, &out.dcr, &out.stream);
            let report = Arc::new(RunReport {
                output: name.clone(),
                metrics: shared.metrics.clone(),
                health: shared.health.clone(),
                deadletter: shared.deadletter.clone(),
                sources: sources.clone(),
                done: shared.rows_done.clone(),
            });
            shared.health.add_output(name);
            let policy = Policy {
                permission_grace: out.permission_grace,
                retry_timeout: None,
                max_request_bytes: out.max_request_bytes,
                request_timeout: out.request_timeout,
                retry_forever: true,
                ..Policy::default()
            };
            let target = Target::new(
                out.dcr.clone(),
                out.stream.clone(),
                endpoint.host_str().unwrap_or_default(),
            );
            let sender = Arc::new(
                Sender::new(
                    Arc::new(transport),
                    tokens.clone(),
                    policy,
                    target,
                    report.clone(),
                )
                .with_gate(gates.get(&out.dcr)),
            );
            let spool = open_spool(cfg, name, &shared.metrics).await.map_err(bad)?;
            let rt = OutputRuntime::start(
                OutputSpec {
                    name: name.clone(),
                    concurrency: out.concurrency,
                    max_request_bytes: out.max_request_bytes,
                    batch_timeout: out.batch_timeout,
                    compression_level: out.compression_level,
                    max_time_span: out.max_time_span,
                },
                sender,
                report.clone(),
                sources.clone(),
                shared.checkpointer.clone(),
                shared.heartbeat.clone(),
                shared.started,
                spool,
            );
            by_name.insert(name.clone(), rt.rows.clone());
            tracing::info!(output = %name, url = %endpoint, stream = %out.stream, "output ready");
            outputs.push(rt);
        }
        adopt_orphan_spools(cfg, shared, outputs).await;
        let (stop, stop_rx) = watch::channel(false);
        let snapshot = shared.checkpointer.snapshot();
        let mut inputs = Vec::new();
        for (name, input) in &cfg.inputs {
            let bad = |reason: String| PipelineError::Input {
                input: name.clone(),
                reason,
            };
            let out: mpsc::Sender<Rows> = by_name
                .get(&input.output)
                .cloned()
                .ok_or_else(|| bad(format!("no output named {:?}", input.output)))?;
            let rules = crate::input::parse::TextRules::for_input(input)
                .map_err(|e| bad(e.to_string()))?
                .map(Arc::new);
            let max_record = cfg
                .outputs
                .get(&input.output)
                .map_or(crate::config::DEFAULT_MAX_REQUEST_BYTES, |o| {
                    o.max_request_bytes
                });
            let ctx = InputCtx {
                max_record,
                name: name.clone(),
                format: input.format,
                encoder: RowEncoder::with_shaping(
                    &shared.computer,
                    crate::transform::shaping_for(name, input, cfg.outputs.get(&input.output))
                        .map_err(bad)?,
                ),
                issues: crate::transform::IssueCounters::new(&shared.metrics, name),
                sources: sources.clone(),
                deadletter: shared.deadletter.clone(),
                received: shared.metrics.records_received(name),
                dropped: shared.metrics.records_dropped(&input.output, "invalid"),
                out,
                checkpointer: shared.checkpointer.clone(),
                rules,
                parse_failures: shared.metrics.parse_failures(name),
                multiline_cut: shared.metrics.multiline_cut(name),
            };
            let handle = match input.kind {
                InputKind::Stdin => tokio::spawn(inputs::stdin(ctx, stop_rx.clone())),
                InputKind::File => {
                    let mut tail = TailerConfig::for_input(input);
                    if input.format == crate::config::InputFormat::Json {
                        // A JSON row may be as long as a request; a text row is cut at the
                        // field limit anyway, which is the tailer's default.
                        if let Some(out) = cfg.outputs.get(&input.output) {
                            tail.max_line_bytes = out.max_request_bytes;
                        }
                    }
                    let tailer =
                        FileTailer::new(tail, &snapshot).map_err(|e| bad(e.to_string()))?;
                    tokio::spawn(inputs::files(ctx, tailer, stop_rx.clone()))
                }
                InputKind::Journald => {
                    let journal = inputs::Journal::for_input(name, input, cfg, shared, &snapshot)
                        .map_err(|e| bad(e.to_string()))?;
                    tokio::spawn(inputs::journald(ctx, journal, stop_rx.clone()))
                }
            };
            tracing::info!(input = %name, output = %input.output, "input started");
            inputs.push(handle);
        }
        drop(by_name);
        let saver = tokio::spawn(save_loop(
            shared.checkpointer.clone(),
            cfg.spool.fsync_interval,
        ));
        Ok(Pipeline {
            stop,
            inputs,
            outputs: std::mem::take(outputs),
            saver,
            checkpointer: shared.checkpointer.clone(),
        })
    }

    /// Resolves when every input has ended by itself (stdin reached its end).
    pub async fn inputs_ended(&mut self) {
        for h in &mut self.inputs {
            let _ = h.await;
        }
        self.inputs.clear();
    }

    /// Delivers everything already read, with no time limit, until `stop` fires; then allows
    /// `timeout` more (as [`Pipeline::shutdown`]). For stdin-only agents after stdin ended.
    pub async fn shutdown_until(
        self,
        stop: tokio::sync::oneshot::Receiver<()>,
        timeout: Duration,
    ) -> bool {
        self.finish(Some(stop), timeout).await
    }

    /// Stops reading, delivers what was read within `timeout`, saves the checkpoints. Returns
    /// false when the timeout cut delivery short (those rows are read again after a restart,
    /// except stdin's, which are lost with the process and counted in the log).
    pub async fn shutdown(self, timeout: Duration) -> bool {
        self.finish(None, timeout).await
    }

    async fn finish(
        self,
        unlimited_until: Option<tokio::sync::oneshot::Receiver<()>>,
        timeout: Duration,
    ) -> bool {
        let _ = self.stop.send(true);
        for h in self.inputs {
            let _ = h.await;
        }
        let aborters: Vec<_> = self
            .outputs
            .iter()
            .flat_map(OutputRuntime::abort_handles)
            .collect();
        let spools: Vec<_> = self
            .outputs
            .iter()
            .flat_map(OutputRuntime::spools)
            .collect();
        let mut drains = Box::pin(drain_all(self.outputs));
        let drained = match unlimited_until {
            Some(stop) => tokio::select! {
                _ = &mut drains => true,
                _ = stop => tokio::time::timeout(timeout, &mut drains).await.is_ok(),
            },
            None => tokio::time::timeout(timeout, &mut drains).await.is_ok(),
        };
        if !drained {
            for a in aborters {
                a.abort();
            }
            tracing::warn!("stopped with rows not yet delivered: what is in the spool goes out after the next start; file rows not yet spooled are read again, stdin rows not yet spooled are lost");
        }
        // The last fsync moves the checkpoints of the last spooled rows: before the save.
        for s in spools {
            s.close().await;
        }
        self.saver.abort();
        self.checkpointer.save();
        drained
    }
}

/// Drains every output concurrently.
async fn drain_all(outputs: Vec<OutputRuntime>) {
    let drains: Vec<_> = outputs
        .into_iter()
        .map(|o| tokio::spawn(o.drain()))
        .collect();
    for h in drains {
        let _ = h.await;
    }
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
async fn adopt_orphan_spools(cfg: &Config, shared: &Shared, outputs: &mut [OutputRuntime]) {
    let root = cfg.agent.state_dir.join("spool");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if cfg.outputs.contains_key(&name) {
            continue;
        }
        let Some(dest) = std::fs::read(entry.path().join(DESTINATION))
            .ok()
            .and_then(|b| serde_json::from_slice::<Destination>(&b).ok())
        else {
            continue;
        };
        let heir = cfg
            .outputs
            .iter()
            .find(|(_, o)| o.dcr == dest.dcr && o.stream == dest.stream)
            .map(|(n, _)| n.clone());
        let Some(heir) = heir else {
            tracing::warn!(dir = %entry.path().display(), dcr = %dest.dcr, stream = %dest.stream, "a spool of an output no longer configured; its rows are delivered once an output to that DCR and stream exists");
            continue;
        };
        match open_spool(cfg, &name, &shared.metrics).await {
            Ok(spool) => {
                if let Some(rt) = outputs.iter_mut().find(|o| o.name == heir) {
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

/// Opens `state_dir/spool/<output>` (recovery reads it once: on the blocking pool).
async fn open_spool(
    cfg: &Config,
    output: &str,
    metrics: &Metrics,
) -> Result<Arc<crate::spool::Spool>, String> {
    let dir = cfg.agent.state_dir.join("spool").join(output);
    let dest = cfg.outputs.get(output).map(|o| Destination {
        dcr: o.dcr.clone(),
        stream: o.stream.clone(),
    });
    let opts = crate::spool::Options {
        max_bytes: cfg.spool.max_bytes,
        fsync_interval: cfg.spool.fsync_interval,
        when_full: cfg.spool.when_full,
        ..crate::spool::Options::default()
    };
    let m = crate::spool::SpoolMetrics {
        bytes: metrics.spool_bytes(output),
        oldest: metrics.oldest_unsent_seconds(output),
        dropped: metrics.records_dropped(output, "spool_full"),
        corrupt: metrics.records_dropped(output, "spool_corrupt"),
    };
    tokio::task::spawn_blocking(move || {
        let spool = crate::spool::Spool::open(&dir, opts, m)?;
        if let Some(dest) = dest {
            // Best effort: without it, a later rename leaves these rows waiting (logged).
            if let Ok(text) = serde_json::to_vec(&dest) {
                let _ = crate::private_fs::write(&dir.join(DESTINATION), &text);
            }
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
