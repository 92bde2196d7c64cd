//! The WAL archive of a physical set: `wal push` stores what PostgreSQL's `archive_command`
//! hands over, `wal fetch` gives it back to `restore_command`, and the window says which
//! points in time the set's base backups and their archived WAL can recover to.
//!
//! Pushes take no lock: a segment is written once, with a create-only PUT, so they run
//! beside backups and prunes (which delete only WAL older than every kept base backup).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strongbox_archive::Compression;
use strongbox_db_dump::SegmentEnd;
use strongbox_manifest::{
    first_gap, Lsn, PhysicalStats, Segment, Snapshot, WalFile, DEFAULT_SEGMENT_SIZE,
};
use strongbox_storage::{layout, PutMode};

use crate::{Engine, Error, Reader};

/// `archive_command` is on PostgreSQL's critical path, once per segment: zstd's first fast
/// level compresses WAL about 40 % faster than level 1, for about 1 % more bytes.
const COMPRESSION: Compression = Compression::Zstd(-1);

/// How many segments a window's end is looked for in, newest first, for the last commit.
const WALK_BACK: usize = 64;

/// What `pg_waldump` found in archived segments, each fetched and read once per command.
#[derive(Debug, Default)]
pub(crate) struct SegmentEnds(HashMap<Segment, SegmentEnd>);

impl SegmentEnds {
    fn read(
        &mut self,
        reader: &Reader,
        snapshot: &Snapshot,
        physical: &PhysicalStats,
        segment: Segment,
    ) -> Result<SegmentEnd, Error> {
        if let Some(found) = self.0.get(&segment) {
            return Ok(*found);
        }
        let name = segment.name(physical.wal_segment_size);
        let scratch =
            tempfile::tempdir().map_err(|e| Error::io("creating", std::env::temp_dir(), e))?;
        let path = scratch.path().join(&name);
        reader.wal_fetch(&snapshot.set, &name, &path)?;
        let found = strongbox_db_dump::segment_end(&path, &physical.server_version)?;
        self.0.insert(segment, found);
        Ok(found)
    }
}

/// The smallest segment size PostgreSQL allows: names are checked against it when no
/// record says the set's size yet.
const MIN_SEGMENT_SIZE: u64 = 1 << 20;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    /// Where the file is archived.
    pub key: String,
    /// It was archived already, with the same content (a retry).
    pub already: bool,
    /// Bytes of the file.
    pub bytes: u64,
    /// Bytes stored (0 when it was archived already).
    pub stored: u64,
}

/// An archived WAL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalObject {
    /// Its name, as PostgreSQL names it.
    pub name: String,
    /// What the name says it is.
    pub file: WalFile,
    /// The archive key.
    pub key: String,
    /// Bytes stored.
    pub size: u64,
    /// When it was archived.
    pub modified: DateTime<Utc>,
}

/// A point recovery can stop at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// The time (of the last commit, for a window's end; none when no commit was found).
    pub time: Option<DateTime<Utc>>,
    /// The LSN.
    pub lsn: Lsn,
}

/// What one base backup and the WAL archived after it can recover to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupWindow {
    /// The base backup.
    pub snapshot: String,
    /// Its timeline.
    pub timeline: u32,
    /// Its end: the earliest consistent point.
    pub earliest: Point,
    /// The last commit (time) and record (LSN) of the continuous WAL after it; `None` when
    /// the WAL the backup needs is not all archived.
    pub latest: Option<Point>,
    /// The newest segment of the continuous run from the backup's start.
    pub last_segment: Option<String>,
    /// The first segment missing after the backup's start, if any is.
    pub gap: Option<String>,
}

/// The WAL archive of one timeline, and what its base backups can recover to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineWindow {
    /// The timeline.
    pub timeline: u32,
    /// Segments archived.
    pub segments: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// The oldest archived segment.
    pub first_segment: Option<String>,
    /// The newest archived segment.
    pub last_segment: Option<String>,
    /// When the newest file of the timeline was archived.
    pub last_archived: Option<DateTime<Utc>>,
    /// The earliest point of any base backup on this timeline.
    pub earliest: Option<Point>,
    /// The latest point any base backup reaches.
    pub latest: Option<Point>,
    /// Each base backup on the timeline, oldest first.
    pub backups: Vec<BackupWindow>,
}

/// Where a recovery stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "at")]
pub enum RecoveryTarget {
    /// The end of the archived WAL.
    Latest,
    /// Before the first transaction that committed after this time.
    Time(DateTime<Utc>),
    /// After the record at this LSN.
    Lsn(Lsn),
}

impl std::fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoveryTarget::Latest => f.write_str("the latest archived WAL"),
            RecoveryTarget::Time(time) => write!(f, "{}", time.to_rfc3339()),
            RecoveryTarget::Lsn(lsn) => write!(f, "LSN {lsn}"),
        }
    }
}

impl std::fmt::Display for BackupWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let time = |p: &Point| p.time.map_or("no commit".to_string(), |t| t.to_rfc3339());
        write!(
            f,
            "snapshot {} recovers from {} (LSN {}) ",
            self.snapshot,
            time(&self.earliest),
            self.earliest.lsn
        )?;
        match (&self.latest, &self.gap) {
            (Some(Point { time: None, lsn }), _) => write!(
                f,
                "to LSN {lsn}, the last archived record (no commit found to give a time)"
            ),
            (Some(latest), _) => write!(
                f,
                "to the last archived commit at {} (last record LSN {})",
                time(latest),
                latest.lsn
            ),
            (None, Some(gap)) => write!(f, "to nowhere: WAL segment {gap} is missing"),
            (None, None) => write!(f, "to nowhere: no WAL is archived"),
        }?;
        match (&self.latest, &self.gap) {
            (Some(_), Some(gap)) => write!(f, "; WAL segment {gap} is missing or unreadable"),
            _ => Ok(()),
        }
    }
}

impl Engine {
    /// Archive the WAL file at `path` into `set` (PostgreSQL's `archive_command`): stored
    /// through the object pipeline with one create-only PUT under
    /// `sets/<set>/wal/<timeline>/<name>`. A file archived already with the same content
    /// is a success (PostgreSQL retries after a failure it did not see end); with other
    /// content, an error.
    pub fn wal_push(&self, set: &str, path: &Path) -> Result<Pushed, Error> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (key, file) = archive_key(set, &name)?;
        // PostgreSQL hands over regular files, a segment whole; anything else is refused
        // before the file is opened (a FIFO would block the open) and before the object is
        // started, so a failed push leaves nothing behind. Archived, a short segment would
        // stand in for the real one for good.
        let refuse = |reason: String| {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, reason);
            Error::io("archiving", path, e)
        };
        let meta = std::fs::metadata(path).map_err(|e| Error::io("opening", path, e))?;
        if !meta.is_file() {
            return Err(refuse("not a regular file".to_string()));
        }
        let whole_segment = matches!(file, WalFile::Segment(_) | WalFile::Partial(_));
        if whole_segment && !is_segment_size(meta.len()) {
            return Err(refuse(format!(
                "{} bytes is no WAL segment size (a power of two from 1 MiB to 1 GiB)",
                meta.len()
            )));
        }
        // Read by the codec's workers, chunk by chunk, rather than read whole first: a 16 MiB
        // buffer costs page faults and a copy, on PostgreSQL's critical path.
        let source = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
        let mut writer = self
            .writer
            .create_small(&key, COMPRESSION, PutMode::Create)?;
        let bytes = writer
            .copy_from_file(source)
            .map_err(|e| Error::io("archiving", path, e))?;
        match writer.finish() {
            Ok(written) => Ok(Pushed {
                key,
                already: false,
                bytes,
                stored: written.size,
            }),
            Err(strongbox_storage::Error::AlreadyExists { .. }) => {
                let archived = self.repo.read_compressed(&key)?;
                let local = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
                if archived != local {
                    return Err(Error::WalConflict { key, name });
                }
                tracing::info!(%key, "archived already, with the same content");
                Ok(Pushed {
                    key,
                    already: true,
                    bytes,
                    stored: 0,
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Reader {
    /// Write the archived WAL file `name` of `set` to `dest` (PostgreSQL's
    /// `restore_command`), whole or not at all. `Ok(false)` when it is not archived.
    pub fn wal_fetch(&self, set: &str, name: &str, dest: &Path) -> Result<bool, Error> {
        let (key, _) = archive_key(set, name)?;
        let bytes = match self.repo.read_compressed(&key) {
            Ok(bytes) => bytes,
            Err(strongbox_storage::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut staged = tempfile::Builder::new()
            .prefix(".strongbox-wal-")
            .tempfile_in(dir)
            .map_err(|e| Error::io("creating a file in", dir, e))?;
        staged
            .write_all(&bytes)
            .and_then(|()| staged.as_file().sync_all())
            .map_err(|e| Error::io("writing", staged.path().to_path_buf(), e))?;
        staged
            .persist(dest)
            .map_err(|e| Error::io("writing", dest, e.error))?;
        Ok(true)
    }

    /// Every archived WAL file of `set`, by timeline and name (one listing). Names are read
    /// with `segment_size`.
    pub fn wal(&self, set: &str, segment_size: u64) -> Result<Vec<WalObject>, Error> {
        let prefix = layout::wal_prefix(layout::check_set_name(set)?);
        let mut objects = Vec::new();
        for info in self.repo.list(&prefix)? {
            let name = info.key.rsplit('/').next().unwrap_or_default().to_string();
            match WalFile::parse(&name, segment_size) {
                Ok(file) => objects.push(WalObject {
                    name,
                    file,
                    key: info.key,
                    size: info.size,
                    modified: info.modified,
                }),
                // Staging files of an interrupted push and the like: not part of the archive.
                Err(_) => tracing::debug!(key = %info.key, "not a WAL file; ignored"),
            }
        }
        Ok(objects)
    }

    /// What `set`'s base backups and archived WAL can recover to, per timeline; nothing for
    /// a set the repository holds nothing of (only the caller knows the configured sets).
    pub fn wal_window(&self, set: &str) -> Result<Vec<TimelineWindow>, Error> {
        // The base backups that read; `health` names a damaged record.
        let snapshots = self.records(Some(set))?.snapshots;
        let backups: Vec<(&Snapshot, &PhysicalStats)> = snapshots
            .iter()
            .filter_map(|s| Some((s, s.physical()?)))
            .collect();
        let segment_size = backups
            .last()
            .map_or(DEFAULT_SEGMENT_SIZE, |(_, p)| p.wal_segment_size);
        let wal = self.wal(set, segment_size)?;
        if let (true, true, Some(newest)) = (backups.is_empty(), wal.is_empty(), snapshots.last()) {
            // A set of dumps: say so, rather than show it as an empty archive.
            physical(newest)?;
        }
        let mut ends = SegmentEnds::default();
        let mut timelines: BTreeMap<u32, TimelineWindow> = BTreeMap::new();
        for object in &wal {
            let timeline = timelines
                .entry(object.file.timeline())
                .or_insert_with(|| empty_timeline(object.file.timeline()));
            timeline.last_archived = timeline.last_archived.max(Some(object.modified));
            if let WalFile::Segment(_) = object.file {
                timeline.segments += 1;
                timeline
                    .first_segment
                    .get_or_insert_with(|| object.name.clone());
                timeline.last_segment = Some(object.name.clone());
            }
            timeline.bytes += object.size;
        }
        for (snapshot, physical) in backups {
            let window = self.backup_window(snapshot, physical, &wal, &mut ends)?;
            let timeline = timelines
                .entry(physical.timeline)
                .or_insert_with(|| empty_timeline(physical.timeline));
            if timeline.earliest.is_none() && window.latest.is_some() {
                timeline.earliest = Some(window.earliest.clone());
            }
            if let Some(latest) = &window.latest {
                if timeline.latest.as_ref().is_none_or(|l| l.lsn < latest.lsn) {
                    timeline.latest = Some(latest.clone());
                }
            }
            timeline.backups.push(window);
        }
        Ok(timelines.into_values().collect())
    }

    /// The window of one base backup: from its end to the last commit of the continuous
    /// WAL archived after its start (read with `pg_waldump`).
    pub(crate) fn backup_window(
        &self,
        snapshot: &Snapshot,
        physical: &PhysicalStats,
        wal: &[WalObject],
        ends: &mut SegmentEnds,
    ) -> Result<BackupWindow, Error> {
        let size = physical.wal_segment_size;
        let segments = timeline_segments(wal, physical.timeline);
        let start = physical.start();
        let gap = first_gap(&segments, start);
        let run_end = match gap {
            Some(missing) if missing.number == start.number => None,
            Some(missing) => Some(Segment {
                number: missing.number - 1,
                ..missing
            }),
            None => segments.last().copied(),
        };
        let mut window = BackupWindow {
            snapshot: snapshot.id.to_string(),
            timeline: physical.timeline,
            earliest: Point {
                time: Some(physical.stop_time),
                lsn: physical.stop_lsn,
            },
            latest: None,
            last_segment: run_end.map(|s| s.name(size)),
            gap: gap.map(|s| s.name(size)),
        };
        let Some(end) = run_end.filter(|end| *end >= physical.stop()) else {
            return Ok(window);
        };
        // The newest segment's last record, and the newest commit at or before it (most
        // segments hold one; a quiet server's may not): looked for back to the backup's end,
        // at most WALK_BACK segments.
        let mut latest: Option<Point> = None;
        let mut at = end;
        for _ in 0..WALK_BACK {
            let found = match ends.read(self, snapshot, physical, at) {
                Ok(found) => found,
                Err(Error::Database(strongbox_db_dump::Error::ToolMissing { .. })) => {
                    tracing::warn!("pg_waldump not found: the window ends at the last archived segment, with no commit time");
                    window.latest = Some(Point {
                        time: None,
                        lsn: end.end(size),
                    });
                    return Ok(window);
                }
                // The newest segment unreadable (damaged after it was archived): recovery
                // stops before it, so the window ends there, with it named as the gap,
                // rather than every restore failing on it.
                Err(e) if latest.is_none() && at > physical.stop() => {
                    tracing::warn!(segment = %at.name(size), error = %crate::error_chain(&e), "an archived WAL segment cannot be read; the window ends before it");
                    window.gap = Some(at.name(size));
                    at = Segment {
                        number: at.number - 1,
                        ..at
                    };
                    window.last_segment = Some(at.name(size));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let point = latest.get_or_insert(Point {
                time: None,
                lsn: found.last_record.unwrap_or(physical.stop_lsn),
            });
            if let Some((time, _)) = found.last_commit {
                point.time = Some(time);
                break;
            }
            if at <= physical.stop() {
                break;
            }
            at = Segment {
                number: at.number - 1,
                ..at
            };
        }
        window.latest = latest;
        Ok(window)
    }

    /// Check that the WAL `physical` needs is archived without a gap from its start segment
    /// to the newest one; with `read`, also that every segment of the run reads (through
    /// the pipeline: decrypted, decompressed, zstd's checksum).
    pub(crate) fn wal_chain(
        &self,
        physical: &PhysicalStats,
        wal: &[WalObject],
        read: bool,
    ) -> Result<String, String> {
        let size = physical.wal_segment_size;
        let segments = timeline_segments(wal, physical.timeline);
        let start = physical.start();
        if let Some(missing) = first_gap(&segments, start) {
            return Err(format!(
                "WAL segment {} is missing from the archive (needed from {} on)",
                missing.name(size),
                physical.start_segment
            ));
        }
        let run: Vec<&WalObject> = wal
            .iter()
            .filter(|o| matches!(o.file, WalFile::Segment(s) if s.timeline == physical.timeline && s >= start))
            .collect();
        let last = run.last().map_or("", |o| o.name.as_str());
        if run.iter().all(|o| o.file.segment() < Some(physical.stop())) {
            return Err(format!(
                "WAL segment {} (the backup's end) is not archived",
                physical.stop_segment
            ));
        }
        if read {
            for object in &run {
                let mut reader = self
                    .repo
                    .open_compressed(&object.key)
                    .map_err(|e| crate::error_chain(&e))?;
                std::io::copy(&mut reader, &mut std::io::sink())
                    .map_err(|e| format!("reading {}: {e}", object.key))?;
            }
        }
        Ok(format!(
            "{} segments from {} to {last}{}",
            run.len(),
            physical.start_segment,
            if read { ", each read" } else { "" }
        ))
    }

    /// Check that `snapshot` (a base backup) can recover to `target`, and say how far its
    /// WAL reaches.
    pub fn recovery_window(
        &self,
        snapshot: &Snapshot,
        target: RecoveryTarget,
    ) -> Result<BackupWindow, Error> {
        let physical = physical(snapshot)?;
        let wal = self.wal(&snapshot.set, physical.wal_segment_size)?;
        let window = self.backup_window(snapshot, physical, &wal, &mut SegmentEnds::default())?;
        let outside = |reason: String| Error::OutsideWindow {
            set: snapshot.set.clone(),
            target: target.to_string(),
            reason,
        };
        let Some(latest) = &window.latest else {
            return Err(outside(window.to_string()));
        };
        let inside = match target {
            // Recovery stops at a gap and promotes there: WAL archived past it would be lost
            // while the restore claimed the latest. The window up to the gap is for a time
            // or LSN the operator chooses.
            RecoveryTarget::Latest => match &window.gap {
                Some(gap)
                    if newest_segment(&wal, physical.timeline)
                        .is_some_and(|n| n > gap.as_str()) =>
                {
                    return Err(outside(format!(
                        "WAL segment {gap} is missing or unreadable, and the WAL archived after it cannot be replayed; give --to-time or --to-lsn within the window to recover only that far: {window}"
                    )));
                }
                _ => true,
            },
            RecoveryTarget::Time(time) => {
                // Recovery stops before the first commit after `time`: there must be one.
                window.earliest.time.is_some_and(|t| t <= time)
                    && latest.time.is_some_and(|t| time < t)
            }
            RecoveryTarget::Lsn(lsn) => window.earliest.lsn <= lsn && lsn <= latest.lsn,
        };
        if !inside {
            return Err(outside(format!("outside the provable window: {window}")));
        }
        Ok(window)
    }

    /// The base backup `spec` names; for `<set>:latest` with a time or LSN target, the
    /// newest one that ended before it.
    pub fn resolve_base_backup(
        &self,
        spec: &str,
        target: RecoveryTarget,
    ) -> Result<Snapshot, Error> {
        let Some(set) = spec.strip_suffix(":latest") else {
            return self.resolve(spec);
        };
        let records = self.records(Some(set))?;
        let snapshots = records.snapshots;
        let ended_before = |p: &PhysicalStats| match target {
            RecoveryTarget::Latest => true,
            RecoveryTarget::Time(time) => p.stop_time <= time,
            RecoveryTarget::Lsn(lsn) => p.stop_lsn <= lsn,
        };
        let found = snapshots
            .iter()
            .rev()
            .find(|s| s.physical().is_some_and(ended_before));
        match (
            found,
            snapshots.iter().find_map(|s| Some((s, s.physical()?))),
        ) {
            (Some(snapshot), _) => {
                crate::select::no_damage_after(records.damaged, Some(&snapshot.id))?;
                Ok(snapshot.clone())
            }
            (None, Some((oldest, physical))) => {
                let wal = self.wal(set, physical.wal_segment_size)?;
                let window =
                    self.backup_window(oldest, physical, &wal, &mut SegmentEnds::default())?;
                Err(Error::OutsideWindow {
                    set: set.to_string(),
                    target: target.to_string(),
                    reason: format!(
                        "it is before the end of the oldest base backup, {} (ended {}, LSN {}); {window}",
                        oldest.id,
                        physical.stop_time.to_rfc3339(),
                        physical.stop_lsn
                    ),
                })
            }
            (None, None) => self.resolve(spec),
        }
    }
}

/// Whether `len` is a size PostgreSQL's `wal_segment_size` can take.
fn is_segment_size(len: u64) -> bool {
    len.is_power_of_two() && (MIN_SEGMENT_SIZE..=1 << 30).contains(&len)
}

/// Where the WAL file `name` of `set` is archived, and what kind of file it is; a name
/// PostgreSQL does not give `archive_command` is refused, so a name never leaves the
/// archive.
fn archive_key(set: &str, name: &str) -> Result<(String, WalFile), Error> {
    let file = WalFile::parse(name, MIN_SEGMENT_SIZE)?;
    let key = layout::wal_key(layout::check_set_name(set)?, file.timeline(), name);
    Ok((key, file))
}

/// The record of a base backup, or why `snapshot` is not one.
pub(crate) fn physical(snapshot: &Snapshot) -> Result<&PhysicalStats, Error> {
    snapshot.physical().ok_or_else(|| Error::WrongSource {
        id: snapshot.id.to_string(),
        source_kind: snapshot.source.as_str(),
        reason: "it is not a base backup (backup postgres --physical)".to_string(),
    })
}

/// The name of the newest segment archived on `timeline` or a later one (a failover after
/// a gap archives past it on the next); names sort by timeline, then position.
fn newest_segment(wal: &[WalObject], timeline: u32) -> Option<&str> {
    wal.iter()
        .filter(|o| matches!(o.file, WalFile::Segment(s) if s.timeline >= timeline))
        .map(|o| o.name.as_str())
        .max()
}

fn empty_timeline(timeline: u32) -> TimelineWindow {
    TimelineWindow {
        timeline,
        segments: 0,
        bytes: 0,
        first_segment: None,
        last_segment: None,
        last_archived: None,
        earliest: None,
        latest: None,
        backups: Vec::new(),
    }
}

/// The archived segments of `timeline`, sorted.
pub(crate) fn timeline_segments(wal: &[WalObject], timeline: u32) -> Vec<Segment> {
    let mut segments: Vec<Segment> = wal
        .iter()
        .filter_map(|o| match o.file {
            WalFile::Segment(s) if s.timeline == timeline => Some(s),
            _ => None,
        })
        .collect();
    segments.sort();
    segments
}

/// The WAL files no kept base backup needs: every segment (and backup history file) before
/// the oldest kept backup's start segment, on any timeline. History files stay.
pub(crate) fn unneeded_wal<'a>(
    wal: &'a [WalObject],
    kept: &[&PhysicalStats],
) -> Vec<&'a WalObject> {
    let Some(oldest) = kept.iter().map(|p| p.start().number).min() else {
        return Vec::new();
    };
    wal.iter()
        .filter(|o| o.file.segment().is_some_and(|s| s.number < oldest))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u64 = DEFAULT_SEGMENT_SIZE;

    fn archived(names: &[&str]) -> Vec<WalObject> {
        names
            .iter()
            .map(|name| WalObject {
                name: name.to_string(),
                file: WalFile::parse(name, SIZE).unwrap(),
                key: format!("sets/db/wal/{}/{name}", &name[..8]),
                size: 1,
                modified: DateTime::UNIX_EPOCH,
            })
            .collect()
    }

    fn backup(timeline: u32, start: u64) -> PhysicalStats {
        PhysicalStats {
            timeline,
            wal_segment_size: SIZE,
            start_lsn: Lsn(start * SIZE + 0x28),
            stop_lsn: Lsn(start * SIZE + 0x100),
            ..PhysicalStats::default()
        }
    }

    #[test]
    fn a_window_says_where_it_ends_and_why() {
        let at = |time: Option<&str>, lsn: u64| Point {
            time: time.map(|t| t.parse().unwrap()),
            lsn: Lsn(lsn),
        };
        let window = |latest: Option<Point>, gap: Option<&str>| BackupWindow {
            snapshot: "S".to_string(),
            timeline: 1,
            earliest: at(Some("2026-12-01T02:00:00Z"), 0x100),
            latest,
            last_segment: None,
            gap: gap.map(str::to_string),
        };
        let cases = [
            (
                window(Some(at(Some("2026-12-01T03:00:00Z"), 0x2000)), None),
                "to the last archived commit at 2026-12-01T03:00:00+00:00 (last record LSN 0/2000)",
            ),
            (
                window(Some(at(None, 0x2000)), None),
                "to LSN 0/2000, the last archived record (no commit found to give a time)",
            ),
            (
                window(Some(at(None, 0x2000)), Some("000000010000000000000005")),
                "no commit found to give a time); WAL segment 000000010000000000000005 is missing or unreadable",
            ),
            (
                window(None, Some("000000010000000000000002")),
                "to nowhere: WAL segment 000000010000000000000002 is missing",
            ),
            (window(None, None), "to nowhere: no WAL is archived"),
        ];
        for (window, ends) in cases {
            let text = window.to_string();
            assert!(text.ends_with(ends), "{text}");
            assert!(!text.contains("at no commit"), "{text}");
        }
    }

    #[test]
    fn prune_deletes_only_wal_before_the_oldest_kept_backup() {
        let wal = archived(&[
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000002.00000028.backup",
            "000000010000000000000003",
            "000000010000000000000004",
            "000000010000000000000005.partial",
            "00000002.history",
            "000000020000000000000005",
            "000000020000000000000006",
        ]);
        // (kept backups as (timeline, start segment), the files deleted)
        type Case = (&'static [(u32, u64)], &'static [&'static str]);
        let cases: [Case; 4] = [
            (&[], &[]),
            (
                &[(1, 3)],
                &[
                    "000000010000000000000001",
                    "000000010000000000000002",
                    "000000010000000000000002.00000028.backup",
                ],
            ),
            (&[(2, 6), (1, 2)], &["000000010000000000000001"]),
            (
                &[(2, 6)],
                &[
                    "000000010000000000000001",
                    "000000010000000000000002",
                    "000000010000000000000002.00000028.backup",
                    "000000010000000000000003",
                    "000000010000000000000004",
                    "000000010000000000000005.partial",
                    "000000020000000000000005",
                ],
            ),
        ];
        for (kept, deleted) in cases {
            let kept: Vec<PhysicalStats> = kept.iter().map(|&(t, s)| backup(t, s)).collect();
            let kept: Vec<&PhysicalStats> = kept.iter().collect();
            let doomed: Vec<&str> = unneeded_wal(&wal, &kept)
                .iter()
                .map(|o| o.name.as_str())
                .collect();
            assert_eq!(doomed, deleted, "{kept:?}");
        }
    }
}
