//! Readiness, liveness and the server that answers for them.
//!
//! - [`state`]: what `/health` says about each output and what `/live` says about the
//!   pipeline, shared by the senders, the idle-output probes (writers) and the server (reader).
//! - [`server`]: the HTTP server on `[agent] http_listen` (`/metrics`, `/health`, `/live`).

pub mod server;
pub mod state;

pub use server::{bind, serve};
pub use state::{Health, Heartbeat, OutputState};
