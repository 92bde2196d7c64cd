use std::time::{Duration, Instant};

use strongbox_archive::Compression;
use strongbox_db_dump::{PhysicalSource, ServerState};
use strongbox_manifest::{
    Lsn, ObjectRole, PhysicalStats, Segment, SnapshotKind, SourceKind, Stats, WalFile,
};
use strongbox_storage::layout;

use super::{BackupRun, Draft, Source};
use crate::progress::Watched;
use crate::Error;

const COMPRESSION: Compression = Compression::Zstd(3);

/// How long a base backup waits for the segment it switched to be archived.
const ARCHIVE_WAIT: Duration = Duration::from_secs(60);

/// A PostgreSQL cluster's base backup, streamed by `pg_basebackup` into one object,
/// `<id>.base.tar.zst`, with no local copy. The server must archive its WAL into the same
/// set (`archive_command = 'strongbox … wal push SET %p'`): the backup first switches WAL
/// and waits until that segment is in the set, so a backup is never taken that its WAL
/// cannot complete.
pub struct BaseBackupSource {
    server: PhysicalSource,
}

impl BaseBackupSource {
    /// A source for the cluster `conninfo` connects to.
    pub fn new(conninfo: &str) -> Result<Self, Error> {
        Ok(BaseBackupSource {
            server: PhysicalSource::new(conninfo)?,
        })
    }

    /// Refuse a server whose WAL does not reach `set`: archiving off, another command,
    /// several tablespaces, or a switched segment that does not arrive.
    fn check_archiving(&self, run: &BackupRun<'_>, set: &str) -> Result<ServerState, Error> {
        let refuse = |reason: String| Error::BaseBackupRefused {
            set: set.to_string(),
            reason,
        };
        let state = self.server.server()?;
        if state.server_version_num < 130_000 {
            return Err(refuse(format!(
                "{} is too old: base backups need PostgreSQL 13 or newer, whose \
                 pg_basebackup writes the backup manifest that says where the backup's WAL \
                 starts and ends",
                state.server_version
            )));
        }
        if !state.tablespaces.is_empty() {
            return Err(refuse(format!(
                "the cluster has tablespaces besides pg_default ({}); a base backup streams \
                 one data directory, so strongbox takes clusters with one tablespace only",
                state.tablespaces.join(", ")
            )));
        }
        if state.archive_mode == "off" {
            return Err(refuse(format!(
                "archive_mode is off; set archive_mode = on and archive_command = \
                 'strongbox --repo … wal push {set} %p' and restart the server"
            )));
        }
        let command = &state.archive_command;
        let pushes_here = command.contains("wal push")
            && command
                .split(|c: char| c.is_whitespace() || c == '\'' || c == '"')
                .any(|word| word == set);
        if !pushes_here {
            return Err(refuse(format!(
                "archive_command does not archive into this set; it must run \
                 'strongbox --repo … wal push {set} %p'"
            )));
        }
        run.progress().phase("waiting for WAL to be archived", None);
        let segment = self.server.switch_wal()?;
        let timeline = WalFile::parse(&segment, state.wal_segment_size)?.timeline();
        let key = layout::wal_key(set, timeline, &segment);
        let started = Instant::now();
        loop {
            run.cancel().check()?;
            match run.reader.repo.head(&key) {
                Ok(_) => return Ok(state),
                Err(strongbox_storage::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            if started.elapsed() > ARCHIVE_WAIT {
                let archiver = self.server.archiver()?;
                let show = |s: Option<String>| s.unwrap_or_else(|| "none".to_string());
                return Err(refuse(format!(
                    "WAL segment {segment} did not arrive in the set within {} s after \
                     pg_switch_wal() (pg_stat_archiver: last archived {}, last failed {}); \
                     check archive_command and the server log",
                    ARCHIVE_WAIT.as_secs(),
                    show(archiver.last_archived),
                    show(archiver.last_failed)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl std::fmt::Debug for BaseBackupSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseBackupSource")
            .field("origin", &self.server.origin())
            .finish()
    }
}

impl Source for BaseBackupSource {
    fn kind(&self) -> SourceKind {
        SourceKind::PostgresPhysical
    }

    fn origin(&self) -> String {
        self.server.origin()
    }

    fn backup(&mut self, run: &mut BackupRun<'_>) -> Result<Draft, Error> {
        let set = run.sink.set().to_string();
        let state = self.check_archiving(run, &set)?;
        let segment_size = state.wal_segment_size;
        let writer = run.sink.create("base.tar.zst", COMPRESSION)?;
        run.progress().phase("streaming the base backup", None);
        let mut sink = Watched {
            inner: writer,
            progress: run.progress(),
            cancel: run.cancel(),
        };
        let base = self
            .server
            .base_backup(&mut sink)
            .map_err(|e| run.cancel().or_cancelled(e))?;
        run.progress().finish();
        run.cancel().check()?;
        let stored = run.sink.finish(sink.inner, ObjectRole::Dump)?.size;
        let name = |lsn: Lsn| Segment::of(base.timeline, lsn, segment_size).name(segment_size);
        Ok(Draft {
            kind: SnapshotKind::Full,
            parent: None,
            compression: COMPRESSION,
            stats: Stats::Physical(PhysicalStats {
                server_version: state.server_version,
                system_identifier: state.system_identifier,
                timeline: base.timeline,
                wal_segment_size: segment_size,
                start_lsn: base.start_lsn,
                stop_lsn: base.stop_lsn,
                start_segment: name(base.start_lsn),
                stop_segment: name(base.stop_lsn),
                stop_time: base.stop_time,
                bytes_read: base.bytes,
                bytes_stored: stored,
            }),
            errors: Vec::new(),
            warnings: Vec::new(),
        })
    }
}
