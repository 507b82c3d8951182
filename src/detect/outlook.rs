//! The outlook: the probability of trouble (a degradation episode or an outage) within the next
//! hour, and an honest account of whether that probability is worth hearing on this link.
//!
//! The yardstick is the time-of-week climatology: "Tuesdays at 20:00 are bad 30% of the time",
//! learnt online from this link's own outcomes. The outlook's base is the link's state: in
//! trouble, just out of it, or quiet, with this link's own record of what followed each (the
//! quiet state by hour of the week), since trouble persists and the state says more than the
//! hour. An online logistic regression on outcomes as they resolve an hour later then learns how
//! much the rest of the present (trouble lately, latency above its level) should move it.
//! Every prediction is scored when its hour is over (Brier score, for the outlook and for the
//! climatology), so the agent knows its own skill here and only warns while it is positive.

use std::collections::VecDeque;

use crate::calendar::{DAY_MS, HOUR_MS, hour_of_week};

/// How far ahead "soon" is.
pub const HORIZON_MS: i64 = HOUR_MS;
/// A warning goes out when the probability reaches this...
pub const WARN_AT: f64 = 0.5;
/// ...and the outlook's skill over the last `SKILL_SPAN_MS` is positive on at least a day of
/// resolved predictions.
pub const SKILL_SPAN_MS: i64 = 14 * DAY_MS;
const SKILL_MIN_MS: i64 = DAY_MS;
/// Learning rate of the online logistic regression (AdaGrad, per feature; chosen on the tune half).
const RATE: f64 = 0.05;
/// Where every link starts: the weights learnt over the tune half of the RIPE traces and the
/// Netrics link (`scripts/score.py --half tune` prints them), which each link then adapts.
pub const PRIOR: [f64; FEATURES] = [-0.19, 1.06, 0.07, 0.0, 0.0, 0.02, 0.0];
/// Features: bias, logit(the base rate for the link's state), trouble now, recency of trouble,
/// share of trouble in the last day, latency excess over its level, the forecaster's warning.
pub const FEATURES: usize = 7;
/// The link's state when a prediction is made: in trouble, out of it for less than
/// `RECENT_MS`, or quiet. Trouble persists, so the state moves the odds more than the hour does.
const STATES: usize = 3;
const RECENT_MS: i64 = 6 * HOUR_MS;
/// Each state's rate before the link has its own outcomes (tune half, printed by
/// `scripts/score.py --half tune`), worth `PRIOR_WEIGHT` outcomes.
const STATE_PRIOR: [f64; STATES] = [0.95, 0.01, 0.002];
const PRIOR_WEIGHT: f64 = 10.0;
/// Reliability diagram bins.
pub const BINS: usize = 10;

/// What the present looks like to the outlook, filled by the pipeline each step.
#[derive(Debug, Clone, Copy, Default)]
pub struct Present {
    /// A degradation episode or an outage on any channel this step.
    pub trouble: bool,
    /// The worst latency excess over its level, in units of the degradation bar (0..1+).
    pub excess: f64,
    /// The forecaster's warning confidence (0 when none).
    pub forecast: f64,
}

/// Reliability bins of (predicted probability, what happened): per tenth of probability, (sum of
/// p, count of trouble, count).
pub fn reliability(pairs: impl IntoIterator<Item = (f64, bool)>) -> Vec<(f64, u64, u64)> {
    let mut bins = vec![(0.0, 0, 0); BINS];
    for (p, y) in pairs {
        add_to_bins(&mut bins, p, y);
    }
    bins
}

fn add_to_bins(bins: &mut [(f64, u64, u64)], p: f64, y: bool) {
    let b = ((p * BINS as f64) as usize).min(BINS - 1);
    bins[b].0 += p;
    bins[b].1 += y as u64;
    bins[b].2 += 1;
}

/// Brier scores and a reliability diagram, summed over resolved predictions.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    pub n: u64,
    pub brier: f64,
    pub brier_climatology: f64,
    /// Per bin of predicted probability: (sum of p, count of trouble, count).
    pub bins: Vec<(f64, u64, u64)>,
    /// The weights at the end (replay), for choosing the prior.
    pub weights: Vec<f64>,
    /// Outcomes per state at the end: (trouble, count), for choosing the states' prior.
    #[serde(default)]
    pub states: Vec<(u64, u64)>,
    /// Per state at prediction: (count, Brier sum, the climatology's Brier sum). The quiet
    /// state's skill is the one that matters for warnings.
    #[serde(default)]
    pub by_state: Vec<(u64, f64, f64)>,
}

impl Tally {
    fn add(&mut self, p: f64, clim: f64, y: bool, state: usize) {
        let yf = y as u8 as f64;
        self.n += 1;
        self.brier += (p - yf).powi(2);
        self.brier_climatology += (clim - yf).powi(2);
        if self.bins.len() != BINS {
            self.bins = vec![(0.0, 0, 0); BINS];
        }
        if self.by_state.len() != STATES {
            self.by_state = vec![(0, 0.0, 0.0); STATES];
        }
        let s = &mut self.by_state[state];
        s.0 += 1;
        s.1 += (p - yf).powi(2);
        s.2 += (clim - yf).powi(2);
        add_to_bins(&mut self.bins, p, y);
    }

    /// 1 - BS / BS(climatology): above 0 beats "this hour of the week is usually like this".
    pub fn skill(&self) -> Option<f64> {
        (self.n > 0 && self.brier_climatology > 0.0).then(|| 1.0 - self.brier / self.brier_climatology)
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Pending {
    ts: i64,
    x: [f64; FEATURES],
    /// The model's probability (what it learns from and its skill is measured on)...
    p: f64,
    /// ...and what was said (the model's or, while it has no skill here, the climatology's).
    served: f64,
    clim: f64,
    #[serde(default = "quiet_state")]
    state: usize,
    warned: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Outlook {
    utc_offset_s: i64,
    /// Resolved outcomes per hour of the week: (trouble, count); the yardstick.
    climatology: Vec<(u64, u64)>,
    /// The same for predictions made while the link was quiet, and per state (state files from
    /// before these existed start them empty).
    #[serde(default = "week_of_hours")]
    quiet: Vec<(u64, u64)>,
    #[serde(default)]
    states: [(u64, u64); STATES],
    w: [f64; FEATURES],
    /// AdaGrad's sum of squared gradients per feature.
    g2: [f64; FEATURES],
    pending: VecDeque<Pending>,
    /// Steps with trouble within the last day (for labels and the day's share), and all steps.
    troubled: VecDeque<i64>,
    steps: VecDeque<i64>,
    last_trouble: Option<i64>,
    /// (ts, squared error, squared error of the climatology) over `SKILL_SPAN_MS`.
    recent: VecDeque<(i64, f64, f64)>,
    /// Did each of the last warnings come true?
    warnings: VecDeque<bool>,
    /// Everything resolved after `score_from` (replay skips the first week).
    pub tally: Tally,
    score_from: i64,
    last: Option<Said>,
}

/// What the outlook said on its last step, and the trouble it saw then.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Said {
    pub p: f64,
    pub climatology: f64,
    pub trouble: bool,
}

fn week_of_hours() -> Vec<(u64, u64)> {
    vec![(0, 0); 168]
}

fn quiet_state() -> usize {
    STATES - 1
}

/// The rate for hour `h` of the week, shrunk toward the overall rate while the hour has few
/// outcomes.
fn by_hour(counts: &[(u64, u64)], h: usize) -> f64 {
    let (k, n) = counts.iter().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let overall = (k as f64 + 0.5) / (n as f64 + 1.0);
    let (kh, nh) = counts[h];
    (kh as f64 + 4.0 * overall) / (nh as f64 + 4.0)
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-4, 1.0 - 1e-4);
    (p / (1.0 - p)).ln()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Outlook {
    pub fn new(utc_offset_s: i64) -> Outlook {
        Outlook {
            utc_offset_s,
            climatology: vec![(0, 0); 168],
            quiet: week_of_hours(),
            states: [(0, 0); STATES],
            w: PRIOR,
            g2: [1.0; FEATURES],
            pending: VecDeque::new(),
            troubled: VecDeque::new(),
            steps: VecDeque::new(),
            last_trouble: None,
            recent: VecDeque::new(),
            warnings: VecDeque::new(),
            tally: Tally::default(),
            score_from: i64::MIN,
            last: None,
        }
    }

    /// Only predictions made at or after `ts` count in `tally` (replay: after a week of learning).
    pub fn score_from(&mut self, ts: i64) {
        self.score_from = ts;
    }

    /// The climatology for the hour of the week an hour from `ts`, shrunk toward the overall rate
    /// while its hour has few outcomes.
    pub fn climatology(&self, ts: i64) -> f64 {
        by_hour(&self.climatology, hour_of_week(ts + HORIZON_MS / 2, self.utc_offset_s))
    }

    /// The rate of trouble within the hour for the link's state now: the state's own record
    /// while in or just out of trouble, the quiet hours' climatology while quiet.
    fn base(&self, ts: i64, state: usize) -> f64 {
        if state == STATES - 1 {
            return by_hour(&self.quiet, hour_of_week(ts + HORIZON_MS / 2, self.utc_offset_s));
        }
        let (k, n) = self.states[state];
        (k as f64 + PRIOR_WEIGHT * STATE_PRIOR[state]) / (n as f64 + PRIOR_WEIGHT)
    }

    /// The last step's probability, climatology and trouble.
    pub fn last(&self) -> Option<Said> {
        self.last
    }

    /// Skill over the last two weeks of resolved predictions, once there is a day of them.
    pub fn skill(&self) -> Option<f64> {
        let (first, last) = (self.recent.front()?.0, self.recent.back()?.0);
        if last - first < SKILL_MIN_MS {
            return None;
        }
        let (bs, bc) = self.recent.iter().fold((0.0, 0.0), |a, r| (a.0 + r.1, a.1 + r.2));
        (bc > 0.0).then(|| 1.0 - bs / bc)
    }

    /// (came true, warnings) over the last ten warnings.
    pub fn track_record(&self) -> (usize, usize) {
        (self.warnings.iter().filter(|w| **w).count(), self.warnings.len())
    }

    /// The learnt weights, for the ablation and the notes.
    pub fn weights(&self) -> [f64; FEATURES] {
        self.w
    }

    /// The tally with the weights as they ended.
    pub fn report(&self) -> Tally {
        Tally { weights: self.w.to_vec(), states: self.states.to_vec(), ..self.tally.clone() }
    }

    /// One step: learn from predictions whose hour is over, then predict. Returns the probability
    /// of trouble within the hour, and whether it should be a warning (crossing `WARN_AT` while
    /// skill here is positive).
    pub fn step(&mut self, ts: i64, now: Present, mask: &[bool; FEATURES]) -> (f64, bool) {
        self.steps.push_back(ts);
        if now.trouble {
            self.troubled.push_back(ts);
            self.last_trouble = Some(ts);
        }
        while self.steps.front().is_some_and(|&t| ts - t > DAY_MS) {
            self.steps.pop_front();
        }
        while self.troubled.front().is_some_and(|&t| ts - t > DAY_MS) {
            self.troubled.pop_front();
        }
        self.resolve(ts);

        let clim = self.climatology(ts);
        let since = self.last_trouble.map(|t| ts - t);
        let recency = since.map_or(0.0, |d| (-(d as f64) / RECENT_MS as f64).exp());
        let share = self.troubled.len() as f64 / self.steps.len().max(1) as f64;
        // Without the present (the ablation) every step counts as quiet and the base is the
        // climatology.
        let state = match since {
            _ if !mask[2] => STATES - 1,
            Some(0) => 0,
            Some(d) if d < RECENT_MS => 1,
            _ => 2,
        };
        let base = if mask[2] { self.base(ts, state) } else { clim };
        let mut x = [
            1.0,
            logit(base),
            now.trouble as u8 as f64,
            recency,
            share.sqrt(),
            now.excess.clamp(0.0, 2.0),
            now.forecast.clamp(0.0, 1.0),
        ];
        for (v, keep) in x.iter_mut().zip(mask).skip(2) {
            if !keep {
                *v = 0.0;
            }
        }
        let model = sigmoid(self.w.iter().zip(&x).map(|(w, x)| w * x).sum());
        // What it says is the model only while the model has beaten the climatology here lately;
        // otherwise it says the climatology (and learns on).
        let skilled = self.skill().is_some_and(|s| s > 0.0);
        let p = if skilled { model } else { clim };
        let was = self.last.map_or(0.0, |l| l.p);
        // Trouble under way is already news (a degradation or an outage); a warning is for
        // trouble that has not started.
        let warn = p >= WARN_AT && was < WARN_AT && skilled && !now.trouble;
        self.pending.push_back(Pending { ts, x, p: model, served: p, clim, state, warned: warn });
        self.last = Some(Said { p, climatology: clim, trouble: now.trouble });
        (p, warn)
    }

    /// Predictions made an hour or more ago: was there trouble in (t, t + 1 h]?
    fn resolve(&mut self, ts: i64) {
        while let Some(p) = self.pending.front() {
            if ts - p.ts < HORIZON_MS {
                break;
            }
            let p = self.pending.pop_front().expect("front exists");
            let first_after = self.troubled.partition_point(|&t| t <= p.ts);
            let y = self.troubled.get(first_after).is_some_and(|&t| t <= p.ts + HORIZON_MS);
            let yf = y as u8 as f64;
            for ((w, g2), x) in self.w.iter_mut().zip(&mut self.g2).zip(&p.x) {
                let g = (yf - p.p) * x;
                *g2 += g * g;
                *w += RATE * g / g2.sqrt();
            }
            let h = hour_of_week(p.ts + HORIZON_MS / 2, self.utc_offset_s);
            self.climatology[h].0 += y as u64;
            self.climatology[h].1 += 1;
            self.states[p.state].0 += y as u64;
            self.states[p.state].1 += 1;
            if p.state == STATES - 1 {
                self.quiet[h].0 += y as u64;
                self.quiet[h].1 += 1;
            }
            if p.ts >= self.score_from {
                self.tally.add(p.served, p.clim, y, p.state);
            }
            self.recent.push_back((p.ts, (p.p - yf).powi(2), (p.clim - yf).powi(2)));
            while self.recent.front().is_some_and(|r| p.ts - r.0 > SKILL_SPAN_MS) {
                self.recent.pop_front();
            }
            if p.warned {
                self.warnings.push_back(y);
                if self.warnings.len() > 10 {
                    self.warnings.pop_front();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [bool; FEATURES] = [true; FEATURES];

    /// A link that is in trouble every evening 19:00-21:00 and, besides, for an hour after any
    /// random burst: the outlook must beat the evening climatology by learning the bursts.
    fn link(days: i64, mask: &[bool; FEATURES]) -> Outlook {
        link_counting(days, mask).0
    }

    /// The same, also counting the warnings given while trouble was already under way.
    fn link_counting(days: i64, mask: &[bool; FEATURES]) -> (Outlook, usize) {
        let step = 300_000;
        let (mut warned_in_trouble, mut above_in_trouble) = (0, 0);
        let mut o = Outlook::new(0);
        o.score_from(7 * DAY_MS);
        let mut burst_until = 0;
        let mut seed = 12345u64;
        for i in 0..days * 288 {
            let ts = i * step;
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            if (seed >> 33).is_multiple_of(200) {
                burst_until = ts + HOUR_MS;
            }
            let hour = (ts / HOUR_MS) % 24;
            let trouble = (19..21).contains(&hour) || ts < burst_until;
            let (p, warn) = o.step(ts, Present { trouble, ..Default::default() }, mask);
            warned_in_trouble += usize::from(warn && trouble);
            above_in_trouble += usize::from(trouble && p >= WARN_AT);
        }
        assert!(above_in_trouble > 0, "the outlook never rose above {WARN_AT} in trouble");
        (o, warned_in_trouble)
    }

    #[test]
    fn it_learns_persistence_and_beats_the_climatology() {
        let o = link(28, &ALL);
        let skill = o.tally.skill().unwrap();
        assert!(skill > 0.1, "skill {skill}, weights {:?}", o.weights());
        assert!(o.skill().unwrap() > 0.0);
        // without the present it is the climatology (skill about 0)
        let mut only_clim = [false; FEATURES];
        only_clim[..2].fill(true);
        let c = link(28, &only_clim).tally.skill().unwrap();
        assert!(c < skill && c.abs() < 0.1, "climatology alone {c}");
    }

    #[test]
    fn it_is_calibrated_where_it_has_data() {
        let o = link(28, &ALL);
        for (sum_p, k, n) in o.tally.bins.iter().filter(|b| b.2 >= 200) {
            let (p, f) = (sum_p / *n as f64, *k as f64 / *n as f64);
            assert!((p - f).abs() < 0.15, "predicted {p:.2}, happened {f:.2} over {n}");
        }
    }

    #[test]
    fn it_warns_only_with_positive_skill_and_keeps_score() {
        let (o, warned_in_trouble) = link_counting(28, &ALL);
        let (right, of) = o.track_record();
        assert!(of > 0 && right * 2 >= of, "{right} of {of}");
        // trouble under way is not warned about (it crosses 0.5 at every episode's start)
        assert_eq!(warned_in_trouble, 0);
        // a link that never has trouble: nothing to warn about
        let mut quiet = Outlook::new(0);
        let warned = (0..3000).any(|i| quiet.step(i * 300_000, Present::default(), &ALL).1);
        assert!(!warned);
    }

    #[test]
    fn a_state_file_from_before_the_link_states_still_loads() {
        let o = link(10, &ALL);
        let mut v = serde_json::to_value(&o).unwrap();
        let m = v.as_object_mut().unwrap();
        m.remove("quiet");
        m.remove("states");
        let mut back: Outlook = serde_json::from_value(v).unwrap();
        assert_eq!(back.quiet.len(), 168);
        let (p, _) = back.step(11 * DAY_MS, Present { trouble: true, ..Default::default() }, &ALL);
        assert!(p.is_finite());
    }
}
