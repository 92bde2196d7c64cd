//! `unlock`: removing a set's lock whose holder is gone.

use strongbox_storage::{layout, LockInfo};

use crate::journal::{Journal, Operation, RunOutcome, RunStatus};
use crate::{Engine, Error};

impl Engine {
    /// Remove `set`'s lock when its holder cannot be running: a process on this host that is
    /// gone, or, with `force`, a holder on another host (this host cannot tell whether it
    /// still runs). A running holder on this host is refused, even with `force`: removing
    /// its lock would let a second run in beside it. The removal is journalled with the
    /// holder it named. `Ok(None)` when the set is not locked, whether or not the repository
    /// holds anything of it: a set configured but never backed up is not locked either, and
    /// only the caller knows the configured sets.
    pub fn unlock(&self, set: &str, force: bool) -> Result<Option<LockInfo>, Error> {
        layout::check_set_name(set)?;
        let refuse = |reason: String| Error::LockHeld {
            set: set.to_string(),
            reason,
        };
        let holder = match self.repo.lock_info(set) {
            Ok(Some(holder)) => holder,
            Ok(None) => return Ok(None),
            Err(strongbox_storage::Error::Corrupt { .. }) if !force => {
                return Err(refuse(
                    "its lock does not read; if no strongbox runs on this set, unlock --force removes it"
                        .to_string(),
                ))
            }
            Err(strongbox_storage::Error::Corrupt { .. }) => LockInfo {
                set: set.to_string(),
                operation: "unknown".to_string(),
                host: "unknown".to_string(),
                pid: 0,
                time: chrono::Utc::now(),
                started: None,
            },
            Err(e) => return Err(e.into()),
        };
        let held = format!(
            "{} by pid {} on host {} since {}",
            holder.operation,
            holder.pid,
            holder.host,
            holder.time.to_rfc3339()
        );
        match holder.holder_alive() {
            Some(true) => {
                return Err(refuse(format!(
                    "locked for {held}, a process that is running on this host; stop it first"
                )))
            }
            None if !force => {
                return Err(refuse(format!(
                    "locked for {held}; this host cannot tell whether it still runs: if it \
                     does not, unlock --force removes the lock"
                )))
            }
            Some(false) | None => {}
        }
        self.writer.remove_lock(set)?;
        tracing::warn!(set, %held, "lock removed");
        Journal::start(self, set, Operation::Unlock).finish_with(
            RunStatus::Ok,
            None,
            None,
            RunOutcome {
                ok: true,
                detail: Some(format!("removed the lock held for {held}")),
                ..RunOutcome::default()
            },
        );
        Ok(Some(holder))
    }
}
