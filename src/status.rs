//! `wanwatch status`: the state of the link at a glance, in 80 columns over ssh.

use std::fmt::Write;

use crate::sample::{LinkState, WallMs};
use crate::store::query::TargetSummary;
use crate::store::{Store, StoreError};
use crate::timefmt::{format_span, format_time};

const HOUR_MS: i64 = 3_600_000;

/// Render the status screen as of `now`.
pub fn render(store: &Store, now: WallMs) -> Result<String, StoreError> {
    let mut out = String::new();
    let agent = store.agent_status()?;
    let state = match agent.state {
        LinkState::Up => "UP",
        LinkState::Degraded => "DEGRADED",
        LinkState::LanDown => "DOWN (LAN/router)",
        LinkState::WanDown => "DOWN (internet)",
        LinkState::Unknown => "UNKNOWN",
    };
    let _ = writeln!(out, "wanwatch  {}", store.path.display());
    let since =
        agent.since.map(|s| format!(" since {} UTC ({})", format_time(s), format_span(now - s))).unwrap_or_default();
    let _ = writeln!(out, "Link:  {state}{since}");
    let agent_line = match agent.heartbeat {
        // The writer beats at every flush; allow a few missed flushes before calling it stopped.
        Some(hb) if now - hb < 5 * 60_000 => {
            format!("running (last write {} ago)", format_span(now - hb))
        }
        Some(hb) => format!("NOT RUNNING: last write {} UTC ({} ago)", format_time(hb), format_span(now - hb)),
        None => "never ran on this database".to_string(),
    };
    let _ = writeln!(out, "Agent: {agent_line}");
    let _ = writeln!(out);

    let hour = store.summaries(now - HOUR_MS, now + 1)?;
    let day = store.summaries(now - 24 * HOUR_MS, now + 1)?;
    let _ = writeln!(out, "{:<27} {:<25} {:<25}", "", "Last hour", "Last 24 hours");
    let _ = writeln!(
        out,
        "{:<27} {:>6} {:>8} {:>8}  {:>6} {:>8} {:>8}",
        "Target", "loss", "median", "p95", "loss", "median", "p95"
    );
    for d in &day {
        let h = hour.iter().find(|h| h.addr == d.addr);
        let mut name = if d.name == d.addr { d.addr.clone() } else { format!("{} {}", d.name, d.addr) };
        if name.len() > 27 {
            name.truncate(26);
            name.push('~');
        }
        let _ = writeln!(out, "{:<27} {}  {}", name, cols(h), cols(Some(d)));
    }
    if day.is_empty() {
        let _ = writeln!(out, "  (no samples in the last 24 hours)");
    }
    let _ = writeln!(out);

    let outages = store.recent_outages(5)?;
    let _ = writeln!(out, "Recent outages (UTC):");
    if outages.is_empty() {
        let _ = writeln!(out, "  none recorded");
    }
    for o in outages {
        let kind = if o.kind == "lan" { "LAN/router" } else { "internet" };
        let span = match (o.end, o.duration_ms) {
            (Some(_), Some(d)) => format_span(d),
            _ => format!("ongoing, {} so far", format_span(now - o.start)),
        };
        let _ = writeln!(out, "  {}  {:<10}  {}", format_time(o.start), kind, span);
    }
    Ok(out)
}

fn cols(s: Option<&TargetSummary>) -> String {
    let Some(s) = s else {
        return format!("{:>6} {:>8} {:>8}", "-", "-", "-");
    };
    let ms = |us: Option<f64>| {
        us.map_or("-".to_string(), |u| match u / 1000.0 {
            ms if ms < 10.0 => format!("{ms:.2}ms"),
            ms => format!("{ms:.1}ms"),
        })
    };
    let loss = s.loss().map_or("-".to_string(), |l| format!("{:.1}%", l * 100.0));
    format!("{:>6} {:>8} {:>8}", loss, ms(s.median_us), ms(s.p95_us))
}
