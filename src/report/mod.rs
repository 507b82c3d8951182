//! `wanwatch report`: the evidence a support agent needs, from the database alone.
//!
//! ```text
//! data.rs       the database -> per-minute rows with their context, outages, events, speed tests
//! correlate.rs  effects (rain, wind, devices, signal, evenings) with bootstrap intervals, the week
//! plot.rs       inline SVG figures (plotters)
//! render.rs     one self-contained HTML file, or Markdown for a support chat
//! weekly.rs     last week's report written by the agent into the state directory
//! ```

pub mod correlate;
pub mod data;
pub mod incident;
pub mod plot;
pub mod render;
pub mod sla;
pub mod weekly;

use crate::calendar::MINUTE_MS;
use crate::sample::{EventKind, OutageKind, WallMs};
use crate::store::{Store, StoreError};
use correlate::Analysis;
use data::Data;

/// What the household pays for, to compare speed tests against.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Plan {
    pub down_mbps: Option<f64>,
    pub up_mbps: Option<f64>,
}

impl Plan {
    /// As `[report]` says.
    pub fn of(cfg: &crate::config::outputs::ReportConfig) -> Plan {
        Plan { down_mbps: cfg.plan_down_mbps, up_mbps: cfg.plan_up_mbps }
    }
}

/// The 30-second version.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Minutes with measurements, and the minutes in the period.
    pub measured_minutes: usize,
    pub period_minutes: i64,
    /// Time measured: the measured minutes less the blind spots inside them.
    pub measured_ms: i64,
    /// Time the agent did not measure (not running, stalled), and in how many stretches.
    pub blind_ms: i64,
    pub blind_spots: usize,
    /// Share of measured time the internet was up (not in a WAN outage).
    pub uptime: Option<f64>,
    pub wan_outages: usize,
    pub lan_outages: usize,
    pub downtime_ms: i64,
    pub longest_ms: i64,
    /// Median of the per-minute median RTT, and the 95th percentile of per-minute p95, ms.
    pub median_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// Packet loss outside outages (0-1).
    pub loss: Option<f64>,
    pub speed_tests: usize,
    pub down_median_mbps: Option<f64>,
    pub up_median_mbps: Option<f64>,
    /// Tests that got less than half the plan's download speed.
    pub below_half_plan: usize,
    pub anomalies: usize,
    pub predictions: usize,
}

pub fn summarise(d: &Data, plan: &Plan) -> Summary {
    let clip = |o: &data::Outage| (o.end.unwrap_or(d.until).min(d.until) - o.start.max(d.since)).max(0);
    let wan: Vec<&data::Outage> = d.outages.iter().filter(|o| o.kind == OutageKind::Wan).collect();
    let downtime_ms: i64 = wan.iter().map(|o| clip(o)).sum();
    let measured = d.minutes.iter().filter(|m| m.sent > 0).count();
    let measured_ms = measured as i64 * MINUTE_MS - blind_inside_measured(d);
    let (mut sent, mut lost) = (0u64, 0u64);
    for m in d.minutes.iter().filter(|m| !m.down) {
        sent += m.sent as u64;
        lost += m.lost as u64;
    }
    let up = || d.minutes.iter().filter(|m| !m.down);
    let downs: Vec<f64> = d.speed.iter().filter_map(|t| t.down_mbps).collect();
    Summary {
        measured_minutes: measured,
        period_minutes: (d.until - d.since) / MINUTE_MS,
        measured_ms,
        blind_ms: d.blind.iter().map(|b| b.ms()).sum(),
        blind_spots: d.blind.len(),
        uptime: (measured_ms > 0).then(|| (1.0 - downtime_ms as f64 / measured_ms as f64).clamp(0.0, 1.0)),
        wan_outages: wan.len(),
        lan_outages: d.outages.iter().filter(|o| o.kind == OutageKind::Lan).count(),
        downtime_ms,
        longest_ms: wan.iter().map(|o| clip(o)).max().unwrap_or(0),
        median_ms: crate::stats::median(up().filter_map(|m| m.median_ms)),
        p95_ms: crate::stats::quantile(up().filter_map(|m| m.p95_ms), 0.95),
        loss: (sent > 0).then(|| lost as f64 / sent as f64),
        speed_tests: d.speed.len(),
        down_median_mbps: crate::stats::median(downs.iter().copied()),
        up_median_mbps: crate::stats::median(d.speed.iter().filter_map(|t| t.up_mbps)),
        below_half_plan: plan.down_mbps.map_or(0, |p| downs.iter().filter(|&&x| x < p / 2.0).count()),
        anomalies: d.events.iter().filter(|e| e.kind == EventKind::Anomaly).count(),
        predictions: d.events.iter().filter(|e| e.kind == EventKind::Prediction).count(),
    }
}

/// The part of the blind spots that falls inside minutes that have samples: a 30 s stall in
/// an otherwise measured minute is 30 s not measured, not a full minute measured.
fn blind_inside_measured(d: &Data) -> i64 {
    let measured: std::collections::HashSet<WallMs> = d.minutes.iter().filter(|m| m.sent > 0).map(|m| m.ts).collect();
    let mut total = 0;
    for b in &d.blind {
        let mut m = b.start - b.start.rem_euclid(MINUTE_MS);
        while m < b.end {
            if measured.contains(&m) {
                total += (b.end.min(m + MINUTE_MS) - b.start.max(m)).max(0);
            }
            m += MINUTE_MS;
        }
    }
    total
}

/// Everything one report shows.
pub struct Report {
    pub data: Data,
    pub summary: Summary,
    pub analysis: Analysis,
    pub plan: Plan,
    /// Local offset from UTC (seconds) at the report's end, for labels.
    pub offset_s: i64,
}

/// Read, summarise and analyse `[since, until)`; `progress` hears each stage's name.
/// Weeks of history the "best for big downloads" advice looks at.
pub const ADVICE_WEEKS: i64 = 4;

/// The best 3 hours for big downloads starting within the next day, from the last
/// [`ADVICE_WEEKS`] weeks, in local time (the OLED's and the dashboard's "best times").
pub fn next_download_window(store: &Store, now: WallMs) -> Result<Option<correlate::NextWindow>, StoreError> {
    let minutes = data::link_minutes(store, now - ADVICE_WEEKS * 7 * crate::calendar::DAY_MS, now)?;
    let cells = correlate::time_of_week(&minutes, crate::calendar::local_offset_s);
    let now_how = crate::calendar::hour_of_week(now, crate::calendar::local_offset_s(now));
    Ok(correlate::next_best(&cells, now_how, 3))
}

pub fn build(
    store: &Store,
    since: WallMs,
    until: WallMs,
    plan: Plan,
    progress: &dyn Fn(&str),
) -> Result<Report, StoreError> {
    let data = Data::load(store, since, until, progress)?;
    let summary = summarise(&data, &plan);
    let analysis = correlate::analyse(&data.minutes, crate::calendar::local_offset_s);
    progress("analysis");
    Ok(Report { summary, analysis, plan, offset_s: crate::calendar::local_offset_s(until), data })
}

/// The stages `build` and `render::html` report to `progress`, for a progress bar's length.
pub const STAGES: u64 = 7;
