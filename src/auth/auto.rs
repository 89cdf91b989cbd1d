//! `--auth auto`: try the sources in order and keep the first that yields a token.
//!
//! Order (the contract's, close to the Azure SDKs' `DefaultAzureCredential`): a service
//! principal from the configuration or the `AZURE_*` variables (client secret, else
//! certificate), AKS workload identity, GitHub Actions and Azure Pipelines OIDC federation, App
//! Service, Azure Arc, the VM's managed identity through IMDS, and last the Azure CLI's
//! signed-in user. A CI platform is tried only when its variables leave no doubt: GitHub's two
//! ID-token variables (set only for a job with `id-token: write`) plus a client and tenant id;
//! Azure Pipelines' OIDC URI and `SYSTEM_ACCESSTOKEN` plus a service connection, client and
//! tenant id. They come before IMDS because CI runners are often Azure VMs themselves. Which ones apply is decided by [`plan`] from the
//! variables alone (plus whether the Arc agent is installed), without a request; a source whose
//! prerequisites are missing is skipped with the reason. One that is tried and fails is recorded
//! too, so when nothing works the error lists every source with the reason it did not.

use std::ffi::OsString;
use std::sync::Arc;

use tokio::time::Instant;

use super::arc::{self, HIMDS_PATH};
use super::client_cert;
use super::entra;
use super::env::Env;
use super::workload::TOKEN_FILE_VAR;
use super::{azure_pipelines, github_actions};
use super::{
    AppServiceSource, ArcSource, AuthConfig, AuthError, AzureCliSource, AzurePipelinesSource,
    ClientCertificateSource, ClientSecretSource, GithubActionsSource, ImdsSource, TokenCache,
    TokenSource, WorkloadIdentitySource,
};
use crate::http::HttpClients;

/// A source `auto` can try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Candidate {
    ClientSecret,
    ClientCertificate,
    WorkloadIdentity,
    GithubActions,
    AzurePipelines,
    AppService,
    Arc,
    ManagedIdentity,
    AzureCli,
}

/// What [`plan`] decided for one step of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Try(Candidate),
    /// The step's prerequisites are missing: why, for the final error.
    Skip {
        source_name: &'static str,
        reason: String,
    },
}

/// What `auto` looks at besides the environment variables. Tests give their own.
#[derive(Debug, Clone)]
pub(super) struct Host {
    /// `/opt/azcmagent/bin/himds` exists.
    pub himds_installed: bool,
    /// Runs this instead of `az` from `PATH`.
    pub az_command: Option<Vec<OsString>>,
}

impl Host {
    /// This machine.
    pub(super) fn real() -> Self {
        Host {
            himds_installed: arc::himds_installed(),
            az_command: None,
        }
    }
}

/// The chain for this environment, in order: every step, tried or skipped. Pure.
pub(super) fn plan(cfg: &AuthConfig, env: &Env, himds_installed: bool) -> Vec<Step> {
    let set = |var: &str| env.get(var).is_some();
    let skip = |source_name, reason: String| Step::Skip {
        source_name,
        reason,
    };
    let missing = |vars: &[&str]| {
        let unset: Vec<&str> = vars.iter().copied().filter(|v| !set(v)).collect();
        format!(
            "{} {} not set",
            unset.join(" and "),
            if unset.len() == 1 { "is" } else { "are" }
        )
    };
    let mut steps = Vec::with_capacity(8);

    let has_secret =
        cfg.client_secret.as_ref().is_some_and(|s| !s.is_empty()) || set("AZURE_CLIENT_SECRET");
    steps.push(if has_secret {
        Step::Try(Candidate::ClientSecret)
    } else if client_cert::certificate_path(cfg, env).is_some() {
        Step::Try(Candidate::ClientCertificate)
    } else {
        // Say everything a service principal would need, as `ClientSecretSource` does.
        let lacking: Vec<&str> = [
            entra::tenant(cfg, env)
                .is_none()
                .then_some("tenant id (AZURE_TENANT_ID)"),
            entra::client_id(cfg, env)
                .is_none()
                .then_some("client id (AZURE_CLIENT_ID)"),
            Some("client secret (AZURE_CLIENT_SECRET) or certificate (AZURE_CLIENT_CERTIFICATE_PATH)"),
        ]
        .into_iter()
        .flatten()
        .collect();
        skip("client-secret", format!("missing {}", lacking.join(", ")))
    });

    steps.push(if set(TOKEN_FILE_VAR) {
        Step::Try(Candidate::WorkloadIdentity)
    } else {
        skip(
            "workload-identity",
            format!("{TOKEN_FILE_VAR} is not set (not an AKS pod with workload identity)"),
        )
    });

    let github = [github_actions::URL_VAR, github_actions::TOKEN_VAR];
    let app_named = entra::client_id(cfg, env).is_some() && entra::tenant(cfg, env).is_some();
    steps.push(if !github.iter().all(|v| set(v)) {
        skip(
            "github-actions",
            format!(
                "{} (not a GitHub Actions job with `permissions: id-token: write`)",
                missing(&github)
            ),
        )
    } else if app_named {
        Step::Try(Candidate::GithubActions)
    } else {
        skip(
            "github-actions",
            "this is a GitHub Actions job with an ID token, but AZURE_CLIENT_ID and \
             AZURE_TENANT_ID do not both name the app registration to exchange it for"
                .into(),
        )
    });

    steps.push(if !set(azure_pipelines::URI_VAR) {
        skip(
            "azure-pipelines",
            format!(
                "{} is not set (not an Azure Pipelines job)",
                azure_pipelines::URI_VAR
            ),
        )
    } else {
        let (client, tenant) = azure_pipelines::app_ids(cfg, env);
        let lacking: Vec<&str> = [
            (!set(azure_pipelines::TOKEN_VAR))
                .then_some("SYSTEM_ACCESSTOKEN (map $(System.AccessToken) into the step)"),
            azure_pipelines::connection_id(cfg, env)
                .is_none()
                .then_some(azure_pipelines::CONNECTION_VAR),
            client.is_none().then_some("a client id"),
            tenant.is_none().then_some("a tenant id"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if lacking.is_empty() {
            Step::Try(Candidate::AzurePipelines)
        } else {
            skip(
                "azure-pipelines",
                format!(
                    "this is an Azure Pipelines job, but it lacks {} (run dcrship in an \
                     AzureCLI@2 task with a workload identity federation service connection)",
                    lacking.join(", ")
                ),
            )
        }
    });

    let app_service = ["IDENTITY_ENDPOINT", "IDENTITY_HEADER"];
    steps.push(if app_service.iter().all(|v| set(v)) {
        if set("IDENTITY_SERVER_THUMBPRINT") {
            skip(
                "app-service",
                "IDENTITY_SERVER_THUMBPRINT is set: this is Service Fabric, whose managed \
                 identity dcrship does not support"
                    .into(),
            )
        } else {
            Step::Try(Candidate::AppService)
        }
    } else {
        skip(
            "app-service",
            format!(
                "{} (not App Service, Functions, Container Apps or Automation)",
                missing(&app_service)
            ),
        )
    });

    let arc_vars = ["IDENTITY_ENDPOINT", "IMDS_ENDPOINT"];
    steps.push(if arc_vars.iter().all(|v| set(v)) || himds_installed {
        Step::Try(Candidate::Arc)
    } else {
        skip(
            "arc",
            format!(
                "{} and {HIMDS_PATH} does not exist (not an Arc-enabled server)",
                missing(&arc_vars)
            ),
        )
    });

    steps.push(Step::Try(Candidate::ManagedIdentity));
    steps.push(Step::Try(Candidate::AzureCli));
    steps
}

fn make(
    candidate: Candidate,
    cfg: &AuthConfig,
    http: &HttpClients,
    env: &Env,
    host: &Host,
) -> Result<Box<dyn TokenSource>, AuthError> {
    Ok(match candidate {
        Candidate::ClientSecret => Box::new(ClientSecretSource::new(cfg, http, env)?),
        Candidate::ClientCertificate => Box::new(ClientCertificateSource::new(cfg, http, env)?),
        Candidate::WorkloadIdentity => Box::new(WorkloadIdentitySource::new(cfg, http, env)?),
        Candidate::GithubActions => Box::new(GithubActionsSource::new(cfg, http, env)?),
        Candidate::AzurePipelines => Box::new(AzurePipelinesSource::new(cfg, http, env)?),
        Candidate::AppService => Box::new(AppServiceSource::new(cfg, http, env)?),
        Candidate::Arc => Box::new(ArcSource::new(cfg, http, env)?),
        Candidate::ManagedIdentity => Box::new(ImdsSource::new(cfg, http, env)?),
        Candidate::AzureCli => {
            let source = AzureCliSource::new(cfg)?;
            Box::new(match &host.az_command {
                Some(command) => source.with_command(command.clone()),
                None => source,
            })
        }
    })
}

/// Finds the first working source on this machine and returns a cache primed with its token.
pub(super) async fn resolve(
    cfg: &AuthConfig,
    http: &HttpClients,
    env: &Env,
) -> Result<Arc<TokenCache>, AuthError> {
    resolve_on(cfg, http, env, &Host::real()).await
}

/// [`resolve`] with the host facts given.
///
/// A configuration error (two user-assigned ids, a plain-http authority host, an unusable
/// certificate file) stops the search: the user asked for something impossible, and another
/// identity would hide it.
pub(super) async fn resolve_on(
    cfg: &AuthConfig,
    http: &HttpClients,
    env: &Env,
    host: &Host,
) -> Result<Arc<TokenCache>, AuthError> {
    let mut reasons = Vec::new();
    // The whole search shares one fetch's time.
    let deadline = Instant::now() + cfg.fetch_timeout();
    for step in plan(cfg, env, host.himds_installed) {
        let candidate = match step {
            Step::Try(candidate) => candidate,
            Step::Skip {
                source_name,
                reason,
            } => {
                let skipped = AuthError::Unavailable {
                    source_name,
                    reason,
                };
                tracing::debug!(reason = %skipped, "identity source skipped");
                reasons.push(skipped);
                continue;
            }
        };
        let source = match make(candidate, cfg, http, env, host) {
            Ok(source) => source,
            Err(e @ AuthError::Config(_)) => return Err(e),
            Err(skipped) => {
                tracing::debug!(reason = %skipped, "identity source skipped");
                reasons.push(skipped);
                continue;
            }
        };
        match source.probe(Some(deadline)).await {
            Ok(token) => {
                let cache = TokenCache::primed(source, token, cfg.fetch_timeout());
                tracing::info!(
                    source = cache.source_name(),
                    principal = cache.principal_id().as_deref().unwrap_or("unknown"),
                    "identity source chosen"
                );
                return Ok(cache);
            }
            Err(e @ AuthError::Config(_)) => return Err(e),
            Err(failed) => {
                // A source that was set up but failed deserves a warning: the next one may be a
                // different identity, with different permissions.
                if matches!(failed, AuthError::Failed { .. }) {
                    tracing::warn!(error = %failed, "identity source failed; trying the next");
                } else {
                    tracing::debug!(reason = %failed, "identity source not available");
                }
                reasons.push(failed);
            }
        }
    }
    Err(AuthError::NoSource(reasons))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::client_cert::PATH_VAR as CERTIFICATE_VAR;
    use crate::auth::jwt::tests::make_jwt;
    use crate::auth::test_support::{fake_entra, imds_answer, serve, unused_port};
    use crate::auth::{build_with_env, AuthMethod};
    use crate::secret::Secret;
    use axum::routing::get;
    use std::time::Duration;
    use Candidate::{
        AppService, AzureCli, ClientCertificate, ClientSecret, ManagedIdentity, WorkloadIdentity,
    };

    fn http() -> HttpClients {
        HttpClients::new(Duration::from_secs(5)).unwrap()
    }

    fn token_body(oid: &str) -> String {
        let jwt = make_jwt(&serde_json::json!({ "oid": oid }));
        format!(r#"{{"access_token":"{jwt}","expires_in":"3599","token_type":"Bearer"}}"#)
    }

    /// No Arc agent, and an `az` that is not installed: tests do not depend on this machine.
    fn bare_host() -> Host {
        Host {
            himds_installed: false,
            az_command: Some(vec!["/nonexistent/bin/az".into()]),
        }
    }

    async fn auto(cfg: &AuthConfig, env: &Env) -> Result<Arc<TokenCache>, AuthError> {
        resolve_on(cfg, &http(), env, &bare_host()).await
    }

    /// A fake IMDS that always answers with a token for principal `vm-oid`.
    async fn fake_imds() -> String {
        let body = token_body("vm-oid");
        let app = axum::Router::new().route(
            "/metadata/identity/oauth2/token",
            get(move |headers: axum::http::HeaderMap| async move { imds_answer(&headers, &body) }),
        );
        serve(app).await
    }

    /// An IMDS address where nothing listens.
    async fn no_imds() -> String {
        format!("http://127.0.0.1:{}", unused_port().await)
    }

    fn sp_env(authority: &str, imds: &str) -> Env {
        Env::from_pairs([
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "app-1"),
            ("AZURE_CLIENT_SECRET", "the-secret"),
            ("AZURE_AUTHORITY_HOST", authority),
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", imds),
        ])
    }

    fn tried(steps: &[Step]) -> Vec<Candidate> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Try(c) => Some(*c),
                Step::Skip { .. } => None,
            })
            .collect()
    }

    #[test]
    fn plan_table() {
        let cfg = AuthConfig::default();
        /// Variables, whether himds is installed, the candidates tried.
        type Row = (Vec<(&'static str, &'static str)>, bool, Vec<Candidate>);
        let table: Vec<Row> = vec![
            (vec![], false, vec![ManagedIdentity, AzureCli]),
            (
                vec![],
                true,
                vec![Candidate::Arc, ManagedIdentity, AzureCli],
            ),
            (
                vec![("AZURE_CLIENT_SECRET", "s"), (CERTIFICATE_VAR, "/c.pem")],
                false,
                vec![ClientSecret, ManagedIdentity, AzureCli],
            ),
            (
                vec![(CERTIFICATE_VAR, "/c.pem")],
                false,
                vec![ClientCertificate, ManagedIdentity, AzureCli],
            ),
            (
                vec![
                    (
                        TOKEN_FILE_VAR,
                        "/var/run/secrets/azure/tokens/azure-identity-token",
                    ),
                    ("AZURE_CLIENT_ID", "c"),
                    ("AZURE_TENANT_ID", "t"),
                ],
                false,
                vec![WorkloadIdentity, ManagedIdentity, AzureCli],
            ),
            (
                vec![
                    ("IDENTITY_ENDPOINT", "http://localhost:42356/msi/token"),
                    ("IDENTITY_HEADER", "h"),
                ],
                false,
                vec![AppService, ManagedIdentity, AzureCli],
            ),
            (
                vec![
                    (
                        "IDENTITY_ENDPOINT",
                        "https://localhost:2377/metadata/identity/oauth2/token",
                    ),
                    ("IDENTITY_HEADER", "h"),
                    ("IDENTITY_SERVER_THUMBPRINT", "ab"),
                ],
                false,
                vec![ManagedIdentity, AzureCli],
            ),
            (
                vec![
                    (
                        "IDENTITY_ENDPOINT",
                        "http://localhost:40342/metadata/identity/oauth2/token",
                    ),
                    ("IMDS_ENDPOINT", "http://localhost:40342"),
                ],
                false,
                vec![Candidate::Arc, ManagedIdentity, AzureCli],
            ),
            // Empty counts as unset, as for the Azure SDKs.
            (
                vec![("AZURE_CLIENT_SECRET", ""), (TOKEN_FILE_VAR, " ")],
                false,
                vec![ManagedIdentity, AzureCli],
            ),
            (
                vec![
                    ("AZURE_CLIENT_SECRET", "s"),
                    (TOKEN_FILE_VAR, "/t"),
                    ("IDENTITY_ENDPOINT", "http://localhost:1/x"),
                    ("IDENTITY_HEADER", "h"),
                    ("IMDS_ENDPOINT", "http://localhost:1"),
                ],
                true,
                vec![
                    ClientSecret,
                    WorkloadIdentity,
                    AppService,
                    Candidate::Arc,
                    ManagedIdentity,
                    AzureCli,
                ],
            ),
        ];
        for (vars, himds, expected) in table {
            let steps = plan(&cfg, &Env::from_pairs(vars.clone()), himds);
            assert_eq!(steps.len(), 8, "{vars:?}");
            assert_eq!(tried(&steps), expected, "{vars:?} himds={himds}");
        }

        // The configuration counts as much as the environment.
        let cfg = AuthConfig {
            certificate_path: Some("/etc/dcrship/c.pem".into()),
            ..Default::default()
        };
        let steps = plan(&cfg, &Env::from_pairs::<&str, &str>([]), false);
        assert_eq!(tried(&steps)[0], ClientCertificate);
        let cfg = AuthConfig {
            client_secret: Some(Secret::new("s")),
            certificate_path: Some("/etc/dcrship/c.pem".into()),
            ..Default::default()
        };
        let steps = plan(&cfg, &Env::from_pairs::<&str, &str>([]), false);
        assert_eq!(tried(&steps)[0], ClientSecret);
    }

    #[test]
    fn skip_reasons_name_what_is_missing() {
        let env = Env::from_pairs([("IDENTITY_ENDPOINT", "http://localhost:1/x")]);
        let with_ids = Env::from_pairs([("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c")]);
        assert_eq!(
            plan(&AuthConfig::default(), &with_ids, false)[0],
            Step::Skip {
                source_name: "client-secret",
                reason: "missing client secret (AZURE_CLIENT_SECRET) or certificate \
                         (AZURE_CLIENT_CERTIFICATE_PATH)"
                    .into()
            }
        );
        let reasons: Vec<String> = plan(&AuthConfig::default(), &env, false)
            .into_iter()
            .filter_map(|s| match s {
                Step::Skip {
                    source_name,
                    reason,
                } => Some(format!("{source_name}: {reason}")),
                Step::Try(_) => None,
            })
            .collect();
        assert_eq!(
            reasons,
            [
                "client-secret: missing tenant id (AZURE_TENANT_ID), client id \
                 (AZURE_CLIENT_ID), client secret (AZURE_CLIENT_SECRET) or certificate \
                 (AZURE_CLIENT_CERTIFICATE_PATH)",
                "workload-identity: AZURE_FEDERATED_TOKEN_FILE is not set (not an AKS pod with \
                 workload identity)",
                "github-actions: ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN \
                 are not set (not a GitHub Actions job with `permissions: id-token: write`)",
                "azure-pipelines: SYSTEM_OIDCREQUESTURI is not set (not an Azure Pipelines job)",
                "app-service: IDENTITY_HEADER is not set (not App Service, Functions, Container \
                 Apps or Automation)",
                "arc: IMDS_ENDPOINT is not set and /opt/azcmagent/bin/himds does not exist (not \
                 an Arc-enabled server)",
            ]
        );
    }

    #[tokio::test]
    async fn client_secret_wins_when_configured() {
        let (entra, _) = fake_entra("tenant-1", vec![(200, token_body("sp-oid"))]).await;
        let imds = fake_imds().await;
        let cache = build_with_env(&AuthConfig::default(), &http(), &sp_env(&entra, &imds))
            .await
            .unwrap();
        assert_eq!(cache.source_name(), "client-secret");
        assert_eq!(cache.principal_id().as_deref(), Some("sp-oid"));
    }

    #[tokio::test]
    async fn without_a_secret_imds_is_used() {
        let imds = fake_imds().await;
        let env = Env::from_pairs([("AZURE_POD_IDENTITY_AUTHORITY_HOST", imds.as_str())]);
        let cache = auto(&AuthConfig::default(), &env).await.unwrap();
        assert_eq!(cache.source_name(), "managed-identity");
        assert_eq!(cache.principal_id().as_deref(), Some("vm-oid"));
    }

    #[tokio::test]
    async fn a_failing_secret_falls_through_to_imds() {
        let (entra, _) = fake_entra(
            "tenant-1",
            vec![(
                401,
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#
                    .into(),
            )],
        )
        .await;
        let imds = fake_imds().await;
        let cache = auto(&AuthConfig::default(), &sp_env(&entra, &imds))
            .await
            .unwrap();
        assert_eq!(cache.source_name(), "managed-identity");
    }

    #[tokio::test]
    async fn workload_identity_comes_before_imds() {
        let (entra, rec) = fake_entra("tenant-1", vec![(200, token_body("wi-oid"))]).await;
        let imds = fake_imds().await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("azure-identity-token");
        std::fs::write(&file, "sa-token").unwrap();
        let env = Env::from_pairs([
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "app-1"),
            ("AZURE_AUTHORITY_HOST", entra.as_str()),
            (TOKEN_FILE_VAR, file.to_str().unwrap()),
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", imds.as_str()),
        ]);
        let cache = auto(&AuthConfig::default(), &env).await.unwrap();
        assert_eq!(cache.source_name(), "workload-identity");
        assert_eq!(cache.principal_id().as_deref(), Some("wi-oid"));
        assert_eq!(rec.only().1["client_assertion"], "sa-token");
    }

    #[tokio::test]
    async fn certificate_from_the_environment() {
        use crate::auth::client_cert::tests::{pem_file, CERT_PEM, KEY_PKCS8_PEM};
        let (entra, _) = fake_entra("tenant-1", vec![(200, token_body("cert-oid"))]).await;
        let (_dir, path) = pem_file(&[CERT_PEM, KEY_PKCS8_PEM]);
        let env = Env::from_pairs([
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "app-1"),
            ("AZURE_AUTHORITY_HOST", entra.as_str()),
            (CERTIFICATE_VAR, path.to_str().unwrap()),
        ]);
        let cache = auto(&AuthConfig::default(), &env).await.unwrap();
        assert_eq!(cache.source_name(), "client-certificate");
        assert_eq!(cache.principal_id().as_deref(), Some("cert-oid"));
    }

    #[tokio::test]
    async fn an_unusable_certificate_stops_the_search() {
        use crate::auth::client_cert::tests::{pem_file, CERT_PEM};
        let imds = fake_imds().await;
        let (_dir, path) = pem_file(&[CERT_PEM]);
        let env = Env::from_pairs([
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "app-1"),
            (CERTIFICATE_VAR, path.to_str().unwrap()),
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", imds.as_str()),
        ]);
        let err = auto(&AuthConfig::default(), &env).await.unwrap_err();
        assert!(matches!(err, AuthError::Config(_)), "{err:?}");
        assert!(err.to_string().contains("no private key"), "{err}");
    }

    #[tokio::test]
    async fn app_service_comes_before_arc_and_imds() {
        let body = token_body("app-oid");
        let app = axum::Router::new().route("/msi/token", get(move || async move { body }));
        let base = serve(app).await;
        let endpoint = format!("{base}/msi/token");
        let env = Env::from_pairs([
            ("IDENTITY_ENDPOINT", endpoint.as_str()),
            ("IDENTITY_HEADER", "hdr"),
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", &no_imds().await),
        ]);
        let cache = auto(&AuthConfig::default(), &env).await.unwrap();
        assert_eq!(cache.source_name(), "app-service");
        assert_eq!(cache.principal_id().as_deref(), Some("app-oid"));
    }

    #[tokio::test]
    async fn arc_when_the_agent_is_installed() {
        use crate::auth::arc::tests::{fake_himds, key_dir};
        let (dir, file) = key_dir("a.key");
        let (base, _) = fake_himds(file, token_body("arc-oid")).await;
        let env = Env::from_pairs([
            (
                "IDENTITY_ENDPOINT",
                format!("{base}/metadata/identity/oauth2/token"),
            ),
            ("IMDS_ENDPOINT", base.clone()),
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", no_imds().await),
        ]);
        let cfg = AuthConfig {
            arc_key_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let cache = auto(&cfg, &env).await.unwrap();
        assert_eq!(cache.source_name(), "arc");
        assert_eq!(cache.principal_id().as_deref(), Some("arc-oid"));
    }

    #[tokio::test]
    async fn the_azure_cli_is_the_last_resort() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("az");
        let jwt = make_jwt(&serde_json::json!({ "oid": "user-oid" }));
        std::fs::write(
            &script,
            format!(r#"echo '{{"accessToken":"{jwt}","expires_on":4102444800}}'"#),
        )
        .unwrap();
        let host = Host {
            himds_installed: false,
            az_command: Some(vec!["/bin/sh".into(), script.into()]),
        };
        let env = Env::from_pairs([("AZURE_POD_IDENTITY_AUTHORITY_HOST", no_imds().await)]);
        let cache = resolve_on(&AuthConfig::default(), &http(), &env, &host)
            .await
            .unwrap();
        assert_eq!(cache.source_name(), "azure-cli");
        assert_eq!(cache.principal_id().as_deref(), Some("user-oid"));
    }

    #[tokio::test]
    async fn nothing_works_lists_every_reason() {
        let env = Env::from_pairs([("AZURE_POD_IDENTITY_AUTHORITY_HOST", no_imds().await)]);
        let started = std::time::Instant::now();
        let err = auto(&AuthConfig::default(), &env).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the probes must fail fast"
        );
        let AuthError::NoSource(reasons) = &err else {
            panic!("{err:?}");
        };
        let names: Vec<&str> = reasons
            .iter()
            .map(|r| match r {
                AuthError::Unavailable { source_name, .. } => *source_name,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                "client-secret",
                "workload-identity",
                "github-actions",
                "azure-pipelines",
                "app-service",
                "arc",
                "managed-identity",
                "azure-cli"
            ]
        );
        let text = err.to_string();
        assert!(
            text.contains("managed-identity: IMDS not reachable"),
            "{text}"
        );
        assert!(text.contains("not an Azure VM?"), "{text}");
        assert!(
            text.contains("azure-cli: Azure CLI not installed"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_secret_without_tenant_says_so() {
        let env = Env::from_pairs([
            ("AZURE_CLIENT_SECRET", "s"),
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", &no_imds().await),
        ]);
        let err = auto(&AuthConfig::default(), &env).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("client-secret: missing tenant id"), "{text}");
    }

    #[tokio::test]
    async fn a_config_error_stops_the_search() {
        let cfg = AuthConfig {
            client_id: Some("a".into()),
            object_id: Some("b".into()),
            ..Default::default()
        };
        let err = auto(&cfg, &Env::from_pairs::<&str, &str>([]))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::Config(_)), "{err:?}");
    }

    #[tokio::test]
    async fn explicit_methods() {
        let env = Env::from_pairs::<&str, &str>([]);
        // Sources that need nothing to be built; the rest name what is missing.
        let cases = [
            (AuthMethod::ManagedIdentity, Ok("managed-identity")),
            (AuthMethod::Static, Ok("static")),
            (AuthMethod::Arc, Ok("arc")),
            (AuthMethod::AzureCli, Ok("azure-cli")),
            (
                AuthMethod::ClientSecret,
                Err("client-secret: missing tenant id"),
            ),
            (
                AuthMethod::AppService,
                Err("app-service: IDENTITY_ENDPOINT and IDENTITY_HEADER"),
            ),
            (
                AuthMethod::WorkloadIdentity,
                Err("workload-identity: missing federated token file"),
            ),
            (
                AuthMethod::ClientCertificate,
                Err("client-certificate: missing tenant id"),
            ),
        ];
        for (method, expected) in cases {
            let cfg = AuthConfig {
                method,
                ..Default::default()
            };
            match (build_with_env(&cfg, &http(), &env).await, expected) {
                (Ok(cache), Ok(name)) => assert_eq!(cache.source_name(), name),
                (Err(AuthError::Config(msg)), Err(start)) => {
                    assert!(msg.starts_with(start), "{method:?}: {msg}");
                    assert!(!msg.contains("not supported yet"), "{msg}");
                }
                (other, _) => panic!("{method:?}: {other:?}"),
            }
        }
    }
}
