//! The alert receivers of the run (`scripts/test-receivers.py`): SMTP servers and an HTTP
//! receiver that write what they get into a directory.

use std::path::PathBuf;

use crate::service;

/// The SMTP servers and the HTTP receiver `scripts/test.sh` started.
#[derive(Debug, Clone)]
pub struct Receivers {
    /// `host:port` of the plain SMTP server.
    pub smtp: String,
    /// `host:port` of the server that requires STARTTLS and a login.
    pub smtp_starttls: String,
    /// `host:port` of the TLS server (TLS from the first byte), with a login.
    pub smtp_tls: String,
    /// The CA that signed both servers' certificate.
    pub ca: PathBuf,
    /// The login both TLS servers want.
    pub user: String,
    /// Its password (give it to strongbox through `${VAR}`, never in a file).
    pub password: String,
    /// `http://127.0.0.1:port`: POSTs land in [`Receivers::posts`].
    pub webhook: String,
    received: PathBuf,
}

impl Receivers {
    /// The receivers, or `None` (a skip; a failure under CI=true).
    pub fn get() -> Option<Receivers> {
        Some(Receivers {
            smtp: service("STRONGBOX_TEST_SMTP")?,
            smtp_starttls: service("STRONGBOX_TEST_SMTP_STARTTLS")?,
            smtp_tls: service("STRONGBOX_TEST_SMTP_TLS")?,
            ca: service("STRONGBOX_TEST_SMTP_CA")?.into(),
            user: service("STRONGBOX_TEST_SMTP_USER")?,
            password: service("STRONGBOX_TEST_SMTP_PASSWORD")?,
            webhook: service("STRONGBOX_TEST_WEBHOOK")?,
            received: service("STRONGBOX_TEST_RECEIVED")?.into(),
        })
    }

    /// The mails `address` received, oldest first, as sent (headers and body).
    pub fn mails(&self, address: &str) -> Vec<String> {
        read_all(self.received.join("mail").join(address))
    }

    /// The bodies POSTed to `path` (a path of the webhook URL, `/a/b` read as `a_b`),
    /// oldest first.
    pub fn posts(&self, path: &str) -> Vec<String> {
        let dir = path
            .split('/')
            .filter(|p| !p.is_empty())
            .map(|p| p.replace('.', "_"))
            .collect::<Vec<_>>()
            .join("_");
        read_all(self.received.join("http").join(dir))
    }
}

fn read_all(dir: PathBuf) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e != "tmp"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("read a received message"))
        .collect()
}
