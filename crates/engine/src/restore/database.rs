use std::io::{self, Read};
use std::path::Path;

use strongbox_db_dump::{DatabaseTarget, Error as DbError, Inspection, SnapshotQuery, SqlCheck};
use strongbox_manifest::{DatabaseStats, ObjectRole, Snapshot, SourceKind, Stats};

use super::{lies_within, RestoreDetail, RestoreRun, Restored, Restorer};
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

    fn reaches(&self, dir: &Path) -> Result<bool, Error> {
        match self.target.file() {
            Some(file) => lies_within(file, dir),
            None => Ok(false),
        }
    }

    fn replaced(&self) -> String {
        "a safety snapshot of its current content is taken first".to_string()
    }

    fn safety_source(&self) -> Option<Box<dyn Source>> {
        self.target
            .safety_source()
            .map(|database| Box::new(DumpSource::new(database)) as Box<dyn Source>)
    }

    fn check_replacement(&mut self, snapshot: &Snapshot) -> Result<(), Error> {
        Ok(self.target.check_replacement(database_stats(snapshot)?)?)
    }

    fn restore(&mut self, run: &mut RestoreRun<'_>) -> Result<Restored, Error> {
        let snapshot = run.objects.snapshot();
        let stats = database_stats(snapshot)?;
        run.progress().phase("restoring", Some(stats.bytes_dumped));
        let mut feed = Watched {
            inner: Declared {
                inner: run.objects.open(ObjectRole::Dump)?,
                left: stats.bytes_dumped,
            },
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

fn database_stats(snapshot: &Snapshot) -> Result<&DatabaseStats, Error> {
    match &snapshot.stats {
        Stats::Database(stats) => Ok(stats),
        _ => Err(Error::BadRecord {
            id: snapshot.id.to_string(),
            reason: "a database snapshot record with files statistics".to_string(),
        }),
    }
}

/// The dump as its record declares it: reading past the declared length is an error, so a
/// small object that expands to terabytes (a zstd bomb) stops there, not at a full disk.
struct Declared<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Declared<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte more than declared is enough to know the dump is too long.
        let want = buf
            .len()
            .min(usize::try_from(self.left + 1).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        match self.left.checked_sub(n as u64) {
            Some(left) => {
                self.left = left;
                Ok(n)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the dump is longer than its record declares",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_is_read_up_to_its_declared_length_and_no_further() {
        let cases: [(&[u8], u64, bool); 4] = [
            (b"", 0, true),
            (b"abc", 3, true),
            (b"abcd", 3, false),
            (b"ab", 3, true),
        ];
        for (bytes, declared, ok) in cases {
            let mut out = Vec::new();
            let read = Declared {
                inner: bytes,
                left: declared,
            }
            .read_to_end(&mut out);
            assert_eq!(read.is_ok(), ok, "{bytes:?} against {declared}");
        }
    }
}
