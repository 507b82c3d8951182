//! Rolling z-scores. Over 24 h (threshold 6) it is the yardstick every detector is compared with,
//! the baseline `../shared/datasets/README.md` scores on NAB. Over a week (with a floor on the
//! spread) it is the ensemble's backbone: how far a value is from this week's usual, in spreads.

use std::collections::VecDeque;

pub const THRESHOLD: f64 = 6.0;

pub struct ZScore {
    span_ms: i64,
    window: VecDeque<(i64, f64)>,
    sum: f64,
    sum_sq: f64,
    floor: f64,
    /// No z-score until this much time has passed since the first value.
    warm_ms: i64,
    first: Option<i64>,
    /// Steps since the sums were last recomputed from the window (float drift over months).
    since_exact: usize,
}

impl ZScore {
    pub fn new(span_ms: i64) -> ZScore {
        ZScore {
            span_ms,
            window: VecDeque::new(),
            sum: 0.0,
            sum_sq: 0.0,
            floor: 0.0,
            warm_ms: 0,
            first: None,
            since_exact: 0,
        }
    }

    /// The spread never counts as less than `floor` (in the value's unit) or 1% of the mean:
    /// a week of exactly 0% loss must not make one lost ping infinitely unusual.
    pub fn with_floor(mut self, floor: f64) -> ZScore {
        self.floor = floor;
        self
    }

    /// Says nothing until `warm_ms` after the first value (a spread from minutes is no spread).
    pub fn with_warm_up(mut self, warm_ms: i64) -> ZScore {
        self.warm_ms = warm_ms;
        self
    }

    /// |x - mean| / sd of the previous `span` (not including x), then takes x in.
    pub fn step(&mut self, ts: i64, x: f64) -> Option<f64> {
        while let Some(&(t, v)) = self.window.front() {
            if ts - t <= self.span_ms {
                break;
            }
            self.window.pop_front();
            self.sum -= v;
            self.sum_sq -= v * v;
        }
        let n = self.window.len() as f64;
        let warm = ts - *self.first.get_or_insert(ts) >= self.warm_ms;
        let z = if n >= 10.0 && warm {
            let mean = self.sum / n;
            let sd = (self.sum_sq / n - mean * mean).max(0.0).sqrt();
            let sd = if self.floor > 0.0 { sd.max(self.floor).max(0.01 * mean.abs()) } else { sd };
            Some(if sd > 0.0 {
                (x - mean).abs() / sd
            } else if x == mean {
                0.0
            } else {
                f64::INFINITY
            })
        } else {
            None
        };
        self.window.push_back((ts, x));
        self.sum += x;
        self.sum_sq += x * x;
        self.since_exact += 1;
        if self.since_exact >= 100_000 {
            self.since_exact = 0;
            self.sum = self.window.iter().map(|w| w.1).sum();
            self.sum_sq = self.window.iter().map(|w| w.1 * w.1).sum();
        }
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_a_jump_and_forgets_after_the_span() {
        let mut z = ZScore::new(100);
        for t in 0..50 {
            assert!(z.step(t, 10.0 + (t % 2) as f64).unwrap_or(0.0) < 2.0);
        }
        assert!(z.step(50, 30.0).unwrap() > THRESHOLD);
        for t in 51..300 {
            z.step(t, 30.0 + (t % 2) as f64);
        }
        assert!(z.step(300, 30.0).unwrap() < 2.0, "the old level has left the window");
    }

    #[test]
    fn a_floor_keeps_a_flat_week_from_making_one_blip_infinite() {
        let mut bare = ZScore::new(1000);
        let mut floored = ZScore::new(1000).with_floor(0.02);
        for t in 0..100 {
            bare.step(t, 0.0);
            floored.step(t, 0.0);
        }
        assert_eq!(bare.step(100, 0.017), Some(f64::INFINITY));
        assert!((floored.step(100, 0.017).unwrap() - 0.85).abs() < 1e-9, "one ping in 60 lost");
        assert!(floored.step(101, 0.3).unwrap() > 10.0, "30% loss still stands out");
    }
}
