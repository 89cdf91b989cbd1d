//! Records → encoded rows: each record becomes a row in a
//! [`RowBuf`], or a dead-letter entry with its reason.

use crate::deadletter::{DeadLetter, Refused};
use crate::input::decode::sample;
use crate::input::{Decoder, Record};
use crate::rows::{Origin, RowBuf};

use crate::transform::{RowEncoder, RowNotes};

/// Counts of one call site's records.
#[derive(Debug, Default, Clone, Copy)]
pub struct SinkCounts {
    pub read: u64,
    pub rejected: u64,
    pub notes: RowNotes,
}

/// Turns one input's records into rows.
pub struct RowSink<'a> {
    pub encoder: &'a RowEncoder,
    pub deadletter: &'a DeadLetter,
    /// Input name for dead-letters.
    pub name: &'a str,
    pub source: u32,
    /// The `FilePath` column (already a JSON string), for rows of files: text rows always
    /// carry it, structured rows when the stream declares it.
    pub file_path_json: Option<&'a str>,
    /// RFC 3339 time the records were read.
    pub time_read: &'a str,
    pub out: &'a mut RowBuf,
    pub counts: SinkCounts,
}

impl RowSink<'_> {
    /// Runs one chunk of a stream input through `decoder`; an empty chunk is the input's end.
    /// Stream inputs have no checkpoints, so rows carry offset 0.
    pub fn decode(&mut self, decoder: &mut Decoder, chunk: &[u8]) {
        if chunk.is_empty() {
            decoder.finish(&mut |rec| self.record(rec, 0));
        } else {
            decoder.feed(chunk, &mut |rec| self.record(rec, 0));
        }
    }

    /// One record; `offset` is the input offset just past it (0 when there are no checkpoints).
    pub fn record(&mut self, rec: Record<'_>, offset: u64) {
        self.counts.read += 1;
        let (line, refused) = match rec {
            Record::Line {
                text,
                number,
                truncated,
            } => {
                self.encoder.text(
                    &text,
                    truncated,
                    self.time_read,
                    self.file_path_json,
                    self.out.bytes_mut(),
                    &mut self.counts.notes,
                );
                (number, None)
            }
            Record::Json { text, number } => {
                match self.encoder.json_from(
                    &text,
                    self.file_path_json,
                    self.time_read,
                    self.out.bytes_mut(),
                    &mut self.counts.notes,
                ) {
                    Ok(()) => (number, None),
                    Err(reason) => (number, Some((reason, sample(&text).to_string()))),
                }
            }
            Record::Object { map, number } => {
                self.encoder.object_from(
                    map,
                    self.file_path_json,
                    self.time_read,
                    self.out.bytes_mut(),
                    &mut self.counts.notes,
                );
                (number, None)
            }
            Record::Bad {
                reason,
                raw,
                number,
            } => (number, Some((reason, sample(&raw).to_string()))),
        };
        match refused {
            None => self.out.commit(Origin {
                source: self.source,
                line,
                offset,
            }),
            Some((reason, raw)) => {
                self.out.rollback();
                self.counts.rejected += 1;
                self.deadletter
                    .write(self.name, line, &reason, Refused::Record(&raw));
            }
        }
    }
}

impl crate::input::RecordSink for RowSink<'_> {
    fn record(&mut self, rec: Record<'_>, offset: u64) {
        RowSink::record(self, rec, offset);
    }

    fn truncated(&mut self, n: u64) {
        self.counts.notes.truncated_fields += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn rows_and_refusals_are_kept_apart() {
        let enc = RowEncoder::new("h", None);
        let dl = DeadLetter::open(None).expect("dl");
        let mut buf = RowBuf::default();
        let mut sink = RowSink {
            encoder: &enc,
            deadletter: &dl,
            name: "in",
            source: 3,
            file_path_json: None,
            time_read: "2026-01-01T00:00:00.000000Z",
            out: &mut buf,
            counts: SinkCounts::default(),
        };
        sink.record(
            Record::Json {
                text: Cow::Borrowed(r#"{"a":1}"#),
                number: 1,
            },
            8,
        );
        sink.record(
            Record::Json {
                text: Cow::Borrowed("[1]"),
                number: 2,
            },
            12,
        );
        sink.record(
            Record::Line {
                text: Cow::Borrowed("x"),
                number: 3,
                truncated: false,
            },
            14,
        );
        let counts = sink.counts;
        assert_eq!((counts.read, counts.rejected), (3, 1));
        let rows: Vec<(String, u64, u64)> = buf
            .rows()
            .map(|(r, o)| (String::from_utf8_lossy(r).into_owned(), o.line, o.offset))
            .collect();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].0.contains("\"a\":1") && rows[0].1 == 1 && rows[0].2 == 8);
        assert!(rows[1].0.contains("\"RawData\":\"x\"") && rows[1].2 == 14);
        assert_eq!(dl.count(), 1);
    }
}
