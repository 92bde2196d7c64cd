//! Database snapshots through the CLI against the real PostgreSQL that scripts/test.sh
//! starts, and SQLite files; the documented recipes with pg_restore and sqlite3; libpq's
//! conventions as a new user meets them.

use std::fs;
use std::path::Path;
use std::process::Command;

use strongbox_test_support::Pg;

use crate::harness::Env;
use crate::recipe::run_doc_block;

#[test]
fn postgres_backup_restore_and_the_documented_recipe_give_the_same_rows() {
    let Some(pg) = Pg::get() else { return };
    let source = pg.create("src");
    source.psql("CREATE TYPE mood AS ENUM ('ok', 'sad');
        CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, mood mood);
        CREATE TABLE posts (id bigserial PRIMARY KEY, user_id int REFERENCES users(id), body text);
        INSERT INTO users (name, mood) SELECT 'üser ' || g, 'ok' FROM generate_series(1, 500) g;
        INSERT INTO posts (user_id, body) SELECT 1 + g % 500, repeat('x', g % 50) FROM generate_series(1, 20000) g;");
    let env = Env::new();
    // The password travels in PGPASSWORD, not on the command line.
    let out = env
        .cmd(&[
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
    assert_eq!(record["source"], "postgres");
    let tables = record["stats"]["tables"].as_array().unwrap();
    let counts: Vec<(String, u64)> = tables
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("public.posts".to_string(), 20000),
            ("public.users".to_string(), 500)
        ]
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(pg.password()),
        "password in the record"
    );

    let restored = pg.name("dst");
    // A dry run says what the restore would do and creates nothing.
    let plan = env.json(&[
        "restore",
        "maindb:latest",
        "--target",
        &restored.url(),
        "--dry-run",
    ]);
    assert_eq!(
        (&plan["source"], &plan["replaces"]),
        (&"postgres".into(), &serde_json::Value::Null),
        "{plan}"
    );
    assert!(!plan.to_string().contains(pg.password()), "{plan}");
    let exists = format!(
        "SELECT count(*) FROM pg_database WHERE datname = '{}'",
        restored.name
    );
    assert_eq!(source.psql(&exists), "0");
    let out = env.json(&["restore", "maindb:latest", "--target", &restored.url()]);
    assert_eq!(out["tables"].as_array().unwrap().len(), 2);
    // Into the database that now holds data: refused as the restore would be, and with
    // --force it says what would be replaced.
    let dry = [
        "restore",
        "maindb:latest",
        "--target",
        &restored.url(),
        "--dry-run",
    ];
    let err = env.fails(&dry, 1);
    assert!(
        err.contains("not empty") && err.contains("--force"),
        "{err}"
    );
    let plan = env.json(&[&dry[..], &["--force"]].concat());
    assert!(plan["replaces"].is_string(), "{plan}");
    let checksum = "SELECT md5(string_agg(p::text, ',' ORDER BY id)) FROM posts p";
    assert_eq!(restored.psql(checksum), source.psql(checksum));
    // Regression: a forced restore left the tables the snapshot lacks beside the restored
    // ones (pg_restore --clean drops the dump's own) and said the counts matched. Refused
    // before anything is written, the safety snapshot included; the dry run says so too.
    restored.psql("CREATE TABLE extra (x int); INSERT INTO extra VALUES (1)");
    let url = restored.url();
    let forced = ["restore", "maindb:latest", "--target", &url, "--force"];
    for args in [&forced[..], &[&forced[..], &["--dry-run"]].concat()] {
        let err = env.fails(args, 1);
        assert!(
            err.contains("holds tables the snapshot lacks (public.extra)"),
            "{err}"
        );
    }
    assert_eq!(restored.psql("SELECT count(*) FROM extra"), "1");
    let sets = env.json(&["snapshots"]).to_string();
    assert!(!sets.contains("maindb-safety"), "{sets}");
    restored.psql("DROP TABLE extra");
    assert_eq!(
        env.json(&["verify", "--all", "--level", "deep"])["ok"],
        true
    );
    // Regression: a set of dumps was shown as an empty WAL archive.
    let err = env.fails(&["wal", "window", "maindb"], 1);
    assert!(
        err.contains("WAL window of set maindb") && err.contains("not a base backup"),
        "{err}"
    );

    // The documented recipe: createdb, zstd and pg_restore alone.
    let by_hand = pg.name("hand");
    let id = record["id"].as_str().unwrap();
    let mut vars = pg.env().to_vec();
    vars.extend([
        ("REPO", env.repo.as_str()),
        ("SET", "maindb"),
        ("SNAP", id),
        ("DB", by_hand.name.as_str()),
    ]);
    run_doc_block("PostgreSQL snapshots", &vars);
    assert_eq!(by_hand.psql("SELECT count(*) FROM users"), "500");
    assert_eq!(by_hand.psql(checksum), source.psql(checksum));
}

#[test]
fn postgres_bad_input_is_one_line_exit_1_and_no_snapshot() {
    let Some(pg) = Pg::get() else { return };
    let base = pg.base.clone();
    let env = Env::new();
    let secret = pg.password().to_string();
    let wrong = base.replace(&format!(":{secret}@"), ":not-the-password@");
    for (conninfo, expect, warned) in [
        (format!("{wrong}/postgres"), "password", true),
        (
            "postgresql://strongbox@127.0.0.1:9/postgres".to_string(),
            "127.0.0.1",
            false,
        ),
        (
            format!("{base}/no_such_database_here"),
            "no_such_database_here",
            true,
        ),
    ] {
        let err = env.fails(&["backup", "postgres", "maindb", &conninfo], 1);
        // Warnings aside (the first attempt also makes the repository, and says so).
        let (warnings, lines): (Vec<&str>, Vec<&str>) = err
            .lines()
            .partition(|l| l.starts_with("strongbox: warning: "));
        assert_eq!(lines.len(), 1, "{err}");
        let password = warnings
            .iter()
            .filter(|l| l.contains("a connection string on the command line"))
            .count();
        assert_eq!(password, usize::from(warned), "{err}");
        assert!(err.contains(expect), "{expect}: {err}");
        assert!(
            !err.contains(&secret) && !err.contains("not-the-password"),
            "password leaked: {err}"
        );
    }
    // pg_dump missing from PATH.
    let db = pg.create("nopath");
    let psql_dir = Path::new(
        &String::from_utf8(
            Command::new("sh")
                .args(["-c", "command -v psql"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .to_string(),
    )
    .parent()
    .unwrap()
    .to_path_buf();
    let path: Vec<String> = std::env::var("PATH")
        .unwrap()
        .split(':')
        .filter(|p| Path::new(p) != psql_dir && !Path::new(p).join("pg_dump").exists())
        .map(String::from)
        .collect();
    let out = env
        .cmd(&["backup", "postgres", "maindb", &db.url()])
        .env("PATH", path.join(":"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pg_dump"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !Path::new(&env.repo).join("sets/maindb/snapshots").exists()
            || env.snapshot_ids().is_empty()
    );
}

/// libpq's tools take a password in a connection string; so does strongbox, saying once
/// that the process list shows it to every user of the host.
#[test]
fn a_password_on_the_command_line_is_warned_of_and_never_shown() {
    let env = Env::new();
    let secret = "pw-never-shown";
    let url = format!("postgresql://u:{secret}@127.0.0.1:9/app");
    let keywords = format!("host=127.0.0.1 port=9 password={secret} dbname=app");
    let target = format!("--target={url}");
    let member = format!("maindb={url}");
    let cases: [(&[&str], bool); 5] = [
        (&["backup", "postgres", "maindb", &url], true),
        (&["backup", "postgres", "maindb", &keywords], true),
        (&["restore", "maindb:latest", &target], true),
        (&["restore", "platform:latest", "--target", &member], true),
        (
            &[
                "backup",
                "postgres",
                "maindb",
                "postgresql://u@127.0.0.1:9/app",
            ],
            false,
        ),
    ];
    for (args, warned) in cases {
        let out = env.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {stderr}");
        let warnings = stderr.matches("in the process list").count();
        assert_eq!(warnings, usize::from(warned), "{args:?}: {stderr}");
        assert!(!stderr.contains(secret), "{args:?}: {stderr}");
    }
}

#[test]
fn sqlite_backup_restore_recipe_and_safe_replacement() {
    let env = Env::new();
    let db = env.path("chat.sqlite3");
    let status = Command::new("sqlite3").arg(&db).arg("PRAGMA journal_mode=WAL; CREATE TABLE msg(id INTEGER PRIMARY KEY, body TEXT); WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x < 5000) INSERT INTO msg(body) SELECT 'message ' || x FROM n;").output().unwrap();
    assert!(status.status.success());
    let record = env.json(&["backup", "sqlite", "chat", db.to_str().unwrap()]);
    assert_eq!(record["stats"]["tables"][0]["rows"], 5000);
    assert_eq!(record["stats"]["integrity"], "ok");

    // Replace the live file: needs --force, keeps the previous file.
    Command::new("sqlite3")
        .arg(&db)
        .arg("DELETE FROM msg WHERE id > 10;")
        .output()
        .unwrap();
    let err = env.fails(
        &["restore", "chat:latest", "--target", db.to_str().unwrap()],
        1,
    );
    assert!(err.contains("--force"), "{err}");
    let out = env.restore("chat:latest", &db, &["--force"]);
    assert!(out["previous"].as_str().unwrap().contains("pre-restore"));
    let rows = || {
        let count = Command::new("sqlite3")
            .arg(&db)
            .arg("SELECT count(*) FROM msg")
            .output()
            .unwrap();
        String::from_utf8_lossy(&count.stdout).trim().to_string()
    };
    assert_eq!(rows(), "5000");
    let safety = |env: &Env| {
        env.json(&["snapshots", "chat-safety"])
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(safety(&env), 1);

    // A file that is no database any more (what a restore repairs) is kept aside, not
    // read for a safety snapshot, which used to fail and block the restore.
    fs::write(&db, b"junk, not a database").unwrap();
    let out = env.restore("chat:latest", &db, &["--force"]);
    let previous = out["previous"].as_str().unwrap();
    assert_eq!(fs::read(previous).unwrap(), b"junk, not a database");
    assert_eq!(safety(&env), 1);
    assert_eq!(rows(), "5000");

    // Regression: restored through a symbolic link (as the application may open it), the
    // link was replaced by a file and the file it names, which the backup had read, kept
    // its old data. The file the link names is restored; the link stays.
    let link = env.path("link.sqlite3");
    std::os::unix::fs::symlink(&db, &link).unwrap();
    Command::new("sqlite3")
        .arg(&db)
        .arg("DELETE FROM msg WHERE id > 10;")
        .output()
        .unwrap();
    env.restore("chat:latest", &link, &["--force"]);
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(rows(), "5000");

    // The safety set is not on a schedule: its age is no concern of health, which used to
    // turn critical two days after every forced restore.
    let out = env.run(&[
        "health",
        "--json",
        "--max-age",
        "1s",
        "--max-disk-usage",
        "100",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = report["checks"].as_array().unwrap();
    let names = |set: &str| -> Vec<&str> {
        checks
            .iter()
            .filter(|c| c["set"] == set)
            .map(|c| c["name"].as_str().unwrap())
            .collect()
    };
    assert!(names("chat").contains(&"backup-age"), "{report:#}");
    assert!(!names("chat-safety").is_empty(), "{report:#}");
    assert!(!names("chat-safety").contains(&"backup-age"), "{report:#}");

    // The documented recipe: zstd and sqlite3 alone.
    let by_hand = env.path("by-hand.sqlite3");
    let id = record["id"].as_str().unwrap();
    let printed = run_doc_block(
        "SQLite snapshots",
        &[
            ("REPO", env.repo.as_str()),
            ("SET", "chat"),
            ("SNAP", id),
            ("FILE", by_hand.to_str().unwrap()),
        ],
    );
    assert_eq!(printed, "ok\n");
    let check = Command::new("sqlite3")
        .arg(&by_hand)
        .arg("PRAGMA integrity_check; SELECT count(*) FROM msg;")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&check.stdout), "ok\n5000\n");

    // A corrupt source is refused, naming the file, with no snapshot.
    let bad = env.path("bad.sqlite3");
    std::fs::write(
        &bad,
        b"this is not a database at all, just text padding it out ......",
    )
    .unwrap();
    let err = env.fails(&["backup", "sqlite", "broken", bad.to_str().unwrap()], 1);
    assert!(err.contains("bad.sqlite3"), "{err}");
    assert!(env
        .json(&["snapshots", "broken"])
        .as_array()
        .unwrap()
        .is_empty());
}

/// The user the system's PostgreSQL runs as, when this test may act as it: as root, with
/// `runuser`, and the server listening on Debian's socket directory.
fn as_postgres() -> Option<()> {
    let root = rustix::process::geteuid().is_root();
    let runuser = Path::new("/usr/sbin/runuser").exists() || Path::new("/sbin/runuser").exists();
    let socket = std::fs::read_dir("/var/run/postgresql")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".s.PGSQL."))
        })
        .unwrap_or(false);
    if root && runuser && socket {
        return Some(());
    }
    let why = format!("root {root}, runuser {runuser}, socket in /var/run/postgresql {socket}");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true runs as root beside the system cluster: {why}"
    );
    eprintln!("skipping: cannot act as the postgres user ({why})");
    None
}

#[test]
fn runuser_postgres_backs_up_and_restores_a_keyword_conninfo_as_libpq_would() {
    let (Some(pg), Some(())) = (Pg::get(), as_postgres()) else {
        return;
    };
    let source = pg.create("peer_src");
    source.psql(
        "CREATE TABLE notes (id int PRIMARY KEY); INSERT INTO notes SELECT generate_series(1, 42);",
    );
    let restored = pg.name("peer_dst");
    let env = Env::new();
    // The postgres user runs its own copy of the binary (the build directory may be private
    // to root) and owns the repository, as it would on a host it backs up.
    let bin = env.path("strongbox");
    std::fs::copy(crate::harness::bin(), &bin).unwrap();
    let chown = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(env.dir.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let run = |args: &[&str]| {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&bin)
            .args(["--repo", &env.repo])
            .args(args)
            .arg("--json")
            // Nothing but libpq's defaults: no PG* variables, and a USER that is not the
            // user the process runs as.
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("USER", "root")
            .output()
            .unwrap()
    };
    // No user, no host: the operating-system user over the local socket (peer login).
    let dbname = format!("dbname={}", source.name);
    let out = run(&["backup", "postgres", "maindb", &dbname]);
    let record = crate::harness::succeeded(&out);
    assert_eq!(record["stats"]["tables"][0]["rows"], 42);
    assert_eq!(record["origin"], dbname);

    // A keyword connection string is a database target, never a file name.
    let target = format!("host=/var/run/postgresql dbname={}", restored.name);
    crate::harness::succeeded(&run(&["restore", "maindb:latest", "--target", &target]));
    assert_eq!(restored.psql("SELECT count(*) FROM notes"), "42");
    assert!(!Path::new(&target).exists() && !env.path(&target).exists());
}

#[test]
fn a_keyword_target_over_tcp_restores_with_the_password_from_the_environment() {
    let Some(pg) = Pg::get() else { return };
    let source = pg.create("kw_src");
    source.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2), (3);");
    let restored = pg.name("kw_dst");
    let env = Env::new();
    env.json(&["backup", "postgres", "maindb", &source.url()]);
    let [(_, host), (_, port), (_, user), (_, password)] = pg.env();
    let target = format!(
        "host={host} port={port} user={user} dbname={}",
        restored.name
    );
    let out = env
        .cmd(&["restore", "maindb:latest", "--target", &target, "--json"])
        .env("PGPASSWORD", password)
        .output()
        .unwrap();
    let outcome = crate::harness::succeeded(&out);
    assert_eq!(outcome["tables"][0]["rows"], 3);
    assert_eq!(restored.psql("SELECT count(*) FROM t"), "3");

    // The same keyword string for an SQLite snapshot is refused, not created as a file.
    let db = env.path("chat.sqlite3");
    Command::new("sqlite3")
        .arg(&db)
        .arg("CREATE TABLE m(x); INSERT INTO m VALUES (1);")
        .output()
        .unwrap();
    env.json(&["backup", "sqlite", "chat", db.to_str().unwrap()]);
    let err = env.fails(&["restore", "chat:latest", "--target", "dbname=chat"], 1);
    assert!(err.contains("connection string"), "{err}");
    assert!(!Path::new("dbname=chat").exists());
}
