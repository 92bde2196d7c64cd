//! Object keys of repository format version 1 (see docs/format.md).

use strongbox_manifest::SnapshotId;

use crate::Error;

/// The repository marker.
pub const MARKER: &str = "strongbox.json";

/// Check a set name: `[A-Za-z0-9._-]+`, not starting with `.`, at most 100 bytes.
pub fn check_set_name(name: &str) -> Result<&str, Error> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(name)
    } else {
        Err(Error::InvalidSetName {
            name: name.to_string(),
        })
    }
}

/// `sets/` — every set lives below it.
pub const SETS: &str = "sets";

/// The prefix of the key files of an encrypted repository, plain age files each holding
/// the repository identity for one reader.
pub const KEYS: &str = "keys/";

/// A key file.
pub fn key_file(id: &str) -> String {
    format!("{KEYS}{id}.age")
}

/// `sets/<set>/snapshots` — the prefix holding a set's records.
pub fn snapshots_prefix(set: &str) -> String {
    format!("{SETS}/{set}/snapshots")
}

/// `sets/<set>/snapshots/<id>.json`.
pub fn snapshot_key(set: &str, id: &SnapshotId) -> String {
    format!("{SETS}/{set}/snapshots/{id}.json")
}

/// `sets/<set>/data` — the prefix holding a set's data objects.
pub fn data_prefix(set: &str) -> String {
    format!("{SETS}/{set}/data")
}

/// `sets/<set>/data/<id>.<ext>`.
pub fn data_key(set: &str, id: &SnapshotId, ext: &str) -> String {
    format!("{SETS}/{set}/data/{id}.{ext}")
}

/// `sets/<set>/wal/` — a set's WAL archive, one directory per timeline.
pub fn wal_prefix(set: &str) -> String {
    format!("{SETS}/{set}/wal/")
}

/// `sets/<set>/wal/<timeline>/<name>`: an archived WAL file (segment, `.partial`,
/// `.backup` or `.history`), named as PostgreSQL names it.
pub fn wal_key(set: &str, timeline: u32, name: &str) -> String {
    format!("{SETS}/{set}/wal/{timeline:08X}/{name}")
}

/// `sets/<set>/retained.json`: the size and SHA-256 of each archive kept after its
/// snapshot was forgotten (kept listings draw from it), so that verify can still check it.
pub fn retained_key(set: &str) -> String {
    format!("{SETS}/{set}/retained.json")
}

/// `sets/<set>/runs/`, the set's run journal.
pub fn runs_prefix(set: &str) -> String {
    format!("{SETS}/{set}/runs/")
}

/// `sets/<set>/runs/<name>.json`.
pub fn run_key(set: &str, name: &str) -> String {
    format!("{SETS}/{set}/runs/{name}.json")
}

/// The last health status each alert reported, per set, so `health` alerts on a change and
/// reminds daily instead of on every run.
pub const ALERT_STATE: &str = "alerts/health.json";

/// `locks/<set>.json`.
pub fn lock_key(set: &str) -> String {
    format!("locks/{set}.json")
}

/// `<lock>.takeover-<pid>-<ns>`: the claim of whoever removes the stale lock (or stale
/// claim) at `lock` that `pid` took at `time_ns` (nanoseconds): one name per stale lock,
/// created only once, so that one process alone removes it.
pub fn takeover_key(lock: &str, pid: u32, time_ns: i64) -> String {
    format!("{lock}.takeover-{pid}-{time_ns}")
}

/// The set and id of a snapshot record key, if `key` is one.
pub fn parse_snapshot_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("sets/")?;
    let (set, rest) = rest.split_once('/')?;
    let id = rest.strip_prefix("snapshots/")?.strip_suffix(".json")?;
    (!id.contains('/')).then_some((set, id))
}

/// The set, snapshot id and extension of a data object key (`sets/<set>/data/<id>.<ext>`).
pub fn parse_data_key(key: &str) -> Option<(&str, &str, &str)> {
    let rest = key.strip_prefix("sets/")?;
    let (set, rest) = rest.split_once('/')?;
    let name = rest.strip_prefix("data/")?;
    let (id, ext) = name.split_once('.')?;
    (!name.contains('/')).then_some((set, id, ext))
}

/// The id of the snapshot whose archive (`<id>.tar`, `.tar.zst`, `.tar.gz`) `key` is.
pub fn archive_id(key: &str) -> Option<&str> {
    let (_, id, ext) = parse_data_key(key)?;
    matches!(ext, "tar" | "tar.zst" | "tar.gz").then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_names() {
        for good in ["media", "main-db", "a.b_c", "X1"] {
            assert!(check_set_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "..", "with space", "ü"] {
            assert!(check_set_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn snapshot_keys_round_trip() {
        let id = SnapshotId::parse("20250101T000000Z-abcdef").unwrap();
        let key = snapshot_key("media", &id);
        assert_eq!(parse_snapshot_key(&key), Some(("media", id.as_str())));
        assert_eq!(parse_snapshot_key("sets/media/data/x.json"), None);
    }

    #[test]
    fn data_keys() {
        let id = SnapshotId::parse("20250101T000000Z-abcdef").unwrap();
        for (ext, archive) in [
            ("tar.zst", true),
            ("tar.gz", true),
            ("tar", true),
            ("files.json.zst", false),
            ("pgdump.zst", false),
        ] {
            let key = data_key("media", &id, ext);
            assert_eq!(parse_data_key(&key), Some(("media", id.as_str(), ext)));
            assert_eq!(archive_id(&key).is_some(), archive, "{key}");
        }
        assert_eq!(parse_data_key("sets/media/snapshots/x.json"), None);
    }
}
