//! Typed reads for everything outside the store: the report, the dashboard and /metrics, the
//! notifier, the OLED snapshot. Only this folder writes SQL; callers get rows with enums
//! (`OutageKind`, `EventKind`) and series named by their `series::Series` key.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};

use super::query::Outage;
use super::{Store, StoreError};
use crate::sample::{EventKind, OutageKind, WallMs};
use crate::series::Series;

/// One row of the `events` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: i64,
    pub ts: WallMs,
    pub kind: EventKind,
    pub detail: String,
}

/// One target's rollup for one minute.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetMinute {
    pub ts: WallMs,
    pub target: String,
    pub role: String,
    pub sent: u32,
    pub lost: u32,
    pub median_us: Option<i64>,
    pub p95_us: Option<i64>,
    pub jitter_us: Option<i64>,
}

/// The anchors together in one minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnchorMinute {
    pub median_us: Option<f64>,
    pub sent: i64,
    pub lost: i64,
}

/// A reading of one series: value and note.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub ts: WallMs,
    pub value: Option<f64>,
    pub note: Option<String>,
}

/// A classified router log line: (ts, class, message).
pub type RouterLine = (WallMs, String, String);

/// Outages of one kind: how many, and their time (ongoing ones up to now).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutageTotal {
    pub kind: OutageKind,
    pub count: i64,
    pub ms: i64,
}

fn outage(r: &rusqlite::Row) -> rusqlite::Result<Outage> {
    Ok(Outage {
        id: r.get(0)?,
        kind: OutageKind::parse(&r.get::<_, String>(1)?),
        start: r.get(2)?,
        end: r.get(3)?,
        duration_ms: r.get(4)?,
    })
}

fn event(r: &rusqlite::Row) -> rusqlite::Result<Event> {
    Ok(Event { id: r.get(0)?, ts: r.get(1)?, kind: EventKind::parse(&r.get::<_, String>(2)?), detail: r.get(3)? })
}

const OUTAGE_COLS: &str = "id, kind, start_ts, end_ts, duration_ms";
const EVENT_COLS: &str = "id, ts, kind, detail";

impl Store {
    /// Run `sql` with `args` and collect its rows; `what` names the read in errors.
    pub(super) fn rows<T, P: rusqlite::Params>(
        &self,
        what: &'static str,
        sql: &str,
        args: P,
        row: impl FnMut(&rusqlite::Row) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.sql(what, e))?;
        stmt.query_map(args, row).and_then(|rows| rows.collect()).map_err(|e| self.sql(what, e))
    }

    /// Any read as text, NULL as "": column names and rows, for pages that show a table as it
    /// is stored (the incident page). `what` names the read in errors.
    pub fn text_rows<P: rusqlite::Params>(
        &self,
        what: &'static str,
        sql: &str,
        args: P,
    ) -> Result<(Vec<String>, Vec<Vec<String>>), StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.sql(what, e))?;
        let names: Vec<String> = stmt.column_names().map(str::to_string).collect();
        let n = names.len();
        let rows = stmt
            .query_map(args, |r| {
                (0..n).map(|i| Ok(super::export::cell_text(r.get_ref(i)?))).collect::<rusqlite::Result<Vec<String>>>()
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sql(what, e))?;
        Ok((names, rows))
    }

    /// Raw pings in `[since, until)` as (target id, ping), by time, then target, then seq.
    pub fn pings(&self, since: WallMs, until: WallMs) -> Result<Vec<(i64, super::pings::Ping)>, StoreError> {
        super::pings::read(&self.conn, since, until, None).map_err(|e| self.sql("read samples", e))
    }

    /// How many raw pings are stored.
    pub fn ping_count(&self) -> Result<i64, StoreError> {
        super::pings::count(&self.conn).map_err(|e| self.sql("count samples", e))
    }

    /// A target's id by its address.
    pub fn target_id(&self, addr: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row("SELECT id FROM targets WHERE addr = ?1", [addr], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql("read targets", e))
    }

    /// The anchors' names, in the order they were configured.
    pub fn anchor_names(&self) -> Result<Vec<String>, StoreError> {
        self.rows("read targets", "SELECT name FROM targets WHERE role = 'anchor' ORDER BY id", [], |r| r.get(0))
    }

    /// Every target's minutes in `[since, until)` by time (only the anchors' with `anchors_only`).
    pub fn target_minutes(
        &self,
        since: WallMs,
        until: WallMs,
        anchors_only: bool,
    ) -> Result<Vec<TargetMinute>, StoreError> {
        let sql = format!(
            "SELECT m.ts, t.name, t.role, m.sent, m.lost, m.median_us, m.p95_us, m.jitter_us
             FROM minutes m JOIN targets t ON t.id = m.target
             WHERE m.ts >= ?1 AND m.ts < ?2 {} ORDER BY m.ts",
            if anchors_only { "AND t.role = 'anchor'" } else { "" }
        );
        self.rows("read minutes", &sql, [since, until], target_minute)
    }

    /// Each target's newest complete minute before `now` (within ten minutes).
    pub fn newest_minutes(&self, now: WallMs) -> Result<Vec<TargetMinute>, StoreError> {
        let minute_start = now - now.rem_euclid(crate::calendar::MINUTE_MS);
        self.rows(
            "read the newest minutes",
            // CROSS JOIN: targets outside, so each target's minute is a primary-key lookup.
            "SELECT m.ts, t.name, t.role, m.sent, m.lost, m.median_us, m.p95_us, m.jitter_us
             FROM targets t CROSS JOIN minutes m
             WHERE m.target = t.id
             AND m.ts = (SELECT max(ts) FROM minutes WHERE target = t.id AND ts < ?1 AND ts >= ?1 - 600000)",
            [minute_start],
            target_minute,
        )
    }

    /// The anchors together in the newest complete minute before `now` (within ten minutes):
    /// the mean of their medians, and their pings sent and lost.
    pub fn newest_anchor_minute(&self, now: WallMs) -> Result<AnchorMinute, StoreError> {
        self.conn
            .query_row(
                "SELECT avg(m.median_us), coalesce(sum(m.sent), 0), coalesce(sum(m.lost), 0)
                 FROM minutes m JOIN targets t ON t.id = m.target
                 WHERE t.role = 'anchor' AND m.ts = (SELECT max(ts) FROM minutes WHERE ts < ?1 AND ts >= ?1 - 600000)",
                [now - now.rem_euclid(crate::calendar::MINUTE_MS)],
                |r| Ok(AnchorMinute { median_us: r.get(0)?, sent: r.get(1)?, lost: r.get(2)? }),
            )
            .map_err(|e| self.sql("read the anchors' newest minute", e))
    }

    /// The anchors' minutes since `first`: (minute, mean of their medians in µs).
    pub fn anchor_medians_since(&self, first: WallMs) -> Result<Vec<(WallMs, Option<f64>)>, StoreError> {
        self.rows(
            "read the anchors' minutes",
            "SELECT m.ts, avg(m.median_us) FROM minutes m JOIN targets t ON t.id = m.target
             WHERE t.role = 'anchor' AND m.ts >= ?1 GROUP BY m.ts",
            [first],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// The anchors' raw round trips in `[since, until]` (None = lost).
    pub fn anchor_rtts(&self, since: WallMs, until: WallMs) -> Result<Vec<Option<u32>>, StoreError> {
        let anchors: Vec<i64> =
            self.rows("read the targets", "SELECT id FROM targets WHERE role = 'anchor'", [], |r| r.get(0))?;
        let mut out = Vec::new();
        super::pings::for_each(&self.conn, since, until.saturating_add(1), None, |target, pings| {
            if anchors.contains(&target) {
                out.extend(pings.iter().map(|p| p.rtt_us));
            }
            Ok(())
        })
        .map_err(|e| self.sql("read the anchors' samples", e))?;
        Ok(out)
    }

    /// Is there any minute in `[since, until)`?
    pub fn any_minutes(&self, since: WallMs, until: WallMs) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM minutes WHERE ts >= ?1 AND ts < ?2 LIMIT 1", [since, until], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| self.sql("read minutes", e))
    }

    /// Outages that overlap `[since, until)`, by start.
    pub fn outages_between(&self, since: WallMs, until: WallMs) -> Result<Vec<Outage>, StoreError> {
        let sql = format!(
            "SELECT {OUTAGE_COLS} FROM outages WHERE start_ts < ?2 AND coalesce(end_ts, ?2) > ?1 ORDER BY start_ts"
        );
        self.rows("read outages", &sql, [since, until], outage)
    }

    /// The newest `limit` outages, newest first.
    pub fn recent_outages(&self, limit: usize) -> Result<Vec<Outage>, StoreError> {
        let sql = format!("SELECT {OUTAGE_COLS} FROM outages ORDER BY start_ts DESC LIMIT ?1");
        self.rows("read outages", &sql, [limit as i64], outage)
    }

    /// Outages recorded after row `id`, in order.
    pub fn outages_after(&self, id: i64) -> Result<Vec<Outage>, StoreError> {
        self.rows(
            "read new outages",
            &format!("SELECT {OUTAGE_COLS} FROM outages WHERE id > ?1 ORDER BY id"),
            [id],
            outage,
        )
    }

    /// One outage by row id (None once retention deleted it).
    pub fn outage(&self, id: i64) -> Result<Option<Outage>, StoreError> {
        Ok(self
            .rows("read an outage", &format!("SELECT {OUTAGE_COLS} FROM outages WHERE id = ?1"), [id], outage)?
            .pop())
    }

    /// Per kind, how many outages and how long, ongoing ones counted up to `now`.
    pub fn outage_totals(&self, now: WallMs) -> Result<Vec<OutageTotal>, StoreError> {
        self.rows(
            "read outage totals",
            "SELECT kind, count(*), sum(coalesce(end_ts, ?1) - start_ts) FROM outages GROUP BY kind",
            [now],
            |r| {
                let ms: Option<i64> = r.get(2)?;
                Ok(OutageTotal {
                    kind: OutageKind::parse(&r.get::<_, String>(0)?),
                    count: r.get(1)?,
                    ms: ms.unwrap_or(0).max(0),
                })
            },
        )
    }

    /// Outages of `kind` that started at or after `since`.
    pub fn count_outages_since(&self, kind: OutageKind, since: WallMs) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM outages WHERE kind = ?1 AND start_ts >= ?2",
                params![kind.as_str(), since],
                |r| r.get(0),
            )
            .map_err(|e| self.sql("count outages", e))
    }

    /// The newest row ids of `events` and `outages` (0 when empty): where a reader starts.
    pub fn newest_ids(&self) -> Result<(i64, i64), StoreError> {
        self.conn
            .query_row(
                "SELECT (SELECT coalesce(max(id), 0) FROM events), (SELECT coalesce(max(id), 0) FROM outages)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.sql("read the newest ids", e))
    }

    /// Events in `[since, until)`, by time.
    pub fn events_between(&self, since: WallMs, until: WallMs) -> Result<Vec<Event>, StoreError> {
        let sql = format!("SELECT {EVENT_COLS} FROM events WHERE ts >= ?1 AND ts < ?2 ORDER BY ts");
        self.rows("read events", &sql, [since, until], event)
    }

    /// Events recorded after row `id`, in order.
    pub fn events_after(&self, id: i64) -> Result<Vec<Event>, StoreError> {
        self.rows("read new events", &format!("SELECT {EVENT_COLS} FROM events WHERE id > ?1 ORDER BY id"), [id], event)
    }

    /// The newest `limit` events, newest first.
    pub fn recent_events(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        let sql = format!("SELECT {EVENT_COLS} FROM events ORDER BY ts DESC LIMIT ?1");
        self.rows("read recent events", &sql, [limit as i64], event)
    }

    /// The newest event of one of `kinds` at or after `since`.
    pub fn newest_event_of(&self, kinds: &[EventKind], since: WallMs) -> Result<Option<Event>, StoreError> {
        let names: Vec<String> = kinds.iter().map(|k| format!("'{}'", k.as_str())).collect();
        let sql = format!(
            "SELECT {EVENT_COLS} FROM events WHERE kind IN ({}) AND ts >= ?1 ORDER BY ts DESC LIMIT 1",
            names.join(", ")
        );
        Ok(self.rows("read the newest notice", &sql, [since], event)?.pop())
    }

    /// How many events of `kind` the database holds.
    pub fn count_events(&self, kind: EventKind) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM events WHERE kind = ?1", [kind.as_str()], |r| r.get(0))
            .map_err(|e| self.sql("count events", e))
    }

    /// Classified router log lines in `[since, until)`.
    pub fn router_lines_between(&self, since: WallMs, until: WallMs) -> Result<Vec<RouterLine>, StoreError> {
        self.rows(
            "read router lines",
            "SELECT ts, class, message FROM syslog WHERE class IS NOT NULL AND ts >= ?1 AND ts < ?2 ORDER BY ts",
            [since, until],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    }

    /// Readings of `series` in `[since, until)` over all its subjects, by time, one per time: the
    /// gateway's 5G radio wins over 4G when both report, since a 5G home gateway's traffic
    /// rides the 5G carrier. Rows with neither value nor note are left out.
    pub fn readings(&self, series: Series, since: WallMs, until: WallMs) -> Result<Vec<Reading>, StoreError> {
        let rows: Vec<Reading> = self.rows(
            "read metrics",
            "SELECT m.ts, m.value, m.note FROM metrics m JOIN series s ON s.id = m.series
             WHERE s.probe = ?1 AND s.name = ?2 AND m.ts >= ?3 AND m.ts < ?4
             ORDER BY m.ts, s.subject = '5g'",
            params![series.probe, series.name, since, until],
            |r| Ok(Reading { ts: r.get(0)?, value: r.get(1)?, note: r.get(2)? }),
        )?;
        // Same timestamp from two radios: the later row (5G, by the ORDER BY) replaces the earlier.
        let mut by_ts: BTreeMap<WallMs, Reading> = BTreeMap::new();
        for r in rows.into_iter().filter(|r| r.value.is_some() || r.note.is_some()) {
            by_ts.insert(r.ts, r);
        }
        Ok(by_ts.into_values().collect())
    }

    /// The sum of `series` since `since` (e.g. the bytes the speed tests used this month).
    pub fn sum_since(&self, series: Series, since: WallMs) -> Result<f64, StoreError> {
        self.conn
            .query_row(
                "SELECT coalesce(sum(m.value), 0) FROM metrics m JOIN series s ON s.id = m.series
                 WHERE s.probe = ?1 AND s.name = ?2 AND m.ts >= ?3",
                params![series.probe, series.name, since],
                |r| r.get(0),
            )
            .map_err(|e| self.sql("sum a series", e))
    }

    /// SQLite's quick check: "ok" or what is wrong.
    pub fn quick_check(&self) -> Result<String, StoreError> {
        self.conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| self.sql("quick check", e))
    }
}

fn target_minute(r: &rusqlite::Row) -> rusqlite::Result<TargetMinute> {
    Ok(TargetMinute {
        ts: r.get(0)?,
        target: r.get(1)?,
        role: r.get(2)?,
        sent: r.get(3)?,
        lost: r.get(4)?,
        median_us: r.get(5)?,
        p95_us: r.get(6)?,
        jitter_us: r.get(7)?,
    })
}
