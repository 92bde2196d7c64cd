use strongbox_manifest::{FileEntry, Includes, Snapshot};

use crate::Error;

/// The entries of `snapshot` that `includes` select, in listing order (with the
/// directories above them). A selection of nothing is refused: restored over a target with
/// `--force`, it would empty the target for a mistyped pattern.
pub(crate) fn included<E>(
    snapshot: &Snapshot,
    includes: &[String],
    entries: impl IntoIterator<Item = Result<FileEntry, E>>,
) -> Result<Vec<FileEntry>, Error>
where
    Error: From<E>,
{
    let selected = Includes::new(includes)?.select(entries)?;
    if selected.is_empty() {
        return Err(Error::NothingIncluded {
            snapshot: snapshot.id.to_string(),
            patterns: includes.to_vec(),
        });
    }
    Ok(selected)
}

/// Pick the snapshot `spec` names among `snapshots` (sorted oldest first): a full id, a
/// unique id prefix, or `<set>:latest`.
pub fn select<'a>(snapshots: &'a [Snapshot], spec: &str) -> Result<&'a Snapshot, Error> {
    let not_found = || Error::SnapshotNotFound {
        spec: spec.to_string(),
    };
    if let Some(set) = spec.strip_suffix(":latest") {
        return snapshots
            .iter()
            .rev()
            .find(|s| s.set == set)
            .ok_or_else(not_found);
    }
    if spec.is_empty() {
        return Err(not_found());
    }
    if let Some(exact) = snapshots.iter().find(|s| s.id.as_str() == spec) {
        return Ok(exact);
    }
    let matches: Vec<&Snapshot> = snapshots
        .iter()
        .filter(|s| s.id.as_str().starts_with(spec))
        .collect();
    match matches.as_slice() {
        [] => Err(not_found()),
        [one] => Ok(one),
        many => Err(Error::AmbiguousSnapshot {
            spec: spec.to_string(),
            candidates: many
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strongbox_manifest::SnapshotKind;

    fn snap(set: &str, id: &str) -> Snapshot {
        crate::fixtures::snapshot(set, id, SnapshotKind::Full)
    }

    #[test]
    fn selects_by_id_prefix_and_latest() {
        let all = [
            snap("media", "20250101T000000Z-aaaaaa"),
            snap("db", "20250102T000000Z-bbbbbb"),
            snap("media", "20250102T000000Z-cccccc"),
        ];
        let cases: [(&str, Result<&str, &str>); 8] = [
            ("20250101T000000Z-aaaaaa", Ok("20250101T000000Z-aaaaaa")),
            ("20250101", Ok("20250101T000000Z-aaaaaa")),
            ("20250102T000000Z-c", Ok("20250102T000000Z-cccccc")),
            ("media:latest", Ok("20250102T000000Z-cccccc")),
            ("db:latest", Ok("20250102T000000Z-bbbbbb")),
            ("2025010", Err("ambiguous")),
            ("nope:latest", Err("no snapshot")),
            ("3000", Err("no snapshot")),
        ];
        for (spec, expected) in cases {
            match (select(&all, spec), expected) {
                (Ok(s), Ok(id)) => assert_eq!(s.id.as_str(), id, "{spec}"),
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{spec}: {e}"),
                (got, want) => panic!("{spec}: got {:?}, want {want:?}", got.map(|s| &s.id)),
            }
        }
    }
}
