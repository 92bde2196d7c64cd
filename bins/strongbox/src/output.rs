//! Human-readable output: tables, summaries and sizes. JSON output is serde's.

use serde::Serialize;
use strongbox_manifest::{FileType, Snapshot, Stats};

/// One row of `ls`, in the JSON shape scripts rely on.
#[derive(Serialize)]
pub struct LsRow<'a> {
    pub path: &'a str,
    #[serde(rename = "type")]
    pub kind: FileType,
    pub size: u64,
    pub mode: u32,
    pub mtime: i64,
    pub sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'a str>,
}

pub fn ls_table(rows: &[LsRow<'_>]) -> String {
    rows.iter()
        .map(|r| {
            let kind = match r.kind {
                FileType::Dir => 'd',
                FileType::Symlink => 'l',
                FileType::File => '-',
            };
            let time = chrono::DateTime::from_timestamp_nanos(r.mtime).format("%Y-%m-%d %H:%M:%S");
            let link = r.target.map(|t| format!(" -> {t}")).unwrap_or_default();
            format!(
                "{kind}{:04o} {:>12} {time} {}{link}",
                r.mode, r.size, r.path
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn snapshot_table(snapshots: &[Snapshot]) -> String {
    if snapshots.is_empty() {
        return "no snapshots".to_string();
    }
    let mut lines = vec![format!(
        "{:<24} {:<12} {:<12} {:<8} {:<20} {:>10} {:>10}  tags",
        "id", "set", "kind", "source", "time", "entries", "stored"
    )];
    for s in snapshots {
        let (entries, stored) = match &s.stats {
            Stats::Files(f) => (f.files + f.dirs + f.symlinks, f.bytes_stored),
            Stats::Database(d) => (d.tables.len() as u64, d.bytes_stored),
        };
        lines.push(format!(
            "{:<24} {:<12} {:<12} {:<8} {:<20} {:>10} {:>10}  {}",
            s.id,
            s.set,
            s.kind.as_str(),
            s.source.as_str(),
            s.time.format("%Y-%m-%d %H:%M:%S"),
            entries,
            human_bytes(stored),
            s.tags.join(",")
        ));
    }
    lines.join("\n")
}

pub fn summary(s: &Snapshot) -> String {
    let parent = s
        .parent
        .as_ref()
        .map(|p| format!(" of {p}"))
        .unwrap_or_default();
    match &s.stats {
        Stats::Files(f) => {
            let secs = s.duration_secs.max(0.001);
            format!(
                "snapshot {} ({}{parent}) of set {}: {} files, {} dirs, {} symlinks; {} new, {} changed, {} unchanged, {} deleted; read {}, stored {} in {:.1} s ({}/s)",
                s.id,
                s.kind.as_str(),
                s.set,
                f.files,
                f.dirs,
                f.symlinks,
                f.new,
                f.changed,
                f.unchanged,
                f.deleted,
                human_bytes(f.bytes_read),
                human_bytes(f.bytes_stored),
                s.duration_secs,
                human_bytes((f.bytes_read as f64 / secs) as u64)
            )
        }
        Stats::Database(d) => format!(
            "snapshot {} of set {}: {} tables, dumped {}, stored {} in {:.1} s",
            s.id,
            s.set,
            d.tables.len(),
            human_bytes(d.bytes_dumped),
            human_bytes(d.bytes_stored),
            s.duration_secs
        ),
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
