//! Database snapshots through the CLI against the real PostgreSQL that scripts/test.sh
//! starts, and SQLite files; the documented recipes with pg_restore and sqlite3.

use std::path::Path;
use std::process::Command;

use crate::harness::{object_key, Env};

/// `postgresql://user:password@host:port` of the test server, or `None` (a failure under CI).
fn pg_base() -> Option<String> {
    crate::harness::service("STRONGBOX_TEST_PG")
}

fn psql(base: &str, db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-qAt",
            "-v",
            "ON_ERROR_STOP=1",
            &format!("{base}/{db}"),
            "-c",
            sql,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A database that is dropped when the test ends.
struct Db<'a> {
    base: &'a str,
    name: String,
}

impl<'a> Db<'a> {
    fn create(base: &'a str, tag: &str) -> Self {
        let name = format!(
            "sb_{tag}_{}_{}",
            std::process::id(),
            chrono::Utc::now().timestamp_subsec_nanos()
        );
        psql(base, "postgres", &format!("CREATE DATABASE {name}"));
        Db { base, name }
    }
    fn named(base: &'a str, tag: &str) -> Self {
        Db {
            base,
            name: format!(
                "sb_{tag}_{}_{}",
                std::process::id(),
                chrono::Utc::now().timestamp_subsec_nanos()
            ),
        }
    }
    fn url(&self) -> String {
        format!("{}/{}", self.base, self.name)
    }
    fn url_without_password(&self) -> String {
        let rest = self.base.split_once("://").unwrap().1;
        let (auth, host) = rest.split_once('@').unwrap();
        format!(
            "postgresql://{}@{host}/{}",
            auth.split(':').next().unwrap(),
            self.name
        )
    }
}

impl Drop for Db<'_> {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(format!("{}/postgres", self.base))
            .args([
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

fn password(base: &str) -> String {
    let rest = base.split_once("://").unwrap().1;
    rest.split_once('@')
        .unwrap()
        .0
        .split_once(':')
        .unwrap()
        .1
        .to_string()
}

#[test]
fn postgres_backup_restore_and_the_documented_recipe_give_the_same_rows() {
    let Some(base) = pg_base() else { return };
    let source = Db::create(&base, "src");
    psql(&base, &source.name, "CREATE TYPE mood AS ENUM ('ok', 'sad');
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
        .env("PGPASSWORD", password(&base))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
        !String::from_utf8_lossy(&out.stdout).contains(&password(&base)),
        "password in the record"
    );

    let restored = Db::named(&base, "dst");
    let out = env.json(&["restore", "maindb:latest", "--target", &restored.url()]);
    assert_eq!(out["tables"].as_array().unwrap().len(), 2);
    let checksum = "SELECT md5(string_agg(p::text, ',' ORDER BY id)) FROM posts p";
    assert_eq!(
        psql(&base, &restored.name, checksum),
        psql(&base, &source.name, checksum)
    );
    assert_eq!(
        env.json(&["verify", "--all", "--level", "deep"])["ok"],
        true
    );

    // The recipe: zstd and pg_restore alone.
    let by_hand = Db::create(&base, "hand");
    let dump = Path::new(&env.repo).join(object_key(&record, "dump"));
    let script = format!(
        "zstd -dc '{}' | pg_restore --no-owner --exit-on-error --single-transaction -d '{}'",
        dump.display(),
        by_hand.url()
    );
    let status = Command::new("sh").arg("-c").arg(&script).status().unwrap();
    assert!(status.success());
    assert_eq!(
        psql(&base, &by_hand.name, "SELECT count(*) FROM users"),
        "500"
    );
    assert_eq!(
        psql(&base, &by_hand.name, checksum),
        psql(&base, &source.name, checksum)
    );
}

#[test]
fn postgres_bad_input_is_one_line_exit_1_and_no_snapshot() {
    let Some(base) = pg_base() else { return };
    let env = Env::new();
    let secret = password(&base);
    let wrong = base.replace(&format!(":{secret}@"), ":not-the-password@");
    for (conninfo, expect) in [
        (format!("{wrong}/postgres"), "password"),
        (
            "postgresql://strongbox@127.0.0.1:9/postgres".to_string(),
            "127.0.0.1",
        ),
        (
            format!("{base}/no_such_database_here"),
            "no_such_database_here",
        ),
    ] {
        let err = env.fails(&["backup", "postgres", "maindb", &conninfo], 1);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(err.contains(expect), "{expect}: {err}");
        assert!(
            !err.contains(&secret) && !err.contains("not-the-password"),
            "password leaked: {err}"
        );
    }
    // pg_dump missing from PATH.
    let db = Db::create(&base, "nopath");
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
    let count = Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT count(*) FROM msg")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "5000");

    // The recipe: zstd and sqlite3 alone.
    let dump = Path::new(&env.repo).join(object_key(&record, "dump"));
    let by_hand = env.path("by-hand.sqlite3");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' > '{}'",
            dump.display(),
            by_hand.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
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
