//! Wrappers over any object store: one [`Layered`] store hands every request to an
//! [`Intercept`] before passing it on, so counting requests, injecting faults or refusing
//! writes is one small hook, never an `if` in the repository code.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result, UploadPart,
};

/// One request to an object store, as an [`Intercept`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request<'a> {
    /// A single PUT of a whole object.
    Put {
        /// The object.
        path: &'a Path,
        /// Overwrite, create-only or update.
        mode: &'a PutMode,
        /// Bytes sent.
        size: u64,
    },
    /// The start of a multipart upload.
    UploadStart {
        /// The object.
        path: &'a Path,
    },
    /// One part of a multipart upload.
    UploadPart {
        /// The object.
        path: &'a Path,
        /// Bytes sent.
        size: u64,
    },
    /// The completion of a multipart upload: the object becomes visible.
    UploadComplete {
        /// The object.
        path: &'a Path,
    },
    /// The abort of a multipart upload.
    UploadAbort {
        /// The object.
        path: &'a Path,
    },
    /// A GET (or, with `head`, a HEAD) of an object or of a range of it.
    Get {
        /// The object.
        path: &'a Path,
        /// Only the metadata.
        head: bool,
        /// Only this part of the object.
        range: Option<&'a GetRange>,
    },
    /// Several ranges of an object at once.
    GetRanges {
        /// The object.
        path: &'a Path,
    },
    /// The deletion of an object.
    Delete {
        /// The object.
        path: &'a Path,
    },
    /// A listing below a prefix.
    List {
        /// The prefix.
        prefix: Option<&'a Path>,
    },
    /// A copy or rename.
    Copy {
        /// The source.
        from: &'a Path,
        /// The destination.
        to: &'a Path,
    },
}

impl Request<'_> {
    /// Whether the request changes the store.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Put { .. }
                | Request::UploadStart { .. }
                | Request::UploadPart { .. }
                | Request::UploadComplete { .. }
                | Request::UploadAbort { .. }
                | Request::Delete { .. }
                | Request::Copy { .. }
        )
    }

    /// The request's kind, as its variant is named (`Put`, `UploadComplete`, `Get`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Put { .. } => "Put",
            Request::UploadStart { .. } => "UploadStart",
            Request::UploadPart { .. } => "UploadPart",
            Request::UploadComplete { .. } => "UploadComplete",
            Request::UploadAbort { .. } => "UploadAbort",
            Request::Get { .. } => "Get",
            Request::GetRanges { .. } => "GetRanges",
            Request::Delete { .. } => "Delete",
            Request::List { .. } => "List",
            Request::Copy { .. } => "Copy",
        }
    }

    /// The object (or prefix) the request is about.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Request::Put { path, .. }
            | Request::UploadStart { path }
            | Request::UploadPart { path, .. }
            | Request::UploadComplete { path }
            | Request::UploadAbort { path }
            | Request::Get { path, .. }
            | Request::GetRanges { path }
            | Request::Delete { path } => Some(path),
            Request::List { prefix } => *prefix,
            Request::Copy { to, .. } => Some(to),
        }
    }
}

/// Sees every request before the store does; an error fails the request without passing
/// it on.
pub trait Intercept: fmt::Debug + Send + Sync + 'static {
    /// Called before `request` goes to the inner store.
    fn intercept(&self, request: &Request<'_>) -> Result<()>;
}

/// An object store that shows every request to an [`Intercept`] first.
#[derive(Debug)]
pub struct Layered<I> {
    inner: Arc<dyn ObjectStore>,
    hook: Arc<I>,
}

impl<I: Intercept> Layered<I> {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, hook: Arc<I>) -> Self {
        Self { inner, hook }
    }
}

impl<I> fmt::Display for Layered<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Layered({})", self.inner)
    }
}

#[derive(Debug)]
struct LayeredUpload<I> {
    inner: Box<dyn MultipartUpload>,
    path: Path,
    hook: Arc<I>,
}

#[async_trait::async_trait]
impl<I: Intercept> MultipartUpload for LayeredUpload<I> {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let request = Request::UploadPart {
            path: &self.path,
            size: data.content_length() as u64,
        };
        match self.hook.intercept(&request) {
            Ok(()) => self.inner.put_part(data),
            Err(e) => Box::pin(futures::future::ready(Err(e))),
        }
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.hook
            .intercept(&Request::UploadComplete { path: &self.path })?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.hook
            .intercept(&Request::UploadAbort { path: &self.path })?;
        self.inner.abort().await
    }
}

#[async_trait::async_trait]
impl<I: Intercept> ObjectStore for Layered<I> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.hook.intercept(&Request::Put {
            path: location,
            mode: &opts.mode,
            size: payload.content_length() as u64,
        })?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.hook
            .intercept(&Request::UploadStart { path: location })?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(LayeredUpload {
            inner,
            path: location.clone(),
            hook: self.hook.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.hook.intercept(&Request::Get {
            path: location,
            head: options.head,
            range: options.range.as_ref(),
        })?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.hook
            .intercept(&Request::GetRanges { path: location })?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let hook = self.hook.clone();
        let locations = locations
            .map(move |location| {
                let location = location?;
                hook.intercept(&Request::Delete { path: &location })?;
                Ok(location)
            })
            .boxed();
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.hook.intercept(&Request::List { prefix }) {
            Ok(()) => self.inner.list(prefix),
            Err(e) => futures::stream::once(futures::future::ready(Err(e))).boxed(),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.hook.intercept(&Request::List { prefix }) {
            Ok(()) => self.inner.list_with_offset(prefix, offset),
            Err(e) => futures::stream::once(futures::future::ready(Err(e))).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.hook.intercept(&Request::List { prefix })?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.hook.intercept(&Request::Copy { from, to })?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.hook.intercept(&Request::Copy { from, to })?;
        self.inner.rename_opts(from, to, options).await
    }
}

/// Counts the requests passing through a [`Layered`] store, by kind: to hold commands to
/// their request budget (docs/storage.md) and to diagnose a slow remote.
#[derive(Debug, Default)]
pub struct RequestCounts {
    gets: AtomicU64,
    heads: AtomicU64,
    puts: AtomicU64,
    lists: AtomicU64,
    deletes: AtomicU64,
    multipart_starts: AtomicU64,
    multipart_parts: AtomicU64,
    multipart_completes: AtomicU64,
    other: AtomicU64,
}

/// A snapshot of [`RequestCounts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    /// GET requests.
    pub gets: u64,
    /// HEAD requests.
    pub heads: u64,
    /// Single PUT requests.
    pub puts: u64,
    /// LIST calls (one per listing; a listing of over 1,000 keys pages further).
    pub lists: u64,
    /// Deletes.
    pub deletes: u64,
    /// Multipart uploads started.
    pub multipart_starts: u64,
    /// Parts uploaded.
    pub multipart_parts: u64,
    /// Multipart uploads completed.
    pub multipart_completes: u64,
    /// Copies, renames, aborts and ranged multi-gets.
    pub other: u64,
}

impl Requests {
    /// Every request.
    pub fn total(&self) -> u64 {
        self.gets
            + self.heads
            + self.puts
            + self.lists
            + self.deletes
            + self.multipart_starts
            + self.multipart_parts
            + self.multipart_completes
            + self.other
    }
}

impl std::ops::Sub for Requests {
    type Output = Requests;

    /// The requests made between two snapshots of the counts.
    fn sub(self, earlier: Requests) -> Requests {
        Requests {
            gets: self.gets - earlier.gets,
            heads: self.heads - earlier.heads,
            puts: self.puts - earlier.puts,
            lists: self.lists - earlier.lists,
            deletes: self.deletes - earlier.deletes,
            multipart_starts: self.multipart_starts - earlier.multipart_starts,
            multipart_parts: self.multipart_parts - earlier.multipart_parts,
            multipart_completes: self.multipart_completes - earlier.multipart_completes,
            other: self.other - earlier.other,
        }
    }
}

impl RequestCounts {
    /// The counts so far.
    pub fn snapshot(&self) -> Requests {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Requests {
            gets: get(&self.gets),
            heads: get(&self.heads),
            puts: get(&self.puts),
            lists: get(&self.lists),
            deletes: get(&self.deletes),
            multipart_starts: get(&self.multipart_starts),
            multipart_parts: get(&self.multipart_parts),
            multipart_completes: get(&self.multipart_completes),
            other: get(&self.other),
        }
    }
}

impl Intercept for RequestCounts {
    fn intercept(&self, request: &Request<'_>) -> Result<()> {
        let counter = match request {
            Request::Put { .. } => &self.puts,
            Request::UploadStart { .. } => &self.multipart_starts,
            Request::UploadPart { .. } => &self.multipart_parts,
            Request::UploadComplete { .. } => &self.multipart_completes,
            Request::Get { head: true, .. } => &self.heads,
            Request::Get { .. } => &self.gets,
            Request::Delete { .. } => &self.deletes,
            Request::List { .. } => &self.lists,
            Request::UploadAbort { .. } | Request::GetRanges { .. } | Request::Copy { .. } => {
                &self.other
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
