//! Hysteresis: one incident, one event. An event opens when a level reaches `on`, stays open while
//! it keeps above `off`, and closes only after `cool` quiet steps, so one bad minute in a bad
//! half hour does not make ten events, and a flapping link makes one long one.
//!
//! The record gate is the other half of "about one alert a week": a new event must also be more
//! surprising than anything of the past week, less a decay per day. On a healthy link the chance
//! that a step is the week's most surprising is about one in a week's steps, whatever the shape
//! of the scores; after a bad evening, the next alert needs something worse or some days' rest.
//!
//! The ensemble's gate remembers longer (60 days) and forgets slower (its level halves every
//! 50 days): its level is a week z-score, which a link's bad habits (the same evening slump
//! every day) keep reaching again and again; the family hears of a slump once, and again when
//! it gets worse.

use std::collections::VecDeque;

use super::pipeline::{ChannelResult, Detector, ENSEMBLE_OFF, ENSEMBLE_ON};
use crate::calendar::DAY_MS;

/// How fast the record a new alert must beat fades, in surprise (log10) per day.
pub const GATE_DECAY_PER_DAY: f64 = 1.0;
/// The ensemble's record: how long it is remembered, and how fast it fades (log2 per day).
pub const ENSEMBLE_GATE_SPAN_MS: i64 = 60 * DAY_MS;
pub const ENSEMBLE_GATE_DECAY_PER_DAY: f64 = 0.02;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RecordGate {
    span_ms: i64,
    decay_per_day: f64,
    floor: f64,
    seen: VecDeque<(i64, f64)>,
}

impl RecordGate {
    /// Remembers levels at or above `floor` for `span_ms`.
    pub fn new(span_ms: i64, decay_per_day: f64, floor: f64) -> RecordGate {
        RecordGate { span_ms, decay_per_day, floor, seen: VecDeque::new() }
    }

    /// The level a new event must beat now.
    pub fn bar(&self, ts: i64) -> f64 {
        self.seen
            .iter()
            .filter(|(t, _)| ts - t <= self.span_ms)
            .map(|&(t, v)| v - self.decay_per_day * (ts - t) as f64 / DAY_MS as f64)
            .fold(f64::MIN, f64::max)
    }

    pub fn observe(&mut self, ts: i64, level: f64) {
        while self.seen.front().is_some_and(|&(t, _)| ts - t > self.span_ms) {
            self.seen.pop_front();
        }
        if level >= self.floor && level.is_finite() {
            self.seen.push_back((ts, level));
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub start: i64,
    /// Last step at or above `off`.
    pub end: i64,
    pub peak: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Opened(i64),
    Closed(Event),
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Hysteresis {
    on: f64,
    off: f64,
    cool: usize,
    open: Option<Event>,
    quiet: usize,
    gate: Option<RecordGate>,
}

impl Hysteresis {
    pub fn new(on: f64, off: f64, cool: usize) -> Hysteresis {
        Hysteresis { on, off, cool: cool.max(1), open: None, quiet: 0, gate: None }
    }

    pub fn with_gate(mut self, gate: RecordGate) -> Hysteresis {
        self.gate = Some(gate);
        self
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    pub fn step(&mut self, ts: i64, level: f64) -> Option<Transition> {
        let beats_record = self.gate.as_ref().is_none_or(|g| level > g.bar(ts));
        if let Some(g) = &mut self.gate {
            g.observe(ts, level);
        }
        match &mut self.open {
            None if level >= self.on && beats_record => {
                self.open = Some(Event { start: ts, end: ts, peak: level });
                self.quiet = 0;
                Some(Transition::Opened(ts))
            }
            None => None,
            Some(ev) => {
                if level >= self.off {
                    ev.end = ts;
                    ev.peak = ev.peak.max(level);
                    self.quiet = 0;
                    None
                } else {
                    self.quiet += 1;
                    if self.quiet >= self.cool { self.open.take().map(Transition::Closed) } else { None }
                }
            }
        }
    }

    /// Closes whatever is open (end of a replay, agent shutdown).
    pub fn finish(&mut self) -> Option<Event> {
        self.open.take()
    }
}

/// The alarm policy shared by the agent and replay: one hysteresis per detector over the worst
/// channel's level, the record gate on the learned detectors (the z-score baseline and the rules
/// stay as they are defined).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Alarms {
    streams: Vec<(Detector, Hysteresis)>,
}

/// A detector opened or closed an event; `channel` is the worst channel on that step.
pub struct Change {
    pub detector: Detector,
    pub transition: Transition,
    pub channel: usize,
}

impl Alarms {
    pub fn new(threshold: f64, step_ms: i64, detectors: &[Detector]) -> Alarms {
        // quiet for 15 steps and at least 30 minutes before an event closes
        let cool = (1_800_000 / step_ms.max(1)).max(15) as usize;
        let streams = detectors
            .iter()
            .map(|&d| {
                let h = match d {
                    Detector::Ensemble | Detector::ZWeek => Hysteresis::new(ENSEMBLE_ON, ENSEMBLE_OFF, cool)
                        .with_gate(RecordGate::new(ENSEMBLE_GATE_SPAN_MS, ENSEMBLE_GATE_DECAY_PER_DAY, ENSEMBLE_OFF)),
                    Detector::ZScore | Detector::Rules => Hysteresis::new(threshold, threshold / 2.0, cool),
                    _ => Hysteresis::new(threshold, threshold / 2.0, cool).with_gate(RecordGate::new(
                        7 * DAY_MS,
                        GATE_DECAY_PER_DAY,
                        threshold / 2.0,
                    )),
                };
                (d, h)
            })
            .collect();
        Alarms { streams }
    }

    pub fn step(&mut self, ts: i64, results: &[ChannelResult]) -> Vec<Change> {
        let mut changes = Vec::new();
        for (d, h) in &mut self.streams {
            let (channel, level) = results
                .iter()
                .enumerate()
                .map(|(i, r)| (i, r.level(*d)))
                .fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
            if let Some(transition) = h.step(ts, level) {
                changes.push(Change { detector: *d, transition, channel });
            }
        }
        changes
    }

    /// Closes every open event (end of a replay, agent shutdown).
    pub fn finish(&mut self) -> Vec<(Detector, Event)> {
        self.streams.iter_mut().filter_map(|(d, h)| h.finish().map(|e| (*d, e))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::HOUR_MS;

    #[test]
    fn a_bad_half_hour_is_one_event() {
        let mut h = Hysteresis::new(4.0, 2.0, 10);
        let mut opened = 0;
        let mut closed = Vec::new();
        // 30 steps alternating very bad and mildly bad, then quiet
        for t in 0..60 {
            let level = if t < 30 { if t % 2 == 0 { 5.0 } else { 2.5 } } else { 0.0 };
            match h.step(t, level) {
                Some(Transition::Opened(_)) => opened += 1,
                Some(Transition::Closed(e)) => closed.push(e),
                None => {}
            }
        }
        assert_eq!(opened, 1);
        assert_eq!(closed, vec![Event { start: 0, end: 29, peak: 5.0 }]);
        assert!(h.step(100, 3.9).is_none(), "below `on` does not open");
        assert_eq!(h.step(101, f64::INFINITY), Some(Transition::Opened(101)));
        assert_eq!(h.finish().map(|e| e.start), Some(101));
    }

    #[test]
    fn the_ensemble_remembers_its_worst_for_weeks() {
        let day = DAY_MS;
        let mut a = Alarms::new(4.0, 60_000, &[Detector::Ensemble]);
        let at = |level: f64| vec![ChannelResult { ensemble: Some(level), ..Default::default() }];
        let opened = |c: Vec<Change>| c.iter().any(|c| matches!(c.transition, Transition::Opened(_)));
        let quiet = |a: &mut Alarms, from: i64| {
            for m in 1..=60 {
                a.step(from + m * 60_000, &at(0.0));
            }
        };
        assert!(!opened(a.step(0, &at(1.9))), "below a week z of 4 (log2 = 2): nothing");
        assert!(opened(a.step(60_000, &at(5.0))), "z = 32 opens");
        quiet(&mut a, 60_000);
        // ten days on, the record 5.0 has faded to 4.8: 4.5 is the same habit again
        assert!(!opened(a.step(10 * day, &at(4.5))));
        quiet(&mut a, 10 * day);
        // thirty days on it has faded to 4.4 (the 4.5 of day 10 to 4.1): 4.5 is news again
        assert!(opened(a.step(30 * day, &at(4.5))));
    }

    #[test]
    fn the_gate_wants_a_new_record_or_some_days() {
        let hour = HOUR_MS;
        let mut h = Hysteresis::new(3.0, 1.5, 2).with_gate(RecordGate::new(7 * 24 * hour, 1.0, 1.5));
        assert!(matches!(h.step(0, 6.0), Some(Transition::Opened(0))));
        assert!(h.step(hour, 0.0).is_none());
        assert!(matches!(h.step(2 * hour, 0.0), Some(Transition::Closed(_))));
        assert_eq!(h.step(3 * hour, 5.0), None, "less than the last incident: no new alert");
        for t in 4..30 {
            h.step(t * hour, 0.0);
        }
        assert!(matches!(h.step(30 * hour, 6.5), Some(Transition::Opened(_))), "a worse one alerts");
        for t in 31..(30 + 24 * 4) {
            h.step(t * hour, 0.0);
        }
        // four days later 6.5 has decayed to 2.5: an ordinary alarm level passes again
        assert!(matches!(h.step((30 + 24 * 4) * hour, 3.5), Some(Transition::Opened(_))));
    }
}
