//! Records → DCR stream rows (serialized JSON objects).
//!
//! [`time`] reads event times and writes `TimeGenerated` as RFC 3339 UTC; [`row`] builds the row
//! for a text line (`TimeGenerated`, `RawData`, `Computer`, `FilePath`) or a JSON/CSV object
//! (its fields, with `TimeGenerated` resolved), truncating values over Azure's 64 KiB field limit
//! on a character boundary.

pub mod raw_object;
pub mod row;
pub mod sink;
pub mod time;

pub use row::{RowEncoder, RowNotes};
