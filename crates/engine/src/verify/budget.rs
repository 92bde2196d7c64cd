//! Deep verification on a budget: each run reads about a fixed number of bytes, the
//! objects read least recently first (by the journal), so that a daily run covers the
//! whole repository in a predictable number of days.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use strongbox_manifest::{ObjectRef, ObjectRole, Snapshot};
use strongbox_verify::{Check, CheckName, Report, SnapshotReport, VerifyLevel};

use crate::journal::{Operation, RunOutcome, Verification};
use crate::{error_chain, Error, Reader};

impl Reader {
    pub(super) fn verify_budget(
        &self,
        snapshots: &[Snapshot],
        budget: u64,
    ) -> Result<Report, Error> {
        let mut last_read: HashMap<String, DateTime<Utc>> = HashMap::new();
        let sets: HashSet<&str> = snapshots.iter().map(|s| s.set.as_str()).collect();
        for set in sets {
            last_read.extend(self.objects_last_read(set)?);
        }
        let mut candidates: Vec<(&Snapshot, &ObjectRef)> = Vec::new();
        let mut seen = HashSet::new();
        for snapshot in snapshots {
            for object in &snapshot.objects {
                if seen.insert(object.key.as_str()) {
                    candidates.push((snapshot, object));
                }
            }
        }
        let chosen = choose(candidates, &last_read, budget);

        let mut by_set: BTreeMap<&str, Vec<(&Snapshot, &ObjectRef)>> = BTreeMap::new();
        for (snapshot, object) in &chosen {
            by_set
                .entry(&snapshot.set)
                .or_default()
                .push((snapshot, object));
        }
        let mut reports = Vec::new();
        for (set, objects) in by_set {
            let checked = self.journaled(
                set,
                Operation::Verify,
                None,
                || self.check_objects(&objects),
                |reports: &Vec<SnapshotReport>| RunOutcome {
                    ok: reports.iter().all(|r| r.ok),
                    bytes: None,
                    verified: Vec::<Verification>::new(),
                    objects_read: objects.iter().map(|(_, o)| o.key.clone()).collect(),
                    problem: super::first_failure(reports),
                    detail: None,
                },
            )?;
            reports.extend(checked);
        }
        let mut report = Report::new(VerifyLevel::Deep, reports);
        report.bytes_read = Some(chosen.iter().map(|(_, o)| o.size).sum());
        report.objects_read = Some(chosen.iter().map(|(_, o)| o.key.clone()).collect());
        Ok(report)
    }

    /// Deep checks of the chosen objects, one report per snapshot that owns some.
    fn check_objects(
        &self,
        objects: &[(&Snapshot, &ObjectRef)],
    ) -> Result<Vec<SnapshotReport>, Error> {
        let mut by_snapshot: BTreeMap<&str, (&Snapshot, Vec<Check>)> = BTreeMap::new();
        self.progress.phase("verifying", None);
        for (snapshot, object) in objects {
            self.cancel.check()?;
            let check = Check::timed(CheckName::Content, || self.deep_check(snapshot, object));
            by_snapshot
                .entry(snapshot.id.as_str())
                .or_insert_with(|| (snapshot, Vec::new()))
                .1
                .push(check);
        }
        self.progress.finish();
        Ok(by_snapshot
            .into_values()
            .map(|(snapshot, checks)| SnapshotReport::new(snapshot, checks))
            .collect())
    }

    /// One object read whole: its stored bytes against the record and its content (an
    /// archive's entries against the snapshot's listing, a listing's tree, a dump's table of
    /// contents).
    fn deep_check(&self, snapshot: &Snapshot, object: &ObjectRef) -> Result<String, String> {
        let chain = |e: Error| error_chain(&e);
        // Listings and dumps are read against their record, so one pass checks both the
        // stored bytes and the content; an archive is streamed by entry digests, so its
        // stored bytes are checked on their own.
        let content = match object.role {
            ObjectRole::Archive => {
                self.repo
                    .check_object(object)
                    .map_err(|e| error_chain(&e))?;
                let matched = self.read_own_archive(snapshot, object).map_err(chain)?;
                format!("{matched} entries matched")
            }
            ObjectRole::Listing => {
                let tree = self.read_listing(snapshot)?;
                format!("{} entries", tree.entries())
            }
            ObjectRole::Dump => {
                let mut dump = self
                    .repo
                    .open_object(&object.key, Some(object))
                    .map_err(|e| error_chain(&e))?;
                strongbox_db_dump::verify_dump(snapshot.source, &mut dump)
                    .map_err(|e| error_chain(&e))?
            }
        };
        Ok(format!("{}: {} bytes, {content}", object.key, object.size))
    }
}

/// The objects to read: never read first, then the least recently read (ties by key, so
/// the order is stable), until about `budget` bytes; at least one.
fn choose<'a>(
    mut candidates: Vec<(&'a Snapshot, &'a ObjectRef)>,
    last_read: &HashMap<String, DateTime<Utc>>,
    budget: u64,
) -> Vec<(&'a Snapshot, &'a ObjectRef)> {
    candidates.sort_by(|a, b| {
        (last_read.get(&a.1.key), &a.1.key).cmp(&(last_read.get(&b.1.key), &b.1.key))
    });
    let mut total = 0;
    let mut chosen = Vec::new();
    for candidate in candidates {
        if !chosen.is_empty() && total + candidate.1.size > budget {
            break;
        }
        total += candidate.1.size;
        chosen.push(candidate);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_read_objects_fill_the_budget() {
        let snapshot = crate::fixtures::snapshot(
            "db",
            "20261101T000000Z-000001",
            strongbox_manifest::SnapshotKind::Full,
        );
        let objects: Vec<ObjectRef> = [("a", 40), ("b", 40), ("c", 40), ("d", 500)]
            .iter()
            .map(|(key, size)| ObjectRef {
                key: key.to_string(),
                size: *size,
                sha256: String::new(),
                role: ObjectRole::Dump,
            })
            .collect();
        let day = |d: u32| {
            DateTime::parse_from_rfc3339(&format!("2026-11-{d:02}T00:00:00Z"))
                .unwrap()
                .to_utc()
        };
        let read: HashMap<String, DateTime<Utc>> = [
            ("a".to_string(), day(3)),
            ("b".to_string(), day(1)),
            ("d".to_string(), day(2)),
        ]
        .into();
        // budget -> keys chosen
        let cases: [(u64, &[&str]); 4] = [
            (0, &["c"]),
            (80, &["c", "b"]),
            (100, &["c", "b"]),
            (10_000, &["c", "b", "d", "a"]),
        ];
        for (budget, want) in cases {
            let candidates = objects.iter().map(|o| (&snapshot, o)).collect();
            let got: Vec<&str> = choose(candidates, &read, budget)
                .iter()
                .map(|(_, o)| o.key.as_str())
                .collect();
            assert_eq!(got, want, "budget {budget}");
        }
    }
}
