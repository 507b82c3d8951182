//! Settings of what goes out of the Pi: the weekly report (`[report]`), the LAN web dashboard
//! and Prometheus endpoint (`[web]`), and notifications (`[notify]`, `[notify.ntfy]`,
//! `[notify.webhook]`, `[notify.mqtt]`). Notifications are off until a destination is named.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::doc::Doc;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Write last week's report (HTML) every Monday.
    pub weekly: bool,
    /// Where weekly reports go; empty: a `reports` folder next to the database.
    pub dir: Option<PathBuf>,
    /// The plan's advertised speeds, Mbit/s, to compare speed tests against.
    pub plan_down_mbps: Option<f64>,
    pub plan_up_mbps: Option<f64>,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig { weekly: true, dir: None, plan_down_mbps: None, plan_up_mbps: None }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    pub enabled: bool,
    /// Address and port for the dashboard (/) and Prometheus (/metrics). Requests from outside
    /// private, link-local and loopback ranges are refused whatever this says.
    pub listen: String,
}

pub const WEB_LISTEN: &str = "0.0.0.0:9099";

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig { enabled: true, listen: WEB_LISTEN.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// At most one message per kind (outage, degraded, anomaly, prediction) this often; what
    /// happens in between is sent as one digest when the interval is over.
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub min_interval: Duration,
    /// Give up on a message this old (it stays in the database's event log regardless).
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub max_age: Duration,
    pub ntfy: Option<NtfyConfig>,
    pub webhook: Option<WebhookConfig>,
    pub mqtt: Option<MqttConfig>,
}

pub const NOTIFY_MIN_INTERVAL: Duration = Duration::from_secs(600);
pub const NOTIFY_MAX_AGE: Duration = Duration::from_secs(7 * 86_400);

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            min_interval: NOTIFY_MIN_INTERVAL,
            max_age: NOTIFY_MAX_AGE,
            ntfy: None,
            webhook: None,
            mqtt: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NtfyConfig {
    /// The topic URL, e.g. "https://ntfy.sh/my-family-wan".
    pub url: String,
    /// An access token for a protected topic.
    #[serde(default)]
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Receives a JSON POST per message.
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub host: String,
    #[serde(default = "mqtt_port")]
    pub port: u16,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Topic prefix for wanwatch's own topics.
    #[serde(default = "mqtt_topic")]
    pub topic: String,
    /// Home Assistant's discovery prefix.
    #[serde(default = "mqtt_discovery")]
    pub discovery_prefix: String,
}

pub const MQTT_PORT: u16 = 1883;
pub const MQTT_TOPIC: &str = "wanwatch";
pub const MQTT_DISCOVERY_PREFIX: &str = "homeassistant";

// serde's `default = "..."` takes a function, not a constant.
fn mqtt_port() -> u16 {
    MQTT_PORT
}
fn mqtt_topic() -> String {
    MQTT_TOPIC.into()
}
fn mqtt_discovery() -> String {
    MQTT_DISCOVERY_PREFIX.into()
}

impl ReportConfig {
    pub fn validate(&self, doc: &Doc) -> Result<(), ConfigError> {
        for (key, v) in [("plan_down_mbps", self.plan_down_mbps), ("plan_up_mbps", self.plan_up_mbps)] {
            if v.is_some_and(|v| !(v > 0.0 && v < 100_000.0)) {
                return Err(doc.bad("report", key, "must be a speed in Mbit/s above 0"));
            }
        }
        Ok(())
    }
}

impl WebConfig {
    pub fn validate(&self, doc: &Doc) -> Result<(), ConfigError> {
        if self.enabled && self.listen.parse::<std::net::SocketAddr>().is_err() {
            let message = format!("`{}` is not ADDRESS:PORT, e.g. \"0.0.0.0:9099\"", self.listen);
            return Err(doc.bad("web", "listen", message));
        }
        Ok(())
    }
}

impl NotifyConfig {
    pub fn validate(&self, doc: &Doc) -> Result<(), ConfigError> {
        let urls = [
            ("notify.ntfy", self.ntfy.as_ref().map(|x| &x.url)),
            ("notify.webhook", self.webhook.as_ref().map(|x| &x.url)),
        ];
        for (section, url) in urls {
            if url.is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
                return Err(doc.bad(section, "url", "must start with http:// or https://"));
            }
        }
        if self.mqtt.as_ref().is_some_and(|m| m.host.trim().is_empty()) {
            return Err(doc.bad("notify.mqtt", "host", "must name the broker"));
        }
        if self.min_interval < Duration::from_secs(1) {
            return Err(doc.bad("notify", "min_interval", "must be at least 1s"));
        }
        Ok(())
    }
}

/// `[community]`: opt-in, anonymised hourly rollups pushed to a Prometheus remote-write receiver
/// the community runs (`crate::community`). Off until the household turns it on.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommunityConfig {
    pub enabled: bool,
    /// The receiver: Prometheus `.../api/v1/write`, VictoriaMetrics `.../insert/0/prometheus/api/v1/write`, ...
    pub remote_write_url: String,
    /// Where `wanwatch community` asks (the engine's Prometheus query API base, e.g.
    /// `http://host:8481/select/0/prometheus`); empty: the write URL less `/api/v1/write`.
    pub query_url: String,
    /// A file holding a bearer token for both, if the server wants one. Never logged.
    pub bearer_token_file: Option<PathBuf>,
    /// A coarse area the household chooses (a 3-digit postcode prefix, a district).
    pub region: String,
    /// The internet provider, as the household names it ("T-Mobile").
    pub carrier: String,
    #[serde(deserialize_with = "super::duration::de", serialize_with = "super::duration::ser")]
    pub push_interval: Duration,
    /// A region is compared only with at least this many homes in it (k-anonymity).
    pub min_homes: u32,
}

pub const COMMUNITY_PUSH_INTERVAL: Duration = Duration::from_secs(3600);
pub const COMMUNITY_MIN_HOMES: u32 = 5;
pub const COMMUNITY_CARRIER: &str = "unknown";

impl Default for CommunityConfig {
    fn default() -> Self {
        CommunityConfig {
            enabled: false,
            remote_write_url: String::new(),
            query_url: String::new(),
            bearer_token_file: None,
            region: String::new(),
            carrier: COMMUNITY_CARRIER.into(),
            push_interval: COMMUNITY_PUSH_INTERVAL,
            min_homes: COMMUNITY_MIN_HOMES,
        }
    }
}

impl CommunityConfig {
    /// The query API's base URL.
    pub fn query_base(&self) -> String {
        if !self.query_url.is_empty() {
            return self.query_url.trim_end_matches('/').to_string();
        }
        self.remote_write_url.trim_end_matches('/').trim_end_matches("/api/v1/write").to_string()
    }

    pub fn validate(&self, doc: &Doc) -> Result<(), ConfigError> {
        let http = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        if !self.remote_write_url.is_empty() && !http(&self.remote_write_url) {
            return Err(doc.bad("community", "remote_write_url", "must start with http:// or https://"));
        }
        if !self.query_url.is_empty() && !http(&self.query_url) {
            return Err(doc.bad("community", "query_url", "must start with http:// or https://"));
        }
        if !self.enabled {
            return Ok(());
        }
        if self.remote_write_url.is_empty() {
            return Err(doc.bad("community", "remote_write_url", "is needed when enabled"));
        }
        if let Err(why) = crate::community::labels::check_region(&self.region) {
            return Err(doc.bad("community", "region", why));
        }
        if let Err(why) = crate::community::labels::check_carrier(&self.carrier) {
            return Err(doc.bad("community", "carrier", why));
        }
        if self.push_interval < Duration::from_secs(60) {
            return Err(doc.bad("community", "push_interval", "must be at least 1m"));
        }
        if self.min_homes < 2 {
            return Err(doc.bad("community", "min_homes", "must be at least 2"));
        }
        Ok(())
    }
}
