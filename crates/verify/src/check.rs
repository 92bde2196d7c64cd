use std::collections::HashMap;
use std::io::Read;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use strongbox_manifest::{Listing, ObjectRole, Snapshot, SnapshotId, SourceKind};
use strongbox_storage::{layout, RepoReader};

use crate::tree::{check_listing, read_tree};
use crate::Error;

/// How thoroughly to check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum VerifyLevel {
    /// Records and objects present with the right sizes.
    #[default]
    Quick,
    /// Plus the SHA-256 of every object.
    Checksum,
    /// Plus decompress and parse everything, every file's digest against the listing.
    Deep,
}

impl FromStr for VerifyLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "quick" => Ok(VerifyLevel::Quick),
            "checksum" => Ok(VerifyLevel::Checksum),
            "deep" => Ok(VerifyLevel::Deep),
            other => Err(format!(
                "unknown verify level {other:?} (quick, checksum, deep)"
            )),
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Short name: `objects`, `listing`, `checksum`, `content`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was checked, or what is wrong.
    pub detail: String,
}

/// The checks of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotReport {
    /// Snapshot id.
    pub id: String,
    /// Its set.
    pub set: String,
    /// All checks passed.
    pub ok: bool,
    /// Every check run.
    pub checks: Vec<Check>,
}

/// A verification run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Every snapshot passed.
    pub ok: bool,
    /// The level run.
    pub level: VerifyLevel,
    /// Per snapshot.
    pub snapshots: Vec<SnapshotReport>,
}

impl Report {
    /// Assemble a report; `ok` when every snapshot is.
    pub fn new(level: VerifyLevel, snapshots: Vec<SnapshotReport>) -> Self {
        Report {
            ok: snapshots.iter().all(|s| s.ok),
            level,
            snapshots,
        }
    }
}

fn check(name: &str, result: Result<String, String>) -> Check {
    match result {
        Ok(detail) => Check {
            name: name.to_string(),
            ok: true,
            detail,
        },
        Err(detail) => Check {
            name: name.to_string(),
            ok: false,
            detail,
        },
    }
}

/// Check one snapshot at `level`. `sizes` maps every data object key of the snapshot's set
/// to its size (one listing serves all the set's snapshots, and finds the archives a files
/// listing draws from).
pub fn verify_snapshot(
    repo: &RepoReader,
    snapshot: &Snapshot,
    sizes: &HashMap<String, u64>,
    level: VerifyLevel,
) -> SnapshotReport {
    let archives: HashMap<SnapshotId, String> = sizes
        .keys()
        .filter_map(|key| {
            let id = SnapshotId::parse(layout::archive_id(key)?).ok()?;
            Some((id, key.clone()))
        })
        .collect();
    let mut checks = vec![check("objects", objects_present(snapshot, sizes))];
    let listing = if snapshot.source == SourceKind::Files {
        let listing = load_listing(repo, snapshot);
        let result = listing
            .as_ref()
            .map_err(|e| e.to_string())
            .and_then(|l| holders_present(l, &archives));
        checks.push(check("listing", result));
        listing.ok()
    } else {
        None
    };
    if level >= VerifyLevel::Checksum {
        checks.push(check("checksum", checksums(repo, snapshot)));
    }
    if level >= VerifyLevel::Deep {
        let result = match (&listing, snapshot.source) {
            (Some(listing), _) => read_tree(repo, listing, &archives, None, |_| Ok(()))
                .map(|()| format!("{} entries read and matched", listing.entries.len()))
                .map_err(|e| e.to_string()),
            (None, SourceKind::Files) => Err("listing unreadable".to_string()),
            (None, _) => check_dumps(repo, snapshot),
        };
        checks.push(check("content", result));
    }
    SnapshotReport {
        id: snapshot.id.to_string(),
        set: snapshot.set.clone(),
        ok: checks.iter().all(|c| c.ok),
        checks,
    }
}

fn objects_present(snapshot: &Snapshot, sizes: &HashMap<String, u64>) -> Result<String, String> {
    let mut total = 0;
    for object in &snapshot.objects {
        match sizes.get(&object.key) {
            None => return Err(format!("{} is missing", object.key)),
            Some(&size) if size != object.size => {
                return Err(format!(
                    "{} has {size} bytes, the record says {}",
                    object.key, object.size
                ))
            }
            Some(&size) => total += size,
        }
    }
    Ok(format!("{} objects, {total} bytes", snapshot.objects.len()))
}

/// Read and decode a files snapshot's listing.
pub(crate) fn load_listing(repo: &RepoReader, snapshot: &Snapshot) -> Result<Listing, Error> {
    let object = snapshot
        .object(ObjectRole::Listing)
        .ok_or_else(|| Error::Mismatch {
            path: snapshot.id.to_string(),
            reason: "files snapshot without a listing object".to_string(),
        })?;
    let bytes = repo.get(&object.key)?;
    Ok(Listing::decode(&object.key, &bytes)?)
}

fn holders_present(
    listing: &Listing,
    archives: &HashMap<SnapshotId, String>,
) -> Result<String, String> {
    check_listing(listing).map_err(|e| e.to_string())?;
    let holders = listing.by_holder();
    if let Some(missing) = holders.keys().find(|h| !archives.contains_key(**h)) {
        return Err(format!(
            "draws from the archive of snapshot {missing}, which is missing"
        ));
    }
    Ok(format!(
        "{} entries from {} archive(s)",
        listing.entries.len(),
        holders.len()
    ))
}

fn checksums(repo: &RepoReader, snapshot: &Snapshot) -> Result<String, String> {
    let mut bytes = 0;
    for object in &snapshot.objects {
        let (size, digest) = hash_object(repo, &object.key).map_err(|e| e.to_string())?;
        if digest != object.sha256 {
            return Err(format!(
                "{}: SHA-256 {digest} does not match the record's {}",
                object.key, object.sha256
            ));
        }
        bytes += size;
    }
    Ok(format!(
        "{} objects, {bytes} bytes hashed",
        snapshot.objects.len()
    ))
}

fn hash_object(repo: &RepoReader, key: &str) -> Result<(u64, String), Error> {
    let mut reader = repo.reader(key)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|source| Error::EntryData {
            key: key.to_string(),
            path: String::new(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

fn check_dumps(repo: &RepoReader, snapshot: &Snapshot) -> Result<String, String> {
    let mut summaries = Vec::new();
    for object in snapshot
        .objects
        .iter()
        .filter(|o| o.role == ObjectRole::Dump)
    {
        let reader = repo.reader(&object.key).map_err(|e| e.to_string())?;
        let mut decoder =
            strongbox_archive::Decoder::new(reader).map_err(|e| format!("{}: {e}", object.key))?;
        let summary = strongbox_db_dump::verify_dump(snapshot.source, &mut decoder)
            .map_err(|e| format!("{}: {e}", object.key))?;
        summaries.push(summary);
    }
    Ok(summaries.join("; "))
}
