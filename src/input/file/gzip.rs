//! Rotated files compressed with gzip while the agent was not reading them.
//!
//! [`GzStream`] decompresses a `.gz` as it is read, in order, keeping only the decoder's window
//! and the last [`WINDOW_BYTES`] it handed out, so a file of any size costs the same few tens of
//! KiB. [`GzDrain`] reads one such file from a checkpoint to its end under the original file's
//! key, then it is done: a compressed rotation does not grow.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

use super::budget::Slot;
use super::reader::{Batch, ByteSource, LineReader};
use super::tracked::{file_lines, Polled};
use super::TailerConfig;
use crate::input::fingerprint::{FileKey, WINDOW_BYTES};

/// A `.gz` file read as its decompressed bytes, forwards only (the last [`WINDOW_BYTES`] may be
/// read again).
pub(super) struct GzStream {
    decoder: MultiGzDecoder<BufReader<File>>,
    /// Decompressed bytes handed out so far.
    pos: u64,
    /// The last bytes before `pos`.
    recent: Vec<u8>,
}

impl std::fmt::Debug for GzStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzStream").field("pos", &self.pos).finish()
    }
}

impl GzStream {
    pub fn new(file: File) -> Self {
        GzStream {
            decoder: MultiGzDecoder::new(BufReader::new(file)),
            pos: 0,
            recent: Vec::new(),
        }
    }

    /// Fills `buf` with the bytes from `offset` as far as the stream goes; returns how many.
    pub fn fill_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.read_at(&mut buf[filled..], offset + filled as u64)? {
                0 => break,
                n => filled += n,
            }
        }
        Ok(filled)
    }

    /// Decompresses and drops bytes up to `offset`.
    fn skip_to(&mut self, offset: u64) -> io::Result<()> {
        let mut scratch = vec![0; 64 * 1024];
        while self.pos < offset {
            let want = usize::try_from(offset - self.pos)
                .unwrap_or(usize::MAX)
                .min(scratch.len());
            let n = self.read_more(&mut scratch[..want])?;
            if n == 0 {
                break;
            }
        }
        Ok(())
    }

    fn read_more(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = loop {
            match self.decoder.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.pos += n as u64;
        self.recent.extend_from_slice(&buf[..n]);
        if self.recent.len() > WINDOW_BYTES {
            self.recent.drain(..self.recent.len() - WINDOW_BYTES);
        }
        Ok(n)
    }

    /// Where `recent` starts.
    fn recent_from(&self) -> u64 {
        self.pos - self.recent.len() as u64
    }

    fn behind(&self, offset: u64) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "offset {offset} is behind the compressed stream (at {})",
                self.pos
            ),
        )
    }
}

impl ByteSource for GzStream {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset < self.recent_from() {
            return Err(self.behind(offset));
        }
        if offset < self.pos {
            let from = (offset - self.recent_from()) as usize;
            let n = buf.len().min(self.recent.len() - from);
            buf[..n].copy_from_slice(&self.recent[from..from + n]);
            return Ok(n);
        }
        self.skip_to(offset)?;
        if self.pos < offset {
            return Ok(0);
        }
        self.read_more(buf)
    }

    fn before(&mut self, offset: u64) -> io::Result<Vec<u8>> {
        self.skip_to(offset)?;
        if offset < self.recent_from() || offset > self.pos {
            return Err(self.behind(offset));
        }
        let upto = (offset - self.recent_from()) as usize;
        Ok(self.recent[..upto].to_vec())
    }
}

/// Whether `path` names a gzip file (by name; the decoder checks the magic).
pub(super) fn is_gzip_name(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// The decompressed size modulo 2^32 a single-member gzip file records in its last 4 bytes.
pub(super) fn recorded_size(file: &File) -> io::Result<Option<u32>> {
    let len = file.metadata()?.len();
    if len < 18 {
        return Ok(None); // smaller than an empty gzip member
    }
    let mut tail = [0u8; 4];
    file.read_exact_at(&mut tail, len - 4)?;
    Ok(Some(u32::from_le_bytes(tail)))
}

/// Reads a compressed rotated file from a checkpoint to its end, under the key of the file it
/// was.
#[derive(Debug)]
pub(super) struct GzDrain {
    /// The watched name the lines carry.
    path: Arc<PathBuf>,
    /// The `.gz` file.
    gz: PathBuf,
    key: FileKey,
    stream: Box<GzStream>,
    reader: LineReader,
    _slot: Slot,
}

impl GzDrain {
    pub fn new(
        path: Arc<PathBuf>,
        gz: PathBuf,
        key: FileKey,
        stream: Box<GzStream>,
        offset: u64,
        config: &TailerConfig,
        slot: Slot,
    ) -> Self {
        GzDrain {
            path,
            gz,
            key,
            stream,
            reader: LineReader::new(offset, config.max_line_bytes),
            _slot: slot,
        }
    }

    /// Reads one batch; finished at the end of the stream, or when it cannot be read further
    /// (logged at warn with what is skipped).
    pub fn poll(&mut self, config: &TailerConfig) -> Polled {
        let mut polled = Polled::default();
        let mut batch = Batch::default();
        match self
            .reader
            .read(&mut *self.stream, config.max_batch_bytes, &mut batch)
        {
            Ok(0) => {
                self.reader.flush_partial(&mut batch);
                tracing::info!(path = %self.gz.display(), offset = self.reader.offset(), "read the compressed rotated file to its end");
                polled.finished = true;
            }
            Ok(_) => polled.more = true,
            Err(e) => {
                self.reader.flush_partial(&mut batch);
                let size = File::open(&self.gz)
                    .and_then(|f| recorded_size(&f))
                    .ok()
                    .flatten();
                let skipped = size.map(|s| u64::from(s).saturating_sub(self.reader.offset()));
                tracing::warn!(
                    path = %self.gz.display(),
                    offset = self.reader.offset(),
                    skipped_bytes = ?skipped,
                    "cannot read the rest of a compressed rotated file: {e}; its lines after this offset are not sent"
                );
                polled.finished = true;
            }
        }
        polled.batch = file_lines(self.key, &self.path, batch, None, Vec::new());
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> io::Result<tempfile::NamedTempFile> {
        let mut tmp = tempfile::Builder::new().suffix(".gz").tempfile()?;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes)?;
        tmp.write_all(&enc.finish()?)?;
        Ok(tmp)
    }

    #[test]
    fn the_stream_reads_forwards_and_the_last_kib_again() -> io::Result<()> {
        let text: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let tmp = gzip(&text)?;
        assert!(is_gzip_name(tmp.path()));
        let file = File::open(tmp.path())?;
        assert_eq!(recorded_size(&file)?, Some(text.len() as u32));
        let mut s = GzStream::new(file);
        let mut buf = vec![0; 100];
        assert_eq!(s.fill_at(&mut buf, 1000)?, 100);
        assert_eq!(buf, text[1000..1100]);
        // Back within the last KiB: served again.
        assert_eq!(s.fill_at(&mut buf, 500)?, 100);
        assert_eq!(buf, text[500..600]);
        assert_eq!(s.before(150_000)?, text[150_000 - WINDOW_BYTES..150_000]);
        assert!(s.read_at(&mut buf, 10).is_err(), "too far back");
        // The end.
        assert_eq!(s.fill_at(&mut buf, text.len() as u64 - 10)?, 10);
        assert_eq!(s.read_at(&mut buf, text.len() as u64)?, 0);
        assert_eq!(s.read_at(&mut buf, text.len() as u64 + 5)?, 0);
        Ok(())
    }

    #[test]
    fn a_damaged_stream_is_an_error_not_a_panic() -> io::Result<()> {
        let mut tmp = tempfile::Builder::new().suffix(".gz").tempfile()?;
        tmp.write_all(b"\x1f\x8b\x08\x00garbage that is not deflate")?;
        let mut s = GzStream::new(File::open(tmp.path())?);
        let mut buf = vec![0; 100];
        assert!(s.fill_at(&mut buf, 0).is_err());
        Ok(())
    }
}
