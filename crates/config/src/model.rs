//! The configuration's types: what each table of the file holds.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use strongbox_alert::{Email, EmailSettings, Event, Notifier, Webhook as AlertHook, WebhookFormat};
use strongbox_engine::{SourceSpec, Timezone, VerifyLevel};
use strongbox_retention::KeepPolicy;

use crate::schedule::Cron;
use crate::secret::{is_secret_s3_key, redact_url, redact_userinfo, Secret};

/// The whole file.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The repository URL (`--repo` and `STRONGBOX_REPO` win over it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Storage class of data objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// object_store S3 settings (`endpoint`, `region`, `allow_http`, …), passed to the S3
    /// backend; `AWS_*` variables win over them. Credentials are shown as `***`.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "redacted_s3",
        deserialize_with = "s3_values"
    )]
    pub s3: BTreeMap<String, String>,
    /// The sets, by name.
    #[serde(default)]
    pub sets: BTreeMap<String, SetConfig>,
    /// Restore tests.
    #[serde(default, skip_serializing_if = "VerifyConfig::is_empty")]
    pub verify: VerifyConfig,
    /// Health thresholds.
    #[serde(default, skip_serializing_if = "HealthConfig::is_empty")]
    pub health: HealthConfig,
    /// Alert channels.
    #[serde(default, skip_serializing_if = "AlertsConfig::is_empty")]
    pub alerts: AlertsConfig,
    /// How long `prune` keeps run-journal entries (default 90d; each set's last run of
    /// every operation stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_keep: Option<HumanDuration>,
    /// The timezone of prune's hourly/daily/weekly/monthly/yearly buckets (`UTC`, `+02:00`,
    /// `Europe/Berlin`; `prune --timezone` wins; default UTC), so that scheduled prunes
    /// keep by the operators' calendar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<Timezone>,
    /// Sets with a `${VAR}` the environment lacks, refused when their source is used
    /// ([`Config::set_spec`]): one set's missing secret does not stop the others' jobs.
    #[serde(skip)]
    pub(crate) unresolved: BTreeMap<String, Unresolved>,
}

/// A set's first `${VAR}` that is not set: where, and which.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unresolved {
    pub(crate) path: std::path::PathBuf,
    pub(crate) key: String,
    pub(crate) var: String,
}

impl Unresolved {
    pub(crate) fn error(&self) -> crate::Error {
        crate::Error::UnsetVariable {
            path: self.path.clone(),
            key: self.key.clone(),
            var: self.var.clone(),
        }
    }
}

fn redacted_s3<S: Serializer>(s3: &BTreeMap<String, String>, s: S) -> Result<S::Ok, S::Error> {
    let shown: BTreeMap<&str, std::borrow::Cow<'_, str>> = s3
        .iter()
        .map(|(k, v)| {
            let v = if is_secret_s3_key(k) {
                "***".into()
            } else {
                redact_userinfo(v)
            };
            (k.as_str(), v)
        })
        .collect();
    shown.serialize(s)
}

/// Debug output of the types that hold credentials, passwords, connection strings or
/// webhook URLs is their serialized form (what `config show` prints), which shows each
/// of them as `***`: a derived `Debug` would show them in clear.
macro_rules! debug_as_shown {
    ($($type:ty),+) => {$(
        impl fmt::Debug for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let shown = serde_json::to_string(self).map_err(|_| fmt::Error)?;
                write!(f, "{} {shown}", stringify!($type))
            }
        }
    )+};
}

debug_as_shown!(Config, SetConfig, VerifyConfig, AlertsConfig, Webhook);

/// `[s3]` values may be strings, booleans or numbers (`allow_http = true`).
pub(crate) fn s3_values<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Text(String),
        Flag(bool),
        Number(i64),
    }
    let raw = BTreeMap::<String, Value>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Text(t) => t,
                Value::Flag(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
            };
            (k, v)
        })
        .collect())
}

/// One set: what it backs up (`source = "files"` and that kind's keys) and the settings
/// every kind has.
#[derive(Clone, PartialEq, Serialize)]
pub struct SetConfig {
    /// What the set backs up.
    #[serde(flatten)]
    pub source: SourceSpec,
    /// Tags for every snapshot.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Keep policy for `prune`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep: Option<KeepPolicy>,
    /// When to back up: a cron expression in local time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Cron>,
    /// When to verify the newest snapshot, likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_schedule: Option<Cron>,
    /// When to prune by `keep`, likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune_schedule: Option<Cron>,
    /// Queries a restore test runs against the restored database.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verify_checks: Vec<VerifyCheck>,
    /// Verify every new snapshot at this level (`backup SET`); a failure exits 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyLevel>,
}

/// The keys every kind of set has; the rest of a set's table is its source's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetOptions {
    #[serde(default)]
    tags: Vec<String>,
    keep: Option<KeepPolicy>,
    schedule: Option<Cron>,
    verify_schedule: Option<Cron>,
    prune_schedule: Option<Cron>,
    #[serde(default)]
    verify_checks: Vec<VerifyCheck>,
    verify: Option<VerifyLevel>,
}

const SET_OPTIONS: [&str; 7] = [
    "tags",
    "keep",
    "schedule",
    "verify_schedule",
    "prune_schedule",
    "verify_checks",
    "verify",
];

impl SetConfig {
    /// Split a set's table into its source and the common settings.
    pub(crate) fn from_table(mut table: toml::Table) -> Result<Self, String> {
        let mut options = toml::Table::new();
        for key in SET_OPTIONS {
            if let Some(value) = table.remove(key) {
                options.insert(key.to_string(), value);
            }
        }
        let options: SetOptions = from_value(toml::Value::Table(options))?;
        for tag in &options.tags {
            strongbox_manifest::check_tag(tag).map_err(|e| format!("tags: {e}"))?;
        }
        let source = source_spec(table)?;
        Ok(SetConfig {
            source,
            tags: options.tags,
            keep: options.keep,
            schedule: options.schedule,
            verify_schedule: options.verify_schedule,
            prune_schedule: options.prune_schedule,
            verify_checks: options.verify_checks,
            verify: options.verify,
        })
    }
}

/// A set's source table. Read through its kind's own type, not the tagged enum, which
/// buffers the table and so loses the key an error is about (`path: invalid type…`).
fn source_spec(table: toml::Table) -> Result<SourceSpec, String> {
    let kind = match table.get("source") {
        Some(toml::Value::String(kind)) => kind.clone(),
        _ => return from_value(toml::Value::Table(table)),
    };
    let mut spec = table.clone();
    spec.remove("source");
    let spec = toml::Value::Table(spec);
    match kind.as_str() {
        "files" => from_value(spec).map(SourceSpec::Files),
        "postgres" => from_value(spec).map(SourceSpec::Postgres),
        "sqlite" => from_value(spec).map(SourceSpec::Sqlite),
        "bundle" => from_value(spec).map(SourceSpec::Bundle),
        // serde's own message lists the kinds there are.
        _ => from_value(toml::Value::Table(table)),
    }
}

/// `value` as a `T`; an error names the key it is about (`max_disk_usage: invalid value…`)
/// as the rest of a sentence: serde says "missing field `path`", the operator reads "needs
/// `path`".
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(value: toml::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let text = e.inner().message().trim().replace('\n', " ");
        let text = match text.strip_prefix("missing field ") {
            Some(field) => format!("needs {field}"),
            None => text,
        };
        match e.path().to_string().as_str() {
            "." => text,
            key => format!("{key}: {text}"),
        }
    })
}

impl<'de> Deserialize<'de> for SetConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SetConfig::from_table(toml::Table::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// A query a restore test runs against the restored database: no row, or the one value
/// `expect` says.
pub use strongbox_db_dump::SqlCheck as VerifyCheck;

/// `[verify]`: where restore tests of PostgreSQL snapshots make their scratch databases.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// A connection string to a server (and role) that may create databases.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "redacted_conninfo"
    )]
    pub scratch_postgres: Option<String>,
}

impl VerifyConfig {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

fn redacted_conninfo<S: Serializer>(conninfo: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    conninfo
        .as_deref()
        .map(strongbox_db_dump::redact_conninfo)
        .serialize(s)
}

/// A length of time as written (`48h`, `7d`, `90min`).
#[derive(Clone, PartialEq, Eq)]
pub struct HumanDuration {
    text: String,
    duration: Duration,
}

impl HumanDuration {
    /// The length.
    pub fn duration(&self) -> Duration {
        self.duration
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        humantime::parse_duration(text)
            .map(|duration| HumanDuration {
                text: text.to_string(),
                duration,
            })
            .map_err(|e| format!("invalid duration {text:?}: {e} (write 48h, 7d, 90min)"))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

/// `[health]`: the thresholds of `health`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Critical when the last successful backup of a set is older (default 48h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<HumanDuration>,
    /// Critical when the repository's disk is fuller than this percentage.
    #[serde(
        default,
        deserialize_with = "percent",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_disk_usage: Option<u8>,
    /// Warn when a snapshot is this many percent smaller than the median of the last 7.
    #[serde(
        default,
        deserialize_with = "percent",
        skip_serializing_if = "Option::is_none"
    )]
    pub anomaly_drop: Option<u8>,
    /// Warn when the newest snapshot older than this has not been verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_max_age: Option<HumanDuration>,
    /// Physical sets: warn when the newest archived WAL is older (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_warning: Option<HumanDuration>,
    /// Physical sets: critical when the newest archived WAL is older (default 30m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_critical: Option<HumanDuration>,
}

/// A percentage, 0 to 100.
fn percent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    match Option::<i64>::deserialize(d)? {
        Some(p @ 0..=100) => Ok(u8::try_from(p).ok()),
        Some(p) => Err(D::Error::custom(format!(
            "{p} is not a percentage from 0 to 100"
        ))),
        None => Ok(None),
    }
}

impl HealthConfig {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// `[alerts]`: where alerts go.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Which events are sent (default failure, warning and recovery; `notify test` is
    /// always sent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<Event>,
    /// Mail through an SMTP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailAlert>,
    /// HTTP receivers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
}

impl AlertsConfig {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// The channels configured, sending the events `on` names (by default failure,
    /// warning and recovery). Checks addresses, URLs and the CA file; connects to nothing.
    pub fn notifier(&self) -> Result<Notifier, strongbox_alert::Error> {
        let on = if self.on.is_empty() {
            Event::defaults()
        } else {
            self.on.clone()
        };
        let mut notifier = Notifier::new(on);
        if let Some(email) = &self.email {
            notifier = notifier.with_channel(Email::new(EmailSettings {
                server: email.smtp.clone(),
                starttls: email.starttls,
                username: email.username.clone(),
                password: email.password.as_ref().map(|p| p.expose().to_string()),
                from: email.from.clone(),
                to: email.to.clone(),
                ca_file: email.ca_file.clone(),
                timeout: SMTP_TIMEOUT,
            })?);
        }
        for hook in &self.webhooks {
            notifier =
                notifier.with_channel(AlertHook::new(&hook.url, hook.format, WEBHOOK_TIMEOUT)?);
        }
        Ok(notifier)
    }
}

/// How long an SMTP server may take to answer; a backup waits for its alert.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a webhook may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(15);

/// Mail alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailAlert {
    /// `smtp://host:port`.
    pub smtp: String,
    /// Upgrade the connection with STARTTLS.
    #[serde(default)]
    pub starttls: bool,
    /// Login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password (shown as `***`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// A PEM file of CA certificates to trust besides the system's (a private relay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// An HTTP receiver of alerts.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// The URL (shown without its path, which often is the token).
    #[serde(serialize_with = "redacted_url")]
    pub url: String,
    /// The body's shape.
    #[serde(default)]
    pub format: WebhookFormat,
}

fn redacted_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url))
}
