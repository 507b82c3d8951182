//! The network test bed: real namespaces, veth pairs and a scripted ICMP responder.
//!
//! ```text
//!  [lan ns]  lan0 198.18.1.2 ──veth── 198.18.1.1 gwl [gw ns] gww 198.18.2.1 ──veth── 198.18.2.2 wan0 [wan ns]
//!   wanwatch runs here                 kernel answers ping                   anchors 198.19.0.x, fd00:19::x
//!                                                                             kernel echo OFF; the
//!                                                                             responder answers instead
//! ```
//!
//! The responder reads its script (delay, jitter, loss, outage windows per anchor) from a
//! scenario file in `tests/scenarios/`. Cutting `lan0` makes a LAN outage, cutting `gww` a WAN
//! outage. Everything is torn down on drop. Needs root; [`skip_unless_root`] says why not.

#![allow(dead_code)]

pub mod dns;
pub mod http;
pub mod path;
pub mod responder;
pub mod scenario;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use scenario::Scenario;

pub const LAN_ADDR: &str = "198.18.1.2";
pub const GATEWAY: &str = "198.18.1.1";
pub const GATEWAY6: &str = "fd00:18:1::1";

/// True when the bed can be built here; otherwise prints why and the test returns early.
pub fn skip_unless_root(test: &str) -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIP {test}: needs root for network namespaces (CI runs it as root)");
        return false;
    }
    let ok = Command::new("ip").args(["netns", "list"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP {test}: `ip netns` is not available (install iproute2)");
    }
    ok
}

/// Pinging loopback needs root or unprivileged ICMP (net.ipv4.ping_group_range covering our
/// group). False, with the reason printed, when neither holds.
pub fn can_ping(test: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let gid = unsafe { libc::getegid() } as u64;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap_or_default();
    let v: Vec<u64> = range.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let ok = v.len() == 2 && v[0] <= gid && gid <= v[1];
    if !ok {
        eprintln!("SKIP {test}: no permission to ping (not root, gid {gid} outside ping_group_range {range:?})");
    }
    ok
}

/// A TCP port free on loopback right now (for a server a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An HTTP client for the tests: every status is an answer, 10 s at most.
pub fn http_client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// `wanwatch run` pinging loopback only (no context probes, no gateway) into `db`.
pub fn loopback_agent(db: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wanwatch"));
    c.args(["run", "--probes", "none", "--db", db.to_str().unwrap(), "--gateway", "none", "--target", "127.0.0.1"]);
    c
}

/// Peak resident memory of a process, in MB (`VmHWM`).
pub fn peak_rss_mb(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The router-log receiver's drop totals in a database, by reason (the newest, largest value).
pub fn syslog_drops(c: &rusqlite::Connection) -> Vec<(String, f64)> {
    c.prepare(
        "SELECT s.subject, max(m.value) FROM metrics m JOIN series s ON s.id = m.series
         WHERE s.probe = 'syslog' AND s.name = 'dropped_lines' GROUP BY s.subject",
    )
    .unwrap()
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// `sysctl -w` each setting inside namespace `ns`.
pub fn sysctl(ns: &str, settings: &[&str]) -> Output {
    let mut args = vec!["ip", "netns", "exec", ns, "sysctl", "-qw"];
    args.extend_from_slice(settings);
    sh(&args)
}

pub fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Bed {
    pub lan: String,
    pub gw: String,
    pub wan: String,
    pub scenario: Scenario,
    pub started: Instant,
    responder: Option<responder::Responder>,
    /// The global route error cost to put back, if this bed changed it.
    route_error_cost: Option<String>,
}

impl Bed {
    pub fn new(scenario_file: &str) -> Bed {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios").join(scenario_file);
        let scenario = Scenario::load(&path);
        let id = format!("ww{}x{}", std::process::id() % 100_000, NEXT.fetch_add(1, Ordering::SeqCst));
        let bed = Bed {
            lan: format!("{id}-lan"),
            gw: format!("{id}-gw"),
            wan: format!("{id}-wan"),
            scenario,
            started: Instant::now(),
            responder: None,
            route_error_cost: None,
        };
        bed.build();
        bed
    }

    fn build(&self) {
        let (lan, gw, wan) = (&self.lan, &self.gw, &self.wan);
        for ns in [lan, gw, wan] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            // No duplicate address detection: link-local addresses usable at once, so IPv6
            // neighbour discovery does not delay the first pings by a second or two.
            sysctl(
                ns,
                &[
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv6.conf.all.keep_addr_on_down=1",
                    "net.ipv6.conf.default.keep_addr_on_down=1",
                ],
            );
        }
        sh(&["ip", "link", "add", "lan0", "netns", lan, "type", "veth", "peer", "name", "gwl", "netns", gw]);
        sh(&["ip", "link", "add", "gww", "netns", gw, "type", "veth", "peer", "name", "wan0", "netns", wan]);
        let addr = |ns: &str, dev: &str, a: &str| sh(&["ip", "-n", ns, "addr", "add", a, "dev", dev, "nodad"]);
        let addr4 = |ns: &str, dev: &str, a: &str| sh(&["ip", "-n", ns, "addr", "add", a, "dev", dev]);
        addr4(lan, "lan0", "198.18.1.2/24");
        addr(lan, "lan0", "fd00:18:1::2/64");
        addr4(gw, "gwl", "198.18.1.1/24");
        addr(gw, "gwl", "fd00:18:1::1/64");
        addr4(gw, "gww", "198.18.2.1/24");
        addr(gw, "gww", "fd00:18:2::1/64");
        addr4(wan, "wan0", "198.18.2.2/24");
        addr(wan, "wan0", "fd00:18:2::2/64");
        for (ns, dev) in [(lan, "lan0"), (gw, "gwl"), (gw, "gww"), (wan, "wan0")] {
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        lan_routes(lan);
        sh(&["ip", "-n", wan, "route", "add", "default", "via", "198.18.2.1"]);
        sh(&["ip", "-n", wan, "-6", "route", "add", "default", "via", "fd00:18:2::1"]);
        sh(&["ip", "netns", "exec", gw, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
        gateway_routes(gw);
        // The fake WAN's kernel must not answer ping: the scripted responder does.
        sh(&[
            "ip",
            "netns",
            "exec",
            wan,
            "sysctl",
            "-qw",
            "net.ipv4.icmp_echo_ignore_all=1",
            "net.ipv6.icmp.echo_ignore_all=1",
        ]);
        for a in &self.scenario.anchor {
            let prefix = if a.addr.is_ipv4() { "32" } else { "128" };
            sh(&["ip", "-n", wan, "addr", "add", &format!("{}/{prefix}", a.addr), "dev", "lo"]);
        }
    }

    /// Start answering pings to the anchors as the scenario says.
    pub fn start_responder(&mut self) {
        self.warm_up();
        self.started = Instant::now();
        self.responder = Some(responder::Responder::start(&self.wan, &self.scenario, self.started));
    }

    /// Resolve IPv6 neighbours on both links before measuring: the first IPv6 pings through a
    /// fresh namespace wait about a second for neighbour discovery, which is real but not what
    /// the tests measure.
    fn warm_up(&self) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("warm.db");
        let mut args =
            vec!["run", "--probes", "none", "--db", db.to_str().unwrap(), "--gateway", GATEWAY6, "--interval", "100ms"];
        let anchors: Vec<String> = self.anchors().iter().map(|a| a.to_string()).collect();
        for a in &anchors {
            args.extend(["--target", a.as_str()]);
        }
        args.extend(["--timeout", "300ms", "--for", "1500ms"]);
        let out = self.wanwatch(&args).env("WANWATCH_LOG", "warn").output().unwrap();
        assert!(out.status.success(), "warm-up failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn responder_stats(&self) -> responder::Stats {
        self.responder.as_ref().expect("responder started").stats()
    }

    /// Cut (`up == false`) or restore a link: `lan` is the Pi's own interface (cable pulled,
    /// router gone), `wan` the gateway's internet side.
    pub fn set_link(&self, side: &str, up: bool) {
        set_link(&self.lan, &self.gw, side, up);
    }

    /// The router's routes to the anchors: `Some("unreachable" | "prohibit" | "blackhole")`
    /// breaks them the way a router whose WAN is down does (the first two answer with ICMP
    /// errors, the last drops silently); `None` puts the real routes back.
    pub fn set_anchor_route(&self, kind: Option<&str>) {
        set_anchor_route(&self.gw, kind);
    }

    /// A second, direct path between the Pi's and the internet's namespaces, shaped like the
    /// main one (`tbf rate` at `mbit` from the `from_wan` side, 50 ms queue): a reference link
    /// whose bulk transfer runs at the same moment as a measurement on the main one. Addresses
    /// 198.18.`net`.2 (Pi) and 198.18.`net`.1 (internet).
    pub fn add_reference_link(&self, net: u8, mbit: u32, from_wan: bool) {
        let (a, b) = (format!("ref{net}l"), format!("ref{net}w"));
        sh(&["ip", "link", "add", &a, "netns", &self.lan, "type", "veth", "peer", "name", &b, "netns", &self.wan]);
        sh(&["ip", "-n", &self.lan, "addr", "add", &format!("198.18.{net}.2/24"), "dev", &a]);
        sh(&["ip", "-n", &self.wan, "addr", "add", &format!("198.18.{net}.1/24"), "dev", &b]);
        sh(&["ip", "-n", &self.lan, "link", "set", &a, "up"]);
        sh(&["ip", "-n", &self.wan, "link", "set", &b, "up"]);
        let (ns, dev) = if from_wan { (&self.wan, &b) } else { (&self.lan, &a) };
        sh(&[
            "tc",
            "-n",
            ns,
            "qdisc",
            "add",
            "dev",
            dev,
            "root",
            "tbf",
            "rate",
            &format!("{mbit}mbit"),
            "burst",
            "64kb",
            "latency",
            "50ms",
        ]);
    }

    /// The router's ICMP error rate limits: the kernel's defaults (on), or off (every error
    /// sent). A forwarding router has two for IPv4: the ICMP one (per namespace) and the
    /// routing code's own (`net.ipv4.route.error_cost`, global: set for the bed's life and put
    /// back when it is dropped).
    pub fn icmp_rate_limit(&mut self, on: bool) {
        const COST: &str = "/proc/sys/net/ipv4/route/error_cost";
        if !on && self.route_error_cost.is_none() {
            self.route_error_cost = std::fs::read_to_string(COST).ok();
            std::fs::write(COST, "0").expect("set net.ipv4.route.error_cost");
        }
        if on && let Some(old) = self.route_error_cost.take() {
            let _ = std::fs::write(COST, old.trim());
        }
        let (v4, v6) = if on { ("1000", "1000") } else { ("0", "0") };
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.gw,
            "sysctl",
            "-qw",
            &format!("net.ipv4.icmp_ratelimit={v4}"),
            &format!("net.ipv6.icmp.ratelimit={v6}"),
        ]);
    }

    /// Run the scenario's link cuts on a thread; returns the wall times (ms) each cut and
    /// restore actually happened.
    pub fn run_cuts(&self) -> std::thread::JoinHandle<Vec<(String, i64, i64)>> {
        let cuts = self.scenario.cut.clone();
        let (lan, gw) = (self.lan.clone(), self.gw.clone());
        let started = self.started;
        std::thread::spawn(move || {
            let mut done = Vec::new();
            for c in cuts {
                sleep_until(started + Duration::from_secs_f64(c.at_s));
                set_link(&lan, &gw, &c.link, false);
                let down = wall_ms();
                sleep_until(started + Duration::from_secs_f64(c.at_s + c.for_s));
                set_link(&lan, &gw, &c.link, true);
                done.push((c.link.clone(), down, wall_ms()));
            }
            done
        })
    }

    /// `wanwatch ARGS` inside the LAN namespace, as a child process.
    pub fn wanwatch(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.lan, env!("CARGO_BIN_EXE_wanwatch")]).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Any command inside the LAN namespace (stdout piped), e.g. iputils `ping` beside the agent.
    pub fn in_lan(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.lan]).args(args);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        c
    }

    /// Run the agent in the LAN namespace until it exits; panics with its stderr on failure.
    pub fn run_agent(&self, db: &Path, config: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["run", "--db", db.to_str().unwrap(), "--config", config.to_str().unwrap()];
        if !extra.contains(&"--probes") {
            args.extend(["--probes", "none"]);
        }
        args.extend_from_slice(extra);
        let out = self.wanwatch(&args).output().expect("start wanwatch");
        assert!(out.status.success(), "wanwatch run failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// Anchor addresses of the scenario.
    pub fn anchors(&self) -> Vec<IpAddr> {
        self.scenario.anchor.iter().map(|a| a.addr).collect()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(old) = self.route_error_cost.take() {
            let _ = std::fs::write("/proc/sys/net/ipv4/route/error_cost", old.trim());
        }
        if let Some(r) = self.responder.take() {
            r.stop();
        }
        for ns in [&self.lan, &self.gw, &self.wan] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

// Why the LAN cut takes the Pi's side down: with the gateway's side of a veth pair down, the
// kernel still lets a few queued pings through about 3 s into the cut, which a real pulled
// cable does not.
fn set_link(lan: &str, gw: &str, side: &str, up: bool) {
    let state = if up { "up" } else { "down" };
    match side {
        "lan" => {
            sh(&["ip", "-n", lan, "link", "set", "lan0", state]);
            if up {
                lan_routes(lan);
            }
        }
        "wan" => {
            sh(&["ip", "-n", gw, "link", "set", "gww", state]);
            if up {
                gateway_routes(gw);
            }
        }
        other => panic!("unknown link side {other}"),
    }
}

fn lan_routes(lan: &str) {
    sh(&["ip", "-n", lan, "route", "replace", "default", "via", "198.18.1.1"]);
    sh(&["ip", "-n", lan, "-6", "route", "replace", "default", "via", "fd00:18:1::1"]);
}

/// The gateway's routes to the anchors. Taking a link down deletes the routes through it, so
/// they are (re)placed after every link comes back, as a router's routing daemon would.
fn gateway_routes(gw: &str) {
    sh(&["ip", "-n", gw, "route", "replace", "198.19.0.0/16", "via", "198.18.2.2"]);
    sh(&["ip", "-n", gw, "-6", "route", "replace", "fd00:19::/32", "via", "fd00:18:2::2"]);
}

/// [`Bed::set_anchor_route`] for the router namespace `gw`, from any thread.
pub fn set_anchor_route(gw: &str, kind: Option<&str>) {
    match kind {
        None => gateway_routes(gw),
        Some(k) => {
            sh(&["ip", "-n", gw, "route", "replace", k, "198.19.0.0/16"]);
            sh(&["ip", "-n", gw, "-6", "route", "replace", k, "fd00:19::/32"]);
        }
    }
}

/// Move this thread into a network namespace; sockets it opens from now on live there.
pub fn enter_netns(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {name}: {}", std::io::Error::last_os_error());
}

pub fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

/// A temporary directory with a config file for the agent.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        Workdir { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}
