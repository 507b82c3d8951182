//! Detection benchmarks: model load time, the per-minute cost of the pipeline for a typical
//! agent (4 targets x 3 channels, the agent's line-up of detectors) after a week of history,
//! the same with every learned member switched on, and the peak RSS of a process that has a
//! week of history loaded.
//!
//! `cargo bench --bench detect` prints the load time and RSS first, then criterion's figures.
//! Replay speed is printed by `wanwatch replay` itself (steps/s on its last line).

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use wanwatch::detect::models::{Kind, Model, Models, Source};
use wanwatch::detect::pipeline::{ChannelKind, ChannelSpec, Members, Pipeline, Settings};

const CHANNELS: usize = 12;

fn specs() -> Vec<ChannelSpec> {
    (0..CHANNELS)
        .map(|i| ChannelSpec {
            name: format!("c{i}"),
            kind: if i % 3 == 2 { ChannelKind::Loss } else { ChannelKind::Latency },
            unit: "ms".into(),
        })
        .collect()
}

fn value(i: usize, t: usize) -> Option<f64> {
    let x = ((t * 7919 + i * 104_729) % 1000) as f64 / 1000.0;
    Some(if i % 3 == 2 { (x - 0.97).max(0.0) } else { 20.0 + 5.0 * x + (t as f64 / 240.0).sin() * 3.0 })
}

/// A pipeline with a week of history (what the agent's warm start replays): every detector
/// ready, the outlook's climatology filled.
fn warm(settings: Settings) -> (Pipeline, usize) {
    let mut p = Pipeline::new(settings, Models::load(Source::Builtin), specs());
    let steps = 7 * 1440;
    for t in 0..steps {
        let v: Vec<Option<f64>> = (0..CHANNELS).map(|i| value(i, t)).collect();
        p.step(t as i64 * 60_000, &v);
    }
    (p, steps)
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        })
        .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    for kind in Kind::ALL {
        let path = format!("{}/onnx/models/{}", env!("CARGO_MANIFEST_DIR"), kind.file_name());
        let t = Instant::now();
        let runs = 20;
        for _ in 0..runs {
            Model::from_path(kind, std::path::Path::new(&path)).unwrap();
        }
        println!("load + optimise {}: {:.2} ms", kind.file_name(), t.elapsed().as_secs_f64() * 1000.0 / runs as f64);
    }
    let t = Instant::now();
    let (mut p, mut step) = warm(Settings::minutes());
    println!(
        "warm-up: {} minutes x {CHANNELS} channels in {:.2} s; peak RSS with a week loaded: {:.1} MB",
        step,
        t.elapsed().as_secs_f64(),
        rss_kb() as f64 / 1024.0
    );
    c.bench_function(&format!("one minute, {CHANNELS} channels (the agent's detectors)"), |b| {
        b.iter(|| {
            let v: Vec<Option<f64>> = (0..CHANNELS).map(|i| value(i, step)).collect();
            p.step(step as i64 * 60_000, &v);
            step += 1;
        })
    });
    drop(p);
    // For comparison: forecaster and forest back in (the ablations keep them out of the agent).
    let all = Settings { without: Members::default(), ..Settings::minutes() };
    let (mut p, mut step) = warm(all);
    c.bench_function(&format!("one minute, {CHANNELS} channels (every member)"), |b| {
        b.iter(|| {
            let v: Vec<Option<f64>> = (0..CHANNELS).map(|i| value(i, step)).collect();
            p.step(step as i64 * 60_000, &v);
            step += 1;
        })
    });
    let models = Models::load(Source::Builtin);
    let seq = vec![0.1f32; 240];
    let flat = vec![0.1f32; 120];
    let f = models.get(Kind::Forecaster).unwrap();
    c.bench_function("forecaster, one window", |b| b.iter(|| f.run(&seq).unwrap()));
    let a = models.get(Kind::Autoencoder).unwrap();
    c.bench_function("autoencoder, one window", |b| b.iter(|| a.run(&flat).unwrap()));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
