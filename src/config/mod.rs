//! Configuration: the TOML file and the command line merged into one validated [`Config`].
//!
//! Two levels, as in ripgrep: `file::RawConfig` is what the user wrote (all optional, spans
//! kept), [`Config`] is what the agent runs on (complete and checked). Every error names the
//! file, the line and the field.

pub mod detect;
pub mod doc;
pub mod duration;
pub mod file;
pub mod outputs;
pub mod panel;
pub mod ping;
pub mod probes;
pub mod route;
pub mod show;
pub mod state;
pub mod store;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use doc::Doc;
use file::RawConfig;
pub use ping::PingTarget;
pub use state::StateConfig;
pub use store::StoreConfig;

/// Where the packaged agent looks for its configuration.
pub const SYSTEM_CONFIG: &str = "/etc/wanwatch/wanwatch.toml";
/// Where the packaged agent keeps its database (systemd's StateDirectory=wanwatch).
pub const SYSTEM_DB: &str = "/var/lib/wanwatch/wanwatch.db";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}, line {line}: field `{field}`: {message}")]
    Invalid { path: PathBuf, line: usize, field: String, message: String },
    #[error("{flag}: {message}")]
    Flag { flag: &'static str, message: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub db: PathBuf,
    pub targets: Vec<PingTarget>,
    pub state: StateConfig,
    pub store: StoreConfig,
    /// The context probes, with those not to run switched off.
    pub probes: probes::ProbesConfig,
    pub display: panel::DisplayConfig,
    pub led: panel::LedConfig,
    pub detect: detect::DetectConfig,
    pub report: outputs::ReportConfig,
    pub web: outputs::WebConfig,
    pub notify: outputs::NotifyConfig,
    pub community: outputs::CommunityConfig,
    /// Where the configuration came from, for `wanwatch config` and logs.
    pub source: String,
    /// The file it was read from (None: built-in defaults); the set-up page rewrites it.
    pub file: Option<PathBuf>,
}

/// What the command line can override.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub db: Option<PathBuf>,
    /// Replaces the anchors (and file targets) when non-empty.
    pub targets: Vec<IpAddr>,
    /// "auto", "none" or an address.
    pub gateway: Option<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub flush_interval: Option<Duration>,
    /// Which context probes to run (`--probes dns,http` or `--probes none`); None: as configured.
    pub probes: Option<Vec<String>>,
}

/// The database path when neither the file nor the command line names one: the systemd state
/// directory when run as a service, the system database when it exists (so `wanwatch status`
/// over ssh finds it), else `./wanwatch.db`.
pub fn default_db() -> PathBuf {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY") {
        // systemd may pass several directories separated by ':'; ours is the first.
        let first = dir.to_string_lossy().split(':').next().unwrap_or_default().to_string();
        return Path::new(&first).join("wanwatch.db");
    }
    if Path::new(SYSTEM_DB).exists() {
        return PathBuf::from(SYSTEM_DB);
    }
    PathBuf::from("wanwatch.db")
}

/// Load the configuration: `path` if given (it must exist), else the system file if present,
/// else built-in defaults; then apply the command line.
pub fn load(path: Option<&Path>, over: &Overrides) -> Result<Config, ConfigError> {
    let (text, source, file) = match path {
        Some(p) => (read(p)?, p.to_path_buf(), true),
        None if Path::new(SYSTEM_CONFIG).exists() => {
            (read(Path::new(SYSTEM_CONFIG))?, PathBuf::from(SYSTEM_CONFIG), true)
        }
        None => (String::new(), PathBuf::from("(built-in defaults)"), false),
    };
    let mut cfg = from_str(&text, &source, over, &route::system_gateways())?;
    cfg.file = file.then_some(source);
    Ok(cfg)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|err| ConfigError::Read { path: path.to_path_buf(), err })
}

/// Parse and validate `text`; `gateways` are the system's default gateways (for "auto").
pub fn from_str(text: &str, path: &Path, over: &Overrides, gateways: &[route::Gateway]) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text)
        .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string().trim_end().to_string() })?;
    let doc = Doc { text, path };
    // Each section builds and checks itself; the order is the order errors are found in.
    let targets = ping::targets(&raw.ping, over, gateways, &doc)?;
    let state = StateConfig::from_raw(&raw.state, &doc)?;
    let store = StoreConfig::from_raw(&raw.store, over, &doc)?;
    let probes = probes::ProbesConfig::from_raw(&raw, over, &doc)?;
    raw.display.validate(&doc)?;
    raw.led.validate(&doc)?;
    raw.detect.validate(&doc)?;
    raw.report.validate(&doc)?;
    raw.web.validate(&doc)?;
    raw.notify.validate(&doc)?;
    raw.community.validate(&doc)?;
    Ok(Config {
        db: over.db.clone().or_else(|| raw.db.as_ref().map(PathBuf::from)).unwrap_or_else(default_db),
        targets,
        state,
        store,
        probes,
        display: raw.display,
        led: raw.led,
        detect: raw.detect,
        report: raw.report,
        web: raw.web,
        notify: raw.notify,
        community: raw.community,
        source: path.display().to_string(),
        file: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Role;

    fn gw4() -> Vec<route::Gateway> {
        vec![route::Gateway { addr: "192.168.12.1".parse().unwrap(), iface: "eth0".into() }]
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        from_str(text, Path::new("/etc/wanwatch/wanwatch.toml"), &Overrides::default(), &gw4())
    }

    fn err(text: &str) -> String {
        parse(text).expect_err("should fail").to_string()
    }

    #[test]
    fn defaults_ping_gateway_and_three_anchors() {
        let c = parse("").unwrap();
        let addrs: Vec<String> = c.targets.iter().map(|t| t.target.addr.to_string()).collect();
        assert_eq!(addrs, ["192.168.12.1", "1.1.1.1", "8.8.8.8", "9.9.9.9"]);
        assert_eq!(c.targets[0].target.role, Role::Gateway);
        assert!(c.targets.iter().all(|t| t.interval == Duration::from_secs(1)));
        assert_eq!(c.store.flush_interval, Duration::from_secs(60));
    }

    #[test]
    fn ipv6_anchors_only_with_an_ipv6_route() {
        let mut gws = gw4();
        gws.push(route::Gateway { addr: "fe80::1".parse().unwrap(), iface: "eth0".into() });
        let c = from_str("", Path::new("x"), &Overrides::default(), &gws).unwrap();
        assert_eq!(c.targets.len(), 8);
        let gw6 = c.targets.iter().find(|t| t.target.name == "gateway6").unwrap();
        assert_eq!(gw6.iface.as_deref(), Some("eth0"));
    }

    #[test]
    fn cli_overrides_the_file() {
        let text = "[ping]\ninterval = \"5s\"\nanchors = [\"9.9.9.9\"]\n";
        let over = Overrides {
            targets: vec!["198.19.0.1".parse().unwrap()],
            gateway: Some("none".into()),
            interval: Some(Duration::from_millis(200)),
            db: Some("x.db".into()),
            ..Overrides::default()
        };
        let c = from_str(text, Path::new("f.toml"), &over, &gw4()).unwrap();
        assert_eq!(c.targets.len(), 1);
        assert_eq!(c.targets[0].target.addr.to_string(), "198.19.0.1");
        assert_eq!(c.targets[0].interval, Duration::from_millis(200));
        assert_eq!(c.db, PathBuf::from("x.db"));
    }

    #[test]
    fn per_target_settings() {
        let text = "[ping]\ngateway = \"none\"\n[[ping.target]]\naddr = \"192.168.12.1\"\nname = \"5g\"\nrole = \"gateway\"\ninterval = \"5s\"\n";
        let c = parse(text).unwrap();
        let t = c.targets.iter().find(|t| t.target.name == "5g").unwrap();
        assert_eq!(t.target.role, Role::Gateway);
        assert_eq!(t.interval, Duration::from_secs(5));
    }

    // Table of broken files: each error must name the file, the line and the field.
    #[test]
    fn errors_name_file_line_and_field() {
        let cases: &[(&str, &[&str])] = &[
            ("[ping]\nintervl = \"1s\"\n", &["wanwatch.toml", "line 2", "intervl", "interval"]),
            ("[ping]\ninterval = \"fast\"\n", &["line 2", "fast", "not a duration"]),
            ("[ping]\n\ninterval = \"1ms\"\n", &["line 3", "ping.interval", "between 10ms"]),
            ("[ping]\nanchors = [\"1.1.1.1\", \"one.one\"]\n", &["line 2", "invalid IP address"]),
            ("[ping]\ngateway = \"router\"\n", &["line 2", "ping.gateway", "router"]),
            ("[state]\ndegraded_loss = 5\n", &["line 2", "state.degraded_loss", "between 0 and 1"]),
            ("[state]\ndegraded_loss = nan\n", &["line 2", "state.degraded_loss"]),
            (
                "[store]\nraw_retention_days = 90\nrollup_retention_days = 30\n",
                &["line 3", "store.rollup_retention_days"],
            ),
            ("[[ping.target]]\naddr = \"10.0.0.1\"\nrole = \"router\"\n", &["line 3", "ping.target.role"]),
            ("[ping]\nanchors = []\n", &["no internet anchor"]),
            ("[ping\n", &["line 1"]),
            ("db = 5\n", &["line 1", "db"]),
            ("[dns]\nservers = [\"system\", \"not-an-ip\"]\n", &["line 2", "dns.servers", "not-an-ip"]),
            ("[http]\n\nurls = [\"ftp://x\"]\n", &["line 3", "http.urls"]),
            ("[bandwidth]\nstreams = 40\n", &["line 2", "bandwidth.streams"]),
            ("[bandwidth]\nserver = \"ookla\"\n", &["line 2", "ookla"]),
            ("[weather]\nlatitude = 41.0\n", &["weather.latitude", "both"]),
            ("[weather]\nlatitude = 141.0\nlongitude = 0.0\n", &["line 2", "weather.latitude"]),
            ("[weather]\nprovider = \"openweather\"\n", &["line 2", "api_key_file"]),
            ("[syslog]\nlisten = \"514\"\n", &["line 2", "syslog.listen"]),
            ("[system]\nintervall = \"1s\"\n", &["line 2", "intervall"]),
            // Every section's own checks name their line, however the file spells the section.
            ("[bandwidth]\n\nevery = \"30s\"\n", &["line 3", "bandwidth.every", "at least 1m"]),
            ("[weather]\nlatitude = 0.0\n# west\nlongitude = 200.0\n", &["line 4", "weather.longitude"]),
            ("[syslog]\nallow_from = [\"lan\", \"10.0.0.0/33\"]\n", &["line 2", "syslog.allow_from"]),
            ("[syslog]\n\nmax_lines_per_s = 0\n", &["line 3", "syslog.max_lines_per_s"]),
            ("[display]\nenabled = true\noff_from_hour = 25\n", &["line 3", "display.off_from_hour", "0-23"]),
            ("[led]\n\ngpio = 40\n", &["line 3", "led.gpio", "0-27"]),
            ("[detect]\nalarms_per_week = 0.0\n", &["line 2", "detect.alarms_per_week"]),
            ("[report]\nplan_down_mbps = 300.0\nplan_up_mbps = -1.0\n", &["line 3", "report.plan_up_mbps"]),
            ("[web]\nenabled = true\n\nlisten = \"9099\"\n", &["line 4", "web.listen", "ADDRESS:PORT"]),
            ("[notify]\nmin_interval = \"100ms\"\n", &["line 2", "notify.min_interval", "at least 1s"]),
            ("[notify.ntfy]\n\nurl = \"ftp://x\"\n", &["line 3", "notify.ntfy.url", "http://"]),
            ("[notify]\n\nntfy = { url = \"ftp://x\" }\n", &["line 3", "notify.ntfy.url"]),
            ("\n\nnotify.webhook.url = \"x\"\n", &["line 3", "notify.webhook.url"]),
            ("[notify.mqtt]\nport = 1883\nhost = \" \"\n", &["line 3", "notify.mqtt.host"]),
        ];
        for (text, needles) in cases {
            let e = err(text);
            for n in *needles {
                assert!(e.contains(n), "error for {text:?} should mention {n:?}, got:\n{e}");
            }
        }
    }

    #[test]
    fn example_file_is_valid_and_documents_every_field() {
        let text = include_str!("../../wanwatch.example.toml");
        parse(text).expect("example config parses");
        // Uncommenting every setting must still parse, and every field must appear.
        let uncommented: String = text
            .lines()
            .map(|l| l.strip_prefix("# ").filter(|r| r.contains(" = ") || r.starts_with("[")).unwrap_or(l))
            .map(|l| format!("{l}\n"))
            .collect();
        parse(&uncommented).expect("example config with every setting uncommented parses");
        for field in [
            "db",
            "interval",
            "timeout",
            "gateway",
            "anchors",
            "tcp_port",
            "[[ping.target]]",
            "addr",
            "name",
            "role",
            "down_after",
            "window",
            "degraded_loss",
            "degraded_rtt_ms",
            "flush_interval",
            "raw_retention_days",
            "rollup_retention_days",
            "max_db_mb",
            "journal_size_limit_mb",
            "[dns]",
            "names",
            "servers",
            "[http]",
            "urls",
            "[bandwidth]",
            "every",
            "server",
            "url",
            "streams",
            "monthly_budget_mb",
            "step_target",
            "[gateway_api]",
            "kind",
            "[weather]",
            "latitude",
            "longitude",
            "provider",
            "api_key_file",
            "[syslog]",
            "listen",
            "fallback_port",
            "tcp",
            "files",
            "wifi_storm_per_min",
            "[devices]",
            "[system]",
            "sysfs",
            "enabled",
            "[display]",
            "i2c_bus",
            "address",
            "page_seconds",
            "off_from_hour",
            "off_until_hour",
            "shift_every_min",
            "dim_after_min",
            "[led]",
            "gpio",
        ] {
            assert!(text.contains(field), "example config does not document `{field}`");
        }
    }
}
