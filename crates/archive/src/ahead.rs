use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver};

const CHUNK: usize = 1024 * 1024;
const CHUNKS_AHEAD: usize = 4;

/// Reads `inner` on a thread of its own, a few chunks ahead of the consumer, so that
/// downloading and decompressing overlap with what the consumer does (hashing, writing).
pub(crate) struct ReadAhead {
    chunks: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl ReadAhead {
    pub(crate) fn spawn<R: Read + Send + 'static>(mut inner: R) -> io::Result<Self> {
        let (tx, chunks) = sync_channel(CHUNKS_AHEAD);
        std::thread::Builder::new()
            .name("strongbox-read-ahead".to_string())
            .spawn(move || loop {
                let mut buf = vec![0u8; CHUNK];
                let message = match fill(&mut inner, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(buf)
                    }
                    Err(e) => Err(e),
                };
                let failed = message.is_err();
                // A closed channel means the consumer stopped early: stop too.
                if tx.send(message).is_err() || failed {
                    break;
                }
            })?;
        Ok(Self {
            chunks,
            chunk: Vec::new(),
            pos: 0,
        })
    }
}

fn fill(inner: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
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
        if self.pos == self.chunk.len() {
            match self.chunks.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
