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
    /// Owner's numeric user id; absent from listings written before owners were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Owner's numeric group id; absent from listings written before owners were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
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
    /// Where a regular file's entry starts in its holder's archive, counted in bytes of
    /// the tar stream: a partial restore fetches only the frames that hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Status-change time (ns), for change detection.
    #[serde(default)]
    pub ctime: i64,
    /// Inode number, for change detection.
    #[serde(default)]
    pub inode: u64,
}

/// The tree of a files snapshot: whole, or (with [`Listing::delta`]) as the changes since
/// an earlier snapshot's listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// Always `strongbox-files`.
    pub format: String,
    /// Format version: 1 for a whole tree, 2 for a delta.
    pub version: u32,
    /// The snapshot this listing belongs to.
    pub snapshot: SnapshotId,
    /// Set in a stored delta: the base it applies to and the paths it removes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
    /// Entries sorted by path, so parents come before children; in a delta only the
    /// entries that are new or differ from the base's.
    pub entries: Vec<FileEntry>,
}

/// What a delta listing applies to: the base listing's object (its digest makes the chain
/// self-checking, whether or not the base's record still exists) and the paths it removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// The snapshot whose listing this one applies to.
    pub base: SnapshotId,
    /// The base listing's key, relative to the repository root.
    pub key: String,
    /// The base listing's stored size.
    pub size: u64,
    /// SHA-256 of the base listing's stored bytes.
    pub sha256: String,
    /// Deltas between this listing and a whole one, this one included.
    pub depth: u32,
    /// Entries changed or removed over those deltas: when they reach a share of the tree,
    /// the next listing is whole again.
    pub changes: u64,
    /// Paths of the base that are gone, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// The listings the base's own chain goes on to, newest first, down to the whole one,
    /// so that a reader can fetch and open them all at once instead of one after another.
    /// The walk down the chain still goes by `key`, `size` and `sha256` above, link by link.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub further: Vec<ChainLink>,
}

/// A listing object further down a delta chain ([`Delta::further`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    /// Its key, relative to the repository root.
    pub key: String,
    /// Its stored size.
    pub size: u64,
    /// SHA-256 of its stored bytes.
    pub sha256: String,
}

pub(crate) const LISTING_FORMAT: &str = "strongbox-files";
/// A delta's own format name: versions before deltas refuse it instead of taking a delta
/// for a whole tree.
pub(crate) const DELTA_FORMAT: &str = "strongbox-files-delta";
/// Listing versions this code reads: 1 (whole) and 2 (delta).
pub(crate) const LISTING_VERSION: u32 = 2;

impl Listing {
    /// A listing for `snapshot`.
    pub fn new(snapshot: SnapshotId, entries: Vec<FileEntry>) -> Self {
        Self {
            format: LISTING_FORMAT.to_string(),
            version: crate::FORMAT_VERSION,
            snapshot,
            delta: None,
            entries,
        }
    }

    /// A delta listing of `snapshot`: `entries` new or changed since the base `delta` names.
    pub fn new_delta(snapshot: SnapshotId, delta: Delta, entries: Vec<FileEntry>) -> Self {
        Self {
            format: DELTA_FORMAT.to_string(),
            version: LISTING_VERSION,
            snapshot,
            delta: Some(delta),
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
        // from_slice: several times faster than parsing from a reader.
        let listing: Listing = serde_json::from_slice(json).map_err(|source| Error::Decode {
            what: "listing",
            key: key.to_string(),
            source,
        })?;
        crate::stream::check_format(
            Some(&listing.format),
            listing.version,
            listing.delta.as_ref(),
        )
        .map_err(|reason| Error::Corrupt {
            what: "listing",
            key: key.to_string(),
            reason,
        })?;
        Ok(listing)
    }

    /// The paths of the regular files of a whole listing read from `reader` (its JSON),
    /// without holding the listing or its text: for checks that need only the names. A
    /// delta is refused: it needs its base.
    pub fn file_paths(key: &str, reader: impl std::io::Read) -> Result<Vec<String>, Error> {
        let corrupt = |source| Error::Decode {
            what: "listing",
            key: key.to_string(),
            source,
        };
        let mut de = serde_json::Deserializer::from_reader(reader);
        let paths = FilePaths::deserialize(&mut de).map_err(corrupt)?;
        de.end().map_err(corrupt)?;
        Ok(paths.0)
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

/// A listing read for its regular files' paths alone.
struct FilePaths(Vec<String>);

impl<'de> Deserialize<'de> for FilePaths {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ListingVisitor)
    }
}

struct ListingVisitor;

impl<'de> serde::de::Visitor<'de> for ListingVisitor {
    type Value = FilePaths;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a strongbox files listing")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<FilePaths, A::Error> {
        let mut paths = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "format" => {
                    let format: String = map.next_value()?;
                    if format == DELTA_FORMAT {
                        return Err(serde::de::Error::custom(
                            "a delta listing: it needs its base listing applied",
                        ));
                    }
                    if format != LISTING_FORMAT {
                        return Err(serde::de::Error::custom(format!(
                            "unknown format {format:?}"
                        )));
                    }
                }
                "entries" => paths = Some(map.next_value::<EntryPaths>()?.0),
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        paths
            .map(FilePaths)
            .ok_or_else(|| serde::de::Error::missing_field("entries"))
    }
}

/// The entries array, keeping each regular file's path.
struct EntryPaths(Vec<String>);

impl<'de> Deserialize<'de> for EntryPaths {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = EntryPaths;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the listing's entries")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<EntryPaths, A::Error> {
                #[derive(Deserialize)]
                struct Named {
                    path: String,
                    #[serde(rename = "type")]
                    kind: FileType,
                }
                let mut paths = Vec::new();
                while let Some(entry) = seq.next_element::<Named>()? {
                    if entry.kind == FileType::File {
                        paths.push(entry.path);
                    }
                }
                Ok(EntryPaths(paths))
            }
        }
        d.deserialize_seq(Entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: FileType) -> FileEntry {
        FileEntry {
            path: path.to_string(),
            kind,
            size: 1,
            mode: 0o644,
            uid: None,
            gid: None,
            mtime: 0,
            sha256: None,
            target: None,
            holder: None,
            offset: None,
            ctime: 0,
            inode: 0,
        }
    }

    #[test]
    fn decoding_refuses_a_format_that_does_not_match_its_delta_or_a_newer_version() {
        let delta = r#"{"base":"20250101T000001Z-000000","key":"k","size":1,"sha256":"","depth":1,"changes":0}"#;
        let cases = [
            (format!(r#"{{"format":"strongbox-files","version":1,"snapshot":"20250101T000001Z-000000","delta":{delta},"entries":[]}}"#), "whole listing with a delta"),
            (r#"{"format":"strongbox-files-delta","version":2,"snapshot":"20250101T000001Z-000000","entries":[]}"#.to_string(), "without its delta"),
            (r#"{"format":"strongbox-files","version":3,"snapshot":"20250101T000001Z-000000","entries":[]}"#.to_string(), "version 3 is newer"),
            (r#"{"format":"other","version":1,"snapshot":"20250101T000001Z-000000","entries":[]}"#.to_string(), "unknown format"),
        ];
        for (json, reason) in cases {
            let error = Listing::from_json("key", json.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(reason) && error.contains("key"),
                "{json}: {error}"
            );
        }
    }

    #[test]
    fn file_paths_stream_only_the_regular_files() {
        let listing = Listing::new(
            SnapshotId::parse("20250101T000000Z-000000").unwrap(),
            vec![
                entry("a", FileType::Dir),
                entry("a/x.jpg", FileType::File),
                entry("a/link", FileType::Symlink),
                entry("b.txt", FileType::File),
            ],
        );
        let mut json = Vec::new();
        listing.write_json(&mut json).unwrap();
        let paths = Listing::file_paths("k", json.as_slice()).unwrap();
        assert_eq!(paths, ["a/x.jpg", "b.txt"]);

        for (bad, reason) in [
            (r#"{"format":"other","entries":[]}"#, "unknown format"),
            (r#"{"format":"strongbox-files"}"#, "entries"),
            (r#"{"format":"strongbox-files","entries":[]} x"#, "trailing"),
            (
                r#"{"format":"strongbox-files-delta","entries":[]}"#,
                "needs its base",
            ),
        ] {
            let error = crate::error::chain(&Listing::file_paths("k", bad.as_bytes()).unwrap_err());
            assert!(
                error.contains(reason) && error.contains('k'),
                "{bad}: {error}"
            );
        }
    }
}
