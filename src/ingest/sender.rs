//! Runs the delivery policy for one output (one DCR stream).
//!
//! Every sender task of an output shares one [`Sender`]: so the 403 grace window is measured once
//! for the DCR (from the first 403 until a success), and the retry timeout likewise counts how
//! long the DCR has been failing, not one request. Before each POST the sender passes its DCR's
//! [`DcrGate`]: the per-DCR rate limits and the `Retry-After` pause, which are shared by every
//! output sending to the DCR when the senders are given one gate ([`Sender::with_gate`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::BackoffBuilder;
use bytes::Bytes;
use tokio::time::Instant;

use super::classify::{classify, Action};
use super::client::Transport;
use super::limits::{DcrGate, DcrLimits};
use crate::auth::TokenCache;
use crate::batch::{seal, Gzip, RawBatch, SealedBatch};
use crate::duration::format_duration;
use crate::exit::ExitCode;

/// Limits of the policy, from flags or `[outputs.NAME]`.
#[derive(Debug, Clone)]
pub struct Policy {
    /// How long 403/404 keep being retried (RBAC grants take up to an hour).
    pub permission_grace: Duration,
    /// How long transient failures (5xx, 408/429, network) keep being retried; `None` = forever.
    pub retry_timeout: Option<Duration>,
    /// The byte cap of a body, raw and gzip, used when a batch is split.
    pub max_request_bytes: usize,
    /// First and longest wait between retries of transient failures.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// First and longest wait between retries of 403/404.
    pub permission_backoff_min: Duration,
    pub permission_backoff_max: Duration,
    /// How often the "grant the role" message is repeated while 403s go on.
    pub permission_log_every: Duration,
    /// The agent's mode: nothing is fatal. Past the grace window 403s keep being retried (at
    /// the slowest pace, logged as errors), and a token that cannot be had is retried too; the
    /// rows wait, and `/health` says why.
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
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            permission_backoff_min: Duration::from_secs(2),
            permission_backoff_max: Duration::from_secs(60),
            permission_log_every: Duration::from_secs(60),
            retry_forever: false,
            limits: DcrLimits::default(),
        }
    }
}

/// Why a retry happened (the `reason` label of `dcrship_retries_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    Throttled,
    ServerError,
    Network,
    Permission,
    Unauthorized,
}

impl RetryReason {
    pub fn label(self) -> &'static str {
        match self {
            RetryReason::Throttled => "throttled",
            RetryReason::ServerError => "server_error",
            RetryReason::Network => "network",
            RetryReason::Permission => "permission",
            RetryReason::Unauthorized => "unauthorized",
        }
    }
}

/// Where the sender reports what became of rows and requests.
pub trait DeliveryReport: Send + Sync {
    /// The service accepted these rows (HTTP 2xx).
    fn accepted(&self, batch: &RawBatch, gzip_bytes: usize);
    /// These rows will never be sent; `reason` says why.
    fn rejected(&self, batch: &RawBatch, reason: &str);
    /// A request got this status, or no answer (`None`).
    fn request(&self, status: Option<u16>);
    fn retry(&self, reason: RetryReason);
}

/// A failure that stops delivery to this output: no later batch can do better.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    #[error("{0}")]
    NoToken(String),
    #[error("{0}")]
    Permission(String),
    #[error("{0}")]
    Transient(String),
}

impl Fatal {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Fatal::NoToken(_) => ExitCode::NoToken,
            Fatal::Permission(_) => ExitCode::Permission,
            Fatal::Transient(_) => ExitCode::Transient,
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    permission_since: Option<Instant>,
    failing_since: Option<Instant>,
    last_permission_log: Option<Instant>,
}

/// Delivers batches to one DCR stream under the policy.
pub struct Sender {
    transport: Arc<dyn Transport>,
    tokens: Arc<TokenCache>,
    policy: Policy,
    dcr: String,
    report: Arc<dyn DeliveryReport>,
    shared: Mutex<Shared>,
    gate: Arc<DcrGate>,
}

/// What one batch came to after its attempts.
enum Outcome {
    Accepted,
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
        dcr: impl Into<String>,
        report: Arc<dyn DeliveryReport>,
    ) -> Self {
        let dcr = dcr.into();
        let gate = Arc::new(DcrGate::new(&dcr, policy.limits));
        Sender {
            transport,
            tokens,
            policy,
            dcr,
            report,
            shared: Mutex::new(Shared::default()),
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

    /// Delivers a batch: every row ends accepted or reported rejected, unless a [`Fatal`]
    /// failure stops the output first (then the rows not accepted are neither).
    pub async fn deliver(&self, batch: SealedBatch, gz: &mut Gzip) -> Result<(), Fatal> {
        let mut todo = vec![batch];
        while let Some(b) = todo.pop() {
            match self.attempt(&b).await? {
                Outcome::Accepted => self.report.accepted(&b.raw, b.gzip.len()),
                Outcome::RejectAll(reason) => self.report.rejected(&b.raw, &reason),
                Outcome::Split(reason) if b.raw.len() <= 1 => self.report.rejected(&b.raw, &reason),
                Outcome::Split(_) => {
                    let (a, c) = b.raw.halves();
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
        Ok(())
    }

    async fn attempt(&self, b: &SealedBatch) -> Result<Outcome, Fatal> {
        let body = Bytes::from(b.gzip.clone());
        // The service counts bytes both compressed and not: the larger is what counts.
        let counted = b.raw.body().len().max(b.gzip.len());
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
        loop {
            // Every attempt, retries too, is a request the service counts.
            self.gate.admit(counted).await;
            let token = match self.tokens.token().await {
                Ok(t) => t,
                Err(e) if self.policy.retry_forever => {
                    let wait = next(&mut backoff, &self.policy);
                    tracing::warn!(error = %e, retry_in = %format_duration(wait), "no access token; retrying");
                    self.report.retry(RetryReason::Unauthorized);
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(e) => return Err(Fatal::NoToken(format!("no access token: {e}"))),
            };
            let request_id = uuid::Uuid::new_v4().to_string();
            let answer = self
                .transport
                .post(token.expose(), body.clone(), &request_id)
                .await;
            let action = match answer {
                Ok(a) => {
                    self.report.request(Some(a.status));
                    classify(&a, jiff::Timestamp::now())
                }
                Err(e) => {
                    self.report.request(None);
                    tracing::debug!(request_id, error = %e, "request got no answer");
                    Action::Transient {
                        reason: e.0,
                        retry_after: None,
                    }
                }
            };
            let now = Instant::now();
            match action {
                Action::Accepted => {
                    self.healthy();
                    return Ok(Outcome::Accepted);
                }
                Action::Bisect { reason } => {
                    self.healthy();
                    tracing::debug!(rows = b.raw.len(), %reason, "service refused the batch; splitting it to find the rows");
                    return Ok(Outcome::Split(reason));
                }
                Action::TooLarge => {
                    return Ok(Outcome::Split(
                        "HTTP 413: the service says the request is too large".into(),
                    ))
                }
                Action::RejectAll { reason } => return Ok(Outcome::RejectAll(reason)),
                Action::RefreshToken { reason } => {
                    unauthorized += 1;
                    if unauthorized > 2 {
                        let msg = format!(
                            "the ingestion endpoint refused a fresh token ({reason}); check --cloud (the token audience must match the endpoint's cloud) and that the endpoint URL is right"
                        );
                        if !self.policy.retry_forever {
                            return Err(Fatal::NoToken(msg));
                        }
                        tracing::error!("{msg}");
                        unauthorized = 0;
                        tokio::time::sleep(self.policy.permission_backoff_max).await;
                    }
                    self.tokens.invalidate_if(&token);
                    self.report.retry(RetryReason::Unauthorized);
                }
                Action::Permission { status, reason } => {
                    let wait = self.permission_wait(now, status, &reason)?;
                    self.report.retry(RetryReason::Permission);
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
                    let wait = self.failing(now, wait, asked, "throttled: HTTP 408/429/503")?;
                    if retry_after.is_some() {
                        self.gate.pause_until(now + wait);
                    }
                    self.report.retry(RetryReason::Throttled);
                    tracing::debug!(wait = %format_duration(wait), "throttled; waiting");
                    tokio::time::sleep(wait).await;
                }
                Action::Transient {
                    reason,
                    retry_after,
                } => {
                    let network = !reason.starts_with("HTTP ");
                    let asked = retry_after.is_some();
                    let wait = retry_after.unwrap_or_else(|| next(&mut backoff, &self.policy));
                    let wait = self.failing(now, wait, asked, &reason)?;
                    self.report.retry(if network {
                        RetryReason::Network
                    } else {
                        RetryReason::ServerError
                    });
                    tracing::debug!(%reason, wait = %format_duration(wait), "transient failure; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// A success: the DCR is reachable and permitted.
    fn healthy(&self) {
        let mut s = self.shared();
        if s.permission_since.take().is_some() {
            tracing::info!(dcr = %self.dcr, "permission granted: the DCR accepts data now");
        }
        s.failing_since = None;
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
    ) -> Result<Duration, Fatal> {
        let since = *self.shared().failing_since.get_or_insert(now);
        let Some(limit) = self.policy.retry_timeout else {
            return Ok(wait);
        };
        let elapsed = now.duration_since(since);
        if elapsed >= limit || (server_asked && elapsed + wait > limit) {
            return Err(Fatal::Transient(format!(
                "gave up after {} of failures ({reason}); check the network path to the endpoint and its health, or raise --retry-timeout",
                format_duration(elapsed)
            )));
        }
        Ok(wait.min(limit - elapsed))
    }

    /// Records a 403/404; fails past the grace window; says once a minute what to fix.
    fn permission_wait(&self, now: Instant, status: u16, reason: &str) -> Result<Duration, Fatal> {
        let principal = self
            .tokens
            .principal_id()
            .unwrap_or_else(|| "<unknown: the token has no oid claim>".into());
        let mut s = self.shared();
        let since = *s.permission_since.get_or_insert(now);
        let elapsed = now.duration_since(since);
        let fix = if status == 404 {
            format!(
                "check the endpoint, the DCR immutable id ({}) and the stream name: the service says they do not exist (a new DCR can take a few minutes to appear)",
                self.dcr
            )
        } else {
            format!(
                "grant the \"Monitoring Metrics Publisher\" role on DCR {} to principal {principal} (grants take up to an hour to apply)",
                self.dcr
            )
        };
        let grace = self.policy.permission_grace;
        if elapsed >= grace {
            let msg = format!(
                "HTTP {status} for {}: {fix}. Last answer: {reason}",
                format_duration(elapsed)
            );
            if !self.policy.retry_forever {
                return Err(Fatal::Permission(msg));
            }
            let due = s
                .last_permission_log
                .is_none_or(|t| now.duration_since(t) >= self.policy.permission_log_every);
            if due {
                s.last_permission_log = Some(now);
                tracing::error!(dcr = %self.dcr, principal = %principal, "{msg}; still retrying");
            }
            return Ok(self.policy.permission_backoff_max);
        }
        let due = s
            .last_permission_log
            .is_none_or(|t| now.duration_since(t) >= self.policy.permission_log_every);
        if due {
            s.last_permission_log = Some(now);
            tracing::warn!(
                status,
                dcr = %self.dcr,
                principal = %principal,
                retrying_for = %format_duration(grace - elapsed),
                "{fix}"
            );
        }
        Ok(grace - elapsed)
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

#[cfg(test)]
mod tests;
