//! The front panel: the OLED and the LED, driven from the database on a thread of their own
//! (I2C and GPIO calls block). A missing OLED or LED is a warning, once, then a quiet retry
//! every minute: the agent never depends on its panel.
//!
//! The panel reads what the writer has flushed: outages and state changes within a second,
//! RTT and loss as of the last flush.

use std::path::PathBuf;

use std::time::{Duration, Instant};

use crate::config::panel::{DisplayConfig, LedConfig};
use crate::display::burnin::{BurnIn, offset};
use crate::display::frame::Frame;
use crate::display::oled::Oled;
use crate::display::{Page, Snapshot, screens};
use crate::led::{Led, Pattern};
use crate::sample::{EventKind, LinkState, WallMs};
use crate::service::{FlagThread, Stop};
use crate::store::Store;

const TICK: Duration = Duration::from_millis(20);
const REFRESH: Duration = Duration::from_secs(2);
const PLACEMENT_REFRESH: Duration = Duration::from_secs(1);
/// How often the best download window is worked out again.
const BEST_EVERY: Duration = Duration::from_secs(3600);
const RETRY: Duration = Duration::from_secs(60);

/// The LED pattern for a snapshot (`None`: the agent's data could not be read).
pub fn pattern(s: Option<&Snapshot>, stale: bool) -> Pattern {
    let Some(s) = s else { return Pattern::Fault };
    if stale {
        return Pattern::Fault;
    }
    if let Some(p) = &s.placement {
        return Pattern::Signal(crate::placement::blink_ms(p.sinr_db_median));
    }
    match s.state {
        LinkState::LanDown | LinkState::WanDown => Pattern::Down,
        LinkState::Degraded | LinkState::Ipv4Down | LinkState::Ipv6Down => Pattern::Degraded,
        _ if s.notice.as_ref().is_some_and(|(k, _)| *k == EventKind::Prediction) => Pattern::Predicted,
        LinkState::Up => Pattern::Up,
        LinkState::Unknown => Pattern::Degraded,
    }
}

/// The local hour of a wall time (for the night-off hours).
fn local_hour(ms: WallMs) -> u8 {
    ((ms.div_euclid(1000) + crate::calendar::local_offset_s(ms)).div_euclid(3600).rem_euclid(24)) as u8
}

/// Local IPv4 address used to reach `gateway`: what to ssh to. (A UDP connect sends nothing.)
pub fn local_ip(gateway: Option<std::net::IpAddr>) -> Option<String> {
    let gw = gateway?;
    let bind = if gw.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let s = std::net::UdpSocket::bind(bind).ok()?;
    s.connect((gw, 9)).ok()?;
    Some(s.local_addr().ok()?.ip().to_string())
}

pub struct Panel {
    pub display: DisplayConfig,
    pub led: LedConfig,
    pub db: PathBuf,
    pub now: crate::clock::WallClock,
    pub gateway: Option<std::net::IpAddr>,
    /// Data older than this means the agent is not writing: SOS.
    pub stale_after: Duration,
}

impl Panel {
    pub fn spawn(self) -> FlagThread {
        FlagThread::spawn("panel", move |stop| self.run(stop))
    }

    fn run(self, stop: &Stop) {
        let started = Instant::now();
        let burn = BurnIn {
            off_from_hour: self.display.off_from_hour,
            off_until_hour: self.display.off_until_hour,
            shift_every_min: self.display.shift_every_min,
            dim_after_min: self.display.dim_after_min,
        };
        let mut oled = None;
        let mut led = None;
        let (mut oled_retry, mut led_retry) = (Instant::now(), Instant::now());
        let (mut oled_warned, mut led_warned) = (false, false);
        let mut store: Option<Store> = None;
        let mut snap: Option<Snapshot> = None;
        let mut refreshed = Instant::now() - REFRESH;
        let (mut page_at, mut page_idx) = (Instant::now(), 0usize);
        let ip = local_ip(self.gateway);
        let pin_file = crate::setup::pin::path_for(&self.db);
        let mut best: Option<(Instant, Option<String>)> = None;
        let mut last_state = (LinkState::Unknown, Instant::now());
        let mut stale = false;
        loop {
            let now = Instant::now();
            if self.led.enabled && led.is_none() && now >= led_retry {
                match crate::hw::open_led(self.led.gpio) {
                    Ok(pin) => led = Some(Led::new(pin)),
                    Err(e) => {
                        if !led_warned {
                            tracing::warn!("no status LED: {e}; retrying every minute");
                            led_warned = true;
                        }
                        led_retry = now + RETRY;
                    }
                }
            }
            if self.display.enabled && oled.is_none() && now >= oled_retry {
                let opened = crate::hw::open_i2c(self.display.i2c_bus).and_then(|bus| {
                    Oled::new(bus, self.display.address).map_err(|e| crate::hw::HwError::NoOled {
                        address: self.display.address,
                        why: format!("{e:?}"),
                    })
                });
                match opened {
                    Ok(o) => {
                        tracing::info!(
                            "OLED found on /dev/i2c-{} at 0x{:02X}",
                            self.display.i2c_bus,
                            self.display.address
                        );
                        oled = Some(o);
                    }
                    Err(e) => {
                        if !oled_warned {
                            tracing::warn!("running headless: {e}; retrying every minute");
                            oled_warned = true;
                        }
                        oled_retry = now + RETRY;
                    }
                }
            }
            let wall = self.now.now();
            // Nothing to show on: no database reads either.
            // Placement mode reads every second: someone is moving the gateway and watching.
            let every = if snap.as_ref().is_some_and(|s| s.placement.is_some()) { PLACEMENT_REFRESH } else { REFRESH };
            let fresh = (led.is_some() || oled.is_some()) && now.duration_since(refreshed) >= every;
            if fresh {
                refreshed = now;
                if store.is_none() {
                    store = Store::open_read_only(&self.db).ok();
                }
                // The best download window changes with the hour: worked out hourly, not every refresh.
                if let Some(st) = store.as_ref()
                    && best.as_ref().is_none_or(|(at, _)| now.duration_since(*at) >= BEST_EVERY)
                {
                    let w = crate::report::next_download_window(st, wall).ok().flatten();
                    best = Some((now, w.map(|w| w.label())));
                }
                snap = store.as_ref().and_then(|s| Snapshot::from_store(s, wall, ip.clone()).ok()).map(|mut s| {
                    s.setup_pin = crate::setup::pin::read(&pin_file);
                    s.best_download = best.as_ref().and_then(|(_, w)| w.clone());
                    s
                });
                if snap.is_none() {
                    store = None; // reopen next time
                }
                if let Some(s) = &snap
                    && s.state != last_state.0
                {
                    last_state = (s.state, now);
                }
                // Stale: nothing written for a long time after start-up means the agent is stuck.
                let heartbeat = store.as_ref().and_then(|st| st.agent_status().ok()).and_then(|a| a.heartbeat);
                stale = started.elapsed() > self.stale_after
                    && heartbeat.is_none_or(|h| wall - h > self.stale_after.as_millis() as i64);
            }
            if let Some(l) = led.as_mut() {
                let since = started.elapsed();
                if fresh {
                    l.set(pattern(snap.as_ref(), stale), since);
                }
                if l.tick(since).is_err() {
                    led = None;
                }
            }
            if let (Some(o), Some(s)) = (oled.as_mut(), snap.as_ref()) {
                let pages = screens::rotation(s);
                if now.duration_since(page_at) >= Duration::from_secs(self.display.page_seconds.max(1)) {
                    page_at = now;
                    page_idx = (page_idx + 1) % pages.len();
                }
                if fresh || page_at == now {
                    let night = burn.is_night(local_hour(wall));
                    let minutes = started.elapsed().as_secs() / 60;
                    let dim = now.duration_since(last_state.1) > Duration::from_secs(60 * burn.dim_after_min as u64);
                    let result = if night {
                        o.set_on(false)
                    } else {
                        let mut f = Frame::default();
                        let _ = screens::draw(&mut f, pages.get(page_idx).copied().unwrap_or(Page::Main), s);
                        let (dx, dy) = offset(minutes, burn.shift_every_min);
                        o.set_dim(dim).and_then(|_| o.show(&f.shifted(dx, dy)))
                    };
                    if let Err(e) = result {
                        tracing::warn!("OLED stopped answering ({e:?}); retrying every minute");
                        oled = None;
                        oled_retry = now + RETRY;
                    }
                }
            }
            // Asleep until there is work: the LED's next blink step, else the OLED's next refresh
            // or page, else the next look for hardware (a panel plugged in later is found).
            let page = Duration::from_secs(self.display.page_seconds.max(1));
            let next = if led.is_some() {
                now + TICK
            } else if oled.is_some() {
                // (Never sooner than a tick: a page not turned for lack of data is not due again and again.)
                (refreshed + every).min(page_at + page).max(now + TICK)
            } else {
                let retry = |enabled: bool, at: Instant| enabled.then_some(at);
                [retry(self.led.enabled, led_retry), retry(self.display.enabled, oled_retry)]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(now + RETRY)
            };
            if stop.wait_until(next) {
                break;
            }
        }
        if let Some(mut l) = led {
            l.set(Pattern::Off, Duration::ZERO);
            let _ = l.tick(Duration::ZERO);
        }
        if let Some(mut o) = oled {
            let _ = o.set_on(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(state: LinkState, notice: Option<EventKind>) -> Snapshot {
        Snapshot {
            now: 0,
            state,
            state_since: None,
            rtt_ms: None,
            loss_pct: None,
            last_outage_end: None,
            outage_ongoing: false,
            sparkline: vec![None; 60],
            speed: None,
            signal: None,
            notice: notice.map(|k| (k, "x".to_string())),
            ip: None,
            setup_pin: None,
            best_download: None,
            placement: None,
        }
    }

    #[test]
    fn led_pattern_follows_the_state() {
        assert_eq!(pattern(Some(&snap(LinkState::Up, None)), false), Pattern::Up);
        assert_eq!(pattern(Some(&snap(LinkState::Degraded, None)), false), Pattern::Degraded);
        assert_eq!(pattern(Some(&snap(LinkState::WanDown, Some(EventKind::Prediction))), false), Pattern::Down);
        assert_eq!(pattern(Some(&snap(LinkState::LanDown, None)), false), Pattern::Down);
        assert_eq!(pattern(Some(&snap(LinkState::Up, Some(EventKind::Prediction))), false), Pattern::Predicted);
        assert_eq!(pattern(Some(&snap(LinkState::Up, Some(EventKind::Anomaly))), false), Pattern::Up);
        assert_eq!(pattern(Some(&snap(LinkState::Up, None)), true), Pattern::Fault, "stale data: the agent is stuck");
        assert_eq!(pattern(None, false), Pattern::Fault, "unreadable database");
    }
}
