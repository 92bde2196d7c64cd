use std::sync::Arc;

use strongbox_manifest::{Listing, ObjectRole, Snapshot, SourceKind};
use strongbox_storage::Repository;

use crate::journal::Journal;
use crate::{select, Cancel, Error, NoProgress, Progress};

/// The one engine: every command of every source kind goes through it.
#[derive(Clone)]
pub struct Engine {
    pub(crate) repo: Repository,
    pub(crate) progress: Arc<dyn Progress>,
    pub(crate) cancel: Cancel,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("repo", &self.repo.location())
            .finish()
    }
}

impl Engine {
    /// An engine over `repo`, silent and not cancellable until told otherwise.
    pub fn new(repo: Repository) -> Self {
        Engine {
            repo,
            progress: Arc::new(NoProgress),
            cancel: Cancel::new(),
        }
    }

    /// Report progress to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Stop work when `cancel` is set.
    pub fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// The repository.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// Snapshots of `set` (or all), oldest first.
    pub fn snapshots(&self, set: Option<&str>) -> Result<Vec<Snapshot>, Error> {
        Ok(self.repo.snapshots(set)?)
    }

    /// The snapshot `spec` names: an id, a unique id prefix, or `<set>:latest`.
    pub fn resolve(&self, spec: &str) -> Result<Snapshot, Error> {
        let set = spec.strip_suffix(":latest");
        let snapshots = match set {
            Some(set) => self.repo.snapshots(Some(set))?,
            None => self.repo.snapshots(None)?,
        };
        select(&snapshots, spec).cloned()
    }

    /// The files listing of a files snapshot.
    pub fn listing(&self, snapshot: &Snapshot) -> Result<Listing, Error> {
        if snapshot.source != SourceKind::Files {
            return Err(Error::WrongSource {
                id: snapshot.id.to_string(),
                source_kind: snapshot.source.as_str(),
                reason: "it has no files listing".to_string(),
            });
        }
        let object = snapshot.object(ObjectRole::Listing).ok_or_else(|| {
            strongbox_storage::Error::Corrupt {
                key: snapshot.id.to_string(),
                reason: "files snapshot record names no listing".to_string(),
            }
        })?;
        let bytes = self.repo.get(&object.key)?;
        Ok(Listing::decode(&object.key, &bytes)?)
    }

    /// Run `work` under the set's lock, with a run-journal entry for the attempt.
    pub(crate) fn locked<T>(
        &self,
        set: &str,
        operation: &str,
        work: impl FnOnce() -> Result<T, Error>,
        describe: impl Fn(&T) -> (&'static str, Option<String>),
    ) -> Result<T, Error> {
        let _lock = self.repo.lock(set, operation)?;
        let journal = Journal::start(&self.repo, set, operation);
        let result = work();
        match &result {
            Ok(value) => {
                let (status, snapshot) = describe(value);
                journal.finish(status, snapshot, None);
            }
            Err(e) => journal.finish("failed", None, Some(e.to_string())),
        }
        result
    }

    /// Record an attempt in the set's run journal without locking (read-only operations).
    pub(crate) fn journaled<T>(
        &self,
        set: &str,
        operation: &str,
        snapshot: Option<String>,
        work: impl FnOnce() -> Result<T, Error>,
        ok: impl Fn(&T) -> bool,
    ) -> Result<T, Error> {
        let journal = Journal::start(&self.repo, set, operation);
        let result = work();
        match &result {
            Ok(value) if ok(value) => journal.finish("ok", snapshot, None),
            Ok(_) => journal.finish("failed", snapshot, Some("checks failed".to_string())),
            Err(e) => journal.finish("failed", snapshot, Some(e.to_string())),
        }
        result
    }
}
