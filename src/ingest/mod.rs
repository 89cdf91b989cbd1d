//! Delivering sealed batches to a DCR stream.
//!
//! [`classify`] is a pure function from an HTTP answer to what to do next (the delivery policy
//! of design.md); [`client`] performs one POST behind the narrow [`Transport`] trait; [`sender`]
//! runs the policy: retries, the 403 grace window, Retry-After pauses shared by every sender of
//! the DCR, splitting on 413 and bisecting on 400; [`limits`] keeps each DCR within its
//! requests and bytes a minute.

pub mod classify;
pub mod client;
pub mod limits;
pub mod sealer;
pub mod sender;

pub use classify::{classify, Action, Answer};
pub use client::{HttpTransport, Transport, TransportError};
pub use sealer::Sealer;
pub use sender::{Fatal, Policy, Sender};
