//! The strongbox repository over [`object_store`]: the layout of format version 1, the
//! object pipeline every stored byte takes, and per-set locks taken with a conditional
//! create.
//!
//! - [`Store`] connects to the object store behind a [`Location`] (local directory, S3,
//!   GCS, Azure, memory) and lets a wrapper in: a [`Layered`] store shows every request to
//!   an [`Intercept`] (request counting with [`RequestCounts`], fault injection in tests).
//! - The pipeline is `compress -> seal -> hash -> store` on the way in
//!   ([`Repository::create`], [`Repository::put`]) and `fetch -> check hash -> open ->
//!   decompress` on the way out ([`RepoReader::open_object`], [`RepoReader::read_object`]).
//!   Sealing is the encryption hook: age, when the repository's marker says so
//!   (docs/encryption.md). A local repository's writes take the same path: object_store
//!   writes each part into a staging file that is fsynced and renamed into place.
//! - [`RepoReader::compressed_ranges`] reads ranges of an object's compressed stream
//!   without the rest (a few frames of an archive), opening only the age chunks around
//!   them in an encrypted repository.
//! - [`RepoReader`] is read-only; its one write is a run-journal entry. [`Repository`] adds
//!   writes, deletes and locks.
//!
//! Both are blocking APIs driving an internal tokio runtime: call them from plain threads
//! (or `spawn_blocking`), not from inside an async task.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::sync::Arc;
//! use strongbox_storage::{Compression, Layered, Location, Repository, RequestCounts, Store, StoreOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let location = Location::Local(dir.path().join("repo"));
//! Repository::init(&location)?;
//!
//! // Count every request, local writes included.
//! let counts = Arc::new(RequestCounts::default());
//! let store = Store::connect(&location, &StoreOptions::default())?
//!     .layer(|inner| Arc::new(Layered::new(inner, counts.clone())));
//! let repo = Repository::open_store(store)?;
//!
//! let mut writer = repo.create("sets/media/data/example.bin.zst", Compression::Zstd(3))?;
//! writer.write_all(b"payload")?;
//! let written = writer.finish()?;
//! assert!(counts.snapshot().multipart_completes == 1);
//!
//! let mut back = Vec::new();
//! repo.open_object(&written.key, None)?.read_to_end(&mut back)?;
//! assert_eq!(back, b"payload");
//!
//! let _lock = repo.lock("media", "backup")?;
//! assert!(repo.lock("media", "backup").is_err(), "a second holder is refused");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod behind;
mod encryption;
mod error;
mod intercept;
pub mod layout;
mod location;
mod lock;
mod payload;
mod pipeline;
mod prefetch;
mod ranged;
mod ranges;
mod raw;
mod repo;
mod retry;
mod store;
mod upload;

pub use age::secrecy::{ExposeSecret, SecretString};
pub use encryption::{KeyHolder, KeyInfo, Unlock, AGE};
pub use error::{BackendError, Error};
pub use intercept::{Intercept, Layered, Request, RequestCounts, Requests};
pub use location::{redact, Location};
pub use lock::{holder_alive, host_name, LockGuard, LockInfo, ProcessStart};
pub use object_store::{GetRange, PutMode};
pub use pipeline::{ObjectReader, ObjectWriter};
pub use prefetch::Ahead;
pub use ranges::CompressedRanges;
pub use raw::Written;
pub use repo::{DamagedRecord, Marker, ObjectInfo, Records, RepoReader, Repository, UploadOptions};
pub use store::{Store, StoreOptions};
pub use strongbox_archive::Compression;
