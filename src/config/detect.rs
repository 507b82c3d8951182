//! `[detect]`: the learned detectors.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::doc::Doc;

/// The learned detectors (see `detect::pipeline`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    pub enabled: bool,
    /// "builtin" (the models compiled in) or a folder with forecaster.onnx, autoencoder.onnx and
    /// classifier.onnx, re-read when a file changes.
    pub models: String,
    /// Learning period before the isolation forest is first fitted.
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub baseline: Duration,
    /// Target false-alarm rate on a healthy link.
    pub alarms_per_week: f64,
}

pub const MODELS: &str = "builtin";
pub const BASELINE: Duration = Duration::from_secs(24 * 3600);
pub const ALARMS_PER_WEEK: f64 = 1.0;

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig { enabled: true, models: MODELS.into(), baseline: BASELINE, alarms_per_week: ALARMS_PER_WEEK }
    }
}

impl DetectConfig {
    pub fn validate(&self, doc: &Doc) -> Result<(), ConfigError> {
        if !(self.alarms_per_week > 0.0 && self.alarms_per_week <= 1000.0) {
            return Err(doc.bad("detect", "alarms_per_week", "must be above 0 and at most 1000"));
        }
        Ok(())
    }
}
