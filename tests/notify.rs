//! Notifications on their real paths: a local ntfy-compatible HTTP server and webhook that
//! record what arrives, a real MQTT broker (Debian's mosquitto) with a real subscriber, and a
//! database the test writes outages and events into while the notifier watches it.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wanwatch::clock::WallClock;
use wanwatch::config::outputs::{MqttConfig, NotifyConfig, NtfyConfig, WebhookConfig};
use wanwatch::notify::Notifier;

#[derive(Debug, Clone)]
struct Got {
    url: String,
    headers: HashMap<String, String>,
    body: String,
}

/// An HTTP server that records every request and answers 200.
struct Recorder {
    got: Arc<Mutex<Vec<Got>>>,
    stop: Arc<AtomicBool>,
}

impl Recorder {
    fn start(addr: &str) -> Recorder {
        let server = tiny_http::Server::http(addr).unwrap();
        let (got, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (g, s) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok(Some(mut req)) = server.recv_timeout(Duration::from_millis(100)) {
                    let mut body = String::new();
                    req.as_reader().read_to_string(&mut body).unwrap();
                    let headers = req
                        .headers()
                        .iter()
                        .map(|h| (h.field.as_str().as_str().to_ascii_lowercase(), h.value.as_str().to_string()))
                        .collect();
                    g.lock().unwrap().push(Got { url: req.url().to_string(), headers, body });
                    let _ = req.respond(tiny_http::Response::from_string("ok"));
                }
            }
        });
        Recorder { got, stop }
    }
    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn now() -> i64 {
    wanwatch::clock::WallClock::system().now()
}

/// A fresh agent database with its targets and state.
fn db(dir: &Path) -> PathBuf {
    let db = dir.join("wanwatch.db");
    drop(wanwatch::store::Store::open(&db, 1 << 20).unwrap());
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "INSERT INTO targets (id, addr, name, role) VALUES (1, '192.168.1.1', 'gateway', 'gateway'), (2, '1.1.1.1', 'cloudflare', 'anchor');
         INSERT INTO status (key, value) VALUES ('state', 'up');",
    )
    .unwrap();
    db
}

fn sql(db: &Path, sql: &str, params: impl rusqlite::Params) {
    rusqlite::Connection::open(db).unwrap().execute(sql, params).unwrap();
}

fn outage_start(db: &Path, start: i64) {
    sql(db, "INSERT INTO outages (kind, start_ts) VALUES ('wan', ?1)", [start]);
}

fn outage_end(db: &Path, end: i64) {
    sql(db, "UPDATE outages SET end_ts = ?1, duration_ms = ?1 - start_ts WHERE end_ts IS NULL", [end]);
}

fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn cfg(ntfy: Option<String>, webhook: Option<String>, mqtt: Option<MqttConfig>) -> NotifyConfig {
    NotifyConfig {
        min_interval: Duration::from_secs(600),
        max_age: Duration::from_secs(86_400),
        ntfy: ntfy.map(|url| NtfyConfig { url, token: Some("tk_test".into()) }),
        webhook: webhook.map(|url| WebhookConfig { url }),
        mqtt,
    }
}

#[test]
fn outage_reaches_ntfy_and_webhook_and_history_is_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    // Something from before the notifier existed: must not be announced.
    outage_start(&db, now() - 3_600_000);
    outage_end(&db, now() - 3_500_000);
    let server_port = free_port();
    let rec = Recorder::start(&format!("127.0.0.1:{server_port}"));
    let base = format!("http://127.0.0.1:{server_port}");
    let n = Notifier::spawn(
        cfg(Some(format!("{base}/family-wan")), Some(format!("{base}/hook")), None),
        db.clone(),
        WallClock::from_fn(now),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(2500)); // the first look sets the cursors
    let t = now();
    outage_start(&db, t);
    wait_for("the outage on ntfy and the webhook", 10, || rec.got().len() >= 2);
    let got = rec.got();
    let ntfy = got.iter().find(|g| g.url == "/family-wan").expect("ntfy got it");
    assert_eq!(ntfy.headers["title"], "Internet down");
    assert_eq!(ntfy.headers["priority"], "4");
    assert_eq!(ntfy.headers["authorization"], "Bearer tk_test");
    assert!(ntfy.body.starts_with("Since "), "{}", ntfy.body);
    let hook = got.iter().find(|g| g.url == "/hook").expect("webhook got it");
    assert_eq!(hook.headers["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_str(&hook.body).unwrap();
    assert_eq!(
        (v["kind"].as_str(), v["title"].as_str(), v["ts"].as_i64()),
        (Some("outage"), Some("Internet down"), Some(t))
    );
    assert_eq!(got.len(), 2, "history was replayed: {got:?}");
    n.stop();
}

#[test]
fn messages_wait_while_the_internet_is_down_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    let port = free_port(); // nobody listens yet: "the internet is down"
    let url = format!("http://127.0.0.1:{port}/topic");
    let n = Notifier::spawn(cfg(Some(url.clone()), None, None), db.clone(), WallClock::from_fn(now)).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let t = now();
    outage_start(&db, t);
    std::thread::sleep(Duration::from_millis(2500));
    outage_end(&db, t + 95_000);
    std::thread::sleep(Duration::from_millis(2500));
    n.stop();
    // Both messages (down; back, held by the rate limit) are in the saved queue or limiter.
    let saved = std::fs::read_to_string(wanwatch::notify::state_file(&db)).unwrap();
    assert!(saved.contains("Internet down"), "{saved}");
    // The agent restarts, the link comes back: the queued message goes out, in order.
    let rec = Recorder::start(&format!("127.0.0.1:{port}"));
    let mut c = cfg(Some(url), None, None);
    c.min_interval = Duration::from_secs(2);
    let n = Notifier::spawn(c, db.clone(), WallClock::from_fn(now)).unwrap();
    wait_for("the queued messages", 15, || rec.got().len() >= 2);
    let got = rec.got();
    assert_eq!(got[0].headers["title"], "Internet down");
    assert_eq!(got[1].headers["title"], "Internet back after 1m 35s");
    n.stop();
    let saved = std::fs::read_to_string(wanwatch::notify::state_file(&db)).unwrap();
    assert!(saved.contains("\"queue\":[]"), "{saved}");
}

#[test]
fn a_flapping_link_sends_a_digest_not_a_hundred_messages() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    let port = free_port();
    let rec = Recorder::start(&format!("127.0.0.1:{port}"));
    let mut c = cfg(None, Some(format!("http://127.0.0.1:{port}/hook")), None);
    c.min_interval = Duration::from_secs(4);
    let n = Notifier::spawn(c, db.clone(), WallClock::from_fn(now)).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let t = now();
    for i in 0..40 {
        sql(
            &db,
            "INSERT INTO outages (kind, start_ts, end_ts, duration_ms) VALUES ('wan', ?1, ?2, 20000)",
            [t + i * 30_000, t + i * 30_000 + 20_000],
        );
        std::thread::sleep(Duration::from_millis(150));
    }
    wait_for("the digest", 15, || rec.got().iter().any(|g| g.body.contains("messages since")));
    std::thread::sleep(Duration::from_secs(5));
    n.stop();
    let got = rec.got();
    let titles: Vec<String> = got
        .iter()
        .map(|g| serde_json::from_str::<serde_json::Value>(&g.body).unwrap()["title"].as_str().unwrap().to_string())
        .collect();
    assert!(got.len() <= 4, "{titles:?}");
    // Every outage is accounted for: the first alone, the rest counted in digests.
    let counted: usize = titles
        .iter()
        .map(|t| if t.contains("messages since") { t.split(' ').next().unwrap().parse().unwrap() } else { 1 })
        .sum();
    assert_eq!(counted, 40, "{titles:?}");
}

/// Debian's mosquitto on a free loopback port, stopped on drop.
struct Broker(Child, u16);

impl Broker {
    fn start(port: u16) -> Option<Broker> {
        let exe = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].into_iter().find(|p| Path::new(p).exists())?;
        let child = Command::new(exe)
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let end = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Broker(child, port))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real subscriber: every (topic, payload, retained) it receives.
fn subscribe(port: u16, topics: &[&str]) -> Arc<Mutex<Vec<(String, String, bool)>>> {
    static CLIENTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let id = CLIENTS.fetch_add(1, Ordering::Relaxed);
    let mut opts = rumqttc::MqttOptions::new(format!("test-{port}-{id}"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut conn) = rumqttc::Client::new(opts, 100);
    for t in topics {
        client.subscribe(*t, rumqttc::QoS::AtLeastOnce).unwrap();
    }
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        let _keep = client;
        for ev in conn.iter() {
            match ev {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    g.lock().unwrap().push((
                        p.topic.clone(),
                        String::from_utf8_lossy(&p.payload).to_string(),
                        p.retain,
                    ));
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    });
    got
}

/// wanwatch's MQTT settings for a broker on this machine.
fn local_mqtt(port: u16) -> MqttConfig {
    MqttConfig {
        host: "127.0.0.1".into(),
        port,
        username: None,
        password: None,
        topic: "wanwatch".into(),
        discovery_prefix: "homeassistant".into(),
    }
}

#[test]
fn mqtt_home_assistant_discovery_state_and_queued_events() {
    let port = free_port();
    if !["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].iter().any(|p| Path::new(p).exists()) {
        eprintln!(
            "SKIP mqtt_home_assistant_discovery_state_and_queued_events: no mosquitto here (apt install mosquitto)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    let t = now();
    let minute = t - t.rem_euclid(60_000) - 60_000;
    sql(
        &db,
        "INSERT INTO minutes (ts, target, sent, lost, median_us, p95_us) VALUES (?1, 2, 60, 3, 31500, 52000)",
        [minute],
    );
    let mqtt = local_mqtt(port);
    // The broker is down when the agent starts and when the outage begins.
    let n = Notifier::spawn(cfg(None, None, Some(mqtt)), db.clone(), WallClock::from_fn(now)).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    outage_start(&db, now());
    std::thread::sleep(Duration::from_millis(2500));
    let broker = Broker::start(port).expect("mosquitto starts");
    let got = subscribe(broker.1, &["wanwatch/#"]);
    wait_for("the queued outage on wanwatch/event", 90, || got.lock().unwrap().iter().any(|m| m.0 == "wanwatch/event"));
    let ev = got.lock().unwrap().iter().find(|m| m.0 == "wanwatch/event").unwrap().clone();
    let v: serde_json::Value = serde_json::from_str(&ev.1).unwrap();
    assert_eq!(v["title"], "Internet down");
    wait_for("state topics", 10, || got.lock().unwrap().iter().any(|m| m.0 == "wanwatch/latency_ms"));
    // Discovery is retained: a subscriber that comes later (Home Assistant restarting) gets it.
    let late = subscribe(broker.1, &["homeassistant/#", "wanwatch/#"]);
    wait_for("retained discovery", 10, || late.lock().unwrap().len() >= 10);
    std::thread::sleep(Duration::from_millis(500));
    let late = late.lock().unwrap().clone();
    let find =
        |topic: &str| late.iter().find(|m| m.0 == topic).cloned().unwrap_or_else(|| panic!("no {topic} in {late:?}"));
    let node = late
        .iter()
        .find(|m| m.0.starts_with("homeassistant/binary_sensor/"))
        .expect("binary sensor")
        .0
        .split('/')
        .nth(2)
        .unwrap()
        .to_string();
    let internet: serde_json::Value =
        serde_json::from_str(&find(&format!("homeassistant/binary_sensor/{node}/internet/config")).1).unwrap();
    assert_eq!(internet["device_class"], "connectivity");
    assert_eq!(internet["availability_topic"], "wanwatch/availability");
    assert_eq!(internet["state_topic"], "wanwatch/internet");
    let latency: serde_json::Value =
        serde_json::from_str(&find(&format!("homeassistant/sensor/{node}/latency/config")).1).unwrap();
    assert_eq!(
        (latency["unit_of_measurement"].as_str(), latency["state_class"].as_str(), latency["device_class"].as_str()),
        (Some("ms"), Some("measurement"), Some("duration"))
    );
    assert!(find(&format!("homeassistant/sensor/{node}/loss/config")).2, "retained");
    assert_eq!(find("wanwatch/availability").1, "online");
    assert_eq!(find("wanwatch/state").1, "up");
    assert_eq!(find("wanwatch/internet").1, "ON");
    assert_eq!(find("wanwatch/latency_ms").1, "31.50");
    assert_eq!(find("wanwatch/loss_pct").1, "5.00");
    assert_eq!(find("wanwatch/outages_24h").1, "1");
    // A clean stop says offline (and a dead Pi would, through the last will).
    let watch = subscribe(broker.1, &["wanwatch/availability"]);
    wait_for("availability", 5, || !watch.lock().unwrap().is_empty());
    n.stop();
    wait_for("offline", 10, || watch.lock().unwrap().iter().any(|m| m.1 == "offline"));
}

#[test]
fn degraded_is_announced_only_when_it_lasts() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    let port = free_port();
    let rec = Recorder::start(&format!("127.0.0.1:{port}"));
    let mut c = cfg(None, Some(format!("http://127.0.0.1:{port}/hook")), None);
    c.min_interval = Duration::from_secs(1);
    let n = Notifier::spawn(c, db.clone(), WallClock::from_fn(now)).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let state = |s: &str, since: i64| {
        // One transaction, as the agent's writer does it.
        let mut c = rusqlite::Connection::open(&db).unwrap();
        let tx = c.transaction().unwrap();
        tx.execute("INSERT OR REPLACE INTO status (key, value) VALUES ('state', ?1)", [s]).unwrap();
        tx.execute("INSERT OR REPLACE INTO status (key, value) VALUES ('state_since', ?1)", [since.to_string()])
            .unwrap();
        tx.commit().unwrap();
    };
    // The first lost pings of an outage: degraded for a moment, then down. No "degraded" message.
    state("degraded", now());
    std::thread::sleep(Duration::from_millis(2500));
    state("wan_down", now());
    std::thread::sleep(Duration::from_millis(2500));
    state("up", now());
    std::thread::sleep(Duration::from_millis(2500));
    assert!(rec.got().is_empty(), "{:?}", rec.got());
    // Degraded for over a minute (the agent restarted mid-way, say): announced once.
    state("degraded", now() - 90_000);
    wait_for("the degraded message", 10, || !rec.got().is_empty());
    std::thread::sleep(Duration::from_millis(4500));
    n.stop();
    let got = rec.got();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].body.contains("\"title\":\"Internet degraded\""), "{}", got[0].body);
}

/// Regression (issue 12.8): before anything is known Home Assistant was told "OFF"
/// (disconnected) and numeric sensors "unknown" (refused); `object_id` is deprecated.
#[test]
fn mqtt_unknown_state_is_none_for_home_assistant() {
    let port = free_port();
    if !["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].iter().any(|p| Path::new(p).exists()) {
        eprintln!("SKIP mqtt_unknown_state_is_none_for_home_assistant: no mosquitto here (apt install mosquitto)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    // As at first start: nothing known yet.
    sql(&db, "DELETE FROM status", []);
    let broker = Broker::start(port).expect("mosquitto starts");
    let mqtt = local_mqtt(port);
    let n = Notifier::spawn(cfg(None, None, Some(mqtt)), db.clone(), WallClock::from_fn(now)).unwrap();
    let got = subscribe(broker.1, &["homeassistant/#", "wanwatch/#"]);
    wait_for("state topics", 30, || got.lock().unwrap().iter().any(|m| m.0 == "wanwatch/loss_pct"));
    std::thread::sleep(Duration::from_millis(500));
    n.stop();
    let got = got.lock().unwrap().clone();
    let last = |topic: &str| got.iter().rev().find(|m| m.0 == topic).map(|m| m.1.clone());
    assert_eq!(last("wanwatch/state").as_deref(), Some("unknown"));
    assert_eq!(last("wanwatch/internet").as_deref(), Some("None"), "unknown is not disconnected");
    assert_eq!(last("wanwatch/latency_ms").as_deref(), Some("None"));
    assert_eq!(last("wanwatch/loss_pct").as_deref(), Some("None"));
    let configs: Vec<serde_json::Value> = got
        .iter()
        .filter(|m| m.0.starts_with("homeassistant/") && m.0.ends_with("/config"))
        .map(|m| serde_json::from_str(&m.1).unwrap())
        .collect();
    assert!(configs.len() >= 6, "{configs:?}");
    for c in &configs {
        assert!(c.get("object_id").is_none(), "deprecated object_id in {c}");
        let id = c["default_entity_id"].as_str().unwrap_or_default();
        assert!(id.starts_with("sensor.wanwatch_") || id.starts_with("binary_sensor.wanwatch_"), "{c}");
    }
}
