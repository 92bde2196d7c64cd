//! zstd as a sequence of independent frames, compressed on worker threads.
//!
//! The stream is cut into chunks of [`CHUNK`] bytes; workers compress chunks side by side and
//! the frames are written in order, so the result is one valid zstd stream (`zstd -d` reads
//! concatenated frames) whose frames can each be decoded alone. Within a chunk, runs of
//! 128 KiB blocks whose bytes look random (JPEG, MP4, already compressed data) are stored in
//! raw zstd blocks instead of being handed to the compressor, which would spend most of its
//! time failing to shrink them.

use std::collections::BTreeMap;
use std::io::{self, Cursor, Write};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use zstd::bulk::Compressor;
use zstd::zstd_safe::CParameter;

/// Input bytes per chunk: the unit of parallel work. zstd's window at the default level is
/// 2 MiB too, so independent chunks lose little ratio.
pub(crate) const CHUNK: usize = 2 << 20;
/// zstd's largest block, and the unit of the randomness probe.
const BLOCK: usize = 128 << 10;
/// A block with an order-0 entropy above this many bits per byte is stored raw: entropy
/// coding could save at most about 1 %, and such bytes hold no repeats worth finding.
const RAW_ENTROPY: f64 = 7.9;
/// Windows of a block the probe reads, and their length.
const SAMPLES: usize = 8;
const SAMPLE_WINDOW: usize = 2048;

const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Frame header descriptor of a raw frame: a 4-byte content size, single segment (the
/// window is the content), a content checksum, no dictionary.
const RAW_DESCRIPTOR: u8 = 0b1010_0100;

struct Job {
    seq: u64,
    input: Vec<u8>,
    output: Vec<u8>,
}

struct Done {
    seq: u64,
    input: Vec<u8>,
    output: io::Result<Vec<u8>>,
}

/// A writer of zstd frames compressed on `threads` workers; [`FrameEncoder::finish`]
/// writes the last frames and returns the inner writer.
pub(crate) struct FrameEncoder<W: Write> {
    inner: W,
    filling: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    level: i32,
    sent: u64,
    written: u64,
    ready: BTreeMap<u64, Vec<u8>>,
    spare_inputs: Vec<Vec<u8>>,
    spare_outputs: Vec<Vec<u8>>,
    limit: u64,
}

impl<W: Write> FrameEncoder<W> {
    pub(crate) fn new(inner: W, level: i32, threads: u32) -> io::Result<Self> {
        let threads = threads.max(1) as usize;
        let (jobs, queue) = sync_channel::<Job>(threads);
        let queue = Arc::new(Mutex::new(queue));
        let (finished, done) = channel();
        let workers = (0..threads)
            .map(|_| {
                let queue = Arc::clone(&queue);
                let finished = finished.clone();
                let mut compressor = compressor(level)?;
                std::thread::Builder::new()
                    .name("strongbox-zstd".to_string())
                    .spawn(move || loop {
                        let next = queue.lock().map(|queue| queue.recv());
                        let Ok(Ok(Job {
                            seq,
                            input,
                            mut output,
                        })) = next
                        else {
                            break;
                        };
                        output.clear();
                        let output =
                            compress_chunk(&mut compressor, &input, &mut output).map(|()| output);
                        if finished.send(Done { seq, input, output }).is_err() {
                            break;
                        }
                    })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            inner,
            filling: Vec::with_capacity(CHUNK),
            jobs: Some(jobs),
            done,
            workers,
            level,
            sent: 0,
            written: 0,
            ready: BTreeMap::new(),
            spare_inputs: Vec::new(),
            spare_outputs: Vec::new(),
            // One chunk per worker, one queued for each, one being filled: memory stays at
            // a few chunks whatever the stream's length.
            limit: 2 * threads as u64,
        })
    }

    /// Write every frame still to come and return the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        if self.sent == 0 && self.filling.is_empty() {
            // An empty stream is still one (empty) frame, which every zstd reader accepts.
            let frame = compressor(self.level)?.compress(&[])?;
            self.inner.write_all(&frame)?;
        }
        self.drain()?;
        self.jobs = None;
        for worker in self.workers.drain(..) {
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        }
        Ok(self.inner)
    }

    /// Hand the chunk being filled to the workers and write every frame up to it.
    fn drain(&mut self) -> io::Result<()> {
        if !self.filling.is_empty() {
            self.submit()?;
        }
        while self.written < self.sent {
            self.receive()?;
        }
        Ok(())
    }

    fn submit(&mut self) -> io::Result<()> {
        while self.sent - self.written >= self.limit {
            self.receive()?;
        }
        let next = self
            .spare_inputs
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK));
        let input = std::mem::replace(&mut self.filling, next);
        let output = self.spare_outputs.pop().unwrap_or_default();
        let job = Job {
            seq: self.sent,
            input,
            output,
        };
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(job).map_err(|_| stopped())?;
        self.sent += 1;
        Ok(())
    }

    /// Wait for one compressed chunk, and write what is now next in order.
    fn receive(&mut self) -> io::Result<()> {
        let Done {
            seq,
            mut input,
            output,
        } = self.done.recv().map_err(|_| stopped())?;
        input.clear();
        self.spare_inputs.push(input);
        self.ready.insert(seq, output?);
        while let Some(output) = self.ready.remove(&self.written) {
            self.inner.write_all(&output)?;
            self.spare_outputs.push(output);
            self.written += 1;
        }
        Ok(())
    }
}

impl<W: Write> Write for FrameEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.filling.len());
        self.filling.extend_from_slice(&buf[..n]);
        if self.filling.len() == CHUNK {
            self.submit()?;
        }
        Ok(n)
    }

    /// Everything written so far is compressed and reaches the inner writer.
    fn flush(&mut self) -> io::Result<()> {
        self.drain()?;
        self.inner.flush()
    }
}

fn stopped() -> io::Error {
    io::Error::other("a zstd worker thread stopped")
}

fn compressor(level: i32) -> io::Result<Compressor<'static>> {
    let mut compressor = Compressor::new(level)?;
    // As the zstd CLI does: a frame's content checksum, checked by every reader (`zstd -d`
    // too), catches damage where no record holds a SHA-256 (WAL).
    compressor.set_parameter(CParameter::ChecksumFlag(true))?;
    Ok(compressor)
}

/// Append `input` to `output` as frames: runs of random-looking blocks raw, the rest
/// compressed.
fn compress_chunk(
    compressor: &mut Compressor<'_>,
    input: &[u8],
    output: &mut Vec<u8>,
) -> io::Result<()> {
    let mut start = 0;
    while start < input.len() {
        let raw = looks_random(&input[start..(start + BLOCK).min(input.len())]);
        let mut end = (start + BLOCK).min(input.len());
        while end < input.len() && looks_random(&input[end..(end + BLOCK).min(input.len())]) == raw
        {
            end = (end + BLOCK).min(input.len());
        }
        let run = &input[start..end];
        if raw {
            raw_frame(run, output);
        } else {
            output.reserve(zstd::zstd_safe::compress_bound(run.len()));
            let mut cursor = Cursor::new(&mut *output);
            cursor.set_position(cursor.get_ref().len() as u64);
            compressor.compress_to_buffer(run, &mut cursor)?;
        }
        start = end;
    }
    Ok(())
}

/// Whether the bytes' order-0 entropy, sampled, is above [`RAW_ENTROPY`].
fn looks_random(block: &[u8]) -> bool {
    // Short tails are compressed: the probe would say little about them.
    if block.len() < 4096 {
        return false;
    }
    // Eight windows spread over the block: an eighth of the bytes of a full block, enough
    // for the estimate (its bias at 16 KiB is about 0.01 bit) at an eighth of the cost.
    let stride = block.len() / SAMPLES;
    let window = stride.min(SAMPLE_WINDOW);
    let mut counts = [0u32; 256];
    for i in 0..SAMPLES {
        for &byte in &block[i * stride..i * stride + window] {
            counts[byte as usize] += 1;
        }
    }
    let total = (SAMPLES * window) as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / total;
            -p * p.log2()
        })
        .sum();
    entropy > RAW_ENTROPY
}

/// A zstd frame holding `content` in raw blocks, with its content size and checksum.
fn raw_frame(content: &[u8], output: &mut Vec<u8>) {
    debug_assert!(content.len() <= CHUNK);
    output.reserve(content.len() + content.len() / BLOCK * 3 + 16);
    output.extend_from_slice(&MAGIC);
    output.push(RAW_DESCRIPTOR);
    output.extend_from_slice(&(content.len() as u32).to_le_bytes());
    let mut blocks = content.chunks(BLOCK).peekable();
    while let Some(block) = blocks.next() {
        let last = u32::from(blocks.peek().is_none());
        // Block header: last-block bit, type 0 (raw), 21-bit size.
        let header = last | ((block.len() as u32) << 3);
        output.extend_from_slice(&header.to_le_bytes()[..3]);
        output.extend_from_slice(block);
    }
    let checksum = xxhash_rust::xxh64::xxh64(content, 0) as u32;
    output.extend_from_slice(&checksum.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::io::Read;

    fn random(len: usize, seed: u64) -> Vec<u8> {
        // xorshift: reproducible bytes with no structure zstd could find.
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    fn text(len: usize) -> Vec<u8> {
        let words = ["backup ", "restore ", "snapshot ", "archive ", "listing\n"];
        words
            .iter()
            .cycle()
            .flat_map(|w| w.bytes())
            .take(len)
            .collect()
    }

    fn encode(data: &[u8], threads: u32) -> Vec<u8> {
        let mut encoder = FrameEncoder::new(Vec::new(), 3, threads).unwrap();
        // Odd write sizes, so chunks fill across calls.
        for piece in data.chunks(100_003) {
            encoder.write_all(piece).unwrap();
        }
        encoder.finish().unwrap()
    }

    fn decode(stored: &[u8]) -> Vec<u8> {
        let mut back = Vec::new();
        zstd::stream::read::Decoder::new(stored)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        back
    }

    #[rstest]
    #[case::empty(Vec::new())]
    #[case::tiny(b"hello".to_vec())]
    #[case::text_over_chunks(text(5 * CHUNK + 77))]
    #[case::random_over_chunks(random(3 * CHUNK + 5, 7))]
    #[case::exactly_one_chunk(random(CHUNK, 8))]
    #[case::mixed_blocks([random(300_000, 1), text(500_000), random(BLOCK, 2), text(10)].concat())]
    fn round_trips_through_zstd(#[case] data: Vec<u8>) {
        for threads in [1, 2, 3] {
            assert_eq!(decode(&encode(&data, threads)), data, "{threads} threads");
        }
    }

    #[test]
    fn random_bytes_are_stored_raw_and_text_compressed() {
        let noise = random(4 * CHUNK, 3);
        let stored = encode(&noise, 2);
        // Raw blocks: the bytes themselves, plus headers and checksums.
        assert!(stored.len() > noise.len(), "{}", stored.len());
        assert!(stored.len() < noise.len() + noise.len() / 1000);
        let window = &noise[BLOCK..BLOCK + 1000];
        assert!(stored.windows(1000).any(|w| w == window));
        let prose = text(4 * CHUNK);
        assert!(encode(&prose, 2).len() < prose.len() / 100);
    }

    #[test]
    fn a_damaged_raw_frame_fails_its_checksum() {
        let noise = random(BLOCK * 2, 4);
        let mut stored = encode(&noise, 1);
        let middle = stored.len() / 2;
        stored[middle] ^= 1;
        let mut back = Vec::new();
        let result = zstd::stream::read::Decoder::new(&stored[..])
            .unwrap()
            .read_to_end(&mut back);
        assert!(result.is_err(), "a flipped bit must not decode");
    }

    #[rstest]
    #[case::zeros(vec![0; BLOCK], false)]
    #[case::text(text(BLOCK), false)]
    #[case::random(random(BLOCK, 5), true)]
    #[case::short_random(random(1000, 6), false)]
    #[case::half_and_half([random(BLOCK / 2, 9), text(BLOCK / 2)].concat(), false)]
    fn probes_randomness(#[case] block: Vec<u8>, #[case] expected: bool) {
        assert_eq!(looks_random(&block), expected);
    }
}
