//! `type = "journald"`: the systemd journal, read through `journalctl -o json --follow` (as
//! Vector does: no libsystemd to link, and journalctl knows every journal file format).
//!
//! [`options`] holds what an input reads (units, priority, matches, where it starts) and the
//! checks of those keys; [`command`] builds journalctl's command lines; [`reader`] runs it,
//! splits its output in bounded memory and restarts it with backoff; [`entry`] decodes one
//! JSON entry (byte arrays, repeated fields); [`filter`] applies `exclude_units`; [`rows`]
//! turns an entry into the columns of Azure's `Syslog` table (or every field, `format = "raw"`);
//! [`cursor`] maps the pipeline's row numbers back to journal cursors.
//!
//! Checkpoints: every row carries a number (its "offset"); once the rows up to a number are
//! safe in the spool, the cursor of that entry is saved in `checkpoints.json` (section
//! `journals`, by input name), and the next start follows with `--after-cursor` it — as file
//! offsets move only over rows that are safe.

pub mod command;
pub mod cursor;
pub mod entry;
pub mod filter;
pub mod options;
pub mod reader;
pub mod rows;

pub use options::{JournalOptions, Priority, RowShape};
pub use reader::{JournalBatch, JournalError, JournalReader, Read};
