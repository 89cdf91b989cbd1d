//! The Azure Resource Manager calls `dcr create` makes: PUT a resource (following its
//! long-running operation), GET one. What an answer means is decided by pure functions
//! ([`next`], [`operation`]) with table tests; the token only ever goes to the ARM endpoint's
//! own origin — a poll URL elsewhere is refused, not followed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::auth::{Cloud, TokenCache};
use crate::exit::ExitCode;

/// How long one resource's long-running operation may take.
const MAX_OPERATION: Duration = Duration::from_secs(10 * 60);
/// Throttled or failing PUTs and GETs are tried this often.
const ATTEMPTS: u32 = 5;
/// The wait between polls, and after a 429 or 5xx, when the answer names none.
const DEFAULT_WAIT: Duration = Duration::from_secs(2);
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Error bodies are kept this short in messages.
const BODY_LIMIT: usize = 2048;

/// The ARM endpoint of a cloud; it is also the token audience for it.
pub fn endpoint(cloud: Cloud) -> &'static str {
    match cloud {
        Cloud::Public => "https://management.azure.com",
        Cloud::UsGov => "https://management.usgovcloudapi.net",
        Cloud::China => "https://management.chinacloudapi.cn",
    }
}

/// Why a call did not do what it should.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    #[error("{what}: no access token for Azure Resource Manager: {message}")]
    Token { what: String, message: String },
    #[error("{what}: HTTP {status}{}: {message}{}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(), hint(*status))]
    Refused {
        what: String,
        status: u16,
        code: Option<String>,
        message: String,
    },
    #[error("{what}: {message}")]
    Unreachable { what: String, message: String },
    #[error("{what}: the operation failed: {message}")]
    Failed { what: String, message: String },
    #[error("{what}: not done after {} minutes", MAX_OPERATION.as_secs() / 60)]
    TooLong { what: String },
    #[error("{what}: the answer points at {url}, not at the Resource Manager endpoint; not sending the token there")]
    Elsewhere { what: String, url: String },
}

fn hint(status: u16) -> &'static str {
    match status {
        401 => " (the token is not for this cloud's Resource Manager: check --cloud)",
        403 => {
            " (the identity may not do this: it needs e.g. Contributor on the resource group of \
             the DCR, Log Analytics Contributor on the workspace, and, to grant the role, User \
             Access Administrator or Owner on the DCR)"
        }
        404 => " (check the subscription, resource group and workspace in --workspace-resource-id)",
        _ => "",
    }
}

impl ArmError {
    /// The exit code of the contract this failure stands for.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ArmError::Token { .. } => ExitCode::NoToken,
            ArmError::Refused { status: 401, .. } => ExitCode::NoToken,
            ArmError::Refused {
                status: 403 | 404, ..
            } => ExitCode::Permission,
            ArmError::Refused { status, .. } if *status == 429 || *status >= 500 => {
                ExitCode::Transient
            }
            ArmError::Unreachable { .. } | ArmError::TooLong { .. } => ExitCode::Transient,
            _ => ExitCode::Usage,
        }
    }

    /// The service's error code, if it gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ArmError::Refused { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// The headers of an answer that decide what comes next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pub async_operation: Option<String>,
    pub location: Option<String>,
    pub retry_after: Option<String>,
}

/// What an answer to a PUT or GET means.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Done: the resource as the answer shows it (`Null` without a body).
    Done(Value),
    /// A long-running operation: poll this URL, after this long.
    Poll { url: String, after: Duration },
    /// Throttled or a passing failure: try again after this long.
    Retry(Duration),
    /// Refused: the status, and the service's error code and message.
    Refused {
        status: u16,
        code: Option<String>,
        message: String,
    },
}

/// `Retry-After` in seconds (ARM writes seconds), bounded.
fn wait_of(h: &Headers) -> Duration {
    h.retry_after
        .as_deref()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(DEFAULT_WAIT, |s| Duration::from_secs(s).min(MAX_WAIT))
}

/// The error code and message of an ARM error body (`{"error":{"code","message"}}`), else the
/// body's start.
fn error_of(body: &str) -> (Option<String>, String) {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let e = &v["error"];
    let code = e["code"].as_str().map(str::to_string);
    let message = match e["message"].as_str() {
        Some(m) => m.to_string(),
        None => body[..crate::transform::row::floor_char_boundary(body, BODY_LIMIT)].to_string(),
    };
    (code, message)
}

/// What an answer means. Pure.
pub fn next(status: u16, h: &Headers, body: &str) -> Next {
    match status {
        200..=202 => {
            let poll = h.async_operation.clone().or_else(|| {
                // Location alone means "poll me" only on 202 (a 201 may carry the new id)
                (status == 202).then(|| h.location.clone()).flatten()
            });
            match poll {
                Some(url) => Next::Poll {
                    url,
                    after: wait_of(h),
                },
                None => Next::Done(serde_json::from_str(body).unwrap_or(Value::Null)),
            }
        }
        429 | 500 | 502 | 503 | 504 => Next::Retry(wait_of(h)),
        _ => {
            let (code, message) = error_of(body);
            Next::Refused {
                status,
                code,
                message,
            }
        }
    }
}

/// Where a long-running operation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Running,
    Succeeded,
    Failed(String),
}

/// The state an answer to a poll shows: an `Azure-AsyncOperation` URL answers 200 with
/// `{"status": …}`; a `Location` URL answers 202 while running and 200 (or 201, 204) when done.
pub fn operation(status: u16, body: &str) -> Operation {
    match status {
        202 => Operation::Running,
        200 | 201 | 204 => {
            let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            match v["status"].as_str() {
                None => Operation::Succeeded,
                Some(s) if s.eq_ignore_ascii_case("Succeeded") => Operation::Succeeded,
                Some(s)
                    if s.eq_ignore_ascii_case("Failed") || s.eq_ignore_ascii_case("Canceled") =>
                {
                    let (_, message) = error_of(&v.to_string());
                    Operation::Failed(format!("{s}: {message}"))
                }
                Some(_) => Operation::Running,
            }
        }
        429 | 500..=599 => Operation::Running,
        _ => {
            let (code, message) = error_of(body);
            Operation::Failed(format!(
                "HTTP {status}{}: {message}",
                code.map(|c| format!(" {c}")).unwrap_or_default()
            ))
        }
    }
}

/// Whether `url` is on the same origin (scheme, host, port) as `base`.
pub fn same_origin(base: &reqwest::Url, url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| u.origin() == base.origin())
}

/// A Resource Manager client for one identity.
pub struct Arm {
    http: reqwest::Client,
    base: reqwest::Url,
    tokens: Arc<TokenCache>,
}

impl Arm {
    pub fn new(http: reqwest::Client, base: reqwest::Url, tokens: Arc<TokenCache>) -> Self {
        Arm { http, base, tokens }
    }

    fn url(&self, path: &str, api: &str) -> Result<reqwest::Url, ArmError> {
        let mut url = self.base.join(path).map_err(|e| ArmError::Unreachable {
            what: path.to_string(),
            message: format!("bad resource path: {e}"),
        })?;
        url.query_pairs_mut().append_pair("api-version", api);
        Ok(url)
    }

    async fn send(
        &self,
        what: &str,
        method: reqwest::Method,
        url: reqwest::Url,
        body: Option<&Value>,
    ) -> Result<(u16, Headers, String), ArmError> {
        let token = self.tokens.token().await.map_err(|e| ArmError::Token {
            what: what.to_string(),
            message: e.to_string(),
        })?;
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(token.expose())
            .header("x-ms-client-request-id", uuid::Uuid::new_v4().to_string());
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| ArmError::Unreachable {
            what: what.to_string(),
            message: format!("Resource Manager did not answer: {e}"),
        })?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let headers = Headers {
            async_operation: header("azure-asyncoperation"),
            location: header("location"),
            retry_after: header("retry-after"),
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Ok((status, headers, text))
    }

    /// PUTs `body` at `path` and waits until the resource is there; returns it as ARM shows it.
    pub async fn put(
        &self,
        what: &str,
        path: &str,
        api: &str,
        body: &Value,
    ) -> Result<Value, ArmError> {
        let url = self.url(path, api)?;
        for attempt in 1..=ATTEMPTS {
            let (status, h, text) = self
                .send(what, reqwest::Method::PUT, url.clone(), Some(body))
                .await?;
            match next(status, &h, &text) {
                Next::Done(v) => return Ok(v),
                Next::Poll { url: poll, after } => {
                    self.wait(what, &poll, after).await?;
                    return self.get(what, path, api).await;
                }
                Next::Retry(after) if attempt < ATTEMPTS => tokio::time::sleep(after).await,
                Next::Retry(_) => return Err(refused(what, status, &text)),
                Next::Refused {
                    status,
                    code,
                    message,
                } => {
                    return Err(ArmError::Refused {
                        what: what.to_string(),
                        status,
                        code,
                        message,
                    })
                }
            }
        }
        Err(ArmError::TooLong {
            what: what.to_string(),
        })
    }

    /// GETs the resource at `path`.
    pub async fn get(&self, what: &str, path: &str, api: &str) -> Result<Value, ArmError> {
        let url = self.url(path, api)?;
        for attempt in 1..=ATTEMPTS {
            let (status, h, text) = self
                .send(what, reqwest::Method::GET, url.clone(), None)
                .await?;
            match next(status, &h, &text) {
                Next::Done(v) => return Ok(v),
                Next::Retry(after) | Next::Poll { after, .. } if attempt < ATTEMPTS => {
                    tokio::time::sleep(after).await
                }
                _ => return Err(refused(what, status, &text)),
            }
        }
        Err(ArmError::TooLong {
            what: what.to_string(),
        })
    }

    /// Polls a long-running operation until it ends.
    async fn wait(&self, what: &str, poll: &str, mut after: Duration) -> Result<(), ArmError> {
        if !same_origin(&self.base, poll) {
            return Err(ArmError::Elsewhere {
                what: what.to_string(),
                url: poll.to_string(),
            });
        }
        let url = reqwest::Url::parse(poll).map_err(|e| ArmError::Unreachable {
            what: what.to_string(),
            message: format!("bad operation URL: {e}"),
        })?;
        let started = Instant::now();
        loop {
            if started.elapsed() > MAX_OPERATION {
                return Err(ArmError::TooLong {
                    what: what.to_string(),
                });
            }
            tokio::time::sleep(after).await;
            let (status, h, text) = self
                .send(what, reqwest::Method::GET, url.clone(), None)
                .await?;
            match operation(status, &text) {
                Operation::Succeeded => return Ok(()),
                Operation::Failed(message) => {
                    return Err(ArmError::Failed {
                        what: what.to_string(),
                        message,
                    })
                }
                Operation::Running => after = wait_of(&h),
            }
        }
    }
}

fn refused(what: &str, status: u16, body: &str) -> ArmError {
    let (code, message) = error_of(body);
    ArmError::Refused {
        what: what.to_string(),
        status,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn h(async_op: Option<&str>, location: Option<&str>, retry: Option<&str>) -> Headers {
        Headers {
            async_operation: async_op.map(str::to_string),
            location: location.map(str::to_string),
            retry_after: retry.map(str::to_string),
        }
    }

    #[test]
    fn what_each_answer_means() {
        let none = h(None, None, None);
        let op = "https://management.azure.com/op/1";
        let cases: Vec<(u16, Headers, &str, Next)> = vec![
            (
                200,
                none.clone(),
                r#"{"id":"x"}"#,
                Next::Done(json!({"id": "x"})),
            ),
            (201, none.clone(), "", Next::Done(Value::Null)),
            (
                201,
                h(None, Some(op), None),
                r#"{"id":"x"}"#,
                Next::Done(json!({"id": "x"})),
            ),
            (
                201,
                h(Some(op), None, Some("5")),
                "",
                Next::Poll {
                    url: op.into(),
                    after: Duration::from_secs(5),
                },
            ),
            (
                202,
                h(None, Some(op), None),
                "",
                Next::Poll {
                    url: op.into(),
                    after: DEFAULT_WAIT,
                },
            ),
            (202, none.clone(), "", Next::Done(Value::Null)),
            (
                429,
                h(None, None, Some("7")),
                "",
                Next::Retry(Duration::from_secs(7)),
            ),
            (503, h(None, None, Some("9999")), "", Next::Retry(MAX_WAIT)),
            (
                500,
                h(None, None, Some("soon")),
                "",
                Next::Retry(DEFAULT_WAIT),
            ),
            (
                409,
                none.clone(),
                r#"{"error":{"code":"RoleAssignmentExists","message":"exists"}}"#,
                Next::Refused {
                    status: 409,
                    code: Some("RoleAssignmentExists".into()),
                    message: "exists".into(),
                },
            ),
            (
                403,
                none.clone(),
                "Forbidden",
                Next::Refused {
                    status: 403,
                    code: None,
                    message: "Forbidden".into(),
                },
            ),
        ];
        for (status, headers, body, want) in cases {
            assert_eq!(next(status, &headers, body), want, "{status} {headers:?}");
        }
    }

    #[test]
    fn where_an_operation_stands() {
        let cases = [
            (202, "", Operation::Running),
            (200, r#"{"status":"InProgress"}"#, Operation::Running),
            (200, r#"{"status":"Succeeded"}"#, Operation::Succeeded),
            (200, r#"{"status":"succeeded"}"#, Operation::Succeeded),
            (200, "", Operation::Succeeded),
            (204, "", Operation::Succeeded),
            (503, "", Operation::Running),
        ];
        for (status, body, want) in cases {
            assert_eq!(operation(status, body), want, "{status} {body}");
        }
        let failed = operation(
            200,
            r#"{"status":"Failed","error":{"code":"InvalidSchema","message":"bad column"}}"#,
        );
        assert_eq!(failed, Operation::Failed("Failed: bad column".into()));
        assert!(matches!(operation(404, "gone"), Operation::Failed(m) if m.contains("404")));
    }

    #[test]
    fn the_token_stays_with_resource_manager() {
        let base = reqwest::Url::parse("https://management.azure.com").expect("url");
        assert!(same_origin(
            &base,
            "https://management.azure.com/subscriptions/x/op?a=1"
        ));
        for other in [
            "https://evil.example/op",
            "http://management.azure.com/op",
            "https://management.azure.com:8443/op",
            "not a url",
        ] {
            assert!(!same_origin(&base, other), "{other}");
        }
    }

    #[test]
    fn failures_map_to_the_contract_s_exit_codes() {
        let refused = |status| ArmError::Refused {
            what: "x".into(),
            status,
            code: None,
            message: String::new(),
        };
        assert_eq!(refused(401).exit_code(), ExitCode::NoToken);
        assert_eq!(refused(403).exit_code(), ExitCode::Permission);
        assert_eq!(refused(404).exit_code(), ExitCode::Permission);
        assert_eq!(refused(503).exit_code(), ExitCode::Transient);
        assert_eq!(refused(400).exit_code(), ExitCode::Usage);
        assert!(refused(403).to_string().contains("Contributor"));
        assert_eq!(
            endpoint(Cloud::UsGov),
            "https://management.usgovcloudapi.net"
        );
    }
}
