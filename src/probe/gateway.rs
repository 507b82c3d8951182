//! The 5G gateway's radio, read from its no-login local API: T-Mobile's `/TMI/v1/gateway?get=all`
//! (Arcadyan KVD21/G4AR/G5AR, Sagemcom 5688W, Sercomm G4SE) or Nokia 5G21's
//! `/fastmile_radio_status_web_app.cgi`. Which one answers at the default gateway is detected;
//! with neither, the probe sleeps and tries again hourly.
//!
//! Gateways send -32768 for "no signal" and sometimes truncated or odd JSON: such values are
//! stored as failures with a note, never as numbers that would look like a terrible signal.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

use super::ProbeError;
use super::http::{agent_without_redirects, get};
use super::{Ctx, blocking};
use crate::config::probes::{GatewayApiConfig, GatewayKind};
use crate::sample::{EventKind, Metric};
use crate::series;

const TMOBILE_PATH: &str = "/TMI/v1/gateway?get=all";
const NOKIA_PATH: &str = "/fastmile_radio_status_web_app.cgi";
const REDETECT: Duration = Duration::from_secs(3600);

/// One radio's numbers; None where the gateway gave none (or "no signal").
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Radio {
    pub name: &'static str,
    pub rsrp: Option<f64>,
    pub rsrq: Option<f64>,
    pub rssi: Option<f64>,
    pub sinr: Option<f64>,
    pub bars: Option<f64>,
    pub bands: Vec<String>,
    pub cid: Option<i64>,
    /// eNB ID (4G) or gNB ID (5G).
    pub node: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reading {
    pub radios: Vec<Radio>,
    pub uptime_s: Option<i64>,
}

/// A signal value, or None for missing, non-numeric, "no signal" (-32768 and friends) or
/// physically impossible values.
fn signal(v: Option<&Value>, lo: f64, hi: f64) -> Option<f64> {
    let x = v?.as_f64()?;
    (x > -32768.0 && (lo..=hi).contains(&x)).then_some(x)
}

fn int(v: Option<&Value>) -> Option<i64> {
    v?.as_i64().filter(|&x| x >= 0)
}

pub fn parse_tmobile(body: &[u8]) -> Result<Reading, ProbeError> {
    let v: Value = serde_json::from_slice(body)?;
    let signal_obj = v.get("signal").and_then(Value::as_object).ok_or("no `signal` object")?;
    let mut radios = Vec::new();
    for (name, node_key) in [("4g", "eNBID"), ("5g", "gNBID")] {
        let Some(r) = signal_obj.get(name) else { continue };
        let bands = r
            .get("bands")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
            .unwrap_or_default();
        radios.push(Radio {
            name,
            rsrp: signal(r.get("rsrp"), -160.0, -20.0),
            rsrq: signal(r.get("rsrq"), -40.0, 10.0),
            rssi: signal(r.get("rssi"), -140.0, 0.0),
            sinr: signal(r.get("sinr"), -30.0, 60.0),
            bars: signal(r.get("bars"), 0.0, 5.0),
            bands,
            cid: int(r.get("cid")),
            node: int(r.get(node_key)),
        });
    }
    if radios.is_empty() {
        return Err(ProbeError::Missing("no 4g or 5g radio in `signal`"));
    }
    // A negative uptime is garbage, not a reading (and would fake a reboot).
    let uptime_s = v.pointer("/time/upTime").and_then(Value::as_i64).filter(|u| *u >= 0);
    Ok(Reading { radios, uptime_s })
}

pub fn parse_nokia(body: &[u8]) -> Result<Reading, ProbeError> {
    let v: Value = serde_json::from_slice(body)?;
    let mut radios = Vec::new();
    for (name, key) in [("4g", "cell_LTE_stats_cfg"), ("5g", "cell_5G_stats_cfg")] {
        let Some(stat) = v.get(key).and_then(|a| a.get(0)).and_then(|c| c.get("stat")) else { continue };
        let band = stat.get("Band").and_then(Value::as_str).filter(|b| !b.is_empty());
        radios.push(Radio {
            name,
            rsrp: signal(stat.get("RSRPCurrent"), -160.0, -20.0),
            rsrq: signal(stat.get("RSRQCurrent"), -40.0, 10.0),
            rssi: signal(stat.get("RSSICurrent"), -140.0, 0.0),
            sinr: signal(stat.get("SNRCurrent"), -30.0, 60.0),
            bars: signal(stat.get("SignalStrengthLevel"), 0.0, 5.0),
            bands: band.map(|b| vec![b.to_string()]).unwrap_or_default(),
            cid: int(stat.get("PhysicalCellID")),
            node: None,
        });
    }
    if radios.is_empty() {
        return Err(ProbeError::Missing("no cell_LTE_stats_cfg or cell_5G_stats_cfg"));
    }
    Ok(Reading { radios, uptime_s: None })
}

fn parse(kind: GatewayKind, body: &[u8]) -> Result<Reading, ProbeError> {
    match kind {
        GatewayKind::Nokia => parse_nokia(body),
        _ => parse_tmobile(body),
    }
}

fn path(kind: GatewayKind) -> &'static str {
    if kind == GatewayKind::Nokia { NOKIA_PATH } else { TMOBILE_PATH }
}

/// What changed since the last reading, as events worth keeping.
pub fn changes(prev: &Reading, now: &Reading) -> Vec<(EventKind, String)> {
    let mut out = Vec::new();
    if let (Some(a), Some(b)) = (prev.uptime_s, now.uptime_s)
        && b < a
    {
        out.push((EventKind::GatewayReboot, format!("gateway uptime fell from {a} s to {b} s: it rebooted")));
    }
    for r in &now.radios {
        let Some(p) = prev.radios.iter().find(|p| p.name == r.name) else { continue };
        if p.bands != r.bands {
            out.push((
                EventKind::GatewayBand,
                format!("{} band {} -> {}", r.name, p.bands.join("+"), r.bands.join("+")),
            ));
        }
        if (p.cid, p.node) != (r.cid, r.node) && r.cid.is_some() {
            let show = |c: Option<i64>, n: Option<i64>| {
                format!("{}/{}", n.map_or("?".into(), |x| x.to_string()), c.map_or("?".into(), |x| x.to_string()))
            };
            out.push((
                EventKind::GatewayCell,
                format!("{} cell {} -> {}", r.name, show(p.node, p.cid), show(r.node, r.cid)),
            ));
        }
    }
    out
}

/// One reading of the API `kind` at `base`.
pub async fn fetch(base: &str, kind: GatewayKind, timeout: Duration) -> Result<Reading, ProbeError> {
    let (a, url) = (agent_without_redirects(timeout), format!("{base}{}", path(kind)));
    let f = blocking(timeout + Duration::from_secs(1), move || get(&a, &url, 1 << 20)).await??;
    if f.status != 200 {
        return Err(ProbeError::Status(f.status));
    }
    parse(kind, &f.body)
}

/// Which API answers at `base`, if any.
pub async fn detect(base: &str, timeout: Duration) -> Option<GatewayKind> {
    for kind in [GatewayKind::Tmobile, GatewayKind::Nokia] {
        if fetch(base, kind, timeout).await.is_ok() {
            return Some(kind);
        }
    }
    None
}

pub async fn run(cfg: GatewayApiConfig, gateway: Option<IpAddr>, ctx: Ctx) {
    let base = match (cfg.url.as_str(), gateway) {
        ("auto", Some(gw)) => format!("http://{gw}"),
        ("auto", None) => {
            tracing::info!("gateway API: no IPv4 default gateway to ask; probe off");
            return;
        }
        (url, _) => url.trim_end_matches('/').to_string(),
    };
    let mut prev: Option<Reading> = None;
    loop {
        let kind = match cfg.kind {
            GatewayKind::Auto => match detect(&base, cfg.timeout).await {
                Some(k) => k,
                None => {
                    tracing::info!("gateway API: none found at {base} (T-Mobile or Nokia); trying again in an hour");
                    if !ctx.sleep(REDETECT).await {
                        return;
                    }
                    continue;
                }
            },
            k => k,
        };
        tracing::info!(?kind, "gateway API found at {base}");
        let mut failures = 0;
        loop {
            let ts = ctx.now();
            match fetch(&base, kind, cfg.timeout).await {
                Ok(r) => {
                    failures = 0;
                    for radio in &r.radios {
                        for (key, v) in [
                            (series::RSRP, radio.rsrp),
                            (series::RSRQ, radio.rsrq),
                            (series::RSSI, radio.rssi),
                            (series::SINR, radio.sinr),
                            (series::BARS, radio.bars),
                        ] {
                            let m = match v {
                                Some(v) => Metric::new(ts, key, radio.name, v),
                                None => Metric::failed(ts, key, radio.name, "no signal"),
                            };
                            ctx.metric(m).await;
                        }
                        if !radio.bands.is_empty() {
                            let m = Metric::new(ts, series::BANDS, radio.name, radio.bands.len() as f64);
                            ctx.metric(Metric { note: Some(radio.bands.join(",")), ..m }).await;
                        }
                        for (key, v) in [(series::CELL_ID, radio.cid), (series::NODE_ID, radio.node)] {
                            if let Some(v) = v {
                                ctx.metric(Metric::new(ts, key, radio.name, v as f64)).await;
                            }
                        }
                    }
                    if let Some(up) = r.uptime_s {
                        ctx.metric(Metric::new(ts, series::GATEWAY_UPTIME, "gateway", up as f64)).await;
                    }
                    if let Some(p) = &prev {
                        for (kind, detail) in changes(p, &r) {
                            ctx.event(kind, detail).await;
                        }
                    }
                    prev = Some(r);
                }
                Err(why) => {
                    failures += 1;
                    ctx.metric(Metric::failed(ts, series::GATEWAY_POLL, "gateway", why)).await;
                }
            }
            if !ctx.sleep(cfg.interval).await {
                return;
            }
            // The gateway was swapped or its API changed: look again.
            if failures >= 10 && cfg.kind == GatewayKind::Auto {
                break;
            }
        }
    }
}
