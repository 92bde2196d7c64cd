//! Giving restored entries their recorded owners. Only root can, as with tar; anyone else
//! owns what it restores.

use std::path::Path;

use rustix::fs::{Gid, Uid};
use strongbox_manifest::FileEntry;

/// Setuid and setgid: applied only with the owner they were recorded with.
const SET_ID: u32 = 0o6000;

/// What giving owners came to over one restore.
pub(super) struct Owners {
    root: bool,
    /// Who owns what this process creates (its directories are made without setgid).
    creator: (u32, u32),
    refused: u64,
    first: Option<String>,
}

impl Owners {
    /// For the user this process runs as.
    pub(super) fn new() -> Self {
        Owners {
            root: rustix::process::geteuid().is_root(),
            creator: (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            ),
            refused: 0,
            first: None,
        }
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
    /// would run as root: it loses setuid and setgid. A refusal is counted, not an error:
    /// a restore onto NFS with root squashed must not fail for it.
    pub(super) fn give(
        &mut self,
        entry: &FileEntry,
        path: &Path,
        chown: impl FnOnce(Option<Uid>, Option<Gid>) -> rustix::io::Result<()>,
    ) -> u32 {
        if !self.root {
            return entry.mode;
        }
        let (Some(uid), Some(gid)) = (entry.uid, entry.gid) else {
            return entry.mode & !SET_ID;
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
                entry.mode & !SET_ID
            }
        }
    }

    /// Say once how many entries kept the restoring user as their owner, and why the first.
    pub(super) fn report(&self) {
        if let Some(first) = &self.first {
            tracing::warn!(
                entries = self.refused,
                first = %first,
                "could not give restored entries their recorded owners; they belong to root, without setuid and setgid"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strongbox_manifest::FileType;

    fn entry(mode: u32, owner: Option<u32>) -> FileEntry {
        FileEntry {
            path: "f".into(),
            kind: FileType::File,
            size: 0,
            mode,
            uid: owner,
            gid: owner,
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
    fn setuid_is_kept_only_with_its_owner() {
        // (root, recorded owner, chown succeeds, mode set, refusals counted)
        let cases = [
            (true, Some(33), true, 0o4755, 0),
            (true, Some(33), false, 0o0755, 1),
            (true, None, true, 0o0755, 0),
            (true, Some(0), false, 0o4755, 0),
            (false, Some(33), false, 0o4755, 0),
            (false, None, true, 0o4755, 0),
        ];
        for (root, owner, succeeds, mode, refused) in cases {
            let mut owners = Owners::for_root(root);
            let mut asked = None;
            let got = owners.give(&entry(0o4755, owner), Path::new("f"), |u, g| {
                asked = Some((u, g));
                if succeeds {
                    Ok(())
                } else {
                    Err(rustix::io::Errno::PERM)
                }
            });
            let case = (root, owner, succeeds);
            assert_eq!(got, mode, "{case:?}");
            assert_eq!(owners.refused, refused, "{case:?}");
            let wanted = (root && owner == Some(33))
                .then(|| (Some(Uid::from_raw(33)), Some(Gid::from_raw(33))));
            assert_eq!(asked, wanted, "{case:?}");
        }
    }
}
