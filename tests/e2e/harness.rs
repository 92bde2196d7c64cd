//! Temp-dir helpers shared by every end-to-end test.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The binary under test: the one cargo built for this test run.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_strongbox"))
}

/// A temp dir with a repository location inside it.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: String,
    /// Variables set for every command (an S3 endpoint of a test's own, say).
    pub vars: Vec<(String, String)>,
}

impl Env {
    /// A local repository at `<tmp>/repo` (created by the first backup).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = dir.path().join("repo").display().to_string();
        Env {
            dir,
            repo,
            vars: vec![],
        }
    }

    /// A path inside the temp dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `strongbox --repo <repo> <args>`.
    pub fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(bin());
        cmd.arg("--repo").arg(&self.repo).args(args);
        cmd.env_remove("STRONGBOX_REPO");
        cmd.envs(self.vars.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Run; return the output whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run strongbox")
    }

    /// Run with `--json`, expect success, parse stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        succeeded(&self.run(&all))
    }

    /// Run, expect exit status `code`, return stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "strongbox {args:?}: {stderr}"
        );
        stderr
    }

    /// `backup files <set> <dir> <extra…> --json`, returning the snapshot record.
    pub fn backup(&self, set: &str, dir: &Path, extra: &[&str]) -> Value {
        let dir = dir.display().to_string();
        let mut args = vec!["backup", "files", set, dir.as_str()];
        args.extend_from_slice(extra);
        self.json(&args)
    }

    /// `restore <snap> --target <target> <extra…> --json`, expecting success.
    pub fn restore(&self, snap: &str, target: &Path, extra: &[&str]) -> Value {
        let target = target.display().to_string();
        let mut args = vec!["restore", snap, "--target", target.as_str()];
        args.extend_from_slice(extra);
        self.json(&args)
    }

    /// Snapshot ids, oldest first.
    pub fn snapshot_ids(&self) -> Vec<String> {
        self.json(&["snapshots"])
            .as_array()
            .expect("array")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_string())
            .collect()
    }
}

/// Start `strongbox --repo <repo> <args>` in the background, its output captured.
pub fn spawn(env: &Env, args: &[&str]) -> std::process::Child {
    env.cmd(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start strongbox")
}

/// The JSON document a `--json` run that must have succeeded printed.
pub fn succeeded(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "strongbox failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// One entry of a tree as the tests compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub size: u64,
    pub mtime_ns: i64,
    pub content: Option<String>,
}

/// Every entry below `root` (not `root` itself): type, mode, size, mtime (ns), SHA-256 of
/// file content or the link target.
pub fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
    for entry in fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        let meta = fs::symlink_metadata(&path).expect("lstat");
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_str()
            .expect("utf-8")
            .to_string();
        let (kind, content) = if meta.file_type().is_symlink() {
            (
                "symlink",
                Some(fs::read_link(&path).unwrap().display().to_string()),
            )
        } else if meta.is_dir() {
            walk(root, &path, out);
            ("dir", None)
        } else {
            ("file", Some(file_sha256(&path)))
        };
        out.insert(
            rel,
            Node {
                kind,
                mode: if kind == "symlink" {
                    0
                } else {
                    meta.permissions().mode() & 0o7777
                },
                size: if kind == "file" { meta.len() } else { 0 },
                mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                content,
            },
        );
    }
}

/// SHA-256 of bytes, lower-case hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 of a file, streamed.
pub fn file_sha256(path: &Path) -> String {
    let mut file = fs::File::open(path).expect("open");
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex::encode(hasher.finalize())
}

/// Assert two trees are equal, naming the first difference.
pub fn assert_same_tree(expected: &BTreeMap<String, Node>, actual: &BTreeMap<String, Node>) {
    for (path, node) in expected {
        match actual.get(path) {
            None => panic!("{path} missing from the restored tree"),
            Some(got) => assert_eq!(got, node, "{path} differs"),
        }
    }
    for path in actual.keys() {
        assert!(
            expected.contains_key(path),
            "{path} restored but not expected"
        );
    }
}

/// Deterministic pseudo-random bytes (xorshift), incompressible enough for tests.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Write `bytes` to `path`, creating parents.
pub fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// Set a path's mtime (not following symlinks).
pub fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let ts = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: nanos as _,
    };
    let times = rustix::fs::Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// The one data object of `role` in a snapshot record.
pub fn object_key(record: &Value, role: &str) -> String {
    record["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["role"] == role)
        .unwrap_or_else(|| panic!("no {role} object in {record}"))["key"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Names in `dir` (sorted), for checking that nothing was left beside a target.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A tree of `count` incompressible files of `size` bytes, for tests that must catch a
/// command in the middle of its work.
pub fn big_tree(root: &Path, count: usize, size: usize) {
    for i in 0..count {
        write(
            &root.join(format!("d{}/f{i}.bin", i % 4)),
            &noise(i as u64 + 1, size),
        );
    }
}

pub use strongbox_test_support::service;

/// The binary as `nobody` when the tests run as root (root reads any file, so unreadable
/// files need another user), on a repository it owns; else the binary itself.
pub fn unprivileged(env: &Env) -> std::process::Command {
    if !rustix::process::geteuid().is_root() {
        return std::process::Command::new(bin());
    }
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    unprivileged_dir(Path::new(&env.repo));
    // A copy `nobody` can reach wherever the checkout lives.
    let copy = env.path("strongbox");
    fs::copy(bin(), &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = std::process::Command::new("runuser");
    cmd.args(["-u", "nobody", "--"]).arg(copy);
    cmd
}

/// Make the directory `path`, owned by the user [`unprivileged`] runs as.
pub fn unprivileged_dir(path: &Path) {
    fs::create_dir_all(path).unwrap();
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let nobody = std::process::Command::new("id")
        .args(["-u", "nobody"])
        .output()
        .unwrap();
    let uid: u32 = String::from_utf8_lossy(&nobody.stdout)
        .trim()
        .parse()
        .unwrap();
    rustix::fs::chown(path, Some(rustix::process::Uid::from_raw(uid)), None).unwrap();
}

/// The check called `name` in `checks` (a report's `checks` array, of `verify` or `health`).
pub fn named_check<'a>(checks: &'a Value, name: &str) -> &'a Value {
    checks
        .as_array()
        .unwrap_or_else(|| panic!("no checks in {checks:#}"))
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:#}"))
}

/// This host's name, as strongbox records it in locks and journals.
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// Plant the lock of set `media` as held by `operation` in process `pid` on `host` since
/// `time` (RFC 3339): another host's run, or a live or gone process of this one.
pub fn plant_lock(env: &Env, operation: &str, host: &str, pid: u32, time: &str) -> PathBuf {
    let lock = Path::new(&env.repo).join("locks/media.json");
    let info = serde_json::json!({
        "set": "media", "operation": operation, "host": host, "pid": pid, "time": time,
    });
    write(&lock, info.to_string().as_bytes());
    lock
}

/// Run `sql` with the sqlite3 CLI on the database file `db` (created when missing); its
/// output.
pub fn sqlite(db: &Path, sql: &str) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 on PATH (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
