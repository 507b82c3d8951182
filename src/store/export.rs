//! `wanwatch export`: stream a table as CSV or JSON lines, or copy the whole database with
//! SQLite's online backup (consistent while the agent writes).

use std::io::{self, Write};
use std::path::Path;

use rusqlite::types::ValueRef;

use super::{Store, StoreError};
use crate::sample::WallMs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Table {
    Samples,
    Minutes,
    Outages,
    Events,
    /// The context probes' measurements (DNS, HTTP, bandwidth, gateway, weather, devices, system).
    Metrics,
    /// The router's log.
    Syslog,
    /// Stretches nothing was measured (the agent not running or stalled).
    Blind,
    /// Path probes, one row per probe and TTL: who answered, how often, how fast.
    Hops,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
    Sqlite,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the export: {0}")]
    Io(#[from] io::Error),
    #[error("csv: {0}")]
    Csv(#[from] csv::Error),
}

const ISO: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', {c} / 1000.0, 'unixepoch')";

fn iso(col: &str) -> String {
    ISO.replace("{c}", col)
}

/// A stored value as CSV (and the incident page) shows it: NULL as "", numbers as Rust prints them.
pub(crate) fn cell_text(v: ValueRef) -> String {
    match v {
        ValueRef::Null => String::new(),
        ValueRef::Integer(v) => v.to_string(),
        ValueRef::Real(v) => v.to_string(),
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
    }
}

/// `WHEN 10 THEN 'net_unreachable' ...`: a stored failure code as its name.
pub(crate) fn failure_names() -> String {
    crate::sample::Failure::names()
        .iter()
        .map(|(code, name)| format!("WHEN {code} THEN '{name}'"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The query for a table, with `?1`/`?2` the time range. Times come out twice: readable UTC
/// and epoch milliseconds; RTTs in milliseconds.
fn query(table: Table) -> String {
    match table {
        // The pings are decoded into a temporary table a stretch at a time (see `write_samples`),
        // and SQL formats them exactly as it formats every other table.
        Table::Samples => format!(
            "SELECT {t} AS time, s.ts AS ts_ms, g.name AS target, g.addr AS addr, s.seq AS seq,
                    round(s.rtt_us / 1000.0, 3) AS rtt_ms,
                    CASE s.fail {reasons} END AS lost, s.err_from AS said_by
             FROM temp.export_samples s JOIN targets g ON g.id = s.target
             WHERE s.ts >= ?1 AND s.ts < ?2 ORDER BY s.ts, g.id, s.seq",
            t = iso("s.ts"),
            reasons = failure_names()
        ),
        Table::Minutes => format!(
            "SELECT {t} AS time, m.ts AS ts_ms, g.name AS target, g.addr AS addr, m.sent, m.lost,
                    round(CAST(m.lost AS REAL) / m.sent, 4) AS loss,
                    round(m.min_us / 1000.0, 3) AS min_ms, round(m.mean_us / 1000.0, 3) AS mean_ms,
                    round(m.median_us / 1000.0, 3) AS median_ms, round(m.p95_us / 1000.0, 3) AS p95_ms,
                    round(m.max_us / 1000.0, 3) AS max_ms, round(m.jitter_us / 1000.0, 3) AS jitter_ms
             FROM minutes m JOIN targets g ON g.id = m.target
             WHERE m.ts >= ?1 AND m.ts < ?2 ORDER BY m.ts, g.id",
            t = iso("m.ts")
        ),
        Table::Outages => format!(
            "SELECT id, kind, {s} AS start, {e} AS end, round(duration_ms / 1000.0, 1) AS duration_s,
                    start_ts AS start_ms, end_ts AS end_ms, detail,
                    last_good_ttl, last_good_hop, located
             FROM outages WHERE start_ts < ?2 AND coalesce(end_ts, start_ts) >= ?1 ORDER BY start_ts",
            s = iso("start_ts"),
            e = iso("end_ts")
        ),
        Table::Metrics => format!(
            "SELECT {t} AS time, m.ts AS ts_ms, s.probe, s.subject, s.name, m.value, s.unit, m.note
             FROM metrics m JOIN series s ON s.id = m.series
             WHERE m.ts >= ?1 AND m.ts < ?2 ORDER BY m.ts, s.id",
            t = iso("m.ts")
        ),
        Table::Syslog => format!(
            "SELECT {t} AS time, ts AS ts_ms, source, facility, severity, host, app, class, message FROM syslog
             WHERE ts >= ?1 AND ts < ?2 ORDER BY ts, id",
            t = iso("ts")
        ),
        Table::Events => format!(
            "SELECT {t} AS time, ts AS ts_ms, kind, detail FROM events
             WHERE ts >= ?1 AND ts < ?2 ORDER BY ts, id",
            t = iso("ts")
        ),
        Table::Hops => format!(
            "SELECT {t} AS time, p.ts AS ts_ms, p.target, p.reason, p.proto, p.outage_ts AS outage_ms, h.ttl, h.addr,
                    h.sent, h.answered, round(h.rtt_us / 1000.0, 3) AS rtt_ms,
                    CASE h.error {reasons} END AS error, h.err_from AS said_by, p.route
             FROM hops h JOIN paths p ON p.id = h.path
             WHERE p.ts >= ?1 AND p.ts < ?2 ORDER BY p.ts, p.id, h.ttl",
            t = iso("p.ts"),
            reasons = failure_names()
        ),
        Table::Blind => format!(
            "SELECT {s} AS start, {e} AS end, round((end_ts - start_ts) / 1000.0, 1) AS duration_s,
                    start_ts AS start_ms, end_ts AS end_ms, kind, detail
             FROM blind WHERE start_ts < ?2 AND end_ts >= ?1 ORDER BY start_ts",
            s = iso("start_ts"),
            e = iso("end_ts")
        ),
    }
}

/// Stream `table` rows in `[since, until)` to `out`. Returns the number of rows.
pub fn write_table(
    store: &Store,
    table: Table,
    format: Format,
    since: WallMs,
    until: WallMs,
    out: impl Write,
) -> Result<u64, ExportError> {
    if table == Table::Samples {
        return write_samples(store, format, since, until, out);
    }
    let mut stmt = store.conn.prepare(&query(table)).map_err(|e| store.sql("export query", e))?;
    let mut sink = Sink::new(format, out, &stmt)?;
    sink.rows(store, &mut stmt, since, until)?;
    sink.finish()
}

/// Raw pings a stretch of this long at a time: memory stays bounded whatever the range.
const SAMPLES_STRETCH_MS: i64 = crate::calendar::HOUR_MS;

fn write_samples(
    store: &Store,
    format: Format,
    since: WallMs,
    until: WallMs,
    out: impl Write,
) -> Result<u64, ExportError> {
    let conn = &store.conn;
    let sql = |e| ExportError::from(store.sql("export samples", e));
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS export_samples
             (ts INTEGER, target INTEGER, seq INTEGER, rtt_us INTEGER, fail INTEGER, err_from TEXT);
         DELETE FROM temp.export_samples;",
    )
    .map_err(sql)?;
    let mut stmt = conn.prepare(&query(Table::Samples)).map_err(sql)?;
    let mut sink = Sink::new(format, out, &stmt)?;
    let mut lo = since;
    while let Some(first) = super::pings::next_minute(conn, lo).map_err(sql)? {
        lo = lo.max(first);
        if lo >= until {
            break;
        }
        let hi = lo.saturating_add(SAMPLES_STRETCH_MS).min(until);
        {
            let mut insert =
                conn.prepare_cached("INSERT INTO temp.export_samples VALUES (?1, ?2, ?3, ?4, ?5, ?6)").map_err(sql)?;
            super::pings::unpack_into(conn, &mut insert, lo, hi).map_err(sql)?;
        }
        sink.rows(store, &mut stmt, lo, hi)?;
        conn.execute_batch("DELETE FROM temp.export_samples").map_err(sql)?;
        lo = hi;
    }
    sink.finish()
}

/// Where exported rows go: CSV with a header, or one JSON object per line.
enum Sink<W: Write> {
    Csv { w: Box<csv::Writer<W>>, width: usize, n: u64 },
    Json { w: io::BufWriter<W>, names: Vec<String>, n: u64 },
}

impl<W: Write> Sink<W> {
    fn new(format: Format, out: W, stmt: &rusqlite::Statement) -> Result<Sink<W>, ExportError> {
        let names: Vec<String> = stmt.column_names().map(String::from).collect();
        Ok(match format {
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(&names)?;
                Sink::Csv { w: Box::new(w), width: names.len(), n: 0 }
            }
            Format::Jsonl | Format::Sqlite => Sink::Json { w: io::BufWriter::new(out), names, n: 0 },
        })
    }

    /// Run `stmt` over `[since, until)` and write what it returns.
    fn rows(
        &mut self,
        store: &Store,
        stmt: &mut rusqlite::Statement,
        since: WallMs,
        until: WallMs,
    ) -> Result<(), ExportError> {
        let mut rows = stmt.query([since, until]).map_err(|e| store.sql("export query", e))?;
        while let Some(row) = rows.next().map_err(|e| store.sql("export read", e))? {
            match self {
                Sink::Csv { w, width, n } => {
                    let mut rec = csv::StringRecord::new();
                    for i in 0..*width {
                        rec.push_field(&cell_text(row.get_ref(i).map_err(|e| store.sql("export read", e))?));
                    }
                    w.write_record(&rec)?;
                    *n += 1;
                }
                Sink::Json { w, names, n } => {
                    let mut obj = serde_json::Map::new();
                    for (i, name) in names.iter().enumerate() {
                        let v = match row.get_ref(i).map_err(|e| store.sql("export read", e))? {
                            ValueRef::Null => serde_json::Value::Null,
                            ValueRef::Integer(v) => v.into(),
                            ValueRef::Real(v) => v.into(),
                            ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned().into(),
                        };
                        obj.insert(name.clone(), v);
                    }
                    serde_json::to_writer(&mut *w, &obj).map_err(io::Error::from)?;
                    w.write_all(b"\n")?;
                    *n += 1;
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<u64, ExportError> {
        match self {
            Sink::Csv { mut w, n, .. } => {
                w.flush()?;
                Ok(n)
            }
            Sink::Json { mut w, n, .. } => {
                w.flush()?;
                Ok(n)
            }
        }
    }
}

/// The copy is for other tools, which cannot read the compact `pings` blobs: it gets a plain
/// `samples` table too, one row per ping, as the CSV export has them.
fn plain_samples(copy: &Path) -> Result<(), ExportError> {
    let conn = rusqlite::Connection::open(copy).map_err(|err| super::StoreError::Open { path: copy.into(), err })?;
    let fill = || -> rusqlite::Result<()> {
        let tx = conn.unchecked_transaction()?;
        conn.execute_batch(
            "CREATE TABLE samples (
                 ts INTEGER NOT NULL, target INTEGER NOT NULL REFERENCES targets(id), seq INTEGER NOT NULL,
                 rtt_us INTEGER, fail INTEGER, err_from TEXT, PRIMARY KEY (ts, target, seq)
             ) WITHOUT ROWID;",
        )?;
        let mut insert = conn.prepare_cached("INSERT OR IGNORE INTO samples VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
        super::pings::unpack_into(&conn, &mut insert, i64::MIN / 2, i64::MAX / 2)?;
        drop(insert);
        tx.commit()
    };
    fill().map_err(|err| ExportError::Store(super::StoreError::Sql { path: copy.into(), op: "plain samples", err }))
}

/// Copy the whole database to `dest` with the online backup API.
pub fn backup(store: &Store, dest: &Path) -> Result<(), ExportError> {
    // Copied beside, then renamed: a copy that fails (a full disk) leaves neither a partial
    // file nor a -journal that would block the next try.
    let mut partial = dest.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let clean = |p: &Path| {
        let _ = std::fs::remove_file(p);
        let mut j = p.as_os_str().to_owned();
        j.push("-journal");
        let _ = std::fs::remove_file(j);
    };
    clean(&partial);
    let copied = store
        .conn
        .backup(rusqlite::MAIN_DB, &partial, None::<fn(rusqlite::backup::Progress)>)
        .map_err(|e| ExportError::from(store.sql("online backup", e)))
        .and_then(|()| plain_samples(&partial))
        .and_then(|()| std::fs::rename(&partial, dest).map_err(ExportError::from));
    if copied.is_err() {
        clean(&partial);
    }
    copied
}
