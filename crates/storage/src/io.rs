use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::{path::Path, GetResultPayload, ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// What an [`ObjectWriter`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The object key.
    pub key: String,
    /// Bytes stored.
    pub size: u64,
    /// Lower-case hex SHA-256 of the stored bytes.
    pub sha256: String,
}

/// A blocking writer that streams into one object, hashing what it stores: through a
/// multipart upload (memory bounded by part size × upload concurrency), or on a local
/// repository straight into a staging file renamed into place. Dropping it without
/// [`ObjectWriter::finish`] aborts, so no partial object becomes visible.
pub struct ObjectWriter {
    key: String,
    sink: Sink,
    hasher: Sha256,
    size: u64,
}

enum Sink {
    Upload {
        rt: Arc<Runtime>,
        upload: Option<WriteMultipart>,
        concurrency: usize,
    },
    /// Local files skip the async machinery: no part buffers, no thread hops.
    File {
        file: Option<std::io::BufWriter<std::fs::File>>,
        staging: PathBuf,
        dest: PathBuf,
    },
}

impl ObjectWriter {
    pub(crate) fn upload(
        key: String,
        rt: Arc<Runtime>,
        upload: WriteMultipart,
        concurrency: usize,
    ) -> Self {
        Self {
            key,
            sink: Sink::Upload {
                rt,
                upload: Some(upload),
                concurrency,
            },
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// Write `dest` through a staging file beside it (`<dest>#<rand>`, a name object_store's
    /// listing ignores and prune collects if a crash leaves it).
    pub(crate) fn file(key: String, dest: PathBuf) -> io::Result<Self> {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut name = dest.file_name().unwrap_or_default().to_os_string();
        name.push(format!("#strongbox-{:08x}", rand::random::<u32>()));
        let staging = dest.with_file_name(name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staging)?;
        Ok(Self {
            key,
            sink: Sink::File {
                file: Some(std::io::BufWriter::with_capacity(1 << 20, file)),
                staging,
                dest,
            },
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// The object key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Complete the upload; the object becomes visible at once, whole (and, on a local
    /// repository, durable: fsynced before the rename).
    pub fn finish(mut self) -> io::Result<Written> {
        match &mut self.sink {
            Sink::Upload { rt, upload, .. } => {
                let upload = upload.take().expect("finish once");
                rt.block_on(upload.finish()).map_err(io::Error::other)?;
            }
            Sink::File {
                file,
                staging,
                dest,
            } => {
                let file = file
                    .take()
                    .expect("finish once")
                    .into_inner()
                    .map_err(|e| e.into_error())?;
                file.sync_all()?;
                std::fs::rename(&*staging, &*dest)?;
            }
        }
        Ok(Written {
            key: std::mem::take(&mut self.key),
            size: self.size,
            sha256: hex::encode(std::mem::take(&mut self.hasher).finalize()),
        })
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.sink {
            Sink::Upload {
                rt,
                upload,
                concurrency,
            } => {
                let upload = upload
                    .as_mut()
                    .ok_or_else(|| io::Error::other("upload already finished"))?;
                // Back-pressure: wait while `concurrency` parts are in flight.
                rt.block_on(upload.wait_for_capacity(*concurrency))
                    .map_err(io::Error::other)?;
                let _guard = rt.enter();
                upload.write(buf);
            }
            Sink::File { file, .. } => file
                .as_mut()
                .ok_or_else(|| io::Error::other("upload already finished"))?
                .write_all(buf)?,
        }
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        match &mut self.sink {
            Sink::Upload { rt, upload, .. } => {
                if let Some(upload) = upload.take() {
                    tracing::debug!(key = %self.key, "aborting unfinished upload");
                    if let Err(e) = rt.block_on(upload.abort()) {
                        tracing::warn!(key = %self.key, error = %e, "aborting upload failed");
                    }
                }
            }
            Sink::File { file, staging, .. } => {
                if file.take().is_some() {
                    let _ = std::fs::remove_file(&*staging);
                }
            }
        }
    }
}

/// A blocking reader of one object: a local file is read directly, a remote object streams.
pub struct ObjectReader {
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

/// Reads a remote object as consecutive ranges, several requests in flight: one GET stream
/// from an S3 server is slower than the restore consuming it.
struct Ranged {
    rt: Arc<Runtime>,
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    next: u64,
    part: u64,
    concurrency: usize,
    inflight: VecDeque<JoinHandle<object_store::Result<Bytes>>>,
    chunk: Bytes,
}

impl Ranged {
    fn request_more(&mut self) {
        while self.inflight.len() < self.concurrency && self.next < self.size {
            let range = self.next..(self.next + self.part).min(self.size);
            self.next = range.end;
            let (store, path) = (self.store.clone(), self.path.clone());
            self.inflight.push_back(
                self.rt
                    .spawn(async move { store.get_range(&path, range).await }),
            );
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.chunk.is_empty() {
            self.request_more();
            let Some(part) = self.inflight.pop_front() else {
                return Ok(0);
            };
            self.chunk = self
                .rt
                .block_on(part)
                .map_err(io::Error::other)?
                .map_err(io::Error::other)?;
            self.request_more();
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

impl Drop for Ranged {
    fn drop(&mut self) {
        for part in &self.inflight {
            part.abort();
        }
    }
}

impl ObjectReader {
    pub(crate) fn ranged(
        rt: Arc<Runtime>,
        store: Arc<dyn ObjectStore>,
        key: &str,
        size: u64,
        part: u64,
        concurrency: usize,
    ) -> Self {
        Self {
            inner: ReaderInner::Ranged(Ranged {
                rt,
                store,
                path: path(key),
                size,
                next: 0,
                part,
                concurrency,
                inflight: VecDeque::new(),
                chunk: Bytes::new(),
            }),
        }
    }

    pub(crate) fn new(rt: Arc<Runtime>, payload: GetResultPayload, size: u64) -> Self {
        let inner = match payload {
            GetResultPayload::File(file, _) => ReaderInner::File(file.take(size)),
            GetResultPayload::Stream(stream) => ReaderInner::Stream {
                rt,
                stream,
                chunk: Bytes::new(),
            },
        };
        Self { inner }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            ReaderInner::File(file) => file.read(buf),
            ReaderInner::Stream { rt, stream, chunk } => {
                while chunk.is_empty() {
                    match rt.block_on(stream.next()) {
                        None => return Ok(0),
                        Some(Ok(next)) => *chunk = next,
                        Some(Err(e)) => return Err(io::Error::other(e)),
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
