//! `dcrship send`: read files or stdin once, deliver every row, report, exit with a code.
//!
//! `send` is the pipeline of `run` in its one-shot mode ([`Mode::Once`]): the files are read
//! once and in order (no checkpoints), requests go straight from memory — or through the disk
//! spool of `--spool DIR`, which makes the upload resumable — and the first failure no later
//! request can cure (no token, permission past the grace window, a stream the DCR does not
//! declare, transient failures past the retry timeout) stops the upload. The summary is read
//! from the pipeline's counters.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{check_token_audience, host_name, tokens, CmdError};
use crate::cli::SendArgs;
use crate::deadletter::DeadLetter;
use crate::dirlock::DirLock;
use crate::exit::ExitCode;
use crate::health::Health;
use crate::http::HttpClients;
use crate::metrics::Metrics;
use crate::pipeline::{Mode, Pipeline, Shared};
use crate::stats::{counted, Summary};

/// Runs `send`. `Err` is a failure before any row was read (usage, config, token).
pub async fn run(args: SendArgs) -> Result<Summary, CmdError> {
    let started = Instant::now();
    let cfg = super::flags::send_config(&args)?;
    // Held until the upload ends: another process on the same spool would send its records too.
    let _spool_lock = match args.spool.as_deref() {
        Some(dir) => Some(lock_spool_dir(dir)?),
        None => None,
    };
    let deadletter = Arc::new(
        DeadLetter::open(args.dead_letter.as_deref())
            .map_err(|e| CmdError::usage(e.to_string()))?,
    );
    let http = HttpClients::new(Duration::from_secs(60))
        .map_err(|e| CmdError::new(ExitCode::Internal, e.to_string()))?;
    let tokens = if args.dry_run {
        None
    } else {
        // The whole token fetch, retries included, keeps to the retry timeout.
        let retry_timeout = cfg.plan.outputs.values().map(|o| o.retry_timeout).min();
        let auth = crate::auth::AuthConfig {
            fetch_timeout: retry_timeout,
            ..cfg.auth.clone()
        };
        let tokens = tokens(&auth, &http).await?;
        // A one-shot upload wants the token problem now, not after reading the input.
        let token = tokens.token().await.map_err(super::auth_error)?;
        for out in cfg.plan.outputs.values() {
            if let Some(endpoint) = &out.endpoint {
                check_token_audience(&token, endpoint)
                    .map_err(|m| CmdError::new(ExitCode::NoToken, m))?;
            }
        }
        tracing::info!(identity = tokens.source_name(), "sending");
        Some(tokens)
    };
    let metrics = Arc::new(Metrics::new());
    let shared = Shared {
        health: Arc::new(Health::with_metrics(metrics.clone())),
        metrics,
        deadletter: deadletter.clone(),
        checkpointer: None,
        heartbeat: Arc::new(AtomicU64::new(0)),
        rows_done: Arc::new(AtomicU64::new(0)),
        started: tokio::time::Instant::now(),
        http,
        computer: host_name(),
    };
    let progress = super::progress::Progress::start(
        args.progress || (!args.no_progress && std::io::stderr().is_terminal()),
        shared.metrics.clone(),
        super::progress::input_size(&cfg.plan),
    );
    let mode = Mode::Once {
        spool: args.spool.clone(),
        dry_run: args.dry_run,
    };
    let pipeline = Pipeline::start(&cfg.plan, &mode, &shared, tokens.as_ref())
        .await
        .map_err(|e| CmdError::usage(e.to_string()))?;
    let interrupt = CancellationToken::new();
    let on_signal = tokio::spawn(interrupt_on_signal(interrupt.clone()));
    let outcome = pipeline.finish_once(interrupt, INTERRUPT_GRACE).await;
    on_signal.abort();
    progress.finish();

    let dead_letter_ok = deadletter.flush();
    let mut summary = Summary::from_metrics(&shared.metrics, started.elapsed());
    summary.dry_run = args.dry_run;
    let waiting = outcome.waiting;
    let in_spool = || {
        format!(
            "{waiting} rows wait in the spool: run `dcrship send --spool {} /dev/null` (same endpoint) to deliver them",
            args.spool.as_deref().unwrap_or(Path::new("DIR")).display()
        )
    };
    let (code, error) = match (outcome.fatal, outcome.input_error) {
        (Some(f), _) if waiting > 0 => (f.exit_code(), Some(format!("{f}; {}", in_spool()))),
        (Some(f), _) => (f.exit_code(), Some(f.to_string())),
        (None, _) if outcome.interrupted => (
            ExitCode::Interrupted,
            Some(match waiting {
                0 => format!(
                    "interrupted by a signal before the input was read and delivered to its \
                     end: {} read, {} of them not sent",
                    counted(summary.rows_read, "row", "rows"),
                    summary.rows_unsent
                ),
                _ => format!("interrupted; {}", in_spool()),
            }),
        ),
        (None, Some(e)) => (ExitCode::Usage, Some(e)),
        (None, None) if summary.rows_rejected > 0 => (
            ExitCode::Rejected,
            Some(format!(
                "{} rejected; {}",
                counted(summary.rows_rejected, "row", "rows"),
                match &args.dead_letter {
                    Some(p) if dead_letter_ok =>
                        format!("they are in {} with the reason for each", p.display()),
                    Some(p) => format!("writing them to {} failed, see the log", p.display()),
                    None => "add --dead-letter FILE to keep them with the reason for each".into(),
                }
            )),
        ),
        (None, None) => (ExitCode::Ok, None),
    };
    summary.exit_code = code.code();
    summary.error = error;
    Ok(summary)
}

/// How long delivery goes on after SIGINT or SIGTERM stopped the reading.
const INTERRUPT_GRACE: Duration = Duration::from_secs(10);

/// The first SIGINT or SIGTERM fires `interrupt`: reading stops, what was read is delivered for
/// [`INTERRUPT_GRACE`] more, and the summary says what was not. A second one exits at once,
/// with [`ExitCode::Interrupted`], as an interrupted command does.
async fn interrupt_on_signal(interrupt: CancellationToken) {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without handlers the signals keep their default action: the process ends at once.
        return;
    };
    async fn next(int: &mut Signal, term: &mut Signal) -> &'static str {
        tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    }
    let name = next(&mut int, &mut term).await;
    tracing::warn!(
        "{name}: stopped reading; delivering what was read for up to {} s more (again to stop now)",
        INTERRUPT_GRACE.as_secs()
    );
    interrupt.cancel();
    let name = next(&mut int, &mut term).await;
    crate::console::err(&format!("dcrship: {name} again: stopping now"));
    std::process::exit(ExitCode::Interrupted.code());
}

/// `--spool DIR`: creates DIR and takes its lock.
fn lock_spool_dir(dir: &Path) -> Result<DirLock, CmdError> {
    crate::private_fs::create_dir_all(dir)
        .map_err(|e| CmdError::usage(format!("--spool: cannot create {}: {e}", dir.display())))?;
    DirLock::acquire(dir).map_err(|e| CmdError::usage(format!("--spool: {e}")))
}
