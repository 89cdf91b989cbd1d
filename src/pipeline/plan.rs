//! What a pipeline runs: its outputs and inputs with every setting ready to use — URLs parsed,
//! patterns, time formats and globs compiled, declared columns read. `config` builds a [`Plan`]
//! from a file and/or flags and reports every mistake with its line, key or flag; the pipeline
//! takes it as it is and never sees the file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::ingest::limits::DcrLimits;
use crate::input::file::TailerConfig;
use crate::input::parse::TextRules;
use crate::input::Format;
use crate::transform::Shaping;

/// Outputs and the inputs that feed them.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub outputs: BTreeMap<String, OutputPlan>,
    pub inputs: BTreeMap<String, InputPlan>,
    /// `[spool]`: size, fsync interval and what happens when it is full.
    pub spool: crate::spool::Options,
}

/// One DCR stream to deliver to.
#[derive(Debug, Clone)]
pub struct OutputPlan {
    /// The logs ingestion URL; `None` only in a dry run given none.
    pub endpoint: Option<reqwest::Url>,
    pub dcr: String,
    pub stream: String,
    /// Requests in flight (and gzip workers).
    pub concurrency: usize,
    /// Cap on one body, raw and gzip.
    pub max_request_bytes: usize,
    /// How long a partly filled request waits for more rows.
    pub batch_timeout: Duration,
    pub compression_level: u32,
    /// The `TimeGenerated` span one request may cover.
    pub max_time_span: Option<Duration>,
    /// How long 403/404 keep being retried.
    pub permission_grace: Duration,
    /// When a one-shot upload gives up on transient failures (the agent retries forever).
    pub retry_timeout: Duration,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// Requests and bytes a minute to the DCR.
    pub limits: DcrLimits,
    /// `probe_interval`: the agent checks an output idle this long with `POST []`; `None`: off.
    pub probe_interval: Option<Duration>,
    /// `heartbeat_interval`: the agent sends one heartbeat row this often; `None`: off.
    pub heartbeat_interval: Option<Duration>,
}

/// Where an input's bytes come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Files matching globs, tailed, with checkpoints (`run`).
    Files(TailerConfig),
    /// Standard input, to its end.
    Stdin,
    /// Files read once, start to end, in order; `-` is stdin (`send`).
    Once(Vec<PathBuf>),
    /// The systemd journal, through journalctl, from a saved cursor (`run`).
    Journal(JournalPlan),
}

/// A journald input: what journalctl is asked for, and whether the unit column is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalPlan {
    pub options: crate::input::journald::JournalOptions,
    /// `SystemdUnit` goes out unless the stream declares columns without it.
    pub unit_column: bool,
}

/// One source of records and how its records become rows.
#[derive(Debug, Clone)]
pub struct InputPlan {
    pub source: Source,
    /// How records are framed (`Auto` decides per file, by extension and then content).
    pub format: Format,
    /// Parser and multiline rules; `None` for formats that skip them.
    pub rules: Option<Arc<TextRules>>,
    /// Time field, field edits and the output's declared columns.
    pub shaping: Shaping,
    /// The output this input feeds: a key of [`Plan::outputs`].
    pub output: String,
    /// Tailed files that are a container runtime's logs: its envelope, and where JSON goes.
    pub container: Option<ContainerPlan>,
}

/// `[inputs.NAME.container]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerPlan {
    pub runtime: crate::input::container::Runtime,
    pub json_fields: crate::input::container::JsonFields,
}

impl Plan {
    /// True when an input reads stdin.
    pub fn reads_stdin(&self) -> bool {
        self.inputs
            .values()
            .any(|i| matches!(i.source, Source::Stdin))
    }

    /// True when every input reads stdin (the agent ends when stdin does).
    pub fn stdin_only(&self) -> bool {
        !self.inputs.is_empty()
            && self
                .inputs
                .values()
                .all(|i| matches!(i.source, Source::Stdin))
    }
}
