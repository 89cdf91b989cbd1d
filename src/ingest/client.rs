//! One POST of a gzip body to a DCR stream, behind a narrow trait so the retry policy can be
//! tested against scripted answers under a paused clock.

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};

use super::classify::Answer;
use crate::auth::BoxFuture;

/// The ingestion API version every current SDK uses.
pub const API_VERSION: &str = "2023-01-01";

/// How much of an error body is kept for messages.
const BODY_LIMIT: usize = 4096;

/// The request did not get an HTTP answer (connect, TLS, reset, timeout).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// Sends one request body and reports the answer.
pub trait Transport: Send + Sync {
    fn post<'a>(
        &'a self,
        bearer: &'a str,
        gzip_body: Bytes,
        request_id: &'a str,
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
        request_id: &'a str,
    ) -> BoxFuture<'a, Result<Answer, TransportError>> {
        Box::pin(async move {
            let mut auth = HeaderValue::from_str(&format!("Bearer {bearer}")).map_err(|_| {
                TransportError("the access token is not a valid header value".into())
            })?;
            auth.set_sensitive(true);
            let resp = self
                .client
                .post(self.url.clone())
                .header(AUTHORIZATION, auth)
                .header(CONTENT_TYPE, "application/json")
                .header(CONTENT_ENCODING, "gzip")
                .header("x-ms-client-request-id", request_id)
                .header("Accept", "application/json")
                .body(gzip_body)
                .send()
                .await
                .map_err(|e| TransportError(describe(&e)))?;
            let status = resp.status().as_u16();
            let h = resp.headers();
            let mut answer = Answer {
                status,
                retry_after: header(h, "retry-after"),
                retry_after_ms: header(h, "retry-after-ms")
                    .or_else(|| header(h, "x-ms-retry-after-ms")),
                error_code: header(h, "x-ms-error-code"),
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

/// reqwest's error with its causes, which hold the useful part ("connection refused").
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut msg = if e.is_timeout() {
        "request timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

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
