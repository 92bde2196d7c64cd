use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use strongbox_engine::{BundleSpec, SourceSpec, Timezone};
use strongbox_manifest::SourceKind;

use crate::expand::{expand_value, BadReference};
use crate::model::{
    AlertsConfig, HealthConfig, HumanDuration, SetConfig, Unresolved, VerifyConfig,
};
use crate::{Config, Error};

/// The file before its sets are read, so that an error in a set can name it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    repo: Option<String>,
    storage_class: Option<String>,
    #[serde(default, deserialize_with = "crate::model::s3_values")]
    s3: BTreeMap<String, String>,
    #[serde(default)]
    sets: BTreeMap<String, toml::Table>,
    #[serde(default)]
    verify: VerifyConfig,
    #[serde(default)]
    health: HealthConfig,
    #[serde(default)]
    alerts: AlertsConfig,
    journal_keep: Option<HumanDuration>,
    timezone: Option<Timezone>,
}

impl Config {
    /// Read `path`, expanding `${VAR}` from the process environment.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path, &|name| std::env::var(name).ok())
    }

    /// Parse a configuration read from `path`, expanding `${VAR}` with `env`. Unknown keys,
    /// unset variables, invalid set names and unknown `[s3]` settings are errors; an unset
    /// variable in a set is that set's error, when it is backed up
    /// ([`Config::set_spec`], [`Config::check_variables`]).
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, Error> {
        let path = path.to_path_buf();
        // The parser's message and line, not the error: its Display quotes the line, which
        // may hold a password.
        let mut table = toml::from_str::<toml::Table>(text).map_err(|e| Error::Syntax {
            line: e.span().map_or(1, |span| {
                1 + text[..span.start.min(text.len())].matches('\n').count()
            }),
            message: e.message().trim().replace('\n', " "),
            path: path.clone(),
        })?;
        let refused = |(key, bad)| match bad {
            BadReference::Unset(var) => Error::UnsetVariable {
                path: path.clone(),
                key,
                var,
            },
            BadReference::Malformed(text) => Error::BadReference {
                path: path.clone(),
                key,
                text,
            },
        };
        // A set's unset variable is held against that set alone; everything else must
        // expand.
        let mut unresolved = BTreeMap::new();
        let mut sets = table.remove("sets");
        let mut table = toml::Value::Table(table);
        expand_value(&mut table, "", env).map_err(refused)?;
        if let Some(toml::Value::Table(each)) = &mut sets {
            for (name, set) in each.iter_mut() {
                match expand_value(set, &format!("sets.{name}"), env) {
                    Err((key, BadReference::Unset(var))) => {
                        let path = path.clone();
                        unresolved.insert(name.clone(), Unresolved { path, key, var });
                    }
                    other => other.map_err(refused)?,
                }
            }
        }
        if let (Some(sets), toml::Value::Table(top)) = (sets, &mut table) {
            top.insert("sets".to_string(), sets);
        }
        let raw: Raw = crate::model::from_value(table).map_err(|message| Error::Invalid {
            path: path.clone(),
            message,
        })?;
        let storage = |source| Error::Storage {
            path: path.clone(),
            source,
        };
        let mut sets = BTreeMap::new();
        for (name, table) in raw.sets {
            strongbox_storage::layout::check_set_name(&name).map_err(storage)?;
            // A variable left unexpanded in a typed setting (`schedule`, `keep`) makes it
            // invalid: the variable is the cause to name.
            let set = SetConfig::from_table(table).map_err(|message| {
                unresolved.get(&name).map_or_else(
                    || Error::Set {
                        path: path.clone(),
                        name: name.clone(),
                        message,
                    },
                    Unresolved::error,
                )
            })?;
            sets.insert(name, set);
        }
        let config = Config {
            repo: raw.repo,
            storage_class: raw.storage_class,
            s3: raw.s3,
            sets,
            verify: raw.verify,
            health: raw.health,
            alerts: raw.alerts,
            journal_keep: raw.journal_keep,
            timezone: raw.timezone,
            unresolved,
        };
        for (name, set) in &config.sets {
            if let SourceSpec::Bundle(bundle) = &set.source {
                check_bundle(&config, name, bundle).map_err(|message| Error::Set {
                    path: path.clone(),
                    name: name.clone(),
                    message,
                })?;
            }
        }
        config.store_options().check().map_err(storage)?;
        if let Some(repo) = &config.repo {
            strongbox_storage::Location::parse(repo).map_err(storage)?;
        }
        config
            .alerts
            .notifier()
            .map_err(|source| Error::Alerts { path, source })?;
        Ok(config)
    }
}

/// A bundle's members are other configured sets, not bundles, and its references name a
/// database member and a files member.
fn check_bundle(config: &Config, name: &str, bundle: &BundleSpec) -> Result<(), String> {
    if bundle.members.is_empty() {
        return Err("is a bundle without `members`".to_string());
    }
    let kind = |member: &str| config.sets.get(member).map(|s| s.source.kind());
    for member in &bundle.members {
        if member == name {
            return Err("is a member of itself".to_string());
        }
        match kind(member) {
            None => {
                return Err(format!(
                    "has member {member:?}, which is not a configured set"
                ))
            }
            Some(SourceKind::Bundle) => {
                return Err(format!(
                    "has member {member:?}, a bundle; bundles do not nest"
                ))
            }
            Some(SourceKind::PostgresPhysical) => return Err(physical_member(member)),
            Some(_) => {}
        }
    }
    if let Some(r) = &bundle.references {
        let member = |m: &str| bundle.members.iter().any(|x| x == m);
        if !member(&r.database)
            || !matches!(
                kind(&r.database),
                Some(SourceKind::Postgres | SourceKind::Sqlite)
            )
        {
            return Err(format!(
                "has references.database {:?}, which is not a PostgreSQL or SQLite member",
                r.database
            ));
        }
        if !member(&r.files) || kind(&r.files) != Some(SourceKind::Files) {
            return Err(format!(
                "has references.files {:?}, which is not a files member",
                r.files
            ));
        }
    }
    Ok(())
}

/// Why a base backup cannot be a bundle's member.
fn physical_member(member: &str) -> String {
    format!(
        "has member {member:?}, a base backup (physical = true), which restores only into a \
         data directory and so never with the other members: give the bundle a pg_dump set of \
         that database"
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use strongbox_engine::{BackupOptions, SourceSpec};

    use crate::{Config, Error};

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(text, Path::new("test.toml"), &|name| match name {
            "PGPASS" => Some("hunter22".to_string()),
            _ => None,
        })
    }

    const GOOD: &str = r#"
repo = "s3://backups/prod"
[s3]
endpoint = "http://127.0.0.1:9000"
allow_http = true
secret_access_key = "top-secret"
[sets.media]
source = "files"
path = "/srv/media"
exclude = ["*.tmp"]
compression = "zstd:5"
tags = ["nightly"]
keep = { within = "30d" }
schedule = "0 2 * * *"
[sets.maindb]
source = "postgres"
conninfo = "postgresql://backup:${PGPASS}@db/app"
keep = { daily = 7, weekly = 4, monthly = 12 }
verify_checks = [ { name = "users have profiles", query = "SELECT 1 WHERE false" } ]
[verify]
scratch_postgres = "postgresql://verify:${PGPASS}@localhost/postgres"
[health]
max_age = "48h"
max_disk_usage = 80
[alerts]
on = ["failure", "recovery"]
email = { smtp = "smtp://mail:587", starttls = true, username = "u", password = "${PGPASS}", from = "strongbox@web1", to = ["ops@example.com"] }
webhooks = [ { url = "https://hooks.example/services/T0/SECRET", format = "slack" } ]
"#;

    #[test]
    fn parses_sets_policies_and_settings() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.repo.as_deref(), Some("s3://backups/prod"));
        assert_eq!(
            config.set("maindb").unwrap().keep.as_ref().unwrap().daily,
            Some(7)
        );
        let SourceSpec::Files(media) = &config.set("media").unwrap().source else {
            panic!("files")
        };
        assert_eq!(media.compression, strongbox_archive::Compression::Zstd(5));
        assert_eq!(config.store_options().s3["allow_http"], "true");
        assert_eq!(
            config.health.max_age.as_ref().unwrap().duration().as_secs(),
            48 * 3600
        );
        let spec = config
            .set_spec(
                "media",
                BackupOptions {
                    tags: vec!["manual".into()],
                    time: None,
                },
            )
            .unwrap();
        assert_eq!(spec.options.tags, ["nightly", "manual"]);
        let SourceSpec::Postgres(db) = &config.set("maindb").unwrap().source else {
            panic!("postgres")
        };
        assert_eq!(
            db.conninfo, "postgresql://backup:hunter22@db/app",
            "expanded"
        );
        let err = config.set("nope").unwrap_err().to_string();
        assert!(
            err.contains("no set \"nope\"") && err.contains("maindb, media"),
            "{err}"
        );
    }

    /// Regression: the variable of one set unset in a cron job's environment failed every
    /// job, the other sets' backups, prunes and health checks included.
    #[test]
    fn an_unset_variable_in_a_set_refuses_that_set_alone() {
        let text = GOOD.replace("backup:${PGPASS}@", "backup:${MAINDB_PASSWORD}@");
        let config = parse(&text).unwrap();
        assert!(config.set_spec("media", BackupOptions::default()).is_ok());
        assert!(config.set("maindb").unwrap().keep.is_some());
        for err in [
            config
                .set_spec("maindb", BackupOptions::default())
                .unwrap_err(),
            config.check_variables().unwrap_err(),
        ] {
            assert!(
                matches!(&err, Error::UnsetVariable { key, var, .. }
                    if key == "sets.maindb.conninfo" && var == "MAINDB_PASSWORD"),
                "{err}"
            );
        }
        let outside = GOOD.replace(
            "postgresql://verify:${PGPASS}@",
            "postgresql://verify:${VERIFY_PASSWORD}@",
        );
        let err = parse(&outside).unwrap_err();
        assert!(matches!(err, Error::UnsetVariable { .. }), "{err}");
        let typed = format!(
            "{text}\n[sets.media2]\nsource = \"files\"\npath = \"/m\"\nschedule = \"${{WHEN}}\"\n"
        );
        let err = parse(&typed).unwrap_err();
        assert!(
            matches!(&err, Error::UnsetVariable { key, .. } if key == "sets.media2.schedule"),
            "{err}"
        );
        let malformed = GOOD.replace("${PGPASS}@db", "${PGPASS@db");
        let err = parse(&malformed).unwrap_err();
        assert!(matches!(err, Error::BadReference { .. }), "{err}");
    }

    #[test]
    fn the_effective_configuration_shows_no_secret() {
        let config = parse(GOOD)
            .unwrap()
            .with_overrides(None, Some("STANDARD_IA".into()));
        let shown = toml::to_string(&config).unwrap();
        let debugged = format!("{config:?} {:?}", config.store_options());
        for secret in ["hunter22", "top-secret", "SECRET"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
            assert!(!debugged.contains(secret), "{secret} in {debugged}");
        }
        assert!(shown.contains("storage_class = \"STANDARD_IA\""), "{shown}");
        assert!(
            shown.contains("endpoint = \"http://127.0.0.1:9000\""),
            "{shown}"
        );
        assert!(shown.contains("postgresql://backup:***@db/app"), "{shown}");
        assert!(shown.contains("https://hooks.example/***"), "{shown}");
        // What is shown reads back as a configuration.
        parse(&shown).unwrap();
    }

    #[test]
    fn bad_configurations_name_the_file_the_key_and_the_cause() {
        let cases = [
            (
                "[sets.db]\nsource = \"postgres\"\n",
                "set \"db\" needs `conninfo`",
            ),
            ("[sets.x]\nsource = \"files\"\n", "needs `path`"),
            (
                "[sets.db]\nsource = \"files\"\npath = \"/x\"\ntypo = 1\n",
                "typo",
            ),
            (
                "[sets.db]\nsource = \"files\"\npath = \"/x\"\nkeep = { dayly = 1 }\n",
                "set \"db\" keep.dayly: unknown field `dayly`",
            ),
            (
                "[sets.db]\nsource = \"files\"\npath = \"/x\"\nkeep = { daily = -1 }\n",
                "keep.daily: invalid value: integer `-1`",
            ),
            (
                "[sets.m]\nsource = \"files\"\npath = 5\n",
                "set \"m\" path: invalid type: integer `5`",
            ),
            (
                "[sets.m]\nsource = \"files\"\npath = \"/x\"\nrehash = \"yes\"\n",
                "set \"m\" rehash: invalid type",
            ),
            (
                "[sets.m]\nsource = \"files\"\npath = \"/x\"\nexclude = [1]\n",
                "set \"m\" exclude[0]: invalid type",
            ),
            (
                "[sets.m]\nsource = \"filez\"\npath = \"/x\"\n",
                "set \"m\" source: unknown variant `filez`",
            ),
            (
                "[sets.db]\nsource = \"postgres\"\nconninfo = 5\n",
                "set \"db\" conninfo: invalid type",
            ),
            (
                "[health]\nmax_disk_usage = 500\n",
                "health.max_disk_usage: 500 is not a percentage from 0 to 100",
            ),
            ("[health]\nanomaly_drop = 101\n", "health.anomaly_drop: 101 is not"),
            (
                "[sets.\"a b\"]\nsource = \"files\"\npath = \"/x\"\n",
                "invalid set name",
            ),
            ("repo = \"ftp://x/y\"\n", "ftp"),
            ("[s3]\nendpoitn = \"x\"\n", "endpoitn"),
            ("[health]\nmax_age = \"soon\"\n", "soon"),
            ("colour = \"blue\"\n", "colour"),
            ("repo = \"${REPO_URL}\"\n", "repo uses ${REPO_URL}"),
            ("repo = \n", "line 1"),
            (
                "[alerts]\nemail = { smtp = \"mail:25\", from = \"a@b.c\", to = [\"d@e.f\"] }\n",
                "[alerts]: SMTP server \"mail:25\": the scheme must be smtp:// or smtps://",
            ),
            (
                "[alerts]\nemail = { smtp = \"smtp://mail\", from = \"a@b.c\", to = [\"nobody\"] }\n",
                "mail address \"nobody\"",
            ),
            (
                "[alerts]\nwebhooks = [ { url = \"hooks.example/TOKEN\" } ]\n",
                "webhook URL ***: not an http(s) URL",
            ),
            ("[alerts]\non = [\"test\"]\n", "alerts.on[0]: unknown variant `test`"),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err();
            let message = strongbox_test_support::chain(&err);
            assert!(message.contains("test.toml"), "{text}: {message}");
            assert!(message.contains(expected), "{text}: {message}");
            assert!(!message.contains('\n'), "one line: {message}");
        }
    }

    #[test]
    fn a_syntax_error_names_its_line_without_quoting_it() {
        let text = "repo = \"/backup\"\n[s3]\nsecret_access_key = \"hunter22\n";
        let message = strongbox_test_support::chain(&parse(text).unwrap_err());
        assert!(message.contains("test.toml, line 3: "), "{message}");
        assert!(!message.contains("hunter22"), "{message}");
    }

    #[test]
    fn an_unquoted_password_is_refused_without_showing_it() {
        for value in ["862319", "86.2319", "true"] {
            let text = format!(
                "[alerts]\nemail = {{ smtp = \"smtp://mail\", from = \"a@b.c\", to = [\"d@e.f\"], password = {value} }}\n"
            );
            let message = strongbox_test_support::chain(&parse(&text).unwrap_err());
            assert!(
                message.contains("alerts.email.password: invalid type")
                    && message.contains("expected a quoted string"),
                "{message}"
            );
            assert!(!message.contains(value), "{message}");
        }
    }

    #[test]
    fn named_sets_are_checked_against_the_repository_listed_once() {
        let config = parse(GOOD).unwrap();
        let listings = std::cell::Cell::new(0);
        let in_repo = || {
            listings.set(listings.get() + 1);
            Ok::<_, Error>(vec!["a".to_string(), "b".to_string()])
        };
        config.known_sets(["media", "a", "b"], in_repo).unwrap();
        assert_eq!(listings.get(), 1);
        config.known_sets(["media", "maindb"], in_repo).unwrap();
        assert_eq!(listings.get(), 1, "configured sets need no listing");
        let err = config.known_sets(["a", "x"], in_repo).unwrap_err();
        assert!(
            matches!(&err, Error::NoSuchSet { name } if name == "x"),
            "{err}"
        );
    }

    #[test]
    fn prune_rules_apply_to_given_sets_and_each_set_keeps_by_its_policy() {
        let config = parse(GOOD).unwrap();
        let rules = strongbox_engine::KeepPolicy {
            last: Some(3),
            ..Default::default()
        };
        let none = strongbox_engine::KeepPolicy::default();
        let in_repo = || Ok::<_, Error>(vec!["a".to_string(), "b".to_string()]);
        let sets = |policies: Vec<strongbox_engine::SetPolicy>| {
            policies
                .into_iter()
                .map(|p| (p.set, p.policy))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            sets(config.prune_policies(None, &rules, in_repo).unwrap()),
            [("a".into(), rules.clone()), ("b".into(), rules.clone())]
        );
        assert_eq!(
            sets(config.prune_policies(Some("b"), &rules, in_repo).unwrap()),
            [("b".into(), rules.clone())]
        );
        let typo = config.prune_policies(Some("x"), &rules, in_repo);
        assert!(
            matches!(&typo, Err(Error::NoSuchSet { name }) if name == "x"),
            "{typo:?}"
        );
        let own = sets(config.prune_policies(None, &none, in_repo).unwrap());
        assert_eq!(own.len(), 2);
        assert_eq!(own[0].0, "maindb");
        assert_eq!(own[0].1.daily, Some(7));
        let mut without = config.clone();
        without.sets.get_mut("media").unwrap().keep = None;
        let err = without
            .prune_policies(Some("media"), &none, in_repo)
            .unwrap_err();
        assert!(err.to_string().contains("no `keep` policy"), "{err}");
        // Regression: one set without `keep` stopped the prune of all the others.
        let kept = sets(without.prune_policies(None, &none, in_repo).unwrap());
        assert_eq!(
            kept.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
            ["maindb"]
        );
        without.sets.get_mut("maindb").unwrap().keep = None;
        let err = without.prune_policies(None, &none, in_repo).unwrap_err();
        assert!(matches!(err, Error::NoKeepPolicies), "{err}");
        let empty = Config::default();
        assert_eq!(
            sets(empty.prune_policies(None, &none, in_repo).unwrap()),
            [("a".into(), none.clone()), ("b".into(), none)]
        );
    }
}
