//! `health`: checks with Nagios states, per set and for the repository, from the
//! repository and its run journal alone. A check that cannot tell is never "ok".

mod prometheus;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strongbox_manifest::{Snapshot, Stats};
use strongbox_retention::{KeepPolicy, Timezone};
use strongbox_storage::{holder_alive, layout, DamagedRecord, Records};

use crate::journal::{Operation, RunStatus};
use crate::{Error, Reader, SetStatus};

/// A check's state, ordered from good to bad; the exit code is its number (Nagios).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Fine.
    Ok,
    /// Needs attention soon.
    Warning,
    /// Backups are failing or stale.
    Critical,
    /// Could not be determined (the repository is unreachable).
    Unknown,
}

impl HealthStatus {
    /// The Nagios exit code: 0, 1, 2, 3.
    pub fn exit_code(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthStatus::Ok => "ok",
            HealthStatus::Warning => "warning",
            HealthStatus::Critical => "critical",
            HealthStatus::Unknown => "unknown",
        })
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// The set, or `None` for a check of the repository.
    pub set: Option<String>,
    /// What was checked.
    pub name: String,
    /// Its state.
    pub status: HealthStatus,
    /// Why.
    pub detail: String,
}

/// Every check, and the worst state among them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// The worst state of any check.
    pub status: HealthStatus,
    /// Every check.
    pub checks: Vec<HealthCheck>,
    /// The sets' status the checks were made from (for the Prometheus file).
    #[serde(skip)]
    pub sets: Vec<SetStatus>,
}

impl HealthReport {
    /// The report of a health check that could not run (a repository that cannot be
    /// opened, a configuration that does not load): one `repository` check, unknown, saying
    /// why, so that metrics say unknown rather than keep the last run's state.
    pub fn unknown(why: &str) -> Self {
        HealthReport {
            status: HealthStatus::Unknown,
            checks: vec![HealthCheck {
                set: None,
                name: "repository".to_string(),
                status: HealthStatus::Unknown,
                detail: why.to_string(),
            }],
            sets: Vec::new(),
        }
    }
}

/// Thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthOptions {
    /// Critical when a set's newest snapshot is older; warning past 75 % of it.
    pub max_age: Duration,
    /// Warning when the local repository's disk is fuller (percent); critical at 95, or at
    /// this threshold when it is higher.
    pub max_disk_usage: u8,
    /// Warning when files, bytes or rows drop by more than this percentage against the
    /// median of the previous 7 snapshots.
    pub anomaly_drop: u8,
    /// Warning when no verification passed within this time (sets younger than it are
    /// not held to it).
    pub verify_max_age: Duration,
    /// Physical sets: warning when the newest archived WAL file is older.
    pub wal_warning: Duration,
    /// Physical sets: critical when the newest archived WAL file is older.
    pub wal_critical: Duration,
    /// Keep policies per set, for retention compliance.
    pub policies: BTreeMap<String, KeepPolicy>,
    /// Sets that must be there (the configured ones): checked even when the repository
    /// holds nothing of them, so a set whose backups never ran is not silently skipped.
    pub expected_sets: Vec<String>,
}

impl Default for HealthOptions {
    /// 48 h, 80 %, 30 %, 7 days, WAL 5 and 30 minutes, no policies, no expected sets.
    fn default() -> Self {
        HealthOptions {
            max_age: Duration::from_secs(48 * 3600),
            max_disk_usage: 80,
            anomaly_drop: 30,
            verify_max_age: Duration::from_secs(7 * 24 * 3600),
            wal_warning: Duration::from_secs(5 * 60),
            wal_critical: Duration::from_secs(30 * 60),
            policies: BTreeMap::new(),
            expected_sets: Vec::new(),
        }
    }
}

impl Reader {
    /// Check `sets` (when empty: every set in the repository and every expected one) and
    /// the repository. A repository without any set is critical: nothing is backed up.
    pub fn health(&self, sets: &[String], options: &HealthOptions) -> Result<HealthReport, Error> {
        Ok(self.assess(sets, options)?.report)
    }

    /// [`Reader::health`], with what it read and found on the way: each set's snapshots and
    /// what its keep policy would forget.
    pub(crate) fn assess(
        &self,
        sets: &[String],
        options: &HealthOptions,
    ) -> Result<Assessment, Error> {
        let now = Utc::now();
        // Every record once: the sets, their snapshots and the bundles come from one read.
        // A damaged record is its set's finding; it neither hides the set nor stops the rest.
        let records = self.records(None)?;
        let bundles = self.bundles(&records.snapshots);
        let mut by_set: BTreeMap<String, Records> = BTreeMap::new();
        for snapshot in records.snapshots {
            let set = by_set.entry(snapshot.set.clone()).or_default();
            set.snapshots.push(snapshot);
        }
        for damaged in records.damaged {
            let set = by_set.entry(damaged.set.clone()).or_default();
            set.damaged.push(damaged);
        }
        let mut sets = sets.to_vec();
        if sets.is_empty() {
            // The sets read above, and those whose every backup failed (no record to read).
            sets = self.sets_where(|set| Ok(by_set.contains_key(set)))?;
            for expected in &options.expected_sets {
                if !sets.contains(expected) {
                    sets.push(expected.clone());
                }
            }
        }
        let mut statuses = Vec::new();
        let mut checks = Vec::new();
        let mut forgettable = BTreeMap::new();
        if sets.is_empty() {
            checks.push(HealthCheck {
                set: None,
                name: "sets".to_string(),
                status: HealthStatus::Critical,
                detail: "the repository holds no set: nothing has been backed up".to_string(),
            });
        }
        for set in &sets {
            layout::check_set_name(set)?;
            let records = by_set.entry(set.clone()).or_default();
            let status = self.set_status(set, records)?;
            let set_checks = SetChecks {
                reader: self,
                status: &status,
                snapshots: &records.snapshots,
                options,
                now,
                bundles: &bundles,
            };
            let (set_checks, forget) = set_checks.all()?;
            checks.extend(set_checks);
            checks.extend(records.damaged.iter().map(damaged_check));
            if let Some(forget) = forget {
                forgettable.insert(set.clone(), forget);
            }
            statuses.push(status);
        }
        checks.push(self.disk_check(options));
        checks.extend(self.keys_check()?);
        let status = checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(HealthStatus::Ok);
        by_set.retain(|set, _| sets.contains(set));
        let by_set = by_set
            .into_iter()
            .map(|(set, records)| (set, records.snapshots))
            .collect();
        Ok(Assessment {
            report: HealthReport {
                status,
                checks,
                sets: statuses,
            },
            snapshots: by_set,
            forgettable,
        })
    }

    /// An encrypted repository's damaged key files: unlocking passes over them with a
    /// warning that a scheduled (quiet) run does not show, and their holders are locked out.
    fn keys_check(&self) -> Result<Option<HealthCheck>, Error> {
        if !self.repo.sealed() {
            return Ok(None);
        }
        let keys = self.repo.keys()?;
        let damaged: Vec<&str> = keys
            .iter()
            .filter(|k| k.kind == strongbox_storage::KeyInfo::DAMAGED)
            .map(|k| k.id.as_str())
            .collect();
        let (status, detail) = match damaged.as_slice() {
            [] => (
                HealthStatus::Ok,
                format!("{} key file(s) readable", keys.len()),
            ),
            ids => (
                HealthStatus::Warning,
                format!(
                    "damaged key file(s) {}: their age header does not parse, so their \
                     holders cannot unlock; `key remove` them and `key add` the holders again",
                    ids.join(", ")
                ),
            ),
        };
        Ok(Some(HealthCheck {
            set: None,
            name: "keys".to_string(),
            status,
            detail,
        }))
    }

    fn disk_check(&self, options: &HealthOptions) -> HealthCheck {
        let check = |status, detail: String| HealthCheck {
            set: None,
            name: "disk".to_string(),
            status,
            detail,
        };
        let Some(root) = self.repo.local_root() else {
            return check(HealthStatus::Ok, "not a local repository".to_string());
        };
        let usage = rustix::fs::statvfs(root)
            .map(|fs| disk_used_percent(fs.f_blocks, fs.f_bfree, fs.f_bavail));
        match usage {
            Ok(Some(used)) => {
                check(
                    disk_status(used, options.max_disk_usage),
                    // Rounded down, so that the figure shown is past a threshold exactly
                    // when the state says so (94.6 % is no "95 %" that only warns).
                    format!(
                        "{:.0} % used on {} (warning at {} %, critical at {} %)",
                        used.floor(),
                        root.display(),
                        options.max_disk_usage,
                        critical_disk_usage(options.max_disk_usage)
                    ),
                )
            }
            Ok(_) => check(
                HealthStatus::Unknown,
                format!("{} reports no size", root.display()),
            ),
            Err(e) => check(HealthStatus::Unknown, format!("{}: {e}", root.display())),
        }
    }
}

/// A health report and what it was made from.
pub(crate) struct Assessment {
    pub(crate) report: HealthReport,
    /// Each checked set's snapshots, oldest first.
    pub(crate) snapshots: BTreeMap<String, Vec<Snapshot>>,
    /// Per set with a keep policy, how many snapshots prune would forget now.
    pub(crate) forgettable: BTreeMap<String, usize>,
}

struct SetChecks<'a> {
    reader: &'a Reader,
    status: &'a SetStatus,
    snapshots: &'a [Snapshot],
    options: &'a HealthOptions,
    now: DateTime<Utc>,
    bundles: &'a [Snapshot],
}

impl SetChecks<'_> {
    /// Every check, and what the keep policy would forget (when there is one).
    fn all(&self) -> Result<(Vec<HealthCheck>, Option<usize>), Error> {
        let mut checks = vec![
            self.backup_age(),
            self.last_run(Operation::Backup),
            self.last_run(Operation::Verify),
            self.verification(),
            self.anomaly(),
            self.lock()?,
            self.crashed_runs(),
        ];
        let safety = self.status.set.ends_with(crate::restore::SAFETY_SUFFIX)
            && !self.snapshots.is_empty()
            && self
                .snapshots
                .iter()
                .all(|s| s.tags.iter().any(|t| t == crate::restore::SAFETY_TAG));
        if safety {
            // Safety snapshots are taken before forced restores, not on a schedule: their
            // age, verification and size say nothing about the backups.
            checks
                .retain(|c| !["backup-age", "verification", "anomaly"].contains(&c.name.as_str()));
        }
        let forget = self.retention()?;
        if let Some((check, _)) = &forget {
            checks.push(check.clone());
        }
        checks.extend(self.references());
        checks.extend(self.wal()?);
        Ok((checks, forget.map(|(_, n)| n)))
    }

    /// A physical set: the age of its newest archived WAL, and any gap in the WAL its base
    /// backups need.
    fn wal(&self) -> Result<Vec<HealthCheck>, Error> {
        let Some((snapshot, physical)) = self
            .snapshots
            .iter()
            .rev()
            .find_map(|s| Some((s, s.physical()?)))
        else {
            return Ok(Vec::new());
        };
        let wal = self.reader.wal(&snapshot.set, physical.wal_segment_size)?;
        let (warning, critical) = (self.options.wal_warning, self.options.wal_critical);
        let age = match wal.iter().max_by_key(|o| o.modified) {
            None => self.check(
                "wal-age",
                HealthStatus::Critical,
                "no WAL is archived".to_string(),
            ),
            Some(newest) => {
                let age = (self.now - newest.modified).to_std().unwrap_or_default();
                let status = if age > critical {
                    HealthStatus::Critical
                } else if age > warning {
                    HealthStatus::Warning
                } else {
                    HealthStatus::Ok
                };
                self.check(
                    "wal-age",
                    status,
                    format!(
                        "the newest archived WAL, {}, is {} old (warning past {}, critical past {})",
                        newest.name,
                        human(age),
                        human(warning),
                        human(critical)
                    ),
                )
            }
        };
        // The same chain check verify makes. A gap the newest base backup needs is critical;
        // one only an older base backup needs cuts recovery to its earlier times: a warning.
        let (mut status, mut detail) = match self.reader.wal_chain(physical, &wal, false) {
            Ok(detail) => (
                HealthStatus::Ok,
                format!("snapshot {}: {detail}", snapshot.id),
            ),
            Err(detail) => (
                HealthStatus::Critical,
                format!("snapshot {}: {detail}", snapshot.id),
            ),
        };
        let older: Vec<String> = self
            .snapshots
            .iter()
            .rev()
            .filter(|s| s.id != snapshot.id)
            .filter_map(|s| {
                let gap = self.reader.wal_chain(s.physical()?, &wal, false).err()?;
                Some(format!("snapshot {}: {gap}", s.id))
            })
            .collect();
        if !older.is_empty() {
            status = status.max(HealthStatus::Warning);
            detail.push_str(&format!(
                "; older base backups that cannot recover: {}",
                older.join("; ")
            ));
        }
        let gap = self.check("wal-gap", status, detail);
        Ok(vec![age, gap])
    }

    /// A bundle whose newest record found referenced files missing warns, naming them.
    fn references(&self) -> Option<HealthCheck> {
        let Stats::Bundle(stats) = &self.snapshots.last()?.stats else {
            return None;
        };
        let r = stats.references.as_ref()?;
        Some(if r.missing_count == 0 {
            self.check(
                "references",
                HealthStatus::Ok,
                format!(
                    "all {} files {} references are in {}",
                    r.checked, r.database, r.files
                ),
            )
        } else {
            let first: Vec<&str> = r.missing.iter().take(5).map(String::as_str).collect();
            self.check(
                "references",
                HealthStatus::Warning,
                format!(
                    "{} of {} files {} references are missing from {}: {}",
                    r.missing_count,
                    r.checked,
                    r.database,
                    r.files,
                    first.join(", ")
                ),
            )
        })
    }

    fn check(&self, name: &str, status: HealthStatus, detail: String) -> HealthCheck {
        HealthCheck {
            set: Some(self.status.set.clone()),
            name: name.to_string(),
            status,
            detail,
        }
    }

    fn backup_age(&self) -> HealthCheck {
        let max = self.options.max_age;
        let Some(last) = &self.status.last_snapshot else {
            return self.check(
                "backup-age",
                HealthStatus::Critical,
                "no snapshot".to_string(),
            );
        };
        let age = (self.now - last.time).to_std().unwrap_or_default();
        let status = if age > max {
            HealthStatus::Critical
        } else if age.as_secs_f64() > max.as_secs_f64() * 0.75 {
            HealthStatus::Warning
        } else {
            HealthStatus::Ok
        };
        self.check(
            "backup-age",
            status,
            format!(
                "the newest snapshot {} is {} old (critical past {})",
                last.id,
                human(age),
                human(max)
            ),
        )
    }

    fn last_run(&self, operation: Operation) -> HealthCheck {
        let name = format!("last-{operation}");
        match self.status.last_run(operation) {
            Some(run) if run.status == RunStatus::Failed => self.check(
                &name,
                HealthStatus::Critical,
                format!(
                    "the last {operation} failed at {}: {}",
                    run.started.format("%Y-%m-%d %H:%M:%S UTC"),
                    run.error.as_deref().unwrap_or("no error recorded")
                ),
            ),
            // Some files were left out (unreadable, say): the snapshot is there, not whole.
            Some(run) if run.status == RunStatus::Incomplete => self.check(
                &name,
                HealthStatus::Warning,
                format!(
                    "the last {operation} at {} was incomplete: files were left out of {}",
                    run.started.format("%Y-%m-%d %H:%M:%S UTC"),
                    run.snapshot.as_deref().map_or_else(
                        || "it".to_string(),
                        |id| format!("{id} (`strongbox show {id}` lists them)")
                    )
                ),
            ),
            Some(run) => self.check(
                &name,
                HealthStatus::Ok,
                format!(
                    "the last {operation} at {} was {}",
                    run.started.format("%Y-%m-%d %H:%M:%S UTC"),
                    run.status.as_str()
                ),
            ),
            None => self.check(&name, HealthStatus::Ok, format!("no {operation} run yet")),
        }
    }

    fn verification(&self) -> HealthCheck {
        let limit = self.options.verify_max_age;
        let young = self
            .snapshots
            .first()
            .is_none_or(|oldest| (self.now - oldest.time).to_std().unwrap_or_default() <= limit);
        let last_ok = self.status.last_verification.as_ref().filter(|v| v.ok);
        let recent =
            last_ok.is_some_and(|v| (self.now - v.time).to_std().unwrap_or_default() <= limit);
        let detail = match last_ok {
            Some(v) => format!(
                "last passed {} ago ({}, {})",
                human((self.now - v.time).to_std().unwrap_or_default()),
                v.level,
                v.snapshot
            ),
            None => "never verified".to_string(),
        };
        let status = if recent || young {
            HealthStatus::Ok
        } else {
            HealthStatus::Warning
        };
        self.check(
            "verification",
            status,
            format!("{detail}; wanted within {}", human(limit)),
        )
    }

    fn retention(&self) -> Result<Option<(HealthCheck, usize)>, Error> {
        let Some(policy) = self.options.policies.get(&self.status.set) else {
            return Ok(None);
        };
        if policy.is_empty() {
            // Prune refuses it; health reports it rather than fail for every set.
            let detail = "the keep policy would keep nothing, so prune refuses it: give a rule a count above 0".to_string();
            return Ok(Some((
                self.check("retention", HealthStatus::Warning, detail),
                0,
            )));
        }
        let plan = self.reader.retention_plan(
            &self.status.set,
            self.snapshots,
            policy,
            Timezone::UTC,
            self.bundles,
        )?;
        let forget = plan.forget().count();
        let check = if forget == 0 {
            self.check(
                "retention",
                HealthStatus::Ok,
                "every snapshot is one the keep policy keeps".to_string(),
            )
        } else {
            self.check(
                "retention",
                HealthStatus::Warning,
                format!("{forget} snapshot(s) the keep policy would forget: prune has not run"),
            )
        };
        Ok(Some((check, forget)))
    }

    fn anomaly(&self) -> HealthCheck {
        let Some((latest, earlier)) = self.snapshots.split_last() else {
            return self.check("anomaly", HealthStatus::Ok, "no snapshot".to_string());
        };
        let window: Vec<&Snapshot> = earlier.iter().rev().take(7).collect();
        if window.is_empty() {
            return self.check(
                "anomaly",
                HealthStatus::Ok,
                "no earlier snapshot to compare with".to_string(),
            );
        }
        let drops: Vec<String> = metrics(latest)
            .into_iter()
            .filter_map(|(what, value)| {
                let mut history: Vec<u64> = window
                    .iter()
                    .filter_map(|s| metrics(s).into_iter().find(|(w, _)| *w == what).map(|(_, v)| v))
                    .collect();
                if history.is_empty() {
                    return None;
                }
                history.sort_unstable();
                let median = history[history.len() / 2];
                let drop = if median == 0 { 0.0 } else { (median as f64 - value as f64) * 100.0 / median as f64 };
                (drop > f64::from(self.options.anomaly_drop)).then(|| {
                    format!("{what} down {drop:.0} % ({value} vs a median of {median} over the previous {})", history.len())
                })
            })
            .collect();
        if drops.is_empty() {
            self.check(
                "anomaly",
                HealthStatus::Ok,
                format!(
                    "{} within {} % of the previous snapshots",
                    latest.id, self.options.anomaly_drop
                ),
            )
        } else {
            self.check(
                "anomaly",
                HealthStatus::Warning,
                format!("{}: {}", latest.id, drops.join("; ")),
            )
        }
    }

    fn lock(&self) -> Result<HealthCheck, Error> {
        let lock = match self.reader.repo.lock_info(&self.status.set) {
            Ok(lock) => lock,
            // It fails every backup and prune of the set before any journal entry is made.
            Err(e @ strongbox_storage::Error::Corrupt { .. }) => {
                return Ok(self.check("lock", HealthStatus::Critical, e.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(match lock {
            None => self.check("lock", HealthStatus::Ok, "not locked".to_string()),
            Some(lock) => match lock.holder_alive() {
                Some(false) => self.check(
                    "lock",
                    HealthStatus::Warning,
                    format!(
                        "stale lock: {} by pid {} on {} since {}, which is no longer running (the next backup on this host takes it over)",
                        lock.operation, lock.pid, lock.host, lock.time.format("%Y-%m-%d %H:%M:%S UTC")
                    ),
                ),
                _ => self.check(
                    "lock",
                    HealthStatus::Ok,
                    format!("locked by {} (pid {} on {})", lock.operation, lock.pid, lock.host),
                ),
            },
        })
    }

    fn crashed_runs(&self) -> HealthCheck {
        let stuck: Vec<String> = self
            .status
            .unfinished
            .iter()
            .filter(|r| holder_alive(&r.host, r.pid) == Some(false))
            // A later run of the same operation went past it: history, not a concern.
            .filter(|r| {
                self.status
                    .last_run(r.operation)
                    .is_none_or(|last| last.started <= r.started)
            })
            .map(|r| {
                format!(
                    "{} started {} by pid {}",
                    r.operation,
                    r.started.format("%Y-%m-%d %H:%M:%S UTC"),
                    r.pid
                )
            })
            .collect();
        if stuck.is_empty() {
            self.check(
                "crashed-runs",
                HealthStatus::Ok,
                "no run stuck in running".to_string(),
            )
        } else {
            self.check(
                "crashed-runs",
                HealthStatus::Warning,
                format!(
                    "{} run(s) never recorded an end (the process died, or its last journal write failed): {}",
                    stuck.len(),
                    stuck.join(", ")
                ),
            )
        }
    }
}

/// A snapshot record that cannot be read: critical, since restoring or verifying that
/// snapshot, or an incremental built on it, fails.
fn damaged_check(damaged: &DamagedRecord) -> HealthCheck {
    HealthCheck {
        set: Some(damaged.set.clone()),
        name: "record".to_string(),
        status: HealthStatus::Critical,
        detail: format!(
            "the record of snapshot {} cannot be read: {}",
            damaged.id,
            crate::error_chain(&damaged.error)
        ),
    }
}

/// What a snapshot holds, for the anomaly check: files and bytes, or rows per table and in
/// all.
fn metrics(snapshot: &Snapshot) -> Vec<(String, u64)> {
    match &snapshot.stats {
        Stats::Files(f) => vec![
            ("files".to_string(), f.files),
            ("bytes".to_string(), f.bytes),
        ],
        Stats::Database(d) => {
            std::iter::once(("rows".to_string(), d.tables.iter().map(|t| t.rows).sum()))
                .chain(
                    d.tables
                        .iter()
                        .map(|t| (format!("rows of {}", t.name), t.rows)),
                )
                .collect()
        }
        Stats::Physical(p) => vec![("bytes".to_string(), p.bytes_read)],
        // A bundle's counts are its members'; its own check is `references`.
        Stats::Bundle(_) => Vec::new(),
    }
}

/// `3h 12m`, `2d 4h`, `45s`.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// Disk usage (percent) that is critical: 95, or the warning threshold when that is higher,
/// so that a warning threshold of 97 % does not turn critical at 95 % first.
fn critical_disk_usage(warning: u8) -> u8 {
    warning.max(95)
}

/// Percent used as `df` shows it: of the blocks an unprivileged writer can have, those
/// taken; the blocks reserved for root count on neither side. `None` for a file system that
/// reports no size.
fn disk_used_percent(blocks: u64, free: u64, available: u64) -> Option<f64> {
    let used = blocks.saturating_sub(free);
    let usable = used + available;
    (usable > 0).then(|| used as f64 * 100.0 / usable as f64)
}

fn disk_status(used: f64, warning: u8) -> HealthStatus {
    if used >= f64::from(critical_disk_usage(warning)) {
        HealthStatus::Critical
    } else if used >= f64::from(warning) {
        HealthStatus::Warning
    } else {
        HealthStatus::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `--max-disk-usage 100` (the tests' way of setting the disk check aside)
    /// still went critical at 95 %, failing the health tests on a nearly full disk.
    #[test]
    fn a_warning_threshold_above_95_raises_the_critical_one_with_it() {
        use HealthStatus::*;
        let cases = [
            (50.0, 80, Ok),
            (80.0, 80, Warning),
            (94.9, 80, Warning),
            (95.0, 80, Critical),
            (95.0, 100, Ok),
            (99.9, 100, Ok),
            (100.0, 100, Critical),
            (96.0, 97, Ok),
            (97.0, 97, Critical),
        ];
        for (used, warning, expected) in cases {
            assert_eq!(
                disk_status(used, warning),
                expected,
                "{used} % with warning at {warning} %"
            );
        }
    }

    /// Regression: the reserved blocks counted as used, so a disk `df` showed 41 % full was
    /// reported 78 % full, near the warning.
    #[test]
    fn disk_usage_is_the_percentage_df_shows() {
        // (blocks, free, available to unprivileged users) -> percent
        let cases = [
            (1000, 600, 550, Some(400.0 * 100.0 / 950.0)),
            (1000, 0, 0, Some(100.0)),
            (1000, 50, 0, Some(100.0)),
            (1000, 1000, 950, Some(0.0)),
            (0, 0, 0, None),
        ];
        for (blocks, free, available, expected) in cases {
            assert_eq!(
                disk_used_percent(blocks, free, available),
                expected,
                "{blocks} blocks, {free} free, {available} available"
            );
        }
    }

    #[test]
    fn durations_read_at_a_glance_and_states_order_by_badness() {
        let cases = [
            (5, "5s"),
            (125, "2m"),
            (3 * 3600 + 720, "3h 12m"),
            (2 * 86_400 + 4 * 3600, "2d 4h"),
        ];
        for (secs, text) in cases {
            assert_eq!(human(Duration::from_secs(secs)), text);
        }
        assert!(HealthStatus::Ok < HealthStatus::Warning);
        assert!(HealthStatus::Warning < HealthStatus::Critical);
        assert!(HealthStatus::Critical < HealthStatus::Unknown);
        let codes: Vec<u8> = [
            HealthStatus::Ok,
            HealthStatus::Warning,
            HealthStatus::Critical,
            HealthStatus::Unknown,
        ]
        .iter()
        .map(|s| s.exit_code())
        .collect();
        assert_eq!(codes, [0, 1, 2, 3]);
    }
}
