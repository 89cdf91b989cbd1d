//! Reading a stream in chunks, into the caller's own buffer.
//!
//! A regular file is read with `read(2)` on tokio's blocking pool straight into one of two
//! buffers, and the next chunk is read while the caller works on this one. tokio's own
//! `fs::File` reads into a buffer of its own and copies from it: every byte of a `send` once
//! more, and a hand-off to the pool per read that nothing overlaps. Other streams (stdin) go
//! through their `AsyncRead`.
//!
//! Both are cancel-safe: a read under way when the caller's future is dropped (a `select!`
//! took another branch) is kept and its bytes are the next call's, never lost.

use std::io::Read;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

/// Where chunks come from.
pub enum Chunks {
    File(FileChunks),
    Stream(Box<dyn AsyncRead + Unpin + Send>),
}

impl Chunks {
    /// The next chunk, swapped into `buf` (whose length is the chunk size asked for): its
    /// length, 0 at the end. `buf` may come back another buffer of the same length.
    pub async fn next(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        match self {
            Chunks::File(f) => f.next(buf).await,
            Chunks::Stream(r) => r.read(buf).await,
        }
    }
}

/// A read's buffer and what the read answered.
type Done = (Vec<u8>, std::io::Result<usize>);

/// A regular file, read ahead by one chunk on the blocking pool.
pub struct FileChunks {
    file: Arc<std::fs::File>,
    ahead: Option<JoinHandle<Done>>,
    /// The buffer the next read goes into.
    spare: Vec<u8>,
    done: bool,
}

impl FileChunks {
    pub fn new(file: std::fs::File) -> Self {
        FileChunks {
            file: Arc::new(file),
            ahead: None,
            spare: Vec::new(),
            done: false,
        }
    }

    fn start(&mut self, len: usize) {
        let mut b = std::mem::take(&mut self.spare);
        b.resize(len, 0);
        let file = self.file.clone();
        self.ahead = Some(tokio::task::spawn_blocking(move || {
            let r = (&*file).read(&mut b);
            (b, r)
        }));
    }

    async fn next(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let len = buf.len();
        if self.ahead.is_none() {
            self.start(len);
        }
        let Some(ahead) = self.ahead.as_mut() else {
            return Ok(0);
        };
        // Awaiting the handle by reference keeps it (and its bytes) if this future is dropped.
        let joined = ahead.await;
        self.ahead = None;
        let (mut got, r) = joined.map_err(std::io::Error::other)?;
        let n = r?;
        std::mem::swap(buf, &mut got);
        self.spare = got;
        if n == 0 {
            self.done = true;
        } else {
            self.start(len);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    async fn read_all(c: &mut Chunks, chunk: usize) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buf = vec![0; chunk];
        loop {
            let n = c.next(&mut buf).await.expect("read");
            if n == 0 {
                return all;
            }
            all.extend_from_slice(&buf[..n]);
            assert_eq!(buf.len(), chunk, "the caller's chunk size is kept");
        }
    }

    #[tokio::test]
    async fn a_file_is_read_whole_in_order_across_the_two_buffers() {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        let data: Vec<u8> = (0..100_003u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).expect("write");
        for chunk in [1, 7, 4096, 1 << 20] {
            let file = std::fs::File::open(f.path()).expect("open");
            let mut c = Chunks::File(FileChunks::new(file));
            assert_eq!(read_all(&mut c, chunk).await, data, "chunk {chunk}");
            let mut buf = vec![0; chunk];
            assert_eq!(c.next(&mut buf).await.expect("after the end"), 0);
        }
    }

    #[tokio::test]
    async fn a_read_whose_caller_gave_up_is_the_next_call_s() {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(b"abcdefgh").expect("write");
        let file = std::fs::File::open(f.path()).expect("open");
        let mut c = Chunks::File(FileChunks::new(file));
        let mut dropped = vec![0; 4];
        // Polled once and dropped (as a `select!` does when another branch wins): the read it
        // started is kept, and its bytes are the next call's.
        let once = tokio::time::timeout(std::time::Duration::ZERO, c.next(&mut dropped)).await;
        let mut got = match once {
            Ok(n) => dropped[..n.expect("read")].to_vec(),
            Err(_elapsed) => Vec::new(),
        };
        got.extend(read_all(&mut c, 4).await);
        assert_eq!(got, b"abcdefgh");
    }
}
