//! Running the PostgreSQL client tools and moving streams in and out of them.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::thread::JoinHandle;

use crate::conninfo::PgConn;
use crate::Error;

/// How much of a tool's stderr an error message keeps (the end, where the cause is).
const STDERR_TAIL: usize = 4096;
const CHUNK: usize = 256 * 1024;

/// A PostgreSQL major version: `(15, 0)` for 15.x, `(9, 6)` for 9.6.x.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Major(pub(crate) u32, pub(crate) u32);

impl Major {
    /// From `server_version_num` (`150004`, `90624`).
    pub(crate) fn from_version_num(num: u32) -> Self {
        if num >= 100_000 {
            Major(num / 10_000, 0)
        } else {
            Major(num / 10_000, (num / 100) % 100)
        }
    }

    /// From a version string (`15.18`, `9.6.24`, `17beta1`).
    pub(crate) fn parse(version: &str) -> Option<Self> {
        let mut parts = version.split('.').map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let first = parts.next()??;
        if first >= 10 {
            Some(Major(first, 0))
        } else {
            Some(Major(first, parts.next().flatten()?))
        }
    }
}

impl fmt::Display for Major {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 10 {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{}.{}", self.0, self.1)
        }
    }
}

/// An installed client tool.
pub(crate) struct Tool {
    pub(crate) name: &'static str,
    path: PathBuf,
}

impl Tool {
    /// Find `name` on PATH; `database` names what it is needed for in the error.
    pub(crate) fn find(name: &'static str, database: &str) -> Result<Self, Error> {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|path| is_executable(path))
        });
        match found {
            Some(path) => Ok(Tool { name, path }),
            None => Err(Error::ToolMissing {
                tool: name,
                database: database.to_string(),
            }),
        }
    }

    /// Find a server tool (`pg_waldump`, which Debian keeps off PATH): Debian's of the
    /// `major` version, else on PATH, else in `pg_config --bindir`, else in the newest
    /// `/usr/lib/postgresql/*/bin`.
    pub(crate) fn find_server(
        name: &'static str,
        database: &str,
        major: Option<Major>,
    ) -> Result<Self, Error> {
        let debian_major =
            major.map(|m| PathBuf::from(format!("/usr/lib/postgresql/{m}/bin")).join(name));
        if let Some(path) = debian_major.filter(|p| is_executable(p)) {
            return Ok(Tool { name, path });
        }
        if let Ok(tool) = Tool::find(name, database) {
            return Ok(tool);
        }
        let bindir = std::process::Command::new("pg_config")
            .arg("--bindir")
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .collect();
        debian.sort_by_key(|dir| {
            let version = dir
                .parent()
                .and_then(|v| v.file_name())
                .map(|v| v.to_string_lossy().into_owned());
            version.and_then(|v| Major::parse(&v))
        });
        bindir
            .into_iter()
            .chain(debian.into_iter().rev())
            .map(|dir| dir.join(name))
            .find(|path| is_executable(path))
            .map(|path| Tool { name, path })
            .ok_or_else(|| Error::ToolMissing {
                tool: name,
                database: database.to_string(),
            })
    }

    /// The tool's version string (`15.18`) and major version, from `--version`.
    pub(crate) fn version(&self, database: &str) -> Result<(String, Major), Error> {
        let output = Command::new(&self.path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io("running", &self.path, e))?;
        let text = String::from_utf8_lossy(&output.stdout);
        // `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`
        let version = text
            .split_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or(&text)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        match Major::parse(&version) {
            Some(major) if output.status.success() => Ok((version, major)),
            _ => Err(Error::ToolFailed {
                tool: self.name,
                database: database.to_string(),
                status: output.status.to_string(),
                stderr: format!("unexpected --version output {:?}", text.trim()),
            }),
        }
    }

    /// A command with the connection in libpq's environment variables.
    pub(crate) fn command(&self, conn: Option<&PgConn>) -> Command {
        let mut command = Command::new(&self.path);
        if let Some(conn) = conn {
            for (name, value) in conn.child_env() {
                match value {
                    Some(value) => command.env(name, value),
                    None => command.env_remove(name),
                };
            }
        }
        command
    }
}

/// What the steps of [`Tool::stream_out`] are called in its errors.
pub(crate) struct StreamOps {
    pub(crate) start: &'static str,
    pub(crate) read: &'static str,
    pub(crate) write: &'static str,
    pub(crate) wait: &'static str,
}

/// What a tool streamed out and said.
pub(crate) struct Streamed {
    /// Bytes copied.
    pub(crate) bytes: u64,
    /// The first bytes, as many as asked for.
    pub(crate) head: Vec<u8>,
    /// Its stderr, on one line, the password scrubbed.
    pub(crate) stderr: String,
}

impl Tool {
    /// Run `command` (from [`Tool::command`]) with stdout copied into `out` and the first
    /// `head_len` bytes kept; a tool that fails (or a copy that does) is an error about
    /// `database`, and the tool is killed when the copy fails.
    pub(crate) fn stream_out(
        &self,
        mut command: Command,
        out: &mut dyn Write,
        head_len: usize,
        database: &str,
        conn: Option<&PgConn>,
        ops: &StreamOps,
    ) -> Result<Streamed, Error> {
        let stream_error = |operation, source| Error::Stream {
            operation,
            database: database.to_string(),
            source,
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| stream_error(ops.start, e))?;
        let stderr = StderrTail::start(child.stderr.take());
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut head = Vec::new();
        let copied = copy(&mut stdout, out, &mut head, head_len);
        drop(stdout);
        let bytes = copied.map_err(|e| {
            abandon(&mut child);
            match e {
                CopyError::Read(e) => stream_error(ops.read, e),
                CopyError::Write(e) => stream_error(ops.write, e),
            }
        })?;
        let status = child.wait().map_err(|e| stream_error(ops.wait, e))?;
        let stderr = stderr.finish(conn);
        if !status.success() {
            return Err(Error::ToolFailed {
                tool: self.name,
                database: database.to_string(),
                status: status.to_string(),
                stderr,
            });
        }
        Ok(Streamed {
            bytes,
            head,
            stderr,
        })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Reads a child's stderr on its own thread, so a chatty tool never blocks on a full pipe,
/// and keeps the end of it for an error message.
pub(crate) struct StderrTail(Option<JoinHandle<Vec<u8>>>);

impl StderrTail {
    pub(crate) fn start(stderr: Option<ChildStderr>) -> Self {
        StderrTail(stderr.map(|mut stderr| {
            std::thread::spawn(move || {
                let mut tail = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    match stderr.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            tail.extend_from_slice(&buf[..n]);
                            if tail.len() > 2 * STDERR_TAIL {
                                tail.drain(..tail.len() - STDERR_TAIL);
                            }
                        }
                    }
                }
                tail
            })
        }))
    }

    /// What the tool printed, on one line, with the password scrubbed.
    pub(crate) fn finish(mut self, conn: Option<&PgConn>) -> String {
        let bytes = self
            .0
            .take()
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default();
        let start = bytes.len().saturating_sub(STDERR_TAIL);
        let text = crate::error::one_line(&String::from_utf8_lossy(&bytes[start..]));
        match conn {
            Some(conn) => conn.scrub(&text),
            None => text,
        }
    }
}

/// Kill a child that is no longer wanted and reap it.
pub(crate) fn abandon(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Which side of a copy failed.
pub(crate) enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copy `reader` into `writer`, returning the bytes copied; the first `head.len()` bytes are
/// also kept in `head` (to check a format's magic without buffering the stream).
pub(crate) fn copy(
    reader: &mut dyn Read,
    writer: &mut dyn Write,
    head: &mut Vec<u8>,
    head_len: usize,
) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        if head.len() < head_len {
            let take = (head_len - head.len()).min(n);
            head.extend_from_slice(&buf[..take]);
        }
        writer.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
    writer.flush().map_err(CopyError::Write)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_major_versions() {
        assert_eq!(Major::parse("15.18"), Some(Major(15, 0)));
        assert_eq!(Major::parse("17beta1"), Some(Major(17, 0)));
        assert_eq!(Major::parse("9.6.24"), Some(Major(9, 6)));
        assert_eq!(Major::parse("x"), None);
        assert_eq!(Major::from_version_num(150_004), Major(15, 0));
        assert_eq!(Major::from_version_num(90_624), Major(9, 6));
        assert!(Major(14, 0) < Major(15, 0));
        assert!(Major(9, 6) < Major(10, 0));
        assert_eq!(Major(9, 6).to_string(), "9.6");
    }

    #[test]
    fn copies_and_keeps_the_head() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        let mut head = Vec::new();
        let n = copy(&mut &data[..], &mut out, &mut head, 5).ok().unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(out, data);
        assert_eq!(head, &data[..5]);
    }
}
