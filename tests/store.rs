//! The store on real SQLite files: rollups, clock steps, retention, the size cap, a full disk.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use wanwatch::clock::WallClock;
use wanwatch::config::StoreConfig;
use wanwatch::sample::{Failure, OutageKind, Record, Role, Sample, Target};
use wanwatch::store::pings::Ping;
use wanwatch::store::writer::Writer;
use wanwatch::store::{Store, retention};

const T0: i64 = 1_790_000_040_000; // a minute boundary
const MIN: i64 = 60_000;

fn cfg() -> StoreConfig {
    StoreConfig {
        flush_interval: Duration::from_secs(3600), // tests flush explicitly
        raw_retention_days: 90,
        rollup_retention_days: 1095,
        max_db_bytes: 4096 << 20,
        journal_size_limit_bytes: 16 << 20,
    }
}

fn targets() -> Vec<Target> {
    ["192.0.2.1", "198.51.100.1"]
        .iter()
        .enumerate()
        .map(|(i, a)| Target {
            addr: a.parse::<IpAddr>().unwrap(),
            role: if i == 0 { Role::Gateway } else { Role::Anchor },
            name: format!("t{i}"),
        })
        .collect()
}

/// `n` pings of target 1 at 1 Hz from `t0` (RTTs varied a little), written a day at a time.
fn fill_pings(store: &Store, t0: i64, first: i64, n: i64) {
    let pings: Vec<Ping> = (first..first + n)
        .map(|i| Ping {
            ts: t0 + i * 1000,
            seq: (i % 65536) as u16,
            rtt_us: Some(20_000 + (i * 7_919 % 9_973) as u32),
            fail: None,
            err_from: None,
        })
        .collect();
    for day in pings.chunks(86_400) {
        store.insert_pings(1, day.to_vec()).unwrap();
    }
}

fn sample(target: usize, ts: i64, seq: u16, rtt_us: Option<u32>) -> Record {
    Record::Sample(Sample { target, ts, mono: Instant::now(), seq, rtt: rtt_us.ok_or(Failure::Timeout) })
}

fn writer(path: &Path, cfg: StoreConfig, now: i64) -> Writer {
    let store = Store::open(path, cfg.journal_size_limit_bytes).unwrap();
    Writer::spawn(store, &targets(), cfg, WallClock::from_fn(move || now)).unwrap()
}

/// (minute, target, sent, lost, median, p95, jitter)
type MinuteRow = (i64, i64, i64, i64, Option<i64>, Option<i64>, Option<i64>);

fn minutes(path: &Path) -> Vec<MinuteRow> {
    let c = Connection::open(path).unwrap();
    let mut s = c
        .prepare("SELECT ts, target, sent, lost, median_us, p95_us, jitter_us FROM minutes ORDER BY ts, target")
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn rollups_match_hand_computed_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let w = writer(&db, cfg(), T0 + 3 * MIN);
    // Target 0: minute 0 gets 1..=20 ms every 3 s with the 7th lost; minute 1 gets 4 pings.
    for i in 0..20u16 {
        let rtt = if i == 6 { None } else { Some((i as u32 + 1) * 1000) };
        w.send(sample(0, T0 + i as i64 * 3000, i, rtt));
    }
    for (i, rtt) in [10_000, 30_000, 10_000, 30_000].iter().enumerate() {
        w.send(sample(0, T0 + MIN + i as i64 * 1000, 100 + i as u16, Some(*rtt)));
    }
    // Target 1: all lost in minute 0.
    for i in 0..5u16 {
        w.send(sample(1, T0 + i as i64 * 1000, i, None));
    }
    w.flush().unwrap();
    let m = minutes(&db);
    // Answered in minute 0: 1..=20 ms without 7 -> 19 values, median 11 ms (10th of 19),
    // p95 = 19 + 0.1*(20-19) = 19.1 ms (numpy), jitter: 17 steps of 1 ms and one of 2 ms -> 19/18 ms.
    assert_eq!(m[0], (T0, 1, 20, 1, Some(11_000), Some(19_100), Some(1_056)));
    assert_eq!(m[1], (T0, 2, 5, 5, None, None, None));
    assert_eq!(m[2], (T0 + MIN, 1, 4, 0, Some(20_000), Some(30_000), Some(20_000)));
    assert_eq!(m.len(), 3);
    drop(w);
}

#[test]
fn a_late_sample_recomputes_its_minute_instead_of_duplicating_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let w = writer(&db, cfg(), T0);
    w.send(sample(0, T0 + 1000, 1, Some(5000)));
    w.flush().unwrap();
    // A ping sent in the same minute, answered after the flush; and a restart in the same minute.
    w.send(sample(0, T0 + 2000, 2, Some(7000)));
    w.flush().unwrap();
    drop(w);
    let w = writer(&db, cfg(), T0);
    w.send(sample(0, T0 + 3000, 3, Some(9000)));
    w.flush().unwrap();
    let m = minutes(&db);
    assert_eq!(m, vec![(T0, 1, 3, 0, Some(7000), Some(8800), Some(2000))]);
}

#[test]
fn boot_time_clock_step_moves_the_run_and_its_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    // A previous run wrote minute T0 .. T0+2min.
    let w = writer(&db, cfg(), T0);
    for i in 0..120u16 {
        w.send(sample(1, T0 + i as i64 * 1000, i, Some(20_000)));
    }
    w.flush().unwrap();
    drop(w);
    // This run booted with fake-hwclock's time (inside the previous run's range!), wrote 90 s,
    // then NTP stepped the clock 3 days forward.
    let step = 3 * 24 * 3600 * 1000;
    let boot = T0 + 30_000;
    let w = writer(&db, cfg(), boot + step);
    w.send(Record::Event { ts: boot, kind: wanwatch::sample::EventKind::AgentStart, detail: String::new() });
    w.send(Record::OutageStart { kind: OutageKind::Wan, start: boot + 10_000 });
    w.send(Record::OutageEnd { end: boot + 20_000, duration_ms: 10_000 });
    for i in 0..90u16 {
        w.send(sample(1, boot + i as i64 * 1000, 1000 + i, Some(40_000)));
    }
    w.flush().unwrap();
    w.send(Record::ShiftRun { delta_ms: step });
    w.send(sample(1, boot + step + 90_000, 1090, Some(40_000)));
    w.flush().unwrap();
    drop(w);

    let c = Connection::open(&db).unwrap();
    // The previous run's minutes are exactly as before: 60 pings of 20 ms each.
    let m = minutes(&db);
    assert_eq!(m[0], (T0, 2, 60, 0, Some(20_000), Some(20_000), Some(0)));
    assert_eq!(m[1], (T0 + MIN, 2, 60, 0, Some(20_000), Some(20_000), Some(0)));
    // This run's 91 samples now sit 3 days later, rolled up there, in order.
    let moved: i64 = c.query_row("SELECT sum(sent) FROM minutes WHERE ts >= ?1", [T0 + step], |r| r.get(0)).unwrap();
    assert_eq!(moved, 91);
    let all: i64 = c.query_row("SELECT sum(sent) FROM minutes", [], |r| r.get(0)).unwrap();
    assert_eq!(all, 120 + 91, "no minute counted twice or lost");
    let (s, e): (i64, i64) =
        c.query_row("SELECT start_ts, end_ts FROM outages", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((s, e), (boot + step + 10_000, boot + step + 20_000));
    let ev: i64 = c.query_row("SELECT ts FROM events WHERE kind = 'agent_start'", [], |r| r.get(0)).unwrap();
    assert_eq!(ev, boot + step);
}

#[test]
fn retention_expires_raw_samples_before_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let day = 24 * 3600 * 1000;
    let now = T0 + 100 * day;
    let w = writer(&db, cfg(), now);
    for d in [0i64, 50, 99] {
        w.send(sample(1, T0 + d * day, d as u16, Some(1000)));
    }
    w.flush().unwrap();
    drop(w);
    let store = Store::open(&db, 1 << 20).unwrap();
    let r = retention::apply(&store, now, &cfg()).unwrap();
    assert_eq!(r.expired_samples, 1, "only the 100-day-old sample is past 90 days");
    assert_eq!(r.expired_minutes, 0, "rollups are kept 3 years");
    let n: i64 =
        rusqlite::Connection::open(&db).unwrap().query_row("SELECT count(*) FROM minutes", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 3);
}

#[test]
fn size_cap_deletes_oldest_raw_samples_and_shrinks_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let store = Store::open(&db, 1 << 20).unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("INSERT INTO targets (id, addr, name, role) VALUES (1, '192.0.2.1', 'x', 'anchor')", [])
        .unwrap();
    fill_pings(&store, 1_790_000_000_000, 0, 400_001);
    let before = store.used_bytes().unwrap();
    let cap = 1u64 << 20;
    assert!(before > 2 * cap, "fixture too small: {before} bytes");
    let r =
        retention::apply(&store, 1_790_000_000_000 + 400_000_000, &StoreConfig { max_db_bytes: cap, ..cfg() }).unwrap();
    let after = store.used_bytes().unwrap();
    let file = std::fs::metadata(&db).unwrap().len();
    println!("cap {cap}: used {before} -> {after} bytes, file {file} bytes, deleted {} samples", r.capped_total());
    assert!(after <= cap, "still {after} bytes over a {cap} cap");
    assert!(file <= cap + (64 << 10), "file not shrunk: {file} bytes");
    let left = store.pings(0, i64::MAX).unwrap();
    let (oldest, newest) = (left[0].1.ts, left.last().unwrap().1.ts);
    assert_eq!(newest, 1_790_000_000_000 + 400_000 * 1000, "the newest data is kept");
    assert!(oldest > 1_790_000_000_000, "the oldest data goes first");
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

#[test]
fn an_outage_open_at_a_crash_is_closed_at_the_last_sample() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let w = writer(&db, cfg(), T0 + 30_000);
    w.send(Record::OutageStart { kind: OutageKind::Wan, start: T0 + 10_000 });
    w.send(sample(1, T0 + 30_000, 1, None));
    w.flush().unwrap();
    // Crash: the writer is leaked, as if killed, and a new agent opens the file.
    std::mem::forget(w);
    let _w = writer(&db, cfg(), T0 + 90_000);
    let c = Connection::open(&db).unwrap();
    let (end, dur): (i64, i64) =
        c.query_row("SELECT end_ts, duration_ms FROM outages", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((end, dur), (T0 + 30_000, 20_000));
}

/// A small real file system (tmpfs), unmounted on drop. None, with the reason printed, when not
/// root.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str, test: &str) -> Option<Tmpfs> {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP {test}: needs root to mount a small tmpfs");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs");
        Some(Tmpfs(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_keeps_samples_in_memory_and_loses_none() {
    let Some(fs) = Tmpfs::mount("3m", "a_full_disk_keeps_samples_in_memory_and_loses_none") else { return };
    let mnt = fs.path();
    let db = mnt.join("w.db");
    let w = writer(&db, cfg(), T0);
    w.send(sample(0, T0, 0, Some(1000)));
    w.flush().unwrap();
    // Fill the disk.
    let filler = mnt.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    let mut sent = 1;
    let mut failed = false;
    for batch in 0..50 {
        for i in 0..2000 {
            let n = batch * 2000 + i + 1;
            w.send(sample(1, T0 + n as i64 * 10, n as u16, Some(1000 + n as u32 % 5000)));
            sent += 1;
        }
        if let Err(e) = w.flush() {
            println!("flush refused as expected after {sent} samples: {e}");
            failed = true;
            break;
        }
    }
    assert!(failed, "the disk never filled");
    // More samples while the disk is full; then space comes back.
    for n in 0..100 {
        w.send(sample(0, T0 + 5_000_000 + n * 10, n as u16, Some(2000)));
        sent += 1;
    }
    assert!(w.flush().is_err(), "still full");
    std::fs::remove_file(&filler).unwrap();
    w.flush().expect("writes work again once there is space");
    let report = w.shutdown();
    let c = Connection::open(&db).unwrap();
    let n = Store::open_read_only(&db).unwrap().ping_count().unwrap();
    assert_eq!(n, sent, "every sample survived the full disk");
    assert!(report.failed_flushes >= 2);
    let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn the_cap_never_lets_the_database_take_more_than_half_its_file_system() {
    let Some(fs) = Tmpfs::mount("24m", "the_cap_never_lets...") else { return };
    let mnt = fs.path();
    let db = mnt.join("w.db");
    let store = Store::open(&db, 1 << 20).unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("INSERT INTO targets (id, addr, name, role) VALUES (1, '192.0.2.1', 'x', 'anchor')", [])
        .unwrap();
    // About 14 MB of samples (four weeks at 1 Hz), written in batches as the agent would.
    for chunk in 0..4 {
        fill_pings(&store, 1_790_000_000_000, chunk * 600_000, 600_000);
        rusqlite::Connection::open(&db).unwrap().query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    }
    let before = store.used_bytes().unwrap();
    assert_eq!(retention::effective_cap(&store, 4096 << 20), 12 << 20, "half of a 24 MB file system");
    // Configured for 4 GB, as by default: the 24 MB file system still caps it at 12 MB.
    let r = retention::apply(&store, 1_790_000_000_000 + 4_000_000_000, &cfg()).unwrap();
    let after = store.used_bytes().unwrap();
    println!("24 MB fs: used {before} -> {after} bytes, deleted {} samples", r.capped_total());
    assert!(before > 12 << 20 && after <= 12 << 20, "{before} -> {after}");
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

/// Regression (issue 13.1): with a large router log the cap deleted every ping sample and rollup
/// and kept all 549,257 log rows (the file stayed at twice the cap). Now every table is capped,
/// in an order that keeps the evidence longest: chatter goes first, outages never.
#[test]
fn the_cap_covers_every_table_and_keeps_the_evidence_longest() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let store = Store::open(&db, 1 << 20).unwrap();
    let t0 = 1_790_000_000_000i64;
    let day = 86_400_000i64;
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(&format!(
            "INSERT INTO targets (id, addr, name, role) VALUES (1, '192.0.2.1', 'x', 'anchor');
             INSERT INTO series (id, probe, subject, name, unit) VALUES (1, 'weather', 'here', 'temp_c', 'C');
             -- Three days of 1 Hz samples (below) and their rollups.
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 4319)
             INSERT INTO minutes (ts, target, sent, lost, median_us) SELECT {t0} + i * 60000, 1, 60, 0, 20000 FROM n;
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 4319)
             INSERT INTO metrics (ts, series, value) SELECT {t0} + i * 60000, 1, 12.5 FROM n;
             -- A flood of router chatter, and a few lines that meant something.
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 199999)
             INSERT INTO syslog (ts, source, message, class)
             SELECT {t0} + i * 1000, '192.168.1.1', 'dnsmasq-dhcp: DHCPREQUEST(br-lan) 192.168.1.' || (i % 250) || ' aa:bb:cc:dd:ee:ff',
                    CASE WHEN i % 10000 = 0 THEN 'wan_down' END FROM n;
             INSERT INTO outages (kind, start_ts, end_ts, duration_ms) VALUES ('wan', {t0} + 3600000, {t0} + 3660000, 60000);
             INSERT INTO events (ts, kind, detail) VALUES ({t0} + 3600000, 'state', 'up -> wan_down');"
        ))
        .unwrap();
    fill_pings(&store, t0, 0, 259_200);
    let count = |t: &str| -> i64 {
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
            .unwrap()
    };
    let before = store.used_bytes().unwrap();
    let cap = before / 3;
    let now = t0 + 3 * day;
    let r = retention::apply(&store, now, &StoreConfig { max_db_bytes: cap, ..cfg() }).unwrap();
    let after = store.used_bytes().unwrap();
    println!("cap {cap}: used {before} -> {after} bytes; deleted {:?}", r.capped);
    assert!(after <= cap, "still {after} bytes over a {cap} cap");
    // Chatter was enough, oldest first; nothing else was touched.
    assert_eq!(r.capped.iter().map(|c| c.0).collect::<Vec<_>>(), ["router log chatter"]);
    let oldest_chatter: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT min(ts) FROM syslog WHERE class IS NULL", [], |r| r.get(0))
        .unwrap();
    assert!(oldest_chatter > t0 + 150_000 * 1000, "the newest chatter is what is left");
    assert_eq!(store.ping_count().unwrap(), 259_200);

    // A much tighter cap: the order goes on, and the evidence stays.
    let cap = 1u64 << 20;
    let r = retention::apply(&store, now, &StoreConfig { max_db_bytes: cap, ..cfg() }).unwrap();
    let after = store.used_bytes().unwrap();
    println!("cap {cap}: used -> {after} bytes; deleted {:?}", r.capped);
    assert!(after <= cap, "still {after} bytes over a {cap} cap");
    let stages: Vec<&str> = r.capped.iter().map(|c| c.0).collect();
    assert_eq!(&stages[..2], ["router log chatter", "samples older than a day"], "{stages:?}");
    assert_eq!(count("syslog WHERE class IS NULL"), 0, "chatter goes first");
    assert_eq!(count("outages"), 1);
    assert_eq!(count("events"), 1);
    assert_eq!(count("minutes"), 4320, "rollups are kept");
    assert_eq!(store.pings(now - day, i64::MAX).unwrap().len(), 86_400, "the last day's samples are kept");
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

fn router_line(ts: i64, i: u32) -> Record {
    Record::Syslog(wanwatch::sample::SyslogLine {
        ts,
        source: "192.168.1.1".into(),
        facility: Some(3),
        severity: Some(6),
        host: Some("OpenWrt".into()),
        app: Some("dnsmasq-dhcp".into()),
        message: format!("DHCPREQUEST(br-lan) 192.168.1.{} aa:bb:cc:dd:ee:ff {}", i % 250, "x".repeat(150)),
        class: None,
    })
}

/// Peak resident memory of this process, in MB.
fn own_peak_rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Regression (issue 13.2): a full disk with a 250k-line router log backlog: the writer spun,
/// never resumed once space returned, took 74 s to stop and lost 673 of 693 samples. Now the
/// backlog is bounded (router log shed first, counted, said in an event), written in chunks
/// once there is room, and the writer stops within 10 s however large the backlog.
#[test]
fn a_full_disk_with_a_log_flood_keeps_the_samples_resumes_and_stops_in_time() {
    let Some(fs) = Tmpfs::mount("16m", "a_full_disk_with_a_log_flood...") else { return };
    let mnt = fs.path();
    let db = mnt.join("w.db");
    let rss_before = own_peak_rss_mb();
    let w = writer(&db, cfg(), T0);
    w.send(sample(0, T0, 0, Some(1000)));
    w.flush().unwrap();
    let filler = mnt.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    // 250k router log lines (~60 MB) with 700 samples among them, the disk full throughout.
    let mut samples = 1;
    // (Sent in batches the writer takes in as they come, as the agent's paced sources do: the
    // channel to the writer is not what is measured here.)
    for i in 0..250_000u32 {
        w.send(router_line(T0 + i as i64, i));
        if i % 357 == 0 {
            w.send(sample(1, T0 + i as i64, (i / 357) as u16, Some(2000)));
            samples += 1;
        }
        if i % 10_000 == 9_999 {
            assert!(w.flush().is_err(), "the disk is full");
        }
    }
    let rss_full = own_peak_rss_mb();
    std::fs::remove_file(&filler).unwrap();
    let t = std::time::Instant::now();
    w.flush().expect("writes resume once there is room");
    println!("backlog written in {:?} once space returned", t.elapsed());

    // Full again, a backlog again, and a stop: within 10 s.
    let mut f = std::fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    for i in 0..250_000u32 {
        w.send(router_line(T0 + 300_000 + i as i64, i));
    }
    let t = std::time::Instant::now();
    let report = w.shutdown();
    let stop = t.elapsed();
    println!(
        "peak RSS {rss_before:.0} -> {rss_full:.0} MB with the backlog; stopped in {stop:?}; dropped {}, lost at shutdown {}",
        report.dropped, report.lost_at_shutdown
    );
    assert!(stop < std::time::Duration::from_secs(10), "stopping took {stop:?}");
    assert!(rss_full - rss_before < 64.0, "the backlog took {:.0} MB", rss_full - rss_before);
    let c = Connection::open(&db).unwrap();
    let n = Store::open_read_only(&db).unwrap().ping_count().unwrap();
    assert_eq!(n, samples, "every sample survived: the router log was shed first");
    let said: String = c
        .query_row("SELECT detail FROM events WHERE kind = 'backlog_dropped'", [], |r| r.get(0))
        .expect("the shedding is recorded");
    assert!(said.contains("router log lines") && said.contains("0 ping samples"), "{said}");
    assert!(report.dropped > 0);
    let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}

/// Regression (issue 13.7): a healthy database on a read-only file system was reported as
/// "corrupt ... move it aside". `status` and `export` read it; `run` says read-only.
#[test]
fn a_database_on_a_read_only_file_system_is_read_not_called_corrupt() {
    let Some(fs) = Tmpfs::mount("8m", "a_database_on_a_read_only_file_system...") else { return };
    let db = fs.path().join("w.db");
    let w = writer(&db, cfg(), T0);
    for n in 0..50 {
        w.send(sample(0, T0 + n * 1000, n as u16, Some(1500)));
    }
    w.flush().unwrap();
    w.shutdown();
    let ok = std::process::Command::new("mount").args(["-o", "remount,ro"]).arg(fs.path()).status().unwrap();
    assert!(ok.success());
    let bin = env!("CARGO_BIN_EXE_wanwatch");
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).output().unwrap();
    let st = run(&["status", "--db", db.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(st.status.success(), "{err}");
    assert!(!err.contains("corrupt"), "{err}");
    let ex = run(&["export", "--db", db.to_str().unwrap(), "--table", "samples", "--since", "2020-01-01"]);
    assert!(ex.status.success(), "{}", String::from_utf8_lossy(&ex.stderr));
    assert_eq!(String::from_utf8_lossy(&ex.stdout).lines().count(), 51, "header + 50 samples");
    let agent = run(&[
        "run",
        "--probes",
        "none",
        "--db",
        db.to_str().unwrap(),
        "--gateway",
        "none",
        "--target",
        "127.0.0.1",
        "--for",
        "1s",
    ]);
    let err = String::from_utf8_lossy(&agent.stderr);
    assert!(!agent.status.success());
    assert!(err.contains("read-only") || err.contains("Read-only"), "{err}");
    assert!(!err.contains("corrupt"), "{err}");
}

/// Regression (issue 13.7): a SQLite export that failed on a full disk left a partial file and
/// a -journal that blocked the next try. Now it leaves nothing, and the next try works.
#[test]
fn a_sqlite_export_to_a_full_disk_leaves_nothing_behind() {
    let Some(fs) = Tmpfs::mount("2m", "a_sqlite_export_to_a_full_disk...") else { return };
    let src_dir = tempfile::tempdir().unwrap();
    let db = src_dir.path().join("w.db");
    let store = Store::open(&db, 1 << 20).unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("INSERT INTO targets (id, addr, name, role) VALUES (1, '192.0.2.1', 'x', 'anchor')", [])
        .unwrap();
    // Enough that the copy (with its plain samples table) cannot fit on 2 MB.
    fill_pings(&store, 1_790_000_000_000, 0, 200_001);
    drop(store);
    let bin = env!("CARGO_BIN_EXE_wanwatch");
    let out = fs.path().join("copy.db");
    let o = std::process::Command::new(bin)
        .args(["export", "--db", db.to_str().unwrap(), "--format", "sqlite", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success(), "a 4 MB copy fit on a 2 MB disk?");
    let left: Vec<String> =
        std::fs::read_dir(fs.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // With room, the same command works.
    let out2 = src_dir.path().join("copy.db");
    let o = std::process::Command::new(bin)
        .args(["export", "--db", db.to_str().unwrap(), "--format", "sqlite", "--out", out2.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let n: i64 = Connection::open(&out2).unwrap().query_row("SELECT count(*) FROM samples", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 200_001);
}

/// The export query of schema 1-4, frozen: what `export --table samples` printed before the
/// compact layout. The migrated database must print the same bytes.
fn old_samples_csv(db: &Path) -> String {
    let reasons: Vec<String> =
        Failure::names().iter().map(|(code, name)| format!("WHEN {code} THEN '{name}'")).collect();
    let sql = format!(
        "SELECT strftime('%Y-%m-%dT%H:%M:%fZ', s.ts / 1000.0, 'unixepoch') AS time, s.ts AS ts_ms, g.name AS target,
                g.addr AS addr, s.seq AS seq, round(s.rtt_us / 1000.0, 3) AS rtt_ms,
                CASE s.fail {} END AS lost, s.err_from AS said_by
         FROM samples s JOIN targets g ON g.id = s.target
         WHERE s.ts >= ?1 AND s.ts < ?2 ORDER BY s.ts, g.id",
        reasons.join(" ")
    );
    let c = Connection::open(db).unwrap();
    let mut stmt = c.prepare(&sql).unwrap();
    let names: Vec<String> = stmt.column_names().map(String::from).collect();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&names).unwrap();
    let mut rows = stmt.query([0i64, i64::MAX]).unwrap();
    while let Some(row) = rows.next().unwrap() {
        let rec: Vec<String> = (0..names.len())
            .map(|i| match row.get_ref(i).unwrap() {
                rusqlite::types::ValueRef::Null => String::new(),
                rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                rusqlite::types::ValueRef::Real(v) => v.to_string(),
                rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                    String::from_utf8_lossy(t).into_owned()
                }
            })
            .collect();
        w.write_record(&rec).unwrap();
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

/// A database as schema 4 left it: `days` of 4 targets at 1 Hz, with losses of every kind, ICMP
/// errors and their witnesses, and RTTs from 0 to seconds.
fn old_layout_db(db: &Path, days: i64) -> i64 {
    let store = Store::create_at_version(db, 4).unwrap();
    drop(store);
    let c = Connection::open(db).unwrap();
    c.execute_batch(
        "INSERT INTO targets (id, addr, name, role) VALUES
             (1, '192.168.1.1', 'gateway', 'gateway'), (2, '1.1.1.1', 'cloudflare', 'anchor'),
             (3, '8.8.8.8', 'google', 'anchor'), (4, '2606:4700:4700::1111', 'cf6', 'anchor');",
    )
    .unwrap();
    let n = days * 86_400;
    c.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?1 - 1)
         INSERT INTO samples (ts, target, seq, rtt_us, fail, err_from)
         SELECT 1790000000000 + i * 1000 + t.id * 250 + (i * 37 % 11), t.id, (i + t.id * 1000) % 65536,
                CASE WHEN i % 97 = 0 OR i % 1013 = 5 THEN NULL ELSE (i * 7919 + t.id * 13) % 40000 + (i % 5000 = 0) * 2000000 END,
                CASE WHEN i % 1013 = 5 THEN 11 WHEN i % 97 = 0 THEN 1 + (i % 2) END,
                CASE WHEN i % 1013 = 5 THEN '10.0.0.' || (i % 250) END
         FROM n, targets t",
        [n],
    )
    .unwrap();
    n * 4
}

/// Issue 16.1: a schema-4 database is converted to the compact layout in place, the export is
/// byte for byte what it was, and a conversion killed half way loses nothing and resumes.
#[test]
fn the_compact_layout_migration_is_exact_and_survives_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    let total = old_layout_db(&db, 3);
    let expected = old_samples_csv(&db);
    assert_eq!(expected.lines().count() as i64, total + 1);
    Connection::open(&db).unwrap().execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    let before = std::fs::metadata(&db).unwrap().len();

    // Killed half way: a `wanwatch run` converting it gets SIGKILL once a day or two is moved.
    let killed = {
        let copy = dir.path().join("killed.db");
        std::fs::copy(&db, &copy).unwrap();
        let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_wanwatch"))
            .args(["run", "--probes", "none", "--gateway", "none", "--target", "127.0.0.1", "--for", "60s"])
            .args(["--db", copy.to_str().unwrap()])
            .env("WANWATCH_LOG", "warn")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let mut killed_mid_way = false;
        while started.elapsed() < Duration::from_secs(60) {
            let moved = Connection::open(&copy)
                .ok()
                .and_then(|c| c.query_row("SELECT coalesce(sum(n), 0) FROM pings", [], |r| r.get::<_, i64>(0)).ok())
                .unwrap_or(0);
            if moved > 0 {
                killed_mid_way = moved < total;
                break;
            }
            if agent.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        agent.kill().unwrap();
        agent.wait().unwrap();
        let c = Connection::open(&copy).unwrap();
        let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
        let left: i64 = c.query_row("SELECT count(*) FROM samples", [], |r| r.get(0)).unwrap_or(0);
        let moved = wanwatch::store::pings::count(&c).unwrap();
        if killed_mid_way {
            assert_eq!(left + moved, total, "a kill during the conversion lost or doubled pings");
            println!("killed with {moved} of {total} pings moved");
        } else {
            println!("the agent did not stop mid-way (moved {moved}); the kill part is not exercised");
        }
        copy
    };

    // Converted to the end (on open), in place.
    let t = Instant::now();
    let store = Store::open(&db, 1 << 20).unwrap();
    let took = t.elapsed();
    assert_eq!(store.ping_count().unwrap(), total);
    drop(store);
    let c = Connection::open(&db).unwrap();
    let tables: i64 =
        c.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'samples'", [], |r| r.get(0)).unwrap();
    assert_eq!(tables, 0, "the old table is dropped once empty");
    c.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    let after = std::fs::metadata(&db).unwrap().len();
    println!(
        "converted {total} pings in {took:?}; file {:.1} MB -> {:.1} MB after VACUUM",
        before as f64 / 1e6,
        after as f64 / 1e6
    );
    let export = |db: &Path| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_wanwatch"))
            .args(["export", "--db", db.to_str().unwrap(), "--table", "samples", "--format", "csv"])
            .args(["--since", "2020-01-01", "--until", "2040-01-01"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let got = export(&db);
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "the export changed");
    // The killed copy, resumed, is the same.
    drop(Store::open(&killed, 1 << 20).unwrap());
    assert!(export(&killed) == expected, "the resumed conversion differs");
}

/// Issue 16.1: a timed flush stores an open minute's pings at once but rolls the minute up only
/// once it is over (each flush no longer rewrites its page); an asked-for flush and the stop
/// leave nothing owed; the figures are the same either way.
#[test]
fn an_open_minute_is_rolled_up_once_it_is_over() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let clock = Arc::new(AtomicI64::new(T0 + 20_000));
    let c = clock.clone();
    let store = Store::open(&db, 1 << 20).unwrap();
    let quick = StoreConfig { flush_interval: Duration::from_millis(100), ..cfg() };
    let w = Writer::spawn(store, &targets(), quick, WallClock::from_fn(move || c.load(Ordering::SeqCst))).unwrap();
    for i in 0..20 {
        w.send(sample(1, T0 + i * 1000, i as u16, Some(10_000 + i as u32 * 100)));
    }
    let stored = |db: &Path| Store::open_read_only(db).unwrap().ping_count().unwrap();
    let wait_for = |what: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !what() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(&|| stored(&db) == 20);
    std::thread::sleep(Duration::from_millis(300)); // a few more timed flushes
    assert_eq!(stored(&db), 20, "the pings are written at the timed flush");
    assert!(minutes(&db).is_empty(), "the open minute is not rolled up yet: {:?}", minutes(&db));
    // The minute ends, and its late pings had their 5 s: the next timed flush rolls it up.
    clock.store(T0 + MIN + 5_000, Ordering::SeqCst);
    wait_for(&|| !minutes(&db).is_empty());
    assert_eq!(minutes(&db).len(), 1);
    assert_eq!(minutes(&db)[0].2, 20, "every ping counted");
    // The next minute, open: an asked-for flush rolls it up at once.
    for i in 0..10 {
        w.send(sample(1, T0 + MIN + i * 1000, 100 + i as u16, Some(20_000)));
    }
    w.flush().unwrap();
    assert_eq!(minutes(&db).len(), 2);
    // And pings for an open minute at the stop are rolled up by the stop.
    for i in 0..5 {
        w.send(sample(1, T0 + 2 * MIN + i * 1000, 200 + i as u16, Some(30_000)));
    }
    wait_for(&|| stored(&db) == 35);
    assert_eq!(minutes(&db).len(), 2, "open");
    w.shutdown();
    let m = minutes(&db);
    assert_eq!(m.len(), 3);
    assert_eq!(m[2].2, 5);
}
