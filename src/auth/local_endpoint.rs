//! The token GET shared by the managed-identity endpoints on this machine: IMDS, the Arc agent
//! and App Service's identity endpoint.
//!
//! All three take `api-version`, `resource` and an optional user-assigned id in the query, want
//! `Metadata: true`, are reached on the no-proxy client (a proxy cannot reach a local endpoint,
//! and IMDS refuses proxied requests) and answer 200 with the same token shape. This module builds
//! that query, sends the GET, turns transport failures into retry outcomes and parses the token.
//! What differs stays with each source: its URL and parameter names, its secret header, its
//! wording, and how it judges an error answer (what is retried, what the message says).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;

use super::imds::UserAssigned;
use super::response::{error_summary, parse_token, read_capped, ReadError, TOO_LARGE};
use super::retry::{describe, retry_after, with_retries, Outcome, RetrySchedule};
use super::{cloud, AccessToken, AuthConfig, AuthError};
use crate::http::HttpClients;
use tokio::time::Instant;

/// How a source words the failures that happen before there is an answer to judge, so each
/// keeps the messages its users (and `auto`'s summary) already know.
pub(crate) struct Wording {
    /// The connection was refused or timed out: the endpoint is probably not here.
    pub(crate) unreachable: fn(endpoint: &str, cause: &str) -> String,
    /// The request failed otherwise.
    pub(crate) send_failed: fn(endpoint: &str, cause: &str) -> String,
    /// The answer's body could not be read.
    pub(crate) read_failed: fn(cause: &str) -> String,
}

impl fmt::Debug for Wording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wording").finish_non_exhaustive()
    }
}

/// `url` with the query every local endpoint takes: `api-version`, `resource` (the configured
/// audience) and, for a user-assigned identity, its id under the name `param` gives it (IMDS and
/// App Service name the same ids differently).
pub(crate) fn token_url(
    mut url: reqwest::Url,
    api_version: &str,
    cfg: &AuthConfig,
    identity: Option<&UserAssigned>,
    param: fn(&UserAssigned) -> &'static str,
) -> reqwest::Url {
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("api-version", api_version)
            .append_pair("resource", &cloud::resource(&cfg.audience()));
        if let Some(id) = identity {
            query.append_pair(param(id), id.value());
        }
    }
    url
}

/// Parses an endpoint the environment names (`what` says which, for the message). Only http and
/// https can carry a token GET; anything else is a configuration error now, not a retry later.
pub(crate) fn parse_http_url(what: &str, endpoint: &str) -> Result<reqwest::Url, AuthError> {
    let url = reqwest::Url::parse(endpoint)
        .map_err(|e| AuthError::Config(format!("{what} {endpoint:?} is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(AuthError::Config(format!(
            "{what} {endpoint:?} is not an http or https URL"
        )));
    }
    Ok(url)
}

/// Which identity was asked for, for messages: `user-assigned client_id=…` (with the id named as
/// `param` names it) or `the system-assigned identity`.
pub(crate) fn asked_for(
    identity: Option<&UserAssigned>,
    param: fn(&UserAssigned) -> &'static str,
) -> String {
    match identity {
        Some(id) => format!("user-assigned {}={}", param(id), id.value()),
        None => "the system-assigned identity".into(),
    }
}

/// What one GET came to.
pub(crate) enum Reply {
    /// 200 with a token.
    Token(AccessToken),
    /// Any other status, for the source to judge.
    Refused(Refusal),
    /// No answer to judge (or a 200 without a usable token): retry or give up with this.
    Stop(Outcome<AccessToken>),
}

/// An answer other than 200.
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    /// The server's `Retry-After`, when it sent one.
    pub(crate) after: Option<Duration>,
    /// A one-line summary of the body, with the request's secret header redacted.
    pub(crate) summary: String,
}

/// The one secret header a request carries (`X-IDENTITY-HEADER`, Arc's `Authorization`), marked
/// sensitive so no log of the request shows it.
pub(crate) struct SecretHeader<'a> {
    pub(crate) name: HeaderName,
    pub(crate) value: HeaderValue,
    /// The secret as the endpoint might echo it in an error, to redact.
    pub(crate) secret: &'a str,
}

/// What a request without `Metadata: true` got (see [`LocalEndpoint::ping`]).
pub(crate) enum Ping {
    Answered(StatusCode),
    /// No answer: refused, unreachable or too slow; why.
    NoAnswer(String),
}

/// One local token endpoint's client: the no-proxy HTTP client, the retry schedule and the
/// wording. The URL stays with the source, which builds it with its own parameter names.
#[derive(Debug)]
pub(crate) struct LocalEndpoint {
    source_name: &'static str,
    http: reqwest::Client,
    /// Where the endpoint is, for messages.
    endpoint: String,
    wording: &'static Wording,
    retry: RetrySchedule,
}

impl LocalEndpoint {
    /// Uses the no-proxy client; sends nothing.
    pub(crate) fn new(
        source_name: &'static str,
        http: &HttpClients,
        endpoint: String,
        wording: &'static Wording,
        retry: RetrySchedule,
    ) -> Self {
        LocalEndpoint {
            source_name,
            http: http.local.clone(),
            endpoint,
            wording,
            retry,
        }
    }

    #[cfg(test)]
    pub(crate) fn set_retry(&mut self, retry: RetrySchedule) {
        self.retry = retry;
    }

    /// Runs `attempt` (given whether to fail fast) under the retry schedule, within `deadline`.
    /// With `probe`, the first attempt fails fast on a refused connection: `auto` asks "is this
    /// endpoint here?", and a minute of retries to learn "no" helps nobody.
    pub(crate) async fn retried<F, Fut>(
        &self,
        probe: bool,
        deadline: Option<Instant>,
        attempt: F,
    ) -> Result<AccessToken, AuthError>
    where
        F: Fn(bool) -> Fut,
        Fut: Future<Output = Outcome<AccessToken>>,
    {
        with_retries(self.source_name, &self.retry, deadline, |n| {
            attempt(probe && n == 1)
        })
        .await
    }

    /// One GET of `url` with no `Metadata` header, given up after `timeout`: Azure's IMDS answers
    /// it with 400 at once, which tells it from another cloud's metadata service (404 and the
    /// like) and from an address where nothing answers. The body is not read.
    pub(crate) async fn ping(&self, url: &reqwest::Url, timeout: Duration) -> Ping {
        let sent = self.http.get(url.clone()).timeout(timeout).send();
        match tokio::time::timeout(timeout, sent).await {
            Ok(Ok(response)) => Ping::Answered(response.status()),
            Ok(Err(e)) if e.is_timeout() => {
                Ping::NoAnswer(format!("no answer within {} ms", timeout.as_millis()))
            }
            Ok(Err(e)) => Ping::NoAnswer(describe(&e.without_url())),
            Err(_) => Ping::NoAnswer(format!("no answer within {} ms", timeout.as_millis())),
        }
    }

    /// One GET of `url` with `Metadata: true` and, when given, one secret header. A refused
    /// connection is `Unavailable`: given up at once with `fail_fast`, else retried; other
    /// transport failures are retried. The body is read up to 64 KiB.
    pub(crate) async fn get(
        &self,
        url: &reqwest::Url,
        secret: Option<SecretHeader<'_>>,
        fail_fast: bool,
    ) -> Reply {
        let mut request = self.http.get(url.clone()).header("Metadata", "true");
        let mut secrets = Vec::new();
        if let Some(SecretHeader {
            name,
            mut value,
            secret,
        }) = secret
        {
            value.set_sensitive(true);
            request = request.header(name, value);
            secrets.push(secret);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                let error = AuthError::Unavailable {
                    source_name: self.source_name,
                    reason: (self.wording.unreachable)(&self.endpoint, &describe(&e.without_url())),
                };
                return Reply::Stop(if fail_fast {
                    Outcome::Fail(error)
                } else {
                    Outcome::Retry { error, after: None }
                });
            }
            Err(e) => {
                let reason =
                    (self.wording.send_failed)(&self.endpoint, &describe(&e.without_url()));
                return Reply::Stop(Outcome::Retry {
                    error: self.failed(reason),
                    after: None,
                });
            }
        };
        let status = response.status();
        let after = retry_after(response.headers());
        let headers = response.headers().clone();
        let summary = match read_capped(response).await {
            Ok(body) if status == StatusCode::OK => {
                return match parse_token(self.source_name, &body) {
                    Ok(token) => Reply::Token(token),
                    Err(e) => Reply::Stop(Outcome::Fail(e)),
                };
            }
            Ok(body) => error_summary(&body, &secrets),
            Err(ReadError::TooLarge) if status == StatusCode::OK => {
                return Reply::Stop(Outcome::Fail(
                    self.failed(format!("{} answered 200, but {TOO_LARGE}", self.endpoint)),
                ));
            }
            Err(ReadError::TooLarge) => format!("({TOO_LARGE})"),
            Err(ReadError::Io(e)) => {
                let reason = (self.wording.read_failed)(&describe(&e));
                return Reply::Stop(Outcome::Retry {
                    error: self.failed(reason),
                    after,
                });
            }
        };
        Reply::Refused(Refusal {
            status,
            headers,
            after,
            summary,
        })
    }

    /// Where the endpoint is, for messages.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `Failed` from this source.
    pub(crate) fn failed(&self, reason: String) -> AuthError {
        AuthError::Failed {
            source_name: self.source_name,
            reason,
        }
    }
}
