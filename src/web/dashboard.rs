//! The dashboard page: the state in big letters, the last 24 hours drawn, the targets, recent
//! outages and events, the context probes' newest values, and the report links. Plain HTML that
//! refreshes itself every minute: no scripts, no external assets, works on any phone.

use std::fmt::Write;

use super::PageError;
use crate::calendar::{DAY_MS, HOUR_MS, format_local_minute as local, format_span, with_unit};
use crate::report::data::Data;
use crate::report::plot;
use crate::report::render::esc;
use crate::sample::{LinkState, WallMs};
use crate::store::Store;

fn state_words(s: LinkState) -> (&'static str, &'static str) {
    match s {
        LinkState::Up => ("Internet is up", "#2e9d47"),
        LinkState::Degraded => ("Internet is degraded", "#e0a020"),
        LinkState::WanDown => ("Internet is DOWN", "#d0302b"),
        LinkState::LanDown => ("Home network / gateway is DOWN", "#d0302b"),
        LinkState::Unknown => ("State unknown", "#777"),
        LinkState::Ipv4Down => ("IPv4 is DOWN (IPv6 up)", "#e06020"),
        LinkState::Ipv6Down => ("IPv6 is DOWN (IPv4 up)", "#e06020"),
    }
}

/// Whether the agent is writing: its newest ping is recent.
fn running(heartbeat: Option<WallMs>, now: WallMs) -> String {
    match heartbeat {
        Some(hb) if now - hb < 5 * 60_000 => format!("agent running, last ping stored {} ago", format_span(now - hb)),
        Some(hb) => format!("AGENT NOT RUNNING: last ping stored {} ago", format_span(now - hb)),
        None => "the agent has not written to this database yet".into(),
    }
}

pub fn render(store: &Store, now: WallMs) -> Result<String, PageError> {
    let agent = store.agent_status()?;
    let (words, color) = state_words(agent.state);
    let since = agent.since.map_or(String::new(), |s| format!(" for {}", format_span(now - s)));
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"60\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>wanwatch: {words}</title>\
         <style>body{{font-family:sans-serif;max-width:1000px;margin:1em auto;padding:0 1em;color:#222}}\
         .state{{background:{color};color:#fff;padding:.6em 1em;border-radius:8px;font-size:26px}}\
         table{{border-collapse:collapse;margin:.5em 0 1em}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:14px;text-align:left}}\
         th{{background:#f2f2f2}}h2{{font-size:19px;margin-top:1.4em}}svg{{max-width:100%;height:auto}}</style></head><body>\n\
         <div class=\"state\" id=\"state\">{words}{since}</div>\n<p id=\"agent\">{} &middot; {}</p>\n",
        esc(&running(agent.heartbeat, now)),
        local(now)
    );

    // The one piece of advice a household acts on: when to start the big download.
    if let Some(w) = crate::report::next_download_window(store, now)? {
        let _ = writeln!(
            out,
            "<p id=\"best\">Best for big downloads: <b>{}</b> (the quietest 3 hours of the coming day over the last {} weeks: {:.0}% of those minutes were bad)</p>",
            w.label(),
            crate::report::ADVICE_WEEKS,
            w.bad_share * 100.0
        );
    }

    let summaries = store.summaries(now - 15 * 60_000, now + 1)?;
    out.push_str("<h2>Last 15 minutes</h2>\n<table id=\"targets\"><tr><th>target</th><th>role</th><th>loss</th><th>median</th><th>p95</th></tr>\n");
    for s in &summaries {
        let ms = |us: Option<f64>| us.map_or("-".into(), |u| format!("{:.1} ms", u / 1000.0));
        let _ = writeln!(
            out,
            "<tr><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.name),
            esc(&s.addr),
            esc(&s.role),
            s.loss().map_or("-".into(), |l| format!("{:.1}%", l * 100.0)),
            ms(s.median_us),
            ms(s.p95_us)
        );
    }
    if summaries.is_empty() {
        out.push_str("<tr><td colspan=\"5\">no pings in the last 15 minutes</td></tr>\n");
    }
    out.push_str("</table>\n<h2>Last 24 hours</h2>\n");
    let since = now - DAY_MS;
    let day = Data::load(store, since, now, &|_| {})?;
    let svg = plot::timeline(&day.minutes, &day.outages, &day.shift_onsets(), since, now, &|t| {
        crate::calendar::format_local_clock(t, false)
    })?;
    let _ = writeln!(out, "<figure id=\"timeline\">{svg}</figure>");

    let outages = store.recent_outages(10)?;
    out.push_str(
        "<h2>Recent outages</h2>\n<table id=\"outages\"><tr><th>start</th><th>duration</th><th>kind</th></tr>\n",
    );
    for o in &outages {
        let dur = o
            .duration_ms
            .or(o.end.map(|end| end - o.start))
            .map_or(format!("ongoing, {}", format_span(now - o.start)), format_span);
        let kind = o.kind.describe();
        // Each outage has its own page: the evidence around it.
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{dur}</td><td><a href=\"/incident/{}\">{kind}</a></td></tr>",
            local(o.start),
            o.id
        );
    }
    if outages.is_empty() {
        out.push_str("<tr><td colspan=\"3\">none recorded</td></tr>\n");
    }
    out.push_str(
        "</table>\n<h2>Recent events</h2>\n<table id=\"events\"><tr><th>time</th><th>kind</th><th>detail</th></tr>\n",
    );
    for ev in store.recent_events(20)? {
        let _ = writeln!(out, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", local(ev.ts), ev.kind, esc(&ev.detail));
    }
    out.push_str("</table>\n");

    let latest = store.latest_metrics(now - 2 * HOUR_MS)?;
    if !latest.is_empty() {
        out.push_str(
            "<h2>Context</h2>\n<table id=\"context\"><tr><th>probe</th><th>what</th><th>value</th><th>when</th></tr>\n",
        );
        for l in &latest {
            let v = match (l.value, &l.note) {
                (Some(v), Some(n)) if l.is(crate::series::BANDS) => format!("{n} ({v:.0})"),
                (Some(v), _) => with_unit(v, &l.unit),
                (None, Some(n)) => format!("failed: {n}"),
                (None, None) => "-".into(),
            };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{} {}</td><td>{}</td><td>{} ago</td></tr>",
                esc(&l.probe),
                esc(&l.subject),
                esc(&l.name),
                esc(&v),
                format_span(now - l.ts)
            );
        }
        out.push_str("</table>\n");
    }
    let spots = crate::placement::rank(&store.placement_rows(0)?);
    if !spots.is_empty() {
        out.push_str(
            "<h2>Where to put the gateway</h2>\n<p>Spots tried with <code>wanwatch placement --spot NAME</code>, best first \
             (5G SINR, then RSRP; LTE where there was no 5G). Median, with the middle half of the readings.</p>\n\
             <table id=\"placement\"><tr><th>#</th><th>spot</th><th>radio</th><th>SINR dB</th><th>RSRP dBm</th><th>readings</th><th>tried</th></tr>\n",
        );
        let f = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.1}"));
        for p in &spots {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} ({} to {})</td><td>{} ({} to {})</td><td>{}</td><td>{}</td></tr>",
                p.rank,
                esc(&p.spot),
                p.radio.to_uppercase(),
                f(p.sinr_db_median),
                f(p.sinr_db_p25),
                f(p.sinr_db_p75),
                f(p.rsrp_dbm_median),
                f(p.rsrp_dbm_p25),
                f(p.rsrp_dbm_p75),
                p.samples,
                local(p.last_ts)
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str(
        "<h2>Reports</h2>\n<p id=\"links\"><a href=\"/report.html?days=7\">Report for the ISP, last 7 days (HTML)</a> &middot; \
         <a href=\"/report.html?days=30\">last 30 days</a> &middot; <a href=\"/report.md?days=7\">Markdown for a support chat</a> \
         &middot; <a href=\"/sla.html\">Last month's service report (availability, outages by cause, speed against the plan)</a> \
         &middot; <a href=\"/metrics\">Prometheus metrics</a></p>\n\
         <p><a href=\"/community\">Your area against others</a> (when community sharing is on) &middot; <a href=\"/setup\">Settings</a> (location, plan, alerts, gateway, targets; asks for the PIN on the display)</p>\n</body></html>\n",
    );
    Ok(out)
}

/// The state for scripts: `{"state":"up","since":...,"heartbeat":...,"targets":[...]}`.
pub fn status_json(store: &Store, now: WallMs) -> Result<String, PageError> {
    let agent = store.agent_status()?;
    let targets: Vec<serde_json::Value> = store
        .summaries(now - 15 * 60_000, now + 1)?
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name, "addr": s.addr, "role": s.role, "loss": s.loss(),
                "median_ms": s.median_us.map(|u| u / 1000.0), "p95_ms": s.p95_us.map(|u| u / 1000.0),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "state": agent.state.as_str(), "since": agent.since, "heartbeat": agent.heartbeat, "now": now, "targets": targets,
    })
    .to_string())
}
