//! `send`'s progress bar on stderr, redrawn from the counters: with the inputs' size known
//! (files, not stdin) the share read, rows/s, MB/s and the time left, like azcopy and rclone;
//! else a spinner with the rates. Lines written to stderr meanwhile go above it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::stats::{counted, Summary};

/// The bar, while it is shown.
pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<indicatif::ProgressBar>,
}

/// How far back the rates look: long enough to be steady, short enough to follow a stall.
const RATE_WINDOW: Duration = Duration::from_secs(5);

impl Progress {
    /// Shows the bar when `on`; `total`: the bytes the inputs hold, when known.
    pub fn start(on: bool, metrics: Arc<Metrics>, total: Option<u64>) -> Self {
        if !on {
            return Progress {
                task: None,
                bar: None,
            };
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            total,
            indicatif::ProgressDrawTarget::stderr(),
        );
        let template = match (total.is_some(), crate::console::stderr_color()) {
            (true, true) => "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {msg}",
            (true, false) => "{spinner} [{elapsed_precise}] {bar:30} {msg}",
            (false, _) => "{spinner} [{elapsed_precise}] {msg}",
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        crate::console::set_progress(Some(bar.clone()));
        let b = bar.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            let mut window = std::collections::VecDeque::new();
            loop {
                tick.tick().await;
                let s = Summary::from_metrics(&metrics, Duration::ZERO);
                let now = started.elapsed();
                window.push_back(Sample {
                    at: now,
                    rows: s.rows_sent,
                    bytes: s.bytes_read,
                });
                while window.len() > 2 && window[0].at + RATE_WINDOW < now {
                    window.pop_front();
                }
                if total.is_some() {
                    b.set_position(s.bytes_read);
                }
                b.set_message(progress_message(&s, total, rates(&window)));
                b.tick();
            }
        });
        Progress {
            task: Some(task),
            bar: Some(bar),
        }
    }

    pub fn finish(self) {
        if let Some(t) = self.task {
            t.abort();
        }
        if let Some(b) = self.bar {
            crate::console::set_progress(None);
            b.finish_and_clear();
        }
    }
}

/// The counters at one moment of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    at: Duration,
    rows: u64,
    bytes: u64,
}

/// Rows sent and bytes read a second, between the oldest and newest sample.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rates {
    rows: f64,
    bytes: f64,
}

fn rates(window: &std::collections::VecDeque<Sample>) -> Rates {
    let (Some(first), Some(last)) = (window.front(), window.back()) else {
        return Rates {
            rows: 0.0,
            bytes: 0.0,
        };
    };
    let secs = (last.at.saturating_sub(first.at)).as_secs_f64();
    if secs <= 0.0 {
        return Rates {
            rows: 0.0,
            bytes: 0.0,
        };
    }
    Rates {
        rows: last.rows.saturating_sub(first.rows) as f64 / secs,
        bytes: last.bytes.saturating_sub(first.bytes) as f64 / secs,
    }
}

/// `42% · 12345 rows/s · 3.4 MB/s · ETA 1m20s · 5000 rows sent, 0 rejected, 3 requests, 0
/// retries`; without a known total, no percentage and no ETA.
fn progress_message(s: &Summary, total: Option<u64>, r: Rates) -> String {
    let mut parts = Vec::new();
    if let Some(total) = total {
        let pct = if total == 0 {
            100.0
        } else {
            (s.bytes_read as f64 * 100.0 / total as f64).min(100.0)
        };
        parts.push(format!("{pct:.0}%"));
    }
    parts.push(format!("{:.0} rows/s", r.rows));
    parts.push(format!("{:.1} MB/s", r.bytes / 1e6));
    if let Some(total) = total {
        let left = total.saturating_sub(s.bytes_read);
        let eta = match (left, r.bytes > 0.0) {
            (0, _) => "ETA 0s".to_string(),
            (_, true) => format!(
                "ETA {}",
                crate::duration::format_duration(Duration::from_secs_f64(
                    (left as f64 / r.bytes).ceil().min(1e9)
                ))
            ),
            (_, false) => "ETA ?".to_string(),
        };
        parts.push(eta);
    }
    parts.push(format!(
        "{} sent, {} rejected, {}, {}",
        counted(s.rows_sent, "row", "rows"),
        s.rows_rejected,
        counted(s.requests, "request", "requests"),
        counted(s.retries, "retry", "retries")
    ));
    parts.join(" · ")
}

/// The bytes the upload will read, when every input is a regular file (stdin, `-` or a pipe:
/// unknown).
pub fn input_size(plan: &crate::pipeline::plan::Plan) -> Option<u64> {
    use crate::pipeline::plan::Source;
    let mut total = 0u64;
    for input in plan.inputs.values() {
        let Source::Once(paths) = &input.source else {
            return None;
        };
        for p in paths {
            let meta = std::fs::metadata(p).ok().filter(|m| m.is_file())?;
            total = total.saturating_add(meta.len());
        }
    }
    (!plan.inputs.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(read: u64, sent: u64) -> Summary {
        let m = Metrics::new();
        m.input_bytes("in").add(read);
        m.records_sent("out").add(sent);
        Summary::from_metrics(&m, Duration::ZERO)
    }

    #[test]
    fn rates_are_over_the_window() {
        let at = Duration::from_millis;
        let w: std::collections::VecDeque<Sample> = [
            Sample {
                at: at(1000),
                rows: 100,
                bytes: 1_000,
            },
            Sample {
                at: at(2000),
                rows: 300,
                bytes: 3_000,
            },
            Sample {
                at: at(3000),
                rows: 500,
                bytes: 5_000_000,
            },
        ]
        .into();
        assert_eq!(
            rates(&w),
            Rates {
                rows: 200.0,
                bytes: 2_499_500.0
            }
        );
        let one: std::collections::VecDeque<Sample> = [w[0]].into();
        assert_eq!(
            rates(&one),
            Rates {
                rows: 0.0,
                bytes: 0.0
            }
        );
        assert_eq!(
            rates(&Default::default()),
            Rates {
                rows: 0.0,
                bytes: 0.0
            }
        );
    }

    #[test]
    fn the_message_shows_percent_rates_and_time_left_when_the_size_is_known() {
        let r = Rates {
            rows: 12_345.4,
            bytes: 2_500_000.0,
        };
        let cases = [
            (
                summary(25_000_000, 5000),
                Some(100_000_000),
                r,
                "25% · 12345 rows/s · 2.5 MB/s · ETA 30s · 5000 rows sent, 0 rejected, 0 requests, 0 retries",
            ),
            (
                summary(100_000_000, 1),
                Some(100_000_000),
                r,
                "100% · 12345 rows/s · 2.5 MB/s · ETA 0s · 1 row sent, 0 rejected, 0 requests, 0 retries",
            ),
            (
                summary(10, 0),
                Some(100),
                Rates { rows: 0.0, bytes: 0.0 },
                "10% · 0 rows/s · 0.0 MB/s · ETA ? · 0 rows sent, 0 rejected, 0 requests, 0 retries",
            ),
            (
                summary(0, 0),
                Some(0),
                Rates { rows: 0.0, bytes: 0.0 },
                "100% · 0 rows/s · 0.0 MB/s · ETA 0s · 0 rows sent, 0 rejected, 0 requests, 0 retries",
            ),
            (
                summary(7_000_000, 70),
                None,
                r,
                "12345 rows/s · 2.5 MB/s · 70 rows sent, 0 rejected, 0 requests, 0 retries",
            ),
        ];
        for (s, total, rates, want) in cases {
            assert_eq!(progress_message(&s, total, rates), want);
        }
    }

    #[test]
    fn the_input_size_is_known_only_for_regular_files() {
        use crate::pipeline::plan::{InputPlan, Plan, Source};
        let dir = tempfile::tempdir().expect("tmp");
        let a = dir.path().join("a.log");
        let b = dir.path().join("b.log");
        std::fs::write(&a, "x".repeat(100)).expect("a");
        std::fs::write(&b, "y".repeat(23)).expect("b");
        let plan_of = |source: Source| {
            let mut plan = Plan::default();
            plan.inputs.insert(
                "in".into(),
                InputPlan {
                    source,
                    format: crate::input::Format::Text,
                    rules: None,
                    shaping: Default::default(),
                    output: "out".into(),
                    container: None,
                },
            );
            plan
        };
        assert_eq!(
            input_size(&plan_of(Source::Once(vec![a.clone(), b.clone()]))),
            Some(123)
        );
        assert_eq!(
            input_size(&plan_of(Source::Once(vec![a.clone(), "-".into()]))),
            None
        );
        assert_eq!(
            input_size(&plan_of(Source::Once(vec![dir.path().join("gone")]))),
            None
        );
        assert_eq!(input_size(&plan_of(Source::Stdin)), None);
        assert_eq!(input_size(&Plan::default()), None);
    }
}
