//! `daemon`: a run missed while it was down catches up at start, and SIGTERM lets the
//! running job finish before it exits 0.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use strongbox_test_support::Pg;

use crate::harness::Env;
use crate::interrupt::{signal, wait_for};

/// A journal entry saying `set`'s last backup ran long ago (before this year's 1 January).
fn plant_old_backup_run(repo: &str, set: &str) {
    let dir = Path::new(repo).join("sets").join(set).join("runs");
    fs::create_dir_all(&dir).unwrap();
    let run = serde_json::json!({
        "operation": "backup", "set": set, "status": "ok",
        "started": "2020-01-01T00:00:00Z", "finished": "2020-01-01T00:01:00Z",
        "snapshot": null, "error": null, "host": "old-host", "pid": 1
    });
    fs::write(
        dir.join("20200101T000000.000Z-backup-0000.json"),
        serde_json::to_vec(&run).unwrap(),
    )
    .unwrap();
}

#[test]
fn daemon_catches_up_a_missed_backup_and_lets_it_finish_on_sigterm() {
    let Some(pg) = Pg::get() else { return };
    let db = pg.create("daemon");
    db.psql("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000);");
    let env = Env::new();
    assert!(env.run(&["init"]).status.success());
    plant_old_backup_run(&env.repo, "maindb");
    let config = env.path("strongbox.toml");
    fs::write(
        &config,
        format!(
            "[sets.maindb]\nsource = \"postgres\"\nconninfo = \"{}\"\nschedule = \"0 0 1 1 *\"\n",
            db.url_without_password()
        ),
    )
    .unwrap();

    // Hold the table so that the backup, once started, waits for us.
    let mut holder = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .envs(pg.env())
        .env("PGDATABASE", &db.name)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut holder_in = holder.stdin.take().unwrap();
    writeln!(holder_in, "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE;").unwrap();
    wait_for("the table lock", || {
        db.psql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 't' AND l.mode = 'AccessExclusiveLock' AND l.granted") == "1"
    });

    let log = env.path("daemon.log");
    let config = config.display().to_string();
    let mut daemon = env
        .cmd(&["--config", &config, "daemon", "--stop-timeout", "5m"])
        .envs(pg.env())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let logged = |text: &str| fs::read_to_string(&log).unwrap().contains(text);
    wait_for("the missed backup to start", || {
        logged("started backup of maindb")
    });
    signal(&daemon, rustix::process::Signal::TERM);
    wait_for("the daemon to wait for the job", || {
        logged("stopping: waiting up to 5m")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the daemon waits for its running job: {}",
        fs::read_to_string(&log).unwrap()
    );

    writeln!(holder_in, "COMMIT;").unwrap();
    drop(holder_in);
    holder.wait().unwrap();
    let mut status = None;
    wait_for("the daemon to exit", || {
        status = daemon.try_wait().unwrap();
        status.is_some()
    });
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(status.unwrap().code(), Some(0), "{text}");
    assert!(text.contains("finished backup of maindb: ok"), "{text}");
    let snapshots = env.json(&["snapshots", "maindb"]);
    assert_eq!(snapshots.as_array().unwrap().len(), 1, "{snapshots}");
}

#[test]
fn daemon_without_schedules_says_so() {
    let env = Env::new();
    let config = env.path("strongbox.toml");
    fs::write(
        &config,
        "[sets.media]\nsource = \"files\"\npath = \"/srv/media\"\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let stderr = env.fails(&["--config", &config, "daemon"], 1);
    assert!(
        stderr.contains(&config) && stderr.contains("schedules nothing"),
        "{stderr}"
    );
}

/// With its repository stalled (a server that takes connections and never answers), the
/// daemon spent two minutes of retries reading its journal at start and only then heard
/// docker's SIGTERM, long after the 10 s grace.
#[test]
fn daemon_stops_at_once_while_its_repository_is_stalled() {
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = stalled.local_addr().unwrap().port();
    let mut env = Env::new();
    env.repo = "s3://stalled/repo".to_string();
    let config = env.path("strongbox.toml");
    fs::write(
        &config,
        format!(
            "repo = \"s3://stalled/repo\"\n[s3]\nendpoint = \"http://127.0.0.1:{port}\"\n\
             allow_http = true\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\nregion = \"us-east-1\"\n\
             [sets.media]\nsource = \"files\"\npath = \"/srv/media\"\nschedule = \"0 3 * * *\"\n"
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let mut command = env.cmd(&["--config", &config, "daemon"]);
    // The test server's settings in the environment would win over the file's.
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("AWS_")) {
        command.env_remove(name);
    }
    let mut daemon = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "still reading its journal"
    );
    let asked = std::time::Instant::now();
    signal(&daemon, rustix::process::Signal::TERM);
    let mut status = None;
    wait_for("the daemon to exit", || {
        status = daemon.try_wait().unwrap();
        status.is_some()
    });
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "it took {:?} to stop",
        asked.elapsed()
    );
    assert_eq!(status.unwrap().code(), Some(0));
    drop(stalled);
}
