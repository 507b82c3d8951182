//! Settings of the context probes (`[dns]`, `[http]`, `[bandwidth]`, `[gateway_api]`,
//! `[weather]`, `[syslog]`, `[devices]`, `[system]`). Each probe can be switched off; every
//! default works on a home network without configuration, except weather (it needs a place).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::doc::Doc;
use super::file::RawConfig;
use super::{ConfigError, Overrides};

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
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

pub const DNS_INTERVAL: Duration = secs(60);
pub const DNS_TIMEOUT: Duration = secs(3);
pub const DNS_NAMES: &[&str] = &["example.com", "wikipedia.org"];
pub const DNS_SERVERS: &[&str] = &["system", "1.1.1.1", "8.8.8.8"];

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: true,
            interval: DNS_INTERVAL,
            timeout: DNS_TIMEOUT,
            names: strings(DNS_NAMES),
            servers: strings(DNS_SERVERS),
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

pub const HTTP_INTERVAL: Duration = secs(60);
pub const HTTP_TIMEOUT: Duration = secs(10);
pub const HTTP_URLS: &[&str] = &["https://www.google.com/generate_204", "https://www.cloudflare.com/cdn-cgi/trace"];

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { enabled: true, interval: HTTP_INTERVAL, timeout: HTTP_TIMEOUT, urls: strings(HTTP_URLS) }
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

pub const BANDWIDTH_EVERY: Duration = secs(4 * 3600);
pub const BANDWIDTH_URL: &str = "https://speed.cloudflare.com";
pub const BANDWIDTH_STREAMS: usize = 4;
pub const BANDWIDTH_MONTHLY_BUDGET_MB: u64 = 10_000;
pub const BANDWIDTH_STEP_TARGET: Duration = secs(1);
pub const BANDWIDTH_TIMEOUT: Duration = secs(30);

impl Default for BandwidthConfig {
    fn default() -> Self {
        BandwidthConfig {
            enabled: true,
            every: BANDWIDTH_EVERY,
            server: SpeedServer::Cloudflare,
            url: BANDWIDTH_URL.into(),
            streams: BANDWIDTH_STREAMS,
            monthly_budget_mb: BANDWIDTH_MONTHLY_BUDGET_MB,
            step_target: BANDWIDTH_STEP_TARGET,
            timeout: BANDWIDTH_TIMEOUT,
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

pub const GATEWAY_INTERVAL: Duration = secs(30);
pub const GATEWAY_TIMEOUT: Duration = secs(3);
/// "auto": http://<default gateway>.
pub const GATEWAY_URL: &str = "auto";

impl Default for GatewayApiConfig {
    fn default() -> Self {
        GatewayApiConfig {
            enabled: true,
            interval: GATEWAY_INTERVAL,
            timeout: GATEWAY_TIMEOUT,
            kind: GatewayKind::Auto,
            url: GATEWAY_URL.into(),
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

pub const WEATHER_INTERVAL: Duration = secs(15 * 60);
pub const WEATHER_TIMEOUT: Duration = secs(10);

impl Default for WeatherConfig {
    fn default() -> Self {
        WeatherConfig {
            latitude: None,
            longitude: None,
            interval: WEATHER_INTERVAL,
            timeout: WEATHER_TIMEOUT,
            provider: None,
            api_key_file: None,
            url: None,
        }
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

pub const SYSLOG_LISTEN: &str = "0.0.0.0:514";
pub const SYSLOG_FALLBACK_PORT: u16 = 5514;
pub const SYSLOG_TCP_IDLE: Duration = secs(300);
pub const SYSLOG_WIFI_STORM_PER_MIN: u32 = 20;
pub const SYSLOG_ALLOW_FROM: &[&str] = &["gateway"];
pub const SYSLOG_MAX_LINES_PER_S: u32 = 20;

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            enabled: true,
            listen: SYSLOG_LISTEN.into(),
            fallback_port: SYSLOG_FALLBACK_PORT,
            tcp: false,
            tcp_idle: SYSLOG_TCP_IDLE,
            files: Vec::new(),
            wifi_storm_per_min: SYSLOG_WIFI_STORM_PER_MIN,
            allow_from: strings(SYSLOG_ALLOW_FROM),
            max_lines_per_s: SYSLOG_MAX_LINES_PER_S,
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

pub const DEVICES_INTERVAL: Duration = secs(300);

impl Default for DevicesConfig {
    fn default() -> Self {
        DevicesConfig { enabled: true, interval: DEVICES_INTERVAL }
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

pub const SYSTEM_INTERVAL: Duration = secs(60);
pub const SYSTEM_SYSFS: &str = "/sys";

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig { enabled: true, interval: SYSTEM_INTERVAL, sysfs: PathBuf::from(SYSTEM_SYSFS) }
    }
}

/// Streaming, gaming, video calls and updates on the LAN, from DNS query logs: dnsmasq
/// `log-queries` lines arriving by syslog (needs `[syslog]`), and Pi-hole's query database when
/// it is on this Pi. Only counts leave this probe: how many LAN clients are in each kind of
/// session; no site and no address is stored.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    pub enabled: bool,
    /// Pi-hole's long-term query database; read when it exists.
    pub pihole_db: PathBuf,
    /// Pi-hole 6 on another machine: its web address ("http://192.168.1.2"); empty: none.
    pub pihole_url: String,
    /// A file holding Pi-hole's (application) password, when it has one. Never logged.
    pub pihole_password_file: Option<PathBuf>,
    /// How often the counts are written (and Pi-hole's database read).
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub interval: Duration,
    /// A client is in a session until this long after its last query of that kind (apps look
    /// their servers up again every few minutes while they play).
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub gap: Duration,
}

pub const SESSIONS_PIHOLE_DB: &str = "/etc/pihole/pihole-FTL.db";
pub const SESSIONS_INTERVAL: Duration = secs(60);
pub const SESSIONS_GAP: Duration = secs(600);

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            enabled: true,
            pihole_db: PathBuf::from(SESSIONS_PIHOLE_DB),
            pihole_url: String::new(),
            pihole_password_file: None,
            interval: SESSIONS_INTERVAL,
            gap: SESSIONS_GAP,
        }
    }
}

impl SessionsConfig {
    fn check(&self, doc: &Doc) -> Result<(), ConfigError> {
        if self.interval < secs(5) {
            return Err(doc.bad("sessions", "interval", "must be at least 5s"));
        }
        if self.gap < self.interval {
            return Err(doc.bad("sessions", "gap", "must be at least the interval"));
        }
        if !self.pihole_url.is_empty()
            && !self.pihole_url.starts_with("http://")
            && !self.pihole_url.starts_with("https://")
        {
            return Err(doc.bad("sessions", "pihole_url", "must start with http:// or https://"));
        }
        Ok(())
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
    pub sessions: SessionsConfig,
}

/// "1.1.1.1", "1.1.1.1:53", "[2606:4700::1111]:53", "2606:4700::1111" -> a socket address.
pub fn parse_server(s: &str) -> Option<std::net::SocketAddr> {
    if let Ok(sa) = s.parse() {
        return Some(sa);
    }
    s.parse::<std::net::IpAddr>().ok().map(|ip| std::net::SocketAddr::new(ip, 53))
}

/// What every context probe's section has: the name `--probes` takes, an on/off switch and
/// its own checks. `ProbesConfig::sections` lists them; `probe::spawn_context` starts them.
pub trait ProbeSection {
    fn name(&self) -> &'static str;
    fn enabled(&self) -> bool;
    fn switch_off(&mut self);
    fn validate(&self, _doc: &Doc) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// The common case: a section with an `enabled` field, and maybe a `check` of its own.
macro_rules! switched_section {
    ($($ty:ty => $name:literal $(, $check:ident)?;)*) => {$(
        impl ProbeSection for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn enabled(&self) -> bool {
                self.enabled
            }
            fn switch_off(&mut self) {
                self.enabled = false;
            }
            $(fn validate(&self, doc: &Doc) -> Result<(), ConfigError> {
                self.$check(doc)
            })?
        }
    )*};
}

switched_section! {
    DnsConfig => "dns", check;
    HttpConfig => "http", check;
    BandwidthConfig => "bandwidth", check;
    GatewayApiConfig => "gateway";
    SyslogConfig => "syslog", check;
    DevicesConfig => "devices";
    SystemConfig => "system";
    SessionsConfig => "sessions", check;
}

/// Weather has no switch: it is on when a place is given.
impl ProbeSection for WeatherConfig {
    fn name(&self) -> &'static str {
        "weather"
    }
    fn enabled(&self) -> bool {
        self.latitude.is_some() && self.longitude.is_some()
    }
    fn switch_off(&mut self) {
        self.latitude = None;
        self.longitude = None;
    }
    fn validate(&self, doc: &Doc) -> Result<(), ConfigError> {
        self.check(doc)
    }
}

impl ProbesConfig {
    /// Every probe's section. A new probe adds its section here, to `file::RawConfig` and to
    /// `probe::spawn_context` (a test there checks that every section here starts).
    pub fn sections(&self) -> [&dyn ProbeSection; 9] {
        [
            &self.dns,
            &self.http,
            &self.bandwidth,
            &self.gateway_api,
            &self.weather,
            &self.syslog,
            &self.devices,
            &self.system,
            &self.sessions,
        ]
    }

    fn sections_mut(&mut self) -> [&mut dyn ProbeSection; 9] {
        [
            &mut self.dns,
            &mut self.http,
            &mut self.bandwidth,
            &mut self.gateway_api,
            &mut self.weather,
            &mut self.syslog,
            &mut self.devices,
            &mut self.system,
            &mut self.sessions,
        ]
    }

    /// The probes by name, as `--probes` takes them.
    pub fn names() -> Vec<&'static str> {
        ProbesConfig::default().sections().iter().map(|s| s.name()).collect()
    }

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
            sessions: raw.sessions.clone(),
        };
        for section in p.sections() {
            section.validate(doc)?;
        }
        if let Some(list) = &over.probes {
            let names = ProbesConfig::names();
            if let Some(bad) = list.iter().find(|n| *n != "none" && !names.contains(&n.as_str())) {
                return Err(ConfigError::Flag {
                    flag: "--probes",
                    message: format!("unknown probe `{bad}`; known: none, {}", names.join(", ")),
                });
            }
            for section in p.sections_mut() {
                if !list.iter().any(|n| n == section.name()) {
                    section.switch_off();
                }
            }
        }
        Ok(p)
    }
}

impl DnsConfig {
    fn check(&self, doc: &Doc) -> Result<(), ConfigError> {
        for server in &self.servers {
            if server != "system" && parse_server(server).is_none() {
                return Err(doc.bad("dns", "servers", format!("`{server}` is not \"system\" or ADDR[:PORT]")));
            }
        }
        Ok(())
    }
}

impl HttpConfig {
    fn check(&self, doc: &Doc) -> Result<(), ConfigError> {
        for url in &self.urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(doc.bad("http", "urls", format!("`{url}` is not an http:// or https:// URL")));
            }
        }
        Ok(())
    }
}

impl BandwidthConfig {
    fn check(&self, doc: &Doc) -> Result<(), ConfigError> {
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
    fn check(&self, doc: &Doc) -> Result<(), ConfigError> {
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
    fn check(&self, doc: &Doc) -> Result<(), ConfigError> {
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
