//! `[state]`: when the link counts as down or degraded.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use super::doc::Doc;

pub const DOWN_AFTER: u32 = 3;
pub const WINDOW: Duration = Duration::from_secs(60);
pub const DEGRADED_LOSS: f64 = 0.05;
pub const DEGRADED_RTT_MS: f64 = 150.0;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub down_after: Option<Spanned<u32>>,
    #[serde(default, deserialize_with = "super::duration::de_spanned")]
    pub window: Option<Spanned<Duration>>,
    pub degraded_loss: Option<Spanned<f64>>,
    pub degraded_rtt_ms: Option<Spanned<f64>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    /// Consecutive lost probes before a target counts as down.
    pub down_after: u32,
    /// Sliding window for loss and latency when judging "degraded".
    pub window: Duration,
    /// Loss ratio (0-1) over the window above which the link is degraded.
    pub degraded_loss: f64,
    /// Median anchor RTT over the window above which the link is degraded.
    pub degraded_rtt_ms: f64,
}

impl StateConfig {
    pub fn from_raw(s: &RawState, doc: &Doc) -> Result<StateConfig, ConfigError> {
        Ok(StateConfig {
            down_after: doc.number_in(&s.down_after, "state.down_after", DOWN_AFTER, (1, 1000))?,
            window: doc.duration_in(
                &s.window,
                "state.window",
                WINDOW,
                (Duration::from_secs(5), Duration::from_secs(3600)),
            )?,
            degraded_loss: doc.number_in(&s.degraded_loss, "state.degraded_loss", DEGRADED_LOSS, (0.0, 1.0))?,
            degraded_rtt_ms: doc.number_in(
                &s.degraded_rtt_ms,
                "state.degraded_rtt_ms",
                DEGRADED_RTT_MS,
                (1.0, 60_000.0),
            )?,
        })
    }
}
