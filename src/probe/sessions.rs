//! Streaming, gaming, video calls and updates on the LAN, without sitting in the traffic path:
//! the household's own DNS query log says when a TV starts Netflix or a console starts a match.
//! Two sources:
//!
//! - dnsmasq `log-queries` lines sent by the router's syslog (OpenWrt, Asuswrt-Merlin, DD-WRT,
//!   Pi-hole's own dnsmasq): `query[A] www.netflix.com from 192.168.1.23` (the syslog probe
//!   hands them here and never stores them);
//! - Pi-hole's long-term query database (`/etc/pihole/pihole-FTL.db`, its `queries` view, the
//!   same in Pi-hole 5 and 6) when Pi-hole runs on this Pi.
//!
//! A domain is classified by a small list ([`DOMAINS`]); a client is in a session of that kind
//! from its first such query until `gap` after its last. What leaves this module is a count per
//! kind each interval (`sessions/*_clients`): no site, no address, nothing per client.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Ctx;
use crate::config::probes::SessionsConfig;
use crate::sample::{Metric, WallMs};
use crate::series::{self, Series};

/// What a LAN client is doing, as far as its DNS queries say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activity {
    Streaming,
    Gaming,
    Calls,
    Updates,
}

impl Activity {
    pub const ALL: [Activity; 4] = [Activity::Streaming, Activity::Gaming, Activity::Calls, Activity::Updates];

    pub fn series(self) -> Series {
        match self {
            Activity::Streaming => series::STREAMING,
            Activity::Gaming => series::GAMING,
            Activity::Calls => series::CALLS,
            Activity::Updates => series::UPDATES,
        }
    }
}

/// The list: a domain and everything under it. Kept short on purpose: the servers that carry
/// the sessions (video CDNs, game networks, call media), not every tracker an app also calls.
/// Maintained here; a domain belongs to one kind only.
pub const DOMAINS: &[(&str, Activity)] = &[
    // Streaming video.
    ("nflxvideo.net", Activity::Streaming),
    ("netflix.com", Activity::Streaming),
    ("googlevideo.com", Activity::Streaming),
    ("youtube.com", Activity::Streaming),
    ("ytimg.com", Activity::Streaming),
    ("aiv-cdn.net", Activity::Streaming),
    ("primevideo.com", Activity::Streaming),
    ("disneyplus.com", Activity::Streaming),
    ("dssott.com", Activity::Streaming),
    ("bamgrid.com", Activity::Streaming),
    ("hulu.com", Activity::Streaming),
    ("hulustream.com", Activity::Streaming),
    ("max.com", Activity::Streaming),
    ("hbomax.com", Activity::Streaming),
    ("peacocktv.com", Activity::Streaming),
    ("paramountplus.com", Activity::Streaming),
    ("twitch.tv", Activity::Streaming),
    ("ttvnw.net", Activity::Streaming),
    ("fubo.tv", Activity::Streaming),
    ("sling.com", Activity::Streaming),
    ("tv.apple.com", Activity::Streaming),
    ("espn.com", Activity::Streaming),
    ("nfl.com", Activity::Streaming),
    ("dazn.com", Activity::Streaming),
    ("bbc.co.uk", Activity::Streaming),
    ("plex.tv", Activity::Streaming),
    // Online games.
    ("xboxlive.com", Activity::Gaming),
    ("playstation.net", Activity::Gaming),
    ("playstation.com", Activity::Gaming),
    ("nintendo.net", Activity::Gaming),
    ("steamserver.net", Activity::Gaming),
    ("steamcommunity.com", Activity::Gaming),
    ("epicgames.com", Activity::Gaming),
    ("epicgames.dev", Activity::Gaming),
    ("riotgames.com", Activity::Gaming),
    ("battle.net", Activity::Gaming),
    ("roblox.com", Activity::Gaming),
    ("rbxcdn.com", Activity::Gaming),
    ("ea.com", Activity::Gaming),
    ("callofduty.com", Activity::Gaming),
    ("activision.com", Activity::Gaming),
    ("minecraft.net", Activity::Gaming),
    ("playfabapi.com", Activity::Gaming),
    // Video calls.
    ("zoom.us", Activity::Calls),
    ("teams.microsoft.com", Activity::Calls),
    ("skype.com", Activity::Calls),
    ("meet.google.com", Activity::Calls),
    ("webex.com", Activity::Calls),
    ("facetime.apple.com", Activity::Calls),
    ("whatsapp.net", Activity::Calls),
    ("discord.media", Activity::Calls),
    // Software updates and big game downloads.
    ("windowsupdate.com", Activity::Updates),
    ("update.microsoft.com", Activity::Updates),
    ("delivery.mp.microsoft.com", Activity::Updates),
    ("swcdn.apple.com", Activity::Updates),
    ("updates.cdn-apple.com", Activity::Updates),
    ("mesu.apple.com", Activity::Updates),
    ("steamcontent.com", Activity::Updates),
    ("dl.playstation.net", Activity::Updates),
    ("assets1.xboxlive.com", Activity::Updates),
    ("gvt1.com", Activity::Updates),
];

/// The kind of session a query for `domain` belongs to, if any. The longest matching entry wins
/// (`dl.playstation.net` is an update, the rest of `playstation.net` a game).
pub fn classify(domain: &str) -> Option<Activity> {
    let d = domain.trim_end_matches('.');
    DOMAINS
        .iter()
        .filter(|(suffix, _)| {
            d.len() >= suffix.len()
                && d[d.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                && (d.len() == suffix.len() || d.as_bytes()[d.len() - suffix.len() - 1] == b'.')
        })
        .max_by_key(|(suffix, _)| suffix.len())
        .map(|(_, a)| *a)
}

/// A classified query: who and what kind, when. The domain itself goes no further.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub ts: WallMs,
    pub client: String,
    pub activity: Activity,
}

/// A dnsmasq line that is part of its query log (`log-queries`): the query itself, and the
/// forwarded / reply / cached lines that follow it. None of these is a router event.
pub fn is_dnsmasq_query_log(app: Option<&str>, message: &str) -> bool {
    if !app.is_some_and(|a| a.eq_ignore_ascii_case("dnsmasq") || a.eq_ignore_ascii_case("pihole-FTL")) {
        return false;
    }
    let m = strip_extra(message);
    ["query[", "forwarded ", "reply ", "cached ", "cached-stale ", "config ", "validation ", "dnssec-query[", "/"]
        .iter()
        .any(|p| m.starts_with(p))
}

/// `log-queries=extra` puts "<serial> <client>/<port> " first.
fn strip_extra(message: &str) -> &str {
    let mut words = message.splitn(3, ' ');
    match (words.next(), words.next(), words.next()) {
        (Some(serial), Some(addr), Some(rest)) if serial.bytes().all(|b| b.is_ascii_digit()) && addr.contains('/') => {
            rest
        }
        _ => message,
    }
}

/// `query[A] www.netflix.com from 192.168.1.23` -> ("www.netflix.com", "192.168.1.23").
pub fn parse_dnsmasq_query(message: &str) -> Option<(&str, &str)> {
    let rest = strip_extra(message).strip_prefix("query[")?;
    let (_, rest) = rest.split_once("] ")?;
    let (domain, client) = rest.split_once(" from ")?;
    let client = client.trim();
    (!domain.is_empty() && !domain.contains(' ') && !client.is_empty() && !client.contains(' '))
        .then_some((domain, client))
}

/// Who is in which kind of session. Bounded: at most [`MAX_CLIENTS`] (client, kind) pairs; past
/// that the stalest is forgotten (a flood of made-up clients cannot grow it).
#[derive(Debug)]
pub struct Tracker {
    last: HashMap<(String, Activity), WallMs>,
    gap_ms: i64,
}

pub const MAX_CLIENTS: usize = 1024;

impl Tracker {
    pub fn new(gap: Duration) -> Tracker {
        Tracker { last: HashMap::new(), gap_ms: gap.as_millis() as i64 }
    }

    pub fn observe(&mut self, s: Seen) {
        let key = (s.client, s.activity);
        if !self.last.contains_key(&key)
            && self.last.len() >= MAX_CLIENTS
            && let Some(oldest) = self.last.iter().min_by_key(|(_, ts)| **ts).map(|(k, _)| k.clone())
        {
            self.last.remove(&oldest);
        }
        let at = self.last.entry(key).or_insert(s.ts);
        *at = (*at).max(s.ts);
    }

    /// Clients in a session of each kind at `now` (in [`Activity::ALL`] order); ended ones go.
    pub fn counts(&mut self, now: WallMs) -> [u32; 4] {
        self.last.retain(|_, ts| now - *ts <= self.gap_ms);
        let mut n = [0; 4];
        for (_, a) in self.last.keys() {
            n[Activity::ALL.iter().position(|x| x == a).expect("every activity is in ALL")] += 1;
        }
        n
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// Queries read from Pi-hole's database at most per interval (a busy house makes ~10,000 a day).
const PIHOLE_BATCH: i64 = 50_000;

/// Queries in Pi-hole's database after id `after` (None: those of the last `since_s` seconds,
/// for the first read): (id, unix seconds, domain, client).
pub fn read_pihole(path: &Path, after: Option<i64>, since_s: f64) -> rusqlite::Result<Vec<(i64, f64, String, String)>> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(2))?;
    let (sql, bound) = match after {
        Some(id) => ("SELECT id, timestamp, domain, client FROM queries WHERE id > ?1 ORDER BY id LIMIT ?2", id as f64),
        None => {
            ("SELECT id, timestamp, domain, client FROM queries WHERE timestamp >= ?1 ORDER BY id LIMIT ?2", since_s)
        }
    };
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(rusqlite::params![bound, PIHOLE_BATCH], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
    })?;
    rows.collect()
}

/// Pi-hole 6's API on another machine (`/api/queries`, as its OpenAPI spec describes it): a
/// session from `/api/auth` with the password when one is set, renewed when it expires.
pub struct PiholeApi {
    base: String,
    password_file: Option<std::path::PathBuf>,
    sid: Option<String>,
    agent: ureq::Agent,
    /// The newest query id read so far.
    after: Option<i64>,
}

/// Queries read from the API per interval at most.
const API_BATCH: u32 = 10_000;

impl PiholeApi {
    pub fn new(base: &str, password_file: Option<std::path::PathBuf>, timeout: Duration) -> PiholeApi {
        let base = base.trim_end_matches('/').to_string();
        PiholeApi { base, password_file, sid: None, agent: super::http::agent_without_redirects(timeout), after: None }
    }

    fn login(&mut self) -> Result<(), String> {
        let Some(file) = &self.password_file else {
            // No password set on the Pi-hole: no session needed.
            self.sid = None;
            return Ok(());
        };
        let password = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read the Pi-hole password file {}: {}", file.display(), e.kind()))?;
        let body = serde_json::json!({ "password": password.trim() }).to_string();
        let mut r = self
            .agent
            .post(&format!("{}/api/auth", self.base))
            .header("Content-Type", "application/json")
            .send(body)
            .map_err(|e| format!("Pi-hole login: {}", super::ProbeError::from(e)))?;
        let status = r.status().as_u16();
        let text = r.body_mut().with_config().limit(1 << 16).read_to_string().unwrap_or_default();
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|_| format!("Pi-hole login: HTTP {status}, not JSON"))?;
        match v.pointer("/session/sid").and_then(serde_json::Value::as_str) {
            Some(sid) if status == 200 => {
                self.sid = Some(sid.to_string());
                Ok(())
            }
            _ => Err(format!("Pi-hole refused the password (HTTP {status}); check pihole_password_file")),
        }
    }

    /// Queries since the last call (the first time: since `since_s`, unix seconds):
    /// (id, unix seconds, domain, client address).
    pub fn fetch(&mut self, since_s: f64) -> Result<Vec<(i64, f64, String, String)>, String> {
        if self.sid.is_none() && self.password_file.is_some() {
            self.login()?;
        }
        for attempt in 0..2 {
            let mut url = format!("{}/api/queries?from={since_s:.3}&length={API_BATCH}", self.base);
            if let Some(sid) = &self.sid {
                url.push_str(&format!("&sid={}", form_urlencoded::byte_serialize(sid.as_bytes()).collect::<String>()));
            }
            let f = super::http::get(&self.agent, &url, 16 << 20).map_err(|e| format!("Pi-hole API: {e}"))?;
            if f.status == 401 && attempt == 0 && self.password_file.is_some() {
                // The session expired: log in again, once.
                self.login()?;
                continue;
            }
            if f.status != 200 {
                return Err(format!("Pi-hole API: HTTP {}", f.status));
            }
            let v: serde_json::Value = serde_json::from_slice(&f.body).map_err(|e| format!("Pi-hole API: {e}"))?;
            let list = v.get("queries").and_then(serde_json::Value::as_array).ok_or("Pi-hole API: no `queries`")?;
            let mut rows: Vec<(i64, f64, String, String)> = list
                .iter()
                .filter_map(|q| {
                    Some((
                        q.get("id")?.as_i64()?,
                        q.get("time")?.as_f64()?,
                        q.get("domain")?.as_str()?.to_string(),
                        q.pointer("/client/ip")?.as_str()?.to_string(),
                    ))
                })
                .filter(|r| self.after.is_none_or(|a| r.0 > a))
                .collect();
            rows.sort_by_key(|r| r.0);
            if let Some(last) = rows.last() {
                self.after = Some(last.0);
            }
            return Ok(rows);
        }
        Err("Pi-hole API: unauthorized".into())
    }
}

/// Track sessions from the syslog probe's dnsmasq lines (`queries`) and Pi-hole's database,
/// and write the counts every interval while a source is alive.
pub async fn run(cfg: SessionsConfig, mut queries: mpsc::Receiver<Seen>, ctx: Ctx) {
    let mut tracker = Tracker::new(cfg.gap);
    let api = (!cfg.pihole_url.is_empty()).then(|| {
        std::sync::Arc::new(std::sync::Mutex::new(PiholeApi::new(
            &cfg.pihole_url,
            cfg.pihole_password_file.clone(),
            Duration::from_secs(10),
        )))
    });
    let (mut api_since, mut api_warned): (Option<f64>, bool) = (None, false);
    let mut pihole_after: Option<i64> = None;
    let mut pihole_warned = false;
    let mut ticks = tokio::time::interval(cfg.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut syslog_open = true;
    let mut stop = ctx.stop.clone();
    // Queries seen this interval, per source; and when a source last gave any.
    let (mut from_syslog, mut last_syslog): (u64, Option<WallMs>) = (0, None);
    loop {
        tokio::select! {
            q = queries.recv(), if syslog_open => match q {
                Some(s) => {
                    last_syslog = Some(s.ts);
                    from_syslog += 1;
                    tracker.observe(s);
                }
                None => syslog_open = false,
            },
            _ = ticks.tick() => {
                let now = ctx.now();
                let mut from_pihole = None;
                if cfg.pihole_db.exists() {
                    let (path, after) = (cfg.pihole_db.clone(), pihole_after);
                    let since = (now - cfg.gap.as_millis() as i64) as f64 / 1000.0;
                    let read = super::blocking(Duration::from_secs(30), move || read_pihole(&path, after, since)).await;
                    let failed = match read {
                        Ok(Ok(rows)) => {
                            from_pihole = Some(rows.len() as u64);
                            for (id, ts_s, domain, client) in rows {
                                pihole_after = Some(pihole_after.map_or(id, |a| a.max(id)));
                                if let Some(activity) = classify(&domain) {
                                    tracker.observe(Seen { ts: (ts_s * 1000.0) as WallMs, client, activity });
                                }
                            }
                            None
                        }
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(e) => Some(e.to_string()),
                    };
                    match failed {
                        Some(why) if !pihole_warned => {
                            tracing::warn!("sessions: cannot read Pi-hole's database {}: {why}", cfg.pihole_db.display());
                            pihole_warned = true;
                        }
                        Some(_) => {}
                        None => pihole_warned = false,
                    }
                }
                if let Some(api) = &api {
                    let since = api_since.unwrap_or((now - cfg.gap.as_millis() as i64) as f64 / 1000.0);
                    let a = api.clone();
                    let read = super::blocking(Duration::from_secs(30), move || {
                        a.lock().unwrap_or_else(|e| e.into_inner()).fetch(since)
                    })
                    .await;
                    match read.map_err(|e| e.to_string()).and_then(|r| r) {
                        Ok(rows) => {
                            api_warned = false;
                            from_pihole = Some(from_pihole.unwrap_or(0) + rows.len() as u64);
                            // Next time from a minute before the newest seen (Pi-hole may store a
                            // query a little late); the ids drop what was read already.
                            let newest = rows.iter().map(|r| r.1).fold(since, f64::max);
                            api_since = Some((newest - 60.0).max(since));
                            for (_, ts_s, domain, client) in rows {
                                if let Some(activity) = classify(&domain) {
                                    tracker.observe(Seen { ts: (ts_s * 1000.0) as WallMs, client, activity });
                                }
                            }
                        }
                        Err(why) => {
                            if !api_warned {
                                tracing::warn!("sessions: {why}");
                                api_warned = true;
                            }
                        }
                    }
                }
                let syslog_alive = last_syslog.is_some_and(|t| now - t < 3_600_000);
                if from_pihole.is_none() && !syslog_alive {
                    // No source: say nothing rather than "nobody is streaming".
                    continue;
                }
                let counts = tracker.counts(now);
                for (a, n) in Activity::ALL.iter().zip(counts) {
                    ctx.metric(Metric::new(now, a.series(), "lan", n as f64)).await;
                }
                if let Some(n) = from_pihole {
                    ctx.metric(Metric::new(now, series::DNS_QUERIES_SEEN, "pihole", n as f64)).await;
                }
                if syslog_alive {
                    ctx.metric(Metric::new(now, series::DNS_QUERIES_SEEN, "dnsmasq", from_syslog as f64)).await;
                }
                from_syslog = 0;
            }
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_classified_by_their_longest_listed_suffix() {
        assert_eq!(classify("ipv4-c001-sea001-ix.1.oca.nflxvideo.net"), Some(Activity::Streaming));
        assert_eq!(classify("rr3---sn-a5mekn6s.googlevideo.com."), Some(Activity::Streaming));
        assert_eq!(classify("NETFLIX.COM"), Some(Activity::Streaming));
        assert_eq!(classify("gs2.ww.prod.dl.playstation.net"), Some(Activity::Updates));
        assert_eq!(classify("auth.np.ac.playstation.net"), Some(Activity::Gaming));
        assert_eq!(classify("us04web.zoom.us"), Some(Activity::Calls));
        // A suffix match is on a label boundary only.
        assert_eq!(classify("notnetflix.com"), None);
        assert_eq!(classify("example.com"), None);
        assert_eq!(classify(""), None);
    }

    #[test]
    fn dnsmasq_query_lines_are_read_in_both_log_formats() {
        assert_eq!(
            parse_dnsmasq_query("query[A] www.netflix.com from 192.168.1.23"),
            Some(("www.netflix.com", "192.168.1.23"))
        );
        assert_eq!(
            parse_dnsmasq_query("1573 192.168.1.23/50912 query[AAAA] xboxlive.com from 192.168.1.23"),
            Some(("xboxlive.com", "192.168.1.23"))
        );
        assert_eq!(
            parse_dnsmasq_query("query[type=65] api.netflix.com from fd00::23"),
            Some(("api.netflix.com", "fd00::23"))
        );
        assert_eq!(parse_dnsmasq_query("forwarded www.netflix.com to 1.1.1.1"), None);
        assert_eq!(parse_dnsmasq_query("query[A] from"), None);
        for line in ["reply www.netflix.com is 52.1.2.3", "cached x.com is NXDOMAIN", "query[A] a.b from 10.0.0.2"] {
            assert!(is_dnsmasq_query_log(Some("dnsmasq"), line), "{line}");
        }
        assert!(!is_dnsmasq_query_log(Some("dnsmasq"), "started, version 2.90 cachesize 150"));
        assert!(!is_dnsmasq_query_log(Some("kernel"), "query[A] a.b from 10.0.0.2"));
    }

    #[test]
    fn a_session_lasts_until_the_gap_after_the_last_query_and_the_tracker_is_bounded() {
        let mut t = Tracker::new(Duration::from_secs(600));
        let seen = |ts: i64, client: &str, activity| Seen { ts, client: client.into(), activity };
        t.observe(seen(0, "tv", Activity::Streaming));
        t.observe(seen(300_000, "tv", Activity::Streaming));
        t.observe(seen(60_000, "console", Activity::Gaming));
        t.observe(seen(60_000, "laptop", Activity::Streaming));
        assert_eq!(t.counts(600_000), [2, 1, 0, 0]);
        // Ten minutes after their last query, the laptop and the console are done; the TV is not.
        assert_eq!(t.counts(700_000), [1, 0, 0, 0]);
        assert_eq!(t.counts(901_000), [0, 0, 0, 0]);
        for i in 0..(MAX_CLIENTS as i64 + 500) {
            t.observe(seen(1_000_000 + i, &format!("10.0.{}.{}", i / 250, i % 250), Activity::Calls));
        }
        assert_eq!(t.len(), MAX_CLIENTS);
        assert_eq!(t.counts(1_000_000 + MAX_CLIENTS as i64 + 500)[2] as usize, MAX_CLIENTS);
    }
}
