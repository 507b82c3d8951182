//! Does the link get worse when something else happens (rain, wind, a busy LAN, weak signal, the
//! evening)? Effect sizes with honest uncertainty, from the household's own minutes.
//!
//! Minutes are not independent (a bad hour is sixty bad minutes), so a plain binomial interval
//! would be far too sure of itself. Uncertainty comes from a block bootstrap over clock hours:
//! whole hours are resampled, so an effect must show up across many separate hours to count.
//! Loss and latency are judged on minutes outside outages; outages are their own measure.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::data::Minute;
use crate::calendar::{HOUR_MS, hour_of_week};
use crate::sample::WallMs;
use crate::stats::{median, quantile};

/// Bootstrap resamples: enough for a stable 95% interval, cheap over hour blocks.
const RESAMPLES: usize = 999;
/// Below this an effect is "too little data": at least this many separate hours on each side.
pub const MIN_HOURS: usize = 3;
pub const MIN_MINUTES: usize = 30;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Worse inside: the whole 95% interval of the ratio is above 1.
    Higher,
    /// Better inside: the whole interval is below 1.
    Lower,
    NoClearDifference,
    TooLittleData,
}

/// One measure compared inside vs outside a condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub inside: f64,
    pub outside: f64,
    /// inside / outside (infinite when outside is 0 and inside is not).
    pub ratio: f64,
    /// 95% block-bootstrap interval of the ratio.
    pub ci: (f64, f64),
    pub verdict: Verdict,
}

/// "When it rains > 1 mm/h" vs "when it is dry": loss, latency and outage time on each side.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub label: String,
    pub versus: String,
    /// Compared within the same hour of day (the ratio is adjusted for the time of day).
    pub same_hour: bool,
    pub minutes_in: usize,
    pub minutes_out: usize,
    pub hours_in: usize,
    pub hours_out: usize,
    /// Packet loss ratio (0-1), outside outages.
    pub loss: Comparison,
    /// Mean of the per-minute median RTT, ms, outside outages.
    pub latency: Comparison,
    /// Share of minutes inside a WAN outage.
    pub down: Comparison,
}

/// Sums over one clock hour, one side of the split.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    minutes: f64,
    up_minutes: f64,
    sent: f64,
    lost: f64,
    lat_sum: f64,
    lat_n: f64,
    down: f64,
}

impl Sums {
    fn add(&mut self, m: &Minute) {
        self.minutes += 1.0;
        if m.down {
            self.down += 1.0;
            return;
        }
        self.up_minutes += 1.0;
        self.sent += m.sent as f64;
        self.lost += m.lost as f64;
        if let Some(l) = m.median_ms {
            self.lat_sum += l;
            self.lat_n += 1.0;
        }
    }
    fn plus(&mut self, o: &Sums) {
        self.minutes += o.minutes;
        self.up_minutes += o.up_minutes;
        self.sent += o.sent;
        self.lost += o.lost;
        self.lat_sum += o.lat_sum;
        self.lat_n += o.lat_n;
        self.down += o.down;
    }
    /// (numerator, denominator) of measure `k`: loss, latency, outage share.
    fn parts(&self, k: usize) -> (f64, f64) {
        match k {
            0 => (self.lost, self.sent),
            1 => (self.lat_sum, self.lat_n),
            _ => (self.down, self.minutes),
        }
    }
    fn measures(&self) -> [f64; 3] {
        [0, 1, 2].map(|k| {
            let (a, b) = self.parts(k);
            if b > 0.0 { a / b } else { f64::NAN }
        })
    }
}

/// Inside vs outside, compared stratum by stratum (indirect standardisation): what inside
/// measured over what it would have measured at outside's rate in the same strata. With one
/// stratum this is the plain ratio of rates; with the hour of day as strata, rain that happens
/// to fall in the evenings is not blamed for the evenings.
fn standardised(strata: &[[Sums; 2]]) -> [f64; 3] {
    [0, 1, 2].map(|k| {
        let (mut observed, mut expected, mut any) = (0.0, 0.0, false);
        for s in strata {
            let ((num_in, den_in), (num_out, den_out)) = (s[1].parts(k), s[0].parts(k));
            if den_in > 0.0 && den_out > 0.0 {
                observed += num_in;
                expected += den_in * num_out / den_out;
                any = true;
            }
        }
        if any { ratio(observed, expected) } else { f64::NAN }
    })
}

fn ratio(inside: f64, outside: f64) -> f64 {
    match (inside, outside) {
        (i, o) if i.is_nan() || o.is_nan() => f64::NAN,
        (0.0, 0.0) => 1.0,
        (_, 0.0) => f64::INFINITY,
        (i, o) => i / o,
    }
}

/// How a split's two sides are made comparable.
#[derive(Clone, Copy)]
pub enum Strata<'a> {
    /// All minutes together: the plain ratio (for splits that are about the time itself).
    None,
    /// Minutes compared within the same local hour of day; the function gives a clock hour's
    /// start its hour of day (0-23).
    HourOfDay(&'a dyn Fn(WallMs) -> usize),
}

/// Compare the minutes where `side` is Some(true) against Some(false); None minutes (context
/// unknown) are left out.
pub fn split(
    minutes: &[Minute],
    label: &str,
    versus: &str,
    strata: Strata,
    side: impl Fn(&Minute) -> Option<bool>,
) -> Split {
    let mut blocks: BTreeMap<i64, [Sums; 2]> = BTreeMap::new();
    for m in minutes {
        if let Some(s) = side(m) {
            blocks.entry(m.ts.div_euclid(HOUR_MS)).or_default()[usize::from(s)].add(m);
        }
    }
    // A block is one clock hour, so it lies in one stratum.
    let n_strata = if matches!(strata, Strata::None) { 1 } else { 24 };
    let stratum_of = |hour: i64| match strata {
        Strata::None => 0,
        Strata::HourOfDay(f) => f(hour * HOUR_MS) % 24,
    };
    let blocks: Vec<(usize, [Sums; 2])> = blocks.into_iter().map(|(h, b)| (stratum_of(h), b)).collect();
    let total = |pick: &dyn Fn(usize) -> usize| {
        let mut t = vec![[Sums::default(); 2]; n_strata];
        for i in 0..blocks.len() {
            let (s, b) = &blocks[pick(i)];
            t[*s][0].plus(&b[0]);
            t[*s][1].plus(&b[1]);
        }
        t
    };
    let by_stratum = total(&|i| i);
    let mut all = [Sums::default(); 2];
    for s in &by_stratum {
        all[0].plus(&s[0]);
        all[1].plus(&s[1]);
    }
    let hours = |side: usize| blocks.iter().filter(|b| b.1[side].minutes > 0.0).count();
    let (hours_in, hours_out) = (hours(1), hours(0));
    let point = standardised(&by_stratum);
    // Fixed seed: the same database gives the same report.
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut boot: [Vec<f64>; 3] = Default::default();
    if !blocks.is_empty() {
        for _ in 0..RESAMPLES {
            let picks: Vec<usize> = (0..blocks.len()).map(|_| rng.random_range(0..blocks.len())).collect();
            let r = standardised(&total(&|i| picks[i]));
            for k in 0..3 {
                boot[k].push(r[k]);
            }
        }
    }
    let enough = hours_in >= MIN_HOURS && hours_out >= MIN_HOURS && all[1].minutes as usize >= MIN_MINUTES;
    let comparison = |k: usize| {
        let (inside, outside) = (all[1].measures()[k], all[0].measures()[k]);
        let mut b: Vec<f64> = boot[k].iter().copied().filter(|x| !x.is_nan()).collect();
        b.sort_by(f64::total_cmp);
        let ci = if b.len() < RESAMPLES / 2 {
            (f64::NAN, f64::NAN)
        } else {
            (b[(b.len() as f64 * 0.025) as usize], b[((b.len() as f64 * 0.975) as usize).min(b.len() - 1)])
        };
        let verdict = if !enough || point[k].is_nan() || ci.0.is_nan() {
            Verdict::TooLittleData
        } else if ci.0 > 1.0 {
            Verdict::Higher
        } else if ci.1 < 1.0 {
            Verdict::Lower
        } else {
            Verdict::NoClearDifference
        };
        Comparison { inside, outside, ratio: point[k], ci, verdict }
    };
    Split {
        label: label.into(),
        versus: versus.into(),
        same_hour: matches!(strata, Strata::HourOfDay(_)),
        minutes_in: all[1].minutes as usize,
        minutes_out: all[0].minutes as usize,
        hours_in,
        hours_out,
        loss: comparison(0),
        latency: comparison(1),
        down: comparison(2),
    }
}

/// Spearman's rank correlation of a context value against a link measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Correlation {
    pub label: String,
    pub n: usize,
    /// Separate clock hours the pairs come from: the sample size the interval uses.
    pub hours: usize,
    pub rho: f64,
    pub ci: (f64, f64),
}

/// Spearman's rho between `x` and `y` over the minutes where both exist. The interval is
/// Fisher's, with the number of separate hours (not minutes) as the sample size, because
/// neighbouring minutes are not independent evidence.
pub fn spearman(
    minutes: &[Minute],
    label: &str,
    x: impl Fn(&Minute) -> Option<f64>,
    y: impl Fn(&Minute) -> Option<f64>,
) -> Correlation {
    let pairs: Vec<(WallMs, f64, f64)> = minutes
        .iter()
        .filter_map(|m| Some((m.ts, x(m)?, y(m)?)))
        .filter(|p| p.1.is_finite() && p.2.is_finite())
        .collect();
    let hours = {
        let mut h: Vec<i64> = pairs.iter().map(|p| p.0.div_euclid(HOUR_MS)).collect();
        h.dedup();
        h.len()
    };
    let rx = ranks(&pairs.iter().map(|p| p.1).collect::<Vec<_>>());
    let ry = ranks(&pairs.iter().map(|p| p.2).collect::<Vec<_>>());
    let rho = pearson(&rx, &ry);
    let ci = if hours > 3 && rho.is_finite() {
        let z = rho.clamp(-0.999_999, 0.999_999).atanh();
        let se = 1.0 / ((hours - 3) as f64).sqrt();
        ((z - 1.96 * se).tanh(), (z + 1.96 * se).tanh())
    } else {
        (f64::NAN, f64::NAN)
    };
    Correlation { label: label.into(), n: pairs.len(), hours, rho, ci }
}

/// Average ranks (ties share the mean of their positions).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for k in &idx[i..=j] {
            r[*k] = mean;
        }
        i = j + 1;
    }
    r
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    if a.len() < 3 {
        return f64::NAN;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 { f64::NAN } else { sab / (saa * sbb).sqrt() }
}

/// One hour of the week (local time), over every week in the report.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cell {
    pub minutes: u32,
    pub sent: u64,
    pub lost: u64,
    pub down: u32,
    /// Minutes that were bad for a video call or a big download: down, loss above 2%, or
    /// latency above twice the period's typical.
    pub bad: u32,
    pub median_sum: f64,
    pub median_n: u32,
}

impl Cell {
    pub fn loss(&self) -> Option<f64> {
        (self.sent > 0).then(|| self.lost as f64 / self.sent as f64)
    }
    pub fn latency(&self) -> Option<f64> {
        (self.median_n > 0).then(|| self.median_sum / self.median_n as f64)
    }
    pub fn bad_share(&self) -> Option<f64> {
        (self.minutes > 0).then(|| self.bad as f64 / self.minutes as f64)
    }
}

/// The week folded into 168 hours.
pub fn time_of_week(minutes: &[Minute], offset_s: impl Fn(WallMs) -> i64) -> Vec<Cell> {
    let typical = median(minutes.iter().filter(|m| !m.down).filter_map(|m| m.median_ms)).unwrap_or(f64::INFINITY);
    let mut cells = vec![Cell::default(); 168];
    for m in minutes {
        let c = &mut cells[hour_of_week(m.ts, offset_s(m.ts))];
        c.minutes += 1;
        let bad = m.down || m.loss().is_some_and(|l| l > 0.02) || m.median_ms.is_some_and(|l| l > 2.0 * typical);
        c.bad += u32::from(bad);
        if m.down {
            c.down += 1;
            continue;
        }
        c.sent += m.sent as u64;
        c.lost += m.lost as u64;
        if let Some(l) = m.median_ms {
            c.median_sum += l;
            c.median_n += 1;
        }
    }
    cells
}

/// A stretch of the week: `start` hour of week, `hours` long.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub start: usize,
    pub hours: usize,
    pub bad_share: f64,
    pub minutes: u32,
}

/// The best (and worst) `hours`-long stretches of the week, `count` of each, not overlapping.
/// Only hours measured for at least 20 minutes count, so one quiet test minute is not "best".
pub fn best_and_worst(cells: &[Cell], hours: usize, count: usize) -> (Vec<Window>, Vec<Window>) {
    let mut windows: Vec<Window> = (0..168)
        .filter_map(|start| {
            let cs: Vec<&Cell> = (0..hours).map(|k| &cells[(start + k) % 168]).collect();
            if cs.iter().any(|c| c.minutes < 20) {
                return None;
            }
            let minutes: u32 = cs.iter().map(|c| c.minutes).sum();
            let bad: u32 = cs.iter().map(|c| c.bad).sum();
            Some(Window { start, hours, bad_share: bad as f64 / minutes as f64, minutes })
        })
        .collect();
    let pick = |windows: &[Window]| {
        let mut chosen: Vec<Window> = Vec::new();
        for w in windows {
            let overlaps = chosen.iter().any(|c| {
                let d = (w.start + 168 - c.start) % 168;
                d < c.hours || 168 - d < w.hours
            });
            if !overlaps {
                chosen.push(w.clone());
            }
            if chosen.len() == count {
                break;
            }
        }
        chosen
    };
    windows.sort_by(|a, b| a.bad_share.total_cmp(&b.bad_share).then(a.start.cmp(&b.start)));
    let best = pick(&windows);
    windows.reverse();
    let worst = pick(&windows);
    (best, worst)
}

/// Loss and latency per gateway band (the band list as the gateway reports it).
#[derive(Debug, Clone, PartialEq)]
pub struct BandRow {
    pub band: String,
    pub minutes: usize,
    pub loss: Option<f64>,
    pub latency_ms: Option<f64>,
    pub down_share: f64,
}

pub fn by_band(minutes: &[Minute]) -> Vec<BandRow> {
    let mut groups: BTreeMap<String, Sums> = BTreeMap::new();
    for m in minutes {
        if let Some(b) = &m.ctx.band {
            groups.entry(b.clone()).or_default().add(m);
        }
    }
    let mut rows: Vec<BandRow> = groups
        .into_iter()
        .map(|(band, s)| {
            let [loss, lat, down] = s.measures();
            BandRow {
                band,
                minutes: s.minutes as usize,
                loss: loss.is_finite().then_some(loss),
                latency_ms: lat.is_finite().then_some(lat),
                down_share: down,
            }
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.minutes));
    rows
}

/// Every analysis the report shows, in its order.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub splits: Vec<Split>,
    pub correlations: Vec<Correlation>,
    pub week: Vec<Cell>,
    pub best: Vec<Window>,
    pub worst: Vec<Window>,
    pub bands: Vec<BandRow>,
}

pub fn analyse(minutes: &[Minute], offset_s: impl Fn(WallMs) -> i64 + Copy) -> Analysis {
    let devices_q3 = quantile(minutes.iter().filter_map(|m| m.ctx.devices), 0.75);
    let sinr_q1 = quantile(minutes.iter().filter_map(|m| m.ctx.sinr_db), 0.25);
    let local_hour = |m: &Minute| hour_of_week(m.ts, offset_s(m.ts)) % 24;
    let weekday = |m: &Minute| hour_of_week(m.ts, offset_s(m.ts)) / 24;
    let hour_of_day = |ts: WallMs| hour_of_week(ts, offset_s(ts)) % 24;
    // Context is compared within the same hour of day: rain, wind, heat, a busy LAN and a
    // congested cell all cluster in certain hours, and the hours have their own loss.
    let same_hour = Strata::HourOfDay(&hour_of_day);
    let rain = |m: &Minute| {
        m.ctx.precip_mm_h.and_then(|p| {
            if p > 1.0 {
                Some(true)
            } else if p < 0.1 {
                Some(false)
            } else {
                None
            }
        })
    };
    let mut splits = vec![
        split(minutes, "rain over 1 mm/h", "dry", same_hour, rain),
        split(minutes, "wind over 30 km/h", "calmer", same_hour, |m| m.ctx.wind_kmh.map(|w| w > 30.0)),
        split(minutes, "over 30 °C outside", "cooler", same_hour, |m| m.ctx.temp_c.map(|t| t > 30.0)),
        split(minutes, "evenings 19:00-23:00", "other hours", Strata::None, |m| {
            Some((19..23).contains(&local_hour(m)))
        }),
        split(minutes, "weekends", "weekdays", same_hour, |m| Some(weekday(m) >= 5)),
    ];
    // Sessions, where the household's DNS log is watched (`probe::sessions`).
    if minutes.iter().any(|m| m.ctx.streaming.is_some()) {
        splits
            .push(split(minutes, "during streaming", "no streaming", same_hour, |m| m.ctx.streaming.map(|n| n > 0.0)));
        splits.push(split(minutes, "during gaming", "no gaming", same_hour, |m| m.ctx.gaming.map(|n| n > 0.0)));
    }
    if let Some(q) = devices_q3 {
        let label = format!("more than {q:.0} devices on the LAN");
        splits.push(split(minutes, &label, "fewer", same_hour, |m| m.ctx.devices.map(|d| d > q)));
    }
    if let Some(q) = sinr_q1 {
        let label = format!("SINR below {q:.1} dB (weakest quarter)");
        splits.push(split(minutes, &label, "stronger", same_hour, |m| m.ctx.sinr_db.map(|s| s < q)));
    }
    let up = |m: &Minute| !m.down;
    let correlations = vec![
        spearman(minutes, "SINR vs loss", |m| m.ctx.sinr_db.filter(|_| up(m)), Minute::loss),
        spearman(minutes, "SINR vs latency", |m| m.ctx.sinr_db.filter(|_| up(m)), |m| m.median_ms),
        spearman(minutes, "RSRP vs loss", |m| m.ctx.rsrp_dbm.filter(|_| up(m)), Minute::loss),
        spearman(minutes, "devices vs latency", |m| m.ctx.devices.filter(|_| up(m)), |m| m.median_ms),
        spearman(minutes, "rain vs loss", |m| m.ctx.precip_mm_h.filter(|_| up(m)), Minute::loss),
    ];
    let week = time_of_week(minutes, offset_s);
    let (best, worst) = best_and_worst(&week, 3, 3);
    Analysis { splits, correlations, week, best, worst, bands: by_band(minutes) }
}

/// The best `hours`-long stretch that starts within the next day (from the next full hour
/// after `now_how`, an hour of the week): "best for big downloads: 03:00-06:00" on the OLED and
/// the dashboard. None until the hours have been measured (20 minutes each), as for the report.
pub fn next_best(cells: &[Cell], now_how: usize, hours: usize) -> Option<NextWindow> {
    let (best, _) = best_and_worst(cells, hours, 168);
    let ahead = |start: usize| (start + 168 - (now_how + 1) % 168) % 168;
    let w = best
        .into_iter()
        .filter(|w| ahead(w.start) < 24)
        .min_by(|a, b| a.bad_share.total_cmp(&b.bad_share).then(ahead(a.start).cmp(&ahead(b.start))))?;
    let today_start = now_how - now_how % 24;
    let tomorrow = (w.start + 168 - today_start) % 168 >= 24;
    Some(NextWindow { start_hour: w.start % 24, end_hour: (w.start + w.hours) % 24, tomorrow, bad_share: w.bad_share })
}

/// A window of the coming day, in local hours.
#[derive(Debug, Clone, PartialEq)]
pub struct NextWindow {
    pub start_hour: usize,
    pub end_hour: usize,
    /// It starts tomorrow (local time), not today.
    pub tomorrow: bool,
    /// Share of its minutes that were bad, over the weeks measured.
    pub bad_share: f64,
}

impl NextWindow {
    /// "03:00-06:00", with " tomorrow" when it is.
    pub fn label(&self) -> String {
        format!("{:02}:00-{:02}:00{}", self.start_hour, self.end_hour, if self.tomorrow { " tomorrow" } else { "" })
    }
}

/// "Tue 20:00-23:00" for a window (hour of week, local time).
pub fn window_label(w: &Window) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let end = (w.start + w.hours) % 168;
    let end_day = if end / 24 != w.start / 24 && !end.is_multiple_of(24) {
        format!("{} ", DAYS[end / 24])
    } else {
        String::new()
    };
    format!(
        "{} {:02}:00-{end_day}{:02}:00",
        DAYS[w.start / 24],
        w.start % 24,
        if end.is_multiple_of(24) { 24 } else { end % 24 }
    )
}

#[cfg(test)]
mod tests {
    use super::super::data::Context;
    use super::*;
    use crate::calendar::MINUTE_MS;

    /// Two weeks of minutes; it rains in 1 hour in 8, and rain multiplies loss by `effect`.
    /// Loss per minute is drawn binomially so the numbers are noisy like real ones.
    fn rainy(effect: f64, seed: u64) -> Vec<Minute> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..14 * 1440)
            .map(|i| {
                let ts = 1_700_000_000_000 + i as i64 * MINUTE_MS;
                let rain = (ts / HOUR_MS) % 8 == 3;
                let p = if rain { 0.01 * effect } else { 0.01 };
                let lost = (0..60).filter(|_| rng.random::<f64>() < p).count() as u32;
                Minute {
                    ts,
                    sent: 60,
                    lost,
                    median_ms: Some(30.0 + rng.random::<f64>() * 4.0),
                    p95_ms: None,
                    down: false,
                    ctx: Context { precip_mm_h: Some(if rain { 3.0 } else { 0.0 }), ..Context::default() },
                }
            })
            .collect()
    }

    #[test]
    fn a_real_rain_effect_is_found_with_its_size() {
        let ms = rainy(3.0, 1);
        let s = split(&ms, "rain", "dry", Strata::None, |m| m.ctx.precip_mm_h.map(|p| p > 1.0));
        assert_eq!(s.hours_in, 42);
        assert_eq!(s.minutes_in, 42 * 60);
        assert!((s.loss.ratio - 3.0).abs() < 0.3, "ratio {}", s.loss.ratio);
        assert!(s.loss.ci.0 <= s.loss.ratio && s.loss.ratio <= s.loss.ci.1, "{:?}", s.loss);
        assert_eq!(s.loss.verdict, Verdict::Higher);
        // Latency was not touched by rain.
        assert_eq!(s.latency.verdict, Verdict::NoClearDifference, "{:?}", s.latency);
    }

    #[test]
    fn the_interval_covers_the_true_effect_about_95_times_in_100() {
        let covered = (10..30)
            .filter(|&seed| {
                let s = split(&rainy(3.0, seed), "rain", "dry", Strata::None, |m| m.ctx.precip_mm_h.map(|p| p > 1.0));
                s.loss.ci.0 <= 3.0 && 3.0 <= s.loss.ci.1
            })
            .count();
        // 95% nominal; 20 draws: 16 or more happens with probability > 0.98 if it is honest.
        assert!(covered >= 16, "covered the truth in {covered} of 20");
    }

    #[test]
    fn no_effect_is_not_reported_as_one() {
        // Over several seeds, an effect of 1.0 must not come out "Higher" or "Lower" often.
        let wrong = (0..10)
            .filter(|&seed| {
                let ms = rainy(1.0, seed);
                split(&ms, "rain", "dry", Strata::None, |m| m.ctx.precip_mm_h.map(|p| p > 1.0)).loss.verdict
                    != Verdict::NoClearDifference
            })
            .count();
        assert!(wrong <= 2, "{wrong} of 10 healthy links got a rain effect");
    }

    #[test]
    fn two_rainy_hours_are_too_little_data() {
        let mut ms = rainy(3.0, 2);
        ms.truncate(24 * 60); // one day: 3 rainy hours
        let mut few = ms.clone();
        few.retain(|m| (m.ts / HOUR_MS) % 8 != 3 || m.ts < ms[0].ts + 12 * HOUR_MS);
        let s = split(&few, "rain", "dry", Strata::None, |m| m.ctx.precip_mm_h.map(|p| p > 1.0));
        assert!(s.hours_in < MIN_HOURS);
        assert_eq!(s.loss.verdict, Verdict::TooLittleData);
    }

    #[test]
    fn spearman_sees_a_monotone_link_and_its_absence() {
        let mut rng = StdRng::seed_from_u64(3);
        let ms: Vec<Minute> = (0..3000)
            .map(|i| {
                let sinr = rng.random::<f64>() * 30.0 - 5.0;
                let ts = i as i64 * MINUTE_MS;
                let lat = 80.0 - 2.0 * sinr + rng.random::<f64>() * 10.0;
                Minute {
                    ts,
                    sent: 60,
                    lost: 0,
                    median_ms: Some(lat),
                    p95_ms: None,
                    down: false,
                    ctx: Context { sinr_db: Some(sinr), devices: Some(rng.random::<f64>()), ..Context::default() },
                }
            })
            .collect();
        let c = spearman(&ms, "sinr", |m| m.ctx.sinr_db, |m| m.median_ms);
        assert_eq!((c.n, c.hours), (3000, 50));
        assert!(c.rho < -0.9 && c.ci.1 < 0.0, "{c:?}");
        let none = spearman(&ms, "devices", |m| m.ctx.devices, |m| m.median_ms);
        assert!(none.ci.0 < 0.0 && none.ci.1 > 0.0, "{none:?}");
    }

    #[test]
    fn a_busy_lan_is_not_blamed_for_the_evening() {
        // Evenings double loss; the LAN is busy in the evenings; devices themselves do nothing.
        let mut rng = StdRng::seed_from_u64(5);
        let ms: Vec<Minute> = (0..14 * 1440)
            .map(|i| {
                let ts = 1_795_392_000_000 + i as i64 * MINUTE_MS;
                let evening = (19..23).contains(&((ts / HOUR_MS) % 24));
                let p = if evening { 0.02 } else { 0.01 };
                let lost = (0..60).filter(|_| rng.random::<f64>() < p).count() as u32;
                // Busy in most evenings and in some other hours, so the two can be told apart.
                let busy = rng.random::<f64>() < if evening { 0.7 } else { 0.2 };
                let devices = if busy { 18.0 } else { 9.0 };
                let ctx = Context { devices: Some(devices), ..Context::default() };
                Minute { ts, sent: 60, lost, median_ms: Some(30.0), p95_ms: None, down: false, ctx }
            })
            .collect();
        let busy = |m: &Minute| m.ctx.devices.map(|d| d > 12.0);
        let crude = split(&ms, "busy", "quiet", Strata::None, busy);
        assert_eq!(crude.loss.verdict, Verdict::Higher, "the crude ratio is fooled: {:?}", crude.loss);
        let hour = |ts: WallMs| ((ts / HOUR_MS) % 24) as usize;
        let fair = split(&ms, "busy", "quiet", Strata::HourOfDay(&hour), busy);
        assert!(fair.same_hour);
        assert_eq!(fair.loss.verdict, Verdict::NoClearDifference, "{:?}", fair.loss);
        // A real rain effect survives the adjustment (rain in random hours, loss tripled).
        let rain_hours: Vec<bool> = (0..14 * 24).map(|_| rng.random::<f64>() < 0.125).collect();
        let wet: Vec<Minute> = ms
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let rain = rain_hours[i / 60];
                let p = if rain { 0.03 } else { 0.01 };
                let lost = (0..60).filter(|_| rng.random::<f64>() < p).count() as u32;
                let ctx = Context { precip_mm_h: Some(if rain { 3.0 } else { 0.0 }), ..Context::default() };
                Minute { lost, ctx, ..m.clone() }
            })
            .collect();
        let s = split(&wet, "rain", "dry", Strata::HourOfDay(&hour), |m| m.ctx.precip_mm_h.map(|p| p > 1.0));
        assert!((s.loss.ratio - 3.0).abs() < 0.4 && s.loss.verdict == Verdict::Higher, "{:?}", s.loss);
    }

    #[test]
    fn streaming_and_gaming_are_splits_only_where_sessions_are_watched() {
        // Streaming mostly in the evenings (which are worse anyway) and sometimes by day; the
        // loss doubles while someone streams. Gaming happens at random and does nothing.
        let mut rng = StdRng::seed_from_u64(9);
        let ms: Vec<Minute> = (0..14 * 1440)
            .map(|i| {
                let ts = 1_795_392_000_000 + i as i64 * MINUTE_MS;
                let hour = (ts / HOUR_MS) % 24;
                let evening = (19..23).contains(&hour);
                // Sessions last whole hours, as evenings of TV do.
                let mut hrng = StdRng::seed_from_u64((ts / HOUR_MS) as u64);
                let streaming = hrng.random::<f64>() < if evening { 0.7 } else { 0.2 };
                let gaming = hrng.random::<f64>() < 0.3;
                let p = 0.01 * if evening { 1.5 } else { 1.0 } * if streaming { 2.0 } else { 1.0 };
                let lost = (0..60).filter(|_| rng.random::<f64>() < p).count() as u32;
                let ctx = Context {
                    streaming: Some(if streaming { 2.0 } else { 0.0 }),
                    gaming: Some(if gaming { 1.0 } else { 0.0 }),
                    ..Context::default()
                };
                Minute { ts, sent: 60, lost, median_ms: Some(30.0), p95_ms: None, down: false, ctx }
            })
            .collect();
        let a = analyse(&ms, |_| 0);
        let find = |label: &str| a.splits.iter().find(|s| s.label == label).unwrap_or_else(|| panic!("{label}"));
        let streaming = find("during streaming");
        assert!(streaming.same_hour);
        assert_eq!(streaming.loss.verdict, Verdict::Higher, "{:?}", streaming.loss);
        assert!((streaming.loss.ratio - 2.0).abs() < 0.4, "{:?}", streaming.loss);
        assert_eq!(find("during gaming").loss.verdict, Verdict::NoClearDifference);
        // Without a DNS log there is no such line at all (not "too little data" in every report).
        let unwatched: Vec<Minute> = ms.iter().map(|m| Minute { ctx: Context::default(), ..m.clone() }).collect();
        assert!(analyse(&unwatched, |_| 0).splits.iter().all(|s| !s.label.contains("streaming")));
    }

    #[test]
    fn the_next_best_window_is_in_the_coming_day() {
        // Two weeks where every hour is fine except the evenings, and 02:00-05:00 is the quietest.
        let start = 1_795_392_000_000; // Monday 00:00 UTC
        let ms: Vec<Minute> = (0..14 * 1440)
            .map(|i| {
                let ts = start + i as i64 * MINUTE_MS;
                let h = hour_of_week(ts, 0) % 24;
                let lost = match h {
                    19..=22 => 5,
                    2..=4 => 0,
                    _ => u32::from(i % 7 == 0) * 2,
                };
                Minute { ts, sent: 60, lost, median_ms: Some(30.0), p95_ms: None, down: false, ctx: Context::default() }
            })
            .collect();
        let cells = time_of_week(&ms, |_| 0);
        // At Wednesday 10:00 the next 02:00 is tomorrow's.
        let w = next_best(&cells, 2 * 24 + 10, 3).unwrap();
        assert_eq!((w.start_hour, w.end_hour, w.tomorrow), (2, 5, true));
        assert_eq!(w.label(), "02:00-05:00 tomorrow");
        // At Wednesday 00:30 it is today's.
        let w = next_best(&cells, 2 * 24, 3).unwrap();
        assert_eq!((w.start_hour, w.tomorrow), (2, false));
        // Unmeasured hours give no advice.
        assert!(next_best(&time_of_week(&ms[..600], |_| 0), 10, 3).is_none());
    }

    #[test]
    fn ranks_share_ties() {
        assert_eq!(ranks(&[10.0, 20.0, 20.0, 5.0]), [2.0, 3.5, 3.5, 1.0]);
    }

    #[test]
    fn best_times_avoid_the_bad_evenings() {
        // Every evening 19-23 local is bad; everything else fine except a little noise at 03:00.
        let start = 1_795_392_000_000; // Monday 00:00 UTC
        let ms: Vec<Minute> = (0..14 * 1440)
            .map(|i| {
                let ts = start + i as i64 * MINUTE_MS;
                let h = hour_of_week(ts, 0) % 24;
                let lost = if (19..23).contains(&h) {
                    6
                } else if h == 3 && i % 7 == 0 {
                    2
                } else {
                    0
                };
                Minute { ts, sent: 60, lost, median_ms: Some(30.0), p95_ms: None, down: false, ctx: Context::default() }
            })
            .collect();
        let week = time_of_week(&ms, |_| 0);
        assert!(week.iter().all(|c| c.minutes == 120));
        let (best, worst) = best_and_worst(&week, 3, 3);
        assert_eq!(best.len(), 3);
        for w in &best {
            assert_eq!(w.bad_share, 0.0, "{}", window_label(w));
            assert!((0..3).all(|k| !(19..23).contains(&((w.start + k) % 24))));
        }
        for w in &worst {
            assert_eq!(w.bad_share, 1.0, "{}", window_label(w));
        }
        assert_eq!(window_label(&Window { start: 19, hours: 3, bad_share: 0.0, minutes: 0 }), "Mon 19:00-22:00");
        assert_eq!(window_label(&Window { start: 166, hours: 3, bad_share: 0.0, minutes: 0 }), "Sun 22:00-Mon 01:00");
        assert_eq!(window_label(&Window { start: 21, hours: 3, bad_share: 0.0, minutes: 0 }), "Mon 21:00-24:00");
    }
}
