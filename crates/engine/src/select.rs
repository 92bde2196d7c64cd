use strongbox_manifest::{FileEntry, Includes, Snapshot, SnapshotId};
use strongbox_storage::{DamagedRecord, Records};

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

/// The id `spec` names among `ids`: a full id or a unique prefix of one; `None` if none.
pub(crate) fn select_id<'a>(ids: &[&'a str], spec: &str) -> Result<Option<&'a str>, Error> {
    if spec.is_empty() {
        return Ok(None);
    }
    if let Some(exact) = ids.iter().find(|id| **id == spec) {
        return Ok(Some(exact));
    }
    let matches: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| id.starts_with(spec))
        .collect();
    match matches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(Error::AmbiguousSnapshot {
            spec: spec.to_string(),
            candidates: many.join(", "),
        }),
    }
}

/// The snapshot `<set>:latest` (`spec`) names among the set's `records`: the newest, which
/// must read. A damaged record newer than every readable one fails the pick, rather than
/// yield older data under the name of the latest. `None` if the set has no record.
pub(crate) fn latest(records: Records) -> Result<Option<Snapshot>, Error> {
    let newest = records.snapshots.into_iter().next_back();
    no_damage_after(records.damaged, newest.as_ref().map(|s| &s.id))?;
    Ok(newest)
}

/// Fail with the newest of `damaged` that is newer than `chosen` (or with any, when nothing
/// was chosen): that record may have been the one to take.
pub(crate) fn no_damage_after(
    damaged: Vec<DamagedRecord>,
    chosen: Option<&SnapshotId>,
) -> Result<(), Error> {
    match damaged
        .into_iter()
        .filter(|d| chosen.is_none_or(|id| d.id.as_str() > id.as_str()))
        .max_by(|a, b| a.id.cmp(&b.id))
    {
        Some(newer) => Err(newer.error.into()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strongbox_manifest::SnapshotKind;

    #[test]
    fn selects_by_id_and_unique_prefix() {
        let ids = [
            "20250101T000000Z-aaaaaa",
            "20250102T000000Z-bbbbbb",
            "20250102T000000Z-cccccc",
        ];
        let cases: [(&str, Result<Option<&str>, &str>); 6] = [
            (
                "20250101T000000Z-aaaaaa",
                Ok(Some("20250101T000000Z-aaaaaa")),
            ),
            ("20250101", Ok(Some("20250101T000000Z-aaaaaa"))),
            ("20250102T000000Z-c", Ok(Some("20250102T000000Z-cccccc"))),
            ("2025010", Err("ambiguous")),
            ("3000", Ok(None)),
            ("", Ok(None)),
        ];
        for (spec, expected) in cases {
            match (select_id(&ids, spec), expected) {
                (Ok(id), Ok(want)) => assert_eq!(id, want, "{spec}"),
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{spec}: {e}"),
                (got, want) => panic!("{spec}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn latest_is_the_newest_record_of_the_set() {
        let snapshots = ["20250101T000000Z-aaaaaa", "20250102T000000Z-cccccc"]
            .map(|id| crate::fixtures::snapshot("media", id, SnapshotKind::Full))
            .to_vec();
        let records = Records {
            snapshots,
            damaged: Vec::new(),
        };
        let newest = latest(records).unwrap().unwrap();
        assert_eq!(newest.id.as_str(), "20250102T000000Z-cccccc");
        assert!(latest(Records::default()).unwrap().is_none());
    }
}
