use std::sync::Arc;

use strongbox_alert::Notifier;
use strongbox_manifest::{
    Delta, FileEntry, Listing, ListingReader, ObjectRef, ObjectRole, Overlay, Snapshot, SnapshotId,
    SourceKind,
};
use strongbox_storage::{layout, Ahead, Records, RepoReader, Repository};

use crate::journal::{Journal, Operation, RunOutcome, RunStatus};
use crate::restore::RestorePlan;
use crate::{select, Cancel, Error, NoProgress, Progress};

/// Read-only access to a repository: listing, resolving, reading and verifying snapshots.
/// Its one write is the run journal of `verify`.
#[derive(Clone)]
pub struct Reader {
    pub(crate) repo: RepoReader,
    pub(crate) progress: Arc<dyn Progress>,
    pub(crate) cancel: Cancel,
    pub(crate) alerts: Option<Arc<Notifier>>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("repo", &self.repo.location())
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// A reader over `repo`, silent and not cancellable until told otherwise.
    pub fn new(repo: RepoReader) -> Self {
        Reader {
            repo,
            progress: Arc::new(NoProgress),
            cancel: Cancel::new(),
            alerts: None,
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

    /// Send alerts through `notifier`: failed, incomplete and (as `on` asks) recovered or
    /// successful runs of backup, verify and prune; [`Reader::alert_health`] for health.
    pub fn with_alerts(mut self, notifier: Arc<Notifier>) -> Self {
        self.alerts = Some(notifier);
        self
    }

    /// The repository, read-only.
    pub fn repo(&self) -> &RepoReader {
        &self.repo
    }

    /// Snapshots of `set` (or all), oldest first.
    pub fn snapshots(&self, set: Option<&str>) -> Result<Vec<Snapshot>, Error> {
        Ok(self.repo.snapshots(set)?)
    }

    /// The sets that hold snapshots or have tried a backup, sorted: a set whose every
    /// backup failed has no snapshot and is still one to report.
    pub fn sets(&self) -> Result<Vec<String>, Error> {
        self.sets_where(|set| {
            let records = self.repo.list(&layout::snapshots_prefix(set))?;
            Ok(records
                .iter()
                .any(|o| layout::parse_snapshot_key(&o.key).is_some()))
        })
    }

    /// The sets, sorted, for which `holds_snapshots` is true or whose journal holds a backup
    /// attempt (chosen by entry names, none read): one listing of `sets/` by delimiter.
    pub(crate) fn sets_where(
        &self,
        holds_snapshots: impl Fn(&str) -> Result<bool, Error>,
    ) -> Result<Vec<String>, Error> {
        let mut sets = Vec::new();
        for set in self.repo.set_dirs()? {
            if holds_snapshots(&set)? || !self.run_keys(&set, Some(Operation::Backup))?.is_empty() {
                sets.push(set);
            }
        }
        Ok(sets)
    }

    /// Refuse `path`, a file about to be written (a report, metrics, a dashboard), when it
    /// lies in the local repository, whose own objects it could replace.
    pub fn check_output(&self, path: &std::path::Path) -> Result<(), Error> {
        let Some(root) = self.repo.local_root() else {
            return Ok(());
        };
        if crate::restore::lies_within(path, root)? {
            return Err(Error::OutputInRepository {
                path: path.to_path_buf(),
                repository: root.to_path_buf(),
            });
        }
        Ok(())
    }

    /// The record of snapshot `id` of `set`, read alone (another damaged record of the set
    /// does not stand in the way); `None` when there is none.
    pub(crate) fn snapshot_of(
        &self,
        set: &str,
        id: &SnapshotId,
    ) -> Result<Option<Snapshot>, Error> {
        let key = layout::snapshot_key(layout::check_set_name(set)?, id);
        match self.repo.read_records(vec![key]) {
            Ok(records) => Ok(records.complete()?.pop()),
            Err(strongbox_storage::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The snapshot records of `set` (or of every set): those that read and those damaged,
    /// for work that reports a damaged record and goes on with the others.
    pub fn records(&self, set: Option<&str>) -> Result<Records, Error> {
        Ok(self.repo.records(set)?)
    }

    /// What `verify` checks: the snapshots `specs` name, else every record of `sets` (of
    /// every set when none is given), the damaged ones too, to be reported failed rather
    /// than stop the others. A set without records, or nothing at all, is an error: a cron
    /// job verifying a misspelt set would otherwise pass every night.
    pub fn records_to_verify(&self, specs: &[String], sets: &[String]) -> Result<Records, Error> {
        let nothing = |what: String| Error::NoSnapshots {
            location: self.repo.location().to_string(),
            what,
        };
        let records = if !specs.is_empty() {
            Records {
                snapshots: self.resolve_all(specs)?,
                damaged: Vec::new(),
            }
        } else if sets.is_empty() {
            self.records(None)?
        } else {
            let mut all = Records::default();
            for set in sets.iter().collect::<std::collections::BTreeSet<_>>() {
                let records = self.records(Some(set))?;
                if records.snapshots.is_empty() && records.damaged.is_empty() {
                    return Err(nothing(format!("snapshot of set {set:?}")));
                }
                all.snapshots.extend(records.snapshots);
                all.damaged.extend(records.damaged);
            }
            all
        };
        if records.snapshots.is_empty() && records.damaged.is_empty() {
            return Err(nothing("snapshots to verify".to_string()));
        }
        Ok(records)
    }

    /// The snapshot `spec` names: an id, a unique id prefix, or `<set>:latest`. Only the
    /// records it needs are read, so a damaged record elsewhere does not stand in the way.
    pub fn resolve(&self, spec: &str) -> Result<Snapshot, Error> {
        self.resolve_all(&[spec.to_string()])?
            .pop()
            .ok_or_else(|| self.not_found(spec))
    }

    fn not_found(&self, spec: &str) -> Error {
        Error::SnapshotNotFound {
            spec: spec.to_string(),
            location: self.repo.location().to_string(),
        }
    }

    /// The snapshots `specs` name, or every snapshot when there is none.
    pub fn resolve_all(&self, specs: &[String]) -> Result<Vec<Snapshot>, Error> {
        if specs.is_empty() {
            return self.snapshots(None);
        }
        let mut keys = None;
        let mut resolved = Vec::with_capacity(specs.len());
        for spec in specs {
            if let Some(set) = spec.strip_suffix(":latest") {
                let latest = select::latest(self.records(Some(set))?)?;
                resolved.push(latest.ok_or_else(|| self.not_found(spec))?);
                continue;
            }
            // One listing of the record keys serves every id; only the chosen one is read.
            let keys = match &mut keys {
                Some(keys) => keys,
                None => keys.insert(self.repo.snapshot_keys(None)?),
            };
            let mut ids: Vec<&str> = keys
                .iter()
                .filter_map(|key| Some(layout::parse_snapshot_key(key)?.1))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let id = select::select_id(&ids, spec)?.ok_or_else(|| self.not_found(spec))?;
            // Every record of that id: one planted in another set under it must not pass.
            let named = keys
                .iter()
                .filter(|key| layout::parse_snapshot_key(key).is_some_and(|(_, i)| i == id))
                .cloned()
                .collect();
            match self.repo.read_records(named)?.complete()?.as_slice() {
                [one] => resolved.push(one.clone()),
                [] => return Err(self.not_found(spec)),
                many => {
                    return Err(Error::AmbiguousSnapshot {
                        spec: spec.clone(),
                        candidates: many
                            .iter()
                            .map(|s| format!("{} of set {}", s.id, s.set))
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                }
            }
        }
        Ok(resolved)
    }

    /// The files listing of a files snapshot: its whole tree, with any delta chain applied
    /// (back to the nearest whole listing).
    pub fn listing(&self, snapshot: &Snapshot) -> Result<Listing, Error> {
        let entries = self
            .listing_stream(snapshot)?
            .entries
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Listing::new(snapshot.id.clone(), entries))
    }

    /// The same tree as a stream of entries in listing order, for a caller that visits each
    /// once (`ls`): memory holds the deltas of the listing's chain, not the tree. The
    /// listing's digest is checked as it ends, so a damaged one fails as the last item.
    pub fn entries(
        &self,
        snapshot: &Snapshot,
    ) -> Result<impl Iterator<Item = Result<FileEntry, Error>> + Send, Error> {
        Ok(self
            .listing_stream(snapshot)?
            .entries
            .map(|entry| entry.map_err(Error::from)))
    }

    /// The same as a stream of entries, in listing order: memory holds the deltas, not the
    /// tree.
    pub(crate) fn listing_stream(&self, snapshot: &Snapshot) -> Result<ListingStream, Error> {
        self.listing_stream_and(snapshot, &|_| Ahead::default())
    }

    /// [`Self::listing_stream`], calling `ahead` with the keys of the chain's listings,
    /// newest first, as soon as the newest delta's header names them: for the caller to have
    /// fetched ahead what it will read of that chain (the stream holds what it returns).
    pub(crate) fn listing_stream_and(
        &self,
        snapshot: &Snapshot,
        ahead: &dyn Fn(&[&str]) -> Ahead,
    ) -> Result<ListingStream, Error> {
        if snapshot.source != SourceKind::Files {
            return Err(Error::WrongSource {
                id: snapshot.id.to_string(),
                source_kind: snapshot.source.as_str(),
                reason: "it has no files listing".to_string(),
            });
        }
        let own = listing_object(snapshot)?.clone();
        let mut object = own.clone();
        let mut expected = snapshot.id.clone();
        let mut objects = Vec::new();
        let mut overlay = Overlay::default();
        let mut chain = None;
        // Held until every listing of the chain is open.
        let mut _listings_ahead = Ahead::default();
        let mut callers = Ahead::default();
        let mut opened = Vec::new();
        loop {
            let reader = match opened.iter().position(|(o, _)| *o == object) {
                Some(i) => opened.swap_remove(i).1,
                None => self.open_listing(&object)?,
            };
            let header = reader.header().clone();
            if header.snapshot != expected {
                return Err(Error::BadRecord {
                    id: snapshot.id.to_string(),
                    reason: format!(
                        "its listing chain reaches {}, which belongs to {} instead of {expected}",
                        object.key, header.snapshot
                    ),
                });
            }
            let Some(delta) = header.delta else {
                objects.push(object);
                objects.reverse();
                return Ok(ListingStream {
                    entries: Box::new(overlay.over(reader)),
                    own,
                    objects,
                    chain: chain.unwrap_or((0, 0)),
                    ahead: callers,
                });
            };
            // Writers keep chains short; a long one is damage (or a loop), not history.
            if objects.len() >= MAX_CHAIN {
                return Err(Error::BadRecord {
                    id: snapshot.id.to_string(),
                    reason: format!("its listing's delta chain is longer than {MAX_CHAIN}"),
                });
            }
            // A base is one of the set's own listings, as a record's objects are its own.
            let own = layout::parse_data_key(&delta.key).is_some_and(|(set, id, ext)| {
                set == snapshot.set && id == delta.base.as_str() && ext.starts_with("files.")
            });
            if !own {
                return Err(Error::BadRecord {
                    id: snapshot.id.to_string(),
                    reason: format!(
                        "its listing chain names {} as the listing of {}; expected {}…",
                        delta.key,
                        delta.base,
                        layout::data_key(&snapshot.set, &delta.base, "files.")
                    ),
                });
            }
            // The newest delta names the rest of its chain: fetched ahead from a remote
            // store all at once, its listings here and what the caller reads of it there.
            let links = if objects.is_empty() {
                let links = chain_links(&snapshot.set, &delta);
                _listings_ahead = self
                    .repo
                    .prefetch(links.iter().map(|l| (l.key.clone(), l.size)));
                let keys: Vec<&str> = std::iter::once(object.key.as_str())
                    .chain(links.iter().map(|l| l.key.as_str()))
                    .collect();
                callers = ahead(&keys);
                links
            } else {
                Vec::new()
            };
            chain.get_or_insert((delta.depth, delta.changes));
            overlay.add_older(&delta.removed, reader.collect::<Result<Vec<_>, _>>()?);
            if !links.is_empty() {
                // Read whole, this listing's digest held: open the rest of its chain now,
                // each parsed on a thread of its own, rather than each after the last.
                opened = self.open_chain(links);
            }
            expected = delta.base.clone();
            let base = listing_ref(delta.key, delta.size, delta.sha256);
            objects.push(std::mem::replace(&mut object, base));
        }
    }

    /// The listings of a chain past its newest one (`links`, as the walk will read them),
    /// each parsing on a thread of its own (a whole listing's parser waits for its reader
    /// once it has a few thousand entries ahead). The whole one, last in the chain, is
    /// opened first: it is the largest, too large to have been fetched ahead, and opening
    /// it starts its transfer. One that does not open is left to the walk, which opens it
    /// again when it gets there and reports what is wrong.
    fn open_chain(&self, mut links: Vec<ObjectRef>) -> Vec<(ObjectRef, ListingReader)> {
        links.rotate_right(1);
        links
            .into_iter()
            .filter_map(|link| {
                let reader = self.open_listing(&link).ok()?;
                Some((link, reader))
            })
            .collect()
    }

    /// One stored listing object, whole or delta, checked against its digest as it is read.
    fn open_listing(&self, object: &ObjectRef) -> Result<ListingReader, Error> {
        let stored = self
            .repo
            .open_object(&object.key, Some(object))
            .map_err(|e| match e {
                // A failing stream is the bytes': a digest or codec error.
                strongbox_storage::Error::Stream { .. } => Error::Corrupt {
                    what: "listing",
                    key: object.key.clone(),
                    source: e,
                },
                e => e.into(),
            })?;
        Ok(ListingReader::new(&object.key, stored)?)
    }

    /// What restoring a files snapshot with `includes` would read and write.
    pub fn restore_plan(
        &self,
        snapshot: &Snapshot,
        includes: &[String],
    ) -> Result<RestorePlan, Error> {
        if snapshot.source != SourceKind::Files {
            return Err(Error::WrongSource {
                id: snapshot.id.to_string(),
                source_kind: snapshot.source.as_str(),
                reason: "a restore plan and --include apply to files snapshots".to_string(),
            });
        }
        let mut plan = RestorePlan::empty(snapshot);
        if includes.is_empty() {
            // Everything: counted as the listing streams.
            for entry in self.entries(snapshot)? {
                plan.add(&entry?);
            }
        } else {
            for entry in crate::select::included(snapshot, includes, self.entries(snapshot)?)? {
                plan.add(&entry);
            }
        }
        Ok(plan)
    }

    /// Record an attempt in the set's run journal, without locking (work that does not
    /// change the repository).
    pub(crate) fn journaled<T>(
        &self,
        set: &str,
        operation: Operation,
        snapshot: Option<String>,
        work: impl FnOnce() -> Result<T, Error>,
        outcome: impl Fn(&T) -> RunOutcome,
    ) -> Result<T, Error> {
        let journal = Journal::start(self, set, operation);
        let result = work();
        match &result {
            Ok(value) => {
                let outcome = outcome(value);
                let (status, error) = if outcome.ok {
                    (RunStatus::Ok, None)
                } else {
                    let problem = outcome.problem.clone();
                    (
                        RunStatus::Failed,
                        Some(problem.unwrap_or_else(|| "checks failed".to_string())),
                    )
                };
                journal.finish_with(status, snapshot, error, outcome);
            }
            Err(e) => journal.finish(RunStatus::Failed, snapshot, Some(crate::error_chain(e))),
        }
        result
    }
}

/// Deltas a reader follows before it calls a listing's chain damaged.
const MAX_CHAIN: usize = 1000;

/// A files listing as a stream of entries, in listing order.
pub(crate) struct ListingStream {
    /// The whole tree's entries.
    pub entries: Box<dyn Iterator<Item = Result<FileEntry, strongbox_manifest::Error>> + Send>,
    /// The snapshot's own listing object.
    pub own: ObjectRef,
    /// Every listing object it is read from: the whole one first, then each delta.
    pub objects: Vec<ObjectRef>,
    /// The `(depth, changes)` of the delta chain, `(0, 0)` for a whole listing.
    pub chain: (u32, u64),
    /// What the caller had fetched ahead ([`Reader::listing_stream_and`]).
    pub ahead: Ahead,
}

/// A delta's base and then [`Delta::further`]: the rest of its chain, as the walk will read
/// it. Only listings of `set`, and no more than a chain may have.
fn chain_links(set: &str, delta: &Delta) -> Vec<ObjectRef> {
    let base = listing_ref(delta.key.clone(), delta.size, delta.sha256.clone());
    let further = delta
        .further
        .iter()
        .map(|l| listing_ref(l.key.clone(), l.size, l.sha256.clone()));
    std::iter::once(base)
        .chain(further)
        .filter(|l| {
            layout::parse_data_key(&l.key)
                .is_some_and(|(s, _, ext)| s == set && ext.starts_with("files."))
        })
        .take(MAX_CHAIN)
        .collect()
}

/// A listing object as a delta names it: by key, size and digest.
fn listing_ref(key: String, size: u64, sha256: String) -> ObjectRef {
    ObjectRef {
        key,
        size,
        sha256,
        role: ObjectRole::Listing,
    }
}

/// The listing object a files snapshot's record names.
pub(crate) fn listing_object(snapshot: &Snapshot) -> Result<&strongbox_manifest::ObjectRef, Error> {
    snapshot
        .object(ObjectRole::Listing)
        .ok_or_else(|| Error::BadRecord {
            id: snapshot.id.to_string(),
            reason: "a files snapshot record names no listing".to_string(),
        })
}

/// Read and write access to a repository: backup, restore and prune, and everything a
/// [`Reader`] does (through `Deref`).
#[derive(Clone)]
pub struct Engine {
    reader: Reader,
    pub(crate) writer: Repository,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("repo", &self.writer.location())
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for Engine {
    type Target = Reader;
    fn deref(&self) -> &Reader {
        &self.reader
    }
}

impl Engine {
    /// An engine over `repo`, silent and not cancellable until told otherwise.
    pub fn new(repo: Repository) -> Self {
        Engine {
            reader: Reader::new(repo.as_reader().clone()),
            writer: repo,
        }
    }

    /// Report progress to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.reader = self.reader.with_progress(progress);
        self
    }

    /// Stop work when `cancel` is set.
    pub fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.reader = self.reader.with_cancel(cancel);
        self
    }

    /// Send alerts through `notifier` (see [`Reader::with_alerts`]).
    pub fn with_alerts(mut self, notifier: Arc<Notifier>) -> Self {
        self.reader = self.reader.with_alerts(notifier);
        self
    }

    /// The repository, writable.
    pub fn writer(&self) -> &Repository {
        &self.writer
    }

    /// A run of `operation` on `set` refused before its work began (the set locked):
    /// journalled as failed, so that `status` and `health` see scheduled runs that could
    /// not run (a lock no run ever frees refused every backup unseen), and alerted on.
    pub(crate) fn refused(&self, set: &str, operation: Operation, error: Error) -> Error {
        Journal::start(self, set, operation).finish(
            RunStatus::Failed,
            None,
            Some(crate::error_chain(&error)),
        );
        error
    }

    /// Run `work` under the set's lock, with a run-journal entry for the attempt.
    pub(crate) fn locked<T>(
        &self,
        set: &str,
        operation: Operation,
        work: impl FnOnce() -> Result<T, Error>,
        describe: impl Fn(&T) -> (RunStatus, Option<String>),
    ) -> Result<T, Error> {
        let _lock = match self.writer.lock(set, operation.as_str()) {
            Ok(lock) => lock,
            Err(e) => return Err(self.refused(set, operation, e.into())),
        };
        let journal = Journal::start(self, set, operation);
        let result = work();
        match &result {
            Ok(value) => {
                let (status, snapshot) = describe(value);
                journal.finish(status, snapshot, None);
            }
            Err(e) => journal.finish(RunStatus::Failed, None, Some(crate::error_chain(e))),
        }
        result
    }
}
