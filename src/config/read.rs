//! The document read table by table, so that one mistake does not hide the next: each
//! `[agent]`, `[auth]`, `[spool]`, `[outputs.NAME]` and `[inputs.NAME]` is deserialized on its
//! own, and a key serde refuses (unknown, or a value it cannot take) is reported and taken out
//! before the table is read again. A table that still cannot be read (a required key missing)
//! is reported and left out; one read without some of its keys is kept but marked damaged, so
//! the checks after reading do not report what only follows from the missing keys.

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::spans::{covers, suggest, SourceMap};
use super::{ConfigError, FileConfig};

/// The tables a configuration has.
const TABLES: [&str; 5] = ["agent", "auth", "outputs", "inputs", "spool"];

/// More refused keys than this in one table and the rest of it is not looked at.
const MAX_TRIES: usize = 64;

/// What reading found: the tables, serde's errors (each with line and key), and the tables read
/// without some of their keys (`outputs.app`).
pub(super) struct Read {
    pub file: FileConfig,
    pub errors: Vec<ConfigError>,
    pub damaged: Vec<String>,
}

/// Reads every table of `root`.
pub(super) fn read(root: &DeTable<'_>, map: &SourceMap<'_>, origin: &str) -> Read {
    let mut errors = Vec::new();
    let mut damaged = Vec::new();
    let mut file = FileConfig::default();
    for (key, value) in root {
        let name: &str = key.get_ref();
        match name {
            "agent" => {
                if let Some(t) = table(value, map, origin, &mut errors) {
                    file.agent = t;
                }
            }
            "auth" => {
                if let Some(t) = table(value, map, origin, &mut errors) {
                    file.auth = t;
                }
            }
            "spool" => {
                if let Some(t) = table(value, map, origin, &mut errors) {
                    file.spool = t;
                }
            }
            "outputs" | "inputs" => {
                let DeValue::Table(named) = value.get_ref() else {
                    errors.push(not_a_table(map, origin, name, &value.span()));
                    continue;
                };
                for (k, v) in named {
                    let k: &str = k.get_ref();
                    let before = errors.len();
                    let read = if name == "outputs" {
                        table(v, map, origin, &mut errors)
                            .map(|t| file.outputs.insert(k.to_string(), t))
                            .is_some()
                    } else {
                        table(v, map, origin, &mut errors)
                            .map(|t| file.inputs.insert(k.to_string(), t))
                            .is_some()
                    };
                    if read && errors.len() > before {
                        damaged.push(format!("{name}.{k}"));
                    }
                }
            }
            other => errors.push(ConfigError::Invalid {
                origin: origin.to_string(),
                line: Some(map.line_at(key.span().start)),
                key: Some(other.to_string()),
                message: format!("unknown key `{other}`{}", suggest(other, &TABLES, "`")),
            }),
        }
    }
    Read {
        file,
        errors,
        damaged,
    }
}

fn not_a_table(
    map: &SourceMap<'_>,
    origin: &str,
    name: &str,
    span: &std::ops::Range<usize>,
) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.to_string(),
        line: Some(map.line_at(span.start)),
        key: Some(name.to_string()),
        message: format!("expected tables like [{name}.NAME]"),
    }
}

/// One table: deserialized, and again without each key serde refused, until it reads.
fn table<T: DeserializeOwned>(
    value: &Spanned<DeValue<'_>>,
    map: &SourceMap<'_>,
    origin: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let mut value = value.clone();
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..MAX_TRIES {
        let err = match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let reported = map.error(origin, &err);
        // A required key whose value was refused is missing now: said already.
        let missing = reported
            .key()
            .and_then(|k| k.rsplit('.').next())
            .filter(|_| err.message().starts_with("missing field"));
        if missing.is_some_and(|k| removed.iter().any(|r| r == k)) {
            return None;
        }
        errors.push(reported);
        let span = err.span()?;
        match remove_key_at(&mut value, span.start) {
            Some(k) => removed.push(k),
            None => return None,
        }
    }
    None
}

/// Takes out of `value`'s table the key whose name or value covers byte `pos` (inside a nested
/// table such as `[outputs.X.columns]`, the nested key). Returns its name.
fn remove_key_at(value: &mut Spanned<DeValue<'_>>, pos: usize) -> Option<String> {
    let DeValue::Table(table) = value.get_mut() else {
        return None;
    };
    let key = table
        .iter()
        .find(|(k, v)| covers(&k.span(), pos) || covers(&v.span(), pos))
        .map(|(k, _)| k.get_ref().to_string())?;
    let nested = table
        .iter_mut()
        .find(|(k, _)| k.get_ref().as_ref() == key.as_str())
        .map(|(_, v)| v)
        .filter(|v| matches!(v.get_ref(), DeValue::Table(_)) && !covers_key_only(v, pos));
    if let Some(inner) = nested {
        if let Some(k) = remove_key_at(inner, pos) {
            return Some(k);
        }
    }
    let old = std::mem::take(table);
    *table = old
        .into_iter()
        .filter(|(k, _)| k.get_ref().as_ref() != key.as_str())
        .collect();
    Some(key)
}

/// A nested table's span is its whole body; `pos` on its first byte is the table itself.
fn covers_key_only(v: &Spanned<DeValue<'_>>, pos: usize) -> bool {
    v.span().start == pos
}
