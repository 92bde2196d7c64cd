//! What to back up, as configuration: a set's name and its [`SourceSpec`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strongbox_db_dump::{DatabaseSource, PostgresSource, SqliteSource};
use strongbox_manifest::{check_tag, SourceKind};

use crate::source::{
    BaseBackupSource, DumpSource, FilesSource, FilesSpec, PostgresSpec, Source, SqliteSpec,
};
use crate::Error;

/// What a set backs up: one variant per source kind, tagged `source` as in the
/// configuration file (`source = "files"`, `path = "/srv/media"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum SourceSpec {
    /// A directory tree.
    Files(FilesSpec),
    /// A PostgreSQL database.
    Postgres(PostgresSpec),
    /// An SQLite database file.
    Sqlite(SqliteSpec),
    /// Other sets taken together: a database and the files its rows reference.
    Bundle(BundleSpec),
}

/// A bundle: member sets backed up together under one record, databases first, and the
/// database's file references checked against the files member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSpec {
    /// The member sets (configured sets of any kind but bundle).
    pub members: Vec<String>,
    /// The reference cross-check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<References>,
}

/// A bundle's reference cross-check: `query` on the `database` member returns one text
/// column of paths relative to the `files` member's root (after `prefix` is stripped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct References {
    /// The database member.
    pub database: String,
    /// The SQL, run inside the dump's snapshot.
    pub query: String,
    /// The files member.
    pub files: String,
    /// Stripped from the start of each path that has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl SourceSpec {
    /// The kind of snapshots it makes.
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceSpec::Files(_) => SourceKind::Files,
            SourceSpec::Postgres(spec) if spec.physical => SourceKind::PostgresPhysical,
            SourceSpec::Postgres(_) => SourceKind::Postgres,
            SourceSpec::Sqlite(_) => SourceKind::Sqlite,
            SourceSpec::Bundle(_) => SourceKind::Bundle,
        }
    }

    /// What it backs up, for messages: a path, or a connection string without its password.
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::Files(spec) => spec.path.display().to_string(),
            SourceSpec::Postgres(spec) => strongbox_db_dump::redact_conninfo(&spec.conninfo),
            SourceSpec::Sqlite(spec) => spec.path.display().to_string(),
            SourceSpec::Bundle(spec) => format!("bundle of {}", spec.members.join(", ")),
        }
    }

    /// The database of a `postgres` or `sqlite` spec.
    pub(crate) fn open_database(&self) -> Result<Option<Box<dyn DatabaseSource>>, Error> {
        Ok(match self {
            SourceSpec::Postgres(spec) if spec.physical => None,
            SourceSpec::Postgres(spec) => Some(Box::new(PostgresSource::new(&spec.conninfo)?)),
            SourceSpec::Sqlite(spec) => Some(Box::new(SqliteSource::new(&spec.path))),
            SourceSpec::Files(_) | SourceSpec::Bundle(_) => None,
        })
    }

    /// The source that backs it up. A bundle has none of its own: [`Engine::backup`]
    /// takes its members.
    ///
    /// [`Engine::backup`]: crate::Engine::backup
    pub fn open(&self) -> Result<Box<dyn Source>, Error> {
        match self {
            SourceSpec::Files(spec) => return Ok(Box::new(FilesSource::new(spec.clone())?)),
            SourceSpec::Postgres(spec) if spec.physical => {
                return Ok(Box::new(BaseBackupSource::new(&spec.conninfo)?))
            }
            _ => {}
        }
        match self.open_database()? {
            Some(database) => Ok(Box::new(DumpSource::new(database))),
            None => Err(Error::BadBundle {
                set: self.describe(),
                reason: "a bundle is backed up through its members (Engine::backup)".to_string(),
            }),
        }
    }
}

/// Options of one backup that every kind takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupOptions {
    /// Tags for the snapshot.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Snapshot time instead of now (imports, tests); not in the future.
    #[serde(default)]
    pub time: Option<DateTime<Utc>>,
}

impl BackupOptions {
    /// Refuse a tag [`check_tag`] refuses, and a `time` ahead of the clock: that snapshot
    /// would be the latest until the clock caught up, so `health` would see a fresh backup
    /// every day while none ran.
    pub(crate) fn check(&self) -> Result<(), Error> {
        for tag in &self.tags {
            check_tag(tag)?;
        }
        match self.time {
            Some(time) if time > Utc::now() => Err(Error::FutureTime {
                time: time.to_rfc3339(),
            }),
            _ => Ok(()),
        }
    }
}

/// One backup to take: into which set, of what, with which options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetSpec {
    /// The set.
    pub set: String,
    /// What it backs up.
    pub source: SourceSpec,
    /// Tags and time.
    #[serde(default)]
    pub options: BackupOptions,
    /// A bundle's members, resolved (the configuration fills them in).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<SetSpec>,
}

impl SetSpec {
    /// Back up `source` into `set` with default options.
    pub fn new(set: impl Into<String>, source: SourceSpec) -> Self {
        SetSpec {
            set: set.into(),
            source,
            options: BackupOptions::default(),
            members: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_read_as_configuration_tables_and_refuse_unknown_keys() {
        let files: SourceSpec = toml::from_str(
            r#"source = "files"
               path = "/srv/media"
               exclude = ["*.tmp"]
               compression = "zstd:5""#,
        )
        .unwrap();
        let SourceSpec::Files(spec) = &files else {
            panic!("{files:?}")
        };
        assert_eq!(spec.excludes, ["*.tmp"]);
        assert_eq!(spec.compression, strongbox_archive::Compression::Zstd(5));
        assert_eq!(files.kind(), SourceKind::Files);

        let pg: SourceSpec =
            toml::from_str("source = \"postgres\"\nconninfo = \"postgresql://u:pw@db/app\"")
                .unwrap();
        assert_eq!(pg.kind(), SourceKind::Postgres);
        let shown = serde_json::to_string(&pg).unwrap();
        assert!(
            shown.contains("u:***@db/app") && !shown.contains("pw"),
            "{shown}"
        );

        for (text, complaint) in [
            ("source = \"files\"\npath = \"/x\"\ntypo = 1", "typo"),
            ("source = \"sqlite\"", "path"),
            ("source = \"postgres\"", "conninfo"),
            ("source = \"ftp\"\npath = \"/x\"", "ftp"),
            ("path = \"/x\"", "source"),
        ] {
            let err = toml::from_str::<SourceSpec>(text).unwrap_err().to_string();
            assert!(err.contains(complaint), "{text}: {err}");
        }
    }

    /// A library caller's tags are checked as the command line's are: the engine writes
    /// the record.
    #[test]
    fn backup_options_refuse_a_tag_and_a_time_the_record_must_not_hold() {
        let ok = BackupOptions {
            tags: vec!["nightly".into()],
            time: Some(Utc::now() - chrono::Duration::hours(1)),
        };
        assert!(ok.check().is_ok());
        for (options, said) in [
            (
                BackupOptions {
                    tags: vec!["nightly".into(), "a,b".into()],
                    ..ok.clone()
                },
                "invalid tag \"a,b\"",
            ),
            (
                BackupOptions {
                    time: Some(Utc::now() + chrono::Duration::hours(1)),
                    ..ok.clone()
                },
                "in the future",
            ),
        ] {
            let err = options.check().unwrap_err();
            assert!(crate::error_chain(&err).contains(said), "{err:?}");
        }
    }
}
