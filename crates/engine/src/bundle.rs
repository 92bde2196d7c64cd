//! Bundles: member sets backed up together under one record. Databases go first, each
//! inside its exported snapshot, where the reference query runs and (PostgreSQL) a restore
//! point is made; then the files; then every member's record and the bundle's, last.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, Write};
use std::time::Instant;

use chrono::Utc;
use strongbox_db_dump::{Error as DbError, SnapshotQuery};
use strongbox_manifest::{
    BundleStats, FileType, ReferenceCheck, RestorePoint, Snapshot, SnapshotId, SnapshotKind,
    SourceError, SourceKind, Stats, FORMAT_VERSION,
};
use strongbox_storage::{host_name, layout};

use crate::backup::{run_status, Pending};
use crate::journal::{Journal, Operation, RunStatus};
use crate::source::{DumpSource, ObjectSink};
use crate::spec::{BundleSpec, References, SetSpec, SourceSpec};
use crate::{Engine, Error};

impl Engine {
    pub(crate) fn backup_bundle(
        &self,
        spec: &SetSpec,
        bundle: &BundleSpec,
    ) -> Result<Snapshot, Error> {
        check_bundle(spec, bundle)?;
        // Each member's record takes its own options, tags included.
        for options in std::iter::once(&spec.options).chain(spec.members.iter().map(|m| &m.options))
        {
            options.check()?;
        }
        // Members in name order, then the bundle: two bundles sharing members take their
        // locks in the same order.
        let mut names: Vec<&str> = spec.members.iter().map(|m| m.set.as_str()).collect();
        names.sort_unstable();
        let mut locks = Vec::with_capacity(names.len());
        for name in names {
            match self.writer.lock(name, Operation::Backup.as_str()) {
                Ok(lock) => locks.push(lock),
                Err(e) => return Err(self.refused(&spec.set, Operation::Backup, e.into())),
            }
        }
        let snapshot = self.locked(
            &spec.set,
            Operation::Backup,
            || self.bundle_locked(spec, bundle),
            |snapshot| (run_status(snapshot), Some(snapshot.id.to_string())),
        );
        drop(locks);
        snapshot
    }

    /// The bundle's backup, with a run-journal entry in each member set too, so that a
    /// member's status and health see the backups the bundle made of it.
    fn bundle_locked(&self, spec: &SetSpec, bundle: &BundleSpec) -> Result<Snapshot, Error> {
        let mut journals = Vec::new();
        let result = self.bundle_members_locked(spec, bundle, &mut journals);
        for (set, journal) in journals {
            match &result {
                Ok(record) => {
                    let unreadable = record
                        .errors
                        .iter()
                        .any(|e| e.path.starts_with(&format!("{set}:")));
                    let status = if unreadable {
                        RunStatus::Incomplete
                    } else {
                        RunStatus::Ok
                    };
                    journal.finish(
                        status,
                        record.members.get(&set).map(|id| id.to_string()),
                        None,
                    )
                }
                Err(e) => journal.finish(RunStatus::Failed, None, Some(crate::error_chain(e))),
            }
        }
        result
    }

    fn bundle_members_locked<'a>(
        &'a self,
        spec: &SetSpec,
        bundle: &BundleSpec,
        journals: &mut Vec<(String, Journal<'a>)>,
    ) -> Result<Snapshot, Error> {
        let started = Instant::now();
        let time = spec.options.time.unwrap_or_else(Utc::now);
        let existing = self.parents(&spec.set)?;
        let id = crate::backup::unused_id(time, &existing);
        if let Some(other) = existing
            .snapshots
            .iter()
            .find(|s| s.source != SourceKind::Bundle)
        {
            return Err(Error::SetKindMismatch {
                set: spec.set.clone(),
                existing: other.source.as_str(),
                requested: SourceKind::Bundle.as_str(),
            });
        }
        let point_name = format!("strongbox-{id}");
        let mut restore_point: Option<RestorePoint> = None;
        let mut references = tempfile::tempfile().map_err(|e| Error::Io {
            operation: "creating a temporary file for",
            path: std::env::temp_dir().join("strongbox references"),
            source: e,
        })?;
        let existing: Vec<crate::backup::Parents> = spec
            .members
            .iter()
            .map(|m| self.parents(&m.set))
            .collect::<Result<_, _>>()?;
        let mut pending: Vec<Pending<'_>> = Vec::new();
        // Databases first: their snapshots are the moment the bundle stands for.
        let (databases, files): (Vec<_>, Vec<_>) =
            spec.members.iter().zip(&existing).partition(|(m, _)| {
                matches!(m.source.kind(), SourceKind::Postgres | SourceKind::Sqlite)
            });
        for (member, existing) in databases.into_iter().chain(files) {
            journals.push((
                member.set.clone(),
                Journal::start(self, &member.set, Operation::Backup),
            ));
            let options = crate::BackupOptions {
                time: Some(time),
                ..member.options.clone()
            };
            let record = match member.source.open_database()? {
                Some(database) => {
                    let wanted = bundle
                        .references
                        .as_ref()
                        .filter(|r| r.database == member.set);
                    let kind = member.source.kind();
                    let wants_point =
                        member.source.kind() == SourceKind::Postgres && restore_point.is_none();
                    let mut out = BufWriter::new(&mut references);
                    let mut point = None;
                    let mut inside = |q: &mut dyn SnapshotQuery| -> Result<(), DbError> {
                        if wants_point {
                            point = q.restore_point(&point_name)?;
                        }
                        match wanted {
                            Some(r) => r.keep(q, kind, &mut out),
                            None => Ok(()),
                        }
                    };
                    let mut source = DumpSource::new(database).with_inside(&mut inside);
                    let record =
                        self.prepare(&member.set, &mut source, &options, time, existing)?;
                    drop(source);
                    out.flush().map_err(|e| Error::Io {
                        operation: "writing the references of",
                        path: member.set.clone().into(),
                        source: e,
                    })?;
                    drop(out);
                    if let Some(lsn) = point {
                        restore_point = Some(RestorePoint {
                            member: member.set.clone(),
                            name: point_name.clone(),
                            lsn,
                        });
                    }
                    record
                }
                None => {
                    let mut source = member.source.open()?;
                    self.prepare(&member.set, source.as_mut(), &options, time, existing)?
                }
            };
            pending.push(record);
        }
        let check = match &bundle.references {
            Some(r) => {
                let files = pending
                    .iter()
                    .find(|p| p.record.set == r.files)
                    .expect("checked: the files member is a member");
                Some(self.cross_check(r, &files.record, &mut references)?)
            }
            None => None,
        };
        let warnings = check
            .iter()
            .filter(|c| c.missing_count > 0)
            .map(|c| SourceError {
                path: c.files.clone(),
                message: format!(
                    "{} file(s) referenced by {} are missing, among them: {}",
                    c.missing_count,
                    c.database,
                    c.missing
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
            .collect();
        let members: BTreeMap<String, SnapshotId> = pending
            .iter()
            .map(|p| (p.record.set.clone(), p.record.id.clone()))
            .collect();
        let record = Snapshot {
            format_version: FORMAT_VERSION,
            id: id.clone(),
            set: spec.set.clone(),
            kind: SnapshotKind::Full,
            source: SourceKind::Bundle,
            parent: None,
            time,
            tags: crate::backup::distinct(&spec.options.tags),
            host: host_name(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            origin: spec.source.describe(),
            compression: "none".to_string(),
            objects: Vec::new(),
            stats: Stats::Bundle(BundleStats { references: check }),
            duration_secs: started.elapsed().as_secs_f64(),
            // A member's unreadable entries make the bundle incomplete too, named by member.
            errors: pending
                .iter()
                .flat_map(|p| {
                    p.record.errors.iter().map(|e| SourceError {
                        path: format!("{}:{}", p.record.set, e.path),
                        message: e.message.clone(),
                    })
                })
                .collect(),
            warnings,
            members,
            restore_point,
        };
        pending.push(Pending {
            record,
            sink: ObjectSink::new(&self.writer, &spec.set, id),
        });
        let mut committed = self.commit(pending)?;
        Ok(committed
            .pop()
            .expect("the bundle record is committed last"))
    }

    /// Merge the sorted references kept during the dump with the files member's listing.
    fn cross_check(
        &self,
        references: &References,
        files: &Snapshot,
        kept: &mut File,
    ) -> Result<ReferenceCheck, Error> {
        let started = Instant::now();
        let mut check = check_references(|| self.file_paths(files), kept)?;
        check.database = references.database.clone();
        check.files = references.files.clone();
        check.query = references.query.clone();
        check.prefix = references.prefix.clone();
        check.millis = started.elapsed().as_millis() as u64;
        Ok(check)
    }
}

/// Merge `kept`, references one per line as the database sorted them, with the regular
/// files of the files listing, in one pass. `paths` hands them out in listing (byte) order,
/// as a stream, each time it is called: once, or twice when a collation that disagrees with
/// byte order is caught on the way and the references are then sorted in memory.
pub fn check_references<I, S>(
    mut paths: impl FnMut() -> Result<I, Error>,
    kept: &mut File,
) -> Result<ReferenceCheck, Error>
where
    I: Iterator<Item = Result<S, Error>>,
    S: AsRef<str>,
{
    let io_error = |e| Error::Io {
        operation: "reading back the references kept in",
        path: std::env::temp_dir(),
        source: e,
    };
    kept.rewind().map_err(io_error)?;
    let mut previous: Option<String> = None;
    let mut unsorted = false;
    let rows = BufReader::new(&mut *kept).lines().map(|line| {
        let line = line.map_err(io_error)?;
        unsorted |= previous.as_ref().is_some_and(|p| *p > line);
        previous = Some(line.clone());
        Ok::<_, Error>(line)
    });
    let check = ReferenceCheck::merge(rows, paths()?)?;
    if !unsorted {
        return Ok(check);
    }
    kept.rewind().map_err(io_error)?;
    let mut all = BufReader::new(&mut *kept)
        .lines()
        .collect::<Result<Vec<String>, _>>()
        .map_err(io_error)?;
    all.sort_unstable();
    ReferenceCheck::merge(all.into_iter().map(Ok::<_, Error>), paths()?)
}

impl crate::Reader {
    /// The bundle records among `snapshots`.
    pub fn bundles(&self, snapshots: &[Snapshot]) -> Vec<Snapshot> {
        snapshots
            .iter()
            .filter(|s| s.source == SourceKind::Bundle)
            .cloned()
            .collect()
    }

    /// The paths of the regular files of a files snapshot, streamed from its resolved
    /// listing (checked as it streams, so in listing order).
    pub(crate) fn file_paths(
        &self,
        files: &Snapshot,
    ) -> Result<impl Iterator<Item = Result<String, Error>>, Error> {
        Ok(self
            .checked_listing(files)?
            .filter_map(|entry| match entry {
                Ok(entry) => (entry.kind == FileType::File).then_some(Ok(entry.path)),
                Err(e) => Some(Err(e)),
            }))
    }

    /// A bundle's member snapshots, databases first; only `only` when given. A member
    /// snapshot that is gone is an error naming it.
    pub fn bundle_members(
        &self,
        bundle: &Snapshot,
        only: Option<&str>,
    ) -> Result<Vec<Snapshot>, Error> {
        let bad = |reason: String| Error::BadBundle {
            set: bundle.set.clone(),
            reason,
        };
        if bundle.source != SourceKind::Bundle {
            return Err(Error::WrongSource {
                id: bundle.id.to_string(),
                source_kind: bundle.source.as_str(),
                reason: "it is not a bundle".to_string(),
            });
        }
        if let Some(only) = only.filter(|m| !bundle.members.contains_key(*m)) {
            return Err(bad(format!(
                "--only {only:?} is not a member (members: {})",
                bundle
                    .members
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut members = Vec::new();
        for (set, id) in &bundle.members {
            if only.is_some_and(|o| o != set) {
                continue;
            }
            let found = self
                .snapshot_of(set, id)?
                .ok_or_else(|| bad(format!("member snapshot {id} of set {set:?} is gone")))?;
            members.push(found);
        }
        members.sort_by_key(|s| s.source == SourceKind::Files);
        Ok(members)
    }
}

/// One target of a restore, as a dry run reports it: a bundle's member, or the target of
/// a database snapshot ([`Engine::plan_target`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemberPlan {
    /// The set.
    pub set: String,
    /// Its snapshot.
    pub snapshot: SnapshotId,
    /// Its kind of snapshot.
    pub source: &'static str,
    /// Its target, as described in messages.
    pub target: String,
    /// What its target holds that the restore would replace (`None`: the target is empty).
    pub replaces: Option<String>,
}

impl MemberPlan {
    fn new(snapshot: &Snapshot, restorer: &dyn crate::Restorer, replace: bool) -> Self {
        MemberPlan {
            set: snapshot.set.clone(),
            snapshot: snapshot.id.clone(),
            source: snapshot.source.as_str(),
            target: restorer.describe(),
            replaces: replace.then(|| restorer.replaced()),
        }
    }
}

impl Engine {
    /// What a restore of `snapshot` into `restorer` would do, refused as the restore would
    /// be ([`Engine::check_target`]): a dry run of a snapshot that has no files plan.
    pub fn plan_target(
        &self,
        snapshot: &Snapshot,
        restorer: &mut dyn crate::Restorer,
        options: &crate::RestoreOptions,
    ) -> Result<MemberPlan, Error> {
        let replace = self.check_target(snapshot, restorer, options)?;
        Ok(MemberPlan::new(snapshot, restorer, replace))
    }
}

/// A bundle member, the restorer of its target, and whether the restore replaces data.
type MemberTarget = (Snapshot, Box<dyn crate::Restorer>, bool);

impl Engine {
    /// Restore a bundle's members (or `only` one), each into its target in `targets` (by
    /// member set) through its own restore. Every target is checked before anything is
    /// written (see [`Engine::check_bundle_targets`]).
    pub fn restore_bundle(
        &self,
        bundle: &Snapshot,
        targets: &BTreeMap<String, crate::TargetSpec>,
        only: Option<&str>,
        options: &crate::RestoreOptions,
    ) -> Result<Vec<crate::RestoreOutcome>, Error> {
        let mut outcomes: Vec<crate::RestoreOutcome> = Vec::new();
        let mut restored: Vec<String> = Vec::new();
        for (member, mut restorer, _) in self.member_targets(bundle, targets, only, options)? {
            match self.restore(&member, restorer.as_mut(), options) {
                Ok(outcome) => {
                    // Where the previous content went, as it happened (not the pattern).
                    let previous = match (&outcome.previous, &outcome.safety_snapshot) {
                        (Some(path), _) => {
                            format!("the previous content is kept as {}", path.display())
                        }
                        (None, Some(id)) => format!("the previous content is safety snapshot {id}"),
                        (None, None) if options.force => {
                            "the previous content, if any, was not kept".to_string()
                        }
                        (None, None) => "it was empty".to_string(),
                    };
                    restored.push(format!(
                        "{} (into {}; {previous})",
                        member.set,
                        restorer.describe(),
                    ));
                    outcomes.push(outcome);
                }
                Err(e) if restored.is_empty() => return Err(e),
                Err(e) => {
                    return Err(Error::BundlePartlyRestored {
                        set: bundle.set.clone(),
                        restored: restored.join(", "),
                        failed: member.set.clone(),
                        source: Box::new(e),
                    })
                }
            }
        }
        Ok(outcomes)
    }

    /// What [`Engine::restore_bundle`] checks before it writes anything, for a dry run to
    /// refuse what the restore would: every member has a target of its kind, outside the
    /// repository, and empty unless `options.force`. The members in restore order.
    pub fn check_bundle_targets(
        &self,
        bundle: &Snapshot,
        targets: &BTreeMap<String, crate::TargetSpec>,
        only: Option<&str>,
        options: &crate::RestoreOptions,
    ) -> Result<Vec<MemberPlan>, Error> {
        let members = self.member_targets(bundle, targets, only, options)?;
        Ok(members
            .into_iter()
            .map(|(member, restorer, replace)| MemberPlan::new(&member, restorer.as_ref(), replace))
            .collect())
    }

    fn member_targets(
        &self,
        bundle: &Snapshot,
        targets: &BTreeMap<String, crate::TargetSpec>,
        only: Option<&str>,
        options: &crate::RestoreOptions,
    ) -> Result<Vec<MemberTarget>, Error> {
        let members = self.bundle_members(bundle, only)?;
        let bad = |reason: String| Error::BadBundle {
            set: bundle.set.clone(),
            reason,
        };
        if let Some(extra) = targets.keys().find(|t| !bundle.members.contains_key(*t)) {
            return Err(bad(format!(
                "--target {extra}=…: {extra:?} is not a member"
            )));
        }
        let mut checked = Vec::new();
        for member in members {
            let target = targets.get(&member.set).ok_or_else(|| {
                bad(format!(
                    "member {:?} has no target: give --target {}=TARGET (or --only another member)",
                    member.set, member.set
                ))
            })?;
            // A bundle's --no-keep-previous is for its files members.
            let target = crate::TargetSpec {
                keep_previous: target.keep_previous || member.source != SourceKind::Files,
                ..target.clone()
            };
            let mut restorer = target.restorer(member.source)?;
            let replace = self.check_target(&member, restorer.as_mut(), options)?;
            checked.push((member, restorer, replace));
        }
        // Two members into one place: the second would find the first's data there, or,
        // forced, replace it.
        for (i, (a, restorer, _)) in checked.iter().enumerate() {
            for (j, (b, other, _)) in checked.iter().enumerate() {
                let given = &targets[&b.set].target;
                if i != j
                    && (targets[&a.set].target == *given || writes_into(restorer.as_ref(), given)?)
                {
                    return Err(bad(format!(
                        "members {:?} and {:?} would restore into the same place ({} and {}): \
                         give each its own target",
                        a.set,
                        b.set,
                        restorer.describe(),
                        other.describe()
                    )));
                }
            }
        }
        // A bundle's --no-keep-previous is for its files members: without one it would do
        // nothing, silently.
        let files = checked
            .iter()
            .any(|(m, _, _)| m.source == SourceKind::Files);
        if !files && targets.values().any(|t| !t.keep_previous) {
            return Err(bad(
                "--no-keep-previous applies to files members, and none is restored".to_string(),
            ));
        }
        // Files first: a files restore is checked whole beside its target before it is
        // swapped in, so the likeliest failure, a damaged archive, comes before any database
        // is replaced.
        checked.sort_by_key(|(member, _, _)| member.source != SourceKind::Files);
        Ok(checked)
    }
}

/// Whether `restorer` would write into (or replace) `target`, another member's, when that
/// is a path.
fn writes_into(restorer: &dyn crate::Restorer, target: &str) -> Result<bool, Error> {
    if strongbox_db_dump::is_conninfo(target) {
        return Ok(false);
    }
    let path = std::path::absolute(target)
        .map_err(|e| Error::io("resolving", std::path::Path::new(target), e))?;
    restorer.reaches(&path)
}

impl References {
    /// The query as run on a database of `kind`: its paths stripped of `prefix` and
    /// sorted in byte order by the database.
    pub fn sql(&self, kind: SourceKind) -> String {
        reference_sql(kind, self)
    }

    /// The query as the user gave it, without a closing `;`.
    fn user_query(&self) -> &str {
        self.query.trim().trim_end_matches(';')
    }

    /// The references a bundle recorded, to run again (a restore test), when the record
    /// says what they were.
    pub fn recorded(check: &ReferenceCheck) -> Option<References> {
        (!check.query.is_empty()).then(|| References {
            database: check.database.clone(),
            query: check.query.clone(),
            files: check.files.clone(),
            prefix: check.prefix.clone(),
        })
    }

    /// Run the query through `q` (a database of `kind`) and write its paths to `out`, one
    /// per line, in the database's order.
    pub fn keep(
        &self,
        q: &mut dyn SnapshotQuery,
        kind: SourceKind,
        out: &mut dyn Write,
    ) -> Result<(), DbError> {
        // Checked first: the wrapping names one column, so a second would pass unseen and
        // a number would fail inside the wrapping, in words that are not the user's.
        q.check_one_text_column(self.user_query())?;
        // Taken apart once, not for every row.
        let prefix = self.prefix.as_deref().map(parts);
        q.for_each_text(&self.sql(kind), &mut |row| {
            let path = referenced_path(row, prefix.as_ref())?;
            writeln!(out, "{path}").map_err(|e| format!("could not be kept: {e}"))
        })?;
        Ok(())
    }
}

/// The reference query, its paths sorted in byte order by the database (PostgreSQL's "C"
/// collation; SQLite's default compares bytes) as they read with `prefix` stripped. The
/// paths come back as stored (as `text` from PostgreSQL, which drops a `char(n)`'s padding):
/// [`referenced_path`] strips the prefix by components.
fn reference_sql(kind: SourceKind, references: &References) -> String {
    let query = references.user_query();
    let path = match &references.prefix {
        Some(prefix) => {
            let n = prefix.chars().count();
            let literal = prefix.replace('\'', "''");
            format!(
                "CASE WHEN substr(p, 1, {n}) = '{literal}' THEN substr(p, {}) ELSE p END",
                n + 1
            )
        }
        None => "p".to_string(),
    };
    let (select, order) = match kind {
        SourceKind::Postgres => ("p::text", format!("({path})::text COLLATE \"C\"")),
        _ => ("p", path),
    };
    // The newline: a query ending in a `--` comment must not swallow the parenthesis.
    format!("WITH q(p) AS ({query}\n) SELECT {select} FROM q ORDER BY {order}")
}

/// A referenced path as the files listing names it: `prefix` stripped once, by whole
/// components; `.` and empty components dropped (`media//a.jpg` and `./a.jpg` are common
/// in upload tables); relative, no `..`, one line. A path this changes may break the
/// database's order, which [`check_references`] catches.
fn referenced_path(row: &str, prefix: Option<&Parts<'_>>) -> Result<String, String> {
    if row.contains(['\n', '\0']) {
        return Err(format!("returned a path with a newline or NUL: {row:?}"));
    }
    let mut absolute = row.starts_with('/');
    let mut components = components(row);
    if let Some((prefix_absolute, prefix)) = prefix {
        let mut rest = components.clone();
        if *prefix_absolute == absolute && prefix.iter().all(|p| rest.next() == Some(*p)) {
            components = rest;
            absolute = false;
        }
    }
    let (mut path, mut climbs) = (String::with_capacity(row.len()), false);
    for component in components {
        climbs |= component == "..";
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(component);
    }
    if path.is_empty() {
        return Err(format!("returned a path that names no file: {row:?}"));
    }
    if absolute {
        return Err(format!("returned an absolute path {row:?}; paths must be relative to the files member's root (see `prefix`)"));
    }
    if climbs {
        return Err(format!("returned a path with \"..\": {row:?}"));
    }
    Ok(path)
}

/// Whether a path is absolute, and its components but `.` and empty ones.
type Parts<'a> = (bool, Vec<&'a str>);

/// `path` as [`Parts`].
fn parts(path: &str) -> Parts<'_> {
    (path.starts_with('/'), components(path).collect())
}

/// `path`'s components but `.` and empty ones.
fn components(path: &str) -> impl Iterator<Item = &str> + Clone {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// What makes a bundle impossible, before anything is locked or written.
fn check_bundle(spec: &SetSpec, bundle: &BundleSpec) -> Result<(), Error> {
    let bad = |reason: String| Error::BadBundle {
        set: spec.set.clone(),
        reason,
    };
    if bundle.members.is_empty() {
        return Err(bad("has no members".to_string()));
    }
    let names: Vec<&str> = spec.members.iter().map(|m| m.set.as_str()).collect();
    if names
        != bundle
            .members
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    {
        return Err(bad(format!(
            "members {:?} were not resolved (given: {names:?})",
            bundle.members
        )));
    }
    for member in &spec.members {
        layout::check_set_name(&member.set)?;
        if member.set == spec.set {
            return Err(bad("is a member of itself".to_string()));
        }
        if matches!(member.source, SourceSpec::Bundle(_)) {
            return Err(bad(format!(
                "member {:?} is a bundle; bundles do not nest",
                member.set
            )));
        }
        if member.source.kind() == SourceKind::PostgresPhysical {
            return Err(bad(format!(
                "member {:?} is a base backup, which restores only into a data directory and \
                 so never with the other members; use a pg_dump set of that database",
                member.set
            )));
        }
        if names.iter().filter(|n| **n == member.set).count() > 1 {
            return Err(bad(format!("member {:?} is named twice", member.set)));
        }
    }
    if let Some(r) = &bundle.references {
        let kind = |name: &str| {
            spec.members
                .iter()
                .find(|m| m.set == name)
                .map(|m| m.source.kind())
        };
        match kind(&r.database) {
            Some(SourceKind::Postgres | SourceKind::Sqlite) => {}
            Some(other) => {
                return Err(bad(format!(
                    "references.database {:?} is a {} member, not a PostgreSQL or SQLite one",
                    r.database,
                    other.as_str()
                )))
            }
            None => {
                return Err(bad(format!(
                    "references.database {:?} is not a member",
                    r.database
                )))
            }
        }
        match kind(&r.files) {
            Some(SourceKind::Files) => {}
            Some(other) => {
                return Err(bad(format!(
                    "references.files {:?} is a {} member, not a files one",
                    r.files,
                    other.as_str()
                )))
            }
            None => {
                return Err(bad(format!(
                    "references.files {:?} is not a member",
                    r.files
                )))
            }
        }
        if r.query.trim().is_empty() {
            return Err(bad("references.query is empty".to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_in_a_collation_order_are_sorted_and_merged_again() {
        let files = ["A.jpg", "B.jpg", "a.jpg", "orphan.jpg"];
        // kept references -> listing reads, missing, orphans
        let cases: [(&str, usize, &[&str], &[&str]); 3] = [
            ("A.jpg\nB.jpg\na.jpg\n", 1, &[], &["orphan.jpg"]),
            // Case-insensitive, as a database collation may sort.
            ("a.jpg\nA.jpg\nB.jpg\n", 2, &[], &["orphan.jpg"]),
            (
                "b.jpg\nA.jpg\n",
                2,
                &["b.jpg"],
                &["B.jpg", "a.jpg", "orphan.jpg"],
            ),
        ];
        for (kept, reads, missing, orphans) in cases {
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(kept.as_bytes()).unwrap();
            let mut calls = 0;
            let check = check_references(
                || {
                    calls += 1;
                    Ok(files.iter().map(Ok))
                },
                &mut file,
            )
            .unwrap();
            assert_eq!(calls, reads, "{kept:?}");
            assert_eq!(check.missing, missing, "{kept:?}");
            assert_eq!(check.orphans, orphans, "{kept:?}");
        }
    }

    #[test]
    fn referenced_paths_are_relative_and_stay_inside() {
        let cases = [
            ("a/b.jpg", None, Ok("a/b.jpg")),
            ("media/media/a.jpg", Some("media/"), Ok("media/a.jpg")),
            ("media/a.jpg", Some("media"), Ok("a.jpg")),
            ("mediakit/a.jpg", Some("media"), Ok("mediakit/a.jpg")),
            // Regression: "media//a.jpg" was stripped to "/a.jpg" and refused as absolute.
            ("media//a.jpg", Some("media/"), Ok("a.jpg")),
            ("./media/./a//b.jpg/", Some("media/"), Ok("a/b.jpg")),
            ("/srv/media/a.jpg", Some("/srv/media/"), Ok("a.jpg")),
            (
                "srv/media/a.jpg",
                Some("/srv/media/"),
                Ok("srv/media/a.jpg"),
            ),
            ("/srv/a.jpg", None, Err("absolute path")),
            ("/srv/a.jpg", Some("srv/"), Err("absolute path")),
            ("a/../../etc/passwd", None, Err("\"..\"")),
            ("", None, Err("names no file")),
            ("./", None, Err("names no file")),
            ("media/", Some("media/"), Err("names no file")),
            ("media", Some("media/"), Err("names no file")),
            ("/", None, Err("names no file")),
            ("a/./b.jpg", None, Ok("a/b.jpg")),
            ("a/b/..", Some("a/"), Err("\"..\"")),
            ("media/a.jpg", Some("./media//"), Ok("a.jpg")),
            ("a\nb", None, Err("newline")),
        ];
        for (row, prefix, expected) in cases {
            match (referenced_path(row, prefix.map(parts).as_ref()), expected) {
                (Ok(path), Ok(want)) => assert_eq!(path, want, "{row:?} {prefix:?}"),
                (Err(e), Err(want)) => assert!(e.contains(want), "{row:?} {prefix:?}: {e}"),
                (got, want) => panic!("{row:?} {prefix:?}: {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn the_reference_query_sorts_in_byte_order_as_stripped_of_the_prefix() {
        let r = References {
            database: "db".into(),
            query: "SELECT path FROM uploads;".into(),
            files: "media".into(),
            prefix: Some("it's/".into()),
        };
        assert_eq!(
            reference_sql(SourceKind::Postgres, &r),
            "WITH q(p) AS (SELECT path FROM uploads\n) SELECT p::text FROM q ORDER BY (CASE WHEN \
             substr(p, 1, 5) = 'it''s/' THEN substr(p, 6) ELSE p END)::text COLLATE \"C\""
        );
        let plain = References { prefix: None, ..r };
        assert_eq!(
            reference_sql(SourceKind::Sqlite, &plain),
            "WITH q(p) AS (SELECT path FROM uploads\n) SELECT p FROM q ORDER BY p"
        );
    }
}
