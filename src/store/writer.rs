//! The batched writer: a thread that owns the agent's database connection, buffers records and
//! writes them in one transaction per flush interval, recomputing the rollups of every minute
//! the batch touched.
//!
//! A failed flush (disk full, I/O error) rolls back, keeps the batch and tries again at the next
//! interval, so a full disk costs no data until the buffer limit and never corrupts the file.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

use super::pings::Ping;
use super::rollup;
use super::{Store, StoreError, retention};
use crate::calendar::MINUTE_MS;
use crate::clock::WallClock;
use crate::config::StoreConfig;
use crate::sample::{EventKind, Metric, Record, RouterClass, Target, Trace, WallMs};

/// Memory the backlog may take while the disk refuses writes (about 12 h of 4 targets at
/// 1 Hz, or far less with a router log flood). Over it, router log lines go first, then
/// context measurements, then the oldest ping samples; outages, state and events never.
const MAX_PENDING_BYTES: usize = 32 << 20;
/// Records per transaction: a backlog is written in pieces, so a disk with a little room
/// takes some of it and a retry does not start from nothing.
const CHUNK: usize = 5_000;
/// The final flush gives up after this: systemd stops a service after 20 s.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(8);
/// How long a run keeps the keys of what it wrote, so a boot-time clock step can fix them.
const REWRITE_WINDOW: Duration = Duration::from_secs(20 * 60);
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// A minute's rollup waits until the minute is over and its last pings had this long to come
/// back (timed flushes only): recomputing an open minute at every flush rewrote its page each
/// time, for a figure no reader wants half-done.
const LATE_MS: i64 = 5_000;
/// Outages and state changes are written this soon, whatever the flush interval: they are
/// what the user will ask about after a power cut.
const IMPORTANT_WITHIN: Duration = Duration::from_secs(1);

/// Why a flush did not write everything.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error("the writer thread is gone")]
    Gone,
    #[error("gave up with {0} records unwritten")]
    GaveUp(usize),
    #[error("writing {records} records to {}: {err}", path.display())]
    Write { records: usize, path: std::path::PathBuf, err: rusqlite::Error },
}

enum Msg {
    Record(Record),
    Flush(mpsc::SyncSender<Result<(), FlushError>>),
    Shutdown,
}

/// What the writer did over its life, returned by [`Writer::shutdown`].
#[derive(Debug, Default, Clone)]
pub struct WriterReport {
    pub flushes: u64,
    pub failed_flushes: u64,
    pub samples_written: u64,
    /// Records shed from the backlog (router log lines, measurements, samples), and records
    /// still unwritten when the final flush gave up.
    pub dropped: u64,
    pub lost_at_shutdown: u64,
}

/// Rough memory of a record in the backlog, for the bound.
fn approx_bytes(r: &Record) -> usize {
    const BASE: usize = 96;
    BASE + match r {
        Record::Syslog(l) => l.message.len() + l.source.len() + l.host.as_ref().map_or(0, String::len) + 32,
        Record::Metric(m) => m.subject.len() + m.note.as_ref().map_or(0, String::len),
        Record::Event { kind, detail, .. } => kind.as_str().len() + detail.len(),
        Record::Blind(b) => b.detail.len(),
        Record::Path(t) => t.verdict.note.len() + t.hops.len() * 48,
        _ => 0,
    }
}

/// Records queue in a channel the writer thread does not block on: it sleeps (parked) until
/// its next flush and is woken only for what cannot wait (an outage, a state change, a flush
/// asked for, the stop) or a queue grown large, not once per ping.
pub struct Writer {
    tx: mpsc::Sender<Msg>,
    handle: Option<JoinHandle<WriterReport>>,
    /// Records sent since the writer was last woken.
    queued: AtomicUsize,
}

/// Wake the writer after this many records even if none is urgent, so a flood is taken in
/// (and shed, past its bound) as it comes rather than a flush interval later.
const WAKE_EVERY: usize = 1_000;

/// Records that must reach the file within `IMPORTANT_WITHIN`.
fn urgent(r: &Record) -> bool {
    matches!(r, Record::OutageStart { .. } | Record::OutageEnd { .. } | Record::State { .. })
}

impl Writer {
    /// Register `targets` (their index becomes their id in [`crate::sample::Sample::target`])
    /// and start the writer thread.
    pub fn spawn(store: Store, targets: &[Target], cfg: StoreConfig, now: WallClock) -> Result<Writer, StoreError> {
        let ids = register_targets(&store, targets)?;
        close_dangling_outages(&store)?;
        roll_up_owed(&store)?;
        let (tx, rx) = mpsc::channel();
        let mut state = WriterState {
            store,
            ids,
            cfg,
            now,
            pending: Vec::new(),
            pending_bytes: 0,
            shed: (0, 0, 0),
            open_outage: None,
            run: RunLog {
                keys: Some(Vec::new()),
                started: Instant::now(),
                ts_range: None,
                first_outage: None,
                first_event: None,
                first_syslog: None,
                first_blind: None,
                first_path: None,
                metric_keys: Some(Vec::new()),
                metric_range: None,
            },
            report: WriterReport::default(),
            last_error: None,
            series: HashMap::new(),
            deferred: BTreeSet::new(),
        };
        let handle = std::thread::Builder::new()
            .name("wanwatch-writer".into())
            .spawn(move || state.run(rx))
            .expect("spawn writer thread");
        Ok(Writer { tx, handle: Some(handle), queued: AtomicUsize::new(0) })
    }

    pub fn send(&self, record: Record) {
        let wake = urgent(&record) || self.queued.fetch_add(1, Ordering::Relaxed) + 1 >= WAKE_EVERY;
        // Fails only when the writer thread has died, which shutdown() reports.
        let _ = self.tx.send(Msg::Record(record));
        if wake {
            self.wake();
        }
    }

    fn wake(&self) {
        self.queued.store(0, Ordering::Relaxed);
        if let Some(h) = &self.handle {
            h.thread().unpark();
        }
    }

    /// Is the writer thread still running? (It only ends at shutdown; anything else is a bug
    /// the service watchdog should see.)
    pub fn is_alive(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Write everything sent so far, now.
    pub fn flush(&self) -> Result<(), FlushError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.tx.send(Msg::Flush(tx)).map_err(|_| FlushError::Gone)?;
        self.wake();
        rx.recv().map_err(|_| FlushError::Gone)?
    }

    /// Flush everything and stop.
    pub fn shutdown(mut self) -> WriterReport {
        let _ = self.tx.send(Msg::Shutdown);
        self.wake();
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = self.tx.send(Msg::Shutdown);
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

fn register_targets(store: &Store, targets: &[Target]) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::with_capacity(targets.len());
    for t in targets {
        store
            .conn
            .execute(
                "INSERT INTO targets (addr, name, role) VALUES (?1, ?2, ?3)
                 ON CONFLICT(addr) DO UPDATE SET name = excluded.name, role = excluded.role",
                params![t.addr.to_string(), t.name, t.role.as_str()],
            )
            .map_err(|e| store.sql("register target", e))?;
        let id: i64 = store
            .conn
            .query_row("SELECT id FROM targets WHERE addr = ?1", [t.addr.to_string()], |r| r.get(0))
            .map_err(|e| store.sql("register target", e))?;
        ids.push(id);
    }
    Ok(ids)
}

/// Rollups a run that ended without a clean stop (kill -9, power cut) still owed: its open
/// minutes had their pings stored but not yet rolled up. Everything from the newest rollup on is
/// recomputed (a minute or two of pings).
fn roll_up_owed(store: &Store) -> Result<(), StoreError> {
    let conn = &store.conn;
    let owed = || -> rusqlite::Result<()> {
        let newest: Option<WallMs> = conn.query_row("SELECT max(ts) FROM minutes", [], |r| r.get(0))?;
        let from = super::pings::key(newest.unwrap_or(WallMs::MIN / 2), 0);
        let minutes: BTreeSet<WallMs> = conn
            .prepare("SELECT DISTINCT ts FROM pings WHERE id >= ?1")?
            .query_map([from], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if minutes.is_empty() {
            return Ok(());
        }
        let tx = conn.unchecked_transaction()?;
        rollup::recompute(conn, &minutes)?;
        tx.commit()
    };
    owed().map_err(|e| store.sql("roll up what the last run owed", e))
}

/// An outage still open in the file means the agent died during it: end it at the newest
/// sample, the last moment anything was known.
fn close_dangling_outages(store: &Store) -> Result<(), StoreError> {
    store
        .conn
        .execute(
            &format!(
                "UPDATE outages SET
                    end_ts = max(start_ts, coalesce({}, start_ts)),
                    detail = 'agent stopped during the outage; end is its last sample'
                 WHERE end_ts IS NULL",
                super::pings::LAST_TS_SQL
            ),
            [],
        )
        .map_err(|e| store.sql("close dangling outages", e))?;
    store
        .conn
        .execute("UPDATE outages SET duration_ms = end_ts - start_ts WHERE duration_ms IS NULL", [])
        .map_err(|e| store.sql("close dangling outages", e))?;
    Ok(())
}

/// What this run has written, so that a clock step at boot can move it.
#[derive(Clone)]
struct RunLog {
    /// (ts, target id, seq) of every sample, while the run is young.
    keys: Option<Vec<(WallMs, i64, u16)>>,
    started: Instant,
    ts_range: Option<(WallMs, WallMs)>,
    first_outage: Option<i64>,
    first_event: Option<i64>,
    first_syslog: Option<i64>,
    first_blind: Option<i64>,
    first_path: Option<i64>,
    /// (ts, series id) of every metric, while the run is young.
    metric_keys: Option<Vec<(WallMs, i64)>>,
    metric_range: Option<(WallMs, WallMs)>,
}

struct WriterState {
    store: Store,
    ids: Vec<i64>,
    cfg: StoreConfig,
    now: WallClock,
    pending: Vec<Record>,
    /// approx_bytes of everything in `pending`.
    pending_bytes: usize,
    /// Shed since writes last worked: (router log lines, measurements, samples).
    shed: (u64, u64, u64),
    open_outage: Option<i64>,
    run: RunLog,
    report: WriterReport,
    last_error: Option<String>,
    /// (probe, subject, name) -> series id.
    series: HashMap<(&'static str, String, &'static str), i64>,
    /// Minutes with new pings whose rollup waits for the minute to end (see `LATE_MS`).
    deferred: BTreeSet<WallMs>,
}

/// The id of a metric's series, created on first use.
fn series_id(
    conn: &Connection,
    cache: &mut HashMap<(&'static str, String, &'static str), i64>,
    m: &Metric,
) -> rusqlite::Result<i64> {
    let key = (m.series.probe, m.subject.clone(), m.series.name);
    if let Some(id) = cache.get(&key) {
        return Ok(*id);
    }
    conn.execute(
        "INSERT INTO series (probe, subject, name, unit) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        params![m.series.probe, m.subject, m.series.name, m.series.unit],
    )?;
    let id = conn.query_row(
        "SELECT id FROM series WHERE probe = ?1 AND subject = ?2 AND name = ?3",
        params![m.series.probe, m.subject, m.series.name],
        |r| r.get(0),
    )?;
    cache.insert(key, id);
    Ok(id)
}

impl WriterState {
    fn run(&mut self, rx: mpsc::Receiver<Msg>) -> WriterReport {
        let mut next_flush = Instant::now() + self.cfg.flush_interval;
        let mut next_retention = Instant::now();
        loop {
            // Take in everything queued, then sleep until the next flush or a wake-up (an
            // unpark that came before the park makes the park return at once: none is lost).
            loop {
                match rx.try_recv() {
                    Ok(Msg::Record(r)) => {
                        if urgent(&r) {
                            next_flush = next_flush.min(Instant::now() + IMPORTANT_WITHIN);
                        }
                        self.push(r);
                    }
                    Ok(Msg::Flush(reply)) => {
                        // An asked-for flush leaves no rollup owed.
                        let _ = reply.send(self.flush_until(None).and_then(|()| self.roll_up_deferred(true)));
                    }
                    Ok(Msg::Shutdown) | Err(TryRecvError::Disconnected) => return self.stop(&rx),
                    Err(TryRecvError::Empty) => break,
                }
            }
            if Instant::now() >= next_flush {
                let flushed = self.flush_until(None).and_then(|()| self.roll_up_deferred(false));
                if flushed.is_ok() {
                    self.check_cap();
                }
                next_flush = Instant::now() + self.cfg.flush_interval;
                if Instant::now() >= next_retention {
                    self.retention();
                    next_retention = Instant::now() + RETENTION_EVERY;
                }
            }
            std::thread::park_timeout(next_flush.saturating_duration_since(Instant::now()));
        }
    }

    /// The last flush: everything still queued, and the open minutes' rollups.
    fn stop(&mut self, rx: &mpsc::Receiver<Msg>) -> WriterReport {
        while let Ok(Msg::Record(r)) = rx.try_recv() {
            self.push(r);
        }
        let deadline = Some(Instant::now() + SHUTDOWN_BUDGET);
        // The open minutes' rollups too: the file is complete when the agent stops.
        let last = self.flush_until(deadline).and_then(|()| self.roll_up_deferred(true));
        // The cap holds after the last flush as after every other (what it deleted is an event).
        let last = last.and_then(|()| {
            self.check_cap();
            self.flush_until(deadline)
        });
        if let Err(e) = last {
            self.report.lost_at_shutdown = self.pending.len() as u64;
            tracing::error!(error = %e, "final flush failed; {} records lost", self.pending.len());
        }
        let _ = self.store.conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
        std::mem::take(&mut self.report)
    }

    fn push(&mut self, r: Record) {
        self.pending_bytes += approx_bytes(&r);
        self.pending.push(r);
        if self.pending_bytes > MAX_PENDING_BYTES {
            self.shed();
        }
    }

    /// The backlog is over its bound (the disk has refused writes for a while): drop down to
    /// three quarters of it, oldest first, router log before measurements before samples.
    fn shed(&mut self) {
        let target = MAX_PENDING_BYTES / 4 * 3;
        for kind in 0..3 {
            let mut excess = self.pending_bytes.saturating_sub(target);
            if excess == 0 {
                break;
            }
            let mut freed = 0;
            let mut n = 0u64;
            self.pending.retain(|r| {
                let droppable =
                    matches!((kind, r), (0, Record::Syslog(_)) | (1, Record::Metric(_)) | (2, Record::Sample(_)));
                if droppable && excess > 0 {
                    let b = approx_bytes(r);
                    excess = excess.saturating_sub(b);
                    freed += b;
                    n += 1;
                    false
                } else {
                    true
                }
            });
            self.pending_bytes -= freed;
            self.report.dropped += n;
            match kind {
                0 => self.shed.0 += n,
                1 => self.shed.1 += n,
                _ => self.shed.2 += n,
            }
        }
    }

    /// Write the backlog a chunk per transaction until it is empty, an error stops it, or
    /// `deadline` passes.
    fn flush_until(&mut self, deadline: Option<Instant>) -> Result<(), FlushError> {
        while !self.pending.is_empty() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(FlushError::GaveUp(self.pending.len()));
            }
            let n = self.pending.len().min(CHUNK);
            self.flush_chunk(n)?;
            if !self.pending.is_empty() {
                // A backlog larger than the room: the cap makes room (chatter first) as it goes.
                self.check_cap();
            }
        }
        if self.shed != (0, 0, 0) {
            let (lines, metrics, samples) = std::mem::take(&mut self.shed);
            let detail = format!(
                "while the database could not be written the backlog reached its {} MB bound: dropped \
                 {lines} router log lines, {metrics} context measurements and {samples} ping samples",
                MAX_PENDING_BYTES >> 20
            );
            tracing::warn!("{detail}");
            let now = self.now.now();
            self.push(Record::Event { ts: now, kind: EventKind::BacklogDropped, detail });
            let n = self.pending.len();
            self.flush_chunk(n)?;
        }
        Ok(())
    }

    /// Roll up the deferred minutes that have ended since (a timed flush may have carried no
    /// record to do it), or all of them (`all`: a flush asked for, the stop).
    fn roll_up_deferred(&mut self, all: bool) -> Result<(), FlushError> {
        let now = self.now.now();
        let due: BTreeSet<WallMs> =
            self.deferred.iter().copied().filter(|&m| all || m + MINUTE_MS + LATE_MS <= now).collect();
        if due.is_empty() {
            return Ok(());
        }
        let conn = &self.store.conn;
        let write = || -> rusqlite::Result<()> {
            let tx = conn.unchecked_transaction()?;
            rollup::recompute(conn, &due)?;
            tx.commit()
        };
        match write() {
            Ok(()) => {
                self.deferred.retain(|m| !due.contains(m));
                Ok(())
            }
            Err(err) => {
                tracing::warn!(error = %err, "rolling up {} minutes failed; will retry", due.len());
                Err(FlushError::Write { records: self.pending.len(), path: self.store.path.clone(), err })
            }
        }
    }

    fn flush_chunk(&mut self, n: usize) -> Result<(), FlushError> {
        match self.write_batch(n) {
            Ok(samples) => {
                self.report.flushes += 1;
                self.report.samples_written += samples;
                let freed: usize = self.pending.drain(..n).map(|r| approx_bytes(&r)).sum();
                self.pending_bytes = self.pending_bytes.saturating_sub(freed);
                if self.last_error.take().is_some() {
                    tracing::info!(db = %self.store.path.display(), "database writes work again");
                }
                if self.run.started.elapsed() > REWRITE_WINDOW {
                    self.run.keys = None;
                    self.run.metric_keys = None;
                }
                Ok(())
            }
            Err(e) => {
                self.report.failed_flushes += 1;
                // Say it once, not every few seconds for as long as the disk stays full.
                let cause = e.to_string();
                let err = FlushError::Write { records: self.pending.len(), path: self.store.path.clone(), err: e };
                if self.last_error.as_deref() != Some(&cause) {
                    tracing::error!("{err}; keeping them in memory and retrying");
                    self.last_error = Some(cause);
                }
                Err(err)
            }
        }
    }

    /// One transaction: every pending record and the rollups they touch. Nothing else is
    /// rewritten per flush (the newest sample is the heartbeat): every page a commit touches
    /// is written to the SD card twice (WAL, then checkpoint).
    fn write_batch(&mut self, n: usize) -> rusqlite::Result<u64> {
        // The run log is updated as the batch goes and put back as it was if the batch fails.
        // (Cheap: it holds keys only while the run is young.)
        let saved = (self.run.clone(), self.open_outage, self.deferred.clone());
        let result = self.write_batch_inner(n);
        if result.is_err() {
            (self.run, self.open_outage, self.deferred) = saved;
        }
        result
    }

    fn write_batch_inner(&mut self, n: usize) -> rusqlite::Result<u64> {
        let conn = &self.store.conn;
        let tx = conn.unchecked_transaction()?;
        let mut touched = BTreeSet::new();
        let run = &mut self.run;
        let mut samples = 0;
        let mut pings: HashMap<i64, Vec<Ping>> = HashMap::new();
        for rec in &self.pending[..n] {
            match rec {
                Record::Sample(s) => {
                    let id = self.ids[s.target];
                    pings.entry(id).or_default().push(Ping {
                        ts: s.ts,
                        seq: s.seq,
                        rtt_us: s.rtt.ok(),
                        fail: s.rtt.err().map(|f| f.code()),
                        err_from: s.rtt.err().and_then(|f| f.router()).map(|a| a.to_string()),
                    });
                    if let Some(k) = run.keys.as_mut() {
                        k.push((s.ts, id, s.seq));
                    }
                    run.ts_range = Some(run.ts_range.map_or((s.ts, s.ts), |(a, b)| (a.min(s.ts), b.max(s.ts))));
                    samples += 1;
                }
                Record::OutageStart { kind, start } => {
                    conn.execute(
                        "INSERT INTO outages (kind, start_ts) VALUES (?1, ?2)",
                        params![kind.as_str(), start],
                    )?;
                    let id = conn.last_insert_rowid();
                    self.open_outage = Some(id);
                    run.first_outage.get_or_insert(id);
                }
                Record::OutageEnd { end, duration_ms } => {
                    if let Some(id) = self.open_outage.take() {
                        conn.execute(
                            "UPDATE outages SET end_ts = ?1, duration_ms = ?2 WHERE id = ?3",
                            params![end, duration_ms, id],
                        )?;
                    }
                }
                Record::State { state, since } => {
                    conn.execute(
                        "INSERT INTO status (key, value) VALUES ('state', ?1), ('state_since', ?2)
                         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        params![state.as_str(), since.to_string()],
                    )?;
                }
                Record::Event { ts, kind, detail } => {
                    conn.execute(
                        "INSERT INTO events (ts, kind, detail) VALUES (?1, ?2, ?3)",
                        params![ts, kind.as_str(), detail],
                    )?;
                    run.first_event.get_or_insert(conn.last_insert_rowid());
                }
                Record::Metric(m) => {
                    let id = series_id(conn, &mut self.series, m)?;
                    conn.prepare_cached(
                        "INSERT OR REPLACE INTO metrics (ts, series, value, note) VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![m.ts, id, m.value, m.note])?;
                    if let Some(k) = run.metric_keys.as_mut() {
                        k.push((m.ts, id));
                    }
                    run.metric_range = Some(run.metric_range.map_or((m.ts, m.ts), |(a, b)| (a.min(m.ts), b.max(m.ts))));
                }
                Record::Syslog(l) => {
                    conn.prepare_cached(
                        "INSERT INTO syslog (ts, source, facility, severity, host, app, message, class)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )?
                    .execute(params![
                        l.ts,
                        l.source,
                        l.facility,
                        l.severity,
                        l.host,
                        l.app,
                        l.message,
                        l.class.map(RouterClass::as_str)
                    ])?;
                    run.first_syslog.get_or_insert(conn.last_insert_rowid());
                }
                Record::Blind(b) => {
                    conn.prepare_cached("INSERT INTO blind (start_ts, end_ts, kind, detail) VALUES (?1, ?2, ?3, ?4)")?
                        .execute(params![b.start, b.end.max(b.start), b.kind.as_str(), b.detail])?;
                    run.first_blind.get_or_insert(conn.last_insert_rowid());
                }
                Record::Path(t) => {
                    let id = write_path(conn, t)?;
                    run.first_path.get_or_insert(id);
                }
                Record::ShiftRun { delta_ms } => {
                    // Pings before the step are in the store before they move.
                    write_pings(conn, &mut pings, &mut touched)?;
                    shift_run(conn, *delta_ms, run, &mut touched)?;
                    if let Some(k) = run.keys.as_mut() {
                        k.iter_mut().for_each(|(ts, _, _)| *ts += delta_ms);
                    }
                    if let Some(k) = run.metric_keys.as_mut() {
                        k.iter_mut().for_each(|(ts, _)| *ts += delta_ms);
                    }
                    run.ts_range = run.ts_range.map(|(a, b)| (a + delta_ms, b + delta_ms));
                    run.metric_range = run.metric_range.map(|(a, b)| (a + delta_ms, b + delta_ms));
                }
            }
        }
        write_pings(conn, &mut pings, &mut touched)?;
        // Minutes still open wait (`LATE_MS`); those deferred before and ended since go now.
        touched.append(&mut self.deferred);
        let now = self.now.now();
        self.deferred = touched.extract_if(.., |&m| m + MINUTE_MS + LATE_MS > now).collect();
        rollup::recompute(conn, &touched)?;
        tx.commit()?;
        Ok(samples)
    }

    fn retention(&mut self) {
        let now = self.now.now();
        match retention::apply(&self.store, now, &self.cfg) {
            Ok(r) => self.report_cap(now, &r.capped),
            Err(e) => tracing::error!(error = %e, "retention failed; will retry in an hour"),
        }
    }

    /// After a flush: over the cap already? (Two pragmas when not.)
    fn check_cap(&mut self) {
        let now = self.now.now();
        match retention::hold_cap(&self.store, now, self.cfg.max_db_bytes) {
            Ok(capped) => self.report_cap(now, &capped),
            Err(e) => tracing::error!(error = %e, "holding the size cap failed; will retry after the next flush"),
        }
    }

    fn report_cap(&mut self, now: WallMs, capped: &[(&'static str, usize)]) {
        if capped.is_empty() {
            return;
        }
        let what: Vec<String> = capped.iter().map(|(stage, n)| format!("{n} {stage}")).collect();
        let detail = format!(
            "database over its {} MB cap: deleted the oldest {}",
            retention::effective_cap(&self.store, self.cfg.max_db_bytes) >> 20,
            what.join(", ")
        );
        tracing::warn!("{detail}");
        self.push(Record::Event { ts: now, kind: EventKind::SizeCap, detail });
    }
}

/// Add the batch's pings to their minutes' blocks, one block write per target and minute.
fn write_pings(
    conn: &Connection,
    pings: &mut HashMap<i64, Vec<Ping>>,
    touched: &mut BTreeSet<WallMs>,
) -> rusqlite::Result<()> {
    for (target, list) in pings.drain() {
        touched.extend(super::pings::merge(conn, target, list)?);
    }
    Ok(())
}

/// A path probe and its hops; an outage's probe also gives the outage its localisation, the
/// deepest over its anchors.
fn write_path(conn: &Connection, t: &Trace) -> rusqlite::Result<i64> {
    let v = &t.verdict;
    let hop = v.last_good_hop.map(|a| a.to_string());
    conn.prepare_cached(
        "INSERT INTO paths (ts, target, reason, proto, outage_ts, route, reached, packets, last_good_ttl,
                            last_good_hop, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        t.ts,
        t.target.to_string(),
        t.reason.as_str(),
        t.proto.as_str(),
        t.outage_start,
        t.route(),
        t.reached,
        t.packets,
        v.last_good_ttl,
        hop,
        v.note
    ])?;
    let id = conn.last_insert_rowid();
    let mut insert = conn.prepare_cached(
        "INSERT INTO hops (path, ttl, addr, sent, answered, rtt_us, error, err_from)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for h in &t.hops {
        insert.execute(params![
            id,
            h.ttl,
            h.addr.map(|a| a.to_string()),
            h.sent,
            h.answered,
            h.rtt_us,
            h.error.map(|(e, _)| e as i64),
            h.error.map(|(_, r)| r.to_string())
        ])?;
    }
    if let Some(start) = t.outage_start {
        // A probe that reached its anchor says nothing about where it broke (the outage was
        // over, or on another path): it only stands in until one that did not reach comes.
        conn.prepare_cached(
            "UPDATE outages SET last_good_ttl = ?1, last_good_hop = ?2, located = ?3, located_reached = ?5
             WHERE start_ts = ?4 AND (located IS NULL OR (?5 = 0 AND (located_reached
                   OR coalesce(last_good_ttl, 0) < coalesce(?1, 0))))",
        )?
        .execute(params![v.last_good_ttl, hop, v.note, start, t.reached])?;
    }
    Ok(id)
}

/// Move everything this run wrote by `delta` ms (the stamps were made before the clock was set).
fn shift_run(conn: &Connection, delta: i64, run: &RunLog, touched: &mut BTreeSet<WallMs>) -> rusqlite::Result<()> {
    if let Some((lo, hi)) = run.ts_range {
        let minutes = match run.keys.as_deref() {
            Some(keys) => {
                let keys: std::collections::HashSet<(WallMs, i64, u16)> = keys.iter().copied().collect();
                super::pings::shift(conn, delta, lo, hi, |target, p| keys.contains(&(p.ts, target, p.seq)))?
            }
            // The run is too old to have kept its keys: move its whole time range.
            None => super::pings::shift(conn, delta, lo, hi, |_, p| p.ts >= lo && p.ts <= hi)?,
        };
        // Every minute a ping left or joined: its rollup is recomputed.
        touched.extend(minutes);
    }
    if let Some(id) = run.first_outage {
        conn.execute(
            "UPDATE outages SET start_ts = start_ts + ?1, end_ts = end_ts + ?1 WHERE id >= ?2",
            params![delta, id],
        )?;
    }
    if let Some(id) = run.first_event {
        conn.execute("UPDATE events SET ts = ts + ?1 WHERE id >= ?2", params![delta, id])?;
    }
    // Context rows move with the rest of the run, so a rain shower or a router's "WAN down"
    // still sits beside the outage it came with.
    match (run.metric_keys.as_deref(), run.metric_range) {
        (Some(keys), _) => {
            let mut update =
                conn.prepare_cached("UPDATE OR IGNORE metrics SET ts = ts + ?1 WHERE ts = ?2 AND series = ?3")?;
            for &(ts, series) in keys {
                update.execute(params![delta, ts, series])?;
            }
        }
        (None, Some((lo, hi))) => {
            conn.execute(
                "UPDATE OR IGNORE metrics SET ts = ts + ?1 WHERE ts >= ?2 AND ts <= ?3",
                params![delta, lo, hi],
            )?;
        }
        (None, None) => {}
    }
    if let Some(id) = run.first_syslog {
        conn.execute("UPDATE syslog SET ts = ts + ?1 WHERE id >= ?2", params![delta, id])?;
    }
    if let Some(id) = run.first_path {
        conn.execute("UPDATE paths SET ts = ts + ?1, outage_ts = outage_ts + ?1 WHERE id >= ?2", params![delta, id])?;
    }
    // A blind spot before this run started keeps its start (the previous run's last write,
    // stamped by a clock that was right then); its end and every stall move with the run.
    if let Some(id) = run.first_blind {
        conn.execute(
            "UPDATE blind SET start_ts = start_ts + CASE kind WHEN 'not_running' THEN 0 ELSE ?1 END,
                              end_ts = max(end_ts + ?1, start_ts) WHERE id >= ?2",
            params![delta, id],
        )?;
    }
    Ok(())
}
