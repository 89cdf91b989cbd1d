//! Federated credentials: a token issued by someone Entra trusts (Kubernetes, GitHub Actions,
//! Azure Pipelines), presented as the client assertion of the client-credentials grant.
//!
//! The exchange is `entra.rs`'s POST with `client_assertion`, the same for every platform; what
//! differs is only where the assertion comes from, which an [`Assertion`] provides: a projected
//! token file (`workload.rs`), or an ID token asked of the CI platform with the job's own token
//! ([`IdTokenRequest`], used by `github_actions.rs` and `azure_pipelines.rs`). The assertion is
//! fetched afresh for every Entra token (CI ID tokens live minutes, the token file rotates), and
//! it and the job token appear in no message.

use std::fmt;
use std::marker::PhantomData;

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::time::Instant;

use super::entra::{Credential, EntraApp};
use super::response::{error_summary, read_capped, ReadError, TOO_LARGE};
use super::retry::{describe, retry_after, with_retries, Outcome, RetrySchedule};
use super::{AccessToken, AuthError, BoxFuture, TokenSource};
use crate::secret::Secret;

/// Where a federated source's client assertion comes from.
pub trait Assertion: Send + Sync + fmt::Debug {
    /// The source's name: `workload-identity`, `github-actions`, `azure-pipelines`.
    const NAME: &'static str;
    /// The assertion, obtained now, by `deadline`.
    fn get(&self, deadline: Option<Instant>) -> BoxFuture<'_, Result<Secret, AuthError>>;
    /// Replaces the retry schedule of the assertion's own request, if it makes one.
    #[cfg(test)]
    fn set_retry(&mut self, retry: RetrySchedule) {
        let _ = retry;
    }
}

/// Tokens for an app registration (or user-assigned identity) that trusts a federated issuer.
/// Holds no credential: the assertion is fetched for each request.
#[derive(Debug)]
pub struct FederatedSource<A> {
    app: EntraApp,
    assertion: A,
}

impl<A: Assertion> FederatedSource<A> {
    pub(crate) fn from_parts(app: EntraApp, assertion: A) -> Self {
        FederatedSource { app, assertion }
    }

    /// Replaces the retry schedules (tests use a short one).
    #[cfg(test)]
    pub fn with_retry(mut self, retry: RetrySchedule) -> Self {
        self.app.set_retry(retry);
        self.assertion.set_retry(retry);
        self
    }

    async fn request(&self, deadline: Option<Instant>) -> Result<AccessToken, AuthError> {
        let assertion = self.assertion.get(deadline).await?;
        self.app
            .request(deadline, || Ok(Credential::Assertion(assertion.clone())))
            .await
    }
}

impl<A: Assertion> TokenSource for FederatedSource<A> {
    fn name(&self) -> &'static str {
        A::NAME
    }

    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(self.request(None))
    }

    fn fetch_by(&self, deadline: Option<Instant>) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(self.request(deadline))
    }
}

/// A CI platform that hands its jobs ID tokens over HTTP (GitHub Actions, Azure Pipelines).
pub trait Platform: Send + Sync + fmt::Debug {
    /// The source's name.
    const NAME: &'static str;
}

/// The job's ID token, asked of the platform `P` for each Entra token.
#[derive(Debug)]
pub struct CiIdToken<P>(IdTokenRequest, PhantomData<P>);

impl<P: Platform> CiIdToken<P> {
    pub(crate) fn new(request: IdTokenRequest) -> Self {
        CiIdToken(request, PhantomData)
    }
}

impl<P: Platform> Assertion for CiIdToken<P> {
    const NAME: &'static str = P::NAME;

    fn get(&self, deadline: Option<Instant>) -> BoxFuture<'_, Result<Secret, AuthError>> {
        Box::pin(self.0.fetch(deadline))
    }

    #[cfg(test)]
    fn set_retry(&mut self, retry: RetrySchedule) {
        self.0.retry = retry;
    }
}

/// One CI platform's ID-token request: `method url` with the job's token as the bearer; the ID
/// token is the string in the answer's field `field`. Goes through the proxy-honouring client
/// (the platform's endpoint is remote), retried on 429, 5xx and network errors.
pub(crate) struct IdTokenRequest {
    pub(crate) source_name: &'static str,
    pub(crate) http: reqwest::Client,
    pub(crate) method: Method,
    pub(crate) url: reqwest::Url,
    /// The job's token (`ACTIONS_ID_TOKEN_REQUEST_TOKEN`, `SYSTEM_ACCESSTOKEN`).
    pub(crate) bearer: Secret,
    pub(crate) field: &'static str,
    /// The endpoint, as messages name it.
    pub(crate) what: &'static str,
    /// What to check when the platform refuses (401, 403, 404).
    pub(crate) refused_hint: &'static str,
    pub(crate) retry: RetrySchedule,
}

impl fmt::Debug for IdTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry the platform's run ids, never a secret; the bearer is a `Secret`.
        f.debug_struct("IdTokenRequest")
            .field("method", &self.method)
            .field("url", &self.url.as_str())
            .field("bearer", &self.bearer)
            .finish_non_exhaustive()
    }
}

impl IdTokenRequest {
    /// The ID token, retried until `deadline`.
    pub(crate) async fn fetch(&self, deadline: Option<Instant>) -> Result<Secret, AuthError> {
        with_retries(self.source_name, &self.retry, deadline, |_| self.attempt()).await
    }

    async fn attempt(&self) -> Outcome<Secret> {
        let mut bearer = match HeaderValue::from_str(&format!("Bearer {}", self.bearer.expose())) {
            Ok(value) => value,
            Err(_) => {
                return Outcome::Fail(AuthError::Config(format!(
                    "{}: the job token holds characters an HTTP header cannot carry",
                    self.source_name
                )))
            }
        };
        bearer.set_sensitive(true);
        let mut request = self
            .http
            .request(self.method.clone(), self.url.clone())
            .header(AUTHORIZATION, bearer)
            .header(ACCEPT, "application/json");
        if self.method == Method::POST {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let error = self.failed(format!(
                    "request to {} failed: {}",
                    self.what,
                    describe(&e.without_url())
                ));
                return Outcome::Retry { error, after: None };
            }
        };
        let status = response.status();
        let after = retry_after(response.headers());
        let secrets = [self.bearer.expose()];
        let summary = match read_capped(response).await {
            Ok(body) if status == StatusCode::OK => return self.id_token(&body),
            Ok(body) => error_summary(&body, &secrets),
            Err(ReadError::TooLarge) if status == StatusCode::OK => {
                return Outcome::Fail(
                    self.failed(format!("{} answered 200, but {TOO_LARGE}", self.what)),
                )
            }
            Err(ReadError::TooLarge) => format!("({TOO_LARGE})"),
            Err(ReadError::Io(e)) => {
                let error = self.failed(format!(
                    "reading the answer of {} failed: {}",
                    self.what,
                    describe(&e)
                ));
                return Outcome::Retry { error, after };
            }
        };
        match status.as_u16() {
            429 | 500..=599 => Outcome::Retry {
                error: self.failed(format!("{} answered HTTP {status}: {summary}", self.what)),
                after,
            },
            _ => Outcome::Fail(self.failed(format!(
                "{} refused the request (HTTP {status}): {summary}; {}",
                self.what, self.refused_hint
            ))),
        }
    }

    /// The ID token from a 200 answer; messages never show the body.
    fn id_token(&self, body: &[u8]) -> Outcome<Secret> {
        let token = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(fields)) => match fields.get(self.field) {
                Some(Value::String(t)) if !t.trim().is_empty() => Some(Secret::new(t.trim())),
                _ => None,
            },
            _ => None,
        };
        match token {
            Some(token) => Outcome::Done(token),
            None => Outcome::Fail(self.failed(format!(
                "{} answered 200 without an ID token (no \"{}\" string in a JSON object of {} bytes)",
                self.what,
                self.field,
                body.len()
            ))),
        }
    }

    fn failed(&self, reason: String) -> AuthError {
        AuthError::Failed {
            source_name: self.source_name,
            reason,
        }
    }
}
