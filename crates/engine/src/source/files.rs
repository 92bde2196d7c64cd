use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strongbox_archive::{ArchiveWriter, Compression, EntryMeta};
use strongbox_manifest::{
    write_whole_listing, ChainLink, Change, Delta, Diff, Excludes, FileEntry, FileStats, FileType,
    Listing, ObjectRole, Overlay, Snapshot, SnapshotId, SnapshotKind, SourceError, SourceKind,
    Stats, TreeWalk,
};
use strongbox_storage::ObjectWriter;

use super::{BackupRun, Draft, Source};
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

/// `dir`'s path relative to `root` (empty when they are the same), when it lies inside
/// it (both resolved).
fn inside(dir: &Path, root: &Path) -> Option<String> {
    let (dir, root) = (dir.canonicalize().ok()?, root.canonicalize().ok()?);
    Some(dir.strip_prefix(&root).ok()?.to_str()?.to_string())
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
        let repository = run.reader.repo.local_root();
        if let Some(repository) = repository.filter(|r| inside(&self.root, r).is_some()) {
            return Err(Error::SourceInRepository {
                path: self.root.clone(),
                repository: repository.to_path_buf(),
            });
        }
        // The repository itself was refused above: `rel` is not empty.
        let with_repository;
        let excludes = match repository.and_then(|r| inside(r, &self.root)) {
            Some(rel) => {
                tracing::info!(path = %rel, "leaving out the repository, which lies inside the tree");
                with_repository = self.excludes.clone().and_path(rel);
                &with_repository
            }
            None => &self.excludes,
        };
        let mut walk = TreeWalk::new(&self.root, excludes)?;
        let mut storing = Storing::new(&self.root, self.spec.compression);
        let mut listing = match parent {
            None => storing.whole_tree(run, &mut walk)?,
            Some(parent) => storing.changes(run, parent, &mut walk, self.spec.rehash)?,
        };
        let key = listing.key().to_string();
        listing
            .flush()
            .map_err(|source| Error::Upload { key, source })?;
        let Storing {
            archive,
            mut stats,
            warnings,
            errors,
            ..
        } = storing;
        if let Some((archive, key)) = archive {
            let writer = archive
                .finish()
                .map_err(|source| Error::Archive { key, source })?;
            run.sink.finish(writer, ObjectRole::Archive)?;
        }
        run.sink.finish(listing, ObjectRole::Listing)?;
        stats.bytes_stored = run.sink.objects().iter().map(|o| o.size).sum();
        stats.root = Some(walk.root());

        let mut all_errors = std::mem::take(&mut walk.errors);
        all_errors.extend(errors);
        Ok(Draft {
            kind,
            parent: parent.map(|p| p.id.clone()),
            compression: self.spec.compression,
            stats: Stats::Files(stats),
            errors: all_errors,
            warnings,
        })
    }
}

/// Stores new and changed entries in the snapshot's one archive, opened at the first of
/// them, and counts the new tree.
struct Storing<'a> {
    root: &'a Path,
    compression: Compression,
    /// The archive and its key.
    archive: Option<(ArchiveWriter<ObjectWriter>, String)>,
    stats: FileStats,
    warnings: Vec<SourceError>,
    /// Entries left out because they could not be read.
    errors: Vec<SourceError>,
}

impl<'a> Storing<'a> {
    fn new(root: &'a Path, compression: Compression) -> Self {
        Storing {
            root,
            compression,
            archive: None,
            stats: FileStats::default(),
            warnings: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// A snapshot without a parent, in one pass: each entry is stored as the walk reaches
    /// it and written to the listing at once, so memory holds neither the tree nor its
    /// listing, however many files it has.
    fn whole_tree(
        &mut self,
        run: &mut BackupRun<'_>,
        walk: &mut TreeWalk<'_>,
    ) -> Result<ObjectWriter, Error> {
        run.progress().phase("backing up", None);
        let mut listing = run.sink.create("files.json.zst", LISTING_COMPRESSION)?;
        let key = listing.key().to_string();
        let id = run.sink.id().clone();
        let mut failed = None;
        let entries = walk
            .map_while(|mut entry| match self.store(run, &mut entry, Change::New) {
                Ok(kept) => Some(kept.then_some(entry)),
                Err(e) => {
                    failed = Some(e);
                    None
                }
            })
            .flatten();
        let written = write_whole_listing(&id, entries, &mut listing);
        if let Some(e) = failed {
            return Err(e);
        }
        written.map_err(|source| Error::Upload { key, source })?;
        run.progress().finish();
        Ok(listing)
    }

    /// A snapshot over `parent`: the walk is diffed against the parent's listing first,
    /// holding only what changed, so that the bytes to back up are known; then those
    /// entries are stored and the listing written, as a delta while the chain allows.
    fn changes(
        &mut self,
        run: &mut BackupRun<'_>,
        parent: &Snapshot,
        walk: &mut TreeWalk<'_>,
        rehash: bool,
    ) -> Result<ObjectWriter, Error> {
        run.progress().phase("scanning", None);
        // The parent's listing is parsed on its own thread while this one walks; the two
        // meet in a merge, so neither tree is held whole: only what changed is.
        // An unchanged file stays in the archive that holds it: one gone behind strongbox's
        // back (a lifecycle rule), or cut short, would leave the new snapshot unrestorable,
        // unnoticed. The holders' records are in hand; an archive kept for a pruned record
        // has none, and only its presence is checked.
        let broken = |source: Error| Error::BrokenParent {
            parent: parent.id.to_string(),
            source: Box::new(source),
        };
        let archives = run.reader.repo.archives(run.sink.set())?;
        let recorded: HashMap<&SnapshotId, u64> = run
            .existing
            .iter()
            .filter_map(|s| Some((&s.id, s.object(ObjectRole::Archive)?.size)))
            .collect();
        let stream = run.listing_stream(parent).map_err(|e| match e {
            Error::Storage(strongbox_storage::Error::NotFound { .. }) => broken(e),
            e => e,
        })?;
        // The parent's chain beyond its own listing, newest first, for a delta over it.
        let further: Vec<ChainLink> = stream
            .objects
            .iter()
            .rev()
            .skip(1)
            .map(|o| ChainLink {
                key: o.key.clone(),
                size: o.size,
                sha256: o.sha256.clone(),
            })
            .collect();
        let chain = (stream.own, stream.chain);
        let mut pending = Vec::new();
        let mut diff = Diff::new(walk, stream.entries, rehash);
        // Runs of entries share a holder: each run is looked up once, not each file.
        let mut checked_holder = None;
        for (n, item) in (&mut diff).enumerate() {
            let (entry, change) = item?;
            if n % 4096 == 0 {
                run.cancel().check()?;
            }
            if matches!(change, Change::Unchanged | Change::Relisted) {
                if let Some(holder) = &entry.holder {
                    if checked_holder.as_ref() != Some(holder) {
                        let Some(archive) = archives.get(holder) else {
                            return Err(broken(Error::MissingHolder {
                                snapshot: parent.id.to_string(),
                                holder: holder.to_string(),
                            }));
                        };
                        if let Some(&size) = recorded.get(holder).filter(|&&s| s != archive.size) {
                            return Err(broken(Error::HolderSize {
                                snapshot: parent.id.to_string(),
                                holder: holder.to_string(),
                                key: archive.key.clone(),
                                size: archive.size,
                                recorded: size,
                            }));
                        }
                        checked_holder = Some(holder.clone());
                    }
                }
                count(&mut self.stats, &entry, change);
                if change == Change::Relisted {
                    pending.push((entry, change));
                }
            } else {
                pending.push((entry, change));
            }
        }
        let mut removed = diff.into_removed();
        self.stats.deleted = removed.len() as u64;
        run.progress().finish();
        run.cancel().check()?;

        let mut stored = Vec::with_capacity(pending.len());
        if !pending.is_empty() {
            let total = pending
                .iter()
                .filter(|(e, c)| e.kind == FileType::File && *c != Change::Relisted)
                .map(|(e, _)| e.size)
                .sum();
            run.progress().phase("backing up", Some(total));
            for (mut entry, change) in pending {
                // A relisted entry keeps its parent's content: nothing to store.
                if change == Change::Relisted || self.store(run, &mut entry, change)? {
                    stored.push(entry);
                } else if change == Change::Changed {
                    // Left out of this snapshot, so gone from the parent's tree.
                    removed.push(entry.path);
                }
            }
            run.progress().finish();
        }
        run.cancel().check()?;
        removed.sort_unstable();

        let id = run.sink.id().clone();
        let changes = (stored.len() + removed.len()) as u64;
        let entries = self.stats.files + self.stats.dirs + self.stats.symlinks;
        let delta = as_delta(chain.1, changes, entries);
        // A delta is small and stored with one PUT; a whole listing streams like an archive.
        let mut writer = match delta {
            Some(_) => run
                .sink
                .create_small("files.json.zst", LISTING_COMPRESSION)?,
            None => run.sink.create("files.json.zst", LISTING_COMPRESSION)?,
        };
        let key = writer.key().to_string();
        let upload = |source| Error::Upload {
            key: key.clone(),
            source,
        };
        match delta {
            Some((depth, changes)) => {
                let (object, base) = (chain.0, parent.id.clone());
                let delta = Delta {
                    base,
                    key: object.key,
                    size: object.size,
                    sha256: object.sha256,
                    depth,
                    changes,
                    removed,
                    further,
                };
                Listing::new_delta(id, delta, stored)
                    .write_json(&mut writer)
                    .map_err(upload)?;
            }
            None => {
                // Whole: what changed over the parent's tree, read again as it was read
                // for the diff.
                let base = run.listing_stream(parent)?;
                let mut overlay = Overlay::default();
                overlay.add_older(&removed, stored);
                let mut failed = None;
                let entries = overlay
                    .over(base.entries)
                    .map_while(|entry| entry.map_err(|e| failed = Some(e)).ok());
                write_whole_listing(&id, entries, &mut writer).map_err(upload)?;
                if let Some(e) = failed {
                    return Err(e.into());
                }
            }
        }
        Ok(writer)
    }

    /// Store one new or changed entry and count it; `false`: it could not be read and is
    /// left out of the snapshot (named in the errors).
    fn store(
        &mut self,
        run: &mut BackupRun<'_>,
        entry: &mut FileEntry,
        change: Change,
    ) -> Result<bool, Error> {
        run.cancel().check()?;
        let (archive, key) = match &mut self.archive {
            Some(open) => open,
            None => {
                let writer = run
                    .sink
                    .create(self.compression.extension(), self.compression)?;
                let key = writer.key().to_string();
                self.archive
                    .insert((ArchiveWriter::reading_into(writer), key))
            }
        };
        let meta = EntryMeta {
            mode: entry.mode,
            uid: entry.uid.unwrap_or(0),
            gid: entry.gid.unwrap_or(0),
            mtime_ns: entry.mtime,
        };
        let outcome = match entry.kind {
            FileType::Dir => archive.append_dir(&entry.path, &meta).map(|()| Stored::Ok),
            FileType::Symlink => archive
                .append_symlink(
                    &entry.path,
                    entry.target.as_deref().unwrap_or_default(),
                    &meta,
                )
                .map(|()| Stored::Ok),
            FileType::File => store_file(
                archive,
                self.root,
                entry,
                &meta,
                run.progress(),
                run.cancel(),
            ),
        }
        .map_err(|source| {
            run.cancel().or_cancelled(Error::Archive {
                key: key.clone(),
                source,
            })
        })?;
        match outcome {
            Stored::Ok => {}
            Stored::Changed(message) => self.warnings.push(SourceError {
                path: entry.path.clone(),
                message,
            }),
            Stored::Skipped(cause) => {
                self.errors
                    .push(SourceError::left_out(entry.path.clone(), cause));
                return Ok(false);
            }
        }
        if entry.kind == FileType::File {
            self.stats.bytes_read += entry.size;
        }
        entry.holder = Some(run.sink.id().clone());
        count(&mut self.stats, entry, change);
        Ok(true)
    }
}

/// With the parent's chain at `(depth, changes)` and `changes` more in a tree of `entries`,
/// the chain a delta listing would extend it to, while it stays short and has changed
/// little of the tree; `None`: store the listing whole. A no-change snapshot then stores a
/// few hundred bytes however large the tree, and a restore applies at most
/// `MAX_DELTA_DEPTH` small deltas to one whole listing.
fn as_delta(parent: (u32, u64), changes: u64, entries: u64) -> Option<(u32, u64)> {
    let (depth, changes) = (parent.0 + 1, parent.1 + changes);
    (depth <= MAX_DELTA_DEPTH && changes.saturating_mul(MAX_CHANGED_SHARE) <= entries)
        .then_some((depth, changes))
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
        return Ok(Stored::Skipped("file shrank while being read".to_string()));
    }
    entry.sha256 = Some(appended.digest.sha256);
    entry.offset = Some(appended.offset);
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

/// Count one entry of the new tree.
fn count(stats: &mut FileStats, entry: &FileEntry, change: Change) {
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
        Change::Unchanged | Change::Relisted => stats.unchanged += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, kind: SnapshotKind) -> Snapshot {
        crate::fixtures::snapshot("s", id, kind)
    }

    #[test]
    fn a_listing_is_stored_as_a_delta_until_its_chain_is_long_or_has_changed_a_quarter() {
        // (the parent's depth and changes, changes now, entries, the delta's chain)
        let cases = [
            ((0, 0), 0, 100, Some((1, 0))),
            ((0, 0), 25, 100, Some((1, 25))),
            ((0, 0), 26, 100, None),
            ((29, 3), 0, 100, Some((30, 3))),
            ((30, 0), 0, 100, None),
            ((10, 20), 5, 100, Some((11, 25))),
            ((10, 20), 6, 100, None),
            ((0, 0), 1, 0, None),
        ];
        for (parent, changes, entries, chain) in cases {
            assert_eq!(
                as_delta(parent, changes, entries),
                chain,
                "{parent:?} + {changes}"
            );
        }
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
