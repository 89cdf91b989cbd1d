//! Reading token endpoint answers: the token on success, a short summary on failure.
//!
//! IMDS writes every value as a string (`"expires_in": "3599"`), Entra writes numbers; both are
//! accepted. Nothing here puts response text that could hold a token into an error: a success
//! body is only ever read field by field.

use std::time::Duration;

use serde_json::Value;

use super::{AccessToken, AuthError};
use crate::secret::Secret;

/// The token from a 200 answer of Entra, IMDS or a compatible endpoint.
pub(crate) fn parse_token(
    source_name: &'static str,
    body: &[u8],
) -> Result<AccessToken, AuthError> {
    let failed = |reason: String| AuthError::Failed {
        source_name,
        reason,
    };
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(failed(format!(
            "the token endpoint answered 200 with a body that is not a JSON object ({} bytes)",
            body.len()
        )));
    };
    let token = match fields.get("access_token") {
        Some(Value::String(t)) if !t.trim().is_empty() => Secret::new(t.trim()),
        _ => return Err(failed("the token answer has no access_token".into())),
    };
    let now = jiff::Timestamp::now();
    // Prefer the relative lifetime: it is right even when this machine's clock is off.
    let expires_at = if let Some(secs) = fields.get("expires_in").and_then(integer) {
        let secs = u64::try_from(secs).unwrap_or(0);
        now.checked_add(Duration::from_secs(secs))
            .map_err(|_| failed(format!("expires_in {secs} is out of range")))?
    } else if let Some(epoch) = fields.get("expires_on").and_then(integer) {
        jiff::Timestamp::from_second(epoch)
            .map_err(|_| failed(format!("expires_on {epoch} is out of range")))?
    } else if let Some(at) = fields.get("expires_on").and_then(date_string) {
        at
    } else {
        return Err(failed(
            "the token answer has no usable expires_in or expires_on".into(),
        ));
    };
    Ok(AccessToken { token, expires_at })
}

/// A number, or a string holding one (IMDS sends `"3599"`).
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().map(|f| f as i64))
        }
        _ => None,
    }
}

/// The date string older managed-identity endpoints (App Service's 2017-09-01 API, Azure ML)
/// put in `expires_on`: `06/20/2019 02:57:58 +00:00` (Linux) or `1/16/2020 5:24:12 AM +00:00`
/// (Windows).
fn date_string(value: &Value) -> Option<jiff::Timestamp> {
    let Value::String(s) = value else {
        return None;
    };
    let s = s.trim();
    ["%m/%d/%Y %H:%M:%S %:z", "%m/%d/%Y %I:%M:%S %p %:z"]
        .iter()
        .find_map(|format| jiff::fmt::strtime::parse(format, s).ok())
        .and_then(|parsed| parsed.to_timestamp().ok())
}

/// Longest summary kept from an error body, so an HTML error page does not flood the log.
const MAX_SUMMARY: usize = 300;

/// A one-line summary of an error answer: `error: first line of error_description`
/// (`invalid_client: AADSTS7000215: Invalid client secret provided. …`), else the body's first
/// line. Entra's description goes on with trace and correlation ids over several lines; the first
/// line is the part a person acts on.
pub(crate) fn error_summary(body: &[u8]) -> String {
    let summary = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => {
            let text = |key: &str| match fields.get(key) {
                Some(Value::String(s)) if !s.trim().is_empty() => Some(first_line(s)),
                _ => None,
            };
            let error = text("error");
            let description = text("error_description")
                .or_else(|| text("message"))
                .or_else(|| text("Message"));
            match (error, description) {
                (Some(e), Some(d)) => format!("{e}: {d}"),
                (Some(one), None) | (None, Some(one)) => one,
                (None, None) => first_line(&String::from_utf8_lossy(body)),
            }
        }
        _ => first_line(&String::from_utf8_lossy(body)),
    };
    if summary.is_empty() {
        return "(empty body)".into();
    }
    truncate(summary, MAX_SUMMARY)
}

fn first_line(text: &str) -> String {
    text.trim()
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push('…');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imds_strings_and_entra_numbers() {
        let imds = br#"{"access_token":"abc","refresh_token":"","expires_in":"3599",
            "expires_on":"1506484173","not_before":"1506480273",
            "resource":"https://monitor.azure.com","token_type":"Bearer"}"#;
        let t = parse_token("t", imds).unwrap();
        assert_eq!(t.token.expose(), "abc");
        let left = t
            .expires_at
            .duration_since(jiff::Timestamp::now())
            .as_secs();
        assert!((3590..=3599).contains(&left), "{left}");

        let entra = br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"xyz"}"#;
        assert_eq!(parse_token("t", entra).unwrap().token.expose(), "xyz");

        let only_on = br#"{"access_token":"a","expires_on":"1506484173"}"#;
        assert_eq!(
            parse_token("t", only_on).unwrap().expires_at.as_second(),
            1_506_484_173
        );
        let on_number = br#"{"access_token":"a","expires_on":1506484173}"#;
        assert_eq!(
            parse_token("t", on_number).unwrap().expires_at.as_second(),
            1_506_484_173
        );
    }

    #[test]
    fn legacy_date_strings_in_expires_on() {
        for (text, expected) in [
            ("06/20/2019 02:57:58 +00:00", "2019-06-20T02:57:58Z"),
            ("1/16/2020 5:24:12 AM +00:00", "2020-01-16T05:24:12Z"),
            ("1/16/2020 5:24:12 PM +02:00", "2020-01-16T15:24:12Z"),
        ] {
            let body = format!(r#"{{"access_token":"a","expires_on":"{text}"}}"#);
            let token = parse_token("t", body.as_bytes()).unwrap();
            assert_eq!(token.expires_at.to_string(), expected, "{text}");
        }
    }

    #[test]
    fn bad_answers_name_the_problem_not_the_body() {
        let cases: [&[u8]; 5] = [
            b"<html>secret-token-here</html>",
            br#"{"expires_in":"3599"}"#,
            br#"{"access_token":"secret-token-here"}"#,
            br#"{"access_token":"secret-token-here","expires_in":"soon"}"#,
            br#"["secret-token-here"]"#,
        ];
        for body in cases {
            let e = parse_token("t", body).unwrap_err();
            assert!(!format!("{e} {e:?}").contains("secret-token-here"), "{e}");
        }
    }

    #[test]
    fn summaries() {
        let entra = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1\r\nCorrelation ID: 2","error_codes":[7000215]}"#;
        assert_eq!(
            error_summary(entra),
            "invalid_client: AADSTS7000215: Invalid client secret provided."
        );
        let imds = br#"{"error":"invalid_request","error_description":"Identity not found"}"#;
        assert_eq!(error_summary(imds), "invalid_request: Identity not found");
        assert_eq!(
            error_summary(br#"{"Message":"No managed identity was found"}"#),
            "No managed identity was found"
        );
        assert_eq!(error_summary(b"Bad Gateway\nmore"), "Bad Gateway");
        assert_eq!(error_summary(b""), "(empty body)");
        let long = "é".repeat(400);
        let cut = error_summary(long.as_bytes());
        assert!(cut.len() <= MAX_SUMMARY + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
