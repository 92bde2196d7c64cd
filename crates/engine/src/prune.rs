use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use strongbox_manifest::{ObjectRef, PhysicalStats, Snapshot, SnapshotId, SourceKind};
use strongbox_retention::{apply, Candidate, KeepPolicy, Plan, Timezone};
use strongbox_storage::{layout, ObjectInfo};

use crate::journal::{Operation, RunStatus};
use crate::{error_chain, Engine, Error};

/// The reason prune keeps the newest snapshot of a set that passed a restore test.
pub const RESTORE_TESTED: &str = "restore-tested";

/// One set to prune and the policy that says what it keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetPolicy {
    /// The set.
    pub set: String,
    /// Which of its snapshots to keep.
    pub policy: KeepPolicy,
}

/// How `prune` works, whatever the policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneOptions {
    /// Calendar of the hourly/daily/weekly/monthly/yearly buckets.
    #[serde(default)]
    pub timezone: Timezone,
    /// Plan only; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Unreferenced objects younger than this are left alone. Default 0: prune holds the
    /// set's lock, which every backup of the set holds while it writes, so an object no
    /// record names belongs to a run that is over. A longer grace guards the objects of a
    /// backup whose lock was removed by hand while it still ran.
    #[serde(default = "default_grace", with = "humantime_serde_secs")]
    pub grace: Duration,
    /// Run-journal entries older than this are removed, except each set's last run of
    /// every operation.
    #[serde(default = "default_journal_keep", with = "humantime_serde_secs")]
    pub journal_keep: Duration,
}

/// Older than any `wal push` in flight: a WAL staging file this old was left by a killed one.
const WAL_PUSH_GRACE: Duration = Duration::from_secs(3600);

fn default_grace() -> Duration {
    Duration::ZERO
}

fn default_journal_keep() -> Duration {
    Duration::from_secs(90 * 24 * 3600)
}

mod humantime_serde_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

impl Default for PruneOptions {
    /// UTC buckets, no grace period, 90 days of journal, not a dry run.
    fn default() -> Self {
        PruneOptions {
            timezone: Timezone::UTC,
            dry_run: false,
            grace: default_grace(),
            journal_keep: default_journal_keep(),
        }
    }
}

/// A kept snapshot and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// Snapshot id.
    pub id: String,
    /// Its set.
    pub set: String,
    /// The rules that keep it ("daily 3 of 7", "within 30d", …).
    pub reasons: Vec<String>,
}

/// A forgotten snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forgotten {
    /// Snapshot id.
    pub id: String,
    /// Its set.
    pub set: String,
}

/// What a prune did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    /// Only planned.
    pub dry_run: bool,
    /// Kept snapshots, newest first per set.
    pub keep: Vec<Kept>,
    /// Forgotten snapshots (their records deleted).
    pub forget: Vec<Forgotten>,
    /// Data objects deleted: those of forgotten snapshots no kept listing draws from,
    /// leftovers of failed runs older than the grace period, and WAL files (see `wal`).
    pub deleted_objects: u64,
    /// Bytes of the deleted objects.
    pub freed_bytes: u64,
    /// Keys of the deleted objects.
    pub deleted: Vec<String>,
    /// Data objects kept because a kept snapshot still draws from them although the
    /// snapshot that wrote them is forgotten.
    pub retained_for_chains: Vec<String>,
    /// Run-journal entries removed (older than `journal_keep`).
    #[serde(default)]
    pub journal_removed: Vec<String>,
    /// WAL deleted from physical sets: what no kept base backup needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wal: Vec<WalPruned>,
    /// Sets of a prune of several that failed (the others were pruned).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<SetFailure>,
}

/// A set a prune of several could not prune.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetFailure {
    /// The set.
    pub set: String,
    /// Why, with its causes.
    pub error: String,
}

/// The WAL a prune deletes from one set: every file before the oldest kept base backup's
/// start segment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalPruned {
    /// The set.
    pub set: String,
    /// The first file deleted.
    pub first: String,
    /// The last file deleted.
    pub last: String,
    /// Files deleted.
    pub files: u64,
    /// Bytes they took.
    pub bytes: u64,
}

impl PruneReport {
    /// Add another set's report to this one.
    pub fn merge(&mut self, other: PruneReport) {
        self.keep.extend(other.keep);
        self.forget.extend(other.forget);
        self.deleted_objects += other.deleted_objects;
        self.freed_bytes += other.freed_bytes;
        self.deleted.extend(other.deleted);
        self.retained_for_chains.extend(other.retained_for_chains);
        self.journal_removed.extend(other.journal_removed);
        self.wal.extend(other.wal);
        self.failed.extend(other.failed);
    }
}

impl crate::Reader {
    /// What `policy` keeps of `set`'s `snapshots`, and why; the newest snapshot proven to
    /// restore stays whatever the policy says (reason `restore-tested`), and so does every
    /// member snapshot one of `bundles` (the repository's bundle records, see
    /// [`crate::Reader::bundles`]) names (reason `bundle <set> <id>`).
    pub fn retention_plan(
        &self,
        set: &str,
        snapshots: &[Snapshot],
        policy: &KeepPolicy,
        timezone: Timezone,
        bundles: &[Snapshot],
    ) -> Result<Plan, Error> {
        let tested = self.restore_tested(set)?;
        self.plan(set, snapshots, policy, timezone, bundles, &tested)
    }

    /// [`Self::retention_plan`] with the snapshots proven to restore (`tested`) known.
    fn plan(
        &self,
        set: &str,
        snapshots: &[Snapshot],
        policy: &KeepPolicy,
        timezone: Timezone,
        bundles: &[Snapshot],
        tested: &HashSet<String>,
    ) -> Result<Plan, Error> {
        let candidates: Vec<Candidate> = snapshots
            .iter()
            .map(|s| Candidate::new(s.id.to_string(), s.time).with_tags(s.tags.clone()))
            .collect();
        let mut plan = apply(policy, &candidates, timezone).map_err(|source| Error::Retention {
            set: set.to_string(),
            source,
        })?;
        if let Some(proof) = plan.decisions.iter_mut().find(|d| tested.contains(&d.id)) {
            proof.keep = true;
            proof.reasons.push(RESTORE_TESTED.to_string());
        }
        // A member snapshot stays while a bundle record names it: the bundle restores whole.
        for bundle in bundles {
            let Some(member) = bundle.members.get(set) else {
                continue;
            };
            if let Some(d) = plan.decisions.iter_mut().find(|d| d.id == member.as_str()) {
                d.keep = true;
                d.reasons
                    .push(format!("bundle {} {}", bundle.set, bundle.id));
            }
        }
        Ok(plan)
    }
}

impl Engine {
    /// Apply each set's policy: forget the snapshots it drops, then delete the data objects
    /// no remaining snapshot needs. A dry run plans the same and changes nothing.
    pub fn prune(&self, sets: &[SetPolicy], opts: &PruneOptions) -> Result<PruneReport, Error> {
        let mut report = PruneReport {
            dry_run: opts.dry_run,
            ..PruneReport::default()
        };
        // Read once for every set: the records that keep member snapshots. A damaged record
        // may be a bundle's, keeping members of any set, unless the other records of its set
        // say it is not (a set holds one kind): then no set is pruned. The set holding it is
        // refused below anyway, since prune must know every snapshot of the set it prunes.
        let records = self.records(None)?;
        for damaged in records.damaged {
            let mut kinds = records
                .snapshots
                .iter()
                .filter(|s| s.set == damaged.set)
                .map(|s| s.source)
                .peekable();
            if kinds.peek().is_none() || kinds.any(|k| k == SourceKind::Bundle) {
                return Err(damaged.error.into());
            }
        }
        let bundles = self.bundles(&records.snapshots);
        for SetPolicy { set, policy } in sets {
            layout::check_set_name(set)?;
            let one = if opts.dry_run {
                self.prune_set(set, policy, opts, &bundles)
            } else {
                self.locked(
                    set,
                    Operation::Prune,
                    || self.prune_set(set, policy, opts, &bundles),
                    |_| (RunStatus::Ok, None),
                )
            };
            match one {
                Ok(one) => report.merge(one),
                // One set busy or damaged must not keep the sets after it from their prune
                // (a nightly prune of every set skipped all those sorting after a locked one);
                // storage that fails would fail every set, one timeout after another.
                Err(e) if sets.len() > 1 && !self.cancel.is_cancelled() && !storage_failed(&e) => {
                    let error = error_chain(&e);
                    tracing::warn!(set = %set, %error, "could not prune a set; going on with the others");
                    report.failed.push(SetFailure {
                        set: set.clone(),
                        error,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    fn prune_set(
        &self,
        set: &str,
        policy: &KeepPolicy,
        opts: &PruneOptions,
        bundles: &[Snapshot],
    ) -> Result<PruneReport, Error> {
        let snapshots = self.repo.snapshots(Some(set))?;
        let verify_runs = self.verify_runs(set)?;
        let tested = verify_runs.restore_tested();
        let plan = self.plan(set, &snapshots, policy, opts.timezone, bundles, &tested)?;
        let by_id: HashMap<&str, &Snapshot> =
            snapshots.iter().map(|s| (s.id.as_str(), s)).collect();
        let kept: Vec<&Snapshot> = plan.keep().map(|d| by_id[d.id.as_str()]).collect();
        let forgotten: Vec<&Snapshot> = plan.forget().map(|d| by_id[d.id.as_str()]).collect();

        // Everything a kept snapshot needs: its own objects, every listing its own is a
        // delta of, and every archive its listing draws from, whoever wrote them.
        let objects = self.repo.list(&layout::data_prefix(set))?;
        let archives = self.repo.archives(set)?;
        let mut needed: HashSet<String> = HashSet::new();
        for snapshot in &kept {
            needed.extend(snapshot.objects.iter().map(|o| o.key.clone()));
            if snapshot.source == SourceKind::Files {
                let listing = self.listing_stream(snapshot)?;
                // A delta listing needs every listing back to a whole one.
                needed.extend(listing.objects.iter().map(|o| o.key.clone()));
                // The tree streams by: only the holders it names are kept.
                let mut holders = BTreeSet::new();
                for entry in listing.entries {
                    holders.extend(entry?.holder);
                }
                for holder in &holders {
                    match archives.get(holder) {
                        Some(archive) => needed.insert(archive.key.clone()),
                        None => {
                            return Err(Error::MissingHolder {
                                snapshot: snapshot.id.to_string(),
                                holder: holder.to_string(),
                            })
                        }
                    };
                }
            }
        }
        let owned_by_forgotten: HashSet<&str> = forgotten
            .iter()
            .flat_map(|s| s.objects.iter().map(|o| o.key.as_str()))
            .collect();
        let owned_by_kept: HashSet<&str> = kept
            .iter()
            .flat_map(|s| s.objects.iter().map(|o| o.key.as_str()))
            .collect();
        let now = Utc::now();
        let old_enough = |o: &ObjectInfo| {
            now.signed_duration_since(o.modified)
                .to_std()
                .is_ok_and(|age| age >= opts.grace)
        };
        // Only what a backup names `<id>.<extension>` is strongbox's to delete: a file an
        // operator put in the directory is left alone.
        let ours = |o: &ObjectInfo| {
            layout::parse_data_key(&o.key).is_some_and(|(_, id, _)| SnapshotId::parse(id).is_ok())
        };
        // Delete: objects of forgotten snapshots nobody needs, at once; objects no record
        // owns (failed or interrupted runs) once they are older than the grace period.
        let doomed: Vec<&ObjectInfo> = objects
            .iter()
            .filter(|o| !needed.contains(&o.key))
            .filter(|o| {
                owned_by_forgotten.contains(o.key.as_str())
                    || (!owned_by_kept.contains(o.key.as_str()) && ours(o) && old_enough(o))
            })
            .collect();
        let retained_for_chains: Vec<String> = objects
            .iter()
            .filter(|o| owned_by_forgotten.contains(o.key.as_str()) && needed.contains(&o.key))
            .map(|o| o.key.clone())
            .collect();

        let physical_kept: Vec<&PhysicalStats> = kept.iter().filter_map(|s| s.physical()).collect();
        let wal = match physical_kept.first() {
            Some(p) => self.wal(set, p.wal_segment_size)?,
            None => Vec::new(),
        };
        let doomed_wal = crate::wal::unneeded_wal(&wal, &physical_kept);
        let mut report = PruneReport {
            dry_run: opts.dry_run,
            keep: plan
                .keep()
                .map(|d| Kept {
                    id: d.id.clone(),
                    set: set.to_string(),
                    reasons: d.reasons.clone(),
                })
                .collect(),
            forget: forgotten
                .iter()
                .map(|s| Forgotten {
                    id: s.id.to_string(),
                    set: set.to_string(),
                })
                .collect(),
            deleted_objects: (doomed.len() + doomed_wal.len()) as u64,
            freed_bytes: doomed.iter().map(|o| o.size).sum::<u64>()
                + doomed_wal.iter().map(|o| o.size).sum::<u64>(),
            deleted: doomed.iter().map(|o| o.key.clone()).collect(),
            retained_for_chains,
            journal_removed: {
                let kept_ids: Vec<&str> = kept.iter().map(|s| s.id.as_str()).collect();
                let proof = verify_runs.restore_proof(&kept_ids);
                self.old_journal(set, opts.journal_keep, proof.as_deref())?
            },
            wal: match (doomed_wal.first(), doomed_wal.last()) {
                (Some(first), Some(last)) => vec![WalPruned {
                    set: set.to_string(),
                    first: first.name.clone(),
                    last: last.name.clone(),
                    files: doomed_wal.len() as u64,
                    bytes: doomed_wal.iter().map(|o| o.size).sum(),
                }],
                _ => Vec::new(),
            },
            failed: Vec::new(),
        };
        if opts.dry_run {
            return Ok(report);
        }
        // Records first: once a record is gone its snapshot is forgotten, and an interrupted
        // prune leaves only unreferenced objects, which the next prune deletes.
        for snapshot in &forgotten {
            self.cancel.check()?;
            self.writer
                .delete(&layout::snapshot_key(set, &snapshot.id))?;
            tracing::info!(id = %snapshot.id, "forgot snapshot");
        }
        for object in &doomed {
            self.cancel.check()?;
            self.writer.delete(&object.key)?;
            tracing::debug!(key = %object.key, size = object.size, "deleted object");
        }
        // Pushes take no lock, so only a WAL staging file older than any push could be is
        // a leftover.
        for (prefix, grace) in [
            (layout::data_prefix(set), opts.grace),
            (layout::wal_prefix(set), opts.grace.max(WAL_PUSH_GRACE)),
        ] {
            let (files, bytes) = self.writer.remove_upload_leftovers(&prefix, grace)?;
            report.deleted_objects += files;
            report.freed_bytes += bytes;
        }
        for object in &doomed_wal {
            self.cancel.check()?;
            self.writer.delete(&object.key)?;
        }
        // The retained archives' sizes and digests outlive the records that named them.
        let previous = self.repo.retained(set)?;
        let retained: Vec<ObjectRef> = previous
            .iter()
            .chain(forgotten.iter().flat_map(|s| s.objects.iter()))
            .filter(|o| needed.contains(&o.key) && !owned_by_kept.contains(o.key.as_str()))
            .map(|o| (o.key.clone(), o.clone()))
            .collect::<BTreeMap<_, _>>()
            .into_values()
            .collect();
        if retained != previous {
            self.writer.put_retained(set, &retained)?;
        }
        for key in &report.journal_removed {
            self.writer.delete(key)?;
        }
        Ok(report)
    }

    /// Journal entries of `set` older than `keep`, but never the last of an operation, nor
    /// a verify run from `proof` on ([`crate::journal::VerifyRuns::restore_proof`]). Their names
    /// (`<time>-<operation>-<rand>.json`, ordered as their times) say enough; none is read.
    fn old_journal(
        &self,
        set: &str,
        keep: Duration,
        proof: Option<&str>,
    ) -> Result<Vec<String>, Error> {
        let cutoff =
            Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::TimeDelta::MAX);
        let mut entries: Vec<(chrono::DateTime<Utc>, String, String)> = self
            .repo
            .list(&layout::runs_prefix(set))?
            .into_iter()
            .filter_map(|o| {
                let name = o.key.rsplit('/').next()?.strip_suffix(".json")?.to_string();
                let (time, rest) = name.split_once('-')?;
                let (operation, _) = rest.rsplit_once('-')?;
                let time =
                    chrono::NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%M%S%.3fZ").ok()?;
                Some((time.and_utc(), operation.to_string(), o.key))
            })
            .collect();
        // Newest first: the first entry of each operation is its last run, always kept.
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.0));
        let mut last_seen = HashSet::new();
        Ok(entries
            .into_iter()
            .filter(|(time, operation, key)| {
                let proves = operation == Operation::Verify.as_str()
                    && proof.is_some_and(|from| key.as_str() >= from);
                !last_seen.insert(operation.clone()) && *time < cutoff && !proves
            })
            .map(|(_, _, key)| key)
            .collect())
    }
}

/// Whether `error` is the storage failing (unreachable, refusing, a local disk's I/O) rather
/// than something about one set.
fn storage_failed(error: &Error) -> bool {
    matches!(
        error,
        Error::Storage(
            strongbox_storage::Error::Backend { .. }
                | strongbox_storage::Error::Io { .. }
                | strongbox_storage::Error::Runtime { .. }
        )
    )
}
