use std::io;
use std::path::PathBuf;

/// Errors of the manifest crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The directory to back up does not exist or cannot be read.
    #[error("cannot read source directory {}", path.display())]
    Source {
        /// The directory.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: io::Error,
    },
    /// The path to back up is not a directory.
    #[error("source {} is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// An exclude or include pattern is not a valid glob.
    #[error("invalid pattern {pattern:?}")]
    InvalidGlob {
        /// The pattern.
        pattern: String,
        /// The parser's error.
        #[source]
        source: globset::Error,
    },
    /// A listing or record could not be decoded.
    #[error("corrupt {what} {key}: {reason}")]
    Corrupt {
        /// "listing" or "snapshot record".
        what: &'static str,
        /// Where it was read from.
        key: String,
        /// The decoder's error.
        reason: String,
    },
    /// A snapshot id is not of the form `YYYYMMDDTHHMMSSZ-xxxxxx`.
    #[error("invalid snapshot id {id:?}")]
    InvalidId {
        /// What was given.
        id: String,
    },
    /// A WAL archive file name or LSN is not one PostgreSQL writes.
    #[error("invalid WAL name {name:?}: {reason}")]
    InvalidWalName {
        /// What was given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}
