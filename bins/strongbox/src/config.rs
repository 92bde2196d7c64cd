//! The configuration file (`--config FILE` or `STRONGBOX_CONFIG`): the repository, S3
//! settings and named sets with their source and keep policy. Command-line flags and
//! environment variables win over it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use strongbox_archive::Compression;
use strongbox_retention::KeepPolicy;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Default repository URL.
    pub repo: Option<String>,
    /// Storage class of data objects.
    pub storage_class: Option<String>,
    /// object_store S3 settings (`endpoint`, `region`, `allow_http`, …): each becomes the
    /// `AWS_<KEY>` environment variable unless that is already set.
    #[serde(default)]
    pub s3: BTreeMap<String, toml::Value>,
    /// Named sets.
    #[serde(default)]
    pub sets: BTreeMap<String, SetConfig>,
}

/// What a set backs up, and how long it keeps it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    /// `files`, `postgres` or `sqlite`.
    pub source: SourceType,
    /// Directory (files) or database file (sqlite).
    pub path: Option<PathBuf>,
    /// Connection string (postgres); give the password through PGPASSWORD or ~/.pgpass.
    pub conninfo: Option<String>,
    /// Exclude patterns (files).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Compression (files).
    pub compression: Option<Compression>,
    /// Tags for every snapshot.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Keep policy for `prune`.
    pub keep: Option<KeepPolicy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    Files,
    Postgres,
    Sqlite,
}

impl Config {
    /// Read `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading configuration {}", path.display()))?;
        let config: Config = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("configuration {}: {}", path.display(), e.message()))?;
        for (name, set) in &config.sets {
            strongbox_storage::layout::check_set_name(name)?;
            let needs = match set.source {
                SourceType::Files | SourceType::Sqlite => set.path.is_none().then_some("path"),
                SourceType::Postgres => set.conninfo.is_none().then_some("conninfo"),
            };
            if let Some(field) = needs {
                bail!(
                    "configuration {}: set {name:?} needs `{field}`",
                    path.display()
                );
            }
        }
        Ok(config)
    }

    /// Export the `[s3]` settings as `AWS_*` variables that are not set already. Runs
    /// before any thread starts, so changing the environment is sound.
    pub fn export_s3_settings(&self) {
        for (key, value) in &self.s3 {
            let name = format!("AWS_{}", key.to_ascii_uppercase());
            if std::env::var_os(&name).is_none() {
                let value = match value {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Integer(n) => n.to_string(),
                    other => {
                        eprintln!("strongbox: warning: ignoring [s3] {key}: {other:?} is not a string, number or boolean");
                        continue;
                    }
                };
                std::env::set_var(name, value);
            }
        }
    }

    /// The set called `name`.
    pub fn set(&self, name: &str) -> Result<&SetConfig> {
        self.sets.get(name).with_context(|| {
            let known: Vec<&str> = self.sets.keys().map(String::as_str).collect();
            format!(
                "no set {name:?} in the configuration (it defines: {})",
                known.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sets_and_refuses_incomplete_ones() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(
            &good,
            r#"
repo = "s3://backups/prod"
[s3]
endpoint = "http://127.0.0.1:9000"
allow_http = true
[sets.media]
source = "files"
path = "/srv/media"
exclude = ["*.tmp"]
compression = "zstd:5"
keep = { within = "30d" }
[sets.maindb]
source = "postgres"
conninfo = "postgresql://backup@db/app"
keep = { daily = 7, weekly = 4, monthly = 12 }
"#,
        )
        .unwrap();
        let config = Config::load(&good).unwrap();
        assert_eq!(config.repo.as_deref(), Some("s3://backups/prod"));
        assert_eq!(
            config.set("maindb").unwrap().keep.as_ref().unwrap().daily,
            Some(7)
        );
        assert_eq!(
            config.set("media").unwrap().compression,
            Some(Compression::Zstd(5))
        );
        assert!(config
            .set("nope")
            .unwrap_err()
            .to_string()
            .contains("media"));

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[sets.db]\nsource = \"postgres\"\n").unwrap();
        let err = Config::load(&bad).unwrap_err().to_string();
        assert!(err.contains("needs `conninfo`"), "{err}");
        std::fs::write(
            &bad,
            "[sets.db]\nsource = \"files\"\npath = \"/x\"\ntypo = 1\n",
        )
        .unwrap();
        let err = Config::load(&bad).unwrap_err().to_string();
        assert!(err.contains("typo"), "{err}");
    }
}
