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
    /// Which process `pid` was when the lock was taken; absent from locks of older versions
    /// and of processes whose start cannot be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<ProcessStart>,
}

impl LockInfo {
    /// Whether the holder still runs: `None` when it ran on another host, which this one
    /// cannot tell. A live process with the holder's pid that is not the one that took the
    /// lock (another boot, or the pid reused) is not the holder: a lock whose pid a `sleep`
    /// had taken was held for ever, taken over by nobody and refused by `unlock --force`.
    pub fn holder_alive(&self) -> Option<bool> {
        let alive = holder_alive(&self.host, self.pid)?;
        Some(
            alive
                && self
                    .started
                    .as_ref()
                    .is_none_or(|started| ProcessStart::of(self.pid).as_ref() == Some(started)),
        )
    }
}

/// When a process started, in clock ticks after the boot it ran in: together with the boot,
/// which process a pid was, whatever the wall clock did since (a clock stepped at boot
/// moves every time computed from it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStart {
    /// `/proc/sys/kernel/random/boot_id` of the boot.
    pub boot: String,
    /// Field 22 of `/proc/<pid>/stat`.
    pub ticks: u64,
}

impl ProcessStart {
    /// Process `pid`'s, if it runs and /proc can be read.
    pub fn of(pid: u32) -> Option<Self> {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command name, which may hold spaces and parentheses: fields 3 on.
        let (_, fields) = stat.rsplit_once(')')?;
        let ticks = fields.split_whitespace().nth(19)?.parse().ok()?;
        Some(ProcessStart {
            boot: boot.trim().to_string(),
            ticks,
        })
    }
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
            started: ProcessStart::of(std::process::id()),
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
            if holder.holder_alive() == Some(false) && attempt == 0 {
                // Taken over by this process or another: the next try finds out which.
                self.remove_stale(set, &key, &holder, &body, 1)?;
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
    /// Remove the stale lock `holder` left at `key`, if this process is the one to: two
    /// processes that both read it stale would otherwise both delete "it", the slower one
    /// the lock the faster had taken by then, and both run (a prune deleted a running
    /// backup's archive so). The removal is claimed with a conditional create named for the
    /// stale lock (holding this process's [`LockInfo`]), and the lock read again under the
    /// claim; another process that holds the claim, or took over first, leaves this one
    /// nothing to do. A claim whose taker was killed is stale in turn, and removed the same
    /// way, `depth` levels down (one: a claim on such a claim is left to `unlock --force`).
    fn remove_stale(
        &self,
        set: &str,
        key: &str,
        holder: &LockInfo,
        body: &[u8],
        depth: u8,
    ) -> Result<(), Error> {
        let time_ns = holder.time.timestamp_nanos_opt().unwrap_or_default();
        let claim = layout::takeover_key(key, holder.pid, time_ns);
        let mut claimed = self.put_plain(&claim, body.to_vec().into(), PutMode::Create);
        if let (Err(Error::AlreadyExists { .. }), 1..) = (&claimed, depth) {
            // A claim that cannot be read is left to its taker, or to `unlock --force`.
            if let Ok(Some(taker)) = self.holder_at(set, &claim) {
                if taker.holder_alive() == Some(false) {
                    self.remove_stale(set, &claim, &taker, body, depth - 1)?;
                    claimed = self.put_plain(&claim, body.to_vec().into(), PutMode::Create);
                }
            }
        }
        match claimed {
            Ok(()) => {}
            Err(Error::AlreadyExists { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        let removed = match self.holder_at(set, key) {
            // Still the stale one: no other taker can remove it while the claim stands.
            Ok(Some(current)) if current == *holder => {
                tracing::warn!(%key, pid = holder.pid, since = %holder.time, "removing a lock of a process that is gone");
                self.delete_raw(key)
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = self.delete_raw(&claim) {
            tracing::warn!(key = %claim, error = &e as &dyn std::error::Error, "could not remove a lock takeover claim");
        }
        removed
    }

    /// Remove `set`'s lock whoever holds it (`unlock --force`; the engine decides when).
    pub fn remove_lock(&self, set: &str) -> Result<(), Error> {
        let key = layout::lock_key(layout::check_set_name(set)?);
        self.delete_raw(&key)?;
        // And the claims takers killed midway left, which would keep refusing the set (not
        // the lock of a set named like one: its key ends in `.json`).
        let claims = format!("{key}.takeover-");
        for claim in self.list("locks")? {
            if claim.key.starts_with(&claims) && !claim.key.ends_with(".json") {
                self.delete_raw(&claim.key)?;
            }
        }
        Ok(())
    }
}

impl crate::RepoReader {
    /// Read the lock of `set`, if one is held. A lock that does not parse is
    /// [`Error::Corrupt`]: it blocks the set as any lock does, and only `unlock --force`
    /// removes it.
    pub fn lock_info(&self, set: &str) -> Result<Option<LockInfo>, Error> {
        self.holder_at(set, &layout::lock_key(layout::check_set_name(set)?))
    }

    /// The lock of `set`, or a claim to take it over, at `key`, if there is one (see
    /// [`Self::lock_info`]).
    fn holder_at(&self, set: &str, key: &str) -> Result<Option<LockInfo>, Error> {
        match self.stored_bytes(key) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(info) => Ok(Some(info)),
                Err(_) => Err(Error::Corrupt {
                    key: key.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Location;

    /// A lock left by a process that is gone (no pid reaches u32::MAX) on this host.
    fn plant_stale(repo: &Repository) -> LockInfo {
        let stale = LockInfo {
            set: "media".to_string(),
            operation: "backup".to_string(),
            host: host_name(),
            pid: u32::MAX,
            time: Utc::now(),
            started: None,
        };
        let body = serde_json::to_vec(&stale).unwrap();
        let key = layout::lock_key("media");
        repo.put_plain(&key, body.into(), PutMode::Create).unwrap();
        stale
    }

    /// Regression: a lock whose pid a later process had taken (after a reboot, say) was held
    /// for ever: taken over by nobody, and refused by `unlock --force` as running.
    #[test]
    fn a_lock_whose_pid_another_process_took_is_taken_over() {
        let me = std::process::id();
        let mine = ProcessStart::of(me).unwrap();
        let holder = |host: &str, started: Option<ProcessStart>| LockInfo {
            set: "media".to_string(),
            operation: "backup".to_string(),
            host: host.to_string(),
            pid: me,
            time: Utc::now(),
            started,
        };
        let other = ProcessStart {
            ticks: mine.ticks + 1,
            ..mine.clone()
        };
        let rebooted = ProcessStart {
            boot: "another boot".to_string(),
            ..mine.clone()
        };
        // (host, started, alive)
        let here = host_name();
        let cases = [
            (here.as_str(), Some(mine.clone()), Some(true)),
            (here.as_str(), None, Some(true)),
            (here.as_str(), Some(other.clone()), Some(false)),
            (here.as_str(), Some(rebooted), Some(false)),
            ("another-host", Some(other.clone()), None),
        ];
        for (host, started, alive) in cases {
            let lock = holder(host, started.clone());
            assert_eq!(lock.holder_alive(), alive, "{host} {started:?}");
        }

        let repo = Repository::init(&Location::Memory).unwrap();
        let body = serde_json::to_vec(&holder(&here, Some(other))).unwrap();
        repo.put_plain(&layout::lock_key("media"), body.into(), PutMode::Create)
            .unwrap();
        let guard = repo.lock("media", "prune").unwrap();
        assert_eq!(guard.info().operation, "prune");
        assert_eq!(guard.info().started.as_ref(), Some(&mine));
    }

    /// Regression: two processes that both read a lock as stale both deleted "it", the
    /// slower one the lock the faster had taken meanwhile, and both ran.
    #[test]
    fn a_slow_taker_of_a_stale_lock_leaves_the_lock_taken_over_since() {
        let repo = Repository::init(&Location::Memory).unwrap();
        let stale = plant_stale(&repo);
        let key = layout::lock_key("media");
        let guard = repo.lock("media", "prune").unwrap();
        // The slower taker read the stale lock before the takeover and acts on it now.
        repo.remove_stale("media", &key, &stale, b"{}", 1).unwrap();
        assert_eq!(
            repo.lock_info("media").unwrap().as_ref(),
            Some(guard.info())
        );
        assert!(matches!(
            repo.lock("media", "backup"),
            Err(Error::Locked { .. })
        ));
        drop(guard);
        assert_eq!(repo.lock_info("media").unwrap(), None);
    }

    #[test]
    fn a_stale_lock_being_taken_over_by_another_process_is_left_to_it() {
        let repo = Repository::init(&Location::Memory).unwrap();
        let stale = plant_stale(&repo);
        let time_ns = stale.time.timestamp_nanos_opt().unwrap();
        let claim = layout::takeover_key(&layout::lock_key("media"), stale.pid, time_ns);
        let taker = |pid: u32| {
            let info = LockInfo {
                pid,
                started: ProcessStart::of(pid),
                ..stale.clone()
            };
            serde_json::to_vec(&info).unwrap()
        };
        // A live taker (this process) holds the claim.
        repo.put_plain(&claim, taker(std::process::id()).into(), PutMode::Create)
            .unwrap();
        let refused = repo.lock("media", "backup");
        assert!(matches!(refused, Err(Error::Locked { .. })), "{refused:?}");
        assert_eq!(repo.lock_info("media").unwrap(), Some(stale.clone()));
        // A claim whose taker is gone is removed (under a claim of its own), and the lock
        // taken over.
        repo.delete_raw(&claim).unwrap();
        repo.put_plain(&claim, taker(u32::MAX - 1).into(), PutMode::Create)
            .unwrap();
        let guard = repo.lock("media", "backup").unwrap();
        assert_eq!(guard.info().operation, "backup");
        drop(guard);
        assert!(repo.list("locks").unwrap().is_empty(), "no claim left");
        // unlock --force clears any claim, and no other set's lock.
        plant_stale(&repo);
        repo.put_plain(&claim, b"{}".to_vec().into(), PutMode::Create)
            .unwrap();
        let lookalike = repo.lock("media.json.takeover-1-2", "backup").unwrap();
        repo.remove_lock("media").unwrap();
        assert_eq!(repo.lock_info("media").unwrap(), None);
        let keys: Vec<String> = repo
            .list("locks")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["locks/media.json.takeover-1-2.json"]);
        drop(lookalike);
        let guard = repo.lock("media", "backup").unwrap();
        assert_eq!(guard.info().operation, "backup");
    }
}
