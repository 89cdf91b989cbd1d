//! What the Logs Ingestion API fixes, in one place: the size of a request and of a field, the
//! documented limits per DCR (see shared reference/azure-api.md), and the shapes of a DCR id and
//! a stream name. Every stage that must stay
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

/// Checks a DCR immutable id (`dcr-` and 32 hex digits); the message says where to find it.
pub fn validate_dcr_id(id: &str) -> Result<(), String> {
    let well_formed = id
        .strip_prefix("dcr-")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if well_formed {
        return Ok(());
    }
    let what = if id.starts_with("/subscriptions/") {
        " (that is the DCR's resource id)"
    } else {
        ""
    };
    Err(format!(
        "expected dcr- followed by 32 hex digits, found {id:?}{what}; hint: use the DCR \
         *immutable id*, shown on the DCR's overview page"
    ))
}

/// Checks a stream name: the API only knows `Custom-…` and `Microsoft-…` streams.
pub fn validate_stream(stream: &str) -> Result<(), String> {
    let named = ["Custom-", "Microsoft-"]
        .iter()
        .any(|prefix| stream.len() > prefix.len() && stream.starts_with(prefix));
    if named {
        return Ok(());
    }
    let hint = if stream.ends_with("_CL") && !stream.contains('-') {
        format!("did you mean \"Custom-{stream}\"? (the stream, not the table)")
    } else {
        "use a stream declared in the DCR's streamDeclarations, like Custom-MyApp_CL".to_string()
    };
    Err(format!(
        "expected a stream name starting with Custom- or Microsoft-, found {stream:?}; {hint}"
    ))
}
