//! A report as one self-contained HTML file (inline CSS and SVG, nothing fetched) or as Markdown
//! for a support chat. Both say the same things in the same order; HTML adds the figures.

use std::fmt::Write;

use super::Report;
use super::correlate::{Comparison, Correlation, Split, Verdict, window_label};
use super::plot::{self, PlotError};
use crate::calendar;
use crate::sample::{EventKind, WallMs};

fn offset_label(offset_s: i64) -> String {
    let sign = if offset_s < 0 { '-' } else { '+' };
    format!("UTC{sign}{:02}:{:02}", offset_s.abs() / 3600, offset_s.abs() % 3600 / 60)
}

fn pct(x: Option<f64>) -> String {
    x.map_or(
        "-".into(),
        |x| if x < 0.001 && x > 0.0 { format!("{:.2}%", x * 100.0) } else { format!("{:.1}%", x * 100.0) },
    )
}

fn ms(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{x:.0} ms"))
}

/// HTML-escape text (also for the dashboard).
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// "3.1x higher (95% interval 2.4-4.0x)" and friends, for one measure of a split.
fn effect_words(c: &Comparison) -> String {
    let interval = |c: &Comparison| {
        let hi = if c.ci.1.is_infinite() { "inf".to_string() } else { format!("{:.1}", c.ci.1) };
        format!("95% interval {:.1}-{hi}x", c.ci.0)
    };
    match c.verdict {
        Verdict::TooLittleData => "too little data to tell".into(),
        // Nothing outside to compare with: an interval of "inf-inf" says nothing more.
        Verdict::Higher if c.ratio.is_infinite() => "only seen then".into(),
        Verdict::Higher => format!("{:.1}x higher ({})", c.ratio, interval(c)),
        Verdict::Lower if c.ratio == 0.0 => format!("none seen then ({})", interval(c)),
        Verdict::Lower => format!("{:.1}x lower ({})", 1.0 / c.ratio, interval(c)),
        Verdict::NoClearDifference => format!("no clear difference ({:.1}x, {})", c.ratio, interval(c)),
    }
}

/// The sentence a support agent reads: "Packet loss was 3.1x higher (...) during rain over
/// 1 mm/h than when dry (n = 840 minutes in 14 separate hours vs 9,000 minutes)."
pub fn split_sentence(s: &Split) -> String {
    format!(
        "{}: packet loss {} ({} vs {}), latency {}, outage time {} (n = {} minutes in {} separate hours, vs {} minutes {}{}).",
        s.label,
        effect_words(&s.loss),
        pct(Some(s.loss.inside).filter(|x| x.is_finite())),
        pct(Some(s.loss.outside).filter(|x| x.is_finite())),
        effect_words(&s.latency),
        effect_words(&s.down),
        s.minutes_in,
        s.hours_in,
        s.minutes_out,
        s.versus,
        if s.same_hour { "; ratios compare the same hours of the day" } else { "" }
    )
}

fn correlation_words(c: &Correlation) -> String {
    if c.rho.is_nan() || c.ci.0.is_nan() {
        return format!("{}: too little data (n = {})", c.label, c.n);
    }
    let strength = match c.rho.abs() {
        r if r < 0.1 => "negligible",
        r if r < 0.3 => "weak",
        r if r < 0.5 => "moderate",
        _ => "strong",
    };
    let sure = if c.ci.0 > 0.0 || c.ci.1 < 0.0 { "" } else { ", could be none" };
    format!(
        "{}: Spearman rho {:+.2} (95% interval {:+.2} to {:+.2}; {strength}{sure}; n = {} minutes in {} hours)",
        c.label, c.rho, c.ci.0, c.ci.1, c.n, c.hours
    )
}

fn headline(r: &Report) -> String {
    let s = &r.summary;
    let days = s.period_minutes as f64 / 1440.0;
    let mut t = format!(
        "Over {days:.1} days ({} of the time measured), the internet was down {} time{} for {} in total",
        pct(Some(s.measured_ms as f64 / (s.period_minutes.max(1) * 60_000) as f64)),
        s.wan_outages,
        if s.wan_outages == 1 { "" } else { "s" },
        calendar::format_span(s.downtime_ms)
    );
    if s.wan_outages > 0 {
        let _ = write!(t, " (longest {})", calendar::format_span(s.longest_ms));
    }
    let _ = write!(
        t,
        ". Outside outages {} of packets were lost and the median latency was {} (p95 {}).",
        pct(s.loss),
        ms(s.median_ms),
        ms(s.p95_ms)
    );
    if let Some(d) = s.down_median_mbps {
        let _ = write!(t, " Speed tests: median {d:.0} Mbit/s down");
        if let Some(u) = s.up_median_mbps {
            let _ = write!(t, ", {u:.0} Mbit/s up");
        }
        if let Some(p) = r.plan.down_mbps {
            let _ = write!(
                t,
                " against a plan of {p:.0} Mbit/s; {} of {} tests got less than half",
                s.below_half_plan, s.speed_tests
            );
        }
        t.push('.');
    }
    t
}

/// One outage row's context: what the gateway and the weather were doing, and the router's log.
fn outage_context(r: &Report, start: WallMs, end: WallMs) -> (String, String, String) {
    let c = r.data.context_at(start);
    let mut gw = Vec::new();
    if let Some(c) = c {
        if let Some(b) = &c.band {
            gw.push(format!("band {b}"));
        }
        if let Some(s) = c.sinr_db {
            gw.push(format!("SINR {s:.0} dB"));
        }
        if let Some(p) = c.rsrp_dbm {
            gw.push(format!("RSRP {p:.0} dBm"));
        }
    }
    let near = |ts: WallMs| ts >= start - 10 * 60_000 && ts <= end + 5 * 60_000;
    for e in r.data.events.iter().filter(|e| e.kind.is_gateway() && near(e.ts)) {
        gw.push(format!("{} {}", calendar::format_local_clock(e.ts, false), e.detail));
    }
    let weather = c.map_or(String::new(), |c| {
        let mut w = Vec::new();
        if let Some(p) = c.precip_mm_h {
            w.push(if p > 0.0 { format!("rain {p:.1} mm/h") } else { "dry".into() });
        }
        if let Some(v) = c.wind_kmh {
            w.push(format!("wind {v:.0} km/h"));
        }
        if let Some(t) = c.temp_c {
            w.push(format!("{t:.0} °C"));
        }
        w.join(", ")
    });
    let log: Vec<String> = r
        .data
        .router
        .iter()
        .filter(|l| near(l.0))
        .take(4)
        .map(|l| format!("{} {}", calendar::format_local_clock(l.0, false), l.1))
        .collect();
    (gw.join("; "), weather, log.join("; "))
}

struct Table {
    head: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn html(&self, out: &mut String) {
        out.push_str("<table><tr>");
        for h in &self.head {
            let _ = write!(out, "<th>{}</th>", esc(h));
        }
        out.push_str("</tr>\n");
        for r in &self.rows {
            out.push_str("<tr>");
            for c in r {
                let _ = write!(out, "<td>{}</td>", esc(c));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    fn md(&self, out: &mut String) {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let _ = writeln!(out, "| {} |", self.head.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(self.head.len()));
        for r in &self.rows {
            let _ = writeln!(out, "| {} |", r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | "));
        }
        out.push('\n');
    }
}

/// The report's content as blocks both formats render.
enum Block {
    Heading(String),
    Para(String),
    Figure(String),
    Table(Table),
}

/// `figures`: draw the plots (HTML) or leave them out (Markdown).
fn blocks(r: &Report, figures: bool, progress: &dyn Fn(&str)) -> Result<Vec<Block>, PlotError> {
    let d = &r.data;
    let s = &r.summary;
    let a = &r.analysis;
    let mut b = vec![Block::Para(headline(r))];
    b.push(Block::Table(Table {
        head: vec!["measure", "value"],
        rows: vec![
            vec!["uptime".into(), pct(s.uptime)],
            vec![
                "internet outages".into(),
                format!(
                    "{} (total {}, longest {})",
                    s.wan_outages,
                    calendar::format_span(s.downtime_ms),
                    calendar::format_span(s.longest_ms)
                ),
            ],
            vec!["home network (gateway) outages".into(), s.lan_outages.to_string()],
            vec!["median latency".into(), ms(s.median_ms)],
            vec!["p95 latency".into(), ms(s.p95_ms)],
            vec!["packet loss (outside outages)".into(), pct(s.loss)],
            vec![
                "speed tests".into(),
                match (s.speed_tests, s.down_median_mbps) {
                    (0, _) | (_, None) => "none in this period".into(),
                    (n, Some(down)) => format!(
                        "{n}: median {down:.0} down / {} up Mbit/s{}",
                        s.up_median_mbps.map_or("-".into(), |u| format!("{u:.0}")),
                        r.plan.down_mbps.map_or(String::new(), |p| format!(
                            " (plan {p:.0} down{})",
                            r.plan.up_mbps.map_or(String::new(), |u| format!(" / {u:.0} up"))
                        ))
                    ),
                },
            ],
            vec!["anomalies / predictions".into(), format!("{} / {}", s.anomalies, s.predictions)],
            vec![
                "measured".into(),
                format!("{} of {} minutes; anchors: {}", s.measured_minutes, s.period_minutes, d.anchors.join(", ")),
            ],
            vec![
                "not measured".into(),
                if s.blind_spots == 0 {
                    "no gaps recorded".into()
                } else {
                    format!(
                        "{} in {} stretch{} (wanwatch not running or stalled); uptime counts measured time only",
                        calendar::format_span(s.blind_ms),
                        s.blind_spots,
                        if s.blind_spots == 1 { "" } else { "es" }
                    )
                },
            ],
        ],
    }));

    b.push(Block::Heading("Timeline".into()));
    let label = |t: WallMs| {
        if r.summary.period_minutes > 2 * 1440 {
            calendar::format_local_day_hour(t)
        } else {
            calendar::format_local_clock(t, false)
        }
    };
    if figures {
        let shifts = d.shift_onsets();
        b.push(Block::Figure(plot::timeline(&d.minutes, &d.outages, &shifts, d.since, d.until, &label)?));
    }
    progress("timeline");

    b.push(Block::Heading(format!("Outages ({})", d.outages.len())));
    if d.outages.is_empty() {
        b.push(Block::Para("No outages in this period.".into()));
    } else {
        let rows = d
            .outages
            .iter()
            .map(|o| {
                let end = o.end.unwrap_or(d.until);
                let (gw, weather, log) = outage_context(r, o.start, end);
                vec![
                    calendar::format_local_minute(o.start),
                    o.end.map_or("ongoing".into(), calendar::format_local_minute),
                    calendar::format_span(o.duration_ms.unwrap_or(end - o.start)),
                    o.kind.describe().into(),
                    gw,
                    weather,
                    log,
                ]
            })
            .collect();
        b.push(Block::Table(Table {
            head: vec!["start", "end", "duration", "kind", "gateway", "weather", "router log"],
            rows,
        }));
    }

    b.push(Block::Heading("When it goes wrong: the week by hour".into()));
    let loss_max = a.week.iter().filter_map(|c| c.loss()).fold(0.01f64, f64::max);
    if figures {
        let title = format!("Packet loss by hour of week (red = {})", pct(Some(loss_max)));
        b.push(Block::Figure(plot::heatmap(&a.week, &title, |c| c.loss(), loss_max)?));
        let title = "Share of bad minutes (outage, loss > 2% or latency > 2x typical); red = 25%";
        b.push(Block::Figure(plot::heatmap(&a.week, title, |c| c.bad_share(), 0.25)?));
    }
    progress("heatmaps");
    let windows = |ws: &[super::correlate::Window]| {
        ws.iter()
            .map(|w| format!("{} ({} bad minutes)", window_label(w), pct(Some(w.bad_share))))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if a.best.is_empty() {
        b.push(Block::Para("Best times for high-bandwidth activities: not enough data yet (each hour of the week needs 20 measured minutes).".into()));
    } else {
        b.push(Block::Para(format!(
            "Best times for high-bandwidth activities (video calls, big downloads, gaming), local time: {}.",
            windows(&a.best)
        )));
        b.push(Block::Para(format!("Worst times: {}.", windows(&a.worst))));
    }

    b.push(Block::Heading("What goes with it".into()));
    if figures {
        b.push(Block::Figure(plot::effects(&a.splits)?));
    }
    for sp in &a.splits {
        b.push(Block::Para(split_sentence(sp)));
    }
    for c in &a.correlations {
        b.push(Block::Para(correlation_words(c)));
    }
    if figures {
        let sinr = plot::per_ten_minutes(&d.minutes, |m| m.ctx.sinr_db);
        if !sinr.is_empty() {
            b.push(Block::Figure(plot::scatter(
                &sinr,
                "Gateway SINR against packet loss, per 10 minutes",
                "SINR (dB)",
                "loss (%)",
            )?));
        }
        let rain = plot::per_ten_minutes(&d.minutes, |m| m.ctx.precip_mm_h);
        if !rain.is_empty() {
            b.push(Block::Figure(plot::scatter(
                &rain,
                "Rain against packet loss, per 10 minutes",
                "rain (mm/h)",
                "loss (%)",
            )?));
        }
    }
    if !a.bands.is_empty() {
        let rows = a
            .bands
            .iter()
            .map(|x| {
                vec![x.band.clone(), x.minutes.to_string(), pct(x.loss), ms(x.latency_ms), pct(Some(x.down_share))]
            })
            .collect();
        b.push(Block::Table(Table { head: vec!["gateway band", "minutes", "loss", "latency", "outage time"], rows }));
    }
    progress("correlations");

    let shifts: Vec<_> = d.events.iter().filter(|e| e.kind == EventKind::LevelShift).collect();
    b.push(Block::Heading(format!("Level shifts of the baseline latency ({})", shifts.len())));
    if shifts.is_empty() {
        b.push(Block::Para("The baseline latency of every path held its level in this period.".into()));
    } else {
        b.push(Block::Para(
            "A level shift is a lasting change of a path's usual latency: a new route, a new cell or a new \
             peering. Each one is listed; the time is the estimated onset."
                .into(),
        ));
        let rows = shifts.iter().map(|e| vec![calendar::format_local_minute(e.ts), e.detail.clone()]).collect();
        b.push(Block::Table(Table { head: vec!["onset", "what changed"], rows }));
    }
    b.push(Block::Heading("How good were the hour-ahead warnings?".into()));
    if d.outlook.is_empty() {
        b.push(Block::Para("No hour-ahead predictions were stored in this period.".into()));
    } else {
        let n = d.outlook.len() as f64;
        let base = d.outlook.iter().filter(|o| o.1).count() as f64 / n;
        let brier = d.outlook.iter().map(|(p, y)| (p - *y as u8 as f64).powi(2)).sum::<f64>() / n;
        b.push(Block::Para(format!(
            "Every minute the agent says how likely trouble (a degradation or an outage) is within the next hour. \
             Reliability: of the minutes it said about p, trouble followed in about p of them when the \
             columns agree. {} predictions, trouble followed {:.1}% of them, Brier score {:.3} (0 is perfect).",
            d.outlook.len(),
            base * 100.0,
            brier
        )));
        let bins = crate::detect::outlook::reliability(d.outlook.iter().copied());
        if figures {
            b.push(Block::Figure(plot::reliability(&bins)?));
        }
        let rows = bins
            .iter()
            .enumerate()
            .filter(|(_, b)| b.2 > 0)
            .map(|(i, b)| {
                vec![
                    format!("{}-{}%", i * 10, i * 10 + 10),
                    format!("{:.0}%", b.0 / b.2 as f64 * 100.0),
                    format!("{:.0}%", b.1 as f64 / b.2 as f64 * 100.0),
                    b.2.to_string(),
                ]
            })
            .collect();
        b.push(Block::Table(Table { head: vec!["predicted", "mean predicted", "came true", "minutes"], rows }));
    }
    let flagged: Vec<_> = d.events.iter().filter(|e| e.kind.is_detection()).collect();
    b.push(Block::Heading(format!("Degradations, level shifts, anomalies and predictions ({})", flagged.len())));
    if flagged.is_empty() {
        b.push(Block::Para("The detectors flagged nothing in this period.".into()));
    } else {
        let rows = flagged
            .iter()
            .map(|e| vec![calendar::format_local_minute(e.ts), e.kind.to_string(), e.detail.clone()])
            .collect();
        b.push(Block::Table(Table { head: vec!["time", "kind", "explanation"], rows }));
    }
    if !d.speed.is_empty() {
        b.push(Block::Heading(format!("Speed tests ({})", d.speed.len())));
        let f = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.1}"));
        let rows = d
            .speed
            .iter()
            .map(|t| vec![calendar::format_local_minute(t.ts), f(t.down_mbps), f(t.up_mbps), f(t.bufferbloat_ms)])
            .collect();
        b.push(Block::Table(Table { head: vec!["time", "down Mbit/s", "up Mbit/s", "latency under load +ms"], rows }));
    }
    b.push(Block::Heading("How this was measured".into()));
    b.push(Block::Para(format!(
        "A Raspberry Pi on the home network pings the gateway and the internet anchors ({}) every second; \
         an internet outage is every anchor unanswered while the gateway answers. Latency and loss are per-minute \
         figures. Effects compare minutes with and without a condition; their 95% intervals come from resampling \
         whole clock hours (a bad hour is one piece of evidence, not sixty), and fewer than {} separate hours \
         is called too little data. Times are local ({}).",
        d.anchors.join(", "),
        super::correlate::MIN_HOURS,
        offset_label(r.offset_s)
    )));
    Ok(b)
}

fn title(r: &Report) -> String {
    format!(
        "Internet connection report, {} to {}",
        calendar::format_local_minute(r.data.since),
        calendar::format_local_minute(r.data.until)
    )
}

const CSS: &str = "body{font-family:sans-serif;max-width:1000px;margin:1em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;\
font-size:14px;vertical-align:top}th{background:#f2f2f2}h1{font-size:24px}h2{font-size:19px;margin-top:1.6em;\
border-bottom:1px solid #ddd}figure{margin:.5em 0}svg{max-width:100%;height:auto}p{line-height:1.4}";

/// One HTML file with everything inline.
pub fn html(r: &Report, progress: &dyn Fn(&str)) -> Result<String, PlotError> {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{CSS}</style></head><body>\n<h1>{t}</h1>\n",
        t = esc(&title(r))
    );
    for b in blocks(r, true, progress)? {
        match b {
            Block::Heading(h) => {
                let _ = writeln!(out, "<h2>{}</h2>", esc(&h));
            }
            Block::Para(p) => {
                let _ = writeln!(out, "<p>{}</p>", esc(&p));
            }
            Block::Figure(svg) => {
                let _ = writeln!(out, "<figure>{svg}</figure>");
            }
            Block::Table(t) => t.html(&mut out),
        }
    }
    let _ = writeln!(out, "<p><small>wanwatch {}</small></p></body></html>", env!("CARGO_PKG_VERSION"));
    Ok(out)
}

/// Markdown for pasting into a support chat: the same text and tables, no figures.
pub fn markdown(r: &Report, progress: &dyn Fn(&str)) -> Result<String, PlotError> {
    let mut out = format!("# {}\n\n", title(r));
    for b in blocks(r, false, progress)? {
        match b {
            Block::Heading(h) => {
                let _ = writeln!(out, "## {h}\n");
            }
            Block::Para(p) => {
                let _ = writeln!(out, "{p}\n");
            }
            Block::Figure(_) => {}
            Block::Table(t) => t.md(&mut out),
        }
    }
    Ok(out)
}
