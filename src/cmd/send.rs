//! `dcrship send`: read files or stdin once, deliver every row, report, exit with a code.
//!
//! ```text
//! reader (this task) ──RawBatch──▶ bounded channel ──▶ N workers: gzip (blocking pool) → Sender
//! ```
//! The reader decodes, builds rows and packs them; a full or timed-out batch goes to the
//! channel, whose bound is the backpressure that keeps memory flat for any input size. Each
//! worker seals (gzips) a batch and delivers it under the policy. The first fatal failure
//! (no token, permission past the grace window, transient failures past the retry timeout)
//! stops reader and workers; the rows not delivered are reported as not sent.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch, Mutex};

use super::settings::OutputSettings;
use super::shaping::{shaping, text_rules};
use super::CmdError;
use crate::auth;
use crate::batch::{Batcher, Origin, Pushed, RawBatch};
use crate::cli::SendArgs;
use crate::deadletter::{DeadLetter, Refused};
use crate::dirlock::DirLock;
use crate::exit::ExitCode;
use crate::http::HttpClients;
use crate::ingest::sender::{DeliveryReport, Fatal, Policy, RetryReason, Sender, Target};
use crate::ingest::{HttpTransport, Sealer};
use crate::input::parse::TextRules;
use crate::input::{format, Decoder, Format};
use crate::spool::{unseal, Body as SpoolBody, Options as SpoolOptions, Spool, SpoolMetrics};
use crate::stats::{counted, Stats, Summary};
use crate::transform::row::json_string;
use crate::transform::sink::{RowBuf, RowSink, SinkCounts};
use crate::transform::time::rfc3339_utc;
use crate::transform::RowEncoder;

/// Bytes read from an input at a time.
const READ_CHUNK: usize = 256 * 1024;

/// One input: a file, or stdin.
#[derive(Debug, Clone)]
struct Input {
    name: String,
    path: Option<PathBuf>,
}

/// Runs `send`. `Err` is a failure before any row was read (usage, config, token).
pub async fn run(args: SendArgs) -> Result<Summary, CmdError> {
    let started = Instant::now();
    let settings = OutputSettings::resolve(&args.out, !args.dry_run)?;
    let rules = text_rules(args.format, &args.parse, settings.max_request_bytes)?;
    let inputs = resolve_inputs(&args.files)?;
    let mut names: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
    // Held until the upload ends: another process on the same spool would send its records too.
    let _spool_lock = match args.spool.as_deref() {
        Some(dir) => Some(lock_spool_dir(dir)?),
        None => None,
    };
    let spool = open_spool(args.spool.as_deref(), &mut names).await?;
    let names = Arc::new(names);
    let deadletter = Arc::new(
        DeadLetter::open(args.dead_letter.as_deref())
            .map_err(|e| CmdError::usage(e.to_string()))?,
    );
    let stats = Arc::new(Stats::default());
    let report: Arc<dyn DeliveryReport> = Arc::new(SendReport {
        stats: stats.clone(),
        deadletter: deadletter.clone(),
        names: names.clone(),
    });
    let sender = if args.dry_run {
        None
    } else {
        Some(Arc::new(build_sender(&settings, report.clone()).await?))
    };

    let stop = Arc::new(Stop::new());
    let (tx, rx) = mpsc::channel::<RawBatch>(settings.concurrency * 2);
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = Vec::with_capacity(settings.concurrency);
    for _ in 0..settings.concurrency {
        workers.push(tokio::spawn(worker(
            rx.clone(),
            sender.clone(),
            report.clone(),
            stop.clone(),
            settings.max_request_bytes,
            settings.compression_level,
            spool.as_ref().map(|(s, _)| s.clone()),
        )));
    }
    drop(rx);
    let mut deliverers = Vec::new();
    if let (Some((spool, replayed)), Some(sender)) = (&spool, &sender) {
        for _ in 0..settings.concurrency {
            deliverers.push(tokio::spawn(spool_deliverer(
                spool.clone(),
                sender.clone(),
                stop.clone(),
                *replayed,
                settings.compression_level,
            )));
        }
    }

    let progress = Progress::start(
        args.progress || (!args.no_progress && std::io::stderr().is_terminal()),
        stats.clone(),
    );
    let reader = Reader {
        format: args.format,
        rules,
        encoder: RowEncoder::with_shaping(
            &host_name(),
            shaping(
                "send",
                args.time_field.as_deref(),
                &args.shape,
                &settings.stream,
                &settings.columns,
            )?,
        ),
        batcher: Batcher::new(settings.max_request_bytes)
            .with_max_time_span(args.shape.max_time_span.or(settings.max_time_span)),
        batch_timeout: settings.batch_timeout,
        stats: stats.clone(),
        deadletter: deadletter.clone(),
        dry_run: args.dry_run,
        first_row_shown: false,
    };
    let input_error = reader.read_all(&inputs, &tx, &stop).await;
    drop(tx);
    for w in workers {
        if let Err(e) = w.await {
            stop.fail(Fatal::Transient(format!(
                "internal error: a sender task failed: {e}"
            )));
        }
    }
    let mut waiting = 0;
    if let Some((spool, _)) = &spool {
        spool.close_input();
        for d in deliverers {
            let _ = d.await;
        }
        waiting = spool.pending().await.1;
        spool.close().await;
    }
    progress.finish();

    let dead_letter_ok = deadletter.flush();
    let mut summary = stats.summary(started.elapsed());
    summary.dry_run = args.dry_run;
    let (code, error) = match (stop.fatal(), input_error) {
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
                crate::stats::counted(summary.rows_rejected, "row", "rows"),
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

async fn build_sender(
    settings: &OutputSettings,
    report: Arc<dyn DeliveryReport>,
) -> Result<Sender, CmdError> {
    let endpoint = settings
        .endpoint
        .clone()
        .ok_or_else(|| CmdError::usage("missing --endpoint"))?;
    let http = HttpClients::new(Duration::from_secs(60))
        .map_err(|e| CmdError::new(ExitCode::Internal, e.to_string()))?;
    // The whole token fetch, retries included, keeps to the retry timeout.
    let auth = auth::AuthConfig {
        fetch_timeout: Some(settings.retry_timeout),
        ..settings.auth.clone()
    };
    let tokens = auth::build(&auth, &http).await.map_err(auth_error)?;
    // A one-shot upload wants the token problem now, not after reading the input.
    let token = tokens.token().await.map_err(auth_error)?;
    super::settings::check_token_audience(&token, &endpoint)
        .map_err(|m| CmdError::new(ExitCode::NoToken, m))?;
    let transport = HttpTransport::new(
        http.remote.clone(),
        &endpoint,
        &settings.dcr,
        &settings.stream,
    );
    tracing::info!(url = %transport.url(), identity = tokens.source_name(), "sending");
    let policy = Policy {
        permission_grace: settings.permission_grace,
        retry_timeout: Some(settings.retry_timeout),
        max_request_bytes: settings.max_request_bytes,
        request_timeout: settings.request_timeout,
        limits: crate::ingest::limits::DcrLimits {
            requests_per_minute: settings.max_requests_per_minute,
            bytes_per_minute: settings.max_bytes_per_minute,
        },
        ..Policy::default()
    };
    let target = Target::new(
        settings.dcr.clone(),
        settings.stream.clone(),
        endpoint.host_str().unwrap_or_default(),
    );
    Ok(Sender::new(
        Arc::new(transport),
        tokens,
        policy,
        target,
        report,
    ))
}

/// A configuration mistake is a usage error (2); anything else means no token (3).
fn auth_error(e: auth::AuthError) -> CmdError {
    match e {
        auth::AuthError::Config(m) => CmdError::usage(m),
        other => CmdError::new(ExitCode::NoToken, format!("no access token: {other}")),
    }
}

/// Files as given; none or `-` is stdin. Every file is checked before anything is sent, so a
/// typo fails fast instead of after an upload.
fn resolve_inputs(files: &[PathBuf]) -> Result<Vec<Input>, CmdError> {
    if files.is_empty() {
        return Ok(vec![stdin_input()]);
    }
    let mut out = Vec::with_capacity(files.len());
    let mut stdin_seen = false;
    for f in files {
        if f.as_os_str() == "-" {
            if stdin_seen {
                return Err(CmdError::usage("stdin (-) is named twice"));
            }
            stdin_seen = true;
            out.push(stdin_input());
            continue;
        }
        let meta = std::fs::metadata(f).map_err(|e| {
            CmdError::usage(format!("cannot read {}: {}", f.display(), io_reason(&e)))
        })?;
        if meta.is_dir() {
            return Err(CmdError::usage(format!(
                "{} is a directory: name the files (a shell glob such as {}/*.log works)",
                f.display(),
                f.display()
            )));
        }
        std::fs::File::open(f).map_err(|e| {
            CmdError::usage(format!("cannot read {}: {}", f.display(), io_reason(&e)))
        })?;
        out.push(Input {
            name: f.display().to_string(),
            path: Some(f.clone()),
        });
    }
    Ok(out)
}

fn stdin_input() -> Input {
    Input {
        name: "<stdin>".into(),
        path: None,
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// The `Computer` column: the host name.
pub fn host_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Lets the first fatal failure stop every task.
struct Stop {
    fatal: OnceLock<Fatal>,
    tx: watch::Sender<bool>,
}

impl Stop {
    fn new() -> Self {
        Stop {
            fatal: OnceLock::new(),
            tx: watch::Sender::new(false),
        }
    }

    fn fail(&self, f: Fatal) {
        if self.fatal.set(f).is_ok() {
            self.tx.send_replace(true);
        }
    }

    fn fatal(&self) -> Option<Fatal> {
        self.fatal.get().cloned()
    }

    async fn stopped(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives as long as self, so this only returns when stopped.
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// A worker: takes raw batches, seals them on the blocking pool, delivers them.
async fn worker(
    rx: Arc<Mutex<mpsc::Receiver<RawBatch>>>,
    sender: Option<Arc<Sender>>,
    report: Arc<dyn DeliveryReport>,
    stop: Arc<Stop>,
    cap: usize,
    level: u32,
    spool: Option<Arc<Spool>>,
) {
    let mut sealer = Sealer::new(cap, level);
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            tokio::select! {
                b = rx.recv() => b,
                _ = stop.stopped() => None,
            }
        };
        let Some(batch) = batch else { return };
        let sealed = match sealer.seal(batch, &*report).await {
            Ok(sealed) => sealed,
            Err(e) => {
                stop.fail(Fatal::Transient(format!(
                    "internal error while compressing: {e}"
                )));
                return;
            }
        };
        for b in sealed {
            if let (Some(spool), Some(_)) = (&spool, &sender) {
                // Delivered by the spool's deliverers once it is written.
                if !spool.append(b, Box::new(|| {})).await {
                    return;
                }
                continue;
            }
            let Some(sender) = &sender else {
                report.accepted(&b.raw, b.gzip.len());
                continue;
            };
            tokio::select! {
                r = sender.deliver(b, sealer.gzip()) => {
                    if let Err(f) = r {
                        stop.fail(f);
                        return;
                    }
                }
                _ = stop.stopped() => return,
            }
        }
    }
}

/// `--spool DIR`: creates DIR and takes its lock.
fn lock_spool_dir(dir: &Path) -> Result<DirLock, CmdError> {
    crate::private_fs::create_dir_all(dir)
        .map_err(|e| CmdError::usage(format!("--spool: cannot create {}: {e}", dir.display())))?;
    DirLock::acquire(dir).map_err(|e| CmdError::usage(format!("--spool: {e}")))
}

/// `--spool DIR`: the spool, and the origin given to rows read back from it (a name of their
/// own in `names`, as their input and line are not kept).
async fn open_spool(
    dir: Option<&Path>,
    names: &mut Vec<String>,
) -> Result<Option<(Arc<Spool>, Origin)>, CmdError> {
    let Some(dir) = dir else { return Ok(None) };
    let replayed = Origin {
        source: names.len() as u32,
        line: 0,
        offset: 0,
    };
    names.push(format!("<spool {}>", dir.display()));
    let d = dir.to_path_buf();
    let spool = tokio::task::spawn_blocking(move || {
        Spool::open(&d, SpoolOptions::default(), SpoolMetrics::default())
    })
    .await
    .map_err(|e| CmdError::new(ExitCode::Internal, e.to_string()))?
    .map_err(|e| CmdError::usage(format!("--spool: {e}")))?;
    Ok(Some((Arc::new(spool), replayed)))
}

/// `--spool`: delivers the spool's requests in order (an earlier run's first), acknowledging
/// each; stops at the first fatal failure, leaving the rest in the spool.
async fn spool_deliverer(
    spool: Arc<Spool>,
    sender: Arc<Sender>,
    stop: Arc<Stop>,
    replayed: Origin,
    level: u32,
) {
    let mut gz = crate::batch::Gzip::new(level);
    loop {
        let rec = tokio::select! {
            r = spool.next() => r,
            _ = stop.stopped() => None,
        };
        let Some(rec) = rec else { return };
        let batch = match rec.body {
            SpoolBody::Sealed(b) => b,
            SpoolBody::Gzip(g) => {
                match tokio::task::spawn_blocking(move || unseal(g, replayed)).await {
                    Ok(Ok(b)) => b,
                    other => {
                        let why = match other {
                            Ok(Err(e)) => e,
                            Err(e) => e.to_string(),
                            Ok(Ok(_)) => String::new(),
                        };
                        stop.fail(Fatal::Transient(format!(
                            "a request in the spool cannot be read back: {why}"
                        )));
                        return;
                    }
                }
            }
        };
        tokio::select! {
            r = sender.deliver(batch, &mut gz) => match r {
                Ok(()) => spool.ack(rec.seq),
                Err(f) => {
                    stop.fail(f);
                    return;
                }
            },
            _ = stop.stopped() => return,
        }
    }
}

/// Reports deliveries into the counters and the dead-letter file.
struct SendReport {
    stats: Arc<Stats>,
    deadletter: Arc<DeadLetter>,
    names: Arc<Vec<String>>,
}

impl DeliveryReport for SendReport {
    fn accepted(&self, batch: &RawBatch, gzip_bytes: usize) {
        Stats::add(&self.stats.rows_sent, batch.len() as u64);
        Stats::add(&self.stats.bytes_raw, batch.body().len() as u64);
        Stats::add(&self.stats.bytes_gzip, gzip_bytes as u64);
    }

    fn rejected(&self, batch: &RawBatch, reason: &str) {
        self.deadletter.write_rows(batch.rows(), reason, |s| {
            self.names.get(s as usize).map_or("?", String::as_str)
        });
        Stats::add(&self.stats.rows_rejected, batch.len() as u64);
    }

    fn request(&self, _status: Option<u16>) {
        Stats::add(&self.stats.requests, 1);
    }

    fn retry(&self, _reason: RetryReason, _detail: &str) {
        Stats::add(&self.stats.retries, 1);
    }

    fn backlog(&self) -> Option<String> {
        let unsent = self.stats.summary(Duration::ZERO).rows_unsent;
        Some(format!("{unsent} rows read and not yet delivered"))
    }
}

/// Reads the inputs in order, turning records into rows and rows into batches.
struct Reader {
    format: Format,
    /// Parser and multiline rules (`--format regex|logfmt|syslog`, `--multiline-*`).
    rules: Option<Arc<TextRules>>,
    encoder: RowEncoder,
    batcher: Batcher,
    batch_timeout: Duration,
    stats: Arc<Stats>,
    deadletter: Arc<DeadLetter>,
    dry_run: bool,
    first_row_shown: bool,
}

impl Reader {
    /// Reads every input; returns the message of an input that failed mid-way, if any.
    async fn read_all(
        mut self,
        inputs: &[Input],
        tx: &mpsc::Sender<RawBatch>,
        stop: &Stop,
    ) -> Option<String> {
        let mut error = None;
        for (i, input) in inputs.iter().enumerate() {
            if stop.fatal().is_some() {
                break;
            }
            match self.read_one(i as u32, input, tx, stop).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::error!(input = %input.name, "{e}");
                    error.get_or_insert(e);
                }
            }
        }
        if let Some(b) = self.batcher.flush() {
            let _ = tx.send(b).await;
        }
        error
    }

    /// Ok(false): stopped, or the workers are gone.
    async fn read_one(
        &mut self,
        source: u32,
        input: &Input,
        tx: &mpsc::Sender<RawBatch>,
        stop: &Stop,
    ) -> Result<bool, String> {
        let mut reader: Box<dyn AsyncRead + Unpin + Send> = match &input.path {
            Some(p) => Box::new(
                tokio::fs::File::open(p)
                    .await
                    .map_err(|e| format!("cannot read {}: {}", p.display(), io_reason(&e)))?,
            ),
            None => {
                if std::io::stdin().is_terminal() {
                    crate::console::err("dcrship: reading rows from the terminal; end with Ctrl-D");
                }
                Box::new(tokio::io::stdin())
            }
        };
        let format = match (self.format, &input.path) {
            (Format::Auto, Some(p)) => format::from_extension(p).unwrap_or(Format::Auto),
            (f, _) => f,
        };
        let mut decoder = match &self.rules {
            Some(rules) => Decoder::with_rules(rules.clone(), self.batcher.cap()),
            None => Decoder::new(format, self.batcher.cap()),
        };
        // When a pending multiline event has waited its timeout for another line.
        let mut pending_until: Option<tokio::time::Instant> = None;
        let file_path_json = input.path.as_deref().map(|p| json_string(&absolute(p)));
        let mut buf = vec![0u8; READ_CHUNK];
        let mut rows = RowBuf::with_capacity(READ_CHUNK * 2);
        let mut time_read = rfc3339_utc(jiff::Timestamp::now());
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let n = tokio::select! {
                biased;
                _ = stop.stopped() => return Ok(false),
                // `None`: emit the pending multiline event.
                _ = sleep_until(pending_until) => None,
                _ = sleep_until(deadline) => {
                    deadline = None;
                    if let Some(b) = self.batcher.flush() {
                        if tx.send(b).await.is_err() {
                            return Ok(false);
                        }
                    }
                    continue;
                }
                r = reader.read(&mut buf) => Some(r.map_err(|e| format!("reading {} failed: {e}", input.name))?),
            };
            if n != Some(0) {
                time_read.clear();
                crate::transform::time::format_rfc3339_utc(jiff::Timestamp::now(), &mut time_read);
            }
            let counts = {
                let mut sink = RowSink {
                    encoder: &self.encoder,
                    deadletter: &self.deadletter,
                    name: &input.name,
                    source,
                    file_path_json: file_path_json.as_deref(),
                    time_read: &time_read,
                    out: &mut rows,
                    counts: SinkCounts::default(),
                };
                match n {
                    Some(n) => sink.decode(&mut decoder, &buf[..n]),
                    None => decoder.flush_pending(&mut |rec| sink.record(rec, 0)),
                }
                sink.counts
            };
            let parsed = decoder.take_parse_counts();
            Stats::add(&self.stats.parse_failures, parsed.mismatched);
            Stats::add(&self.stats.multiline_cut, parsed.cut);
            Stats::add(&self.stats.fields_truncated, parsed.truncated);
            pending_until = decoder
                .pending_timeout()
                .map(|t| tokio::time::Instant::now() + t);
            let ready = self.pack(&rows, &input.name);
            rows.clear();
            self.count(&counts);
            let sealed_any = !ready.is_empty();
            for b in ready {
                if tx.send(b).await.is_err() {
                    return Ok(false);
                }
            }
            if n == Some(0) {
                return Ok(true);
            }
            if self.batcher.pending() == 0 {
                deadline = None;
            } else if deadline.is_none() || sealed_any {
                deadline = Some(tokio::time::Instant::now() + self.batch_timeout);
            }
        }
    }

    fn count(&self, c: &SinkCounts) {
        Stats::add(&self.stats.rows_read, c.read);
        Stats::add(&self.stats.rows_rejected, c.rejected);
        Stats::add(&self.stats.fields_truncated, c.notes.truncated_fields);
        Stats::add(&self.stats.time_unparsable, c.notes.time_unparsable);
        Stats::add(&self.stats.values_uncoercible, c.notes.uncoercible);
        Stats::add(&self.stats.fields_undeclared, c.notes.undeclared);
        Stats::add(&self.stats.time_out_of_range, c.notes.time_out_of_range);
    }

    /// Packs rows into the open batch; returns the batches that filled up.
    fn pack(&mut self, rows: &RowBuf, name: &str) -> Vec<RawBatch> {
        let mut ready = Vec::new();
        for (row, origin) in rows.rows() {
            if self.dry_run && !self.first_row_shown {
                self.first_row_shown = true;
                tracing::info!(row = %String::from_utf8_lossy(row), "first row (dry run)");
            }
            match self.batcher.push(row, origin) {
                Pushed::Added => {}
                Pushed::Full(b) => ready.push(b),
                Pushed::TooLarge { row_bytes, cap } => {
                    Stats::add(&self.stats.rows_rejected, 1);
                    let reason = format!(
                        "row is {row_bytes} bytes as JSON; one request holds at most {cap} bytes"
                    );
                    self.deadletter
                        .write(name, origin.line, &reason, Refused::Row(row));
                }
            }
        }
        ready
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The `FilePath` column: the absolute path, so rows from two hosts' relative paths differ.
fn absolute(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// The progress bar on stderr, redrawn from the counters.
struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn start(on: bool, stats: Arc<Stats>) -> Self {
        if !on {
            return Progress {
                task: None,
                bar: None,
            };
        }
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
        {
            bar.set_style(style);
        }
        let b = bar.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let s = stats.summary(Duration::ZERO);
                b.set_message(format!(
                    "{} read, {} sent, {} rejected, {}, {}",
                    counted(s.rows_read, "row", "rows"),
                    s.rows_sent,
                    s.rows_rejected,
                    counted(s.requests, "request", "requests"),
                    counted(s.retries, "retry", "retries")
                ));
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
            b.finish_and_clear();
        }
    }
}
