//! A multipart upload fed through buffers of its own, reused once their part has gone.

use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::{MultipartUpload, PutPayload, PutResult, UploadPart, WriteMultipart};
use tokio::runtime::Runtime;

use crate::raw::backend_io;
use crate::BackendError;

/// Bytes handed to the upload at a time; its parts are made of whole or split buffers.
const BUFFER: usize = 1 << 20;

type Pool = Arc<Mutex<Vec<Vec<u8>>>>;

/// A filled buffer, held by the upload until its part has gone, then given back.
struct Pooled {
    buf: Vec<u8>,
    pool: Pool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        if let Ok(mut pool) = self.pool.lock() {
            pool.push(buf);
        }
    }
}

/// An upload in progress. What is written is copied into pooled buffers, each handed to
/// `WriteMultipart` whole, which makes parts of them without copying. Its own `write`
/// copied into fresh buffers instead, that the allocator kept mapping anew: a full backup
/// of the media tree to S3 made 30,000-41,000 page faults that way.
pub(crate) struct Uploading {
    rt: Arc<Runtime>,
    upload: Option<WriteMultipart>,
    concurrency: usize,
    /// A local upload's parts in flight hold its staging file open: an abort that does not
    /// wait for them leaves the file's space taken after the failure is reported, so the
    /// run journal's last entry may not fit on a full disk.
    drain_before_abort: bool,
    filling: Vec<u8>,
    pool: Pool,
}

impl Uploading {
    pub(crate) fn new(
        rt: Arc<Runtime>,
        upload: WriteMultipart,
        concurrency: usize,
        drain_before_abort: bool,
    ) -> Self {
        Self {
            rt,
            upload: Some(upload),
            concurrency,
            drain_before_abort,
            filling: Vec::new(),
            pool: Pool::default(),
        }
    }

    pub(crate) fn write(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            if self.filling.capacity() == 0 {
                let spare = self.pool.lock().ok().and_then(|mut pool| pool.pop());
                self.filling = spare.unwrap_or_else(|| Vec::with_capacity(BUFFER));
            }
            let n = buf.len().min(self.filling.capacity() - self.filling.len());
            self.filling.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if self.filling.len() == self.filling.capacity() {
                self.hand_over()?;
            }
        }
        Ok(())
    }

    pub(crate) fn finish(&mut self) -> io::Result<()> {
        self.hand_over()?;
        let upload = self.upload.take().ok_or_else(finished)?;
        self.rt.block_on(upload.finish()).map_err(backend_io)?;
        Ok(())
    }

    /// Abort an unfinished upload (what a writer dropped unfinished does).
    pub(crate) fn abort(&mut self, key: &str) {
        let Some(mut upload) = self.upload.take() else {
            return;
        };
        tracing::debug!(key, "aborting unfinished upload");
        // Each failed part is taken off the set, so this ends once none is left.
        while self.drain_before_abort && self.rt.block_on(upload.wait_for_capacity(0)).is_err() {}
        // A failure is logged by AbortLogged.
        let _ = self.rt.block_on(upload.abort());
    }

    fn hand_over(&mut self) -> io::Result<()> {
        if self.filling.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.filling);
        let bytes = Bytes::from_owner(Pooled {
            buf,
            pool: self.pool.clone(),
        });
        let upload = self.upload.as_mut().ok_or_else(finished)?;
        // Back-pressure: wait while `concurrency` parts are in flight.
        self.rt
            .block_on(upload.wait_for_capacity(self.concurrency))
            .map_err(backend_io)?;
        let _guard = self.rt.enter();
        upload.put(bytes);
        Ok(())
    }
}

/// A multipart upload whose abort logs its failure instead of returning it. An upload
/// whose parts failed is aborted by `WriteMultipart::finish`, which returns the abort's
/// error in place of the part's when both fail (a server gone): the backup then named the
/// cleanup's DELETE, not the PUT that failed.
#[derive(Debug)]
pub(crate) struct AbortLogged {
    inner: Box<dyn MultipartUpload>,
    key: String,
}

impl AbortLogged {
    pub(crate) fn wrap(key: &str, inner: Box<dyn MultipartUpload>) -> Box<dyn MultipartUpload> {
        Box::new(AbortLogged {
            inner,
            key: key.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl MultipartUpload for AbortLogged {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        if let Err(e) = self.inner.abort().await {
            let key = &self.key;
            tracing::warn!(key, error = %BackendError::new(e), "aborting upload failed");
        }
        Ok(())
    }
}

fn finished() -> io::Error {
    io::Error::other("upload already finished")
}

#[cfg(test)]
mod tests {
    use object_store::local::LocalFileSystem;
    use object_store::path::Path;
    use object_store::ObjectStoreExt;

    use super::*;
    use crate::raw::tests::runtime;

    #[test]
    fn buffers_come_back_once_their_part_has_gone_and_the_bytes_arrive_in_order() {
        const PART: usize = 5 << 20;
        let rt = runtime();
        // A store that lets go of each part once written (an in-memory one keeps them all).
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let upload = rt.block_on(store.put_multipart(&Path::from("a"))).unwrap();
        let upload = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut uploading = Uploading::new(rt.clone(), upload, 2, false);
        let data: Vec<u8> = (0..40 * BUFFER as u32 + 12_345)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        // Writes that fit neither the buffers nor the parts.
        for piece in data.chunks(700_000) {
            uploading.write(piece).unwrap();
        }
        uploading.finish().unwrap();
        let stored = rt.block_on(async { store.get(&Path::from("a")).await?.bytes().await });
        assert!(stored.unwrap() == data, "the bytes arrive in order");
        // Every buffer is back once the upload is done: as many as were ever made, which
        // is what two parts in flight and one filling hold, not one per MiB written.
        let made = uploading.pool.lock().unwrap().len();
        assert!(
            (1..=3 * PART / BUFFER + 1).contains(&made),
            "{made} buffers made"
        );
    }
}
