//! The router's log: a syslog receiver (UDP, optionally TCP) and a file follower, parsing
//! RFC 5424 and RFC 3164 and recognising the events that matter for an outage report from
//! common firmwares (OpenWrt netifd/pppd/udhcpc, dnsmasq, hostapd, ASUS).
//!
//! Every message is stored; a recognised one also carries its class, and link, reboot and
//! Wi-Fi storm classes become events.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpListener, UdpSocket};

use super::Ctx;
use crate::config::probes::SyslogConfig;
use crate::sample::{Record, SyslogLine};

/// The longest message kept; the rest is cut (a router that logs a novel is not our problem).
const MAX_LEN: usize = 4096;

/// A message, parsed. Fields the format did not carry are None.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub facility: Option<u8>,
    pub severity: Option<u8>,
    pub host: Option<String>,
    pub app: Option<String>,
    pub message: String,
}

/// Parse one syslog line (RFC 5424, RFC 3164, or no header at all). Never fails: anything that
/// does not fit a format is kept whole as the message.
pub fn parse(line: &str) -> Parsed {
    let line = line.trim_end_matches(['\r', '\n', '\0']);
    let mut p = Parsed { facility: None, severity: None, host: None, app: None, message: line.to_string() };
    let Some(rest) = line.strip_prefix('<') else { return p };
    let Some((pri, rest)) = rest.split_once('>') else { return p };
    let Ok(pri) = pri.parse::<u16>() else { return p };
    if pri > 191 || pri.to_string().len() > 3 {
        return p;
    }
    p.facility = Some((pri / 8) as u8);
    p.severity = Some((pri % 8) as u8);
    p.message = rest.to_string();
    if let Some(v5424) = rest.strip_prefix("1 ") {
        // VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]
        let mut it = v5424.splitn(6, ' ');
        let (_ts, host, app, _proc, _msgid, rest) = (it.next(), it.next(), it.next(), it.next(), it.next(), it.next());
        let nil = |s: Option<&str>| s.filter(|s| *s != "-" && !s.is_empty()).map(String::from);
        p.host = nil(host);
        p.app = nil(app);
        p.message = skip_structured_data(rest.unwrap_or("")).trim_start_matches('\u{feff}').to_string();
        return p;
    }
    // RFC 3164: "Mmm dd hh:mm:ss HOST TAG[PID]: MSG" (HOST is often missing on routers).
    let b = rest.as_bytes();
    if let Some(body) = rest.get(16..).filter(|_| b[3] == b' ' && b[6] == b' ' && b[9] == b':') {
        let (first, after) = body.split_once(' ').unwrap_or((body, ""));
        let (host, tagged) = if looks_like_tag(first) { (None, body) } else { (Some(first), after) };
        p.host = host.filter(|h| !h.is_empty()).map(String::from);
        let (tag, msg) = split_tag(tagged);
        p.app = tag;
        p.message = msg.to_string();
    } else {
        let (tag, msg) = split_tag(rest);
        p.app = tag;
        p.message = msg.to_string();
    }
    p
}

fn looks_like_tag(word: &str) -> bool {
    word.ends_with(':') || (word.contains('[') && word.ends_with("]:"))
}

/// "dnsmasq[123]: message" -> (Some("dnsmasq"), "message").
fn split_tag(s: &str) -> (Option<String>, &str) {
    match s.split_once(": ") {
        Some((tag, msg)) if !tag.is_empty() && tag.len() <= 48 && !tag.contains(' ') => {
            let name = tag.split('[').next().unwrap_or(tag);
            (Some(name.to_string()), msg)
        }
        _ => (None, s),
    }
}

fn skip_structured_data(s: &str) -> &str {
    if let Some(rest) = s.strip_prefix("- ") {
        return rest;
    }
    if s == "-" {
        return "";
    }
    if !s.starts_with('[') {
        return s;
    }
    // Walk the SD elements, honouring escaped ']' inside values.
    let bytes = s.as_bytes();
    let (mut i, mut in_elem, mut escaped) = (0, false, false);
    while i < bytes.len() {
        let c = bytes[i];
        if in_elem {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b']' {
                in_elem = false;
            }
        } else if c == b'[' {
            in_elem = true;
        } else {
            break;
        }
        i += 1;
    }
    s[i..].trim_start()
}

/// What a message means, for the messages that matter to an outage report.
pub fn classify(app: Option<&str>, message: &str) -> Option<&'static str> {
    let m = message.to_ascii_lowercase();
    let app = app.unwrap_or("").to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
    if has(&["booting linux", "linux version", "syslogd started", "klogd started", "system reboot", "rebooting"]) {
        return Some("reboot");
    }
    // ASUS: "WAN_Connection: WAN was disconnected." / "... WAN was restored."
    if app == "wan_connection" {
        if has(&["disconnected", "lost", "down"]) {
            return Some("wan_down");
        }
        if has(&["restored", "connected", "up"]) {
            return Some("wan_up");
        }
    }
    if has(&[
        "interface 'wan' is now down",
        "interface 'wan6' is now down",
        "wan link down",
        "wan connection lost",
        "connection terminated",
        "modem hangup",
        "lcp terminated",
        "carrier lost",
    ]) || (app == "netifd" && has(&["is now down"]) && m.contains("wan"))
    {
        return Some("wan_down");
    }
    if has(&[
        "interface 'wan' is now up",
        "interface 'wan6' is now up",
        "wan link up",
        "wan connection established",
        "local  ip address",
        "local ip address",
    ]) {
        return Some("wan_up");
    }
    if app == "dnsmasq"
        && has(&[
            "failed",
            "refused",
            "servfail",
            "timed out",
            "no servers",
            "maximum number of concurrent dns queries",
        ])
    {
        return Some("dns_failure");
    }
    if (app.starts_with("udhcpc") || app.starts_with("dhcp") || app == "dnsmasq-dhcp" || app == "odhcp6c")
        && has(&["lease", "dhcpack", "renew", "bound", "obtained"])
    {
        return Some("dhcp");
    }
    if app == "hostapd"
        && has(&["associated", "disassociated", "deauthenticated", "ap-sta-connected", "ap-sta-disconnected"])
    {
        return Some("wifi_assoc");
    }
    None
}

/// Turns classified messages into events, Wi-Fi storms included.
struct Events {
    wifi: VecDeque<Instant>,
    storm_per_min: u32,
    storm_reported: Option<Instant>,
}

impl Events {
    fn event(&mut self, class: &'static str, host: &str, message: &str) -> Option<(&'static str, String)> {
        match class {
            "wan_down" | "wan_up" | "reboot" | "dns_failure" => Some((class, format!("router {host}: {message}"))),
            "wifi_assoc" => {
                let now = Instant::now();
                self.wifi.push_back(now);
                while self.wifi.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60)) {
                    self.wifi.pop_front();
                }
                let calm = self.storm_reported.is_none_or(|t| now.duration_since(t) > Duration::from_secs(600));
                if self.wifi.len() as u32 > self.storm_per_min && calm {
                    self.storm_reported = Some(now);
                    Some((
                        "wifi_storm",
                        format!("router {host}: {} Wi-Fi (dis)associations in a minute", self.wifi.len()),
                    ))
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

async fn handle(ctx: &Ctx, events: &tokio::sync::Mutex<Events>, source: &str, raw: &str) {
    let mut raw = raw;
    if raw.len() > MAX_LEN {
        let mut cut = MAX_LEN;
        while !raw.is_char_boundary(cut) {
            cut -= 1;
        }
        raw = &raw[..cut];
    }
    if raw.trim().is_empty() {
        return;
    }
    let p = parse(raw);
    let class = classify(p.app.as_deref(), &p.message);
    let line = SyslogLine {
        ts: ctx.now(),
        source: source.to_string(),
        facility: p.facility,
        severity: p.severity,
        host: p.host.clone(),
        app: p.app.clone(),
        message: p.message.clone(),
        class,
    };
    ctx.emit(Record::Syslog(line)).await;
    if let Some(class) = class {
        let ev = events.lock().await.event(class, p.host.as_deref().unwrap_or(source), &p.message);
        if let Some((kind, detail)) = ev {
            ctx.event(kind, detail).await;
        }
    }
}

/// Bind UDP at `listen`, or at the fallback port when the port is privileged and not ours.
async fn bind_udp(listen: SocketAddr, fallback: u16) -> std::io::Result<UdpSocket> {
    match UdpSocket::bind(listen).await {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && listen.port() < 1024 => {
            let alt = SocketAddr::new(listen.ip(), fallback);
            tracing::warn!(
                "syslog: may not bind {listen} ({e}); listening on {alt} (grant CAP_NET_BIND_SERVICE for 514)"
            );
            UdpSocket::bind(alt).await
        }
        other => other,
    }
}

pub async fn run(cfg: SyslogConfig, ctx: Ctx) {
    let events = std::sync::Arc::new(tokio::sync::Mutex::new(Events {
        wifi: VecDeque::new(),
        storm_per_min: cfg.wifi_storm_per_min,
        storm_reported: None,
    }));
    let listen: SocketAddr = cfg.listen.parse().expect("validated in config");
    let mut tasks = tokio::task::JoinSet::new();
    match bind_udp(listen, cfg.fallback_port).await {
        Ok(sock) => {
            let (ctx, events) = (ctx.clone(), events.clone());
            tracing::info!("syslog: receiving on udp {}", sock.local_addr().map(|a| a.to_string()).unwrap_or_default());
            tasks.spawn(async move {
                let mut buf = vec![0u8; 8192];
                loop {
                    let mut stop = ctx.stop.clone();
                    tokio::select! {
                        r = sock.recv_from(&mut buf) => match r {
                            Ok((n, from)) => {
                                let text = String::from_utf8_lossy(&buf[..n]);
                                for line in text.lines() {
                                    handle(&ctx, &events, &from.ip().to_string(), line).await;
                                }
                            }
                            Err(e) => tracing::debug!("syslog recv: {e}"),
                        },
                        _ = stop.changed() => return,
                    }
                }
            });
        }
        Err(e) => tracing::warn!("syslog: cannot listen on udp {listen}: {e}; receiver off"),
    }
    if cfg.tcp {
        match TcpListener::bind(listen).await {
            Ok(l) => {
                let (ctx, events) = (ctx.clone(), events.clone());
                tasks.spawn(async move { serve_tcp(l, ctx, events).await });
            }
            Err(e) => tracing::warn!("syslog: cannot listen on tcp {listen}: {e}"),
        }
    }
    for file in cfg.files.clone() {
        let (ctx, events) = (ctx.clone(), events.clone());
        tasks.spawn(async move { follow(file, ctx, events).await });
    }
    while tasks.join_next().await.is_some() {}
}

/// Newline-framed syslog over TCP (RFC 6587 non-transparent framing; octet-counted frames are
/// read as lines too, their length prefix kept out of the message).
async fn serve_tcp(l: TcpListener, ctx: Ctx, events: std::sync::Arc<tokio::sync::Mutex<Events>>) {
    loop {
        let mut stop = ctx.stop.clone();
        let (stream, from) = tokio::select! {
            r = l.accept() => match r { Ok(x) => x, Err(_) => continue },
            _ = stop.changed() => return,
        };
        let (ctx, events) = (ctx.clone(), events.clone());
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line = match line.split_once(' ') {
                    Some((n, rest)) if n.bytes().all(|b| b.is_ascii_digit()) && rest.starts_with('<') => {
                        rest.to_string()
                    }
                    _ => line,
                };
                handle(&ctx, &events, &from.ip().to_string(), &line).await;
            }
        });
    }
}

/// Follow a log file like `tail -F`: new lines as they come, across truncation and rotation.
async fn follow(path: PathBuf, ctx: Ctx, events: std::sync::Arc<tokio::sync::Mutex<Events>>) {
    use std::io::{BufRead, Seek, SeekFrom};
    let source = path.display().to_string();
    // Start at the end: history is not news.
    let mut pos = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut partial = String::new();
    while ctx.sleep(Duration::from_secs(1)).await {
        let Ok(mut f) = std::fs::File::open(&path) else { continue };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < pos {
            pos = 0; // truncated or rotated
            partial.clear();
        }
        if len == pos || f.seek(SeekFrom::Start(pos)).is_err() {
            continue;
        }
        let mut reader = std::io::BufReader::new(f);
        let mut buf = Vec::new();
        while let Ok(n) = reader.read_until(b'\n', &mut buf) {
            if n == 0 {
                break;
            }
            pos += n as u64;
            partial.push_str(&String::from_utf8_lossy(&buf));
            buf.clear();
            if partial.ends_with('\n') {
                let line = std::mem::take(&mut partial);
                handle(&ctx, &events, &source, &line).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5424() {
        let p = parse(
            "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] An application event log entry...",
        );
        assert_eq!((p.facility, p.severity), (Some(20), Some(5)));
        assert_eq!(p.host.as_deref(), Some("mymachine.example.com"));
        assert_eq!(p.app.as_deref(), Some("evntslog"));
        assert_eq!(p.message, "An application event log entry...");
        let p = parse(
            "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \u{feff}'su root' failed for lonvick on /dev/pts/8",
        );
        assert_eq!(p.message, "'su root' failed for lonvick on /dev/pts/8");
        let p = parse("<13>1 - - - - - [a@1 x=\"with \\] bracket\"]");
        assert_eq!((p.host, p.app, p.message.as_str()), (None, None, ""));
    }

    #[test]
    fn rfc3164_with_and_without_host() {
        let p = parse("<30>Nov 25 18:02:11 OpenWrt netifd: Interface 'wan' is now down");
        assert_eq!((p.facility, p.severity), (Some(3), Some(6)));
        assert_eq!(p.host.as_deref(), Some("OpenWrt"));
        assert_eq!(p.app.as_deref(), Some("netifd"));
        assert_eq!(p.message, "Interface 'wan' is now down");
        // Many routers leave out the host.
        let p = parse("<29>Nov  5 08:00:01 dnsmasq[1234]: failed to send packet: Network unreachable");
        assert_eq!(p.host, None);
        assert_eq!(p.app.as_deref(), Some("dnsmasq"));
        assert_eq!(p.message, "failed to send packet: Network unreachable");
    }

    #[test]
    fn garbage_is_kept_whole() {
        for raw in ["", "no header at all", "<999>too big", "<abc>x", "<13", "<13>", "<13>1 ", "\u{0}\u{1}<<>>"] {
            let p = parse(raw);
            assert!(p.message.len() <= raw.len());
        }
        assert_eq!(parse("plain text").message, "plain text");
    }

    #[test]
    fn classifies_router_events() {
        let cases = [
            ("<30>Nov 25 18:02:11 OpenWrt netifd: Interface 'wan' is now down", Some("wan_down")),
            ("<30>Nov 25 18:02:41 OpenWrt netifd: Interface 'wan' is now up", Some("wan_up")),
            ("<29>Nov 25 18:02:11 pppd[812]: Connection terminated.", Some("wan_down")),
            ("<30>Nov 25 18:03:11 pppd[812]: local  IP address 100.64.1.2", Some("wan_up")),
            ("<30>Nov 25 18:03:11 udhcpc: lease of 192.168.12.20 obtained, lease time 86400", Some("dhcp")),
            (
                "<30>Nov 25 18:03:11 dnsmasq[1]: Maximum number of concurrent DNS queries reached (max: 150)",
                Some("dns_failure"),
            ),
            (
                "<30>Nov 25 18:03:11 hostapd: wlan0: STA aa:bb:cc:dd:ee:ff IEEE 802.11: disassociated",
                Some("wifi_assoc"),
            ),
            ("<6>Nov 25 18:00:00 kernel: Booting Linux on physical CPU 0x0", Some("reboot")),
            ("<14>Nov 25 18:00:00 RT-AX58U WAN_Connection: WAN was disconnected.", Some("wan_down")),
            ("<14>Nov 25 18:00:00 RT-AX58U WAN_Connection: WAN was restored.", Some("wan_up")),
            ("<30>Nov 25 18:03:11 dropbear[99]: Password auth succeeded for 'root'", None),
        ];
        for (raw, want) in cases {
            let p = parse(raw);
            assert_eq!(classify(p.app.as_deref(), &p.message), want, "{raw}");
        }
    }

    /// A stable stand-in for the cargo-fuzz target (fuzz/): random and mutated inputs never
    /// panic and never grow the message.
    #[test]
    fn parser_survives_random_input() {
        let seeds = [
            "<30>Nov 25 18:02:11 OpenWrt netifd: Interface 'wan' is now down",
            "<165>1 2003-10-11T22:14:15.003Z h a - - [x@1 a=\"]\"] m",
        ];
        let mut rng = 0x2545F4914F6CDD1Du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for i in 0..50_000 {
            let mut bytes: Vec<u8> = seeds[i % 2].as_bytes().to_vec();
            for _ in 0..(next() % 8) {
                let pos = (next() as usize) % (bytes.len() + 1);
                match next() % 3 {
                    0 if pos < bytes.len() => bytes[pos] = next() as u8,
                    1 => bytes.insert(pos, next() as u8),
                    _ if pos < bytes.len() => {
                        bytes.remove(pos);
                    }
                    _ => {}
                }
            }
            let s = String::from_utf8_lossy(&bytes);
            let p = parse(&s);
            let _ = classify(p.app.as_deref(), &p.message);
        }
    }
}
