//! The run journal: one entry per attempt of an operation on a set, failed ones too.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strongbox_storage::{host_name, RepoReader};

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
}

impl Operation {
    /// Lower-case name, as in journals and locks.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Backup => "backup",
            Operation::Restore => "restore",
            Operation::Verify => "verify",
            Operation::Prune => "prune",
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
    /// Host.
    pub host: String,
    /// Process id.
    pub pid: u32,
}

pub(crate) struct Journal<'a> {
    repo: &'a RepoReader,
    name: String,
    record: RunRecord,
}

impl<'a> Journal<'a> {
    pub(crate) fn start(repo: &'a RepoReader, set: &str, operation: Operation) -> Self {
        let started = Utc::now();
        let name = format!(
            "{}-{operation}-{:04x}",
            started.format("%Y%m%dT%H%M%S%.3fZ"),
            rand::random::<u16>()
        );
        let journal = Journal {
            repo,
            name,
            record: RunRecord {
                operation,
                set: set.to_string(),
                status: RunStatus::Running,
                started,
                finished: None,
                snapshot: None,
                error: None,
                host: host_name(),
                pid: std::process::id(),
            },
        };
        journal.write();
        journal
    }

    fn write(&self) {
        let body = serde_json::to_vec_pretty(&self.record).expect("run records serialize");
        // The journal is a record of attempts; failing to write it must not fail the run.
        if let Err(e) = self.repo.put_run(&self.record.set, &self.name, &body) {
            tracing::warn!(set = %self.record.set, error = &e as &dyn std::error::Error, "could not write the run journal");
        }
    }

    pub(crate) fn finish(
        mut self,
        status: RunStatus,
        snapshot: Option<String>,
        error: Option<String>,
    ) {
        self.record.status = status;
        self.record.finished = Some(Utc::now());
        self.record.snapshot = snapshot;
        self.record.error = error;
        self.write();
    }
}
