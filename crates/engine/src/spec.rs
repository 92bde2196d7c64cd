//! What to back up, as configuration: a set's name and its [`SourceSpec`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strongbox_db_dump::{PostgresSource, SqliteSource};
use strongbox_manifest::SourceKind;

use crate::source::{DumpSource, FilesSource, FilesSpec, PostgresSpec, Source, SqliteSpec};
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
}

impl SourceSpec {
    /// The kind of snapshots it makes.
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceSpec::Files(_) => SourceKind::Files,
            SourceSpec::Postgres(_) => SourceKind::Postgres,
            SourceSpec::Sqlite(_) => SourceKind::Sqlite,
        }
    }

    /// What it backs up, for messages: a path, or a connection string without its password.
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::Files(spec) => spec.path.display().to_string(),
            SourceSpec::Postgres(spec) => strongbox_db_dump::redact_conninfo(&spec.conninfo),
            SourceSpec::Sqlite(spec) => spec.path.display().to_string(),
        }
    }

    /// The source that backs it up.
    pub fn open(&self) -> Result<Box<dyn Source>, Error> {
        Ok(match self {
            SourceSpec::Files(spec) => Box::new(FilesSource::new(spec.clone())?),
            SourceSpec::Postgres(spec) => Box::new(DumpSource::new(Box::new(PostgresSource::new(
                &spec.conninfo,
            )?))),
            SourceSpec::Sqlite(spec) => {
                Box::new(DumpSource::new(Box::new(SqliteSource::new(&spec.path))))
            }
        })
    }
}

/// Options of one backup that every kind takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupOptions {
    /// Tags for the snapshot.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Snapshot time instead of now (imports, tests).
    #[serde(default)]
    pub time: Option<DateTime<Utc>>,
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
}

impl SetSpec {
    /// Back up `source` into `set` with default options.
    pub fn new(set: impl Into<String>, source: SourceSpec) -> Self {
        SetSpec {
            set: set.into(),
            source,
            options: BackupOptions::default(),
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
}
