//! PostgreSQL: a snapshot exported from a REPEATABLE READ transaction is dumped by
//! `pg_dump --snapshot`, and its rows are counted from the dump, so the recorded row counts
//! describe exactly what the dump holds.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::process::Stdio;

use strongbox_manifest::{DatabaseStats, SourceKind, TableCount};
use tokio::runtime::Runtime;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient, IsolationLevel, NoTls};

use crate::conninfo::{quote_ident, PgConn, ProcessEnv};
use crate::pg_rows::CountingWriter;
use crate::tool::{abandon, copy, CopyError, Major, StderrTail, StreamOps, Streamed, Tool};
use crate::{
    DatabaseSource, DatabaseTarget, Error, Inspection, PgError, Probe, RestoreReport,
    SnapshotQuery, SqlCheck,
};

/// First bytes of a `pg_dump -Fc` archive.
pub(crate) const PG_MAGIC: &[u8] = b"PGDMP";

/// Ordinary tables of every schema but the system ones; pg_dump dumps the data of each.
const TABLES: &str = r"
    SELECT n.nspname::text, c.relname::text,
      EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid),
      EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
              WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                AND d.deptype = 'e')
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\_toast%'
      AND n.nspname NOT LIKE 'pg\_temp\_%'";

/// Objects a user created (not those of extensions): any of them makes a database non-empty.
const USER_OBJECTS: &str = r"
    WITH ext AS (SELECT classid, objid FROM pg_catalog.pg_depend WHERE deptype = 'e'),
    user_ns AS (
        SELECT oid, nspname FROM pg_catalog.pg_namespace
        WHERE nspname NOT IN ('pg_catalog', 'information_schema')
          AND nspname NOT LIKE 'pg\_toast%' AND nspname NOT LIKE 'pg\_temp\_%'
    )
    SELECT
      (SELECT count(*) FROM pg_catalog.pg_class c JOIN user_ns n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND (('pg_catalog.pg_class'::regclass, c.oid) NOT IN (SELECT * FROM ext)))
    + (SELECT count(*) FROM pg_catalog.pg_proc p JOIN user_ns n ON n.oid = p.pronamespace
        WHERE (('pg_catalog.pg_proc'::regclass, p.oid) NOT IN (SELECT * FROM ext)))
    + (SELECT count(*) FROM pg_catalog.pg_type t JOIN user_ns n ON n.oid = t.typnamespace
        WHERE (t.typtype IN ('e', 'd', 'r')
               OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                                                WHERE c.oid = t.typrelid AND c.relkind = 'c')))
          AND (('pg_catalog.pg_type'::regclass, t.oid) NOT IN (SELECT * FROM ext)))
    + (SELECT count(*) FROM user_ns n WHERE n.nspname <> 'public'
          AND (('pg_catalog.pg_namespace'::regclass, n.oid) NOT IN (SELECT * FROM ext)))
    + (SELECT count(*) FROM pg_catalog.pg_largeobject_metadata)";

/// The client for tokio-postgres: a private current-thread runtime (callers are synchronous)
/// and one connection, driven whenever the runtime runs.
pub(crate) struct Session {
    // Dropped before the runtime, which ends the connection task.
    pub(crate) client: Client,
    pub(crate) rt: Runtime,
}

impl Session {
    pub(crate) fn open(conn: &PgConn) -> Result<Self, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Runtime { source })?;
        let (client, connection) = rt
            .block_on(conn.config().connect(NoTls))
            .map_err(|source| Error::Connect {
                database: conn.describe(),
                source: source.into(),
            })?;
        rt.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(Session { client, rt })
    }
}

/// An ordinary table, and whether other tables inherit from it (its `count(*)` counts theirs).
struct Table {
    schema: String,
    name: String,
    inherited: bool,
    /// An extension's (PostGIS's `spatial_ref_sys`): no data the operator made.
    extension: bool,
}

impl Table {
    fn qualified(&self) -> String {
        qualified_name(&self.schema, &self.name)
    }
}

/// A table's name as records show it, `schema.table`; a part holding a dot or a quote is
/// quoted as SQL quotes it, so that `"public.a".b` and `public."a.b"` stay two tables.
pub(crate) fn qualified_name(schema: &str, table: &str) -> String {
    let part = |name: &str| {
        if name.contains(['.', '"']) {
            format!("\"{}\"", name.replace('"', "\"\""))
        } else {
            name.to_string()
        }
    };
    format!("{}.{}", part(schema), part(table))
}

/// Every ordinary table of the database, read through `client`.
fn list_tables(
    rt: &Runtime,
    client: &impl GenericClient,
    conn: &PgConn,
) -> Result<Vec<Table>, Error> {
    let rows = rt
        .block_on(client.query(TABLES, &[]))
        .map_err(|source| Error::Query {
            database: conn.describe(),
            operation: "listing tables",
            source: source.into(),
        })?;
    Ok(rows
        .iter()
        .map(|row| Table {
            schema: row.get(0),
            name: row.get(1),
            inherited: row.get(2),
            extension: row.get(3),
        })
        .collect())
}

/// `table`'s exact row count (with the tables inheriting from it), read through `client`.
fn count_rows(
    rt: &Runtime,
    client: &impl GenericClient,
    conn: &PgConn,
    table: &Table,
) -> Result<TableCount, Error> {
    let sql = format!(
        "SELECT count(*) FROM {}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.name)
    );
    let count: i64 = rt
        .block_on(client.query_one(&sql, &[]))
        .map_err(|source| Error::Table {
            database: conn.describe(),
            table: table.qualified(),
            source: source.into(),
        })?
        .get(0);
    Ok(TableCount {
        name: table.qualified(),
        rows: count as u64,
    })
}

/// Every ordinary table of the database (`schema.table`, sorted) with its exact row count,
/// read through `client`: from `dumped` (the dump's own rows) where it holds the table,
/// with `count(*)` otherwise.
fn count_tables(
    rt: &Runtime,
    client: &impl GenericClient,
    conn: &PgConn,
    dumped: &BTreeMap<String, u64>,
) -> Result<Vec<TableCount>, Error> {
    let mut tables = list_tables(rt, client, conn)?
        .into_iter()
        .map(|table| match dumped.get(&table.qualified()) {
            // A parent's count(*) includes the rows of the tables inheriting from it; the
            // dump holds them under each of those.
            Some(&rows) if !table.inherited => Ok(TableCount {
                name: table.qualified(),
                rows,
            }),
            _ => count_rows(rt, client, conn, &table),
        })
        .collect::<Result<Vec<_>, _>>()?;
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tables)
}

/// The column types a path may come in; `citext` is an extension's, known by name.
const TEXT_TYPES: [&str; 5] = ["text", "varchar", "bpchar", "name", "citext"];

/// Queries inside the dump's exported snapshot, on its transaction.
struct PgQuery<'a, C> {
    rt: &'a Runtime,
    client: &'a C,
    database: &'a str,
}

impl<C: GenericClient + Sync> SnapshotQuery for PgQuery<'_, C> {
    fn for_each_text(
        &mut self,
        sql: &str,
        row: &mut dyn FnMut(&str) -> Result<(), String>,
    ) -> Result<u64, Error> {
        use futures::StreamExt as _;
        let failed = |source: tokio_postgres::Error| Error::Query {
            database: self.database.to_string(),
            operation: "running the query",
            source: source.into(),
        };
        let bad = |reason: String| Error::BadRows {
            database: self.database.to_string(),
            reason,
        };
        self.rt.block_on(async {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 0] = [];
            let rows = self
                .client
                .query_raw(sql, params.iter().copied())
                .await
                .map_err(failed)?;
            let mut rows = std::pin::pin!(rows);
            let mut count = 0;
            while let Some(next) = rows.next().await {
                let next = next.map_err(failed)?;
                match next.try_get::<_, Option<&str>>(0) {
                    Ok(Some(text)) => row(text).map_err(bad)?,
                    Ok(None) => return Err(bad("returned a NULL".to_string())),
                    Err(_) => {
                        let kind = next
                            .columns()
                            .first()
                            .map_or("no".to_string(), |c| c.type_().name().to_string());
                        return Err(bad(format!(
                            "returned a {kind} column; it must return text"
                        )));
                    }
                }
                count += 1;
            }
            Ok(count)
        })
    }

    fn check_one_text_column(&mut self, sql: &str) -> Result<(), Error> {
        let statement = self
            .rt
            .block_on(self.client.prepare(sql))
            .map_err(|source| Error::Query {
                database: self.database.to_string(),
                operation: "preparing the query",
                source: source.into(),
            })?;
        let bad = |reason: String| Error::BadRows {
            database: self.database.to_string(),
            reason,
        };
        match statement.columns() {
            [column] if TEXT_TYPES.contains(&column.type_().name()) => Ok(()),
            [column] => Err(bad(format!(
                "returns a {} column ({}); it must return text",
                column.type_().name(),
                column.name()
            ))),
            columns => Err(bad(format!(
                "returns {} columns ({}); it must return one, the path",
                columns.len(),
                columns
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    fn restore_point(&mut self, name: &str) -> Result<Option<String>, Error> {
        let failed = |source: tokio_postgres::Error| Error::Query {
            database: self.database.to_string(),
            operation: "creating a restore point",
            source: source.into(),
        };
        // Asked first: an error would end the dump's transaction.
        let allowed: bool = self
            .rt
            .block_on(self.client.query_one(
                "SELECT pg_catalog.has_function_privilege('pg_catalog.pg_create_restore_point(text)', 'EXECUTE') \
                 AND NOT pg_catalog.pg_is_in_recovery() \
                 AND pg_catalog.current_setting('wal_level') <> 'minimal'",
                &[],
            ))
            .map_err(failed)?
            .get(0);
        if !allowed {
            return Ok(None);
        }
        let lsn: String = self
            .rt
            .block_on(self.client.query_one(
                "SELECT pg_catalog.pg_create_restore_point($1)::text",
                &[&name],
            ))
            .map_err(failed)?
            .get(0);
        Ok(Some(lsn))
    }
}

/// A PostgreSQL database to back up with `pg_dump`.
#[derive(Debug, Clone)]
pub struct PostgresSource {
    conn: PgConn,
}

impl PostgresSource {
    /// A source for `conninfo`: a `postgres://…`/`postgresql://…` URL or a `key=value`
    /// string. What it leaves out comes from PGHOST, PGPORT, PGUSER, PGDATABASE; the password
    /// from the string, PGPASSWORD or the password file (`~/.pgpass`, PGPASSFILE).
    pub fn new(conninfo: &str) -> Result<Self, Error> {
        Ok(PostgresSource {
            conn: PgConn::parse(conninfo, &ProcessEnv)?,
        })
    }
}

impl DatabaseSource for PostgresSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Postgres
    }

    fn origin(&self) -> String {
        self.conn.redacted.clone()
    }

    fn dump_with(
        &mut self,
        out: &mut dyn Write,
        inside: &mut dyn FnMut(&mut dyn SnapshotQuery) -> Result<(), Error>,
    ) -> Result<DatabaseStats, Error> {
        let conn = &self.conn;
        let database = conn.describe();
        let pg_dump = Tool::find("pg_dump", &database)?;
        let (tool_version, tool_major) = pg_dump.version(&database)?;

        let mut session = Session::open(conn)?;
        let rt = &session.rt;
        let query_error = |operation| {
            let database = database.clone();
            move |source: tokio_postgres::Error| Error::Query {
                database,
                operation,
                source: source.into(),
            }
        };
        // Counting a large table must not hit a server-side timeout, nor may our idle
        // transaction be ended while pg_dump still works from its snapshot.
        rt.block_on(session.client.batch_execute(
            "SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0",
        ))
        .map_err(query_error("setting session options"))?;
        let transaction = rt
            .block_on(
                session
                    .client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start(),
            )
            .map_err(query_error("starting a REPEATABLE READ transaction"))?;
        let row = rt
            .block_on(transaction.query_one(
                "SELECT pg_catalog.pg_export_snapshot(), \
                 pg_catalog.current_setting('server_version'), \
                 pg_catalog.current_setting('server_version_num')::int4",
                &[],
            ))
            .map_err(query_error("exporting a snapshot"))?;
        let snapshot: String = row.get(0);
        let server_version: String = row.get(1);
        let server_major = Major::from_version_num(row.get::<_, i32>(2).max(0) as u32);
        if tool_major < server_major {
            return Err(Error::ToolTooOld {
                tool: "pg_dump",
                tool_version,
                database,
                server_version,
                server_major: server_major.to_string(),
            });
        }
        // Right after the export: a restore point made here is the dump's moment (dumping a
        // large database takes minutes).
        inside(&mut PgQuery {
            rt,
            client: &transaction,
            database: &database,
        })?;
        tracing::info!(%database, %snapshot, "dumping");

        let mut command = pg_dump.command(Some(conn));
        command.arg(format!("--snapshot={snapshot}")).args([
            "--format=custom",
            "--compress=0",
            "--no-password",
        ]);
        let mut counting = CountingWriter::new(out);
        let Streamed {
            bytes: bytes_dumped,
            head,
            stderr,
        } = pg_dump.stream_out(
            command,
            &mut counting,
            PG_MAGIC.len(),
            &database,
            Some(conn),
            &StreamOps {
                start: "starting pg_dump",
                read: "reading pg_dump's output",
                write: "writing the dump",
                wait: "waiting for pg_dump",
            },
        )?;
        if head != PG_MAGIC {
            return Err(Error::BadDump {
                database,
                reason: "pg_dump's output is not a custom-format archive".to_string(),
            });
        }
        if !stderr.is_empty() {
            tracing::info!(%database, pg_dump = %stderr, "pg_dump said");
        }
        // Rows are counted from the dump as it streamed by: a second scan of every table
        // would cost as much as the dump's own. What it does not hold is counted in the same
        // snapshot.
        let dumped = counting.finish().unwrap_or_else(|reason| {
            tracing::info!(%database, %reason, "counting rows with count(*): the dump's rows could not be read");
            BTreeMap::new()
        });
        let tables = count_tables(rt, &transaction, conn, &dumped)?;
        // Read-only: nothing to commit; ending the transaction releases the snapshot.
        rt.block_on(transaction.rollback())
            .map_err(query_error("ending the snapshot transaction"))?;
        Ok(DatabaseStats {
            server_version: format!("PostgreSQL {server_version}"),
            tables,
            bytes_dumped,
            bytes_stored: 0,
            integrity: None,
        })
    }
}

/// A PostgreSQL database to restore into with `pg_restore`.
#[derive(Debug, Clone)]
pub struct PostgresTarget {
    conn: PgConn,
}

impl PostgresTarget {
    /// A target for `conninfo`, which must name the database (`postgres://…/db`,
    /// `dbname=db`); it is created when missing.
    pub fn new(conninfo: &str) -> Result<Self, Error> {
        let conn = PgConn::parse(conninfo, &ProcessEnv)?;
        if !conn.explicit_dbname {
            return Err(Error::InvalidConninfo {
                conninfo: conn.redacted,
                reason: "a restore target must name its database (postgres://host/DB or dbname=DB)"
                    .to_string(),
            });
        }
        Ok(PostgresTarget { conn })
    }

    /// The target as a source: for a safety dump of its content before it is replaced.
    pub fn as_source(&self) -> PostgresSource {
        PostgresSource {
            conn: self.conn.clone(),
        }
    }

    /// Connect to the target; `None` when the database does not exist.
    fn open(&self) -> Result<Option<Session>, Error> {
        match Session::open(&self.conn) {
            Ok(session) => Ok(Some(session)),
            Err(Error::Connect { source, .. })
                if source.code() == Some(&SqlState::INVALID_CATALOG_NAME) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// A session on the server's maintenance database (`postgres`, else `template1`).
    fn maintenance_session(&self) -> Result<Session, Error> {
        let mut last = None;
        for dbname in ["postgres", "template1"] {
            match Session::open(&self.conn.with_dbname(dbname)) {
                Ok(session) => return Ok(session),
                Err(Error::Connect { source, .. })
                    if source.code() == Some(&SqlState::INVALID_CATALOG_NAME) =>
                {
                    last = Some(source);
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Connect {
            database: format!("the maintenance database on {}", self.conn.host_display()),
            source: last.expect("tried a maintenance database"),
        })
    }

    /// Run `work` on the server's maintenance database.
    fn on_maintenance<T>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&Session) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, Error> {
        let session = self.maintenance_session()?;
        work(&session).map_err(|source| Error::Query {
            database: self.conn.describe(),
            operation,
            source: source.into(),
        })
    }

    /// Run `sql` on the server's maintenance database.
    fn maintenance(&self, sql: &str, operation: &'static str) -> Result<(), Error> {
        self.on_maintenance(operation, |session| {
            session.rt.block_on(session.client.batch_execute(sql))
        })
    }

    /// A scratch database `dbname` on the server that `server` connects to (whatever
    /// database `server` names), for a restore test.
    pub fn scratch(server: &str, dbname: &str) -> Result<Self, Error> {
        let conn = PgConn::parse(server, &ProcessEnv)?.with_dbname(dbname);
        Ok(PostgresTarget { conn })
    }

    /// The database's name.
    pub fn dbname(&self) -> &str {
        &self.conn.dbname
    }

    /// The server's major version (`15`).
    pub fn server_major(&self) -> Result<u32, Error> {
        let number: String = self.on_maintenance("reading the server version", |session| {
            let row = session
                .rt
                .block_on(session.client.query_one("SHOW server_version_num", &[]))?;
            Ok(row.get(0))
        })?;
        Ok(number.parse::<u32>().unwrap_or(0) / 10_000)
    }

    /// The databases on the server whose names start with `prefix`.
    pub fn databases_named(&self, prefix: &str) -> Result<Vec<String>, Error> {
        self.on_maintenance("listing databases", |session| {
            let rows = session.rt.block_on(session.client.query(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1",
                &[&prefix],
            ))?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    /// Drop the database, if it exists, ending its connections first (PostgreSQL 13 and
    /// later): a killed restore test can leave a `pg_restore` behind.
    pub fn drop_database(&self) -> Result<(), Error> {
        let force = if self.server_major()? >= 13 {
            " WITH (FORCE)"
        } else {
            ""
        };
        self.maintenance(
            &format!(
                "DROP DATABASE IF EXISTS {}{force}",
                quote_ident(&self.conn.dbname)
            ),
            "dropping the database",
        )
    }

    /// Claim this (scratch) database for as long as the claim lives: a session-level
    /// advisory lock on the maintenance database, which the server releases when this
    /// process ends, however it ends. [`PostgresTarget::unclaimed`] tells the databases no
    /// live process claims.
    pub fn claim(&self) -> Result<Claim, Error> {
        let key = claim_key(&self.conn.dbname);
        let session = self.maintenance_session()?;
        session
            .rt
            .block_on(
                session
                    .client
                    .execute("SELECT pg_advisory_lock($1)", &[&key]),
            )
            .map_err(|source| Error::Query {
                database: self.conn.describe(),
                operation: "claiming the database",
                source: source.into(),
            })?;
        Ok(Claim { _session: session })
    }

    /// Those of `names` (databases on this server) that no live process claims.
    pub fn unclaimed(&self, names: &[String]) -> Result<Vec<String>, Error> {
        self.on_maintenance("looking for claims", |session| {
            let mut free = Vec::new();
            for name in names {
                let key = claim_key(name);
                let row = session.rt.block_on(
                    session
                        .client
                        .query_one("SELECT pg_try_advisory_lock($1)", &[&key]),
                )?;
                if row.get::<_, bool>(0) {
                    session.rt.block_on(
                        session
                            .client
                            .execute("SELECT pg_advisory_unlock($1)", &[&key]),
                    )?;
                    free.push(name.clone());
                }
            }
            Ok(free)
        })
    }

    /// Every btree index through amcheck's `bt_index_check`, when the extension can be
    /// created (it needs a superuser or a role allowed to).
    fn check_indexes(&self, session: &Session) -> Result<String, String> {
        let run = |sql: &str| session.rt.block_on(session.client.batch_execute(sql));
        if let Err(e) = run("CREATE EXTENSION IF NOT EXISTS amcheck") {
            return Ok(format!(
                "skipped: amcheck cannot be created here ({})",
                crate::error::one_line(&PgError::from(e).to_string())
            ));
        }
        let indexes: Vec<String> = session
            .rt
            .block_on(session.client.query(BTREE_INDEXES, &[]))
            .map_err(|e| format!("listing indexes: {}", PgError::from(e)))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let broken: Vec<String> = indexes
            .iter()
            .filter_map(|index| {
                let sql = format!(
                    "SELECT bt_index_check('{}'::regclass)",
                    index.replace('\'', "''")
                );
                run(&sql)
                    .err()
                    .map(|e| format!("index {index}: {}", PgError::from(e)))
            })
            .collect();
        if broken.is_empty() {
            Ok(format!(
                "bt_index_check passed on {} btree index(es)",
                indexes.len()
            ))
        } else {
            Err(broken.join("; "))
        }
    }

    /// Every foreign key: no row whose key columns are all set lacks its parent row.
    fn check_foreign_keys(&self, session: &Session) -> Result<String, String> {
        let keys = session
            .rt
            .block_on(session.client.query(FOREIGN_KEYS, &[]))
            .map_err(|e| format!("listing foreign keys: {}", PgError::from(e)))?;
        let mut orphaned = Vec::new();
        for key in &keys {
            let (name, child, parent): (String, String, String) =
                (key.get(0), key.get(1), key.get(2));
            let (columns, referenced): (Vec<String>, Vec<String>) = (key.get(3), key.get(4));
            let set: Vec<String> = columns
                .iter()
                .map(|c| format!("c.{c} IS NOT NULL"))
                .collect();
            let matches: Vec<String> = columns
                .iter()
                .zip(&referenced)
                .map(|(c, p)| format!("p.{p} = c.{c}"))
                .collect();
            let sql = format!(
                "SELECT count(*) FROM {child} c WHERE {} AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {})",
                set.join(" AND "),
                matches.join(" AND ")
            );
            let count: i64 = session
                .rt
                .block_on(session.client.query_one(&sql, &[]))
                .map_err(|e| {
                    format!(
                        "checking foreign key {name} on {child}: {}",
                        PgError::from(e)
                    )
                })?
                .get(0);
            if count > 0 {
                orphaned.push(format!(
                    "{child}: {count} row(s) break foreign key {name} (no row in {parent})"
                ));
            }
        }
        if orphaned.is_empty() {
            Ok(format!("{} foreign key(s), no orphaned rows", keys.len()))
        } else {
            Err(orphaned.join("; "))
        }
    }

    fn is_empty_session(&self, session: &Session) -> Result<bool, Error> {
        let objects: i64 = session
            .rt
            .block_on(session.client.query_one(USER_OBJECTS, &[]))
            .map_err(|source| Error::Query {
                database: self.conn.describe(),
                operation: "looking for existing objects",
                source: source.into(),
            })?
            .get(0);
        Ok(objects == 0)
    }

    /// `pg_restore --clean` replaces the dump's objects alone: tables the snapshot lacks
    /// (a bad migration's, to be rolled back) would stay beside the restored ones.
    fn refuse_tables_beyond(
        &self,
        session: &Session,
        expected: &DatabaseStats,
    ) -> Result<(), Error> {
        let known: std::collections::BTreeSet<&str> =
            expected.tables.iter().map(|t| t.name.as_str()).collect();
        let beyond: Vec<String> = list_tables(&session.rt, &session.client, &self.conn)?
            .iter()
            .filter(|table| !table.extension)
            .map(Table::qualified)
            .filter(|name| !known.contains(name.as_str()))
            .collect();
        if beyond.is_empty() {
            return Ok(());
        }
        Err(Error::TablesBeyondSnapshot {
            database: self.conn.describe(),
            tables: beyond.join(", "),
        })
    }

    fn pg_restore(&self, dump: &mut dyn Read, replace: bool) -> Result<(), Error> {
        let conn = &self.conn;
        let database = conn.describe();
        let pg_restore = Tool::find("pg_restore", &database)?;
        // Only the database name goes into the arguments (as a conninfo, so that no name is
        // mistaken for one); host, user and password travel in the environment.
        let dbname = format!(
            "dbname='{}'",
            conn.dbname.replace('\\', "\\\\").replace('\'', "\\'")
        );
        let mut command = pg_restore.command(Some(conn));
        command
            .arg("--dbname")
            .arg(dbname)
            // One transaction: a failed restore leaves the database as it was.
            .args([
                "--no-owner",
                "--exit-on-error",
                "--single-transaction",
                "--no-password",
            ]);
        if replace {
            command.args(["--clean", "--if-exists"]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Stream {
                operation: "starting pg_restore",
                database: database.clone(),
                source: e,
            })?;
        let stderr = StderrTail::start(child.stderr.take());
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut head = Vec::new();
        let copied = copy(dump, &mut stdin, &mut head, 0);
        drop(stdin);
        let stopped_reading = match copied {
            Ok(_) => None,
            // pg_restore quit early; its exit status and stderr tell why.
            Err(CopyError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => Some(e),
            Err(CopyError::Write(e)) => {
                abandon(&mut child);
                return Err(Error::Stream {
                    operation: "feeding pg_restore",
                    database,
                    source: e,
                });
            }
            Err(CopyError::Read(e)) => {
                // Killing pg_restore aborts its transaction: nothing is changed.
                abandon(&mut child);
                return Err(Error::Stream {
                    operation: "reading the dump",
                    database,
                    source: e,
                });
            }
        };
        let status = child.wait().map_err(|e| Error::Stream {
            operation: "waiting for pg_restore",
            database: database.clone(),
            source: e,
        })?;
        let stderr = stderr.finish(Some(conn));
        if !status.success() {
            return Err(Error::ToolFailed {
                tool: "pg_restore",
                database,
                status: status.to_string(),
                stderr,
            });
        }
        if let Some(e) = stopped_reading {
            return Err(Error::Stream {
                operation: "feeding pg_restore (it stopped reading)",
                database,
                source: e,
            });
        }
        if !stderr.is_empty() {
            tracing::info!(%database, pg_restore = %stderr, "pg_restore said");
        }
        Ok(())
    }
}

impl DatabaseTarget for PostgresTarget {
    fn kind(&self) -> SourceKind {
        SourceKind::Postgres
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.conn.describe(), self.conn.redacted)
    }

    fn is_empty(&mut self) -> Result<bool, Error> {
        match self.open()? {
            None => Ok(true),
            Some(session) => self.is_empty_session(&session),
        }
    }

    fn check_replacement(&mut self, expected: &DatabaseStats) -> Result<(), Error> {
        match self.open()? {
            Some(session) => self.refuse_tables_beyond(&session, expected),
            None => Ok(()),
        }
    }

    fn restore(
        &mut self,
        dump: &mut dyn Read,
        expected: &DatabaseStats,
    ) -> Result<RestoreReport, Error> {
        let database = self.conn.describe();
        // Fail on a missing pg_restore before creating anything.
        Tool::find("pg_restore", &database)?;
        let (created, replace) = match self.open()? {
            Some(session) => {
                let replace = !self.is_empty_session(&session)?;
                if replace {
                    // Checked again for a caller that skipped check_replacement.
                    self.refuse_tables_beyond(&session, expected)?;
                }
                (false, replace)
            }
            None => {
                tracing::info!(%database, "creating the database");
                self.maintenance(
                    &format!(
                        "CREATE DATABASE {} TEMPLATE template0",
                        quote_ident(&self.conn.dbname)
                    ),
                    "creating the database",
                )?;
                (true, false)
            }
        };
        let result = self.pg_restore(dump, replace).and_then(|()| {
            let session = Session::open(&self.conn)?;
            let tables = count_tables(&session.rt, &session.client, &self.conn, &BTreeMap::new())?;
            check_counts(&database, &tables, expected)?;
            Ok(RestoreReport {
                tables,
                previous: None,
            })
        });
        if result.is_err() && created {
            let drop = format!("DROP DATABASE IF EXISTS {}", quote_ident(&self.conn.dbname));
            if let Err(e) =
                self.maintenance(&drop, "dropping the database a failed restore created")
            {
                tracing::warn!(%database, error = &e as &dyn std::error::Error, "could not drop the database of a failed restore");
            }
        }
        result
    }

    fn safety_source(&self) -> Option<Box<dyn DatabaseSource>> {
        Some(Box::new(self.as_source()))
    }

    fn query_restored(
        &mut self,
        inside: &mut dyn FnMut(&mut dyn SnapshotQuery) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let session = Session::open(&self.conn)?;
        inside(&mut PgQuery {
            rt: &session.rt,
            client: &session.client,
            database: &self.conn.describe(),
        })
    }

    fn inspect(&mut self, checks: &[SqlCheck]) -> Result<Vec<Inspection>, Error> {
        let session = Session::open(&self.conn)?;
        let analyze = Inspection::timed(Probe::Integrity, || {
            session
                .rt
                .block_on(session.client.batch_execute("ANALYZE"))
                .map(|()| "ANALYZE read every table".to_string())
                .map_err(|e| format!("ANALYZE failed: {}", PgError::from(e)))
        });
        let mut inspections = vec![
            analyze,
            Inspection::timed(Probe::Indexes, || self.check_indexes(&session)),
            Inspection::timed(Probe::ForeignKeys, || self.check_foreign_keys(&session)),
        ];
        inspections.extend(checks.iter().map(|check| {
            Inspection::timed(Probe::Query, || {
                postgres_rows(&session, &check.query)
                    .map_err(|e| format!("{}: {e}", check.name))
                    .and_then(|rows| check.judge(&rows))
            })
        }));
        Ok(inspections)
    }
}

/// A live claim on a database (see [`PostgresTarget::claim`]); dropping it releases it.
pub struct Claim {
    _session: Session,
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Claim")
    }
}

/// The advisory-lock key of a database name: FNV-1a, stable across processes and hosts.
fn claim_key(name: &str) -> i64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    hash as i64
}

/// Every row `sql` returns, its columns as text joined by `|` (the query runs as simple
/// protocol, which hands every value over as text).
fn postgres_rows(session: &Session, sql: &str) -> Result<Vec<String>, PgError> {
    let messages = session.rt.block_on(session.client.simple_query(sql))?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect())
}

/// Every valid btree index outside the system schemas, as a `regclass` name.
const BTREE_INDEXES: &str = "SELECT c.oid::regclass::text FROM pg_index i \
    JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam \
    JOIN pg_namespace n ON n.oid = c.relnamespace \
    WHERE a.amname = 'btree' AND i.indisvalid AND c.relpersistence <> 't' \
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
    ORDER BY 1";

/// Every foreign key outside the system schemas: name, child and parent table (as
/// `regclass` names), and the quoted column names on each side, in key order.
const FOREIGN_KEYS: &str = "SELECT con.conname::text, con.conrelid::regclass::text, \
    con.confrelid::regclass::text, \
    ARRAY(SELECT quote_ident(a.attname) FROM unnest(con.conkey) WITH ORDINALITY k(n, i) \
          JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i), \
    ARRAY(SELECT quote_ident(a.attname) FROM unnest(con.confkey) WITH ORDINALITY k(n, i) \
          JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i) \
    FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace \
    WHERE con.contype = 'f' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
    ORDER BY 1, 2";

/// Compare restored counts with the snapshot's. Tables the target had besides were refused
/// before the restore (`refuse_tables_beyond`), but for an extension's, which the dump does
/// not name and the restore keeps.
fn check_counts(
    database: &str,
    actual: &[TableCount],
    expected: &DatabaseStats,
) -> Result<(), Error> {
    let actual: BTreeMap<&str, u64> = actual.iter().map(|t| (t.name.as_str(), t.rows)).collect();
    let mismatches: Vec<String> = expected
        .tables
        .iter()
        .filter_map(|t| match actual.get(t.name.as_str()) {
            None => Some(format!("table {} is missing", t.name)),
            Some(&rows) if rows != t.rows => Some(format!(
                "table {} has {rows} rows, the snapshot {}",
                t.name, t.rows
            )),
            Some(_) => None,
        })
        .collect();
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(Error::CountMismatch {
            database: database.to_string(),
            mismatches: mismatches.join("; "),
        })
    }
}

/// `pg_restore --list` over a stored dump: the archive's table of contents must read.
pub(crate) fn verify(dump: &mut dyn Read) -> Result<String, Error> {
    let what = "the PostgreSQL dump";
    let pg_restore = Tool::find("pg_restore", what)?;
    let mut child = pg_restore
        .command(None)
        .arg("--list")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Stream {
            operation: "starting pg_restore",
            database: what.to_string(),
            source: e,
        })?;
    let stderr = StderrTail::start(child.stderr.take());
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let listing = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut head = Vec::new();
    let copied = copy(dump, &mut stdin, &mut head, PG_MAGIC.len());
    drop(stdin);
    match copied {
        Ok(_) => {}
        // --list stops reading once it has the table of contents.
        Err(CopyError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(CopyError::Write(e)) | Err(CopyError::Read(e)) => {
            abandon(&mut child);
            return Err(Error::Stream {
                operation: "reading the dump into pg_restore --list",
                database: what.to_string(),
                source: e,
            });
        }
    }
    // Read the rest too, so that the caller's checks of the stream (digest, codec) see it all.
    io::copy(dump, &mut io::sink()).map_err(|e| Error::Stream {
        operation: "reading the dump",
        database: what.to_string(),
        source: e,
    })?;
    let status = child.wait().map_err(|e| Error::Stream {
        operation: "waiting for pg_restore",
        database: what.to_string(),
        source: e,
    })?;
    let stderr = stderr.finish(None);
    let listing = listing.join().ok().and_then(Result::ok).unwrap_or_default();
    if head.len() >= PG_MAGIC.len() && head != PG_MAGIC {
        return Err(Error::BadDump {
            database: what.to_string(),
            reason: "not a pg_dump custom-format archive".to_string(),
        });
    }
    if !status.success() {
        return Err(Error::ToolFailed {
            tool: "pg_restore",
            database: what.to_string(),
            status: status.to_string(),
            stderr,
        });
    }
    let entries = listing
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        .count();
    let from = listing
        .lines()
        .find_map(|l| l.strip_prefix(";     Dumped from database version:"))
        .map(|v| format!(", dumped from PostgreSQL {}", v.trim()))
        .unwrap_or_default();
    Ok(format!("{entries} TOC entries{from}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `"public.a".b` and `public."a.b"` were both recorded as `public.a.b`, so
    /// one's count stood for the other's.
    #[test]
    fn a_qualified_name_quotes_a_part_holding_a_dot_or_a_quote() {
        let cases = [
            (("public", "users"), "public.users"),
            (("public", "Mixed Case"), "public.Mixed Case"),
            (("public", "a.b"), "public.\"a.b\""),
            (("public.a", "b"), "\"public.a\".b"),
            (("app", "we\"ird"), "app.\"we\"\"ird\""),
        ];
        for ((schema, table), name) in cases {
            assert_eq!(qualified_name(schema, table), name);
        }
    }
}
