//! Sealing on the blocking pool: gzip is CPU work that must not stall the async workers, and
//! each worker keeps one deflate state for all its batches.

use super::sender::DeliveryReport;
use crate::batch::{seal, Gzip, RawBatch, SealedBatch};

/// One worker's sealer.
#[derive(Debug)]
pub struct Sealer {
    gz: Option<Gzip>,
    cap: usize,
    level: u32,
}

impl Sealer {
    pub fn new(cap: usize, level: u32) -> Self {
        Sealer {
            gz: Some(Gzip::new(level)),
            cap,
            level,
        }
    }

    /// Gzips `raw` (split if its gzip is over the cap); rows over the cap even alone are
    /// reported rejected. `Err` only if the blocking task itself failed.
    pub async fn seal(
        &mut self,
        raw: RawBatch,
        report: &dyn DeliveryReport,
    ) -> Result<Vec<SealedBatch>, String> {
        let mut gz = self.gz.take().unwrap_or_else(|| Gzip::new(self.level));
        let cap = self.cap;
        let sealed = tokio::task::spawn_blocking(move || {
            let sealed = seal(raw, cap, &mut gz);
            (sealed, gz)
        })
        .await
        .map_err(|e| e.to_string())?;
        let (sealed, gz) = sealed;
        self.gz = Some(gz);
        for big in sealed.oversize {
            report.rejected(&big, "row is over the request cap even gzipped");
        }
        Ok(sealed.batches)
    }

    /// The encoder, for re-sealing halves when a batch is split during delivery.
    pub fn gzip(&mut self) -> &mut Gzip {
        self.gz.get_or_insert_with(|| Gzip::new(self.level))
    }
}
