use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{ArgAction, Args, Parser, Subcommand};
use strongbox_archive::Compression;
use strongbox_verify::VerifyLevel;

const AFTER_HELP: &str = "\
Examples:
  strongbox backup files media /srv/media       # the first run is full
  strongbox --repo /mnt/backup snapshots media  # list a set's snapshots
  strongbox restore media:latest --target /srv/media.restored
  strongbox verify --all --level deep

Exit status: 0 success, 1 the operation failed, 2 usage error,
3 backup written but some files could not be read (listed in the record's `errors`).";

/// strongbox — backups of media trees and databases you can restore at 3 a.m.
///
/// Repositories: a local path, s3://bucket/prefix (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
/// AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL and AWS_ALLOW_HTTP=true for S3-compatible
/// servers), gs://bucket/prefix (GOOGLE_* variables) or az://container/prefix (AZURE_*).
/// `strongbox --version`: the version, the git commit and the build date.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STRONGBOX_GIT_COMMIT"),
    ", built ",
    env!("STRONGBOX_BUILD_DATE"),
    ")"
);

#[derive(Debug, Parser)]
#[command(name = "strongbox", version = VERSION, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Repository: a path, file:///path, s3://bucket/prefix, gs://…, az://… or memory://. Default: ./backups.
    #[arg(long, global = true, env = "STRONGBOX_REPO", value_name = "URL")]
    pub repo: Option<String>,

    /// Configuration file: repository, [s3] settings, [sets.NAME] with source and keep policy
    /// (see docs/configuration.md; `config check` prints what strongbox reads from it).
    #[arg(long, global = true, env = "STRONGBOX_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// age identity file that opens one of an encrypted repository's key files
    /// (or set STRONGBOX_PASSPHRASE to unlock with a passphrase key).
    #[arg(long, global = true, env = "STRONGBOX_IDENTITY", value_name = "FILE")]
    pub identity: Option<PathBuf>,

    /// Print one JSON document on stdout and nothing else there.
    #[arg(long, global = true)]
    pub json: bool,

    /// Storage class for data objects on S3/GCS/Azure (e.g. STANDARD_IA, GLACIER_IR).
    #[arg(
        long,
        global = true,
        env = "STRONGBOX_STORAGE_CLASS",
        value_name = "CLASS"
    )]
    pub storage_class: Option<String>,

    /// Multipart upload part size in MiB (S3 needs at least 5).
    #[arg(long, global = true, default_value_t = 8, value_parser = clap::value_parser!(u32).range(5..=512), value_name = "MIB")]
    pub part_size: u32,

    /// Parts uploaded at once per object (memory: part size × this).
    #[arg(long, global = true, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64), value_name = "N")]
    pub upload_concurrency: u32,

    /// How long an interrupted command may clean up (abort its upload, release its lock)
    /// before it quits anyway, as a second Ctrl-C does.
    #[arg(long, global = true, env = "STRONGBOX_CLEANUP_TIMEOUT", default_value = "1m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub cleanup_timeout: std::time::Duration,

    /// Print only warnings and errors, on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Encrypt every object with age, to a repository key that each --recipient,
    /// --recipients-file line or --passphrase can unlock.
    #[arg(long)]
    pub encrypt: bool,
    /// An age recipient (age1…) who may read the repository; repeatable.
    #[arg(long, requires = "encrypt", value_name = "AGE1…")]
    pub recipient: Vec<String>,
    /// A file of age recipients, one a line (`#` comments allowed).
    #[arg(long, requires = "encrypt", value_name = "FILE")]
    pub recipients_file: Option<PathBuf>,
    /// A passphrase may read the repository; it is read from STRONGBOX_PASSPHRASE (else
    /// asked twice on a terminal), never from the command line, where every user of the
    /// host can see it.
    #[arg(long, requires = "encrypt", num_args = 0..=1, default_missing_value = "", value_name = "")]
    pub passphrase: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a repository in an empty or new directory or prefix (an error if one exists,
    /// or anything else is there but `lost+found`), optionally encrypted with age.
    #[command(after_help = "Examples:\n  strongbox --repo /mnt/backup init\n  \
        strongbox --repo s3://bucket/prod init --encrypt --recipient age1…\n  \
        STRONGBOX_PASSPHRASE=… strongbox --repo /mnt/backup \\\n      init --encrypt --passphrase\n\n\
        See docs/encryption.md.")]
    Init(InitArgs),
    /// Take a snapshot: `backup files|postgres|sqlite …`, or `backup SET` for a set the
    /// configuration file defines.
    Backup(BackupArgs),
    /// List snapshots, oldest first.
    #[command(after_help = "Examples:\n  strongbox snapshots\n  strongbox snapshots media --json")]
    Snapshots {
        /// Only this set.
        set: Option<String>,
    },
    /// Per set: the last snapshot, the last run of each operation, the last verification,
    /// the snapshot count, stored bytes, and when the data was last read by a verification.
    #[command(
        after_help = "Examples:\n  strongbox status\n  strongbox status media maindb --json\n  \
        strongbox --config /etc/strongbox/strongbox.toml \\\n      status --html /var/www/backups.html"
    )]
    Status {
        /// Only these sets (default: every set in the repository).
        sets: Vec<String>,
        /// Also write a one-page dashboard to FILE: health, last snapshot and verification,
        /// retention and charts of the last 90 snapshots per set; self-contained HTML.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Check the backups' health; exit 0 ok, 1 warning, 2 critical, 3 unknown (Nagios).
    #[command(after_help = "\
Checks per set: age of the newest snapshot (critical past --max-age, warning past 75 % of
it), last backup and last verify failed, no verification passed within [health]
verify_max_age (7d), snapshots the keep policy would forget, files/bytes/rows down more than
[health] anomaly_drop (30 %) against the median of the previous 7, a stale lock, runs stuck
in `running`. For the repository: disk usage of a local repository.

Examples:
  strongbox health
  strongbox health --set media --max-age 26h --json
  strongbox --config /etc/strongbox/strongbox.toml \\
      health --prometheus /var/lib/node_exporter/strongbox.prom

See docs/operations.md.")]
    Health(HealthArgs),
    /// Show one snapshot record.
    #[command(
        after_help = "Examples:\n  strongbox show media:latest\n  strongbox show 20251227T0200 --json"
    )]
    Show {
        /// Snapshot id, unique id prefix, or <SET>:latest.
        snapshot: String,
    },
    /// List the files of a files snapshot.
    #[command(
        after_help = "A name holding a control character (a newline, an escape) is shown quoted, with it escaped; --json gives every name exactly.\n\nExamples:\n  strongbox ls media:latest\n  strongbox ls 20251227T020000Z-3fa9c1 --json"
    )]
    Ls {
        /// Snapshot id, unique id prefix, or <SET>:latest.
        snapshot: String,
    },
    /// Restore a snapshot beside its target, check it, then swap it in; a base backup into a
    /// data directory that recovers to a point in time.
    #[command(after_help = "\
Examples:
  strongbox restore media:latest --target /srv/media --force
  strongbox restore 20251227T0200 --target /tmp/check --include 'avatars/**'
  strongbox restore media:latest --target /srv/media --dry-run
  strongbox restore maindb:latest \\
      --target postgresql://postgres@localhost/app_restored
  strongbox restore maindb:latest \\
      --target 'host=/var/run/postgresql dbname=app_restored'
  strongbox restore chat:latest --target /srv/app/chat.sqlite3 --force
  strongbox restore maindb:latest --target-dir /var/lib/postgresql/15/main \\
      --to-time 2026-12-01T09:14:00Z
  strongbox restore 20261201T0200 --target-dir /srv/pg-restored --to-latest

A base backup needs --target-dir and recovers to --to-time, --to-lsn or (the default)
--to-latest; a target outside what the base backup and the archived WAL can reach is
refused, naming the window (`wal window SET`). The directory must be missing or empty. See
docs/pitr.md.

A non-empty target needs --force; a directory's or SQLite file's current content is
kept as <target>.pre-restore-<time> (unless --no-keep-previous), a PostgreSQL
database's is first saved as a snapshot of set <set>-safety. Any failure leaves the
target exactly as it was.")]
    Restore(RestoreArgs),
    /// Forget snapshots a keep policy drops and delete the data nothing needs any more.
    #[command(after_help = "\
Examples:
  strongbox prune media --keep-within 30d --dry-run
  strongbox prune maindb --keep-daily 7 --keep-weekly 4 --keep-monthly 12
  strongbox prune --keep-last 10 --json           # every set

The latest snapshot of a set is always kept; a policy that keeps nothing is refused.
An archive a kept snapshot still draws from is kept even when the snapshot that wrote it
is forgotten. Objects of failed or killed runs are deleted (see --grace).")]
    Prune(PruneArgs),
    /// Check snapshots: quick (objects present), checksum (SHA-256), deep (every file),
    /// restore (a real restore into scratch space, checked and removed).
    #[command(after_help = "\
Examples:
  strongbox verify --all
  strongbox verify media:latest --level deep \\
      --report /var/log/strongbox-verify.json
  strongbox verify --set media --set maindb --level checksum
  strongbox verify maindb:latest --level restore \\
      --scratch-postgres postgresql://verify@db-test/postgres \\
      --report verify.html
  strongbox verify --all --level deep --budget 20GiB  # oldest-read first

See docs/verification.md.")]
    Verify(VerifyArgs),
    /// Remove a set's lock whose holder is gone (journalled).
    #[command(after_help = "\
Examples:
  strongbox unlock media           # left by a process of this host that is gone
  strongbox unlock media --force   # another host's, known to be stopped

A lock held by a process that is running on this host is never removed. A lock of another
host needs --force: this host cannot tell whether that process still runs, and removing the
lock of a running backup lets a second one (or a prune) in beside it.")]
    Unlock {
        /// The set.
        set: String,
        /// Also remove a lock held by another host.
        #[arg(long)]
        force: bool,
    },
    /// PostgreSQL's WAL archive: archive_command, restore_command and the recovery window.
    #[command(
        subcommand,
        after_help = "\
Examples:
  archive_command = 'strongbox --repo /mnt/backup -q wal push maindb %p'
  strongbox --repo /mnt/backup wal window maindb   # how far back it reaches
  strongbox --repo /mnt/backup backup postgres maindb --physical \\
      'postgresql://backup@db.internal/postgres'

See docs/pitr.md."
    )]
    Wal(WalCommand),
    /// Work with the configuration file.
    #[command(
        subcommand,
        after_help = "\
Example:
  strongbox --config /etc/strongbox/strongbox.toml config check

See docs/configuration.md."
    )]
    Config(ConfigCommand),
    /// Install the sets' schedules (`schedule`, `verify_schedule`, `prune_schedule` in the
    /// configuration) as a cron.d file or systemd timers.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Who may read an encrypted repository: one key file each; no data is rewritten.
    #[command(
        subcommand,
        after_help = "\
Examples:
  strongbox --identity me.txt key list
  strongbox --identity me.txt key add --recipient age1…
  strongbox --identity me.txt key remove 3f9a0c12

See docs/encryption.md."
    )]
    Key(KeyCommand),
    /// Alerts (`[alerts]` in the configuration).
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "\
Examples:
  strongbox completions bash > /etc/bash_completion.d/strongbox
  strongbox completions zsh > ~/.zfunc/_strongbox
  strongbox completions fish > ~/.config/fish/completions/strongbox.fish")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write a man page per command (strongbox.1, strongbox-backup.1, …) into DIR.
    #[command(
        after_help = "Example:\n  strongbox man /usr/local/share/man/man1 && man strongbox-restore"
    )]
    Man {
        /// The directory (created when missing).
        dir: PathBuf,
    },
    /// Run the configured schedules in the foreground (containers, hosts without cron or
    /// systemd).
    #[command(after_help = "\
Examples:
  strongbox --config /etc/strongbox/strongbox.toml daemon
  docker run --stop-timeout 1800 … \\
      strongbox --config /config/strongbox.toml daemon --stop-timeout 25m

Each job runs as `strongbox --config FILE -q <args>`, as cron and systemd would run it, one
job per set at a time; a line is logged when each starts and ends. A run missed while the
daemon was down (its last run in the journal is older than its latest scheduled time) runs
once at start. SIGTERM or SIGINT stops scheduling and lets running jobs finish, up to
--stop-timeout; then they are asked to stop (SIGTERM) and, a minute later, killed. The
daemon then exits 0.")]
    Daemon(DaemonArgs),
}

#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// Archive one WAL file (PostgreSQL's archive_command); exits non-zero on any doubt,
    /// so the server retries.
    #[command(after_help = "\
Example (postgresql.conf):
  archive_mode = on
  archive_command = 'strongbox --repo /mnt/backup -q wal push maindb %p'
  archive_timeout = 60

Stored compressed (and encrypted) under sets/SET/wal/TIMELINE/NAME with a create-only write:
a file archived already with the same content succeeds, with other content fails.")]
    Push {
        /// The set (the one `backup postgres SET … --physical` uses).
        set: String,
        /// The WAL file (%p).
        path: PathBuf,
    },
    /// Write one archived WAL file to DEST (PostgreSQL's restore_command); exits 1 without a
    /// message when it is not archived, as PostgreSQL expects at the end of the archive, and
    /// 126 on any error, so that PostgreSQL stops recovery rather than end it early.
    #[command(after_help = "Example (written by restore --target-dir):\n  \
        restore_command = 'strongbox --repo /mnt/backup wal fetch maindb %f %p'")]
    Fetch {
        /// The set.
        set: String,
        /// The WAL file name (%f).
        name: String,
        /// Where to write it (%p).
        dest: PathBuf,
    },
    /// The earliest and latest point each timeline's base backups and archived WAL can
    /// recover to, and each backup's own window.
    #[command(
        after_help = "Examples:\n  strongbox wal window maindb\n  strongbox wal window maindb --json"
    )]
    Window {
        /// The set.
        set: String,
    },
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// How long running jobs may take to finish once the daemon is told to stop.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub stop_timeout: std::time::Duration,
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send one test message through every configured channel and report each result
    /// (exit 1 when any failed).
    #[command(after_help = "\
Examples:
  strongbox --config /etc/strongbox/strongbox.toml notify test
  strongbox --config /etc/strongbox/strongbox.toml notify test --json")]
    Test,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Write the jobs as one cron.d file, or as a oneshot service and a timer per job.
    #[command(after_help = "\
Examples:
  strongbox --config /etc/strongbox/strongbox.toml \\
      schedule install --cron /etc/cron.d/strongbox
  strongbox --config /etc/strongbox/strongbox.toml \\
      schedule install --systemd /etc/systemd/system
  systemctl daemon-reload && systemctl enable --now strongbox-backup-media.timer")]
    Install {
        #[command(flatten)]
        target: ScheduleTarget,
        /// The user cron runs the jobs as.
        #[arg(long, default_value = "root", requires = "cron")]
        user: String,
    },
    /// List the jobs the configuration schedules.
    #[command(
        after_help = "Example:\n  strongbox --config /etc/strongbox/strongbox.toml schedule list --json"
    )]
    List,
    /// Remove what `schedule install` wrote there (only files it wrote).
    #[command(
        after_help = "Example:\n  strongbox schedule uninstall --systemd /etc/systemd/system"
    )]
    Uninstall {
        #[command(flatten)]
        target: ScheduleTarget,
    },
}

/// Where schedules go.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ScheduleTarget {
    /// A cron.d file (e.g. /etc/cron.d/strongbox).
    #[arg(long, value_name = "FILE")]
    pub cron: Option<PathBuf>,
    /// A systemd unit directory (e.g. /etc/systemd/system).
    #[arg(long, value_name = "DIR")]
    pub systemd: Option<PathBuf>,
}

impl ScheduleTarget {
    /// The library's view of the choice (clap makes exactly one of the two present).
    pub fn installation(self, user: String) -> strongbox_config::Installation {
        match (self.cron, self.systemd) {
            (Some(file), _) => strongbox_config::Installation::Cron { file, user },
            (None, Some(dir)) => strongbox_config::Installation::Systemd { dir },
            (None, None) => unreachable!("clap requires --cron or --systemd"),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Let one more reader in (needs the repository unlocked with an existing key).
    #[command(after_help = "\
Examples:
  strongbox --identity me.txt key add --recipient age1…
  STRONGBOX_NEW_PASSPHRASE=… strongbox --identity me.txt key add --passphrase")]
    Add {
        /// An age recipient (age1…).
        #[arg(
            long,
            conflicts_with = "passphrase",
            required_unless_present = "passphrase"
        )]
        recipient: Option<String>,
        /// A passphrase, read from STRONGBOX_NEW_PASSPHRASE, else asked twice on a terminal
        /// (never the command line).
        #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "")]
        passphrase: Option<String>,
    },
    /// Change the passphrase of a passphrase key: its key file is replaced, no data is
    /// rewritten. The new passphrase is read from STRONGBOX_NEW_PASSPHRASE, else asked twice
    /// on a terminal.
    #[command(after_help = "\
Examples:
  strongbox --repo /mnt/backup key passwd    # asks for the old, then the new
  STRONGBOX_PASSPHRASE=old STRONGBOX_NEW_PASSPHRASE=new \\
      strongbox --repo /mnt/backup key passwd
  STRONGBOX_NEW_PASSPHRASE=… strongbox --identity me.txt key passwd 3f2a9c1b")]
    Passwd {
        /// The passphrase key's id; default: the key that unlocked the repository.
        id: Option<String>,
    },
    /// List the key files: id, kind, recipient and creation time.
    #[command(after_help = "Example:\n  strongbox --identity me.txt key list --json")]
    List,
    /// Delete one key file; the last key is refused.
    #[command(after_help = "Example:\n  strongbox --identity me.txt key remove 3f2a9c1b")]
    Remove {
        /// The key id, as `key list` shows it.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration and print it as strongbox reads it: `${VAR}` expanded,
    /// command-line and environment overrides applied, every secret shown as ***.
    #[command(after_help = "\
Examples:
  strongbox --config /etc/strongbox/strongbox.toml config check
  STRONGBOX_CONFIG=/etc/strongbox/strongbox.toml strongbox config check --json

Exit status 2 when the file has an error (named with its key), 0 when it reads.")]
    Check,
}

#[derive(Debug, Subcommand)]
pub enum Backup {
    /// Back up a directory tree.
    #[command(after_help = "\
Examples:
  strongbox backup files media /srv/media
  strongbox backup files media /srv/media --differential \\
      --exclude '*.tmp' --exclude cache
  strongbox backup files media /srv/media --full --compression zstd:9 \\
      --tag monthly

The first snapshot of a set is full; later ones are incremental unless told.
`strongbox --config /etc/strongbox.toml backup media` backs up a set the configuration defines.
Unchanged files (same size, mtime, ctime, inode) are not read again.")]
    Files(FilesArgs),
    /// Back up a PostgreSQL database (pg_dump custom format, exact row counts), or with
    /// --physical the whole cluster as a base backup for point-in-time recovery.
    #[command(after_help = "\
Examples:
  PGPASSWORD=… strongbox backup postgres maindb \\
      'postgresql://backup@db.internal:5432/app'
  runuser -u postgres -- strongbox backup postgres maindb 'dbname=app'

The connection string is read as libpq reads it: a URL or keyword=value pairs; the user
defaults to the operating-system user, the host to the local socket directory, and PGHOST,
PGPORT, PGUSER, PGDATABASE and ~/.pgpass fill what it leaves out.

--physical streams `pg_basebackup` (one tablespace) into the set, with no local copy. The
server must archive its WAL into the same set first (archive_mode = on, archive_command =
'strongbox --repo … wal push SET %p'); the backup switches WAL and waits for that segment
to arrive, and refuses otherwise. See docs/pitr.md.

Give the password through PGPASSWORD or ~/.pgpass rather than in the URL: command lines are
visible to every user of the host. It never reaches logs, records or pg_dump's arguments.")]
    Postgres(PostgresArgs),
    /// Back up an SQLite database file (online backup API; safe while it is written).
    #[command(
        after_help = "Example:\n  strongbox backup sqlite chat /srv/app/chat.sqlite3 --tag nightly"
    )]
    Sqlite(DatabaseArgs),
}

impl Backup {
    /// The set backed up.
    pub fn set(&self) -> &str {
        match self {
            Backup::Files(args) => &args.set,
            Backup::Postgres(args) => &args.database.set,
            Backup::Sqlite(args) => &args.set,
        }
    }
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
#[command(
    after_help = "Examples:\n  strongbox backup files media /srv/media\n  strongbox --config /etc/strongbox.toml backup media --tag nightly"
)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub kind: Option<Backup>,
    /// A set defined in the configuration file.
    #[arg(required = true)]
    pub set: Option<String>,
    #[command(flatten)]
    pub common: CommonBackup,
}

impl BackupArgs {
    /// The options every backup kind takes.
    pub fn common(&self) -> &CommonBackup {
        match &self.kind {
            None => &self.common,
            Some(Backup::Files(files)) => &files.common,
            Some(Backup::Postgres(pg)) => &pg.database.common,
            Some(Backup::Sqlite(db)) => &db.common,
        }
    }
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// The set (letters, digits, '.', '_', '-').
    pub set: String,
    /// Connection string (postgres) or database file (sqlite).
    pub source: String,
    #[command(flatten)]
    pub common: CommonBackup,
}

#[derive(Debug, Args)]
pub struct PostgresArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// A base backup of the whole cluster for point-in-time recovery (pg_basebackup),
    /// instead of a pg_dump of one database.
    #[arg(long)]
    pub physical: bool,
}

#[derive(Debug, Args)]
pub struct FilesArgs {
    /// The set (letters, digits, '.', '_', '-').
    pub set: String,
    /// The directory to back up.
    pub dir: PathBuf,
    /// Store every file.
    #[arg(long, group = "kind")]
    pub full: bool,
    /// Store what changed since the set's latest snapshot (default after the first).
    #[arg(long, group = "kind")]
    pub incremental: bool,
    /// Store what changed since the set's latest full snapshot.
    #[arg(long, group = "kind")]
    pub differential: bool,
    /// Skip matching entries: a name glob (`*.tmp`) or a path glob (`cache/**`).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// zstd, zstd:N (1-19), gzip, gzip:N (1-9) or none.
    #[arg(long, default_value = "zstd:3", value_name = "CODEC")]
    pub compression: Compression,
    #[command(flatten)]
    pub common: CommonBackup,
    /// Read every file again, trusting no metadata.
    #[arg(long)]
    pub rehash: bool,
}

#[derive(Debug, Args)]
pub struct CommonBackup {
    /// Tag the snapshot (repeatable; a tag given twice is kept once).
    #[arg(long = "tag", value_name = "TAG", value_parser = parse_tag)]
    pub tags: Vec<String>,
    /// Snapshot time instead of now (RFC 3339), for imports; not in the future.
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub time: Option<DateTime<Utc>>,
    /// Verify the new snapshot at this level; a failed verification exits 1 (the snapshot
    /// stays, journalled as failing).
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub verify: Option<VerifyLevel>,
    #[command(flatten)]
    pub scratch: Scratch,
}

/// Where restore tests restore.
#[derive(Debug, Clone, Args)]
pub struct Scratch {
    /// Restore tests of files and SQLite snapshots restore into a temporary directory
    /// here (default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    pub scratch_dir: Option<PathBuf>,
    /// A PostgreSQL server on which restore tests create (and drop) scratch databases; the
    /// role needs CREATEDB. Default: [verify] scratch_postgres in the configuration.
    #[arg(
        long,
        env = "STRONGBOX_VERIFY_PG",
        value_name = "URL",
        hide_env_values = true
    )]
    pub scratch_postgres: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id, unique id prefix, or <SET>:latest.
    pub snapshot: String,
    /// A directory (files snapshot), a PostgreSQL connection string (postgresql://…/DB or
    /// 'host=… dbname=DB'), or a file (SQLite): the snapshot's kind says which. For a
    /// bundle, MEMBER=TARGET once per member.
    #[arg(long, value_name = "TARGET", required_unless_present_any = ["target_dir", "recovery"], value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub target: Vec<String>,
    /// A base backup: the (missing or empty) PostgreSQL data directory to restore into; it
    /// recovers from the set's WAL archive when the server starts.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["target", "force", "include", "only", "no_keep_previous"])]
    pub target_dir: Option<PathBuf>,
    /// Recover to this time: stop before the first transaction that committed after it.
    /// With <SET>:latest, the newest base backup that ended before it is used.
    #[arg(long, value_name = "RFC3339", value_parser = parse_time, requires = "target_dir", conflicts_with = "target", group = "recovery")]
    pub to_time: Option<DateTime<Utc>>,
    /// Recover to this WAL position (as 0/3000060).
    #[arg(
        long,
        value_name = "LSN",
        value_parser = parse_lsn,
        requires = "target_dir",
        conflicts_with = "target",
        group = "recovery"
    )]
    pub to_lsn: Option<strongbox_manifest::Lsn>,
    /// Recover all the archived WAL (the default without --to-time or --to-lsn).
    #[arg(
        long,
        requires = "target_dir",
        conflicts_with = "target",
        group = "recovery"
    )]
    pub to_latest: bool,
    /// A bundle: restore only this member.
    #[arg(long, value_name = "MEMBER")]
    pub only: Option<String>,
    /// Restore only matching paths (and everything below a matching directory). The
    /// target becomes that selection: with --force, its other content goes with the rest
    /// of the old tree (to bring one file back into a live tree, restore elsewhere and
    /// copy it).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Print what would be restored; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace a non-empty target.
    #[arg(long)]
    pub force: bool,
    /// Delete the replaced directory tree instead of keeping it as
    /// <target>.pre-restore-<time> (files snapshots; a database restore always takes its
    /// safety snapshot, and an SQLite file is always kept aside).
    #[arg(long)]
    pub no_keep_previous: bool,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Only this set (repeatable; default: every set in the repository).
    #[arg(long = "set", value_name = "SET")]
    pub sets: Vec<String>,
    /// Critical when a set's newest snapshot is older (default: [health] max_age, else 48h).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub max_age: Option<std::time::Duration>,
    /// Warning when the local repository's disk is fuller, in percent (default: [health]
    /// max_disk_usage, else 80); critical at 95, or at PCT when higher.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100), value_name = "PCT")]
    pub max_disk_usage: Option<u8>,
    /// Also write the metrics to FILE for node_exporter's textfile collector (atomically).
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Snapshots to check (ids, prefixes, <SET>:latest); all when none is given.
    pub snapshots: Vec<String>,
    /// Check every snapshot.
    #[arg(long, conflicts_with = "snapshots")]
    pub all: bool,
    /// Check every snapshot of this set (repeatable).
    #[arg(long = "set", value_name = "SET", conflicts_with = "snapshots")]
    pub sets: Vec<String>,
    /// How thoroughly: quick, checksum, deep, or restore (a real restore into scratch
    /// space, checked and removed).
    #[arg(long, value_enum, default_value = "quick")]
    pub level: VerifyLevel,
    /// Also write the report to FILE: text, JSON or one self-contained HTML page, by its
    /// extension (.txt, .json, .html).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// With --level deep: read only about SIZE stored bytes (500MiB, 2GB), the objects
    /// verified least recently first, so that a daily run covers the whole repository in
    /// (repository size / SIZE) days.
    #[arg(long, value_name = "SIZE", value_parser = strongbox_verify::parse_size)]
    pub budget: Option<u64>,
    #[command(flatten)]
    pub scratch: Scratch,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only this set (default: every set).
    pub set: Option<String>,
    /// The rules; without any, each set's `keep` from the configuration file.
    #[command(flatten)]
    pub policy: strongbox_retention::KeepPolicy,
    /// Timezone of the hourly/daily/weekly/monthly/yearly buckets (UTC, +02:00,
    /// Europe/Berlin); default: the configuration's `timezone`, else UTC.
    #[arg(long, value_name = "TZ", allow_hyphen_values = true)]
    pub timezone: Option<strongbox_retention::Timezone>,
    /// Print the plan with reasons; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Leave objects no record names alone while younger than this. By default they go at
    /// once: prune holds the set's lock, so no backup of the set is writing them.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub grace: std::time::Duration,
    /// Remove run-journal entries older than this, except each set's last run of every
    /// operation [default: `journal_keep` in the configuration, else 90d].
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub journal_keep: Option<std::time::Duration>,
}

/// A tag the library takes (`check_tag`), refused with its reason: clap names the value.
fn parse_tag(text: &str) -> Result<String, String> {
    strongbox_manifest::check_tag(text)
        .map(str::to_string)
        .map_err(|e| match e {
            strongbox_manifest::Error::InvalidTag { reason, .. } => reason.to_string(),
            // The error enum is non-exhaustive; check_tag returns no other variant.
            e => e.to_string(),
        })
}

/// RFC 3339, or the form psql prints `now()` in (`2026-12-06 00:53:27.123+01`), which
/// operators paste; a time without an offset is refused by name rather than guessed.
fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    let parsed = DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z"));
    if let Ok(time) = parsed {
        return Ok(time.with_timezone(&Utc));
    }
    let naive = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .any(|format| chrono::NaiveDateTime::parse_from_str(text, format).is_ok());
    Err(if naive {
        "it has no UTC offset: add Z for UTC or the offset, like 2025-12-27T02:00:00+01:00"
            .to_string()
    } else {
        "expected RFC 3339 like 2025-12-27T02:00:00Z, or psql's 2025-12-27 02:00:00+01".to_string()
    })
}

fn parse_lsn(text: &str) -> Result<strongbox_manifest::Lsn, String> {
    text.parse()
        .map_err(|_| "expected an LSN, two hexadecimal numbers X/Y like 0/3000060".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Regression: examples wider than the terminal were wrapped mid-command by clap
    /// (`--scratch-postgres` on one line, its URL on the next), breaking copy and paste.
    #[test]
    fn help_examples_fit_an_80_column_terminal() {
        fn walk(command: &clap::Command, long: &mut Vec<String>) {
            let text = command.get_after_help().map(|h| h.to_string());
            for line in text.iter().flat_map(|t| t.lines()) {
                // Indented lines are commands; prose may wrap.
                if line.starts_with(' ') && line.chars().count() > 80 {
                    long.push(format!("{}: {line}", command.get_name()));
                }
            }
            command.get_subcommands().for_each(|sub| walk(sub, long));
        }
        let mut long = Vec::new();
        walk(&Cli::command(), &mut long);
        assert!(long.is_empty(), "{}", long.join("\n"));
    }

    /// Regression: psql's `now()` form without an offset was refused as "premature end
    /// of input", though nothing was missing but the offset.
    #[test]
    fn times_are_rfc_3339_or_psqls_and_an_offset_is_required() {
        let cases = [
            ("2026-12-06T00:53:27Z", Ok("2026-12-06T00:53:27+00:00")),
            (
                "2026-12-06 01:53:27.5+01:00",
                Ok("2026-12-06T00:53:27.500+00:00"),
            ),
            (
                "2026-12-06 01:53:27.123456+01",
                Ok("2026-12-06T00:53:27.123456+00:00"),
            ),
            ("2026-12-06 00:53:27+00", Ok("2026-12-06T00:53:27+00:00")),
            ("2026-12-06 00:53:27", Err("no UTC offset")),
            ("2026-12-06T00:53:27.25", Err("no UTC offset")),
            ("yesterday", Err("expected RFC 3339")),
        ];
        for (text, expected) in cases {
            match (parse_time(text), expected) {
                (Ok(time), Ok(want)) => assert_eq!(
                    time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
                    want,
                    "{text}"
                ),
                (Err(e), Err(want)) => assert!(e.contains(want), "{text}: {e}"),
                (got, want) => panic!("{text}: {got:?}, expected {want:?}"),
            }
        }
    }
}
