//! Request budgets on S3 (docs/storage.md): listing is one LIST, a no-change incremental a
//! handful of requests. Counted by a `Layered` store with `RequestCounts` on the real
//! S3-compatible server.

use std::sync::Arc;

use strongbox_engine::{Engine, FilesSpec, SetSpec, SourceSpec};
use strongbox_storage::{Layered, Repository, RequestCounts, Store, StoreOptions};
use strongbox_test_support::S3;

#[test]
fn listing_and_a_no_change_incremental_stay_within_their_request_budget() {
    let Some(s3) = S3::get() else { return };
    let location = s3.location("budget");
    Repository::init(&location).unwrap();
    let counts = Arc::new(RequestCounts::default());
    let store = Store::connect(&location, &StoreOptions::default())
        .unwrap()
        .layer(|inner| Arc::new(Layered::new(inner, counts.clone())));
    let engine = Engine::new(Repository::open_store(store).unwrap());

    let dir = tempfile::tempdir().unwrap();
    for i in 0..200 {
        std::fs::write(dir.path().join(format!("f{i}.txt")), format!("file {i}")).unwrap();
    }
    let spec = SetSpec::new("media", SourceSpec::Files(FilesSpec::new(dir.path())));
    engine.backup(&spec).unwrap();
    engine.backup(&spec).unwrap();

    let before = counts.snapshot();
    let snapshots = engine.snapshots(Some("media")).unwrap();
    let listing = counts.snapshot() - before;
    assert_eq!(snapshots.len(), 2);
    assert_eq!(listing.lists, 1, "{listing:?}");
    assert_eq!(listing.gets, 2, "one GET per record: {listing:?}");
    assert_eq!(listing.heads, 0, "no HEAD per object: {listing:?}");

    let before = counts.snapshot();
    let snapshot = engine.backup(&spec).unwrap();
    let backup = counts.snapshot() - before;
    assert_eq!(snapshot.file_stats().unwrap().unchanged, 200);
    // lock put + delete, journal put ×2, snapshots list + 2 record gets, data list (are
    // the archives the parent draws from there?), parent listing gets (a delta and its
    // base; their sizes are recorded, so no HEAD), listing put + head, record put: 13;
    // nothing changed, so no archive upload.
    assert_eq!(backup.multipart_starts, 0, "{backup:?}");
    assert!(
        backup.total() <= 13,
        "a no-change incremental took {} requests: {backup:?}",
        backup.total()
    );
}
