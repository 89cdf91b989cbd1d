//! One POST of a gzip body to a DCR stream, behind a narrow trait so the retry policy can be
//! tested against scripted answers under a paused clock.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};

use super::classify::Answer;
use crate::auth::BoxFuture;

/// The ingestion API version every current SDK uses.
pub const API_VERSION: &str = "2023-01-01";

/// How much of an error body is kept for messages.
const BODY_LIMIT: usize = 4096;

/// The request did not get an HTTP answer (connect, TLS, reset, timeout).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    pub kind: TransportErrorKind,
    /// What went wrong, with the causes that say it ("connection refused", the certificate
    /// problem, …).
    pub message: String,
}

/// What kind of failure a [`TransportError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportErrorKind {
    /// No answer within the request timeout: the service may still have taken the request.
    Timeout,
    /// Could not connect (refused, DNS, TLS handshake).
    Connect,
    /// Anything else (a reset mid-request, a bad header value).
    Other,
}

impl TransportError {
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        TransportError {
            kind,
            message: message.into(),
        }
    }

    pub fn other(message: impl Into<String>) -> Self {
        Self::new(TransportErrorKind::Other, message)
    }

    pub fn is_timeout(&self) -> bool {
        self.kind == TransportErrorKind::Timeout
    }
}

/// Sends one request body and reports the answer.
pub trait Transport: Send + Sync {
    /// `client_request_id` goes out as `x-ms-client-request-id`; `timeout` bounds the whole
    /// exchange, from connecting to the end of the answer.
    fn post<'a>(
        &'a self,
        bearer: &'a str,
        gzip_body: Bytes,
        client_request_id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Answer, TransportError>>;
}

/// The real transport: reqwest to `{endpoint}/dataCollectionRules/{dcr}/streams/{stream}`.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl HttpTransport {
    pub fn new(client: reqwest::Client, endpoint: &reqwest::Url, dcr: &str, stream: &str) -> Self {
        HttpTransport {
            client,
            url: stream_url(endpoint, dcr, stream),
        }
    }

    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }
}

/// `{endpoint}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`; a path already
/// on the endpoint (a reverse proxy's prefix) is kept.
pub fn stream_url(endpoint: &reqwest::Url, dcr: &str, stream: &str) -> reqwest::Url {
    let mut url = endpoint.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut segs) = url.path_segments_mut() {
        segs.pop_if_empty()
            .push("dataCollectionRules")
            .push(dcr)
            .push("streams")
            .push(stream);
    }
    url.query_pairs_mut()
        .append_pair("api-version", API_VERSION);
    url
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_string())
}

impl Transport for HttpTransport {
    fn post<'a>(
        &'a self,
        bearer: &'a str,
        gzip_body: Bytes,
        client_request_id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Answer, TransportError>> {
        Box::pin(async move {
            let mut auth = HeaderValue::from_str(&format!("Bearer {bearer}")).map_err(|_| {
                TransportError::other("the access token is not a valid header value")
            })?;
            auth.set_sensitive(true);
            let resp = self
                .client
                .post(self.url.clone())
                .header(AUTHORIZATION, auth)
                .header(CONTENT_TYPE, "application/json")
                .header(CONTENT_ENCODING, "gzip")
                .header("x-ms-client-request-id", client_request_id)
                .header("Accept", "application/json")
                .timeout(timeout)
                .body(gzip_body)
                .send()
                .await
                .map_err(|e| transport_error(&e, timeout))?;
            let status = resp.status().as_u16();
            let h = resp.headers();
            let mut answer = Answer {
                status,
                retry_after: header(h, "retry-after"),
                retry_after_ms: header(h, "retry-after-ms")
                    .or_else(|| header(h, "x-ms-retry-after-ms")),
                error_code: header(h, "x-ms-error-code"),
                request_id: header(h, "x-ms-request-id"),
                body: String::new(),
            };
            let mut resp = resp;
            let mut body = Vec::new();
            // An answer whose body breaks off is still an answer: the status is what counts.
            while let Ok(Some(chunk)) = resp.chunk().await {
                let room = BODY_LIMIT.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= BODY_LIMIT {
                    break;
                }
            }
            answer.body = String::from_utf8_lossy(&body).into_owned();
            Ok(answer)
        })
    }
}

/// reqwest's error as a [`TransportError`]: its kind, and its causes, which hold the useful
/// part ("Connection refused", "invalid peer certificate: UnknownIssuer").
fn transport_error(e: &reqwest::Error, timeout: Duration) -> TransportError {
    use std::error::Error;
    let kind = if e.is_timeout() {
        TransportErrorKind::Timeout
    } else if e.is_connect() {
        TransportErrorKind::Connect
    } else {
        TransportErrorKind::Other
    };
    let mut causes = Vec::new();
    let mut src = e.source();
    while let Some(s) = src {
        causes.push(s.to_string());
        src = s.source();
    }
    TransportError::new(kind, describe(kind, timeout, &causes))
}

/// One line for a failed exchange: what kind of failure, then each cause once. Pure.
pub fn describe(kind: TransportErrorKind, timeout: Duration, causes: &[String]) -> String {
    let mut msg = match kind {
        TransportErrorKind::Timeout => format!(
            "no answer within {} (request timeout)",
            crate::duration::format_duration(timeout)
        ),
        TransportErrorKind::Connect if causes.iter().any(|c| c.contains("certificate")) => {
            "could not connect: TLS: the endpoint's certificate was refused (is a TLS-inspecting \
             proxy in the way? its CA must be in the system's trust store)"
                .to_string()
        }
        TransportErrorKind::Connect => "could not connect".to_string(),
        TransportErrorKind::Other => "request failed".to_string(),
    };
    let mut seen: Vec<&str> = Vec::new();
    for c in causes {
        let c = c.trim();
        // an outer error may repeat its inner cause in its own text; say it once
        if c.is_empty() || seen.iter().any(|s| s.contains(c)) {
            continue;
        }
        seen.push(c);
        msg.push_str(": ");
        msg.push_str(c);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_exchange_reads_as_one_line_with_its_cause() {
        let t = Duration::from_secs(60);
        let chain = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases = [
            (
                TransportErrorKind::Connect,
                chain(&["client error (Connect)", "tcp connect error", "Connection refused (os error 111)"]),
                "could not connect: client error (Connect): tcp connect error: Connection refused (os error 111)",
            ),
            (
                TransportErrorKind::Connect,
                chain(&["client error (Connect)", "invalid peer certificate: UnknownIssuer", "invalid peer certificate: UnknownIssuer"]),
                "could not connect: TLS: the endpoint's certificate was refused (is a TLS-inspecting proxy in the way? its CA must be in the system's trust store): client error (Connect): invalid peer certificate: UnknownIssuer",
            ),
            (TransportErrorKind::Timeout, chain(&["operation timed out"]), "no answer within 1m (request timeout): operation timed out"),
            (TransportErrorKind::Other, chain(&[]), "request failed"),
            (TransportErrorKind::Other, chain(&["", "connection reset"]), "request failed: connection reset"),
        ];
        for (kind, causes, want) in cases {
            assert_eq!(describe(kind, t, &causes), want);
        }
    }

    #[test]
    fn builds_the_stream_url() {
        let cases = [
            ("https://dce.eastus-1.ingest.monitor.azure.com", "https://dce.eastus-1.ingest.monitor.azure.com/dataCollectionRules/dcr-1/streams/Custom-A_CL?api-version=2023-01-01"),
            ("https://dce.example/", "https://dce.example/dataCollectionRules/dcr-1/streams/Custom-A_CL?api-version=2023-01-01"),
            ("http://127.0.0.1:9/prefix/?x=1", "http://127.0.0.1:9/prefix/dataCollectionRules/dcr-1/streams/Custom-A_CL?api-version=2023-01-01"),
        ];
        for (endpoint, want) in cases {
            let e = reqwest::Url::parse(endpoint).expect("url");
            assert_eq!(stream_url(&e, "dcr-1", "Custom-A_CL").as_str(), want);
        }
    }
}
