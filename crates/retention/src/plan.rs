use std::collections::HashSet;

use chrono::{DateTime, Datelike, NaiveDateTime, TimeDelta, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, KeepPolicy, Timezone};

/// One snapshot as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// Snapshot id, unique within the input.
    pub id: String,
    /// When the snapshot was taken.
    pub time: DateTime<Utc>,
    /// The snapshot's tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Candidate {
    /// A candidate without tags.
    pub fn new(id: impl Into<String>, time: DateTime<Utc>) -> Self {
        Self {
            id: id.into(),
            time,
            tags: Vec::new(),
        }
    }

    /// The same candidate carrying `tags`.
    pub fn with_tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Snapshot id.
    pub id: String,
    /// Whether the snapshot is kept.
    pub keep: bool,
    /// Why it is kept, e.g. `daily 3 of 7`, `within 30d`, `tag release`, `latest`;
    /// empty when it is forgotten.
    pub reasons: Vec<String>,
}

/// A verdict for every input snapshot, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// One decision per snapshot, newest first (equal times: higher id first).
    pub decisions: Vec<Decision>,
}

impl Plan {
    /// The kept snapshots, newest first.
    pub fn keep(&self) -> impl Iterator<Item = &Decision> + '_ {
        self.decisions.iter().filter(|d| d.keep)
    }

    /// The snapshots to forget, newest first.
    pub fn forget(&self) -> impl Iterator<Item = &Decision> + '_ {
        self.decisions.iter().filter(|d| !d.keep)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Last,
        Kind::Hourly,
        Kind::Daily,
        Kind::Weekly,
        Kind::Monthly,
        Kind::Yearly,
    ];

    /// A number naming the calendar bucket of `local`; `last` gives every snapshot its own.
    fn bucket(self, local: NaiveDateTime, nr: usize) -> i64 {
        let day = i64::from(local.date().num_days_from_ce());
        match self {
            Kind::Last => nr as i64,
            Kind::Hourly => day * 24 + i64::from(local.hour()),
            Kind::Daily => day,
            // ISO weeks: 2020-12-31 and 2021-01-01 share week 53 of 2020, like restic's ISOWeek.
            Kind::Weekly => {
                let week = local.iso_week();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Kind::Monthly => i64::from(local.year()) * 12 + i64::from(local.month0()),
            Kind::Yearly => i64::from(local.year()),
        }
    }
}

struct Rule {
    kind: Kind,
    name: &'static str,
    limit: u32,
    used: u32,
    seen: HashSet<i64>,
}

/// Applies `policy` to one set's `snapshots`, with restic `forget` semantics.
///
/// Snapshots are ordered newest first (equal times: higher id first). `last N` keeps the N
/// newest; `hourly`/`daily`/`weekly`/`monthly`/`yearly N` keep the newest snapshot of each of
/// the N newest calendar buckets (in `tz`) that hold a snapshot, and, while a rule still has
/// buckets left, also the oldest snapshot (reason `oldest daily`, …); `within D` keeps every
/// snapshot taken less than D before the newest snapshot; `tags` keeps every snapshot carrying
/// one of the tags. The newest snapshot is always kept (reason `latest` when no rule keeps it).
///
/// # Errors
/// [`Error::EmptyPolicy`] when no rule is set; [`Error::DuplicateId`] when two candidates
/// share an id.
pub fn apply(policy: &KeepPolicy, snapshots: &[Candidate], tz: Timezone) -> Result<Plan, Error> {
    if policy.is_empty() {
        return Err(Error::EmptyPolicy);
    }

    let mut ids = HashSet::with_capacity(snapshots.len());
    if let Some(dup) = snapshots.iter().find(|c| !ids.insert(c.id.as_str())) {
        return Err(Error::DuplicateId { id: dup.id.clone() });
    }

    let mut order: Vec<&Candidate> = snapshots.iter().collect();
    order.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));
    let Some(newest) = order.first().map(|c| c.time) else {
        return Ok(Plan::default());
    };

    // `counts()` lists the rules in the order of `Kind::ALL`, which is also the reason order.
    let mut rules: Vec<Rule> = Kind::ALL
        .into_iter()
        .zip(policy.counts())
        .filter_map(|(kind, (name, limit))| {
            let limit = limit.filter(|&n| n > 0)?;
            Some(Rule {
                kind,
                name,
                limit,
                used: 0,
                seen: HashSet::new(),
            })
        })
        .collect();

    // Measured from the newest snapshot, not from now, so an idle set is never emptied.
    // `None` inside: the span reaches before the earliest representable time, so all are within.
    let within = policy.within.as_ref().filter(|w| !w.is_zero()).map(|w| {
        let cutoff = TimeDelta::from_std(w.duration())
            .ok()
            .and_then(|span| newest.checked_sub_signed(span));
        (format!("within {w}"), cutoff)
    });

    let mut tags: Vec<&str> = Vec::new();
    for tag in &policy.tags {
        if !tags.contains(&tag.as_str()) {
            tags.push(tag);
        }
    }

    let oldest = order.len() - 1;
    let decisions = order
        .iter()
        .enumerate()
        .map(|(nr, cand)| {
            let local = tz.local(cand.time);
            let mut reasons = Vec::new();
            for rule in rules.iter_mut().filter(|r| r.used < r.limit) {
                if rule.seen.insert(rule.kind.bucket(local, nr)) {
                    rule.used += 1;
                    reasons.push(format!("{} {} of {}", rule.name, rule.used, rule.limit));
                } else if nr == oldest {
                    // restic: a rule with buckets to spare also keeps the oldest snapshot,
                    // which stretches the history of a young set as far back as it goes.
                    rule.used += 1;
                    reasons.push(format!("oldest {}", rule.name));
                }
            }
            if let Some((reason, cutoff)) = &within {
                // Strictly after the cutoff, like restic's `Time.After`.
                if cutoff.is_none_or(|c| cand.time > c) {
                    reasons.push(reason.clone());
                }
            }
            for tag in &tags {
                if cand.tags.iter().any(|t| t == tag) {
                    reasons.push(format!("tag {tag}"));
                }
            }
            if nr == 0 && reasons.is_empty() {
                reasons.push("latest".to_owned());
            }
            Decision {
                id: cand.id.clone(),
                keep: !reasons.is_empty(),
                reasons,
            }
        })
        .collect();
    Ok(Plan { decisions })
}
