//! Throwaway PostgreSQL clusters: `initdb` into a temp dir, a socket directory of their own,
//! never the system cluster. PostgreSQL refuses to run as root, so when the tests do, the
//! cluster, and every command that must reach its files, runs as `postgres`.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A temp dir the cluster's user owns, for data directories, sockets, logs and a
/// repository that `archive_command` writes.
pub struct ClusterDir {
    dir: tempfile::TempDir,
    bindir: PathBuf,
}

impl ClusterDir {
    /// A new dir, or `None` when PostgreSQL's server programs are not installed (a failure
    /// under `CI=true`).
    pub fn new() -> Option<ClusterDir> {
        let bindir = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|dir| dir.join("initdb").exists());
        let Some(bindir) = bindir else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("initdb not found (pg_config --bindir) under CI=true: install postgresql");
            }
            eprintln!("skipping: PostgreSQL's server programs are not installed");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        if is_root() {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown postgres {}", dir.path().display());
        }
        Some(ClusterDir { dir, bindir })
    }

    /// A path inside.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `program` run as the cluster's user.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        as_cluster_user(program, is_root())
    }

    /// A copy of `binary` the cluster's user can run wherever the checkout lives.
    pub fn install(&self, binary: &Path) -> PathBuf {
        let copy = self.path(binary.file_name().and_then(OsStr::to_str).unwrap_or("bin"));
        std::fs::copy(binary, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    }

    /// A directory the cluster's user owns.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let path = self.path(rel);
        let status = self.command("mkdir").arg("-p").arg(&path).status().unwrap();
        assert!(status.success(), "mkdir {}", path.display());
        path
    }

    /// `initdb` a cluster into `rel` with `settings` appended to its postgresql.conf; not
    /// started.
    pub fn init(&self, rel: &str, settings: &str) -> Server {
        let data = self.path(rel);
        let out = self
            .command(self.bindir.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(settings);
        std::fs::write(&conf, text).unwrap();
        self.server(rel)
    }

    /// The data directory `rel` (one a restore wrote) as a server on a port of its own.
    pub fn server(&self, rel: &str) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Server {
            data: self.path(rel),
            socket: self.dir.path().to_path_buf(),
            port,
            pg_ctl: self.bindir.join("pg_ctl"),
            runs_as_postgres: is_root(),
            running: false,
        }
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `program`, run as `postgres` when `as_postgres`.
fn as_cluster_user(program: impl AsRef<OsStr>, as_postgres: bool) -> Command {
    if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// A PostgreSQL server on a data directory, listening only on its socket directory; stopped
/// (immediately) when dropped.
pub struct Server {
    /// The data directory.
    pub data: PathBuf,
    socket: PathBuf,
    /// The port (it names the socket).
    pub port: u16,
    pg_ctl: PathBuf,
    runs_as_postgres: bool,
    running: bool,
}

impl Server {
    fn command(&self, program: impl AsRef<OsStr>) -> Command {
        as_cluster_user(program, self.runs_as_postgres)
    }

    /// Start it with `env` in the server's environment (what `archive_command` and
    /// `restore_command` see) and `options` on its command line (`-c archive_mode=off`).
    pub fn start(&mut self, env: &[(&str, &str)], options: &str) {
        let log = self.data.with_extension("log");
        let out = self
            .command(&self.pg_ctl)
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "120", "-o"])
            .arg(format!(
                "-p {} -c listen_addresses='' -c unix_socket_directories='{}' {options}",
                self.port,
                self.socket.display()
            ))
            .arg("start")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        self.running = out.status.success();
        assert!(
            self.running,
            "pg_ctl start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
    }

    /// A keyword connection string for database `postgres` as user `postgres`.
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.socket.display(),
            self.port
        )
    }

    /// Run `sql` (statements in one transaction); its unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        let out = self
            .try_psql(sql)
            .unwrap_or_else(|e| panic!("psql {sql}: {e}"));
        out.trim().to_string()
    }

    /// Run `sql`; its output, or psql's error.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Wait until recovery has ended and the server accepts writes.
    pub fn wait_promoted(&self, within: Duration) {
        let started = Instant::now();
        while started.elapsed() < within {
            if self
                .try_psql("SELECT pg_is_in_recovery()")
                .map(|o| o.trim() == "f")
                == Ok(true)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "{} still recovering after {within:?}:\n{}",
            self.data.display(),
            self.log()
        );
    }

    /// Stop it (fast).
    pub fn stop(&mut self) {
        self.stop_with("fast");
    }

    fn stop_with(&mut self, mode: &str) {
        if self.running {
            let _ = self
                .command(&self.pg_ctl)
                .arg("-D")
                .arg(&self.data)
                .args(["-w", "-m", mode, "stop"])
                .output();
            self.running = false;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_with("immediate");
    }
}
