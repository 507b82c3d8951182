//! The record that flows through everything: a probe produces [`Sample`]s, the store writes them,
//! the detectors read them and the outputs show them.

use std::fmt;
use std::net::IpAddr;
use std::time::Instant;

/// Wall-clock milliseconds since the Unix epoch, UTC. Always derived from the monotonic clock by
/// [`crate::clock::Clock`], so two stamps taken in order never go backwards within one run.
pub type WallMs = i64;

/// What a target is for: the state machine tells a LAN fault from a WAN fault by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The default gateway (the router / 5G gateway): if it stops answering, the LAN is down.
    Gateway,
    /// A public internet anchor: if all of them stop answering while the gateway answers, the
    /// WAN is down.
    Anchor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Anchor => "anchor",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "gateway" => Some(Role::Gateway),
            "anchor" => Some(Role::Anchor),
            _ => None,
        }
    }
}

/// A host that is probed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub addr: IpAddr,
    pub role: Role,
    /// A short human name ("gateway", "cloudflare"), shown by `status` and exports.
    pub name: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name == self.addr.to_string() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{} ({})", self.name, self.addr)
        }
    }
}

/// Why a probe got no answer. Stored as a small integer (and, for an ICMP error, the address
/// of the router that sent it) so a lost sample costs a byte or two more than an answered one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No reply within the timeout (or the reply came later than that).
    Timeout,
    /// The request could not even be sent: no route, link down, no neighbour answer.
    SendError,
    /// A router answered our echo with an ICMP error: evidence of where and why it broke
    /// ("192.168.12.1 said network unreachable").
    Icmp { error: IcmpError, router: IpAddr },
}

/// The ICMP errors (v4 types 3, 11, 12; v6 types 1-4) that quote an echo of ours, grouped by
/// what they tell a household. The discriminant is the stored code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpError {
    NetUnreachable = 10,
    HostUnreachable = 11,
    ProtocolUnreachable = 12,
    PortUnreachable = 13,
    /// Fragmentation needed / packet too big.
    TooBig = 14,
    /// Administratively prohibited (a firewall or a `prohibit` route).
    Prohibited = 15,
    /// Any other destination-unreachable code.
    Unreachable = 16,
    /// Time exceeded in transit (a routing loop, or a hop limit).
    TtlExceeded = 17,
    ParameterProblem = 18,
}

impl IcmpError {
    pub const ALL: [IcmpError; 9] = [
        IcmpError::NetUnreachable,
        IcmpError::HostUnreachable,
        IcmpError::ProtocolUnreachable,
        IcmpError::PortUnreachable,
        IcmpError::TooBig,
        IcmpError::Prohibited,
        IcmpError::Unreachable,
        IcmpError::TtlExceeded,
        IcmpError::ParameterProblem,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IcmpError::NetUnreachable => "net_unreachable",
            IcmpError::HostUnreachable => "host_unreachable",
            IcmpError::ProtocolUnreachable => "protocol_unreachable",
            IcmpError::PortUnreachable => "port_unreachable",
            IcmpError::TooBig => "too_big",
            IcmpError::Prohibited => "prohibited",
            IcmpError::Unreachable => "unreachable",
            IcmpError::TtlExceeded => "ttl_exceeded",
            IcmpError::ParameterProblem => "parameter_problem",
        }
    }

    /// In words, for a person: "network unreachable".
    pub fn describe(self) -> &'static str {
        match self {
            IcmpError::NetUnreachable => "network unreachable",
            IcmpError::HostUnreachable => "host unreachable",
            IcmpError::ProtocolUnreachable => "protocol unreachable",
            IcmpError::PortUnreachable => "port unreachable",
            IcmpError::TooBig => "packet too big",
            IcmpError::Prohibited => "administratively prohibited",
            IcmpError::Unreachable => "destination unreachable",
            IcmpError::TtlExceeded => "time to live exceeded",
            IcmpError::ParameterProblem => "parameter problem",
        }
    }
}

impl Failure {
    pub fn code(self) -> i64 {
        match self {
            Failure::Timeout => 1,
            Failure::SendError => 2,
            Failure::Icmp { error, .. } => error as i64,
        }
    }

    /// The failure a stored code (and router address, for ICMP errors) stands for.
    pub fn from_code(code: i64, router: Option<IpAddr>) -> Option<Failure> {
        match code {
            1 => Some(Failure::Timeout),
            2 => Some(Failure::SendError),
            _ => {
                let error = IcmpError::ALL.into_iter().find(|e| *e as i64 == code)?;
                Some(Failure::Icmp { error, router: router? })
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::SendError => "send-error",
            Failure::Icmp { error, .. } => error.as_str(),
        }
    }

    /// The router that said so, for an ICMP error.
    pub fn router(self) -> Option<IpAddr> {
        match self {
            Failure::Icmp { router, .. } => Some(router),
            _ => None,
        }
    }

    /// Every stored code and its name, for SQL that spells them out (exports).
    pub fn names() -> Vec<(i64, &'static str)> {
        let mut v = vec![(1, "timeout"), (2, "send-error")];
        v.extend(IcmpError::ALL.iter().map(|e| (*e as i64, e.as_str())));
        v
    }
}

/// One measurement: an ICMP echo to one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Index into the agent's target list (also the target's id in the store).
    pub target: usize,
    /// Wall time the request was sent.
    pub ts: WallMs,
    /// Monotonic instant the request was sent; used for durations, never stored.
    pub mono: Instant,
    /// ICMP sequence number.
    pub seq: u16,
    /// Round-trip time in microseconds, or why there was none.
    pub rtt: Result<u32, Failure>,
}

impl Sample {
    pub fn is_lost(&self) -> bool {
        self.rtt.is_err()
    }

    pub fn rtt_us(&self) -> Option<u32> {
        self.rtt.ok()
    }
}

/// The connection as the state machine judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// Not enough data yet.
    Unknown,
    Up,
    /// Answers, but with loss or latency over the thresholds.
    Degraded,
    /// The gateway does not answer either: the Pi's own link, the LAN or the router is down.
    LanDown,
    /// The gateway answers, no internet anchor does: the ISP side is down.
    WanDown,
    /// No IPv4 anchor answers while an IPv6 one does (5G home internet is often IPv6-first,
    /// with IPv4 through the carrier's NAT, which fails on its own).
    Ipv4Down,
    /// No IPv6 anchor answers while an IPv4 one does.
    Ipv6Down,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Unknown => "unknown",
            LinkState::Up => "up",
            LinkState::Degraded => "degraded",
            LinkState::LanDown => "lan_down",
            LinkState::WanDown => "wan_down",
            LinkState::Ipv4Down => "ipv4_down",
            LinkState::Ipv6Down => "ipv6_down",
        }
    }

    pub const ALL: [LinkState; 7] = [
        LinkState::Unknown,
        LinkState::Up,
        LinkState::Degraded,
        LinkState::LanDown,
        LinkState::WanDown,
        LinkState::Ipv4Down,
        LinkState::Ipv6Down,
    ];

    pub fn parse(s: &str) -> Option<LinkState> {
        LinkState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The whole internet (or more) is down, not one address family.
    pub fn is_down(self) -> bool {
        matches!(self, LinkState::LanDown | LinkState::WanDown)
    }

    /// The outage this state is, if it is one.
    pub fn outage(self) -> Option<OutageKind> {
        match self {
            LinkState::LanDown => Some(OutageKind::Lan),
            LinkState::WanDown => Some(OutageKind::Wan),
            LinkState::Ipv4Down => Some(OutageKind::Ipv4),
            LinkState::Ipv6Down => Some(OutageKind::Ipv6),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutageKind {
    Lan,
    Wan,
    /// IPv4 only (IPv6 still answered).
    Ipv4,
    /// IPv6 only (IPv4 still answered).
    Ipv6,
}

impl OutageKind {
    pub const ALL: [OutageKind; 4] = [OutageKind::Lan, OutageKind::Wan, OutageKind::Ipv4, OutageKind::Ipv6];

    pub fn as_str(self) -> &'static str {
        match self {
            OutageKind::Lan => "lan",
            OutageKind::Wan => "wan",
            OutageKind::Ipv4 => "ipv4",
            OutageKind::Ipv6 => "ipv6",
        }
    }

    /// The stored name back; anything unknown is the internet.
    pub fn parse(s: &str) -> OutageKind {
        OutageKind::ALL.into_iter().find(|k| k.as_str() == s).unwrap_or(OutageKind::Wan)
    }

    /// In words, for people: "internet", "IPv4 only".
    pub fn describe(self) -> &'static str {
        match self {
            OutageKind::Lan => "home network",
            OutageKind::Wan => "internet",
            OutageKind::Ipv4 => "IPv4 only (IPv6 up)",
            OutageKind::Ipv6 => "IPv6 only (IPv4 up)",
        }
    }
}

/// Declares the event kinds with their stored names, once: `as_str`, `parse` and `ALL` follow.
macro_rules! event_kinds {
    ($($(#[$doc:meta])* $kind:ident = $name:literal,)+) => {
        /// What an `events` row is about. Stored as its name, so old databases read back.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $($(#[$doc])* $kind,)+
            /// A name this version does not know (written by a newer agent).
            Unknown,
        }

        impl EventKind {
            pub const ALL: &[EventKind] = &[$(EventKind::$kind,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$kind => $name,)+
                    EventKind::Unknown => "unknown",
                }
            }

            pub fn parse(s: &str) -> EventKind {
                match s {
                    $($name => EventKind::$kind,)+
                    _ => EventKind::Unknown,
                }
            }
        }
    };
}

event_kinds! {
    /// The agent started, stopped, stepped its clock, shed a backlog, hit the size cap.
    AgentStart = "agent_start",
    AgentStop = "agent_stop",
    ClockStep = "clock_step",
    BacklogDropped = "backlog_dropped",
    SizeCap = "size_cap",
    WebError = "web_error",
    /// The link state changed ("up -> wan_down").
    State = "state",
    /// The gateway rebooted, changed band or cell.
    GatewayReboot = "gateway_reboot",
    GatewayBand = "gateway_band",
    GatewayCell = "gateway_cell",
    /// The router's log said so.
    RouterWanDown = "wan_down",
    RouterWanUp = "wan_up",
    RouterReboot = "reboot",
    RouterDnsFailure = "dns_failure",
    WifiStorm = "wifi_storm",
    SyslogDropped = "syslog_dropped",
    /// The detectors.
    Anomaly = "anomaly",
    AnomalyEnd = "anomaly_end",
    Degradation = "degradation",
    DegradationEnd = "degradation_end",
    LevelShift = "level_shift",
    Prediction = "prediction",
    /// The path to an anchor changed between two baseline path probes.
    RouteChange = "route_change",
    /// An anchor's pings go unanswered but it answers TCP: ICMP is filtered, not down.
    IcmpFiltered = "icmp_filtered",
}

impl EventKind {
    /// The gateway's own events (shown beside outages in the report).
    pub fn is_gateway(self) -> bool {
        matches!(self, EventKind::GatewayReboot | EventKind::GatewayBand | EventKind::GatewayCell)
    }

    /// What the detectors flagged (the report's flagged list).
    pub fn is_detection(self) -> bool {
        matches!(
            self,
            EventKind::Anomaly
                | EventKind::AnomalyEnd
                | EventKind::Degradation
                | EventKind::DegradationEnd
                | EventKind::LevelShift
                | EventKind::Prediction
        )
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

use crate::series::Series;

/// Everything that flows from the agent into the store, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Sample(Sample),
    /// An outage began at `start` (backdated to the first probe that went unanswered).
    OutageStart {
        kind: OutageKind,
        start: WallMs,
    },
    /// The open outage ended at `end`; `duration_ms` is measured on the monotonic clock.
    OutageEnd {
        end: WallMs,
        duration_ms: i64,
    },
    /// The link state changed.
    State {
        state: LinkState,
        since: WallMs,
    },
    /// Something worth keeping: a clock step, the agent starting or stopping.
    Event {
        ts: WallMs,
        kind: EventKind,
        detail: String,
    },
    /// Every stamp of this run so far was off by `delta_ms` (the clock was set after boot).
    ShiftRun {
        delta_ms: i64,
    },
    /// A measurement from a context probe (DNS, HTTP, bandwidth, gateway, weather, ...).
    Metric(Metric),
    /// A line from the router's log.
    Syslog(SyslogLine),
    /// Nothing was measured from `start` to `end`.
    Blind(Blind),
    /// A path probe towards an anchor: who answered at each TTL, and where it broke.
    Path(Trace),
}

/// Why a path probe ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathReason {
    /// The hourly look at the healthy path, to compare an outage's path with.
    Baseline,
    /// An outage started.
    Outage,
    /// The link turned degraded (a loss episode).
    Loss,
}

impl PathReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PathReason::Baseline => "baseline",
            PathReason::Outage => "outage",
            PathReason::Loss => "loss",
        }
    }
}

/// What a path probe sends: ICMP echo, or UDP to high ports (classic traceroute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathProto {
    Icmp,
    Udp,
}

impl PathProto {
    pub fn as_str(self) -> &'static str {
        match self {
            PathProto::Icmp => "icmp",
            PathProto::Udp => "udp",
        }
    }
}

/// One TTL of a path probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Hop {
    pub ttl: u8,
    /// Who answered: the router whose "time exceeded" came back, or the target itself.
    pub addr: Option<IpAddr>,
    pub sent: u8,
    pub answered: u8,
    /// Median round trip of the answers, microseconds.
    pub rtt_us: Option<u32>,
    /// Any other ICMP error that came back for this TTL ("network unreachable"), and who sent
    /// it: a router refusing to forward is evidence too, but not a hop that forwarded.
    pub error: Option<(IcmpError, IpAddr)>,
}

/// Where a path probe says it broke: the deepest hop that still answered, and in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub last_good_ttl: Option<u8>,
    pub last_good_hop: Option<IpAddr>,
    pub note: String,
}

/// A path probe towards one anchor (ICMP echo with rising TTL, as mtr does).
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub ts: WallMs,
    pub target: IpAddr,
    pub reason: PathReason,
    pub proto: PathProto,
    pub hops: Vec<Hop>,
    /// The target itself answered (its hop is the last).
    pub reached: bool,
    /// Packets sent, all rounds (more than the hops kept show: TTLs past the end are dropped).
    pub packets: u32,
    /// For an outage's probe: the outage's start, so the store can attach the verdict to it.
    pub outage_start: Option<WallMs>,
    pub verdict: Verdict,
}

impl Trace {
    /// The route's fingerprint: who answered at each TTL, `*` for no one ("192.168.12.1 * 10.0.0.1").
    pub fn route(&self) -> String {
        let hop = |h: &Hop| h.addr.map_or_else(|| "*".to_string(), |a| a.to_string());
        self.hops.iter().map(hop).collect::<Vec<_>>().join(" ")
    }
}

/// Why nothing was measured for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlindKind {
    /// Between the previous run's last write and this run's start.
    NotRunning,
    /// The running agent did not get to run (SIGSTOP, starved, the Pi suspended).
    Stalled,
}

impl BlindKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BlindKind::NotRunning => "not_running",
            BlindKind::Stalled => "stalled",
        }
    }
}

/// A stretch of time the agent did not measure: neither up nor down, unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct Blind {
    pub start: WallMs,
    pub end: WallMs,
    pub kind: BlindKind,
    pub detail: String,
}

/// One value of one series: `probe` measured `name` of `subject` (e.g. dns / "example.com@1.1.1.1"
/// / latency_ms). A failed measurement is a metric too: `value` None and `note` saying why, so
/// failures are data, not gaps.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub ts: WallMs,
    /// Which series (`crate::series`), and of what: a radio, a URL, "here".
    pub series: Series,
    pub subject: String,
    pub value: Option<f64>,
    pub note: Option<String>,
}

impl Metric {
    pub fn new(ts: WallMs, series: Series, subject: &str, value: f64) -> Metric {
        Metric { ts, series, subject: subject.to_string(), value: Some(value), note: None }
    }

    /// A measurement that could not be made, and why.
    pub fn failed(ts: WallMs, series: Series, subject: &str, why: impl fmt::Display) -> Metric {
        Metric { ts, series, subject: subject.to_string(), value: None, note: Some(why.to_string()) }
    }
}

/// What a router log line says, when it says something known (stored by its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterClass {
    WanDown,
    WanUp,
    Reboot,
    DnsFailure,
    Dhcp,
    WifiAssoc,
}

impl RouterClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RouterClass::WanDown => "wan_down",
            RouterClass::WanUp => "wan_up",
            RouterClass::Reboot => "reboot",
            RouterClass::DnsFailure => "dns_failure",
            RouterClass::Dhcp => "dhcp",
            RouterClass::WifiAssoc => "wifi_assoc",
        }
    }
}

/// A parsed syslog message (RFC 3164 or RFC 5424) and what it means, if anything known.
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogLine {
    /// When it was received (router clocks are often wrong; their own stamp stays in `message`).
    pub ts: WallMs,
    /// Sender address or file name.
    pub source: String,
    pub facility: Option<u8>,
    pub severity: Option<u8>,
    pub host: Option<String>,
    pub app: Option<String>,
    pub message: String,
    /// A known event: wan_down, wan_up, dhcp, reboot, dns_failure, wifi_assoc, ...
    pub class: Option<RouterClass>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_read_back_as_written_and_unknown_names_are_kept_apart() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), *k);
        }
        let names: std::collections::HashSet<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), EventKind::ALL.len(), "two kinds share a stored name");
        assert_eq!(EventKind::parse("written_by_a_newer_agent"), EventKind::Unknown);
        assert_eq!(OutageKind::parse(OutageKind::Lan.as_str()), OutageKind::Lan);
        assert_eq!(OutageKind::parse(OutageKind::Wan.as_str()), OutageKind::Wan);
    }
}
