//! Request budgets on S3 (docs/storage.md): listing is one LIST, a no-change incremental a
//! handful of requests, a chain's listings and archives are each fetched once, ahead.
//! Counted by a `Layered` store with `RequestCounts` on the real S3-compatible server.

use std::sync::Arc;
use std::time::Duration;

use strongbox_engine::{DirectoryTarget, Engine, FilesSpec, RestoreOptions, SetSpec, SourceSpec};
use strongbox_manifest::{Listing, ObjectRole};
use strongbox_storage::{Layered, Repository, RequestCounts, Store, StoreOptions};
use strongbox_test_support::S3;

fn counted(location: &strongbox_storage::Location) -> (Engine, Arc<RequestCounts>) {
    let counts = Arc::new(RequestCounts::default());
    let store = Store::connect(location, &StoreOptions::default())
        .unwrap()
        .layer(|inner| Arc::new(Layered::new(inner, counts.clone())));
    (Engine::new(Repository::open_store(store).unwrap()), counts)
}

#[test]
fn listing_and_a_no_change_incremental_stay_within_their_request_budget() {
    let Some(s3) = S3::get() else { return };
    let location = s3.location("budget");
    Repository::init(&location).unwrap();
    let (engine, counts) = counted(&location);

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

#[test]
fn a_restore_of_a_chain_fetches_its_listings_and_archives_ahead_once_each() {
    let Some(s3) = S3::get() else { return };
    let location = s3.location("ahead");
    let repo = Repository::init(&location).unwrap();
    let (engine, counts) = counted(&location);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..20 {
        std::fs::write(src.join(format!("f{i}.txt")), format!("file {i}")).unwrap();
    }
    let spec = SetSpec::new("media", SourceSpec::Files(FilesSpec::new(&src)));
    engine.backup(&spec).unwrap();
    for i in 0..4 {
        // Past the file system's timestamp granularity, so the change is seen.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(src.join(format!("f{i}.txt")), "changed").unwrap();
        engine.backup(&spec).unwrap();
    }
    let snapshots = engine.snapshots(Some("media")).unwrap();
    let listing_key = |i: usize| {
        snapshots[i]
            .object(ObjectRole::Listing)
            .unwrap()
            .key
            .clone()
    };

    // The newest delta names its base, then the rest of the chain, newest first.
    let newest: Listing =
        serde_json::from_slice(&repo.read_object(&listing_key(4), None).unwrap()).unwrap();
    let delta = newest.delta.expect("a delta listing");
    assert_eq!(delta.key, listing_key(3));
    let further: Vec<String> = delta.further.iter().map(|l| l.key.clone()).collect();
    assert_eq!(further, [listing_key(2), listing_key(1), listing_key(0)]);

    let before = counts.snapshot();
    let target = dir.path().join("restored");
    let mut restorer = DirectoryTarget {
        path: target.clone(),
        includes: Vec::new(),
        keep_previous: false,
    };
    engine
        .restore(&snapshots[4], &mut restorer, &RestoreOptions::default())
        .unwrap();
    let restore = counts.snapshot() - before;
    for i in 0..20 {
        let name = format!("f{i}.txt");
        assert_eq!(
            std::fs::read(target.join(&name)).unwrap(),
            std::fs::read(src.join(&name)).unwrap()
        );
    }
    // Five archives opened one after another would each take a HEAD for their size first;
    // fetched ahead, each listing and archive is one GET.
    assert_eq!(restore.heads, 0, "{restore:?}");
    assert_eq!(restore.gets, 10, "{restore:?}");
}

/// `status` and `health` read every journal entry of a set. Read one after another, each
/// waited its round trip (300 entries: `status` 8-9 s from s3s-fs on loopback); fetched
/// ahead, each is still one GET: a read that went past what was fetched for it fetched every
/// entry twice.
#[test]
fn status_fetches_each_journal_entry_and_record_once() {
    let Some(s3) = S3::get() else { return };
    let location = s3.location("journal");
    Repository::init(&location).unwrap();
    let (engine, counts) = counted(&location);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "a").unwrap();
    let spec = SetSpec::new("media", SourceSpec::Files(FilesSpec::new(dir.path())));
    for _ in 0..20 {
        engine.backup(&spec).unwrap();
    }

    let before = counts.snapshot();
    let status = engine.status(&["media".to_string()], &[]).unwrap();
    let read = counts.snapshot() - before;
    assert_eq!(status[0].snapshots, 20);
    assert_eq!(status[0].last_runs.len(), 1, "{:?}", status[0].last_runs);
    // 20 records and 20 journal entries; LISTs of records, journal and data objects.
    assert_eq!(read.gets, 40, "{read:?}");
    assert_eq!(read.lists, 3, "{read:?}");
    assert_eq!(read.total(), 43, "{read:?}");
}
