//! `dcrship check`: validate a configuration file (every error with its line and key); with
//! `--live`, prove each output usable: a token from the configured identity, then a POST of `[]`
//! to the stream, with the answer turned into what to fix.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::settings::auth_from_config;
use super::CmdError;
use crate::auth::{self, TokenCache};
use crate::batch::Gzip;
use crate::cli::CheckArgs;
use crate::config::{self, Config, OutputConfig};
use crate::exit::ExitCode;
use crate::http::{parse_secure_url, HttpClients};
use crate::ingest::classify::{classify, service_reason, Action, Answer};
use crate::ingest::{HttpTransport, Transport};

/// Validates the file and returns a description of what it configures.
pub fn validate(args: &CheckArgs) -> Result<(Config, String), CmdError> {
    let cfg = config::load(&args.config).map_err(|e| CmdError::usage(e.to_string()))?;
    let line = format!(
        "{}: configuration is valid ({} outputs: {}; {} inputs: {})",
        args.config.display(),
        cfg.outputs.len(),
        cfg.outputs.keys().cloned().collect::<Vec<_>>().join(", "),
        cfg.inputs.len(),
        cfg.inputs.keys().cloned().collect::<Vec<_>>().join(", "),
    );
    Ok((cfg, line))
}

/// What `check --live` found for one output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub code: ExitCode,
    pub message: String,
}

/// Runs `check`: prints as it goes, returns the exit code.
pub async fn run(args: &CheckArgs) -> ExitCode {
    let (cfg, line) = match validate(args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("dcrship: error: {e}");
            return e.code;
        }
    };
    println!("{line}");
    if !args.live {
        return ExitCode::Ok;
    }
    if cfg.outputs.is_empty() {
        println!("no outputs to check");
        return ExitCode::Ok;
    }
    let http = match HttpClients::new(Duration::from_secs(30)) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("dcrship: error: {e}");
            return ExitCode::Internal;
        }
    };
    let tokens = match auth::build(&auth_from_config(&cfg), &http).await {
        Ok(t) => t,
        Err(e) => return no_token(&e),
    };
    if let Err(e) = tokens.token().await {
        return no_token(&e);
    }
    println!(
        "identity: {} (principal object id {})",
        tokens.source_name(),
        tokens
            .principal_id()
            .as_deref()
            .unwrap_or("unknown: the token has no oid claim")
    );
    let mut worst = ExitCode::Ok;
    for (name, out) in &cfg.outputs {
        let v = probe(&http, &tokens, out).await;
        let mark = if v.code == ExitCode::Ok {
            "ok"
        } else {
            "FAILED"
        };
        println!("output {name}: {mark}: {}", v.message);
        worst = worst.max(v.code);
    }
    worst
}

fn no_token(e: &auth::AuthError) -> ExitCode {
    eprintln!("dcrship: error: no access token: {e}");
    match e {
        auth::AuthError::Config(_) => ExitCode::Usage,
        _ => ExitCode::NoToken,
    }
}

/// POSTs `[]` to one output's stream and explains the answer.
async fn probe(http: &HttpClients, tokens: &Arc<TokenCache>, out: &OutputConfig) -> Verdict {
    let endpoint = match parse_secure_url("endpoint", &out.endpoint) {
        Ok(u) => u,
        Err(e) => return verdict(ExitCode::Usage, e.to_string()),
    };
    let transport = HttpTransport::new(http.remote.clone(), &endpoint, &out.dcr, &out.stream);
    let token = match tokens.token().await {
        Ok(t) => t,
        Err(e) => return verdict(ExitCode::NoToken, format!("no access token: {e}")),
    };
    let body = Bytes::from(Gzip::new(3).compress(b"[]"));
    let id = uuid::Uuid::new_v4().to_string();
    match transport.post(token.expose(), body, &id).await {
        Ok(answer) => diagnose(&answer, out, tokens.principal_id().as_deref()),
        Err(e) => verdict(
            ExitCode::Transient,
            format!("{} did not answer: {e}; check the URL, DNS, the firewall and any proxy (HTTPS_PROXY)", transport.url()),
        ),
    }
}

fn verdict(code: ExitCode, message: impl Into<String>) -> Verdict {
    Verdict {
        code,
        message: message.into(),
    }
}

/// Turns the answer to `POST []` into a verdict a person can act on. Pure.
pub fn diagnose(a: &Answer, out: &OutputConfig, principal: Option<&str>) -> Verdict {
    let principal = principal.unwrap_or("<unknown>");
    let reason = service_reason(a);
    match (a.status, classify(a, jiff::Timestamp::now())) {
        (_, Action::Accepted) => verdict(
            ExitCode::Ok,
            format!("stream {} of DCR {} accepts data (HTTP {})", out.stream, out.dcr, a.status),
        ),
        (401, _) => verdict(
            ExitCode::NoToken,
            format!("{reason}: the service refused the token; the audience must match the endpoint's cloud (set [auth] cloud = \"usgov\" or \"china\" for sovereign clouds, or fix [auth] audience)"),
        ),
        (403, _) => verdict(
            ExitCode::Permission,
            format!("{reason}: principal {principal} lacks the \"Monitoring Metrics Publisher\" role on DCR {dcr}. Grant it: az role assignment create --role \"Monitoring Metrics Publisher\" --assignee-object-id {principal} --assignee-principal-type ServicePrincipal --scope <resource id of DCR {dcr}>. A new grant takes up to an hour to apply", dcr = out.dcr),
        ),
        (404, _) => verdict(
            ExitCode::Permission,
            format!("{reason}: not found; check the endpoint ({}), the DCR immutable id ({}) and the stream name ({}, a key of the DCR's streamDeclarations)", out.endpoint, out.dcr, out.stream),
        ),
        (400, _) => verdict(
            ExitCode::Usage,
            format!("{reason}: the service refused an empty array; check the stream name and that the endpoint is a logs-ingestion endpoint"),
        ),
        (_, Action::Throttled { .. }) | (_, Action::Transient { .. }) => verdict(
            ExitCode::Transient,
            format!("{reason}: the service is throttling or failing right now; try again later"),
        ),
        _ => verdict(ExitCode::Usage, format!("{reason}: unexpected answer; check the endpoint URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out() -> OutputConfig {
        OutputConfig::new(
            "https://dce.example",
            "dcr-0123456789abcdef0123456789abcdef",
            "Custom-A_CL",
        )
    }

    #[test]
    fn each_answer_gets_its_diagnosis() {
        let cases = [
            (204, ExitCode::Ok, "accepts data"),
            (401, ExitCode::NoToken, "cloud"),
            (403, ExitCode::Permission, "Monitoring Metrics Publisher"),
            (404, ExitCode::Permission, "DCR immutable id"),
            (400, ExitCode::Usage, "empty array"),
            (429, ExitCode::Transient, "throttling"),
            (500, ExitCode::Transient, "failing"),
            (302, ExitCode::Usage, "unexpected"),
        ];
        for (status, code, words) in cases {
            let a = Answer {
                status,
                ..Answer::default()
            };
            let v = diagnose(&a, &out(), Some("oid-1"));
            assert_eq!(v.code, code, "{status}");
            assert!(v.message.contains(words), "{status}: {}", v.message);
        }
        let v = diagnose(
            &Answer {
                status: 403,
                ..Answer::default()
            },
            &out(),
            Some("oid-1"),
        );
        assert!(v.message.contains("oid-1") && v.message.contains("up to an hour"));
    }
}
