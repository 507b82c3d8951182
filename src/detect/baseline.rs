//! The yardstick every learned detector is compared with: a rolling 24 h z-score (threshold 6),
//! the baseline `../shared/datasets/README.md` scores on NAB. Not part of the ensemble.

use std::collections::VecDeque;

pub const THRESHOLD: f64 = 6.0;

pub struct ZScore {
    span_ms: i64,
    window: VecDeque<(i64, f64)>,
    sum: f64,
    sum_sq: f64,
}

impl ZScore {
    pub fn new(span_ms: i64) -> ZScore {
        ZScore { span_ms, window: VecDeque::new(), sum: 0.0, sum_sq: 0.0 }
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
        let z = if n >= 10.0 {
            let mean = self.sum / n;
            let sd = (self.sum_sq / n - mean * mean).max(0.0).sqrt();
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
}
