use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use strongbox_manifest::{FileEntry, FileType, Listing, Snapshot, SnapshotId};

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
    /// Plus a real restore into scratch space (a directory, an SQLite file, a scratch
    /// PostgreSQL database), checked against the record and with the database's own
    /// integrity checks, then removed.
    Restore,
}

impl fmt::Display for VerifyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerifyLevel::Quick => "quick",
            VerifyLevel::Checksum => "checksum",
            VerifyLevel::Deep => "deep",
            VerifyLevel::Restore => "restore",
        })
    }
}

impl FromStr for VerifyLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "quick" => Ok(VerifyLevel::Quick),
            "checksum" => Ok(VerifyLevel::Checksum),
            "deep" => Ok(VerifyLevel::Deep),
            "restore" => Ok(VerifyLevel::Restore),
            other => Err(format!(
                "unknown verify level {other:?} (quick, checksum, deep, restore)"
            )),
        }
    }
}

/// What a check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckName {
    /// The snapshot record reads, parses and is the record its key names.
    Record,
    /// Every object the record names is stored with its recorded size.
    Objects,
    /// The files listing reads, is a tree, and every archive it draws from exists.
    Listing,
    /// Every object's SHA-256 matches the record.
    Checksum,
    /// Every stream decompresses and parses; every file matches its digest.
    Content,
    /// A restore into scratch space matches the record: every file's digest and the
    /// counts, or every table's row count.
    Restore,
    /// The restored database's own integrity check (SQLite `integrity_check`, PostgreSQL
    /// `ANALYZE`).
    Integrity,
    /// No row of the restored database breaks a foreign key.
    #[serde(rename = "foreign-keys")]
    ForeignKeys,
    /// Every btree index of the restored database passes amcheck's `bt_index_check`.
    Indexes,
    /// An operator's query against the restored database (`verify_checks`).
    Query,
    /// Every member snapshot a bundle record names exists (the members are verified as
    /// snapshots of their own sets).
    Members,
    /// A bundle's reference query, re-run on the restored copy of its database, finds what
    /// the bundle recorded.
    References,
    /// A base backup's WAL is archived without a gap from its start segment to the newest.
    #[serde(rename = "wal-chain")]
    WalChain,
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckName::Record => "record",
            CheckName::Objects => "objects",
            CheckName::Listing => "listing",
            CheckName::Checksum => "checksum",
            CheckName::Content => "content",
            CheckName::Restore => "restore",
            CheckName::Integrity => "integrity",
            CheckName::ForeignKeys => "foreign-keys",
            CheckName::Indexes => "indexes",
            CheckName::WalChain => "wal-chain",
            CheckName::Query => "query",
            CheckName::Members => "members",
            CheckName::References => "references",
        })
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked.
    pub name: CheckName,
    /// Whether it passed.
    pub ok: bool,
    /// What was checked, or what is wrong.
    pub detail: String,
    /// Wall-clock seconds the check took.
    #[serde(default)]
    pub duration_secs: f64,
}

impl Check {
    /// A check that passed with `Ok(detail)` or failed with `Err(detail)`.
    pub fn new(name: CheckName, result: Result<String, String>) -> Self {
        let (ok, detail) = match result {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        Check {
            name,
            ok,
            detail,
            duration_secs: 0.0,
        }
    }

    /// Run `check`, timing it.
    pub fn timed(name: CheckName, check: impl FnOnce() -> Result<String, String>) -> Self {
        let started = std::time::Instant::now();
        let mut check = Check::new(name, check());
        check.duration_secs = started.elapsed().as_secs_f64();
        check
    }
}

/// The checks of one snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotReport {
    /// Snapshot id.
    pub id: String,
    /// Its set.
    pub set: String,
    /// All checks passed.
    pub ok: bool,
    /// Every check run.
    pub checks: Vec<Check>,
    /// Seconds the restore of a restore test took (what a real restore would take).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_secs: Option<f64>,
}

impl SnapshotReport {
    /// The report of `snapshot`: ok when every check is.
    pub fn new(snapshot: &Snapshot, checks: Vec<Check>) -> Self {
        SnapshotReport {
            id: snapshot.id.to_string(),
            set: snapshot.set.clone(),
            ok: checks.iter().all(|c| c.ok),
            checks,
            restore_secs: None,
        }
    }

    /// The report of snapshot `id` of `set`, whose record cannot be read (`detail` says
    /// why): failed, with nothing else checked.
    pub fn unreadable(set: &str, id: &str, detail: String) -> Self {
        SnapshotReport {
            id: id.to_string(),
            set: set.to_string(),
            ok: false,
            checks: vec![Check::new(CheckName::Record, Err(detail))],
            restore_secs: None,
        }
    }
}

/// A verification run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Every snapshot passed.
    pub ok: bool,
    /// The level run.
    pub level: VerifyLevel,
    /// Per snapshot.
    pub snapshots: Vec<SnapshotReport>,
    /// A verification on a budget: the objects it read, least recently verified first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects_read: Option<Vec<String>>,
    /// A verification on a budget: the stored bytes of those objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_read: Option<u64>,
}

impl Report {
    /// Assemble a report; `ok` when every snapshot is.
    pub fn new(level: VerifyLevel, snapshots: Vec<SnapshotReport>) -> Self {
        Report {
            ok: snapshots.iter().all(|s| s.ok),
            level,
            snapshots,
            objects_read: None,
            bytes_read: None,
        }
    }
}

/// A size as operators write it: `500MiB`, `2GB`, `1.5G`, `4096` (bytes). Binary units
/// (KiB, MiB, GiB, TiB, and K, M, G, T) count in 1024s, decimal ones (kB, MB, GB, TB) in
/// 1000s.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (like 500MiB, 2GB or 4096)"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?} (KiB, MiB, GiB, TiB, kB, MB, GB, TB)"
            ))
        }
    };
    Ok((number * factor as f64).round() as u64)
}

/// Every object `snapshot` names is among `sizes` (key to stored size) with its recorded
/// size.
pub fn objects_present(snapshot: &Snapshot, sizes: &HashMap<String, u64>) -> Check {
    let mut total = 0;
    for object in &snapshot.objects {
        let problem = match sizes.get(&object.key) {
            None => format!("{} is missing", object.key),
            Some(&size) if size != object.size => format!(
                "{} has {size} bytes, the record says {}",
                object.key, object.size
            ),
            Some(&size) => {
                total += size;
                continue;
            }
        };
        return Check::new(CheckName::Objects, Err(problem));
    }
    Check::new(
        CheckName::Objects,
        Ok(format!("{} objects, {total} bytes", snapshot.objects.len())),
    )
}

/// The listing is a tree a restore may write: safe relative names, each parent a directory
/// listed before it, no duplicates, a holder for every entry and a digest for every file.
/// A hostile listing cannot then route a write through a symlink or out of the target.
pub fn check_tree(listing: &Listing) -> Result<(), Error> {
    let mut tree = TreeCheck::new(&listing.snapshot);
    listing
        .entries
        .iter()
        .try_for_each(|entry| tree.push(entry))
}

/// [`check_tree`] one entry at a time, for a listing read as a stream: memory holds the
/// directories and holders seen, not the tree. Entries must come in listing order (bytewise
/// by path, as docs/format.md has it), which also rules out duplicates.
#[derive(Debug)]
pub struct TreeCheck {
    snapshot: String,
    previous: Option<String>,
    dirs: HashSet<String>,
    holders: BTreeSet<SnapshotId>,
    entries: u64,
}

impl TreeCheck {
    /// Start checking the listing of `snapshot`.
    pub fn new(snapshot: &SnapshotId) -> Self {
        TreeCheck {
            snapshot: snapshot.to_string(),
            previous: None,
            dirs: HashSet::new(),
            holders: BTreeSet::new(),
            entries: 0,
        }
    }

    /// Check the next entry.
    pub fn push(&mut self, entry: &FileEntry) -> Result<(), Error> {
        let path = entry.path.as_str();
        let refuse = |reason: &str| {
            Err(Error::Tree {
                snapshot: self.snapshot.clone(),
                path: path.to_string(),
                reason: reason.to_string(),
            })
        };
        if let Err(e) = strongbox_archive::safe_relative_path(path) {
            return refuse(&e.to_string());
        }
        match self.previous.as_deref().map(|p| p.cmp(path)) {
            Some(Ordering::Equal) => return refuse("listed twice"),
            Some(Ordering::Greater) => return refuse("listed out of order"),
            _ => {}
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !self.dirs.contains(parent) {
                return refuse("its parent is not a directory listed before it");
            }
        }
        let Some(holder) = &entry.holder else {
            return refuse("no holder snapshot");
        };
        if entry.kind == FileType::File && entry.sha256.is_none() {
            return refuse("regular file without SHA-256");
        }
        if entry.kind == FileType::Dir {
            self.dirs.insert(path.to_string());
        }
        if !self.holders.contains(holder) {
            self.holders.insert(holder.clone());
        }
        let previous = self.previous.get_or_insert_with(String::new);
        previous.clear();
        previous.push_str(path);
        self.entries += 1;
        Ok(())
    }

    /// How many entries were pushed.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The snapshots whose archives the entries so far draw from.
    pub fn holders(&self) -> &BTreeSet<SnapshotId> {
        &self.holders
    }

    /// The listing check of a tree pushed whole: every archive it draws from is among
    /// `archives` (holder snapshot ids that have an archive object).
    pub fn check(&self, archives: &HashSet<SnapshotId>) -> Check {
        let result = match self.holders.iter().find(|h| !archives.contains(*h)) {
            Some(missing) => Err(format!(
                "draws from the archive of snapshot {missing}, which is missing"
            )),
            None => Ok(format!(
                "{} entries from {} archive(s)",
                self.entries,
                self.holders.len()
            )),
        };
        Check::new(CheckName::Listing, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use strongbox_manifest::{
        FileEntry, FileStats, ObjectRef, ObjectRole, SnapshotKind, SourceKind, Stats,
        FORMAT_VERSION,
    };

    const HOLDER: &str = "20250101T000000Z-000001";

    fn snapshot(objects: &[(&str, u64)]) -> Snapshot {
        Snapshot {
            format_version: FORMAT_VERSION,
            id: SnapshotId::parse(HOLDER).unwrap(),
            set: "media".into(),
            kind: SnapshotKind::Full,
            source: SourceKind::Files,
            parent: None,
            time: chrono::DateTime::UNIX_EPOCH,
            tags: vec![],
            host: "h".into(),
            tool_version: "0".into(),
            origin: "/".into(),
            compression: "zstd:3".into(),
            objects: objects
                .iter()
                .map(|(key, size)| ObjectRef {
                    key: key.to_string(),
                    size: *size,
                    sha256: "00".into(),
                    role: ObjectRole::Archive,
                })
                .collect(),
            stats: Stats::Files(FileStats::default()),
            duration_secs: 0.0,
            errors: vec![],
            warnings: vec![],
            members: Default::default(),
            restore_point: None,
        }
    }

    #[rstest]
    #[case::all_there(&[("a", 3), ("b", 4)], true, "2 objects, 7 bytes")]
    #[case::missing(&[("a", 3), ("c", 4)], false, "c is missing")]
    #[case::wrong_size(&[("a", 5)], false, "a has 3 bytes, the record says 5")]
    #[case::none(&[], true, "0 objects, 0 bytes")]
    fn objects_must_be_stored_with_their_sizes(
        #[case] objects: &[(&str, u64)],
        #[case] ok: bool,
        #[case] detail: &str,
    ) {
        let sizes: HashMap<String, u64> = [("a".to_string(), 3), ("b".to_string(), 4)].into();
        let check = objects_present(&snapshot(objects), &sizes);
        assert_eq!((check.ok, check.detail.as_str()), (ok, detail));
        assert_eq!(check.name, CheckName::Objects);
    }

    fn entry(path: &str, kind: FileType) -> FileEntry {
        FileEntry {
            path: path.into(),
            kind,
            size: 0,
            mode: 0o644,
            uid: None,
            gid: None,
            mtime: 0,
            sha256: (kind == FileType::File).then(|| "ab".into()),
            target: None,
            holder: Some(SnapshotId::parse(HOLDER).unwrap()),
            offset: None,
            ctime: 0,
            inode: 0,
        }
    }

    fn listing(entries: Vec<FileEntry>) -> Listing {
        Listing::new(SnapshotId::parse(HOLDER).unwrap(), entries)
    }

    #[rstest]
    #[case::tree(vec![entry("a", FileType::Dir), entry("a/b", FileType::File)], None)]
    #[case::escape(vec![entry("../x", FileType::File)], Some("parent directory"))]
    #[case::absolute(vec![entry("/etc/x", FileType::File)], Some("absolute"))]
    #[case::bytewise(vec![entry("a", FileType::Dir), entry("a-c", FileType::File), entry("a/b", FileType::File)], None)]
    #[case::twice(vec![entry("a", FileType::File), entry("a", FileType::File)], Some("listed twice"))]
    #[case::out_of_order(vec![entry("b", FileType::File), entry("a", FileType::File)], Some("listed out of order"))]
    #[case::twice_apart(vec![entry("a", FileType::Dir), entry("a/b", FileType::File), entry("a", FileType::Dir)], Some("listed out of order"))]
    #[case::orphan(vec![entry("a/b", FileType::File)], Some("parent is not a directory"))]
    #[case::through_a_file(vec![entry("a", FileType::File), entry("a/b", FileType::File)], Some("parent is not a directory"))]
    #[case::through_a_link(vec![entry("a", FileType::Symlink), entry("a/b", FileType::File)], Some("parent is not a directory"))]
    #[case::no_digest(vec![FileEntry { sha256: None, ..entry("a", FileType::File) }], Some("without SHA-256"))]
    #[case::no_holder(vec![FileEntry { holder: None, ..entry("a", FileType::Dir) }], Some("no holder"))]
    fn a_listing_must_be_a_safe_tree(
        #[case] entries: Vec<FileEntry>,
        #[case] refused: Option<&str>,
    ) {
        match (check_tree(&listing(entries)), refused) {
            (Ok(()), None) => {}
            (Err(e), Some(reason)) => assert!(e.to_string().contains(reason), "{e}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn a_listing_drawing_from_a_missing_archive_fails() {
        let holder = SnapshotId::parse(HOLDER).unwrap();
        let mut tree = TreeCheck::new(&holder);
        tree.push(&entry("a", FileType::File)).unwrap();
        let present = tree.check(&HashSet::from([holder.clone()]));
        assert!(present.ok, "{}", present.detail);
        assert_eq!(present.detail, "1 entries from 1 archive(s)");
        let missing = tree.check(&HashSet::new());
        assert!(!missing.ok);
        assert!(missing.detail.contains(HOLDER), "{}", missing.detail);
    }

    #[test]
    fn a_report_is_ok_only_when_every_check_is() {
        let passed = Check::new(CheckName::Objects, Ok("fine".into()));
        let failed = Check::new(CheckName::Checksum, Err("bad".into()));
        let good = SnapshotReport::new(&snapshot(&[]), vec![passed.clone()]);
        let bad = SnapshotReport::new(&snapshot(&[]), vec![passed, failed]);
        assert!(good.ok && !bad.ok);
        assert!(Report::new(VerifyLevel::Deep, vec![good.clone()]).ok);
        let report = Report::new(VerifyLevel::Deep, vec![good, bad]);
        assert!(!report.ok);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["snapshots"][1]["checks"][1]["name"], "checksum");
        assert_eq!(json["level"], "deep");
    }

    #[rstest]
    #[case("4096", Ok(4096))]
    #[case("500MiB", Ok(500 << 20))]
    #[case("2GB", Ok(2_000_000_000))]
    #[case("1.5G", Ok(3 << 29))]
    #[case("10 kB", Ok(10_000))]
    #[case("12 parsecs", Err("unknown size unit"))]
    #[case("lots", Err("is not a size"))]
    fn sizes_parse_in_binary_and_decimal_units(
        #[case] text: &str,
        #[case] want: Result<u64, &str>,
    ) {
        match (parse_size(text), want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
            (Err(e), Err(phrase)) => assert!(e.contains(phrase), "{text}: {e}"),
            (got, want) => panic!("{text}: {got:?} vs {want:?}"),
        }
    }

    #[rstest]
    #[case("quick", Ok(VerifyLevel::Quick))]
    #[case("checksum", Ok(VerifyLevel::Checksum))]
    #[case("deep", Ok(VerifyLevel::Deep))]
    #[case("restore", Ok(VerifyLevel::Restore))]
    #[case("Deep", Err(()))]
    fn levels_parse_and_order(#[case] text: &str, #[case] level: Result<VerifyLevel, ()>) {
        assert_eq!(text.parse::<VerifyLevel>().map_err(drop), level);
        assert!(VerifyLevel::Quick < VerifyLevel::Checksum);
        assert!(VerifyLevel::Checksum < VerifyLevel::Deep);
        assert!(VerifyLevel::Deep < VerifyLevel::Restore);
        if let Ok(level) = level {
            assert_eq!(level.to_string(), text);
        }
    }
}
