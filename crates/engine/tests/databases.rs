//! Database snapshots through the engine: SQLite files and the real PostgreSQL server that
//! scripts/test.sh starts.

use std::io::Read;
use std::path::Path;

use rusqlite::Connection;
use strongbox_archive::Decoder;
use strongbox_db_dump::{verify_dump, PostgresTarget, SqliteSource, SqliteTarget};
use strongbox_engine::{
    BackupOptions, DatabaseRestorer, DirectoryTarget, DumpSource, Engine, Error, FilesSpec,
    PostgresSpec, RestoreDetail, RestoreOptions, SetSpec, SourceSpec, SqliteSpec,
};
use strongbox_manifest::{ObjectRole, SnapshotKind, SourceKind, Stats, TableCount};
use strongbox_storage::layout;
use strongbox_test_support::{Pg, TempRepo};

fn sqlite_db(path: &Path, rows: u32) {
    Connection::open(path)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
             INSERT INTO items (name) SELECT 'item ' || i FROM n;"
        ))
        .unwrap();
}

fn rows(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .unwrap()
}

fn sqlite_spec(set: &str, path: &Path) -> SetSpec {
    SetSpec::new(
        set,
        SourceSpec::Sqlite(SqliteSpec {
            path: path.to_path_buf(),
        }),
    )
}

fn sqlite_target(path: &Path) -> DatabaseRestorer {
    DatabaseRestorer::new(Box::new(SqliteTarget::new(path)))
}

fn force(force: bool) -> RestoreOptions {
    RestoreOptions { force }
}

fn tables(detail: &RestoreDetail) -> &[TableCount] {
    match detail {
        RestoreDetail::Tables(tables) => tables,
        other => panic!("a database restore reports tables: {other:?}"),
    }
}

#[test]
fn sqlite_backup_is_a_committed_full_snapshot() {
    let repo = TempRepo::new();
    let db = repo.path("app.db");
    sqlite_db(&db, 5000);
    let engine = Engine::new(repo.repository());
    let time = "2025-12-27T02:00:00Z".parse().unwrap();
    let spec = SetSpec {
        options: BackupOptions {
            tags: vec!["nightly".into()],
            time: Some(time),
        },
        ..sqlite_spec("appdb", &db)
    };
    let snapshot = engine.backup(&spec).unwrap();
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
    let stored = engine.repo().stored_bytes(&object.key).unwrap();
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
    let files = repo.path("files");
    std::fs::create_dir(&files).unwrap();
    let err = engine
        .backup(&SetSpec::new(
            "appdb",
            SourceSpec::Files(FilesSpec::new(&files)),
        ))
        .unwrap_err();
    assert!(matches!(err, Error::SetKindMismatch { .. }), "{err}");
}

#[test]
fn a_failed_dump_leaves_no_object_and_no_snapshot() {
    let repo = TempRepo::new();
    let engine = Engine::new(repo.repository());
    let missing = repo.path("missing.db");
    let err = engine.backup(&sqlite_spec("appdb", &missing)).unwrap_err();
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
    let repo = TempRepo::new();
    let db = repo.path("app.db");
    sqlite_db(&db, 300);
    let engine = Engine::new(repo.repository());
    let snapshot = engine.backup(&sqlite_spec("appdb", &db)).unwrap();

    // Into a new file.
    let fresh = repo.path("fresh.db");
    let outcome = engine
        .restore(&snapshot, &mut sqlite_target(&fresh), &force(false))
        .unwrap();
    assert_eq!(rows(&fresh), 300);
    assert_eq!(outcome.previous, None);
    assert_eq!(outcome.safety_snapshot, None);
    assert_eq!(outcome.snapshot, snapshot.id.to_string());
    assert_eq!(
        tables(&outcome.detail),
        [TableCount {
            name: "items".into(),
            rows: 300
        }]
    );

    // Over the live file, which has changed since.
    sqlite_db(&db, 50);
    let before = std::fs::read(&db).unwrap();
    let err = engine
        .restore(&snapshot, &mut sqlite_target(&db), &force(false))
        .unwrap_err();
    assert!(
        err.to_string().contains("is not empty; add --force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);

    let outcome = engine
        .restore(&snapshot, &mut sqlite_target(&db), &force(true))
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

    // A Postgres target cannot take an SQLite snapshot, nor a directory.
    let mut pg = DatabaseRestorer::new(Box::new(
        PostgresTarget::new("postgresql://u@127.0.0.1:1/app").unwrap(),
    ));
    let err = engine
        .restore(&snapshot, &mut pg, &force(true))
        .unwrap_err();
    assert!(matches!(err, Error::WrongSource { .. }), "{err}");
    let mut dir = DirectoryTarget::new(repo.path("dir"));
    let err = engine
        .restore(&snapshot, &mut dir, &force(true))
        .unwrap_err();
    assert!(matches!(err, Error::WrongSource { .. }), "{err}");
}

#[test]
fn a_stored_dump_that_does_not_match_its_record_is_not_restored() {
    let repo = TempRepo::new();
    let db = repo.path("app.db");
    sqlite_db(&db, 100);
    let engine = Engine::new(repo.repository());
    let mut snapshot = engine.backup(&sqlite_spec("appdb", &db)).unwrap();
    snapshot.objects[0].sha256 = "0".repeat(64);

    let target = repo.path("target.db");
    sqlite_db(&target, 7);
    let before = std::fs::read(&target).unwrap();
    let err = engine
        .restore(&snapshot, &mut sqlite_target(&target), &force(true))
        .unwrap_err();
    let message = strongbox_test_support::chain(&err);
    assert!(message.contains("the snapshot recorded"), "{message}");
    assert_eq!(std::fs::read(&target).unwrap(), before);
}

#[test]
fn a_database_source_can_be_driven_directly() {
    let repo = TempRepo::new();
    let db = repo.path("app.db");
    sqlite_db(&db, 10);
    let engine = Engine::new(repo.repository());
    let mut source = DumpSource::new(Box::new(SqliteSource::new(&db)));
    let snapshot = engine
        .backup_source("appdb", &mut source, &BackupOptions::default())
        .unwrap();
    assert_eq!(snapshot.source, SourceKind::Sqlite);
}

#[test]
fn postgres_backup_and_forced_restore_through_the_engine() {
    let Some(pg) = Pg::get() else { return };
    let source = pg.create("engine_src");
    let target = pg.name("engine_dst");
    source.psql(
        "CREATE TABLE orders (id int PRIMARY KEY, total numeric);
         INSERT INTO orders SELECT i, i * 1.5 FROM generate_series(1, 2000) i;",
    );

    let repo = TempRepo::new();
    let engine = Engine::new(repo.repository());
    let spec = SetSpec::new(
        "maindb",
        SourceSpec::Postgres(PostgresSpec {
            conninfo: source.url(),
            physical: false,
        }),
    );
    let snapshot = engine.backup(&spec).unwrap();
    assert_eq!(snapshot.source, SourceKind::Postgres);
    assert!(snapshot.objects[0].key.ends_with(".pgdump.zst"));
    assert!(snapshot.origin.contains(":***@"), "{}", snapshot.origin);
    let record = String::from_utf8(snapshot.to_json()).unwrap();
    assert!(!record.contains(pg.password()), "{record}");
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

    let stored = engine
        .repo()
        .stored_bytes(&snapshot.objects[0].key)
        .unwrap();
    let mut dump = Vec::new();
    Decoder::new(&stored[..])
        .unwrap()
        .read_to_end(&mut dump)
        .unwrap();
    let summary = verify_dump(SourceKind::Postgres, &mut dump.as_slice()).unwrap();
    assert!(summary.contains("TOC entries"), "{summary}");

    let postgres_target =
        || DatabaseRestorer::new(Box::new(PostgresTarget::new(&target.url()).unwrap()));
    let outcome = engine
        .restore(&snapshot, &mut postgres_target(), &force(false))
        .unwrap();
    assert_eq!(outcome.safety_snapshot, None);
    assert_eq!(tables(&outcome.detail), stats.tables);
    assert!(
        !outcome.target.contains(pg.password()),
        "{}",
        outcome.target
    );
    assert_eq!(target.psql("SELECT sum(total) FROM orders"), "3001500.0");

    target.psql("DELETE FROM orders WHERE id > 100");
    let err = engine
        .restore(&snapshot, &mut postgres_target(), &force(false))
        .unwrap_err();
    assert!(
        err.to_string().contains("is not empty; add --force"),
        "{err}"
    );
    assert_eq!(target.psql("SELECT count(*) FROM orders"), "100");

    let outcome = engine
        .restore(&snapshot, &mut postgres_target(), &force(true))
        .unwrap();
    assert_eq!(target.psql("SELECT count(*) FROM orders"), "2000");
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
