//! The agent's data path: inputs → rows → per-output batcher → sender workers → checkpoints.
//!
//! ```text
//!  file tailer ─FileLines─▶ input task ─Rows─▶ output batcher ─RawBatch─▶ N workers ─▶ DCE
//!  stdin ──────chunks────▶ input task ─┘        (batch_timeout)            (gzip, policy)
//!                                                                            │ finished
//!                       checkpoints ◀── ack tracker (safe prefix per file) ◀─┘
//! ```
//! Every hand-off is a bounded channel, so a stalled endpoint stops the file readers (the files
//! are the buffer) and blocks stdin, and memory stays flat. A file offset is saved only once every
//! row before it was accepted or dead-lettered (invariant 2). [`Pipeline::shutdown`] stops the
//! inputs, drains what was read within a timeout, and saves the checkpoints; SIGHUP reload is a
//! shutdown followed by a start from the new configuration, so nothing is lost or repeated.

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
use crate::ingest::sender::{Policy, Sender};
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
    /// Starts every output, then every input.
    pub fn start(
        cfg: &Config,
        shared: &Shared,
        tokens: &Arc<TokenCache>,
    ) -> Result<Pipeline, PipelineError> {
        let sources = Sources::default();
        let mut outputs = Vec::new();
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
                retry_forever: true,
                ..Policy::default()
            };
            let sender = Arc::new(
                Sender::new(
                    Arc::new(transport),
                    tokens.clone(),
                    policy,
                    out.dcr.clone(),
                    report.clone(),
                )
                .with_gate(gates.get(&out.dcr)),
            );
            let rt = OutputRuntime::start(
                OutputSpec {
                    name: name.clone(),
                    concurrency: out.concurrency,
                    max_request_bytes: out.max_request_bytes,
                    batch_timeout: out.batch_timeout,
                    compression_level: out.compression_level,
                },
                sender,
                report.clone(),
                sources.clone(),
                shared.checkpointer.clone(),
                shared.heartbeat.clone(),
                shared.started,
            );
            by_name.insert(name.clone(), rt.rows.clone());
            tracing::info!(output = %name, url = %endpoint, stream = %out.stream, "output ready");
            outputs.push(rt);
        }
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
            if input.format == crate::config::InputFormat::Regex {
                return Err(bad(
                    "format = \"regex\" is not available yet; use text or json".into(),
                ));
            }
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
                encoder: RowEncoder::new(&shared.computer, None),
                sources: sources.clone(),
                deadletter: shared.deadletter.clone(),
                received: shared.metrics.records_received(name),
                dropped: shared.metrics.records_dropped(&input.output, "invalid"),
                out,
                checkpointer: shared.checkpointer.clone(),
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
            };
            tracing::info!(input = %name, output = %input.output, "input started");
            inputs.push(handle);
        }
        drop(by_name);
        let saver = tokio::spawn(save_loop(shared.checkpointer.clone()));
        Ok(Pipeline {
            stop,
            inputs,
            outputs,
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
            tracing::warn!("stopped with rows still in flight: file rows are read again after a restart; stdin rows not yet delivered are lost");
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

async fn save_loop(cp: Arc<Checkpointer>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        let c = cp.clone();
        // Once an hour, forget files gone for a week, so the file does not grow forever.
        let prune = n % 3600 == 0;
        n += 1;
        let _ = tokio::task::spawn_blocking(move || {
            if prune {
                c.prune();
            }
            c.save()
        })
        .await;
    }
}
