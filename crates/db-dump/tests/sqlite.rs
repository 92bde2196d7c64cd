//! SQLite dumps and restores on real database files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use strongbox_test_support::chain;

use rusqlite::Connection;
use strongbox_db_dump::{
    verify_dump, DatabaseSource, DatabaseTarget, Error, PostgresTarget, SqliteSource, SqliteTarget,
};
use strongbox_manifest::SourceKind;

fn count(path: &Path, table: &str) -> u64 {
    Connection::open(path)
        .unwrap()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap() as u64
}

fn integrity(path: &Path) -> String {
    Connection::open(path)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

fn sample_db(path: &Path, rows: u32) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
         CREATE INDEX notes_body ON notes (body);
         CREATE TABLE \"odd \"\"name\"\"\" (x);
         INSERT INTO \"odd \"\"name\"\"\" VALUES ('ünïcödé ✓');
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO notes (body) SELECT 'note ' || i || ' ' || hex(randomblob(32)) FROM n;"
    ))
    .unwrap();
}

/// Leftover staging files beside `path`.
fn leftovers(path: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".strongbox-restore-"))
        .collect()
}

#[test]
fn wal_database_is_copied_consistently_while_a_writer_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    {
        let conn = Connection::open(&db).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
    sample_db(&db, 200_000);

    let stop = Arc::new(AtomicBool::new(false));
    let inserted = Arc::new(AtomicU64::new(0));
    let writer = {
        let (db, stop, inserted) = (db.clone(), stop.clone(), inserted.clone());
        std::thread::spawn(move || {
            let conn = Connection::open(&db).unwrap();
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            while !stop.load(Ordering::SeqCst) {
                conn.execute(
                    "INSERT INTO notes (body) VALUES ('written during the backup')",
                    [],
                )
                .unwrap();
                inserted.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    while inserted.load(Ordering::SeqCst) < 20 {
        std::thread::sleep(Duration::from_millis(2));
    }
    let before = inserted.load(Ordering::SeqCst);
    let mut dump = Vec::new();
    let mut source = SqliteSource::new(&db);
    let stats = source.dump(&mut dump).unwrap();
    let during = inserted.load(Ordering::SeqCst) - before;
    std::thread::sleep(Duration::from_millis(20));
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(during > 0, "the writer wrote while the backup ran");

    assert_eq!(source.kind(), SourceKind::Sqlite);
    assert_eq!(source.origin(), db.display().to_string());
    assert_eq!(stats.integrity.as_deref(), Some("ok"));
    assert!(
        stats.server_version.starts_with("SQLite 3."),
        "{}",
        stats.server_version
    );
    assert_eq!(stats.bytes_dumped, dump.len() as u64);
    assert!(dump.starts_with(b"SQLite format 3\0"));
    let names: Vec<&str> = stats.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["notes", "odd \"name\""]);
    let recorded = stats.tables[0].rows;
    assert!(recorded >= 200_000 + before, "{recorded}");
    assert!(
        count(&db, "notes") > recorded,
        "rows were added after the copy"
    );

    let restored = dir.path().join("restored.db");
    let mut target = SqliteTarget::new(&restored);
    assert!(target.is_empty().unwrap());
    let report = target.restore(&mut dump.as_slice(), &stats).unwrap();
    assert_eq!(report.tables, stats.tables);
    assert_eq!(report.previous, None);
    assert_eq!(count(&restored, "notes"), recorded);
    assert_eq!(integrity(&restored), "ok");
    assert!(leftovers(&restored).is_empty());

    let summary = verify_dump(SourceKind::Sqlite, &mut dump.as_slice()).unwrap();
    assert_eq!(
        summary,
        format!("integrity ok; 2 tables, {} rows", recorded + 1)
    );
}

#[test]
fn corrupt_sources_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 64 * 1024]).unwrap();
    let err = SqliteSource::new(&garbage)
        .dump(&mut Vec::new())
        .unwrap_err();
    let text = chain(&err);
    assert!(matches!(err, Error::Sqlite { .. }), "{text}");
    assert!(text.contains(&garbage.display().to_string()), "{text}");
    assert!(text.contains("not a database"), "{text}");

    // A valid file header over damaged b-tree pages: the copy fails its integrity check.
    let damaged = dir.path().join("damaged.db");
    sample_db(&damaged, 20_000);
    let mut bytes = std::fs::read(&damaged).unwrap();
    let page = 4096;
    for n in 2..40 {
        bytes[n * page..n * page + 12].fill(0xff);
    }
    std::fs::write(&damaged, &bytes).unwrap();
    let err = SqliteSource::new(&damaged)
        .dump(&mut Vec::new())
        .unwrap_err();
    let text = chain(&err);
    assert!(
        matches!(err, Error::Integrity { .. } | Error::Sqlite { .. }),
        "{text}"
    );
    assert!(text.contains(&damaged.display().to_string()), "{text}");

    let missing = dir.path().join("missing.db");
    let err = SqliteSource::new(&missing)
        .dump(&mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(
        chain(&err).contains(&missing.display().to_string()),
        "{err}"
    );
    assert!(!missing.exists(), "a backup creates no database");

    let err = verify_dump(SourceKind::Sqlite, &mut &bytes[..]).unwrap_err();
    assert!(
        matches!(err, Error::Integrity { .. } | Error::Sqlite { .. }),
        "{err}"
    );
    let err = verify_dump(SourceKind::Sqlite, &mut &b""[..]).unwrap_err();
    assert!(matches!(err, Error::BadDump { .. }), "{err}");
}

/// Backups run `quick_check`; deep verification runs the full `integrity_check`. An index
/// out of step with its table passes the first and fails the second.
#[test]
fn an_index_out_of_step_with_its_table_is_backed_up_and_caught_by_deep_verify() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("skewed.db");
    sample_db(&db, 2000);
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "PRAGMA writable_schema = ON;
             UPDATE sqlite_master SET sql = 'CREATE INDEX notes_body ON notes (body DESC)'
             WHERE name = 'notes_body';",
        )
        .unwrap();
    assert_ne!(integrity(&db), "ok", "the index must be out of step");

    let mut dump = Vec::new();
    let stats = SqliteSource::new(&db).dump(&mut dump).unwrap();
    assert_eq!(stats.integrity.as_deref(), Some("ok"));
    let err = verify_dump(SourceKind::Sqlite, &mut &dump[..]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Integrity {
                check: "integrity_check",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("missing from index notes_body"),
        "{err}"
    );
}

#[test]
fn a_failed_restore_leaves_the_target_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    sample_db(&source, 1000);
    let mut dump = Vec::new();
    let stats = SqliteSource::new(&source).dump(&mut dump).unwrap();

    let target_path = dir.path().join("app.db");
    sample_db(&target_path, 10);
    let original = std::fs::read(&target_path).unwrap();
    let mut target = SqliteTarget::new(&target_path);
    assert!(!target.is_empty().unwrap());

    let mut tampered = stats.clone();
    tampered.tables[0].rows += 1;
    let err = target.restore(&mut dump.as_slice(), &tampered).unwrap_err();
    assert!(matches!(err, Error::CountMismatch { .. }), "{err}");
    assert!(
        chain(&err).contains("table notes has 1000 rows, the snapshot 1001"),
        "{err}"
    );
    assert_eq!(std::fs::read(&target_path).unwrap(), original);
    assert!(leftovers(&target_path).is_empty());

    let err = target
        .restore(&mut &dump[..dump.len() / 2], &stats)
        .unwrap_err();
    assert!(
        matches!(err, Error::Integrity { .. } | Error::Sqlite { .. }),
        "{err}"
    );
    assert_eq!(std::fs::read(&target_path).unwrap(), original);
    assert!(leftovers(&target_path).is_empty());

    let err = target.restore(&mut &b"junk"[..], &stats).unwrap_err();
    assert!(matches!(err, Error::BadDump { .. }), "{err}");
    assert_eq!(std::fs::read(&target_path).unwrap(), original);
    assert!(leftovers(&target_path).is_empty());

    // A good restore keeps the old file aside, with its name stamped by the time.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&target_path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let report = target.restore(&mut dump.as_slice(), &stats).unwrap();
    let previous = report.previous.expect("the old file is kept");
    let name = previous.file_name().unwrap().to_string_lossy().into_owned();
    let stamp = name.strip_prefix("app.db.pre-restore-").expect(&name);
    assert!(
        chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").is_ok(),
        "{stamp}"
    );
    assert_eq!(std::fs::read(&previous).unwrap(), original);
    assert_eq!(count(&target_path, "notes"), 1000);
    let mode = std::fs::metadata(&target_path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o640, "the restored file keeps the old file's mode");
    assert!(leftovers(&target_path).is_empty());
}

#[test]
fn emptiness_and_target_selection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    assert!(SqliteTarget::new(&path).is_empty().unwrap(), "missing");
    std::fs::write(&path, b"").unwrap();
    assert!(SqliteTarget::new(&path).is_empty().unwrap(), "zero bytes");
    std::fs::remove_file(&path).unwrap();
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 1")
        .unwrap();
    assert!(SqliteTarget::new(&path).is_empty().unwrap(), "no schema");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    assert!(!SqliteTarget::new(&path).is_empty().unwrap(), "a table");
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"some other file").unwrap();
    assert!(
        !SqliteTarget::new(&junk).is_empty().unwrap(),
        "not a database"
    );

    let target = SqliteTarget::new(&path);
    assert_eq!(target.kind(), SourceKind::Sqlite);
    assert_eq!(target.describe(), path.display().to_string());
    assert!(target.safety_source().is_some());
    assert!(SqliteTarget::new(dir.path().join("none.db"))
        .safety_source()
        .is_none());
    let pg = PostgresTarget::new("postgresql://u:secret@127.0.0.1:1/app").unwrap();
    assert_eq!(pg.kind(), SourceKind::Postgres);
    assert!(!pg.describe().contains("secret"), "{}", pg.describe());
    assert!(pg.describe().contains("app"), "{}", pg.describe());
}
