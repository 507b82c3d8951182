//! Store benchmarks: batched insert rate through the real writer (channel, thread, one
//! transaction per flush, rollups recomputed), and bytes on disk per raw sample and per rollup.
//!
//! `cargo bench --bench store` prints the byte figures first, then criterion's rates.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wanwatch::clock::WallClock;
use wanwatch::config::StoreConfig;
use wanwatch::sample::{Failure, Record, Role, Sample, Target};
use wanwatch::store::Store;
use wanwatch::store::writer::Writer;

const T0: i64 = 1_790_000_000_000;

fn cfg() -> StoreConfig {
    StoreConfig {
        flush_interval: Duration::from_secs(3600),
        raw_retention_days: 90,
        rollup_retention_days: 1095,
        max_db_bytes: 64 << 30,
        journal_size_limit_bytes: 16 << 20,
    }
}

fn targets() -> Vec<Target> {
    (1..=4)
        .map(|i| Target {
            addr: format!("192.0.2.{i}").parse::<IpAddr>().unwrap(),
            role: Role::Anchor,
            name: format!("t{i}"),
        })
        .collect()
}

/// 4 targets pinged at 1 Hz from `start_s`: realistic RTTs, 1% loss.
fn feed(w: &Writer, start_s: i64, seconds: i64) {
    let mono = Instant::now();
    for s in start_s..start_s + seconds {
        for t in 0..4 {
            let lost = (s * 7 + t as i64) % 100 == 0;
            let rtt = if lost { Err(Failure::Timeout) } else { Ok(15_000 + ((s * 37 + t as i64 * 11) % 9000) as u32) };
            w.send(Record::Sample(Sample { target: t, ts: T0 + s * 1000 + t as i64 * 250, mono, seq: s as u16, rtt }));
        }
    }
}

fn bytes_per_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let store = Store::open(&db, 16 << 20).unwrap();
    let empty = store.used_bytes().unwrap();
    let w = Writer::spawn(store, &targets(), cfg(), WallClock::from_fn(|| T0)).unwrap();
    let days = 3;
    // Flush every 5 s of data, as the agent does by default.
    for chunk in 0..(days * 86_400 / 5) {
        feed(&w, chunk * 5, 5);
        if chunk % 720 == 0 {
            w.flush().unwrap();
        }
    }
    w.shutdown();
    let store = Store::open(&db, 16 << 20).unwrap();
    let full = store.used_bytes().unwrap();
    let samples = store.ping_count().unwrap();
    let minutes: i64 =
        rusqlite::Connection::open(&db).unwrap().query_row("SELECT count(*) FROM minutes", [], |r| r.get(0)).unwrap();
    rusqlite::Connection::open(&db).unwrap().execute("DELETE FROM minutes", []).unwrap();
    let without_minutes = store.used_bytes().unwrap();
    let per_sample = (without_minutes - empty) as f64 / samples as f64;
    let per_minute = (full - without_minutes) as f64 / minutes as f64;
    let year_raw = per_sample * 4.0 * 86_400.0 * 365.0;
    let year_rollups = per_minute * 4.0 * 1440.0 * 365.0;
    println!(
        "bytes on disk: {per_sample:.1} per raw sample ({samples} samples), {per_minute:.1} per rollup row ({minutes} rows)"
    );
    println!(
        "a year of 4 targets at 1 Hz: raw {:.2} GB + rollups {:.0} MB (default keeps raw 90 days: {:.2} GB)",
        year_raw / 1e9,
        year_rollups / 1e6,
        (per_sample * 4.0 * 86_400.0 * 90.0 + year_rollups) / 1e9
    );
}

fn insert_rate(c: &mut Criterion) {
    bytes_per_row();
    let mut g = c.benchmark_group("store");
    const N: i64 = 25_000; // seconds of 4 targets: 100k samples per batch
    g.throughput(Throughput::Elements(4 * N as u64));
    g.sample_size(10);
    g.bench_function("writer_batch_100k_samples", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("r.db"), 16 << 20).unwrap();
            let w = Writer::spawn(store, &targets(), cfg(), WallClock::from_fn(|| T0)).unwrap();
            let start = Instant::now();
            for i in 0..iters as i64 {
                feed(&w, i * N, N);
                w.flush().unwrap();
            }
            let took = start.elapsed();
            w.shutdown();
            took
        })
    });
    g.finish();
}

criterion_group!(benches, insert_rate);
criterion_main!(benches);
