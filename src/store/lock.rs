//! One writer per database: the agent holds an exclusive lock on `<db>.lock` (holding its PID)
//! for as long as it runs. A second `wanwatch run` on the same file is refused instead of
//! recording every outage twice; `status` asks the same lock whether an agent is running, which
//! stays true after a crash (the kernel drops the lock with the process) where a heartbeat would
//! need minutes to go stale.
//!
//! The lock is `flock(2)` on a side file, not on the database: SQLite's own POSIX locks on the
//! database file are untouched, and readers (`status`, `export`, `report`) never take it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "database {db} is already being written by another wanwatch (PID {pid}); \
         stop it first (systemctl stop wanwatch), or pass another --db"
    )]
    Held { db: PathBuf, pid: String },
    // `err`, not `source`: the message says it once (anyhow's `{:#}` would repeat a source).
    #[error("cannot open database {db}: cannot create its lock file {path}: {err}")]
    Io { db: PathBuf, path: PathBuf, err: std::io::Error },
}

/// Held while the agent runs; released on drop (or by the kernel if the process dies).
#[derive(Debug)]
pub struct AgentLock {
    _file: File,
}

pub fn lock_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

impl AgentLock {
    /// Take the lock for `db`, or say who holds it. Retries for a moment: `status` takes a
    /// shared lock for an instant when it looks.
    pub fn acquire(db: &Path) -> Result<AgentLock, LockError> {
        let path = lock_path(db);
        let io = |err| LockError::Io { db: db.to_path_buf(), path: path.clone(), err };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        for attempt in 0.. {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if attempt < 10 => std::thread::sleep(Duration::from_millis(100)),
                Err(TryLockError::WouldBlock) => {
                    let mut pid = String::new();
                    let _ = file.read_to_string(&mut pid);
                    let pid = pid.trim().to_string();
                    return Err(LockError::Held {
                        db: db.to_path_buf(),
                        pid: if pid.is_empty() { "unknown".into() } else { pid },
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(AgentLock { _file: file })
    }
}

/// The PID of the agent writing `db`, if one is running. Opens the lock file read-only, so it
/// works on a read-only file system too.
pub fn running_agent(db: &Path) -> Option<String> {
    let mut file = File::open(lock_path(db)).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            Some(pid.trim().to_string())
        }
        Err(TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        assert_eq!(running_agent(&db), None);
        let first = AgentLock::acquire(&db).unwrap();
        assert_eq!(running_agent(&db), Some(std::process::id().to_string()));
        let err = AgentLock::acquire(&db).unwrap_err().to_string();
        assert!(err.contains(&format!("PID {}", std::process::id())), "{err}");
        drop(first);
        assert_eq!(running_agent(&db), None);
        let _again = AgentLock::acquire(&db).unwrap();
    }
}
