//! The connection state machine: from ping results to *up*, *degraded*, *LAN down* and
//! *WAN down*, and outages recorded with start and end to the second.
//!
//! * A target is down after `down_after` consecutive lost pings, judged in send order: a
//!   timeout for a ping sent before the last answered one is stale and does not count.
//! * LAN down: every gateway and every anchor is down (the Pi, its cable/Wi-Fi or the router).
//! * WAN down: every anchor is down while a gateway still answers (or none is configured).
//!   A gateway that never answers ping while anchors do is not an outage.
//! * Degraded: anchor loss or median RTT over the thresholds in the sliding window.
//!
//! An outage starts at the send time of the first unanswered ping of the last target to go
//! down, and ends at the send time of the first answered one; its duration is measured on the
//! monotonic clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::StateConfig;
use crate::sample::{EventKind, LinkState, OutageKind, Record, Role, Sample, Target, WallMs};

/// Below this many anchor pings in the window, loss is not judged.
const MIN_WINDOW_SAMPLES: usize = 10;

#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub wall: WallMs,
    pub mono: Instant,
}

#[derive(Debug, Default, Clone)]
struct Track {
    fails: u32,
    /// Send time of the first ping of the current run of losses.
    first_fail: Option<Mark>,
    /// Send time of the newest answered ping.
    last_ok: Option<Instant>,
    /// This target has a TCP fallback: ICMP losses alone do not make it down.
    fallback: bool,
    /// The newest TCP check since the losses began: reachable or not (None: none back yet).
    tcp: Option<bool>,
    /// A TCP check answered during this run of losses: ICMP is filtered, and the target is
    /// down only from the first failed TCP check after that.
    tcp_answered: bool,
    tcp_fail_since: Option<Mark>,
}

impl Track {
    fn down(&self, down_after: u32) -> bool {
        self.fails >= down_after && (!self.fallback || self.tcp == Some(false))
    }

    /// When it went down: its first lost ping, or its first failed TCP check once TCP had
    /// answered (the time ICMP was merely filtered is not an outage).
    fn down_since(&self) -> Option<Mark> {
        if self.tcp_answered { self.tcp_fail_since } else { self.first_fail }
    }
}

pub struct StateMachine {
    cfg: StateConfig,
    roles: Vec<Role>,
    /// Per target: an IPv6 address. With anchors of both families, each is judged on its own.
    v6: Vec<bool>,
    /// Per target, as events name it.
    names: Vec<String>,
    tracks: Vec<Track>,
    /// Anchor results in the sliding window.
    window: Window,
    state: LinkState,
    outage: Option<(OutageKind, Mark)>,
    /// During a LAN outage: when the gateway answered again. The anchors get `down_after`
    /// more pings to answer before the rest of the outage is called a WAN outage, so the
    /// milliseconds between the gateway's and the anchors' first replies are not one.
    gateway_back: Option<(Mark, Vec<u32>)>,
    /// The same after an internet outage: when the first anchor answered again. The other
    /// address family gets `down_after` more pings before it is called down on its own.
    anchor_back: Option<(Mark, Vec<u32>)>,
}

impl StateMachine {
    pub fn new(cfg: StateConfig, targets: &[Target]) -> StateMachine {
        let tracks = vec![Track::default(); targets.len()];
        StateMachine {
            cfg,
            roles: targets.iter().map(|t| t.role).collect(),
            v6: targets.iter().map(|t| t.addr.is_ipv6()).collect(),
            names: targets.iter().map(ToString::to_string).collect(),
            tracks,
            window: Window::default(),
            state: LinkState::Unknown,
            outage: None,
            gateway_back: None,
            anchor_back: None,
        }
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    /// Take one ping result; return what should be recorded because of it.
    pub fn observe(&mut self, s: &Sample) -> Vec<Record> {
        let at = Mark { wall: s.ts, mono: s.mono };
        let t = &mut self.tracks[s.target];
        // A loss reported after a later ping was answered says nothing about now.
        let stale = s.rtt.is_err() && t.last_ok.is_some_and(|m| s.mono <= m);
        match s.rtt {
            Ok(_) => {
                if t.last_ok.is_none_or(|m| s.mono > m) {
                    t.last_ok = Some(s.mono);
                }
                if t.first_fail.is_some_and(|f| f.mono <= s.mono) {
                    t.fails = 0;
                    t.first_fail = None;
                    (t.tcp, t.tcp_answered, t.tcp_fail_since) = (None, false, None);
                }
            }
            Err(_) => {
                if !stale {
                    t.fails += 1;
                    if t.first_fail.is_none_or(|f| s.mono < f.mono) {
                        t.first_fail = Some(at);
                    }
                }
            }
        }
        let in_outage = self.outage.is_some();
        if self.roles[s.target] == Role::Anchor && !in_outage && !stale {
            self.window.push(s.mono, s.rtt.ok());
        }
        self.window.expire(s.mono, self.cfg.window);
        self.judge(at)
    }

    /// Targets whose pings may be filtered: they are down only when a TCP check fails too.
    pub fn set_tcp_fallback(&mut self, target: usize) {
        self.tracks[target].fallback = true;
    }

    /// A TCP check of `target`, started at `at`, came back: the host answered (`ok`) or not.
    pub fn tcp(&mut self, target: usize, at: Mark, ok: bool) -> Vec<Record> {
        let t = &mut self.tracks[target];
        if t.fails == 0 || t.first_fail.is_some_and(|f| at.mono < f.mono) {
            return Vec::new(); // the pings answer again: nothing to settle
        }
        let mut out = Vec::new();
        if ok {
            if !t.tcp_answered && self.roles[target] == Role::Anchor {
                out.push(Record::Event {
                    ts: at.wall,
                    kind: EventKind::IcmpFiltered,
                    detail: format!(
                        "{}: {} pings unanswered but TCP answers: ICMP is filtered, not down",
                        self.names[target], t.fails
                    ),
                });
            }
            (t.tcp, t.tcp_answered, t.tcp_fail_since) = (Some(true), true, None);
        } else {
            t.tcp = Some(false);
            t.tcp_fail_since.get_or_insert(at);
        }
        out.extend(self.judge(at));
        out
    }

    /// The state the tracks add up to, and the records of a change.
    fn judge(&mut self, at: Mark) -> Vec<Record> {
        let down_after = self.cfg.down_after;
        let target_down = |t: &Track| t.down(down_after);

        let group = |role: Role| self.roles.iter().zip(&self.tracks).filter(move |(r, _)| **r == role);
        let anchors_down = group(Role::Anchor).all(|(_, t)| target_down(t));
        // The anchors of one address family (IPv6 when `v6`).
        let family = |v6: bool| {
            self.roles
                .iter()
                .zip(&self.tracks)
                .zip(&self.v6)
                .filter(move |((r, _), f)| **r == Role::Anchor && **f == v6)
        };
        let both_families = family(false).next().is_some() && family(true).next().is_some();
        // One family down on its own: all its anchors down while the other's last ping was
        // answered (not both dying a ping apart).
        let family_down = |v6: bool| {
            both_families && family(v6).all(|((_, t), _)| target_down(t)) && family(!v6).any(|((_, t), _)| t.fails == 0)
        };
        if self.state == LinkState::WanDown && !anchors_down && self.anchor_back.is_none() {
            self.anchor_back = Some((at, self.tracks.iter().map(|t| t.fails).collect()));
        }
        // ...and still down `down_after` pings after the other family came back.
        let family_still_down = |v6: bool| {
            self.anchor_back.as_ref().is_none_or(|(_, counts)| {
                self.tracks
                    .iter()
                    .zip(&self.roles)
                    .zip(&self.v6)
                    .zip(counts)
                    .filter(|(((_, r), f), _)| **r == Role::Anchor && **f == v6)
                    .all(|(((t, _), _), &before)| t.fails >= before + down_after)
            })
        };
        let wan_outage_lingers = self.state == LinkState::WanDown
            && ((family_down(false) && !family_still_down(false)) || (family_down(true) && !family_still_down(true)));
        let has_gateway = group(Role::Gateway).next().is_some();
        let gateways_down = has_gateway && group(Role::Gateway).all(|(_, t)| target_down(t));
        // The moment the last of a group went down.
        let went_down = |role: Role| group(role).filter_map(|(_, t)| t.down_since()).max_by_key(|m| m.mono);

        if self.state == LinkState::LanDown && !gateways_down && anchors_down && self.gateway_back.is_none() {
            self.gateway_back = Some((at, self.tracks.iter().map(|t| t.fails).collect()));
        }
        // Every anchor has lost `down_after` more pings since the gateway came back.
        let anchors_still_down = self.gateway_back.as_ref().is_some_and(|(_, counts)| {
            self.roles
                .iter()
                .zip(&self.tracks)
                .zip(counts)
                .filter(|((r, _), _)| **r == Role::Anchor)
                .all(|((_, t), &before)| t.fails >= before + down_after)
        });
        // After a LAN outage the gateway answers a moment before the anchors do: stay in the
        // LAN outage until the anchors have had their chance.
        let lan_outage_lingers = self.state == LinkState::LanDown && !anchors_still_down;
        // Up is a claim that the internet answered: until an anchor has, and while no verdict
        // of "down" is in, the state stays unknown (every anchor dead at start is not "up").
        let anchor_ever_answered = group(Role::Anchor).any(|(_, t)| t.last_ok.is_some());
        let next = if anchors_down && (gateways_down || lan_outage_lingers) {
            LinkState::LanDown
        } else if anchors_down || wan_outage_lingers {
            LinkState::WanDown
        } else if !anchor_ever_answered {
            LinkState::Unknown
        } else if family_down(false) {
            LinkState::Ipv4Down
        } else if family_down(true) {
            LinkState::Ipv6Down
        } else if self.window.degraded(&self.cfg) {
            LinkState::Degraded
        } else {
            LinkState::Up
        };
        if next == self.state {
            return Vec::new();
        }

        // When did the change happen? Down: when the last target of the group stopped answering.
        // Up (or degraded) after an outage: the send time of this answered ping.
        let change = match next {
            LinkState::LanDown => {
                let (a, g) = (went_down(Role::Anchor), went_down(Role::Gateway));
                [a, g].into_iter().flatten().max_by_key(|m| m.mono).unwrap_or(at)
            }
            LinkState::WanDown => match &self.gateway_back {
                Some((back, _)) if self.state == LinkState::LanDown => *back,
                _ => went_down(Role::Anchor).unwrap_or(at),
            },
            LinkState::Ipv4Down | LinkState::Ipv6Down => match &self.anchor_back {
                Some((back, _)) if self.state == LinkState::WanDown => *back,
                _ => {
                    let v6 = next == LinkState::Ipv6Down;
                    family(v6).filter_map(|((_, t), _)| t.down_since()).max_by_key(|m| m.mono).unwrap_or(at)
                }
            },
            _ => at,
        };
        self.transition(next, change)
    }

    fn transition(&mut self, next: LinkState, change: Mark) -> Vec<Record> {
        let mut out = Vec::new();
        self.gateway_back = None;
        self.anchor_back = None;
        let prev = self.state;
        // An outage never starts before the previous one ended.
        let change = match &self.outage {
            Some((_, start)) if change.mono < start.mono => *start,
            _ => change,
        };
        if prev.outage() != next.outage() {
            if let Some((_, start)) = self.outage.take() {
                out.push(Record::OutageEnd {
                    end: change.wall,
                    duration_ms: change.mono.saturating_duration_since(start.mono).as_millis() as i64,
                });
            }
            if let Some(kind) = next.outage() {
                self.outage = Some((kind, change));
                out.push(Record::OutageStart { kind, start: change.wall });
                // Loss during an outage is the outage, not "degradation" afterwards.
                self.window.clear();
            }
        }
        out.push(Record::State { state: next, since: change.wall });
        out.push(Record::Event {
            ts: change.wall,
            kind: EventKind::State,
            detail: format!("{} -> {}", prev.as_str(), next.as_str()),
        });
        tracing::info!(from = prev.as_str(), to = next.as_str(), "link state changed");
        self.state = next;
        out
    }

    /// The agent is stopping: close an open outage now.
    pub fn finish(&mut self, now: WallMs, mono: Instant) -> Vec<Record> {
        match self.outage.take() {
            Some((_, start)) => vec![Record::OutageEnd {
                end: now.max(start.wall),
                duration_ms: mono.saturating_duration_since(start.mono).as_millis() as i64,
            }],
            None => Vec::new(),
        }
    }

    /// The clock was set: move remembered wall times with it.
    pub fn shift(&mut self, delta_ms: i64) {
        for t in &mut self.tracks {
            if let Some(f) = t.first_fail.as_mut() {
                f.wall += delta_ms;
            }
        }
        if let Some((_, m)) = self.outage.as_mut() {
            m.wall += delta_ms;
        }
    }

    /// How long a window the machine looks at (for tests and docs).
    pub fn window(&self) -> Duration {
        self.cfg.window
    }
}

/// The anchors' results in the sliding window, the answered RTTs also kept sorted: "degraded"
/// is judged at every ping, and an insert and a removal in a sorted list of a few hundred
/// numbers cost far less than selecting the median afresh (7.1k instructions a ping, measured
/// with callgrind, for selecting it from a copy of the window).
#[derive(Debug, Default)]
struct Window {
    /// (send time, RTT in µs or lost), oldest first.
    results: VecDeque<(Instant, Option<u32>)>,
    /// The answered RTTs of `results`, ascending.
    sorted: Vec<u32>,
}

impl Window {
    fn push(&mut self, at: Instant, rtt: Option<u32>) {
        self.results.push_back((at, rtt));
        if let Some(r) = rtt {
            let i = self.sorted.partition_point(|&x| x < r);
            self.sorted.insert(i, r);
        }
    }

    /// Drop the results sent more than `span` before `now`.
    fn expire(&mut self, now: Instant, span: Duration) {
        while let Some(&(at, rtt)) = self.results.front() {
            if now.saturating_duration_since(at) <= span {
                break;
            }
            self.results.pop_front();
            if let Some(r) = rtt {
                // Any one of equal RTTs will do: they are the same number.
                let i = self.sorted.partition_point(|&x| x < r);
                debug_assert_eq!(self.sorted.get(i), Some(&r), "the sorted RTTs follow the window");
                self.sorted.remove(i);
            }
        }
    }

    fn clear(&mut self) {
        self.results.clear();
        self.sorted.clear();
    }

    /// Loss or median RTT over the thresholds.
    fn degraded(&self, cfg: &StateConfig) -> bool {
        let n = self.results.len();
        if n < MIN_WINDOW_SAMPLES {
            return false;
        }
        let loss = (n - self.sorted.len()) as f64 / n as f64;
        let median_ms = crate::stats::quantile_sorted(&self.sorted, 0.5).map(|us| us / 1000.0);
        loss > cfg.degraded_loss || median_ms.is_some_and(|m| m > cfg.degraded_rtt_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Failure;

    const GW: usize = 0;
    const A1: usize = 1;
    const A2: usize = 2;

    fn target(addr: &str, role: Role) -> Target {
        Target { addr: addr.parse().unwrap(), role, name: addr.into() }
    }

    fn cfg() -> StateConfig {
        StateConfig { down_after: 3, window: Duration::from_secs(60), degraded_loss: 0.05, degraded_rtt_ms: 150.0 }
    }

    #[test]
    fn ipv4_down_while_ipv6_answers_is_a_state_and_an_outage_of_its_own() {
        // Gateway, two IPv4 anchors, one IPv6 anchor: IPv4 dies 20-35 s, then everything 50-60 s.
        let targets = [
            target("192.168.12.1", Role::Gateway),
            target("9.9.9.9", Role::Anchor),
            target("1.1.1.1", Role::Anchor),
            target("2606:4700::1111", Role::Anchor),
        ];
        let mut sim = Sim::with(cfg(), &targets);
        for s in 0..80 {
            let v4_cut = (20..35).contains(&s);
            let all_cut = (50..60).contains(&s);
            sim.second(s, |t| {
                let lost = (t == A1 || t == A2) && v4_cut || t != GW && all_cut;
                (!lost).then_some(20_000)
            });
            if s == 25 {
                assert_eq!(sim.sm.state(), LinkState::Ipv4Down);
            }
            if s == 55 {
                assert_eq!(sim.sm.state(), LinkState::WanDown);
            }
        }
        assert_eq!(sim.outages(), ["ipv4 start 20", "end 35 (15s)", "wan start 50", "end 60 (10s)"]);
        assert_eq!(sim.sm.state(), LinkState::Up);

        // The internet comes back over IPv4 only: the rest of the outage is IPv6's, from the
        // moment IPv4 answered.
        let mut sim = Sim::with(cfg(), &targets);
        for s in 0..60 {
            let all_cut = (10..20).contains(&s);
            let v6_cut = (10..40).contains(&s);
            sim.second(s, |t| {
                let lost = t != GW && all_cut || t == 3 && v6_cut;
                (!lost).then_some(20_000)
            });
        }
        assert_eq!(sim.outages(), ["wan start 10", "end 20 (10s)", "ipv6 start 20", "end 40 (20s)"]);
    }

    #[test]
    fn unanswered_pings_to_anchors_that_answer_tcp_are_filtered_not_down() {
        let mut sim = Sim::new(true);
        sim.sm.set_tcp_fallback(A1);
        sim.sm.set_tcp_fallback(A2);
        let mark =
            |sim: &Sim, sec: u64| Mark { wall: 1_000_000 + sec as i64 * 1000, mono: sim.t0 + Duration::from_secs(sec) };
        for s in 0..60 {
            // From 10 s the carrier drops ICMP to the anchors; from 40 s the internet is gone.
            sim.second(s, |t| if t == GW || s < 10 { Some(20_000) } else { None });
            if s >= 11 && s % 5 == 1 {
                let at = mark(&sim, s);
                let recs = sim.sm.tcp(A1, at, s < 40);
                sim.log.extend(recs);
                let recs = sim.sm.tcp(A2, at, s < 40);
                sim.log.extend(recs);
            }
            if s == 30 {
                assert_ne!(sim.sm.state(), LinkState::WanDown, "ICMP filtered is not an outage");
            }
        }
        // The outage begins at the first failed TCP check (41 s), not when ICMP went quiet.
        assert_eq!(sim.outages(), ["wan start 41"]);
        let filtered =
            sim.log.iter().filter(|r| matches!(r, Record::Event { kind: EventKind::IcmpFiltered, .. })).count();
        assert_eq!(filtered, 2, "one event per anchor");
    }

    #[test]
    fn one_family_only_is_judged_as_before() {
        // Only IPv4 anchors: both down is the internet down, never "IPv4 only".
        let mut sim = Sim::new(true);
        for s in 0..40 {
            let cut = (10..20).contains(&s);
            sim.second(s, |t| if t == GW || !cut { Some(20_000) } else { None });
        }
        assert_eq!(sim.outages(), ["wan start 10", "end 20 (10s)"]);
    }

    struct Sim {
        sm: StateMachine,
        t0: Instant,
        seq: u16,
        log: Vec<Record>,
    }

    impl Sim {
        fn new(with_gateway: bool) -> Sim {
            let cfg = cfg();
            let mut targets = vec![target("9.9.9.9", Role::Anchor), target("1.1.1.1", Role::Anchor)];
            if with_gateway {
                targets.insert(0, target("192.168.12.1", Role::Gateway));
            }
            Sim::with(cfg, &targets)
        }

        fn with(cfg: StateConfig, targets: &[Target]) -> Sim {
            Sim { sm: StateMachine::new(cfg, targets), t0: Instant::now(), seq: 0, log: Vec::new() }
        }

        /// All targets pinged at second `sec`; `answer(target)` says who answers and how fast.
        fn second(&mut self, sec: u64, answer: impl Fn(usize) -> Option<u32>) {
            for target in 0..self.sm.roles.len() {
                self.seq = self.seq.wrapping_add(1);
                let rtt = answer(target).ok_or(Failure::Timeout);
                let s = Sample {
                    target,
                    ts: 1_000_000 + sec as i64 * 1000,
                    mono: self.t0 + Duration::from_secs(sec),
                    seq: self.seq,
                    rtt,
                };
                self.log.extend(self.sm.observe(&s));
            }
        }

        fn outages(&self) -> Vec<String> {
            self.log
                .iter()
                .filter_map(|r| match r {
                    Record::OutageStart { kind, start } => {
                        Some(format!("{} start {}", kind.as_str(), (start - 1_000_000) / 1000))
                    }
                    Record::OutageEnd { end, duration_ms } => {
                        Some(format!("end {} ({}s)", (end - 1_000_000) / 1000, duration_ms / 1000))
                    }
                    _ => None,
                })
                .collect()
        }
    }

    #[test]
    fn healthy_link_is_up() {
        let mut sim = Sim::new(true);
        for s in 0..30 {
            sim.second(s, |_| Some(20_000));
        }
        assert_eq!(sim.sm.state(), LinkState::Up);
        assert!(sim.outages().is_empty());
    }

    #[test]
    fn wan_down_when_gateway_answers_and_anchors_do_not() {
        let mut sim = Sim::new(true);
        for s in 0..60 {
            let cut = (20..35).contains(&s);
            sim.second(s, |t| if t == GW || !cut { Some(20_000) } else { None });
            if s == 23 {
                assert_eq!(sim.sm.state(), LinkState::WanDown);
            }
        }
        assert_eq!(sim.outages(), ["wan start 20", "end 35 (15s)"]);
        // After the outage the link is up again, not "degraded" by the outage's own loss.
        assert_eq!(sim.sm.state(), LinkState::Up);
    }

    #[test]
    fn lan_down_when_the_gateway_is_gone_too() {
        let mut sim = Sim::new(true);
        for s in 0..40 {
            let cut = (10..20).contains(&s);
            sim.second(s, |_| if cut { None } else { Some(20_000) });
        }
        assert_eq!(sim.outages(), ["lan start 10", "end 20 (10s)"]);
    }

    #[test]
    fn lan_outage_becomes_wan_outage_when_only_the_gateway_returns() {
        let mut sim = Sim::new(true);
        for s in 0..50 {
            sim.second(s, |t| match t {
                GW if (10..20).contains(&s) => None,
                GW => Some(1_000),
                _ if (10..30).contains(&s) => None,
                _ => Some(20_000),
            });
        }
        assert_eq!(sim.outages(), ["lan start 10", "end 20 (10s)", "wan start 20", "end 30 (10s)"]);
    }

    #[test]
    fn gateway_that_ignores_ping_is_not_an_outage() {
        let mut sim = Sim::new(true);
        for s in 0..40 {
            sim.second(s, |t| if t == GW { None } else { Some(20_000) });
        }
        assert_eq!(sim.sm.state(), LinkState::Up);
        assert!(sim.outages().is_empty());
    }

    #[test]
    fn one_anchor_down_is_not_an_outage() {
        let mut sim = Sim::new(true);
        for s in 0..40 {
            sim.second(s, |t| if t == A2 && s > 10 { None } else { Some(20_000) });
        }
        assert!(sim.outages().is_empty());
        // Half the anchor pings are lost: that is degraded.
        assert_eq!(sim.sm.state(), LinkState::Degraded);
    }

    #[test]
    fn wan_outage_starts_when_the_last_anchor_went_down() {
        let mut sim = Sim::new(true);
        for s in 0..30 {
            sim.second(s, |t| match t {
                A1 if s >= 5 => None,
                A2 if (8..20).contains(&s) => None,
                _ => Some(20_000),
            });
        }
        assert_eq!(sim.outages(), ["wan start 8", "end 20 (12s)"]);
    }

    #[test]
    fn slow_link_is_degraded_and_recovers() {
        let mut sim = Sim::new(false);
        for s in 0..200 {
            let slow = (30..100).contains(&s);
            sim.second(s, |_| Some(if slow { 400_000 } else { 20_000 }));
            if s == 90 {
                assert_eq!(sim.sm.state(), LinkState::Degraded);
            }
        }
        assert_eq!(sim.sm.state(), LinkState::Up);
    }

    #[test]
    fn stale_timeouts_after_recovery_do_not_reopen_the_outage() {
        let mut sim = Sim::new(false);
        for s in 0..10 {
            sim.second(s, |_| Some(20_000));
        }
        // Down from 10; pings sent at 12..14 time out but their results arrive after the
        // answer to the ping sent at 15 (timeout 2 s > interval 1 s).
        let mk = |target, sec: u64, rtt| Sample {
            target,
            ts: 1_000_000 + sec as i64 * 1000,
            mono: sim.t0 + Duration::from_secs(sec),
            seq: sec as u16,
            rtt,
        };
        let mut results = Vec::new();
        for sec in 10..12 {
            for t in [0, 1] {
                results.push(mk(t, sec, Err(Failure::Timeout)));
            }
        }
        for t in [0, 1] {
            results.push(mk(t, 12, Err(Failure::Timeout)));
        }
        for t in [0, 1] {
            results.push(mk(t, 15, Ok(20_000)));
        }
        for sec in 13..15 {
            for t in [0, 1] {
                results.push(mk(t, sec, Err(Failure::Timeout)));
            }
        }
        for r in &results {
            let recs = sim.sm.observe(r);
            sim.log.extend(recs);
        }
        assert_eq!(sim.outages(), ["wan start 10", "end 15 (5s)"]);
        assert_eq!(sim.sm.state(), LinkState::Up);
    }

    /// Regression (issue 12.2): the link read "up" for ~3 s at start with every anchor dead.
    #[test]
    fn state_stays_unknown_until_an_anchor_answers_or_all_are_down() {
        let mut sim = Sim::new(true);
        for s in 0..2 {
            sim.second(s, |t| if t == GW { Some(1_000) } else { None });
            assert_eq!(sim.sm.state(), LinkState::Unknown, "second {s}");
        }
        sim.second(2, |t| if t == GW { Some(1_000) } else { None });
        assert_eq!(sim.sm.state(), LinkState::WanDown);
        let states: Vec<String> = sim
            .log
            .iter()
            .filter_map(|r| match r {
                Record::Event { detail, .. } => Some(detail.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(states, ["unknown -> wan_down"]);
        assert_eq!(sim.outages(), ["wan start 0"]);

        // A gateway answering alone is not the internet being up either.
        let mut sim = Sim::new(true);
        sim.second(0, |t| if t == GW { Some(1_000) } else { None });
        assert_eq!(sim.sm.state(), LinkState::Unknown);
        sim.second(1, |_| Some(1_000));
        assert_eq!(sim.sm.state(), LinkState::Up);
    }

    #[test]
    fn the_sorted_window_judges_as_a_fresh_sort_of_the_window_would() {
        let cfg = StateConfig { degraded_loss: 0.1, degraded_rtt_ms: 20.0, ..cfg() };
        let t0 = Instant::now();
        let mut w = Window::default();
        let mut seed = 11u64;
        let mut rand = |m: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        let (mut seen_degraded, mut seen_fine) = (0, 0);
        for i in 0..5_000u64 {
            // Three anchors a second; stretches of high RTT and of loss; repeated values.
            let phase = (i / 700) % 3;
            let rtt = match (phase, rand(10)) {
                (1, 0..=2) | (2, 0) => None,
                (1, _) => Some(15_000 + rand(20) as u32 * 500),
                _ => Some(1_000 + rand(300) as u32 * 100),
            };
            let at = t0 + Duration::from_millis(i * 333);
            w.push(at, rtt);
            w.expire(at, cfg.window);
            if i % 97 == 0 {
                w.clear();
            }
            // The reference: the window's RTTs sorted afresh.
            let mut rtts: Vec<u32> = w.results.iter().filter_map(|(_, r)| *r).collect();
            rtts.sort_unstable();
            assert_eq!(w.sorted, rtts, "step {i}");
            let n = w.results.len();
            let want = n >= MIN_WINDOW_SAMPLES
                && ((n - rtts.len()) as f64 / n as f64 > cfg.degraded_loss
                    || crate::stats::quantile_sorted(&rtts, 0.5).is_some_and(|m| m / 1000.0 > cfg.degraded_rtt_ms));
            assert_eq!(w.degraded(&cfg), want, "step {i}");
            if want { seen_degraded += 1 } else { seen_fine += 1 }
        }
        assert!(seen_degraded > 500 && seen_fine > 500, "{seen_degraded} degraded, {seen_fine} fine");
    }
}
