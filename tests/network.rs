//! End-to-end tests on the network test bed (real namespaces, real ICMP, real SQLite): the
//! numbers wanwatch stores must match what the fake WAN was scripted to do.

mod bed;

use std::sync::Mutex;

use bed::http::{Server, speed_handler};
use bed::{Bed, Workdir, sh, skip_unless_root, wall_ms};
use rusqlite::Connection;
use wanwatch::config::probes::{BandwidthConfig, SpeedServer};
use wanwatch::probe::bandwidth::{SpeedResult, measure};

/// One bed at a time: the agent and the responder share two cores, and RTT assertions at the
/// millisecond level should not measure the other tests.
static SERIAL: Mutex<()> = Mutex::new(());

fn config(w: &Workdir, interval: &str, timeout: &str, anchors: &[std::net::IpAddr], extra: &str) -> std::path::PathBuf {
    let list: Vec<String> = anchors.iter().map(|a| format!("\"{a}\"")).collect();
    w.write(
        "wanwatch.toml",
        &format!(
            "[ping]\ninterval = \"{interval}\"\ntimeout = \"{timeout}\"\ngateway = \"{}\"\nanchors = [{}]\n{extra}\n\
             [store]\nflush_interval = \"500ms\"\n",
            bed::GATEWAY,
            list.join(", ")
        ),
    )
}

/// (sent, lost, rtts in ms sorted) for one target address.
fn samples(db: &Connection, addr: &str) -> (u64, u64, Vec<f64>) {
    let mut stmt =
        db.prepare("SELECT s.rtt_us FROM samples s JOIN targets t ON t.id = s.target WHERE t.addr = ?1").unwrap();
    let rtts: Vec<Option<i64>> = stmt.query_map([addr], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    let mut ok: Vec<f64> = rtts.iter().flatten().map(|&us| us as f64 / 1000.0).collect();
    ok.sort_by(f64::total_cmp);
    (rtts.len() as u64, (rtts.len() - ok.len()) as u64, ok)
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 }
}

fn outages(db: &Connection) -> Vec<(String, i64, Option<i64>, Option<i64>)> {
    let mut stmt = db.prepare("SELECT kind, start_ts, end_ts, duration_ms FROM outages ORDER BY start_ts").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn median_rtt_matches_scripted_delay_ipv4_and_ipv6() {
    if !skip_unless_root("median_rtt_matches_scripted_delay_ipv4_and_ipv6") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut bed = Bed::new("steady.toml");
    let w = Workdir::new();
    let gw6 = format!("[[ping.target]]\naddr = \"{}\"\nname = \"gateway6\"\nrole = \"gateway\"\n", bed::GATEWAY6);
    // 25 ms apart for 10 s: ~400 pings per anchor, so the sample median of the jittered delay
    // sits within ~0.2 ms (one standard error) of the scripted one.
    let cfg = config(&w, "25ms", "1s", &bed.anchors(), &gw6);
    let db_path = w.path("w.db");
    bed.start_responder();
    bed.run_agent(&db_path, &cfg, &["--for", "10s"]);

    if let Some(dir) = std::env::var_os("WANWATCH_TEST_KEEP") {
        std::fs::copy(&db_path, std::path::Path::new(&dir).join("steady.db")).unwrap();
    }
    let db = Connection::open(&db_path).unwrap();
    for a in &bed.scenario.anchor {
        let (sent, lost, rtts) = samples(&db, &a.addr.to_string());
        assert!(sent >= 320, "{}: only {sent} samples in 10 s at 25 ms", a.addr);
        assert_eq!(lost, 0, "{}: lost {lost} of {sent} on a lossless link", a.addr);
        let m = median(&rtts);
        println!("{}: scripted {} ms, measured median {m:.3} ms over {sent} pings", a.addr, a.delay_ms);
        assert!((m - a.delay_ms).abs() <= 1.0, "{}: median {m:.3} ms, scripted {} ms", a.addr, a.delay_ms);
    }
    // The gateways (v4 and v6) answer from the kernel, well under a millisecond.
    for gw in [bed::GATEWAY, bed::GATEWAY6] {
        let (sent, lost, rtts) = samples(&db, gw);
        assert!(sent >= 320 && lost == 0, "{gw}: {sent} sent, {lost} lost");
        assert!(median(&rtts) < 1.0, "{gw}: median {} ms", median(&rtts));
    }
    assert!(outages(&db).is_empty(), "no outage on a steady link: {:?}", outages(&db));
}

#[test]
fn measured_loss_is_inside_the_binomial_interval_and_late_replies_count_once() {
    if !skip_unless_root("measured_loss_is_inside_the_binomial_interval_and_late_replies_count_once") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut bed = Bed::new("lossy.toml");
    let w = Workdir::new();
    let cfg = config(&w, "50ms", "150ms", &bed.anchors(), "[state]\ndegraded_loss = 0.5\n");
    let db_path = w.path("w.db");
    bed.start_responder();
    bed.run_agent(&db_path, &cfg, &["--for", "15s"]);
    let db = Connection::open(&db_path).unwrap();

    // Loss: the measured fraction must fall inside the 99% binomial interval of the script.
    let mut sents = Vec::new();
    for a in &bed.scenario.anchor[..2] {
        let (sent, lost, _) = samples(&db, &a.addr.to_string());
        let measured = lost as f64 / sent as f64;
        let half = 2.576 * (a.loss * (1.0 - a.loss) / sent as f64).sqrt();
        println!(
            "{}: scripted loss {:.3}, measured {measured:.3} over {sent} (99% interval ±{half:.3})",
            a.addr, a.loss
        );
        assert!(sent >= 250, "{}: only {sent} pings", a.addr);
        assert!((measured - a.loss).abs() <= half, "{}: loss {measured:.3} outside {:.3}±{half:.3}", a.addr, a.loss);
        sents.push(sent);
    }

    // Late replies: delay uniform in 50..250 ms against a 150 ms timeout. Every ping is one
    // sample (no extra "loss" when the late reply shows up), no stored RTT exceeds the timeout,
    // and about half are lost.
    let late = bed.scenario.anchor[2].addr.to_string();
    let (sent, lost, rtts) = samples(&db, &late);
    let dupes: i64 = db
        .query_row(
            "SELECT count(*) - count(DISTINCT s.seq) FROM samples s JOIN targets t ON t.id = s.target WHERE t.addr = ?1",
            [&late],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dupes, 0, "a sequence number was stored twice");
    assert!(sent.abs_diff(sents[0]) <= 3, "late target has {sent} samples vs {} for a normal one", sents[0]);
    assert!(rtts.iter().all(|&r| r <= 150.0 + 5.0), "an RTT beyond the timeout was stored: {:?}", rtts.last());
    let measured = lost as f64 / sent as f64;
    let half = 2.576 * (0.25 / sent as f64).sqrt();
    println!("{late}: late replies counted lost: {measured:.3} over {sent} (expected 0.5±{half:.3})");
    assert!((measured - 0.5).abs() <= half + 0.03, "late-reply loss {measured:.3}");
}

/// Run a scenario with outages and check the agent's outages against when they really were.
fn check_outages(scenario: &str, expect_kind: &str, run_for: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut bed = Bed::new(scenario);
    let w = Workdir::new();
    let cfg = config(&w, "200ms", "500ms", &bed.anchors(), "");
    let db_path = w.path("w.db");
    bed.start_responder();
    let t0 = wall_ms();
    let cuts = bed.run_cuts();
    bed.run_agent(&db_path, &cfg, &["--for", run_for]);
    let mut truth: Vec<(i64, i64)> = cuts.join().unwrap().into_iter().map(|(_, down, up)| (down, up)).collect();
    for o in &bed.scenario.outage {
        truth.push((t0 + (o.start_s * 1000.0) as i64, t0 + (o.end_s * 1000.0) as i64));
    }
    truth.sort();

    if let Some(dir) = std::env::var_os("WANWATCH_TEST_KEEP") {
        std::fs::copy(&db_path, std::path::Path::new(&dir).join(format!("{scenario}.db"))).unwrap();
    }
    let db = Connection::open(&db_path).unwrap();
    let got = outages(&db);
    println!("{scenario}: scripted {truth:?}\n  recorded {got:?}");
    assert_eq!(got.len(), truth.len(), "{scenario}: expected {} outages, got {got:?}", truth.len());
    for ((kind, start, end, dur), (down, up)) in got.iter().zip(&truth) {
        assert_eq!(kind, expect_kind, "{scenario}: wrong outage kind");
        let end = end.expect("outage closed");
        assert!((start - down).abs() <= 2000, "{scenario}: start off by {} ms", start - down);
        assert!((end - up).abs() <= 2000, "{scenario}: end off by {} ms", end - up);
        let dur = dur.expect("duration recorded");
        assert!(dur > 0 && (dur - (end - start)).abs() <= 1000, "{scenario}: duration {dur} vs {}", end - start);
    }
    let state: String = db.query_row("SELECT value FROM status WHERE key = 'state'", [], |r| r.get(0)).unwrap();
    assert_eq!(state, "up", "{scenario}: the link came back, the state should say so");

    // `wanwatch status` shows them.
    let out = bed.wanwatch(&["status", "--db", db_path.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
    let label = if expect_kind == "lan" { "LAN/router" } else { "internet" };
    assert_eq!(text.matches(label).count(), truth.len(), "status should list the outages:\n{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 80), "status wider than 80 columns:\n{text}");
}

#[test]
fn wan_cut_is_a_wan_outage_with_the_right_times() {
    if skip_unless_root("wan_cut_is_a_wan_outage_with_the_right_times") {
        check_outages("wan_cut.toml", "wan", "16s");
    }
}

#[test]
fn lan_cut_is_a_lan_outage_with_the_right_times() {
    if skip_unless_root("lan_cut_is_a_lan_outage_with_the_right_times") {
        check_outages("lan_cut.toml", "lan", "15s");
    }
}

/// The whole alert path on a real cut: agent -> database -> notifier -> webhook, where the
/// webhook lives on the internet side, so it is unreachable exactly while the outage lasts.
/// "Internet down" must wait in the queue and arrive after the link is back, then "back".
#[test]
fn an_outage_alert_waits_for_the_link_and_then_arrives() {
    if !skip_unless_root("an_outage_alert_waits_for_the_link_and_then_arrives") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut bed = Bed::new("wan_cut.toml");
    let got: std::sync::Arc<Mutex<Vec<(i64, String)>>> = Default::default();
    let g = got.clone();
    let _hook = Server::start("198.18.2.2:8081", Some(&bed.wan), move |req| {
        g.lock().unwrap().push((wall_ms(), req.body.clone()));
        bed::http::Reply::text(200, "ok")
    });
    let w = Workdir::new();
    let extra = "[notify]\nmin_interval = \"1s\"\n[notify.webhook]\nurl = \"http://198.18.2.2:8081/hook\"\n[web]\nenabled = false\n";
    let cfg = config(&w, "200ms", "500ms", &bed.anchors(), extra);
    let db_path = w.path("w.db");
    bed.start_responder();
    let cuts = bed.run_cuts();
    bed.run_agent(&db_path, &cfg, &["--for", "22s"]);
    let (_, down, up) = cuts.join().unwrap()[0].clone();
    let got = got.lock().unwrap().clone();
    let titles: Vec<(i64, String)> = got
        .iter()
        .map(|(t, b)| {
            (*t, serde_json::from_str::<serde_json::Value>(b).unwrap()["title"].as_str().unwrap().to_string())
        })
        .collect();
    println!("cut {down}..{up}; webhook got {:?}", titles.iter().map(|(t, s)| (t - down, s)).collect::<Vec<_>>());
    // Exactly these two: the moment of "degraded" before the outage was declared is no message.
    assert_eq!(titles.len(), 2, "{titles:?}");
    assert_eq!(titles[0].1, "Internet down");
    assert!(titles[0].0 >= up, "delivered while the internet was down?");
    assert!(titles[1].1.starts_with("Internet back after "), "{titles:?}");
}

#[test]
fn isp_blackhole_windows_are_wan_outages() {
    if skip_unless_root("isp_blackhole_windows_are_wan_outages") {
        check_outages("isp_blackhole.toml", "wan", "27s");
    }
}

#[test]
fn without_icmp_permission_the_error_says_how_to_grant_it() {
    if !skip_unless_root("without_icmp_permission_the_error_says_how_to_grant_it") {
        return;
    }
    // A fresh namespace has the kernel default ping_group_range "1 0": no unprivileged ICMP.
    let bed = Bed::new("steady.toml");
    let w = Workdir::new();
    std::fs::set_permissions(w.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let db = w.path("w.db");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &bed.lan, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_wanwatch"))
        .args([
            "run",
            "--probes",
            "none",
            "--db",
            db.to_str().unwrap(),
            "--gateway",
            "none",
            "--target",
            "198.19.0.1",
            "--for",
            "2s",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unprivileged agent cannot ping here");
    for hint in ["cannot open an ICMP socket", "ping_group_range", "setcap cap_net_raw+ep"] {
        assert!(err.contains(hint), "error should mention {hint:?}:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(!db.exists(), "no database is created when the agent cannot measure");
}

/// Run a speed test from inside the bed's LAN namespace.
fn speed_test(bed: &Bed, cfg: BandwidthConfig, budget: u64) -> SpeedResult {
    let lan = bed.lan.clone();
    std::thread::spawn(move || {
        bed::enter_netns(&lan);
        measure(&cfg, budget)
    })
    .join()
    .unwrap()
}

#[test]
fn bandwidth_test_measures_a_tbf_shaped_link_within_10_percent() {
    if !skip_unless_root("bandwidth_test_measures_a_tbf_shaped_link_within_10_percent") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bed = Bed::new("steady.toml");
    // Download (gateway -> Pi) at 40 Mbit/s, upload (gateway -> internet) at 20 Mbit/s, each
    // with a 50 ms queue: the bufferbloat a loaded home link shows.
    const DOWN: f64 = 40.0;
    const UP: f64 = 20.0;
    sh(&[
        "tc", "-n", &bed.gw, "qdisc", "add", "dev", "gwl", "root", "tbf", "rate", "40mbit", "burst", "64kb", "latency",
        "50ms",
    ]);
    sh(&[
        "tc", "-n", &bed.gw, "qdisc", "add", "dev", "gww", "root", "tbf", "rate", "20mbit", "burst", "64kb", "latency",
        "50ms",
    ]);
    let server = Server::start("198.18.2.2:8080", Some(&bed.wan), speed_handler);
    for kind in [SpeedServer::Cloudflare, SpeedServer::Librespeed] {
        let cfg = BandwidthConfig { server: kind, url: server.url(), ..BandwidthConfig::default() };
        let r = speed_test(&bed, cfg, 10_000_000_000);
        println!(
            "{kind:?}: down {:.1} Mbit/s (tbf {DOWN}), up {:.1} Mbit/s (tbf {UP}), idle {:.2} ms, loaded {:.1}/{:.1} ms, {} bytes, notes {:?}",
            r.down_mbps.unwrap_or(0.0),
            r.up_mbps.unwrap_or(0.0),
            r.idle_ms.unwrap_or(0.0),
            r.loaded_down_ms.unwrap_or(0.0),
            r.loaded_up_ms.unwrap_or(0.0),
            r.bytes,
            r.notes
        );
        let down = r.down_mbps.expect("download measured");
        let up = r.up_mbps.expect("upload measured");
        assert!((down - DOWN).abs() <= DOWN * 0.10, "{kind:?}: download {down:.1} Mbit/s, shaped to {DOWN}");
        assert!((up - UP).abs() <= UP * 0.10, "{kind:?}: upload {up:.1} Mbit/s, shaped to {UP}");
        let (idle, loaded) = (r.idle_ms.unwrap(), r.loaded_ms().unwrap());
        assert!(
            loaded > idle + 5.0,
            "{kind:?}: the tbf queue should show as bufferbloat: idle {idle:.2} ms, loaded {loaded:.2} ms"
        );
        assert!(r.notes.is_empty(), "{:?}", r.notes);
    }
}

#[test]
fn bandwidth_test_never_exceeds_its_budget() {
    if !skip_unless_root("bandwidth_test_never_exceeds_its_budget") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bed = Bed::new("steady.toml");
    let server = Server::start("198.18.2.2:8080", Some(&bed.wan), speed_handler);
    let cfg = BandwidthConfig { url: server.url(), ..BandwidthConfig::default() };
    for budget in [0u64, 300_000, 3_000_000] {
        let r = speed_test(&bed, cfg.clone(), budget);
        println!("budget {budget}: used {} bytes, notes {:?}", r.bytes, r.notes);
        assert!(r.bytes <= budget, "used {} bytes of a {budget} byte budget", r.bytes);
        assert!(r.notes.iter().any(|n| n.contains("budget")), "{:?}", r.notes);
    }
}
