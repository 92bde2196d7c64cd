use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::{
    Attribute, Attributes, BackoffConfig, ObjectStore, ObjectStoreExt, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, RetryConfig, WriteMultipart,
};
use serde::{Deserialize, Serialize};
use strongbox_manifest::{Snapshot, SnapshotId, FORMAT_VERSION};
use tokio::runtime::Runtime;

use crate::io::{path, ObjectReader, ObjectWriter};
use crate::{layout, Error, Location};

/// The repository marker, `strongbox.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Always `strongbox`.
    pub format: String,
    /// Format version.
    pub version: u32,
    /// When the repository was created.
    pub created: DateTime<Utc>,
    /// `none`, or the encryption scheme of every object but the marker.
    pub encryption: String,
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

/// Size of one ranged GET of a large remote object, and how many run at once.
const RANGE_PART: u64 = 8 * 1024 * 1024;
const RANGES_IN_FLIGHT: usize = 3;

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

/// Read access to a repository: everything `list`, `show`, `restore` and `verify` need.
#[derive(Debug, Clone)]
pub struct RepoReader {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) rt: Arc<Runtime>,
    pub(crate) location: String,
    pub(crate) marker: Option<Marker>,
    /// The directory of a local repository, where interrupted uploads leave staging files
    /// that object_store's listing does not show.
    pub(crate) local_root: Option<std::path::PathBuf>,
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
        .map_err(|source| Error::Io {
            operation: "starting the I/O runtime",
            path: String::new(),
            source,
        })
}

/// The object store behind a location (a local directory must exist), for wrapping it
/// (e.g. in a [`CountingStore`](crate::CountingStore)) before [`RepoReader::open_store`].
pub fn store_for(location: &Location) -> Result<Arc<dyn ObjectStore>, Error> {
    connect(location, false).map(|(store, _)| store)
}

fn connect(location: &Location, create_dir: bool) -> Result<(Arc<dyn ObjectStore>, String), Error> {
    let shown = location.to_string();
    let cloud = |result: object_store::Result<Arc<dyn ObjectStore>>, prefix: &str| {
        let store = result.map_err(|e| Error::InvalidLocation {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        Ok((with_prefix(store, prefix), shown.clone()))
    };
    match location {
        Location::Local(dir) => {
            if create_dir {
                std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                    operation: "creating repository directory",
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            if !dir.is_dir() {
                return Err(Error::NotARepository {
                    location: dir.display().to_string(),
                    reason: if dir.exists() {
                        "not a directory".to_string()
                    } else {
                        "no such directory".to_string()
                    },
                });
            }
            let store = LocalFileSystem::new_with_prefix(dir)
                .map_err(|source| backend("opening", "", &shown, source))?
                .with_automatic_cleanup(true)
                .with_fsync(true);
            Ok((Arc::new(store), dir.display().to_string()))
        }
        Location::Memory => Ok((Arc::new(InMemory::new()), shown)),
        Location::S3 { bucket, prefix } => cloud(
            AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry_config())
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            prefix,
        ),
        Location::Gcs { bucket, prefix } => cloud(
            GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry_config())
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            prefix,
        ),
        Location::Azure { container, prefix } => cloud(
            MicrosoftAzureBuilder::from_env()
                .with_container_name(container)
                .with_retry(retry_config())
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            prefix,
        ),
    }
}

/// Retries with exponential backoff for transient errors (5xx, timeouts, resets); an
/// unreachable endpoint fails after a few seconds, not minutes.
fn retry_config() -> RetryConfig {
    let max_retries = std::env::var("STRONGBOX_RETRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            base: 2.0,
        },
        max_retries,
        retry_timeout: Duration::from_secs(120),
    }
}

fn local_root(location: &Location) -> Option<std::path::PathBuf> {
    match location {
        Location::Local(dir) => Some(dir.clone()),
        _ => None,
    }
}

fn with_prefix(store: Arc<dyn ObjectStore>, prefix: &str) -> Arc<dyn ObjectStore> {
    if prefix.is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
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
            source: Box::new(source),
        },
    }
}

impl RepoReader {
    /// Open an existing repository for reading.
    pub fn open(location: &Location) -> Result<Self, Error> {
        let (store, display) = connect(location, false)?;
        let mut reader = Self::open_store(store, display)?;
        reader.local_root = local_root(location);
        Ok(reader)
    }

    /// Open a repository on a store built elsewhere (any `object_store` backend).
    pub fn open_store(store: Arc<dyn ObjectStore>, location: String) -> Result<Self, Error> {
        let mut reader = RepoReader {
            store,
            rt: runtime()?,
            location,
            marker: None,
            local_root: None,
        };
        reader.marker = Some(reader.read_marker()?);
        Ok(reader)
    }

    fn read_marker(&self) -> Result<Marker, Error> {
        let bytes = match self.get(layout::MARKER) {
            Ok(bytes) => bytes,
            Err(Error::NotFound { .. }) => {
                // A missing bucket also answers "not found": list it to tell the two apart.
                self.rt
                    .block_on(self.store.list_with_delimiter(None))
                    .map_err(|e| backend("listing", "/", &self.location, e))?;
                return Err(Error::NotARepository {
                    location: self.location.clone(),
                    reason: format!("no {} (run `strongbox init` first)", layout::MARKER),
                });
            }
            Err(e) => return Err(e),
        };
        let marker: Marker = serde_json::from_slice(&bytes)
            .ok()
            .filter(|m: &Marker| m.format == "strongbox")
            .ok_or_else(|| Error::NotARepository {
                location: self.location.clone(),
                reason: format!("{} is not a strongbox marker", layout::MARKER),
            })?;
        if marker.version > FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                location: self.location.clone(),
                found: marker.version,
                supported: FORMAT_VERSION,
            });
        }
        Ok(marker)
    }

    /// The location, for messages (never with credentials).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The repository marker.
    pub fn marker(&self) -> &Marker {
        self.marker
            .as_ref()
            .expect("opened repositories have a marker")
    }

    /// The underlying store, for wrappers and tests.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Read a whole (small) object.
    pub fn get(&self, key: &str) -> Result<Bytes, Error> {
        self.rt
            .block_on(async {
                let result = self.store.get(&path(key)).await?;
                result.bytes().await
            })
            .map_err(|e| backend("reading", key, &self.location, e))
    }

    /// Stream an object.
    pub fn reader(&self, key: &str) -> Result<ObjectReader, Error> {
        if self.local_root.is_none() {
            // Remote: large objects come as ranges fetched several at a time.
            let size = self.head(key)?.size;
            if size > RANGE_PART {
                return Ok(ObjectReader::ranged(
                    self.rt.clone(),
                    self.store.clone(),
                    key,
                    size,
                    RANGE_PART,
                    RANGES_IN_FLIGHT,
                ));
            }
        }
        let result = self
            .rt
            .block_on(self.store.get(&path(key)))
            .map_err(|e| backend("reading", key, &self.location, e))?;
        let size = result.meta.size;
        Ok(ObjectReader::new(self.rt.clone(), result.payload, size))
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

    /// Every snapshot record of `set` (or of every set), oldest first.
    pub fn snapshots(&self, set: Option<&str>) -> Result<Vec<Snapshot>, Error> {
        let prefix = match set {
            Some(set) => layout::snapshots_prefix(layout::check_set_name(set)?),
            None => layout::SETS.to_string(),
        };
        let keys: Vec<String> = self
            .list(&prefix)?
            .into_iter()
            .filter(|o| layout::parse_snapshot_key(&o.key).is_some())
            .map(|o| o.key)
            .collect();
        let records: Vec<(String, Bytes)> = self
            .rt
            .block_on(
                futures::stream::iter(keys.into_iter().map(|key| async move {
                    let bytes = self.store.get(&path(&key)).await?.bytes().await;
                    bytes.map(|b| (key, b))
                }))
                .buffer_unordered(16)
                .try_collect(),
            )
            .map_err(|e| backend("reading", &prefix, &self.location, e))?;
        let mut snapshots = records
            .iter()
            .map(|(key, bytes)| {
                Snapshot::from_json(key, bytes).map_err(|e| Error::Corrupt {
                    key: key.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        snapshots.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
        Ok(snapshots)
    }
}

impl Repository {
    /// Create a repository. A local directory is created if missing; an existing
    /// repository is an error.
    pub fn init(location: &Location) -> Result<Self, Error> {
        let (store, display) = connect(location, true)?;
        let mut repo = Self::init_store(store, display)?;
        repo.reader.local_root = local_root(location);
        Ok(repo)
    }

    /// Create a repository on a store built elsewhere.
    pub fn init_store(store: Arc<dyn ObjectStore>, location: String) -> Result<Self, Error> {
        let marker = Marker {
            format: "strongbox".to_string(),
            version: FORMAT_VERSION,
            created: Utc::now(),
            encryption: "none".to_string(),
            id: hex::encode(rand::random::<[u8; 8]>()),
        };
        let mut reader = RepoReader {
            store,
            rt: runtime()?,
            location,
            marker: None,
            local_root: None,
        };
        let mut bytes = serde_json::to_vec_pretty(&marker).expect("marker serializes");
        bytes.push(b'\n');
        let repo = Repository {
            reader: reader.clone(),
            upload: UploadOptions::default(),
        };
        match repo.put(layout::MARKER, bytes.into(), PutMode::Create) {
            Ok(()) => {}
            Err(Error::AlreadyExists { .. }) => {
                return Err(Error::AlreadyInitialized {
                    location: reader.location,
                })
            }
            Err(e) => return Err(e),
        }
        reader.marker = Some(marker);
        Ok(Repository {
            reader,
            upload: UploadOptions::default(),
        })
    }

    /// Open an existing repository for writing.
    pub fn open(location: &Location) -> Result<Self, Error> {
        Ok(Self::from_reader(RepoReader::open(location)?))
    }

    /// Open a local repository, creating it first if its directory is missing or empty
    /// (what `backup` does with the default `./backups`). A directory holding anything
    /// else is never turned into a repository.
    pub fn open_or_init(location: &Location) -> Result<Self, Error> {
        match (Self::open(location), location) {
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
                match Self::init(location) {
                    Err(Error::AlreadyInitialized { .. }) => Err(Error::NotARepository {
                        location: shown,
                        reason,
                    }),
                    other => other,
                }
            }
            (other, _) => other,
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

    /// Store a whole (small) object. `PutMode::Create` fails if it exists.
    pub fn put(&self, key: &str, bytes: Bytes, mode: PutMode) -> Result<(), Error> {
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

    /// Start a streaming upload of one data object.
    pub fn writer(&self, key: &str) -> Result<ObjectWriter, Error> {
        if let Some(root) = &self.reader.local_root {
            let dest = root.join(key);
            return ObjectWriter::file(key.to_string(), dest.clone()).map_err(|source| Error::Io {
                operation: "writing",
                path: dest.display().to_string(),
                source,
            });
        }
        let mut attributes = Attributes::new();
        if let Some(class) = &self.upload.storage_class {
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
        let upload = WriteMultipart::new_with_chunk_size(upload, self.upload.part_size);
        Ok(ObjectWriter::upload(
            key.to_string(),
            self.rt.clone(),
            upload,
            self.upload.concurrency.max(1),
        ))
    }

    /// Delete one object; a missing object is not an error.
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        match self.rt.block_on(self.store.delete(&path(key))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend("deleting", key, &self.location, e)),
        }
    }

    /// Remove what interrupted uploads left below `prefix` and older than `grace`: on a
    /// local repository the staging files (`<key>#<n>`) of a killed process. (S3 keeps
    /// incomplete multipart uploads out of listings; a bucket lifecycle rule
    /// `AbortIncompleteMultipartUpload` collects them — see docs/storage.md.)
    pub fn remove_upload_leftovers(&self, prefix: &str, grace: Duration) -> Result<u64, Error> {
        let Some(root) = &self.reader.local_root else {
            return Ok(0);
        };
        let dir = root.join(prefix);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(Error::Io {
                    operation: "listing",
                    path: dir.display().to_string(),
                    source,
                })
            }
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= grace);
            if name.to_string_lossy().contains('#') && stale {
                std::fs::remove_file(entry.path()).map_err(|source| Error::Io {
                    operation: "removing",
                    path: entry.path().display().to_string(),
                    source,
                })?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Write a snapshot record (the commit point of a backup).
    pub fn put_snapshot(&self, snapshot: &Snapshot) -> Result<(), Error> {
        let key = layout::snapshot_key(&snapshot.set, &snapshot.id);
        self.put(&key, snapshot.to_json().into(), PutMode::Create)
    }
}
