//! The configuration file (`/etc/dcrship/agent.toml`): TOML in, a validated [`Config`] out.
//!
//! Every mistake is reported on one line that names the file, the line, the key and what to write
//! instead, because the reader is a sysadmin looking at `journalctl`, not at this code:
//!
//! ```text
//! /etc/dcrship/agent.toml line 12, key outputs.app.concurrency: expected an integer from 1 to 64, found "x"
//! ```
//!
//! How that works: the text is parsed once into toml's span-carrying tree ([`DeTable`]), and each
//! table is deserialized on its own (`read.rs`), so one mistake does not hide the next. Every
//! value that needs more than a type check (durations, sizes, ranges, `${VAR}` expansion) has its
//! own deserializer, so its errors carry the value's span as well. A span becomes a line number,
//! and the tree tells which key the span belongs to (`SourceMap`). Flags are laid over the file
//! (`overlay.rs`); then every value is checked and compiled into the stages' settings
//! (`compile.rs`): a [`Config`] holds what `run`, `send` and `check` use, and every error found
//! is reported at once, in line order, each with its line and key or the flag that set it.
//!
//! `${VAR}` and `${VAR:-default}` are expanded in string values; `$$` is a literal `$` (so `$${`
//! is a literal `${`). The environment is read through the lookup given to [`parse_with`], so
//! tests never touch the process environment.

mod build;
mod compile;
mod endpoint;
mod env;
mod file;
mod overlay;
mod read;
mod spans;
#[cfg(test)]
mod tests;
mod value;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeTable;

pub use build::{check_journald, journal_options, shaping_for, text_rules};
use env::*;
pub use file::*;
pub use overlay::{FlagInput, OutputFlags, Overlay};
use spans::*;
use value::*;
pub use value::{parse_byte_size, parse_listen};

/// Where the configuration is read from when neither `--config` nor `DCRSHIP_CONFIG` says.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/dcrship/agent.toml";
/// `[agent] state_dir`: checkpoints and spool.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/dcrship";
/// `[agent] http_listen`: loopback only, so metrics are not exposed by accident.
pub const DEFAULT_HTTP_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9465));
/// `[agent] shutdown_timeout`: well inside systemd's default 90 s stop timeout.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Allowed `[agent] max_open_files`.
pub const MAX_OPEN_FILES_RANGE: RangeInclusive<usize> = 16..=1 << 20;
/// `[auth] arc_key_dir`: the only directory an Arc challenge file is read from.
pub const DEFAULT_ARC_KEY_DIR: &str = "/var/opt/azcmagent/tokens";
/// `[outputs.*] concurrency`: requests in flight per output.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Allowed `concurrency`: the cap keeps a typo from opening hundreds of connections to one DCR.
pub const CONCURRENCY_RANGE: RangeInclusive<usize> = 1..=64;
pub use crate::azure::{DEFAULT_MAX_REQUEST_BYTES, MAX_REQUEST_BYTES_RANGE};
/// `[outputs.*] batch_timeout`: how long a partly filled batch waits for more rows.
pub const DEFAULT_BATCH_TIMEOUT: Duration = Duration::from_secs(1);
/// `[outputs.*] permission_grace`: RBAC grants and new DCRs take up to about an hour to apply.
pub const DEFAULT_PERMISSION_GRACE: Duration = Duration::from_secs(60 * 60);
/// `[outputs.*] retry_timeout`: when `send` gives up on transient failures.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// `[outputs.*] request_timeout`: how long one request may take; the SDKs allow 100 s (.NET)
/// down to a few; a minute covers a 1 MB upload on a slow link.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// `[outputs.*] probe_interval`: an idle output is checked with `POST []` once a minute.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(60);
/// The shortest `probe_interval` (but `"0s"`, off): a probe is a request the DCR's limits count.
pub const MIN_PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// The shortest `heartbeat_interval`: a row a minute per agent is plenty to see it stop.
pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
pub use crate::batch::DEFAULT_COMPRESSION_LEVEL;
/// Allowed gzip levels.
pub const COMPRESSION_LEVEL_RANGE: RangeInclusive<u32> = 0..=9;
/// `[outputs.*] max_requests_per_minute`: the service's documented limit per DCR.
pub const DEFAULT_MAX_REQUESTS_PER_MINUTE: u32 = crate::azure::REQUESTS_PER_MINUTE;
/// Allowed `max_requests_per_minute`.
pub const MAX_REQUESTS_PER_MINUTE_RANGE: RangeInclusive<u32> = 1..=1_000_000;
/// `[outputs.*] max_bytes_per_minute`: the service's documented limit per DCR, 2 GB.
pub const DEFAULT_MAX_BYTES_PER_MINUTE: u64 = crate::azure::BYTES_PER_MINUTE;
/// Allowed `max_bytes_per_minute`: at least one full request a minute, at most 1 TiB.
pub const MAX_BYTES_PER_MINUTE_RANGE: RangeInclusive<u64> = (1 << 20)..=(1 << 40);
pub use crate::spool::{
    DEFAULT_MAX_BYTES as DEFAULT_SPOOL_MAX_BYTES, MIN_MAX_BYTES as MIN_SPOOL_MAX_BYTES,
};

/// One thing wrong with the configuration. Displays as one line naming the file, line and key
/// (or the flag).
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
    /// A value a flag (or its environment variable) set.
    #[error("{flag}: {message}")]
    Flag { flag: String, message: String },
    /// A mistake in how the command was called (flags missing together).
    #[error("{0}")]
    Usage(String),
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

/// Every mistake found, in line order (flags first), like a compiler's list. Displays one per
/// line.
#[derive(Debug)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    pub(crate) fn new(mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by_key(|e| e.line().unwrap_or(0));
        ConfigErrors(errors)
    }

    fn one(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }

    /// The first error (the one with the lowest line).
    pub fn first(&self) -> Option<&ConfigError> {
        self.0.first()
    }

    /// [`ConfigError::line`] of the first error.
    #[cfg(test)]
    pub fn line(&self) -> Option<usize> {
        self.first().and_then(ConfigError::line)
    }

    /// [`ConfigError::key`] of the first error.
    #[cfg(test)]
    pub fn key(&self) -> Option<&str> {
        self.first().and_then(ConfigError::key)
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors::one(e)
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

/// The configuration, checked and compiled: what `run`, `send` and `check` use.
#[derive(Debug, Clone)]
pub struct Config {
    /// What the file (with the flags over it) says, for reports (`check`) and reload diffs.
    pub settings: FileConfig,
    /// The identity that gets tokens.
    pub auth: crate::auth::AuthConfig,
    /// The pipeline's outputs and inputs, ready to start.
    pub plan: crate::pipeline::plan::Plan,
}

impl Config {
    /// `[agent]`.
    pub fn agent(&self) -> &AgentConfig {
        &self.settings.agent
    }
}

/// Reads, overlays and compiles the configuration file, expanding `${VAR}` from the process
/// environment.
pub fn load(path: &Path, overlay: &Overlay) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let env = |name: &str| std::env::var(name).ok();
    let origin = path.display().to_string();
    parse_with(&text, &origin, path.parent(), &env, overlay)
}

/// The configuration of flags alone (no file).
pub fn from_flags(overlay: &Overlay) -> Result<Config, ConfigErrors> {
    parse_with("", "flags", None, &|_| None, overlay)
}

/// [`parse_with`] without flags, relative paths taken from `origin`'s directory (tests).
#[cfg(test)]
pub fn parse_str(
    text: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let base = Path::new(origin).parent();
    parse_with(text, origin, base, env, &Overlay::default())
}

/// Parses and compiles configuration text with flags over it. `origin` names the text in
/// messages (the file name); relative paths in the file are taken from `base_dir`; `env`
/// answers `${VAR}` lookups, so callers and tests choose the environment.
pub fn parse_with(
    text: &str,
    origin: &str,
    base_dir: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    overlay: &Overlay,
) -> Result<Config, ConfigErrors> {
    // Editors on Windows like to start files with a byte-order mark; TOML does not allow one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root = DeTable::parse(text).map_err(|e| syntax_error(origin, text, &e))?;
    let map = SourceMap {
        text,
        root: root.get_ref().clone(),
    };
    let read::Read {
        mut file,
        mut errors,
        damaged,
    } = {
        let _scope = EnvScope::enter(snapshot_env(text, env));
        read::read(root.get_ref(), &map, origin)
    };
    let flags = match overlay.apply(&mut file) {
        Ok(flags) => flags,
        Err(e) => {
            errors.extend(e);
            return Err(ConfigErrors::new(errors));
        }
    };
    let checker = compile::Checker {
        origin,
        map: &map,
        flags: &flags,
        base_dir,
        damaged: &damaged,
        errors: std::cell::RefCell::new(errors),
    };
    checker.compile(file)
}

impl FileConfig {
    /// The output called `name`, or the only output when no name is given (`send --config`
    /// without `--output`). The error lists the outputs there are.
    pub fn output(&self, name: Option<&str>) -> Result<(&str, &OutputConfig), ConfigError> {
        if let Some(name) = name {
            return self
                .outputs
                .get_key_value(name)
                .map(|(k, v)| (k.as_str(), v))
                .ok_or_else(|| {
                    ConfigError::Usage(format!(
                        "no output named {name:?} in the configuration{}",
                        name_choices(name, self.outputs.keys())
                    ))
                });
        }
        let mut all = self.outputs.iter();
        match (all.next(), all.next()) {
            (Some((k, v)), None) => Ok((k.as_str(), v)),
            (None, _) => Err(ConfigError::Usage(
                "the configuration has no [outputs.NAME] table".to_string(),
            )),
            _ => Err(ConfigError::Usage(format!(
                "the configuration has several outputs ({}); choose one with --output NAME",
                join_names(self.outputs.keys())
            ))),
        }
    }
}
