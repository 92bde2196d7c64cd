//! Helpers for tests against a real PostgreSQL server: `STRONGBOX_TEST_PG` holds the base
//! URL (`postgresql://user:password@127.0.0.1:5432`); each test makes its own databases.
#![allow(dead_code)]

use std::process::Command;

use tokio_postgres::{NoTls, SimpleQueryMessage};

/// The server's base URL, or `None` (after a notice) when tests should skip; under `CI=true`
/// a missing server is a failure.
pub fn pg_base() -> Option<String> {
    strongbox_test_support::Pg::get().map(|pg| pg.base)
}

/// The password in the base URL (to check it never leaks).
pub fn base_password(base: &str) -> String {
    let config: tokio_postgres::Config = base.parse().expect("STRONGBOX_TEST_PG parses");
    String::from_utf8(config.get_password().unwrap_or_default().to_vec()).unwrap()
}

/// `(host, port, user)` of the base URL.
pub fn base_parts(base: &str) -> (String, u16, String) {
    let config: tokio_postgres::Config = base.parse().expect("STRONGBOX_TEST_PG parses");
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    (
        host,
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_user().unwrap_or("postgres").to_string(),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Run `sql` (several statements allowed) on the database at `url`.
pub fn exec(url: &str, sql: &str) {
    let rt = runtime();
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect");
        tokio::spawn(connection);
        client.batch_execute(sql).await.expect(sql);
    });
}

/// The rows of one query, every column as text.
pub fn query(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let rt = runtime();
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect");
        tokio::spawn(connection);
        client
            .simple_query(sql)
            .await
            .expect(sql)
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    })
}

/// The single value of a query.
pub fn value(url: &str, sql: &str) -> String {
    query(url, sql)[0][0].clone().unwrap_or_default()
}

/// A database of its own for one test, dropped at the end.
pub struct TestDb {
    base: String,
    pub name: String,
}

impl TestDb {
    /// A unique name, not created (a restore target).
    pub fn named(base: &str, prefix: &str) -> Self {
        TestDb {
            base: base.to_string(),
            name: format!(
                "sbx_{prefix}_{}_{:06x}",
                std::process::id(),
                rand::random::<u32>() & 0xff_ffff
            ),
        }
    }

    /// A new, empty database.
    pub fn create(base: &str, prefix: &str) -> Self {
        let db = Self::named(base, prefix);
        exec(&db.admin_url(), &format!("CREATE DATABASE \"{}\"", db.name));
        db
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.base, self.name)
    }

    fn admin_url(&self) -> String {
        format!("{}/postgres", self.base)
    }

    pub fn exists(&self) -> bool {
        value(
            &self.admin_url(),
            &format!(
                "SELECT count(*) FROM pg_database WHERE datname = '{}'",
                self.name
            ),
        ) == "1"
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let url = self.admin_url();
        // Never panic in drop (a failing test is already unwinding).
        let _ = std::panic::catch_unwind(|| exec(&url, &sql));
    }
}

/// `pg_dump --schema-only` of a database, without the lines that name it or vary per run.
pub fn schema(base: &str, db: &str) -> String {
    let (host, port, user) = base_parts(base);
    let output = Command::new("pg_dump")
        .args(["--schema-only", "--no-owner"])
        .env("PGHOST", host)
        .env("PGPORT", port.to_string())
        .env("PGUSER", user)
        .env("PGPASSWORD", base_password(base))
        .env("PGDATABASE", db)
        .output()
        .expect("pg_dump runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|l| {
            !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
        })
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `schema.table -> md5 of all its rows` for every user table.
pub fn checksums(url: &str) -> Vec<(String, String)> {
    let tables = query(
        url,
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' \
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    );
    tables
        .into_iter()
        .map(|row| {
            let table = row[0].clone().unwrap();
            let sum = value(
                url,
                &format!(
                    "SELECT coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), 'empty') FROM {table} t"
                ),
            );
            (table, sum)
        })
        .collect()
}

/// A TCP port on 127.0.0.1 that nothing listens on.
pub fn unused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
