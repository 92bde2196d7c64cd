use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Which snapshots of a set to keep. Every field is optional; a count of 0 or a zero
/// `within` counts as unset, like restic.
///
/// As a config-file table (serde): `{ daily = 7, weekly = 4, within = "30d", tags = ["release"] }`.
/// With the `clap` feature it is a `clap::Args` group giving `--keep-last N`, `--keep-hourly N`,
/// `--keep-daily N`, `--keep-weekly N`, `--keep-monthly N`, `--keep-yearly N`,
/// `--keep-within DURATION` and `--keep-tag T` (repeatable).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[cfg_attr(feature = "clap", command(next_help_heading = "Keep policy"))]
pub struct KeepPolicy {
    /// Keep the N newest snapshots.
    #[cfg_attr(feature = "clap", arg(long = "keep-last", value_name = "N"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours that have one.
    #[cfg_attr(feature = "clap", arg(long = "keep-hourly", value_name = "N"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest days that have one.
    #[cfg_attr(feature = "clap", arg(long = "keep-daily", value_name = "N"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks that have one.
    #[cfg_attr(feature = "clap", arg(long = "keep-weekly", value_name = "N"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months that have one.
    #[cfg_attr(feature = "clap", arg(long = "keep-monthly", value_name = "N"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years that have one.
    #[cfg_attr(feature = "clap", arg(long = "keep-yearly", value_name = "N"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yearly: Option<u32>,
    /// Keep every snapshot taken less than DURATION before the newest one (e.g. 30d, 12h, "1y 2M").
    #[cfg_attr(feature = "clap", arg(long = "keep-within", value_name = "DURATION"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within: Option<Within>,
    /// Keep every snapshot carrying tag T (repeatable; any listed tag suffices).
    #[cfg_attr(feature = "clap", arg(long = "keep-tag", value_name = "T"))]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl KeepPolicy {
    /// True when no rule is set, i.e. the policy would keep nothing; [`apply`](crate::apply)
    /// refuses such a policy with [`Error::EmptyPolicy`].
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, n)| n.unwrap_or(0) == 0)
            && self.within.as_ref().is_none_or(Within::is_zero)
            && self.tags.is_empty()
    }

    pub(crate) fn counts(&self) -> [(&'static str, Option<u32>); 6] {
        [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
        ]
    }
}

/// The set rules in reason order, e.g. `last 3, daily 7, within 30d, tag release` (for logs).
impl fmt::Display for KeepPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (name, n) in self.counts() {
            if let Some(n) = n.filter(|&n| n > 0) {
                parts.push(format!("{name} {n}"));
            }
        }
        if let Some(w) = self.within.as_ref().filter(|w| !w.is_zero()) {
            parts.push(format!("within {w}"));
        }
        for tag in &self.tags {
            parts.push(format!("tag {tag}"));
        }
        if parts.is_empty() {
            f.write_str("(empty policy)")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// The length of the `within` rule: an exact span of time in humantime syntax
/// (`30d`, `12h`, `2weeks`, `1y 2M`; `1y` is 365.25 days and `1M` 30.44 days, as humantime
/// defines them).
///
/// A bare `m` is refused: humantime reads it as minutes, restic as months, and guessing wrong
/// would silently keep far less (or far more) than meant. Write `min` or `M`/`months`.
///
/// It keeps the text as written so that reasons echo the operator's own words
/// (`within 30d`); equality compares the span only.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Within {
    duration: Duration,
    text: String,
}

impl Within {
    /// A span given as a [`Duration`]; its text is the shortest exact form (`30d`, `36h`, `90min`).
    pub fn new(duration: Duration) -> Self {
        Self {
            duration,
            text: compact(duration),
        }
    }

    /// The span.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// A zero span counts as an unset rule (restic does the same).
    pub fn is_zero(&self) -> bool {
        self.duration.is_zero()
    }
}

fn compact(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 {
        format!("{}ns", d.as_nanos())
    } else if secs == 0 {
        "0s".to_owned()
    } else if secs.is_multiple_of(86_400) {
        format!("{}d", secs / 86_400)
    } else if secs.is_multiple_of(3_600) {
        format!("{}h", secs / 3_600)
    } else if secs.is_multiple_of(60) {
        format!("{}min", secs / 60)
    } else {
        format!("{secs}s")
    }
}

impl FromStr for Within {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let text = s.trim();
        let invalid = |reason: String| Error::InvalidDuration {
            text: s.to_owned(),
            reason,
        };
        // Units are the letter runs; only the bare "m" is ambiguous (see the type's docs).
        if text
            .split(|c: char| !c.is_ascii_alphabetic())
            .any(|unit| unit == "m")
        {
            return Err(invalid(
                "the unit \"m\" is ambiguous: write \"min\" for minutes or \"M\" for months".into(),
            ));
        }
        let duration = humantime::parse_duration(text).map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            duration,
            text: text.to_owned(),
        })
    }
}

impl TryFrom<String> for Within {
    type Error = Error;

    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<Within> for String {
    fn from(w: Within) -> String {
        w.text
    }
}

impl From<Duration> for Within {
    fn from(d: Duration) -> Self {
        Self::new(d)
    }
}

impl fmt::Display for Within {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for Within {
    fn eq(&self, other: &Self) -> bool {
        self.duration == other.duration
    }
}

impl Eq for Within {}

impl Hash for Within {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.duration.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const DAY: u64 = 86_400;

    #[rstest]
    #[case::days("30d", 30 * DAY, "30d")]
    #[case::hours("12h", 12 * 3_600, "12h")]
    #[case::weeks("2weeks", 14 * DAY, "2weeks")]
    #[case::minutes("90min", 90 * 60, "90min")]
    #[case::year_and_months("1y 2M", 31_557_600 + 2 * 2_630_016, "1y 2M")]
    #[case::trimmed("  7d ", 7 * DAY, "7d")]
    fn within_parses_humantime(#[case] input: &str, #[case] secs: u64, #[case] text: &str) {
        let w: Within = input.parse().unwrap();
        assert_eq!(w.duration(), Duration::from_secs(secs));
        assert_eq!(w.to_string(), text);
    }

    #[rstest]
    #[case::bare_m_restic_style("1y2m", "ambiguous")]
    #[case::bare_m_alone("30m", "ambiguous")]
    #[case::bare_m_spaced("1h 30 m", "ambiguous")]
    #[case::garbage("soon", "expected number")]
    #[case::unknown_unit("3 fortnights", "unknown time unit")]
    #[case::no_unit("30", "time unit needed")]
    #[case::empty("", "value was empty")]
    fn within_refuses(#[case] input: &str, #[case] reason_part: &str) {
        match input.parse::<Within>() {
            Err(Error::InvalidDuration { text, reason }) => {
                assert_eq!(text, input);
                assert!(
                    reason.contains(reason_part),
                    "{reason:?} lacks {reason_part:?}"
                );
            }
            other => panic!("expected InvalidDuration, got {other:?}"),
        }
    }

    #[rstest]
    #[case::days(30 * DAY, "30d")]
    #[case::hours(36 * 3_600, "36h")]
    #[case::minutes(90 * 60, "90min")]
    #[case::seconds(61, "61s")]
    #[case::zero(0, "0s")]
    fn within_from_duration_has_reparsable_text(#[case] secs: u64, #[case] text: &str) {
        let w = Within::new(Duration::from_secs(secs));
        assert_eq!(w.to_string(), text);
        assert_eq!(text.parse::<Within>().unwrap(), w);
    }

    #[test]
    fn within_equality_ignores_spelling() {
        assert_eq!(
            "1d".parse::<Within>().unwrap(),
            "24h".parse::<Within>().unwrap()
        );
        assert_ne!(
            "1d".parse::<Within>().unwrap(),
            "23h".parse::<Within>().unwrap()
        );
    }

    #[rstest]
    #[case::default(KeepPolicy::default(), true)]
    #[case::zero_counts(KeepPolicy { last: Some(0), daily: Some(0), ..KeepPolicy::default() }, true)]
    #[case::zero_within(KeepPolicy { within: Some(Within::new(Duration::ZERO)), ..KeepPolicy::default() }, true)]
    #[case::last(KeepPolicy { last: Some(1), ..KeepPolicy::default() }, false)]
    #[case::yearly(KeepPolicy { yearly: Some(1), ..KeepPolicy::default() }, false)]
    #[case::within(KeepPolicy { within: Some(Within::new(Duration::from_secs(1))), ..KeepPolicy::default() }, false)]
    #[case::tag(KeepPolicy { tags: vec!["release".into()], ..KeepPolicy::default() }, false)]
    fn is_empty(#[case] policy: KeepPolicy, #[case] empty: bool) {
        assert_eq!(policy.is_empty(), empty);
    }

    #[test]
    fn policy_from_config_json() {
        let policy: KeepPolicy = serde_json::from_str(
            r#"{"daily": 7, "weekly": 4, "within": "30d", "tags": ["release", "pre-upgrade"]}"#,
        )
        .unwrap();
        assert_eq!(
            policy,
            KeepPolicy {
                daily: Some(7),
                weekly: Some(4),
                within: Some(Within::new(Duration::from_secs(30 * DAY))),
                tags: vec!["release".into(), "pre-upgrade".into()],
                ..KeepPolicy::default()
            }
        );
        assert_eq!(
            serde_json::to_string(&policy).unwrap(),
            r#"{"daily":7,"weekly":4,"within":"30d","tags":["release","pre-upgrade"]}"#
        );
        assert_eq!(
            policy.to_string(),
            "daily 7, weekly 4, within 30d, tag release, tag pre-upgrade"
        );
    }

    #[rstest]
    #[case::unknown_field(r#"{"dayly": 7}"#, "unknown field `dayly`")]
    #[case::ambiguous_within(r#"{"within": "2m"}"#, "ambiguous")]
    #[case::negative_count(r#"{"daily": -1}"#, "invalid value")]
    fn policy_config_refuses(#[case] json: &str, #[case] message_part: &str) {
        let err = serde_json::from_str::<KeepPolicy>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains(message_part), "{err:?} lacks {message_part:?}");
    }

    #[test]
    fn empty_policy_display() {
        assert_eq!(KeepPolicy::default().to_string(), "(empty policy)");
    }

    #[cfg(feature = "clap")]
    mod cli {
        use super::*;
        use clap::Parser;

        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            keep: KeepPolicy,
        }

        #[test]
        fn every_flag() {
            let cli = Cli::try_parse_from([
                "prune",
                "--keep-last",
                "1",
                "--keep-hourly",
                "2",
                "--keep-daily",
                "3",
                "--keep-weekly",
                "4",
                "--keep-monthly",
                "5",
                "--keep-yearly",
                "6",
                "--keep-within",
                "30d",
                "--keep-tag",
                "release",
                "--keep-tag",
                "pre-upgrade",
            ])
            .unwrap();
            assert_eq!(
                cli.keep,
                KeepPolicy {
                    last: Some(1),
                    hourly: Some(2),
                    daily: Some(3),
                    weekly: Some(4),
                    monthly: Some(5),
                    yearly: Some(6),
                    within: Some(Within::new(Duration::from_secs(30 * DAY))),
                    tags: vec!["release".into(), "pre-upgrade".into()],
                }
            );
        }

        #[test]
        fn no_flags_is_empty_policy() {
            let cli = Cli::try_parse_from(["prune"]).unwrap();
            assert!(cli.keep.is_empty());
        }

        #[rstest]
        #[case::ambiguous_within(&["prune", "--keep-within", "1y2m"], "ambiguous")]
        #[case::negative(&["prune", "--keep-daily", "-1"], "unexpected argument")]
        #[case::not_a_number(&["prune", "--keep-daily", "seven"], "invalid digit")]
        fn bad_flags(#[case] args: &[&str], #[case] message_part: &str) {
            let err = Cli::try_parse_from(args).unwrap_err().to_string();
            assert!(err.contains(message_part), "{err:?} lacks {message_part:?}");
        }
    }
}
