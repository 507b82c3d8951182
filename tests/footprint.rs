//! The agent's footprint, as a benchmark that prints figures (not a pass/fail timing test):
//! CPU seconds, peak RSS and bytes written while pinging 4 namespace targets at 1 Hz.
//!
//! ```sh
//! sudo cargo test --release --test footprint -- --ignored --nocapture     # 10 minutes
//! WANWATCH_FOOTPRINT_SECS=60 sudo -E cargo test --release --test footprint -- --ignored --nocapture
//! ```

mod bed;

use std::time::{Duration, Instant};

use bed::{Bed, Workdir, skip_unless_root};

fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time of all the process's threads, in seconds, from the scheduler's nanosecond
/// accounting (utime/stime in clock ticks round a light process down to zero).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()))
        .sum::<u64>() as f64
        / 1e9
}

#[test]
#[ignore = "a 10-minute benchmark; run with --ignored"]
fn agent_footprint_4_targets_at_1hz() {
    if !skip_unless_root("agent_footprint_4_targets_at_1hz") {
        return;
    }
    let secs: u64 = std::env::var("WANWATCH_FOOTPRINT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let mut bed = Bed::new("steady.toml");
    let w = Workdir::new();
    let anchors: Vec<String> = bed.anchors().iter().map(|a| format!("\"{a}\"")).collect();
    // Defaults everywhere (1 s interval, 5 s flush) but the targets: gateway + 3 anchors.
    let flush = std::env::var("WANWATCH_FOOTPRINT_FLUSH").unwrap_or_else(|_| "default".into());
    let store = if flush == "default" { String::new() } else { format!("[store]\nflush_interval = \"{flush}\"\n") };
    let cfg = w.write(
        "w.toml",
        &format!("[ping]\ngateway = \"{}\"\nanchors = [{}]\n{store}", bed::GATEWAY, anchors.join(", ")),
    );
    let db = w.path("w.db");
    bed.start_responder();
    let mut child = bed
        .wanwatch(&["run", "--probes", "none", "--db", db.to_str().unwrap(), "--config", cfg.to_str().unwrap()])
        .env("WANWATCH_LOG", "warn")
        .spawn()
        .unwrap();
    let pid = child.id();
    let start = Instant::now();
    let (mut cpu, mut hwm, mut written) = (0.0, 0, 0);
    // Steady state: start-up (creating the file, the first pages of every table) is a one-off.
    const WARM: u64 = 60;
    let mut warm: Option<(f64, u64)> = None;
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        if warm.is_none() && start.elapsed() >= Duration::from_secs(WARM) {
            warm = Some((cpu, written));
        }
        cpu = cpu_seconds(pid);
        hwm = proc_field(pid, "status", "VmHWM:");
        // Bytes sent to storage, less those of files truncated before they were written back.
        written = proc_field(pid, "io", "write_bytes:").saturating_sub(proc_field(pid, "io", "cancelled_write_bytes:"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n = wanwatch::store::pings::count(&conn).unwrap();
    let file = std::fs::metadata(&db).unwrap().len();
    println!("footprint over {elapsed:.0} s, 4 targets at 1 Hz, flush interval {flush} ({n} samples):");
    println!("  CPU      {cpu:.2} s = {:.3}% of one core", cpu / elapsed * 100.0);
    println!("  peak RSS {:.1} MB", hwm as f64 / 1024.0);
    println!(
        "  written  {:.2} MB to storage in all (database file now {:.2} MB)",
        written as f64 / 1e6,
        file as f64 / 1e6
    );
    if let Some((cpu0, written0)) = warm {
        let steady = elapsed - WARM as f64;
        println!(
            "  after the first {WARM} s: CPU {:.3}% of one core, {:.1} MB/day written (extrapolated)",
            (cpu - cpu0) / steady * 100.0,
            (written - written0) as f64 / steady * 86_400.0 / 1e6
        );
    }
    assert!(n as f64 >= 4.0 * elapsed * 0.95, "only {n} samples");
}
