//! A tree drawing from seven archives: each incremental of a chain changes files, a
//! directory or a link. A whole restore and a deep verification stream the listing beside
//! all seven; the tree restores exactly, and an archive missing from the chain fails the
//! restore, naming it, with nothing written (though files of the others were staged first).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use strongbox_engine::{
    DirectoryTarget, Engine, FilesSpec, RestoreOptions, SetSpec, SourceSpec, VerifyLevel,
    VerifyOptions,
};
use strongbox_manifest::{ObjectRole, Snapshot, SnapshotKind};
use strongbox_storage::{Location, Repository};

/// Path, kind, mode, mtime and content (or link target) of every entry below `root`.
fn tree(root: &Path) -> Vec<(String, u32, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_symlink() {
                fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if meta.is_dir() {
                stack.push(path.clone());
                Vec::new()
            } else {
                fs::read(&path).unwrap()
            };
            let name = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            // A link's own mode is not restored (Linux has none to set).
            let mode = if meta.is_symlink() { 0 } else { meta.mode() };
            out.push((
                name,
                mode,
                meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
                content,
            ));
        }
    }
    out.sort();
    out
}

struct Chain {
    work: tempfile::TempDir,
    engine: Engine,
    last: Snapshot,
}

impl Chain {
    /// A full backup and six incrementals, each changing another part of the tree; the
    /// last changes only `z.txt`, which sorts after every other entry.
    fn new() -> Self {
        let work = tempfile::tempdir().unwrap();
        let repo = Location::Local(work.path().join("repo"));
        Repository::init(&repo).unwrap();
        let engine = Engine::new(Repository::open(&repo).unwrap());
        let src = work.path().join("src");
        for d in 0..3 {
            fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
            for f in 0..4 {
                fs::write(src.join(format!("d{d}/f{f}.txt")), format!("{d}/{f} first")).unwrap();
            }
        }
        fs::write(src.join("z.txt"), "z first").unwrap();
        let changes: [&dyn Fn(&Path); 6] = [
            &|src| fs::write(src.join("d0/f1.txt"), "changed in the first incremental").unwrap(),
            &|src| std::os::unix::fs::symlink("d0/f1.txt", src.join("d1/link")).unwrap(),
            &|src| fs::remove_file(src.join("d1/f0.txt")).unwrap(),
            &|src| fs::set_permissions(src.join("d2"), fs::Permissions::from_mode(0o750)).unwrap(),
            &|src| fs::write(src.join("d2/f3.txt"), "changed in the fifth").unwrap(),
            &|src| fs::write(src.join("z.txt"), "z changed in the last").unwrap(),
        ];
        let spec = |kind| {
            let mut files = FilesSpec::new(&src);
            files.kind = Some(kind);
            SetSpec::new("media", SourceSpec::Files(files))
        };
        let mut last = engine.backup(&spec(SnapshotKind::Full)).unwrap();
        for change in changes {
            // Past the file system's timestamp granularity, so every change is seen.
            std::thread::sleep(Duration::from_millis(20));
            change(&src);
            last = engine.backup(&spec(SnapshotKind::Incremental)).unwrap();
            assert_eq!(last.kind, SnapshotKind::Incremental);
        }
        Chain { work, engine, last }
    }

    fn src(&self) -> PathBuf {
        self.work.path().join("src")
    }

    fn restore(&self) -> Result<PathBuf, strongbox_engine::Error> {
        let target = self.work.path().join("restored");
        let mut restorer = DirectoryTarget {
            path: target.clone(),
            includes: Vec::new(),
            keep_previous: false,
        };
        self.engine
            .restore(&self.last, &mut restorer, &RestoreOptions::default())?;
        Ok(target)
    }
}

#[test]
fn a_tree_drawing_from_seven_archives_restores_whole_and_verifies_deep() {
    let chain = Chain::new();
    let plan = chain.engine.restore_plan(&chain.last, &[]).unwrap();
    assert_eq!(plan.holders.len(), 7, "{plan:?}");
    let listed = chain.engine.listing(&chain.last).unwrap().entries.len();
    assert_eq!(plan.files + plan.dirs + plan.symlinks, listed as u64);

    let restored = chain.restore().unwrap();
    assert_eq!(tree(&restored), tree(&chain.src()));

    let report = chain
        .engine
        .verify(
            std::slice::from_ref(&chain.last),
            &VerifyOptions::level(VerifyLevel::Deep),
        )
        .unwrap();
    assert!(report.ok, "{report:?}");
    let details: Vec<&str> = report.snapshots[0]
        .checks
        .iter()
        .map(|c| c.detail.as_str())
        .collect();
    let read = format!("{listed} entries read and matched");
    assert!(details.contains(&read.as_str()), "{details:?}");
}

#[test]
fn an_archive_missing_from_the_chain_fails_a_whole_restore_naming_it_and_writes_nothing() {
    let chain = Chain::new();
    // The last snapshot's archive holds only `z.txt`, the last entry: every other file is
    // staged before its absence is found.
    let archive = chain
        .last
        .objects
        .iter()
        .find(|o| o.role == ObjectRole::Archive)
        .unwrap();
    fs::remove_file(chain.work.path().join("repo").join(&archive.key)).unwrap();
    let err = chain.restore().unwrap_err().to_string();
    assert!(err.contains(chain.last.id.as_str()), "{err}");
    assert!(
        !chain.work.path().join("restored").exists(),
        "nothing restored"
    );
    let staging = fs::read_dir(chain.work.path())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().contains("strongbox-restore")
        })
        .count();
    assert_eq!(staging, 0, "no staging directory left");
}

#[test]
fn the_newest_delta_names_its_base_and_then_the_rest_of_its_chain() {
    let chain = Chain::new();
    let repo = Repository::open(&Location::Local(chain.work.path().join("repo"))).unwrap();
    let read = |key: &str| -> strongbox_manifest::Listing {
        serde_json::from_slice(&repo.read_object(key, None).unwrap()).unwrap()
    };
    let newest = read(&chain.last.object(ObjectRole::Listing).unwrap().key);
    let delta = newest.delta.expect("a delta listing");
    // The chain as a walk finds it, link by link, after the base.
    let mut walked = Vec::new();
    let mut next = read(&delta.key).delta;
    while let Some(link) = next {
        walked.push((link.key.clone(), link.size, link.sha256.clone()));
        next = read(&link.key).delta;
    }
    assert!(!walked.is_empty(), "a chain of three listings at least");
    let further: Vec<(String, u64, String)> = delta
        .further
        .into_iter()
        .map(|l| (l.key, l.size, l.sha256))
        .collect();
    assert_eq!(further, walked, "newest first, down to the whole listing");
}
