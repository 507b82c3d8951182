//! A made-up household's database with known truths, for the report, dashboard and metrics
//! tests: two weeks of minutes for a gateway and three anchors, weather, 5G signal, devices,
//! speed tests, outages, detector events and router log lines.
//!
//! The truths the tests check: rain over 1 mm/h triples packet loss and costs ~6 dB of SINR;
//! evenings 19-23 (UTC) add 25 ms and double loss; four of the seven internet outages happen in
//! rain. Written with plain SQL into a database the real `Store::open` created, because the
//! writer's path (samples -> rollups) is tested in tests/store.rs and weeks of raw pings would
//! take minutes to generate.
#![allow(dead_code)] // each test crate uses a different part

use std::path::Path;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rusqlite::params;

pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;
/// Monday 2026-11-09 00:00 UTC.
pub const START: i64 = 1_794_182_400_000;

/// What the fixture put in, for assertions.
#[derive(Debug, Default)]
pub struct Truth {
    pub wan_outages: Vec<(i64, i64)>,
    pub lan_outages: usize,
    pub rainy_hours: usize,
    pub anomalies: usize,
    pub speed_tests: usize,
}

pub fn is_rainy(hour_index: i64) -> bool {
    // One two-hour stretch in nine, picked by a hash so it is reproducible.
    ((hour_index / 2) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).is_multiple_of(9)
}

/// Fill `db` (created by `Store::open`) with `days` days from `start`.
pub fn write(db: &Path, start: i64, days: i64) -> Truth {
    let store = wanwatch::store::Store::open(db, 1 << 20).expect("open fixture db");
    drop(store);
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let tx = conn.transaction().unwrap();
    tx.execute_batch(
        "INSERT INTO targets (id, addr, name, role) VALUES
           (1, '192.168.12.1', 'gateway', 'gateway'), (2, '1.1.1.1', 'cloudflare', 'anchor'),
           (3, '8.8.8.8', 'google', 'anchor'), (4, '9.9.9.9', 'quad9', 'anchor');
         INSERT INTO series (id, probe, subject, name, unit) VALUES
           (1, 'weather', 'here', 'precip_mm_h', 'mm/h'), (2, 'weather', 'here', 'wind_kmh', 'km/h'),
           (3, 'weather', 'here', 'temp_c', 'C'), (4, 'gateway', '5g', 'sinr_db', 'dB'),
           (5, 'gateway', '5g', 'rsrp_dbm', 'dBm'), (6, 'gateway', '5g', 'bands', 'count'),
           (7, 'devices', 'lan', 'neighbours', 'count'), (8, 'bandwidth', 'speed', 'down_mbps', 'Mbit/s'),
           (9, 'bandwidth', 'speed', 'up_mbps', 'Mbit/s'), (10, 'bandwidth', 'speed', 'bufferbloat_ms', 'ms'),
           (11, 'dns', 'example.com@192.168.12.1', 'latency_ms', 'ms'), (12, 'http', 'https://example.com/', 'ttfb_ms', 'ms'),
           (13, 'system', 'pi', 'cpu_pct', '%'), (14, 'system', 'pi', 'mem_used_pct', '%'), (15, 'system', 'pi', 'temp_c', 'C'),
           (16, 'detect', 'outlook', 'trouble_p60', 'p'), (17, 'detect', 'outlook', 'trouble', 'bool');",
    )
    .unwrap();
    let mut rng = StdRng::seed_from_u64(42);
    let mut truth = Truth::default();
    // Seven internet outages, four of them in rainy hours, plus one home-network outage.
    let mut rainy_starts: Vec<i64> = (0..days * 24).filter(|h| is_rainy(*h)).collect();
    rainy_starts.truncate(4);
    let mut outages: Vec<(i64, i64)> = rainy_starts.iter().map(|h| (h * HOUR + 17 * MINUTE + 12_000, 0)).collect();
    for h in [30, 100, 200] {
        outages.push((h * HOUR + 41 * MINUTE + 5_000, 0));
    }
    outages.sort();
    for (i, o) in outages.iter_mut().enumerate() {
        o.0 += start;
        o.1 = o.0 + [45_000, 190_000, 620_000, 75_000, 1_250_000, 30_000, 300_000][i % 7];
    }
    for (s, e) in &outages {
        tx.execute(
            "INSERT INTO outages (kind, start_ts, end_ts, duration_ms, detail) VALUES ('wan', ?1, ?2, ?3, 'all anchors lost')",
            params![s, e, e - s],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO syslog (ts, source, message, class) VALUES (?1, '192.168.12.1', 'WAN link down', 'wan_down')",
            params![s + 2_000],
        )
        .unwrap();
    }
    truth.wan_outages = outages.clone();
    let lan = start + 50 * HOUR + 5 * MINUTE;
    tx.execute(
        "INSERT INTO outages (kind, start_ts, end_ts, duration_ms, detail) VALUES ('lan', ?1, ?2, 95000, 'gateway lost')",
        params![lan, lan + 95_000],
    )
    .unwrap();
    truth.lan_outages = 1;
    let in_outage = |ts: i64| outages.iter().map(|(s, e)| (e.min(&(ts + MINUTE)) - s.max(&ts)).max(0)).sum::<i64>();

    let mut minute = tx
        .prepare("INSERT INTO minutes (ts, target, sent, lost, median_us, p95_us, jitter_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
        .unwrap();
    let mut metric = tx.prepare("INSERT INTO metrics (ts, series, value, note) VALUES (?1, ?2, ?3, ?4)").unwrap();
    for m in 0..days * 1440 {
        let ts = start + m * MINUTE;
        let hour = m / 60;
        let rain = is_rainy(hour);
        truth.rainy_hours += usize::from(rain && m % 60 == 0);
        let h = (ts / HOUR) % 24;
        let evening = (19..23).contains(&h);
        let p = 0.004 * if rain { 3.0 } else { 1.0 } * if evening { 2.0 } else { 1.0 };
        let down_ms = in_outage(ts);
        for target in 1..=4 {
            let (sent, mut lost) = (60u32, (0..60).filter(|_| rng.random::<f64>() < p).count() as u32);
            let base = if target == 1 { 3.0 } else { 28.0 + 4.0 * target as f64 + if evening { 25.0 } else { 0.0 } };
            if target > 1 && down_ms > 0 {
                lost = lost.max((down_ms / 1000) as u32).min(60);
            }
            let median = base + rng.random::<f64>() * 4.0;
            let has_rtt = lost < sent;
            minute
                .execute(params![
                    ts,
                    target,
                    sent,
                    lost,
                    has_rtt.then_some((median * 1000.0) as i64),
                    has_rtt.then_some(((median * 1.6 + 5.0) * 1000.0) as i64),
                    has_rtt.then_some((median * 80.0) as i64)
                ])
                .unwrap();
        }
        let sinr = 14.0 - if rain { 6.0 } else { 0.0 } + rng.random::<f64>() * 6.0 - 3.0;
        metric.execute(params![ts + 20_000, 4, sinr, None::<String>]).unwrap();
        metric.execute(params![ts + 20_000, 5, -95.0 + sinr * 0.8, None::<String>]).unwrap();
        metric.execute(params![ts + 20_000, 6, 1.0, Some(if sinr < 8.0 { "n71" } else { "n41" })]).unwrap();
        if m % 15 == 0 {
            let precip = if rain { 2.0 + rng.random::<f64>() * 4.0 } else { 0.0 };
            metric.execute(params![ts + 5_000, 1, precip, None::<String>]).unwrap();
            metric.execute(params![ts + 5_000, 2, 10.0 + rng.random::<f64>() * 15.0, None::<String>]).unwrap();
            metric.execute(params![ts + 5_000, 3, 8.0 + (h as f64 - 12.0).abs() * -0.5 + 6.0, None::<String>]).unwrap();
        }
        if m % 5 == 0 {
            let devices = if evening { 18.0 } else { 9.0 } + (rng.random::<f64>() * 3.0).floor();
            metric.execute(params![ts + 1_000, 7, devices, None::<String>]).unwrap();
        }
        if m >= days * 1440 - 60 && m % 5 == 0 {
            // The other probes, for the last hour only (dashboard and metrics tests).
            for (series, v) in [(11, 18.0), (12, 95.0), (13, 7.5), (14, 31.0), (15, 52.5)] {
                metric.execute(params![ts + 2_000, series, v, None::<String>]).unwrap();
            }
        }
        // The outlook, every minute of the last two days: it sees evenings coming (0.6 from
        // 18:00, trouble from 19:00) and says 0.05 otherwise.
        if m >= (days - 2) * 1440 {
            let h = (m / 60) % 24;
            metric.execute(params![ts, 16, if (18..21).contains(&h) { 0.6 } else { 0.05 }, None::<String>]).unwrap();
            metric.execute(params![ts, 17, f64::from((19..21).contains(&h)), None::<String>]).unwrap();
        }
        if m % 360 == 200 {
            let down = if evening { 120.0 } else { 260.0 } + rng.random::<f64>() * 40.0;
            metric.execute(params![ts + 3_000, 8, down, None::<String>]).unwrap();
            metric.execute(params![ts + 3_000, 9, 35.0 + rng.random::<f64>() * 10.0, None::<String>]).unwrap();
            metric.execute(params![ts + 3_000, 10, 40.0 + rng.random::<f64>() * 30.0, None::<String>]).unwrap();
            truth.speed_tests += 1;
        }
    }
    drop(minute);
    drop(metric);
    let a = start + 80 * HOUR + 12 * MINUTE;
    for (ts, kind, detail) in [
        (
            a,
            "anomaly",
            "rtt_ms to 1.1.1.1 96.0 is 3.1x its usual 31.0 for Tue 08:00 (level shift, 81%) [surprise 7.2; forecast, autoencoder]",
        ),
        (a + 35 * MINUTE, "anomaly_end", "anomaly since 08:12 over after 35m 00s"),
        (
            a + 26 * HOUR,
            "level_shift",
            "median RTT to cloudflare went from 31.0 ms to 38.5 ms (onset 09:40, confirmed after 28 min, confidence 0.93)",
        ),
        (a + 2 * HOUR, "prediction", "rtt_ms to 8.8.8.8 forecast to reach 140 ms within 15 min (confidence 0.5)"),
        (outages[1].0 - 60_000, "gateway_reboot", "gateway uptime fell from 86400 s to 12 s: it rebooted"),
        (start + HOUR, "agent_start", "wanwatch 0.1.0 pinging gateway, cloudflare, google, quad9"),
    ] {
        tx.execute("INSERT INTO events (ts, kind, detail) VALUES (?1, ?2, ?3)", params![ts, kind, detail]).unwrap();
        truth.anomalies += usize::from(kind == "anomaly");
    }
    tx.execute(
        "INSERT OR REPLACE INTO status (key, value) VALUES ('state', 'up'), ('state_since', ?1)",
        [start + days * 86_400_000 - HOUR],
    )
    .unwrap();
    tx.commit().unwrap();
    truth
}
