use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strongbox_archive::{sha256_hex, ArchiveWriter, Compression, EntryMeta};
use strongbox_manifest::{
    diff, walk_tree, Change, Excludes, FileEntry, FileStats, FileType, Listing, ObjectRef,
    ObjectRole, Snapshot, SnapshotId, SnapshotKind, SourceError, SourceKind, Stats, FORMAT_VERSION,
};
use strongbox_storage::{host_name, layout, PutMode, Repository};

use crate::progress::Tracked;
use crate::{Engine, Error};

/// What `backup files` is asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilesBackup {
    /// The set to add a snapshot to.
    pub set: String,
    /// The directory to back up.
    pub source: PathBuf,
    /// Full, incremental or differential; `None` is full for a set's first snapshot and
    /// incremental after.
    pub kind: Option<SnapshotKind>,
    /// Exclude patterns (see [`Excludes`]).
    #[serde(default)]
    pub excludes: Vec<String>,
    /// Compression of the archive.
    #[serde(default)]
    pub compression: Compression,
    /// Tags for the snapshot.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Snapshot time instead of now (imports, tests).
    #[serde(default)]
    pub time: Option<DateTime<Utc>>,
    /// Read every file again instead of trusting unchanged metadata.
    #[serde(default)]
    pub rehash: bool,
}

impl FilesBackup {
    /// Back up `source` into `set` with defaults.
    pub fn new(set: impl Into<String>, source: impl Into<PathBuf>) -> Self {
        FilesBackup {
            set: set.into(),
            source: source.into(),
            kind: None,
            excludes: Vec::new(),
            compression: Compression::default(),
            tags: Vec::new(),
            time: None,
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

/// Deletes objects of a failed backup; disarmed once the record is written.
pub(crate) struct Written<'a> {
    pub(crate) repo: &'a Repository,
    pub(crate) keys: Vec<String>,
}

impl Drop for Written<'_> {
    fn drop(&mut self) {
        for key in &self.keys {
            if let Err(e) = self.repo.delete(key) {
                tracing::warn!(%key, error = %e, "could not remove an object of a failed backup; prune will");
            }
        }
    }
}

impl Engine {
    /// Back up a directory tree as a new snapshot of `opts.set`.
    pub fn backup_files(&self, opts: &FilesBackup) -> Result<Snapshot, Error> {
        layout::check_set_name(&opts.set)?;
        self.locked(
            &opts.set,
            "backup",
            || self.backup_files_locked(opts),
            |snapshot| {
                let status = if snapshot.errors.is_empty() {
                    "ok"
                } else {
                    "incomplete"
                };
                (status, Some(snapshot.id.to_string()))
            },
        )
    }

    fn backup_files_locked(&self, opts: &FilesBackup) -> Result<Snapshot, Error> {
        let started = Instant::now();
        let time = opts.time.unwrap_or_else(Utc::now);
        let source = std::path::absolute(&opts.source)
            .map_err(|e| Error::io("resolving", &opts.source, e))?;
        let existing = self.repo.snapshots(Some(&opts.set))?;
        if let Some(other) = existing.iter().find(|s| s.source != SourceKind::Files) {
            return Err(Error::SetKindMismatch {
                set: opts.set.clone(),
                existing: other.source.as_str(),
                requested: "files",
            });
        }
        let (kind, parent) = choose_parent(&existing, opts.kind);
        if opts.kind.is_some_and(|k| k != kind) {
            tracing::info!(set = %opts.set, "no base snapshot to diff against; taking a full snapshot");
        }
        self.progress.phase("scanning", None);
        let excludes = Excludes::new(&opts.excludes)?;
        // Walk the tree while another thread reads the parent's listing: one waits on the
        // file system, the other decompresses and parses.
        let capacity = parent
            .and_then(|p| p.file_stats())
            .map_or(0, |s| (s.files + s.dirs + s.symlinks) as usize);
        let (walk, parent_listing) = std::thread::scope(|scope| {
            let loading = scope.spawn(|| parent.map(|p| self.listing(p)).transpose());
            let walk = walk_tree(&source, &excludes, capacity);
            let parent_listing = loading.join().expect("listing loader does not panic");
            (walk, parent_listing)
        });
        let scan = diff(walk?, parent_listing?.as_ref(), opts.rehash);
        self.progress.finish();
        self.cancel.check()?;

        let id = SnapshotId::generate(time);
        let mut entries = scan.entries;
        let mut errors = scan.errors;
        let mut warnings = Vec::new();
        let mut dropped = HashSet::new();
        let mut objects = Vec::new();
        let mut written = Written {
            repo: &self.repo,
            keys: Vec::new(),
        };
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
            self.progress.phase("backing up", Some(total));
            let key = layout::data_key(&opts.set, &id, opts.compression.extension());
            let archive_error = |source| Error::Archive {
                key: key.clone(),
                source,
            };
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
            let mut archive =
                ArchiveWriter::new(self.repo.writer(&key)?, opts.compression, threads)
                    .map_err(archive_error)?;
            for &i in &to_store {
                self.cancel.check()?;
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
                    FileType::File => match self.store_file(&mut archive, &source, entry, &meta) {
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
                .map_err(|source| self.cancel.or_cancelled(archive_error(source)))?;
                entry.holder = Some(id.clone());
            }
            let writer = archive.finish().map_err(archive_error)?;
            let stored = writer.finish().map_err(|source| Error::Upload {
                key: key.clone(),
                source,
            })?;
            written.keys.push(key.clone());
            objects.push(ObjectRef {
                key,
                size: stored.size,
                sha256: stored.sha256,
                role: ObjectRole::Archive,
            });
            self.progress.finish();
        }
        self.cancel.check()?;

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

        let listing = Listing::new(id.clone(), entries).encode();
        let listing_key = layout::data_key(&opts.set, &id, "files.json.zst");
        objects.push(ObjectRef {
            key: listing_key.clone(),
            size: listing.len() as u64,
            sha256: sha256_hex(&listing),
            role: ObjectRole::Listing,
        });
        self.repo
            .put(&listing_key, listing.into(), PutMode::Create)?;
        written.keys.push(listing_key);
        stats.bytes_stored = objects.iter().map(|o| o.size).sum();

        let snapshot = Snapshot {
            format_version: FORMAT_VERSION,
            id,
            set: opts.set.clone(),
            kind,
            source: SourceKind::Files,
            parent: parent.map(|p| p.id.clone()),
            time,
            tags: opts.tags.clone(),
            host: host_name(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            origin: source.display().to_string(),
            compression: opts.compression.to_string(),
            objects,
            stats: Stats::Files(stats),
            duration_secs: started.elapsed().as_secs_f64(),
            errors,
            warnings,
        };
        self.commit(&snapshot)?;
        written.keys.clear();
        Ok(snapshot)
    }

    /// Check every object of `snapshot` is stored whole, then write its record: the commit
    /// point. Before this, a crash leaves only garbage that prune collects.
    pub(crate) fn commit(&self, snapshot: &Snapshot) -> Result<(), Error> {
        for object in &snapshot.objects {
            let info = self.repo.head(&object.key)?;
            if info.size != object.size {
                return Err(strongbox_storage::Error::Corrupt {
                    key: object.key.clone(),
                    reason: format!("stored {} bytes, wrote {}", info.size, object.size),
                }
                .into());
            }
        }
        self.cancel.check()?;
        self.repo.put_snapshot(snapshot)?;
        tracing::info!(id = %snapshot.id, set = %snapshot.set, "snapshot committed");
        Ok(())
    }

    fn store_file<W: std::io::Write>(
        &self,
        archive: &mut ArchiveWriter<W>,
        root: &std::path::Path,
        entry: &mut FileEntry,
        meta: &EntryMeta,
    ) -> Result<Stored, strongbox_archive::Error> {
        let path = root.join(&entry.path);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) => return Ok(Stored::Skipped(format!("cannot open: {e}"))),
        };
        let mut reader = Tracked {
            inner: file,
            progress: self.progress.as_ref(),
            cancel: &self.cancel,
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
}

enum Stored {
    Ok,
    Changed(String),
    Skipped(String),
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

    fn snap(id: &str, kind: SnapshotKind) -> Snapshot {
        crate::fixtures::snapshot("s", id, kind)
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
