use std::collections::HashMap;
use std::io::Read;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::{
    Attribute, Attributes, GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions,
    PutOptions, PutPayload, WriteMultipart,
};
use serde::{Deserialize, Serialize};
use strongbox_archive::Compression;
use strongbox_manifest::{ObjectRef, Snapshot, SnapshotId, FORMAT_VERSION};
use tokio::runtime::Runtime;

use crate::encryption::{self, Age, KeyHolder, KeyInfo, Unlock};
use crate::pipeline::{Envelope, ObjectReader, ObjectWriter, Plain, Verified};
use crate::prefetch::{Ahead, Prefetch};
use crate::ranged::{RangeBudget, Ranged};
use crate::ranges::CompressedRanges;
use crate::raw::{path, RawReader, RawWriter, Written};
use crate::store::Store;
use crate::upload::{AbortLogged, Uploading};
use crate::SecretString;
use crate::{layout, BackendError, Error, Location, StoreOptions};

/// The repository marker, `strongbox.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Always `strongbox`.
    pub format: String,
    /// Format version.
    pub version: u32,
    /// When the repository was created.
    pub created: DateTime<Utc>,
    /// `none`, or the encryption scheme of every object but the marker, the locks and the
    /// key files: `age`.
    pub encryption: String,
    /// With `age`: the repository recipient every object is encrypted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// Random repository id.
    pub id: String,
}

/// Size and modification time of an object, from a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the repository root.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification.
    pub modified: DateTime<Utc>,
}

/// Size of one ranged GET of a large remote object, how many one object may have requested
/// ahead of the one being read, and how many bytes received ahead the readers of one
/// repository may hold together (`RangeBudget`). Each GET waits for its first bytes (a
/// round trip; about 40 ms on s3s-fs, a delayed ACK), so speed needs many bytes requested
/// at once: a media restore from s3s-fs on loopback took 2.8-3.6 s with 4 MiB ranges 8
/// ahead, 2.5-2.9 s with 8 MiB ones. Memory is bounded by the bytes held, not by those
/// requested: 8 MiB ranges each held whole until read peaked at 110 MB, streamed within
/// 8 MiB held ahead at 58-60 MB (docs/storage.md).
const RANGE_PART: u64 = 8 * 1024 * 1024;
const RANGES_IN_FLIGHT: usize = 8;
const RANGE_BYTES_HELD: usize = 8 * 1024 * 1024;
/// A wrapped local repository writes each part straight into the staging file: small parts
/// keep the memory in flight small, and there is no request count to save.
const LOCAL_PART: usize = 1024 * 1024;
const LOCAL_PARTS_IN_FLIGHT: usize = 2;

/// Tuning of uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadOptions {
    /// Multipart part size in bytes (S3 needs at least 5 MiB).
    pub part_size: usize,
    /// Parts in flight at once per object; memory is bounded by `part_size × concurrency`.
    pub concurrency: usize,
    /// Storage class of data objects (e.g. `STANDARD_IA`); records, listings, locks and
    /// journals stay in the default class so that listing a repository stays cheap.
    pub storage_class: Option<String>,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            part_size: 8 * 1024 * 1024,
            concurrency: 4,
            storage_class: None,
        }
    }
}

/// Read access to a repository: everything `snapshots`, `ls`, `restore` and `verify` need.
/// Its one write is an entry in a set's run journal ([`RepoReader::put_run`]).
#[derive(Debug, Clone)]
pub struct RepoReader {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) rt: Arc<Runtime>,
    pub(crate) location: String,
    pub(crate) local_root: Option<PathBuf>,
    local_files: Option<Arc<LocalFileSystem>>,
    marker: Marker,
    envelope: Arc<dyn Envelope>,
    /// The id of the key file that unlocked the repository.
    unlocked_by: Option<String>,
    range_budget: Arc<RangeBudget>,
    prefetch: Arc<Prefetch>,
}

/// Read and write access to a repository.
#[derive(Debug, Clone)]
pub struct Repository {
    reader: RepoReader,
    upload: UploadOptions,
}

impl std::ops::Deref for Repository {
    type Target = RepoReader;
    fn deref(&self) -> &RepoReader {
        &self.reader
    }
}

fn runtime() -> Result<Arc<Runtime>, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("strongbox-io")
        .enable_all()
        .build()
        .map(Arc::new)
        .map_err(|source| Error::Runtime { source })
}

/// The envelope a marker asks for, or why this build cannot read the repository.
fn envelope(marker: &Marker, location: &str) -> Result<Arc<dyn Envelope>, Error> {
    if marker.version > FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            location: location.to_string(),
            found: marker.version,
            supported: FORMAT_VERSION,
        });
    }
    match marker.encryption.as_str() {
        "none" => Ok(Arc::new(Plain)),
        encryption::AGE => {
            let recipient = marker
                .recipient
                .as_deref()
                .ok_or_else(|| Error::NotARepository {
                    location: location.to_string(),
                    reason: format!("{} says \"age\" but has no recipient", layout::MARKER),
                })?;
            Ok(Arc::new(Age::new(
                encryption::parse_recipient(recipient)?,
                None,
                location,
            )))
        }
        other => Err(Error::UnsupportedEncryption {
            location: location.to_string(),
            encryption: other.to_string(),
        }),
    }
}

/// A record read from `key` must be the record of its key's set and id, and name only
/// objects of its own snapshot: a record planted or altered to point at another set's data
/// (which a restore or prune would then read or delete) is refused.
fn check_record(key: &str, snapshot: &Snapshot) -> Result<(), Error> {
    let corrupt = |reason: String| {
        Err(Error::Corrupt {
            key: key.to_string(),
            reason,
        })
    };
    if layout::snapshot_key(&snapshot.set, &snapshot.id) != key {
        return corrupt(format!(
            "it says it is snapshot {} of set {}",
            snapshot.id, snapshot.set
        ));
    }
    if snapshot.format_version > FORMAT_VERSION {
        return corrupt(format!(
            "it is of format version {}, newer than this strongbox reads ({FORMAT_VERSION}): upgrade strongbox",
            snapshot.format_version
        ));
    }
    // The id is made from the time: a time altered alone (one bit turns 2026 into 2036)
    // would make the oldest snapshot `latest`, and the one prune keeps.
    let named = snapshot.time.format("%Y%m%dT%H%M%SZ-").to_string();
    if !snapshot.id.as_str().starts_with(&named) {
        return corrupt(format!(
            "its time {} is not the time its id {} was made from",
            snapshot.time.to_rfc3339(),
            snapshot.id
        ));
    }
    let own = format!("{}/{}.", layout::data_prefix(&snapshot.set), snapshot.id);
    match snapshot
        .objects
        .iter()
        .find(|o| !o.key.starts_with(&own) || o.key[own.len()..].contains('/'))
    {
        Some(object) => corrupt(format!(
            "it names {}, which is not an object of this snapshot",
            object.key
        )),
        None => Ok(()),
    }
}

/// How every age file begins.
const AGE_MAGIC: &[u8] = b"age-encryption.org/";

/// Records per set [`RepoReader::check_sealing`] tries before it gives the set up.
const RECORDS_TRIED: usize = 3;

/// Snapshot records as read: those that parse, oldest first, and the damaged ones.
#[derive(Debug, Default)]
pub struct Records {
    /// The records that read, oldest first.
    pub snapshots: Vec<Snapshot>,
    /// The records that did not, by key.
    pub damaged: Vec<DamagedRecord>,
}

impl Records {
    /// The snapshots, or the error of the first damaged record.
    pub fn complete(self) -> Result<Vec<Snapshot>, Error> {
        match self.damaged.into_iter().next() {
            Some(damaged) => Err(damaged.error),
            None => Ok(self.snapshots),
        }
    }
}

/// A snapshot record that cannot be read: undecodable, unparsable, or not the record its
/// key names.
#[derive(Debug)]
pub struct DamagedRecord {
    /// Its key, `sets/<set>/snapshots/<id>.json`.
    pub key: String,
    /// The set its key names.
    pub set: String,
    /// The snapshot id its key names.
    pub id: String,
    /// Why it cannot be read.
    pub error: Error,
}

impl DamagedRecord {
    fn new(key: String, error: Error) -> Self {
        let (set, id) = layout::parse_snapshot_key(&key).unwrap_or_default();
        let (set, id) = (set.to_string(), id.to_string());
        DamagedRecord {
            key,
            set,
            id,
            error,
        }
    }
}

pub(crate) fn backend(
    operation: &'static str,
    key: &str,
    location: &str,
    source: object_store::Error,
) -> Error {
    match source {
        object_store::Error::NotFound { .. } => Error::NotFound {
            key: key.to_string(),
            location: location.to_string(),
        },
        object_store::Error::AlreadyExists { .. } => Error::AlreadyExists {
            key: key.to_string(),
            location: location.to_string(),
        },
        source => Error::Backend {
            operation,
            key: key.to_string(),
            location: location.to_string(),
            source: BackendError::new(source),
        },
    }
}

impl RepoReader {
    /// Open an existing repository for reading.
    pub fn open(location: &Location) -> Result<Self, Error> {
        Self::open_store(Store::connect(location, &StoreOptions::default())?)
    }

    /// Open a repository on a connected (perhaps wrapped) store.
    pub fn open_store(store: Store) -> Result<Self, Error> {
        let rt = runtime()?;
        let marker = read_marker(&store, &rt)?;
        let envelope = envelope(&marker, &store.location)?;
        Ok(RepoReader::new(store, rt, marker, envelope))
    }

    /// A reader of `store` whose marker is `marker`, not yet unlocked.
    fn new(store: Store, rt: Arc<Runtime>, marker: Marker, envelope: Arc<dyn Envelope>) -> Self {
        RepoReader {
            store: store.object_store,
            rt,
            location: store.location,
            local_root: store.local_root,
            local_files: store.local_files,
            marker,
            envelope,
            unlocked_by: None,
            range_budget: RangeBudget::new(RANGE_PART, RANGES_IN_FLIGHT, RANGE_BYTES_HELD),
            prefetch: Arc::default(),
        }
    }

    /// The key files (`keys/<id>.age`) with their ids, from one listing.
    fn key_files(&self) -> Result<Vec<(String, ObjectInfo)>, Error> {
        Ok(self
            .list(layout::KEYS)?
            .into_iter()
            .filter_map(|file| {
                let id = file
                    .key
                    .strip_prefix(layout::KEYS)?
                    .strip_suffix(".age")?
                    .to_string();
                Some((id, file))
            })
            .collect())
    }

    /// The key files of an encrypted repository, oldest first.
    pub fn keys(&self) -> Result<Vec<KeyInfo>, Error> {
        let mut keys = Vec::new();
        for (id, file) in self.key_files()? {
            let bytes = self.stored_bytes(&file.key)?;
            // A damaged file is listed as one: `key list` and `health` say so.
            let Ok(passphrase) = encryption::is_passphrase_file(&file.key, &bytes) else {
                keys.push(KeyInfo {
                    id,
                    kind: KeyInfo::DAMAGED,
                    recipient: None,
                    created: file.modified,
                });
                continue;
            };
            keys.push(KeyInfo {
                id,
                kind: if passphrase {
                    "passphrase"
                } else {
                    "recipient"
                },
                recipient: (!passphrase)
                    .then(|| encryption::key_file_recipient(&bytes))
                    .flatten(),
                created: file.modified,
            });
        }
        keys.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(keys)
    }

    /// What a command that reads does with the key it was given, if any: unlock an
    /// encrypted repository with it, refuse an encrypted repository without one (before any
    /// work, rather than at the first object) and a plain repository with one.
    pub fn with_key(self, unlock: Option<&Unlock>) -> Result<Self, Error> {
        match unlock {
            Some(unlock) => self.unlock(unlock),
            None if self.marker.encryption == encryption::AGE => Err(Error::KeyRequired {
                location: self.location.clone(),
            }),
            None => Ok(self),
        }
    }

    /// Unlock an encrypted repository for reading with an identity or passphrase that one
    /// of its key files opens with.
    pub fn unlock(mut self, unlock: &Unlock) -> Result<Self, Error> {
        let (id, identity) = self.repository_identity(unlock)?;
        let recipient = identity.to_public();
        self.envelope = Arc::new(Age::new(recipient, Some(identity), &self.location));
        self.unlocked_by = Some(id);
        Ok(self)
    }

    /// Check, before anything is written, that the repository is sealed as its marker
    /// says; anyone who can write to the storage can change the marker and the key files.
    /// - A marker saying "not encrypted" beside key files, or a newest record that is an
    ///   age file, would have the next backup write plaintext into an encrypted repository.
    /// - In an encrypted one, the newest records must open with the key unlocked: a key
    ///   file sealed to a reader's public recipient, holding a key someone else made, with
    ///   the marker's recipient changed to match, would have every later object sealed to
    ///   that key. Up to [`RECORDS_TRIED`] records per set are tried, the newest first, so
    ///   that a damaged one does not stop every backup; one that opens is enough.
    ///
    /// Costs a listing of the sets and, per set until one record opens, a listing of its
    /// records and their reads.
    pub fn check_sealing(&self) -> Result<(), Error> {
        let tampered = |reason: String| Error::Tampered {
            location: self.location.clone(),
            reason,
        };
        let sealed = self.sealed();
        if !sealed {
            if let Some((_, file)) = self.key_files()?.into_iter().next() {
                return Err(tampered(format!(
                    "{} says it is not encrypted, but it holds key files ({})",
                    layout::MARKER,
                    file.key
                )));
            }
        }
        let mut tried = None;
        for set in self.set_dirs()? {
            // A directory that is no set (a stray copy beside them) holds no evidence.
            if layout::check_set_name(&set).is_err() {
                continue;
            }
            let mut keys = self.snapshot_keys(Some(&set))?;
            keys.reverse();
            for key in keys.into_iter().take(RECORDS_TRIED) {
                let stored = match self.stored_bytes(&key) {
                    Ok(stored) => stored,
                    // Forgotten by a prune since the listing.
                    Err(Error::NotFound { .. }) => continue,
                    Err(e) => return Err(e),
                };
                if !sealed {
                    if stored.starts_with(AGE_MAGIC) {
                        return Err(tampered(format!(
                            "{} says it is not encrypted, but record {key} is an age file",
                            layout::MARKER
                        )));
                    }
                    // The newest plain record of one set is evidence enough.
                    return Ok(());
                }
                // Its header opening with the key is enough: a damaged payload is verify's
                // to find, and must not stop every write.
                if decoder(stored, &key, None, self.envelope.as_ref()).is_ok() {
                    return Ok(());
                }
                tried.get_or_insert(key);
            }
        }
        match tried {
            Some(key) => Err(tampered(format!(
                "no record opens with the repository key {} unlocked (the newest tried: {key}): \
                 {}'s recipient or the key files may have been replaced",
                self.unlocked_by
                    .as_deref()
                    .map(layout::key_file)
                    .unwrap_or_default(),
                layout::MARKER
            ))),
            None => Ok(()),
        }
    }

    /// The id of the key file that unlocked the repository, once unlocked.
    pub fn unlocked_by(&self) -> Option<&str> {
        self.unlocked_by.as_deref()
    }

    /// Find the repository identity in the key file that `unlock` opens; that file's id
    /// and the identity.
    fn repository_identity(
        &self,
        unlock: &Unlock,
    ) -> Result<(String, age::x25519::Identity), Error> {
        if self.marker.encryption != encryption::AGE {
            return Err(Error::NotEncrypted {
                location: self.location.clone(),
            });
        }
        let identities = encryption::identities(unlock)?;
        let passphrase = matches!(unlock, Unlock::Passphrase(_));
        let recipient = self.marker.recipient.clone().unwrap_or_default();
        let mut found: Option<(String, age::x25519::Identity)> = None;
        for (id, file) in self.key_files()? {
            let bytes = self.stored_bytes(&file.key)?;
            // A key file whose header does not parse opens for nobody: it must not lock out
            // the holders of the others. One that opens with this key and then proves cut or
            // altered is an error (it is this key's file).
            let header = match encryption::key_file_header(&file.key, &bytes) {
                Ok(header) => header,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a damaged key file");
                    continue;
                }
            };
            let opened = encryption::open_key_file(&file.key, header, &identities, passphrase)?;
            let Some(identity) = opened else {
                continue;
            };
            match &found {
                None if identity.to_public().to_string() != recipient => {
                    return Err(Error::Corrupt {
                        key: file.key,
                        reason: format!(
                            "holds an identity that is not the repository's ({} in {})",
                            recipient,
                            layout::MARKER
                        ),
                    });
                }
                // A passphrase file cannot be made without the passphrase: the first is it.
                None if passphrase => return Ok((id, identity)),
                None => found = Some((id, identity)),
                // Anyone can seal a key file to a reader's public recipient: two that open
                // for it and disagree mean one was planted (with the marker changed to it).
                Some((first, kept))
                    if kept.to_public().to_string() != identity.to_public().to_string() =>
                {
                    return Err(Error::Tampered {
                        location: self.location.clone(),
                        reason: format!(
                            "key files {} and {} both open with the identity given but hold \
                             different repository keys: one of them was planted",
                            layout::key_file(first),
                            file.key
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        found.ok_or_else(|| Error::NoMatchingKey {
            location: self.location.clone(),
            given: if passphrase { "passphrase" } else { "identity" },
        })
    }

    /// The location, for messages (never with credentials).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The directory of a local repository.
    pub fn local_root(&self) -> Option<&std::path::Path> {
        self.local_root.as_deref()
    }

    /// The repository marker.
    pub fn marker(&self) -> &Marker {
        &self.marker
    }

    /// An object's bytes as stored, before the pipeline opens and decompresses them.
    pub fn stored_bytes(&self, key: &str) -> Result<Bytes, Error> {
        // A fetch ahead that failed is made again below, as any read: it was only early.
        if let Some(Ok(bytes)) = self.prefetch.take(&self.rt, key) {
            return Ok(bytes);
        }
        self.rt
            .block_on(async {
                let result = self.store.get(&path(key)).await?;
                result.bytes().await
            })
            .map_err(|e| backend("reading", key, &self.location, e))
    }

    /// A reader of an object's stored bytes; `known` is its recorded size, which spares a
    /// HEAD (a wrong one fails the digest check at the end like any other damage).
    fn raw_reader(&self, key: &str, known: Option<u64>) -> Result<RawReader, Error> {
        // A fetch ahead that failed is made again below, as any read: it was only early.
        if let Some(Ok(bytes)) = self.prefetch.take(&self.rt, key) {
            return Ok(RawReader::fetched(self.rt.clone(), bytes));
        }
        if self.local_root.is_none() {
            // Remote: large objects come as ranges fetched several at a time.
            let size = match known {
                Some(size) => size,
                None => self.head(key)?.size,
            };
            if size > RANGE_PART {
                return Ok(self.ranged(key, 0..size));
            }
        }
        let result = self
            .rt
            .block_on(self.store.get(&path(key)))
            .map_err(|e| backend("reading", key, &self.location, e))?;
        let size = result.meta.size;
        RawReader::new(self.rt.clone(), result.payload, 0..size)
            .map_err(Error::stream("reading", key))
    }

    /// Whether [`Self::prefetch`] fetches anything: it does for a remote store, where each
    /// request waits its round trip, and not for a local directory.
    pub fn prefetches(&self) -> bool {
        self.local_root.is_none()
    }

    /// Start fetching `objects` (key and stored size) whole, several at once, for reads
    /// that will open them one after another ([`Self::open_object`],
    /// [`Self::check_object`]), which then take the fetched bytes and check them as any
    /// others, for as long as the returned [`Ahead`] is held. Small objects only, within a
    /// bound on the bytes held; the rest are read when opened. Nothing is fetched from a
    /// local directory ([`Self::prefetches`]).
    pub fn prefetch(&self, objects: impl IntoIterator<Item = (String, u64)>) -> Ahead {
        if !self.prefetches() {
            return Ahead::default();
        }
        self.prefetch.start(&self.rt, &self.store, objects)
    }

    /// The compressed stream of an object `stored_len` bytes long as stored, to read ranges
    /// of it without the rest, as a restore of a few files reads a few frames of an archive
    /// through its seek table; `None` where that is not possible (read it whole).
    pub fn compressed_ranges(
        &self,
        key: &str,
        stored_len: u64,
    ) -> Result<Option<CompressedRanges<'_>>, Error> {
        CompressedRanges::new(self, key, stored_len)
    }

    pub(crate) fn envelope(&self) -> &dyn Envelope {
        self.envelope.as_ref()
    }

    /// Bytes `range` of an object as stored, bypassing the pipeline: nothing is opened,
    /// decompressed or checked.
    pub(crate) fn read_stored_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, Error> {
        self.rt
            .block_on(self.store.get_range(&path(key), range))
            .map_err(|e| backend("reading", key, &self.location, e))
    }

    /// [`Self::read_stored_range`], streamed: a remote range comes in parts, several in
    /// flight.
    pub(crate) fn open_stored_range(
        &self,
        key: &str,
        range: Range<u64>,
    ) -> Result<Box<dyn Read + Send>, Error> {
        if self.local_root.is_none() {
            return Ok(Box::new(self.ranged(key, range)));
        }
        let options = GetOptions {
            range: Some(range.clone().into()),
            ..Default::default()
        };
        let result = self
            .rt
            .block_on(self.store.get_opts(&path(key), options))
            .map_err(|e| backend("reading", key, &self.location, e))?;
        let reader = RawReader::new(self.rt.clone(), result.payload, range)
            .map_err(Error::stream("reading", key))?;
        Ok(Box::new(reader))
    }

    /// A remote object's bytes `range`, fetched in parts of `RANGE_PART`, several in flight.
    fn ranged(&self, key: &str, range: Range<u64>) -> RawReader {
        RawReader::ranged(Ranged::new(
            self.rt.clone(),
            self.store.clone(),
            key,
            range,
            self.range_budget.clone(),
        ))
    }

    /// Whether stored bytes are sealed (encrypted): then they are read through the pipeline
    /// or [`Self::compressed_ranges`].
    pub fn sealed(&self) -> bool {
        self.marker.encryption == encryption::AGE
    }

    /// Stream an object through the pipeline: fetched, checked against `expected` (its
    /// record's size and SHA-256, when known) once read to the end, opened, decompressed.
    pub fn open_object(
        &self,
        key: &str,
        expected: Option<&ObjectRef>,
    ) -> Result<ObjectReader, Error> {
        ObjectReader::new(
            self.raw_reader(key, expected.map(|o| o.size))?,
            key,
            expected,
            self.envelope.as_ref(),
        )
    }

    /// Read a whole (small) object through the pipeline.
    pub fn read_object(&self, key: &str, expected: Option<&ObjectRef>) -> Result<Vec<u8>, Error> {
        let stored = self.stored_bytes(key)?;
        read_all(decoder(stored, key, expected, self.envelope.as_ref())?)
    }

    /// [`Self::open_object`] of an object always written compressed and recorded nowhere
    /// (WAL): the compression's checksum (or, encrypted, age's tags) is all that checks it,
    /// so an object that does not read as compressed is damaged.
    pub fn open_compressed(&self, key: &str) -> Result<ObjectReader, Error> {
        self.open_object(key, None)?.compressed()
    }

    /// [`Self::read_object`] of such an object (see [`Self::open_compressed`]).
    pub fn read_compressed(&self, key: &str) -> Result<Vec<u8>, Error> {
        let stored = self.stored_bytes(key)?;
        read_all(decoder(stored, key, None, self.envelope.as_ref())?.compressed()?)
    }

    /// Fetch an object and check its stored bytes against its record, without opening or
    /// decompressing them; returns the bytes read.
    pub fn check_object(&self, object: &ObjectRef) -> Result<u64, Error> {
        let mut verified = Verified::new(
            self.raw_reader(&object.key, Some(object.size))?,
            &object.key,
            Some(object),
        );
        std::io::copy(&mut verified, &mut std::io::sink())
            .map_err(Error::stream("checking", &object.key))
    }

    /// Size and time of one object.
    pub fn head(&self, key: &str) -> Result<ObjectInfo, Error> {
        let meta = self
            .rt
            .block_on(self.store.head(&path(key)))
            .map_err(|e| backend("reading", key, &self.location, e))?;
        Ok(ObjectInfo {
            key: key.to_string(),
            size: meta.size,
            modified: meta.last_modified,
        })
    }

    /// Every object below `prefix` (one paginated listing), sorted by key.
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, Error> {
        let prefix_path = path(prefix);
        let mut objects: Vec<ObjectInfo> = self
            .rt
            .block_on(
                self.store
                    .list(Some(&prefix_path))
                    .map_ok(|meta| ObjectInfo {
                        key: meta.location.to_string(),
                        size: meta.size,
                        modified: meta.last_modified,
                    })
                    .try_collect(),
            )
            .map_err(|e| backend("listing", prefix, &self.location, e))?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// The names under `sets/`, sorted: every set that holds any object (one listing by
    /// delimiter, whatever the sets hold).
    pub fn set_dirs(&self) -> Result<Vec<String>, Error> {
        let listed = self
            .rt
            .block_on(self.store.list_with_delimiter(Some(&path(layout::SETS))))
            .map_err(|e| backend("listing", layout::SETS, &self.location, e))?;
        let mut sets: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        sets.sort();
        Ok(sets)
    }

    /// The archive objects of `set` by snapshot id (one listing). Restores find holder
    /// archives here, so an archive outlives the record of the snapshot that wrote it for
    /// as long as a kept listing draws from it.
    pub fn archives(&self, set: &str) -> Result<HashMap<SnapshotId, ObjectInfo>, Error> {
        let objects = self.list(&layout::data_prefix(layout::check_set_name(set)?))?;
        Ok(objects
            .into_iter()
            .filter_map(|o| {
                let id = SnapshotId::parse(layout::archive_id(&o.key)?).ok()?;
                Some((id, o))
            })
            .collect())
    }

    /// Every snapshot record of `set` (or of every set), oldest first. One damaged record
    /// fails the whole read: for work that must know every snapshot (prune).
    pub fn snapshots(&self, set: Option<&str>) -> Result<Vec<Snapshot>, Error> {
        self.records(set)?.complete()
    }

    /// The snapshot records of `set` (or of every set): those that read, oldest first, and
    /// those that do not, so that one damaged record does not hide the others.
    pub fn records(&self, set: Option<&str>) -> Result<Records, Error> {
        let keys = self.snapshot_keys(set)?;
        self.read_records(keys)
    }

    /// The keys of the snapshot records of `set` (or of every set), from one listing, none
    /// read.
    pub fn snapshot_keys(&self, set: Option<&str>) -> Result<Vec<String>, Error> {
        let prefix = match set {
            Some(set) => layout::snapshots_prefix(layout::check_set_name(set)?),
            None => layout::SETS.to_string(),
        };
        Ok(self
            .list(&prefix)?
            .into_iter()
            .filter(|o| layout::parse_snapshot_key(&o.key).is_some())
            .map(|o| o.key)
            .collect())
    }

    /// The snapshot records at `keys` (as [`RepoReader::snapshot_keys`] lists them): a
    /// record that fails to decode, parse or match its key is damaged; a failure to fetch
    /// one fails the read.
    pub fn read_records(&self, keys: Vec<String>) -> Result<Records, Error> {
        let stored: Vec<(String, Bytes)> = self.rt.block_on(
            futures::stream::iter(keys.into_iter().map(|key| async move {
                let fetched = async { self.store.get(&path(&key)).await?.bytes().await };
                match fetched.await {
                    Ok(bytes) => Ok((key, bytes)),
                    Err(e) => Err(backend("reading", &key, &self.location, e)),
                }
            }))
            .buffer_unordered(16)
            .try_collect(),
        )?;
        let mut records = Records::default();
        for (key, stored) in stored {
            match self.parse_record(&key, stored) {
                Ok(snapshot) => records.snapshots.push(snapshot),
                Err(error) => records.damaged.push(DamagedRecord::new(key, error)),
            }
        }
        records
            .snapshots
            .sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
        records.damaged.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(records)
    }

    fn parse_record(&self, key: &str, stored: Bytes) -> Result<Snapshot, Error> {
        let json = read_all(decoder(stored, key, None, self.envelope.as_ref())?)?;
        let snapshot = Snapshot::from_json(key, &json)?;
        check_record(key, &snapshot)?;
        Ok(snapshot)
    }

    /// The archives of `set` kept for chains after their records were forgotten, as their
    /// records named them ([`layout::retained_key`]); none when the object is missing.
    pub fn retained(&self, set: &str) -> Result<Vec<ObjectRef>, Error> {
        let key = layout::retained_key(layout::check_set_name(set)?);
        match self.read_object(&key, None) {
            Ok(json) => serde_json::from_slice(&json).map_err(|e| Error::Corrupt {
                key,
                reason: e.to_string(),
            }),
            Err(Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Write an entry of `set`'s run journal (`sets/<set>/runs/<name>.json`), the one
    /// write of read-only work: a record of the attempt.
    pub fn put_run(&self, set: &str, name: &str, json: &[u8]) -> Result<Written, Error> {
        let key = layout::run_key(layout::check_set_name(set)?, name);
        self.put_small(&key, json, Compression::None, PutMode::Overwrite)
    }

    /// Write the health alerts' state ([`layout::ALERT_STATE`]), the other write `health`
    /// makes: what it last told the operator.
    pub fn put_alert_state(&self, json: &[u8]) -> Result<Written, Error> {
        self.put_small(
            layout::ALERT_STATE,
            json,
            Compression::None,
            PutMode::Overwrite,
        )
    }

    /// Where a small object's stored bytes go: on a local repository straight into a
    /// staging file, elsewhere a buffer stored with one PUT.
    fn small_sink(&self, key: &str, mode: PutMode) -> Result<RawWriter, Error> {
        if let Some(raw) = self.local_file(key, &mode)? {
            return Ok(raw);
        }
        Ok(RawWriter::buffer(
            key.to_string(),
            self.rt.clone(),
            self.store.clone(),
            mode,
        ))
    }

    /// A local repository's staging file for `key`, published as `mode` says; `None` for
    /// any other store (a wrapped local one included, so that the wrapper sees the write)
    /// or a mode a rename cannot honour.
    fn local_file(&self, key: &str, mode: &PutMode) -> Result<Option<RawWriter>, Error> {
        match (&self.local_files, mode) {
            (Some(files), PutMode::Create | PutMode::Overwrite) => {
                RawWriter::file(key.to_string(), files, mode.clone())
                    .map(Some)
                    .map_err(Error::stream("creating", key))
            }
            _ => Ok(None),
        }
    }

    /// `raw` behind the pipeline: compressed with `compression`, sealed by the repository's
    /// envelope, hashed.
    fn pipeline(
        &self,
        raw: RawWriter,
        key: &str,
        compression: Compression,
    ) -> Result<ObjectWriter, Error> {
        ObjectWriter::new(
            raw,
            key,
            &self.location,
            compression,
            self.envelope.as_ref(),
        )
    }

    /// A small object through the pipeline into its [`Self::small_sink`].
    fn small_writer(
        &self,
        key: &str,
        compression: Compression,
        mode: PutMode,
    ) -> Result<ObjectWriter, Error> {
        let raw = self.small_sink(key, mode)?;
        self.pipeline(raw, key, compression)
    }

    fn put_small(
        &self,
        key: &str,
        bytes: &[u8],
        compression: Compression,
        mode: PutMode,
    ) -> Result<Written, Error> {
        let mut writer = self.small_writer(key, compression, mode)?;
        std::io::Write::write_all(&mut writer, bytes).map_err(Error::stream("writing", key))?;
        writer.finish()
    }

    /// Store whole bytes without the pipeline: the marker and locks, which stay plain.
    pub(crate) fn put_plain(&self, key: &str, bytes: Bytes, mode: PutMode) -> Result<(), Error> {
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        self.rt
            .block_on(
                self.store
                    .put_opts(&path(key), PutPayload::from(bytes), opts),
            )
            .map(|_| ())
            .map_err(|e| backend("writing", key, &self.location, e))
    }

    /// Delete one object; a missing object is not an error.
    pub(crate) fn delete_raw(&self, key: &str) -> Result<(), Error> {
        match self.rt.block_on(self.store.delete(&path(key))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend("deleting", key, &self.location, e)),
        }
    }
}

/// A whole stored object through the pipeline's way out.
fn decoder(
    stored: Bytes,
    key: &str,
    expected: Option<&ObjectRef>,
    envelope: &dyn Envelope,
) -> Result<ObjectReader, Error> {
    let verified = Verified::new(std::io::Cursor::new(stored), key, expected);
    ObjectReader::from_stored(Box::new(verified), key, envelope)
}

fn read_all(mut reader: ObjectReader) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    reader
        .read_to_end(&mut out)
        .map_err(Error::stream("reading", reader.key()))?;
    Ok(out)
}

fn read_marker(store: &Store, rt: &Runtime) -> Result<Marker, Error> {
    let bytes = match rt.block_on(async {
        let result = store.object_store.get(&path(layout::MARKER)).await?;
        result.bytes().await
    }) {
        Ok(bytes) => bytes,
        Err(object_store::Error::NotFound { .. }) => {
            // A missing bucket also answers "not found": list it to tell the two apart.
            rt.block_on(store.object_store.list_with_delimiter(None))
                .map_err(|e| backend("listing", "/", &store.location, e))?;
            return Err(Error::NotARepository {
                location: store.location.clone(),
                reason: format!("no {} (run `strongbox init` first)", layout::MARKER),
            });
        }
        Err(e) => return Err(backend("reading", layout::MARKER, &store.location, e)),
    };
    serde_json::from_slice(&bytes)
        .ok()
        .filter(|m: &Marker| m.format == "strongbox")
        .ok_or_else(|| Error::NotARepository {
            location: store.location.clone(),
            reason: format!("{} is not a strongbox marker", layout::MARKER),
        })
}

/// Refuses a location that holds anything but a file system's `lost+found`: a repository
/// made among other files would take them for its own (prune deletes what it owns, backups
/// of the tree around it would hold it).
fn check_empty(store: &Store, rt: &Runtime) -> Result<(), Error> {
    let listed = rt
        .block_on(store.object_store.list_with_delimiter(None))
        .map_err(|e| backend("listing", "/", &store.location, e))?;
    let mut found: Vec<String> = listed
        .objects
        .iter()
        .map(|o| o.location.to_string())
        .chain(
            listed
                .common_prefixes
                .iter()
                .map(|p| format!("{p}/"))
                .filter(|p| p != "lost+found/"),
        )
        .collect();
    if found.iter().any(|f| f == layout::MARKER) {
        return Err(Error::AlreadyInitialized {
            location: store.location.clone(),
        });
    }
    if found.is_empty() {
        return Ok(());
    }
    found.sort();
    let more = match found.len() {
        n @ 4.. => format!(" and {} more", n - 3),
        _ => String::new(),
    };
    found.truncate(3);
    Err(Error::NotEmpty {
        location: store.location.clone(),
        found: format!("{}{more}", found.join(", ")),
    })
}

impl Repository {
    /// Create a repository. A local directory is created if missing; an existing
    /// repository is an error.
    pub fn init(location: &Location) -> Result<Self, Error> {
        Self::init_store(Store::create(location, &StoreOptions::default())?)
    }

    /// Create a repository on a connected (perhaps wrapped) store.
    pub fn init_store(store: Store) -> Result<Self, Error> {
        Self::create_marker(store, "none", None)
    }

    /// Create an encrypted repository: a fresh repository identity, its recipient in the
    /// marker, and one key file for each holder. The result is unlocked.
    pub fn init_store_encrypted(store: Store, holders: &[KeyHolder]) -> Result<Self, Error> {
        if holders.is_empty() {
            return Err(Error::InvalidKey {
                what: "the key holders".to_string(),
                reason: "an encrypted repository needs at least one recipient or passphrase"
                    .to_string(),
            });
        }
        holders.iter().try_for_each(KeyHolder::check)?;
        let identity = encryption::generate();
        let recipient = identity.to_public();
        let mut repo = Self::create_marker(store, encryption::AGE, Some(recipient.to_string()))?;
        for holder in holders {
            repo.write_key_file(&identity, holder)?;
        }
        repo.reader.envelope = Arc::new(Age::new(recipient, Some(identity), &repo.reader.location));
        Ok(repo)
    }

    /// Let one more reader in: one new key file, no data rewritten. Needs the repository
    /// unlocked; returns the key id.
    pub fn add_key(&self, holder: &KeyHolder) -> Result<String, Error> {
        holder.check()?;
        self.write_key_file(self.unlocked_identity()?, holder)
    }

    /// Delete one key file; the last one is refused, since without it nobody could read
    /// the repository again.
    pub fn remove_key(&self, id: &str) -> Result<(), Error> {
        self.encrypted()?;
        let keys = self.reader.keys()?;
        self.known_key(id, keys.iter().map(|k| k.id.as_str()))?;
        if !keys
            .iter()
            .any(|k| k.id != id && k.kind != KeyInfo::DAMAGED)
        {
            return Err(Error::LastKey {
                key: layout::key_file(id),
                location: self.reader.location.clone(),
            });
        }
        self.reader.delete_raw(&layout::key_file(id))
    }

    /// Change the passphrase of passphrase key `id`: its key file is replaced whole by one
    /// sealed with `new`; no data is rewritten. Needs the repository unlocked.
    pub fn change_passphrase(&self, id: &str, new: &SecretString) -> Result<(), Error> {
        let holder = KeyHolder::Passphrase(new.clone());
        holder.check()?;
        let files = self.reader.key_files()?;
        self.known_key(id, files.iter().map(|(k, _)| k.as_str()))?;
        let key = layout::key_file(id);
        let bytes = self.reader.stored_bytes(&key)?;
        if !encryption::is_passphrase_file(&key, &bytes)? {
            return Err(Error::InvalidKey {
                what: id.to_string(),
                reason: "it is a recipient key; only a passphrase key has a passphrase to change"
                    .to_string(),
            });
        }
        let sealed = holder.seal(self.unlocked_identity()?)?;
        self.reader
            .put_plain(&key, sealed.into(), PutMode::Overwrite)
    }

    /// Refuse `id` unless it is among the key ids `known`, naming them.
    fn known_key<'a>(&self, id: &str, known: impl Iterator<Item = &'a str>) -> Result<(), Error> {
        let known: Vec<&str> = known.collect();
        if known.contains(&id) {
            return Ok(());
        }
        Err(Error::UnknownKey {
            id: id.to_string(),
            known: known.join(", "),
            location: self.reader.location.clone(),
        })
    }

    /// The repository identity, which new key files seal; only once unlocked.
    fn unlocked_identity(&self) -> Result<&age::x25519::Identity, Error> {
        self.encrypted()?;
        self.reader
            .envelope
            .repository_identity()
            .ok_or_else(|| Error::KeyRequired {
                location: self.reader.location.clone(),
            })
    }

    /// Refuse key work in a repository without keys.
    fn encrypted(&self) -> Result<(), Error> {
        match self.reader.sealed() {
            true => Ok(()),
            false => Err(Error::Unencrypted {
                location: self.reader.location.clone(),
            }),
        }
    }

    /// Seal the repository identity for `holder` into a new key file; its id.
    fn write_key_file(
        &self,
        identity: &age::x25519::Identity,
        holder: &KeyHolder,
    ) -> Result<String, Error> {
        let id = hex::encode(rand::random::<[u8; 4]>());
        let sealed = holder.seal(identity)?;
        self.reader
            .put_plain(&layout::key_file(&id), sealed.into(), PutMode::Create)?;
        Ok(id)
    }

    fn create_marker(
        store: Store,
        encryption: &str,
        recipient: Option<String>,
    ) -> Result<Self, Error> {
        let marker = Marker {
            format: "strongbox".to_string(),
            version: FORMAT_VERSION,
            created: Utc::now(),
            encryption: encryption.to_string(),
            recipient,
            id: hex::encode(rand::random::<[u8; 8]>()),
        };
        let envelope = envelope(&marker, &store.location)?;
        let rt = runtime()?;
        check_empty(&store, &rt)?;
        let reader = RepoReader::new(store, rt, marker, envelope);
        let mut bytes = serde_json::to_vec_pretty(&reader.marker).expect("marker serializes");
        bytes.push(b'\n');
        match reader.put_plain(layout::MARKER, bytes.into(), PutMode::Create) {
            Ok(()) => Ok(Self::from_reader(reader)),
            Err(Error::AlreadyExists { .. }) => Err(Error::AlreadyInitialized {
                location: reader.location,
            }),
            Err(e) => Err(e),
        }
    }

    /// See [`RepoReader::with_key`]; then, as this repository will be written to, check
    /// that its records are sealed as its marker says ([`RepoReader::check_sealing`]).
    pub fn with_key(self, unlock: Option<&Unlock>) -> Result<Self, Error> {
        let reader = self.reader.with_key(unlock)?;
        reader.check_sealing()?;
        Ok(Repository {
            reader,
            upload: self.upload,
        })
    }

    /// Open an existing repository for writing.
    pub fn open(location: &Location) -> Result<Self, Error> {
        Ok(Self::from_reader(RepoReader::open(location)?))
    }

    /// Open a repository for writing on a connected (perhaps wrapped) store.
    pub fn open_store(store: Store) -> Result<Self, Error> {
        Ok(Self::from_reader(RepoReader::open_store(store)?))
    }

    /// Open a local repository, creating it first if its directory is missing or empty
    /// (what `backup` does with the default `./backups`); true when it was created, which
    /// the caller should say: a mistyped path or an unmounted disk would otherwise take the
    /// backups unnoticed. A directory holding anything else is never turned into a
    /// repository.
    pub fn open_or_init(
        location: &Location,
        options: &StoreOptions,
    ) -> Result<(Self, bool), Error> {
        let opened = Store::connect(location, options).and_then(Self::open_store);
        match (opened, location) {
            (
                Err(Error::NotARepository {
                    location: shown,
                    reason,
                }),
                Location::Local(dir),
            ) => {
                let empty = std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
                if !empty {
                    return Err(Error::NotARepository {
                        location: shown,
                        reason,
                    });
                }
                match Self::init_store(Store::create(location, options)?) {
                    Err(Error::AlreadyInitialized { .. }) => Err(Error::NotARepository {
                        location: shown,
                        reason,
                    }),
                    other => other.map(|repo| (repo, true)),
                }
            }
            (other, _) => other.map(|repo| (repo, false)),
        }
    }

    /// Write access on top of a reader.
    pub fn from_reader(reader: RepoReader) -> Self {
        Repository {
            reader,
            upload: UploadOptions::default(),
        }
    }

    /// Change upload tuning.
    pub fn with_upload_options(mut self, upload: UploadOptions) -> Self {
        self.upload = upload;
        self
    }

    /// The read-only view.
    pub fn as_reader(&self) -> &RepoReader {
        &self.reader
    }

    /// Start a streamed data object (an archive, a dump) through the pipeline: compressed,
    /// sealed, hashed and stored as it is written (to S3 in a multipart upload, in the
    /// configured storage class).
    pub fn create(&self, key: &str, compression: Compression) -> Result<ObjectWriter, Error> {
        // Locally straight into a staging file whose write-back starts as it fills. Through
        // object_store's local multipart upload every byte was copied once more, into parts
        // in fresh memory, and the closing fsync waited for the whole object: a full backup
        // of the media tree took 1.80-1.94 s that way, 1.40-1.57 s this way.
        let raw = match self.local_file(key, &PutMode::Overwrite)? {
            Some(raw) => raw,
            None => self.multipart(key)?,
        };
        self.pipeline(raw, key, compression)
    }

    /// A multipart upload of `key`: to S3, or to a local repository behind a wrapper (which
    /// then sees every part).
    fn multipart(&self, key: &str) -> Result<RawWriter, Error> {
        let (part_size, concurrency) = if self.local_root.is_some() {
            (LOCAL_PART, LOCAL_PARTS_IN_FLIGHT)
        } else {
            (self.upload.part_size, self.upload.concurrency.max(1))
        };
        let mut attributes = Attributes::new();
        if let Some(class) = self
            .upload
            .storage_class
            .as_ref()
            .filter(|_| self.local_root.is_none())
        {
            attributes.insert(Attribute::StorageClass, class.clone().into());
        }
        let opts = PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let upload = self
            .rt
            .block_on(self.store.put_multipart_opts(&path(key), opts))
            .map_err(|e| backend("writing", key, &self.location, e))?;
        let upload = WriteMultipart::new_with_chunk_size(AbortLogged::wrap(key, upload), part_size);
        let upload = Uploading::new(
            self.rt.clone(),
            upload,
            concurrency,
            self.local_root.is_some(),
        );
        Ok(RawWriter::upload(key.to_string(), upload))
    }

    /// Start a small object that is stored with one PUT once finished (a listing, a record);
    /// `PutMode::Create` fails if it exists.
    pub fn create_small(
        &self,
        key: &str,
        compression: Compression,
        mode: PutMode,
    ) -> Result<ObjectWriter, Error> {
        self.small_writer(key, compression, mode)
    }

    /// Store a whole (small) object through the pipeline.
    pub fn put(
        &self,
        key: &str,
        bytes: &[u8],
        compression: Compression,
        mode: PutMode,
    ) -> Result<Written, Error> {
        self.put_small(key, bytes, compression, mode)
    }

    /// Delete one object; a missing object is not an error.
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        self.delete_raw(key)
    }

    /// Remove what interrupted uploads left below `prefix` and older than `grace`: on a
    /// local repository the staging files (`<key>#<n>`) of a killed process, in `prefix`'s
    /// directory and those below it. (S3 keeps incomplete multipart uploads out of listings; a
    /// bucket lifecycle rule `AbortIncompleteMultipartUpload` collects them — see
    /// docs/storage.md.) Returns how many files were removed, and their bytes.
    pub fn remove_upload_leftovers(
        &self,
        prefix: &str,
        grace: Duration,
    ) -> Result<(u64, u64), Error> {
        match &self.reader.local_root {
            Some(root) => remove_staged(&root.join(prefix), grace),
            None => Ok((0, 0)),
        }
    }

    /// Replace the list of `set`'s retained archives ([`RepoReader::retained`]).
    pub fn put_retained(&self, set: &str, objects: &[ObjectRef]) -> Result<Written, Error> {
        let key = layout::retained_key(layout::check_set_name(set)?);
        let json = serde_json::to_vec_pretty(objects).expect("object refs serialize");
        self.put_small(&key, &json, Compression::None, PutMode::Overwrite)
    }

    /// Write a snapshot record (the commit point of a backup) with a conditional create.
    pub fn put_snapshot(&self, snapshot: &Snapshot) -> Result<Written, Error> {
        let key = layout::snapshot_key(&snapshot.set, &snapshot.id);
        self.put(
            &key,
            &snapshot.to_json(),
            Compression::None,
            PutMode::Create,
        )
    }
}

/// Remove the staging files (`#` in the name) older than `grace` in `dir` and below it;
/// how many, and their bytes.
fn remove_staged(dir: &std::path::Path, grace: Duration) -> Result<(u64, u64), Error> {
    let io = |operation, path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| Error::Io {
            operation,
            path,
            source,
        }
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(source) => return Err(io("listing", dir)(source)),
    };
    let mut removed = (0, 0);
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_dir() {
            let below = remove_staged(&entry.path(), grace)?;
            removed = (removed.0 + below.0, removed.1 + below.1);
            continue;
        }
        let stale = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= grace);
        if entry.file_name().to_string_lossy().contains('#') && stale {
            std::fs::remove_file(entry.path()).map_err(io("removing", &entry.path()))?;
            removed = (removed.0 + 1, removed.1 + meta.len());
        }
    }
    Ok(removed)
}
