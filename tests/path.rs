//! Where it broke, on real namespaces: a path of three routers, broken at hop 1, 2 and 3 with
//! blackhole and unreachable routes; each outage is localised to the deepest hop that still
//! answered, exported with the outage, and the path probes stay within their packet budget.

mod bed;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bed::path::{self, ANCHOR4, ANCHOR6, GATEWAY, PathBed};
use bed::{Workdir, skip_unless_root, wall_ms};
use rusqlite::{Connection, OptionalExtension};
use wanwatch::probe::path::MAX_PACKETS;

fn config(w: &Workdir, extra: &str) -> std::path::PathBuf {
    w.write(
        "w.toml",
        &format!(
            "[ping]\ninterval = \"500ms\"\ntimeout = \"1s\"\ngateway = \"{GATEWAY}\"\n\
             anchors = [\"{ANCHOR4}\", \"{ANCHOR6}\"]\n{extra}\n[store]\nflush_interval = \"500ms\"\n"
        ),
    )
}

/// Polls `f` every 200 ms until it gives something, for at most `secs`.
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "waited {secs} s for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn open(db: &Path) -> Option<Connection> {
    let c = Connection::open(db).ok()?;
    c.busy_timeout(Duration::from_secs(2)).ok()?;
    Some(c)
}

/// The newest outage that started after `since`: (id, last_good_ttl, last_good_hop, located, ended).
type Located = (i64, Option<i64>, Option<String>, String, bool);

fn located_after(db: &Path, since: i64) -> Option<Located> {
    located_kind_after(db, "wan", since)
}

fn located_kind_after(db: &Path, kind: &str, since: i64) -> Option<Located> {
    let c = open(db)?;
    c.query_row(
        "SELECT id, last_good_ttl, last_good_hop, located, end_ts IS NOT NULL FROM outages
         WHERE kind = ?2 AND start_ts > ?1 AND located IS NOT NULL ORDER BY start_ts DESC LIMIT 1",
        rusqlite::params![since, kind],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )
    .optional()
    .ok()
    .flatten()
}

/// The first column of every row of `sql`.
fn strings(c: &Connection, sql: &str) -> Vec<String> {
    c.prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// Outage probes stored for outages that started after `since`.
fn outage_probes(db: &Path, since: i64) -> i64 {
    open(db)
        .and_then(|c| {
            c.query_row("SELECT count(*) FROM paths WHERE reason = 'outage' AND outage_ts > ?1", [since], |r| r.get(0))
                .ok()
        })
        .unwrap_or(0)
}

fn baselines(db: &Path) -> i64 {
    open(db)
        .and_then(|c| {
            c.query_row("SELECT count(*) FROM paths WHERE reason = 'baseline' AND reached = 1", [], |r| r.get(0)).ok()
        })
        .unwrap_or(0)
}

/// A path bed, `prepare`d, with an agent on it (`extra` in its `[ping]`) that has seen the
/// healthy path to both anchors.
fn agent_on_path(extra: &str, prepare: impl FnOnce(&PathBed)) -> (PathBed, Workdir, PathBuf, std::process::Child) {
    let bed = PathBed::new();
    prepare(&bed);
    let w = Workdir::new();
    let db = w.path("w.db");
    let child = start_agent(&bed, &w, &db, extra);
    wait_for(20, "a baseline path that reaches the anchors", || (baselines(&db) >= 2).then_some(()));
    (bed, w, db, child)
}

fn start_agent(bed: &PathBed, w: &Workdir, db: &Path, extra: &str) -> std::process::Child {
    let cfg = config(w, extra);
    bed.wanwatch(&["run", "--probes", "none", "--db", db.to_str().unwrap(), "--config", cfg.to_str().unwrap()])
        .env("WANWATCH_LOG", "info,wanwatch::probe::path=info")
        .stderr(if std::env::var_os("WANWATCH_TEST_LOG").is_some() {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::piped()
        })
        .spawn()
        .unwrap()
}

fn stop(child: std::process::Child) -> String {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn breaks_at_hop_1_2_and_3_are_localised_to_the_deepest_hop_that_answered() {
    if !skip_unless_root("breaks_at_hop_1_2_and_3_are_localised_to_the_deepest_hop_that_answered") {
        return;
    }
    let (bed, w, db, child) = agent_on_path("", |_| {});

    // A blackhole is silent from the router that has it: the deepest answer is the hop
    // before. An unreachable route answers: that router is the deepest hop.
    let breaks: [(usize, &str, Option<usize>); 6] = [
        (1, "blackhole", None),
        (2, "unreachable", Some(2)),
        (3, "blackhole", Some(2)),
        (1, "unreachable", Some(1)),
        (2, "blackhole", Some(1)),
        (3, "unreachable", Some(3)),
    ];
    let mut seen = Vec::new();
    for (k, kind, expect) in breaks {
        let since = wall_ms();
        bed.break_at(k, Some(kind));
        let (id, ttl, hop, note, _) =
            wait_for(40, &format!("the outage of a {kind} at hop {k} to be localised"), || located_after(&db, since));
        // Both anchors' probes done before the break is mended (a probe that outlives its
        // outage sees the path come back).
        wait_for(20, "both anchors' probes, ICMP and UDP", || (outage_probes(&db, since) >= 4).then_some(()));
        bed.break_at(k, None);
        wait_for(15, "the outage to end", || located_after(&db, since).filter(|o| o.4).map(|_| ()));
        println!("{kind} at hop {k}: last good ttl {ttl:?} hop {hop:?}: {note}");
        let label = format!("{kind} at hop {k} (outage {id}): {note}");
        assert_eq!(ttl, expect.map(|t| t as i64), "{label}");
        // Both anchors' probes say the same hop, by its IPv4 or IPv6 address.
        assert_eq!(hop.is_some(), expect.is_some(), "{label}");
        if let (Some(hop), Some(t)) = (&hop, expect) {
            assert!(*hop == path::hop(t) || *hop == path::hop6(t), "{label}");
        }
        match (kind, expect) {
            // IPv4 says "host unreachable" for an unreachable route, IPv6 "network unreachable".
            ("unreachable", _) => assert!(note.contains("answers but says") && note.contains("unreachable"), "{label}"),
            (_, Some(t)) => assert!(note.contains(&format!("broke after hop {t}")), "{label}"),
            (_, None) => assert!(note.contains("broke at hop 1"), "{label}"),
        }
        seen.push(id);
        // The routers' ICMP rate limits refill (a token a second).
        std::thread::sleep(Duration::from_secs(2));
    }
    let log = stop(child);

    // Exported with the outage, and the probes' hops as a table of their own.
    let out = bed
        .wanwatch(&["export", "--db", db.to_str().unwrap(), "--table", "outages", "--format", "jsonl"])
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let wan: Vec<&serde_json::Value> = lines.iter().filter(|o| o["kind"] == "wan").collect();
    assert_eq!(wan.len(), breaks.len(), "{lines:?}");
    for (o, (k, kind, expect)) in wan.iter().zip(breaks) {
        assert_eq!(o["last_good_ttl"].as_i64(), expect.map(|t| t as i64), "{kind} at {k}: {o}");
        let hop = o["last_good_hop"].as_str().map(str::to_string);
        assert!(hop == expect.map(path::hop) || hop == expect.map(path::hop6), "{kind} at {k}: {o}");
    }
    let hops =
        bed.wanwatch(&["export", "--db", db.to_str().unwrap(), "--table", "hops", "--format", "csv"]).output().unwrap();
    let csv = String::from_utf8_lossy(&hops.stdout);
    assert!(
        csv.starts_with("time,ts_ms,target,reason,proto,outage_ms,ttl,addr,sent,answered,rtt_ms,error,said_by,route")
    );
    // The healthy IPv6 path, hop by hop.
    let route6 = format!("{} {} {} {ANCHOR6}", path::hop6(1), path::hop6(2), path::hop6(3));
    assert!(csv.lines().any(|l| l.contains(",baseline,") && l.ends_with(&route6)), "no healthy IPv6 route {route6}");
    assert!(csv.contains(&format!("unreachable,{}", path::hop6(2))), "the refusing router is named");

    // The evidence pack of the unreachable-at-hop-2 outage: the page and the CSVs behind it.
    let pack = w.path("pack");
    let out = bed
        .wanwatch(&["incident", &seen[1].to_string(), "--db", db.to_str().unwrap(), "--out", pack.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = std::fs::read_to_string(pack.join("index.html")).unwrap();
    assert!(page.contains("Where it broke") && page.contains("answers but says"), "the verdict is on the page");
    assert!(page.contains("<svg"), "the timeline figure is inline");
    // Who said what: the pings' ICMP errors, named by the router that sent them.
    let witness = format!("<td>{}</td>", path::hop(2));
    let witness6 = format!("<td>{}</td>", path::hop6(2));
    assert!(page.contains(&witness) || page.contains(&witness6), "the refusing router is a witness on the page");
    for csv in ["samples.csv", "hops.csv", "metrics.csv", "syslog.csv", "events.csv"] {
        let text = std::fs::read_to_string(pack.join(csv)).unwrap();
        assert!(text.lines().count() >= 1, "{csv} has its header");
    }
    let samples = std::fs::read_to_string(pack.join("samples.csv")).unwrap();
    assert!(samples.lines().count() > 100, "the second-by-second timeline around it");
    let missing = bed
        .wanwatch(&["incident", "999", "--db", db.to_str().unwrap(), "--out", pack.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no outage with id 999"));

    // Bounded: no probe sent more than its most, and all of them together what the budget
    // allows for this many incidents.
    let c = open(&db).unwrap();
    let per_probe: Vec<(i64, String, i64)> = c
        .prepare("SELECT id, reason, packets FROM paths ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let total: i64 = per_probe.iter().map(|p| p.2).sum();
    println!("{} path probes sent {total} packets: {per_probe:?}", per_probe.len());
    assert!(per_probe.iter().all(|p| p.2 <= MAX_PACKETS as i64), "{per_probe:?}");
    let incidents = per_probe.iter().filter(|p| p.1 != "baseline").count();
    assert!(incidents >= 4 * breaks.len(), "both anchors, ICMP and UDP, at every outage: {per_probe:?}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn hops_that_never_answer_are_not_blamed() {
    let test = "hops_that_never_answer_are_not_blamed";
    if !skip_unless_root(test) || !path::have_nft(test) {
        return;
    }
    // The carrier's core (hops 2 and 3) forwards but never answers, even when all is well.
    let (bed, _w, db, child) = agent_on_path("", |bed| {
        bed.silence(2);
        bed.silence(3);
    });
    let since = wall_ms();
    bed.break_at(3, Some("blackhole"));
    let (_, ttl, hop, note, _) = wait_for(40, "the outage to be localised", || located_after(&db, since));
    bed.break_at(3, None);
    stop(child);
    println!("silent core, blackhole at hop 3: {ttl:?} {hop:?}: {note}");
    assert_eq!((ttl, hop.as_deref()), (Some(1), Some(GATEWAY)));
    assert!(note.contains("no answer beyond hop 1") && note.contains("even when healthy"), "{note}");
    let c = open(&db).unwrap();
    let route: String = c
        .query_row("SELECT route FROM paths WHERE reason = 'baseline' AND target = ?1", [ANCHOR4], |r| r.get(0))
        .unwrap();
    assert_eq!(route, format!("{GATEWAY} * * {ANCHOR4}"));
}

#[test]
fn ipv4_down_while_ipv6_works_is_an_outage_of_its_own_localised_on_the_ipv4_path() {
    let test = "ipv4_down_while_ipv6_works_is_an_outage_of_its_own_localised_on_the_ipv4_path";
    if !skip_unless_root(test) {
        return;
    }
    let (bed, _w, db, child) = agent_on_path("", |_| {});
    let since = wall_ms();
    // The carrier's IPv4 (its NAT, say) fails at hop 2; IPv6 carries on.
    bed.break_family(2, Some("unreachable"), false);
    let (id, ttl, hop, note, _) = wait_for(40, "an IPv4 outage, localised", || located_kind_after(&db, "ipv4", since));
    let status = bed.wanwatch(&["status", "--db", db.to_str().unwrap()]).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    bed.break_family(2, None, false);
    wait_for(15, "the IPv4 outage to end", || located_kind_after(&db, "ipv4", since).filter(|o| o.4).map(|_| ()));
    stop(child);
    println!("IPv4 cut at hop 2: outage {id}: {ttl:?} {hop:?}: {note}\n{status}");
    assert_eq!((ttl, hop), (Some(2), Some(path::hop(2))), "{note}");
    assert!(status.contains("DOWN (IPv4 only; IPv6 up)"), "{status}");
    let c = open(&db).unwrap();
    let kinds: Vec<String> = strings(&c, "SELECT kind FROM outages ORDER BY id");
    assert_eq!(kinds, ["ipv4"], "IPv4 alone, never the whole internet");
    // Only the IPv4 anchor was probed for it.
    let probed: Vec<String> = strings(&c, "SELECT target FROM paths WHERE reason = 'outage'");
    assert!(!probed.is_empty() && probed.iter().all(|t| t == ANCHOR4), "{probed:?}");
}

#[test]
fn icmp_filtered_while_tcp_works_is_not_an_outage() {
    if !skip_unless_root("icmp_filtered_while_tcp_works_is_not_an_outage") {
        return;
    }
    let (bed, _w, db, child) = agent_on_path("tcp_port = 443", |_| {});
    // The far end stops answering ping; TCP there still gets an answer (a reset: no listener).
    let filtered_at = wall_ms();
    bed::sysctl(&bed.ns[path::ROUTERS + 1], &["net.ipv4.icmp_echo_ignore_all=1", "net.ipv6.icmp.echo_ignore_all=1"]);
    std::thread::sleep(Duration::from_secs(12));
    let c = open(&db).unwrap();
    let outages: i64 = c.query_row("SELECT count(*) FROM outages", [], |r| r.get(0)).unwrap();
    let filtered: Vec<String> = strings(&c, "SELECT detail FROM events WHERE kind = 'icmp_filtered'");
    assert_eq!(outages, 0, "ICMP filtered for 12 s is not an outage");
    assert_eq!(filtered.len(), 2, "one event per anchor: {filtered:?}");
    // Then the path really breaks: TCP fails too, and that is an outage from then on.
    let broke_at = wall_ms();
    bed.break_at(2, Some("blackhole"));
    let (id, ..) = wait_for(40, "the real outage", || located_after(&db, filtered_at));
    bed.break_at(2, None);
    stop(child);
    let start: i64 = c.query_row("SELECT start_ts FROM outages WHERE id = ?1", [id], |r| r.get(0)).unwrap();
    println!("filtered at {filtered_at}, broken at {broke_at}, outage from {start}: {filtered:?}");
    assert!(start >= broke_at - 500, "the outage starts at the break ({broke_at}), not at the filtering: {start}");
    assert!(start <= broke_at + 6_000, "{start} vs {broke_at}");
}

#[test]
fn where_icmp_echo_is_dropped_beyond_a_hop_udp_still_finds_the_path() {
    let test = "where_icmp_echo_is_dropped_beyond_a_hop_udp_still_finds_the_path";
    if !skip_unless_root(test) || !path::have_nft(test) {
        return;
    }
    // Hop 2 drops the echo it forwards: ICMP sees hops 1 and 2 and then nothing; UDP goes on.
    // (The anchors answer TCP, so their unanswered pings are "ICMP filtered", not an outage.)
    let (bed, _w, db, child) = agent_on_path("tcp_port = 443", |bed| bed.drop_forwarded_echo(2));
    stop(child);
    let c = open(&db).unwrap();
    let route = |proto: &str| -> (String, bool) {
        c.query_row(
            "SELECT route, reached FROM paths WHERE reason = 'baseline' AND proto = ?1 AND target = ?2",
            [proto, ANCHOR4],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let (h1, h2, h3) = (path::hop(1), path::hop(2), path::hop(3));
    assert_eq!(route("icmp"), (format!("{h1} {h2} *"), false));
    assert_eq!(route("udp"), (format!("{h1} {h2} {h3} {ANCHOR4}"), true));
    let outages: i64 = c.query_row("SELECT count(*) FROM outages", [], |r| r.get(0)).unwrap();
    assert_eq!(outages, 0);
    drop(bed);
}
