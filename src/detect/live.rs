//! The pipeline inside the agent: pings are folded into per-target minutes (median RTT, p95 RTT,
//! loss), each closed minute is one step on the detection thread, and what it finds goes to the
//! store as events of their own kinds: `level_shift`, `degradation` / `degradation_end`,
//! `anomaly` / `anomaly_end`, `prediction` (outages come from the state machine). The outlook's
//! probability and the trouble it is scored against are stored each minute as metrics
//! (`detect` / `outlook`: `trouble_p60`, `trouble`) for the report's reliability diagram.
//!
//! At start the last week of minutes is read back from the database and replayed through the
//! pipeline (silently), which restores the statistics, the windows, the calibrators and the level
//! detectors. What a week cannot restore is saved next to the database every hour and at stop
//! (`<db>.detect.json`): the alarm gates' records (60 days) and the outlook (its climatology,
//! weights and track record). The forest is saved after every fit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::alarm::{self, Alarms, Transition};
use super::forest::{self, Saved};
use super::models::{Kind, Models, Source};
use super::outlook::Outlook;
use super::pipeline::{self, ChannelKind, ChannelSpec, Detector, Pipeline, Settings};
use super::shift::Shift;
use crate::calendar::minute_of;
use crate::calendar::{self, DAY_MS, HOUR_MS, MINUTE_MS};
use crate::config::detect::DetectConfig;
use crate::sample::{EventKind, Metric, Record, Sample, Target, WallMs};
use crate::series;
use crate::store::rollup;

/// A minute is closed this long after it ends: replies (or timeouts) to its last pings are in.
const CLOSE_AFTER_MS: i64 = 5_000;

/// What of a target a detection channel follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Median,
    P95,
    Loss,
}

impl Measure {
    /// Each target's channels, in this order.
    pub const ALL: [Measure; 3] = [Measure::Median, Measure::P95, Measure::Loss];

    fn spec(self, target: &str) -> ChannelSpec {
        let (name, kind, unit) = match self {
            Measure::Median => (format!("median RTT to {target}"), ChannelKind::Latency, "ms"),
            Measure::P95 => (format!("p95 RTT to {target}"), ChannelKind::TailLatency, "ms"),
            Measure::Loss => (format!("loss to {target}"), ChannelKind::Loss, "ratio"),
        };
        ChannelSpec { name, kind, unit: unit.into() }
    }
}

/// A detection channel: one measure of one target. The pipeline's channels are numbered by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelId {
    pub target: usize,
    pub measure: Measure,
}

impl ChannelId {
    /// Its position among the pipeline's channels.
    pub fn index(self) -> usize {
        self.target * Measure::ALL.len() + self.measure as usize
    }
}

/// The channels of these targets, in `ChannelId::index` order.
pub fn channels(targets: &[Target]) -> Vec<ChannelSpec> {
    targets.iter().flat_map(|t| Measure::ALL.map(|m| m.spec(&t.name))).collect()
}

/// One target's closed minute as detection sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TargetMinute {
    pub median_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// 0-1, None when nothing was sent.
    pub loss: Option<f64>,
}

impl TargetMinute {
    /// From the minute's ping results (None = lost).
    fn of(results: &[Option<u32>]) -> TargetMinute {
        if results.is_empty() {
            return TargetMinute::default();
        }
        let st = rollup::stats(results);
        let ms = |us: Option<u32>| us.map(|v| v as f64 / 1000.0);
        TargetMinute {
            median_ms: ms(st.median),
            p95_ms: ms(st.p95),
            loss: Some(st.lost as f64 / st.sent.max(1) as f64),
        }
    }

    pub fn get(&self, m: Measure) -> Option<f64> {
        match m {
            Measure::Median => self.median_ms,
            Measure::P95 => self.p95_ms,
            Measure::Loss => self.loss,
        }
    }
}

/// One closed minute of every target: what the agent hands to detection.
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteRecord {
    pub ts: WallMs,
    /// Indexed like the agent's targets.
    pub targets: Vec<TargetMinute>,
}

impl MinuteRecord {
    /// The pipeline's input: one value per channel, in `ChannelId::index` order.
    pub fn values(&self) -> Vec<Option<f64>> {
        let mut v = vec![None; self.targets.len() * Measure::ALL.len()];
        for (target, t) in self.targets.iter().enumerate() {
            for measure in Measure::ALL {
                v[ChannelId { target, measure }.index()] = t.get(measure);
            }
        }
        v
    }
}

/// Folds samples into minutes and hands out each minute once it is complete.
pub struct MinuteBuilder {
    targets: usize,
    open: BTreeMap<WallMs, Vec<Vec<Option<u32>>>>,
    last_closed: Option<WallMs>,
}

impl MinuteBuilder {
    pub fn new(targets: usize) -> MinuteBuilder {
        MinuteBuilder { targets, open: BTreeMap::new(), last_closed: None }
    }

    /// Adds a sample; returns the minutes it completed (oldest first).
    pub fn add(&mut self, s: &Sample) -> Vec<MinuteRecord> {
        let m = minute_of(s.ts);
        if self.last_closed.is_none_or(|c| m > c) && s.target < self.targets {
            self.open.entry(m).or_insert_with(|| vec![Vec::new(); self.targets])[s.target].push(s.rtt.ok());
        }
        let mut done = Vec::new();
        while let Some((&first, _)) = self.open.first_key_value() {
            if first + MINUTE_MS + CLOSE_AFTER_MS > s.ts {
                break;
            }
            let per_target = self.open.remove(&first).expect("just seen");
            self.last_closed = Some(first);
            done.push(MinuteRecord { ts: first, targets: per_target.iter().map(|r| TargetMinute::of(r)).collect() });
        }
        done
    }

    /// The run's times moved by `delta_ms` (the clock was set early in the run): the minutes still
    /// open move with them, so what detection stores lands where the samples now are.
    pub fn shift(&mut self, delta_ms: i64) {
        let open = std::mem::take(&mut self.open);
        for (m, per_target) in open {
            let slot = self.open.entry(minute_of(m + delta_ms)).or_insert_with(|| vec![Vec::new(); self.targets]);
            for (into, from) in slot.iter_mut().zip(per_target) {
                into.extend(from);
            }
        }
        self.last_closed = self.last_closed.map(|c| minute_of(c + delta_ms));
    }
}

/// Handle to the detection thread.
pub struct Live {
    tx: mpsc::Sender<MinuteRecord>,
    handle: JoinHandle<()>,
}

impl Live {
    /// Starts the thread. `out` takes the events; `db` is read once for the warm start.
    pub fn spawn(
        cfg: &DetectConfig,
        targets: &[Target],
        db: &Path,
        utc_offset_s: i64,
        now: crate::clock::WallClock,
        out: Sink,
    ) -> Live {
        let (tx, rx) = mpsc::channel::<MinuteRecord>();
        let specs = channels(targets);
        let addrs: Vec<String> = targets.iter().map(|t| t.addr.to_string()).collect();
        let settings = Settings {
            step_ms: MINUTE_MS,
            baseline_ms: cfg.baseline.as_millis() as i64,
            refit_ms: 24 * HOUR_MS,
            alarms_per_week: cfg.alarms_per_week,
            utc_offset_s,
            without: pipeline::Members::AGENT,
        };
        let source = Source::parse(&cfg.models);
        let db = db.to_path_buf();
        let handle = std::thread::Builder::new()
            .name("wanwatch-detect".into())
            .spawn(move || {
                let mut d = Detection::new(settings, source, specs, &db, out);
                d.warm_start(&db, &addrs, now.now());
                for minute in rx {
                    d.step(&minute);
                }
                d.finish(now.now());
            })
            .expect("spawn detection thread");
        Live { tx, handle }
    }

    pub fn send(&self, minute: MinuteRecord) {
        let _ = self.tx.send(minute);
    }

    /// Lets the thread finish the minutes it has and close open events.
    pub fn stop(self) {
        drop(self.tx);
        let _ = self.handle.join();
    }
}

impl crate::service::Service for Live {
    fn name(&self) -> &'static str {
        "detection"
    }

    fn stop(self: Box<Self>) {
        Live::stop(*self)
    }
}

/// Where events go: the agent's record channel.
pub type Sink = Box<dyn Fn(Record) + Send>;

pub struct Detection {
    pipe: Pipeline,
    alarms: Alarms,
    out: Sink,
    forest_path: PathBuf,
    state_path: PathBuf,
    open: Option<(WallMs, String)>,
    degraded: Option<WallMs>,
    silent: bool,
    saved_at: WallMs,
}

/// What a week of replay cannot restore (see the module comment).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedState {
    saved_at: WallMs,
    alarms: Alarms,
    outlook: Outlook,
}

/// How often the detection state is saved while running.
const SAVE_EVERY_MS: i64 = HOUR_MS;
/// How much stored history the warm start replays.
pub const WARM_START_MS: i64 = 7 * DAY_MS;

impl Detection {
    pub fn new(settings: Settings, source: Source, specs: Vec<ChannelSpec>, db: &Path, out: Sink) -> Detection {
        // Only what the line-up uses: the agent's (the week z-score, and the classifier naming
        // an anomaly) loads the classifier alone.
        let without = settings.without;
        let models = Models::load_only(source, |kind| match kind {
            Kind::Forecaster => !without.forecaster,
            Kind::Autoencoder => !without.autoencoder,
            Kind::Classifier => true,
        });
        for p in models.problems() {
            tracing::warn!("{p}; detection carries on with the forest and the rules");
        }
        let alarms = Alarms::new(
            settings.threshold(),
            settings.step_ms,
            &[Detector::Ensemble, Detector::Predict, Detector::Degradation],
        );
        let mut pipe = Pipeline::new(settings, models, specs);
        let forest_path = forest_file(db);
        match forest::load::<Vec<(String, Saved)>>(&forest_path) {
            Ok(saved) => {
                for (name, s) in saved {
                    if let Some(i) = (0..pipe.channel_count()).find(|&i| pipe.channel(i).name == name) {
                        pipe.forest(i).restore(s);
                    }
                }
            }
            Err(e) if forest_path.exists() => tracing::warn!("{e}; the forest will be fitted again"),
            Err(_) => {}
        }
        let state_path = state_file(db);
        Detection {
            pipe,
            alarms,
            out,
            forest_path,
            state_path,
            open: None,
            degraded: None,
            silent: false,
            saved_at: i64::MIN,
        }
    }

    /// The pipeline, for tests and diagnostics.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipe
    }

    /// Replays the week of stored minutes before `now` (the agent's clock) without emitting
    /// anything, then puts back the saved gates and outlook.
    pub fn warm_start(&mut self, db: &Path, addrs: &[String], now: WallMs) {
        self.replay_week(db, addrs, now);
        match crate::jsonfile::load::<SavedState>(&self.state_path, "saved detection state") {
            Ok(saved) => {
                self.alarms = saved.alarms;
                *self.pipe.outlook_mut() = saved.outlook;
                self.saved_at = saved.saved_at;
                tracing::info!("detection state restored from {}", self.state_path.display());
            }
            Err(e) if self.state_path.exists() => {
                tracing::warn!("{e}; the alarm records and the outlook start afresh")
            }
            Err(_) => {}
        }
    }

    fn replay_week(&mut self, db: &Path, addrs: &[String], now: WallMs) {
        let Ok(store) = crate::store::Store::open_read_only(db) else { return };
        let since = now - WARM_START_MS;
        let rows = match store.minutes_since(since) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("detection warm start: {e}");
                return;
            }
        };
        let mut by_minute: BTreeMap<WallMs, MinuteRecord> = BTreeMap::new();
        for r in rows {
            let Some(target) = addrs.iter().position(|a| *a == r.addr) else { continue };
            let m = by_minute
                .entry(r.ts)
                .or_insert_with(|| MinuteRecord { ts: r.ts, targets: vec![TargetMinute::default(); addrs.len()] });
            m.targets[target] = TargetMinute {
                median_ms: r.median_us.map(|u| u as f64 / 1000.0),
                p95_ms: r.p95_us.map(|u| u as f64 / 1000.0),
                loss: (r.sent > 0).then(|| r.lost as f64 / r.sent as f64),
            };
        }
        self.silent = true;
        let n = by_minute.len();
        for m in by_minute.into_values() {
            self.step(&m);
        }
        self.silent = false;
        if n > 0 {
            tracing::info!("detection warmed up on {n} stored minutes");
        }
    }

    pub fn step(&mut self, minute: &MinuteRecord) {
        let (ts, values) = (minute.ts, minute.values());
        for m in self.pipe.models_mut().refresh() {
            tracing::warn!("{m}");
        }
        let fitted = |p: &Pipeline| -> Vec<Option<i64>> {
            (0..p.channel_count()).map(|i| p.forest_saved(i).map(|s| s.fitted_at)).collect()
        };
        let before = fitted(&self.pipe);
        let results = self.pipe.step(ts, &values);
        let refit = fitted(&self.pipe) != before;
        if refit {
            self.save_forests();
        }
        let offset = self.pipe.settings().utc_offset_s;
        for c in self.alarms.step(ts, &results) {
            let spec = self.pipe.channel(c.channel).clone();
            let r = &results[c.channel];
            let record = match (c.detector, c.transition) {
                (Detector::Ensemble, Transition::Opened(t)) => {
                    let detail = format!(
                        "{} [week z {:.1}; {}]",
                        pipeline::explain(&spec, r, t, offset),
                        r.zweek.unwrap_or(0.0).min(1e6),
                        contributors(r, self.pipe.threshold())
                    );
                    self.open = Some((t, detail.clone()));
                    Record::Event { ts: t, kind: EventKind::Anomaly, detail }
                }
                (Detector::Ensemble, Transition::Closed(e)) => {
                    self.open = None;
                    ended(EventKind::AnomalyEnd, "anomaly", &e)
                }
                (Detector::Predict, Transition::Opened(t)) => {
                    let Some(said) = self.pipe.outlook().last() else { continue };
                    let (right, of) = self.pipe.outlook().track_record();
                    let record =
                        if of > 0 { format!("; {right} of the last {of} warnings came true") } else { String::new() };
                    Record::Event {
                        ts: t,
                        kind: EventKind::Prediction,
                        detail: format!(
                            "trouble likely within the hour: {:.0}% (this hour of the week: {:.0}%){record}; skill here {:+.2}",
                            said.p * 100.0,
                            said.climatology * 100.0,
                            self.pipe.outlook().skill().unwrap_or(0.0)
                        ),
                    }
                }
                (Detector::Degradation, Transition::Opened(t)) => {
                    self.degraded = Some(t);
                    Record::Event { ts: t, kind: EventKind::Degradation, detail: degradation_detail(&spec, r) }
                }
                (Detector::Degradation, Transition::Closed(e)) => {
                    self.degraded = None;
                    ended(EventKind::DegradationEnd, "degradation", &e)
                }
                _ => continue,
            };
            if !self.silent {
                (self.out)(record);
            }
        }
        for (i, r) in results.iter().enumerate() {
            let Some(shift) = &r.shift else { continue };
            if !self.silent {
                (self.out)(Record::Event {
                    ts: shift.onset,
                    kind: EventKind::LevelShift,
                    detail: shift_detail(&self.pipe.channel(i).clone(), shift),
                });
            }
        }
        if !self.silent {
            if let Some(said) = self.pipe.outlook().last() {
                let (p, trouble) = (said.p, said.trouble as u8 as f64);
                (self.out)(Record::Metric(Metric::new(ts, series::TROUBLE_P60, "outlook", p)));
                (self.out)(Record::Metric(Metric::new(ts, series::TROUBLE, "outlook", trouble)));
            }
            if ts.saturating_sub(self.saved_at) >= SAVE_EVERY_MS {
                self.save_state(ts);
            }
        }
    }

    fn save_state(&mut self, now: WallMs) {
        let state = SavedState { saved_at: now, alarms: self.alarms.clone(), outlook: self.pipe.outlook().clone() };
        match crate::jsonfile::save(&state, &self.state_path) {
            Ok(()) => self.saved_at = now,
            Err(e) => tracing::warn!("saving the detection state to {}: {e}", self.state_path.display()),
        }
    }

    fn finish(&mut self, now: WallMs) {
        self.save_state(now);
        if let Some(start) = self.degraded.take() {
            (self.out)(Record::Event {
                ts: now,
                kind: EventKind::DegradationEnd,
                detail: format!("degradation since {} still open at shutdown", calendar::format_hm(start)),
            });
        }
        if let Some((start, _)) = self.open.take() {
            (self.out)(Record::Event {
                ts: now,
                kind: EventKind::AnomalyEnd,
                detail: format!("anomaly since {} still open at shutdown", calendar::format_hm(start)),
            });
        }
    }

    fn save_forests(&self) {
        let saved: Vec<(String, &Saved)> = (0..self.pipe.channel_count())
            .filter_map(|i| self.pipe.forest_saved(i).map(|s| (self.pipe.channel(i).name.clone(), s)))
            .collect();
        if let Err(e) = forest::save(&saved, &self.forest_path) {
            tracing::warn!("saving the isolation forest to {}: {e}", self.forest_path.display());
        }
    }
}

/// The saved gates and outlook: `wanwatch.db` -> `wanwatch.db.detect.json`.
pub fn state_file(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".detect.json");
    db.with_file_name(name)
}

/// "median RTT to Cloudflare went from 21 ms to 34 ms at 14:02 (confirmed 14:30; 92% of the
/// samples since agree)".
pub fn shift_detail(spec: &ChannelSpec, s: &Shift) -> String {
    format!(
        "{} went from {} to {} at {} (confirmed {}; {:.0}% of the samples since agree)",
        spec.name,
        calendar::with_unit(s.before, &spec.unit),
        calendar::with_unit(s.after, &spec.unit),
        calendar::format_hm(s.onset),
        calendar::format_hm(s.confirmed),
        s.confidence * 100.0
    )
}

fn degradation_detail(spec: &ChannelSpec, r: &pipeline::ChannelResult) -> String {
    let v = |x: f64| calendar::with_unit(x, &spec.unit);
    let min = super::degrade::MIN_MS / MINUTE_MS;
    match (spec.kind, r.value, r.level) {
        (ChannelKind::Loss, Some(x), _) => format!("{} at {:.0}% for {min} minutes", spec.name, x * 100.0),
        (_, Some(x), Some(level)) => {
            format!("{} at {} for {min} minutes, {:.1}x its level of {}", spec.name, v(x), x / level, v(level))
        }
        _ => format!("{} degraded for {min} minutes", spec.name),
    }
}

/// The forest lives next to the database: `wanwatch.db` -> `wanwatch.db.forest.json`.
pub fn forest_file(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".forest.json");
    db.with_file_name(name)
}

/// Which detectors spoke up (surprise at least half the alarm level), for the event's detail.
fn contributors(r: &pipeline::ChannelResult, threshold: f64) -> String {
    let mut names: Vec<&str> = [(r.forecast, "forecast"), (r.autoencoder, "autoencoder"), (r.forest, "forest")]
        .iter()
        .filter(|(s, _)| s.is_some_and(|s| s >= threshold / 2.0))
        .map(|(_, n)| *n)
        .collect();
    if r.zweek.is_some_and(|z| z >= 2f64.powf(pipeline::ENSEMBLE_ON)) {
        names.push("week z-score");
    }
    if r.zscore.is_some_and(|z| z >= super::baseline::THRESHOLD) {
        names.push("day z-score");
    }
    if r.rule.is_some() {
        names.push("rule");
    }
    if names.is_empty() { "ensemble".into() } else { names.join(", ") }
}

/// The record that closes an event: "anomaly since 08:12 over after 35m 00s".
fn ended(kind: EventKind, what: &str, e: &alarm::Event) -> Record {
    let (since, lasted) = (calendar::format_hm(e.start), calendar::format_span(e.end - e.start + MINUTE_MS));
    Record::Event { ts: e.end, kind, detail: format!("{what} since {since} over after {lasted}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Failure, Role};

    fn sample(target: usize, ts: WallMs, rtt_us: Option<u32>) -> Sample {
        let rtt = rtt_us.ok_or(Failure::Timeout);
        Sample { target, ts, mono: std::time::Instant::now(), seq: 0, rtt }
    }

    #[test]
    fn channel_ids_number_the_specs() {
        let t = |name: &str| Target { addr: "192.0.2.1".parse().unwrap(), role: Role::Anchor, name: name.into() };
        let specs = channels(&[t("gw"), t("cf")]);
        let id = ChannelId { target: 1, measure: Measure::P95 };
        assert_eq!(specs[id.index()].name, "p95 RTT to cf");
        assert_eq!(specs[ChannelId { target: 0, measure: Measure::Loss }.index()].kind, ChannelKind::Loss);
    }

    #[test]
    fn a_minute_closes_once_its_last_replies_are_in_and_reads_by_channel() {
        let mut b = MinuteBuilder::new(2);
        let t0 = 1_764_547_200_000;
        for (i, rtt) in [Some(20_000), Some(30_000), None, Some(40_000)].into_iter().enumerate() {
            assert!(b.add(&sample(1, t0 + i as i64 * 1000, rtt)).is_empty());
        }
        // the next minute's first sample is too early to close the first...
        assert!(b.add(&sample(0, t0 + MINUTE_MS + 1000, Some(5_000))).is_empty());
        // ...one after the close delay does
        let done = b.add(&sample(0, t0 + MINUTE_MS + CLOSE_AFTER_MS, Some(5_000)));
        assert_eq!(done.len(), 1);
        let m = &done[0];
        assert_eq!(m.ts, t0);
        assert_eq!(m.targets[0], TargetMinute::default(), "target 0 sent nothing that minute");
        assert_eq!(m.targets[1].median_ms, Some(30.0));
        assert_eq!(m.targets[1].loss, Some(0.25));
        let v = m.values();
        assert_eq!(v[ChannelId { target: 1, measure: Measure::Loss }.index()], Some(0.25));
        assert_eq!(v[ChannelId { target: 0, measure: Measure::Median }.index()], None);
        // a late sample for a closed minute is not reopened
        assert!(b.add(&sample(1, t0 + 2000, Some(1))).is_empty());
    }
}
