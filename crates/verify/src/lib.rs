//! Integrity checks of strongbox snapshots, with read-only access to the repository.
//!
//! Levels, each including the one before:
//! - [`VerifyLevel::Quick`]: the record parses, every object it names (and, for a files
//!   snapshot, every archive its listing draws from) exists with the recorded size;
//! - [`VerifyLevel::Checksum`]: the SHA-256 of every object matches the record;
//! - [`VerifyLevel::Deep`]: every stream decompresses and parses, and every file's SHA-256
//!   matches the listing — everything a restore needs, without writing anything; a
//!   PostgreSQL dump's table of contents reads with `pg_restore --list`, an SQLite copy
//!   passes `PRAGMA integrity_check`.
//!
//! [`read_tree`] is the read path of a files restore, shared with the engine: it streams
//! each holder archive of a listing once and hands the wanted entries to a visitor.
//!
//! ```
//! use strongbox_verify::VerifyLevel;
//! assert_eq!("deep".parse::<VerifyLevel>().unwrap(), VerifyLevel::Deep);
//! assert!(VerifyLevel::Deep > VerifyLevel::Quick);
//! ```

mod check;
mod error;
mod tree;

pub use check::{verify_snapshot, Check, Report, SnapshotReport, VerifyLevel};
pub use error::Error;
pub use tree::{read_tree, TreeEntry};
