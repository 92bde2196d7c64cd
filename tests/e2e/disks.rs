//! Full disks, on small tmpfs file systems the tests mount (skipped, with the reason, where
//! the machine forbids mounting): nothing is half-written, and the next run succeeds.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{noise, tree, write, Env};

/// A tmpfs of `size` at a directory of `env`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(env: &Env, rel: &str, size: &str) -> Option<Tmpfs> {
        let dir = env.path(rel);
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .output()
            .unwrap();
        if !out.status.success() {
            // Mounting is a privilege of the machine, not a service scripts/test.sh starts:
            // skipped even under CI=true.
            eprintln!(
                "skipping: cannot mount a tmpfs ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs(dir))
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn files_below(dir: &Path) -> Vec<String> {
    tree(dir)
        .into_iter()
        .filter(|(_, n)| n.kind == "file")
        .map(|(p, _)| p)
        .collect()
}

#[test]
fn a_full_repository_disk_fails_the_backup_cleanly_and_the_next_one_succeeds() {
    let env = Env::new();
    let Some(disk) = Tmpfs::mount(&env, "disk", "1m") else {
        return;
    };
    let repo = disk.0.join("repo").display().to_string();
    let src = env.path("src");
    for i in 0..3 {
        write(&src.join(format!("f{i}.bin")), &noise(i, 1 << 20));
    }
    let src_arg = src.display().to_string();
    let backup = |args: &[&str]| {
        Command::new(crate::harness::bin())
            .args(["--repo", &repo])
            .args(args)
            .output()
            .unwrap()
    };
    let out = backup(&["backup", "files", "media", &src_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.contains("error")).count(),
        1,
        "{stderr}"
    );
    let (runs, left): (Vec<String>, Vec<String>) = files_below(&disk.0.join("repo"))
        .into_iter()
        .filter(|p| !p.starts_with("strongbox.json"))
        .partition(|p| p.contains("/runs/"));
    assert!(
        left.is_empty(),
        "no record, no object, no staging file: {left:?}"
    );
    // The failure is journalled: the failed upload's space is free by then.
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(disk.0.join("repo").join(&runs[0])).unwrap())
            .unwrap();
    assert_eq!(run["status"], "failed", "{run}");

    disk.resize("16m");
    let out = backup(&["backup", "files", "media", &src_arg, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = backup(&["verify", "--all", "--level", "deep"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_restore_that_would_not_fit_is_refused_with_the_numbers_and_changes_nothing() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..3 {
        write(&src.join(format!("f{i}.bin")), &noise(i, 1 << 20));
    }
    env.backup("media", &src, &[]);
    let Some(disk) = Tmpfs::mount(&env, "disk", "2m") else {
        return;
    };
    let target = disk.0.join("media");
    write(&target.join("current.txt"), b"what is there now");
    let before = tree(&disk.0);
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
    assert!(
        err.contains("needs 3.0 MiB")
            && err.contains("free")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(
        tree(&disk.0),
        before,
        "the target and its file system as they were"
    );
}

#[test]
fn a_restore_target_filling_up_midway_leaves_the_target_as_it_was_and_no_staging() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..100 {
        write(&src.join(format!("d{}/f{i}.txt", i % 4)), &noise(i, 100));
    }
    env.backup("media", &src, &[]);
    // Bytes to spare, so the free-space check passes; too few inodes for 100 files, so the
    // file system fills up in the middle of writing them.
    let Some(disk) = Tmpfs::mount(&env, "disk", "16m,nr_inodes=40") else {
        return;
    };
    let target = disk.0.join("media");
    write(&target.join("current.txt"), b"what is there now");
    let before = tree(&disk.0);
    let restore = [
        "restore",
        "media:latest",
        "--target",
        target.to_str().unwrap(),
        "--force",
    ];
    let err = env.fails(&restore, 1);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("No space left on device") && err.contains("not changed"),
        "{err}"
    );
    assert_eq!(
        tree(&disk.0),
        before,
        "the target as it was, and no staging directory beside it"
    );

    // Room again: the same restore succeeds.
    disk.resize("16m,nr_inodes=1000");
    env.restore("media:latest", &target, &["--force", "--no-keep-previous"]);
    crate::harness::assert_same_tree(&tree(&src), &tree(&target));
}
