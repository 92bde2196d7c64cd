//! Test fixtures shared by the engine's unit tests.

use strongbox_manifest::{
    FileStats, Snapshot, SnapshotId, SnapshotKind, SourceKind, Stats, FORMAT_VERSION,
};

/// A files snapshot record with no objects.
pub(crate) fn snapshot(set: &str, id: &str, kind: SnapshotKind) -> Snapshot {
    Snapshot {
        format_version: FORMAT_VERSION,
        id: SnapshotId::parse(id).unwrap(),
        set: set.into(),
        kind,
        source: SourceKind::Files,
        parent: None,
        time: chrono::Utc::now(),
        tags: vec![],
        host: "h".into(),
        tool_version: "0".into(),
        origin: "/".into(),
        compression: "zstd:3".into(),
        objects: vec![],
        stats: Stats::Files(FileStats::default()),
        duration_secs: 0.0,
        errors: vec![],
        warnings: vec![],
        members: Default::default(),
        restore_point: None,
    }
}
