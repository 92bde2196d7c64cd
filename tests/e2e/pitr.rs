//! Point-in-time recovery end to end, on a throwaway cluster: WAL archived by `wal push` as
//! the server's archive_command, a base backup, rows in two batches around a time T, and
//! restores to T and to the latest WAL that a server then starts from.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use strongbox_test_support::{ClusterDir, Server};

use crate::harness::{bin, named_check, service, succeeded};

/// Where the set's repository is: a local directory the server's user owns, or an
/// encrypted one on S3 (the server's archive and restore commands find the identity file
/// through STRONGBOX_IDENTITY in its environment).
enum Storage {
    Local,
    S3 { bucket: String, root: String },
}

struct Pitr {
    dir: ClusterDir,
    strongbox: std::path::PathBuf,
    repo: String,
    env: Vec<(String, String)>,
    primary: Server,
}

impl Pitr {
    fn new(storage: &Storage) -> Option<Pitr> {
        let dir = ClusterDir::new()?;
        let strongbox = dir.install(&bin());
        let repo = match storage {
            Storage::Local => dir.mkdir("repo").display().to_string(),
            Storage::S3 { bucket, .. } => {
                format!("s3://{bucket}/{}", strongbox_test_support::unique("pitr"))
            }
        };
        let mut env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .collect();
        let mut init_args = vec!["--repo".to_string(), repo.clone(), "init".to_string()];
        if let Storage::S3 { .. } = storage {
            let identity = dir.path("identity.txt");
            let made = dir
                .command("age-keygen")
                .arg("-o")
                .arg(&identity)
                .output()
                .unwrap();
            succeeded_quietly(&made);
            let recipient = dir
                .command("age-keygen")
                .arg("-y")
                .arg(&identity)
                .output()
                .unwrap();
            let recipient = String::from_utf8(recipient.stdout)
                .unwrap()
                .trim()
                .to_string();
            init_args.extend([
                "--encrypt".to_string(),
                "--recipient".to_string(),
                recipient,
            ]);
            env.push((
                "STRONGBOX_IDENTITY".to_string(),
                identity.display().to_string(),
            ));
        }
        let mut primary = dir.init(
            "primary",
            &format!(
                "\nwal_level = replica\narchive_mode = on\n\
                 archive_command = '{} --repo {repo} -q wal push maindb %p'\n",
                strongbox.display()
            ),
        );
        let env_refs: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let init = dir
            .command(&strongbox)
            .args(&init_args)
            .envs(env_refs.iter().copied())
            .output()
            .unwrap();
        succeeded_quietly(&init);
        primary.start(&env_refs, "");
        Some(Pitr {
            dir,
            strongbox,
            repo,
            env,
            primary,
        })
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// `strongbox --repo <repo> <args>` as the cluster's user.
    fn run(&self, args: &[&str]) -> Output {
        self.dir
            .command(&self.strongbox)
            .arg("--repo")
            .arg(&self.repo)
            .args(args)
            .envs(self.env())
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        succeeded(&self.run(&all))
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?} should fail: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        stderr
    }

    /// Close the current segment and wait until the window's last commit is at or after
    /// `after` (the segment holding it is archived).
    fn archive_until(&self, after: DateTime<Utc>) -> Value {
        self.primary.psql("SELECT pg_switch_wal()");
        let started = Instant::now();
        loop {
            let window = self.json(&["wal", "window", "maindb"]);
            let latest = window["timelines"][0]["latest"]["time"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            if latest.is_some_and(|t| t >= after) {
                return window;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "WAL not archived: {window}\n{}",
                self.primary.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Restore with `args`, start a server on the result, and count the rows of `t`.
    fn restored_rows(&self, rel: &str, args: &[&str]) -> (u64, Value) {
        let target = self.dir.path(rel).display().to_string();
        let mut all = vec!["restore"];
        all.extend_from_slice(args);
        all.extend(["--target-dir", &target]);
        let restored = self.json(&all);
        let mut server = self.dir.server(rel);
        server.start(&self.env(), "-c archive_mode=off");
        server.wait_promoted(Duration::from_secs(60));
        let rows = server.psql("SELECT count(*) FROM t").parse().unwrap();
        server.stop();
        (rows, restored)
    }

    fn server_now(&self) -> DateTime<Utc> {
        self.committed("SELECT 1")
    }

    /// A base backup of the primary into `maindb`, its record.
    fn base_backup(&self) -> Value {
        self.json(&[
            "backup",
            "postgres",
            "maindb",
            &self.primary.conninfo(),
            "--physical",
        ])
    }

    /// Run `sql` in one transaction; the server's clock just before it commits.
    fn committed(&self, sql: &str) -> DateTime<Utc> {
        let text = self.primary.psql(&format!(
            "{sql}; SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        ));
        let last = text.lines().last().unwrap();
        DateTime::parse_from_rfc3339(last).unwrap().to_utc()
    }
}

fn succeeded_quietly(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn round_trip(storage: Storage) {
    let Some(pitr) = Pitr::new(&storage) else {
        return;
    };
    let primary = &pitr.primary;
    primary.psql("CREATE TABLE t (i int, note text); INSERT INTO t SELECT g, 'before' FROM generate_series(1, 100) g");

    // A base backup: refused for a set the server does not archive into, then taken.
    let err = pitr.fails(&[
        "backup",
        "postgres",
        "other",
        &primary.conninfo(),
        "--physical",
    ]);
    assert!(
        err.contains("archive_command does not archive into this set"),
        "{err}"
    );
    let backup = pitr.base_backup();
    assert_eq!(backup["source"], "postgres-physical");
    let stats = &backup["stats"];
    assert_eq!(stats["timeline"], 1);
    assert!(
        stats["system_identifier"].as_str().unwrap().len() > 5,
        "{stats}"
    );
    assert!(
        stats["start_segment"]
            .as_str()
            .unwrap()
            .starts_with("00000001"),
        "{stats}"
    );
    let id = backup["id"].as_str().unwrap().to_string();
    let ended = DateTime::parse_from_rfc3339(stats["stop_time"].as_str().unwrap())
        .unwrap()
        .to_utc();

    // Batch one, then T, then batch two, each committed on its own.
    primary.psql("INSERT INTO t SELECT g, 'first' FROM generate_series(1, 10) g");
    let after_first = primary.psql("SELECT pg_current_wal_lsn()");
    std::thread::sleep(Duration::from_millis(1100));
    let t = pitr.server_now();
    std::thread::sleep(Duration::from_millis(1100));
    let last_commit =
        pitr.committed("INSERT INTO t SELECT g, 'second' FROM generate_series(1, 20) g");
    let window = pitr.archive_until(last_commit);
    let timeline = &window["timelines"][0];
    assert_eq!(timeline["backups"][0]["snapshot"], id.as_str());
    assert!(timeline["backups"][0]["gap"].is_null(), "{window}");

    let t_text = t.to_rfc3339();
    let (rows, restored) = pitr.restored_rows("to-t", &["maindb:latest", "--to-time", &t_text]);
    assert_eq!(
        rows, 110,
        "recovered to T: the base backup's rows and the first batch only"
    );
    assert_eq!(restored["snapshot"], id.as_str());
    if let Storage::S3 { root, .. } = &storage {
        let command = restored["recovery"]["restore_command"].as_str().unwrap();
        assert!(command.contains("--identity"), "{command}");
        // Encrypted: every WAL object is an age file.
        let wal_dir = Path::new(root)
            .join(pitr.repo.trim_start_matches("s3://"))
            .join("sets/maindb/wal/00000001");
        for entry in std::fs::read_dir(&wal_dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(bytes.starts_with(b"age-encryption.org/v1"));
        }
    }
    assert!(
        restored["recovery"]["restore_command"]
            .as_str()
            .is_some_and(|c| c.contains("wal fetch")),
        "{restored}"
    );
    let (rows, _) = pitr.restored_rows("latest", &[&id, "--to-latest"]);
    assert_eq!(
        rows, 130,
        "recovered to the latest archived WAL: both batches"
    );
    let (rows, _) = pitr.restored_rows("to-lsn", &[&id, "--to-lsn", &after_first]);
    assert_eq!(
        rows, 110,
        "recovered to the LSN right after the first batch"
    );

    // restore_command's failures stop recovery (exit 126) rather than end it (exit 1).
    let out = pitr
        .dir
        .command(&pitr.strongbox)
        .args(["--repo", &pitr.dir.path("no-repo").display().to_string()])
        .args(["wal", "fetch", "maindb", "000000010000000000000001"])
        .arg(pitr.dir.path("x"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(126),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A non-empty target is refused and left alone.
    let target = pitr.dir.path("to-t");
    let before = std::fs::read_dir(&target).unwrap().count();
    let err = pitr.fails(&[
        "restore",
        &id,
        "--to-latest",
        "--target-dir",
        &target.display().to_string(),
    ]);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), before);
    // A dry run refuses it too (it said "would restore").
    let err = pitr.fails(&[
        "restore",
        &id,
        "--to-latest",
        "--target-dir",
        target.to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(err.contains("not empty"), "{err}");
    // A data directory inside the local repository is refused; it was written there.
    if let Storage::Local = &storage {
        let inside = Path::new(&pitr.repo).join("sets/maindb/pgdata");
        let err = pitr.fails(&[
            "restore",
            &id,
            "--to-latest",
            "--target-dir",
            inside.to_str().unwrap(),
        ]);
        assert!(err.contains("is inside repository"), "{err}");
        assert!(!inside.exists());
    }

    // A target before the base backup ended is refused, naming the window; so is one
    // after the last archived commit. Nothing is written.
    let early = (ended - chrono::Duration::hours(1)).to_rfc3339();
    let fresh = pitr.dir.path("never").display().to_string();
    let err = pitr.fails(&[
        "restore",
        "maindb:latest",
        "--to-time",
        &early,
        "--target-dir",
        &fresh,
    ]);
    assert!(
        err.contains("before the end of the oldest base backup") && err.contains(&id),
        "{err}"
    );
    let err = pitr.fails(&["restore", &id, "--to-time", &early, "--target-dir", &fresh]);
    assert!(
        err.contains("outside the provable window") && err.contains("recovers from"),
        "{err}"
    );
    let late = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let err = pitr.fails(&["restore", &id, "--to-time", &late, "--target-dir", &fresh]);
    assert!(err.contains("last archived commit"), "{err}");
    assert!(!Path::new(&fresh).exists());

    // restore_command's end of the archive: exit 1, nothing said.
    let out = pitr.run(&["wal", "fetch", "maindb", "0000000100000000000000FE", &fresh]);
    assert_eq!((out.status.code(), out.stderr.is_empty()), (Some(1), true));

    // A push retried: the same content again succeeds; other content under the name fails.
    let segment = timeline["last_segment"].as_str().unwrap().to_string();
    let fetched = pitr.dir.path(&segment);
    assert!(pitr
        .run(&[
            "wal",
            "fetch",
            "maindb",
            &segment,
            &fetched.display().to_string()
        ])
        .status
        .success());
    let again = pitr.json(&["wal", "push", "maindb", &fetched.display().to_string()]);
    assert_eq!(again["already"], true);
    let mut other = std::fs::read(&fetched).unwrap();
    other[100] ^= 0xFF;
    let forged = pitr.dir.path("forged");
    std::fs::create_dir_all(&forged).unwrap();
    std::fs::write(forged.join(&segment), other).unwrap();
    let err = pitr.fails(&[
        "wal",
        "push",
        "maindb",
        &forged.join(&segment).display().to_string(),
    ]);
    assert!(
        err.contains("different content") && err.contains(&segment),
        "{err}"
    );

    // A second base backup; prune keeps it and deletes the WAL only the first needed.
    let second = pitr.base_backup();
    let second_start = second["stats"]["start_segment"]
        .as_str()
        .unwrap()
        .to_string();
    // A time only the first base backup had ended by: <set>:latest picks the first.
    let picked = pitr.json(&[
        "restore",
        "maindb:latest",
        "--to-time",
        &t_text,
        "--target-dir",
        &pitr.dir.path("never").display().to_string(),
        "--dry-run",
    ]);
    assert_eq!(picked["snapshot"], id.as_str(), "{picked}");
    let plan = pitr.json(&["prune", "maindb", "--keep-last", "1", "--dry-run"]);
    let wal = &plan["wal"][0];
    assert!(
        wal["last"]
            .as_str()
            .is_some_and(|last| last < second_start.as_str()),
        "{plan}"
    );
    assert!(
        wal["files"].as_u64().unwrap() >= 1 && wal["bytes"].as_u64().unwrap() > 0,
        "{plan}"
    );
    pitr.json(&["prune", "maindb", "--keep-last", "1"]);
    let window = pitr.json(&["wal", "window", "maindb"]);
    assert_eq!(
        window["timelines"][0]["first_segment"],
        second_start.as_str(),
        "{window}"
    );
    let verified = pitr.json(&["verify", "maindb:latest", "--level", "deep"]);
    assert_eq!(verified["ok"], true, "{verified}");

    // A segment deleted from the archive: verify and health name it.
    let third = pitr.committed("INSERT INTO t VALUES (0, 'third')");
    let window = pitr.archive_until(third);
    let last = window["timelines"][0]["last_segment"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(last > second_start, "{window}");
    let object = |name: &str| match &storage {
        Storage::Local => Path::new(&pitr.repo).join(format!("sets/maindb/wal/00000001/{name}")),
        Storage::S3 { root, .. } => Path::new(root)
            .join(pitr.repo.trim_start_matches("s3://"))
            .join(format!("sets/maindb/wal/00000001/{name}")),
    };
    // The newest segment damaged: the window ends before it, naming it, where `wal window`
    // and every restore failed.
    let newest = std::fs::read(object(&last)).unwrap();
    std::fs::write(object(&last), b"").unwrap();
    let damaged = pitr.json(&["wal", "window", "maindb"]);
    let backup = &damaged["timelines"][0]["backups"][0];
    assert_eq!(backup["gap"], last.as_str(), "{damaged}");
    assert!(backup["latest"]["lsn"].is_string(), "{damaged}");
    std::fs::write(object(&last), newest).unwrap();
    let victim = second_start.clone();
    let victim_bytes = std::fs::read(object(&victim)).unwrap();
    std::fs::remove_file(object(&victim)).unwrap();
    let out = pitr.run(&["verify", "maindb:latest", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let chain = named_check(&report["snapshots"][0]["checks"], "wal-chain");
    assert_eq!(chain["ok"], false);
    assert!(
        chain["detail"].as_str().unwrap().contains(&victim),
        "{chain}"
    );
    let out = pitr.run(&["health", "--set", "maindb", "--json"]);
    let health: Value = serde_json::from_slice(&out.stdout).unwrap();
    let gap = named_check(&health["checks"], "wal-gap");
    assert_eq!(gap["status"], "critical", "{health}");
    assert!(gap["detail"].as_str().unwrap().contains(&victim), "{gap}");

    // The gap behind a newer base backup: only recovery from the older one is cut, which
    // health used to pass over (it checked the newest base backup alone).
    std::fs::write(object(&victim), &victim_bytes).unwrap();
    pitr.base_backup();
    pitr.archive_until(pitr.committed("INSERT INTO t VALUES (0, 'fourth')"));
    std::fs::remove_file(object(&victim)).unwrap();
    let out = pitr.run(&["health", "--set", "maindb", "--json"]);
    let health: Value = serde_json::from_slice(&out.stdout).unwrap();
    let gap = named_check(&health["checks"], "wal-gap");
    assert_eq!(gap["status"], "warning", "{health}");
    let detail = gap["detail"].as_str().unwrap();
    assert!(
        detail.contains("older base backups that cannot recover")
            && detail.contains(second["id"].as_str().unwrap())
            && detail.contains(&victim),
        "{gap}"
    );

    // Regression: --to-latest over a gap in the middle of the newest backup's WAL restored
    // with exit 0; the server stopped at the gap and promoted, losing the WAL after it.
    std::fs::write(object(&victim), &victim_bytes).unwrap();
    pitr.archive_until(pitr.committed("INSERT INTO t VALUES (0, 'fifth')"));
    let window = pitr.archive_until(pitr.committed("INSERT INTO t VALUES (0, 'sixth')"));
    let last = window["timelines"][0]["last_segment"].as_str().unwrap();
    let number = u32::from_str_radix(&last[16..], 16).unwrap();
    let middle = format!("{}{:08X}", &last[..16], number - 1);
    std::fs::remove_file(object(&middle)).unwrap();
    let cut = pitr.dir.path("cut");
    let err = pitr.fails(&[
        "restore",
        "maindb:latest",
        "--to-latest",
        "--target-dir",
        cut.to_str().unwrap(),
    ]);
    assert!(
        err.contains(&format!("WAL segment {middle} is missing")) && err.contains("--to-time"),
        "{err}"
    );
    assert!(!cut.exists(), "nothing written");
}

#[test]
fn point_in_time_recovery_round_trip_on_a_local_repository() {
    round_trip(Storage::Local);
}

#[test]
fn point_in_time_recovery_round_trip_on_s3() {
    let (Some(bucket), Some(root)) = (
        service("STRONGBOX_TEST_S3_BUCKET"),
        service("STRONGBOX_TEST_S3_ROOT"),
    ) else {
        return;
    };
    round_trip(Storage::S3 { bucket, root });
}

#[test]
fn archiving_that_failed_is_retried_by_the_server_and_leaves_no_gap() {
    let Some(pitr) = Pitr::new(&Storage::Local) else {
        return;
    };
    let primary = &pitr.primary;
    pitr.base_backup();
    // The repository disappears: every push fails, and the server keeps the segments.
    let moved = format!("{}.away", pitr.repo);
    std::fs::rename(&pitr.repo, &moved).unwrap();
    primary.psql("CREATE TABLE t (i int); INSERT INTO t SELECT generate_series(1, 1000)");
    primary.psql("SELECT pg_switch_wal()");
    let started = Instant::now();
    while primary.psql("SELECT failed_count FROM pg_stat_archiver") == "0" {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no failed push"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::fs::rename(&moved, &pitr.repo).unwrap();
    let commit = pitr.committed("INSERT INTO t VALUES (0)");
    let window = pitr.archive_until(commit);
    let backup = &window["timelines"][0]["backups"][0];
    assert!(backup["gap"].is_null(), "{window}");
    // No --to-* flag: to the end of the archive.
    let (rows, _) = pitr.restored_rows("latest", &["maindb:latest"]);
    assert_eq!(rows, 1001);
}

/// A base backup damaged inside its data. The failed read ended the stream as tar saw it,
/// so the restore said "failed to write entire file", which reads like a full disk (or, had
/// it ended at a header, extracted a partial data directory and went on).
#[test]
fn a_damaged_base_backup_fails_its_restore_naming_the_read_and_leaves_no_directory() {
    let Some(pitr) = Pitr::new(&Storage::Local) else {
        return;
    };
    let backup = pitr.base_backup();
    pitr.archive_until(pitr.committed("CREATE TABLE t (i int)"));
    let key = crate::harness::object_key(&backup, "dump");
    let object = Path::new(&pitr.repo).join(&key);
    let mut bytes = std::fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xFF;
    std::fs::write(&object, bytes).unwrap();
    let target = pitr.dir.path("restored");
    let err = pitr.fails(&[
        "restore",
        "maindb:latest",
        "--to-latest",
        "--target-dir",
        &target.display().to_string(),
    ]);
    assert!(
        err.contains(&format!("archive {key}, entry ")) && !err.contains("failed to"),
        "{err}"
    );
    assert!(
        !target.exists(),
        "a damaged restore left {}",
        target.display()
    );
}

/// A WAL object whose first bytes were damaged read as an uncompressed object, unchecked:
/// `wal fetch` handed PostgreSQL the damaged bytes with exit 0.
#[test]
fn a_wal_object_damaged_at_its_start_fails_fetch_with_126_and_writes_nothing() {
    let env = crate::harness::Env::new();
    env.json(&["init"]);
    let name = "000000010000000000000001";
    let segment = env.path(name);
    let content: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(&segment, &content).unwrap();
    env.json(&["wal", "push", "maindb", segment.to_str().unwrap()]);
    let dest = env.path("fetched");
    let fetched = env.json(&["wal", "fetch", "maindb", name, dest.to_str().unwrap()]);
    assert_eq!(fetched["fetched"], name);
    assert_eq!(std::fs::read(&dest).unwrap(), content);
    std::fs::remove_file(&dest).unwrap();

    let object = Path::new(&env.repo)
        .join("sets/maindb/wal/00000001")
        .join(name);
    let stored = std::fs::read(&object).unwrap();
    let mut flipped = stored.clone();
    flipped[0] ^= 1;
    for damaged in [flipped, b"hello\n".to_vec(), Vec::new()] {
        std::fs::write(&object, &damaged).unwrap();
        let err = env.fails(
            &["wal", "fetch", "maindb", name, dest.to_str().unwrap()],
            126,
        );
        assert!(
            err.contains(&format!("sets/maindb/wal/00000001/{name}"))
                && err.contains("does not start as a zstd"),
            "{err}"
        );
        assert!(!dest.exists(), "a damaged WAL file was handed over");
    }
}

#[test]
fn wal_names_paths_and_targets_that_are_not_postgresqls_are_refused_in_one_line() {
    let env = crate::harness::Env::new();
    env.json(&["init"]);
    let evil = env.path("passwd");
    std::fs::write(&evil, b"root:x:0:0").unwrap();
    let missing = env.path("000000010000000000000001");
    let directory = env.path("000000010000000000000002");
    std::fs::create_dir(&directory).unwrap();
    let short = env.path("short/000000010000000000000003");
    std::fs::create_dir(short.parent().unwrap()).unwrap();
    std::fs::write(&short, b"abc").unwrap();
    // It blocked `wal push` in open(2) for good.
    let fifo = env.path("000000010000000000000004");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let dest = env.path("dest").display().to_string();
    // (args, exit status, phrase of the one error line)
    let cases: [(Vec<&str>, i32, &str); 8] = [
        (
            vec!["wal", "push", "maindb", evil.to_str().unwrap()],
            1,
            "invalid WAL name \"passwd\"",
        ),
        (
            vec!["wal", "push", "maindb", missing.to_str().unwrap()],
            1,
            "000000010000000000000001",
        ),
        (
            vec!["wal", "push", "maindb", directory.to_str().unwrap()],
            1,
            "not a regular file",
        ),
        (
            vec!["wal", "push", "maindb", short.to_str().unwrap()],
            1,
            "3 bytes is no WAL segment size",
        ),
        (
            vec!["wal", "push", "maindb", fifo.to_str().unwrap()],
            1,
            "not a regular file",
        ),
        (
            vec!["wal", "fetch", "maindb", "../../etc/passwd", &dest],
            126,
            "invalid WAL name",
        ),
        (
            vec![
                "restore",
                "x",
                "--target-dir",
                &dest,
                "--to-lsn",
                "yesterday",
            ],
            2,
            "invalid value 'yesterday' for '--to-lsn <LSN>'",
        ),
        (
            vec![
                "backup",
                "postgres",
                "maindb",
                "host=127.0.0.1 port=1 dbname=x",
                "--physical",
            ],
            1,
            "cannot connect",
        ),
    ];
    for (args, code, phrase) in cases {
        let err = env.fails(&args, code);
        let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(lines[0].contains(phrase), "{args:?}: {err}");
    }
    assert!(!Path::new(&dest).exists(), "nothing written");
    assert!(
        !Path::new(&env.repo).join("sets/maindb/wal").exists(),
        "nothing archived"
    );
}
