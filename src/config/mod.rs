//! Configuration: the TOML file and the command line merged into one validated [`Config`].
//!
//! Two levels, as in ripgrep: `file::RawConfig` is what the user wrote (all optional, spans
//! kept), [`Config`] is what the agent runs on (complete and checked). Every error names the
//! file, the line and the field.

pub mod duration;
pub mod file;
pub mod outputs;
pub mod probes;
pub mod route;
pub mod show;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::sample::{Role, Target};
use file::RawConfig;

/// Where the packaged agent looks for its configuration.
pub const SYSTEM_CONFIG: &str = "/etc/wanwatch/wanwatch.toml";
/// Where the packaged agent keeps its database (systemd's StateDirectory=wanwatch).
pub const SYSTEM_DB: &str = "/var/lib/wanwatch/wanwatch.db";

/// Public anchors: three independent anycast resolvers, so one provider's trouble is not
/// mistaken for the household's internet going down.
pub const DEFAULT_ANCHORS_V4: [(&str, &str); 3] =
    [("cloudflare", "1.1.1.1"), ("google", "8.8.8.8"), ("quad9", "9.9.9.9")];
pub const DEFAULT_ANCHORS_V6: [(&str, &str); 3] =
    [("cloudflare6", "2606:4700:4700::1111"), ("google6", "2001:4860:4860::8888"), ("quad96", "2620:fe::fe")];

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

/// One probed host with its own schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct PingTarget {
    pub target: Target,
    pub interval: Duration,
    pub timeout: Duration,
    /// Interface for a link-local IPv6 gateway (`fe80::1%eth0`).
    pub iface: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    /// Consecutive lost probes before a target counts as down.
    pub down_after: u32,
    /// Sliding window for loss and latency when judging "degraded".
    pub window: Duration,
    /// Loss ratio (0-1) over the window above which the link is degraded.
    pub degraded_loss: f64,
    /// Median anchor RTT over the window above which the link is degraded.
    pub degraded_rtt_ms: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub flush_interval: Duration,
    pub raw_retention_days: u32,
    pub rollup_retention_days: u32,
    pub max_db_bytes: u64,
    pub journal_size_limit_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub db: PathBuf,
    pub targets: Vec<PingTarget>,
    pub state: StateConfig,
    pub store: StoreConfig,
    /// The context probes, with those not to run switched off.
    pub probes: probes::ProbesConfig,
    pub display: probes::DisplayConfig,
    pub led: probes::LedConfig,
    pub detect: probes::DetectConfig,
    pub report: outputs::ReportConfig,
    pub web: outputs::WebConfig,
    pub notify: outputs::NotifyConfig,
    /// Where the configuration came from, for `wanwatch config` and logs.
    pub source: String,
}

/// The context probes by name, as `--probes` takes them.
pub const PROBE_NAMES: [&str; 8] = ["dns", "http", "bandwidth", "gateway", "weather", "syslog", "devices", "system"];

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
    let (text, source) = match path {
        Some(p) => (read(p)?, p.to_path_buf()),
        None if Path::new(SYSTEM_CONFIG).exists() => (read(Path::new(SYSTEM_CONFIG))?, PathBuf::from(SYSTEM_CONFIG)),
        None => (String::new(), PathBuf::from("(built-in defaults)")),
    };
    from_str(&text, &source, over, &route::system_gateways())
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|err| ConfigError::Read { path: path.to_path_buf(), err })
}

/// Parse and validate `text`; `gateways` are the system's default gateways (for "auto").
pub fn from_str(text: &str, path: &Path, over: &Overrides, gateways: &[route::Gateway]) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text)
        .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string().trim_end().to_string() })?;
    Builder { text, path }.build(raw, over, gateways)
}

struct Builder<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Builder<'_> {
    fn invalid<T>(&self, value: &Spanned<T>, field: &str, message: impl fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self.line_at(value.span().start),
            field: field.to_string(),
            message: message.to_string(),
        }
    }

    fn duration_in(
        &self,
        v: &Option<Spanned<Duration>>,
        field: &str,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let d = *v.get_ref();
        if d < min || d > max {
            let (lo, hi) = (humantime::format_duration(min), humantime::format_duration(max));
            return Err(self.invalid(v, field, format!("must be between {lo} and {hi}")));
        }
        Ok(d)
    }

    fn number_in<T: Copy + PartialOrd + fmt::Display>(
        &self,
        v: &Option<Spanned<T>>,
        field: &str,
        default: T,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let x = *v.get_ref();
        // Written so that NaN fails too.
        if !(x >= min && x <= max) {
            return Err(self.invalid(v, field, format!("must be between {min} and {max}, not {x}")));
        }
        Ok(x)
    }

    fn build(&self, raw: RawConfig, over: &Overrides, gateways: &[route::Gateway]) -> Result<Config, ConfigError> {
        const MS: Duration = Duration::from_millis(1);
        const HOUR: Duration = Duration::from_secs(3600);
        let p = &raw.ping;
        let mut interval = self.duration_in(&p.interval, "ping.interval", Duration::from_secs(1), 10 * MS, HOUR)?;
        let mut timeout =
            self.duration_in(&p.timeout, "ping.timeout", Duration::from_secs(2), 10 * MS, 60 * 1000 * MS)?;
        if let Some(i) = over.interval {
            check_flag("--interval", i, 10 * MS, HOUR)?;
            interval = i;
        }
        if let Some(t) = over.timeout {
            check_flag("--timeout", t, 10 * MS, 60 * 1000 * MS)?;
            timeout = t;
        }

        let mut targets = Vec::new();
        let mut add = |t: PingTarget| {
            if !targets.iter().any(|o: &PingTarget| o.target.addr == t.target.addr) {
                targets.push(t);
            }
        };

        // Gateway: "auto" (default), "none" or an address.
        let gateway_choice = match (&over.gateway, &p.gateway) {
            (Some(g), _) => GatewayChoice::parse(g).map_err(|m| ConfigError::Flag { flag: "--gateway", message: m })?,
            (None, Some(g)) => GatewayChoice::parse(g.get_ref()).map_err(|m| self.invalid(g, "ping.gateway", m))?,
            (None, None) => GatewayChoice::Auto,
        };
        match gateway_choice {
            GatewayChoice::None => {}
            GatewayChoice::Addr(addr) => add(simple(addr, Role::Gateway, "gateway", interval, timeout, None)),
            GatewayChoice::Auto => {
                for gw in gateways {
                    let name = if gw.addr.is_ipv4() { "gateway" } else { "gateway6" };
                    let iface = gw.addr.is_ipv6().then(|| gw.iface.clone());
                    add(simple(gw.addr, Role::Gateway, name, interval, timeout, iface));
                }
            }
        }

        if !over.targets.is_empty() {
            for addr in &over.targets {
                add(simple(*addr, Role::Anchor, &addr.to_string(), interval, timeout, None));
            }
        } else {
            match &p.anchors {
                Some(list) => {
                    for addr in list {
                        add(simple(*addr, Role::Anchor, &addr.to_string(), interval, timeout, None));
                    }
                }
                None => {
                    let have_v6 = gateways.iter().any(|g| g.addr.is_ipv6());
                    let v6 = DEFAULT_ANCHORS_V6.iter().filter(|_| have_v6);
                    for (name, addr) in DEFAULT_ANCHORS_V4.iter().chain(v6) {
                        add(simple(
                            addr.parse().expect("built-in address"),
                            Role::Anchor,
                            name,
                            interval,
                            timeout,
                            None,
                        ));
                    }
                }
            }
            for t in &p.target {
                let role = match &t.role {
                    None => Role::Anchor,
                    Some(r) => Role::parse(r.get_ref())
                        .ok_or_else(|| self.invalid(r, "ping.target.role", "must be \"gateway\" or \"anchor\""))?,
                };
                let t_interval = self.duration_in(&t.interval, "ping.target.interval", interval, 10 * MS, HOUR)?;
                let t_timeout =
                    self.duration_in(&t.timeout, "ping.target.timeout", timeout, 10 * MS, 60 * 1000 * MS)?;
                let name = t.name.clone().unwrap_or_else(|| t.addr.to_string());
                add(simple(t.addr, role, &name, t_interval, t_timeout, t.iface.clone()));
            }
        }
        if !targets.iter().any(|t| t.target.role == Role::Anchor) {
            return Err(ConfigError::Parse {
                path: self.path.to_path_buf(),
                message: "no internet anchor to ping: list at least one in ping.anchors or ping.target".into(),
            });
        }

        let s = &raw.state;
        let state = StateConfig {
            down_after: self.number_in(&s.down_after, "state.down_after", 3, 1, 1000)?,
            window: self.duration_in(
                &s.window,
                "state.window",
                Duration::from_secs(60),
                Duration::from_secs(5),
                HOUR,
            )?,
            degraded_loss: self.number_in(&s.degraded_loss, "state.degraded_loss", 0.05, 0.0, 1.0)?,
            degraded_rtt_ms: self.number_in(&s.degraded_rtt_ms, "state.degraded_rtt_ms", 150.0, 1.0, 60_000.0)?,
        };

        let st = &raw.store;
        let mut flush_interval =
            self.duration_in(&st.flush_interval, "store.flush_interval", Duration::from_secs(60), 100 * MS, HOUR)?;
        if let Some(f) = over.flush_interval {
            check_flag("--flush-interval", f, 100 * MS, HOUR)?;
            flush_interval = f;
        }
        let raw_days = self.number_in(&st.raw_retention_days, "store.raw_retention_days", 90, 1, 3650)?;
        let rollup_days = self.number_in(&st.rollup_retention_days, "store.rollup_retention_days", 1095, 1, 36500)?;
        if rollup_days < raw_days {
            let at = st.rollup_retention_days.as_ref().expect("set, since it differs from the default");
            return Err(self.invalid(at, "store.rollup_retention_days", format!(
                "must be at least store.raw_retention_days ({raw_days}): rollups are what remains after raw samples expire"
            )));
        }
        let store = StoreConfig {
            flush_interval,
            raw_retention_days: raw_days,
            rollup_retention_days: rollup_days,
            max_db_bytes: self.number_in(&st.max_db_mb, "store.max_db_mb", 4096, 16, 1 << 20)? << 20,
            journal_size_limit_bytes: self.number_in(
                &st.journal_size_limit_mb,
                "store.journal_size_limit_mb",
                16,
                1,
                1024,
            )? << 20,
        };

        let probes = self.probes(&raw, over)?;
        let db = over.db.clone().or_else(|| raw.db.as_ref().map(PathBuf::from)).unwrap_or_else(default_db);
        if raw.display.off_from_hour > 23 || raw.display.off_until_hour > 23 {
            return Err(self.bad("display", "off_from_hour", "hours are 0-23"));
        }
        if raw.led.gpio > 27 {
            return Err(self.bad("led", "gpio", "the Pi's header has GPIO 0-27"));
        }
        if !(raw.detect.alarms_per_week > 0.0 && raw.detect.alarms_per_week <= 1000.0) {
            return Err(self.bad("detect", "alarms_per_week", "must be above 0 and at most 1000"));
        }
        for (key, v) in [("plan_down_mbps", raw.report.plan_down_mbps), ("plan_up_mbps", raw.report.plan_up_mbps)] {
            if v.is_some_and(|v| !(v > 0.0 && v < 100_000.0)) {
                return Err(self.bad("report", key, "must be a speed in Mbit/s above 0"));
            }
        }
        if raw.web.enabled && raw.web.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(self.bad(
                "web",
                "listen",
                format!("`{}` is not ADDRESS:PORT, e.g. \"0.0.0.0:9099\"", raw.web.listen),
            ));
        }
        let n = &raw.notify;
        for (section, url) in
            [("notify.ntfy", n.ntfy.as_ref().map(|x| &x.url)), ("notify.webhook", n.webhook.as_ref().map(|x| &x.url))]
        {
            if url.is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
                return Err(self.bad(section, "url", "must start with http:// or https://"));
            }
        }
        if n.mqtt.as_ref().is_some_and(|m| m.host.trim().is_empty()) {
            return Err(self.bad("notify.mqtt", "host", "must name the broker"));
        }
        if n.min_interval < std::time::Duration::from_secs(1) {
            return Err(self.bad("notify", "min_interval", "must be at least 1s"));
        }
        let (display, led, detect) = (raw.display.clone(), raw.led.clone(), raw.detect.clone());
        let (report, web, notify) = (raw.report.clone(), raw.web.clone(), raw.notify.clone());
        Ok(Config {
            db,
            targets,
            state,
            store,
            probes,
            display,
            led,
            detect,
            report,
            web,
            notify,
            source: self.path.display().to_string(),
        })
    }

    /// The line of `section.key` as the file wrote it (a `[section]` header, an inline table
    /// or a dotted key alike), from the parser's spans; the deepest part found when the key
    /// itself is absent (an error about a missing partner names the section).
    fn line_of(&self, section: &str, key: &str) -> usize {
        let Ok(doc) = toml::de::DeTable::parse(self.text) else { return 1 };
        let mut table = doc.get_ref();
        let mut at = 0;
        for part in section.split('.').chain([key]) {
            let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == part) else { break };
            at = k.span().start;
            match v.get_ref() {
                toml::de::DeValue::Table(t) => table = t,
                _ => break,
            }
        }
        self.line_at(at)
    }

    fn line_at(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }

    fn bad(&self, section: &str, key: &str, message: impl fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self.line_of(section, key),
            field: format!("{section}.{key}"),
            message: message.to_string(),
        }
    }

    fn probes(&self, raw: &RawConfig, over: &Overrides) -> Result<probes::ProbesConfig, ConfigError> {
        let mut p = probes::ProbesConfig {
            dns: raw.dns.clone(),
            http: raw.http.clone(),
            bandwidth: raw.bandwidth.clone(),
            gateway_api: raw.gateway_api.clone(),
            weather: raw.weather.clone(),
            syslog: raw.syslog.clone(),
            devices: raw.devices.clone(),
            system: raw.system.clone(),
        };
        for server in &p.dns.servers {
            if server != "system" && probes::parse_server(server).is_none() {
                return Err(self.bad("dns", "servers", format!("`{server}` is not \"system\" or ADDR[:PORT]")));
            }
        }
        for url in &p.http.urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(self.bad("http", "urls", format!("`{url}` is not an http:// or https:// URL")));
            }
        }
        if !(1..=8).contains(&p.bandwidth.streams) {
            return Err(self.bad("bandwidth", "streams", "must be between 1 and 8"));
        }
        if p.bandwidth.every < Duration::from_secs(60) {
            return Err(self.bad("bandwidth", "every", "must be at least 1m (a speed test is heavy)"));
        }
        let w = &p.weather;
        if w.latitude.is_some() != w.longitude.is_some() {
            return Err(self.bad("weather", "latitude", "give both latitude and longitude"));
        }
        if w.latitude.is_some_and(|l| !(-90.0..=90.0).contains(&l)) {
            return Err(self.bad("weather", "latitude", "must be between -90 and 90"));
        }
        if w.longitude.is_some_and(|l| !(-180.0..=180.0).contains(&l)) {
            return Err(self.bad("weather", "longitude", "must be between -180 and 180"));
        }
        if w.provider == Some(probes::WeatherProvider::Openweather) && w.api_key_file.is_none() {
            return Err(self.bad("weather", "provider", "openweather needs api_key_file"));
        }
        if p.syslog.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(self.bad("syslog", "listen", format!("`{}` is not ADDR:PORT", p.syslog.listen)));
        }
        if let Err(e) = crate::probe::syslog::Admit::new(&p.syslog.allow_from, &[]) {
            return Err(self.bad("syslog", "allow_from", e));
        }
        if p.syslog.max_lines_per_s == 0 {
            return Err(self.bad("syslog", "max_lines_per_s", "must be at least 1"));
        }
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

fn check_flag(flag: &'static str, d: Duration, min: Duration, max: Duration) -> Result<(), ConfigError> {
    if d < min || d > max {
        let (lo, hi) = (humantime::format_duration(min), humantime::format_duration(max));
        return Err(ConfigError::Flag { flag, message: format!("must be between {lo} and {hi}") });
    }
    Ok(())
}

enum GatewayChoice {
    Auto,
    None,
    Addr(IpAddr),
}

impl GatewayChoice {
    fn parse(s: &str) -> Result<GatewayChoice, String> {
        match s {
            "auto" => Ok(GatewayChoice::Auto),
            "none" => Ok(GatewayChoice::None),
            other => other
                .parse()
                .map(GatewayChoice::Addr)
                .map_err(|_| format!("`{other}` is not \"auto\", \"none\" or an IP address")),
        }
    }
}

fn simple(
    addr: IpAddr,
    role: Role,
    name: &str,
    interval: Duration,
    timeout: Duration,
    iface: Option<String>,
) -> PingTarget {
    PingTarget { target: Target { addr, role, name: name.to_string() }, interval, timeout, iface }
}

#[cfg(test)]
mod tests {
    use super::*;

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
