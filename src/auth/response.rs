//! Reading token endpoint answers: the token on success, a short summary on failure.
//!
//! IMDS writes every value as a string (`"expires_in": "3599"`), Entra writes numbers; both are
//! accepted. Nothing here puts response text that could hold a token into an error: a success
//! body is only ever read field by field.

use std::time::Duration;

use serde_json::Value;

use super::{AccessToken, AuthError};
use crate::secret::Secret;

/// The largest token-endpoint answer read. A token answer is a few KiB (a token with many group
/// claims perhaps 10); anything larger is refused unread, so a broken or hostile endpoint cannot
/// make us buffer megabytes.
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why an answer's body was not read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Over [`MAX_ANSWER_BYTES`]: reading stopped there.
    TooLarge,
    /// The connection failed while reading.
    Io(reqwest::Error),
}

/// What a too-large answer is called in messages.
pub(crate) const TOO_LARGE: &str =
    "the answer is larger than 64 KiB, far more than a token answer; refused without reading it all";

/// Reads an answer's body in chunks, stopping as soon as it passes [`MAX_ANSWER_BYTES`]
/// (a `Content-Length` over the cap stops it before the first byte).
pub(crate) async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Io)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The token from a 200 answer of Entra, IMDS or a compatible endpoint.
///
/// When both `expires_on` and `expires_in` are given, the earlier of the two expiries counts:
/// IMDS counts `expires_in` from when it issued the token it hands out from its own cache, so
/// `now + expires_in` can be later than the real expiry; and should this machine's clock run
/// behind, `expires_on` would look later than it is, and `expires_in` caps it.
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
    let relative = match fields.get("expires_in").and_then(integer) {
        Some(secs) => {
            let secs = u64::try_from(secs).unwrap_or(0);
            Some(
                now.checked_add(Duration::from_secs(secs))
                    .map_err(|_| failed(format!("expires_in {secs} is out of range")))?,
            )
        }
        None => None,
    };
    let absolute = match fields.get("expires_on") {
        Some(value) => match expires_on(value) {
            Some(at) => Some(at),
            // A relative lifetime still tells us enough; without one, say what was not understood.
            None if relative.is_some() => None,
            None => {
                return Err(failed(format!(
                    "the token answer's expires_on is not a time dcrship knows ({})",
                    describe_value(value)
                )))
            }
        },
        None => None,
    };
    let expires_at = match (absolute, relative) {
        (Some(on), Some(rel)) => on.min(rel),
        (Some(at), None) | (None, Some(at)) => at,
        (None, None) => {
            return Err(failed(
                "the token answer has no usable expires_in or expires_on".into(),
            ))
        }
    };
    Ok(AccessToken { token, expires_at })
}

/// What kind of value an unreadable `expires_on` was (its text is not a secret, but keep it short).
fn describe_value(value: &Value) -> String {
    match value {
        Value::String(s) if s.len() <= 40 => format!("{s:?}"),
        Value::String(s) => format!("a string of {} bytes", s.len()),
        Value::Number(n) => n.to_string(),
        other => format!(
            "a JSON {}",
            if other.is_object() { "object" } else { "value" }
        ),
    }
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

/// `expires_on` in every form the token endpoints write it: epoch seconds (a number or a
/// string: IMDS, Arc, App Service 2019-08-01), an RFC 3339 / ISO 8601 time, or the date string of
/// App Service's 2017-09-01 API and Azure ML (`06/20/2019 02:57:58 +00:00` on Linux,
/// `1/16/2020 5:24:12 AM +00:00` on Windows). A time without an offset is UTC.
pub(crate) fn expires_on(value: &Value) -> Option<jiff::Timestamp> {
    if let Some(epoch) = integer(value) {
        return jiff::Timestamp::from_second(epoch).ok();
    }
    let Value::String(s) = value else {
        return None;
    };
    let s = s.trim();
    if let Ok(at) = s.parse::<jiff::Timestamp>() {
        return Some(at);
    }
    // ISO 8601 without an offset.
    if let Ok(civil) = s.parse::<jiff::civil::DateTime>() {
        return civil
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp());
    }
    const WITH_OFFSET: [&str; 2] = ["%m/%d/%Y %H:%M:%S %:z", "%m/%d/%Y %I:%M:%S %p %:z"];
    const WITHOUT: [&str; 2] = ["%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M:%S %p"];
    if let Some(at) = WITH_OFFSET
        .iter()
        .find_map(|format| jiff::fmt::strtime::parse(format, s).ok())
        .and_then(|parsed| parsed.to_timestamp().ok())
    {
        return Some(at);
    }
    WITHOUT
        .iter()
        .find_map(|format| jiff::fmt::strtime::parse(format, s).ok())
        .and_then(|parsed| parsed.to_datetime().ok())
        .and_then(|civil| civil.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|zoned| zoned.timestamp())
}

/// Longest summary kept from an error body, so an HTML error page does not flood the log.
const MAX_SUMMARY: usize = 300;

/// A one-line summary of an error answer: `error: first line of error_description`
/// (`invalid_client: AADSTS7000215: Invalid client secret provided. …`), else the body's first
/// line. Entra's description goes on with trace and correlation ids over several lines; the first
/// line is the part a person acts on.
///
/// Every one of `secrets` (what the request carried that the endpoint might echo) is replaced by
/// `<redacted>` before the summary is cut to length, so no part of a secret survives a cut.
pub(crate) fn error_summary(body: &[u8], secrets: &[&str]) -> String {
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
    truncate(redact(summary, secrets), MAX_SUMMARY)
}

/// Replaces every copy of each secret (and of its form-encoded spelling, which is how a form
/// field travels) with `<redacted>`.
pub(crate) fn redact(mut text: String, secrets: &[&str]) -> String {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        for form in [*secret, encoded.as_str()] {
            if text.contains(form) {
                text = text.replace(form, "<redacted>");
            }
        }
    }
    text
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
        let on = jiff::Timestamp::now().as_second() + 3599;
        let imds = format!(
            r#"{{"access_token":"abc","refresh_token":"","expires_in":"3599",
            "expires_on":"{on}","not_before":"1506480273",
            "resource":"https://monitor.azure.com","token_type":"Bearer"}}"#
        );
        let t = parse_token("t", imds.as_bytes()).unwrap();
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
    fn expires_on_forms() {
        // (expires_on as JSON, the instant it means)
        let table = [
            (r#"1506484173"#, "2017-09-27T03:49:33Z"),
            (r#""1506484173""#, "2017-09-27T03:49:33Z"),
            (r#"" 1506484173 ""#, "2017-09-27T03:49:33Z"),
            (r#"1506484173.75"#, "2017-09-27T03:49:33Z"),
            (r#""2026-12-07T09:00:00Z""#, "2026-12-07T09:00:00Z"),
            (r#""2026-12-07T09:00:00+02:00""#, "2026-12-07T07:00:00Z"),
            (
                r#""2026-12-07T09:00:00.1234567+00:00""#,
                "2026-12-07T09:00:00.1234567Z",
            ),
            (r#""2026-12-07 09:00:00""#, "2026-12-07T09:00:00Z"),
            (r#""2026-12-07T09:00:00""#, "2026-12-07T09:00:00Z"),
            (r#""12/07/2026 09:00:00 +00:00""#, "2026-12-07T09:00:00Z"),
            (r#""12/07/2026 09:00:00""#, "2026-12-07T09:00:00Z"),
            (r#""06/20/2019 02:57:58 +00:00""#, "2019-06-20T02:57:58Z"),
            (r#""1/16/2020 5:24:12 AM +00:00""#, "2020-01-16T05:24:12Z"),
            (r#""1/16/2020 5:24:12 PM +02:00""#, "2020-01-16T15:24:12Z"),
            (r#""1/16/2020 5:24:12 PM""#, "2020-01-16T17:24:12Z"),
        ];
        for (json, expected) in table {
            let value: Value = serde_json::from_str(json).unwrap();
            let got = expires_on(&value).map(|t| t.to_string());
            assert_eq!(got.as_deref(), Some(expected), "{json}");
        }
        for bad in [
            r#""soon""#,
            r#""13/45/2026 09:00:00""#,
            "null",
            "[1]",
            r#""""#,
        ] {
            let value: Value = serde_json::from_str(bad).unwrap();
            assert_eq!(expires_on(&value), None, "{bad}");
        }
    }

    #[test]
    fn the_earlier_expiry_wins_when_both_are_given() {
        let now = jiff::Timestamp::now().as_second();
        // IMDS handing out a cached token: expires_in counts from issue, expires_on is the truth.
        let cached = format!(
            r#"{{"access_token":"a","expires_in":"86399","expires_on":"{}"}}"#,
            now + 600
        );
        let t = parse_token("t", cached.as_bytes()).unwrap();
        assert_eq!(t.expires_at.as_second(), now + 600);
        // A clock running behind makes expires_on look later: expires_in caps it.
        let skewed = format!(
            r#"{{"access_token":"a","expires_in":3599,"expires_on":{}}}"#,
            now + 7200
        );
        let t = parse_token("t", skewed.as_bytes()).unwrap();
        let left = t.expires_at.as_second() - now;
        assert!((3590..=3600).contains(&left), "{left}");
        // An expires_on in a form not understood: expires_in is enough.
        let odd = r#"{"access_token":"a","expires_in":3599,"expires_on":"tomorrow"}"#;
        assert!(parse_token("t", odd.as_bytes()).is_ok());
        // Alone, it is an error that says what it got.
        let only = r#"{"access_token":"a","expires_on":"tomorrow"}"#;
        let e = parse_token("t", only.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("expires_on") && e.contains("tomorrow"), "{e}");
        // The App Service date form, with the access token alongside.
        let app = r#"{"access_token":"a","expires_on":"12/07/2026 09:00:00 +00:00"}"#;
        assert_eq!(
            parse_token("t", app.as_bytes())
                .unwrap()
                .expires_at
                .to_string(),
            "2026-12-07T09:00:00Z"
        );
    }

    #[test]
    fn a_secret_across_the_cut_never_shows_in_part() {
        let secret = "S3CRET-abcdefghijklmnopqrstuvwxyz-0123456789";
        // Place the secret at every offset around the 300-character cut.
        for pad in (MAX_SUMMARY - secret.len() - 5)..(MAX_SUMMARY + 5) {
            let description = format!("{}{secret} trailing words", "x".repeat(pad));
            let body = serde_json::json!({"error": "e", "error_description": description});
            let summary = error_summary(body.to_string().as_bytes(), &[secret]);
            // No run of 6 or more characters of the secret survives.
            for window in secret.as_bytes().windows(6) {
                let part = std::str::from_utf8(window).unwrap();
                assert!(!summary.contains(part), "pad {pad}: {part:?} in {summary}");
            }
        }
        // The form-encoded spelling is redacted too.
        let secret = "a+b/c=d&e";
        let body = format!(
            "invalid client_secret=a%2Bb%2Fc%3Dd%26e {}",
            "y".repeat(400)
        );
        assert!(!error_summary(body.as_bytes(), &[secret]).contains("a%2Bb"));
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
            error_summary(entra, &[]),
            "invalid_client: AADSTS7000215: Invalid client secret provided."
        );
        let imds = br#"{"error":"invalid_request","error_description":"Identity not found"}"#;
        assert_eq!(
            error_summary(imds, &[]),
            "invalid_request: Identity not found"
        );
        assert_eq!(
            error_summary(br#"{"Message":"No managed identity was found"}"#, &[]),
            "No managed identity was found"
        );
        assert_eq!(error_summary(b"Bad Gateway\nmore", &[]), "Bad Gateway");
        assert_eq!(error_summary(b"", &[]), "(empty body)");
        let long = "é".repeat(400);
        let cut = error_summary(long.as_bytes(), &[]);
        assert!(cut.len() <= MAX_SUMMARY + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
