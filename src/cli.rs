//! Command-line arguments (contract.md). Flags fall back to the environment variables named
//! there; flags and env win over a config file, which wins over the defaults.
//!
//! The doc comments here are the `--help` text, so they are written for a terminal, not rustdoc.
#![allow(rustdoc::invalid_html_tags, rustdoc::bare_urls)]

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::{AuthMethod, Cloud};
use crate::config::MultilineConfig;
use crate::dcr::template::{Plan, PrincipalType};
use crate::dcr::Artifact;
use crate::duration::clap_duration;
use crate::input::file::StartAt;
use crate::input::multiline::Preset;
use crate::input::parse::OnMismatch;
use crate::input::Format;
use crate::telemetry::LogFormat;

/// Ships logs to the Azure Monitor Logs Ingestion API (Data Collection Rule streams).
#[derive(Debug, Parser)]
#[command(
    name = "dcrship",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format on stderr
    #[arg(help_heading = "Logging", long, global = true, value_enum, env = "DCRSHIP_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; default: RUST_LOG, else info
    #[arg(help_heading = "Logging", long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

// Parsed once per process: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload files or stdin once, wait for every request to be answered, exit with a status
    // display_name: `dcrship run --version` (the container's entrypoint is `dcrship run`) says
    // "dcrship 0.1.0", not "dcrship-run 0.1.0".
    #[command(after_help = SEND_AFTER_HELP, display_name = "dcrship")]
    Send(SendArgs),
    /// Run the agent: tail files and/or stdin and deliver continuously (systemd service, sidecar)
    #[command(after_help = RUN_AFTER_HELP, display_name = "dcrship")]
    Run(RunArgs),
    /// Validate a configuration file; with --live, also get a token and POST [] to each output
    #[command(display_name = "dcrship")]
    Check(CheckArgs),
    /// From a log sample to the Azure side: infer the columns, make the table + DCR template
    #[command(display_name = "dcrship")]
    Dcr(DcrArgs),
}

const SEND_AFTER_HELP: &str = "\
Exit codes: 0 every row accepted; 1 internal error; 2 usage, configuration or unreadable input;
3 no token; 4 permission denied or not found (403/404) past --permission-grace, or a stream the
DCR does not declare (400 InvalidStream); 5 some rows rejected (see --dead-letter), the rest
delivered; 6 gave up on transient failures past --retry-timeout; 130 interrupted: SIGINT or
SIGTERM stops reading and delivers what was read for 10 s more (a second one stops at once).

Examples:
  dcrship send --dry-run examples/app.ndjson
  dcrship send --endpoint https://my-dce-ab12.eastus-1.ingest.monitor.azure.com \\
      --dcr dcr-00000000000000000000000000000000 --stream Custom-MyApp_CL app.ndjson
  tail -n 1000 /var/log/syslog | dcrship send --format syslog --stream Custom-Syslog_CL ...";

const RUN_AFTER_HELP: &str = "\
Two ways to run:
  dcrship run --config /etc/dcrship/agent.toml
  dcrship run --endpoint URL --dcr dcr-… --stream Custom-… --path '/var/log/app/*.log' [--stdin]
The second needs no file (containers); DCRSHIP_ENDPOINT, DCRSHIP_DCR, DCRSHIP_STREAM,
DCRSHIP_STATE_DIR and DCRSHIP_HTTP_LISTEN may stand in for the flags.

SIGTERM/SIGINT: stop reading, deliver what was read (shutdown timeout), save checkpoints, exit 0.
SIGHUP: reload the config file. With only --stdin, the agent exits 0 once stdin ends and
everything is delivered. /metrics and /health are served on http_listen (127.0.0.1:9465).";

/// Where to send and how to authenticate: shared by `send` and (later) `run`.
#[derive(Debug, Args, Clone, Default)]
pub struct OutputArgs {
    /// DCE logs-ingestion URL, or a Direct DCR's own logsIngestion URL
    #[arg(
        help_heading = "Destination",
        long,
        env = "DCRSHIP_ENDPOINT",
        value_name = "URL"
    )]
    pub endpoint: Option<String>,

    /// DCR immutable id (dcr-…)
    #[arg(
        help_heading = "Destination",
        long,
        env = "DCRSHIP_DCR",
        value_name = "ID"
    )]
    pub dcr: Option<String>,

    /// Stream name, e.g. Custom-MyApp_CL
    #[arg(
        help_heading = "Destination",
        long,
        env = "DCRSHIP_STREAM",
        value_name = "NAME"
    )]
    pub stream: Option<String>,

    /// How to get a token [default: auto]
    #[arg(
        help_heading = "Authentication",
        long,
        env = "DCRSHIP_AUTH",
        value_enum,
        value_name = "METHOD"
    )]
    pub auth: Option<AuthMethod>,

    /// User-assigned managed identity or app registration (client id)
    #[arg(
        help_heading = "Authentication",
        long,
        env = "AZURE_CLIENT_ID",
        value_name = "ID"
    )]
    pub client_id: Option<String>,

    /// Entra tenant id (service principal)
    #[arg(
        help_heading = "Authentication",
        long,
        env = "AZURE_TENANT_ID",
        value_name = "ID"
    )]
    pub tenant_id: Option<String>,

    /// Token audience and authority defaults [default: public]
    #[arg(
        help_heading = "Authentication",
        long,
        env = "DCRSHIP_CLOUD",
        value_enum
    )]
    pub cloud: Option<Cloud>,

    /// Requests in flight [default: 4]
    #[arg(help_heading = "Delivery", long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: Option<u32>,

    /// Cap on one request body, both uncompressed and gzip [default: 1000000]
    #[arg(help_heading = "Delivery", long, value_name = "N", value_parser = clap::value_parser!(u64).range(1024..=1_048_576))]
    pub max_request_bytes: Option<u64>,

    /// How long 403 and 404 keep being retried (role grants take up to an hour) [default: 60m]
    #[arg(help_heading = "Delivery", hide_short_help = true, long, value_name = "DUR", value_parser = clap_duration)]
    pub permission_grace: Option<Duration>,

    /// Give up on transient failures (network, 5xx, 429) after this [default: 10m]
    #[arg(help_heading = "Delivery", long, value_name = "DUR", value_parser = clap_duration)]
    pub retry_timeout: Option<Duration>,

    /// How long one request may take, connect to last byte of the answer; after a timeout the
    /// next try of it waits twice as long, up to 4x [default: 60s]
    #[arg(help_heading = "Delivery", hide_short_help = true, long, value_name = "DUR", value_parser = clap_nonzero_duration)]
    pub request_timeout: Option<Duration>,

    /// Send a partly filled request after input pauses this long [default: 1s]
    #[arg(help_heading = "Delivery", hide_short_help = true, long, value_name = "DUR", value_parser = clap_duration)]
    pub batch_timeout: Option<Duration>,

    /// gzip level, 0 (fastest) to 9 (smallest) [default: 3]
    #[arg(help_heading = "Delivery", hide_short_help = true, long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=9))]
    pub compression_level: Option<u32>,

    /// Requests a minute to the DCR, 1 to 1000000 (the service's limit) [default: 12000]
    #[arg(help_heading = "Delivery", hide_short_help = true, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_requests_per_minute: Option<u32>,

    /// Uncompressed bytes a minute to the DCR, 1MiB to 1TiB (the service's limit) [default: 2GB]
    #[arg(help_heading = "Delivery", hide_short_help = true, long, value_name = "SIZE", value_parser = clap_bytes_per_minute)]
    pub max_bytes_per_minute: Option<u64>,

    /// Take endpoint, dcr, stream and auth from this config file (flags still win)
    #[arg(
        help_heading = "Destination",
        short = 'c',
        long,
        env = "DCRSHIP_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Which [outputs.NAME] of the config file to use (needed when it has several)
    #[arg(help_heading = "Destination", long, value_name = "NAME")]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Files to send; none or "-" reads stdin
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    #[command(flatten)]
    pub out: OutputArgs,

    /// Input format: auto picks by extension (.ndjson .jsonl .json .csv .txt), else by the first bytes
    #[arg(help_heading = "Input", long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,

    /// Source field holding the event time (RFC 3339, ISO 8601 or epoch s/ms/µs/ns) for TimeGenerated
    #[arg(help_heading = "Input", long, value_name = "NAME")]
    pub time_field: Option<String>,

    #[command(flatten)]
    pub shape: ShapeArgs,

    #[command(flatten)]
    pub parse: ParseArgs,

    /// Append rejected rows to this NDJSON file, each with its reason
    #[arg(help_heading = "Delivery", long, value_name = "FILE")]
    pub dead_letter: Option<PathBuf>,

    /// Resumable upload: requests go through a disk spool in DIR
    ///
    /// A later run with the same DIR
    /// first delivers what this one could not, then reads its own input (give /dev/null as the
    /// input to only finish the earlier upload). One send per DIR at a time (locked). Without
    /// it, send keeps everything in memory
    #[arg(
        help_heading = "Delivery",
        long,
        value_name = "DIR",
        conflicts_with = "dry_run"
    )]
    pub spool: Option<PathBuf>,

    /// Parse, transform and batch, but send nothing; print the summary
    #[arg(help_heading = "Output", long)]
    pub dry_run: bool,

    /// Show a progress bar on stderr (default: when stderr is a terminal)
    #[arg(
        help_heading = "Output",
        hide_short_help = true,
        long,
        overrides_with = "no_progress"
    )]
    pub progress: bool,

    /// Never show a progress bar
    #[arg(
        help_heading = "Output",
        hide_short_help = true,
        long,
        overrides_with = "progress"
    )]
    pub no_progress: bool,

    /// Final summary: text on stderr, or json on stdout
    #[arg(help_heading = "Output", long, value_enum, default_value_t = SummaryFormat::Text)]
    pub summary: SummaryFormat,
}

/// `send`'s row shaping: time format, field edits, declared columns.
#[derive(Debug, Args, Clone, Default)]
pub struct ShapeArgs {
    /// How --time-field is written: rfc3339, epoch, epoch_ms, epoch_us, epoch_ns, or a strftime
    /// format like "%d/%b/%Y:%H:%M:%S %z" [default: RFC 3339 / ISO 8601, or epoch by size]
    #[arg(help_heading = "Shaping", long, value_name = "FORMAT")]
    pub time_format: Option<String>,

    /// IANA time zone (Europe/Berlin), UTC or local, for times written without an offset
    #[arg(
        help_heading = "Shaping",
        hide_short_help = true,
        long,
        value_name = "ZONE"
    )]
    pub timezone: Option<String>,

    /// Set a column to a fixed value on every row (repeatable), e.g. --field Env=prod
    #[arg(help_heading = "Shaping", long = "field", value_name = "NAME=VALUE", value_parser = name_value)]
    pub fields: Vec<(String, String)>,

    /// Rename a source field (repeatable), e.g. --rename msg=Message
    #[arg(help_heading = "Shaping", long = "rename", value_name = "FROM=TO", value_parser = name_value)]
    pub rename: Vec<(String, String)>,

    /// Leave a source field out of rows (repeatable)
    #[arg(help_heading = "Shaping", long = "drop", value_name = "NAME")]
    pub drop: Vec<String>,

    /// Exported DCR (ARM template or resource JSON): the stream's columns are read from its
    /// streamDeclarations, and values are made their declared types
    #[arg(help_heading = "Shaping", long, value_name = "FILE")]
    pub schema: Option<PathBuf>,

    /// Rows of one request span at most this much TimeGenerated (30m for Auxiliary-plan tables)
    #[arg(help_heading = "Shaping", hide_short_help = true, long, value_name = "DUR", value_parser = clap_duration)]
    pub max_time_span: Option<Duration>,
}

/// `NAME=VALUE`.
fn name_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, found {s:?}")),
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub out: OutputArgs,

    /// Tail the files matching this glob (repeatable; flag-only mode)
    #[arg(help_heading = "Input", long = "path", value_name = "GLOB")]
    pub paths: Vec<String>,

    /// Skip files matching this glob (repeatable)
    #[arg(
        help_heading = "Input",
        hide_short_help = true,
        long = "exclude",
        value_name = "GLOB"
    )]
    pub exclude: Vec<String>,

    /// Read stdin too (flag-only mode); alone, the agent ends when stdin does
    #[arg(help_heading = "Input", long)]
    pub stdin: bool,

    #[command(flatten)]
    pub journald: JournaldArgs,

    /// Format of the --path and --stdin inputs: auto picks by extension (.ndjson .jsonl .json
    /// .txt), else by the first bytes; regex needs --pattern; raw: every journal field
    /// (--journald)
    #[arg(help_heading = "Input", long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,

    /// Source field holding the event time (RFC 3339, ISO 8601 or epoch s/ms/µs/ns) for TimeGenerated
    #[arg(help_heading = "Input", long, value_name = "NAME")]
    pub time_field: Option<String>,

    #[command(flatten)]
    pub shape: ShapeArgs,

    /// The --path files are a container runtime's logs: strip its envelope, join partial
    /// lines, add pod columns; --format then reads each message (flag-only mode)
    #[arg(help_heading = "Input", long, value_enum, value_name = "RUNTIME")]
    pub container: Option<crate::input::container::Runtime>,

    /// Where files seen for the first time are read from, and the journal on its first start
    /// (flag-only mode)
    #[arg(help_heading = "Input", long, value_enum, default_value_t = StartAt::End)]
    pub start_at: StartAt,

    #[command(flatten)]
    pub parse: ParseArgs,

    /// Checkpoints, the disk spool and the dead-letter file; one agent per directory (locked)
    /// [default: /var/lib/dcrship]
    #[arg(
        help_heading = "Agent",
        long,
        env = "DCRSHIP_STATE_DIR",
        value_name = "DIR"
    )]
    pub state_dir: Option<PathBuf>,

    /// Address of /metrics and /health; "" turns them off [default: 127.0.0.1:9465]
    #[arg(
        help_heading = "Agent",
        long,
        env = "DCRSHIP_HTTP_LISTEN",
        value_name = "ADDR"
    )]
    pub http_listen: Option<String>,

    /// On SIGTERM, how long to keep delivering what was read [default: 30s]
    #[arg(help_heading = "Agent", long, value_name = "DUR", value_parser = clap_duration)]
    pub shutdown_timeout: Option<Duration>,

    /// Check an output idle this long with an empty request (POST []), so /health tells whether
    /// rows would get through now; "0s": never [default: 1m]
    #[arg(help_heading = "Agent", long, value_name = "DUR", value_parser = clap_duration, hide_short_help = true)]
    pub probe_interval: Option<Duration>,

    /// Send one heartbeat row (TimeGenerated, Computer, RawData) to the stream at start and then
    /// this often [default: none]
    #[arg(help_heading = "Agent", long, value_name = "DUR", value_parser = clap_duration, hide_short_help = true)]
    pub heartbeat_interval: Option<Duration>,
}

/// `run --journald` and its filters (flag-only mode).
#[derive(Debug, Args, Clone, Default)]
pub struct JournaldArgs {
    /// Read the systemd journal too (flag-only mode), through journalctl, resuming from a saved
    /// cursor; rows are the Syslog table's columns (--format raw: every journal field)
    #[arg(help_heading = "Journal", long = "journald")]
    pub enabled: bool,

    /// With --journald: only this unit's entries (repeatable; "sshd" is sshd.service)
    #[arg(
        help_heading = "Journal",
        hide_short_help = true,
        long = "journald-unit",
        value_name = "UNIT",
        requires = "enabled"
    )]
    pub units: Vec<String>,

    /// With --journald: leave out this unit's entries (repeatable; globs allowed)
    #[arg(
        help_heading = "Journal",
        hide_short_help = true,
        long = "journald-exclude-unit",
        value_name = "UNIT",
        requires = "enabled"
    )]
    pub exclude_units: Vec<String>,

    /// With --journald: only entries of this level or more severe
    #[arg(
        help_heading = "Journal",
        hide_short_help = true,
        long = "journald-priority",
        value_enum,
        value_name = "LEVEL",
        requires = "enabled"
    )]
    pub priority: Option<crate::input::journald::Priority>,

    /// With --journald: a journal match (repeatable; values of one field are alternatives,
    /// different fields must all match), e.g. _TRANSPORT=kernel
    #[arg(help_heading = "Journal", hide_short_help = true, long = "journald-match", value_name = "FIELD=VALUE", value_parser = name_value, requires = "enabled")]
    pub matches: Vec<(String, String)>,

    /// With --journald: read the journal files in this directory (e.g. the host's
    /// /var/log/journal mounted in a container)
    #[arg(
        help_heading = "Journal",
        hide_short_help = true,
        long = "journald-directory",
        value_name = "DIR",
        requires = "enabled"
    )]
    pub directory: Option<PathBuf>,
}

/// How text lines become columns and events: `send`, and `run` in flag-only mode.
#[derive(Debug, Args, Clone, Default)]
pub struct ParseArgs {
    /// With --format regex: a regular expression whose named groups (?P<Name>…) are the columns
    #[arg(help_heading = "Parsing", long, value_name = "RE")]
    pub pattern: Option<String>,

    /// A line that does not match --format regex|logfmt|syslog: sent as a RawData row, or dead-lettered [default: raw]
    #[arg(
        help_heading = "Parsing",
        hide_short_help = true,
        long,
        value_enum,
        value_name = "WHAT"
    )]
    pub on_mismatch: Option<OnMismatch>,

    /// A line matching this regular expression starts a new event; the lines after it join it
    #[arg(
        help_heading = "Parsing",
        long,
        value_name = "RE",
        conflicts_with = "multiline_preset"
    )]
    pub multiline_start: Option<String>,

    /// Join stack traces into one event with built-in rules
    #[arg(help_heading = "Parsing", long, value_enum, value_name = "NAME")]
    pub multiline_preset: Option<Preset>,

    /// Emit a pending multiline event after this long without a new line [default: 1s]
    #[arg(help_heading = "Parsing", hide_short_help = true, long, value_name = "DUR", value_parser = clap_duration)]
    pub multiline_timeout: Option<Duration>,

    /// Lines in one multiline event; more start the next event [default: 500]
    #[arg(help_heading = "Parsing", hide_short_help = true, long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub multiline_max_lines: Option<u64>,

    /// Bytes in one multiline event; more start the next event [default: 262144]
    #[arg(help_heading = "Parsing", hide_short_help = true, long, value_name = "N", value_parser = clap::value_parser!(u64).range(1024..=1_048_576))]
    pub multiline_max_bytes: Option<u64>,
}

impl ParseArgs {
    /// The `[multiline]` settings the flags describe, if any.
    pub fn multiline(&self) -> Option<MultilineConfig> {
        if self.multiline_start.is_none() && self.multiline_preset.is_none() {
            return None;
        }
        let mut m = MultilineConfig::new(self.multiline_start.clone(), self.multiline_preset);
        if let Some(t) = self.multiline_timeout {
            m.timeout = t;
        }
        if let Some(n) = self.multiline_max_lines {
            m.max_lines = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = self.multiline_max_bytes {
            m.max_bytes = usize::try_from(n).unwrap_or(usize::MAX);
        }
        Some(m)
    }

    /// Refuses flags the format does not read; `format` is the `--format` value as written.
    pub fn check(&self, format: &str) -> Result<(), String> {
        let parsed = matches!(format, "regex" | "logfmt" | "syslog");
        let bounds = self.multiline_timeout.is_some()
            || self.multiline_max_lines.is_some()
            || self.multiline_max_bytes.is_some();
        if format == "regex" && self.pattern.is_none() {
            Err("--format regex needs --pattern with named groups, like \
                 --pattern '^(?P<Level>\\w+) (?P<Message>.*)$'"
                .into())
        } else if self.pattern.is_some() && format != "regex" {
            Err("--pattern is only read with --format regex".into())
        } else if self.on_mismatch.is_some() && !parsed {
            Err("--on-mismatch is only read with --format regex, logfmt or syslog".into())
        } else if bounds && self.multiline().is_none() {
            Err(
                "--multiline-timeout, --multiline-max-lines and --multiline-max-bytes need \
                 --multiline-start or --multiline-preset"
                    .into(),
            )
        } else if self.multiline_timeout.is_some_and(|t| t.is_zero()) {
            Err("--multiline-timeout must be more than 0".into())
        } else if self.multiline().is_some() && matches!(format, "ndjson" | "json" | "csv") {
            Err(
                "multiline joins text lines: use it with --format text, regex, logfmt or \
                 syslog"
                    .into(),
            )
        } else {
            Ok(())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SummaryFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Configuration file to validate
    #[arg(
        short = 'c',
        long,
        env = "DCRSHIP_CONFIG",
        default_value = "/etc/dcrship/agent.toml",
        value_name = "FILE"
    )]
    pub config: PathBuf,

    /// For each output: get a token (naming the identity and its principal id), POST an empty
    /// array to the stream, and say what the answer means
    #[arg(long)]
    pub live: bool,
}

#[derive(Debug, Args)]
pub struct DcrArgs {
    #[command(subcommand)]
    pub command: DcrCommand,
}

// Parsed once per process: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum DcrCommand {
    /// Read a sample as `send` would and print each column's DCR type, and what Azure refuses
    #[command(after_help = DCR_INFER_AFTER_HELP, display_name = "dcrship")]
    Infer(DcrInferArgs),
    /// Write the ARM template (table, DCR, role), the az commands and the agent.toml blocks
    #[command(after_help = DCR_TEMPLATE_AFTER_HELP, display_name = "dcrship")]
    Template(DcrTemplateArgs),
    /// Make the table, the DCR and the role through Resource Manager, then wait until the
    /// stream accepts rows
    #[command(after_help = DCR_CREATE_AFTER_HELP, display_name = "dcrship")]
    Create(DcrCreateArgs),
}

const DCR_CREATE_AFTER_HELP: &str = "\
The identity (--auth, as for send) needs rights to create them: e.g. Contributor on the DCR's
resource group and Log Analytics Contributor on the workspace, and, to grant the role, Owner or
User Access Administrator. --principal-id defaults to that identity itself; when it is the
identity running this, create then POSTs [] to the new stream until it is accepted (the role
takes minutes to apply). Prints the agent.toml blocks with the real endpoint and DCR id.

Exit codes: 0 made (and accepting, when waited for); 2 usage or a refused request; 3 no token;
4 permission denied, or the stream still refusing after --wait; 6 Resource Manager unreachable.

Example:
  dcrship dcr create --table MyApp --auth azure-cli \\
      --workspace-resource-id /subscriptions/…/workspaces/ws --principal-id OBJECT_ID app.ndjson";

const DCR_INFER_AFTER_HELP: &str = "\
Types: whole numbers int (32-bit) or long, other numbers real, true/false boolean, ISO 8601
times datetime, objects and arrays dynamic, text and mixes string; TimeGenerated is datetime.
In CSV and parsed lines, values are text: \"42\" is read as a number there, not in JSON.
Exit 0 with the report (errors in it stop `dcr template`); 2 when the input cannot be read.

Examples:
  dcrship dcr infer app.ndjson
  dcrship dcr infer --format syslog /var/log/syslog
  dcrship dcr infer --time-field ts --rename msg=Message --json app.ndjson";

const DCR_TEMPLATE_AFTER_HELP: &str = "\
--out-dir DIR writes template.json (ARM: deploy with az deployment group create), dcr-rule.json
(the DCR for az monitor data-collection rule create), deploy-az.sh (the same with az commands)
and agent.toml (the [outputs] and [inputs] blocks for dcrship run). Without it, --print writes
one of them to stdout. Exit 2 when the sample has names Azure refuses (each with its fix).
With --schema FILE and no sample files, the columns come from an exported DCR instead (the
stream --stream names, default Custom-<TABLE>_CL).

Examples:
  dcrship dcr template --table MyApp --out-dir azure app.ndjson
  dcrship dcr template --table Syslog2 --format syslog --plan basic \\
      --workspace-resource-id /subscriptions/…/workspaces/ws --principal-id OBJECT_ID /var/log/syslog
  dcrship dcr template --table MyApp --schema exported-dcr.json --print agent";

/// How `dcr infer` and `dcr template` read the sample: the flags of `send`.
#[derive(Debug, Args)]
pub struct DcrSampleArgs {
    /// Sample files; none or "-" reads stdin
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Input format, as for send: auto picks by extension (.ndjson .jsonl .json .csv .txt),
    /// else by the first bytes
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,

    /// Source field holding the event time, as for send; it becomes TimeGenerated
    #[arg(long, value_name = "NAME")]
    pub time_field: Option<String>,

    #[command(flatten)]
    pub shape: ShapeArgs,

    #[command(flatten)]
    pub parse: ParseArgs,

    /// Rows read from the sample, at most
    #[arg(long = "sample", value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub sample_rows: u64,

    /// The stream: with --schema, the one whose columns are read; for template, the one the DCR
    /// declares [default: Custom-<TABLE>_CL]
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
}

#[derive(Debug, Args)]
pub struct DcrInferArgs {
    #[command(flatten)]
    pub sample: DcrSampleArgs,

    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DcrTemplateArgs {
    #[command(flatten)]
    pub sample: DcrSampleArgs,

    #[command(flatten)]
    pub resources: DcrResourceArgs,

    /// Write every artifact into DIR (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,

    /// Without --out-dir: which artifact to print
    #[arg(long, value_enum, default_value_t = Artifact::Arm, conflicts_with = "out_dir")]
    pub print: Artifact,
}

#[derive(Debug, Args)]
pub struct DcrCreateArgs {
    #[command(flatten)]
    pub sample: DcrSampleArgs,

    #[command(flatten)]
    pub resources: DcrResourceArgs,

    /// Resource group of the DCR [default: the workspace's]
    #[arg(long, value_name = "NAME")]
    pub resource_group: Option<String>,

    /// How to get a token, as for send [default: auto]
    #[arg(long, env = "DCRSHIP_AUTH", value_enum, value_name = "METHOD")]
    pub auth: Option<AuthMethod>,

    /// User-assigned managed identity or app registration (client id)
    #[arg(long, env = "AZURE_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,

    /// Entra tenant id (service principal)
    #[arg(long, env = "AZURE_TENANT_ID", value_name = "ID")]
    pub tenant_id: Option<String>,

    /// Which cloud: its Resource Manager, token audiences and authority [default: public]
    #[arg(long, env = "DCRSHIP_CLOUD", value_enum)]
    pub cloud: Option<Cloud>,

    /// Resource Manager's URL [default: the cloud's, https://management.azure.com]
    #[arg(long, value_name = "URL")]
    pub arm_endpoint: Option<String>,

    /// How long to keep POSTing [] to the new stream until it accepts (the role takes minutes
    /// to apply); 0s: do not wait
    #[arg(long, value_name = "DUR", value_parser = clap_duration, default_value = "30m")]
    pub wait: Duration,

    /// Also write the artifacts of `dcr template` into DIR, with the real endpoint and DCR id
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// What the table, the DCR and the role are made of: `dcr template` and `dcr create`.
#[derive(Debug, Args)]
pub struct DcrResourceArgs {
    /// The custom table, e.g. MyApp (the _CL suffix is added)
    #[arg(long, value_name = "NAME")]
    pub table: String,

    /// Table plan
    #[arg(long, value_enum, default_value_t = Plan::Analytics)]
    pub plan: Plan,

    /// Name of the data collection rule [default: dcr-<table>]
    #[arg(long, value_name = "NAME")]
    pub dcr_name: Option<String>,

    /// Resource id of the Log Analytics workspace (else a parameter to fill in at deployment)
    #[arg(long, value_name = "ID")]
    pub workspace_resource_id: Option<String>,

    /// Region of the DCR, the workspace's, e.g. westeurope [default: the resource group's]
    #[arg(long, value_name = "REGION")]
    pub location: Option<String>,

    /// Resource id of a data collection endpoint to send through (Private Link); without it
    /// the DCR is kind Direct with its own ingestion endpoint
    #[arg(long, value_name = "ID")]
    pub dce: Option<String>,

    /// Object (principal) id of the identity that sends: it gets Monitoring Metrics Publisher
    /// on the DCR
    #[arg(long, value_name = "ID")]
    pub principal_id: Option<String>,

    /// What kind of principal --principal-id is
    #[arg(long, value_enum, default_value_t = PrincipalType::ServicePrincipal)]
    pub principal_type: PrincipalType,

    /// The DCR's transformKql
    #[arg(long = "transform", value_name = "KQL", default_value = "source")]
    pub transform_kql: String,

    /// Name of the [outputs.NAME] and [inputs.NAME] blocks [default: the table's, lower case]
    #[arg(long, value_name = "NAME")]
    pub output_name: Option<String>,
}

/// `--max-bytes-per-minute`: a size like the config file's, in the same range.
fn clap_bytes_per_minute(s: &str) -> Result<u64, String> {
    let n = crate::config::parse_byte_size(s).map_err(|e| e.to_string())?;
    if crate::config::MAX_BYTES_PER_MINUTE_RANGE.contains(&n) {
        Ok(n)
    } else {
        Err(format!("expected from 1MiB to 1TiB, found {n} bytes"))
    }
}

/// A duration above zero (`--request-timeout`).
fn clap_nonzero_duration(s: &str) -> Result<Duration, String> {
    match clap_duration(s)? {
        d if d.is_zero() => Err("expected a duration above 0, like \"90s\"".into()),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn send_reads_every_contract_flag() {
        let cli = Cli::try_parse_from([
            "dcrship",
            "send",
            "--endpoint",
            "https://x",
            "--dcr",
            "dcr-1",
            "--stream",
            "Custom-A",
            "--format",
            "csv",
            "--time-field",
            "ts",
            "--auth",
            "managed-identity",
            "--client-id",
            "c",
            "--tenant-id",
            "t",
            "--cloud",
            "usgov",
            "--concurrency",
            "8",
            "--max-request-bytes",
            "500000",
            "--permission-grace",
            "5m",
            "--retry-timeout",
            "1h30m",
            "--dead-letter",
            "dl.ndjson",
            "--dry-run",
            "--no-progress",
            "--summary",
            "json",
            "-c",
            "agent.toml",
            "--output",
            "app",
            "a.csv",
            "-",
        ])
        .expect("parses");
        let Command::Send(s) = cli.command else {
            panic!("send")
        };
        assert_eq!(s.files, vec![PathBuf::from("a.csv"), PathBuf::from("-")]);
        assert_eq!(s.out.concurrency, Some(8));
        assert_eq!(s.out.retry_timeout, Some(Duration::from_secs(5400)));
        assert_eq!(s.out.cloud, Some(Cloud::UsGov));
        assert_eq!(s.out.auth, Some(AuthMethod::ManagedIdentity));
        assert!(s.dry_run && s.no_progress);
        assert_eq!(s.summary, SummaryFormat::Json);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            vec!["dcrship", "send", "--concurrency", "0"],
            vec!["dcrship", "send", "--retry-timeout", "10"],
            vec!["dcrship", "send", "--format", "xml"],
            vec!["dcrship", "send", "--max-request-bytes", "2000000"],
            vec!["dcrship", "send", "--bogus"],
        ] {
            assert!(Cli::try_parse_from(&args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn parse_flags_must_fit_the_format() {
        let send = |extra: &[&str]| {
            let mut args = vec!["dcrship", "send"];
            args.extend_from_slice(extra);
            match Cli::try_parse_from(&args).expect("parses").command {
                Command::Send(s) => s.parse.check(s.format.name()),
                _ => panic!("send"),
            }
        };
        let ok: &[&[&str]] = &[
            &["--format", "regex", "--pattern", "(?P<A>x)"],
            &["--format", "logfmt", "--on-mismatch", "dead-letter"],
            &["--format", "syslog", "--multiline-start", "^<"],
            &["--multiline-preset", "java", "--multiline-max-lines", "10"],
            &["--multiline-preset", "nodejs"],
            &[
                "--format",
                "regex",
                "--pattern",
                "(?P<A>x)",
                "--multiline-preset",
                "dotnet",
            ],
            &[
                "--format",
                "text",
                "--multiline-preset",
                "python",
                "--multiline-timeout",
                "2s",
            ],
        ];
        for args in ok {
            assert_eq!(send(args), Ok(()), "{args:?}");
        }
        let bad: &[(&[&str], &str)] = &[
            (&["--format", "regex"], "needs --pattern"),
            (&["--pattern", "(?P<A>x)"], "only read with --format regex"),
            (&["--on-mismatch", "raw"], "--on-mismatch is only read"),
            (&["--multiline-max-lines", "3"], "need --multiline-start"),
            (
                &["--format", "csv", "--multiline-preset", "java"],
                "joins text lines",
            ),
            (
                &["--multiline-preset", "java", "--multiline-timeout", "0s"],
                "more than 0",
            ),
        ];
        for (args, says) in bad {
            let err = send(args).expect_err("refused");
            assert!(err.contains(says), "{args:?}: {err}");
        }
        // start and preset exclude each other at the clap level
        assert!(Cli::try_parse_from([
            "dcrship",
            "send",
            "--multiline-start",
            "x",
            "--multiline-preset",
            "java"
        ])
        .is_err());
        let Command::Run(r) = Cli::try_parse_from([
            "dcrship",
            "run",
            "--format",
            "syslog",
            "--multiline-preset",
            "java",
        ])
        .expect("run parses")
        .command
        else {
            panic!("run")
        };
        let m = r.parse.multiline().expect("multiline");
        assert_eq!((m.max_lines, m.max_bytes), (500, 256 * 1024));
    }
}
