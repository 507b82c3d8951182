//! Report and web benchmarks over the tests' two-week household database (4 targets, 20,160
//! minutes each, weather, signal, devices, speed tests): reading and analysing the data, each
//! rendering, the dashboard page and one Prometheus scrape.
//!
//! `cargo bench --bench report` prints the report's size first, then criterion's figures.

#[path = "../tests/household/mod.rs"]
mod household;

use criterion::{Criterion, criterion_group, criterion_main};
use wanwatch::report::{self, Plan, render};
use wanwatch::store::Store;

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    household::write(&db, household::START, 14);
    let store = Store::open_read_only(&db).unwrap();
    let (since, until) = (household::START, household::START + 14 * 86_400_000);
    let plan = Plan { down_mbps: Some(300.0), up_mbps: Some(40.0) };
    let r = report::build(&store, since, until, plan, &|_| {}).unwrap();
    let html = render::html(&r, &|_| {}).unwrap();
    println!("two-week report: {} minutes in, {} KB of HTML out", r.data.minutes.len(), html.len() / 1024);
    let mut g = c.benchmark_group("report");
    g.sample_size(10);
    g.bench_function("load + analyse, 14 days", |b| {
        b.iter(|| report::build(&store, since, until, plan, &|_| {}).unwrap())
    });
    g.bench_function("render html, 14 days", |b| b.iter(|| render::html(&r, &|_| {}).unwrap()));
    g.bench_function("render markdown, 14 days", |b| b.iter(|| render::markdown(&r, &|_| {}).unwrap()));
    g.bench_function("dashboard page", |b| b.iter(|| wanwatch::web::dashboard::render(&store, until).unwrap()));
    g.bench_function("/metrics scrape", |b| b.iter(|| wanwatch::web::metrics::render(&store, until).unwrap()));
    g.finish();
}

criterion_group!(group, benches);
criterion_main!(group);
