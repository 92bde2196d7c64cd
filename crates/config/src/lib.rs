//! The strongbox configuration file, as a library: the CLI, a daemon and an embedding
//! program resolve a set, a repository and a prune the same way.
//!
//! A TOML file (`strongbox --config FILE`, `STRONGBOX_CONFIG`) holds the repository, the
//! `[s3]` settings passed to the S3 backend, the sets (`[sets.NAME]`: a source kind and its
//! keys, tags, a keep policy, schedules), and the `[verify]`, `[health]` and `[alerts]`
//! settings. `${VAR}` in any string expands from the environment, and an unset variable is
//! an error naming it; an unknown key is an error too, so a typo never drops a setting.
//! Serializing a configuration (`strongbox config check`) shows every secret as `***`.
//!
//! ```
//! use std::path::Path;
//! use strongbox_config::Config;
//! use strongbox_engine::{BackupOptions, SourceSpec};
//!
//! let text = r#"
//!     repo = "s3://backups/prod"
//!     [s3]
//!     endpoint = "http://minio.internal:9000"
//!     secret_access_key = "${S3_SECRET}"
//!     [sets.maindb]
//!     source = "postgres"
//!     conninfo = "postgresql://backup:${PGPASS}@db.internal/app"
//!     keep = { daily = 7 }
//! "#;
//! let env = |name: &str| Some(format!("value-of-{name}"));
//! let config = Config::parse(text, Path::new("strongbox.toml"), &env)?;
//!
//! let spec = config.set_spec("maindb", BackupOptions::default())?;
//! assert!(matches!(spec.source, SourceSpec::Postgres(_)));
//! assert_eq!(config.store_options().s3["secret_access_key"], "value-of-S3_SECRET");
//!
//! let shown = toml::to_string(&config)?;
//! assert!(!shown.contains("value-of-"), "secrets are redacted: {shown}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod daemon;
mod error;
mod expand;
mod load;
mod model;
mod resolve;
mod schedule;
mod secret;

pub use daemon::{Daemon, Timetable};
pub use error::Error;
pub use model::{
    AlertsConfig, Config, EmailAlert, HealthConfig, HumanDuration, SetConfig, VerifyCheck,
    VerifyConfig, Webhook,
};
pub use resolve::DEFAULT_REPO;
pub use schedule::{cron_file, systemd_units, Cron, Installation, Installed, Job, MARK};
pub use secret::Secret;
pub use strongbox_alert::{Event as AlertEvent, Notifier, WebhookFormat};
