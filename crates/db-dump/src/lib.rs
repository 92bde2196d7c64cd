//! Database sources and restore targets for strongbox: PostgreSQL and SQLite behind two
//! traits, so that the engine drives every database the same way.
//!
//! A [`DatabaseSource`] writes a consistent dump into a stream and describes it (server
//! version, every table with its exact row count) for the snapshot record; a
//! [`DatabaseTarget`] consumes such a stream and checks the restored row counts against the
//! description.
//!
//! - PostgreSQL ([`PostgresSource`], [`PostgresTarget`]): a REPEATABLE READ transaction
//!   exports its snapshot and `pg_dump --snapshot` dumps it in the custom format; each
//!   table's rows are counted from the dump as it streams by, so the counts describe exactly
//!   what the dump holds. A restore pipes
//!   the dump into `pg_restore` in one transaction. Passwords reach the tools through
//!   `PGPASSWORD`, never through their arguments, and never show in messages or records
//!   ([`redact_conninfo`]).
//! - SQLite ([`SqliteSource`], [`SqliteTarget`]): the online backup API copies a live
//!   database; the dump is that file. A restore stages the file beside its target, checks it
//!   and swaps it in, keeping the old file as `<file>.pre-restore-<time>`.
//!
//! ```
//! use strongbox_db_dump::{DatabaseSource, DatabaseTarget, SqliteSource, SqliteTarget};
//!
//! let dir = tempfile::tempdir()?;
//! let db = dir.path().join("app.db");
//! let conn = rusqlite::Connection::open(&db)?;
//! conn.execute_batch(
//!     "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
//!      INSERT INTO users (name) VALUES ('ada'), ('grace');",
//! )?;
//!
//! let mut dump = Vec::new();
//! let stats = SqliteSource::new(&db).dump(&mut dump)?;
//! assert_eq!((stats.tables[0].name.as_str(), stats.tables[0].rows), ("users", 2));
//! assert_eq!(stats.integrity.as_deref(), Some("ok"));
//!
//! let mut target = SqliteTarget::new(dir.path().join("restored.db"));
//! assert!(target.is_empty()?);
//! let report = target.restore(&mut dump.as_slice(), &stats)?;
//! assert_eq!(report.tables, stats.tables);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod conninfo;
mod error;
mod pg_rows;
mod physical;
mod postgres;
mod sqlite;
mod tool;

use std::io::{Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use strongbox_manifest::{DatabaseStats, SourceKind, TableCount};

pub use conninfo::{holds_password, is_conninfo, redact_conninfo};
pub use error::{Error, PgError};

pub use physical::{segment_end, Archiver, BaseBackup, PhysicalSource, SegmentEnd, ServerState};
pub use postgres::{Claim, PostgresSource, PostgresTarget};
pub use sqlite::{SqliteSource, SqliteTarget};

/// A database to back up.
pub trait DatabaseSource {
    /// [`SourceKind::Postgres`] or [`SourceKind::Sqlite`].
    fn kind(&self) -> SourceKind;
    /// Where the data comes from, for the snapshot record: a redacted connection string or
    /// a file path.
    fn origin(&self) -> String;
    /// Write a consistent, uncompressed dump into `out` and describe it: server version,
    /// every table with its exact row count in the dump, the integrity check where the
    /// source has one, and the bytes written (`bytes_stored` is left to the caller).
    fn dump(&mut self, out: &mut dyn Write) -> Result<DatabaseStats, Error> {
        self.dump_with(out, &mut |_| Ok(()))
    }
    /// [`DatabaseSource::dump`], calling `inside` in the dump's snapshot (PostgreSQL: right
    /// after it is exported) before the dump is written, so that what it queries is exactly
    /// what the dump holds.
    fn dump_with(
        &mut self,
        out: &mut dyn Write,
        inside: &mut dyn FnMut(&mut dyn SnapshotQuery) -> Result<(), Error>,
    ) -> Result<DatabaseStats, Error>;
}

/// Work inside a dump's snapshot: a bundle's reference query, its restore point.
pub trait SnapshotQuery {
    /// Run `sql` and give `row` the first column of each row. A NULL or a column that is
    /// not text is an error, as is an `Err` from `row` (the reason is kept). Returns the
    /// number of rows.
    fn for_each_text(
        &mut self,
        sql: &str,
        row: &mut dyn FnMut(&str) -> Result<(), String>,
    ) -> Result<u64, Error>;
    /// Check, without running it, that `sql` returns one column, of text where the
    /// database types its columns (PostgreSQL): a query whose rows are paths.
    fn check_one_text_column(&mut self, sql: &str) -> Result<(), Error>;
    /// Create a named restore point where the server and the role allow it (PostgreSQL
    /// with `wal_level` replica or higher); its LSN, or `None`.
    fn restore_point(&mut self, name: &str) -> Result<Option<String>, Error> {
        let _ = name;
        Ok(None)
    }
}

/// A database to restore into.
pub trait DatabaseTarget {
    /// The kind of dump it takes.
    fn kind(&self) -> SourceKind;
    /// The target, redacted, for messages.
    fn describe(&self) -> String;
    /// Whether it holds no data yet; a missing database or file counts as empty.
    fn is_empty(&mut self) -> Result<bool, Error>;
    /// The file it writes, for a target that is one (SQLite): the engine refuses one that
    /// lies in the repository.
    fn file(&self) -> Option<&std::path::Path> {
        None
    }
    /// Refuse to replace the target's data with a dump recording `expected` when the
    /// restore would not leave the target as the snapshot (tables it lacks would stay).
    fn check_replacement(&mut self, _expected: &DatabaseStats) -> Result<(), Error> {
        Ok(())
    }
    /// Consume an uncompressed dump, then check the restored row counts against `expected`.
    /// A failure leaves the target as it was.
    fn restore(
        &mut self,
        dump: &mut dyn Read,
        expected: &DatabaseStats,
    ) -> Result<RestoreReport, Error>;
    /// A source reading the target's current content, for a safety dump before it is
    /// replaced; `None` when there is nothing to save.
    fn safety_source(&self) -> Option<Box<dyn DatabaseSource>> {
        None
    }
    /// Check the restored database with its own means (integrity, foreign keys, indexes)
    /// and run the operator's `checks`, for a restore test. An `Err` is a check that could
    /// not run at all.
    fn inspect(&mut self, checks: &[SqlCheck]) -> Result<Vec<Inspection>, Error> {
        let _ = checks;
        Ok(Vec::new())
    }
    /// Query the restored database: `inside` gets what a dump's snapshot gives a bundle
    /// (its reference query, re-run on a restore test's copy).
    fn query_restored(
        &mut self,
        inside: &mut dyn FnMut(&mut dyn SnapshotQuery) -> Result<(), Error>,
    ) -> Result<(), Error>;
}

/// An operator's check of a restored database: a query and what it must return. Without
/// `expect` it must return no row (each row is a problem: users without profiles, orphaned
/// rows); with `expect`, one row whose first column reads `expect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlCheck {
    /// What it checks, for the report.
    pub name: String,
    /// The SQL.
    pub query: String,
    /// The single value the query must return; default: no row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
}

impl SqlCheck {
    /// Judge what the query returned (each row as text, columns joined by `|`).
    pub fn judge(&self, rows: &[String]) -> Result<String, String> {
        let first = |n: usize| rows.iter().take(n).cloned().collect::<Vec<_>>().join("; ");
        match (&self.expect, rows) {
            (None, []) => Ok(format!("{}: no rows", self.name)),
            (None, rows) => Err(format!(
                "{}: {} row(s), first: {}",
                self.name,
                rows.len(),
                first(5)
            )),
            (Some(want), [only]) if only == want => Ok(format!("{}: {want}", self.name)),
            (Some(want), rows) => Err(format!(
                "{}: expected {want}, got {}",
                self.name,
                if rows.is_empty() {
                    "no row".to_string()
                } else {
                    first(3)
                }
            )),
        }
    }
}

/// What an [`Inspection`] of a restored database looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The database's own integrity check (SQLite `integrity_check`; PostgreSQL `ANALYZE`
    /// reads every table).
    Integrity,
    /// No row references a missing parent.
    ForeignKeys,
    /// Every btree index agrees with its table (PostgreSQL amcheck).
    Indexes,
    /// An operator's [`SqlCheck`].
    Query,
}

/// One check of a restored database: `Ok(what passed)` or `Err(what is wrong)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    /// What was looked at.
    pub probe: Probe,
    /// The outcome.
    pub result: Result<String, String>,
    /// Wall-clock seconds it took.
    pub duration_secs: f64,
}

impl Inspection {
    /// Run `check`, timing it.
    pub fn timed(probe: Probe, check: impl FnOnce() -> Result<String, String>) -> Self {
        let started = std::time::Instant::now();
        let result = check();
        Inspection {
            probe,
            result,
            duration_secs: started.elapsed().as_secs_f64(),
        }
    }
}

/// What a restore produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The restored tables with their row counts.
    pub tables: Vec<TableCount>,
    /// Where the replaced file was kept (SQLite).
    pub previous: Option<PathBuf>,
}

/// How every scratch directory's name begins.
const SCRATCH: &str = "strongbox-verify-";

/// What the name of a scratch directory of a verification (here, an SQLite dump's copy; in
/// the engine, a restore test's tree) begins with: `strongbox-verify-<pid>@<host>.`, so that
/// one a killed process left can be told from one in use and removed
/// (see [`scratch_owner`]).
pub fn scratch_prefix() -> String {
    format!(
        "{SCRATCH}{}@{}.",
        std::process::id(),
        gethostname::gethostname().to_string_lossy()
    )
}

/// The process (pid and host) whose scratch directory `name` is, if it is one.
pub fn scratch_owner(name: &str) -> Option<(u32, &str)> {
    let (pid, rest) = name.strip_prefix(SCRATCH)?.split_once('@')?;
    let (host, _) = rest.rsplit_once('.')?;
    Some((pid.parse().ok()?, host))
}

/// Deep check of a stored, uncompressed dump. PostgreSQL: `pg_restore --list` must read the
/// archive's table of contents; a base backup: a tar holding `backup_label` and
/// `global/pg_control`; SQLite: the file must open and pass `PRAGMA integrity_check`.
/// Returns a short summary such as `"42 TOC entries, dumped from PostgreSQL 15.4"`. The
/// whole stream is read either way.
pub fn verify_dump(kind: SourceKind, dump: &mut dyn Read) -> Result<String, Error> {
    match kind {
        SourceKind::Postgres => postgres::verify(dump),
        SourceKind::Sqlite => sqlite::verify(dump),
        SourceKind::PostgresPhysical => physical::verify(dump),
        SourceKind::Files | SourceKind::Bundle => Err(Error::BadDump {
            database: format!("a {} snapshot", kind.as_str()),
            reason: "it holds no database dump".to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_directory_names_the_process_that_made_it() {
        let name = format!("{}x1Y2z3", scratch_prefix());
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        assert_eq!(
            scratch_owner(&name),
            Some((std::process::id(), host.as_str()))
        );
        // (name, owner)
        let cases = [
            (
                "strongbox-verify-12@web-1.example.org.aB3dE9",
                Some((12, "web-1.example.org")),
            ),
            ("strongbox-verify-12@h.x", Some((12, "h"))),
            ("strongbox-verify-UofRY3", None),
            ("strongbox-verify-x@h.abc", None),
            ("other-12@h.abc", None),
        ];
        for (name, owner) in cases {
            assert_eq!(scratch_owner(name), owner, "{name}");
        }
    }

    #[test]
    fn sql_checks_want_no_rows_or_exactly_their_value() {
        let check = |expect: Option<&str>| SqlCheck {
            name: "c".into(),
            query: "q".into(),
            expect: expect.map(str::to_string),
        };
        type Case<'a> = (Option<&'a str>, &'a [&'a str], Result<&'a str, &'a str>);
        let cases: [Case<'_>; 6] = [
            (None, &[], Ok("c: no rows")),
            (
                None,
                &["7|bob", "9|eve"],
                Err("c: 2 row(s), first: 7|bob; 9|eve"),
            ),
            (Some("42"), &["42"], Ok("c: 42")),
            (Some("42"), &["41"], Err("c: expected 42, got 41")),
            (Some("42"), &[], Err("c: expected 42, got no row")),
            (Some("42"), &["42", "42"], Err("c: expected 42, got 42; 42")),
        ];
        for (expect, got, want) in cases {
            let got: Vec<String> = got.iter().map(|s| s.to_string()).collect();
            let judged = check(expect).judge(&got);
            assert_eq!(
                judged.as_ref().map(String::as_str).map_err(String::as_str),
                want
            );
        }
    }
}
