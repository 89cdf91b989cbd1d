//! A Prometheus histogram of atomics: fixed bucket bounds, one count per bucket, a sum. An
//! observation is two relaxed atomic adds and a compare-and-swap on the sum; no lock.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Seconds one request took, from sending to the end of the answer (or the failure): 5 ms to
/// the longest request timeout (4 × 60 s).
pub const LATENCY_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 240.0,
];
/// Rows in one accepted request: one row to the most a 1 MB request can hold.
pub const ROWS: &[f64] = &[
    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 25000.0, 50000.0,
];
/// Uncompressed bytes of one accepted request, up to the API's 1 MB cap.
pub const BYTES: &[f64] = &[1e3, 1e4, 5e4, 1e5, 2.5e5, 5e5, 7.5e5, 9e5, 1e6, 1.048576e6];

/// A histogram series. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<Cells>);

#[derive(Debug)]
struct Cells {
    /// Upper bounds (`le`), ascending; the `+Inf` bucket is implied.
    bounds: &'static [f64],
    /// One count per bound, then the `+Inf` bucket: not cumulative.
    counts: Box<[AtomicU64]>,
    /// The sum of observations, as the bits of an `f64`.
    sum: AtomicU64,
}

/// A consistent enough reading of a histogram: cumulative bucket counts (one per bound, then
/// `+Inf`, which is the count), and the sum.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub bounds: &'static [f64],
    pub cumulative: Vec<u64>,
    pub sum: f64,
}

impl Snapshot {
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram(Arc::new(Cells {
            bounds,
            counts,
            sum: AtomicU64::new(0f64.to_bits()),
        }))
    }

    /// Counts `v` in the first bucket whose bound is at least `v` (`le` is inclusive). NaN is
    /// ignored: it would poison the sum.
    pub fn observe(&self, v: f64) {
        if v.is_nan() {
            return;
        }
        let i = self.0.bounds.partition_point(|b| *b < v);
        if let Some(c) = self.0.counts.get(i) {
            c.fetch_add(1, Relaxed);
        }
        let _ = self.0.sum.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + v).to_bits())
        });
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut total = 0;
        let cumulative = self
            .0
            .counts
            .iter()
            .map(|c| {
                total += c.load(Relaxed);
                total
            })
            .collect();
        Snapshot {
            bounds: self.0.bounds,
            cumulative,
            sum: f64::from_bits(self.0.sum.load(Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_at_or_above_them() {
        const B: &[f64] = &[1.0, 5.0, 10.0];
        let cases: &[(&[f64], [u64; 4])] = &[
            (&[], [0, 0, 0, 0]),
            (&[0.5], [1, 1, 1, 1]),
            (&[1.0], [1, 1, 1, 1]),
            (&[1.0001], [0, 1, 1, 1]),
            (&[5.0, 10.0], [0, 1, 2, 2]),
            (&[11.0], [0, 0, 0, 1]),
            (&[-3.0, 7.0, 100.0], [1, 1, 2, 3]),
            (&[f64::NAN], [0, 0, 0, 0]),
            (&[f64::INFINITY], [0, 0, 0, 1]),
        ];
        for (values, want) in cases {
            let h = Histogram::new(B);
            for v in *values {
                h.observe(*v);
            }
            let s = h.snapshot();
            assert_eq!(s.cumulative, want, "{values:?}");
            assert_eq!(s.count(), want[3]);
            let sum: f64 = values.iter().filter(|v| !v.is_nan()).sum();
            assert_eq!(s.sum, sum, "{values:?}");
        }
    }

    #[test]
    fn bucket_bounds_ascend() {
        for b in [LATENCY_SECONDS, ROWS, BYTES] {
            assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
        }
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let h = Histogram::new(ROWS);
        std::thread::scope(|s| {
            for t in 0..4 {
                let h = h.clone();
                s.spawn(move || {
                    for i in 0..10_000u32 {
                        h.observe(f64::from(i % 100 + t));
                    }
                });
            }
        });
        let snap = h.snapshot();
        assert_eq!(snap.count(), 40_000);
        let want: f64 = (0..4)
            .map(|t| (0..10_000u32).map(|i| f64::from(i % 100 + t)).sum::<f64>())
            .sum();
        assert_eq!(snap.sum, want);
    }
}
