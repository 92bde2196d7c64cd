use std::io;
use std::path::PathBuf;

/// Errors of database dumps and restores. Every variant names the database, table or file it
/// is about; connection strings in messages are redacted and no password ever appears.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A PostgreSQL connection string that cannot be used.
    #[error("invalid PostgreSQL connection string {conninfo:?}: {reason}")]
    InvalidConninfo {
        /// The connection string, redacted.
        conninfo: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A PostgreSQL client tool is not installed.
    #[error("{tool} not found on PATH (needed for {database}); install the PostgreSQL client tools, e.g. `apt-get install postgresql-client`")]
    ToolMissing {
        /// `pg_dump` or `pg_restore`.
        tool: &'static str,
        /// The database it was needed for.
        database: String,
    },
    /// The installed `pg_dump` cannot dump the server's version.
    #[error("{tool} {tool_version} is older than the server of {database} (PostgreSQL {server_version}); install the PostgreSQL {server_major} client tools or newer")]
    ToolTooOld {
        /// The tool.
        tool: &'static str,
        /// Its version.
        tool_version: String,
        /// The database.
        database: String,
        /// The server's version.
        server_version: String,
        /// The server's major version.
        server_major: String,
    },
    /// Connecting to a PostgreSQL server failed.
    #[error("cannot connect to {database}: {}", pg_message(.source))]
    Connect {
        /// The database (`database "name" on host:port`).
        database: String,
        /// What failed.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A query on a PostgreSQL database failed.
    #[error("{database}: {operation}: {}", pg_message(.source))]
    Query {
        /// The database.
        database: String,
        /// What was attempted.
        operation: &'static str,
        /// What failed.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Counting the rows of a PostgreSQL table failed.
    #[error("{database}: counting the rows of table {table}: {}", pg_message(.source))]
    Table {
        /// The database.
        database: String,
        /// The table (`schema.table`).
        table: String,
        /// What failed.
        #[source]
        source: tokio_postgres::Error,
    },
    /// `pg_dump` or `pg_restore` failed.
    #[error("{tool} failed for {database} ({status}): {stderr}")]
    ToolFailed {
        /// The tool.
        tool: &'static str,
        /// The database.
        database: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr (last lines, on one line).
        stderr: String,
    },
    /// Moving a dump between a tool and the caller failed.
    #[error("{operation} for {database}: {source}")]
    Stream {
        /// What was being moved (`reading pg_dump output`, `writing the dump`, ...).
        operation: &'static str,
        /// The database or file.
        database: String,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// A dump that is not what its kind says.
    #[error("{database}: {reason}")]
    BadDump {
        /// The database or file the dump belongs to.
        database: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An SQLite operation failed.
    #[error("SQLite database {}: {operation}: {source}", file.display())]
    Sqlite {
        /// The database file.
        file: PathBuf,
        /// What was attempted.
        operation: &'static str,
        /// What failed.
        #[source]
        source: rusqlite::Error,
    },
    /// A local file-system operation failed.
    #[error("{operation} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        operation: &'static str,
        /// The path.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// `PRAGMA integrity_check` did not return `ok`.
    #[error("SQLite database {} failed its integrity check: {result}", file.display())]
    Integrity {
        /// The database file (for a restore, the staged copy's target).
        file: PathBuf,
        /// What the check returned.
        result: String,
    },
    /// The restored database does not hold the rows the snapshot recorded.
    #[error("{database}: the restored data does not match the snapshot: {mismatches}")]
    CountMismatch {
        /// The database or file.
        database: String,
        /// Which tables differ, and how.
        mismatches: String,
    },
    /// A restore target that holds data, without `--force`.
    #[error("restore target {target} is not empty; add --force to replace it (a safety snapshot of its current content is taken first)")]
    TargetNotEmpty {
        /// The target, redacted.
        target: String,
    },
    /// The private async runtime for the PostgreSQL client could not start.
    #[error("starting the PostgreSQL client runtime: {source}")]
    Runtime {
        /// What failed.
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            operation,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sqlite(
        operation: &'static str,
        file: impl Into<PathBuf>,
        source: rusqlite::Error,
    ) -> Self {
        Error::Sqlite {
            file: file.into(),
            operation,
            source,
        }
    }
}

/// A PostgreSQL client error on one line: the server's message (with detail and hint) or
/// the client's error with its cause.
pub(crate) fn pg_message(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut message = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            message.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            message.push_str(&format!("; hint: {hint}"));
        }
        return one_line(&message);
    }
    let mut message = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    one_line(&message)
}

/// Collapse a multi-line message onto one line.
pub(crate) fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
