//! SQLite: SQLite's online backup API copies a live database consistently (also in WAL mode,
//! while others write); the copy is the dump, and a restore swaps a checked copy in.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use strongbox_manifest::{DatabaseStats, SourceKind, TableCount};

use crate::conninfo::quote_ident;
use crate::tool::{copy, CopyError};
use crate::{
    DatabaseSource, DatabaseTarget, Error, Inspection, Probe, RestoreReport, SnapshotQuery,
    SqlCheck,
};

/// First bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";
/// How long a backup waits for a writer holding an exclusive lock (rollback-journal mode).
const LOCK_WAIT: Duration = Duration::from_secs(300);
/// Files SQLite keeps beside a database.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|e| Error::io("resolving", path, e))
}

/// How thoroughly a copy's structure is checked. `quick_check` reads every page and checks
/// the b-trees but not that each index matches its table, at a tenth of `integrity_check`'s
/// cost: enough where the bytes are proven otherwise (backups, whose copy the online backup
/// API made; restores, whose bytes match the record's SHA-256). Deep verification and
/// restore tests run the full check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Quick,
    Full,
}

impl Check {
    fn pragma(self) -> &'static str {
        match self {
            Check::Quick => "quick_check",
            Check::Full => "integrity_check",
        }
    }
}

/// The check's answer on one line: `ok`, or the problems found.
fn run_check(conn: &Connection, file: &Path, check: Check) -> Result<String, Error> {
    let run = || -> rusqlite::Result<Vec<String>> {
        let mut statement = conn.prepare(&format!("PRAGMA {}", check.pragma()))?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        rows.collect()
    };
    let rows = run().map_err(|e| Error::sqlite("checking integrity", file, e))?;
    // The check reports up to a hundred problems, some over several lines; the first few
    // say enough for a one-line message.
    let mut result = crate::error::one_line(&rows.join("\n"));
    if result.len() > 500 {
        let cut = (0..=500)
            .rev()
            .find(|&i| result.is_char_boundary(i))
            .unwrap_or(0);
        result.truncate(cut);
        result.push_str(" …");
    }
    Ok(result)
}

/// Tables (sorted) with exact row counts; `file` names the database in errors.
fn count_tables(conn: &Connection, file: &Path) -> Result<Vec<TableCount>, Error> {
    let names = || -> rusqlite::Result<Vec<String>> {
        // Virtual tables are left out: counting one may need a module this build lacks, and
        // their shadow tables, which hold the data, are counted.
        let mut statement = conn.prepare(
            r"SELECT name FROM sqlite_master
              WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'
                AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL TABLE%'",
        )?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        rows.collect()
    };
    let mut tables = Vec::new();
    for name in names().map_err(|e| Error::sqlite("listing tables", file, e))? {
        let rows: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM main.{}", quote_ident(&name)),
                [],
                |row| row.get(0),
            )
            .map_err(|e| Error::sqlite("counting rows", file, e))?;
        tables.push(TableCount {
            name,
            rows: rows as u64,
        });
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tables)
}

fn sqlite_version(conn: &Connection, file: &Path) -> Result<String, Error> {
    let version: String = conn
        .query_row("SELECT sqlite_version()", [], |row| row.get(0))
        .map_err(|e| Error::sqlite("reading the SQLite version", file, e))?;
    Ok(format!("SQLite {version}"))
}

/// Close `conn` after folding any write-ahead log into the main file, so the file alone is
/// the whole database.
fn close(conn: Connection, file: &Path) -> Result<(), Error> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(|e| Error::sqlite("checkpointing", file, e))?;
    conn.close()
        .map_err(|(_, e)| Error::sqlite("closing", file, e))?;
    let wal = with_suffix(file, "-wal");
    match fs::metadata(&wal) {
        Ok(meta) if meta.len() > 0 => Err(Error::io(
            "checkpointing",
            wal,
            io::Error::other("the write-ahead log was not folded into the database"),
        )),
        _ => Ok(()),
    }
}

/// An SQLite database file to back up.
#[derive(Debug, Clone)]
pub struct SqliteSource {
    path: PathBuf,
}

impl SqliteSource {
    /// A source for the database file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteSource { path: path.into() }
    }

    /// Copy the live database into `copy` with the online backup API.
    fn online_copy(&self, source: &Path, copy: &Path) -> Result<(), Error> {
        let src = Connection::open_with_flags(
            source,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::sqlite("opening", source, e))?;
        let mut dst =
            Connection::open(copy).map_err(|e| Error::sqlite("creating a copy", copy, e))?;
        // The copy is a scratch file, streamed and deleted: syncing it to disk buys nothing
        // (the stored object is made durable on its own), and cost a write-back of the whole
        // database before the stream could start.
        dst.execute_batch("PRAGMA synchronous = OFF")
            .map_err(|e| Error::sqlite("creating a copy", copy, e))?;
        let backup = Backup::new(&src, &mut dst)
            .map_err(|e| Error::sqlite("starting a backup", source, e))?;
        // All pages in one step: one read transaction, so the copy is one consistent state.
        // Stepping in pieces would restart whenever another process writes.
        let started = Instant::now();
        loop {
            match backup.step(-1) {
                Ok(StepResult::Done) => break,
                Ok(StepResult::Busy | StepResult::Locked) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(StepResult::Busy | StepResult::Locked) => {
                    return Err(Error::io(
                        "copying",
                        source,
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the database stayed locked for {}s", LOCK_WAIT.as_secs()),
                        ),
                    ))
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(Error::sqlite(
                        "copying with the online backup API",
                        source,
                        e,
                    ))
                }
            }
        }
        drop(backup);
        close(dst, copy)
    }
}

impl DatabaseSource for SqliteSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Sqlite
    }

    fn origin(&self) -> String {
        std::path::absolute(&self.path)
            .unwrap_or_else(|_| self.path.clone())
            .display()
            .to_string()
    }

    fn dump_with(
        &mut self,
        out: &mut dyn Write,
        inside: &mut dyn FnMut(&mut dyn SnapshotQuery) -> Result<(), Error>,
    ) -> Result<DatabaseStats, Error> {
        let source = absolute(&self.path)?;
        let meta = fs::metadata(&source).map_err(|e| Error::io("opening", &source, e))?;
        if !meta.is_file() {
            return Err(Error::io(
                "opening",
                &source,
                io::Error::other("not a regular file"),
            ));
        }
        // The backup API writes into a database connection, and that needs a file: the copy
        // is staged in a private temporary directory, then streamed from there.
        let dir = tempfile::Builder::new()
            .prefix("strongbox-sqlite-")
            .tempdir()
            .map_err(|e| Error::io("creating a temporary directory for", &source, e))?;
        let staged = dir.path().join("copy.sqlite");
        self.online_copy(&source, &staged)?;

        let conn = Connection::open(&staged).map_err(|e| Error::sqlite("opening", &source, e))?;
        let tables = count_tables(&conn, &source)?;
        let server_version = sqlite_version(&conn, &source)?;
        inside(&mut SqliteQuery {
            conn: &conn,
            file: &source,
        })?;
        // The check reads every page, and so does the stream: they run side by side. A
        // failed check fails the backup, whose record is then never written.
        let (integrity, streamed) = std::thread::scope(|scope| {
            let checking = scope.spawn(|| {
                let integrity = run_check(&conn, &source, Check::Quick)?;
                close(conn, &staged)?;
                Ok::<_, Error>(integrity)
            });
            let streamed = stream_copy(&staged, &source, out);
            let integrity = checking
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (integrity, streamed)
        });
        let integrity = integrity?;
        if integrity != "ok" {
            return Err(Error::Integrity {
                file: source,
                check: Check::Quick.pragma(),
                result: integrity,
            });
        }
        let bytes_dumped = streamed?;
        tracing::info!(file = %source.display(), tables = tables.len(), bytes_dumped, "copied");
        Ok(DatabaseStats {
            server_version,
            tables,
            bytes_dumped,
            bytes_stored: 0,
            integrity: Some(integrity),
        })
    }
}

/// Stream the staged copy of `source` into `out`; the bytes written.
fn stream_copy(staged: &Path, source: &Path, out: &mut dyn Write) -> Result<u64, Error> {
    let mut file = File::open(staged).map_err(|e| Error::io("opening", staged, e))?;
    let mut head = Vec::new();
    copy(&mut file, out, &mut head, 0).map_err(|e| match e {
        CopyError::Read(e) => Error::io("reading", staged, e),
        CopyError::Write(e) => Error::Stream {
            operation: "writing the dump",
            database: source.display().to_string(),
            source: e,
        },
    })
}

/// Queries on the consistent copy the dump is made of.
struct SqliteQuery<'a> {
    conn: &'a Connection,
    file: &'a Path,
}

impl SnapshotQuery for SqliteQuery<'_> {
    fn for_each_text(
        &mut self,
        sql: &str,
        row: &mut dyn FnMut(&str) -> Result<(), String>,
    ) -> Result<u64, Error> {
        use rusqlite::types::ValueRef;
        let failed = |e| Error::sqlite("running the query on", self.file, e);
        let bad = |reason: String| Error::BadRows {
            database: self.file.display().to_string(),
            reason,
        };
        let mut statement = self.conn.prepare(sql).map_err(failed)?;
        let mut rows = statement.query([]).map_err(failed)?;
        let mut count = 0;
        while let Some(next) = rows.next().map_err(failed)? {
            match next.get_ref(0).map_err(failed)? {
                ValueRef::Text(text) => {
                    let text = std::str::from_utf8(text)
                        .map_err(|_| bad("returned text that is not UTF-8".to_string()))?;
                    row(text).map_err(bad)?;
                }
                ValueRef::Null => return Err(bad("returned a NULL".to_string())),
                other => {
                    return Err(bad(format!(
                        "returned a value of type {}; it must return text",
                        other.data_type().to_string().to_lowercase()
                    )))
                }
            }
            count += 1;
        }
        Ok(count)
    }

    fn check_one_text_column(&mut self, sql: &str) -> Result<(), Error> {
        let statement = self
            .conn
            .prepare(sql)
            .map_err(|e| Error::sqlite("preparing the query on", self.file, e))?;
        match statement.column_names().as_slice() {
            [_] => Ok(()),
            names => Err(Error::BadRows {
                database: self.file.display().to_string(),
                reason: format!(
                    "returns {} columns ({}); it must return one, the path",
                    names.len(),
                    names.join(", ")
                ),
            }),
        }
    }
}

/// An SQLite database file to restore into. Stop the programs that use it first: a restore
/// replaces the file (and moves its `-wal`/`-shm` aside) under them.
#[derive(Debug, Clone)]
pub struct SqliteTarget {
    path: PathBuf,
}

impl SqliteTarget {
    /// A target for the database file at `path` (created when missing). A symbolic link is
    /// followed, as a backup of it follows it: the file it names is restored, where the
    /// application reads it, rather than the link replaced by a file of its own.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let path = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => match fs::canonicalize(&path) {
                Ok(file) => file,
                // A link to a file not there yet: the file it will name.
                Err(_) => match (fs::read_link(&path), path.parent()) {
                    (Ok(named), Some(dir)) => dir.join(named),
                    _ => path,
                },
            },
            _ => path,
        };
        SqliteTarget { path }
    }
}

/// Removes a staged file (and SQLite's companions of it) unless it was swapped in.
struct Staged {
    path: PathBuf,
    armed: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for suffix in std::iter::once("").chain(COMPANIONS) {
            let path = with_suffix(&self.path, suffix);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove a staged file")
                }
            }
        }
    }
}

/// Every row `sql` returns, its columns as text joined by `|`.
fn sqlite_rows(conn: &Connection, sql: &str) -> rusqlite::Result<Vec<String>> {
    let mut statement = conn.prepare(sql)?;
    let columns = statement.column_count();
    let rows = statement.query_map([], |row| {
        (0..columns)
            .map(|i| {
                row.get_ref(i).map(|v| match v {
                    rusqlite::types::ValueRef::Null => "NULL".to_string(),
                    rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                    rusqlite::types::ValueRef::Real(x) => x.to_string(),
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    rusqlite::types::ValueRef::Blob(b) => format!("<{} bytes>", b.len()),
                })
            })
            .collect::<rusqlite::Result<Vec<_>>>()
            .map(|cells| cells.join("|"))
    })?;
    rows.collect()
}

/// `PRAGMA foreign_key_check`: each row that references a missing parent, as
/// `table rowid N -> parent`.
fn foreign_key_check(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut statement = conn.prepare("PRAGMA foreign_key_check")?;
    let rows = statement.query_map([], |row| {
        let table: String = row.get(0)?;
        let rowid: Option<i64> = row.get(1)?;
        let parent: String = row.get(2)?;
        let rowid = rowid.map_or_else(|| "-".to_string(), |r| r.to_string());
        Ok(format!("{table} rowid {rowid} -> {parent}"))
    })?;
    rows.collect()
}

/// Check a staged copy: an SQLite file whose `check` says `ok`.
fn check_copy(staged: &Path, named: &Path, check: Check) -> Result<Connection, Error> {
    let mut head = [0u8; 16];
    let read = File::open(staged)
        .and_then(|mut f| f.read_exact(&mut head))
        .map(|()| head.as_slice() == SQLITE_MAGIC);
    if !matches!(read, Ok(true)) {
        return Err(Error::BadDump {
            database: named.display().to_string(),
            reason: "the dump is not an SQLite database file".to_string(),
        });
    }
    let conn = Connection::open(staged).map_err(|e| Error::sqlite("opening", named, e))?;
    let integrity = run_check(&conn, named, check)?;
    if integrity != "ok" {
        return Err(Error::Integrity {
            file: named.to_path_buf(),
            check: check.pragma(),
            result: integrity,
        });
    }
    Ok(conn)
}

fn fsync(path: &Path) -> Result<(), Error> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("syncing", path, e))
}

fn exists(path: &Path) -> Result<bool, Error> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("reading", path, e)),
    }
}

impl DatabaseTarget for SqliteTarget {
    fn kind(&self) -> SourceKind {
        SourceKind::Sqlite
    }

    fn query_restored(
        &mut self,
        inside: &mut dyn FnMut(&mut dyn SnapshotQuery) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let path = absolute(&self.path)?;
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| Error::sqlite("opening", &path, e))?;
        inside(&mut SqliteQuery {
            conn: &conn,
            file: &path,
        })
    }

    fn inspect(&mut self, checks: &[SqlCheck]) -> Result<Vec<Inspection>, Error> {
        let path = absolute(&self.path)?;
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| Error::sqlite("opening", &path, e))?;
        let integrity = Inspection::timed(Probe::Integrity, || {
            match run_check(&conn, &path, Check::Full) {
                Ok(result) if result == "ok" => Ok("integrity_check: ok".to_string()),
                Ok(result) => Err(format!("integrity_check: {result}")),
                Err(e) => Err(crate::error::chain(&e)),
            }
        });
        let foreign_keys = Inspection::timed(Probe::ForeignKeys, || {
            let orphans =
                foreign_key_check(&conn).map_err(|e| format!("foreign_key_check: {e}"))?;
            if orphans.is_empty() {
                return Ok("foreign_key_check: no row references a missing parent".to_string());
            }
            Err(format!(
                "foreign_key_check: {} row(s) reference a missing parent, first: {}",
                orphans.len(),
                orphans[..orphans.len().min(5)].join(", ")
            ))
        });
        let mut inspections = vec![integrity, foreign_keys];
        inspections.extend(checks.iter().map(|check| {
            Inspection::timed(Probe::Query, || {
                sqlite_rows(&conn, &check.query)
                    .map_err(|e| format!("{}: {e}", check.name))
                    .and_then(|rows| check.judge(&rows))
            })
        }));
        Ok(inspections)
    }

    fn describe(&self) -> String {
        std::path::absolute(&self.path)
            .unwrap_or_else(|_| self.path.clone())
            .display()
            .to_string()
    }

    fn file(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn is_empty(&mut self) -> Result<bool, Error> {
        let path = absolute(&self.path)?;
        match fs::metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(Error::io("reading", &path, e)),
            Ok(meta) if meta.is_dir() => {
                return Err(Error::io(
                    "restoring an SQLite database into",
                    &path,
                    io::Error::new(
                        io::ErrorKind::IsADirectory,
                        "it is a directory; give the path of the database file",
                    ),
                ))
            }
            Ok(meta) if meta.len() == 0 => return Ok(true),
            Ok(_) => {}
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| Error::sqlite("opening", &path, e))?;
        // Something that is not a database, or not readable as one, holds data all the same.
        Ok(conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| {
                row.get::<_, i64>(0)
            })
            .is_ok_and(|n| n == 0))
    }

    fn restore(
        &mut self,
        dump: &mut dyn Read,
        expected: &DatabaseStats,
    ) -> Result<RestoreReport, Error> {
        let target = absolute(&self.path)?;
        let dir = target.parent().unwrap_or(Path::new("/")).to_path_buf();
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let staged_path = dir.join(format!(
            "{name}.strongbox-restore-{:08x}",
            rand::random::<u32>()
        ));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staged_path)
            .map_err(|e| Error::io("creating", &staged_path, e))?;
        let mut staged = Staged {
            path: staged_path.clone(),
            armed: true,
        };
        let mut head = Vec::new();
        copy(dump, &mut file, &mut head, 0).map_err(|e| match e {
            CopyError::Read(e) => Error::Stream {
                operation: "reading the dump",
                database: target.display().to_string(),
                source: e,
            },
            CopyError::Write(e) => Error::io("writing", &staged_path, e),
        })?;
        file.sync_all()
            .map_err(|e| Error::io("syncing", &staged_path, e))?;
        drop(file);

        // Messages name the staged copy: the target itself is not touched until the swap.
        let conn = check_copy(&staged_path, &staged_path, Check::Quick)?;
        let tables = count_tables(&conn, &staged_path)?;
        close(conn, &staged_path)?;
        check_counts(&staged_path, &tables, expected)?;
        fsync(&staged_path)?;

        let previous = if exists(&target)? {
            // The restored file takes the place of the old one, with its mode and owner.
            if let Ok(meta) = fs::metadata(&target) {
                fs::set_permissions(&staged_path, fs::Permissions::from_mode(meta.mode()))
                    .map_err(|e| Error::io("setting mode of", &staged_path, e))?;
                if let Err(e) =
                    std::os::unix::fs::chown(&staged_path, Some(meta.uid()), Some(meta.gid()))
                {
                    tracing::debug!(error = %e, "could not give the restored file the old owner");
                }
            }
            let stamp = Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
            let aside = (0..)
                .map(|n| match n {
                    0 => dir.join(format!("{name}.pre-restore-{stamp}")),
                    n => dir.join(format!("{name}.pre-restore-{stamp}-{n}")),
                })
                .find(|p| !p.exists())
                .expect("some name is free");
            swap(&staged_path, &target, &aside)?;
            Some(aside)
        } else {
            fs::rename(&staged_path, &target)
                .map_err(|e| Error::io("moving the restored database to", &target, e))?;
            None
        };
        staged.armed = false;
        fsync(&dir)?;
        tracing::info!(file = %target.display(), tables = tables.len(), "restored");
        Ok(RestoreReport { tables, previous })
    }

    fn safety_source(&self) -> Option<Box<dyn DatabaseSource>> {
        // Only a database can be read for a safety snapshot. Any other file (the damage a
        // restore is run to repair) must not block it: it is kept aside as
        // `<name>.pre-restore-<time>` all the same.
        let mut head = [0u8; SQLITE_MAGIC.len()];
        let database = File::open(&self.path)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok_and(|()| head == SQLITE_MAGIC);
        database.then(|| Box::new(SqliteSource::new(&self.path)) as Box<dyn DatabaseSource>)
    }
}

/// Move `target` (with its `-wal`/`-shm`/`-journal`, which belong to it and would corrupt
/// the new file) to `aside`, then `staged` to `target`; on failure put everything back.
fn swap(staged: &Path, target: &Path, aside: &Path) -> Result<(), Error> {
    let mut moved: Vec<(PathBuf, PathBuf)> = Vec::new();
    let undo = |moved: &[(PathBuf, PathBuf)]| {
        for (from, to) in moved.iter().rev() {
            if let Err(e) = fs::rename(to, from) {
                tracing::error!(from = %to.display(), to = %from.display(), error = %e, "could not move a file back");
            }
        }
    };
    for suffix in std::iter::once("").chain(COMPANIONS) {
        let from = with_suffix(target, suffix);
        if !exists(&from)? {
            continue;
        }
        let to = with_suffix(aside, suffix);
        if let Err(e) = fs::rename(&from, &to) {
            undo(&moved);
            return Err(Error::io("moving aside", from, e));
        }
        moved.push((from, to));
    }
    if let Err(e) = fs::rename(staged, target) {
        undo(&moved);
        return Err(Error::io("moving the restored database to", target, e));
    }
    Ok(())
}

/// The restored file must hold exactly the snapshot's tables and rows.
fn check_counts(file: &Path, actual: &[TableCount], expected: &DatabaseStats) -> Result<(), Error> {
    let want: BTreeMap<&str, u64> = expected
        .tables
        .iter()
        .map(|t| (t.name.as_str(), t.rows))
        .collect();
    let have: BTreeMap<&str, u64> = actual.iter().map(|t| (t.name.as_str(), t.rows)).collect();
    let mut mismatches = Vec::new();
    for (name, rows) in &want {
        match have.get(name) {
            None => mismatches.push(format!("table {name} is missing")),
            Some(got) if got != rows => {
                mismatches.push(format!("table {name} has {got} rows, the snapshot {rows}"))
            }
            Some(_) => {}
        }
    }
    for name in have.keys().filter(|n| !want.contains_key(*n)) {
        mismatches.push(format!("table {name} is not in the snapshot"));
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(Error::CountMismatch {
            database: file.display().to_string(),
            mismatches: mismatches.join("; "),
        })
    }
}

/// Write a stored copy to a temporary file and check it.
pub(crate) fn verify(dump: &mut dyn Read) -> Result<String, Error> {
    // SQLite reads only files: the copy is staged in a private temporary directory.
    let dir = tempfile::Builder::new()
        .prefix(&crate::scratch_prefix())
        .tempdir()
        .map_err(|e| Error::io("creating", std::env::temp_dir(), e))?;
    let path = dir.path().join("copy.sqlite");
    let mut file = File::create(&path).map_err(|e| Error::io("creating", &path, e))?;
    let mut head = Vec::new();
    copy(dump, &mut file, &mut head, 0).map_err(|e| match e {
        CopyError::Read(e) => Error::Stream {
            operation: "reading the dump",
            database: "the SQLite dump".to_string(),
            source: e,
        },
        CopyError::Write(e) => Error::io("writing", &path, e),
    })?;
    drop(file);
    let conn = check_copy(&path, Path::new("(stored dump)"), Check::Full)?;
    let tables = count_tables(&conn, &path)?;
    let rows: u64 = tables.iter().map(|t| t.rows).sum();
    Ok(format!(
        "integrity ok; {} tables, {rows} rows",
        tables.len()
    ))
}
