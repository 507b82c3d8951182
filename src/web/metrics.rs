//! `/metrics` in the Prometheus text format, read from the database at scrape time.
//!
//! Conventions: every name starts with `wanwatch_`, values are in base units (seconds, bits per
//! second, ratios 0-1, degrees Celsius), labels are only the few configured targets, radios
//! and probe subjects, never a per-event value. Per-target figures are the newest complete
//! minute in the database (the agent flushes at least once a minute).

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::calendar::{DAY_MS, HOUR_MS};
use crate::sample::{EventKind, LinkState, OutageKind, WallMs};
use crate::series::{self, Series};
use crate::store::{Store, StoreError};

type Labels = Vec<(String, String)>;
type GaugeF = Gauge<f64, AtomicU64>;
type CounterF = Counter<f64, AtomicU64>;

pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// How a context series is exported: (probe, name) -> (metric name, help, scale to base unit).
const CONTEXT: &[(Series, &str, &str, f64)] = &[
    (series::DNS_LATENCY, "wanwatch_dns_latency_seconds", "Time to resolve a name, per name@server.", 1e-3),
    (series::HTTP_TTFB, "wanwatch_http_ttfb_seconds", "Time to first byte of an HTTP(S) fetch.", 1e-3),
    (series::HTTP_TOTAL, "wanwatch_http_total_seconds", "Total time of an HTTP(S) fetch.", 1e-3),
    (series::DOWN_MBPS, "wanwatch_bandwidth_down_bits_per_second", "Last speed test, download.", 1e6),
    (series::UP_MBPS, "wanwatch_bandwidth_up_bits_per_second", "Last speed test, upload.", 1e6),
    (series::BUFFERBLOAT_MS, "wanwatch_bandwidth_bufferbloat_seconds", "Latency added under load.", 1e-3),
    (series::RSRP, "wanwatch_gateway_rsrp_dbm", "Gateway reference signal received power.", 1.0),
    (series::RSRQ, "wanwatch_gateway_rsrq_db", "Gateway reference signal received quality.", 1.0),
    (series::SINR, "wanwatch_gateway_sinr_db", "Gateway signal to interference and noise.", 1.0),
    (series::GATEWAY_UPTIME, "wanwatch_gateway_uptime_seconds", "Gateway uptime as it reports it.", 1.0),
    (series::TEMP, "wanwatch_weather_temperature_celsius", "Outside temperature.", 1.0),
    (series::PRECIP, "wanwatch_weather_precipitation_mm_per_hour", "Rain or snow rate.", 1.0),
    (series::WIND, "wanwatch_weather_wind_meters_per_second", "Wind speed.", 1.0 / 3.6),
    (series::DEVICES, "wanwatch_lan_devices", "Devices in the Pi's neighbour table.", 1.0),
    (series::CPU, "wanwatch_system_cpu_ratio", "The Pi's CPU use.", 0.01),
    (series::MEM_USED, "wanwatch_system_memory_used_ratio", "The Pi's memory use.", 0.01),
    (series::SOC_TEMP, "wanwatch_system_temperature_celsius", "The Pi's SoC temperature.", 1.0),
    (
        series::SYSLOG_DROPPED,
        "wanwatch_syslog_dropped_lines",
        "Router log lines not stored since the agent started, by reason (subject).",
        1.0,
    ),
];

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Render every metric as of `now`.
pub fn render(store: &Store, now: WallMs) -> Result<String, StoreError> {
    let mut reg = Registry::default();
    let gauge = |reg: &mut Registry, name: &str, help: &str| {
        let g = Family::<Labels, GaugeF>::default();
        reg.register(name, help, g.clone());
        g
    };

    let info = gauge(&mut reg, "wanwatch_build_info", "Always 1; the version is a label.");
    info.get_or_create(&labels(&[("version", env!("CARGO_PKG_VERSION"))])).set(1.0);

    let agent = store.agent_status()?;
    let state = gauge(&mut reg, "wanwatch_link_state", "1 for the link's current state, 0 for the others.");
    for s in LinkState::ALL {
        state.get_or_create(&labels(&[("state", s.as_str())])).set(f64::from(u8::from(agent.state == s)));
    }
    if let Some(since) = agent.since {
        gauge(&mut reg, "wanwatch_link_state_since_timestamp_seconds", "When the current state began.")
            .get_or_create(&Vec::new())
            .set(since as f64 / 1000.0);
    }
    if let Some(hb) = agent.heartbeat {
        gauge(&mut reg, "wanwatch_last_sample_timestamp_seconds", "The newest ping in the database.")
            .get_or_create(&Vec::new())
            .set(hb as f64 / 1000.0);
    }

    let rtt = gauge(&mut reg, "wanwatch_rtt_median_seconds", "Median round trip in the newest complete minute.");
    let p95 = gauge(&mut reg, "wanwatch_rtt_p95_seconds", "95th percentile round trip in the newest complete minute.");
    let jitter = gauge(
        &mut reg,
        "wanwatch_jitter_seconds",
        "Mean difference of successive round trips, newest complete minute.",
    );
    let loss = gauge(&mut reg, "wanwatch_loss_ratio", "Share of pings lost (0-1) in the newest complete minute.");
    for m in store.newest_minutes(now)? {
        let l = labels(&[("target", &m.target), ("role", &m.role)]);
        if m.sent > 0 {
            loss.get_or_create(&l).set(f64::from(m.lost) / f64::from(m.sent));
        }
        for (family, v) in [(&rtt, m.median_us), (&p95, m.p95_us), (&jitter, m.jitter_us)] {
            if let Some(us) = v {
                family.get_or_create(&l).set(us as f64 / 1e6);
            }
        }
    }

    let refused = Family::<Labels, CounterF>::default();
    reg.register(
        "wanwatch_web_refused_connections",
        "Connections the dashboard closed unserved since the agent started, by reason.",
        refused.clone(),
    );
    for (reason, n) in super::REFUSED_REASONS.iter().zip(&super::REFUSED) {
        refused
            .get_or_create(&labels(&[("reason", reason)]))
            .inc_by(n.load(std::sync::atomic::Ordering::Relaxed) as f64);
    }

    let outages = Family::<Labels, CounterF>::default();
    reg.register(
        "wanwatch_outages",
        "Outages recorded, by kind (lan: the gateway; wan: the internet).",
        outages.clone(),
    );
    let outage_s = Family::<Labels, CounterF>::default();
    reg.register(
        "wanwatch_outage_seconds",
        "Time spent in outages, by kind (ongoing ones up to now).",
        outage_s.clone(),
    );
    let totals = store.outage_totals(now)?;
    for kind in OutageKind::ALL {
        let (n, ms) = totals.iter().find(|t| t.kind == kind).map_or((0, 0), |t| (t.count, t.ms));
        outages.get_or_create(&labels(&[("kind", kind.as_str())])).inc_by(n as f64);
        outage_s.get_or_create(&labels(&[("kind", kind.as_str())])).inc_by(ms as f64 / 1000.0);
    }
    let events = Family::<Labels, CounterF>::default();
    reg.register("wanwatch_detections", "Detector events: anomaly and prediction.", events.clone());
    for kind in [EventKind::Anomaly, EventKind::Prediction] {
        let n = store.count_events(kind)?;
        events.get_or_create(&labels(&[("kind", kind.as_str())])).inc_by(n as f64);
    }

    // Context probes: the newest value of each series, while it is still current (two hours;
    // two days for speed tests, which run a few times a day at most).
    let latest = store.latest_metrics(now - 2 * DAY_MS)?;
    for &(key, metric, help, scale) in CONTEXT {
        // Speed tests are hours apart; drop totals are written only when they change.
        let max_age = match key.probe {
            "bandwidth" => 2 * DAY_MS,
            "syslog" => 30 * DAY_MS,
            _ => 2 * HOUR_MS,
        };
        let values: Vec<_> =
            latest.iter().filter(|l| l.is(key) && l.value.is_some() && now - l.ts <= max_age).collect();
        if values.is_empty() {
            continue;
        }
        let family = gauge(&mut reg, metric, help);
        for l in values {
            let label = match key.probe {
                "gateway" => "radio",
                "dns" | "http" | "bandwidth" => "subject",
                "syslog" => "reason",
                _ => "",
            };
            let ls = if label.is_empty() { Vec::new() } else { labels(&[(label, &l.subject)]) };
            family.get_or_create(&ls).set(l.value.unwrap_or_default() * scale);
        }
    }
    let mut out = String::new();
    prometheus_text::encode(&mut out, &reg).expect("writing to a String cannot fail");
    Ok(out)
}
