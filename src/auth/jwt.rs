//! Reads claims from an access token, without verifying it.
//!
//! We never trust these claims for security: the ingestion service verifies the token. They are
//! read only to tell a person which principal needs the role (`oid`) and when a token handed to us
//! expires (`exp`). Nothing here logs or returns the token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

/// The principal's object id (`oid` claim): the id a role assignment names.
///
/// Only `oid`: `sub` is a pairwise id that differs per application and would mislead.
pub fn object_id(token: &str) -> Option<String> {
    match claim(token, "oid")? {
        Value::String(oid) if !oid.is_empty() => Some(oid),
        _ => None,
    }
}

/// One claim of the token's payload, or `None` when the token is not a JWT or lacks the claim.
pub fn claim(token: &str, name: &str) -> Option<Value> {
    payload(token)?.remove(name)
}

/// The decoded payload (second segment) of a compact JWS.
fn payload(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.trim().split('.');
    let (_header, body, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    // Some issuers pad base64url; the spec says not to, so accept both.
    let bytes = URL_SAFE_NO_PAD.decode(body.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An unsigned JWT with the given payload, for tests across the auth module.
    pub(crate) fn make_jwt(payload: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(payload.to_string());
        format!("{header}.{body}.c2ln")
    }

    #[test]
    fn reads_oid_and_other_claims() {
        let token = make_jwt(&serde_json::json!({
            "oid": "11111111-2222-3333-4444-555555555555",
            "sub": "not-this-one",
            "exp": 1_700_000_000,
        }));
        assert_eq!(
            object_id(&token).as_deref(),
            Some("11111111-2222-3333-4444-555555555555")
        );
        assert_eq!(claim(&token, "exp"), Some(Value::from(1_700_000_000_i64)));
        assert_eq!(claim(&token, "missing"), None);
    }

    #[test]
    fn no_oid_means_none_not_sub() {
        let token = make_jwt(&serde_json::json!({ "sub": "pairwise" }));
        assert_eq!(object_id(&token), None);
    }

    #[test]
    fn accepts_padded_base64url() {
        let token = make_jwt(&serde_json::json!({ "oid": "a" }));
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        while !parts[1].len().is_multiple_of(4) {
            parts[1].push('=');
        }
        assert_eq!(object_id(&parts.join(".")).as_deref(), Some("a"));
    }

    #[test]
    fn garbage_is_none() {
        for token in [
            "",
            "opaque-token",
            "a.b",
            "a.!!!.c",
            "a.bnVsbA.c",
            "a.WzFd.c",
        ] {
            assert_eq!(claim(token, "oid"), None, "{token}");
        }
    }
}
