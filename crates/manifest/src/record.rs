use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, PhysicalStats, SnapshotId};

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
    /// A PostgreSQL cluster's base backup, recovered to a point in time with its archived WAL.
    #[serde(rename = "postgres-physical")]
    PostgresPhysical,
    /// Member snapshots of other sets taken together (a database and the files it
    /// references); the record owns no object.
    Bundle,
}

impl SourceKind {
    /// Lower-case name, as in records.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Files => "files",
            SourceKind::Postgres => "postgres",
            SourceKind::Sqlite => "sqlite",
            SourceKind::PostgresPhysical => "postgres-physical",
            SourceKind::Bundle => "bundle",
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

impl SourceError {
    /// An entry at `path` left out of the snapshot for `cause`; the message says so, as the
    /// record keeps it.
    pub fn left_out(path: impl Into<String>, cause: impl std::fmt::Display) -> Self {
        SourceError {
            path: path.into(),
            message: format!("{cause} (not in this snapshot)"),
        }
    }
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
    /// The backed-up directory itself; absent from records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<RootDir>,
}

/// What a files snapshot keeps of the directory it backed up, which a restore makes the
/// target: the listing holds what lies inside it only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootDir {
    /// Permission bits.
    pub mode: u32,
    /// Owner's numeric user id.
    pub uid: u32,
    /// Owner's numeric group id.
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime: i64,
}

impl RootDir {
    /// The directory as `meta` describes it.
    pub fn from_metadata(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        RootDir {
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        }
    }
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
    /// A base backup (before `Bundle`, whose fields are all optional).
    Physical(PhysicalStats),
    /// A bundle.
    Bundle(BundleStats),
}

/// What a bundle found when it checked its database's file references.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleStats {
    /// The reference cross-check, when the bundle has `references`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<ReferenceCheck>,
}

/// The reference cross-check of a bundle: the paths a query of the database returned
/// (inside the dump's snapshot) against the files member's listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceCheck {
    /// The database member queried.
    pub database: String,
    /// The files member compared against.
    pub files: String,
    /// The query, as configured when the bundle was taken (a restore test re-runs it).
    #[serde(default)]
    pub query: String,
    /// The prefix stripped from its paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Distinct paths the query returned.
    pub checked: u64,
    /// Paths referenced but absent from the files snapshot.
    pub missing_count: u64,
    /// The first of them (at most [`ReferenceCheck::MISSING_NAMED`]), sorted.
    pub missing: Vec<String>,
    /// Regular files no row references.
    pub orphans_count: u64,
    /// The first of them (at most [`ReferenceCheck::ORPHANS_NAMED`]), sorted.
    pub orphans: Vec<String>,
    /// Milliseconds the comparison took (the query's rows were read during the dump).
    pub millis: u64,
}

impl ReferenceCheck {
    /// How many missing paths a record names.
    pub const MISSING_NAMED: usize = 1000;
    /// How many orphans a record names.
    pub const ORPHANS_NAMED: usize = 100;

    /// Merge sorted, de-duplicated references with the sorted paths of the files listing,
    /// in one pass: memory is the named paths, not the inputs.
    pub fn merge<E, F: AsRef<str>>(
        references: impl IntoIterator<Item = Result<String, E>>,
        files: impl IntoIterator<Item = Result<F, E>>,
    ) -> Result<ReferenceCheck, E> {
        let mut check = ReferenceCheck::default();
        let mut files = files.into_iter();
        let mut file = files.next().transpose()?;
        let mut last: Option<String> = None;
        for reference in references {
            let reference = reference?;
            if last.as_deref() == Some(reference.as_str()) {
                continue;
            }
            loop {
                match &file {
                    Some(f) if f.as_ref() < reference.as_str() => check.orphan(f.as_ref()),
                    _ => break,
                }
                file = files.next().transpose()?;
            }
            check.checked += 1;
            if file
                .as_ref()
                .is_some_and(|f| f.as_ref() == reference.as_str())
            {
                file = files.next().transpose()?;
            } else {
                check.missing_count += 1;
                if check.missing.len() < Self::MISSING_NAMED {
                    check.missing.push(reference.clone());
                }
            }
            last = Some(reference);
        }
        while let Some(f) = file {
            check.orphan(f.as_ref());
            file = files.next().transpose()?;
        }
        Ok(check)
    }

    fn orphan(&mut self, path: &str) {
        self.orphans_count += 1;
        if self.orphans.len() < Self::ORPHANS_NAMED {
            self.orphans.push(path.to_string());
        }
    }
}

/// A named point in the WAL made when a bundle took its PostgreSQL member, to recover to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePoint {
    /// The member whose server it is on.
    pub member: String,
    /// `strongbox-<bundle id>`.
    pub name: String,
    /// Its LSN.
    pub lsn: String,
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
    /// Tags, each one that [`check_tag`] takes.
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
    /// A bundle's member snapshots, by member set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub members: BTreeMap<String, SnapshotId>,
    /// A bundle's restore point on its PostgreSQL member, when the role may make one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_point: Option<RestorePoint>,
}

impl Snapshot {
    /// The object with the given role, if any.
    pub fn object(&self, role: ObjectRole) -> Option<&ObjectRef> {
        self.objects.iter().find(|o| o.role == role)
    }

    /// Decode a record read from `key`.
    pub fn from_json(key: &str, bytes: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes).map_err(|source| Error::Decode {
            what: "snapshot record",
            key: key.to_string(),
            source,
        })
    }

    /// Encode as pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("records serialize");
        out.push(b'\n');
        out
    }

    /// Bytes its own objects take in the repository (a bundle owns none).
    pub fn bytes_stored(&self) -> u64 {
        match &self.stats {
            Stats::Files(f) => f.bytes_stored,
            Stats::Database(d) => d.bytes_stored,
            Stats::Physical(p) => p.bytes_stored,
            Stats::Bundle(_) => 0,
        }
    }

    /// What a base backup recorded, for a physical snapshot.
    pub fn physical(&self) -> Option<&PhysicalStats> {
        match &self.stats {
            Stats::Physical(stats) => Some(stats),
            _ => None,
        }
    }

    /// File statistics, for a files snapshot.
    pub fn file_stats(&self) -> Option<&FileStats> {
        match &self.stats {
            Stats::Files(stats) => Some(stats),
            Stats::Database(_) | Stats::Physical(_) | Stats::Bundle(_) => None,
        }
    }
}

/// Check a snapshot tag: not empty, no `,` (tags are listed joined by it, so `a,b` would
/// read as two) and no control character (a tag is printed in tables, where a newline
/// split a row in two, and on terminals, where escapes act).
pub fn check_tag(tag: &str) -> Result<&str, Error> {
    let reason = if tag.is_empty() {
        "it is empty"
    } else if tag.contains(',') {
        "it holds ',', which separates tags where they are listed; give each tag on its own"
    } else if tag.chars().any(char::is_control) {
        "it holds a control character"
    } else {
        return Ok(tag);
    };
    Err(Error::InvalidTag {
        tag: tag.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked() {
        let cases: [(&str, Option<&str>); 7] = [
            ("nightly", None),
            ("before upgrade 2.0", None),
            ("ünïcode-✓", None),
            ("", Some("empty")),
            ("a,b", Some("','")),
            ("evil\nline", Some("control character")),
            ("\u{1b}[2J", Some("control character")),
        ];
        for (tag, refused) in cases {
            match (check_tag(tag), refused) {
                (Ok(t), None) => assert_eq!(t, tag),
                (Err(e), Some(why)) => {
                    let shown = e.to_string();
                    assert!(shown.contains(why), "{tag:?}: {shown}");
                    assert!(
                        !shown.contains('\n') && !shown.contains('\u{1b}'),
                        "{shown}"
                    );
                }
                (result, _) => panic!("{tag:?}: {result:?}"),
            }
        }
    }

    #[test]
    fn references_merge_against_the_listing() {
        // (references, files, checked, missing, orphans)
        type Case = (
            &'static [&'static str],
            &'static [&'static str],
            u64,
            &'static [&'static str],
            &'static [&'static str],
        );
        let cases: [Case; 6] = [
            (&[], &[], 0, &[], &[]),
            (&["a", "b"], &["a", "b"], 2, &[], &[]),
            (&["a", "a", "c"], &["a", "b", "c"], 2, &[], &["b"]),
            (&["a", "d"], &["b", "c"], 2, &["a", "d"], &["b", "c"]),
            (&["x/1", "x/2"], &["x/1"], 2, &["x/2"], &[]),
            (&[], &["only"], 0, &[], &["only"]),
        ];
        for (references, files, checked, missing, orphans) in cases {
            let check = ReferenceCheck::merge(
                references.iter().map(|r| Ok::<_, ()>(r.to_string())),
                files.iter().map(Ok),
            )
            .unwrap();
            assert_eq!(check.checked, checked, "{references:?} vs {files:?}");
            assert_eq!(check.missing, missing, "{references:?} vs {files:?}");
            assert_eq!(check.missing_count, missing.len() as u64);
            assert_eq!(check.orphans, orphans, "{references:?} vs {files:?}");
        }
    }

    #[test]
    fn named_paths_are_capped_and_counted() {
        let references = (0..1500).map(|i| Ok::<_, ()>(format!("m{i:05}")));
        let files: Vec<String> = (0..150).map(|i| format!("o{i:05}")).collect();
        let check = ReferenceCheck::merge(references, files.iter().map(Ok)).unwrap();
        assert_eq!((check.missing_count, check.missing.len()), (1500, 1000));
        assert_eq!((check.orphans_count, check.orphans.len()), (150, 100));
    }

    #[test]
    fn bundle_stats_read_back_as_bundle_stats() {
        let stats = Stats::Bundle(BundleStats {
            references: Some(ReferenceCheck::default()),
        });
        let json = serde_json::to_string(&stats).unwrap();
        assert_eq!(serde_json::from_str::<Stats>(&json).unwrap(), stats);
        let physical = Stats::Physical(PhysicalStats {
            start_lsn: crate::Lsn(0x300_0028),
            ..PhysicalStats::default()
        });
        let json = serde_json::to_string(&physical).unwrap();
        assert!(json.contains(r#""start_lsn":"0/3000028""#), "{json}");
        assert_eq!(serde_json::from_str::<Stats>(&json).unwrap(), physical);
    }
}
