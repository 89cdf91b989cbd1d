//! What the Logs Ingestion API fixes, in one place: the size of a request and of a field, and
//! the documented limits per DCR (see shared reference/azure-api.md). Every stage that must stay
//! within them reads them from here.

use std::ops::RangeInclusive;

/// The service refuses a request body over 1 MiB (413 `ContentLengthLimitExceeded`).
pub const MAX_BODY_BYTES: usize = 1_048_576;
/// dcrship's default cap on one body, raw and gzip: a little under [`MAX_BODY_BYTES`].
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1_000_000;
/// Allowed caps: a body must hold at least one ordinary row, and never exceed the API's limit.
pub const MAX_REQUEST_BYTES_RANGE: RangeInclusive<usize> = 1024..=MAX_BODY_BYTES;
/// Azure truncates field values over 64 KB; dcrship cuts them first, on a character boundary,
/// and counts it, so the row that lands is the row it reported.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;
/// Requests a minute per DCR.
pub const REQUESTS_PER_MINUTE: u32 = 12_000;
/// Uncompressed bytes a minute per DCR (2 GB).
pub const BYTES_PER_MINUTE: u64 = 2_000_000_000;
