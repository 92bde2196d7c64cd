//! Files snapshots on a local repository: chains, metadata, restore options.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::harness::{assert_same_tree, names, noise, set_mtime, tree, write, Env};

/// A tree with everything the format must preserve.
fn varied_tree(root: &Path) {
    write(&root.join("avatars/1.png"), &noise(1, 300_000));
    write(
        &root.join("docs/report.txt"),
        "quarterly report\n".repeat(5000).as_bytes(),
    );
    write(&root.join("empty-file"), b"");
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    write(
        &root.join("ünïcødé/файл-文件.txt"),
        "unicode names\n".as_bytes(),
    );
    let long_name = format!("{}.txt", "long-name-".repeat(15));
    assert!(long_name.len() > 100);
    write(&root.join("docs").join(&long_name), b"long name");
    let deep: std::path::PathBuf = (0..40).map(|i| format!("level{i}")).collect();
    write(&root.join(&deep).join("deep.txt"), b"deep path");
    symlink("../avatars/1.png", root.join("docs/link-to-avatar")).unwrap();
    symlink("/nonexistent/target", root.join("dangling")).unwrap();
    let private = root.join("docs/private.key");
    write(&private, b"secret-ish");
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).unwrap();
    let script = root.join("run.sh");
    write(&script, b"#!/bin/sh\necho hi\n");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(root.join("empty-dir"), fs::Permissions::from_mode(0o750)).unwrap();
    set_mtime(&root.join("docs/report.txt"), 1_500_000_000, 123_456_789);
    set_mtime(&root.join("docs/link-to-avatar"), 1_400_000_000, 5);
}

#[test]
fn every_snapshot_of_a_full_incremental_differential_chain_restores_exactly() {
    let env = Env::new();
    let src = env.path("src");
    varied_tree(&src);
    let mut states = Vec::new();

    let full = env.backup("media", &src, &["--tag", "first"]);
    assert_eq!(full["kind"], "full");
    assert_eq!(full["source"], "files");
    assert_eq!(full["parent"], serde_json::Value::Null);
    assert_eq!(full["tags"], serde_json::json!(["first"]));
    assert!(full["time"].as_str().unwrap().ends_with('Z'));
    for object in full["objects"].as_array().unwrap() {
        assert_eq!(object["sha256"].as_str().unwrap().len(), 64);
        let stored =
            fs::metadata(Path::new(&env.repo).join(object["key"].as_str().unwrap())).unwrap();
        assert_eq!(stored.len(), object["size"].as_u64().unwrap());
    }
    states.push((full["id"].as_str().unwrap().to_string(), tree(&src)));

    // Incremental: change, add, delete, chmod, replace a file by a directory, retarget a link.
    write(&src.join("docs/report.txt"), b"rewritten report");
    write(&src.join("avatars/2.png"), &noise(2, 100_000));
    fs::remove_file(src.join("empty-file")).unwrap();
    fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::remove_file(src.join("dangling")).unwrap();
    write(&src.join("dangling/now-a-dir.txt"), b"was a link");
    fs::remove_file(src.join("docs/link-to-avatar")).unwrap();
    symlink("../avatars/2.png", src.join("docs/link-to-avatar")).unwrap();
    let inc = env.backup("media", &src, &[]);
    assert_eq!(inc["kind"], "incremental");
    assert_eq!(inc["parent"], full["id"]);
    let stats = &inc["stats"];
    assert_eq!(stats["deleted"], 1, "{stats}");
    // Unchanged files are not read again: only the rewritten, new and chmod-ed ones were.
    assert_eq!(stats["bytes_read"], 16 + 100_000 + 10 + 18, "{stats}");
    assert!(stats["unchanged"].as_u64().unwrap() > 40, "{stats}");
    states.push((inc["id"].as_str().unwrap().to_string(), tree(&src)));

    // Differential: against the full, so it re-stores everything changed since then.
    fs::remove_dir_all(src.join("ünïcødé")).unwrap();
    write(&src.join("avatars/1.png"), &noise(3, 300_000));
    let diff = env.backup("media", &src, &["--differential"]);
    assert_eq!(diff["kind"], "differential");
    assert_eq!(diff["parent"], full["id"]);
    states.push((diff["id"].as_str().unwrap().to_string(), tree(&src)));

    // An incremental on top of the differential.
    write(&src.join("docs/new.txt"), b"after the differential");
    let inc2 = env.backup("media", &src, &["--incremental"]);
    assert_eq!(inc2["parent"], diff["id"]);
    states.push((inc2["id"].as_str().unwrap().to_string(), tree(&src)));

    assert_eq!(
        env.snapshot_ids(),
        states.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>()
    );
    for (i, (id, expected)) in states.iter().enumerate() {
        let target = env.path(&format!("restore-{i}"));
        let out = env.restore(id, &target, &[]);
        assert_eq!(out["plan"]["snapshot"], id.as_str());
        assert_same_tree(expected, &tree(&target));
    }
    let report = env.json(&["verify", "--all", "--level", "deep"]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["snapshots"].as_array().unwrap().len(), 4);
    for snapshot in report["snapshots"].as_array().unwrap() {
        let checks: Vec<&str> = snapshot["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(checks, ["objects", "listing", "checksum", "content"]);
    }
}

#[test]
fn ls_json_lists_the_tree_with_digests() {
    let env = Env::new();
    let src = env.path("src");
    varied_tree(&src);
    env.backup("media", &src, &[]);
    let rows = env.json(&["ls", "media:latest"]);
    let rows = rows.as_array().unwrap();
    let expected = tree(&src);
    assert_eq!(rows.len(), expected.len());
    for row in rows {
        let path = row["path"].as_str().unwrap();
        let node = &expected[path];
        assert_eq!(row["type"], node.kind, "{path}");
        assert_eq!(row["size"], node.size, "{path}");
        assert_eq!(row["mtime"], node.mtime_ns, "{path}");
        if node.kind == "file" {
            assert_eq!(row["sha256"].as_str(), node.content.as_deref(), "{path}");
            assert_eq!(row["mode"], node.mode, "{path}");
        }
    }
}

/// Regression: owners were not recorded, so a restore by root gave every file to root (a
/// web server's uploads unreadable to it) and a user's setuid file came back setuid root.
#[test]
fn root_restores_owners_and_setuid_only_with_its_owner() {
    if !rustix::process::geteuid().is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs the tests as root"
        );
        eprintln!("skipped: owners are given back by root alone");
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("uploads/a.jpg"), b"jpeg");
    write(&src.join("tool"), b"#!/bin/sh\n");
    symlink("tool", src.join("link")).unwrap();
    // (path, uid, gid): an id past ustar's seven octal digits goes through PAX.
    let owned = [
        ("uploads", 33, 33),
        ("uploads/a.jpg", 33, 33),
        ("tool", 65534, 65534),
        ("link", 5_000_000, 4_000_000),
    ];
    for (path, uid, gid) in owned {
        let (uid, gid) = (
            rustix::fs::Uid::from_raw(uid),
            rustix::fs::Gid::from_raw(gid),
        );
        let flags = rustix::fs::AtFlags::SYMLINK_NOFOLLOW;
        rustix::fs::chownat(rustix::fs::CWD, src.join(path), Some(uid), Some(gid), flags).unwrap();
    }
    fs::set_permissions(src.join("tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    let record = env.backup("media", &src, &[]);
    let rows = env.json(&["ls", "media:latest"]);
    let row = |path: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"] == path)
            .unwrap()
    };
    assert_eq!(
        (&row("tool")["uid"], &row("tool")["gid"]),
        (&65534.into(), &65534.into())
    );

    let target = env.path("restored");
    env.restore("media:latest", &target, &[]);
    for (path, uid, gid) in owned {
        let meta = fs::symlink_metadata(target.join(path)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{path}");
    }
    let mode = fs::metadata(target.join("tool")).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o4755, "setuid kept with its owner");

    // GNU tar alone restores the same owners from the archive.
    let by_tar = env.path("by-tar");
    fs::create_dir_all(&by_tar).unwrap();
    let id = record["id"].as_str().unwrap();
    let archive = format!("{}/sets/media/data/{id}.tar.zst", env.repo);
    let untar = format!("zstd -dc {archive} | tar -x -C {}", by_tar.display());
    assert!(std::process::Command::new("sh")
        .args(["-c", &untar])
        .status()
        .unwrap()
        .success());
    for (path, uid, gid) in owned {
        let meta = fs::symlink_metadata(by_tar.join(path)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "tar: {path}");
    }
}

/// Regression: the listing holds what lies inside the backed-up directory, not the
/// directory itself, so the target came back 0755 and root's whatever the source was: a
/// service's private tree (0750, its own) opened to every user. The record keeps it now.
#[test]
fn the_target_gets_the_backed_up_directorys_mode_owner_and_time() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("private/key"), b"k");
    fs::set_permissions(&src, fs::Permissions::from_mode(0o2750)).unwrap();
    let root = rustix::process::geteuid().is_root();
    if root {
        let (uid, gid) = (rustix::fs::Uid::from_raw(33), rustix::fs::Gid::from_raw(44));
        rustix::fs::chown(&src, Some(uid), Some(gid)).unwrap();
        // chown cleared setgid on some file systems; the source is what it is after it.
        fs::set_permissions(&src, fs::Permissions::from_mode(0o2750)).unwrap();
    }
    set_mtime(&src, 1_500_000_000, 123);
    let record = env.backup("media", &src, &[]);
    assert_eq!(
        record["stats"]["root"]["mode"], 0o2750,
        "the record keeps the directory"
    );

    // Into a new target, and into an empty one made beforehand with another mode.
    let made = env.path("made");
    fs::create_dir_all(&made).unwrap();
    fs::set_permissions(&made, fs::Permissions::from_mode(0o777)).unwrap();
    for target in [env.path("restored"), made] {
        env.restore("media:latest", &target, &[]);
        let meta = fs::metadata(&target).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o2750, "{}", target.display());
        assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_500_000_000, 123));
        if root {
            assert_eq!((meta.uid(), meta.gid()), (33, 44));
        }
        assert_eq!(fs::read(target.join("private/key")).unwrap(), b"k");
    }
}

/// Regression: run by anyone but root, a restore with --no-keep-previous left the replaced
/// tree behind in a hidden directory when it held a read-only directory (revived by the
/// next restore as a kept tree), and a restore test left its scratch tree.
#[test]
fn read_only_directories_do_not_keep_a_user_from_removing_what_it_restored() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("ro/sub/f.txt"), b"data");
    for dir in ["ro/sub", "ro"] {
        fs::set_permissions(src.join(dir), fs::Permissions::from_mode(0o555)).unwrap();
    }
    let work = env.path("work");
    crate::harness::unprivileged_dir(&work);
    let run = |args: &[&str]| {
        let out = crate::harness::unprivileged(&env)
            .args(["--repo", &env.repo])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["backup", "files", "media", src.to_str().unwrap()]);
    let target = work.join("target").display().to_string();
    run(&["restore", "media:latest", "--target", &target]);
    run(&[
        "restore",
        "media:latest",
        "--target",
        &target,
        "--force",
        "--no-keep-previous",
    ]);
    assert_eq!(names(&work), ["target"]);
    assert_eq!(tree(Path::new(&target)), tree(&src));
    let scratch = work.join("scratch");
    crate::harness::unprivileged_dir(&scratch);
    let scratch_arg = scratch.display().to_string();
    run(&[
        "verify",
        "media:latest",
        "--level",
        "restore",
        "--scratch-dir",
        &scratch_arg,
    ]);
    assert!(names(&scratch).is_empty(), "{:?}", names(&scratch));
}

/// Regression: a restored root its owner may not read (0300, as root backed it up) kept the
/// user who restored it from removing it when a forced restore replaced it: the replaced
/// tree stayed beside the target, hidden.
#[test]
fn a_replaced_tree_whose_root_its_owner_cannot_read_is_removed() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: root backs up the tree that nobody restores");
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f.txt"), b"data");
    fs::set_permissions(&src, fs::Permissions::from_mode(0o300)).unwrap();
    env.backup("media", &src, &[]);
    let chown = std::process::Command::new("chown")
        .args(["-R", "nobody", &env.repo])
        .status()
        .unwrap();
    assert!(chown.success());
    let work = env.path("work");
    crate::harness::unprivileged_dir(&work);
    let target = work.join("target").display().to_string();
    for extra in [&[][..], &["--force", "--no-keep-previous"]] {
        let out = crate::harness::unprivileged(&env)
            .args([
                "--repo",
                &env.repo,
                "restore",
                "media:latest",
                "--target",
                &target,
            ])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{extra:?}: {stderr}");
        assert!(!stderr.contains("could not remove"), "{extra:?}: {stderr}");
    }
    assert_eq!(names(&work), ["target"]);
}

/// 3,000 files: `ls` prints far more than a pipe holds.
fn many_files(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    for i in 0..3000 {
        write(&src.join(format!("d{}/file-{i:05}.txt", i % 10)), b"x");
    }
    src
}

#[test]
fn ls_into_a_pipe_closed_after_the_first_line_exits_0() {
    use std::io::BufRead;
    let env = Env::new();
    env.backup("media", &many_files(&env), &[]);
    let mut child = crate::harness::spawn(&env, &["ls", "media:latest"]);
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first.starts_with('d') && first.trim_end().ends_with(" d0"),
        "{first}"
    );
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ls_of_a_listing_damaged_at_its_end_fails_naming_it_in_every_output_mode() {
    let env = Env::new();
    let record = env.backup("media", &many_files(&env), &[]);
    let key = crate::harness::object_key(&record, "listing");
    let stored = Path::new(&env.repo).join(&key);
    let mut bytes = fs::read(&stored).unwrap();
    *bytes.last_mut().unwrap() ^= 0x55;
    fs::write(&stored, bytes).unwrap();
    for args in [
        &["ls", "media:latest"][..],
        &["ls", "media:latest", "--json"],
        &["-q", "ls", "media:latest"],
    ] {
        let err = env.fails(args, 1);
        assert!(err.contains(&key), "{args:?}: {err}");
    }
}

#[test]
fn sparse_file_larger_than_8_gib_round_trips_as_holes() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let big = src.join("disk.img");
    let size: u64 = 8 * 1024 * 1024 * 1024 + 4096 + 17;
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::File::create(&big).unwrap();
        f.write_all(b"head of the image").unwrap();
        f.seek(SeekFrom::Start(5 * 1024 * 1024 * 1024)).unwrap();
        f.write_all(&noise(9, 1_000_000)).unwrap();
        f.set_len(size).unwrap();
        f.seek(SeekFrom::Start(size - 5)).unwrap();
        f.write_all(b"tail!").unwrap();
    }
    let record = env.backup("big", &src, &[]);
    assert_eq!(record["stats"]["bytes"], size);
    let target = env.path("restored");
    env.restore("big:latest", &target, &[]);
    let restored = target.join("disk.img");
    let meta = fs::metadata(&restored).unwrap();
    assert_eq!(meta.len(), size);
    assert_eq!(tree(&src), tree(&target));
    // Written back with holes: far less allocated than its size.
    assert!(
        meta.blocks() * 512 < 64 * 1024 * 1024,
        "{} bytes allocated",
        meta.blocks() * 512
    );
}

#[test]
fn dry_run_plans_and_writes_nothing() {
    let env = Env::new();
    let src = env.path("src");
    varied_tree(&src);
    let full = env.backup("media", &src, &[]);
    write(&src.join("avatars/3.png"), b"new");
    env.backup("media", &src, &[]);
    let target = env.path("target");
    let plan = env.restore("media:latest", &target, &["--dry-run"]);
    let expected = tree(&src);
    let files = expected.values().filter(|n| n.kind == "file").count();
    assert_eq!(plan["files"], files);
    let holders: Vec<&str> = plan["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(holders.len(), 2);
    assert_eq!(holders[0], full["id"].as_str().unwrap());
    assert!(!target.exists(), "dry run created the target");
    assert_eq!(names(env.dir.path()), ["repo", "src"]);

    // A dry run refuses what the restore would, and says what the restore would replace;
    // it used to plan over a live tree without --force.
    write(&target.join("live.txt"), b"live");
    let before = tree(&target);
    let args = [
        "restore",
        "media:latest",
        "--target",
        target.to_str().unwrap(),
        "--dry-run",
    ];
    let err = env.fails(&args, 1);
    assert!(err.contains("is not empty; add --force"), "{err}");
    for (extra, said) in [
        (&[][..], "replaced: the current content is kept as"),
        (
            &["--no-keep-previous"],
            "replaced: deleted (--no-keep-previous)",
        ),
    ] {
        let out = env.run(&[&args[..], &["--force"], extra].concat());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains(said), "{text}");
    }
    assert_eq!(tree(&target), before);
}

#[test]
fn include_restores_a_subtree_and_exclude_skips_at_backup() {
    let env = Env::new();
    let src = env.path("src");
    varied_tree(&src);
    write(&src.join("cache/tmp.bin"), b"skip me");
    write(&src.join("docs/draft.tmp"), b"skip me too");
    env.backup("media", &src, &["--exclude", "cache", "--exclude", "*.tmp"]);
    let listed: Vec<String> = env
        .json(&["ls", "media:latest"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !listed
            .iter()
            .any(|p| p.starts_with("cache") || p.ends_with(".tmp")),
        "{listed:?}"
    );

    let target = env.path("part");
    env.restore("media:latest", &target, &["--include", "avatars"]);
    assert_eq!(names(&target), ["avatars"]);
    assert_eq!(
        fs::read(target.join("avatars/1.png")).unwrap(),
        fs::read(src.join("avatars/1.png")).unwrap()
    );
}

#[test]
fn gzip_and_uncompressed_snapshots_restore_and_rehash_reads_everything() {
    for codec in ["gzip:1", "none", "zstd:19"] {
        let env = Env::new();
        let src = env.path("src");
        varied_tree(&src);
        let record = env.backup("media", &src, &["--compression", codec]);
        assert_eq!(record["compression"], codec);
        let again = env.backup("media", &src, &["--rehash", "--compression", codec]);
        assert_eq!(
            again["stats"]["bytes_read"], record["stats"]["bytes_read"],
            "{codec}"
        );
        let target = env.path("t");
        env.restore("media:latest", &target, &[]);
        assert_same_tree(&tree(&src), &tree(&target));
    }
}

#[test]
fn restore_over_a_non_empty_target_needs_force_and_keeps_the_previous_tree() {
    let env = Env::new();
    let src = env.path("src");
    varied_tree(&src);
    env.backup("media", &src, &[]);
    let target = env.path("live");
    write(&target.join("old.txt"), b"old content");
    let before = tree(&target);
    let err = env.fails(
        &[
            "restore",
            "media:latest",
            "--target",
            target.to_str().unwrap(),
        ],
        1,
    );
    assert!(
        err.contains("not empty") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(tree(&target), before);

    let out = env.restore("media:latest", &target, &["--force"]);
    assert_same_tree(&tree(&src), &tree(&target));
    let previous = out["previous"].as_str().unwrap();
    assert!(previous.contains("live.pre-restore-"), "{previous}");
    assert_eq!(tree(Path::new(previous)), before);

    env.restore("media:latest", &target, &["--force", "--no-keep-previous"]);
    let leftovers: Vec<String> = names(env.dir.path())
        .into_iter()
        .filter(|n| n.starts_with("live") || n.contains("strongbox-restore"))
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "only live and the first pre-restore copy: {leftovers:?}"
    );
}

#[test]
fn run_journal_records_every_attempt_failed_ones_too() {
    let env = Env::new();
    let src = env.path("src");
    varied_tree(&src);
    env.backup("media", &src, &[]);
    env.fails(
        &[
            "backup",
            "files",
            "media",
            env.path("missing").to_str().unwrap(),
        ],
        1,
    );
    let runs = Path::new(&env.repo).join("sets/media/runs");
    let mut statuses: Vec<(String, String)> = fs::read_dir(&runs)
        .unwrap()
        .map(|e| {
            let v: serde_json::Value =
                serde_json::from_slice(&fs::read(e.unwrap().path()).unwrap()).unwrap();
            (
                v["operation"].as_str().unwrap().to_string(),
                v["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            ("backup".to_string(), "failed".to_string()),
            ("backup".to_string(), "ok".to_string())
        ]
    );
}

#[test]
fn repository_files_are_private_to_their_owner() {
    let env = Env::new();
    let src = env.path("src");
    varied_tree(&src);
    let record = env.backup("media", &src, &[]);
    for key in [
        "strongbox.json".to_string(),
        crate::harness::object_key(&record, "archive"),
    ] {
        let mode = fs::metadata(Path::new(&env.repo).join(&key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{key} has mode {mode:o}");
    }
}
