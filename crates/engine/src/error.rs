use std::io;
use std::path::PathBuf;

/// Errors of the engine. Every variant names the object it is about; the cause is the
/// error's `source`, never repeated in its message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The repository failed.
    #[error(transparent)]
    Storage(#[from] strongbox_storage::Error),
    /// A source tree, record or listing is unusable.
    #[error(transparent)]
    Manifest(#[from] strongbox_manifest::Error),
    /// A files listing is not a tree a restore may write.
    #[error(transparent)]
    Tree(#[from] strongbox_verify::Error),
    /// A database dump or restore failed.
    #[error(transparent)]
    Database(#[from] strongbox_db_dump::Error),
    /// A keep policy that cannot be applied (e.g. one that would keep nothing).
    #[error("prune policy of set {set}")]
    Retention {
        /// The set the policy is for.
        set: String,
        /// Why.
        #[source]
        source: strongbox_retention::Error,
    },
    /// An archive cannot be written or read.
    #[error("archive {key}")]
    Archive {
        /// The archive object.
        key: String,
        /// What failed.
        #[source]
        source: strongbox_archive::Error,
    },
    /// A span of an archive's frames does not decompress.
    #[error("corrupt archive {key}: frames at {span:?}")]
    Frames {
        /// The archive object.
        key: String,
        /// Their stored bytes.
        span: std::ops::Range<u64>,
        /// The decoder's error.
        #[source]
        source: io::Error,
    },
    /// A local file-system operation failed.
    #[error("{operation} {}", path.display())]
    Io {
        /// What was attempted.
        operation: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Writing an object failed.
    #[error("writing {key}")]
    Upload {
        /// The object key.
        key: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Reading an archive entry's data failed (a corrupt or truncated stream).
    #[error("archive {key}, entry {path}")]
    EntryData {
        /// The archive object.
        key: String,
        /// The entry.
        path: String,
        /// The read error.
        #[source]
        source: io::Error,
    },
    /// An entry's content does not match the listing.
    #[error("{path}: SHA-256 {actual} does not match the listing's {expected} (archive {key})")]
    DigestMismatch {
        /// The archive object.
        key: String,
        /// The entry.
        path: String,
        /// From the listing.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// An archive entry differs from the listing's.
    #[error("{path}: archive {key} {reason}")]
    EntryMismatch {
        /// The archive object.
        key: String,
        /// The entry.
        path: String,
        /// What differs.
        reason: String,
    },
    /// The listing names an entry its holder's archive lacks.
    #[error("archive {key} lacks {path}, which the listing says it holds")]
    MissingEntry {
        /// The archive object.
        key: String,
        /// The entry.
        path: String,
    },
    /// A listing draws from the archive of a snapshot that has none.
    #[error("listing of {snapshot} draws from the archive of snapshot {holder}, which is missing")]
    MissingHolder {
        /// The snapshot whose listing it is.
        snapshot: String,
        /// The missing holder.
        holder: String,
    },
    /// A listing draws from an archive whose size is not its record's (cut short).
    #[error("listing of {snapshot} draws from the archive of snapshot {holder}: {key} has {size} bytes, the record says {recorded}")]
    HolderSize {
        /// The snapshot whose listing it is.
        snapshot: String,
        /// The holder.
        holder: String,
        /// The archive.
        key: String,
        /// Its size in the repository.
        size: u64,
        /// The size its record names.
        recorded: u64,
    },
    /// A small object (a listing) whose stored bytes do not read back as written.
    #[error("corrupt {what} {key}")]
    Corrupt {
        /// What the object is.
        what: &'static str,
        /// The object.
        key: String,
        /// What is wrong.
        #[source]
        source: strongbox_storage::Error,
    },
    /// A snapshot record that does not describe its snapshot.
    #[error("snapshot record {id}: {reason}")]
    BadRecord {
        /// The snapshot.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A bundle that cannot be backed up or restored as given.
    #[error("bundle {set:?}: {reason}")]
    BadBundle {
        /// The bundle set.
        set: String,
        /// What is wrong.
        reason: String,
    },
    /// A backup's parent that a new snapshot cannot build on: its listing, or an archive
    /// it draws from, is gone.
    #[error("parent snapshot {parent} cannot be built on, or the new snapshot would not restore; take a full backup (--full), and verify the set")]
    BrokenParent {
        /// The parent.
        parent: String,
        /// What is missing.
        #[source]
        source: Box<Error>,
    },
    /// A bundle restore that failed at a member after others were restored.
    #[error("bundle {set:?}: member {failed:?} failed after {restored} had been restored; restore the bundle again to bring them back in step")]
    BundlePartlyRestored {
        /// The bundle set.
        set: String,
        /// The members restored, each with where its previous content went.
        restored: String,
        /// The member that failed.
        failed: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// There is nothing to work on: no snapshot of a set, or none at all.
    #[error("repository {location} holds no {what}")]
    NoSnapshots {
        /// The repository (redacted).
        location: String,
        /// What it lacks.
        what: String,
    },
    /// No snapshot matches an id, prefix or `<set>:latest`.
    #[error("no snapshot matches {spec:?} in repository {location}")]
    SnapshotNotFound {
        /// What was asked for.
        spec: String,
        /// The repository (redacted).
        location: String,
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
    /// A restore target that cannot take the snapshot.
    #[error("restore target {target:?}: {reason}")]
    BadTarget {
        /// The target as given (redacted).
        target: String,
        /// Why.
        reason: String,
    },
    /// A restore target that is not a directory.
    #[error("restore target {} exists and is not a directory", path.display())]
    TargetNotDirectory {
        /// The target.
        path: PathBuf,
    },
    /// A restore target that holds data, without `force`.
    #[error("restore target {target} is not empty; add --force to replace it ({replaced})")]
    TargetNotEmpty {
        /// The target (redacted).
        target: String,
        /// What happens to its content on a forced restore.
        replaced: String,
    },
    /// A files source that is the local repository or lies inside it.
    #[error("backup source {} is repository {} or lies inside it; a repository cannot be backed up into itself", path.display(), repository.display())]
    SourceInRepository {
        /// The source directory.
        path: PathBuf,
        /// The repository's directory.
        repository: PathBuf,
    },
    /// A report, metrics or page to be written inside the local repository.
    #[error("{} lies inside repository {}, whose objects it would overwrite; write it elsewhere", path.display(), repository.display())]
    OutputInRepository {
        /// The file asked for.
        path: PathBuf,
        /// The local repository's directory.
        repository: PathBuf,
    },
    /// A snapshot time ahead of the clock.
    #[error("snapshot time {time} is in the future: dated ahead, the snapshot would stand as the latest and hide missed backups")]
    FutureTime {
        /// The time asked for (RFC 3339).
        time: String,
    },
    /// `--include` patterns that select nothing of a snapshot.
    #[error("no entry of snapshot {snapshot} matches --include {}", patterns.iter().map(|p| format!("'{p}'")).collect::<Vec<_>>().join(", "))]
    NothingIncluded {
        /// The snapshot.
        snapshot: String,
        /// The patterns as given.
        patterns: Vec<String>,
    },
    /// Interrupted (Ctrl-C); nothing half-done was left visible.
    #[error("interrupted; nothing was changed")]
    Cancelled,
    /// A WAL file is archived already with other content.
    #[error("{key} is archived already with different content ({name}); refusing to overwrite it. Is another cluster archiving into this set?")]
    WalConflict {
        /// The archive key.
        key: String,
        /// The WAL file.
        name: String,
    },
    /// The restore's staging copy would not fit beside its target.
    #[error("restoring into {} needs {} for its staging copy beside it, and that file system has {} free; nothing was changed", target.display(), crate::human_bytes(*needed), crate::human_bytes(*available))]
    NoSpace {
        /// The target.
        target: PathBuf,
        /// Bytes the restore writes (file content and a block per entry).
        needed: u64,
        /// Bytes free for this user.
        available: u64,
    },
    /// `unlock` refused to remove a lock.
    #[error("set {set:?}: {reason}")]
    LockHeld {
        /// The set.
        set: String,
        /// Who holds it, and why it stays.
        reason: String,
    },
    /// A base backup refused: the server cannot give one recoverable from this set.
    #[error("set {set:?}: {reason}")]
    BaseBackupRefused {
        /// The set.
        set: String,
        /// What is missing.
        reason: String,
    },
    /// A recovery target no snapshot and archived WAL can reach.
    #[error("set {set:?}: cannot recover to {target}: {reason}")]
    OutsideWindow {
        /// The set.
        set: String,
        /// The target asked for.
        target: String,
        /// The window there is, or why there is none.
        reason: String,
    },
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

/// An error and its causes on one line, for the run journal (the CLI prints the same chain).
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    message
}
