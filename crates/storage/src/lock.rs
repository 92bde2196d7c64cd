use chrono::{DateTime, Utc};
use object_store::PutMode;
use serde::{Deserialize, Serialize};

use crate::{layout, Error, Repository};

/// The content of `locks/<set>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// The locked set.
    pub set: String,
    /// What the holder is doing (`backup`, `prune`, …).
    pub operation: String,
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// When the lock was taken.
    pub time: DateTime<Utc>,
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    repo: Repository,
    key: String,
    info: LockInfo,
}

impl LockGuard {
    /// What the lock says about its holder.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Err(e) = self.repo.delete_raw(&self.key) {
            tracing::warn!(key = %self.key, error = &e as &dyn std::error::Error, "releasing lock failed");
        }
    }
}

/// This host's name, as locks and records store it.
pub fn host_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether the process `host`/`pid` still runs: `None` when it ran on another host, which
/// this one cannot tell.
pub fn holder_alive(host: &str, pid: u32) -> Option<bool> {
    (host == host_name()).then(|| process_alive(pid))
}

impl Repository {
    /// Take the lock of `set` with a conditional create. A lock left by a dead process on
    /// this host is taken over; any other holder is an [`Error::Locked`].
    pub fn lock(&self, set: &str, operation: &str) -> Result<LockGuard, Error> {
        layout::check_set_name(set)?;
        let key = layout::lock_key(set);
        let info = LockInfo {
            set: set.to_string(),
            operation: operation.to_string(),
            host: host_name(),
            pid: std::process::id(),
            time: Utc::now(),
        };
        let body = serde_json::to_vec_pretty(&info).expect("lock info serializes");
        for attempt in 0..2 {
            // Locks stay plain (host, pid and time, nothing of the data): they are readable
            // before a key is, and an operator may have to remove one by hand.
            match self.put_plain(&key, body.clone().into(), PutMode::Create) {
                Ok(()) => {
                    return Ok(LockGuard {
                        repo: self.clone(),
                        key,
                        info,
                    })
                }
                Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
            let holder = match self.lock_info(set) {
                Ok(Some(holder)) => holder,
                // Released between our create and our read: try again.
                Ok(None) => continue,
                Err(e) => return Err(e),
            };
            let stale = holder.host == info.host && !process_alive(holder.pid);
            if stale && attempt == 0 {
                tracing::warn!(set, pid = holder.pid, since = %holder.time, "taking over the lock of a process that is gone");
                self.delete_raw(&key)?;
                continue;
            }
            return Err(Error::Locked {
                holder: Box::new(holder),
                key: format!("{}/{key}", self.location()),
            });
        }
        // Two takeovers in a row: somebody else keeps taking it.
        Err(Error::Locked {
            holder: Box::new(info),
            key,
        })
    }
}

impl Repository {
    /// Remove `set`'s lock whoever holds it (`unlock --force`; the engine decides when).
    pub fn remove_lock(&self, set: &str) -> Result<(), Error> {
        self.delete_raw(&layout::lock_key(layout::check_set_name(set)?))
    }
}

impl crate::RepoReader {
    /// Read the lock of `set`, if one is held. A lock that does not parse is
    /// [`Error::Corrupt`]: it blocks the set as any lock does, and only `unlock --force`
    /// removes it.
    pub fn lock_info(&self, set: &str) -> Result<Option<LockInfo>, Error> {
        let key = layout::lock_key(layout::check_set_name(set)?);
        match self.stored_bytes(&key) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(info) => Ok(Some(info)),
                Err(_) => Err(Error::Corrupt {
                    key,
                    reason: format!(
                        "unreadable lock; if no strongbox runs on set {set}, `strongbox unlock {set} --force` removes it"
                    ),
                }),
            },
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
