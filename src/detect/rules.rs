//! What needs no learning: a channel with no data for several steps in a row (an outage seen from
//! the measurements), and sustained packet loss. The agent adds the state machine's outages and
//! the gateway's reboots, which are already events.

/// Steps in a row without a value before a channel counts as dropped out.
pub const DROPOUT_STEPS: usize = 3;
/// Loss ratio, and steps in a row at or above it, that make sustained loss.
pub const LOSS_RATIO: f64 = 0.05;
pub const LOSS_STEPS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RuleHit {
    Dropout { steps: usize },
    SustainedLoss { steps: usize, ratio: f64 },
}

impl RuleHit {
    pub fn describe(&self, channel: &str) -> String {
        match self {
            RuleHit::Dropout { steps } => format!("{channel}: no data for {steps} steps"),
            RuleHit::SustainedLoss { steps, ratio } => {
                format!("{channel}: loss {:.0}% or more for {steps} steps", ratio * 100.0)
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Rules {
    missing: usize,
    lossy: usize,
}

impl Rules {
    /// `is_loss`: the channel is a loss ratio (0..1).
    pub fn step(&mut self, x: Option<f64>, is_loss: bool) -> Option<RuleHit> {
        match x {
            None => self.missing += 1,
            Some(_) => self.missing = 0,
        }
        match x {
            Some(v) if is_loss && v >= LOSS_RATIO => self.lossy += 1,
            _ => self.lossy = 0,
        }
        if self.missing >= DROPOUT_STEPS {
            Some(RuleHit::Dropout { steps: self.missing })
        } else if self.lossy >= LOSS_STEPS {
            Some(RuleHit::SustainedLoss { steps: self.lossy, ratio: LOSS_RATIO })
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_and_sustained_loss() {
        let mut r = Rules::default();
        assert_eq!(r.step(None, false), None);
        assert_eq!(r.step(None, false), None);
        assert_eq!(r.step(None, false), Some(RuleHit::Dropout { steps: 3 }));
        assert_eq!(r.step(Some(1.0), false), None, "data back");
        let mut r = Rules::default();
        for _ in 0..4 {
            assert_eq!(r.step(Some(0.2), true), None);
        }
        assert!(matches!(r.step(Some(0.06), true), Some(RuleHit::SustainedLoss { steps: 5, .. })));
        assert_eq!(r.step(Some(0.0), true), None);
        for _ in 0..10 {
            assert_eq!(r.step(Some(0.5), false), None, "not a loss channel");
        }
    }
}
