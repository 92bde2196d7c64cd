//! Bad input: one-line errors naming the object and the cause, exit 1, nothing changed.

use std::fs;
use std::path::Path;

use strongbox_archive::{Compression, Encoder};

use crate::harness::{names, object_key, plant_lock, tree, write, Env};

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "expected one error line: {stderr}");
    lines[0]
}

/// `restore SNAP --target TARGET`, which must fail with exit 1 and leave no target; its one
/// error line.
fn refused_restore(env: &Env, snap: &str, target: &Path) -> String {
    let err = env.fails(&["restore", snap, "--target", target.to_str().unwrap()], 1);
    assert!(
        !target.exists(),
        "a refused restore left {}",
        target.display()
    );
    one_line(&err).to_string()
}

/// The listing of the snapshot `record`, as JSON.
fn listing_json(env: &Env, record: &serde_json::Value) -> serde_json::Value {
    let raw = std::process::Command::new("zstd")
        .args(["-dc"])
        .arg(Path::new(&env.repo).join(object_key(record, "listing")))
        .output()
        .unwrap()
        .stdout;
    serde_json::from_slice(&raw).unwrap()
}

/// Change the JSON file at `path` (a record, marker or journal entry) in place.
fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    edit(&mut value);
    fs::write(path, value.to_string()).unwrap();
}

/// `bytes` as one zstd frame, as strongbox writes archives.
fn zstd(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = Encoder::new(Vec::new(), Compression::Zstd(3), 0).unwrap();
    std::io::Write::write_all(&mut encoder, bytes).unwrap();
    encoder.finish().unwrap()
}

/// A tar entry: name, type, link target, content.
type TarEntry<'a> = (&'a str, tar::EntryType, &'a str, &'a [u8]);

/// A GNU tar of `entries`, as a hostile archive might hold them.
fn tar_of(entries: &[TarEntry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for &(name, kind, link, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_path(name).unwrap();
        if !link.is_empty() {
            header.set_link_name(link).unwrap();
        }
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn small_repo() -> (Env, serde_json::Value) {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), &crate::harness::noise(1, 200_000));
    write(&src.join("b/c.txt"), b"hello");
    let record = env.backup("media", &src, &[]);
    (env, record)
}

#[test]
fn missing_or_non_directory_source_is_refused_without_a_snapshot() {
    let env = Env::new();
    let missing = env.path("no-such-dir");
    let err = env.fails(&["backup", "files", "media", missing.to_str().unwrap()], 1);
    let line = one_line(&err);
    assert!(
        line.contains("no-such-dir") && line.contains("No such file"),
        "{line}"
    );

    let file = env.path("file.txt");
    write(&file, b"x");
    let err = env.fails(&["backup", "files", "media", file.to_str().unwrap()], 1);
    assert!(one_line(&err).contains("is not a directory"), "{err}");
    assert!(env.snapshot_ids().is_empty());
}

#[test]
fn missing_foreign_and_newer_repositories_are_refused() {
    let env = Env::new();
    let err = env.fails(&["snapshots"], 1);
    assert!(
        one_line(&err).contains("is not a strongbox repository: no such directory"),
        "{err}"
    );

    fs::create_dir_all(&env.repo).unwrap();
    write(&Path::new(&env.repo).join("unrelated.txt"), b"x");
    let err = env.fails(&["snapshots"], 1);
    assert!(one_line(&err).contains("no strongbox.json"), "{err}");
    let err = env.fails(
        &[
            "backup",
            "files",
            "media",
            env.path("src").to_str().unwrap(),
        ],
        1,
    );
    assert!(
        one_line(&err).contains("is not a strongbox repository"),
        "{err}"
    );
    // Nor does init make a repository among other files.
    let err = env.fails(&["init"], 1);
    assert!(
        one_line(&err).contains("it already holds unrelated.txt; give an empty or new directory"),
        "{err}"
    );
    assert_eq!(names(Path::new(&env.repo)), ["unrelated.txt"]);

    let (env, _) = small_repo();
    let marker = Path::new(&env.repo).join("strongbox.json");
    edit_json(&marker, |marker| marker["version"] = 2.into());
    let err = env.fails(&["snapshots"], 1);
    assert!(one_line(&err).contains("format version 2"), "{err}");
    let err = env.fails(&["init"], 1);
    assert!(one_line(&err).contains("already exists"), "{err}");
}

#[test]
fn an_s3_setting_the_backend_cannot_parse_is_refused_naming_it() {
    let mut env = Env::new();
    env.repo = "s3://strongbox-test/unparsable".to_string();
    env.vars
        .push(("AWS_ALLOW_HTTP".to_string(), "perhaps".to_string()));
    let err = env.fails(&["snapshots"], 1);
    let line = one_line(&err);
    assert!(
        line.contains("\"AWS_ALLOW_HTTP\"") && line.contains("\"perhaps\""),
        "{err}"
    );

    // object_store panicked (exit 101) building its first request from these.
    for (endpoint, reason) in [
        ("minio.internal:9000", "not a URL"),
        ("http://host/a b", "not a URL"),
        (
            "http://ep-user:ep-PASSWORD@127.0.0.1:9",
            "holds credentials",
        ),
    ] {
        let mut env = Env::new();
        env.repo = "s3://strongbox-test/endpoint".to_string();
        env.vars
            .push(("AWS_ENDPOINT_URL".to_string(), endpoint.to_string()));
        let err = env.fails(&["snapshots"], 1);
        let line = one_line(&err);
        assert!(
            line.contains("invalid storage setting \"AWS_ENDPOINT_URL\"") && line.contains(reason),
            "{err}"
        );
        assert!(!err.contains("ep-PASSWORD"), "{err}");
    }

    // object_store said only "URL scheme is not allowed", at the first request.
    let mut env = Env::new();
    env.repo = "s3://strongbox-test/plain-http".to_string();
    for (name, value) in [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("AWS_ALLOW_HTTP", "false"),
    ] {
        env.vars.push((name.to_string(), value.to_string()));
    }
    let err = env.fails(&["snapshots"], 1);
    let line = one_line(&err);
    assert!(
        line.contains("invalid storage setting \"AWS_ENDPOINT_URL\"")
            && line.contains("AWS_ALLOW_HTTP=true"),
        "{err}"
    );
}

#[test]
fn unknown_and_ambiguous_snapshot_ids_are_refused() {
    let (env, record) = small_repo();
    write(&env.path("src/more.txt"), b"more");
    env.backup("media", &env.path("src"), &[]);
    let err = env.fails(&["show", "29990101"], 1);
    assert!(
        one_line(&err).contains(&format!(
            "no snapshot matches \"29990101\" in repository {}",
            env.repo
        )),
        "{err}"
    );
    let err = env.fails(&["show", "nope:latest"], 1);
    assert!(one_line(&err).contains("nope:latest"), "{err}");
    let err = env.fails(&["show", "2"], 1);
    assert!(one_line(&err).contains("ambiguous"), "{err}");
    let id = record["id"].as_str().unwrap();
    let shown = env.json(&["show", &id[..id.len() - 2]]);
    assert_eq!(shown["id"], id);
}

#[test]
fn corrupt_archive_fails_verify_and_restore_leaving_the_target_unchanged() {
    let (env, record) = small_repo();
    let archive = Path::new(&env.repo).join(object_key(&record, "archive"));
    let mut bytes = fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&archive, &bytes).unwrap();

    assert_eq!(env.json(&["verify", "--level", "quick"])["ok"], true);
    let out = env.run(&["verify", "--level", "checksum", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert!(report["snapshots"][0]["checks"][1]["detail"]
        .as_str()
        .is_some());
    let checksum =
        &crate::harness::named_check(&report["snapshots"][0]["checks"], "checksum").clone();
    assert_eq!(checksum["ok"], false);
    assert!(
        checksum["detail"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{checksum}"
    );

    let target = env.path("live");
    write(&target.join("keep.txt"), b"precious");
    let before = tree(&target);
    let err = env.fails(
        &[
            "restore",
            "media:latest",
            "--target",
            target.to_str().unwrap(),
            "--force",
        ],
        1,
    );
    assert!(one_line(&err).contains("target was not changed"), "{err}");
    assert_eq!(tree(&target), before);
    assert_eq!(
        names(env.dir.path()),
        ["live", "repo", "src"],
        "staging left behind"
    );
}

#[test]
fn truncated_archive_and_corrupt_listing_are_reported_by_name() {
    let (env, record) = small_repo();
    let archive_key = object_key(&record, "archive");
    let archive = Path::new(&env.repo).join(&archive_key);
    let bytes = fs::read(&archive).unwrap();
    fs::write(&archive, &bytes[..bytes.len() / 3]).unwrap();
    let out = env.run(&["verify", "--level", "deep", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let objects = &report["snapshots"][0]["checks"][0];
    assert_eq!(objects["ok"], false);
    assert!(
        objects["detail"].as_str().unwrap().contains(&archive_key),
        "{objects}"
    );
    let err = env.fails(
        &[
            "restore",
            "media:latest",
            "--target",
            env.path("t").to_str().unwrap(),
        ],
        1,
    );
    assert!(one_line(&err).contains(&archive_key), "{err}");
    assert!(!env.path("t").exists());

    let listing_key = object_key(&record, "listing");
    fs::write(Path::new(&env.repo).join(&listing_key), b"garbage").unwrap();
    let err = env.fails(&["ls", "media:latest"], 1);
    assert!(
        one_line(&err).contains("corrupt listing") && one_line(&err).contains(&listing_key),
        "{err}"
    );
}

#[test]
fn restore_target_that_is_a_file_is_refused() {
    let (env, _) = small_repo();
    let file = env.path("target.txt");
    write(&file, b"do not touch");
    let err = env.fails(
        &[
            "restore",
            "media:latest",
            "--target",
            file.to_str().unwrap(),
        ],
        1,
    );
    assert!(one_line(&err).contains("is not a directory"), "{err}");
    assert_eq!(fs::read(&file).unwrap(), b"do not touch");
}

#[test]
fn a_held_lock_refuses_a_second_backup_and_a_dead_holder_is_taken_over() {
    let (env, _) = small_repo();
    let host = crate::harness::host();
    // A live holder: this test process (which started before the lock's time: a process
    // that started after it has only reused the holder's pid).
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let lock = plant_lock(&env, "backup", &host, std::process::id(), &now);
    let err = env.fails(
        &[
            "backup",
            "files",
            "media",
            env.path("src").to_str().unwrap(),
        ],
        1,
    );
    let line = one_line(&err);
    assert!(
        line.contains(&format!(
            "locked by backup on host {host} (pid {})",
            std::process::id()
        )),
        "{line}"
    );
    assert!(line.contains(&now[..19]), "{line}");
    assert_eq!(env.snapshot_ids().len(), 1);

    // A holder that is gone: a finished child's pid.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    plant_lock(&env, "backup", &host, dead, "2025-12-27T02:00:00Z");
    env.backup("media", &env.path("src"), &[]);
    assert_eq!(env.snapshot_ids().len(), 2);
    assert!(!lock.exists(), "lock released after the backup");
}

#[test]
fn hostile_archive_and_listing_entries_cannot_escape_the_target() {
    let (env, record) = small_repo();
    let repo = Path::new(&env.repo);
    // An archive whose entry climbs out of the target (GNU tar keeps `..` with -P).
    let evil_dir = env.path("evil-src/inner");
    write(&evil_dir.join("../escaped.txt"), b"pwned");
    let archive_key = object_key(&record, "archive");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && tar -P -cf - ../escaped.txt | zstd -q -c > {}",
            evil_dir.display(),
            repo.join(&archive_key).display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let target = env.path("restore/here");
    let err = refused_restore(&env, "media:latest", &target);
    assert!(
        err.contains("unsafe path") && err.contains("../escaped.txt"),
        "{err}"
    );
    assert!(!env.path("restore/escaped.txt").exists());
    // A listing routing a file through a symlink the archive holds (a set of its own, whose
    // tree has the link). A restore checks each listing entry as the listing streams by,
    // before that entry is read or written.
    let linked = env.path("linked-src");
    write(&linked.join("a.txt"), b"a");
    std::os::unix::fs::symlink("/tmp", linked.join("z")).unwrap();
    let record = env.backup("linked", &linked, &[]);
    let listing_key = object_key(&record, "listing");
    let raw = std::process::Command::new("zstd")
        .args(["-dc"])
        .arg(repo.join(&listing_key))
        .output()
        .unwrap()
        .stdout;
    let mut listing: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let entries = listing["entries"].as_array_mut().unwrap();
    let holder = entries[0]["holder"].clone();
    assert_eq!(entries.last().unwrap()["path"], "z");
    entries.push(serde_json::json!({"path": "z/owned.txt", "type": "file", "size": 5, "mode": 420, "mtime": 0, "sha256": "00", "holder": holder}));
    let tmp = env.path("listing.json");
    fs::write(&tmp, listing.to_string()).unwrap();
    let status = std::process::Command::new("zstd")
        .args(["-q", "-f", "-o"])
        .arg(repo.join(&listing_key))
        .arg(&tmp)
        .status()
        .unwrap();
    assert!(status.success());
    let restore = [
        "restore",
        "linked:latest",
        "--target",
        target.to_str().unwrap(),
    ];
    // A listing that is not the one the record names is refused before it is read.
    let err = env.fails(&restore, 1);
    assert!(
        one_line(&err).contains("corrupt listing") && one_line(&err).contains("does not match"),
        "{err}"
    );
    assert!(!target.exists());
    // Whoever can rewrite the listing can rewrite the record too: then the tree check is
    // what stands between the listing and the file system.
    let stored = fs::read(repo.join(&listing_key)).unwrap();
    plant(&env, &record, "listing", &stored);
    let err = env.fails(&restore, 1);
    assert!(
        one_line(&err).contains("z/owned.txt")
            && one_line(&err).contains("parent is not a directory"),
        "{err}"
    );
    assert!(!Path::new("/tmp/owned.txt").exists());
}

#[test]
fn a_listing_out_of_order_fails_verify_and_restore_naming_the_entry() {
    let (env, record) = small_repo();
    let mut listing = listing_json(&env, &record);
    // `a.txt`, `b`, `b/c.txt`: `b` moved to the front is still a tree, but not in listing
    // order, which a streamed check relies on to rule out duplicates.
    let entries = listing["entries"].as_array_mut().unwrap();
    assert_eq!(entries[1]["path"], "b");
    entries.swap(0, 1);
    plant(
        &env,
        &record,
        "listing",
        &zstd(listing.to_string().as_bytes()),
    );

    for level in ["quick", "deep"] {
        let out = env.run(&["verify", "--level", level, "--json"]);
        assert_eq!(out.status.code(), Some(1), "{level}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let check = crate::harness::named_check(&report["snapshots"][0]["checks"], "listing");
        let detail = check["detail"].as_str().unwrap();
        assert!(
            check["ok"] == false && detail.contains("\"a.txt\": listed out of order"),
            "{level}: {check}"
        );
    }
    let err = refused_restore(&env, "media:latest", &env.path("target"));
    assert!(err.contains("listed out of order"), "{err}");
}

#[test]
fn a_record_naming_objects_of_another_set_is_refused_and_nothing_is_deleted() {
    let (env, record) = small_repo();
    let repo = Path::new(&env.repo);
    // A record planted in set "other" that names media's objects: a prune of "other"
    // forgetting it would delete them, a restore would read them.
    let id = record["id"].as_str().unwrap();
    let mut planted = record.clone();
    planted["set"] = "other".into();
    let planted_path = repo.join(format!("sets/other/snapshots/{id}.json"));
    write(&planted_path, planted.to_string().as_bytes());
    let before = tree(repo);
    let target = env.path("x");
    for args in [
        &["snapshots"][..],
        &["restore", id, "--target", target.to_str().unwrap()][..],
        &["prune", "other", "--keep-last", "1"][..],
    ] {
        let err = env.fails(args, 1);
        let line = one_line(&err);
        assert!(
            line.contains(&format!("sets/other/snapshots/{id}.json"))
                && line.contains("not an object of this snapshot"),
            "{args:?}: {err}"
        );
    }
    let mut after = tree(repo);
    after.retain(|path, _| !path.contains("/runs/") && !path.starts_with("locks"));
    let mut before = before;
    before.retain(|path, _| !path.contains("/runs/"));
    assert_eq!(before, after, "nothing changed");
}

#[test]
fn an_include_that_matches_nothing_is_refused_and_a_forced_target_keeps_its_content() {
    let (env, record) = small_repo();
    let live = env.path("live");
    write(&live.join("keep.txt"), b"do not touch");
    let before = tree(&live);
    let target = live.to_str().unwrap();
    for extra in [&["--force", "--no-keep-previous"][..], &["--dry-run"]] {
        let mut args = vec!["restore", "media:latest", "--target", target];
        args.extend(["--include", "B/**", "--include", "nope"]);
        args.extend(extra);
        let err = env.fails(&args, 1);
        assert!(
            one_line(&err).contains(&format!(
                "no entry of snapshot {} matches --include 'B/**', 'nope'",
                record["id"].as_str().unwrap()
            )),
            "{extra:?}: {err}"
        );
    }
    assert_eq!(tree(&live), before);
    assert_eq!(names(env.dir.path()), ["live", "repo", "src"]);
}

#[test]
fn a_tree_holding_its_repository_backs_up_without_it_and_cannot_be_restored_over_it() {
    let env = Env::new();
    let top = env.dir.path();
    write(&top.join("src/a.txt"), b"data");
    env.backup("all", top, &[]);
    let again = env.backup("all", top, &[]);
    assert_eq!(again["stats"]["changed"], 0, "{again}");
    let listed = env.json(&["ls", "all:latest"]);
    let paths: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["src", "src/a.txt"]);

    for source in [env.repo.clone(), format!("{}/sets", env.repo)] {
        let err = env.fails(&["backup", "files", "self", &source], 1);
        assert!(
            one_line(&err).contains(&format!(
                "backup source {source} is repository {} or lies inside it",
                env.repo
            )),
            "{err}"
        );
    }

    let before = tree(top);
    // `missing/../repo` looked like a new, empty target, yet named the repository.
    let dotdot = env.path("missing/../repo");
    for (target, force) in [
        (top.to_path_buf(), true),
        (env.path("repo/sets/x"), false),
        (dotdot, false),
    ] {
        let mut args = vec![
            "restore",
            "all:latest",
            "--target",
            target.to_str().unwrap(),
        ];
        if force {
            args.extend(["--force", "--no-keep-previous"]);
        }
        let err = env.fails(&args, 1);
        assert!(
            one_line(&err).contains(&format!("it holds or is inside repository {}", env.repo)),
            "{err}"
        );
    }
    assert_eq!(tree(top), before);
}

/// An SQLite restore writes one file: never one of the repository's (its marker, a record),
/// and no new one inside it.
#[test]
fn an_sqlite_restore_into_the_repository_is_refused() {
    let env = Env::new();
    let db = env.path("app.db");
    crate::harness::sqlite(&db, "CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    env.json(&["backup", "sqlite", "app", db.to_str().unwrap()]);
    let repo = Path::new(&env.repo);
    let before = tree(repo);
    for (target, force) in [
        (repo.join("strongbox.json"), true),
        (repo.join("new.db"), false),
        (env.path("missing/../repo/x.db"), false),
    ] {
        let mut args = vec![
            "restore",
            "app:latest",
            "--target",
            target.to_str().unwrap(),
        ];
        if force {
            args.push("--force");
        }
        let err = env.fails(&args, 1);
        assert!(
            one_line(&err).contains(&format!("it holds or is inside repository {}", env.repo)),
            "{err}"
        );
    }
    let mut after = tree(repo);
    after.retain(|path, _| !path.contains("/runs/"));
    let mut before = before;
    before.retain(|path, _| !path.contains("/runs/"));
    assert_eq!(before, after, "nothing changed");

    // A directory is no database file: it said "disk I/O error: Error code 266".
    let dir = env.path("dir");
    fs::create_dir(&dir).unwrap();
    let err = env.fails(
        &["restore", "app:latest", "--target", dir.to_str().unwrap()],
        1,
    );
    assert!(one_line(&err).contains("it is a directory"), "{err}");
}

#[test]
fn a_missing_scratch_dir_is_refused_and_no_snapshot_is_marked_failed() {
    let (env, _) = small_repo();
    let missing = env.path("missing");
    let err = env.fails(
        &[
            "verify",
            "media:latest",
            "--level",
            "restore",
            "--scratch-dir",
            missing.to_str().unwrap(),
        ],
        1,
    );
    assert!(
        one_line(&err).contains(&format!("scratch directory {}", missing.display())),
        "{err}"
    );
    assert!(!missing.exists(), "the scratch directory was created");
    // `backup --verify restore` refuses it before it takes a snapshot.
    let src = env.path("src");
    let err = env.fails(
        &[
            "backup",
            "files",
            "media",
            src.to_str().unwrap(),
            "--verify",
            "restore",
            "--scratch-dir",
            missing.to_str().unwrap(),
        ],
        1,
    );
    assert!(one_line(&err).contains("scratch directory"), "{err}");
    let snapshots = env.json(&["snapshots"]);
    assert_eq!(snapshots.as_array().unwrap().len(), 1, "{snapshots:#}");
    assert!(snapshots[0]["last_verification"].is_null(), "{snapshots:#}");
    let health = env.run(&["health", "--max-disk-usage", "100"]);
    assert_eq!(health.status.code(), Some(0), "{health:?}");
}

#[test]
fn a_report_in_a_missing_directory_is_refused_before_verifying() {
    let (env, _) = small_repo();
    let report = env.path("missing/r.json");
    let err = env.fails(
        &[
            "verify",
            "--level",
            "deep",
            "--report",
            report.to_str().unwrap(),
        ],
        1,
    );
    assert!(
        one_line(&err).contains(&format!(
            "report {}: directory {} does not exist",
            report.display(),
            env.path("missing").display()
        )),
        "{err}"
    );
    let status = env.json(&["status", "media"]);
    assert!(status[0]["last_runs"].get("verify").is_none(), "{status:#}");
}

/// A damaged snapshot record fails only the work that needs it. It used to stop every
/// `verify`, `health`, `status` and `snapshots` of the whole repository, and any restore of
/// its set, even of snapshots that do not need it.
#[test]
fn a_damaged_record_fails_only_what_needs_it() {
    let env = Env::new();
    let (media, docs) = (env.path("media"), env.path("docs"));
    write(&media.join("a.txt"), b"first");
    write(&docs.join("d.txt"), b"docs");
    let old = env.backup("media", &media, &[])["id"]
        .as_str()
        .unwrap()
        .to_string();
    write(&media.join("a.txt"), b"second, longer");
    let new = env.backup("media", &media, &["--full"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = env.backup("docs", &docs, &[])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let record = |id: &str| format!("sets/media/snapshots/{id}.json");
    let damage = |id: &str| fs::write(Path::new(&env.repo).join(record(id)), b"{garbage").unwrap();
    damage(&old);

    // What does not need the damaged record works.
    for (snap, source) in [("media:latest", &media), ("docs:latest", &docs)] {
        let target = env.path(&format!("restored-{}", &snap[..4]));
        env.restore(snap, &target, &[]);
        assert_eq!(tree(&target), tree(source), "{snap}");
    }
    assert_eq!(env.json(&["verify", "docs:latest"])["ok"], true);
    assert_eq!(env.json(&["show", &doc])["id"], doc.as_str());

    // Listings list the rest and fail naming the damaged record.
    let out = env.run(&["snapshots", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [new.as_str(), doc.as_str()]);
    assert!(one_line(&String::from_utf8_lossy(&out.stderr)).contains(&record(&old)));
    let status = env.json(&["status"]);
    let damaged: Vec<&serde_json::Value> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["damaged_records"])
        .collect();
    let expected = serde_json::json!([old]);
    assert_eq!(damaged, [&serde_json::Value::Null, &expected], "{status:#}");

    // health: critical for its set, by name; the other set is checked as ever.
    let out = env.run(&["health", "--json", "--max-disk-usage", "100"]);
    assert_eq!(out.status.code(), Some(2));
    let health: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let critical: Vec<&serde_json::Value> = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "critical")
        .collect();
    assert_eq!(critical.len(), 1, "{health:#}");
    assert_eq!(
        (&critical[0]["set"], &critical[0]["name"]),
        (&"media".into(), &"record".into())
    );
    assert!(
        critical[0]["detail"]
            .as_str()
            .unwrap()
            .contains(&record(&old)),
        "{health:#}"
    );

    // verify --all: the damaged record is a failed snapshot; the others are verified.
    let out = env.run(&["verify", "--all", "--level", "checksum", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results: Vec<(&str, bool)> = report["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["ok"] == true))
        .collect();
    assert_eq!(
        results,
        [
            (doc.as_str(), true),
            (new.as_str(), true),
            (old.as_str(), false)
        ]
    );

    // What needs it fails naming it, and writes nothing: the record itself, a prune that
    // must know every snapshot, and a latest that is damaged (never an older one instead).
    let err = env.fails(&["show", &old], 1);
    assert!(one_line(&err).contains(&record(&old)), "{err}");
    let stored = tree(Path::new(&env.repo).join("sets/media/data").as_path());
    let err = env.fails(&["prune", "media", "--keep-last", "1"], 1);
    assert!(one_line(&err).contains(&record(&old)), "{err}");
    assert_eq!(
        tree(Path::new(&env.repo).join("sets/media/data").as_path()),
        stored
    );
    // Another set prunes: the damaged record is of a files set, so no bundle's.
    env.json(&["prune", "docs", "--keep-last", "1"]);
    let newest = Path::new(&env.repo).join(record(&new));
    let intact = fs::read(&newest).unwrap();
    damage(&new);
    let line = refused_restore(&env, "media:latest", &env.path("t"));
    assert!(line.contains(&record(&new)), "{line}");

    // Put back from a copy, it is the latest again; backups go on, built on it, past the
    // damaged one.
    fs::write(&newest, intact).unwrap();
    write(&media.join("b.txt"), b"third");
    let next = env.backup("media", &media, &[]);
    assert_eq!(next["parent"], new.as_str(), "{next:#}");
    env.restore("media:latest", &env.path("t"), &[]);
    assert_eq!(tree(&env.path("t")), tree(&media));
}

/// `strongbox snapshots | head` closes the pipe early: that is no failure, where it used to
/// panic (exit 101).
#[test]
fn output_into_a_closed_pipe_exits_0() {
    let (env, _) = small_repo();
    for args in [
        &["snapshots"][..],
        &["snapshots", "--json"],
        &["show", "media:latest"],
    ] {
        // A pipe whose reader is gone before strongbox writes a byte.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = env
            .cmd(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A snapshot dated ahead of the clock would stand as the latest and keep `health` green
/// while no backup ran; a typo in `--time` (2062 for 2026) used to be accepted.
#[test]
fn a_snapshot_time_in_the_future_is_refused_and_journals_nothing() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"a");
    let args = ["backup", "files", "media", src.to_str().unwrap()];
    let err = env.fails(
        &[&args[..], &["--time", "2062-12-03T02:00:00Z"]].concat(),
        1,
    );
    assert!(
        one_line(&err).contains("snapshot time 2062-12-03T02:00:00+00:00 is in the future"),
        "{err}"
    );
    assert!(env.snapshot_ids().is_empty());
    assert_eq!(env.json(&["status"]), serde_json::json!([]));
}

#[test]
fn usage_errors_exit_2_but_health_says_unknown_and_wal_fetch_stops_recovery() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for args in [
        vec![
            "backup",
            "files",
            "media",
            src.to_str().unwrap(),
            "--compression",
            "lz4",
        ],
        vec![
            "backup",
            "files",
            "media",
            src.to_str().unwrap(),
            "--full",
            "--differential",
        ],
        vec![
            "backup",
            "files",
            "media",
            src.to_str().unwrap(),
            "--time",
            "yesterday",
        ],
        vec!["restore", "media:latest"],
        // Recovery targets are for a base backup's --target-dir; a files restore ignored them.
        vec![
            "restore",
            "media:latest",
            "--target",
            "t",
            "--to-lsn",
            "0/1",
        ],
        vec!["restore", "media:latest", "--target", "t", "--to-latest"],
        vec![
            "restore",
            "media:latest",
            "--target-dir",
            "d",
            "--no-keep-previous",
        ],
        vec!["verify", "--level", "extreme"],
    ] {
        env.fails(&args, 2);
    }
    let err = env.fails(&["--cleanup-timeout", "soon", "snapshots"], 2);
    assert!(err.contains("--cleanup-timeout"), "{err}");
    // Regression: usage errors exited 2 whoever asked. To monitoring, health's 2 is
    // CRITICAL (it is UNKNOWN, 3); to PostgreSQL, restore_command's 2 is "no such WAL
    // file", which ends recovery early (126 stops it).
    let out = env.run(&["health", "--max-disk-usage", "lots"]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("UNKNOWN: invalid value 'lots' for '--max-disk-usage"),
        "{stdout}"
    );
    let out = env.run(&["health", "--json", "--bogus"]);
    assert_eq!(out.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "unknown", "{report}");
    env.fails(&["wal", "fetch", "media", "000000010000000000000001"], 126);
    // A recovery target alone asks for --target-dir, not for --target.
    let err = env.fails(
        &[
            "restore",
            "media:latest",
            "--to-time",
            "2026-01-01T00:00:00Z",
        ],
        2,
    );
    assert!(
        err.contains("--target-dir <DIR>") && !err.contains("--target <TARGET>"),
        "{err}"
    );
    let err = env.fails(&["backup", "files", "../media", src.to_str().unwrap()], 2);
    assert!(
        one_line(&err).contains("invalid set name \"../media\""),
        "{err}"
    );

    // Found after parsing, when the snapshot is known: still usage, exit 2, as clap's.
    let (env, _) = small_repo();
    let err = env.fails(
        &["restore", "media:latest", "--target", "a", "--target", "b"],
        2,
    );
    assert!(one_line(&err).contains("--target is given once"), "{err}");
    let err = env.fails(
        &["restore", "media:latest", "--target", "a", "--only", "db"],
        2,
    );
    assert!(one_line(&err).contains("--only names a member"), "{err}");
    let err = env.fails(&["verify", "media:latest", "--budget", "1MiB"], 2);
    assert!(one_line(&err).contains("--level deep"), "{err}");
}

#[test]
fn unreadable_files_are_left_out_named_and_exit_3() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("ok.txt"), b"readable");
    // Regression: a name's newline made a line of its own in the warning, which could
    // pass for strongbox's.
    let evil = "evil\nstrongbox: snapshot written OK";
    for name in ["private/secret.txt", evil] {
        write(&src.join(name), b"unreadable");
        fs::set_permissions(src.join(name), fs::Permissions::from_mode(0o000)).unwrap();
    }
    // Regression: a directory it cannot list was said to be "not in this snapshot", which
    // holds it, empty, and restores it so.
    write(&src.join("locked/inner.txt"), b"unlisted");
    fs::set_permissions(src.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = crate::harness::unprivileged(&env);
    let out = cmd
        .args([
            "--repo",
            &env.repo,
            "backup",
            "files",
            "media",
            src.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("private/secret.txt") && stderr.contains("Permission denied"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{evil:?}"))
            && !stderr.lines().any(|l| l.starts_with("strongbox: snapshot")),
        "{stderr}"
    );
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors: Vec<&str> = record["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(errors, ["locked", evil, "private/secret.txt"]);
    assert_eq!(record["stats"]["files"], 1);
    let locked = stderr.lines().find(|l| l.contains("locked")).unwrap();
    assert!(
        locked.ends_with("(in this snapshot as an empty directory)"),
        "{locked}"
    );
    assert!(
        stderr.contains("private/secret.txt: cannot open: Permission denied (os error 13) (not in this snapshot)"),
        "{stderr}"
    );

    let listed: Vec<String> = env
        .json(&["ls", "media:latest"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ["locked", "ok.txt", "private"]);
    let runs = Path::new(&env.repo).join("sets/media/runs");
    let run = fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
    let run: serde_json::Value = serde_json::from_slice(&fs::read(run).unwrap()).unwrap();
    assert_eq!(run["status"], "incomplete");
    // health said ok after it: a backup that leaves files out every night went unnoticed.
    let out = env.run(&["health", "--json", "--max-disk-usage", "100"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let last = crate::harness::named_check(&report["checks"], "last-backup");
    assert_eq!(last["status"], "warning", "{report:#}");
    assert!(
        last["detail"].as_str().unwrap().contains(&format!(
            "files were left out of {}",
            record["id"].as_str().unwrap()
        )),
        "{last}"
    );
}

/// A tar header declaring `size` bytes for `path`.
fn tar_header(path: &str, size: u64) -> Vec<u8> {
    let mut header = vec![0u8; 512];
    header[..path.len()].copy_from_slice(path.as_bytes());
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    // GNU base-256: too large for the octal field.
    header[124] = 0x80;
    header[128..136].copy_from_slice(&size.to_be_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..265].copy_from_slice(b"ustar  \0");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    header
}

/// A zstd frame of a few hundred kilobytes that expands to `prefix` and then `zeros` zero
/// bytes: 128 KiB RLE blocks of one byte each.
fn zstd_bomb(prefix: &[u8], zeros: u64) -> Vec<u8> {
    const BLOCK: usize = 128 << 10;
    // Magic, no content size, no checksum, a 128 KiB window.
    let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x38];
    let block = |frame: &mut Vec<u8>, kind: u32, len: usize, last: bool| {
        let word = u32::from(last) | kind << 1 | (len as u32) << 3;
        frame.extend_from_slice(&word.to_le_bytes()[..3]);
    };
    for raw in prefix.chunks(BLOCK) {
        block(&mut frame, 0, raw.len(), false);
        frame.extend_from_slice(raw);
    }
    let mut left = zeros;
    while left > 0 {
        let len = left.min(BLOCK as u64);
        left -= len;
        block(&mut frame, 1, len as usize, left == 0);
        frame.push(0);
    }
    frame
}

/// Put `bytes` in place of the snapshot's object of `role`, and forge the record's digest
/// of it: whoever can plant an object can rewrite the record too.
fn plant(env: &Env, record: &serde_json::Value, role: &str, bytes: &[u8]) {
    let repo = Path::new(&env.repo);
    fs::write(repo.join(object_key(record, role)), bytes).unwrap();
    let record_path = repo.join(format!(
        "sets/{}/snapshots/{}.json",
        record["set"].as_str().unwrap(),
        record["id"].as_str().unwrap()
    ));
    edit_json(&record_path, |forged| {
        for object in forged["objects"].as_array_mut().unwrap() {
            if object["role"] == role {
                object["size"] = bytes.len().into();
                object["sha256"] = crate::harness::sha256(bytes).into();
            }
        }
    });
}

#[test]
fn a_zstd_bomb_stops_at_the_size_the_listing_declares_and_writes_nothing() {
    let (env, record) = small_repo();
    let bomb = zstd_bomb(&tar_header("a.txt", 10_000_000_000), 10_000_000_000);
    assert!(bomb.len() < 400_000, "{}", bomb.len());
    plant(&env, &record, "archive", &bomb);
    let err = refused_restore(&env, "media:latest", &env.path("target"));
    // Refused at the tar header, before one byte of the entry is expanded.
    assert!(
        err.contains("a.txt: archive")
            && err.contains("holds a different entry (File, 10000000000 bytes)"),
        "{err}"
    );
    assert_eq!(
        names(&env.path(".")),
        ["repo", "src"],
        "the restore left something behind"
    );
}

#[test]
fn a_zstd_bomb_in_place_of_a_dump_stops_at_the_declared_size_and_writes_nothing() {
    let env = Env::new();
    let db = env.path("chat.sqlite3");
    crate::harness::sqlite(
        &db,
        "CREATE TABLE msg(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO msg(body) VALUES ('hello');",
    );
    let record = env.json(&["backup", "sqlite", "chat", db.to_str().unwrap()]);
    // The real database, then 10 GB of zeros: a valid header, a file that never ends.
    plant(
        &env,
        &record,
        "dump",
        &zstd_bomb(&fs::read(&db).unwrap(), 10_000_000_000),
    );
    let err = refused_restore(&env, "chat:latest", &env.path("restored.sqlite3"));
    assert!(
        err.contains("the dump is longer than its record declares"),
        "{err}"
    );
    assert_eq!(
        names(&env.path(".")),
        ["chat.sqlite3", "repo"],
        "the restore left something behind"
    );
}

#[test]
fn archive_entries_of_other_kinds_or_through_a_symlink_are_refused_and_nothing_is_written() {
    let (env, record) = small_repo();
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    // Each tar holds what the listing says is a file (`a.txt`, `b/c.txt`) as something else.
    use tar::EntryType::{Char, Fifo, Link, Regular, Symlink};
    let outside_path = outside.display().to_string();
    // The listing's own `a.txt` first, so that the archive's next entry, `b`, is the one
    // checked against the listing's directory `b`.
    let a_txt = crate::harness::noise(1, 200_000);
    let cases: [(&str, Vec<TarEntry<'_>>, &str); 4] = [
        (
            "hard link out of the tree",
            vec![("a.txt", Link, "/etc/passwd", b"")],
            "a.txt",
        ),
        ("device node", vec![("a.txt", Char, "", b"")], "a.txt"),
        ("FIFO", vec![("a.txt", Fifo, "", b"")], "a.txt"),
        (
            "symlink, then a file through it",
            vec![
                ("a.txt", Regular, "", &a_txt),
                ("b", Symlink, &outside_path, b""),
                ("b/c.txt", Regular, "", b"pwned"),
            ],
            "b",
        ),
    ];
    for (what, entries, named) in cases {
        plant(&env, &record, "archive", &zstd(&tar_of(&entries)));
        let err = refused_restore(&env, "media:latest", &env.path("target"));
        assert!(
            err.contains(named) && err.contains("different entry"),
            "{what}: {err}"
        );
        assert!(
            names(&outside).is_empty(),
            "{what}: written outside the target"
        );
        assert_eq!(names(&env.path(".")), ["outside", "repo", "src"], "{what}");
    }
}

#[test]
fn a_delta_listing_whose_base_is_another_sets_listing_is_refused_naming_it() {
    let (env, _) = small_repo();
    let src = env.path("src");
    let delta_record = env.backup("media", &src, &[]);
    let other = env.backup("other", &src, &[]);
    let other_listing = object_key(&other, "listing");
    let key = object_key(&delta_record, "listing");
    let raw = std::process::Command::new("zstd")
        .arg("-dc")
        .arg(Path::new(&env.repo).join(&key))
        .output()
        .unwrap()
        .stdout;
    let mut listing: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(listing["format"], "strongbox-files-delta");
    // The other set's listing, digest and all: only its place gives it away.
    listing["delta"]["base"] = other["id"].clone();
    listing["delta"]["key"] = other_listing.clone().into();
    let stored = fs::read(Path::new(&env.repo).join(&other_listing)).unwrap();
    listing["delta"]["size"] = stored.len().into();
    listing["delta"]["sha256"] = crate::harness::sha256(&stored).into();
    plant(
        &env,
        &delta_record,
        "listing",
        &zstd(listing.to_string().as_bytes()),
    );

    let err = refused_restore(&env, "media:latest", &env.path("target"));
    assert!(err.contains(&other_listing), "{err}");
    let err = env.fails(&["ls", "media:latest"], 1);
    assert!(one_line(&err).contains(&other_listing), "{err}");
}

/// With the full backup's archive deleted behind strongbox's back (a lifecycle rule), or cut
/// short, each incremental succeeded and none could be restored; with its listing deleted,
/// each failed saying only that an object was not found.
#[test]
fn an_incremental_over_a_gone_or_cut_parent_archive_or_listing_fails_saying_take_a_full() {
    for (role, cut) in [("archive", false), ("archive", true), ("listing", false)] {
        let (env, record) = small_repo();
        let src = env.path("src");
        write(&src.join("new.txt"), b"new");
        let gone = Path::new(&env.repo).join(object_key(&record, role));
        let stored = fs::read(&gone).unwrap();
        if cut {
            fs::write(&gone, &stored[..stored.len() / 2]).unwrap();
        } else {
            fs::remove_file(&gone).unwrap();
        }
        let before = names(&Path::new(&env.repo).join("sets/media/snapshots"));
        let err = env.fails(&["backup", "files", "media", src.to_str().unwrap()], 1);
        let line = one_line(&err);
        assert!(
            line.contains(&format!(
                "parent snapshot {} cannot be built on",
                record["id"].as_str().unwrap()
            )) && line.contains("--full"),
            "{role}: {err}"
        );
        if cut {
            let sizes = format!(
                "has {} bytes, the record says {}",
                stored.len() / 2,
                stored.len()
            );
            assert!(line.contains(&sizes), "{err}");
        }
        assert_eq!(
            names(&Path::new(&env.repo).join("sets/media/snapshots")),
            before,
            "{role}: no snapshot was added"
        );
        let full = env.backup("media", &src, &["--full"]);
        let target = env.path("restored");
        env.restore(full["id"].as_str().unwrap(), &target, &[]);
        assert_eq!(tree(&target), tree(&src), "{role}");
    }
}

/// `verify SET:latest --level checksum` passed while the full archive the latest
/// incremental draws from was corrupt, and the restore then failed.
#[test]
fn a_checksum_verify_of_an_incremental_hashes_the_archives_it_draws_from() {
    let (env, full) = small_repo();
    let src = env.path("src");
    write(&src.join("new.txt"), b"new");
    env.backup("media", &src, &[]);
    let archive = Path::new(&env.repo).join(object_key(&full, "archive"));
    let mut bytes = fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xFF;
    fs::write(&archive, bytes).unwrap();
    let out = env.run(&["verify", "media:latest", "--level", "checksum", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&object_key(&full, "archive")) && text.contains("SHA-256"),
        "{text}"
    );
}

/// `verify --all --level checksum` hashed an archive once, with the first snapshot that
/// needed it, and failed only that one: the incremental drawing from it passed and was
/// recorded verified, though its restore failed. A quick check did not look at the size of
/// the archives a listing draws from at all.
#[test]
fn every_snapshot_drawing_from_a_damaged_archive_fails_with_it() {
    let (env, full) = small_repo();
    let src = env.path("src");
    write(&src.join("new.txt"), b"new");
    let incremental = env.backup("media", &src, &[]);
    let (full_id, inc_id) = (
        full["id"].as_str().unwrap(),
        incremental["id"].as_str().unwrap(),
    );
    let key = object_key(&full, "archive");
    let archive = Path::new(&env.repo).join(&key);
    let original = fs::read(&archive).unwrap();

    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 0xFF;
    fs::write(&archive, &flipped).unwrap();
    let out = env.run(&["verify", "--all", "--level", "checksum", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let snapshots = report["snapshots"].as_array().unwrap();
    assert_eq!(snapshots.len(), 2, "{report:#}");
    assert!(snapshots.iter().all(|s| s["ok"] == false), "{report:#}");
    let inc = snapshots.iter().find(|s| s["id"] == inc_id).unwrap();
    let detail = crate::harness::named_check(&inc["checks"], "checksum")["detail"]
        .as_str()
        .unwrap();
    assert!(
        detail.contains(&format!("draws from the archive of snapshot {full_id}"))
            && detail.contains(&key),
        "{detail}"
    );
    let listed = env.json(&["snapshots"]);
    let recorded: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), &s["last_verification"]["ok"]))
        .collect();
    assert_eq!(
        recorded,
        [(full_id, &false.into()), (inc_id, &false.into())]
    );

    // Without the full in the run, in either order: the first that draws from its archive
    // hashes it, the other gets its result.
    write(&src.join("newer.txt"), b"newer");
    let newer = env.backup("media", &src, &[]);
    let newer_id = newer["id"].as_str().unwrap();
    for order in [[newer_id, inc_id], [inc_id, newer_id]] {
        let out = env.run(&[
            "verify", order[0], order[1], "--level", "checksum", "--json",
        ]);
        assert_eq!(out.status.code(), Some(1));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for snapshot in report["snapshots"].as_array().unwrap() {
            let detail = crate::harness::named_check(&snapshot["checks"], "checksum")["detail"]
                .as_str()
                .unwrap();
            assert!(
                detail.starts_with(&format!("draws from the archive of snapshot {full_id}: ")),
                "{order:?}: {detail}"
            );
        }
    }

    fs::write(&archive, &original[..original.len() - 100]).unwrap();
    let out = env.run(&["verify", inc_id, "--level", "quick", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let detail = crate::harness::named_check(&report["snapshots"][0]["checks"], "listing")
        ["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        detail,
        format!(
            "draws from the archive of snapshot {full_id}: {key} has {} bytes, the record says {}",
            original.len() - 100,
            original.len()
        )
    );
}

/// `snapshots mdia` printed "no snapshots" and `status mdia` a set with none, both with
/// exit 0: a typo read as an empty set.
#[test]
fn a_misspelt_set_is_refused_by_the_commands_that_read_it() {
    let (env, _) = small_repo();
    for command in ["snapshots", "status"] {
        let err = env.fails(&[command, "mdia"], 1);
        assert!(
            one_line(&err).contains("no set \"mdia\" in the repository or the configuration"),
            "{command}: {err}"
        );
        env.json(&[command, "media"]);
    }
}

/// A backup into a mistyped --repo (or onto an unmounted disk's mount point) made a fresh
/// repository there without a word, even from cron.
#[test]
fn a_backup_that_creates_its_repository_says_so_even_when_quiet() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"a");
    let args = ["-q", "backup", "files", "media", src.to_str().unwrap()];
    let first = env.cmd(&args).output().unwrap();
    assert!(first.status.success());
    let warning = String::from_utf8_lossy(&first.stderr);
    assert!(
        warning.contains("created a new repository in") && warning.contains(&env.repo),
        "{warning}"
    );
    let second = env.cmd(&args).output().unwrap();
    assert!(second.status.success());
    assert_eq!(String::from_utf8_lossy(&second.stderr), "");
}

/// Regression: with --json, a usage error printed nothing on stdout (only health's did), and
/// a stdout that could not be written (full, closed) made the error path panic, exit 101,
/// health's too, whose callers read 0 to 3 only.
#[test]
fn json_usage_errors_print_one_document_and_unwritable_output_exits_cleanly() {
    let (env, _) = small_repo();
    let usage: &[&[&str]] = &[
        &["show", "--json"],
        &["--json", "bogus"],
        &[
            "backup",
            "files",
            "m",
            "src",
            "--full",
            "--incremental",
            "--json",
        ],
    ];
    for args in usage {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let error = shown["error"].as_str().unwrap();
        assert!(
            !error.is_empty() && !error.contains('\n'),
            "{args:?}: {error}"
        );
    }
    let missing = env.run(&["show", "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&missing.stdout).unwrap();
    assert!(
        shown["error"].as_str().unwrap().contains("<SNAPSHOT>"),
        "the missing argument is named: {shown}"
    );

    let full = || {
        fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    for (args, code) in [
        (&["snapshots", "--json"][..], 1),
        (
            &["backup", "files", "media", "/nonexistent-dir", "--json"],
            1,
        ),
        (&["health", "--max-disk-usage", "100"], 3),
        (&["health", "--json", "--max-disk-usage", "100"], 3),
    ] {
        let out = env.cmd(args).stdout(full()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // The error line itself lost to a full stderr: still exit 1.
    let lost = env
        .cmd(&["show", "nosuch"])
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(lost.status.code(), Some(1));
}

/// Regression: one bit turning a record's year 2026 into 2036 made the oldest snapshot
/// `latest` (restored in place of the newest) and the one `prune --keep-last 1` kept, with
/// verify and health content: the id, made from the time, says otherwise.
#[test]
fn a_record_whose_time_disagrees_with_its_id_is_damaged_not_latest() {
    let env = Env::new();
    let src = env.path("src");
    let mut ids = Vec::new();
    for i in 0..3 {
        write(&src.join("f"), format!("v{i}").as_bytes());
        ids.push(
            env.backup("media", &src, &[])["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let key = format!("sets/media/snapshots/{}.json", ids[0]);
    let path = Path::new(&env.repo).join(&key);
    edit_json(&path, |record| {
        let time = record["time"].as_str().unwrap().replacen("20", "21", 1);
        record["time"] = time.into();
    });

    let target = env.path("restored");
    env.restore("media:latest", &target, &[]);
    assert_eq!(fs::read(target.join("f")).unwrap(), b"v2");
    let err = env.fails(&["snapshots"], 1);
    assert!(
        one_line(&err).contains(&key) && err.contains("is not the time its id"),
        "{err}"
    );
    let err = env.fails(&["prune", "media", "--keep-last", "1"], 1);
    assert!(err.contains(&key), "{err}");
    let records = fs::read_dir(Path::new(&env.repo).join("sets/media/snapshots")).unwrap();
    assert_eq!(records.count(), 3, "prune forgot nothing");

    // A record of a newer format is not read as if it were this one's.
    let newer = Path::new(&env.repo).join(format!("sets/media/snapshots/{}.json", ids[1]));
    edit_json(&newer, |record| record["format_version"] = 99.into());
    let err = env.fails(&["show", &ids[1]], 1);
    assert!(
        err.contains("format version 99, newer than this strongbox reads"),
        "{err}"
    );
}

/// Regression: serde_json holds a string whole before it can be refused, so a listing of
/// 73 KB compressed holding a 2 GiB path took 4 GB of memory in ls, restore and verify, and
/// aborted the process under a memory limit. A string past 64 KiB is refused as it is read.
#[test]
fn a_listing_holding_an_endless_string_is_refused_as_it_is_read() {
    let (env, record) = small_repo();
    let listing_key = object_key(&record, "listing");
    let mut listing = listing_json(&env, &record);
    listing["entries"][0]["path"] = "A".repeat(1 << 20).into();
    plant(
        &env,
        &record,
        "listing",
        &zstd(listing.to_string().as_bytes()),
    );

    let err = env.fails(&["ls", "media:latest"], 1);
    assert!(
        one_line(&err).contains(&listing_key) && err.contains("a string longer than 64 KiB"),
        "{err}"
    );
    let err = refused_restore(&env, "media:latest", &env.path("target"));
    assert!(err.contains("a string longer than 64 KiB"), "{err}");
    let out = env.run(&["verify", "media:latest", "--level", "deep", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("a string longer than 64 KiB"), "{report}");
}

/// Regression: `snapshots` printed a record's tags and `status` and `health` a journal's
/// error as they were stored, so an escape sequence planted in the repository cleared the
/// operator's screen or retitled the terminal.
#[test]
fn escape_sequences_stored_in_the_repository_are_printed_escaped() {
    let (env, record) = small_repo();
    let id = record["id"].as_str().unwrap();
    let root = Path::new(&env.repo);
    let record_path = root.join(format!("sets/media/snapshots/{id}.json"));
    edit_json(&record_path, |record| {
        record["tags"] = serde_json::json!(["t\u{1b}[2J\u{1b}]0;pwned\u{7}"]);
    });
    let runs = root.join("sets/media/runs");
    let run = fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
    edit_json(&run, |entry| {
        entry["status"] = "failed".into();
        entry["error"] = "boom\u{1b}[2J".into();
    });

    for args in [
        &["snapshots"][..],
        &["status"],
        &["health", "--max-disk-usage", "100"],
    ] {
        let out = env.run(args);
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
            "{args:?}: {shown}"
        );
        assert!(
            shown.contains("\\u{1b}[2J"),
            "{args:?} shows it escaped: {shown}"
        );
    }
}

/// Regression: a tag holding a newline split its row of `snapshots` in two, and one holding
/// `,` read as two tags there. Such tags are refused from the command line and the
/// configuration; one a record holds already is shown quoted.
#[test]
fn a_tag_that_would_split_its_row_is_refused_and_an_old_one_is_quoted() {
    let (env, record) = small_repo();
    let src = env.path("src");
    let src = src.to_str().unwrap();
    for (tag, said) in [("a,b", "holds ','"), ("two\nrows", "control character")] {
        // clap echoes the value as given, newline and all.
        let err = env.fails(&["backup", "files", "media", src, "--tag", tag], 2);
        assert!(err.contains(said), "{tag:?}: {err}");
    }
    let config = env.path("strongbox.toml");
    fs::write(
        &config,
        format!("[sets.media]\nsource = \"files\"\npath = \"{src}\"\ntags = [\"a,b\"]\n"),
    )
    .unwrap();
    let err = env.fails(
        &["--config", config.to_str().unwrap(), "backup", "media"],
        2,
    );
    assert!(
        one_line(&err).contains("tags: invalid tag \"a,b\""),
        "{err}"
    );
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 1);

    let id = record["id"].as_str().unwrap();
    edit_json(
        &Path::new(&env.repo).join(format!("sets/media/snapshots/{id}.json")),
        |record| record["tags"] = serde_json::json!(["two\nrows", "a,b", "c"]),
    );
    let out = env.run(&["snapshots"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(shown.lines().count(), 2, "a header and one row: {shown}");
    assert!(shown.contains(r#""two\nrows","a,b",c"#), "{shown}");
}

/// Regression: what the command line got wrong exited 1 when a library found it (exit 2 is
/// usage), a mistyped set for unlock or wal window exited 0 having done nothing, a tag
/// could be empty or given twice, and `backup SET` without a configuration said it "defines: ".
#[test]
fn command_line_mistakes_found_by_the_libraries_are_usage_errors_and_name_the_cause() {
    let (env, _) = small_repo();
    let src = env.path("src");
    let src = src.to_str().unwrap();
    let usage: &[(&[&str], &str)] = &[
        (&["backup", "files", &"a".repeat(101), src], "at most 100"),
        (&["prune", "media"], "keep nothing"),
        (&["restore", "media:latest", "--target", ""], "--target"),
        (&["key", "passwd"], "needs the key id"),
        (
            &["verify", "--all", "--level", "deep", "--budget", "0"],
            "--budget 0",
        ),
        (&["backup", "files", "media", src, "--tag", ""], "--tag"),
    ];
    for (args, said) in usage {
        let err = env.fails(args, 2);
        assert!(err.contains(said), "{args:?}: {err}");
    }
    let err = env.fails(&["backup", "media"], 1);
    assert!(
        err.contains("it defines none: was it given? --config FILE"),
        "{err}"
    );
    for args in [&["unlock", "mdia"][..], &["wal", "window", "mdia"]] {
        let err = env.fails(args, 1);
        assert!(
            one_line(&err).contains("no set \"mdia\" in the repository or the configuration"),
            "{args:?}: {err}"
        );
    }
    let record = env.backup(
        "media",
        Path::new(src),
        &["--tag", "b", "--tag", "a", "--tag", "b"],
    );
    assert_eq!(record["tags"], serde_json::json!(["b", "a"]));
}
