//! The status LED: one GPIO pin, a blink pattern per state, told apart at a glance:
//!
//! | state | pattern |
//! |---|---|
//! | up | solid on |
//! | degraded | slow blink (1 s on, 1 s off) |
//! | down | fast blink (150 ms) |
//! | trouble predicted | double blink every 2 s |
//! | agent fault | SOS |
//! | placement mode | even blink, faster as the gateway's signal improves (800 ms to 80 ms) |
//!
//! Driven through embedded-hal's `OutputPin`, with time passed in, so tests use a recording
//! fake pin and a clock they move by hand; on the Pi the pin is rppal's ([`crate::hw`]).

use std::time::Duration;

use embedded_hal::digital::OutputPin;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    Off,
    Up,
    Degraded,
    Down,
    Predicted,
    Fault,
    /// Placement mode: an even blink with this half-period (`placement::blink_ms`).
    Signal(u32),
}

const DOT: u64 = 200;
const DASH: u64 = 600;

/// The pattern as (on, milliseconds) segments; it repeats.
fn segments(p: Pattern) -> &'static [(bool, u64)] {
    match p {
        Pattern::Signal(_) => &[], // computed in `level`
        Pattern::Off => &[(false, 1000)],
        Pattern::Up => &[(true, 1000)],
        Pattern::Degraded => &[(true, 1000), (false, 1000)],
        Pattern::Down => &[(true, 150), (false, 150)],
        Pattern::Predicted => &[(true, 150), (false, 150), (true, 150), (false, 1550)],
        Pattern::Fault => &[
            (true, DOT),
            (false, DOT),
            (true, DOT),
            (false, DOT),
            (true, DOT),
            (false, DASH),
            (true, DASH),
            (false, DOT),
            (true, DASH),
            (false, DOT),
            (true, DASH),
            (false, DASH),
            (true, DOT),
            (false, DOT),
            (true, DOT),
            (false, DOT),
            (true, DOT),
            (false, 1400),
        ],
    }
}

/// Whether the LED is lit `t` after the pattern started.
pub fn level(p: Pattern, t: Duration) -> bool {
    if let Pattern::Signal(half) = p {
        return (t.as_millis() as u64 / u64::from(half.max(20))).is_multiple_of(2);
    }
    let segs = segments(p);
    let period: u64 = segs.iter().map(|(_, ms)| ms).sum();
    let mut at = t.as_millis() as u64 % period;
    for &(on, ms) in segs {
        if at < ms {
            return on;
        }
        at -= ms;
    }
    false
}

pub struct Led<P> {
    pin: P,
    pattern: Pattern,
    started: Duration,
    lit: Option<bool>,
}

impl<P: OutputPin> Led<P> {
    pub fn new(pin: P) -> Led<P> {
        Led { pin, pattern: Pattern::Off, started: Duration::ZERO, lit: None }
    }

    /// Switch pattern at monotonic time `now` (a repeat of the same pattern changes nothing).
    pub fn set(&mut self, pattern: Pattern, now: Duration) {
        if pattern != self.pattern {
            self.pattern = pattern;
            self.started = now;
        }
    }

    pub fn pattern(&self) -> Pattern {
        self.pattern
    }

    /// Bring the pin up to date; writes only on a change.
    pub fn tick(&mut self, now: Duration) -> Result<(), P::Error> {
        let want = level(self.pattern, now.saturating_sub(self.started));
        if self.lit != Some(want) {
            if want {
                self.pin.set_high()?
            } else {
                self.pin.set_low()?
            }
            self.lit = Some(want);
        }
        Ok(())
    }

    pub fn release(self) -> P {
        self.pin
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// Records every level written, with the (fake) time it was written at.
    struct RecordingPin {
        now: std::rc::Rc<std::cell::Cell<u64>>,
        log: Vec<(u64, bool)>,
    }

    impl embedded_hal::digital::ErrorType for RecordingPin {
        type Error = Infallible;
    }

    impl OutputPin for RecordingPin {
        fn set_low(&mut self) -> Result<(), Infallible> {
            self.log.push((self.now.get(), false));
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Infallible> {
            self.log.push((self.now.get(), true));
            Ok(())
        }
    }

    /// Run `pattern` for `ms` milliseconds, ticking every 10 ms; the durations of each lit and
    /// dark stretch.
    fn run(pattern: Pattern, ms: u64) -> Vec<(bool, u64)> {
        let clock = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut led = Led::new(RecordingPin { now: clock.clone(), log: Vec::new() });
        led.set(pattern, Duration::ZERO);
        for t in (0..=ms).step_by(10) {
            clock.set(t);
            led.tick(Duration::from_millis(t)).unwrap();
        }
        let log = led.release().log;
        log.windows(2).map(|w| (w[0].1, w[1].0 - w[0].0)).collect()
    }

    #[test]
    fn up_is_solid() {
        assert!(run(Pattern::Up, 5000).is_empty(), "a solid LED is written once and never toggles");
        assert!(level(Pattern::Up, Duration::from_secs(123)));
    }

    #[test]
    fn degraded_blinks_slowly_and_down_fast() {
        assert_eq!(&run(Pattern::Degraded, 4100)[..3], &[(true, 1000), (false, 1000), (true, 1000)]);
        assert_eq!(&run(Pattern::Down, 1000)[..4], &[(true, 150), (false, 150), (true, 150), (false, 150)]);
    }

    #[test]
    fn prediction_double_blinks() {
        assert_eq!(
            &run(Pattern::Predicted, 4100)[..5],
            &[(true, 150), (false, 150), (true, 150), (false, 1550), (true, 150)]
        );
    }

    #[test]
    fn fault_spells_sos() {
        let morse: String = run(Pattern::Fault, 9000)
            .iter()
            .take(17)
            .map(|&(on, ms)| match (on, ms) {
                (true, DOT) => '.',
                (true, DASH) => '-',
                (false, DASH) => ' ',
                _ => '\0',
            })
            .filter(|c| *c != '\0')
            .collect();
        assert_eq!(morse, "... --- ...");
    }

    #[test]
    fn changing_pattern_restarts_it() {
        let clock = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut led = Led::new(RecordingPin { now: clock.clone(), log: Vec::new() });
        led.set(Pattern::Up, Duration::ZERO);
        led.tick(Duration::ZERO).unwrap();
        clock.set(5000);
        led.set(Pattern::Down, Duration::from_millis(5000));
        led.set(Pattern::Down, Duration::from_millis(5100)); // the same again: no restart
        led.tick(Duration::from_millis(5000)).unwrap();
        clock.set(5160);
        led.tick(Duration::from_millis(5160)).unwrap();
        assert_eq!(led.release().log, [(0, true), (5160, false)]);
    }
}
