//! Bandwidth and latency under load, at a random time in every period (default 4 h), within a
//! monthly data budget.
//!
//! Like the speed tests people trust: idle latency first; then a ramp of request sizes, each step
//! run on 2-4 parallel streams, stopping once a step takes about a second (so a slow link is not
//! flooded and a fast one is measured on a real transfer); the throughput of the last step counts.
//! During the transfers a latency request goes out every 100 ms on its own connection: the
//! median of those is the loaded latency, and bufferbloat is loaded minus idle. Responsiveness is
//! reported as RPM = 60000 / loaded latency (IETF responsiveness draft).

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::ProbeError;
use super::{Ctx, blocking};
use crate::config::probes::{BandwidthConfig, SpeedServer};
use crate::sample::Metric;
use crate::series::{self, Series};

/// Bytes per stream of each ramp step.
const RAMP: [u64; 6] = [100_000, 1_000_000, 5_000_000, 25_000_000, 100_000_000, 250_000_000];
const LATENCY_EVERY: Duration = Duration::from_millis(100);

/// Everything one test measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpeedResult {
    pub down_mbps: Option<f64>,
    pub up_mbps: Option<f64>,
    pub idle_ms: Option<f64>,
    pub loaded_down_ms: Option<f64>,
    pub loaded_up_ms: Option<f64>,
    pub bytes: u64,
    /// Why the test stopped early or a part is missing (budget, errors).
    pub notes: Vec<String>,
    /// When the step each figure comes from started and ended (to compare with what else the
    /// link or the machine was doing then).
    pub down_step: Option<(Instant, Instant)>,
    pub up_step: Option<(Instant, Instant)>,
}

impl SpeedResult {
    pub fn loaded_ms(&self) -> Option<f64> {
        match (self.loaded_down_ms, self.loaded_up_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Where to send what, for one kind of server.
struct Endpoints {
    base: String,
    kind: SpeedServer,
}

impl Endpoints {
    fn down(&self, bytes: u64) -> String {
        match self.kind {
            SpeedServer::Cloudflare => format!("{}/__down?bytes={bytes}", self.base),
            // LibreSpeed serves chunks of 1 MiB.
            SpeedServer::Librespeed => format!("{}/garbage.php?ckSize={}", self.base, bytes.div_ceil(1 << 20).max(1)),
        }
    }
    fn up(&self) -> String {
        match self.kind {
            SpeedServer::Cloudflare => format!("{}/__up", self.base),
            SpeedServer::Librespeed => format!("{}/empty.php", self.base),
        }
    }
    fn ping(&self) -> String {
        match self.kind {
            SpeedServer::Cloudflare => format!("{}/__down?bytes=0", self.base),
            SpeedServer::Librespeed => format!("{}/empty.php", self.base),
        }
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .user_agent(concat!("wanwatch/", env!("CARGO_PKG_VERSION")))
        // Measure the wire, not the decompressor.
        .accept_encoding("identity")
        .build()
        .into()
}

/// One latency request on a kept-alive connection: about one round trip.
fn ping_once(a: &ureq::Agent, url: &str) -> Result<f64, ProbeError> {
    let t = Instant::now();
    let resp = a.get(url).call()?;
    let mut sink = Vec::new();
    resp.into_body().into_reader().take(64 << 10).read_to_end(&mut sink)?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// Latency requests every 100 ms until `done`; the RTTs measured.
fn sample_latency(url: String, timeout: Duration, done: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<f64>> {
    std::thread::spawn(move || {
        let a = agent(timeout);
        let mut out = Vec::new();
        while !done.load(Ordering::SeqCst) {
            let t = Instant::now();
            if let Ok(ms) = ping_once(&a, &url) {
                out.push(ms);
            }
            std::thread::sleep(LATENCY_EVERY.saturating_sub(t.elapsed()));
        }
        out
    })
}

/// What one direction's ramp measured.
struct Ramp {
    /// Mbit/s of the last complete step, and when that step ran.
    mbps: Option<f64>,
    step: Option<(Instant, Instant)>,
    loaded_ms: Option<f64>,
    bytes: u64,
}

/// One direction's ramp.
fn ramp(cfg: &BandwidthConfig, ep: &Endpoints, upload: bool, budget_left: &mut u64, notes: &mut Vec<String>) -> Ramp {
    let done = Arc::new(AtomicBool::new(false));
    let sampler = sample_latency(ep.ping(), cfg.timeout, done.clone());
    let mut best = None;
    let mut step = None;
    let mut used = 0u64;
    for &size in &RAMP {
        let step_bytes = size * cfg.streams as u64;
        if step_bytes > *budget_left {
            notes.push(format!(
                "{}: stopped at {:.1} MB per stream by the monthly budget",
                if upload { "upload" } else { "download" },
                size as f64 / 1e6
            ));
            break;
        }
        let started = Instant::now();
        let handles: Vec<_> = (0..cfg.streams)
            .map(|_| {
                let (url, timeout) = (if upload { ep.up() } else { ep.down(size) }, cfg.timeout);
                std::thread::spawn(move || -> Result<u64, ProbeError> {
                    let a = agent(timeout);
                    if upload {
                        let body = vec![0u8; size as usize];
                        let resp = a.post(&url).send(&body[..])?;
                        let mut sink = Vec::new();
                        let _ = resp.into_body().into_reader().take(1 << 20).read_to_end(&mut sink);
                        Ok(size)
                    } else {
                        let resp = a.get(&url).call()?;
                        Ok(std::io::copy(&mut resp.into_body().into_reader(), &mut std::io::sink())?)
                    }
                })
            })
            .collect();
        let results: Vec<Result<u64, ProbeError>> =
            handles.into_iter().map(|h| h.join().unwrap_or(Err(ProbeError::Panicked))).collect();
        let secs = started.elapsed().as_secs_f64();
        let moved: u64 = results.iter().filter_map(|r| r.as_ref().ok()).sum();
        used += moved;
        *budget_left = budget_left.saturating_sub(moved);
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            notes.push(format!("{}: {e}", if upload { "upload" } else { "download" }));
            break;
        }
        best = Some(moved as f64 * 8.0 / secs / 1e6);
        step = Some((started, Instant::now()));
        if secs >= cfg.step_target.as_secs_f64() {
            break;
        }
    }
    done.store(true, Ordering::SeqCst);
    let loaded = sampler.join().ok().and_then(crate::stats::median);
    Ramp { mbps: best, step, loaded_ms: loaded, bytes: used }
}

/// A whole test, blocking. `budget_left` is what this month still allows, in bytes.
pub fn measure(cfg: &BandwidthConfig, mut budget_left: u64) -> SpeedResult {
    let ep = Endpoints { base: cfg.url.trim_end_matches('/').to_string(), kind: cfg.server };
    let mut r = SpeedResult::default();
    let a = agent(cfg.timeout);
    let idle: Vec<f64> = (0..5).filter_map(|_| ping_once(&a, &ep.ping()).ok()).collect();
    if idle.is_empty() {
        r.notes.push("speed server unreachable".into());
        return r;
    }
    r.idle_ms = crate::stats::median(idle);
    let down = ramp(cfg, &ep, false, &mut budget_left, &mut r.notes);
    let up = ramp(cfg, &ep, true, &mut budget_left, &mut r.notes);
    r.down_mbps = down.mbps;
    r.up_mbps = up.mbps;
    r.down_step = down.step;
    r.up_step = up.step;
    r.loaded_down_ms = down.loaded_ms;
    r.loaded_up_ms = up.loaded_ms;
    r.bytes = down.bytes + up.bytes;
    r
}

/// Bytes the bandwidth tests used since the start of this UTC month, from the database.
pub fn used_this_month(db: &std::path::Path, now: i64) -> u64 {
    let month_start = {
        let t = time::OffsetDateTime::from_unix_timestamp(now / 1000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let first = t.replace_day(1).unwrap_or(t).replace_time(time::Time::MIDNIGHT);
        first.unix_timestamp() * 1000
    };
    let Ok(store) = crate::store::Store::open_read_only(db) else { return 0 };
    store.sum_since(series::SPEED_TEST_BYTES, month_start).map(|b| b as u64).unwrap_or(0)
}

pub async fn run(cfg: BandwidthConfig, ctx: Ctx) {
    let budget = cfg.monthly_budget_mb * 1_000_000;
    // Bytes used by tests of this run not yet visible in the database (the writer batches).
    let mut unflushed = 0u64;
    loop {
        // A random moment in the period, so tests do not always hit the same hour.
        let wait = cfg.every.mul_f64(rand::random::<f64>());
        if !ctx.sleep(wait).await {
            return;
        }
        let used = used_this_month(&ctx.db, ctx.now()) + unflushed;
        let left = budget.saturating_sub(used);
        let ts = ctx.now();
        let c = cfg.clone();
        let deadline = cfg.timeout * (2 * RAMP.len() as u32 + 2);
        match blocking(deadline, move || measure(&c, left)).await {
            Ok(r) => {
                unflushed += r.bytes;
                let subject = cfg.url.as_str();
                let put = |key: Series, v: Option<f64>| v.map(|v| Metric::new(ts, key, subject, v));
                let loaded = r.loaded_ms();
                let metrics: Vec<Metric> = [
                    put(series::DOWN_MBPS, r.down_mbps),
                    put(series::UP_MBPS, r.up_mbps),
                    put(series::IDLE_MS, r.idle_ms),
                    put(series::LOADED_DOWN_MS, r.loaded_down_ms),
                    put(series::LOADED_UP_MS, r.loaded_up_ms),
                    put(series::BUFFERBLOAT_MS, loaded.zip(r.idle_ms).map(|(l, i)| (l - i).max(0.0))),
                    put(series::RPM, loaded.filter(|l| *l > 0.0).map(|l| 60_000.0 / l)),
                    put(series::SPEED_TEST_BYTES, Some(r.bytes as f64)),
                ]
                .into_iter()
                .flatten()
                .collect();
                for m in metrics {
                    ctx.metric(m).await;
                }
                if !r.notes.is_empty() {
                    ctx.metric(Metric::failed(ts, series::SPEED_TEST_NOTES, subject, r.notes.join("; "))).await;
                }
            }
            Err(why) => ctx.metric(Metric::failed(ts, series::DOWN_MBPS, &cfg.url, why)).await,
        }
        // The rest of this period.
        if !ctx.sleep(cfg.every.saturating_sub(wait)).await {
            return;
        }
    }
}
