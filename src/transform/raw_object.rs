//! A JSON object read as (key, raw value text) pairs borrowed from the line: validated (by
//! [`super::json_scan`] in the common case, else by serde_json), but no value tree is built, so
//! a row can be re-emitted by copying its values verbatim and rewriting only what changes
//! (`TimeGenerated`, an over-long string).

use std::borrow::Cow;
use std::collections::HashMap;
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

/// Builds [`RawObject::members`]: a repeated key keeps its first place and takes the later
/// value. Up to [`Prints::SMALL`] keys are told apart by [`Prints`] (a row has a dozen); past
/// that a hash index keeps a line of many thousand keys linear.
struct Members<'a> {
    list: Vec<(Cow<'a, str>, &'a str)>,
    prints: Prints,
    index: Option<HashMap<Cow<'a, str>, usize>>,
}

impl<'a> Members<'a> {
    fn new() -> Self {
        Members {
            list: Vec::with_capacity(12),
            prints: Prints::default(),
            index: None,
        }
    }

    fn push(&mut self, key: Cow<'a, str>, value: &'a str) {
        let n = self.list.len();
        if let Some(index) = &mut self.index {
            match index.get(key.as_ref()) {
                Some(&i) => self.list[i].1 = value,
                None => {
                    index.insert(key.clone(), n);
                    self.list.push((key, value));
                }
            }
            return;
        }
        let list = &self.list;
        match self.prints.insert(&key, |i| &list[i].0) {
            Seen::Repeat(i) => self.list[i].1 = value,
            Seen::New => self.list.push((key, value)),
            Seen::Full => {
                let mut index: HashMap<Cow<'a, str>, usize> = self
                    .list
                    .iter()
                    .enumerate()
                    .map(|(i, (k, _))| (k.clone(), i))
                    .collect();
                index.insert(key.clone(), n);
                self.list.push((key, value));
                self.index = Some(index);
            }
        }
    }
}

/// The keys of one object so far, up to [`Prints::SMALL`] of them, for telling a repeated key:
/// a cheap print of each (length and first bytes: equal keys have equal prints), and a 64-bit
/// filter of the prints, so that a new key is compared with earlier ones only when its bit is
/// already set. No allocation.
#[derive(Debug, Default)]
pub struct Prints {
    prints: [u64; Prints::SMALL],
    len: usize,
    filter: u64,
}

/// What [`Prints::insert`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// A new key, counted in as number [`Prints::len`] − 1.
    New,
    /// Key number `i` is the same.
    Repeat(usize),
    /// A new key, but [`Prints::SMALL`] are already in: nothing counted.
    Full,
}

impl Prints {
    pub const SMALL: usize = 32;

    /// Counts `key` in unless an earlier key is the same; `key_of(i)` is key number `i`.
    pub fn insert<'k, K: AsRef<str> + ?Sized + 'k>(
        &mut self,
        key: &str,
        key_of: impl Fn(usize) -> &'k K,
    ) -> Seen {
        let p = print(key);
        let b = bit(p);
        if self.filter & b != 0 {
            if let Some(i) =
                (0..self.len).find(|&i| self.prints[i] == p && key_of(i).as_ref() == key)
            {
                return Seen::Repeat(i);
            }
        }
        if self.len == Prints::SMALL {
            return Seen::Full;
        }
        self.prints[self.len] = p;
        self.len += 1;
        self.filter |= b;
        Seen::New
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Length, and the first and last bytes: equal keys have equal prints. Read as whole words
/// (overlapping for short keys), never byte by byte into a buffer: a copy of a few bytes into a
/// stack array and a word read of it stalled store forwarding, and was half the scan's time.
fn print(key: &str) -> u64 {
    let b = key.as_bytes();
    let n = b.len();
    let word = |at: usize| -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let half = |at: usize| -> u64 {
        let mut w = [0u8; 4];
        w.copy_from_slice(&b[at..at + 4]);
        u64::from(u32::from_le_bytes(w))
    };
    let (first, last) = match n {
        8.. => (word(0), word(n - 8)),
        4..=7 => (half(0), half(n - 4)),
        1..=3 => (
            u64::from(b[0]) | u64::from(b[n / 2]) << 8,
            u64::from(b[n - 1]),
        ),
        0 => (0, 0),
    };
    first ^ last.rotate_left(23) ^ ((n as u64) << 56)
}

/// One of 64 bits for a print (Fibonacci hashing: its top six bits after a multiply).
fn bit(print: u64) -> u64 {
    1 << (print.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58)
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
                let mut members = Members::new();
                while let Some((Key(k), v)) = m.next_entry::<Key<'de>, &'de RawValue>()? {
                    members.push(k, v.get());
                }
                Ok(RawObject {
                    members: members.list,
                })
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
    let mut members = Members::new();
    if super::json_scan::object(text, &mut |k, v| members.push(Cow::Borrowed(k), v)).is_some() {
        return Ok(RawObject {
            members: members.list,
        });
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

    /// Keys of every length up to 16 and keys differing only in the middle, the first byte or
    /// the last: each repeat is found as the right number, every distinct key is new, and past
    /// [`Prints::SMALL`] keys a new one is `Full`.
    #[test]
    fn prints_tell_keys_of_every_length_apart() {
        let mut keys: Vec<String> = (0..=16).map(|n| "k".repeat(n)).collect();
        keys.extend(
            [
                "TimeGenerated",
                "TimeGeneratex",
                "TimeGexerated",
                "xTimeGenerated",
            ]
            .map(String::from),
        );
        keys.extend(["ab", "ba", "abc", "axc", "abcd", "abce", "Level", "Lever"].map(String::from));
        while keys.len() < Prints::SMALL {
            keys.push(format!("extra{}", keys.len()));
        }
        let mut p = Prints::default();
        for k in &keys {
            assert_eq!(p.insert(k, |i| &keys[i]), Seen::New, "{k:?}");
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(p.insert(k, |i| &keys[i]), Seen::Repeat(i), "{k:?}");
        }
        assert_eq!(p.insert("one more", |i| &keys[i]), Seen::Full);
        assert_eq!(p.len(), Prints::SMALL);
    }

    #[test]
    fn members_keep_order_and_raw_text_and_last_duplicate_wins() {
        let o = parse(r#"{"b": [1, 2], "a\"x":"s","b":{"n":null}}"#).expect("object");
        let got: Vec<(String, &str)> = o.members.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(
            got,
            vec![("b".into(), r#"{"n":null}"#), ("a\"x".into(), r#""s""#)]
        );
    }

    /// Past 32 keys the repeat check switches to a hash index; both readers (the scanner, and
    /// serde_json for a line with an escaped key) keep first places and last values.
    #[test]
    fn many_keys_and_late_repeats_on_both_readers() {
        for escaped in [false, true] {
            let mut text = String::from("{");
            for i in 0..40_000 {
                text.push_str(&format!("\"k{}\":{i},", i % 30_000));
            }
            if escaped {
                text.push_str("\"q\\\"\":0,");
            }
            text.push_str("\"k5\":\"last\"}");
            let o = parse(&text).expect("object");
            assert_eq!(o.members.len(), 30_000 + usize::from(escaped), "{escaped}");
            assert_eq!(o.members[0], (Cow::Borrowed("k0"), "30000"));
            assert_eq!(o.members[5], (Cow::Borrowed("k5"), "\"last\""));
            assert_eq!(o.members[40], (Cow::Borrowed("k40"), "30040"));
            assert_eq!(o.members[29_999], (Cow::Borrowed("k29999"), "29999"));
        }
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
