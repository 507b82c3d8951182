//! The detectors on their real paths: the committed ONNX files through tract against the
//! numbers Python computed, `wanwatch replay` over CSV files, and the agent's detection thread
//! over minutes with a real database for its warm start and forest file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use wanwatch::detect::live::state_file;
use wanwatch::detect::live::{Detection, MinuteRecord, TargetMinute, channels, forest_file};
use wanwatch::detect::models::{Kind, Model, Source};
use wanwatch::detect::pipeline::{Members, Settings};
use wanwatch::sample::{Record, Role, Target};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One target's closed minute (the agent's detection input).
fn minute(ts: i64, median_ms: f64, p95_ms: f64, loss: f64) -> MinuteRecord {
    MinuteRecord {
        ts,
        targets: vec![TargetMinute { median_ms: Some(median_ms), p95_ms: Some(p95_ms), loss: Some(loss) }],
    }
}

#[test]
fn tract_matches_python_on_every_test_vector() {
    for kind in Kind::ALL {
        let name = kind.file_name().trim_end_matches(".onnx");
        let text = std::fs::read_to_string(repo().join(format!("onnx/testvectors/{name}.json"))).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let model = Model::from_path(kind, &repo().join(format!("onnx/models/{}", kind.file_name()))).unwrap();
        let vectors = v["vectors"].as_array().unwrap();
        assert!(vectors.len() >= 4, "{name}: test vectors missing");
        let mut worst = 0f64;
        for t in vectors {
            let input: Vec<f32> = t["input"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            let want: Vec<f64> = t["output"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            let got = model.run(&input).unwrap();
            assert_eq!(got.len(), want.len(), "{name}");
            for (g, w) in got.iter().zip(&want) {
                worst = worst.max((*g as f64 - w).abs());
            }
        }
        println!("{name}: {} vectors, worst difference {worst:.2e}", vectors.len());
        assert!(worst < 1e-4, "{name}: tract differs from Python by {worst}");
    }
}

/// Three days of a latency-like series at one step a minute: a daily swing, noise, and (when
/// asked) a 20-minute jump to 6x at a known time.
fn series(path: &Path, incident_at: Option<usize>) {
    let mut rng = 12345u64;
    let mut noise = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % 1000) as f64 / 1000.0 - 0.5
    };
    let mut text = String::from("timestamp,rtt_ms\n");
    let t0 = 1_764_547_200i64; // 2025-12-01 00:00 UTC
    for i in 0..(4 * 1440) {
        let day = (i as f64 / 1440.0 * std::f64::consts::TAU).sin();
        let mut v = 20.0 + 3.0 * day + 2.0 * noise();
        if incident_at.is_some_and(|a| (a..a + 20).contains(&i)) {
            v *= 6.0;
        }
        let ts = time::OffsetDateTime::from_unix_timestamp(t0 + i as i64 * 60).unwrap();
        let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        let missing = i % 997 == 0; // a few empty values: missing, not zero
        if missing {
            text.push_str(&format!("{},\n", ts.format(f).unwrap()));
        } else {
            text.push_str(&format!("{},{v:.3}\n", ts.format(f).unwrap()));
        }
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn replay_finds_an_injected_incident_and_nothing_on_the_same_series_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let (bad, good) = (dir.path().join("bad.csv"), dir.path().join("good.csv"));
    let incident = 3 * 1440 + 600; // day 4, 10:00
    series(&bad, Some(incident));
    series(&good, None);
    let out = dir.path().join("alarms");
    let events = dir.path().join("events.jsonl");
    let o = Command::new(env!("CARGO_BIN_EXE_wanwatch"))
        .args(["replay", bad.to_str().unwrap(), good.to_str().unwrap(), "--value-col", "rtt_ms", "--name-root"])
        .arg(dir.path())
        .arg("--out-dir")
        .arg(&out)
        .arg("--events")
        .arg(&events)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let ensemble: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("ensemble.json")).unwrap()).unwrap();
    let at = |name: &str| -> Vec<String> {
        ensemble[name].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    println!("{stderr}\nbad: {:?}\ngood: {:?}", at("bad.csv"), at("good.csv"));
    assert!(at("bad.csv").contains(&"2025-12-04 10:00:00".to_string()), "alarm at the incident's first minute");
    // The forest's fit is random (the crate draws from the thread's RNG), so the false alarms of
    // the first days (calibrators with one day of history; measured 1-3 in days 2-4 of this
    // series) come and go between runs. Bounded here, reported in the notes; the steady state
    // is what scripts/score.py measures on 60 days of a real home link.
    let incident_alarms = at("bad.csv").iter().filter(|t| t.starts_with("2025-12-04 10:")).count();
    assert_eq!(incident_alarms, 1, "one incident, one alarm: {:?}", at("bad.csv"));
    assert!(at("good.csv").len() <= 3, "a healthy 4 days: {:?}", at("good.csv"));
    for d in ["forecast", "autoencoder", "forest", "rules", "predict", "zscore"] {
        assert!(out.join(format!("{d}.json")).exists(), "{d}");
    }
    let ev = std::fs::read_to_string(&events).unwrap();
    let incident: serde_json::Value = ev
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["start"] == "2025-12-04 10:00:00")
        .expect("the incident's event");
    let text = incident["explanation"].as_str().unwrap();
    // in its first week a series has no Thursday 10:00 yet: the usual for 10:00 on other days
    assert!(text.starts_with("rtt_ms ") && text.contains("x its usual") && text.contains("for 10:00"), "{text}");
    let ratio: f64 = text.split(" is ").nth(1).unwrap().split('x').next().unwrap().parse().unwrap();
    assert!((4.0..8.0).contains(&ratio), "the jump was 6x: {text}");
}

#[test]
fn replay_errors_name_the_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.csv");
    std::fs::write(&f, "time,value\n2025-01-01 00:00:00,1\n2025-01-01 00:01:00,2\n").unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_wanwatch")).arg("replay").arg(&f).args(args).output().unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let e = run(&[]);
    assert!(e.contains("x.csv: no column `timestamp` (columns: time, value)"), "{e}");
    std::fs::write(&f, "timestamp,value\n2025-01-01 00:00:00,1\nyesterday,2\n").unwrap();
    let e = run(&[]);
    assert!(e.contains("x.csv, line 3, column `timestamp`: `yesterday` is not a timestamp"), "{e}");
    std::fs::write(&f, "timestamp,value\n2025-01-01 00:00:00,1\n2025-01-01 00:01:00,2\n").unwrap();
    let e = run(&["--models", dir.path().to_str().unwrap(), "--out", "/nonexistent/dir/a.json"]);
    assert!(e.contains("/nonexistent/dir/a.json"), "{e}");
}

fn targets() -> Vec<Target> {
    vec![Target { addr: "192.0.2.1".parse().unwrap(), name: "anchor".into(), role: Role::Anchor }]
}

type Got = Arc<Mutex<Vec<(String, String)>>>;

fn detection(db: &Path, baseline_h: i64, source: Source) -> (Detection, Got) {
    detection_with(db, baseline_h, source, Members::default())
}

/// `members`: left out (the agent leaves out `Members::AGENT`; the tests of the forest keep it).
fn detection_with(db: &Path, baseline_h: i64, source: Source, members: Members) -> (Detection, Got) {
    let got: Got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let sink = Box::new(move |r: Record| {
        if let Record::Event { kind, detail, .. } = r {
            g.lock().unwrap().push((kind.as_str().to_string(), detail));
        }
    });
    let settings = Settings { baseline_ms: baseline_h * 3_600_000, without: members, ..Settings::minutes() };
    (Detection::new(settings, source, channels(&targets()), db, sink), got)
}

#[test]
fn agent_detection_raises_one_event_with_an_explanation_and_keeps_its_forest() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let (mut d, got) = detection(&db, 12, Source::Builtin);
    let t0 = 1_764_547_200_000i64;
    let mut x = 7u64;
    for i in 0..(2 * 1440 + 120) {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let n = ((x >> 33) % 1000) as f64 / 1000.0 - 0.5;
        let bad = (2 * 1440 + 60..2 * 1440 + 80).contains(&i);
        let median = if bad { 180.0 } else { 20.0 + 2.0 * n };
        let loss = if bad { 0.3 } else { 0.0 };
        d.step(&minute(t0 + i * 60_000, median, median * 1.3, loss));
    }
    let events = got.lock().unwrap().clone();
    println!("{events:#?}");
    let anomalies: Vec<_> = events.iter().filter(|(k, _)| k == "anomaly").collect();
    assert_eq!(anomalies.len(), 1, "one incident, one event: {events:?}");
    let detail = &anomalies[0].1;
    assert!(detail.contains("RTT to anchor") || detail.contains("loss to anchor"), "{detail}");
    assert!(events.iter().any(|(k, _)| k == "anomaly_end"), "{events:?}");
    // The forest was fitted after the 12 h baseline and saved; a new detector picks it up.
    let saved = forest_file(&db);
    assert!(saved.exists(), "forest saved at {}", saved.display());
    let n = wanwatch::detect::forest::load::<Vec<(String, wanwatch::detect::forest::Saved)>>(&saved).unwrap().len();
    assert_eq!(n, 3, "one forest per channel");
}

#[test]
fn agent_detection_without_models_carries_on_with_the_forest_and_rules() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::fs::write(models.join("forecaster.onnx"), b"not a model").unwrap();
    let (mut d, got) = detection(&dir.path().join("w.db"), 1, Source::Dir(models));
    let t0 = 1_764_547_200_000i64;
    for i in 0..(1440 + 30) {
        let lossy = i >= 1440 + 10;
        d.step(&minute(t0 + i * 60_000, 20.0 + (i % 7) as f64 * 0.3, 25.0, if lossy { 0.5 } else { 0.0 }));
    }
    let events = got.lock().unwrap().clone();
    let anomalies: Vec<_> = events.iter().filter(|(k, _)| k == "anomaly").collect();
    assert_eq!(anomalies.len(), 1, "the loss still alarms, once: {events:?}");
    // The week z-score needs no model file: 50% loss after a day of none is 25 floored spreads
    // away, so it fires on the first lossy minute, before the 5-step sustained-loss rule.
    let detail = &anomalies[0].1;
    assert!(detail.starts_with("loss to anchor 50.0%") && detail.contains("week z 25.0"), "{detail}");
    assert!(!detail.contains("forecast") && !detail.contains("autoencoder"), "no model spoke: {detail}");
}

#[test]
fn agent_detection_reports_a_level_shift_and_a_degradation_and_keeps_its_state_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let (mut d, got) = detection_with(&db, 12, Source::Builtin, Members::AGENT);
    let t0 = 1_764_547_200_000i64;
    let mut x = 11u64;
    let end = 3 * 1440;
    for i in 0..end {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let n = ((x >> 33) % 1000) as f64 / 1000.0 - 0.5;
        // a new route on day 2 (20 -> 26 ms), and half an hour of 100 ms on day 3
        let base = if i < 1440 + 600 { 20.0 } else { 26.0 };
        let median = if (2 * 1440 + 300..2 * 1440 + 330).contains(&i) { 100.0 } else { base + 0.4 * n };
        d.step(&minute(t0 + i * 60_000, median, median * 1.3, 0.0));
    }
    let events = got.lock().unwrap().clone();
    let shifts: Vec<_> = events.iter().filter(|(k, _)| k == "level_shift").collect();
    assert_eq!(shifts.len(), 1, "{events:#?}");
    assert!(shifts[0].1.starts_with("median RTT to anchor went from 20.0 ms to 26.0 ms"), "{}", shifts[0].1);
    let degraded: Vec<_> = events.iter().filter(|(k, _)| k == "degradation").collect();
    assert_eq!(degraded.len(), 1, "{events:#?}");
    assert!(degraded[0].1.contains("its level of 26"), "{}", degraded[0].1);
    // The gates and the outlook are saved (hourly while running) and come back at the next start.
    let state = state_file(&db);
    assert!(state.exists(), "{}", state.display());
    let now = t0 + end * 60_000;
    let before = d.pipeline().outlook().climatology(now);
    let learnt = d.pipeline().outlook().weights();
    let (mut again, _) = detection_with(&db, 12, Source::Builtin, Members::AGENT);
    assert_ne!(again.pipeline().outlook().weights(), learnt, "a fresh outlook starts from the prior");
    again.warm_start(&db, &["192.0.2.1".into()], now);
    let restored = again.pipeline().outlook();
    // as saved at the last hourly save, not as a fresh outlook (0.5 with no outcomes)
    let c = restored.climatology(now);
    assert!((c - before).abs() < 0.002 && (c - 0.5).abs() > 0.1, "{c} vs {before}");
    let w = restored.weights();
    assert!(w.iter().zip(&learnt).all(|(a, b)| (a - b).abs() < 0.05), "{w:?} vs {learnt:?}");
    // A state file that is not one is named and set aside, not a crash.
    std::fs::write(&state, b"{ not json").unwrap();
    let (mut third, _) = detection_with(&db, 12, Source::Builtin, Members::AGENT);
    third.warm_start(&db, &["192.0.2.1".into()], now);
}

#[test]
fn replay_writes_level_shifts_by_onset_beside_the_other_detectors() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("route.csv");
    let mut text = String::from("timestamp,rtt_ms\n");
    for i in 0..2000 {
        let v = if i < 1000 { 150.0 } else { 160.0 } + ((i * 7919) % 11) as f64 * 0.1;
        text.push_str(&format!("{},{v:.2}\n", 1_476_000_000 + i * 240));
    }
    std::fs::write(&csv, text).unwrap();
    let out = dir.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_wanwatch"))
        .args(["replay", csv.to_str().unwrap(), "--value-col", "rtt_ms", "--name-root"])
        .arg(dir.path())
        .arg("--out-dir")
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))).unwrap()
    };
    let shifts = read("shift.json");
    let onsets = shifts["route.csv"].as_array().unwrap();
    assert_eq!(onsets.len(), 1, "{shifts}");
    // the step was at row 1000: 1_476_240_000 = 2016-10-12 02:40:00 UTC
    let onset = onsets[0].as_str().unwrap();
    assert!(onset.starts_with("2016-10-12 02:4") || onset.starts_with("2016-10-12 02:3"), "{onset}");
    for other in ["ensemble.json", "zscore.json", "degradation.json", "shift_confirmed.json", "outlook.json"] {
        assert!(out.join(other).exists(), "{other} missing");
    }
}
