//! End-to-end tests of the strongbox binary: one harness, temp-dir helpers in `harness`.

mod alerts;
mod bad_input;
mod bundles;
mod config;
mod crash;
mod daemon;
mod databases;
mod disks;
mod encryption;
mod files;
mod harness;
mod interrupt;
mod listings;
mod locks;
mod operations;
mod package;
mod pitr;
mod prune;
mod recipe;
mod s3;
mod s3_faults;
mod verification;
