//! PostgreSQL base backups (`pg_basebackup` streamed as one tar) and what point-in-time
//! recovery needs to know of a server and of its WAL (`pg_waldump`).

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use chrono::{DateTime, NaiveDateTime, Utc};
use strongbox_manifest::Lsn;

use crate::conninfo::{PgConn, ProcessEnv};
use crate::postgres::Session;
use crate::tool::{Major, StreamOps, Tool};
use crate::Error;

/// A PostgreSQL cluster to take base backups of.
#[derive(Debug, Clone)]
pub struct PhysicalSource {
    conn: PgConn,
}

/// What a base backup needs to know of its server before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// `PostgreSQL 15.8`.
    pub server_version: String,
    /// `server_version_num`: `150008`.
    pub server_version_num: u32,
    /// `pg_control`'s system identifier.
    pub system_identifier: String,
    /// The timeline of the latest checkpoint.
    pub timeline: u32,
    /// `wal_segment_size` in bytes.
    pub wal_segment_size: u64,
    /// `archive_mode` (`off`, `on`, `always`).
    pub archive_mode: String,
    /// `archive_command`.
    pub archive_command: String,
    /// Tablespaces besides `pg_default` and `pg_global`.
    pub tablespaces: Vec<String>,
}

/// `pg_stat_archiver`: the last segment the server archived, and the last that failed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Archiver {
    /// The last WAL file archived.
    pub last_archived: Option<String>,
    /// The last WAL file whose archiving failed.
    pub last_failed: Option<String>,
}

/// Where a finished base backup's WAL starts and ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseBackup {
    /// The redo point replay starts from.
    pub start_lsn: Lsn,
    /// The end of the backup.
    pub stop_lsn: Lsn,
    /// Its timeline.
    pub timeline: u32,
    /// The server's clock once it had ended.
    pub stop_time: DateTime<Utc>,
    /// Bytes of the tar stream.
    pub bytes: u64,
}

impl PhysicalSource {
    /// A source for `conninfo` (read as [`PostgresSource::new`](crate::PostgresSource::new)
    /// reads it). The role needs the REPLICATION attribute (and `pg_hba.conf` a
    /// `replication` line) for `pg_basebackup`.
    pub fn new(conninfo: &str) -> Result<Self, Error> {
        Ok(PhysicalSource {
            conn: PgConn::parse(conninfo, &ProcessEnv)?,
        })
    }

    /// The connection string without its password.
    pub fn origin(&self) -> String {
        self.conn.redacted.clone()
    }

    /// One row of `sql`, on a connection of its own (each step of a base backup is a
    /// single query, minutes apart).
    fn query_one(&self, sql: &str, operation: &'static str) -> Result<tokio_postgres::Row, Error> {
        let session = Session::open(&self.conn)?;
        session
            .rt
            .block_on(session.client.query_one(sql, &[]))
            .map_err(|source| Error::Query {
                database: self.conn.describe(),
                operation,
                source: source.into(),
            })
    }

    /// The server's version, identity, WAL settings and tablespaces.
    pub fn server(&self) -> Result<ServerState, Error> {
        let row = self.query_one(
                "SELECT pg_catalog.current_setting('server_version'), \
                 (SELECT system_identifier::text FROM pg_catalog.pg_control_system()), \
                 (SELECT timeline_id::int8 FROM pg_catalog.pg_control_checkpoint()), \
                 (SELECT setting::int8 FROM pg_catalog.pg_settings WHERE name = 'wal_segment_size'), \
                 pg_catalog.current_setting('archive_mode'), \
                 pg_catalog.current_setting('archive_command'), \
                 ARRAY(SELECT spcname::text FROM pg_catalog.pg_tablespace \
                       WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1), \
                 pg_catalog.current_setting('server_version_num')::int4",
            "reading the server's WAL settings",
        )?;
        Ok(ServerState {
            server_version: format!("PostgreSQL {}", row.get::<_, String>(0)),
            system_identifier: row.get(1),
            timeline: row.get::<_, i64>(2) as u32,
            wal_segment_size: row.get::<_, i64>(3) as u64,
            archive_mode: row.get(4),
            archive_command: row.get(5),
            tablespaces: row.get(6),
            server_version_num: row.get::<_, i32>(7).max(0) as u32,
        })
    }

    /// Close the current WAL segment so that it is archived; the name of the segment that
    /// holds the end of the WAL written so far.
    pub fn switch_wal(&self) -> Result<String, Error> {
        let row = self.query_one(
            "SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_switch_wal())",
            "switching to a new WAL segment (pg_switch_wal)",
        )?;
        Ok(row.get(0))
    }

    /// The archiver's last success and failure.
    pub fn archiver(&self) -> Result<Archiver, Error> {
        let row = self.query_one(
            "SELECT last_archived_wal, last_failed_wal FROM pg_catalog.pg_stat_archiver",
            "reading pg_stat_archiver",
        )?;
        Ok(Archiver {
            last_archived: row.get(0),
            last_failed: row.get(1),
        })
    }

    /// Stream a base backup of the cluster (`pg_basebackup -Ft -D - -X none`: the data
    /// directory as one tar, without WAL, which comes from the archive) into `out`.
    pub fn base_backup(&self, out: &mut dyn Write) -> Result<BaseBackup, Error> {
        let database = self.conn.describe();
        let tool = Tool::find("pg_basebackup", &database)?;
        let mut command = tool.command(Some(&self.conn));
        command.args([
            "--pgdata=-",
            "--format=tar",
            "--wal-method=none",
            "--checkpoint=fast",
            "--no-password",
        ]);
        let mut sniffer = ManifestSniffer::new(out);
        let streamed = tool.stream_out(
            command,
            &mut sniffer,
            0,
            &database,
            Some(&self.conn),
            &StreamOps {
                start: "starting pg_basebackup",
                read: "reading pg_basebackup's output",
                write: "writing the base backup",
                wait: "waiting for pg_basebackup",
            },
        )?;
        let (start_lsn, timeline, stop_lsn) =
            parse_wal_range(&sniffer.manifest_tail).ok_or_else(|| Error::BadDump {
                database: database.clone(),
                reason: "pg_basebackup's tar holds no backup_manifest with a WAL range".to_string(),
            })?;
        let micros: i64 = self
            .query_one(
                "SELECT (extract(epoch FROM pg_catalog.clock_timestamp()) * 1000000)::int8",
                "reading the server's clock",
            )?
            .get(0);
        let stop_time = DateTime::from_timestamp_micros(micros).unwrap_or_default();
        Ok(BaseBackup {
            start_lsn,
            stop_lsn,
            timeline,
            stop_time,
            bytes: streamed.bytes,
        })
    }
}

/// Deep check of a stored base backup: a tar that reads to its end and holds
/// `backup_label` and `global/pg_control`.
pub(crate) fn verify(stream: &mut dyn std::io::Read) -> Result<String, Error> {
    const DATABASE: &str = "base backup";
    let broken = |entry: Option<&str>| {
        let entry = entry.map(str::to_string);
        move |source| Error::Tar {
            database: DATABASE.to_string(),
            entry,
            source,
        }
    };
    let mut archive = tar::Archive::new(stream);
    let (mut entries, mut bytes) = (0u64, 0u64);
    let (mut label, mut control) = (false, false);
    let mut last: Option<String> = None;
    for entry in archive.entries().map_err(broken(None))? {
        let mut entry = entry.map_err(broken(last.as_deref()))?;
        let path = entry.path().map_or_else(
            |_| "(an entry whose name does not read)".to_string(),
            |p| p.to_string_lossy().into_owned(),
        );
        label |= path == "backup_label";
        control |= path == "global/pg_control";
        bytes += std::io::copy(&mut entry, &mut std::io::sink()).map_err(broken(Some(&path)))?;
        entries += 1;
        last = Some(path);
    }
    // The rest (the tar's padding) too, so that the stream's digest is checked.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink())
        .map_err(broken(last.as_deref()))?;
    if !(label && control) {
        return Err(Error::BadDump {
            database: DATABASE.to_string(),
            reason: "the tar lacks backup_label or global/pg_control".to_string(),
        });
    }
    Ok(format!(
        "{entries} entries, {bytes} bytes of a data directory"
    ))
}

/// How much of the end of `backup_manifest` is kept: its WAL range is the last entry.
const MANIFEST_TAIL: usize = 64 * 1024;

/// Passes a tar stream through while following its headers, and keeps the end of the
/// `backup_manifest` entry, whose `WAL-Ranges` say where the backup's WAL starts and ends
/// (`pg_basebackup -X none` reports neither).
struct ManifestSniffer<W> {
    inner: W,
    header: Vec<u8>,
    remaining: u64,
    padding: u64,
    capturing: bool,
    manifest_tail: Vec<u8>,
}

impl<W: Write> ManifestSniffer<W> {
    fn new(inner: W) -> Self {
        ManifestSniffer {
            inner,
            header: Vec::with_capacity(512),
            remaining: 0,
            padding: 0,
            capturing: false,
            manifest_tail: Vec::new(),
        }
    }

    fn follow(&mut self, mut buf: &[u8]) {
        while !buf.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining.min(buf.len() as u64)) as usize;
                if self.capturing {
                    self.manifest_tail.extend_from_slice(&buf[..n]);
                    if self.manifest_tail.len() > 2 * MANIFEST_TAIL {
                        self.manifest_tail
                            .drain(..self.manifest_tail.len() - MANIFEST_TAIL);
                    }
                }
                self.remaining -= n as u64;
                buf = &buf[n..];
            } else if self.padding > 0 {
                let n = (self.padding.min(buf.len() as u64)) as usize;
                self.padding -= n as u64;
                buf = &buf[n..];
            } else {
                let n = (512 - self.header.len()).min(buf.len());
                self.header.extend_from_slice(&buf[..n]);
                buf = &buf[n..];
                if self.header.len() == 512 {
                    let header = std::mem::take(&mut self.header);
                    let name_end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
                    let size = entry_size(&header[124..136]);
                    self.capturing = &header[..name_end] == b"backup_manifest";
                    self.remaining = size;
                    self.padding = (512 - size % 512) % 512;
                }
            }
        }
    }
}

impl<W: Write> Write for ManifestSniffer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.follow(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A tar header's size field: octal text, or base-256 (high bit set) past 8 GiB.
fn entry_size(field: &[u8]) -> u64 {
    if field[0] & 0x80 != 0 {
        return field[1..]
            .iter()
            .fold(u64::from(field[0] & 0x7F), |n, &b| (n << 8) | u64::from(b));
    }
    std::str::from_utf8(field)
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u64::from_str_radix(s, 8).ok())
        .unwrap_or(0)
}

/// The start, timeline and end of the last `WAL-Ranges` entry of a backup manifest:
/// `{ "Timeline": 1, "Start-LSN": "0/4000028", "End-LSN": "0/4000100" }`.
fn parse_wal_range(manifest_tail: &[u8]) -> Option<(Lsn, u32, Lsn)> {
    let text = String::from_utf8_lossy(manifest_tail);
    let ranges = &text[text.rfind("\"WAL-Ranges\"")?..];
    let value = |field: &str| -> Option<String> {
        let at = ranges.rfind(&format!("\"{field}\":"))? + field.len() + 3;
        let rest = ranges[at..].trim_start();
        let end = rest.find([',', '}'])?;
        Some(rest[..end].trim().trim_matches('"').to_string())
    };
    Some((
        value("Start-LSN")?.parse().ok()?,
        value("Timeline")?.parse().ok()?,
        value("End-LSN")?.parse().ok()?,
    ))
}

/// The last records of a WAL segment file, as `pg_waldump` decodes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentEnd {
    /// The last record's LSN.
    pub last_record: Option<Lsn>,
    /// The last commit or abort, with its time: a recovery to a time before it stops there.
    pub last_commit: Option<(DateTime<Utc>, Lsn)>,
}

/// Decode the records of the segment file at `path` with `pg_waldump`, of the major version
/// of `server_version` (`PostgreSQL 15.8 …`) where there is a choice: WAL's format changes
/// between majors.
pub fn segment_end(path: &Path, server_version: &str) -> Result<SegmentEnd, Error> {
    let what = path.display().to_string();
    let major = server_version
        .strip_prefix("PostgreSQL ")
        .and_then(|v| Major::parse(v.split_whitespace().next()?));
    let tool = Tool::find_server("pg_waldump", &what, major)?;
    let output = tool
        .command(None)
        .arg(path)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io("running pg_waldump on", path, e))?;
    let end = parse_waldump(&String::from_utf8_lossy(&output.stdout));
    // pg_waldump stops with an error at the end of the valid WAL, which a last segment
    // always has: only no record at all is a failure.
    if end.last_record.is_none() {
        return Err(Error::ToolFailed {
            tool: "pg_waldump",
            database: what,
            status: output.status.to_string(),
            stderr: crate::error::one_line(&String::from_utf8_lossy(&output.stderr)),
        });
    }
    Ok(end)
}

/// The last record and the last commit or abort of `pg_waldump`'s output (run with TZ=UTC):
/// `rmgr: Transaction len (rec/tot): 34/34, tx: 735, lsn: 0/0301A2C8, prev 0/0301A290, desc: COMMIT 2026-12-01 02:00:00.123456 UTC`.
fn parse_waldump(output: &str) -> SegmentEnd {
    let mut end = SegmentEnd::default();
    for line in output.lines() {
        let Some(lsn) = line
            .split_once("lsn: ")
            .and_then(|(_, rest)| rest.split(',').next())
            .and_then(|lsn| lsn.trim().parse::<Lsn>().ok())
        else {
            continue;
        };
        end.last_record = Some(lsn);
        let Some((_, desc)) = line.split_once("desc: ") else {
            continue;
        };
        let time = desc
            .strip_prefix("COMMIT ")
            .or_else(|| desc.strip_prefix("ABORT "))
            .and_then(|rest| rest.get(..26))
            .and_then(|text| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok());
        if let Some(time) = time {
            end.last_commit = Some((time.and_utc(), lsn));
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wal_range_comes_from_the_manifest_inside_the_tar() {
        let manifest = b"{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [],\n\
            \"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/4000028\", \"End-LSN\": \"0/4000100\" }\n],\n\
            \"Manifest-Checksum\": \"d4\"}";
        let mut tar = tar::Builder::new(Vec::new());
        for (name, data) in [
            ("backup_label", &b"START WAL LOCATION"[..]),
            ("backup_manifest", manifest),
        ] {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            tar.append_data(&mut header, name, data).unwrap();
        }
        let stream = tar.into_inner().unwrap();
        // Written in odd pieces, as a pipe delivers it.
        let mut sniffer = ManifestSniffer::new(Vec::new());
        for chunk in stream.chunks(333) {
            sniffer.write_all(chunk).unwrap();
        }
        assert_eq!(sniffer.inner, stream);
        assert_eq!(
            parse_wal_range(&sniffer.manifest_tail),
            Some((Lsn(0x400_0028), 1, Lsn(0x400_0100)))
        );
        assert_eq!(parse_wal_range(b"{\"Files\": []}"), None);
        let mut huge = [0u8; 12];
        huge[0] = 0x80;
        huge[4..].copy_from_slice(&(20u64 << 28).to_be_bytes());
        assert_eq!(entry_size(&huge), 20 << 28);
        assert_eq!(entry_size(b"00000001750\0"), 1000);
    }

    #[test]
    fn a_base_backup_that_breaks_off_is_refused_naming_where() {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, data) in [
            ("backup_label", &b"START WAL LOCATION"[..]),
            ("global/pg_control", &[7u8; 8192][..]),
        ] {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            tar.append_data(&mut header, name, data).unwrap();
        }
        let whole = tar.into_inner().unwrap();
        let label_only = &whole[..1024];
        // (stream, the error's message and its cause, or the summary)
        let cases: [(&[u8], Result<&str, &str>); 4] = [
            (&whole, Ok("2 entries, 8210 bytes of a data directory")),
            (
                &whole[..1024 + 512 + 100],
                Err("base backup: unreadable tar (last entry read: global/pg_control): "),
            ),
            (
                label_only,
                Err("base backup: the tar lacks backup_label or global/pg_control"),
            ),
            (&[1u8; 700], Err("base backup: unreadable tar: ")),
        ];
        for (stream, expected) in cases {
            let got = verify(&mut &stream[..]).map_err(|e| crate::error::chain(&e));
            match (got, expected) {
                (Ok(summary), Ok(want)) => assert_eq!(summary, want),
                (Err(chain), Err(want)) => assert!(chain.starts_with(want), "{chain}"),
                (got, want) => panic!("{got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn the_last_commit_and_record_come_from_pg_waldumps_output() {
        let output = "\
rmgr: Heap        len (rec/tot):     54/   150, tx:        735, lsn: 0/0301A200, prev 0/0301A1C8, desc: INSERT off 2 flags 0x00
rmgr: Transaction len (rec/tot):     34/    34, tx:        735, lsn: 0/0301A2C8, prev 0/0301A200, desc: COMMIT 2026-12-01 02:00:00.123456 UTC
rmgr: Transaction len (rec/tot):     34/    34, tx:        736, lsn: 0/0301A2F0, prev 0/0301A2C8, desc: ABORT 2026-12-01 02:00:01.000001 UTC
rmgr: Standby     len (rec/tot):     50/    50, tx:          0, lsn: 0/0301A318, prev 0/0301A2F0, desc: RUNNING_XACTS nextXid 737
pg_waldump: error: error in WAL record at 0/301A318: invalid record length";
        let end = parse_waldump(output);
        assert_eq!(end.last_record, Some(Lsn(0x301_A318)));
        let (time, lsn) = end.last_commit.unwrap();
        assert_eq!(time.to_rfc3339(), "2026-12-01T02:00:01.000001+00:00");
        assert_eq!(lsn, Lsn(0x301_A2F0));
        assert_eq!(parse_waldump(""), SegmentEnd::default());
    }
}
