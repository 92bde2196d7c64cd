use std::fmt;
use std::io;

/// Errors of the storage crate. Locations in messages never carry credentials; the cause
/// of a failure is the error's `source`, never repeated in its message.
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
    /// An object store setting (`[s3]` in the configuration) that the backend does not know.
    #[error("invalid storage setting {key:?}: {reason}")]
    InvalidSetting {
        /// The setting's name.
        key: String,
        /// Why it is refused.
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
    /// `init` where something else already lies.
    #[error("refusing to create a repository at {location}: it already holds {found}; give an empty or new directory or prefix")]
    NotEmpty {
        /// The location (redacted).
        location: String,
        /// Some of what is there.
        found: String,
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
    /// The repository's objects are encrypted in a way this build cannot read.
    #[error("repository {location} is encrypted ({encryption:?}); this strongbox cannot read encrypted repositories, upgrade strongbox")]
    UnsupportedEncryption {
        /// The location (redacted).
        location: String,
        /// The marker's `encryption` value.
        encryption: String,
    },
    /// An encrypted repository was asked to open an object without a key.
    #[error("repository {location} is encrypted: reading it needs --identity FILE (or STRONGBOX_IDENTITY) or STRONGBOX_PASSPHRASE")]
    KeyRequired {
        /// The location (redacted).
        location: String,
    },
    /// What the repository holds contradicts how its marker says it is sealed: written to,
    /// it could take plaintext, or data sealed to a key someone planted.
    #[error("repository {location} may have been tampered with: {reason}; nothing was written")]
    Tampered {
        /// The location (redacted).
        location: String,
        /// What contradicts what.
        reason: String,
    },
    /// Keys were to be added, removed or changed in a repository that is not encrypted.
    #[error("repository {location} is not encrypted: it has no keys (`init --encrypt` makes an encrypted repository)")]
    Unencrypted {
        /// The location (redacted).
        location: String,
    },
    /// None of the repository's key files opens with what was given.
    #[error("no key file of repository {location} opens with the given {given}; it may have been removed (`key list` shows the keys)")]
    NoMatchingKey {
        /// The location (redacted).
        location: String,
        /// `identity` or `passphrase`.
        given: &'static str,
    },
    /// A key was given for a repository that is not encrypted.
    #[error("repository {location} is not encrypted; --identity and STRONGBOX_PASSPHRASE are for encrypted repositories")]
    NotEncrypted {
        /// The location (redacted).
        location: String,
    },
    /// `key remove` of the only key file that is not damaged.
    #[error("refusing to remove {key}, the last usable key of repository {location}: nobody could read it again; add another key first")]
    LastKey {
        /// The key file.
        key: String,
        /// The location (redacted).
        location: String,
    },
    /// `key remove` or `key passwd` of an id no key file has.
    #[error("repository {location} has no key {id:?} (its keys: {known}; `key list` shows them)")]
    UnknownKey {
        /// The id given.
        id: String,
        /// The ids it has.
        known: String,
        /// The location (redacted).
        location: String,
    },
    /// An identity, recipient or passphrase that cannot be used.
    #[error("invalid key: {what}: {reason}")]
    InvalidKey {
        /// What was given (never the secret itself).
        what: String,
        /// Why it is refused.
        reason: String,
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
    #[error("set {:?} is locked by {} on host {} (pid {}) since {} ({key}); if that process is gone, `strongbox unlock {}` removes the lock (with --force for another host)", holder.set, holder.operation, holder.host, holder.pid, holder.time.to_rfc3339(), holder.set)]
    Locked {
        /// Who holds it.
        holder: Box<crate::LockInfo>,
        /// The lock object.
        key: String,
    },
    /// A set name outside `[A-Za-z0-9._-]`.
    #[error(
        "invalid set name {name:?}: use at most 100 letters, digits, '.', '_' and '-' (not starting with '.')"
    )]
    InvalidSetName {
        /// The name.
        name: String,
    },
    /// The storage backend failed.
    #[error("{operation} {key} in {location}")]
    Backend {
        /// What was attempted (`reading`, `writing`, `listing`, `deleting`).
        operation: &'static str,
        /// The object key or prefix.
        key: String,
        /// The location (redacted).
        location: String,
        /// The backend's error.
        #[source]
        source: BackendError,
    },
    /// A conditional create found the object already there.
    #[error("object {key} already exists in {location}")]
    AlreadyExists {
        /// The object key.
        key: String,
        /// The location (redacted).
        location: String,
    },
    /// Streaming an object through the pipeline (codec, envelope, store) failed.
    #[error("{operation} object {key}")]
    Stream {
        /// What was attempted.
        operation: &'static str,
        /// The object key.
        key: String,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// A local file-system operation failed.
    #[error("{operation} {path}")]
    Io {
        /// What was attempted.
        operation: &'static str,
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The runtime that drives the object store could not start.
    #[error("starting the storage I/O runtime")]
    Runtime {
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A record or listing read from the repository does not decode (the manifest's error
    /// names its key).
    #[error(transparent)]
    Manifest(#[from] strongbox_manifest::Error),
    /// An object's content is not what strongbox wrote.
    #[error("corrupt object {key}: {reason}")]
    Corrupt {
        /// The object key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// A failure of `operation` while streaming object `key` through the pipeline.
    pub(crate) fn stream(operation: &'static str, key: &str) -> impl FnOnce(io::Error) -> Error {
        let key = key.to_string();
        move |source| Error::Stream {
            operation,
            key,
            source,
        }
    }
}

/// An object store error on one line with its causes, each said once. object_store's own
/// messages repeat some of their sources and not others, so this error prints the whole
/// chain itself and has no `source`.
#[derive(Debug)]
pub struct BackendError(Box<object_store::Error>);

impl BackendError {
    /// Wrap an object store error.
    pub fn new(error: object_store::Error) -> Self {
        BackendError(Box::new(error))
    }

    /// The object store's error.
    pub fn inner(&self) -> &object_store::Error {
        &self.0
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut message = String::new();
        let mut cause: Option<&dyn std::error::Error> = Some(self.0.as_ref());
        while let Some(error) = cause {
            let text = error.to_string();
            if !message.contains(&text) {
                if !message.is_empty() {
                    message.push_str(": ");
                }
                message.push_str(&text);
            }
            cause = error.source();
        }
        // A body read that failed comes back wrapped twice in one message ("Generic S3
        // error: Generic S3 error: Error performing GET…"): each part once.
        let mut parts: Vec<&str> = Vec::new();
        for part in message.split(": ") {
            if parts.last() != Some(&part) {
                parts.push(part);
            }
        }
        f.write_str(&parts.join(": ").replace('\n', " "))
    }
}

impl std::error::Error for BackendError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_error_says_each_cause_once() {
        let inner = object_store::Error::Generic {
            store: "S3",
            source: "Error performing GET http://h/k: connection reset".into(),
        };
        let outer = object_store::Error::Generic {
            store: "S3",
            source: Box::new(std::io::Error::other(inner)),
        };
        assert_eq!(
            BackendError::new(outer).to_string(),
            "Generic S3 error: Error performing GET http://h/k: connection reset"
        );
    }
}
