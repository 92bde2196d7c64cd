//! A restore of a few files fetches only the frames that hold them (the archive's seek table
//! and the listing's offsets), on a local repository and on S3, and in an encrypted one only
//! the age chunks around them; a repository where that is not possible still restores, by
//! streaming the archive whole; a damaged frame or chunk fails it.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use strongbox_archive::{sha256_hex, Compression, Decoder, Encoder};
use strongbox_engine::{DirectoryTarget, Engine, FilesSpec, RestoreOptions, SetSpec, SourceSpec};
use strongbox_manifest::{ObjectRef, ObjectRole, Snapshot};
use strongbox_storage::{
    GetRange, Intercept, KeyHolder, Layered, Location, Repository, Request, Store, StoreOptions,
};
use strongbox_test_support::S3;

/// The recipient of the encrypted fixtures' one key file; reading needs no key here, as the
/// repository is unlocked when it is made.
const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

/// What was read of archives: whole GETs, and the bytes of ranged ones.
#[derive(Debug, Default)]
struct ArchiveReads {
    whole: AtomicU64,
    ranged: AtomicU64,
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
                    Some(GetRange::Bounded(r)) => {
                        self.ranged.fetch_add(1, Ordering::Relaxed);
                        self.ranged_bytes
                            .fetch_add(r.end - r.start, Ordering::Relaxed)
                    }
                    _ => self.whole.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
        Ok(())
    }
}

/// 100 files of about 64 KiB that do not compress, and their bytes.
fn tree(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..100)
        .map(|i| {
            // Sizes off the 512-byte blocks of tar, so entries end in padding.
            let bytes: Vec<u8> = (0..64 * 1024 + i * 37)
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

/// A tree backed up into a repository at `location` (a local one in `work` when `None`)
/// through a store wrapper that counts archive reads.
struct Fixture {
    work: tempfile::TempDir,
    engine: Engine,
    reads: Arc<ArchiveReads>,
    encrypted: bool,
    snapshot: Snapshot,
    files: Vec<(String, Vec<u8>)>,
}

impl Fixture {
    fn new(location: Option<Location>) -> Self {
        Self::with(location, false)
    }

    /// The same in an encrypted repository (unlocked: it was just made).
    fn encrypted(location: Option<Location>) -> Self {
        Self::with(location, true)
    }

    fn with(location: Option<Location>, encrypted: bool) -> Self {
        let work = tempfile::tempdir().unwrap();
        let location = location.unwrap_or_else(|| Location::Local(work.path().join("repo")));
        let reads = Arc::new(ArchiveReads::default());
        let store = Store::create(&location, &StoreOptions::default())
            .unwrap()
            .layer(|inner| Arc::new(Layered::new(inner, reads.clone())));
        let repo = if encrypted {
            let holder = KeyHolder::Recipient(RECIPIENT.to_string());
            Repository::init_store_encrypted(store, &[holder]).unwrap()
        } else {
            Repository::init_store(store).unwrap()
        };
        let engine = Engine::new(repo);
        let files = tree(&work.path().join("src"));
        let spec = SetSpec::new(
            "media",
            SourceSpec::Files(FilesSpec::new(work.path().join("src"))),
        );
        let snapshot = engine.backup(&spec).unwrap();
        Fixture {
            work,
            engine,
            reads,
            encrypted,
            snapshot,
            files,
        }
    }

    fn archive(&self) -> &ObjectRef {
        self.snapshot
            .objects
            .iter()
            .find(|o| o.key.ends_with(".tar.zst"))
            .unwrap()
    }

    /// Change the local archive's stored bytes.
    fn damage(&self, change: impl FnOnce(&mut Vec<u8>)) {
        let file = self.work.path().join("repo").join(&self.archive().key);
        let mut stored = std::fs::read(&file).unwrap();
        change(&mut stored);
        std::fs::write(&file, stored).unwrap();
    }

    /// Restore the file `files[i]` alone into `restored/`.
    fn restore_one(&self, i: usize) -> Result<PathBuf, strongbox_engine::Error> {
        self.restore_some(&[i])
    }

    /// Restore the files `files[i]` of `some` into `restored/`.
    fn restore_some(&self, some: &[usize]) -> Result<PathBuf, strongbox_engine::Error> {
        self.restore_from(&self.snapshot, some)
    }

    /// The same from `snapshot`, a record of this fixture's snapshot as it might be forged.
    fn restore_from(
        &self,
        snapshot: &Snapshot,
        some: &[usize],
    ) -> Result<PathBuf, strongbox_engine::Error> {
        let target = self.work.path().join("restored");
        let mut restorer = DirectoryTarget {
            path: target.clone(),
            includes: some.iter().map(|&i| self.files[i].0.clone()).collect(),
            keep_previous: false,
        };
        self.engine
            .restore(snapshot, &mut restorer, &RestoreOptions::default())?;
        Ok(target)
    }

    /// The snapshot with its local listing rewritten by `change` (entries as JSON), and
    /// its record's listing object naming the new bytes.
    fn forge_listing(&self, change: impl FnOnce(&mut Vec<serde_json::Value>)) -> Snapshot {
        let mut snapshot = self.snapshot.clone();
        let mut digest = String::new();
        let object = self.rewrite_listing(&mut snapshot, |stored| {
            let mut json = Vec::new();
            Decoder::new(stored.as_slice())
                .unwrap()
                .read_to_end(&mut json)
                .unwrap();
            let mut listing: serde_json::Value = serde_json::from_slice(&json).unwrap();
            change(listing["entries"].as_array_mut().unwrap());
            let mut encoder = Encoder::new(Vec::new(), Compression::Zstd(3), 0).unwrap();
            encoder.write_all(listing.to_string().as_bytes()).unwrap();
            *stored = encoder.finish().unwrap();
            digest = sha256_hex(stored);
        });
        object.sha256 = digest;
        snapshot
    }

    /// Rewrite the stored bytes of `snapshot`'s listing with `change`; its record's object
    /// takes the new size (its digest is left to the caller).
    fn rewrite_listing<'s>(
        &self,
        snapshot: &'s mut Snapshot,
        change: impl FnOnce(&mut Vec<u8>),
    ) -> &'s mut ObjectRef {
        let object = snapshot
            .objects
            .iter_mut()
            .find(|o| o.role == ObjectRole::Listing)
            .unwrap();
        let file = self.work.path().join("repo").join(&object.key);
        let mut stored = std::fs::read(&file).unwrap();
        change(&mut stored);
        std::fs::write(&file, &stored).unwrap();
        object.size = stored.len() as u64;
        object
    }

    fn ranged_requests(&self) -> u64 {
        self.reads.ranged.load(Ordering::Relaxed)
    }

    fn reads(&self) -> (u64, u64) {
        (
            self.reads.whole.load(Ordering::Relaxed),
            self.reads.ranged_bytes.load(Ordering::Relaxed),
        )
    }
}

fn restores_one_file_by_its_frames(fixture: Fixture) {
    let before = fixture.reads();
    let requests = fixture.ranged_requests();
    let target = fixture.restore_one(41).unwrap();
    let (path, bytes) = &fixture.files[41];
    assert_eq!(&std::fs::read(target.join(path)).unwrap(), bytes);
    assert!(
        !target.join(&fixture.files[45].0).exists(),
        "only what was asked for"
    );
    let after = fixture.reads();
    assert_eq!(after.0, before.0, "the archive was not read whole");
    // 1 % of the files: at most 5 % of the archive's bytes (the seek table included).
    let (ranged, size) = (after.1 - before.1, fixture.archive().size);
    assert!(
        ranged * 20 <= size,
        "read {ranged} of the archive's {size} bytes"
    );
    // One read of the archive's end for its seek table, one of the span that holds the
    // file, and in an encrypted repository one of its header first.
    let requests = fixture.ranged_requests() - requests;
    assert_eq!(requests, if fixture.encrypted { 3 } else { 2 });
}

#[test]
fn a_partial_restore_of_a_local_repository_reads_only_the_frames_it_needs() {
    restores_one_file_by_its_frames(Fixture::new(None));
}

#[test]
fn a_partial_restore_from_s3_reads_only_the_frames_it_needs() {
    let Some(s3) = S3::get() else { return };
    restores_one_file_by_its_frames(Fixture::new(Some(s3.location("partial"))));
}

#[test]
fn a_partial_restore_of_an_encrypted_repository_reads_only_the_chunks_around_its_frames() {
    restores_one_file_by_its_frames(Fixture::encrypted(None));
}

#[test]
fn a_partial_restore_from_encrypted_s3_reads_only_the_chunks_around_its_frames() {
    let Some(s3) = S3::get() else { return };
    restores_one_file_by_its_frames(Fixture::encrypted(Some(s3.location("partial-age"))));
}

#[test]
fn files_next_to_each_other_are_read_in_one_span_each_from_its_offset() {
    let fixture = Fixture::new(None);
    // d1/f001, d1/f005 and d1/f009 follow each other in the archive: one read, three
    // entries found at their offsets past each other's data and padding.
    let target = fixture.restore_some(&[1, 5, 9, 62]).unwrap();
    for i in [1, 5, 9, 62] {
        let (path, bytes) = &fixture.files[i];
        assert_eq!(&std::fs::read(target.join(path)).unwrap(), bytes, "{path}");
    }
    assert_eq!(fixture.reads().0, 0, "read by frames");
}

#[test]
fn an_archive_whose_seek_table_is_damaged_is_read_whole_and_still_restores() {
    let fixture = Fixture::new(None);
    // The table's last byte (its magic) damaged: zstd readers skip the table's frame by its
    // declared size, so the archive still decodes; its index is gone.
    fixture.damage(|stored| *stored.last_mut().unwrap() ^= 0xff);
    let target = fixture.restore_one(2).unwrap();
    assert_eq!(
        std::fs::read(target.join(&fixture.files[2].0)).unwrap(),
        fixture.files[2].1
    );
    assert_eq!(fixture.reads().0, 1, "streamed whole instead");
}

#[test]
fn a_seek_table_footer_claiming_more_frames_than_the_archive_has_is_read_whole() {
    let fixture = Fixture::new(None);
    // 10,000 frames: a table of 80 KB, longer than the end read first, so it is read on its
    // own, and it does not parse.
    fixture.damage(|stored| {
        let at = stored.len() - 9;
        stored[at..at + 4].copy_from_slice(&10_000u32.to_le_bytes());
    });
    let target = fixture.restore_one(2).unwrap();
    assert_eq!(
        std::fs::read(target.join(&fixture.files[2].0)).unwrap(),
        fixture.files[2].1
    );
    assert_eq!(fixture.reads().0, 1, "streamed whole instead");
    assert_eq!(
        fixture.ranged_requests(),
        2,
        "the end, then the claimed table"
    );
}

#[test]
fn a_damaged_frame_fails_a_partial_restore_naming_the_archive_and_writes_nothing() {
    let fixture = Fixture::new(None);
    // A byte changed every 16 KiB, the seek table at the end left alone: whichever frames
    // the restore fetches are damaged.
    fixture.damage(|stored| {
        let frames = stored.len() - 2048;
        for at in (1000..frames).step_by(16 * 1024) {
            stored[at] ^= 0x55;
        }
    });
    let err = fixture.restore_one(41).unwrap_err().to_string();
    assert!(err.contains(&fixture.archive().key), "{err}");
    assert!(
        !fixture.work.path().join("restored").exists(),
        "nothing restored"
    );
    assert_eq!(fixture.reads().0, 0, "read by frames");
}

#[test]
fn a_damaged_chunk_fails_a_partial_restore_of_an_encrypted_repository_and_writes_nothing() {
    let fixture = Fixture::encrypted(None);
    // A byte changed every 16 KiB, the last chunks (with the seek table) left alone.
    fixture.damage(|stored| {
        let chunks = stored.len() - 200 * 1024;
        for at in (1000..chunks).step_by(16 * 1024) {
            stored[at] ^= 0x55;
        }
    });
    let err = strongbox_test_support::chain(&fixture.restore_one(41).unwrap_err());
    assert!(
        err.contains(&fixture.archive().key) && err.contains("does not authenticate"),
        "{err}"
    );
    assert!(
        !fixture.work.path().join("restored").exists(),
        "nothing restored"
    );
    assert_eq!(fixture.reads().0, 0, "read by chunks");
}

#[test]
fn a_listing_offset_that_points_at_another_entry_fails_naming_both_and_writes_nothing() {
    let fixture = Fixture::new(None);
    let (wanted, other) = (&fixture.files[41].0, &fixture.files[42].0);
    let forged = fixture.forge_listing(|entries| {
        let offset_of = |path: &str| {
            let entry = entries.iter().find(|e| e["path"] == path).unwrap();
            entry["offset"].clone()
        };
        let offset = offset_of(other);
        let entry = entries.iter_mut().find(|e| e["path"] == *wanted).unwrap();
        entry["offset"] = offset;
    });
    let err = fixture
        .restore_from(&forged, &[41])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&fixture.archive().key) && err.contains(wanted) && err.contains(other),
        "{err}"
    );
    assert!(
        !fixture.work.path().join("restored").exists(),
        "nothing restored"
    );
}

#[test]
fn a_listing_entry_its_archive_lacks_fails_a_whole_restore_naming_it_and_writes_nothing() {
    // Right after a file the archive holds and before others (the archive passes it by),
    // and after every entry (the archive ends before it).
    for lacking in ["d1/f041x.bin", "d3/zz.bin"] {
        // A fixture each: forging rewrites the listing in place.
        let fixture = Fixture::new(None);
        assert_eq!(fixture.files[41].0, "d1/f041.bin");
        let forged = fixture.forge_listing(|entries| {
            let at = entries
                .iter()
                .position(|e| e["path"].as_str().unwrap() > lacking)
                .unwrap_or(entries.len());
            let mut entry = entries[41.min(entries.len() - 1)].clone();
            entry["path"] = lacking.into();
            entries.insert(at, entry);
        });
        let err = fixture.restore_from(&forged, &[]).unwrap_err().to_string();
        assert!(
            err.contains(&fixture.archive().key) && err.contains(lacking) && err.contains("lacks"),
            "{lacking}: {err}"
        );
        assert!(
            !fixture.work.path().join("restored").exists(),
            "{lacking}: nothing restored"
        );
    }
}

#[test]
fn a_listing_that_is_not_the_recorded_one_is_named_as_such_not_by_an_odd_entry_in_it() {
    let fixture = Fixture::new(None);
    // An entry climbing out of the target near the listing's start, and then 16 MiB of
    // padding (a skippable frame) after its end that the record does not know: the restore
    // meets the entry long before the stream's end finds the digest is not the recorded one.
    let mut snapshot = fixture.forge_listing(|entries| {
        let entry = entries
            .iter_mut()
            .find(|e| e["path"] == "d0/f000.bin")
            .unwrap();
        entry["path"] = "../f000.bin".into();
    });
    let key = fixture
        .rewrite_listing(&mut snapshot, |stored| {
            let pad = 16u32 << 20;
            stored.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
            stored.extend_from_slice(&pad.to_le_bytes());
            stored.resize(stored.len() + pad as usize, 0);
        })
        .key
        .clone();

    let err = strongbox_test_support::chain(&fixture.restore_from(&snapshot, &[]).unwrap_err());
    assert!(
        err.contains(&format!("corrupt listing {key}")) && err.contains("does not match"),
        "{err}"
    );
    assert!(
        !fixture.work.path().join("restored").exists(),
        "nothing restored"
    );
}
