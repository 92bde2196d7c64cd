use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strongbox_archive::{ArchiveWriter, Compression, EntryMeta};
use strongbox_manifest::{
    diff, walk_tree, Change, Excludes, FileEntry, FileStats, FileType, Listing, ObjectRole,
    Snapshot, SnapshotKind, SourceError, SourceKind, Stats,
};

use super::{BackupRun, Draft, Source};
use crate::engine::ResolvedListing;
use crate::progress::Tracked;
use crate::{Cancel, Error, Progress};

/// Listings are zstd at this level whatever the archives' compression (`.files.json.zst`).
const LISTING_COMPRESSION: Compression = Compression::Zstd(3);

/// Deltas in a row before a listing is stored whole again: a restore reads at most this
/// many small objects besides the whole listing.
const MAX_DELTA_DEPTH: u32 = 30;

/// A listing is stored whole again once the deltas since the last whole one changed more
/// than 1 / this of the tree's entries: past that, applying them costs more than a whole
/// listing saves.
const MAX_CHANGED_SHARE: u64 = 4;

/// A directory tree to back up: the `files` kind of a set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSpec {
    /// The directory.
    pub path: PathBuf,
    /// Exclude patterns (see [`Excludes`]).
    #[serde(default, rename = "exclude", skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    /// Compression of the archive.
    #[serde(default)]
    pub compression: Compression,
    /// Full, incremental or differential; unset is full for a set's first snapshot and
    /// incremental after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SnapshotKind>,
    /// Read every file again instead of trusting unchanged metadata.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rehash: bool,
}

impl FilesSpec {
    /// Back up `path` with defaults.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FilesSpec {
            path: path.into(),
            excludes: Vec::new(),
            compression: Compression::default(),
            kind: None,
            rehash: false,
        }
    }
}

/// Which kind of snapshot to take and against which parent, given the set's snapshots
/// (oldest first): a differential or incremental without a base becomes a full one.
pub(crate) fn choose_parent(
    existing: &[Snapshot],
    requested: Option<SnapshotKind>,
) -> (SnapshotKind, Option<&Snapshot>) {
    let latest = existing.last();
    let latest_full = existing.iter().rev().find(|s| s.kind == SnapshotKind::Full);
    match (requested, latest, latest_full) {
        (Some(SnapshotKind::Full), _, _) | (_, None, _) => (SnapshotKind::Full, None),
        (None | Some(SnapshotKind::Incremental), Some(latest), _) => {
            (SnapshotKind::Incremental, Some(latest))
        }
        (Some(SnapshotKind::Differential), _, Some(full)) => {
            (SnapshotKind::Differential, Some(full))
        }
        (Some(SnapshotKind::Differential), Some(_), None) => (SnapshotKind::Full, None),
    }
}

/// Backs up a directory tree: walks it, diffs it against the parent's listing, stores new
/// and changed entries in one tar archive and the whole tree in a listing.
#[derive(Debug)]
pub struct FilesSource {
    spec: FilesSpec,
    root: PathBuf,
    excludes: Excludes,
}

impl FilesSource {
    /// A source for `spec`; the exclude patterns must compile.
    pub fn new(spec: FilesSpec) -> Result<Self, Error> {
        let root =
            std::path::absolute(&spec.path).map_err(|e| Error::io("resolving", &spec.path, e))?;
        let excludes = Excludes::new(&spec.excludes)?;
        Ok(FilesSource {
            spec,
            root,
            excludes,
        })
    }
}

/// How one file went into the archive.
enum Stored {
    Ok,
    Changed(String),
    Skipped(String),
}

impl Source for FilesSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Files
    }

    fn origin(&self) -> String {
        self.root.display().to_string()
    }

    fn backup(&mut self, run: &mut BackupRun<'_>) -> Result<Draft, Error> {
        let (kind, parent) = choose_parent(run.existing, self.spec.kind);
        if self.spec.kind.is_some_and(|k| k != kind) {
            tracing::info!("no base snapshot to diff against; taking a full snapshot");
        }
        run.progress().phase("scanning", None);
        // Walk the tree while another thread reads the parent's listing: one waits on the
        // file system, the other decompresses and parses.
        let capacity = parent
            .and_then(|p| p.file_stats())
            .map_or(0, |s| (s.files + s.dirs + s.symlinks) as usize);
        let (walk, parent_listing) = std::thread::scope(|scope| {
            let loading = scope.spawn(|| parent.map(|p| run.resolved_listing(p)).transpose());
            let walk = walk_tree(&self.root, &self.excludes, capacity);
            let parent_listing = loading.join().expect("listing loader does not panic");
            (walk, parent_listing)
        });
        let parent_listing = parent_listing?;
        let scan = diff(
            walk?,
            parent_listing.as_ref().map(|p| &p.listing),
            self.spec.rehash,
        );
        run.progress().finish();
        run.cancel().check()?;

        let id = run.sink.id().clone();
        let mut entries = scan.entries;
        let mut errors = scan.errors;
        let mut warnings = Vec::new();
        let mut dropped = HashSet::new();
        let mut bytes_read = 0;

        let to_store: Vec<usize> = (0..entries.len())
            .filter(|&i| scan.changes[i] != Change::Unchanged)
            .collect();
        if !to_store.is_empty() {
            let total = to_store
                .iter()
                .filter(|&&i| entries[i].kind == FileType::File)
                .map(|&i| entries[i].size)
                .sum();
            run.progress().phase("backing up", Some(total));
            let compression = self.spec.compression;
            let writer = run.sink.create(compression.extension(), compression)?;
            let key = writer.key().to_string();
            let archive_error = |source| Error::Archive {
                key: key.clone(),
                source,
            };
            let mut archive = ArchiveWriter::new(writer);
            for &i in &to_store {
                run.cancel().check()?;
                let entry = &mut entries[i];
                let meta = EntryMeta {
                    mode: entry.mode,
                    mtime_ns: entry.mtime,
                };
                match entry.kind {
                    FileType::Dir => archive.append_dir(&entry.path, &meta),
                    FileType::Symlink => archive.append_symlink(
                        &entry.path,
                        entry.target.as_deref().unwrap_or_default(),
                        &meta,
                    ),
                    FileType::File => match store_file(
                        &mut archive,
                        &self.root,
                        entry,
                        &meta,
                        run.progress(),
                        run.cancel(),
                    ) {
                        Ok(Stored::Ok) => {
                            bytes_read += entry.size;
                            Ok(())
                        }
                        Ok(Stored::Changed(message)) => {
                            bytes_read += entry.size;
                            warnings.push(SourceError {
                                path: entry.path.clone(),
                                message,
                            });
                            Ok(())
                        }
                        Ok(Stored::Skipped(message)) => {
                            dropped.insert(i);
                            errors.push(SourceError {
                                path: entry.path.clone(),
                                message,
                            });
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                }
                .map_err(|source| run.cancel().or_cancelled(archive_error(source)))?;
                entry.holder = Some(id.clone());
            }
            let writer = archive.finish().map_err(archive_error)?;
            run.sink.finish(writer, ObjectRole::Archive)?;
            run.progress().finish();
        }
        run.cancel().check()?;

        let changes: Vec<Change> = (0..entries.len())
            .filter(|i| !dropped.contains(i))
            .map(|i| scan.changes[i])
            .collect();
        let entries: Vec<FileEntry> = entries
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !dropped.contains(i))
            .map(|(_, e)| e)
            .collect();
        let mut stats = file_stats(&entries, &changes, scan.deleted);
        stats.bytes_read = bytes_read;

        let mut writer = run
            .sink
            .create_small("files.json.zst", LISTING_COMPRESSION)?;
        let key = writer.key().to_string();
        stored_listing(Listing::new(id, entries), parent_listing.as_ref())
            .write_json(&mut writer)
            .and_then(|()| writer.flush())
            .map_err(|source| Error::Upload { key, source })?;
        run.sink.finish(writer, ObjectRole::Listing)?;
        stats.bytes_stored = run.sink.objects().iter().map(|o| o.size).sum();

        Ok(Draft {
            kind,
            parent: parent.map(|p| p.id.clone()),
            compression: self.spec.compression,
            stats: Stats::Files(stats),
            errors,
            warnings,
        })
    }
}

/// The listing to store: a delta of the parent's while the chain is short and has changed
/// little of the tree; else the whole tree. A no-change snapshot then stores a few hundred
/// bytes however large the tree, and a restore resolves at most `MAX_DELTA_DEPTH` small
/// deltas on top of one whole listing.
fn stored_listing(whole: Listing, parent: Option<&ResolvedListing>) -> Listing {
    let Some(parent) = parent else {
        return whole;
    };
    let delta = whole.delta_from(&parent.listing, &parent.own, parent.chain);
    let chain = delta.delta.as_ref().expect("delta_from makes a delta");
    if chain.depth <= MAX_DELTA_DEPTH
        && chain.changes.saturating_mul(MAX_CHANGED_SHARE) <= whole.entries.len() as u64
    {
        delta
    } else {
        whole
    }
}

fn store_file<W: Write>(
    archive: &mut ArchiveWriter<W>,
    root: &Path,
    entry: &mut FileEntry,
    meta: &EntryMeta,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<Stored, strongbox_archive::Error> {
    let path = root.join(&entry.path);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) => return Ok(Stored::Skipped(format!("cannot open: {e}"))),
    };
    let mut reader = Tracked {
        inner: file,
        progress,
        cancel,
        error: None,
    };
    let appended = archive.append_file(&entry.path, meta, &mut reader, entry.size)?;
    if let Some(e) = reader.error {
        return Ok(Stored::Skipped(format!("read error: {e}")));
    }
    if appended.truncated {
        return Ok(Stored::Skipped(
            "file shrank while being read; left out of this snapshot".to_string(),
        ));
    }
    entry.sha256 = Some(appended.digest.sha256);
    let after = reader.inner.metadata().ok();
    let changed = after.is_none_or(|m| {
        m.len() != entry.size || m.mtime() * 1_000_000_000 + m.mtime_nsec() != entry.mtime
    });
    Ok(if changed {
        Stored::Changed("file changed while being read; stored as read".to_string())
    } else {
        Stored::Ok
    })
}

fn file_stats(entries: &[FileEntry], changes: &[Change], deleted: u64) -> FileStats {
    let mut stats = FileStats {
        deleted,
        ..FileStats::default()
    };
    for (entry, change) in entries.iter().zip(changes) {
        match entry.kind {
            FileType::File => {
                stats.files += 1;
                stats.bytes += entry.size;
            }
            FileType::Dir => stats.dirs += 1,
            FileType::Symlink => stats.symlinks += 1,
        }
        match change {
            Change::New => stats.new += 1,
            Change::Changed => stats.changed += 1,
            Change::Unchanged => stats.unchanged += 1,
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use strongbox_manifest::{ObjectRef, SnapshotId};

    fn snap(id: &str, kind: SnapshotKind) -> Snapshot {
        crate::fixtures::snapshot("s", id, kind)
    }

    fn listing(id: &str, sizes: &[u64]) -> Listing {
        let entries = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| FileEntry {
                path: format!("f{i:03}"),
                kind: FileType::File,
                size,
                mode: 0o644,
                mtime: 0,
                sha256: Some("00".repeat(32)),
                target: None,
                holder: None,
                ctime: 0,
                inode: i as u64,
            })
            .collect();
        Listing::new(SnapshotId::parse(id).unwrap(), entries)
    }

    #[test]
    fn a_listing_is_stored_as_a_delta_until_its_chain_is_long_or_has_changed_a_quarter() {
        // (the parent's depth and changes, entries changed now, stored as a delta)
        let cases = [
            ((0, 0), 0, true),
            ((0, 0), 25, true),
            ((0, 0), 26, false),
            ((29, 0), 0, true),
            ((30, 0), 0, false),
            ((10, 20), 5, true),
            ((10, 20), 6, false),
        ];
        let parent = listing("20250101T000000Z-000001", &[1; 100]);
        let own = ObjectRef {
            key: "sets/s/data/20250101T000000Z-000001.files.json.zst".into(),
            size: 1,
            sha256: "00".repeat(32),
            role: ObjectRole::Listing,
        };
        for (chain, changed, as_delta) in cases {
            let mut sizes = [1; 100];
            sizes[..changed].fill(2);
            let whole = listing("20250101T000000Z-000002", &sizes);
            let resolved = ResolvedListing {
                listing: parent.clone(),
                own: own.clone(),
                objects: vec![own.clone()],
                chain,
            };
            let stored = stored_listing(whole.clone(), Some(&resolved));
            assert_eq!(stored.delta.is_some(), as_delta, "{chain:?} + {changed}");
            if !as_delta {
                assert_eq!(stored, whole);
            }
        }
        let first = listing("20250101T000000Z-000002", &[1; 3]);
        assert_eq!(stored_listing(first.clone(), None), first);
    }

    #[test]
    fn chooses_kind_and_parent() {
        use SnapshotKind::*;
        let full = snap("20250101T000000Z-000001", Full);
        let inc = snap("20250102T000000Z-000002", Incremental);
        let chain = [full.clone(), inc.clone()];
        type Case<'a> = (
            &'a [Snapshot],
            Option<SnapshotKind>,
            SnapshotKind,
            Option<&'a str>,
        );
        let cases: [Case<'_>; 7] = [
            (&[], None, Full, None),
            (&[], Some(Incremental), Full, None),
            (&[], Some(Differential), Full, None),
            (&chain, None, Incremental, Some(inc.id.as_str())),
            (
                &chain,
                Some(Incremental),
                Incremental,
                Some(inc.id.as_str()),
            ),
            (
                &chain,
                Some(Differential),
                Differential,
                Some(full.id.as_str()),
            ),
            (&chain, Some(Full), Full, None),
        ];
        for (existing, requested, kind, parent) in cases {
            let (got_kind, got_parent) = choose_parent(existing, requested);
            assert_eq!(got_kind, kind, "{requested:?} over {}", existing.len());
            assert_eq!(got_parent.map(|p| p.id.as_str()), parent);
        }
    }
}
