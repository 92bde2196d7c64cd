use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strongbox_storage::{host_name, layout, PutMode, Repository};

/// One entry of a set's run journal, `sets/<set>/runs/<time>-<operation>-<rand>.json`:
/// written when an operation starts and rewritten when it ends, failed ones too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// `backup`, `restore`, `verify`, `prune`.
    pub operation: String,
    /// The set.
    pub set: String,
    /// `running`, `ok`, `incomplete` (snapshot written, some entries unreadable) or `failed`.
    pub status: String,
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
    repo: &'a Repository,
    key: String,
    record: RunRecord,
}

impl<'a> Journal<'a> {
    pub(crate) fn start(repo: &'a Repository, set: &str, operation: &str) -> Self {
        let started = Utc::now();
        let name = format!(
            "{}-{operation}-{:04x}",
            started.format("%Y%m%dT%H%M%S%.3fZ"),
            rand::random::<u16>()
        );
        let journal = Journal {
            repo,
            key: layout::run_key(set, &name),
            record: RunRecord {
                operation: operation.to_string(),
                set: set.to_string(),
                status: "running".to_string(),
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
        if let Err(e) = self.repo.put(&self.key, body.into(), PutMode::Overwrite) {
            tracing::warn!(key = %self.key, error = %e, "could not write the run journal");
        }
    }

    pub(crate) fn finish(mut self, status: &str, snapshot: Option<String>, error: Option<String>) {
        self.record.status = status.to_string();
        self.record.finished = Some(Utc::now());
        self.record.snapshot = snapshot;
        self.record.error = error;
        self.write();
    }
}
