//! The service as systemd sees it: the sandbox's exposure score, and the sd_notify protocol
//! (READY, WATCHDOG, STOPPING) spoken by the real agent to a socket the test listens on.

mod bed;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bed::can_ping;

#[test]
fn service_unit_exposure_is_at_most_2() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/wanwatch.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for must in [
        "Type=notify",
        "WatchdogSec=",
        "User=wanwatch",
        "StateDirectory=wanwatch",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_BIND_SERVICE",
    ] {
        assert!(text.contains(must), "unit lacks {must}");
    }
    let Ok(out) = Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&unit).output() else {
        eprintln!("SKIP service_unit_exposure_is_at_most_2: systemd-analyze not installed");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("exposure level for wanwatch.service: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure figure in:\n{text}\n{}", String::from_utf8_lossy(&out.stderr)));
    println!("systemd-analyze security: exposure {score}");
    assert!(score <= 2.0, "exposure {score} > 2.0");
}

#[test]
fn agent_speaks_sd_notify_ready_watchdog_stopping() {
    if !can_ping("agent_speaks_sd_notify_ready_watchdog_stopping") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let db = dir.path().join("w.db");
    let mut agent = bed::loopback_agent(&db)
        .args(["--for", "5s"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "2000000")
        .env("WANWATCH_LOG", "warn")
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 512];
    while start.elapsed() < Duration::from_secs(8) && !got.iter().any(|m: &String| m.contains("STOPPING=1")) {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(format!("{:.1}s {}", start.elapsed().as_secs_f64(), String::from_utf8_lossy(&buf[..n]).trim()));
        }
    }
    assert!(agent.wait().unwrap().success());
    println!("{got:#?}");
    assert!(got.first().is_some_and(|m| m.ends_with("READY=1")), "first message should be READY=1: {got:?}");
    let pings = got.iter().filter(|m| m.ends_with("WATCHDOG=1")).count();
    // WATCHDOG_USEC = 2 s: fed every second for 5 s.
    assert!(pings >= 4, "only {pings} watchdog pings in 5 s: {got:?}");
    assert!(got.last().is_some_and(|m| m.ends_with("STOPPING=1")), "{got:?}");
}
