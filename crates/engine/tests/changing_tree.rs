//! Files that change while a backup reads the tree: a file removed before it is opened, or
//! cut short while it is read, is left out of the snapshot and named in its errors; the
//! rest is stored and restores byte for byte. The same for a full snapshot (stored as the
//! walk goes) and an incremental one (stored after the diff).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use strongbox_engine::{
    DirectoryTarget, Engine, FilesSpec, Progress, RestoreOptions, SetSpec, SourceSpec,
};
use strongbox_manifest::{FileStats, Snapshot, SnapshotKind, Stats};
use strongbox_storage::{Location, Repository};

/// On the first bytes read (from `d/a.bin`, the first file of the walk): cut that file to
/// nothing and remove `d/b.txt`, which has not been opened yet.
struct CutAndRemove {
    src: PathBuf,
    armed: AtomicBool,
}

impl Progress for CutAndRemove {
    fn advance(&self, _bytes: u64) {
        if self.armed.swap(false, Ordering::SeqCst) {
            fs::File::options()
                .write(true)
                .open(self.src.join("d/a.bin"))
                .unwrap()
                .set_len(0)
                .unwrap();
            fs::remove_file(self.src.join("d/b.txt")).unwrap();
        }
    }
}

/// `d/a.bin` (64 MiB, more than one read), `d/b.txt` and `d/c.txt`, with `tag` in them.
fn write_tree(src: &Path, tag: &str) {
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/a.bin"), vec![7u8; 64 << 20]).unwrap();
    fs::write(src.join("d/b.txt"), format!("b {tag}")).unwrap();
    fs::write(src.join("d/c.txt"), format!("c {tag}")).unwrap();
}

struct Fixture {
    work: tempfile::TempDir,
    repo: Location,
}

impl Fixture {
    fn new() -> Self {
        let work = tempfile::tempdir().unwrap();
        let repo = Location::Local(work.path().join("repo"));
        Repository::init(&repo).unwrap();
        Fixture { work, repo }
    }

    fn src(&self) -> PathBuf {
        self.work.path().join("src")
    }

    fn engine(&self, progress: Option<Arc<dyn Progress>>) -> Engine {
        let engine = Engine::new(Repository::open(&self.repo).unwrap());
        match progress {
            Some(progress) => engine.with_progress(progress),
            None => engine,
        }
    }

    fn backup(&self, kind: SnapshotKind, progress: Option<Arc<dyn Progress>>) -> Snapshot {
        let mut files = FilesSpec::new(self.src());
        files.kind = Some(kind);
        let spec = SetSpec::new("media", SourceSpec::Files(files));
        self.engine(progress).backup(&spec).unwrap()
    }

    /// A backup of `kind` during which `d/a.bin` is cut short and `d/b.txt` removed.
    fn backup_while_changing(&self, kind: SnapshotKind) -> Snapshot {
        let progress = Arc::new(CutAndRemove {
            src: self.src(),
            armed: AtomicBool::new(true),
        });
        self.backup(kind, Some(progress))
    }

    fn restore(&self, snapshot: &Snapshot) -> PathBuf {
        let target = self.work.path().join("restored");
        let mut restorer = DirectoryTarget {
            path: target.clone(),
            includes: Vec::new(),
            keep_previous: false,
        };
        self.engine(None)
            .restore(snapshot, &mut restorer, &RestoreOptions::default())
            .unwrap();
        target
    }
}

fn file_stats(snapshot: &Snapshot) -> &FileStats {
    match &snapshot.stats {
        Stats::Files(stats) => stats,
        other => panic!("not a files snapshot: {other:?}"),
    }
}

/// The snapshot names both files left out, lists only `d` and `d/c.txt`, and restores
/// `d/c.txt` as it was (with `tag`).
fn assert_left_out(fixture: &Fixture, snapshot: &Snapshot, tag: &str) {
    let named: Vec<(&str, &str)> = snapshot
        .errors
        .iter()
        .map(|e| (e.path.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(named.len(), 2, "{named:?}");
    assert_eq!(named[0].0, "d/a.bin");
    assert!(named[0].1.contains("shrank while being read"), "{named:?}");
    assert_eq!(named[1].0, "d/b.txt");
    assert!(named[1].1.starts_with("cannot open"), "{named:?}");
    assert_eq!(file_stats(snapshot).files, 1);

    let listing = fixture.engine(None).listing(snapshot).unwrap();
    let paths: Vec<&str> = listing.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["d", "d/c.txt"]);

    let target = fixture.restore(snapshot);
    assert_eq!(
        fs::read_to_string(target.join("d/c.txt")).unwrap(),
        format!("c {tag}")
    );
    assert!(!target.join("d/a.bin").exists());
    assert!(!target.join("d/b.txt").exists());
}

#[test]
fn files_cut_short_or_removed_under_a_full_backup_are_left_out_and_named() {
    let fixture = Fixture::new();
    write_tree(&fixture.src(), "one");
    let snapshot = fixture.backup_while_changing(SnapshotKind::Full);
    assert_left_out(&fixture, &snapshot, "one");
}

#[test]
fn files_cut_short_or_removed_under_an_incremental_backup_are_gone_from_its_tree() {
    let fixture = Fixture::new();
    write_tree(&fixture.src(), "one");
    fixture.backup(SnapshotKind::Full, None);
    // Every file changes, so the incremental opens each again; the two that fail must not
    // come back from the parent's tree.
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_tree(&fixture.src(), "two");
    let snapshot = fixture.backup_while_changing(SnapshotKind::Incremental);
    assert_eq!(snapshot.kind, SnapshotKind::Incremental);
    assert_left_out(&fixture, &snapshot, "two");
}
