//! `dcrship run`: the agent. Builds the configuration (a file, or flags for containers), starts
//! the pipeline, serves /metrics and /health, talks to systemd, and handles signals: TERM/INT
//! drain and exit 0, HUP reloads the file (keeping the running configuration when the new one is
//! bad).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{check_token_audience, host_name, tokens, CmdError};
use crate::auth::TokenCache;
use crate::cli::RunArgs;
use crate::config::Config;
use crate::deadletter::DeadLetter;
use crate::dirlock::{DirLock, LockError};
use crate::exit::ExitCode;
use crate::health::Health;
use crate::http::HttpClients;
use crate::input::file::OpenFiles;
use crate::metrics::Metrics;
use crate::pipeline::{Checkpointer, Mode, Pipeline, Shared};
use crate::systemd::Notifier;

/// Runs the agent until a signal (or the end of stdin, when stdin is its only input).
pub async fn run(args: RunArgs) -> ExitCode {
    match run_inner(args).await {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            crate::console::err(&format!("dcrship: error: {e}"));
            e.code
        }
    }
}

async fn run_inner(args: RunArgs) -> Result<(), CmdError> {
    let config = super::flags::run_config(&args)?;
    let file = args
        .out
        .config
        .clone()
        .filter(|_| !config_from_flags(&args));
    let agent = config.agent().clone();
    let open_files = open_file_budget(agent.max_open_files);
    crate::private_fs::create_dir_all(&agent.state_dir).map_err(|e| {
        CmdError::usage(format!(
            "cannot create the state directory {}: {e}; set [agent] state_dir or --state-dir to a writable directory",
            agent.state_dir.display()
        ))
    })?;
    // One agent per state directory, for the whole process (reloads keep the directory). A lock
    // file that cannot be made is left to the checkpoint store to explain (read-only, ...).
    let lock = match DirLock::acquire(&agent.state_dir) {
        Err(e @ LockError::Held { .. }) => {
            return Err(CmdError::usage(format!("state directory {e}")))
        }
        other => other,
    };
    let checkpointer = Checkpointer::open(&agent.state_dir).map_err(|e| {
        CmdError::usage(format!(
            "state directory {}: {e}",
            agent.state_dir.display()
        ))
    })?;
    lock.map_err(|e| CmdError::usage(format!("state directory: {e}")))?
        .hold_until_exit();
    let dead_letter_path = agent.state_dir.join("dead-letter.ndjson");
    let deadletter = Arc::new(
        DeadLetter::open(Some(&dead_letter_path)).map_err(|e| CmdError::usage(e.to_string()))?,
    );
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::with_metrics(metrics.clone()));
    for result in ["success", "failure"] {
        metrics.reloads(result);
    }
    let (stop_http, stop_http_rx) = watch::channel(false);
    if let Some(addr) = agent.http_listen {
        let listener = crate::health::bind(addr).await.map_err(|e| {
            CmdError::usage(format!(
                "cannot listen on {addr} for /metrics and /health: {e}; set [agent] http_listen (or --http-listen \"\" to turn it off)"
            ))
        })?;
        tracing::info!(%addr, "serving /metrics and /health");
        tokio::spawn(crate::health::serve(
            listener,
            metrics.clone(),
            health.clone(),
            stop_http_rx,
        ));
    }
    let http = HttpClients::new(Duration::from_secs(60))
        .map_err(|e| CmdError::new(ExitCode::Internal, e.to_string()))?;
    let shared = Shared {
        metrics,
        health,
        deadletter,
        checkpointer: Some(checkpointer),
        heartbeat: Arc::new(AtomicU64::new(0)),
        rows_done: Arc::new(AtomicU64::new(0)),
        started: Instant::now(),
        http,
        computer: host_name(),
    };
    let mode = Mode::Agent {
        state_dir: agent.state_dir.clone(),
        open_files,
    };
    let mut tokens = agent_tokens(&config, &shared).await?;
    // Refresh ahead of expiry in the background, so no send waits for the identity endpoint.
    let mut refresher = tokens.spawn_refresher();
    let mut pipeline = Pipeline::start(&config.plan, &mode, &shared, Some(&tokens))
        .await
        .map_err(|e| CmdError::usage(e.to_string()))?;
    let mut current = config;

    // Handlers first: a `systemctl reload` right after READY must not kill the process.
    let mut term = signal(SignalKind::terminate()).map_err(internal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(internal)?;
    let mut hup = signal(SignalKind::hangup()).map_err(internal)?;
    let notifier = Arc::new(Notifier::from_env());
    // /live: stuck once the heartbeat is older than the watchdog would allow.
    let watchdog = notifier.watchdog_interval().unwrap_or(LIVE_INTERVAL);
    shared.health.watch_heartbeat(crate::health::Heartbeat {
        beat_ms: shared.heartbeat.clone(),
        started: shared.started,
        stale_after: 3 * watchdog,
    });
    notifier.ready();
    let background = spawn_status(&notifier, &shared);

    let stdin_only = current.plan.stdin_only();
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: draining"); break }
            _ = int.recv() => { tracing::info!("SIGINT: draining"); break }
            _ = pipeline.inputs_ended(), if stdin_only => {
                tracing::info!("stdin ended: delivering what is left");
                notifier.stopping();
                // Everything read must be delivered before exit, however long that takes —
                // unless a signal says stop: then `shutdown_timeout` more, and what is left of
                // stdin is lost (logged by the pipeline).
                let timeout = current.agent().shutdown_timeout;
                let signalled = tokio_util::sync::CancellationToken::new();
                let on_signal = signalled.clone();
                let waiter = tokio::spawn(async move {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                    on_signal.cancel();
                });
                pipeline.shutdown_until(signalled, timeout).await;
                waiter.abort();
                refresher.abort();
                let _ = stop_http.send(true);
                background.abort();
                return Ok(());
            }
            _ = hup.recv() => {
                notifier.reloading();
                match reload(&args, file.as_deref(), &current, &shared).await {
                    Some((next, next_tokens)) => {
                        let timeout = current.agent().shutdown_timeout;
                        pipeline.hand_over(&next.plan, timeout).await;
                        match Pipeline::start(&next.plan, &mode, &shared, Some(&next_tokens)).await {
                            Ok(p) => {
                                for gone in current.plan.outputs.keys().filter(|k| !next.plan.outputs.contains_key(*k)) {
                                    shared.health.remove_output(gone);
                                }
                                refresher.abort();
                                refresher = next_tokens.spawn_refresher();
                                tokens = next_tokens;
                                pipeline = p;
                                current = next;
                                shared.metrics.reloads("success").inc();
                                tracing::info!("configuration reloaded");
                            }
                            Err(e) => {
                                shared.metrics.reloads("failure").inc();
                                tracing::error!(error = %e, "the new configuration cannot start; going back to the previous one");
                                pipeline = Pipeline::start(&current.plan, &mode, &shared, Some(&tokens))
                                    .await
                                    .map_err(|e| CmdError::usage(e.to_string()))?;
                            }
                        }
                    }
                    None => {
                        shared.metrics.reloads("failure").inc();
                        tracing::error!("reload failed; keeping the running configuration")
                    }
                }
                notifier.ready();
            }
        }
    }
    notifier.stopping();
    let drained = pipeline.shutdown(current.agent().shutdown_timeout).await;
    tracing::info!(drained, "stopped");
    refresher.abort();
    let _ = stop_http.send(true);
    background.abort();
    Ok(())
}

/// True when `run` takes its configuration from flags alone (no file to reload).
fn config_from_flags(args: &RunArgs) -> bool {
    args.out.config.is_none() && (!args.paths.is_empty() || args.stdin || args.journald.enabled)
}

/// Raises the descriptor limit to its hard limit and sizes the tailers' share of it.
fn open_file_budget(configured: Option<usize>) -> Arc<OpenFiles> {
    match crate::fdlimit::raise_nofile_limit() {
        Ok((before, after)) => {
            tracing::debug!(before, after, "descriptor limit (RLIMIT_NOFILE)")
        }
        Err(e) => tracing::debug!("cannot raise the descriptor limit: {e}"),
    }
    let limit = crate::fdlimit::nofile_limit();
    let (files, tight) = crate::fdlimit::max_open_files(configured, limit);
    if tight {
        tracing::warn!(max_open_files = files, limit, "[agent] max_open_files leaves fewer than {} descriptors of the limit for the spool, checkpoints and sockets; they may fail with \"too many open files\"", crate::fdlimit::reserve(limit));
    }
    tracing::debug!(
        max_open_files = files,
        limit,
        "tailed files held open at most"
    );
    OpenFiles::new(files)
}

/// Feeds `dcrship_token_refresh_total{source,result}` (both results start at 0).
fn count_fetches(tokens: &Arc<TokenCache>, shared: &Shared) {
    let metrics = shared.metrics.clone();
    for result in ["success", "failure"] {
        metrics.token_refresh(tokens.source_name(), result);
    }
    tokens.observe_fetches(Box::new(move |source, ok| {
        metrics
            .token_refresh(source, if ok { "success" } else { "failure" })
            .inc();
    }));
}

fn internal(e: std::io::Error) -> CmdError {
    CmdError::new(
        ExitCode::Internal,
        format!("cannot install signal handlers: {e}"),
    )
}

/// The token source of `config`, its fetches counted; a static token meant for another cloud than the endpoints'
/// is refused now (it would be refused at every request).
async fn agent_tokens(config: &Config, shared: &Shared) -> Result<Arc<TokenCache>, CmdError> {
    let tokens = tokens(&config.auth, &shared.http).await?;
    count_fetches(&tokens, shared);
    if config.auth.method == crate::auth::AuthMethod::Static {
        if let Ok(token) = tokens.token().await {
            for out in config.plan.outputs.values() {
                if let Some(endpoint) = &out.endpoint {
                    check_token_audience(&token, endpoint)
                        .map_err(|m| CmdError::new(ExitCode::NoToken, m))?;
                }
            }
        }
    }
    Ok(tokens)
}

/// Reads the config file again, with the same flags over it; `None` (logged) keeps the
/// running one.
async fn reload(
    args: &RunArgs,
    file: Option<&std::path::Path>,
    current: &Config,
    shared: &Shared,
) -> Option<(Config, Arc<TokenCache>)> {
    if file.is_none() && config_from_flags(args) {
        tracing::warn!("SIGHUP: running from flags, there is no config file to reload");
        return None;
    }
    let config = match super::flags::run_config(args) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the config file is invalid");
            return None;
        }
    };
    if config.agent() != current.agent() {
        tracing::warn!("SIGHUP: [agent] changes (state_dir, http_listen, shutdown_timeout, max_open_files) take effect after a restart");
    }
    match agent_tokens(&config, shared).await {
        Ok(t) => Some((config, t)),
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the new [auth] does not work");
            None
        }
    }
}

/// Without a systemd watchdog, `/live` allows three of these between beats.
const LIVE_INTERVAL: Duration = Duration::from_secs(10);

/// True while the pipeline's loops have beaten within three watchdog intervals.
pub fn pipeline_alive(heartbeat_ms: u64, now_ms: u64, interval: Duration) -> bool {
    crate::health::Heartbeat::alive(heartbeat_ms, now_ms, 3 * interval)
}

/// STATUS= every 5 s, and WATCHDOG=1 at half of WatchdogSec while the pipeline beats.
fn spawn_status(notifier: &Arc<Notifier>, shared: &Shared) -> tokio::task::JoinHandle<()> {
    let notifier = notifier.clone();
    let done = shared.rows_done.clone();
    let health = shared.health.clone();
    let heartbeat = shared.heartbeat.clone();
    let started = shared.started;
    tokio::spawn(async move {
        let watchdog = notifier.watchdog_interval();
        let every = watchdog
            .unwrap_or(Duration::from_secs(5))
            .min(Duration::from_secs(5));
        let mut tick = tokio::time::interval(every);
        let mut last_sent = 0u64;
        let mut last_at = Instant::now();
        loop {
            tick.tick().await;
            let now_ms = started.elapsed().as_millis() as u64;
            if let Some(iv) = watchdog {
                if pipeline_alive(heartbeat.load(Relaxed), now_ms, iv) {
                    notifier.watchdog();
                } else {
                    tracing::error!("the pipeline has not made progress; not petting the watchdog");
                }
            }
            let sent = done.load(Relaxed);
            let rate = (sent.saturating_sub(last_sent)) as f64
                / last_at.elapsed().as_secs_f64().max(0.001);
            last_sent = sent;
            last_at = Instant::now();
            notifier.status(&format!(
                "{}; {rate:.0} rows/s; {sent} rows delivered",
                health.report().summary_line()
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_petted_only_while_the_pipeline_beats() {
        let iv = Duration::from_secs(10);
        assert!(pipeline_alive(100_000, 100_500, iv));
        assert!(pipeline_alive(100_000, 130_000, iv));
        assert!(!pipeline_alive(100_000, 130_001, iv));
        assert!(
            pipeline_alive(5_000, 0, iv),
            "a clock read before the beat is fine"
        );
    }
}
