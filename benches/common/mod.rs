//! Deterministic, realistic-looking log lines shared by the benchmarks.
//!
//! Values come from a hash of the line number, not a random generator, so every run (and every
//! machine) measures the same bytes and the gzip ratio is stable.

// Each bench uses only some of these.
#![allow(dead_code)]

use std::io::Write;

const LEVELS: [&str; 8] = [
    "Information",
    "Information",
    "Information",
    "Information",
    "Debug",
    "Debug",
    "Warning",
    "Error",
];
const SERVICES: [&str; 5] = ["checkout", "cart", "payments", "search", "identity"];
const ROUTES: [&str; 6] = [
    "GET /api/orders",
    "POST /api/cart/items",
    "GET /api/search",
    "PUT /api/users",
    "POST /api/payments",
    "GET /api/catalog/items",
];
const STATUS: [u16; 8] = [200, 200, 200, 200, 201, 204, 404, 500];

/// splitmix64: a cheap, well-mixed hash of the line number.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn pick<T: Copy>(items: &[T], h: u64) -> T {
    items[(h % items.len() as u64) as usize]
}

/// Line `i` as one NDJSON object of about 200 bytes, with its `\n`.
pub fn ndjson_line(i: u64, out: &mut Vec<u8>) {
    let h = mix(i);
    let (secs, ms) = (i / 1000, i % 1000);
    write!(
        out,
        concat!(
            r#"{{"TimeGenerated":"2025-11-23T{:02}:{:02}:{:02}.{:03}Z","Level":"{}","#,
            r#""Message":"{}/{} returned {} in {}ms","UserId":"user-{:06}","#,
            r#""DurationMs":{},"Service":"{}","TraceId":"{:012x}"}}"#,
            "\n"
        ),
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        ms,
        pick(&LEVELS, h),
        pick(&ROUTES, h >> 8),
        (h >> 16) % 100_000,
        pick(&STATUS, h >> 24),
        (h >> 32) % 2_000,
        (h >> 40) % 1_000_000,
        (h >> 32) % 2_000,
        pick(&SERVICES, h >> 48),
        mix(h) >> 16,
    )
    .expect("writing to a Vec");
}

/// Line `i` as a plain-text log line of about 200 bytes, with its `\n`.
pub fn text_line(i: u64, out: &mut Vec<u8>) {
    let h = mix(i);
    let (secs, ms) = (i / 1000, i % 1000);
    writeln!(
        out,
        "2025-11-23T{:02}:{:02}:{:02}.{:03}Z {} {}[{}]: {} {} returned {} in {} ms \
         user=user-{:06} trace={:016x} client=10.{}.{}.{}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        ms,
        pick(&LEVELS, h),
        pick(&SERVICES, h >> 48),
        1000 + (h >> 4) % 30_000,
        pick(&ROUTES, h >> 8),
        (h >> 16) % 100_000,
        pick(&STATUS, h >> 24),
        (h >> 32) % 2_000,
        (h >> 40) % 1_000_000,
        mix(h),
        (h >> 8) % 256,
        (h >> 16) % 256,
        (h >> 24) % 256,
    )
    .expect("writing to a Vec");
}

/// Whole lines from `line`, starting at 0, until the buffer holds at least `bytes`.
pub fn buffer(bytes: usize, line: fn(u64, &mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 512);
    let mut i = 0;
    while out.len() < bytes {
        line(i, &mut out);
        i += 1;
    }
    out
}
