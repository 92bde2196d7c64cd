//! Kills, interrupts and races: a crash leaves no snapshot, a failed restore no change.

use std::fs;
use std::path::Path;
use std::process::Child;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::harness::{assert_same_tree, big_tree, names, spawn, tree, write, Env};

/// Wait until `ready` holds (or fail after 60 s).
pub(crate) fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(5));
    }
}

pub(crate) fn signal(child: &Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

/// Any data object (or partial upload) present in the set's data directory.
fn data_started(repo: &str, set: &str) -> bool {
    let dir = Path::new(repo).join("sets").join(set).join("data");
    fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

/// A backup of `src` as the set `media`, at zstd's slowest level: slow enough to be caught
/// midway.
pub(crate) fn slow_backup_args(src: &Path) -> [&str; 6] {
    [
        "backup",
        "files",
        "media",
        src.to_str().unwrap(),
        "--compression",
        "zstd:19",
    ]
}

/// A repository, a 192 MiB source tree, and a slow backup of it caught writing data.
fn backup_in_progress() -> (Env, std::path::PathBuf, Child) {
    let env = Env::new();
    let src = env.path("src");
    big_tree(&src, 24, 8 << 20);
    env.json(&["init"]);
    let child = spawn(&env, &slow_backup_args(&src));
    wait_for("the backup to start writing", || {
        data_started(&env.repo, "media")
    });
    (env, src, child)
}

#[test]
fn a_backup_killed_midway_leaves_no_snapshot_and_the_next_one_succeeds() {
    let (env, src, child) = backup_in_progress();
    signal(&child, rustix::process::Signal::KILL);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        env.snapshot_ids().is_empty(),
        "a killed backup left a snapshot"
    );
    assert!(
        Path::new(&env.repo).join("locks/media.json").exists(),
        "the dead process's lock stays"
    );

    let record = env.backup("media", &src, &[]);
    assert_eq!(record["kind"], "full");
    let target = env.path("t");
    env.restore("media:latest", &target, &[]);
    assert_same_tree(&tree(&src), &tree(&target));
}

/// Ctrl-C, or SIGTERM from a service manager, stops a backup cleanly with the shell's exit
/// status for an interrupted command (it was 1, as for a failure).
#[test]
fn ctrl_c_or_sigterm_stops_a_backup_cleanly_with_130() {
    for signalled in [rustix::process::Signal::INT, rustix::process::Signal::TERM] {
        let (env, _src, child) = backup_in_progress();
        signal(&child, signalled);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{signalled:?}: {stderr}");
        assert!(stderr.contains("interrupted"), "{stderr}");
        assert!(env.snapshot_ids().is_empty());
        assert!(
            !Path::new(&env.repo).join("locks/media.json").exists(),
            "lock not released"
        );
        let data = Path::new(&env.repo).join("sets/media/data");
        let left: Vec<String> = names(&data);
        assert!(left.is_empty(), "aborted upload left {left:?}");
    }
}

#[test]
fn ctrl_c_during_a_restore_leaves_the_target_as_it_was() {
    let env = Env::new();
    let src = env.path("src");
    big_tree(&src, 24, 8 << 20);
    env.backup("media", &src, &[]);
    let target = env.path("live");
    write(&target.join("current.txt"), b"the live tree");
    let before = tree(&target);
    let child = spawn(
        &env,
        &[
            "restore",
            "media:latest",
            "--target",
            target.to_str().unwrap(),
            "--force",
        ],
    );
    wait_for("the staging directory", || {
        names(env.dir.path())
            .iter()
            .any(|n| n.contains("strongbox-restore"))
    });
    sleep(Duration::from_millis(50));
    signal(&child, rustix::process::Signal::INT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tree(&target), before);
    assert_eq!(names(env.dir.path()), ["live", "repo", "src"]);
}

#[test]
fn a_second_backup_racing_the_first_is_refused_with_the_holder_named() {
    let env = Env::new();
    let src = env.path("src");
    big_tree(&src, 24, 8 << 20);
    env.json(&["init"]);
    let first = spawn(
        &env,
        &[
            "backup",
            "files",
            "media",
            src.to_str().unwrap(),
            "--compression",
            "zstd:19",
        ],
    );
    let lock = Path::new(&env.repo).join("locks/media.json");
    wait_for("the first backup's lock", || lock.exists());
    let err = env.fails(&["backup", "files", "media", src.to_str().unwrap()], 1);
    assert!(err.contains(&format!("(pid {})", first.id())), "{err}");
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.snapshot_ids().len(), 1);
}

#[test]
fn a_file_growing_while_it_is_read_is_stored_as_read_with_a_warning() {
    let env = Env::new();
    let src = env.path("src");
    big_tree(&src, 1, 32 << 20);
    let growing = src.join("d0/f0.bin");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, growing) = (stop.clone(), growing.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut file = fs::OpenOptions::new().append(true).open(growing).unwrap();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                file.write_all(b"appended while read\n").unwrap();
                sleep(Duration::from_millis(2));
            }
        })
    };
    let record = env.backup("media", &src, &[]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    assert_eq!(record["warnings"][0]["path"], "d0/f0.bin", "{record}");
    assert!(record["warnings"][0]["message"]
        .as_str()
        .unwrap()
        .contains("changed while being read"));
    assert!(record["errors"].as_array().unwrap().is_empty());
    // What was stored is the file as it was read — the size the scan saw — and restores
    // with its digest checked.
    let listed = env.json(&["ls", "media:latest"]);
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "d0/f0.bin")
        .unwrap();
    let target = env.path("t");
    env.restore("media:latest", &target, &[]);
    let restored = fs::read(target.join("d0/f0.bin")).unwrap();
    assert_eq!(restored.len() as u64, entry["size"].as_u64().unwrap());
    assert!(restored[..32 << 20] == crate::harness::noise(1, 32 << 20)[..]);
}
