//! zstd as a sequence of independent frames, compressed on worker threads.
//!
//! The stream is cut into chunks of [`chunk_size`] bytes; workers compress chunks side by
//! side and the frames are written in order, so the result is one valid zstd stream (`zstd -d`
//! reads concatenated frames) whose frames can each be decoded alone. Within a chunk, runs of
//! 128 KiB blocks whose bytes look random (JPEG, MP4, already compressed data) are stored in
//! raw zstd blocks instead of being handed to the compressor, which would spend most of its
//! time failing to shrink them. Raw runs are cut into one frame per block, and the stream
//! ends with a seek table ([`crate::SeekTable`]), so that a reader can fetch only the frames
//! that hold the content it wants.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Cursor, IoSlice, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use zstd::bulk::Compressor;
use zstd::zstd_safe::CParameter;

use crate::seek::{self, FrameSizes};

/// Input bytes per chunk at the default level: the unit of parallel work. zstd's window at
/// that level is 2 MiB too, so independent chunks lose little ratio.
const CHUNK: usize = 2 << 20;

/// Input bytes per chunk at `level`. zstd's window is 512 KiB at level 1 and the fast
/// levels, so chunks of 1 MiB lose about 1 % (2 MiB ones 10 % at level 2) and halve the
/// buffers a short-lived process must fault in (`wal push`).
fn chunk_size(level: i32) -> usize {
    if level <= 1 {
        CHUNK / 2
    } else {
        CHUNK
    }
}

/// zstd's largest block, and the unit of the randomness probe.
pub(crate) const BLOCK: usize = 128 << 10;
/// A block with an order-0 entropy above this many bits per byte is stored raw: entropy
/// coding could save at most about 1 %, and such bytes hold no repeats worth finding.
const RAW_ENTROPY: f64 = 7.9;
/// Windows of a block the probe reads, and their length.
const SAMPLES: usize = 8;
const SAMPLE_WINDOW: usize = 2048;

pub(crate) const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Frame header descriptor of a raw frame: a 4-byte content size, single segment (the
/// window is the content), no dictionary; [`CHECKSUM_FLAG`] adds a content checksum.
const RAW_DESCRIPTOR: u8 = 0b1010_0000;
const CHECKSUM_FLAG: u8 = 0b0000_0100;

/// Chunk buffers are always a whole chunk long, `len` of it the chunk's bytes: a buffer is
/// filled again in place, never cleared and zeroed anew.
struct Job {
    seq: u64,
    input: Vec<u8>,
    len: usize,
    output: Vec<u8>,
    /// Where the worker reads `input` from itself; `None` when it comes filled.
    from: Option<Span>,
}

/// A chunk of a file, read by the worker that compresses it.
struct Span {
    file: Arc<File>,
    offset: u64,
    len: usize,
}

impl Span {
    fn read_into(&self, input: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(&mut input[..self.len], self.offset)
    }
}

struct Done {
    seq: u64,
    input: Vec<u8>,
    len: usize,
    output: io::Result<(Vec<u8>, Framed)>,
}

/// How a chunk's frames are laid out: `output` holds what the compressor and the raw frames'
/// headers made, and each raw block's content stays in the input, written in its place from
/// there (copying it into `output` cost a pass over every random-looking byte).
struct Framed {
    sizes: Vec<FrameSizes>,
    raw: Vec<Splice>,
}

/// The input's bytes `from` go at offset `at` of the output.
struct Splice {
    at: usize,
    from: Range<usize>,
}

/// A writer of zstd frames compressed on `threads` workers and written to `inner`, in order,
/// by a thread of its own (so the caller's thread only fills chunks).
/// [`FrameEncoder::finish`] writes the last frames and returns `inner`; `flush` waits until
/// every chunk reached `inner` but does not flush it. Dropping the encoder unfinished drops
/// `inner` unfinished, before `drop` returns.
pub(crate) struct FrameEncoder<W> {
    /// The chunk being filled, its first `filled` bytes so far.
    filling: Vec<u8>,
    filled: usize,
    chunk: usize,
    jobs: Option<SyncSender<Job>>,
    /// Buffers come back from the writer once their frames are written.
    returned: Receiver<(Vec<u8>, Vec<u8>)>,
    spare_inputs: Vec<Vec<u8>>,
    spare_outputs: Vec<Vec<u8>>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<(W, u64)>>>,
    sent: u64,
    back: u64,
    allocated: usize,
    limit: usize,
}

impl<W: Write + Send + 'static> FrameEncoder<W> {
    /// With `checksum`, every frame carries zstd's content checksum.
    pub(crate) fn new(mut inner: W, level: i32, threads: u32, checksum: bool) -> io::Result<Self> {
        let threads = threads.max(1) as usize;
        let (jobs, queue) = sync_channel::<Job>(threads);
        let queue = Arc::new(Mutex::new(queue));
        let (finished, done) = channel::<Done>();
        let (give_back, returned) = channel();
        let workers = (0..threads)
            .map(|_| {
                let queue = Arc::clone(&queue);
                let finished = finished.clone();
                let mut compressor = compressor(level, checksum)?;
                std::thread::Builder::new()
                    .name("strongbox-zstd".to_string())
                    .spawn(move || loop {
                        let next = queue.lock().map(|queue| queue.recv());
                        let Ok(Ok(Job {
                            seq,
                            mut input,
                            len,
                            mut output,
                            from,
                        })) = next
                        else {
                            break;
                        };
                        output.clear();
                        let output = from
                            .map_or(Ok(()), |span| span.read_into(&mut input))
                            .and_then(|()| {
                                compress_chunk(
                                    &mut compressor,
                                    &input[..len],
                                    &mut output,
                                    checksum,
                                )
                            })
                            .map(|frames| (output, frames));
                        let done = Done {
                            seq,
                            input,
                            len,
                            output,
                        };
                        if finished.send(done).is_err() {
                            break;
                        }
                    })
            })
            .collect::<io::Result<Vec<_>>>()?;
        drop(finished);
        let writer = std::thread::Builder::new()
            .name("strongbox-frames".to_string())
            .spawn(move || {
                // Frames finish out of order; they are written in order.
                let mut ready = BTreeMap::new();
                let mut written = 0;
                let mut frames = Vec::new();
                for Done {
                    seq,
                    input,
                    len,
                    output,
                } in done
                {
                    ready.insert(seq, (input, len, output?));
                    while let Some((input, len, (output, framed))) = ready.remove(&written) {
                        write_spliced(&mut inner, &output, &input[..len], &framed.raw)?;
                        frames.extend(framed.sizes);
                        written += 1;
                        // The encoder may be gone (dropped unfinished): the buffers are freed.
                        drop(give_back.send((input, output)));
                    }
                }
                inner.write_all(&seek::encode(&frames))?;
                Ok((inner, written))
            })?;
        Ok(Self {
            filling: vec![0; chunk_size(level)],
            filled: 0,
            chunk: chunk_size(level),
            jobs: Some(jobs),
            returned,
            spare_inputs: Vec::new(),
            spare_outputs: Vec::new(),
            workers,
            writer: Some(writer),
            sent: 0,
            back: 0,
            allocated: 1,
            // One chunk per worker, one queued for each, and one being filled: memory stays
            // at a few chunks whatever the stream's length.
            limit: 2 * threads + 1,
        })
    }

    /// Write every frame still to come and return the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        // An empty stream is still one (empty) frame, which every zstd reader accepts.
        if self.filled > 0 || self.sent == 0 {
            self.send()?;
        }
        let (inner, written) = self.stop()?;
        if written != self.sent {
            return Err(stopped());
        }
        Ok(inner)
    }

    /// Read `reader` to its end straight into the chunks, without the copy through a buffer
    /// that [`io::copy`] would make; returns the bytes read.
    pub(crate) fn read_from(&mut self, reader: &mut dyn io::Read) -> io::Result<u64> {
        let mut total = 0;
        loop {
            let n = match reader.read(self.room()?) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += n as u64;
            self.filled += n;
            if self.filled == self.chunk {
                self.send()?;
                self.refill()?;
            }
        }
    }

    /// Compress what `file` holds from its start to its end, each chunk read by the worker
    /// that compresses it: the copy out of the page cache is spread over the workers instead
    /// of being done first on this thread (for a `wal push`, a sixth of its time). Returns
    /// the bytes read.
    pub(crate) fn read_file(&mut self, file: File) -> io::Result<u64> {
        let file = Arc::new(file);
        let mut whole: &File = &file;
        let meta = file.metadata()?;
        // A pipe or a device has no length and no positions: read it as a stream.
        if !meta.is_file() {
            return self.read_from(&mut whole);
        }
        if self.filled > 0 {
            whole.seek(SeekFrom::Start(0))?;
            return self.read_from(&mut whole);
        }
        let len = meta.len();
        let mut offset = 0;
        while offset < len {
            let n = (len - offset).min(self.chunk as u64);
            self.send_from(Some(Span {
                file: Arc::clone(&file),
                offset,
                len: n as usize,
            }))?;
            self.refill()?;
            offset += n;
        }
        // Whatever was appended after the length was taken is read here.
        whole.seek(SeekFrom::Start(len))?;
        Ok(len + self.read_from(&mut whole)?)
    }

    /// Hand the chunk being filled to the workers.
    fn send(&mut self) -> io::Result<()> {
        self.send_from(None)
    }

    fn send_from(&mut self, from: Option<Span>) -> io::Result<()> {
        let job = Job {
            seq: self.sent,
            len: from.as_ref().map_or(self.filled, |span| span.len),
            input: std::mem::take(&mut self.filling),
            output: self.spare_outputs.pop().unwrap_or_default(),
            from,
        };
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        if jobs.send(job).is_err() {
            return Err(self.failure());
        }
        self.sent += 1;
        self.filled = 0;
        Ok(())
    }

    /// What is left of the chunk being filled. A failed encoder has none: its last chunk
    /// went with the job it could not hand over, or no buffer came back for the next.
    fn room(&mut self) -> io::Result<&mut [u8]> {
        match self.filling.get_mut(self.filled..) {
            Some(room) if self.jobs.is_some() && !room.is_empty() => Ok(room),
            _ => Err(stopped()),
        }
    }

    /// Take a buffer to fill next: a spare one, a new one while under the limit, or the
    /// next one the writer gives back.
    fn refill(&mut self) -> io::Result<()> {
        if self.spare_inputs.is_empty() {
            if self.allocated < self.limit {
                self.allocated += 1;
                self.filling = vec![0; self.chunk];
                return Ok(());
            }
            self.take_back()?;
        }
        self.filling = self.spare_inputs.pop().expect("a spare buffer");
        Ok(())
    }

    fn take_back(&mut self) -> io::Result<()> {
        let Ok((input, output)) = self.returned.recv() else {
            return Err(self.failure());
        };
        self.spare_inputs.push(input);
        self.spare_outputs.push(output);
        self.back += 1;
        Ok(())
    }

    /// The writer or a worker stopped early: the writer's error says why.
    fn failure(&mut self) -> io::Error {
        self.stop().err().unwrap_or_else(stopped)
    }

    fn stop(&mut self) -> io::Result<(W, u64)> {
        self.jobs = None;
        for worker in self.workers.drain(..) {
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        }
        let writer = self.writer.take().ok_or_else(stopped)?;
        writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl<W: Write + Send + 'static> Write for FrameEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.room()?;
        let n = buf.len().min(room.len());
        room[..n].copy_from_slice(&buf[..n]);
        self.filled += n;
        if self.filled == self.chunk {
            self.send()?;
            self.refill()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.filled > 0 {
            self.send()?;
            self.refill()?;
        }
        while self.back < self.sent {
            self.take_back()?;
        }
        Ok(())
    }
}

impl<W> Drop for FrameEncoder<W> {
    fn drop(&mut self) {
        self.jobs = None;
        for worker in self.workers.drain(..) {
            drop(worker.join());
        }
        if let Some(writer) = self.writer.take() {
            // Wait, so that `inner` is dropped (an upload aborted) before the caller goes on.
            drop(writer.join());
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("a zstd worker thread stopped")
}

fn compressor(level: i32, checksum: bool) -> io::Result<Compressor<'static>> {
    let mut compressor = Compressor::new(level)?;
    compressor.set_parameter(CParameter::ChecksumFlag(checksum))?;
    Ok(compressor)
}

/// Append `input` to `output` as frames: random-looking blocks raw, one frame each (their
/// content left in `input`, spliced in when written), runs of the others compressed.
fn compress_chunk(
    compressor: &mut Compressor<'_>,
    input: &[u8],
    output: &mut Vec<u8>,
    checksum: bool,
) -> io::Result<Framed> {
    let mut framed = Framed {
        sizes: Vec::new(),
        raw: Vec::new(),
    };
    // Each block is probed once; runs of blocks of one kind make one frame each (an empty
    // chunk, one empty frame).
    let random: Vec<bool> = input.chunks(BLOCK).map(looks_random).collect();
    let mut start = 0;
    for run in random.chunk_by(|a, b| a == b) {
        let end = (start + run.len() * BLOCK).min(input.len());
        if run[0] {
            for block in (start..end).step_by(BLOCK) {
                raw_frame(
                    input,
                    block..(block + BLOCK).min(end),
                    output,
                    &mut framed,
                    checksum,
                );
            }
        } else {
            let before = output.len();
            compress_run(compressor, &input[start..end], output)?;
            framed
                .sizes
                .push(((output.len() - before) as u32, (end - start) as u32));
        }
        start = end;
    }
    if input.is_empty() {
        compress_run(compressor, input, output)?;
        framed.sizes.push((output.len() as u32, 0));
    }
    Ok(framed)
}

/// Write `output` to `inner` with the raw blocks' content spliced in from `input`, in as few
/// calls as the writer takes (a local object's file, one `writev` a chunk).
fn write_spliced<W: Write>(
    inner: &mut W,
    output: &[u8],
    input: &[u8],
    raw: &[Splice],
) -> io::Result<()> {
    let mut slices = Vec::with_capacity(2 * raw.len() + 1);
    let mut at = 0;
    for splice in raw {
        slices.push(IoSlice::new(&output[at..splice.at]));
        slices.push(IoSlice::new(&input[splice.from.clone()]));
        at = splice.at;
    }
    slices.push(IoSlice::new(&output[at..]));
    write_all_vectored(inner, &mut slices)
}

/// `Write::write_all_vectored`, which is not stable yet.
fn write_all_vectored<W: Write + ?Sized>(
    inner: &mut W,
    mut slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match inner.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Append `run` to `output` as one compressed frame.
fn compress_run(
    compressor: &mut Compressor<'_>,
    run: &[u8],
    output: &mut Vec<u8>,
) -> io::Result<()> {
    output.reserve(zstd::zstd_safe::compress_bound(run.len()));
    let mut cursor = Cursor::new(&mut *output);
    cursor.set_position(cursor.get_ref().len() as u64);
    compressor.compress_to_buffer(run, &mut cursor)?;
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

/// Add a zstd frame holding `input[from]` in one raw block: its headers and, if asked, its
/// checksum go into `output`, the content itself into `framed` as a splice.
fn raw_frame(
    input: &[u8],
    from: Range<usize>,
    output: &mut Vec<u8>,
    framed: &mut Framed,
    checksum: bool,
) {
    debug_assert!(from.len() <= BLOCK);
    let before = output.len();
    let len = from.len() as u32;
    output.extend_from_slice(&MAGIC);
    output.push(if checksum {
        RAW_DESCRIPTOR | CHECKSUM_FLAG
    } else {
        RAW_DESCRIPTOR
    });
    output.extend_from_slice(&len.to_le_bytes());
    // Block header: last-block bit, type 0 (raw), 21-bit size.
    output.extend_from_slice(&(1 | len << 3).to_le_bytes()[..3]);
    let at = output.len();
    if checksum {
        let checksum = xxhash_rust::xxh64::xxh64(&input[from.clone()], 0) as u32;
        output.extend_from_slice(&checksum.to_le_bytes());
    }
    framed
        .sizes
        .push(((output.len() - before) as u32 + len, len));
    framed.raw.push(Splice { at, from });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SeekTable;
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
        let mut encoder = FrameEncoder::new(Vec::new(), 3, threads, true).unwrap();
        // Odd write sizes, so chunks fill across calls.
        for piece in data.chunks(100_003) {
            encoder.write_all(piece).unwrap();
        }
        encoder.finish().unwrap()
    }

    /// Through `read_from`, at a fast level (smaller chunks) and the default one.
    fn encode_read(data: &[u8], level: i32, threads: u32) -> Vec<u8> {
        let mut encoder = FrameEncoder::new(Vec::new(), level, threads, true).unwrap();
        assert_eq!(
            encoder.read_from(&mut &data[..]).unwrap(),
            data.len() as u64
        );
        encoder.finish().unwrap()
    }

    /// Through `read_file`, after `head` was written (a chunk partly filled takes the
    /// ordinary read).
    fn encode_file(head: &[u8], data: &[u8], level: i32, threads: u32) -> Vec<u8> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(data).unwrap();
        let mut encoder = FrameEncoder::new(Vec::new(), level, threads, true).unwrap();
        encoder.write_all(head).unwrap();
        assert_eq!(encoder.read_file(file).unwrap(), data.len() as u64);
        encoder.finish().unwrap()
    }

    #[test]
    fn a_pipe_is_read_as_a_stream() {
        let data = [random(CHUNK + 5, 11), text(CHUNK)].concat();
        let (reader, mut writer) = std::io::pipe().unwrap();
        let feed = {
            let data = data.clone();
            std::thread::spawn(move || writer.write_all(&data).unwrap())
        };
        let pipe = File::from(std::os::fd::OwnedFd::from(reader));
        let mut encoder = FrameEncoder::new(Vec::new(), -1, 2, true).unwrap();
        assert_eq!(encoder.read_file(pipe).unwrap(), data.len() as u64);
        feed.join().unwrap();
        assert_eq!(decode(&encoder.finish().unwrap()), data);
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
            for level in [-1, 3] {
                let read = encode_read(&data, level, threads);
                assert_eq!(
                    decode(&read),
                    data,
                    "read at level {level}, {threads} threads"
                );
                let file = encode_file(b"", &data, level, threads);
                assert_eq!(
                    decode(&file),
                    data,
                    "file at level {level}, {threads} threads"
                );
                let after = encode_file(b"head", &data, level, threads);
                assert_eq!(
                    decode(&after),
                    [&b"head"[..], &data].concat(),
                    "file after a head at level {level}, {threads} threads"
                );
            }
        }
    }

    #[test]
    fn the_seek_table_finds_the_frames_of_any_range() {
        let data = [random(3 * CHUNK + 5, 9), text(2 * CHUNK)].concat();
        let stored = encode(&data, 2);
        let footer = &stored[stored.len() - SeekTable::FOOTER..];
        let length = SeekTable::length(footer).unwrap() as usize;
        let table =
            SeekTable::parse(&stored[stored.len() - length..], stored.len() as u64).unwrap();
        assert_eq!(table.content_len(), data.len() as u64);
        let len = data.len() as u64;
        let block = BLOCK as u64;
        for range in [
            0..1,
            5 * block + 7..6 * block + 9,
            3 * CHUNK as u64..3 * CHUNK as u64 + 100_000,
            len - 10..len,
        ] {
            let span = table.span(range.clone()).unwrap();
            let part = decode(&stored[span.stored.start as usize..span.stored.end as usize]);
            let at = (range.start - span.start) as usize;
            let want = &data[range.start as usize..range.end as usize];
            assert_eq!(&part[at..at + want.len()], want, "{range:?}");
        }
        // Random bytes are raw frames of one block each: a byte of them costs a block.
        let first = table.span(0..1).unwrap();
        assert!(
            first.stored.end - first.stored.start <= block + 32,
            "{first:?}"
        );
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

    /// Whether each zstd frame of `stored` carries a checksum (skippable frames aside).
    fn checksum_flags(mut stored: &[u8]) -> Vec<bool> {
        let mut flags = Vec::new();
        while !stored.is_empty() {
            let len = zstd::zstd_safe::find_frame_compressed_size(stored).unwrap();
            if stored[..4] == MAGIC {
                flags.push(stored[4] & CHECKSUM_FLAG != 0);
            }
            stored = &stored[len..];
        }
        flags
    }

    #[rstest]
    fn frames_carry_a_checksum_unless_asked_not_to(
        #[values(0, 2)] threads: u32,
        #[values(true, false)] checksum: bool,
    ) {
        // Compressed frames and raw ones.
        let mut data = text(CHUNK);
        data.extend(random(2 * BLOCK, 5));
        let compression = crate::Compression::Zstd(3);
        let mut encoder = match checksum {
            true => crate::Encoder::new(Vec::new(), compression, threads),
            false => crate::Encoder::without_checksums(Vec::new(), compression, threads),
        }
        .unwrap();
        encoder.write_all(&data).unwrap();
        let stored = encoder.finish().unwrap();
        let flags = checksum_flags(&stored);
        let frames = if threads > 0 { 3 } else { 1 };
        assert!(flags.len() >= frames, "{flags:?}");
        assert!(flags.iter().all(|&flag| flag == checksum), "{flags:?}");
        assert_eq!(zstd::stream::decode_all(&stored[..]).unwrap(), data);
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

    /// Takes at most 1000 bytes a call.
    struct Trickle(Vec<u8>);

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(1000);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn raw_blocks_spliced_between_their_headers_arrive_whole_at_a_writer_taking_a_little_at_a_time()
    {
        let data = [
            random(3 * BLOCK, 21),
            text(BLOCK),
            random(BLOCK, 22),
            text(17),
        ]
        .concat();
        for checksum in [true, false] {
            let mut encoder = FrameEncoder::new(Trickle(Vec::new()), 3, 2, checksum).unwrap();
            encoder.write_all(&data).unwrap();
            let stored = encoder.finish().unwrap().0;
            assert_eq!(
                checksum_flags(&stored).len(),
                6,
                "four raw frames, two compressed"
            );
            assert_eq!(decode(&stored), data, "checksum {checksum}");
        }
    }

    /// Fails every write after `room` bytes; says when it is dropped.
    struct Failing {
        room: usize,
        dropped: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if buf.len() > self.room {
                return Err(io::Error::other("disk full"));
            }
            self.room -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Drop for Failing {
        fn drop(&mut self) {
            self.dropped
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn an_inner_write_error_is_returned_not_hung_on() {
        let dropped = Arc::default();
        let inner = Failing {
            room: CHUNK,
            dropped: Arc::clone(&dropped),
        };
        let mut encoder = FrameEncoder::new(inner, 3, 2, true).unwrap();
        let noise = random(CHUNK, 11);
        let result = (0..20)
            .try_for_each(|_| encoder.write_all(&noise))
            .and_then(|()| encoder.finish().map(drop));
        assert_eq!(result.unwrap_err().to_string(), "disk full");
    }

    #[test]
    fn writing_after_a_failed_write_is_an_error_not_a_panic() {
        let inner = Failing {
            room: CHUNK,
            dropped: Arc::default(),
        };
        let mut encoder = FrameEncoder::new(inner, 3, 2, true).unwrap();
        let noise = random(CHUNK, 13);
        let failed = (0..20).try_for_each(|_| encoder.write_all(&noise));
        assert_eq!(failed.unwrap_err().to_string(), "disk full");
        // What a tar builder dropped after the failure does: write its end-of-archive.
        assert!(encoder.write_all(&[0; 1024]).is_err());
        assert!(encoder.read_from(&mut &noise[..]).is_err());
        assert!(encoder.flush().is_err());
    }

    #[test]
    fn dropping_unfinished_drops_the_inner_writer_before_returning() {
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let inner = Failing {
            room: usize::MAX,
            dropped: Arc::clone(&dropped),
        };
        let mut encoder = FrameEncoder::new(inner, 3, 2, true).unwrap();
        encoder.write_all(&random(3 * CHUNK, 12)).unwrap();
        drop(encoder);
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
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
