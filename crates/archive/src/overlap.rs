//! Stages of a byte stream on threads of their own, so that what one side of a stream does
//! (reading, hashing, decrypting, decompressing) overlaps with what the other side does.

use std::io::{self, Read, Write};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

const CHUNK: usize = 1024 * 1024;
const CHUNKS_AHEAD: usize = 4;
/// A read-ahead's first chunk; each chunk filled whole doubles the next, up to [`CHUNK`].
/// A small object (a delta listing, a chain's incremental archive) then touches kilobytes
/// of fresh memory instead of megabytes: a chain's restore holds 20 archives open at once,
/// and a first-touched page is costly on a VM.
const FIRST_CHUNK: usize = 64 * 1024;

/// Reads `inner` on a thread of its own, a few chunks ahead of the consumer, so that
/// downloading and decompressing overlap with what the consumer does (hashing, writing).
pub struct ReadAhead {
    chunks: Receiver<io::Result<(Vec<u8>, usize)>>,
    // Read chunks go back to the reader: fresh buffers cost page faults.
    spare: Sender<Vec<u8>>,
    chunk: Vec<u8>,
    len: usize,
    pos: usize,
}

impl ReadAhead {
    /// Start reading `inner` on a new thread.
    pub fn spawn<R: Read + Send + 'static>(mut inner: R) -> io::Result<Self> {
        let (tx, chunks) = sync_channel(CHUNKS_AHEAD);
        let (spare, returned) = channel::<Vec<u8>>();
        std::thread::Builder::new()
            .name("strongbox-read-ahead".to_string())
            .spawn(move || {
                let mut size = FIRST_CHUNK;
                loop {
                    // Room for a whole chunk, of which only `size` bytes are touched: a
                    // chunk grows in place.
                    let mut buf = returned
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
                    buf.resize(size, 0);
                    let message = match read_full(&mut inner, &mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if n == size {
                                size = (size * 2).min(CHUNK);
                            }
                            Ok((buf, n))
                        }
                        Err(e) => Err(e),
                    };
                    let failed = message.is_err();
                    // A closed channel means the consumer stopped early: stop too.
                    if tx.send(message).is_err() || failed {
                        break;
                    }
                }
            })?;
        Ok(Self {
            chunks,
            spare,
            chunk: Vec::new(),
            len: 0,
            pos: 0,
        })
    }
}

/// Writes into `inner` on a thread of its own, a few chunks behind the producer, so that
/// what `inner` does (encrypting, hashing, storing) overlaps with producing the bytes.
/// What is written is copied into chunks of its own; [`WriteBehind::put`] hands over a
/// buffer the producer filled instead. [`WriteBehind::finish`] hands `inner` back once
/// everything reached it; `flush` does not reach `inner`. Dropping it unfinished drops
/// `inner` unfinished before `drop` returns.
pub struct WriteBehind<W> {
    chunks: Option<SyncSender<(Box<[u8]>, usize)>>,
    // Written chunks come back to be filled again: fresh 1 MiB buffers cost page faults.
    spare: Receiver<Box<[u8]>>,
    worker: Option<JoinHandle<io::Result<W>>>,
    /// The chunk `write` fills, `filled` bytes of it (empty until the first write).
    chunk: Box<[u8]>,
    filled: usize,
    /// Chunks made so far, and the most there may be: the queued ones, the one written and
    /// the one filled.
    made: usize,
    most: usize,
}

impl<W: Write + Send + 'static> WriteBehind<W> {
    /// Start writing into `inner` on a new thread, four chunks queued at most.
    pub fn spawn(inner: W) -> io::Result<Self> {
        Self::with_queue(inner, CHUNKS_AHEAD)
    }

    /// Like [`WriteBehind::spawn`], with `queued` chunks queued at most.
    pub fn with_queue(mut inner: W, queued: usize) -> io::Result<Self> {
        let (chunks, rx) = sync_channel::<(Box<[u8]>, usize)>(queued);
        let (returned, spare) = channel();
        let worker = std::thread::Builder::new()
            .name("strongbox-write-behind".to_string())
            .spawn(move || {
                for (chunk, len) in rx {
                    inner.write_all(&chunk[..len])?;
                    // The producer may be gone already; the chunk is then simply freed.
                    drop(returned.send(chunk));
                }
                inner.flush()?;
                Ok(inner)
            })?;
        Ok(Self {
            chunks: Some(chunks),
            spare,
            worker: Some(worker),
            chunk: Box::default(),
            filled: 0,
            made: 0,
            most: queued + 2,
        })
    }

    /// Queue `chunk[..len]` as it is, after what was written before it; returns a buffer to
    /// fill next, as long as `chunk` unless one written already comes back.
    pub fn put(&mut self, chunk: Box<[u8]>, len: usize) -> io::Result<Box<[u8]>> {
        if self.filled > 0 {
            self.send_written()?;
        }
        self.send(chunk, len)
    }

    /// Wait until every byte written reached `inner`, and return it.
    pub fn finish(mut self) -> io::Result<W> {
        if self.filled > 0 {
            self.send_written()?;
        }
        self.join()
    }

    /// Queue what `write` filled; the next chunk to fill takes its place.
    fn send_written(&mut self) -> io::Result<()> {
        let chunk = std::mem::take(&mut self.chunk);
        let filled = std::mem::take(&mut self.filled);
        self.chunk = self.send(chunk, filled)?;
        Ok(())
    }

    /// Queue `chunk[..len]`; a spare buffer, or while fewer than `most` were made, a new one
    /// as long as `chunk`.
    fn send(&mut self, chunk: Box<[u8]>, len: usize) -> io::Result<Box<[u8]>> {
        let size = chunk.len();
        let chunks = self.chunks.as_ref().ok_or_else(stopped)?;
        if chunks.send((chunk, len)).is_ok() {
            if let Ok(spare) = self.spare.try_recv() {
                return Ok(spare);
            }
            if self.made < self.most {
                self.made += 1;
                return Ok(vec![0; size].into_boxed_slice());
            }
            if let Ok(spare) = self.spare.recv() {
                return Ok(spare);
            }
        }
        // The worker stopped on an error: that error is the answer.
        Err(self.join().err().unwrap_or_else(stopped))
    }

    fn join(&mut self) -> io::Result<W> {
        self.chunks = None;
        let worker = self.worker.take().ok_or_else(stopped)?;
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

fn stopped() -> io::Error {
    io::Error::other("the write-behind thread stopped")
}

impl<W: Write + Send + 'static> Write for WriteBehind<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.chunk.is_empty() {
            self.made += 1;
            self.chunk = vec![0; CHUNK].into_boxed_slice();
        }
        let n = buf.len().min(self.chunk.len() - self.filled);
        self.chunk[self.filled..self.filled + n].copy_from_slice(&buf[..n]);
        self.filled += n;
        if self.filled == self.chunk.len() {
            self.send_written()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W> Drop for WriteBehind<W> {
    fn drop(&mut self) {
        self.chunks = None;
        if let Some(worker) = self.worker.take() {
            // Wait, so that `inner` is dropped (an upload aborted) before the caller goes on.
            drop(worker.join());
        }
    }
}

/// Read from `inner` until `buf` is full or the stream ends; returns the bytes read.
pub fn read_full(inner: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match inner.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.len {
            match self.chunks.recv() {
                Ok(Ok((chunk, len))) => {
                    let used = std::mem::replace(&mut self.chunk, chunk);
                    if !used.is_empty() {
                        // The reader may be done already; the chunk is then simply freed.
                        drop(self.spare.send(used));
                    }
                    self.len = len;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.len - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_chunks_start_small_and_double_while_filled_whole() {
        const K: usize = 1024;
        for (len, sizes) in [
            (0, vec![]),
            (100, vec![64 * K]),
            (64 * K, vec![64 * K]),
            (64 * K + 1, vec![64 * K, 128 * K]),
            (
                3 * CHUNK,
                vec![64 * K, 128 * K, 256 * K, 512 * K, CHUNK, CHUNK, CHUNK],
            ),
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut ahead = ReadAhead::spawn(io::Cursor::new(data.clone())).unwrap();
            let (mut back, mut seen) = (Vec::new(), Vec::new());
            let mut buf = [0u8; 4096];
            loop {
                let n = ahead.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                // A read that starts a chunk ends at `n` in it.
                if ahead.pos == n {
                    seen.push(ahead.chunk.len());
                }
                back.extend_from_slice(&buf[..n]);
            }
            assert!(back == data, "{len} bytes");
            assert_eq!(seen, sizes, "{len} bytes");
        }
    }

    #[test]
    fn delivers_every_byte_in_order_and_passes_errors_on() {
        let data: Vec<u8> = (0..5 * CHUNK + 123).map(|i| (i % 251) as u8).collect();
        let mut back = Vec::new();
        ReadAhead::spawn(io::Cursor::new(data.clone()))
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data);

        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let err = ReadAhead::spawn(Broken)
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
    }

    #[test]
    fn buffers_put_whole_follow_what_was_written_before_them() {
        let data: Vec<u8> = (0..3 * CHUNK + 100).map(|i| (i % 251) as u8).collect();
        let (written, rest) = data.split_at(CHUNK + 10);
        let mut behind = WriteBehind::spawn(Vec::new()).unwrap();
        behind.write_all(written).unwrap();
        let mut buffer = vec![0; 1000].into_boxed_slice();
        for piece in rest.chunks(999) {
            buffer[..piece.len()].copy_from_slice(piece);
            buffer = behind.put(buffer, piece.len()).unwrap();
            assert!(!buffer.is_empty(), "a buffer to fill next");
        }
        assert!(behind.finish().unwrap() == data);
    }

    #[test]
    fn writes_every_byte_in_order_and_passes_errors_on() {
        let data: Vec<u8> = (0..5 * CHUNK + 123).map(|i| (i % 251) as u8).collect();
        let mut behind = WriteBehind::spawn(Vec::new()).unwrap();
        for piece in data.chunks(7777) {
            behind.write_all(piece).unwrap();
        }
        assert!(behind.finish().unwrap() == data);

        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut behind = WriteBehind::spawn(Full).unwrap();
        let written = (0..CHUNKS_AHEAD + 3).try_for_each(|_| behind.write_all(&data[..CHUNK]));
        let err = match written {
            Err(e) => e,
            Ok(()) => behind
                .finish()
                .err()
                .expect("the error reaches the producer"),
        };
        assert_eq!(err.to_string(), "disk full");
    }
}
