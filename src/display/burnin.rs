//! OLED burn-in care: the picture wanders a few pixels, dims after a while, and the screen is off
//! at night (the hours are configurable; a glance at 3 am is rare, burn-in is not).

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BurnIn {
    /// Local hour (0-23) the screen turns off, and the hour it comes back.
    pub off_from_hour: u8,
    pub off_until_hour: u8,
    /// Minutes between one-pixel moves of the picture.
    pub shift_every_min: u32,
    /// Dim after this many minutes without a change of state.
    pub dim_after_min: u32,
}

impl Default for BurnIn {
    fn default() -> Self {
        BurnIn { off_from_hour: 23, off_until_hour: 7, shift_every_min: 5, dim_after_min: 10 }
    }
}

/// Where the picture sits, as a function of time: a slow loop around a 3x3 square.
pub fn offset(minutes: u64, every: u32) -> (i32, i32) {
    const PATH: [(i32, i32); 8] = [(0, 0), (1, 0), (2, 0), (2, 1), (2, 2), (1, 2), (0, 2), (0, 1)];
    let step = (minutes / every.max(1) as u64) as usize % PATH.len();
    PATH[step]
}

impl BurnIn {
    /// Is the screen off at this local hour?
    pub fn is_night(&self, hour: u8) -> bool {
        let (from, until) = (self.off_from_hour, self.off_until_hour);
        if from == until {
            false
        } else if from < until {
            (from..until).contains(&hour)
        } else {
            hour >= from || hour < until
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn night_wraps_midnight() {
        let b = BurnIn::default();
        assert!(b.is_night(23) && b.is_night(0) && b.is_night(6));
        assert!(!b.is_night(7) && !b.is_night(12) && !b.is_night(22));
        let never = BurnIn { off_from_hour: 0, off_until_hour: 0, ..b };
        assert!(!never.is_night(3));
    }

    #[test]
    fn picture_wanders_within_two_pixels() {
        let seen: Vec<(i32, i32)> = (0..40).map(|m| offset(m, 5)).collect();
        assert_eq!(seen[0], (0, 0));
        assert_eq!(seen[5], (1, 0));
        assert!(seen.iter().all(|(x, y)| (0..=2).contains(x) && (0..=2).contains(y)));
        assert_eq!(offset(40, 5), (0, 0), "the loop closes");
    }
}
