//! Encrypted repositories: age to a repository key, key files per reader, the age CLI as a
//! second reader, and keys that never show.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::{assert_same_tree, names, noise, object_key, tree, write, Env};

/// A new age identity file made by the age CLI; its recipient.
fn keygen(path: &Path) -> String {
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(path)
        .output()
        .expect("age-keygen on PATH (scripts/test.sh installs Debian's age)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("age-keygen")
        .arg("-y")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// An encrypted repository with one recipient key; the identity file that opens it.
fn encrypted(env: &Env) -> (PathBuf, String) {
    let identity = env.path("me.txt");
    let recipient = keygen(&identity);
    env.json(&["init", "--encrypt", "--recipient", &recipient]);
    (identity, recipient)
}

fn source(env: &Env) -> PathBuf {
    let src = env.path("src");
    write(&src.join("avatars/alice-portrait.png"), &noise(7, 300_000));
    write(
        &src.join("notes/plaintext-marker.txt"),
        b"PLAINTEXT-MARKER-CONTENT",
    );
    src
}

/// Every file of a local repository, as (key, bytes).
fn repository_files(env: &Env) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(&env.repo);
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let key = path.strip_prefix(root).unwrap().display().to_string();
                out.push((key, std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

/// An encrypted repository holding one backup of [`source`]: the identity that reads it,
/// the source tree and the snapshot record.
fn backed_up(env: &Env) -> (PathBuf, PathBuf, Value) {
    let (identity, _) = encrypted(env);
    let src = source(env);
    let record = backup(env, &identity, &src);
    (identity, src, record)
}

/// `backup files media SRC` with the identity, returning the record.
fn backup(env: &Env, identity: &Path, src: &Path) -> Value {
    env.json(&[
        "--identity",
        identity.to_str().unwrap(),
        "backup",
        "files",
        "media",
        src.to_str().unwrap(),
    ])
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn encrypted_repository_backs_up_restores_verifies_and_stores_no_plaintext() {
    let env = Env::new();
    let (identity, _) = encrypted(&env);
    let id = identity.to_str().unwrap();
    let src = source(&env);
    let full = backup(&env, Path::new(id), &src);
    let first = tree(&src);
    write(&src.join("avatars/bob.png"), &noise(8, 50_000));
    let inc = backup(&env, Path::new(id), &src);
    assert_eq!(inc["kind"], "incremental");
    for (record, expected) in [(&full, &first), (&inc, &tree(&src))] {
        let target = env.path(&format!("out-{}", record["id"].as_str().unwrap()));
        env.restore(record["id"].as_str().unwrap(), &target, &["--identity", id]);
        assert_same_tree(expected, &tree(&target));
    }
    // One file: read from the age chunks around its frames.
    let some = env.path("some");
    let one = "notes/plaintext-marker.txt";
    let restored = env.restore(
        inc["id"].as_str().unwrap(),
        &some,
        &["--identity", id, "--include", one],
    );
    assert_eq!(restored["plan"]["files"], 1, "{restored}");
    assert_eq!(
        std::fs::read(some.join(one)).unwrap(),
        b"PLAINTEXT-MARKER-CONTENT"
    );
    let report = env.json(&["--identity", id, "verify", "--all", "--level", "deep"]);
    assert_eq!(report["ok"], true, "{report}");

    for (key, bytes) in repository_files(&env) {
        for secret in [
            &b"alice-portrait"[..],
            b"plaintext-marker",
            b"PLAINTEXT-MARKER",
            b"avatars",
        ] {
            assert!(
                !contains(&bytes, secret),
                "{key} shows {:?}",
                String::from_utf8_lossy(secret)
            );
        }
        if key != "strongbox.json" && !key.starts_with("locks/") {
            assert!(
                bytes.starts_with(b"age-encryption.org/v1\n"),
                "{key} is not an age file"
            );
        }
    }
}

#[test]
fn the_age_cli_opens_a_snapshot_with_only_age_zstd_and_tar() {
    let env = Env::new();
    let (identity, src, record) = backed_up(&env);
    let out = env.path("by-hand");
    std::fs::create_dir_all(&out).unwrap();
    crate::recipe::run_doc_block(
        "Encrypted repositories",
        &[
            ("REPO", env.repo.as_str()),
            ("IDENTITY", identity.to_str().unwrap()),
            ("KEY", env.path("repo.key").to_str().unwrap()),
            ("OBJECT", object_key(&record, "archive").as_str()),
            ("TARGET", out.to_str().unwrap()),
        ],
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.path("repo.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the recipe left the repository key readable by others"
    );
    // tar keeps whole-second mtimes; the bytes are what this recipe promises.
    for file in ["avatars/alice-portrait.png", "notes/plaintext-marker.txt"] {
        assert_eq!(
            std::fs::read(src.join(file)).unwrap(),
            std::fs::read(out.join(file)).unwrap(),
            "{file}"
        );
    }

    // The other direction: a key file the age CLI wrote lets strongbox in.
    let third = env.path("third.txt");
    let third_recipient = keygen(&third);
    let key_file = Path::new(&env.repo).join("keys/0a9e0c11.age");
    age(&[
        &"-e",
        &"-r",
        &third_recipient,
        &"-o",
        &key_file,
        &env.path("repo.key"),
    ]);
    let target = env.path("by-strongbox");
    env.restore(
        record["id"].as_str().unwrap(),
        &target,
        &["--identity", third.to_str().unwrap()],
    );
    assert_same_tree(&tree(&src), &tree(&target));
}

/// Run the age CLI with `args`, which must succeed.
fn age(args: &[&dyn AsRef<OsStr>]) {
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let out = Command::new("age").args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "age {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_archive_the_age_cli_sealed_to_the_repository_restores() {
    let env = Env::new();
    // The 300 kB of noise make the archive several 64 KiB age chunks long.
    let (identity, src, record) = backed_up(&env);
    let repo = Path::new(&env.repo);
    let key_file = std::fs::read_dir(repo.join("keys"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let repo_key = env.path("repo.key");
    age(&[&"-d", &"-i", &identity, &"-o", &repo_key, &key_file]);
    let archive = repo.join(object_key(&record, "archive"));
    let opened = env.path("archive.tar.zst");
    age(&[&"-d", &"-i", &repo_key, &"-o", &opened, &archive]);
    let marker: Value =
        serde_json::from_slice(&std::fs::read(repo.join("strongbox.json")).unwrap()).unwrap();
    let recipient = marker["recipient"].as_str().unwrap();
    let sealed_by_strongbox = std::fs::read(&archive).unwrap();
    std::fs::remove_file(&archive).unwrap();
    age(&[&"-e", &"-r", &recipient, &"-o", &archive, &opened]);
    assert_ne!(std::fs::read(&archive).unwrap(), sealed_by_strongbox);

    let target = env.path("restored");
    env.restore(
        record["id"].as_str().unwrap(),
        &target,
        &["--identity", identity.to_str().unwrap()],
    );
    assert_same_tree(&tree(&src), &tree(&target));
}

#[test]
fn a_restore_of_a_tampered_encrypted_archive_names_it_and_fails() {
    let env = Env::new();
    let (identity, _, record) = backed_up(&env);
    let key = object_key(&record, "archive");
    let archive = Path::new(&env.repo).join(&key);
    let mut bytes = std::fs::read(&archive).unwrap();
    // Inside a 64 KiB chunk before the last (the noise makes several): the header opens.
    let at = bytes.len() - 2 * 65_552;
    bytes[at] ^= 1;
    std::fs::write(&archive, bytes).unwrap();
    let target = env.path("restored");
    let stderr = env.fails(
        &[
            "--identity",
            identity.to_str().unwrap(),
            "restore",
            record["id"].as_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
        ],
        1,
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&key), "{stderr}");
    assert!(stderr.contains("does not authenticate"), "{stderr}");
    let left = names(env.dir.path());
    assert!(
        !left.iter().any(|n| n.contains("restored")),
        "no target, no staging directory: {left:?}"
    );
}

#[test]
fn keys_rotate_without_rewriting_data_and_the_last_key_stays() {
    let env = Env::new();
    let (old, old_recipient) = encrypted(&env);
    let old = old.to_str().unwrap();
    let src = source(&env);
    let record = backup(&env, Path::new(old), &src);
    let data_before: Vec<_> = repository_files(&env)
        .into_iter()
        .filter(|(k, _)| k.starts_with("sets/"))
        .collect();

    let new = env.path("new.txt");
    let new_recipient = keygen(&new);
    let new = new.to_str().unwrap();
    env.json(&[
        "--identity",
        old,
        "key",
        "add",
        "--recipient",
        &new_recipient,
    ]);
    let passphrase_key = env
        .cmd(&["--identity", old, "key", "add", "--passphrase", "--json"])
        .env("STRONGBOX_NEW_PASSPHRASE", "correct horse battery")
        .output()
        .unwrap();
    let passphrase_id = crate::harness::succeeded(&passphrase_key)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let keys = env.json(&["--identity", new, "key", "list"]);
    let kinds: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["recipient", "recipient", "passphrase"]);
    let holders: Vec<Option<&str>> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.get("recipient").map(|r| r.as_str().unwrap()))
        .collect();
    assert_eq!(
        holders,
        [
            Some(old_recipient.as_str()),
            Some(new_recipient.as_str()),
            None
        ]
    );
    let table = env.run(&["--identity", new, "key", "list"]);
    let table = String::from_utf8_lossy(&table.stdout);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["id", "kind", "created", "recipient"], "{table}");
    assert_eq!(rows[3][0], passphrase_id, "{table}");
    assert_eq!(rows[3][1], "passphrase", "{table}");
    assert_eq!(rows[3][4..], ["UTC", "-"], "{table}");
    assert_eq!(rows[2].last(), Some(&new_recipient.as_str()), "{table}");
    let old_id = keys[0]["id"].as_str().unwrap().to_string();
    env.json(&["--identity", new, "key", "remove", &old_id]);

    let err = env.fails(&["--identity", old, "snapshots"], 1);
    assert!(
        err.contains("no key file") && err.contains("identity"),
        "{err}"
    );
    let target = env.path("out");
    env.restore(
        record["id"].as_str().unwrap(),
        &target,
        &["--identity", new],
    );
    assert_same_tree(&tree(&src), &tree(&target));
    let by_passphrase = env
        .cmd(&["snapshots", "--json"])
        .env("STRONGBOX_PASSPHRASE", "correct horse battery")
        .output()
        .unwrap();
    assert_eq!(
        crate::harness::succeeded(&by_passphrase)
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let data_after: Vec<_> = repository_files(&env)
        .into_iter()
        .filter(|(k, _)| k.starts_with("sets/") && !k.contains("/runs/"))
        .collect();
    let data_before: Vec<_> = data_before
        .into_iter()
        .filter(|(k, _)| !k.contains("/runs/"))
        .collect();
    assert_eq!(data_before, data_after, "rotation rewrote data");

    env.json(&["--identity", new, "key", "remove", &passphrase_id]);
    let remaining = env.json(&["--identity", new, "key", "list"]);
    let last = remaining[0]["id"].as_str().unwrap();
    let err = env.fails(&["--identity", new, "key", "remove", last], 1);
    assert!(err.contains("last usable key"), "{err}");
    assert_eq!(
        env.json(&["--identity", new, "key", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn bad_keys_get_one_line_exit_1_and_leave_the_target_alone() {
    let env = Env::new();
    let (identity, _, record) = backed_up(&env);
    let snap = record["id"].as_str().unwrap();
    let target = env.path("target");
    write(&target.join("keep.txt"), b"untouched");
    let before = tree(&target);
    let target_str = target.to_str().unwrap();
    let restore = |identity: Option<&Path>| -> Vec<String> {
        let mut args: Vec<String> = identity
            .map(|i| vec!["--identity".to_string(), i.display().to_string()])
            .unwrap_or_default();
        args.extend(["restore", snap, "--target", target_str].map(str::to_string));
        args
    };

    let stranger = env.path("stranger.txt");
    keygen(&stranger);
    let not_identity = env.path("not-identity.txt");
    write(&not_identity, b"this is not an age identity\n");
    let cases: [(&str, Vec<String>, &str); 3] = [
        (
            "no key",
            restore(None),
            "is encrypted: reading it needs --identity",
        ),
        ("wrong identity", restore(Some(&stranger)), "no key file"),
        (
            "not an identity",
            restore(Some(&not_identity)),
            "not-identity.txt: invalid key: line 1: not an age identity",
        ),
    ];
    for (name, args, expected) in cases {
        let err = env.fails(&as_strs(&args), 1);
        assert!(err.contains(expected), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
        assert!(
            !err.contains("this is not an age identity"),
            "{name} echoes the file: {err}"
        );
        assert_eq!(tree(&target), before, "{name} changed the target");
    }

    let plain = Env::new();
    plain.json(&["init"]);
    let err = plain.fails(&["--identity", identity.to_str().unwrap(), "snapshots"], 1);
    assert!(err.contains("is not encrypted"), "{err}");
    // Regression: key work in a repository without keys said it "is encrypted" and asked
    // for a key.
    let recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    for args in [
        &["key", "add", "--recipient", recipient][..],
        &["key", "remove", "abcd1234"],
    ] {
        let err = plain.fails(args, 1);
        assert!(
            err.contains("is not encrypted: it has no keys"),
            "{args:?}: {err}"
        );
    }

    let missing = env.path("no-such-identity.txt");
    let err = env.fails(&as_strs(&restore(Some(&missing))), 1);
    assert!(
        err.contains("reading identity file") && err.contains("no-such-identity.txt"),
        "{err}"
    );
    let err = env.fails(
        &[
            "--identity",
            identity.to_str().unwrap(),
            "key",
            "remove",
            "00000000",
        ],
        1,
    );
    assert!(err.contains("has no key \"00000000\" (its keys: "), "{err}");
    assert_eq!(tree(&target), before);

    let fresh = Env::new();
    for (args, expected, code) in [
        (&["init", "--encrypt"][..], "needs --recipient", 2),
        (
            &["init", "--encrypt", "--recipient", "age1notarecipient"][..],
            "recipient \"age1notarecipient\"",
            1,
        ),
    ] {
        let err = fresh.fails(args, code);
        assert!(err.contains(expected), "{err}");
        assert!(
            !Path::new(&fresh.repo).exists(),
            "a refused init created the repository"
        );
    }
    let err = fresh.fails(&["init", "--encrypt", "--passphrase", "hunter2-secret"], 1);
    assert!(
        err.contains("refusing a passphrase on the command line"),
        "{err}"
    );
    assert!(!err.contains("hunter2-secret"), "{err}");
    assert!(
        !Path::new(&fresh.repo).exists(),
        "a refused init created the repository"
    );

    let keys = env.json(&["--identity", identity.to_str().unwrap(), "key", "list"]);
    let key_file =
        Path::new(&env.repo).join(format!("keys/{}.age", keys[0]["id"].as_str().unwrap()));
    let mut bytes = std::fs::read(&key_file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&key_file, bytes).unwrap();
    let err = env.fails(&as_strs(&restore(Some(&identity))), 1);
    assert!(err.contains("keys/"), "a corrupt key file is named: {err}");
    assert_eq!(tree(&target), before);
}

#[test]
fn a_recipients_file_gives_each_line_a_key_and_an_identity_in_it_is_refused_unshown() {
    let env = Env::new();
    let (first, second) = (env.path("first.txt"), env.path("second.txt"));
    let recipients = env.path("recipients.txt");
    let listed = format!(
        "# the operators\n{}\n\n  {}  \n",
        keygen(&first),
        keygen(&second)
    );
    write(&recipients, listed.as_bytes());
    env.json(&[
        "init",
        "--encrypt",
        "--recipients-file",
        recipients.to_str().unwrap(),
    ]);
    let src = source(&env);
    let record = backup(&env, &first, &src);
    for (i, identity) in [&first, &second].into_iter().enumerate() {
        let keys = env.json(&["--identity", identity.to_str().unwrap(), "key", "list"]);
        assert_eq!(keys.as_array().unwrap().len(), 2, "{keys}");
        let target = env.path(&format!("restored-{i}"));
        let id = record["id"].as_str().unwrap();
        env.restore(id, &target, &["--identity", identity.to_str().unwrap()]);
        assert_same_tree(&tree(&src), &tree(&target));
    }

    // An identity file where the recipients belong: refused by line, its key never shown.
    let fresh = Env::new();
    let secret = std::fs::read_to_string(&first).unwrap();
    let secret = secret
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    let err = fresh.fails(
        &[
            "init",
            "--encrypt",
            "--recipients-file",
            first.to_str().unwrap(),
        ],
        1,
    );
    assert!(
        err.contains("first.txt") && err.contains("line 3") && err.contains("age identity"),
        "{err}"
    );
    assert!(!err.contains(secret), "the secret key is shown: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        !Path::new(&fresh.repo).exists(),
        "a refused init created the repository"
    );
}

/// Encrypted WAL carries no zstd checksum (docs/format.md): age's tags are what must stop a
/// damaged segment from reaching a recovering server.
#[test]
fn a_damaged_encrypted_wal_object_fails_fetch_with_126_and_writes_nothing() {
    let env = Env::new();
    let (identity, _) = encrypted(&env);
    let id = identity.to_str().unwrap();
    let name = "000000010000000000000001";
    let segment = env.path(name);
    let content = noise(11, 16 << 20);
    write(&segment, &content);
    env.json(&[
        "--identity",
        id,
        "wal",
        "push",
        "maindb",
        segment.to_str().unwrap(),
    ]);
    let dest = env.path("fetched");
    let fetch = [
        "--identity",
        id,
        "wal",
        "fetch",
        "maindb",
        name,
        dest.to_str().unwrap(),
    ];
    env.json(&fetch);
    assert_eq!(std::fs::read(&dest).unwrap(), content);
    std::fs::remove_file(&dest).unwrap();

    let key = format!("sets/maindb/wal/00000001/{name}");
    let object = Path::new(&env.repo).join(&key);
    let stored = std::fs::read(&object).unwrap();
    let mut in_payload = stored.clone();
    // A byte inside a chunk before the last one: only that chunk's tag can notice.
    let at = stored.len() / 2;
    in_payload[at] ^= 1;
    let mut in_last_chunk = stored.clone();
    *in_last_chunk.last_mut().unwrap() ^= 1;
    // The payload follows the header's MAC line and a 16-byte nonce; chunks are 64 KiB + tag.
    let mac_line = stored.windows(4).position(|w| w == b"\n---").unwrap() + 1;
    let payload = mac_line + stored[mac_line..].iter().position(|&b| b == b'\n').unwrap() + 17;
    let cut_at_a_chunk_edge = stored[..payload + 65_552].to_vec();
    let forged = "does not authenticate";
    let cases = [
        ("a flipped byte mid-stream", in_payload, forged),
        ("a flipped byte in the last tag", in_last_chunk, forged),
        ("cut at a chunk edge", cut_at_a_chunk_edge, "truncated"),
        (
            "cut inside a chunk",
            stored[..stored.len() - 100].to_vec(),
            forged,
        ),
    ];
    for (what, damaged, phrase) in cases {
        std::fs::write(&object, &damaged).unwrap();
        let err = env.fails(&fetch, 126);
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
        assert!(err.contains(&key) && err.contains(phrase), "{what}: {err}");
        assert!(
            !dest.exists(),
            "{what}: a damaged WAL segment was handed over"
        );
    }
}

#[test]
fn a_truncated_age_object_is_named_by_verify_checksum() {
    let env = Env::new();
    let (identity, _, record) = backed_up(&env);
    let id = identity.to_str().unwrap();
    let archive = object_key(&record, "archive");
    let path = Path::new(&env.repo).join(&archive);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let out = env.run(&[
        "--identity",
        id,
        "verify",
        "--all",
        "--level",
        "checksum",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report.to_string().contains(&archive), "{report}");
}

#[test]
fn passphrase_repositories_hold_sqlite_snapshots_and_never_show_the_passphrase() {
    let env = Env::new();
    let passphrase = "a-long-passphrase-that-must-not-leak";
    let run = |args: &[&str]| {
        env.cmd(args)
            .env("STRONGBOX_PASSPHRASE", passphrase)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    crate::harness::succeeded(&run(&["init", "--encrypt", "--passphrase", "--json"]));
    let db = env.path("chat.sqlite3");
    let status = Command::new("sqlite3")
        .arg(&db)
        .arg("CREATE TABLE chat_messages(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO chat_messages(body) VALUES ('secret-row-text');")
        .status()
        .unwrap();
    assert!(status.success());
    let mut outputs = vec![run(&[
        "backup",
        "sqlite",
        "chat",
        db.to_str().unwrap(),
        "--json",
        "-vvv",
    ])];
    let record = crate::harness::succeeded(&outputs[0]);
    let restored = env.path("restored.sqlite3");
    outputs.push(run(&[
        "restore",
        record["id"].as_str().unwrap(),
        "--target",
        restored.to_str().unwrap(),
        "--json",
        "-vvv",
    ]));
    crate::harness::succeeded(&outputs[1]);
    let rows = Command::new("sqlite3")
        .arg(&restored)
        .arg("SELECT body FROM chat_messages")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&rows.stdout).trim(),
        "secret-row-text"
    );
    outputs.push(run(&[
        "verify", "--all", "--level", "deep", "--json", "-vvv",
    ]));
    crate::harness::succeeded(&outputs[2]);

    for out in &outputs {
        for stream in [&out.stdout, &out.stderr] {
            assert!(
                !contains(stream, passphrase.as_bytes()),
                "{}",
                String::from_utf8_lossy(stream)
            );
            assert!(
                !contains(stream, b"AGE-SECRET-KEY"),
                "{}",
                String::from_utf8_lossy(stream)
            );
        }
    }
    for (key, bytes) in repository_files(&env) {
        for secret in [
            passphrase.as_bytes(),
            b"AGE-SECRET-KEY",
            b"secret-row-text",
            // Long, with an underscore: a name as short as "msg" turns up by chance in
            // the base64 of age headers (it failed CI once, in a run journal).
            b"chat_messages",
        ] {
            assert!(
                !contains(&bytes, secret),
                "{key} shows {:?}",
                String::from_utf8_lossy(secret)
            );
        }
    }
}

#[test]
fn encrypted_s3_repository_end_to_end() {
    let Some(bucket) = crate::harness::service("STRONGBOX_TEST_S3_BUCKET") else {
        return;
    };
    let mut env = Env::new();
    env.repo = format!(
        "s3://{bucket}/encrypted-{}-{:08x}",
        std::process::id(),
        rand_suffix()
    );
    let (identity, _) = encrypted(&env);
    let id = identity.to_str().unwrap();
    let src = source(&env);
    backup(&env, Path::new(id), &src);
    write(&src.join("more.bin"), &noise(9, 2 << 20));
    let inc = backup(&env, Path::new(id), &src);
    assert_eq!(inc["kind"], "incremental");
    let target = env.path("out");
    env.restore("media:latest", &target, &["--identity", id]);
    assert_same_tree(&tree(&src), &tree(&target));
    let report = env.json(&["--identity", id, "verify", "--all", "--level", "deep"]);
    assert_eq!(report["ok"], true, "{report}");
    env.json(&["--identity", id, "prune", "--keep-last", "1"]);
    assert_eq!(
        env.json(&["--identity", id, "snapshots"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    env.fails(&["snapshots"], 1);
}

/// `init --encrypt --passphrase` with `passphrase` in the environment, and one backup.
fn passphrase_repository(env: &Env, passphrase: &str) -> (PathBuf, Value) {
    let init = env
        .cmd(&["init", "--encrypt", "--passphrase", "--json"])
        .env("STRONGBOX_PASSPHRASE", passphrase)
        .output()
        .unwrap();
    crate::harness::succeeded(&init);
    let src = source(env);
    let out = env
        .cmd(&["backup", "files", "media", src.to_str().unwrap(), "--json"])
        .env("STRONGBOX_PASSPHRASE", passphrase)
        .output()
        .unwrap();
    (src, crate::harness::succeeded(&out))
}

/// Run with the given passphrases in the environment (`None`: unset).
fn with_passphrases(
    env: &Env,
    args: &[&str],
    old: Option<&str>,
    new: Option<&str>,
) -> std::process::Output {
    let mut cmd = env.cmd(args);
    cmd.env_remove("STRONGBOX_PASSPHRASE")
        .env_remove("STRONGBOX_NEW_PASSPHRASE")
        .stdin(Stdio::null());
    if let Some(old) = old {
        cmd.env("STRONGBOX_PASSPHRASE", old);
    }
    if let Some(new) = new {
        cmd.env("STRONGBOX_NEW_PASSPHRASE", new);
    }
    cmd.output().unwrap()
}

#[test]
fn key_passwd_replaces_one_key_file_and_the_old_passphrase_stops_working() {
    let env = Env::new();
    let (src, _) = passphrase_repository(&env, "old passphrase");
    let data_before: Vec<_> = repository_files(&env)
        .into_iter()
        .filter(|(k, _)| k.starts_with("sets/") && !k.contains("/runs/"))
        .collect();
    let keys_before = with_passphrases(
        &env,
        &["key", "list", "--json"],
        Some("old passphrase"),
        None,
    );
    let keys_before = crate::harness::succeeded(&keys_before);

    // A wrong old passphrase changes nothing.
    let wrong = with_passphrases(
        &env,
        &["key", "passwd"],
        Some("not it"),
        Some("new passphrase"),
    );
    assert_eq!(wrong.status.code(), Some(1));
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains("no key file") && err.contains("passphrase"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let changed = with_passphrases(
        &env,
        &["key", "passwd", "--json"],
        Some("old passphrase"),
        Some("new passphrase"),
    );
    let id = crate::harness::succeeded(&changed)["changed"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(keys_before[0]["id"].as_str().unwrap(), id);

    let old = with_passphrases(&env, &["snapshots"], Some("old passphrase"), None);
    assert_eq!(
        old.status.code(),
        Some(1),
        "the old passphrase still opens the repository"
    );
    let target = env.path("out");
    let restored = with_passphrases(
        &env,
        &[
            "restore",
            "media:latest",
            "--target",
            target.to_str().unwrap(),
            "--json",
        ],
        Some("new passphrase"),
        None,
    );
    crate::harness::succeeded(&restored);
    assert_same_tree(&tree(&src), &tree(&target));
    let keys_after = with_passphrases(
        &env,
        &["key", "list", "--json"],
        Some("new passphrase"),
        None,
    );
    let ids = |keys: &Value| -> Vec<String> {
        keys.as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(&keys_before),
        ids(&crate::harness::succeeded(&keys_after))
    );
    let data_after: Vec<_> = repository_files(&env)
        .into_iter()
        .filter(|(k, _)| k.starts_with("sets/") && !k.contains("/runs/"))
        .collect();
    assert_eq!(data_before, data_after, "key passwd rewrote data");

    // A recipient key has no passphrase to change; an empty new one is refused.
    let me = env.path("me.txt");
    let recipient = keygen(&me);
    let added = with_passphrases(
        &env,
        &["key", "add", "--recipient", &recipient, "--json"],
        Some("new passphrase"),
        None,
    );
    let recipient_id = crate::harness::succeeded(&added)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = with_passphrases(
        &env,
        &["key", "passwd", &recipient_id],
        Some("new passphrase"),
        Some("other"),
    );
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&recipient_id) && err.contains("recipient key"),
        "{err}"
    );
    let unknown = with_passphrases(
        &env,
        &["key", "passwd", "../nope"],
        Some("new passphrase"),
        Some("other"),
    );
    assert_eq!(unknown.status.code(), Some(1));
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        err.contains("has no key \"../nope\"") && err.contains(&recipient_id),
        "{err}"
    );
    let unset = with_passphrases(&env, &["key", "passwd"], Some("new passphrase"), None);
    assert_eq!(unset.status.code(), Some(1));
    let err = String::from_utf8_lossy(&unset.stderr);
    assert!(
        err.contains("STRONGBOX_NEW_PASSPHRASE") && err.contains("no terminal"),
        "{err}"
    );
    crate::harness::succeeded(&with_passphrases(
        &env,
        &["snapshots", "--json"],
        Some("new passphrase"),
        None,
    ));
}

/// Run `strongbox ARGS` on a pseudo-terminal (util-linux `script`) typing `input`.
fn on_terminal(env: &Env, args: &str, input: &str) -> std::process::Output {
    use std::io::Write as _;
    let command = format!(
        "{} --repo {} {args}",
        crate::harness::bin().display(),
        env.repo
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env_remove("STRONGBOX_PASSPHRASE")
        .env_remove("STRONGBOX_NEW_PASSPHRASE")
        .env_remove("STRONGBOX_IDENTITY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) on PATH");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn passphrases_are_asked_on_a_terminal_twice_when_new() {
    let env = Env::new();
    let differ = on_terminal(&env, "init --encrypt --passphrase", "one\ntwo\n");
    assert_eq!(differ.status.code(), Some(1));
    let shown = String::from_utf8_lossy(&differ.stdout);
    assert!(shown.contains("differ"), "{shown}");
    assert!(
        !Path::new(&env.repo).exists(),
        "a refused init created the repository"
    );

    let made = on_terminal(
        &env,
        "init --encrypt --passphrase",
        "typed secret\ntyped secret\n",
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stdout)
    );
    let listed = on_terminal(&env, "key list", "typed secret\n");
    let shown = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{shown}");
    assert!(
        shown.contains("Passphrase for") && shown.contains("passphrase"),
        "{shown}"
    );
    let wrong = on_terminal(&env, "key list", "other secret\n");
    assert_eq!(wrong.status.code(), Some(1));
    crate::harness::succeeded(&with_passphrases(
        &env,
        &["snapshots", "--json"],
        Some("typed secret"),
        None,
    ));
}

#[test]
fn encrypted_postgres_snapshot_restores_the_same_rows_and_hides_them() {
    let Some(pg) = strongbox_test_support::Pg::get() else {
        return;
    };
    let source = pg.create("enc");
    source.psql(
        "CREATE TABLE patients (id serial PRIMARY KEY, secret_name text);
         INSERT INTO patients (secret_name) SELECT 'row-secret-' || g FROM generate_series(1, 3000) g;",
    );
    let env = Env::new();
    let (identity, _) = encrypted(&env);
    let id = identity.to_str().unwrap();
    let out = env
        .cmd(&[
            "--identity",
            id,
            "backup",
            "postgres",
            "maindb",
            &source.url_without_password(),
            "--json",
        ])
        .env("PGPASSWORD", pg.password())
        .output()
        .unwrap();
    let record = crate::harness::succeeded(&out);
    assert_eq!(record["stats"]["tables"][0]["rows"], 3000);
    let restored = pg.name("enc_dst");
    env.json(&[
        "--identity",
        id,
        "restore",
        "maindb:latest",
        "--target",
        &restored.url(),
    ]);
    let checksum = "SELECT md5(string_agg(secret_name, ',' ORDER BY id)) FROM patients";
    assert_eq!(restored.psql(checksum), source.psql(checksum));
    let report = env.json(&["--identity", id, "verify", "--all", "--level", "deep"]);
    assert_eq!(report["ok"], true, "{report}");
    for (key, bytes) in repository_files(&env) {
        for secret in [&b"row-secret-"[..], b"patients", pg.password().as_bytes()] {
            assert!(
                !contains(&bytes, secret),
                "{key} shows {:?}",
                String::from_utf8_lossy(secret)
            );
        }
    }
    env.fails(
        &[
            "restore",
            "maindb:latest",
            "--target",
            &pg.name("enc_nokey").url(),
        ],
        1,
    );
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// One key file whose age header was cut locked out every reader: each command failed on
/// it ("not an age file"), even `key list` and the `key remove` that would have cleared it.
#[test]
fn a_damaged_key_file_locks_out_only_its_own_holder_and_can_be_removed() {
    let env = Env::new();
    let (me, my_recipient) = encrypted(&env);
    let me = me.to_str().unwrap();
    let other = env.path("other.txt");
    let recipient = keygen(&other);
    let other = other.to_str().unwrap();
    env.json(&["--identity", me, "key", "add", "--recipient", &recipient]);
    let src = env.path("src");
    write(&src.join("a.txt"), &noise(3, 10_000));
    env.json(&[
        "--identity",
        me,
        "backup",
        "files",
        "media",
        src.to_str().unwrap(),
    ]);
    let keys = env.json(&["--identity", me, "key", "list"]);
    let id_of = |recipient: &str| {
        let key = keys
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["recipient"] == recipient);
        key.unwrap()["id"].as_str().unwrap().to_string()
    };
    let (mine, theirs) = (id_of(&my_recipient), id_of(&recipient));
    let (mine, theirs) = (mine.as_str(), theirs.as_str());
    let damaged = format!("keys/{mine}.age");
    let file = Path::new(&env.repo).join(&damaged);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..20]).unwrap();

    let listed = env.json(&["--identity", other, "snapshots"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let target = env.path("restored");
    env.restore("media:latest", &target, &["--identity", other]);
    assert_same_tree(&tree(&src), &tree(&target));

    let keys = env.json(&["--identity", other, "key", "list"]);
    let kinds: std::collections::BTreeSet<(&str, &str)> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["id"].as_str().unwrap(), k["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [(mine, "damaged"), (theirs, "recipient")].into());
    let err = env.fails(&["--identity", me, "snapshots"], 1);
    assert!(
        err.contains("no key file") && err.contains(&damaged),
        "the damaged file is named beside the refusal: {err}"
    );

    let health = env.run(&[
        "--identity",
        other,
        "health",
        "--json",
        "--max-disk-usage",
        "100",
    ]);
    let report: Value = serde_json::from_slice(&health.stdout).unwrap();
    let keys = crate::harness::named_check(&report["checks"], "keys");
    assert_eq!(keys["status"], "warning", "{report}");
    assert!(keys["detail"].as_str().unwrap().contains(mine), "{report}");

    let err = env.fails(&["--identity", other, "key", "remove", theirs], 1);
    assert!(err.contains("last usable key"), "{err}");
    env.json(&["--identity", other, "key", "remove", mine]);
    assert!(!file.exists());
    let keys = env.json(&["--identity", other, "key", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
}

/// The page said any recipe works "with `age -d` in front of its `zstd -d`", which the
/// files recipe could not take: `age -d` on the last archive of a chain restored, with exit
/// 0, only the files that snapshot changed.
#[test]
fn the_files_recipe_restores_the_end_of_an_encrypted_chain_with_the_repository_key() {
    let env = Env::new();
    let (identity, _) = encrypted(&env);
    let id = identity.to_str().unwrap();
    let src = env.path("src");
    for i in 0..40 {
        write(&src.join(format!("bulk/{i}.txt")), b"unchanged");
    }
    write(&src.join("photos/a.jpg"), &noise(11, 300_000));
    write(&src.join("gone.txt"), b"deleted later");
    let full = env.backup("media", &src, &["--identity", id]);
    std::fs::remove_file(src.join("gone.txt")).unwrap();
    write(&src.join("photos/b.jpg"), &noise(12, 50_000));
    let last = env.backup("media", &src, &["--identity", id]);
    assert_eq!(last["kind"], "incremental");

    let key = env.path("repo.key");
    let scratch = env.path("one-archive");
    std::fs::create_dir_all(&scratch).unwrap();
    crate::recipe::run_doc_block(
        "Encrypted repositories",
        &[
            ("REPO", env.repo.as_str()),
            ("IDENTITY", id),
            ("KEY", key.to_str().unwrap()),
            ("OBJECT", object_key(&full, "archive").as_str()),
            ("TARGET", scratch.to_str().unwrap()),
        ],
    );
    let target = env.path("restored");
    crate::recipe::run_recipe(
        &env,
        "media",
        last["id"].as_str().unwrap(),
        &target,
        &[("KEY", key.to_str().unwrap())],
    );
    let (expected, restored) = (tree(&src), tree(&target));
    let files = |t: &std::collections::BTreeMap<String, crate::harness::Node>| {
        t.iter()
            .filter(|(_, n)| n.kind == "file")
            .map(|(p, n)| (p.clone(), n.content.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(files(&restored), files(&expected));
    assert!(!target.join("gone.txt").exists());
}

/// Regression: anyone who can write to the storage could have the next backup write data
/// they can read. (1) A key file sealed to a reader's public recipient (the age CLI does it),
/// holding a repository key they made, sorted first, with the marker's recipient changed to
/// theirs: the backup opened it, sealed everything to their key and exited 0. (2) The
/// marker's "encryption" set to "none": a backup without a key wrote plaintext.
#[test]
fn a_planted_key_or_an_unencrypted_marker_stops_writes_and_nothing_is_written() {
    let env = Env::new();
    let (identity, recipient, src) = {
        let (identity, recipient) = encrypted(&env);
        let src = source(&env);
        backup(&env, &identity, &src);
        (identity, recipient, src)
    };
    let root = Path::new(&env.repo);
    let marker_path = root.join("strongbox.json");
    let marker = std::fs::read_to_string(&marker_path).unwrap();
    let before = repository_files(&env);
    let id = identity.to_str().unwrap();

    let planted = env.path("planted.txt");
    let planted_recipient = keygen(&planted);
    // A key file holds the identity line alone.
    let secret: String = std::fs::read_to_string(&planted)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect();
    std::fs::write(&planted, secret).unwrap();
    age(&[
        &"-r",
        &recipient,
        &"-o",
        &root.join("keys/00000000.age"),
        &planted,
    ]);
    let mut altered: Value = serde_json::from_str(&marker).unwrap();
    altered["recipient"] = planted_recipient.into();
    std::fs::write(&marker_path, altered.to_string()).unwrap();
    let args = [
        "--identity",
        id,
        "backup",
        "files",
        "media",
        src.to_str().unwrap(),
    ];
    let err = env.fails(&args, 1);
    assert!(
        err.contains("may have been tampered with: key files keys/00000000.age and keys/")
            && err.contains("hold different repository keys"),
        "{err}"
    );
    // The reader's own key file removed too: the records give it away.
    let genuine: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("00000000.age"))
        .collect();
    let aside = env.path("genuine-key");
    std::fs::rename(&genuine[0], &aside).unwrap();
    let err = env.fails(&args, 1);
    assert!(
        err.contains("may have been tampered with: no record opens with the repository key keys/00000000.age"),
        "{err}"
    );
    std::fs::rename(&aside, &genuine[0]).unwrap();
    std::fs::remove_file(root.join("keys/00000000.age")).unwrap();

    let mut unencrypted: Value = serde_json::from_str(&marker).unwrap();
    unencrypted["encryption"] = "none".into();
    unencrypted.as_object_mut().unwrap().remove("recipient");
    std::fs::write(&marker_path, unencrypted.to_string()).unwrap();
    let err = env.fails(&args[2..], 1);
    assert!(
        err.contains("says it is not encrypted, but it holds key files (keys/"),
        "{err}"
    );
    // The key files gone too: the records, age files, give it away.
    std::fs::rename(root.join("keys"), env.path("keys-aside")).unwrap();
    let err = env.fails(&args[2..], 1);
    assert!(
        err.contains("says it is not encrypted, but record sets/media/snapshots/"),
        "{err}"
    );
    std::fs::rename(env.path("keys-aside"), root.join("keys")).unwrap();
    std::fs::write(&marker_path, &marker).unwrap();
    assert_eq!(repository_files(&env), before, "nothing was written");
    backup(&env, &identity, &src);
}
