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

/// [`holder_alive`] for a process known to run at `since` (it wrote a lock or a journal
/// entry then): a process with its pid that started later is another one, the pid reused
/// (after a reboot low pids come back at once), so the holder is gone. A lock whose pid a
/// `sleep` had taken was held for ever: taken over by nobody, refused by `unlock --force`.
pub fn holder_alive_since(host: &str, pid: u32, since: DateTime<Utc>) -> Option<bool> {
    let alive = holder_alive(host, pid)?;
    // A second for the rounding of both times (boot time in seconds, start in ticks).
    Some(
        alive
            && process_started(pid)
                .is_none_or(|started| started <= since + chrono::TimeDelta::seconds(1)),
    )
}

/// When process `pid` started, from /proc (its start in clock ticks after boot, and the
/// boot time); `None` when it cannot be read.
fn process_started(pid: u32) -> Option<DateTime<Utc>> {
    // USER_HZ, the unit of /proc's times: 100 on every Linux architecture's ABI.
    const TICKS_PER_SECOND: i64 = 100;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name, which may hold spaces and parentheses: field 3 on, of which
    // the start time is field 22.
    let (_, fields) = stat.rsplit_once(')')?;
    let ticks: i64 = fields.split_whitespace().nth(19)?.parse().ok()?;
    let boot: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let millis = boot * 1000 + ticks * 1000 / TICKS_PER_SECOND;
    DateTime::from_timestamp_millis(millis)
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
            let stale = holder_alive_since(&holder.host, holder.pid, holder.time) == Some(false);
            if stale && attempt == 0 {
                // Taken over by this process or another: the next try finds out which.
                self.take_over(set, &key, &holder, &body)?;
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
    /// backup's archive so). The takeover is claimed with a conditional create named for
    /// the stale lock, and the lock read again under the claim; another process that holds
    /// the claim, or took over first, leaves this one nothing to do.
    fn take_over(&self, set: &str, key: &str, holder: &LockInfo, body: &[u8]) -> Result<(), Error> {
        let time_ns = holder.time.timestamp_nanos_opt().unwrap_or_default();
        let claim = layout::lock_takeover_key(set, holder.pid, time_ns);
        let mut claimed = self.put_plain(&claim, body.to_vec().into(), PutMode::Create);
        if let Err(Error::AlreadyExists { .. }) = claimed {
            // A taker killed between its claim and its end left the claim: takers run on the
            // stale lock's host, this one, so whether it is gone can be told.
            let taker = self
                .stored_bytes(&claim)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<LockInfo>(&bytes).ok());
            if taker.is_some_and(|t| holder_alive_since(&t.host, t.pid, t.time) == Some(false)) {
                tracing::warn!(key = %claim, "removing the lock takeover claim of a process that is gone");
                self.delete_raw(&claim)?;
                claimed = self.put_plain(&claim, body.to_vec().into(), PutMode::Create);
            }
        }
        match claimed {
            Ok(()) => {}
            Err(Error::AlreadyExists { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        let taken = match self.lock_info(set) {
            // Still the stale lock: no other taker can remove it while the claim stands.
            Ok(Some(current)) if current == *holder => {
                tracing::warn!(set, pid = holder.pid, since = %holder.time, "taking over the lock of a process that is gone");
                self.delete_raw(key)
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = self.delete_raw(&claim) {
            tracing::warn!(key = %claim, error = &e as &dyn std::error::Error, "could not remove a lock takeover claim");
        }
        taken
    }

    /// Remove `set`'s lock whoever holds it (`unlock --force`; the engine decides when).
    pub fn remove_lock(&self, set: &str) -> Result<(), Error> {
        let key = layout::lock_key(layout::check_set_name(set)?);
        self.delete_raw(&key)?;
        // And the claim a taker killed midway left, which would keep refusing the set.
        let claims = format!("{key}.takeover-");
        for claim in self.list("locks")? {
            if claim.key.starts_with(&claims) {
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
        };
        let body = serde_json::to_vec(&stale).unwrap();
        let key = layout::lock_key("media");
        repo.put_plain(&key, body.into(), PutMode::Create).unwrap();
        stale
    }

    /// Regression: a lock whose pid a later process had taken (after a reboot, say) was held
    /// for ever: taken over by nobody, and refused by `unlock --force` as running.
    #[test]
    fn a_lock_whose_pid_a_later_process_took_is_taken_over() {
        let repo = Repository::init(&Location::Memory).unwrap();
        let me = std::process::id();
        let now = Utc::now();
        assert_eq!(holder_alive_since(&host_name(), me, now), Some(true));
        let before_boot = now - chrono::TimeDelta::days(365 * 30);
        assert_eq!(
            holder_alive_since(&host_name(), me, before_boot),
            Some(false)
        );
        assert_eq!(holder_alive_since("another-host", me, before_boot), None);

        let reused = LockInfo {
            set: "media".to_string(),
            operation: "backup".to_string(),
            host: host_name(),
            pid: me,
            time: before_boot,
        };
        let body = serde_json::to_vec(&reused).unwrap();
        repo.put_plain(&layout::lock_key("media"), body.into(), PutMode::Create)
            .unwrap();
        let guard = repo.lock("media", "prune").unwrap();
        assert_eq!(guard.info().operation, "prune");
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
        repo.take_over("media", &key, &stale, b"{}").unwrap();
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
        let claim = layout::lock_takeover_key("media", stale.pid, time_ns);
        repo.put_plain(&claim, b"{}".to_vec().into(), PutMode::Create)
            .unwrap();
        let refused = repo.lock("media", "backup");
        assert!(matches!(refused, Err(Error::Locked { .. })), "{refused:?}");
        assert_eq!(repo.lock_info("media").unwrap(), Some(stale.clone()));
        // A claim whose taker is gone is cleared by the next taker, which takes over.
        let gone = LockInfo {
            pid: u32::MAX - 1,
            ..stale.clone()
        };
        repo.delete_raw(&claim).unwrap();
        let body = serde_json::to_vec(&gone).unwrap();
        repo.put_plain(&claim, body.into(), PutMode::Create)
            .unwrap();
        let guard = repo.lock("media", "backup").unwrap();
        assert_eq!(guard.info().operation, "backup");
        drop(guard);
        // unlock --force clears any claim.
        plant_stale(&repo);
        repo.put_plain(&claim, b"{}".to_vec().into(), PutMode::Create)
            .unwrap();
        repo.remove_lock("media").unwrap();
        assert_eq!(repo.lock_info("media").unwrap(), None);
        let guard = repo.lock("media", "backup").unwrap();
        assert_eq!(guard.info().operation, "backup");
    }
}
