use std::io::{self, Read};
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use strongbox_archive::{Compression, Decoder, Encoder};
use strongbox_manifest::{
    DatabaseStats, ObjectRef, ObjectRole, Snapshot, SnapshotId, SnapshotKind, SourceKind, Stats,
    TableCount, FORMAT_VERSION,
};
use strongbox_storage::{host_name, layout};

pub use strongbox_db_dump::{
    redact_conninfo, target_for, verify_dump, DatabaseSource, DatabaseTarget, PostgresSource,
    PostgresTarget, RestoreReport, SqliteSource, SqliteTarget,
};

use crate::backup::Written;
use crate::progress::Watched;
use crate::{Engine, Error};

/// Database dumps are zstd streams at this level: pg_dump writes uncompressed (`-Z0`) so that
/// compression happens here, multithreaded.
const COMPRESSION: Compression = Compression::Zstd(3);

/// A finished database restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseRestoreOutcome {
    /// The snapshot restored.
    pub snapshot: String,
    /// Where (redacted).
    pub target: String,
    /// The restored tables with their row counts, as checked against the snapshot.
    pub tables: Vec<TableCount>,
    /// Where the replaced file was kept (SQLite).
    pub previous: Option<PathBuf>,
    /// The snapshot of the target's former content, taken before a forced restore.
    pub safety_snapshot: Option<String>,
    /// Wall-clock seconds.
    pub duration_secs: f64,
}

fn dump_extension(kind: SourceKind) -> Option<&'static str> {
    match kind {
        SourceKind::Postgres => Some("pgdump.zst"),
        SourceKind::Sqlite => Some("sqlite.zst"),
        SourceKind::Files => None,
    }
}

/// Reads a stored object while hashing it; at its end, a size or digest other than the
/// record's is a read error, so a restore that reads to the end never accepts damaged data
/// (an SQLite target then keeps its file; pg_restore's transaction is aborted).
struct Verified<'a, R> {
    inner: R,
    object: &'a ObjectRef,
    hasher: Sha256,
    size: u64,
    checked: bool,
}

impl<R: Read> Read for Verified<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
            self.size += n as u64;
        } else if !buf.is_empty() && !self.checked {
            let sha256 = hex::encode(self.hasher.finalize_reset());
            if self.size != self.object.size || sha256 != self.object.sha256 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} reads {} bytes with SHA-256 {sha256}; the snapshot recorded {} bytes with {}",
                        self.object.key, self.size, self.object.size, self.object.sha256
                    ),
                ));
            }
            self.checked = true;
        }
        Ok(n)
    }
}

impl Engine {
    /// Back up a database as a new full snapshot of `set`: the source's dump streams through
    /// zstd into storage while it is hashed; the record, with the source's description of
    /// the dump, is written last.
    pub fn backup_database(
        &self,
        set: &str,
        source: &mut dyn DatabaseSource,
        tags: Vec<String>,
        time: Option<DateTime<Utc>>,
    ) -> Result<Snapshot, Error> {
        layout::check_set_name(set)?;
        self.locked(
            set,
            "backup",
            || self.backup_database_locked(set, source, tags, time),
            |snapshot| ("ok", Some(snapshot.id.to_string())),
        )
    }

    fn backup_database_locked(
        &self,
        set: &str,
        source: &mut dyn DatabaseSource,
        tags: Vec<String>,
        time: Option<DateTime<Utc>>,
    ) -> Result<Snapshot, Error> {
        let started = Instant::now();
        let time = time.unwrap_or_else(Utc::now);
        let kind = source.kind();
        let existing = self.repo.snapshots(Some(set))?;
        if let Some(other) = existing.iter().find(|s| s.source != kind) {
            return Err(Error::SetKindMismatch {
                set: set.to_string(),
                existing: other.source.as_str(),
                requested: kind.as_str(),
            });
        }
        let extension = dump_extension(kind).ok_or_else(|| strongbox_db_dump::Error::BadDump {
            database: source.origin(),
            reason: "a files source is not a database".to_string(),
        })?;

        let id = SnapshotId::generate(time);
        let key = layout::data_key(set, &id, extension);
        let mut written = Written {
            repo: &self.repo,
            keys: Vec::new(),
        };
        let upload_error = |source| Error::Upload {
            key: key.clone(),
            source,
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        self.progress.phase("dumping", None);
        let mut sink = Watched {
            inner: Encoder::new(self.repo.writer(&key)?, COMPRESSION, threads)
                .map_err(upload_error)?,
            progress: self.progress.as_ref(),
            cancel: &self.cancel,
        };
        // On failure the encoder is dropped unfinished, which aborts the upload: no object.
        let mut stats: DatabaseStats = source
            .dump(&mut sink)
            .map_err(|e| self.cancel.or_cancelled(e))?;
        self.progress.finish();
        self.cancel.check()?;
        let stored = sink
            .inner
            .finish()
            .map_err(upload_error)?
            .finish()
            .map_err(upload_error)?;
        written.keys.push(key.clone());
        stats.bytes_stored = stored.size;

        let snapshot = Snapshot {
            format_version: FORMAT_VERSION,
            id,
            set: set.to_string(),
            kind: SnapshotKind::Full,
            source: kind,
            parent: None,
            time,
            tags,
            host: host_name(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            origin: source.origin(),
            compression: COMPRESSION.to_string(),
            objects: vec![ObjectRef {
                key,
                size: stored.size,
                sha256: stored.sha256,
                role: ObjectRole::Dump,
            }],
            stats: Stats::Database(stats),
            duration_secs: started.elapsed().as_secs_f64(),
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        self.commit(&snapshot)?;
        written.keys.clear();
        Ok(snapshot)
    }

    /// Restore a database snapshot into `target`. A target that holds data is refused unless
    /// `force`; with it, the target's current content is first backed up into the set
    /// `<set>-safety`. The target checks the restored row counts against the snapshot's.
    pub fn restore_database(
        &self,
        snapshot: &Snapshot,
        target: &mut dyn DatabaseTarget,
        force: bool,
    ) -> Result<DatabaseRestoreOutcome, Error> {
        let wrong = |reason: String| Error::WrongSource {
            id: snapshot.id.to_string(),
            source_kind: snapshot.source.as_str(),
            reason,
        };
        if snapshot.source == SourceKind::Files {
            return Err(wrong("restore it into a directory".to_string()));
        }
        if snapshot.source != target.kind() {
            return Err(wrong(format!(
                "it cannot be restored into {}, a {} target",
                target.describe(),
                target.kind().as_str()
            )));
        }
        let corrupt = |reason: &str| {
            Error::from(strongbox_storage::Error::Corrupt {
                key: snapshot.id.to_string(),
                reason: reason.to_string(),
            })
        };
        let Stats::Database(stats) = &snapshot.stats else {
            return Err(corrupt("database snapshot record has files statistics"));
        };
        let object = snapshot
            .object(ObjectRole::Dump)
            .ok_or_else(|| corrupt("database snapshot record names no dump"))?;
        let empty = target.is_empty()?;
        if !empty && !force {
            return Err(strongbox_db_dump::Error::TargetNotEmpty {
                target: target.describe(),
            }
            .into());
        }
        self.journaled(
            &snapshot.set,
            "restore",
            Some(snapshot.id.to_string()),
            || self.restore_database_inner(snapshot, stats, object, target, !empty),
            |_| true,
        )
    }

    fn restore_database_inner(
        &self,
        snapshot: &Snapshot,
        stats: &DatabaseStats,
        object: &ObjectRef,
        target: &mut dyn DatabaseTarget,
        replace: bool,
    ) -> Result<DatabaseRestoreOutcome, Error> {
        let started = Instant::now();
        let safety_snapshot = match target.safety_source().filter(|_| replace) {
            Some(mut source) => {
                let set = format!("{}-safety", snapshot.set);
                tracing::info!(target = %target.describe(), %set, "taking a safety snapshot of the target first");
                let tags = vec![
                    "safety".to_string(),
                    format!("before-restore-of-{}", snapshot.id),
                ];
                let safety = self.backup_database(&set, source.as_mut(), tags, None)?;
                Some(safety.id.to_string())
            }
            None => None,
        };
        self.cancel.check()?;

        self.progress.phase("restoring", Some(stats.bytes_dumped));
        let verified = Verified {
            inner: self.repo.reader(&object.key)?,
            object,
            hasher: Sha256::new(),
            size: 0,
            checked: false,
        };
        let decoder =
            Decoder::new(verified).map_err(|source| strongbox_db_dump::Error::Stream {
                operation: "reading the stored dump",
                database: object.key.clone(),
                source,
            })?;
        let mut feed = Watched {
            inner: decoder,
            progress: self.progress.as_ref(),
            cancel: &self.cancel,
        };
        let report = target
            .restore(&mut feed, stats)
            .map_err(|e| self.cancel.or_cancelled(e))?;
        self.progress.finish();
        Ok(DatabaseRestoreOutcome {
            snapshot: snapshot.id.to_string(),
            target: target.describe(),
            tables: report.tables,
            previous: report.previous,
            safety_snapshot,
            duration_secs: started.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;
    use strongbox_storage::{Location, Repository};

    fn sqlite_db(path: &std::path::Path, rows: u32) {
        Connection::open(path)
            .unwrap()
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
                 INSERT INTO items (name) SELECT 'item ' || i FROM n;"
            ))
            .unwrap();
    }

    fn rows(path: &std::path::Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
            .unwrap()
    }

    fn engine(dir: &std::path::Path) -> Engine {
        Engine::new(Repository::init(&Location::Local(dir.join("repo"))).unwrap())
    }

    #[test]
    fn sqlite_backup_is_a_committed_full_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        sqlite_db(&db, 5000);
        let engine = engine(dir.path());
        let time = "2025-12-27T02:00:00Z".parse().unwrap();
        let snapshot = engine
            .backup_database(
                "appdb",
                &mut SqliteSource::new(&db),
                vec!["nightly".into()],
                Some(time),
            )
            .unwrap();
        assert_eq!(snapshot.source, SourceKind::Sqlite);
        assert_eq!(snapshot.kind, SnapshotKind::Full);
        assert_eq!(snapshot.parent, None);
        assert_eq!(snapshot.time, time);
        assert_eq!(snapshot.tags, ["nightly"]);
        assert_eq!(snapshot.origin, db.display().to_string());
        assert_eq!(snapshot.compression, "zstd:3");
        assert!(snapshot.id.as_str().starts_with("20251227T020000Z-"));
        let [object] = snapshot.objects.as_slice() else {
            panic!("one object: {:?}", snapshot.objects)
        };
        assert_eq!(
            object.key,
            format!("sets/appdb/data/{}.sqlite.zst", snapshot.id)
        );
        assert_eq!(object.role, ObjectRole::Dump);
        let stored = engine.repo().get(&object.key).unwrap();
        assert_eq!(stored.len() as u64, object.size);
        assert_eq!(strongbox_archive::sha256_hex(&stored), object.sha256);
        let Stats::Database(stats) = &snapshot.stats else {
            panic!("database stats")
        };
        assert_eq!(
            stats.tables,
            [TableCount {
                name: "items".into(),
                rows: 5000
            }]
        );
        assert_eq!(stats.integrity.as_deref(), Some("ok"));
        assert_eq!(stats.bytes_stored, object.size);
        assert!(stats.bytes_dumped > object.size, "compressed");
        assert_eq!(
            engine.snapshots(Some("appdb")).unwrap(),
            std::slice::from_ref(&snapshot)
        );

        // The stored object is a zstd stream of an SQLite file: standard tools read it.
        let mut plain = Vec::new();
        Decoder::new(&stored[..])
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        assert!(plain.starts_with(b"SQLite format 3\0"));
        assert_eq!(
            verify_dump(SourceKind::Sqlite, &mut plain.as_slice()).unwrap(),
            "integrity ok; 1 tables, 5000 rows"
        );

        // A set holds one source kind.
        let files = dir.path().join("files");
        std::fs::create_dir(&files).unwrap();
        let err = engine
            .backup_files(&crate::FilesBackup::new("appdb", &files))
            .unwrap_err();
        assert!(matches!(err, Error::SetKindMismatch { .. }), "{err}");
    }

    #[test]
    fn a_failed_dump_leaves_no_object_and_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let missing = dir.path().join("missing.db");
        let err = engine
            .backup_database("appdb", &mut SqliteSource::new(&missing), vec![], None)
            .unwrap_err();
        assert!(matches!(err, Error::Database(_)), "{err}");
        assert!(err.to_string().contains("missing.db"), "{err}");
        assert!(engine.snapshots(Some("appdb")).unwrap().is_empty());
        assert!(engine
            .repo()
            .list(&layout::data_prefix("appdb"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn sqlite_restore_refuses_a_full_target_then_forces_with_a_safety_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        sqlite_db(&db, 300);
        let engine = engine(dir.path());
        let snapshot = engine
            .backup_database("appdb", &mut SqliteSource::new(&db), vec![], None)
            .unwrap();

        // Into a new file.
        let fresh = dir.path().join("fresh.db");
        let outcome = engine
            .restore_database(&snapshot, &mut SqliteTarget::new(&fresh), false)
            .unwrap();
        assert_eq!(rows(&fresh), 300);
        assert_eq!(outcome.previous, None);
        assert_eq!(outcome.safety_snapshot, None);
        assert_eq!(outcome.snapshot, snapshot.id.to_string());
        assert_eq!(
            outcome.tables,
            [TableCount {
                name: "items".into(),
                rows: 300
            }]
        );

        // Over the live file, which has changed since.
        sqlite_db(&db, 50);
        let before = std::fs::read(&db).unwrap();
        let err = engine
            .restore_database(&snapshot, &mut SqliteTarget::new(&db), false)
            .unwrap_err();
        assert!(
            err.to_string().contains("is not empty; add --force"),
            "{err}"
        );
        assert_eq!(std::fs::read(&db).unwrap(), before);

        let outcome = engine
            .restore_database(&snapshot, &mut SqliteTarget::new(&db), true)
            .unwrap();
        assert_eq!(rows(&db), 300);
        let previous = outcome.previous.expect("old file kept");
        assert_eq!(std::fs::read(&previous).unwrap(), before);
        let safety_id = outcome.safety_snapshot.expect("safety snapshot taken");
        let safety = engine.resolve("appdb-safety:latest").unwrap();
        assert_eq!(safety.id.to_string(), safety_id);
        assert!(safety.tags.contains(&"safety".to_string()));
        let Stats::Database(stats) = &safety.stats else {
            panic!("database stats")
        };
        assert_eq!(
            stats.tables[0].rows, 350,
            "the safety snapshot holds the replaced data"
        );

        // A Postgres target cannot take an SQLite snapshot.
        let mut pg = PostgresTarget::new("postgresql://u@127.0.0.1:1/app").unwrap();
        let err = engine
            .restore_database(&snapshot, &mut pg, true)
            .unwrap_err();
        assert!(matches!(err, Error::WrongSource { .. }), "{err}");
    }

    #[test]
    fn a_stored_dump_that_does_not_match_its_record_is_not_restored() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        sqlite_db(&db, 100);
        let engine = engine(dir.path());
        let mut snapshot = engine
            .backup_database("appdb", &mut SqliteSource::new(&db), vec![], None)
            .unwrap();
        snapshot.objects[0].sha256 = "0".repeat(64);

        let target = dir.path().join("target.db");
        sqlite_db(&target, 7);
        let before = std::fs::read(&target).unwrap();
        let err = engine
            .restore_database(&snapshot, &mut SqliteTarget::new(&target), true)
            .unwrap_err();
        assert!(err.to_string().contains("the snapshot recorded"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), before);
    }

    /// `STRONGBOX_TEST_PG` (a base URL with user and password), or `None` to skip; under
    /// `CI=true` a missing server is a failure.
    fn pg_base() -> Option<String> {
        match std::env::var("STRONGBOX_TEST_PG") {
            Ok(base) if !base.trim().is_empty() => Some(base.trim().trim_end_matches('/').into()),
            _ if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("STRONGBOX_TEST_PG not set under CI")
            }
            _ => {
                eprintln!("skipping: STRONGBOX_TEST_PG not set");
                None
            }
        }
    }

    /// Run `sql` with psql on database `db`; the password goes in the environment.
    fn psql(base: &str, db: &str, sql: &str) -> String {
        let rest = base.split_once("://").unwrap().1;
        let (userinfo, hostport) = rest.rsplit_once('@').unwrap();
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
        let output = std::process::Command::new("psql")
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGHOST", host)
            .env("PGPORT", port)
            .env("PGUSER", user)
            .env("PGPASSWORD", password)
            .env("PGDATABASE", db)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    /// Drops the named databases at the end of a test.
    struct Databases<'a>(&'a str, Vec<String>);

    impl Drop for Databases<'_> {
        fn drop(&mut self) {
            for db in &self.1 {
                let sql = format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)");
                let _ = std::panic::catch_unwind(|| psql(self.0, "postgres", &sql));
            }
        }
    }

    #[test]
    fn postgres_backup_and_forced_restore_through_the_engine() {
        let Some(base) = pg_base() else { return };
        let tag = format!("{}_{:04x}", std::process::id(), rand::random::<u16>());
        let (source_db, target_db) = (
            format!("sbx_engine_src_{tag}"),
            format!("sbx_engine_dst_{tag}"),
        );
        let _cleanup = Databases(&base, vec![source_db.clone(), target_db.clone()]);
        psql(&base, "postgres", &format!("CREATE DATABASE {source_db}"));
        psql(
            &base,
            &source_db,
            "CREATE TABLE orders (id int PRIMARY KEY, total numeric);
             INSERT INTO orders SELECT i, i * 1.5 FROM generate_series(1, 2000) i;",
        );

        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let url = format!("{base}/{source_db}");
        let mut source = PostgresSource::new(&url).unwrap();
        let snapshot = engine
            .backup_database("maindb", &mut source, vec![], None)
            .unwrap();
        assert_eq!(snapshot.source, SourceKind::Postgres);
        assert!(snapshot.objects[0].key.ends_with(".pgdump.zst"));
        assert!(snapshot.origin.contains(":***@"), "{}", snapshot.origin);
        let record = String::from_utf8(snapshot.to_json()).unwrap();
        let password = base
            .split_once("://")
            .unwrap()
            .1
            .rsplit_once('@')
            .unwrap()
            .0;
        let password = password.split_once(':').map_or("", |(_, p)| p);
        assert!(
            !password.is_empty() && !record.contains(password),
            "{record}"
        );
        let Stats::Database(stats) = &snapshot.stats else {
            panic!("database stats")
        };
        assert_eq!(
            stats.tables,
            [TableCount {
                name: "public.orders".into(),
                rows: 2000
            }]
        );

        let stored = engine.repo().get(&snapshot.objects[0].key).unwrap();
        let mut dump = Vec::new();
        Decoder::new(&stored[..])
            .unwrap()
            .read_to_end(&mut dump)
            .unwrap();
        let summary = verify_dump(SourceKind::Postgres, &mut dump.as_slice()).unwrap();
        assert!(summary.contains("TOC entries"), "{summary}");

        let target_url = format!("{base}/{target_db}");
        let outcome = engine
            .restore_database(
                &snapshot,
                &mut PostgresTarget::new(&target_url).unwrap(),
                false,
            )
            .unwrap();
        assert_eq!(outcome.safety_snapshot, None);
        assert_eq!(outcome.tables, stats.tables);
        assert!(!outcome.target.contains(password), "{}", outcome.target);
        assert_eq!(
            psql(&base, &target_db, "SELECT sum(total) FROM orders"),
            "3001500.0"
        );

        psql(&base, &target_db, "DELETE FROM orders WHERE id > 100");
        let err = engine
            .restore_database(
                &snapshot,
                &mut PostgresTarget::new(&target_url).unwrap(),
                false,
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("is not empty; add --force"),
            "{err}"
        );
        assert_eq!(
            psql(&base, &target_db, "SELECT count(*) FROM orders"),
            "100"
        );

        let outcome = engine
            .restore_database(
                &snapshot,
                &mut PostgresTarget::new(&target_url).unwrap(),
                true,
            )
            .unwrap();
        assert_eq!(
            psql(&base, &target_db, "SELECT count(*) FROM orders"),
            "2000"
        );
        let safety = engine.resolve("maindb-safety:latest").unwrap();
        assert_eq!(outcome.safety_snapshot, Some(safety.id.to_string()));
        let Stats::Database(safety_stats) = &safety.stats else {
            panic!("database stats")
        };
        assert_eq!(
            safety_stats.tables[0].rows, 100,
            "the safety snapshot holds what was replaced"
        );
    }
}
