//! Helpers for strongbox's tests, shared by every crate and the end-to-end harness.
//!
//! - [`service`] gates a test on a service `scripts/test.sh` started: it returns the
//!   variable's value, or skips with a notice, and under `CI=true` a missing service fails.
//! - [`Pg`]: the PostgreSQL server of the run, `psql` without a password in its arguments,
//!   and databases dropped when a test ends ([`TempDb`]).
//! - [`S3`]: the S3-compatible server of the run, with a fresh prefix per repository.
//! - [`TempRepo`]: a local repository in a temporary directory.
//! - [`Receivers`]: the SMTP servers and the HTTP receiver alerts are sent to, and what
//!   they received.
//! - [`Faults`]: an [`Intercept`] that fails chosen requests and records every request, for
//!   tests of what a command does when the store fails, and of what reaches the store.
//! - [`ClusterDir`]: throwaway PostgreSQL clusters (`initdb`), run as `postgres` under root.
//! - [`FaultProxy`]: the fault-injecting HTTP proxy in front of the S3 server
//!   (`strongbox-fault-proxy`), and the [`Plan`] of faults a test sets for its prefix.
//! - [`Rng`]: a seeded generator for tests that draw random moments or mutations.
//!
//! ```
//! use strongbox_test_support::{Faults, Rule, TempRepo};
//!
//! let repo = TempRepo::new();
//! let faults = Faults::new();
//! faults.add(Rule::writes().containing("/data/").after(0));
//! let store = faults.layer(repo.store());
//! let wrapped = strongbox_storage::Repository::open_store(store).unwrap();
//! let refused = wrapped.put(
//!     "sets/m/data/x.bin",
//!     b"x",
//!     strongbox_storage::Compression::None,
//!     strongbox_storage::PutMode::Overwrite,
//! );
//! assert!(refused.is_err());
//! assert_eq!(faults.injected(), 1);
//! ```

mod cluster;
mod faults;
mod pg;
pub mod proxy;
mod receivers;
mod rng;

use std::path::PathBuf;

use strongbox_storage::{Location, Repository, Store, StoreOptions};

pub use cluster::{ClusterDir, Server};
pub use faults::{Faults, Rule};
pub use pg::{Pg, TempDb};
pub use proxy::{Counts, FaultProxy, Plan};
pub use receivers::Receivers;
pub use rng::Rng;

/// The value of a variable `scripts/test.sh` exports for a service, or `None` after a
/// notice that the test is skipped; under `CI=true` a missing service fails the test.
pub fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => Some(value.trim().to_string()),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{var} is not set under CI=true: scripts/test.sh did not start the service")
        }
        _ => {
            eprintln!("skipping: {var} is not set (run scripts/test.sh)");
            None
        }
    }
}

/// An error and its causes on one line, as the CLI prints them.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    message
}

/// A token unique to this process and call, for names that tests running at once must not
/// share (databases, bucket prefixes).
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!(
        "{tag}_{}_{:08x}_{}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The S3-compatible server of the run (`STRONGBOX_TEST_S3_BUCKET`; the `AWS_*` variables
/// point at it).
#[derive(Debug, Clone)]
pub struct S3 {
    /// The bucket tests write into.
    pub bucket: String,
}

impl S3 {
    /// The server, or `None` (a failure under `CI=true`).
    pub fn get() -> Option<S3> {
        service("STRONGBOX_TEST_S3_BUCKET").map(|bucket| S3 { bucket })
    }

    /// A location under a prefix no other test uses.
    pub fn location(&self, tag: &str) -> Location {
        Location::S3 {
            bucket: self.bucket.clone(),
            prefix: unique(tag),
        }
    }
}

/// A local repository in a temporary directory, removed with it.
pub struct TempRepo {
    /// The temporary directory; the repository is `repo/` inside it.
    pub dir: tempfile::TempDir,
    /// The repository's location.
    pub location: Location,
}

impl TempRepo {
    /// A new, initialised repository.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let location = Location::Local(dir.path().join("repo"));
        Repository::init(&location).expect("repository initialised");
        TempRepo { dir, location }
    }

    /// A path inside the temporary directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The repository's directory.
    pub fn root(&self) -> PathBuf {
        self.path("repo")
    }

    /// The repository, writable.
    pub fn repository(&self) -> Repository {
        Repository::open(&self.location).expect("repository opens")
    }

    /// The store behind it, to wrap before opening.
    pub fn store(&self) -> Store {
        Store::connect(&self.location, &StoreOptions::default()).expect("store connects")
    }
}

impl Default for TempRepo {
    fn default() -> Self {
        Self::new()
    }
}
