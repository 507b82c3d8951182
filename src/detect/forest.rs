//! Extended Isolation Forest fitted on the device to this household's normal: first after a
//! baseline period (default 24 h), then again every day on the recent steps the ensemble judged
//! normal. The fitted forest is saved so a reboot does not restart learning.

use std::collections::VecDeque;
use std::path::Path;

use extended_isolation_forest::{Forest, ForestOptions};
use serde::{Deserialize, Serialize};

use super::features::FOREST_DIM;

const TREES: usize = 100;
const SAMPLE: usize = 256;

#[derive(Serialize, Deserialize)]
pub struct Saved {
    /// Wall-clock ms of the fit.
    pub fitted_at: i64,
    pub forest: Forest<f64, FOREST_DIM>,
}

pub struct ForestDetector {
    recent: VecDeque<[f64; FOREST_DIM]>,
    cap: usize,
    baseline_ms: i64,
    refit_ms: i64,
    first_ts: Option<i64>,
    fitted: Option<Saved>,
}

impl ForestDetector {
    /// `cap`: normal steps kept for the next fit (a week of minutes by default).
    pub fn new(baseline_ms: i64, refit_ms: i64, cap: usize) -> ForestDetector {
        ForestDetector { recent: VecDeque::new(), cap, baseline_ms, refit_ms, first_ts: None, fitted: None }
    }

    pub fn restore(&mut self, saved: Saved) {
        self.fitted = Some(saved);
    }

    pub fn saved(&self) -> Option<&Saved> {
        self.fitted.as_ref()
    }

    /// Isolation score of `x` (about 0.5 is ordinary, toward 1 is isolated), if fitted.
    pub fn score(&self, x: &[f64; FOREST_DIM]) -> Option<f64> {
        self.fitted.as_ref().map(|f| f.forest.score(x))
    }

    /// Remembers a step judged normal; fits when the baseline is complete and then once per
    /// refit period. Returns true when it fitted.
    pub fn observe(&mut self, ts: i64, x: [f64; FOREST_DIM]) -> bool {
        self.recent.push_back(x);
        if self.recent.len() > self.cap {
            self.recent.pop_front();
        }
        let first = *self.first_ts.get_or_insert(ts);
        let due = match &self.fitted {
            None => ts - first >= self.baseline_ms,
            Some(f) => ts - f.fitted_at >= self.refit_ms || ts < f.fitted_at,
        };
        if !due || self.recent.len() < SAMPLE * 2 {
            return false;
        }
        let data: Vec<[f64; FOREST_DIM]> = self.recent.iter().copied().collect();
        let options = ForestOptions {
            n_trees: TREES,
            sample_size: SAMPLE,
            max_tree_depth: None,
            extension_level: FOREST_DIM - 1,
        };
        match Forest::from_slice(&data, &options) {
            Ok(forest) => {
                self.fitted = Some(Saved { fitted_at: ts, forest });
                true
            }
            Err(e) => {
                tracing::warn!("isolation forest fit failed on {} steps: {e:?}", data.len());
                false
            }
        }
    }
}

pub use crate::jsonfile::save;

/// One forest (`Saved`), or all channels' by name (`Vec<(String, Saved)>`).
pub fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, crate::jsonfile::LoadError> {
    crate::jsonfile::load(path, "a saved forest")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(i: usize) -> [f64; FOREST_DIM] {
        let a = (i as f64 * 0.7).sin() * 0.5;
        [a, a * 0.3, a * 0.8, 0.4 + a.abs() * 0.1]
    }

    #[test]
    fn fits_after_baseline_scores_outliers_higher_and_survives_a_save() {
        let minute = 60_000;
        let mut f = ForestDetector::new(24 * 60 * minute, 24 * 60 * minute, 10_080);
        let mut fitted_at = None;
        for i in 0..(24 * 60 + 5) {
            if f.observe(i as i64 * minute, normal(i)) {
                fitted_at.get_or_insert(i);
            }
        }
        assert_eq!(fitted_at, Some(24 * 60), "fits exactly when the baseline completes");
        let ordinary = f.score(&normal(7)).unwrap();
        let odd = f.score(&[6.0, 5.0, 4.0, 3.0]).unwrap();
        assert!(odd > ordinary + 0.15, "outlier {odd} vs ordinary {ordinary}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("forest.json");
        save(f.saved().unwrap(), &path).unwrap();
        let mut g = ForestDetector::new(24 * 60 * minute, 24 * 60 * minute, 10_080);
        g.restore(load(&path).unwrap());
        assert_eq!(g.score(&[6.0, 5.0, 4.0, 3.0]), Some(odd), "same forest after a reboot");
        // refits a day later, not before
        assert!(!g.observe(25 * 60 * minute, normal(1)));
        std::fs::write(&path, b"{\"fitted_at\": 1, \"forest\": 3").unwrap();
        assert!(load::<Saved>(&path).err().unwrap().to_string().contains("not a saved forest"));
    }
}
