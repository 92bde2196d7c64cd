use std::io;

/// Errors of the archive crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A compression spec such as `zstd:25` could not be parsed.
    #[error("invalid compression {spec:?}: {reason}")]
    InvalidCompression {
        /// What the user wrote.
        spec: String,
        /// Why it is refused.
        reason: String,
    },
    /// A tar entry name that would escape the restore target.
    #[error("unsafe path in archive {path:?}: {reason}")]
    UnsafePath {
        /// The entry name as stored.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The stream is not a valid (compressed) tar stream.
    #[error("corrupt archive: {context}: {source}")]
    Corrupt {
        /// Where in the stream.
        context: String,
        /// The underlying decoder or tar error.
        #[source]
        source: io::Error,
    },
    /// Writing the archive failed.
    #[error("writing archive entry {path:?}: {source}")]
    Write {
        /// The entry being written.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A caller-supplied callback failed while visiting an entry.
    #[error("{path}: {source}")]
    Visit {
        /// The entry being visited.
        path: String,
        /// The callback's error.
        #[source]
        source: io::Error,
    },
}
