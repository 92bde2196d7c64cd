//! `status`: what an operator asks first, per set, computed from the repository and its
//! run journal alone, so any host sees the same answer.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use strongbox_manifest::Snapshot;
use strongbox_storage::{holder_alive, layout, Records};

use crate::journal::{Operation, RunRecord, RunStatus, Verification};
use crate::{Error, Reader};

/// One set's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetStatus {
    /// The set.
    pub set: String,
    /// Snapshots in the repository.
    pub snapshots: usize,
    /// Bytes of the set's stored data objects.
    pub stored_bytes: u64,
    /// The newest snapshot.
    pub last_snapshot: Option<SnapshotSummary>,
    /// Of each operation (backup, verify, restore, prune), the run that ended last, or a
    /// running one begun since.
    pub last_runs: BTreeMap<String, RunSummary>,
    /// The newest verification of any snapshot of the set.
    pub last_verification: Option<Verification>,
    /// When the set's data objects were last read whole by a verification.
    pub objects: ObjectsRead,
    /// Ids of the set's snapshot records that cannot be read (`health` names the cause).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged_records: Vec<String>,
    /// Journal entries still `running`: a live run, or a crashed one.
    #[serde(skip)]
    pub unfinished: Vec<RunRecord>,
}

/// A snapshot, briefly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotSummary {
    /// Its id.
    pub id: String,
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// full, incremental or differential.
    pub kind: String,
    /// files, postgres or sqlite.
    pub source: String,
    /// Bytes it stored.
    pub bytes_stored: u64,
}

/// One run, briefly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// How it ended (or `running`).
    pub status: RunStatus,
    /// When it started.
    pub started: DateTime<Utc>,
    /// Seconds it took.
    pub duration_secs: Option<f64>,
    /// Its error, if it failed.
    pub error: Option<String>,
    /// The snapshot it made or used.
    pub snapshot: Option<String>,
}

/// When the set's data objects were last verified by reading them whole.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectsRead {
    /// Data objects stored.
    pub total: usize,
    /// Of those, never read by a verification.
    pub never_read: usize,
    /// The oldest last read among the others.
    pub oldest_read: Option<DateTime<Utc>>,
}

impl Reader {
    /// The status of each of `sets`; when it is empty, of every set in the repository and
    /// every one of `expected` (the configured sets), so that a set that was never backed up
    /// is shown with no snapshot, as `health` checks it, rather than left out.
    pub fn status(&self, sets: &[String], expected: &[String]) -> Result<Vec<SetStatus>, Error> {
        let sets = if sets.is_empty() {
            let mut all = self.sets()?;
            all.extend(expected.iter().cloned());
            all.sort();
            all.dedup();
            all
        } else {
            sets.to_vec()
        };
        sets.iter()
            .map(|set| self.set_status(set, &self.records(Some(set))?))
            .collect()
    }

    /// The status of `set`, whose `records` the caller has read already.
    pub(crate) fn set_status(&self, set: &str, records: &Records) -> Result<SetStatus, Error> {
        let snapshots = &records.snapshots;
        let objects = self.repo.list(&layout::data_prefix(set))?;
        let runs = self.runs(set)?;
        // Of each operation, the run that ended last (a running one, when it began): one
        // refused by a lock ends before the run that holds the lock, which began earlier.
        let mut last: BTreeMap<&str, &RunRecord> = BTreeMap::new();
        let mut last_verification: Option<Verification> = None;
        let mut last_read: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
        for run in &runs {
            let ended = |r: &RunRecord| r.finished.unwrap_or(r.started);
            let slot = last.entry(run.operation.as_str()).or_insert(run);
            if ended(run) >= ended(slot) {
                *slot = run;
            }
            for v in &run.verified {
                if last_verification.as_ref().is_none_or(|l| l.time <= v.time) {
                    last_verification = Some(v.clone());
                }
            }
            for key in &run.objects_read {
                last_read.insert(key, run.finished.unwrap_or(run.started));
            }
        }
        let read: Vec<DateTime<Utc>> = objects
            .iter()
            .filter_map(|o| last_read.get(o.key.as_str()).copied())
            .collect();
        Ok(SetStatus {
            set: set.to_string(),
            snapshots: snapshots.len(),
            stored_bytes: objects.iter().map(|o| o.size).sum(),
            last_snapshot: snapshots.last().map(snapshot_summary),
            last_runs: last
                .into_iter()
                .map(|(operation, run)| (operation.to_string(), summary(run)))
                .collect(),
            last_verification,
            damaged_records: records.damaged.iter().map(|d| d.id.clone()).collect(),
            unfinished: runs
                .iter()
                .filter(|r| r.status == RunStatus::Running)
                .cloned()
                .collect(),
            objects: ObjectsRead {
                total: objects.len(),
                never_read: objects.len() - read.len(),
                oldest_read: read.into_iter().min(),
            },
        })
    }
}

/// `run`, briefly. One still `running` whose process is gone from this host crashed (a
/// kill -9, a full disk that kept its last entry from being written): it failed, rather
/// than run for ever.
fn summary(run: &RunRecord) -> RunSummary {
    let crashed =
        run.status == RunStatus::Running && holder_alive(&run.host, run.pid) == Some(false);
    RunSummary {
        status: if crashed {
            RunStatus::Failed
        } else {
            run.status
        },
        started: run.started,
        duration_secs: run.duration_secs,
        error: if crashed {
            Some(format!(
                "it did not finish: its process {} on {} is gone",
                run.pid, run.host
            ))
        } else {
            run.error.clone()
        },
        snapshot: run.snapshot.clone(),
    }
}

fn snapshot_summary(snapshot: &Snapshot) -> SnapshotSummary {
    SnapshotSummary {
        id: snapshot.id.to_string(),
        time: snapshot.time,
        kind: snapshot.kind.as_str().to_string(),
        source: snapshot.source.as_str().to_string(),
        bytes_stored: snapshot.bytes_stored(),
    }
}

impl SetStatus {
    /// The last run of `operation`, if any.
    pub fn last_run(&self, operation: Operation) -> Option<&RunSummary> {
        self.last_runs.get(operation.as_str())
    }
}
