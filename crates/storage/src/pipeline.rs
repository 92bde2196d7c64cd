//! The object pipeline, the one path of every stored byte but the repository marker and the
//! locks: `compress -> seal -> hash -> store` on the way in, `fetch -> check hash -> open ->
//! decompress` on the way out. Sealing is the encryption hook; [`Plain`] leaves the bytes as
//! they are, and the repository marker says which envelope a repository uses. Each direction
//! runs on two threads, split at the envelope: sealing, hashing and storing happen behind the
//! codec; fetching and checking happen ahead of opening and decompressing (a remote object
//! read unchecked is fetched ahead on the runtime's threads instead).

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};

use sha2::{Digest as _, Sha256};
use strongbox_archive::{Compression, Decoder, Encoder, ReadAhead, ReadInto, DECODE_BUFFER};
use strongbox_manifest::ObjectRef;

use crate::payload::ChunkLayout;
use crate::raw::{RawReader, RawWriter, Written};
use crate::Error;

/// The encryption hook: seals the stored byte stream on the way in and opens it on the way
/// out, between the codec and the hash.
pub(crate) trait Envelope: fmt::Debug + Send + Sync {
    /// A writer that seals what it is given into `stored`.
    fn seal(&self, stored: RawWriter) -> io::Result<Box<dyn Sealed>>;
    /// A reader of what `stored` holds, opened.
    fn open(&self, stored: Box<dyn Read + Send>) -> io::Result<Box<dyn Read + Send>>;
    /// As [`Envelope::open`], buffered: [`Plain`] hands out `stored`'s own buffer.
    fn open_buffered(
        &self,
        stored: Box<dyn BufRead + Send>,
    ) -> io::Result<Box<dyn BufRead + Send>> {
        let opened = self.open(Box::new(stored))?;
        Ok(Box::new(BufReader::with_capacity(DECODE_BUFFER, opened)))
    }
    /// Whether opening authenticates every stored byte before it is decompressed, so that
    /// zstd's own checksums would check the same bytes twice.
    fn authenticates(&self) -> bool {
        false
    }
    /// The unlocked repository identity, which new key files seal.
    fn repository_identity(&self) -> Option<&age::x25519::Identity> {
        None
    }
    /// Where the chunks of a sealed object are, from its first stored bytes `head` and its
    /// stored size, to open ranges of it alone; `None` when its stored bytes are its
    /// content ([`Plain`]) or `head` ends inside the header.
    fn chunks(&self, _head: &[u8], _stored_len: u64) -> io::Result<Option<ChunkLayout>> {
        Ok(None)
    }
}

/// A sealing writer; `finish` completes the envelope and returns the store writer.
pub(crate) trait Sealed: Write + Send {
    fn finish(self: Box<Self>) -> io::Result<RawWriter>;
}

/// No encryption (the marker's `"encryption": "none"`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Plain;

impl Envelope for Plain {
    fn seal(&self, stored: RawWriter) -> io::Result<Box<dyn Sealed>> {
        Ok(Box::new(stored))
    }

    fn open(&self, stored: Box<dyn Read + Send>) -> io::Result<Box<dyn Read + Send>> {
        Ok(stored)
    }

    fn open_buffered(
        &self,
        stored: Box<dyn BufRead + Send>,
    ) -> io::Result<Box<dyn BufRead + Send>> {
        Ok(stored)
    }
}

impl Sealed for RawWriter {
    fn finish(self: Box<Self>) -> io::Result<RawWriter> {
        Ok(*self)
    }
}

/// Zstd compresses on every core.
fn threads() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// Frames are decoded on worker threads only with cores to spare. On two cores a restore's
/// own threads keep both busy: decoding apart, which copies every frame once more, measured
/// no faster and 10 MB larger (docs/architecture.md). At most four workers, so memory stays
/// a few frames.
fn decode_threads() -> u32 {
    match threads() {
        n if n >= 4 => n.min(4),
        _ => 0,
    }
}

/// A blocking writer of one object through the pipeline. Dropping it without
/// [`ObjectWriter::finish`] aborts the object: nothing becomes visible.
pub struct ObjectWriter {
    key: String,
    location: String,
    encoder: Encoder<Box<dyn Sealed>>,
}

impl fmt::Debug for ObjectWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectWriter")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ObjectWriter {
    pub(crate) fn new(
        raw: RawWriter,
        key: &str,
        location: &str,
        compression: Compression,
        envelope: &dyn Envelope,
    ) -> Result<Self, Error> {
        let sealed = envelope.seal(raw).map_err(Error::stream("sealing", key))?;
        // With threads, the encoder writes into `sealed` on a thread of its own.
        let encoder = match envelope.authenticates() {
            true => Encoder::without_checksums(sealed, compression, threads()),
            false => Encoder::new(sealed, compression, threads()),
        }
        .map_err(Error::stream("compressing", key))?;
        Ok(Self {
            key: key.to_string(),
            location: location.to_string(),
            encoder,
        })
    }

    /// The object key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Store what `file` holds, to its end; returns the bytes read. Cheaper than
    /// [`io::copy`] into the writer: the codec's workers read the chunks they compress
    /// straight into their own buffers.
    pub fn copy_from_file(&mut self, file: std::fs::File) -> io::Result<u64> {
        self.encoder.copy_from_file(file)
    }

    /// Flush the codec and the envelope and store the object; it becomes visible at once,
    /// whole (on a local repository also durable: fsynced before it is renamed into place).
    pub fn finish(self) -> Result<Written, Error> {
        let (key, location) = (self.key, self.location);
        // The encoder's writer thread seals, hashes and stores: its errors are the store's.
        let sealed = self
            .encoder
            .finish()
            .map_err(Error::stream("compressing and storing", &key))?;
        let raw = sealed.finish().map_err(Error::stream("sealing", &key))?;
        raw.finish().map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                Error::AlreadyExists {
                    key: key.clone(),
                    location,
                }
            } else {
                Error::stream("storing", &key)(e)
            }
        })
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.encoder.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.encoder.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.encoder.flush()
    }
}

impl ReadInto for ObjectWriter {
    /// `reader` is read straight into the chunks the codec's workers compress.
    fn read_into(&mut self, reader: &mut dyn Read) -> io::Result<u64> {
        self.encoder.read_into(reader)
    }
}

/// The stored bytes of an object are not what its record says.
#[derive(Debug)]
pub(crate) struct DigestMismatch {
    key: String,
    size: u64,
    sha256: String,
    expected_size: u64,
    expected_sha256: String,
}

impl fmt::Display for DigestMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} reads {} bytes with SHA-256 {}, which does not match what the snapshot recorded: {} bytes with {}",
            self.key, self.size, self.sha256, self.expected_size, self.expected_sha256
        )
    }
}

impl std::error::Error for DigestMismatch {}

/// Reads stored bytes while hashing them; at the end of the stream, a size or digest other
/// than the record's is a read error, so whoever reads an object to its end never accepts
/// damaged data.
pub(crate) struct Verified<R> {
    inner: R,
    key: String,
    expected: Option<(u64, String)>,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> Verified<R> {
    pub(crate) fn new(inner: R, key: &str, expected: Option<&ObjectRef>) -> Self {
        Self {
            inner,
            key: key.to_string(),
            expected: expected.map(|o| (o.size, o.sha256.clone())),
            hasher: Sha256::new(),
            size: 0,
        }
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some((expected_size, _)) = &self.expected else {
            return self.inner.read(buf);
        };
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
            self.size += n as u64;
            if self.size > *expected_size {
                // Past the recorded size: fail now rather than after reading the rest.
                return Err(self.mismatch());
            }
        } else if !buf.is_empty() {
            let (expected_size, expected_sha256) = self.expected.take().expect("checked above");
            let sha256 = hex::encode(self.hasher.finalize_reset());
            if self.size != expected_size || sha256 != expected_sha256 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    DigestMismatch {
                        key: self.key.clone(),
                        size: self.size,
                        sha256,
                        expected_size,
                        expected_sha256,
                    },
                ));
            }
        }
        Ok(n)
    }
}

impl<R> Verified<R> {
    fn mismatch(&mut self) -> io::Error {
        let (expected_size, expected_sha256) = self.expected.take().unwrap_or_default();
        io::Error::new(
            io::ErrorKind::InvalidData,
            DigestMismatch {
                key: self.key.clone(),
                size: self.size,
                sha256: "(not computed: longer than recorded)".to_string(),
                expected_size,
                expected_sha256,
            },
        )
    }
}

/// A blocking reader of one object through the pipeline: fetched, checked against its
/// record (when one is given) at the end of the stream, opened and decompressed (the codec
/// is detected from the stream's first bytes).
pub struct ObjectReader {
    key: String,
    inner: Decoder<'static>,
    fetched_ahead: bool,
}

impl fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectReader")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ObjectReader {
    pub(crate) fn new(
        raw: RawReader,
        key: &str,
        expected: Option<&ObjectRef>,
        envelope: &dyn Envelope,
    ) -> Result<Self, Error> {
        // Ranges of a remote object arrive ahead of their reader already, fetched on the
        // runtime's threads: a read-ahead thread over them would only copy every byte once
        // more, and so would a buffer of the decoder's own. The thread still runs where it
        // overlaps work: reading a file, hashing.
        let raw = match expected {
            None => raw.into_fetched_ahead(),
            Some(_) => Err(Box::new(raw)),
        };
        match raw {
            Ok(ranges) => {
                let opened = envelope
                    .open_buffered(Box::new(ranges))
                    .map_err(Error::stream("opening", key))?;
                let decoder = Decoder::with_threads_buffered(opened, decode_threads());
                Self::decoding(decoder, key, true)
            }
            Err(raw) => {
                let stored = ReadAhead::spawn(Verified::new(*raw, key, expected))
                    .map_err(Error::stream("reading", key))?;
                Self::from_stored(Box::new(stored), key, envelope)
            }
        }
    }

    pub(crate) fn from_stored(
        stored: Box<dyn Read + Send>,
        key: &str,
        envelope: &dyn Envelope,
    ) -> Result<Self, Error> {
        let opened = envelope
            .open(stored)
            .map_err(Error::stream("opening", key))?;
        Self::decoding(Decoder::with_threads(opened, decode_threads()), key, false)
    }

    fn decoding(
        decoder: io::Result<Decoder<'static>>,
        key: &str,
        fetched_ahead: bool,
    ) -> Result<Self, Error> {
        let inner = decoder.map_err(Error::stream("reading", key))?;
        Ok(Self {
            key: key.to_string(),
            inner,
            fetched_ahead,
        })
    }

    /// Whether the stored bytes arrive ahead of this reader on the runtime's threads (a
    /// remote object read without its record's check), so that only opening and decoding
    /// are left to the reading thread.
    pub fn fetched_ahead(&self) -> bool {
        self.fetched_ahead
    }

    /// The object key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Refuses an object that does not read as compressed: its first bytes tell the codec,
    /// so damage there would pass it off as a plain object, unchecked.
    pub(crate) fn compressed(self) -> Result<Self, Error> {
        match self.inner.codec() {
            strongbox_archive::Codec::None => Err(Error::Corrupt {
                key: self.key,
                reason:
                    "it does not start as a zstd or gzip stream, as every object of its kind does"
                        .to_string(),
            }),
            _ => Ok(self),
        }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use object_store::memory::InMemory;
    use object_store::{ObjectStore, ObjectStoreExt, PutMode};
    use strongbox_manifest::ObjectRole;

    use crate::encryption::Age;

    fn object(data: &[u8]) -> ObjectRef {
        ObjectRef {
            key: "k".into(),
            size: data.len() as u64,
            sha256: hex::encode(Sha256::digest(data)),
            role: ObjectRole::Dump,
        }
    }

    fn read_all(data: &[u8], expected: Option<&ObjectRef>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Verified::new(data, "k", expected)
            .read_to_end(&mut out)
            .map(|_| out)
    }

    /// The stored bytes of an object written through the pipeline with `envelope`, opened
    /// again: the compressed stream.
    fn written_and_opened(envelope: &dyn Envelope, data: &[u8]) -> Vec<u8> {
        let rt = crate::raw::tests::runtime();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let raw = RawWriter::buffer("k".into(), rt.clone(), store.clone(), PutMode::Overwrite);
        let mut writer =
            ObjectWriter::new(raw, "k", "memory://", Compression::Zstd(3), envelope).unwrap();
        writer.write_all(data).unwrap();
        writer.finish().unwrap();
        let stored = rt
            .block_on(async { store.get(&"k".into()).await?.bytes().await })
            .unwrap();
        let mut opened = Vec::new();
        envelope
            .open(Box::new(io::Cursor::new(stored)))
            .unwrap()
            .read_to_end(&mut opened)
            .unwrap();
        opened
    }

    /// What the archive crate's encoder makes of `data`, with or without checksums (its
    /// frames are the same however the bytes are written).
    fn encoded(data: &[u8], checksums: bool) -> Vec<u8> {
        let compression = Compression::Zstd(3);
        let mut encoder = match checksums {
            true => Encoder::new(Vec::new(), compression, threads()),
            false => Encoder::without_checksums(Vec::new(), compression, threads()),
        }
        .unwrap();
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn zstd_checksums_only_where_no_age_tag_authenticates_the_bytes() {
        let identity = crate::encryption::generate();
        let age = Age::new(identity.to_public(), Some(identity), "memory://");
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .chain((0..3_000_000u32).map(|i| (i % 251) as u8))
            .collect();
        assert!(encoded(&data, true) != encoded(&data, false));
        for (envelope, checksums) in [(&Plain as &dyn Envelope, true), (&age, false)] {
            let stream = written_and_opened(envelope, &data);
            assert!(
                stream == encoded(&data, checksums),
                "{envelope:?}: frames with checksums {}",
                !checksums
            );
            assert!(zstd::stream::decode_all(&stream[..]).unwrap() == data);
        }
    }

    #[test]
    fn verified_reads_pass_matching_bytes_and_refuse_others() {
        let data = b"stored bytes".to_vec();
        let good = object(&data);
        let mut longer = data.clone();
        longer.push(b'!');
        let mut flipped = data.clone();
        flipped[3] ^= 1;
        let cases: [(&[u8], Option<&ObjectRef>, bool); 5] = [
            (&data, Some(&good), true),
            (&data, None, true),
            (&flipped, Some(&good), false),
            (&data[..5], Some(&good), false),
            (&longer, Some(&good), false),
        ];
        for (bytes, expected, ok) in cases {
            let result = read_all(bytes, expected);
            assert_eq!(result.is_ok(), ok, "{:?}", String::from_utf8_lossy(bytes));
            if let Err(e) = result {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                assert!(e.to_string().contains("the snapshot recorded"), "{e}");
            }
        }
    }
}
