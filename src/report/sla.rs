//! The monthly SLA report: availability over measured time only, outages by kind and by where
//! they broke, hours below the contracted speed, evenings against the other hours, set against
//! the plan in `[report]`. The agent writes last month's next to the database on the 1st
//! (`wanwatch-month-2026-11.html`); the dashboard links it and renders any month at
//! `/sla.html?month=2026-11`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::render::esc;
use super::{Plan, Summary, data::Data, summarise};
use crate::calendar::{self, HOUR_MS, MINUTE_MS};
use crate::input::BadInput;
use crate::sample::{OutageKind, WallMs};
use crate::store::{Store, StoreError};

/// Evening, local time: when a household streams and the cell is busiest.
pub const EVENING: std::ops::Range<i64> = 19..23;

/// One month's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Sla {
    /// "2026-11".
    pub month: String,
    pub since: WallMs,
    pub until: WallMs,
    pub plan: Plan,
    pub summary: Summary,
    /// Per kind: outages and their time.
    pub by_kind: Vec<(OutageKind, usize, i64)>,
    /// Internet outages by where they broke ("last answer at hop 2 (10.0.1.1)"), count and time.
    pub by_cause: Vec<(String, usize, i64)>,
    /// Hours with a speed test, and those whose test fell below the plan / half of it.
    pub tested_hours: usize,
    pub hours_below_plan: usize,
    pub hours_below_half: usize,
    /// (evening, other hours): measured minutes, minutes in internet outages, loss outside them.
    pub evening: Part,
    pub other: Part,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Part {
    pub measured_minutes: usize,
    pub down_minutes: usize,
    pub sent: u64,
    pub lost: u64,
}

impl Part {
    pub fn availability(&self) -> Option<f64> {
        (self.measured_minutes > 0).then(|| 1.0 - self.down_minutes as f64 / self.measured_minutes as f64)
    }

    pub fn loss(&self) -> Option<f64> {
        (self.sent > 0).then(|| self.lost as f64 / self.sent as f64)
    }
}

/// "2026-11" -> its first and the next month's first, local midnight.
pub fn month_range(month: &str) -> Result<(WallMs, WallMs), BadInput> {
    let bad = || BadInput::new(month, "is not a month like 2026-11");
    let (y, m) = month.split_once('-').ok_or_else(bad)?;
    let (y, m): (i32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(1..=12).contains(&m) || !(1970..=9999).contains(&y) {
        return Err(bad());
    }
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let first = |y: i32, m: u32| -> Result<WallMs, BadInput> {
        let utc = calendar::parse_time(&format!("{y:04}-{m:02}-01"), 0)?;
        Ok(utc - calendar::local_offset_s(utc) * 1000)
    };
    Ok((first(y, m)?, first(ny, nm)?))
}

/// The last complete month before `now`, local time: "2026-11".
pub fn last_month(now: WallMs) -> String {
    let today = calendar::format_local_date(now);
    let (y, m) = (today[..4].parse::<i32>().unwrap_or(1970), today[5..7].parse::<u32>().unwrap_or(1));
    let (y, m) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
    format!("{y:04}-{m:02}")
}

/// Read and sum up `month`.
pub fn build(store: &Store, month: &str, plan: Plan) -> Result<Sla, SlaError> {
    let (since, until) = month_range(month).map_err(SlaError::Month)?;
    let d = Data::load(store, since, until, &|_| {})?;
    let summary = summarise(&d, &plan);
    let clip = |start: WallMs, end: Option<WallMs>| (end.unwrap_or(until).min(until) - start.max(since)).max(0);
    let by_kind = OutageKind::ALL
        .iter()
        .map(|&k| {
            let os: Vec<_> = d.outages.iter().filter(|o| o.kind == k).collect();
            (k, os.len(), os.iter().map(|o| clip(o.start, o.end)).sum())
        })
        .collect();
    let (_, located) = store.text_rows(
        "read where outages broke",
        "SELECT start_ts, coalesce(end_ts, ''), coalesce(last_good_ttl, ''), coalesce(last_good_hop, ''),
                located IS NOT NULL
         FROM outages WHERE kind = 'wan' AND start_ts < ?2 AND coalesce(end_ts, ?2) > ?1 ORDER BY start_ts",
        [since, until],
    )?;
    let mut causes: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    for r in &located {
        let cause = match (r[4].as_str(), r[2].as_str()) {
            ("0", _) => "not located (no path probe)".to_string(),
            (_, "") => "no hop answered (the Pi's link or the first router)".to_string(),
            (_, ttl) => format!("last answer at hop {ttl} ({})", r[3]),
        };
        let start: WallMs = r[0].parse().unwrap_or(since);
        let e = causes.entry(cause).or_default();
        e.0 += 1;
        e.1 += clip(start, r[1].parse().ok());
    }
    let mut by_cause: Vec<(String, usize, i64)> = causes.into_iter().map(|(c, (n, ms))| (c, n, ms)).collect();
    by_cause.sort_by_key(|c| std::cmp::Reverse(c.2));

    let hour = |ts: WallMs| ts.div_euclid(HOUR_MS);
    let tested: BTreeSet<i64> = d.speed.iter().filter(|t| t.down_mbps.is_some()).map(|t| hour(t.ts)).collect();
    let below = |share: f64| -> usize {
        let Some(p) = plan.down_mbps else { return 0 };
        d.speed
            .iter()
            .filter(|t| t.down_mbps.is_some_and(|x| x < p * share))
            .map(|t| hour(t.ts))
            .collect::<BTreeSet<_>>()
            .len()
    };
    let (mut evening, mut other) = (Part::default(), Part::default());
    for m in d.minutes.iter().filter(|m| m.sent > 0) {
        let local_hour = (m.ts / 1000 + calendar::local_offset_s(m.ts)).rem_euclid(86_400) / 3600;
        let part = if EVENING.contains(&local_hour) { &mut evening } else { &mut other };
        part.measured_minutes += 1;
        if m.down {
            part.down_minutes += 1;
        } else {
            part.sent += u64::from(m.sent);
            part.lost += u64::from(m.lost);
        }
    }
    Ok(Sla {
        month: month.to_string(),
        since,
        until,
        plan,
        summary,
        by_kind,
        by_cause,
        tested_hours: tested.len(),
        hours_below_plan: below(1.0),
        hours_below_half: below(0.5),
        evening,
        other,
    })
}

fn pct(x: Option<f64>, digits: usize) -> String {
    x.map_or("-".into(), |x| format!("{:.*}%", digits, x * 100.0))
}

/// The month as one self-contained HTML page.
pub fn html(s: &Sla) -> String {
    let mut h = String::new();
    let title = format!("wanwatch: service report for {}", s.month);
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;max-width:900px;margin:2em auto;padding:0 1em}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}\
         th{{background:#eee}}</style></head><body><h1>{t}</h1>\
         <p>{} to {} (local time). Availability counts measured time only: {} measured, {} not \
         measured (the agent not running or stalled, {} stretches).</p>",
        esc(&calendar::format_local_minute(s.since)),
        esc(&calendar::format_local_minute(s.until)),
        calendar::format_span(s.summary.measured_ms),
        calendar::format_span(s.summary.blind_ms),
        s.summary.blind_spots,
        t = esc(&title)
    );
    let _ = write!(
        h,
        "<h2>Availability</h2><p id=\"availability\">Internet availability <b>{}</b>: down {} times for {} \
         in total, the longest {}.</p>",
        pct(s.summary.uptime, 3),
        s.summary.wan_outages,
        calendar::format_span(s.summary.downtime_ms),
        calendar::format_span(s.summary.longest_ms),
    );
    h.push_str("<h2>Outages by kind</h2><table id=\"kinds\"><tr><th>kind</th><th>outages</th><th>time</th></tr>");
    for (k, n, ms) in &s.by_kind {
        let _ = write!(h, "<tr><td>{}</td><td>{n}</td><td>{}</td></tr>", esc(k.describe()), calendar::format_span(*ms));
    }
    h.push_str("</table><h2>Where the internet outages broke</h2>");
    if s.by_cause.is_empty() {
        h.push_str("<p>No internet outage this month.</p>");
    } else {
        h.push_str("<table id=\"causes\"><tr><th>where</th><th>outages</th><th>time</th></tr>");
        for (c, n, ms) in &s.by_cause {
            let _ = write!(h, "<tr><td>{}</td><td>{n}</td><td>{}</td></tr>", esc(c), calendar::format_span(*ms));
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Speed against the plan</h2>");
    match s.plan.down_mbps {
        Some(p) => {
            let _ = write!(
                h,
                "<p id=\"speed\">Plan: {p:.0} Mbit/s down{}. Of {} hours with a speed test, {} fell below the plan \
                 and {} below half of it; the median download was {}.</p>",
                s.plan.up_mbps.map_or(String::new(), |u| format!(", {u:.0} up")),
                s.tested_hours,
                s.hours_below_plan,
                s.hours_below_half,
                s.summary.down_median_mbps.map_or("-".into(), |x| format!("{x:.0} Mbit/s")),
            );
        }
        None => h.push_str("<p id=\"speed\">No plan speed set (plan_down_mbps in [report]).</p>"),
    }
    let _ = write!(
        h,
        "<h2>Evenings ({:02}:00-{:02}:00) against the other hours</h2><table id=\"evening\">\
         <tr><th></th><th>measured</th><th>in outages</th><th>availability</th><th>loss outside outages</th></tr>",
        EVENING.start, EVENING.end
    );
    for (name, p) in [("evenings", &s.evening), ("other hours", &s.other)] {
        let _ = write!(
            h,
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            calendar::format_span(p.measured_minutes as i64 * MINUTE_MS),
            calendar::format_span(p.down_minutes as i64 * MINUTE_MS),
            pct(p.availability(), 3),
            pct(p.loss(), 2)
        );
    }
    h.push_str(
        "</table><p>Every outage has its own evidence page on the dashboard (/incident/ID).</p></body></html>\n",
    );
    h
}

#[derive(Debug, thiserror::Error)]
pub enum SlaError {
    #[error("{0}")]
    Month(BadInput),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `dir/wanwatch-month-2026-11.html`.
pub fn file_for(dir: &Path, month: &str) -> PathBuf {
    dir.join(format!("wanwatch-month-{month}.html"))
}

/// On or after the 1st: last month's report, unless written already or the month has no data.
/// Written to a temporary name and renamed, so a reader never sees half of it.
pub fn write_if_due(db: &Path, dir: &Path, now: WallMs, plan: Plan) -> anyhow::Result<Option<PathBuf>> {
    use anyhow::Context;
    let month = last_month(now);
    let path = file_for(dir, &month);
    if path.exists() {
        return Ok(None);
    }
    let store = Store::open_read_only(db)?;
    let (since, until) = month_range(&month).map_err(|e| anyhow::anyhow!("{e}"))?;
    if !store.any_minutes(since, until)? {
        return Ok(None);
    }
    let html = html(&build(&store, &month, plan)?);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("html.tmp");
    std::fs::write(&tmp, html).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_local_midnight_to_midnight_and_wrap_the_year() {
        let (a, b) = month_range("2026-12").unwrap();
        let (c, _) = month_range("2027-01").unwrap();
        assert_eq!(b, c);
        assert!(b - a >= 31 * 86_400_000 - HOUR_MS && b - a <= 31 * 86_400_000 + HOUR_MS);
        assert!(month_range("2026-13").is_err() && month_range("november").is_err());
        assert_eq!(last_month(month_range("2027-01").unwrap().0 + HOUR_MS), "2026-12");
    }
}
