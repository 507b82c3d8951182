//! The pipeline inside the agent: pings are folded into per-target minutes (median RTT, p95 RTT,
//! loss), each closed minute is one step on the detection thread, and what it finds goes to the
//! store as events (`anomaly`, `anomaly_end`, `prediction`) that the OLED, the LED and `status`
//! already show.
//!
//! Nothing but the forest is saved: at start the last day of minutes is read back from the
//! database and replayed through the pipeline (silently), which restores the statistics, the
//! windows and the calibrators. The forest is saved next to the database after every fit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::alarm::{Alarms, Transition};
use super::forest::{self, Saved};
use super::models::{Models, Source};
use super::pipeline::{self, ChannelKind, ChannelSpec, Detector, Pipeline, Settings};
use crate::config::probes::DetectConfig;
use crate::sample::{Record, Sample, Target, WallMs};
use crate::store::rollup::{self, minute_of};
use crate::timefmt;

const MINUTE_MS: i64 = 60_000;
/// A minute is closed this long after it ends: replies (or timeouts) to its last pings are in.
const CLOSE_AFTER_MS: i64 = 5_000;

/// Channels per target, in this order.
pub fn channels(targets: &[Target]) -> Vec<ChannelSpec> {
    targets
        .iter()
        .flat_map(|t| {
            [
                ChannelSpec {
                    name: format!("median RTT to {}", t.name),
                    kind: ChannelKind::Latency,
                    unit: "ms".into(),
                },
                ChannelSpec { name: format!("p95 RTT to {}", t.name), kind: ChannelKind::Latency, unit: "ms".into() },
                ChannelSpec { name: format!("loss to {}", t.name), kind: ChannelKind::Loss, unit: "ratio".into() },
            ]
        })
        .collect()
}

/// The three channel values of one target-minute.
fn values(results: &[Option<u32>]) -> [Option<f64>; 3] {
    if results.is_empty() {
        return [None; 3];
    }
    let st = rollup::stats(results);
    let ms = |us: Option<u32>| us.map(|v| v as f64 / 1000.0);
    [ms(st.median), ms(st.p95), Some(st.lost as f64 / st.sent.max(1) as f64)]
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

    /// Adds a sample; returns the minutes it completed (oldest first), each with one value per
    /// channel.
    pub fn add(&mut self, s: &Sample) -> Vec<(WallMs, Vec<Option<f64>>)> {
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
            done.push((first, per_target.iter().flat_map(|r| values(r)).collect()));
        }
        done
    }
}

/// Handle to the detection thread.
pub struct Live {
    tx: mpsc::Sender<(WallMs, Vec<Option<f64>>)>,
    handle: JoinHandle<()>,
}

impl Live {
    /// Starts the thread. `out` takes the events; `db` is read once for the warm start.
    pub fn spawn(
        cfg: &DetectConfig,
        targets: &[Target],
        db: &Path,
        utc_offset_s: i64,
        now: crate::clock::WallFn,
        out: Sink,
    ) -> Live {
        let (tx, rx) = mpsc::channel::<(WallMs, Vec<Option<f64>>)>();
        let specs = channels(targets);
        let addrs: Vec<String> = targets.iter().map(|t| t.addr.to_string()).collect();
        let settings = Settings {
            step_ms: MINUTE_MS,
            baseline_ms: cfg.baseline.as_millis() as i64,
            refit_ms: 24 * 3_600_000,
            alarms_per_week: cfg.alarms_per_week,
            utc_offset_s,
            without: Default::default(),
        };
        let source = if cfg.models == "builtin" { Source::Builtin } else { Source::Dir(PathBuf::from(&cfg.models)) };
        let db = db.to_path_buf();
        let handle = std::thread::Builder::new()
            .name("wanwatch-detect".into())
            .spawn(move || {
                let mut d = Detection::new(settings, source, specs, &db, out);
                d.warm_start(&db, &addrs, now());
                for (ts, values) in rx {
                    d.step(ts, &values);
                }
                d.finish(now());
            })
            .expect("spawn detection thread");
        Live { tx, handle }
    }

    pub fn send(&self, minute: WallMs, values: Vec<Option<f64>>) {
        let _ = self.tx.send((minute, values));
    }

    /// Lets the thread finish the minutes it has and close open events.
    pub fn stop(self) {
        drop(self.tx);
        let _ = self.handle.join();
    }
}

/// Where events go: the agent's record channel.
pub type Sink = Box<dyn Fn(Record) + Send>;

pub struct Detection {
    pipe: Pipeline,
    alarms: Alarms,
    out: Sink,
    forest_path: PathBuf,
    open: Option<(WallMs, String)>,
    silent: bool,
}

impl Detection {
    pub fn new(settings: Settings, source: Source, specs: Vec<ChannelSpec>, db: &Path, out: Sink) -> Detection {
        let models = Models::load(source);
        for p in models.problems() {
            tracing::warn!("{p}; detection carries on with the forest and the rules");
        }
        let alarms = Alarms::new(settings.threshold(), settings.step_ms, &[Detector::Ensemble, Detector::Predict]);
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
        Detection { pipe, alarms, out, forest_path, open: None, silent: false }
    }

    /// Replays the day of stored minutes before `now` (the agent's clock) without emitting
    /// anything.
    pub fn warm_start(&mut self, db: &Path, addrs: &[String], now: WallMs) {
        let Ok(store) = crate::store::Store::open_read_only(db) else { return };
        let since = now - 86_400_000;
        let rows = match store.minutes_since(since) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("detection warm start: {e}");
                return;
            }
        };
        let mut by_minute: BTreeMap<WallMs, Vec<Option<f64>>> = BTreeMap::new();
        for r in rows {
            let Some(i) = addrs.iter().position(|a| *a == r.addr) else { continue };
            let v = by_minute.entry(r.ts).or_insert_with(|| vec![None; addrs.len() * 3]);
            let loss = (r.sent > 0).then(|| r.lost as f64 / r.sent as f64);
            v[i * 3] = r.median_us.map(|u| u as f64 / 1000.0);
            v[i * 3 + 1] = r.p95_us.map(|u| u as f64 / 1000.0);
            v[i * 3 + 2] = loss;
        }
        self.silent = true;
        let n = by_minute.len();
        for (ts, v) in by_minute {
            self.step(ts, &v);
        }
        self.silent = false;
        if n > 0 {
            tracing::info!("detection warmed up on {n} stored minutes");
        }
    }

    pub fn step(&mut self, ts: WallMs, values: &[Option<f64>]) {
        for m in self.pipe.models_mut().refresh() {
            tracing::warn!("{m}");
        }
        let fitted = |p: &Pipeline| -> Vec<Option<i64>> {
            (0..p.channel_count()).map(|i| p.forest_saved(i).map(|s| s.fitted_at)).collect()
        };
        let before = fitted(&self.pipe);
        let results = self.pipe.step(ts, values);
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
                    Record::Event { ts: t, kind: "anomaly".into(), detail }
                }
                (Detector::Ensemble, Transition::Closed(e)) => {
                    self.open = None;
                    Record::Event {
                        ts: e.end,
                        kind: "anomaly_end".into(),
                        detail: format!(
                            "anomaly since {} over after {}",
                            timefmt::format_hm(e.start),
                            timefmt::format_span(e.end - e.start + MINUTE_MS)
                        ),
                    }
                }
                (Detector::Predict, Transition::Opened(t)) => {
                    let Some(p) = &r.prediction else { continue };
                    Record::Event {
                        ts: t,
                        kind: "prediction".into(),
                        detail: format!(
                            "{} may reach {} within {} min (confidence ~{:.0}%)",
                            spec.name,
                            timefmt::with_unit(p.expected, &spec.unit),
                            p.lead_steps,
                            p.confidence * 100.0
                        ),
                    }
                }
                _ => continue,
            };
            if !self.silent {
                (self.out)(record);
            }
        }
    }

    fn finish(&mut self, now: WallMs) {
        if let Some((start, _)) = self.open.take() {
            (self.out)(Record::Event {
                ts: now,
                kind: "anomaly_end".into(),
                detail: format!("anomaly since {} still open at shutdown", timefmt::format_hm(start)),
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
