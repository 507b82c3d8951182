//! Probes: futures that measure on their own schedule and send records on a channel until told
//! to stop. They know nothing of the store or the display.
//!
//! `ping` feeds the state machine; the context probes (everything else) send
//! [`crate::sample::Record::Metric`]s and events that go straight to the store. Each context
//! probe is its own task, and anything that blocks (HTTP with ureq, getaddrinfo, /proc) runs on
//! the blocking pool, so a probe that hangs never delays another.

pub mod bandwidth;
pub mod devices;
pub mod dns;
pub mod gateway;
pub mod http;
pub mod icmp;
pub mod path;
pub mod ping;
pub mod sessions;
pub mod syslog;
pub mod syslog_tcp;
pub mod system;
pub mod ticker;
pub mod udp_trace;
pub mod weather;

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::clock::WallClock;
use crate::config::Config;
use crate::config::probes::ProbeSection;
use crate::sample::{EventKind, Metric, Record, WallMs};

/// What a context probe gets: the clock, the way out, and the stop signal.
#[derive(Clone)]
pub struct Ctx {
    clock: WallClock,
    out: mpsc::Sender<Record>,
    stop: watch::Receiver<bool>,
    /// The agent's database (read-only use: the bandwidth budget).
    pub db: std::path::PathBuf,
    /// Where classified DNS queries go (the sessions probe), when it runs.
    sessions: Option<mpsc::Sender<sessions::Seen>>,
}

impl Ctx {
    pub fn new(
        clock: WallClock,
        out: mpsc::Sender<Record>,
        stop: watch::Receiver<bool>,
        db: std::path::PathBuf,
    ) -> Ctx {
        Ctx { clock, out, stop, db, sessions: None }
    }

    /// Hand a classified DNS query to the sessions probe; dropped when it is behind (a flood of
    /// queries must not hold up the log it came in with).
    pub fn seen(&self, s: sessions::Seen) {
        if let Some(tx) = &self.sessions {
            let _ = tx.try_send(s);
        }
    }

    pub fn now(&self) -> WallMs {
        self.clock.now()
    }

    pub async fn emit(&self, r: Record) {
        let _ = self.out.send(r).await;
    }

    pub async fn metric(&self, m: Metric) {
        self.emit(Record::Metric(m)).await;
    }

    pub async fn event(&self, kind: EventKind, detail: String) {
        tracing::info!(kind = kind.as_str(), "{detail}");
        self.emit(Record::Event { ts: self.now(), kind, detail }).await;
    }

    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleep, or return false at once when the agent is stopping.
    pub async fn sleep(&self, d: Duration) -> bool {
        let mut stop = self.stop.clone();
        if *stop.borrow() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => !*stop.borrow(),
            _ = stop.changed() => false,
        }
    }

    /// Run `f` every `interval` (first run after `first`) until the agent stops.
    pub async fn every<F, Fut>(&self, first: Duration, interval: Duration, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        if !self.sleep(first).await {
            return;
        }
        loop {
            let started = tokio::time::Instant::now();
            f().await;
            if !self.sleep(interval.saturating_sub(started.elapsed())).await {
                return;
            }
        }
    }
}

/// Why a context probe got no reading. Its text is stored as the note of the failed
/// measurement, so it says what a person would check.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("timeout")]
    Timeout,
    #[error("probe task failed: {0}")]
    Task(String),
    #[error("timeout ({0})")]
    HttpTimeout(String),
    #[error("dns: host not found")]
    HostNotFound,
    #[error("connect failed")]
    ConnectFailed,
    #[error("io: {0}")]
    Io(std::io::ErrorKind),
    #[error("tls")]
    Tls,
    #[error("bad http response")]
    BadResponse,
    #[error("bad url")]
    BadUrl,
    #[error("redirects")]
    Redirects,
    #[error("body over {0} bytes")]
    TooLarge(u64),
    #[error("http error")]
    Http,
    #[error("http {0}")]
    Status(u16),
    #[error("bad json: {0}")]
    Json(#[from] serde_json::Error),
    /// The answer parsed but lacks what was asked for ("no 4g or 5g radio in `signal`").
    #[error("{0}")]
    Missing(&'static str),
    #[error("provider error: {0}")]
    Provider(String),
    #[error("cannot read the API key file {}: {kind}", path.display())]
    KeyFile { path: std::path::PathBuf, kind: std::io::ErrorKind },
    #[error("stream panicked")]
    Panicked,
}

impl From<&ureq::Error> for ProbeError {
    fn from(e: &ureq::Error) -> ProbeError {
        match e {
            ureq::Error::Timeout(t) => ProbeError::HttpTimeout(t.to_string()),
            ureq::Error::HostNotFound => ProbeError::HostNotFound,
            ureq::Error::ConnectionFailed => ProbeError::ConnectFailed,
            ureq::Error::Io(io) => ProbeError::Io(io.kind()),
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) => ProbeError::Tls,
            ureq::Error::Protocol(_) => ProbeError::BadResponse,
            ureq::Error::BadUri(_) => ProbeError::BadUrl,
            ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => ProbeError::Redirects,
            ureq::Error::BodyExceedsLimit(n) => ProbeError::TooLarge(*n),
            _ => ProbeError::Http,
        }
    }
}

impl From<ureq::Error> for ProbeError {
    fn from(e: ureq::Error) -> ProbeError {
        ProbeError::from(&e)
    }
}

impl From<&'static str> for ProbeError {
    fn from(what: &'static str) -> ProbeError {
        ProbeError::Missing(what)
    }
}

impl From<std::io::Error> for ProbeError {
    fn from(e: std::io::Error) -> ProbeError {
        ProbeError::Io(e.kind())
    }
}

/// Run blocking work on the blocking pool with a deadline. A call that overruns is abandoned
/// (its thread finishes on its own) and reported as a timeout.
pub async fn blocking<T: Send + 'static>(
    deadline: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ProbeError> {
    match tokio::time::timeout(deadline, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ProbeError::Task(e.to_string())),
        Err(_) => Err(ProbeError::Timeout),
    }
}

/// The context probes on a thread and a runtime of their own: a flood into one of them (a router
/// log storm, a slow report of the gateway) never delays a ping, which runs on the agent's.
pub struct ContextThread {
    stop: watch::Sender<bool>,
    handle: std::thread::JoinHandle<()>,
}

impl ContextThread {
    /// Start the enabled context probes; their records go to `out`.
    pub fn spawn(cfg: &Config, clock: WallClock, out: mpsc::Sender<Record>) -> ContextThread {
        let (stop, stop_rx) = watch::channel(false);
        let ctx = Ctx::new(clock, out, stop_rx, cfg.db.clone());
        let cfg = cfg.clone();
        let handle = std::thread::Builder::new()
            .name("wanwatch-context".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("context probes: cannot start a runtime ({e}); they are off");
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut stop = ctx.stop.clone();
                    let mut set = spawn_context(&cfg, &ctx);
                    drop(ctx);
                    while !*stop.borrow() {
                        tokio::select! {
                            done = set.join_next() => if done.is_none() { return },
                            r = stop.changed() => if r.is_err() { break },
                        }
                    }
                    // Stopping: each probe ends at its next await; one inside a blocking call
                    // (a speed test) is abandoned after a grace period.
                    let _ = tokio::time::timeout(Duration::from_secs(3), async {
                        while set.join_next().await.is_some() {}
                    })
                    .await;
                    set.abort_all();
                });
                rt.shutdown_timeout(Duration::from_millis(500));
            })
            .expect("spawning the context thread");
        ContextThread { stop, handle }
    }
}

impl crate::service::Service for ContextThread {
    fn name(&self) -> &'static str {
        "context probes"
    }

    /// Each probe ends at its next await; one inside a blocking call (a speed test) is
    /// abandoned after a grace period, so this returns within about 4 s.
    fn stop(self: Box<Self>) {
        let _ = self.stop.send(true);
        let _ = self.handle.join();
    }
}

/// Start every enabled context probe (one task each) on the current runtime. A probe added to
/// `ProbesConfig::sections` starts here; the test below fails until it does.
pub fn spawn_context(cfg: &Config, ctx: &Ctx) -> tokio::task::JoinSet<()> {
    let p = &cfg.probes;
    let mut set = tokio::task::JoinSet::new();
    // The sessions probe first: the syslog probe hands it dnsmasq's queries.
    let mut ctx = ctx.clone();
    if p.sessions.enabled {
        let (tx, rx) = mpsc::channel(1024);
        ctx.sessions = Some(tx);
        let (c, ctx) = (p.sessions.clone(), ctx.clone());
        set.spawn(async move { sessions::run(c, rx, ctx).await });
    }
    let ctx = &ctx;
    // Stagger the first runs so start-up is not a burst.
    if p.dns.enabled {
        let (c, ctx) = (p.dns.clone(), ctx.clone());
        set.spawn(async move { dns::run(c, ctx).await });
    }
    if p.http.enabled {
        let (c, ctx) = (p.http.clone(), ctx.clone());
        set.spawn(async move { http::run(c, ctx).await });
    }
    if p.bandwidth.enabled {
        let (c, ctx) = (p.bandwidth.clone(), ctx.clone());
        set.spawn(async move { bandwidth::run(c, ctx).await });
    }
    if p.gateway_api.enabled {
        let gw = cfg.targets.iter().find(|t| t.target.role == crate::sample::Role::Gateway && t.target.addr.is_ipv4());
        let gw = gw.map(|t| t.target.addr);
        let (c, ctx) = (p.gateway_api.clone(), ctx.clone());
        set.spawn(async move { gateway::run(c, gw, ctx).await });
    }
    if p.weather.enabled() {
        let (c, ctx) = (p.weather.clone(), ctx.clone());
        set.spawn(async move { weather::run(c, ctx).await });
    }
    if p.syslog.enabled {
        let gateways: Vec<std::net::IpAddr> = cfg
            .targets
            .iter()
            .filter(|t| t.target.role == crate::sample::Role::Gateway)
            .map(|t| t.target.addr)
            .collect();
        let (c, ctx) = (p.syslog.clone(), ctx.clone());
        set.spawn(async move { syslog::run(c, gateways, ctx).await });
    }
    if p.devices.enabled {
        let (c, ctx) = (p.devices.clone(), ctx.clone());
        set.spawn(async move { devices::run(c, ctx).await });
    }
    if p.system.enabled {
        let (c, ctx, db) = (p.system.clone(), ctx.clone(), cfg.db.clone());
        set.spawn(async move { system::run(c, db, ctx).await });
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use crate::config::probes::ProbesConfig;

    /// Every section `ProbesConfig` lists starts a task when enabled, and not when `--probes`
    /// leaves it out. The tasks are aborted before their first poll, so nothing is sent.
    #[test]
    fn every_enabled_section_starts_one_task() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (out, _rx) = mpsc::channel(8);
        let (_stop, stop_rx) = watch::channel(true);
        let ctx = Ctx::new(WallClock::system(), out, stop_rx, "unused.db".into());
        let started = |probes: Option<Vec<String>>| {
            let text = "[weather]\nlatitude = 52.0\nlongitude = 4.0\n";
            let over = Overrides { probes, ..Default::default() };
            let cfg = crate::config::from_str(text, "t.toml".as_ref(), &over, &[]).unwrap();
            let enabled = cfg.probes.sections().iter().filter(|s| s.enabled()).count();
            let n = rt.block_on(async {
                let mut set = spawn_context(&cfg, &ctx);
                set.abort_all();
                let n = set.len();
                while set.join_next().await.is_some() {}
                n
            });
            (enabled, n)
        };
        let names = ProbesConfig::names();
        assert_eq!(started(None), (names.len(), names.len()), "a section is not started by spawn_context");
        for name in &names {
            let rest: Vec<String> = names.iter().filter(|n| *n != name).map(|n| n.to_string()).collect();
            assert_eq!(started(Some(rest)), (names.len() - 1, names.len() - 1), "--probes without {name}");
        }
        assert_eq!(started(Some(vec!["none".into()])), (0, 0));
    }
}
