//! Schema migrations. Each entry moves the database one version up; the version lives in
//! `PRAGMA user_version`. Never edit a released migration: add a new one.

use super::{Store, StoreError};

const MIGRATIONS: &[&str] = &[
    // 1: the agent core.
    "
    CREATE TABLE targets (
        id   INTEGER PRIMARY KEY,
        addr TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        role TEXT NOT NULL
    );
    -- One row per probe. Clustered by time (WITHOUT ROWID) so there is one B-tree, appended at
    -- its right edge, instead of a table plus a time index: fewer pages per commit.
    CREATE TABLE samples (
        ts     INTEGER NOT NULL,  -- send time, ms since the Unix epoch, UTC
        target INTEGER NOT NULL REFERENCES targets(id),
        seq    INTEGER NOT NULL,  -- ICMP sequence number
        rtt_us INTEGER,           -- round trip in microseconds; NULL when lost
        fail   INTEGER,           -- why lost: 1 timeout, 2 send error, 10-18 ICMP error; NULL when answered
        PRIMARY KEY (ts, target, seq)
    ) WITHOUT ROWID;
    -- One row per target per minute, recomputed from samples whenever that minute gets samples.
    CREATE TABLE minutes (
        ts        INTEGER NOT NULL,  -- start of the minute, ms since the Unix epoch
        target    INTEGER NOT NULL REFERENCES targets(id),
        sent      INTEGER NOT NULL,
        lost      INTEGER NOT NULL,
        min_us    INTEGER,
        mean_us   INTEGER,
        median_us INTEGER,
        p95_us    INTEGER,
        max_us    INTEGER,
        jitter_us INTEGER,           -- mean absolute difference of successive RTTs
        PRIMARY KEY (ts, target)
    ) WITHOUT ROWID;
    CREATE TABLE outages (
        id          INTEGER PRIMARY KEY,
        kind        TEXT NOT NULL,     -- lan | wan
        start_ts    INTEGER NOT NULL,
        end_ts      INTEGER,           -- NULL while ongoing
        duration_ms INTEGER,           -- measured on the monotonic clock
        detail      TEXT
    );
    CREATE INDEX outages_start ON outages(start_ts);
    CREATE TABLE events (
        id     INTEGER PRIMARY KEY,
        ts     INTEGER NOT NULL,
        kind   TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX events_ts ON events(ts);
    -- The agent's latest word: the current link state, read by `status`.
    CREATE TABLE status (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    ",
    // 2: the context probes (DNS, HTTP, bandwidth, gateway signal, weather, devices, the Pi)
    // and the router's log.
    "
    CREATE TABLE series (
        id      INTEGER PRIMARY KEY,
        probe   TEXT NOT NULL,     -- dns, http, bandwidth, gateway, weather, devices, system
        subject TEXT NOT NULL,     -- what was measured: a name@server, a URL, a radio, ...
        name    TEXT NOT NULL,     -- latency_ms, ttfb_ms, down_mbps, rsrp_dbm, temp_c, ...
        unit    TEXT NOT NULL,
        UNIQUE (probe, subject, name)
    );
    CREATE TABLE metrics (
        ts     INTEGER NOT NULL,
        series INTEGER NOT NULL REFERENCES series(id),
        value  REAL,               -- NULL when the measurement failed
        note   TEXT,               -- why it failed, or a textual value (a band list)
        PRIMARY KEY (ts, series)
    ) WITHOUT ROWID;
    CREATE TABLE syslog (
        id       INTEGER PRIMARY KEY,
        ts       INTEGER NOT NULL,  -- when it was received
        source   TEXT NOT NULL,     -- sender address or file
        facility INTEGER,
        severity INTEGER,
        host     TEXT,
        app      TEXT,
        message  TEXT NOT NULL,
        class    TEXT               -- wan_down, wan_up, dhcp, reboot, dns_failure, wifi_assoc, ...
    );
    CREATE INDEX syslog_ts ON syslog(ts);
    ",
    // 3: the newest value of a series (dashboard, /metrics, `status`) without scanning every
    // series' rows by time. Context metrics are ~10 rows a minute, so the extra index is cheap.
    "
    CREATE INDEX metrics_series_ts ON metrics(series, ts);
    ",
    // 4: a ping answered by an ICMP error is a loss with a reason (fail 10-18, see
    // `sample::IcmpError`) and a witness: the address of the router that sent the error.
    // Blind spots: time the agent did not measure (not running between two runs, or the
    // process stopped, starved or suspended). Uptime counts measured time only.
    "
    ALTER TABLE samples ADD COLUMN err_from TEXT;
    CREATE TABLE blind (
        id       INTEGER PRIMARY KEY,
        start_ts INTEGER NOT NULL,
        end_ts   INTEGER NOT NULL,
        kind     TEXT NOT NULL,     -- not_running | stalled
        detail   TEXT NOT NULL
    );
    CREATE INDEX blind_start ON blind(start_ts);
    ",
    // 5: raw pings compactly, one row per target per minute (see `pings.rs`): a ping costs
    // about 5 bytes instead of 23 and a flush touches a leaf page or two. The old table is
    // converted by `convert_samples`, a day per transaction, and dropped when empty.
    "
    CREATE TABLE pings (
        id      INTEGER PRIMARY KEY, -- minute number * 2^20 + target: clustered by time
        ts      INTEGER NOT NULL,    -- start of the minute, ms since the Unix epoch
        target  INTEGER NOT NULL REFERENCES targets(id),
        n       INTEGER NOT NULL,    -- pings in the block
        last_ts INTEGER NOT NULL,    -- the newest ping's send time
        data    BLOB NOT NULL        -- the pings: time, seq, RTT or why lost, who said so
    );
    ",
    // 6: where it broke. Path probes (ICMP echo with rising TTL) towards the anchors, hourly and
    // when an outage or a loss episode starts, one row per probe and per TTL; an outage keeps
    // the deepest hop that still answered (see `probe::path`).
    "
    CREATE TABLE paths (
        id            INTEGER PRIMARY KEY,
        ts            INTEGER NOT NULL,  -- when the probe started
        target        TEXT NOT NULL,     -- the anchor probed
        reason        TEXT NOT NULL,     -- baseline | outage | loss
        proto         TEXT NOT NULL,     -- icmp (echo) | udp (to high ports)
        outage_ts     INTEGER,           -- the start of the outage it localises
        route         TEXT NOT NULL,     -- who answered at each TTL, '*' for no one
        reached       INTEGER NOT NULL,  -- 1 when the anchor itself answered
        packets       INTEGER NOT NULL,  -- sent, all rounds
        last_good_ttl INTEGER,           -- the deepest hop that still answered
        last_good_hop TEXT,
        note          TEXT NOT NULL      -- the verdict in words
    );
    CREATE INDEX paths_ts ON paths(ts);
    CREATE TABLE hops (
        path     INTEGER NOT NULL REFERENCES paths(id) ON DELETE CASCADE,
        ttl      INTEGER NOT NULL,
        addr     TEXT,                   -- who answered (time exceeded, or the anchor); NULL: no one
        sent     INTEGER NOT NULL,
        answered INTEGER NOT NULL,
        rtt_us   INTEGER,                -- median of the answers
        error    INTEGER,                -- another ICMP error for this TTL (10-18, as samples.fail)
        err_from TEXT,                   -- and who sent it
        PRIMARY KEY (path, ttl)
    ) WITHOUT ROWID;
    ALTER TABLE outages ADD COLUMN last_good_ttl INTEGER;
    ALTER TABLE outages ADD COLUMN last_good_hop TEXT;
    ALTER TABLE outages ADD COLUMN located TEXT;
    ALTER TABLE outages ADD COLUMN located_reached INTEGER NOT NULL DEFAULT 0;
    ",
    // 7: gateway placement: the radio read once a second while the household tries a spot
    // (`wanwatch placement --spot NAME`), one row per reading and radio.
    "
    CREATE TABLE placement (
        ts       INTEGER NOT NULL,  -- ms since the Unix epoch
        spot     TEXT NOT NULL,     -- the household's name for the spot
        radio    TEXT NOT NULL,     -- 5g | 4g
        sinr_db  REAL,
        rsrp_dbm REAL,
        rsrq_db  REAL,
        bands    TEXT               -- as the gateway lists them, comma-separated
    );
    CREATE INDEX placement_spot ON placement(spot, ts);
    ",
];

/// Samples moved per transaction by the conversion: a day of 4 targets at 1 Hz is ~350,000
/// rows, a few seconds on a Pi; an interrupted conversion loses nothing and resumes here.
const CONVERT_CHUNK_MS: i64 = crate::calendar::DAY_MS;

/// Move the one-row-per-ping `samples` table (schema 1-4) into `pings`, oldest day first, each
/// day in one transaction (written and deleted together), then drop it. Safe to interrupt at
/// any point: the next open carries on. Returns the pings moved.
pub(super) fn convert_samples(store: &Store, max_chunks: Option<usize>) -> Result<u64, StoreError> {
    let conn = &store.conn;
    let exists: bool = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'samples'", [], |r| {
            r.get::<_, i64>(0).map(|n| n > 0)
        })
        .map_err(|e| store.sql("conversion", e))?;
    if !exists {
        return Ok(0);
    }
    let mut moved = 0u64;
    let mut chunks = 0;
    loop {
        let first: Option<i64> =
            conn.query_row("SELECT min(ts) FROM samples", [], |r| r.get(0)).map_err(|e| store.sql("conversion", e))?;
        let Some(first) = first else {
            conn.execute_batch("DROP TABLE samples").map_err(|e| store.sql("conversion", e))?;
            if moved > 0 {
                tracing::info!(db = %store.path.display(), moved, "raw samples converted to the compact layout");
            }
            return Ok(moved);
        };
        if max_chunks.is_some_and(|m| chunks >= m) {
            return Ok(moved);
        }
        let until = crate::calendar::minute_of(first) + CONVERT_CHUNK_MS;
        let step = || -> rusqlite::Result<u64> {
            let tx = conn.unchecked_transaction()?;
            let mut by_target: std::collections::BTreeMap<i64, Vec<super::pings::Ping>> = Default::default();
            let mut stmt = conn.prepare("SELECT target, ts, seq, rtt_us, fail, err_from FROM samples WHERE ts < ?1")?;
            let mut rows = stmt.query([until])?;
            let mut n = 0;
            while let Some(r) = rows.next()? {
                by_target.entry(r.get(0)?).or_default().push(super::pings::Ping {
                    ts: r.get(1)?,
                    seq: r.get(2)?,
                    rtt_us: r.get(3)?,
                    fail: r.get(4)?,
                    err_from: r.get(5)?,
                });
                n += 1;
            }
            drop(rows);
            drop(stmt);
            for (target, pings) in by_target {
                super::pings::merge(conn, target, pings)?;
            }
            conn.execute("DELETE FROM samples WHERE ts < ?1", [until])?;
            tx.commit()?;
            Ok(n)
        };
        moved += step().map_err(|e| store.sql("conversion", e))?;
        chunks += 1;
        // A year of raw pings takes minutes on a Pi: systemd is told the start goes on.
        let _ = sd_notify::notify(&[
            sd_notify::NotifyState::ExtendTimeoutUsec(60_000_000),
            sd_notify::NotifyState::Status(&format!("converting raw samples: {moved} moved")),
        ]);
        tracing::info!(db = %store.path.display(), moved, "converting raw samples to the compact layout");
    }
}

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Never add our tables to another application's database (a wrong --db): a file with no
/// schema version of ours and tables of its own is refused before anything is changed in it.
pub(super) fn refuse_foreign(store: &Store) -> Result<(), StoreError> {
    let conn = &store.conn;
    let corrupt = |err| StoreError::Corrupt { path: store.path.clone(), err };
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(corrupt)?;
    if version > 0 {
        return Ok(());
    }
    let theirs: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name LIMIT 5")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .map_err(corrupt)?;
    if theirs.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Foreign { path: store.path.clone(), tables: theirs.join(", ") })
    }
}

pub(super) fn migrate(store: &Store) -> Result<(), StoreError> {
    migrate_to(store, SCHEMA_VERSION)
}

/// Apply the migrations up to `last` (tests make databases as older versions left them).
pub(super) fn migrate_to(store: &Store, last: i64) -> Result<(), StoreError> {
    let conn = &store.conn;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|err| StoreError::Corrupt { path: store.path.clone(), err })?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew { path: store.path.clone(), found: version, known: SCHEMA_VERSION });
    }
    if version == 0 {
        // Must precede the first table: lets the size cap hand pages back to the filesystem.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL").map_err(|e| store.sql("auto_vacuum", e))?;
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().take(last as usize).skip(version as usize) {
        let next = i as i64 + 1;
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {next}; COMMIT;")).map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            store.sql("migration", e)
        })?;
    }
    Ok(())
}
