//! Removing a tree this process made, its read-only directories included.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Remove the tree at `path` without following links. A directory restored read-only (mode
/// 0555) keeps its entries from anyone but root, so on a refusal its owner's write and
/// search bits are set, through the tree, and the removal is tried again.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            open_up(path)?;
            fs::remove_dir_all(path)
        }
        other => other,
    }
}

fn open_up(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    if meta.mode() & 0o700 != 0o700 {
        fs::set_permissions(
            dir,
            fs::Permissions::from_mode(meta.mode() & 0o7777 | 0o700),
        )?;
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            open_up(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
        open_up(&tree).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&tree.join("ro/deeper")), 0o755);
        assert_eq!(mode(&outside), 0o555, "not through the link");
        remove_tree(&tree).unwrap();
        assert!(!tree.exists() && outside.exists());
    }
}
