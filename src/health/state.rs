//! What `/health` says about each output (readiness: can anything be delivered) and whether
//! the pipeline still beats (`/live`: liveness). Every change of an output's state is also
//! published as `dcrship_output_state{output,state}` (1 for the state it is in, 0 for the
//! others) and each accepted request as `dcrship_last_success_timestamp_seconds{output}`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::metrics::Metrics;

/// Where an output stands, as far as delivering goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputState {
    /// Delivering, or nothing has gone wrong yet.
    Ok,
    /// 403/404 inside the permission grace: an RBAC grant or a new DCR is still propagating.
    WaitingForPermission,
    /// The service refuses the request as a whole (400 `InvalidStream`: a stream the DCR does
    /// not declare, …): the rows wait in the spool until the configuration or the DCR is fixed;
    /// `last_error_message` says what to fix.
    Misconfigured,
    /// 429/503 with Retry-After: the service is pacing us, data still flows.
    Throttled,
    /// Network errors, 5xx, or no token: nothing gets through right now.
    Failing,
}

impl OutputState {
    pub const ALL: [OutputState; 5] = [
        OutputState::Ok,
        OutputState::WaitingForPermission,
        OutputState::Misconfigured,
        OutputState::Throttled,
        OutputState::Failing,
    ];

    /// The name used in the `/health` body.
    pub fn label(self) -> &'static str {
        match self {
            OutputState::Ok => "ok",
            OutputState::WaitingForPermission => "waiting_for_permission",
            OutputState::Misconfigured => "misconfigured",
            OutputState::Throttled => "throttled",
            OutputState::Failing => "failing",
        }
    }

    /// Throttled still delivers, only slower; waiting and failing deliver nothing.
    fn can_deliver(self) -> bool {
        matches!(self, OutputState::Ok | OutputState::Throttled)
    }
}

/// One output's entry in the `/health` body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutputHealth {
    pub state: OutputState,
    /// RFC 3339 UTC, milliseconds; `null` until the first accepted request.
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    /// What failed last: the status, the service's error code and message, the request ids,
    /// or the connect/TLS cause, and what to fix when that is known.
    pub last_error_message: Option<String>,
    /// RFC 3339 UTC of the last empty request (`POST []`) that checked the idle output.
    pub last_probe: Option<String>,
}

impl OutputHealth {
    fn new() -> Self {
        OutputHealth {
            state: OutputState::Ok,
            last_success: None,
            last_error: None,
            last_error_message: None,
            last_probe: None,
        }
    }
}

/// The whole answer to `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// 200 when at least one output can deliver, else 503.
    pub http_status: u16,
    /// `ok`, `degraded` or `down`.
    pub status: &'static str,
    /// A snapshot of every output, by name.
    pub outputs: BTreeMap<String, OutputHealth>,
    /// `{"status":"ok"|"degraded"|"down","outputs":{…}}`
    pub body: String,
}

impl HealthReport {
    /// One line for systemd's `STATUS=` and logs: the overall status, then each output that is
    /// not `ok` with its state (`degraded: web throttled`), or how many outputs are fine.
    pub fn summary_line(&self) -> String {
        let troubled: Vec<String> = self
            .outputs
            .iter()
            .filter(|(_, o)| o.state != OutputState::Ok)
            .map(|(name, o)| format!("{name} {}", o.state.label()))
            .collect();
        match (self.outputs.len(), troubled.is_empty()) {
            (0, _) => format!("{}: no outputs", self.status),
            (1, true) => format!("{}: 1 output", self.status),
            (n, true) => format!("{}: {n} outputs", self.status),
            (_, false) => format!("{}: {}", self.status, troubled.join(", ")),
        }
    }
}

#[derive(serde::Serialize)]
struct Body<'a> {
    status: &'static str,
    outputs: &'a BTreeMap<String, OutputHealth>,
}

/// Error messages are cut to this many bytes: a service error text can be long, and a probe
/// body should stay small.
const MAX_MESSAGE_BYTES: usize = 2048;

/// Per-output health, shared by the senders (writers) and the server (reader). Writes happen
/// once per request at most, so a mutex is cheap here.
///
/// Messages passed in must be free of secrets: pass the classifier's reason or the error's
/// text, never a request or its headers.
#[derive(Debug, Default)]
pub struct Health {
    outputs: Mutex<BTreeMap<String, OutputHealth>>,
    /// What `/live` reports on, once the agent has a pipeline.
    heartbeat: std::sync::OnceLock<Heartbeat>,
    /// Where states and successes are published, if anywhere.
    metrics: Option<Arc<Metrics>>,
}

/// The pipeline's heartbeat — the one that gates the systemd watchdog: milliseconds since
/// `started` at the last beat of the batch loops (they beat at least every second, also while
/// waiting on a full queue, so only a loop that no longer runs falls silent).
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub beat_ms: Arc<std::sync::atomic::AtomicU64>,
    pub started: tokio::time::Instant,
    /// Silent for longer than this is stuck.
    pub stale_after: Duration,
}

impl Heartbeat {
    /// Whether the last beat is recent (a beat after `now` — a clock read before it — is fine).
    pub fn alive(beat_ms: u64, now_ms: u64, stale_after: Duration) -> bool {
        now_ms.saturating_sub(beat_ms) <= stale_after.as_millis() as u64
    }

    fn check(&self) -> bool {
        let now_ms = self.started.elapsed().as_millis() as u64;
        let beat = self.beat_ms.load(std::sync::atomic::Ordering::Relaxed);
        Self::alive(beat, now_ms, self.stale_after)
    }
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Health that also publishes each output's state and last success in `metrics`.
    pub fn with_metrics(metrics: Arc<Metrics>) -> Self {
        Health {
            metrics: Some(metrics),
            ..Self::default()
        }
    }

    /// Declares an output (state `ok`) so it is listed before its first request; without
    /// this, an agent that has not sent anything yet would report `down`. Keeps an existing
    /// entry as it is.
    pub fn add_output(&self, output: &str) {
        self.with(output, |_| {});
    }

    /// `/live` answers from `hb` from now on (before, it answers 200 while the process does).
    pub fn watch_heartbeat(&self, hb: Heartbeat) {
        let _ = self.heartbeat.set(hb);
    }

    /// What `GET /live` answers: 200 while the pipeline beats, 503 once it fell silent.
    pub fn live(&self) -> (u16, &'static str) {
        match self.heartbeat.get().map(Heartbeat::check) {
            Some(false) => (503, "stuck: the pipeline has not made progress\n"),
            _ => (200, "alive\n"),
        }
    }

    /// Forgets an output that a reload removed (its state series all drop to 0).
    pub fn remove_output(&self, output: &str) {
        self.lock().remove(output);
        if let Some(m) = &self.metrics {
            for s in OutputState::ALL {
                m.output_state(output, s.label()).set(0.0);
            }
        }
    }

    /// Entries that do not exist yet are created, as by [`Health::add_output`].
    pub fn set_state(&self, output: &str, state: OutputState) {
        self.with(output, |o| o.state = state);
    }

    /// A request was accepted: the output is `ok` again.
    pub fn record_success(&self, output: &str) {
        let now = now_rfc3339();
        self.with(output, |o| {
            o.state = OutputState::Ok;
            o.last_success = Some(now);
        });
        if let Some(m) = &self.metrics {
            let unix = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
            m.last_success(output).set(unix);
        }
    }

    /// An empty request checked the idle output and found it in `state`; `error` says what
    /// failed, if anything did.
    pub fn record_probe(&self, output: &str, state: OutputState, error: Option<&str>) {
        let now = now_rfc3339();
        let error = error.map(|e| truncate(e, MAX_MESSAGE_BYTES));
        self.with(output, |o| {
            o.state = state;
            o.last_probe = Some(now.clone());
            if let Some(e) = error {
                o.last_error = Some(now);
                o.last_error_message = Some(e);
            }
        });
        if let Some(m) = &self.metrics {
            m.probes(output, state.label()).inc();
        }
    }

    /// A request failed. The state is left alone: the caller knows whether this means
    /// throttled, waiting or failing, and says so with [`Health::set_state`].
    pub fn record_error(&self, output: &str, message: &str) {
        let now = now_rfc3339();
        let message = truncate(message, MAX_MESSAGE_BYTES);
        self.with(output, |o| {
            o.last_error = Some(now);
            o.last_error_message = Some(message);
        });
    }

    /// One output's entry, if it exists.
    pub fn output(&self, output: &str) -> Option<OutputHealth> {
        self.lock().get(output).cloned()
    }

    /// `ok` when every output is `ok`; `degraded` (still 200) when some can deliver but not
    /// all are `ok`; `down` (503) when none can deliver, including when there are no outputs,
    /// because then nothing is being shipped.
    pub fn report(&self) -> HealthReport {
        let outputs = self.lock();
        let delivering = outputs.values().filter(|o| o.state.can_deliver()).count();
        let all_ok = outputs.values().all(|o| o.state == OutputState::Ok);
        let (http_status, status) = match delivering {
            0 => (503, "down"),
            _ if all_ok => (200, "ok"),
            _ => (200, "degraded"),
        };
        let outputs = outputs.clone();
        let body = serde_json::to_string(&Body {
            status,
            outputs: &outputs,
        })
        // Strings and enums only: serialization cannot fail; say so rather than panic.
        .unwrap_or_else(|_| format!(r#"{{"status":"{status}","outputs":{{}}}}"#));
        HealthReport {
            http_status,
            status,
            outputs,
            body,
        }
    }

    fn with(&self, output: &str, f: impl FnOnce(&mut OutputHealth)) {
        let mut outputs = self.lock();
        let (before, after) = match outputs.get_mut(output) {
            Some(o) => {
                let before = o.state;
                f(o);
                (Some(before), o.state)
            }
            None => {
                let o = outputs
                    .entry(output.to_string())
                    .or_insert_with(OutputHealth::new);
                f(o);
                (None, o.state)
            }
        };
        // Published under the lock, so two changes cannot land in the wrong order.
        if before != Some(after) {
            self.publish(output, before.is_none(), after);
        }
    }

    /// `dcrship_output_state{output,state}`: 1 for `state`, 0 for the others; a new output
    /// also gets its probe counts at 0.
    fn publish(&self, output: &str, new: bool, state: OutputState) {
        let Some(m) = &self.metrics else { return };
        for s in OutputState::ALL {
            m.output_state(output, s.label())
                .set(if s == state { 1.0 } else { 0.0 });
            if new {
                m.probes(output, s.label());
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, OutputHealth>> {
        // Each update is a few field stores; a panic mid-update leaves nothing worse than a
        // stale field, so a poisoned lock is safe to keep using.
        self.outputs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    now.round(jiff::Unit::Millisecond)
        .unwrap_or(now)
        .to_string()
}

/// At most `max` bytes, cut on a character boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(report: &HealthReport) -> serde_json::Value {
        serde_json::from_str(&report.body).expect("health body is JSON")
    }

    #[test]
    fn no_outputs_is_down() {
        let h = Health::new();
        let r = h.report();
        assert_eq!(r.http_status, 503);
        assert_eq!(
            json(&r),
            serde_json::json!({"status": "down", "outputs": {}})
        );
    }

    #[test]
    fn declared_outputs_start_ok_with_nulls() {
        let h = Health::new();
        h.add_output("app");
        let r = h.report();
        assert_eq!(r.http_status, 200);
        assert_eq!(
            json(&r),
            serde_json::json!({"status": "ok", "outputs": {"app": {
                "state": "ok", "last_success": null, "last_error": null,
                "last_error_message": null, "last_probe": null
            }}})
        );
    }

    #[test]
    fn status_follows_the_states_of_all_outputs() {
        use OutputState::*;
        let cases: &[(&[OutputState], u16, &str)] = &[
            (&[Ok, Ok], 200, "ok"),
            (&[Ok, Failing], 200, "degraded"),
            (&[Throttled], 200, "degraded"),
            (&[Throttled, WaitingForPermission], 200, "degraded"),
            (&[Failing], 503, "down"),
            (&[WaitingForPermission], 503, "down"),
            (&[Failing, WaitingForPermission], 503, "down"),
            (&[Misconfigured], 503, "down"),
            (&[Ok, Misconfigured], 200, "degraded"),
        ];
        for (states, code, status) in cases {
            let h = Health::new();
            for (i, s) in states.iter().enumerate() {
                h.set_state(&format!("out{i}"), *s);
            }
            let r = h.report();
            assert_eq!(r.http_status, *code, "{states:?}");
            assert_eq!(json(&r)["status"], *status, "{states:?}");
        }
    }

    #[test]
    fn summary_line_names_the_outputs_in_trouble() {
        let h = Health::new();
        assert_eq!(h.report().summary_line(), "down: no outputs");
        h.add_output("app");
        assert_eq!(h.report().summary_line(), "ok: 1 output");
        h.add_output("web");
        assert_eq!(h.report().summary_line(), "ok: 2 outputs");
        h.set_state("web", OutputState::Throttled);
        assert_eq!(h.report().summary_line(), "degraded: web throttled");
        h.set_state("app", OutputState::WaitingForPermission);
        h.set_state("web", OutputState::Failing);
        assert_eq!(
            h.report().summary_line(),
            "down: app waiting_for_permission, web failing"
        );
        // The label and the JSON spelling agree.
        for s in [
            OutputState::Ok,
            OutputState::WaitingForPermission,
            OutputState::Misconfigured,
            OutputState::Throttled,
            OutputState::Failing,
        ] {
            assert_eq!(serde_json::to_value(s).expect("json"), s.label());
        }
    }

    #[test]
    fn states_and_successes_are_published_as_metrics() {
        let m = Arc::new(Metrics::new());
        let h = Health::with_metrics(m.clone());
        let state_of = |out: &str| -> Vec<(&'static str, f64)> {
            OutputState::ALL
                .iter()
                .map(|s| (s.label(), m.output_state(out, s.label()).get()))
                .filter(|(_, v)| *v != 0.0)
                .collect()
        };
        h.add_output("app");
        assert_eq!(state_of("app"), vec![("ok", 1.0)]);
        let text = m.render();
        for s in OutputState::ALL {
            assert!(
                text.contains(&format!(
                    "dcrship_output_state{{output=\"app\",state=\"{}\"}} ",
                    s.label()
                )),
                "every state has a series: {text}"
            );
            assert!(text.contains(&format!(
                "dcrship_probes_total{{output=\"app\",result=\"{}\"}} 0\n",
                s.label()
            )));
        }
        h.set_state("app", OutputState::WaitingForPermission);
        assert_eq!(state_of("app"), vec![("waiting_for_permission", 1.0)]);
        assert_eq!(m.last_success("app").get(), 0.0);
        h.record_success("app");
        assert_eq!(state_of("app"), vec![("ok", 1.0)]);
        let now = jiff::Timestamp::now().as_second() as f64;
        let last = m.last_success("app").get();
        assert!((now - 5.0..=now + 1.0).contains(&last), "{last} vs {now}");
        h.record_probe(
            "app",
            OutputState::Failing,
            Some("could not connect: refused"),
        );
        assert_eq!(state_of("app"), vec![("failing", 1.0)]);
        assert_eq!(m.probes("app", "failing").get(), 1);
        let o = h.output("app").expect("entry");
        assert!(o.last_probe.is_some());
        assert_eq!(
            o.last_error_message.as_deref(),
            Some("could not connect: refused")
        );
        h.record_probe("app", OutputState::Ok, None);
        let o = h.output("app").expect("entry");
        assert_eq!(o.state, OutputState::Ok);
        assert_eq!(
            o.last_error_message.as_deref(),
            Some("could not connect: refused"),
            "the last error stays visible"
        );
        h.remove_output("app");
        assert_eq!(state_of("app"), vec![]);
    }

    #[test]
    fn success_and_error_are_recorded_with_rfc3339_times() {
        let h = Health::new();
        h.set_state("app", OutputState::WaitingForPermission);
        h.record_error("app", "403: grant Monitoring Metrics Publisher");
        let o = h.output("app").expect("entry");
        // An error leaves the state to the caller.
        assert_eq!(o.state, OutputState::WaitingForPermission);
        let at = o.last_error.expect("last_error");
        assert!(at.ends_with('Z'), "{at}");
        at.parse::<jiff::Timestamp>().expect("RFC 3339");
        assert_eq!(
            o.last_error_message.as_deref(),
            Some("403: grant Monitoring Metrics Publisher")
        );

        h.record_success("app");
        let o = h.output("app").expect("entry");
        assert_eq!(o.state, OutputState::Ok);
        let ok = o.last_success.expect("last_success");
        ok.parse::<jiff::Timestamp>().expect("RFC 3339");
        // The last error stays visible after recovery.
        assert!(o.last_error_message.is_some());
        let v = json(&h.report());
        assert_eq!(v["outputs"]["app"]["state"], "ok");
        assert_eq!(v["outputs"]["app"]["last_success"], ok.as_str());
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary_and_outputs_can_be_removed() {
        let h = Health::new();
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        h.record_error("app", &long);
        let msg = h
            .output("app")
            .and_then(|o| o.last_error_message)
            .expect("msg");
        assert!(msg.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
        assert!(msg.ends_with('…'));
        h.remove_output("app");
        assert!(h.output("app").is_none());
        assert_eq!(h.report().http_status, 503);
    }

    #[test]
    fn the_heartbeat_is_alive_until_it_is_older_than_the_window() {
        let w = Duration::from_secs(30);
        let cases = [
            (100_000, 100_500, true),
            (100_000, 130_000, true),
            (100_000, 130_001, false),
            (0, 3_600_000, false),
            (5_000, 0, true), // a clock read before the beat
        ];
        for (beat, now, want) in cases {
            assert_eq!(Heartbeat::alive(beat, now, w), want, "{beat} {now}");
        }
    }
}
