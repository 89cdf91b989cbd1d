//! Reading a file or stdin in chunks, into the caller's own buffers.
//!
//! A chunk is read with `read(2)` on tokio's blocking pool straight into one of two buffers,
//! which the caller and the pool swap. tokio's own `fs::File` and `io::Stdin` read into a buffer
//! of their own and copy from it: every byte of a `send` once more.
//!
//! A regular file is read one chunk ahead, while the caller works on this one: its bytes stay
//! in the file whatever happens to the process. Stdin is read only when asked: a chunk taken
//! from a pipe ahead of need would be lost at a stop, where unread bytes stay in the pipe.
//!
//! Cancel-safe: a read under way when the caller's future is dropped (a `select!` took another
//! branch) is kept, and its bytes are the next call's, never lost — for stdin also across
//! inputs ([`stdin`]), with the decoder that was reading it ([`Stdin`]).

use std::io::Read;
use std::os::fd::AsFd;
use std::sync::Arc;

use tokio::sync::{MappedMutexGuard, MutexGuard};
use tokio::task::JoinHandle;

use super::decode::Decoder;

/// The process's stdin reader, kept between the inputs that read it in turn (a reload stops
/// one and starts the next).
static STDIN: tokio::sync::Mutex<Option<Stdin>> = tokio::sync::Mutex::const_new(None);

/// Standard input, lent to one input at a time (until the guard is dropped): a read of stdin
/// under way when its input stopped, and what it gave back, are the next input's. Were each to
/// read stdin on its own, the old one's read would still be waiting in the kernel after a
/// reload, take the next lines written and drop them with the old pipeline.
pub async fn stdin() -> std::io::Result<MappedMutexGuard<'static, Stdin>> {
    let mut kept = STDIN.lock().await;
    if kept.is_none() {
        *kept = Some(Stdin {
            chunks: Chunks::stdin()?,
            parked: None,
        });
    }
    MutexGuard::try_map(kept, Option::as_mut).map_err(|_| std::io::Error::other("no stdin reader"))
}

/// The stdin reader and the decoder the last input to read it left (a reload's): the next
/// input goes on with that decoder when its settings are the same, so a JSON value, a quoted
/// CSV record or a multiline event under way at the reload is finished, and a CSV header kept.
pub struct Stdin {
    pub chunks: Chunks,
    /// The decoder and the settings it was built from.
    parked: Option<(String, Decoder)>,
}

impl Stdin {
    /// Leaves `decoder`, built from `settings`, for the next input.
    pub fn park(&mut self, settings: String, decoder: Decoder) {
        self.parked = Some((settings, decoder));
    }

    /// The parked decoder, and whether it was built from `settings`. One of other settings
    /// comes back with its unfinished line given back to the stream first, for the next
    /// decoder to begin with; what else it holds (a record of other framing under way) is the
    /// caller's to send.
    pub fn resume(&mut self, settings: &str) -> Resumed {
        match self.parked.take() {
            None => Resumed::Nothing,
            Some((built_from, decoder)) if built_from == settings => Resumed::Same(decoder),
            Some((_, mut decoder)) => {
                self.chunks.unread(decoder.take_unread());
                Resumed::Other(decoder)
            }
        }
    }
}

/// What [`Stdin::resume`] found parked.
#[derive(Debug)]
pub enum Resumed {
    Nothing,
    /// Built from the same settings: go on with it.
    Same(Decoder),
    /// Built from other settings; its unfinished line was given back.
    Other(Decoder),
}

/// A read's buffer and what the read answered.
type Done = (Vec<u8>, std::io::Result<usize>);

/// A file or stdin, read in chunks on the blocking pool.
pub struct Chunks {
    file: Arc<std::fs::File>,
    /// Whether the next chunk is read while the caller works on this one.
    read_ahead: bool,
    under_way: Option<JoinHandle<Done>>,
    /// Bytes given back ([`Chunks::unread`]): the next chunks, before anything read.
    given_back: Vec<u8>,
    /// The buffer the next read goes into.
    spare: Vec<u8>,
    done: bool,
}

impl Chunks {
    /// A regular file, read one chunk ahead.
    pub fn file(file: std::fs::File) -> Self {
        Self::of(file, true)
    }

    /// Standard input (a duplicate of descriptor 0), read only when asked. Inputs take it
    /// through [`stdin`].
    fn stdin() -> std::io::Result<Self> {
        let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
        Ok(Self::of(std::fs::File::from(fd), false))
    }

    fn of(file: std::fs::File, read_ahead: bool) -> Self {
        Chunks {
            file: Arc::new(file),
            read_ahead,
            under_way: None,
            given_back: Vec::new(),
            spare: Vec::new(),
            done: false,
        }
    }

    /// Whether the next chunk is bytes given back, not new ones (which are counted as read).
    pub fn replays(&self) -> bool {
        !self.given_back.is_empty()
    }

    /// Gives back `bytes` taken from the stream but not used (the unfinished line of an input
    /// that stopped): the next calls return them first.
    pub fn unread(&mut self, mut bytes: Vec<u8>) {
        bytes.append(&mut self.given_back);
        self.given_back = bytes;
    }

    fn start(&mut self, len: usize) {
        let mut b = std::mem::take(&mut self.spare);
        b.resize(len, 0);
        let file = self.file.clone();
        self.under_way = Some(tokio::task::spawn_blocking(move || loop {
            match (&*file).read(&mut b) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => return (b, r),
            }
        }));
    }

    /// The next chunk, swapped into `buf` (whose length is the chunk size asked for): its
    /// length, 0 at the end. `buf` may come back another buffer of the same length.
    pub async fn next(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        if !self.given_back.is_empty() {
            let n = self.given_back.len().min(buf.len());
            buf[..n].copy_from_slice(&self.given_back[..n]);
            self.given_back.drain(..n);
            return Ok(n);
        }
        if self.done {
            return Ok(0);
        }
        let len = buf.len();
        if self.under_way.is_none() {
            self.start(len);
        }
        let Some(under_way) = self.under_way.as_mut() else {
            return Ok(0);
        };
        // Awaiting the handle by reference keeps it (and its bytes) if this future is dropped.
        let joined = under_way.await;
        self.under_way = None;
        let (mut got, r) = joined.map_err(std::io::Error::other)?;
        let n = match r {
            Ok(n) => n,
            Err(e) => {
                self.spare = got;
                return Err(e);
            }
        };
        std::mem::swap(buf, &mut got);
        self.spare = got;
        if n == 0 {
            self.done = true;
        } else if self.read_ahead {
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
            let mut c = Chunks::file(file);
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
        let mut c = Chunks::file(file);
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

    #[tokio::test]
    async fn a_pipe_is_read_only_when_asked_and_to_its_end() {
        let (r, mut w) = std::io::pipe().expect("pipe");
        let mut c = Chunks::of(std::fs::File::from(std::os::fd::OwnedFd::from(r)), false);
        let mut buf = vec![0; 16];
        w.write_all(b"abc").expect("write");
        assert_eq!(c.next(&mut buf).await.expect("read"), 3);
        assert_eq!(&buf[..3], b"abc");
        // Nothing is taken from the pipe before it is asked for: a stop leaves it there.
        assert!(c.under_way.is_none(), "no read ahead of a pipe");
        w.write_all(b"def").expect("write");
        drop(w);
        assert_eq!(c.next(&mut buf).await.expect("read"), 3);
        assert_eq!(&buf[..3], b"def");
        assert_eq!(c.next(&mut buf).await.expect("the end"), 0);
        assert_eq!(c.next(&mut buf).await.expect("after the end"), 0);
    }

    #[tokio::test]
    async fn a_parked_decoder_goes_on_only_under_the_same_settings() {
        let (r, w) = std::io::pipe().expect("pipe");
        drop(w);
        let chunks = Chunks::of(std::fs::File::from(std::os::fd::OwnedFd::from(r)), false);
        let mut stdin = Stdin {
            chunks,
            parked: None,
        };
        assert!(matches!(stdin.resume("text"), Resumed::Nothing));
        let begun = || {
            let mut d = Decoder::new(super::super::Format::Text, 1024);
            d.feed(b"a line begun", &mut |_| panic!("no whole line yet"));
            d
        };
        stdin.park("text".into(), begun());
        let Resumed::Same(mut d) = stdin.resume("text") else {
            panic!("the same settings")
        };
        assert_eq!(
            d.take_unread(),
            b"a line begun",
            "the decoder itself came back"
        );
        // Other settings: a new decoder begins with the line the parked one had begun.
        stdin.park("text".into(), begun());
        let Resumed::Other(mut d) = stdin.resume("csv") else {
            panic!("other settings")
        };
        assert!(d.take_unread().is_empty(), "its line was given back");
        assert!(
            matches!(stdin.resume("text"), Resumed::Nothing),
            "resumed once"
        );
        assert_eq!(read_all(&mut stdin.chunks, 4).await, b"a line begun");
    }

    #[tokio::test]
    async fn bytes_given_back_come_first_then_the_stream() {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(b"defgh").expect("write");
        let mut c = Chunks::file(std::fs::File::open(f.path()).expect("open"));
        let mut buf = vec![0; 2];
        assert_eq!(c.next(&mut buf).await.expect("read"), 2);
        assert_eq!(&buf[..2], b"de");
        c.unread(b"c".to_vec());
        c.unread(b"ab".to_vec());
        assert_eq!(read_all(&mut c, 2).await, b"abcfgh");
    }
}
