//! Delivering sealed batches to a DCR stream.
//!
//! [`classify`] is a pure function from an HTTP answer to what to do next (the delivery policy
//! of design.md); [`client`] performs one POST behind the narrow [`Transport`] trait; [`sender`]
//! runs the policy: retries, the 403 grace window, Retry-After pauses shared by every sender of
//! the DCR, splitting on 413 and bisecting on a 400 about rows (not on one about the request:
//! a stream the DCR does not declare); [`limits`] keeps each DCR within its requests and bytes a
//! minute; [`episode`] decides when an outage is logged; [`diagnosis`] turns what Azure says
//! (and what our settings say) into what to fix.

pub mod classify;
pub mod client;
pub mod diagnosis;
pub mod episode;
pub mod limits;
pub mod sealer;
pub mod sender;

pub use client::{HttpTransport, Transport};
pub use sealer::Sealer;
