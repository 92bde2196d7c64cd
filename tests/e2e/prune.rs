//! Retention and prune end to end: seed policies on long chains, every kept snapshot still
//! restores, dry runs change nothing, freed bytes add up.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use chrono::{Duration, TimeZone, Utc};
use serde_json::Value;

use crate::harness::{assert_same_tree, noise, object_key, tree, write, Env, Node};

/// Files below a local repository with their sizes.
fn repo_files(root: &Path) -> BTreeMap<String, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(
                    path.strip_prefix(root).unwrap().display().to_string(),
                    fs::metadata(&path).unwrap().len(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// `nights` nightly snapshots ending 2025-12-27 02:00 UTC, mutating the tree between them:
/// a full every 30th night, a differential every 7th, incrementals otherwise.
/// Returns (id, time, tree at that snapshot).
fn nightly_chain(
    env: &Env,
    set: &str,
    src: &Path,
    nights: i64,
) -> Vec<(String, chrono::DateTime<Utc>, BTreeMap<String, Node>)> {
    let last = Utc.with_ymd_and_hms(2025, 12, 27, 2, 0, 0).unwrap();
    write(&src.join("base/keep.bin"), &noise(0, 50_000));
    let mut out = Vec::new();
    for n in 0..nights {
        let time = last - Duration::days(nights - 1 - n);
        write(
            &src.join(format!("day/{}.txt", n % 5)),
            format!("night {n}").as_bytes(),
        );
        if n % 4 == 3 {
            let _ = fs::remove_file(src.join(format!("day/{}.txt", (n + 2) % 5)));
        }
        if n % 9 == 0 {
            write(
                &src.join(format!("photos/{n}.jpg")),
                &noise(n as u64 + 7, 20_000),
            );
        }
        let kind = if n % 30 == 0 {
            "--full"
        } else if n % 7 == 0 {
            "--differential"
        } else {
            "--incremental"
        };
        let record = env.backup(set, src, &[kind, "--time", &time.to_rfc3339()]);
        out.push((record["id"].as_str().unwrap().to_string(), time, tree(src)));
    }
    out
}

fn kept_ids(report: &Value) -> Vec<String> {
    report["keep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn database_seed_policy_on_a_long_chain_keeps_exactly_its_snapshots_and_all_restore() {
    let env = Env::new();
    let src = env.path("src");
    let chain = nightly_chain(&env, "nightly", &src, 120);
    let repo = Path::new(&env.repo);
    let before = repo_files(repo);
    let policy = [
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--keep-monthly",
        "12",
    ];

    let mut dry = vec!["prune", "nightly", "--dry-run"];
    dry.extend_from_slice(&policy);
    let plan = env.json(&dry);
    assert_eq!(plan["dry_run"], true);
    let text = String::from_utf8_lossy(&env.run(&dry).stdout).into_owned();
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("dry run, nothing changed: ")
            && last.contains(" to forget, ")
            && last.contains(" objects to delete, "),
        "a dry run tells what it would do, not what it did: {text}"
    );
    assert_eq!(
        repo_files(repo).keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "dry run changed the repository"
    );

    let mut run = vec!["prune", "nightly"];
    run.extend_from_slice(&policy);
    let report = env.json(&run);
    assert_eq!(
        kept_ids(&report),
        kept_ids(&plan),
        "the dry run's plan is what prune did"
    );
    let kept = kept_ids(&report);
    // Daily Dec 21–27; weekly adds Dec 14 and Dec 7; monthly adds Nov 30, Oct 31, Sep 30,
    // Aug 31, and the oldest snapshot (Aug 30) because buckets were left over.
    let kept_days: Vec<String> = chain
        .iter()
        .filter(|(id, _, _)| kept.contains(id))
        .map(|(_, t, _)| t.format("%m-%d").to_string())
        .collect();
    assert_eq!(
        kept_days,
        [
            "08-30", "08-31", "09-30", "10-31", "11-30", "12-07", "12-14", "12-21", "12-22",
            "12-23", "12-24", "12-25", "12-26", "12-27"
        ]
    );
    let reasons = &report["keep"][0]["reasons"];
    assert!(
        reasons
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("daily 1 of 7")),
        "{reasons}"
    );
    assert_eq!(report["forget"].as_array().unwrap().len(), 120 - 14);

    // Freed bytes are exactly the sizes of the objects that disappeared.
    let after = repo_files(repo);
    let removed: u64 = before
        .iter()
        .filter(|(k, _)| k.starts_with("sets/nightly/data/") && !after.contains_key(*k))
        .map(|(_, size)| size)
        .sum();
    assert_eq!(report["freed_bytes"].as_u64().unwrap(), removed);
    assert_eq!(
        report["deleted_objects"].as_u64().unwrap() as usize,
        report["deleted"].as_array().unwrap().len()
    );
    assert!(removed > 0);

    assert_eq!(
        env.snapshot_ids(),
        kept.iter().rev().cloned().collect::<Vec<_>>()
    );
    for (id, _, expected) in chain.iter().filter(|(id, _, _)| kept.contains(id)) {
        let target = env.path(&format!("restore-{id}"));
        env.restore(id, &target, &[]);
        assert_same_tree(expected, &tree(&target));
    }
    let verify = env.json(&["verify", "--all", "--level", "deep"]);
    assert_eq!(verify["ok"], true, "{verify}");

    // The next backup still chains onto what is left.
    write(&src.join("after-prune.txt"), b"x");
    let next = env.backup("nightly", &src, &[]);
    assert_eq!(next["kind"], "incremental");
}

#[test]
fn media_seed_policy_keeps_thirty_days_measured_from_the_newest_snapshot() {
    let env = Env::new();
    let src = env.path("src");
    let chain = nightly_chain(&env, "media", &src, 40);
    let report = env.json(&["prune", "media", "--keep-within", "30d"]);
    let kept = kept_ids(&report);
    // restic's `within` is strict: the snapshot exactly 30 days older than the newest goes.
    assert_eq!(kept.len(), 30);
    assert_eq!(kept[0], chain.last().unwrap().0);
    assert!(report["keep"][0]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == "within 30d"));
    for (id, _, expected) in chain.iter().filter(|(id, _, _)| kept.contains(id)).take(3) {
        let target = env.path(&format!("r-{id}"));
        env.restore(id, &target, &[]);
        assert_same_tree(expected, &tree(&target));
    }
    assert_eq!(
        env.json(&["verify", "--all", "--level", "deep"])["ok"],
        true
    );
}

/// 22:30 and 23:30 UTC on a winter day are one UTC day but two in Berlin (00:30 the next):
/// two daily buckets keep the day before in UTC, the 22:30 snapshot in Berlin.
#[test]
fn daily_buckets_follow_the_configured_timezone_and_the_flag_wins() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"a");
    let mut ids = Vec::new();
    for (day, hour) in [(25, 12), (26, 22), (26, 23)] {
        let time = Utc.with_ymd_and_hms(2025, 12, day, hour, 30, 0).unwrap();
        let record = env.backup("media", &src, &["--time", &time.to_rfc3339()]);
        ids.push(record["id"].as_str().unwrap().to_string());
    }
    let config = |zone: &str| {
        let path = env.path(&format!("{}.toml", zone.replace('/', "-")));
        write(&path, format!("timezone = \"{zone}\"\n").as_bytes());
        path.display().to_string()
    };
    let (berlin, utc) = (config("Europe/Berlin"), config("UTC"));
    let prune = ["prune", "media", "--keep-daily", "2", "--dry-run"];
    let by_utc = [ids[2].clone(), ids[0].clone()];
    let by_berlin = [ids[2].clone(), ids[1].clone()];
    for (before, after, expected) in [
        (&[][..], &[][..], &by_utc),
        (&["--config", &berlin][..], &[][..], &by_berlin),
        (
            &["--config", &berlin][..],
            &["--timezone", "UTC"][..],
            &by_utc,
        ),
        (
            &["--config", &utc][..],
            &["--timezone", "Europe/Berlin"][..],
            &by_berlin,
        ),
    ] {
        let args: Vec<&str> = [before, &prune[..], after].concat();
        assert_eq!(&kept_ids(&env.json(&args)), expected, "{args:?}");
    }
    // An offset that begins with a minus is a value, not a flag.
    env.json(&[
        "prune",
        "media",
        "--keep-daily",
        "1",
        "--timezone",
        "-05:00",
        "--dry-run",
    ]);
    let mars = config("Mars/Olympus");
    let err = env.fails(&["--config", &mars, "snapshots"], 2);
    assert!(
        err.contains("timezone") && err.contains("Mars/Olympus"),
        "{err}"
    );
}

#[test]
fn a_policy_that_keeps_nothing_is_refused_and_the_latest_snapshot_always_stays() {
    let env = Env::new();
    let src = env.path("src");
    nightly_chain(&env, "media", &src, 3);
    // What the command line got wrong: exit 2, as clap's usage errors.
    let err = env.fails(&["prune", "media"], 2);
    assert!(err.contains("keep nothing"), "{err}");
    let err = env.fails(&["prune", "media", "--keep-last", "0"], 2);
    assert!(
        err.contains("prune policy of set media") && err.contains("keep nothing"),
        "{err}"
    );
    let report = env.json(&["prune", "media", "--keep-tag", "no-such-tag"]);
    assert_eq!(kept_ids(&report).len(), 1);
    assert_eq!(report["keep"][0]["reasons"], serde_json::json!(["latest"]));
    assert_eq!(env.snapshot_ids().len(), 1);
}

#[test]
fn prune_collects_leftovers_of_killed_runs_at_once_under_the_set_lock_unless_told_to_wait() {
    let env = Env::new();
    let src = env.path("src");
    nightly_chain(&env, "media", &src, 2);
    let data = Path::new(&env.repo).join("sets/media/data");
    // What a killed backup leaves: an object no record names, and a local staging file.
    write(
        &data.join("20251227T030000Z-000abc.tar.zst"),
        b"half an archive",
    );
    write(
        &data.join("20251227T030000Z-000abc.tar.zst#1"),
        b"half an upload",
    );
    let report = env.json(&["prune", "media", "--keep-last", "5", "--grace", "1h"]);
    assert_eq!(
        report["deleted_objects"], 0,
        "--grace keeps young leftovers, for a lock removed by hand"
    );
    assert!(data.join("20251227T030000Z-000abc.tar.zst").exists());

    let report = env.json(&["prune", "media", "--keep-last", "5"]);
    assert_eq!(
        report["deleted"],
        serde_json::json!(["sets/media/data/20251227T030000Z-000abc.tar.zst"])
    );
    // The staging file counts too (prune said 0 B freed for gigabytes of them).
    assert_eq!(
        (&report["deleted_objects"], &report["freed_bytes"]),
        (&2.into(), &29.into()),
        "{report}"
    );
    assert!(!data.join("20251227T030000Z-000abc.tar.zst#1").exists());
    assert_eq!(
        env.json(&["verify", "--all", "--level", "deep"])["ok"],
        true
    );
}

#[test]
fn prune_removes_staging_files_of_killed_wal_pushes_once_older_than_any_push() {
    let env = Env::new();
    let src = env.path("src");
    nightly_chain(&env, "media", &src, 1);
    // Pushes take no lock: a young staging file may belong to a push still running.
    let timeline = Path::new(&env.repo).join("sets/media/wal/00000001");
    let old = timeline.join("000000010000000000000003#1");
    let young = timeline.join("000000010000000000000004#1");
    write(&old, b"half a segment");
    write(&young, b"half a segment");
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    env.json(&["prune", "media", "--keep-last", "5"]);
    assert!(!old.exists(), "a staging file two hours old is a leftover");
    assert!(young.exists(), "a fresh one may be a push in flight");
}

#[test]
fn prune_on_s3_keeps_chains_restorable() {
    let Some(bucket) = crate::harness::service("STRONGBOX_TEST_S3_BUCKET") else {
        return;
    };
    let mut env = Env::new();
    let nanos = Utc::now().timestamp_subsec_nanos();
    env.repo = format!("s3://{bucket}/prune-{}-{nanos:08x}", std::process::id());
    env.json(&["init"]);
    let src = env.path("src");
    let chain = nightly_chain(&env, "media", &src, 32);
    let report = env.json(&["prune", "media", "--keep-last", "3", "--keep-weekly", "2"]);
    let kept = kept_ids(&report);
    assert!(kept.len() >= 3 && kept.len() < 32);
    assert!(report["freed_bytes"].as_u64().unwrap() > 0);
    for (id, _, expected) in chain.iter().filter(|(id, _, _)| kept.contains(id)) {
        let target = env.path(&format!("r-{id}"));
        env.restore(id, &target, &[]);
        assert_same_tree(expected, &tree(&target));
    }
    assert_eq!(
        env.json(&["verify", "--all", "--level", "deep"])["ok"],
        true
    );
}

#[test]
fn a_retained_archive_keeps_its_digest_so_checksum_verify_catches_its_damage() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.bin"), &crate::harness::noise(1, 100_000));
    let full = env.backup("media", &src, &[]);
    write(&src.join("b.txt"), b"new");
    env.backup("media", &src, &[]);
    let report = env.json(&["prune", "media", "--keep-last", "1"]);
    let archive = crate::harness::object_key(&full, "archive");
    assert_eq!(report["retained_for_chains"], serde_json::json!([archive]));
    let repo = Path::new(&env.repo);
    let retained: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("sets/media/retained.json")).unwrap())
            .unwrap();
    let recorded = full["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["role"] == "archive")
        .unwrap();
    assert_eq!(retained[0]["sha256"], recorded["sha256"]);
    assert_eq!(
        env.json(&["verify", "--all", "--level", "checksum"])["ok"],
        true
    );

    // A byte flipped inside the retained archive, its size unchanged.
    let path = repo.join(&archive);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xFF;
    std::fs::write(&path, bytes).unwrap();
    let out = env.run(&["verify", "--all", "--level", "checksum", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let detail = crate::harness::named_check(&report["snapshots"][0]["checks"], "checksum")
        ["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.contains(&archive), "{detail}");
}

/// prune deleted any file it found in `sets/<set>/data/` (an operator's notes), and a
/// mistyped set pruned nothing with exit 0, so a cron job never pruned and never said so.
#[test]
fn prune_deletes_only_its_own_objects_and_refuses_a_set_that_is_not_there() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"one");
    env.backup("media", &src, &[]);
    write(&src.join("a.txt"), b"two");
    env.backup("media", &src, &["--full"]);
    let note = Path::new(&env.repo).join("sets/media/data/notes.txt");
    write(&note, b"precious");
    let report = env.json(&["prune", "media", "--keep-last", "1"]);
    assert_eq!(report["forget"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(fs::read(&note).unwrap(), b"precious");

    let before = repo_files(Path::new(&env.repo));
    let err = env.fails(&["prune", "mdia", "--keep-last", "1"], 1);
    assert!(err.contains("no set \"mdia\" in the repository"), "{err}");
    assert_eq!(repo_files(Path::new(&env.repo)), before);
}

/// Regression: journal housekeeping keeps the last run of each operation, so a checksum
/// verify after a restore test made the restore test's entry removable, and the prune after
/// the one that removed it forgot the restore-tested snapshot.
#[test]
fn housekeeping_keeps_the_proof_of_the_newest_restore_tested_snapshot() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..3 {
        write(&src.join("f"), format!("version {i}").as_bytes());
        env.backup("media", &src, &[]);
    }
    let ids = env.snapshot_ids();
    env.json(&["verify", &ids[0], "--level", "restore"]);
    env.json(&["verify", &ids[2], "--level", "checksum"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for _ in 0..2 {
        let pruned = env.json(&["prune", "media", "--keep-last", "1", "--journal-keep", "1s"]);
        assert_eq!(kept_ids(&pruned), [ids[2].as_str(), &ids[0]], "{pruned:#}");
    }
}

/// Regression: housekeeping kept the verify run that passed the proven snapshot's restore
/// test, which had passed a newer one's too, and removed a later run in which the newer
/// one failed its own: that pass counted again, the newer snapshot became the proven one,
/// and the next prune forgot the snapshot that had passed.
#[test]
fn housekeeping_keeps_a_later_failed_restore_test() {
    let env = Env::new();
    let src = env.path("src");
    let mut records = Vec::new();
    for i in 0..4 {
        write(&src.join("f"), format!("version {i}").as_bytes());
        records.push(env.backup("media", &src, &[]));
    }
    let ids = env.snapshot_ids();
    env.json(&["verify", &ids[0], &ids[1], "--level", "restore"]);
    let archive = Path::new(&env.repo).join(object_key(&records[1], "archive"));
    fs::write(&archive, b"damaged").unwrap();
    env.fails(&["verify", &ids[1], "--level", "restore"], 1);
    env.json(&["verify", &ids[3], "--level", "checksum"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for _ in 0..2 {
        let pruned = env.json(&["prune", "media", "--keep-last", "3", "--journal-keep", "1s"]);
        assert_eq!(
            kept_ids(&pruned),
            [ids[3].as_str(), &ids[2], &ids[1], &ids[0]],
            "{pruned:#}"
        );
    }
}

/// Regression: a prune of every set stopped at the first it could not prune (locked by a
/// run on another host), leaving every set sorting after it unpruned and printing nothing
/// of those before; and the refused run was not journalled, so `status` and `health` went
/// on saying all was well.
#[test]
fn a_prune_of_every_set_goes_on_past_a_locked_one_and_the_refusal_is_journalled() {
    let env = Env::new();
    let src = env.path("src");
    let mut oldest = Vec::new();
    for set in ["alpha", "media", "zulu"] {
        for i in 0..2 {
            write(&src.join("f"), format!("{set} {i}").as_bytes());
            let record = env.backup(set, &src, &[]);
            if i == 0 {
                oldest.push((set, record["id"].as_str().unwrap().to_string()));
            }
        }
    }
    crate::harness::plant_lock(&env, "backup", "elsewhere", 1, "2026-01-01T00:00:00Z");
    let out = env.run(&["prune", "--keep-last", "1", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("prune of set media failed: set \"media\" is locked"),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let forgotten: Vec<(&str, String)> = report["forget"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["set"].as_str().unwrap(),
                f["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        forgotten,
        [oldest[0].clone(), oldest[2].clone()],
        "{report:#}"
    );
    assert_eq!(report["failed"][0]["set"], "media");

    let status = env.json(&["status", "media"]);
    let prune = &status[0]["last_runs"]["prune"];
    assert_eq!(prune["status"], "failed", "{status:#}");
    assert!(
        prune["error"].as_str().unwrap().contains("locked"),
        "{prune}"
    );
}
