//! Database sources and restore targets for strongbox: PostgreSQL and SQLite behind two
//! traits, so that the engine drives every database the same way.
//!
//! A [`DatabaseSource`] writes a consistent dump into a stream and describes it (server
//! version, every table with its exact row count) for the snapshot record; a
//! [`DatabaseTarget`] consumes such a stream and checks the restored row counts against the
//! description.
//!
//! - PostgreSQL ([`PostgresSource`], [`PostgresTarget`]): a REPEATABLE READ transaction
//!   exports its snapshot; the row counts are taken in it and `pg_dump --snapshot` dumps it in
//!   the custom format, so the counts describe exactly what the dump holds. A restore pipes
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
mod postgres;
mod sqlite;
mod tool;

use std::io::{Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use strongbox_manifest::{DatabaseStats, SourceKind, TableCount};

pub use conninfo::{is_conninfo, redact_conninfo};
pub use error::{Error, PgError};
pub use postgres::{PostgresSource, PostgresTarget};
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
    fn dump(&mut self, out: &mut dyn Write) -> Result<DatabaseStats, Error>;
}

/// A database to restore into.
pub trait DatabaseTarget {
    /// The kind of dump it takes.
    fn kind(&self) -> SourceKind;
    /// The target, redacted, for messages.
    fn describe(&self) -> String;
    /// Whether it holds no data yet; a missing database or file counts as empty.
    fn is_empty(&mut self) -> Result<bool, Error>;
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
}

/// What a restore produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The restored tables with their row counts.
    pub tables: Vec<TableCount>,
    /// Where the replaced file was kept (SQLite).
    pub previous: Option<PathBuf>,
}

/// Deep check of a stored, uncompressed dump. PostgreSQL: `pg_restore --list` must read the
/// archive's table of contents; SQLite: the file must open and pass `PRAGMA integrity_check`.
/// Returns a short summary such as `"42 TOC entries, dumped from PostgreSQL 15.4"`. The
/// whole stream is read either way.
pub fn verify_dump(kind: SourceKind, dump: &mut dyn Read) -> Result<String, Error> {
    match kind {
        SourceKind::Postgres => postgres::verify(dump),
        SourceKind::Sqlite => sqlite::verify(dump),
        SourceKind::Files => Err(Error::BadDump {
            database: "a files snapshot".to_string(),
            reason: "it holds no database dump".to_string(),
        }),
    }
}
