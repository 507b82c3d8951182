//! The agent's footprint, as a benchmark that prints figures (not a pass/fail timing test):
//! CPU seconds, peak RSS and bytes written while pinging 4 namespace targets at 1 Hz.
//!
//! ```sh
//! sudo cargo test --release --test footprint -- --ignored --nocapture     # 10 minutes
//! WANWATCH_FOOTPRINT_SECS=180 WANWATCH_FOOTPRINT_FLUSH=1s,5s,15s sudo -E cargo test --release --test footprint -- --ignored --nocapture
//! ```
//!
//! fping (`apt install fping`) runs beside the agent to the same targets, so CPU is also given
//! as a ratio to fping's measured at the same moment.
//!
//! On the Pi's architecture under qemu-user: `make aarch64`, an arm64 fping
//! (`dpkg --add-architecture arm64; apt-get update; apt-get download fping:arm64; dpkg-deb -x
//! fping_*_arm64.deb DIR`), then `WANWATCH_FOOTPRINT_QEMU=DIR/usr/bin/fping` with the command
//! above: both run under `qemu-aarch64`, so the CPU ratio compares like with like, and the RSS
//! is the qemu process's (the emulator's own memory included; fping's figure shows how much).
//! With `WANWATCH_FOOTPRINT_GUEST_RSS=1` as well, `tests/fixtures/guest_rss.c` (built with
//! aarch64-linux-gnu-gcc) is preloaded into both guests and prints the resident memory of the
//! guest's own mappings, as on a Pi, sampled every 5 s; it costs CPU of its own, so take the
//! CPU ratio from a run without it.
//!
//! `WANWATCH_FOOTPRINT_BIN=path` measures another build of the agent (an A/B comparison).
//! `WANWATCH_FOOTPRINT_DETECT=off` runs the agent without detection (no models loaded);
//! `WANWATCH_FOOTPRINT_HISTORY_DAYS=7` starts the agent on a database that already holds a week
//! of minute rollups for its targets, so detection's warm start loads a full week of history
//! (the RSS with "a week of detection history").

mod bed;

use std::time::{Duration, Instant};

use bed::{Bed, Workdir, skip_unless_root};

fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    field_of(&std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default(), key)
}

/// The number after `key` in a /proc `key: value` text (0 when missing).
fn field_of(text: &str, key: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time of all the process's threads, in seconds, from the scheduler's nanosecond
/// accounting (utime/stime in clock ticks round a light process down to zero).
/// Bytes the process sent to storage, less those of files truncated before they were written back.
fn written_bytes(pid: u32) -> u64 {
    proc_field(pid, "io", "write_bytes:").saturating_sub(proc_field(pid, "io", "cancelled_write_bytes:"))
}

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

/// Thread name -> (wake-ups, CPU ns).
type Threads = std::collections::BTreeMap<String, (u64, u64)>;

/// Per thread name, summed over the process's threads: wake-ups (context switches) and CPU
/// time in nanoseconds (schedstat), so a cost can be put on the thread that pays it.
fn threads(pid: u32) -> Threads {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else { continue };
        let name = status.lines().next().and_then(|l| l.split_whitespace().nth(1)).unwrap_or("?").to_string();
        let ns = std::fs::read_to_string(t.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        let e: &mut (u64, u64) = out.entry(name).or_default();
        e.0 += field_of(&status, "voluntary_ctxt_switches:") + field_of(&status, "nonvoluntary_ctxt_switches:");
        e.1 += ns;
    }
    out
}

/// What one run measured.
struct Figures {
    flush: String,
    secs: f64,
    pings: i64,
    cpu_s: f64,
    fping_cpu_s: Option<f64>,
    rss_mb: f64,
    fping_rss_mb: f64,
    /// Under qemu with the guest probe: (current, peak) MB of the guests' own mappings.
    guest_rss_mb: Option<(f64, f64)>,
    fping_guest_rss_mb: Option<(f64, f64)>,
    mb_per_day: f64,
    wakeups_per_s: Vec<(String, f64)>,
    /// CPU seconds per thread name over the steady stretch.
    cpu_by_thread: Vec<(String, f64)>,
    /// Bytes written by the stop (last flush + checkpoint) after `run_secs` of running.
    stop_bytes: u64,
    run_secs: f64,
}

/// SQLite's WAL index in RAM for the bench's database, unmounted on drop.
struct RamIndex(std::path::PathBuf, std::path::PathBuf);

impl RamIndex {
    fn new(db: &std::path::Path) -> RamIndex {
        use wanwatch::store::shm;
        match shm::keep_in_ram(db, std::path::Path::new(shm::RAM_DIR)).unwrap() {
            shm::Outcome::Mounted(source) => RamIndex(db.to_path_buf(), source),
            shm::Outcome::Already => panic!("the bench's folder is on a tmpfs: bytes written would not be counted"),
        }
    }
}

impl Drop for RamIndex {
    fn drop(&mut self) {
        let _ = wanwatch::store::shm::release(&self.0, &self.1);
    }
}

const QEMU: &str = "qemu-aarch64";
const QEMU_ROOT: &str = "/usr/aarch64-linux-gnu";

/// The arm64 fping to run beside the aarch64 agent, when the bench runs under qemu-user.
fn qemu() -> Option<String> {
    std::env::var("WANWATCH_FOOTPRINT_QEMU").ok().filter(|s| !s.is_empty())
}

/// Under qemu with `WANWATCH_FOOTPRINT_GUEST_RSS=1`: a folder anyone can write (fping runs as
/// nobody) holding the guest-memory probe, built for aarch64.
fn guest_rss_probe() -> Option<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    if qemu().is_none() || std::env::var("WANWATCH_FOOTPRINT_GUEST_RSS").map_or(true, |v| v != "1") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/guest_rss.c");
    let so = dir.path().join("guest_rss.so");
    let o = std::process::Command::new("aarch64-linux-gnu-gcc")
        .args(["-shared", "-fPIC", "-O2", "-o", so.to_str().unwrap(), src, "-lpthread"])
        .output()
        .expect("aarch64-linux-gnu-gcc (apt install gcc-aarch64-linux-gnu)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(dir)
}

/// qemu's flags that preload the probe into a guest, writing to `name` in `dir`.
fn guest_rss_flags(dir: &std::path::Path, name: &str) -> Vec<String> {
    let so = dir.join("guest_rss.so");
    let out = dir.join(name);
    vec![
        "-E".into(),
        format!("LD_PRELOAD={}", so.display()),
        "-E".into(),
        format!("WANWATCH_GUEST_RSS_OUT={}", out.display()),
    ]
}

/// What the probe wrote last: (current, peak) MB.
fn guest_rss(dir: &std::path::Path, name: &str) -> Option<(f64, f64)> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    let mut kb = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some((kb.next()?? / 1024.0, kb.next()?? / 1024.0))
}

/// The agent to measure: `WANWATCH_FOOTPRINT_BIN`, else this checkout's build (aarch64 under
/// qemu).
fn agent_bin() -> Option<String> {
    std::env::var("WANWATCH_FOOTPRINT_BIN").ok().filter(|s| !s.is_empty())
}

fn run_once(flush: &str, secs: u64) -> Figures {
    let mut bed = Bed::new("steady.toml");
    // As on the appliance: Debian's systemd opens unprivileged ping sockets to every group
    // (/usr/lib/sysctl.d/50-default.conf), so the agent and fping use ICMP datagram sockets that
    // get only their own replies; a new namespace starts with them closed ("1 0"), and on raw
    // sockets each process would also wake for the other's replies.
    let o = bed::sysctl(&bed.lan, &["net.ipv4.ping_group_range=0 2147483647"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let w = Workdir::new();
    let anchors: Vec<String> = bed.anchors().iter().map(|a| format!("\"{a}\"")).collect();
    // Defaults everywhere (1 s interval) but the targets (gateway + 3 anchors) and the flush.
    let store = if flush == "default" { String::new() } else { format!("[store]\nflush_interval = \"{flush}\"\n") };
    // `WANWATCH_FOOTPRINT_DETECT=off`: the agent without detection (no models loaded).
    let detect = if std::env::var("WANWATCH_FOOTPRINT_DETECT").is_ok_and(|v| v == "off") {
        "[detect]\nenabled = false\n"
    } else {
        ""
    };
    let cfg = w.write(
        "w.toml",
        &format!("[ping]\ngateway = \"{}\"\nanchors = [{}]\n{store}{detect}", bed::GATEWAY, anchors.join(", ")),
    );
    let db = w.path("w.db");
    let history_days: i64 =
        std::env::var("WANWATCH_FOOTPRINT_HISTORY_DAYS").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    if history_days > 0 {
        fill_history(&db, &bed, history_days);
    }
    // As the packaged unit does (`wanwatch shm-in-ram`), unless WANWATCH_FOOTPRINT_SHM=disk.
    let ram = std::env::var("WANWATCH_FOOTPRINT_SHM").map_or(true, |v| v != "disk");
    let _index = ram.then(|| RamIndex::new(&db));
    bed.start_responder();
    let run = ["run", "--probes", "none", "--db", db.to_str().unwrap(), "--config", cfg.to_str().unwrap()];
    let probe = guest_rss_probe();
    let mut child = match qemu() {
        Some(_) => {
            let bin = agent_bin().unwrap_or_else(|| {
                concat!(env!("CARGO_MANIFEST_DIR"), "/target/aarch64-unknown-linux-gnu/release/wanwatch").into()
            });
            assert!(std::path::Path::new(&bin).exists(), "{bin}: run `make aarch64` first");
            let mut c = bed.in_lan(&[QEMU, "-L", QEMU_ROOT]);
            if let Some(p) = &probe {
                c.args(guest_rss_flags(p.path(), "agent.rss"));
            }
            c.arg(bin).args(run).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::inherit());
            c
        }
        None => match agent_bin() {
            Some(bin) => {
                let mut c = bed.in_lan(&[bin.as_str()]);
                c.args(run);
                c
            }
            None => bed.wanwatch(&run),
        },
    }
    .env("WANWATCH_LOG", "error")
    .spawn()
    .unwrap();
    // fping to the same 4 targets at the same rate, in the same namespace, at the same time.
    let targets: Vec<String> =
        std::iter::once(bed::GATEWAY.to_string()).chain(bed.anchors().iter().map(|a| a.to_string())).collect();
    // fping as an unprivileged user, so it too pings on a datagram socket (as root it would take
    // a raw one and wake for the agent's replies as well).
    let arm_fping = qemu();
    let mut fping_args = vec!["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    let fping_probe = probe.as_ref().map(|p| guest_rss_flags(p.path(), "fping.rss")).unwrap_or_default();
    if let Some(f) = &arm_fping {
        fping_args.extend([QEMU, "-L", QEMU_ROOT]);
        fping_args.extend(fping_probe.iter().map(String::as_str));
        fping_args.push(f.as_str());
    } else {
        fping_args.push("fping");
    }
    fping_args.extend(["-l", "-q", "-p", "1000"]);
    fping_args.extend(targets.iter().map(String::as_str));
    let mut fping = bed.in_lan(&fping_args).spawn().ok();
    let pid = child.id();
    let start = Instant::now();
    let (mut cpu, mut fcpu, mut hwm, mut written, mut fhwm) = (0.0, 0.0, 0, 0, 0);
    // Steady state: start-up (creating the file, the first pages of every table) is a one-off.
    let flush_s = humantime::parse_duration(flush).map(|d| d.as_secs()).unwrap_or(60);
    let warm_s: u64 = 60.max(2 * flush_s).min(secs / 2);
    let mut warm: Option<(f64, f64, u64, Threads)> = None;
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        cpu = cpu_seconds(pid);
        fcpu = fping.as_ref().map_or(0.0, |f| cpu_seconds(f.id()));
        fhwm = fping.as_ref().map_or(0, |f| proc_field(f.id(), "status", "VmHWM:"));
        hwm = proc_field(pid, "status", "VmHWM:");
        written = written_bytes(pid);
        if warm.is_none() && start.elapsed() >= Duration::from_secs(warm_s) {
            warm = Some((cpu, fcpu, written, threads(pid)));
        }
    }
    let woke = threads(pid);
    let elapsed = start.elapsed().as_secs_f64();
    // What stopping writes: the last flush and a checkpoint of the WAL so far (copying its
    // pages into the database file), read off the exited process before it is reaped.
    let before_stop = written_bytes(pid);
    let run_secs = start.elapsed().as_secs_f64();
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let mut stop_bytes = 0;
    for _ in 0..200 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')) {
            let all = written_bytes(pid);
            stop_bytes = all.saturating_sub(before_stop);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.wait().unwrap().success());
    let fping_ran = fping.as_mut().is_some_and(|f| f.try_wait().ok().flatten().is_none());
    if let Some(mut f) = fping {
        let _ = f.kill();
        let _ = f.wait();
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let pings = wanwatch::store::pings::count(&conn).unwrap();
    assert!(pings as f64 >= 4.0 * elapsed * 0.95, "only {pings} samples");
    let (cpu0, fcpu0, written0, woke0) = warm.expect("ran past the warm-up");
    let steady = elapsed - warm_s as f64;
    let before = |name: &str| woke0.get(name).copied().unwrap_or((0, 0));
    let wakeups_per_s = woke.iter().map(|(name, n)| (name.clone(), (n.0 - before(name).0) as f64 / steady)).collect();
    let cpu_by_thread = woke.iter().map(|(name, n)| (name.clone(), (n.1 - before(name).1) as f64 / 1e9)).collect();
    Figures {
        flush: flush.to_string(),
        secs: steady,
        pings: (4.0 * steady) as i64,
        cpu_s: cpu - cpu0,
        fping_cpu_s: fping_ran.then_some(fcpu - fcpu0),
        rss_mb: hwm as f64 / 1024.0,
        fping_rss_mb: fhwm as f64 / 1024.0,
        guest_rss_mb: probe.as_ref().and_then(|p| guest_rss(p.path(), "agent.rss")),
        fping_guest_rss_mb: probe.as_ref().and_then(|p| guest_rss(p.path(), "fping.rss")),
        mb_per_day: (written - written0) as f64 / steady * 86_400.0 / 1e6,
        wakeups_per_s,
        cpu_by_thread,
        stop_bytes,
        run_secs,
    }
}

/// `days` of minute rollups for the bed's gateway and anchors up to now, wobbling like a real
/// link (a daily cycle, noise, a little loss), for detection's warm start to load.
fn fill_history(db: &std::path::Path, bed: &Bed, days: i64) {
    drop(wanwatch::store::Store::open(db, 16 << 20).unwrap());
    let c = rusqlite::Connection::open(db).unwrap();
    let anchors = bed.anchors();
    let targets =
        std::iter::once((bed::GATEWAY.to_string(), "gateway")).chain(anchors.iter().map(|a| (a.to_string(), "anchor")));
    for (id, (addr, role)) in (1..).zip(targets) {
        c.execute(
            "INSERT INTO targets (id, addr, name, role) VALUES (?1, ?2, ?2, ?3)",
            rusqlite::params![id, addr, role],
        )
        .unwrap();
    }
    let now = bed::wall_ms() / 60_000 * 60_000;
    c.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2 * 1440),
              v(i, m) AS (SELECT i, 20000 + abs(i % 1440 - 720) * 6 + abs(random()) % 3000 FROM n)
         INSERT INTO minutes (ts, target, sent, lost, min_us, mean_us, median_us, p95_us, max_us, jitter_us)
         SELECT ?1 - v.i * 60000, t.id, 60, (abs(random()) % 50 = 0) * (1 + abs(random()) % 3),
                v.m - 2000, v.m + 500, v.m, v.m + 6000 + abs(random()) % 9000, v.m + 20000, 800 + abs(random()) % 1500
         FROM v, targets t",
        rusqlite::params![now, days],
    )
    .unwrap();
}

/// Bytes written, CPU per ping against fping's, peak RSS and wake-ups per thread, for each
/// flush interval in `WANWATCH_FOOTPRINT_FLUSH` (comma-separated; default: the default).
#[test]
#[ignore = "a 10-minute benchmark; run with --ignored"]
fn agent_footprint_4_targets_at_1hz() {
    if !skip_unless_root("agent_footprint_4_targets_at_1hz") {
        return;
    }
    let secs: u64 = std::env::var("WANWATCH_FOOTPRINT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let flushes = std::env::var("WANWATCH_FOOTPRINT_FLUSH").unwrap_or_else(|_| "default".into());
    let mut rows = Vec::new();
    for flush in flushes.split(',') {
        let f = run_once(flush.trim(), secs);
        let per_ping = |cpu: f64| cpu / f.pings as f64 * 1e6;
        let index =
            if std::env::var("WANWATCH_FOOTPRINT_SHM").is_ok_and(|v| v == "disk") { "on disk" } else { "in RAM" };
        let arch = if qemu().is_some() { "aarch64 under qemu-user" } else { std::env::consts::ARCH };
        println!("flush {}: {:.0} s steady, 4 targets at 1 Hz, WAL index {index}, {arch}", f.flush, f.secs);
        println!("  CPU        {:.3}% of one core, {:.0} µs per ping", f.cpu_s / f.secs * 100.0, per_ping(f.cpu_s));
        match f.fping_cpu_s {
            Some(fc) => println!(
                "  fping      {:.0} µs per ping in the same run: ratio {:.2}",
                per_ping(fc),
                f.cpu_s / fc.max(1e-9)
            ),
            None => println!("  fping      not installed: no ratio"),
        }
        println!("  peak RSS   {:.1} MB (fping beside it: {:.1} MB)", f.rss_mb, f.fping_rss_mb);
        if let Some((now, peak)) = f.guest_rss_mb {
            let fping = f.fping_guest_rss_mb.map_or("-".into(), |(n, p)| format!("{n:.1} MB, peak {p:.1} MB"));
            println!(
                "  guest RSS  {now:.1} MB at the end, peak {peak:.1} MB, sampled every 5 s (fping: {fping}); CPU above includes the probe's"
            );
        }
        println!("  written    {:.1} MB/day", f.mb_per_day);
        // SQLite checkpoints every 1000 WAL pages (~100 flushes at 60 s), after the steady
        // stretch; the stop's checkpoint of the WAL so far stands in for it, as if one came
        // every run: an upper bound.
        println!(
            "  at stop    {:.0} KB (last flush + checkpoint of {:.0} s of WAL): at most {:.1} MB/day more",
            f.stop_bytes as f64 / 1024.0,
            f.run_secs,
            f.stop_bytes as f64 / f.run_secs * 86_400.0 / 1e6
        );
        let busy: Vec<String> =
            f.wakeups_per_s.iter().filter(|(_, w)| *w >= 0.05).map(|(name, w)| format!("{name} {w:.2}/s")).collect();
        println!("  wake-ups   {}", busy.join(", "));
        let cpu: Vec<String> = f
            .cpu_by_thread
            .iter()
            .filter(|(_, s)| *s > 0.0)
            .map(|(name, s)| format!("{name} {:.0} µs", per_ping(*s)))
            .collect();
        println!("  CPU/ping   by thread: {}", cpu.join(", "));
        rows.push(f);
    }
    if rows.len() > 1 {
        println!(
            "\n| flush | MB/day written | + checkpoint, at most | CPU µs/ping | fping ratio |\n|---|---|---|---|---|"
        );
        for f in &rows {
            let ratio = f.fping_cpu_s.map_or("-".into(), |fc| format!("{:.2}", f.cpu_s / fc.max(1e-9)));
            let stop = f.stop_bytes as f64 / f.run_secs * 86_400.0 / 1e6;
            println!(
                "| {} | {:.1} | {:.1} | {:.0} | {ratio} |",
                f.flush,
                f.mb_per_day,
                stop,
                f.cpu_s / f.pings as f64 * 1e6
            );
        }
    }
}

/// Issue 16.7: `wanwatch run` is ready (READY=1 to systemd) soon after start however large the
/// database: a year-sized one here (rollups for 3 years, raw pings for 90 days, 4 targets at
/// 1 Hz). Prints the time to READY over three starts; building the database takes a few minutes.
#[test]
#[ignore = "a benchmark that builds a year-sized database; run with --ignored"]
fn startup_with_a_year_sized_database() {
    if !bed::can_ping("startup_with_a_year_sized_database") {
        return;
    }
    use std::os::unix::net::UnixDatagram;
    let w = Workdir::new();
    let db = w.path("year.db");
    let now = bed::wall_ms() / 60_000 * 60_000;
    let day = 86_400_000i64;
    let raw_days: i64 = std::env::var("WANWATCH_STARTUP_RAW_DAYS").ok().and_then(|s| s.parse().ok()).unwrap_or(90);
    let built = Instant::now();
    {
        let store = wanwatch::store::Store::open(&db, 16 << 20).unwrap();
        let c = rusqlite::Connection::open(&db).unwrap();
        // The agent's own target (loopback) is target 1, so it resumes on this history.
        c.execute_batch(
            "INSERT INTO targets (id, addr, name, role) VALUES (1, '127.0.0.1', '127.0.0.1', 'anchor'),
                 (2, '192.0.2.1', 'gateway', 'gateway'), (3, '192.0.2.2', 'a2', 'anchor'), (4, '192.0.2.3', 'a3', 'anchor');",
        )
        .unwrap();
        c.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3 * 525600)
             INSERT INTO minutes (ts, target, sent, lost, min_us, mean_us, median_us, p95_us, max_us, jitter_us)
             SELECT ?1 - i * 60000, t.id, 60, i % 7 = 0, 18000, 21000, 20500, 30000, 45000, 1500 FROM n, targets t",
            [now],
        )
        .unwrap();
        c.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
             INSERT INTO outages (kind, start_ts, end_ts, duration_ms) SELECT 'wan', ?1 - i * 47000000, ?1 - i * 47000000 + 90000, 90000 FROM n",
            [now],
        )
        .unwrap();
        drop(c);
        for d in 0..raw_days {
            let start = now - (d + 1) * day;
            for target in 1..=4i64 {
                let pings = (0..86_400i64)
                    .map(|i| wanwatch::store::pings::Ping {
                        ts: start + i * 1000 + target * 250,
                        seq: (i % 65536) as u16,
                        rtt_us: (i % 97 != 0).then_some(20_000 + (i * 7_919 % 9_973) as u32),
                        fail: (i % 97 == 0).then_some(1),
                        err_from: None,
                    })
                    .collect();
                store.insert_pings(target, pings).unwrap();
            }
        }
    }
    let size = std::fs::metadata(&db).unwrap().len();
    println!("year-sized database: {:.0} MB, built in {:.0?}", size as f64 / 1e6, built.elapsed());
    let mut readies = Vec::new();
    for round in 0..3 {
        let sock_path = w.path(&format!("notify{round}.sock"));
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let started = Instant::now();
        let mut agent = bed::loopback_agent(&db)
            .args(["--for", "4s"])
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WANWATCH_LOG", "warn")
            .spawn()
            .unwrap();
        let mut buf = [0u8; 256];
        let mut ready = None;
        while started.elapsed() < Duration::from_secs(60) && ready.is_none() {
            if let Ok(n) = sock.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n]).contains("READY=1")
            {
                ready = Some(started.elapsed());
            }
        }
        assert!(agent.wait().unwrap().success());
        let ready = ready.expect("READY=1 within a minute");
        println!("  start {round}: READY=1 after {:.0} ms", ready.as_secs_f64() * 1000.0);
        readies.push(ready);
    }
    readies.sort();
    println!(
        "startup on a year-sized database: READY=1 after {:.0} ms (median of 3)",
        readies[1].as_secs_f64() * 1000.0
    );
}
