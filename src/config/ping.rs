//! `[ping]` and `[[ping.target]]`: what is pinged, how often, and the command line's say.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::doc::{Doc, check_flag};
use super::{ConfigError, Overrides, route};
use crate::input::BadInput;
use crate::sample::{Role, Target};

/// Public anchors: three independent anycast resolvers, so one provider's trouble is not
/// mistaken for the household's internet going down.
pub const DEFAULT_ANCHORS_V4: [(&str, &str); 3] =
    [("cloudflare", "1.1.1.1"), ("google", "8.8.8.8"), ("quad9", "9.9.9.9")];
pub const DEFAULT_ANCHORS_V6: [(&str, &str); 3] =
    [("cloudflare6", "2606:4700:4700::1111"), ("google6", "2001:4860:4860::8888"), ("quad96", "2620:fe::fe")];
/// The built-in anchors answer TCP on 443: when their pings go unanswered, a connect there
/// tells "ICMP filtered" from "down".
pub const DEFAULT_ANCHOR_TCP_PORT: u16 = 443;
pub const INTERVAL: Duration = Duration::from_secs(1);
pub const TIMEOUT: Duration = Duration::from_secs(2);
const INTERVAL_RANGE: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(3600));
const TIMEOUT_RANGE: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(60));

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPing {
    #[serde(default, deserialize_with = "super::duration::de_spanned")]
    pub interval: Option<Spanned<Duration>>,
    #[serde(default, deserialize_with = "super::duration::de_spanned")]
    pub timeout: Option<Spanned<Duration>>,
    pub gateway: Option<Spanned<String>>,
    pub anchors: Option<Vec<IpAddr>>,
    /// TCP port to try on an anchor whose pings go unanswered (the built-in anchors: 443).
    pub tcp_port: Option<Spanned<u16>>,
    #[serde(default)]
    pub target: Vec<RawTarget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub addr: IpAddr,
    pub name: Option<String>,
    /// The interface for a link-local IPv6 address ("eth0").
    pub iface: Option<String>,
    pub role: Option<Spanned<String>>,
    pub tcp_port: Option<Spanned<u16>>,
    #[serde(default, deserialize_with = "super::duration::de_spanned")]
    pub interval: Option<Spanned<Duration>>,
    #[serde(default, deserialize_with = "super::duration::de_spanned")]
    pub timeout: Option<Spanned<Duration>>,
}

/// One probed host with its own schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct PingTarget {
    pub target: Target,
    pub interval: Duration,
    pub timeout: Duration,
    /// Interface for a link-local IPv6 gateway (`fe80::1%eth0`).
    pub iface: Option<String>,
    /// An anchor's TCP fallback: a port to connect to when its pings go unanswered.
    pub tcp_port: Option<u16>,
}

/// The targets: the gateway (found, named or none), then the anchors (the command line's, the
/// file's or the defaults, IPv6 ones only with an IPv6 route), each once.
pub fn targets(
    p: &RawPing,
    over: &Overrides,
    gateways: &[route::Gateway],
    doc: &Doc,
) -> Result<Vec<PingTarget>, ConfigError> {
    let mut interval = doc.duration_in(&p.interval, "ping.interval", INTERVAL, INTERVAL_RANGE)?;
    let mut timeout = doc.duration_in(&p.timeout, "ping.timeout", TIMEOUT, TIMEOUT_RANGE)?;
    if let Some(i) = over.interval {
        check_flag("--interval", i, INTERVAL_RANGE)?;
        interval = i;
    }
    if let Some(t) = over.timeout {
        check_flag("--timeout", t, TIMEOUT_RANGE)?;
        timeout = t;
    }
    let mut targets = Vec::new();
    let mut add = |t: PingTarget| {
        if !targets.iter().any(|o: &PingTarget| o.target.addr == t.target.addr) {
            targets.push(t);
        }
    };
    let port = |p: &Option<Spanned<u16>>, key: &str| -> Result<Option<u16>, ConfigError> {
        match p {
            Some(v) if *v.get_ref() == 0 => Err(doc.invalid(v, key, "must be a TCP port, 1-65535")),
            other => Ok(other.as_ref().map(|v| *v.get_ref())),
        }
    };
    let tcp_port = port(&p.tcp_port, "ping.tcp_port")?;
    let simple = |addr: IpAddr, role, name: &str, iface| PingTarget {
        target: Target { addr, role, name: name.to_string() },
        interval,
        timeout,
        iface,
        tcp_port: if role == Role::Anchor { tcp_port } else { None },
    };

    let gateway_choice = match (&over.gateway, &p.gateway) {
        (Some(g), _) => {
            GatewayChoice::parse(g).map_err(|m| ConfigError::Flag { flag: "--gateway", message: m.to_string() })?
        }
        (None, Some(g)) => GatewayChoice::parse(g.get_ref()).map_err(|m| doc.invalid(g, "ping.gateway", m))?,
        (None, None) => GatewayChoice::Auto,
    };
    match gateway_choice {
        GatewayChoice::None => {}
        GatewayChoice::Addr(addr) => add(simple(addr, Role::Gateway, "gateway", None)),
        GatewayChoice::Auto => {
            for gw in gateways {
                let name = if gw.addr.is_ipv4() { "gateway" } else { "gateway6" };
                let iface = gw.addr.is_ipv6().then(|| gw.iface.clone());
                add(simple(gw.addr, Role::Gateway, name, iface));
            }
        }
    }

    if !over.targets.is_empty() {
        for addr in &over.targets {
            add(simple(*addr, Role::Anchor, &addr.to_string(), None));
        }
    } else {
        match &p.anchors {
            Some(list) => {
                for addr in list {
                    add(simple(*addr, Role::Anchor, &addr.to_string(), None));
                }
            }
            None => {
                let have_v6 = gateways.iter().any(|g| g.addr.is_ipv6());
                let v6 = DEFAULT_ANCHORS_V6.iter().filter(|_| have_v6);
                for (name, addr) in DEFAULT_ANCHORS_V4.iter().chain(v6) {
                    let mut t = simple(addr.parse().expect("built-in address"), Role::Anchor, name, None);
                    t.tcp_port = tcp_port.or(Some(DEFAULT_ANCHOR_TCP_PORT));
                    add(t);
                }
            }
        }
        for t in &p.target {
            let role = match &t.role {
                None => Role::Anchor,
                Some(r) => Role::parse(r.get_ref())
                    .ok_or_else(|| doc.invalid(r, "ping.target.role", "must be \"gateway\" or \"anchor\""))?,
            };
            let name = t.name.clone().unwrap_or_else(|| t.addr.to_string());
            add(PingTarget {
                target: Target { addr: t.addr, role, name },
                interval: doc.duration_in(&t.interval, "ping.target.interval", interval, INTERVAL_RANGE)?,
                timeout: doc.duration_in(&t.timeout, "ping.target.timeout", timeout, TIMEOUT_RANGE)?,
                iface: t.iface.clone(),
                tcp_port: port(&t.tcp_port, "ping.target.tcp_port")?.or(tcp_port).filter(|_| role == Role::Anchor),
            });
        }
    }
    if !targets.iter().any(|t| t.target.role == Role::Anchor) {
        return Err(doc.whole("no internet anchor to ping: list at least one in ping.anchors or ping.target"));
    }
    Ok(targets)
}

enum GatewayChoice {
    Auto,
    None,
    Addr(IpAddr),
}

impl GatewayChoice {
    fn parse(s: &str) -> Result<GatewayChoice, BadInput> {
        match s {
            "auto" => Ok(GatewayChoice::Auto),
            "none" => Ok(GatewayChoice::None),
            other => other
                .parse()
                .map(GatewayChoice::Addr)
                .map_err(|_| BadInput::new(other, "is not \"auto\", \"none\" or an IP address")),
        }
    }
}
