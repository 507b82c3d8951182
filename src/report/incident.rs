//! One outage's evidence pack. `wanwatch incident ID --out DIR` writes a self-contained
//! `index.html` and the CSVs behind it (every ping second by second, the path probes, the
//! gateway's radio and the weather, the router's log, the events) for the minutes around it;
//! the dashboard serves the same page at `/incident/ID`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::plot;
use super::render::esc;
use crate::calendar::{self, MINUTE_MS};
use crate::sample::{Failure, WallMs};
use crate::store::export::{self, ExportError, Format, Table};
use crate::store::query::Outage;
use crate::store::{Store, StoreError};

/// How much before and after the outage the pack covers.
pub const AROUND_MS: i64 = 10 * MINUTE_MS;
/// Rows shown per table on the page (the CSVs have them all).
const SHOWN: usize = 200;

/// The tables written beside the page, with their file names.
const CSVS: [(Table, &str); 5] = [
    (Table::Samples, "samples.csv"),
    (Table::Hops, "hops.csv"),
    (Table::Metrics, "metrics.csv"),
    (Table::Syslog, "syslog.csv"),
    (Table::Events, "events.csv"),
];

/// The stretch the pack covers: the outage and [`AROUND_MS`] either side (an ongoing one up
/// to `now`).
fn window(o: &Outage, now: WallMs) -> (WallMs, WallMs) {
    (o.start - AROUND_MS, o.end.unwrap_or(now).max(o.start) + AROUND_MS)
}

/// The page for outage `id`, or None if there is no such outage. `csv_links`: the CSVs sit
/// beside it (the pack), or not (the dashboard).
pub fn render(store: &Store, id: i64, now: WallMs, csv_links: bool) -> Result<Option<String>, StoreError> {
    store.outage(id)?.map(|o| page(store, &o, now, csv_links)).transpose()
}

fn page(store: &Store, o: &Outage, now: WallMs, csv_links: bool) -> Result<String, StoreError> {
    let id = o.id;
    let (since, until) = window(o, now);
    let end = o.end.unwrap_or(now);
    let mut h = String::new();
    let title = format!(
        "Outage #{id}: {} down {}, {} to {}",
        o.kind.describe(),
        calendar::format_span(o.duration_ms.unwrap_or(end - o.start)),
        calendar::format_local_minute(o.start),
        o.end.map_or("ongoing".into(), calendar::format_local_minute)
    );
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}}\
         table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:2px 6px}}\
         th{{background:#eee}}.bad{{color:#b00}}</style></head><body><h1>{t}</h1>\
         <p>Start {s} ({sm} ms), end {e}. Start and end are local time; the tables below are UTC, and the CSVs carry epoch ms too.</p>",
        t = esc(&title),
        s = esc(&calendar::format_local_minute(o.start)),
        sm = o.start,
        e = o.end.map_or("ongoing".into(), |e| format!("{} ({e} ms)", calendar::format_local_minute(e))),
    );

    // Where it broke: the verdict kept with the outage, and its path probes.
    let (_, located) = store.text_rows(
        "read the outage's localisation",
        "SELECT coalesce(located, ''), coalesce(last_good_ttl, ''), coalesce(last_good_hop, '') FROM outages WHERE id = ?1",
        [id],
    )?;
    h.push_str("<h2>Where it broke</h2>");
    match located.first().filter(|r| !r[0].is_empty()) {
        Some(r) => {
            let _ = write!(h, "<p><b>{}</b></p>", esc(&r[0]));
            if !r[1].is_empty() {
                let _ = write!(h, "<p>Deepest hop that still answered: hop {} ({}).</p>", esc(&r[1]), esc(&r[2]));
            }
        }
        None => h.push_str("<p>No path probe was stored for this outage.</p>"),
    }
    table(
        &mut h,
        store.text_rows(
            "read the outage's path probes",
            &format!(
                "SELECT p.target, p.reason, p.proto, h.ttl, coalesce(h.addr, '*') AS answered_by,
                        h.answered || '/' || h.sent AS answers, round(h.rtt_us / 1000.0, 1) AS rtt_ms,
                        CASE h.error {names} END AS error, h.err_from AS error_from
                 FROM paths p JOIN hops h ON h.path = p.id
                 WHERE p.outage_ts = ?1 OR (p.reason = 'baseline' AND p.id IN
                       (SELECT max(id) FROM paths WHERE reason = 'baseline' AND ts <= ?1 GROUP BY target))
                 ORDER BY p.reason = 'baseline', p.id, h.ttl",
                names = export::failure_names()
            ),
            [o.start],
        )?,
        "The outage's path probes, then the last healthy path before it (baseline).",
    );

    // The timeline, second by second, and who answered what.
    let pings = store.pings(since, until)?;
    let (_, targets) = store.text_rows("read targets", "SELECT id, name, addr FROM targets ORDER BY id", [])?;
    let name = |id: i64| {
        targets.iter().find(|t| t[0] == id.to_string()).map_or(id.to_string(), |t| format!("{} ({})", t[1], t[2]))
    };
    let points: Vec<(f64, f64)> = pings
        .iter()
        .filter_map(|(_, p)| Some(((p.ts - o.start) as f64 / 1000.0, f64::from(p.rtt_us?) / 1000.0)))
        .collect();
    h.push_str("<h2>Timeline</h2>");
    match plot::scatter(&points, "Round trips around the outage", "seconds from its start", "RTT (ms)") {
        Ok(svg) => h.push_str(&svg),
        Err(e) => {
            let _ = write!(h, "<p>(figure failed: {})</p>", esc(&e.to_string()));
        }
    }
    // Per target: before, during, after; and what the ICMP errors said, by whom.
    let mut counts: BTreeMap<i64, [(u64, u64); 3]> = BTreeMap::new();
    let mut said: BTreeMap<(i64, String, String), u64> = BTreeMap::new();
    let names = Failure::names();
    for (target, p) in &pings {
        let part = if p.ts < o.start {
            0
        } else if p.ts < end {
            1
        } else {
            2
        };
        let c = &mut counts.entry(*target).or_default()[part];
        c.0 += 1;
        if p.rtt_us.is_none() {
            c.1 += 1;
        }
        if let (Some(code), Some(from)) = (p.fail, &p.err_from) {
            let reason = names.iter().find(|(c, _)| *c == code).map_or(code.to_string(), |(_, n)| n.to_string());
            *said.entry((*target, reason, from.clone())).or_default() += 1;
        }
    }
    let lost = |(n, l): (u64, u64)| if n == 0 { "-".into() } else { format!("{l} of {n} lost") };
    let rows: Vec<Vec<String>> =
        counts.iter().map(|(t, c)| vec![name(*t), lost(c[0]), lost(c[1]), lost(c[2])]).collect();
    let heads = ["target", "10 min before", "during", "10 min after"].map(String::from).to_vec();
    table(&mut h, (heads, rows), "LAN or WAN: did the gateway answer while the anchors did not?");
    let rows: Vec<Vec<String>> =
        said.iter().map(|((t, r, f), n)| vec![name(*t), r.clone(), f.clone(), n.to_string()]).collect();
    let heads = ["target", "ICMP error", "sent by", "pings"].map(String::from).to_vec();
    table(&mut h, (heads, rows), "What the ICMP errors said, and who said it.");

    // Context: the radio, the weather, the router's log, the events.
    let context = |probe: &str| -> Result<(Vec<String>, Vec<Vec<String>>), StoreError> {
        store.text_rows(
            "read the context",
            "SELECT strftime('%Y-%m-%d %H:%M:%S', m.ts / 1000, 'unixepoch') AS time, s.subject, s.name, m.value, s.unit, m.note
             FROM metrics m JOIN series s ON s.id = m.series
             WHERE s.probe = ?3 AND m.ts >= ?1 AND m.ts < ?2 ORDER BY m.ts LIMIT 1000",
            rusqlite::params![since, until, probe],
        )
    };
    h.push_str("<h2>The gateway's radio</h2>");
    table(&mut h, context("gateway")?, "Band, SINR, RSRP, cell and reboots, as the gateway reported them.");
    h.push_str("<h2>Weather</h2>");
    table(&mut h, context("weather")?, "");
    h.push_str("<h2>Router log</h2>");
    table(
        &mut h,
        store.text_rows(
            "read the router log",
            "SELECT strftime('%Y-%m-%d %H:%M:%S', ts / 1000, 'unixepoch') AS time, source, class, message
             FROM syslog WHERE ts >= ?1 AND ts < ?2 ORDER BY ts, id LIMIT 1000",
            [since, until],
        )?,
        "",
    );
    h.push_str("<h2>Events</h2>");
    table(
        &mut h,
        store.text_rows(
            "read events",
            "SELECT strftime('%Y-%m-%d %H:%M:%S', ts / 1000, 'unixepoch') AS time, kind, detail
             FROM events WHERE ts >= ?1 AND ts < ?2 ORDER BY ts, id LIMIT 1000",
            [since, until],
        )?,
        "",
    );
    if csv_links {
        h.push_str("<h2>The data</h2><ul>");
        for (_, file) in CSVS {
            let _ = write!(h, "<li><a href=\"{file}\">{file}</a></li>");
        }
        h.push_str("</ul>");
    } else {
        let _ = write!(h, "<p>The whole pack, with the CSVs: <code>wanwatch incident {id} --out DIR</code></p>");
    }
    h.push_str("</body></html>\n");
    Ok(h)
}

/// An HTML table of `(headers, rows)`, the first [`SHOWN`] rows, with a caption.
fn table(h: &mut String, (heads, rows): (Vec<String>, Vec<Vec<String>>), caption: &str) {
    if !caption.is_empty() {
        let _ = write!(h, "<p>{}</p>", esc(caption));
    }
    if rows.is_empty() {
        h.push_str("<p><i>nothing recorded</i></p>");
        return;
    }
    h.push_str("<table><tr>");
    for c in &heads {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr>");
    for r in rows.iter().take(SHOWN) {
        h.push_str("<tr>");
        for c in r {
            let _ = write!(h, "<td>{}</td>", esc(c));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    if rows.len() > SHOWN {
        let _ = write!(h, "<p>... {} more rows in the CSV.</p>", rows.len() - SHOWN);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error("no outage with id {0} in the database (wanwatch export --table outages lists them)")]
    NoSuchOutage(i64),
    #[error("{path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Write the pack for outage `id` into `dir` (made if missing): `index.html` and the CSVs.
/// Returns the files written.
pub fn write_pack(store: &Store, id: i64, now: WallMs, dir: &Path) -> Result<Vec<PathBuf>, IncidentError> {
    let o = store.outage(id)?.ok_or(IncidentError::NoSuchOutage(id))?;
    let html = page(store, &o, now, true)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |err| IncidentError::Write { path, err }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (since, until) = window(&o, now);
    let mut written = Vec::new();
    for (table, file) in CSVS {
        let path = dir.join(file);
        let out = std::fs::File::create(&path).map_err(io(&path))?;
        export::write_table(store, table, Format::Csv, since, until, std::io::BufWriter::new(out))?;
        written.push(path);
    }
    let index = dir.join("index.html");
    std::fs::write(&index, html).map_err(io(&index))?;
    written.push(index);
    Ok(written)
}
