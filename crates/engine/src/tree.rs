//! The files read path: a whole tree streamed beside the holder archives it draws from, or
//! the entries selected from a listing in memory read from theirs; each entry handed to a
//! visitor and a file's digest checked. Restores and deep verification share it.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::io::Read;

use strongbox_archive::{
    ArchiveEntry, Decoder, EntryCursor, EntryKind, FrameSpan, HashingReader, SeekTable,
};
use strongbox_manifest::{
    FileEntry, FileType, Listing, ObjectRef, ObjectRole, Snapshot, SnapshotId,
};
use strongbox_storage::{layout, Ahead, CompressedRanges, ObjectInfo};
use strongbox_verify::TreeCheck;

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

/// What the archives read at once by [`Reader::read_streamed`] may hold in memory, each
/// counted as its stored size up to [`ARCHIVE_MEMORY`]. A tree drawing from more takes one
/// more pass over its listing per group that fits. A chain's small incremental archives
/// all fit beside its full one.
pub(crate) const OPEN_BUDGET: u64 = 64 << 20;

/// The most one open archive holds: read-ahead of its stored bytes and of its content
/// (a few MiB each) and the decoder's window.
const ARCHIVE_MEMORY: u64 = 16 << 20;

/// Archives of more stored bytes than this are decoded on a thread ahead of their reader,
/// unless their stored bytes are fetched ahead already ([`HolderArchive::open`]).
const PIPELINED_FROM: u64 = 1 << 20;

/// Spans of frames this close in stored bytes are fetched as one.
const MERGE_GAP: u64 = 1 << 20;

/// The end of an archive read first, for its seek table: the table's footer and, unless the
/// archive has more than about 8,000 frames (8 bytes each), the whole table, in one read
/// (in an encrypted repository, one or two age chunks opened once, not twice).
const TAIL: u64 = 64 * 1024;

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

impl Reader {
    /// Read the entries of `listing` (a selection of a snapshot of `set`) from each holder
    /// archive once, oldest first, and hand each to `visit`, with its data for regular
    /// files. Where an archive's seek table shows that fetching the frames around the wanted
    /// files reads less, only those frames are read (and no directory or link entries: the
    /// listing holds all there is of them). A file's SHA-256 is checked against the listing
    /// after `visit` has consumed the data; an entry missing from its archive is an error.
    pub(crate) fn read_entries<F>(
        &self,
        set: &str,
        listing: &Listing,
        mut visit: F,
    ) -> Result<(), Error>
    where
        F: FnMut(TreeEntry<'_>) -> Result<(), Error>,
    {
        strongbox_verify::check_tree(listing)?;
        let archives: HashMap<SnapshotId, ObjectInfo> = self.repo.archives(set)?;
        for (holder, entries) in listing.by_holder() {
            let archive = archives.get(holder).ok_or_else(|| Error::MissingHolder {
                snapshot: listing.snapshot.to_string(),
                holder: holder.to_string(),
            })?;
            let key = archive.key.as_str();
            match self.frames_to_fetch(archive, &entries)? {
                // Directories and links are not read by frames: the listing holds all there
                // is of them. Each fetch finds every file it names or fails.
                Some((compressed, fetches)) => {
                    for fetch in fetches {
                        read_frames(&compressed, key, &fetch, &mut visit)?;
                    }
                }
                None => self.read_archive(archive, &entries, &mut visit)?,
            }
        }
        Ok(())
    }

    /// Every entry of `snapshot`'s tree read from its holder's archive and checked, as
    /// [`Self::read_entries`] does, in memory that does not grow with the tree: the listing
    /// streams beside the archives it draws from, each read forward (see [`HolderArchive`]).
    /// `survey` sees each entry once, in listing order, before it is visited. The archives
    /// that fit in `budget` ([`OPEN_BUDGET`]) are read in one pass, in the order the listing
    /// first draws from them; the entries of any further ones are visited in later passes,
    /// which read the listing again. Every pass checks the tree as it streams
    /// ([`TreeCheck`]): nothing is visited past an entry a restore may not write, and a
    /// listing that fails its digest fails as its last entry (or as the reason for an entry
    /// the check refused). Returns the first pass's check, which saw every entry.
    pub(crate) fn read_streamed<S, F>(
        &self,
        snapshot: &Snapshot,
        budget: u64,
        mut survey: S,
        mut visit: F,
    ) -> Result<TreeCheck, Error>
    where
        S: FnMut(&FileEntry) -> Result<(), Error>,
        F: FnMut(TreeEntry<'_>) -> Result<(), Error>,
    {
        let archives: HashMap<SnapshotId, ObjectInfo> = self.repo.archives(&snapshot.set)?;
        let mut done: HashSet<SnapshotId> = HashSet::new();
        // The first pass's check, which saw every entry.
        let mut first: Option<TreeCheck> = None;
        // Each pass has the chain's small archives fetched ahead as soon as the listing's
        // chain is known (a deferred pass: again, the ones it did not open are gone).
        let ahead = |listings: &[&str]| self.prefetch_archives(listings, &archives);
        loop {
            let mut open: Vec<(SnapshotId, HolderArchive)> = Vec::new();
            let mut held = 0;
            let mut deferred = false;
            let mut entries = self.checked_listing_and(snapshot, &ahead)?;
            for entry in entries.by_ref() {
                let entry = entry?;
                if first.is_none() {
                    survey(&entry)?;
                }
                let Some(holder) = entry.holder.as_ref().filter(|h| !done.contains(*h)) else {
                    continue;
                };
                let index = match open.iter().position(|(h, _)| h == holder) {
                    Some(index) => index,
                    None => {
                        let archive = archives.get(holder).ok_or_else(|| Error::MissingHolder {
                            snapshot: snapshot.id.to_string(),
                            holder: holder.to_string(),
                        })?;
                        let memory = archive.size.min(ARCHIVE_MEMORY);
                        if !open.is_empty() && held + memory > budget {
                            deferred = true;
                            continue;
                        }
                        held += memory;
                        open.push((
                            holder.clone(),
                            HolderArchive::open(self, &archive.key, archive.size)?,
                        ));
                        open.len() - 1
                    }
                };
                open[index].1.visit(&entry, &mut visit)?;
            }
            for (holder, archive) in open {
                archive.finish()?;
                done.insert(holder);
            }
            if !deferred {
                return Ok(first.unwrap_or(entries.tree));
            }
            first.get_or_insert(entries.tree);
        }
    }

    /// Start fetching, all at once, the small archives of the snapshots of a delta chain's
    /// `listings`: a tree drawn from such a chain opens them one after another as their
    /// entries come up, each a round trip from a remote store.
    fn prefetch_archives(
        &self,
        listings: &[&str],
        archives: &HashMap<SnapshotId, ObjectInfo>,
    ) -> Ahead {
        let chain = listings.iter().filter_map(|listing| {
            let (_, id, _) = layout::parse_data_key(listing)?;
            let archive = archives.get(&SnapshotId::parse(id).ok()?)?;
            Some((archive.key.clone(), archive.size))
        });
        self.repo.prefetch(chain)
    }

    /// `snapshot`'s listing streamed through a [`TreeCheck`].
    pub(crate) fn checked_listing(&self, snapshot: &Snapshot) -> Result<CheckedListing, Error> {
        self.checked_listing_and(snapshot, &|_| Ahead::default())
    }

    /// [`Self::checked_listing`], with `ahead` called as in [`Self::listing_stream_and`].
    fn checked_listing_and(
        &self,
        snapshot: &Snapshot,
        ahead: &dyn Fn(&[&str]) -> Ahead,
    ) -> Result<CheckedListing, Error> {
        let stream = self.listing_stream_and(snapshot, ahead)?;
        Ok(CheckedListing {
            tree: TreeCheck::new(&snapshot.id),
            entries: stream.entries,
            _ahead: stream.ahead,
        })
    }

    /// The entries `snapshot`'s tree draws from its own archive (`key`), read from it and
    /// checked as [`Self::read_streamed`] does, beside the streamed listing; the archive is
    /// read to its end. Returns how many entries matched.
    pub(crate) fn read_own_archive(
        &self,
        snapshot: &Snapshot,
        object: &ObjectRef,
    ) -> Result<u64, Error> {
        let mut archive = HolderArchive::open(self, &object.key, object.size)?;
        let mut matched = 0;
        for entry in self.checked_listing(snapshot)? {
            let entry = entry?;
            if entry.holder.as_ref() == Some(&snapshot.id) {
                archive.visit(&entry, &mut |_| Ok(()))?;
                matched += 1;
            }
        }
        archive.finish()?;
        Ok(matched)
    }

    /// Stream `archive` whole, visiting `entries` (the holder's, in listing order) as a merge
    /// (see [`HolderArchive`]).
    fn read_archive<F>(
        &self,
        archive: &ObjectInfo,
        entries: &[&FileEntry],
        visit: &mut F,
    ) -> Result<(), Error>
    where
        F: FnMut(TreeEntry<'_>) -> Result<(), Error>,
    {
        let mut archive = HolderArchive::open(self, &archive.key, archive.size)?;
        for entry in entries {
            archive.visit(entry, visit)?;
        }
        archive.finish()
    }

    /// The reads that fetch only the frames holding the files of `entries`, when the archive
    /// has a seek table, every file's offset is known, and that reads at most half the
    /// archive; else `None` (stream it whole). In a sealed repository they read the age
    /// chunks around those frames.
    fn frames_to_fetch<'e>(
        &self,
        archive: &ObjectInfo,
        entries: &[&'e FileEntry],
    ) -> Result<Option<(CompressedRanges<'_>, Vec<Fetch<'e>>)>, Error> {
        let key = archive.key.as_str();
        let footer = SeekTable::FOOTER as u64;
        if archive.size < footer {
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
        let Some(compressed) = self.repo.compressed_ranges(key, archive.size)? else {
            return Ok(None);
        };
        let size = compressed.len();
        if size < footer {
            return Ok(None);
        }
        let tail = compressed.read(size.saturating_sub(TAIL)..size)?;
        let Some(length) = tail
            .len()
            .checked_sub(SeekTable::FOOTER)
            .and_then(|at| SeekTable::length(&tail[at..]))
            .filter(|&l| l <= size)
        else {
            return Ok(None);
        };
        let bytes = match tail.len().checked_sub(length as usize) {
            Some(at) => Cow::Borrowed(&tail[at..]),
            None => Cow::Owned(compressed.read(size - length..size)?),
        };
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
        Ok(by_frames.then_some((compressed, fetches)))
    }
}

/// Fetch and decode one span of frames of the archive `key`, visiting its entries at their
/// offsets.
fn read_frames<F>(
    compressed: &CompressedRanges<'_>,
    key: &str,
    fetch: &Fetch<'_>,
    visit: &mut F,
) -> Result<(), Error>
where
    F: FnMut(TreeEntry<'_>) -> Result<(), Error>,
{
    let stored = compressed.open(fetch.span.stored.clone())?;
    let decoder = Decoder::new(stored).map_err(|source| Error::Frames {
        key: key.to_string(),
        span: fetch.span.stored.clone(),
        source,
    })?;
    let mut content = EntryCursor::new(decoder);
    for &(offset, entry) in &fetch.entries {
        let at = fetch.span.start + content.position();
        let Some(skip) = offset.checked_sub(at) else {
            return Err(Error::EntryMismatch {
                key: key.to_string(),
                path: entry.path.clone(),
                reason: format!("starts at {offset}, inside the entry before it"),
            });
        };
        content.skip(skip).map_err(|source| Error::Archive {
            key: key.to_string(),
            source,
        })?;
        let found = content
            .next(|item: ArchiveEntry<'_>| -> Result<(), Pass> {
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

/// A listing streamed through a [`TreeCheck`]: each entry is checked before it is handed
/// out, so nothing is used past an entry a restore may not write.
pub(crate) struct CheckedListing {
    /// The check of the entries handed out so far.
    pub(crate) tree: TreeCheck,
    entries: Box<dyn Iterator<Item = Result<FileEntry, strongbox_manifest::Error>> + Send>,
    /// What the caller has fetched ahead for reading the tree.
    _ahead: Ahead,
}

impl Iterator for CheckedListing {
    type Item = Result<FileEntry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let entry = match self.entries.next()? {
            Ok(entry) => entry,
            Err(e) => return Some(Err(e.into())),
        };
        Some(match self.tree.push(&entry) {
            Ok(()) => Ok(entry),
            // A listing that is not the one recorded is named as such, not by the first odd
            // entry in it: its digest is checked as it ends.
            Err(refused) => Err(match self.entries.find_map(Result::err) {
                Some(damaged) => damaged.into(),
                None => refused.into(),
            }),
        })
    }
}

/// One holder's archive, read forward beside the entries wanted from it, which come in
/// listing order as the archive holds them: each archive entry is the next one wanted, or
/// one no longer wanted (changed or removed later in the chain, or not asked for), which
/// sorts before it. An archive entry that sorts after the wanted one means it is missing.
struct HolderArchive {
    key: String,
    entries: EntryCursor<'static>,
}

impl HolderArchive {
    /// Open the archive at `key` of `size` stored bytes.
    fn open(reader: &Reader, key: &str, size: u64) -> Result<Self, Error> {
        // The holder's record may be forgotten while its archive is kept: the entries'
        // digests, not the archive's, are what is checked.
        let stream = reader.repo.open_object(key, None)?;
        // A small archive (a chain's incremental) is decoded as it is read: a read-ahead
        // thread would only add its buffers, fresh memory for each of the chain's archives,
        // open at once. So is one whose ranges the runtime's threads fetch ahead (a remote
        // archive of more than one range): a thread decoding it ahead as well copied every
        // byte once more and competed for the cores (docs/storage.md: restores of the media
        // tree from s3s-fs, 10 of each, 3.47 s with it and 3.06 s without).
        let entries = match size > PIPELINED_FROM && !stream.fetched_ahead() {
            true => EntryCursor::pipelined(stream).map_err(|source| Error::Archive {
                key: key.to_string(),
                source,
            })?,
            false => EntryCursor::new(stream),
        };
        Ok(HolderArchive {
            key: key.to_string(),
            entries,
        })
    }

    /// Read on to `entry` and visit it.
    fn visit<F>(&mut self, entry: &FileEntry, visit: &mut F) -> Result<(), Error>
    where
        F: FnMut(TreeEntry<'_>) -> Result<(), Error>,
    {
        let key = self.key.as_str();
        let missing = || Error::MissingEntry {
            key: key.to_string(),
            path: entry.path.clone(),
        };
        let mut found = false;
        while !found {
            let more = self
                .entries
                .next(|item: ArchiveEntry<'_>| -> Result<(), Pass> {
                    match entry.path.as_str().cmp(item.path) {
                        Ordering::Equal => {
                            found = true;
                            visit_entry(entry, item, key, visit)
                        }
                        // Past where the wanted entry would be: no need to read on.
                        Ordering::Less => Err(Pass::Other(missing())),
                        Ordering::Greater => Ok(()),
                    }
                })
                .map_err(|e| e.into_error(key))?;
            if !more {
                return Err(missing());
            }
        }
        Ok(())
    }

    /// Read the rest of the archive, so that all of it is decoded and checked.
    fn finish(mut self) -> Result<(), Error> {
        let key = self.key.as_str();
        while self
            .entries
            .next(|_| Ok::<_, strongbox_archive::Error>(()))
            .map_err(|source| Error::Archive {
                key: key.to_string(),
                source,
            })?
        {}
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

    /// The files listing as a stream of entries, in listing order (see [`Reader::entries`]).
    pub fn entries(&self) -> Result<impl Iterator<Item = Result<FileEntry, Error>> + Send, Error> {
        self.reader.entries(self.snapshot)
    }

    /// Read every entry of the snapshot's tree from its archive, each checked against the
    /// listing and a file against its digest, without holding the listing: it streams beside
    /// the archives. `survey` sees each entry, in listing order, before `visit` does (a
    /// restore creates directories there); `visit` gets them with their data, in listing
    /// order within each archive. A tree drawing from more than a few archives is read in
    /// more than one pass over the listing.
    pub fn read_all<S, F>(&self, survey: S, visit: F) -> Result<(), Error>
    where
        S: FnMut(&FileEntry) -> Result<(), Error>,
        F: FnMut(TreeEntry<'_>) -> Result<(), Error>,
    {
        self.reader
            .read_streamed(self.snapshot, OPEN_BUDGET, survey, visit)
            .map(drop)
    }

    /// Read the entries of `selection` (a listing of some of the snapshot's entries, such as
    /// [`Includes::select`](strongbox_manifest::Includes::select) takes) from their archives,
    /// each checked against the listing and a file against its digest; see [`TreeEntry`]. For
    /// a visitor that wants regular files: where an archive's seek table shows that fetching
    /// only the frames around the selected files reads less, only those are fetched, and that
    /// archive's directory and link entries are not visited (the listing holds all there is
    /// of them). A whole tree reads with [`Self::read_all`].
    pub fn read_files<F>(&self, selection: &Listing, visit: F) -> Result<(), Error>
    where
        F: FnMut(TreeEntry<'_>) -> Result<(), Error>,
    {
        self.reader
            .read_entries(&self.snapshot.set, selection, visit)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use strongbox_manifest::SnapshotKind;
    use strongbox_storage::{Location, Repository};

    use super::OPEN_BUDGET;
    use crate::{Engine, FilesSpec, SetSpec, SourceSpec};

    /// `d/b` changed in the first incremental and `d/a` in the second: the listing draws
    /// from the full archive (`d`), the second's (`d/a`), the first's (`d/b`), then the full
    /// one again (`d/c`).
    fn chain(work: &Path) -> (Engine, strongbox_manifest::Snapshot) {
        let repo = Location::Local(work.join("repo"));
        Repository::init(&repo).unwrap();
        let engine = Engine::new(Repository::open(&repo).unwrap());
        let src = work.join("src");
        fs::create_dir_all(src.join("d")).unwrap();
        for name in ["a", "b", "c"] {
            fs::write(src.join("d").join(name), name).unwrap();
        }
        let spec = |kind| {
            let mut files = FilesSpec::new(&src);
            files.kind = Some(kind);
            SetSpec::new("media", SourceSpec::Files(files))
        };
        let mut last = engine.backup(&spec(SnapshotKind::Full)).unwrap();
        for name in ["b", "a"] {
            // Past the file system's timestamp granularity, so the change is seen.
            std::thread::sleep(std::time::Duration::from_millis(20));
            fs::write(src.join("d").join(name), format!("{name} changed")).unwrap();
            last = engine.backup(&spec(SnapshotKind::Incremental)).unwrap();
        }
        (engine, last)
    }

    #[test]
    fn archives_that_do_not_fit_at_once_are_read_in_later_passes_in_the_order_first_drawn() {
        let work = tempfile::tempdir().unwrap();
        let (engine, last) = chain(work.path());
        let all = ["d", "d/a", "d/b", "d/c"];
        for (budget, order) in [
            (OPEN_BUDGET, all),
            // One archive a pass: the full one, then the second's, then the first's.
            (0, ["d", "d/c", "d/a", "d/b"]),
        ] {
            let (mut surveyed, mut visited) = (Vec::new(), Vec::new());
            engine
                .read_streamed(
                    &last,
                    budget,
                    |entry| {
                        surveyed.push(entry.path.clone());
                        Ok(())
                    },
                    |item| {
                        let mut data = String::new();
                        item.data.read_to_string(&mut data).unwrap();
                        visited.push((item.entry.path.clone(), data));
                        Ok(())
                    },
                )
                .unwrap();
            assert_eq!(surveyed, all, "budget {budget}: each entry surveyed once");
            let paths: Vec<&str> = visited.iter().map(|(p, _)| p.as_str()).collect();
            assert_eq!(paths, order, "budget {budget}");
            let data: Vec<&str> = visited.iter().map(|(_, d)| d.as_str()).collect();
            let expected = match budget {
                0 => ["", "c", "a changed", "b changed"],
                _ => ["", "a changed", "b changed", "c"],
            };
            assert_eq!(data, expected, "budget {budget}");
        }
    }
}
