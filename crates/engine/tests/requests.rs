//! Request budgets on S3 (docs/storage.md): listing is one LIST, a no-change incremental a
//! handful of requests. Counted with `CountingStore` on the real S3-compatible server.

use std::sync::Arc;

use strongbox_engine::{Engine, FilesBackup};
use strongbox_storage::{store_for, CountingStore, Location, RepoReader, Repository, Requests};

fn bucket() -> Option<String> {
    match std::env::var("STRONGBOX_TEST_S3_BUCKET") {
        Ok(bucket) => Some(bucket),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("STRONGBOX_TEST_S3_BUCKET is not set under CI=true: the S3 server did not start")
        }
        Err(_) => {
            eprintln!("skipping: no S3 server (run scripts/test.sh)");
            None
        }
    }
}

#[test]
fn listing_and_a_no_change_incremental_stay_within_their_request_budget() {
    let Some(bucket) = bucket() else { return };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let location = Location::S3 {
        bucket,
        prefix: format!("budget-{nanos:08x}"),
    };
    Repository::init(&location).unwrap();
    let counting = CountingStore::new(store_for(&location).unwrap());
    let counts = counting.counts();
    let reader = RepoReader::open_store(Arc::new(counting), location.to_string()).unwrap();
    let engine = Engine::new(Repository::from_reader(reader));

    let dir = tempfile::tempdir().unwrap();
    for i in 0..200 {
        std::fs::write(dir.path().join(format!("f{i}.txt")), format!("file {i}")).unwrap();
    }
    let opts = FilesBackup::new("media", dir.path());
    engine.backup_files(&opts).unwrap();
    engine.backup_files(&opts).unwrap();

    let before = counts.snapshot();
    let snapshots = engine.snapshots(Some("media")).unwrap();
    let listing = delta(before, counts.snapshot());
    assert_eq!(snapshots.len(), 2);
    assert_eq!(listing.lists, 1, "{listing:?}");
    assert_eq!(listing.gets, 2, "one GET per record: {listing:?}");
    assert_eq!(listing.heads, 0, "no HEAD per object: {listing:?}");

    let before = counts.snapshot();
    let snapshot = engine.backup_files(&opts).unwrap();
    let backup = delta(before, counts.snapshot());
    assert_eq!(snapshot.file_stats().unwrap().unchanged, 200);
    // lock put + delete, journal put ×2, snapshots list + 3 record gets, parent listing
    // get, listing put + head, record put: 12; nothing changed, so no archive upload.
    assert_eq!(backup.multipart_starts, 0, "{backup:?}");
    assert!(
        backup.total() <= 12,
        "a no-change incremental took {} requests: {backup:?}",
        backup.total()
    );
}

fn delta(a: Requests, b: Requests) -> Requests {
    Requests {
        gets: b.gets - a.gets,
        heads: b.heads - a.heads,
        puts: b.puts - a.puts,
        lists: b.lists - a.lists,
        deletes: b.deletes - a.deletes,
        multipart_starts: b.multipart_starts - a.multipart_starts,
        multipart_parts: b.multipart_parts - a.multipart_parts,
        multipart_completes: b.multipart_completes - a.multipart_completes,
        other: b.other - a.other,
    }
}
