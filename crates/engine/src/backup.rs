//! Taking a snapshot: lock, let the source write through its sink, commit, unlock.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use strongbox_manifest::{Snapshot, SnapshotId, FORMAT_VERSION};
use strongbox_storage::{host_name, layout};

use crate::journal::{Operation, RunStatus};
use crate::source::{BackupRun, Draft, ObjectSink, Source};
use crate::spec::{BackupOptions, SetSpec, SourceSpec};
use crate::{Engine, Error};

/// A record ready to be written, and the sink whose objects it names.
pub(crate) struct Pending<'a> {
    pub(crate) record: Snapshot,
    pub(crate) sink: ObjectSink<'a>,
}

impl Engine {
    /// Take a snapshot of what `spec` names (a bundle: of its members, then its record).
    pub fn backup(&self, spec: &SetSpec) -> Result<Snapshot, Error> {
        layout::check_set_name(&spec.set)?;
        if let SourceSpec::Bundle(bundle) = &spec.source {
            return self.backup_bundle(spec, bundle);
        }
        let mut source = spec.source.open()?;
        self.backup_source(&spec.set, source.as_mut(), &spec.options)
    }

    /// Take a snapshot of `source` into `set`: lock the set, let the source write its
    /// objects, commit the record, unlock. Any failure before the commit leaves no snapshot
    /// and removes the objects written.
    pub fn backup_source(
        &self,
        set: &str,
        source: &mut dyn Source,
        options: &BackupOptions,
    ) -> Result<Snapshot, Error> {
        layout::check_set_name(set)?;
        options.check()?;
        self.locked(
            set,
            Operation::Backup,
            || self.backup_locked(set, source, options),
            |snapshot| (run_status(snapshot), Some(snapshot.id.to_string())),
        )
    }

    fn backup_locked(
        &self,
        set: &str,
        source: &mut dyn Source,
        options: &BackupOptions,
    ) -> Result<Snapshot, Error> {
        let time = options.time.unwrap_or_else(Utc::now);
        let existing = self.parents(set)?;
        let pending = self.prepare(set, source, options, time, &existing)?;
        let mut committed = self.commit(vec![pending])?;
        Ok(committed.pop().expect("one record committed"))
    }

    /// The snapshots of `set` a new one may build on. A damaged record is left out with a
    /// warning, not a stop to every later backup: `health` reports it, and a parent is
    /// chosen among the others.
    pub(crate) fn parents(&self, set: &str) -> Result<Parents, Error> {
        let records = self.records(Some(set))?;
        for damaged in &records.damaged {
            tracing::warn!(
                set,
                snapshot = %damaged.id,
                error = %crate::error_chain(&damaged.error),
                "a damaged record is left out of the parents a backup may build on"
            );
        }
        Ok(Parents {
            snapshots: records.snapshots,
            damaged: records.damaged.into_iter().map(|d| d.id).collect(),
        })
    }

    /// Let `source` write the objects of a snapshot of `set` taken at `time` and make its
    /// record, not yet written. The set must be locked; `existing` are its snapshots.
    pub(crate) fn prepare<'a>(
        &'a self,
        set: &str,
        source: &mut dyn Source,
        options: &BackupOptions,
        time: DateTime<Utc>,
        existing: &'a Parents,
    ) -> Result<Pending<'a>, Error> {
        let started = Instant::now();
        if let Some(other) = existing
            .snapshots
            .iter()
            .find(|s| s.source != source.kind())
        {
            return Err(Error::SetKindMismatch {
                set: set.to_string(),
                existing: other.source.as_str(),
                requested: source.kind().as_str(),
            });
        }
        let id = unused_id(time, existing);
        let mut run = BackupRun {
            reader: self,
            sink: ObjectSink::new(&self.writer, set, id.clone()),
            existing: &existing.snapshots,
        };
        let draft: Draft = source.backup(&mut run)?;
        let record = Snapshot {
            format_version: FORMAT_VERSION,
            id,
            set: set.to_string(),
            kind: draft.kind,
            source: source.kind(),
            parent: draft.parent,
            time,
            tags: distinct(&options.tags),
            host: host_name(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            origin: source.origin(),
            compression: draft.compression.to_string(),
            objects: run.sink.objects().to_vec(),
            stats: draft.stats,
            duration_secs: started.elapsed().as_secs_f64(),
            errors: draft.errors,
            warnings: draft.warnings,
            members: Default::default(),
            restore_point: None,
        };
        Ok(Pending {
            record,
            sink: run.sink,
        })
    }

    /// Check that every object the records name is stored whole, then write the records in
    /// order; the last one is the commit point. Before it, a crash leaves only garbage that
    /// prune collects; a failure removes what the sinks wrote.
    pub(crate) fn commit(&self, pending: Vec<Pending<'_>>) -> Result<Vec<Snapshot>, Error> {
        for Pending { record, .. } in &pending {
            for object in &record.objects {
                let info = self.repo.head(&object.key)?;
                if info.size != object.size {
                    return Err(Error::BadRecord {
                        id: record.id.to_string(),
                        reason: format!(
                            "{} holds {} bytes, {} were written",
                            object.key, info.size, object.size
                        ),
                    });
                }
            }
        }
        self.cancel.check()?;
        // All or nothing (a bundle's members, then the bundle): a record that fails to be
        // written takes back the ones written before it, and every sink dropped unfinished
        // removes its objects.
        let mut written: Vec<(Snapshot, ObjectSink<'_>)> = Vec::with_capacity(pending.len());
        for Pending { record, sink } in pending {
            if let Err(e) = self.writer.put_snapshot(&record) {
                for (earlier, _) in &written {
                    let key = layout::snapshot_key(&earlier.set, &earlier.id);
                    if let Err(undo) = self.writer.delete(&key) {
                        tracing::warn!(%key, error = %crate::error_chain(&undo), "could not take back the record of a failed backup");
                    }
                }
                return Err(e.into());
            }
            written.push((record, sink));
        }
        Ok(written
            .into_iter()
            .map(|(record, sink)| {
                sink.commit();
                tracing::info!(id = %record.id, set = %record.set, "snapshot committed");
                record
            })
            .collect())
    }
}

/// How a backup run ended: incomplete when entries could not be read.
pub(crate) fn run_status(snapshot: &Snapshot) -> RunStatus {
    if snapshot.errors.is_empty() {
        RunStatus::Ok
    } else {
        RunStatus::Incomplete
    }
}

/// The snapshots of a set a new one may build on, and the ids no new one may take.
pub(crate) struct Parents {
    /// The snapshots whose records read.
    pub(crate) snapshots: Vec<Snapshot>,
    /// The ids of damaged records, whose objects a new snapshot of the same id would
    /// overwrite (and its cleanup delete).
    pub(crate) damaged: Vec<String>,
}

impl Parents {
    fn has(&self, id: &SnapshotId) -> bool {
        self.snapshots.iter().any(|s| s.id == *id) || self.damaged.iter().any(|d| d == id.as_str())
    }
}

/// `tags` without repeats, in the order first given.
pub(crate) fn distinct(tags: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    tags.iter()
        .filter(|t| seen.insert(t.as_str()))
        .cloned()
        .collect()
}

/// A new id for a snapshot taken at `time` that no snapshot of the set has, nor any other
/// this process gave out. Ids differ by their millisecond and three random hex digits, so
/// `--time` given twice the same collides once in 4096 backups: the new snapshot's objects
/// would overwrite the old one's, and then be deleted with it when its record (created only
/// if absent) is refused. A bundle and its members share one time: the same id in two sets
/// could not be named by id.
pub(crate) fn unused_id(time: DateTime<Utc>, existing: &Parents) -> SnapshotId {
    static ISSUED: Mutex<BTreeSet<SnapshotId>> = Mutex::new(BTreeSet::new());
    let mut issued = ISSUED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let id = SnapshotId::generate(time);
        if !existing.has(&id) && issued.insert(id.clone()) {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use strongbox_manifest::SnapshotKind;

    use super::*;

    #[test]
    fn a_tag_given_twice_is_kept_once_in_the_order_given() {
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(distinct(&tags(&["c", "a", "c", "a"])), tags(&["c", "a"]));
        assert_eq!(distinct(&[]), Vec::<String>::new());
    }

    /// Two backups given the same `--time` collided once in 4096 runs, and the second
    /// destroyed the first one's data.
    #[test]
    fn a_new_id_is_never_one_the_set_has() {
        let time = Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap();
        let id = |n: u32| format!("20250601T000000Z-000{n:03x}");
        let taken = |n: u32| n % 64 != 7;
        let existing = Parents {
            snapshots: (0..0x1000)
                .filter(|&n| taken(n) && n % 2 == 0)
                .map(|n| crate::fixtures::snapshot("media", &id(n), SnapshotKind::Full))
                .collect(),
            // A damaged record's id is taken too: its objects are still there.
            damaged: (0..0x1000)
                .filter(|&n| taken(n) && n % 2 == 1)
                .map(id)
                .collect(),
        };
        for _ in 0..8 {
            let new = unused_id(time, &existing);
            assert!(!existing.has(&new), "{new}");
            let n = u32::from_str_radix(&new.as_str()[17..], 16).unwrap();
            assert!(!taken(n), "{new}");
        }
    }
}
