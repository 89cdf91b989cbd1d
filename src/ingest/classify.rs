//! The delivery policy as a pure function: an HTTP answer in, an [`Action`] out.
//!
//! | answer | action |
//! |---|---|
//! | 2xx | accepted |
//! | 400 about the request as a whole ([`REQUEST_LEVEL_CODES`]: a stream the DCR does not declare, …) | misconfigured: no bisect, hold the rows, say what to fix |
//! | other 400 | bisect: the batch holds a row the service refuses |
//! | 401 | new token, retry |
//! | 403, 404 | retry slowly for the permission grace window |
//! | 408, 429, 503 | throttled: wait `Retry-After` (every sender of the DCR), else back off |
//! | 413 | split the batch in two |
//! | other 5xx | back off and retry |
//! | 3xx, other 4xx | refuse the whole batch (retrying cannot help) |

use std::time::Duration;

use jiff::Timestamp;

/// The parts of an HTTP answer the policy looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// `Retry-After`: seconds or an HTTP date.
    pub retry_after: Option<String>,
    /// `retry-after-ms` or `x-ms-retry-after-ms`.
    pub retry_after_ms: Option<String>,
    /// `x-ms-error-code`.
    pub error_code: Option<String>,
    /// `x-ms-request-id`: the service's id of this request, for support tickets.
    pub request_id: Option<String>,
    /// The body, cut to a few KiB.
    pub body: String,
}

/// What to do with a batch after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Accepted,
    /// 400 about the content: some row is refused; bisect to find it, deliver the rest.
    Bisect {
        reason: String,
    },
    /// 400 about the request as a whole (the stream, the DCR, the endpoint): no row can get
    /// through until the configuration is fixed, so nothing is bisected or refused.
    Misconfigured {
        /// The service's error code (`InvalidStream`, …).
        code: String,
        reason: String,
    },
    /// Refuse every row of the batch (a 3xx or a 4xx that no retry or split can fix).
    RejectAll {
        reason: String,
    },
    /// 401: drop the token and retry with a new one.
    RefreshToken {
        reason: String,
    },
    /// 403/404: likely a role grant or a new DCR still propagating (404 is an unknown DCR;
    /// an undeclared stream is a 400 [`Action::Misconfigured`]).
    Permission {
        status: u16,
        reason: String,
    },
    /// 408/429/503: wait, pausing every sender of the DCR.
    Throttled {
        retry_after: Option<Duration>,
    },
    /// 413: split in two.
    TooLarge,
    /// Other 5xx: back off and retry.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
}

/// The statuses the policy has a rule for (and the service is known to answer), which
/// `dcrship_requests_total{status}` starts at 0 for each output, so the first 403 shows in
/// `increase()` and in alerts. Others are counted from their first answer.
pub const KNOWN_STATUSES: &[u16] = &[204, 400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 504];

/// Longest wait a `Retry-After` is believed for; past it, something is wrong with the header.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Classifies an answer. `now` reads HTTP-date `Retry-After` values.
pub fn classify(a: &Answer, now: Timestamp) -> Action {
    let retry_after = || retry_after(a, now);
    match a.status {
        200..=299 => Action::Accepted,
        400 => match error_code(a) {
            Some(code) if is_request_level(&code) => Action::Misconfigured {
                code,
                reason: service_reason(a),
            },
            _ => Action::Bisect {
                reason: service_reason(a),
            },
        },
        401 => Action::RefreshToken {
            reason: service_reason(a),
        },
        403 | 404 => Action::Permission {
            status: a.status,
            reason: service_reason(a),
        },
        408 | 429 | 503 => Action::Throttled {
            retry_after: retry_after(),
        },
        413 => Action::TooLarge,
        500..=599 => Action::Transient {
            reason: service_reason(a),
            retry_after: retry_after(),
        },
        _ => Action::RejectAll {
            reason: service_reason(a),
        },
    }
}

/// 400 error codes that say the request as a whole is wrong, not a row of it: splitting the
/// batch cannot help, every half gets the same answer. Any other 400 code is taken as being
/// about the content (malformed JSON, `RecordsTimeRangeIsMoreThan30Minutes`, which splitting
/// does fix) and bisected; a 400 whose code is not known here is first checked with an empty
/// request by the sender (see `Sender`), so an unlisted code costs one request, not thousands.
///
/// Where each was seen (HTTP 400 with the code in `x-ms-error-code` and `error.code`):
/// - `InvalidStream`: "The stream Custom-X was not configured in the data collection rule with
///   immutable Id dcr-…" (issue 12's session recordings; the same text in the troubleshooting
///   notes of a Logstash-to-Sentinel deployment, which adds that a stream just added to the DCR
///   takes 3–5 minutes to reach the endpoint; Netskope's Azure Monitor plugin maps it to "table
///   not in the workspace").
/// - `InvalidDcrImmutableId`: the DCR id is not one this endpoint serves, e.g. the DCE and the
///   DCR are in different regions (Netskope's Azure Monitor plugin, `handle_error`).
/// - `InvalidApiVersion`: "The api version is invalid. Allowed Api versions:
///   2021-11-01-preview,2023-04-24." — the endpoint is a metrics-ingestion endpoint, not a logs
///   one (Azure/azure-sdk-for-net#46439; that body spells its keys `Error`/`Code`).
/// - `NotFound`: the DCR id does not exist; Azure answers it with 404 (azure-sdk-assets, Python
///   `test_send_logs_error` recording: `x-ms-error-code: NotFound`, "Data collection rule with
///   immutable Id 'bad-rule' not found."), listed here in case it comes with a 400.
///
/// Not in this list because they are not 400s: `ContentLengthLimitExceeded` is 413 ("Maximum
/// allowed content length: 1048576 bytes (1 MB)", Azure.Monitor.Ingestion's live tests),
/// `InvalidAudience` is 401, `OperationFailed` is 403.
pub const REQUEST_LEVEL_CODES: &[&str] = &[
    "InvalidStream",
    "InvalidDcrImmutableId",
    "InvalidApiVersion",
    "NotFound",
];

/// True for a 400 code of [`REQUEST_LEVEL_CODES`] (any letter case).
pub fn is_request_level(code: &str) -> bool {
    REQUEST_LEVEL_CODES
        .iter()
        .any(|c| c.eq_ignore_ascii_case(code.trim()))
}

/// The service's error code: the `x-ms-error-code` header first (the service sets it on every
/// error), then the body's `error.code`.
pub fn error_code(a: &Answer) -> Option<String> {
    a.error_code
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .or_else(|| service_error(&a.body).0)
}

/// `error.code` and `error.message` of an error body. Key case is ignored: most answers write
/// `{"error":{"code","message"}}`, some `{"Error":{"Code","Message"}}`.
pub fn service_error(body: &str) -> (Option<String>, Option<String>) {
    let Ok(serde_json::Value::Object(top)) = serde_json::from_str::<serde_json::Value>(body) else {
        return (None, None);
    };
    let get = |m: &serde_json::Map<String, serde_json::Value>, key: &str| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    let Some(serde_json::Value::Object(inner)) = get(&top, "error") else {
        return (None, None);
    };
    let text = |key: &str| match get(&inner, key) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s),
        _ => None,
    };
    (text("code"), text("message"))
}

/// The wait the service asks for: `retry-after-ms` / `x-ms-retry-after-ms` first (finer), then
/// `Retry-After` as seconds or as an HTTP date. Unreadable or absurd values count as absent.
pub fn retry_after(a: &Answer, now: Timestamp) -> Option<Duration> {
    if let Some(ms) = a.retry_after_ms.as_deref() {
        if let Ok(ms) = ms.trim().parse::<f64>() {
            if ms.is_finite() && ms >= 0.0 {
                return Some(Duration::from_millis(ms as u64).min(MAX_RETRY_AFTER));
            }
        }
    }
    let v = a.retry_after.as_deref()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(
                secs.min(MAX_RETRY_AFTER.as_secs_f64()),
            ));
        }
        return None;
    }
    let when = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let wait = when.duration_since(now);
    if wait.is_negative() {
        return Some(Duration::ZERO);
    }
    Duration::try_from(wait)
        .ok()
        .map(|d| d.min(MAX_RETRY_AFTER))
}

/// A one-line reason from the service's error body (`{"error":{"code","message"}}`), else the
/// status and the start of the body.
pub fn service_reason(a: &Answer) -> String {
    let (body_code, message) = service_error(&a.body);
    let code = body_code.or_else(|| a.error_code.clone());
    let detail = match (code, message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        (None, Some(m)) => m,
        (None, None) => {
            let text: String = a.body.chars().take(200).collect();
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        }
    };
    if detail.is_empty() {
        format!("HTTP {}", a.status)
    } else {
        format!("HTTP {}: {}", a.status, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-23T12:00:00Z".parse().expect("ts")
    }

    fn answer(status: u16) -> Answer {
        Answer {
            status,
            ..Answer::default()
        }
    }

    #[test]
    fn the_policy_table() {
        let err400 = Answer {
            body: r#"{"error":{"code":"InvalidRequest","message":"bad row"}}"#.into(),
            ..answer(400)
        };
        let cases: Vec<(Answer, Action)> = vec![
            (answer(204), Action::Accepted),
            (answer(200), Action::Accepted),
            (
                err400,
                Action::Bisect {
                    reason: "HTTP 400: InvalidRequest: bad row".into(),
                },
            ),
            (
                answer(401),
                Action::RefreshToken {
                    reason: "HTTP 401".into(),
                },
            ),
            (
                answer(403),
                Action::Permission {
                    status: 403,
                    reason: "HTTP 403".into(),
                },
            ),
            (
                answer(404),
                Action::Permission {
                    status: 404,
                    reason: "HTTP 404".into(),
                },
            ),
            (answer(408), Action::Throttled { retry_after: None }),
            (answer(429), Action::Throttled { retry_after: None }),
            (answer(503), Action::Throttled { retry_after: None }),
            (answer(413), Action::TooLarge),
            (
                answer(500),
                Action::Transient {
                    reason: "HTTP 500".into(),
                    retry_after: None,
                },
            ),
            (
                answer(502),
                Action::Transient {
                    reason: "HTTP 502".into(),
                    retry_after: None,
                },
            ),
            (
                answer(504),
                Action::Transient {
                    reason: "HTTP 504".into(),
                    retry_after: None,
                },
            ),
            (
                answer(301),
                Action::RejectAll {
                    reason: "HTTP 301".into(),
                },
            ),
            (
                answer(405),
                Action::RejectAll {
                    reason: "HTTP 405".into(),
                },
            ),
            (
                answer(415),
                Action::RejectAll {
                    reason: "HTTP 415".into(),
                },
            ),
        ];
        for (a, want) in cases {
            assert_eq!(classify(&a, now()), want, "status {}", a.status);
        }
    }

    #[test]
    fn a_400_about_the_request_is_told_from_a_400_about_rows() {
        let invalid_stream = r#"{"error":{"code":"InvalidStream","message":"The stream Custom-X_CL was not configured in the data collection rule with immutable Id dcr-0123."}}"#;
        let with = |header: Option<&str>, body: &str| Answer {
            error_code: header.map(String::from),
            body: body.to_string(),
            ..answer(400)
        };
        let misconfigured = |code: &str, reason: &str| Action::Misconfigured {
            code: code.into(),
            reason: reason.into(),
        };
        let stream_reason = "HTTP 400: InvalidStream: The stream Custom-X_CL was not configured in the data collection rule with immutable Id dcr-0123.";
        let cases = [
            // header and body agree
            (
                with(Some("InvalidStream"), invalid_stream),
                misconfigured("InvalidStream", stream_reason),
            ),
            // body only
            (
                with(None, invalid_stream),
                misconfigured("InvalidStream", stream_reason),
            ),
            // header only, body not JSON
            (
                with(Some("InvalidDcrImmutableId"), "bad"),
                misconfigured("InvalidDcrImmutableId", "HTTP 400: InvalidDcrImmutableId"),
            ),
            // capitalised keys, as a metrics endpoint writes them
            (
                with(
                    None,
                    r#"{"Error":{"Code":"InvalidApiVersion","Message":"The api version is invalid."}}"#,
                ),
                misconfigured(
                    "InvalidApiVersion",
                    "HTTP 400: InvalidApiVersion: The api version is invalid.",
                ),
            ),
            // any letter case of the code
            (
                with(Some("invalidstream"), ""),
                misconfigured("invalidstream", "HTTP 400: invalidstream"),
            ),
            // the header decides over the body
            (
                with(Some("InvalidPayload"), invalid_stream),
                Action::Bisect {
                    reason: stream_reason.into(),
                },
            ),
            // row content: bisect
            (
                with(
                    None,
                    r#"{"error":{"code":"RecordsTimeRangeIsMoreThan30Minutes","message":"span"}}"#,
                ),
                Action::Bisect {
                    reason: "HTTP 400: RecordsTimeRangeIsMoreThan30Minutes: span".into(),
                },
            ),
            (
                with(None, "malformed JSON"),
                Action::Bisect {
                    reason: "HTTP 400: malformed JSON".into(),
                },
            ),
        ];
        for (a, want) in cases {
            assert_eq!(classify(&a, now()), want, "{a:?}");
        }
    }

    #[test]
    fn retry_after_forms() {
        let with = |ra: Option<&str>, ms: Option<&str>| Answer {
            retry_after: ra.map(String::from),
            retry_after_ms: ms.map(String::from),
            ..answer(429)
        };
        let cases = [
            (with(Some("7"), None), Some(Duration::from_secs(7))),
            (with(Some(" 1.5 "), None), Some(Duration::from_millis(1500))),
            (
                with(Some("Mon, 23 Nov 2026 12:00:30 GMT"), None),
                Some(Duration::from_secs(30)),
            ),
            (
                with(Some("Mon, 23 Nov 2026 11:00:00 GMT"), None),
                Some(Duration::ZERO),
            ),
            (with(Some("soon"), None), None),
            (with(Some("-3"), None), None),
            (with(Some("999999"), None), Some(MAX_RETRY_AFTER)),
            (
                with(Some("7"), Some("250")),
                Some(Duration::from_millis(250)),
            ),
            (with(None, Some("x")), None),
            (with(None, None), None),
        ];
        for (a, want) in cases {
            assert_eq!(retry_after(&a, now()), want, "{a:?}");
            assert_eq!(classify(&a, now()), Action::Throttled { retry_after: want });
        }
    }

    #[test]
    fn reasons_prefer_the_service_error_and_survive_garbage() {
        let html = Answer {
            body: "<html>\n  <body>Bad   Gateway</body></html>".into(),
            ..answer(502)
        };
        assert_eq!(
            service_reason(&html),
            "HTTP 502: <html> <body>Bad Gateway</body></html>"
        );
        let coded = Answer {
            error_code: Some("OperationFailed".into()),
            ..answer(403)
        };
        assert_eq!(service_reason(&coded), "HTTP 403: OperationFailed");
    }
}
