//! One file per command (`send`, `run`, `check`, `dcr`): each turns arguments into work using
//! the library's pieces; `flags` lays the flags over the configuration for all of them, and
//! `preflight` is what `check` looks at on the host, `progress` the bar of `send`.

pub mod check;
pub mod dcr;
pub mod flags;
pub mod preflight;
pub mod progress;
pub mod run;
pub mod send;

use std::sync::Arc;

use crate::auth::{self, AuthConfig, TokenCache};
use crate::exit::ExitCode;
use crate::http::HttpClients;
use crate::secret::Secret;

/// A command failed before or instead of doing its work: a code and a one-line message that
/// names the cause and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CmdError {
    pub code: ExitCode,
    pub message: String,
}

impl CmdError {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        CmdError {
            code,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        CmdError::new(ExitCode::Usage, message)
    }
}

/// The token source of `auth`: a configuration mistake is a usage error (2); anything else
/// means no token (3).
pub async fn tokens(auth: &AuthConfig, http: &HttpClients) -> Result<Arc<TokenCache>, CmdError> {
    auth::build(auth, http).await.map_err(auth_error)
}

/// A token fetch failed: a configuration mistake (2) or no token (3).
pub fn auth_error(e: auth::AuthError) -> CmdError {
    match e {
        auth::AuthError::Config(m) => CmdError::usage(m),
        other => CmdError::new(ExitCode::NoToken, format!("no access token: {other}")),
    }
}

/// The token's `aud` claim against the endpoint's cloud, once a token is in hand: `Err` when
/// the endpoint is sure to refuse it; a doubtful audience is only logged.
pub fn check_token_audience(token: &Secret, endpoint: &reqwest::Url) -> Result<(), String> {
    use crate::ingest::diagnosis::{audience_mismatch, AudienceVerdict};
    let aud = crate::auth::jwt::claim(token.expose(), "aud").and_then(|v| match v {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    });
    match audience_mismatch(endpoint.host_str().unwrap_or_default(), aud.as_deref()) {
        Some(AudienceVerdict::Wrong(m)) => Err(m),
        Some(AudienceVerdict::Doubtful(m)) => {
            tracing::warn!("{m}; sending anyway");
            Ok(())
        }
        None => Ok(()),
    }
}

/// The `Computer` column: the host name.
pub fn host_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}
