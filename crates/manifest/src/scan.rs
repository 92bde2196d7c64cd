use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::{Error, Excludes, FileEntry, FileType, Listing, SourceError};

/// How an entry compares to the parent snapshot's listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Not in the parent.
    New,
    /// In the parent with other metadata: read and stored again.
    Changed,
    /// Same type, size, mode, mtime, ctime, inode (and link target): not read again.
    Unchanged,
}

/// A scanned tree: the new listing's entries (unchanged ones already carry the parent's
/// digest and holder), how each compares to the parent, and what could not be scanned.
#[derive(Debug, Default)]
pub struct Scan {
    /// Entries, parents before children.
    pub entries: Vec<FileEntry>,
    /// `changes[i]` classifies `entries[i]`.
    pub changes: Vec<Change>,
    /// Parent entries that are gone.
    pub deleted: u64,
    /// Entries skipped because they could not be read.
    pub errors: Vec<SourceError>,
}

/// Compare `current` (fresh from the file system) with the parent's entry at the same path.
/// `rehash` treats every regular file as changed, so it is read again.
pub fn classify(parent: Option<&FileEntry>, current: &FileEntry, rehash: bool) -> Change {
    let Some(parent) = parent else {
        return Change::New;
    };
    let same = parent.kind == current.kind
        && parent.size == current.size
        && parent.mode == current.mode
        && parent.mtime == current.mtime
        && parent.ctime == current.ctime
        && parent.inode == current.inode
        && parent.target == current.target
        && parent.holder.is_some()
        && (parent.kind != FileType::File || parent.sha256.is_some());
    if same && !(rehash && current.kind == FileType::File) {
        Change::Unchanged
    } else {
        Change::Changed
    }
}

/// A walked tree, before it is compared with a parent.
#[derive(Debug, Default)]
pub struct Walk {
    /// Entries sorted by path: a parent always precedes its children.
    pub entries: Vec<FileEntry>,
    /// Entries skipped because they could not be read.
    pub errors: Vec<SourceError>,
}

/// Walk `root` and diff every entry against `parent`: [`walk_tree`] then [`diff`].
pub fn scan_tree(
    root: &Path,
    excludes: &Excludes,
    parent: Option<&Listing>,
    rehash: bool,
) -> Result<Scan, Error> {
    Ok(diff(walk_tree(root, excludes, 0)?, parent, rehash))
}

/// Compare a walked tree with the parent's listing: unchanged entries take the parent's
/// digest and holder; parent entries not in the walk count as deleted.
pub fn diff(walk: Walk, parent: Option<&Listing>, rehash: bool) -> Scan {
    let previous: HashMap<&str, &FileEntry> = parent
        .map(|l| l.entries.iter().map(|e| (e.path.as_str(), e)).collect())
        .unwrap_or_default();
    let mut seen_in_parent = 0u64;
    let mut entries = walk.entries;
    let mut changes = Vec::with_capacity(entries.len());
    for entry in &mut entries {
        let old = previous.get(entry.path.as_str()).copied();
        if old.is_some() {
            seen_in_parent += 1;
        }
        let change = classify(old, entry, rehash);
        if let (Change::Unchanged, Some(old)) = (change, old) {
            entry.sha256.clone_from(&old.sha256);
            entry.holder.clone_from(&old.holder);
        }
        changes.push(change);
    }
    Scan {
        entries,
        changes,
        deleted: previous.len() as u64 - seen_in_parent,
        errors: walk.errors,
    }
}

/// Walk `root`: symlinks are recorded, never followed; `excludes` are skipped; entries
/// that cannot be read are reported in [`Walk::errors`]. `capacity` is a hint (the
/// parent's entry count) that spares regrowing a large listing.
pub fn walk_tree(root: &Path, excludes: &Excludes, capacity: usize) -> Result<Walk, Error> {
    let meta = fs::metadata(root).map_err(|source| Error::Source {
        path: root.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(Error::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    fs::read_dir(root).map_err(|source| Error::Source {
        path: root.to_path_buf(),
        source,
    })?;

    let mut walk = Walk::default();
    walk.entries.reserve(capacity);
    // The stack holds directories still to list.
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut children = match read_dir(&dir) {
            Ok(children) => children,
            Err(e) => {
                walk.errors.push(SourceError {
                    path: rel.clone(),
                    message: format!("cannot list directory: {e}"),
                });
                continue;
            }
        };
        for (name, path, meta) in children.drain(..) {
            let Some(name) = name.to_str() else {
                walk.errors.push(SourceError {
                    path: format!("{rel}/{}", name.to_string_lossy()),
                    message: "file name is not valid UTF-8; skipped".to_string(),
                });
                continue;
            };
            let rel_path = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            if excludes.is_excluded(&rel_path, name) {
                continue;
            }
            let meta = match meta {
                Ok(meta) => meta,
                Err(e) => {
                    walk.errors.push(SourceError {
                        path: rel_path,
                        message: format!("cannot stat: {e}"),
                    });
                    continue;
                }
            };
            match entry_from_metadata(&path, rel_path, &meta) {
                Ok(Some(entry)) => {
                    if entry.kind == FileType::Dir {
                        stack.push((path, entry.path.clone()));
                    }
                    walk.entries.push(entry);
                }
                Ok(None) => {
                    tracing::warn!(path = %path.display(), "skipping special file (socket, FIFO or device)");
                }
                Err(e) => walk.errors.push(e),
            }
        }
    }
    // Sorted by path: stable across runs, and a parent always precedes its children.
    walk.entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(walk)
}

/// A directory's children with their metadata; `DirEntry::metadata` stats relative to the
/// open directory (no path walk per file) and does not follow symlinks.
fn read_dir(dir: &Path) -> std::io::Result<Vec<Child>> {
    let mut children = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        children.push((entry.file_name(), entry.path(), entry.metadata()));
    }
    Ok(children)
}

type Child = (std::ffi::OsString, PathBuf, std::io::Result<Metadata>);

fn entry_from_metadata(
    path: &Path,
    rel: String,
    meta: &Metadata,
) -> Result<Option<FileEntry>, SourceError> {
    let file_type = meta.file_type();
    let (kind, size, target) = if file_type.is_file() {
        (FileType::File, meta.len(), None)
    } else if file_type.is_dir() {
        (FileType::Dir, 0, None)
    } else if file_type.is_symlink() {
        let target = fs::read_link(path).map_err(|e| SourceError {
            path: rel.clone(),
            message: format!("cannot read link: {e}"),
        })?;
        let target = target
            .into_os_string()
            .into_string()
            .map_err(|_| SourceError {
                path: rel.clone(),
                message: "link target is not valid UTF-8; skipped".to_string(),
            })?;
        (FileType::Symlink, 0, Some(target))
    } else {
        // Sockets, FIFOs and devices are not data to restore.
        return Ok(None);
    };
    Ok(Some(FileEntry {
        path: rel,
        kind,
        size,
        mode: meta.mode() & 0o7777,
        mtime: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        sha256: None,
        target,
        holder: None,
        ctime: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        inode: meta.ino(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SnapshotId;
    use rstest::rstest;

    fn entry(kind: FileType, size: u64, mtime: i64) -> FileEntry {
        FileEntry {
            path: "p".into(),
            kind,
            size,
            mode: 0o644,
            mtime,
            sha256: (kind == FileType::File).then(|| "ab".into()),
            target: None,
            holder: Some(SnapshotId::parse("20250101T000000Z-000000").unwrap()),
            ctime: 5,
            inode: 7,
        }
    }

    #[rstest]
    #[case::new(None, entry(FileType::File, 1, 1), false, Change::New)]
    #[case::same(
        Some(entry(FileType::File, 1, 1)),
        entry(FileType::File, 1, 1),
        false,
        Change::Unchanged
    )]
    #[case::rehash(
        Some(entry(FileType::File, 1, 1)),
        entry(FileType::File, 1, 1),
        true,
        Change::Changed
    )]
    #[case::rehash_dir(
        Some(entry(FileType::Dir, 0, 1)),
        entry(FileType::Dir, 0, 1),
        true,
        Change::Unchanged
    )]
    #[case::size(
        Some(entry(FileType::File, 1, 1)),
        entry(FileType::File, 2, 1),
        false,
        Change::Changed
    )]
    #[case::mtime(
        Some(entry(FileType::File, 1, 1)),
        entry(FileType::File, 1, 2),
        false,
        Change::Changed
    )]
    #[case::kind(
        Some(entry(FileType::File, 0, 1)),
        entry(FileType::Dir, 0, 1),
        false,
        Change::Changed
    )]
    #[case::ctime(Some(entry(FileType::File, 1, 1)), FileEntry { ctime: 6, ..entry(FileType::File, 1, 1) }, false, Change::Changed)]
    #[case::inode(Some(entry(FileType::File, 1, 1)), FileEntry { inode: 8, ..entry(FileType::File, 1, 1) }, false, Change::Changed)]
    #[case::mode(Some(entry(FileType::File, 1, 1)), FileEntry { mode: 0o600, ..entry(FileType::File, 1, 1) }, false, Change::Changed)]
    #[case::link_target(
        Some(FileEntry { target: Some("a".into()), ..entry(FileType::Symlink, 0, 1) }),
        FileEntry { target: Some("b".into()), ..entry(FileType::Symlink, 0, 1) },
        false,
        Change::Changed
    )]
    #[case::parent_without_digest(Some(FileEntry { sha256: None, ..entry(FileType::File, 1, 1) }), entry(FileType::File, 1, 1), false, Change::Changed)]
    fn classifies_against_parent(
        #[case] parent: Option<FileEntry>,
        #[case] mut current: FileEntry,
        #[case] rehash: bool,
        #[case] expected: Change,
    ) {
        current.sha256 = None;
        current.holder = None;
        assert_eq!(classify(parent.as_ref(), &current, rehash), expected);
    }

    #[test]
    fn scan_carries_unchanged_digests_and_counts_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/empty")).unwrap();
        fs::write(root.join("a/keep.txt"), b"keep").unwrap();
        fs::write(root.join("gone.txt"), b"gone").unwrap();
        fs::write(root.join("skip.tmp"), b"tmp").unwrap();
        std::os::unix::fs::symlink("a/keep.txt", root.join("link")).unwrap();
        let excludes = Excludes::new(&["*.tmp"]).unwrap();

        let first = scan_tree(root, &excludes, None, false).unwrap();
        let paths: Vec<_> = first.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "a/empty", "a/keep.txt", "gone.txt", "link"]);
        assert_eq!(first.changes.len(), paths.len());
        assert!(first.changes.iter().all(|c| *c == Change::New));

        let id = SnapshotId::parse("20250101T000000Z-000001").unwrap();
        let mut entries = first.entries.clone();
        for e in &mut entries {
            e.holder = Some(id.clone());
            if e.kind == FileType::File {
                e.sha256 = Some(format!("digest-of-{}", e.path));
            }
        }
        let listing = Listing::new(id.clone(), entries);
        fs::remove_file(root.join("gone.txt")).unwrap();
        let second = scan_tree(root, &excludes, Some(&listing), false).unwrap();
        assert_eq!(second.deleted, 1);
        let keep = second
            .entries
            .iter()
            .find(|e| e.path == "a/keep.txt")
            .unwrap();
        assert_eq!(keep.sha256.as_deref(), Some("digest-of-a/keep.txt"));
        assert_eq!(keep.holder.as_ref(), Some(&id));
        let link = second.entries.iter().find(|e| e.path == "link").unwrap();
        assert_eq!(link.target.as_deref(), Some("a/keep.txt"));
    }

    #[test]
    fn missing_source_and_file_source_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = scan_tree(&missing, &Excludes::none(), None, false).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        let err = scan_tree(&file, &Excludes::none(), None, false).unwrap_err();
        assert!(matches!(err, Error::NotADirectory { .. }), "{err}");
    }
}
