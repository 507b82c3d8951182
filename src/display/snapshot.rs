//! Everything the screens show, read from the database in one go (the display runs beside the
//! agent and reads the same file the writer fills).

use crate::calendar::minute_of;
use crate::calendar::{DAY_MS, HOUR_MS, MINUTE_MS};
use crate::sample::{EventKind, LinkState, WallMs};
use crate::series::{self, Series};
use crate::stats::quantile_sorted as quantile;
use crate::store::{Store, StoreError};

/// The events the notice page shows.
const NOTICES: &[EventKind] =
    &[EventKind::Anomaly, EventKind::Prediction, EventKind::Degradation, EventKind::LevelShift];

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
    /// The newest anomaly, prediction, degradation or level shift of the last hour.
    pub notice: Option<(EventKind, String)>,
    pub ip: Option<String>,
    /// The set-up page's PIN (the address page shows it), when the page is on.
    pub setup_pin: Option<String>,
    /// The best 3 hours for big downloads in the coming day ("03:00-06:00 tomorrow"); the
    /// panel works it out hourly (`report::next_download_window`).
    pub best_download: Option<String>,
    /// A gateway spot being recorded now (`wanwatch placement`): the panel shows only it.
    pub placement: Option<crate::placement::Spot>,
}

impl Snapshot {
    pub fn from_store(store: &Store, now: WallMs, ip: Option<String>) -> Result<Snapshot, StoreError> {
        let st = store.agent_status()?;
        let recent = store.anchor_rtts(now - 5 * MINUTE_MS, now)?;
        let mut ok: Vec<u32> = recent.iter().flatten().copied().collect();
        ok.sort_unstable();
        let rtt_ms = quantile(&ok, 0.5).map(|us| us / 1000.0);
        let loss_pct = (!recent.is_empty()).then(|| (recent.len() - ok.len()) as f64 / recent.len() as f64 * 100.0);

        let outage = store.recent_outages(1)?.into_iter().next();
        let outage_ongoing = outage.as_ref().is_some_and(|o| o.end.is_none());
        let last_outage_end = outage.and_then(|o| o.end);

        let first = minute_of(now) - 59 * MINUTE_MS;
        let mut sparkline = vec![None; 60];
        for (ts, us) in store.anchor_medians_since(first)? {
            let i = ((ts - first) / MINUTE_MS) as usize;
            if i < 60 {
                sparkline[i] = us.map(|u| u / 1000.0);
            }
        }

        let latest = store.latest_metrics(now - 7 * DAY_MS)?;
        let find = |key: Series| latest.iter().find(|m| m.is(key));
        let speed = find(series::DOWN_MBPS).map(|d| Speed {
            down_mbps: d.value,
            up_mbps: find(series::UP_MBPS).and_then(|m| m.value),
            bloat_ms: find(series::BUFFERBLOAT_MS).and_then(|m| m.value),
            at: d.ts,
        });
        let radio = |r: &'static str| {
            latest.iter().find(|m| m.probe == series::SINR.probe && m.subject == r && m.value.is_some()).map(|_| r)
        };
        let signal = radio("5g").or_else(|| radio("4g")).map(|r| {
            let get = |key: Series| latest.iter().find(|m| m.is(key) && m.subject == r);
            Signal {
                radio: r.to_uppercase(),
                sinr_db: get(series::SINR).and_then(|m| m.value),
                rsrp_dbm: get(series::RSRP).and_then(|m| m.value),
                band: get(series::BANDS).and_then(|m| m.note.clone()),
            }
        });
        let notice = store.newest_event_of(NOTICES, now - HOUR_MS)?.map(|e| (e.kind, e.detail));
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
            setup_pin: None,
            best_download: None,
            placement: crate::placement::live(store, now)?,
        })
    }
}
