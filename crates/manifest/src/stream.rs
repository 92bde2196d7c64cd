//! Listings a piece at a time: read as they are parsed, resolved through deltas and written
//! from an iterator, so a backup's memory does not grow with the tree.

use std::cmp::Ordering;
use std::collections::btree_map::{self, BTreeMap};
use std::io::{BufReader, Read, Write};
use std::iter::Peekable;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer as _;

use crate::bounded::{BoundedStrings, MAX_STRING};

use crate::listing::{DELTA_FORMAT, LISTING_FORMAT, LISTING_VERSION};
use crate::{Delta, Error, FileEntry, Listing, SnapshotId};

/// Entries parsed per message from the parsing thread.
const BATCH: usize = 4096;
/// Batches queued ahead of the consumer.
const QUEUED: usize = 4;

/// What a listing says before its entries.
#[derive(Debug, Clone)]
pub struct ListingHeader {
    /// The snapshot it belongs to.
    pub snapshot: SnapshotId,
    /// Set for a delta listing.
    pub delta: Option<Delta>,
}

enum Message {
    Header(ListingHeader),
    Entries(Vec<FileEntry>),
    /// The listing was read to its end and is whole.
    End,
    Failed(serde_json::Error),
}

/// The entries of one stored listing (whole or delta), parsed on a thread while they are
/// read: memory holds a few thousand entries, not the listing.
pub struct ListingReader {
    key: String,
    header: ListingHeader,
    messages: Receiver<Message>,
    batch: std::vec::IntoIter<FileEntry>,
    done: bool,
}

impl std::fmt::Debug for ListingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListingReader")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ListingReader {
    /// Start parsing the listing JSON `reader` yields (read from `key`); returns once its
    /// header (`format`, `version`, `snapshot`, any `delta`) is read. Entries stream when
    /// the header comes first, as strongbox writes it; otherwise they are read whole first.
    pub fn new(key: &str, reader: impl Read + Send + 'static) -> Result<Self, Error> {
        let (send, messages) = sync_channel(QUEUED);
        std::thread::Builder::new()
            .name("listing-parse".into())
            .spawn(move || parse(reader, &send))
            .map_err(|source| Error::Parser {
                key: key.to_string(),
                source,
            })?;
        let header = match messages.recv() {
            Ok(Message::Header(header)) => header,
            Ok(Message::Failed(source)) => return Err(undecoded(key, source)),
            Ok(Message::Entries(_) | Message::End) | Err(_) => {
                return Err(corrupt(key, "it ended before its entries".to_string()))
            }
        };
        Ok(ListingReader {
            key: key.to_string(),
            header,
            messages,
            batch: Vec::new().into_iter(),
            done: false,
        })
    }

    /// The snapshot and delta the listing declares.
    pub fn header(&self) -> &ListingHeader {
        &self.header
    }

    /// Read the rest into a [`Listing`].
    pub fn collect_listing(self) -> Result<Listing, Error> {
        let header = self.header.clone();
        let entries = self.collect::<Result<Vec<_>, _>>()?;
        Ok(match header.delta {
            Some(delta) => Listing::new_delta(header.snapshot, delta, entries),
            None => Listing::new(header.snapshot, entries),
        })
    }
}

impl Iterator for ListingReader {
    type Item = Result<FileEntry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.batch.next() {
                return Some(Ok(entry));
            }
            if self.done {
                return None;
            }
            match self.messages.recv() {
                Ok(Message::Entries(batch)) => self.batch = batch.into_iter(),
                Ok(Message::Failed(source)) => {
                    self.done = true;
                    return Some(Err(undecoded(&self.key, source)));
                }
                Ok(Message::End) => self.done = true,
                // Only a parser that died mid-way hangs up without a last word: never take
                // what it sent for the whole listing.
                Ok(Message::Header(_)) | Err(_) => {
                    self.done = true;
                    return Some(Err(corrupt(&self.key, "its parser stopped".to_string())));
                }
            }
        }
    }
}

fn undecoded(key: &str, source: serde_json::Error) -> Error {
    Error::Decode {
        what: "listing",
        key: key.to_string(),
        source,
    }
}

fn corrupt(key: &str, reason: String) -> Error {
    Error::Corrupt {
        what: "listing",
        key: key.to_string(),
        reason,
    }
}

/// The parsing thread: header, batches of entries, and a failure if there is one. A closed
/// channel (the reader dropped) stops it at the next batch.
fn parse(reader: impl Read, send: &SyncSender<Message>) {
    // Small: std zeroes the whole buffer on its first fill, and a chain has a listing each.
    let reader = BoundedStrings::new(reader, MAX_STRING);
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(64 << 10, reader));
    let parsed = de.deserialize_map(Top { send }).and_then(|()| de.end());
    // A hung-up receiver is not a failure anyone waits for.
    let _ = send.send(match parsed {
        Ok(()) => Message::End,
        Err(e) => Message::Failed(e),
    });
}

struct Top<'a> {
    send: &'a SyncSender<Message>,
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a strongbox files listing")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut format = None::<String>;
        let mut version = 1;
        let mut snapshot = None::<SnapshotId>;
        let mut delta = None::<Delta>;
        let mut streamed = false;
        let mut buffered = None::<Vec<FileEntry>>;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "format" => format = Some(map.next_value()?),
                "version" => version = map.next_value()?,
                "snapshot" => snapshot = Some(map.next_value()?),
                "delta" => delta = Some(map.next_value()?),
                // Streamed once the header is known, as strongbox writes it; a listing
                // whose keys come in another order (re-serialized by some tool) is read whole.
                "entries" if header_known(format.as_deref(), snapshot.as_ref(), delta.as_ref()) => {
                    let header =
                        check_header(format.as_deref(), version, snapshot.clone(), delta.clone())
                            .map_err(A::Error::custom)?;
                    if self.send.send(Message::Header(header)).is_err() {
                        return Ok(());
                    }
                    map.next_value_seed(Entries { send: self.send })?;
                    streamed = true;
                }
                "entries" => buffered = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let header =
            check_header(format.as_deref(), version, snapshot, delta).map_err(A::Error::custom)?;
        if streamed {
            return Ok(());
        }
        let entries = buffered.ok_or_else(|| A::Error::missing_field("entries"))?;
        if self.send.send(Message::Header(header)).is_ok() {
            for batch in entries.chunks(BATCH) {
                if self.send.send(Message::Entries(batch.to_vec())).is_err() {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Whether the header says all it must before the entries can stream.
fn header_known(
    format: Option<&str>,
    snapshot: Option<&SnapshotId>,
    delta: Option<&Delta>,
) -> bool {
    snapshot.is_some()
        && (format == Some(LISTING_FORMAT) || (format == Some(DELTA_FORMAT) && delta.is_some()))
}

fn check_header(
    format: Option<&str>,
    version: u32,
    snapshot: Option<SnapshotId>,
    delta: Option<Delta>,
) -> Result<ListingHeader, String> {
    check_format(format, version, delta.as_ref())?;
    let snapshot = snapshot.ok_or("it names no snapshot")?;
    Ok(ListingHeader { snapshot, delta })
}

/// A listing's format, version and delta agree, and this strongbox reads them.
pub(crate) fn check_format(
    format: Option<&str>,
    version: u32,
    delta: Option<&Delta>,
) -> Result<(), String> {
    match (format, delta) {
        (Some(LISTING_FORMAT), None) | (Some(DELTA_FORMAT), Some(_)) => {}
        (Some(LISTING_FORMAT), Some(_)) => return Err("a whole listing with a delta".into()),
        (Some(DELTA_FORMAT), None) => return Err("a delta listing without its delta".into()),
        (Some(other), _) => return Err(format!("unknown format {other:?}")),
        (None, _) => return Err("it has no format".into()),
    }
    if version > LISTING_VERSION {
        return Err(format!(
            "version {version} is newer than this strongbox reads ({LISTING_VERSION}); upgrade \
             strongbox"
        ));
    }
    Ok(())
}

struct Entries<'a> {
    send: &'a SyncSender<Message>,
}

impl<'de> DeserializeSeed<'de> for Entries<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the listing's entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(entry) = seq.next_element::<FileEntry>()? {
            batch.push(entry);
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if self.send.send(Message::Entries(full)).is_err() {
                    return Err(A::Error::custom("the reader went away"));
                }
            }
        }
        if !batch.is_empty() {
            let _ = self.send.send(Message::Entries(batch));
        }
        Ok(())
    }
}

/// Deltas folded together, newest first: for each path they mention, the entry it has at
/// the newest of them (`None`: removed).
#[derive(Debug, Default)]
pub struct Overlay {
    paths: BTreeMap<String, Option<FileEntry>>,
}

impl Overlay {
    /// Fold in a delta older than every delta folded so far: only the paths no newer delta
    /// mentions take its word.
    pub fn add_older(&mut self, removed: &[String], entries: impl IntoIterator<Item = FileEntry>) {
        for path in removed {
            self.paths.entry(path.clone()).or_insert(None);
        }
        for entry in entries {
            if let btree_map::Entry::Vacant(slot) = self.paths.entry(entry.path.clone()) {
                slot.insert(Some(entry));
            }
        }
    }

    /// The whole tree: `base` (a whole listing's entries, in listing order) with the
    /// overlay applied, in listing order.
    pub fn over<I>(self, base: I) -> Applied<I::IntoIter>
    where
        I: IntoIterator<Item = Result<FileEntry, Error>>,
    {
        Applied {
            base: base.into_iter().peekable(),
            overlay: self.paths.into_iter().peekable(),
        }
    }
}

/// An [`Overlay`] applied to a base listing's entries.
pub struct Applied<I: Iterator<Item = Result<FileEntry, Error>>> {
    base: Peekable<I>,
    overlay: Peekable<btree_map::IntoIter<String, Option<FileEntry>>>,
}

impl<I: Iterator<Item = Result<FileEntry, Error>>> Iterator for Applied<I> {
    type Item = Result<FileEntry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.base.peek(), self.overlay.peek()) {
                (Some(Err(_)), _) | (_, None) => return self.base.next(),
                (None, Some(_)) => Ordering::Less,
                (Some(Ok(base)), Some((path, _))) => path.as_str().cmp(base.path.as_str()),
            };
            match order {
                Ordering::Greater => return self.base.next(),
                // The overlay's word replaces the base's entry (or removes it).
                Ordering::Equal => drop(self.base.next()),
                Ordering::Less => {}
            }
            if let Some((_, Some(entry))) = self.overlay.next() {
                return Some(Ok(entry));
            }
        }
    }
}

/// Write a whole listing of `snapshot` whose entries (in listing order) come from an
/// iterator, so neither they nor the JSON text are held whole.
pub fn write_whole_listing(
    snapshot: &SnapshotId,
    entries: impl IntoIterator<Item = FileEntry>,
    out: impl Write,
) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    write!(
        out,
        r#"{{"format":"{LISTING_FORMAT}","version":{},"snapshot":"{snapshot}","entries":["#,
        crate::FORMAT_VERSION
    )?;
    for (i, entry) in entries.into_iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut out, &entry)?;
    }
    out.write_all(b"]}")?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileType;

    fn entry(path: &str, size: u64) -> FileEntry {
        FileEntry {
            path: path.to_string(),
            kind: FileType::File,
            size,
            mode: 0o644,
            uid: None,
            gid: None,
            mtime: 0,
            sha256: Some("00".repeat(32)),
            target: None,
            holder: None,
            offset: None,
            ctime: 0,
            inode: 0,
        }
    }

    fn id(n: u32) -> SnapshotId {
        SnapshotId::parse(&format!("20250101T00000{n}Z-000000")).unwrap()
    }

    fn delta(base: u32, removed: &[&str]) -> Delta {
        Delta {
            base: id(base),
            key: format!("k{base}"),
            size: 1,
            sha256: String::new(),
            depth: 1,
            changes: 0,
            removed: removed.iter().map(|p| p.to_string()).collect(),
            further: Vec::new(),
        }
    }

    #[test]
    fn an_overlay_of_several_deltas_applies_the_newest_word_on_each_path() {
        // Base a b c d; delta 1 (older): removes b, changes c, adds e; delta 2 (newer):
        // brings b back, removes e, changes c again.
        let base = ["a", "b", "c", "d"].map(|p| Ok(entry(p, 1)));
        let mut overlay = Overlay::default();
        overlay.add_older(&["e".to_string()], [entry("b", 3), entry("c", 3)]);
        overlay.add_older(&["b".to_string()], [entry("c", 2), entry("e", 2)]);
        let tree: Vec<(String, u64)> = overlay
            .over(base)
            .map(|e| e.map(|e| (e.path, e.size)))
            .collect::<Result<_, _>>()
            .unwrap();
        let expected = [("a", 1), ("b", 3), ("c", 3), ("d", 1)];
        assert_eq!(tree, expected.map(|(p, s)| (p.to_string(), s)));
    }

    #[test]
    fn a_listing_read_as_a_stream_equals_the_listing_and_its_errors_name_the_key() {
        let mut listing = Listing::new(
            id(1),
            (0..10_000).map(|i| entry(&format!("f{i:05}"), i)).collect(),
        );
        let mut json = Vec::new();
        write_whole_listing(&id(1), listing.entries.iter().cloned(), &mut json).unwrap();
        let read = ListingReader::new("k", std::io::Cursor::new(json.clone())).unwrap();
        assert_eq!(read.header().snapshot, id(1));
        assert_eq!(read.collect_listing().unwrap(), listing);

        listing.delta = Some(delta(0, &["gone"]));
        listing.format = DELTA_FORMAT.into();
        listing.version = LISTING_VERSION;
        let mut delta_json = Vec::new();
        listing.write_json(&mut delta_json).unwrap();
        let read = ListingReader::new("k", std::io::Cursor::new(delta_json.clone())).unwrap();
        assert_eq!(read.collect_listing().unwrap(), listing);
        // Keys in another order (serde_json's Value sorts them): read whole, the same.
        let value: serde_json::Value = serde_json::from_slice(&delta_json).unwrap();
        let reordered = value.to_string().into_bytes();
        assert!(reordered.starts_with(br#"{"delta""#));
        let read = ListingReader::new("k", std::io::Cursor::new(reordered)).unwrap();
        assert_eq!(read.collect_listing().unwrap(), listing);

        let cut = json[..json.len() / 2].to_vec();
        let error = ListingReader::new("cut-key", std::io::Cursor::new(cut))
            .unwrap()
            .find_map(Result::err)
            .unwrap()
            .to_string();
        assert!(error.contains("cut-key"), "{error}");
        for (bad, reason) in [
            (r#"{"entries":[]}"#, "no format"),
            (
                r#"{"format":"strongbox-files","entries":[]}"#,
                "names no snapshot",
            ),
            (
                r#"{"entries":[],"format":"strongbox-files-delta","snapshot":"20250101T000001Z-000000"}"#,
                "without its delta",
            ),
            (
                r#"{"format":"x","snapshot":"20250101T000001Z-000000","entries":[]}"#,
                "unknown format",
            ),
            (
                r#"{"format":"strongbox-files","snapshot":"20250101T000001Z-000000"}"#,
                "entries",
            ),
        ] {
            let error = ListingReader::new("k", std::io::Cursor::new(bad.as_bytes().to_vec()))
                .and_then(ListingReader::collect_listing)
                .unwrap_err();
            let error = crate::error::chain(&error);
            assert!(error.contains(reason), "{bad}: {error}");
        }
    }
}
