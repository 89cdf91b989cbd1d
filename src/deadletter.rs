//! Rows that will never be sent, each with its reason: an NDJSON file when `--dead-letter` is
//! given, and always a log line (the first few individually, then a count) and a counter.
//!
//! Each call is one `write` of whole lines, so nothing waits in a buffer for an exit that may
//! not flush it; a write that fails (disk full) is cut back to the last whole line, so the file
//! stays valid NDJSON, and is logged through [`Trouble`] at most once a minute. The rows of
//! a failed write are lost to the file but not uncounted: callers count every refused row
//! (`dcrship_records_dropped_total`) whether or not its line was written.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crate::rows::Origin;
use crate::transform::time::rfc3339_utc;
use crate::trouble::Trouble;

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
    file: Option<Mutex<File>>,
    path: Option<String>,
    count: AtomicU64,
    /// Refusals whose line could not be written.
    unwritten: AtomicU64,
    trouble: Trouble,
}

impl DeadLetter {
    /// `path` None: rejections are only logged and counted. The file is appended to, so a
    /// re-run does not erase the previous run's rejections.
    pub fn open(path: Option<&Path>) -> Result<Self, DeadLetterError> {
        let file = match path {
            None => None,
            Some(p) => Some(Mutex::new(
                crate::private_fs::options()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| DeadLetterError {
                        path: p.display().to_string(),
                        source,
                    })?,
            )),
        };
        Ok(DeadLetter {
            file,
            path: path.map(|p| p.display().to_string()),
            count: AtomicU64::new(0),
            unwritten: AtomicU64::new(0),
            trouble: Trouble::new("write the dead-letter file"),
        })
    }

    /// Records one refused row or record.
    pub fn write(&self, source: &str, line: u64, reason: &str, what: Refused<'_>) {
        let mut out = Vec::new();
        self.refuse(&mut out, source, line, reason, what);
        self.append(&out, 1);
    }

    /// Logs and counts one refusal, and adds its NDJSON line to `out` when there is a file.
    fn refuse(&self, out: &mut Vec<u8>, source: &str, line: u64, reason: &str, what: Refused<'_>) {
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
        if self.file.is_none() {
            return;
        }
        let line_out = out;
        line_out.extend_from_slice(b"{\"time\":");
        push_json(line_out, &rfc3339_utc(jiff::Timestamp::now()));
        line_out.extend_from_slice(b",\"source\":");
        push_json(line_out, source);
        line_out.extend_from_slice(format!(",\"line\":{line},\"reason\":").as_bytes());
        push_json(line_out, reason);
        match what {
            Refused::Row(row) => {
                line_out.extend_from_slice(b",\"row\":");
                line_out.extend_from_slice(row);
            }
            Refused::Record(raw) => {
                line_out.extend_from_slice(b",\"record\":");
                push_json(line_out, raw);
            }
        }
        line_out.extend_from_slice(b"}\n");
    }

    /// Appends `lines` (holding `rows` refusals) in one write; on failure cuts the file back to
    /// where it was, so a partial line never stays.
    fn append(&self, lines: &[u8], rows: u64) {
        let (Some(file), Some(path)) = (&self.file, &self.path) else {
            return;
        };
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        let before = f.metadata().map(|m| m.len()).ok();
        match f.write_all(lines) {
            Ok(()) => {
                self.trouble.worked(Path::new(path));
            }
            Err(e) => {
                if let Some(len) = before {
                    // Best effort (a device has no length); append mode writes at the end.
                    let _ = f.set_len(len);
                }
                let lost = self.unwritten.fetch_add(rows, Relaxed) + rows;
                self.trouble.failed(
                    Path::new(path),
                    &e,
                    &format!(
                        "{lost} rejected rows are not in it (they are still counted as dropped, \
                         with their reason, and logged); free disk space"
                    ),
                );
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
        let mut out = Vec::new();
        let mut n = 0;
        for (row, origin) in rows {
            let name = source_name(origin.source);
            self.refuse(
                &mut out,
                name.as_ref(),
                origin.line,
                reason,
                Refused::Row(row),
            );
            n += 1;
        }
        self.append(&out, n);
    }

    /// Rows refused so far.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Refusals whose line could not be written to the file.
    pub fn unwritten(&self) -> u64 {
        self.unwritten.load(Relaxed)
    }

    /// True when every refusal reached the file (each is written at once; nothing is buffered).
    pub fn flush(&self) -> bool {
        self.unwritten() == 0
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

    #[test]
    fn rows_that_cannot_be_written_are_counted_and_reported() {
        // Writes to /dev/full fail with ENOSPC, as on a full disk.
        let dl = DeadLetter::open(Some(Path::new("/dev/full"))).expect("open");
        dl.write("a", 1, "bad", Refused::Record("x"));
        let rows: Vec<Vec<u8>> = vec![b"{}".to_vec(), b"{}".to_vec()];
        let origin = Origin {
            source: 0,
            line: 2,
            offset: 0,
        };
        dl.write_rows(rows.iter().map(|r| (&r[..], origin)), "HTTP 400", |_| "a");
        assert_eq!(dl.count(), 3);
        assert_eq!(dl.unwritten(), 3);
        assert!(!dl.flush());
    }
}
