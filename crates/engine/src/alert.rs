//! When a run or a health check deserves an alert. Delivery is strongbox-alert's; an alert
//! that could not be delivered is logged there and journalled here, and never changes how
//! the operation ends.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use strongbox_alert::{undelivered, Alert, Delivery, Event};
use strongbox_storage::{host_name, layout};

use crate::journal::{Journal, Operation, RunRecord, RunStatus};
use crate::{Error, HealthReport, HealthStatus, Reader};

/// How often a health state that stays bad is reported again.
const REMIND_AFTER: Duration = Duration::hours(24);

impl Reader {
    /// An alert about `operation` on `set` (or the repository), from this host.
    fn alert(&self, status: Event, set: Option<&str>, operation: &str) -> Alert {
        Alert::new(status, set, operation, self.repo.location(), &host_name())
    }

    /// Send `alert`; journal (in `set`'s journal) the channels it did not reach.
    fn deliver(&self, set: Option<&str>, alert: &Alert, only: Option<&[String]>) -> Vec<Delivery> {
        let Some(notifier) = &self.alerts else {
            return Vec::new();
        };
        let deliveries = notifier.notify_only(alert, only);
        if let (Some(set), Some(failed)) = (set, undelivered(&deliveries)) {
            let journal = Journal::start(self, set, Operation::Alert);
            journal.finish(
                RunStatus::Failed,
                alert.snapshot.clone(),
                Some(format!(
                    "the {} alert of {} was not delivered: {failed}",
                    alert.status, alert.operation
                )),
            );
        }
        deliveries
    }

    /// Alert on a finished run of backup, verify or prune: failed is a failure, incomplete
    /// a warning, ok a recovery when the run before failed, else a success.
    pub(crate) fn alert_run(&self, run: &RunRecord) {
        let Some(notifier) = &self.alerts else {
            return;
        };
        if !matches!(
            run.operation,
            Operation::Backup | Operation::Verify | Operation::Prune
        ) {
            return;
        }
        let event = match run.status {
            RunStatus::Running => return,
            RunStatus::Failed => Event::Failure,
            RunStatus::Incomplete => Event::Warning,
            RunStatus::Ok if notifier.wants(Event::Recovery) && self.failed_before(run) => {
                Event::Recovery
            }
            RunStatus::Ok => Event::Success,
        };
        if !notifier.wants(event) {
            return;
        }
        let mut alert = self.alert(event, Some(&run.set), run.operation.as_str());
        alert.error = run.error.clone();
        alert.snapshot = run.snapshot.clone();
        self.deliver(Some(&run.set), &alert, None);
    }

    /// Whether the finished run of `run`'s operation on its set before `run` did not
    /// succeed. Reads entries newest first, and only as many as it takes.
    fn failed_before(&self, run: &RunRecord) -> bool {
        let Ok(keys) = self.run_keys(&run.set, Some(run.operation)) else {
            return false;
        };
        keys.iter()
            .rev()
            .filter_map(|key| self.read_run(key))
            .find(|r| r.started < run.started && r.status != RunStatus::Running)
            .is_some_and(|r| r.status != RunStatus::Ok)
    }

    /// Alert on the health states that changed since the last report, and remind daily of
    /// the ones that stay bad; remembers what it sent in the repository
    /// (`alerts/health.json`). Returns the alerts it sent, with their deliveries.
    pub fn alert_health(&self, report: &HealthReport) -> Result<Vec<HealthAlert>, Error> {
        // Without a channel there is nothing to remember, and health stays read-only.
        if !self.alerts.as_ref().is_some_and(|n| n.has_channels()) {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let mut state = self.alert_state();
        let mut sent = Vec::new();
        let mut changed = false;
        for (scope, (status, detail)) in scopes(report) {
            let previous = state.scopes.get(&scope);
            let decision = decide(previous, status, now);
            // The state unchanged, but some channels missed the alert about it: to those.
            let missed = match (decision, previous) {
                (None, Some(p)) if p.status == status && !p.unreached.is_empty() => {
                    Some(p.unreached.as_slice())
                }
                _ => None,
            };
            let set = (!scope.is_empty()).then_some(scope.as_str());
            let mut delivered = false;
            let mut unreached = Vec::new();
            if let Some((event, reminder)) = decision.or(missed.map(|_| (event_of(status), false)))
            {
                let mut alert = self.alert(event, set, "health");
                alert.reminder = reminder;
                if event != Event::Recovery {
                    alert.error = Some(detail);
                }
                let deliveries = self.deliver(set, &alert, missed);
                delivered = deliveries.iter().any(|d| d.ok);
                unreached = deliveries
                    .iter()
                    .filter(|d| !d.ok)
                    .map(|d| d.channel.clone())
                    .collect();
                // A recovery nobody received is sent again next time: the state stays bad.
                // (A bad state not delivered keeps no `sent`, so it is sent again anyway.)
                let unreceived_recovery = event == Event::Recovery
                    && missed.is_none()
                    && !deliveries.is_empty()
                    && !delivered;
                if !deliveries.is_empty() {
                    sent.push(HealthAlert {
                        set: set.map(str::to_string),
                        event,
                        reminder,
                        deliveries,
                    });
                }
                if unreceived_recovery {
                    continue;
                }
            }
            let next = ScopeState {
                status,
                since: match previous {
                    Some(p) if p.status == status => p.since,
                    _ => now,
                },
                sent: if delivered && missed.is_none() {
                    Some(now)
                } else {
                    previous.filter(|p| p.status == status).and_then(|p| p.sent)
                },
                unreached,
            };
            if previous != Some(&next) {
                state.scopes.insert(scope, next);
                changed = true;
            }
        }
        if changed {
            let json = serde_json::to_vec_pretty(&state).expect("alert state serializes");
            self.repo.put_alert_state(&json)?;
        }
        Ok(sent)
    }

    fn alert_state(&self) -> AlertState {
        match self.repo.read_object(layout::ALERT_STATE, None) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(key = layout::ALERT_STATE, error = %e, "unreadable alert state; starting afresh");
                AlertState::default()
            }),
            Err(strongbox_storage::Error::NotFound { .. }) => AlertState::default(),
            Err(e) => {
                tracing::warn!(key = layout::ALERT_STATE, error = &e as &dyn std::error::Error, "unreadable alert state; starting afresh");
                AlertState::default()
            }
        }
    }
}

/// An alert `health` sent.
#[derive(Debug, Serialize)]
pub struct HealthAlert {
    /// The set, or none for the repository.
    pub set: Option<String>,
    /// What it said.
    pub event: Event,
    /// A reminder of an unchanged state.
    pub reminder: bool,
    /// How each channel took it.
    pub deliveries: Vec<Delivery>,
}

/// What `health` last told the operator, per scope (a set, or "" for the repository).
#[derive(Debug, Default, Serialize, Deserialize)]
struct AlertState {
    scopes: BTreeMap<String, ScopeState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ScopeState {
    status: HealthStatus,
    since: DateTime<Utc>,
    sent: Option<DateTime<Utc>>,
    /// The channels that missed the last alert about this state, tried again next time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    unreached: Vec<String>,
}

/// Each scope's worst state, and the details of its checks that are not ok.
fn scopes(report: &HealthReport) -> BTreeMap<String, (HealthStatus, String)> {
    let mut scopes: BTreeMap<String, (HealthStatus, Vec<String>)> = BTreeMap::new();
    for check in &report.checks {
        let scope = scopes
            .entry(check.set.clone().unwrap_or_default())
            .or_insert((HealthStatus::Ok, Vec::new()));
        scope.0 = scope.0.max(check.status);
        if check.status != HealthStatus::Ok {
            scope
                .1
                .push(format!("{} {}: {}", check.name, check.status, check.detail));
        }
    }
    scopes
        .into_iter()
        .map(|(scope, (status, details))| (scope, (status, details.join("; "))))
        .collect()
}

/// The alert that tells of `status`.
fn event_of(status: HealthStatus) -> Event {
    match status {
        HealthStatus::Ok => Event::Recovery,
        HealthStatus::Warning => Event::Warning,
        HealthStatus::Critical | HealthStatus::Unknown => Event::Failure,
    }
}

/// The alert a scope's state calls for, if any, and whether it is a reminder: a change of
/// state is sent; a bad state not delivered yet, or delivered more than a day ago, is sent
/// again.
fn decide(
    previous: Option<&ScopeState>,
    status: HealthStatus,
    now: DateTime<Utc>,
) -> Option<(Event, bool)> {
    let was = previous.map_or(HealthStatus::Ok, |p| p.status);
    let event = match status {
        HealthStatus::Ok if was == HealthStatus::Ok => return None,
        HealthStatus::Ok => return Some((Event::Recovery, false)),
        _ => event_of(status),
    };
    if was != status {
        return Some((event, false));
    }
    match previous.and_then(|p| p.sent) {
        None => Some((event, false)),
        Some(sent) if now - sent >= REMIND_AFTER => Some((event, true)),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_alerts_on_changes_and_reminds_daily() {
        let now = Utc::now();
        let state = |status, sent_hours_ago: Option<i64>| ScopeState {
            status,
            since: now - Duration::hours(100),
            sent: sent_hours_ago.map(|h| now - Duration::hours(h)),
            unreached: Vec::new(),
        };
        use HealthStatus::{Critical, Ok, Unknown, Warning};
        let cases = [
            (None, Ok, None),
            (None, Warning, Some((Event::Warning, false))),
            (None, Critical, Some((Event::Failure, false))),
            (Some(state(Ok, None)), Ok, None),
            (Some(state(Critical, Some(1))), Critical, None),
            (Some(state(Critical, Some(23))), Critical, None),
            (
                Some(state(Critical, Some(24))),
                Critical,
                Some((Event::Failure, true)),
            ),
            (
                Some(state(Critical, None)),
                Critical,
                Some((Event::Failure, false)),
            ),
            (
                Some(state(Warning, Some(1))),
                Critical,
                Some((Event::Failure, false)),
            ),
            (
                Some(state(Critical, Some(1))),
                Warning,
                Some((Event::Warning, false)),
            ),
            (
                Some(state(Critical, Some(1))),
                Ok,
                Some((Event::Recovery, false)),
            ),
            (
                Some(state(Warning, None)),
                Ok,
                Some((Event::Recovery, false)),
            ),
            (
                Some(state(Unknown, Some(30))),
                Unknown,
                Some((Event::Failure, true)),
            ),
        ];
        for (previous, status, expected) in cases {
            assert_eq!(
                decide(previous.as_ref(), status, now),
                expected,
                "{previous:?} -> {status}"
            );
        }
    }
}
