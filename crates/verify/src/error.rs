/// Errors of the verify crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading from the repository failed.
    #[error(transparent)]
    Storage(#[from] strongbox_storage::Error),
    /// A listing or record is corrupt.
    #[error(transparent)]
    Manifest(#[from] strongbox_manifest::Error),
    /// An archive is corrupt or holds an unsafe name.
    #[error("archive {key}: {source}")]
    Archive {
        /// The archive object.
        key: String,
        /// What is wrong.
        #[source]
        source: strongbox_archive::Error,
    },
    /// Reading an entry's data failed (corrupt or truncated stream).
    #[error("archive {key}, entry {path}: {source}")]
    EntryData {
        /// The archive object.
        key: String,
        /// The entry.
        path: String,
        /// The read error.
        #[source]
        source: std::io::Error,
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
    /// The listing names an entry its holder's archive lacks.
    #[error("archive {key} lacks {path}, which the listing says it holds")]
    MissingEntry {
        /// The archive object.
        key: String,
        /// The entry.
        path: String,
    },
    /// The listing names a holder snapshot that does not exist.
    #[error("listing of {snapshot} draws from the archive of snapshot {holder}, which is missing")]
    MissingHolder {
        /// The snapshot verified.
        snapshot: String,
        /// The missing holder.
        holder: String,
    },
    /// An archive entry differs in kind from the listing, or the listing is malformed.
    #[error("{path}: {reason}")]
    Mismatch {
        /// The entry.
        path: String,
        /// What differs.
        reason: String,
    },
    /// The visitor (a restore writing files) failed.
    #[error("{path}: {source}")]
    Visit {
        /// The entry.
        path: String,
        /// The error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
