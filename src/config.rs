//! The configuration file (`/etc/dcrship/agent.toml`): TOML in, a validated [`Config`] out.
//!
//! Every mistake is reported on one line that names the file, the line, the key and what to write
//! instead, because the reader is a sysadmin looking at `journalctl`, not at this code:
//!
//! ```text
//! /etc/dcrship/agent.toml line 12, key outputs.app.concurrency: expected an integer from 1 to 64, found "x"
//! ```
//!
//! How that works: the text is parsed once into toml's span-carrying tree ([`DeTable`]) and
//! [`Config`] is deserialized from it with `deny_unknown_fields`. Every value that needs more than
//! a type check (durations, sizes, ranges, `${VAR}` expansion) has its own deserializer, so its
//! errors carry the value's span as well. A span becomes a line number, and the tree tells which
//! key the span belongs to (`SourceMap`). Checks that involve more than one value run after
//! deserialization and look their key's line up in the same tree.
//!
//! `${VAR}` and `${VAR:-default}` are expanded in string values; `$$` is a literal `$` (so `$${`
//! is a literal `${`). The environment is read through the lookup given to [`parse_str`], so
//! tests never touch the process environment.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::auth::{AuthMethod, Cloud};
use crate::duration::parse_duration;
use crate::secret::Secret;

/// Where the configuration is read from when neither `--config` nor `DCRSHIP_CONFIG` says.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/dcrship/agent.toml";
/// `[agent] state_dir`: checkpoints and spool.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/dcrship";
/// `[agent] http_listen`: loopback only, so metrics are not exposed by accident.
pub const DEFAULT_HTTP_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9465));
/// `[agent] shutdown_timeout`: well inside systemd's default 90 s stop timeout.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// `[auth] arc_key_dir`: the only directory an Arc challenge file is read from.
pub const DEFAULT_ARC_KEY_DIR: &str = "/var/opt/azcmagent/tokens";
/// `[outputs.*] concurrency`: requests in flight per output.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Allowed `concurrency`: the cap keeps a typo from opening hundreds of connections to one DCR.
pub const CONCURRENCY_RANGE: RangeInclusive<usize> = 1..=64;
/// `[outputs.*] max_request_bytes`: a little under the API's 1 MB limit.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1_000_000;
/// Allowed `max_request_bytes`: the API refuses bodies over 1 MiB.
pub const MAX_REQUEST_BYTES_RANGE: RangeInclusive<usize> = 1024..=1_048_576;
/// `[outputs.*] batch_timeout`: how long a partly filled batch waits for more rows.
pub const DEFAULT_BATCH_TIMEOUT: Duration = Duration::from_secs(1);
/// `[outputs.*] permission_grace`: RBAC grants and new DCRs take up to about an hour to apply.
pub const DEFAULT_PERMISSION_GRACE: Duration = Duration::from_secs(60 * 60);
/// `[outputs.*] retry_timeout`: when `send` gives up on transient failures.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// `[outputs.*] request_timeout`: how long one request may take; the SDKs allow 100 s (.NET)
/// down to a few; a minute covers a 1 MB upload on a slow link.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// `[outputs.*] compression_level`: gzip level; 3 is most of the ratio for a fraction of the CPU.
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 3;
/// Allowed gzip levels.
pub const COMPRESSION_LEVEL_RANGE: RangeInclusive<u32> = 0..=9;
/// `[outputs.*] max_requests_per_minute`: the service's documented limit per DCR.
pub const DEFAULT_MAX_REQUESTS_PER_MINUTE: u32 = 12_000;
/// Allowed `max_requests_per_minute`.
pub const MAX_REQUESTS_PER_MINUTE_RANGE: RangeInclusive<u32> = 1..=1_000_000;
/// `[outputs.*] max_bytes_per_minute`: the service's documented limit per DCR, 2 GB.
pub const DEFAULT_MAX_BYTES_PER_MINUTE: u64 = 2_000_000_000;
/// Allowed `max_bytes_per_minute`: at least one full request a minute, at most 1 TiB.
pub const MAX_BYTES_PER_MINUTE_RANGE: RangeInclusive<u64> = (1 << 20)..=(1 << 40);
/// `[spool] max_bytes`.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1 << 30;
/// The spool must hold at least one full request, or delivery could never make progress.
pub const MIN_SPOOL_MAX_BYTES: u64 = 1 << 20;

/// The whole configuration file, validated: every output's endpoint, DCR id and stream are well
/// formed and every input names an existing output.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub agent: AgentConfig,
    #[serde(default)]
    pub auth: AuthSection,
    /// Named outputs (`[outputs.NAME]`), sorted by name.
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputConfig>,
    /// Named inputs (`[inputs.NAME]`), read by `dcrship run`.
    #[serde(default)]
    pub inputs: BTreeMap<String, InputConfig>,
    #[serde(default)]
    pub spool: SpoolConfig,
}

/// `[agent]`: process-wide settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Checkpoints and spool live here.
    #[serde(deserialize_with = "de_path")]
    pub state_dir: PathBuf,
    /// Address of `/metrics` and `/health`; `None` when written `""` (off).
    #[serde(deserialize_with = "de_listen")]
    pub http_listen: Option<SocketAddr>,
    /// How long `run` may spend draining after SIGTERM.
    #[serde(deserialize_with = "de_duration")]
    pub shutdown_timeout: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            http_listen: Some(DEFAULT_HTTP_LISTEN),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// `[auth]`: which identity obtains tokens. Unset values are `None` (a value that expands to
/// `""`, like `"${AZURE_CLIENT_ID:-}"`, counts as unset) so flags and the standard Azure
/// environment variables can fill them in.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    #[serde(deserialize_with = "de_enum")]
    pub method: AuthMethod,
    /// User-assigned managed identity (or app registration) client id.
    #[serde(deserialize_with = "de_opt_string")]
    pub client_id: Option<String>,
    /// User-assigned managed identity, by principal object id.
    #[serde(deserialize_with = "de_opt_string")]
    pub object_id: Option<String>,
    /// User-assigned managed identity, by ARM resource id.
    #[serde(deserialize_with = "de_opt_string")]
    pub resource_id: Option<String>,
    #[serde(deserialize_with = "de_opt_string")]
    pub tenant_id: Option<String>,
    #[serde(deserialize_with = "de_opt_secret")]
    pub client_secret: Option<Secret>,
    /// PEM file holding the certificate and its private key.
    #[serde(deserialize_with = "de_opt_path")]
    pub certificate_path: Option<PathBuf>,
    /// `None` means the public cloud unless the environment says otherwise.
    #[serde(deserialize_with = "de_opt_enum")]
    pub cloud: Option<Cloud>,
    /// Overrides the cloud's Entra authority host; https unless loopback.
    #[serde(deserialize_with = "de_opt_string")]
    pub authority_host: Option<String>,
    /// Overrides the cloud's token audience.
    #[serde(deserialize_with = "de_opt_string")]
    pub audience: Option<String>,
    /// The only directory an Arc challenge file is read from.
    #[serde(deserialize_with = "de_path")]
    pub arc_key_dir: PathBuf,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            method: AuthMethod::Auto,
            client_id: None,
            object_id: None,
            resource_id: None,
            tenant_id: None,
            client_secret: None,
            certificate_path: None,
            cloud: None,
            authority_host: None,
            audience: None,
            arc_key_dir: PathBuf::from(DEFAULT_ARC_KEY_DIR),
        }
    }
}

/// `[outputs.NAME]`: one DCR stream to deliver to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// DCE logs-ingestion URL, or a Direct DCR's own `logsIngestion` URL.
    #[serde(deserialize_with = "de_string")]
    pub endpoint: String,
    /// DCR immutable id, `dcr-` and 32 hex digits.
    #[serde(deserialize_with = "de_string")]
    pub dcr: String,
    /// Stream name, `Custom-…` or `Microsoft-…`.
    #[serde(deserialize_with = "de_string")]
    pub stream: String,
    #[serde(default = "default_concurrency", deserialize_with = "de_concurrency")]
    pub concurrency: usize,
    /// Cap on one request body, uncompressed and compressed.
    #[serde(
        default = "default_max_request_bytes",
        deserialize_with = "de_max_request_bytes"
    )]
    pub max_request_bytes: usize,
    #[serde(
        default = "default_batch_timeout",
        deserialize_with = "de_nonzero_duration"
    )]
    pub batch_timeout: Duration,
    /// How long 403 and 404 keep being retried.
    #[serde(default = "default_permission_grace", deserialize_with = "de_duration")]
    pub permission_grace: Duration,
    /// When `send` gives up on transient failures.
    #[serde(default = "default_retry_timeout", deserialize_with = "de_duration")]
    pub retry_timeout: Duration,
    /// How long one request may take, from connecting to the end of the answer.
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "de_nonzero_duration"
    )]
    pub request_timeout: Duration,
    #[serde(
        default = "default_compression_level",
        deserialize_with = "de_compression_level"
    )]
    pub compression_level: u32,
    /// Requests a minute to the DCR, over every output that sends to it.
    #[serde(
        default = "default_max_requests_per_minute",
        deserialize_with = "de_max_requests_per_minute"
    )]
    pub max_requests_per_minute: u32,
    /// Uncompressed bytes a minute to the DCR, over every output that sends to it.
    #[serde(
        default = "default_max_bytes_per_minute",
        deserialize_with = "de_max_bytes_per_minute"
    )]
    pub max_bytes_per_minute: u64,
    /// `[outputs.NAME.columns]`: declared column types of the stream.
    #[serde(default, deserialize_with = "de_columns")]
    pub columns: BTreeMap<String, ColumnType>,
    /// An exported DCR (ARM template or resource JSON) whose `streamDeclarations` give the
    /// stream's columns; relative to the config file's directory.
    #[serde(default, deserialize_with = "de_opt_path")]
    pub schema_file: Option<PathBuf>,
    /// Rows of one request span at most this much `TimeGenerated` (Auxiliary-plan tables
    /// refuse a request spanning more than 30 minutes).
    #[serde(default, deserialize_with = "de_opt_nonzero_duration")]
    pub max_time_span: Option<Duration>,
    /// The columns read from `schema_file` when the configuration was loaded.
    #[serde(skip)]
    pub schema_columns: BTreeMap<String, ColumnType>,
}

impl OutputConfig {
    /// An output with every optional setting at its default, for outputs built from flags.
    pub fn new(
        endpoint: impl Into<String>,
        dcr: impl Into<String>,
        stream: impl Into<String>,
    ) -> Self {
        OutputConfig {
            endpoint: endpoint.into(),
            dcr: dcr.into(),
            stream: stream.into(),
            concurrency: DEFAULT_CONCURRENCY,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            batch_timeout: DEFAULT_BATCH_TIMEOUT,
            permission_grace: DEFAULT_PERMISSION_GRACE,
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            max_requests_per_minute: DEFAULT_MAX_REQUESTS_PER_MINUTE,
            max_bytes_per_minute: DEFAULT_MAX_BYTES_PER_MINUTE,
            columns: BTreeMap::new(),
            schema_file: None,
            max_time_span: None,
            schema_columns: BTreeMap::new(),
        }
    }

    /// The stream's declared columns: those of `schema_file`, with `[columns]` added on top
    /// (a type given there wins). Empty when neither declares any.
    pub fn declared_columns(&self) -> BTreeMap<String, ColumnType> {
        let mut all = self.schema_columns.clone();
        all.extend(self.columns.iter().map(|(k, v)| (k.clone(), *v)));
        all
    }
}

/// A DCR stream column type, as written in `streamDeclarations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Int,
    Long,
    Real,
    Boolean,
    Datetime,
    Dynamic,
}

/// `[inputs.NAME]`: one source of records, read by `dcrship run`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    #[serde(rename = "type", deserialize_with = "de_enum")]
    pub kind: InputKind,
    /// Absolute path globs (file inputs only; at least one).
    #[serde(default, deserialize_with = "de_strings")]
    pub paths: Vec<String>,
    /// Globs of files to skip even though `paths` matches them.
    #[serde(default, deserialize_with = "de_strings")]
    pub exclude: Vec<String>,
    #[serde(default, deserialize_with = "de_enum")]
    pub format: InputFormat,
    /// The regular expression for `format = "regex"`; its named groups become columns.
    #[serde(default, deserialize_with = "de_opt_string")]
    pub pattern: Option<String>,
    /// `regex`, `logfmt`, `syslog`: what becomes of a line that does not parse.
    #[serde(default, deserialize_with = "de_enum")]
    pub on_mismatch: crate::input::parse::OnMismatch,
    /// `[inputs.NAME.multiline]`: join the lines of one event (a stack trace) into one row.
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
    #[serde(default, deserialize_with = "de_enum")]
    pub start_at: StartAt,
    /// The output this input feeds. Always a key of [`Config::outputs`] after loading: when the
    /// file omits it and there is exactly one output, that one is filled in.
    #[serde(default, deserialize_with = "de_string")]
    pub output: String,
    /// Source field holding the event time (structured records); default `TimeGenerated`.
    #[serde(default, deserialize_with = "de_opt_string")]
    pub time_field: Option<String>,
    /// How the time field is written: `rfc3339`, `epoch`, `epoch_ms`, `epoch_us`, `epoch_ns`
    /// or a strftime format; default: RFC 3339 / ISO 8601 or epoch by magnitude.
    #[serde(default, deserialize_with = "de_opt_string")]
    pub time_format: Option<String>,
    /// IANA zone (or `UTC`, `local`) of times written without an offset; default UTC.
    #[serde(default, deserialize_with = "de_opt_string")]
    pub timezone: Option<String>,
    /// `[inputs.NAME.fields]`: columns set to fixed values (strings expand `${VAR}`).
    #[serde(default, deserialize_with = "de_field_values")]
    pub fields: BTreeMap<String, serde_json::Value>,
    /// `[inputs.NAME.rename]`: source field → column name.
    #[serde(default, deserialize_with = "de_string_map")]
    pub rename: BTreeMap<String, String>,
    /// Source fields left out of rows.
    #[serde(default, deserialize_with = "de_strings")]
    pub drop: Vec<String>,
    // journald inputs (checked by `crate::input::journald::options::check`)
    /// Units to read (`sshd` is `sshd.service`; globs allowed); default every unit.
    #[serde(default, deserialize_with = "de_strings")]
    pub units: Vec<String>,
    /// Units whose entries are left out.
    #[serde(default, deserialize_with = "de_strings")]
    pub exclude_units: Vec<String>,
    /// The least severe level read: `warning` reads emerg … warning.
    #[serde(default, deserialize_with = "de_opt_enum")]
    pub priority: Option<crate::input::journald::Priority>,
    /// `[inputs.NAME.match]`: FIELD = "value" or ["any", "of"]; every field must match.
    #[serde(default, rename = "match", deserialize_with = "de_journal_matches")]
    pub matches: BTreeMap<String, Vec<String>>,
    /// First start without a saved cursor: from now (the default) or the whole journal.
    #[serde(default)]
    pub since_now: Option<bool>,
    /// Read the journal files of this directory (a container with the host's journal mounted).
    #[serde(default, deserialize_with = "de_opt_path")]
    pub journal_directory: Option<PathBuf>,
}

/// `type` of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    File,
    Stdin,
    /// The systemd journal, through journalctl.
    Journald,
}

/// `format` of an input: how a line becomes a row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// One line, one row: `TimeGenerated`, `RawData`, `FilePath`, `Computer`.
    #[default]
    Text,
    /// One JSON object per line; its fields are the columns.
    Json,
    /// `pattern`'s named groups are the columns.
    Regex,
    /// `key=value` pairs are the columns.
    Logfmt,
    /// RFC 3164 / RFC 5424 lines → the columns of Azure's Syslog table.
    Syslog,
    /// journald inputs: every journal field is a column.
    Raw,
}

/// `[inputs.NAME.multiline]`: which lines start an event, and its bounds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// A line matching this regular expression starts a new event.
    #[serde(default, deserialize_with = "de_opt_string")]
    pub start: Option<String>,
    /// Built-in rules instead of `start`.
    #[serde(default, deserialize_with = "de_opt_enum")]
    pub preset: Option<crate::input::multiline::Preset>,
    /// A pending event is emitted after this long without a new line.
    #[serde(
        default = "default_multiline_timeout",
        deserialize_with = "de_nonzero_duration"
    )]
    pub timeout: Duration,
    #[serde(
        default = "default_multiline_max_lines",
        deserialize_with = "de_multiline_max_lines"
    )]
    pub max_lines: usize,
    /// At most the output's `max_request_bytes` (checked after loading).
    #[serde(
        default = "default_multiline_max_bytes",
        deserialize_with = "de_multiline_max_bytes"
    )]
    pub max_bytes: usize,
}

impl MultilineConfig {
    /// `start` or `preset` with the default bounds.
    pub fn new(start: Option<String>, preset: Option<crate::input::multiline::Preset>) -> Self {
        MultilineConfig {
            start,
            preset,
            timeout: default_multiline_timeout(),
            max_lines: default_multiline_max_lines(),
            max_bytes: default_multiline_max_bytes(),
        }
    }
}

fn default_multiline_timeout() -> Duration {
    crate::input::multiline::DEFAULT_TIMEOUT
}
fn default_multiline_max_lines() -> usize {
    crate::input::multiline::DEFAULT_MAX_LINES
}
fn default_multiline_max_bytes() -> usize {
    crate::input::multiline::DEFAULT_MAX_BYTES
}

fn de_multiline_max_lines<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    to_usize(de_bounded(d, 1..=100_000)?)
}

fn de_multiline_max_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let range = 1024..=*MAX_REQUEST_BYTES_RANGE.end() as u64;
    let expecting = format!("a byte count from {} to {}", range.start(), range.end());
    let n = de_byte_size(d, &expecting)?;
    if !range.contains(&n) {
        return Err(de::Error::custom(format!(
            "expected {expecting}, found {n}"
        )));
    }
    to_usize(n)
}

/// `start_at`: where a file seen for the first time (no checkpoint) is read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Only lines written from now on, so installing the agent does not re-ship old logs.
    #[default]
    End,
    Beginning,
}

/// `[spool]`: the disk buffer under `state_dir` used by `run`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    #[serde(deserialize_with = "de_spool_bytes")]
    pub max_bytes: u64,
    /// The longest a spooled request waits for its fsync (sooner when the spool is idle).
    #[serde(deserialize_with = "de_duration")]
    pub fsync_interval: Duration,
    /// `block` (pause the inputs) or `drop_oldest` (delete the oldest requests, counted).
    #[serde(deserialize_with = "de_enum")]
    pub when_full: crate::spool::WhenFull,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            fsync_interval: crate::spool::DEFAULT_FSYNC_INTERVAL,
            when_full: crate::spool::WhenFull::Block,
        }
    }
}

/// Loading the configuration failed. Displays as one line naming the file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, permissions, not UTF-8).
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The text is not valid TOML, or not a valid configuration.
    #[error("{origin}{}: {message}", place(.line, .key))]
    Invalid {
        /// The file name, or whatever the caller called the text.
        origin: String,
        /// 1-based line of the offending key or value, when known.
        line: Option<usize>,
        /// Dotted path of the offending key, e.g. `outputs.app.concurrency`.
        key: Option<String>,
        message: String,
    },
    /// [`Config::output`] could not pick an output.
    #[error("{0}")]
    Output(String),
}

impl ConfigError {
    /// The 1-based line the error is about, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Invalid { line, .. } => *line,
            _ => None,
        }
    }

    /// The dotted key path the error is about, when known.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => key.as_deref(),
            _ => None,
        }
    }
}

/// ` line 12, key a.b` — the part of a message between the file name and the colon.
fn place(line: &Option<usize>, key: &Option<String>) -> String {
    match (line, key) {
        (Some(line), Some(key)) => format!(" line {line}, key {key}"),
        (Some(line), None) => format!(" line {line}"),
        (None, Some(key)) => format!(", key {key}"),
        (None, None) => String::new(),
    }
}

/// Reads and validates the configuration file, expanding `${VAR}` from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let env = |name: &str| std::env::var(name).ok();
    parse_str(&text, &path.display().to_string(), &env)
}

/// Parses and validates configuration text. `origin` names the text in messages (the file
/// name); `env` answers `${VAR}` lookups, so callers and tests choose the environment.
pub fn parse_str(
    text: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    // Editors on Windows like to start files with a byte-order mark; TOML does not allow one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root = DeTable::parse(text).map_err(|e| syntax_error(origin, text, &e))?;
    let map = SourceMap {
        text,
        root: root.get_ref().clone(),
    };
    let config = {
        let _scope = EnvScope::enter(snapshot_env(text, env));
        Config::deserialize(toml::de::Deserializer::from(root))
            .map_err(|e| map.error(origin, &e))?
    };
    Checker { origin, map: &map }.validate(config)
}

impl Config {
    /// See [`load`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        load(path)
    }

    /// See [`parse_str`].
    pub fn parse_str(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        parse_str(text, origin, env)
    }

    /// The output called `name`, or the only output when no name is given (`send --config`
    /// without `--output`). The error lists the outputs there are.
    pub fn output(&self, name: Option<&str>) -> Result<(&str, &OutputConfig), ConfigError> {
        if let Some(name) = name {
            return self
                .outputs
                .get_key_value(name)
                .map(|(k, v)| (k.as_str(), v))
                .ok_or_else(|| {
                    ConfigError::Output(format!(
                        "no output named {name:?} in the configuration{}",
                        name_choices(name, self.outputs.keys())
                    ))
                });
        }
        let mut all = self.outputs.iter();
        match (all.next(), all.next()) {
            (Some((k, v)), None) => Ok((k.as_str(), v)),
            (None, _) => Err(ConfigError::Output(
                "the configuration has no [outputs.NAME] table".to_string(),
            )),
            _ => Err(ConfigError::Output(format!(
                "the configuration has several outputs ({}); choose one with --output NAME",
                join_names(self.outputs.keys())
            ))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values that deserve more than a type check. Each has its own deserializer, so that its errors
// happen inside toml's deserializer and carry the value's span.
// ---------------------------------------------------------------------------------------------

fn default_concurrency() -> usize {
    DEFAULT_CONCURRENCY
}
fn default_max_request_bytes() -> usize {
    DEFAULT_MAX_REQUEST_BYTES
}
fn default_batch_timeout() -> Duration {
    DEFAULT_BATCH_TIMEOUT
}
fn default_permission_grace() -> Duration {
    DEFAULT_PERMISSION_GRACE
}
fn default_retry_timeout() -> Duration {
    DEFAULT_RETRY_TIMEOUT
}
fn default_request_timeout() -> Duration {
    DEFAULT_REQUEST_TIMEOUT
}
fn default_compression_level() -> u32 {
    DEFAULT_COMPRESSION_LEVEL
}
fn default_max_requests_per_minute() -> u32 {
    DEFAULT_MAX_REQUESTS_PER_MINUTE
}
fn default_max_bytes_per_minute() -> u64 {
    DEFAULT_MAX_BYTES_PER_MINUTE
}

/// A string value with `${VAR}` expanded.
struct ExpandedString(String);

impl<'de> Deserialize<'de> for ExpandedString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_string(StringVisitor("a string"))
            .map(ExpandedString)
    }
}

/// Accepts a string, expands it; anything else is a type error naming what was expected.
struct StringVisitor(&'static str);

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
enum Scalar {
    Int(i64),
    Str(String),
}

struct ScalarVisitor<'a>(&'a str);

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

fn de_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    ExpandedString::deserialize(d).map(|s| s.0)
}

/// `""` (typically `"${VAR:-}"` with VAR unset) means "not set".
fn de_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    de_string(d).map(|s| Some(s).filter(|s| !s.is_empty()))
}

fn de_opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    de_opt_string(d).map(|s| s.map(Secret::new))
}

fn de_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<ExpandedString>::deserialize(d).map(|v| v.into_iter().map(|s| s.0).collect())
}

/// `[inputs.NAME.match]`: each value a string or a list of strings.
fn de_journal_matches<'de, D: Deserializer<'de>>(
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

fn de_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let s = de_string(d)?;
    if s.is_empty() {
        return Err(de::Error::custom("expected a directory path, found \"\""));
    }
    Ok(PathBuf::from(s))
}

fn de_opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    de_opt_string(d).map(|s| s.map(PathBuf::from))
}

/// An enum written as a string, after expansion, so `method = "${DCRSHIP_AUTH:-auto}"` works.
fn de_enum<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<T, D::Error> {
    let s = de_string(d)?;
    let value: de::value::StrDeserializer<'_, de::value::Error> = s.as_str().into_deserializer();
    T::deserialize(value).map_err(de::Error::custom)
}

fn de_opt_enum<'de, D: Deserializer<'de>, T: DeserializeOwned>(
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

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = d.deserialize_string(StringVisitor(
        "a duration written as a string, like \"500ms\", \"30s\", \"5m\" or \"1h30m\"",
    ))?;
    parse_duration(&s).map_err(de::Error::custom)
}

/// A zero batch timeout would flush every row on its own.
fn de_nonzero_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let value = de_duration(d)?;
    if value.is_zero() {
        return Err(de::Error::custom(
            "expected a duration above 0, like \"1s\"",
        ));
    }
    Ok(value)
}

fn de_opt_nonzero_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_nonzero_duration(d).map(Some)
}

/// A column type read as a DCR writes it (`dateTime` too), its errors at the value.
struct ColumnTypeValue(ColumnType);

impl<'de> Deserialize<'de> for ColumnTypeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = de_string(d)?;
        ColumnType::parse(&s)
            .map(ColumnTypeValue)
            .map_err(de::Error::custom)
    }
}

/// `[columns]`: names to types.
fn de_columns<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, ColumnType>, D::Error> {
    BTreeMap::<String, ColumnTypeValue>::deserialize(d)
        .map(|m| m.into_iter().map(|(k, v)| (k, v.0)).collect())
}

fn de_string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    BTreeMap::<String, ExpandedString>::deserialize(d)
        .map(|m| m.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// A static field's value: a string (expanded), an integer, a float or a boolean.
struct FieldValue(serde_json::Value);

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

fn de_field_values<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, serde_json::Value>, D::Error> {
    BTreeMap::<String, FieldValue>::deserialize(d)
        .map(|m| m.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// An integer in `range`, written as a TOML integer or as a string of digits.
fn de_bounded<'de, D: Deserializer<'de>>(
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

fn usize_range(range: &RangeInclusive<usize>) -> RangeInclusive<u64> {
    // usize is at most 64 bits on every supported target.
    let widen = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    widen(*range.start())..=widen(*range.end())
}

fn to_usize<E: de::Error>(n: u64) -> Result<usize, E> {
    usize::try_from(n).map_err(|_| E::custom(format!("{n} is too large for this machine")))
}

fn de_concurrency<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    to_usize(de_bounded(d, usize_range(&CONCURRENCY_RANGE))?)
}

fn de_compression_level<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let range =
        u64::from(*COMPRESSION_LEVEL_RANGE.start())..=u64::from(*COMPRESSION_LEVEL_RANGE.end());
    let n = de_bounded(d, range)?;
    u32::try_from(n).map_err(de::Error::custom)
}

/// A byte count written as an integer or as a size string (`"1GiB"`, `"100MB"`).
fn de_byte_size<'de, D: Deserializer<'de>>(d: D, expecting: &str) -> Result<u64, D::Error> {
    match d.deserialize_any(ScalarVisitor(expecting))? {
        Scalar::Int(n) => u64::try_from(n)
            .map_err(|_| de::Error::custom(format!("expected {expecting}, found {n}"))),
        Scalar::Str(s) => parse_byte_size(&s).map_err(de::Error::custom),
    }
}

fn de_max_request_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
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

fn de_max_requests_per_minute<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let range = u64::from(*MAX_REQUESTS_PER_MINUTE_RANGE.start())
        ..=u64::from(*MAX_REQUESTS_PER_MINUTE_RANGE.end());
    let n = de_bounded(d, range)?;
    u32::try_from(n).map_err(de::Error::custom)
}

fn de_max_bytes_per_minute<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let expecting = "a size a minute like \"2GB\" or \"500MiB\", or a number of bytes";
    let n = de_byte_size(d, expecting)?;
    if !MAX_BYTES_PER_MINUTE_RANGE.contains(&n) {
        return Err(de::Error::custom(format!(
            "expected from 1MiB (one full request a minute) to 1TiB, found {n} bytes"
        )));
    }
    Ok(n)
}

fn de_spool_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let expecting = "a size like \"1GiB\" or \"500MB\", or a number of bytes";
    let n = de_byte_size(d, expecting)?;
    if n < MIN_SPOOL_MAX_BYTES {
        return Err(de::Error::custom(format!(
            "expected at least 1MiB (the spool must hold a full request), found {n} bytes"
        )));
    }
    Ok(n)
}

fn de_listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
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

// ---------------------------------------------------------------------------------------------
// `${VAR}` expansion.
// ---------------------------------------------------------------------------------------------

/// A `${…}` reference that could not be expanded. Names variables, never their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("environment variable {0} is not set; set it, or give a default: ${{{0}:-value}}")]
    Undefined(String),
    #[error("\"${{\" without a closing \"}}\" (write $$ for a literal $)")]
    Unclosed,
    #[error(
        "\"${{{0}}}\" is not a variable reference: write ${{NAME}} or ${{NAME:-default}}, \
         NAME being letters, digits and _ (write $$ for a literal $)"
    )]
    BadName(String),
}

/// Expands `${VAR}` and `${VAR:-default}` (default used when VAR is unset or empty, as in a
/// shell); `$$` is a literal `$`, and a `$` followed by anything else is kept as is.
pub fn expand_env(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(ExpandError::Unclosed)?;
            out.push_str(&substitute(&body[..end], lookup)?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of one `${…}` body: `NAME` or `NAME:-default`.
fn substitute(body: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let (name, default) = match body.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (body, None),
    };
    if !is_var_name(name) {
        return Err(ExpandError::BadName(body.to_string()));
    }
    match (lookup(name), default) {
        (Some(value), Some(default)) if value.is_empty() => Ok(default.to_string()),
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_string()),
        (None, None) => Err(ExpandError::Undefined(name.to_string())),
    }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

thread_local! {
    /// The environment `${VAR}` sees while [`parse_str`] deserializes: the variables the text
    /// mentions, taken from the caller's lookup. Serde's derived code cannot pass context to a
    /// field's deserializer, so it travels here, for the duration of one parse on this thread.
    static ENV_SNAPSHOT: RefCell<Option<HashMap<String, String>>> = const { RefCell::new(None) };
}

/// Installs an environment snapshot for the current thread; the previous one returns on drop.
struct EnvScope {
    previous: Option<HashMap<String, String>>,
}

impl EnvScope {
    fn enter(snapshot: HashMap<String, String>) -> Self {
        let previous = ENV_SNAPSHOT.with(|cell| cell.replace(Some(snapshot)));
        EnvScope { previous }
    }
}

impl Drop for EnvScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        ENV_SNAPSHOT.with(|cell| *cell.borrow_mut() = previous);
    }
}

/// Looks every `${NAME` in the text up once, so the lookup closure need not outlive the call.
fn snapshot_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> HashMap<String, String> {
    text.match_indices("${")
        .map(|(at, _)| {
            let rest = &text[at + 2..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| !name.is_empty())
        .filter_map(|name| {
            let value = env(name).or_else(|| hostname_fallback(name))?;
            Some((name.to_string(), value))
        })
        .collect()
}

/// `${HOSTNAME}` is the machine's host name when the variable is unset: shells set it but do
/// not export it, so a systemd service never sees it.
fn hostname_fallback(name: &str) -> Option<String> {
    (name == "HOSTNAME").then(|| gethostname::gethostname().to_string_lossy().into_owned())
}

/// Expands with the snapshot of the parse in progress, or the process environment outside one.
fn expand_in_scope(raw: &str) -> Result<String, ExpandError> {
    ENV_SNAPSHOT.with(|cell| match &*cell.borrow() {
        Some(vars) => expand_env(raw, &|name| vars.get(name).cloned()),
        None => expand_env(raw, &|name| {
            std::env::var(name).ok().or_else(|| hostname_fallback(name))
        }),
    })
}

// ---------------------------------------------------------------------------------------------
// From spans to lines and keys.
// ---------------------------------------------------------------------------------------------

/// The parsed document with its spans: where each key and value sits in the text.
struct SourceMap<'a> {
    text: &'a str,
    root: DeTable<'a>,
}

impl SourceMap<'_> {
    /// Turns a deserialization error into a one-line message with line and key.
    fn error(&self, origin: &str, err: &toml::de::Error) -> ConfigError {
        let humane = humanize(err.message());
        let mut key = err
            .span()
            .map(|span| self.key_path_at(span.start))
            .unwrap_or_default();
        key.extend(humane.missing_key);
        ConfigError::Invalid {
            origin: origin.to_string(),
            line: err.span().map(|span| line_at(self.text, span.start)),
            key: Some(render_path(&key)).filter(|k| !k.is_empty()),
            message: humane.message,
        }
    }

    /// The key an error at byte `pos` is about: the deepest key whose name covers `pos` (an
    /// unknown key), else the deepest whose value does (a bad value, or a table missing a key).
    fn key_path_at(&self, pos: usize) -> Vec<String> {
        let mut found = Found::default();
        find_key_at(&self.root, pos, &mut Vec::new(), &mut found);
        if found.by_name.is_empty() {
            found.by_value
        } else {
            found.by_name
        }
    }

    /// The line of the deepest existing key along `path` (the table header when the key itself
    /// is absent because it was left at its default).
    fn line_of(&self, path: &[&str]) -> Option<usize> {
        let mut table = &self.root;
        let mut found = None;
        for part in path {
            let Some((key, value)) = table.get_key_value(*part) else {
                break;
            };
            found = Some(key.span().start);
            match value.get_ref() {
                DeValue::Table(inner) => table = inner,
                _ => break,
            }
        }
        found.map(|pos| line_at(self.text, pos))
    }
}

fn covers(span: &std::ops::Range<usize>, pos: usize) -> bool {
    span.contains(&pos) || (span.is_empty() && span.start == pos)
}

/// The deepest key paths found so far whose name, or whose value, covers a position.
#[derive(Default)]
struct Found {
    by_name: Vec<String>,
    by_value: Vec<String>,
}

impl Found {
    fn offer(best: &mut Vec<String>, path: &[String]) {
        if path.len() > best.len() {
            *best = path.to_vec();
        }
    }
}

fn find_key_at(table: &DeTable<'_>, pos: usize, path: &mut Vec<String>, found: &mut Found) {
    for (key, value) in table {
        path.push(key.get_ref().to_string());
        if covers(&key.span(), pos) {
            Found::offer(&mut found.by_name, path);
        }
        find_in_value(value, pos, path, found);
        path.pop();
    }
}

fn find_in_value(
    value: &Spanned<DeValue<'_>>,
    pos: usize,
    path: &mut Vec<String>,
    found: &mut Found,
) {
    if covers(&value.span(), pos) {
        Found::offer(&mut found.by_value, path);
    }
    match value.get_ref() {
        DeValue::Table(table) => find_key_at(table, pos, path, found),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(format!("[{i}]"));
                find_in_value(item, pos, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

/// `outputs.app.concurrency`, `inputs.applog.paths[1]`.
fn render_path(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if !out.is_empty() && !part.starts_with('[') {
            out.push('.');
        }
        out.push_str(part);
    }
    out
}

/// 1-based line of byte offset `pos`.
fn line_at(text: &str, pos: usize) -> usize {
    let end = pos.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn syntax_error(origin: &str, text: &str, err: &toml::de::Error) -> ConfigError {
    let span = err.span();
    // The parser says "duplicate key" without saying which; the span is that key.
    let culprit = span
        .clone()
        .and_then(|span| text.get(span))
        .filter(|s| err.message() == "duplicate key" && !s.contains('\n'))
        .map(|s| format!(" `{}`", s.trim()))
        .unwrap_or_default();
    ConfigError::Invalid {
        origin: origin.to_string(),
        line: span.map(|span| line_at(text, span.start)),
        key: None,
        message: format!("invalid TOML: {}{culprit}", one_line(err.message())),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A serde message rewritten for a person, and the key it says is missing, if any.
struct Humane {
    message: String,
    missing_key: Option<String>,
}

/// Rewrites serde's "unknown field", "unknown variant" and "missing field" messages with a
/// did-you-mean and a hint; other messages pass through.
fn humanize(message: &str) -> Humane {
    let message = one_line(message);
    let ticked: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let rewritten = match (ticked.split_first(), message.split('`').next()) {
        (Some((word, known)), Some("unknown field ")) => {
            format!("unknown key `{word}`{}", suggest(word, known, "`"))
        }
        (Some((word, known)), Some("unknown variant ")) => {
            format!("unknown value \"{word}\"{}", suggest(word, known, "\""))
        }
        (Some((word, _)), Some("missing field ")) => {
            return Humane {
                message: format!("missing required key `{word}`{}", missing_hint(word)),
                missing_key: Some((*word).to_string()),
            };
        }
        _ => message,
    };
    Humane {
        message: rewritten,
        missing_key: None,
    }
}

/// `; did you mean `x`?` when one known word is close, else the list of known words.
fn suggest(word: &str, known: &[&str], quote: &str) -> String {
    if let Some(best) = closest(word, known.iter().copied()) {
        return format!("; did you mean {quote}{best}{quote}?");
    }
    match known {
        [] => "; nothing is expected here".to_string(),
        _ => format!("; expected one of: {}", known.join(", ")),
    }
}

/// What an `endpoint` is, for messages about a missing or malformed one.
const ENDPOINT_HINT: &str = "the logs ingestion URL of the data collection endpoint, like \
     https://my-dce-ab12.eastus-1.ingest.monitor.azure.com";

fn missing_hint(key: &str) -> String {
    let hint = match key {
        "endpoint" => ENDPOINT_HINT,
        "dcr" => "the DCR *immutable id*, shown on the DCR's overview page",
        "stream" => "the stream declared in the DCR, like Custom-MyApp_CL",
        "type" => "\"file\" or \"stdin\"",
        _ => return String::new(),
    };
    format!(" ({hint})")
}

/// The known word nearest to `word`, if near enough to be a typo. `-` and `_` count as equal
/// and case is ignored, so `max-request-bytes` finds `max_request_bytes`.
fn closest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let normalize = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let word = normalize(word);
    known
        .into_iter()
        .map(|k| (edit_distance(&word, &normalize(k)), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

fn join_names<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    names
        .into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `; did you mean "app"?` or `; the outputs are: a, b` for a name that matched nothing.
fn name_choices<'a>(name: &str, names: impl IntoIterator<Item = &'a String> + Clone) -> String {
    match closest(name, names.clone().into_iter().map(String::as_str)) {
        Some(best) => format!("; did you mean {best:?}?"),
        None => format!("; the outputs are: {}", join_names(names)),
    }
}

// ---------------------------------------------------------------------------------------------
// Checks across values, run after deserialization.
// ---------------------------------------------------------------------------------------------

/// Checks what serde cannot: formats that need a parser, and values that refer to each other.
struct Checker<'a> {
    origin: &'a str,
    map: &'a SourceMap<'a>,
}

impl Checker<'_> {
    fn fail(&self, path: &[&str], message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_string(),
            line: self.map.line_of(path),
            key: Some(path.join(".")),
            message: message.into(),
        }
    }

    fn validate(&self, mut config: Config) -> Result<Config, ConfigError> {
        self.check_auth(&config.auth)?;
        for (name, output) in &config.outputs {
            self.check_output(name, output)?;
        }
        for (name, output) in config.outputs.iter_mut() {
            self.check_columns(name, output)?;
        }
        self.check_inputs(&mut config.inputs, &config.outputs)?;
        Ok(config)
    }

    fn check_auth(&self, auth: &AuthSection) -> Result<(), ConfigError> {
        let ids = [
            ("client_id", &auth.client_id),
            ("object_id", &auth.object_id),
            ("resource_id", &auth.resource_id),
        ];
        let set: Vec<&str> = ids
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| *k)
            .collect();
        if let [first, second, ..] = set.as_slice() {
            return Err(self.fail(
                &["auth", second],
                format!(
                    "{first} and {second} are both set; set at most one of client_id, object_id \
                     and resource_id (each names a user-assigned identity)"
                ),
            ));
        }
        if let Some(host) = &auth.authority_host {
            crate::http::parse_secure_url("authority_host", host)
                .map_err(|e| self.fail(&["auth", "authority_host"], e.to_string()))?;
        }
        Ok(())
    }

    fn check_output(&self, name: &str, output: &OutputConfig) -> Result<(), ConfigError> {
        crate::http::parse_secure_url("endpoint", &output.endpoint).map_err(|e| {
            let hint = match e {
                crate::http::HttpSetupError::PlainHttp { .. } => String::new(),
                _ => format!("; expected {ENDPOINT_HINT}"),
            };
            self.fail(&["outputs", name, "endpoint"], format!("{e}{hint}"))
        })?;
        validate_dcr_id(&output.dcr).map_err(|m| self.fail(&["outputs", name, "dcr"], m))?;
        validate_stream(&output.stream).map_err(|m| self.fail(&["outputs", name, "stream"], m))?;
        Ok(())
    }

    /// Column names follow Azure's rules; `schema_file` is read now, so a missing stream is a
    /// configuration error, not a run-time surprise.
    fn check_columns(&self, name: &str, output: &mut OutputConfig) -> Result<(), ConfigError> {
        for column in output.columns.keys() {
            crate::transform::columns::validate_column_name(column)
                .map_err(|m| self.fail(&["outputs", name, "columns", column], m))?;
        }
        if let Some(file) = &output.schema_file {
            // A relative path is taken from the config file's directory, not the service's cwd.
            let path = match Path::new(self.origin).parent() {
                Some(dir) if file.is_relative() => dir.join(file),
                _ => file.clone(),
            };
            output.schema_columns =
                crate::transform::schema::load_stream_columns(&path, &output.stream)
                    .map_err(|e| self.fail(&["outputs", name, "schema_file"], e.to_string()))?;
        }
        Ok(())
    }

    /// `time_format` and `timezone` can be read; names that become columns are valid ones.
    fn check_shaping(&self, name: &str, input: &InputConfig) -> Result<(), ConfigError> {
        let key = if input.timezone.is_some() && input.time_format.is_none() {
            "timezone"
        } else {
            "time_format"
        };
        crate::transform::time::TimeParser::new(
            input.time_format.as_deref(),
            input.timezone.as_deref(),
        )
        .map_err(|m| {
            let key = if m.contains("time zone") {
                "timezone"
            } else {
                key
            };
            self.fail(&["inputs", name, key], m)
        })?;
        for field in input.fields.keys() {
            crate::transform::columns::validate_column_name(field)
                .map_err(|m| self.fail(&["inputs", name, "fields", field], m))?;
        }
        for (from, to) in &input.rename {
            crate::transform::columns::validate_column_name(to)
                .map_err(|m| self.fail(&["inputs", name, "rename", from], m))?;
        }
        Ok(())
    }

    fn check_inputs(
        &self,
        inputs: &mut BTreeMap<String, InputConfig>,
        outputs: &BTreeMap<String, OutputConfig>,
    ) -> Result<(), ConfigError> {
        let mut stdin_reader: Option<&str> = None;
        for (name, input) in inputs.iter_mut() {
            crate::input::journald::options::check(input).map_err(|(key, m)| {
                let mut path = vec!["inputs", name];
                path.extend(key.iter().map(String::as_str));
                self.fail(&path, m)
            })?;
            self.check_source(name, input)?;
            self.check_format(name, input)?;
            self.check_shaping(name, input)?;
            input.output = self.resolve_output(name, &input.output, outputs)?;
            if let (Some(m), Some(out)) = (&input.multiline, outputs.get(&input.output)) {
                if m.max_bytes > out.max_request_bytes {
                    return Err(self.fail(
                        &["inputs", name, "multiline", "max_bytes"],
                        format!(
                            "{} is more than outputs.{}.max_request_bytes ({}): an event must \
                             fit in one request",
                            m.max_bytes, input.output, out.max_request_bytes
                        ),
                    ));
                }
            }
            if input.kind == InputKind::Stdin {
                if let Some(first) = stdin_reader {
                    return Err(self.fail(
                        &["inputs", name, "type"],
                        format!("only one input can read stdin, and inputs.{first} already does"),
                    ));
                }
                stdin_reader = Some(name);
            }
        }
        Ok(())
    }

    fn check_source(&self, name: &str, input: &InputConfig) -> Result<(), ConfigError> {
        let paths_key = ["inputs", name, "paths"];
        match input.kind {
            InputKind::File if input.paths.is_empty() => Err(self.fail(
                &paths_key,
                "a file input needs at least one path glob, \
                 like paths = [\"/var/log/myapp/*.log\"]",
            )),
            InputKind::File => match input.paths.iter().find(|p| !Path::new(p).is_absolute()) {
                Some(relative) => Err(self.fail(
                    &paths_key,
                    format!(
                        "{relative:?} is not an absolute path; write it in full, like \
                         \"/var/log/myapp/*.log\""
                    ),
                )),
                None => Ok(()),
            },
            InputKind::Stdin if !input.paths.is_empty() => Err(self.fail(
                &paths_key,
                "paths is only read with type = \"file\"; a stdin input reads standard input",
            )),
            InputKind::Stdin if !input.exclude.is_empty() => Err(self.fail(
                &["inputs", name, "exclude"],
                "exclude is only read with type = \"file\"",
            )),
            InputKind::Stdin => Ok(()),
            InputKind::Journald => Ok(()), // its keys: crate::input::journald::options::check
        }
    }

    fn check_format(&self, name: &str, input: &InputConfig) -> Result<(), ConfigError> {
        self.check_parsing(name, input)?;
        match (input.format, &input.pattern) {
            (InputFormat::Regex, None) => Err(self.fail(
                &["inputs", name, "pattern"],
                "format = \"regex\" needs a pattern with named groups, like \
                 pattern = '^(?P<Level>\\w+) (?P<Message>.*)$'",
            )),
            (_, Some(_)) if input.format != InputFormat::Regex => Err(self.fail(
                &["inputs", name, "pattern"],
                "pattern is only read with format = \"regex\"",
            )),
            _ => Ok(()),
        }
    }

    /// `on_mismatch` and `[multiline]` fit the format; the pattern and `start` compile.
    fn check_parsing(&self, name: &str, input: &InputConfig) -> Result<(), ConfigError> {
        use crate::input::parse::{OnMismatch, TextRules};
        let parsed = matches!(
            input.format,
            InputFormat::Regex | InputFormat::Logfmt | InputFormat::Syslog
        );
        if input.on_mismatch != OnMismatch::Raw && !parsed {
            return Err(self.fail(
                &["inputs", name, "on_mismatch"],
                "on_mismatch is only read with format = \"regex\", \"logfmt\" or \"syslog\"",
            ));
        }
        if input.multiline.is_some() && input.format == InputFormat::Json {
            return Err(self.fail(
                &["inputs", name, "multiline"],
                "multiline joins text lines; a JSON line is a whole record already",
            ));
        }
        if input.format == InputFormat::Regex && input.pattern.is_none() {
            // Said by the caller, with an example.
            return Ok(());
        }
        match TextRules::for_input(input) {
            Ok(_) => Ok(()),
            Err(e) => {
                let mut key = vec!["inputs", name];
                key.extend_from_slice(e.key());
                Err(self.fail(&key, e.to_string()))
            }
        }
    }

    /// The output an input feeds: the one it names, or the only one there is.
    fn resolve_output(
        &self,
        input: &str,
        wanted: &str,
        outputs: &BTreeMap<String, OutputConfig>,
    ) -> Result<String, ConfigError> {
        let key = ["inputs", input, "output"];
        if !wanted.is_empty() {
            return match outputs.contains_key(wanted) {
                true => Ok(wanted.to_string()),
                false if outputs.is_empty() => Err(self.fail(
                    &key,
                    format!("no output named {wanted:?}: add an [outputs.{wanted}] table"),
                )),
                false => Err(self.fail(
                    &key,
                    format!(
                        "no output named {wanted:?}{}",
                        name_choices(wanted, outputs.keys())
                    ),
                )),
            };
        }
        let mut names = outputs.keys();
        match (names.next(), names.next()) {
            (Some(only), None) => Ok(only.clone()),
            (None, _) => Err(self.fail(
                &["inputs", input],
                "there is no output to send to: add an [outputs.NAME] table",
            )),
            _ => Err(self.fail(
                &key,
                format!(
                    "not set, and there are several outputs; write output = \"NAME\" with \
                     one of: {}",
                    join_names(outputs.keys())
                ),
            )),
        }
    }
}

/// Checks a DCR immutable id (`dcr-` and 32 hex digits); the message says where to find it.
pub fn validate_dcr_id(id: &str) -> Result<(), String> {
    let well_formed = id
        .strip_prefix("dcr-")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if well_formed {
        return Ok(());
    }
    let what = if id.starts_with("/subscriptions/") {
        " (that is the DCR's resource id)"
    } else {
        ""
    };
    Err(format!(
        "expected dcr- followed by 32 hex digits, found {id:?}{what}; hint: use the DCR \
         *immutable id*, shown on the DCR's overview page"
    ))
}

/// Checks a stream name: the API only knows `Custom-…` and `Microsoft-…` streams.
pub fn validate_stream(stream: &str) -> Result<(), String> {
    let named = ["Custom-", "Microsoft-"]
        .iter()
        .any(|prefix| stream.len() > prefix.len() && stream.starts_with(prefix));
    if named {
        return Ok(());
    }
    let hint = if stream.ends_with("_CL") && !stream.contains('-') {
        format!("did you mean \"Custom-{stream}\"? (the stream, not the table)")
    } else {
        "use a stream declared in the DCR's streamDeclarations, like Custom-MyApp_CL".to_string()
    };
    Err(format!(
        "expected a stream name starting with Custom- or Microsoft-, found {stream:?}; {hint}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A complete output table, four lines, so extra keys land on line 5.
    const APP: &str = "[outputs.app]\n\
        endpoint = \"https://my-dce-ab12.eastus-1.ingest.monitor.azure.com\"\n\
        dcr = \"dcr-0123456789abcdef0123456789abcdef\"\n\
        stream = \"Custom-MyApp_CL\"\n";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        parse_str(text, "agent.toml", &no_env)
    }

    fn app(extra: &str) -> String {
        format!("{APP}{extra}\n")
    }

    #[test]
    fn the_example_file_is_valid_as_written() {
        let config = parse_str(include_str!("../agent.toml.example"), "example", &no_env)
            .unwrap_or_else(|e| panic!("{e}"));
        let (name, output) = config.output(None).unwrap();
        assert_eq!(name, "app");
        assert_eq!(output.dcr, "dcr-00000000000000000000000000000000");
        assert_eq!(
            config.auth.client_id, None,
            "\"${{AZURE_CLIENT_ID:-}}\" is unset"
        );
        assert_eq!(config.auth.cloud, Some(Cloud::Public));
        assert_eq!(config.inputs["applog"].output, "app");
        assert_eq!(config.spool.max_bytes, 1 << 30);
    }

    #[test]
    fn the_example_file_documents_every_key() {
        let example = include_str!("../agent.toml.example");
        let keys = [
            "state_dir",
            "http_listen",
            "shutdown_timeout",
            "method",
            "client_id",
            "object_id",
            "resource_id",
            "tenant_id",
            "client_secret",
            "certificate_path",
            "cloud",
            "authority_host",
            "audience",
            "arc_key_dir",
            "endpoint",
            "dcr",
            "stream",
            "concurrency",
            "max_request_bytes",
            "batch_timeout",
            "permission_grace",
            "retry_timeout",
            "request_timeout",
            "compression_level",
            "max_requests_per_minute",
            "max_bytes_per_minute",
            "columns",
            "type",
            "paths",
            "exclude",
            "format",
            "pattern",
            "on_mismatch",
            "multiline",
            "start",
            "preset",
            "timeout",
            "max_lines",
            "start_at",
            "output",
            "max_bytes",
            "schema_file",
            "max_time_span",
            "time_field",
            "time_format",
            "timezone",
            "fields",
            "rename",
            "drop",
            "fsync_interval",
            "when_full",
            "units",
            "exclude_units",
            "priority",
            "match",
            "since_now",
            "journal_directory",
        ];
        for key in keys {
            assert!(
                example.contains(&format!("{key} =")) || example.contains(&format!(".{key}]")),
                "{key}"
            );
        }
    }

    #[test]
    fn shaping_keys_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tmp");
        let schema = r#"{"properties": {"streamDeclarations": {"Custom-MyApp_CL": {"columns": [
            {"name": "TimeGenerated", "type": "datetime"}, {"name": "Count", "type": "int"}]}}}}"#;
        std::fs::write(dir.path().join("dcr.json"), schema).expect("write");
        let text = app("schema_file = \"dcr.json\"\n\
             max_time_span = \"30m\"\n\
             [outputs.app.columns]\n\
             Count = \"long\"\n\
             Seen = \"dateTime\"\n\
             [inputs.x]\n\
             type = \"stdin\"\n\
             format = \"json\"\n\
             time_field = \"ts\"\n\
             time_format = \"%d/%b/%Y:%H:%M:%S %z\"\n\
             timezone = \"Europe/Berlin\"\n\
             drop = [\"pw\"]\n\
             [inputs.x.rename]\n\
             msg = \"Message\"\n\
             [inputs.x.fields]\n\
             Env = \"${ENV:-prod}\"\n\
             Shard = 3\n\
             Ratio = 0.5\n\
             On = true\n\
             Host = \"${HOSTNAME}\"\n");
        let origin = dir.path().join("agent.toml").display().to_string();
        let config = parse_str(&text, &origin, &no_env).unwrap_or_else(|e| panic!("{e}"));
        let out = &config.outputs["app"];
        assert_eq!(out.max_time_span, Some(Duration::from_secs(1800)));
        assert_eq!(
            out.schema_columns.len(),
            2,
            "read relative to the config file"
        );
        let declared = out.declared_columns();
        assert_eq!(
            declared["Count"],
            ColumnType::Long,
            "[columns] wins over the file"
        );
        assert_eq!(declared["Seen"], ColumnType::Datetime);
        assert_eq!(declared["TimeGenerated"], ColumnType::Datetime);
        let x = &config.inputs["x"];
        assert_eq!(x.time_field.as_deref(), Some("ts"));
        assert_eq!(x.timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(x.drop, ["pw"]);
        assert_eq!(x.rename["msg"], "Message");
        assert_eq!(x.fields["Env"], serde_json::json!("prod"));
        assert_eq!(x.fields["Shard"], serde_json::json!(3));
        assert_eq!(x.fields["Ratio"], serde_json::json!(0.5));
        assert_eq!(x.fields["On"], serde_json::json!(true));
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        assert_eq!(
            x.fields["Host"],
            serde_json::json!(host),
            "HOSTNAME falls back to the host name"
        );

        let missing = app("schema_file = \"nope.json\"\n");
        let e = parse_str(&missing, &origin, &no_env)
            .expect_err("missing")
            .to_string();
        assert!(
            e.contains("line 5, key outputs.app.schema_file: cannot read schema file"),
            "{e}"
        );
        let other = app("schema_file = \"dcr.json\"\n").replace("Custom-MyApp_CL", "Custom-X_CL");
        let e = parse_str(&other, &origin, &no_env)
            .expect_err("stream")
            .to_string();
        assert!(
            e.contains("declares no stream \"Custom-X_CL\"; it declares: Custom-MyApp_CL"),
            "{e}"
        );
    }

    #[test]
    fn shaping_mistakes_name_line_and_key() {
        for (extra, line, key, says) in [
            (
                "[outputs.app.columns]\nA = \"guid\"\n",
                6,
                "outputs.app.columns.A",
                "toguid",
            ),
            (
                "[outputs.app.columns]\n\"a b\" = \"string\"\n",
                6,
                "outputs.app.columns.a b",
                "only letters",
            ),
            (
                "max_time_span = \"0s\"\n",
                5,
                "outputs.app.max_time_span",
                "above 0",
            ),
            (
                "[inputs.x]\ntype = \"stdin\"\ntime_format = \"iso\"\n",
                7,
                "inputs.x.time_format",
                "unknown time format",
            ),
            (
                "[inputs.x]\ntype = \"stdin\"\ntimezone = \"Europe/Berln\"\n",
                7,
                "inputs.x.timezone",
                "unknown time zone",
            ),
            (
                "[inputs.x]\ntype = \"stdin\"\n[inputs.x.rename]\na = \"1a\"\n",
                8,
                "inputs.x.rename.a",
                "start with a letter",
            ),
            (
                "[inputs.x]\ntype = \"stdin\"\n[inputs.x.fields]\nA = [1]\n",
                8,
                "inputs.x.fields.A",
                "string, number or boolean",
            ),
        ] {
            let e = parse(&app(extra)).expect_err(extra);
            assert_eq!((e.line(), e.key()), (Some(line), Some(key)), "{extra}: {e}");
            assert!(e.to_string().contains(says), "{e}");
        }
    }

    #[test]
    fn journald_keys_are_read_and_checked_where_they_belong() {
        let ok = parse(&app(
            "[inputs.j]\ntype = \"journald\"\nunits = [\"ssh\"]\n\
             priority = \"warning\"\nsince_now = false\nformat = \"raw\"\n\
             journal_directory = \"/var/log/journal\"\n\
             [inputs.j.match]\n_TRANSPORT = \"kernel\"\nSYSLOG_IDENTIFIER = [\"a\", \"b\"]\n",
        ))
        .expect("valid");
        let j = &ok.inputs["j"];
        assert_eq!(j.priority, Some(crate::input::journald::Priority::Warning));
        assert_eq!(j.since_now, Some(false));
        assert_eq!(j.format, InputFormat::Raw);
        assert_eq!(j.matches["_TRANSPORT"], ["kernel"]);
        assert_eq!(j.matches["SYSLOG_IDENTIFIER"], ["a", "b"]);
        for (extra, key, says) in [
            (
                "type = \"file\"\npaths = [\"/a\"]\nunits = [\"x\"]",
                "inputs.x.units",
                "only read with type = \"journald\"",
            ),
            (
                "type = \"stdin\"\nsince_now = true",
                "inputs.x.since_now",
                "journald",
            ),
            (
                "type = \"stdin\"\nformat = \"raw\"",
                "inputs.x.format",
                "journald",
            ),
            (
                "type = \"journald\"\npaths = [\"/a\"]",
                "inputs.x.paths",
                "journal entries",
            ),
            (
                "type = \"journald\"\nstart_at = \"beginning\"",
                "inputs.x.start_at",
                "since_now",
            ),
            (
                "type = \"journald\"\nformat = \"json\"",
                "inputs.x.format",
                "raw",
            ),
            (
                "type = \"journald\"\npriority = \"warn\"",
                "inputs.x.priority",
                "warning",
            ),
            (
                "type = \"journald\"\njournal_directory = \"journal\"",
                "inputs.x.journal_directory",
                "absolute",
            ),
            (
                "type = \"journald\"\nunits = [\"\"]",
                "inputs.x.units",
                "unit name",
            ),
            (
                "type = \"journald\"\n[inputs.x.match]\nmessage = \"x\"",
                "inputs.x.match.message",
                "upper-case",
            ),
            (
                "type = \"journald\"\n[inputs.x.match]\nA = []",
                "inputs.x.match.A",
                "give a value",
            ),
            (
                "type = \"journald\"\n[inputs.x.match]\nA = 1",
                "inputs.x.match.A",
                "a string or a list",
            ),
        ] {
            let text = app(&format!("[inputs.x]\n{extra}\n"));
            let e = parse(&text).expect_err(extra);
            assert_eq!(e.key(), Some(key), "{extra}: {e}");
            assert!(e.to_string().contains(says), "{extra}: {e}");
        }
    }

    #[test]
    fn an_empty_file_is_all_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(
            parse("\u{feff}# only a comment\n").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn defaults_are_filled_in() {
        let config = parse(APP).unwrap();
        assert_eq!(config.agent.state_dir, Path::new("/var/lib/dcrship"));
        assert_eq!(
            config.agent.http_listen,
            Some("127.0.0.1:9465".parse().unwrap())
        );
        assert_eq!(config.agent.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(config.auth.method, AuthMethod::Auto);
        assert_eq!(
            config.auth.arc_key_dir,
            Path::new("/var/opt/azcmagent/tokens")
        );
        let output = &config.outputs["app"];
        let expected = OutputConfig::new(
            "https://my-dce-ab12.eastus-1.ingest.monitor.azure.com",
            "dcr-0123456789abcdef0123456789abcdef",
            "Custom-MyApp_CL",
        );
        assert_eq!(output, &expected);
        assert_eq!(output.concurrency, 4);
        assert_eq!(output.max_request_bytes, 1_000_000);
        assert_eq!(output.batch_timeout, Duration::from_secs(1));
        assert_eq!(output.permission_grace, Duration::from_secs(3600));
        assert_eq!(output.retry_timeout, Duration::from_secs(600));
        assert_eq!(output.max_requests_per_minute, 12_000);
        assert_eq!(output.max_bytes_per_minute, 2_000_000_000);
        assert_eq!(output.compression_level, 3);
        assert_eq!(config.spool.max_bytes, 1 << 30);
    }

    #[test]
    fn every_key_is_read() {
        let text = format!(
            "[agent]\n\
             state_dir = \"/srv/dcrship\"\n\
             http_listen = \"\"\n\
             shutdown_timeout = \"1m30s\"\n\
             [auth]\n\
             method = \"client-certificate\"\n\
             client_id = \"11111111-1111-1111-1111-111111111111\"\n\
             tenant_id = \"22222222-2222-2222-2222-222222222222\"\n\
             client_secret = \"s3cr3t\"\n\
             certificate_path = \"/etc/dcrship/c.pem\"\n\
             cloud = \"usgov\"\n\
             authority_host = \"https://login.microsoftonline.us\"\n\
             audience = \"https://monitor.azure.us\"\n\
             arc_key_dir = \"/tmp/arc\"\n\
             {}\
             concurrency = 64\n\
             max_request_bytes = \"1MiB\"\n\
             batch_timeout = \"250ms\"\n\
             permission_grace = \"2h\"\n\
             retry_timeout = \"0\"\n\
             compression_level = 9\n\
             max_requests_per_minute = 600\n\
             max_bytes_per_minute = \"500MiB\"\n\
             [outputs.app.columns]\n\
             TimeGenerated = \"datetime\"\n\
             Count = \"long\"\n\
             [inputs.stdin]\n\
             type = \"stdin\"\n\
             format = \"regex\"\n\
             pattern = '^(?P<Level>\\w+)'\n\
             [inputs.files]\n\
             type = \"file\"\n\
             paths = [\"/var/log/a/*.log\", \"/var/log/b.log\"]\n\
             exclude = [\"*.gz\"]\n\
             format = \"json\"\n\
             start_at = \"beginning\"\n\
             output = \"app\"\n\
             [spool]\n\
             max_bytes = 5000000\n",
            APP
        );
        let config = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.agent.state_dir, Path::new("/srv/dcrship"));
        assert_eq!(config.agent.http_listen, None);
        assert_eq!(config.agent.shutdown_timeout, Duration::from_secs(90));
        let auth = &config.auth;
        assert_eq!(auth.method, AuthMethod::ClientCertificate);
        assert_eq!(
            auth.client_secret.as_ref().map(Secret::expose),
            Some("s3cr3t")
        );
        assert_eq!(
            auth.certificate_path.as_deref(),
            Some(Path::new("/etc/dcrship/c.pem"))
        );
        assert_eq!(auth.cloud, Some(Cloud::UsGov));
        assert_eq!(auth.audience.as_deref(), Some("https://monitor.azure.us"));
        assert_eq!(auth.arc_key_dir, Path::new("/tmp/arc"));
        let output = &config.outputs["app"];
        assert_eq!(output.concurrency, 64);
        assert_eq!(output.max_request_bytes, 1_048_576);
        assert_eq!(output.batch_timeout, Duration::from_millis(250));
        assert_eq!(output.permission_grace, Duration::from_secs(7200));
        assert_eq!(output.retry_timeout, Duration::ZERO);
        assert_eq!(output.compression_level, 9);
        assert_eq!(output.max_requests_per_minute, 600);
        assert_eq!(output.max_bytes_per_minute, 500 << 20);
        assert_eq!(output.columns["Count"], ColumnType::Long);
        let stdin = &config.inputs["stdin"];
        assert_eq!(
            (stdin.kind, stdin.format),
            (InputKind::Stdin, InputFormat::Regex)
        );
        assert_eq!(stdin.output, "app", "the only output is filled in");
        let files = &config.inputs["files"];
        assert_eq!(files.paths, ["/var/log/a/*.log", "/var/log/b.log"]);
        assert_eq!(files.exclude, ["*.gz"]);
        assert_eq!(
            (files.format, files.start_at),
            (InputFormat::Json, StartAt::Beginning)
        );
        assert_eq!(config.spool.max_bytes, 5_000_000);
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }

    /// A config that must be refused, with the line, key and words its message must carry.
    struct Bad {
        line: usize,
        key: &'static str,
        says: &'static str,
        text: String,
    }

    fn bad(line: usize, key: &'static str, says: &'static str, text: impl Into<String>) -> Bad {
        let text = text.into();
        Bad {
            line,
            key,
            says,
            text,
        }
    }

    fn with_dcr(dcr: &str) -> String {
        APP.replace("dcr-0123456789abcdef0123456789abcdef", dcr)
    }

    fn with_stream(stream: &str) -> String {
        APP.replace("Custom-MyApp_CL", stream)
    }

    fn two_outputs() -> String {
        format!("{APP}[outputs.audit]\n{}", &APP["[outputs.app]\n".len()..])
    }

    fn bad_cases() -> Vec<Bad> {
        let no_endpoint = "[outputs.app]\n\
            dcr = \"dcr-0123456789abcdef0123456789abcdef\"\n\
            stream = \"Custom-A_CL\"\n";
        let file_input = "[inputs.log]\ntype = \"file\"";
        vec![
            // Unknown keys, with a suggestion when one is close.
            bad(
                5,
                "outputs.app.concurency",
                "did you mean `concurrency`?",
                app("concurency = 8"),
            ),
            bad(1, "output", "did you mean `outputs`?", "[output.app]\n"),
            bad(
                2,
                "agent.foo",
                "one of: state_dir, http_listen",
                "[agent]\nfoo = 1\n",
            ),
            // Durations and sizes.
            bad(
                5,
                "outputs.app.batch_timeout",
                "invalid duration \"soon\"",
                app("batch_timeout = \"soon\""),
            ),
            bad(
                5,
                "outputs.app.retry_timeout",
                "like \"500ms\"",
                app("retry_timeout = 10"),
            ),
            bad(
                5,
                "outputs.app.batch_timeout",
                "above 0",
                app("batch_timeout = \"0\""),
            ),
            bad(
                2,
                "spool.max_bytes",
                "invalid size \"lots\"",
                "[spool]\nmax_bytes = \"lots\"\n",
            ),
            bad(
                2,
                "spool.max_bytes",
                "at least 1MiB",
                "[spool]\nmax_bytes = \"1KiB\"\n",
            ),
            // Ranges and types.
            bad(
                5,
                "outputs.app.concurrency",
                "from 1 to 64, found 65",
                app("concurrency = 65"),
            ),
            bad(
                5,
                "outputs.app.concurrency",
                "from 1 to 64, found 0",
                app("concurrency = 0"),
            ),
            bad(
                5,
                "outputs.app.concurrency",
                "found \"x\"",
                app("concurrency = \"x\""),
            ),
            bad(
                5,
                "outputs.app.concurrency",
                "invalid type: boolean",
                app("concurrency = true"),
            ),
            bad(
                5,
                "outputs.app.max_request_bytes",
                "from 1024 to 1048576",
                app("max_request_bytes = 2000000"),
            ),
            bad(
                5,
                "outputs.app.compression_level",
                "from 0 to 9",
                app("compression_level = 10"),
            ),
            bad(
                5,
                "outputs.app.max_requests_per_minute",
                "from 1 to 1000000, found 0",
                app("max_requests_per_minute = 0"),
            ),
            bad(
                5,
                "outputs.app.max_bytes_per_minute",
                "from 1MiB (one full request a minute) to 1TiB",
                app("max_bytes_per_minute = \"1KiB\""),
            ),
            bad(
                5,
                "outputs.app.max_bytes_per_minute",
                "invalid size \"2 parsecs\"",
                app("max_bytes_per_minute = \"2 parsecs\""),
            ),
            bad(
                6,
                "outputs.app.columns.A",
                "one of: string, int",
                app("[outputs.app.columns]\nA = \"text\""),
            ),
            bad(
                2,
                "agent.http_listen",
                "127.0.0.1:9465",
                "[agent]\nhttp_listen = \"9465\"\n",
            ),
            // Outputs.
            bad(
                1,
                "outputs.app.endpoint",
                "missing required key `endpoint`",
                no_endpoint,
            ),
            bad(
                2,
                "outputs.app.endpoint",
                "plain http://",
                APP.replace("https://my-dce", "http://my-dce"),
            ),
            bad(
                2,
                "outputs.app.endpoint",
                "invalid URL",
                APP.replace("https://my-dce-ab12", "my-dce"),
            ),
            bad(
                3,
                "outputs.app.dcr",
                "the DCR *immutable id*, shown on the DCR's overview page",
                with_dcr("my-dcr"),
            ),
            bad(3, "outputs.app.dcr", "32 hex digits", with_dcr("dcr-0123")),
            bad(
                4,
                "outputs.app.stream",
                "did you mean \"Custom-MyApp_CL\"?",
                with_stream("MyApp_CL"),
            ),
            // Inputs.
            bad(
                9,
                "inputs.log.output",
                "no output named \"ap\"; did you mean \"app\"?",
                app(&format!(
                    "\n{file_input}\npaths = [\"/a.log\"]\noutput = \"ap\""
                )),
            ),
            bad(
                9,
                "inputs.log.output",
                "with one of: app, audit",
                format!("{}[inputs.log]\ntype = \"stdin\"", two_outputs()),
            ),
            bad(
                1,
                "inputs.log",
                "add an [outputs.NAME] table",
                "[inputs.log]\ntype = \"stdin\"\n",
            ),
            bad(
                5,
                "inputs.log.type",
                "missing required key `type`",
                app("[inputs.log]\npaths = [\"/a\"]"),
            ),
            bad(
                6,
                "inputs.log.type",
                "did you mean \"file\"?",
                app("[inputs.log]\ntype = \"files\""),
            ),
            bad(5, "inputs.log.paths", "at least one path", app(file_input)),
            bad(
                7,
                "inputs.log.paths",
                "not an absolute path",
                app(&format!("{file_input}\npaths = [\"logs/*.log\"]")),
            ),
            bad(
                7,
                "inputs.log.paths[1]",
                "expected a string",
                app(&format!("{file_input}\npaths = [\"/a\", 5]")),
            ),
            bad(
                8,
                "inputs.b.type",
                "only one input can read stdin",
                app("[inputs.a]\ntype = \"stdin\"\n[inputs.b]\ntype = \"stdin\""),
            ),
            bad(
                5,
                "inputs.a.pattern",
                "needs a pattern",
                app("[inputs.a]\ntype = \"stdin\"\nformat = \"regex\""),
            ),
            // Environment.
            bad(
                5,
                "outputs.app.retry_timeout",
                "RETRY is not set",
                app("retry_timeout = \"${RETRY}\""),
            ),
            bad(
                3,
                "auth.client_secret",
                "AZURE_CLIENT_SECRET is not set",
                "[auth]\n\nclient_secret = \"${AZURE_CLIENT_SECRET}\"\n",
            ),
            bad(
                4,
                "outputs.app.stream",
                "without a closing",
                with_stream("${STREAM"),
            ),
            // Auth.
            bad(
                3,
                "auth.resource_id",
                "client_id and resource_id are both set",
                "[auth]\nclient_id = \"a\"\nresource_id = \"/subscriptions/x\"\n",
            ),
            bad(
                2,
                "auth.method",
                "did you mean \"managed-identity\"?",
                "[auth]\nmethod = \"managed_identity\"\n",
            ),
            bad(
                2,
                "auth.cloud",
                "one of: public, usgov, china",
                "[auth]\ncloud = \"azure\"\n",
            ),
            bad(
                2,
                "auth.authority_host",
                "plain http://",
                "[auth]\nauthority_host = \"http://login.example.com\"\n",
            ),
        ]
    }

    #[test]
    fn bad_configs_name_line_and_key() {
        for Bad {
            line,
            key,
            says,
            text,
        } in bad_cases()
        {
            let err = match parse(&text) {
                Ok(_) => panic!("accepted:\n{text}"),
                Err(e) => e,
            };
            let shown = err.to_string();
            assert_eq!(err.line(), Some(line), "{shown}\n{text}");
            assert_eq!(err.key(), Some(key), "{shown}\n{text}");
            assert!(shown.contains(says), "{shown:?} lacks {says:?}");
            assert!(!shown.contains('\n'), "not one line: {shown:?}");
            let place = format!("agent.toml line {line}, key {key}: ");
            assert!(shown.starts_with(&place), "{shown}");
        }
    }

    #[test]
    fn toml_syntax_errors_name_the_line() {
        let cases = [
            (1, "invalid TOML", "[outputs.app\n".to_string()),
            (
                5,
                "duplicate key `dcr`",
                app("dcr = \"dcr-0123456789abcdef0123456789abcdef\""),
            ),
        ];
        for (line, says, text) in cases {
            let err = parse(&text).unwrap_err();
            let shown = err.to_string();
            assert_eq!(err.line(), Some(line), "{shown}");
            assert!(
                shown.starts_with(&format!("agent.toml line {line}: ")),
                "{shown}"
            );
            assert!(shown.contains(says), "{shown}");
        }
    }

    #[test]
    fn the_message_reads_like_the_contract() {
        let err = parse_str(
            &app("concurrency = \"x\""),
            "/etc/dcrship/agent.toml",
            &no_env,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/dcrship/agent.toml line 5, key outputs.app.concurrency: \
             expected an integer from 1 to 64, found \"x\""
        );
    }

    #[test]
    fn expands_variables() {
        let env = |name: &str| match name {
            "A" => Some("alpha".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let cases = [
            ("plain", "plain"),
            ("${A}", "alpha"),
            ("x${A}y${A}", "xalphayalpha"),
            ("${A:-other}", "alpha"),
            ("${UNSET:-fallback}", "fallback"),
            ("${UNSET:-https://h:1/p?q=a-b}", "https://h:1/p?q=a-b"),
            ("${UNSET:-}", ""),
            ("${EMPTY:-fallback}", "fallback"),
            ("${EMPTY}", ""),
            ("$${A}", "${A}"),
            ("$$", "$"),
            ("$$$${A}", "$${A}"),
            ("$$${A}", "$alpha"),
            ("5$ and $x", "5$ and $x"),
            ("$", "$"),
        ];
        for (input, want) in cases {
            assert_eq!(expand_env(input, &env).as_deref(), Ok(want), "{input}");
        }
        let errors = [
            ("${UNSET}", ExpandError::Undefined("UNSET".into())),
            ("${A", ExpandError::Unclosed),
            ("${}", ExpandError::BadName(String::new())),
            ("${1A}", ExpandError::BadName("1A".into())),
            ("${A B}", ExpandError::BadName("A B".into())),
            ("${:-x}", ExpandError::BadName(":-x".into())),
        ];
        for (input, want) in errors {
            assert_eq!(expand_env(input, &env), Err(want), "{input}");
        }
    }

    #[test]
    fn config_values_are_expanded_from_the_given_environment() {
        let text = "[auth]\n\
            method = \"${AUTH:-managed-identity}\"\n\
            client_secret = \"${SECRET}\"\n\
            tenant_id = \"${TENANT:-}\"\n\
            audience = \"api://$${NOT_A_VAR}\"\n\
            [outputs.app]\n\
            endpoint = \"${DCE}\"\n\
            dcr = \"${DCR:-dcr-0123456789abcdef0123456789abcdef}\"\n\
            stream = \"Custom-${APP}_CL\"\n\
            concurrency = \"${WORKERS:-8}\"\n\
            batch_timeout = \"${BATCH:-2s}\"\n\
            [spool]\n\
            max_bytes = \"${SPOOL:-2GiB}\"\n";
        let env = |name: &str| match name {
            "SECRET" => Some("hunter2".to_string()),
            "DCE" => Some("http://127.0.0.1:8080".to_string()),
            "APP" => Some("Web".to_string()),
            "WORKERS" => Some("16".to_string()),
            "NOT_A_VAR" => Some("expanded-by-mistake".to_string()),
            _ => None,
        };
        let config = parse_str(text, "agent.toml", &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.auth.method, AuthMethod::ManagedIdentity);
        assert_eq!(config.auth.client_secret, Some(Secret::new("hunter2")));
        assert_eq!(config.auth.tenant_id, None);
        assert_eq!(config.auth.audience.as_deref(), Some("api://${NOT_A_VAR}"));
        let output = &config.outputs["app"];
        assert_eq!(output.endpoint, "http://127.0.0.1:8080");
        assert_eq!(output.stream, "Custom-Web_CL");
        assert_eq!(output.concurrency, 16);
        assert_eq!(output.batch_timeout, Duration::from_secs(2));
        assert_eq!(config.spool.max_bytes, 2 << 30);
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn an_undefined_variable_never_shows_a_secret() {
        let env = |name: &str| (name == "SECRET").then(|| "hunter2".to_string());
        let text = "[auth]\nclient_secret = \"${SECRET}${OTHER}\"\n";
        let err = parse_str(text, "agent.toml", &env).unwrap_err().to_string();
        assert!(err.contains("OTHER is not set"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn output_picks_by_name_or_the_only_one() {
        let one = parse(APP).unwrap();
        assert_eq!(one.output(None).unwrap().0, "app");
        assert_eq!(one.output(Some("app")).unwrap().0, "app");
        let err = one.output(Some("apps")).unwrap_err().to_string();
        assert!(err.contains("did you mean \"app\"?"), "{err}");
        let err = one.output(Some("zzzzzz")).unwrap_err().to_string();
        assert!(err.contains("the outputs are: app"), "{err}");

        let two = format!("{APP}[outputs.audit]\n{}", &APP["[outputs.app]\n".len()..]);
        let two = parse(&two).unwrap();
        assert_eq!(two.output(Some("audit")).unwrap().0, "audit");
        let err = two.output(None).unwrap_err().to_string();
        assert!(err.contains("several outputs (app, audit)"), "{err}");

        let err = Config::default().output(None).unwrap_err().to_string();
        assert!(err.contains("no [outputs.NAME]"), "{err}");
    }

    #[test]
    fn sizes() {
        let good = [
            ("1GiB", 1 << 30),
            ("512MiB", 512 << 20),
            ("100MB", 100_000_000),
            ("64 KiB", 64 << 10),
            ("10kb", 10_000),
            ("2TB", 2_000_000_000_000),
            ("1TiB", 1 << 40),
            ("1234", 1234),
            ("5B", 5),
        ];
        for (input, want) in good {
            assert_eq!(parse_byte_size(input), Ok(want), "{input}");
        }
        for bad in ["", "GiB", "1.5GiB", "1G", "-1", "1 PB", "99999999999TiB"] {
            assert!(parse_byte_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listen_addresses() {
        let v4 = |a: [u8; 4], port| Some(SocketAddr::from((a, port)));
        assert_eq!(parse_listen(""), Ok(None));
        assert_eq!(parse_listen("0.0.0.0:9465"), Ok(v4([0, 0, 0, 0], 9465)));
        assert_eq!(parse_listen("localhost:80"), Ok(v4([127, 0, 0, 1], 80)));
        assert_eq!(
            parse_listen("[::]:9465"),
            Ok(Some("[::]:9465".parse().unwrap()))
        );
        assert!(parse_listen(":9465").is_err());
    }

    #[test]
    fn did_you_mean() {
        let known = ["concurrency", "max_request_bytes", "dcr", "stream"];
        assert_eq!(closest("concurency", known), Some("concurrency"));
        assert_eq!(
            closest("max-request-bytes", known),
            Some("max_request_bytes")
        );
        assert_eq!(closest("DCR", known), Some("dcr"));
        assert_eq!(closest("streams", known), Some("stream"));
        assert_eq!(closest("endpoint", known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn ids_and_streams() {
        assert!(validate_dcr_id("dcr-0123456789ABCDEF0123456789abcdef").is_ok());
        let err = validate_dcr_id(
            "/subscriptions/x/resourceGroups/y/providers/Microsoft.Insights/dataCollectionRules/z",
        )
        .unwrap_err();
        assert!(err.contains("resource id"), "{err}");
        assert!(validate_stream("Microsoft-Syslog").is_ok());
        assert!(validate_stream("Custom-").is_err());
        assert!(validate_stream("custom-x").is_err());
    }

    #[test]
    fn load_reads_the_file_and_names_it_when_it_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, app("concurrency = 2")).unwrap();
        assert_eq!(load(&path).unwrap().outputs["app"].concurrency, 2);

        std::fs::write(&path, app("concurrency = 100")).unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{} line 5, key outputs.app.concurrency",
                path.display()
            )),
            "{err}"
        );

        let missing = dir.path().join("nope.toml");
        let err = load(&missing).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn spool_fsync_interval_and_when_full() {
        let config = parse("").unwrap();
        assert_eq!(config.spool.fsync_interval, Duration::from_millis(200));
        assert_eq!(config.spool.when_full, crate::spool::WhenFull::Block);
        let config =
            parse("[spool]\nfsync_interval = \"50ms\"\nwhen_full = \"drop_oldest\"\n").unwrap();
        assert_eq!(config.spool.fsync_interval, Duration::from_millis(50));
        assert_eq!(config.spool.when_full, crate::spool::WhenFull::DropOldest);
        let err = parse("[spool]\nwhen_full = \"panic\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("spool.when_full") && err.contains("drop_oldest"),
            "{err}"
        );
    }

    #[test]
    fn the_environment_snapshot_ends_with_the_parse() {
        let env = |_: &str| Some("from-lookup".to_string());
        parse_str("[auth]\ntenant_id = \"${T}\"\n", "agent.toml", &env).unwrap();
        ENV_SNAPSHOT.with(|cell| assert!(cell.borrow().is_none()));
        // Also after a failed parse.
        parse_str("[auth]\ntenant_id = 5\n", "agent.toml", &env).unwrap_err();
        ENV_SNAPSHOT.with(|cell| assert!(cell.borrow().is_none()));
    }

    #[test]
    fn parser_and_multiline_settings() {
        let config = parse(&app(
            "[inputs.a]\ntype = \"stdin\"\nformat = \"logfmt\"\non_mismatch = \"dead-letter\"\n\
             [inputs.a.multiline]\npreset = \"python\"\n\
             [inputs.b]\ntype = \"stdin\"\nformat = \"syslog\"\n[inputs.b.multiline]\n\
             start = '^<'\ntimeout = \"250ms\"\nmax_lines = 20\nmax_bytes = \"64KiB\"\n",
        ));
        // only one stdin input is allowed: check the first, then the second on its own
        let err = config.expect_err("two stdin inputs").to_string();
        assert!(err.contains("only one input can read stdin"), "{err}");
        let a = parse(&app(
            "[inputs.a]\ntype = \"stdin\"\nformat = \"logfmt\"\non_mismatch = \"dead-letter\"\n\
             [inputs.a.multiline]\npreset = \"python\"\n",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let a = &a.inputs["a"];
        assert_eq!(a.on_mismatch, crate::input::parse::OnMismatch::DeadLetter);
        let m = a.multiline.as_ref().expect("multiline");
        assert_eq!(m.preset, Some(crate::input::multiline::Preset::Python));
        assert_eq!(
            (m.timeout, m.max_lines, m.max_bytes),
            (Duration::from_secs(1), 500, 256 * 1024),
            "defaults"
        );
        let b = parse(&app(
            "[inputs.b]\ntype = \"stdin\"\nformat = \"syslog\"\n[inputs.b.multiline]\n\
             start = '^<'\ntimeout = \"250ms\"\nmax_lines = 20\nmax_bytes = \"64KiB\"\n",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let m = b.inputs["b"].multiline.clone().expect("multiline");
        assert_eq!(m.start.as_deref(), Some("^<"));
        assert_eq!(
            (m.timeout, m.max_lines, m.max_bytes),
            (Duration::from_millis(250), 20, 65536)
        );
        assert_eq!(b.inputs["b"].format, InputFormat::Syslog);

        // (line, key, words, input table) — APP is four lines, the input's format is on line 7
        let cases = [
            (
                8,
                "inputs.a.pattern",
                "no named group",
                "format = \"regex\"\npattern = '(x)'",
            ),
            (
                8,
                "inputs.a.pattern",
                "not a valid column name",
                "format = \"regex\"\npattern = '(?P<_a>x)'",
            ),
            (
                8,
                "inputs.a.pattern",
                "unclosed group",
                "format = \"regex\"\npattern = '(?P<A>x'",
            ),
            (
                8,
                "inputs.a.pattern",
                "only read with",
                "format = \"logfmt\"\npattern = '(?P<A>x)'",
            ),
            (
                8,
                "inputs.a.multiline",
                "JSON line",
                "format = \"json\"\n[inputs.a.multiline]\npreset = \"java\"",
            ),
            (
                8,
                "inputs.a.multiline",
                "not both",
                "format = \"text\"\n[inputs.a.multiline]\npreset = \"java\"\nstart = 'x'",
            ),
            (
                8,
                "inputs.a.multiline",
                "set start",
                "format = \"text\"\n[inputs.a.multiline]\ntimeout = \"1s\"",
            ),
            (
                9,
                "inputs.a.multiline.start",
                "invalid regular expression",
                "format = \"text\"\n[inputs.a.multiline]\nstart = '(x'",
            ),
            (
                9,
                "inputs.a.multiline.preset",
                "java",
                "format = \"text\"\n[inputs.a.multiline]\npreset = \"ruby\"",
            ),
            (
                9,
                "inputs.a.multiline.max_lines",
                "from 1 to 100000",
                "format = \"text\"\n[inputs.a.multiline]\nmax_lines = 0",
            ),
            (
                9,
                "inputs.a.multiline.max_bytes",
                "1024",
                "format = \"text\"\n[inputs.a.multiline]\nmax_bytes = 10",
            ),
            (
                9,
                "inputs.a.multiline.timeout",
                "above 0",
                "format = \"text\"\n[inputs.a.multiline]\ntimeout = \"0s\"",
            ),
        ];
        for (line, key, says, input) in cases {
            let text = app(&format!("[inputs.a]\ntype = \"stdin\"\n{input}"));
            let err = parse(&text).expect_err(input);
            let shown = err.to_string();
            assert_eq!((err.line(), err.key()), (Some(line), Some(key)), "{shown}");
            assert!(shown.contains(says), "{shown}");
        }
        let err = parse(&app(
            "[inputs.a]\ntype = \"stdin\"\non_mismatch = \"dead-letter\"",
        ))
        .expect_err("text");
        assert_eq!(err.key(), Some("inputs.a.on_mismatch"), "{err}");
        // max_bytes must fit the output's request cap
        let text = format!(
            "{APP}max_request_bytes = 100000\n[inputs.a]\ntype = \"stdin\"\n\
             [inputs.a.multiline]\npreset = \"java\"\nmax_bytes = 200000\n"
        );
        let err = parse(&text).expect_err("over the cap").to_string();
        assert!(
            err.contains("line 10, key inputs.a.multiline.max_bytes")
                && err.contains("max_request_bytes (100000)"),
            "{err}"
        );
    }

    /// The recipes at the end of agent.toml.example are valid once uncommented.
    #[test]
    fn the_example_recipes_are_valid() {
        let example = include_str!("../agent.toml.example");
        let (_, recipes) = example.split_once("# Recipes:").expect("recipes section");
        let toml: String = recipes
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            // a schema file names a file the reader exports from Azure
            .filter(|l| !l.starts_with("schema_file"))
            .map(|l| format!("{l}\n"))
            .collect();
        let config = parse(&format!("{APP}{toml}")).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let names: Vec<&str> = config.inputs.keys().map(String::as_str).collect();
        assert_eq!(names, ["access", "java", "journal", "jsonapp", "syslog"]);
        assert_eq!(config.inputs["journal"].kind, InputKind::Journald);
        assert_eq!(config.inputs["journal"].units, ["ssh", "cron"]);
        assert_eq!(config.inputs["access"].format, InputFormat::Regex);
        assert!(config.inputs["java"].multiline.is_some());
        assert_eq!(config.inputs["syslog"].format, InputFormat::Syslog);
        // and the access-log pattern is the one the e2e tests use on nginx lines
        let pattern = config.inputs["access"].pattern.clone().expect("pattern");
        let p = crate::input::parse::RegexParser::new(&pattern).expect("compiles");
        let line = r#"203.0.113.9 - alice [23/Nov/2025:10:00:01 +0000] "GET /a HTTP/1.1" 404 0 "https://x/" "Mozilla/5.0 (X11)""#;
        let row = p.parse(line, &mut p.scratch()).expect("matches");
        assert_eq!(row["Status"], "404");
        assert_eq!(row["UserAgent"], "Mozilla/5.0 (X11)");
    }
}
