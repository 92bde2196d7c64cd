//! The strongbox command line: parsing, output, progress and exit codes; the work is in the
//! libraries (configuration in strongbox-config, everything else in strongbox-engine).

mod cli;
mod output;
mod progress;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser};
use serde::Serialize;
use strongbox_config::Config;
use strongbox_engine::{
    human_bytes, BackupOptions, Cancel, Dashboard, DataDirTarget, Engine, FilesSpec, HealthOptions,
    HealthReport, HealthStatus, PostgresSpec, PruneOptions, Reader, RecoveryTarget, Report,
    RestoreOptions, Restorer, SetSpec, SourceSpec, SqliteSpec, TargetSpec, VerifyLevel,
    VerifyOptions,
};
use strongbox_manifest::SnapshotKind;
use strongbox_storage::{
    ExposeSecret, KeyHolder, Location, RepoReader, Repository, SecretString, Store, Unlock,
    UploadOptions,
};

use cli::{Backup, BackupArgs, Cli, Command, ConfigCommand, InitArgs, KeyCommand};
use output::{LsEntry, LsRow};

/// Exit status for a backup that was written without some unreadable files.
const EXIT_INCOMPLETE: u8 = 3;
/// Exit status for a usage or configuration error.
const EXIT_USAGE: u8 = 2;
/// Exit status of `wal fetch` when it fails: above 125, PostgreSQL stops recovery instead of
/// taking the failure for the end of the archive (exit 1) and promoting early.
const EXIT_FETCH_FAILED: u8 = 126;
/// Exit status of a command stopped by Ctrl-C or SIGTERM, cleaned up or not (the shell's,
/// and restic's).
const EXIT_INTERRUPTED: u8 = 130;

/// A usage error found after parsing, a combination of arguments clap cannot check: exit 2,
/// as clap's own.
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A line on standard error; one that cannot be written (a full disk behind `2>>log`) is
/// lost rather than turned into a panic.
macro_rules! note {
    ($($arg:tt)*) => {{
        let line = format!($($arg)*);
        let _ = writeln!(std::io::stderr().lock(), "{}", output::terminal_safe(&line));
    }};
}

/// Return a [`Usage`] error.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err(Usage(format!($($arg)*)).into())
    };
}

fn main() -> ExitCode {
    // `--version --json` before clap, which prints its version text and exits on --version.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() == 2
        && args.iter().any(|a| a == "--json")
        && args.iter().any(|a| a == "--version" || a == "-V")
    {
        let version = serde_json::json!({
            "name": "strongbox",
            "version": env!("CARGO_PKG_VERSION"),
            "commit": env!("STRONGBOX_GIT_COMMIT"),
            "build_date": env!("STRONGBOX_BUILD_DATE"),
        });
        return match say(&version) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&anyhow::Error::new(e), false, 1),
        };
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_failed(&e, &args),
    };
    init_logging(&cli);
    warn_of_passwords_in(&args);
    let json = cli.json;
    let fetching = matches!(cli.command, Command::Wal(cli::WalCommand::Fetch { .. }));
    // A health check that cannot run is unknown to a monitoring system, as an unreachable
    // repository is, never critical (2, the usage status).
    let checking = match &cli.command {
        Command::Health(args) => Some(args.prometheus.clone()),
        _ => None,
    };
    let fail = |error: &anyhow::Error, json: bool, code: u8| {
        if let Some(metrics) = &checking {
            note!("strongbox: error: {error:#}");
            return health_unknown(&format!("{error:#}"), json, metrics.as_deref());
        }
        fail(error, json, if fetching { EXIT_FETCH_FAILED } else { code })
    };
    let config = match load_config(&cli) {
        Ok(config) => config,
        Err(e) => return fail(&e, json, EXIT_USAGE),
    };
    // Everything strongbox creates (repository objects, staging dirs) is private.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    raise_open_files_limit();
    let unlock = match load_unlock(&cli) {
        Ok(unlock) => unlock,
        Err(e) => return fail(&e, json, 1),
    };
    let (cancel, quit) = (Cancel::new(), Cancel::new());
    {
        let (cancel, quit) = (cancel.clone(), quit.clone());
        // The daemon hears a second signal from its loop, to stop its jobs' process groups
        // before it exits; a third exits at once.
        let daemon = matches!(cli.command, Command::Daemon(_));
        let grace = cli.cleanup_timeout;
        let _ = ctrlc::set_handler(move || {
            if cancel.is_cancelled() {
                if daemon && !quit.is_cancelled() {
                    quit.cancel();
                    return;
                }
                std::process::exit(EXIT_INTERRUPTED.into());
            }
            note!("interrupting: cleaning up (press Ctrl-C again to quit at once)");
            cancel.cancel();
            if !daemon {
                // Storage that stopped answering would hold the cleanup through every
                // request's retries (541 s against a stalled S3 server). Quitting leaves
                // what a kill leaves, which the next run takes over.
                std::thread::spawn(move || {
                    std::thread::sleep(grace);
                    note!(
                        "strongbox: cleanup did not finish within {} (--cleanup-timeout); quitting",
                        humantime::format_duration(grace)
                    );
                    std::process::exit(EXIT_INTERRUPTED.into());
                });
            }
        });
    }
    let notifier = match config.alerts.notifier() {
        Ok(notifier) => Arc::new(notifier),
        Err(e) => return fail(&e.into(), json, EXIT_USAGE),
    };
    let app = App {
        notifier,
        identity: cli.identity.clone(),
        upload: UploadOptions {
            part_size: cli.part_size as usize * 1024 * 1024,
            concurrency: cli.upload_concurrency as usize,
            storage_class: config.storage_class.clone(),
        },
        config,
        config_path: cli.config.clone(),
        json,
        quiet: cli.quiet,
        cancel,
        quit,
        unlock,
    };
    let alerted = app.alerted_operation(&cli.command);
    match app.run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            // A usage error too: a scheduled job's command line fails every night.
            if let Some((set, operation)) = alerted {
                app.alert_failure(set.as_deref(), operation, &e);
            }
            let code = match app.cancel.is_cancelled() {
                true => EXIT_INTERRUPTED,
                false => failure_code(&e),
            };
            fail(&e, json, code)
        }
    }
}

/// Raise the soft limit of open files toward the hard one, as Go programs do at start: removing
/// or checking a restored tree holds a descriptor per level, and a tree 1,200 levels deep
/// (which backs up and restores) failed its restore test and left its staging tree behind
/// under systemd's and runuser's soft limit of 1,024 (the hard one is 524,288 there).
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    // Enough for the deepest tree a path of 4,096 bytes can hold, and no more: the tools
    // strongbox runs (pg_dump, postgres) inherit it, and some close every descriptor up to
    // it, or use select(), which stops at 1,024.
    const WANTED: u64 = 8192;
    let mut limit = getrlimit(Resource::Nofile);
    let wanted = limit.maximum.map_or(WANTED, |max| max.min(WANTED));
    if limit.current.is_some_and(|current| current < wanted) {
        limit.current = Some(wanted);
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// A new passphrase for `flag`: the secret from `var`, else asked twice on a terminal. A
/// value on the command line is refused.
fn new_passphrase(flag: &str, value: &str, var: &str) -> Result<SecretString> {
    if !value.is_empty() {
        bail!(
            "refusing a passphrase on the command line, where every user of this host can read it: \
             set {var} and pass {flag} alone"
        );
    }
    if let Some(p) = env_secret(var) {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!("{flag} reads the passphrase from {var}, which is not set (or empty), and there is no terminal to ask on");
    }
    let first = ask("New passphrase: ")?;
    if ask("Repeat the new passphrase: ")?.expose_secret() != first.expose_secret() {
        bail!("the two passphrases differ; nothing was changed");
    }
    Ok(first)
}

/// A passphrase asked on the terminal, not echoed.
fn ask(prompt: &str) -> Result<SecretString> {
    let answer =
        rpassword::prompt_password(prompt).context("reading a passphrase from the terminal")?;
    if answer.is_empty() {
        bail!("no passphrase given");
    }
    Ok(SecretString::from(answer))
}

/// A connection string with its password (`backup postgres`, `restore --target`, a
/// bundle's `--target MEMBER=…`, `--scratch-postgres`) is taken, as libpq's tools take it,
/// but said to be readable by every user of the host, as mysql's client says. An argument
/// is looked at whole and after its first `=` (`--target=…`, `MEMBER=…`).
fn warn_of_passwords_in(args: &[String]) {
    let given = |arg: &String| {
        let after = arg.split_once('=').map(|(_, value)| value);
        [Some(arg.as_str()), after]
            .into_iter()
            .flatten()
            .any(strongbox_db_dump::holds_password)
    };
    if args.iter().any(given) {
        note!(
            "strongbox: warning: a connection string on the command line holds a password, \
             which every user of this host can read in the process list; give it in \
             PGPASSWORD, ~/.pgpass or the configuration file instead"
        );
    }
}

/// The readers an `init --encrypt` makes key files for.
fn key_holders(args: &InitArgs) -> Result<Vec<KeyHolder>> {
    let mut holders: Vec<KeyHolder> = args
        .recipient
        .iter()
        .map(|r| KeyHolder::Recipient(r.clone()))
        .collect();
    if let Some(path) = &args.recipients_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading recipients file {}", path.display()))?;
        holders.extend(
            KeyHolder::from_recipients_file(&text)
                .with_context(|| format!("recipients file {}", path.display()))?,
        );
    }
    if let Some(value) = &args.passphrase {
        holders.push(KeyHolder::Passphrase(new_passphrase(
            "--passphrase",
            value,
            "STRONGBOX_PASSPHRASE",
        )?));
    }
    if args.encrypt && holders.is_empty() {
        usage!("init --encrypt needs --recipient, --recipients-file or --passphrase");
    }
    // Before the store is created: a refused init leaves no directory behind.
    holders.iter().try_for_each(KeyHolder::check)?;
    Ok(holders)
}

/// A health check that could not run: unknown to monitoring, in health's own shape, and in
/// the metrics file if one was asked for (left as it was, it would show the last run's
/// state, ok perhaps, through the outage).
fn health_unknown(message: &str, json: bool, metrics: Option<&std::path::Path>) -> ExitCode {
    let report = HealthReport::unknown(message);
    // Unknown it stays if even this cannot be written (a full disk behind stdout).
    let _ = if json {
        let mut shown = serde_json::to_value(&report).expect("a report serializes");
        shown["error"] = message.into();
        say(&shown)
    } else {
        say(&format!("UNKNOWN: {message}"))
    };
    if let Some(path) = metrics {
        if let Err(e) = strongbox_engine::write_atomically(path, report.to_prometheus().as_bytes())
        {
            note!("strongbox: error: writing {}: {e:#}", path.display());
        }
    }
    ExitCode::from(HealthStatus::Unknown.exit_code())
}

/// A command line clap refused (or `--help`, `--version`). Where the command's caller reads
/// the exit status, a usage error keeps that caller's meaning: `health` is UNKNOWN to
/// monitoring (2 would read as CRITICAL), and `wal fetch` fails recovery (2 would read as
/// "no such WAL file" and end it early).
fn usage_failed(error: &clap::Error, args: &[String]) -> ExitCode {
    if !error.use_stderr() {
        error.exit();
    }
    let json = args
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--json");
    // clap's message is its lines up to the first blank one (the missing arguments are
    // listed below the first), then usage and a hint.
    let rendered = error.render().to_string();
    let message = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let line = message.strip_prefix("error: ").unwrap_or(&message);
    let matches = Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(std::iter::once("strongbox".to_string()).chain(args.iter().cloned()));
    let command = matches.as_ref().ok().and_then(|m| m.subcommand());
    if let Some(("health", m)) = command {
        let _ = error.print();
        // The metrics file too, if it was named before the mistake.
        let metrics = m.try_get_one::<PathBuf>("prometheus").ok().flatten();
        return health_unknown(line, json, metrics.map(PathBuf::as_path));
    }
    // One JSON document on stdout, as after any other failure.
    if json {
        let _ = say(&serde_json::json!({ "error": line }));
    }
    match command.and_then(|(command, m)| Some((command, m.subcommand_name()?))) {
        Some(("wal", "fetch")) => {
            let _ = error.print();
            ExitCode::from(EXIT_FETCH_FAILED)
        }
        _ => error.exit(),
    }
}

/// One line on standard output, an error if it cannot be written.
fn say(line: &dyn std::fmt::Display) -> std::io::Result<()> {
    writeln!(std::io::stdout().lock(), "{line}")
}

/// The exit status of a failed command: 2 for what the command line got wrong, whichever
/// crate found it (a set name, a keep policy), else 1.
fn failure_code(error: &anyhow::Error) -> u8 {
    let usage = |e: &(dyn std::error::Error + 'static)| {
        e.is::<Usage>()
            || matches!(
                e.downcast_ref::<strongbox_storage::Error>(),
                Some(strongbox_storage::Error::InvalidSetName { .. })
            )
            || matches!(
                e.downcast_ref::<strongbox_retention::Error>(),
                Some(
                    strongbox_retention::Error::EmptyPolicy
                        | strongbox_retention::Error::InvalidTimezone { .. }
                        | strongbox_retention::Error::InvalidDuration { .. }
                )
            )
    };
    match error.chain().any(usage) {
        true => EXIT_USAGE,
        false => 1,
    }
}

/// Print an error with its causes on one line (and as JSON with --json); exit with `code`.
fn fail(error: &anyhow::Error, json: bool, code: u8) -> ExitCode {
    let message = format!("{error:#}");
    if json {
        // The error goes to stderr below whether or not stdout takes it (closed, full).
        let _ = say(&serde_json::json!({ "error": message }));
    }
    note!("strongbox: error: {message}");
    ExitCode::from(code)
}

fn load_config(cli: &Cli) -> Result<Config> {
    let config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    Ok(config.with_overrides(cli.repo.clone(), cli.storage_class.clone()))
}

/// A secret from the environment (never an argument: those are visible to all users).
fn env_secret(var: &str) -> Option<SecretString> {
    std::env::var(var)
        .ok()
        .filter(|p| !p.is_empty())
        .map(SecretString::from)
}

/// What unlocks an encrypted repository: --identity (STRONGBOX_IDENTITY), else
/// STRONGBOX_PASSPHRASE. `init` creates keys instead and takes none.
fn load_unlock(cli: &Cli) -> Result<Option<Unlock>> {
    if matches!(cli.command, Command::Init(_)) {
        return Ok(None);
    }
    if let Some(path) = &cli.identity {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading identity file {}", path.display()))?;
        let unlock = Unlock::identity(SecretString::from(text))
            .with_context(|| format!("identity file {}", path.display()))?;
        return Ok(Some(unlock));
    }
    Ok(env_secret("STRONGBOX_PASSPHRASE").map(Unlock::Passphrase))
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        // The daemon's log is its job lines.
        (false, 0) if matches!(cli.command, Command::Daemon(_)) => "info",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRONGBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

struct App {
    config: Config,
    config_path: Option<PathBuf>,
    upload: UploadOptions,
    json: bool,
    quiet: bool,
    cancel: Cancel,
    /// A second stop signal, which the daemon hears.
    quit: Cancel,
    unlock: Option<Unlock>,
    identity: Option<PathBuf>,
    notifier: Arc<strongbox_alert::Notifier>,
}

impl App {
    /// The set and operation a failure of `command` alerts about: backup, verify, prune.
    fn alerted_operation(&self, command: &Command) -> Option<(Option<String>, &'static str)> {
        match command {
            Command::Backup(args) => Some((
                args.set
                    .clone()
                    .or_else(|| args.kind.as_ref().map(|k| k.set().to_string())),
                "backup",
            )),
            Command::Verify(args) => Some((
                args.snapshots
                    .first()
                    .and_then(|s| s.strip_suffix(":latest"))
                    .map(str::to_string),
                "verify",
            )),
            Command::Prune(args) => Some((args.set.clone(), "prune")),
            _ => None,
        }
    }

    /// A failure alert for an error the engine did not alert on itself: one before the run
    /// was journalled (the repository unreachable, a key missing).
    fn alert_failure(&self, set: Option<&str>, operation: &str, error: &anyhow::Error) {
        if self.notifier.attempts() > 0 {
            return;
        }
        let repository = self
            .location()
            .map_or_else(|_| "(none)".to_string(), |l| l.to_string());
        let alert = strongbox_alert::Alert::new(
            strongbox_alert::Event::Failure,
            set,
            operation,
            &repository,
            &strongbox_storage::host_name(),
        )
        .with_error(format!("{error:#}"));
        self.notifier.notify(&alert);
    }

    fn location(&self) -> Result<Location> {
        Ok(self.config.location()?)
    }

    fn store(&self) -> Result<Store> {
        Ok(Store::connect(
            &self.location()?,
            &self.config.store_options(),
        )?)
    }

    fn progress(&self) -> Option<Arc<progress::Bar>> {
        (!self.quiet && std::io::stderr().is_terminal()).then(|| Arc::new(progress::Bar::new()))
    }

    /// The repository, read-only.
    fn reader(&self) -> Result<Reader> {
        let repo = RepoReader::open_store(self.store()?)?;
        let key = self.key_for(&repo)?;
        let reader = Reader::new(repo.with_key(key.as_ref())?)
            .with_cancel(self.cancel.clone())
            .with_alerts(self.notifier.clone());
        Ok(match self.progress() {
            Some(bar) => reader.with_progress(bar),
            None => reader,
        })
    }

    /// What unlocks `repo`: the key given; with none, for an encrypted repository with a
    /// passphrase key, the passphrase asked on a terminal.
    fn key_for(&self, repo: &RepoReader) -> Result<Option<Unlock>> {
        if self.unlock.is_some()
            || repo.marker().encryption != strongbox_storage::AGE
            || !std::io::stdin().is_terminal()
            || !repo.keys()?.iter().any(|k| k.kind == "passphrase")
        {
            return Ok(self.unlock.clone());
        }
        let passphrase = ask(&format!("Passphrase for {}: ", repo.location()))?;
        Ok(Some(Unlock::Passphrase(passphrase)))
    }

    /// How to verify at `level`: scratch space from the flags, else the configuration.
    fn verify_options(&self, level: VerifyLevel, scratch: &cli::Scratch) -> VerifyOptions {
        let configured = self.config.verify_options(level);
        VerifyOptions {
            scratch_dir: scratch.scratch_dir.clone(),
            scratch_postgres: scratch
                .scratch_postgres
                .clone()
                .or(configured.scratch_postgres),
            ..configured
        }
    }

    /// `repo`, unlocked with [`App::key_for`].
    fn unlocked(&self, repo: Repository) -> Result<Repository> {
        let key = self.key_for(repo.as_reader())?;
        Ok(repo.with_key(key.as_ref())?)
    }

    fn engine_over(&self, repo: Repository) -> Result<Engine> {
        let repo = self
            .unlocked(repo)?
            .with_upload_options(self.upload.clone());
        let engine = Engine::new(repo)
            .with_cancel(self.cancel.clone())
            .with_alerts(self.notifier.clone());
        Ok(match self.progress() {
            Some(bar) => engine.with_progress(bar),
            None => engine,
        })
    }

    /// The repository, writable.
    fn engine(&self) -> Result<Engine> {
        self.engine_over(Repository::open_store(self.store()?)?)
    }

    /// Print `value` as JSON with --json, else the human text.
    fn print<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) -> Result<()> {
        let text = if self.json {
            serde_json::to_string_pretty(value)?
        } else if !self.quiet {
            output::terminal_safe(&human()).into_owned()
        } else {
            return Ok(());
        };
        match writeln!(std::io::stdout().lock(), "{text}") {
            // A reader that stopped early (`strongbox snapshots | head`) is no failure.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            written => written.context("writing to standard output"),
        }
    }

    /// `ls`: rows are written as the listing is read, so a tree of millions of entries is
    /// never held whole; `--json` gives the same pretty array as `print`.
    fn ls(&self, snapshot: &str) -> Result<ExitCode> {
        let reader = self.reader()?;
        let entries = reader.entries(&reader.resolve(snapshot)?)?;
        let mut failed = None;
        let mut rows = entries
            .map_while(|entry| entry.map_err(|e| failed = Some(e)).ok())
            .fuse();
        let written = (|| -> std::io::Result<()> {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            if self.json {
                let mut json = serde_json::Serializer::pretty(&mut out);
                serde::Serializer::collect_seq(&mut json, rows.by_ref().map(LsEntry))?;
                writeln!(out)?;
            } else if !self.quiet {
                for entry in rows.by_ref() {
                    writeln!(out, "{}", output::ls_line(&LsRow::from(&entry)))?;
                }
            }
            out.flush()
        })();
        match written {
            // `ls | head`: the reader has what it wanted.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
            other => other?,
        }
        // `-q` printed nothing: the listing is still read to its end, so a damaged one fails.
        rows.for_each(drop);
        if let Some(e) = failed {
            return Err(e.into());
        }
        Ok(ExitCode::SUCCESS)
    }

    fn run(&self, command: Command) -> Result<ExitCode> {
        match command {
            Command::Init(args) => {
                let holders = key_holders(&args)?;
                let store = Store::create(&self.location()?, &self.config.store_options())?;
                let repo = if args.encrypt {
                    Repository::init_store_encrypted(store, &holders)?
                } else {
                    Repository::init_store(store)?
                };
                self.print(
                    &serde_json::json!({ "location": repo.location(), "marker": repo.marker() }),
                    || format!("created strongbox repository at {}", repo.location()),
                )?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Backup(args) => self.backup(args),
            Command::Status { sets, html } => {
                // A page that cannot be made says so, rather than keep the last one's state.
                let write_page = |path: &std::path::Path, dashboard: &Dashboard| {
                    strongbox_engine::write_atomically(path, dashboard.to_html().as_bytes())
                        .with_context(|| format!("writing {}", path.display()))
                };
                let unknown = |path: &std::path::Path, e: anyhow::Error| {
                    let location = self.location().map(|l| l.to_string()).unwrap_or_default();
                    write_page(path, &Dashboard::unknown(&location, &format!("{e:#}")))?;
                    Err(e)
                };
                let reader = match (self.reader(), &html) {
                    (Ok(reader), _) => reader,
                    (Err(e), Some(path)) => return unknown(path, e),
                    (Err(e), None) => return Err(e),
                };
                self.config
                    .known_sets(sets.iter().map(String::as_str), || {
                        Ok::<_, anyhow::Error>(reader.sets()?)
                    })?;
                if let Some(path) = html {
                    reader.check_output(&path)?;
                    match reader.dashboard(&sets, &self.config.health_options()) {
                        Ok(dashboard) => write_page(&path, &dashboard)?,
                        Err(e) => return unknown(&path, e.into()),
                    }
                }
                let configured: Vec<String> = self.config.sets.keys().cloned().collect();
                let statuses = reader.status(&sets, &configured)?;
                self.print(&statuses, || output::status_text(&statuses))?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Health(args) => self.health(args),
            Command::Snapshots { set } => {
                let reader = self.reader()?;
                self.config
                    .known_sets(set.as_deref(), || Ok::<_, anyhow::Error>(reader.sets()?))?;
                let records = reader.records(set.as_deref())?;
                let snapshots = records.snapshots;
                let sets: std::collections::BTreeSet<&str> =
                    snapshots.iter().map(|s| s.set.as_str()).collect();
                let mut verified = std::collections::HashMap::new();
                for set in sets {
                    verified.extend(reader.last_verifications(set)?);
                }
                let rows = snapshots
                    .iter()
                    .map(|s| {
                        let mut row = serde_json::to_value(s)?;
                        row["last_verification"] =
                            serde_json::to_value(verified.get(s.id.as_str()))?;
                        Ok(row)
                    })
                    .collect::<Result<Vec<_>>>()?;
                self.print(&rows, || output::snapshot_table(&snapshots, &verified))?;
                // The readable ones are listed; each damaged one is an error of its own.
                let complete = records.damaged.is_empty();
                for damaged in records.damaged {
                    note!(
                        "strongbox: error: left out snapshot {} of set {}: {:#}",
                        damaged.id,
                        damaged.set,
                        anyhow::Error::from(damaged.error)
                    );
                }
                Ok(if complete {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
            Command::Show { snapshot } => {
                let reader = self.reader()?;
                let snapshot = reader.resolve(&snapshot)?;
                let last = reader
                    .last_verifications(&snapshot.set)?
                    .remove(&snapshot.id.to_string());
                let mut shown = serde_json::to_value(&snapshot)?;
                shown["last_verification"] = serde_json::to_value(&last)?;
                self.print(&shown, || {
                    serde_json::to_string_pretty(&shown).unwrap_or_default()
                })?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Ls { snapshot } => self.ls(&snapshot),
            Command::Restore(args) => self.restore(args),
            Command::Prune(args) => self.prune(args),
            Command::Verify(args) => self.verify(args),
            Command::Key(command) => self.key(command),
            Command::Notify(cli::NotifyCommand::Test) => self.notify_test(),
            Command::Wal(command) => self.wal(command),
            Command::Unlock { set, force } => {
                let engine = self.engine()?;
                let removed = engine.unlock(&set, force)?;
                if removed.is_none() {
                    // Neither configured nor in the repository: a typo, not an unlocked set.
                    self.config.known_sets([set.as_str()], || {
                        Ok::<_, anyhow::Error>(engine.repo().set_dirs()?)
                    })?;
                }
                self.print(
                    &serde_json::json!({ "set": set, "removed": removed }),
                    || match &removed {
                        Some(lock) => format!(
                            "removed the lock of set {set}: {} by pid {} on host {} since {}",
                            lock.operation,
                            lock.pid,
                            lock.host,
                            lock.time.to_rfc3339()
                        ),
                        None => format!("set {set} is not locked"),
                    },
                )?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Daemon(args) => self.daemon(args),
            Command::Completions { shell } => {
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "strongbox", &mut script);
                if self.json {
                    let script = String::from_utf8_lossy(&script);
                    self.print(
                        &serde_json::json!({"shell": shell.to_string(), "script": script}),
                        String::new,
                    )?;
                    return Ok(ExitCode::SUCCESS);
                }
                match std::io::stdout().lock().write_all(&script) {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                    written => written.context("writing the completion script")?,
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Man { dir } => {
                let written = write_man_pages(&dir)?;
                self.print(&written, || {
                    format!("wrote {} man pages into {}", written.len(), dir.display())
                })?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Schedule(command) => self.schedule(command),
            Command::Config(ConfigCommand::Check) => {
                self.config.check_variables()?;
                self.print(&self.config, || {
                    toml::to_string(&self.config)
                        .unwrap_or_else(|e| format!("(cannot show the configuration: {e})"))
                        .trim_end()
                        .to_string()
                })?;
                Ok(ExitCode::SUCCESS)
            }
        }
    }

    fn key(&self, command: KeyCommand) -> Result<ExitCode> {
        match command {
            KeyCommand::Add {
                recipient,
                passphrase,
            } => {
                let holder = match (recipient, passphrase) {
                    (Some(r), _) => KeyHolder::Recipient(r),
                    (None, Some(value)) => KeyHolder::Passphrase(new_passphrase(
                        "--passphrase",
                        &value,
                        "STRONGBOX_NEW_PASSPHRASE",
                    )?),
                    (None, None) => usage!("key add needs --recipient or --passphrase"),
                };
                let repo = self.unlocked(Repository::open_store(self.store()?)?)?;
                let id = repo.add_key(&holder)?;
                self.print(
                    &serde_json::json!({ "id": id, "kind": holder.kind() }),
                    || format!("added {} key {id}", holder.kind()),
                )?;
            }
            KeyCommand::Passwd { id } => {
                let repo = self.unlocked(Repository::open_store(self.store()?)?)?;
                let id = id
                    .or_else(|| repo.as_reader().unlocked_by().map(str::to_string))
                    .ok_or_else(|| Usage("key passwd needs the key id (see key list)".into()))?;
                let new = new_passphrase("key passwd", "", "STRONGBOX_NEW_PASSPHRASE")?;
                repo.change_passphrase(&id, &new)?;
                self.print(&serde_json::json!({ "changed": id }), || {
                    format!("changed the passphrase of key {id}")
                })?;
            }
            KeyCommand::List => {
                let keys = self.reader()?.repo().keys()?;
                self.print(&keys, || output::key_table(&keys))?;
            }
            KeyCommand::Remove { id } => {
                let repo = self.unlocked(Repository::open_store(self.store()?)?)?;
                repo.remove_key(&id)?;
                self.print(&serde_json::json!({ "removed": id }), || {
                    format!("removed key {id}")
                })?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    fn schedule(&self, command: cli::ScheduleCommand) -> Result<ExitCode> {
        let config_path = || -> Result<PathBuf> {
            let path = self
                .config_path
                .as_deref()
                .context("schedules come from the configuration file: give --config FILE")?;
            Ok(std::path::absolute(path)?)
        };
        let jobs = self.config.jobs();
        match command {
            cli::ScheduleCommand::List => {
                config_path()?;
                self.print(&jobs, || {
                    if jobs.is_empty() {
                        return "no set has a schedule".to_string();
                    }
                    jobs.iter()
                        .map(|j| {
                            format!(
                                "{:<8} {:<16} {:<16} OnCalendar={}  strongbox {}",
                                j.operation.as_str(),
                                j.set,
                                j.cron.as_str(),
                                j.cron.on_calendar(),
                                j.args.join(" ")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })?;
            }
            cli::ScheduleCommand::Install { target, user } => {
                let config_path = config_path()?;
                let binary = self.scheduled_binary(&config_path)?;
                self.config.check_schedulable(&config_path)?;
                let installed = target
                    .installation(user)
                    .install(&jobs, &binary, &config_path)?;
                self.print(&installed, || {
                    let wrote = installed
                        .written
                        .iter()
                        .map(|p| format!("wrote {}", p.display()));
                    let removed = installed.removed.iter().map(|p| {
                        format!(
                            "removed {} (its schedule is no longer configured; `systemctl disable --now` a removed timer, then daemon-reload)",
                            p.display()
                        )
                    });
                    wrote.chain(removed).collect::<Vec<_>>().join("\n")
                })?;
            }
            // What install wrote is found by its mark: no configuration is needed, which
            // may be gone before the schedules are.
            cli::ScheduleCommand::Uninstall { target } => {
                let removed = target.installation(String::new()).uninstall()?;
                self.print(&removed, || {
                    if removed.is_empty() {
                        return "nothing strongbox installed there".to_string();
                    }
                    removed
                        .iter()
                        .map(|p| format!("removed {}", p.display()))
                        .collect::<Vec<_>>()
                        .join("\n")
                })?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// This program's path, for the jobs that run it; an error when `config_path`
    /// schedules nothing.
    fn scheduled_binary(&self, config_path: &std::path::Path) -> Result<PathBuf> {
        if self.config.jobs().is_empty() {
            bail!(
                "{} schedules nothing: give a set `schedule`, `verify_schedule` or `prune_schedule`",
                config_path.display()
            );
        }
        std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .context("finding this program's path")
    }

    fn daemon(&self, args: cli::DaemonArgs) -> Result<ExitCode> {
        let config_path = self
            .config_path
            .as_deref()
            .context("the daemon runs the configuration's schedules: give --config FILE")?;
        let config_path = std::path::absolute(config_path)?;
        let binary = self.scheduled_binary(&config_path)?;
        // What flags told the daemon, the jobs are told through the environment.
        let mut env = Vec::new();
        if let Some(identity) = &self.identity {
            env.push((
                "STRONGBOX_IDENTITY".to_string(),
                std::path::absolute(identity)?.display().to_string(),
            ));
        }
        if let Some(class) = &self.config.storage_class {
            env.push(("STRONGBOX_STORAGE_CLASS".to_string(), class.clone()));
        }
        // The journal tells which runs were missed while the daemon was down. Read on a
        // thread of its own: a stalled repository takes minutes of retries, and a stop
        // asked for meanwhile (docker stop) must not wait for them.
        let (config, store, unlock) = (self.config.clone(), self.store(), self.unlock.clone());
        let stop_timeout = args.stop_timeout;
        let (sender, planned) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let journal = store
                .and_then(|store| Ok(RepoReader::open_store(store)?.with_key(unlock.as_ref())?))
                .map(Reader::new);
            if let Err(e) = &journal {
                note!("strongbox: warning: {e:#}; runs missed while the daemon was down will not catch up");
            }
            let daemon = strongbox_config::Daemon::for_config(
                &config,
                journal.ok().as_ref(),
                binary,
                config_path,
                stop_timeout,
            );
            let _ = sender.send(daemon);
        });
        let daemon = loop {
            match planned.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(daemon) => break daemon,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !self.cancel.is_cancelled() => {}
                // Stopped before any job ran: nothing to wait for.
                Err(_) => return Ok(ExitCode::SUCCESS),
            }
        };
        daemon.with_env(env).run(&self.cancel, &self.quit);
        Ok(match self.quit.is_cancelled() {
            true => ExitCode::from(EXIT_INTERRUPTED),
            false => ExitCode::SUCCESS,
        })
    }

    fn notify_test(&self) -> Result<ExitCode> {
        if !self.notifier.has_channels() {
            bail!("no alert channel is configured: add `email` or `webhooks` under [alerts]");
        }
        let repository = self
            .location()
            .map_or_else(|_| "(none)".to_string(), |l| l.to_string());
        let deliveries = self
            .notifier
            .test(&repository, &strongbox_storage::host_name());
        let ok = deliveries.iter().all(|d| d.ok);
        self.print(
            &serde_json::json!({ "ok": ok, "deliveries": deliveries }),
            || output::deliveries_text(&deliveries),
        )?;
        Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }

    fn health(&self, args: cli::HealthArgs) -> Result<ExitCode> {
        let configured = self.config.health_options();
        let options = HealthOptions {
            max_age: args.max_age.unwrap_or(configured.max_age),
            max_disk_usage: args.max_disk_usage.unwrap_or(configured.max_disk_usage),
            ..configured
        };
        // An unreachable repository is "unknown", not a failure of the check itself.
        let checked = self
            .reader()
            .and_then(|r| Ok((r.health(&args.sets, &options)?, r)));
        let (report, reader) = match checked {
            Ok((report, reader)) => {
                // Alerts never change the verdict; a failure to record them is a warning.
                if let Err(e) = reader.alert_health(&report) {
                    note!("strongbox: warning: health alerts: {e:#}");
                }
                (report, reader)
            }
            Err(e) => {
                let metrics = args.prometheus.as_deref();
                return Ok(health_unknown(&format!("{e:#}"), self.json, metrics));
            }
        };
        let metrics = args.prometheus.as_deref().map(|path| -> Result<()> {
            reader.check_output(path)?;
            strongbox_engine::write_atomically(path, report.to_prometheus().as_bytes())
                .with_context(|| format!("writing {}", path.display()))
        });
        self.print(&report, || output::health_text(&report))?;
        // Metrics that could not be written hide the state from whoever reads them: the
        // checks above are printed all the same, and the state is unknown unless critical.
        if let Some(Err(e)) = metrics {
            note!("strongbox: error: {e:#}");
            let status = match report.status {
                HealthStatus::Critical => HealthStatus::Critical,
                _ => HealthStatus::Unknown,
            };
            return Ok(ExitCode::from(status.exit_code()));
        }
        Ok(ExitCode::from(report.status.exit_code()))
    }

    fn backup(&self, args: BackupArgs) -> Result<ExitCode> {
        let common = args.common();
        let configured = match (&args.kind, &args.set) {
            (None, Some(set)) => self.config.sets.get(set).and_then(|s| s.verify),
            _ => None,
        };
        let verify = common
            .verify
            .or(configured)
            .map(|level| self.verify_options(level, &common.scratch));
        if let Some(options) = &verify {
            options.check_scratch()?;
        }
        let spec = match args.kind {
            None => {
                let name = args.set.as_deref().unwrap_or_default();
                let options = BackupOptions {
                    tags: args.common.tags,
                    time: args.common.time,
                };
                self.config.set_spec(name, options)?
            }
            Some(Backup::Files(files)) => {
                let kind = if files.full {
                    Some(SnapshotKind::Full)
                } else if files.differential {
                    Some(SnapshotKind::Differential)
                } else if files.incremental {
                    Some(SnapshotKind::Incremental)
                } else {
                    None
                };
                let source = SourceSpec::Files(FilesSpec {
                    excludes: files.exclude,
                    compression: files.compression,
                    kind,
                    rehash: files.rehash,
                    ..FilesSpec::new(files.dir)
                });
                spec(files.set, source, files.common)
            }
            Some(Backup::Postgres(pg)) => {
                let source = SourceSpec::Postgres(PostgresSpec {
                    conninfo: pg.database.source,
                    physical: pg.physical,
                });
                spec(pg.database.set, source, pg.database.common)
            }
            Some(Backup::Sqlite(db)) => {
                let source = SourceSpec::Sqlite(SqliteSpec {
                    path: db.source.into(),
                });
                spec(db.set, source, db.common)
            }
        };
        strongbox_storage::layout::check_set_name(&spec.set)?;
        let location = self.location()?;
        let (repo, created) = Repository::open_or_init(&location, &self.config.store_options())?;
        if created {
            // Even with -q, as scheduled jobs run: once, and it may be the only sign of a
            // mistyped path or an unmounted disk.
            note!(
                "strongbox: warning: created a new repository in {location}; if you meant an \
                 existing one, check the path (an unmounted disk?)"
            );
        }
        let engine = self.engine_over(repo)?;
        let snapshot = engine.backup(&spec).with_context(|| {
            format!(
                "backup of set {} ({}) failed",
                spec.set,
                spec.source.describe()
            )
        })?;
        let report = match &verify {
            Some(options) => Some(
                engine
                    .verify(std::slice::from_ref(&snapshot), options)
                    .with_context(|| format!("verifying the new snapshot {}", snapshot.id))?,
            ),
            None => None,
        };
        let mut shown = serde_json::to_value(&snapshot)?;
        if let Some(report) = &report {
            shown["verification"] = report_json(report)?;
        }
        self.print(&shown, || match &report {
            Some(report) => format!("{}\n{}", output::summary(&snapshot), report.to_text()),
            None => output::summary(&snapshot),
        })?;
        if report.as_ref().is_some_and(|r| !r.ok) {
            note!(
                "strongbox: error: snapshot {} was written, but its verification failed",
                snapshot.id
            );
            return Ok(ExitCode::FAILURE);
        }
        // Names as `ls` shows them: a newline in one must not fake a line of its own.
        for error in &snapshot.errors {
            note!(
                "strongbox: warning: {}: {}",
                output::printable(&error.path),
                error.message
            );
        }
        for warning in &snapshot.warnings {
            note!(
                "strongbox: warning: {}: {}",
                output::printable(&warning.path),
                warning.message
            );
        }
        Ok(if snapshot.errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_INCOMPLETE)
        })
    }

    fn restore_bundle(
        &self,
        engine: &Engine,
        bundle: &strongbox_manifest::Snapshot,
        args: cli::RestoreArgs,
    ) -> Result<ExitCode> {
        let mut targets = std::collections::BTreeMap::new();
        for given in &args.target {
            let Some((member, target)) = given.split_once('=') else {
                usage!("--target {given:?}: a bundle's targets are MEMBER=TARGET");
            };
            targets.insert(
                member.to_string(),
                TargetSpec {
                    target: target.to_string(),
                    includes: args.include.clone(),
                    keep_previous: !args.no_keep_previous,
                },
            );
        }
        let options = RestoreOptions { force: args.force };
        if args.dry_run {
            // Refused as the restore would be.
            let plan =
                engine.check_bundle_targets(bundle, &targets, args.only.as_deref(), &options)?;
            self.print(&plan, || output::plan_lines(&plan))?;
            return Ok(ExitCode::SUCCESS);
        }
        let outcomes = engine
            .restore_bundle(bundle, &targets, args.only.as_deref(), &options)
            .with_context(|| format!("restore of bundle {} failed", bundle.id))?;
        self.print(&outcomes, || {
            outcomes
                .iter()
                .map(output::restore_text)
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        Ok(ExitCode::SUCCESS)
    }

    fn wal(&self, command: cli::WalCommand) -> Result<ExitCode> {
        match command {
            cli::WalCommand::Push { set, path } => {
                let engine = self.engine()?;
                let pushed = engine
                    .wal_push(&set, &path)
                    .with_context(|| format!("archiving {} into set {set}", path.display()))?;
                self.print(&pushed, || {
                    if pushed.already {
                        format!("{} was archived already, with the same content", pushed.key)
                    } else {
                        format!(
                            "archived {} ({}, stored {})",
                            pushed.key,
                            human_bytes(pushed.bytes),
                            human_bytes(pushed.stored)
                        )
                    }
                })?;
            }
            cli::WalCommand::Fetch { set, name, dest } => {
                let fetched = self
                    .reader()?
                    .wal_fetch(&set, &name, &dest)
                    .with_context(|| format!("fetching WAL file {name} of set {set}"))?;
                if !fetched {
                    // PostgreSQL asks for files past the end of the archive: not an error.
                    return Ok(ExitCode::FAILURE);
                }
                // Silent otherwise: PostgreSQL logs restore_command's output.
                if self.json {
                    self.print(
                        &serde_json::json!({ "fetched": name, "dest": dest }),
                        String::new,
                    )?;
                }
            }
            cli::WalCommand::Window { set } => {
                let reader = self.reader()?;
                self.config.known_sets([set.as_str()], || {
                    Ok::<_, anyhow::Error>(reader.repo().set_dirs()?)
                })?;
                let window = reader
                    .wal_window(&set)
                    .with_context(|| format!("WAL window of set {set}"))?;
                self.print(
                    &serde_json::json!({"set": set, "timelines": window}),
                    || output::window_text(&set, &window),
                )?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// `restore_command`'s program and repository: this binary, this repository, the
    /// configuration file and the identity file given (absolute paths; never a passphrase,
    /// which stays in the server's environment).
    fn fetch_command(&self) -> Result<Vec<String>> {
        let exe = std::env::current_exe().context("finding the strongbox binary")?;
        let mut location = self.location()?.to_string();
        if !location.contains("://") {
            location = std::path::absolute(&location)?.display().to_string();
        }
        let mut words = vec![exe.display().to_string(), "--repo".to_string(), location];
        if let Some(config) = &self.config_path {
            // [s3] settings and the like reach the repository through it.
            words.push("--config".to_string());
            words.push(std::path::absolute(config)?.display().to_string());
        }
        if let Some(identity) = &self.identity {
            words.push("--identity".to_string());
            words.push(std::path::absolute(identity)?.display().to_string());
        }
        Ok(words)
    }

    fn restore_physical(
        &self,
        args: cli::RestoreArgs,
        dir: std::path::PathBuf,
    ) -> Result<ExitCode> {
        let target = match (&args.to_time, &args.to_lsn) {
            (Some(time), _) => RecoveryTarget::Time(*time),
            (_, Some(lsn)) => RecoveryTarget::Lsn(*lsn),
            // The end of the archive, as PostgreSQL recovers without a target.
            _ => RecoveryTarget::Latest,
        };
        let engine = self.engine()?;
        let snapshot = engine.resolve_base_backup(&args.snapshot, target)?;
        let window = engine.recovery_window(&snapshot, target)?;
        let mut restorer = DataDirTarget {
            dir,
            target,
            fetch_command: self.fetch_command()?,
            window,
        };
        if args.dry_run {
            engine.check_target(&snapshot, &mut restorer, &RestoreOptions::default())?;
            let plan = serde_json::json!({
                "snapshot": snapshot.id, "target_dir": restorer.dir, "target": target,
                "window": restorer.window,
            });
            self.print(&plan, || {
                format!(
                    "would restore {} into {} and recover to {target}\n{}",
                    snapshot.id,
                    restorer.dir.display(),
                    restorer.window
                )
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        let outcome = engine
            .restore(&snapshot, &mut restorer, &RestoreOptions::default())
            .with_context(|| {
                format!(
                    "restore of {} into {} failed; the directory was left as it was",
                    snapshot.id,
                    restorer.describe()
                )
            })?;
        self.print(&outcome, || output::restore_text(&outcome))?;
        Ok(ExitCode::SUCCESS)
    }

    fn restore(&self, args: cli::RestoreArgs) -> Result<ExitCode> {
        if let Some(dir) = args.target_dir.clone() {
            return self.restore_physical(args, dir);
        }
        let engine = self.engine()?;
        let snapshot = engine.resolve(&args.snapshot)?;
        if snapshot.source == strongbox_manifest::SourceKind::Bundle {
            return self.restore_bundle(&engine, &snapshot, args);
        }
        if args.only.is_some() {
            usage!(
                "--only names a member of a bundle; {} is a {} snapshot",
                snapshot.id,
                snapshot.source.as_str()
            );
        }
        let [target] = &args.target[..] else {
            usage!(
                "--target is given once for a {} snapshot (several only for a bundle)",
                snapshot.source.as_str()
            );
        };
        let spec = TargetSpec {
            target: target.clone(),
            includes: args.include.clone(),
            keep_previous: !args.no_keep_previous,
        };
        let mut restorer = spec.restorer(snapshot.source)?;
        let options = RestoreOptions { force: args.force };
        if args.dry_run && snapshot.source != strongbox_manifest::SourceKind::Files {
            let plan = engine.plan_target(&snapshot, restorer.as_mut(), &options)?;
            self.print(&plan, || output::plan_lines(std::slice::from_ref(&plan)))?;
            return Ok(ExitCode::SUCCESS);
        }
        if args.dry_run {
            // Refused as the restore would be; what it would replace is said.
            let plan = engine.restore_plan(&snapshot, &args.include)?;
            let replace = engine.check_target(&snapshot, restorer.as_mut(), &options)?;
            self.print(&plan, || {
                let mut text = output::plan_text(&plan, target);
                if replace {
                    text.push_str(&format!(
                        "\nits current content would be replaced: {}",
                        if args.no_keep_previous
                            && snapshot.source == strongbox_manifest::SourceKind::Files
                        {
                            "deleted (--no-keep-previous)".to_string()
                        } else {
                            restorer.replaced()
                        }
                    ));
                }
                text
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        let outcome = engine
            .restore(&snapshot, restorer.as_mut(), &options)
            .with_context(|| {
                format!(
                    "restore of {} into {} failed; the target was not changed",
                    snapshot.id,
                    restorer.describe()
                )
            })?;
        self.print(&outcome, || output::restore_text(&outcome))?;
        Ok(ExitCode::SUCCESS)
    }

    fn prune(&self, args: cli::PruneArgs) -> Result<ExitCode> {
        let engine = self.engine()?;
        let policies = self
            .config
            .prune_policies(args.set.as_deref(), &args.policy, || {
                Ok::<_, anyhow::Error>(engine.sets()?)
            })?;
        let options = PruneOptions {
            timezone: args.timezone.or(self.config.timezone).unwrap_or_default(),
            dry_run: args.dry_run,
            grace: args.grace,
            journal_keep: args
                .journal_keep
                .unwrap_or_else(|| self.config.journal_keep()),
        };
        let report = engine.prune(&policies, &options)?;
        self.print(&report, || output::prune_text(&report))?;
        for failed in &report.failed {
            note!(
                "strongbox: error: prune of set {} failed: {}",
                failed.set,
                failed.error
            );
        }
        Ok(match report.failed.is_empty() {
            true => ExitCode::SUCCESS,
            false => ExitCode::FAILURE,
        })
    }

    fn verify(&self, args: cli::VerifyArgs) -> Result<ExitCode> {
        let reader = self.reader()?;
        let records = reader.records_to_verify(&args.snapshots, &args.sets)?;
        let format = args.report.as_deref().map(ReportFormat::of).transpose()?;
        if let Some(path) = &args.report {
            reader.check_output(path)?;
        }
        if args.budget.is_some() && args.level != VerifyLevel::Deep {
            usage!("--budget works with --level deep (it reads objects whole, least recently verified first)");
        }
        if args.budget == Some(0) {
            usage!("--budget 0 would read nothing: give a size such as 500MiB");
        }
        let options = VerifyOptions {
            budget: args.budget,
            ..self.verify_options(args.level, &args.scratch)
        };
        let report = reader.verify_records(&records.snapshots, &records.damaged, &options)?;
        if let (Some(path), Some(format)) = (&args.report, format) {
            let body = match format {
                ReportFormat::Text => report.to_text() + "\n",
                ReportFormat::Json => serde_json::to_string_pretty(&report_json(&report)?)?,
                ReportFormat::Html => report.to_html(),
            };
            std::fs::write(path, body)
                .with_context(|| format!("writing report {}", path.display()))?;
        }
        self.print(&report_json(&report)?, || report.to_text())?;
        Ok(if report.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

/// A man page per command and subcommand, `strongbox-<command>[-<subcommand>].1`.
fn write_man_pages(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    let mut root = Cli::command();
    // Built, every subcommand knows its full name (`strongbox backup files`) for SYNOPSIS.
    root.build();
    let mut pending = vec![("strongbox".to_string(), root)];
    while let Some((name, command)) = pending.pop() {
        let command = command.display_name(name.clone());
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            pending.push((format!("{name}-{}", sub.get_name()), sub.clone()));
        }
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(command)
            .render(&mut page)
            .with_context(|| format!("rendering {}", path.display()))?;
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}

/// A report file's format, by its extension.
#[derive(Clone, Copy)]
enum ReportFormat {
    Text,
    Json,
    Html,
}

impl ReportFormat {
    /// The format of a report to be written at `path`, whose directory must exist: checked
    /// before a verification that may take hours, not after it.
    fn of(path: &std::path::Path) -> Result<Self> {
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("txt" | "text") => ReportFormat::Text,
            Some("json") => ReportFormat::Json,
            Some("html" | "htm") => ReportFormat::Html,
            _ => usage!(
                "report {}: name it .txt, .json or .html (the extension picks the format)",
                path.display()
            ),
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => std::path::Path::new("."),
        };
        if !dir.is_dir() {
            bail!(
                "report {}: directory {} does not exist",
                path.display(),
                dir.display()
            );
        }
        Ok(format)
    }
}

/// A verification report as JSON, with its summary.
fn report_json(report: &Report) -> Result<serde_json::Value> {
    let mut value = serde_json::to_value(report)?;
    value["summary"] = serde_json::to_value(report.summary())?;
    Ok(value)
}

fn spec(set: String, source: SourceSpec, common: cli::CommonBackup) -> SetSpec {
    SetSpec {
        set,
        source,
        options: BackupOptions {
            tags: common.tags,
            time: common.time,
        },
        members: Vec::new(),
    }
}
