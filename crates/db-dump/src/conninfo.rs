//! PostgreSQL connection strings: parsing with libpq's defaults and fallbacks, redaction, and
//! the environment that hands a connection to `pg_dump`/`pg_restore` without a secret in
//! their arguments.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};

use crate::Error;

/// Replace every password in a connection string (URL or `key=value` form) with `***`.
///
/// ```
/// use strongbox_db_dump::redact_conninfo;
/// assert_eq!(
///     redact_conninfo("postgres://app:s3cret@db.internal:5432/app?sslmode=disable"),
///     "postgres://app:***@db.internal:5432/app?sslmode=disable"
/// );
/// assert_eq!(
///     redact_conninfo("host=db user=app password='s3 cret' dbname=app"),
///     "host=db user=app password=*** dbname=app"
/// );
/// ```
pub fn redact_conninfo(conninfo: &str) -> String {
    let trimmed = conninfo.trim();
    // Neither a key nor a URL's login: nothing to hide (a path given where a connection
    // string belongs is shown as given).
    if !trimmed.contains(['=', '@']) {
        return trimmed.to_string();
    }
    if let Some(rest) = trimmed
        .strip_prefix("postgres://")
        .map(|r| ("postgres://", r))
        .or_else(|| {
            trimmed
                .strip_prefix("postgresql://")
                .map(|r| ("postgresql://", r))
        })
    {
        redact_url(rest.0, rest.1)
    } else {
        redact_key_values(trimmed)
    }
}

/// libpq's connection keywords.
const KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "require_auth",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "requiressl",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
];

/// Whether `spec` is a PostgreSQL connection string, as libpq reads one: a `postgres://` or
/// `postgresql://` URL, or `keyword=value` pairs of libpq's keywords (`dbname=app`,
/// `host=/var/run/postgresql dbname=app`). Such a string is never a file name.
///
/// ```
/// use strongbox_db_dump::is_conninfo;
/// assert!(is_conninfo("postgresql://backup@db/app"));
/// assert!(is_conninfo("host=/var/run/postgresql dbname=app"));
/// assert!(is_conninfo("dbname = 'my app'"));
/// assert!(!is_conninfo("/srv/app/chat.sqlite3"));
/// assert!(!is_conninfo("./dbname=app"));
/// ```
pub fn is_conninfo(spec: &str) -> bool {
    let spec = spec.trim();
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        return true;
    }
    matches!(key_values(spec), Ok(pairs)
        if !pairs.is_empty() && pairs.iter().all(|p| KEYWORDS.contains(&p.key.as_str())))
}

/// Whether `spec` is a connection string holding a password (`user:pw@`, `?password=`,
/// `password=`), which on a command line every user of the host can read.
///
/// ```
/// use strongbox_db_dump::holds_password;
/// assert!(holds_password("postgresql://backup:s3cret@db/app"));
/// assert!(holds_password("host=db password=s3cret dbname=app"));
/// assert!(!holds_password("postgresql://backup@db/app"));
/// assert!(!holds_password("/srv/app/user:pw@chat.sqlite3"));
/// ```
pub fn holds_password(spec: &str) -> bool {
    is_conninfo(spec) && redact_conninfo(spec) != spec.trim()
}

/// `password`, `sslpassword`, and any spelling of them: libpq refuses `PASSWORD`, but its
/// value is a password all the same, and the error that refuses it must not show it.
fn is_secret_key(key: &str) -> bool {
    key.to_ascii_lowercase().contains("password")
}

fn redact_url(scheme: &str, rest: &str) -> String {
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let (userinfo, hosts) = authority.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***{hosts}"),
                None => authority.to_string(),
            }
        }
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if is_secret_key(key) => format!("{key}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}{authority}{tail}")
}

/// One `key=value` pair of a libpq connection string.
struct Pair {
    key: String,
    /// Byte range of the value as written (quotes included).
    span: std::ops::Range<usize>,
}

/// Split a `key=value` connection string as libpq does; `Err` at the first malformed byte.
fn key_values(conninfo: &str) -> Result<Vec<Pair>, usize> {
    let bytes = conninfo.as_bytes();
    let mut pairs = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() {
            return Ok(pairs);
        }
        let key_start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = conninfo[key_start..i].to_string();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() || bytes[i] != b'=' || key.is_empty() {
            return Err(key_start);
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let value_start = i;
        if i < bytes.len() && bytes[i] == b'\'' {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err(value_start),
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => i += 2,
                    Some(_) => i += 1,
                }
            }
        } else {
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                // A backslash escapes the next byte, a space included.
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i = i.min(bytes.len());
        }
        pairs.push(Pair {
            key,
            span: value_start..i,
        });
    }
}

fn redact_key_values(conninfo: &str) -> String {
    let (pairs, bad_from) = match key_values(conninfo) {
        Ok(pairs) => (pairs, None),
        Err(at) => (key_values(&conninfo[..at]).unwrap_or_default(), Some(at)),
    };
    let mut out = String::new();
    let mut copied = 0;
    // libpq reads a `dbname` holding `=` or a URL as a connection string of its own.
    let nested = |p: &&Pair| {
        let value = &conninfo[p.span.clone()];
        p.key.eq_ignore_ascii_case("dbname") && (value.contains('=') || value.contains('@'))
    };
    for pair in pairs.iter().filter(|p| is_secret_key(&p.key) || nested(p)) {
        out.push_str(&conninfo[copied..pair.span.start]);
        out.push_str("***");
        copied = pair.span.end;
    }
    match bad_from {
        // Past a malformed byte nothing can be told apart, so nothing after it is shown.
        Some(at) => {
            out.push_str(&conninfo[copied.min(at)..at]);
            if !out.ends_with("***") {
                out.push_str("***");
            }
        }
        None => out.push_str(&conninfo[copied..]),
    }
    out
}

/// A resolved PostgreSQL connection: one host, user, database, and the password if any.
#[derive(Clone)]
pub(crate) struct PgConn {
    /// The connection string as given, redacted: for records and messages.
    pub(crate) redacted: String,
    pub(crate) host: Host,
    pub(crate) hostaddr: Option<std::net::IpAddr>,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) dbname: String,
    /// Whether the string itself named the database (a restore target must).
    pub(crate) explicit_dbname: bool,
    pub(crate) password: Option<String>,
    pub(crate) options: Option<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) ssl_mode: SslMode,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn")
            .field("conninfo", &self.redacted)
            .finish_non_exhaustive()
    }
}

/// Environment of the process, as far as a connection is concerned (a seam for tests).
pub(crate) trait Env {
    fn var(&self, name: &str) -> Option<String>;
    /// The name and home directory of the operating-system user the process runs as.
    fn os_user(&self) -> Option<(String, PathBuf)>;
}

pub(crate) struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    fn os_user(&self) -> Option<(String, PathBuf)> {
        let uid = rustix::process::geteuid().as_raw();
        passwd_entry(&std::fs::read_to_string("/etc/passwd").ok()?, uid)
    }
}

/// Name and home of `uid` in an `/etc/passwd` text, as `getpwuid` gives them to libpq.
fn passwd_entry(passwd: &str, uid: u32) -> Option<(String, PathBuf)> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [name, _, id, _, _, home, ..] if id.parse() == Ok(uid) && !name.is_empty() => {
                Some((name.to_string(), PathBuf::from(home)))
            }
            _ => None,
        }
    })
}

impl PgConn {
    /// Parse `conninfo` and fill what it leaves out as libpq would: PGHOST (else the local
    /// socket directory), PGPORT, PGUSER (else the operating-system user), PGDATABASE (else
    /// the user name); the password from the string, else PGPASSWORD, else the password
    /// file.
    pub(crate) fn parse(conninfo: &str, env: &dyn Env) -> Result<Self, Error> {
        let redacted = redact_conninfo(conninfo);
        let invalid = |reason: String| Error::InvalidConninfo {
            conninfo: redacted.clone(),
            reason,
        };
        let config: tokio_postgres::Config =
            conninfo
                .trim()
                .parse()
                .map_err(|e: tokio_postgres::Error| Error::ConninfoSyntax {
                    conninfo: redacted.clone(),
                    source: e.into(),
                })?;
        if matches!(config.get_ssl_mode(), SslMode::Require) {
            return Err(invalid(
                "sslmode=require is not supported yet: strongbox's own connection has no TLS; \
                 connect over a local socket or an SSH tunnel"
                    .to_string(),
            ));
        }
        let port = match config.get_ports().first() {
            Some(&port) => port,
            None => match env.var("PGPORT") {
                Some(port) => port
                    .parse()
                    .map_err(|_| invalid(format!("PGPORT {port:?} is not a port number")))?,
                None => 5432,
            },
        };
        if config.get_hosts().len() > 1 {
            // pg_dump must reach the very server that exported the snapshot.
            tracing::info!(conninfo = %redacted, "several hosts given; using the first");
        }
        let host = match config.get_hosts().first() {
            Some(host) => host.clone(),
            None => match env.var("PGHOST") {
                Some(host) if host.starts_with('/') => Host::Unix(PathBuf::from(host)),
                Some(host) => Host::Tcp(host),
                None => default_host(port),
            },
        };
        // libpq asks the system for the user the process runs as (getpwuid), so the user
        // `runuser -u postgres` switched to, whatever USER still says.
        let user = config
            .get_user()
            .map(str::to_string)
            .or_else(|| env.var("PGUSER"))
            .or_else(|| env.os_user().map(|(name, _)| name))
            .or_else(|| env.var("USER"))
            .ok_or_else(|| {
                invalid(
                    "no user given (user=, PGUSER) and the operating-system user is unknown"
                        .to_string(),
                )
            })?;
        let dbname = config
            .get_dbname()
            .map(str::to_string)
            .or_else(|| env.var("PGDATABASE"))
            .unwrap_or_else(|| user.clone());
        let mut conn = PgConn {
            redacted: redacted.clone(),
            host,
            hostaddr: config.get_hostaddrs().first().copied(),
            port,
            user,
            explicit_dbname: config.get_dbname().is_some(),
            dbname,
            password: None,
            options: config.get_options().map(str::to_string),
            connect_timeout: config
                .get_connect_timeout()
                .copied()
                .unwrap_or(Duration::from_secs(30)),
            ssl_mode: config.get_ssl_mode(),
        };
        conn.password = match config.get_password() {
            Some(password) => Some(
                String::from_utf8(password.to_vec())
                    .map_err(|_| invalid("the password is not valid UTF-8".to_string()))?,
            ),
            None => env
                .var("PGPASSWORD")
                .or_else(|| conn.password_from_file(env)),
        };
        Ok(conn)
    }

    /// The same server and credentials, another database (the maintenance database).
    pub(crate) fn with_dbname(&self, dbname: &str) -> Self {
        PgConn {
            dbname: dbname.to_string(),
            ..self.clone()
        }
    }

    /// `host:port` or the socket directory, for messages.
    pub(crate) fn host_display(&self) -> String {
        match &self.host {
            Host::Tcp(host) if host.contains(':') => format!("[{host}]:{}", self.port),
            Host::Tcp(host) => format!("{host}:{}", self.port),
            Host::Unix(dir) => format!("socket {}:{}", dir.display(), self.port),
        }
    }

    /// `database "app" on host:port`, for messages.
    pub(crate) fn describe(&self) -> String {
        format!("database {:?} on {}", self.dbname, self.host_display())
    }

    /// The tokio-postgres configuration.
    pub(crate) fn config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        match &self.host {
            Host::Tcp(host) => config.host(host),
            Host::Unix(dir) => config.host_path(dir),
        };
        if let Some(addr) = self.hostaddr {
            config.hostaddr(addr);
        }
        config
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("strongbox")
            .connect_timeout(self.connect_timeout)
            .ssl_mode(self.ssl_mode);
        if let Some(password) = &self.password {
            config.password(password);
        }
        if let Some(options) = &self.options {
            config.options(options);
        }
        config
    }

    /// Environment for `pg_dump`/`pg_restore`: the whole connection, the password included,
    /// goes through libpq's variables so that no secret shows in a process listing.
    pub(crate) fn child_env(&self) -> Vec<(&'static str, Option<String>)> {
        let host = match &self.host {
            Host::Tcp(host) => host.clone(),
            Host::Unix(dir) => dir.display().to_string(),
        };
        let ssl = match self.ssl_mode {
            SslMode::Disable => "disable",
            _ => "prefer",
        };
        vec![
            ("PGHOST", Some(host)),
            ("PGHOSTADDR", self.hostaddr.map(|a| a.to_string())),
            ("PGPORT", Some(self.port.to_string())),
            ("PGUSER", Some(self.user.clone())),
            ("PGDATABASE", Some(self.dbname.clone())),
            ("PGPASSWORD", self.password.clone()),
            ("PGOPTIONS", self.options.clone()),
            ("PGAPPNAME", Some("strongbox".to_string())),
            (
                "PGCONNECT_TIMEOUT",
                Some(self.connect_timeout.as_secs().max(2).to_string()),
            ),
            ("PGSSLMODE", Some(ssl.to_string())),
            // A service definition would override what is set here.
            ("PGSERVICE", None),
            ("PGSERVICEFILE", None),
        ]
    }

    /// Remove the password from `text` (tool output, server messages), should it appear:
    /// where it stands alone, not inside a longer word. Replaced inside one (password
    /// `secret`, table `secret_t`), the message named a table that does not exist, and
    /// showed which text the password is.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let password = match &self.password {
            // Shorter passwords would mangle ordinary words, and no tool echoes them anyway.
            Some(password) if password.len() >= 4 => password.as_str(),
            _ => return text.to_string(),
        };
        // Where the password's own edge is a word character, its neighbour must not be one
        // (a word boundary, as a regex's \b).
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        let (starts, ends) = (
            word(password.chars().next()),
            word(password.chars().next_back()),
        );
        let mut out = String::with_capacity(text.len());
        let (mut rest, mut from) = (0, 0);
        while let Some(found) = text[from..].find(password) {
            let (at, end) = (from + found, from + found + password.len());
            let inside = (starts && word(text[..at].chars().next_back()))
                || (ends && word(text[end..].chars().next()));
            if !inside {
                out.push_str(&text[rest..at]);
                out.push_str("***");
                (rest, from) = (end, end);
            } else {
                // An occurrence inside a word; another may start within it.
                from = at + text[at..].chars().next().map_or(1, char::len_utf8);
            }
        }
        out.push_str(&text[rest..]);
        out
    }

    /// Look the password up in `PGPASSFILE` or `~/.pgpass`, as libpq does.
    fn password_from_file(&self, env: &dyn Env) -> Option<String> {
        let path = match env.var("PGPASSFILE") {
            Some(path) => PathBuf::from(path),
            None => env
                .var("HOME")
                .map(PathBuf::from)
                .or_else(|| env.os_user().map(|(_, home)| home))?
                .join(".pgpass"),
        };
        let text = read_private(&path)?;
        let host = match &self.host {
            // libpq matches a socket connection against "localhost".
            Host::Unix(_) => "localhost".to_string(),
            Host::Tcp(host) => host.clone(),
        };
        let port = self.port.to_string();
        let wanted = [
            host.as_str(),
            port.as_str(),
            self.dbname.as_str(),
            self.user.as_str(),
        ];
        text.lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .map(pgpass_fields)
            .filter(|fields| fields.len() == 5)
            .find(|fields| {
                fields[..4]
                    .iter()
                    .zip(wanted)
                    .all(|(field, want)| field == "*" || field == want)
            })
            .map(|mut fields| fields.swap_remove(4))
    }
}

/// A password file's content, unless others may read it (libpq ignores such a file too).
fn read_private(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "password file has group or world access; ignoring it (chmod 0600)");
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// Fields of a `.pgpass` line: `:` separates, `\` escapes.
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field").push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

/// libpq's default: the local socket directory where a server listens, else localhost.
fn default_host(port: u16) -> Host {
    ["/var/run/postgresql", "/tmp"]
        .iter()
        .map(Path::new)
        .find(|dir| dir.join(format!(".s.PGSQL.{port}")).exists())
        .map_or_else(
            || Host::Tcp("localhost".to_string()),
            |dir| Host::Unix(dir.to_path_buf()),
        )
}

/// Quote an SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct FakeEnv(HashMap<&'static str, String>, Option<(String, PathBuf)>);

    impl Env for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
        fn os_user(&self) -> Option<(String, PathBuf)> {
            self.1.clone()
        }
    }

    fn env(vars: &[(&'static str, &str)]) -> FakeEnv {
        FakeEnv(
            vars.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            None,
        )
    }

    fn env_as(user: &str, vars: &[(&'static str, &str)]) -> FakeEnv {
        FakeEnv(
            env(vars).0,
            Some((user.to_string(), PathBuf::from(format!("/home/{user}")))),
        )
    }

    #[test]
    fn redacts_every_password_form() {
        let cases = [
            ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
            (
                "postgresql://u:p%40ss@h:5433,h2:5434/db?sslmode=disable",
                "postgresql://u:***@h:5433,h2:5434/db?sslmode=disable",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://h/db?user=u&password=pw&x=1",
                "postgres://h/db?user=u&password=***&x=1",
            ),
            ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
            (
                "host=h password=pw dbname=d",
                "host=h password=*** dbname=d",
            ),
            (
                "host=h password = 'a \\' b' dbname=d",
                "host=h password = *** dbname=d",
            ),
            ("password=pw", "password=***"),
            ("host=h password='unterminated", "host=h password=***"),
            ("host=h garbage password=pw", "host=h ***"),
            ("host=h PASSWORD=pw", "host=h PASSWORD=***"),
            (
                "postgres://h/db?Password=pw",
                "postgres://h/db?Password=***",
            ),
            ("/srv/restore/db", "/srv/restore/db"),
            ("postgresql:/u:pw@h", "***"),
            ("host=h dbname='postgresql://u:pw@h/x'", "host=h dbname=***"),
            ("host=h dbname='password=pw'", "host=h dbname=***"),
            ("host=h dbname=app", "host=h dbname=app"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_conninfo(input), expected, "{input}");
        }
    }

    #[test]
    fn password_comes_from_url_then_env_then_file() {
        let dir = tempfile::tempdir().unwrap();
        let pgpass = dir.path().join("pgpass");
        std::fs::write(
            &pgpass,
            "# comment\nother:5432:*:u:wrong\nh:5432:db:u:from\\:file\n*:*:*:*:fallback\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
        let file = pgpass.to_str().unwrap();

        let from_url = PgConn::parse(
            "postgres://u:url@h/db",
            &env(&[("PGPASSWORD", "env"), ("PGPASSFILE", file)]),
        )
        .unwrap();
        assert_eq!(from_url.password.as_deref(), Some("url"));
        let from_env = PgConn::parse(
            "postgres://u@h/db",
            &env(&[("PGPASSWORD", "env"), ("PGPASSFILE", file)]),
        )
        .unwrap();
        assert_eq!(from_env.password.as_deref(), Some("env"));
        let from_file =
            PgConn::parse("host=h user=u dbname=db", &env(&[("PGPASSFILE", file)])).unwrap();
        assert_eq!(from_file.password.as_deref(), Some("from:file"));
        let wildcard =
            PgConn::parse("host=x user=v dbname=db", &env(&[("PGPASSFILE", file)])).unwrap();
        assert_eq!(wildcard.password.as_deref(), Some("fallback"));

        // A password file others can read is ignored, as libpq does.
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
        let open = PgConn::parse("host=h user=u dbname=db", &env(&[("PGPASSFILE", file)])).unwrap();
        assert_eq!(open.password, None);
    }

    #[test]
    fn fills_defaults_from_the_environment() {
        let conn = PgConn::parse(
            "",
            &env(&[
                ("PGHOST", "db.internal"),
                ("PGPORT", "6543"),
                ("PGUSER", "app"),
                ("PGDATABASE", "main"),
            ]),
        )
        .unwrap();
        assert_eq!(conn.describe(), "database \"main\" on db.internal:6543");
        let conn = PgConn::parse("postgres://h", &env(&[("USER", "me")])).unwrap();
        assert_eq!((conn.user.as_str(), conn.dbname.as_str()), ("me", "me"));
        let socket = PgConn::parse("host=/run/pg user=u", &env(&[])).unwrap();
        assert_eq!(socket.host_display(), "socket /run/pg:5432");
    }

    #[test]
    fn secrets_stay_out_of_child_arguments_and_messages() {
        let conn = PgConn::parse("postgres://u:hunter22@h/db", &env(&[])).unwrap();
        let child = conn.child_env();
        assert!(child.contains(&("PGPASSWORD", Some("hunter22".to_string()))));
        assert!(!format!("{conn:?}").contains("hunter22"));
        let cases = [
            ("FATAL: bad password hunter22", "FATAL: bad password ***"),
            ("u:hunter22@h, 'hunter22'", "u:***@h, '***'"),
            ("table hunter22_t, hunter22x", "table hunter22_t, hunter22x"),
        ];
        for (said, shown) in cases {
            assert_eq!(conn.scrub(said), shown);
        }
        // An occurrence inside a word does not hide one alone right after it; a password
        // with non-word edges is hidden wherever it stands.
        let cases = [
            ("x--x", "ax--x--x", "ax--***"),
            ("!secret!", "a!secret!b", "a***b"),
        ];
        for (password, said, shown) in cases {
            let conn = PgConn::parse(&format!("postgres://u:{password}@h/db"), &env(&[])).unwrap();
            assert_eq!(conn.scrub(said), shown, "{password}");
        }
        let err = PgConn::parse("postgres://u:hunter22@h:notaport/db", &env(&[])).unwrap_err();
        assert!(matches!(err, Error::ConninfoSyntax { .. }), "{err}");
        let chain = crate::error::chain(&err);
        assert!(
            chain.contains("port") && !chain.contains("hunter22"),
            "{chain}"
        );
        let err = PgConn::parse("postgres://u:pw@h/db?sslmode=require", &env(&[])).unwrap_err();
        assert!(err.to_string().contains("sslmode=require"), "{err}");
    }

    #[test]
    fn the_user_defaults_to_the_operating_system_user_as_in_libpq() {
        /// (conninfo, PGUSER, OS user, USER variable) -> (user, database) or a complaint
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            Result<(&'a str, &'a str), &'a str>,
        );
        let cases: [Case<'_>; 6] = [
            (
                "host=/var/run/postgresql dbname=app",
                None,
                Some("postgres"),
                Some("root"),
                Ok(("postgres", "app")),
            ),
            (
                "dbname=app",
                None,
                Some("postgres"),
                None,
                Ok(("postgres", "app")),
            ),
            ("", None, Some("alice"), None, Ok(("alice", "alice"))),
            (
                "user=bob dbname=app",
                Some("carol"),
                Some("alice"),
                None,
                Ok(("bob", "app")),
            ),
            (
                "dbname=app",
                Some("carol"),
                Some("alice"),
                None,
                Ok(("carol", "app")),
            ),
            ("dbname=app", None, None, None, Err("no user given")),
        ];
        for (conninfo, pguser, os_user, user_var, expected) in cases {
            let mut vars = vec![];
            if let Some(u) = pguser {
                vars.push(("PGUSER", u));
            }
            if let Some(u) = user_var {
                vars.push(("USER", u));
            }
            let env = match os_user {
                Some(name) => env_as(name, &vars),
                None => env(&vars),
            };
            match (PgConn::parse(conninfo, &env), expected) {
                (Ok(conn), Ok((user, db))) => {
                    assert_eq!(
                        (conn.user.as_str(), conn.dbname.as_str()),
                        (user, db),
                        "{conninfo}"
                    )
                }
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{conninfo}: {e}"),
                (got, want) => panic!("{conninfo}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn reads_passwd_entries_like_getpwuid() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postgres:x:104:110:PostgreSQL administrator:/var/lib/postgresql:/bin/bash\n\
                      broken line\n";
        assert_eq!(
            passwd_entry(passwd, 104),
            Some(("postgres".to_string(), PathBuf::from("/var/lib/postgresql")))
        );
        assert_eq!(passwd_entry(passwd, 0).unwrap().0, "root");
        assert_eq!(passwd_entry(passwd, 999), None);
    }

    #[test]
    fn the_password_file_is_found_in_the_os_users_home() {
        let home = tempfile::tempdir().unwrap();
        let pgpass = home.path().join(".pgpass");
        std::fs::write(&pgpass, "*:*:*:postgres:from-home\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
        let env = FakeEnv(
            HashMap::new(),
            Some(("postgres".to_string(), home.path().to_path_buf())),
        );
        let conn = PgConn::parse("host=h dbname=app", &env).unwrap();
        assert_eq!(conn.password.as_deref(), Some("from-home"));
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
