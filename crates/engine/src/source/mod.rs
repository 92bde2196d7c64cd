//! The backup seam: a [`Source`] writes a snapshot's objects through an [`ObjectSink`] and
//! describes them in a [`Draft`]; the engine locks the set before and commits the record
//! after, the same way for every kind.

mod database;
mod files;
mod physical;
mod sink;

use strongbox_archive::Compression;
use strongbox_manifest::{
    Listing, Snapshot, SnapshotId, SnapshotKind, SourceError, SourceKind, Stats,
};

pub use database::{DumpSource, PostgresSpec, SnapshotWork, SqliteSpec};
pub use files::{FilesSource, FilesSpec};
pub use physical::BaseBackupSource;
pub use sink::ObjectSink;

use crate::engine::ListingStream;
use crate::{Cancel, Error, Progress, Reader};

/// Something to back up. The engine drives every kind the same way: lock the set, call
/// [`Source::backup`] with a sink for the new snapshot's objects, commit the record, unlock.
/// Adding a kind means one implementation of this trait and one variant of
/// [`SourceSpec`](crate::SourceSpec).
pub trait Source {
    /// What the snapshot's record says it is.
    fn kind(&self) -> SourceKind;
    /// Where the data comes from, for the record: a path, or a connection string without
    /// its password.
    fn origin(&self) -> String;
    /// Write the snapshot's objects through `run.sink` and describe them.
    fn backup(&mut self, run: &mut BackupRun<'_>) -> Result<Draft, Error>;
}

/// What a [`Source`] reports of the snapshot it wrote; the engine adds the rest of the
/// record (id, set, time, host, objects, duration) when it commits.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// Full, incremental or differential.
    pub kind: SnapshotKind,
    /// The snapshot diffed against.
    pub parent: Option<SnapshotId>,
    /// Compression of the data objects.
    pub compression: Compression,
    /// Counts.
    pub stats: Stats,
    /// Entries that could not be backed up and are absent.
    pub errors: Vec<SourceError>,
    /// Entries backed up as read although they changed while being read.
    pub warnings: Vec<SourceError>,
}

/// What a [`Source`] works with during one backup.
pub struct BackupRun<'a> {
    pub(crate) reader: &'a Reader,
    /// Where the snapshot's objects go.
    pub sink: ObjectSink<'a>,
    /// The set's snapshots before this one, oldest first.
    pub existing: &'a [Snapshot],
}

impl BackupRun<'_> {
    /// Where progress goes.
    pub fn progress(&self) -> &dyn Progress {
        self.reader.progress.as_ref()
    }

    /// The cancellation flag, to check between chunks of work.
    pub fn cancel(&self) -> &Cancel {
        &self.reader.cancel
    }

    /// The files listing of an earlier snapshot (a parent to diff against).
    pub fn listing(&self, snapshot: &Snapshot) -> Result<Listing, Error> {
        self.reader.listing(snapshot)
    }

    /// The same as a stream of entries, with the object a new listing may be a delta of.
    pub(crate) fn listing_stream(&self, snapshot: &Snapshot) -> Result<ListingStream, Error> {
        self.reader.listing_stream(snapshot)
    }
}
