//! One channel's view of its own past: robust statistics learned on the device, the 60-step window
//! the models read, and the small feature vector the forest reads.
//!
//! Must match `onnx/train.py` exactly, or the models see data unlike what they were trained on:
//! statistics refreshed every 60 steps from the present values among the last 1440 steps (median m, scale
//! s = max(1.4826 MAD, 1% of |m|, 1e-6)), u = asinh((x - m) / s), missing values as u = 0 with
//! present = 0 (never a zero that reads as perfect latency).

use std::collections::VecDeque;

use crate::calendar::DAY_MS;
use crate::stats::median_in_place;

pub const WINDOW: usize = 60;
pub const STATS_EVERY: usize = 60;
pub const STATS_SPAN: usize = 1440;
/// Inputs per step of the forecaster's window: u, present, sin and cos of the time of day.
pub const SEQ_FEATURES: usize = 4;
/// Features per step for the forest.
pub const FOREST_DIM: usize = 4;

/// Median and MAD of the present values among the last `STATS_SPAN` steps, refreshed every
/// `STATS_EVERY` steps.
#[derive(Debug, Clone, Default)]
pub struct RobustStats {
    history: VecDeque<Option<f64>>,
    steps: usize,
    current: Option<(f64, f64)>,
}

impl RobustStats {
    /// The (median, scale) known *before* this step, then takes the step into the history.
    /// The refresh happens first, as in training: a step is judged by the past only.
    pub fn step(&mut self, x: Option<f64>) -> Option<(f64, f64)> {
        if self.steps > 0 && self.steps.is_multiple_of(STATS_EVERY) {
            let present: Vec<f64> = self.history.iter().flatten().copied().collect();
            if present.len() >= STATS_EVERY / 2 {
                self.current = Some(median_scale(present));
            }
        }
        self.steps += 1;
        self.history.push_back(x);
        if self.history.len() > STATS_SPAN {
            self.history.pop_front();
        }
        self.current
    }

    pub fn current(&self) -> Option<(f64, f64)> {
        self.current
    }
}

fn median_scale(mut v: Vec<f64>) -> (f64, f64) {
    let m = median_in_place(&mut v);
    let mut dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    let mad = median_in_place(&mut dev);
    (m, (1.4826 * mad).max(0.01 * m.abs()).max(1e-6))
}

/// One step as the models see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Normalised value, 0 when missing.
    pub u: f64,
    pub present: bool,
    /// Seconds since midnight UTC (the training data's clock), as sin/cos.
    pub tod_sin: f64,
    pub tod_cos: f64,
}

impl Step {
    pub fn new(u: Option<f64>, ts_ms: i64) -> Step {
        let a = 2.0 * std::f64::consts::PI * (ts_ms.rem_euclid(DAY_MS) as f64 / DAY_MS as f64);
        Step { u: u.unwrap_or(0.0), present: u.is_some(), tod_sin: a.sin(), tod_cos: a.cos() }
    }
}

/// The last `WINDOW` steps of one channel.
#[derive(Debug, Clone, Default)]
pub struct Window {
    steps: VecDeque<Step>,
}

impl Window {
    pub fn push(&mut self, s: Step) {
        self.steps.push_back(s);
        if self.steps.len() > WINDOW {
            self.steps.pop_front();
        }
    }

    pub fn is_full(&self) -> bool {
        self.steps.len() == WINDOW
    }

    pub fn last(&self) -> Option<&Step> {
        self.steps.back()
    }

    /// `[WINDOW * SEQ_FEATURES]`, row-major [step][feature], for the forecaster.
    pub fn seq_input(&self, out: &mut Vec<f32>) {
        out.clear();
        for s in &self.steps {
            out.extend_from_slice(&[s.u as f32, s.present as u8 as f32, s.tod_sin as f32, s.tod_cos as f32]);
        }
    }

    /// `[2 * WINDOW]`: u then present, for the autoencoder and the classifier.
    pub fn flat_input(&self, out: &mut Vec<f32>) {
        out.clear();
        out.extend(self.steps.iter().map(|s| s.u as f32));
        out.extend(self.steps.iter().map(|s| s.present as u8 as f32));
    }

    /// Forest features of the newest step: its value, its change, the mean of the last 5 and the
    /// spread of the last 15 (all in u). None when the newest step is missing: a missing value is
    /// the rules' and the autoencoder's business, not a point in feature space.
    pub fn forest_features(&self) -> Option<[f64; FOREST_DIM]> {
        let last = self.steps.back().filter(|s| s.present)?;
        let present = |n: usize| self.steps.iter().rev().take(n).filter(|s| s.present).map(|s| s.u);
        let prev = self.steps.iter().rev().nth(1).filter(|s| s.present).map_or(last.u, |s| s.u);
        let n5 = present(5).count().max(1) as f64;
        let mean5 = present(5).sum::<f64>() / n5;
        let n15 = present(15).count().max(1) as f64;
        let mean15 = present(15).sum::<f64>() / n15;
        let var15 = present(15).map(|u| (u - mean15).powi(2)).sum::<f64>() / n15;
        // Rounded to 1e-6: the forest's uniform draw between two values a few ulps apart can spin
        // for minutes (seen with the extended-isolation-forest crate on near-flat series).
        Some([last.u, last.u - prev, mean5, var15.sqrt()].map(|v| (v * 1e6).round() / 1e6))
    }

    /// Fraction of missing steps in the window.
    pub fn missing_fraction(&self) -> f64 {
        if self.steps.is_empty() {
            return 0.0;
        }
        self.steps.iter().filter(|s| !s.present).count() as f64 / self.steps.len() as f64
    }
}

/// u from a raw value.
pub fn normalise(x: f64, (m, s): (f64, f64)) -> f64 {
    ((x - m) / s).asinh()
}

/// Raw value from u: to explain a forecast in the channel's own unit.
pub fn denormalise(u: f64, (m, s): (f64, f64)) -> f64 {
    m + u.sinh() * s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_use_only_the_past_and_refresh_every_sixty_steps() {
        let mut st = RobustStats::default();
        for i in 0..60 {
            assert_eq!(st.step(Some(10.0 + (i % 3) as f64)), None, "no statistics before 60 steps");
        }
        // Step 60 sees the first 60 values: 10, 11, 12 repeated -> median 11, MAD 1.
        let (m, s) = st.step(Some(1000.0)).unwrap();
        assert_eq!(m, 11.0);
        assert!((s - 1.4826).abs() < 1e-9);
        // The spike is in the history now, but the statistics wait for the next refresh.
        assert_eq!(st.step(Some(11.0)), Some((m, s)));
    }

    #[test]
    fn scale_has_a_floor_for_flat_channels() {
        let mut st = RobustStats::default();
        for _ in 0..61 {
            st.step(Some(0.0));
        }
        assert_eq!(st.current(), Some((0.0, 1e-6)));
        let mut st = RobustStats::default();
        for _ in 0..61 {
            st.step(Some(20.0));
        }
        assert_eq!(st.current(), Some((20.0, 0.2)), "1% of the level when the channel never moves");
    }

    #[test]
    fn missing_steps_are_marked_not_zeroed_into_good_values() {
        let mut w = Window::default();
        for i in 0..WINDOW {
            w.push(Step::new(if i % 10 == 0 { None } else { Some(0.5) }, i as i64 * 60_000));
        }
        let mut flat = Vec::new();
        w.flat_input(&mut flat);
        assert_eq!(flat.len(), 2 * WINDOW);
        assert_eq!((flat[0], flat[WINDOW]), (0.0, 0.0), "missing: u 0 and present 0");
        assert_eq!((flat[1], flat[WINDOW + 1]), (0.5, 1.0));
        assert!((w.missing_fraction() - 0.1).abs() < 1e-12);
        let mut seq = Vec::new();
        w.seq_input(&mut seq);
        assert_eq!(seq.len(), WINDOW * SEQ_FEATURES);
        assert_eq!(seq[1], 0.0);
        w.push(Step::new(None, 0));
        assert_eq!(w.forest_features(), None);
    }

    #[test]
    fn normalise_round_trips() {
        let st = (20.0, 2.0);
        for x in [0.0, 19.0, 20.0, 35.0, 5000.0] {
            assert!((denormalise(normalise(x, st), st) - x).abs() < 1e-6 * x.abs().max(1.0));
        }
        assert!(normalise(20.0 + 2.0 * 1000.0, st) < 8.0, "a 1000-sigma spike stays in range");
    }
}
