//! A service principal with a client secret: the OAuth client-credentials grant against Entra v2.
//!
//! Values come from the configuration first, then the variables the Azure SDKs'
//! `EnvironmentCredential` reads (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`,
//! `AZURE_AUTHORITY_HOST`). The request itself (shared with the certificate and workload
//! identity sources) is in `entra.rs`; Entra traffic honours the proxy.

use super::entra::{self, Credential, EntraApp};
use super::env::Env;
#[cfg(test)]
use super::retry::RetrySchedule;
use super::{AccessToken, AuthConfig, AuthError, BoxFuture, TokenSource};
use crate::http::HttpClients;
use crate::secret::Secret;
use tokio::time::Instant;

const NAME: &str = "client-secret";

/// Tokens for a service principal. `Debug` is safe: the secret is a [`Secret`].
#[derive(Debug)]
pub struct ClientSecretSource {
    app: EntraApp,
    secret: Secret,
}

impl ClientSecretSource {
    /// Validates the configuration; sends nothing.
    ///
    /// A missing tenant, client id or secret is [`AuthError::Unavailable`] (so `auto` can move
    /// on, saying which were missing); a malformed value is [`AuthError::Config`].
    pub fn new(cfg: &AuthConfig, http: &HttpClients, env: &Env) -> Result<Self, AuthError> {
        let tenant = entra::tenant(cfg, env);
        let client_id = entra::client_id(cfg, env);
        let secret = cfg
            .client_secret
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| env.get("AZURE_CLIENT_SECRET").map(Secret::new));
        let (tenant, client_id, secret) = match (tenant, client_id, secret) {
            (Some(t), Some(c), Some(s)) => (t, c, s),
            (tenant, client_id, secret) => {
                return Err(entra::missing(
                    NAME,
                    &[
                        tenant.is_none().then_some("tenant id (AZURE_TENANT_ID)"),
                        client_id.is_none().then_some("client id (AZURE_CLIENT_ID)"),
                        secret
                            .is_none()
                            .then_some("client secret (AZURE_CLIENT_SECRET)"),
                    ],
                ));
            }
        };
        let app = EntraApp::new(NAME, cfg, http, env, &tenant, client_id)?;
        Ok(ClientSecretSource { app, secret })
    }

    /// Replaces the retry schedule (tests use a short one).
    #[cfg(test)]
    pub fn with_retry(mut self, retry: RetrySchedule) -> Self {
        self.app.set_retry(retry);
        self
    }

    async fn request(&self, deadline: Option<Instant>) -> Result<AccessToken, AuthError> {
        self.app
            .request(deadline, || Ok(Credential::Secret(self.secret.clone())))
            .await
    }
}

impl TokenSource for ClientSecretSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(self.request(None))
    }

    fn fetch_by(&self, deadline: Option<Instant>) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(self.request(deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::{self, fast_retry, unused_port, Recorded};
    use std::time::Duration;

    const SECRET: &str = "very-secret-value~123";
    const OK_BODY: &str = r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"tok-entra"}"#;

    fn http() -> HttpClients {
        HttpClients::new(Duration::from_secs(5)).unwrap()
    }

    fn cfg(authority: &str) -> AuthConfig {
        AuthConfig {
            tenant_id: Some("contoso.onmicrosoft.com".into()),
            client_id: Some("app-id".into()),
            client_secret: Some(Secret::new(SECRET)),
            authority_host: Some(authority.into()),
            ..Default::default()
        }
    }

    fn no_env() -> Env {
        Env::from_pairs::<&str, &str>([])
    }

    async fn fake_entra(script: Vec<(u16, String)>) -> (String, Recorded) {
        test_support::fake_entra("contoso.onmicrosoft.com", script).await
    }

    #[tokio::test]
    async fn posts_the_client_credentials_form() {
        let (base, rec) = fake_entra(vec![(200, OK_BODY.into())]).await;
        let src = ClientSecretSource::new(&cfg(&base), &http(), &no_env()).unwrap();
        let token = src.fetch().await.unwrap();
        assert_eq!(token.token.expose(), "tok-entra");
        let (headers, form) = rec.only();
        assert_eq!(
            headers.get("content-type").unwrap(),
            "application/x-www-form-urlencoded"
        );
        assert_eq!(form["client_id"], "app-id");
        assert_eq!(form["client_secret"], SECRET);
        assert_eq!(form["scope"], "https://monitor.azure.com//.default");
        assert_eq!(form["grant_type"], "client_credentials");
    }

    #[tokio::test]
    async fn reads_the_environment_like_the_sdks() {
        let (base, rec) = fake_entra(vec![(200, OK_BODY.into())]).await;
        let env = Env::from_pairs([
            ("AZURE_TENANT_ID", "contoso.onmicrosoft.com"),
            ("AZURE_CLIENT_ID", "env-app"),
            ("AZURE_CLIENT_SECRET", SECRET),
            ("AZURE_AUTHORITY_HOST", base.as_str()),
        ]);
        let cfg = AuthConfig {
            cloud: crate::auth::Cloud::China,
            ..Default::default()
        };
        let src = ClientSecretSource::new(&cfg, &http(), &env).unwrap();
        src.fetch().await.unwrap();
        let (_, form) = rec.only();
        assert_eq!(form["client_id"], "env-app");
        assert_eq!(form["client_secret"], SECRET);
        assert_eq!(form["scope"], "https://monitor.azure.cn//.default");
    }

    #[tokio::test]
    async fn retries_500_then_succeeds() {
        let (base, rec) = fake_entra(vec![
            (500, "busy".into()),
            (429, "".into()),
            (200, OK_BODY.into()),
        ])
        .await;
        let src = ClientSecretSource::new(&cfg(&base), &http(), &no_env())
            .unwrap()
            .with_retry(fast_retry());
        assert_eq!(src.fetch().await.unwrap().token.expose(), "tok-entra");
        assert_eq!(rec.count(), 3);
    }

    #[tokio::test]
    async fn a_400_surfaces_the_aadsts_line_and_never_the_secret() {
        // A hostile answer that echoes the secret back: it must still not reach the error.
        let body = format!(
            r#"{{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided: {SECRET}.\r\nTrace ID: abc\r\nCorrelation ID: def","error_codes":[7000215]}}"#
        );
        let (base, rec) = fake_entra(vec![(400, body)]).await;
        let src = ClientSecretSource::new(&cfg(&base), &http(), &no_env())
            .unwrap()
            .with_retry(fast_retry());
        let err = src.fetch().await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("invalid_client: AADSTS7000215"), "{text}");
        assert!(!text.contains("Trace ID"), "{text}");
        assert!(!text.contains(SECRET) && !format!("{err:?}").contains(SECRET));
        assert_eq!(rec.count(), 1, "a 400 is not retried");
    }

    #[tokio::test]
    async fn unreachable_entra_is_retried_then_reported() {
        let base = format!("http://127.0.0.1:{}/", unused_port().await);
        let src = ClientSecretSource::new(&cfg(&base), &http(), &no_env())
            .unwrap()
            .with_retry(fast_retry());
        let err = src.fetch().await.unwrap_err();
        assert!(err.to_string().contains("gave up after"), "{err}");
    }

    #[test]
    fn missing_values_are_listed() {
        let err = ClientSecretSource::new(
            &AuthConfig {
                client_id: Some("x".into()),
                ..Default::default()
            },
            &http(),
            &no_env(),
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::Unavailable { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("AZURE_TENANT_ID") && text.contains("AZURE_CLIENT_SECRET"));
        assert!(!text.contains("AZURE_CLIENT_ID"), "{text}");
    }

    #[test]
    fn authority_rules() {
        let plain = ClientSecretSource::new(&cfg("http://login.example.com/"), &http(), &no_env())
            .unwrap_err();
        assert!(matches!(plain, AuthError::Config(_)), "{plain:?}");

        let mut bad_tenant = cfg("https://login.microsoftonline.com/");
        bad_tenant.tenant_id = Some("../evil".into());
        assert!(matches!(
            ClientSecretSource::new(&bad_tenant, &http(), &no_env()),
            Err(AuthError::Config(_))
        ));

        let mut us = cfg("");
        us.authority_host = None;
        us.cloud = crate::auth::Cloud::UsGov;
        let src = ClientSecretSource::new(&us, &http(), &no_env()).unwrap();
        assert_eq!(
            src.app.token_url().as_str(),
            "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );

        // A host without its trailing slash, and one with a path prefix (a proxying gateway).
        let src =
            ClientSecretSource::new(&cfg("https://login.example.com/prefix"), &http(), &no_env())
                .unwrap();
        assert_eq!(
            src.app.token_url().as_str(),
            "https://login.example.com/prefix/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
    }
}
