//! The run journal: one entry per attempt of an operation on a set, failed ones too.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strongbox_storage::{host_name, layout, ObjectInfo};
use strongbox_verify::VerifyLevel;

use crate::{Error, Reader};

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// A snapshot was taken.
    Backup,
    /// A snapshot was restored.
    Restore,
    /// Snapshots were checked.
    Verify,
    /// Snapshots were forgotten and data deleted.
    Prune,
    /// An alert could not be delivered (journalled only then).
    Alert,
    /// A lock was removed by `unlock`.
    Unlock,
}

impl Operation {
    /// Lower-case name, as in journals and locks.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Backup => "backup",
            Operation::Restore => "restore",
            Operation::Verify => "verify",
            Operation::Prune => "prune",
            Operation::Alert => "alert",
            Operation::Unlock => "unlock",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a run ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Started, not finished (or the process died).
    Running,
    /// Succeeded.
    Ok,
    /// A snapshot was written, but some entries could not be read and are absent.
    Incomplete,
    /// Failed; `error` says why.
    Failed,
}

impl RunStatus {
    /// Lower-case name, as in journals.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Ok => "ok",
            RunStatus::Incomplete => "incomplete",
            RunStatus::Failed => "failed",
        }
    }
}

/// One entry of a set's run journal, `sets/<set>/runs/<time>-<operation>-<rand>.json`:
/// written when an operation starts and rewritten when it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// What ran.
    pub operation: Operation,
    /// The set.
    pub set: String,
    /// How it ended.
    pub status: RunStatus,
    /// Start time.
    pub started: DateTime<Utc>,
    /// End time.
    pub finished: Option<DateTime<Utc>>,
    /// The snapshot made or used.
    pub snapshot: Option<String>,
    /// The error, for a failed run.
    pub error: Option<String>,
    /// What the run did, where its status says too little (the lock an unlock removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Host.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Wall-clock seconds, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
    /// Bytes restored (a restore or restore test), for its throughput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// A verification's result per snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verified: Vec<Verification>,
    /// The objects a verification read whole (checked against their digests), for the
    /// rotation of `verify --budget`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects_read: Vec<String>,
}

/// What a verification found about one snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// The snapshot.
    pub snapshot: String,
    /// The level run.
    pub level: VerifyLevel,
    /// Whether every check passed.
    pub ok: bool,
    /// When.
    pub time: DateTime<Utc>,
    /// Seconds its restore took, for a restore test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_secs: Option<f64>,
    /// Bytes that restore wrote (file content, or the dump), for its throughput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_bytes: Option<u64>,
}

/// How a journaled run went, beyond success or failure.
#[derive(Debug, Default)]
pub(crate) struct RunOutcome {
    /// Every check passed (a verification can succeed as a run and still find problems).
    pub(crate) ok: bool,
    pub(crate) bytes: Option<u64>,
    pub(crate) verified: Vec<Verification>,
    pub(crate) objects_read: Vec<String>,
    /// What to journal as the error when not `ok`.
    pub(crate) problem: Option<String>,
    /// What the run did ([`RunRecord::detail`]).
    pub(crate) detail: Option<String>,
}

pub(crate) struct Journal<'a> {
    reader: &'a Reader,
    name: String,
    record: RunRecord,
}

impl<'a> Journal<'a> {
    pub(crate) fn start(reader: &'a Reader, set: &str, operation: Operation) -> Self {
        let started = Utc::now();
        let name = format!(
            "{}-{operation}-{:04x}",
            started.format("%Y%m%dT%H%M%S%.3fZ"),
            rand::random::<u16>()
        );
        let journal = Journal {
            reader,
            name,
            record: RunRecord {
                operation,
                set: set.to_string(),
                status: RunStatus::Running,
                started,
                finished: None,
                snapshot: None,
                error: None,
                detail: None,
                host: host_name(),
                pid: std::process::id(),
                duration_secs: None,
                bytes: None,
                verified: Vec::new(),
                objects_read: Vec::new(),
            },
        };
        journal.write();
        journal
    }

    fn write(&self) {
        let body = serde_json::to_vec_pretty(&self.record).expect("run records serialize");
        // The journal is a record of attempts; failing to write it must not fail the run.
        if let Err(e) = self
            .reader
            .repo
            .put_run(&self.record.set, &self.name, &body)
        {
            tracing::warn!(set = %self.record.set, error = &e as &dyn std::error::Error, "could not write the run journal");
        }
    }

    pub(crate) fn finish(self, status: RunStatus, snapshot: Option<String>, error: Option<String>) {
        self.finish_with(status, snapshot, error, RunOutcome::default());
    }

    pub(crate) fn finish_with(
        mut self,
        status: RunStatus,
        snapshot: Option<String>,
        error: Option<String>,
        outcome: RunOutcome,
    ) {
        let finished = Utc::now();
        self.record.status = status;
        self.record.finished = Some(finished);
        self.record.duration_secs =
            Some((finished - self.record.started).num_milliseconds() as f64 / 1000.0);
        self.record.snapshot = snapshot;
        self.record.error = error;
        self.record.bytes = outcome.bytes;
        self.record.verified = outcome.verified;
        self.record.objects_read = outcome.objects_read;
        self.record.detail = outcome.detail;
        self.write();
        self.reader.alert_run(&self.record);
    }
}

impl Reader {
    /// `set`'s run journal, oldest first. Entries that do not read are skipped with a
    /// warning: the journal is a record of attempts, not of data.
    pub fn runs(&self, set: &str) -> Result<Vec<RunRecord>, Error> {
        self.runs_of(set, None)
    }

    /// `set`'s run journal, only `operation`'s entries when given (chosen by their names,
    /// so the others are not read).
    pub fn runs_of(
        &self,
        set: &str,
        operation: Option<Operation>,
    ) -> Result<Vec<RunRecord>, Error> {
        let mut runs: Vec<RunRecord> = self
            .keyed_runs(set, operation)?
            .into_iter()
            .map(|(_, run)| run)
            .collect();
        runs.sort_by_key(|run| run.started);
        Ok(runs)
    }

    /// [`Self::runs_of`] with each entry's key, in the keys' order. From a remote store
    /// each entry is a request: read one after another, 300 entries took `status` 8-9 s
    /// from s3s-fs on loopback (0.9-1.0 s fetched ahead, several at once).
    fn keyed_runs(
        &self,
        set: &str,
        operation: Option<Operation>,
    ) -> Result<Vec<(String, RunRecord)>, Error> {
        let objects = self.run_objects(set, operation)?;
        let _ahead = self
            .repo
            .prefetch(objects.iter().map(|o| (o.key.clone(), o.size)));
        Ok(objects
            .into_iter()
            .filter_map(|o| {
                let run = self.read_run(&o.key)?;
                Some((o.key, run))
            })
            .collect())
    }

    /// The keys of `set`'s journal entries (only `operation`'s when given, chosen by their
    /// names), oldest first: names begin with the start time.
    pub(crate) fn run_keys(
        &self,
        set: &str,
        operation: Option<Operation>,
    ) -> Result<Vec<String>, Error> {
        Ok(self
            .run_objects(set, operation)?
            .into_iter()
            .map(|o| o.key)
            .collect())
    }

    /// [`Self::run_keys`], each with its size.
    fn run_objects(
        &self,
        set: &str,
        operation: Option<Operation>,
    ) -> Result<Vec<ObjectInfo>, Error> {
        let prefix = layout::runs_prefix(layout::check_set_name(set)?);
        let infix = operation.map(|o| format!("-{o}-"));
        let mut objects: Vec<ObjectInfo> = self
            .repo
            .list(&prefix)?
            .into_iter()
            .filter(|o| infix.as_ref().is_none_or(|i| o.key.contains(i.as_str())))
            .collect();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// One journal entry; an unreadable one is skipped with a warning.
    pub(crate) fn read_run(&self, key: &str) -> Option<RunRecord> {
        let parsed = self
            .repo
            .read_object(key, None)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                serde_json::from_slice::<RunRecord>(&bytes).map_err(|e| e.to_string())
            });
        parsed
            .map_err(|e| tracing::warn!(%key, error = %e, "skipping an unreadable journal entry"))
            .ok()
    }

    /// The snapshots of `set` whose latest restore test passed.
    pub fn restore_tested(&self, set: &str) -> Result<std::collections::HashSet<String>, Error> {
        Ok(self.verify_runs(set)?.restore_tested())
    }

    /// `set`'s verify runs, read once for what prune asks of them twice: which snapshots
    /// are proven to restore, and which runs prove it.
    pub(crate) fn verify_runs(&self, set: &str) -> Result<VerifyRuns, Error> {
        Ok(VerifyRuns(self.keyed_runs(set, Some(Operation::Verify))?))
    }

    /// When each object of `set` was last read whole by a verification.
    pub fn objects_last_read(
        &self,
        set: &str,
    ) -> Result<std::collections::HashMap<String, DateTime<Utc>>, Error> {
        let mut last = std::collections::HashMap::new();
        for run in self.runs_of(set, Some(Operation::Verify))? {
            let when = run.finished.unwrap_or(run.started);
            for key in run.objects_read {
                last.insert(key, when);
            }
        }
        Ok(last)
    }

    /// The latest verification of each snapshot of `set`, by snapshot id.
    pub fn last_verifications(
        &self,
        set: &str,
    ) -> Result<std::collections::HashMap<String, Verification>, Error> {
        let mut last = std::collections::HashMap::new();
        for run in self.runs_of(set, Some(Operation::Verify))? {
            for verification in run.verified {
                last.insert(verification.snapshot.clone(), verification);
            }
        }
        Ok(last)
    }
}

/// A set's verify runs with their keys, in the keys' order: oldest first, as their names
/// begin with the start time.
pub(crate) struct VerifyRuns(Vec<(String, RunRecord)>);

impl VerifyRuns {
    /// The snapshots whose latest restore test passed.
    pub(crate) fn restore_tested(&self) -> std::collections::HashSet<String> {
        let mut runs: Vec<&RunRecord> = self.0.iter().map(|(_, run)| run).collect();
        runs.sort_by_key(|run| run.started);
        restore_tested(runs)
    }

    /// The key of the verify run from which on the runs are the proof that the newest of
    /// `existing` (snapshot ids) that passed a restore test did: the last run that tested
    /// it, which passed it. Housekeeping keeps that run and every later verify run, however
    /// old: it keeps only the last run of each operation, so a deep verify after the
    /// restore test took the proof away and the next prune forgot the snapshot; and a later
    /// failed test of another snapshot, removed, would let an earlier pass of that one
    /// count again.
    pub(crate) fn restore_proof(&self, existing: &[&str]) -> Option<String> {
        let tested = self.restore_tested();
        let newest = existing.iter().filter(|id| tested.contains(**id)).max()?;
        self.0
            .iter()
            .rev()
            .find(|(_, run)| {
                run.verified
                    .iter()
                    .any(|v| v.level == VerifyLevel::Restore && v.snapshot == *newest)
            })
            .map(|(key, _)| key.clone())
    }
}

/// The snapshots whose latest restore test in `runs` (oldest first) passed.
fn restore_tested<'a>(
    runs: impl IntoIterator<Item = &'a RunRecord>,
) -> std::collections::HashSet<String> {
    let mut passed = std::collections::HashSet::new();
    for run in runs {
        for v in run
            .verified
            .iter()
            .filter(|v| v.level == VerifyLevel::Restore)
        {
            if v.ok {
                passed.insert(v.snapshot.clone());
            } else {
                passed.remove(&v.snapshot);
            }
        }
    }
    passed
}
