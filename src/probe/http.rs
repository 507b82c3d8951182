//! HTTP(S) timing with ureq: time to the response headers (TTFB, which includes DNS, connect and
//! TLS: ureq does not expose those phases separately) and total time, status and size. The
//! fetch helper here is also what the gateway and weather probes use.

use std::io::Read;
use std::time::{Duration, Instant};

use super::ProbeError;
use super::{Ctx, blocking};
use crate::config::probes::HttpConfig;
use crate::sample::Metric;
use crate::series;

/// Bodies are read (and timed) up to this size; the rest is not downloaded.
const MAX_BODY: u64 = 2 << 20;

#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    pub ttfb_ms: f64,
    pub total_ms: f64,
    pub body: Vec<u8>,
}

/// An agent with an overall deadline that treats every HTTP status as a response, not an error.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("wanwatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// The same, never following a redirect: a device on the LAN (the gateway) answers for itself
/// or not at all, and is not allowed to send the Pi somewhere else.
pub fn agent_without_redirects(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("wanwatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// GET `url` (blocking). The body is read up to `limit` bytes.
pub fn get(agent: &ureq::Agent, url: &str, limit: u64) -> Result<Fetched, ProbeError> {
    let started = Instant::now();
    let resp = agent.get(url).call()?;
    let ttfb_ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    resp.into_body().into_reader().take(limit).read_to_end(&mut body)?;
    Ok(Fetched { status, ttfb_ms, total_ms: started.elapsed().as_secs_f64() * 1000.0, body })
}

pub async fn run(cfg: HttpConfig, ctx: Ctx) {
    let agent = agent(cfg.timeout);
    ctx.every(Duration::from_secs(3), cfg.interval, || async {
        for url in &cfg.urls {
            let (a, u) = (agent.clone(), url.clone());
            let result = blocking(cfg.timeout + Duration::from_secs(1), move || get(&a, &u, MAX_BODY)).await;
            let ts = ctx.now();
            match result.and_then(|r| r) {
                Ok(f) => {
                    for (key, v) in [
                        (series::HTTP_TTFB, f.ttfb_ms),
                        (series::HTTP_TOTAL, f.total_ms),
                        (series::HTTP_STATUS, f.status as f64),
                        (series::HTTP_BYTES, f.body.len() as f64),
                    ] {
                        ctx.metric(Metric::new(ts, key, url, v)).await;
                    }
                }
                Err(why) => ctx.metric(Metric::failed(ts, series::HTTP_TTFB, url, why)).await,
            }
        }
    })
    .await;
}
