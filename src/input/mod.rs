//! Reading records out of byte streams, in bounded memory.
//!
//! [`lines`] splits on `\n` with a cap on line length; [`json_stream`] frames top-level JSON
//! values (flattening arrays) with a cap on record size; [`csv`] reads RFC 4180 records on top of
//! lines; [`format`](mod@format) picks a format from a file name or the first bytes; [`decode`] puts them
//! together behind one type the commands feed chunks to, which [`chunks`] reads (a file straight
//! into the caller's buffers, read ahead). [`parse`] turns text lines into columns
//! (`regex`, `logfmt`, `syslog`), after [`multiline`] has joined the lines of one event.
//!
//! For the agent: [`file`](mod@file) tails globs of files (stat poll as the truth, notify to wake it,
//! rename rotation, copytruncate, deleted files), [`fingerprint`] tells a file from a reused inode,
//! and [`checkpoint`] stores safe offsets atomically in the state directory. [`container`] reads
//! container runtimes' files (CRI, Docker json-file): envelope, joined parts, pod columns. [`journald`] reads
//! the systemd journal through journalctl, from a saved cursor.

pub mod checkpoint;
pub mod chunks;
pub mod container;
pub mod csv;
pub mod decode;
pub mod file;
pub mod fingerprint;
pub mod format;
pub mod journald;
pub mod json_stream;
pub mod lines;
pub mod multiline;
pub mod parse;

pub use decode::{Decoder, Record};

/// Where decoded records go: the pipeline's row builder, for stages that emit records as they
/// read (a container runtime's joined messages).
pub trait RecordSink {
    /// One record; `offset` is the input offset just past it (0 when there are no checkpoints).
    fn record(&mut self, rec: Record<'_>, offset: u64);
    /// `n` values were cut at the field limit on the way.
    fn truncated(&mut self, n: u64);
}
pub use format::Format;
