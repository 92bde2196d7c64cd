use std::io;
use std::path::PathBuf;

/// Errors of the configuration: each names the file and the key or set it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file cannot be read.
    #[error("reading configuration {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is not TOML.
    #[error("configuration {}, line {line}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where.
        line: usize,
        /// What the parser says.
        message: String,
    },
    /// A value of the wrong kind, or a key no setting has.
    #[error("configuration {}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A set that cannot be backed up as written.
    #[error("configuration {}: set {name:?} {message}", path.display())]
    Set {
        /// The file.
        path: PathBuf,
        /// The set.
        name: String,
        /// What is wrong (`needs \`path\``, `unknown field \`typo\``).
        message: String,
    },
    /// A `${VAR}` whose variable is not set.
    #[error("configuration {}: {key} uses ${{{var}}}, which is not set in the environment", path.display())]
    UnsetVariable {
        /// The file.
        path: PathBuf,
        /// The key whose value names it (`sets.maindb.conninfo`).
        key: String,
        /// The variable.
        var: String,
    },
    /// A `${` that is not a variable reference: no closing brace, or no name inside.
    #[error("configuration {}: {key} holds {text}…, which is not a variable reference: write ${{NAME}} (or $$ for a literal $)", path.display())]
    BadReference {
        /// The file.
        path: PathBuf,
        /// The key whose value holds it.
        key: String,
        /// The reference as written, up to the first character no name holds.
        text: String,
    },
    /// A setting the storage layer refuses (a set name, an `[s3]` key, the repository URL).
    #[error("configuration {}", path.display())]
    Storage {
        /// The file.
        path: PathBuf,
        /// What storage says.
        #[source]
        source: strongbox_storage::Error,
    },
    /// An `[alerts]` channel that cannot work as written (a bad address, URL or CA file).
    #[error("configuration {}: [alerts]", path.display())]
    Alerts {
        /// The file.
        path: PathBuf,
        /// What the alert channel says.
        #[source]
        source: strongbox_alert::Error,
    },
    /// `backup SET` for a set the configuration does not define.
    #[error("no set {name:?} in the configuration ({})", match known.as_str() {
        "" => "it defines none: was it given? --config FILE or STRONGBOX_CONFIG".to_string(),
        known => format!("it defines: {known}"),
    })]
    UnknownSet {
        /// The set asked for.
        name: String,
        /// The sets it defines.
        known: String,
    },
    /// A set named on the command line that neither the repository nor the configuration
    /// has: a typo, which would otherwise read as an empty set (and a cron job pruning it
    /// would prune nothing every night).
    #[error("no set {name:?} in the repository or the configuration (`strongbox snapshots` lists the sets)")]
    NoSuchSet {
        /// The set asked for.
        name: String,
    },
    /// `schedule install` would replace a file it did not write.
    #[error("{} exists and schedule install did not write it; move it away first", path.display())]
    ForeignScheduleFile {
        /// The file.
        path: PathBuf,
    },
    /// A cron user that is not a user name.
    #[error("--user {user:?} is not a user name (lower-case letters, digits, _, - and .)")]
    ScheduleUser {
        /// What was given.
        user: String,
    },
    /// Installed jobs see the configuration file alone, which names no repository.
    #[error("{} names no `repo`; the installed jobs need one (they see no --repo or STRONGBOX_REPO)", path.display())]
    ScheduleWithoutRepo {
        /// The configuration file.
        path: PathBuf,
    },
    /// Installed jobs would back up to the file's repository, not the one given here.
    #[error("the installed jobs would use repository {configured}, from {}, not {given} (--repo or STRONGBOX_REPO): set `repo` there instead", path.display())]
    ScheduleRepoMismatch {
        /// The configuration file.
        path: PathBuf,
        /// Its `repo`.
        configured: String,
        /// The repository given on the command line or in the environment.
        given: String,
    },
    /// Installed jobs would resolve a relative repository path from their working directory.
    #[error("repository {} is a relative path, which the installed jobs would resolve from cron's working directory: give an absolute path in {}", repo.display(), path.display())]
    ScheduleRelativeRepo {
        /// The configuration file.
        path: PathBuf,
        /// The repository path.
        repo: PathBuf,
    },
    /// `prune` without rules for a set whose configuration has no `keep`.
    #[error("set {set:?} has no `keep` policy in the configuration; give --keep-* rules")]
    NoKeepPolicy {
        /// The set.
        set: String,
    },
    /// `prune` without rules, and no configured set has a `keep`.
    #[error("no set in the configuration has a `keep` policy; give --keep-* rules")]
    NoKeepPolicies,
    /// Installing or removing a schedule's file failed.
    #[error("{operation} {}", path.display())]
    ScheduleFile {
        /// What was attempted.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
}
