//! The configuration file as the user wrote it. Every field is optional; `deny_unknown_fields`
//! turns a typo into an error that names the field and its line instead of a silent default.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub db: Option<String>,
    #[serde(default)]
    pub ping: super::ping::RawPing,
    #[serde(default)]
    pub state: super::state::RawState,
    #[serde(default)]
    pub store: super::store::RawStore,
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
    pub sessions: super::probes::SessionsConfig,
    #[serde(default)]
    pub display: super::panel::DisplayConfig,
    #[serde(default)]
    pub led: super::panel::LedConfig,
    #[serde(default)]
    pub detect: super::detect::DetectConfig,
    #[serde(default)]
    pub report: super::outputs::ReportConfig,
    #[serde(default)]
    pub web: super::outputs::WebConfig,
    #[serde(default)]
    pub notify: super::outputs::NotifyConfig,
    #[serde(default)]
    pub community: super::outputs::CommunityConfig,
}
