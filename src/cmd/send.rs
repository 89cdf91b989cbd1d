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
    let progress = Progress::start(
        args.progress || (!args.no_progress && std::io::stderr().is_terminal()),
        shared.metrics.clone(),
        input_size(&cfg.plan),
    );
    let mode = Mode::Once {
        spool: args.spool.clone(),
        dry_run: args.dry_run,
    };
    let pipeline = Pipeline::start(&cfg.plan, &mode, &shared, tokens.as_ref())
        .await
        .map_err(|e| CmdError::usage(e.to_string()))?;
    let outcome = pipeline.finish_once().await;
    progress.finish();

    let dead_letter_ok = deadletter.flush();
    let mut summary = Summary::from_metrics(&shared.metrics, started.elapsed());
    summary.dry_run = args.dry_run;
    let waiting = outcome.waiting;
    let (code, error) = match (outcome.fatal, outcome.input_error) {
        (Some(f), _) if waiting > 0 => (
            f.exit_code(),
            Some(format!(
                "{f}; {waiting} rows wait in the spool: run `dcrship send --spool {} /dev/null` (same endpoint) to deliver them",
                args.spool.as_deref().unwrap_or(Path::new("DIR")).display()
            )),
        ),
        (Some(f), _) => (f.exit_code(), Some(f.to_string())),
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

/// `--spool DIR`: creates DIR and takes its lock.
fn lock_spool_dir(dir: &Path) -> Result<DirLock, CmdError> {
    crate::private_fs::create_dir_all(dir)
        .map_err(|e| CmdError::usage(format!("--spool: cannot create {}: {e}", dir.display())))?;
    DirLock::acquire(dir).map_err(|e| CmdError::usage(format!("--spool: {e}")))
}

/// The progress bar on stderr, redrawn from the counters: with the inputs' size known (files,
/// not stdin), how much is read, rows/s, MB/s and the time left; else a spinner with the rates.
struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<indicatif::ProgressBar>,
}

/// How far back the rates look: long enough to be steady, short enough to follow a stall.
const RATE_WINDOW: Duration = Duration::from_secs(5);

impl Progress {
    fn start(on: bool, metrics: Arc<Metrics>, total: Option<u64>) -> Self {
        if !on {
            return Progress {
                task: None,
                bar: None,
            };
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            total,
            indicatif::ProgressDrawTarget::stderr(),
        );
        let template = match (total.is_some(), crate::console::stderr_color()) {
            (true, true) => "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {msg}",
            (true, false) => "{spinner} [{elapsed_precise}] {bar:30} {msg}",
            (false, _) => "{spinner} [{elapsed_precise}] {msg}",
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        crate::console::set_progress(Some(bar.clone()));
        let b = bar.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            let mut window = std::collections::VecDeque::new();
            loop {
                tick.tick().await;
                let s = Summary::from_metrics(&metrics, Duration::ZERO);
                let now = started.elapsed();
                window.push_back(Sample {
                    at: now,
                    rows: s.rows_sent,
                    bytes: s.bytes_read,
                });
                while window.len() > 2 && window[0].at + RATE_WINDOW < now {
                    window.pop_front();
                }
                if total.is_some() {
                    b.set_position(s.bytes_read);
                }
                b.set_message(progress_message(&s, total, rates(&window)));
                b.tick();
            }
        });
        Progress {
            task: Some(task),
            bar: Some(bar),
        }
    }

    fn finish(self) {
        if let Some(t) = self.task {
            t.abort();
        }
        if let Some(b) = self.bar {
            crate::console::set_progress(None);
            b.finish_and_clear();
        }
    }
}

/// The counters at one moment of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    at: Duration,
    rows: u64,
    bytes: u64,
}

/// Rows sent and bytes read a second, between the oldest and newest sample.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rates {
    rows: f64,
    bytes: f64,
}

fn rates(window: &std::collections::VecDeque<Sample>) -> Rates {
    let (Some(first), Some(last)) = (window.front(), window.back()) else {
        return Rates {
            rows: 0.0,
            bytes: 0.0,
        };
    };
    let secs = (last.at.saturating_sub(first.at)).as_secs_f64();
    if secs <= 0.0 {
        return Rates {
            rows: 0.0,
            bytes: 0.0,
        };
    }
    Rates {
        rows: last.rows.saturating_sub(first.rows) as f64 / secs,
        bytes: last.bytes.saturating_sub(first.bytes) as f64 / secs,
    }
}

/// `42% · 12345 rows/s · 3.4 MB/s · ETA 1m20s · 5000 rows sent, 0 rejected, 3 requests, 0
/// retries`; without a known total, no percentage and no ETA.
fn progress_message(s: &Summary, total: Option<u64>, r: Rates) -> String {
    let mut parts = Vec::new();
    if let Some(total) = total {
        let pct = if total == 0 {
            100.0
        } else {
            (s.bytes_read as f64 * 100.0 / total as f64).min(100.0)
        };
        parts.push(format!("{pct:.0}%"));
    }
    parts.push(format!("{:.0} rows/s", r.rows));
    parts.push(format!("{:.1} MB/s", r.bytes / 1e6));
    if let Some(total) = total {
        let left = total.saturating_sub(s.bytes_read);
        let eta = match (left, r.bytes > 0.0) {
            (0, _) => "ETA 0s".to_string(),
            (_, true) => format!(
                "ETA {}",
                crate::duration::format_duration(Duration::from_secs_f64(
                    (left as f64 / r.bytes).ceil().min(1e9)
                ))
            ),
            (_, false) => "ETA ?".to_string(),
        };
        parts.push(eta);
    }
    parts.push(format!(
        "{} sent, {} rejected, {}, {}",
        counted(s.rows_sent, "row", "rows"),
        s.rows_rejected,
        counted(s.requests, "request", "requests"),
        counted(s.retries, "retry", "retries")
    ));
    parts.join(" · ")
}

/// The bytes the upload will read, when every input is a regular file (stdin, `-` or a pipe:
/// unknown).
fn input_size(plan: &crate::pipeline::plan::Plan) -> Option<u64> {
    use crate::pipeline::plan::Source;
    let mut total = 0u64;
    for input in plan.inputs.values() {
        let Source::Once(paths) = &input.source else {
            return None;
        };
        for p in paths {
            let meta = std::fs::metadata(p).ok().filter(|m| m.is_file())?;
            total = total.saturating_add(meta.len());
        }
    }
    (!plan.inputs.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(read: u64, sent: u64) -> Summary {
        let m = Metrics::new();
        m.input_bytes("in").add(read);
        m.records_sent("out").add(sent);
        Summary::from_metrics(&m, Duration::ZERO)
    }

    #[test]
    fn rates_are_over_the_window() {
        let at = Duration::from_millis;
        let w: std::collections::VecDeque<Sample> = [
            Sample {
                at: at(1000),
                rows: 100,
                bytes: 1_000,
            },
            Sample {
                at: at(2000),
                rows: 300,
                bytes: 3_000,
            },
            Sample {
                at: at(3000),
                rows: 500,
                bytes: 5_000_000,
            },
        ]
        .into();
        assert_eq!(
            rates(&w),
            Rates {
                rows: 200.0,
                bytes: 2_499_500.0
            }
        );
        let one: std::collections::VecDeque<Sample> = [w[0]].into();
        assert_eq!(
            rates(&one),
            Rates {
                rows: 0.0,
                bytes: 0.0
            }
        );
        assert_eq!(
            rates(&Default::default()),
            Rates {
                rows: 0.0,
                bytes: 0.0
            }
        );
    }

    #[test]
    fn the_message_shows_percent_rates_and_time_left_when_the_size_is_known() {
        let r = Rates {
            rows: 12_345.4,
            bytes: 2_500_000.0,
        };
        let cases = [
            (
                summary(25_000_000, 5000),
                Some(100_000_000),
                r,
                "25% · 12345 rows/s · 2.5 MB/s · ETA 30s · 5000 rows sent, 0 rejected, 0 requests, 0 retries",
            ),
            (
                summary(100_000_000, 1),
                Some(100_000_000),
                r,
                "100% · 12345 rows/s · 2.5 MB/s · ETA 0s · 1 row sent, 0 rejected, 0 requests, 0 retries",
            ),
            (
                summary(10, 0),
                Some(100),
                Rates { rows: 0.0, bytes: 0.0 },
                "10% · 0 rows/s · 0.0 MB/s · ETA ? · 0 rows sent, 0 rejected, 0 requests, 0 retries",
            ),
            (
                summary(0, 0),
                Some(0),
                Rates { rows: 0.0, bytes: 0.0 },
                "100% · 0 rows/s · 0.0 MB/s · ETA 0s · 0 rows sent, 0 rejected, 0 requests, 0 retries",
            ),
            (
                summary(7_000_000, 70),
                None,
                r,
                "12345 rows/s · 2.5 MB/s · 70 rows sent, 0 rejected, 0 requests, 0 retries",
            ),
        ];
        for (s, total, rates, want) in cases {
            assert_eq!(progress_message(&s, total, rates), want);
        }
    }

    #[test]
    fn the_input_size_is_known_only_for_regular_files() {
        use crate::pipeline::plan::{InputPlan, Plan, Source};
        let dir = tempfile::tempdir().expect("tmp");
        let a = dir.path().join("a.log");
        let b = dir.path().join("b.log");
        std::fs::write(&a, "x".repeat(100)).expect("a");
        std::fs::write(&b, "y".repeat(23)).expect("b");
        let plan_of = |source: Source| {
            let mut plan = Plan::default();
            plan.inputs.insert(
                "in".into(),
                InputPlan {
                    source,
                    format: crate::input::Format::Text,
                    rules: None,
                    shaping: Default::default(),
                    output: "out".into(),
                    container: None,
                },
            );
            plan
        };
        assert_eq!(
            input_size(&plan_of(Source::Once(vec![a.clone(), b.clone()]))),
            Some(123)
        );
        assert_eq!(
            input_size(&plan_of(Source::Once(vec![a.clone(), "-".into()]))),
            None
        );
        assert_eq!(
            input_size(&plan_of(Source::Once(vec![dir.path().join("gone")]))),
            None
        );
        assert_eq!(input_size(&plan_of(Source::Stdin)), None);
        assert_eq!(input_size(&Plan::default()), None);
    }
}
