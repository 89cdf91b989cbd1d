//! dcrship — ships log records to the Azure Monitor Logs Ingestion API.
//!
//! Records come from files or stdin, become rows of a Data Collection Rule stream, are packed
//! into gzip JSON requests within the API's limits and POSTed with an Entra bearer token.
//!
//! Where things live:
//!
//! | module | holds |
//! |---|---|
//! | [`cli`] | argument structs for the commands |
//! | [`cmd`] | one file per command (`send`, `run`, `check`, `dcr`): wiring only; the flag handling they share (`settings`, `shaping`) |
//! | [`dcr`] | `dcrship dcr`: column types inferred from a sample, names Azure refuses, the ARM template (table, DCR, role), `az` commands and agent.toml blocks for them, or the same made through Resource Manager |
//! | [`config`] | the TOML configuration, validated at load, errors with line and key |
//! | [`input`] | reading: bounded line splitting, JSON and CSV record framing, format detection, line parsers (regex, logfmt, syslog) and multiline joining; container runtimes' files (CRI, Docker json-file) with pod columns; file tailing, fingerprints and checkpoints for the agent; the systemd journal through journalctl, from a saved cursor |
//! | [`transform`] | records → DCR rows (JSON objects): `TimeGenerated` and time formats, `RawData`, typed columns and coercion, field edits, schema files, field limits; a fast JSON object scanner |
//! | [`batch`] | rows → sealed gzip request bodies within the byte cap (pure, property-tested) |
//! | [`ingest`] | the POST, the pure answer classifier, the sender with its retry policy, per-DCR rate limits, the failure-episode log rule, and the diagnosis of what Azure says (403 fields, cloud vs endpoint) |
//! | [`spool`] | the disk spool: a durable, bounded FIFO of sealed request bodies per output (segments, CRC, cursor) |
//! | [`pipeline`] | the agent's data path: input tasks, per-output batcher and workers, ack tracking → checkpoints, shutdown and reload |
//! | [`metrics`], [`health`] | Prometheus counters, per-output health, and the `/metrics` + `/health` server |
//! | [`systemd`] | sd_notify: READY, STATUS, WATCHDOG, RELOADING, STOPPING |
//! | [`auth`] | token sources behind one trait, and the token cache |
//! | [`deadletter`] | the NDJSON file of rejected rows, each with its reason |
//! | [`dirlock`] | one process per state directory (and per `send --spool` directory) |
//! | [`fdlimit`] | the descriptor limit: raised at start, and the share tailed files may hold |
//! | [`stats`] | counters and the end-of-run summary |
//! | [`memory`] | keeping glibc's heap flat over long runs (two arenas, periodic trim) |
//! | [`http`], [`secret`], [`duration`], [`exit`], [`telemetry`] | small shared pieces |

// Output goes through `console`, which does not panic on a closed stdout or stderr.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod auth;
pub mod azure;
pub mod batch;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod console;
pub mod dcr;
pub mod deadletter;
pub mod dirlock;
pub mod duration;
pub mod exit;
pub mod fdlimit;
pub mod health;
pub mod http;
pub mod ingest;
pub mod input;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod private_fs;
pub mod rows;
pub mod secret;
pub mod spool;
pub mod stats;
pub mod systemd;
pub mod telemetry;
pub mod transform;
pub mod trouble;
