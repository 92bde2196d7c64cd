//! A remote object read as consecutive ranged GETs, several in flight. Each GET of an S3
//! server waits for its first bytes (a round trip on real S3, a delayed ACK on s3s-fs), so
//! speed comes from many bytes requested at once; memory is bounded by what has arrived
//! and is not read yet, not by what was requested. What arrives streams to the reader and
//! is held within the repository's budget of bytes ahead; a range whose bytes do not fit
//! stops reading its answer, and TCP's flow control holds the server back. The bytes a
//! reader is waiting for never wait for the budget.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Buf as _, Bytes};
use futures::future::{self, Either};
use futures::StreamExt;
use object_store::{path::Path, GetOptions, ObjectStore};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::raw::{backend_io, path};

/// What the remote readers of one repository may have ahead of the range each is reading,
/// together: ranges requested, and bytes received and not read yet. A restore that holds
/// several archives open at once (a chain) then holds no more than one reading a single
/// archive, plus a range each. Nothing here stops the range a reader reads, nor the bytes
/// it is waiting for, so every reader makes progress.
#[derive(Debug)]
pub(crate) struct RangeBudget {
    /// The size of one range.
    part: u64,
    /// The most ranges one reader requests beyond the one it reads.
    most: usize,
    ranges: AtomicUsize,
    bytes: Arc<Semaphore>,
    most_bytes: usize,
}

impl RangeBudget {
    /// Ranges of `part` bytes, `ranges` ahead, `bytes` held ahead.
    pub(crate) fn new(part: u64, ranges: usize, bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            part,
            most: ranges,
            ranges: AtomicUsize::new(ranges),
            bytes: Arc::new(Semaphore::new(bytes)),
            most_bytes: bytes,
        })
    }

    fn try_take_range(self: &Arc<Self>) -> Option<RangeSlot> {
        self.ranges
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .ok()
            .map(|_| RangeSlot(self.clone()))
    }

    /// A hold on `len` bytes received ahead, given back when they have been read; none
    /// while the reader waits for them (`reader`), which so always makes progress.
    async fn hold(&self, len: usize, reader: &Waiting) -> Option<OwnedSemaphorePermit> {
        // A chunk larger than the whole budget waits for all of it; an empty budget holds
        // nothing ahead at all.
        let len = len.clamp(1, self.most_bytes.max(1)) as u32;
        loop {
            if reader.now() {
                return None;
            }
            let held = Box::pin(self.bytes.clone().acquire_many_owned(len));
            match future::select(held, Box::pin(reader.woke.notified())).await {
                Either::Left((permit, _)) => return permit.ok(),
                // Looked at again: a wake-up may be left over from an earlier wait.
                Either::Right(((), _)) => continue,
            }
        }
    }
}

/// A range requested beyond a reader's own, given back when it has been read (or dropped).
#[derive(Debug)]
struct RangeSlot(Arc<RangeBudget>);

impl Drop for RangeSlot {
    fn drop(&mut self) {
        self.0.ranges.fetch_add(1, Ordering::AcqRel);
    }
}

/// Whether a range's reader is waiting for its next bytes: they then need no budget.
#[derive(Debug, Default)]
struct Waiting {
    now: AtomicBool,
    woke: Notify,
}

impl Waiting {
    fn now(&self) -> bool {
        self.now.load(Ordering::Acquire)
    }

    fn set(&self, now: bool) {
        self.now.store(now, Ordering::Release);
        if now {
            self.woke.notify_one();
        }
    }
}

/// Bytes of a range as they arrived, with their hold on the budget.
type Chunk = io::Result<(Bytes, Option<OwnedSemaphorePermit>)>;

/// One range requested: its bytes as they arrive, and its slot (none for the reader's own).
struct Part {
    chunks: mpsc::UnboundedReceiver<Chunk>,
    waiting: Arc<Waiting>,
    fetch: JoinHandle<()>,
    _slot: Option<RangeSlot>,
}

impl Drop for Part {
    fn drop(&mut self) {
        self.fetch.abort();
    }
}

/// Fetches the bytes `range` of `path` into `chunks`, each held on `budget` until read.
async fn fetch_range(
    store: Arc<dyn ObjectStore>,
    path: Path,
    range: std::ops::Range<u64>,
    budget: Arc<RangeBudget>,
    waiting: Arc<Waiting>,
    chunks: mpsc::UnboundedSender<Chunk>,
) {
    let wanted = range.end - range.start;
    let fetched = async {
        let options = GetOptions::new().with_range(Some(range));
        let mut stream = store
            .get_opts(&path, options)
            .await
            .map_err(backend_io)?
            .into_stream();
        let mut got = 0;
        while let Some(bytes) = stream.next().await {
            let bytes = bytes.map_err(backend_io)?;
            got += bytes.len() as u64;
            if got > wanted {
                break;
            }
            let held = budget.hold(bytes.len(), &waiting).await;
            if chunks.send(Ok((bytes, held))).is_err() {
                return Ok(());
            }
        }
        if got != wanted {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("a ranged read returned {got} bytes of {wanted}"),
            ));
        }
        Ok(())
    };
    if let Err(e) = fetched.await {
        let _ = chunks.send(Err(e));
    }
}

/// A blocking reader of a remote object's bytes as consecutive ranges, several in flight.
pub(crate) struct Ranged {
    rt: Arc<Runtime>,
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    next: u64,
    budget: Arc<RangeBudget>,
    reading: Option<Part>,
    ahead: VecDeque<Part>,
    /// The bytes being read, and their hold on the budget.
    chunk: Bytes,
    _held: Option<OwnedSemaphorePermit>,
    /// A failed read, repeated by every later one: the next range's bytes would not
    /// follow on.
    failed: Option<(io::ErrorKind, String)>,
}

impl Ranged {
    pub(crate) fn new(
        rt: Arc<Runtime>,
        store: Arc<dyn ObjectStore>,
        key: &str,
        range: std::ops::Range<u64>,
        budget: Arc<RangeBudget>,
    ) -> Self {
        Self {
            rt,
            store,
            path: path(key),
            size: range.end,
            next: range.start,
            budget,
            reading: None,
            ahead: VecDeque::new(),
            chunk: Bytes::new(),
            _held: None,
            failed: None,
        }
    }

    fn request_more(&mut self) {
        while self.next < self.size {
            // A reader's own range needs no slot: it always makes progress.
            let slot = if self.reading.is_none() && self.ahead.is_empty() {
                None
            } else if self.ahead.len() >= self.budget.most {
                break;
            } else {
                match self.budget.try_take_range() {
                    Some(slot) => Some(slot),
                    None => break,
                }
            };
            let range = self.next..(self.next + self.budget.part).min(self.size);
            self.next = range.end;
            let (sender, chunks) = mpsc::unbounded_channel();
            let waiting = Arc::new(Waiting::default());
            let fetch = self.rt.spawn(fetch_range(
                self.store.clone(),
                self.path.clone(),
                range,
                self.budget.clone(),
                waiting.clone(),
                sender,
            ));
            self.ahead.push_back(Part {
                chunks,
                waiting,
                fetch,
                _slot: slot,
            });
        }
    }

    /// The next bytes, or none at the end of the object.
    fn next_chunk(&mut self) -> io::Result<Option<(Bytes, Option<OwnedSemaphorePermit>)>> {
        loop {
            let Some(part) = &mut self.reading else {
                self.request_more();
                let Some(part) = self.ahead.pop_front() else {
                    return Ok(None);
                };
                self.reading = Some(part);
                self.request_more();
                continue;
            };
            let chunk = match part.chunks.try_recv() {
                Ok(chunk) => Some(chunk),
                Err(mpsc::error::TryRecvError::Empty) => {
                    part.waiting.set(true);
                    let chunk = self.rt.block_on(part.chunks.recv());
                    part.waiting.set(false);
                    chunk
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
            match chunk {
                Some(chunk) => return chunk.map(Some),
                // The range was read whole: its slot goes to the next one.
                None => self.reading = None,
            }
        }
    }
}

/// The bytes as they arrived: a decoder reading through `BufRead` reads them in place.
impl io::BufRead for Ranged {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.chunk.is_empty() {
            self._held = None;
            if let Some((kind, message)) = &self.failed {
                return Err(io::Error::new(*kind, message.clone()));
            }
            match self.next_chunk() {
                Ok(Some((chunk, held))) => (self.chunk, self._held) = (chunk, held),
                Ok(None) => return Ok(&[]),
                Err(e) => {
                    (self.reading, self.ahead) = (None, VecDeque::new());
                    self.failed = Some((e.kind(), e.to_string()));
                    return Err(e);
                }
            }
        }
        Ok(&self.chunk)
    }

    fn consume(&mut self, n: usize) {
        self.chunk.advance(n);
    }
}

impl io::Read for Ranged {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let chunk = io::BufRead::fill_buf(self)?;
        let n = buf.len().min(chunk.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        io::BufRead::consume(self, n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::time::{Duration, Instant};

    use object_store::memory::InMemory;
    use object_store::{PutOptions, PutPayload};

    use super::*;
    use crate::raw::tests::runtime;

    fn store_with(data: &[u8]) -> (Arc<Runtime>, Arc<dyn ObjectStore>) {
        let rt = runtime();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        rt.block_on(store.put_opts(
            &Path::from("a"),
            PutPayload::from(data.to_vec()),
            PutOptions::default(),
        ))
        .unwrap();
        (rt, store)
    }

    fn free_ranges(budget: &RangeBudget) -> usize {
        budget.ranges.load(Ordering::Acquire)
    }

    /// What `look` sees once it stopped changing: the fetches run on other threads.
    fn settled<T: PartialEq>(look: impl Fn() -> T) -> T {
        let until = Instant::now() + Duration::from_secs(10);
        let mut last = look();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let now = look();
            if now == last || Instant::now() > until {
                return now;
            }
            last = now;
        }
    }

    fn free_bytes(budget: &RangeBudget) -> usize {
        settled(|| budget.bytes.available_permits())
    }

    fn reader(
        rt: &Arc<Runtime>,
        store: &Arc<dyn ObjectStore>,
        range: std::ops::Range<u64>,
        budget: &Arc<RangeBudget>,
    ) -> Ranged {
        Ranged::new(rt.clone(), store.clone(), "a", range, budget.clone())
    }

    /// All of `reader`'s bytes after those in `got`.
    fn read_rest(reader: &mut Ranged, mut got: Vec<u8>) -> io::Result<Vec<u8>> {
        let mut buf = [0u8; 7];
        loop {
            match reader.read(&mut buf)? {
                0 => return Ok(got),
                n => got.extend_from_slice(&buf[..n]),
            }
        }
    }

    #[test]
    fn readers_of_one_repository_share_their_ranges_ahead_and_give_them_back() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (rt, store) = store_with(&data);
        let budget = RangeBudget::new(10, 3, 1000);
        // Two readers read in turns, as a restore reads a chain's archives.
        let mut first = reader(&rt, &store, 0..1000, &budget);
        let mut second = reader(&rt, &store, 200..1000, &budget);
        let (mut got_first, mut got_second) = (Vec::new(), Vec::new());
        let mut buf = [0u8; 7];
        let n = first.read(&mut buf).unwrap();
        got_first.extend_from_slice(&buf[..n]);
        assert_eq!(free_ranges(&budget), 0, "the first reader took every range");
        loop {
            let a = first.read(&mut buf).unwrap();
            got_first.extend_from_slice(&buf[..a]);
            let b = second.read(&mut buf).unwrap();
            got_second.extend_from_slice(&buf[..b]);
            if a == 0 && b == 0 {
                break;
            }
        }
        assert_eq!(got_first, data);
        assert_eq!(got_second, data[200..]);
        drop((first, second));
        assert_eq!(free_ranges(&budget), 3, "every range came back");
        assert_eq!(free_bytes(&budget), 1000, "every byte came back");
    }

    #[test]
    fn ranges_ahead_hold_no_more_bytes_than_the_budget_while_the_reader_waits() {
        let data: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
        let (rt, store) = store_with(&data);
        let budget = RangeBudget::new(10, 8, 25);
        let mut reader = reader(&rt, &store, 0..200, &budget);
        let mut first = [0u8; 1];
        assert_eq!(reader.read(&mut first).unwrap(), 1);
        // Eight ranges of 10 bytes were requested ahead; two fit in 25 bytes, or one when
        // the range being read took 10 of them.
        let held = settled(|| reader.ahead.iter().map(|p| p.chunks.len()).sum::<usize>());
        assert_eq!(reader.ahead.len(), 8);
        assert!((1..=2).contains(&held), "{held} ranges ahead hold bytes");
        assert_eq!(read_rest(&mut reader, first.to_vec()).unwrap(), data);
        drop(reader);
        assert_eq!(free_bytes(&budget), 25, "every byte came back");
    }

    #[test]
    fn a_reader_with_no_budget_still_reads_its_own_range_each_time() {
        let data = vec![9u8; 95];
        let (rt, store) = store_with(&data);
        let budget = RangeBudget::new(10, 0, 0);
        let mut reader = reader(&rt, &store, 0..95, &budget);
        assert_eq!(read_rest(&mut reader, Vec::new()).unwrap(), data);
    }

    #[test]
    fn a_request_that_fails_fails_the_read_naming_the_object_and_every_later_read() {
        let (rt, store) = store_with(&[1u8; 50]);
        let budget = RangeBudget::new(10, 8, 1000);
        let mut reader = Ranged::new(rt, store, "gone", 0..30, budget.clone());
        let error = read_rest(&mut reader, Vec::new()).unwrap_err();
        assert!(error.to_string().contains("gone"), "{error}");
        let again = reader.read(&mut [0u8; 7]).unwrap_err();
        assert_eq!(again.to_string(), error.to_string());
        assert_eq!(
            free_ranges(&budget),
            8,
            "the failed reader gave its ranges back"
        );
    }

    #[test]
    fn a_range_shorter_than_asked_is_an_error_not_a_shifted_stream() {
        let (rt, store) = store_with(&[1u8; 50]);
        // A recorded size larger than the object: the range 40..60 returns 10 bytes.
        let budget = RangeBudget::new(20, 8, 1000);
        let mut reader = reader(&rt, &store, 0..60, &budget);
        let error = read_rest(&mut reader, Vec::new()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            error.to_string().contains("returned 10 bytes of 20"),
            "{error}"
        );
        // Read on, it fails the same: it neither ends as if whole nor goes on to a later range.
        let again = reader.read(&mut [0u8; 7]).unwrap_err();
        assert_eq!(again.to_string(), error.to_string());
        assert_eq!(
            free_ranges(&budget),
            8,
            "the failed reader gave its ranges back"
        );
    }
}
