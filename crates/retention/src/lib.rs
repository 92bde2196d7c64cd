//! Keep policies for strongbox snapshots, as pure functions.
//!
//! [`apply`] takes one set's snapshots ([`Candidate`]s), a [`KeepPolicy`] and the
//! [`Timezone`] whose calendar draws the day/week/month/year buckets, and returns a [`Plan`]:
//! for every snapshot, newest first, whether it is kept and why. The semantics are restic's
//! `forget` (`--keep-last`, `--keep-hourly`, … `--keep-within`, `--keep-tag`), with the
//! deliberate differences listed in `docs/retention.md`. Nothing here reads a clock, a file or
//! the host's timezone: the plan derives from the inputs alone, so it is tested with tables.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use strongbox_retention::{apply, Candidate, KeepPolicy, Timezone};
//!
//! // Ten nightly snapshots, 2025-01-01 … 2025-01-10 at 02:00 UTC.
//! let snapshots: Vec<Candidate> = (1..=10)
//!     .map(|day| {
//!         let time = Utc.with_ymd_and_hms(2025, 1, day, 2, 0, 0).unwrap();
//!         Candidate::new(time.format("%Y%m%dT%H%M%SZ").to_string(), time)
//!     })
//!     .collect();
//! let policy = KeepPolicy { daily: Some(3), ..KeepPolicy::default() };
//!
//! let plan = apply(&policy, &snapshots, Timezone::UTC)?;
//! let kept: Vec<&str> = plan.keep().map(|d| d.id.as_str()).collect();
//! assert_eq!(kept, ["20250110T020000Z", "20250109T020000Z", "20250108T020000Z"]);
//! assert_eq!(plan.decisions[2].reasons, ["daily 3 of 3"]);
//! assert_eq!(plan.forget().count(), 7);
//!
//! // A policy that would keep nothing is refused rather than emptying the set.
//! assert_eq!(
//!     apply(&KeepPolicy::default(), &snapshots, Timezone::UTC),
//!     Err(strongbox_retention::Error::EmptyPolicy)
//! );
//! # Ok::<(), strongbox_retention::Error>(())
//! ```
//!
//! With the `clap` feature, [`KeepPolicy`] derives `clap::Args` so a binary embeds the
//! `--keep-*` flags with `#[command(flatten)]`.

mod error;
mod plan;
mod policy;
mod timezone;

pub use error::Error;
pub use plan::{apply, Candidate, Decision, Plan};
pub use policy::{KeepPolicy, Within};
pub use timezone::Timezone;
