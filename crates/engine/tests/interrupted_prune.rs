//! A prune that dies between deletions leaves every remaining snapshot restorable, and the
//! next prune finishes the job. The failure is injected by a store wrapper that refuses
//! deletes after the first N, on a real local repository.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{Duration, TimeZone, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use strongbox_engine::{
    Engine, FilesBackup, KeepPolicy, PruneOptions, RestoreOptions, VerifyLevel,
};
use strongbox_storage::{store_for, Location, RepoReader, Repository};

/// Passes everything through, but fails every delete after the first `allowed`.
#[derive(Debug)]
struct DiesAfterDeletes {
    inner: Arc<dyn ObjectStore>,
    allowed: usize,
    done: Arc<AtomicUsize>,
}

impl fmt::Display for DiesAfterDeletes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DiesAfterDeletes({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for DiesAfterDeletes {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let (done, allowed) = (self.done.clone(), self.allowed);
        let gate = locations
            .map(move |location| {
                let location = location?;
                if done.fetch_add(1, Ordering::SeqCst) >= allowed {
                    return Err(object_store::Error::Generic {
                        store: "test",
                        source: "the process died here".into(),
                    });
                }
                Ok(location)
            })
            .boxed();
        self.inner.delete_stream(gate)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

fn engine_over(location: &Location, allowed: usize) -> Engine {
    let store = DiesAfterDeletes {
        inner: store_for(location).unwrap(),
        allowed,
        done: Arc::default(),
    };
    Engine::new(Repository::from_reader(
        RepoReader::open_store(Arc::new(store), location.to_string()).unwrap(),
    ))
}

fn objects(engine: &Engine) -> BTreeSet<String> {
    engine
        .repo()
        .list("sets")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

#[test]
fn a_prune_that_dies_between_deletions_leaves_restorable_snapshots_and_the_next_finishes() {
    let policy = KeepPolicy {
        last: Some(2),
        ..KeepPolicy::default()
    };
    // Where a complete prune ends, to compare every interrupted one with.
    let mut expected_objects = None;
    for allowed in [0, 1, 3, 6, 9, usize::MAX] {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::Local(dir.path().join("repo"));
        Repository::init(&location).unwrap();
        let src = dir.path().join("src");
        let healthy = engine_over(&location, usize::MAX);
        let start = Utc.with_ymd_and_hms(2025, 12, 1, 2, 0, 0).unwrap();
        for night in 0..8i64 {
            std::fs::create_dir_all(src.join("d")).unwrap();
            std::fs::write(
                src.join(format!("d/{}.txt", night % 3)),
                format!("night {night}"),
            )
            .unwrap();
            let kind = if night == 4 {
                Some(strongbox_manifest::SnapshotKind::Full)
            } else {
                None
            };
            let opts = FilesBackup {
                kind,
                time: Some(start + Duration::days(night)),
                ..FilesBackup::new("media", &src)
            };
            healthy.backup_files(&opts).unwrap();
        }

        let dying = engine_over(&location, allowed);
        let result = dying.prune(&[], &PruneOptions::new(policy.clone()));
        assert_eq!(
            result.is_err(),
            allowed != usize::MAX,
            "allowed {allowed}: {result:?}"
        );
        // The dying prune could not even release its lock. A dead process's lock is taken
        // over by the next run; this one's pid lives on in the test, so remove it by hand.
        healthy.repo().delete("locks/media.json").unwrap();

        // Every snapshot still listed restores and verifies.
        let remaining = healthy.snapshots(Some("media")).unwrap();
        assert!(remaining.len() >= 2);
        for snapshot in &remaining {
            let target = dir.path().join(format!("restore-{}", snapshot.id));
            healthy
                .restore_files(snapshot, &RestoreOptions::new(&target))
                .unwrap();
        }
        let report = healthy.verify(&remaining, VerifyLevel::Deep).unwrap();
        assert!(report.ok, "allowed {allowed}: {report:?}");

        // The next prune finishes the job: the same objects as an uninterrupted prune.
        healthy
            .prune(&[], &PruneOptions::new(policy.clone()))
            .unwrap();
        assert_eq!(healthy.snapshots(Some("media")).unwrap().len(), 2);
        let left: BTreeSet<String> = objects(&healthy)
            .into_iter()
            .filter(|k| !k.contains("/runs/"))
            .map(|k| {
                k.split('/')
                    .next_back()
                    .unwrap()
                    .split_once('.')
                    .unwrap()
                    .1
                    .to_string()
            })
            .collect();
        match &expected_objects {
            None => expected_objects = Some(left),
            Some(expected) => assert_eq!(&left, expected, "allowed {allowed}"),
        }
    }
}
