use std::io;
use std::path::PathBuf;

/// Errors of database dumps and restores. Every variant names the database, table or file it
/// is about; connection strings in messages are redacted and no password ever appears. The
/// cause is the error's `source`, never repeated in its message.
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
    /// A PostgreSQL connection string that does not parse.
    #[error("invalid PostgreSQL connection string {conninfo:?}")]
    ConninfoSyntax {
        /// The connection string, redacted.
        conninfo: String,
        /// What the parser says (it names an option, never its value).
        #[source]
        source: PgError,
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
    #[error("cannot connect to {database}")]
    Connect {
        /// The database (`database "name" on host:port`).
        database: String,
        /// What failed.
        #[source]
        source: PgError,
    },
    /// A query run inside a dump's snapshot returned what it must not.
    #[error("{database}: the query {reason}")]
    BadRows {
        /// The database.
        database: String,
        /// What was wrong (`returned a NULL`, `returned an absolute path "/x"`).
        reason: String,
    },
    /// A query on a PostgreSQL database failed.
    #[error("{database}: {operation}")]
    Query {
        /// The database.
        database: String,
        /// What was attempted.
        operation: &'static str,
        /// What failed.
        #[source]
        source: PgError,
    },
    /// Counting the rows of a PostgreSQL table failed.
    #[error("{database}: counting the rows of table {table}")]
    Table {
        /// The database.
        database: String,
        /// The table (`schema.table`).
        table: String,
        /// What failed.
        #[source]
        source: PgError,
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
    #[error("{operation} for {database}")]
    Stream {
        /// What was being moved (`reading pg_dump output`, `writing the dump`, ...).
        operation: &'static str,
        /// The database or file.
        database: String,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// A stored tar (a base backup) that does not read to its end.
    #[error("{database}: unreadable tar{}", entry.as_ref().map(|e| format!(" (last entry read: {e})")).unwrap_or_default())]
    Tar {
        /// The dump it holds.
        database: String,
        /// The last entry whose header was read, if the tar got that far: a short entry
        /// shows when the next header is sought.
        entry: Option<String>,
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
    #[error("SQLite database {}: {operation}", file.display())]
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
    #[error("{operation} {}", path.display())]
    Io {
        /// What was attempted.
        operation: &'static str,
        /// The path.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// `PRAGMA quick_check` or `integrity_check` did not return `ok`.
    #[error("SQLite database {} failed PRAGMA {check}: {result}", file.display())]
    Integrity {
        /// The database file (for a restore, the staged copy's target).
        file: PathBuf,
        /// The check that failed: `quick_check` or `integrity_check`.
        check: &'static str,
        /// What the check returned.
        result: String,
    },
    /// A forced restore into a database holding tables the snapshot lacks, which
    /// `pg_restore --clean` would leave beside the restored ones.
    #[error("{database} holds tables the snapshot lacks ({tables}); a restore replaces only the snapshot's own and would leave them: drop them first, or restore into a new database")]
    TablesBeyondSnapshot {
        /// The database.
        database: String,
        /// The tables, `schema.table`, comma-separated.
        tables: String,
    },
    /// The restored database does not hold the rows the snapshot recorded.
    #[error("{database}: the restored data does not match the snapshot: {mismatches}")]
    CountMismatch {
        /// The database or file.
        database: String,
        /// Which tables differ, and how.
        mismatches: String,
    },
    /// The private async runtime for the PostgreSQL client could not start.
    #[error("starting the PostgreSQL client runtime")]
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

/// A PostgreSQL client error on one line: the server's message (with detail and hint), or
/// the client's error with its causes. tokio-postgres's own message is "db error" with the
/// server's multi-line text as its source; this prints what an operator needs, once, and so
/// has no `source` of its own.
#[derive(Debug)]
pub struct PgError(tokio_postgres::Error);

impl PgError {
    /// The SQLSTATE of a server error.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        self.0.code()
    }
}

impl From<tokio_postgres::Error> for PgError {
    fn from(error: tokio_postgres::Error) -> Self {
        PgError(error)
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&pg_message(&self.0))
    }
}

impl std::error::Error for PgError {}

fn pg_message(error: &tokio_postgres::Error) -> String {
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
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
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

/// An error and its causes on one line, for a check's detail.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
