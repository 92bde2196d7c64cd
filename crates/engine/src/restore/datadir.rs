use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strongbox_manifest::{ObjectRole, SourceKind, Stats};

use super::{lies_within, RestoreDetail, RestoreRun, Restored, Restorer};
use crate::progress::Tracked;
use crate::{BackupWindow, Error, RecoveryTarget};

/// An empty directory to restore a base backup into, as a PostgreSQL data directory that
/// recovers from the set's WAL archive when the server starts: the base backup's files,
/// `recovery.signal`, and in `postgresql.auto.conf` a `restore_command` running
/// `wal fetch`, the recovery target and `recovery_target_action = 'promote'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDirTarget {
    /// The data directory (missing or empty).
    pub dir: PathBuf,
    /// Where recovery stops.
    pub target: RecoveryTarget,
    /// The program and arguments that run `wal fetch SET %f %p` once the set, `%f` and
    /// `%p` are appended (`/usr/bin/strongbox --repo s3://bucket/prod`).
    pub fetch_command: Vec<String>,
    /// What the set's WAL can recover to (from [`Reader::recovery_window`](crate::Reader::recovery_window)).
    pub window: BackupWindow,
}

/// What a data directory restore wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// The data directory.
    pub dir: PathBuf,
    /// Where recovery stops.
    pub target: RecoveryTarget,
    /// The base backup's window.
    pub window: BackupWindow,
    /// The `restore_command` written.
    pub restore_command: String,
    /// Bytes of the data directory.
    pub bytes: u64,
}

/// A file in the data directory while a restore writes it, naming the restoring process
/// (`<host> <pid>`), removed when the restore is done: a directory still holding it after
/// its process is gone is what a killed restore left, and is said to be.
const RESTORING_MARK: &str = "strongbox-restore-incomplete";

/// Why `dir`, not empty, is refused: a killed restore's leftover, one in progress, or
/// anything else.
fn not_empty_reason(dir: &Path) -> String {
    let mark = fs::read_to_string(dir.join(RESTORING_MARK)).ok();
    let holder = mark.as_deref().and_then(|m| {
        let (host, pid) = m.trim().rsplit_once(' ')?;
        Some((host.to_string(), pid.parse::<u32>().ok()?))
    });
    match holder {
        Some((host, pid)) if strongbox_storage::holder_alive(&host, pid) == Some(true) => {
            format!("a restore into it is running (pid {pid})")
        }
        Some(_) => format!(
            "it holds what a restore stopped before it finished left ({RESTORING_MARK} is \
             there); remove its content and restore again"
        ),
        None => "it is not empty; a base backup restores only into an empty or new directory \
                 (stop the server and move its data directory aside first)"
            .to_string(),
    }
}

/// Removes what a failed restore extracted, leaving the directory as it was found.
struct Extracted<'a> {
    dir: &'a Path,
    created: bool,
    done: bool,
}

impl Drop for Extracted<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let cleared = if self.created {
            fs::remove_dir_all(self.dir)
        } else {
            fs::read_dir(self.dir).and_then(|entries| {
                entries.flatten().try_for_each(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => fs::remove_dir_all(e.path()),
                    _ => fs::remove_file(e.path()),
                })
            })
        };
        if let Err(e) = cleared {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove a failed restore's files");
        }
    }
}

/// Extract a base backup's tar into `dir`, refusing anything a data directory does not hold:
/// names outside it (`..`, absolute), and entries other than files and directories (links,
/// devices, FIFOs), which a tar that was tampered with could use to write elsewhere.
/// `at` is left naming where in the archive it was: an entry, or after one.
fn extract<R: std::io::Read>(
    archive: &mut tar::Archive<R>,
    dir: &Path,
    key: &str,
    at: &mut String,
) -> Result<(), Error> {
    let failed = |e| Error::io("extracting the base backup into", dir, e);
    for entry in archive.entries().map_err(failed)? {
        let mut entry = entry.map_err(failed)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        at.clone_from(&name);
        let refuse = |reason: &str| Error::EntryMismatch {
            key: key.to_string(),
            path: name.clone(),
            reason: format!("{reason}; nothing was kept"),
        };
        // pg_basebackup names some entries `./pg_wal/…`.
        let relative = name.trim_start_matches("./").trim_end_matches('/');
        if !matches!(relative, "" | ".") && strongbox_archive::safe_relative_path(relative).is_err()
        {
            return Err(refuse("names a path outside the data directory"));
        }
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Directory => {}
            other => return Err(refuse(&format!("is a {other:?}, not a file or directory"))),
        }
        let unpacked = entry
            .unpack_in(dir)
            .map_err(|e| match from_the_archive(&e) {
                true => refuse(&format!("is damaged: {e}")),
                false => failed(e),
            })?;
        if !unpacked {
            return Err(refuse("names a path outside the data directory"));
        }
        // A read failing from here on fails at the next header.
        *at = format!("after {name}");
    }
    Ok(())
}

/// Whether a failed unpack is the archive's fault (its data ends early), not the target's
/// (a full disk, a permission): tar says "failed to write entire file" for data that ends
/// early, which reads like a full disk. (A failed read of the stream is kept aside and
/// reported by the caller; tar sees only the early end it makes.)
fn from_the_archive(error: &std::io::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        cause = match e.downcast_ref::<std::io::Error>() {
            Some(io) if io.raw_os_error().is_some() => return false,
            // An io::Error's `source` skips the error it wraps.
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => e.source(),
        };
    }
    true
}

/// `value` as one shell word, with `%` doubled: PostgreSQL replaces `%f`, `%p` and `%%` in
/// `restore_command` before the shell reads it.
fn shell_word(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:@=+,-".contains(&b));
    let word = if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    };
    word.replace('%', "%%")
}

/// `value` as a quoted value of postgresql.conf, whose strings take `''` and backslash
/// escapes.
fn setting(value: &str) -> String {
    format!("'{}'", value.replace('\\', r"\\").replace('\'', "''"))
}

impl DataDirTarget {
    fn restore_command(&self, set: &str) -> String {
        let mut words: Vec<String> = self.fetch_command.iter().map(|w| shell_word(w)).collect();
        words.extend(["wal", "fetch", "--"].map(String::from));
        words.push(shell_word(set));
        words.extend(["%f", "%p"].map(String::from));
        words.join(" ")
    }

    fn recovery_settings(&self, set: &str, id: &str) -> String {
        let mut text = format!(
            "\n# strongbox: recover snapshot {id} of set {set} from its WAL archive\n\
             restore_command = {}\n\
             recovery_target_timeline = 'current'\n",
            setting(&self.restore_command(set))
        );
        match self.target {
            RecoveryTarget::Latest => {}
            RecoveryTarget::Time(time) => text.push_str(&format!(
                "recovery_target_time = '{}'\nrecovery_target_action = 'promote'\n",
                time.format("%Y-%m-%d %H:%M:%S%.6f+00")
            )),
            RecoveryTarget::Lsn(lsn) => text.push_str(&format!(
                "recovery_target_lsn = '{lsn}'\nrecovery_target_action = 'promote'\n"
            )),
        }
        text
    }
}

impl Restorer for DataDirTarget {
    fn kind(&self) -> SourceKind {
        SourceKind::PostgresPhysical
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn is_empty(&mut self) -> Result<bool, Error> {
        let empty = match fs::read_dir(&self.dir) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(Error::io("reading", &self.dir, e)),
        };
        if !empty {
            // Never replaced, even with --force: PostgreSQL's files are not ours to move.
            return Err(Error::BadTarget {
                target: self.describe(),
                reason: not_empty_reason(&self.dir),
            });
        }
        Ok(true)
    }

    fn replaced(&self) -> String {
        "never: a data directory restores only into an empty directory".to_string()
    }

    fn reaches(&self, dir: &Path) -> Result<bool, Error> {
        lies_within(&self.dir, dir)
    }

    fn restore(&mut self, run: &mut RestoreRun<'_>) -> Result<Restored, Error> {
        let snapshot = run.objects.snapshot().clone();
        let bytes = match &snapshot.stats {
            Stats::Physical(p) => p.bytes_read,
            _ => 0,
        };
        let created = !self.dir.exists();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| Error::io("creating", &self.dir, e))?;
        let mut extracted = Extracted {
            dir: &self.dir,
            created,
            done: false,
        };
        let mark = self.dir.join(RESTORING_MARK);
        let holder = format!(
            "{} {}\n",
            strongbox_storage::host_name(),
            std::process::id()
        );
        fs::write(&mark, holder).map_err(|e| Error::io("writing", &mark, e))?;
        run.progress()
            .phase("restoring the base backup", Some(bytes));
        let stream = Tracked {
            inner: run.objects.open(ObjectRole::Dump)?,
            progress: run.progress(),
            cancel: run.cancel(),
            error: None,
        };
        let mut archive = tar::Archive::new(stream);
        archive.set_preserve_permissions(true);
        archive.set_overwrite(false);
        let key = snapshot
            .object(ObjectRole::Dump)
            .map(|o| o.key.clone())
            .unwrap_or_default();
        let mut at = "the first entry".to_string();
        let unpacked = extract(&mut archive, &self.dir, &key, &mut at);
        let mut stream = archive.into_inner();
        // A failed read ends the stream where it failed, as tar sees it: that error is the
        // cause, not what tar made of the short data (or a clean end at a header).
        let read_failed = |source: io::Error, path: String| {
            run.cancel().or_cancelled(Error::EntryData {
                key: key.clone(),
                path,
                source,
            })
        };
        if let Some(source) = stream.error.take() {
            return Err(read_failed(source, at));
        }
        unpacked.map_err(|e| run.cancel().or_cancelled(e))?;
        // To the end: the stream's digest is checked there.
        let drained = std::io::copy(&mut stream, &mut std::io::sink()).err();
        if let Some(source) = stream.error.take().or(drained) {
            return Err(read_failed(source, at));
        }
        run.progress().finish();
        run.cancel().check()?;
        let signal = self.dir.join("recovery.signal");
        fs::write(&signal, b"").map_err(|e| Error::io("writing", &signal, e))?;
        let conf = self.dir.join("postgresql.auto.conf");
        fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&conf)
            .and_then(|mut f| {
                f.write_all(
                    self.recovery_settings(&snapshot.set, snapshot.id.as_str())
                        .as_bytes(),
                )?;
                f.sync_all()
            })
            .map_err(|e| Error::io("writing", &conf, e))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("setting the mode of", &self.dir, e))?;
        fs::remove_file(&mark).map_err(|e| Error::io("removing", &mark, e))?;
        extracted.done = true;
        Ok(Restored {
            previous: None,
            detail: RestoreDetail::Recovery(Recovery {
                dir: self.dir.clone(),
                target: self.target,
                window: self.window.clone(),
                restore_command: self.restore_command(&snapshot.set),
                bytes,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a restore killed midway left a data directory that the next restore
    /// refused as any non-empty one, with no word of where it came from.
    #[test]
    fn a_non_empty_data_directory_is_refused_saying_whether_a_restore_left_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("PG_VERSION"), b"15").unwrap();
        let host = strongbox_storage::host_name();
        let dead = {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            child.wait().unwrap();
            pid
        };
        // (the mark's content, if any; what the refusal says)
        let cases = [
            (None, "move its data directory aside"),
            (Some(format!("{host} {dead}")), "stopped before it finished"),
            (Some(format!("{host} {}", std::process::id())), "is running"),
        ];
        for (mark, says) in cases {
            let path = dir.path().join(RESTORING_MARK);
            match &mark {
                Some(text) => fs::write(&path, text).unwrap(),
                None => drop(fs::remove_file(&path)),
            }
            let reason = not_empty_reason(dir.path());
            assert!(reason.contains(says), "{mark:?}: {reason}");
        }
    }
    use crate::Point;
    use strongbox_manifest::Lsn;

    /// A data directory target; its window does not matter to what it writes.
    fn target(target: RecoveryTarget, fetch_command: &[&str]) -> DataDirTarget {
        DataDirTarget {
            dir: PathBuf::from("/x"),
            target,
            fetch_command: fetch_command.iter().map(|w| w.to_string()).collect(),
            window: BackupWindow {
                snapshot: "s".into(),
                timeline: 1,
                earliest: Point {
                    time: None,
                    lsn: Lsn(0),
                },
                latest: None,
                last_segment: None,
                gap: None,
            },
        }
    }

    #[test]
    fn recovery_settings_quote_the_command_and_name_the_target() {
        let time = chrono::DateTime::parse_from_rfc3339("2026-12-01T02:00:00.5Z")
            .unwrap()
            .to_utc();
        let cases = [
            (RecoveryTarget::Latest, None),
            (
                RecoveryTarget::Time(time),
                Some("recovery_target_time = '2026-12-01 02:00:00.500000+00'"),
            ),
            (
                RecoveryTarget::Lsn(Lsn(0x300_0060)),
                Some("recovery_target_lsn = '0/3000060'"),
            ),
        ];
        for (recovery, line) in cases {
            let text = target(recovery, &["/usr/bin/strongbox"]).recovery_settings("maindb", "id");
            match line {
                Some(line) => {
                    assert!(text.contains(line), "{text}");
                    assert!(
                        text.contains("recovery_target_action = 'promote'"),
                        "{text}"
                    );
                }
                None => assert!(
                    !text.contains("recovery_target_time =")
                        && !text.contains("recovery_target_lsn ="),
                    "{text}"
                ),
            }
        }
    }

    /// What PostgreSQL, then the shell, make of the restore_command a restore writes: the
    /// configuration value unquoted, `%f`, `%p` and `%%` replaced, the words split by `sh`.
    fn run_as_postgresql_would(setting_line: &str) -> Vec<String> {
        let quoted = setting_line
            .strip_prefix("restore_command = '")
            .and_then(|rest| rest.strip_suffix('\''))
            .unwrap();
        let (mut value, mut chars) = (String::new(), quoted.chars().peekable());
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(chars.next().unwrap()),
                '\'' => value.push(chars.next().filter(|n| *n == '\'').unwrap()),
                c => value.push(c),
            }
        }
        let command = value
            .replace("%%", "\0")
            .replace("%f", "000000010000000000000003")
            .replace("%p", "pg_wal/RECOVERYXLOG")
            .replace('\0', "%");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {command}"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn restore_command_survives_postgresql_and_the_shell_whatever_the_paths_hold() {
        for repo in [
            "/srv/backup",
            "/srv/it's here",
            r"/srv/back\slash",
            "/srv/50%p and %f",
            "s3://bucket/prod",
        ] {
            let dir = target(
                RecoveryTarget::Latest,
                &["/usr/bin/strongbox", "--repo", repo],
            );
            let text = dir.recovery_settings("main-db", "id");
            let line = text
                .lines()
                .find(|l| l.starts_with("restore_command"))
                .unwrap();
            assert_eq!(
                run_as_postgresql_would(line),
                [
                    "/usr/bin/strongbox",
                    "--repo",
                    repo,
                    "wal",
                    "fetch",
                    "--",
                    "main-db",
                    "000000010000000000000003",
                    "pg_wal/RECOVERYXLOG"
                ],
                "{line}"
            );
        }
    }

    #[test]
    fn a_tampered_base_backup_is_refused_before_it_writes_outside_the_directory() {
        let entry = |name: &str, kind: tar::EntryType| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(if kind == tar::EntryType::Regular {
                1
            } else {
                0
            });
            header.set_mode(0o600);
            header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            if kind == tar::EntryType::Symlink {
                header.set_link_name("/etc").unwrap();
            }
            header.set_cksum();
            header
        };
        // (entries after PG_VERSION, the phrase of the refusal or None)
        let cases: [(&str, tar::EntryType, Option<&str>); 6] = [
            ("global/pg_control", tar::EntryType::Regular, None),
            ("base/", tar::EntryType::Directory, None),
            (
                "../evil",
                tar::EntryType::Regular,
                Some("outside the data directory"),
            ),
            (
                "/tmp/evil",
                tar::EntryType::Regular,
                Some("outside the data directory"),
            ),
            (
                "pg_tblspc/1",
                tar::EntryType::Symlink,
                Some("not a file or directory"),
            ),
            ("dev", tar::EntryType::Char, Some("not a file or directory")),
        ];
        for (name, kind, refusal) in cases {
            let mut builder = tar::Builder::new(Vec::new());
            let mut version = entry("PG_VERSION", tar::EntryType::Regular);
            builder.append(&version, &b"5"[..]).unwrap();
            version = entry(name, kind);
            let data: &[u8] = if kind == tar::EntryType::Regular {
                b"x"
            } else {
                b""
            };
            builder.append(&version, data).unwrap();
            let bytes = builder.into_inner().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let target = dir.path().join("data");
            std::fs::create_dir(&target).unwrap();
            let result = extract(
                &mut tar::Archive::new(&bytes[..]),
                &target,
                "k",
                &mut String::new(),
            );
            match refusal {
                None => assert!(result.is_ok(), "{name}: {result:?}"),
                Some(phrase) => {
                    let err = result.unwrap_err().to_string();
                    assert!(
                        err.contains(phrase) && err.contains(name.trim_start_matches('/')),
                        "{name}: {err}"
                    );
                    assert!(!dir.path().join("evil").exists() && !Path::new("/tmp/evil").exists());
                }
            }
        }
    }

    #[test]
    fn a_base_backup_whose_data_ends_early_is_called_damaged_not_a_write_failure() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(5000);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_path("base/1/1259").unwrap();
        header.set_cksum();
        builder.append(&header, &[7u8; 5000][..]).unwrap();
        let bytes = builder.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let err = extract(
            &mut tar::Archive::new(&bytes[..512 + 2000]),
            dir.path(),
            "k",
            &mut String::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("base/1/1259: archive k is damaged: "),
            "{err}"
        );
    }

    #[test]
    fn only_an_unpack_failure_of_no_disk_is_the_archives() {
        use std::io::Error as IoError;
        let cases: [(&str, IoError, bool); 3] = [
            (
                "data ends early",
                IoError::other("failed to write entire file"),
                true,
            ),
            ("a full disk", IoError::from_raw_os_error(28), false),
            (
                "a full disk, wrapped by tar",
                IoError::other(IoError::other(IoError::from_raw_os_error(28))),
                false,
            ),
        ];
        for (what, error, archive) in cases {
            assert_eq!(from_the_archive(&error), archive, "{what}");
        }
    }
}
