//! Placement mode: moving the 5G gateway is the one fix a household controls. `wanwatch
//! placement --spot NAME` reads the gateway's radio once a second for a while and keeps the
//! readings; `--list` ranks the spots tried, best first, so the family can walk the gateway
//! round the house and pick the best window.
//!
//! While a spot is being recorded the agent's panel shows SINR and RSRP large and the LED
//! blinks faster the better the signal ([`blink_ms`]); the dashboard shows the ranking.
//!
//! Ranking: 5G where the spot has 5G readings (its SINR median, then RSRP median), else LTE;
//! a spot with 5G ranks above one without. SINR first because it is what the throughput follows
//! (RSRP says how loud the cell is, SINR how clearly it is heard over the others).

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::probe::gateway::{self, Reading};
use crate::sample::WallMs;
use crate::stats::quantile_sorted as quantile;
use crate::store::placement::Row;
use crate::store::{Store, StoreError};

/// How long a spot is recorded when `--for` is not given.
pub const DEFAULT_FOR: Duration = Duration::from_secs(60);
/// How often the radio is read.
pub const EVERY: Duration = Duration::from_secs(1);
/// A reading newer than this means a spot is being recorded now (the panel's placement page).
pub const LIVE_FOR_MS: i64 = 5_000;

/// A spot's place in the ranking.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spot {
    pub rank: usize,
    pub spot: String,
    /// The radio judged: "5g", or "4g" where the spot had no 5G.
    pub radio: String,
    pub sinr_db_median: Option<f64>,
    /// Spread: the middle half of the readings (25th to 75th percentile).
    pub sinr_db_p25: Option<f64>,
    pub sinr_db_p75: Option<f64>,
    pub rsrp_dbm_median: Option<f64>,
    pub rsrp_dbm_p25: Option<f64>,
    pub rsrp_dbm_p75: Option<f64>,
    pub samples: usize,
    pub bands: String,
    pub first_ts: WallMs,
    pub last_ts: WallMs,
}

/// The spot being recorded now (a reading within [`LIVE_FOR_MS`] of `now`), ranked as in
/// [`rank`] over its readings of the last hour, with the latest reading in place of the medians
/// (what the panel shows large).
pub fn live(store: &Store, now: WallMs) -> Result<Option<Spot>, StoreError> {
    // One read: the last hour; a spot is live when its newest reading is recent.
    let hour = store.placement_rows(now - 3_600_000)?;
    let Some(spot) = hour.last().filter(|r| r.ts >= now - LIVE_FOR_MS).map(|r| r.spot.clone()) else {
        return Ok(None);
    };
    let rows: Vec<Row> = hour.into_iter().filter(|r| r.spot == spot).collect();
    Ok(rank(&rows).pop().map(|mut s| {
        if let Some(last) = rows.iter().rev().find(|r| r.radio == s.radio) {
            s.sinr_db_median = last.sinr_db;
            s.rsrp_dbm_median = last.rsrp_dbm;
        }
        s
    }))
}

fn sorted(v: impl Iterator<Item = Option<f64>>) -> Vec<f64> {
    let mut v: Vec<f64> = v.flatten().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Rank the spots in `rows`, best first.
pub fn rank(rows: &[Row]) -> Vec<Spot> {
    let mut names: Vec<&str> = rows.iter().map(|r| r.spot.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut spots: Vec<Spot> = names
        .into_iter()
        .map(|name| {
            let of = |radio: &'static str| rows.iter().filter(move |r| r.spot == name && r.radio == radio);
            let has_5g = of("5g").any(|r| r.sinr_db.is_some() || r.rsrp_dbm.is_some());
            let radio = if has_5g { "5g" } else { "4g" };
            let sinr = sorted(of(radio).map(|r| r.sinr_db));
            let rsrp = sorted(of(radio).map(|r| r.rsrp_dbm));
            let mut bands: Vec<&str> = of(radio).flat_map(|r| r.bands.split(',')).filter(|b| !b.is_empty()).collect();
            bands.sort_unstable();
            bands.dedup();
            let all: Vec<&Row> = rows.iter().filter(|r| r.spot == name).collect();
            Spot {
                rank: 0,
                spot: name.to_string(),
                radio: radio.to_string(),
                sinr_db_median: quantile(&sinr, 0.5),
                sinr_db_p25: quantile(&sinr, 0.25),
                sinr_db_p75: quantile(&sinr, 0.75),
                rsrp_dbm_median: quantile(&rsrp, 0.5),
                rsrp_dbm_p25: quantile(&rsrp, 0.25),
                rsrp_dbm_p75: quantile(&rsrp, 0.75),
                samples: of(radio).filter(|r| r.sinr_db.is_some() || r.rsrp_dbm.is_some()).count(),
                bands: bands.join(","),
                first_ts: all.first().map_or(0, |r| r.ts),
                last_ts: all.last().map_or(0, |r| r.ts),
            }
        })
        .collect();
    // 5G before LTE, then SINR, then RSRP, each higher first; a missing value last.
    let key = |s: &Spot| {
        let v = |x: Option<f64>| x.unwrap_or(f64::NEG_INFINITY);
        (s.radio == "5g", v(s.sinr_db_median), v(s.rsrp_dbm_median))
    };
    spots.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        kb.0.cmp(&ka.0).then(kb.1.total_cmp(&ka.1)).then(kb.2.total_cmp(&ka.2)).then(a.spot.cmp(&b.spot))
    });
    for (i, s) in spots.iter_mut().enumerate() {
        s.rank = i + 1;
    }
    spots
}

/// The LED's blink half-period for a SINR: faster as the signal improves, so the household can
/// watch the LED while moving the gateway (none: no reading, slow).
pub fn blink_ms(sinr_db: Option<f64>) -> u32 {
    match sinr_db {
        None => 1000,
        Some(s) if s < 0.0 => 800,
        Some(s) if s < 10.0 => 400,
        Some(s) if s < 20.0 => 200,
        Some(_) => 80,
    }
}

/// The rows of one reading.
pub fn rows_of(reading: &Reading, spot: &str, ts: WallMs) -> Vec<Row> {
    reading
        .radios
        .iter()
        .filter(|r| r.sinr.is_some() || r.rsrp.is_some())
        .map(|r| Row {
            ts,
            spot: spot.to_string(),
            radio: r.name.to_string(),
            sinr_db: r.sinr,
            rsrp_dbm: r.rsrp,
            rsrq_db: r.rsrq,
            bands: r.bands.join(","),
        })
        .collect()
}

/// Why a spot could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error("no gateway API answered at {0} (T-Mobile or Nokia); set [gateway_api] url and kind in the configuration")]
    NoGateway(String),
    #[error("no default gateway to ask; set [gateway_api] url in the configuration")]
    NoAddress,
    #[error("the gateway gave no signal readings in {0} s; is it a 5G/LTE gateway?")]
    NoReadings(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the gateway's API is and how to ask it.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub base: String,
    pub kind: crate::config::probes::GatewayKind,
    pub timeout: Duration,
}

/// Read the gateway at `base` once a second for `for_`, storing each reading under `spot` in
/// `store`; `progress` sees each stored reading. Returns the readings stored.
pub async fn record(
    store: &Store,
    gw: &Gateway,
    spot: &str,
    for_: Duration,
    now: &dyn Fn() -> WallMs,
    progress: &mut dyn FnMut(&[Row]),
) -> Result<usize, PlacementError> {
    use crate::config::probes::GatewayKind;
    let Gateway { base, kind, timeout } = gw;
    let (base, timeout) = (base.as_str(), *timeout);
    let kind = match *kind {
        GatewayKind::Auto => {
            gateway::detect(base, timeout).await.ok_or_else(|| PlacementError::NoGateway(base.into()))?
        }
        k => k,
    };
    let started = Instant::now();
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut stored = 0;
    while started.elapsed() < for_ {
        ticks.tick().await;
        match gateway::fetch(base, kind, timeout).await {
            Ok(r) => {
                let rows = rows_of(&r, spot, now());
                store.add_placement(&rows)?;
                stored += rows.len();
                progress(&rows);
            }
            Err(e) => tracing::warn!("gateway: {e}"),
        }
    }
    if stored == 0 {
        return Err(PlacementError::NoReadings(for_.as_secs()));
    }
    Ok(stored)
}

/// The ranking as text, for the terminal.
pub fn text(spots: &[Spot]) -> String {
    if spots.is_empty() {
        return "no spots recorded yet: wanwatch placement --spot kitchen-window\n".into();
    }
    let f = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.1}"));
    let mut out = format!(
        "{:<4} {:<20} {:<5} {:>12} {:>14} {:>14} {:>16} {:>7}\n",
        "rank", "spot", "radio", "SINR dB", "(25-75%)", "RSRP dBm", "(25-75%)", "samples"
    );
    for s in spots {
        out.push_str(&format!(
            "{:<4} {:<20} {:<5} {:>12} {:>14} {:>14} {:>16} {:>7}\n",
            s.rank,
            s.spot,
            s.radio.to_uppercase(),
            f(s.sinr_db_median),
            format!("{} to {}", f(s.sinr_db_p25), f(s.sinr_db_p75)),
            f(s.rsrp_dbm_median),
            format!("{} to {}", f(s.rsrp_dbm_p25), f(s.rsrp_dbm_p75)),
            s.samples
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(spot: &str, radio: &str, sinr: Option<f64>, rsrp: Option<f64>) -> Row {
        Row {
            ts: 0,
            spot: spot.into(),
            radio: radio.into(),
            sinr_db: sinr,
            rsrp_dbm: rsrp,
            rsrq_db: None,
            bands: "n41".into(),
        }
    }

    #[test]
    fn spots_rank_by_5g_sinr_then_rsrp_and_lte_only_spots_come_after() {
        let rows = vec![
            row("hall", "5g", Some(5.0), Some(-100.0)),
            row("hall", "5g", Some(7.0), Some(-98.0)),
            row("window", "5g", Some(18.0), Some(-90.0)),
            row("window", "5g", Some(20.0), Some(-92.0)),
            row("window", "4g", Some(25.0), Some(-80.0)),
            row("attic", "5g", Some(18.0), Some(-85.0)),
            row("attic", "5g", Some(20.0), Some(-87.0)),
            row("basement", "4g", Some(30.0), Some(-70.0)),
        ];
        let ranked = rank(&rows);
        let order: Vec<&str> = ranked.iter().map(|s| s.spot.as_str()).collect();
        // attic and window tie on SINR (19); attic's RSRP is stronger. The basement's LTE is
        // strong, but a spot with 5G comes first.
        assert_eq!(order, ["attic", "window", "hall", "basement"]);
        assert_eq!(ranked[0].sinr_db_median, Some(19.0));
        assert_eq!(ranked[0].samples, 2);
        assert_eq!(ranked[3].radio, "4g");
        assert_eq!(ranked.iter().map(|s| s.rank).collect::<Vec<_>>(), [1, 2, 3, 4]);
    }

    #[test]
    fn the_led_blinks_faster_as_the_signal_improves() {
        let steps: Vec<u32> = [None, Some(-3.0), Some(5.0), Some(15.0), Some(25.0)].into_iter().map(blink_ms).collect();
        assert!(steps.windows(2).all(|w| w[1] < w[0]), "{steps:?}");
    }
}
