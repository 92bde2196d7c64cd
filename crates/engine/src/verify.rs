use std::collections::{BTreeMap, HashMap, HashSet};

use strongbox_manifest::{ObjectRole, Snapshot, SnapshotId, SourceKind};
use strongbox_storage::layout;
use strongbox_verify::{
    listing_check, objects_present, Check, CheckName, Report, SnapshotReport, VerifyLevel,
};

use crate::journal::Operation;
use crate::{Error, Reader};

impl Reader {
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
                Operation::Verify,
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
        // One listing of the set's data serves every snapshot, and finds the archives a
        // files listing draws from.
        let sizes: HashMap<String, u64> = self
            .repo
            .list(&layout::data_prefix(set))?
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        let archives: HashSet<SnapshotId> = sizes
            .keys()
            .filter_map(|key| SnapshotId::parse(layout::archive_id(key)?).ok())
            .collect();
        let mut reports = Vec::new();
        self.progress.phase("verifying", None);
        for snapshot in snapshots {
            self.cancel.check()?;
            let report = self.verify_snapshot(snapshot, &sizes, &archives, level);
            if !report.ok {
                tracing::warn!(id = %snapshot.id, "verification failed");
            }
            reports.push(report);
        }
        self.progress.finish();
        Ok(reports)
    }

    fn verify_snapshot(
        &self,
        snapshot: &Snapshot,
        sizes: &HashMap<String, u64>,
        archives: &HashSet<SnapshotId>,
        level: VerifyLevel,
    ) -> SnapshotReport {
        let mut checks = vec![objects_present(snapshot, sizes)];
        let listing = (snapshot.source == SourceKind::Files).then(|| self.listing(snapshot));
        if let Some(listing) = &listing {
            checks.push(match listing {
                Ok(listing) => listing_check(listing, &archives.iter().collect()),
                Err(e) => Check::new(CheckName::Listing, Err(crate::error_chain(e))),
            });
        }
        if level >= VerifyLevel::Checksum {
            checks.push(Check::new(CheckName::Checksum, self.checksums(snapshot)));
        }
        if level >= VerifyLevel::Deep {
            let result = match &listing {
                Some(Ok(listing)) => self
                    .read_tree(&snapshot.set, listing, None, |_| Ok(()))
                    .map(|()| format!("{} entries read and matched", listing.entries.len()))
                    .map_err(|e| crate::error_chain(&e)),
                Some(Err(_)) => Err("listing unreadable".to_string()),
                None => self.check_dumps(snapshot),
            };
            checks.push(Check::new(CheckName::Content, result));
        }
        SnapshotReport::new(snapshot, checks)
    }

    fn checksums(&self, snapshot: &Snapshot) -> Result<String, String> {
        let mut bytes = 0;
        for object in &snapshot.objects {
            bytes += self
                .repo
                .check_object(object)
                .map_err(|e| crate::error_chain(&e))?;
        }
        Ok(format!(
            "{} objects, {bytes} bytes hashed",
            snapshot.objects.len()
        ))
    }

    fn check_dumps(&self, snapshot: &Snapshot) -> Result<String, String> {
        let mut summaries = Vec::new();
        for object in snapshot
            .objects
            .iter()
            .filter(|o| o.role == ObjectRole::Dump)
        {
            let mut dump = self
                .repo
                .open_object(&object.key, Some(object))
                .map_err(|e| crate::error_chain(&e))?;
            let summary = strongbox_db_dump::verify_dump(snapshot.source, &mut dump)
                .map_err(|e| format!("{}: {}", object.key, crate::error_chain(&e)))?;
            summaries.push(summary);
        }
        Ok(summaries.join("; "))
    }
}
