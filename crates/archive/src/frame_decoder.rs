//! Reading a stream of independent zstd frames (what [`crate::frames`] writes) with the
//! frames decoded side by side on worker threads and handed out in order.
//!
//! The reading thread only cuts the stream into frames: frame and block headers give every
//! length, so nothing is decoded there. Each worker decodes a whole frame into a buffer of
//! the size its header declares, which zstd holds it to, and checks its checksum. At most
//! one frame per worker and one more are in flight, so memory stays a few frames whatever
//! the stream's length. Only a stream whose first frame declares its content size, at most
//! [`MAX_FRAME`], is read this way (every zstd stream strongbox writes with worker
//! threads); [`is_framed`] tells which.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use zstd::bulk::Decompressor;

use crate::frames::{BLOCK as MAX_BLOCK, MAGIC};

/// Most content a frame may declare to be decoded on a worker, which holds it whole.
/// strongbox's frames hold at most 2 MiB.
const MAX_FRAME: u64 = 8 << 20;
/// Most stored bytes of one frame: its content, and block headers for every 128 KiB.
const MAX_STORED: usize = 2 * MAX_FRAME as usize;
/// Skippable frames (the seek table) have this magic, with any value in the low 4 bits.
const SKIPPABLE: u32 = 0x184D_2A50;

/// A frame header's first byte, the frame header descriptor of the zstd format.
#[derive(Debug, Clone, Copy)]
struct Descriptor(u8);

impl Descriptor {
    /// Whether the reserved bit is clear, as zstd requires.
    fn valid(self) -> bool {
        self.0 & 0x08 == 0
    }

    fn single_segment(self) -> bool {
        self.0 & 0x20 != 0
    }

    fn content_size_len(self) -> usize {
        match self.0 >> 6 {
            0 => usize::from(self.single_segment()),
            1 => 2,
            2 => 4,
            _ => 8,
        }
    }

    /// Bytes of the header after the magic number, this byte included.
    fn header_len(self) -> usize {
        let dictionary = [0, 1, 2, 4][usize::from(self.0 & 0x03)];
        1 + usize::from(!self.single_segment()) + dictionary + self.content_size_len()
    }

    fn checksum(self) -> bool {
        self.0 & 0x04 != 0
    }

    /// The content size that `header` (`header_len` bytes after the magic) declares.
    fn content_size(self, header: &[u8]) -> Option<u64> {
        let field = header.get(header.len().checked_sub(self.content_size_len())?..)?;
        match *field {
            [] => None,
            [a] => Some(u64::from(a)),
            [a, b] => Some(u64::from(u16::from_le_bytes([a, b])) + 256),
            _ => Some(le(field)),
        }
    }
}

fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0, |value, &b| (value << 8) | u64::from(b))
}

/// Whether a stream starting with `head` is one to decode frame by frame: its first frame
/// is a zstd frame whose header, whole in `head`, declares at most [`MAX_FRAME`] bytes.
pub(crate) fn is_framed(head: &[u8]) -> bool {
    let Some((magic, rest)) = head.split_first_chunk::<4>() else {
        return false;
    };
    let Some(&first) = rest.first() else {
        return false;
    };
    let descriptor = Descriptor(first);
    *magic == MAGIC
        && descriptor.valid()
        && rest
            .get(..descriptor.header_len())
            .and_then(|header| descriptor.content_size(header))
            .is_some_and(|size| size <= MAX_FRAME)
}

struct Job {
    frame: Vec<u8>,
    output: Vec<u8>,
    content: usize,
    done: SyncSender<Decoded>,
}

/// A decoded frame, and the buffer that held it stored.
type Decoded = (Vec<u8>, io::Result<Vec<u8>>);

/// A reader of the content of a stream of zstd frames, decoded on `threads` workers.
pub(crate) struct FrameDecoder<R> {
    input: R,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    /// Frames handed to the workers, in stream order, with their numbers.
    pending: VecDeque<(u64, Receiver<Decoded>)>,
    limit: usize,
    /// The decoded frame being read, and how far.
    current: Vec<u8>,
    pos: usize,
    spare_frames: Vec<Vec<u8>>,
    spare_outputs: Vec<Vec<u8>>,
    /// Frames cut from the input so far, to name the one that fails.
    frames: u64,
    ended: bool,
    /// A failure is returned again to every later read, never taken for the end.
    failed: Option<(io::ErrorKind, String)>,
}

impl<R: Read> FrameDecoder<R> {
    pub(crate) fn new(input: R, threads: u32) -> io::Result<Self> {
        let threads = threads.max(1) as usize;
        let (jobs, queue) = sync_channel::<Job>(threads);
        let queue = Arc::new(Mutex::new(queue));
        let workers = (0..threads)
            .map(|_| {
                let queue = Arc::clone(&queue);
                let mut decompressor = Decompressor::new()?;
                std::thread::Builder::new()
                    .name("strongbox-unzstd".to_string())
                    .spawn(move || {
                        while let Ok(Ok(job)) = queue.lock().map(|queue| queue.recv()) {
                            let Job {
                                frame,
                                mut output,
                                content,
                                done,
                            } = job;
                            output.clear();
                            let decoded = output
                                .try_reserve_exact(content)
                                .map_err(io::Error::other)
                                .and_then(|()| {
                                    decompressor.decompress_to_buffer(&frame, &mut output)
                                })
                                .map(|_| output);
                            // The reader may be gone (dropped early): the buffers are freed.
                            drop(done.send((frame, decoded)));
                        }
                    })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            input,
            jobs: Some(jobs),
            workers,
            pending: VecDeque::new(),
            limit: threads + 1,
            current: Vec::new(),
            pos: 0,
            spare_frames: Vec::new(),
            spare_outputs: Vec::new(),
            frames: 0,
            ended: false,
            failed: None,
        })
    }

    /// Hand frames to the workers until as many are in flight as allowed or the input ends.
    fn dispatch(&mut self) -> io::Result<()> {
        while !self.ended && self.pending.len() < self.limit {
            let mut frame = self.spare_frames.pop().unwrap_or_default();
            frame.clear();
            let number = self.frames + 1;
            let Some(content) = self.next_frame(&mut frame).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    corrupt(number, "the stream ends inside it")
                } else {
                    e
                }
            })?
            else {
                self.ended = true;
                break;
            };
            let (done, result) = sync_channel(1);
            let job = Job {
                frame,
                output: self.spare_outputs.pop().unwrap_or_default(),
                content,
                done,
            };
            let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
            jobs.send(job).map_err(|_| stopped())?;
            self.pending.push_back((number, result));
        }
        Ok(())
    }

    /// Read the next zstd frame into `frame`, passing over skippable frames; returns its
    /// declared content size, or `None` at the end of the stream.
    fn next_frame(&mut self, frame: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let number = self.frames + 1;
        let bad = |what: String| corrupt(number, &what);
        loop {
            let mut magic = [0u8; 4];
            if !read_exact_or_end(&mut self.input, &mut magic)? {
                return Ok(None);
            }
            if u32::from_le_bytes(magic) & !0xF == SKIPPABLE {
                let mut size = [0u8; 4];
                self.input.read_exact(&mut size)?;
                let size = u64::from(u32::from_le_bytes(size));
                let skipped = io::copy(&mut (&mut self.input).take(size), &mut io::sink())?;
                if skipped < size {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                continue;
            }
            if magic != MAGIC {
                return Err(bad(format!("starts with {magic:02x?}, not a frame")));
            }
            self.frames = number;
            frame.extend_from_slice(&MAGIC);
            let mut first = [0u8; 1];
            self.input.read_exact(&mut first)?;
            let descriptor = Descriptor(first[0]);
            if !descriptor.valid() {
                return Err(bad("reserved header bit set".to_string()));
            }
            let start = frame.len();
            frame.push(first[0]);
            self.append(frame, descriptor.header_len() - 1)?;
            let content = descriptor
                .content_size(&frame[start..])
                .filter(|&size| size <= MAX_FRAME)
                .ok_or_else(|| {
                    bad(format!(
                        "declares no content size of at most {MAX_FRAME} bytes, as every frame \
                         of this stream must"
                    ))
                })?;
            loop {
                let mut header = [0u8; 3];
                self.input.read_exact(&mut header)?;
                frame.extend_from_slice(&header);
                let header = le(&header);
                let size = (header >> 3) as usize;
                let stored = match (header >> 1) & 0x3 {
                    0 | 2 => size,
                    1 => 1,
                    _ => return Err(bad("reserved block type".to_string())),
                };
                if size > MAX_BLOCK || frame.len() + stored > MAX_STORED {
                    return Err(bad(format!("a block of {size} bytes is too long")));
                }
                self.append(frame, stored)?;
                if header & 1 == 1 {
                    break;
                }
            }
            if descriptor.checksum() {
                self.append(frame, 4)?;
            }
            return Ok(Some(content as usize));
        }
    }

    /// Read `len` more bytes of the frame onto its end (no zero-filling first: this runs
    /// for every stored byte).
    fn append(&mut self, frame: &mut Vec<u8>, len: usize) -> io::Result<()> {
        frame.reserve(len);
        let read = (&mut self.input).take(len as u64).read_to_end(frame)?;
        if read < len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// The next decoded frame, or `None` at the end of the stream.
    fn next_decoded(&mut self) -> io::Result<Option<Vec<u8>>> {
        self.dispatch()?;
        let Some((number, result)) = self.pending.pop_front() else {
            return Ok(None);
        };
        let (frame, decoded) = result.recv().map_err(|_| stopped())?;
        self.spare_frames.push(frame);
        decoded
            .map(Some)
            .map_err(|e| corrupt(number, &e.to_string()))
    }
}

impl<R: Read> Read for FrameDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, message)) = &self.failed {
            return Err(io::Error::new(*kind, message.clone()));
        }
        while self.pos == self.current.len() {
            match self.next_decoded() {
                Ok(Some(decoded)) => {
                    let done = std::mem::replace(&mut self.current, decoded);
                    self.spare_outputs.push(done);
                    self.pos = 0;
                }
                Ok(None) => return Ok(0),
                Err(e) => {
                    self.failed = Some((e.kind(), e.to_string()));
                    return Err(e);
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl<R> Drop for FrameDecoder<R> {
    fn drop(&mut self) {
        // Workers finish the frame they hold and stop once the queue is closed.
        self.jobs = None;
        for worker in self.workers.drain(..) {
            drop(worker.join());
        }
    }
}

/// Fill `buf` from `reader`: `false` at a clean end before the first byte.
fn read_exact_or_end(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn corrupt(number: u64, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("zstd frame {number}: {what}"),
    )
}

fn stopped() -> io::Error {
    io::Error::other("a zstd decoding worker stopped")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Compression, Encoder};
    use rstest::rstest;
    use std::io::Write;

    /// Bytes with runs zstd shrinks and runs it stores raw.
    fn mixed(len: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|i| {
                if (i / (300 << 10)) % 2 == 0 {
                    (i % 251) as u8
                } else {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                }
            })
            .collect()
    }

    fn framed(data: &[u8]) -> Vec<u8> {
        let mut encoder = Encoder::new(Vec::new(), Compression::Zstd(3), 2).unwrap();
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn decode(stored: &[u8], threads: u32) -> io::Result<Vec<u8>> {
        assert!(is_framed(stored));
        let mut out = Vec::new();
        FrameDecoder::new(stored, threads)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[rstest]
    fn frames_decode_in_order_on_any_number_of_workers(
        #[values(0, 1, 5 << 20, (9 << 20) + 7)] len: usize,
        #[values(1, 2, 3)] threads: u32,
    ) {
        let data = mixed(len);
        assert_eq!(decode(&framed(&data), threads).unwrap(), data);
    }

    #[test]
    fn damage_fails_the_read_and_every_read_after_it() {
        let data = mixed(6 << 20);
        let stored = framed(&data);
        let mut flipped = stored.clone();
        flipped[stored.len() / 2] ^= 0x40;
        for (name, bytes) in [
            ("truncated", &stored[..stored.len() / 2]),
            ("flipped", &flipped[..]),
            ("truncated in the first header", &stored[..6]),
            (
                "followed by bytes that are no frame",
                &[&stored[..], b"junk!"].concat(),
            ),
        ] {
            let mut decoder = FrameDecoder::new(bytes, 2).unwrap();
            let mut out = Vec::new();
            assert!(decoder.read_to_end(&mut out).is_err(), "{name}");
            assert!(decoder.read(&mut [0u8; 16]).is_err(), "{name}: not sticky");
            assert!(out.len() < data.len(), "{name}");
        }
    }

    #[test]
    fn a_later_frame_without_a_bounded_content_size_is_refused_naming_it() {
        let mut stored = framed(b"first frame");
        // zstd's streaming encoder declares no content size.
        let mut streamed = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        streamed.write_all(b"second").unwrap();
        stored.extend(streamed.finish().unwrap());
        let err = decode(&stored, 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(
            err.to_string()
                .contains("zstd frame 2: declares no content size"),
            "{err}"
        );
    }

    #[rstest]
    #[case::framed(&framed(b"abc"), true)]
    #[case::bulk(&zstd::bulk::compress(b"abc", 3).unwrap(), true)]
    #[case::too_short(&framed(b"abc")[..5], false)]
    #[case::gzip(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0], false)]
    #[case::no_content_size(&{
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.write_all(b"abc").unwrap();
        e.finish().unwrap()
    }, false)]
    fn only_streams_whose_first_frame_declares_its_size_are_framed(
        #[case] head: &[u8],
        #[case] framed: bool,
    ) {
        assert_eq!(is_framed(head), framed);
    }
}
