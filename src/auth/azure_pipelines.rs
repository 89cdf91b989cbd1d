//! Azure Pipelines OIDC federation through a workload-identity service connection, as
//! azure-identity's `AzurePipelinesCredential` does: no secret in the pipeline.
//!
//! The agent sets `SYSTEM_OIDCREQUESTURI`; the job's `System.AccessToken` must be mapped into
//! `SYSTEM_ACCESSTOKEN` (`env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)`); the AzureCLI@2 and
//! AzurePowerShell tasks set `AZURESUBSCRIPTION_SERVICE_CONNECTION_ID`,
//! `AZURESUBSCRIPTION_CLIENT_ID` and `AZURESUBSCRIPTION_TENANT_ID`. A POST of
//! `{SYSTEM_OIDCREQUESTURI}?api-version=7.1&serviceConnectionId=<id>` with the access token as
//! the bearer answers `{"oidcToken": "<ID token>"}`, the client assertion for the service
//! connection's app registration. Both tokens are secrets.

use reqwest::Method;

use super::entra::{self, pick, EntraApp};
use super::env::Env;
use super::federated::{CiIdToken, FederatedSource, IdTokenRequest, Platform};
use super::retry::RetrySchedule;
use super::{AuthConfig, AuthError};
use crate::http::{parse_secure_url, HttpClients};
use crate::secret::Secret;

const NAME: &str = "azure-pipelines";
pub(crate) const URI_VAR: &str = "SYSTEM_OIDCREQUESTURI";
pub(crate) const TOKEN_VAR: &str = "SYSTEM_ACCESSTOKEN";
pub(crate) const CONNECTION_VAR: &str = "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID";
const CLIENT_VAR: &str = "AZURESUBSCRIPTION_CLIENT_ID";
const TENANT_VAR: &str = "AZURESUBSCRIPTION_TENANT_ID";
/// The OIDC token API version azure-identity uses.
const API_VERSION: &str = "7.1";

/// Tokens for an Azure Pipelines job.
pub type AzurePipelinesSource = FederatedSource<CiIdToken<AzurePipelines>>;

/// The platform whose ID token is the assertion.
#[derive(Debug)]
pub struct AzurePipelines;

impl Platform for AzurePipelines {
    const NAME: &'static str = NAME;
}

/// The service connection: `[auth] service_connection_id`, else the task's variable.
pub(crate) fn connection_id(cfg: &AuthConfig, env: &Env) -> Option<String> {
    pick(&cfg.service_connection_id, env, CONNECTION_VAR)
}

/// The client and tenant: the configuration or `AZURE_*`, else the task's `AZURESUBSCRIPTION_*`.
pub(crate) fn app_ids(cfg: &AuthConfig, env: &Env) -> (Option<String>, Option<String>) {
    (
        entra::client_id(cfg, env).or_else(|| env.get(CLIENT_VAR).map(|v| v.trim().to_string())),
        entra::tenant(cfg, env).or_else(|| env.get(TENANT_VAR).map(|v| v.trim().to_string())),
    )
}

impl AzurePipelinesSource {
    /// Validates the configuration; sends nothing. Missing values are [`AuthError::Unavailable`],
    /// listed together.
    pub fn new(cfg: &AuthConfig, http: &HttpClients, env: &Env) -> Result<Self, AuthError> {
        let uri = env.get(URI_VAR);
        let token = env.get(TOKEN_VAR);
        let connection = connection_id(cfg, env);
        let (client_id, tenant) = app_ids(cfg, env);
        let (uri, token, connection, client_id, tenant) =
            match (uri, token, connection, client_id, tenant) {
                (Some(u), Some(k), Some(s), Some(c), Some(t)) => (u, k, s, c, t),
                (uri, token, connection, client_id, tenant) => {
                    return Err(entra::missing(
                        NAME,
                        &[
                            uri.is_none().then_some(
                                "SYSTEM_OIDCREQUESTURI (set by the Azure Pipelines agent)",
                            ),
                            token.is_none().then_some(
                                "SYSTEM_ACCESSTOKEN (map it in the step: `env: \
                                 SYSTEM_ACCESSTOKEN: $(System.AccessToken)`)",
                            ),
                            connection.is_none().then_some(
                                "service connection id (AZURESUBSCRIPTION_SERVICE_CONNECTION_ID \
                                 or [auth] service_connection_id)",
                            ),
                            client_id.is_none().then_some(
                                "client id (AZURE_CLIENT_ID or AZURESUBSCRIPTION_CLIENT_ID)",
                            ),
                            tenant.is_none().then_some(
                                "tenant id (AZURE_TENANT_ID or AZURESUBSCRIPTION_TENANT_ID)",
                            ),
                        ],
                    ))
                }
            };
        let mut url = parse_secure_url("SYSTEM_OIDCREQUESTURI", uri.trim_end_matches('/'))
            .map_err(|e| AuthError::Config(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("api-version", API_VERSION)
            .append_pair("serviceConnectionId", &connection);
        let app = EntraApp::new(NAME, cfg, http, env, &tenant, client_id)?;
        let request = IdTokenRequest {
            source_name: NAME,
            http: http.remote.clone(),
            method: Method::POST,
            url,
            bearer: Secret::new(token.trim()),
            field: "oidcToken",
            what: "the Azure DevOps OIDC token endpoint",
            refused_hint: "check that SYSTEM_ACCESSTOKEN is the job's $(System.AccessToken) and \
                           that the pipeline may use the service connection (a workload identity \
                           federation one)",
            retry: RetrySchedule::ENTRA,
        };
        Ok(FederatedSource::from_parts(app, CiIdToken::new(request)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::{fast_retry, pairs, serve, Recorded};
    use crate::auth::TokenSource;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use std::time::Duration;

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const ACCESS_TOKEN: &str = "ado-system-access-token";

    fn http() -> HttpClients {
        HttpClients::new(Duration::from_secs(5)).unwrap()
    }

    async fn fake(status: u16, body: &'static str) -> (String, Recorded, Recorded) {
        let (ado, entra) = (Recorded::default(), Recorded::default());
        let (a, e) = (ado.clone(), entra.clone());
        let app = axum::Router::new()
            .route(
                "/org/proj/_apis/distributedtask/hubs/build/plans/p/jobs/j/oidctoken",
                post(move |headers: HeaderMap, uri: axum::http::Uri| {
                    a.push(headers, pairs(uri.query().unwrap_or_default()));
                    async move { (StatusCode::from_u16(status).unwrap(), body) }
                }),
            )
            .route(
                &format!("/{TENANT}/oauth2/v2.0/token"),
                post(move |headers: HeaderMap, form: String| {
                    e.push(headers, pairs(&form));
                    async {
                        r#"{"token_type":"Bearer","expires_in":3599,"access_token":"tok-ado"}"#
                    }
                }),
            );
        (serve(app).await, ado, entra)
    }

    fn env(base: &str) -> Env {
        Env::from_pairs([
            (
                URI_VAR,
                format!(
                    "{base}/org/proj/_apis/distributedtask/hubs/build/plans/p/jobs/j/oidctoken"
                ),
            ),
            (TOKEN_VAR, ACCESS_TOKEN.into()),
            (CONNECTION_VAR, "conn-1".into()),
            (CLIENT_VAR, "ado-app".into()),
            (TENANT_VAR, TENANT.into()),
            ("AZURE_AUTHORITY_HOST", format!("{base}/")),
        ])
    }

    #[tokio::test]
    async fn posts_for_the_oidc_token_and_exchanges_it() {
        let (base, ado, entra) = fake(200, r#"{"oidcToken":"ado-id-token"}"#).await;
        let src = AzurePipelinesSource::new(&AuthConfig::default(), &http(), &env(&base)).unwrap();
        assert_eq!(src.name(), "azure-pipelines");
        assert_eq!(src.fetch().await.unwrap().token.expose(), "tok-ado");
        let (headers, query) = ado.only();
        assert_eq!(
            headers.get("authorization").unwrap(),
            &format!("Bearer {ACCESS_TOKEN}")
        );
        assert_eq!(headers.get("content-type").unwrap(), "application/json");
        assert_eq!(query["api-version"], "7.1");
        assert_eq!(query["serviceConnectionId"], "conn-1");
        let (_, form) = entra.only();
        assert_eq!(form["client_id"], "ado-app");
        assert_eq!(form["client_assertion"], "ado-id-token");
    }

    #[tokio::test]
    async fn an_answer_without_the_token_is_explained() {
        let (base, _, entra) = fake(200, r#"{"something":"else"}"#).await;
        let src = AzurePipelinesSource::new(&AuthConfig::default(), &http(), &env(&base))
            .unwrap()
            .with_retry(fast_retry());
        let err = src.fetch().await.unwrap_err().to_string();
        assert!(
            err.contains("without an ID token") && err.contains("oidcToken"),
            "{err}"
        );
        assert_eq!(entra.count(), 0);
    }

    #[test]
    fn the_configuration_names_the_connection_and_missing_values_are_listed() {
        let cfg = AuthConfig {
            service_connection_id: Some("from-config".into()),
            ..Default::default()
        };
        assert_eq!(
            connection_id(&cfg, &Env::from_pairs([(CONNECTION_VAR, "env")])).as_deref(),
            Some("from-config")
        );
        let err = AzurePipelinesSource::new(
            &AuthConfig::default(),
            &http(),
            &Env::from_pairs([(URI_VAR, "https://dev.azure.com/x")]),
        )
        .unwrap_err();
        let text = err.to_string();
        for want in [
            "SYSTEM_ACCESSTOKEN",
            "$(System.AccessToken)",
            "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID",
            "AZURESUBSCRIPTION_CLIENT_ID",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        assert!(!text.contains("SYSTEM_OIDCREQUESTURI"), "{text}");
    }
}
