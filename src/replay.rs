//! `wanwatch replay`: the agent's detection pipeline run over CSV files at full speed, so the
//! detectors can be scored on labelled public data (`scripts/score.py`) with exactly the code the
//! Pi runs. Each value column is a channel; each row a step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::calendar::{self, DAY_MS, HOUR_MS};
use crate::detect::alarm::{Alarms, Transition};
use crate::detect::models::{Models, Source};
use crate::detect::outlook::Tally;
use crate::detect::pipeline::{self, ChannelKind, ChannelSpec, Detector, Members, Pipeline, Settings};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: {err}")]
    Read { path: String, err: csv::Error },
    #[error("{path}: no column `{column}` (columns: {found})")]
    NoColumn { path: String, column: String, found: String },
    #[error("{path}, line {line}, column `{column}`: `{value}` is not a timestamp")]
    Timestamp { path: String, line: u64, column: String, value: String },
    #[error("{path}: fewer than 2 rows")]
    TooShort { path: String },
}

#[derive(Debug, Clone)]
pub struct Options {
    pub timestamp_col: String,
    pub value_cols: Vec<String>,
    pub alarms_per_week: f64,
    pub baseline_ms: i64,
    pub models: Source,
    /// Write every step's scores (first channel) to this CSV, for plots and tuning.
    pub trace: Option<PathBuf>,
    /// Ensemble members left out (ablations).
    pub without: Members,
    /// Score the outlook from this time on (default: a week after each series starts).
    pub outlook_from: Option<i64>,
}

/// The outlook is scored only after this much of a series (its climatology needs a week).
pub const OUTLOOK_LEARN_MS: i64 = 7 * DAY_MS;

/// One ensemble event, for `--events`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventOut {
    pub series: String,
    pub start: String,
    pub end: String,
    pub peak: f64,
    pub channel: String,
    pub explanation: String,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub rows: usize,
    pub steps: usize,
    pub missing: usize,
    /// Rows dropped because their time went backwards.
    pub skipped: usize,
    pub step_ms: i64,
    /// Alarm times (event starts) per detector.
    pub alarms: BTreeMap<&'static str, Vec<String>>,
    pub events: Vec<EventOut>,
    /// The outlook's Brier scores and reliability after its first week.
    pub outlook: Tally,
}

struct Row {
    ts: i64,
    values: Vec<Option<f64>>,
}

fn parse_ts(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        // epoch seconds, or milliseconds when that big
        return Some(if n.abs() > 1e11 { n as i64 } else { (n * 1000.0) as i64 });
    }
    if !s.starts_with(|c: char| c.is_ascii_digit()) || !s.contains('-') {
        return None; // "2h" would parse as a duration ago: not a timestamp in a file
    }
    let s = s.split('.').next().unwrap_or(s); // fractional seconds: the step is seconds at least
    calendar::parse_time(s, 0).ok()
}

fn read(path: &Path, opts: &Options, skipped: &mut usize) -> Result<Vec<Row>, ReplayError> {
    let p = path.display().to_string();
    let mut rdr = csv::Reader::from_path(path).map_err(|err| ReplayError::Read { path: p.clone(), err })?;
    let headers = rdr.headers().map_err(|err| ReplayError::Read { path: p.clone(), err })?.clone();
    let find = |c: &str| {
        headers.iter().position(|h| h.trim() == c).ok_or_else(|| ReplayError::NoColumn {
            path: p.clone(),
            column: c.to_string(),
            found: headers.iter().collect::<Vec<_>>().join(", "),
        })
    };
    let tcol = find(&opts.timestamp_col)?;
    let vcols = opts.value_cols.iter().map(|c| find(c)).collect::<Result<Vec<_>, _>>()?;
    let mut rows: Vec<Row> = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|err| ReplayError::Read { path: p.clone(), err })?;
        let line = rec.position().map_or(0, |pos| pos.line());
        let raw = rec.get(tcol).unwrap_or("");
        let ts = parse_ts(raw).ok_or_else(|| ReplayError::Timestamp {
            path: p.clone(),
            line,
            column: opts.timestamp_col.clone(),
            value: raw.to_string(),
        })?;
        if let Some(prev) = rows.last()
            && ts < prev.ts
        {
            // Real exports have these (NAB's machine_temperature has one): skip, say where.
            tracing::warn!(
                "{p}, line {line}: time goes backwards ({raw} after {}); row skipped",
                calendar::format_time(prev.ts)
            );
            *skipped += 1;
            continue;
        }
        // An empty or unreadable value is a missing step, not a zero.
        let values = vcols.iter().map(|&c| rec.get(c).and_then(|v| v.trim().parse::<f64>().ok())).collect();
        rows.push(Row { ts, values });
    }
    if rows.len() < 2 {
        return Err(ReplayError::TooShort { path: p });
    }
    Ok(rows)
}

/// The typical spacing of the rows: their median difference.
fn step_of(rows: &[Row]) -> i64 {
    let mut d: Vec<i64> = rows.windows(2).map(|w| w[1].ts - w[0].ts).filter(|&d| d > 0).take(5000).collect();
    d.sort_unstable();
    d.get(d.len() / 2).copied().unwrap_or(60_000).max(1)
}

fn channel_kind(name: &str) -> ChannelKind {
    let n = name.to_ascii_lowercase();
    if n.contains("loss") {
        ChannelKind::Loss
    } else if n.contains("rtt") || n.contains("latency") || n.contains("_ms") {
        ChannelKind::Latency
    } else {
        ChannelKind::Other
    }
}

/// Replays one file; `series` names it in the output.
pub fn replay(path: &Path, series: &str, opts: &Options) -> Result<Outcome, ReplayError> {
    let mut skipped = 0;
    let rows = read(path, opts, &mut skipped)?;
    let step_ms = step_of(&rows);
    let settings = Settings {
        step_ms,
        baseline_ms: opts.baseline_ms,
        refit_ms: 24 * HOUR_MS,
        alarms_per_week: opts.alarms_per_week,
        utc_offset_s: 0,
        without: opts.without,
    };
    let specs = opts
        .value_cols
        .iter()
        .map(|c| ChannelSpec { name: c.clone(), kind: channel_kind(c), unit: String::new() })
        .collect();
    let mut pipe = Pipeline::new(settings, Models::load(opts.models.clone()), specs);
    let learn_until = (rows[0].ts + OUTLOOK_LEARN_MS).max(opts.outlook_from.unwrap_or(i64::MIN));
    pipe.outlook_mut().score_from(learn_until);
    let mut alarms = Alarms::new(pipe.threshold(), step_ms, &Detector::ALL);
    let mut out = Outcome { rows: rows.len(), step_ms, skipped, ..Default::default() };
    for d in Detector::ALL {
        out.alarms.insert(d.name(), Vec::new());
    }
    out.alarms.insert(SHIFT, Vec::new());
    out.alarms.insert(SHIFT_CONFIRMED, Vec::new());
    let mut open_event: Option<EventOut> = None;
    let missing_row = vec![None; opts.value_cols.len()];
    let mut prev_ts: Option<i64> = None;
    let mut trace = match &opts.trace {
        Some(t) => {
            let mut w =
                csv::Writer::from_path(t).map_err(|err| ReplayError::Read { path: t.display().to_string(), err })?;
            let _ = w.write_record([
                "ts",
                "value",
                "forecast",
                "autoencoder",
                "forest",
                "ensemble",
                "agreement",
                "zscore",
                "zweek",
                "rule",
                "kind",
            ]);
            Some(w)
        }
        None => None,
    };
    let mut trace_step = |pipe: &mut Pipeline,
                          alarms: &mut Alarms,
                          out: &mut Outcome,
                          open_event: &mut Option<EventOut>,
                          ts: i64,
                          values: &[Option<f64>]| {
        let results = step(pipe, alarms, out, open_event, series, ts, values);
        if let (Some(w), Some(r)) = (trace.as_mut(), results.first()) {
            let f = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
            let _ = w.write_record([
                calendar::format_time(ts),
                f(r.value),
                f(r.forecast),
                f(r.autoencoder),
                f(r.forest),
                f(r.ensemble),
                f(r.agreement),
                f(r.zscore),
                f(r.zweek),
                r.rule.map(|_| "1".to_string()).unwrap_or_default(),
                r.kind.map(|k| k.0.to_string()).unwrap_or_default(),
            ]);
        }
    };
    for row in &rows {
        // A gap in the timestamps is missing steps (up to a day of them), not a shorter series.
        if let Some(p) = prev_ts {
            let gap_steps = ((row.ts - p) as f64 / step_ms as f64).round() as i64 - 1;
            for k in 1..=gap_steps.clamp(0, DAY_MS / step_ms) {
                trace_step(&mut pipe, &mut alarms, &mut out, &mut open_event, p + k * step_ms, &missing_row);
            }
        }
        trace_step(&mut pipe, &mut alarms, &mut out, &mut open_event, row.ts, &row.values);
        prev_ts = Some(row.ts);
    }
    if let Some(mut ev) = open_event.take() {
        if let Some((_, e)) = alarms.finish().into_iter().find(|(d, _)| *d == Detector::Ensemble) {
            ev.end = calendar::format_time(e.end);
            ev.peak = e.peak;
        }
        out.events.push(ev);
    }
    out.missing = rows.iter().filter(|r| r.values.iter().any(Option::is_none)).count();
    out.outlook = pipe.outlook().report();
    Ok(out)
}

fn step(
    pipe: &mut Pipeline,
    alarms: &mut Alarms,
    out: &mut Outcome,
    open_event: &mut Option<EventOut>,
    series: &str,
    ts: i64,
    values: &[Option<f64>],
) -> Vec<pipeline::ChannelResult> {
    out.steps += 1;
    let results = pipe.step(ts, values);
    for s in results.iter().filter_map(|r| r.shift.as_ref()) {
        out.alarms.get_mut(SHIFT).expect("inserted at the start").push(calendar::format_time(s.onset));
        out.alarms.get_mut(SHIFT_CONFIRMED).expect("inserted at the start").push(calendar::format_time(s.confirmed));
    }
    for c in alarms.step(ts, &results) {
        match c.transition {
            Transition::Opened(t) => {
                out.alarms
                    .get_mut(c.detector.name())
                    .expect("every detector has a list")
                    .push(calendar::format_time(t));
                if c.detector == Detector::Ensemble {
                    let spec = pipe.channel(c.channel);
                    *open_event = Some(EventOut {
                        series: series.to_string(),
                        start: calendar::format_time(t),
                        end: calendar::format_time(t),
                        peak: results[c.channel].level(Detector::Ensemble),
                        channel: spec.name.clone(),
                        explanation: pipeline::explain(spec, &results[c.channel], ts, 0),
                    });
                }
            }
            Transition::Closed(e) if c.detector == Detector::Ensemble => {
                if let Some(mut ev) = open_event.take() {
                    ev.end = calendar::format_time(e.end);
                    ev.peak = e.peak;
                    out.events.push(ev);
                }
            }
            Transition::Closed(_) => {}
        }
    }
    results
}

/// Level shifts are written by onset (`shift.json`), not through the alarm hysteresis.
pub const SHIFT: &str = "shift";
/// When each of those shifts was confirmed, in the same order (`shift_confirmed.json`).
pub const SHIFT_CONFIRMED: &str = "shift_confirmed";

/// The name a file goes by in the alarm JSON: its path relative to `root` when given (NAB's label
/// keys are relative to its data folder), else the path as given.
pub fn series_name(path: &Path, root: Option<&PathBuf>) -> String {
    root.and_then(|r| path.strip_prefix(r).ok())
        .unwrap_or(path)
        .to_string_lossy()
        .replace(std::path::MAIN_SEPARATOR, "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_the_forms_datasets_use() {
        assert_eq!(parse_ts("1970-01-01 00:01:00"), Some(60_000));
        assert_eq!(parse_ts("1970-01-01T00:01:00Z"), Some(60_000));
        assert_eq!(parse_ts("1970-01-01 00:01:00.250"), Some(60_000));
        assert_eq!(parse_ts("60"), Some(60_000));
        assert_eq!(parse_ts("1764016200000"), Some(1_764_016_200_000));
        assert_eq!(parse_ts("2h"), None);
        assert_eq!(parse_ts("yesterday"), None);
    }
}
