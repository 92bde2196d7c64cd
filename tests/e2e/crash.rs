//! The crash loop: backup, prune and restore killed with SIGKILL at 20 seeded random moments
//! each. After every kill the repository lists only complete snapshots, every one of them
//! verifies, the next command succeeds, and a restore target is either as it was or
//! complete.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use strongbox_test_support::Rng;

use crate::harness::{noise, tree, write, Env, Node};
use crate::interrupt::signal;

const SEED: u64 = 2026;
const ROUNDS: usize = 20;

/// Run `args` and SIGKILL it after `delay`; whether it was still running then.
fn killed(env: &Env, args: &[&str], delay: Duration) -> bool {
    let mut child = env
        .cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    if running {
        signal(&child, rustix::process::Signal::KILL);
    }
    child.wait().unwrap();
    running
}

/// Every snapshot listed is complete: the whole repository verifies at checksum level.
fn all_verify(env: &Env, after: &str) {
    let out = env.run(&["verify", "--all", "--level", "checksum", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("after {after}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(
        out.status.success() && report["ok"] == true,
        "after {after}: {report}"
    );
}

#[test]
fn kill_9_at_seeded_moments_never_leaves_a_half_snapshot_or_a_half_restored_target() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..24 {
        write(
            &src.join(format!("d{}/f{i}.bin", i % 4)),
            &noise(i, 256 << 10),
        );
    }
    let first = env.backup("media", &src, &["--tag", "golden"]);
    let first_id = first["id"].as_str().unwrap().to_string();
    let expected: BTreeMap<String, Node> = tree(&src);
    let target = env.path("restored/media");
    write(&target.join("before.txt"), b"what was there");
    let mut rng = Rng(SEED);
    let src_arg = src.display().to_string();
    let target_arg = target.display().to_string();
    // Kills that landed while the command ran: backup, prune, restore.
    let mut landed = [0; 3];
    // Killed restores that left the target as it was, and complete.
    let mut outcomes = [0; 2];
    // Each kill lands at a random moment of the command's usual run time, measured here.
    let backup = ["backup", "files", "media", src_arg.as_str(), "--full"];
    let prune = ["prune", "media", "--keep-last", "3", "--keep-tag", "golden"];
    let restore = [
        "restore",
        first_id.as_str(),
        "--target",
        target_arg.as_str(),
        "--force",
        "--no-keep-previous",
    ];
    let span = |args: &[&str]| {
        let started = std::time::Instant::now();
        let out = env.run(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        started.elapsed().as_millis() as u64 + 1
    };
    let spans = [span(&backup), span(&prune), span(&restore)];

    for round in 0..ROUNDS {
        // Change a few files, then a backup killed at a random moment.
        for _ in 0..3 {
            let i = rng.below(24);
            write(
                &src.join(format!("d{}/f{i}.bin", i % 4)),
                &noise(rng.next_u64(), 256 << 10),
            );
        }
        let delay = Duration::from_millis(rng.below(spans[0]));
        landed[0] += usize::from(killed(&env, &backup, delay));
        all_verify(
            &env,
            &format!("round {round}: a backup killed after {delay:?}"),
        );

        let delay = Duration::from_millis(rng.below(spans[1]));
        landed[1] += usize::from(killed(&env, &prune, delay));
        all_verify(
            &env,
            &format!("round {round}: a prune killed after {delay:?}"),
        );

        // The target holds something else each round, so "as it was" and "complete" differ.
        let _ = std::fs::remove_dir_all(&target);
        write(
            &target.join(format!("round-{round}.txt")),
            round.to_string().as_bytes(),
        );
        let current = tree(&target);
        let delay = Duration::from_millis(rng.below(spans[2]));
        landed[2] += usize::from(killed(&env, &restore, delay));
        let now = tree(&target);
        assert!(
            now == current || now == expected,
            "round {round}: a restore killed after {delay:?} left the target half-restored"
        );
        outcomes[usize::from(now == expected)] += 1;
    }

    eprintln!(
        "kills that landed mid-run of {ROUNDS}: backup {}, prune {}, restore {} \
         (the target as it was {}, complete {})",
        landed[0], landed[1], landed[2], outcomes[0], outcomes[1]
    );
    assert!(
        landed.iter().all(|&n| n >= ROUNDS / 4),
        "too few kills landed mid-run to mean anything: {landed:?}"
    );

    // The next commands succeed, and prune leaves no garbage of the killed runs behind.
    env.backup("media", &src, &[]);
    env.json(&["prune", "media", "--keep-last", "3", "--keep-tag", "golden"]);
    let plan = env.json(&[
        "prune",
        "media",
        "--keep-last",
        "3",
        "--keep-tag",
        "golden",
        "--dry-run",
    ]);
    assert_eq!(plan["deleted_objects"], 0, "{plan}");
    all_verify(&env, "the last prune");
    let restored = env.path("final");
    env.restore(&first_id, &restored, &[]);
    assert_eq!(tree(&restored), expected);
    // The next restore into the target clears the staging directories killed ones left (a
    // tree one had already replaced is kept as media.pre-restore-<time>, never deleted).
    env.restore(&first_id, &target, &["--force", "--no-keep-previous"]);
    assert_eq!(tree(&target), expected);
    let leftovers: Vec<String> = std::fs::read_dir(target.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "media" && !n.starts_with("media.pre-restore-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
