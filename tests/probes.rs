//! The context probes against real local servers and sockets: a scripted DNS server, scripted
//! HTTP servers (gateway API, weather, speed test), syslog over UDP and a log file, and the
//! whole agent running them at once without any of them slowing the pings.

mod bed;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bed::dns::DnsServer;
use bed::http::{Reply, Server};
use bed::{Workdir, can_ping, peak_rss_mb};
use wanwatch::probe::ProbeError;
use wanwatch::probe::{dns, gateway, http, weather};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gateway").join(name)).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn dns_over_udp_measures_latency_and_names_each_failure() {
    let server = DnsServer::start(Duration::from_millis(40));
    let rt = rt();
    let t = Duration::from_millis(400);
    let ok = rt.block_on(dns::udp_lookup("ok.test", server.addr, t));
    println!("ok.test: {ok:?}");
    assert_eq!((ok.rcode, ok.answers, ok.failure.as_deref()), (Some(0), 1, None));
    let ms = ok.latency_ms.unwrap();
    assert!((40.0..80.0).contains(&ms), "latency {ms} ms for a 40 ms server");
    let nx = rt.block_on(dns::udp_lookup("nx.test", server.addr, t));
    assert_eq!((nx.rcode, nx.failure.as_deref()), (Some(3), Some("nxdomain")));
    let fail = rt.block_on(dns::udp_lookup("fail.test", server.addr, t));
    assert_eq!((fail.rcode, fail.failure.as_deref()), (Some(2), Some("servfail")));
    let drop = rt.block_on(dns::udp_lookup("drop.test", server.addr, t));
    assert_eq!((drop.latency_ms, drop.failure.as_deref()), (None, Some("timeout")));
    let garbage = rt.block_on(dns::udp_lookup("garbage.test", server.addr, t));
    assert_eq!(garbage.failure.as_deref(), Some("bad-reply"));
}

#[test]
fn http_get_times_the_response_and_names_failures() {
    let server = Server::start("127.0.0.1:0", None, |req| match req.target.as_str() {
        "/slow" => Reply::Body {
            status: 200,
            delay: Duration::from_millis(80),
            content_type: "text/plain",
            body: vec![b'x'; 1000],
        },
        "/error" => Reply::text(503, "busy"),
        "/hang" => Reply::Hang,
        _ => Reply::Garbage,
    });
    let a = http::agent(Duration::from_millis(500));
    let f = http::get(&a, &format!("{}/slow", server.url()), 1 << 20).unwrap();
    println!("slow: ttfb {:.1} ms total {:.1} ms", f.ttfb_ms, f.total_ms);
    assert_eq!((f.status, f.body.len()), (200, 1000));
    assert!(f.ttfb_ms >= 80.0 && f.ttfb_ms < 200.0 && f.total_ms >= f.ttfb_ms);
    assert_eq!(http::get(&a, &format!("{}/error", server.url()), 100).unwrap().status, 503);
    let hang = http::get(&a, &format!("{}/hang", server.url()), 100).unwrap_err();
    assert!(matches!(hang, ProbeError::HttpTimeout(_)), "{hang}");
    let garbage = http::get(&a, &format!("{}/garbage", server.url()), 100).unwrap_err();
    assert!(!garbage.to_string().is_empty());
    let refused = http::get(&a, "http://127.0.0.1:9/", 100).unwrap_err();
    assert!(matches!(refused, ProbeError::ConnectFailed | ProbeError::Io(_)), "{refused}");
}

#[test]
fn gateway_json_of_every_shape() {
    let r = gateway::parse_tmobile(&fixture("tmobile_kvd21.json")).unwrap();
    let g5 = r.radios.iter().find(|r| r.name == "5g").unwrap();
    assert_eq!(
        (g5.rsrp, g5.rsrq, g5.rssi, g5.sinr, g5.bars),
        (Some(-84.0), Some(-10.0), Some(-74.0), Some(19.0), Some(5.0))
    );
    assert_eq!((g5.bands.clone(), g5.cid, g5.node), (vec!["n41".to_string()], Some(311), Some(1076984)));
    let g4 = r.radios.iter().find(|r| r.name == "4g").unwrap();
    assert_eq!((g4.rsrp, g4.node), (Some(-97.0), Some(310463)));
    assert_eq!(r.uptime_s, Some(93542));

    // -32768 is "no signal": no number, not a -32768 dBm reading.
    let r = gateway::parse_tmobile(&fixture("tmobile_no_5g_signal.json")).unwrap();
    let g5 = r.radios.iter().find(|r| r.name == "5g").unwrap();
    assert_eq!((g5.rsrp, g5.sinr, g5.bands.len()), (None, None, 0));
    assert_eq!(r.radios.iter().find(|r| r.name == "4g").unwrap().bands, ["b2", "b66"]);

    let e = gateway::parse_tmobile(&fixture("tmobile_truncated.json")).unwrap_err();
    assert!(matches!(e, ProbeError::Json(_)) && e.to_string().starts_with("bad json"), "{e}");
    // Strings where numbers belong and missing fields: what is there is used, the rest is None.
    let r = gateway::parse_tmobile(&fixture("tmobile_missing_fields.json")).unwrap();
    let g5 = &r.radios[0];
    assert_eq!((g5.rsrp, g5.sinr, r.uptime_s), (None, Some(12.5), None));
    assert!(gateway::parse_tmobile(b"<html>login</html>").is_err());
    assert!(gateway::parse_tmobile(b"{\"device\":{}}").is_err());

    let r = gateway::parse_nokia(&fixture("nokia_5g21.json")).unwrap();
    let g5 = r.radios.iter().find(|r| r.name == "5g").unwrap();
    assert_eq!(
        (g5.rsrp, g5.sinr, g5.cid, g5.bands.clone()),
        (Some(-88.0), Some(14.0), Some(311), vec!["n41".to_string()])
    );
    let g4 = r.radios.iter().find(|r| r.name == "4g").unwrap();
    assert_eq!((g4.rssi, g4.bands.clone()), (Some(-79.0), vec!["B66".to_string()]));
    assert!(gateway::parse_nokia(&fixture("tmobile_kvd21.json")).is_err());
}

#[test]
fn gateway_detection_picks_the_api_that_answers() {
    let nokia = fixture("nokia_5g21.json");
    let server = Server::start("127.0.0.1:0", None, move |req| {
        if req.target == "/fastmile_radio_status_web_app.cgi" {
            Reply::json(200, std::str::from_utf8(&nokia).unwrap())
        } else {
            Reply::text(404, "no")
        }
    });
    let kind = rt().block_on(gateway::detect(&server.url(), Duration::from_secs(2)));
    assert_eq!(kind, Some(wanwatch::config::probes::GatewayKind::Nokia));
    let nothing = Server::start("127.0.0.1:0", None, |_| Reply::text(200, "<html>router login</html>"));
    assert_eq!(rt().block_on(gateway::detect(&nothing.url(), Duration::from_secs(2))), None);
}

#[test]
fn weather_formats_errors_and_the_key_stays_secret() {
    const KEY: &str = "s3cr3t-0penweather-k3y";
    let server = Server::start("127.0.0.1:0", None, |req| {
        let t = &req.target;
        if t.starts_with("/v1/forecast?latitude=41.9&longitude=-87.6&current=") {
            Reply::json(
                200,
                r#"{"latitude":41.9,"longitude":-87.6,"current_units":{},"current":{"time":"2026-11-25T17:00","interval":900,"temperature_2m":3.4,"relative_humidity_2m":81,"precipitation":1.2,"weather_code":61,"wind_speed_10m":18.7,"surface_pressure":1002.3}}"#,
            )
        } else if t.starts_with("/data/2.5/weather?") && t.ends_with(&format!("appid={KEY}")) {
            Reply::json(
                200,
                r#"{"weather":[{"id":501,"main":"Rain","description":"moderate rain"}],"main":{"temp":3.1,"pressure":1002,"humidity":84},"wind":{"speed":5.0},"rain":{"1h":2.5},"cod":200}"#,
            )
        } else if t.starts_with("/data/2.5/weather?") {
            Reply::json(401, r#"{"cod":401,"message":"Invalid API key."}"#)
        } else {
            Reply::Garbage
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let mut cfg = wanwatch::config::probes::WeatherConfig {
        latitude: Some(41.9),
        longitude: Some(-87.6),
        url: Some(server.url()),
        ..Default::default()
    };
    let rt = rt();
    let c = rt.block_on(weather::poll(&cfg)).unwrap();
    assert_eq!((c.temp_c, c.precip_mm_h, c.condition), (Some(3.4), Some(1.2), Some(61.0)));

    cfg.api_key_file = Some(key_file.clone());
    let c = rt.block_on(weather::poll(&cfg)).unwrap();
    assert_eq!((c.temp_c, c.humidity_pct, c.precip_mm_h, c.condition), (Some(3.1), Some(84.0), Some(2.5), Some(501.0)));
    assert_eq!(c.wind_kmh, Some(18.0));

    std::fs::write(&key_file, "wrong-key").unwrap();
    let e = rt.block_on(weather::poll(&cfg)).unwrap_err();
    assert!(matches!(e, ProbeError::Status(401)), "{e}");
    cfg.url = Some("http://127.0.0.1:9".into());
    let e = rt.block_on(weather::poll(&cfg)).unwrap_err();
    let said = e.to_string();
    assert!(!said.contains("wrong-key") && !said.contains("appid"), "the key leaked into an error: {said}");
    assert!(
        weather::parse_open_meteo(b"{\"error\":true,\"reason\":\"Latitude must be in range\"}")
            .unwrap_err()
            .to_string()
            .contains("Latitude")
    );
    assert!(weather::parse_openweather(b"not json").is_err());
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The whole agent with every context probe pointed at local servers, one of each failing, and
/// the pings still on time.
#[test]
fn agent_runs_all_context_probes_and_pings_stay_on_time() {
    if !can_ping("agent_runs_all_context_probes_and_pings_stay_on_time") {
        return;
    }
    const KEY: &str = "never-log-this-key";
    let dns_server = DnsServer::start(Duration::from_millis(5));
    let web = Server::start("127.0.0.1:0", None, |req| match req.target.as_str() {
        "/ok" => Reply::text(200, "fine"),
        "/hang" => Reply::Hang,
        _ if req.target.starts_with("/data/2.5/weather") => {
            Reply::json(401, r#"{"cod":401,"message":"Invalid API key."}"#)
        }
        _ => Reply::text(404, "no"),
    });
    // The gateway reboots (uptime falls) and moves from n41 to n71 between polls.
    let polls = Arc::new(AtomicUsize::new(0));
    let p = polls.clone();
    let first = String::from_utf8(fixture("tmobile_kvd21.json")).unwrap();
    let gw = Server::start("127.0.0.1:0", None, move |req| {
        if !req.target.starts_with("/TMI/v1/gateway") {
            return Reply::text(404, "no");
        }
        match p.fetch_add(1, Ordering::SeqCst) {
            // The first answer is used by detection, the second is the first reading.
            0 | 1 => Reply::json(200, &first),
            2 => {
                Reply::json(200, &first.replace("\"upTime\":93542", "\"upTime\":12").replace("[\"n41\"]", "[\"n71\"]"))
            }
            _ => Reply::text(200, "{\"signal\": truncated"),
        }
    });
    let w = Workdir::new();
    let sysfs = w.path("sys");
    std::fs::create_dir_all(sysfs.join("class/thermal/thermal_zone0")).unwrap();
    std::fs::write(sysfs.join("class/thermal/thermal_zone0/temp"), "71500\n").unwrap();
    let key_file = w.write("owm.key", KEY);
    let log_file = w.write("router.log", "old line that is history\n");
    let syslog_port = free_udp_port();
    let cfg = w.write(
        "w.toml",
        &format!(
            r#"
[ping]
gateway = "none"
anchors = ["127.0.0.1"]
interval = "100ms"
[dns]
interval = "1s"
timeout = "1500ms"
names = ["ok.test", "drop.test"]
servers = ["{dns}"]
[http]
interval = "1s"
timeout = "1s"
urls = ["{web}/ok", "{web}/hang"]
[gateway_api]
interval = "1s"
url = "{gw}"
[weather]
latitude = 41.9
longitude = -87.6
interval = "1s"
provider = "openweather"
api_key_file = "{key}"
url = "{web}"
[syslog]
listen = "127.0.0.1:{syslog_port}"
allow_from = ["127.0.0.1"]
tcp = true
files = ["{log}"]
[devices]
interval = "1s"
[system]
interval = "1s"
sysfs = "{sysfs}"
"#,
            dns = dns_server.addr,
            web = web.url(),
            gw = gw.url(),
            key = key_file.display(),
            log = log_file.display(),
            sysfs = sysfs.display(),
        ),
    );
    let db = w.path("w.db");
    let agent = std::process::Command::new(env!("CARGO_BIN_EXE_wanwatch"))
        .args(["run", "--config", cfg.to_str().unwrap(), "--db", db.to_str().unwrap(), "--for", "7s"])
        .args(["--probes", "dns,http,gateway,weather,syslog,devices,system"])
        .env("WANWATCH_LOG", "debug")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for line in [
        "<30>Nov 25 18:02:11 OpenWrt netifd: Interface 'wan' is now down",
        "<165>1 2026-11-25T18:02:12.003Z OpenWrt dnsmasq 1234 - - failed to send packet: Network unreachable",
    ] {
        udp.send_to(line.as_bytes(), ("127.0.0.1", syslog_port)).unwrap();
    }
    // The same port over TCP, octet-counted as RFC 6587 frames it.
    let msg = "<14>Nov 25 18:02:13 RT-AX58U WAN_Connection: WAN was disconnected.";
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", syslog_port)).unwrap();
    std::io::Write::write_all(&mut tcp, format!("{} {msg}\n", msg.len()).as_bytes()).unwrap();
    drop(tcp);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log_file)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, b"<30>Nov 25 18:03:41 OpenWrt netifd: Interface 'wan' is now up\n")
        })
        .unwrap();
    let out = agent.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains(KEY), "the API key reached the log");

    let c = rusqlite::Connection::open(&db).unwrap();
    let pings = wanwatch::store::pings::count(&c).unwrap();
    assert!(pings >= 60, "only {pings} pings in 7 s at 100 ms: a probe held them up");
    let metric = |probe: &str, subject_like: &str, name: &str| -> Vec<(Option<f64>, Option<String>)> {
        let mut s = c
            .prepare("SELECT m.value, m.note FROM metrics m JOIN series s ON s.id = m.series WHERE s.probe = ?1 AND s.subject LIKE ?2 AND s.name = ?3 ORDER BY m.ts")
            .unwrap();
        s.query_map([probe, subject_like, name], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    let ok = metric("dns", "ok.test@%", "latency_ms");
    assert!(ok.len() >= 3 && ok.iter().all(|(v, n)| v.is_some() && n.is_none()), "dns ok: {ok:?}");
    let dropped = metric("dns", "drop.test@%", "latency_ms");
    assert!(
        !dropped.is_empty() && dropped.iter().all(|(v, n)| v.is_none() && n.as_deref() == Some("timeout")),
        "{dropped:?}"
    );
    assert!(metric("http", "%/ok", "ttfb_ms").iter().all(|(v, _)| v.is_some()));
    let hang = metric("http", "%/hang", "ttfb_ms");
    assert!(
        !hang.is_empty() && hang.iter().all(|(v, n)| v.is_none() && n.as_deref().unwrap().starts_with("timeout")),
        "{hang:?}"
    );
    assert!(metric("gateway", "5g", "sinr_db").contains(&(Some(19.0), None)));
    assert!(metric("gateway", "gateway", "poll").iter().any(|(_, n)| n.as_deref().unwrap_or("").contains("bad json")));
    let weather = metric("weather", "here", "poll");
    assert!(!weather.is_empty() && weather.iter().all(|(_, n)| n.as_deref() == Some("http 401")), "{weather:?}");
    assert_eq!(metric("system", "pi", "temp_c").last(), Some(&(Some(71.5), None)));
    assert!(!metric("system", "pi", "cpu_pct").is_empty());
    assert!(!metric("devices", "lan", "neighbours").is_empty());

    let events: Vec<String> = c
        .prepare("SELECT kind FROM events ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for kind in ["gateway_reboot", "gateway_band", "wan_down", "dns_failure", "wan_up"] {
        assert!(events.iter().any(|e| e == kind), "no {kind} event in {events:?}");
    }
    let classes: Vec<(String, Option<String>)> = c
        .prepare("SELECT source, class FROM syslog ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(classes.len(), 4, "two datagrams, one TCP frame and one new file line (not the old one): {classes:?}");
    assert_eq!(classes[0], ("127.0.0.1".into(), Some("wan_down".into())));
    assert!(
        classes.iter().filter(|(_, c)| c.as_deref() == Some("wan_down")).count() == 2,
        "the TCP line is a WAN drop too: {classes:?}"
    );
    assert!(
        classes.iter().any(|(src, c)| src.ends_with("router.log") && c.as_deref() == Some("wan_up")),
        "{classes:?}"
    );

    // Nothing anywhere in the database holds the key.
    let dump: i64 =
        c.query_row("SELECT count(*) FROM metrics WHERE note LIKE ?1", [format!("%{KEY}%")], |r| r.get(0)).unwrap();
    assert_eq!(dump, 0);

    // status shows the context, in 80 columns; export has it.
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_wanwatch"))
        .args(["status", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&st.stdout);
    println!("{text}");
    assert!(text.contains("Context") && text.contains("gateway") && text.contains("Router log"), "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 80), "status wider than 80 columns:\n{text}");
    for table in ["metrics", "syslog"] {
        let ex = std::process::Command::new(env!("CARGO_BIN_EXE_wanwatch"))
            .args(["export", "--db", db.to_str().unwrap(), "--table", table, "--format", "jsonl"])
            .output()
            .unwrap();
        assert!(ex.status.success());
        assert!(String::from_utf8_lossy(&ex.stdout).lines().count() >= 3, "{table} export");
    }
}

/// Issue 13.6: a 300 MB TCP line took the agent from 12 to 309 MB, invalid UTF-8 closed the
/// connection and lost what followed, octet-counted frames without a newline merged into one
/// row, UDP datagrams over 8 KiB were cut silently, and nothing was counted. Against the real
/// agent over loopback: bounded, framed, lossy-decoded, and every cut or drop counted in
/// `status` and `/metrics`.
#[test]
fn syslog_receiver_is_bounded_framed_and_counts_what_it_drops() {
    if !can_ping("syslog_receiver_is_bounded_framed_and_counts_what_it_drops") {
        return;
    }
    use std::io::{Read, Write};
    let w = Workdir::new();
    let port = free_udp_port();
    let web = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = w.write(
        "w.toml",
        &format!(
            "[ping]\ngateway = \"none\"\nanchors = [\"127.0.0.1\"]\n[syslog]\nlisten = \"127.0.0.1:{port}\"\ntcp = true\n\
             allow_from = [\"127.0.0.1\"]\nmax_lines_per_s = 1000\ntcp_idle = \"6s\"\n[web]\nlisten = \"127.0.0.1:{web}\"\n\
             [store]\nflush_interval = \"500ms\"\n"
        ),
    );
    let db = w.path("w.db");
    let agent = std::process::Command::new(env!("CARGO_BIN_EXE_wanwatch"))
        .args(["run", "--config", cfg.to_str().unwrap(), "--db", db.to_str().unwrap(), "--probes", "syslog"])
        .args(["--for", "40s"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let base_rss = peak_rss_mb(agent.id());

    // 1. A 64 MB line with no newline for most of it, then a normal line: the normal line is
    //    stored, the long one cut to 4 KiB, and memory stays flat.
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.write_all(b"<30>huge ").unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..64 {
        tcp.write_all(&chunk).unwrap();
    }
    tcp.write_all(b"\n<30>after the huge one\n").unwrap();
    // 2. Invalid UTF-8, then more lines on the same connection.
    tcp.write_all(b"<30>bad \xff\xfe bytes\n<30>after the bad bytes\n").unwrap();
    // 3. Octet-counted frames back to back, no newline at all.
    let (a, b) = ("<14>counted one", "<14>counted two");
    tcp.write_all(format!("{} {a}{} {b}", a.len(), b.len()).as_bytes()).unwrap();
    drop(tcp);
    // Let the agent finish reading that connection before counting open ones.
    std::thread::sleep(Duration::from_millis(1500));
    // 4. A 20 KiB UDP datagram.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut big = b"<30>udp big ".to_vec();
    big.extend(vec![b'u'; 20_000]);
    udp.send_to(&big, ("127.0.0.1", port)).unwrap();
    // 5. More connections than the cap: the extra ones are closed at once.
    let held: Vec<std::net::TcpStream> =
        (0..20).filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let closed = held
        .iter()
        .filter(|s| {
            s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            matches!((&**s).read(&mut [0u8; 1]), Ok(0))
        })
        .count();
    let peak = peak_rss_mb(agent.id());
    // 6. A connection that says nothing is closed after tcp_idle (6 s here).
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_secs(8));
    drop(held);
    idle.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    assert!(matches!(idle.read(&mut [0u8; 1]), Ok(0)), "an idle connection stayed open");
    // /metrics while it runs: drop totals are written every 10 s.
    let page = ureq::get(&format!("http://127.0.0.1:{web}/metrics"))
        .call()
        .map(|mut r| r.body_mut().read_to_string().unwrap_or_default())
        .unwrap_or_default();
    let truncated = page
        .lines()
        .find(|l| l.starts_with("wanwatch_syslog_dropped_lines{reason=\"truncated\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert_eq!(truncated, Some(2.0), "cut lines not on /metrics:\n{page}");
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let out = agent.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    println!("RSS {base_rss:.1} MB before the 64 MB line, peak {peak:.1} MB; {closed} of 20 extra connections closed");
    assert!(peak - base_rss < 16.0, "a 64 MB line grew the agent from {base_rss:.1} to {peak:.1} MB");
    assert_eq!(closed, 20 - wanwatch::probe::syslog_tcp::MAX_CONNECTIONS, "connections over the cap are closed");

    let c = rusqlite::Connection::open(&db).unwrap();
    let msgs: Vec<String> = c
        .prepare("SELECT message FROM syslog ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let find = |s: &str| msgs.iter().find(|m| m.contains(s)).unwrap_or_else(|| panic!("no {s:?} in {msgs:?}"));
    assert!(find("huge").len() <= 4096, "the long line is cut");
    find("after the huge one");
    assert!(find("bad").contains('\u{fffd}'));
    find("after the bad bytes");
    assert_eq!(find("counted one"), "counted one");
    assert_eq!(find("counted two"), "counted two");
    assert!(find("udp big").len() <= 4096 && find("udp big").len() > 4000, "cut to 4 KiB, not to 8 KiB silently");
    // Counted: an event and metrics that status shows.
    let dropped: String = c
        .query_row("SELECT group_concat(detail, ' | ') FROM events WHERE kind = 'syslog_dropped'", [], |r| r.get(0))
        .unwrap();
    assert!(dropped.contains("2 lines cut to 4096 bytes") && dropped.contains("TCP connections closed"), "{dropped}");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_wanwatch"))
        .args(["status", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    let st = String::from_utf8_lossy(&st.stdout);
    assert!(st.contains("syslog    truncated: dropped_lines=2 lines"), "{st}");
}

/// Regression (issue 13.1): a 400k-line router log flood into a 16 MB-capped database left an
/// 84 MB file: the cap ran once an hour and never counted the log. Now it is checked after
/// every flush: the file never gets far past the cap, and ends under it.
#[test]
fn a_log_flood_cannot_grow_the_database_past_its_cap() {
    if !can_ping("a_log_flood_cannot_grow_the_database_past_its_cap") {
        return;
    }
    let w = Workdir::new();
    let port = free_udp_port();
    let cfg = w.write(
        "w.toml",
        &format!(
            "[ping]\ngateway = \"none\"\nanchors = [\"127.0.0.1\"]\n[syslog]\nlisten = \"127.0.0.1:{port}\"\n\
             allow_from = [\"127.0.0.1\"]\nmax_lines_per_s = 100000\n[web]\nenabled = false\n\
             [store]\nflush_interval = \"500ms\"\nmax_db_mb = 16\n"
        ),
    );
    let db = w.path("w.db");
    let agent = std::process::Command::new(env!("CARGO_BIN_EXE_wanwatch"))
        .args(["run", "--config", cfg.to_str().unwrap(), "--db", db.to_str().unwrap(), "--probes", "syslog"])
        .args(["--for", "40s"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let cap = 16u64 << 20;
    let size = || std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (stop, db) = (stop.clone(), db.clone());
        std::thread::spawn(move || {
            let mut largest = 0;
            while !stop.load(Ordering::Relaxed) {
                largest = largest.max(std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(100));
            }
            largest
        })
    };
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = std::time::Instant::now();
    for i in 0..400_000u32 {
        let line = format!(
            "<30>Nov 25 18:02:11 OpenWrt dnsmasq-dhcp[1234]: DHCPREQUEST(br-lan) 192.168.1.{} aa:bb:cc:dd:ee:{:02x} line {i}",
            i % 250,
            i % 256
        );
        let _ = udp.send_to(line.as_bytes(), ("127.0.0.1", port));
        if i % 200 == 199 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let sent_in = started.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let largest = watcher.join().unwrap();
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let out = agent.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let c = rusqlite::Connection::open(&db).unwrap();
    let (lines, caps): (i64, String) = c
        .query_row(
            "SELECT (SELECT count(*) FROM syslog), coalesce((SELECT group_concat(detail, ' | ') FROM events WHERE kind = 'size_cap'), '')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let end = size();
    println!(
        "400k lines sent in {sent_in:?}: {lines} kept; file at most {:.1} MB, {:.1} MB at the end (cap 16 MB); {caps}",
        largest as f64 / 1048576.0,
        end as f64 / 1048576.0
    );
    assert!(caps.contains("router log chatter"), "the cap never ran: {caps:?}");
    // Every line is accounted for: kept, deleted by the cap, or dropped and counted.
    let capped: u64 =
        caps.split("deleted the oldest ").skip(1).filter_map(|p| p.split(' ').next()?.parse::<u64>().ok()).sum();
    let dropped = bed::syslog_drops(&c);
    let counted: u64 = dropped.iter().map(|(_, n)| *n as u64).sum();
    println!("kept {lines} + capped {capped} + counted drops {counted} {dropped:?} of 400000");
    assert_eq!(
        lines as u64 + capped + counted,
        400_000,
        "lines lost without being counted:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(end <= cap, "the file ended at {end} bytes over a {cap} cap");
    assert!(largest <= cap + cap / 4, "the file reached {largest} bytes against a {cap} cap");
}

/// Issue 13.7: the gateway probe followed redirects to other hosts, and stored a negative
/// uptime. A gateway that redirects is not a gateway API (and the other host never hears from
/// the Pi); a negative uptime is no reading.
#[test]
fn the_gateway_probe_follows_no_redirect_and_rejects_negative_uptime() {
    let elsewhere = Server::start("127.0.0.1:0", None, |_| Reply::json(200, "{}"));
    let target = format!("{}/TMI/v1/gateway?get=all", elsewhere.url());
    let gw = Server::start("127.0.0.1:0", None, move |_| Reply::Redirect(target.clone()));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let found = rt.block_on(gateway::detect(&gw.url(), Duration::from_secs(2)));
    assert_eq!(found, None);
    assert!(gw.requests.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert_eq!(elsewhere.requests.load(std::sync::atomic::Ordering::SeqCst), 0, "the redirect was followed");

    let body = String::from_utf8(fixture("tmobile_kvd21.json")).unwrap();
    assert!(body.contains("\"upTime\":93542"));
    let r = gateway::parse_tmobile(body.replace("\"upTime\":93542", "\"upTime\":-5").as_bytes()).unwrap();
    assert_eq!(r.uptime_s, None, "a negative uptime is not stored");
}
