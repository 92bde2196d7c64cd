use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, SnapshotId};

/// Version of the repository format this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// How a snapshot relates to earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    /// Stores every entry.
    Full,
    /// Stores what changed since the set's latest snapshot.
    Incremental,
    /// Stores what changed since the set's latest full snapshot.
    Differential,
}

impl SnapshotKind {
    /// Lower-case name, as in records.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::Full => "full",
            SnapshotKind::Incremental => "incremental",
            SnapshotKind::Differential => "differential",
        }
    }
}

/// What was backed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A directory tree.
    Files,
    /// A PostgreSQL database.
    Postgres,
    /// An SQLite database file.
    Sqlite,
}

impl SourceKind {
    /// Lower-case name, as in records.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Files => "files",
            SourceKind::Postgres => "postgres",
            SourceKind::Sqlite => "sqlite",
        }
    }
}

/// What a data object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectRole {
    /// A (compressed) tar stream of new and changed entries.
    Archive,
    /// The full files listing.
    Listing,
    /// A database dump or copy.
    Dump,
}

/// A data object a snapshot owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Key relative to the repository root.
    pub key: String,
    /// Size in bytes as stored.
    pub size: u64,
    /// Lower-case hex SHA-256 of the stored bytes.
    pub sha256: String,
    /// What it holds.
    pub role: ObjectRole,
}

/// A source entry that could not be backed up as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceError {
    /// Path relative to the backup root.
    pub path: String,
    /// What happened.
    pub message: String,
}

/// Counts of a files snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStats {
    /// Regular files in the tree.
    pub files: u64,
    /// Directories in the tree.
    pub dirs: u64,
    /// Symbolic links in the tree.
    pub symlinks: u64,
    /// Total size of the regular files in the tree.
    pub bytes: u64,
    /// Entries not in the parent.
    pub new: u64,
    /// Entries changed since the parent.
    pub changed: u64,
    /// Entries unchanged since the parent (not read again).
    pub unchanged: u64,
    /// Parent entries gone from the tree.
    pub deleted: u64,
    /// File bytes read from the source.
    pub bytes_read: u64,
    /// Bytes stored in the repository by this snapshot (archive and listing).
    pub bytes_stored: u64,
}

/// Row count of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCount {
    /// Qualified table name (`schema.table` for PostgreSQL).
    pub name: String,
    /// Exact row count in the snapshot.
    pub rows: u64,
}

/// Description of a database snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseStats {
    /// Server (or library) version.
    pub server_version: String,
    /// Every table with its exact row count.
    pub tables: Vec<TableCount>,
    /// Uncompressed size of the dump.
    pub bytes_dumped: u64,
    /// Bytes stored in the repository.
    pub bytes_stored: u64,
    /// Result of an integrity check, where the source has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<String>,
}

/// Source-specific statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stats {
    /// A files snapshot.
    Files(FileStats),
    /// A database snapshot.
    Database(DatabaseStats),
}

/// A snapshot record: the commit point of a backup, written after every object it names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Repository format version.
    pub format_version: u32,
    /// Unique id, sorting by time.
    pub id: SnapshotId,
    /// The set it belongs to.
    pub set: String,
    /// Full, incremental or differential.
    pub kind: SnapshotKind,
    /// What was backed up.
    pub source: SourceKind,
    /// The snapshot it was diffed against.
    pub parent: Option<SnapshotId>,
    /// When it was taken (RFC 3339, UTC).
    pub time: DateTime<Utc>,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Host that took it.
    pub host: String,
    /// strongbox version that took it.
    pub tool_version: String,
    /// The backed-up path or (redacted) connection string.
    pub origin: String,
    /// Compression of the data objects.
    pub compression: String,
    /// Data objects this snapshot owns.
    pub objects: Vec<ObjectRef>,
    /// Counts.
    pub stats: Stats,
    /// Wall-clock duration of the backup in seconds.
    pub duration_secs: f64,
    /// Entries that could not be backed up and are absent (the snapshot is incomplete).
    #[serde(default)]
    pub errors: Vec<SourceError>,
    /// Entries backed up as read, though they changed while being read.
    #[serde(default)]
    pub warnings: Vec<SourceError>,
}

impl Snapshot {
    /// The object with the given role, if any.
    pub fn object(&self, role: ObjectRole) -> Option<&ObjectRef> {
        self.objects.iter().find(|o| o.role == role)
    }

    /// Decode a record read from `key`.
    pub fn from_json(key: &str, bytes: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
            what: "snapshot record",
            key: key.to_string(),
            reason: e.to_string(),
        })
    }

    /// Encode as pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("records serialize");
        out.push(b'\n');
        out
    }

    /// File statistics, for a files snapshot.
    pub fn file_stats(&self) -> Option<&FileStats> {
        match &self.stats {
            Stats::Files(stats) => Some(stats),
            Stats::Database(_) => None,
        }
    }
}
