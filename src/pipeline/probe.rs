//! When an idle output is probed: `/health` must not say `ok` on a quiet host while Azure is
//! unreachable, so an output that has sent nothing for a while checks its path with an empty
//! request ([`Sender::probe`]) and reports what it found. At most one probe per `every` of
//! idleness, none while requests flow (they tell the state already); the first soon after
//! start, so an agent with nothing to send learns at once whether it could.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::output::OutputReport;
use crate::ingest::sender::Sender;

/// An output idle this long after start gets its first probe.
pub const FIRST_PROBE_AFTER: Duration = Duration::from_secs(5);

/// `Ok` to probe now; else the instant to look again. `probed`: a probe was made before (the
/// first comes after [`FIRST_PROBE_AFTER`] of idleness, the others after `every`).
pub fn due(
    last_request: Instant,
    now: Instant,
    every: Duration,
    probed: bool,
) -> Result<(), Instant> {
    let idle_enough = if probed {
        every
    } else {
        FIRST_PROBE_AFTER.min(every)
    };
    let at = last_request + idle_enough;
    if now >= at {
        Ok(())
    } else {
        Err(at)
    }
}

/// Probes `sender`'s output whenever it is due, until aborted.
pub async fn run(sender: Arc<Sender>, report: Arc<OutputReport>, every: Duration) {
    let mut probed = false;
    loop {
        match due(sender.last_request(), Instant::now(), every, probed) {
            Ok(()) => {
                report.probed(sender.probe().await);
                probed = true;
            }
            Err(at) => tokio::time::sleep_until(at).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_is_probed_only_after_it_was_idle_long_enough() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let minute = s(60);
        // (seconds since the last request, probed before, want)
        let cases: &[(u64, bool, Result<(), u64>)] = &[
            (0, false, Err(5)),
            (4, false, Err(5)),
            (5, false, Ok(())),
            (30, false, Ok(())),
            (5, true, Err(60)),
            (59, true, Err(60)),
            (60, true, Ok(())),
            (600, true, Ok(())),
        ];
        for (idle, probed, want) in cases {
            let now = t0 + s(*idle);
            let got = due(t0, now, minute, *probed).map_err(|at| (at - t0).as_secs());
            assert_eq!(got, *want, "idle {idle}s, probed {probed}");
        }
        // A short interval also shortens the first wait.
        assert_eq!(due(t0, t0 + s(2), s(2), false), Ok(()));
    }
}
