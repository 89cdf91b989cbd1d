//! Rows → request bodies within the API's byte cap.
//!
//! A request body is a JSON **array** of row objects (a bare object is accepted with 204 and then
//! dropped by the service, so it is never sent). The cap (`max_request_bytes`, default 1,000,000)
//! holds for the body both before and after gzip. [`Batcher`] packs serialized rows in order until
//! the next one would cross the cap; [`seal`] gzips a batch and, in the unlikely case the gzip
//! output is still over the cap, splits it until every part fits. A row too big to fit even alone
//! is never sent: the caller dead-letters it.
//!
//! Everything here is pure (no I/O, no clock) and property-tested.

use crate::rows::Origin;

/// `[outputs.*] compression_level`: gzip level; 3 is most of the ratio for a fraction of the CPU.
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 3;

/// An uncompressed request body, `[row,row,...]`, that remembers where each row ends so it can
/// be split (413) or bisected (400) without re-encoding the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBatch {
    body: Vec<u8>,
    /// `ends[i]` is the offset just past row `i`; row `i` starts at `ends[i-1] + 1` (the `[` or
    /// `,` before it), row 0 at 1.
    ends: Vec<u32>,
    origins: Vec<Origin>,
}

impl RawBatch {
    fn with_capacity(bytes: usize) -> Self {
        let mut body = Vec::with_capacity(bytes);
        body.push(b'[');
        RawBatch {
            body,
            ends: Vec::new(),
            origins: Vec::new(),
        }
    }

    /// Builds a batch from rows (each a serialized JSON object).
    #[cfg(test)]
    pub fn from_rows<'a>(rows: impl IntoIterator<Item = (&'a [u8], Origin)>) -> Self {
        let mut b = RawBatch::with_capacity(1024);
        for (row, origin) in rows {
            b.append(row, origin);
        }
        b.close();
        b
    }

    /// A batch around a closed body `[row,row,...]` whose row `i` ends at `ends[i]` (as
    /// [`RawBatch::row`] reads them), every row from `origin`: a body read back from the spool,
    /// without copying it. `None` if `ends` does not fit the body.
    pub fn from_body(body: Vec<u8>, ends: Vec<u32>, origin: Origin) -> Option<Self> {
        let origins = vec![origin; ends.len()];
        Self::from_parts(body, ends, origins)
    }

    /// A batch around a closed body whose row `i` ends at `ends[i]` and came from `origins[i]`;
    /// `None` if they do not fit the body.
    fn from_parts(body: Vec<u8>, ends: Vec<u32>, origins: Vec<Origin>) -> Option<Self> {
        let fits = body.first() == Some(&b'[')
            && body.last() == Some(&b']')
            && origins.len() == ends.len()
            && ends.windows(2).all(|w| w[0] < w[1])
            && ends
                .last()
                .map_or(body.len() == 2, |&e| e as usize + 1 == body.len());
        fits.then_some(RawBatch {
            body,
            ends,
            origins,
        })
    }

    fn append(&mut self, row: &[u8], origin: Origin) {
        if !self.ends.is_empty() {
            self.body.push(b',');
        }
        self.body.extend_from_slice(row);
        // Bodies are capped far below 4 GiB, so the offset always fits.
        self.ends.push(self.body.len() as u32);
        self.origins.push(origin);
    }

    fn close(&mut self) {
        self.body.push(b']');
    }

    /// Size of the body if `row` were appended (before closing `]` is counted: it already is).
    fn size_with(&self, row: &[u8]) -> usize {
        // open body holds "[" + rows + commas; +1 for "]", +1 for the comma if not first.
        self.body.len() + row.len() + 1 + usize::from(!self.ends.is_empty())
    }

    /// The JSON array, ready to gzip.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 {
            1
        } else {
            self.ends[i - 1] as usize + 1
        }
    }

    /// Row `i`'s JSON text.
    pub fn row(&self, i: usize) -> &[u8] {
        &self.body[self.start(i)..self.ends[i] as usize]
    }

    #[cfg(test)]
    pub fn origin(&self, i: usize) -> Origin {
        self.origins[i]
    }

    /// Where each row came from, in row order.
    pub fn origins(&self) -> &[Origin] {
        &self.origins
    }

    /// Rows with their origins, in order.
    pub fn rows(&self) -> impl Iterator<Item = (&[u8], Origin)> + '_ {
        (0..self.len()).map(move |i| (self.row(i), self.origins[i]))
    }

    /// Splits into rows `[0, mid)` and `[mid, len)`. Both halves keep row order.
    pub fn split_at(&self, mid: usize) -> (RawBatch, RawBatch) {
        let part = |range: std::ops::Range<usize>| {
            let bytes = if range.is_empty() {
                0
            } else {
                self.ends[range.end - 1] as usize - self.start(range.start)
            };
            let mut b = RawBatch::with_capacity(bytes + 2);
            for i in range {
                b.append(self.row(i), self.origins[i]);
            }
            b.close();
            b
        };
        (part(0..mid), part(mid..self.len()))
    }

    /// Splits in the middle (for 413 and for bisecting a 400).
    pub fn halves(&self) -> (RawBatch, RawBatch) {
        self.split_at(self.len() / 2)
    }
}

/// What [`Batcher::push`] did with a row.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// The row is in the open batch.
    Added,
    /// The open batch was full: here it is, sealed off; the row starts the next one.
    Full(RawBatch),
    /// The row alone is over the cap; it was not added.
    TooLarge { row_bytes: usize, cap: usize },
}

/// Packs rows, in order, into bodies of at most `cap` bytes, and, with a time span set, of
/// rows whose `TimeGenerated` values lie at most that far apart.
#[derive(Debug)]
pub struct Batcher {
    cap: usize,
    open: RawBatch,
    /// Microseconds; `None` when unbounded.
    max_span: Option<i64>,
    /// Earliest and latest row time in the open batch (microseconds).
    span: Option<(i64, i64)>,
}

impl Batcher {
    /// `cap` below 16 bytes could hold no row at all; it is raised to 16.
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(16);
        Batcher {
            cap,
            open: RawBatch::with_capacity(Self::initial_capacity(cap)),
            max_span: None,
            span: None,
        }
    }

    /// Closes a batch before a row whose `TimeGenerated` would make the batch span more than
    /// `span` (Auxiliary-plan tables refuse a request spanning over 30 minutes). Rows carry
    /// their time as their first member, as the row encoder writes them.
    pub fn with_max_time_span(mut self, span: Option<std::time::Duration>) -> Self {
        self.max_span = span.map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        self
    }

    fn initial_capacity(cap: usize) -> usize {
        cap.min(1 << 20) + 2
    }

    /// Adds one serialized JSON object.
    pub fn push(&mut self, row: &[u8], origin: Origin) -> Pushed {
        if row.len() + 2 > self.cap {
            return Pushed::TooLarge {
                row_bytes: row.len(),
                cap: self.cap,
            };
        }
        let (fits_span, span) = self.span_with(row);
        if fits_span && self.open.size_with(row) <= self.cap {
            self.open.append(row, origin);
            self.span = span;
            return Pushed::Added;
        }
        let full = self.take();
        self.open.append(row, origin);
        self.span = self.span_with(row).1;
        Pushed::Full(full)
    }

    /// Whether `row` keeps the open batch within the time span, and the span with it.
    fn span_with(&self, row: &[u8]) -> (bool, Option<(i64, i64)>) {
        let Some(max) = self.max_span else {
            return (true, None);
        };
        let Some(t) = crate::transform::time::row_time_micros(row) else {
            return (true, self.span);
        };
        match self.span {
            _ if self.open.is_empty() => (true, Some((t, t))),
            None => (true, Some((t, t))),
            Some((lo, hi)) => {
                let (lo, hi) = (lo.min(t), hi.max(t));
                (hi.saturating_sub(lo) <= max, Some((lo, hi)))
            }
        }
    }

    /// Rows waiting in the open batch.
    pub fn pending(&self) -> usize {
        self.open.len()
    }

    /// Seals the open batch, if it holds any row.
    pub fn flush(&mut self) -> Option<RawBatch> {
        if self.open.is_empty() {
            None
        } else {
            Some(self.take())
        }
    }

    fn take(&mut self) -> RawBatch {
        self.span = None;
        let next = RawBatch::with_capacity(Self::initial_capacity(self.cap));
        let mut full = std::mem::replace(&mut self.open, next);
        full.close();
        full
    }
}

/// A batch ready for the wire: its gzip body, and where each of its rows ends and came from —
/// enough to count them, and to cut them out of the body again ([`SealedBatch::unseal`]) in the
/// rare case the service refuses it (to split, bisect or dead-letter). The raw body itself is
/// not kept: it is about six times the gzip, and a batch waits for its answer as long as the
/// service takes, up to `concurrency` at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBatch {
    pub gzip: Vec<u8>,
    /// As in [`RawBatch`]: the offsets in the raw body just past each row.
    ends: Vec<u32>,
    origins: Vec<Origin>,
}

impl SealedBatch {
    /// `gzip` must be `raw`'s body gzipped; the body is dropped.
    pub fn new(raw: RawBatch, gzip: Vec<u8>) -> Self {
        SealedBatch {
            gzip,
            ends: raw.ends,
            origins: raw.origins,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The body's size before gzip: `[`, the rows and their commas, `]`.
    pub fn raw_len(&self) -> usize {
        self.ends.last().map_or(2, |&e| e as usize + 1)
    }

    /// Where each row came from, in row order.
    pub fn origins(&self) -> &[Origin] {
        &self.origins
    }

    /// Memory this batch holds (for the spool's cache budget).
    pub fn mem_bytes(&self) -> usize {
        self.gzip.len()
            + self.ends.len() * std::mem::size_of::<u32>()
            + self.origins.len() * std::mem::size_of::<Origin>()
    }

    /// The rows again: the body gunzipped and checked against the row ends it was sealed with.
    /// `Err` only if the gzip is not what this batch was sealed from (a bug, not an input).
    pub fn unseal(&self) -> Result<RawBatch, String> {
        let body = gunzip(&self.gzip, self.raw_len())
            .map_err(|e| format!("a sealed body does not gunzip: {e}"))?;
        if body.len() != self.raw_len() {
            return Err(format!(
                "a sealed body gunzips to {} bytes, not {}",
                body.len(),
                self.raw_len()
            ));
        }
        RawBatch::from_parts(body, self.ends.clone(), self.origins.clone())
            .ok_or_else(|| "a sealed body does not hold the rows it was sealed with".to_string())
    }
}

/// The result of [`seal`]: bodies within the cap, and single rows that are over it even gzipped.
#[derive(Debug, Default)]
pub struct Sealed {
    pub batches: Vec<SealedBatch>,
    pub oversize: Vec<RawBatch>,
}

/// Gzips `raw`; a body whose gzip output is over `cap` is split in halves until each fits.
pub fn seal(raw: RawBatch, cap: usize, gz: &mut Gzip) -> Sealed {
    let mut out = Sealed::default();
    let mut todo = vec![raw];
    while let Some(batch) = todo.pop() {
        if let Some(gzip) = gz.compress_within(batch.body(), cap) {
            out.batches.push(SealedBatch::new(batch, gzip));
        } else if batch.len() <= 1 {
            out.oversize.push(batch);
        } else {
            let (a, b) = batch.halves();
            // Popped last-in-first-out: push b first so a is sealed first and order is kept.
            todo.push(b);
            todo.push(a);
        }
    }
    out
}

/// A reusable gzip encoder: one compressor per worker instead of one per request.
///
/// Bodies are sealed whole and are at most about 1 MB, which is the case libdeflate is built
/// for: it compresses a buffer in one call, about twice as fast as zlib at the same level and
/// ratio (README, Performance). Levels keep zlib's scale: 0 stores, 1 is fastest, 9 smallest.
/// The compressor (a few hundred KiB) is allocated at the first body, so an encoder kept for
/// re-sealing halves that never happens costs nothing.
pub struct Gzip {
    level: u32,
    compressor: Option<libdeflater::Compressor>,
    /// Output of the last compression, sized to libdeflate's bound for the largest body so far;
    /// zero-filled when grown, so its untouched tail costs no memory.
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Gzip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gzip")
    }
}

impl Gzip {
    /// The deflate implementation, for benchmarks and reports.
    pub const BACKEND: &'static str = "libdeflate";

    /// `level` 0 (store) to 9 (smallest); 3 is the default trade-off.
    pub fn new(level: u32) -> Self {
        Gzip {
            level: level.min(9),
            compressor: None,
            scratch: Vec::new(),
        }
    }

    /// One complete gzip member (RFC 1952) holding `data`, exactly as long as it is.
    pub fn compress(&mut self, data: &[u8]) -> Vec<u8> {
        let bound = compressor(&mut self.compressor, self.level).gzip_compress_bound(data.len());
        // Within libdeflate's worst-case bound compression always fits; if it ever did not, a
        // stored member is still a valid body.
        self.compress_within(data, bound)
            .unwrap_or_else(|| Self::stored(data))
    }

    /// [`Gzip::compress`] if its output is at most `limit` bytes, else `None`. Exact: libdeflate
    /// writes the same stream whatever room it is given, and stops (returning nothing) only when
    /// that stream would not fit; so a body over the cap costs no more than the cap's worth of
    /// work.
    pub fn compress_within(&mut self, data: &[u8], limit: usize) -> Option<Vec<u8>> {
        let compressor = compressor(&mut self.compressor, self.level);
        let room = limit.min(compressor.gzip_compress_bound(data.len()));
        if self.scratch.len() < room {
            self.scratch = vec![0; room];
        }
        match compressor.gzip_compress(data, &mut self.scratch[..room]) {
            Ok(n) => Some(self.scratch[..n].to_vec()),
            Err(libdeflater::CompressionError::InsufficientSpace) => None,
        }
    }

    fn stored(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        // Writing into a Vec cannot fail.
        let _ = enc.write_all(data);
        enc.finish().unwrap_or_default()
    }
}

/// The size before gzip that a gzip member records in its trailer (modulo 2³², which a body
/// within the API's 1 MB never reaches); 0 for what is too short to have one.
pub fn gzip_raw_size(gzip: &[u8]) -> usize {
    match gzip.len().checked_sub(4).and_then(|i| gzip.get(i..)) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]) as usize,
        _ => 0,
    }
}

/// One gzip member's content, of the size its trailer records if that is at most `max` bytes
/// (allocated once, exactly); `Err` says what is wrong (not gzip, damaged, over `max`).
pub fn gunzip(gzip: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let size = gzip_raw_size(gzip);
    if size > max {
        return Err(format!("it says it holds {size} bytes, over {max}"));
    }
    let mut out = vec![0; size];
    let n = libdeflater::Decompressor::new()
        .gzip_decompress(gzip, &mut out)
        .map_err(|e| e.to_string())?;
    out.truncate(n);
    Ok(out)
}

/// The encoder in `slot`, made at its first use.
fn compressor(
    slot: &mut Option<libdeflater::Compressor>,
    level: u32,
) -> &mut libdeflater::Compressor {
    slot.get_or_insert_with(|| {
        // 0..=9 (what `Gzip::new` keeps) are all libdeflate levels.
        let level = libdeflater::CompressionLvl::new(level as i32)
            .unwrap_or_else(|_| libdeflater::CompressionLvl::default());
        libdeflater::Compressor::new(level)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Read;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    fn row(n: usize, pad: usize) -> Vec<u8> {
        format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(pad)).into_bytes()
    }

    fn o(line: u64) -> Origin {
        Origin {
            source: 0,
            line,
            offset: 0,
        }
    }

    #[test]
    fn packs_until_the_next_row_would_cross_the_cap() {
        let r = row(1, 10);
        let n = r.len();
        let mut b = Batcher::new(2 + n * 3 + 2); // exactly three rows with two commas
        assert_eq!(b.push(&r, o(1)), Pushed::Added);
        assert_eq!(b.push(&r, o(2)), Pushed::Added);
        assert_eq!(b.push(&r, o(3)), Pushed::Added);
        let Pushed::Full(full) = b.push(&r, o(4)) else {
            panic!("expected full")
        };
        assert_eq!(full.len(), 3);
        assert_eq!(full.body().len(), 2 + n * 3 + 2);
        assert_eq!(b.pending(), 1);
        let last = b.flush().expect("one row pending");
        assert_eq!(last.origin(0), o(4));
        assert!(b.flush().is_none());
    }

    #[test]
    fn a_row_too_big_alone_is_refused() {
        let mut b = Batcher::new(100);
        let big = row(1, 200);
        assert_eq!(
            b.push(&big, o(1)),
            Pushed::TooLarge {
                row_bytes: big.len(),
                cap: 100
            }
        );
        assert_eq!(b.pending(), 0);
        // a row of exactly cap - 2 fits alone
        let r = vec![b'1'; 98];
        assert_eq!(b.push(&r, o(2)), Pushed::Added);
        assert_eq!(b.flush().expect("row").body().len(), 100);
    }

    #[test]
    fn split_and_rows_keep_order_and_text() {
        let rows: Vec<Vec<u8>> = (0..5).map(|i| row(i, i)).collect();
        let batch =
            RawBatch::from_rows(rows.iter().enumerate().map(|(i, r)| (&r[..], o(i as u64))));
        let (a, b) = batch.halves();
        assert_eq!(a.len(), 2);
        assert_eq!(b.len(), 3);
        let again: Vec<&[u8]> = a.rows().chain(b.rows()).map(|(r, _)| r).collect();
        let want: Vec<&[u8]> = rows.iter().map(|r| &r[..]).collect();
        assert_eq!(again, want);
        assert_eq!(b.origin(0), o(2));
        for part in [&a, &b, &batch] {
            let v: serde_json::Value = serde_json::from_slice(part.body()).expect("json");
            assert!(v.is_array());
        }
    }

    #[test]
    fn gzip_round_trips_and_reuses_its_state() {
        let mut gz = Gzip::new(3);
        for data in [&b""[..], b"[]", &vec![b'a'; 300_000][..], b"[{\"x\":1}]"] {
            let gzip = gz.compress(data);
            assert_eq!(gunzip(&gzip), data);
            assert_eq!(gzip_raw_size(&gzip), data.len());
        }
        let mut gz0 = Gzip::new(0);
        let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        assert_eq!(gunzip(&gz0.compress(&big)), big);
    }

    /// `compress_within` refuses exactly the outputs over the limit, and otherwise gives what
    /// `compress` gives: the seal's guarantee (every body ≤ the cap gzipped) rests on it.
    #[test]
    fn compress_within_is_exact_at_the_limit() {
        let rows: Vec<u8> = (0..3000)
            .flat_map(|i| format!(r#"{{"n":{i},"msg":"GET /api/{} 200"}},"#, i % 7).into_bytes())
            .collect();
        let noise: Vec<u8> = (0..50_000u64)
            .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
            .collect();
        for level in 0..=9 {
            let mut gz = Gzip::new(level);
            for data in [&b""[..], b"[]", &rows, &noise] {
                let full = gz.compress(data);
                assert_eq!(gunzip(&full), data, "level {level}");
                let n = full.len();
                for (limit, fits) in [(0, false), (n - 1, false), (n, true), (n + 1, true)] {
                    let got = gz.compress_within(data, limit);
                    assert_eq!(
                        got.is_some(),
                        fits,
                        "level {level}, {n} bytes, limit {limit}"
                    );
                    if let Some(got) = got {
                        assert_eq!(got, full, "level {level}");
                    }
                }
            }
        }
    }

    #[test]
    fn seal_splits_when_gzip_is_over_the_cap() {
        // Incompressible-ish rows with level 0 (stored): gzip is larger than the raw body.
        let rows: Vec<Vec<u8>> = (0..8)
            .map(|i| format!(r#"{{"n":{i},"p":"{}"}}"#, "y".repeat(40)).into_bytes())
            .collect();
        let raw = RawBatch::from_rows(rows.iter().map(|r| (&r[..], o(0))));
        let cap = raw.body().len(); // raw fits exactly; stored gzip adds ~23 bytes
        let sealed = seal(raw.clone(), cap, &mut Gzip::new(0));
        assert!(sealed.oversize.is_empty());
        assert!(sealed.batches.len() > 1);
        let mut all = Vec::new();
        for s in &sealed.batches {
            assert!(s.gzip.len() <= cap);
            let raw = s.unseal().expect("unseal");
            assert_eq!(gunzip(&s.gzip), raw.body());
            all.extend(raw.rows().map(|(r, _)| r.to_vec()));
        }
        assert_eq!(all, rows);
    }

    /// A row as the encoder writes it, `secs` after 2026-01-01T00:00:00Z.
    fn timed_row(secs: i64) -> Vec<u8> {
        let ts = jiff::Timestamp::from_second(1_767_225_600 + secs).expect("ts");
        format!(
            r#"{{"TimeGenerated":"{}","n":{secs}}}"#,
            crate::transform::time::rfc3339_utc(ts)
        )
        .into_bytes()
    }

    fn span_of(b: &RawBatch) -> i64 {
        let t: Vec<i64> = b
            .rows()
            .filter_map(|(r, _)| crate::transform::time::row_time_micros(r))
            .collect();
        t.iter().max().unwrap_or(&0) - t.iter().min().unwrap_or(&0)
    }

    #[test]
    fn a_time_span_closes_batches_before_rows_too_far_apart() {
        let span = std::time::Duration::from_secs(30 * 60);
        let mut b = Batcher::new(1_000_000).with_max_time_span(Some(span));
        assert_eq!(b.push(&timed_row(0), o(1)), Pushed::Added);
        assert_eq!(
            b.push(&timed_row(1800), o(2)),
            Pushed::Added,
            "exactly 30 minutes"
        );
        assert_eq!(
            b.push(&timed_row(-1), o(3)),
            Pushed::Full(RawBatch::from_rows([
                (&timed_row(0)[..], o(1)),
                (&timed_row(1800)[..], o(2))
            ]))
        );
        assert_eq!(
            b.push(&timed_row(3600), o(4)),
            Pushed::Full(RawBatch::from_rows([(&timed_row(-1)[..], o(3))]))
        );
        assert_eq!(
            b.push(&b"{}"[..], o(5)),
            Pushed::Added,
            "a row without a time fits anywhere"
        );
        assert_eq!(b.flush().map(|f| f.len()), Some(2));
        // without a span, time does not matter
        let mut b = Batcher::new(1_000_000);
        for (i, t) in [0, 7200, -7200].into_iter().enumerate() {
            assert_eq!(b.push(&timed_row(t), o(i as u64)), Pushed::Added);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// With a span, every batch spans at most it, and rows keep their order.
        #[test]
        fn batches_never_span_more_than_the_limit(
            times in proptest::collection::vec(-4000i64..4000, 0..100),
            span in 1u64..3600,
            cap in 200usize..3000,
        ) {
            let mut b = Batcher::new(cap).with_max_time_span(Some(std::time::Duration::from_secs(span)));
            let mut batches = Vec::new();
            for (i, &t) in times.iter().enumerate() {
                match b.push(&timed_row(t), o(i as u64)) {
                    Pushed::Added => {}
                    Pushed::Full(full) => batches.push(full),
                    Pushed::TooLarge { .. } => prop_assert!(false, "rows are small"),
                }
            }
            batches.extend(b.flush());
            let mut lines = Vec::new();
            for batch in &batches {
                prop_assert!(span_of(batch) <= span as i64 * 1_000_000);
                prop_assert!(batch.body().len() <= cap);
                lines.extend(batch.rows().map(|(_, o)| o.line));
            }
            prop_assert_eq!(lines, (0..times.len() as u64).collect::<Vec<_>>());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// No row lost, duplicated or reordered; every body within the cap before and after
        /// gzip; every body a JSON array of the rows.
        #[test]
        fn packing_loses_nothing_and_respects_the_cap(
            cap in 64usize..4000,
            sizes in proptest::collection::vec(0usize..600, 0..200),
            level in 0u32..10,
        ) {
            let mut b = Batcher::new(cap);
            let mut gz = Gzip::new(level);
            let mut sent: Vec<(Vec<u8>, u64)> = Vec::new();
            let mut refused = Vec::new();
            let mut sealed_all = Vec::new();
            let mut oversize: Vec<(Vec<u8>, u64)> = Vec::new();
            let mut check = |raw: RawBatch, sealed_all: &mut Vec<SealedBatch>| {
                let s = seal(raw, cap, &mut gz);
                for big in s.oversize {
                    // refused only when a lone row's gzip really is over the cap
                    prop_assert_eq!(big.len(), 1);
                    prop_assert!(Gzip::new(level).compress(big.body()).len() > cap);
                    oversize.push((big.row(0).to_vec(), big.origin(0).line));
                }
                sealed_all.extend(s.batches);
                Ok(())
            };
            for (i, &n) in sizes.iter().enumerate() {
                let r = row(i, n);
                match b.push(&r, o(i as u64)) {
                    Pushed::Added => {}
                    Pushed::Full(full) => check(full, &mut sealed_all)?,
                    Pushed::TooLarge { .. } => { refused.push(i as u64); continue; }
                }
                sent.push((r, i as u64));
            }
            if let Some(last) = b.flush() { check(last, &mut sealed_all)?; }
            let mut got = Vec::new();
            for s in &sealed_all {
                let raw = s.unseal().expect("a sealed batch unseals");
                prop_assert_eq!(raw.len(), s.len());
                prop_assert_eq!(raw.body().len(), s.raw_len());
                prop_assert_eq!(raw.origins(), s.origins());
                let lines: Vec<u64> = raw.rows().map(|(_, o)| o.line).collect();
                prop_assert!(lines.windows(2).all(|w| w[0] < w[1]), "order within a batch");
                prop_assert!(raw.body().len() <= cap);
                prop_assert!(s.gzip.len() <= cap);
                prop_assert!(!raw.is_empty());
                let v: serde_json::Value = serde_json::from_slice(&gunzip(&s.gzip)).expect("json");
                let arr = v.as_array().expect("array");
                prop_assert_eq!(arr.len(), raw.len());
                for (r, origin) in raw.rows() { got.push((r.to_vec(), origin.line)); }
            }
            got.extend(oversize);
            got.sort_by_key(|r| r.1);
            prop_assert_eq!(got, sent);
            for i in refused { prop_assert!(row(i as usize, sizes[i as usize]).len() + 2 > cap); }
        }
    }
}
