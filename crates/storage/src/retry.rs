//! Retries of what object_store's own retry loop leaves alone.
//!
//! object_store retries a request that got a 5xx, and an idempotent one that timed out or
//! was cut; it does not retry a create-only PUT that timed out (the object may have been
//! stored), nor a response body cut after the status line (a listing page, the answer to
//! a multipart start). [`Retrying`] retries those: a listing resumes after the last key it
//! yielded, and a create-only PUT whose retry finds the object already there succeeds when
//! the stored bytes are the ones it sent. Errors with a status (403, 404, an exhausted
//! 5xx) and refused connections are final: object_store has retried them already.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{
    CopyOptions, Error, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, Result,
};

/// How often and how long to retry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// The first wait; each next one doubles.
    pub backoff: Duration,
    /// No retry starts later than this after the first attempt.
    pub deadline: Duration,
}

impl Policy {
    /// Whether attempt `n` (1 = the first retry) may start, having begun at `start`.
    fn allows(&self, n: u32, start: Instant) -> bool {
        n <= self.retries && start.elapsed() < self.deadline
    }

    async fn wait(&self, n: u32, error: &Error) {
        let wait = self.backoff * 2u32.saturating_pow(n - 1);
        tracing::info!(attempt = n, wait_ms = wait.as_millis() as u64, %error, "retrying a store request");
        tokio::time::sleep(wait).await;
    }
}

/// Whether `error` is a cut or timed-out exchange that a new attempt may get through.
fn transient(error: &Error) -> bool {
    let Error::Generic { source, .. } = error else {
        return false;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(e) = cause {
        if retries_spent(&e.to_string()) {
            return false;
        }
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return http.kind() != HttpErrorKind::Connect;
        }
        cause = e.source();
    }
    false
}

/// Whether object_store's own loop ran out of retries: its error type is private, its
/// message says "after N retries, max_retries: N". Another round would only double the wait.
fn retries_spent(message: &str) -> bool {
    let number = |text: &str| -> Option<u64> {
        text.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let Some((_, rest)) = message.split_once(", after ") else {
        return false;
    };
    let Some((_, max)) = rest.split_once("max_retries: ") else {
        return false;
    };
    number(rest)
        .zip(number(max))
        .is_some_and(|(done, max)| done >= max)
}

/// Run `attempt` until it succeeds, fails for good, or the policy is spent.
async fn again<T, F, Fut>(policy: Policy, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let start = Instant::now();
    let mut n = 0;
    loop {
        match attempt().await {
            Err(e) if transient(&e) && policy.allows(n + 1, start) => {
                n += 1;
                policy.wait(n, &e).await;
            }
            other => return other,
        }
    }
}

/// An object store whose requests are retried by a [`Policy`].
#[derive(Debug)]
pub(crate) struct Retrying {
    inner: Arc<dyn ObjectStore>,
    policy: Policy,
}

impl Retrying {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>, policy: Policy) -> Self {
        Retrying { inner, policy }
    }

    /// A listing that, when cut, starts again after the last key it yielded.
    fn resumable(
        &self,
        prefix: Option<&Path>,
        offset: Option<&Path>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        struct State {
            inner: Arc<dyn ObjectStore>,
            policy: Policy,
            prefix: Option<Path>,
            after: Option<Path>,
            stream: Option<BoxStream<'static, Result<ObjectMeta>>>,
            start: Instant,
            retries: u32,
        }
        let state = State {
            inner: self.inner.clone(),
            policy: self.policy,
            prefix: prefix.cloned(),
            after: offset.cloned(),
            stream: None,
            start: Instant::now(),
            retries: 0,
        };
        futures::stream::unfold(Some(state), |state| async move {
            let mut state = state?;
            loop {
                let stream = state.stream.get_or_insert_with(|| match &state.after {
                    Some(after) => state.inner.list_with_offset(state.prefix.as_ref(), after),
                    None => state.inner.list(state.prefix.as_ref()),
                });
                match stream.next().await {
                    None => return None,
                    Some(Ok(meta)) => {
                        state.after = Some(meta.location.clone());
                        return Some((Ok(meta), Some(state)));
                    }
                    Some(Err(e))
                        if transient(&e) && state.policy.allows(state.retries + 1, state.start) =>
                    {
                        state.retries += 1;
                        state.policy.wait(state.retries, &e).await;
                        state.stream = None;
                    }
                    Some(Err(e)) => return Some((Err(e), None)),
                }
            }
        })
        .boxed()
    }
}

impl fmt::Display for Retrying {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Retrying({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Retrying {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let mut attempts = 0;
        let result = again(self.policy, || {
            attempts += 1;
            self.inner.put_opts(location, payload.clone(), opts.clone())
        })
        .await;
        match result {
            // A lost answer to an earlier attempt that did store the object.
            Err(e @ Error::AlreadyExists { .. })
                if attempts > 1 && matches!(opts.mode, PutMode::Create) =>
            {
                let stored = again(self.policy, || self.inner.get(location)).await?;
                let e_tag = stored.meta.e_tag.clone();
                let version = stored.meta.version.clone();
                if stored.bytes().await? == Bytes::from(payload) {
                    Ok(PutResult {
                        e_tag,
                        version,
                        extensions: Default::default(),
                    })
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        // A start whose answer was lost leaves an unused upload, which the store expires.
        again(self.policy, || {
            self.inner.put_multipart_opts(location, opts.clone())
        })
        .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        again(self.policy, || {
            self.inner.get_opts(location, options.clone())
        })
        .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        again(self.policy, || self.inner.get_ranges(location, ranges)).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let inner = self.inner.clone();
        let policy = self.policy;
        locations
            .then(move |location| {
                let inner = inner.clone();
                async move {
                    let location = location?;
                    again(policy, || {
                        let one =
                            futures::stream::once(futures::future::ready(Ok(location.clone())))
                                .boxed();
                        let mut deleted = inner.delete_stream(one);
                        let done = location.clone();
                        async move { deleted.next().await.unwrap_or(Ok(done)) }
                    })
                    .await
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.resumable(prefix, None)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.resumable(prefix, Some(offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        again(self.policy, || self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        again(self.policy, || {
            self.inner.copy_opts(from, to, options.clone())
        })
        .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        again(self.policy, || {
            self.inner.rename_opts(from, to, options.clone())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spent_retries_are_read_from_object_stores_message() {
        let cases = [
            ("Error performing GET u in 12s, after 5 retries, max_retries: 5, retry_timeout: 120s - x", true),
            ("Error performing GET u in 2s, after 1 retries, max_retries: 5, retry_timeout: 120s - x", false),
            ("Error performing GET u in 2s - HTTP error: body", false),
            ("Error getting list response body: HTTP error", false),
        ];
        for (message, spent) in cases {
            assert_eq!(retries_spent(message), spent, "{message}");
        }
    }
}
