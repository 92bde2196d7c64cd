//! `daemon`: the schedules run in the foreground, for containers and hosts without cron or
//! systemd. Each job runs as its own process, `strongbox --config FILE -q <args>` (what
//! the cron file and the systemd units run), one job per set at a time.

use std::collections::HashSet;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, TimeZone, Utc};
use strongbox_engine::{Cancel, Operation, Reader};

use crate::{Config, Job};

/// When each job is next due, and which are waiting for their set to be free.
#[derive(Debug)]
pub struct Timetable<Tz: TimeZone> {
    entries: Vec<Entry<Tz>>,
}

#[derive(Debug)]
struct Entry<Tz: TimeZone> {
    job: Job,
    next: Option<DateTime<Tz>>,
    pending: bool,
}

impl<Tz: TimeZone> Timetable<Tz> {
    /// The jobs as of `now`. A job whose last run (`last_run`) is older than its latest
    /// scheduled time was missed while nothing ran it: it is due at once, once. A job that
    /// never ran waits for its next time.
    pub fn new(
        jobs: Vec<Job>,
        now: &DateTime<Tz>,
        last_run: impl Fn(&Job) -> Option<DateTime<Utc>>,
    ) -> Self {
        let entries = jobs
            .into_iter()
            .map(|job| {
                let missed = job.cron.last_at_or_before(now);
                let pending = match (last_run(&job), missed) {
                    (Some(last), Some(missed)) => missed.with_timezone(&Utc) > last,
                    _ => false,
                };
                Entry {
                    next: job.cron.next_after(now),
                    job,
                    pending,
                }
            })
            .collect();
        Timetable { entries }
    }

    /// The jobs to start now: those due (or waiting) none of whose sets (`Job::locks`: a
    /// bundle's members too) is `busy` or being started. Times that passed while a job
    /// waited count once.
    pub fn due(&mut self, now: &DateTime<Tz>, busy: &HashSet<String>) -> Vec<Job> {
        let mut taken: HashSet<String> = busy.clone();
        let mut jobs = Vec::new();
        for entry in &mut self.entries {
            if entry.next.as_ref().is_some_and(|next| next <= now) {
                entry.pending = true;
                entry.next = entry.job.cron.next_after(now);
            }
            if entry.pending && entry.job.locks.iter().all(|s| !taken.contains(s)) {
                taken.extend(entry.job.locks.iter().cloned());
                entry.pending = false;
                jobs.push(entry.job.clone());
            }
        }
        jobs
    }

    /// The earliest next time of any job.
    pub fn next(&self) -> Option<&DateTime<Tz>> {
        self.entries.iter().filter_map(|e| e.next.as_ref()).min()
    }
}

/// The daemon: a timetable, and how to run a job.
#[derive(Debug)]
pub struct Daemon {
    timetable: Timetable<Local>,
    binary: PathBuf,
    config: PathBuf,
    repo: Option<String>,
    env: Vec<(String, String)>,
    stop_timeout: Duration,
}

struct Running {
    job: Job,
    child: Child,
    started: Instant,
}

/// How long a job asked to stop (SIGTERM, after the stop timeout) has to clean up before
/// it is killed.
const KILL_AFTER: Duration = Duration::from_secs(60);

impl Daemon {
    /// Run `timetable`'s jobs as `binary --config config -q <args>`; on stop, wait up to
    /// `stop_timeout` for running jobs.
    pub fn new(
        timetable: Timetable<Local>,
        binary: PathBuf,
        config: PathBuf,
        stop_timeout: Duration,
    ) -> Self {
        Daemon {
            timetable,
            binary,
            config,
            repo: None,
            env: Vec::new(),
            stop_timeout,
        }
    }

    /// The jobs `config` schedules, run as `binary --config config_path`, caught up by the
    /// repository's journal when `journal` can be read (else nothing catches up).
    pub fn for_config(
        config: &Config,
        journal: Option<&Reader>,
        binary: PathBuf,
        config_path: PathBuf,
        stop_timeout: Duration,
    ) -> Self {
        let last_run = |job: &Job| {
            let runs = journal?.runs_of(&job.set, Some(job.operation)).ok()?;
            runs.last().map(|run| run.started)
        };
        let timetable = Timetable::new(config.jobs(), &Local::now(), last_run);
        Daemon {
            // The repository as the daemon was told (`--repo` included), for every job.
            repo: config.repo.clone(),
            ..Daemon::new(timetable, binary, config_path, stop_timeout)
        }
    }

    /// Give every job these environment variables too (what the daemon was told by flags:
    /// `STRONGBOX_IDENTITY`, `STRONGBOX_STORAGE_CLASS`).
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = env;
        self
    }

    /// Run jobs as they come due until `stop` is set; then let the running ones finish (up
    /// to the stop timeout, then ask them to stop, then kill them) and return. Once `quit`
    /// is set too (a second signal), it asks them to stop at once, or kills them if it had
    /// asked already, and returns: a job is never left running on, unaware of the stop.
    pub fn run(mut self, stop: &Cancel, quit: &Cancel) {
        let mut running: Vec<Running> = Vec::new();
        if let Some(next) = self.timetable.next() {
            tracing::info!("daemon started; next job at {}", next.to_rfc3339());
        }
        while !stop.is_cancelled() {
            reap(&mut running);
            let busy: HashSet<String> = running
                .iter()
                .flat_map(|r| r.job.locks.iter().cloned())
                .collect();
            for job in self.timetable.due(&Local::now(), &busy) {
                if let Some(started) = self.start(job) {
                    running.push(started);
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        reap(&mut running);
        if running.is_empty() {
            tracing::info!("stopping: no job is running");
            return;
        }
        tracing::info!(
            "stopping: waiting up to {} for {} running job(s)",
            humantime::format_duration(self.stop_timeout),
            running.len()
        );
        let deadline = Instant::now() + self.stop_timeout;
        let waited = wait(&mut running, deadline, quit);
        for r in &running {
            tracing::warn!(
                "{} of {} still running {}: asking it to stop",
                r.job.operation,
                r.job.set,
                match waited {
                    true => "after the stop timeout",
                    false => "at a second stop signal",
                }
            );
            signal_group(&r.child, rustix::process::Signal::TERM);
        }
        if !waited {
            return;
        }
        // A second signal cuts this short too: the jobs are killed at once.
        wait(&mut running, Instant::now() + KILL_AFTER, quit);
        for mut r in running {
            tracing::warn!("killing {} of {}", r.job.operation, r.job.set);
            signal_group(&r.child, rustix::process::Signal::KILL);
            let _ = r.child.wait();
        }
    }

    fn start(&self, job: Job) -> Option<Running> {
        let mut command = Command::new(&self.binary);
        if let Some(repo) = &self.repo {
            command.env("STRONGBOX_REPO", repo);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let spawned = command
            .arg("--config")
            .arg(&self.config)
            .arg("-q")
            .args(&job.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Its own process group: a Ctrl-C meant for the daemon does not cut the job short.
            .process_group(0)
            .spawn();
        match spawned {
            Ok(child) => {
                tracing::info!(
                    "started {} of {} (pid {}): strongbox {}",
                    job.operation,
                    job.set,
                    child.id(),
                    job.args.join(" ")
                );
                Some(Running {
                    job,
                    child,
                    started: Instant::now(),
                })
            }
            Err(e) => {
                tracing::error!(
                    "could not start {} of {}: {}: {e}",
                    job.operation,
                    job.set,
                    self.binary.display()
                );
                None
            }
        }
    }
}

/// Reap jobs until none runs or `deadline` passes; false when `quit` cut the wait short.
fn wait(running: &mut Vec<Running>, deadline: Instant, quit: &Cancel) -> bool {
    while !running.is_empty() && Instant::now() < deadline {
        if quit.is_cancelled() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
        reap(running);
    }
    true
}

/// Signal a job and what it started (pg_dump, pg_restore): it leads its process group.
fn signal_group(child: &Child, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// Log and drop the jobs that ended.
fn reap(running: &mut Vec<Running>) {
    running.retain_mut(|r| {
        let status = match r.child.try_wait() {
            Ok(None) => return true,
            Ok(Some(status)) => status,
            Err(e) => {
                tracing::error!("waiting for {} of {}: {e}", r.job.operation, r.job.set);
                return false;
            }
        };
        let took = format!("{:.1}s", r.started.elapsed().as_secs_f64());
        match status.code() {
            Some(0) => tracing::info!(
                "finished {} of {}: ok in {took}",
                r.job.operation,
                r.job.set
            ),
            Some(3) if r.job.operation == Operation::Backup => tracing::warn!(
                "finished {} of {}: incomplete (some files unreadable) in {took}",
                r.job.operation,
                r.job.set
            ),
            _ => tracing::error!(
                "finished {} of {}: FAILED ({status}) in {took}",
                r.job.operation,
                r.job.set
            ),
        }
        false
    });
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDateTime;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
            .unwrap()
            .and_utc()
    }

    fn job(set: &str, operation: Operation, cron: &str) -> Job {
        Job {
            set: set.to_string(),
            operation,
            cron: cron.parse().unwrap(),
            args: vec![operation.to_string(), set.to_string()],
            locks: vec![set.to_string()],
        }
    }

    fn names(jobs: &[Job]) -> Vec<String> {
        jobs.iter()
            .map(|j| format!("{} {}", j.operation, j.set))
            .collect()
    }

    #[test]
    fn a_missed_run_catches_up_once_and_a_new_job_waits() {
        let now = at("2026-12-01 10:00");
        let jobs = vec![
            job("media", Operation::Backup, "0 2 * * *"),
            job("db", Operation::Backup, "0 2 * * *"),
            job("logs", Operation::Backup, "0 2 * * *"),
        ];
        let mut table = Timetable::new(jobs, &now, |j| match j.set.as_str() {
            // Last ran before today's 02:00: missed.
            "media" => Some(at("2026-11-30 02:00")),
            // Ran after today's 02:00: not missed.
            "db" => Some(at("2026-12-01 02:01")),
            _ => None,
        });
        let none = HashSet::new();
        assert_eq!(names(&table.due(&now, &none)), ["backup media"]);
        assert!(table.due(&at("2026-12-01 10:01"), &none).is_empty(), "once");
        assert_eq!(
            names(&table.due(&at("2026-12-02 02:00"), &none)),
            ["backup media", "backup db", "backup logs"]
        );
        assert_eq!(table.next(), Some(&at("2026-12-03 02:00")));
    }

    #[test]
    fn one_job_per_set_at_a_time_and_waiting_jobs_run_once_the_set_is_free() {
        let now = at("2026-12-01 01:59");
        let jobs = vec![
            job("media", Operation::Backup, "0 2 * * *"),
            job("media", Operation::Prune, "0 2 * * *"),
            job("db", Operation::Backup, "*/1 * * * *"),
        ];
        let mut table = Timetable::new(jobs, &now, |_| None);
        let two = at("2026-12-01 02:00");
        let busy: HashSet<String> = ["db".to_string()].into();
        assert_eq!(names(&table.due(&two, &busy)), ["backup media"]);
        let busy: HashSet<String> = ["media".to_string(), "db".to_string()].into();
        // db's 02:01 and 02:02 pass while db is busy: one run when it is free.
        assert!(table.due(&at("2026-12-01 02:02"), &busy).is_empty());
        let busy: HashSet<String> = HashSet::new();
        assert_eq!(
            names(&table.due(&at("2026-12-01 02:02"), &busy)),
            ["prune media", "backup db"]
        );
        assert!(table.due(&at("2026-12-01 02:02"), &busy).is_empty());
    }

    #[test]
    fn a_bundle_and_its_members_do_not_run_at_once() {
        let now = at("2026-12-01 01:59");
        let mut bundle = job("platform", Operation::Backup, "0 2 * * *");
        bundle.locks = vec!["platform".into(), "maindb".into(), "media".into()];
        let jobs = vec![bundle, job("maindb", Operation::Backup, "0 2 * * *")];
        let mut table = Timetable::new(jobs, &now, |_| None);
        let none = HashSet::new();
        assert_eq!(
            names(&table.due(&at("2026-12-01 02:00"), &none)),
            ["backup platform"]
        );
        let bundle_running: HashSet<String> =
            ["platform", "maindb", "media"].map(String::from).into();
        assert!(table
            .due(&at("2026-12-01 02:01"), &bundle_running)
            .is_empty());
        assert_eq!(
            names(&table.due(&at("2026-12-01 02:09"), &none)),
            ["backup maindb"]
        );
    }
}
