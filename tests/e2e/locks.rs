//! Locks and `unlock`: a lock of another host is refused until `unlock --force` removes it
//! (journalled); a lock of a running process on this host is never removed.

use std::fs;
use std::path::Path;

use crate::harness::{write, Env};

fn plant_lock(env: &Env, host: &str, pid: u32) -> std::path::PathBuf {
    crate::harness::plant_lock(env, "backup", host, pid, "2026-11-30T02:00:00Z")
}

#[test]
fn a_lock_of_another_host_holds_until_unlock_force_removes_it_with_a_journal_entry() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"one");
    env.backup("media", &src, &[]);
    let lock = plant_lock(&env, "db-host-2", 4242);
    let src_arg = src.display().to_string();

    let err = env.fails(&["backup", "files", "media", &src_arg], 1);
    assert!(err.contains("locked by backup on host db-host-2"), "{err}");
    let err = env.fails(&["unlock", "media"], 1);
    assert!(
        err.contains("cannot tell whether it still runs") && err.contains("unlock --force"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(lock.exists(), "refused: the lock stays");

    let removed = env.json(&["unlock", "media", "--force"]);
    assert_eq!(removed["removed"]["host"], "db-host-2");
    assert!(!lock.exists());
    let runs = Path::new(&env.repo).join("sets/media/runs");
    let entry = fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("-unlock-"))
        .expect("an unlock entry in the journal");
    let entry: serde_json::Value = serde_json::from_slice(&fs::read(entry).unwrap()).unwrap();
    assert_eq!(entry["status"], "ok");
    assert!(
        entry["detail"]
            .as_str()
            .unwrap()
            .contains("pid 4242 on host db-host-2"),
        "{entry}"
    );
    env.backup("media", &src, &[]);

    let none = env.json(&["unlock", "media"]);
    assert!(none["removed"].is_null(), "{none}");
}

#[test]
fn a_lock_of_a_running_process_on_this_host_is_never_removed() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"one");
    env.backup("media", &src, &[]);
    let host = crate::harness::host();
    let now = chrono::Utc::now().to_rfc3339();
    let lock = crate::harness::plant_lock(&env, "backup", &host, std::process::id(), &now);
    let err = env.fails(&["unlock", "media", "--force"], 1);
    assert!(err.contains("running on this host"), "{err}");
    assert!(lock.exists());
    // A gone process's lock needs no --force.
    let lock = plant_lock(&env, &host, u32::MAX - 1);
    let removed = env.json(&["unlock", "media"]);
    assert_eq!(removed["removed"]["pid"], u32::MAX - 1);
    assert!(!lock.exists());
}

/// An unreadable lock fails every backup of its set before a journal entry is made, so
/// `health` used to stay ok while no backup ran.
#[test]
fn an_unreadable_lock_is_critical_in_health_until_unlock_force_removes_it() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), b"one");
    env.backup("media", &src, &[]);
    let lock = Path::new(&env.repo).join("locks/media.json");
    write(&lock, b"garbage");
    let src_arg = src.display().to_string();

    let err = env.fails(&["backup", "files", "media", &src_arg], 1);
    assert!(
        err.contains("locks/media.json: unreadable lock")
            && err.contains("`strongbox unlock media --force` removes it"),
        "{err}"
    );
    let health = |code| {
        let out = env.run(&["health", "--json", "--max-disk-usage", "100"]);
        assert_eq!(out.status.code(), Some(code));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let lock = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "lock")
            .cloned()
            .unwrap();
        (
            lock["status"].as_str().unwrap().to_string(),
            lock["detail"].to_string(),
        )
    };
    let (status, detail) = health(2);
    assert_eq!(status, "critical");
    assert!(
        detail.contains("locks/media.json: unreadable lock"),
        "{detail}"
    );

    let err = env.fails(&["unlock", "media"], 1);
    assert!(err.contains("does not read"), "{err}");
    assert!(lock.exists(), "refused: the lock stays");
    env.json(&["unlock", "media", "--force"]);
    assert!(!lock.exists());
    env.backup("media", &src, &[]);
    assert_eq!(health(0).0, "ok");
}
