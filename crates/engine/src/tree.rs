//! The files read path: every holder archive of a listing streamed once, each wanted entry
//! handed to a visitor and its digest checked. Restores and deep verification share it.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use strongbox_archive::{ArchiveEntry, ArchiveReader, EntryKind, HashingReader};
use strongbox_manifest::{FileEntry, FileType, Listing, ObjectRole, Snapshot, SnapshotId};

use crate::{Error, Reader};

/// A wanted entry found in its holder's archive, handed to the visitor of
/// [`ObjectSource::read_tree`].
pub struct TreeEntry<'a> {
    /// The listing's entry.
    pub entry: &'a FileEntry,
    /// The archive object it is read from.
    pub archive_key: &'a str,
    /// Its data (for regular files), exactly `entry.size` bytes.
    pub data: &'a mut dyn Read,
}

/// Errors inside one archive pass: the stream's own, tagged with the key afterwards.
enum Pass {
    Archive(strongbox_archive::Error),
    Other(Error),
}

impl From<strongbox_archive::Error> for Pass {
    fn from(e: strongbox_archive::Error) -> Self {
        Pass::Archive(e)
    }
}

impl Reader {
    /// Stream every holder archive of `listing` (of a snapshot of `set`) once, oldest first,
    /// and hand each entry of `wanted` (all when `None`) to `visit`, with its data for
    /// regular files. A file's SHA-256 is checked against the listing after `visit` has
    /// consumed the data; an entry missing from its archive is an error.
    pub(crate) fn read_tree<F>(
        &self,
        set: &str,
        listing: &Listing,
        wanted: Option<&HashSet<&str>>,
        mut visit: F,
    ) -> Result<(), Error>
    where
        F: FnMut(TreeEntry<'_>) -> Result<(), Error>,
    {
        strongbox_verify::check_tree(listing)?;
        let archives: HashMap<SnapshotId, String> = self
            .repo
            .archives(set)?
            .into_iter()
            .map(|(id, object)| (id, object.key))
            .collect();
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
            // The holder's record may be forgotten while its archive is kept: the entries'
            // digests, not the archive's, are what is checked.
            let stream = self.repo.open_object(key, None)?;
            let mut archive =
                ArchiveReader::pipelined(stream).map_err(|source| Error::Archive {
                    key: key.to_string(),
                    source,
                })?;
            archive
                .for_each(|item: ArchiveEntry<'_>| -> Result<(), Pass> {
                    let Some(entry) = pending.remove(item.path) else {
                        return Ok(());
                    };
                    check_entry(entry, &item, key).map_err(Pass::Other)?;
                    let mut data = HashingReader::new(item.data);
                    visit(TreeEntry {
                        entry,
                        archive_key: key,
                        data: &mut data,
                    })
                    .map_err(Pass::Other)?;
                    if entry.kind == FileType::File {
                        // Drain what the visitor left, so the digest covers the whole entry.
                        std::io::copy(&mut data, &mut std::io::sink()).map_err(|source| {
                            Pass::Other(Error::EntryData {
                                key: key.to_string(),
                                path: entry.path.clone(),
                                source,
                            })
                        })?;
                        let digest = data.digest();
                        let expected = entry.sha256.as_deref().unwrap_or_default();
                        if digest.sha256 != expected {
                            return Err(Pass::Other(Error::DigestMismatch {
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
                    Pass::Archive(source) => Error::Archive {
                        key: key.to_string(),
                        source,
                    },
                    Pass::Other(e) => e,
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
}

/// The archive's entry is the listing's: same kind, size and link target.
fn check_entry(entry: &FileEntry, item: &ArchiveEntry<'_>, key: &str) -> Result<(), Error> {
    let kind_matches = matches!(
        (entry.kind, item.kind),
        (FileType::File, EntryKind::File)
            | (FileType::Dir, EntryKind::Dir)
            | (FileType::Symlink, EntryKind::Symlink)
    );
    let mismatch = |reason: String| {
        Err(Error::EntryMismatch {
            key: key.to_string(),
            path: entry.path.clone(),
            reason,
        })
    };
    if !kind_matches || (entry.kind == FileType::File && item.size != entry.size) {
        return mismatch(format!(
            "holds a different entry ({:?}, {} bytes)",
            item.kind, item.size
        ));
    }
    if entry.kind == FileType::Symlink && item.link.as_deref() != entry.target.as_deref() {
        return mismatch("holds another link target".to_string());
    }
    Ok(())
}

/// What a [`Restorer`](crate::Restorer) reads a snapshot through: its objects, each
/// checked against the record, and for a files snapshot the tree its listing describes.
pub struct ObjectSource<'a> {
    pub(crate) reader: &'a Reader,
    pub(crate) snapshot: &'a Snapshot,
}

impl ObjectSource<'_> {
    /// The snapshot read.
    pub fn snapshot(&self) -> &Snapshot {
        self.snapshot
    }

    /// Stream the snapshot's object of `role` through the pipeline; reading it to the end
    /// fails if its bytes are not the recorded ones.
    pub fn open(&self, role: ObjectRole) -> Result<strongbox_storage::ObjectReader, Error> {
        let object = self.snapshot.object(role).ok_or_else(|| Error::BadRecord {
            id: self.snapshot.id.to_string(),
            reason: format!("the record names no {role:?} object"),
        })?;
        Ok(self.reader.repo.open_object(&object.key, Some(object))?)
    }

    /// The files listing.
    pub fn listing(&self) -> Result<Listing, Error> {
        self.reader.listing(self.snapshot)
    }

    /// Read the entries of `listing` in `wanted` (all when `None`) from their archives;
    /// see [`TreeEntry`].
    pub fn read_tree<F>(
        &self,
        listing: &Listing,
        wanted: Option<&HashSet<&str>>,
        visit: F,
    ) -> Result<(), Error>
    where
        F: FnMut(TreeEntry<'_>) -> Result<(), Error>,
    {
        self.reader
            .read_tree(&self.snapshot.set, listing, wanted, visit)
    }
}
