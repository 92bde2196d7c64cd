//! The files read path: every holder archive of a listing streamed once, each wanted entry
//! handed to a visitor and its digest checked. Restores and deep verification share it.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use strongbox_archive::{
    ArchiveEntry, ArchiveReader, Decoder, EntryKind, FrameSpan, HashingReader, SeekTable,
};
use strongbox_manifest::{FileEntry, FileType, Listing, ObjectRole, Snapshot, SnapshotId};
use strongbox_storage::ObjectInfo;

use crate::{Error, Reader};

/// A wanted entry found in its holder's archive, handed to the visitor of
/// [`ObjectSource::read_files`].
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

/// How a pass reads archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// Each archive streamed whole.
    Whole,
    /// Where an archive's seek table shows that fetching the frames around the wanted
    /// files reads less, only those frames (and no directory or link entries).
    Files,
}

/// Spans of frames this close in stored bytes are fetched as one.
const MERGE_GAP: u64 = 1 << 20;

/// Room for an entry's headers before its data: a ustar header, and a PAX one with its
/// records when the name is long.
fn header_room(path: &str) -> u64 {
    3 * 512 + (path.len() as u64 + 64).div_ceil(512) * 512
}

/// Frames of one archive to fetch in one read, and the entries they hold, by offset.
struct Fetch<'e> {
    span: FrameSpan,
    entries: Vec<(u64, &'e FileEntry)>,
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
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
        visit: F,
    ) -> Result<(), Error>
    where
        F: FnMut(TreeEntry<'_>) -> Result<(), Error>,
    {
        self.read_entries(set, listing, wanted, Reading::Whole, visit)
    }

    pub(crate) fn read_entries<F>(
        &self,
        set: &str,
        listing: &Listing,
        wanted: Option<&HashSet<&str>>,
        reading: Reading,
        mut visit: F,
    ) -> Result<(), Error>
    where
        F: FnMut(TreeEntry<'_>) -> Result<(), Error>,
    {
        strongbox_verify::check_tree(listing)?;
        let archives: HashMap<SnapshotId, ObjectInfo> = self.repo.archives(set)?;
        for (holder, mut entries) in listing.by_holder() {
            if let Some(wanted) = wanted {
                entries.retain(|e| wanted.contains(e.path.as_str()));
            }
            if entries.is_empty() {
                continue;
            }
            let archive = archives.get(holder).ok_or_else(|| Error::MissingHolder {
                snapshot: listing.snapshot.to_string(),
                holder: holder.to_string(),
            })?;
            let key = archive.key.as_str();
            // A restore of everything streams every archive: no seek table is read.
            let fetches = match (reading, wanted) {
                (Reading::Files, Some(_)) => self.frames_to_fetch(archive, &entries)?,
                _ => None,
            };
            match fetches {
                // Directories and links are not read by frames: the listing holds all there
                // is of them. Each fetch finds every file it names or fails.
                Some(fetches) => {
                    for fetch in fetches {
                        self.read_frames(key, &fetch, &mut visit)?;
                    }
                }
                None => self.read_archive(key, &entries, &mut visit)?,
            }
        }
        Ok(())
    }

    /// Stream `key` whole, visiting `entries` (the holder's, in listing order) as a merge:
    /// an archive holds its entries in listing order, so each is the next one wanted or one
    /// no longer wanted (changed or removed later in the chain, or not asked for), which sorts
    /// before it. The first wanted entry the archive passes by is missing. No map of the
    /// wanted paths: a restore's memory is the listing's.
    fn read_archive<F>(&self, key: &str, entries: &[&FileEntry], visit: &mut F) -> Result<(), Error>
    where
        F: FnMut(TreeEntry<'_>) -> Result<(), Error>,
    {
        // The holder's record may be forgotten while its archive is kept: the entries'
        // digests, not the archive's, are what is checked.
        let stream = self.repo.open_object(key, None)?;
        let mut archive = ArchiveReader::pipelined(stream).map_err(|source| Error::Archive {
            key: key.to_string(),
            source,
        })?;
        let missing = |entry: &FileEntry| Error::MissingEntry {
            key: key.to_string(),
            path: entry.path.clone(),
        };
        let mut next = entries.iter().copied().peekable();
        archive
            .for_each(|item: ArchiveEntry<'_>| -> Result<(), Pass> {
                match next.peek() {
                    Some(entry) if entry.path == item.path => {
                        visit_entry(entry, item, key, visit)?;
                        next.next();
                        Ok(())
                    }
                    // Past where the wanted entry would be: no need to read on.
                    Some(entry) if entry.path.as_str() < item.path => {
                        Err(Pass::Other(missing(entry)))
                    }
                    _ => Ok(()),
                }
            })
            .map_err(|e| e.into_error(key))?;
        match next.next() {
            Some(entry) => Err(missing(entry)),
            None => Ok(()),
        }
    }

    /// The reads that fetch only the frames holding the files of `entries`, when the archive
    /// has a seek table, every file's offset is known, the repository is not sealed, and
    /// that reads at most half the archive; else `None` (stream it whole).
    fn frames_to_fetch<'e>(
        &self,
        archive: &ObjectInfo,
        entries: &[&'e FileEntry],
    ) -> Result<Option<Vec<Fetch<'e>>>, Error> {
        let (key, size) = (archive.key.as_str(), archive.size);
        let footer = SeekTable::FOOTER as u64;
        if self.repo.sealed() || size < footer {
            return Ok(None);
        }
        let Some(mut wanted) = entries
            .iter()
            .filter(|e| e.kind == FileType::File)
            .map(|e| e.offset.map(|offset| (offset, *e)))
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        let tail = self.repo.read_stored_range(key, size - footer..size)?;
        let Some(length) = SeekTable::length(&tail).filter(|&l| l <= size) else {
            return Ok(None);
        };
        let bytes = self.repo.read_stored_range(key, size - length..size)?;
        let Some(table) = SeekTable::parse(&bytes, size) else {
            return Ok(None);
        };
        wanted.sort_by_key(|(offset, _)| *offset);
        let mut fetches: Vec<Fetch<'e>> = Vec::new();
        for (offset, entry) in wanted {
            let end = (offset + header_room(&entry.path) + entry.size.div_ceil(512) * 512)
                .min(table.content_len());
            let Some(span) = table.span(offset..end) else {
                return Ok(None);
            };
            match fetches.last_mut() {
                Some(last) if span.stored.start <= last.span.stored.end + MERGE_GAP => {
                    last.span.stored.end = last.span.stored.end.max(span.stored.end);
                    last.entries.push((offset, entry));
                }
                _ => fetches.push(Fetch {
                    span,
                    entries: vec![(offset, entry)],
                }),
            }
        }
        let fetched: u64 = fetches
            .iter()
            .map(|f| f.span.stored.end - f.span.stored.start)
            .sum();
        let by_frames = fetched <= size / 2;
        tracing::debug!(%key, fetched, size, spans = fetches.len(), by_frames, "frames to fetch");
        Ok(by_frames.then_some(fetches))
    }

    /// Fetch and decode one span of frames, visiting its entries at their offsets.
    fn read_frames<F>(&self, key: &str, fetch: &Fetch<'_>, visit: &mut F) -> Result<(), Error>
    where
        F: FnMut(TreeEntry<'_>) -> Result<(), Error>,
    {
        let stored = self
            .repo
            .open_stored_range(key, fetch.span.stored.clone())?;
        let corrupt = |context: String| {
            move |source| Error::Archive {
                key: key.to_string(),
                source: strongbox_archive::Error::Corrupt { context, source },
            }
        };
        let decoder =
            Decoder::new(stored).map_err(corrupt(format!("frames at {:?}", fetch.span.stored)))?;
        let mut content = Counted {
            inner: decoder,
            read: 0,
        };
        for &(offset, entry) in &fetch.entries {
            let at = fetch.span.start + content.read;
            let Some(skip) = offset.checked_sub(at) else {
                return Err(Error::EntryMismatch {
                    key: key.to_string(),
                    path: entry.path.clone(),
                    reason: format!("starts at {offset}, inside the entry before it"),
                });
            };
            std::io::copy(&mut (&mut content).take(skip), &mut std::io::sink())
                .map_err(corrupt(format!("before entry {:?}", entry.path)))?;
            let found = ArchiveReader::new(&mut content)
                .first(|item: ArchiveEntry<'_>| -> Result<(), Pass> {
                    if item.path != entry.path {
                        return Err(Pass::Other(Error::EntryMismatch {
                            key: key.to_string(),
                            path: entry.path.clone(),
                            reason: format!("holds {:?} at offset {offset}", item.path),
                        }));
                    }
                    visit_entry(entry, item, key, visit)
                })
                .map_err(|e| e.into_error(key))?;
            if !found {
                return Err(Error::MissingEntry {
                    key: key.to_string(),
                    path: entry.path.clone(),
                });
            }
        }
        Ok(())
    }
}

impl Pass {
    fn into_error(self, key: &str) -> Error {
        match self {
            Pass::Archive(source) => Error::Archive {
                key: key.to_string(),
                source,
            },
            Pass::Other(e) => e,
        }
    }
}

/// Hand one archive entry to `visit` after checking it against the listing's, and check a
/// file's digest once `visit` has read (or skipped) its data.
fn visit_entry<F>(
    entry: &FileEntry,
    item: ArchiveEntry<'_>,
    key: &str,
    visit: &mut F,
) -> Result<(), Pass>
where
    F: FnMut(TreeEntry<'_>) -> Result<(), Error>,
{
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

    /// Read the entries of `listing` in `wanted` (all when `None`) from their archives, each
    /// checked against the listing and a file against its digest; see [`TreeEntry`]. For a
    /// visitor that wants regular files: where an archive's seek table shows that fetching
    /// only the frames around the wanted files reads less, only those are fetched, and that
    /// archive's directory and link entries are not visited (the listing holds all there is
    /// of them).
    pub fn read_files<F>(
        &self,
        listing: &Listing,
        wanted: Option<&HashSet<&str>>,
        visit: F,
    ) -> Result<(), Error>
    where
        F: FnMut(TreeEntry<'_>) -> Result<(), Error>,
    {
        self.reader
            .read_entries(&self.snapshot.set, listing, wanted, Reading::Files, visit)
    }
}
