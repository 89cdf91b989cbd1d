//! The file's tables as serde reads them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::auth::{AuthMethod, Cloud};
use crate::secret::Secret;

#[allow(unused_imports)]
use super::*;
use crate::input::file::StartAt;
use crate::input::Format;
use crate::transform::columns::ColumnType;

/// The configuration as written (with flags laid over it): each table is read on its own (see
/// `read.rs`), then checked and compiled into a [`super::Config`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
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
    /// Tailed files held open at once, over all file inputs; `None`: the descriptor limit less
    /// a reserve (see [`crate::fdlimit`]).
    #[serde(deserialize_with = "de_max_open_files")]
    pub max_open_files: Option<usize>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            http_listen: Some(DEFAULT_HTTP_LISTEN),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            max_open_files: None,
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
    /// The certificate and its private key: PEM, or PKCS#12 (`.pfx`).
    #[serde(deserialize_with = "de_opt_path")]
    pub certificate_path: Option<PathBuf>,
    /// The password of an encrypted key or PKCS#12 file.
    #[serde(deserialize_with = "de_opt_secret")]
    pub certificate_password: Option<Secret>,
    /// The Azure Pipelines service connection (`azure-pipelines`).
    #[serde(deserialize_with = "de_opt_string")]
    pub service_connection_id: Option<String>,
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
            certificate_password: None,
            service_connection_id: None,
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
    /// `run` checks an output that sent nothing for this long with an empty request
    /// (`POST []`), so `/health` tells whether rows sent now would get through; `"0s"`: never.
    #[serde(default = "default_probe_interval", deserialize_with = "de_duration")]
    pub probe_interval: Duration,
    /// `run` sends one heartbeat row (`TimeGenerated`, `Computer`, `RawData`) to the stream this
    /// often, so the workspace shows which agents stopped; unset: none.
    #[serde(default, deserialize_with = "de_opt_nonzero_duration")]
    pub heartbeat_interval: Option<Duration>,
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
            probe_interval: DEFAULT_PROBE_INTERVAL,
            heartbeat_interval: None,
            schema_columns: BTreeMap::new(),
        }
    }

    /// `max_requests_per_minute` and `max_bytes_per_minute`.
    pub fn limits(&self) -> crate::ingest::limits::DcrLimits {
        crate::ingest::limits::DcrLimits {
            requests_per_minute: self.max_requests_per_minute,
            bytes_per_minute: self.max_bytes_per_minute,
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
    /// How records are framed and parsed; `text` unless written.
    #[serde(default = "default_format", deserialize_with = "de_enum")]
    pub format: Format,
    /// The regular expression for `format = "regex"`; its named groups become columns.
    #[serde(default, deserialize_with = "de_opt_string")]
    pub pattern: Option<String>,
    /// `regex`, `logfmt`, `syslog`: what becomes of a line that does not parse.
    #[serde(default, deserialize_with = "de_enum")]
    pub on_mismatch: crate::input::parse::OnMismatch,
    /// `[inputs.NAME.multiline]`: join the lines of one event (a stack trace) into one row.
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
    /// `[inputs.NAME.container]`: the files are a container runtime's logs (file inputs).
    #[serde(default)]
    pub container: Option<ContainerConfig>,
    #[serde(default, deserialize_with = "de_enum")]
    pub start_at: StartAt,
    /// The output this input feeds. Always a key of [`FileConfig::outputs`] after loading: when the
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
    // journald inputs
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
    /// Files read once, start to end (`send`); not a type a file can ask for.
    #[serde(skip)]
    Once,
}

fn default_format() -> Format {
    Format::Text
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

pub(super) fn default_multiline_timeout() -> Duration {
    crate::input::multiline::DEFAULT_TIMEOUT
}
pub(super) fn default_multiline_max_lines() -> usize {
    crate::input::multiline::DEFAULT_MAX_LINES
}
pub(super) fn default_multiline_max_bytes() -> usize {
    crate::input::multiline::DEFAULT_MAX_BYTES
}

pub(super) fn de_multiline_max_lines<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    to_usize(de_bounded(d, 1..=100_000)?)
}

pub(super) fn de_multiline_max_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
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

/// `[inputs.NAME.container]`: strip a container runtime's envelope, join its partial lines,
/// add the pod's columns (see [`crate::input::container`]); `format` reads the message.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerConfig {
    /// `cri`, `docker` or `auto` (per file, from its first line).
    #[serde(default, deserialize_with = "de_enum")]
    pub runtime: crate::input::container::Runtime,
    /// With `format = "json"`: the app's fields as columns, or the object as `LogMessage`.
    #[serde(default, deserialize_with = "de_enum")]
    pub json_fields: crate::input::container::JsonFields,
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
