//! Removing a tree a restore made or replaced, its read-only directories included, and
//! finding the trees that killed runs left behind.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Dir, FileType, Mode, OFlags, CWD};

/// The entries of `parent` whose process is gone from this host: `owner` reads the pid and
/// host an entry's name holds, `None` for a name that is not one of strongbox's.
pub(crate) fn left_by_gone_processes(
    parent: &Path,
    owner: impl Fn(&str) -> Option<(u32, String)>,
) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            // strongbox's names are UTF-8 (a target's name is made so): another is not ours.
            entry
                .file_name()
                .to_str()
                .and_then(&owner)
                .is_some_and(|(pid, host)| {
                    strongbox_storage::holder_alive(&host, pid) == Some(false)
                })
        })
        .map(|entry| entry.path())
        .collect()
}

/// [`remove_tree`] of `what` a killed run left at `path`, said either way: it is not the
/// current command's to fail on.
pub(crate) fn remove_left_over(path: &Path, what: &str) {
    match remove_tree(path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed {what}"),
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "could not remove {what}"),
    }
}

/// Remove the tree at `path` without following links. A directory restored read-only (mode
/// 0555) keeps its entries from anyone but root, so on a refusal its owner's write and
/// search bits are set, through the tree, and the removal is tried again.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let top = match open_dir(CWD, path) {
                // A top its owner may not read (a restored root of mode 0300): opened up by
                // its path, as a directory, never through a link.
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    if !fs::symlink_metadata(path)?.is_dir() {
                        return Err(e);
                    }
                    fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
                    open_dir(CWD, path)?
                }
                opened => opened?,
            };
            let first = open_up(top).err();
            fs::remove_dir_all(path).map_err(|e| first.unwrap_or(e))
        }
        other => other,
    }
}

/// A directory opened without following a link: one swapped in for it while the tree is
/// walked (by whoever can write in the restored tree) is refused, never changed.
fn open_dir(at: impl AsFd, path: impl rustix::path::Arg) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(at, path, flags, Mode::empty())?)
}

/// Give `dir` and the directories below it their owner's read, write and search bits,
/// through descriptors; past a directory that refuses (another user's), on to the rest.
fn open_up(dir: OwnedFd) -> io::Result<()> {
    let mode = rustix::fs::fstat(&dir)?.st_mode;
    if mode & 0o700 != 0o700 {
        rustix::fs::fchmod(&dir, Mode::from_raw_mode((mode & 0o7777) | 0o700))?;
    }
    let mut first = None;
    for entry in Dir::read_from(&dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if entry.file_type() != FileType::Directory || matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        if let Err(e) = open_dir(&dir, name).and_then(open_up) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    /// Root removes any tree; the case that matters is another user's, which the e2e test
    /// of restores run by `nobody` covers. Here: modes are opened up only where needed and
    /// links are not followed.
    #[test]
    fn a_tree_with_read_only_directories_is_removed_and_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o555)).unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("ro/deeper")).unwrap();
        fs::write(tree.join("ro/deeper/f"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("ro/link")).unwrap();
        for ro in ["ro/deeper", "ro"] {
            fs::set_permissions(tree.join(ro), fs::Permissions::from_mode(0o555)).unwrap();
        }
        open_up(open_dir(CWD, &tree).unwrap()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&tree.join("ro/deeper")), 0o755);
        assert_eq!(mode(&outside), 0o555, "not through the link");
        assert!(
            open_dir(CWD, tree.join("ro/link")).is_err(),
            "a link is not opened"
        );
        remove_tree(&tree).unwrap();
        assert!(!tree.exists() && outside.exists());
    }
}
