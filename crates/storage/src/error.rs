use std::io;

/// Errors of the storage crate. Locations in messages never carry credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A repository URL that cannot be used.
    #[error("invalid repository location {url:?}: {reason}")]
    InvalidLocation {
        /// The location (redacted).
        url: String,
        /// Why.
        reason: String,
    },
    /// Nothing (or something else) lives at the location.
    #[error("{location} is not a strongbox repository: {reason}")]
    NotARepository {
        /// The location (redacted).
        location: String,
        /// What was found instead.
        reason: String,
    },
    /// `init` on an existing repository.
    #[error("a strongbox repository already exists at {location}")]
    AlreadyInitialized {
        /// The location (redacted).
        location: String,
    },
    /// The repository was written by a newer strongbox.
    #[error("repository {location} has format version {found}; this strongbox reads up to version {supported}, upgrade strongbox")]
    UnsupportedVersion {
        /// The location (redacted).
        location: String,
        /// Version found in the marker.
        found: u32,
        /// Highest version this build reads.
        supported: u32,
    },
    /// An object that should exist does not.
    #[error("object {key} not found in {location}")]
    NotFound {
        /// The object key.
        key: String,
        /// The location (redacted).
        location: String,
    },
    /// Another process holds the set's lock.
    #[error("set {:?} is locked by {} on host {} (pid {}) since {}; if that process is gone, remove {key}", holder.set, holder.operation, holder.host, holder.pid, holder.time.to_rfc3339())]
    Locked {
        /// Who holds it.
        holder: Box<crate::LockInfo>,
        /// The lock object.
        key: String,
    },
    /// A set name outside `[A-Za-z0-9._-]`.
    #[error(
        "invalid set name {name:?}: use letters, digits, '.', '_' and '-' (not starting with '.')"
    )]
    InvalidSetName {
        /// The name.
        name: String,
    },
    /// The storage backend failed.
    #[error("{operation} {key} in {location}: {source}")]
    Backend {
        /// What was attempted (`reading`, `writing`, `listing`, `deleting`).
        operation: &'static str,
        /// The object key or prefix.
        key: String,
        /// The location (redacted).
        location: String,
        /// The backend's error (boxed: it is large).
        #[source]
        source: Box<object_store::Error>,
    },
    /// A conditional create found the object already there.
    #[error("object {key} already exists in {location}")]
    AlreadyExists {
        /// The object key.
        key: String,
        /// The location (redacted).
        location: String,
    },
    /// A local file-system operation failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was attempted.
        operation: &'static str,
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// An object's content is not what strongbox wrote.
    #[error("corrupt object {key}: {reason}")]
    Corrupt {
        /// The object key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}
