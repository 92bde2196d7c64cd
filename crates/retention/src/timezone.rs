use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The timezone whose calendar draws the hourly/daily/weekly/monthly/yearly buckets.
///
/// One of: [`Timezone::UTC`] (the default), a fixed offset (`+02:00`, `-0530`, `+09`), or an
/// IANA name (`Europe/Berlin`) whose daylight-saving rules come from the tz database compiled
/// into the binary (chrono-tz), so applying a policy reads no file and depends on no host
/// setting. There is deliberately no "local": the same inputs must give the same plan on every
/// machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timezone(Zone);

// Private so that the tz library stays an implementation detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Zone {
    #[default]
    Utc,
    Fixed(FixedOffset),
    Named(chrono_tz::Tz),
}

impl Timezone {
    /// Coordinated Universal Time.
    pub const UTC: Timezone = Timezone(Zone::Utc);

    /// A fixed offset from UTC, without daylight saving.
    pub fn fixed(offset: FixedOffset) -> Self {
        Self(Zone::Fixed(offset))
    }

    /// Parses `UTC` (or `Z`), an offset `±HH[:MM]`/`±HHMM`, or an IANA name.
    pub fn parse(name: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidTimezone {
            name: name.to_owned(),
        };
        let trimmed = name.trim();
        if trimmed.eq_ignore_ascii_case("utc") || trimmed == "Z" {
            return Ok(Self::UTC);
        }
        if let Some(rest) = trimmed.strip_prefix('+') {
            return parse_offset(rest, 1).map(Self::fixed).ok_or_else(invalid);
        }
        if let Some(rest) = trimmed.strip_prefix('-') {
            return parse_offset(rest, -1).map(Self::fixed).ok_or_else(invalid);
        }
        trimmed
            .parse::<chrono_tz::Tz>()
            .map(|tz| Self(Zone::Named(tz)))
            .map_err(|_| invalid())
    }

    /// Wall-clock time of `t` in this zone.
    pub(crate) fn local(self, t: DateTime<Utc>) -> NaiveDateTime {
        match self.0 {
            Zone::Utc => t.naive_utc(),
            Zone::Fixed(offset) => t.with_timezone(&offset).naive_local(),
            Zone::Named(tz) => t.with_timezone(&tz).naive_local(),
        }
    }
}

/// `HH`, `HHMM` or `HH:MM` after the sign.
fn parse_offset(s: &str, sign: i32) -> Option<FixedOffset> {
    let digits: String = s.chars().filter(|&c| c != ':').collect();
    let colon_ok = match s.find(':') {
        None => true,
        Some(i) => i == 2 && s.len() == 5,
    };
    if !colon_ok || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3_600 + minutes * 60))
}

impl FromStr for Timezone {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Timezone {
    type Error = Error;

    fn try_from(s: String) -> Result<Self, Error> {
        Self::parse(&s)
    }
}

impl From<Timezone> for String {
    fn from(tz: Timezone) -> String {
        tz.to_string()
    }
}

/// `UTC`, `+02:00` or the IANA name; parses back to the same zone.
impl fmt::Display for Timezone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Zone::Utc => f.write_str("UTC"),
            Zone::Fixed(offset) => write!(f, "{offset}"),
            Zone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::utc("UTC", "UTC")]
    #[case::utc_lower("utc", "UTC")]
    #[case::zulu("Z", "UTC")]
    #[case::offset_colon("+02:00", "+02:00")]
    #[case::offset_compact("-0530", "-05:30")]
    #[case::offset_hours("+09", "+09:00")]
    #[case::iana("Europe/Berlin", "Europe/Berlin")]
    #[case::iana_etc("Etc/GMT-3", "Etc/GMT-3")]
    #[case::trimmed(" Asia/Kolkata ", "Asia/Kolkata")]
    fn parses(#[case] input: &str, #[case] shown: &str) {
        let tz = Timezone::parse(input).unwrap();
        assert_eq!(tz.to_string(), shown);
        assert_eq!(Timezone::parse(shown).unwrap(), tz);
    }

    #[rstest]
    #[case::unknown("Mars/Olympus_Mons")]
    #[case::empty("")]
    #[case::hours_out_of_range("+24:00")]
    #[case::minutes_out_of_range("+01:60")]
    #[case::odd_digits("+123")]
    #[case::misplaced_colon("+1:30")]
    #[case::letters("+ab")]
    #[case::local("local")]
    fn refuses(#[case] input: &str) {
        assert_eq!(
            Timezone::parse(input),
            Err(Error::InvalidTimezone {
                name: input.to_owned()
            })
        );
    }

    #[test]
    fn default_is_utc() {
        assert_eq!(Timezone::default(), Timezone::UTC);
    }

    #[rstest]
    // Berlin is +01:00 in winter and +02:00 in summer: the zone, not one offset, decides.
    #[case::berlin_winter("Europe/Berlin", "2025-01-15T23:30:00Z", "2025-01-16T00:30:00")]
    #[case::berlin_summer("Europe/Berlin", "2025-07-15T22:30:00Z", "2025-07-16T00:30:00")]
    #[case::fixed("-05:00", "2025-07-16T03:00:00Z", "2025-07-15T22:00:00")]
    #[case::utc("UTC", "2025-07-16T03:00:00Z", "2025-07-16T03:00:00")]
    fn local_wall_clock(#[case] zone: &str, #[case] utc: &str, #[case] wall: &str) {
        let t: DateTime<Utc> = utc.parse().unwrap();
        let expected: NaiveDateTime = wall.parse().unwrap();
        assert_eq!(Timezone::parse(zone).unwrap().local(t), expected);
    }

    #[test]
    fn serde_as_string() {
        let tz: Timezone = serde_json::from_str(r#""Europe/Berlin""#).unwrap();
        assert_eq!(serde_json::to_string(&tz).unwrap(), r#""Europe/Berlin""#);
        let err = serde_json::from_str::<Timezone>(r#""Nowhere""#).unwrap_err();
        assert!(
            err.to_string().contains("invalid timezone \"Nowhere\""),
            "{err}"
        );
    }
}
