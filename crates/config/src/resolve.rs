//! What the CLI, a daemon and an embedding program resolve from a configuration the same way.

use strongbox_engine::{
    BackupOptions, HealthOptions, KeepPolicy, PruneOptions, SetPolicy, SetSpec, SourceSpec,
    VerifyLevel, VerifyOptions,
};
use strongbox_storage::{Location, StoreOptions};

use crate::model::HumanDuration;
use crate::{Config, Error, SetConfig};

/// The repository when neither `--repo`, `STRONGBOX_REPO` nor the file names one.
pub const DEFAULT_REPO: &str = "backups";

impl Config {
    /// The configuration in effect: `repo` and `storage_class` given on the command line
    /// (or in their environment variables) win over the file's.
    pub fn with_overrides(mut self, repo: Option<String>, storage_class: Option<String>) -> Self {
        self.repo = repo
            .or(self.repo)
            .or_else(|| Some(DEFAULT_REPO.to_string()));
        self.storage_class = storage_class.or(self.storage_class);
        self
    }

    /// The repository's location.
    pub fn location(&self) -> Result<Location, strongbox_storage::Error> {
        Location::parse(self.repo.as_deref().unwrap_or(DEFAULT_REPO))
    }

    /// The settings of the store behind the location.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            s3: self.s3.clone(),
        }
    }

    /// How to verify at `level` by the configuration: `[verify] scratch_postgres` and each
    /// set's `verify_checks` (scratch space given on the command line goes on top).
    pub fn verify_options(&self, level: VerifyLevel) -> VerifyOptions {
        VerifyOptions {
            level,
            scratch_postgres: self.verify.scratch_postgres.clone(),
            checks: self
                .sets
                .iter()
                .map(|(name, set)| (name.clone(), set.verify_checks.clone()))
                .collect(),
            ..VerifyOptions::default()
        }
    }

    /// How long prune keeps run-journal entries: `journal_keep`, else the engine's default.
    pub fn journal_keep(&self) -> std::time::Duration {
        self.journal_keep.as_ref().map_or_else(
            || PruneOptions::default().journal_keep,
            HumanDuration::duration,
        )
    }

    /// The health thresholds of `[health]` (defaults where unset) and each set's `keep`.
    pub fn health_options(&self) -> HealthOptions {
        let defaults = HealthOptions::default();
        HealthOptions {
            max_age: self
                .health
                .max_age
                .as_ref()
                .map_or(defaults.max_age, |d| d.duration()),
            max_disk_usage: self
                .health
                .max_disk_usage
                .unwrap_or(defaults.max_disk_usage),
            anomaly_drop: self.health.anomaly_drop.unwrap_or(defaults.anomaly_drop),
            verify_max_age: self
                .health
                .verify_max_age
                .as_ref()
                .map_or(defaults.verify_max_age, |d| d.duration()),
            wal_warning: self
                .health
                .wal_warning
                .as_ref()
                .map_or(defaults.wal_warning, |d| d.duration()),
            wal_critical: self
                .health
                .wal_critical
                .as_ref()
                .map_or(defaults.wal_critical, |d| d.duration()),
            policies: self
                .sets
                .iter()
                .filter_map(|(name, set)| Some((name.clone(), set.keep.clone()?)))
                .collect(),
            expected_sets: self.sets.keys().cloned().collect(),
        }
    }

    /// Refuse the first set with a `${VAR}` the environment lacks: what a command that
    /// answers for every set (`config check`) must do. Backing a set up refuses it too.
    pub fn check_variables(&self) -> Result<(), Error> {
        self.unresolved
            .values()
            .next()
            .map_or(Ok(()), |u| Err(u.error()))
    }

    /// The set called `name`.
    pub fn set(&self, name: &str) -> Result<&SetConfig, Error> {
        self.sets.get(name).ok_or_else(|| Error::UnknownSet {
            name: name.to_string(),
            known: self.sets.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// The backup of set `name`: its source, its tags followed by `extra.tags`, and
    /// `extra.time`.
    pub fn set_spec(&self, name: &str, extra: BackupOptions) -> Result<SetSpec, Error> {
        let set = self.set(name)?;
        if let Some(unresolved) = self.unresolved.get(name) {
            return Err(unresolved.error());
        }
        let members = match &set.source {
            SourceSpec::Bundle(bundle) => bundle
                .members
                .iter()
                .map(|member| self.set_spec(member, BackupOptions::default()))
                .collect::<Result<_, _>>()?,
            _ => Vec::new(),
        };
        Ok(SetSpec {
            set: name.to_string(),
            source: set.source.clone(),
            options: BackupOptions {
                tags: set.tags.iter().chain(&extra.tags).cloned().collect(),
                time: extra.time,
            },
            members,
        })
    }

    /// Refuse the first of `names` that neither the configuration nor the repository has
    /// (`repo_sets`, listed once, and only for a name the configuration lacks).
    pub fn known_sets<'a, E: From<Error>>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
        repo_sets: impl FnOnce() -> Result<Vec<String>, E>,
    ) -> Result<(), E> {
        let unconfigured: Vec<&str> = names
            .into_iter()
            .filter(|n| !self.sets.contains_key(*n))
            .collect();
        if unconfigured.is_empty() {
            return Ok(());
        }
        let in_repo = repo_sets()?;
        match unconfigured
            .into_iter()
            .find(|n| !in_repo.iter().any(|s| s == n))
        {
            Some(name) => Err(Error::NoSuchSet {
                name: name.to_string(),
            }
            .into()),
            None => Ok(()),
        }
    }

    /// What `prune [SET]` prunes with: rules given on the command line apply to `set`, or to
    /// every set in the repository (`repo_sets`); without rules, each configured set (or
    /// just `set`) is pruned with its own `keep`. A `set` that is neither configured nor in
    /// the repository is refused.
    pub fn prune_policies<E: From<Error>>(
        &self,
        set: Option<&str>,
        rules: &KeepPolicy,
        repo_sets: impl FnOnce() -> Result<Vec<String>, E>,
    ) -> Result<Vec<SetPolicy>, E> {
        let with_rules = !rules.is_empty() || self.sets.is_empty();
        let sets = match set {
            Some(name) => {
                self.known_sets([name], repo_sets)?;
                vec![name.to_string()]
            }
            None if with_rules => repo_sets()?,
            None => self.sets.keys().cloned().collect(),
        };
        if with_rules {
            return Ok(sets
                .into_iter()
                .map(|set| SetPolicy {
                    set,
                    policy: rules.clone(),
                })
                .collect());
        }
        // A set without `keep` is kept whole when all are pruned; named, or when no set has
        // one, it is a mistake that would prune nothing night after night.
        let mut policies = Vec::new();
        for name in sets {
            match (self.set(&name)?.keep.clone(), set) {
                (Some(policy), _) => policies.push(SetPolicy { set: name, policy }),
                (None, Some(_)) => return Err(Error::NoKeepPolicy { set: name }.into()),
                (None, None) => {}
            }
        }
        if policies.is_empty() {
            return Err(Error::NoKeepPolicies.into());
        }
        Ok(policies)
    }
}
