//! The strongbox engine: one code path for every command and every source kind.
//!
//! An [`Engine`] wraps a [`Repository`](strongbox_storage::Repository). A backup locks its
//! set, streams the source through the archive codec into storage while hashing it, checks
//! the stored objects, and writes the snapshot record last; a crash at any point leaves
//! either no snapshot or a complete one. A restore extracts beside its target, checks every
//! digest against the listing and swaps the result in. Progress goes to a [`Progress`]
//! implementation (silent by default); [`Cancel`] stops work between chunks.
//!
//! ```
//! use strongbox_engine::{Engine, FilesBackup, RestoreOptions};
//! use strongbox_storage::{Location, Repository};
//!
//! let dir = tempfile::tempdir()?;
//! let media = dir.path().join("media");
//! std::fs::create_dir_all(media.join("avatars"))?;
//! std::fs::write(media.join("avatars/1.png"), b"not really a png")?;
//!
//! let repo = Repository::init(&Location::Local(dir.path().join("repo")))?;
//! let engine = Engine::new(repo);
//! let snapshot = engine.backup_files(&FilesBackup::new("media", &media))?;
//!
//! let target = dir.path().join("restored");
//! engine.restore_files(&snapshot, &RestoreOptions::new(&target))?;
//! assert_eq!(std::fs::read(target.join("avatars/1.png"))?, b"not really a png");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backup;
mod database;
mod engine;
mod error;
#[cfg(test)]
mod fixtures;
mod journal;
mod progress;
mod prune;
mod restore;
mod select;
mod verify;

pub use backup::FilesBackup;
pub use database::{
    redact_conninfo, target_for, verify_dump, DatabaseRestoreOutcome, DatabaseSource,
    DatabaseTarget, PostgresSource, PostgresTarget, RestoreReport, SqliteSource, SqliteTarget,
};
pub use engine::Engine;
pub use error::Error;
pub use journal::RunRecord;
pub use progress::{Cancel, NoProgress, Progress};
pub use prune::{Forgotten, Kept, PruneOptions, PruneReport};
pub use restore::{HolderPlan, RestoreOptions, RestoreOutcome, RestorePlan};
pub use select::select;
pub use strongbox_retention::{KeepPolicy, Timezone};
pub use strongbox_verify::{Report, VerifyLevel};
