//! A restore of a few files fetches only the frames that hold them (the archive's seek table
//! and the listing's offsets), on a local repository and on S3; a repository where that is
//! not possible still restores, by streaming the archive whole.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use strongbox_engine::{DirectoryTarget, Engine, FilesSpec, RestoreOptions, SetSpec, SourceSpec};
use strongbox_storage::{
    GetRange, Intercept, Layered, Location, Repository, Request, Store, StoreOptions,
};
use strongbox_test_support::S3;

/// What was read of archives: whole GETs, and the bytes of ranged ones.
#[derive(Debug, Default)]
struct ArchiveReads {
    whole: AtomicU64,
    ranged_bytes: AtomicU64,
}

impl Intercept for ArchiveReads {
    fn intercept(&self, request: &Request<'_>) -> object_store::Result<()> {
        if let Request::Get {
            path,
            head: false,
            range,
        } = request
        {
            if path.as_ref().ends_with(".tar.zst") {
                match range {
                    Some(GetRange::Bounded(r)) => self
                        .ranged_bytes
                        .fetch_add(r.end - r.start, Ordering::Relaxed),
                    _ => self.whole.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
        Ok(())
    }
}

/// 100 files of 64 KiB that do not compress, and their bytes.
fn tree(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..100)
        .map(|i| {
            let bytes: Vec<u8> = (0..64 * 1024)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            let path = format!("d{}/f{i:03}.bin", i % 4);
            std::fs::create_dir_all(dir.join(format!("d{}", i % 4))).unwrap();
            std::fs::write(dir.join(&path), &bytes).unwrap();
            (path, bytes)
        })
        .collect()
}

fn engine(location: &Location, reads: &Arc<ArchiveReads>) -> Engine {
    let store = Store::connect(location, &StoreOptions::default())
        .unwrap()
        .layer(|inner| Arc::new(Layered::new(inner, reads.clone())));
    Engine::new(Repository::open_store(store).unwrap())
}

fn restores_one_file_by_its_frames(location: &Location) {
    Repository::init(location).unwrap();
    let reads = Arc::new(ArchiveReads::default());
    let engine = engine(location, &reads);
    let work = tempfile::tempdir().unwrap();
    let files = tree(&work.path().join("src"));
    let spec = SetSpec::new(
        "media",
        SourceSpec::Files(FilesSpec::new(work.path().join("src"))),
    );
    let snapshot = engine.backup(&spec).unwrap();
    let archive = &snapshot
        .objects
        .iter()
        .find(|o| o.key.ends_with(".tar.zst"))
        .unwrap();

    let before = (
        reads.whole.load(Ordering::Relaxed),
        reads.ranged_bytes.load(Ordering::Relaxed),
    );
    let target = work.path().join("restored");
    let mut restorer = DirectoryTarget {
        path: target.clone(),
        includes: vec!["d1/f041.bin".to_string()],
        keep_previous: false,
    };
    engine
        .restore(&snapshot, &mut restorer, &RestoreOptions::default())
        .unwrap();
    let (path, bytes) = &files[41];
    assert_eq!(&std::fs::read(target.join(path)).unwrap(), bytes);
    assert!(
        !target.join("d1/f045.bin").exists(),
        "only what was asked for"
    );

    let whole = reads.whole.load(Ordering::Relaxed) - before.0;
    let ranged = reads.ranged_bytes.load(Ordering::Relaxed) - before.1;
    assert_eq!(whole, 0, "the archive was not read whole");
    // 1 % of the files: at most 5 % of the archive's bytes (the seek table included).
    assert!(
        ranged * 20 <= archive.size,
        "read {ranged} of the archive's {} bytes",
        archive.size
    );
}

#[test]
fn a_partial_restore_of_a_local_repository_reads_only_the_frames_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    restores_one_file_by_its_frames(&Location::Local(dir.path().join("repo")));
}

#[test]
fn a_partial_restore_from_s3_reads_only_the_frames_it_needs() {
    let Some(s3) = S3::get() else { return };
    restores_one_file_by_its_frames(&s3.location("partial"));
}

#[test]
fn an_archive_whose_seek_table_is_damaged_is_read_whole_and_still_restores() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::Local(dir.path().join("repo"));
    Repository::init(&location).unwrap();
    let reads = Arc::new(ArchiveReads::default());
    let engine = engine(&location, &reads);
    let files = tree(&dir.path().join("src"));
    let spec = SetSpec::new(
        "media",
        SourceSpec::Files(FilesSpec::new(dir.path().join("src"))),
    );
    let snapshot = engine.backup(&spec).unwrap();
    let archive = snapshot
        .objects
        .iter()
        .find(|o| o.key.ends_with(".tar.zst"))
        .unwrap();
    // The table's last byte (its magic) damaged: zstd readers skip the table's frame by its
    // declared size, so the archive still decodes; its index is gone.
    let file = dir.path().join("repo").join(&archive.key);
    let mut stored = std::fs::read(&file).unwrap();
    *stored.last_mut().unwrap() ^= 0xff;
    std::fs::write(&file, stored).unwrap();

    let target = dir.path().join("restored");
    let mut restorer = DirectoryTarget {
        path: target.clone(),
        includes: vec!["d2/f002.bin".to_string()],
        keep_previous: false,
    };
    engine
        .restore(&snapshot, &mut restorer, &RestoreOptions::default())
        .unwrap();
    assert_eq!(std::fs::read(target.join(&files[2].0)).unwrap(), files[2].1);
    assert_eq!(
        reads.whole.load(Ordering::Relaxed),
        1,
        "streamed whole instead"
    );
}

#[test]
fn a_damaged_frame_fails_a_partial_restore_naming_the_archive_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::Local(dir.path().join("repo"));
    Repository::init(&location).unwrap();
    let reads = Arc::new(ArchiveReads::default());
    let engine = engine(&location, &reads);
    tree(&dir.path().join("src"));
    let spec = SetSpec::new(
        "media",
        SourceSpec::Files(FilesSpec::new(dir.path().join("src"))),
    );
    let snapshot = engine.backup(&spec).unwrap();
    let archive = snapshot
        .objects
        .iter()
        .find(|o| o.key.ends_with(".tar.zst"))
        .unwrap();
    // A byte changed every 16 KiB, the seek table at the end left alone: whichever frames
    // the restore fetches are damaged.
    let file = dir.path().join("repo").join(&archive.key);
    let mut stored = std::fs::read(&file).unwrap();
    let frames = stored.len() - 2048;
    for at in (1000..frames).step_by(16 * 1024) {
        stored[at] ^= 0x55;
    }
    std::fs::write(&file, stored).unwrap();

    let target = dir.path().join("restored");
    let mut restorer = DirectoryTarget {
        path: target.clone(),
        includes: vec!["d1/f041.bin".to_string()],
        keep_previous: false,
    };
    let err = engine
        .restore(&snapshot, &mut restorer, &RestoreOptions::default())
        .unwrap_err();
    let text = format!("{err}");
    assert!(text.contains(&archive.key), "{text}");
    assert!(!target.exists(), "nothing restored");
    assert_eq!(reads.whole.load(Ordering::Relaxed), 0, "read by frames");
}
