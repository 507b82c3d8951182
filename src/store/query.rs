//! Read-side queries for `wanwatch status` (and the tests).

use rusqlite::OptionalExtension;

use super::{Store, StoreError};
use crate::sample::{LinkState, OutageKind, WallMs};
use crate::series::Series;
use crate::stats::quantile_sorted as quantile;

#[derive(Debug, Clone, PartialEq)]
pub struct TargetSummary {
    pub name: String,
    pub addr: String,
    pub role: String,
    pub sent: u64,
    pub lost: u64,
    pub median_us: Option<f64>,
    pub p95_us: Option<f64>,
}

impl TargetSummary {
    pub fn loss(&self) -> Option<f64> {
        (self.sent > 0).then(|| self.lost as f64 / self.sent as f64)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    pub id: i64,
    pub kind: OutageKind,
    pub start: WallMs,
    pub end: Option<WallMs>,
    pub duration_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentStatus {
    pub state: LinkState,
    pub since: Option<WallMs>,
    /// The newest sample's time: when the agent last wrote.
    pub heartbeat: Option<WallMs>,
    /// The PID of the agent writing this database now (it holds the lock), if any.
    pub running: Option<String>,
    /// When the last run ended: its `agent_stop` event, if it stopped cleanly.
    pub clean_stop: Option<WallMs>,
}

impl Store {
    fn status_value(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM status WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql("read status", e))
    }

    /// The link's state as the agent last wrote it, and since when.
    pub fn link_state(&self) -> Result<(LinkState, Option<WallMs>), StoreError> {
        let state = self.status_value("state")?.and_then(|s| LinkState::parse(&s)).unwrap_or(LinkState::Unknown);
        let since = self.status_value("state_since")?.and_then(|s| s.parse().ok());
        Ok((state, since))
    }

    pub fn agent_status(&self) -> Result<AgentStatus, StoreError> {
        let (state, since) = self.link_state()?;
        // The newest sample is the heartbeat (no separate row rewritten at every flush).
        let heartbeat = self.last_sample_ts()?;
        let running = super::lock::running_agent(&self.path);
        // A stop recorded after the newest start: the last run ended cleanly.
        let clean_stop = self
            .conn
            .query_row(
                "SELECT max(ts) FROM events WHERE kind = 'agent_stop'
                   AND ts >= coalesce((SELECT max(ts) FROM events WHERE kind = 'agent_start'), 0)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.sql("read the last stop", e))?;
        Ok(AgentStatus { state, since, heartbeat, running, clean_stop })
    }

    /// Per-target counts and RTT quantiles over `[since, until)` from the raw samples.
    pub fn summaries(&self, since: WallMs, until: WallMs) -> Result<Vec<TargetSummary>, StoreError> {
        let mut targets = self
            .conn
            .prepare("SELECT id, name, addr, role FROM targets ORDER BY role = 'anchor', id")
            .map_err(|e| self.sql("read targets", e))?;
        let targets: Vec<(i64, String, String, String)> = targets
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sql("read targets", e))?;
        let mut out = Vec::new();
        for (id, name, addr, role) in targets {
            let (mut sent, mut ok) = (0u64, Vec::new());
            super::pings::for_each(&self.conn, since, until, Some(id), |_, pings| {
                sent += pings.len() as u64;
                ok.extend(pings.iter().filter_map(|p| p.rtt_us));
                Ok(())
            })
            .map_err(|e| self.sql("summarise samples", e))?;
            if sent == 0 {
                continue;
            }
            ok.sort_unstable();
            out.push(TargetSummary {
                name,
                addr,
                role,
                sent,
                lost: sent - ok.len() as u64,
                median_us: quantile(&ok, 0.5),
                p95_us: quantile(&ok, 0.95),
            });
        }
        Ok(out)
    }

    /// The newest sample time, if any.
    pub fn last_sample_ts(&self) -> Result<Option<WallMs>, StoreError> {
        super::pings::last_ts(&self.conn).map_err(|e| self.sql("read samples", e))
    }

    /// The last moment the previous run is known to have been measuring: its newest sample or
    /// its clean stop, whichever is later.
    pub fn last_write_ts(&self) -> Result<Option<WallMs>, StoreError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT max(coalesce({}, 0),
                            coalesce((SELECT max(ts) FROM events WHERE kind = 'agent_stop'), 0))",
                    super::pings::LAST_TS_SQL
                ),
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|t| (t > 0).then_some(t))
            .map_err(|e| self.sql("read the last write", e))
    }

    /// Blind spots overlapping `[since, until)`, clipped to it, oldest first.
    pub fn blind_spots(&self, since: WallMs, until: WallMs) -> Result<Vec<BlindSpot>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT max(start_ts, ?1), min(end_ts, ?2), kind, detail FROM blind
                 WHERE start_ts < ?2 AND end_ts > ?1 ORDER BY start_ts",
            )
            .map_err(|e| self.sql("read blind spots", e))?;
        stmt.query_map([since, until], |r| {
            Ok(BlindSpot { start: r.get(0)?, end: r.get(1)?, kind: r.get(2)?, detail: r.get(3)? })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.sql("read blind spots", e))
    }
}

/// A stretch of time nothing was measured (see `sample::Blind`).
#[derive(Debug, Clone, PartialEq)]
pub struct BlindSpot {
    pub start: WallMs,
    pub end: WallMs,
    pub kind: String,
    pub detail: String,
}

impl BlindSpot {
    pub fn ms(&self) -> i64 {
        (self.end - self.start).max(0)
    }
}

/// The newest value of one context series.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub probe: String,
    pub subject: String,
    pub name: String,
    pub unit: String,
    pub ts: WallMs,
    pub value: Option<f64>,
    pub note: Option<String>,
}

impl Latest {
    /// Is this a reading of `series`?
    pub fn is(&self, series: Series) -> bool {
        self.probe == series.probe && self.name == series.name
    }
}

impl Store {
    /// The newest value of every context series measured since `since`.
    pub fn latest_metrics(&self, since: WallMs) -> Result<Vec<Latest>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                // CROSS JOIN keeps series as the outer loop: one index seek per series instead
                // of a scan of every metric since `since`.
                "SELECT s.probe, s.subject, s.name, s.unit, m.ts, m.value, m.note
                 FROM series s CROSS JOIN metrics m
                 WHERE m.series = s.id AND m.ts = (SELECT max(ts) FROM metrics WHERE series = s.id AND ts >= ?1)
                 ORDER BY s.probe, s.subject, s.id",
            )
            .map_err(|e| self.sql("read metrics", e))?;
        stmt.query_map([since], |r| {
            Ok(Latest {
                probe: r.get(0)?,
                subject: r.get(1)?,
                name: r.get(2)?,
                unit: r.get(3)?,
                ts: r.get(4)?,
                value: r.get(5)?,
                note: r.get(6)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.sql("read metrics", e))
    }

    /// Router log lines with a class (events worth showing), newest first.
    pub fn recent_router_events(&self, limit: usize) -> Result<Vec<(WallMs, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT ts, class, message FROM syslog WHERE class IS NOT NULL ORDER BY ts DESC LIMIT ?1")
            .map_err(|e| self.sql("read syslog", e))?;
        stmt.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sql("read syslog", e))
    }
}

/// One target-minute from the rollups, for the detectors' warm start.
#[derive(Debug, Clone)]
pub struct MinuteRow {
    pub ts: WallMs,
    pub addr: String,
    pub sent: u32,
    pub lost: u32,
    pub median_us: Option<i64>,
    pub p95_us: Option<i64>,
}

impl Store {
    /// Every target's minutes from `since` on, oldest first.
    pub fn minutes_since(&self, since: WallMs) -> Result<Vec<MinuteRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT m.ts, t.addr, m.sent, m.lost, m.median_us, m.p95_us
                 FROM minutes m JOIN targets t ON t.id = m.target WHERE m.ts >= ?1 ORDER BY m.ts",
            )
            .map_err(|e| self.sql("read minutes", e))?;
        stmt.query_map([since], |r| {
            Ok(MinuteRow {
                ts: r.get(0)?,
                addr: r.get(1)?,
                sent: r.get(2)?,
                lost: r.get(3)?,
                median_us: r.get(4)?,
                p95_us: r.get(5)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.sql("read minutes", e))
    }
}
