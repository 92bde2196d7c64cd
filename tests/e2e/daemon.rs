//! `daemon`: a run missed while it was down catches up at start, SIGTERM lets the running
//! job finish before it exits 0, and a second SIGTERM stops the job and exits 130.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use strongbox_test_support::{Pg, TempDb};

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

/// A daemon (`--stop-timeout 5m`) whose missed backup of `maindb` has started and waits on
/// a table lock, which `holder` keeps until `COMMIT` is written to `holder_in`.
struct HeldBackup {
    env: Env,
    _db: TempDb,
    holder: Child,
    holder_in: Option<ChildStdin>,
    daemon: Child,
    log: PathBuf,
}

impl HeldBackup {
    fn start(pg: &Pg) -> Self {
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
        let daemon = env
            .cmd(&["--config", &config, "daemon", "--stop-timeout", "5m"])
            .envs(pg.env())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let held = HeldBackup {
            env,
            _db: db,
            holder,
            holder_in: Some(holder_in),
            daemon,
            log,
        };
        wait_for("the missed backup to start", || {
            held.logged("started backup of maindb")
        });
        held
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap()
    }

    fn logged(&self, text: &str) -> bool {
        self.log().contains(text)
    }

    fn stop(&self) {
        signal(&self.daemon, rustix::process::Signal::TERM);
    }

    fn exit_code(&mut self) -> Option<i32> {
        let mut status = None;
        wait_for("the daemon to exit", || {
            status = self.daemon.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap().code()
    }

    /// End the lock's transaction: the backup goes on.
    fn commit(&mut self) {
        if let Some(mut holder_in) = self.holder_in.take() {
            writeln!(holder_in, "COMMIT;").unwrap();
        }
    }

    fn release(mut self) -> Env {
        self.commit();
        self.holder.wait().unwrap();
        self.env
    }
}

#[test]
fn daemon_catches_up_a_missed_backup_and_lets_it_finish_on_sigterm() {
    let Some(pg) = Pg::get() else { return };
    let mut held = HeldBackup::start(&pg);
    held.stop();
    wait_for("the daemon to wait for the job", || {
        held.logged("stopping: waiting up to 5m")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        held.daemon.try_wait().unwrap().is_none(),
        "the daemon waits for its running job: {}",
        held.log()
    );

    held.commit();
    assert_eq!(held.exit_code(), Some(0), "{}", held.log());
    assert!(
        held.logged("finished backup of maindb: ok"),
        "{}",
        held.log()
    );
    let env = held.release();
    let snapshots = env.json(&["snapshots", "maindb"]);
    assert_eq!(snapshots.as_array().unwrap().len(), 1, "{snapshots}");
}

#[test]
fn a_second_sigterm_stops_the_daemon_and_its_running_job_at_once() {
    let Some(pg) = Pg::get() else { return };
    let mut held = HeldBackup::start(&pg);
    let log = held.log();
    let pid: u32 = log
        .split("started backup of maindb (pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no job pid in: {log}"));
    held.stop();
    wait_for("the daemon to wait for the job", || {
        held.logged("stopping: waiting up to 5m")
    });
    held.stop();
    assert_eq!(held.exit_code(), Some(130), "{}", held.log());
    assert!(
        held.logged("at a second stop signal: asking it to stop"),
        "{}",
        held.log()
    );
    // Told to stop, the job ends while the table is still locked. It is no longer the
    // daemon's child, so an ended job may linger as a zombie until it is reaped.
    wait_for("the job to end", || {
        fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z'))
        })
    });
    let env = held.release();
    let snapshots = env.json(&["snapshots", "maindb"]);
    assert_eq!(snapshots.as_array().unwrap().len(), 0, "{snapshots}");
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
