//! The detection pipeline: one step (a minute in the agent, a CSV row in replay) of every channel
//! in, every detector's calibrated surprise, the ensemble's verdict and any prediction out.
//!
//! Per channel: the forecaster's band from the previous step against this value, the
//! autoencoder's reconstruction error of the window, the forest's isolation score, each turned
//! into a surprise by its own calibrator. Their agreement (Fisher's sum, calibrated again on its
//! own history) decides which steps are normal enough to learn from and when the classifier is
//! asked for a kind. The ensemble's alarm level is the week z-score (how many spreads from this
//! week's mean, in doublings) plus a share of the autoencoder's surprise; `alarm` gates it with a
//! long memory. Why not the calibrated sum: scored on NAB it ranks incidents worse (see
//! `ENSEMBLE_ON`). Rules fire on their own. The classifier names the kind when something fires.

use super::baseline::ZScore;
use super::calibrate::Calibrator;
use super::degrade::{self, Episode};
use super::features::{self, RobustStats, Step, Window};
use super::forest::ForestDetector;
use super::models::{CLASSES, HORIZON, Kind, Models};
use super::outlook::{self, Outlook, Present};
use super::rules::{RuleHit, Rules};
use super::shift::{Shift, ShiftDetector};
use crate::calendar::{self, DAY_MS, HOUR_MS, hour_of_week, hour_of_week_name};

/// What a channel measures, for rules and wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Latency,
    /// Tail latency (p95 of a minute): degradations count, its level shifts are not news (the
    /// median's are).
    TailLatency,
    Loss,
    Other,
}

#[derive(Debug, Clone)]
pub struct ChannelSpec {
    /// "median RTT to 1.1.1.1", a CSV column name.
    pub name: String,
    pub kind: ChannelKind,
    pub unit: String,
}

/// The detectors that can be scored alone (`wanwatch replay --out` writes one file each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Detector {
    Forecast,
    Autoencoder,
    Forest,
    Rules,
    Ensemble,
    Predict,
    ZScore,
    /// The week z-score alone, through the ensemble's gate: what the autoencoder's share adds.
    ZWeek,
    /// Degradation episodes (latency or loss above this path's level for minutes).
    Degradation,
}

impl Detector {
    pub const ALL: [Detector; 9] = [
        Detector::Forecast,
        Detector::Autoencoder,
        Detector::Forest,
        Detector::Rules,
        Detector::Ensemble,
        Detector::Predict,
        Detector::ZScore,
        Detector::ZWeek,
        Detector::Degradation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Detector::Forecast => "forecast",
            Detector::Autoencoder => "autoencoder",
            Detector::Forest => "forest",
            Detector::Rules => "rules",
            Detector::Ensemble => "ensemble",
            Detector::Predict => "predict",
            Detector::ZScore => "zscore",
            Detector::ZWeek => "zweek",
            Detector::Degradation => "degradation",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub step_ms: i64,
    pub baseline_ms: i64,
    pub refit_ms: i64,
    /// Target false-alarm rate on a healthy link.
    pub alarms_per_week: f64,
    /// Added to UTC for "Tuesday 20:00" in explanations.
    pub utc_offset_s: i64,
    /// Members left out (ablations; a member left out is not run at all).
    pub without: Members,
}

/// The learned members of the ensemble and the outlook's inputs, for ablations
/// (`wanwatch replay --without forest,forecaster`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Members {
    pub forecaster: bool,
    pub autoencoder: bool,
    pub forest: bool,
    /// The outlook's view of the present (trouble now and lately, latency excess).
    pub present: bool,
}

impl Members {
    pub const NAMES: [&str; 4] = ["forecaster", "autoencoder", "forest", "present"];

    /// The agent's line-up: every learned model is left out of the alarm path, as the issue's
    /// rule asks of a member that does not help on data not used to tune it. The forecaster and
    /// the forest added nothing on the tune half either (NAB F1 0.53 with or without each; the
    /// outlook learnt a weight of 0.00 for the forecaster). The autoencoder helped on the tune
    /// half (0.53 with, 0.48 without) but not on the test half (0.41 with, 0.43 without,
    /// resampling sd 0.05), so it steps back too. `replay --with autoencoder` puts it back; the
    /// classifier only names the kind of an event.
    pub const AGENT: Members = Members { forecaster: true, autoencoder: true, forest: true, present: false };

    /// These members removed from (`with` false) or put back into (`with` true) a line-up.
    pub fn change(mut self, other: Members, with: bool) -> Members {
        let set = |b: &mut bool, o: bool| {
            if o {
                *b = !with;
            }
        };
        set(&mut self.forecaster, other.forecaster);
        set(&mut self.autoencoder, other.autoencoder);
        set(&mut self.forest, other.forest);
        set(&mut self.present, other.present);
        self
    }

    /// "forest,forecaster" -> those members set.
    pub fn parse(list: &str) -> Result<Members, crate::input::BadInput> {
        let mut m = Members::default();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "forecaster" => m.forecaster = true,
                "autoencoder" => m.autoencoder = true,
                "forest" => m.forest = true,
                "present" => m.present = true,
                other => {
                    let problem = format!("is not a member (one of {})", Members::NAMES.join(", "));
                    return Err(crate::input::BadInput::new(other, problem));
                }
            }
        }
        Ok(m)
    }

    /// The outlook's feature mask: which inputs it may use.
    fn outlook_mask(&self) -> [bool; outlook::FEATURES] {
        let mut m = [true; outlook::FEATURES];
        if self.present {
            m[2..6].fill(false);
        }
        m[6] = !self.forecaster;
        m
    }
}

impl Settings {
    pub fn minutes() -> Settings {
        Settings {
            step_ms: 60_000,
            baseline_ms: 24 * HOUR_MS,
            refit_ms: 24 * HOUR_MS,
            alarms_per_week: 1.0,
            utc_offset_s: 0,
            without: Members::AGENT,
        }
    }

    /// The surprise an alarm needs: -log10 of the per-step false-alarm probability.
    pub fn threshold(&self) -> f64 {
        let steps_per_week = 7.0 * DAY_MS as f64 / self.step_ms.max(1) as f64;
        (steps_per_week / self.alarms_per_week.max(1e-6)).log10().max(1.0)
    }

    fn steps(&self, ms: i64) -> usize {
        (ms / self.step_ms.max(1)).max(1) as usize
    }
}

/// How far beyond its usual a channel must go to count as degraded, in robust sigmas.
pub const DEGRADED_SIGMAS: f64 = 10.0;

/// The ensemble opens an event at a week z-score of 4 (log2 4 = 2) and holds it while above 2.
///
/// Chosen on NAB (`scripts/score.py`), so its NAB score is not a held-out figure: the calibrated
/// Fisher sum of every detector reached event F1 0.33; even picking each series' two highest
/// peaks in hindsight it reaches only 0.39, while the raw week z-score's two peaks reach 0.44. A
/// calibrator turns z = 20 and z = 400 both into "rarer than anything this week" (its cap),
/// which is what the record gate needs to tell apart.
pub const ENSEMBLE_ON: f64 = 2.0;
pub const ENSEMBLE_OFF: f64 = 1.0;
/// How much of the autoencoder's surprise (-log10 p) is added to the log2 week z-score: a window
/// whose shape is also unlike this link's normal ranks higher. (On NAB the forest's share did as
/// well, 0.15 of it: F1 0.46-0.48 between runs, as its fit is random; the autoencoder's is
/// deterministic.)
pub const AUTOENCODER_SHARE: f64 = 0.1;
/// The week z-score's floor on the spread, by channel kind (a loss ratio: 2 points).
fn week_floor(kind: ChannelKind) -> f64 {
    match kind {
        ChannelKind::Loss => 0.02,
        ChannelKind::Latency | ChannelKind::TailLatency => 0.5,
        ChannelKind::Other => 1e-9,
    }
}

/// The ensemble's level from the week z-score and the autoencoder's surprise.
pub fn ensemble_level(zweek: f64, autoencoder: Option<f64>) -> f64 {
    zweek.clamp(1e-3, 1e6).log2() + AUTOENCODER_SHARE * autoencoder.unwrap_or(0.0)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Steps ahead of the first predicted degraded step (1 = the next step).
    pub lead_steps: usize,
    /// 0.5 when the forecast median crosses the bound, 0.9 when even its 10% quantile does.
    pub confidence: f64,
    /// The forecast median at its worst, in the channel's unit.
    pub expected: f64,
}

/// One channel's result for one step.
#[derive(Debug, Clone, Default)]
pub struct ChannelResult {
    pub forecast: Option<f64>,
    pub autoencoder: Option<f64>,
    pub forest: Option<f64>,
    /// The ensemble's alarm level (`ensemble_level`).
    pub ensemble: Option<f64>,
    /// The detectors' calibrated agreement (Fisher), a surprise like theirs.
    pub agreement: Option<f64>,
    /// The rolling 24 h z-score (the baseline).
    pub zscore: Option<f64>,
    /// The rolling week z-score, spread floored.
    pub zweek: Option<f64>,
    pub rule: Option<RuleHit>,
    pub prediction: Option<Prediction>,
    /// The classifier's verdict when something fired: (kind, probability).
    pub kind: Option<(&'static str, f32)>,
    pub value: Option<f64>,
    /// This time of week's (or, in the first week, this hour's) usual value, when known.
    pub usual: Option<(f64, Usual)>,
    /// A level shift confirmed on this step.
    pub shift: Option<Shift>,
    /// This step is part of a degradation episode.
    pub degraded: bool,
    /// The path's current level (the shift detector's reference), when known.
    pub level: Option<f64>,
    /// The outlook (same for every channel): probability of trouble within the hour, and whether
    /// this step warns.
    pub outlook: Option<(f64, bool)>,
}

impl ChannelResult {
    /// The level a detector shows on this step: its surprise, or infinity for a rule, a z-score
    /// beyond 6 or a prediction.
    pub fn level(&self, d: Detector) -> f64 {
        let on = |b: bool| if b { f64::INFINITY } else { 0.0 };
        match d {
            Detector::Forecast => self.forecast.unwrap_or(0.0),
            Detector::Autoencoder => self.autoencoder.unwrap_or(0.0),
            Detector::Forest => self.forest.unwrap_or(0.0),
            Detector::Rules => on(self.rule.is_some()),
            Detector::Ensemble => self.ensemble.unwrap_or(0.0),
            Detector::Predict => on(self.outlook.is_some_and(|o| o.1)),
            Detector::ZScore => on(self.zscore.is_some_and(|z| z >= super::baseline::THRESHOLD)),
            Detector::ZWeek => self.zweek.map_or(0.0, |z| ensemble_level(z, None)),
            Detector::Degradation => on(self.degraded),
        }
    }
}

/// Which "usual" an explanation compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usual {
    HourOfWeek,
    HourOfDay,
}

/// Usual value per hour of the week (an exponential average of the normal steps in that hour).
#[derive(Debug, Clone)]
struct TimeOfWeek {
    buckets: Vec<(u32, f64)>,
}

impl TimeOfWeek {
    fn new() -> TimeOfWeek {
        TimeOfWeek { buckets: vec![(0, 0.0); 168] }
    }

    /// This hour of the week's usual, else this hour of the day's (over the days that have it).
    fn usual(&self, hour: usize) -> Option<(f64, Usual)> {
        let (n, v) = self.buckets[hour];
        if n >= 30 {
            return Some((v, Usual::HourOfWeek));
        }
        let same_hour: Vec<f64> =
            (0..7).map(|d| self.buckets[d * 24 + hour % 24]).filter(|b| b.0 >= 30).map(|b| b.1).collect();
        (!same_hour.is_empty()).then(|| (same_hour.iter().sum::<f64>() / same_hour.len() as f64, Usual::HourOfDay))
    }

    fn learn(&mut self, hour: usize, x: f64) {
        let (n, v) = &mut self.buckets[hour];
        *n += 1;
        let alpha = (1.0 / *n as f64).max(0.02);
        *v += alpha * (x - *v);
    }
}

struct Channel {
    spec: ChannelSpec,
    stats: RobustStats,
    window: Window,
    forecast: Option<Vec<f32>>,
    cal_forecast: Calibrator,
    cal_autoencoder: Calibrator,
    cal_forest: Calibrator,
    /// The agreement (Fisher sum) calibrated per line-up: without the forest (before its
    /// baseline is over) and with it. Correlated detectors make Fisher's sum heavier-tailed with four voices than
    /// with three, so the day the forest joined used to read the old three-voice history as a
    /// surprise (NAB: 52 alarms in steps 864-1440, 43 of them false).
    cal_agreement: [Calibrator; 2],
    cal_zscore: Calibrator,
    forest: ForestDetector,
    zscore: ZScore,
    zweek: ZScore,
    rules: Rules,
    tow: TimeOfWeek,
    shift: ShiftDetector,
    episode: Episode,
}

pub struct Pipeline {
    settings: Settings,
    threshold: f64,
    models: Models,
    channels: Vec<Channel>,
    seq: Vec<f32>,
    flat: Vec<f32>,
    outlook: Outlook,
}

impl Pipeline {
    pub fn new(settings: Settings, models: Models, specs: Vec<ChannelSpec>) -> Pipeline {
        // A week of scores, but never so few that the tail is a handful of points (hourly data),
        // and a day of them before any surprise is trusted.
        let week = settings.steps(7 * DAY_MS).max(4032);
        let min = settings.steps(DAY_MS).max(288);
        let channels = specs
            .into_iter()
            .map(|spec| Channel {
                zweek: ZScore::new(7 * DAY_MS).with_floor(week_floor(spec.kind)).with_warm_up(DAY_MS),
                spec,
                stats: RobustStats::default(),
                window: Window::default(),
                forecast: None,
                cal_forecast: Calibrator::new(week, min),
                cal_autoencoder: Calibrator::new(week, min),
                cal_forest: Calibrator::new(week, min),
                cal_agreement: [Calibrator::new(week, min), Calibrator::new(week, min)],
                cal_zscore: Calibrator::new(week, min),
                forest: ForestDetector::new(settings.baseline_ms, settings.refit_ms, week),
                zscore: ZScore::new(24 * HOUR_MS),
                rules: Rules::default(),
                tow: TimeOfWeek::new(),
                shift: ShiftDetector::new(),
                episode: Episode::default(),
            })
            .collect();
        let threshold = settings.threshold();
        let outlook = Outlook::new(settings.utc_offset_s);
        Pipeline { settings, threshold, models, channels, seq: Vec::new(), flat: Vec::new(), outlook }
    }

    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn models_mut(&mut self) -> &mut Models {
        &mut self.models
    }

    pub fn channel(&self, i: usize) -> &ChannelSpec {
        &self.channels[i].spec
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    pub fn forest(&mut self, i: usize) -> &mut ForestDetector {
        &mut self.channels[i].forest
    }

    pub fn forest_saved(&self, i: usize) -> Option<&super::forest::Saved> {
        self.channels[i].forest.saved()
    }

    /// One step of every channel (`values[i]` for channel i; None = no data).
    pub fn step(&mut self, ts: i64, values: &[Option<f64>]) -> Vec<ChannelResult> {
        let mut out = Vec::with_capacity(self.channels.len());
        let mut present = Present::default();
        for (i, x) in values.iter().enumerate().take(self.channels.len()) {
            let x = x.filter(|v| v.is_finite());
            let r = self.step_channel(i, ts, x);
            present.trouble |= r.degraded || matches!(r.rule, Some(RuleHit::Dropout { .. }));
            let ch = &self.channels[i];
            if let Some(e) = degrade::excess(ch.spec.kind, r.value, ch.shift.reference()) {
                present.excess = present.excess.max(e);
            }
            if let Some(p) = &r.prediction {
                present.forecast = present.forecast.max(p.confidence);
            }
            out.push(r);
        }
        let o = self.outlook.step(ts, present, &self.settings.without.outlook_mask());
        for r in &mut out {
            r.outlook = Some(o);
        }
        out
    }

    pub fn outlook(&self) -> &Outlook {
        &self.outlook
    }

    pub fn outlook_mut(&mut self) -> &mut Outlook {
        &mut self.outlook
    }

    fn step_channel(&mut self, i: usize, ts: i64, x: Option<f64>) -> ChannelResult {
        let threshold = self.threshold;
        let hour = hour_of_week(ts, self.settings.utc_offset_s);
        let ch = &mut self.channels[i];
        let mut r = ChannelResult {
            value: x,
            rule: ch.rules.step(x, ch.spec.kind == ChannelKind::Loss),
            zscore: x.and_then(|v| ch.zscore.step(ts, v)),
            zweek: x.and_then(|v| ch.zweek.step(ts, v)),
            usual: ch.tow.usual(hour),
            ..Default::default()
        };
        if ch.spec.kind != ChannelKind::Loss {
            r.shift = ch.shift.step(ts, x).filter(|_| ch.spec.kind != ChannelKind::TailLatency);
            r.level = ch.shift.level();
        }
        let bad = degrade::degraded(ch.spec.kind, x, ch.shift.reference());
        r.degraded = ch.episode.step(bad, self.settings.step_ms);
        // The week z-score speaks from its first day, before the models' window is full.
        r.ensemble = r.zweek.map(|z| ensemble_level(z, None));
        let Some(stats) = ch.stats.step(x) else {
            return r;
        };
        let u = x.map(|v| features::normalise(v, stats));
        // The forecaster's band for this step was made on the previous step.
        let raw_forecast = match (&ch.forecast, u) {
            (Some(q), Some(u)) => Some(band_exceedance(q[0] as f64, q[1] as f64, q[2] as f64, u)),
            _ => None,
        };
        ch.window.push(Step::new(u, ts));
        if !ch.window.is_full() {
            return r;
        }
        ch.window.flat_input(&mut self.flat);
        let without = self.settings.without;
        let raw_ae =
            self.models.get(Kind::Autoencoder).filter(|_| !without.autoencoder).and_then(|m| match m.run(&self.flat) {
                Ok(rec) => Some(reconstruction_error(&self.flat, &rec)),
                Err(e) => {
                    tracing::warn!("{e}");
                    None
                }
            });
        ch.window.seq_input(&mut self.seq);
        ch.forecast =
            self.models.get(Kind::Forecaster).filter(|_| !without.forecaster).and_then(|m| m.run(&self.seq).ok());
        let features = ch.window.forest_features();
        let raw_forest = features.filter(|_| !without.forest).and_then(|f| ch.forest.score(&f));

        r.forecast = raw_forecast.and_then(|s| ch.cal_forecast.surprise(s));
        r.autoencoder = raw_ae.and_then(|s| ch.cal_autoencoder.surprise(s));
        r.forest = raw_forest.and_then(|s| ch.cal_forest.surprise(s));
        // The rolling z-score joins as a fourth voice (calibrated like the others): it sees a
        // 24 h context where the models see 60 steps.
        let zs = r.zscore.filter(|z| z.is_finite());
        let zs_surprise = zs.and_then(|z| ch.cal_zscore.surprise(z));
        let parts = [r.forecast, r.autoencoder, r.forest, zs_surprise];
        // Fisher's method: the surprise of the product of the tail probabilities, which is
        // comparable however many detectors are ready (the forest joins after its baseline). The
        // detectors are correlated, so Fisher's answer is calibrated again on its own history.
        let without_forest = [r.forecast, r.autoencoder, zs_surprise];
        let raw_core = fisher(&without_forest.iter().flatten().copied().collect::<Vec<_>>());
        let raw_full = r.forest.is_some().then(|| fisher(&parts.iter().flatten().copied().collect::<Vec<_>>()));
        let core_any = without_forest.iter().any(Option::is_some);
        // The full line-up's verdict once its calibrator has history, else the core's.
        r.agreement = match raw_full.and_then(|v| ch.cal_agreement[1].surprise(v)) {
            Some(s) => Some(s),
            None if core_any => ch.cal_agreement[0].surprise(raw_core),
            None => None,
        };
        r.ensemble = r.zweek.map(|z| ensemble_level(z, r.autoencoder));

        // The calibrators learn from every step but outages: scores come in runs (one spike
        // stays in a window for a while), and leaving the runs out makes the tail look thinner
        // than it is, which is a runaway of false alarms. A week of history keeps one incident
        // from moving the tail much. The forest and the usual-for-this-hour learn normal only.
        if r.rule.is_none() {
            if let Some(v) = raw_forecast {
                ch.cal_forecast.observe(v);
            }
            if let Some(v) = raw_ae {
                ch.cal_autoencoder.observe(v);
            }
            if let Some(v) = raw_forest {
                ch.cal_forest.observe(v);
            }
            if core_any {
                ch.cal_agreement[0].observe(raw_core);
            }
            if let Some(v) = raw_full {
                ch.cal_agreement[1].observe(v);
            }
            if let Some(v) = zs {
                ch.cal_zscore.observe(v);
            }
        }
        let normal =
            r.agreement.unwrap_or(0.0) < threshold / 2.0 && r.ensemble.unwrap_or(0.0) < ENSEMBLE_ON && r.rule.is_none();
        if normal {
            if let Some(f) = features.filter(|_| !without.forest) {
                ch.forest.observe(ts, f);
            }
            if let Some(v) = x {
                ch.tow.learn(hour, v);
            }
        }
        if (r.agreement.unwrap_or(0.0) >= threshold / 2.0 || r.ensemble.unwrap_or(0.0) >= ENSEMBLE_OFF)
            && let Some(m) = self.models.get(Kind::Classifier)
        {
            r.kind = m.run(&self.flat).ok().and_then(|p| name_kind(&p));
        }
        r.prediction = ch.forecast.as_deref().and_then(|q| predict(q, u, stats));
        r
    }
}

/// Fisher's combination of k surprises (-log10 p each): -log10 P(Gamma(k, 1) >= ln(10) * sum).
pub fn fisher(surprises: &[f64]) -> f64 {
    let k = surprises.len();
    if k == 0 {
        return 0.0;
    }
    let x = surprises.iter().sum::<f64>() * std::f64::consts::LN_10;
    // P(Gamma(k,1) >= x) = e^-x * sum_{i<k} x^i / i!, in logs to stay finite for big x
    let mut term = 1.0f64;
    let mut total = 1.0f64;
    for i in 1..k {
        term *= x / i as f64;
        total += term;
    }
    ((x - total.ln()) / std::f64::consts::LN_10).max(0.0)
}

/// How far outside the forecast's 10-90% band a value fell, in band half-widths (0 inside).
pub fn band_exceedance(q10: f64, q50: f64, q90: f64, u: f64) -> f64 {
    let up = (u - q90) / (q90 - q50).max(0.05);
    let down = (q10 - u) / (q50 - q10).max(0.05);
    up.max(down).max(0.0)
}

/// Mean squared error over the present steps among the newest `RECENT` (plus their missing
/// fraction: a run of holes is itself unusual). Only the newest steps: a spike would otherwise
/// keep the whole window's error high for an hour after it passed. (onnx/train.py's card scores
/// the whole window, which is the harder test for the model.)
pub fn reconstruction_error(flat: &[f32], rec: &[f32]) -> f64 {
    let n = rec.len();
    let (u, present) = flat.split_at(n);
    let mut se = 0.0;
    let mut count = 0.0;
    for k in n.saturating_sub(RECENT)..n {
        let p = present[k] as f64;
        se += p * (rec[k] as f64 - u[k] as f64).powi(2);
        count += p;
    }
    let m = RECENT.min(n) as f64;
    se / count.max(1.0) + (m - count) / m
}

/// Steps at the end of the window the autoencoder's score looks at.
pub const RECENT: usize = 5;

fn name_kind(p: &[f32]) -> Option<(&'static str, f32)> {
    // The most likely kind other than "normal": the step already fired, the question is which way.
    p.iter().enumerate().skip(1).max_by(|a, b| a.1.total_cmp(b.1)).map(|(k, &v)| (CLASSES[k], v))
}

fn predict(q: &[f32], u: Option<f64>, stats: (f64, f64)) -> Option<Prediction> {
    let bound = DEGRADED_SIGMAS.asinh();
    if u.is_none_or(|u| u >= bound) {
        return None; // no data, or already degraded: that is detection's business
    }
    let steps = |col: usize| (0..HORIZON).filter(|&h| q[h * 3 + col] as f64 >= bound).count();
    let first = (0..HORIZON).find(|&h| q[h * 3 + 1] as f64 >= bound)?;
    if steps(1) < 3 {
        return None;
    }
    let confidence = if steps(0) >= 3 { 0.9 } else { 0.5 };
    let worst = (0..HORIZON).map(|h| q[h * 3 + 1] as f64).fold(f64::MIN, f64::max);
    Some(Prediction { lead_steps: first + 1, confidence, expected: features::denormalise(worst, stats) })
}

/// One sentence a person can read: what, how far from usual, when.
pub fn explain(spec: &ChannelSpec, r: &ChannelResult, ts: i64, offset_s: i64) -> String {
    if let Some(rule) = r.rule {
        return rule.describe(&spec.name);
    }
    let how = hour_of_week(ts, offset_s);
    let kind = r.kind.map(|(k, p)| format!(" ({}, {:.0}%)", k.replace('_', " "), p * 100.0)).unwrap_or_default();
    let v = |x: f64| calendar::with_unit(x, &spec.unit);
    match (r.value, r.usual) {
        (Some(x), Some((u, which))) => {
            let when = match which {
                Usual::HourOfWeek => hour_of_week_name(how),
                Usual::HourOfDay => format!("{:02}:00", how % 24),
            };
            if u.abs() > 1e-9 && spec.kind != ChannelKind::Loss {
                format!("{} {} is {:.1}x its usual {} for {when}{kind}", spec.name, v(x), x / u, v(u))
            } else {
                format!("{} {} against its usual {} for {when}{kind}", spec.name, v(x), v(u))
            }
        }
        (Some(x), None) => format!("{} {} is unusual{kind}", spec.name, v(x)),
        (None, _) => format!("{}: no data{kind}", spec.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_a_week_of_steps() {
        let s = Settings::minutes();
        assert!((s.threshold() - 10_080f64.log10()).abs() < 1e-9);
        let five = Settings { step_ms: 300_000, alarms_per_week: 2.0, ..Settings::minutes() };
        assert!((five.threshold() - 1008f64.log10()).abs() < 1e-9);
    }

    #[test]
    fn fisher_combines_like_the_textbook() {
        assert!((fisher(&[2.0]) - 2.0).abs() < 1e-12, "one detector: its own surprise");
        // four detectors at p = 0.1 each: the product 1e-4 is not that rare among four
        let s = fisher(&[1.0, 1.0, 1.0, 1.0]);
        assert!((s - 1.738).abs() < 0.001, "{s}");
        assert!(fisher(&[6.0, 6.0, 6.0]) > 14.0);
        assert_eq!(fisher(&[]), 0.0);
    }

    #[test]
    fn band_exceedance_is_zero_inside_and_grows_outside() {
        assert_eq!(band_exceedance(-1.0, 0.0, 1.0, 0.5), 0.0);
        assert!((band_exceedance(-1.0, 0.0, 1.0, 3.0) - 2.0).abs() < 1e-12);
        assert!((band_exceedance(-1.0, 0.0, 1.0, -2.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn reconstruction_error_counts_missing_steps_not_their_zero() {
        let mut flat = vec![0.0f32; 120];
        flat[60..].fill(1.0);
        let rec = vec![0.0f32; 60];
        assert_eq!(reconstruction_error(&flat, &rec), 0.0);
        flat[0..30].fill(5.0);
        assert_eq!(reconstruction_error(&flat, &rec), 0.0, "old steps do not count");
        flat[117..120].fill(0.0); // 3 of the newest 5 missing: their u of 0 is not "perfect"
        flat[55..57].fill(2.0);
        assert!((reconstruction_error(&flat, &rec) - (4.0 + 0.6)).abs() < 1e-6);
    }
}
