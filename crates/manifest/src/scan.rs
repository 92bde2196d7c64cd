use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::{Error, Excludes, FileEntry, FileType, Listing, RootDir, SourceError};

/// How an entry compares to the parent snapshot's listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Not in the parent.
    New,
    /// In the parent with other metadata: read and stored again.
    Changed,
    /// Same type, size, mode, mtime, ctime, inode (and link target): not read again. A new
    /// owner changes the ctime, so owners need no comparison of their own.
    Unchanged,
    /// Unchanged, but its parent entry was listed before owners were kept: not read again,
    /// listed again with its owner (and the parent's digest, holder and offset), so that a
    /// file that never changes gets its owner back on a restore too.
    Relisted,
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

/// Walk `root` and diff every entry against `parent`: [`TreeWalk`] then [`Diff`], collected.
pub fn scan_tree(
    root: &Path,
    excludes: &Excludes,
    parent: Option<&Listing>,
    rehash: bool,
) -> Result<Scan, Error> {
    let mut walk = TreeWalk::new(root, excludes)?;
    let parent = parent
        .into_iter()
        .flat_map(|l| l.entries.iter().cloned().map(Ok));
    let mut diff = Diff::new(&mut walk, parent, rehash);
    let mut scan = Scan::default();
    for item in &mut diff {
        let (entry, change) = item?;
        scan.entries.push(entry);
        scan.changes.push(change);
    }
    scan.deleted = diff.into_removed().len() as u64;
    scan.errors = walk.errors;
    Ok(scan)
}

/// Walks a tree in listing order (bytewise by path), one directory at a time: memory holds
/// the children of the directories on the current path, not the tree. Symlinks are
/// recorded, never followed; `excludes` are skipped; entries that cannot be read are
/// reported in [`TreeWalk::errors`].
///
/// Bytewise order interleaves a directory's subtree with its siblings: `a`, `a-b`, `a.zip`,
/// `a/x`. So each directory's children are sorted by name, with each subdirectory's
/// subtree placed at `name/`, and walked in that order.
#[derive(Debug)]
pub struct TreeWalk<'a> {
    excludes: &'a Excludes,
    /// For each directory on the current path, its children still to visit, last first.
    pending: Vec<Vec<Step>>,
    /// Entries skipped because they could not be read.
    pub errors: Vec<SourceError>,
    root: RootDir,
}

#[derive(Debug)]
enum Step {
    Entry(FileEntry),
    /// A subdirectory's contents: its path and relative path.
    Descend(PathBuf, String),
}

impl Step {
    /// Where the step sorts among its siblings: an entry at its name, a subdirectory's
    /// contents at `name/`.
    fn sort_key(&self) -> Vec<u8> {
        let (path, suffix): (&str, &[u8]) = match self {
            Step::Entry(entry) => (&entry.path, b""),
            Step::Descend(_, rel) => (rel, b"/"),
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        [name.as_bytes(), suffix].concat()
    }
}

impl<'a> TreeWalk<'a> {
    /// Start walking `root`, which must be a readable directory.
    pub fn new(root: &Path, excludes: &'a Excludes) -> Result<Self, Error> {
        let source = |source| Error::Source {
            path: root.to_path_buf(),
            source,
        };
        let meta = fs::metadata(root).map_err(source)?;
        if !meta.is_dir() {
            return Err(Error::NotADirectory {
                path: root.to_path_buf(),
            });
        }
        let children = read_dir(root).map_err(source)?;
        let mut walk = TreeWalk {
            excludes,
            pending: Vec::new(),
            errors: Vec::new(),
            root: RootDir::from_metadata(&meta),
        };
        let steps = walk.steps(root, "", children);
        walk.pending.push(steps);
        Ok(walk)
    }

    /// The walked directory itself, as it was when the walk began.
    pub fn root(&self) -> RootDir {
        self.root
    }

    /// The steps of the children of `dir` (at `rel` in the tree), last first (popped from
    /// the end).
    fn steps(&mut self, dir: &Path, rel: &str, children: Vec<Child>) -> Vec<Step> {
        let mut steps = Vec::with_capacity(children.len() + 8);
        for (name, meta) in children {
            let Some(name) = name.to_str() else {
                self.errors.push(SourceError::left_out(
                    child_path(rel, &name.to_string_lossy()),
                    "file name is not valid UTF-8",
                ));
                continue;
            };
            let rel_path = child_path(rel, name);
            if self.excludes.is_excluded(&rel_path, name) {
                continue;
            }
            let meta = match meta {
                Ok(meta) => meta,
                Err(e) => {
                    self.errors
                        .push(SourceError::left_out(rel_path, format!("cannot stat: {e}")));
                    continue;
                }
            };
            match entry_from_metadata(dir, name, rel_path, &meta) {
                Ok(Some(entry)) => {
                    if entry.kind == FileType::Dir {
                        steps.push(Step::Descend(dir.join(name), entry.path.clone()));
                    }
                    steps.push(Step::Entry(entry));
                }
                Ok(None) => {
                    tracing::warn!(path = %dir.join(name).display(), "skipping special file (socket, FIFO or device)");
                }
                Err(e) => self.errors.push(e),
            }
        }
        // Keys computed once and the steps moved once: a step is a whole entry, so sorting
        // by comparisons that split paths and swap steps cost a tenth of a no-change backup.
        steps.sort_by_cached_key(|step| std::cmp::Reverse(step.sort_key()));
        steps
    }
}

impl Iterator for TreeWalk<'_> {
    type Item = FileEntry;

    fn next(&mut self) -> Option<FileEntry> {
        loop {
            let step = match self.pending.last_mut()?.pop() {
                Some(step) => step,
                None => {
                    self.pending.pop();
                    continue;
                }
            };
            match step {
                Step::Entry(entry) => return Some(entry),
                Step::Descend(dir, rel) => match read_dir(&dir) {
                    Ok(children) => {
                        let steps = self.steps(&dir, &rel, children);
                        self.pending.push(steps);
                    }
                    Err(e) => self.errors.push(SourceError {
                        path: rel,
                        message: format!(
                            "cannot list directory: {e} (in this snapshot as an empty directory)"
                        ),
                    }),
                },
            }
        }
    }
}

/// Compares a walk with the parent's entries, both in listing order, as a merge: each
/// walked entry comes out with its [`Change`], an unchanged one with the parent's digest
/// and holder; parent entries the walk passes by are the removed ones.
pub struct Diff<W, P: Iterator> {
    walk: W,
    parent: std::iter::Peekable<P>,
    rehash: bool,
    removed: Vec<String>,
    last_parent: Option<String>,
}

impl<W, P> Diff<W, P>
where
    W: Iterator<Item = FileEntry>,
    P: Iterator<Item = Result<FileEntry, Error>>,
{
    /// Diff `walk` against `parent` (empty for a first snapshot); `rehash` treats every
    /// regular file as changed.
    pub fn new(walk: W, parent: impl IntoIterator<IntoIter = P>, rehash: bool) -> Self {
        Diff {
            walk,
            parent: parent.into_iter().peekable(),
            rehash,
            removed: Vec::new(),
            last_parent: None,
        }
    }

    /// Paths of the parent the walk did not find, in listing order; complete once the
    /// iterator is exhausted.
    pub fn into_removed(self) -> Vec<String> {
        self.removed
    }

    /// The next parent entry if its path sorts at or before `path` (all of them when
    /// `None`); an out-of-order parent is an error, as the merge would misread it.
    fn parent_up_to(&mut self, path: Option<&str>) -> Result<Option<FileEntry>, Error> {
        let due = match self.parent.peek() {
            None => return Ok(None),
            Some(Err(_)) => true,
            Some(Ok(old)) => path.is_none_or(|p| old.path.as_str() <= p),
        };
        if !due {
            return Ok(None);
        }
        let old = self.parent.next().expect("peeked")?;
        match &mut self.last_parent {
            Some(last) if old.path <= *last => {
                return Err(Error::Corrupt {
                    what: "listing",
                    key: format!("of the parent snapshot, at {:?}", old.path),
                    reason: "entries out of order".to_string(),
                });
            }
            // The same buffer for every entry: an allocation per entry is a cost per file.
            Some(last) => {
                last.clear();
                last.push_str(&old.path);
            }
            None => self.last_parent = Some(old.path.clone()),
        }
        Ok(Some(old))
    }
}

impl<W, P> Iterator for Diff<W, P>
where
    W: Iterator<Item = FileEntry>,
    P: Iterator<Item = Result<FileEntry, Error>>,
{
    type Item = Result<(FileEntry, Change), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let Some(mut entry) = self.walk.next() else {
            return match self.parent_up_to(None) {
                Err(e) => Some(Err(e)),
                Ok(Some(old)) => {
                    self.removed.push(old.path);
                    self.next()
                }
                Ok(None) => None,
            };
        };
        let mut same = None;
        loop {
            match self.parent_up_to(Some(&entry.path)) {
                Err(e) => return Some(Err(e)),
                Ok(None) => break,
                Ok(Some(old)) if old.path == entry.path => {
                    same = Some(old);
                    break;
                }
                Ok(Some(old)) => self.removed.push(old.path),
            }
        }
        let mut change = classify(same.as_ref(), &entry, self.rehash);
        if let (Change::Unchanged, Some(old)) = (change, same) {
            if old.uid.is_none() && entry.uid.is_some() {
                change = Change::Relisted;
            }
            entry.sha256 = old.sha256;
            entry.holder = old.holder;
            entry.offset = old.offset;
        }
        Some(Ok((entry, change)))
    }
}

/// The tree path of `name` in the directory at `rel` ("" for the top).
fn child_path(rel: &str, name: &str) -> String {
    match rel {
        "" => name.to_string(),
        _ => format!("{rel}/{name}"),
    }
}

/// A directory's children with their metadata; `DirEntry::metadata` stats relative to the
/// open directory (no path walk per file) and does not follow symlinks. Full paths are
/// built only where needed (directories, links): most children are files.
fn read_dir(dir: &Path) -> std::io::Result<Vec<Child>> {
    let mut children = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        children.push((entry.file_name(), entry.metadata()));
    }
    Ok(children)
}

type Child = (std::ffi::OsString, std::io::Result<Metadata>);

/// The entry of `name` in `dir`, at `rel` in the tree.
fn entry_from_metadata(
    dir: &Path,
    name: &str,
    rel: String,
    meta: &Metadata,
) -> Result<Option<FileEntry>, SourceError> {
    let file_type = meta.file_type();
    let (kind, size, target) = if file_type.is_file() {
        (FileType::File, meta.len(), None)
    } else if file_type.is_dir() {
        (FileType::Dir, 0, None)
    } else if file_type.is_symlink() {
        let target = fs::read_link(dir.join(name))
            .map_err(|e| SourceError::left_out(&rel, format!("cannot read link: {e}")))?;
        let target = target
            .into_os_string()
            .into_string()
            .map_err(|_| SourceError::left_out(&rel, "link target is not valid UTF-8"))?;
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
        uid: Some(meta.uid()),
        gid: Some(meta.gid()),
        mtime: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        sha256: None,
        target,
        holder: None,
        offset: None,
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
            uid: None,
            gid: None,
            mtime,
            sha256: (kind == FileType::File).then(|| "ab".into()),
            target: None,
            holder: Some(SnapshotId::parse("20250101T000000Z-000000").unwrap()),
            offset: None,
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
    fn the_walk_comes_out_in_bytewise_path_order_one_directory_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for path in [
            "a/x", "a/b/c", "a-b", "a.zip", "a0", "b/a", "ab/z", "A", "é",
        ] {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, b"x").unwrap();
        }
        let excludes = Excludes::none();
        let walked: Vec<String> = TreeWalk::new(root, &excludes)
            .unwrap()
            .map(|e| e.path)
            .collect();
        let mut sorted = walked.clone();
        sorted.sort();
        assert_eq!(walked, sorted);
        assert_eq!(
            walked,
            [
                "A", "a", "a-b", "a.zip", "a/b", "a/b/c", "a/x", "a0", "ab", "ab/z", "b", "b/a",
                "é"
            ]
        );
    }

    #[test]
    fn a_name_that_is_not_utf8_is_skipped_and_named_by_its_tree_path() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("sub")).unwrap();
        for path in [&b"top\xff"[..], b"sub/in\xff", b"ok"] {
            fs::write(root.join(std::ffi::OsStr::from_bytes(path)), b"x").unwrap();
        }
        let excludes = Excludes::none();
        let mut walk = TreeWalk::new(root, &excludes).unwrap();
        let walked: Vec<String> = walk.by_ref().map(|e| e.path).collect();
        assert_eq!(walked, ["ok", "sub"]);
        let skipped: Vec<&str> = walk.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(skipped, ["top\u{fffd}", "sub/in\u{fffd}"]);
    }

    /// Regression: a file unchanged since a listing made before owners were kept stayed
    /// without its owner, so a restore by root gave it to root.
    #[test]
    fn an_unchanged_entry_listed_without_its_owner_is_relisted_with_the_parents_content() {
        let parent = FileEntry {
            offset: Some(1536),
            ..entry(FileType::File, 1, 1)
        };
        let owned = |uid| FileEntry {
            uid,
            gid: uid,
            sha256: None,
            holder: None,
            ..entry(FileType::File, 1, 1)
        };
        // (the parent's owner, the file's now, the change)
        let cases = [
            (None, Some(33), Change::Relisted),
            (Some(33), Some(33), Change::Unchanged),
        ];
        for (before, now, change) in cases {
            let parent = FileEntry {
                uid: before,
                gid: before,
                ..parent.clone()
            };
            let (got, said) = Diff::new([owned(now)].into_iter(), [Ok(parent.clone())], false)
                .next()
                .unwrap()
                .unwrap();
            assert_eq!(said, change, "{before:?}");
            assert_eq!(got.uid, now);
            assert_eq!(
                (&got.sha256, &got.holder, got.offset),
                (&parent.sha256, &parent.holder, parent.offset)
            );
        }
    }

    #[test]
    fn a_diff_against_an_out_of_order_parent_is_an_error() {
        let walk = [entry(FileType::File, 1, 1)].into_iter();
        let parent = ["a", "c", "b"].map(|p| {
            Ok(FileEntry {
                path: p.into(),
                ..entry(FileType::File, 1, 1)
            })
        });
        let error = Diff::new(walk, parent, false)
            .find_map(Result::err)
            .unwrap()
            .to_string();
        assert!(error.contains("out of order"), "{error}");
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
