//! Flags (and the environment variables clap reads for them) laid over the configuration file.
//! A flag wins over the file's value, in `run` as in `send`; a mistake in a value a flag set is
//! reported with the flag's name, not with a line of the file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{AuthMethod, Cloud};

use super::{join_names, name_choices, ConfigError, FileConfig, InputConfig, OutputConfig};

/// What the command line says, over the file. Every `None` leaves the file's value.
#[derive(Debug, Default, Clone)]
pub struct Overlay {
    /// `[agent]`.
    pub state_dir: Option<PathBuf>,
    pub http_listen: Option<String>,
    pub shutdown_timeout: Option<Duration>,
    /// `[auth]`.
    pub auth: Option<AuthMethod>,
    pub client_id: Option<String>,
    pub tenant_id: Option<String>,
    pub cloud: Option<Cloud>,
    /// `--output NAME`: the output of the file the output flags set, and the flag inputs feed.
    /// `None`: the file's only output, or a new one named [`Overlay::new_output`].
    pub output: Option<String>,
    /// The name of the output made from flags when the file has none (or there is no file).
    pub new_output: &'static str,
    pub out: OutputFlags,
    /// Inputs the flags describe (`--path`, `--stdin`, `send`'s files).
    pub inputs: Vec<FlagInput>,
    /// `send`: the file's inputs, and its outputs but the chosen one, are not read.
    pub flag_inputs_only: bool,
    /// `send --dry-run`: endpoint, DCR and stream may be left out.
    pub target_optional: bool,
    /// Said after "missing --endpoint …: say where to send".
    pub missing_target_hint: &'static str,
}

/// The output flags.
#[derive(Debug, Default, Clone)]
pub struct OutputFlags {
    pub endpoint: Option<String>,
    pub dcr: Option<String>,
    pub stream: Option<String>,
    pub concurrency: Option<usize>,
    pub max_request_bytes: Option<usize>,
    pub batch_timeout: Option<Duration>,
    pub permission_grace: Option<Duration>,
    pub retry_timeout: Option<Duration>,
    pub request_timeout: Option<Duration>,
    pub compression_level: Option<u32>,
    pub max_requests_per_minute: Option<u32>,
    pub max_bytes_per_minute: Option<u64>,
    /// `--schema FILE`: stands in for `schema_file`.
    pub schema: Option<PathBuf>,
    pub max_time_span: Option<Duration>,
    /// `run`'s `--probe-interval` and `--heartbeat-interval`.
    pub probe_interval: Option<Duration>,
    pub heartbeat_interval: Option<Duration>,
}

/// An input made from flags: its settings, and which flag set each key (for messages).
#[derive(Debug, Clone)]
pub struct FlagInput {
    pub name: String,
    pub input: InputConfig,
    /// `(key under [inputs.NAME], flag)`, e.g. `("pattern", "--pattern")`.
    pub flags: Vec<(&'static str, &'static str)>,
}

/// Which flag set which key path (`outputs.default.endpoint` → `--endpoint`).
#[derive(Debug, Default, Clone)]
pub struct Attribution {
    flags: BTreeMap<String, &'static str>,
    /// Outputs made from flags alone (no file table).
    pub(super) flag_outputs: Vec<String>,
    /// See [`Overlay::target_optional`] and [`Overlay::missing_target_hint`].
    pub(super) target_optional: bool,
    pub(super) missing_target_hint: &'static str,
}

impl Attribution {
    /// The flag behind `path` or behind a key above it (`inputs.files.multiline.start` is
    /// `--multiline-start`; `inputs.files.multiline` is whatever set the table).
    pub fn flag_for(&self, path: &[&str]) -> Option<&'static str> {
        (1..=path.len())
            .rev()
            .find_map(|n| self.flags.get(&path[..n].join(".")).copied())
    }

    fn set(&mut self, path: &[&str], flag: &'static str) {
        self.flags.insert(path.join("."), flag);
    }
}

impl Overlay {
    /// Lays the flags over `file`. Errors are about flags (a name that matches no output, a
    /// value that does not parse).
    pub(super) fn apply(&self, file: &mut FileConfig) -> Result<Attribution, Vec<ConfigError>> {
        let mut at = Attribution {
            target_optional: self.target_optional,
            missing_target_hint: self.missing_target_hint,
            ..Attribution::default()
        };
        let mut errors = Vec::new();
        let flag = |flag: &str, message: String| ConfigError::Flag {
            flag: flag.to_string(),
            message,
        };
        if let Some(dir) = &self.state_dir {
            file.agent.state_dir = dir.clone();
            at.set(&["agent", "state_dir"], "--state-dir");
        }
        if let Some(listen) = &self.http_listen {
            match super::parse_listen(listen) {
                Ok(addr) => file.agent.http_listen = addr,
                Err(e) => errors.push(flag("--http-listen", e)),
            }
            at.set(&["agent", "http_listen"], "--http-listen");
        }
        if let Some(t) = self.shutdown_timeout {
            file.agent.shutdown_timeout = t;
            at.set(&["agent", "shutdown_timeout"], "--shutdown-timeout");
        }
        if let Some(m) = self.auth {
            file.auth.method = m;
            at.set(&["auth", "method"], "--auth");
        }
        if let Some(id) = self.client_id.clone().filter(|s| !s.is_empty()) {
            file.auth.client_id = Some(id);
            at.set(&["auth", "client_id"], "--client-id");
        }
        if let Some(id) = self.tenant_id.clone().filter(|s| !s.is_empty()) {
            file.auth.tenant_id = Some(id);
            at.set(&["auth", "tenant_id"], "--tenant-id");
        }
        if let Some(c) = self.cloud {
            file.auth.cloud = Some(c);
            at.set(&["auth", "cloud"], "--cloud");
        }
        let name = match self.choose_output(file) {
            Ok(name) => name,
            Err(e) => {
                errors.push(e);
                return Err(errors);
            }
        };
        if self.flag_inputs_only {
            file.inputs.clear();
            if let Some(name) = &name {
                file.outputs.retain(|k, _| k == name);
            }
        }
        if let Some(name) = &name {
            if !file.outputs.contains_key(name) {
                file.outputs
                    .insert(name.clone(), OutputConfig::new("", "", ""));
                at.flag_outputs.push(name.clone());
            }
            if let Some(out) = file.outputs.get_mut(name) {
                self.set_output(name, out, &mut at);
            }
        }
        for f in &self.inputs {
            let mut input = f.input.clone();
            if let Some(name) = &name {
                input.output = name.clone();
            }
            for (key, flag) in &f.flags {
                at.set(&["inputs", &f.name, key], flag);
            }
            at.set(
                &["inputs", &f.name],
                f.flags.first().map_or("flags", |(_, f)| f),
            );
            file.inputs.insert(f.name.clone(), input);
        }
        if errors.is_empty() {
            Ok(at)
        } else {
            Err(errors)
        }
    }

    /// The output the output flags set and the flag inputs feed; `None` when there is nothing
    /// for flags to set (no output flag, no flag input) and the file chooses for itself.
    fn choose_output(&self, file: &FileConfig) -> Result<Option<String>, ConfigError> {
        let wanted = self.flag_inputs_only || !self.inputs.is_empty() || self.out.any();
        if let Some(name) = &self.output {
            if file.outputs.contains_key(name) {
                return Ok(Some(name.clone()));
            }
            return Err(ConfigError::Flag {
                flag: "--output".into(),
                message: if file.outputs.is_empty() {
                    format!(
                        "no output named {name:?}: --output names an [outputs.NAME] of the \
                         config file given with -c/--config"
                    )
                } else {
                    format!(
                        "no output named {name:?} in the configuration{}",
                        name_choices(name, file.outputs.keys())
                    )
                },
            });
        }
        if !wanted {
            return Ok(None);
        }
        let mut names = file.outputs.keys();
        match (names.next(), names.next()) {
            (None, _) => Ok(Some(self.new_output.to_string())),
            (Some(only), None) => Ok(Some(only.clone())),
            _ => Err(ConfigError::Flag {
                flag: "--output".into(),
                message: format!(
                    "the configuration has several outputs ({}); choose one with --output NAME",
                    join_names(file.outputs.keys())
                ),
            }),
        }
    }

    fn set_output(&self, name: &str, out: &mut OutputConfig, at: &mut Attribution) {
        let o = &self.out;
        let mut set = |key: &'static str, flag: &'static str| at.set(&["outputs", name, key], flag);
        macro_rules! over {
            ($field:ident, $key:literal, $flag:literal) => {
                if let Some(v) = o.$field.clone() {
                    out.$field = v;
                    set($key, $flag);
                }
            };
        }
        if let Some(v) = o.endpoint.clone().filter(|s| !s.trim().is_empty()) {
            out.endpoint = v;
            set("endpoint", "--endpoint");
        }
        if let Some(v) = o.dcr.clone().filter(|s| !s.trim().is_empty()) {
            out.dcr = v;
            set("dcr", "--dcr");
        }
        if let Some(v) = o.stream.clone().filter(|s| !s.trim().is_empty()) {
            out.stream = v;
            set("stream", "--stream");
        }
        over!(concurrency, "concurrency", "--concurrency");
        over!(
            max_request_bytes,
            "max_request_bytes",
            "--max-request-bytes"
        );
        over!(batch_timeout, "batch_timeout", "--batch-timeout");
        over!(permission_grace, "permission_grace", "--permission-grace");
        over!(retry_timeout, "retry_timeout", "--retry-timeout");
        over!(request_timeout, "request_timeout", "--request-timeout");
        over!(
            compression_level,
            "compression_level",
            "--compression-level"
        );
        over!(
            max_requests_per_minute,
            "max_requests_per_minute",
            "--max-requests-per-minute"
        );
        over!(
            max_bytes_per_minute,
            "max_bytes_per_minute",
            "--max-bytes-per-minute"
        );
        if let Some(schema) = &o.schema {
            // `--schema` stands for the output's columns: the file's `[columns]` give way.
            out.schema_file = Some(schema.clone());
            out.columns.clear();
            set("schema_file", "--schema");
        }
        if let Some(span) = o.max_time_span {
            out.max_time_span = Some(span);
            set("max_time_span", "--max-time-span");
        }
        over!(probe_interval, "probe_interval", "--probe-interval");
        if let Some(every) = o.heartbeat_interval {
            out.heartbeat_interval = Some(every);
            set("heartbeat_interval", "--heartbeat-interval");
        }
    }
}

impl OutputFlags {
    /// True when any output flag is given.
    fn any(&self) -> bool {
        self.endpoint.is_some()
            || self.dcr.is_some()
            || self.stream.is_some()
            || self.concurrency.is_some()
            || self.max_request_bytes.is_some()
            || self.batch_timeout.is_some()
            || self.permission_grace.is_some()
            || self.retry_timeout.is_some()
            || self.request_timeout.is_some()
            || self.compression_level.is_some()
            || self.max_requests_per_minute.is_some()
            || self.max_bytes_per_minute.is_some()
            || self.schema.is_some()
            || self.max_time_span.is_some()
            || self.probe_interval.is_some()
            || self.heartbeat_interval.is_some()
    }
}
