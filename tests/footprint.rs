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

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is 14th, stime 15th overall.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    if f.len() < 13 { 0.0 } else { (f[11] + f[12]) as f64 / ticks }
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
    let cfg = w.write("w.toml", &format!("[ping]\ngateway = \"{}\"\nanchors = [{}]\n", bed::GATEWAY, anchors.join(", ")));
    let db = w.path("w.db");
    bed.start_responder();
    let mut child = bed
        .wanwatch(&["run", "--db", db.to_str().unwrap(), "--config", cfg.to_str().unwrap()])
        .env("WANWATCH_LOG", "warn")
        .spawn()
        .unwrap();
    let pid = child.id();
    let start = Instant::now();
    let (mut cpu, mut hwm, mut written) = (0.0, 0, 0);
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        cpu = cpu_seconds(pid);
        hwm = proc_field(pid, "status", "VmHWM:");
        written = proc_field(pid, "io", "write_bytes:");
    }
    let elapsed = start.elapsed().as_secs_f64();
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = conn.query_row("SELECT count(*) FROM samples", [], |r| r.get(0)).unwrap();
    let file = std::fs::metadata(&db).unwrap().len();
    println!("footprint over {elapsed:.0} s, 4 targets at 1 Hz ({n} samples):");
    println!("  CPU      {cpu:.2} s = {:.3}% of one core", cpu / elapsed * 100.0);
    println!("  peak RSS {:.1} MB", hwm as f64 / 1024.0);
    println!(
        "  written  {:.2} MB to storage = {:.1} MB/day extrapolated (database file now {:.2} MB)",
        written as f64 / 1e6,
        written as f64 / elapsed * 86_400.0 / 1e6,
        file as f64 / 1e6
    );
    assert!(n as f64 >= 4.0 * elapsed * 0.95, "only {n} samples");
}
