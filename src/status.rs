//! `wanwatch status`: the state of the link at a glance, in 80 columns over ssh.

use std::fmt::Write;

use crate::calendar::{HOUR_MS, format_span, format_time};
use crate::sample::{LinkState, OutageKind, WallMs};
use crate::store::query::TargetSummary;
use crate::store::{Store, StoreError};

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
        LinkState::Ipv4Down => "DOWN (IPv4 only; IPv6 up)",
        LinkState::Ipv6Down => "DOWN (IPv6 only; IPv4 up)",
    };
    let _ = writeln!(out, "wanwatch  {}", store.path.display());
    let (link, agent_line) = match (&agent.running, agent.heartbeat) {
        (Some(pid), hb) => {
            let since = agent
                .since
                .map(|s| format!(" since {} UTC ({})", format_time(s), format_span(now - s)))
                .unwrap_or_default();
            let wrote = hb.map(|hb| format!(", last write {} ago", format_span(now - hb))).unwrap_or_default();
            (format!("{state}{since}"), format!("running (PID {pid}{wrote})"))
        }
        // Not running: the state is what the agent last knew, not a clock that keeps counting.
        (None, Some(hb)) => {
            let (ended, how) = match agent.clean_stop {
                Some(stop) => (stop, "stopped cleanly"),
                None => (hb, "no clean stop recorded: crashed, killed or lost power"),
            };
            let link = format!("{state} (last known, as of {} UTC)", format_time(hb.max(ended)));
            (link, format!("STOPPED since {} UTC ({} ago; {how})", format_time(ended), format_span(now - ended)))
        }
        (None, None) => (state.to_string(), "never ran on this database".to_string()),
    };
    let _ = writeln!(out, "Link:  {link}");
    let _ = writeln!(out, "Agent: {agent_line}");
    let blind = store.blind_spots(now - 24 * HOUR_MS, now)?;
    if !blind.is_empty() {
        let ms: i64 = blind.iter().map(|b| b.ms()).sum();
        let _ = writeln!(out, "Not measured in the last 24 h: {} in {} stretch(es)", format_span(ms), blind.len());
    }
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
        let kind = match o.kind {
            OutageKind::Lan => "LAN/router",
            other => other.describe(),
        };
        let span = match (o.end, o.duration_ms) {
            (Some(_), Some(d)) => format_span(d),
            _ => format!("ongoing, {} so far", format_span(now - o.start)),
        };
        let _ = writeln!(out, "  {}  {:<10}  {}", format_time(o.start), kind, span);
    }
    context(store, now, &mut out)?;
    Ok(out)
}

/// The context probes' newest values, one line per probe and subject.
fn context(store: &Store, now: WallMs, out: &mut String) -> Result<(), StoreError> {
    let latest = store.latest_metrics(now - 24 * HOUR_MS)?;
    if !latest.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Context (newest values):");
    }
    for group in latest.chunk_by(|a, b| a.probe == b.probe && a.subject == b.subject) {
        let first = &group[0];
        let mut line = format!("  {:<9} {}:", first.probe, first.subject);
        for m in group {
            let v = match (m.value, &m.note) {
                (Some(_), Some(n)) if m.is(crate::series::BANDS) => n.clone(),
                (Some(v), _) => format!(
                    "{}{}",
                    trim_num(v),
                    if m.unit.is_empty() || m.unit == "code" || m.unit == "id" {
                        String::new()
                    } else {
                        format!(" {}", m.unit)
                    }
                ),
                (None, Some(n)) => format!("FAILED ({n})"),
                (None, None) => "-".into(),
            };
            line.push_str(&format!(" {}={v}", m.name));
        }
        let ago = now - group.iter().map(|m| m.ts).max().unwrap_or(now);
        let suffix = format!(" ({} ago)", format_span(ago));
        // Keep to 80 columns over ssh.
        if line.chars().count() + suffix.len() > 80 {
            let keep = 80usize.saturating_sub(suffix.len() + 1);
            line = line.chars().take(keep).collect::<String>() + "~";
        }
        let _ = writeln!(out, "{line}{suffix}");
    }
    let router = store.recent_router_events(5)?;
    if !router.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Router log (UTC):");
        for (ts, class, msg) in router {
            let mut line = format!("  {}  {:<11} {}", format_time(ts), class, msg);
            if line.chars().count() > 80 {
                line = line.chars().take(79).collect::<String>() + "~";
            }
            let _ = writeln!(out, "{line}");
        }
    }
    Ok(())
}

fn trim_num(v: f64) -> String {
    // Whole numbers and big ones need no decimals.
    if (v.fract() == 0.0 && v.abs() < 1e12) || v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.1}") }
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
