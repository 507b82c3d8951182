//! A longer path for localisation tests: the Pi, three routers and a far host.
//!
//! ```text
//!  [lan] ─ 198.18.21.0/24 ─ [r1] ─ 198.18.22.0/24 ─ [r2] ─ 198.18.23.0/24 ─ [r3] ─ 198.18.24.0/24 ─ [far]
//!   .2                     .1  .2                  .1  .2                  .1  .2                  .1
//!                       (gateway)                                                  anchor 198.19.9.1
//!                                                                                  fd00:19:9::1 on lo
//! ```
//!
//! Router k answers "time exceeded" from 198.18.2k.1 (its side towards the Pi), so hop k of a
//! path probe is [`hop`]`(k)`. IPv6 is the same with fd00:18:2k::/64. The far host's kernel
//! answers ping itself. Breaks are routes placed on a router ([`PathBed::break_at`]); a router
//! can be made silent like a carrier's core ([`PathBed::silence`], nftables).

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use super::{NEXT, sh, sysctl};

pub const GATEWAY: &str = "198.18.21.1";
pub const ANCHOR4: &str = "198.19.9.1";
pub const ANCHOR6: &str = "fd00:19:9::1";
/// Routers, then the far host.
pub const ROUTERS: usize = 3;

/// The address router `k` (1-based) answers from.
pub fn hop(k: usize) -> String {
    format!("198.18.{}.1", 20 + k)
}

pub fn hop6(k: usize) -> String {
    format!("fd00:18:{}::1", 20 + k)
}

pub struct PathBed {
    /// lan, r1, r2, r3, far.
    pub ns: Vec<String>,
}

impl PathBed {
    pub fn new() -> PathBed {
        let id = format!("wp{}x{}", std::process::id() % 100_000, NEXT.fetch_add(1, Ordering::SeqCst));
        let ns: Vec<String> = ["lan", "r1", "r2", "r3", "far"].iter().map(|n| format!("{id}-{n}")).collect();
        let bed = PathBed { ns };
        bed.build();
        bed
    }

    pub fn lan(&self) -> &str {
        &self.ns[0]
    }

    fn build(&self) {
        for ns in &self.ns {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            sysctl(ns, &["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]);
        }
        // Link i joins node i-1 (its "up" side, .2) and node i (its "down" side, .1).
        for i in 1..=ROUTERS + 1 {
            let (below, above) = (&self.ns[i - 1], &self.ns[i]);
            let (up, down) = (format!("up{i}"), format!("dn{i}"));
            sh(&["ip", "link", "add", &up, "netns", below, "type", "veth", "peer", "name", &down, "netns", above]);
            sh(&["ip", "-n", below, "addr", "add", &format!("198.18.{}.2/24", 20 + i), "dev", &up]);
            sh(&["ip", "-n", below, "addr", "add", &format!("fd00:18:{}::2/64", 20 + i), "dev", &up, "nodad"]);
            sh(&["ip", "-n", above, "addr", "add", &format!("198.18.{}.1/24", 20 + i), "dev", &down]);
            sh(&["ip", "-n", above, "addr", "add", &format!("fd00:18:{}::1/64", 20 + i), "dev", &down, "nodad"]);
            sh(&["ip", "-n", below, "link", "set", &up, "up"]);
            sh(&["ip", "-n", above, "link", "set", &down, "up"]);
        }
        // Every node but the far one sends everything up; every node but the Pi sends the
        // links below it down.
        for (n, ns) in self.ns.iter().enumerate() {
            if n <= ROUTERS {
                let next = n + 1;
                sh(&["ip", "-n", ns, "route", "add", "default", "via", &format!("198.18.{}.1", 20 + next)]);
                sh(&["ip", "-n", ns, "-6", "route", "add", "default", "via", &format!("fd00:18:{}::1", 20 + next)]);
            }
            if n > 0 {
                for below in 1..n {
                    let via = format!("198.18.{}.2", 20 + n);
                    let via6 = format!("fd00:18:{}::2", 20 + n);
                    sh(&["ip", "-n", ns, "route", "add", &format!("198.18.{}.0/24", 20 + below), "via", &via]);
                    sh(&["ip", "-n", ns, "-6", "route", "add", &format!("fd00:18:{}::/64", 20 + below), "via", &via6]);
                }
            }
            if (1..=ROUTERS).contains(&n) {
                sh(&[
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=1",
                    "net.ipv6.conf.all.forwarding=1",
                ]);
            }
        }
        let far = &self.ns[ROUTERS + 1];
        sh(&["ip", "-n", far, "addr", "add", &format!("{ANCHOR4}/32"), "dev", "lo"]);
        sh(&["ip", "-n", far, "addr", "add", &format!("{ANCHOR6}/128"), "dev", "lo"]);
        // Resolve the IPv6 neighbours before anything is measured.
        let out = self.in_lan(&["ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", ANCHOR6]).output().unwrap();
        assert!(
            out.status.success(),
            "the path bed does not reach {ANCHOR6}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Router `k` stops forwarding to the anchors: `blackhole` (silently) or `unreachable`
    /// (answering "network unreachable"); `None` puts its route back.
    pub fn break_at(&self, k: usize, kind: Option<&str>) {
        self.break_family(k, kind, false);
        self.break_family(k, kind, true);
    }

    /// [`PathBed::break_at`] for one address family (IPv6 when `v6`).
    pub fn break_family(&self, k: usize, kind: Option<&str>, v6: bool) {
        let (fam, prefix) = if v6 { ("-6", format!("{ANCHOR6}/128")) } else { ("-4", format!("{ANCHOR4}/32")) };
        match kind {
            Some(kind) => sh(&["ip", "-n", &self.ns[k], fam, "route", "replace", kind, &prefix]),
            None => sh(&["ip", "-n", &self.ns[k], fam, "route", "del", &prefix]),
        };
    }

    /// Router `k` never answers "time exceeded" (it still forwards), like many carriers' cores.
    pub fn silence(&self, k: usize) {
        self.nft(
            k,
            "out { type filter hook output priority 0; }",
            &["icmp type time-exceeded", "icmpv6 type time-exceeded"],
        );
    }

    /// Router `k` drops the ICMP echo it forwards (it still answers "time exceeded" itself and
    /// forwards everything else), like a carrier filtering ping beyond its edge.
    pub fn drop_forwarded_echo(&self, k: usize) {
        self.nft(
            k,
            "relay { type filter hook forward priority 0; }",
            &["icmp type echo-request", "icmpv6 type echo-request"],
        );
    }

    /// Add `chain` to router `k`'s nftables table and drop what each of `matches` matches.
    fn nft(&self, k: usize, chain: &str, matches: &[&str]) {
        let nft = |rule: &str| sh(&["ip", "netns", "exec", &self.ns[k], "nft", rule]);
        nft("add table inet ww");
        nft(&format!("add chain inet ww {chain}"));
        let name = chain.split_whitespace().next().unwrap();
        for m in matches {
            nft(&format!("add rule inet ww {name} {m} drop"));
        }
    }

    /// `wanwatch ARGS` on the Pi.
    pub fn wanwatch(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.lan(), env!("CARGO_BIN_EXE_wanwatch")]).args(args);
        c.stdin(Stdio::null());
        c
    }

    pub fn in_lan(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.lan()]).args(args);
        c.stdin(Stdio::null());
        c
    }
}

impl Drop for PathBed {
    fn drop(&mut self) {
        for ns in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// True when nftables can be used here (to make a router silent): the tool is installed and
/// the kernel takes a table in a throwaway namespace. Otherwise prints why.
pub fn have_nft(test: &str) -> bool {
    if !Command::new("nft").arg("--version").output().is_ok_and(|o| o.status.success()) {
        eprintln!("SKIP part of {test}: `nft` is not installed (apt install nftables); CI installs it");
        return false;
    }
    let ns = format!("wpnft{}x{}", std::process::id() % 100_000, NEXT.fetch_add(1, Ordering::SeqCst));
    let made = Command::new("ip").args(["netns", "add", &ns]).status().is_ok_and(|s| s.success());
    let ok = made
        && Command::new("ip")
            .args(["netns", "exec", &ns, "nft", "add table inet probe"])
            .output()
            .is_ok_and(|o| o.status.success());
    if made {
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    }
    if !ok {
        eprintln!("SKIP part of {test}: this kernel refuses nftables tables (no nf_tables)");
    }
    ok
}
