//! The strongbox repository over [`object_store`]: the layout of format version 1, streaming
//! object I/O with SHA-256 on the way, and per-set locks taken with a conditional create.
//!
//! [`RepoReader`] is read-only (listing, reading, streaming); [`Repository`] adds writes,
//! deletes and locks. Both are blocking APIs driving an internal tokio runtime, so call them
//! from plain threads (or `spawn_blocking`), not from inside an async task.
//!
//! ```
//! use std::io::{Read, Write};
//! use strongbox_storage::{Location, Repository};
//!
//! let dir = tempfile::tempdir()?;
//! let repo = Repository::init(&Location::Local(dir.path().join("repo")))?;
//! let mut writer = repo.writer("sets/media/data/example.bin")?;
//! writer.write_all(b"payload")?;
//! let written = writer.finish()?;
//! assert_eq!(written.size, 7);
//!
//! let mut back = Vec::new();
//! repo.reader("sets/media/data/example.bin")?.read_to_end(&mut back)?;
//! assert_eq!(back, b"payload");
//!
//! let _lock = repo.lock("media", "backup")?;
//! assert!(repo.lock("media", "backup").is_err(), "a second holder is refused");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod counting;
mod error;
mod io;
pub mod layout;
mod location;
mod lock;
mod repo;

pub use counting::{CountingStore, RequestCounts, Requests};
pub use error::Error;
pub use io::{ObjectReader, ObjectWriter, Written};
pub use location::{redact, Location};
pub use lock::{host_name, LockGuard, LockInfo};
pub use object_store::PutMode;
pub use repo::{store_for, Marker, ObjectInfo, RepoReader, Repository, UploadOptions};
