//! The configuration file: repository, S3 settings, named sets and their keep policies.

use std::process::Command;

use crate::harness::{bin, noise, write, Env};

#[test]
fn configured_sets_back_up_and_prune_by_their_own_policies() {
    let env = Env::new();
    let media = env.path("media");
    write(&media.join("a.jpg"), &noise(1, 10_000));
    write(&media.join("cache/skip.bin"), b"skip");
    let db = env.path("app.sqlite3");
    crate::harness::sqlite(
        &db,
        "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);",
    );
    let config = env.path("strongbox.toml");
    std::fs::write(
        &config,
        format!(
            r#"repo = "{repo}"
[sets.media]
source = "files"
path = "{media}"
exclude = ["cache"]
tags = ["nightly"]
keep = {{ last = 2 }}
[sets.appdb]
source = "sqlite"
path = "{db}"
keep = {{ last = 1 }}
"#,
            repo = env.repo,
            media = media.display(),
            db = db.display()
        ),
    )
    .unwrap();
    // Whatever it exits with; `run` expects success and parses its JSON.
    let bare = |args: &[&str]| {
        Command::new(bin())
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("STRONGBOX_REPO")
            .env_remove("STRONGBOX_TEST_UNSET")
            .output()
            .unwrap()
    };
    let run = |args: &[&str]| crate::harness::succeeded(&bare(&[args, &["--json"]].concat()));
    for _ in 0..3 {
        let record = run(&["backup", "media"]);
        assert_eq!(record["tags"], serde_json::json!(["nightly"]));
        run(&["backup", "appdb"]);
    }
    let listed = run(&["ls", "media:latest"]);
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "the cache exclude applies: {listed}"
    );
    let report = run(&["prune"]);
    assert_eq!(
        report["keep"].as_array().unwrap().len(),
        3,
        "2 media + 1 appdb: {report}"
    );
    assert_eq!(report["forget"].as_array().unwrap().len(), 3);

    // A set whose variable this environment lacks (a cron job's) fails alone.
    let text = std::fs::read_to_string(&config).unwrap();
    let unset = "[sets.maindb]\nsource = \"postgres\"\nkeep = { last = 1 }\n\
        conninfo = \"postgresql://u:${STRONGBOX_TEST_UNSET}@127.0.0.1:1/db\"\n";
    std::fs::write(&config, format!("{text}{unset}")).unwrap();
    run(&["backup", "media"]);
    run(&["prune"]);
    for args in [&["backup", "maindb"][..], &["config", "check"]] {
        let out = bare(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            err.contains("sets.maindb.conninfo uses ${STRONGBOX_TEST_UNSET}"),
            "{args:?}: {err}"
        );
    }

    let out = bare(&["backup", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no set \"nope\""));
    std::fs::write(&config, "[sets.x]\nsource = \"files\"\n").unwrap();
    let out = bare(&["snapshots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs `path`"));
    // To a monitoring system, a health check that cannot run is unknown, not critical.
    let out = bare(&["health"]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("UNKNOWN: ") && stdout.contains("needs `path`"),
        "{stdout}"
    );
    let out = bare(&["health", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "unknown", "{report}");
    // Regression: the metrics file kept the last run's state (ok) through the failure.
    let metrics = env.path("health.prom");
    std::fs::write(&metrics, "strongbox_health_status{check=\"disk\"} 0\n").unwrap();
    let out = bare(&["health", "--prometheus", metrics.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        ["strongbox_health_status{check=\"repository\"} 3"],
        "{text}"
    );
}

#[test]
fn s3_settings_come_from_the_configuration_file() {
    let (Some(bucket), Some(endpoint)) = (
        crate::harness::service("STRONGBOX_TEST_S3_BUCKET"),
        crate::harness::service("AWS_ENDPOINT_URL"),
    ) else {
        return;
    };
    let env = Env::new();
    let config = env.path("s3.toml");
    let nanos = chrono::Utc::now().timestamp_subsec_nanos();
    std::fs::write(
        &config,
        format!(
            r#"repo = "s3://{bucket}/config-{nanos:08x}"
[s3]
endpoint = "{endpoint}"
access_key_id = "{key}"
secret_access_key = "{secret}"
region = "us-east-1"
allow_http = true
"#,
            key = std::env::var("AWS_ACCESS_KEY_ID").unwrap(),
            secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin());
    for var in [
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_ALLOW_HTTP",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .arg("--config")
        .arg(&config)
        .arg("init")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_check_prints_the_effective_configuration_with_every_secret_redacted() {
    let env = Env::new();
    let config = env.path("strongbox.toml");
    std::fs::write(
        &config,
        r#"repo = "/srv/backups"
[s3]
region = "eu-west-1"
secret_access_key = "${TEST_S3_SECRET}"
[sets.maindb]
source = "postgres"
conninfo = "postgresql://backup:${TEST_PG_PASSWORD}@db.internal/app"
keep = { daily = 7 }
[alerts]
email = { smtp = "smtp://mail:587", password = "${TEST_PG_PASSWORD}", from = "sb@web1", to = ["ops@example.com"] }
webhooks = [ { url = "https://hooks.example/services/T0/B0/XYZSECRET" } ]
"#,
    )
    .unwrap();
    let check = |extra: &[&str]| {
        Command::new(bin())
            .arg("--config")
            .arg(&config)
            .args(extra)
            .args(["config", "check"])
            .env_remove("STRONGBOX_REPO")
            .env("TEST_S3_SECRET", "aws-secret-value")
            .env("TEST_PG_PASSWORD", "pg-secret-value")
            .output()
            .unwrap()
    };
    let out = check(&["--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for secret in ["aws-secret-value", "pg-secret-value", "XYZSECRET"] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
    let shown: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(shown["repo"], "/srv/backups");
    assert_eq!(shown["s3"]["region"], "eu-west-1");
    assert_eq!(shown["s3"]["secret_access_key"], "***");
    assert_eq!(
        shown["sets"]["maindb"]["conninfo"],
        "postgresql://backup:***@db.internal/app"
    );
    assert_eq!(shown["sets"]["maindb"]["keep"]["daily"], 7);

    // Flags win over the file; the human form is TOML.
    let out = check(&["--repo", "/mnt/other"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("repo = \"/mnt/other\""), "{text}");
    assert!(!text.contains("secret-value"), "{text}");

    // An unset variable is a configuration error naming it and the key: exit 2.
    let out = Command::new(bin())
        .arg("--config")
        .arg(&config)
        .args(["config", "check"])
        .env_remove("TEST_S3_SECRET")
        .env("TEST_PG_PASSWORD", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s3.secret_access_key uses ${TEST_S3_SECRET}") && err.lines().count() == 1,
        "{err}"
    );
}
