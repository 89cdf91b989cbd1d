//! Entra access tokens for the ingestion API.
//!
//! Every identity is a [`TokenSource`]: one small HTTP exchange that returns an [`AccessToken`].
//! [`TokenCache`] sits in front of the chosen source: it hands out the cached token, refreshes it
//! ahead of expiry (5 minutes before, or at half-life for short and for very long tokens), drops
//! it on a 401, and keeps a still-valid token when a refresh fails.
//!
//! Sources: [`imds`] (Azure VM managed identity), [`arc`] (Arc-enabled server), [`app_service`]
//! (App Service, Functions, Container Apps, Automation), [`workload`] (AKS workload identity),
//! [`github_actions`] and [`azure_pipelines`] (CI OIDC federation; the three federated sources
//! share [`federated`]), [`client_secret`] and [`client_cert`] (service principal; the Entra
//! request every app-registration source shares is in `entra.rs`), [`azure_cli`]
//! (`az account get-access-token`),
//! [`static_token`] (`DCRSHIP_ACCESS_TOKEN`). [`build`] turns an [`AuthConfig`] into a cache,
//! resolving `auto` to the first source the environment supports (see `auto.rs`).
//! [`TokenCache::spawn_refresher`] renews the token in the background, for the long-running agent.
//!
//! Secrets (tokens, client secrets, `IDENTITY_HEADER`, the Arc challenge key, the federated token,
//! the certificate's private key) are held as [`Secret`] or read only when used, and appear in no
//! log line, error or `Debug` output; `redaction_tests.rs` holds every type here to that.

pub mod app_service;
pub mod arc;
mod auto;
pub mod azure_cli;
pub mod azure_pipelines;
mod cache;
pub mod client_cert;
pub mod client_secret;
pub mod cloud;
mod der;
mod entra;
pub mod env;
pub mod federated;
pub mod github_actions;
pub mod imds;
pub mod jwt;
mod local_endpoint;
mod pbe;
mod pkcs12;
#[cfg(test)]
mod redaction_tests;
mod response;
pub mod retry;
pub mod static_token;
#[cfg(test)]
mod test_support;
pub mod workload;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::http::HttpClients;
use crate::secret::Secret;

pub use app_service::AppServiceSource;
pub use arc::ArcSource;
pub use azure_cli::AzureCliSource;
pub use azure_pipelines::AzurePipelinesSource;
pub use cache::TokenCache;
pub use client_cert::ClientCertificateSource;
pub use client_secret::ClientSecretSource;
pub use cloud::Cloud;
pub use env::Env;
pub use github_actions::GithubActionsSource;
pub use imds::ImdsSource;
pub use static_token::StaticSource;
pub use workload::WorkloadIdentitySource;

/// A boxed future, so token sources stay object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An access token and when it stops being valid.
#[derive(Clone)]
pub struct AccessToken {
    pub token: Secret,
    /// When Entra says the token expires.
    pub expires_at: jiff::Timestamp,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &self.token)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why a token could not be had. Messages name the source and the fix, never a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// The source cannot work here at all (a variable is missing, the endpoint is absent).
    #[error("{source_name}: {reason}")]
    Unavailable {
        source_name: &'static str,
        reason: String,
    },
    /// The source answered, but refused or failed.
    #[error("{source_name}: {reason}")]
    Failed {
        source_name: &'static str,
        reason: String,
    },
    /// `auto` found no source that works; each line says why.
    #[error("no identity source worked:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    NoSource(Vec<AuthError>),
    /// The configuration asks for something impossible (two user-assigned ids, an unknown method).
    #[error("{0}")]
    Config(String),
}

/// One way of obtaining a token.
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// Short name for logs and messages: `managed-identity`, `client-secret`, `static`.
    fn name(&self) -> &'static str;
    /// Fetches a fresh token (no caching here: that is [`TokenCache`]'s job).
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>>;
    /// [`TokenSource::fetch`], done by `deadline`: no retry wait is begun that would end past
    /// it, and an attempt still running then is given up. Sources that retry override this; the
    /// cache cuts off at the deadline whatever a source does.
    fn fetch_by(&self, deadline: Option<Instant>) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        let _ = deadline;
        self.fetch()
    }
    /// The first fetch when `auto` asks whether this source works here at all. A source whose
    /// absence shows as a slow failure (IMDS off Azure) gives up sooner here than in `fetch`.
    fn probe(&self, deadline: Option<Instant>) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        self.fetch_by(deadline)
    }
}

/// How to authenticate, from flags, env and `[auth]`.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub method: AuthMethod,
    pub client_id: Option<String>,
    pub object_id: Option<String>,
    pub resource_id: Option<String>,
    pub tenant_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub cloud: Cloud,
    /// Overrides the cloud's authority host (also `AZURE_AUTHORITY_HOST`).
    pub authority_host: Option<String>,
    /// Overrides the cloud's token audience (`https://monitor.azure.com`).
    pub audience: Option<String>,
    /// The certificate and its private key (`client-certificate`): a PEM file, or a PKCS#12
    /// (`.pfx`, `.p12`) file; else `AZURE_CLIENT_CERTIFICATE_PATH`.
    pub certificate_path: Option<PathBuf>,
    /// The password of an encrypted private key or PKCS#12 file; else
    /// `AZURE_CLIENT_CERTIFICATE_PASSWORD`.
    pub certificate_password: Option<Secret>,
    /// The Azure Pipelines service connection (`azure-pipelines`); else
    /// `AZURESUBSCRIPTION_SERVICE_CONNECTION_ID`.
    pub service_connection_id: Option<String>,
    /// The longest one token fetch may take, all its retries included (`send` passes its
    /// `--retry-timeout`); `None` means [`DEFAULT_FETCH_TIMEOUT`].
    pub fetch_timeout: Option<Duration>,
    /// The only directory an Arc challenge file is read from; `None` means
    /// [`arc::DEFAULT_KEY_DIR`] (`/var/opt/azcmagent/tokens`).
    pub arc_key_dir: Option<PathBuf>,
}

/// How long one token fetch may take when the configuration does not say (`run`): long enough for
/// an IMDS host update (75 s of 410s) and a throttled Entra's `Retry-After`, short enough that a
/// hanging endpoint is noticed.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// The shortest time a fetch is allowed, whatever `fetch_timeout` says (`--retry-timeout 0`
/// still gets its one attempt).
pub const MIN_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

impl AuthConfig {
    /// How long one token fetch may take.
    pub(crate) fn fetch_timeout(&self) -> Duration {
        self.fetch_timeout
            .unwrap_or(DEFAULT_FETCH_TIMEOUT)
            .max(MIN_FETCH_TIMEOUT)
    }

    /// The token audience: the configured one, else the cloud's.
    pub(crate) fn audience(&self) -> String {
        self.audience
            .clone()
            .unwrap_or_else(|| self.cloud.audience().to_string())
    }
}

/// `--auth` / `[auth] method`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// The first that works here: secret or certificate from AZURE_*, workload identity, GitHub
    /// Actions, Azure Pipelines, App Service, Arc, IMDS, Azure CLI
    #[default]
    Auto,
    /// The VM's managed identity (IMDS)
    ManagedIdentity,
    /// Azure Arc-enabled server (the himds agent)
    Arc,
    /// App Service, Functions, Container Apps, Automation (IDENTITY_ENDPOINT + IDENTITY_HEADER)
    AppService,
    /// AKS workload identity (AZURE_FEDERATED_TOKEN_FILE)
    WorkloadIdentity,
    /// App registration and secret (AZURE_CLIENT_SECRET)
    ClientSecret,
    /// App registration and certificate: PEM or PKCS#12 (AZURE_CLIENT_CERTIFICATE_PATH,
    /// AZURE_CLIENT_CERTIFICATE_PASSWORD)
    ClientCertificate,
    /// GitHub Actions OIDC (ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN, AZURE_CLIENT_ID, AZURE_TENANT_ID)
    GithubActions,
    /// Azure Pipelines OIDC (SYSTEM_OIDCREQUESTURI, SYSTEM_ACCESSTOKEN, a service connection)
    AzurePipelines,
    /// The token of `az login`
    AzureCli,
    /// A bearer token in DCRSHIP_ACCESS_TOKEN
    Static,
}

impl AuthMethod {
    /// The spelling used by `--auth` and `[auth] method`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Auto => "auto",
            AuthMethod::ManagedIdentity => "managed-identity",
            AuthMethod::Arc => "arc",
            AuthMethod::AppService => "app-service",
            AuthMethod::WorkloadIdentity => "workload-identity",
            AuthMethod::ClientSecret => "client-secret",
            AuthMethod::ClientCertificate => "client-certificate",
            AuthMethod::GithubActions => "github-actions",
            AuthMethod::AzurePipelines => "azure-pipelines",
            AuthMethod::AzureCli => "azure-cli",
            AuthMethod::Static => "static",
        }
    }
}

/// How long after it was issued a token of the given lifetime is refreshed: 5 minutes before
/// expiry, or at half-life when the token is short (≤ 10 min) or long (≥ 2 h, as MSAL does for
/// managed identities, so a 24 h token is renewed well before a long outage could bite).
pub fn refresh_after(lifetime: Duration) -> Duration {
    const FIVE_MIN: Duration = Duration::from_secs(300);
    const TWO_HOURS: Duration = Duration::from_secs(7200);
    if lifetime >= TWO_HOURS || lifetime <= 2 * FIVE_MIN {
        lifetime / 2
    } else {
        lifetime - FIVE_MIN
    }
}

/// Turns the configuration into a token cache, reading the process environment.
///
/// An explicit method only builds and validates its source: the first [`TokenCache::token`]
/// fetches, so an agent can start while its identity endpoint is still coming up. `auto` must
/// fetch to learn which source works, and returns a cache primed with that token.
pub async fn build(cfg: &AuthConfig, http: &HttpClients) -> Result<Arc<TokenCache>, AuthError> {
    build_with_env(cfg, http, &Env::process()).await
}

/// [`build`] with the environment given (tests pass a fixed one).
pub async fn build_with_env(
    cfg: &AuthConfig,
    http: &HttpClients,
    env: &Env,
) -> Result<Arc<TokenCache>, AuthError> {
    // Asked for by name, a missing prerequisite is a configuration error, not "try the next".
    fn named<S: TokenSource + 'static>(
        made: Result<S, AuthError>,
    ) -> Result<Box<dyn TokenSource>, AuthError> {
        match made {
            Ok(source) => Ok(Box::new(source)),
            Err(e @ AuthError::Config(_)) => Err(e),
            Err(e) => Err(AuthError::Config(e.to_string())),
        }
    }
    let source: Box<dyn TokenSource> = match cfg.method {
        AuthMethod::Auto => return auto::resolve(cfg, http, env).await,
        AuthMethod::ManagedIdentity => named(ImdsSource::new(cfg, http, env))?,
        AuthMethod::Arc => named(ArcSource::new(cfg, http, env))?,
        AuthMethod::AppService => named(AppServiceSource::new(cfg, http, env))?,
        AuthMethod::WorkloadIdentity => named(WorkloadIdentitySource::new(cfg, http, env))?,
        AuthMethod::ClientSecret => named(ClientSecretSource::new(cfg, http, env))?,
        AuthMethod::ClientCertificate => named(ClientCertificateSource::new(cfg, http, env))?,
        AuthMethod::GithubActions => named(GithubActionsSource::new(cfg, http, env))?,
        AuthMethod::AzurePipelines => named(AzurePipelinesSource::new(cfg, http, env))?,
        AuthMethod::AzureCli => named(AzureCliSource::new(cfg))?,
        AuthMethod::Static => Box::new(StaticSource::new(env)),
    };
    // The principal is logged with the first token (see `TokenCache`).
    tracing::info!(source = source.name(), "identity source chosen");
    Ok(TokenCache::with_fetch_timeout(source, cfg.fetch_timeout()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_points() {
        let min = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(
            refresh_after(Duration::from_secs(10)),
            Duration::from_secs(5)
        );
        assert_eq!(refresh_after(min(10)), min(5));
        assert_eq!(refresh_after(min(60)), min(55));
        assert_eq!(refresh_after(min(24 * 60)), min(12 * 60));
    }

    #[test]
    fn method_names_match_the_cli() {
        use clap::ValueEnum;
        for method in AuthMethod::value_variants() {
            let name = method.to_possible_value().map(|v| v.get_name().to_string());
            assert_eq!(name.as_deref(), Some(method.as_str()));
        }
    }
}
