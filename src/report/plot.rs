//! The report's figures as inline SVG strings, drawn with plotters' SVG backend: text stays
//! text (the browser picks the font), so no font files and no network are needed to view them.

use plotters::coord::Shift;
use plotters::coord::types::{RangedCoordf64, RangedCoordi64};
use plotters::prelude::*;

use super::correlate::{Cell, Split, Verdict};
use super::data::{Minute, Outage};
use crate::calendar::MINUTE_MS;
use crate::sample::{OutageKind, WallMs};

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// plotters failed to draw (into a String, so in practice never; its error types are generic
/// over the backend, hence the text).
#[derive(Debug, thiserror::Error)]
#[error("drawing a plot: {0}")]
pub struct PlotError(String);

fn err<E: std::fmt::Debug>(e: E) -> PlotError {
    PlotError(format!("{e:?}"))
}

const OUTAGE: RGBColor = RGBColor(220, 50, 47);
const LINE: RGBColor = RGBColor(38, 110, 190);
const SHIFT: RGBColor = RGBColor(108, 64, 170);
const FONT: &str = "sans-serif";

/// One point of the timeline: a bucket of minutes.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub ts: WallMs,
    pub latency_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub loss: Option<f64>,
}

/// Fold minutes into at most `max` buckets of whole minutes (means of medians, worst p95,
/// pooled loss), so a month still draws as ~700 points.
pub fn buckets(minutes: &[Minute], since: WallMs, until: WallMs, max: usize) -> (i64, Vec<Bucket>) {
    let span_min = ((until - since) / MINUTE_MS).max(1);
    let per = (span_min as f64 / max as f64).ceil().max(1.0) as i64;
    let width = per * MINUTE_MS;
    let mut out: Vec<Bucket> = Vec::new();
    let mut acc = (0.0, 0u32, None::<f64>, 0u64, 0u64);
    let mut current = None;
    let mut flush = |ts: Option<WallMs>, acc: &mut (f64, u32, Option<f64>, u64, u64)| {
        if let Some(ts) = ts {
            out.push(Bucket {
                ts,
                latency_ms: (acc.1 > 0).then(|| acc.0 / acc.1 as f64),
                p95_ms: acc.2,
                loss: (acc.3 > 0).then(|| acc.4 as f64 / acc.3 as f64),
            });
        }
        *acc = (0.0, 0, None, 0, 0);
    };
    for m in minutes.iter().filter(|m| m.ts >= since && m.ts < until) {
        let b = since + (m.ts - since) / width * width;
        if current != Some(b) {
            flush(current, &mut acc);
            current = Some(b);
        }
        if !m.down {
            if let Some(l) = m.median_ms {
                acc.0 += l;
                acc.1 += 1;
            }
            acc.2 = match (acc.2, m.p95_ms) {
                (a, None) => a,
                (None, b) => b,
                (Some(a), Some(b)) => Some(a.max(b)),
            };
        }
        acc.3 += m.sent as u64;
        acc.4 += m.lost as u64;
    }
    flush(current, &mut acc);
    (width, out)
}

/// Runs of consecutive buckets with a value, so a gap in the data is a gap in the line.
fn runs(buckets: &[Bucket], width: i64, value: impl Fn(&Bucket) -> Option<f64>) -> Vec<Vec<(WallMs, f64)>> {
    let mut runs: Vec<Vec<(WallMs, f64)>> = Vec::new();
    let mut last = None;
    for b in buckets {
        let Some(v) = value(b) else {
            last = None;
            continue;
        };
        if last.is_none_or(|t: WallMs| b.ts - t > width) {
            runs.push(Vec::new());
        }
        runs.last_mut().expect("pushed").push((b.ts + width / 2, v));
        last = Some(b.ts);
    }
    runs
}

/// Latency (median and p95) above, loss below, WAN outages shaded red in both, level-shift
/// onsets as purple lines across the latency panel.
pub fn timeline(
    minutes: &[Minute],
    outages: &[Outage],
    shifts: &[WallMs],
    since: WallMs,
    until: WallMs,
    label: &dyn Fn(WallMs) -> String,
) -> Result<String, PlotError> {
    let (width, bs) = buckets(minutes, since, until, 700);
    let mut svg = String::new();
    {
        let root: Area = SVGBackend::with_string(&mut svg, (960, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (top, bottom) = root.split_vertically(260);
        let lat_max = bs.iter().filter_map(|b| b.p95_ms.or(b.latency_ms)).fold(10.0f64, f64::max) * 1.1;
        let loss_max = bs.iter().filter_map(|b| b.loss).fold(0.02f64, f64::max).min(1.0) * 100.0 * 1.1;
        let shades: Vec<(WallMs, WallMs)> = outages
            .iter()
            .filter(|o| o.kind == OutageKind::Wan)
            .map(|o| (o.start.max(since), o.end.unwrap_or(until).min(until).max(o.start + MINUTE_MS)))
            .collect();
        let caption = "Latency to the internet (ms): median, p95 faint; outages red; level shifts purple";
        let mut chart = panel(&top, caption, "ms", lat_max, (since, until), label, &shades)?;
        chart
            .draw_series(
                shifts
                    .iter()
                    .filter(|t| (since..until).contains(*t))
                    .map(|&t| PathElement::new([(t, 0.0), (t, lat_max)], SHIFT.stroke_width(2))),
            )
            .map_err(err)?;
        for run in runs(&bs, width, |b| b.p95_ms) {
            chart.draw_series(LineSeries::new(run, LINE.mix(0.35).stroke_width(1))).map_err(err)?;
        }
        for run in runs(&bs, width, |b| b.latency_ms) {
            chart.draw_series(LineSeries::new(run, LINE.stroke_width(2))).map_err(err)?;
        }
        let mut chart = panel(&bottom, "Packet loss (%)", "%", loss_max, (since, until), label, &shades)?;
        chart
            .draw_series(bs.iter().filter_map(|b| {
                let l = b.loss? * 100.0;
                (l > 0.0).then(|| {
                    Rectangle::new([(b.ts, 0.0), (b.ts + width, l.min(loss_max))], RGBColor(230, 140, 30).filled())
                })
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

type TimeChart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordi64, RangedCoordf64>>;

/// One panel of the timeline: time across, 0..`y_max` up, outages shaded.
fn panel<'a, 'b>(
    area: &'a Area<'b>,
    caption: &str,
    y_desc: &str,
    y_max: f64,
    (since, until): (WallMs, WallMs),
    label: &dyn Fn(WallMs) -> String,
    shades: &[(WallMs, WallMs)],
) -> Result<TimeChart<'a, 'b>, PlotError> {
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .caption(caption, (FONT, 16))
        .x_label_area_size(22)
        .y_label_area_size(50)
        .build_cartesian_2d(since..until, 0.0..y_max)
        .map_err(err)?;
    chart.configure_mesh().x_labels(8).x_label_formatter(&|t| label(*t)).y_desc(y_desc).draw().map_err(err)?;
    chart
        .draw_series(shades.iter().map(|&(s, e)| Rectangle::new([(s, 0.0), (e, y_max)], OUTAGE.mix(0.35).filled())))
        .map_err(err)?;
    Ok(chart)
}

/// Green (good) through yellow to red (bad) for 0..=1.
fn heat(x: f64) -> RGBColor {
    let x = x.clamp(0.0, 1.0);
    let (r, g) = if x < 0.5 { (2.0 * x, 1.0) } else { (1.0, 2.0 * (1.0 - x)) };
    RGBColor((60.0 + 180.0 * r) as u8, (70.0 + 150.0 * g) as u8, 70)
}

/// The week as a 7x24 grid, one cell per local hour, coloured by `value` scaled to `max`;
/// grey where nothing was measured.
pub fn heatmap(
    cells: &[Cell],
    title: &str,
    value: impl Fn(&Cell) -> Option<f64>,
    max: f64,
) -> Result<String, PlotError> {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let mut svg = String::new();
    {
        let root: Area = SVGBackend::with_string(&mut svg, (960, 260)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .caption(title, (FONT, 16))
            .x_label_area_size(22)
            .y_label_area_size(40)
            .build_cartesian_2d((0i32..24).into_segmented(), (0i32..7).into_segmented())
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(24)
            .y_labels(7)
            .x_label_formatter(&|h| match h {
                SegmentValue::CenterOf(h) => format!("{h:02}"),
                _ => String::new(),
            })
            .y_label_formatter(&|d| match d {
                SegmentValue::CenterOf(d) if (0..7).contains(d) => DAYS[6 - *d as usize].to_string(),
                _ => String::new(),
            })
            .draw()
            .map_err(err)?;
        chart
            .draw_series(cells.iter().enumerate().map(|(i, c)| {
                let (day, hour) = ((i / 24) as i32, (i % 24) as i32);
                let row = 6 - day;
                let color = match value(c).filter(|_| c.minutes > 0) {
                    Some(v) => heat(v / max).filled(),
                    None => RGBColor(225, 225, 225).filled(),
                };
                Rectangle::new(
                    [
                        (SegmentValue::Exact(hour), SegmentValue::Exact(row)),
                        (SegmentValue::Exact(hour + 1), SegmentValue::Exact(row + 1)),
                    ],
                    color,
                )
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// (mean of `x`, pooled loss %) per 10 minutes outside outages, for a scatter: fewer, steadier
/// points than per minute (a month is 4,320 instead of 43,200 circles in the page).
pub fn per_ten_minutes(minutes: &[Minute], x: impl Fn(&Minute) -> Option<f64>) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut cur: Option<(i64, f64, u32, u64, u64)> = None;
    let mut flush = |c: Option<(i64, f64, u32, u64, u64)>| {
        if let Some((_, xs, n, sent, lost)) = c
            && n > 0
            && sent > 0
        {
            out.push((xs / n as f64, lost as f64 / sent as f64 * 100.0));
        }
    };
    for m in minutes.iter().filter(|m| !m.down) {
        let (Some(v), true) = (x(m), m.sent > 0) else { continue };
        let key = m.ts.div_euclid(10 * MINUTE_MS);
        if cur.is_none_or(|c| c.0 != key) {
            flush(cur.take());
            cur = Some((key, 0.0, 0, 0, 0));
        }
        let c = cur.as_mut().expect("set above");
        c.1 += v;
        c.2 += 1;
        c.3 += m.sent as u64;
        c.4 += m.lost as u64;
    }
    flush(cur);
    out
}

/// The reliability diagram: per bin of predicted probability, how often trouble followed (a
/// dot sized by its minutes) against the diagonal a calibrated forecast sits on.
pub fn reliability(bins: &[(f64, u64, u64)]) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root: Area = SVGBackend::with_string(&mut svg, (480, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .caption("Hour-ahead outlook: predicted vs what happened", (FONT, 15))
            .x_label_area_size(32)
            .y_label_area_size(44)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(err)?;
        chart.configure_mesh().x_desc("predicted probability").y_desc("share that came true").draw().map_err(err)?;
        chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3))).map_err(err)?;
        let most = bins.iter().map(|b| b.2).max().unwrap_or(1).max(1) as f64;
        chart
            .draw_series(bins.iter().filter(|b| b.2 > 0).map(|&(sum_p, k, n)| {
                let r = 3.0 + 9.0 * ((n as f64).ln_1p() / most.ln_1p());
                Circle::new((sum_p / n as f64, k as f64 / n as f64), r as i32, LINE.mix(0.7).filled())
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A scatter of one context value against loss, e.g. SINR against loss per minute.
pub fn scatter(points: &[(f64, f64)], title: &str, x_desc: &str, y_desc: &str) -> Result<String, PlotError> {
    let (mut x0, mut x1) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| (a.0.min(p.0), a.1.max(p.0)));
    if !(x0.is_finite() && x1.is_finite()) {
        (x0, x1) = (0.0, 1.0);
    }
    let pad = ((x1 - x0) * 0.05).max(0.5);
    let y1 = points.iter().map(|p| p.1).fold(1.0f64, f64::max) * 1.1;
    let mut svg = String::new();
    {
        let root: Area = SVGBackend::with_string(&mut svg, (480, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .caption(title, (FONT, 15))
            .x_label_area_size(32)
            .y_label_area_size(44)
            .build_cartesian_2d(x0 - pad..x1 + pad, 0.0..y1)
            .map_err(err)?;
        chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().map_err(err)?;
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 2, LINE.mix(0.35).filled()))).map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A forest plot: for each condition, how many times the loss is inside vs outside (point and
/// 95% interval, log scale), with the line at 1x = no difference.
pub fn effects(splits: &[Split]) -> Result<String, PlotError> {
    let shown: Vec<&Split> = splits.iter().filter(|s| s.loss.verdict != Verdict::TooLittleData).collect();
    let h = 60 + 34 * shown.len().max(1) as u32;
    let mut svg = String::new();
    {
        let root: Area = SVGBackend::with_string(&mut svg, (960, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let clamp = |x: f64| x.clamp(0.1, 20.0);
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .caption("Packet loss when ... vs otherwise (x times; bar = 95% interval)", (FONT, 16))
            .x_label_area_size(24)
            .y_label_area_size(300)
            .build_cartesian_2d((0.1f64..20.0).log_scale(), (0i32..shown.len().max(1) as i32).into_segmented())
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(shown.len().max(1))
            .x_label_formatter(&|x| format!("{x}x"))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => shown.get(*i as usize).map_or(String::new(), |s| s.label.clone()),
                _ => String::new(),
            })
            .draw()
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Exact(shown.len().max(1) as i32))],
                BLACK.stroke_width(1),
            )))
            .map_err(err)?;
        for (i, s) in shown.iter().enumerate() {
            let y = || SegmentValue::CenterOf(i as i32);
            let color = match s.loss.verdict {
                Verdict::Higher => OUTAGE,
                Verdict::Lower => RGBColor(40, 150, 70),
                _ => RGBColor(120, 120, 120),
            };
            let (lo, hi) = (clamp(s.loss.ci.0), clamp(s.loss.ci.1));
            chart
                .draw_series(std::iter::once(PathElement::new(vec![(lo, y()), (hi, y())], color.stroke_width(3))))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Circle::new((clamp(s.loss.ratio), y()), 5, color.filled())))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::super::data::Context;
    use super::*;

    fn minute(ts: WallMs, lost: u32) -> Minute {
        Minute { ts, sent: 60, lost, median_ms: Some(25.0), p95_ms: Some(40.0), down: false, ctx: Context::default() }
    }

    #[test]
    fn buckets_pool_loss_and_keep_gaps() {
        let ms: Vec<Minute> = (0..10).filter(|i| *i != 4).map(|i| minute(i * MINUTE_MS, i as u32)).collect();
        let (w, bs) = buckets(&ms, 0, 10 * MINUTE_MS, 5);
        assert_eq!(w, 2 * MINUTE_MS);
        assert_eq!(bs.len(), 5);
        assert_eq!(bs[0].loss, Some(1.0 / 120.0));
        assert_eq!(bs[2].loss, Some(5.0 / 60.0)); // minute 4 missing: pooled over what was sent
        let r = runs(&bs, w, |b| b.latency_ms);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn timeline_draws_outages_lines_and_text() {
        let ms: Vec<Minute> = (0..600).map(|i| minute(i * MINUTE_MS, (i % 50 == 0) as u32 * 6)).collect();
        let o = Outage {
            id: 1,
            kind: OutageKind::Wan,
            start: 100 * MINUTE_MS,
            end: Some(130 * MINUTE_MS),
            duration_ms: None,
        };
        let shift = 300 * MINUTE_MS;
        let svg = timeline(&ms, &[o], &[shift], 0, 600 * MINUTE_MS, &|t| format!("t{}", t / MINUTE_MS)).unwrap();
        std::fs::write(std::env::temp_dir().join("wanwatch-timeline-test.svg"), &svg).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.contains("Packet loss"), "captions are text");
        let labels = svg.lines().filter(|l| l.starts_with('t') && l[1..].parse::<i64>().is_ok()).count();
        assert!(labels >= 6, "x labels use the formatter (both panels): {labels}");
        assert!(svg.contains("<polyline"), "latency drawn as a line");
        assert!(svg.contains("fill=\"#DC322F\""), "outage shaded");
        assert_eq!(svg.matches("stroke=\"#6C40AA\"").count(), 1, "one level-shift line");
    }

    #[test]
    fn reliability_dots_sit_where_the_bins_say() {
        let svg = reliability(&[(0.5, 1, 10), (0.0, 0, 0), (8.5, 9, 10)]).unwrap();
        assert_eq!(svg.matches("<circle").count(), 2, "empty bins are not drawn");
        let a = reliability(&[(0.5, 1, 10)]).unwrap();
        let b = reliability(&[(0.5, 9, 10)]).unwrap();
        assert_ne!(a, b, "what came true moves the dot");
    }
}
