//! Everything the screens show, read from the database in one go (the display runs beside the
//! agent and reads the same file the writer fills).

use crate::calendar::{DAY_MS, MINUTE_MS};
use crate::sample::{LinkState, WallMs};
use crate::stats::quantile_sorted as quantile;
use crate::store::rollup::minute_of;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, PartialEq)]
pub struct Speed {
    pub down_mbps: Option<f64>,
    pub up_mbps: Option<f64>,
    pub bloat_ms: Option<f64>,
    pub at: WallMs,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub radio: String,
    pub sinr_db: Option<f64>,
    pub rsrp_dbm: Option<f64>,
    pub band: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub now: WallMs,
    pub state: LinkState,
    pub state_since: Option<WallMs>,
    /// Median anchor RTT and loss over the last five minutes.
    pub rtt_ms: Option<f64>,
    pub loss_pct: Option<f64>,
    /// End of the last outage (None: none recorded, or one is going on).
    pub last_outage_end: Option<WallMs>,
    pub outage_ongoing: bool,
    /// Per-minute median anchor RTT of the last hour, oldest first (60 entries).
    pub sparkline: Vec<Option<f64>>,
    pub speed: Option<Speed>,
    pub signal: Option<Signal>,
    /// The current anomaly or prediction: (title, explanation).
    pub notice: Option<(String, String)>,
    pub ip: Option<String>,
}

impl Snapshot {
    pub fn from_store(store: &Store, now: WallMs, ip: Option<String>) -> Result<Snapshot, StoreError> {
        let st = store.agent_status()?;
        let c = &store.conn;
        let sql = |e| store.sql("display snapshot", e);
        let mut stmt = c
            .prepare(
                "SELECT s.rtt_us FROM samples s JOIN targets t ON t.id = s.target
                 WHERE t.role = 'anchor' AND s.ts >= ?1 AND s.ts <= ?2",
            )
            .map_err(sql)?;
        let recent: Vec<Option<u32>> =
            stmt.query_map([now - 5 * MINUTE_MS, now], |r| r.get(0)).and_then(|r| r.collect()).map_err(sql)?;
        let mut ok: Vec<u32> = recent.iter().flatten().copied().collect();
        ok.sort_unstable();
        let rtt_ms = quantile(&ok, 0.5).map(|us| us / 1000.0);
        let loss_pct = (!recent.is_empty()).then(|| (recent.len() - ok.len()) as f64 / recent.len() as f64 * 100.0);

        let outage = store.recent_outages(1)?.into_iter().next();
        let outage_ongoing = outage.as_ref().is_some_and(|o| o.end.is_none());
        let last_outage_end = outage.and_then(|o| o.end);

        let first = minute_of(now) - 59 * MINUTE_MS;
        let mut stmt = c
            .prepare(
                "SELECT m.ts, avg(m.median_us) FROM minutes m JOIN targets t ON t.id = m.target
                 WHERE t.role = 'anchor' AND m.ts >= ?1 GROUP BY m.ts",
            )
            .map_err(sql)?;
        let mut sparkline = vec![None; 60];
        let rows: Vec<(i64, Option<f64>)> =
            stmt.query_map([first], |r| Ok((r.get(0)?, r.get(1)?))).and_then(|r| r.collect()).map_err(sql)?;
        for (ts, us) in rows {
            let i = ((ts - first) / MINUTE_MS) as usize;
            if i < 60 {
                sparkline[i] = us.map(|u| u / 1000.0);
            }
        }

        let latest = store.latest_metrics(now - 7 * DAY_MS)?;
        let find = |probe: &str, name: &str| latest.iter().find(|m| m.probe == probe && m.name == name);
        let speed = find("bandwidth", "down_mbps").map(|d| Speed {
            down_mbps: d.value,
            up_mbps: find("bandwidth", "up_mbps").and_then(|m| m.value),
            bloat_ms: find("bandwidth", "bufferbloat_ms").and_then(|m| m.value),
            at: d.ts,
        });
        let radio = |r: &'static str| {
            latest.iter().find(|m| m.probe == "gateway" && m.subject == r && m.value.is_some()).map(|_| r)
        };
        let signal = radio("5g").or_else(|| radio("4g")).map(|r| {
            let get = |name: &str| latest.iter().find(|m| m.probe == "gateway" && m.subject == r && m.name == name);
            Signal {
                radio: r.to_uppercase(),
                sinr_db: get("sinr_db").and_then(|m| m.value),
                rsrp_dbm: get("rsrp_dbm").and_then(|m| m.value),
                band: get("bands").and_then(|m| m.note.clone()),
            }
        });
        let notice = c
            .query_row(
                "SELECT kind, detail FROM events WHERE kind IN ('anomaly', 'prediction', 'degradation', 'level_shift') AND ts >= ?1 ORDER BY ts DESC LIMIT 1",
                [now - 3600 * 1000],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .ok();
        Ok(Snapshot {
            now,
            state: st.state,
            state_since: st.since,
            rtt_ms,
            loss_pct,
            last_outage_end,
            outage_ongoing,
            sparkline,
            speed,
            signal,
            notice,
            ip,
        })
    }
}
