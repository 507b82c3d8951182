//! MQTT with Home Assistant discovery: retained config topics so the sensors appear by
//! themselves, an availability topic (a last will says "offline" if the Pi dies), the link's
//! state and figures published on change and every minute, and each message on an event topic.
//!
//! Driven from the notifier's loop (`poll`), not a thread of its own: rumqttc's event loop only
//! moves when polled, and one loop owning both the queue and the connection keeps delivery
//! simple to reason about.

use std::time::{Duration, Instant};

use rumqttc::{Client, Connection, Event, LastWill, MqttOptions, Packet, QoS, RecvTimeoutError};
use serde_json::json;

use super::limit::Note;
use crate::config::outputs::MqttConfig;

/// The values published as sensors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Figures {
    pub state: String,
    pub latency_ms: Option<f64>,
    pub loss_pct: Option<f64>,
    pub outages_24h: i64,
}

pub struct Mqtt {
    cfg: MqttConfig,
    node: String,
    client: Client,
    conn: Connection,
    connected: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
    last_error: Option<String>,
}

fn node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let id: String =
        host.trim().chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    if id.is_empty() { "wanwatch".into() } else { id }
}

impl Mqtt {
    pub fn new(cfg: &MqttConfig) -> Mqtt {
        let node = node_id();
        let mut opts = MqttOptions::new(format!("wanwatch-{node}"), cfg.host.clone(), cfg.port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_last_will(LastWill::new(format!("{}/availability", cfg.topic), "offline", QoS::AtLeastOnce, true));
        if let Some(user) = &cfg.username {
            opts.set_credentials(user.clone(), cfg.password.clone().unwrap_or_default());
        }
        let (client, conn) = Client::new(opts, 64);
        Mqtt {
            cfg: cfg.clone(),
            node,
            client,
            conn,
            connected: false,
            retry_at: None,
            backoff: Duration::from_secs(2),
            last_error: None,
        }
    }

    pub fn connected(&self) -> bool {
        self.connected
    }

    /// Move the connection along for up to `budget`: connect, send what is queued, read acks.
    pub fn poll(&mut self, budget: Duration) {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let end = Instant::now() + budget;
        while Instant::now() < end {
            match self.conn.recv_timeout(Duration::from_millis(20)) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                    self.connected = true;
                    self.backoff = Duration::from_secs(2);
                    self.retry_at = None;
                    if self.last_error.take().is_some() {
                        tracing::info!("mqtt: connected to {}:{} again", self.cfg.host, self.cfg.port);
                    }
                    self.announce();
                }
                Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) => {
                    self.connected = false;
                    return;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    self.connected = false;
                    let why = e.to_string();
                    if self.last_error.as_deref() != Some(&why) {
                        tracing::warn!("mqtt: {}:{}: {why}; retrying", self.cfg.host, self.cfg.port);
                    }
                    self.last_error = Some(why);
                    // The next poll reconnects; wait first so a dead broker is not hammered.
                    self.retry_at = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(60));
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn topic(&self, leaf: &str) -> String {
        format!("{}/{leaf}", self.cfg.topic)
    }

    fn publish(&self, topic: String, retain: bool, payload: String) -> bool {
        self.client.try_publish(topic, QoS::AtLeastOnce, retain, payload.into_bytes()).is_ok()
    }

    /// Home Assistant discovery (retained) and "online", at every (re)connect.
    fn announce(&self) {
        let device = json!({
            "identifiers": [format!("wanwatch_{}", self.node)],
            "name": format!("wanwatch {}", self.node),
            "manufacturer": "wanwatch",
            "model": "Raspberry Pi internet watchdog",
            "sw_version": env!("CARGO_PKG_VERSION"),
        });
        let avail = self.topic("availability");
        // `default_entity_id` (domain included) replaces the deprecated `object_id`.
        let base = |component: &str, key: &str, name: &str| {
            json!({
                "name": name,
                "unique_id": format!("wanwatch_{}_{key}", self.node),
                "default_entity_id": format!("{component}.wanwatch_{key}"),
                "availability_topic": avail,
                "device": device,
            })
        };
        // (component, key, name, state topic leaf, what Home Assistant needs to know of it)
        let sensors = [
            (
                "binary_sensor",
                "internet",
                "Internet",
                "internet",
                json!({"device_class": "connectivity", "payload_on": "ON", "payload_off": "OFF"}),
            ),
            (
                "sensor",
                "state",
                "Link state",
                "state",
                json!({"device_class": "enum", "options": ["up", "degraded", "lan_down", "wan_down", "unknown"]}),
            ),
            (
                "sensor",
                "latency",
                "Internet latency",
                "latency_ms",
                json!({"device_class": "duration", "unit_of_measurement": "ms", "state_class": "measurement"}),
            ),
            (
                "sensor",
                "loss",
                "Packet loss",
                "loss_pct",
                json!({"unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:lan-disconnect"}),
            ),
            (
                "sensor",
                "outages_24h",
                "Internet outages (24 h)",
                "outages_24h",
                json!({"state_class": "measurement", "icon": "mdi:web-off"}),
            ),
            (
                "sensor",
                "last_event",
                "Last alert",
                "event",
                json!({"value_template": "{{ value_json.title[:250] }}", "json_attributes_topic": self.topic("event")}),
            ),
        ];
        let mut configs = Vec::new();
        for (component, key, name, leaf, extra) in sensors {
            let mut config = base(component, key, name);
            config["state_topic"] = json!(self.topic(leaf));
            for (k, v) in extra.as_object().expect("an object") {
                config[k] = v.clone();
            }
            configs.push((component, key, config));
        }
        for (component, key, config) in configs {
            let topic = format!("{}/{component}/wanwatch_{}/{key}/config", self.cfg.discovery_prefix, self.node);
            self.publish(topic, true, config.to_string());
        }
        self.publish(avail, true, "online".into());
    }

    /// The sensors' values (retained, so Home Assistant has them after its own restart).
    pub fn figures(&self, f: &Figures) -> bool {
        if !self.connected {
            return false;
        }
        // "None" is Home Assistant's word for unknown: a numeric sensor refuses the string
        // "unknown", and a connectivity sensor must not read "disconnected" before anything
        // is known.
        let num = |v: Option<f64>| v.map_or("None".to_string(), |v| format!("{v:.2}"));
        let internet = match f.state.as_str() {
            "up" | "degraded" => "ON",
            "lan_down" | "wan_down" => "OFF",
            _ => "None",
        };
        self.publish(self.topic("state"), true, f.state.clone())
            && self.publish(self.topic("internet"), true, internet.into())
            && self.publish(self.topic("latency_ms"), true, num(f.latency_ms))
            && self.publish(self.topic("loss_pct"), true, num(f.loss_pct))
            && self.publish(self.topic("outages_24h"), true, f.outages_24h.to_string())
    }

    /// One message on the event topic; false when not connected (it stays queued).
    pub fn send(&self, note: &Note) -> bool {
        if !self.connected {
            return false;
        }
        let payload = json!({"kind": note.kind, "title": note.title, "message": note.body, "priority": note.priority, "ts": note.ts});
        self.publish(self.topic("event"), false, payload.to_string())
    }

    /// Say goodbye properly: "offline", then disconnect.
    pub fn close(mut self) {
        if self.connected {
            self.publish(self.topic("availability"), true, "offline".into());
            let _ = self.client.try_disconnect();
            self.poll(Duration::from_secs(1));
        }
    }
}
