//! Degradation episodes: for minutes on end, latency well above this path's current level (the
//! level shift detector's reference, so a new route's baseline is not itself a degradation) or
//! packet loss above a few percent. An episode is a run of such steps long enough to feel; it is
//! what an evening of buffering is, and what the outlook (`outlook`) predicts.

use super::pipeline::ChannelKind;

/// A latency step is degraded at 1.5x the path's level and at least this many of its spreads.
pub const LATENCY_FACTOR: f64 = 1.5;
pub const LATENCY_SPREADS: f64 = 6.0;
/// A loss step is degraded at this ratio (5% of pings).
pub const LOSS_RATIO: f64 = 0.05;
/// How long a run of degraded steps must last to be an episode.
pub const MIN_MS: i64 = 10 * 60_000;

/// Is this step degraded? `reference`: (median, spread) of ln x for latency channels.
pub fn degraded(kind: ChannelKind, x: Option<f64>, reference: Option<(f64, f64)>) -> bool {
    match kind {
        ChannelKind::Loss => x.is_some_and(|v| v >= LOSS_RATIO),
        _ => excess(kind, x, reference).is_some_and(|e| e >= 1.0),
    }
}

/// How far a latency step is above its path's level, in units of the degradation bar (1 is
/// degraded); None for other channels or without a level.
pub fn excess(kind: ChannelKind, x: Option<f64>, reference: Option<(f64, f64)>) -> Option<f64> {
    match (kind, x, reference) {
        (ChannelKind::Latency | ChannelKind::TailLatency, Some(v), Some((mu, sig))) if v > 0.0 => {
            Some((v.ln() - mu) / LATENCY_FACTOR.ln().max(LATENCY_SPREADS * sig))
        }
        _ => None,
    }
}

/// Counts degraded steps in a row; says when a run has lasted long enough.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Episode {
    run: usize,
}

impl Episode {
    /// The steps a run needs at this step length (at least 2: one bad sample is not an episode).
    pub fn steps_needed(step_ms: i64) -> usize {
        ((MIN_MS + step_ms - 1) / step_ms.max(1)).max(2) as usize
    }

    /// True while the current run is an episode.
    pub fn step(&mut self, bad: bool, step_ms: i64) -> bool {
        self.run = if bad { self.run + 1 } else { 0 };
        self.run >= Self::steps_needed(step_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::HOUR_MS;

    #[test]
    fn latency_counts_against_the_current_level() {
        let r = Some((100f64.ln(), 0.01));
        assert!(!degraded(ChannelKind::Latency, Some(140.0), r));
        assert!(degraded(ChannelKind::Latency, Some(160.0), r));
        assert!(!degraded(ChannelKind::Latency, Some(160.0), None), "no level yet");
        // a noisy path (spread 10% of log) needs 6 spreads: 1.82x
        assert!(!degraded(ChannelKind::Latency, Some(160.0), Some((100f64.ln(), 0.1))));
        assert!(degraded(ChannelKind::Loss, Some(0.05), None));
        assert!(!degraded(ChannelKind::Other, Some(1e9), r));
    }

    #[test]
    fn an_episode_is_ten_minutes_of_bad_steps() {
        assert_eq!(Episode::steps_needed(60_000), 10);
        assert_eq!(Episode::steps_needed(240_000), 3);
        assert_eq!(Episode::steps_needed(HOUR_MS), 2);
        let mut e = Episode::default();
        let on: Vec<bool> = (0..12).map(|i| e.step(i != 4, 60_000)).collect();
        assert_eq!(on.iter().filter(|b| **b).count(), 0, "the run broke at step 4");
        assert!((0..10).map(|_| e.step(true, 60_000)).last().unwrap());
    }
}
