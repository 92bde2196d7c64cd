//! The bottom of the object pipeline: bytes as stored, in and out of the object store.

use std::io::{self, IoSlice, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::{path::Path, GetResultPayload, ObjectStore, PutMode, PutOptions, PutPayload};
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;

use crate::ranged::Ranged;
use crate::upload::Uploading;
use crate::BackendError;

/// What was stored of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The object key.
    pub key: String,
    /// Bytes stored.
    pub size: u64,
    /// Lower-case hex SHA-256 of the stored bytes.
    pub sha256: String,
}

/// The bottom of the object pipeline: a blocking writer of the bytes to store, hashing them
/// on the way. On a local repository every object is written straight into a staging file.
/// Elsewhere a streamed object goes up in a multipart upload (memory bounded by part size ×
/// upload concurrency), and a small one is buffered and stored with one PUT, which can be
/// create-only. Dropping it without
/// [`RawWriter::finish`] aborts, so no partial object becomes visible.
pub(crate) struct RawWriter {
    key: String,
    sink: Sink,
    hasher: Sha256,
    size: u64,
}

enum Sink {
    Upload(Uploading),
    Buffer {
        rt: Arc<Runtime>,
        store: Arc<dyn ObjectStore>,
        bytes: Vec<u8>,
        mode: PutMode,
    },
    File(Staged),
}

/// A local object being written into its staging file `<path>#<n>`, named as object_store's
/// local store names its own (so listings skip it and leftover clean-up finds it). `finish`
/// makes it durable and visible at once: fsync, then a hard link for a create-only write
/// (which fails if the object exists) or a rename, then an fsync of the directory.
struct Staged {
    file: Option<std::fs::File>,
    staging: PathBuf,
    dest: PathBuf,
    mode: PutMode,
    /// Bytes written, and how many of them were handed to write-back early.
    written: u64,
    flushing: u64,
}

/// Written bytes handed to the kernel's write-back at a time, so that the fsync in `publish`
/// waits for the last of them only (a `wal push` otherwise waits for its whole segment).
const WRITE_BACK: u64 = 1 << 20;

impl Staged {
    fn create(dest: PathBuf, mode: PutMode) -> io::Result<Self> {
        for n in 1.. {
            let mut staging = dest.clone().into_os_string();
            staging.push(format!("#{n}"));
            let staging = PathBuf::from(staging);
            let opened = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&staging);
            match opened {
                Ok(file) => {
                    return Ok(Self {
                        file: Some(file),
                        staging,
                        dest,
                        mode,
                        written: 0,
                        flushing: 0,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    create_dirs(dest.parent().ok_or(e)?)?;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("an unused staging name")
    }

    fn publish(&mut self) -> io::Result<()> {
        let file = self.file.take().expect("publish once");
        file.sync_all()?;
        drop(file);
        let published = match self.mode {
            PutMode::Create => std::fs::hard_link(&self.staging, &self.dest),
            _ => std::fs::rename(&self.staging, &self.dest),
        };
        // After a link the staging name is a second name of the object: one left behind
        // is a leftover for prune, not a failed write.
        drop(std::fs::remove_file(&self.staging));
        published?;
        match self.dest.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    }
}

/// Every write is one `writev`: a chunk's frames come as slices (raw blocks straight from
/// the codec's input, between their headers).
impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("object already stored"))?;
        let n = file.write_vectored(bufs)?;
        self.written += n as u64;
        if self.written - self.flushing >= WRITE_BACK {
            // DONTNEED starts write-back of the dirty range without waiting for it; only an
            // advice, so a failure costs time at the fsync, never data.
            let len = self.written - self.flushing;
            let _ = rustix::fs::fadvise(
                &*file,
                self.flushing,
                std::num::NonZeroU64::new(len),
                rustix::fs::Advice::DontNeed,
            );
            self.flushing = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            drop(std::fs::remove_file(&self.staging));
        }
    }
}

/// Create `dir` and its missing parents, each made durable in its parent.
fn create_dirs(dir: &std::path::Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_dirs(dir.parent().ok_or(e)?)?;
            return create_dirs(dir);
        }
        Err(e) => return Err(e),
    }
    match dir.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

fn sync_dir(dir: &std::path::Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

pub(crate) fn backend_io(error: object_store::Error) -> io::Error {
    match error {
        object_store::Error::AlreadyExists { .. } => {
            io::Error::new(io::ErrorKind::AlreadyExists, BackendError::new(error))
        }
        error => io::Error::other(BackendError::new(error)),
    }
}

impl RawWriter {
    pub(crate) fn upload(key: String, upload: Uploading) -> Self {
        Self {
            key,
            sink: Sink::Upload(upload),
            hasher: Sha256::new(),
            size: 0,
        }
    }

    pub(crate) fn buffer(
        key: String,
        rt: Arc<Runtime>,
        store: Arc<dyn ObjectStore>,
        mode: PutMode,
    ) -> Self {
        Self {
            key,
            sink: Sink::Buffer {
                rt,
                store,
                bytes: Vec::new(),
                mode,
            },
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// An object of a local repository, written straight into a staging file and published
    /// create-only (`PutMode::Create`) or over what is there (any other mode).
    pub(crate) fn file(key: String, files: &LocalFileSystem, mode: PutMode) -> io::Result<Self> {
        let dest = files.path_to_filesystem(&path(&key)).map_err(backend_io)?;
        Ok(Self {
            key,
            sink: Sink::File(Staged::create(dest, mode)?),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Store what was written; the object becomes visible at once, whole (and, on a local
    /// repository, durable: fsynced before the rename).
    pub(crate) fn finish(mut self) -> io::Result<Written> {
        match &mut self.sink {
            Sink::Upload(upload) => upload.finish()?,
            Sink::Buffer {
                rt,
                store,
                bytes,
                mode,
            } => {
                let opts = PutOptions {
                    mode: mode.clone(),
                    ..Default::default()
                };
                let payload = PutPayload::from(std::mem::take(bytes));
                rt.block_on(store.put_opts(&path(&self.key), payload, opts))
                    .map_err(backend_io)?;
            }
            Sink::File(staged) => staged.publish()?,
        }
        Ok(Written {
            key: std::mem::take(&mut self.key),
            size: self.size,
            sha256: hex::encode(std::mem::take(&mut self.hasher).finalize()),
        })
    }
}

impl Write for RawWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.sink {
            Sink::Upload(upload) => upload.write(buf)?,
            Sink::Buffer { bytes, .. } => bytes.extend_from_slice(buf),
            Sink::File(staged) => staged.write_all(buf)?,
        }
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    /// A local object's file takes every slice in one `writev`; the other sinks copy them.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let Sink::File(staged) = &mut self.sink else {
            let mut n = 0;
            for buf in bufs {
                n += self.write(buf)?;
            }
            return Ok(n);
        };
        let n = staged.write_vectored(bufs)?;
        let mut left = n;
        for buf in bufs {
            let taken = &buf[..left.min(buf.len())];
            self.hasher.update(taken);
            left -= taken.len();
        }
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for RawWriter {
    fn drop(&mut self) {
        if let Sink::Upload(upload) = &mut self.sink {
            upload.abort(&self.key);
        }
    }
}

/// A blocking reader of one object's stored bytes: a local file is read directly, a remote
/// object streams (a large one as ranges, several in flight).
pub(crate) struct RawReader {
    inner: ReaderInner,
}

enum ReaderInner {
    File(io::Take<std::fs::File>),
    Stream {
        rt: Arc<Runtime>,
        stream: BoxStream<'static, object_store::Result<Bytes>>,
        chunk: Bytes,
    },
    Ranged(Ranged),
}

impl RawReader {
    pub(crate) fn ranged(ranged: Ranged) -> Self {
        Self {
            inner: ReaderInner::Ranged(ranged),
        }
    }

    /// Bytes fetched whole before the reader was asked for.
    pub(crate) fn fetched(rt: Arc<Runtime>, bytes: Bytes) -> Self {
        Self {
            inner: ReaderInner::Stream {
                rt,
                stream: futures::stream::empty().boxed(),
                chunk: bytes,
            },
        }
    }

    /// The ranges fetched ahead, several at once, to read in place where they arrived; the
    /// reader itself when it fetches none ahead.
    pub(crate) fn into_fetched_ahead(self) -> Result<Ranged, Box<Self>> {
        match self.inner {
            ReaderInner::Ranged(ranged) => Ok(ranged),
            inner => Err(Box::new(Self { inner })),
        }
    }

    /// The bytes `range` of a GET's result: a local file is positioned at its start (a
    /// stream holds the range already).
    pub(crate) fn new(
        rt: Arc<Runtime>,
        payload: GetResultPayload,
        range: std::ops::Range<u64>,
    ) -> io::Result<Self> {
        let inner = match payload {
            GetResultPayload::File(mut file, _) => {
                io::Seek::seek(&mut file, io::SeekFrom::Start(range.start))?;
                ReaderInner::File(file.take(range.end - range.start))
            }
            GetResultPayload::Stream(stream) => ReaderInner::Stream {
                rt,
                stream,
                chunk: Bytes::new(),
            },
        };
        Ok(Self { inner })
    }
}

impl Read for RawReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            ReaderInner::File(file) => file.read(buf),
            ReaderInner::Stream { rt, stream, chunk } => {
                while chunk.is_empty() {
                    match rt.block_on(stream.next()) {
                        None => return Ok(0),
                        Some(Ok(next)) => *chunk = next,
                        Some(Err(e)) => return Err(backend_io(e)),
                    }
                }
                let n = buf.len().min(chunk.len());
                buf[..n].copy_from_slice(&chunk.split_to(n));
                Ok(n)
            }
            ReaderInner::Ranged(ranged) => ranged.read(buf),
        }
    }
}

pub(crate) fn path(key: &str) -> Path {
    Path::from(key)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use object_store::{ObjectStoreExt, WriteMultipart};

    pub(crate) fn runtime() -> Arc<Runtime> {
        Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        )
    }

    /// Open descriptors of this process on files below `dir`.
    fn open_below(dir: &std::path::Path) -> Vec<PathBuf> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter(|target| target.starts_with(dir))
            .collect()
    }

    #[test]
    fn an_aborted_local_upload_closes_its_staging_file_before_the_drop_returns() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let upload = rt.block_on(store.put_multipart(&path("archive"))).unwrap();
        let mut upload = WriteMultipart::new_with_chunk_size(upload, 16 << 20);
        {
            let _guard = rt.enter();
            upload.put(Bytes::from(vec![7u8; 64 << 20]));
        }
        // The writer is dropped while its first part is being written: four parts of 16 MiB
        // take far longer to write than an abort that does not wait for them.
        let staging = dir.path().join("archive#1");
        while std::fs::metadata(&staging).map_or(0, |m| m.len()) == 0 {
            std::thread::yield_now();
        }
        drop(RawWriter::upload(
            "archive".into(),
            Uploading::new(rt.clone(), upload, 4, true),
        ));
        assert_eq!(open_below(dir.path()), Vec::<PathBuf>::new());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn slices_written_at_once_are_stored_and_hashed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let mut raw = RawWriter::file("a".into(), &files, PutMode::Overwrite).unwrap();
        let pieces: [&[u8]; 4] = [b"head", &[], &[9u8; 300_000], b"tail"];
        raw.write_all(b"before ").unwrap();
        let slices: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
        let taken = raw.write_vectored(&slices).unwrap();
        let whole = [&b"before "[..], &pieces.concat()].concat();
        // A file takes all of it in one call, unless the kernel stops short.
        raw.write_all(&whole[7 + taken..]).unwrap();
        let written = raw.finish().unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), whole);
        assert_eq!(written.size, whole.len() as u64);
        assert_eq!(written.sha256, hex::encode(Sha256::digest(&whole)));
    }
}
