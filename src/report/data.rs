//! What a report reads from the database: one row per minute for the internet (the anchors
//! together), with the context that was true in that minute (weather, gateway signal and band,
//! devices on the LAN) carried forward from the last reading, plus outages, events, speed tests.
//!
//! Reads the rollups, not the raw samples: raw pings are kept 90 days, rollups three years, and
//! a month of minutes is ~40k rows where the raw pings would be millions.

use std::collections::BTreeMap;

use crate::calendar::MINUTE_MS;
use crate::sample::{EventKind, OutageKind, WallMs};
use crate::series::{self, Series};
pub use crate::store::query::Outage;
pub use crate::store::read::Event;
use crate::store::read::{Reading, RouterLine};
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
    /// LAN clients streaming video / in an online game (from DNS query logs; None: not watched).
    pub streaming: Option<f64>,
    pub gaming: Option<f64>,
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
    pub outages: Vec<Outage>,
    pub events: Vec<Event>,
    /// Router log lines that were classified (wan_down, reboot, ...): (ts, class, message).
    pub router: Vec<RouterLine>,
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
    let p = store.readings(series::TROUBLE_P60, since, until - horizon)?;
    let trouble: Vec<WallMs> = store
        .readings(series::TROUBLE, since, until)?
        .into_iter()
        .filter(|r| r.value.is_some_and(|v| v > 0.5))
        .map(|r| r.ts)
        .collect();
    Ok(p.into_iter()
        .filter_map(|r| {
            let i = trouble.partition_point(|&t| t <= r.ts);
            r.value.map(|v| (v, trouble.get(i).is_some_and(|&t| t <= r.ts + horizon)))
        })
        .collect())
}

/// How long a context reading stays true: weather is polled every 15-30 min, the gateway and
/// the device count every minute or few.
const WEATHER_AGE_MS: i64 = 90 * MINUTE_MS;
const GATEWAY_AGE_MS: i64 = 10 * MINUTE_MS;
const DEVICES_AGE_MS: i64 = 30 * MINUTE_MS;
/// Session counts are written every minute; a few missed ones are still the same session.
const SESSIONS_AGE_MS: i64 = 5 * MINUTE_MS;

impl Data {
    /// The onsets of the level shifts in the period (the timeline marks them).
    pub fn shift_onsets(&self) -> Vec<WallMs> {
        self.events.iter().filter(|e| e.kind == EventKind::LevelShift).map(|e| e.ts).collect()
    }

    /// Read `[since, until)` from `store`. `progress` is called after each stage (for a bar).
    pub fn load(store: &Store, since: WallMs, until: WallMs, progress: &dyn Fn(&str)) -> Result<Data, StoreError> {
        let anchors = store.anchor_names()?;
        let mut minutes = internet_minutes(store, since, until, !anchors.is_empty())?;
        progress("minutes");
        let outages = store.outages_between(since, until)?;
        mark_down(&mut minutes, &outages, until);
        type Setter = fn(&mut Context, f64);
        let sources: [(Series, i64, Setter); 8] = [
            (series::PRECIP, WEATHER_AGE_MS, |c, v| c.precip_mm_h = Some(v)),
            (series::WIND, WEATHER_AGE_MS, |c, v| c.wind_kmh = Some(v)),
            (series::TEMP, WEATHER_AGE_MS, |c, v| c.temp_c = Some(v)),
            (series::DEVICES, DEVICES_AGE_MS, |c, v| c.devices = Some(v)),
            (series::SINR, GATEWAY_AGE_MS, |c, v| c.sinr_db = Some(v)),
            (series::RSRP, GATEWAY_AGE_MS, |c, v| c.rsrp_dbm = Some(v)),
            (series::STREAMING, SESSIONS_AGE_MS, |c, v| c.streaming = Some(v)),
            (series::GAMING, SESSIONS_AGE_MS, |c, v| c.gaming = Some(v)),
        ];
        for (key, age, set) in sources {
            let readings = store.readings(key, since - age, until)?;
            carry_forward(&mut minutes, &readings, age, |c, r| {
                if let Some(v) = r.value {
                    set(c, v)
                }
            });
        }
        let bands = store.readings(series::BANDS, since - GATEWAY_AGE_MS, until)?;
        carry_forward(&mut minutes, &bands, GATEWAY_AGE_MS, |c, r| c.band = r.note.clone());
        progress("context");
        let events = store.events_between(since, until)?;
        let router = store.router_lines_between(since, until)?;
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

/// The link's minutes of `[since, until)` with the WAN outages marked, and no context: what the
/// time-of-week advice needs (the panel and the dashboard ask for it).
pub fn link_minutes(store: &Store, since: WallMs, until: WallMs) -> Result<Vec<Minute>, StoreError> {
    let anchors = !store.anchor_names()?.is_empty();
    let mut minutes = internet_minutes(store, since, until, anchors)?;
    mark_down(&mut minutes, &store.outages_between(since, until)?, until);
    Ok(minutes)
}

/// The anchors' minutes folded into one (all targets when there are no anchors).
fn internet_minutes(
    store: &Store,
    since: WallMs,
    until: WallMs,
    anchors_only: bool,
) -> Result<Vec<Minute>, StoreError> {
    let rows = store.target_minutes(since, until, anchors_only)?;
    let mut out: Vec<Minute> = Vec::new();
    let mut medians = 0u32;
    for r in rows {
        let (ts, sent, lost, median, p95) = (r.ts, r.sent, r.lost, r.median_us, r.p95_us);
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

fn mark_down(minutes: &mut [Minute], outages: &[Outage], until: WallMs) {
    for o in outages.iter().filter(|o| o.kind == OutageKind::Wan) {
        let end = o.end.unwrap_or(until);
        let first = minutes.partition_point(|m| m.ts + MINUTE_MS <= o.start);
        for m in minutes[first..].iter_mut().take_while(|m| m.ts < end) {
            m.down = true;
        }
    }
}

/// Give each minute the newest reading at or before its end, if it is younger than `age`.
fn carry_forward(minutes: &mut [Minute], readings: &[Reading], age: i64, mut set: impl FnMut(&mut Context, &Reading)) {
    let mut j = 0;
    for m in minutes.iter_mut() {
        let end = m.ts + MINUTE_MS;
        while j < readings.len() && readings[j].ts < end {
            j += 1;
        }
        if let Some(r) = j.checked_sub(1).map(|k| &readings[k])
            && end - r.ts <= age
        {
            set(&mut m.ctx, r);
        }
    }
}

fn speed_tests(store: &Store, since: WallMs, until: WallMs) -> Result<Vec<SpeedTest>, StoreError> {
    let mut tests: BTreeMap<WallMs, SpeedTest> = BTreeMap::new();
    type Setter = fn(&mut SpeedTest, Option<f64>);
    let parts: [(Series, Setter); 3] = [
        (series::DOWN_MBPS, |t, v| t.down_mbps = v),
        (series::UP_MBPS, |t, v| t.up_mbps = v),
        (series::BUFFERBLOAT_MS, |t, v| t.bufferbloat_ms = v),
    ];
    for (key, set) in parts {
        for r in store.readings(key, since, until)? {
            let t = tests.entry(r.ts).or_insert(SpeedTest {
                ts: r.ts,
                down_mbps: None,
                up_mbps: None,
                bufferbloat_ms: None,
            });
            set(t, r.value);
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
        let at = |ts, v| Reading { ts, value: Some(v), note: None };
        let readings = vec![at(30_000, 2.5), at(5 * MINUTE_MS + 10, 7.0)];
        carry_forward(&mut ms, &readings, 2 * MINUTE_MS, |c, r| c.precip_mm_h = r.value);
        let got: Vec<Option<f64>> = ms.iter().map(|m| m.ctx.precip_mm_h).collect();
        // Minute 0 sees the reading at 30 s; it stays true two minutes; minute 5 sees the second.
        assert_eq!(got, [Some(2.5), Some(2.5), None, None, None, Some(7.0), Some(7.0), None, None, None]);
    }

    #[test]
    fn outages_mark_the_minutes_they_touch() {
        let mut ms: Vec<Minute> = (0..10).map(|i| minute(i * MINUTE_MS)).collect();
        let o = |kind, start, end| Outage { id: 0, kind, start, end, duration_ms: None };
        mark_down(
            &mut ms,
            &[
                o(OutageKind::Wan, 2 * MINUTE_MS + 30_000, Some(4 * MINUTE_MS)),
                o(OutageKind::Lan, 0, Some(MINUTE_MS)),
                o(OutageKind::Wan, 8 * MINUTE_MS, None),
            ],
            10 * MINUTE_MS,
        );
        let down: Vec<usize> = ms.iter().enumerate().filter(|(_, m)| m.down).map(|(i, _)| i).collect();
        assert_eq!(down, [2, 3, 8, 9]);
    }
}
