//! PostgreSQL WAL names and positions: which file of the archive a name is, where a log
//! sequence number falls, and whether a run of segments is continuous.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// A log sequence number, `X/Y` in PostgreSQL's notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::InvalidWalName {
            name: s.to_string(),
            reason: "an LSN is two hexadecimal numbers, X/Y (as 0/3000060)",
        };
        let (high, low) = s.split_once('/').ok_or_else(bad)?;
        let high = u32::from_str_radix(high, 16).map_err(|_| bad())?;
        let low = u32::from_str_radix(low, 16).map_err(|_| bad())?;
        Ok(Lsn((u64::from(high) << 32) | u64::from(low)))
    }
}

impl Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The size of a WAL segment when a record does not say (PostgreSQL's default).
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// A segment: its timeline and number (which LSNs it holds depends on the segment size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    /// The timeline.
    pub timeline: u32,
    /// `LSN / segment size`.
    pub number: u64,
}

impl Segment {
    /// The segment holding `lsn` on `timeline`.
    pub fn of(timeline: u32, lsn: Lsn, segment_size: u64) -> Segment {
        Segment {
            timeline,
            number: lsn.0 / segment_size,
        }
    }

    /// The segment after this one.
    pub fn next(self) -> Segment {
        Segment {
            number: self.number + 1,
            ..self
        }
    }

    /// The file name, `TTTTTTTTXXXXXXXXYYYYYYYY`.
    pub fn name(self, segment_size: u64) -> String {
        let per_id = 0x1_0000_0000 / segment_size;
        format!(
            "{:08X}{:08X}{:08X}",
            self.timeline,
            self.number / per_id,
            self.number % per_id
        )
    }

    /// The first LSN after this segment.
    pub fn end(self, segment_size: u64) -> Lsn {
        Lsn((self.number + 1) * segment_size)
    }
}

/// What a file of the WAL archive is, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalFile {
    /// A segment (`000000010000000000000003`).
    Segment(Segment),
    /// The last, partial segment of a timeline a promotion ended (`….partial`).
    Partial(Segment),
    /// A backup history file (`000000010000000000000003.00000028.backup`).
    Backup(Segment),
    /// A timeline history file (`00000002.history`).
    History(u32),
}

impl WalFile {
    /// Parse an archive file name as PostgreSQL gives it to `archive_command` (`%f`);
    /// anything else (a path, another file) is refused, so a name never leaves the archive.
    pub fn parse(name: &str, segment_size: u64) -> Result<WalFile, Error> {
        let bad = |reason| Error::InvalidWalName {
            name: name.to_string(),
            reason,
        };
        let hex = |s: &str| {
            s.len() == 8
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        };
        let segment = |s: &str| -> Result<Segment, Error> {
            if s.len() != 24
                || !s
                    .as_bytes()
                    .chunks(8)
                    .all(|c| hex(std::str::from_utf8(c).unwrap_or("")))
            {
                return Err(bad("not a WAL file name (24 upper-case hexadecimal digits, optionally .partial, .history or .NNNNNNNN.backup)"));
            }
            let field = |i: usize| u64::from_str_radix(&s[i..i + 8], 16).expect("hex checked");
            let per_id = 0x1_0000_0000 / segment_size;
            if field(16) >= per_id {
                return Err(bad(
                    "its segment number is past the end of a log file for this segment size",
                ));
            }
            Ok(Segment {
                timeline: field(0) as u32,
                number: field(8) * per_id + field(16),
            })
        };
        if let Some(timeline) = name.strip_suffix(".history") {
            if hex(timeline) {
                return Ok(WalFile::History(
                    u32::from_str_radix(timeline, 16).expect("hex checked"),
                ));
            }
        }
        if let Some(rest) = name.strip_suffix(".partial") {
            return segment(rest).map(WalFile::Partial);
        }
        if let Some(rest) = name.strip_suffix(".backup") {
            if let Some((seg, offset)) = rest.split_once('.') {
                if hex(offset) {
                    return segment(seg).map(WalFile::Backup);
                }
            }
        }
        segment(name).map(WalFile::Segment)
    }

    /// The timeline its name says (its directory in the archive).
    pub fn timeline(self) -> u32 {
        match self {
            WalFile::Segment(s) | WalFile::Partial(s) | WalFile::Backup(s) => s.timeline,
            WalFile::History(timeline) => timeline,
        }
    }

    /// The segment it belongs to, if it is not a history file.
    pub fn segment(self) -> Option<Segment> {
        match self {
            WalFile::Segment(s) | WalFile::Partial(s) | WalFile::Backup(s) => Some(s),
            WalFile::History(_) => None,
        }
    }
}

/// The first segment missing from `segments` (sorted, one timeline) after `from`, up to the
/// newest one: `None` when the run from `from` to the newest is continuous.
pub fn first_gap(segments: &[Segment], from: Segment) -> Option<Segment> {
    let mut expected = from;
    for segment in segments.iter().filter(|s| s.number >= from.number) {
        if segment.number != expected.number {
            return Some(expected);
        }
        expected = expected.next();
    }
    (expected == from).then_some(from)
}

/// A physical (base backup) snapshot: where its WAL starts and ends and which server it is of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicalStats {
    /// `PostgreSQL 15.8`.
    pub server_version: String,
    /// `pg_control`'s system identifier: WAL of another cluster never fits this backup.
    pub system_identifier: String,
    /// The timeline the backup was taken on.
    pub timeline: u32,
    /// The server's WAL segment size in bytes.
    pub wal_segment_size: u64,
    /// Where replay starts (the backup's checkpoint redo point).
    pub start_lsn: Lsn,
    /// Where the backup ends; the data directory is consistent once replay passes it.
    pub stop_lsn: Lsn,
    /// The segment holding `start_lsn`: recovery needs it and every later one.
    pub start_segment: String,
    /// The segment holding `stop_lsn`.
    pub stop_segment: String,
    /// The server's clock when the backup had ended: the earliest time it recovers to.
    pub stop_time: chrono::DateTime<chrono::Utc>,
    /// Bytes of the base backup's tar stream.
    pub bytes_read: u64,
    /// Bytes stored in the repository.
    pub bytes_stored: u64,
}

impl PhysicalStats {
    /// The segment holding the start LSN.
    pub fn start(&self) -> Segment {
        Segment::of(self.timeline, self.start_lsn, self.wal_segment_size)
    }

    /// The segment holding the stop LSN.
    pub fn stop(&self) -> Segment {
        Segment::of(self.timeline, self.stop_lsn, self.wal_segment_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u64 = DEFAULT_SEGMENT_SIZE;

    #[test]
    fn lsns_read_and_print_as_postgresql_does() {
        for (text, value) in [
            ("0/0", 0u64),
            ("0/3000060", 0x300_0060),
            ("1/A", 0x1_0000_000A),
            ("FFFFFFFF/FFFFFFFF", u64::MAX),
        ] {
            let lsn: Lsn = text.parse().unwrap();
            assert_eq!(lsn.0, value, "{text}");
            assert_eq!(lsn.to_string(), text);
        }
        for bad in ["", "0", "0/", "/1", "g/1", "0/1/2", "100000000/0"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad}");
        }
    }

    #[test]
    fn archive_names_are_segments_or_refused() {
        let seg = |timeline, number| Segment { timeline, number };
        let cases: [(&str, Option<WalFile>); 12] = [
            (
                "000000010000000000000003",
                Some(WalFile::Segment(seg(1, 3))),
            ),
            (
                "0000000200000001000000FF",
                Some(WalFile::Segment(seg(2, 0x1FF))),
            ),
            (
                "000000010000000000000003.partial",
                Some(WalFile::Partial(seg(1, 3))),
            ),
            (
                "000000010000000000000003.00000028.backup",
                Some(WalFile::Backup(seg(1, 3))),
            ),
            ("00000002.history", Some(WalFile::History(2))),
            ("000000010000000000000100", None),
            ("00000001000000000000000a", None),
            ("../00000001000000000000000", None),
            ("/tmp/000000010000000000000003", None),
            ("00000001.history/..", None),
            ("000000010000000000000003.backup", None),
            ("", None),
        ];
        for (name, expected) in cases {
            assert_eq!(WalFile::parse(name, SIZE).ok(), expected, "{name}");
        }
        // 64 MiB segments: 64 a log file.
        let big = WalFile::parse("00000001000000020000003F", 64 << 20).unwrap();
        assert_eq!(big.segment(), Some(seg(1, 2 * 64 + 0x3F)));
        assert!(WalFile::parse("000000010000000000000040", 64 << 20).is_err());
    }

    #[test]
    fn segment_names_round_trip_and_hold_their_lsns() {
        for number in [0u64, 1, 0xFF, 0x100, 0x12345] {
            let segment = Segment {
                timeline: 3,
                number,
            };
            assert_eq!(
                WalFile::parse(&segment.name(SIZE), SIZE).unwrap(),
                WalFile::Segment(segment)
            );
        }
        let lsn: Lsn = "0/3000060".parse().unwrap();
        let segment = Segment::of(1, lsn, SIZE);
        assert_eq!(segment.name(SIZE), "000000010000000000000003");
        assert_eq!(segment.end(SIZE).to_string(), "0/4000000");
    }

    #[test]
    fn gaps_name_the_first_missing_segment() {
        let run = |numbers: &[u64]| -> Vec<Segment> {
            numbers
                .iter()
                .map(|&number| Segment {
                    timeline: 1,
                    number,
                })
                .collect()
        };
        let at = |number| Segment {
            timeline: 1,
            number,
        };
        // (archived, from) -> first missing
        let cases: [(&[u64], u64, Option<u64>); 6] = [
            (&[3, 4, 5], 3, None),
            (&[1, 2, 3, 4, 5], 3, None),
            (&[3, 5], 3, Some(4)),
            (&[4, 5], 3, Some(3)),
            (&[], 3, Some(3)),
            (&[1, 2], 3, Some(3)),
        ];
        for (archived, from, missing) in cases {
            assert_eq!(
                first_gap(&run(archived), at(from)),
                missing.map(at),
                "{archived:?} from {from}"
            );
        }
    }
}
