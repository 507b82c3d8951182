//! Streaming and gaming sessions from the household's DNS log, on the real formats: dnsmasq
//! `log-queries` lines over syslog (plain and `log-queries=extra`, RFC 3164 as OpenWrt sends them)
//! and Pi-hole's FTL database (the Pi-hole 6 layout with `query_storage` and the `queries` view,
//! and the older plain `queries` table). Only counts reach the database: no site, no client.

mod bed;

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use wanwatch::probe::sessions;

/// Pi-hole 6's long-term database as FTL lays it out: queries in `query_storage` with domains and
/// clients in lookup tables, read through the `queries` view.
fn pihole6(path: &Path) -> Connection {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE query_storage (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp INTEGER NOT NULL,
             type INTEGER NOT NULL, status INTEGER NOT NULL, domain INTEGER NOT NULL, client INTEGER NOT NULL,
             forward INTEGER, additional_info INTEGER, reply_type INTEGER, reply_time REAL, dnssec INTEGER,
             list_id INTEGER, ede INTEGER);
         CREATE TABLE domain_by_id (id INTEGER PRIMARY KEY, domain TEXT NOT NULL);
         CREATE TABLE client_by_id (id INTEGER PRIMARY KEY, ip TEXT NOT NULL, name TEXT);
         CREATE TABLE forward_by_id (id INTEGER PRIMARY KEY, forward TEXT NOT NULL);
         CREATE TABLE addinfo_by_id (id INTEGER PRIMARY KEY, type INTEGER NOT NULL, content NOT NULL);
         CREATE VIEW queries AS SELECT id, timestamp, type, status,
             CASE typeof(domain) WHEN 'integer' THEN (SELECT domain FROM domain_by_id d WHERE d.id = q.domain) ELSE domain END domain,
             CASE typeof(client) WHEN 'integer' THEN (SELECT ip FROM client_by_id c WHERE c.id = q.client) ELSE client END client,
             CASE typeof(forward) WHEN 'integer' THEN (SELECT forward FROM forward_by_id f WHERE f.id = q.forward) ELSE forward END forward,
             CASE typeof(additional_info) WHEN 'integer' THEN (SELECT content FROM addinfo_by_id a WHERE a.id = q.additional_info) ELSE additional_info END additional_info,
             reply_type, reply_time, dnssec, list_id FROM query_storage q;",
    )
    .unwrap();
    c
}

/// A query as FTL stores it (type 1 = A, status 2 = forwarded; FTL 6 keeps sub-second time).
fn pihole6_query(c: &Connection, ts_s: f64, domain: &str, client: &str) {
    c.execute("INSERT OR IGNORE INTO domain_by_id (domain) VALUES (?1)", [domain]).unwrap();
    c.execute("INSERT OR IGNORE INTO client_by_id (ip, name) VALUES (?1, '')", [client]).unwrap();
    c.execute(
        "INSERT INTO query_storage (timestamp, type, status, domain, client, forward, reply_type, reply_time)
         VALUES (?1, 1, 2, (SELECT id FROM domain_by_id WHERE domain = ?2),
                 (SELECT id FROM client_by_id WHERE ip = ?3), NULL, 4, 0.012)",
        rusqlite::params![ts_s, domain, client],
    )
    .unwrap();
}

#[test]
fn both_pihole_layouts_are_read_from_where_the_last_read_ended() {
    let dir = tempfile::tempdir().unwrap();
    let now = bed::wall_ms() as f64 / 1000.0;
    let v6 = dir.path().join("pihole-FTL.db");
    let c = pihole6(&v6);
    pihole6_query(&c, now - 3600.0, "old.nflxvideo.net", "192.168.1.20");
    pihole6_query(&c, now - 30.0, "ipv4-c001.oca.nflxvideo.net", "192.168.1.20");
    pihole6_query(&c, now - 20.0, "example.org", "192.168.1.21");
    // First read: the last gap's worth only.
    let rows = sessions::read_pihole(&v6, None, now - 600.0).unwrap();
    assert_eq!(rows.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(), ["ipv4-c001.oca.nflxvideo.net", "example.org"]);
    let last = rows.iter().map(|r| r.0).max();
    pihole6_query(&c, now - 5.0, "xboxlive.com", "192.168.1.30");
    let rows = sessions::read_pihole(&v6, last, 0.0).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].2.as_str(), rows[0].3.as_str()), ("xboxlive.com", "192.168.1.30"));

    // Pi-hole 5 before the lookup tables: one plain table.
    let v5 = dir.path().join("pihole-FTL-v5.db");
    let c = Connection::open(&v5).unwrap();
    c.execute_batch(
        "CREATE TABLE queries (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp INTEGER NOT NULL, type INTEGER NOT NULL,
             status INTEGER NOT NULL, domain TEXT NOT NULL, client TEXT NOT NULL, forward TEXT);",
    )
    .unwrap();
    c.execute(
        "INSERT INTO queries (timestamp, type, status, domain, client, forward) VALUES (?1, 1, 2, 'us04web.zoom.us', '10.0.0.7', '1.1.1.1#53')",
        [now as i64],
    )
    .unwrap();
    let rows = sessions::read_pihole(&v5, None, now - 600.0).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(sessions::classify(&rows[0].2), Some(sessions::Activity::Calls));
}

/// A Pi-hole 6 API as its OpenAPI spec describes it: `/api/auth` hands out a session for the
/// right password, `/api/queries` answers with the session's `sid` (from, length) and 401
/// otherwise. `sid` is what the current session is; the test can expire it.
fn pihole_api(sid: std::sync::Arc<std::sync::Mutex<String>>, now_s: f64) -> bed::http::Server {
    bed::http::Server::start("127.0.0.1:0", None, move |r| {
        let current = sid.lock().unwrap().clone();
        if r.method == "POST" && r.target == "/api/auth" {
            return if r.body.contains("\"app-password-1\"") {
                let body = format!(
                    r#"{{"session":{{"valid":true,"totp":false,"sid":"{current}","csrf":"Ux87YTIiMOf/GKCefVIOMw=","validity":300}},"took":0.0002}}"#
                );
                bed::http::Reply::json(200, &body)
            } else {
                bed::http::Reply::json(
                    401,
                    r#"{"error":{"key":"unauthorized","message":"Unauthorized","hint":null},"took":0.003}"#,
                )
            };
        }
        if r.target.starts_with("/api/queries?") {
            let q = r.target.split_once('?').unwrap().1;
            let given = form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "sid").map(|(_, v)| v.into_owned());
            if given.as_deref() != Some(current.as_str()) {
                return bed::http::Reply::json(
                    401,
                    r#"{"error":{"key":"unauthorized","message":"Unauthorized","hint":null},"took":0.001}"#,
                );
            }
            let body = format!(
                r#"{{"queries":[
                  {{"time":{t2},"type":"A","domain":"us04web.zoom.us","cname":null,"status":"FORWARDED","client":{{"ip":"192.168.1.60","name":"laptop.lan"}},"dnssec":"INSECURE","reply":{{"type":"IP","time":19}},"list_id":null,"upstream":"1.1.1.1#53","id":112421356,"ede":{{"code":0,"text":null}}}},
                  {{"time":{t1},"type":"AAAA","domain":"api.github.com","cname":null,"status":"FORWARDED","client":{{"ip":"192.168.1.61","name":null}},"dnssec":"UNKNOWN","reply":{{"type":"IP","time":12.3}},"list_id":null,"upstream":"1.1.1.1#53","id":112421355,"ede":{{"code":0,"text":null}}}}
                ],"cursor":112421356,"recordsTotal":2,"recordsFiltered":2,"draw":0,"took":0.001}}"#,
                t1 = now_s - 20.0,
                t2 = now_s - 10.0
            );
            return bed::http::Reply::json(200, &body);
        }
        bed::http::Reply::text(404, "no such route")
    })
}

#[test]
fn pihole_6_api_logs_in_reads_new_queries_once_and_logs_in_again_when_the_session_expires() {
    let dir = tempfile::tempdir().unwrap();
    let now_s = bed::wall_ms() as f64 / 1000.0;
    let sid = std::sync::Arc::new(std::sync::Mutex::new("vFA+EP4MQ5JJvJg+3Q2Jnw=".to_string()));
    let server = pihole_api(sid.clone(), now_s);
    let password = dir.path().join("pihole-password");
    std::fs::write(&password, "app-password-1\n").unwrap();
    let mut api = sessions::PiholeApi::new(&server.url(), Some(password.clone()), Duration::from_secs(5));
    let rows = api.fetch(now_s - 600.0).unwrap();
    let got: Vec<(&str, &str)> = rows.iter().map(|r| (r.2.as_str(), r.3.as_str())).collect();
    assert_eq!(got, [("api.github.com", "192.168.1.61"), ("us04web.zoom.us", "192.168.1.60")], "oldest first");
    assert!(api.fetch(now_s - 600.0).unwrap().is_empty(), "the same queries are not read twice");
    // The session expires: one new login, no error.
    *sid.lock().unwrap() = "Nw2PB9TE1x1fDwkSW7ldCg=".into();
    assert!(api.fetch(now_s - 600.0).unwrap().is_empty());
    // A wrong password is an error that says where to look.
    std::fs::write(&password, "wrong").unwrap();
    let mut api = sessions::PiholeApi::new(&server.url(), Some(password), Duration::from_secs(5));
    let e = api.fetch(now_s - 600.0).unwrap_err();
    assert!(e.contains("pihole_password_file"), "{e}");
}

fn metric(db: &Path, name: &str) -> Option<f64> {
    let c = Connection::open(db).ok()?;
    c.query_row(
        "SELECT m.value FROM metrics m JOIN series s ON s.id = m.series WHERE s.probe = 'sessions' AND s.name = ?1
         ORDER BY m.ts DESC LIMIT 1",
        [name],
        |r| r.get(0),
    )
    .ok()
}

#[test]
fn an_agent_counts_sessions_from_dnsmasq_syslog_and_pihole_and_keeps_no_site() {
    if !bed::can_ping("an_agent_counts_sessions_from_dnsmasq_syslog_and_pihole_and_keeps_no_site") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pihole = dir.path().join("pihole-FTL.db");
    let ftl = pihole6(&pihole);
    let syslog_port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // And a Pi-hole 6 elsewhere on the LAN, through its API: a laptop on a Zoom call.
    let api = pihole_api(std::sync::Arc::new(std::sync::Mutex::new("c2lkLTE=".into())), bed::wall_ms() as f64 / 1000.0);
    let password = dir.path().join("pihole-password");
    std::fs::write(&password, "app-password-1").unwrap();
    let cfg = dir.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "[syslog]\nlisten = \"127.0.0.1:{syslog_port}\"\nallow_from = [\"127.0.0.1\"]\n\
             [sessions]\npihole_db = \"{}\"\ninterval = \"5s\"\npihole_url = \"{}\"\npihole_password_file = \"{}\"\n\
             [report]\nweekly = false\n[web]\nenabled = false\n",
            pihole.display(),
            api.url(),
            password.display()
        ),
    )
    .unwrap();
    let db = dir.path().join("w.db");
    let agent = bed::loopback_agent(&db)
        .args(["--config", cfg.to_str().unwrap(), "--probes", "syslog,sessions", "--flush-interval", "1s"])
        .args(["--for", "40s"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // The router's dnsmasq: the TV streams (both log formats), a laptop asks for a page.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for line in [
        "<30>Dec  2 20:01:07 OpenWrt dnsmasq[2101]: query[A] ipv4-c002-lhr001-ix.1.oca.nflxvideo.net from 192.168.1.40",
        "<30>Dec  2 20:01:07 OpenWrt dnsmasq[2101]: forwarded ipv4-c002-lhr001-ix.1.oca.nflxvideo.net to 1.1.1.1",
        "<30>Dec  2 20:01:07 OpenWrt dnsmasq[2101]: reply ipv4-c002-lhr001-ix.1.oca.nflxvideo.net is 45.57.90.1",
        "<30>Dec  2 20:01:09 OpenWrt dnsmasq[2101]: 4117 192.168.1.40/41233 query[AAAA] rr1---sn-aigl6nze.googlevideo.com from 192.168.1.40",
        "<30>Dec  2 20:01:10 OpenWrt dnsmasq[2101]: query[HTTPS] www.example.org from 192.168.1.41",
    ] {
        udp.send_to(line.as_bytes(), ("127.0.0.1", syslog_port)).unwrap();
    }
    // A busy evening's DNS log (far over the router log's 20 lines a second) must not crowd out
    // the router's own line after it.
    for i in 0..600 {
        let line = format!("<30>Dec  2 20:01:10 OpenWrt dnsmasq[2101]: query[A] host{i}.example.org from 192.168.1.41");
        udp.send_to(line.as_bytes(), ("127.0.0.1", syslog_port)).unwrap();
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    udp.send_to(b"<30>Dec  2 20:01:11 OpenWrt netifd: Interface 'wan' is now up", ("127.0.0.1", syslog_port)).unwrap();
    // Pi-hole on this Pi: the console joins a match.
    pihole6_query(&ftl, bed::wall_ms() as f64 / 1000.0, "auth.np.ac.playstation.net", "192.168.1.50");
    let until = Instant::now() + Duration::from_secs(30);
    let (mut streaming, mut gaming) = (None, None);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
        streaming = metric(&db, "streaming_clients");
        gaming = metric(&db, "gaming_clients");
        if streaming == Some(1.0) && gaming == Some(1.0) && metric(&db, "video_call_clients") == Some(1.0) {
            break;
        }
    }
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let out = agent.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // One streaming client (the TV, counted once for two services), one gamer.
    assert_eq!((streaming, gaming), (Some(1.0), Some(1.0)), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(metric(&db, "video_call_clients"), Some(1.0));
    assert_eq!(metric(&db, "update_clients"), Some(0.0));

    // The router's own event is kept; its DNS log is not, and no site or client is anywhere.
    let c = Connection::open(&db).unwrap();
    let lines: Vec<String> = c
        .prepare("SELECT message FROM syslog")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(lines, ["Interface 'wan' is now up"]);
    let dropped: i64 = c
        .query_row(
            "SELECT count(*) FROM metrics m JOIN series s ON s.id = m.series WHERE s.probe = 'syslog' AND m.value > 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dropped, 0, "the DNS log counted as dropped router lines");
    drop(c);
    let bytes = std::fs::read(&db).unwrap();
    let wal = std::fs::read(dir.path().join("w.db-wal")).unwrap_or_default();
    for needle in [
        "nflxvideo",
        "googlevideo",
        "example.org",
        "playstation",
        "zoom",
        "192.168.1.40",
        "192.168.1.50",
        "192.168.1.60",
    ] {
        let found = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(!found(&bytes) && !found(&wal), "{needle} is in the database");
    }
}
