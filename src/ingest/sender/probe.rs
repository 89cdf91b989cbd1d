//! The probe of an idle output: an empty request (`POST []`, which the service answers 204
//! without ingesting anything, as Vector's healthcheck does) that tells whether rows sent now
//! would get through — the token, the network path, TLS, the role on the DCR, the stream.
//!
//! A probe goes through the DCR's gate and is counted like any request (and, by what it found,
//! in `dcrship_probes_total`); its failures go to the output's
//! failure episode, so a quiet host whose endpoint is unreachable logs it (once, then once a
//! minute) as a busy one would. When to probe is the pipeline's business.

use bytes::Bytes;
use tokio::time::Instant;

use super::super::classify::{classify, error_code, service_reason, Action};
use super::super::diagnosis;
use super::{Failure, Ids, RetryReason, Sender};
use crate::batch::Gzip;

/// What a probe found wrong: the kind of failure (as for a retry) and what the service or the
/// network said, with the request ids and what to fix when that is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFailure {
    pub reason: RetryReason,
    pub detail: String,
}

impl Sender {
    /// POSTs `[]` to the stream. `Ok` when the service accepts it.
    pub async fn probe(&self) -> Result<(), ProbeFailure> {
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let unanswered = Ids::unanswered(&client_request_id);
        let token = match self.tokens.token().await {
            Ok(t) => t,
            Err(e) => {
                let cause = format!("no access token: {e}");
                self.note_failure(Instant::now(), &self.failure(&cause, None, &unanswered));
                return Err(ProbeFailure {
                    reason: RetryReason::Unauthorized,
                    detail: cause,
                });
            }
        };
        let empty = Bytes::from(Gzip::new(1).compress(b"[]"));
        self.gate.admit(empty.len()).await;
        let timeout = self.sending();
        let sent_at = Instant::now();
        let answer = self
            .transport
            .post(token.expose(), empty, &client_request_id, timeout)
            .await;
        let now = Instant::now();
        let took = now.duration_since(sent_at);
        // A probe is a request the service counts (and its latency a clean round trip).
        self.report
            .request(answer.as_ref().ok().map(|a| a.status), took);
        let a = match answer {
            Ok(a) => a,
            Err(e) => {
                let reason = if e.is_timeout() {
                    RetryReason::Timeout
                } else {
                    RetryReason::Network
                };
                self.note_failure(now, &self.failure(&e.message, None, &unanswered));
                return Err(ProbeFailure {
                    reason,
                    detail: format!("{}{}", e.message, unanswered.suffix()),
                });
            }
        };
        let ids = Ids {
            client: client_request_id.clone(),
            service: a.request_id.clone(),
            code: error_code(&a),
        };
        let (reason, cause, fix) = match classify(&a, jiff::Timestamp::now()) {
            Action::Accepted => {
                self.accepted(now, took);
                return Ok(());
            }
            Action::Permission { status, reason } => {
                let fix = self.permission_fix(status, &reason);
                (RetryReason::Permission, reason, Some(fix))
            }
            // An empty request cannot hold a bad row: any 400 is about the request.
            Action::Bisect { reason } | Action::Misconfigured { reason, .. } => {
                let code = ids.code.clone().unwrap_or_else(|| "HTTP 400".into());
                let fix = diagnosis::request_fix(
                    &code,
                    &self.target.dcr,
                    &self.target.stream,
                    &self.target.host,
                );
                (RetryReason::Misconfigured, reason, Some(fix))
            }
            Action::RefreshToken { reason } => {
                self.tokens.invalidate_if(&token);
                let fix = self.unauthorized_fix(&token);
                (RetryReason::Unauthorized, reason, Some(fix))
            }
            Action::Throttled { .. } => (
                RetryReason::Throttled,
                format!("throttled: {}", service_reason(&a)),
                None,
            ),
            Action::TooLarge | Action::RejectAll { .. } | Action::Transient { .. } => {
                (RetryReason::ServerError, service_reason(&a), None)
            }
        };
        let f = Failure {
            throttled: reason == RetryReason::Throttled,
            ..self.failure(&cause, fix.as_deref(), &ids)
        };
        self.note_failure(now, &f);
        let fix = fix.map(|f| format!(": {f}")).unwrap_or_default();
        Err(ProbeFailure {
            reason,
            detail: format!("{cause}{}{fix}", ids.suffix()),
        })
    }
}
