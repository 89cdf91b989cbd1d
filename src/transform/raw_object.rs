//! A JSON object read as (key, raw value text) pairs borrowed from the line: validated (by
//! [`super::json_scan`] in the common case, else by serde_json), but no value tree is built, so
//! a row can be re-emitted by copying its values verbatim and rewriting only what changes
//! (`TimeGenerated`, an over-long string).

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::columns::Val;
use super::fields::Member;

/// A key, borrowed when it has no escapes.
pub struct Key<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The members of one object, in order, each value as its JSON text; a repeated key keeps its
/// last value (as a JSON map would), so the row never carries duplicate columns.
pub struct RawObject<'a> {
    pub members: Vec<(Cow<'a, str>, &'a str)>,
}

impl<'a> RawObject<'a> {
    fn from_members(all: impl Iterator<Item = (Cow<'a, str>, &'a str)>) -> Self {
        let mut members: Vec<(Cow<'a, str>, &'a str)> = Vec::with_capacity(12);
        for (k, v) in all {
            if let Some(slot) = members.iter_mut().find(|(old, _)| *old == k) {
                slot.1 = v;
            } else {
                members.push((k, v));
            }
        }
        RawObject { members }
    }
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawObject<'de>, A::Error> {
                let mut all = Vec::with_capacity(m.size_hint().unwrap_or(12));
                while let Some((Key(k), v)) = m.next_entry::<Key<'de>, &'de RawValue>()? {
                    all.push((k, v.get()));
                }
                Ok(RawObject::from_members(all.into_iter()))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses one object into row members; `Err` is the reason the text is not a row.
/// Goes through [`RawObject`] rather than a visitor of its own: a second instantiation of
/// serde's map reading costs the unshaped fast path its inlining (about 2% of a dry run).
pub fn parse_members(text: &str) -> Result<Vec<Member<'_>>, String> {
    Ok(parse(text)?
        .members
        .into_iter()
        .map(|(k, v)| (k, Val::Json(v)))
        .collect())
}

/// Parses one object; `Err` is the reason the text is not a row.
pub fn parse(text: &str) -> Result<RawObject<'_>, String> {
    if let Some(members) = super::json_scan::object(text) {
        return Ok(RawObject { members });
    }
    match serde_json::from_str::<RawObject<'_>>(text) {
        Ok(o) => Ok(o),
        Err(e) => Err(reason(text, &e)),
    }
}

/// "invalid JSON: …", or "not a JSON object but an array" when the text is valid JSON.
fn reason(text: &str, e: &serde_json::Error) -> String {
    if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
        let kind = match text.trim_start().as_bytes().first() {
            Some(b'[') => "an array",
            Some(b'"') => "a string",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            _ => "a number",
        };
        format!("not a JSON object but {kind}")
    } else {
        format!("invalid JSON: {e}")
    }
}

/// The string a valid JSON value's text holds, if it is a string (borrowed when it has no
/// escapes).
pub fn json_text_str(t: &str) -> Option<Cow<'_, str>> {
    let inner = t.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(t).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_keep_order_and_raw_text_and_last_duplicate_wins() {
        let o = parse(r#"{"b": [1, 2], "a\"x":"s","b":{"n":null}}"#).expect("object");
        let got: Vec<(String, &str)> = o.members.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(
            got,
            vec![("b".into(), r#"{"n":null}"#), ("a\"x".into(), r#""s""#)]
        );
    }

    #[test]
    fn reasons_for_what_is_not_an_object() {
        assert_eq!(
            parse("[1]").err().as_deref(),
            Some("not a JSON object but an array")
        );
        assert_eq!(
            parse(" 5").err().as_deref(),
            Some("not a JSON object but a number")
        );
        assert_eq!(
            parse("null").err().as_deref(),
            Some("not a JSON object but null")
        );
        assert!(parse("not json")
            .err()
            .is_some_and(|e| e.starts_with("invalid JSON: ")));
        assert!(parse("{\"a\":1")
            .err()
            .is_some_and(|e| e.starts_with("invalid JSON: ")));
        assert!(parse("{\"a\":1} x")
            .err()
            .is_some_and(|e| e.starts_with("invalid JSON: ")));
    }

    #[test]
    fn raw_strings_unescape_only_when_needed() {
        let o = parse(r#"{"a":"plain","b":"tab\t","c":3}"#).expect("object");
        assert!(matches!(
            json_text_str(o.members[0].1),
            Some(Cow::Borrowed("plain"))
        ));
        assert_eq!(json_text_str(o.members[1].1).as_deref(), Some("tab\t"));
        assert_eq!(json_text_str(o.members[2].1), None);
    }
}
