//! What an alert says, and how it reads as mail, JSON and a Slack message.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// A run failed, or a health check is critical.
    Failure,
    /// A backup missed files, or a health check warns.
    Warning,
    /// What failed or warned is fine again.
    Recovery,
    /// A run succeeded.
    Success,
    /// `notify test`: sent whatever `on` says.
    #[serde(skip_deserializing)]
    Test,
}

impl Event {
    /// Lower-case name, as in JSON and `[alerts] on`.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Failure => "failure",
            Event::Warning => "warning",
            Event::Recovery => "recovery",
            Event::Success => "success",
            Event::Test => "test",
        }
    }

    /// The events a configuration without `on` sends.
    pub fn defaults() -> Vec<Event> {
        vec![Event::Failure, Event::Warning, Event::Recovery]
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert: an operation's outcome on a set (or on the repository as a whole). Its JSON
/// is the body of a `format = "json"` webhook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// The set, or none for the repository as a whole.
    pub set: Option<String>,
    /// `backup`, `verify`, `prune`, `health` or `test`.
    pub operation: String,
    /// What happened.
    pub status: Event,
    /// Why it failed or warns.
    pub error: Option<String>,
    /// The host that ran the operation.
    pub host: String,
    /// When.
    pub time: DateTime<Utc>,
    /// The snapshot made or checked.
    pub snapshot: Option<String>,
    /// The repository (credentials never appear in a location).
    pub repository: String,
    /// A reminder that a bad state persists, not a change.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reminder: bool,
}

impl Alert {
    /// An alert about `operation` on `set`, now, from this host.
    pub fn new(
        status: Event,
        set: Option<&str>,
        operation: &str,
        repository: &str,
        host: &str,
    ) -> Self {
        Alert {
            set: set.map(str::to_string),
            operation: operation.to_string(),
            status,
            error: None,
            host: host.to_string(),
            time: Utc::now(),
            snapshot: None,
            repository: repository.to_string(),
            reminder: false,
        }
    }

    /// With the reason.
    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// One line: what happened to what, where.
    pub fn summary(&self) -> String {
        if self.status == Event::Test {
            return format!("strongbox test message from {}", self.host);
        }
        let what = match &self.set {
            Some(set) => format!("{} of {set}", self.operation),
            None => format!("{} of the repository", self.operation),
        };
        let health = self.operation == "health";
        let happened = match self.status {
            Event::Failure if health => "is CRITICAL",
            Event::Failure => "FAILED",
            Event::Warning => "warns",
            Event::Recovery if health => "is ok again",
            Event::Recovery => "recovered",
            Event::Success => "succeeded",
            Event::Test => unreachable!("returned above"),
        };
        let still = if self.reminder { "still: " } else { "" };
        format!("strongbox {still}{what} {happened} on {}", self.host)
    }

    /// The mail subject.
    pub fn subject(&self) -> String {
        format!("[strongbox] {}", self.summary())
    }

    /// The plain-text body of a mail.
    pub fn text(&self) -> String {
        let mut body = format!("{}.\n\n", self.summary());
        let rows = [
            ("status", Some(self.status.as_str().to_string())),
            ("set", self.set.clone()),
            ("operation", Some(self.operation.clone())),
            ("snapshot", self.snapshot.clone()),
            ("host", Some(self.host.clone())),
            (
                "time",
                Some(self.time.to_rfc3339_opts(SecondsFormat::Secs, true)),
            ),
            ("repository", Some(self.repository.clone())),
            ("error", self.error.clone()),
        ];
        for (name, value) in rows {
            if let Some(value) = value {
                body.push_str(&format!("{name:<11} {value}\n"));
            }
        }
        if self.reminder {
            body.push_str("\nThis state has lasted since an earlier alert; a reminder follows every 24 hours until it clears.\n");
        }
        body
    }

    /// The body of a `format = "slack"` webhook: `{"text": …}`.
    pub fn slack(&self) -> serde_json::Value {
        let mut text = self.summary();
        if let Some(snapshot) = &self.snapshot {
            text.push_str(&format!(" (snapshot {snapshot})"));
        }
        if let Some(error) = &self.error {
            text.push_str(&format!("\n{error}"));
        }
        serde_json::json!({ "text": text })
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn alert(status: Event, set: Option<&str>) -> Alert {
        Alert::new(status, set, "backup", "s3://bucket/prefix", "web1")
    }

    #[rstest]
    #[case(
        Event::Failure,
        Some("media"),
        false,
        "strongbox backup of media FAILED on web1"
    )]
    #[case(
        Event::Warning,
        Some("media"),
        false,
        "strongbox backup of media warns on web1"
    )]
    #[case(
        Event::Recovery,
        Some("media"),
        false,
        "strongbox backup of media recovered on web1"
    )]
    #[case(
        Event::Success,
        Some("media"),
        false,
        "strongbox backup of media succeeded on web1"
    )]
    #[case(
        Event::Failure,
        None,
        false,
        "strongbox backup of the repository FAILED on web1"
    )]
    #[case(
        Event::Failure,
        Some("media"),
        true,
        "strongbox still: backup of media FAILED on web1"
    )]
    #[case(Event::Test, None, false, "strongbox test message from web1")]
    fn summaries(
        #[case] status: Event,
        #[case] set: Option<&str>,
        #[case] reminder: bool,
        #[case] expected: &str,
    ) {
        let mut alert = alert(status, set);
        alert.reminder = reminder;
        assert_eq!(alert.summary(), expected);
    }

    #[test]
    fn json_carries_the_documented_fields() {
        let mut alert = alert(Event::Failure, Some("media")).with_error("disk full");
        alert.snapshot = Some("abc".to_string());
        let json = serde_json::to_value(&alert).unwrap();
        for field in [
            "set",
            "operation",
            "status",
            "error",
            "host",
            "time",
            "snapshot",
        ] {
            assert!(json.get(field).is_some(), "{field} missing from {json}");
        }
        assert_eq!(json["status"], "failure");
        assert!(json.get("reminder").is_none(), "only reminders say so");
    }

    #[test]
    fn slack_text_names_the_error() {
        let alert = alert(Event::Failure, Some("media")).with_error("disk full");
        let text = alert.slack()["text"].as_str().unwrap().to_string();
        assert!(
            text.contains("backup of media FAILED") && text.ends_with("\ndisk full"),
            "{text}"
        );
    }

    #[test]
    fn mail_text_lists_what_is_known() {
        let text = alert(Event::Failure, Some("media"))
            .with_error("disk full")
            .text();
        assert!(text.contains("error       disk full\n"), "{text}");
        assert!(!text.contains("snapshot"), "no snapshot, no row: {text}");
    }

    #[test]
    fn health_reads_as_a_state() {
        let alert = Alert::new(Event::Failure, Some("media"), "health", "repo", "web1");
        assert_eq!(
            alert.summary(),
            "strongbox health of media is CRITICAL on web1"
        );
    }

    #[test]
    fn test_is_not_a_configurable_event() {
        assert!(serde_json::from_str::<Event>("\"test\"").is_err());
        assert_eq!(
            serde_json::from_str::<Event>("\"success\"").unwrap(),
            Event::Success
        );
    }
}
