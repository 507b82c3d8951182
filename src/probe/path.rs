//! Where it broke: a short, bounded path probe towards the anchors (ICMP echo with rising TTL,
//! as mtr does) when an outage or a loss episode starts, and once an hour as the baseline.
//!
//! * **Bounded.** A probe sends at most [`MAX_TTL`] x [`ROUNDS`] packets per anchor, and every
//!   packet is paid from a bucket ([`BUDGET_PACKETS`], refilled at [`BUDGET_PER_HOUR`]): a
//!   flapping link gets a few probes, then one now and then, never a storm.
//! * **Gentle on routers.** Rounds are a second apart: a router answers "time exceeded" to one
//!   source about once a second (Linux's default `icmp_ratelimit`), so faster rounds would read
//!   as loss at a healthy hop.
//! * **Honest about silent hops.** Many carriers' routers never answer. The verdict compares the
//!   probe with the last healthy one: a hop that answered then and is silent now is where it
//!   broke; beyond the last hop that ever answers it says "no answer beyond hop N even when
//!   healthy" instead of blaming a router that was never going to answer.
//!
//! Each probe opens its own socket: the TTL is a socket option, set just before each send.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::icmp::{Pinger, kinds_to_try};
use crate::clock::WallClock;
use crate::sample::{EventKind, Failure, Hop, IcmpError, PathProto, PathReason, Record, Trace, Verdict, WallMs};

/// Deepest TTL probed: home paths to a big anchor are 6-14 hops.
pub const MAX_TTL: u8 = 16;
/// Probes per TTL.
pub const ROUNDS: u8 = 3;
/// The most one probe of one anchor can send, per protocol.
pub const MAX_PACKETS: u32 = MAX_TTL as u32 * ROUNDS as u32;
/// The bucket: room for two incident probes (ICMP and UDP) of the 6 built-in anchors, so a
/// loss episode's probe can leave room for the outage that often follows...
pub const BUDGET_PACKETS: f64 = 24.0 * MAX_PACKETS as f64;
/// ...refilled at this many packets an hour (a third of one a second), so a link flapping all
/// day costs at most this much.
pub const BUDGET_PER_HOUR: f64 = 1200.0;
/// The healthy path is looked at this often...
pub const BASELINE_EVERY: Duration = Duration::from_secs(3600);
/// ...and first this long after the start, once the pings have settled.
pub const FIRST_BASELINE: Duration = Duration::from_secs(5);
/// Between two probes of one round (a round of 16 takes 0.4 s).
pub(crate) const GAP: Duration = Duration::from_millis(25);
/// Between rounds.
pub(crate) const ROUND_GAP: Duration = Duration::from_secs(1);
/// How long an answer is waited for.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(2);
const PAYLOAD: &[u8; 16] = b"wanwatch-path\0\0\0";

/// Packets for path probes, paid before sending.
#[derive(Debug)]
pub struct Budget {
    tokens: f64,
    at: Instant,
}

impl Budget {
    pub fn full(now: Instant) -> Budget {
        Budget { tokens: BUDGET_PACKETS, at: now }
    }

    /// Take `n` packets if the bucket has them, and `keep` more besides.
    pub fn take(&mut self, n: u32, keep: u32, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * BUDGET_PER_HOUR / 3600.0;
        self.tokens = (self.tokens + refill).min(BUDGET_PACKETS);
        self.at = now;
        if self.tokens < f64::from(n + keep) {
            return false;
        }
        self.tokens -= f64::from(n);
        true
    }

    /// Give back what a probe did not send.
    pub fn refund(&mut self, n: u32) {
        self.tokens = (self.tokens + f64::from(n)).min(BUDGET_PACKETS);
    }
}

/// What the agent asks for when an outage or a loss episode starts.
#[derive(Debug, Clone)]
pub struct Ask {
    pub reason: PathReason,
    pub outage_start: Option<WallMs>,
    /// Only the anchors of this family (IPv6 when true): an IPv4-only outage is looked for
    /// on the IPv4 paths.
    pub v6: Option<bool>,
    /// The ICMP errors the agent's own pings got lately, per anchor: (anchor, error, router).
    /// A refusing router rate-limits its errors, so the probe may hear nothing from a router
    /// the pings heard from a moment before.
    pub witnesses: Vec<(IpAddr, IcmpError, IpAddr)>,
}

/// What one TTL heard, before it is summed up into a [`Hop`].
#[derive(Debug, Default)]
pub(crate) struct Heard {
    pub sent: u8,
    pub rtts: Vec<u32>,
    pub addr: Option<IpAddr>,
    pub error: Option<(IcmpError, IpAddr)>,
}

/// Probe the path to `target`: rounds of one echo per TTL, one socket of our own. The first
/// round goes to `first_limit` (two past the healthy path's length when it is known).
pub async fn probe(target: IpAddr, first_limit: u8) -> std::io::Result<(Vec<Hop>, bool, u32)> {
    let mut last = None;
    let mut pinger = None;
    for kind in kinds_to_try() {
        match Pinger::open(target.is_ipv6(), kind) {
            Ok(p) => {
                pinger = Some(p);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let pinger = pinger.ok_or_else(|| last.unwrap_or_else(|| std::io::Error::other("no socket kind")))?;
    let mut heard: BTreeMap<u8, Heard> = BTreeMap::new();
    let mut seq: u16 = rand::random();
    let mut limit = first_limit.clamp(1, MAX_TTL);
    let mut sent = 0u32;
    for round in 0..ROUNDS {
        if round > 0 {
            tokio::time::sleep(ROUND_GAP).await;
        }
        // No deeper than a TTL the target answered at, or a router refused to forward at:
        // every deeper probe would get the same answer, and a refusing router's ICMP errors
        // are rate-limited, so each one spent here is one the agent's own pings do not get.
        let end = Arc::new(AtomicU8::new(limit));
        let mut flights = JoinSet::new();
        for ttl in 1..=limit {
            if ttl > end.load(Ordering::Relaxed) {
                break;
            }
            seq = seq.wrapping_add(1);
            let flight = pinger.send(target, 0, seq, PAYLOAD, Some(ttl));
            sent += 1;
            heard.entry(ttl).or_default().sent += 1;
            let end = end.clone();
            flights.spawn(async move {
                let landed = flight.wait(TIMEOUT).await;
                let last = match landed.result {
                    Ok(_) => true,
                    Err(Failure::Icmp { error, .. }) => error != IcmpError::TtlExceeded,
                    Err(_) => false,
                };
                if last {
                    end.fetch_min(ttl, Ordering::Relaxed);
                }
                (ttl, landed)
            });
            tokio::time::sleep(GAP).await;
        }
        while let Some(Ok((ttl, landed))) = flights.join_next().await {
            let h = heard.entry(ttl).or_default();
            match landed.result {
                Ok(rtt) => {
                    h.rtts.push(rtt);
                    h.addr = Some(target);
                }
                Err(Failure::Icmp { error: IcmpError::TtlExceeded, router }) => {
                    h.rtts.extend(landed.rtt_us);
                    h.addr = Some(router);
                }
                Err(Failure::Icmp { error, router }) => h.error = Some((error, router)),
                Err(_) => {}
            }
        }
        // Later rounds: up to where this one ended, or two TTLs past the deepest answer.
        limit = next_limit(&heard, end.load(Ordering::Relaxed));
    }
    Ok(summarise(heard, target, sent))
}

/// The hops up to the target (or up to the deepest answer and one silent TTL after it).
/// The deepest TTL anything answered at (a hop, the target, or a router's refusal).
fn deepest(heard: &BTreeMap<u8, Heard>) -> Option<u8> {
    heard.iter().filter(|(_, h)| h.addr.is_some() || h.error.is_some()).map(|(&t, _)| t).max()
}

/// How deep the next round goes: no deeper than where this one ended (the target answered or
/// a router refused), nor more than two TTLs past the deepest answer.
pub(crate) fn next_limit(heard: &BTreeMap<u8, Heard>, end: u8) -> u8 {
    end.min(deepest(heard).map_or(2, |d| d.saturating_add(2))).min(MAX_TTL)
}

pub(crate) fn summarise(heard: BTreeMap<u8, Heard>, target: IpAddr, sent: u32) -> (Vec<Hop>, bool, u32) {
    let reached = heard.iter().find(|(_, h)| h.addr == Some(target)).map(|(&t, _)| t);
    let deepest = deepest(&heard);
    let keep = reached.unwrap_or_else(|| deepest.map_or(1, |d| d.saturating_add(1)));
    let hops = heard
        .into_iter()
        .take_while(|(t, _)| *t <= keep)
        .map(|(ttl, mut h)| {
            h.rtts.sort_unstable();
            Hop {
                ttl,
                addr: h.addr,
                sent: h.sent,
                answered: h.rtts.len() as u8,
                rtt_us: h.rtts.get(h.rtts.len() / 2).copied(),
                error: h.error,
            }
        })
        .collect();
    (hops, reached.is_some(), sent)
}

/// Where it broke, from this probe and the last healthy one. The deepest hop that still
/// answered is the first TTL its address answered at (a router refusing to forward answers
/// every deeper TTL too, with "network unreachable").
///
/// `witnesses` are routers that answered the agent's pings to `target` with an ICMP error: one
/// found on this path or the healthy one is an answer at its TTL, even if it was silent to
/// the probe (rate-limited).
pub fn verdict(
    hops: &[Hop],
    reached: bool,
    target: IpAddr,
    baseline: Option<&Trace>,
    witnesses: &[(IcmpError, IpAddr)],
) -> Verdict {
    let mut first_seen: HashMap<IpAddr, u8> = HashMap::new();
    for h in hops {
        for a in h.addr.iter().chain(h.error.iter().map(|(_, r)| r)) {
            first_seen.entry(*a).or_insert(h.ttl);
        }
    }
    let mut hops = hops.to_vec();
    for &(error, router) in witnesses {
        let healthy_ttl = || baseline?.hops.iter().find(|h| h.addr == Some(router)).map(|h| h.ttl);
        if let Some(ttl) = first_seen.get(&router).copied().or_else(healthy_ttl) {
            first_seen.entry(router).or_insert(ttl);
            if let Some(h) = hops.iter_mut().find(|h| h.ttl == ttl).filter(|h| h.error.is_none()) {
                h.error = Some((error, router));
            } else if !hops.iter().any(|h| h.ttl == ttl) {
                let error = Some((error, router));
                hops.push(Hop { ttl, addr: None, sent: 0, answered: 0, rtt_us: None, error });
            }
        }
    }
    let hops = &hops[..];
    if reached {
        let n = hops.last().map_or(0, |h| h.ttl);
        let silent: Vec<String> = hops.iter().filter(|h| h.addr.is_none()).map(|h| h.ttl.to_string()).collect();
        let note = if silent.is_empty() {
            format!("reached {target} in {n} hops")
        } else {
            format!("reached {target} in {n} hops; hop {} did not answer", silent.join(", "))
        };
        return Verdict { last_good_ttl: Some(n), last_good_hop: Some(target), note };
    }
    let deepest = first_seen.iter().map(|(a, t)| (*t, *a)).max();
    let refusal = |ttl: u8, addr: IpAddr| {
        hops.iter().find_map(|h| h.error.filter(|(_, r)| *r == addr && h.ttl >= ttl)).map(|(e, _)| e)
    };
    // The deepest TTL that answered on the healthy path, short of the target itself.
    let healthy = baseline.filter(|b| b.reached);
    let healthy_deepest = healthy.and_then(|b| {
        b.hops.iter().filter(|h| h.addr.is_some_and(|a| a != b.target)).map(|h| (h.ttl, h.addr.unwrap())).max()
    });
    let Some((ttl, addr)) = deepest else {
        let note = match healthy.and_then(|b| b.hops.first()).and_then(|h| h.addr) {
            Some(first) => format!(
                "broke at hop 1: hop 1 ({first}) answered on the healthy path and is silent now \
                 towards {target} (the Pi's own link or the first router)"
            ),
            None => format!("no hop answered towards {target}: the Pi's own link or the first router"),
        };
        return Verdict { last_good_ttl: None, last_good_hop: None, note };
    };
    let note = if let Some(error) = refusal(ttl, addr) {
        format!("hop {ttl} ({addr}) answers but says {} towards {target}", error.describe())
    } else {
        match (healthy, healthy_deepest) {
            (Some(b), Some((hd, _))) if hd > ttl => {
                let next = b.hops.iter().find(|h| h.ttl > ttl && h.addr.is_some()).expect("hd > ttl");
                format!(
                    "broke after hop {ttl} ({addr}): hop {} ({}) answered on the healthy path and is silent now",
                    next.ttl,
                    next.addr.expect("found by addr")
                )
            }
            (Some(_), _) => {
                format!("no answer beyond hop {ttl} ({addr}) even when healthy: the break is somewhere past it")
            }
            (None, _) => format!("no answer beyond hop {ttl} ({addr}); no healthy path to compare with yet"),
        }
    };
    Verdict { last_good_ttl: Some(ttl), last_good_hop: Some(addr), note }
}

/// What changed between two healthy paths: the TTLs where both heard a router and it differs,
/// or a different length. Silent hops are not changes (they answer now and then).
pub fn route_change(before: &Trace, after: &Trace) -> Option<String> {
    let mut diffs = Vec::new();
    for (b, a) in before.hops.iter().zip(&after.hops) {
        if let (Some(x), Some(y)) = (b.addr, a.addr)
            && x != y
        {
            diffs.push(format!("hop {} {x} -> {y}", a.ttl));
        }
    }
    if before.hops.len() != after.hops.len() {
        diffs.push(format!("{} hops -> {}", before.hops.len(), after.hops.len()));
    }
    (!diffs.is_empty()).then(|| format!("path to {} changed: {}", after.target, diffs.join(", ")))
}

/// The path prober: a task that probes all anchors when asked (an outage, a loss episode) and
/// once an hour, within the packet budget, and sends what it found as records.
pub struct Tracer {
    anchors: Vec<IpAddr>,
    clock: WallClock,
    out: mpsc::Sender<Record>,
    budget: Budget,
    /// The last probe of each anchor, per protocol, that reached it.
    healthy: HashMap<(IpAddr, PathProto), Trace>,
}

impl Tracer {
    pub fn new(anchors: Vec<IpAddr>, clock: WallClock, out: mpsc::Sender<Record>) -> Tracer {
        Tracer { anchors, clock, out, budget: Budget::full(Instant::now()), healthy: HashMap::new() }
    }

    /// Until `stop` turns true: probe when asked and on the baseline schedule. Asks that come in
    /// while a probe runs are answered by that probe.
    pub async fn run(mut self, mut asks: mpsc::Receiver<Ask>, mut stop: watch::Receiver<bool>) {
        if self.anchors.is_empty() {
            return;
        }
        let mut next_baseline = tokio::time::Instant::now() + FIRST_BASELINE;
        loop {
            let ask = tokio::select! {
                a = asks.recv() => match a { Some(a) => a, None => break },
                _ = tokio::time::sleep_until(next_baseline) => {
                    next_baseline += BASELINE_EVERY;
                    Ask { reason: PathReason::Baseline, outage_start: None, v6: None, witnesses: Vec::new() }
                }
                _ = stop.changed() => break,
            };
            tokio::select! {
                () = self.probe_all(ask) => {}
                _ = stop.changed() => break,
            }
            // An outage's start beats a loss episode's that came with it.
            let mut newest = None;
            while let Ok(a) = asks.try_recv() {
                if a.outage_start.is_some() || newest.is_none() {
                    newest = Some(a);
                }
            }
            if let Some(a) = newest.filter(|a| a.outage_start.is_some()) {
                tokio::select! {
                    () = self.probe_all(a) => {}
                    _ = stop.changed() => break,
                }
            }
        }
    }

    async fn probe_all(&mut self, ask: Ask) {
        let anchors: Vec<IpAddr> =
            self.anchors.iter().copied().filter(|a| ask.v6.is_none_or(|v6| a.is_ipv6() == v6)).collect();
        // Each anchor: ICMP and UDP (UDP on a baseline only where ICMP did not reach it).
        let want = 2 * MAX_PACKETS * anchors.len() as u32;
        // A loss episode often turns into an outage a few seconds later: its probe leaves
        // room in the bucket for the outage's.
        let keep = if ask.reason == PathReason::Loss { want } else { 0 };
        if !self.budget.take(want, keep, Instant::now()) {
            tracing::info!("path probe ({}) skipped: its packet budget is spent for now", ask.reason.as_str());
            return;
        }
        let ts = self.clock.now();
        let mut probes = JoinSet::new();
        for target in anchors {
            let first =
                self.healthy(target, PathProto::Icmp).and_then(|b| b.hops.last()).map_or(MAX_TTL, |h| h.ttl + 2);
            let baseline = ask.reason == PathReason::Baseline;
            probes.spawn(async move {
                if baseline {
                    // UDP only where ICMP does not reach the anchor.
                    let icmp = probe(target, first).await;
                    let udp = match &icmp {
                        Ok((_, true, _)) => None,
                        _ => Some(super::udp_trace::probe(target, first).await),
                    };
                    (target, icmp, udp)
                } else {
                    // An incident: both at once (their own sockets), so the verdict is in
                    // within one probe's time (3 rounds, about 9 s when nothing answers).
                    let (icmp, udp) = tokio::join!(probe(target, first), super::udp_trace::probe(target, first));
                    (target, icmp, Some(udp))
                }
            });
        }
        let mut sent = 0;
        while let Some(Ok((target, icmp, udp))) = probes.join_next().await {
            for (proto, result) in [(PathProto::Icmp, Some(icmp)), (PathProto::Udp, udp)] {
                match result {
                    Some(Ok((hops, reached, n))) => {
                        sent += n;
                        self.found(ts, target, proto, &ask, hops, reached, n).await;
                    }
                    Some(Err(e)) => tracing::warn!(%target, proto = proto.as_str(), error = %e, "path probe failed"),
                    None => {}
                }
            }
        }
        self.budget.refund(want.saturating_sub(sent));
    }

    /// The healthy path to `target` as `proto` saw it, else as the other protocol did.
    fn healthy(&self, target: IpAddr, proto: PathProto) -> Option<&Trace> {
        let other = if proto == PathProto::Icmp { PathProto::Udp } else { PathProto::Icmp };
        self.healthy.get(&(target, proto)).or_else(|| self.healthy.get(&(target, other)))
    }

    #[allow(clippy::too_many_arguments)]
    async fn found(
        &mut self,
        ts: WallMs,
        target: IpAddr,
        proto: PathProto,
        ask: &Ask,
        hops: Vec<Hop>,
        reached: bool,
        packets: u32,
    ) {
        let witnesses: Vec<(IcmpError, IpAddr)> =
            ask.witnesses.iter().filter(|(a, ..)| *a == target).map(|&(_, e, r)| (e, r)).collect();
        let verdict = verdict(&hops, reached, target, self.healthy(target, proto), &witnesses);
        let (reason, outage_start) = (ask.reason, ask.outage_start);
        let trace = Trace { ts, target, reason, proto, hops, reached, packets, outage_start, verdict };
        let route = trace.route();
        tracing::info!(%target, reason = reason.as_str(), proto = proto.as_str(), %route, "{}", trace.verdict.note);
        if reached && reason == PathReason::Baseline {
            if let Some(detail) = self.healthy.get(&(target, proto)).and_then(|b| route_change(b, &trace)) {
                let _ = self.out.send(Record::Event { ts, kind: EventKind::RouteChange, detail }).await;
            }
            self.healthy.insert((target, proto), trace.clone());
        }
        let _ = self.out.send(Record::Path(trace)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(ttl: u8, addr: Option<&str>) -> Hop {
        let addr = addr.map(|a| a.parse().unwrap());
        Hop { ttl, addr, sent: 3, answered: if addr.is_some() { 3 } else { 0 }, rtt_us: addr.map(|_| 900), error: None }
    }

    fn trace(target: &str, hops: Vec<Hop>, reached: bool) -> Trace {
        let target = target.parse().unwrap();
        let verdict = verdict(&hops, reached, target, None, &[]);
        let (reason, proto) = (PathReason::Baseline, PathProto::Icmp);
        Trace { ts: 0, target, reason, proto, hops, reached, packets: 9, outage_start: None, verdict }
    }

    const T: &str = "9.9.9.9";

    #[test]
    fn a_hop_that_answered_when_healthy_and_is_silent_now_is_where_it_broke() {
        let healthy = trace(T, vec![hop(1, Some("10.0.0.1")), hop(2, Some("10.0.1.1")), hop(3, Some(T))], true);
        let now = vec![hop(1, Some("10.0.0.1")), hop(2, None)];
        let v = verdict(&now, false, T.parse().unwrap(), Some(&healthy), &[]);
        assert_eq!((v.last_good_ttl, v.last_good_hop), (Some(1), Some("10.0.0.1".parse().unwrap())));
        assert!(v.note.contains("broke after hop 1") && v.note.contains("hop 2 (10.0.1.1)"), "{}", v.note);
    }

    #[test]
    fn hops_that_never_answer_are_not_blamed() {
        // A carrier whose core never answers: hops 3-5 are silent even on a healthy path.
        let healthy = trace(
            T,
            vec![hop(1, Some("10.0.0.1")), hop(2, Some("10.0.1.1")), hop(3, None), hop(4, None), hop(5, Some(T))],
            true,
        );
        let now = vec![hop(1, Some("10.0.0.1")), hop(2, Some("10.0.1.1")), hop(3, None)];
        let v = verdict(&now, false, T.parse().unwrap(), Some(&healthy), &[]);
        assert_eq!(v.last_good_ttl, Some(2));
        assert!(v.note.contains("no answer beyond hop 2 (10.0.1.1) even when healthy"), "{}", v.note);
        assert!(healthy.verdict.note.contains("hop 3, 4 did not answer"), "{}", healthy.verdict.note);
    }

    #[test]
    fn a_router_refusing_to_forward_is_the_deepest_hop_at_the_ttl_it_first_answered() {
        // Hop 2 has no route: it answers TTL 2 and every deeper TTL with "network unreachable".
        let mut now = vec![hop(1, Some("10.0.0.1")), hop(2, None), hop(3, None)];
        now[1].error = Some((IcmpError::NetUnreachable, "10.0.1.1".parse().unwrap()));
        now[2].error = now[1].error;
        let v = verdict(&now, false, T.parse().unwrap(), None, &[]);
        assert_eq!((v.last_good_ttl, v.last_good_hop), (Some(2), Some("10.0.1.1".parse().unwrap())));
        assert!(v.note.contains("says network unreachable"), "{}", v.note);
    }

    #[test]
    fn a_router_the_pings_heard_from_counts_even_if_the_probe_did_not() {
        // Hop 2 refuses, but its errors are rate-limited: the probe heard nothing from it,
        // the agent's pings did.
        let healthy = trace(T, vec![hop(1, Some("10.0.0.1")), hop(2, Some("10.0.1.1")), hop(3, Some(T))], true);
        let now = vec![hop(1, Some("10.0.0.1")), hop(2, None)];
        let said = [(IcmpError::NetUnreachable, "10.0.1.1".parse().unwrap())];
        let v = verdict(&now, false, T.parse().unwrap(), Some(&healthy), &said);
        assert_eq!((v.last_good_ttl, v.last_good_hop), (Some(2), Some("10.0.1.1".parse().unwrap())));
        assert!(v.note.contains("says network unreachable"), "{}", v.note);
        // A witness on neither path is not placed.
        let stranger = [(IcmpError::NetUnreachable, "172.16.0.1".parse().unwrap())];
        let v = verdict(&now, false, T.parse().unwrap(), Some(&healthy), &stranger);
        assert_eq!(v.last_good_ttl, Some(1));
    }

    #[test]
    fn nothing_answering_is_the_pi_or_the_first_router() {
        let v = verdict(&[hop(1, None)], false, T.parse().unwrap(), None, &[]);
        assert_eq!((v.last_good_ttl, v.last_good_hop), (None, None));
        assert!(v.note.contains("no hop answered"), "{}", v.note);
        let healthy = trace(T, vec![hop(1, Some("10.0.0.1")), hop(2, Some(T))], true);
        let v = verdict(&[hop(1, None)], false, T.parse().unwrap(), Some(&healthy), &[]);
        assert!(v.note.starts_with("broke at hop 1: hop 1 (10.0.0.1) answered on the healthy path"), "{}", v.note);
    }

    #[test]
    fn a_different_router_on_the_healthy_path_is_a_route_change_a_silent_one_is_not() {
        let a = trace(T, vec![hop(1, Some("10.0.0.1")), hop(2, Some("10.0.1.1")), hop(3, Some(T))], true);
        let silent = trace(T, vec![hop(1, Some("10.0.0.1")), hop(2, None), hop(3, Some(T))], true);
        assert_eq!(route_change(&a, &silent), None);
        let moved = trace(T, vec![hop(1, Some("10.0.0.1")), hop(2, Some("10.0.7.1")), hop(3, Some(T))], true);
        assert_eq!(route_change(&a, &moved).unwrap(), "path to 9.9.9.9 changed: hop 2 10.0.1.1 -> 10.0.7.1");
        assert_eq!(a.route(), "10.0.0.1 10.0.1.1 9.9.9.9");
    }

    #[test]
    fn the_budget_allows_an_incident_then_refills_slowly() {
        let t0 = Instant::now();
        let mut b = Budget::full(t0);
        let incident = 2 * 6 * MAX_PACKETS; // the 6 built-in anchors, ICMP and UDP
        assert!(b.take(incident, incident, t0), "a loss episode's probe when the room is there");
        assert!(!b.take(incident, incident, t0), "but not one that would leave no room for an outage's");
        assert!(b.take(incident, 0, t0), "the outage's probe");
        assert!(!b.take(incident, 0, t0), "not a third");
        // 1200 packets an hour: a 6-anchor probe (576) again after about half an hour.
        assert!(!b.take(incident, 0, t0 + Duration::from_secs(15 * 60)));
        assert!(b.take(incident, 0, t0 + Duration::from_secs(30 * 60)));
    }
}
