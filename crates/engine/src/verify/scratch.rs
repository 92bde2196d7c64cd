//! Restore tests: a snapshot restored into scratch space (a temporary directory or SQLite
//! file, a scratch PostgreSQL database), checked against its record and by the database's
//! own checks, and removed whether it passed or not.

use std::fs;
use std::io;
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};
use strongbox_archive::HashingReader;
use strongbox_db_dump::{Claim, DatabaseTarget, PostgresTarget, Probe, SqliteTarget};
use strongbox_manifest::{
    BundleStats, FileEntry, FileType, ReferenceCheck, Snapshot, SourceKind, Stats,
};
use strongbox_verify::{Check, CheckName};

use super::VerifyOptions;
use crate::remove_tree::{left_by_gone_processes, remove_left_over};
use crate::restore::{DatabaseRestorer, DirectoryTarget};
use crate::{error_chain, Error, Reader};

/// Scratch databases are named `strongbox_verify_<set>_<UTC time>_<random>`.
const SCRATCH_PREFIX: &str = "strongbox_verify_";
const TIME_FORMAT: &str = "%Y%m%d%H%M%S";

impl Reader {
    /// Restore `snapshot` into scratch space and check it: the checks, and the seconds
    /// the restore took.
    pub(super) fn restore_test(
        &self,
        snapshot: &Snapshot,
        listing_read: bool,
        options: &VerifyOptions,
    ) -> (Vec<Check>, Option<f64>) {
        let failed = |detail: String| (vec![Check::new(CheckName::Restore, Err(detail))], None);
        match snapshot.source {
            SourceKind::Bundle => {
                failed("a bundle is restore-tested through its members".to_string())
            }
            SourceKind::PostgresPhysical => failed(
                "restore tests of base backups are not implemented; verify --level deep \
                 reads the base backup and checks its WAL chain"
                    .to_string(),
            ),
            SourceKind::Files if !listing_read => failed("the listing is unreadable".to_string()),
            SourceKind::Files => match scratch_dir(options) {
                Ok(dir) => self.test_files(snapshot, &dir),
                Err(e) => failed(e),
            },
            SourceKind::Sqlite => match scratch_dir(options) {
                Ok(dir) => {
                    let target = SqliteTarget::new(dir.path().join("restore-test.sqlite3"));
                    self.test_database(snapshot, Box::new(target), options)
                }
                Err(e) => failed(e),
            },
            SourceKind::Postgres => match scratch_database(snapshot, options) {
                Ok(scratch) => {
                    let tested = self.test_database(snapshot, Box::new(scratch.0.clone()), options);
                    drop(scratch);
                    tested
                }
                Err(e) => failed(e),
            },
        }
    }

    fn test_files(
        &self,
        snapshot: &Snapshot,
        dir: &tempfile::TempDir,
    ) -> (Vec<Check>, Option<f64>) {
        let root = dir.path().join("tree");
        let mut target = DirectoryTarget {
            path: root.clone(),
            includes: Vec::new(),
            keep_previous: false,
        };
        let started = Instant::now();
        let restored = self.restore_into(snapshot, &mut target, false);
        let restore_secs = started.elapsed().as_secs_f64();
        let mut check = Check::timed(CheckName::Restore, || {
            restored.map_err(|e| error_chain(&e))?;
            let listing = self
                .checked_listing(snapshot)
                .map_err(|e| error_chain(&e))?;
            compare_tree(&root, listing, snapshot)
        });
        check.duration_secs += restore_secs;
        // The tree may hold read-only directories, which the scratch directory's own
        // removal would leave behind (run by anyone but root).
        if let Err(e) = crate::remove_tree::remove_tree(&root) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %root.display(), error = %e, "could not remove a restore test's tree");
            }
        }
        (vec![check], Some(restore_secs))
    }

    fn test_database(
        &self,
        snapshot: &Snapshot,
        target: Box<dyn DatabaseTarget>,
        options: &VerifyOptions,
    ) -> (Vec<Check>, Option<f64>) {
        let mut restorer = DatabaseRestorer::new(target);
        let started = Instant::now();
        let restored = self.restore_into(snapshot, &mut restorer, false);
        let restore_secs = started.elapsed().as_secs_f64();
        let mut restore = Check::new(
            CheckName::Restore,
            restored
                .map(|r| {
                    let (tables, rows) = match &r.detail {
                        crate::RestoreDetail::Tables(tables) => {
                            (tables.len(), tables.iter().map(|t| t.rows).sum::<u64>())
                        }
                        crate::RestoreDetail::Plan(_) | crate::RestoreDetail::Recovery(_) => (0, 0),
                    };
                    format!("{tables} table(s), {rows} row(s), every count as recorded")
                })
                .map_err(|e| error_chain(&e)),
        );
        restore.duration_secs = restore_secs;
        let mut checks = vec![restore];
        if checks[0].ok {
            let checks_of_set = options
                .checks
                .get(&snapshot.set)
                .map_or(&[][..], Vec::as_slice);
            match restorer.inspect(checks_of_set) {
                Ok(inspections) => checks.extend(inspections.into_iter().map(|i| {
                    let mut check = Check::new(check_name(i.probe), i.result);
                    check.duration_secs = i.duration_secs;
                    check
                })),
                Err(e) => checks.push(Check::new(CheckName::Integrity, Err(error_chain(&e)))),
            }
            checks.extend(self.recheck_references(snapshot, &mut restorer));
        }
        (checks, Some(restore_secs))
    }
}

impl Reader {
    /// When `snapshot` is the database member of a bundle that checked references, re-run
    /// the query the bundle recorded on the restored copy and compare with its counts.
    fn recheck_references(
        &self,
        snapshot: &Snapshot,
        restorer: &mut DatabaseRestorer,
    ) -> Option<Check> {
        let bundles = self.records(None).ok()?.snapshots;
        let (bundle, recorded, references) = bundles.iter().rev().find_map(|b| {
            let Stats::Bundle(BundleStats {
                references: Some(recorded),
            }) = &b.stats
            else {
                return None;
            };
            let r = crate::References::recorded(recorded)?;
            (b.members.get(&snapshot.set) == Some(&snapshot.id) && r.database == snapshot.set)
                .then_some((b, recorded, r))
        })?;
        let started = Instant::now();
        let found = (|| -> Result<ReferenceCheck, Error> {
            let files_id =
                bundle
                    .members
                    .get(&references.files)
                    .ok_or_else(|| Error::BadBundle {
                        set: bundle.set.clone(),
                        reason: format!("the record names no member {:?}", references.files),
                    })?;
            let files = self
                .snapshot_of(&references.files, files_id)?
                .ok_or_else(|| Error::BadBundle {
                    set: bundle.set.clone(),
                    reason: format!("member snapshot {files_id} is gone"),
                })?;
            let mut kept = tempfile::tempfile().map_err(|e| Error::Io {
                operation: "creating a temporary file for",
                path: std::env::temp_dir(),
                source: e,
            })?;
            {
                let mut out = std::io::BufWriter::new(&mut kept);
                restorer.query_restored(&mut |q| references.keep(q, snapshot.source, &mut out))?;
                std::io::Write::flush(&mut out).map_err(|e| Error::Io {
                    operation: "writing the references of",
                    path: std::env::temp_dir(),
                    source: e,
                })?;
            }
            crate::check_references(|| self.file_paths(&files), &mut kept)
        })();
        let outcome = found.map_err(|e| error_chain(&e)).and_then(|found| {
            let said = format!(
                "bundle {} {}: {} referenced, {} missing, {} orphan(s)",
                bundle.set, bundle.id, found.checked, found.missing_count, found.orphans_count
            );
            if (found.checked, found.missing_count, found.orphans_count)
                == (recorded.checked, recorded.missing_count, recorded.orphans_count)
            {
                Ok(format!("{said} on the restored copy, as recorded"))
            } else {
                Err(format!(
                    "{said} on the restored copy; the record says {} referenced, {} missing, {} orphan(s)",
                    recorded.checked, recorded.missing_count, recorded.orphans_count
                ))
            }
        });
        let mut check = Check::new(CheckName::References, outcome);
        check.duration_secs = started.elapsed().as_secs_f64();
        Some(check)
    }
}

fn check_name(probe: Probe) -> CheckName {
    match probe {
        Probe::Integrity => CheckName::Integrity,
        Probe::ForeignKeys => CheckName::ForeignKeys,
        Probe::Indexes => CheckName::Indexes,
        Probe::Query => CheckName::Query,
    }
}

/// A temporary directory for a restore test, removed when dropped; first, what killed
/// verifications left in the same place is removed.
fn scratch_dir(options: &VerifyOptions) -> Result<tempfile::TempDir, String> {
    let prefix = strongbox_db_dump::scratch_prefix();
    let builder = tempfile::Builder::new().prefix(&prefix).to_owned();
    let temp = std::env::temp_dir();
    remove_killed_scratch(&temp);
    match &options.scratch_dir {
        Some(dir) => {
            remove_killed_scratch(dir);
            builder
                .tempdir_in(dir)
                .map_err(|e| format!("making a scratch directory in {}: {e}", dir.display()))
        }
        None => builder
            .tempdir_in(&temp)
            .map_err(|e| format!("making a scratch directory: {e}")),
    }
}

/// Remove the scratch directories in `parent` of verifications whose process is gone from
/// this host: a restore test killed with -9 left its tree (450 MB of them in one
/// walkthrough) for good. Another host's, on a shared scratch directory, are left alone.
fn remove_killed_scratch(parent: &Path) {
    let scratch = |name: &str| {
        strongbox_db_dump::scratch_owner(name).map(|(pid, host)| (pid, host.to_string()))
    };
    for path in left_by_gone_processes(parent, scratch) {
        remove_left_over(
            &path,
            "the scratch directory of a verification that was killed",
        );
    }
}

/// The restored tree holds exactly the listing (streamed, so that memory does not grow with
/// the tree): every entry with its kind, every file with its size and SHA-256 (read back
/// from disk), every symlink with its target; and the counts are the record's.
fn compare_tree(
    root: &Path,
    listing: impl Iterator<Item = Result<FileEntry, Error>>,
    snapshot: &Snapshot,
) -> Result<String, String> {
    let (mut files, mut dirs, mut symlinks, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut listed = 0u64;
    for entry in listing {
        let entry = entry.map_err(|e| error_chain(&e))?;
        listed += 1;
        let path = root.join(entry.path.as_str());
        let shown = entry.path.as_str();
        let meta = fs::symlink_metadata(&path).map_err(|e| format!("{shown}: {e}"))?;
        match entry.kind {
            FileType::File => {
                if !meta.is_file() {
                    return Err(format!("{shown} is not a regular file"));
                }
                let mut hashing =
                    HashingReader::new(fs::File::open(&path).map_err(|e| format!("{shown}: {e}"))?);
                io::copy(&mut hashing, &mut io::sink()).map_err(|e| format!("{shown}: {e}"))?;
                let digest = hashing.digest();
                if digest.size != entry.size || Some(&digest.sha256) != entry.sha256.as_ref() {
                    return Err(format!(
                        "{shown} reads {} bytes with SHA-256 {}, the listing says {} bytes with {}",
                        digest.size,
                        digest.sha256,
                        entry.size,
                        entry.sha256.as_deref().unwrap_or("none")
                    ));
                }
                files += 1;
                bytes += digest.size;
            }
            FileType::Dir if meta.is_dir() => dirs += 1,
            FileType::Dir => return Err(format!("{shown} is not a directory")),
            FileType::Symlink => {
                let target = fs::read_link(&path).map_err(|e| format!("{shown}: {e}"))?;
                if Some(target.to_string_lossy().as_ref()) != entry.target.as_deref() {
                    return Err(format!(
                        "{shown} points to {}, the listing says {:?}",
                        target.display(),
                        entry.target
                    ));
                }
                symlinks += 1;
            }
        }
    }
    let on_disk = count_entries(root).map_err(|e| format!("reading the restored tree: {e}"))?;
    if on_disk != listed {
        return Err(format!(
            "the restored tree holds {on_disk} entries, the listing {listed}"
        ));
    }
    if let Stats::Files(stats) = &snapshot.stats {
        let counted = [
            ("files", files, stats.files),
            ("directories", dirs, stats.dirs),
            ("symlinks", symlinks, stats.symlinks),
            ("bytes", bytes, stats.bytes),
        ];
        if let Some((what, got, recorded)) =
            counted.iter().find(|(_, got, recorded)| got != recorded)
        {
            return Err(format!("restored {got} {what}, the record says {recorded}"));
        }
    }
    Ok(format!(
        "{files} files, {dirs} directories, {symlinks} symlinks, {bytes} bytes restored; \
         every digest and count as recorded"
    ))
}

fn count_entries(dir: &Path) -> io::Result<u64> {
    let mut count = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        count += 1;
        if entry.file_type()?.is_dir() {
            count += count_entries(&entry.path())?;
        }
    }
    Ok(count)
}

/// A scratch database, claimed while the test runs and dropped when this is (pass, fail,
/// cancel or panic); a process killed outright leaves it unclaimed for the next test to drop.
struct ScratchDatabase(PostgresTarget, Option<Claim>);

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let dropped = self.0.drop_database();
        self.1.take();
        match dropped {
            Ok(()) => tracing::debug!(database = self.0.dbname(), "dropped the scratch database"),
            Err(e) => tracing::warn!(
                database = self.0.dbname(),
                error = &e as &dyn std::error::Error,
                "could not drop the scratch database; the next restore test on this server drops it"
            ),
        }
    }
}

/// A new scratch database for `snapshot` on the configured server, after checking that
/// the server is not older than the one the dump came from.
fn scratch_database(
    snapshot: &Snapshot,
    options: &VerifyOptions,
) -> Result<ScratchDatabase, String> {
    let server = options.scratch_postgres.as_deref().ok_or(
        "no scratch PostgreSQL server to restore into: give --scratch-postgres URL \
         (or [verify] scratch_postgres, or STRONGBOX_VERIFY_PG)",
    )?;
    let target = PostgresTarget::scratch(server, &scratch_name(&snapshot.set, Utc::now()))
        .map_err(|e| error_chain(&e))?;
    let major = target.server_major().map_err(|e| error_chain(&e))?;
    if let Stats::Database(stats) = &snapshot.stats {
        let dumped: u32 = stats
            .server_version
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < dumped {
            return Err(format!(
                "the scratch server runs PostgreSQL {major}, older than the dump's {}: \
                 restore tests need a server at least as new",
                stats.server_version
            ));
        }
    }
    let claim = target.claim().map_err(|e| error_chain(&e))?;
    Ok(ScratchDatabase(target, Some(claim)))
}

/// `strongbox_verify_<set>_<time>_<random>`, at most 63 bytes (PostgreSQL's limit).
fn scratch_name(set: &str, now: DateTime<Utc>) -> String {
    let set: String = set
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    format!(
        "{SCRATCH_PREFIX}{set}_{}_{:06x}",
        now.format(TIME_FORMAT),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// Drop the scratch databases on `server` that no live restore test claims: those that
/// killed or crashed tests left behind.
pub(super) fn drop_stale_databases(server: &str) {
    let stale = PostgresTarget::scratch(server, "postgres").and_then(|admin| {
        let names = admin.databases_named(SCRATCH_PREFIX)?;
        admin.unclaimed(&names)
    });
    let names = match stale {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "could not look for stale scratch databases"
            );
            return;
        }
    };
    for name in names {
        let dropped = PostgresTarget::scratch(server, &name).and_then(|t| t.drop_database());
        match dropped {
            Ok(()) => {
                tracing::info!(database = %name, "dropped a scratch database a killed restore test left")
            }
            Err(e) => {
                tracing::warn!(database = %name, error = &e as &dyn std::error::Error, "could not drop a stale scratch database")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_fit_postgres_and_carry_set_and_time() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T04:05:06Z")
            .unwrap()
            .to_utc();
        let cases = [
            ("maindb", "strongbox_verify_maindb_20261201040506_"),
            ("Main-DB.v2", "strongbox_verify_main_db_v2_20261201040506_"),
            (
                &"x".repeat(100),
                "strongbox_verify_xxxxxxxxxxxxxxxxxxxxxxxx_20261201040506_",
            ),
        ];
        for (set, prefix) in cases {
            let name = scratch_name(set, now);
            assert!(name.starts_with(prefix), "{name}");
            assert!(name.len() <= 63, "{name}");
        }
    }
}
