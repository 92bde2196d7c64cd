//! Integrity checks of strongbox snapshots and the reports they make.
//!
//! Levels, each including the one before:
//! - [`VerifyLevel::Quick`]: the record parses, every object it names (and, for a files
//!   snapshot, every archive its listing draws from) exists with the recorded size;
//! - [`VerifyLevel::Checksum`]: the SHA-256 of every object matches the record;
//! - [`VerifyLevel::Deep`]: every stream decompresses and parses, and every file's SHA-256
//!   matches the listing — everything a restore needs, without writing anything; a
//!   PostgreSQL dump's table of contents reads with `pg_restore --list`, an SQLite copy
//!   passes `PRAGMA integrity_check`;
//! - [`VerifyLevel::Restore`]: a real restore into scratch space, checked against the record
//!   and by the database's own checks, then removed.
//!
//! A [`Report`] renders as JSON (serde), text and one self-contained HTML page.
//!
//! This crate holds the checks that need no I/O and the report types; the engine reads the
//! repository and drives them (`Reader::verify`).
//!
//! ```
//! use strongbox_verify::{Check, CheckName, Report, SnapshotReport, VerifyLevel};
//!
//! assert_eq!("deep".parse::<VerifyLevel>()?, VerifyLevel::Deep);
//! assert!(VerifyLevel::Deep > VerifyLevel::Quick);
//!
//! let failed = Check::new(CheckName::Checksum, Err("sets/m/data/x.tar.zst: SHA-256 differs".into()));
//! assert!(!failed.ok);
//! let report = Report::new(VerifyLevel::Checksum, Vec::<SnapshotReport>::new());
//! assert!(report.ok, "nothing checked, nothing failed");
//! # Ok::<(), String>(())
//! ```

mod check;
mod error;
mod report;

pub use check::{
    check_tree, objects_present, parse_size, Check, CheckName, Report, SnapshotReport, TreeCheck,
    VerifyLevel,
};
pub use error::Error;
pub use report::{escape as html_escape, Summary};
