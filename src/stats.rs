//! The summary a one-shot run prints at its end, read from the same counters `/metrics` shows.

use std::time::Duration;

use crate::metrics::{Family, Metrics};

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
    /// bytes read from the inputs
    pub bytes_read: u64,
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
    /// What the counters say so far.
    pub fn from_metrics(m: &Metrics, elapsed: Duration) -> Summary {
        let issue = |name: &str| m.sum(Family::RowIssues, &[("issue", name)]);
        let read = m.sum(Family::RecordsReceived, &[]);
        let sent = m.sum(Family::RecordsSent, &[]);
        let rejected = m.sum(Family::RecordsDropped, &[]);
        Summary {
            rows_read: read,
            rows_sent: sent,
            rows_rejected: rejected,
            rows_unsent: read.saturating_sub(sent + rejected),
            requests: m.sum(Family::Requests, &[]),
            retries: m.sum(Family::Retries, &[]),
            bytes_read: m.sum(Family::InputBytes, &[]),
            bytes_raw: m.sum(Family::RequestBytes, &[("encoding", "raw")]),
            bytes_gzip: m.sum(Family::RequestBytes, &[("encoding", "gzip")]),
            fields_truncated: issue("truncated"),
            time_unparsable: issue("time_unparsable"),
            values_uncoercible: issue("uncoercible"),
            fields_undeclared: issue("undeclared"),
            time_out_of_range: issue("time_out_of_range"),
            parse_failures: m.sum(Family::ParseFailures, &[]),
            multiline_cut: m.sum(Family::MultilineCut, &[]),
            seconds: elapsed.as_secs_f64(),
            exit_code: 0,
            error: None,
            dry_run: false,
        }
    }

    /// One JSON line for stderr under `--log-format json`: the text as `message`, every
    /// number as a field.
    pub fn log_line(&self) -> String {
        let fields = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        let level = if self.exit_code == 0 { "INFO" } else { "WARN" };
        crate::console::json_line(level, &format!("dcrship: {}", self.text()), fields)
    }

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
        let m = Metrics::new();
        m.records_received("in").add(10);
        m.records_sent("out").add(6);
        m.records_dropped("out", crate::metrics::DropReason::Rejected)
            .inc();
        m.request_bytes("out", crate::metrics::Encoding::Raw)
            .add(2_500_000);
        let s = Summary::from_metrics(&m, Duration::from_millis(1500));
        assert_eq!(s.rows_unsent, 3);
        assert_eq!(
            s.text(),
            "10 rows read, 6 sent, 1 rejected, 3 not sent; 0 requests, 0 retries; 2.5 MB raw, 0 B gzip; 1.5s"
        );
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["rows_unsent"], 3);
        let line: serde_json::Value = serde_json::from_str(&s.log_line()).expect("JSON line");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["rows_unsent"], 3);
        assert_eq!(line["message"], format!("dcrship: {}", s.text()));
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_000), "1.0 kB");
    }

    #[test]
    fn one_of_a_thing_is_singular() {
        let m = Metrics::new();
        m.records_received("in").inc();
        m.records_sent("out").inc();
        m.requests("out", Some(204)).inc();
        m.retries("out", "network").inc();
        m.parse_failures("in").inc();
        let text = Summary::from_metrics(&m, Duration::ZERO).text();
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
