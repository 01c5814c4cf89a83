//! A server's slot: a small number no other live server on this host holds, claimed by an
//! exclusive lock on a file for as long as the server lives (the kernel lets go of it when
//! the server dies, however it dies). It gives each server its own range of instance uids
//! and its own parent cgroup, and tells which parent cgroups belong to dead servers.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// How many servers may run on one host at once (uids stay below 2^31 with 100,000 each).
pub(crate) const SLOTS: u32 = 1000;

/// A claimed slot; dropping it lets go of the claim.
#[derive(Debug)]
pub struct Slot {
    pub index: u32,
    _lock: Flock<File>,
}

/// Where the lock files are: one directory shared by every server of this user on the
/// host (root's in `/run`, which holds no other user's files).
pub(crate) fn lock_dir() -> PathBuf {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        PathBuf::from("/run/ignis")
    } else {
        std::env::temp_dir().join(format!("ignis-{uid}"))
    }
}

fn lock_file(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("slot-{index}.lock"))
}

/// Locks slot `index` in `dir` if no live server holds it.
pub(crate) fn try_lock(dir: &Path, index: u32) -> Result<Option<Slot>, String> {
    let path = lock_file(dir, index);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(Slot { index, _lock: lock })),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// Claims the lowest slot that no live server holds.
pub(crate) fn claim(dir: &Path) -> Result<Slot, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // Nobody else's business which servers run here; the lock files hold nothing.
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    for index in 0..SLOTS {
        if let Some(slot) = try_lock(dir, index)? {
            return Ok(slot);
        }
    }
    Err(format!(
        "{SLOTS} Ignis servers already run on this host (every lock in {} is held)",
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_claims_never_get_the_same_slot_and_a_released_slot_is_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = claim(dir.path()).expect("first");
        let b = claim(dir.path()).expect("second");
        assert_eq!((a.index, b.index), (0, 1));
        assert!(try_lock(dir.path(), 0).expect("try").is_none(), "slot 0 is held");
        drop(a);
        let c = claim(dir.path()).expect("third");
        assert_eq!(c.index, 0, "a dead server's slot is free again");
    }
}
