//! One output's settings, resolved: flags and env first, then the config file, then defaults.

use std::time::Duration;

use crate::auth::{AuthConfig, AuthMethod};
use crate::cli::OutputArgs;
use crate::config::{
    self, Config, DEFAULT_BATCH_TIMEOUT, DEFAULT_COMPRESSION_LEVEL, DEFAULT_CONCURRENCY,
    DEFAULT_MAX_REQUEST_BYTES, DEFAULT_PERMISSION_GRACE, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_RETRY_TIMEOUT,
};
use crate::http::parse_secure_url;
use crate::ingest::diagnosis::{self, AudienceVerdict};
use crate::secret::Secret;

use super::CmdError;

/// Where and how to deliver.
#[derive(Debug, Clone)]
pub struct OutputSettings {
    /// `None` only in a dry run without an endpoint.
    pub endpoint: Option<reqwest::Url>,
    pub dcr: String,
    pub stream: String,
    pub auth: AuthConfig,
    pub concurrency: usize,
    pub max_request_bytes: usize,
    pub permission_grace: Duration,
    pub retry_timeout: Duration,
    pub request_timeout: Duration,
    pub batch_timeout: Duration,
    pub compression_level: u32,
    pub max_requests_per_minute: u32,
    pub max_bytes_per_minute: u64,
    /// The stream's declared columns from the config file (`columns`, `schema_file`).
    pub columns: std::collections::BTreeMap<String, config::ColumnType>,
    /// `max_time_span` from the config file.
    pub max_time_span: Option<Duration>,
}

impl OutputSettings {
    /// Resolves the settings. `need_target`: endpoint, dcr and stream are required (not in a
    /// dry run).
    pub fn resolve(args: &OutputArgs, need_target: bool) -> Result<Self, CmdError> {
        let cfg = match &args.config {
            Some(path) => Some(config::load(path).map_err(|e| CmdError::usage(e.to_string()))?),
            None => None,
        };
        let out = match &cfg {
            Some(c) => Some(
                c.output(args.output.as_deref())
                    .map_err(|e| CmdError::usage(e.to_string()))?
                    .1
                    .clone(),
            ),
            None if args.output.is_some() => {
                return Err(CmdError::usage(
                    "--output names an output of a config file: give the file with -c/--config",
                ))
            }
            None => None,
        };
        let pick = |flag: &Option<String>, from_cfg: Option<&str>| {
            flag.clone()
                .or_else(|| from_cfg.map(str::to_string))
                .filter(|s| !s.trim().is_empty())
        };
        let endpoint = pick(&args.endpoint, out.as_ref().map(|o| o.endpoint.as_str()));
        let dcr = pick(&args.dcr, out.as_ref().map(|o| o.dcr.as_str()));
        let stream = pick(&args.stream, out.as_ref().map(|o| o.stream.as_str()));
        if need_target {
            let missing: Vec<&str> = [
                ("--endpoint (DCRSHIP_ENDPOINT)", endpoint.is_none()),
                ("--dcr (DCRSHIP_DCR)", dcr.is_none()),
                ("--stream (DCRSHIP_STREAM)", stream.is_none()),
            ]
            .iter()
            .filter(|(_, m)| *m)
            .map(|(n, _)| *n)
            .collect();
            if !missing.is_empty() {
                return Err(CmdError::usage(format!(
                    "missing {}: say where to send (or use --dry-run to try without Azure)",
                    missing.join(", ")
                )));
            }
        }
        let endpoint = match endpoint {
            Some(e) => {
                Some(parse_secure_url("endpoint", &e).map_err(|e| CmdError::usage(e.to_string()))?)
            }
            None => None,
        };
        let dcr = dcr.unwrap_or_default();
        let stream = stream.unwrap_or_default();
        if need_target {
            check_ids(&dcr, &stream)?;
        }
        let auth = auth_config(args, cfg.as_ref());
        if let Some(e) = &endpoint {
            check_cloud(&auth, e.as_str()).map_err(CmdError::usage)?;
        }
        Ok(OutputSettings {
            endpoint,
            dcr,
            stream,
            auth,
            concurrency: args
                .concurrency
                .map(|c| c as usize)
                .or(out.as_ref().map(|o| o.concurrency))
                .unwrap_or(DEFAULT_CONCURRENCY),
            max_request_bytes: args
                .max_request_bytes
                .map(|n| n as usize)
                .or(out.as_ref().map(|o| o.max_request_bytes))
                .unwrap_or(DEFAULT_MAX_REQUEST_BYTES),
            permission_grace: args
                .permission_grace
                .or(out.as_ref().map(|o| o.permission_grace))
                .unwrap_or(DEFAULT_PERMISSION_GRACE),
            retry_timeout: args
                .retry_timeout
                .or(out.as_ref().map(|o| o.retry_timeout))
                .unwrap_or(DEFAULT_RETRY_TIMEOUT),
            request_timeout: args
                .request_timeout
                .or(out.as_ref().map(|o| o.request_timeout))
                .unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            batch_timeout: args
                .batch_timeout
                .or(out.as_ref().map(|o| o.batch_timeout))
                .unwrap_or(DEFAULT_BATCH_TIMEOUT),
            compression_level: args
                .compression_level
                .or(out.as_ref().map(|o| o.compression_level))
                .unwrap_or(DEFAULT_COMPRESSION_LEVEL),
            max_requests_per_minute: args
                .max_requests_per_minute
                .or(out.as_ref().map(|o| o.max_requests_per_minute))
                .unwrap_or(config::DEFAULT_MAX_REQUESTS_PER_MINUTE),
            max_bytes_per_minute: args
                .max_bytes_per_minute
                .or(out.as_ref().map(|o| o.max_bytes_per_minute))
                .unwrap_or(config::DEFAULT_MAX_BYTES_PER_MINUTE),
            columns: out
                .as_ref()
                .map(config::OutputConfig::declared_columns)
                .unwrap_or_default(),
            max_time_span: out.as_ref().and_then(|o| o.max_time_span),
        })
    }
}

/// The DCR immutable id and the stream name have fixed shapes; a malformed one is a 404 (DCR)
/// or a 400 `InvalidStream` (stream) later, so say it now (the same rules as the config file's).
fn check_ids(dcr: &str, stream: &str) -> Result<(), CmdError> {
    config::validate_dcr_id(dcr).map_err(|e| CmdError::usage(format!("--dcr: {e}")))?;
    config::validate_stream(stream).map_err(|e| CmdError::usage(format!("--stream: {e}")))
}

/// The cloud (or `[auth] audience`) against the endpoint's host: a token for another cloud is
/// refused there, so say so before fetching one. A `static` token's audience is not ours to
/// set; [`check_token_audience`] looks at the token itself.
pub fn check_cloud(auth: &AuthConfig, endpoint: &str) -> Result<(), String> {
    if auth.method == AuthMethod::Static {
        return Ok(());
    }
    let Some(host) = reqwest::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
    else {
        return Ok(());
    };
    match diagnosis::cloud_mismatch(&host, auth.cloud, auth.audience.as_deref()) {
        Some(m) => Err(m),
        None => Ok(()),
    }
}

/// Every output of a config file through [`check_cloud`]; the error names the output.
pub fn check_clouds(auth: &AuthConfig, cfg: &Config) -> Result<(), String> {
    for (name, out) in &cfg.outputs {
        check_cloud(auth, &out.endpoint).map_err(|m| format!("outputs.{name}.endpoint: {m}"))?;
    }
    Ok(())
}

/// The token's `aud` claim against the endpoint's cloud, once a token is in hand: `Err` when
/// the endpoint is sure to refuse it; a doubtful audience is only logged.
pub fn check_token_audience(token: &Secret, endpoint: &reqwest::Url) -> Result<(), String> {
    let aud = crate::auth::jwt::claim(token.expose(), "aud").and_then(|v| match v {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    });
    match diagnosis::audience_mismatch(endpoint.host_str().unwrap_or_default(), aud.as_deref()) {
        Some(AudienceVerdict::Wrong(m)) => Err(m),
        Some(AudienceVerdict::Doubtful(m)) => {
            tracing::warn!("{m}; sending anyway");
            Ok(())
        }
        None => Ok(()),
    }
}

/// The `[auth]` of a config file (with the environment's fallbacks), for commands that take no
/// auth flags (`check --live`).
pub fn auth_from_config(cfg: &Config) -> AuthConfig {
    auth_config(&OutputArgs::default(), Some(cfg))
}

fn auth_config(args: &OutputArgs, cfg: Option<&Config>) -> AuthConfig {
    let a = cfg.map(|c| &c.auth);
    let opt = |flag: &Option<String>, c: Option<&Option<String>>| {
        flag.clone().or_else(|| c.and_then(|v| v.clone()))
    };
    AuthConfig {
        method: args
            .auth
            .or(a.map(|a| a.method))
            .unwrap_or(AuthMethod::Auto),
        client_id: opt(&args.client_id, a.map(|a| &a.client_id)),
        object_id: a.and_then(|a| a.object_id.clone()),
        resource_id: a.and_then(|a| a.resource_id.clone()),
        tenant_id: opt(&args.tenant_id, a.map(|a| &a.tenant_id)),
        client_secret: a
            .and_then(|a| a.client_secret.clone())
            .or_else(|| std::env::var("AZURE_CLIENT_SECRET").ok().map(Secret::new))
            .filter(|s| !s.is_empty()),
        cloud: args.cloud.or(a.and_then(|a| a.cloud)).unwrap_or_default(),
        authority_host: a.and_then(|a| a.authority_host.clone()),
        audience: a.and_then(|a| a.audience.clone()),
        certificate_path: a.and_then(|a| a.certificate_path.clone()),
        certificate_password: a.and_then(|a| a.certificate_password.clone()),
        service_connection_id: a.and_then(|a| a.service_connection_id.clone()),
        arc_key_dir: a.map(|a| a.arc_key_dir.clone()),
        fetch_timeout: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_with_a_hint() {
        assert!(check_ids("dcr-0123456789abcdef0123456789abcdef", "Custom-A_CL").is_ok());
        assert!(check_ids("dcr-0123456789abcdef0123456789abcdef", "Microsoft-Syslog").is_ok());
        for (dcr, stream) in [
            ("my-dcr", "Custom-A"),
            ("dcr-123", "Custom-A"),
            ("dcr-0123456789abcdef0123456789abcdeg", "Custom-A"),
            ("dcr-0123456789abcdef0123456789abcdef", "MyTable_CL"),
        ] {
            let e = check_ids(dcr, stream).expect_err("bad");
            assert_eq!(e.code, crate::exit::ExitCode::Usage);
        }
    }
}
