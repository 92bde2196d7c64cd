//! Giving restored entries their recorded owners. Only root can, as with tar; anyone else
//! owns what it restores.

use std::path::Path;

use rustix::fs::{Gid, Uid};
use strongbox_manifest::{FileEntry, FileType};

/// Setuid and setgid: applied only with the owner they were recorded with.
const SET_ID: u32 = 0o6000;

/// What giving owners came to over one restore.
pub(super) struct Owners {
    root: bool,
    /// Who owns what this process creates in the tree: the staging directory's owner, as
    /// it got its group from a setgid parent, if it has one, and hands it on.
    creator: (u32, u32),
    refused: u64,
    first: Option<String>,
}

impl Owners {
    /// For a tree this process creates below the directory `root`, which it just made.
    pub(super) fn for_tree(root: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let made = std::fs::metadata(root)?;
        Ok(Owners {
            root: rustix::process::geteuid().is_root(),
            creator: (made.uid(), made.gid()),
            refused: 0,
            first: None,
        })
    }

    #[cfg(test)]
    fn for_root(root: bool) -> Self {
        Owners {
            root,
            creator: (0, 0),
            refused: 0,
            first: None,
        }
    }

    /// Give `entry` (written at `path`) its owner with `chown`, and return the mode to set
    /// after it (a chown clears setuid and setgid). Restored by root without its owner (a
    /// listing from before owners were kept, or a file system that refuses), a setuid file
    /// would run as root: it loses setuid and setgid (a directory keeps its setgid, which
    /// grants nothing). A refusal is counted, not an error: a restore onto NFS with root
    /// squashed must not fail for it.
    pub(super) fn give(
        &mut self,
        entry: &FileEntry,
        path: &Path,
        chown: impl FnOnce(Option<Uid>, Option<Gid>) -> rustix::io::Result<()>,
    ) -> u32 {
        let unowned = match entry.kind {
            FileType::File => entry.mode & !SET_ID,
            _ => entry.mode,
        };
        if !self.root {
            return entry.mode;
        }
        // u32::MAX is no id: chown(2) reads it as "leave as is", which would keep root.
        let (Some(uid), Some(gid)) = (
            entry.uid.filter(|&u| u != u32::MAX),
            entry.gid.filter(|&g| g != u32::MAX),
        ) else {
            return unowned;
        };
        if (uid, gid) == self.creator {
            // Root's own files (a tree of 100,000 of them) need no syscall each.
            return entry.mode;
        }
        match chown(Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))) {
            Ok(()) => entry.mode,
            Err(e) => {
                self.refused += 1;
                self.first
                    .get_or_insert_with(|| format!("{}: {e}", path.display()));
                unowned
            }
        }
    }

    /// Say once how many entries kept the restoring user as their owner, and why the first.
    pub(super) fn report(&self) {
        if let Some(first) = &self.first {
            tracing::warn!(
                entries = self.refused,
                first = %first,
                "could not give restored entries their recorded owners; they belong to the restoring user, files without setuid and setgid"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry as a listing holds it (what it does not give is optional).
    fn entry(kind: FileType, mode: u32, owner: Option<u32>) -> FileEntry {
        let json = serde_json::json!({
            "path": "f", "type": kind, "size": 0, "mode": mode, "mtime": 0,
            "uid": owner, "gid": owner,
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn setuid_is_kept_only_with_its_owner() {
        let (file, dir) = (FileType::File, FileType::Dir);
        // (root, kind, recorded owner, chown succeeds, mode set, refusals counted)
        let cases = [
            (true, file, Some(33), true, 0o4755, 0),
            (true, file, Some(33), false, 0o0755, 1),
            (true, file, None, true, 0o0755, 0),
            (true, file, Some(u32::MAX), true, 0o0755, 0),
            (true, file, Some(0), false, 0o4755, 0),
            (true, dir, None, true, 0o2775, 0),
            (true, dir, Some(33), false, 0o2775, 1),
            (false, file, Some(33), false, 0o4755, 0),
            (false, file, None, true, 0o4755, 0),
        ];
        for (root, kind, owner, succeeds, mode, refused) in cases {
            let mut owners = Owners::for_root(root);
            let mut asked = None;
            let set_id = if kind == dir { 0o2775 } else { 0o4755 };
            let got = owners.give(&entry(kind, set_id, owner), Path::new("f"), |u, g| {
                asked = Some((u, g));
                if succeeds {
                    Ok(())
                } else {
                    Err(rustix::io::Errno::PERM)
                }
            });
            let case = (root, kind, owner, succeeds);
            assert_eq!(got, mode, "{case:?}");
            assert_eq!(owners.refused, refused, "{case:?}");
            let wanted = (root && owner == Some(33))
                .then(|| (Some(Uid::from_raw(33)), Some(Gid::from_raw(33))));
            assert_eq!(asked, wanted, "{case:?}");
        }
    }
}
