//! Keeping the database bounded: raw samples expire first, rollups much later, and a hard size
//! cap deletes the oldest data (raw first) when the card would otherwise fill.

use rusqlite::params;

use super::{Store, StoreError};
use crate::config::StoreConfig;
use crate::sample::WallMs;

const DAY_MS: i64 = 24 * 3600 * 1000;
/// Under the cap, aim this far below it so deletion does not run every hour.
const CAP_TARGET: f64 = 0.9;
const CHUNK: i64 = 5_000;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RetentionReport {
    pub expired_samples: usize,
    pub expired_minutes: usize,
    pub capped_samples: usize,
    pub capped_minutes: usize,
}

/// The database may use at most this share of its file system, whatever `max_db_mb` says: a
/// 4 GB cap on an 8 GB card must not fill the card.
const FS_SHARE: f64 = 0.5;

/// The cap in force: the configured one, or half the database's file system if that is smaller.
pub fn effective_cap(store: &Store, configured: u64) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let dir = store.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return configured };
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and a zeroed struct for the kernel to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return configured;
    }
    let fs_bytes = st.f_blocks as u64 * st.f_frsize as u64;
    configured.min((fs_bytes as f64 * FS_SHARE) as u64)
}

pub fn apply(store: &Store, now: WallMs, cfg: &StoreConfig) -> Result<RetentionReport, StoreError> {
    let conn = &store.conn;
    let mut report = RetentionReport::default();
    let raw_cutoff = now - cfg.raw_retention_days as i64 * DAY_MS;
    let rollup_cutoff = now - cfg.rollup_retention_days as i64 * DAY_MS;
    report.expired_samples =
        conn.execute("DELETE FROM samples WHERE ts < ?1", [raw_cutoff]).map_err(|e| store.sql("expire samples", e))?;
    report.expired_minutes = conn
        .execute("DELETE FROM minutes WHERE ts < ?1", [rollup_cutoff])
        .map_err(|e| store.sql("expire rollups", e))?;

    // The cap: delete the oldest raw samples, then the oldest rollups, a chunk at a time.
    let cap = effective_cap(store, cfg.max_db_bytes);
    let target = (cap as f64 * CAP_TARGET) as u64;
    if store.used_bytes()? > cap {
        // On a full card even a DELETE needs room in the WAL: empty the WAL into the file first,
        // and again after every chunk, so the log never holds more than one chunk.
        let checkpoint = || conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        checkpoint().map_err(|e| store.sql("checkpoint", e))?;
        while store.used_bytes()? > target {
            let n = conn
                .execute(
                    "DELETE FROM samples WHERE (ts, target, seq) IN
                     (SELECT ts, target, seq FROM samples ORDER BY ts LIMIT ?1)",
                    params![CHUNK],
                )
                .map_err(|e| store.sql("cap samples", e))?;
            report.capped_samples += n;
            checkpoint().map_err(|e| store.sql("checkpoint", e))?;
            if n == 0 {
                let m = conn
                    .execute(
                        "DELETE FROM minutes WHERE (ts, target) IN
                         (SELECT ts, target FROM minutes ORDER BY ts LIMIT ?1)",
                        params![CHUNK],
                    )
                    .map_err(|e| store.sql("cap rollups", e))?;
                report.capped_minutes += m;
                if m == 0 {
                    break;
                }
            }
        }
    }
    if report != RetentionReport::default() {
        // Hand the freed pages back to the filesystem (auto_vacuum = INCREMENTAL). The pragma
        // frees one page per step, so it is stepped to the end, then checkpointed into the file.
        let vacuum = || -> rusqlite::Result<()> {
            let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
            let mut rows = stmt.query([])?;
            while rows.next()?.is_some() {}
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        };
        vacuum().map_err(|e| store.sql("incremental vacuum", e))?;
    }
    Ok(report)
}
