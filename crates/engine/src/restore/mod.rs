//! The restore seam: a [`Restorer`] writes a snapshot into a target, reading it through an
//! [`ObjectSource`]; the engine checks the target, takes a safety snapshot where the target
//! asks for one, and journals the attempt, the same way for every kind.

mod database;
mod datadir;
mod directory;
mod owners;

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use strongbox_db_dump::{is_conninfo, redact_conninfo, PostgresTarget, SqliteTarget};
use strongbox_manifest::{FileEntry, FileType, Snapshot, SourceKind, Stats, TableCount};

pub use database::DatabaseRestorer;
pub use datadir::{DataDirTarget, Recovery};
pub use directory::DirectoryTarget;

use crate::journal::{Operation, RunOutcome};
use crate::spec::BackupOptions;
use crate::tree::ObjectSource;
use crate::{Cancel, Engine, Error, Progress, Source};

/// The tag of a safety snapshot, taken of a target before a restore replaces it, and the
/// suffix of the set it goes into (`<set>-safety`).
pub(crate) const SAFETY_TAG: &str = "safety";
pub(crate) const SAFETY_SUFFIX: &str = "-safety";

/// A place a snapshot can be restored into: a directory, a database, a file, a scratch
/// copy. Adding a target kind means one implementation of this trait.
pub trait Restorer {
    /// The kind of snapshot it takes.
    fn kind(&self) -> SourceKind;
    /// The target, for messages (connection strings without their password).
    fn describe(&self) -> String;
    /// Whether it holds no data yet (a missing target counts as empty).
    fn is_empty(&mut self) -> Result<bool, Error>;
    /// What a forced restore does with the target's current content, for the message that
    /// refuses a non-empty target.
    fn replaced(&self) -> String;
    /// A source reading the target's current content, backed up into `<set>-safety` before
    /// a forced restore replaces it; `None` when there is nothing to save.
    fn safety_source(&self) -> Option<Box<dyn Source>> {
        None
    }
    /// Whether restoring would write inside the directory `dir` or replace it (the local
    /// repository's own: such a restore is refused).
    fn reaches(&self, _dir: &Path) -> Result<bool, Error> {
        Ok(false)
    }
    /// Refuse to replace the target's data with `snapshot` when the restore would not
    /// leave the target as the snapshot; asked before anything is written, safety snapshot
    /// included.
    fn check_replacement(&mut self, _snapshot: &Snapshot) -> Result<(), Error> {
        Ok(())
    }
    /// Write the snapshot into the target. A failure leaves the target as it was.
    fn restore(&mut self, run: &mut RestoreRun<'_>) -> Result<Restored, Error>;
}

/// What a [`Restorer`] works with during one restore.
pub struct RestoreRun<'a> {
    /// The snapshot's objects.
    pub objects: ObjectSource<'a>,
    /// The target holds data that the restore replaces (`force` was given).
    pub replace: bool,
}

impl RestoreRun<'_> {
    /// Where progress goes.
    pub fn progress(&self) -> &dyn Progress {
        self.objects.reader.progress.as_ref()
    }

    /// The cancellation flag, to check between chunks of work.
    pub fn cancel(&self) -> &Cancel {
        &self.objects.reader.cancel
    }
}

/// What a [`Restorer`] reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restored {
    /// Where the replaced content was kept, if it was.
    pub previous: Option<PathBuf>,
    /// What was written.
    #[serde(flatten)]
    pub detail: RestoreDetail,
}

/// What a restore wrote, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreDetail {
    /// A files restore: its plan, every file's digest checked.
    Plan(RestorePlan),
    /// A database restore: the restored tables with their row counts, as checked against
    /// the snapshot.
    Tables(Vec<TableCount>),
    /// A base backup restored as a data directory that recovers when started.
    Recovery(Recovery),
}

impl RestoreDetail {
    /// Bytes written: file content, or the dump a database restore read.
    pub fn bytes(&self, snapshot: &Snapshot) -> u64 {
        match (self, &snapshot.stats) {
            (RestoreDetail::Plan(plan), _) => plan.bytes,
            (RestoreDetail::Tables(_), Stats::Database(stats)) => stats.bytes_dumped,
            (RestoreDetail::Tables(_), _) => 0,
            (RestoreDetail::Recovery(recovery), _) => recovery.bytes,
        }
    }
}

/// Options of one restore that every kind takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreOptions {
    /// Replace a target that holds data.
    #[serde(default)]
    pub force: bool,
}

/// A finished restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreOutcome {
    /// The snapshot restored.
    pub snapshot: String,
    /// Where (redacted).
    pub target: String,
    /// Where the replaced content was kept, if it was.
    pub previous: Option<PathBuf>,
    /// The snapshot of the target's former content, taken before a forced restore.
    pub safety_snapshot: Option<String>,
    /// Wall-clock seconds.
    pub duration_secs: f64,
    /// What was written.
    #[serde(flatten)]
    pub detail: RestoreDetail,
}

/// What a files restore reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePlan {
    /// The snapshot restored.
    pub snapshot: String,
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// The archives read, oldest first.
    pub holders: Vec<HolderPlan>,
}

/// One archive a restore reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderPlan {
    /// The snapshot owning the archive.
    pub id: String,
    /// Entries taken from it.
    pub entries: u64,
    /// File bytes taken from it.
    pub bytes: u64,
}

impl RestorePlan {
    /// The plan of restoring nothing of `snapshot`, for [`Self::add`] to count entries in.
    pub fn empty(snapshot: &Snapshot) -> Self {
        RestorePlan {
            snapshot: snapshot.id.to_string(),
            files: 0,
            dirs: 0,
            symlinks: 0,
            bytes: 0,
            holders: Vec::new(),
        }
    }

    /// Count `entry` in.
    pub fn add(&mut self, entry: &FileEntry) {
        match entry.kind {
            FileType::File => {
                self.files += 1;
                self.bytes += entry.size;
            }
            FileType::Dir => self.dirs += 1,
            FileType::Symlink => self.symlinks += 1,
        }
        let holder = entry.holder.as_ref().map_or("", |h| h.as_str());
        // A few holders, kept in id order (oldest first).
        let index = match self.holders.binary_search_by(|h| h.id.as_str().cmp(holder)) {
            Ok(index) => index,
            Err(index) => {
                self.holders.insert(
                    index,
                    HolderPlan {
                        id: holder.to_string(),
                        entries: 0,
                        bytes: 0,
                    },
                );
                index
            }
        };
        self.holders[index].entries += 1;
        self.holders[index].bytes += entry.size;
    }
}

/// A restore target as an operator names it (`--target`): a directory for a files
/// snapshot, a libpq connection string (`postgresql://…` or `host=… dbname=…`) for a
/// PostgreSQL one, a file for an SQLite one. The snapshot's kind says which; a connection
/// string is never taken for a path.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSpec {
    /// The target (shown and serialized without a connection string's password).
    #[serde(serialize_with = "redacted_target")]
    pub target: String,
    /// Files only: restore just the entries matching these globs (and their ancestors).
    #[serde(default)]
    pub includes: Vec<String>,
    /// Files only: keep a replaced directory as `<target>.pre-restore-<time>`.
    #[serde(default = "yes")]
    pub keep_previous: bool,
}

fn yes() -> bool {
    true
}

/// A connection string without its password; a path as given.
fn shown_target(target: &str) -> String {
    if is_conninfo(target) {
        redact_conninfo(target)
    } else {
        target.to_string()
    }
}

fn redacted_target<S: serde::Serializer>(target: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&shown_target(target))
}

impl fmt::Debug for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetSpec")
            .field("target", &shown_target(&self.target))
            .field("includes", &self.includes)
            .field("keep_previous", &self.keep_previous)
            .finish()
    }
}

impl TargetSpec {
    /// The target `target` with defaults.
    pub fn new(target: impl Into<String>) -> Self {
        TargetSpec {
            target: target.into(),
            includes: Vec::new(),
            keep_previous: true,
        }
    }

    /// The restorer for a snapshot of `kind`.
    pub fn restorer(&self, kind: SourceKind) -> Result<Box<dyn Restorer>, Error> {
        let conninfo = is_conninfo(&self.target);
        let refuse = |reason: String| {
            Err(Error::BadTarget {
                target: redact_conninfo(&self.target),
                reason,
            })
        };
        if kind != SourceKind::Files && !self.includes.is_empty() {
            return refuse(format!(
                "--include applies to files snapshots, not to a {} snapshot",
                kind.as_str()
            ));
        }
        // Said rather than ignored: the operator asked for the replaced data to go.
        if kind != SourceKind::Files && !self.keep_previous {
            return refuse(format!(
                "--no-keep-previous applies to files snapshots, not to a {} snapshot (a \
                 database restore always keeps what it replaces: a safety snapshot, and an \
                 SQLite file set aside)",
                kind.as_str()
            ));
        }
        match kind {
            SourceKind::PostgresPhysical => refuse(
                "a base backup restores into a data directory: give --target-dir DIR and \
                 --to-time, --to-lsn or --to-latest"
                    .to_string(),
            ),
            SourceKind::Bundle => refuse(
                "a bundle restores through its members: give --target MEMBER=TARGET for each"
                    .to_string(),
            ),
            SourceKind::Files if conninfo => refuse(
                "a files snapshot restores into a directory, and this is a PostgreSQL \
                 connection string (write ./NAME for a directory of that name)"
                    .to_string(),
            ),
            SourceKind::Files => Ok(Box::new(DirectoryTarget {
                path: PathBuf::from(&self.target),
                includes: self.includes.clone(),
                keep_previous: self.keep_previous,
            })),
            SourceKind::Postgres if !conninfo => refuse(
                "a PostgreSQL snapshot restores into a database: give a connection string \
                 (postgresql://user@host/DB or 'host=… dbname=DB')"
                    .to_string(),
            ),
            SourceKind::Postgres => Ok(Box::new(DatabaseRestorer::new(Box::new(
                PostgresTarget::new(&self.target)?,
            )))),
            SourceKind::Sqlite if conninfo => refuse(
                "an SQLite snapshot restores into a file, and this is a PostgreSQL \
                 connection string (write ./NAME for a file of that name)"
                    .to_string(),
            ),
            SourceKind::Sqlite => Ok(Box::new(DatabaseRestorer::new(Box::new(
                SqliteTarget::new(&self.target),
            )))),
        }
    }
}

impl Engine {
    /// Refuse a target that would write into the local repository or replace it.
    pub(crate) fn refuse_repository(&self, target: &dyn Restorer) -> Result<(), Error> {
        match self.repo().local_root() {
            Some(root) if target.reaches(root)? => Err(Error::BadTarget {
                target: target.describe(),
                reason: format!(
                    "it holds or is inside repository {}, which the restore would overwrite",
                    root.display()
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Restore `snapshot` into `target`. A target that holds data is refused unless
    /// `options.force`; then, if the target offers one, a safety snapshot of its current
    /// content is taken first into the set `<set>-safety`. Any failure leaves the target as
    /// it was.
    pub fn restore(
        &self,
        snapshot: &Snapshot,
        target: &mut dyn Restorer,
        options: &RestoreOptions,
    ) -> Result<RestoreOutcome, Error> {
        let replace = self.check_target(snapshot, target, options)?;
        self.journaled(
            &snapshot.set,
            Operation::Restore,
            Some(snapshot.id.to_string()),
            || self.restore_unchecked(snapshot, target, replace),
            |outcome| RunOutcome {
                ok: true,
                bytes: Some(outcome.detail.bytes(snapshot)),
                ..RunOutcome::default()
            },
        )
    }

    /// What [`Engine::restore`] checks before it writes anything, for a dry run to refuse
    /// what the restore would: the target's kind, the repository, and a target that holds
    /// data without `options.force`. True when the restore would replace data.
    pub fn check_target(
        &self,
        snapshot: &Snapshot,
        target: &mut dyn Restorer,
        options: &RestoreOptions,
    ) -> Result<bool, Error> {
        if snapshot.source != target.kind() {
            return Err(Error::WrongSource {
                id: snapshot.id.to_string(),
                source_kind: snapshot.source.as_str(),
                reason: format!(
                    "it cannot be restored into {}, a {} target",
                    target.describe(),
                    target.kind().as_str()
                ),
            });
        }
        self.refuse_repository(target)?;
        let empty = target.is_empty()?;
        if !empty && !options.force {
            return Err(Error::TargetNotEmpty {
                target: target.describe(),
                replaced: target.replaced(),
            });
        }
        if !empty {
            target.check_replacement(snapshot)?;
        }
        Ok(!empty)
    }

    fn restore_unchecked(
        &self,
        snapshot: &Snapshot,
        target: &mut dyn Restorer,
        replace: bool,
    ) -> Result<RestoreOutcome, Error> {
        let started = Instant::now();
        let safety_snapshot = match target.safety_source().filter(|_| replace) {
            Some(mut source) => {
                let set = format!("{}{SAFETY_SUFFIX}", snapshot.set);
                tracing::info!(target = %target.describe(), %set, "taking a safety snapshot of the target first");
                let options = BackupOptions {
                    tags: vec![
                        SAFETY_TAG.to_string(),
                        format!("before-restore-of-{}", snapshot.id),
                    ],
                    time: None,
                };
                Some(
                    self.backup_source(&set, source.as_mut(), &options)?
                        .id
                        .to_string(),
                )
            }
            None => None,
        };
        self.cancel.check()?;
        // Named before the restore: a target given as `.` resolves, after the swap, to
        // where the old tree went.
        let described = target.describe();
        let restored = self.restore_into(snapshot, target, replace)?;
        Ok(RestoreOutcome {
            snapshot: snapshot.id.to_string(),
            target: described,
            previous: restored.previous,
            safety_snapshot,
            duration_secs: started.elapsed().as_secs_f64(),
            detail: restored.detail,
        })
    }
}

impl crate::Reader {
    /// Write `snapshot` into `target`, nothing else: no checks of the target, no safety
    /// snapshot, no journal (a restore test, or [`Engine::restore`] once it checked).
    pub(crate) fn restore_into(
        &self,
        snapshot: &Snapshot,
        target: &mut dyn Restorer,
        replace: bool,
    ) -> Result<Restored, Error> {
        let mut run = RestoreRun {
            objects: ObjectSource {
                reader: self,
                snapshot,
            },
            replace,
        };
        target.restore(&mut run)
    }
}

/// Whether `path` (relative to the working directory, or absolute) lies in `dir` or is
/// it, both [`resolved`] as the kernel will find them once written.
pub(crate) fn lies_within(path: &Path, dir: &Path) -> Result<bool, Error> {
    let absolute = std::path::absolute(path).map_err(|e| Error::io("resolving", path, e))?;
    Ok(resolved(&absolute).starts_with(resolved(dir)))
}

/// `path` (absolute) with its longest existing ancestor resolved (symbolic links, `..`) and
/// the rest applied to it as names: where the kernel will find it once the missing
/// directories are created. `..` after a missing directory must not be left for later: a
/// target `missing/../dir` looked empty and new, yet named `dir`.
pub(crate) fn resolved(path: &Path) -> PathBuf {
    let parts: Vec<Component<'_>> = path.components().collect();
    for existing in (1..=parts.len()).rev() {
        let Ok(mut real) = parts[..existing].iter().collect::<PathBuf>().canonicalize() else {
            continue;
        };
        for part in &parts[existing..] {
            match part {
                Component::ParentDir => {
                    real.pop();
                }
                Component::Normal(name) => real.push(name),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        return real;
    }
    path.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_shows_no_password_and_a_path_as_given() {
        for (target, shown) in [
            ("postgresql://u:hunter2@db/app", "postgresql://u:***@db/app"),
            (
                "host=db password=hunter2 dbname=app",
                "host=db password=*** dbname=app",
            ),
            ("/srv/restore/user:pw@x=y", "/srv/restore/user:pw@x=y"),
        ] {
            let spec = TargetSpec::new(target);
            let json = serde_json::to_value(&spec).unwrap();
            assert_eq!(json["target"], shown, "{target}");
            let debugged = format!("{spec:?}");
            assert!(
                debugged.contains(shown) && !debugged.contains("hunter2"),
                "{debugged}"
            );
        }
    }

    #[test]
    fn targets_follow_the_snapshot_kind_and_never_take_a_conninfo_for_a_path() {
        use SourceKind::*;
        // (target, snapshot kind) -> the target kind, or a phrase of the refusal
        let cases: [(&str, SourceKind, Result<SourceKind, &str>); 9] = [
            ("/srv/media", Files, Ok(Files)),
            ("dbname=app", Files, Err("connection string")),
            ("/srv/chat.sqlite3", Sqlite, Ok(Sqlite)),
            (
                "host=/var/run/postgresql dbname=app",
                Sqlite,
                Err("connection string"),
            ),
            ("./dbname=app", Sqlite, Ok(Sqlite)),
            (
                "postgresql://u:secret@127.0.0.1:1/app",
                Postgres,
                Ok(Postgres),
            ),
            (
                "host=127.0.0.1 port=1 user=u dbname=app",
                Postgres,
                Ok(Postgres),
            ),
            ("/srv/app.db", Postgres, Err("give a connection string")),
            (
                "postgresql://u@127.0.0.1:1/app",
                Files,
                Err("connection string"),
            ),
        ];
        for (target, kind, expected) in cases {
            match (TargetSpec::new(target).restorer(kind), expected) {
                (Ok(restorer), Ok(want)) => assert_eq!(restorer.kind(), want, "{target}"),
                (Err(e), Err(phrase)) => assert!(e.to_string().contains(phrase), "{target}: {e}"),
                (Ok(r), Err(phrase)) => panic!("{target}: a {:?} target, want {phrase}", r.kind()),
                (Err(e), Ok(_)) => panic!("{target}: {e}"),
            }
        }
        let pg = TargetSpec::new("postgresql://u:secret@127.0.0.1:1/app")
            .restorer(Postgres)
            .unwrap();
        assert!(!pg.describe().contains("secret") && pg.describe().contains("app"));
        let mut partial = TargetSpec::new("/srv/chat.sqlite3");
        partial.includes = vec!["x".into()];
        let err = partial.restorer(Sqlite).err().unwrap().to_string();
        assert!(
            err.contains("--include applies to files snapshots"),
            "{err}"
        );
        for (target, kind) in [
            ("/srv/chat.sqlite3", Sqlite),
            ("postgresql://127.0.0.1/app", Postgres),
        ] {
            let mut dropping = TargetSpec::new(target);
            dropping.keep_previous = false;
            let err = dropping.restorer(kind).err().unwrap().to_string();
            assert!(
                err.contains("--no-keep-previous applies to files snapshots"),
                "{err}"
            );
        }
        let mut dropping = TargetSpec::new("/srv/media");
        dropping.keep_previous = false;
        assert!(dropping.restorer(SourceKind::Files).is_ok());
    }
}
