use std::collections::{HashMap, HashSet};
use std::io::Read;

use strongbox_archive::{ArchiveEntry, ArchiveReader, EntryKind};
use strongbox_manifest::{FileEntry, FileType, Listing, SnapshotId};
use strongbox_storage::RepoReader;

use crate::Error;

/// A wanted entry found in its holder's archive, handed to the [`read_tree`] visitor.
pub struct TreeEntry<'a> {
    /// The listing's entry.
    pub entry: &'a FileEntry,
    /// The archive object it is read from.
    pub archive_key: &'a str,
    /// Its data (for regular files), exactly `entry.size` bytes.
    pub data: &'a mut dyn Read,
}

/// Check that a listing is a tree: safe relative names, each parent a directory of the
/// listing, no duplicates. A hostile listing cannot then route a write through a symlink.
pub fn check_listing(listing: &Listing) -> Result<(), Error> {
    let mut dirs: HashSet<&str> = HashSet::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for entry in &listing.entries {
        let path = entry.path.as_str();
        let mismatch = |reason: &str| Error::Mismatch {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        strongbox_archive::safe_relative_path(path).map_err(|e| mismatch(&e.to_string()))?;
        if !seen.insert(path) {
            return Err(mismatch("listed twice"));
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !dirs.contains(parent) {
                return Err(mismatch("its parent is not a directory listed before it"));
            }
        }
        if entry.kind == FileType::Dir {
            dirs.insert(path);
        }
        if entry.holder.is_none() {
            return Err(mismatch("no holder snapshot"));
        }
        if entry.kind == FileType::File && entry.sha256.is_none() {
            return Err(mismatch("regular file without SHA-256"));
        }
    }
    Ok(())
}

/// Stream every holder archive of `listing` once (oldest first) and hand each entry of
/// `wanted` (all entries when `None`) to `visit`, with its data for regular files. The
/// file's SHA-256 is checked against the listing after `visit` has consumed the data;
/// an entry missing from its archive is an error. `archives` maps holder ids to archive
/// keys ([`RepoReader::archives`]).
pub fn read_tree<F>(
    repo: &RepoReader,
    listing: &Listing,
    archives: &HashMap<SnapshotId, String>,
    wanted: Option<&HashSet<&str>>,
    mut visit: F,
) -> Result<(), Error>
where
    F: FnMut(TreeEntry<'_>) -> Result<(), Box<dyn std::error::Error + Send + Sync>>,
{
    check_listing(listing)?;
    for (holder, entries) in listing.by_holder() {
        let mut pending: HashMap<&str, &FileEntry> = entries
            .into_iter()
            .filter(|e| wanted.is_none_or(|w| w.contains(e.path.as_str())))
            .map(|e| (e.path.as_str(), e))
            .collect();
        if pending.is_empty() {
            continue;
        }
        let key = archives
            .get(holder)
            .ok_or_else(|| Error::MissingHolder {
                snapshot: listing.snapshot.to_string(),
                holder: holder.to_string(),
            })?
            .as_str();
        let stream = repo.reader(key)?;
        let mut archive = ArchiveReader::pipelined(stream).map_err(|source| Error::Archive {
            key: key.to_string(),
            source,
        })?;
        archive
            .for_each(|item: ArchiveEntry<'_>| -> Result<(), Stream> {
                let Some(entry) = pending.remove(item.path) else {
                    return Ok(());
                };
                let kind_matches = matches!(
                    (entry.kind, item.kind),
                    (FileType::File, EntryKind::File)
                        | (FileType::Dir, EntryKind::Dir)
                        | (FileType::Symlink, EntryKind::Symlink)
                );
                if !kind_matches || (entry.kind == FileType::File && item.size != entry.size) {
                    return Err(Stream::Other(Error::Mismatch {
                        path: entry.path.clone(),
                        reason: format!(
                            "archive {key} holds a different entry ({:?}, {} bytes)",
                            item.kind, item.size
                        ),
                    }));
                }
                if entry.kind == FileType::Symlink
                    && item.link.as_deref() != entry.target.as_deref()
                {
                    return Err(Stream::Other(Error::Mismatch {
                        path: entry.path.clone(),
                        reason: format!("archive {key} holds another link target"),
                    }));
                }
                let mut data = strongbox_archive::HashingReader::new(item.data);
                visit(TreeEntry {
                    entry,
                    archive_key: key,
                    data: &mut data,
                })
                .map_err(|source| match source.downcast::<std::io::Error>() {
                    Ok(io) => Error::EntryData {
                        key: key.to_string(),
                        path: entry.path.clone(),
                        source: *io,
                    },
                    Err(source) => Error::Visit {
                        path: entry.path.clone(),
                        source,
                    },
                })
                .map_err(Stream::Other)?;
                if entry.kind == FileType::File {
                    // Drain what the visitor left, so the digest covers the whole entry.
                    std::io::copy(&mut data, &mut std::io::sink()).map_err(|source| {
                        Stream::Other(Error::EntryData {
                            key: key.to_string(),
                            path: entry.path.clone(),
                            source,
                        })
                    })?;
                    let digest = data.digest();
                    let expected = entry.sha256.as_deref().unwrap_or_default();
                    if digest.sha256 != expected {
                        return Err(Stream::Other(Error::DigestMismatch {
                            key: key.to_string(),
                            path: entry.path.clone(),
                            expected: expected.to_string(),
                            actual: digest.sha256,
                        }));
                    }
                }
                Ok(())
            })
            .map_err(|e| match e {
                Stream::Archive(source) => Error::Archive {
                    key: key.to_string(),
                    source,
                },
                Stream::Other(e) => e,
            })?;
        if let Some(path) = pending.keys().min() {
            return Err(Error::MissingEntry {
                key: key.to_string(),
                path: path.to_string(),
            });
        }
    }
    Ok(())
}

/// Errors inside one archive pass: the stream's own, tagged with the key afterwards.
enum Stream {
    Archive(strongbox_archive::Error),
    Other(Error),
}

impl From<strongbox_archive::Error> for Stream {
    fn from(e: strongbox_archive::Error) -> Self {
        Stream::Archive(e)
    }
}
