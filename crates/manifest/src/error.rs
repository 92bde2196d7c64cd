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
    /// A listing or record is not the JSON strongbox writes.
    #[error("corrupt {what} {key}")]
    Decode {
        /// "listing" or "snapshot record".
        what: &'static str,
        /// Where it was read from.
        key: String,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A listing or record decodes but cannot be what strongbox wrote.
    #[error("corrupt {what} {key}: {reason}")]
    Corrupt {
        /// "listing" or "snapshot record".
        what: &'static str,
        /// Where it was read from.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The thread that parses a listing could not be started.
    #[error("reading listing {key}: cannot start its parser")]
    Parser {
        /// Where it is read from.
        key: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A snapshot id is not of the form `YYYYMMDDTHHMMSSZ-xxxxxx`.
    #[error("invalid snapshot id {id:?}")]
    InvalidId {
        /// What was given.
        id: String,
    },
    /// A snapshot tag that [`crate::check_tag`] refuses.
    #[error("invalid tag {tag:?}: {reason}")]
    InvalidTag {
        /// What was given.
        tag: String,
        /// What is wrong with it.
        reason: &'static str,
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

/// An error and its causes on one line, as the CLI prints them.
#[cfg(test)]
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
