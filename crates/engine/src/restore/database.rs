use strongbox_db_dump::{DatabaseTarget, Error as DbError, Inspection, SnapshotQuery, SqlCheck};
use strongbox_manifest::{ObjectRole, SourceKind, Stats};

use super::{RestoreDetail, RestoreRun, Restored, Restorer};
use crate::progress::Watched;
use crate::source::DumpSource;
use crate::{Error, Source};

/// A database to restore a database snapshot into: its dump streams out of the pipeline,
/// checked against the record, into the target (`pg_restore` in one transaction, or an
/// SQLite file staged and swapped in), which then checks every table's row count against
/// the record.
pub struct DatabaseRestorer {
    target: Box<dyn DatabaseTarget>,
}

impl DatabaseRestorer {
    /// Restore into `target`.
    pub fn new(target: Box<dyn DatabaseTarget>) -> Self {
        DatabaseRestorer { target }
    }
}

impl DatabaseRestorer {
    /// The target's own checks of what was restored and the operator's `checks`, for a
    /// restore test.
    pub fn inspect(&mut self, checks: &[SqlCheck]) -> Result<Vec<Inspection>, Error> {
        Ok(self.target.inspect(checks)?)
    }

    /// Query the restored database (see [`DatabaseTarget::query_restored`]).
    pub fn query_restored(
        &mut self,
        inside: &mut dyn FnMut(&mut dyn SnapshotQuery) -> Result<(), DbError>,
    ) -> Result<(), Error> {
        Ok(self.target.query_restored(inside)?)
    }
}

impl std::fmt::Debug for DatabaseRestorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseRestorer")
            .field("target", &self.target.describe())
            .finish()
    }
}

impl Restorer for DatabaseRestorer {
    fn kind(&self) -> SourceKind {
        self.target.kind()
    }

    fn describe(&self) -> String {
        self.target.describe()
    }

    fn is_empty(&mut self) -> Result<bool, Error> {
        Ok(self.target.is_empty()?)
    }

    fn replaced(&self) -> String {
        "a safety snapshot of its current content is taken first".to_string()
    }

    fn safety_source(&self) -> Option<Box<dyn Source>> {
        self.target
            .safety_source()
            .map(|database| Box::new(DumpSource::new(database)) as Box<dyn Source>)
    }

    fn restore(&mut self, run: &mut RestoreRun<'_>) -> Result<Restored, Error> {
        let snapshot = run.objects.snapshot();
        let Stats::Database(stats) = &snapshot.stats else {
            return Err(Error::BadRecord {
                id: snapshot.id.to_string(),
                reason: "a database snapshot record with files statistics".to_string(),
            });
        };
        run.progress().phase("restoring", Some(stats.bytes_dumped));
        let mut feed = Watched {
            inner: run.objects.open(ObjectRole::Dump)?,
            progress: run.progress(),
            cancel: run.cancel(),
        };
        let report = self
            .target
            .restore(&mut feed, stats)
            .map_err(|e| run.cancel().or_cancelled(e))?;
        run.progress().finish();
        Ok(Restored {
            previous: report.previous,
            detail: RestoreDetail::Tables(report.tables),
        })
    }
}
