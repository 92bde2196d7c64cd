use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::frame_decoder::{self, FrameDecoder};
use crate::frames::FrameEncoder;
use crate::Error;
use crate::WriteBehind;

/// How a snapshot's data is compressed: `zstd`, `zstd:N` (1–19), `gzip`, `gzip:N` (1–9), `none`.
///
/// ```
/// use strongbox_archive::Compression;
/// let c: Compression = "zstd:9".parse()?;
/// assert_eq!(c, Compression::Zstd(9));
/// assert_eq!(c.extension(), "tar.zst");
/// assert_eq!(Compression::default().to_string(), "zstd:3");
/// # Ok::<(), strongbox_archive::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Compression {
    /// Zstandard at the given level, in independent frames compressed on every core.
    Zstd(i32),
    /// Gzip (deflate) at the given level.
    Gzip(u32),
    /// No compression: a plain tar stream.
    None,
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Zstd(3)
    }
}

impl Compression {
    /// File name extension of a tar stream in this compression.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Zstd(_) => "tar.zst",
            Compression::Gzip(_) => "tar.gz",
            Compression::None => "tar",
        }
    }

    /// The codec that reads what this compression writes.
    pub fn codec(self) -> Codec {
        match self {
            Compression::Zstd(_) => Codec::Zstd,
            Compression::Gzip(_) => Codec::Gzip,
            Compression::None => Codec::None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::Zstd(level) => write!(f, "zstd:{level}"),
            Compression::Gzip(level) => write!(f, "gzip:{level}"),
            Compression::None => f.write_str("none"),
        }
    }
}

impl FromStr for Compression {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidCompression {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (name, level) = match spec.split_once(':') {
            Some((name, level)) => (name, Some(level)),
            None => (spec, None),
        };
        let level = |range: std::ops::RangeInclusive<i32>, default: i32| match level {
            None => Ok(default),
            Some(text) => match text.parse::<i32>() {
                Ok(n) if range.contains(&n) => Ok(n),
                _ => Err(invalid(&format!(
                    "level must be a number from {} to {}",
                    range.start(),
                    range.end()
                ))),
            },
        };
        match name {
            "zstd" => Ok(Compression::Zstd(level(1..=19, 3)?)),
            "gzip" | "gz" => Ok(Compression::Gzip(level(1..=9, 6)? as u32)),
            "none" if level(0..=0, 0).is_ok() => Ok(Compression::None),
            _ => Err(invalid("expected zstd, zstd:N, gzip, gzip:N or none")),
        }
    }
}

impl TryFrom<String> for Compression {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        value.parse()
    }
}

impl From<Compression> for String {
    fn from(value: Compression) -> Self {
        value.to_string()
    }
}

/// A stream's codec, as detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Zstandard frame magic `28 b5 2f fd`.
    Zstd,
    /// Gzip magic `1f 8b`.
    Gzip,
    /// Anything else is read as an uncompressed stream.
    None,
}

impl Codec {
    /// Detect the codec from a stream's first bytes.
    pub fn detect(head: &[u8]) -> Codec {
        if head.starts_with(&crate::frames::MAGIC) {
            Codec::Zstd
        } else if head.starts_with(&[0x1f, 0x8b]) {
            Codec::Gzip
        } else {
            Codec::None
        }
    }
}

/// A compressing writer; [`Encoder::finish`] must be called to complete the stream.
///
/// With `threads` above 0 the compressed stream is written to `inner` on a thread of its
/// own, so that what `inner` does (encrypting, hashing, storing) overlaps with compressing;
/// `flush` then does not reach `inner`, and dropping the encoder unfinished drops `inner`
/// unfinished before `drop` returns.
pub struct Encoder<W: Write + Send + 'static>(Inner<W>);

enum Inner<W: Write + Send + 'static> {
    /// One zstd frame, compressed on the calling thread.
    Zstd(zstd::stream::write::Encoder<'static, Out<W>>),
    /// Independent zstd frames compressed on worker threads, random-looking runs raw.
    Frames(FrameEncoder<W>),
    Gzip(flate2::write::GzEncoder<Out<W>>),
    None(Out<W>),
}

/// Where a single-threaded codec writes: `inner` itself, or `inner` behind a thread.
enum Out<W: Write + Send + 'static> {
    Direct(W),
    Behind(WriteBehind<W>),
}

impl<W: Write + Send + 'static> Out<W> {
    fn new(inner: W, threads: u32) -> io::Result<Self> {
        Ok(if threads > 0 {
            Out::Behind(WriteBehind::spawn(inner)?)
        } else {
            Out::Direct(inner)
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Out::Direct(inner) => Ok(inner),
            Out::Behind(behind) => behind.finish(),
        }
    }
}

impl<W: Write + Send + 'static> Write for Out<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Out::Direct(inner) => inner.write(buf),
            Out::Behind(behind) => behind.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::Direct(inner) => inner.flush(),
            Out::Behind(behind) => behind.flush(),
        }
    }
}

impl<W: Write + Send + 'static> Encoder<W> {
    /// Start a compressed stream into `inner`. With `threads` above 0, zstd compresses
    /// independent frames on that many worker threads and stores random-looking runs of
    /// bytes raw; with 0, one frame on the calling thread.
    ///
    /// As the zstd CLI does, every zstd frame carries a content checksum, checked by every
    /// reader (`zstd -d` too): it catches damage where no record holds a SHA-256 (WAL).
    pub fn new(inner: W, compression: Compression, threads: u32) -> io::Result<Self> {
        Self::start(inner, compression, threads, true)
    }

    /// Like [`Encoder::new`], but zstd frames carry no content checksum: for a stream whose
    /// every byte something else authenticates before it is decompressed (an age file's
    /// tag on each 64 KiB chunk), where the checksum would check the same bytes twice.
    pub fn without_checksums(inner: W, compression: Compression, threads: u32) -> io::Result<Self> {
        Self::start(inner, compression, threads, false)
    }

    fn start(inner: W, compression: Compression, threads: u32, checksum: bool) -> io::Result<Self> {
        Ok(Encoder(match compression {
            Compression::Zstd(level) if threads > 0 => {
                Inner::Frames(FrameEncoder::new(inner, level, threads, checksum)?)
            }
            Compression::Zstd(level) => {
                let mut encoder = zstd::stream::write::Encoder::new(Out::Direct(inner), level)?;
                encoder.include_checksum(checksum)?;
                Inner::Zstd(encoder)
            }
            Compression::Gzip(level) => Inner::Gzip(flate2::write::GzEncoder::new(
                Out::new(inner, threads)?,
                flate2::Compression::new(level),
            )),
            Compression::None => Inner::None(Out::new(inner, threads)?),
        }))
    }

    /// Compress what `file` holds, to its end; returns the bytes read. With worker threads,
    /// each reads the chunks it compresses.
    pub fn copy_from_file(&mut self, mut file: std::fs::File) -> io::Result<u64> {
        match &mut self.0 {
            Inner::Frames(encoder) => encoder.read_file(file),
            _ => io::copy(&mut file, self),
        }
    }

    /// Flush the codec's last frame and return the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self.0 {
            Inner::Zstd(encoder) => encoder.finish()?.finish(),
            Inner::Frames(encoder) => encoder.finish(),
            Inner::Gzip(encoder) => encoder.finish()?.finish(),
            Inner::None(inner) => inner.finish(),
        }
    }
}

impl<W: Write + Send + 'static> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Inner::Zstd(encoder) => encoder.write(buf),
            Inner::Frames(encoder) => encoder.write(buf),
            Inner::Gzip(encoder) => encoder.write(buf),
            Inner::None(inner) => inner.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Inner::Zstd(encoder) => encoder.flush(),
            Inner::Frames(encoder) => encoder.flush(),
            Inner::Gzip(encoder) => encoder.flush(),
            Inner::None(inner) => inner.flush(),
        }
    }
}

impl<W: Write + Send + 'static> crate::ReadInto for Encoder<W> {
    /// With worker threads, `reader` is read straight into the chunks they compress.
    fn read_into(&mut self, reader: &mut dyn Read) -> io::Result<u64> {
        match &mut self.0 {
            Inner::Frames(encoder) => encoder.read_from(reader),
            _ => io::copy(reader, self),
        }
    }
}

/// What [`Decoder`] reads of a stream before it decides its codec: the magic bytes and the
/// longest zstd frame header.
const HEAD: usize = 32;

/// The buffer [`Decoder::with_threads`] reads a stream through. Small: std zeroes the whole
/// buffer on its first fill, fresh pages for every object opened (a chain's restore holds 20
/// archives open at once).
pub const DECODE_BUFFER: usize = 64 * 1024;

/// A decompressing reader whose codec was detected from the stream's magic bytes.
pub struct Decoder<'a> {
    inner: Box<dyn Read + Send + 'a>,
    codec: Codec,
}

impl<'a> Decoder<'a> {
    /// Detect the codec of `reader` and decompress it on the calling thread.
    pub fn new<R: Read + Send + 'a>(reader: R) -> io::Result<Self> {
        Self::with_threads(reader, 0)
    }

    /// Detect the codec of `reader` and decompress it. With `threads` above 1, a zstd
    /// stream of independent frames (what an [`Encoder`] with threads writes) is decoded
    /// frame by frame on that many worker threads, a few frames ahead of the reader.
    pub fn with_threads<R: Read + Send + 'a>(reader: R, threads: u32) -> io::Result<Self> {
        Self::with_threads_buffered(BufReader::with_capacity(DECODE_BUFFER, reader), threads)
    }

    /// As [`Decoder::with_threads`], for a reader that holds what it read in a buffer of its
    /// own already: the codec reads that buffer, nothing is copied into another.
    pub fn with_threads_buffered<R: BufRead + Send + 'a>(
        mut reader: R,
        threads: u32,
    ) -> io::Result<Self> {
        // The codec is told by a whole frame header, which a reader's first buffer may not
        // hold: a network read can return a few bytes.
        if (1..HEAD).contains(&reader.fill_buf()?.len()) {
            let mut head = Vec::with_capacity(HEAD);
            while head.len() < HEAD {
                let more = reader.fill_buf()?;
                if more.is_empty() {
                    break;
                }
                let n = more.len().min(HEAD - head.len());
                head.extend_from_slice(&more[..n]);
                reader.consume(n);
            }
            return Self::detected(io::Cursor::new(head).chain(reader), threads);
        }
        Self::detected(reader, threads)
    }

    /// Decompress `buffered`, whose first buffer holds at least [`HEAD`] bytes or all of it.
    fn detected<R: BufRead + Send + 'a>(mut buffered: R, threads: u32) -> io::Result<Self> {
        let head = buffered.fill_buf()?;
        let codec = Codec::detect(head);
        let inner: Box<dyn Read + Send + 'a> = match codec {
            Codec::Zstd if threads > 1 && frame_decoder::is_framed(head) => {
                Box::new(FrameDecoder::new(buffered, threads)?)
            }
            Codec::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
            Codec::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            Codec::None => Box::new(buffered),
        };
        Ok(Self { inner, codec })
    }

    /// The detected codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }
}

impl Read for Decoder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("zstd", Some(Compression::Zstd(3)))]
    #[case("zstd:1", Some(Compression::Zstd(1)))]
    #[case("zstd:19", Some(Compression::Zstd(19)))]
    #[case("zstd:20", None)]
    #[case("zstd:0", None)]
    #[case("zstd:x", None)]
    #[case("gzip", Some(Compression::Gzip(6)))]
    #[case("gzip:9", Some(Compression::Gzip(9)))]
    #[case("gzip:10", None)]
    #[case("none", Some(Compression::None))]
    #[case("none:3", None)]
    #[case("lz4", None)]
    fn parses_compression_specs(#[case] spec: &str, #[case] expected: Option<Compression>) {
        assert_eq!(spec.parse::<Compression>().ok(), expected);
    }

    /// A reader whose every buffer holds one byte, as a network read may.
    struct ByteAtATime<'b>(&'b [u8]);

    impl Read for ByteAtATime<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    impl BufRead for ByteAtATime<'_> {
        fn fill_buf(&mut self) -> io::Result<&[u8]> {
            Ok(&self.0[..self.0.len().min(1)])
        }

        fn consume(&mut self, n: usize) {
            self.0 = &self.0[n..];
        }
    }

    #[rstest]
    #[case(Compression::Zstd(3), 2, Codec::Zstd)]
    #[case(Compression::Zstd(3), 0, Codec::Zstd)]
    #[case(Compression::Gzip(6), 0, Codec::Gzip)]
    #[case(Compression::None, 0, Codec::None)]
    fn round_trips_and_detects_codec(
        #[case] compression: Compression,
        #[case] threads: u32,
        #[case] codec: Codec,
        #[values(0, 2)] decode_threads: u32,
        #[values(false, true)] byte_at_a_time: bool,
    ) {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut encoder = Encoder::new(Vec::new(), compression, threads).unwrap();
        encoder.write_all(&data).unwrap();
        let stored = encoder.finish().unwrap();
        // A reader's own buffer, however short its first fill, is read in place.
        let mut decoder = match byte_at_a_time {
            false => Decoder::with_threads(&stored[..], decode_threads),
            true => Decoder::with_threads_buffered(ByteAtATime(&stored), decode_threads),
        }
        .unwrap();
        assert_eq!(decoder.codec(), codec);
        let mut back = Vec::new();
        decoder.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }
}
