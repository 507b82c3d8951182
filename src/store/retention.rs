//! Keeping the database bounded, every table of it: raw samples and router log lines expire
//! first, rollups, context metrics and events much later, and a hard size cap deletes the oldest
//! data in [`CAP_ORDER`] (what matters least to the evidence first; outages never) when the
//! card would otherwise fill. The writer checks the cap after every flush, so a flood is cut
//! within a flush or two of crossing it.

use rusqlite::params;

use super::{Store, StoreError};
use crate::calendar::DAY_MS;
use crate::config::StoreConfig;
use crate::sample::WallMs;

/// Under the cap, aim this far below it so deletion does not run every hour.
const CAP_TARGET: f64 = 0.9;
const CHUNK: i64 = 5_000;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RetentionReport {
    pub expired_samples: usize,
    pub expired_minutes: usize,
    pub expired_syslog: usize,
    pub expired_metrics: usize,
    pub expired_events: usize,
    pub expired_paths: usize,
    /// Rows the cap deleted, per stage of [`CAP_ORDER`] (stages that deleted nothing left out).
    pub capped: Vec<(&'static str, usize)>,
}

impl RetentionReport {
    pub fn capped_total(&self) -> usize {
        self.capped.iter().map(|(_, n)| n).sum()
    }

    pub fn capped(&self, stage: &str) -> usize {
        self.capped.iter().filter(|(s, _)| *s == stage).map(|(_, n)| n).sum()
    }
}

/// What the cap deletes, oldest first within each stage, a stage only once the one before it is
/// empty: router chatter, raw samples older than a day, context metrics, path probes, router
/// log lines that meant something, the last day's samples, rollups, events. Outages are never deleted.
/// (`?1` the chunk size in rows, or pings for the raw samples; `?2`, where used, the time a day
/// ago. Each statement returns what each deleted row counts for: 1, or its pings.)
pub const CAP_ORDER: [(&str, &str); 8] = [
    (
        "router log chatter",
        "DELETE FROM syslog WHERE id IN (SELECT id FROM syslog WHERE class IS NULL ORDER BY id LIMIT ?1) RETURNING 1",
    ),
    // Ping rows are keyed minute number * 2^20 + target (`pings::key`): an id range is the
    // minutes wholly before the cutoff, read from the oldest without a scan.
    (
        "samples older than a day",
        "DELETE FROM pings WHERE id IN
         (SELECT id FROM pings WHERE id < (?2 / 60000) * 1048576 ORDER BY id LIMIT max(1, ?1 / 60)) RETURNING n",
    ),
    (
        "context metrics",
        "DELETE FROM metrics WHERE (ts, series) IN (SELECT ts, series FROM metrics ORDER BY ts LIMIT ?1) RETURNING 1",
    ),
    // A path probe's hops go with it (ON DELETE CASCADE).
    ("path probes", "DELETE FROM paths WHERE id IN (SELECT id FROM paths ORDER BY id LIMIT ?1) RETURNING 1"),
    ("router log", "DELETE FROM syslog WHERE id IN (SELECT id FROM syslog ORDER BY id LIMIT ?1) RETURNING 1"),
    ("samples", "DELETE FROM pings WHERE id IN (SELECT id FROM pings ORDER BY id LIMIT max(1, ?1 / 60)) RETURNING n"),
    (
        "rollups",
        "DELETE FROM minutes WHERE (ts, target) IN (SELECT ts, target FROM minutes ORDER BY ts LIMIT ?1) RETURNING 1",
    ),
    ("events", "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?1) RETURNING 1"),
];

/// The database may use at most this share of its file system, whatever `max_db_mb` says: a
/// 4 GB cap on an 8 GB card must not fill the card.
const FS_SHARE: f64 = 0.5;

/// The cap in force: the configured one, or half the database's file system if that is smaller.
pub fn effective_cap(store: &Store, configured: u64) -> u64 {
    let folder = super::folder_of(&store.path);
    match super::fs_stats(folder) {
        Some(st) => configured.min(((st.f_blocks * st.f_frsize) as f64 * FS_SHARE) as u64),
        None => configured,
    }
}

/// Expire what is past its age, then hold the cap.
pub fn apply(store: &Store, now: WallMs, cfg: &StoreConfig) -> Result<RetentionReport, StoreError> {
    let conn = &store.conn;
    let mut report = RetentionReport::default();
    let raw_cutoff = now - cfg.raw_retention_days as i64 * DAY_MS;
    let rollup_cutoff = now - cfg.rollup_retention_days as i64 * DAY_MS;
    let expire =
        |sql: &str, cutoff: i64, what: &'static str| conn.execute(sql, [cutoff]).map_err(|e| store.sql(what, e));
    // A minute's block goes once all of it is past the cutoff.
    report.expired_samples =
        super::pings::expire(conn, raw_cutoff).map_err(|e| store.sql("expire samples", e))? as usize;
    report.expired_syslog = expire("DELETE FROM syslog WHERE ts < ?1", raw_cutoff, "expire router log")?;
    report.expired_minutes = expire("DELETE FROM minutes WHERE ts < ?1", rollup_cutoff, "expire rollups")?;
    report.expired_metrics = expire("DELETE FROM metrics WHERE ts < ?1", rollup_cutoff, "expire metrics")?;
    report.expired_events = expire("DELETE FROM events WHERE ts < ?1", rollup_cutoff, "expire events")?;
    // The hourly baselines are raw data; an incident's probe is evidence and stays as long as
    // the rollups (its hops go with it).
    report.expired_paths = conn
        .execute(
            "DELETE FROM paths WHERE (ts < ?1 AND reason = 'baseline') OR ts < ?2",
            params![raw_cutoff, rollup_cutoff],
        )
        .map_err(|e| store.sql("expire path probes", e))?;
    report.capped = hold_cap(store, now, cfg.max_db_bytes)?;
    let expired = report.expired_samples
        + report.expired_syslog
        + report.expired_minutes
        + report.expired_metrics
        + report.expired_events
        + report.expired_paths;
    if expired > 0 {
        vacuum(store)?;
    }
    Ok(report)
}

/// If the database is over its cap, delete in [`CAP_ORDER`] until it is 10% under. Cheap when
/// under the cap (two pragmas), so the writer calls it after every flush.
pub fn hold_cap(store: &Store, now: WallMs, configured: u64) -> Result<Vec<(&'static str, usize)>, StoreError> {
    let conn = &store.conn;
    let cap = effective_cap(store, configured);
    let mut capped = Vec::new();
    if store.used_bytes()? <= cap {
        return Ok(capped);
    }
    let target = (cap as f64 * CAP_TARGET) as u64;
    // On a full card even a DELETE needs room in the WAL: empty the WAL into the file first,
    // and again after every chunk, so the log never holds more than one chunk.
    let checkpoint = || conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    checkpoint().map_err(|e| store.sql("checkpoint", e))?;
    'stages: for (stage, sql) in CAP_ORDER {
        let mut deleted = 0;
        loop {
            if store.used_bytes()? <= target {
                if deleted > 0 {
                    capped.push((stage, deleted));
                }
                break 'stages;
            }

            let mut stmt = conn.prepare_cached(sql).map_err(|e| store.sql("size cap", e))?;
            let counts: rusqlite::Result<Vec<i64>> = if stmt.parameter_count() == 2 {
                stmt.query_map(params![CHUNK, now - DAY_MS], |r| r.get(0)).and_then(|rows| rows.collect())
            } else {
                stmt.query_map(params![CHUNK], |r| r.get(0)).and_then(|rows| rows.collect())
            };
            let n = counts.map_err(|e| store.sql("size cap", e))?.iter().sum::<i64>() as usize;
            checkpoint().map_err(|e| store.sql("checkpoint", e))?;
            deleted += n;
            if n == 0 {
                break;
            }
        }
        if deleted > 0 {
            capped.push((stage, deleted));
        }
    }
    if !capped.is_empty() {
        vacuum(store)?;
    }
    Ok(capped)
}

fn vacuum(store: &Store) -> Result<(), StoreError> {
    let conn = &store.conn;
    {
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
    Ok(())
}
