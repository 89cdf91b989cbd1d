//! Values that deserve more than a type check.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde::Deserialize;

use crate::duration::parse_duration;
use crate::secret::Secret;

#[allow(unused_imports)]
use super::*;
use crate::transform::columns::ColumnType;

// ---------------------------------------------------------------------------------------------
// Values that deserve more than a type check. Each has its own deserializer, so that its errors
// happen inside toml's deserializer and carry the value's span.
// ---------------------------------------------------------------------------------------------

pub(super) fn default_concurrency() -> usize {
    DEFAULT_CONCURRENCY
}
pub(super) fn default_max_request_bytes() -> usize {
    DEFAULT_MAX_REQUEST_BYTES
}
pub(super) fn default_batch_timeout() -> Duration {
    DEFAULT_BATCH_TIMEOUT
}
pub(super) fn default_permission_grace() -> Duration {
    DEFAULT_PERMISSION_GRACE
}
pub(super) fn default_retry_timeout() -> Duration {
    DEFAULT_RETRY_TIMEOUT
}
pub(super) fn default_request_timeout() -> Duration {
    DEFAULT_REQUEST_TIMEOUT
}
pub(super) fn default_probe_interval() -> Duration {
    DEFAULT_PROBE_INTERVAL
}
pub(super) fn default_compression_level() -> u32 {
    DEFAULT_COMPRESSION_LEVEL
}
pub(super) fn default_max_requests_per_minute() -> u32 {
    DEFAULT_MAX_REQUESTS_PER_MINUTE
}
pub(super) fn default_max_bytes_per_minute() -> u64 {
    DEFAULT_MAX_BYTES_PER_MINUTE
}

/// A string value with `${VAR}` expanded.
pub(super) struct ExpandedString(String);

impl<'de> Deserialize<'de> for ExpandedString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_string(StringVisitor("a string"))
            .map(ExpandedString)
    }
}

/// Accepts a string, expands it; anything else is a type error naming what was expected.
pub(super) struct StringVisitor(&'static str);

impl Visitor<'_> for StringVisitor {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        expand_in_scope(v).map_err(E::custom)
    }
}

/// A value that may be written as an integer or as a string (`"${WORKERS:-4}"`, `"1GiB"`).
pub(super) enum Scalar {
    Int(i64),
    Str(String),
}

pub(super) struct ScalarVisitor<'a>(&'a str);

impl Visitor<'_> for ScalarVisitor<'_> {
    type Value = Scalar;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Int(i64::try_from(v).unwrap_or(i64::MAX)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        expand_in_scope(v).map(Scalar::Str).map_err(E::custom)
    }
}

pub(super) fn de_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    ExpandedString::deserialize(d).map(|s| s.0)
}

/// `""` (typically `"${VAR:-}"` with VAR unset) means "not set".
pub(super) fn de_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    de_string(d).map(|s| Some(s).filter(|s| !s.is_empty()))
}

pub(super) fn de_opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    de_opt_string(d).map(|s| s.map(Secret::new))
}

pub(super) fn de_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<ExpandedString>::deserialize(d).map(|v| v.into_iter().map(|s| s.0).collect())
}

/// `[inputs.NAME.match]`: each value a string or a list of strings.
pub(super) fn de_journal_matches<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a string or a list of strings")]
    enum OneOrMany {
        One(ExpandedString),
        Many(Vec<ExpandedString>),
    }
    let m = BTreeMap::<String, OneOrMany>::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(k, v)| match v {
            OneOrMany::One(s) => (k, vec![s.0]),
            OneOrMany::Many(v) => (k, v.into_iter().map(|s| s.0).collect()),
        })
        .collect())
}

pub(super) fn de_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let s = de_string(d)?;
    if s.is_empty() {
        return Err(de::Error::custom("expected a directory path, found \"\""));
    }
    Ok(PathBuf::from(s))
}

pub(super) fn de_opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    de_opt_string(d).map(|s| s.map(PathBuf::from))
}

/// An enum written as a string, after expansion, so `method = "${DCRSHIP_AUTH:-auto}"` works.
pub(super) fn de_enum<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<T, D::Error> {
    let s = de_string(d)?;
    let value: de::value::StrDeserializer<'_, de::value::Error> = s.as_str().into_deserializer();
    T::deserialize(value).map_err(de::Error::custom)
}

pub(super) fn de_opt_enum<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    match de_opt_string(d)? {
        None => Ok(None),
        Some(s) => {
            let value: de::value::StrDeserializer<'_, de::value::Error> =
                s.as_str().into_deserializer();
            T::deserialize(value).map(Some).map_err(de::Error::custom)
        }
    }
}

pub(super) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = d.deserialize_string(StringVisitor(
        "a duration written as a string, like \"500ms\", \"30s\", \"5m\" or \"1h30m\"",
    ))?;
    parse_duration(&s).map_err(de::Error::custom)
}

/// A zero batch timeout would flush every row on its own.
pub(super) fn de_nonzero_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let value = de_duration(d)?;
    if value.is_zero() {
        return Err(de::Error::custom(
            "expected a duration above 0, like \"1s\"",
        ));
    }
    Ok(value)
}

pub(super) fn de_opt_nonzero_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    de_nonzero_duration(d).map(Some)
}

/// A column type read as a DCR writes it (`dateTime` too), its errors at the value.
pub(super) struct ColumnTypeValue(ColumnType);

impl<'de> Deserialize<'de> for ColumnTypeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = de_string(d)?;
        ColumnType::parse(&s)
            .map(ColumnTypeValue)
            .map_err(de::Error::custom)
    }
}

/// `[columns]`: names to types.
pub(super) fn de_columns<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, ColumnType>, D::Error> {
    BTreeMap::<String, ColumnTypeValue>::deserialize(d)
        .map(|m| m.into_iter().map(|(k, v)| (k, v.0)).collect())
}

pub(super) fn de_string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    BTreeMap::<String, ExpandedString>::deserialize(d)
        .map(|m| m.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// A static field's value: a string (expanded), an integer, a float or a boolean.
pub(super) struct FieldValue(serde_json::Value);

impl<'de> Deserialize<'de> for FieldValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = FieldValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldValue, E> {
                expand_in_scope(v)
                    .map(|s| FieldValue(s.into()))
                    .map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FieldValue, E> {
                Ok(FieldValue(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FieldValue, E> {
                Ok(FieldValue(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<FieldValue, E> {
                serde_json::Number::from_f64(v)
                    .map(|n| FieldValue(n.into()))
                    .ok_or_else(|| E::custom(format!("{v} is not a number JSON can carry")))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<FieldValue, E> {
                Ok(FieldValue(v.into()))
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) fn de_field_values<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, serde_json::Value>, D::Error> {
    BTreeMap::<String, FieldValue>::deserialize(d)
        .map(|m| m.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// An integer in `range`, written as a TOML integer or as a string of digits.
pub(super) fn de_bounded<'de, D: Deserializer<'de>>(
    d: D,
    range: RangeInclusive<u64>,
) -> Result<u64, D::Error> {
    let expecting = format!("an integer from {} to {}", range.start(), range.end());
    let n = match d.deserialize_any(ScalarVisitor(&expecting))? {
        Scalar::Int(n) => i128::from(n),
        Scalar::Str(s) => s
            .trim()
            .parse::<i128>()
            .map_err(|_| de::Error::custom(format!("expected {expecting}, found {s:?}")))?,
    };
    u64::try_from(n)
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| de::Error::custom(format!("expected {expecting}, found {n}")))
}

pub(super) fn usize_range(range: &RangeInclusive<usize>) -> RangeInclusive<u64> {
    // usize is at most 64 bits on every supported target.
    let widen = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    widen(*range.start())..=widen(*range.end())
}

pub(super) fn to_usize<E: de::Error>(n: u64) -> Result<usize, E> {
    usize::try_from(n).map_err(|_| E::custom(format!("{n} is too large for this machine")))
}

pub(super) fn de_concurrency<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    to_usize(de_bounded(d, usize_range(&CONCURRENCY_RANGE))?)
}

pub(super) fn de_max_open_files<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<usize>, D::Error> {
    to_usize(de_bounded(d, usize_range(&MAX_OPEN_FILES_RANGE))?).map(Some)
}

pub(super) fn de_compression_level<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let range =
        u64::from(*COMPRESSION_LEVEL_RANGE.start())..=u64::from(*COMPRESSION_LEVEL_RANGE.end());
    let n = de_bounded(d, range)?;
    u32::try_from(n).map_err(de::Error::custom)
}

/// A byte count written as an integer or as a size string (`"1GiB"`, `"100MB"`).
pub(super) fn de_byte_size<'de, D: Deserializer<'de>>(
    d: D,
    expecting: &str,
) -> Result<u64, D::Error> {
    match d.deserialize_any(ScalarVisitor(expecting))? {
        Scalar::Int(n) => u64::try_from(n)
            .map_err(|_| de::Error::custom(format!("expected {expecting}, found {n}"))),
        Scalar::Str(s) => parse_byte_size(&s).map_err(de::Error::custom),
    }
}

pub(super) fn de_max_request_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let range = usize_range(&MAX_REQUEST_BYTES_RANGE);
    let expecting = format!("a byte count from {} to {}", range.start(), range.end());
    let n = de_byte_size(d, &expecting)?;
    if !range.contains(&n) {
        return Err(de::Error::custom(format!(
            "expected {expecting} (the API refuses bodies over 1 MiB), found {n}"
        )));
    }
    to_usize(n)
}

pub(super) fn de_max_requests_per_minute<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let range = u64::from(*MAX_REQUESTS_PER_MINUTE_RANGE.start())
        ..=u64::from(*MAX_REQUESTS_PER_MINUTE_RANGE.end());
    let n = de_bounded(d, range)?;
    u32::try_from(n).map_err(de::Error::custom)
}

pub(super) fn de_max_bytes_per_minute<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let expecting = "a size a minute like \"2GB\" or \"500MiB\", or a number of bytes";
    let n = de_byte_size(d, expecting)?;
    if !MAX_BYTES_PER_MINUTE_RANGE.contains(&n) {
        return Err(de::Error::custom(format!(
            "expected from 1MiB (one full request a minute) to 1TiB, found {n} bytes"
        )));
    }
    Ok(n)
}

pub(super) fn de_spool_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let expecting = "a size like \"1GiB\" or \"500MB\", or a number of bytes";
    let n = de_byte_size(d, expecting)?;
    if n < MIN_SPOOL_MAX_BYTES {
        return Err(de::Error::custom(format!(
            "expected at least 1MiB (the spool must hold a full request), found {n} bytes"
        )));
    }
    Ok(n)
}

pub(super) fn de_listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    parse_listen(&de_string(d)?).map_err(de::Error::custom)
}

/// `http_listen`: `""` turns the endpoint off; `localhost:PORT` is taken to mean IPv4 loopback.
pub fn parse_listen(raw: &str) -> Result<Option<SocketAddr>, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let loopback_port = s
        .strip_prefix("localhost:")
        .and_then(|p| p.parse::<u16>().ok());
    if let Some(port) = loopback_port {
        return Ok(Some(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::LOCALHOST,
            port,
        ))));
    }
    s.parse::<SocketAddr>().map(Some).map_err(|_| {
        format!(
            "expected an address and port like 127.0.0.1:9465 or [::]:9465, \
             or \"\" to turn the HTTP endpoint off, found {raw:?}"
        )
    })
}

/// A size string that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {0:?}: write it like \"1GiB\", \"512MiB\", \"100MB\" or a number of bytes")]
pub struct SizeError(String);

/// Parses `1GiB`, `512MiB`, `100MB`, `64KiB`, `1000` (bytes). Units are case-insensitive;
/// KB/MB/GB/TB are powers of 1000 and KiB/MiB/GiB/TiB powers of 1024, as on every disk label.
pub fn parse_byte_size(input: &str) -> Result<u64, SizeError> {
    let err = || SizeError(input.to_string());
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| err())?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000_u64.pow(2),
        "gb" => 1000_u64.pow(3),
        "tb" => 1000_u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(err()),
    };
    n.checked_mul(scale).ok_or_else(err)
}
