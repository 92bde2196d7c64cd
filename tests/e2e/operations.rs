//! Operations: `status` from the journal, and `health` with Nagios exit codes, JSON and a
//! Prometheus textfile, one test per condition.

use std::fs;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::harness::{host, noise, write, Env};

/// `health --json` with the disk check out of the way (this machine's disk is what it is),
/// returning the exit code and the report.
fn health(env: &Env, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["health", "--json", "--max-disk-usage", "100"];
    args.extend_from_slice(extra);
    let out: Output = env.run(&args);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap(), report)
}

/// The check `name` of `set` (`None`: the repository's).
fn check<'a>(report: &'a Value, set: Option<&str>, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name && c["set"].as_str() == set)
        .unwrap_or_else(|| panic!("no check {name} of {set:?} in {report:#}"))
}

fn media(env: &Env, files: usize) -> std::path::PathBuf {
    let src = env.path("src");
    let _ = fs::remove_dir_all(&src);
    for i in 0..files {
        write(&src.join(format!("f{i}.bin")), &noise(i as u64, 1000));
    }
    src
}

fn hours_ago(hours: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::hours(hours)).to_rfc3339()
}

/// A pid that no process has now.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn status_shows_each_set_from_the_journal() {
    let env = Env::new();
    let src = media(&env, 3);
    env.backup("media", &src, &[]);
    write(&src.join("new.bin"), b"more");
    let second = env.backup("media", &src, &[]);
    env.fails(
        &[
            "backup",
            "files",
            "media",
            env.path("missing").to_str().unwrap(),
        ],
        1,
    );
    env.json(&["verify", "--all", "--level", "checksum"]);

    let status = env.json(&["status"]);
    let media = &status[0];
    assert_eq!(media["set"], "media");
    assert_eq!(media["snapshots"], 2);
    assert_eq!(media["last_snapshot"]["id"], second["id"]);
    assert_eq!(media["last_runs"]["backup"]["status"], "failed");
    assert!(media["last_runs"]["backup"]["error"]
        .as_str()
        .unwrap()
        .contains("missing"));
    assert_eq!(media["last_runs"]["verify"]["status"], "ok");
    assert_eq!(media["last_verification"]["level"], "checksum");
    let data = fs::read_dir(Path::new(&env.repo).join("sets/media/data"))
        .unwrap()
        .count();
    assert_eq!(media["objects"]["total"], data);
    assert_eq!(media["objects"]["never_read"], 0);
    assert!(media["objects"]["oldest_read"].is_string());
    let stored: u64 = fs::read_dir(Path::new(&env.repo).join("sets/media/data"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(media["stored_bytes"], stored);
    let text = String::from_utf8_lossy(&env.run(&["status", "media"]).stdout).into_owned();
    assert!(
        text.contains("media: 2 snapshot(s)") && text.contains("failed"),
        "{text}"
    );

    // Regression: a backup killed with -9 stayed `running` in status for ever.
    let pid = dead_pid();
    let now = chrono::Utc::now();
    let key = format!("{}-backup-killed.json", now.format("%Y%m%dT%H%M%S%.3fZ"));
    write(
        &Path::new(&env.repo).join("sets/media/runs").join(key),
        format!(r#"{{"operation":"backup","set":"media","status":"running","started":"{}","finished":null,"snapshot":null,"error":null,"host":"{}","pid":{pid}}}"#, now.to_rfc3339(), host()).as_bytes(),
    );
    let backup = &env.json(&["status"])[0]["last_runs"]["backup"];
    assert_eq!(backup["status"], "failed", "{backup}");
    assert!(
        backup["error"]
            .as_str()
            .unwrap()
            .contains(&format!("process {pid} on {} is gone", host())),
        "{backup}"
    );
}

#[test]
fn a_set_whose_every_backup_failed_is_critical_without_a_configuration() {
    let env = Env::new();
    env.backup("media", &media(&env, 1), &[]);
    let typo = env.path("typo");
    env.fails(&["backup", "files", "new", typo.to_str().unwrap()], 1);
    // A prune of a set that is not there is refused and journals nothing: no set to report.
    env.fails(&["prune", "other", "--keep-last", "1"], 1);

    let (code, report) = health(&env, &[]);
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(
        check(&report, Some("new"), "backup-age")["detail"],
        "no snapshot"
    );
    assert_eq!(
        check(&report, Some("new"), "last-backup")["status"],
        "critical"
    );
    let mut sets: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["set"].as_str())
        .collect();
    sets.dedup();
    assert_eq!(sets, ["media", "new"]);
    let status = env.json(&["status"]);
    assert_eq!(status[1]["set"], "new");
    assert_eq!(status[1]["snapshots"], 0);
    assert_eq!(status[1]["last_runs"]["backup"]["status"], "failed");
    assert_eq!(status.as_array().unwrap().len(), 2);
}

/// Regression: a backup refused by the lock of one still running is journalled after that
/// one began, so once it had finished well, status still showed the refusal as the last
/// backup (and health called it critical) until the next backup.
#[test]
fn the_last_run_of_an_operation_is_the_one_that_ended_last() {
    let env = Env::new();
    let src = media(&env, 1);
    env.backup("media", &src, &[]);
    let begun = chrono::Utc::now();
    let pid = std::process::id();
    let lock = crate::harness::plant_lock(&env, "backup", &host(), pid, &begun.to_rfc3339());
    env.fails(&["backup", "files", "media", src.to_str().unwrap()], 1);
    fs::remove_file(lock).unwrap();
    // The run that held the lock ends well, after the refusal.
    let finished = chrono::Utc::now();
    let key = format!("{}-backup-held.json", begun.format("%Y%m%dT%H%M%S%.3fZ"));
    write(
        &Path::new(&env.repo).join("sets/media/runs").join(key),
        format!(r#"{{"operation":"backup","set":"media","status":"ok","started":"{}","finished":"{}","snapshot":null,"error":null,"host":"{}","pid":{pid}}}"#, begun.to_rfc3339(), finished.to_rfc3339(), host()).as_bytes(),
    );
    let backup = &env.json(&["status"])[0]["last_runs"]["backup"];
    assert_eq!(backup["status"], "ok", "{backup}");
}

/// A configuration of two sets, media and uploads, of which media is backed up once;
/// returns the configuration's path.
fn uploads_never_backed_up(env: &Env) -> String {
    let src = media(env, 1);
    let config = env.path("strongbox.toml");
    fs::write(
        &config,
        format!(
            "repo = \"{}\"\n[sets.media]\nsource = \"files\"\npath = \"{}\"\n[sets.uploads]\nsource = \"files\"\npath = \"{}\"\n",
            env.repo,
            src.display(),
            src.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_string();
    env.json(&["--config", &config, "backup", "media"]);
    config
}

#[test]
fn status_shows_a_configured_set_that_was_never_backed_up() {
    let env = Env::new();
    let config = &uploads_never_backed_up(&env);

    // It was left out: `health` called it critical while `status` did not name it.
    let status = env.json(&["--config", config, "status"]);
    let sets: Vec<(&str, u64)> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["set"].as_str().unwrap(), s["snapshots"].as_u64().unwrap()))
        .collect();
    assert_eq!(sets, [("media", 1), ("uploads", 0)], "{status:#}");
    let text =
        String::from_utf8_lossy(&env.run(&["--config", config, "status"]).stdout).into_owned();
    assert!(
        text.contains("uploads: 0 snapshot(s), 0 B stored; no snapshot"),
        "{text}"
    );
    // Without the configuration only what the repository holds is shown.
    assert_eq!(env.json(&["status"]).as_array().unwrap().len(), 1);
}

/// `unlock uploads` of a configured set never backed up said "no set in repository", exit 1,
/// where a backed-up set that is not locked says so with exit 0.
#[test]
fn unlock_of_a_configured_set_never_backed_up_says_it_is_not_locked() {
    let env = Env::new();
    let config = &uploads_never_backed_up(&env);
    let unlocked = env.json(&["--config", config, "unlock", "uploads"]);
    assert_eq!(unlocked["removed"], serde_json::Value::Null, "{unlocked}");
    let window = env.json(&["--config", config, "wal", "window", "uploads"]);
    assert_eq!(window["timelines"], serde_json::json!([]), "{window}");
    // Without the configuration it is a set the repository does not know.
    for args in [&["unlock", "uploads"][..], &["wal", "window", "uploads"]] {
        let err = env.fails(args, 1);
        assert!(
            err.contains("no set \"uploads\" in the repository or the configuration"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn health_is_ok_for_fresh_verified_backups_and_writes_prometheus() {
    let env = Env::new();
    let src = media(&env, 3);
    env.backup("media", &src, &[]);
    env.json(&["verify", "--all", "--level", "checksum"]);
    let prom = env.path("metrics/strongbox.prom");
    fs::create_dir_all(prom.parent().unwrap()).unwrap();
    // Made readable for node_exporter once, it stays so: each run reset it to 0600.
    use std::os::unix::fs::PermissionsExt;
    fs::write(&prom, b"").unwrap();
    fs::set_permissions(&prom, fs::Permissions::from_mode(0o644)).unwrap();
    let (code, report) = health(&env, &["--prometheus", prom.to_str().unwrap()]);
    assert_eq!(
        (code, report["status"].as_str().unwrap()),
        (0, "ok"),
        "{report:#}"
    );
    for c in report["checks"].as_array().unwrap() {
        assert!(c["set"].is_string() || c["set"].is_null());
        assert!(c["detail"].is_string() && c["status"] == "ok", "{c}");
    }
    let text = fs::read_to_string(&prom).unwrap();
    for line in text.lines() {
        assert!(
            line.starts_with("# HELP strongbox_")
                || line.starts_with("# TYPE strongbox_")
                || is_sample(line),
            "not exposition format: {line}"
        );
    }
    for metric in [
        "strongbox_last_success_timestamp_seconds{set=\"media\"}",
        "strongbox_snapshots{set=\"media\"} 1",
        "strongbox_last_verify_ok{set=\"media\"} 1",
        "strongbox_health_status{set=\"media\",check=\"backup-age\"} 0",
    ] {
        assert!(text.contains(metric), "{metric} missing from\n{text}");
    }
    let leftovers: Vec<_> = fs::read_dir(prom.parent().unwrap()).unwrap().collect();
    assert_eq!(
        leftovers.len(),
        1,
        "a temporary file is left beside the metrics"
    );
    assert_eq!(
        fs::metadata(&prom).unwrap().permissions().mode() & 0o777,
        0o644
    );
}

/// Metrics that cannot be written, or would land in the repository (they replaced its
/// marker, with exit 0), are unknown at best, and the checks are still printed.
#[test]
fn metrics_that_cannot_be_written_are_unknown_and_reports_stay_out_of_the_repository() {
    let env = Env::new();
    let src = media(&env, 3);
    env.backup("media", &src, &[]);
    let repo = Path::new(&env.repo);
    let marker = fs::read(repo.join("strongbox.json")).unwrap();
    let missing = env.path("missing/x.prom");
    for (path, said) in [
        (repo.join("strongbox.json"), "lies inside repository"),
        (missing, "No such file"),
    ] {
        let out = env.run(&[
            "health",
            "--json",
            "--max-disk-usage",
            "100",
            "--prometheus",
            path.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains(said), "{stderr}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            report["status"], "ok",
            "the checks are printed all the same"
        );
    }
    // A critical state stays critical (exit 2) when the metrics fail too.
    let missing = env.path("missing/x.prom");
    let args = [
        "health",
        "--max-age",
        "1ms",
        "--prometheus",
        missing.to_str().unwrap(),
    ];
    env.fails(&args, 2);
    for args in [
        vec!["status", "--html"],
        vec!["verify", "--all", "--report"],
    ] {
        let inside = repo.join("sets/media/report.html");
        let err = env.fails(&[&args[..], &[inside.to_str().unwrap()]].concat(), 1);
        assert!(err.contains("lies inside repository"), "{args:?}: {err}");
        assert!(!inside.exists());
    }
    assert_eq!(fs::read(repo.join("strongbox.json")).unwrap(), marker);
}

/// A sample line of the exposition format: `name{label="value",…} number`.
fn is_sample(line: &str) -> bool {
    let Some((head, value)) = line.rsplit_once(' ') else {
        return false;
    };
    let Some((name, labels)) = head.split_once('{') else {
        return false;
    };
    name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        && labels.ends_with('}')
        && labels[..labels.len() - 1].split(',').all(|l| {
            l.split_once('=')
                .is_some_and(|(k, v)| !k.is_empty() && v.starts_with('"') && v.ends_with('"'))
        })
        && value.parse::<f64>().is_ok()
}

#[test]
fn health_conditions_each_give_their_state_and_exit_code() {
    let env = Env::new();
    let src = media(&env, 10);

    // Stale: a newest snapshot past 75 % of max_age warns, past it is critical.
    env.backup("media", &src, &["--time", &hours_ago(40)]);
    let (code, report) = health(&env, &[]);
    assert_eq!(
        (
            code,
            check(&report, Some("media"), "backup-age")["status"]
                .as_str()
                .unwrap()
        ),
        (1, "warning"),
        "{report:#}"
    );
    let (code, report) = health(&env, &["--max-age", "24h"]);
    assert_eq!(code, 2, "{report:#}");
    assert!(check(&report, Some("media"), "backup-age")["detail"]
        .as_str()
        .unwrap()
        .contains("old"));

    // Never verified, and older than verify_max_age: a warning.
    env.backup("media", &src, &["--time", &hours_ago(24 * 9)]);
    let (_, report) = health(&env, &["--max-age", "2000h"]);
    assert_eq!(
        check(&report, Some("media"), "verification")["status"],
        "warning",
        "{report:#}"
    );

    // Files down by 80 % against the median of the previous snapshots: named.
    let src = media(&env, 2);
    env.backup("media", &src, &[]);
    let (code, report) = health(&env, &["--max-age", "2000h"]);
    let anomaly = check(&report, Some("media"), "anomaly");
    assert_eq!(anomaly["status"], "warning", "{report:#}");
    assert!(
        anomaly["detail"]
            .as_str()
            .unwrap()
            .contains("files down 80 %"),
        "{anomaly}"
    );
    assert_eq!(code, 1);

    // The last backup failed: critical, with its error.
    env.fails(
        &[
            "backup",
            "files",
            "media",
            env.path("gone").to_str().unwrap(),
        ],
        1,
    );
    let (code, report) = health(&env, &["--max-age", "2000h"]);
    let failed = check(&report, Some("media"), "last-backup");
    assert_eq!((code, failed["status"].as_str().unwrap()), (2, "critical"));
    assert!(
        failed["detail"].as_str().unwrap().contains("gone"),
        "{failed}"
    );

    // A stale lock and a run stuck in `running`, both of a dead process on this host.
    let pid = dead_pid();
    let now = chrono::Utc::now().to_rfc3339();
    crate::harness::plant_lock(&env, "backup", &host(), pid, &now);
    write(
        &Path::new(&env.repo).join("sets/media/runs/20200101T000000.000Z-backup-dead.json"),
        format!(r#"{{"operation":"backup","set":"media","status":"running","started":"{now}","finished":null,"snapshot":null,"error":null,"host":"{}","pid":{pid}}}"#, host()).as_bytes(),
    );
    let (_, report) = health(&env, &["--max-age", "2000h"]);
    assert!(
        check(&report, Some("media"), "lock")["detail"]
            .as_str()
            .unwrap()
            .contains("stale lock"),
        "{report:#}"
    );
    assert_eq!(check(&report, Some("media"), "lock")["status"], "warning");
    assert_eq!(
        check(&report, Some("media"), "crashed-runs")["status"],
        "warning",
        "{report:#}"
    );
    // A later backup went past the crashed one: it warned for 90 days, until the journal
    // entry was pruned.
    env.backup("media", &src, &[]);
    let (_, report) = health(&env, &["--max-age", "2000h"]);
    assert_eq!(
        check(&report, Some("media"), "crashed-runs")["status"],
        "ok",
        "{report:#}"
    );

    // The local disk past the threshold.
    let out = env.run(&[
        "health",
        "--json",
        "--max-disk-usage",
        "1",
        "--max-age",
        "2000h",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Critical from 95 % whatever the threshold: the machine's own disk decides which of
    // the two (a CI disk at 96 % once failed a test that expected a warning).
    let disk = check(&report, None, "disk");
    let detail = disk["detail"].as_str().unwrap();
    let used: u8 = detail.split(" % used").next().unwrap().parse().unwrap();
    let expected = if used >= 95 { "critical" } else { "warning" };
    assert_eq!(disk["status"], expected, "{report:#}");
    assert!(
        detail.ends_with("(warning at 1 %, critical at 95 %)"),
        "{detail}"
    );

    // A repository holding nothing is no all-clear.
    let mut empty = Env::new();
    empty.repo = empty.path("empty").display().to_string();
    empty.json(&["init"]);
    let (code, report) = health(&empty, &[]);
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(check(&report, None, "sets")["status"], "critical");

    // Unreachable: unknown, exit 3.
    let mut gone = Env::new();
    gone.repo = gone.path("no-repository").display().to_string();
    let (code, report) = health(&gone, &[]);
    assert_eq!(
        (code, report["status"].as_str().unwrap()),
        (3, "unknown"),
        "{report:#}"
    );
}

#[test]
fn health_flags_snapshots_the_keep_policy_would_forget_and_a_failed_verify() {
    let env = Env::new();
    let src = media(&env, 3);
    let config = env.path("strongbox.toml");
    fs::write(
        &config,
        format!("repo = \"{}\"\n[sets.media]\nsource = \"files\"\npath = \"{}\"\nkeep = {{ last = 1 }}\n", env.repo, src.display()),
    )
    .unwrap();
    let with_config = |args: &[&str]| {
        let mut all = vec![
            "--config",
            config.to_str().unwrap(),
            "health",
            "--json",
            "--max-disk-usage",
            "100",
        ];
        all.extend_from_slice(args);
        let out = env.run(&all);
        (
            out.status.code().unwrap(),
            serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        )
    };
    // A configured set that was never backed up is checked, not skipped.
    env.json(&["init"]);
    let (code, report) = with_config(&[]);
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(
        check(&report, Some("media"), "backup-age")["detail"],
        "no snapshot"
    );
    env.backup("media", &src, &[]);
    let (_, report) = with_config(&[]);
    assert_eq!(
        check(&report, Some("media"), "retention")["status"],
        "ok",
        "{report:#}"
    );
    write(&src.join("x"), b"x");
    let last = env.backup("media", &src, &[]);
    let (_, report) = with_config(&[]);
    let retention = check(&report, Some("media"), "retention");
    assert_eq!(retention["status"], "warning", "{report:#}");
    assert!(
        retention["detail"]
            .as_str()
            .unwrap()
            .contains("1 snapshot(s)"),
        "{retention}"
    );

    let archive = crate::harness::object_key(&last, "archive");
    let path = Path::new(&env.repo).join(&archive);
    let mut bytes = fs::read(&path).unwrap();
    bytes[10] ^= 1;
    fs::write(&path, bytes).unwrap();
    env.fails(&["verify", "--all", "--level", "checksum"], 1);
    let (code, report) = with_config(&[]);
    let verify = check(&report, Some("media"), "last-verify");
    assert_eq!(
        (code, verify["status"].as_str().unwrap()),
        (2, "critical"),
        "{report:#}"
    );
    assert!(
        verify["detail"]
            .as_str()
            .unwrap()
            .contains(last["id"].as_str().unwrap()),
        "{verify}"
    );
}

/// `systemd-analyze ARGS`: its output, or `None` where systemd's tools are missing (then
/// only outside CI: the CI machine has them).
pub(crate) fn systemd_analyze(args: &[&str]) -> Option<Output> {
    match std::process::Command::new("systemd-analyze")
        .args(args)
        .output()
    {
        Ok(out) => Some(out),
        Err(e) => {
            assert!(
                std::env::var("CI").is_err(),
                "systemd-analyze is needed under CI: {e}"
            );
            eprintln!("skipping the systemd-analyze checks: {e}");
            None
        }
    }
}

#[test]
fn schedules_install_as_a_cron_file_and_systemd_timers_that_systemd_accepts() {
    let env = Env::new();
    let src = media(&env, 1);
    let config = env.path("strongbox.toml");
    fs::write(
        &config,
        format!(
            "repo = \"{}\"\n[sets.media]\nsource = \"files\"\npath = \"{}\"\nkeep = {{ last = 3 }}\n\
             schedule = \"0 2 * * *\"\nverify_schedule = \"30 4 * * sun\"\nprune_schedule = \"@weekly\"\n\
             [sets.chat]\nsource = \"sqlite\"\npath = \"/srv/chat.sqlite3\"\nverify = \"restore\"\n\
             schedule = \"*/15 * * * *\"\nverify_schedule = \"0 5 * * mon-fri\"\n",
            env.repo,
            src.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        env.run(&all)
    };
    let jobs = crate::harness::succeeded(&run(&["schedule", "list", "--json"]));
    let listed: Vec<String> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            format!(
                "{} {} {}",
                j["operation"].as_str().unwrap(),
                j["set"].as_str().unwrap(),
                j["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            "backup chat backup chat",
            "verify chat verify chat:latest --level restore",
            "backup media backup media",
            "verify media verify media:latest --level deep",
            "prune media prune media",
        ]
    );

    let cron = env.path("cron.d/strongbox");
    fs::create_dir_all(cron.parent().unwrap()).unwrap();
    crate::harness::succeeded(&run(&[
        "schedule",
        "install",
        "--cron",
        cron.to_str().unwrap(),
        "--json",
    ]));
    let text = fs::read_to_string(&cron).unwrap();
    let binary = crate::harness::bin().canonicalize().unwrap();
    let entries: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains('='))
        .collect();
    assert_eq!(entries.len(), 5, "{text}");
    for line in entries {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[5], "root", "{line}");
        assert_eq!(fields[6], binary.to_str().unwrap(), "{line}");
        assert_eq!(
            &fields[7..9],
            ["--config", config.to_str().unwrap()],
            "{line}"
        );
    }
    assert!(text.contains("0 2 * * * root"), "{text}");

    // Never over a file install did not write; never for a repository other than the one
    // the jobs will read (an install took --repo and dropped it from the jobs).
    let foreign = env.path("cron.d/other");
    write(&foreign, b"# another package's jobs\n");
    let out = run(&["schedule", "install", "--cron", foreign.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("schedule install did not write it"),
        "{stderr}"
    );
    assert_eq!(fs::read(&foreign).unwrap(), b"# another package's jobs\n");
    let mut elsewhere = Env::new();
    elsewhere.repo = elsewhere.path("elsewhere").display().to_string();
    let other_cron = env.path("cron.d/strongbox-2");
    let out = elsewhere.run(&[
        "--config",
        config.to_str().unwrap(),
        "schedule",
        "install",
        "--cron",
        other_cron.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1) && stderr.contains("the installed jobs would use repository"),
        "{stderr}"
    );
    // A configuration without `repo`, or with a relative one, which cron would resolve from
    // its own working directory.
    let text = fs::read_to_string(&config).unwrap();
    let without = text.lines().skip(1).collect::<Vec<_>>().join("\n");
    for (body, said) in [
        (without.clone(), "names no `repo`"),
        (
            format!("repo = \"backups\"\n{without}"),
            "is a relative path",
        ),
    ] {
        let lone = env.path("lone.toml");
        fs::write(&lone, body).unwrap();
        let out = std::process::Command::new(crate::harness::bin())
            .args([
                "--config",
                lone.to_str().unwrap(),
                "schedule",
                "install",
                "--cron",
            ])
            .arg(&other_cron)
            .env_remove("STRONGBOX_REPO")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(1) && stderr.contains(said),
            "{stderr}"
        );
    }
    assert!(!other_cron.exists());

    let units = env.path("systemd");
    fs::create_dir_all(&units).unwrap();
    write(
        &units.join("strongbox-mine.service"),
        b"[Service]\nExecStart=/bin/true\n",
    );
    crate::harness::succeeded(&run(&[
        "schedule",
        "install",
        "--systemd",
        units.to_str().unwrap(),
        "--json",
    ]));
    let mut written: Vec<String> = fs::read_dir(&units)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "strongbox-mine.service")
        .collect();
    written.sort();
    assert_eq!(written.len(), 10, "{written:?}");
    let timer = fs::read_to_string(units.join("strongbox-verify-chat.timer")).unwrap();
    assert!(
        timer.contains("OnCalendar=Mon..Fri *-*-* 05:00:00") && timer.contains("Persistent=true"),
        "{timer}"
    );
    let service = fs::read_to_string(units.join("strongbox-backup-media.service")).unwrap();
    assert!(
        service.contains("Type=oneshot") && service.contains("IOSchedulingClass=idle"),
        "{service}"
    );
    let paths: Vec<String> = written
        .iter()
        .map(|n| units.join(n).display().to_string())
        .collect();
    let mut verify = vec!["verify"];
    verify.extend(paths.iter().map(String::as_str));
    if let Some(out) = systemd_analyze(&verify) {
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for name in written.iter().filter(|n| n.ends_with(".timer")) {
            let unit = fs::read_to_string(units.join(name)).unwrap();
            let calendar = unit
                .lines()
                .find_map(|l| l.strip_prefix("OnCalendar="))
                .unwrap();
            let out = systemd_analyze(&["calendar", calendar]).unwrap();
            assert!(
                out.status.success(),
                "{calendar}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    // Regression: a schedule taken out of the configuration kept its units, so an enabled
    // timer went on pruning every week.
    let text = fs::read_to_string(&config).unwrap();
    fs::write(&config, text.replace("prune_schedule = \"@weekly\"\n", "")).unwrap();
    // Another configuration's units in the same directory stay.
    let mark =
        "# Written by `strongbox schedule install`; `strongbox schedule uninstall` removes it.";
    write(
        &units.join("strongbox-backup-other.service"),
        format!("{mark}\n[Service]\nExecStart=/usr/bin/strongbox --config /etc/other.toml -q backup other\n").as_bytes(),
    );
    write(
        &units.join("strongbox-backup-other.timer"),
        format!("{mark}\n[Timer]\nOnCalendar=daily\n").as_bytes(),
    );
    let installed = crate::harness::succeeded(&run(&[
        "schedule",
        "install",
        "--systemd",
        units.to_str().unwrap(),
        "--json",
    ]));
    let removed: Vec<String> = installed["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(
        removed,
        [
            "strongbox-prune-media.service",
            "strongbox-prune-media.timer"
        ]
    );
    assert!(!units.join("strongbox-prune-media.timer").exists());
    assert!(units.join("strongbox-backup-other.timer").exists());
    assert!(units.join("strongbox-mine.service").exists());

    // Regression: uninstall needed the configuration, which may be gone by then.
    crate::harness::succeeded(&env.run(&[
        "schedule",
        "uninstall",
        "--systemd",
        units.to_str().unwrap(),
        "--json",
    ]));
    let left: Vec<String> = fs::read_dir(&units)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        ["strongbox-mine.service"],
        "uninstall touched a unit it did not write"
    );
    crate::harness::succeeded(&run(&[
        "schedule",
        "uninstall",
        "--cron",
        cron.to_str().unwrap(),
        "--json",
    ]));
    assert!(!cron.exists());

    // Bad input: a schedule systemd cannot express is refused when the file is read.
    fs::write(&config, format!("repo = \"{}\"\n[sets.media]\nsource = \"files\"\npath = \"/srv\"\nschedule = \"0 2 1 * 1\"\n", env.repo)).unwrap();
    let out = run(&["schedule", "list"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a configuration error is a usage error"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("media") && err.contains("0 2 1 * 1"), "{err}");
    let err = env.fails(&["schedule", "list"], 1);
    assert!(err.contains("--config"), "{err}");
}

#[test]
fn prune_removes_old_journal_entries_but_each_operations_last_run() {
    let env = Env::new();
    let src = media(&env, 1);
    env.backup("media", &src, &[]);
    let runs = Path::new(&env.repo).join("sets/media/runs");
    // Old attempts: two backups and the only verify, long ago.
    for name in [
        "20200101T000000.000Z-backup-aaaa",
        "20200102T000000.000Z-backup-bbbb",
        "20200103T000000.000Z-verify-cccc",
    ] {
        write(&runs.join(format!("{name}.json")), b"{}");
    }
    let names = || -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(&runs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    let before = names();
    let plan = env.json(&["prune", "media", "--keep-last", "5", "--dry-run"]);
    assert_eq!(
        plan["journal_removed"].as_array().unwrap().len(),
        2,
        "{plan:#}"
    );
    assert_eq!(names(), before, "a dry run removed journal entries");
    // `journal_keep` in the configuration sets the age when no flag does.
    let config = env.path("strongbox.toml");
    fs::write(&config, "journal_keep = \"36500d\"\n").unwrap();
    let config = config.display().to_string();
    let plan = env.json(&[
        "--config",
        &config,
        "prune",
        "media",
        "--keep-last",
        "5",
        "--dry-run",
    ]);
    assert_eq!(plan["journal_removed"], serde_json::json!([]), "{plan:#}");
    env.json(&["prune", "media", "--keep-last", "5"]);
    let after = names();
    assert!(
        !after
            .iter()
            .any(|n| n.contains("aaaa") || n.contains("bbbb")),
        "{after:?}"
    );
    assert!(
        after.iter().any(|n| n.contains("-verify-cccc")),
        "the last verify run went: {after:?}"
    );
    assert!(after.iter().any(|n| n.contains("-prune-")), "{after:?}");
}

#[test]
fn status_html_writes_one_self_contained_dashboard() {
    let env = Env::new();
    let src = media(&env, 3);
    for _ in 0..3 {
        env.backup("media", &src, &[]);
    }
    let page = env.path("dashboard.html");
    let page_arg = page.display().to_string();
    crate::harness::succeeded(&env.run(&["status", "--html", &page_arg, "--json"]));
    let html = fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!doctype html>") && html.contains("name=\"viewport\""));
    assert!(html.contains("<h2>media"), "a panel per set");
    assert_eq!(
        html.matches("<svg").count(),
        3,
        "stored, files and duration charts"
    );
    for external in ["src=", "href=", "http://", "https://", "@import"] {
        assert!(!html.contains(external), "no external asset: {external}");
    }
    // Health shows: never verified, and (no max-disk-usage flag here) whatever the disk says
    // in the repository's own panel; a set with snapshots but no verification is not
    // critical.
    assert!(html.contains("last verification</dt><dd>never"), "{html}");
    assert!(html.contains("<h2>media <span class=\"badge\">"), "{html}");
    assert!(
        !html.contains("<section class=\"set critical\"><h2>media"),
        "{html}"
    );

    // Regression: a repository that could not be read left the last page up, saying ok.
    let marker = std::path::Path::new(&env.repo).join("strongbox.json");
    fs::write(&marker, b"{").unwrap();
    let err = env.fails(&["status", "--html", &page_arg], 1);
    let html = fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("<h2>repository <span class=\"badge\">unknown</span>")
            && !html.contains("<h2>media"),
        "{err}\n{html}"
    );
    // So does health's metrics file, which kept the last run's state.
    let metrics = env.path("health.prom");
    let metrics_arg = metrics.display().to_string();
    let out = env.run(&["health", "--prometheus", &metrics_arg]);
    assert_eq!(out.status.code(), Some(3));
    let text = fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("strongbox_health_status{check=\"repository\"} 3"),
        "{text}"
    );
}
