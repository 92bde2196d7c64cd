use std::io;
use std::path::PathBuf;

/// Errors of the engine. Every variant names the object it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The repository failed.
    #[error(transparent)]
    Storage(#[from] strongbox_storage::Error),
    /// A source tree, record or listing is unusable.
    #[error(transparent)]
    Manifest(#[from] strongbox_manifest::Error),
    /// A snapshot's data does not read back as recorded.
    #[error(transparent)]
    Verify(#[from] strongbox_verify::Error),
    /// A database dump or restore failed.
    #[error(transparent)]
    Database(#[from] strongbox_db_dump::Error),
    /// A keep policy that cannot be applied (e.g. one that would keep nothing).
    #[error("prune policy: {0}")]
    Retention(#[from] strongbox_retention::Error),
    /// Writing an archive failed.
    #[error("archive {key}: {source}")]
    Archive {
        /// The archive object.
        key: String,
        /// What failed.
        #[source]
        source: strongbox_archive::Error,
    },
    /// A local file-system operation failed.
    #[error("{operation} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        operation: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Uploading an object failed.
    #[error("writing {key}: {source}")]
    Upload {
        /// The object key.
        key: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// No snapshot matches an id, prefix or `<set>:latest`.
    #[error("no snapshot matches {spec:?}")]
    SnapshotNotFound {
        /// What was asked for.
        spec: String,
    },
    /// An id prefix matches several snapshots.
    #[error("snapshot prefix {spec:?} is ambiguous; it matches {candidates}")]
    AmbiguousSnapshot {
        /// What was asked for.
        spec: String,
        /// The matching ids.
        candidates: String,
    },
    /// A set holds snapshots of another source kind.
    #[error("set {set:?} holds {existing} snapshots; use another set for {requested}")]
    SetKindMismatch {
        /// The set.
        set: String,
        /// Source kind already in the set.
        existing: &'static str,
        /// Source kind requested.
        requested: &'static str,
    },
    /// The operation does not apply to this snapshot's source kind.
    #[error("snapshot {id} is a {source_kind} snapshot: {reason}")]
    WrongSource {
        /// The snapshot.
        id: String,
        /// Its source kind.
        source_kind: &'static str,
        /// Why it does not fit.
        reason: String,
    },
    /// A restore target that is not a directory.
    #[error("restore target {} exists and is not a directory", path.display())]
    TargetNotDirectory {
        /// The target.
        path: PathBuf,
    },
    /// A restore target that holds data, without `--force`.
    #[error("restore target {} is not empty; add --force to replace it (the current content is kept as {}.pre-restore-<time>)", path.display(), path.display())]
    TargetNotEmpty {
        /// The target.
        path: PathBuf,
    },
    /// Interrupted (Ctrl-C); nothing half-done was left visible.
    #[error("interrupted; nothing was changed")]
    Cancelled,
}

impl Error {
    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            operation,
            path: path.into(),
            source,
        }
    }
}
