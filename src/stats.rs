//! Counters of one run, and the summary printed at its end.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Counters shared by every stage. Relaxed atomics: each is a plain tally.
#[derive(Debug, Default)]
pub struct Stats {
    pub rows_read: AtomicU64,
    pub rows_sent: AtomicU64,
    pub rows_rejected: AtomicU64,
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub bytes_raw: AtomicU64,
    pub bytes_gzip: AtomicU64,
    pub fields_truncated: AtomicU64,
    pub time_unparsable: AtomicU64,
    pub values_uncoercible: AtomicU64,
    pub fields_undeclared: AtomicU64,
    pub time_out_of_range: AtomicU64,
    pub parse_failures: AtomicU64,
    pub multiline_cut: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn summary(&self, elapsed: Duration) -> Summary {
        let read = self.rows_read.load(Relaxed);
        let sent = self.rows_sent.load(Relaxed);
        let rejected = self.rows_rejected.load(Relaxed);
        Summary {
            rows_read: read,
            rows_sent: sent,
            rows_rejected: rejected,
            rows_unsent: read.saturating_sub(sent + rejected),
            requests: self.requests.load(Relaxed),
            retries: self.retries.load(Relaxed),
            bytes_raw: self.bytes_raw.load(Relaxed),
            bytes_gzip: self.bytes_gzip.load(Relaxed),
            fields_truncated: self.fields_truncated.load(Relaxed),
            time_unparsable: self.time_unparsable.load(Relaxed),
            values_uncoercible: self.values_uncoercible.load(Relaxed),
            fields_undeclared: self.fields_undeclared.load(Relaxed),
            time_out_of_range: self.time_out_of_range.load(Relaxed),
            parse_failures: self.parse_failures.load(Relaxed),
            multiline_cut: self.multiline_cut.load(Relaxed),
            seconds: elapsed.as_secs_f64(),
            exit_code: 0,
            error: None,
            dry_run: false,
        }
    }
}

/// What a run did. `--summary json` prints it as one JSON object on stdout.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    /// rows read from the inputs (records; blank lines are not rows)
    pub rows_read: u64,
    /// rows the service accepted (in a dry run: rows that would be sent)
    pub rows_sent: u64,
    /// rows refused (unparsable, too large, or refused by the service), each dead-lettered
    pub rows_rejected: u64,
    /// rows neither accepted nor refused because delivery stopped
    pub rows_unsent: u64,
    pub requests: u64,
    pub retries: u64,
    /// bytes of accepted request bodies before gzip
    pub bytes_raw: u64,
    /// bytes of accepted request bodies after gzip
    pub bytes_gzip: u64,
    pub fields_truncated: u64,
    pub time_unparsable: u64,
    /// values that could not be made their declared column type, sent as null
    pub values_uncoercible: u64,
    /// fields removed because the stream does not declare them
    pub fields_undeclared: u64,
    /// rows whose TimeGenerated Azure will replace (over 2 days old or 1 day ahead)
    pub time_out_of_range: u64,
    /// lines (or multiline events) their parser did not recognise: sent as RawData rows, or
    /// rejected with `--on-mismatch dead-letter`
    pub parse_failures: u64,
    /// multiline events emitted early at their line or byte cap
    pub multiline_cut: u64,
    pub seconds: f64,
    pub exit_code: i32,
    pub error: Option<String>,
    pub dry_run: bool,
}

impl Summary {
    /// One line for stderr.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} read, {} {}, {} rejected",
            counted(self.rows_read, "row", "rows"),
            self.rows_sent,
            if self.dry_run {
                "would be sent"
            } else {
                "sent"
            },
            self.rows_rejected
        );
        if self.rows_unsent > 0 {
            s.push_str(&format!(", {} not sent", self.rows_unsent));
        }
        s.push_str(&format!(
            "; {}, {}; {} raw, {} gzip; {:.1}s",
            counted(self.requests, "request", "requests"),
            counted(self.retries, "retry", "retries"),
            bytes(self.bytes_raw),
            bytes(self.bytes_gzip),
            self.seconds
        ));
        if self.fields_truncated > 0 {
            s.push_str(&format!(
                "; {} cut to 64 KiB",
                counted(self.fields_truncated, "value", "values")
            ));
        }
        if self.time_unparsable > 0 {
            s.push_str(&format!(
                "; {} without a readable time field got the time read",
                counted(self.time_unparsable, "row", "rows")
            ));
        }
        if self.values_uncoercible > 0 {
            s.push_str(&format!(
                "; {} not of their column's type sent as null",
                counted(self.values_uncoercible, "value", "values")
            ));
        }
        if self.fields_undeclared > 0 {
            s.push_str(&format!(
                "; {} removed",
                counted(
                    self.fields_undeclared,
                    "undeclared field",
                    "undeclared fields"
                )
            ));
        }
        if self.time_out_of_range > 0 {
            s.push_str(&format!(
                "; {} with a TimeGenerated Azure will replace (over 2 days old or 1 day ahead)",
                counted(self.time_out_of_range, "row", "rows")
            ));
        }
        if self.parse_failures > 0 {
            s.push_str(&format!(
                "; {} not match the format",
                counted(self.parse_failures, "line did", "lines did")
            ));
        }
        if self.multiline_cut > 0 {
            s.push_str(&format!(
                "; {} cut at their line or byte cap",
                counted(self.multiline_cut, "multiline event", "multiline events")
            ));
        }
        s
    }
}

/// `1.2 MB` style sizes (decimal, as the API's limits are written).
/// `n` with the word for one or for many: "1 row", "2 rows".
pub fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_unsent_and_reads_well() {
        let st = Stats::default();
        Stats::add(&st.rows_read, 10);
        Stats::add(&st.rows_sent, 6);
        Stats::add(&st.rows_rejected, 1);
        Stats::add(&st.bytes_raw, 2_500_000);
        let s = st.summary(Duration::from_millis(1500));
        assert_eq!(s.rows_unsent, 3);
        assert_eq!(
            s.text(),
            "10 rows read, 6 sent, 1 rejected, 3 not sent; 0 requests, 0 retries; 2.5 MB raw, 0 B gzip; 1.5s"
        );
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["rows_unsent"], 3);
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_000), "1.0 kB");
    }

    #[test]
    fn one_of_a_thing_is_singular() {
        let st = Stats::default();
        Stats::add(&st.rows_read, 1);
        Stats::add(&st.rows_sent, 1);
        Stats::add(&st.requests, 1);
        Stats::add(&st.retries, 1);
        Stats::add(&st.parse_failures, 1);
        let text = st.summary(Duration::ZERO).text();
        assert!(
            text.starts_with("1 row read, 1 sent, 0 rejected; 1 request, 1 retry;"),
            "{text}"
        );
        assert!(
            text.ends_with("; 1 line did not match the format"),
            "{text}"
        );
        assert_eq!(counted(0, "row", "rows"), "0 rows");
    }
}
