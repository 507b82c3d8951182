//! Wall time for samples, derived from the monotonic clock.
//!
//! A Raspberry Pi has no RTC: it boots with the time of its last shutdown (fake-hwclock) or 1970,
//! and NTP steps the clock minutes or years later. If samples were stamped with
//! `SystemTime::now()`, that step would show up as a fake gap, as negative durations and as
//! rollups written out of order. So every stamp is `anchor + (monotonic now - monotonic anchor)`,
//! and the clock is compared with the system clock once a second:
//!
//! * a step while the run is young (NTP at boot) or a huge step: re-anchor, and tell the store to
//!   shift everything this run has written by the same amount (the old stamps were wrong);
//! * a small step later on (an NTP correction): slew toward it at 5%, never jumping;
//! * a large step later on (someone set the clock): re-anchor and record it; the store
//!   recomputes the rollups of any minutes that receive samples again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::calendar::DAY_MS;
use crate::sample::WallMs;

/// Differences smaller than this are clock noise, not a step.
const STEP_THRESHOLD_MS: i64 = 1_000;
/// A later step up to this size is absorbed by slewing.
const MAX_SLEW_MS: i64 = 60_000;
/// Slew rate: the derived clock runs at most 5% fast or slow while absorbing a step.
const SLEW_RATE: f64 = 0.05;
/// A step this early in the run (or this large at any time) means the earlier stamps were wrong.
const YOUNG_RUN: Duration = Duration::from_secs(15 * 60);
const HUGE_STEP_MS: i64 = DAY_MS;

/// What a clock check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjustment {
    /// A small step, being absorbed gradually.
    Slewing { delta_ms: i64 },
    /// The derived clock jumped by `delta_ms`. If `rewrite_run`, every stamp this run has
    /// produced so far was off by `delta_ms` and should be shifted.
    Stepped { delta_ms: i64, rewrite_run: bool },
}

#[derive(Debug, Clone)]
pub struct Clock {
    started: Instant,
    anchor_mono: Instant,
    anchor_wall: WallMs,
    /// A step being slewed: (total delta, monotonic start of the slew).
    slew: Option<(i64, Instant)>,
}

/// The one way every part of wanwatch reads wall time: the agent's run clock (a shared `Clock`,
/// which also stamps samples and watches for NTP steps), the system clock for one-shot commands,
/// or a function (a test's fake time). Cheap to clone; threads each hold one.
#[derive(Clone)]
pub struct WallClock {
    read: Arc<dyn Fn() -> WallMs + Send + Sync>,
    run: Option<Arc<Mutex<Clock>>>,
}

impl WallClock {
    /// A run clock anchored to the system clock now (the agent's).
    pub fn run() -> WallClock {
        let clock = Arc::new(Mutex::new(Clock::new()));
        let c = clock.clone();
        WallClock { read: Arc::new(move || lock(&c).now()), run: Some(clock) }
    }

    /// The system clock as it is (commands that run once: report, status, export).
    pub fn system() -> WallClock {
        WallClock::from_fn(system_wall_ms)
    }

    /// Time as `f` says (tests: a fixed or stepped fake time).
    pub fn from_fn(f: impl Fn() -> WallMs + Send + Sync + 'static) -> WallClock {
        WallClock { read: Arc::new(f), run: None }
    }

    pub fn now(&self) -> WallMs {
        (self.read)()
    }

    /// The wall time at monotonic instant `mono` (a sample's send time); `now()` off a run.
    pub fn wall_at(&self, mono: Instant) -> WallMs {
        self.run.as_ref().map_or_else(|| self.now(), |c| lock(c).wall_at(mono))
    }

    /// Compare the run clock with the system clock (once a second, from the agent's loop).
    pub fn check(&self) -> Option<Adjustment> {
        self.run.as_ref().and_then(|c| lock(c).check(Instant::now(), system_wall_ms()))
    }
}

impl std::fmt::Debug for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WallClock({}, now {})", if self.run.is_some() { "run" } else { "fn" }, self.now())
    }
}

/// A panic while holding the clock cannot leave it inconsistent (every update is one
/// assignment), so a poisoned lock is used as it is.
fn lock(c: &Mutex<Clock>) -> std::sync::MutexGuard<'_, Clock> {
    c.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn system_wall_ms() -> WallMs {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as WallMs,
        Err(e) => -(e.duration().as_millis() as WallMs),
    }
}

impl Clock {
    /// A clock anchored to the system clock now.
    pub fn new() -> Clock {
        Clock::anchored(Instant::now(), system_wall_ms())
    }

    pub fn anchored(mono: Instant, wall: WallMs) -> Clock {
        Clock { started: mono, anchor_mono: mono, anchor_wall: wall, slew: None }
    }

    /// The wall time at monotonic instant `mono` (before or after the anchor).
    pub fn wall_at(&self, mono: Instant) -> WallMs {
        let elapsed = match mono.checked_duration_since(self.anchor_mono) {
            Some(d) => d.as_millis() as i64,
            None => -(self.anchor_mono.duration_since(mono).as_millis() as i64),
        };
        let mut wall = self.anchor_wall + elapsed;
        if let Some((delta, since)) = self.slew {
            let slewed = (mono.saturating_duration_since(since).as_millis() as f64 * SLEW_RATE) as i64;
            wall += delta.signum() * slewed.min(delta.abs());
        }
        wall
    }

    pub fn now(&self) -> WallMs {
        self.wall_at(Instant::now())
    }

    /// Compare with the system clock (`system_wall` read at `mono`) and adjust.
    pub fn check(&mut self, mono: Instant, system_wall: WallMs) -> Option<Adjustment> {
        // Finish a slew that has been fully applied.
        if let Some((delta, since)) = self.slew {
            let applied = (mono.saturating_duration_since(since).as_millis() as f64 * SLEW_RATE) as i64;
            if applied >= delta.abs() {
                self.reanchor(mono, self.wall_at(mono));
            }
        }
        let derived = self.wall_at(mono);
        // What is still to be absorbed of a slew in progress is not a new step.
        let pending = self.slew.map_or(0, |(delta, since)| {
            let applied = (mono.saturating_duration_since(since).as_millis() as f64 * SLEW_RATE) as i64;
            delta - delta.signum() * applied.min(delta.abs())
        });
        let delta = system_wall - derived;
        if (delta - pending).abs() < STEP_THRESHOLD_MS {
            return None;
        }
        let young = mono.saturating_duration_since(self.started) < YOUNG_RUN;
        if young || delta.abs() >= HUGE_STEP_MS {
            self.reanchor(mono, system_wall);
            return Some(Adjustment::Stepped { delta_ms: delta, rewrite_run: true });
        }
        if delta.abs() <= MAX_SLEW_MS {
            // Restart the slew from the current derived time toward the new target.
            self.reanchor(mono, derived);
            self.slew = Some((delta, mono));
            return Some(Adjustment::Slewing { delta_ms: delta });
        }
        self.reanchor(mono, system_wall);
        Some(Adjustment::Stepped { delta_ms: delta, rewrite_run: false })
    }

    fn reanchor(&mut self, mono: Instant, wall: WallMs) {
        self.anchor_mono = mono;
        self.anchor_wall = wall;
        self.slew = None;
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::HOUR_MS;

    const T0: WallMs = 1_700_000_000_000;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn stamps_follow_the_monotonic_clock() {
        let m0 = Instant::now();
        let c = Clock::anchored(m0, T0);
        assert_eq!(c.wall_at(m0 + secs(5)), T0 + 5_000);
    }

    #[test]
    fn agreeing_clocks_need_no_adjustment() {
        let m0 = Instant::now();
        let mut c = Clock::anchored(m0, T0);
        assert_eq!(c.check(m0 + secs(30), T0 + 30_400), None);
    }

    #[test]
    fn boot_time_ntp_step_rewrites_the_run() {
        // Booted with the clock of the last shutdown; NTP fixes it 20 s in, 3 days later.
        let m0 = Instant::now();
        let mut c = Clock::anchored(m0, T0);
        let three_days = 3 * DAY_MS;
        let adj = c.check(m0 + secs(20), T0 + 20_000 + three_days);
        assert_eq!(adj, Some(Adjustment::Stepped { delta_ms: three_days, rewrite_run: true }));
        assert_eq!(c.wall_at(m0 + secs(21)), T0 + 21_000 + three_days);
    }

    #[test]
    fn small_late_step_is_slewed_and_never_goes_backwards() {
        let m0 = Instant::now();
        let mut c = Clock::anchored(m0, T0);
        let at = m0 + secs(3600);
        // The system clock jumps 10 s back an hour into the run.
        let adj = c.check(at, T0 + HOUR_MS - 10_000);
        assert_eq!(adj, Some(Adjustment::Slewing { delta_ms: -10_000 }));
        let mut last = c.wall_at(at);
        for s in 1..=400 {
            let m = at + secs(s);
            let sys = T0 + HOUR_MS - 10_000 + s as i64 * 1000;
            assert_eq!(c.check(m, sys), None, "no new step while slewing, at +{s}s");
            let w = c.wall_at(m);
            assert!(w > last, "time went backwards at +{s}s");
            last = w;
        }
        // 10 s at 5% takes 200 s: afterwards the clocks agree again.
        let m = at + secs(400);
        assert_eq!(c.wall_at(m), T0 + HOUR_MS - 10_000 + 400_000);
    }

    #[test]
    fn large_late_step_reanchors_without_rewriting() {
        let m0 = Instant::now();
        let mut c = Clock::anchored(m0, T0);
        let at = m0 + secs(7200);
        let adj = c.check(at, T0 + 7_200_000 + HOUR_MS);
        assert_eq!(adj, Some(Adjustment::Stepped { delta_ms: HOUR_MS, rewrite_run: false }));
        assert_eq!(c.wall_at(at + secs(1)), T0 + 7_201_000 + HOUR_MS);
    }

    #[test]
    fn huge_late_step_rewrites_the_run() {
        // A Pi that booted in 1970 and ran for hours before NTP was reachable.
        let m0 = Instant::now();
        let mut c = Clock::anchored(m0, 0);
        let adj = c.check(m0 + secs(7200), T0);
        assert_eq!(adj, Some(Adjustment::Stepped { delta_ms: T0 - 7_200_000, rewrite_run: true }));
    }
}
