use std::io;

/// Errors of the archive crate. Messages name the entry or the place in the stream; the
/// cause is the error's `source`.
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
    /// The stream is not a valid tar stream (or does not decompress).
    #[error("corrupt archive: {context}")]
    Corrupt {
        /// Where in the stream.
        context: String,
        /// The underlying decoder or tar error.
        #[source]
        source: io::Error,
    },
    /// Writing an entry failed.
    #[error("writing archive entry {path:?}")]
    Write {
        /// The entry being written.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Writing the end-of-archive marker failed.
    #[error("finishing the archive")]
    Finish {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The read-ahead thread could not start.
    #[error("starting the archive read-ahead thread")]
    ReadAhead {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}
