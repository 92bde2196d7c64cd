//! Snapshot records and file listings of a strongbox repository, and the scan that builds a
//! listing from a directory tree by diffing it against the parent snapshot's listing.
//!
//! A [`Snapshot`] record is the commit point of a backup: it names the data objects it owns
//! with their sizes and SHA-256 digests. A [`Listing`] is the tree of a files snapshot,
//! stored whole or as a [`Delta`] of an earlier listing; each [`FileEntry`] names the
//! snapshot (`holder`) whose archive stores its bytes, so an incremental snapshot's listing
//! still describes the complete tree. [`Excludes`] decide what a backup takes, [`Includes`]
//! what a partial restore writes.
//!
//! A backup never holds a tree whole: [`TreeWalk`] walks in listing order one directory at
//! a time, [`ListingReader`] parses the parent's listing as it is read, an [`Overlay`]
//! applies deltas to it, and [`Diff`] merges the two streams.
//!
//! ```
//! use strongbox_manifest::{scan_tree, Change, Excludes};
//!
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("a.txt"), b"hello")?;
//! let first = scan_tree(dir.path(), &Excludes::none(), None, false)?;
//! assert_eq!(first.entries.len(), 1);
//! assert_eq!(first.entries[0].path, "a.txt");
//! assert_eq!(first.changes, vec![Change::New]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bounded;
mod error;
mod filter;
mod id;
mod listing;
mod record;
mod scan;
mod stream;
mod wal;

pub use error::Error;
pub use filter::{Excludes, Includes};
pub use id::SnapshotId;
pub use listing::{ChainLink, Delta, FileEntry, FileType, Listing};
pub use record::{
    check_tag, BundleStats, DatabaseStats, FileStats, ObjectRef, ObjectRole, ReferenceCheck,
    RestorePoint, RootDir, Snapshot, SnapshotKind, SourceError, SourceKind, Stats, TableCount,
    FORMAT_VERSION,
};
pub use scan::{classify, scan_tree, Change, Diff, Scan, TreeWalk};
pub use stream::{write_whole_listing, Applied, ListingHeader, ListingReader, Overlay};
pub use wal::{first_gap, Lsn, PhysicalStats, Segment, WalFile, DEFAULT_SEGMENT_SIZE};
