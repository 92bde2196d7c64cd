//! The strongbox engine: one code path for every command and every source kind.
//!
//! - A [`Source`] (files, PostgreSQL, SQLite) writes a snapshot's objects through an
//!   [`ObjectSink`] and describes them in a [`Draft`]; [`Engine::backup`] drives every kind
//!   the same way: lock the set, let the source write, commit the record last, unlock. A
//!   crash at any point leaves either no snapshot or a complete one. [`SourceSpec`] is the
//!   configuration of a source; [`SetSpec`] names the set it goes into.
//! - A [`Restorer`] (a directory, a PostgreSQL database, an SQLite file) writes a snapshot
//!   into a target, reading it through an [`ObjectSource`]; [`Engine::restore`] refuses a
//!   non-empty target without `force`, takes a safety snapshot where the target offers one,
//!   and every restorer stages, checks and swaps, so a failure leaves the target as it was.
//!   [`TargetSpec`] turns an operator's `--target` into the restorer for a snapshot's kind.
//! - [`Reader`] is the read-only side (`snapshots`, `resolve`, `listing`, `verify`); its one
//!   write is the run journal. [`Engine`] adds backup, restore and prune.
//!
//! Every byte goes through the repository's object pipeline (`strongbox-storage`).
//! Progress goes to a [`Progress`] implementation (silent by default); [`Cancel`] stops
//! work between chunks.
//!
//! ```
//! use strongbox_engine::{
//!     DirectoryTarget, Engine, FilesSpec, RestoreOptions, SetSpec, SourceSpec, VerifyLevel,
//!     VerifyOptions,
//! };
//! use strongbox_storage::{Location, Repository};
//!
//! let dir = tempfile::tempdir()?;
//! let media = dir.path().join("media");
//! std::fs::create_dir_all(media.join("avatars"))?;
//! std::fs::write(media.join("avatars/1.png"), b"not really a png")?;
//!
//! let engine = Engine::new(Repository::init(&Location::Local(dir.path().join("repo")))?);
//! let spec = SetSpec::new("media", SourceSpec::Files(FilesSpec::new(&media)));
//! let snapshot = engine.backup(&spec)?;
//!
//! let restored = dir.path().join("restored");
//! engine.restore(&snapshot, &mut DirectoryTarget::new(&restored), &RestoreOptions::default())?;
//! assert_eq!(std::fs::read(restored.join("avatars/1.png"))?, b"not really a png");
//!
//! assert!(engine.verify(&[snapshot], &VerifyOptions::level(VerifyLevel::Deep))?.ok);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod alert;
mod atomic_file;
mod backup;
mod bundle;
mod dashboard;
mod engine;
mod error;
#[cfg(test)]
mod fixtures;
mod health;
mod journal;
mod progress;
mod prune;
mod remove_tree;
mod restore;
mod select;
mod source;
mod spec;
mod status;
mod tree;
mod unlock;
mod verify;
mod wal;

pub(crate) use error::error_chain;

pub use alert::HealthAlert;
pub use atomic_file::write_atomically;
pub use bundle::{check_references, MemberPlan};
pub use dashboard::{human_bytes, Dashboard, SetPanel};
pub use engine::{Engine, Reader};
pub use error::Error;
pub use health::{HealthCheck, HealthOptions, HealthReport, HealthStatus};
pub use journal::{Operation, RunRecord, RunStatus, Verification};
pub use progress::{Cancel, NoProgress, Progress};
pub use prune::{Forgotten, Kept, PruneOptions, PruneReport, SetFailure, SetPolicy, WalPruned};
pub use restore::{
    DataDirTarget, DatabaseRestorer, DirectoryTarget, HolderPlan, Recovery, RestoreDetail,
    RestoreOptions, RestoreOutcome, RestorePlan, RestoreRun, Restored, Restorer, TargetSpec,
};
pub use source::{
    BackupRun, Draft, DumpSource, FilesSource, FilesSpec, ObjectSink, PostgresSpec, SnapshotWork,
    Source, SqliteSpec,
};
pub use spec::{BackupOptions, BundleSpec, References, SetSpec, SourceSpec};
pub use status::{ObjectsRead, RunSummary, SetStatus, SnapshotSummary};
pub use strongbox_retention::{KeepPolicy, Timezone};
pub use strongbox_storage::{DamagedRecord, Records};
pub use strongbox_verify::{Report, VerifyLevel};
pub use tree::{ObjectSource, TreeEntry};
pub use verify::VerifyOptions;
pub use wal::{BackupWindow, Point, Pushed, RecoveryTarget, TimelineWindow, WalObject};
