//! PostgreSQL dumps and restores against a real server (see `common::pg_base`).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strongbox_test_support::{chain, ClusterDir};

use common::{checksums, exec, pg_base, query, schema, value, TestDb};
use strongbox_db_dump::{
    verify_dump, DatabaseSource, DatabaseTarget, Error, PostgresSource, PostgresTarget,
};
use strongbox_manifest::{DatabaseStats, SourceKind};

const SCHEMA: &str = r#"
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TABLE authors (
        id serial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        mood mood NOT NULL DEFAULT 'ok'
    );
    CREATE TABLE books (
        id bigserial PRIMARY KEY,
        author_id int NOT NULL REFERENCES authors (id) ON DELETE CASCADE,
        title text NOT NULL,
        touched_at timestamptz
    );
    CREATE SEQUENCE ticket_seq START 1000;
    CREATE SCHEMA app;
    CREATE TABLE app."Mixed Case" (k text PRIMARY KEY, v jsonb);
    CREATE VIEW author_books AS
        SELECT a.name, count(b.id) AS books FROM authors a LEFT JOIN books b ON b.author_id = a.id
        GROUP BY a.name;
    CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.touched_at := '2025-01-01T00:00:00Z'; RETURN NEW; END $$;
    CREATE TRIGGER books_touch BEFORE INSERT OR UPDATE ON books
        FOR EACH ROW EXECUTE FUNCTION touch();
    INSERT INTO authors (name, mood) VALUES ('Zoë', 'happy'), ('李白', 'sad'), ('Ωmega "q"', 'ok');
    INSERT INTO books (author_id, title)
        SELECT 1 + i % 3, 'Book ' || i || ' ✓' FROM generate_series(1, 1000) i;
    SELECT nextval('ticket_seq') FROM generate_series(1, 5);
    INSERT INTO app."Mixed Case" VALUES ('emoji', '{"crab": "🦀", "nul": "\\u0001"}');
    SELECT lo_from_bytea(0, convert_to('a large object ✓', 'UTF8'));
    CREATE TABLE big (id bigint PRIMARY KEY, payload text NOT NULL);
    INSERT INTO big SELECT i, md5(i::text) FROM generate_series(1, 1000000) i;
"#;

fn extras(url: &str) -> Vec<Vec<Option<String>>> {
    query(
        url,
        "SELECT (SELECT last_value || '/' || is_called FROM ticket_seq), \
                (SELECT string_agg(md5(lo_get(oid)), ',' ORDER BY oid) FROM pg_largeobject_metadata), \
                (SELECT string_agg(name || '=' || books, ',' ORDER BY name) FROM author_books)",
    )
}

/// Each recorded table with its rows.
fn table_counts(stats: &DatabaseStats) -> Vec<(&str, u64)> {
    stats
        .tables
        .iter()
        .map(|t| (t.name.as_str(), t.rows))
        .collect()
}

#[test]
fn full_schema_and_a_million_rows_round_trip() {
    let Some(base) = pg_base() else { return };
    let source_db = TestDb::create(&base, "roundtrip_src");
    let started = Instant::now();
    exec(&source_db.url(), SCHEMA);
    eprintln!("schema and 1M rows loaded in {:?}", started.elapsed());

    let mut source = PostgresSource::new(&source_db.url()).unwrap();
    assert_eq!(source.kind(), SourceKind::Postgres);
    assert!(!source.origin().contains(&common::base_password(&base)));
    assert!(source.origin().contains(":***@"), "{}", source.origin());

    let dir = tempfile::tempdir().unwrap();
    let dump_path = dir.path().join("dump.pgdump");
    let mut file = std::fs::File::create(&dump_path).unwrap();
    let started = Instant::now();
    let stats = source.dump(&mut file).unwrap();
    drop(file);
    eprintln!(
        "dumped {} bytes in {:?}",
        stats.bytes_dumped,
        started.elapsed()
    );
    let dump = std::fs::read(&dump_path).unwrap();
    assert_eq!(stats.bytes_dumped, dump.len() as u64);
    assert!(dump.starts_with(b"PGDMP"));
    assert!(
        stats.server_version.starts_with("PostgreSQL "),
        "{}",
        stats.server_version
    );
    assert_eq!(stats.integrity, None);
    let counts = table_counts(&stats);
    assert_eq!(
        counts,
        [
            ("app.Mixed Case", 1),
            ("public.authors", 3),
            ("public.big", 1_000_000),
            ("public.books", 1000),
        ]
    );

    let summary = verify_dump(SourceKind::Postgres, &mut dump.as_slice()).unwrap();
    let entries: usize = summary.split_whitespace().next().unwrap().parse().unwrap();
    assert!(entries > 20, "{summary}");
    assert!(
        summary.contains("TOC entries, dumped from PostgreSQL 1"),
        "{summary}"
    );

    let target_db = TestDb::named(&base, "roundtrip_dst");
    let mut target = PostgresTarget::new(&target_db.url()).unwrap();
    assert!(
        target.is_empty().unwrap(),
        "a missing database counts as empty"
    );
    let started = Instant::now();
    let report = target.restore(&mut dump.as_slice(), &stats).unwrap();
    eprintln!("restored in {:?}", started.elapsed());
    assert_eq!(report.tables, stats.tables);
    assert_eq!(report.previous, None);
    assert!(target_db.exists());
    assert!(!target.is_empty().unwrap());

    assert_eq!(
        schema(&base, &source_db.name),
        schema(&base, &target_db.name)
    );
    let sums = checksums(&source_db.url());
    assert_eq!(sums.len(), 4);
    assert_eq!(sums, checksums(&target_db.url()));
    let source_extras = extras(&source_db.url());
    assert_eq!(
        source_extras[0][0].as_deref(),
        Some("1004/true"),
        "sequence position"
    );
    assert_eq!(source_extras, extras(&target_db.url()));
}

#[test]
fn counts_describe_the_dump_while_a_writer_inserts() {
    let Some(base) = pg_base() else { return };
    let source_db = TestDb::create(&base, "writer_src");
    exec(
        &source_db.url(),
        "CREATE TABLE events (id bigserial PRIMARY KEY, note text NOT NULL);
         INSERT INTO events (note) SELECT 'seed ' || i FROM generate_series(1, 20000) i;
         CREATE TABLE filler AS SELECT i AS id, repeat(md5(i::text), 4) AS pad
             FROM generate_series(1, 300000) i;",
    );

    let stop = Arc::new(AtomicBool::new(false));
    let inserted = Arc::new(AtomicU64::new(0));
    let writer = {
        let (url, stop, inserted) = (source_db.url(), stop.clone(), inserted.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                while !stop.load(Ordering::SeqCst) {
                    client
                        .execute("INSERT INTO events (note) VALUES ('during the dump')", &[])
                        .await
                        .unwrap();
                    inserted.fetch_add(1, Ordering::SeqCst);
                }
            });
        })
    };
    while inserted.load(Ordering::SeqCst) < 50 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut dump = Vec::new();
    let before = inserted.load(Ordering::SeqCst);
    let stats = PostgresSource::new(&source_db.url())
        .unwrap()
        .dump(&mut dump)
        .unwrap();
    let during = inserted.load(Ordering::SeqCst) - before;
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(during > 0, "the writer inserted while the dump ran");

    let recorded = stats
        .tables
        .iter()
        .find(|t| t.name == "public.events")
        .unwrap()
        .rows;
    let now: u64 = value(&source_db.url(), "SELECT count(*) FROM events")
        .parse()
        .unwrap();
    assert!(recorded >= 20_050, "{recorded}");
    assert!(
        now > recorded,
        "rows were added after the snapshot: {now} vs {recorded}"
    );

    let target_db = TestDb::named(&base, "writer_dst");
    let report = PostgresTarget::new(&target_db.url())
        .unwrap()
        .restore(&mut dump.as_slice(), &stats)
        .unwrap();
    assert_eq!(report.tables, stats.tables);
    let restored: u64 = value(&target_db.url(), "SELECT count(*) FROM events")
        .parse()
        .unwrap();
    assert_eq!(restored, recorded);
}

/// Rows are counted from the dump's COPY data; each count must still be the table's
/// `count(*)`, whatever its rows hold and however tables inherit from one another.
#[test]
fn counts_from_the_dump_equal_count_star_for_odd_rows_inheritance_and_partitions() {
    let Some(base) = pg_base() else { return };
    let source_db = TestDb::create(&base, "counts_src");
    exec(
        &source_db.url(),
        r#"CREATE TABLE notes (id int, body text, raw bytea);
           INSERT INTO notes VALUES (1, E'two\nlines', E'\\x0a0a'), (2, E'cr\r\nlf\there', NULL),
               (3, E'back\\slash\\n', ''), (4, NULL, NULL), (5, '', E'\\x5c6e');
           CREATE TABLE parent (id int);
           CREATE TABLE child (extra int) INHERITS (parent);
           INSERT INTO parent VALUES (1), (2);
           INSERT INTO child VALUES (3, 0), (4, 0), (5, 0);
           CREATE TABLE measures (at date, v int) PARTITION BY RANGE (at);
           CREATE TABLE measures_2025 PARTITION OF measures
               FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
           CREATE TABLE measures_2026 PARTITION OF measures
               FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
           INSERT INTO measures SELECT date '2025-12-01' + i, i FROM generate_series(0, 99) i;
           CREATE SCHEMA "odd ""schema""";
           CREATE TABLE "odd ""schema""".":name\n" (x text);
           INSERT INTO "odd ""schema""".":name\n" VALUES (E'\n'), (E'\n\n');
           CREATE TABLE empty (x int);
           CREATE UNLOGGED TABLE scratch (x int);
           INSERT INTO scratch SELECT generate_series(1, 3);
           SELECT lo_from_bytea(0, E'\\x0a0a0a');"#,
    );

    let mut dump = Vec::new();
    let stats = PostgresSource::new(&source_db.url())
        .unwrap()
        .dump(&mut dump)
        .unwrap();
    let counts = table_counts(&stats);
    assert_eq!(
        counts,
        [
            // A part holding a quote (or a dot) is quoted, as SQL quotes it.
            ("\"odd \"\"schema\"\"\".:name\\n", 2),
            ("public.child", 3),
            ("public.empty", 0),
            ("public.measures_2025", 31),
            ("public.measures_2026", 69),
            ("public.notes", 5),
            ("public.parent", 5),
            ("public.scratch", 3),
        ]
    );
    // As SQL names it: a quoted part as it stands, any other quoted.
    let ident = |part: &str| match part.starts_with('"') {
        true => part.to_string(),
        false => format!("\"{}\"", part.replace('"', "\"\"")),
    };
    for (name, rows) in counts {
        let (schema, table) = name.split_once('.').unwrap();
        let sql = format!("SELECT count(*) FROM {}.{}", ident(schema), ident(table));
        assert_eq!(value(&source_db.url(), &sql), rows.to_string(), "{name}");
    }

    let target_db = TestDb::named(&base, "counts_dst");
    let report = PostgresTarget::new(&target_db.url())
        .unwrap()
        .restore(&mut dump.as_slice(), &stats)
        .unwrap();
    assert_eq!(report.tables, stats.tables);
}

/// The rows are counted from the dump as it streams by: the server sees a `count(*)` only of
/// a table others inherit from. Regression: every table was counted with `count(*)` beside
/// pg_dump, a second full scan of the whole database on the server being backed up. Its own
/// cluster, whose log shows every statement it ran.
#[test]
fn the_server_is_asked_count_star_only_of_an_inheritance_parent() {
    let Some(dir) = ClusterDir::new() else { return };
    let mut server = dir.init("data", "log_statement = 'all'\n");
    server.start(&[], "");
    server.psql(
        "CREATE TABLE plain (id int); INSERT INTO plain SELECT generate_series(1, 10);
         CREATE TABLE parent (id int); CREATE TABLE child () INHERITS (parent);
         INSERT INTO parent VALUES (1); INSERT INTO child VALUES (2), (3);",
    );
    let stats = PostgresSource::new(&server.conninfo())
        .unwrap()
        .dump(&mut Vec::new())
        .unwrap();
    assert_eq!(
        table_counts(&stats),
        [
            ("public.child", 2),
            ("public.parent", 3),
            ("public.plain", 10)
        ]
    );
    let log = server.log();
    let counted: Vec<&str> = log
        .lines()
        .filter_map(|line| line.split_once("count(*) FROM \"public\".").map(|(_, t)| t))
        .collect();
    assert_eq!(counted, ["\"parent\""], "count(*) of a user table");
}

#[test]
fn restore_over_an_existing_database_replaces_it_or_changes_nothing() {
    let Some(base) = pg_base() else { return };
    let source_db = TestDb::create(&base, "replace_src");
    exec(
        &source_db.url(),
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 500) i;",
    );
    let mut dump = Vec::new();
    let stats = PostgresSource::new(&source_db.url())
        .unwrap()
        .dump(&mut dump)
        .unwrap();

    let target_db = TestDb::create(&base, "replace_dst");
    exec(
        &target_db.url(),
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t VALUES (1, 'old'), (2, 'old');
         CREATE TABLE unrelated (x int); INSERT INTO unrelated VALUES (7);",
    );
    let mut target = PostgresTarget::new(&target_db.url()).unwrap();
    assert!(!target.is_empty().unwrap());

    // A table the dump does not name would stay beside the restored ones (pg_restore
    // --clean drops the dump's own): refused before anything is written, naming it.
    let before = checksums(&target_db.url());
    let err = target.check_replacement(&stats).unwrap_err();
    assert!(
        matches!(&err, Error::TablesBeyondSnapshot { tables, .. } if tables == "public.unrelated"),
        "{err}"
    );
    let err = target.restore(&mut dump.as_slice(), &stats).unwrap_err();
    assert!(matches!(err, Error::TablesBeyondSnapshot { .. }), "{err}");
    assert_eq!(checksums(&target_db.url()), before);
    exec(&target_db.url(), "DROP TABLE unrelated");
    target.check_replacement(&stats).unwrap();

    // A truncated dump fails inside pg_restore's single transaction: nothing changes.
    let before = checksums(&target_db.url());
    let err = target
        .restore(&mut &dump[..dump.len() / 2], &stats)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ToolFailed {
                tool: "pg_restore",
                ..
            }
        ),
        "{err}"
    );
    assert!(chain(&err).contains(&target_db.name), "{err}");
    assert_eq!(checksums(&target_db.url()), before);

    // A whole dump replaces what it names.
    let report = target.restore(&mut dump.as_slice(), &stats).unwrap();
    assert!(report
        .tables
        .iter()
        .any(|t| t.name == "public.t" && t.rows == 500));
    assert_eq!(value(&target_db.url(), "SELECT count(*) FROM t"), "500");

    // Expected counts that differ from the restored ones are reported by table.
    let mut tampered = stats.clone();
    tampered.tables[0].rows += 1;
    let err = target.restore(&mut dump.as_slice(), &tampered).unwrap_err();
    assert!(matches!(err, Error::CountMismatch { .. }), "{err}");
    assert!(
        chain(&err).contains("table public.t has 500 rows, the snapshot 501"),
        "{err}"
    );
}

#[test]
fn a_failed_restore_into_a_new_database_leaves_none() {
    let Some(base) = pg_base() else { return };
    let target_db = TestDb::named(&base, "garbage_dst");
    let mut target = PostgresTarget::new(&target_db.url()).unwrap();
    let err = target
        .restore(&mut &b"not a dump at all"[..], &Default::default())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ToolFailed {
                tool: "pg_restore",
                ..
            }
        ),
        "{err}"
    );
    assert!(chain(&err).contains(&target_db.name), "{err}");
    assert!(
        !target_db.exists(),
        "the database created for the restore was dropped"
    );

    let err = verify_dump(SourceKind::Postgres, &mut &b"not a dump at all"[..]).unwrap_err();
    assert!(matches!(err, Error::BadDump { .. }), "{err}");
}

#[test]
fn bad_connections_name_the_database_and_the_cause_without_the_password() {
    let Some(base) = pg_base() else { return };
    let password = common::base_password(&base);
    let (host, port, user) = common::base_parts(&base);
    let db = TestDb::create(&base, "badinput");

    let check = |conninfo: &str, needles: &[&str]| {
        let err = PostgresSource::new(conninfo)
            .unwrap()
            .dump(&mut Vec::new())
            .unwrap_err();
        let text = chain(&err);
        for needle in needles {
            assert!(text.contains(needle), "{text:?} lacks {needle:?}");
        }
        assert!(!text.contains(&password), "{text}");
        assert!(!text.contains("wrong-pass-123"), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
        err
    };

    let err = check(
        &format!(
            "postgresql://{user}:wrong-pass-123@{host}:{port}/{}",
            db.name
        ),
        &[
            &db.name,
            &format!("{host}:{port}"),
            "password authentication failed",
        ],
    );
    assert!(matches!(err, Error::Connect { .. }));

    let free = common::unused_port();
    let err = check(
        &format!(
            "postgresql://{user}:wrong-pass-123@127.0.0.1:{free}/{}",
            db.name
        ),
        &[&db.name, &format!("127.0.0.1:{free}"), "onnection refused"],
    );
    assert!(matches!(err, Error::Connect { .. }));

    let missing = format!("{}_missing", db.name);
    let err = check(
        &format!("host={host} port={port} user={user} password={password} dbname={missing}"),
        &[&missing, "does not exist"],
    );
    assert!(matches!(err, Error::Connect { .. }));

    // Targets too; and a target must name its database.
    let err = PostgresTarget::new(&format!(
        "postgresql://{user}:wrong-pass-123@{host}:{port}/{}",
        db.name
    ))
    .unwrap()
    .is_empty()
    .unwrap_err();
    assert!(
        chain(&err).contains("password authentication failed"),
        "{err}"
    );
    assert!(!chain(&err).contains("wrong-pass-123"), "{err}");
    let err = PostgresTarget::new(&format!("postgresql://{user}:wrong-pass-123@{host}:{port}"))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConninfo { .. }), "{err}");
    assert!(!chain(&err).contains("wrong-pass-123"), "{err}");
}
