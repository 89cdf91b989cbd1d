//! Rows that will never be sent, each with its reason: an NDJSON file when `--dead-letter` is
//! given, and always a log line (the first few individually, then a count) and a counter.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crate::batch::Origin;
use crate::transform::time::rfc3339_utc;

/// Rejections logged one by one before the log only counts them.
const LOG_EACH: u64 = 20;

#[derive(Debug, thiserror::Error)]
#[error("dead-letter file {path}: {source}")]
pub struct DeadLetterError {
    path: String,
    source: std::io::Error,
}

/// What was refused: a parsed row (JSON text) or a raw record that never became one.
#[derive(Debug, Clone, Copy)]
pub enum Refused<'a> {
    Row(&'a [u8]),
    Record(&'a str),
}

/// The dead-letter sink. Writes are rare (only rejections), so one mutex is enough.
#[derive(Debug)]
pub struct DeadLetter {
    file: Option<Mutex<BufWriter<File>>>,
    path: Option<String>,
    count: AtomicU64,
    write_failed: AtomicU64,
}

impl DeadLetter {
    /// `path` None: rejections are only logged and counted. The file is appended to, so a
    /// re-run does not erase the previous run's rejections.
    pub fn open(path: Option<&Path>) -> Result<Self, DeadLetterError> {
        let file = match path {
            None => None,
            Some(p) => Some(Mutex::new(BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| DeadLetterError {
                        path: p.display().to_string(),
                        source,
                    })?,
            ))),
        };
        Ok(DeadLetter {
            file,
            path: path.map(|p| p.display().to_string()),
            count: AtomicU64::new(0),
            write_failed: AtomicU64::new(0),
        })
    }

    /// Records one refused row or record.
    pub fn write(&self, source: &str, line: u64, reason: &str, what: Refused<'_>) {
        let n = self.count.fetch_add(1, Relaxed) + 1;
        if n <= LOG_EACH {
            tracing::warn!(source, line, reason, "row rejected");
        } else if n == LOG_EACH + 1 {
            tracing::warn!(
                "more rows rejected; not logging each one (see the summary{})",
                self.path
                    .as_deref()
                    .map(|p| format!(" and {p}"))
                    .unwrap_or_default()
            );
        }
        let Some(file) = &self.file else { return };
        let mut line_out = Vec::with_capacity(256);
        line_out.extend_from_slice(b"{\"time\":");
        push_json(&mut line_out, &rfc3339_utc(jiff::Timestamp::now()));
        line_out.extend_from_slice(b",\"source\":");
        push_json(&mut line_out, source);
        line_out.extend_from_slice(format!(",\"line\":{line},\"reason\":").as_bytes());
        push_json(&mut line_out, reason);
        match what {
            Refused::Row(row) => {
                line_out.extend_from_slice(b",\"row\":");
                line_out.extend_from_slice(row);
            }
            Refused::Record(raw) => {
                line_out.extend_from_slice(b",\"record\":");
                push_json(&mut line_out, raw);
            }
        }
        line_out.extend_from_slice(b"}\n");
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&line_out) {
            if self.write_failed.fetch_add(1, Relaxed) == 0 {
                tracing::error!(error = %e, "cannot write the dead-letter file");
            }
        }
    }

    /// Records refused rows, each under the name of the source it came from.
    pub fn write_rows<'a, N: AsRef<str>>(
        &self,
        rows: impl Iterator<Item = (&'a [u8], Origin)>,
        reason: &str,
        source_name: impl Fn(u32) -> N,
    ) {
        for (row, origin) in rows {
            let name = source_name(origin.source);
            self.write(name.as_ref(), origin.line, reason, Refused::Row(row));
        }
    }

    /// Rows refused so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Flushes the file; true when every write reached it.
    pub fn flush(&self) -> bool {
        if let Some(file) = &self.file {
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            if f.flush().is_err() {
                return false;
            }
        }
        self.write_failed.load(Relaxed) == 0
    }
}

fn push_json(out: &mut Vec<u8>, s: &str) {
    // Serializing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_json_object_per_refusal() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("dl.ndjson");
        let dl = DeadLetter::open(Some(&path)).expect("open");
        dl.write(
            "a.ndjson",
            3,
            "invalid JSON",
            Refused::Record("{oops \"q\""),
        );
        dl.write(
            "b.log",
            9,
            "HTTP 400: bad",
            Refused::Row(br#"{"RawData":"x"}"#),
        );
        assert!(dl.flush());
        assert_eq!(dl.count(), 2);
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines[0]["record"], "{oops \"q\"");
        assert_eq!(lines[0]["line"], 3);
        assert_eq!(lines[1]["row"]["RawData"], "x");
        assert_eq!(lines[1]["reason"], "HTTP 400: bad");
        assert_eq!(lines[1]["source"], "b.log");
    }
}
