//! Per-DCR rate limits, kept on our side, and the `Retry-After` pause.
//!
//! The service limits each DCR to 12,000 requests and 2 GB a minute and answers 429 past them.
//! A [`DcrGate`] holds, for one DCR, one GCRA limiter (governor) for requests and one for KiB,
//! and the pause a `Retry-After` asked for; every [`Sender`](super::sender::Sender) of the DCR goes
//! through the same gate before each POST, retries included, so several outputs on one DCR
//! share its limits and its pauses.
//!
//! Each limiter lets a second's worth of its limit go at once and paces the rest evenly, so no
//! 60-second window ever holds more than the limit (a limiter that let a full minute's worth go
//! at once would allow twice the limit in the first minute). Bytes are counted on the
//! uncompressed body, the larger of the two sizes, so we stay under however the service counts.
//!
//! governor runs on tokio's clock here (not its default quanta/std clock), and waits are
//! tokio sleeps, so tests on the paused clock see exact times and nothing busy-loops.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use crate::azure::{
    BYTES_PER_MINUTE as DEFAULT_MAX_BYTES_PER_MINUTE,
    REQUESTS_PER_MINUTE as DEFAULT_MAX_REQUESTS_PER_MINUTE,
};

/// Bytes in one cell of the byte limiter.
const CELL_BYTES: u64 = 1024;
/// The byte limiter's burst is at least one full request (1 MiB), when the limit allows it.
const ONE_REQUEST_KIB: u64 = 1024;
/// A wait this long for our own limits is worth a log line (at most one a minute per DCR).
const LOG_WAIT: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The limits of one DCR: `[outputs.*] max_requests_per_minute` and `max_bytes_per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DcrLimits {
    pub requests_per_minute: u32,
    pub bytes_per_minute: u64,
}

impl Default for DcrLimits {
    fn default() -> Self {
        DcrLimits {
            requests_per_minute: DEFAULT_MAX_REQUESTS_PER_MINUTE,
            bytes_per_minute: DEFAULT_MAX_BYTES_PER_MINUTE,
        }
    }
}

impl DcrLimits {
    /// The stricter of each limit.
    fn min(self, other: DcrLimits) -> DcrLimits {
        DcrLimits {
            requests_per_minute: self.requests_per_minute.min(other.requests_per_minute),
            bytes_per_minute: self.bytes_per_minute.min(other.bytes_per_minute),
        }
    }
}

/// governor's clock over tokio's: nanoseconds since the gate was made.
#[derive(Debug, Clone, Copy)]
struct TokioClock {
    origin: Instant,
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let since = Instant::now().saturating_duration_since(self.origin);
        Nanos::from(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// One GCRA limiter: `per_minute` cells in any 60-second window.
struct Bucket {
    limiter: Limiter,
    clock: TokioClock,
    burst: u32,
}

impl Bucket {
    /// `min_burst`: the burst wanted even when a second's worth is less (one full request).
    fn new(per_minute: u64, min_burst: u64, origin: Instant) -> Bucket {
        let n = per_minute.clamp(1, u64::from(u32::MAX));
        let burst = (n / 60).max(min_burst.min(n / 2)).max(1);
        // GCRA lets at most burst + ceil(60 s / period) - 1 cells into a 60 s window; with
        // `sustained` cells a minute that is exactly `n`.
        let sustained = n - burst + 1;
        let period_ns = 60_000_000_000u64.div_ceil(sustained);
        let burst =
            NonZeroU32::new(u32::try_from(burst).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(Duration::from_nanos(period_ns.max(1)))
            .unwrap_or(Quota::per_minute(NonZeroU32::MIN))
            .allow_burst(burst);
        let clock = TokioClock { origin };
        Bucket {
            limiter: RateLimiter::direct_with_clock(quota, clock),
            clock,
            burst: burst.get(),
        }
    }

    /// Waits until `cells` more fit. More than the burst is taken in burst-sized parts, each
    /// waiting its turn, so a large request passes and is still counted in full.
    async fn take(&self, cells: u64) {
        let mut left = cells;
        while left > 0 {
            let n = u32::try_from(left.min(u64::from(self.burst))).unwrap_or(self.burst);
            let Some(cells) = NonZeroU32::new(n) else {
                return;
            };
            loop {
                match self.limiter.check_n(cells) {
                    Ok(Ok(())) => break,
                    Ok(Err(not_until)) => {
                        tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
                    }
                    // Cannot happen (n ≤ burst); never hold a request forever over it.
                    Err(_) => break,
                }
            }
            left -= u64::from(n);
        }
    }
}

#[derive(Debug, Default)]
struct GateState {
    paused_until: Option<Instant>,
    last_wait_log: Option<Instant>,
}

/// What every sender of one DCR waits on before a POST.
pub struct DcrGate {
    dcr: String,
    limits: DcrLimits,
    requests: Bucket,
    kib: Bucket,
    state: Mutex<GateState>,
}

impl std::fmt::Debug for DcrGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DcrGate")
            .field("dcr", &self.dcr)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl DcrGate {
    pub fn new(dcr: &str, limits: DcrLimits) -> DcrGate {
        let origin = Instant::now();
        DcrGate {
            dcr: dcr.to_string(),
            limits,
            requests: Bucket::new(u64::from(limits.requests_per_minute), 1, origin),
            kib: Bucket::new(
                limits.bytes_per_minute / CELL_BYTES,
                ONE_REQUEST_KIB,
                origin,
            ),
            state: Mutex::new(GateState::default()),
        }
    }

    #[cfg(test)]
    pub fn limits(&self) -> DcrLimits {
        self.limits
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        // Plain data: a panic elsewhere while holding the lock leaves it usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a request with a body of `body_bytes` may be sent: past any `Retry-After`
    /// pause, and within both limits. The bytes are taken before the request cell so that a
    /// request waiting for bytes does not hold a request slot it is not using yet.
    pub async fn admit(&self, body_bytes: usize) {
        self.wait_for_pause().await;
        let started = Instant::now();
        let body = u64::try_from(body_bytes).unwrap_or(u64::MAX);
        self.kib.take(body.div_ceil(CELL_BYTES)).await;
        self.requests.take(1).await;
        let waited = started.elapsed();
        if waited >= LOG_WAIT {
            self.log_wait(waited);
        }
        // A Retry-After that came in while this request waited wins.
        self.wait_for_pause().await;
    }

    fn log_wait(&self, waited: Duration) {
        let now = Instant::now();
        {
            let mut s = self.state();
            if s.last_wait_log
                .is_some_and(|t| now.duration_since(t) < LOG_EVERY)
            {
                return;
            }
            s.last_wait_log = Some(now);
        }
        tracing::info!(
            dcr = %self.dcr,
            waited_ms = waited.as_millis() as u64,
            max_requests_per_minute = self.limits.requests_per_minute,
            max_bytes_per_minute = self.limits.bytes_per_minute,
            "holding requests to the DCR's rate limits ([outputs.*] max_requests_per_minute, max_bytes_per_minute)"
        );
    }

    /// Waits out a `Retry-After` pause, if one is on.
    pub async fn wait_for_pause(&self) {
        loop {
            let until = self.state().paused_until;
            match until {
                Some(u) if u > Instant::now() => tokio::time::sleep_until(u).await,
                _ => return,
            }
        }
    }

    /// No sender of this DCR sends before `until` (a later pause already on is kept).
    pub fn pause_until(&self, until: Instant) {
        let mut s = self.state();
        if s.paused_until.is_none_or(|p| p < until) {
            s.paused_until = Some(until);
        }
    }
}

/// The gates of the running configuration, by DCR id.
#[derive(Debug, Default)]
pub struct DcrGates {
    by_dcr: HashMap<String, Arc<DcrGate>>,
}

/// Gates live for the process, so a reload (SIGHUP) keeps a DCR's pause and the count of what
/// was just sent, unless its limits changed.
fn registry() -> &'static Mutex<HashMap<String, Arc<DcrGate>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<DcrGate>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

impl DcrGates {
    /// One gate per DCR of `outputs` (name, DCR id, limits). Outputs that share a DCR share its
    /// gate; when they set different limits, the smaller of each applies (and a warning says so),
    /// because the service counts the DCR as a whole.
    pub fn for_outputs<'a>(
        outputs: impl IntoIterator<Item = (&'a str, &'a str, DcrLimits)>,
    ) -> DcrGates {
        /// Per DCR: the limits that apply, and each output with the limits it asked for.
        type Wanted<'a> = BTreeMap<String, (DcrLimits, Vec<(&'a str, DcrLimits)>)>;
        let mut wanted: Wanted = BTreeMap::new();
        for (name, dcr, limits) in outputs {
            let entry = wanted.entry(dcr_key(dcr)).or_insert((limits, Vec::new()));
            entry.0 = entry.0.min(limits);
            entry.1.push((name, limits));
        }
        let mut registry = registry().lock().unwrap_or_else(|p| p.into_inner());
        // Forget DCRs no longer configured, so a long run of reloads does not accumulate them.
        registry.retain(|dcr, _| wanted.contains_key(dcr));
        let mut by_dcr = HashMap::new();
        for (dcr, (limits, names)) in wanted {
            if names.iter().any(|(_, l)| *l != limits) {
                let names: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
                tracing::warn!(
                    dcr = %dcr,
                    outputs = %names.join(", "),
                    max_requests_per_minute = limits.requests_per_minute,
                    max_bytes_per_minute = limits.bytes_per_minute,
                    "outputs sending to the same DCR set different rate limits; the smaller of each applies to all of them"
                );
            }
            let gate = match registry.get(&dcr) {
                Some(g) if g.limits == limits => g.clone(),
                _ => {
                    let g = Arc::new(DcrGate::new(&dcr, limits));
                    registry.insert(dcr.clone(), g.clone());
                    g
                }
            };
            by_dcr.insert(dcr, gate);
        }
        DcrGates { by_dcr }
    }

    /// The gate of `dcr` (one with the default limits if the DCR was not in the configuration).
    pub fn get(&self, dcr: &str) -> Arc<DcrGate> {
        let key = dcr_key(dcr);
        self.by_dcr
            .get(&key)
            .cloned()
            .unwrap_or_else(|| Arc::new(DcrGate::new(&key, DcrLimits::default())))
    }
}

/// DCR immutable ids are hex: compare them without case.
fn dcr_key(dcr: &str) -> String {
    dcr.trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admits `count` requests of `bytes` one after another; returns when each was let through,
    /// in ms since the start.
    async fn admit_times(gate: &DcrGate, count: usize, bytes: usize) -> Vec<u64> {
        let start = Instant::now();
        let mut times = Vec::with_capacity(count);
        for _ in 0..count {
            gate.admit(bytes).await;
            times.push(start.elapsed().as_millis() as u64);
        }
        times
    }

    /// The most items in any half-open window of `window` ms.
    fn max_in_window(times: &[u64], window: u64) -> usize {
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..times.len() {
            while times[hi] - times[lo] >= window {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    #[tokio::test(start_paused = true)]
    async fn twelve_thousand_requests_in_the_first_minute_then_paced() {
        let gate = DcrGate::new("dcr-a", DcrLimits::default());
        let times = admit_times(&gate, 30_000, 100).await;
        let first_minute = times.iter().filter(|&&t| t < 60_000).count();
        assert!(
            (11_990..=12_000).contains(&first_minute),
            "{first_minute} in the first minute"
        );
        // A second's worth goes at once, then an even pace of 5 ms.
        assert_eq!(times.iter().filter(|&&t| t == 0).count(), 200);
        assert!(times[300] - times[299] >= 5, "{:?}", &times[295..305]);
        assert!(
            max_in_window(&times, 60_000) <= 12_000,
            "never more than 12,000 in any minute"
        );
        let second_minute = times
            .iter()
            .filter(|&&t| (60_000..120_000).contains(&t))
            .count();
        assert!(
            (11_700..=12_000).contains(&second_minute),
            "{second_minute} in the second minute"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_are_paced_at_two_gb_a_minute_for_1_mb_bodies() {
        let gate = DcrGate::new("dcr-b", DcrLimits::default());
        let times = admit_times(&gate, 6_000, 1_000_000).await;
        let per_minute = |m: u64| {
            times
                .iter()
                .filter(|&&t| (m * 60_000..(m + 1) * 60_000).contains(&t))
                .count() as u64
        };
        for m in 0..2 {
            let bytes = per_minute(m) * 1_000_000;
            assert!(
                (1_950_000_000..=2_000_000_000).contains(&bytes),
                "minute {m}: {bytes} bytes"
            );
        }
        assert!(max_in_window(&times, 60_000) as u64 * 1_000_000 <= 2_000_000_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_larger_than_the_burst_still_passes_and_counts_in_full() {
        // 1 MiB a minute: the burst is half a minute's worth, smaller than a 1 MiB body.
        let limits = DcrLimits {
            requests_per_minute: 12_000,
            bytes_per_minute: 1 << 20,
        };
        let gate = DcrGate::new("dcr-c", limits);
        let times = admit_times(&gate, 3, 1 << 20).await;
        // Each body is a full minute's worth of bytes: never two in one minute.
        assert!(times.windows(2).all(|w| w[1] - w[0] >= 60_000), "{times:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_low_request_limit_paces_from_the_start() {
        let limits = DcrLimits {
            requests_per_minute: 60,
            bytes_per_minute: DEFAULT_MAX_BYTES_PER_MINUTE,
        };
        let gate = DcrGate::new("dcr-d", limits);
        let times = admit_times(&gate, 130, 10).await;
        assert_eq!(times[0], 0);
        assert!(times.windows(2).all(|w| w[1] - w[0] >= 1_000), "{times:?}");
        assert!(max_in_window(&times, 60_000) <= 60);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_request_until_it_ends() {
        let gate = Arc::new(DcrGate::new("dcr-f", DcrLimits::default()));
        let start = Instant::now();
        gate.pause_until(start + Duration::from_secs(5));
        // A shorter pause does not cut a longer one.
        gate.pause_until(start + Duration::from_secs(2));
        gate.admit(10).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    fn output(dcr: &str, requests: u32, bytes: u64) -> (String, DcrLimits) {
        let limits = DcrLimits {
            requests_per_minute: requests,
            bytes_per_minute: bytes,
        };
        (dcr.to_string(), limits)
    }

    fn gates_of(outputs: &BTreeMap<String, (String, DcrLimits)>) -> DcrGates {
        DcrGates::for_outputs(
            outputs
                .iter()
                .map(|(n, (dcr, l))| (n.as_str(), dcr.as_str(), *l)),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn outputs_on_one_dcr_share_a_gate_with_the_smaller_limits() {
        let dcr = "dcr-11111111111111111111111111111111";
        let other = "dcr-22222222222222222222222222222222";
        let outputs: BTreeMap<String, (String, DcrLimits)> = [
            ("a".to_string(), output(dcr, 12_000, 1 << 30)),
            ("b".to_string(), output(&dcr.to_uppercase(), 600, 1 << 40)),
            ("c".to_string(), output(other, 12_000, 1 << 30)),
        ]
        .into_iter()
        .collect();
        let gates = gates_of(&outputs);
        assert!(Arc::ptr_eq(
            &gates.get(dcr),
            &gates.get(&dcr.to_uppercase())
        ));
        assert!(!Arc::ptr_eq(&gates.get(dcr), &gates.get(other)));
        assert_eq!(
            gates.get(dcr).limits(),
            DcrLimits {
                requests_per_minute: 600,
                bytes_per_minute: 1 << 30
            }
        );
        // A reload with the same limits keeps the gate (and its pause); new limits replace it.
        let again = gates_of(&outputs);
        assert!(Arc::ptr_eq(&gates.get(dcr), &again.get(dcr)));
        let mut changed = outputs.clone();
        changed.insert("b".into(), output(dcr, 300, 1 << 40));
        let changed = gates_of(&changed);
        assert!(!Arc::ptr_eq(&gates.get(dcr), &changed.get(dcr)));
        assert_eq!(changed.get(dcr).limits().requests_per_minute, 300);
    }
}
