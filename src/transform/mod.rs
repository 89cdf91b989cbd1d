//! Records → DCR stream rows (serialized JSON objects).
//!
//! [`time`] reads event times (`time_format`, `timezone`) and writes `TimeGenerated` as RFC 3339
//! UTC; [`row`] builds the row for a text line (`TimeGenerated`, `RawData`, `Computer`,
//! `FilePath`) or a JSON/CSV/parsed object; [`fields`] applies an input's `drop`, `rename` and
//! static `fields`; [`columns`] holds the DCR column types, the coercion of values to them and
//! Azure's name rules; [`schema`] reads a stream's columns from an exported DCR; [`raw_object`]
//! reads a JSON line as borrowed (key, raw value) pairs, through [`json_scan`] when it can. Values over
//! Azure's 64 KiB field limit are truncated on a character boundary.

pub mod columns;
pub mod fields;
pub mod json_scan;
pub mod raw_object;
pub mod row;
pub mod schema;
pub mod time;

pub use row::{RowEncoder, RowNotes, Shaping};

use crate::metrics::{Counter, Metrics};

/// The `dcrship_row_issues_total{input,issue}` series of one input.
#[derive(Debug, Clone)]
pub struct IssueCounters {
    truncated: Counter,
    uncoercible: Counter,
    undeclared: Counter,
    time_unparsable: Counter,
    time_out_of_range: Counter,
}

impl IssueCounters {
    pub fn new(metrics: &Metrics, input: &str) -> Self {
        IssueCounters {
            truncated: metrics.row_issues(input, "truncated"),
            uncoercible: metrics.row_issues(input, "uncoercible"),
            undeclared: metrics.row_issues(input, "undeclared"),
            time_unparsable: metrics.row_issues(input, "time_unparsable"),
            time_out_of_range: metrics.row_issues(input, "time_out_of_range"),
        }
    }

    /// Values a parser cut at the line cap (a text row counts its own in [`RowNotes`]).
    pub fn add_truncated(&self, n: u64) {
        if n > 0 {
            self.truncated.add(n);
        }
    }

    pub fn add(&self, n: &RowNotes) {
        for (c, v) in [
            (&self.truncated, n.truncated_fields),
            (&self.uncoercible, n.uncoercible),
            (&self.undeclared, n.undeclared),
            (&self.time_unparsable, n.time_unparsable),
            (&self.time_out_of_range, n.time_out_of_range),
        ] {
            if v > 0 {
                c.add(v);
            }
        }
    }
}
