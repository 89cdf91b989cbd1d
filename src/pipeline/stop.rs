//! How a pipeline stops: one [`Stop`] shared by every task, in the manner of mini-redis'
//! `shutdown.rs` but on tokio-util's cancellation tokens.
//!
//! - `inputs` is cancelled to stop reading (SIGTERM, reload, a one-shot run's end or failure);
//!   what was read is still delivered.
//! - `abort` is cancelled to stop delivering at once (the drain timed out, or a failure no
//!   later batch can cure in a one-shot run); what is not delivered stays in the spool, or is
//!   reported as not sent.
//!
//! A stop for a reload whose next pipeline reads stdin too is marked ([`Stop::hand_over`]): a
//! stdin input then leaves what its decoder holds to the next one instead of sending it now.
//!
//! The first fatal failure and the first input error are kept for the caller's exit code.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use tokio_util::sync::CancellationToken;

use crate::ingest::sender::Fatal;

#[derive(Debug, Default)]
pub struct Stop {
    pub inputs: CancellationToken,
    pub abort: CancellationToken,
    fatal: OnceLock<Fatal>,
    input_error: OnceLock<String>,
    stdin_handed_over: AtomicBool,
}

impl Stop {
    /// A failure that ends a one-shot run: kept (the first one wins), and every task stops.
    pub fn fail(&self, f: Fatal) {
        if self.fatal.set(f).is_ok() {
            self.abort.cancel();
            self.inputs.cancel();
        }
    }

    /// Stops reading for a reload; `stdin`: the next pipeline reads stdin, and goes on where
    /// this one stopped.
    pub fn hand_over(&self, stdin: bool) {
        self.stdin_handed_over.store(stdin, Ordering::SeqCst);
        self.inputs.cancel();
    }

    /// Whether the inputs stopped for a reload whose next pipeline reads stdin.
    pub fn stdin_handed_over(&self) -> bool {
        self.stdin_handed_over.load(Ordering::SeqCst)
    }

    /// An input could not be read to its end; the others go on.
    pub fn input_failed(&self, message: String) {
        let _ = self.input_error.set(message);
    }

    pub fn fatal(&self) -> Option<&Fatal> {
        self.fatal.get()
    }

    pub fn input_error(&self) -> Option<&str> {
        self.input_error.get().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_is_kept_and_stops_everything() {
        let stop = Stop::default();
        assert!(!stop.abort.is_cancelled() && !stop.inputs.is_cancelled());
        stop.fail(Fatal::Transient("first".into()));
        stop.fail(Fatal::NoToken("second".into()));
        assert_eq!(stop.fatal(), Some(&Fatal::Transient("first".into())));
        assert!(stop.abort.is_cancelled() && stop.inputs.is_cancelled());
        stop.input_failed("a".into());
        stop.input_failed("b".into());
        assert_eq!(stop.input_error(), Some("a"));
        assert!(!stop.stdin_handed_over(), "a failure is no reload");
    }

    #[test]
    fn a_hand_over_stops_the_inputs_and_says_so() {
        let stop = Stop::default();
        stop.hand_over(true);
        assert!(stop.inputs.is_cancelled() && stop.stdin_handed_over());
        assert!(
            !stop.abort.is_cancelled(),
            "what was read is still delivered"
        );
        let stop = Stop::default();
        stop.hand_over(false);
        assert!(stop.inputs.is_cancelled() && !stop.stdin_handed_over());
    }
}
