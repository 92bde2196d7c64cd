//! The strongbox command line: parsing, output and exit codes; the work is in the engine.

mod cli;
mod config;
mod output;
mod progress;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Serialize;
use strongbox_engine::{
    target_for, Cancel, DatabaseSource, Engine, FilesBackup, PostgresSource, PruneOptions,
    RestoreOptions, SqliteSource,
};
use strongbox_manifest::{Snapshot, SnapshotKind, SourceKind};
use strongbox_storage::{Location, RepoReader, Repository, UploadOptions};

use cli::{Backup, BackupArgs, Cli, Command};
use config::{Config, SourceType};
use output::{human_bytes, ls_table, snapshot_table, summary, LsRow};

/// Exit status for a backup that was written without some unreadable files.
const EXIT_INCOMPLETE: u8 = 3;

struct Context_ {
    cli_json: bool,
    quiet: bool,
    location: Location,
    upload: UploadOptions,
    cancel: Cancel,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.config.as_deref().map(Config::load).transpose() {
        Ok(config) => config.unwrap_or_default(),
        Err(e) => {
            eprintln!("strongbox: error: {}", error_chain(&e));
            return ExitCode::from(2);
        }
    };
    config.export_s3_settings();
    init_logging(&cli);
    // Everything strongbox creates (repository objects, staging dirs) is private.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cancel = Cancel::new();
    {
        let cancel = cancel.clone();
        let _ = ctrlc::set_handler(move || {
            if cancel.is_cancelled() {
                std::process::exit(130);
            }
            eprintln!("interrupting: cleaning up (press Ctrl-C again to quit at once)");
            cancel.cancel();
        });
    }
    let json = cli.json;
    match run(cli, config, cancel) {
        Ok(code) => code,
        Err(e) => {
            let message = error_chain(&e);
            if json {
                println!("{}", serde_json::json!({ "error": message }));
            }
            eprintln!("strongbox: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping a cause its parent already quotes.
fn error_chain(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
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

fn run(cli: Cli, config: Config, cancel: Cancel) -> Result<ExitCode> {
    let repo_url = cli
        .repo
        .clone()
        .or_else(|| config.repo.clone())
        .unwrap_or_else(|| "backups".to_string());
    let location = Location::parse(&repo_url)?;
    let ctx = Context_ {
        cli_json: cli.json,
        quiet: cli.quiet,
        location,
        upload: UploadOptions {
            part_size: cli.part_size as usize * 1024 * 1024,
            concurrency: cli.upload_concurrency as usize,
            storage_class: cli
                .storage_class
                .clone()
                .or_else(|| config.storage_class.clone()),
        },
        cancel,
    };
    match cli.command {
        Command::Init => {
            let repo = Repository::init(&ctx.location)?;
            ctx.print(
                &serde_json::json!({ "location": repo.location(), "marker": repo.marker() }),
                || format!("created strongbox repository at {}", repo.location()),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup(BackupArgs {
            kind: None,
            set,
            common,
        }) => backup_configured(&ctx, &config, set.as_deref().unwrap_or_default(), common),
        Command::Backup(BackupArgs {
            kind: Some(Backup::Files(args)),
            ..
        }) => {
            let kind = if args.full {
                Some(SnapshotKind::Full)
            } else if args.differential {
                Some(SnapshotKind::Differential)
            } else if args.incremental {
                Some(SnapshotKind::Incremental)
            } else {
                None
            };
            let opts = FilesBackup {
                kind,
                excludes: args.exclude,
                compression: args.compression,
                tags: args.common.tags,
                time: args.common.time,
                rehash: args.rehash,
                ..FilesBackup::new(args.set, args.dir)
            };
            backup_files(&ctx, &opts)
        }
        Command::Backup(BackupArgs {
            kind: Some(Backup::Postgres(args)),
            ..
        }) => backup_database(&ctx, args, true),
        Command::Backup(BackupArgs {
            kind: Some(Backup::Sqlite(args)),
            ..
        }) => backup_database(&ctx, args, false),
        Command::Snapshots { set } => {
            let snapshots = ctx.reader()?.snapshots(set.as_deref())?;
            ctx.print(&snapshots, || snapshot_table(&snapshots))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { snapshot } => {
            let engine = ctx.engine(Repository::from_reader(ctx.reader()?));
            let snapshot = engine.resolve(&snapshot)?;
            ctx.print(&snapshot, || {
                String::from_utf8_lossy(&snapshot.to_json())
                    .trim_end()
                    .to_string()
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls { snapshot } => {
            let engine = ctx.engine(Repository::from_reader(ctx.reader()?));
            let snapshot = engine.resolve(&snapshot)?;
            let listing = engine.listing(&snapshot)?;
            let rows: Vec<LsRow<'_>> = listing
                .entries
                .iter()
                .map(|e| LsRow {
                    path: &e.path,
                    kind: e.kind,
                    size: e.size,
                    mode: e.mode,
                    mtime: e.mtime,
                    sha256: e.sha256.as_deref(),
                    target: e.target.as_deref(),
                })
                .collect();
            ctx.print(&rows, || ls_table(&rows))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore(args) => restore(&ctx, args),
        Command::Prune(args) => prune(&ctx, &config, args),
        Command::Verify(args) => verify(&ctx, args),
    }
}

impl Context_ {
    fn reader(&self) -> Result<RepoReader> {
        Ok(RepoReader::open(&self.location)?)
    }

    fn engine(&self, repo: Repository) -> Engine {
        let engine = Engine::new(repo).with_cancel(self.cancel.clone());
        if !self.quiet && std::io::stderr().is_terminal() {
            engine.with_progress(Arc::new(progress::Bar::new()))
        } else {
            engine
        }
    }

    /// Print `value` as JSON with --json, else the human text.
    fn print<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) -> Result<()> {
        if self.cli_json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else if !self.quiet {
            println!("{}", human());
        }
        Ok(())
    }
}

fn backup_files(ctx: &Context_, opts: &FilesBackup) -> Result<ExitCode> {
    strongbox_storage::layout::check_set_name(&opts.set)?;
    let repo = Repository::open_or_init(&ctx.location)?.with_upload_options(ctx.upload.clone());
    let snapshot = ctx
        .engine(repo)
        .backup_files(opts)
        .with_context(|| format!("backup of {} failed", opts.source.display()))?;
    ctx.print(&snapshot, || summary(&snapshot))?;
    for error in &snapshot.errors {
        eprintln!(
            "strongbox: warning: {}: {} (not in this snapshot)",
            error.path, error.message
        );
    }
    for warning in &snapshot.warnings {
        eprintln!("strongbox: warning: {}: {}", warning.path, warning.message);
    }
    Ok(if snapshot.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}

fn backup_database(ctx: &Context_, args: cli::DatabaseArgs, postgres: bool) -> Result<ExitCode> {
    let source: Box<dyn DatabaseSource> = if postgres {
        Box::new(PostgresSource::new(&args.source)?)
    } else {
        Box::new(SqliteSource::new(&args.source))
    };
    backup_from(ctx, &args.set, source, args.common.tags, args.common.time)
}

fn backup_from(
    ctx: &Context_,
    set: &str,
    mut source: Box<dyn DatabaseSource>,
    tags: Vec<String>,
    time: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<ExitCode> {
    strongbox_storage::layout::check_set_name(set)?;
    let repo = Repository::open_or_init(&ctx.location)?.with_upload_options(ctx.upload.clone());
    let origin = source.origin();
    let snapshot = ctx
        .engine(repo)
        .backup_database(set, source.as_mut(), tags, time)
        .with_context(|| format!("backup of {origin} failed"))?;
    ctx.print(&snapshot, || summary(&snapshot))?;
    Ok(ExitCode::SUCCESS)
}

/// `backup SET` for a set the configuration file defines.
fn backup_configured(
    ctx: &Context_,
    config: &Config,
    name: &str,
    common: cli::CommonBackup,
) -> Result<ExitCode> {
    let set = config.set(name)?;
    let tags: Vec<String> = set.tags.iter().chain(&common.tags).cloned().collect();
    match set.source {
        SourceType::Files => {
            let opts = FilesBackup {
                excludes: set.exclude.clone(),
                compression: set.compression.unwrap_or_default(),
                tags,
                time: common.time,
                ..FilesBackup::new(name, set.path.clone().expect("checked on load"))
            };
            backup_files(ctx, &opts)
        }
        SourceType::Postgres => {
            let conninfo = set.conninfo.as_deref().expect("checked on load");
            backup_from(
                ctx,
                name,
                Box::new(PostgresSource::new(conninfo)?),
                tags,
                common.time,
            )
        }
        SourceType::Sqlite => {
            let path = set.path.clone().expect("checked on load");
            backup_from(
                ctx,
                name,
                Box::new(SqliteSource::new(path)),
                tags,
                common.time,
            )
        }
    }
}

fn restore_database(
    ctx: &Context_,
    engine: &Engine,
    snapshot: &Snapshot,
    args: &cli::RestoreArgs,
) -> Result<ExitCode> {
    let spec = args
        .target
        .to_str()
        .context("the restore target is not valid UTF-8")?;
    let mut target = target_for(spec)?;
    let shown = target.describe();
    let outcome = engine
        .restore_database(snapshot, target.as_mut(), args.force)
        .with_context(|| {
            format!(
                "restore of {} into {shown} failed; the target was not changed",
                snapshot.id
            )
        })?;
    ctx.print(&outcome, || {
        let rows: u64 = outcome.tables.iter().map(|t| t.rows).sum();
        let mut text = format!(
            "restored {} into {}: {} tables, {rows} rows, counts match the snapshot; {:.1} s",
            outcome.snapshot,
            outcome.target,
            outcome.tables.len(),
            outcome.duration_secs
        );
        if let Some(safety) = &outcome.safety_snapshot {
            text.push_str(&format!(
                "\nthe target's former content is snapshot {safety}"
            ));
        }
        if let Some(previous) = &outcome.previous {
            text.push_str(&format!("\nprevious file kept at {}", previous.display()));
        }
        text
    })?;
    Ok(ExitCode::SUCCESS)
}

fn restore(ctx: &Context_, args: cli::RestoreArgs) -> Result<ExitCode> {
    let engine = ctx.engine(Repository::from_reader(ctx.reader()?));
    let snapshot = engine.resolve(&args.snapshot)?;
    if snapshot.source != SourceKind::Files {
        if args.dry_run || !args.include.is_empty() {
            bail!(
                "--dry-run and --include apply to files snapshots; {} is a {} snapshot",
                snapshot.id,
                snapshot.source.as_str()
            );
        }
        return restore_database(ctx, &engine, &snapshot, &args);
    }
    if args.dry_run {
        let plan = engine.restore_plan(&snapshot, &args.include)?;
        ctx.print(&plan, || {
            let mut text = format!(
                "would restore snapshot {} into {}: {} files, {} dirs, {} symlinks, {}",
                plan.snapshot,
                args.target.display(),
                plan.files,
                plan.dirs,
                plan.symlinks,
                human_bytes(plan.bytes)
            );
            for holder in &plan.holders {
                text.push_str(&format!(
                    "\n  from archive of {}: {} entries, {}",
                    holder.id,
                    holder.entries,
                    human_bytes(holder.bytes)
                ));
            }
            text
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let opts = RestoreOptions {
        includes: args.include,
        force: args.force,
        keep_previous: !args.no_keep_previous,
        ..RestoreOptions::new(&args.target)
    };
    let outcome = engine.restore_files(&snapshot, &opts).with_context(|| {
        format!(
            "restore of {} into {} failed; the target was not changed",
            snapshot.id,
            args.target.display()
        )
    })?;
    ctx.print(&outcome, || {
        let mut text = format!(
            "restored {} into {}: {} files, {} dirs, {} symlinks, {} in {:.1} s; every file's SHA-256 checked",
            outcome.plan.snapshot,
            outcome.target.display(),
            outcome.plan.files,
            outcome.plan.dirs,
            outcome.plan.symlinks,
            human_bytes(outcome.plan.bytes),
            outcome.duration_secs
        );
        if let Some(previous) = &outcome.previous {
            text.push_str(&format!("\nprevious content kept at {}", previous.display()));
        }
        text
    })?;
    Ok(ExitCode::SUCCESS)
}

fn prune(ctx: &Context_, config: &Config, args: cli::PruneArgs) -> Result<ExitCode> {
    let engine = ctx.engine(Repository::open(&ctx.location)?);
    let options = |policy| PruneOptions {
        timezone: args.timezone,
        dry_run: args.dry_run,
        grace: args.grace,
        ..PruneOptions::new(policy)
    };
    let sets: Vec<String> = args.set.clone().into_iter().collect();
    let report = if !args.policy.is_empty() || config.sets.is_empty() {
        engine.prune(&sets, &options(args.policy.clone()))?
    } else {
        // No rules on the command line: each set's own policy from the configuration.
        let mut report = strongbox_engine::PruneReport {
            dry_run: args.dry_run,
            ..Default::default()
        };
        let names: Vec<&String> = match &args.set {
            Some(set) => vec![set],
            None => config.sets.keys().collect(),
        };
        for name in names {
            let policy = config.set(name)?.keep.clone().with_context(|| {
                format!(
                    "set {name:?} has no `keep` policy in the configuration; give --keep-* rules"
                )
            })?;
            report.merge(engine.prune(std::slice::from_ref(name), &options(policy))?);
        }
        report
    };
    ctx.print(&report, || {
        let mut lines = Vec::new();
        for kept in &report.keep {
            lines.push(format!(
                "keep   {} {:<12} {}",
                kept.id,
                kept.set,
                kept.reasons.join(", ")
            ));
        }
        for forgotten in &report.forget {
            lines.push(format!("forget {} {}", forgotten.id, forgotten.set));
        }
        for key in &report.retained_for_chains {
            lines.push(format!("retain {key} (a kept snapshot draws from it)"));
        }
        lines.push(format!(
            "{}{} kept, {} forgotten, {} objects deleted, {} freed",
            if report.dry_run {
                "dry run, nothing changed: "
            } else {
                ""
            },
            report.keep.len(),
            report.forget.len(),
            report.deleted_objects,
            human_bytes(report.freed_bytes)
        ));
        lines.join("\n")
    })?;
    Ok(ExitCode::SUCCESS)
}

fn verify(ctx: &Context_, args: cli::VerifyArgs) -> Result<ExitCode> {
    let engine = ctx.engine(Repository::from_reader(ctx.reader()?));
    let snapshots: Vec<Snapshot> = if args.snapshots.is_empty() {
        engine.snapshots(None)?
    } else {
        let all = engine.snapshots(None)?;
        args.snapshots
            .iter()
            .map(|spec| strongbox_engine::select(&all, spec).cloned())
            .collect::<Result<_, _>>()?
    };
    if snapshots.is_empty() {
        bail!(
            "repository {} holds no snapshots to verify",
            engine.repo().location()
        );
    }
    let report = engine.verify(&snapshots, args.level)?;
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing report {}", path.display()))?;
    }
    ctx.print(&report, || {
        let mut text = String::new();
        for snapshot in &report.snapshots {
            text.push_str(&format!(
                "{} {} {}\n",
                if snapshot.ok { "ok    " } else { "FAILED" },
                snapshot.set,
                snapshot.id
            ));
            for check in &snapshot.checks {
                text.push_str(&format!(
                    "    {:<9} {} {}\n",
                    check.name,
                    if check.ok { "ok" } else { "FAILED:" },
                    check.detail
                ));
            }
        }
        let failed = report.snapshots.iter().filter(|s| !s.ok).count();
        text.push_str(&format!(
            "{} snapshot(s) verified at level {:?}, {failed} failed",
            report.snapshots.len(),
            report.level
        ));
        text
    })?;
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
