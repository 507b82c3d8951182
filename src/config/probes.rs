//! Settings of the context probes (`[dns]`, `[http]`, `[bandwidth]`, `[gateway_api]`,
//! `[weather]`, `[syslog]`, `[devices]`, `[system]`). Each probe can be switched off; every
//! default works on a home network without configuration, except weather (it needs a place).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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

/// The OLED on the Pi's I2C bus.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisplayConfig {
    pub enabled: bool,
    /// /dev/i2c-N.
    pub i2c_bus: u8,
    /// 0x3C on most SSD1306 boards (TOML takes `0x3C`), 0x3D on some.
    pub address: u8,
    /// Seconds each page stays up.
    pub page_seconds: u64,
    /// Local hours the screen is off (burn-in care); equal hours: never off.
    pub off_from_hour: u8,
    pub off_until_hour: u8,
    /// Minutes between one-pixel moves of the picture.
    pub shift_every_min: u32,
    /// Dim after this many minutes without a change of link state.
    pub dim_after_min: u32,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        DisplayConfig {
            enabled: true,
            i2c_bus: 1,
            address: 0x3C,
            page_seconds: 8,
            off_from_hour: 23,
            off_until_hour: 7,
            shift_every_min: 5,
            dim_after_min: 10,
        }
    }
}

/// The status LED on a GPIO pin.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedConfig {
    pub enabled: bool,
    /// BCM pin number.
    pub gpio: u8,
}

impl Default for LedConfig {
    fn default() -> Self {
        LedConfig { enabled: true, gpio: 17 }
    }
}

/// The learned detectors (see `detect::pipeline`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    pub enabled: bool,
    /// "builtin" (the models compiled in) or a folder with forecaster.onnx, autoencoder.onnx and
    /// classifier.onnx, re-read when a file changes.
    pub models: String,
    /// Learning period before the isolation forest is first fitted.
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub baseline: Duration,
    /// Target false-alarm rate on a healthy link.
    pub alarms_per_week: f64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig { enabled: true, models: "builtin".into(), baseline: secs(24 * 3600), alarms_per_week: 1.0 }
    }
}
