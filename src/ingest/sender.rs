//! Runs the delivery policy for one output (one DCR stream).
//!
//! Every sender task of an output shares one [`Sender`]: so the 403 grace window is measured once
//! for the DCR (from the first 403 until a success), and the retry timeout likewise counts how
//! long the DCR has been failing, not one request. Before each POST the sender passes its DCR's
//! [`DcrGate`]: the per-DCR rate limits and the `Retry-After` pause, which are shared by every
//! output sending to the DCR when the senders are given one gate ([`Sender::with_gate`]).
//!
//! Every try of one request carries the same `x-ms-client-request-id` (as azure-core does), and
//! every failure is told to the output's [`Episode`], which decides when to log: one WARN when
//! delivery starts failing, then once a minute, then once at recovery. Refused rows carry both
//! request ids in their dead-letter reason, for a support ticket.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::BackoffBuilder;
use bytes::Bytes;
use tokio::time::Instant;

use super::classify::{classify, error_code, Action};
use super::client::{Transport, TransportErrorKind};
use super::diagnosis;
use super::episode::{Episode, Note};
use super::limits::{DcrGate, DcrLimits};
use crate::auth::TokenCache;
use crate::batch::{gzip_raw_size, seal, Gzip, RawBatch, SealedBatch};
use crate::duration::format_duration;
use crate::exit::ExitCode;
use crate::secret::Secret;

/// A request that timed out is tried again with twice the time, up to this many times the
/// configured `request_timeout`: a slow endpoint then gets each request about twice, not once
/// per timeout for as long as it stays slow.
pub const MAX_TIMEOUT_GROWTH: u32 = 4;

/// Limits of the policy, from flags or `[outputs.NAME]`.
#[derive(Debug, Clone)]
pub struct Policy {
    /// How long 403/404 keep being retried (RBAC grants take up to an hour).
    pub permission_grace: Duration,
    /// How long transient failures (5xx, 408/429, network) keep being retried; `None` = forever.
    pub retry_timeout: Option<Duration>,
    /// The byte cap of a body, raw and gzip, used when a batch is split.
    pub max_request_bytes: usize,
    /// How long one request may take, from connecting to the end of the answer. After a
    /// timeout the next try of that request waits twice as long (up to
    /// [`MAX_TIMEOUT_GROWTH`] times this); a quick answer brings it back.
    pub request_timeout: Duration,
    /// First and longest wait between retries of transient failures.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// First and longest wait between retries of 403/404 and of a misconfigured stream.
    pub permission_backoff_min: Duration,
    pub permission_backoff_max: Duration,
    /// How often an ongoing failure (and what to fix) is logged again.
    pub failure_log_every: Duration,
    /// The agent's mode: nothing is fatal. Past the grace window 403s keep being retried (at
    /// the slowest pace, logged as errors), a stream the DCR does not declare is retried too,
    /// and so is a token that cannot be had; the rows wait, and `/health` says why.
    pub retry_forever: bool,
    /// Requests and bytes a minute to the DCR, for the sender's own gate (see [`Sender::new`]).
    pub limits: DcrLimits,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            permission_grace: Duration::from_secs(3600),
            retry_timeout: Some(Duration::from_secs(600)),
            max_request_bytes: 1_000_000,
            request_timeout: Duration::from_secs(60),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            permission_backoff_min: Duration::from_secs(2),
            permission_backoff_max: Duration::from_secs(60),
            failure_log_every: Duration::from_secs(60),
            retry_forever: false,
            limits: DcrLimits::default(),
        }
    }
}

/// Where a sender delivers: for its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub dcr: String,
    pub stream: String,
    /// The endpoint's host (`my-dce-ab12.eastus-1.ingest.monitor.azure.com`).
    pub host: String,
}

impl Target {
    pub fn new(dcr: impl Into<String>, stream: impl Into<String>, host: impl Into<String>) -> Self {
        Target {
            dcr: dcr.into(),
            stream: stream.into(),
            host: host.into(),
        }
    }
}

/// Why a retry happened (the `reason` label of `dcrship_retries_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    Throttled,
    ServerError,
    Network,
    /// No answer within the request timeout.
    Timeout,
    Permission,
    /// A 400 about the request as a whole (a stream the DCR does not declare, …).
    Misconfigured,
    Unauthorized,
}

impl RetryReason {
    pub const ALL: [RetryReason; 7] = [
        RetryReason::Throttled,
        RetryReason::ServerError,
        RetryReason::Network,
        RetryReason::Timeout,
        RetryReason::Permission,
        RetryReason::Misconfigured,
        RetryReason::Unauthorized,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RetryReason::Throttled => "throttled",
            RetryReason::ServerError => "server_error",
            RetryReason::Network => "network",
            RetryReason::Timeout => "timeout",
            RetryReason::Permission => "permission",
            RetryReason::Misconfigured => "misconfigured",
            RetryReason::Unauthorized => "unauthorized",
        }
    }
}

/// Where the sender reports what became of rows and requests.
pub trait DeliveryReport: Send + Sync {
    /// The service accepted this batch (HTTP 2xx).
    fn accepted(&self, batch: &SealedBatch);
    /// The service accepted a body read back from the spool, sent as it was stored: `rows`
    /// rows of `raw_bytes` (its rows were never cut out of it, so only their count is known).
    fn accepted_spooled(&self, rows: usize, raw_bytes: usize, gzip_bytes: usize);
    /// These rows will never be sent; `reason` says why.
    fn rejected(&self, batch: &RawBatch, reason: &str);
    /// A refused body whose rows cannot be cut out of it again (`reason`): its `rows` rows are
    /// lost. A spooled body damaged on disk; for a batch sealed in this process, a bug.
    fn unreadable(&self, rows: usize, reason: &str);
    /// A request got this status, or no answer (`None`), after `took`.
    fn request(&self, status: Option<u16>, took: Duration);
    /// A request will be tried again; `detail` says what failed and what to fix (no secrets).
    fn retry(&self, reason: RetryReason, detail: &str);
    /// What waits to be delivered ("1.2 GB in the spool"), for the messages of a long outage.
    fn backlog(&self) -> Option<String> {
        None
    }
}

/// A failure that stops delivery to this output: no later batch can do better.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    #[error("{0}")]
    NoToken(String),
    #[error("{0}")]
    Permission(String),
    /// The service says the request as a whole is wrong (a stream the DCR does not declare).
    #[error("{0}")]
    Misconfigured(String),
    #[error("{0}")]
    Transient(String),
}

impl Fatal {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Fatal::NoToken(_) => ExitCode::NoToken,
            Fatal::Permission(_) | Fatal::Misconfigured(_) => ExitCode::Permission,
            Fatal::Transient(_) => ExitCode::Transient,
        }
    }
}

#[derive(Debug)]
struct Shared {
    permission_since: Option<Instant>,
    failing_since: Option<Instant>,
    episode: Episode,
    /// The request timeout now: the policy's, or longer after timeouts.
    timeout: Duration,
    /// When the last request went out (or the sender was made): an idle output is probed.
    last_request: Instant,
}

/// The ids of one answered (or unanswered) request, for logs and dead-letter reasons.
#[derive(Debug, Clone)]
struct Ids {
    /// `x-ms-client-request-id`: ours, the same for every try of a request.
    client: String,
    /// `x-ms-request-id`: the service's, one per try.
    service: Option<String>,
    /// `x-ms-error-code` (or the body's `error.code`).
    code: Option<String>,
}

impl Ids {
    fn unanswered(client: &str) -> Self {
        Ids {
            client: client.to_string(),
            service: None,
            code: None,
        }
    }

    /// ` (x-ms-request-id: …, x-ms-client-request-id: …)` for a reason.
    fn suffix(&self) -> String {
        match &self.service {
            Some(s) => format!(
                " (x-ms-request-id: {s}, x-ms-client-request-id: {})",
                self.client
            ),
            None => format!(" (x-ms-client-request-id: {})", self.client),
        }
    }
}

/// One failed try, as the failure episode logs it.
struct Failure<'a> {
    /// What happened ("HTTP 503: …", "could not connect: …").
    cause: &'a str,
    /// What to do about it, when we know.
    fix: Option<&'a str>,
    /// The service asked us to wait: not reported until it lasts.
    throttled: bool,
    /// Log at ERROR: past the grace window, nothing will change by itself.
    serious: bool,
    ids: &'a Ids,
}

/// Delivers batches to one DCR stream under the policy.
pub struct Sender {
    transport: Arc<dyn Transport>,
    tokens: Arc<TokenCache>,
    policy: Policy,
    target: Target,
    report: Arc<dyn DeliveryReport>,
    shared: Mutex<Shared>,
    gate: Arc<DcrGate>,
}

/// What a request puts on the wire, and what the service counts of it.
#[derive(Clone, Copy)]
struct Wire<'a> {
    gzip: &'a [u8],
    rows: usize,
    /// The body's size before gzip.
    raw_bytes: usize,
}

impl<'a> Wire<'a> {
    fn of(b: &'a SealedBatch) -> Self {
        Wire {
            gzip: &b.gzip,
            rows: b.len(),
            raw_bytes: b.raw_len(),
        }
    }
}

/// What one batch came to after its attempts.
enum Outcome {
    Accepted,
    Refused(Refusal),
}

/// Why the service will not take a batch as it is.
enum Refusal {
    /// 400 or 413: split it (a single row is refused with the reason).
    Split(String),
    RejectAll(String),
}

impl Sender {
    /// A sender with a gate of its own, built from `policy.limits`: right when it is the only
    /// sender to its DCR (`send`); the agent gives senders of one DCR one gate instead.
    pub fn new(
        transport: Arc<dyn Transport>,
        tokens: Arc<TokenCache>,
        policy: Policy,
        target: Target,
        report: Arc<dyn DeliveryReport>,
    ) -> Self {
        let gate = Arc::new(DcrGate::new(&target.dcr, policy.limits));
        let shared = Shared {
            permission_since: None,
            failing_since: None,
            episode: Episode::new(policy.failure_log_every),
            timeout: policy.request_timeout,
            last_request: Instant::now(),
        };
        Sender {
            transport,
            tokens,
            policy,
            target,
            report,
            shared: Mutex::new(shared),
            gate,
        }
    }

    /// Uses `gate` for the rate limits and `Retry-After` pauses, shared with the other senders
    /// to the same DCR.
    pub fn with_gate(mut self, gate: Arc<DcrGate>) -> Self {
        self.gate = gate;
        self
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A panic while holding this lock leaves plain data behind; keep using it.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request goes out now: notes the time, returns the request timeout to use.
    fn sending(&self) -> Duration {
        let mut s = self.shared();
        s.last_request = Instant::now();
        s.timeout
    }

    /// When the last request of this sender went out (when it was made, before the first).
    pub fn last_request(&self) -> Instant {
        self.shared().last_request
    }

    /// Delivers a batch: every row ends accepted or reported rejected, unless a [`Fatal`]
    /// failure stops the output first (then the rows not accepted are neither).
    pub async fn deliver(&self, batch: SealedBatch, gz: &mut Gzip) -> Result<(), Fatal> {
        self.deliver_all(vec![batch], true, gz).await
    }

    /// Delivers a body read back from the spool (`rows` rows) as it is stored. The rows are cut
    /// out of it (`unseal`: gunzip, split) only when the service does not take it whole — to
    /// bisect, split or dead-letter them — so an accepted body costs no decompression; a body
    /// that turns out unreadable is reported so, with `unseal`'s reason.
    pub async fn deliver_spooled<F, U>(
        &self,
        gzip: Vec<u8>,
        rows: usize,
        gz: &mut Gzip,
        unseal: U,
    ) -> Result<(), Fatal>
    where
        U: FnOnce(Vec<u8>) -> F,
        F: std::future::Future<Output = Result<RawBatch, String>>,
    {
        let raw_bytes = gzip_raw_size(&gzip);
        let wire = Wire {
            gzip: &gzip,
            rows,
            raw_bytes,
        };
        let Outcome::Refused(why) = self.attempt(wire, true).await? else {
            self.report.accepted_spooled(rows, raw_bytes, gzip.len());
            return Ok(());
        };
        let mut todo = Vec::new();
        match unseal(gzip).await {
            Ok(raw) => self.refused(raw, why, gz, &mut todo),
            Err(e) => self.report.unreadable(rows, &e),
        }
        self.deliver_all(todo, false, gz).await
    }

    /// Delivers `todo`, last first. `whole`: the last is a batch as handed in, whose 400 is
    /// checked with an empty request; the halves of a refused batch are known to be about rows.
    async fn deliver_all(
        &self,
        mut todo: Vec<SealedBatch>,
        mut whole: bool,
        gz: &mut Gzip,
    ) -> Result<(), Fatal> {
        while let Some(b) = todo.pop() {
            let whole = std::mem::take(&mut whole);
            let Outcome::Refused(why) = self.attempt(Wire::of(&b), whole).await? else {
                self.report.accepted(&b);
                continue;
            };
            match b.unseal() {
                Ok(raw) => self.refused(raw, why, gz, &mut todo),
                Err(e) => self.report.unreadable(b.len(), &e),
            }
        }
        Ok(())
    }

    /// The rows of a batch the service refused: rejected, or split in halves pushed onto
    /// `todo` (bisecting a 400 down to its bad rows).
    fn refused(&self, raw: RawBatch, why: Refusal, gz: &mut Gzip, todo: &mut Vec<SealedBatch>) {
        match why {
            Refusal::RejectAll(reason) => self.report.rejected(&raw, &reason),
            Refusal::Split(reason) if raw.len() <= 1 => self.report.rejected(&raw, &reason),
            Refusal::Split(_) => {
                let (a, c) = raw.halves();
                // Second half first onto the stack, so the first half goes out first.
                for half in [c, a] {
                    let sealed = seal(half, self.policy.max_request_bytes, gz);
                    for big in sealed.oversize {
                        self.report
                            .rejected(&big, "row is over the request cap even gzipped");
                    }
                    todo.extend(sealed.batches.into_iter().rev());
                }
            }
        }
    }

    /// `whole`: the batch as handed to [`Sender::deliver`], not a half of it.
    async fn attempt(&self, b: Wire<'_>, whole: bool) -> Result<Outcome, Fatal> {
        let body = Bytes::copy_from_slice(b.gzip);
        // The service counts bytes both compressed and not: the larger is what counts.
        let counted = b.raw_bytes.max(b.gzip.len());
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(self.policy.backoff_min)
            .with_max_delay(self.policy.backoff_max)
            .without_max_times()
            .build();
        let mut permission_backoff = backon::ExponentialBuilder::default()
            .with_min_delay(self.policy.permission_backoff_min)
            .with_max_delay(self.policy.permission_backoff_max)
            .without_max_times()
            .build();
        let mut unauthorized = 0u32;
        // One id for every try of this request, so the service's logs show them as one.
        let client_request_id = uuid::Uuid::new_v4().to_string();
        // A 400 for one row is about that row; for more, an empty request tells.
        let can_probe = whole && b.rows > 1;
        let mut probed = !can_probe;
        loop {
            // Every attempt, retries too, is a request the service counts.
            self.gate.admit(counted).await;
            let token = match self.tokens.token().await {
                Ok(t) => t,
                Err(e) if self.policy.retry_forever => {
                    let wait = next(&mut backoff, &self.policy);
                    let cause = format!("no access token: {e}");
                    let ids = Ids::unanswered(&client_request_id);
                    self.note_failure(Instant::now(), &self.failure(&cause, None, &ids));
                    self.report.retry(RetryReason::Unauthorized, &cause);
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(e) => return Err(Fatal::NoToken(format!("no access token: {e}"))),
            };
            let timeout = self.sending();
            let sent_at = Instant::now();
            let answer = self
                .transport
                .post(token.expose(), body.clone(), &client_request_id, timeout)
                .await;
            let now = Instant::now();
            let took = now.duration_since(sent_at);
            let mut unanswered = None;
            // What the service said, for the messages of answers whose action carries no text.
            let mut said = None;
            let (action, ids) = match answer {
                Ok(a) => {
                    self.report.request(Some(a.status), took);
                    if !(200..300).contains(&a.status) {
                        said = Some(super::classify::service_reason(&a));
                    }
                    let ids = Ids {
                        client: client_request_id.clone(),
                        service: a.request_id.clone(),
                        code: error_code(&a),
                    };
                    (classify(&a, jiff::Timestamp::now()), ids)
                }
                Err(e) => {
                    self.report.request(None, took);
                    if e.is_timeout() {
                        self.timed_out(&client_request_id, timeout);
                    }
                    unanswered = Some(e.kind);
                    let action = Action::Transient {
                        reason: e.message,
                        retry_after: None,
                    };
                    (action, Ids::unanswered(&client_request_id))
                }
            };
            if !matches!(action, Action::Accepted) {
                tracing::debug!(
                    client_request_id = %ids.client,
                    request_id = ids.service.as_deref().unwrap_or("-"),
                    error_code = ids.code.as_deref().unwrap_or("-"),
                    "request failed: {action:?}"
                );
            }
            let action = match action {
                Action::Bisect { reason } if !probed => {
                    probed = true;
                    self.about_the_request(&token, &reason, &ids).await
                }
                other => other,
            };
            match action {
                Action::Accepted => {
                    self.accepted(now, took);
                    return Ok(Outcome::Accepted);
                }
                Action::Bisect { reason } => {
                    self.healthy();
                    tracing::debug!(rows = b.rows, %reason, "service refused the batch; splitting it to find the rows");
                    return Ok(Outcome::Refused(Refusal::Split(format!(
                        "{reason}{}",
                        ids.suffix()
                    ))));
                }
                Action::TooLarge => {
                    return Ok(Outcome::Refused(Refusal::Split(format!(
                        "HTTP 413: the service says the request is too large{}",
                        ids.suffix()
                    ))))
                }
                Action::RejectAll { reason } => {
                    return Ok(Outcome::Refused(Refusal::RejectAll(format!(
                        "{reason}{}",
                        ids.suffix()
                    ))));
                }
                Action::Misconfigured { code, reason } => {
                    let fix = diagnosis::request_fix(
                        &code,
                        &self.target.dcr,
                        &self.target.stream,
                        &self.target.host,
                    );
                    let msg = format!("{reason}{}: {fix}", ids.suffix());
                    if !self.policy.retry_forever {
                        return Err(Fatal::Misconfigured(msg));
                    }
                    // Once fixed, a 400 may be about the rows again: ask again then.
                    probed = !can_probe;
                    self.note_failure(now, &self.failure(&reason, Some(&fix), &ids));
                    self.report.retry(RetryReason::Misconfigured, &msg);
                    let wait = permission_backoff
                        .next()
                        .unwrap_or(self.policy.permission_backoff_max);
                    tokio::time::sleep(wait).await;
                }
                Action::RefreshToken { reason } => {
                    unauthorized += 1;
                    if unauthorized > 2 {
                        let fix = self.unauthorized_fix(&token);
                        let msg = format!(
                            "the ingestion endpoint refused a fresh token ({reason}{}); {fix}",
                            ids.suffix()
                        );
                        if !self.policy.retry_forever {
                            return Err(Fatal::NoToken(msg));
                        }
                        let f = Failure {
                            serious: true,
                            ..self.failure(&reason, Some(&fix), &ids)
                        };
                        self.note_failure(now, &f);
                        self.report.retry(RetryReason::Unauthorized, &msg);
                        unauthorized = 0;
                        tokio::time::sleep(self.policy.permission_backoff_max).await;
                    } else {
                        self.report.retry(RetryReason::Unauthorized, &reason);
                    }
                    self.tokens.invalidate_if(&token);
                }
                Action::Permission { status, reason } => {
                    let (wait, fix, past_grace) =
                        self.permission_wait(now, status, &reason, &ids)?;
                    let f = Failure {
                        serious: past_grace,
                        ..self.failure(&reason, Some(&fix), &ids)
                    };
                    self.note_failure(now, &f);
                    self.report.retry(
                        RetryReason::Permission,
                        &format!("{reason}{}: {fix}", ids.suffix()),
                    );
                    let wait = wait.min(
                        permission_backoff
                            .next()
                            .unwrap_or(self.policy.permission_backoff_max),
                    );
                    tokio::time::sleep(wait).await;
                }
                Action::Throttled { retry_after } => {
                    let asked = retry_after.is_some();
                    let wait = retry_after.unwrap_or_else(|| next(&mut backoff, &self.policy));
                    let cause = format!(
                        "throttled: {}",
                        said.as_deref().unwrap_or("HTTP 408/429/503")
                    );
                    let cause = cause.as_str();
                    let wait = self.failing(now, wait, asked, cause, &ids)?;
                    if retry_after.is_some() {
                        self.gate.pause_until(now + wait);
                    }
                    let f = Failure {
                        throttled: true,
                        ..self.failure(cause, None, &ids)
                    };
                    self.note_failure(now, &f);
                    self.report
                        .retry(RetryReason::Throttled, &format!("{cause}{}", ids.suffix()));
                    tracing::debug!(wait = %format_duration(wait), "throttled; waiting");
                    tokio::time::sleep(wait).await;
                }
                Action::Transient {
                    reason,
                    retry_after,
                } => {
                    let asked = retry_after.is_some();
                    let wait = retry_after.unwrap_or_else(|| next(&mut backoff, &self.policy));
                    let wait = self.failing(now, wait, asked, &reason, &ids)?;
                    self.note_failure(now, &self.failure(&reason, None, &ids));
                    let why = match unanswered {
                        Some(TransportErrorKind::Timeout) => RetryReason::Timeout,
                        Some(_) => RetryReason::Network,
                        None => RetryReason::ServerError,
                    };
                    self.report.retry(why, &format!("{reason}{}", ids.suffix()));
                    tracing::debug!(%reason, wait = %format_duration(wait), "transient failure; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn failure<'a>(&self, cause: &'a str, fix: Option<&'a str>, ids: &'a Ids) -> Failure<'a> {
        Failure {
            cause,
            fix,
            throttled: false,
            serious: false,
            ids,
        }
    }

    /// A 400 whose code is not known to be about the request: POSTs `[]` once. If the service
    /// refuses even that with 400, the request as a whole is wrong and bisecting would only
    /// multiply the refusals (a 1 MB batch to a wrong stream: ~10,000 requests).
    async fn about_the_request(&self, token: &Secret, reason: &str, ids: &Ids) -> Action {
        let not_rows = || Action::Bisect {
            reason: reason.to_string(),
        };
        let empty = Bytes::from(Gzip::new(1).compress(b"[]"));
        self.gate.admit(empty.len()).await;
        let probe_id = uuid::Uuid::new_v4().to_string();
        let timeout = self.sending();
        let sent_at = Instant::now();
        let answer = self
            .transport
            .post(token.expose(), empty, &probe_id, timeout)
            .await;
        let took = sent_at.elapsed();
        match answer {
            Ok(a) => {
                self.report.request(Some(a.status), took);
                if a.status != 400 {
                    return not_rows();
                }
                let code = error_code(&a)
                    .or_else(|| ids.code.clone())
                    .unwrap_or_else(|| "HTTP 400".to_string());
                Action::Misconfigured {
                    code,
                    reason: format!(
                        "{reason} (an empty request gets 400 too, so the rows are not the cause)"
                    ),
                }
            }
            Err(_) => {
                self.report.request(None, took);
                not_rows()
            }
        }
    }

    /// A request got no answer in time: the next try of it (and of the output's other requests)
    /// waits longer, up to [`MAX_TIMEOUT_GROWTH`] times the setting.
    fn timed_out(&self, client_request_id: &str, timeout: Duration) {
        let cap = self.policy.request_timeout * MAX_TIMEOUT_GROWTH;
        let next = {
            let mut s = self.shared();
            s.timeout = s.timeout.max(timeout.saturating_mul(2).min(cap));
            s.timeout
        };
        tracing::warn!(
            client_request_id,
            dcr = %self.target.dcr,
            stream = %self.target.stream,
            timeout = %format_duration(timeout),
            next_timeout = %format_duration(next),
            "no answer within the request timeout; the service may have taken the request, so its rows may arrive twice. It is sent again (same x-ms-client-request-id) after a backoff, waiting up to {} for the answer (raise request_timeout / --request-timeout for a slow path)",
            format_duration(next)
        );
    }

    /// A request was accepted: the DCR is reachable and permitted.
    fn accepted(&self, now: Instant, took: Duration) {
        let note = {
            let mut s = self.shared();
            if s.permission_since.take().is_some() {
                tracing::info!(dcr = %self.target.dcr, "permission granted: the DCR accepts data now");
            }
            s.failing_since = None;
            // A quick answer: the path is fast again, so a hang is found in the usual time.
            if took < self.policy.request_timeout / 2 {
                s.timeout = self.policy.request_timeout;
            }
            s.episode.accepted(now)
        };
        if let Some(Note::Recovered { after, failures }) = note {
            tracing::info!(
                dcr = %self.target.dcr,
                stream = %self.target.stream,
                "delivery recovered: a request was accepted after {} of failures ({failures} failed requests)",
                format_duration(after)
            );
        }
    }

    /// An answer about rows (400): the service is reachable and permits us.
    fn healthy(&self) {
        let mut s = self.shared();
        if s.permission_since.take().is_some() {
            tracing::info!(dcr = %self.target.dcr, "permission granted: the DCR accepts data now");
        }
        s.failing_since = None;
    }

    /// Tells the failure episode; logs what it says is due.
    fn note_failure(&self, now: Instant, f: &Failure<'_>) {
        let note = self.shared().episode.failed(now, f.throttled);
        let fix = f.fix.map(|x| format!("; {x}")).unwrap_or_default();
        let text = match note {
            None => return,
            Some(Note::Started { for_ }) => {
                let since = if for_.is_zero() {
                    String::new()
                } else {
                    format!(" (for {})", format_duration(for_))
                };
                format!("delivery is failing{since}: {}{fix}; retrying", f.cause)
            }
            Some(Note::Ongoing { for_, failures }) => {
                let waiting = self
                    .report
                    .backlog()
                    .map(|b| format!("; {b}"))
                    .unwrap_or_default();
                format!(
                    "no request accepted for {}{waiting}; {failures} requests failed, the last: {}{fix}; still retrying",
                    format_duration(for_),
                    f.cause
                )
            }
            Some(Note::Recovered { .. }) => return,
        };
        let (request_id, error_code) = (
            f.ids.service.as_deref().unwrap_or("-"),
            f.ids.code.as_deref().unwrap_or("-"),
        );
        if f.serious {
            tracing::error!(dcr = %self.target.dcr, stream = %self.target.stream, client_request_id = %f.ids.client, request_id, error_code, "{text}");
        } else {
            tracing::warn!(dcr = %self.target.dcr, stream = %self.target.stream, client_request_id = %f.ids.client, request_id, error_code, "{text}");
        }
    }

    /// Records a transient failure; fails once the DCR has been failing for the retry timeout.
    /// Returns the wait to use, cut so the last try falls at the deadline — except that a wait
    /// the service asked for (`Retry-After`) is never cut: if it reaches past the deadline, give
    /// up now rather than send early.
    fn failing(
        &self,
        now: Instant,
        wait: Duration,
        server_asked: bool,
        reason: &str,
        ids: &Ids,
    ) -> Result<Duration, Fatal> {
        let since = *self.shared().failing_since.get_or_insert(now);
        let Some(limit) = self.policy.retry_timeout else {
            return Ok(wait);
        };
        let elapsed = now.duration_since(since);
        if elapsed >= limit || (server_asked && elapsed + wait > limit) {
            return Err(Fatal::Transient(format!(
                "gave up after {} of failures ({reason}{}); check the network path to the endpoint and its health, or raise --retry-timeout",
                format_duration(elapsed),
                ids.suffix()
            )));
        }
        Ok(wait.min(limit - elapsed))
    }

    /// What to do about a 401 that a fresh token did not cure: the token's audience against the
    /// endpoint's cloud, when that tells.
    fn unauthorized_fix(&self, token: &Secret) -> String {
        let aud = crate::auth::jwt::claim(token.expose(), "aud").and_then(|v| match v {
            serde_json::Value::String(s) => Some(s),
            _ => None,
        });
        match diagnosis::audience_mismatch(&self.target.host, aud.as_deref()) {
            Some(diagnosis::AudienceVerdict::Wrong(m) | diagnosis::AudienceVerdict::Doubtful(m)) => m,
            None => "check --cloud (the token audience must match the endpoint's cloud) and that the endpoint URL is right".to_string(),
        }
    }

    /// Records a 403/404; fails past the grace window. Returns the wait, what to fix, and
    /// whether the grace window is over.
    fn permission_wait(
        &self,
        now: Instant,
        status: u16,
        reason: &str,
        ids: &Ids,
    ) -> Result<(Duration, String, bool), Fatal> {
        let since = *self.shared().permission_since.get_or_insert(now);
        let elapsed = now.duration_since(since);
        let fix = self.permission_fix(status, reason);
        let grace = self.policy.permission_grace;
        if elapsed >= grace {
            if !self.policy.retry_forever {
                return Err(Fatal::Permission(format!(
                    "HTTP {status} for {}: {fix}. Last answer: {reason}{}",
                    format_duration(elapsed),
                    ids.suffix()
                )));
            }
            return Ok((self.policy.permission_backoff_max, fix, true));
        }
        Ok((grace - elapsed, fix, false))
    }
}

impl Sender {
    /// What to do about a 403 (the role, naming the principal and the DCR) or a 404.
    fn permission_fix(&self, status: u16, reason: &str) -> String {
        if status == 404 {
            return diagnosis::not_found_fix(&self.target.dcr, &self.target.host);
        }
        let principal = self
            .tokens
            .principal_id()
            .unwrap_or_else(|| "<unknown: the token has no oid claim>".into());
        diagnosis::forbidden_fix(
            &diagnosis::forbidden(reason),
            &self.target.dcr,
            &self.target.host,
            &principal,
        )
    }
}

/// The next backoff step with "equal jitter": a random wait between half the step and the
/// step, so senders that failed together do not retry together, and the cap holds.
fn next(backoff: &mut impl Iterator<Item = Duration>, policy: &Policy) -> Duration {
    let step = backoff.next().unwrap_or(policy.backoff_max);
    step / 2 + step.mul_f64(random_unit() / 2.0)
}

/// A random number in [0, 1) without a random-number crate: std's hasher keys are random.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

mod probe;
pub use probe::ProbeFailure;
#[cfg(test)]
mod tests;
