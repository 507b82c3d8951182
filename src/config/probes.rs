//! Settings of the context probes (`[dns]`, `[http]`, `[bandwidth]`, `[gateway_api]`,
//! `[weather]`, `[syslog]`, `[devices]`, `[system]`). Each probe can be switched off; every
//! default works on a home network without configuration, except weather (it needs a place).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::doc::Doc;
use super::file::RawConfig;
use super::{ConfigError, Overrides, PROBE_NAMES};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub interval: Duration,
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub timeout: Duration,
    /// Names to resolve (A records).
    pub names: Vec<String>,
    /// "system" (the Pi's resolver, via getaddrinfo) or "ADDR[:PORT]" (queried directly over UDP).
    pub servers: Vec<String>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: true,
            interval: secs(60),
            timeout: secs(3),
            names: vec!["example.com".into(), "wikipedia.org".into()],
            servers: vec!["system".into(), "1.1.1.1".into(), "8.8.8.8".into()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub interval: Duration,
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub timeout: Duration,
    pub urls: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            interval: secs(60),
            timeout: secs(10),
            urls: vec!["https://www.google.com/generate_204".into(), "https://www.cloudflare.com/cdn-cgi/trace".into()],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpeedServer {
    /// Cloudflare's speed endpoints: `/__down?bytes=N`, `/__up`.
    Cloudflare,
    /// A (self-hostable) LibreSpeed server: `garbage.php?ckSize=MB`, `empty.php`.
    Librespeed,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BandwidthConfig {
    pub enabled: bool,
    /// A test runs at a random time in every period of this length.
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub every: Duration,
    pub server: SpeedServer,
    /// Base URL of the server.
    pub url: String,
    /// Parallel streams (2-4 is what saturates a home link without hurting it for long).
    pub streams: usize,
    /// The tests never use more than this much data per calendar month (UTC).
    pub monthly_budget_mb: u64,
    /// The ramp stops once one step takes about this long.
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub step_target: Duration,
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub timeout: Duration,
}

impl Default for BandwidthConfig {
    fn default() -> Self {
        BandwidthConfig {
            enabled: true,
            every: secs(4 * 3600),
            server: SpeedServer::Cloudflare,
            url: "https://speed.cloudflare.com".into(),
            streams: 4,
            monthly_budget_mb: 10_000,
            step_target: secs(1),
            timeout: secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GatewayKind {
    Auto,
    /// Arcadyan KVD21/G4AR/G5AR, Sagemcom 5688W, Sercomm G4SE: `/TMI/v1/gateway?get=all`.
    Tmobile,
    /// Nokia 5G21: `/fastmile_radio_status_web_app.cgi`.
    Nokia,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayApiConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub interval: Duration,
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub timeout: Duration,
    pub kind: GatewayKind,
    /// Base URL of the gateway's web interface; "auto" is http://<default gateway>.
    pub url: String,
}

impl Default for GatewayApiConfig {
    fn default() -> Self {
        GatewayApiConfig {
            enabled: true,
            interval: secs(30),
            timeout: secs(3),
            kind: GatewayKind::Auto,
            url: "auto".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeatherProvider {
    OpenMeteo,
    Openweather,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeatherConfig {
    /// Off until a place is given.
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub interval: Duration,
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub timeout: Duration,
    /// "open-meteo" (no key) unless an OpenWeather key is configured.
    pub provider: Option<WeatherProvider>,
    /// A file holding the OpenWeather API key (keep it mode 0600). Never logged.
    pub api_key_file: Option<PathBuf>,
    /// Override the provider's base URL (a proxy, or a test server).
    pub url: Option<String>,
}

impl Default for WeatherConfig {
    fn default() -> Self {
        WeatherConfig {
            latitude: None,
            longitude: None,
            interval: secs(15 * 60),
            timeout: secs(10),
            provider: None,
            api_key_file: None,
            url: None,
        }
    }
}

impl WeatherConfig {
    pub fn enabled(&self) -> bool {
        self.latitude.is_some() && self.longitude.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    pub enabled: bool,
    /// UDP address to receive the router's syslog on.
    pub listen: String,
    /// Used when `listen`'s port is privileged and the agent may not bind it.
    pub fallback_port: u16,
    /// Also accept syslog over TCP on the same address.
    pub tcp: bool,
    /// A TCP connection that sends nothing for this long is closed.
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub tcp_idle: Duration,
    /// Log files to follow (a router that writes to a share, a local dnsmasq log).
    pub files: Vec<PathBuf>,
    /// Wi-Fi (dis)associations per minute above which a storm is recorded.
    pub wifi_storm_per_min: u32,
    /// Who may send router logs: "gateway" (the default gateway(s)), "lan" (private,
    /// link-local and loopback addresses), or addresses / CIDR blocks. Anything else is
    /// counted and dropped: a log line becomes evidence in the ISP report.
    pub allow_from: Vec<String>,
    /// Log lines stored per second at most (bursts of 10x that pass); the rest are counted.
    pub max_lines_per_s: u32,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            enabled: true,
            listen: "0.0.0.0:514".into(),
            fallback_port: 5514,
            tcp: false,
            tcp_idle: secs(300),
            files: Vec::new(),
            wifi_storm_per_min: 20,
            allow_from: vec!["gateway".into()],
            max_lines_per_s: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevicesConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub interval: Duration,
}

impl Default for DevicesConfig {
    fn default() -> Self {
        DevicesConfig { enabled: true, interval: secs(300) }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub interval: Duration,
    /// Where /sys is (tests point it at a fixture).
    pub sysfs: PathBuf,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig { enabled: true, interval: secs(60), sysfs: PathBuf::from("/sys") }
    }
}

/// All the context probes' settings.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbesConfig {
    pub dns: DnsConfig,
    pub http: HttpConfig,
    pub bandwidth: BandwidthConfig,
    pub gateway_api: GatewayApiConfig,
    pub weather: WeatherConfig,
    pub syslog: SyslogConfig,
    pub devices: DevicesConfig,
    pub system: SystemConfig,
}

/// "1.1.1.1", "1.1.1.1:53", "[2606:4700::1111]:53", "2606:4700::1111" -> a socket address.
pub fn parse_server(s: &str) -> Option<std::net::SocketAddr> {
    if let Ok(sa) = s.parse() {
        return Some(sa);
    }
    s.parse::<std::net::IpAddr>().ok().map(|ip| std::net::SocketAddr::new(ip, 53))
}

impl ProbesConfig {
    /// The probes' sections, each checked, with those the command line leaves out switched off.
    pub fn from_raw(raw: &RawConfig, over: &Overrides, doc: &Doc) -> Result<ProbesConfig, ConfigError> {
        let mut p = ProbesConfig {
            dns: raw.dns.clone(),
            http: raw.http.clone(),
            bandwidth: raw.bandwidth.clone(),
            gateway_api: raw.gateway_api.clone(),
            weather: raw.weather.clone(),
            syslog: raw.syslog.clone(),
            devices: raw.devices.clone(),
            system: raw.system.clone(),
        };
        p.dns.validate(doc)?;
        p.http.validate(doc)?;
        p.bandwidth.validate(doc)?;
        p.weather.validate(doc)?;
        p.syslog.validate(doc)?;
        if let Some(list) = &over.probes {
            let on = |name: &str| list.iter().any(|p| p == name);
            for name in list {
                if name != "none" && !PROBE_NAMES.contains(&name.as_str()) {
                    return Err(ConfigError::Flag {
                        flag: "--probes",
                        message: format!("unknown probe `{name}`; known: none, {}", PROBE_NAMES.join(", ")),
                    });
                }
            }
            p.dns.enabled &= on("dns");
            p.http.enabled &= on("http");
            p.bandwidth.enabled &= on("bandwidth");
            p.gateway_api.enabled &= on("gateway");
            p.syslog.enabled &= on("syslog");
            p.devices.enabled &= on("devices");
            p.system.enabled &= on("system");
            if !on("weather") {
                p.weather.latitude = None;
                p.weather.longitude = None;
            }
        }
        Ok(p)
    }
}

impl DnsConfig {
    fn validate(&self, doc: &Doc) -> Result<(), ConfigError> {
        for server in &self.servers {
            if server != "system" && parse_server(server).is_none() {
                return Err(doc.bad("dns", "servers", format!("`{server}` is not \"system\" or ADDR[:PORT]")));
            }
        }
        Ok(())
    }
}

impl HttpConfig {
    fn validate(&self, doc: &Doc) -> Result<(), ConfigError> {
        for url in &self.urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(doc.bad("http", "urls", format!("`{url}` is not an http:// or https:// URL")));
            }
        }
        Ok(())
    }
}

impl BandwidthConfig {
    fn validate(&self, doc: &Doc) -> Result<(), ConfigError> {
        if !(1..=8).contains(&self.streams) {
            return Err(doc.bad("bandwidth", "streams", "must be between 1 and 8"));
        }
        if self.every < Duration::from_secs(60) {
            return Err(doc.bad("bandwidth", "every", "must be at least 1m (a speed test is heavy)"));
        }
        Ok(())
    }
}

impl WeatherConfig {
    fn validate(&self, doc: &Doc) -> Result<(), ConfigError> {
        if self.latitude.is_some() != self.longitude.is_some() {
            return Err(doc.bad("weather", "latitude", "give both latitude and longitude"));
        }
        if self.latitude.is_some_and(|l| !(-90.0..=90.0).contains(&l)) {
            return Err(doc.bad("weather", "latitude", "must be between -90 and 90"));
        }
        if self.longitude.is_some_and(|l| !(-180.0..=180.0).contains(&l)) {
            return Err(doc.bad("weather", "longitude", "must be between -180 and 180"));
        }
        if self.provider == Some(WeatherProvider::Openweather) && self.api_key_file.is_none() {
            return Err(doc.bad("weather", "provider", "openweather needs api_key_file"));
        }
        Ok(())
    }
}

impl SyslogConfig {
    fn validate(&self, doc: &Doc) -> Result<(), ConfigError> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(doc.bad("syslog", "listen", format!("`{}` is not ADDR:PORT", self.listen)));
        }
        if let Err(e) = crate::probe::syslog::Admit::new(&self.allow_from, &[]) {
            return Err(doc.bad("syslog", "allow_from", e));
        }
        if self.max_lines_per_s == 0 {
            return Err(doc.bad("syslog", "max_lines_per_s", "must be at least 1"));
        }
        Ok(())
    }
}
