//! The engine seam: any source is driven the same way, every object it writes passes
//! through a store wrapper (local repositories included), and read-only work writes
//! nothing but its journal.

use std::io::Write;
use std::path::Path;

use strongbox_archive::Compression;
use strongbox_engine::{
    BackupOptions, BackupRun, Draft, Engine, Error, FilesSpec, Reader, RunRecord, RunStatus,
    SetSpec, Source, SourceSpec, VerifyLevel,
};
use strongbox_manifest::{FileStats, ObjectRole, SnapshotKind, SourceKind, Stats};
use strongbox_storage::{RepoReader, Repository};
use strongbox_test_support::{Faults, Rule, TempRepo};

/// A source of one object, failing after writing it when told to: what a new kind needs.
struct OneObject {
    fail: bool,
}

impl Source for OneObject {
    fn kind(&self) -> SourceKind {
        SourceKind::Files
    }

    fn origin(&self) -> String {
        "one object".to_string()
    }

    fn backup(&mut self, run: &mut BackupRun<'_>) -> Result<Draft, Error> {
        let mut writer = run.sink.create("tar", Compression::None)?;
        let key = writer.key().to_string();
        writer
            .write_all(b"not much of a tar")
            .map_err(|source| Error::Upload { key, source })?;
        run.sink.finish(writer, ObjectRole::Archive)?;
        if self.fail {
            return Err(Error::Cancelled);
        }
        Ok(Draft {
            kind: SnapshotKind::Full,
            parent: None,
            compression: Compression::None,
            stats: Stats::Files(FileStats::default()),
            errors: vec![],
            warnings: vec![],
        })
    }
}

fn journal(repo: &TempRepo) -> Vec<RunRecord> {
    let reader = RepoReader::open(&repo.location).unwrap();
    let mut runs: Vec<RunRecord> = reader
        .list("sets/toy/runs")
        .unwrap()
        .iter()
        .map(|o| serde_json::from_slice(&reader.read_object(&o.key, None).unwrap()).unwrap())
        .collect();
    runs.sort_by_key(|r| r.started);
    runs
}

#[test]
fn any_source_is_locked_committed_and_journalled_the_same_way() {
    let repo = TempRepo::new();
    let engine = Engine::new(repo.repository());
    let snapshot = engine
        .backup_source(
            "toy",
            &mut OneObject { fail: false },
            &BackupOptions::default(),
        )
        .unwrap();
    assert_eq!(snapshot.origin, "one object");
    assert_eq!(snapshot.objects.len(), 1);
    assert_eq!(
        snapshot.objects[0].key,
        format!("sets/toy/data/{}.tar", snapshot.id)
    );
    assert_eq!(
        engine.snapshots(Some("toy")).unwrap(),
        std::slice::from_ref(&snapshot)
    );
    assert!(
        engine.writer().lock_info("toy").unwrap().is_none(),
        "unlocked"
    );

    let err = engine
        .backup_source(
            "toy",
            &mut OneObject { fail: true },
            &BackupOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert_eq!(engine.snapshots(Some("toy")).unwrap().len(), 1, "no record");
    let data = engine.repo().list("sets/toy/data").unwrap();
    assert_eq!(
        data.len(),
        1,
        "the failed run's object is removed: {data:?}"
    );
    assert!(
        engine.writer().lock_info("toy").unwrap().is_none(),
        "unlocked"
    );

    let runs = journal(&repo);
    let statuses: Vec<RunStatus> = runs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [RunStatus::Ok, RunStatus::Failed]);
    assert_eq!(runs[0].snapshot.as_deref(), Some(snapshot.id.as_str()));
    assert_eq!(
        runs[1].error.as_deref(),
        Some("interrupted; nothing was changed")
    );
}

fn tree(repo: &TempRepo) -> std::path::PathBuf {
    let src = repo.path("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("a/one.txt"), b"one").unwrap();
    std::fs::write(src.join("two.bin"), vec![7u8; 3 << 20]).unwrap();
    src
}

/// Every file under `dir`, as a key relative to it.
fn files_below(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_string(),
                );
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_wrapper_sees_every_object_a_local_backup_writes() {
    let repo = TempRepo::new();
    let src = tree(&repo);
    let faults = Faults::new();
    let engine = Engine::new(Repository::open_store(faults.layer(repo.store())).unwrap());
    let spec = SetSpec::new("media", SourceSpec::Files(FilesSpec::new(&src)));
    engine.backup(&spec).unwrap();
    engine.backup(&spec).unwrap();

    let mut seen = faults.stored_keys();
    seen.push("strongbox.json".to_string()); // written by TempRepo before the wrapper
    seen.sort();
    seen.dedup();
    let on_disk = files_below(&repo.root());
    assert_eq!(on_disk.len(), 8, "{on_disk:?}");
    for file in &on_disk {
        assert!(
            seen.contains(file),
            "{file} was written past the wrapper: {seen:?}"
        );
    }
    let uploads = faults
        .requests()
        .into_iter()
        .filter(|(kind, key)| kind == "UploadComplete" && key.ends_with(".tar.zst"))
        .count();
    assert_eq!(uploads, 1, "the archive streams through the wrapper");
}

#[test]
fn a_store_that_fails_mid_archive_leaves_no_snapshot_and_no_object() {
    let repo = TempRepo::new();
    let src = tree(&repo);
    let faults = Faults::new();
    faults.add(Rule::writes().containing(".tar.zst").after(2));
    let engine = Engine::new(Repository::open_store(faults.layer(repo.store())).unwrap());
    let err = engine
        .backup(&SetSpec::new(
            "media",
            SourceSpec::Files(FilesSpec::new(&src)),
        ))
        .unwrap_err();
    let message = strongbox_test_support::chain(&err);
    assert!(
        message.contains("injected fault") && message.contains(".tar.zst"),
        "{message}"
    );
    assert!(faults.injected() > 0);
    assert!(engine.snapshots(Some("media")).unwrap().is_empty());
    assert!(
        files_below(&repo.root().join("sets/media"))
            .iter()
            .all(|f| f.starts_with("runs/")),
        "only the journal: {:?}",
        files_below(&repo.root().join("sets/media"))
    );

    faults.clear();
    let snapshot = engine
        .backup(&SetSpec::new(
            "media",
            SourceSpec::Files(FilesSpec::new(&src)),
        ))
        .unwrap();
    assert_eq!(
        snapshot.kind,
        SnapshotKind::Full,
        "the next backup succeeds"
    );
}

#[test]
fn read_only_work_writes_nothing_but_its_journal() {
    let repo = TempRepo::new();
    let src = tree(&repo);
    let engine = Engine::new(repo.repository());
    engine
        .backup(&SetSpec::new(
            "media",
            SourceSpec::Files(FilesSpec::new(&src)),
        ))
        .unwrap();

    let faults = Faults::new();
    let reader = Reader::new(RepoReader::open_store(faults.layer(repo.store())).unwrap());
    let snapshot = reader.resolve("media:latest").unwrap();
    reader.listing(&snapshot).unwrap();
    reader.restore_plan(&snapshot, &[]).unwrap();
    let report = reader
        .verify(
            &[snapshot],
            &strongbox_engine::VerifyOptions::level(VerifyLevel::Deep),
        )
        .unwrap();
    assert!(report.ok, "{report:?}");
    let writes: Vec<(String, String)> = faults
        .requests()
        .into_iter()
        .filter(|(kind, _)| !matches!(kind.as_str(), "Get" | "GetRanges" | "List"))
        .collect();
    assert!(!writes.is_empty(), "verify journals its run");
    assert!(
        writes
            .iter()
            .all(|(kind, key)| kind == "Put" && key.starts_with("sets/media/runs/")),
        "{writes:?}"
    );
}

/// Bundle `both` of files sets `a` and `b`, each of `src`.
fn bundle_of_a_and_b(src: &Path) -> SetSpec {
    let member = |set: &str| SetSpec::new(set, SourceSpec::Files(FilesSpec::new(src)));
    let mut bundle = SetSpec::new(
        "both",
        SourceSpec::Bundle(strongbox_engine::BundleSpec {
            members: vec!["a".into(), "b".into()],
            references: None,
        }),
    );
    bundle.members = vec![member("a"), member("b")];
    bundle
}

/// A bundle whose second member record failed to be written kept the first member's
/// snapshot (and its objects), though a bundle writes all its records or none.
#[test]
fn a_bundle_whose_last_member_record_fails_keeps_no_member_snapshot() {
    let repo = TempRepo::new();
    let src = tree(&repo);
    let faults = Faults::new();
    faults.add(Rule::writes().containing("sets/b/snapshots/"));
    let engine = Engine::new(Repository::open_store(faults.layer(repo.store())).unwrap());
    let bundle = bundle_of_a_and_b(&src);
    let err = engine.backup(&bundle).unwrap_err();
    let message = strongbox_test_support::chain(&err);
    assert!(
        message.contains("injected fault") && message.contains("sets/b/snapshots/"),
        "{message}"
    );
    assert!(engine.snapshots(None).unwrap().is_empty());
    for set in ["a", "b", "both"] {
        let left: Vec<String> = files_below(&repo.root().join("sets").join(set))
            .into_iter()
            .filter(|f| !f.starts_with("runs/"))
            .collect();
        assert!(left.is_empty(), "{set}: {left:?}");
    }

    faults.clear();
    let bundled = engine.backup(&bundle).unwrap();
    assert_eq!(bundled.members.len(), 2, "the next bundle backup succeeds");
}

/// A member's tags go into its own record: a library caller's bundle whose member carried
/// a tag with a newline wrote it there, unchecked, where the bundle's own tags were checked.
#[test]
fn a_bundle_member_with_a_tag_no_record_may_hold_is_refused_before_anything_is_written() {
    let repo = TempRepo::new();
    let src = tree(&repo);
    let engine = Engine::new(Repository::open_store(repo.store()).unwrap());
    let mut bundle = bundle_of_a_and_b(&src);
    bundle.members[1].options.tags = vec!["two\nrows".into()];
    let err = engine.backup(&bundle).unwrap_err();
    let message = strongbox_test_support::chain(&err);
    assert!(message.contains(r#"invalid tag "two\nrows""#), "{message}");
    assert!(
        !repo.root().join("sets").exists(),
        "nothing written, not even a journal"
    );
}
