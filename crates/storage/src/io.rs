use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::{path::Path, GetResultPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;

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

/// A blocking writer that streams into one object through a multipart upload, hashing what
/// it stores. Memory is bounded by part size × upload concurrency. Dropping it without
/// [`ObjectWriter::finish`] aborts the upload, so no partial object becomes visible.
pub struct ObjectWriter {
    key: String,
    rt: Arc<Runtime>,
    upload: Option<WriteMultipart>,
    hasher: Sha256,
    size: u64,
    concurrency: usize,
}

impl ObjectWriter {
    pub(crate) fn new(
        key: String,
        rt: Arc<Runtime>,
        upload: WriteMultipart,
        concurrency: usize,
    ) -> Self {
        Self {
            key,
            rt,
            upload: Some(upload),
            hasher: Sha256::new(),
            size: 0,
            concurrency,
        }
    }

    /// The object key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Complete the upload; the object becomes visible at once, whole.
    pub fn finish(mut self) -> io::Result<Written> {
        let upload = self.upload.take().expect("finish once");
        self.rt
            .block_on(upload.finish())
            .map_err(io::Error::other)?;
        Ok(Written {
            key: std::mem::take(&mut self.key),
            size: self.size,
            sha256: hex::encode(std::mem::take(&mut self.hasher).finalize()),
        })
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let upload = self
            .upload
            .as_mut()
            .ok_or_else(|| io::Error::other("upload already finished"))?;
        // Back-pressure: wait while `concurrency` parts are in flight.
        self.rt
            .block_on(upload.wait_for_capacity(self.concurrency))
            .map_err(io::Error::other)?;
        let _guard = self.rt.enter();
        upload.write(buf);
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
        if let Some(upload) = self.upload.take() {
            tracing::debug!(key = %self.key, "aborting unfinished upload");
            if let Err(e) = self.rt.block_on(upload.abort()) {
                tracing::warn!(key = %self.key, error = %e, "aborting upload failed");
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
}

impl ObjectReader {
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
        }
    }
}

pub(crate) fn path(key: &str) -> Path {
    Path::from(key)
}
