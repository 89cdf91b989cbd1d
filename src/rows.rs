//! Rows on their way from an input to a request: encoded JSON objects back to back, each with
//! where it came from (for dead-letters and checkpoints).

/// Where a row came from: a source index and a line (or record) number, for dead-letters, and
/// the input offset just past the row's record, for checkpoints (0 where there are none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Origin {
    pub source: u32,
    pub line: u64,
    pub offset: u64,
}

/// Encoded rows, back to back, with where each ends and came from.
#[derive(Debug, Default)]
pub struct RowBuf {
    bytes: Vec<u8>,
    ends: Vec<u32>,
    origins: Vec<Origin>,
}

impl RowBuf {
    pub fn with_capacity(bytes: usize) -> Self {
        RowBuf {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::new(),
            origins: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn rows(&self) -> impl Iterator<Item = (&[u8], Origin)> + '_ {
        (0..self.ends.len()).map(move |i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
            (&self.bytes[start..self.ends[i] as usize], self.origins[i])
        })
    }

    /// Where the next row is written, then [`RowBuf::commit`]ted or [`RowBuf::rollback`]ed.
    pub fn bytes_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        self.origins.clear();
    }

    /// Ends the row written into [`RowBuf::bytes_mut`] since the last commit.
    pub fn commit(&mut self, origin: Origin) {
        // A buffer is handed on long before 4 GiB.
        self.ends.push(self.bytes.len() as u32);
        self.origins.push(origin);
    }

    /// Drops what was written since the last commit.
    pub fn rollback(&mut self) {
        let start = self.ends.last().copied().unwrap_or(0) as usize;
        self.bytes.truncate(start);
    }
}
