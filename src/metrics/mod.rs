//! The agent's metrics, and their rendering in the Prometheus text format (0.0.4).
//!
//! Hand-rolled rather than the `metrics` crate: the set of names is fixed by the contract, and
//! a map of atomics plus one renderer is less code than an exporter. Each series is created
//! once (a short write lock) and then handed out as a [`Counter`], [`Gauge`] or [`Histogram`]
//! — an `Arc` of atomics — so the hot path records without taking any lock. Callers keep the
//! handles they use per record or per request; looking one up again is a read lock and a map
//! lookup.
//!
//! Label values are free text, but must come from a small fixed set (output and input names
//! from the configuration, `RetryReason::label`, [`DropReason`], HTTP statuses the policy
//! knows), never from messages: each distinct value is a series that lives until the process
//! exits. The pipeline creates every known value of an output at 0 when it starts the output,
//! so `increase()` and alerts see the first event, not only the second.
//!
//! - [`histogram`]: fixed-bucket histograms (request latency, rows and bytes per request).
//! - [`process`]: the standard `process_*` metrics from `/proc/self`.
//! - [`render`]: the text exposition.

pub mod histogram;
pub mod process;
pub mod render;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock};

pub use histogram::Histogram;

/// One metric family: its name, help text, type and label names are fixed by the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    RecordsReceived,
    RecordsSent,
    RecordsDropped,
    Requests,
    RequestBytes,
    Retries,
    SpoolBytes,
    OldestUnsentSeconds,
    TokenRefresh,
    BuildInfo,
    RowIssues,
    ParseFailures,
    MultilineCut,
    InputBytes,
    SpoolDiskBytes,
    SpoolMaxBytes,
    RequestDuration,
    RequestRows,
    RequestSize,
    OutputState,
    LastSuccess,
    Probes,
    Reloads,
}

/// Counter, gauge or histogram, as written on the `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

impl Family {
    /// Every family, in the order `/metrics` lists them.
    pub const ALL: [Family; 23] = [
        Family::BuildInfo,
        Family::RecordsReceived,
        Family::InputBytes,
        Family::RecordsSent,
        Family::RecordsDropped,
        Family::Requests,
        Family::RequestBytes,
        Family::RequestDuration,
        Family::RequestRows,
        Family::RequestSize,
        Family::Retries,
        Family::Probes,
        Family::OutputState,
        Family::LastSuccess,
        Family::SpoolBytes,
        Family::SpoolDiskBytes,
        Family::SpoolMaxBytes,
        Family::OldestUnsentSeconds,
        Family::TokenRefresh,
        Family::Reloads,
        Family::RowIssues,
        Family::ParseFailures,
        Family::MultilineCut,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::RecordsReceived => "dcrship_records_received_total",
            Family::RecordsSent => "dcrship_records_sent_total",
            Family::RecordsDropped => "dcrship_records_dropped_total",
            Family::Requests => "dcrship_requests_total",
            Family::RequestBytes => "dcrship_request_bytes_total",
            Family::Retries => "dcrship_retries_total",
            Family::SpoolBytes => "dcrship_spool_bytes",
            Family::OldestUnsentSeconds => "dcrship_oldest_unsent_seconds",
            Family::TokenRefresh => "dcrship_token_refresh_total",
            Family::BuildInfo => "dcrship_build_info",
            Family::RowIssues => "dcrship_row_issues_total",
            Family::ParseFailures => "dcrship_parse_failures_total",
            Family::MultilineCut => "dcrship_multiline_cut_total",
            Family::InputBytes => "dcrship_input_bytes_total",
            Family::SpoolDiskBytes => "dcrship_spool_disk_bytes",
            Family::SpoolMaxBytes => "dcrship_spool_max_bytes",
            Family::RequestDuration => "dcrship_request_duration_seconds",
            Family::RequestRows => "dcrship_request_rows",
            Family::RequestSize => "dcrship_request_size_bytes",
            Family::OutputState => "dcrship_output_state",
            Family::LastSuccess => "dcrship_last_success_timestamp_seconds",
            Family::Probes => "dcrship_probes_total",
            Family::Reloads => "dcrship_reloads_total",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Family::RecordsReceived => "Records read from an input.",
            Family::RecordsSent => "Records the service accepted (HTTP 2xx).",
            Family::RecordsDropped => {
                "Records that will never be sent (dead-lettered or discarded), by reason."
            }
            Family::Requests => {
                "Ingestion requests by HTTP status; status=\"error\" when no answer came."
            }
            Family::RequestBytes => "Bytes of request bodies sent, before (raw) and after gzip.",
            Family::Retries => "Request retries by reason.",
            Family::SpoolBytes => {
                "Bytes of requests in the spool the service has not accepted yet (the backlog)."
            }
            Family::OldestUnsentSeconds => "Age of the oldest record not yet accepted.",
            Family::TokenRefresh => "Token fetches by identity source and result.",
            Family::BuildInfo => "Always 1; the version label says which dcrship runs.",
            Family::ParseFailures => {
                "Lines (or multiline events) their parser did not recognise: sent as RawData, or \
                 dead-lettered with on_mismatch = \"dead-letter\"."
            }
            Family::MultilineCut => {
                "Multiline events emitted early at max_lines or max_bytes (the rest of the lines \
                 start the next event)."
            }
            Family::RowIssues => {
                "Values and rows changed to fit the stream, by issue: truncated (over 64 KiB), \
                 uncoercible (sent as null), undeclared (field removed), time_unparsable (time \
                 read used), time_out_of_range (Azure will replace TimeGenerated)."
            }
            Family::InputBytes => "Bytes read from an input (files and stdin).",
            Family::SpoolDiskBytes => {
                "Bytes of the spool's segment files on disk (what [spool] max_bytes bounds)."
            }
            Family::SpoolMaxBytes => "The spool's bound, [spool] max_bytes.",
            Family::RequestDuration => {
                "Seconds one ingestion request took, from sending to the end of the answer or \
                 the failure."
            }
            Family::RequestRows => "Rows in one accepted request.",
            Family::RequestSize => "Uncompressed bytes of one accepted request.",
            Family::OutputState => {
                "1 for the state an output is in (ok, waiting_for_permission, misconfigured, \
                 throttled, failing), 0 for the others."
            }
            Family::LastSuccess => {
                "Unix time of the last request the service accepted (0: none yet)."
            }
            Family::Probes => {
                "Empty requests (POST []) that check an idle output, by the state they found."
            }
            Family::Reloads => "Configuration reloads (SIGHUP) by result.",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Family::SpoolBytes
            | Family::SpoolDiskBytes
            | Family::SpoolMaxBytes
            | Family::OldestUnsentSeconds
            | Family::BuildInfo
            | Family::OutputState
            | Family::LastSuccess => Kind::Gauge,
            Family::RequestDuration | Family::RequestRows | Family::RequestSize => Kind::Histogram,
            _ => Kind::Counter,
        }
    }

    /// Bucket bounds of a histogram family (empty for the others).
    pub fn buckets(self) -> &'static [f64] {
        match self {
            Family::RequestDuration => histogram::LATENCY_SECONDS,
            Family::RequestRows => histogram::ROWS,
            Family::RequestSize => histogram::BYTES,
            _ => &[],
        }
    }

    /// Label names, in the order values are passed and rendered.
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            Family::RecordsReceived
            | Family::ParseFailures
            | Family::MultilineCut
            | Family::InputBytes => &["input"],
            Family::RowIssues => &["input", "issue"],
            Family::RecordsSent
            | Family::SpoolBytes
            | Family::SpoolDiskBytes
            | Family::SpoolMaxBytes
            | Family::OldestUnsentSeconds
            | Family::RequestDuration
            | Family::RequestRows
            | Family::RequestSize
            | Family::LastSuccess => &["output"],
            Family::RecordsDropped | Family::Retries => &["output", "reason"],
            Family::Requests => &["output", "status"],
            Family::RequestBytes => &["output", "encoding"],
            Family::OutputState => &["output", "state"],
            Family::Probes => &["output", "result"],
            Family::TokenRefresh => &["source", "result"],
            Family::BuildInfo => &["version"],
            Family::Reloads => &["result"],
        }
    }
}

/// `encoding` label of `dcrship_request_bytes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Raw,
    Gzip,
}

impl Encoding {
    pub fn label(self) -> &'static str {
        match self {
            Encoding::Raw => "raw",
            Encoding::Gzip => "gzip",
        }
    }
}

/// `reason` label of `dcrship_records_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The service refused the rows (dead-lettered with its answer).
    Rejected,
    /// A record no request can hold.
    TooLarge,
    /// A record that is not what its format says (invalid JSON, …).
    Invalid,
    /// Dropped from a full spool (`when_full = "drop_oldest"`).
    SpoolFull,
    /// A spooled request that could not be read back.
    SpoolCorrupt,
}

impl DropReason {
    pub const ALL: [DropReason; 5] = [
        DropReason::Rejected,
        DropReason::TooLarge,
        DropReason::Invalid,
        DropReason::SpoolFull,
        DropReason::SpoolCorrupt,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::Rejected => "rejected",
            DropReason::TooLarge => "too_large",
            DropReason::Invalid => "invalid",
            DropReason::SpoolFull => "spool_full",
            DropReason::SpoolCorrupt => "spool_corrupt",
        }
    }
}

/// A monotonically increasing count. Cloning shares the same series.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down. Stored as the bits of an `f64` so it can hold seconds.
/// Cloning shares the same series.
#[derive(Debug, Clone)]
pub struct Gauge(Arc<AtomicU64>);

impl Default for Gauge {
    fn default() -> Self {
        Gauge(Arc::new(AtomicU64::new(0f64.to_bits())))
    }
}

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }
}

/// The storage of one series; which one is known from its family's kind.
#[derive(Debug, Clone)]
enum Series {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

/// Series key: the family, then the label values in the family's label order. Ordering by
/// this key is what makes the rendering stable.
type Key = (Family, Vec<String>);

/// Every series of this process. Share it as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    series: RwLock<BTreeMap<Key, Series>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry holding only `dcrship_build_info{version="…"} 1`.
    pub fn new() -> Self {
        let m = Metrics {
            series: RwLock::new(BTreeMap::new()),
        };
        m.gauge(Family::BuildInfo, &[env!("CARGO_PKG_VERSION")])
            .set(1.0);
        m
    }

    pub fn records_received(&self, input: &str) -> Counter {
        self.counter(Family::RecordsReceived, &[input])
    }

    pub fn input_bytes(&self, input: &str) -> Counter {
        self.counter(Family::InputBytes, &[input])
    }

    pub fn records_sent(&self, output: &str) -> Counter {
        self.counter(Family::RecordsSent, &[output])
    }

    pub fn records_dropped(&self, output: &str, reason: DropReason) -> Counter {
        self.counter(Family::RecordsDropped, &[output, reason.label()])
    }

    /// `status` is the HTTP status; `None` (no answer: connect error, timeout, reset) is
    /// written `status="error"`.
    pub fn requests(&self, output: &str, status: Option<u16>) -> Counter {
        match status {
            Some(code) => self.counter(Family::Requests, &[output, &code.to_string()]),
            None => self.counter(Family::Requests, &[output, "error"]),
        }
    }

    pub fn request_bytes(&self, output: &str, encoding: Encoding) -> Counter {
        self.counter(Family::RequestBytes, &[output, encoding.label()])
    }

    pub fn request_duration(&self, output: &str) -> Histogram {
        self.histogram(Family::RequestDuration, &[output])
    }

    pub fn request_rows(&self, output: &str) -> Histogram {
        self.histogram(Family::RequestRows, &[output])
    }

    pub fn request_size(&self, output: &str) -> Histogram {
        self.histogram(Family::RequestSize, &[output])
    }

    /// `reason` is `RetryReason::label()`.
    pub fn retries(&self, output: &str, reason: &str) -> Counter {
        self.counter(Family::Retries, &[output, reason])
    }

    /// `result` is the state the probe found (`ok`, `failing`, …).
    pub fn probes(&self, output: &str, result: &str) -> Counter {
        self.counter(Family::Probes, &[output, result])
    }

    /// `state` is the `/health` state's label.
    pub fn output_state(&self, output: &str, state: &str) -> Gauge {
        self.gauge(Family::OutputState, &[output, state])
    }

    pub fn last_success(&self, output: &str) -> Gauge {
        self.gauge(Family::LastSuccess, &[output])
    }

    pub fn spool_bytes(&self, output: &str) -> Gauge {
        self.gauge(Family::SpoolBytes, &[output])
    }

    pub fn spool_disk_bytes(&self, output: &str) -> Gauge {
        self.gauge(Family::SpoolDiskBytes, &[output])
    }

    pub fn spool_max_bytes(&self, output: &str) -> Gauge {
        self.gauge(Family::SpoolMaxBytes, &[output])
    }

    pub fn oldest_unsent_seconds(&self, output: &str) -> Gauge {
        self.gauge(Family::OldestUnsentSeconds, &[output])
    }

    /// `issue`: `truncated`, `uncoercible`, `undeclared`, `time_unparsable`,
    /// `time_out_of_range`.
    pub fn row_issues(&self, input: &str, issue: &str) -> Counter {
        self.counter(Family::RowIssues, &[input, issue])
    }

    pub fn parse_failures(&self, input: &str) -> Counter {
        self.counter(Family::ParseFailures, &[input])
    }

    pub fn multiline_cut(&self, input: &str) -> Counter {
        self.counter(Family::MultilineCut, &[input])
    }

    /// `source` is the identity source (`imds`, `arc`, …), `result` is `success` or
    /// `failure`.
    pub fn token_refresh(&self, source: &str, result: &str) -> Counter {
        self.counter(Family::TokenRefresh, &[source, result])
    }

    /// `result`: `success` or `failure`.
    pub fn reloads(&self, result: &str) -> Counter {
        self.counter(Family::Reloads, &[result])
    }

    /// The sum of `family`'s counters whose labels have the given values (`&[]`: all of them),
    /// for summaries read from the counters (`send`'s).
    pub fn sum(&self, family: Family, labels: &[(&str, &str)]) -> u64 {
        let names = family.labels();
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        series
            .range((family, Vec::new())..)
            .take_while(|((f, _), _)| *f == family)
            .filter(|((_, values), _)| {
                labels.iter().all(|(name, want)| {
                    names
                        .iter()
                        .position(|n| n == name)
                        .is_some_and(|i| values.get(i).is_some_and(|v| v == want))
                })
            })
            .map(|(_, s)| match s {
                Series::Counter(c) => c.get(),
                Series::Gauge(_) | Series::Histogram(_) => 0,
            })
            .sum()
    }

    /// The counter of `family` with these label values (in [`Family::labels`] order),
    /// created at 0 on first use. A family of another kind or a wrong number of values gives a
    /// detached counter that is never rendered: a programming error must not stop shipping,
    /// and the typed methods above cannot make it.
    pub fn counter(&self, family: Family, values: &[&str]) -> Counter {
        if !self.fits(family, Kind::Counter, values) {
            return Counter::default();
        }
        match self.get_or_create(family, values, || Series::Counter(Counter::default())) {
            Series::Counter(c) => c,
            _ => Counter::default(),
        }
    }

    /// The gauge of `family` with these label values, created at 0 on first use; like
    /// [`Metrics::counter`], a mismatch gives a detached gauge.
    pub fn gauge(&self, family: Family, values: &[&str]) -> Gauge {
        if !self.fits(family, Kind::Gauge, values) {
            return Gauge::default();
        }
        match self.get_or_create(family, values, || Series::Gauge(Gauge::default())) {
            Series::Gauge(g) => g,
            _ => Gauge::default(),
        }
    }

    /// The histogram of `family` (with the family's buckets), created empty on first use; a
    /// mismatch gives a detached one.
    pub fn histogram(&self, family: Family, values: &[&str]) -> Histogram {
        let detached = || Histogram::new(family.buckets());
        if !self.fits(family, Kind::Histogram, values) {
            return detached();
        }
        let new: fn() -> Series = match family {
            Family::RequestDuration => {
                || Series::Histogram(Histogram::new(histogram::LATENCY_SECONDS))
            }
            Family::RequestRows => || Series::Histogram(Histogram::new(histogram::ROWS)),
            _ => || Series::Histogram(Histogram::new(histogram::BYTES)),
        };
        match self.get_or_create(family, values, new) {
            Series::Histogram(h) => h,
            _ => detached(),
        }
    }

    fn fits(&self, family: Family, kind: Kind, values: &[&str]) -> bool {
        let fits = family.kind() == kind && values.len() == family.labels().len();
        if !fits {
            tracing::warn!(
                metric = family.name(),
                ?values,
                "not a {} with these labels",
                kind.name()
            );
        }
        fits
    }

    fn get_or_create(&self, family: Family, values: &[&str], new: fn() -> Series) -> Series {
        let key: Key = (family, values.iter().map(|v| v.to_string()).collect());
        // The map only ever grows and holds atomics, so a panic elsewhere cannot leave it
        // inconsistent: a poisoned lock is safe to keep using.
        if let Some(s) = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return s.clone();
        }
        self.series
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert_with(new)
            .clone()
    }

    /// The Prometheus text exposition (format 0.0.4): every family with `# HELP` and
    /// `# TYPE` (also those without series yet, so a scraper sees the full set), families in
    /// [`Family::ALL`] order, series sorted by label values; then the `process_*` metrics.
    pub fn render(&self) -> String {
        let map = self.series.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::with_capacity(1024 + map.len() * 80);
        for family in Family::ALL {
            render::header(&mut out, family.name(), family.help(), family.kind());
            let from: Key = (family, Vec::new());
            for ((f, values), series) in map.range(from..) {
                if *f != family {
                    break;
                }
                let (name, labels) = (family.name(), family.labels());
                match series {
                    Series::Counter(c) => render::counter(&mut out, name, labels, values, c.get()),
                    Series::Gauge(g) => render::gauge(&mut out, name, labels, values, g.get()),
                    Series::Histogram(h) => {
                        render::histogram(&mut out, name, labels, values, &h.snapshot())
                    }
                }
            }
        }
        drop(map);
        process::render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample lines of dcrship's own families (no comments, no `process_*`).
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| l.starts_with("dcrship_")).collect()
    }

    #[test]
    fn sums_filter_by_label() {
        let m = Metrics::new();
        m.records_dropped("a", DropReason::Rejected).add(3);
        m.records_dropped("a", DropReason::Invalid).add(2);
        m.records_dropped("b", DropReason::Rejected).add(7);
        m.records_sent("a").add(11);
        assert_eq!(m.sum(Family::RecordsDropped, &[]), 12);
        assert_eq!(m.sum(Family::RecordsDropped, &[("output", "a")]), 5);
        assert_eq!(m.sum(Family::RecordsDropped, &[("reason", "rejected")]), 10);
        assert_eq!(
            m.sum(
                Family::RecordsDropped,
                &[("output", "b"), ("reason", "invalid")]
            ),
            0
        );
        assert_eq!(m.sum(Family::RecordsSent, &[]), 11);
        assert_eq!(m.sum(Family::SpoolBytes, &[]), 0, "gauges are not summed");
    }

    #[test]
    fn fresh_registry_renders_every_family_header_and_build_info() {
        let m = Metrics::new();
        let text = m.render();
        for f in Family::ALL {
            assert!(
                text.contains(&format!("# HELP {} ", f.name())),
                "{}",
                f.name()
            );
            assert!(text.contains(&format!("# TYPE {} {}\n", f.name(), f.kind().name())));
        }
        assert_eq!(
            samples(&text),
            vec![format!(
                "dcrship_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )]
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn renders_counters_and_gauges_in_a_stable_order() {
        let m = Metrics::new();
        // Created out of order on purpose.
        m.requests("web", Some(503)).add(2);
        m.records_sent("web").add(7);
        m.requests("app", None).inc();
        m.requests("app", Some(204)).add(3);
        m.records_sent("app").add(5);
        m.request_bytes("app", Encoding::Gzip).add(100);
        m.request_bytes("app", Encoding::Raw).add(1000);
        m.retries("app", "throttled").inc();
        m.records_dropped("app", DropReason::Rejected).add(4);
        m.records_received("applog").add(12);
        m.spool_bytes("app").set(4096.0);
        m.oldest_unsent_seconds("app").set(1.5);
        m.token_refresh("imds", "ok").inc();

        let text = m.render();
        let version = env!("CARGO_PKG_VERSION");
        let want = [
            format!("dcrship_build_info{{version=\"{version}\"}} 1"),
            "dcrship_records_received_total{input=\"applog\"} 12".into(),
            "dcrship_records_sent_total{output=\"app\"} 5".into(),
            "dcrship_records_sent_total{output=\"web\"} 7".into(),
            "dcrship_records_dropped_total{output=\"app\",reason=\"rejected\"} 4".into(),
            "dcrship_requests_total{output=\"app\",status=\"204\"} 3".into(),
            "dcrship_requests_total{output=\"app\",status=\"error\"} 1".into(),
            "dcrship_requests_total{output=\"web\",status=\"503\"} 2".into(),
            "dcrship_request_bytes_total{output=\"app\",encoding=\"gzip\"} 100".into(),
            "dcrship_request_bytes_total{output=\"app\",encoding=\"raw\"} 1000".into(),
            "dcrship_retries_total{output=\"app\",reason=\"throttled\"} 1".into(),
            "dcrship_spool_bytes{output=\"app\"} 4096".into(),
            "dcrship_oldest_unsent_seconds{output=\"app\"} 1.5".into(),
            "dcrship_token_refresh_total{source=\"imds\",result=\"ok\"} 1".into(),
        ];
        assert_eq!(samples(&text), want);
        // Same state, same bytes (but for the process's own gauges, which move between two
        // renders: RSS while other tests run, CPU time).
        let own = |t: &str| -> String {
            t.lines()
                .filter(|l| !l.starts_with("process_"))
                .map(|l| format!("{l}\n"))
                .collect()
        };
        assert_eq!(own(&text), own(&m.render()));
        // Each family's HELP and TYPE come right before its samples.
        let i_type = text
            .find("# TYPE dcrship_records_sent_total counter\n")
            .expect("type");
        let i_sample = text.find("dcrship_records_sent_total{").expect("sample");
        assert!(i_type < i_sample);
    }

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        let m = Metrics::new();
        let h = m.request_rows("app");
        for rows in [1.0, 7.0, 7.0, 60_000.0] {
            h.observe(rows);
        }
        m.request_rows("app").observe(250.0); // the same series
        let text = m.render();
        let rows: Vec<&str> = samples(&text)
            .into_iter()
            .filter(|l| l.starts_with("dcrship_request_rows"))
            .collect();
        let mut want: Vec<String> = Vec::new();
        let cumulative = [1, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 5];
        for (i, c) in cumulative.iter().enumerate() {
            let le = match histogram::ROWS.get(i) {
                Some(b) => format!("{b}"),
                None => "+Inf".into(),
            };
            want.push(format!(
                "dcrship_request_rows_bucket{{output=\"app\",le=\"{le}\"}} {c}"
            ));
        }
        want.push("dcrship_request_rows_sum{output=\"app\"} 60265".into());
        want.push("dcrship_request_rows_count{output=\"app\"} 5".into());
        assert_eq!(rows, want);
        assert!(text.contains("# TYPE dcrship_request_rows histogram\n"));
        // Wrong kind: detached, never rendered.
        m.histogram(Family::RecordsSent, &["app"]).observe(1.0);
        m.counter(Family::RequestRows, &["app"]).inc();
        assert_eq!(m.render().matches("dcrship_request_rows_count").count(), 1);
        assert_eq!(
            m.sum(Family::RequestRows, &[]),
            0,
            "histograms are not summed"
        );
    }

    #[test]
    fn the_rendering_ends_with_the_process_metrics() {
        let text = Metrics::new().render();
        let build = text.find("dcrship_build_info{").expect("build info");
        let process = text.find("# TYPE process_open_fds gauge").expect("process");
        assert!(build < process);
    }

    #[test]
    fn handles_share_one_series() {
        let m = Metrics::new();
        let a = m.records_sent("app");
        let b = m.records_sent("app");
        a.add(2);
        b.inc();
        assert_eq!(a.get(), 3);
        assert_eq!(m.records_sent("app").get(), 3);
        m.records_sent("web").add(4);
        m.records_dropped("app", DropReason::Rejected).add(100); // another family: no effect on sent
        assert_eq!(m.records_sent("web").get(), 4);
        assert_eq!(m.records_sent("app").get(), 3);
        let g = m.spool_bytes("app");
        g.set(10.0);
        m.spool_bytes("app").set(3.0);
        assert_eq!(g.get(), 3.0);
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.records_received("a\\b\"c\nd").inc();
        let text = m.render();
        assert!(
            text.contains("dcrship_records_received_total{input=\"a\\\\b\\\"c\\nd\"} 1\n"),
            "{text}"
        );
        // No raw newline sneaked into the sample line.
        assert_eq!(
            samples(&text)
                .iter()
                .filter(|l| l.starts_with("dcrship_records_received_total"))
                .count(),
            1
        );
    }

    #[test]
    fn mismatched_family_or_labels_give_detached_handles() {
        let m = Metrics::new();
        m.counter(Family::SpoolBytes, &["app"]).add(5);
        m.counter(Family::RecordsSent, &["app", "extra"]).add(5);
        m.gauge(Family::RecordsSent, &["app"]).set(5.0);
        assert_eq!(samples(&m.render()).len(), 1, "only build_info");
    }

    #[test]
    fn special_gauge_values_use_prometheus_spellings() {
        let m = Metrics::new();
        m.oldest_unsent_seconds("a").set(f64::NAN);
        m.oldest_unsent_seconds("b").set(f64::INFINITY);
        m.oldest_unsent_seconds("c").set(f64::NEG_INFINITY);
        m.oldest_unsent_seconds("d").set(0.25);
        let text = m.render();
        assert!(text.contains("{output=\"a\"} NaN\n"));
        assert!(text.contains("{output=\"b\"} +Inf\n"));
        assert!(text.contains("{output=\"c\"} -Inf\n"));
        assert!(text.contains("{output=\"d\"} 0.25\n"));
    }

    #[test]
    fn concurrent_creation_and_increments_lose_nothing() {
        let m = Arc::new(Metrics::new());
        let threads = 8;
        let per = 10_000u64;
        std::thread::scope(|s| {
            for t in 0..threads {
                let m = Arc::clone(&m);
                s.spawn(move || {
                    // Every thread races to create the same series, and one of its own.
                    let shared = m.records_sent("app");
                    let own = m.records_sent(&format!("out{t}"));
                    for i in 0..per {
                        shared.inc();
                        own.inc();
                        if i % 1000 == 0 {
                            // Lookups and renders while others increment.
                            m.requests("app", Some(204)).inc();
                            let _ = m.render();
                        }
                    }
                });
            }
        });
        assert_eq!(m.records_sent("app").get(), threads * per);
        for t in 0..threads {
            assert_eq!(m.records_sent(&format!("out{t}")).get(), per);
        }
        assert_eq!(m.requests("app", Some(204)).get(), threads * per / 1000);
        let text = m.render();
        assert!(text.contains(&format!(
            "dcrship_records_sent_total{{output=\"app\"}} {}\n",
            threads * per
        )));
    }
}
