//! What a report reads from the database: one row per minute for the internet (the anchors
//! together), with the context that was true in that minute (weather, gateway signal and band,
//! devices on the LAN) carried forward from the last reading, plus outages, events, speed tests.
//!
//! Reads the rollups, not the raw samples: raw pings are kept 90 days, rollups three years, and
//! a month of minutes is ~40k rows where the raw pings would be millions.

use std::collections::BTreeMap;

use crate::calendar::MINUTE_MS;
use crate::sample::WallMs;
use crate::store::{Store, StoreError};

/// The context measured around one minute; None when nothing recent enough was measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    pub precip_mm_h: Option<f64>,
    pub wind_kmh: Option<f64>,
    pub temp_c: Option<f64>,
    pub devices: Option<f64>,
    pub sinr_db: Option<f64>,
    pub rsrp_dbm: Option<f64>,
    /// The gateway's band list, e.g. "n41" or "b2,b66".
    pub band: Option<String>,
}

/// One minute of the internet link as the anchors saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Minute {
    pub ts: WallMs,
    pub sent: u32,
    pub lost: u32,
    /// Mean over the anchors of their median RTT, ms.
    pub median_ms: Option<f64>,
    /// The worst anchor's 95th percentile RTT, ms.
    pub p95_ms: Option<f64>,
    /// Inside a WAN outage.
    pub down: bool,
    pub ctx: Context,
}

impl Minute {
    pub fn loss(&self) -> Option<f64> {
        (self.sent > 0).then(|| self.lost as f64 / self.sent as f64)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutageRow {
    pub kind: String,
    pub start: WallMs,
    /// None while still ongoing.
    pub end: Option<WallMs>,
    pub duration_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub ts: WallMs,
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpeedTest {
    pub ts: WallMs,
    pub down_mbps: Option<f64>,
    pub up_mbps: Option<f64>,
    pub bufferbloat_ms: Option<f64>,
}

/// Everything a report is made from, for `[since, until)`.
#[derive(Debug, Clone, Default)]
pub struct Data {
    pub since: WallMs,
    pub until: WallMs,
    pub minutes: Vec<Minute>,
    pub outages: Vec<OutageRow>,
    pub events: Vec<EventRow>,
    /// Router log lines that were classified (wan_down, reboot, ...): (ts, class, message).
    pub router: Vec<(WallMs, String, String)>,
    pub speed: Vec<SpeedTest>,
    /// The anchors' names, for the report's header.
    pub anchors: Vec<String>,
    /// Stretches the agent did not measure (not running, stalled).
    pub blind: Vec<crate::store::query::BlindSpot>,
    /// The outlook's hour-ahead probabilities and whether trouble came within the hour, for the
    /// reliability table (only predictions whose hour is over, and inside the period).
    pub outlook: Vec<(f64, bool)>,
}

/// Pairs each stored hour-ahead probability with what happened in the hour after it.
fn outlook_outcomes(store: &Store, since: WallMs, until: WallMs) -> Result<Vec<(f64, bool)>, StoreError> {
    let horizon = crate::detect::outlook::HORIZON_MS;
    let p = readings(store, "detect", "trouble_p60", since, until - horizon)?;
    let trouble: Vec<WallMs> = readings(store, "detect", "trouble", since, until)?
        .into_iter()
        .filter(|r| r.1.0.is_some_and(|v| v > 0.5))
        .map(|r| r.0)
        .collect();
    Ok(p.into_iter()
        .filter_map(|(ts, (v, _))| {
            let i = trouble.partition_point(|&t| t <= ts);
            v.map(|v| (v, trouble.get(i).is_some_and(|&t| t <= ts + horizon)))
        })
        .collect())
}

/// How long a context reading stays true: weather is polled every 15-30 min, the gateway and
/// the device count every minute or few.
const WEATHER_AGE_MS: i64 = 90 * MINUTE_MS;
const GATEWAY_AGE_MS: i64 = 10 * MINUTE_MS;
const DEVICES_AGE_MS: i64 = 30 * MINUTE_MS;

impl Data {
    /// The onsets of the level shifts in the period (the timeline marks them).
    pub fn shift_onsets(&self) -> Vec<WallMs> {
        self.events.iter().filter(|e| e.kind == "level_shift").map(|e| e.ts).collect()
    }

    /// Read `[since, until)` from `store`. `progress` is called after each stage (for a bar).
    pub fn load(store: &Store, since: WallMs, until: WallMs, progress: &dyn Fn(&str)) -> Result<Data, StoreError> {
        let anchors = anchor_names(store)?;
        let mut minutes = internet_minutes(store, since, until, !anchors.is_empty())?;
        progress("minutes");
        let outages = outages(store, since, until)?;
        mark_down(&mut minutes, &outages, until);
        type Setter = fn(&mut Context, f64);
        let sources: [(&str, &str, i64, Setter); 6] = [
            ("weather", "precip_mm_h", WEATHER_AGE_MS, |c, v| c.precip_mm_h = Some(v)),
            ("weather", "wind_kmh", WEATHER_AGE_MS, |c, v| c.wind_kmh = Some(v)),
            ("weather", "temp_c", WEATHER_AGE_MS, |c, v| c.temp_c = Some(v)),
            ("devices", "neighbours", DEVICES_AGE_MS, |c, v| c.devices = Some(v)),
            ("gateway", "sinr_db", GATEWAY_AGE_MS, |c, v| c.sinr_db = Some(v)),
            ("gateway", "rsrp_dbm", GATEWAY_AGE_MS, |c, v| c.rsrp_dbm = Some(v)),
        ];
        for (probe, name, age, set) in sources {
            let series = readings(store, probe, name, since - age, until)?;
            carry_forward(&mut minutes, &series, age, |c, r| {
                if let Some(v) = r.0 {
                    set(c, v)
                }
            });
        }
        let bands = readings(store, "gateway", "bands", since - GATEWAY_AGE_MS, until)?;
        carry_forward(&mut minutes, &bands, GATEWAY_AGE_MS, |c, r| c.band = r.1.clone());
        progress("context");
        let events = query(
            store,
            "SELECT ts, kind, detail FROM events WHERE ts >= ?1 AND ts < ?2 ORDER BY ts",
            since,
            until,
            |r| Ok(EventRow { ts: r.get(0)?, kind: r.get(1)?, detail: r.get(2)? }),
        )?;
        let router = query(
            store,
            "SELECT ts, class, message FROM syslog WHERE class IS NOT NULL AND ts >= ?1 AND ts < ?2 ORDER BY ts",
            since,
            until,
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let speed = speed_tests(store, since, until)?;
        progress("events");
        let blind = store.blind_spots(since, until)?;
        let outlook = outlook_outcomes(store, since, until)?;
        Ok(Data { since, until, minutes, outages, events, router, speed, anchors, blind, outlook })
    }

    /// The context readings nearest before `ts` (what the gateway and the weather were doing).
    pub fn context_at(&self, ts: WallMs) -> Option<&Context> {
        let i = self.minutes.partition_point(|m| m.ts <= ts);
        self.minutes[..i].iter().rev().take(15).find(|m| m.ctx != Context::default()).map(|m| &m.ctx)
    }
}

fn query<T>(
    store: &Store,
    sql: &str,
    since: WallMs,
    until: WallMs,
    row: impl FnMut(&rusqlite::Row) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = store.conn.prepare(sql).map_err(|e| store.sql("report query", e))?;
    stmt.query_map([since, until], row).and_then(|rows| rows.collect()).map_err(|e| store.sql("report query", e))
}

fn anchor_names(store: &Store) -> Result<Vec<String>, StoreError> {
    let mut stmt = store
        .conn
        .prepare("SELECT name FROM targets WHERE role = 'anchor' ORDER BY id")
        .map_err(|e| store.sql("targets", e))?;
    stmt.query_map([], |r| r.get(0)).and_then(|rows| rows.collect()).map_err(|e| store.sql("targets", e))
}

/// The anchors' minutes folded into one (all targets when there are no anchors).
fn internet_minutes(
    store: &Store,
    since: WallMs,
    until: WallMs,
    anchors_only: bool,
) -> Result<Vec<Minute>, StoreError> {
    let sql = format!(
        "SELECT m.ts, m.sent, m.lost, m.median_us, m.p95_us FROM minutes m JOIN targets t ON t.id = m.target
         WHERE m.ts >= ?1 AND m.ts < ?2 {} ORDER BY m.ts",
        if anchors_only { "AND t.role = 'anchor'" } else { "" }
    );
    let rows = query(store, &sql, since, until, |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, u32>(1)?,
            r.get::<_, u32>(2)?,
            r.get::<_, Option<i64>>(3)?,
            r.get::<_, Option<i64>>(4)?,
        ))
    })?;
    let mut out: Vec<Minute> = Vec::new();
    let mut medians = 0u32;
    for (ts, sent, lost, median, p95) in rows {
        if out.last().is_none_or(|m| m.ts != ts) {
            if let Some(m) = out.last_mut() {
                m.median_ms = m.median_ms.map(|s| s / medians as f64);
            }
            out.push(Minute {
                ts,
                sent: 0,
                lost: 0,
                median_ms: None,
                p95_ms: None,
                down: false,
                ctx: Context::default(),
            });
            medians = 0;
        }
        let m = out.last_mut().expect("pushed above");
        m.sent += sent;
        m.lost += lost;
        if let Some(us) = median {
            m.median_ms = Some(m.median_ms.unwrap_or(0.0) + us as f64 / 1000.0);
            medians += 1;
        }
        if let Some(us) = p95 {
            m.p95_ms = Some(m.p95_ms.unwrap_or(0.0).max(us as f64 / 1000.0));
        }
    }
    if let Some(m) = out.last_mut() {
        m.median_ms = m.median_ms.map(|s| s / medians as f64);
    }
    Ok(out)
}

fn outages(store: &Store, since: WallMs, until: WallMs) -> Result<Vec<OutageRow>, StoreError> {
    query(
        store,
        "SELECT kind, start_ts, end_ts, duration_ms FROM outages
         WHERE start_ts < ?2 AND coalesce(end_ts, ?2) > ?1 ORDER BY start_ts",
        since,
        until,
        |r| Ok(OutageRow { kind: r.get(0)?, start: r.get(1)?, end: r.get(2)?, duration_ms: r.get(3)? }),
    )
}

fn mark_down(minutes: &mut [Minute], outages: &[OutageRow], until: WallMs) {
    for o in outages.iter().filter(|o| o.kind == "wan") {
        let end = o.end.unwrap_or(until);
        let first = minutes.partition_point(|m| m.ts + MINUTE_MS <= o.start);
        for m in minutes[first..].iter_mut().take_while(|m| m.ts < end) {
            m.down = true;
        }
    }
}

/// A reading's value and note, by time.
type Readings = Vec<(WallMs, (Option<f64>, Option<String>))>;

/// (ts, value, note) of one series (any subject; the gateway's 5G radio wins over 4G when both
/// report, since a 5G home gateway's traffic rides the 5G carrier).
fn readings(store: &Store, probe: &str, name: &str, since: WallMs, until: WallMs) -> Result<Readings, StoreError> {
    let mut stmt = store
        .conn
        .prepare(
            "SELECT m.ts, m.value, m.note FROM metrics m JOIN series s ON s.id = m.series
             WHERE s.probe = ?1 AND s.name = ?2 AND m.ts >= ?3 AND m.ts < ?4
             ORDER BY m.ts, s.subject = '5g'",
        )
        .map_err(|e| store.sql("read metrics", e))?;
    let rows: Vec<(WallMs, Option<f64>, Option<String>)> = stmt
        .query_map(rusqlite::params![probe, name, since, until], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .and_then(|rows| rows.collect())
        .map_err(|e| store.sql("read metrics", e))?;
    // Same timestamp from two radios: the later row (5G, by the ORDER BY) replaces the earlier.
    let mut by_ts: BTreeMap<WallMs, (Option<f64>, Option<String>)> = BTreeMap::new();
    for (ts, v, note) in rows.into_iter().filter(|r| r.1.is_some() || r.2.is_some()) {
        by_ts.insert(ts, (v, note));
    }
    Ok(by_ts.into_iter().collect())
}

/// Give each minute the newest reading at or before its end, if it is younger than `age`.
fn carry_forward<R>(minutes: &mut [Minute], readings: &[(WallMs, R)], age: i64, mut set: impl FnMut(&mut Context, &R)) {
    let mut j = 0;
    for m in minutes.iter_mut() {
        let end = m.ts + MINUTE_MS;
        while j < readings.len() && readings[j].0 < end {
            j += 1;
        }
        if let Some((ts, r)) = j.checked_sub(1).map(|k| &readings[k])
            && end - ts <= age
        {
            set(&mut m.ctx, r);
        }
    }
}

fn speed_tests(store: &Store, since: WallMs, until: WallMs) -> Result<Vec<SpeedTest>, StoreError> {
    let mut tests: BTreeMap<WallMs, SpeedTest> = BTreeMap::new();
    for name in ["down_mbps", "up_mbps", "bufferbloat_ms"] {
        for (ts, (v, _)) in readings(store, "bandwidth", name, since, until)? {
            let t = tests.entry(ts).or_insert(SpeedTest { ts, down_mbps: None, up_mbps: None, bufferbloat_ms: None });
            match name {
                "down_mbps" => t.down_mbps = v,
                "up_mbps" => t.up_mbps = v,
                _ => t.bufferbloat_ms = v,
            }
        }
    }
    Ok(tests.into_values().filter(|t| t.down_mbps.is_some() || t.up_mbps.is_some()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(ts: WallMs) -> Minute {
        Minute { ts, sent: 60, lost: 0, median_ms: Some(20.0), p95_ms: None, down: false, ctx: Context::default() }
    }

    #[test]
    fn context_is_carried_forward_only_while_fresh() {
        let mut ms: Vec<Minute> = (0..10).map(|i| minute(i * MINUTE_MS)).collect();
        let readings = vec![(30_000, 2.5), (5 * MINUTE_MS + 10, 7.0)];
        carry_forward(&mut ms, &readings, 2 * MINUTE_MS, |c, v| c.precip_mm_h = Some(*v));
        let got: Vec<Option<f64>> = ms.iter().map(|m| m.ctx.precip_mm_h).collect();
        // Minute 0 sees the reading at 30 s; it stays true two minutes; minute 5 sees the second.
        assert_eq!(got, [Some(2.5), Some(2.5), None, None, None, Some(7.0), Some(7.0), None, None, None]);
    }

    #[test]
    fn outages_mark_the_minutes_they_touch() {
        let mut ms: Vec<Minute> = (0..10).map(|i| minute(i * MINUTE_MS)).collect();
        let o = |kind: &str, start, end| OutageRow { kind: kind.into(), start, end, duration_ms: None };
        mark_down(
            &mut ms,
            &[
                o("wan", 2 * MINUTE_MS + 30_000, Some(4 * MINUTE_MS)),
                o("lan", 0, Some(MINUTE_MS)),
                o("wan", 8 * MINUTE_MS, None),
            ],
            10 * MINUTE_MS,
        );
        let down: Vec<usize> = ms.iter().enumerate().filter(|(_, m)| m.down).map(|(i, _)| i).collect();
        assert_eq!(down, [2, 3, 8, 9]);
    }
}
