//! Schedules: a five-field cron expression (local time) per set for its backup, verify and
//! prune, and what they install as: one cron.d file, or a systemd service and timer per job.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveTime, TimeZone, Timelike};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use strongbox_engine::{write_atomically, Operation, SourceSpec};

use crate::{Config, Error};

/// The first line of every file `schedule install` writes; `uninstall` removes only files
/// that carry it.
pub const MARK: &str =
    "# Written by `strongbox schedule install`; `strongbox schedule uninstall` removes it.";

/// A cron expression: `minute hour day-of-month month day-of-week`, or `@hourly`, `@daily`,
/// `@weekly`, `@monthly`, `@yearly`; with its systemd `OnCalendar=` equivalent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    fields: String,
    calendar: String,
    /// The minutes, hours, days of month, months and weekdays it matches, as bit sets.
    matches: [u64; 5],
}

impl Cron {
    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The five fields, macros (`@daily`) spelled out, as a cron.d line wants them.
    pub fn fields(&self) -> &str {
        &self.fields
    }

    /// The same times as a systemd calendar event (`Mon..Fri *-*-* 02:30:00`).
    pub fn on_calendar(&self) -> &str {
        &self.calendar
    }

    fn matches_day(&self, date: NaiveDate) -> bool {
        let [_, _, days, months, weekdays] = self.matches;
        days & 1 << date.day() != 0
            && months & 1 << date.month() != 0
            && weekdays & 1 << date.weekday().num_days_from_sunday() != 0
    }

    fn matches_time(&self, time: NaiveTime) -> bool {
        let [minutes, hours, ..] = self.matches;
        minutes & 1 << time.minute() != 0 && hours & 1 << time.hour() != 0
    }

    /// The first time after `after` that the expression names, in `after`'s time zone. A
    /// local time a DST change skips runs an hour later that day; one that happens twice
    /// runs the first time. None past five years.
    pub fn next_after<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        let start = after.naive_local();
        for day in start.date().iter_days().take(5 * 366) {
            if !self.matches_day(day) {
                continue;
            }
            for minute in 0..24 * 60 {
                let time = NaiveTime::from_hms_opt(minute / 60, minute % 60, 0)?;
                let at = day.and_time(time);
                if at <= start - chrono::Duration::hours(2) || !self.matches_time(time) {
                    continue;
                }
                match instant(&after.timezone(), at) {
                    Some(local) if local > *after => return Some(local),
                    _ => {}
                }
            }
        }
        None
    }

    /// The last time at or before `at` that the expression names. None past five years.
    pub fn last_at_or_before<Tz: TimeZone>(&self, at: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        let end = at.naive_local();
        let mut day = end.date();
        for _ in 0..5 * 366 {
            if self.matches_day(day) {
                for minute in (0..24 * 60).rev() {
                    let time = NaiveTime::from_hms_opt(minute / 60, minute % 60, 0)?;
                    let candidate = day.and_time(time);
                    if candidate > end + chrono::Duration::hours(2) || !self.matches_time(time) {
                        continue;
                    }
                    match instant(&at.timezone(), candidate) {
                        Some(local) if local <= *at => return Some(local),
                        _ => {}
                    }
                }
            }
            day = day.pred_opt()?;
        }
        None
    }
}

/// The instant a local time names: the first of two (the hour a DST change repeats), or,
/// for one the change skips, an hour later (02:30 → 03:30: the job still runs that day).
fn instant<Tz: TimeZone>(tz: &Tz, local: chrono::NaiveDateTime) -> Option<DateTime<Tz>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t),
        LocalResult::None => tz
            .from_local_datetime(&(local + chrono::Duration::hours(1)))
            .earliest(),
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Clone, Copy)]
enum Field {
    Minute,
    Hour,
    Day,
    Month,
    Weekday,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::Day => "day of month",
            Field::Month => "month",
            Field::Weekday => "day of week",
        }
    }

    fn range(self) -> (u32, u32) {
        match self {
            Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::Day => (1, 31),
            Field::Month => (1, 12),
            Field::Weekday => (0, 7),
        }
    }
}

const WEEKDAYS: [&str; 8] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn value(text: &str, field: Field) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    let named = match field {
        Field::Weekday => WEEKDAYS[..7]
            .iter()
            .position(|d| d.eq_ignore_ascii_case(&lower))
            .map(|i| i as u32),
        Field::Month => MONTHS
            .iter()
            .position(|m| *m == lower)
            .map(|i| i as u32 + 1),
        _ => None,
    };
    let n = match named {
        Some(n) => n,
        None => text
            .parse::<u32>()
            .map_err(|_| format!("{text:?} is not a {}", field.name()))?,
    };
    let (low, high) = field.range();
    if n < low || n > high {
        return Err(format!("{} {n} is outside {low}-{high}", field.name()));
    }
    Ok(n)
}

fn show(n: u32, field: Field) -> String {
    match field {
        Field::Weekday => WEEKDAYS[n as usize].to_string(),
        Field::Minute | Field::Hour => format!("{n:02}"),
        _ => n.to_string(),
    }
}

/// One field in systemd's calendar syntax (`*`, `a`, `a..b`, `a/n`, lists), and the values
/// it matches as a bit set (day of week 7 is 0, Sunday).
fn field(text: &str, field: Field) -> Result<(String, u64), String> {
    let (low, high) = field.range();
    let bits = |from: u32, to: u32, step: u32| {
        (from..=to).step_by(step as usize).fold(0u64, |m, v| {
            m | 1
                << (if matches!(field, Field::Weekday) {
                    v % 7
                } else {
                    v
                })
        })
    };
    if text == "*" {
        return Ok(("*".to_string(), bits(low, high, 1)));
    }
    let unsupported = |element: &str| {
        format!(
            "{element:?} in the {} field has no systemd equivalent (use *, N, A-B, */N, N/M or lists)",
            field.name()
        )
    };
    let mut mask = 0;
    let elements = text
        .split(',')
        .map(|element| {
            if let Some(step) = element.strip_prefix("*/") {
                let step: u32 = step.parse().map_err(|_| unsupported(element))?;
                if step == 0 || matches!(field, Field::Weekday) {
                    return Err(unsupported(element));
                }
                mask |= bits(low, high, step);
                return Ok(format!("{}/{step}", show(low, field)));
            }
            if let Some((start, step)) = element.split_once('/') {
                if start.contains('-') || matches!(field, Field::Weekday) {
                    return Err(unsupported(element));
                }
                let step: u32 = step.parse().map_err(|_| unsupported(element))?;
                if step == 0 {
                    return Err(unsupported(element));
                }
                let start = value(start, field)?;
                mask |= bits(start, high, step);
                return Ok(format!("{}/{step}", show(start, field)));
            }
            if let Some((a, b)) = element.split_once('-') {
                let (a, b) = (value(a, field)?, value(b, field)?);
                if a > b {
                    return Err(format!("{element:?}: the range runs backwards"));
                }
                mask |= bits(a, b, 1);
                return Ok(format!("{}..{}", show(a, field), show(b, field)));
            }
            let n = value(element, field)?;
            mask |= bits(n, n, 1);
            Ok(show(n, field))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((elements.join(","), mask))
}

impl FromStr for Cron {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expanded = match text.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = parts[..] else {
            return Err(format!(
                "cron expression {text:?} needs five fields: minute hour day-of-month month day-of-week"
            ));
        };
        let invalid = |reason: String| format!("cron expression {text:?}: {reason}");
        let (minute, minutes) = field(minute, Field::Minute).map_err(invalid)?;
        let (hour, hours) = field(hour, Field::Hour).map_err(invalid)?;
        let (day, days) = field(day, Field::Day).map_err(invalid)?;
        let (month, months) = field(month, Field::Month).map_err(invalid)?;
        let (weekday, weekdays) = field(weekday, Field::Weekday).map_err(invalid)?;
        if day != "*" && weekday != "*" {
            return Err(invalid(
                "cron runs when either the day of month or the day of week matches, which \
                 systemd cannot say: restrict only one of them"
                    .to_string(),
            ));
        }
        let prefix = if weekday == "*" {
            String::new()
        } else {
            format!("{weekday} ")
        };
        Ok(Cron {
            text: text.trim().to_string(),
            fields: parts.join(" "),
            calendar: format!("{prefix}*-{month}-{day} {hour}:{minute}:00"),
            matches: [minutes, hours, days, months, weekdays],
        })
    }
}

impl Serialize for Cron {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Cron {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One scheduled job: an operation on a set, when, and the arguments that run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    /// The set.
    pub set: String,
    /// `backup`, `verify` or `prune`.
    pub operation: Operation,
    /// When.
    pub cron: Cron,
    /// The strongbox arguments after `--config FILE`.
    pub args: Vec<String>,
    /// The sets it locks while it runs: its own, and a bundle backup's members.
    #[serde(skip)]
    pub locks: Vec<String>,
}

impl Job {
    /// `strongbox-<operation>-<set>`, the systemd unit name.
    pub fn unit(&self) -> String {
        format!("strongbox-{}-{}", self.operation, self.set)
    }
}

impl Config {
    /// Every job the sets schedule: `schedule` backs up, `verify_schedule` verifies the
    /// newest snapshot (at the set's `verify` level, else deep), `prune_schedule` prunes by
    /// the set's `keep`.
    pub fn jobs(&self) -> Vec<Job> {
        let mut jobs = Vec::new();
        for (name, set) in &self.sets {
            let level = set
                .verify
                .map_or_else(|| "deep".to_string(), |l| l.to_string());
            let wanted = [
                (
                    &set.schedule,
                    Operation::Backup,
                    vec!["backup".to_string(), name.clone()],
                ),
                (
                    &set.verify_schedule,
                    Operation::Verify,
                    vec![
                        "verify".into(),
                        format!("{name}:latest"),
                        "--level".into(),
                        level,
                    ],
                ),
                (
                    &set.prune_schedule,
                    Operation::Prune,
                    vec!["prune".to_string(), name.clone()],
                ),
            ];
            for (cron, operation, args) in wanted {
                if let Some(cron) = cron {
                    let mut locks = vec![name.clone()];
                    if let (Operation::Backup, SourceSpec::Bundle(bundle)) =
                        (operation, &set.source)
                    {
                        locks.extend(bundle.members.iter().cloned());
                    }
                    jobs.push(Job {
                        set: name.clone(),
                        operation,
                        cron: cron.clone(),
                        args,
                        locks,
                    });
                }
            }
        }
        jobs
    }
}

/// A word for a command line, single-quoted when it needs to be.
fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:=@+,".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The command of `job`; cron turns an unescaped `%` into a newline, systemd reads it as a
/// specifier, so each escapes it its own way (`escape_percent`).
fn command(job: &Job, binary: &Path, config: &Path, escape_percent: &str) -> String {
    let mut words = vec![
        word(&binary.display().to_string(), escape_percent),
        config_words(config, escape_percent),
        "-q".to_string(),
    ];
    words.extend(job.args.iter().map(|arg| word(arg, escape_percent)));
    words.join(" ")
}

/// `--config FILE` as a command names the configuration: also how an installed unit is
/// known to run it.
fn config_words(config: &Path, escape_percent: &str) -> String {
    format!(
        "--config {}",
        word(&config.display().to_string(), escape_percent)
    )
}

/// One word of a command, quoted, with `%` escaped as cron or systemd wants it.
fn word(word: &str, escape_percent: &str) -> String {
    quote(word).replace('%', escape_percent)
}

/// A cron.d file running `jobs` as `user`.
pub fn cron_file(jobs: &[Job], binary: &Path, config: &Path, user: &str) -> String {
    let mut text = format!(
        "{MARK}\nSHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    for job in jobs {
        text.push_str(&format!(
            "{} {user} {}\n",
            job.cron.fields(),
            command(job, binary, config, r"\%")
        ));
    }
    text
}

/// A oneshot service and a timer per job, as (file name, content).
pub fn systemd_units(jobs: &[Job], binary: &Path, config: &Path) -> Vec<(String, String)> {
    let mut units = Vec::new();
    for job in jobs {
        let unit = job.unit();
        let what = format!("strongbox {} of set {}", job.operation, job.set);
        units.push((
            format!("{unit}.service"),
            format!(
                "{MARK}\n[Unit]\nDescription={what}\nWants=network-online.target\nAfter=network-online.target\n\n\
                 [Service]\nType=oneshot\nExecStart={}\nNice=10\nIOSchedulingClass=idle\n",
                command(job, binary, config, "%%")
            ),
        ));
        units.push((
            format!("{unit}.timer"),
            format!(
                "{MARK}\n[Unit]\nDescription={what}, on schedule ({})\n\n[Timer]\nOnCalendar={}\n\
                 Persistent=true\nRandomizedDelaySec=5min\n\n[Install]\nWantedBy=timers.target\n",
                job.cron,
                job.cron.on_calendar()
            ),
        ));
    }
    units
}

/// Where `schedule install` puts the jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installation {
    /// One cron.d file, its jobs run as `user`.
    Cron {
        /// The file.
        file: PathBuf,
        /// The user cron runs them as.
        user: String,
    },
    /// A service and a timer per job in a systemd unit directory.
    Systemd {
        /// The directory.
        dir: PathBuf,
    },
}

/// What [`Installation::install`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Installed {
    /// The files written.
    pub written: Vec<PathBuf>,
    /// The units of an earlier install for jobs no longer configured, removed.
    pub removed: Vec<PathBuf>,
}

impl Installation {
    /// The files that install `jobs` (path and content), running `binary` with `config`.
    pub fn files(&self, jobs: &[Job], binary: &Path, config: &Path) -> Vec<(PathBuf, String)> {
        match self {
            Installation::Cron { file, user } => {
                vec![(file.clone(), cron_file(jobs, binary, config, user))]
            }
            Installation::Systemd { dir } => systemd_units(jobs, binary, config)
                .into_iter()
                .map(|(name, text)| (dir.join(name), text))
                .collect(),
        }
    }

    /// Refuses to write `files` (from [`Installation::files`]) when one of them exists and
    /// an earlier `install` did not write it, or the cron user is not a user name: checked
    /// before the first is written, so an install writes all or nothing.
    pub fn check(&self, files: &[(PathBuf, String)]) -> Result<(), Error> {
        if let Installation::Cron { user, .. } = self {
            if !is_user_name(user) {
                return Err(Error::ScheduleUser { user: user.clone() });
            }
        }
        match files
            .iter()
            .find(|(path, _)| path.exists() && !written_by_install(path))
        {
            Some((path, _)) => Err(Error::ForeignScheduleFile { path: path.clone() }),
            None => Ok(()),
        }
    }

    /// Write the files that install `jobs` ([`Installation::files`]), each atomically, after
    /// [`Installation::check`], then remove the units an earlier install of the same
    /// configuration file wrote for jobs it no longer has (an enabled timer of a removed
    /// schedule kept firing).
    pub fn install(&self, jobs: &[Job], binary: &Path, config: &Path) -> Result<Installed, Error> {
        let files = self.files(jobs, binary, config);
        self.check(&files)?;
        let written = files
            .into_iter()
            .map(
                |(path, text)| match write_atomically(&path, text.as_bytes()) {
                    Ok(()) => Ok(path),
                    Err(source) => Err(Error::ScheduleFile {
                        operation: "writing",
                        path,
                        source,
                    }),
                },
            )
            .collect::<Result<Vec<_>, _>>()?;
        // Only this configuration's: another one's units may share the directory.
        let ours = format!(" {} ", config_words(config, "%%"));
        let installed = self.installed().map_err(|source| Error::ScheduleFile {
            operation: "looking for installed schedules in",
            path: self.place().to_path_buf(),
            source,
        })?;
        // A timer runs its service, which names the configuration: all are judged before
        // any service is removed.
        let runs_ours = |path: &PathBuf| {
            std::fs::read_to_string(path.with_extension("service")).is_ok_and(|text| {
                text.lines()
                    .any(|l| l.starts_with("ExecStart=") && l.contains(&ours))
            })
        };
        let removed: Vec<PathBuf> = installed
            .into_iter()
            .filter(|path| !written.contains(path) && runs_ours(path))
            .collect();
        remove_files(&removed)?;
        Ok(Installed { written, removed })
    }

    /// The file or directory the schedules are installed in.
    fn place(&self) -> &Path {
        match self {
            Installation::Cron { file, .. } => file,
            Installation::Systemd { dir } => dir,
        }
    }

    /// Remove what an earlier `install` wrote here ([`Installation::installed`]); the
    /// paths removed.
    pub fn uninstall(&self) -> Result<Vec<PathBuf>, Error> {
        let removed = self.installed().map_err(|source| Error::ScheduleFile {
            operation: "looking for installed schedules in",
            path: self.place().to_path_buf(),
            source,
        })?;
        remove_files(&removed)?;
        Ok(removed)
    }

    /// The files an earlier `install` wrote here: only those whose first line is [`MARK`],
    /// so a file or unit of someone else's is never taken for one.
    pub fn installed(&self) -> io::Result<Vec<PathBuf>> {
        let candidates = match self {
            Installation::Cron { file, .. } => vec![file.clone()],
            Installation::Systemd { dir } => {
                let mut units = Vec::new();
                for entry in std::fs::read_dir(dir)? {
                    let path = entry?.path();
                    let name = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default();
                    if name.starts_with("strongbox-")
                        && (name.ends_with(".service") || name.ends_with(".timer"))
                    {
                        units.push(path);
                    }
                }
                units.sort();
                units
            }
        };
        Ok(candidates
            .into_iter()
            .filter(|path| written_by_install(path))
            .collect())
    }
}

/// Remove the schedule files at `paths`, failing at the first that will not go.
fn remove_files(paths: &[PathBuf]) -> Result<(), Error> {
    paths.iter().try_for_each(|path| {
        std::fs::remove_file(path).map_err(|source| Error::ScheduleFile {
            operation: "removing",
            path: path.clone(),
            source,
        })
    })
}

/// A name `useradd` accepts: cron.d splits its line at the first blank after the user.
fn is_user_name(user: &str) -> bool {
    let mut chars = user.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && user.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.".contains(c))
}

fn written_by_install(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| text.starts_with(MARK))
}

impl Config {
    /// Refuses to install this configuration's schedules from the file at `path` when the
    /// installed jobs, which see that file alone, from cron's working directory, would back
    /// up elsewhere: the file names no `repo`, another one than this configuration's
    /// (given by `--repo` or `STRONGBOX_REPO`), or a relative path.
    pub fn check_schedulable(&self, path: &Path) -> Result<(), Error> {
        let given = self.repo.clone().unwrap_or_default();
        match Config::load(path)?.repo {
            None => {
                return Err(Error::ScheduleWithoutRepo {
                    path: path.to_path_buf(),
                })
            }
            Some(configured) if configured != given => {
                return Err(Error::ScheduleRepoMismatch {
                    path: path.to_path_buf(),
                    configured,
                    given,
                })
            }
            Some(_) => {}
        }
        match self.location() {
            Ok(strongbox_storage::Location::Local(dir)) if dir.is_relative() => {
                Err(Error::ScheduleRelativeRepo {
                    path: path.to_path_buf(),
                    repo: dir,
                })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_expressions_translate_to_systemd_calendars() {
        let cases: [(&str, Result<&str, &str>); 14] = [
            ("0 2 * * *", Ok("*-*-* 02:00:00")),
            ("30 4 * * 0", Ok("Sun *-*-* 04:30:00")),
            ("*/15 * * * *", Ok("*-*-* *:00/15:00")),
            ("0 */6 * * *", Ok("*-*-* 00/6:00:00")),
            ("0 3 1 * *", Ok("*-*-1 03:00:00")),
            ("0 1 * * mon-fri", Ok("Mon..Fri *-*-* 01:00:00")),
            ("0 1 * * 1,3,5", Ok("Mon,Wed,Fri *-*-* 01:00:00")),
            ("5 0 * jan,jul *", Ok("*-1,7-* 00:05:00")),
            ("@weekly", Ok("Sun *-*-* 00:00:00")),
            ("0 2 * *", Err("five fields")),
            ("61 2 * * *", Err("outside 0-59")),
            ("0 2 1 * 1", Err("restrict only one")),
            ("0 2 * * */2", Err("no systemd equivalent")),
            ("0 5-2 * * *", Err("runs backwards")),
        ];
        for (cron, want) in cases {
            match (cron.parse::<Cron>(), want) {
                (Ok(c), Ok(calendar)) => {
                    assert_eq!(c.on_calendar(), calendar, "{cron}");
                    assert_eq!(c.fields().split(' ').count(), 5, "{cron}");
                }
                (Err(e), Err(phrase)) => assert!(e.contains(phrase), "{cron}: {e}"),
                (got, want) => panic!("{cron}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn next_and_last_times_follow_the_fields() {
        let at = |text: &str| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
                .unwrap()
                .and_utc()
        };
        // (expression, now, next after now, last at or before now)
        let cases = [
            (
                "0 2 * * *",
                "2026-12-01 01:59",
                "2026-12-01 02:00",
                "2026-11-30 02:00",
            ),
            (
                "0 2 * * *",
                "2026-12-01 02:00",
                "2026-12-02 02:00",
                "2026-12-01 02:00",
            ),
            (
                "*/15 * * * *",
                "2026-12-01 10:07",
                "2026-12-01 10:15",
                "2026-12-01 10:00",
            ),
            (
                "30 4 * * sun",
                "2026-12-01 10:00",
                "2026-12-06 04:30",
                "2026-11-29 04:30",
            ),
            (
                "0 0 * * 7",
                "2026-12-01 10:00",
                "2026-12-06 00:00",
                "2026-11-29 00:00",
            ),
            (
                "@monthly",
                "2026-12-15 00:00",
                "2027-01-01 00:00",
                "2026-12-01 00:00",
            ),
            (
                "0 12 29 2 *",
                "2026-03-01 00:00",
                "2028-02-29 12:00",
                "2024-02-29 12:00",
            ),
            (
                "5 1-3 * jan-feb *",
                "2026-12-01 00:00",
                "2027-01-01 01:05",
                "2026-02-28 03:05",
            ),
            (
                "10/20 * * * *",
                "2026-12-01 10:31",
                "2026-12-01 10:50",
                "2026-12-01 10:30",
            ),
        ];
        for (text, now, next, last) in cases {
            let cron: Cron = text.parse().unwrap();
            let now = at(now);
            assert_eq!(cron.next_after(&now), Some(at(next)), "{text} after {now}");
            assert_eq!(
                cron.last_at_or_before(&now),
                Some(at(last)),
                "{text} before {now}"
            );
        }
    }

    #[test]
    fn daylight_saving_changes_neither_skip_nor_repeat_a_run() {
        use chrono_tz::Europe::Berlin;
        let at = |text: &str| {
            Berlin
                .from_local_datetime(
                    &chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap(),
                )
                .earliest()
                .unwrap()
        };
        // 29 March 2026: 02:00 becomes 03:00. 25 October 2026: 03:00 becomes 02:00 again.
        let daily: Cron = "30 2 * * *".parse().unwrap();
        let skipped = daily.next_after(&at("2026-03-29 01:00")).unwrap();
        assert_eq!(
            skipped.naive_local().to_string(),
            "2026-03-29 03:30:00",
            "run that day"
        );
        let first = daily.next_after(&at("2026-10-25 01:00")).unwrap();
        assert_eq!(first.naive_local().to_string(), "2026-10-25 02:30:00");
        // Once, not again when 02:30 comes round a second time.
        let later = first + chrono::Duration::minutes(45);
        let next = daily.next_after(&later).unwrap();
        assert_eq!(next.naive_local().to_string(), "2026-10-26 02:30:00");
        assert_eq!(daily.last_at_or_before(&later), Some(first));
    }

    #[test]
    fn a_percent_sign_reaches_the_command_whole_under_cron_and_systemd() {
        let job = Job {
            set: "media".to_string(),
            operation: Operation::Backup,
            cron: "0 2 * * *".parse().unwrap(),
            args: vec!["backup".to_string(), "media".to_string()],
            locks: Vec::new(),
        };
        let config = Path::new("/etc/str%ong box.toml");
        let cron = cron_file(
            std::slice::from_ref(&job),
            Path::new("/bin/sb"),
            config,
            "root",
        );
        assert!(cron.contains(r"'/etc/str\%ong box.toml'"), "{cron}");
        let units = systemd_units(&[job], Path::new("/bin/sb"), config);
        assert!(
            units[0].1.contains("'/etc/str%%ong box.toml'"),
            "{}",
            units[0].1
        );
    }

    #[test]
    fn commands_quote_what_the_shell_would_split() {
        let cases = [
            ("/usr/bin/strongbox", "/usr/bin/strongbox"),
            ("/etc/my config.toml", "'/etc/my config.toml'"),
            ("it's", r"'it'\''s'"),
            ("media:latest", "media:latest"),
        ];
        for (word, quoted) in cases {
            assert_eq!(quote(word), quoted);
        }
    }

    #[test]
    fn an_install_replaces_only_files_an_earlier_install_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("ours");
        std::fs::write(&ours, format!("{MARK}\nold\n")).unwrap();
        let theirs = dir.path().join("theirs");
        std::fs::write(&theirs, "someone else's\n").unwrap();
        let missing = dir.path().join("missing");
        let file = |path: &Path| (path.to_path_buf(), String::new());

        let cron = |user: &str| Installation::Cron {
            file: ours.clone(),
            user: user.to_string(),
        };
        cron("root").check(&[file(&ours), file(&missing)]).unwrap();
        let err = cron("root")
            .check(&[file(&ours), file(&theirs)])
            .unwrap_err();
        assert!(
            matches!(&err, Error::ForeignScheduleFile { path } if *path == theirs),
            "{err}"
        );
        for user in ["bob x", "", "Bob", "-x", "a\nb"] {
            let err = cron(user).check(&[]).unwrap_err();
            assert!(
                matches!(&err, Error::ScheduleUser { .. }),
                "{user:?}: {err}"
            );
        }
        for user in ["backup", "_strongbox", "svc-backup.1"] {
            cron(user).check(&[]).unwrap();
        }
    }

    #[test]
    fn an_install_or_uninstall_where_there_is_no_directory_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("no-such-dir");
        let cron = Installation::Cron {
            file: gone.join("strongbox"),
            user: "root".to_string(),
        };
        let err = cron
            .install(
                &[],
                Path::new("/usr/bin/strongbox"),
                Path::new("/etc/s.toml"),
            )
            .unwrap_err();
        assert!(
            matches!(&err, Error::ScheduleFile { operation: "writing", path, .. } if *path == gone.join("strongbox")),
            "{err}"
        );
        assert!(!gone.exists(), "nothing written");
        assert_eq!(cron.uninstall().unwrap(), Vec::<PathBuf>::new());
        let err = Installation::Systemd { dir: gone.clone() }
            .uninstall()
            .unwrap_err();
        assert!(
            err.to_string() == format!("looking for installed schedules in {}", gone.display()),
            "{err}"
        );
    }
}
