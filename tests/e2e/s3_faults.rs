//! Every command against an S3 server behind the fault-injecting proxy `scripts/test.sh`
//! runs (`strongbox-fault-proxy`): faults the retry policy absorbs leave byte-identical
//! results; a permanent fault fails the command in bounded time, with one line naming the
//! key, and changes nothing; a slowed backup keeps prune away; a restore or verify that a
//! prune overtakes never takes the half-deleted snapshot as whole.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use strongbox_test_support::{unique, FaultProxy, Plan};

use crate::harness::{assert_same_tree, names, noise, spawn, tree, write, Env};

/// An initialised repository in the shared bucket, reached through the proxy (the token is
/// its prefix), and a source tree `src` of `media(seed)`.
fn through_proxy(tag: &str, seed: u64) -> Option<(Env, FaultProxy, String, PathBuf)> {
    let bucket = crate::harness::service("STRONGBOX_TEST_S3_BUCKET")?;
    let proxy = FaultProxy::get()?;
    let token = unique(tag);
    let mut env = Env::new();
    env.repo = format!("s3://{bucket}/{token}");
    env.vars = vec![
        ("AWS_ENDPOINT_URL".into(), proxy.endpoint.clone()),
        // Short, so that a `slow` fault (5 s) outlasts it.
        ("AWS_TIMEOUT".into(), "2s".into()),
    ];
    let src = env.path("src");
    media(&src, seed);
    env.json(&["init"]);
    Some((env, proxy, token, src))
}

/// A tree with one file large enough for a multipart upload (5 MiB parts) and small ones.
fn media(root: &Path, seed: u64) {
    write(&root.join("video/big.bin"), &noise(seed, 12 << 20));
    for i in 0..20 {
        write(
            &root.join(format!("img/{i}.txt")),
            format!("{seed}-{i}").as_bytes(),
        );
    }
}

/// Run, expect exit 1 within `bound`, and return the one line of stderr.
fn fails_in(env: &Env, args: &[&str], bound: Duration) -> String {
    let start = Instant::now();
    let err = env.fails(args, 1);
    let took = start.elapsed();
    assert!(took < bound, "strongbox {args:?} took {took:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    err
}

#[test]
fn flaky_s3_backup_restore_verify_prune_succeed_byte_identical() {
    let Some((env, proxy, token, src)) = through_proxy("flaky", 1) else {
        return;
    };
    proxy.set(&token, &Plan::flaky(0.25, 7));

    let full = env.backup("media", &src, &["--part-size", "5"]);
    let full_tree = tree(&src);
    write(&src.join("img/new.txt"), b"second");
    std::fs::remove_file(src.join("img/3.txt")).unwrap();
    let inc = env.backup("media", &src, &["--part-size", "5"]);
    assert_eq!(inc["parent"], full["id"]);

    let target = env.path("restored");
    env.restore("media:latest", &target, &[]);
    assert_same_tree(&tree(&src), &tree(&target));
    let first = env.path("restored-full");
    env.restore(full["id"].as_str().unwrap(), &first, &[]);
    assert_same_tree(&full_tree, &tree(&first));

    let report = env.json(&["verify", "--all", "--level", "deep"]);
    assert_eq!(report["ok"], true, "{report}");
    let pruned = env.json(&["prune", "media", "--keep-last", "1"]);
    assert_eq!(pruned["forget"].as_array().unwrap().len(), 1, "{pruned}");
    let report = env.json(&["verify", "--all", "--level", "checksum"]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(env.snapshot_ids(), [inc["id"].as_str().unwrap()]);

    let counts = proxy.clear(&token);
    eprintln!(
        "flaky S3 (rate 0.25, seed 7): {counts:?}; every fault retried, every command succeeded"
    );
    assert!(
        counts.faults() >= 10,
        "too few faults to mean anything: {counts:?}"
    );
}

#[test]
fn permanent_s3_faults_fail_each_command_in_bounded_time_naming_the_key_and_changing_nothing() {
    let Some((env, proxy, token, src)) = through_proxy("permanent", 2) else {
        return;
    };
    let first = env.backup("media", &src, &["--part-size", "5"]);
    let first_id = first["id"].as_str().unwrap().to_string();
    let bound = Duration::from_secs(60);

    // backup: no archive can be stored.
    write(&src.join("img/new.txt"), b"changed");
    for kind in ["503", "reset"] {
        proxy.set(&token, &Plan::permanent(kind, "/data/").method("PUT"));
        let err = fails_in(
            &env,
            &["backup", "files", "media", src.to_str().unwrap()],
            bound,
        );
        assert!(err.contains("sets/media/data/"), "{kind}: {err}");
        proxy.clear(&token);
        assert_eq!(
            env.snapshot_ids(),
            [first_id.as_str()],
            "{kind}: a record was written"
        );
    }
    // Regression: with its parts failing and the abort failing too (a server gone), the
    // error was the abort's (DELETE), not the upload's; the failed abort is a warning.
    proxy.set(&token, &Plan::permanent("503", "uploadId="));
    let err = env.fails(&["backup", "files", "media", src.to_str().unwrap()], 1);
    proxy.clear(&token);
    let (warning, error) = err.trim_end().split_once('\n').unwrap();
    assert!(warning.contains("aborting upload failed"), "{err}");
    assert!(error.contains("PUT") && !error.contains("DELETE"), "{err}");

    // restore: the archive cannot be read; the target keeps what it had.
    let target = env.path("target");
    write(&target.join("old.txt"), b"before");
    let before = tree(&target);
    for kind in ["503", "reset", "truncate", "slow"] {
        proxy.set(&token, &Plan::permanent(kind, ".tar.zst").method("GET"));
        let err = fails_in(
            &env,
            &[
                "restore",
                &first_id,
                "--target",
                target.to_str().unwrap(),
                "--force",
            ],
            bound,
        );
        assert!(
            err.contains(".tar.zst") && err.contains("not changed"),
            "{kind}: {err}"
        );
        proxy.clear(&token);
        assert_same_tree(&before, &tree(&target));
    }
    assert_eq!(
        names(&env.path(".")),
        ["src", "target"],
        "a restore left something behind"
    );

    // verify: a failed read is a failed check naming the key, never a pass.
    proxy.set(
        &token,
        &Plan::permanent("truncate", ".tar.zst").method("GET"),
    );
    let out = env.run(&["verify", "--all", "--level", "deep", "--json"]);
    proxy.clear(&token);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false, "{report}");
    assert!(report.to_string().contains(".tar.zst"), "{report}");

    // prune: the forgotten snapshot's objects cannot be deleted (a full snapshot, so that
    // the kept one needs none of them).
    let second = env.backup("media", &src, &["--part-size", "5", "--full"]);
    proxy.set(&token, &Plan::permanent("503", "/data/").method("POST"));
    let err = fails_in(&env, &["prune", "media", "--keep-last", "1"], bound);
    assert!(err.contains("sets/media/data/"), "{err}");
    proxy.clear(&token);
    let report = env.json(&["verify", "--all", "--level", "deep"]);
    assert_eq!(
        report["ok"], true,
        "a failed prune damaged the repository: {report}"
    );
    // What the failed prune left is collected by the next one.
    let pruned = env.json(&["prune", "media", "--keep-last", "1"]);
    assert_eq!(
        env.snapshot_ids(),
        [second["id"].as_str().unwrap()],
        "{pruned}"
    );
    let restored = env.path("again");
    env.restore("media:latest", &restored, &[]);
    assert_same_tree(&tree(&src), &tree(&restored));
    let dry = env.json(&["prune", "media", "--keep-last", "1", "--dry-run"]);
    assert_eq!(dry["deleted_objects"], 0, "{dry}");
}

#[test]
fn prune_during_a_slowed_backup_is_refused_and_deletes_none_of_its_objects() {
    let Some((env, proxy, token, src)) = through_proxy("slowed-backup", 3) else {
        return;
    };
    env.backup("media", &src, &[]);
    write(&src.join("video/big.bin"), &noise(33, 12 << 20));
    proxy.set(
        &token,
        &Plan::slowed("/data/", Duration::from_millis(700)).method("PUT"),
    );
    let backup = spawn(
        &env,
        &[
            "backup",
            "files",
            "media",
            src.to_str().unwrap(),
            "--part-size",
            "5",
            "--json",
        ],
    );
    // Wait until the backup has sent its first object.
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.counts(&token).delayed == 0 {
        assert!(
            Instant::now() < deadline,
            "the backup never reached the store"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = env.fails(&["prune", "media", "--keep-last", "1"], 1);
    assert!(err.contains("locked by backup"), "{err}");
    let out = backup.wait_with_output().unwrap();
    proxy.clear(&token);
    let record = crate::harness::succeeded(&out);
    let report = env.json(&["verify", "--all", "--level", "deep"]);
    assert_eq!(report["ok"], true, "{report}");
    let target = env.path("restored");
    env.restore(record["id"].as_str().unwrap(), &target, &[]);
    assert_same_tree(&tree(&src), &tree(&target));
}

#[test]
fn restore_and_verify_racing_a_prune_never_take_a_half_deleted_snapshot_as_whole() {
    let Some((env, proxy, token, src)) = through_proxy("racing-prune", 4) else {
        return;
    };
    let doomed = env.backup("media", &src, &["--part-size", "5"]);
    let doomed_id = doomed["id"].as_str().unwrap().to_string();
    // A full backup of other content, so that prune deletes every object of the first.
    media(&src, 5);
    env.backup("media", &src, &["--full"]);

    // Both have read the doomed record and wait for its archive when prune deletes it.
    proxy.set(
        &token,
        &Plan::slowed(".tar.zst", Duration::from_secs(3)).method("GET"),
    );
    let target = env.path("target");
    let restore = spawn(
        &env,
        &["restore", &doomed_id, "--target", target.to_str().unwrap()],
    );
    let verify = spawn(&env, &["verify", &doomed_id, "--level", "deep", "--json"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.counts(&token).delayed < 2 {
        assert!(
            Instant::now() < deadline,
            "restore and verify never reached the archive"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pruned = env.json(&["prune", "media", "--keep-last", "1"]);
    assert!(pruned.to_string().contains(&doomed_id), "{pruned}");

    let out = restore.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(".tar.zst") && err.contains("not changed"),
        "{err}"
    );
    assert!(
        !target.exists(),
        "a failed restore left {}",
        target.display()
    );
    let out = verify.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false, "{report}");
    assert!(report.to_string().contains(".tar.zst"), "{report}");
    proxy.clear(&token);
    let report = env.json(&["verify", "--all", "--level", "deep"]);
    assert_eq!(report["ok"], true, "{report}");
}
