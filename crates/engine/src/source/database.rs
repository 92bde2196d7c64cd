use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize, Serializer};
use strongbox_archive::Compression;
use strongbox_db_dump::{redact_conninfo, DatabaseSource, Error as DbError, SnapshotQuery};
use strongbox_manifest::{ObjectRole, SnapshotKind, SourceKind, Stats};

use super::{BackupRun, Draft, Source};
use crate::progress::Watched;
use crate::Error;

/// Database dumps are zstd streams at this level: pg_dump writes uncompressed (`-Z0`) so that
/// compression happens in the object pipeline, multithreaded.
const COMPRESSION: Compression = Compression::Zstd(3);

/// A PostgreSQL database to back up: the `postgres` kind of a set.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSpec {
    /// A libpq connection string: `postgresql://user@host/db` or `host=… dbname=…`. What it
    /// leaves out comes from PG* variables and the operating-system user; the password
    /// from the string, PGPASSWORD or `~/.pgpass`. Shown (and serialized) without it.
    #[serde(serialize_with = "redacted")]
    pub conninfo: String,
    /// Take base backups for point-in-time recovery (`pg_basebackup`) instead of dumps; the
    /// server archives its WAL into the set with `wal push`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub physical: bool,
}

fn redacted<S: Serializer>(conninfo: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_conninfo(conninfo))
}

/// Shows the connection string without its password, as serializing does.
impl fmt::Debug for PostgresSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSpec")
            .field("conninfo", &redact_conninfo(&self.conninfo))
            .field("physical", &self.physical)
            .finish()
    }
}

/// An SQLite database file to back up: the `sqlite` kind of a set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSpec {
    /// The database file.
    pub path: PathBuf,
}

/// A database as a source: its dump streams through the object pipeline into one object,
/// `<id>.pgdump.zst` or `<id>.sqlite.zst`, and its description (server version, every
/// table's exact row count) goes into the record.
pub struct DumpSource<'h> {
    database: Box<dyn DatabaseSource>,
    inside: Option<&'h mut SnapshotWork<'h>>,
}

/// Work done inside a dump's snapshot (a bundle's reference query and restore point).
pub type SnapshotWork<'h> = dyn FnMut(&mut dyn SnapshotQuery) -> Result<(), DbError> + 'h;

impl<'h> DumpSource<'h> {
    /// A source dumping `database`.
    pub fn new(database: Box<dyn DatabaseSource>) -> Self {
        DumpSource {
            database,
            inside: None,
        }
    }

    /// Run `work` inside the dump's snapshot, before the dump is written.
    pub fn with_inside(mut self, work: &'h mut SnapshotWork<'h>) -> Self {
        self.inside = Some(work);
        self
    }
}

impl std::fmt::Debug for DumpSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DumpSource")
            .field("origin", &self.database.origin())
            .finish()
    }
}

/// The data object's extension for a database kind.
pub(crate) fn dump_extension(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Postgres => "pgdump.zst",
        SourceKind::PostgresPhysical => "base.tar.zst",
        SourceKind::Sqlite | SourceKind::Files | SourceKind::Bundle => "sqlite.zst",
    }
}

impl Source for DumpSource<'_> {
    fn kind(&self) -> SourceKind {
        self.database.kind()
    }

    fn origin(&self) -> String {
        self.database.origin()
    }

    fn backup(&mut self, run: &mut BackupRun<'_>) -> Result<Draft, Error> {
        let writer = run
            .sink
            .create(dump_extension(self.database.kind()), COMPRESSION)?;
        run.progress().phase("dumping", None);
        let mut sink = Watched {
            inner: writer,
            progress: run.progress(),
            cancel: run.cancel(),
        };
        // On failure the writer is dropped unfinished, which aborts the upload: no object.
        let dumped = match self.inside.as_deref_mut() {
            Some(inside) => self.database.dump_with(&mut sink, inside),
            None => self.database.dump(&mut sink),
        };
        let mut stats = dumped.map_err(|e| run.cancel().or_cancelled(e))?;
        run.progress().finish();
        run.cancel().check()?;
        let writer = sink.inner;
        stats.bytes_stored = run.sink.finish(writer, ObjectRole::Dump)?.size;
        Ok(Draft {
            kind: SnapshotKind::Full,
            parent: None,
            compression: COMPRESSION,
            stats: Stats::Database(stats),
            errors: Vec::new(),
            warnings: Vec::new(),
        })
    }
}
