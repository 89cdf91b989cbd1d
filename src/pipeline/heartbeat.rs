//! Heartbeat rows (`heartbeat_interval`): the agent sends one row to an output's stream at
//! start and then every interval, through the same batcher, spool and policy as any row, so
//! the workspace itself shows which agents stopped (a KQL query in the README), even when
//! nothing scrapes their metrics. The row has the columns of the text-log stream Azure Monitor
//! Agent uses, `TimeGenerated`, `Computer` and `RawData`, so any stream that declares them
//! takes it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::stop::Stop;
use super::Rows;
use crate::rows::{Origin, RowBuf};
use crate::transform::row::json_string;

/// What [`run`] needs.
pub struct Heartbeat {
    pub output: String,
    pub every: Duration,
    pub rows: mpsc::Sender<Rows>,
    /// The source the rows are counted under (for dead-letters: `<heartbeat>`).
    pub source: u32,
    pub computer: String,
    /// Rows delivered or refused since the agent started, over every output.
    pub done: Arc<AtomicU64>,
    pub started: Instant,
    pub stop: Arc<Stop>,
}

/// The RawData of a heartbeat row: starts with `dcrship heartbeat`, which the README's KQL
/// looks for.
pub fn raw_data(output: &str, up: Duration, delivered: u64) -> String {
    format!(
        "dcrship heartbeat: version {}, output {output}, up {}s, {delivered} rows delivered",
        env!("CARGO_PKG_VERSION"),
        up.as_secs()
    )
}

/// One heartbeat row, as the batcher takes it.
pub fn row(time_generated: &str, computer: &str, raw: &str) -> String {
    format!(
        "{{\"TimeGenerated\":{},\"Computer\":{},\"RawData\":{}}}",
        json_string(time_generated),
        json_string(computer),
        json_string(raw)
    )
}

/// Sends a heartbeat row now and every interval until the inputs stop.
pub async fn run(hb: Heartbeat) {
    let mut tick = tokio::time::interval(hb.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut line = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = hb.stop.inputs.cancelled() => return,
        }
        line += 1;
        let time = crate::transform::time::rfc3339_utc(jiff::Timestamp::now());
        let raw = raw_data(&hb.output, hb.started.elapsed(), hb.done.load(Relaxed));
        let mut rows = RowBuf::with_capacity(256);
        rows.bytes_mut()
            .extend_from_slice(row(&time, &hb.computer, &raw).as_bytes());
        rows.commit(Origin {
            source: hb.source,
            line,
            offset: 0,
        });
        tokio::select! {
            sent = hb.rows.send(Rows { rows }) => if sent.is_err() { return },
            _ = hb.stop.inputs.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_row_is_one_json_object_with_the_text_log_columns() {
        let raw = raw_data("app \"main\"", Duration::from_secs(3725), 42);
        assert!(raw.starts_with("dcrship heartbeat: version "), "{raw}");
        assert!(raw.ends_with("output app \"main\", up 3725s, 42 rows delivered"));
        let row = row("2026-01-02T03:04:05.000Z", "web-01", &raw);
        let v: serde_json::Value = serde_json::from_str(&row).expect("JSON");
        assert_eq!(v["TimeGenerated"], "2026-01-02T03:04:05.000Z");
        assert_eq!(v["Computer"], "web-01");
        assert_eq!(v["RawData"], raw.as_str());
        assert_eq!(v.as_object().map(|o| o.len()), Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn one_row_at_start_then_one_per_interval_until_the_inputs_stop() {
        let (tx, mut rx) = mpsc::channel(8);
        let stop = Arc::new(Stop::default());
        let task = tokio::spawn(run(Heartbeat {
            output: "app".into(),
            every: Duration::from_secs(300),
            rows: tx,
            source: 7,
            computer: "web-01".into(),
            done: Arc::new(AtomicU64::new(5)),
            started: Instant::now(),
            stop: stop.clone(),
        }));
        let first = rx.recv().await.expect("at start");
        assert_eq!(first.rows.len(), 1);
        let (bytes, origin) = first.rows.rows().next().expect("row");
        assert_eq!((origin.source, origin.line), (7, 1));
        let v: serde_json::Value = serde_json::from_slice(bytes).expect("JSON");
        assert!(v["RawData"]
            .as_str()
            .is_some_and(|r| r.contains("up 0s, 5 rows")));
        let t = Instant::now();
        let second = rx.recv().await.expect("after the interval");
        assert_eq!(t.elapsed(), Duration::from_secs(300));
        assert_eq!(second.rows.rows().next().map(|(_, o)| o.line), Some(2));
        stop.inputs.cancel();
        task.await.expect("ends");
        assert!(rx.recv().await.is_none(), "the sender is dropped");
    }
}
