//! Level shifts: the baseline latency of a path moved and stayed (a routing change, a new cell, a
//! new peering). Not an incident with an end like a degradation: every shift is news for the
//! evidence a household sends its ISP, the tenth one as much as the first.
//!
//! A robust two-sided CUSUM on log RTT against the current segment's median. Outliers are clipped
//! (one spike adds at most `CLIP - K` to the sum), missing values are skipped. When a sum crosses
//! `H` the onset is where that sum last left zero; the shift is confirmed only if the samples since
//! the onset agree: their median has moved by at least 1% and two spreads, and most of them lie
//! nearer the new level than the old (a diurnal drift or a burst of spikes does not). The segment
//! then restarts at the onset.
//!
//! Every constant was chosen on the tune half of the RIPE Atlas traces (`scripts/splits.json`)
//! under the constraint of at most one shift a week on the tune half of the Netrics home link;
//! `scripts/score.py` prints the test half.

use std::collections::VecDeque;

use crate::stats::median_in_place;

/// CUSUM allowance and decision interval, in robust spreads.
pub const K: f64 = 1.5;
pub const H: f64 = 12.0;
/// Residuals are clipped to this many spreads (Huber): a spike is one vote, not a verdict.
pub const CLIP: f64 = 3.0;
/// The spread of log RTT never counts as less than this (0.5%): a perfectly flat path is not
/// infinitely sensitive.
pub const MIN_SPREAD: f64 = 0.005;
/// Samples a segment needs before it is a reference.
pub const WARM: usize = 8;
/// Samples since the onset needed to confirm, and the time they must span (5 samples of RIPE's
/// 4 minutes; at the agent's one a minute the time is what counts).
pub const CONFIRM_MIN: usize = 5;
pub const CONFIRM_MIN_MS: i64 = 16 * 60_000;
/// A jump as big as a degradation (1.5x) is a degradation until it has lasted an hour: half an
/// hour of 100 ms on a 26 ms path is an episode, not a new route.
pub const BIG_SHIFT_MS: i64 = 60 * 60_000;
/// A confirmed shift moves the median by at least 1% (log 0.01) and this many spreads...
pub const MIN_SHIFT: f64 = 0.01;
pub const MIN_SPREADS: f64 = 2.0;
/// ...with at least this share of the samples since the onset nearer the new level.
pub const SIDE_SHARE: f64 = 0.7;
/// The reference: the newest this-many samples of the segment (20 h of 4-minute samples).
pub const REFERENCE: usize = 300;
/// The reference median is recomputed every this-many quiet samples.
const REFRESH: usize = 10;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Shift {
    /// Estimated time of the change.
    pub onset: i64,
    /// When enough samples agreed.
    pub confirmed: i64,
    /// Median level before and after, in the channel's unit.
    pub before: f64,
    pub after: f64,
    /// Share of the samples since the onset nearer the new level than the old (0.7..1).
    pub confidence: f64,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ShiftDetector {
    /// (ts, ln x) since the segment began (trimmed to the reference when long).
    seg: VecDeque<(i64, f64)>,
    /// Reference median and spread of ln x, once the segment is warm.
    reference: Option<(f64, f64)>,
    up: f64,
    down: f64,
    /// Where each sum last left zero: the onset if it fires.
    up_from: i64,
    down_from: i64,
    since_refresh: usize,
}

impl ShiftDetector {
    pub fn new() -> ShiftDetector {
        ShiftDetector::default()
    }

    /// The current level (the reference median) in the channel's unit, once known.
    pub fn level(&self) -> Option<f64> {
        self.reference.map(|(mu, _)| mu.exp())
    }

    /// The current reference (median, spread) of ln x: the degradation detector measures from it.
    pub fn reference(&self) -> Option<(f64, f64)> {
        self.reference
    }

    fn refresh(&mut self) {
        let mut ref_: Vec<f64> = self.seg.iter().rev().take(REFERENCE).map(|s| s.1).collect();
        let mu = median_in_place(&mut ref_);
        let mut dev: Vec<f64> = ref_.iter().map(|y| (y - mu).abs()).collect();
        self.reference = Some((mu, (1.4826 * median_in_place(&mut dev)).max(MIN_SPREAD)));
        self.since_refresh = 0;
    }

    /// One sample (`None` or a non-positive value: missing). Returns a shift when one is confirmed.
    pub fn step(&mut self, ts: i64, x: Option<f64>) -> Option<Shift> {
        let y = x.filter(|v| *v > 0.0 && v.is_finite())?.ln();
        let Some((mu, sig)) = self.reference else {
            self.seg.push_back((ts, y));
            if self.seg.len() >= WARM {
                self.refresh();
            }
            return None;
        };
        let r = ((y - mu) / sig).clamp(-CLIP, CLIP);
        if self.up == 0.0 {
            self.up_from = ts;
        }
        if self.down == 0.0 {
            self.down_from = ts;
        }
        self.up = (self.up + r - K).max(0.0);
        self.down = (self.down - r - K).max(0.0);
        self.seg.push_back((ts, y));
        if self.up >= H || self.down >= H {
            let onset = if self.up >= H { self.up_from } else { self.down_from };
            let mut after: Vec<f64> = self.seg.iter().filter(|s| s.0 >= onset).map(|s| s.1).collect();
            if after.len() < CONFIRM_MIN || ts - onset < CONFIRM_MIN_MS {
                return None;
            }
            let new = median_in_place(&mut after);
            let d = new - mu;
            if d.abs() >= super::degrade::LATENCY_FACTOR.ln() && ts - onset < BIG_SHIFT_MS {
                return None; // keep counting: a degradation until it lasts
            }
            let side =
                after.iter().filter(|&&a| (a - mu - d / 2.0) * d.signum() > 0.0).count() as f64 / after.len() as f64;
            if d.abs() < MIN_SHIFT.max(MIN_SPREADS * sig) || side < SIDE_SHARE {
                // A burst or a drift, not a new level: start the sums again.
                self.up = 0.0;
                self.down = 0.0;
                return None;
            }
            while self.seg.front().is_some_and(|s| s.0 < onset) {
                self.seg.pop_front();
            }
            self.up = 0.0;
            self.down = 0.0;
            self.reference = None;
            if self.seg.len() >= WARM {
                self.refresh();
            }
            return Some(Shift { onset, confirmed: ts, before: mu.exp(), after: new.exp(), confidence: side });
        }
        self.since_refresh += 1;
        if self.up == 0.0 && self.down == 0.0 && self.since_refresh >= REFRESH {
            self.refresh();
        }
        if self.seg.len() > 4 * REFERENCE {
            self.seg.drain(..self.seg.len() - REFERENCE);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path at `base` ms with small deterministic jitter and a spike every 17 samples.
    fn path(n: usize, base: impl Fn(usize) -> f64) -> Vec<Option<f64>> {
        (0..n)
            .map(|i| {
                let jitter = ((i * 7919) % 13) as f64 / 13.0 - 0.5; // +-0.5 ms
                let spike = if i % 17 == 0 { 40.0 } else { 0.0 };
                Some(base(i) + jitter + spike)
            })
            .collect()
    }

    fn run(x: &[Option<f64>]) -> Vec<Shift> {
        let mut d = ShiftDetector::new();
        x.iter().enumerate().filter_map(|(i, v)| d.step(i as i64 * 60_000, *v)).collect()
    }

    #[test]
    fn a_step_of_five_percent_is_found_at_its_onset() {
        let x = path(600, |i| if i < 300 { 100.0 } else { 105.0 });
        let s = run(&x);
        assert_eq!(s.len(), 1, "{s:?}");
        let onset_min = s[0].onset / 60_000;
        assert!((298..=302).contains(&onset_min), "onset at minute {onset_min}");
        assert!(s[0].confirmed > s[0].onset && s[0].confirmed - s[0].onset <= 20 * 60_000);
        assert!((s[0].before - 100.0).abs() < 1.0 && (s[0].after - 105.0).abs() < 1.0, "{s:?}");
        assert!(s[0].confidence >= SIDE_SHARE);
    }

    #[test]
    fn down_and_back_up_are_two_shifts() {
        let x = path(900, |i| if (300..600).contains(&i) { 80.0 } else { 100.0 });
        let s = run(&x);
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s[0].after < s[0].before && s[1].after > s[1].before);
    }

    #[test]
    fn spikes_gaps_and_a_short_burst_are_not_shifts() {
        let mut x = path(900, |_| 100.0);
        for v in x.iter_mut().skip(200).take(50) {
            *v = None; // an outage: no data, not a new level
        }
        for v in x.iter_mut().skip(500).take(4) {
            *v = Some(300.0); // four minutes of congestion
        }
        x[700] = Some(-3.0); // RIPE's timeout marker
        assert!(run(&x).is_empty());
    }

    #[test]
    fn a_half_percent_move_is_below_notice() {
        let x = path(900, |i| if i < 450 { 100.0 } else { 100.5 });
        assert!(run(&x).is_empty());
    }
}
