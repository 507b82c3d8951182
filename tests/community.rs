//! Community aggregation against a real engine: Debian's `prometheus`, started here with its
//! remote-write receiver on, receives the hourly rollups of simulated homes in three regions
//! (replayed databases, pushed by `wanwatch community --push`); `wanwatch community` then asks
//! it with PromQL where a home stands. The receiver is stopped for a while and nothing is lost.

mod bed;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::params;

use bed::{free_port, http_client as http};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
/// Hours of history each home has.
const HOURS: i64 = 30;

/// Prometheus with the remote-write receiver, samples up to 30 days old accepted (a home that
/// was offline pushes its backlog late), its data in `dir`.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, port: u16) -> Option<Prometheus> {
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 1h\nstorage:\n  tsdb:\n    out_of_order_time_window: 30d\n")
            .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let p = Prometheus { child, port, dir: dir.to_path_buf() };
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if http().get(&p.url("/-/ready")).call().is_ok_and(|r| r.status() == 200) {
                return Some(p);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("prometheus did not become ready");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn stop(mut self) -> (PathBuf, u16) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        (self.dir.clone(), self.port)
    }

    fn query(&self, q: &str) -> serde_json::Value {
        let mut r = http().get(&self.url("/api/v1/query")).query("query", q).call().unwrap();
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A home's database: one anchor, every minute of the last `HOURS` complete hours, `evening_lost`
/// of 60 pings lost in local hours 19-22 and none otherwise; a WAN outage of `outage_min`.
fn home(dir: &Path, name: &str, evening_lost: u32, outage_min: i64, now: i64) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let db = folder.join("w.db");
    drop(wanwatch::store::Store::open(&db, 1 << 20).unwrap());
    let mut c = rusqlite::Connection::open(&db).unwrap();
    let tx = c.transaction().unwrap();
    tx.execute("INSERT INTO targets (id, addr, name, role) VALUES (1, '1.1.1.1', 'cloudflare', 'anchor')", []).unwrap();
    let end = (now - wanwatch::community::push::SETTLE_MS).div_euclid(HOUR) * HOUR;
    for ts in ((end - HOURS * HOUR)..end).step_by(MINUTE as usize) {
        let lost = if evening(ts) { evening_lost } else { 0 };
        tx.execute(
            "INSERT INTO minutes (ts, target, sent, lost, min_us, mean_us, median_us, p95_us, max_us, jitter_us)
             VALUES (?1, 1, 60, ?2, 20000, 30000, 30000, 45000, 60000, 1000)",
            params![ts, lost],
        )
        .unwrap();
    }
    if outage_min > 0 {
        let start = end - 5 * HOUR;
        tx.execute(
            "INSERT INTO outages (kind, start_ts, end_ts, duration_ms, detail) VALUES ('wan', ?1, ?2, ?3, 'test')",
            params![start, start + outage_min * MINUTE, outage_min * MINUTE],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    db
}

fn evening(ts: i64) -> bool {
    let h = wanwatch::calendar::hour_of_week(ts, wanwatch::calendar::local_offset_s(ts)) % 24;
    (19..23).contains(&h)
}

fn config(db: &Path, region: &str, write_url: &str, enabled: bool) -> PathBuf {
    let cfg = db.with_file_name("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "[community]\nenabled = {enabled}\nremote_write_url = \"{write_url}\"\nregion = \"{region}\"\n\
             carrier = \"T-Mobile\"\nmin_homes = 3\n"
        ),
    )
    .unwrap();
    cfg
}

fn wanwatch(cfg: &Path, db: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wanwatch"))
        .args(["community", "--config", cfg.to_str().unwrap(), "--db", db.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

fn install_of(db: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(db.with_file_name("community.json")).unwrap()).unwrap();
    v["install"].as_str().unwrap().to_string()
}

#[test]
fn homes_push_to_prometheus_and_compare_through_promql_losing_nothing_while_it_is_down() {
    if Command::new("prometheus").arg("--version").output().is_err() {
        eprintln!("SKIP homes_push_to_prometheus...: no prometheus here (apt install prometheus)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prom_dir = dir.path().join("prom");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom = Prometheus::start(&prom_dir, free_port()).unwrap();
    let write = prom.url("/api/v1/write");
    let now = bed::wall_ms();
    // Region 981: five homes, evening loss 1..5 of 60 pings; the fifth had a 30-minute outage.
    // Region 100: two homes (fewer than min_homes = 3, so never compared).
    let homes: Vec<(PathBuf, PathBuf)> =
        [("981", 1, 0), ("981", 2, 0), ("981", 3, 0), ("981", 4, 0), ("981", 5, 30), ("100", 2, 0), ("100", 9, 0)]
            .iter()
            .enumerate()
            .map(|(k, (region, lost, outage))| {
                let db = home(dir.path(), &format!("home{k}"), *lost, *outage, now);
                (config(&db, region, &write, true), db)
            })
            .collect();
    // Home 6 is a running agent: its own pusher sends the backlog (30 s after start).
    let agent = if bed::can_ping("homes_push_to_prometheus... (agent part)") {
        let (cfg, db) = &homes[6];
        Some(
            bed::loopback_agent(db)
                .args(["--config", cfg.to_str().unwrap(), "--for", "45s"])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    } else {
        None
    };
    for (k, (cfg, db)) in homes.iter().enumerate() {
        if k == 3 || (k == 6 && agent.is_some()) {
            continue; // home 3 pushes later, across the receiver's downtime; home 6 is the agent
        }
        let o = wanwatch(cfg, db, &["--push"]);
        assert!(o.status.success(), "home{k}: {}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains(&format!("pushed {HOURS} hours")), "home{k}: {out}");
    }

    if let Some(agent) = agent {
        let out = agent.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let install6 = install_of(&homes[6].1);
        let v = prom
            .query(&format!("sum(count_over_time(wanwatch_community_measured_minutes{{install=\"{install6}\"}}[2d]))"));
        assert_eq!(v["data"]["result"][0]["value"][1].as_str(), Some(HOURS.to_string().as_str()), "{v}");
    }

    // The receiver goes away: home 3's push fails and keeps everything for later.
    let (prom_dir, port) = prom.stop();
    let (cfg3, db3) = &homes[3];
    let o = wanwatch(cfg3, db3, &["--push"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("kept for the next push"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let prom = Prometheus::start(&prom_dir, port).unwrap();
    let o = wanwatch(cfg3, db3, &["--push"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Every hour arrived, once.
    let install3 = install_of(db3);
    let v =
        prom.query(&format!("sum(count_over_time(wanwatch_community_measured_minutes{{install=\"{install3}\"}}[2d]))"));
    assert_eq!(v["data"]["result"][0]["value"][1].as_str(), Some(HOURS.to_string().as_str()), "{v}");
    // A second push has nothing left to send.
    let o = wanwatch(cfg3, db3, &["--push"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("pushed 0 hours"), "{}", String::from_utf8_lossy(&o.stdout));

    // Home 2 (3 of 60 lost in the evening: 5%) against its region, through PromQL.
    let (cfg2, db2) = &homes[2];
    let o = wanwatch(cfg2, db2, &["--format", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(c["homes"], 5);
    let loss = &c["evening_loss_pct"];
    assert!((loss["mine"].as_f64().unwrap() - 5.0).abs() < 1e-9, "{c}");
    assert!((loss["percentile"].as_f64().unwrap() - 60.0).abs() < 1e-9, "{c}");
    assert!((loss["region_median"].as_f64().unwrap() - 5.0).abs() < 1e-9, "{c}");
    // Outage minutes: four homes with 0, one with 30; this home is at or below 4 of 5.
    let out = &c["outage_minutes"];
    assert_eq!((out["mine"].as_f64(), out["percentile"].as_f64()), (Some(0.0), Some(80.0)), "{c}");
    // The worst hours are the evenings.
    let worst: Vec<u64> = c["worst_hours"].as_array().unwrap().iter().map(|h| h[0].as_u64().unwrap()).collect();
    assert_eq!(worst.len(), 3);
    assert!(worst.iter().all(|h| (19..23).contains(h)), "{worst:?}");
    let text = String::from_utf8(wanwatch(cfg2, db2, &[]).stdout).unwrap();
    assert!(text.contains("Region 981: 5 homes") && text.contains("60% of homes"), "{text}");
    // The dashboard's page asks the same engine.
    let community = wanwatch::config::outputs::CommunityConfig {
        enabled: true,
        remote_write_url: write.clone(),
        region: "981".into(),
        min_homes: 3,
        ..Default::default()
    };
    let clock = wanwatch::clock::WallClock::system();
    let web = wanwatch::web::Web::spawn("127.0.0.1:0", db2.clone(), Default::default(), clock, None, Some(community))
        .unwrap();
    let mut r = http().get(&format!("http://{}/community", web.addr)).call().unwrap();
    let page = r.body_mut().read_to_string().unwrap();
    assert!(page.contains("Region 981: 5 homes") && page.contains("60% of homes"), "{page}");
    web.stop();

    // Region 100 has two homes: not shown (k-anonymity), whatever is asked.
    let (cfg6, db6) = &homes[6];
    let c: serde_json::Value = serde_json::from_slice(&wanwatch(cfg6, db6, &["--format", "json"]).stdout).unwrap();
    assert_eq!((c["homes"].as_u64(), c["evening_loss_pct"].is_null()), (Some(2), true), "{c}");

    // What the engine holds: only the allowed label names, and no value that reads as an address.
    let start = ((now - 3 * 24 * HOUR) / 1000).to_string();
    let mut r = http()
        .get(&prom.url("/api/v1/series"))
        .query("match[]", "{__name__=~\"wanwatch_community_.+\"}")
        .query("start", &start)
        .call()
        .unwrap();
    let all: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    let series = all["data"].as_array().unwrap();
    assert!(series.len() > 50, "{}", series.len());
    for s in series {
        for (name, value) in s.as_object().unwrap() {
            let value = value.as_str().unwrap();
            assert!(wanwatch::community::labels::safe(name, value), "{name}={value} reached the engine");
        }
    }

    // The community dashboard's queries are valid PromQL on the real engine, and its k gate
    // keeps the two-home region out of every panel.
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/community/grafana-community.json"))
            .unwrap(),
    )
    .unwrap();
    let mut region_981_seen = false;
    for panel in dash["panels"].as_array().unwrap() {
        let expr = panel["targets"][0]["expr"].as_str().unwrap();
        assert!(expr.contains(">= $k"), "panel {} is not gated on k", panel["title"]);
        let q = expr.replace("$__range", "3d").replace("$k", "3").replace("$region", "981");
        let v = prom.query(&q);
        assert_eq!(v["status"], "success", "{q}: {v}");
        for e in v["data"]["result"].as_array().unwrap() {
            assert_ne!(e["metric"]["region"], "100", "{}: a region below k shown", panel["title"]);
            region_981_seen |= e["metric"]["region"] == "981";
        }
        let q100 = expr.replace("$__range", "3d").replace("$k", "3").replace("$region", "100");
        if expr.contains("$region") {
            assert_eq!(prom.query(&q100)["data"]["result"].as_array().map(Vec::len), Some(0), "{q100}");
        }
    }
    assert!(region_981_seen);
}

#[test]
fn nothing_is_sent_before_the_household_opts_in() {
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = seen.clone();
    let recorder = bed::http::Server::start("127.0.0.1:0", None, move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        bed::http::Reply::text(204, "")
    });
    let dir = tempfile::tempdir().unwrap();
    let now = bed::wall_ms();
    let db = home(dir.path(), "home", 2, 0, now);
    // Everything set up but `enabled`: the command refuses, and the agent starts no pusher.
    let cfg = config(&db, "981", &format!("{}/api/v1/write", recorder.url()), false);
    let o = wanwatch(&cfg, &db, &["--push"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("community sharing is off"));
    let o = wanwatch(&cfg, &db, &[]);
    assert!(!o.status.success());
    assert!(
        wanwatch::community::push::spawn(Default::default(), db.clone(), wanwatch::clock::WallClock::system())
            .is_none()
    );
    if bed::can_ping("nothing_is_sent_before_the_household_opts_in (agent part)") {
        let o = bed::loopback_agent(&db).args(["--config", cfg.to_str().unwrap(), "--for", "3s"]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0, "something was sent");
    assert!(!db.with_file_name("community.json").exists());
}
