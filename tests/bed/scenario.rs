//! Scenario files: what the fake WAN does, in TOML (see `tests/scenarios/`).

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub description: String,
    #[serde(default)]
    pub anchor: Vec<Anchor>,
    /// Windows (seconds after the responder starts) when no anchor answers.
    #[serde(default)]
    pub outage: Vec<Window>,
    /// Link cuts made with `ip link set ... down`.
    #[serde(default)]
    pub cut: Vec<Cut>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    pub addr: IpAddr,
    pub delay_ms: f64,
    /// Each reply is delayed by delay_ms + uniform(-jitter_ms, +jitter_ms).
    #[serde(default)]
    pub jitter_ms: f64,
    /// Probability that a request is ignored.
    #[serde(default)]
    pub loss: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub start_s: f64,
    pub end_s: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cut {
    /// "lan" (between the Pi and the gateway) or "wan" (between the gateway and the internet).
    pub link: String,
    pub at_s: f64,
    pub for_s: f64,
}

impl Scenario {
    pub fn load(path: &Path) -> Scenario {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    pub fn anchor(&self, addr: IpAddr) -> &Anchor {
        self.anchor.iter().find(|a| a.addr == addr).expect("anchor in scenario")
    }
}
