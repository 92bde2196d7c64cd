//! Every command against s3:// on a real S3-compatible server (s3s-fs).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::harness::{assert_same_tree, big_tree, noise, tree, write, Env};
use crate::interrupt::{signal, slow_backup_args, wait_for};

/// The bucket `scripts/test.sh` created, or `None` (a failure under CI=true).
fn shared_bucket() -> Option<String> {
    crate::harness::service("STRONGBOX_TEST_S3_BUCKET")
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{name}-{}-{nanos:08x}", std::process::id())
}

/// An s3s-fs of this test's own, so that the test can stop and restart it.
struct Server {
    child: Option<Child>,
    port: u16,
    /// The directory it serves, a bucket per subdirectory.
    root: PathBuf,
}

impl Server {
    fn start(root: &Path, port: Option<u16>) -> Server {
        let port = port.unwrap_or_else(|| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        std::fs::create_dir_all(root.join("bucket")).unwrap();
        let child = Command::new("s3s-fs")
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                "own-key",
                "--secret-key",
                "own-secret",
            ])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs on PATH (scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            sleep(Duration::from_millis(20));
        }
        Server {
            child: Some(child),
            port,
            root: root.to_path_buf(),
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// strongbox on this server's repository `s3://bucket/repo`.
    fn strongbox(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(crate::harness::bin());
        cmd.args(["--repo", "s3://bucket/repo"]).args(args);
        self.env(&mut cmd);
        cmd
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", self.port),
        )
        .env("AWS_ACCESS_KEY_ID", "own-key")
        .env("AWS_SECRET_ACCESS_KEY", "own-secret")
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("STRONGBOX_RETRIES", "2");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn full_incremental_differential_over_s3_restore_bit_identical_and_verify_deep() {
    let Some(bucket) = shared_bucket() else {
        return;
    };
    let mut env = Env::new();
    env.repo = format!("s3://{bucket}/{}", unique("chain"));
    let src = env.path("src");
    write(&src.join("a/big.bin"), &noise(1, 12 << 20));
    write(&src.join("a/small.txt"), b"small");
    std::os::unix::fs::symlink("a/small.txt", src.join("link")).unwrap();
    env.json(&["init"]);
    let mut states = vec![];
    let full = env.backup(
        "media",
        &src,
        &["--storage-class", "STANDARD_IA", "--part-size", "5"],
    );
    assert_eq!(full["kind"], "full");
    states.push((full["id"].as_str().unwrap().to_string(), tree(&src)));
    write(&src.join("b/new.bin"), &noise(2, 3 << 20));
    std::fs::remove_file(src.join("a/small.txt")).unwrap();
    let inc = env.backup("media", &src, &[]);
    assert_eq!(inc["kind"], "incremental");
    states.push((inc["id"].as_str().unwrap().to_string(), tree(&src)));
    write(&src.join("c.txt"), b"third");
    let diff = env.backup("media", &src, &["--differential"]);
    assert_eq!(diff["parent"], full["id"]);
    states.push((diff["id"].as_str().unwrap().to_string(), tree(&src)));

    for (i, (id, expected)) in states.iter().enumerate() {
        let target = env.path(&format!("r{i}"));
        env.restore(id, &target, &[]);
        assert_same_tree(expected, &tree(&target));
    }
    let report = env.json(&["verify", "--all", "--level", "deep"]);
    assert_eq!(report["ok"], true, "{report}");
    let listed = env.json(&["snapshots", "media"]);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    let ls = env.json(&["ls", "media:latest"]);
    assert!(ls.as_array().unwrap().iter().any(|e| e["path"] == "c.txt"));
}

#[test]
fn bad_s3_locations_fail_with_one_line_naming_the_url_without_secrets() {
    let Some(bucket) = shared_bucket() else {
        return;
    };
    let env = Env::new();
    let run = |repo: &str, envs: &[(&str, &str)]| {
        let mut cmd = Command::new(crate::harness::bin());
        cmd.args(["--repo", repo, "snapshots"])
            .env("STRONGBOX_RETRIES", "1");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default();
        assert!(
            secret.is_empty() || !stderr.contains(&secret),
            "secret leaked: {stderr}"
        );
        stderr
    };
    let err = run("s3://no-such-bucket-here/x", &[]);
    assert!(
        err.contains("s3://no-such-bucket-here/x") && err.contains("NoSuchBucket"),
        "{err}"
    );
    let err = run(&format!("s3://{bucket}/nothing-here"), &[]);
    assert!(err.contains("is not a strongbox repository"), "{err}");
    let err = run(
        &format!("s3://{bucket}/x"),
        &[("AWS_SECRET_ACCESS_KEY", "wrong-secret-value")],
    );
    assert!(
        err.contains("SignatureDoesNotMatch") || err.contains("privileges"),
        "{err}"
    );
    assert!(!err.contains("wrong-secret-value"));
    let err = run(
        &format!("s3://{bucket}/x"),
        &[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")],
    );
    assert!(
        err.contains(&format!("s3://{bucket}/x")) && err.contains("Connection refused"),
        "{err}"
    );
    // Regression: a client that cannot be built without any setting was blamed on the
    // first one, as "invalid storage setting \"AWS_REGION\"".
    let no_certs = env.path("no-certs");
    std::fs::create_dir_all(&no_certs).unwrap();
    write(&no_certs.join("empty.pem"), b"");
    let err = run(
        &format!("s3://{bucket}/x"),
        &[
            (
                "SSL_CERT_FILE",
                no_certs.join("empty.pem").to_str().unwrap(),
            ),
            ("SSL_CERT_DIR", no_certs.to_str().unwrap()),
        ],
    );
    assert!(
        err.contains(&format!("s3://{bucket}/x"))
            && err.contains("No CA certificates")
            && !err.contains("storage setting"),
        "{err}"
    );
    let err = run("s3://AKIA:hunter2@bucket/x", &[]);
    assert!(
        !err.contains("hunter2") && err.contains("credentials"),
        "{err}"
    );

    // A prefix that holds something else is not taken over by a backup.
    let foreign = unique("foreign");
    let mut env2 = Env::new();
    env2.repo = format!("s3://{bucket}/{foreign}");
    let src = env.path("src");
    write(&src.join("f"), b"x");
    let err = env2.fails(&["backup", "files", "media", src.to_str().unwrap()], 1);
    assert!(err.contains("is not a strongbox repository"), "{err}");
}

/// An s3s-fs of the test's own under `root`, holding a new repository `s3://bucket/repo`.
fn server_with_repository(root: &Path) -> Server {
    let server = Server::start(root, None);
    let init = server.strongbox(&["init"]).output().unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    server
}

/// Start a slow backup of `src` on `server` (then `extra`), its output captured, and return
/// once it holds its lock and has begun to upload.
fn backup_under_way(server: &Server, src: &Path, extra: &[&str]) -> Child {
    let child = server
        .strongbox(&slow_backup_args(src))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the backup to take its lock", || {
        server.root.join("bucket/repo/locks/media.json").exists()
    });
    sleep(Duration::from_millis(300));
    child
}

/// The backup after one that failed midway succeeds, as a full one: nothing of the failed
/// one is taken for a parent.
fn the_next_backup_is_a_full_one(server: &Server, src: &Path) {
    let out = server
        .strongbox(&["backup", "files", "media", src.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let record = crate::harness::succeeded(&out);
    assert_eq!(record["kind"], "full");
}

#[test]
fn killing_the_server_mid_backup_fails_cleanly_and_the_next_backup_succeeds() {
    if shared_bucket().is_none() {
        return;
    }
    let env = Env::new();
    let root = env.path("s3root");
    let mut server = server_with_repository(&root);
    let src = env.path("src");
    big_tree(&src, 16, 8 << 20);
    let child = backup_under_way(&server, &src, &["--part-size", "5"]);
    server.stop();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("s3://bucket/repo") || stderr.contains("127.0.0.1"),
        "{stderr}"
    );
    let records = root.join("bucket/repo/sets/media/snapshots");
    assert!(
        !records.exists() || std::fs::read_dir(&records).unwrap().next().is_none(),
        "a snapshot record was written"
    );

    let server = Server::start(&root, Some(server.port));
    the_next_backup_is_a_full_one(&server, &src);
    let target = env.path("restored");
    let out = server
        .strongbox(&[
            "restore",
            "media:latest",
            "--target",
            target.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_tree(&tree(&src), &tree(&target));
}

#[test]
fn an_interrupted_backup_quits_after_the_cleanup_timeout_when_the_server_stalls() {
    if shared_bucket().is_none() {
        return;
    }
    let env = Env::new();
    let server = server_with_repository(&env.path("s3root"));
    let src = env.path("src");
    big_tree(&src, 8, 8 << 20);
    let child = backup_under_way(&server, &src, &["--cleanup-timeout", "3s"]);
    // The server takes connections and answers nothing, as a stalled S3 endpoint does.
    let stalled = server.child.as_ref().unwrap();
    signal(stalled, Signal::STOP);
    let interrupted = Instant::now();
    signal(&child, Signal::INT);
    let out = child.wait_with_output().unwrap();
    let waited = interrupted.elapsed();
    signal(stalled, Signal::CONT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("cleanup did not finish within 3s"),
        "{stderr}"
    );
    // Without the timeout each cleanup request waits out its retries (30 s timeouts).
    assert!(waited < Duration::from_secs(20), "quit after {waited:?}");

    // The lock the quitting backup left is taken over; its upload never became a snapshot.
    the_next_backup_is_a_full_one(&server, &src);
    let out = server.strongbox(&["snapshots", "--json"]).output().unwrap();
    let snapshots = crate::harness::succeeded(&out);
    assert_eq!(snapshots.as_array().unwrap().len(), 1, "{snapshots}");
}
