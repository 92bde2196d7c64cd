//! Verification: the checks of `strongbox_verify` driven over a repository, up to restore
//! tests in scratch space ([`scratch`]).

mod budget;
mod scratch;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use chrono::Utc;
use strongbox_db_dump::SqlCheck;
use strongbox_manifest::{ObjectRef, ObjectRole, Snapshot, SnapshotId, SourceKind};
use strongbox_storage::{layout, DamagedRecord};
use strongbox_verify::{
    objects_present, Check, CheckName, Report, SnapshotReport, TreeCheck, VerifyLevel,
};

use crate::journal::{Operation, RunOutcome, Verification};
use crate::tree::OPEN_BUDGET;
use crate::{Error, Reader};

/// How to verify.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// How thoroughly.
    pub level: VerifyLevel,
    /// Where restore tests of files and SQLite snapshots restore (a temporary directory
    /// inside it); default: the system's temporary directory.
    pub scratch_dir: Option<PathBuf>,
    /// A PostgreSQL server (a connection string; the role must be allowed to create
    /// databases) on which restore tests of PostgreSQL snapshots make scratch databases.
    pub scratch_postgres: Option<String>,
    /// Per set, the operator's queries a restore test runs against the restored database.
    pub checks: BTreeMap<String, Vec<SqlCheck>>,

    /// Deep verification on a budget: read about this many stored bytes, the objects
    /// verified least recently first, instead of every snapshot whole.
    pub budget: Option<u64>,
}

impl std::fmt::Debug for VerifyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyOptions")
            .field("level", &self.level)
            .field("scratch_dir", &self.scratch_dir)
            .field(
                "scratch_postgres",
                &self
                    .scratch_postgres
                    .as_deref()
                    .map(strongbox_db_dump::redact_conninfo),
            )
            .field("checks", &self.checks)
            .field("budget", &self.budget)
            .finish()
    }
}

impl VerifyOptions {
    /// Refuse a restore test's scratch directory that is missing or not a directory: the
    /// operator's input, refused before any snapshot is marked failed (or taken, by
    /// `backup --verify`).
    pub fn check_scratch(&self) -> Result<(), Error> {
        let scratch = self.scratch_dir.as_deref();
        let Some(dir) = scratch.filter(|_| self.level == VerifyLevel::Restore) else {
            return Ok(());
        };
        let meta =
            std::fs::metadata(dir).map_err(|e| Error::io("reading scratch directory", dir, e))?;
        if !meta.is_dir() {
            let e = std::io::Error::from(std::io::ErrorKind::NotADirectory);
            return Err(Error::io("reading scratch directory", dir, e));
        }
        Ok(())
    }

    /// Verify at `level`, with default scratch space.
    pub fn level(level: VerifyLevel) -> Self {
        VerifyOptions {
            level,
            ..Default::default()
        }
    }
}

/// What a restore of `snapshot` writes: its files' bytes, or its dump's.
fn restored_bytes(snapshot: &Snapshot) -> u64 {
    match &snapshot.stats {
        strongbox_manifest::Stats::Files(f) => f.bytes,
        strongbox_manifest::Stats::Database(d) => d.bytes_dumped,
        strongbox_manifest::Stats::Physical(p) => p.bytes_read,
        strongbox_manifest::Stats::Bundle(_) => 0,
    }
}

/// The first failed check, for the journal: `snapshot <id>: <check>: <detail>`, and how
/// many snapshots failed.
pub(super) fn first_failure(reports: &[SnapshotReport]) -> Option<String> {
    let failed = reports.iter().filter(|r| !r.ok).count();
    let report = reports.iter().find(|r| !r.ok)?;
    let check = report.checks.iter().find(|c| !c.ok)?;
    let more = if failed > 1 {
        format!(" (and {} more failed snapshot(s))", failed - 1)
    } else {
        String::new()
    };
    Some(format!(
        "snapshot {}: {}: {}{more}",
        report.id, check.name, check.detail
    ))
}

/// The listing check `listed` (every holder's archive is there), then each drawn archive
/// with the size its record names: a quick check of a chain covers the archives it draws
/// from as it covers the snapshot's own.
fn drawn_present(listed: Check, drawn: &[(SnapshotId, ObjectRef)], objects: &SetObjects) -> Check {
    if !listed.ok {
        return listed;
    }
    for (holder, object) in drawn {
        let problem = match objects.sizes.get(&object.key) {
            None => format!("draws from the archive of snapshot {holder}, which is missing"),
            Some(&size) if size != object.size => format!(
                "draws from the archive of snapshot {holder}: {} has {size} bytes, the record says {}",
                object.key, object.size
            ),
            Some(_) => continue,
        };
        return Check::new(CheckName::Listing, Err(problem));
    }
    listed
}

/// What one listing of a set's data tells every snapshot verified in it.
struct SetObjects {
    /// Size of each data object, by key.
    sizes: HashMap<String, u64>,
    /// The snapshots that have an archive object.
    archives: HashSet<SnapshotId>,
    /// Archives whose records are forgotten, with the size and digest those named.
    retained: HashMap<SnapshotId, ObjectRef>,
    /// The archive of each holder a listing drew from so far, as its record (or the
    /// retained list) names it; `None` when neither does; an error when the record does
    /// not read.
    drawn: HashMap<SnapshotId, Result<Option<ObjectRef>, String>>,
    /// The snapshots this run verifies: each hashes its own archive.
    in_run: HashSet<SnapshotId>,
    /// The archives hashed so far, by holder, and whether each matched: each once, with
    /// its own snapshot or with the first listing that draws from it.
    hashed: HashMap<SnapshotId, Result<(), String>>,
}

impl Reader {
    /// Check `snapshots` as `options` say; each set's attempt goes into its run journal,
    /// with each snapshot's result.
    pub fn verify(&self, snapshots: &[Snapshot], options: &VerifyOptions) -> Result<Report, Error> {
        self.verify_records(snapshots, &[], options)
    }

    /// [`Reader::verify`], where each of `damaged` (records that cannot be read, as
    /// [`Reader::records`] finds them) is a failed snapshot of its set's report.
    pub fn verify_records(
        &self,
        snapshots: &[Snapshot],
        damaged: &[DamagedRecord],
        options: &VerifyOptions,
    ) -> Result<Report, Error> {
        let level = options.level;
        // A bundle is verified with its members, each at the level asked.
        let mut expanded: Vec<Snapshot> = Vec::with_capacity(snapshots.len());
        for snapshot in snapshots {
            let members = if snapshot.source == SourceKind::Bundle {
                self.bundle_members(snapshot, None).unwrap_or_default()
            } else {
                Vec::new()
            };
            for s in std::iter::once(snapshot.clone()).chain(members) {
                if !expanded.iter().any(|e| e.id == s.id) {
                    expanded.push(s);
                }
            }
        }
        let snapshots = &expanded[..];
        let unreadable = |set: Option<&str>| -> Vec<SnapshotReport> {
            damaged
                .iter()
                .filter(|d| set.is_none_or(|set| d.set == set))
                .map(|d| SnapshotReport::unreadable(&d.set, &d.id, crate::error_chain(&d.error)))
                .collect()
        };
        if let Some(budget) = options.budget {
            let mut report = self.verify_budget(snapshots, budget)?;
            report.snapshots.extend(unreadable(None));
            report.ok &= damaged.is_empty();
            return Ok(report);
        }
        options.check_scratch()?;
        if level == VerifyLevel::Restore
            && snapshots.iter().any(|s| s.source == SourceKind::Postgres)
        {
            if let Some(server) = &options.scratch_postgres {
                scratch::drop_stale_databases(server);
            }
        }
        let mut by_set: BTreeMap<&str, Vec<&Snapshot>> = BTreeMap::new();
        for snapshot in snapshots {
            by_set.entry(&snapshot.set).or_default().push(snapshot);
        }
        for d in damaged {
            by_set.entry(&d.set).or_default();
        }
        let mut reports = Vec::new();
        for (set, snapshots) in by_set {
            let checked = self.journaled(
                set,
                Operation::Verify,
                None,
                || {
                    let mut reports = self.verify_set(set, &snapshots, options)?;
                    reports.extend(unreadable(Some(set)));
                    Ok(reports)
                },
                |reports: &Vec<SnapshotReport>| RunOutcome {
                    ok: reports.iter().all(|r| r.ok),
                    bytes: None,
                    verified: reports
                        .iter()
                        .map(|r| Verification {
                            snapshot: r.id.clone(),
                            level,
                            ok: r.ok,
                            time: Utc::now(),
                            restore_secs: r.restore_secs,
                            restore_bytes: r.restore_secs.and_then(|_| {
                                snapshots
                                    .iter()
                                    .find(|s| s.id.as_str() == r.id)
                                    .map(|s| restored_bytes(s))
                            }),
                        })
                        .collect(),
                    problem: first_failure(reports),
                    detail: None,
                    objects_read: if level >= VerifyLevel::Checksum {
                        snapshots
                            .iter()
                            .flat_map(|s| s.objects.iter().map(|o| o.key.clone()))
                            .collect()
                    } else {
                        Vec::new()
                    },
                },
            )?;
            reports.extend(checked);
        }
        Ok(Report::new(level, reports))
    }

    fn verify_set(
        &self,
        set: &str,
        snapshots: &[&Snapshot],
        options: &VerifyOptions,
    ) -> Result<Vec<SnapshotReport>, Error> {
        // One listing of the set's data serves every snapshot, and finds the archives a
        // files listing draws from.
        let sizes: HashMap<String, u64> = self
            .repo
            .list(&layout::data_prefix(set))?
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        let archives: HashSet<SnapshotId> = sizes
            .keys()
            .filter_map(|key| SnapshotId::parse(layout::archive_id(key)?).ok())
            .collect();
        // Archives whose records are forgotten, with the size and digest those named.
        let retained: HashMap<SnapshotId, ObjectRef> = self
            .repo
            .retained(set)?
            .into_iter()
            .filter_map(|o| Some((SnapshotId::parse(layout::archive_id(&o.key)?).ok()?, o)))
            .collect();
        let mut set_objects = SetObjects {
            sizes,
            archives,
            retained,
            drawn: snapshots
                .iter()
                .map(|s| (s.id.clone(), Ok(s.object(ObjectRole::Archive).cloned())))
                .collect(),
            in_run: snapshots.iter().map(|s| s.id.clone()).collect(),
            hashed: HashMap::new(),
        };
        let mut reports = Vec::new();
        self.progress.phase("verifying", None);
        for snapshot in snapshots {
            self.cancel.check()?;
            reports.push(self.verify_snapshot(snapshot, &mut set_objects, options));
        }
        self.progress.finish();
        // An archive hashed with one snapshot fails every other that draws from it, in
        // whatever order they came.
        let reports: Vec<SnapshotReport> = reports
            .into_iter()
            .map(|(mut report, holders)| {
                let failed = holders
                    .iter()
                    .find_map(|h| match set_objects.hashed.get(h) {
                        Some(Err(e)) => Some((h, e)),
                        _ => None,
                    });
                let check = report
                    .checks
                    .iter_mut()
                    .find(|c| c.name == CheckName::Checksum && c.ok);
                if let (Some((holder, e)), Some(check)) = (failed, check) {
                    check.ok = false;
                    check.detail = format!("draws from the archive of snapshot {holder}: {e}");
                    report.ok = false;
                }
                report
            })
            .collect();
        for report in reports.iter().filter(|r| !r.ok) {
            tracing::warn!(id = %report.id, "verification failed");
        }
        Ok(reports)
    }

    /// The report of `snapshot`, and the holders its listing draws from.
    fn verify_snapshot(
        &self,
        snapshot: &Snapshot,
        set_objects: &mut SetObjects,
        options: &VerifyOptions,
    ) -> (SnapshotReport, Vec<SnapshotId>) {
        let level = options.level;
        if snapshot.source == SourceKind::Bundle {
            let members = self.bundle_members(snapshot, None).map(|m| {
                m.iter()
                    .map(|s| format!("{} {}", s.set, s.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            let check = Check::new(
                CheckName::Members,
                members.map_err(|e| crate::error_chain(&e)),
            );
            return (SnapshotReport::new(snapshot, vec![check]), Vec::new());
        }
        let mut checks = vec![objects_present(snapshot, &set_objects.sizes)];
        if let Some(physical) = snapshot.physical() {
            let chain = self
                .wal(&snapshot.set, physical.wal_segment_size)
                .map_err(|e| crate::error_chain(&e))
                .and_then(|wal| self.wal_chain(physical, &wal, level >= VerifyLevel::Deep));
            checks.push(Check::new(CheckName::WalChain, chain));
        }
        // The listing is checked as it streams. A deep check reads it once, beside the
        // archives; it is read alone for the other levels (a restore test reads it again to
        // compare the restored tree with), and after a deep read failed, to tell a damaged
        // listing from a damaged archive.
        let files = snapshot.source == SourceKind::Files;
        let mut streamed = None;
        let content = (files && level == VerifyLevel::Deep).then(|| {
            Check::timed(CheckName::Content, || {
                let mut entries = 0u64;
                let tree = self
                    .read_streamed(
                        snapshot,
                        OPEN_BUDGET,
                        |_| Ok(()),
                        |_| {
                            entries += 1;
                            Ok(())
                        },
                    )
                    .map_err(|e| crate::error_chain(&e))?;
                streamed = Some(tree);
                Ok(format!("{entries} entries read and matched"))
            })
        });
        let read = match streamed {
            Some(tree) => Some(Ok(tree)),
            None => files.then(|| self.read_listing(snapshot)),
        };
        // The archives of earlier snapshots the listing draws from: a restore reads them too.
        let holders: Vec<SnapshotId> = match &read {
            Some(Ok(tree)) => tree
                .holders()
                .iter()
                .filter(|h| **h != snapshot.id)
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        let mut unreadable = None;
        let drawn: Vec<(SnapshotId, ObjectRef)> = holders
            .iter()
            .filter_map(|h| match self.archive_of(snapshot, h, set_objects) {
                Ok(archive) => Some((h.clone(), archive?)),
                Err(e) => {
                    unreadable.get_or_insert_with(|| {
                        format!(
                            "draws from the archive of snapshot {h}, whose record cannot be \
                             read: {e}"
                        )
                    });
                    None
                }
            })
            .collect();
        if let Some(read) = &read {
            checks.push(match (read, unreadable) {
                (Ok(_), Some(e)) => Check::new(CheckName::Listing, Err(e)),
                (Ok(tree), None) => {
                    drawn_present(tree.check(&set_objects.archives), &drawn, set_objects)
                }
                (Err(e), _) => Check::new(CheckName::Listing, Err(e.clone())),
            });
        }
        let listing_read = matches!(read, Some(Ok(_)));
        if level >= VerifyLevel::Checksum {
            // Each archive once per run: the other snapshots drawing from it get its result.
            let unhashed: Vec<(SnapshotId, ObjectRef)> = drawn
                .into_iter()
                .filter(|(h, _)| {
                    !set_objects.in_run.contains(h) && !set_objects.hashed.contains_key(h)
                })
                .collect();
            checks.push(Check::timed(CheckName::Checksum, || {
                self.checksums(snapshot, &unhashed, &mut set_objects.hashed)
            }));
        }
        if level == VerifyLevel::Restore {
            // A restore reads and checks everything the deep check would.
            let (tested, restore_secs) = self.restore_test(snapshot, listing_read, options);
            checks.extend(tested);
            let mut report = SnapshotReport::new(snapshot, checks);
            report.restore_secs = restore_secs;
            return (report, holders);
        }
        if level >= VerifyLevel::Deep {
            checks.push(match content {
                Some(check) if matches!(read, Some(Ok(_))) => check,
                Some(_) => Check::new(CheckName::Content, Err("listing unreadable".to_string())),
                None => Check::timed(CheckName::Content, || self.check_dumps(snapshot)),
            });
        }
        (SnapshotReport::new(snapshot, checks), holders)
    }

    /// A files snapshot's listing, streamed through a [`TreeCheck`]. The error is the
    /// listing check's detail.
    fn read_listing(&self, snapshot: &Snapshot) -> Result<TreeCheck, String> {
        let chain = |e: Error| crate::error_chain(&e);
        let mut listing = self.checked_listing(snapshot).map_err(chain)?;
        for entry in &mut listing {
            entry.map_err(chain)?;
        }
        Ok(listing.tree)
    }

    /// The archive of `holder` that `snapshot`'s listing draws from, as its record (or the
    /// set's retained list, once forgotten) names it; `None` when neither does (the listing
    /// check names a missing archive); an error when the record does not read. Each
    /// holder's record is read once per run.
    fn archive_of(
        &self,
        snapshot: &Snapshot,
        holder: &SnapshotId,
        set_objects: &mut SetObjects,
    ) -> Result<Option<ObjectRef>, String> {
        let retained = &set_objects.retained;
        set_objects
            .drawn
            .entry(holder.clone())
            .or_insert_with(|| {
                if let Some(retained) = retained.get(holder) {
                    return Ok(Some(retained.clone()));
                }
                let record = self
                    .snapshot_of(&snapshot.set, holder)
                    .map_err(|e| crate::error_chain(&e))?;
                Ok(record.and_then(|r| r.object(ObjectRole::Archive).cloned()))
            })
            .clone()
    }

    /// Hash `snapshot`'s objects and the `drawn` archives, noting each archive's result in
    /// `hashed`; the first failure, or what was hashed.
    fn checksums(
        &self,
        snapshot: &Snapshot,
        drawn: &[(SnapshotId, ObjectRef)],
        hashed: &mut HashMap<SnapshotId, Result<(), String>>,
    ) -> Result<String, String> {
        let own = snapshot.objects.iter().map(|o| {
            let archive = o.role == ObjectRole::Archive;
            (archive.then_some(&snapshot.id), o)
        });
        let objects: Vec<_> = own.chain(drawn.iter().map(|(h, o)| (Some(h), o))).collect();
        let (mut bytes, mut first_failure) = (0, None);
        for (holder, object) in &objects {
            let result = self
                .repo
                .check_object(object)
                .map(|n| bytes += n)
                .map_err(|e| crate::error_chain(&e));
            if let Some(holder) = holder {
                hashed.insert((*holder).clone(), result.clone());
            }
            if let Err(e) = result {
                first_failure.get_or_insert(match holder {
                    Some(h) if *h != &snapshot.id => {
                        format!("draws from the archive of snapshot {h}: {e}")
                    }
                    _ => e,
                });
            }
        }
        match first_failure {
            Some(e) => Err(e),
            None => Ok(format!("{} objects, {bytes} bytes hashed", objects.len())),
        }
    }

    fn check_dumps(&self, snapshot: &Snapshot) -> Result<String, String> {
        let mut summaries = Vec::new();
        for object in snapshot
            .objects
            .iter()
            .filter(|o| o.role == ObjectRole::Dump)
        {
            let mut dump = self
                .repo
                .open_object(&object.key, Some(object))
                .map_err(|e| crate::error_chain(&e))?;
            let summary = strongbox_db_dump::verify_dump(snapshot.source, &mut dump)
                .map_err(|e| format!("{}: {}", object.key, crate::error_chain(&e)))?;
            summaries.push(summary);
        }
        Ok(summaries.join("; "))
    }
}
