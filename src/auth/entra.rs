//! The Entra v2 client-credentials token request, shared by every service-principal source.
//!
//! A client secret ([`client_secret`](super::client_secret)), a signed certificate assertion
//! ([`client_cert`](super::client_cert)) and a federated Kubernetes token
//! ([`workload`](super::workload)) all end in the same POST to
//! `{authority}{tenant}/oauth2/v2.0/token`; only the credential fields differ. This module
//! resolves the tenant, client id and authority (configuration first, then the `AZURE_*`
//! variables, as the Azure SDKs read them), sends the form through the proxy-honouring client,
//! retries what is worth retrying, and keeps the credential out of every error.

use reqwest::StatusCode;
use tokio::time::Instant;

use super::env::Env;
use super::response::{error_summary, parse_token, read_capped, ReadError, TOO_LARGE};
use super::retry::{describe, retry_after, with_retries, Outcome, RetrySchedule};
use super::{cloud, AccessToken, AuthConfig, AuthError};
use crate::http::{parse_secure_url, HttpClients};
use crate::secret::Secret;

/// `client_assertion_type` for a JWT assertion (certificate or federated token).
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A configured value, else the environment variable; blank counts as unset.
pub(crate) fn pick(value: &Option<String>, env: &Env, var: &str) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .or_else(|| env.get(var).map(|v| v.trim().to_string()))
}

/// The tenant id (configuration, then `AZURE_TENANT_ID`).
pub(crate) fn tenant(cfg: &AuthConfig, env: &Env) -> Option<String> {
    pick(&cfg.tenant_id, env, "AZURE_TENANT_ID")
}

/// The application (client) id (configuration, then `AZURE_CLIENT_ID`).
pub(crate) fn client_id(cfg: &AuthConfig, env: &Env) -> Option<String> {
    pick(&cfg.client_id, env, "AZURE_CLIENT_ID")
}

/// Tenant ids become a path segment or a command-line argument: accept only what GUIDs and
/// domain names contain.
pub(crate) fn check_tenant(tenant: &str) -> Result<(), AuthError> {
    if !tenant.is_empty()
        && !tenant.starts_with(['-', '.'])
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        Ok(())
    } else {
        Err(AuthError::Config(format!(
            "tenant id {tenant:?} is not a GUID or domain name"
        )))
    }
}

/// `Unavailable` naming what is missing: `missing tenant id (AZURE_TENANT_ID), …`.
pub(crate) fn missing(source_name: &'static str, what: &[Option<&str>]) -> AuthError {
    let listed: Vec<&str> = what.iter().flatten().copied().collect();
    AuthError::Unavailable {
        source_name,
        reason: format!("missing {}", listed.join(", ")),
    }
}

/// The token URL: `{authority}{tenant}/oauth2/v2.0/token`. The authority is the configured one,
/// else `AZURE_AUTHORITY_HOST`, else the cloud's; https unless loopback.
pub(crate) fn token_url(
    cfg: &AuthConfig,
    env: &Env,
    tenant: &str,
) -> Result<reqwest::Url, AuthError> {
    check_tenant(tenant)?;
    let authority = cfg
        .authority_host
        .clone()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| env.get("AZURE_AUTHORITY_HOST"))
        .unwrap_or_else(|| cfg.cloud.authority_host().to_string());
    let mut authority = parse_secure_url("authority host", &authority)
        .map_err(|e| AuthError::Config(e.to_string()))?;
    if !authority.path().ends_with('/') {
        let path = format!("{}/", authority.path());
        authority.set_path(&path);
    }
    authority
        .join(&format!("{tenant}/oauth2/v2.0/token"))
        .map_err(|e| AuthError::Config(format!("cannot build the token URL: {e}")))
}

/// What proves the application's identity in one request.
pub(crate) enum Credential {
    /// `client_secret=…`.
    Secret(Secret),
    /// `client_assertion_type=…jwt-bearer&client_assertion=…` (a signed JWT or a federated token).
    Assertion(Secret),
}

impl Credential {
    fn value(&self) -> &str {
        match self {
            Credential::Secret(s) | Credential::Assertion(s) => s.expose(),
        }
    }
}

/// One application at one token endpoint. Holds no credential: each request is handed one.
#[derive(Debug)]
pub(crate) struct EntraApp {
    source_name: &'static str,
    http: reqwest::Client,
    token_url: reqwest::Url,
    client_id: String,
    scope: String,
    retry: RetrySchedule,
}

impl EntraApp {
    /// Uses the remote (proxy-honouring) client; validates the authority and tenant.
    pub(crate) fn new(
        source_name: &'static str,
        cfg: &AuthConfig,
        http: &HttpClients,
        env: &Env,
        tenant: &str,
        client_id: String,
    ) -> Result<Self, AuthError> {
        let token_url = token_url(cfg, env, tenant)?;
        Ok(EntraApp {
            source_name,
            http: http.remote.clone(),
            token_url,
            client_id,
            scope: cloud::scope(&cfg.audience()),
            retry: RetrySchedule::ENTRA,
        })
    }

    #[cfg(test)]
    pub(crate) fn set_retry(&mut self, retry: RetrySchedule) {
        self.retry = retry;
    }

    pub(crate) fn token_url(&self) -> &reqwest::Url {
        &self.token_url
    }

    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The token request, retried on 429, 5xx and network errors (a `Retry-After` waited out in
    /// full) until `deadline`. `credential` is called before every attempt (an assertion must be
    /// fresh); when it fails, so does the request, at once.
    pub(crate) async fn request<F>(
        &self,
        deadline: Option<Instant>,
        credential: F,
    ) -> Result<AccessToken, AuthError>
    where
        F: Fn() -> Result<Credential, AuthError>,
    {
        with_retries(self.source_name, &self.retry, deadline, |_| async {
            match credential() {
                Ok(credential) => self.attempt(&credential).await,
                Err(e) => Outcome::Fail(e),
            }
        })
        .await
    }

    async fn attempt(&self, credential: &Credential) -> Outcome<AccessToken> {
        let mut form = vec![("client_id", self.client_id.as_str())];
        match credential {
            Credential::Secret(secret) => form.push(("client_secret", secret.expose())),
            Credential::Assertion(assertion) => {
                form.push(("client_assertion_type", JWT_BEARER));
                form.push(("client_assertion", assertion.expose()));
            }
        }
        form.push(("scope", self.scope.as_str()));
        form.push(("grant_type", "client_credentials"));
        let sent = self
            .http
            .post(self.token_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                let error = self.failed(format!(
                    "request to {} failed: {}",
                    self.token_url,
                    describe(&e.without_url())
                ));
                return Outcome::Retry { error, after: None };
            }
        };
        let status = response.status();
        let after = retry_after(response.headers());
        let summary = match read_capped(response).await {
            Ok(body) if status == StatusCode::OK => {
                return match parse_token(self.source_name, &body) {
                    Ok(token) => Outcome::Done(token),
                    Err(e) => Outcome::Fail(e),
                };
            }
            Ok(body) => error_summary(&body, &[credential.value()]),
            Err(ReadError::TooLarge) if status == StatusCode::OK => {
                return Outcome::Fail(self.failed(format!("Entra answered 200, but {TOO_LARGE}")));
            }
            Err(ReadError::TooLarge) => format!("({TOO_LARGE})"),
            Err(ReadError::Io(e)) => {
                let error = self.failed(format!("reading Entra's answer failed: {}", describe(&e)));
                return Outcome::Retry { error, after };
            }
        };
        match status.as_u16() {
            400 | 401 => Outcome::Fail(self.failed(format!(
                "Entra refused client {} (HTTP {status}): {summary}",
                self.client_id
            ))),
            429 | 500..=599 => Outcome::Retry {
                error: self.failed(format!("Entra answered HTTP {status}: {summary}")),
                after,
            },
            _ => Outcome::Fail(self.failed(format!("Entra answered HTTP {status}: {summary}"))),
        }
    }

    fn failed(&self, reason: String) -> AuthError {
        AuthError::Failed {
            source_name: self.source_name,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_rules() {
        for ok in [
            "contoso.onmicrosoft.com",
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
        ] {
            assert!(check_tenant(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../evil", "a/b", "a b", "a?b", "--evil", ".."] {
            assert!(
                matches!(check_tenant(bad), Err(AuthError::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn config_wins_over_the_environment() {
        let env = Env::from_pairs([("AZURE_TENANT_ID", "env-t"), ("AZURE_CLIENT_ID", "env-c")]);
        let cfg = AuthConfig {
            tenant_id: Some(" cfg-t ".into()),
            client_id: Some("  ".into()),
            ..Default::default()
        };
        assert_eq!(tenant(&cfg, &env).as_deref(), Some("cfg-t"));
        assert_eq!(client_id(&cfg, &env).as_deref(), Some("env-c"));
    }
}
