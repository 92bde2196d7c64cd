use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::Error;

/// A snapshot id: UTC time `YYYYMMDDTHHMMSSZ`, a dash and six hex digits — three for the
/// millisecond, three random. Ids sort by time, to the millisecond, and the random part
/// keeps two snapshots of the same millisecond apart.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SnapshotId(String);

const TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

impl SnapshotId {
    /// A new id for a snapshot taken at `time`.
    pub fn generate(time: DateTime<Utc>) -> Self {
        let millis = time.timestamp_subsec_millis().min(999);
        let random: u32 = rand::rng().random_range(0..0x1000);
        SnapshotId(format!(
            "{}-{millis:03x}{random:03x}",
            time.format(TIME_FORMAT)
        ))
    }

    /// Parse and check an id.
    pub fn parse(id: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidId { id: id.to_string() };
        let (time, suffix) = id.split_once('-').ok_or_else(invalid)?;
        NaiveDateTime::parse_from_str(time, TIME_FORMAT).map_err(|_| invalid())?;
        if suffix.len() != 6 || !suffix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        Ok(SnapshotId(id.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn generated_ids_parse_and_sort_by_time() {
        let early = SnapshotId::generate(Utc.with_ymd_and_hms(2025, 12, 27, 2, 0, 0).unwrap());
        let late = SnapshotId::generate(Utc.with_ymd_and_hms(2025, 12, 28, 1, 0, 0).unwrap());
        assert!(early.as_str().starts_with("20251227T020000Z-000"));
        let base = Utc.with_ymd_and_hms(2025, 12, 27, 2, 0, 0).unwrap();
        for ms in [1, 999] {
            let later = SnapshotId::generate(base + chrono::Duration::milliseconds(ms));
            assert!(early < later, "{early} < {later}");
        }
        assert_eq!(SnapshotId::parse(early.as_str()).unwrap(), early);
        assert!(early < late);
    }

    #[test]
    fn rejects_foreign_ids() {
        for bad in [
            "",
            "latest",
            "20251227T020000Z",
            "20251227T020000Z-xyz123",
            "../x-000000",
        ] {
            assert!(SnapshotId::parse(bad).is_err(), "{bad}");
        }
    }
}
