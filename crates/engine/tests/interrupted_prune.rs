//! A prune that dies between deletions leaves every remaining snapshot restorable, and the
//! next prune finishes the job. The failure is injected by a store wrapper that refuses
//! deletes after the first N, on a real local repository.

use std::collections::BTreeSet;

use chrono::{Duration, TimeZone, Utc};
use strongbox_engine::{
    BackupOptions, DirectoryTarget, Engine, FilesSpec, KeepPolicy, PruneOptions, RestoreOptions,
    SetPolicy, SetSpec, SourceSpec, VerifyLevel,
};
use strongbox_manifest::SnapshotKind;
use strongbox_storage::Repository;
use strongbox_test_support::{Faults, Rule, TempRepo};

fn engine_over(repo: &TempRepo, allowed: usize) -> Engine {
    let faults = Faults::new();
    if allowed != usize::MAX {
        faults.add(Rule::deletes().after(allowed));
    }
    Engine::new(Repository::open_store(faults.layer(repo.store())).unwrap())
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
    let policy = [SetPolicy {
        set: "media".to_string(),
        policy: KeepPolicy {
            last: Some(2),
            ..KeepPolicy::default()
        },
    }];
    // Where a complete prune ends, to compare every interrupted one with.
    let mut expected_objects = None;
    for allowed in [0, 1, 3, 6, 9, usize::MAX] {
        let repo = TempRepo::new();
        let src = repo.path("src");
        let healthy = engine_over(&repo, usize::MAX);
        let start = Utc.with_ymd_and_hms(2025, 12, 1, 2, 0, 0).unwrap();
        for night in 0..8i64 {
            std::fs::create_dir_all(src.join("d")).unwrap();
            std::fs::write(
                src.join(format!("d/{}.txt", night % 3)),
                format!("night {night}"),
            )
            .unwrap();
            let spec = SetSpec {
                set: "media".to_string(),
                source: SourceSpec::Files(FilesSpec {
                    kind: (night == 4).then_some(SnapshotKind::Full),
                    ..FilesSpec::new(&src)
                }),
                options: BackupOptions {
                    tags: vec![],
                    time: Some(start + Duration::days(night)),
                },
                members: Vec::new(),
            };
            healthy.backup(&spec).unwrap();
        }

        let dying = engine_over(&repo, allowed);
        let result = dying.prune(&policy, &PruneOptions::default());
        assert_eq!(
            result.is_err(),
            allowed != usize::MAX,
            "allowed {allowed}: {result:?}"
        );
        // The dying prune could not even release its lock. A dead process's lock is taken
        // over by the next run; this one's pid lives on in the test, so remove it by hand.
        healthy.writer().delete("locks/media.json").unwrap();

        // Every snapshot still listed restores and verifies.
        let remaining = healthy.snapshots(Some("media")).unwrap();
        assert!(remaining.len() >= 2);
        for snapshot in &remaining {
            let mut target = DirectoryTarget::new(repo.path(&format!("restore-{}", snapshot.id)));
            healthy
                .restore(snapshot, &mut target, &RestoreOptions::default())
                .unwrap();
        }
        let report = healthy
            .verify(
                &remaining,
                &strongbox_engine::VerifyOptions::level(VerifyLevel::Deep),
            )
            .unwrap();
        assert!(report.ok, "allowed {allowed}: {report:?}");

        // The next prune finishes the job: the same objects as an uninterrupted prune.
        healthy.prune(&policy, &PruneOptions::default()).unwrap();
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
