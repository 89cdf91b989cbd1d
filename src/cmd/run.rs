//! `dcrship run`: the agent. Builds the configuration (a file, or flags for containers), starts
//! the pipeline, serves /metrics and /health, talks to systemd, and handles signals: TERM/INT
//! drain and exit 0, HUP reloads the file (keeping the running configuration when the new one is
//! bad).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::time::Instant;

use super::send::host_name;
use super::settings::{auth_from_config, check_clouds, OutputSettings};
use super::CmdError;
use crate::auth::{self, AuthConfig, TokenCache};
use crate::cli::RunArgs;
use crate::config::{
    self, AgentConfig, Config, InputConfig, InputFormat, InputKind, OutputConfig, StartAt,
    DEFAULT_CONFIG_PATH, DEFAULT_STATE_DIR,
};
use crate::deadletter::DeadLetter;
use crate::dirlock::{DirLock, LockError};
use crate::exit::ExitCode;
use crate::health::Health;
use crate::http::HttpClients;
use crate::metrics::Metrics;
use crate::pipeline::{Checkpointer, Pipeline, Shared};
use crate::systemd::Notifier;

/// The configuration to run, and where it came from (for SIGHUP).
struct Plan {
    config: Config,
    auth: AuthConfig,
    file: Option<PathBuf>,
}

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
    let plan = plan(&args)?;
    let agent = plan.config.agent.clone();
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
    let health = Arc::new(Health::new());
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
        checkpointer,
        heartbeat: Arc::new(AtomicU64::new(0)),
        rows_done: Arc::new(AtomicU64::new(0)),
        started: Instant::now(),
        http,
        computer: host_name(),
    };
    let mut tokens = tokens(&plan.auth, &shared.http).await?;
    count_fetches(&tokens, &shared);
    // Refresh ahead of expiry in the background, so no send waits for the identity endpoint.
    let mut refresher = tokens.spawn_refresher();
    let mut pipeline = Pipeline::start(&plan.config, &shared, &tokens)
        .await
        .map_err(|e| CmdError::usage(e.to_string()))?;
    let mut current = plan;

    // Handlers first: a `systemctl reload` right after READY must not kill the process.
    let mut term = signal(SignalKind::terminate()).map_err(internal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(internal)?;
    let mut hup = signal(SignalKind::hangup()).map_err(internal)?;
    let notifier = Arc::new(Notifier::from_env());
    notifier.ready();
    let background = spawn_status(&notifier, &shared);

    let stdin_only = !current.config.inputs.is_empty()
        && current
            .config
            .inputs
            .values()
            .all(|i| i.kind == InputKind::Stdin);
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
                let timeout = current.config.agent.shutdown_timeout;
                let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                let waiter = tokio::spawn(async move {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                    let _ = stop_tx.send(());
                });
                pipeline.shutdown_until(stop_rx, timeout).await;
                waiter.abort();
                refresher.abort();
                let _ = stop_http.send(true);
                background.abort();
                return Ok(());
            }
            _ = hup.recv() => {
                notifier.reloading();
                match reload(&current, &shared).await {
                    Some((next, next_tokens)) => {
                        let timeout = current.config.agent.shutdown_timeout;
                        pipeline.shutdown(timeout).await;
                        match Pipeline::start(&next.config, &shared, &next_tokens).await {
                            Ok(p) => {
                                for gone in current.config.outputs.keys().filter(|k| !next.config.outputs.contains_key(*k)) {
                                    shared.health.remove_output(gone);
                                }
                                refresher.abort();
                                count_fetches(&next_tokens, &shared);
                                refresher = next_tokens.spawn_refresher();
                                tokens = next_tokens;
                                pipeline = p;
                                current = next;
                                tracing::info!("configuration reloaded");
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "the new configuration cannot start; going back to the previous one");
                                pipeline = Pipeline::start(&current.config, &shared, &tokens)
                                    .await
                                    .map_err(|e| CmdError::usage(e.to_string()))?;
                            }
                        }
                    }
                    None => tracing::error!("reload failed; keeping the running configuration"),
                }
                notifier.ready();
            }
        }
    }
    notifier.stopping();
    let drained = pipeline
        .shutdown(current.config.agent.shutdown_timeout)
        .await;
    tracing::info!(drained, "stopped");
    refresher.abort();
    let _ = stop_http.send(true);
    background.abort();
    Ok(())
}

/// Feeds `dcrship_token_refresh_total{source,result}`.
fn count_fetches(tokens: &Arc<TokenCache>, shared: &Shared) {
    let metrics = shared.metrics.clone();
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

async fn tokens(auth: &AuthConfig, http: &HttpClients) -> Result<Arc<TokenCache>, CmdError> {
    auth::build(auth, http).await.map_err(|e| match e {
        auth::AuthError::Config(m) => CmdError::usage(m),
        other => CmdError::new(ExitCode::NoToken, format!("no access token: {other}")),
    })
}

/// Reads the config file again; `None` (logged) keeps the running one.
async fn reload(current: &Plan, shared: &Shared) -> Option<(Plan, Arc<TokenCache>)> {
    let Some(path) = &current.file else {
        tracing::warn!("SIGHUP: running from flags, there is no config file to reload");
        return None;
    };
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the config file is invalid");
            return None;
        }
    };
    if config.agent != current.config.agent {
        tracing::warn!("SIGHUP: [agent] changes (state_dir, http_listen, shutdown_timeout) take effect after a restart");
    }
    let auth = auth_from_config(&config);
    if let Err(m) = check_clouds(&auth, &config) {
        tracing::error!("SIGHUP: {m}");
        return None;
    }
    let tokens = match tokens(&auth, &shared.http).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the new [auth] does not work");
            return None;
        }
    };
    Some((
        Plan {
            config,
            auth,
            file: Some(path.clone()),
        },
        tokens,
    ))
}

/// The configuration from a file, or from flags when `--path`/`--stdin` are given.
fn plan(args: &RunArgs) -> Result<Plan, CmdError> {
    let flag_mode = !args.paths.is_empty() || args.stdin || args.journald.enabled;
    if !flag_mode {
        let path = args
            .out
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
        let mut config = config::load(&path).map_err(|e| {
            CmdError::usage(format!(
                "{e}\n(give --config FILE, or run from flags: --endpoint URL --dcr ID --stream NAME --path GLOB or --journald)"
            ))
        })?;
        apply_agent_flags(args, &mut config.agent)?;
        if config.inputs.is_empty() {
            return Err(CmdError::usage(format!(
                "{} has no [inputs.NAME]: nothing to read",
                path.display()
            )));
        }
        let auth = auth_from_config(&config);
        check_clouds(&auth, &config)
            .map_err(|m| CmdError::usage(format!("{}: {m}", path.display())))?;
        return Ok(Plan {
            config,
            auth,
            file: Some(path),
        });
    }
    let mut out_args = args.out.clone();
    out_args.config = None;
    let s = OutputSettings::resolve(&out_args, true)?;
    let endpoint = s
        .endpoint
        .as_ref()
        .map(|u| u.to_string())
        .unwrap_or_default();
    let mut output = OutputConfig::new(endpoint.as_str(), s.dcr.as_str(), s.stream.as_str());
    output.concurrency = s.concurrency;
    output.max_request_bytes = s.max_request_bytes;
    output.permission_grace = s.permission_grace;
    output.retry_timeout = s.retry_timeout;
    output.request_timeout = s.request_timeout;
    output.batch_timeout = s.batch_timeout;
    output.compression_level = s.compression_level;
    output.max_requests_per_minute = s.max_requests_per_minute;
    output.max_bytes_per_minute = s.max_bytes_per_minute;
    check_parse_flags(args, output.max_request_bytes)?;
    let mut inputs = BTreeMap::new();
    if !args.paths.is_empty() {
        for p in &args.paths {
            if !Path::new(p).is_absolute() {
                return Err(CmdError::usage(format!(
                    "--path {p:?}: give an absolute path or glob (files are found from / on every rescan)"
                )));
            }
        }
        inputs.insert("files".to_string(), flag_input(args, InputKind::File));
    }
    if args.stdin {
        inputs.insert("stdin".to_string(), flag_input(args, InputKind::Stdin));
    }
    if args.journald.enabled {
        inputs.insert("journald".to_string(), journald_input(args));
    }
    for input in inputs.values() {
        check_journald_flags(input)?;
    }
    let mut agent = AgentConfig {
        state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        ..AgentConfig::default()
    };
    apply_agent_flags(args, &mut agent)?;
    let config = Config {
        agent,
        outputs: BTreeMap::from([("default".to_string(), output)]),
        inputs,
        ..Config::default()
    };
    Ok(Plan {
        config,
        auth: s.auth,
        file: None,
    })
}

fn flag_input(args: &RunArgs, kind: InputKind) -> InputConfig {
    let file = kind == InputKind::File;
    InputConfig {
        kind,
        paths: if file { args.paths.clone() } else { Vec::new() },
        exclude: if file {
            args.exclude.clone()
        } else {
            Vec::new()
        },
        format: args.format,
        pattern: args.parse.pattern.clone(),
        on_mismatch: args.parse.on_mismatch.unwrap_or_default(),
        multiline: args.parse.multiline(),
        start_at: args.start_at,
        output: "default".to_string(),
        time_field: None,
        time_format: None,
        timezone: None,
        fields: BTreeMap::new(),
        rename: BTreeMap::new(),
        drop: Vec::new(),
        units: Vec::new(),
        exclude_units: Vec::new(),
        priority: None,
        matches: BTreeMap::new(),
        since_now: None,
        journal_directory: None,
    }
}

/// The `--journald` input: the Syslog table's columns unless `--format raw`; `--start-at
/// beginning` reads the whole journal on the first start.
fn journald_input(args: &RunArgs) -> InputConfig {
    let j = &args.journald;
    let mut matches: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (field, value) in &j.matches {
        matches
            .entry(field.clone())
            .or_default()
            .push(value.clone());
    }
    InputConfig {
        format: match args.format {
            InputFormat::Raw => InputFormat::Raw,
            _ => InputFormat::Syslog,
        },
        pattern: None,
        multiline: None,
        on_mismatch: Default::default(),
        start_at: StartAt::End,
        units: j.units.clone(),
        exclude_units: j.exclude_units.clone(),
        priority: j.priority,
        matches,
        since_now: Some(args.start_at == StartAt::End),
        journal_directory: j.directory.clone(),
        ..flag_input(args, InputKind::Journald)
    }
}

/// The journald checks of the configuration, said with the flags' names.
fn check_journald_flags(input: &InputConfig) -> Result<(), CmdError> {
    crate::input::journald::options::check(input).map_err(|(key, m)| {
        let flag = match key.first().map(String::as_str) {
            Some("units") => "--journald-unit",
            Some("exclude_units") => "--journald-exclude-unit",
            Some("match") => "--journald-match",
            Some("journal_directory") => "--journald-directory",
            _ => "--format",
        };
        CmdError::usage(format!("{flag}: {m}"))
    })
}

/// `--pattern`, `--on-mismatch`, `--multiline-*` fit `--format`, and compile.
fn check_parse_flags(args: &RunArgs, cap: usize) -> Result<(), CmdError> {
    use clap::ValueEnum;
    let format = args.format.to_possible_value();
    let name = format.as_ref().map_or("text", |v| v.get_name());
    args.parse.check(name).map_err(CmdError::usage)?;
    if let Some(m) = args.parse.multiline() {
        if m.max_bytes > cap {
            return Err(CmdError::usage(format!(
                "--multiline-max-bytes {} is more than the request cap {cap}",
                m.max_bytes
            )));
        }
    }
    crate::input::parse::TextRules::for_input(&flag_input(args, InputKind::Stdin))
        .map(|_| ())
        .map_err(|e| {
            let flag = match e {
                crate::input::parse::ParseSetupError::Pattern(_) => "--pattern",
                _ => "--multiline-start",
            };
            CmdError::usage(format!("{flag}: {e}"))
        })
}

fn apply_agent_flags(args: &RunArgs, agent: &mut AgentConfig) -> Result<(), CmdError> {
    if let Some(dir) = &args.state_dir {
        agent.state_dir = dir.clone();
    }
    if let Some(listen) = &args.http_listen {
        agent.http_listen = config::parse_listen(listen)
            .map_err(|e| CmdError::usage(format!("--http-listen: {e}")))?;
    }
    if let Some(t) = args.shutdown_timeout {
        agent.shutdown_timeout = t;
    }
    Ok(())
}

/// True while the pipeline's loops have beaten within three watchdog intervals.
pub fn pipeline_alive(heartbeat_ms: u64, now_ms: u64, interval: Duration) -> bool {
    now_ms.saturating_sub(heartbeat_ms) <= 3 * interval.as_millis() as u64
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
