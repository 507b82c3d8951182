//! The configuration file as the user wrote it. Every field is optional; `deny_unknown_fields`
//! turns a typo into an error that names the field and its line instead of a silent default.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub db: Option<String>,
    #[serde(default)]
    pub ping: RawPing,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub dns: super::probes::DnsConfig,
    #[serde(default)]
    pub http: super::probes::HttpConfig,
    #[serde(default)]
    pub bandwidth: super::probes::BandwidthConfig,
    #[serde(default)]
    pub gateway_api: super::probes::GatewayApiConfig,
    #[serde(default)]
    pub weather: super::probes::WeatherConfig,
    #[serde(default)]
    pub syslog: super::probes::SyslogConfig,
    #[serde(default)]
    pub devices: super::probes::DevicesConfig,
    #[serde(default)]
    pub system: super::probes::SystemConfig,
    #[serde(default)]
    pub display: super::probes::DisplayConfig,
    #[serde(default)]
    pub led: super::probes::LedConfig,
    #[serde(default)]
    pub detect: super::probes::DetectConfig,
    #[serde(default)]
    pub report: super::outputs::ReportConfig,
    #[serde(default)]
    pub web: super::outputs::WebConfig,
    #[serde(default)]
    pub notify: super::outputs::NotifyConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPing {
    #[serde(default, deserialize_with = "super::duration::de_spanned")]
    pub interval: Option<Spanned<Duration>>,
    #[serde(default, deserialize_with = "super::duration::de_spanned")]
    pub timeout: Option<Spanned<Duration>>,
    pub gateway: Option<Spanned<String>>,
    pub anchors: Option<Vec<IpAddr>>,
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
    #[serde(default, deserialize_with = "super::duration::de_spanned")]
    pub interval: Option<Spanned<Duration>>,
    #[serde(default, deserialize_with = "super::duration::de_spanned")]
    pub timeout: Option<Spanned<Duration>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub down_after: Option<Spanned<u32>>,
    #[serde(default, deserialize_with = "super::duration::de_spanned")]
    pub window: Option<Spanned<Duration>>,
    pub degraded_loss: Option<Spanned<f64>>,
    pub degraded_rtt_ms: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    #[serde(default, deserialize_with = "super::duration::de_spanned")]
    pub flush_interval: Option<Spanned<Duration>>,
    pub raw_retention_days: Option<Spanned<u32>>,
    pub rollup_retention_days: Option<Spanned<u32>>,
    pub max_db_mb: Option<Spanned<u64>>,
    pub journal_size_limit_mb: Option<Spanned<u64>>,
}
