//! dcrship — ships log records to the Azure Monitor Logs Ingestion API.
//!
//! Records come from files or stdin, become rows of a Data Collection Rule stream, are packed
//! into gzip JSON requests within the API's limits and POSTed with an Entra bearer token.
//!
//! One data path serves every command: `send` and `run` build a [`config::Config`] by one route
//! — the file (if any) read table by table, the flags laid over it, every value checked and
//! compiled, every error reported at once — and start the same [`pipeline`] with it, in one of
//! its two modes (the agent, or a one-shot upload).
//!
//! Layers, each using only those below it:
//!
//! ```text
//!  main ─▶ cli, cmd ─▶ config ─▶ pipeline ─▶ ingest, spool, input, transform, batch, auth
//!                                          ─▶ leaves: rows, azure, metrics, trouble, private_fs, …
//! ```
//!
//! Where things live:
//!
//! | module | holds |
//! |---|---|
//! | [`cli`] | argument structs for the commands, grouped for `--help` |
//! | [`cmd`] | one file per command (`send`, `run`, `check`, `dcr`): wiring only; `flags` turns the flags into an overlay on the configuration, `preflight` is what `check` looks at on the host, `progress` is `send`'s progress bar |
//! | [`config`] | the configuration route: `read` (table by table), `file` (the tables as written), `value` (durations, sizes, ranges), `env` (`${VAR}`), `spans` (lines, keys, did-you-mean), `overlay` (flags over the file), `endpoint` (what an endpoint may be), `compile` and `build` (every check, and the stages' settings) |
//! | [`pipeline`] | the one data path: `plan` (what it runs), input tasks (`inputs`: tail, stdin, files once, journal), records → rows (`sink`), per-output batcher, sealers, queue (spool, memory or dry run) and deliverers (`output`), ack tracking → checkpoints (`acks`, `sources`, `windows`), when an idle output is probed (`probe`), heartbeat rows (`heartbeat`), and one `stop` |
//! | [`input`] | reading: chunks of a file or stdin, bounded line splitting, JSON and CSV record framing, format detection, line parsers (regex, logfmt, syslog) and multiline joining; container runtimes' files (CRI, Docker json-file) with pod columns; file tailing, fingerprints and checkpoints; the systemd journal through journalctl, from a saved cursor |
//! | [`transform`] | records → DCR rows (JSON objects): `TimeGenerated` and time formats, `RawData`, typed columns and coercion, field edits, schema files; a fast JSON object scanner |
//! | [`batch`] | rows → sealed gzip request bodies within the byte cap (pure, property-tested) |
//! | [`ingest`] | the POST, the pure answer classifier, the sender with its retry policy and the probe of an idle output (`POST []`), per-DCR rate limits, the failure-episode log rule, and the diagnosis of what Azure says (403 fields, cloud vs endpoint) |
//! | [`spool`] | the disk spool: a durable, bounded FIFO of sealed request bodies per output (segments, CRC, cursor) |
//! | [`auth`] | token sources behind one trait, and the token cache |
//! | [`dcr`] | `dcrship dcr`: column types inferred from a sample, names Azure refuses, the ARM template (table, DCR, role), `az` commands and agent.toml blocks for them, or the same made through Resource Manager |
//! | [`metrics`], [`health`] | the registry of counters, gauges and histograms, their text rendering and the `process_*` metrics; per-output health and liveness (`health::state`) and the hyper server of `/metrics`, `/health` and `/live` (`health::server`) |
//! | [`systemd`] | sd_notify: READY, STATUS, WATCHDOG, RELOADING, STOPPING |
//! | [`deadletter`] | the NDJSON file of rejected rows, each with its reason |
//! | [`stats`] | the end-of-run summary, read from the metrics |
//! | [`rows`], [`azure`] | leaves: rows with their origin; what the API fixes (sizes, limits, id and stream shapes) |
//! | [`dirlock`], [`private_fs`], [`trouble`], [`fdlimit`], [`memory`] | one process per state directory; owner-only files; failures logged once a minute; the descriptor budget; a flat heap |
//! | [`http`], [`secret`], [`duration`], [`exit`], [`console`], [`telemetry`] | small shared pieces |
//!
//! Only the modules that `main` and the benchmarks reach are `pub`; the rest are `pub(crate)`,
//! so the compiler reports what nothing uses. Test-only helpers are `#[cfg(test)]`.

// The map links crate-private modules: read it with `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]
// Output goes through `console`, which does not panic on a closed stdout or stderr.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub(crate) mod auth;
pub(crate) mod azure;
pub mod batch;
pub mod cli;
pub mod cmd;
pub(crate) mod config;
pub mod console;
pub(crate) mod dcr;
pub mod deadletter;
pub(crate) mod dirlock;
pub(crate) mod duration;
pub mod exit;
pub(crate) mod fdlimit;
pub(crate) mod health;
pub(crate) mod http;
pub(crate) mod ingest;
pub mod input;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub(crate) mod private_fs;
pub mod rows;
pub(crate) mod secret;
pub(crate) mod spool;
pub(crate) mod stats;
pub(crate) mod systemd;
pub mod telemetry;
pub mod transform;
pub(crate) mod trouble;
