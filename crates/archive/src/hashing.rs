use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

/// Size and SHA-256 of a byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// Bytes seen.
    pub size: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
}

/// Lower-case hex SHA-256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A reader that hashes what passes through it.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wrap `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// Size and digest of everything read so far.
    pub fn digest(self) -> Digest {
        Digest {
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// Reads exactly `size` bytes from `inner`, hashing them; a short source is padded with
/// zeros (and remembered) so that a tar header written beforehand stays truthful.
pub(crate) struct ExactReader<R> {
    inner: R,
    remaining: u64,
    hasher: Sha256,
    pub(crate) short: bool,
}

impl<R: Read> ExactReader<R> {
    pub(crate) fn new(inner: R, size: u64) -> Self {
        Self {
            inner,
            remaining: size,
            hasher: Sha256::new(),
            short: false,
        }
    }

    pub(crate) fn finish(self, size: u64) -> Digest {
        Digest {
            size,
            sha256: hex::encode(self.hasher.finalize()),
        }
    }
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.remaining as usize);
        let n = if self.short {
            0
        } else {
            self.inner.read(&mut buf[..want])?
        };
        let n = if n == 0 {
            // The file shrank while we read it: pad, so the archive stays well-formed.
            self.short = true;
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.hasher.update(&buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}
