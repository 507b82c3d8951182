//! The Pi has no RTC: it boots with a wrong clock and NTP sets it later. Run the real agent
//! under libfaketime with the clock 3 days behind, set it right mid-run, and check that the
//! database shows one continuous run at the right time: no fake gap, no samples in the past,
//! rollups where the samples are.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod bed;

use bed::can_ping;

/// Debian's libfaketime (package `faketime`), wherever the architecture puts it.
fn libfaketime() -> Option<String> {
    if let Ok(p) = std::env::var("WANWATCH_LIBFAKETIME") {
        return Some(p);
    }
    ["x86_64-linux-gnu", "aarch64-linux-gnu"]
        .iter()
        .map(|arch| format!("/usr/lib/{arch}/faketime/libfaketime.so.1"))
        .find(|p| Path::new(p).exists())
}

#[test]
fn ntp_setting_the_clock_after_boot_leaves_no_gap_and_nothing_in_the_past() {
    let Some(lib) = libfaketime() else {
        eprintln!("SKIP ntp_setting_the_clock...: libfaketime not found (apt-get install faketime)");
        return;
    };
    if !can_ping("ntp_setting_the_clock_after_boot_leaves_no_gap_and_nothing_in_the_past") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let offset_file = dir.path().join("faketime");
    std::fs::write(&offset_file, "-3d\n").unwrap();
    let db = dir.path().join("w.db");
    // Context rows too: the Pi's own metrics every second and a router log line, so every
    // table that stamps time is in the run.
    let syslog_port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let cfg = dir.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "[system]\ninterval = \"1s\"\n[syslog]\nlisten = \"127.0.0.1:{syslog_port}\"\nallow_from = [\"127.0.0.1\"]\n"
        ),
    )
    .unwrap();
    let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let agent = bed::loopback_agent(&db)
        .args(["--config", cfg.to_str().unwrap(), "--probes", "system,syslog"])
        .args(["--interval", "100ms", "--flush-interval", "500ms", "--for", "8s"])
        .env("LD_PRELOAD", &lib)
        .env("FAKETIME_TIMESTAMP_FILE", &offset_file)
        .env("FAKETIME_NO_CACHE", "1")
        // Only the wall clock is wrong at boot; the monotonic clock is fine.
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // 3 s of samples stamped 3 days ago (and flushed), then NTP sets the clock.
    std::thread::sleep(Duration::from_millis(1500));
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"<30>Nov 25 18:02:11 OpenWrt netifd: Interface 'wan' is now down", ("127.0.0.1", syslog_port))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::write(&offset_file, "+0\n").unwrap();
    let out = agent.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("system clock set by"), "the step should be logged:\n{log}");
    let finished = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;

    let c = rusqlite::Connection::open(&db).unwrap();
    let ts: Vec<i64> =
        wanwatch::store::pings::read(&c, i64::MIN / 2, i64::MAX / 2, None).unwrap().iter().map(|(_, p)| p.ts).collect();
    let (n, first, last) = (ts.len() as i64, ts[0], *ts.last().unwrap());
    assert!(n >= 70, "only {n} samples in 8 s at 100 ms");
    assert!(
        first >= started - 1000 && last <= finished + 1000,
        "samples outside the run: {first}..{last} vs {started}..{finished}"
    );
    // No gap: consecutive samples are ~100 ms apart all the way through the step.
    let widest = ts.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(widest < 500, "a {widest} ms gap in a 100 ms series");
    // Rollups sit where the samples are and count each once.
    let (rolled, oldest_minute): (i64, i64) =
        c.query_row("SELECT sum(sent), min(ts) FROM minutes", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(rolled, n);
    assert!(oldest_minute >= started - 60_000, "a rollup was left 3 days in the past");
    let steps: i64 = c.query_row("SELECT count(*) FROM events WHERE kind = 'clock_step'", [], |r| r.get(0)).unwrap();
    assert_eq!(steps, 1);
    // Every table moved together (issue 12.5: metrics and syslog stayed 3 days behind).
    for (table, min_rows) in [("metrics", 5), ("syslog", 1), ("events", 3)] {
        let (n, oldest): (i64, Option<i64>) =
            c.query_row(&format!("SELECT count(*), min(ts) FROM {table}"), [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert!(n >= min_rows, "only {n} rows in {table}");
        let oldest = oldest.unwrap();
        assert!(oldest >= started - 1000, "{table}: a row was left {} s before the run", (started - oldest) / 1000);
    }
}
