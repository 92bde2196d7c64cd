use std::collections::{BTreeMap, HashMap};

use strongbox_manifest::Snapshot;
use strongbox_storage::layout;
use strongbox_verify::{verify_snapshot, Report, SnapshotReport, VerifyLevel};

use crate::{Engine, Error};

impl Engine {
    /// Check `snapshots` at `level`; each set's attempt goes into its run journal.
    pub fn verify(&self, snapshots: &[Snapshot], level: VerifyLevel) -> Result<Report, Error> {
        let mut by_set: BTreeMap<&str, Vec<&Snapshot>> = BTreeMap::new();
        for snapshot in snapshots {
            by_set.entry(&snapshot.set).or_default().push(snapshot);
        }
        let mut reports = Vec::new();
        for (set, snapshots) in by_set {
            let checked = self.journaled(
                set,
                "verify",
                None,
                || self.verify_set(set, &snapshots, level),
                |reports: &Vec<SnapshotReport>| reports.iter().all(|r| r.ok),
            )?;
            reports.extend(checked);
        }
        Ok(Report::new(level, reports))
    }

    fn verify_set(
        &self,
        set: &str,
        snapshots: &[&Snapshot],
        level: VerifyLevel,
    ) -> Result<Vec<SnapshotReport>, Error> {
        let sizes: HashMap<String, u64> = self
            .repo
            .list(&layout::data_prefix(set))?
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        let mut reports = Vec::new();
        self.progress.phase("verifying", None);
        for snapshot in snapshots {
            self.cancel.check()?;
            let report = verify_snapshot(self.repo.as_reader(), snapshot, &sizes, level);
            if !report.ok {
                tracing::warn!(id = %snapshot.id, "verification failed");
            }
            reports.push(report);
        }
        self.progress.finish();
        Ok(reports)
    }
}
