use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::{Error, SnapshotId};

/// Kind of a tree entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link (never followed).
    Symlink,
}

/// One entry of a files listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the backup root, `/`-separated.
    pub path: String,
    /// Kind.
    #[serde(rename = "type")]
    pub kind: FileType,
    /// Size in bytes (0 for directories and symlinks).
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime: i64,
    /// Lower-case hex SHA-256 of a regular file's content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Target of a symbolic link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The snapshot whose archive stores this entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<SnapshotId>,
    /// Status-change time (ns), for change detection.
    #[serde(default)]
    pub ctime: i64,
    /// Inode number, for change detection.
    #[serde(default)]
    pub inode: u64,
}

/// The whole tree of a files snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// Always `strongbox-files`.
    pub format: String,
    /// Format version.
    pub version: u32,
    /// The snapshot this listing belongs to.
    pub snapshot: SnapshotId,
    /// Entries, parents before children.
    pub entries: Vec<FileEntry>,
}

const LISTING_FORMAT: &str = "strongbox-files";

impl Listing {
    /// A listing for `snapshot`.
    pub fn new(snapshot: SnapshotId, entries: Vec<FileEntry>) -> Self {
        Self {
            format: LISTING_FORMAT.to_string(),
            version: crate::FORMAT_VERSION,
            snapshot,
            entries,
        }
    }

    /// Write as JSON (the object pipeline compresses it into `<id>.files.json.zst`),
    /// streaming: the JSON text is never held whole.
    pub fn write_json(&self, out: impl Write) -> std::io::Result<()> {
        let mut buffered = std::io::BufWriter::with_capacity(1 << 20, out);
        serde_json::to_writer(&mut buffered, self)?;
        buffered.flush()
    }

    /// Decode a listing's JSON, read from `key`.
    pub fn from_json(key: &str, json: &[u8]) -> Result<Self, Error> {
        let corrupt = |reason: String| Error::Corrupt {
            what: "listing",
            key: key.to_string(),
            reason,
        };
        // from_slice: several times faster than parsing from a reader.
        let listing: Listing = serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))?;
        if listing.format != LISTING_FORMAT {
            return Err(corrupt(format!("unknown format {:?}", listing.format)));
        }
        Ok(listing)
    }

    /// Entries grouped by the snapshot whose archive holds them, oldest holder first.
    pub fn by_holder(&self) -> BTreeMap<&SnapshotId, Vec<&FileEntry>> {
        let mut groups: BTreeMap<&SnapshotId, Vec<&FileEntry>> = BTreeMap::new();
        for entry in &self.entries {
            if let Some(holder) = &entry.holder {
                groups.entry(holder).or_default().push(entry);
            }
        }
        groups
    }
}
