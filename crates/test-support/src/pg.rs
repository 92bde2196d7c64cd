use std::process::Command;

use crate::{service, unique};

/// The PostgreSQL server of the run: `STRONGBOX_TEST_PG`, a base URL with user and password
/// (`postgresql://user:password@127.0.0.1:5432`).
#[derive(Debug, Clone)]
pub struct Pg {
    /// The base URL, without a database.
    pub base: String,
    host: String,
    port: String,
    user: String,
    password: String,
}

impl Pg {
    /// The server, or `None` (a failure under `CI=true`).
    pub fn get() -> Option<Pg> {
        let base = service("STRONGBOX_TEST_PG")?
            .trim_end_matches('/')
            .to_string();
        let rest = base
            .split_once("://")
            .expect("STRONGBOX_TEST_PG is a URL")
            .1;
        let (userinfo, hostport) = rest.rsplit_once('@').expect("STRONGBOX_TEST_PG has a user");
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
        Some(Pg {
            host: host.to_string(),
            port: port.to_string(),
            user: user.to_string(),
            password: password.to_string(),
            base,
        })
    }

    /// The password of the test role (to check that it never leaks).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The URL of database `db`, password included.
    pub fn url(&self, db: &str) -> String {
        format!("{}/{db}", self.base)
    }

    /// The URL of database `db` without the password (give it through `PGPASSWORD`).
    pub fn url_without_password(&self, db: &str) -> String {
        format!(
            "postgresql://{}@{}:{}/{db}",
            self.user, self.host, self.port
        )
    }

    /// libpq's variables for the server, password included, for a child process.
    pub fn env(&self) -> [(&'static str, &str); 4] {
        [
            ("PGHOST", self.host.as_str()),
            ("PGPORT", self.port.as_str()),
            ("PGUSER", self.user.as_str()),
            ("PGPASSWORD", self.password.as_str()),
        ]
    }

    /// Run `sql` with psql on database `db`; returns its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let output = Command::new("psql")
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .envs(self.env())
            .env("PGDATABASE", db)
            .output()
            .expect("psql runs");
        assert!(
            output.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("psql prints UTF-8")
            .trim()
            .to_string()
    }

    /// A database name no other test uses, `sb_<tag>_…`, not yet created.
    pub fn name(&self, tag: &str) -> TempDb {
        TempDb {
            pg: self.clone(),
            name: unique(&format!("sb_{tag}")),
        }
    }

    /// A new, empty database, dropped when the test ends.
    pub fn create(&self, tag: &str) -> TempDb {
        let db = self.name(tag);
        self.psql("postgres", &format!("CREATE DATABASE {}", db.name));
        db
    }
}

/// A database dropped (if it exists) when dropped itself.
#[derive(Debug)]
pub struct TempDb {
    pg: Pg,
    /// The database's name.
    pub name: String,
}

impl TempDb {
    /// Its URL, password included.
    pub fn url(&self) -> String {
        self.pg.url(&self.name)
    }

    /// Its URL without the password.
    pub fn url_without_password(&self) -> String {
        self.pg.url_without_password(&self.name)
    }

    /// Run `sql` in it.
    pub fn psql(&self, sql: &str) -> String {
        self.pg.psql(&self.name, sql)
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let _ = Command::new("psql")
            .args(["-X", "-q", "-c", &sql])
            .envs(self.pg.env())
            .env("PGDATABASE", "postgres")
            .output();
    }
}
