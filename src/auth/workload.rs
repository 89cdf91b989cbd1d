//! AKS workload identity: a federated Kubernetes service-account token exchanged at Entra.
//!
//! The workload identity webhook injects `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`,
//! `AZURE_TENANT_ID` and `AZURE_AUTHORITY_HOST`. The file holds a projected service-account token
//! that kubelet rotates (it lives an hour by default), so it is read afresh for every token
//! request: a read is cheap next to the HTTP exchange, and it is never stale. Its contents are a
//! credential and appear in no message. The exchange is the federated client assertion of
//! `federated.rs`, with the file's token as the assertion.

use std::path::PathBuf;

use tokio::time::Instant;

use super::entra::{self, EntraApp};
use super::env::Env;
use super::federated::{Assertion, FederatedSource};
use super::{AuthConfig, AuthError, BoxFuture};
use crate::http::HttpClients;
use crate::secret::Secret;

const NAME: &str = "workload-identity";
/// The variable naming the projected token file.
pub(crate) const TOKEN_FILE_VAR: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// A projected service-account token is a JWT of a kilobyte or two; anything far larger is not one.
const MAX_TOKEN_FILE: u64 = 64 * 1024;

/// Tokens for a workload identity. Holds the file's path, never its contents.
pub type WorkloadIdentitySource = FederatedSource<TokenFile>;

/// The projected service-account token file, read for every request.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
}

impl FederatedSource<TokenFile> {
    /// Validates the configuration; reads and sends nothing.
    ///
    /// Client id and tenant come from the configuration first, then the injected variables.
    /// Missing ones are [`AuthError::Unavailable`], listed together.
    pub fn new(cfg: &AuthConfig, http: &HttpClients, env: &Env) -> Result<Self, AuthError> {
        let file = env.get(TOKEN_FILE_VAR).map(|f| PathBuf::from(f.trim()));
        let tenant = entra::tenant(cfg, env);
        let client_id = entra::client_id(cfg, env);
        let (file, tenant, client_id) = match (file, tenant, client_id) {
            (Some(f), Some(t), Some(c)) => (f, t, c),
            (file, tenant, client_id) => {
                return Err(entra::missing(
                    NAME,
                    &[
                        file.is_none()
                            .then_some("federated token file (AZURE_FEDERATED_TOKEN_FILE)"),
                        tenant.is_none().then_some("tenant id (AZURE_TENANT_ID)"),
                        client_id.is_none().then_some("client id (AZURE_CLIENT_ID)"),
                    ],
                ))
            }
        };
        let app = EntraApp::new(NAME, cfg, http, env, &tenant, client_id)?;
        Ok(FederatedSource::from_parts(app, TokenFile { path: file }))
    }
}

impl TokenFile {
    /// The federated token, read now. Errors name the file and the cause, never its contents.
    async fn read(&self) -> Result<Secret, AuthError> {
        let path = &self.path;
        let failed = |reason: String| AuthError::Failed {
            source_name: NAME,
            reason,
        };
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| failed(read_error(path, &e)))?
            .len();
        if size > MAX_TOKEN_FILE {
            return Err(failed(format!(
                "federated token file {} is {size} bytes: too large for a service-account token",
                path.display()
            )));
        }
        let raw = tokio::fs::read(path)
            .await
            .map_err(|e| failed(read_error(path, &e)))?;
        let text = String::from_utf8(raw).map_err(|_| {
            failed(format!(
                "federated token file {} is not text",
                path.display()
            ))
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(failed(format!(
                "federated token file {} is empty (kubelet has not written the token yet?)",
                path.display()
            )));
        }
        Ok(Secret::new(token))
    }
}

impl Assertion for TokenFile {
    const NAME: &'static str = NAME;

    fn get(&self, _deadline: Option<Instant>) -> BoxFuture<'_, Result<Secret, AuthError>> {
        Box::pin(self.read())
    }
}

fn read_error(path: &std::path::Path, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "federated token file {} does not exist (is the pod labelled \
             azure.workload.identity/use: \"true\" and its service account annotated?)",
            path.display()
        ),
        _ => format!("cannot read federated token file {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::{fake_entra, fast_retry};
    use crate::auth::TokenSource;
    use std::time::Duration;

    const OK_BODY: &str = r#"{"token_type":"Bearer","expires_in":86399,"ext_expires_in":86399,"access_token":"tok-wi"}"#;
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn http() -> HttpClients {
        HttpClients::new(Duration::from_secs(5)).unwrap()
    }

    /// The variables the webhook injects, pointing at `authority` and `file`.
    fn webhook_env(authority: &str, file: &std::path::Path) -> Env {
        Env::from_pairs([
            ("AZURE_CLIENT_ID", "wi-client"),
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_AUTHORITY_HOST", authority),
            (TOKEN_FILE_VAR, file.to_str().unwrap()),
        ])
    }

    #[tokio::test]
    async fn posts_the_file_as_a_client_assertion_and_rereads_it() {
        let (base, rec) = fake_entra(TENANT, vec![(200, OK_BODY.into())]).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("azure-identity-token");
        std::fs::write(&file, "sa-token-one\n").unwrap();
        let src = WorkloadIdentitySource::new(
            &AuthConfig::default(),
            &http(),
            &webhook_env(&format!("{base}/"), &file),
        )
        .unwrap();
        assert_eq!(src.fetch().await.unwrap().token.expose(), "tok-wi");

        // kubelet rotates the file; the next request carries the new token.
        std::fs::write(&file, "sa-token-two").unwrap();
        src.fetch().await.unwrap();

        let all = rec.all();
        assert_eq!(all.len(), 2);
        let (headers, form) = &all[0];
        assert_eq!(
            headers.get("content-type").unwrap(),
            "application/x-www-form-urlencoded"
        );
        assert_eq!(form["client_id"], "wi-client");
        assert_eq!(form["client_assertion"], "sa-token-one");
        assert_eq!(
            form["client_assertion_type"],
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["scope"], "https://monitor.azure.com//.default");
        assert!(!form.contains_key("client_secret"));
        assert_eq!(all[1].1["client_assertion"], "sa-token-two");
    }

    #[test]
    fn missing_values_are_listed() {
        let err = WorkloadIdentitySource::new(
            &AuthConfig::default(),
            &http(),
            &Env::from_pairs([("AZURE_CLIENT_ID", "x")]),
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::Unavailable { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("AZURE_FEDERATED_TOKEN_FILE") && text.contains("AZURE_TENANT_ID"),
            "{text}"
        );
        assert!(!text.contains("AZURE_CLIENT_ID"), "{text}");
    }

    #[tokio::test]
    async fn missing_or_empty_file_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        let src = WorkloadIdentitySource::new(
            &AuthConfig::default(),
            &http(),
            &webhook_env("https://login.microsoftonline.com/", &file),
        )
        .unwrap();
        let err = src.fetch().await.unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        std::fs::write(&file, " \n").unwrap();
        let err = src.fetch().await.unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
    }

    #[tokio::test]
    async fn a_refusal_names_the_client_and_never_the_token() {
        let body = r#"{"error":"invalid_client","error_description":"AADSTS700213: No matching federated identity record found for presented assertion subject 'system:serviceaccount:default:wrong' sa-token-secret"}"#;
        let (base, rec) = fake_entra(TENANT, vec![(400, body.into())]).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "sa-token-secret").unwrap();
        let src = WorkloadIdentitySource::new(
            &AuthConfig::default(),
            &http(),
            &webhook_env(&base, &file),
        )
        .unwrap()
        .with_retry(fast_retry());
        let err = src.fetch().await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("AADSTS700213"), "{text}");
        assert!(text.contains("wi-client"), "{text}");
        assert!(!text.contains("sa-token-secret"), "{text}");
        assert_eq!(rec.count(), 1);
    }
}
