//! One hour of this home, as the community sees it: counts and summaries only, timestamped at the
//! hour, labelled with the household's coarse region, its carrier, the radio technology, a random
//! install id and the local hour of day. Nothing finer: no target, no address, no cell.

use crate::calendar::{HOUR_MS, MINUTE_MS};
use crate::report::data::link_minutes;
use crate::sample::{OutageKind, WallMs};
use crate::series;
use crate::stats::quantile_sorted as quantile;
use crate::store::{Store, StoreError};

use super::remote_write::TimeSeries;

/// Who is speaking: the labels every series carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub region: String,
    pub carrier: String,
    /// Random, rotatable (`wanwatch community --rotate-id`).
    pub install: String,
}

/// The SINR bucket (dB) of a median SINR.
pub fn sinr_bucket(sinr: f64) -> &'static str {
    match sinr {
        s if s < 0.0 => "<0",
        s if s < 10.0 => "0-10",
        s if s < 20.0 => "10-20",
        _ => "20+",
    }
}

/// The series for the hour starting at `hour` (UTC ms, on the hour); empty when nothing was
/// measured in it. `local_hour` is the hour of day the household lives it (for "evenings").
pub fn hour_series(store: &Store, id: &Identity, hour: WallMs, local_hour: u32) -> Result<Vec<TimeSeries>, StoreError> {
    let end = hour + HOUR_MS;
    let minutes = link_minutes(store, hour, end)?;
    if minutes.is_empty() {
        return Ok(Vec::new());
    }
    // The radio decides the technology label.
    let bands = store.readings(series::BANDS, hour, end)?;
    let notes: Vec<&str> = bands.iter().filter_map(|r| r.note.as_deref()).collect();
    let tech = if notes.iter().any(|n| n.split(',').any(|b| b.starts_with('n'))) {
        "5g"
    } else if !notes.is_empty() {
        "lte"
    } else {
        "unknown"
    };
    let hour_label = local_hour.to_string();
    let base: Vec<(&str, &str)> = vec![
        ("region", &id.region),
        ("carrier", &id.carrier),
        ("tech", tech),
        ("install", &id.install),
        ("hour", &hour_label),
    ];
    let one = |name: &str, extra: &[(&str, &str)], v: f64| {
        let labels: Vec<(&str, &str)> = base.iter().chain(extra).copied().collect();
        TimeSeries::one(name, &labels, v, hour)
    };
    let mut out = Vec::new();
    let up: Vec<_> = minutes.iter().filter(|m| !m.down).collect();
    out.push(one("wanwatch_community_measured_minutes", &[], minutes.len() as f64));
    out.push(one("wanwatch_community_pings_sent", &[], up.iter().map(|m| m.sent as f64).sum()));
    out.push(one("wanwatch_community_pings_lost", &[], up.iter().map(|m| m.lost as f64).sum()));
    let mut medians: Vec<f64> = up.iter().filter_map(|m| m.median_ms).collect();
    medians.sort_by(f64::total_cmp);
    let mut p95s: Vec<f64> = up.iter().filter_map(|m| m.p95_ms).collect();
    p95s.sort_by(f64::total_cmp);
    if let (Some(p50), Some(p95)) = (quantile(&medians, 0.5), quantile(&p95s, 0.95)) {
        out.push(one("wanwatch_community_latency_ms", &[("quantile", "0.5")], p50));
        out.push(one("wanwatch_community_latency_ms", &[("quantile", "0.95")], p95));
    }
    // Outage minutes by kind, clipped to the hour (an ongoing one to the end of what was measured).
    let measured_end = minutes.last().map_or(end, |m| m.ts + MINUTE_MS).min(end);
    let outages = store.outages_between(hour, end)?;
    for kind in OutageKind::ALL {
        let ms: i64 = outages
            .iter()
            .filter(|o| o.kind == kind)
            .map(|o| o.end.unwrap_or(measured_end).min(end) - o.start.max(hour))
            .filter(|d| *d > 0)
            .sum();
        out.push(one("wanwatch_community_outage_minutes", &[("kind", kind.as_str())], ms as f64 / MINUTE_MS as f64));
    }
    // Speed tests and latency under load, when one ran in the hour.
    for (name, key) in [
        ("wanwatch_community_download_mbps", series::DOWN_MBPS),
        ("wanwatch_community_upload_mbps", series::UP_MBPS),
        ("wanwatch_community_loaded_latency_ms", series::BUFFERBLOAT_MS),
    ] {
        let v: Vec<f64> = store.readings(key, hour, end)?.iter().filter_map(|r| r.value).collect();
        if !v.is_empty() {
            out.push(one(name, &[], v.iter().sum::<f64>() / v.len() as f64));
        }
    }
    // The radio: the band the gateway used most and the SINR's bucket, as labels of a 1.
    let mut sinr: Vec<f64> = store.readings(series::SINR, hour, end)?.iter().filter_map(|r| r.value).collect();
    sinr.sort_by(f64::total_cmp);
    if let Some(med) = quantile(&sinr, 0.5) {
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for n in &notes {
            *counts.entry(n).or_default() += 1;
        }
        // "n41,n71" (carrier aggregation) as "n41+n71": no commas in a label.
        let band = counts.into_iter().max_by_key(|(_, c)| *c).map_or("unknown", |(b, _)| b).replace(',', "+");
        out.push(one("wanwatch_community_radio", &[("band", &band), ("sinr_bucket", sinr_bucket(med))], 1.0));
    }
    Ok(out)
}
