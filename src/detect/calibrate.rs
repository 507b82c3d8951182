//! Turns any detector's raw score into a "surprise": -log10 of how often this household's own
//! recent scores were at least that high. Scores of different detectors (an LSTM's band
//! exceedance, a reconstruction error, an isolation depth) become comparable, and a threshold of
//! log10(steps per week) means "about once a week on this link".
//!
//! Below the 98th percentile the empirical tail is used; above it, an exponential tail fitted to
//! the exceedances (peaks over threshold, as in SPOT, Siffer et al. 2017), so a score beyond
//! anything seen still gets a finite, ordered surprise. Scores judged anomalous are kept out of
//! the history, so a long incident does not teach the calibrator that incidents are normal.

use std::collections::VecDeque;

/// Surprise is capped: beyond 1e-12 "how rare" stops meaning anything.
pub const MAX_SURPRISE: f64 = 12.0;
const TAIL_QUANTILE: f64 = 0.98;
const REFIT_EVERY: usize = 60;

#[derive(Debug, Clone)]
struct Tail {
    sorted: Vec<f64>,
    threshold: f64,
    scale: f64,
    frac: f64,
}

#[derive(Debug, Clone)]
pub struct Calibrator {
    history: VecDeque<f64>,
    cap: usize,
    min: usize,
    since_fit: usize,
    tail: Option<Tail>,
}

impl Calibrator {
    /// Keeps up to `cap` recent scores; gives no surprise until it has seen `min`.
    pub fn new(cap: usize, min: usize) -> Calibrator {
        Calibrator { history: VecDeque::with_capacity(cap.min(4096)), cap, min, since_fit: 0, tail: None }
    }

    pub fn is_ready(&self) -> bool {
        self.tail.is_some()
    }

    /// How surprising `score` is against the history, in -log10(p).
    pub fn surprise(&self, score: f64) -> Option<f64> {
        let t = self.tail.as_ref()?;
        let n = t.sorted.len() as f64;
        let p = if score > t.threshold {
            t.frac * (-(score - t.threshold) / t.scale).exp()
        } else {
            // (count of history >= score + 1) / (n + 1): never 0, never above 1.
            let below = t.sorted.partition_point(|&v| v < score) as f64;
            ((n - below) + 1.0) / (n + 1.0)
        };
        Some((-p.max(1e-300).log10()).clamp(0.0, MAX_SURPRISE))
    }

    /// Adds a score judged normal to the history.
    pub fn observe(&mut self, score: f64) {
        if !score.is_finite() {
            return;
        }
        self.history.push_back(score);
        if self.history.len() > self.cap {
            self.history.pop_front();
        }
        self.since_fit += 1;
        let due = self.since_fit >= REFIT_EVERY || (self.tail.is_none() && self.history.len() >= self.min);
        if due && self.history.len() >= self.min {
            self.fit();
        }
    }

    fn fit(&mut self) {
        self.since_fit = 0;
        let mut sorted: Vec<f64> = self.history.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let k = ((n as f64) * TAIL_QUANTILE) as usize;
        let threshold = sorted[k.min(n - 1)];
        let exceed: Vec<f64> = sorted.iter().filter(|&&v| v > threshold).map(|v| v - threshold).collect();
        // Exponential MLE: the mean exceedance. Floor it so a flat history (all scores equal)
        // does not make the first tiny wiggle infinitely surprising.
        let spread = (sorted[n - 1] - sorted[0]).abs().max(threshold.abs()).max(1e-9);
        let scale = if exceed.is_empty() {
            spread * 0.05
        } else {
            (exceed.iter().sum::<f64>() / exceed.len() as f64).max(spread * 1e-3)
        };
        let frac = exceed.len().max(1) as f64 / n as f64;
        self.tail = Some(Tail { sorted, threshold, scale, frac });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    #[test]
    fn exceedance_rate_matches_the_surprise_on_fresh_data() {
        // Exponential scores: a threshold at surprise 3 should be crossed ~1/1000 of the time.
        let mut rng = StdRng::seed_from_u64(1);
        let mut draw = || -(1.0f64 - rng.random::<f64>()).ln();
        let mut cal = Calibrator::new(20_000, 500);
        for _ in 0..20_000 {
            cal.observe(draw());
        }
        let n = 200_000;
        let over = (0..n).filter(|_| cal.surprise(draw()).unwrap() >= 3.0).count();
        let rate = over as f64 / n as f64;
        assert!((0.0005..0.002).contains(&rate), "rate {rate}");
    }

    #[test]
    fn not_ready_until_enough_history_and_ordered_beyond_it() {
        let mut cal = Calibrator::new(1000, 100);
        for i in 0..99 {
            cal.observe(i as f64 % 10.0);
            assert_eq!(cal.surprise(5.0), None);
        }
        cal.observe(3.0);
        let a = cal.surprise(9.0).unwrap();
        let b = cal.surprise(10.0).unwrap();
        let c = cal.surprise(11.0).unwrap();
        assert!(a < b && b < c && c <= MAX_SURPRISE, "{a} {b} {c}");
        assert_eq!(cal.surprise(1e6), Some(MAX_SURPRISE));
        assert!(cal.surprise(0.0).unwrap() < 0.01, "the smallest score is not surprising");
    }

    #[test]
    fn flat_history_does_not_explode_on_tiny_wiggles() {
        let mut cal = Calibrator::new(1000, 100);
        for _ in 0..200 {
            cal.observe(1.0);
        }
        assert!(cal.surprise(1.0 + 1e-9).unwrap() < 3.0);
        assert!(cal.surprise(10.0).unwrap() >= MAX_SURPRISE);
    }
}
