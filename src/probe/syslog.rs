//! The router's log: a syslog receiver (UDP, optionally TCP) and a file follower, parsing
//! RFC 5424 and RFC 3164 and recognising the events that matter for an outage report from
//! common firmwares (OpenWrt netifd/pppd/udhcpc, dnsmasq, hostapd, ASUS).
//!
//! Every message is stored; a recognised one also carries its class, and link, reboot and
//! Wi-Fi storm classes become events ("router 192.168.12.1 says: ..."), which the ISP report
//! shows. So the receiver is evidence's front door:
//! * only the configured routers may speak (by default the default gateway; [`Admit`]);
//! * lines and the events they make are rate-limited, and every line dropped is counted and
//!   said in an event once a minute;
//! * control bytes (NUL, terminal escapes) are stored escaped (`\x1b`), so no status screen,
//!   export or report replays them.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UdpSocket};

use super::Ctx;
use crate::config::probes::SyslogConfig;
use crate::sample::{EventKind, Record, RouterClass, SyslogLine};

/// The longest message kept; the rest is cut (a router that logs a novel is not our problem).
pub(super) const MAX_LEN: usize = 4096;

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
pub fn classify(app: Option<&str>, message: &str) -> Option<RouterClass> {
    let m = message.to_ascii_lowercase();
    let app = app.unwrap_or("").to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
    if has(&["booting linux", "linux version", "syslogd started", "klogd started", "system reboot", "rebooting"]) {
        return Some(RouterClass::Reboot);
    }
    // ASUS: "WAN_Connection: WAN was disconnected." / "... WAN was restored."
    if app == "wan_connection" {
        if has(&["disconnected", "lost", "down"]) {
            return Some(RouterClass::WanDown);
        }
        if has(&["restored", "connected", "up"]) {
            return Some(RouterClass::WanUp);
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
        return Some(RouterClass::WanDown);
    }
    if has(&[
        "interface 'wan' is now up",
        "interface 'wan6' is now up",
        "wan link up",
        "wan connection established",
        "local  ip address",
        "local ip address",
    ]) {
        return Some(RouterClass::WanUp);
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
        return Some(RouterClass::DnsFailure);
    }
    if (app.starts_with("udhcpc") || app.starts_with("dhcp") || app == "dnsmasq-dhcp" || app == "odhcp6c")
        && has(&["lease", "dhcpack", "renew", "bound", "obtained"])
    {
        return Some(RouterClass::Dhcp);
    }
    if app == "hostapd"
        && has(&["associated", "disassociated", "deauthenticated", "ap-sta-connected", "ap-sta-disconnected"])
    {
        return Some(RouterClass::WifiAssoc);
    }
    None
}

/// Who may send router logs.
#[derive(Debug, Clone, PartialEq)]
pub struct Admit {
    nets: Vec<(IpAddr, u8)>,
    lan: bool,
}

impl Admit {
    /// From `[syslog] allow_from`: "gateway" (the `gateways` given), "lan", an address or a
    /// CIDR block. The error names the entry that is none of these.
    pub fn new(list: &[String], gateways: &[IpAddr]) -> Result<Admit, crate::input::BadInput> {
        let mut a = Admit { nets: Vec::new(), lan: false };
        for item in list {
            match item.as_str() {
                "gateway" => a.nets.extend(gateways.iter().map(|g| (*g, if g.is_ipv4() { 32 } else { 128 }))),
                "lan" => a.lan = true,
                other => {
                    let (addr, bits) = other.split_once('/').unwrap_or((other, ""));
                    let addr: IpAddr = addr.parse().map_err(|_| {
                        crate::input::BadInput::new(other, "is not \"gateway\", \"lan\", an IP address or a CIDR block")
                    })?;
                    let max = if addr.is_ipv4() { 32 } else { 128 };
                    let bits = if bits.is_empty() {
                        max
                    } else {
                        bits.parse::<u8>()
                            .ok()
                            .filter(|b| *b <= max)
                            .ok_or_else(|| crate::input::BadInput::new(other, "has a bad prefix length"))?
                    };
                    a.nets.push((addr, bits));
                }
            }
        }
        Ok(a)
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        (self.lan && is_lan(ip)) || self.nets.iter().any(|&(net, bits)| in_net(ip, net, bits))
    }
}

/// Private, link-local and loopback: addresses a home router can have, not the internet's.
pub fn is_lan(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(a) => a.is_private() || a.is_link_local() || a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback() || a.is_unique_local() || a.is_unicast_link_local(),
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net.to_canonical()) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Control bytes as `\xNN` (tab kept): a log line can carry NUL or a terminal escape that
/// would otherwise reach an ssh session through `status` or `export`.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\t') {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() && c != '\t' {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// A token bucket: `rate` per second, bursts of `burst`.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Bucket {
        Bucket { rate, burst, tokens: burst, at: Instant::now() }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What the receiver did not store, by reason. Counted per report period and in total.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Dropped {
    /// Lines from senders not in `allow_from`.
    pub refused: u64,
    /// Lines over the line rate.
    pub rate: u64,
    /// Router events over their rate (the lines themselves are kept).
    pub events: u64,
    /// Lines cut to MAX_LEN (kept, cut).
    pub truncated: u64,
    /// TCP connections closed at once (not allowed, or too many open).
    pub connections: u64,
    /// Datagrams the kernel dropped because the receiver fell behind (the socket's own count).
    pub kernel: u64,
}

impl Dropped {
    fn add(&mut self, o: &Dropped) {
        self.refused += o.refused;
        self.rate += o.rate;
        self.events += o.events;
        self.truncated += o.truncated;
        self.connections += o.connections;
        self.kernel += o.kernel;
    }

    /// (metric subject, count) for the context metrics.
    fn by_reason(&self) -> [(&'static str, u64); 6] {
        [
            ("receive_buffer_full", self.kernel),
            ("not_allowed", self.refused),
            ("rate_limit", self.rate),
            ("event_rate_limit", self.events),
            ("truncated", self.truncated),
            ("connection_refused", self.connections),
        ]
    }
}

/// Turns classified messages into events, Wi-Fi storms included; admits and limits lines.
pub(super) struct Events {
    wifi: VecDeque<Instant>,
    storm_per_min: u32,
    storm_reported: Option<Instant>,
    admit: Admit,
    lines: Bucket,
    /// Router-log events: a flapping (or lying) router makes at most this many a minute.
    events: Bucket,
    /// Dropped since the last report, and the last address refused.
    dropped: Dropped,
    refused_from: Option<String>,
    reported: Instant,
    /// Dropped since the agent started (up to the last report).
    total: Dropped,
    /// The totals last written as metrics.
    metrics_sent: Dropped,
}

impl Events {
    fn new(cfg: &SyslogConfig, admit: Admit) -> Events {
        let rate = f64::from(cfg.max_lines_per_s);
        Events {
            wifi: VecDeque::new(),
            storm_per_min: cfg.wifi_storm_per_min,
            storm_reported: None,
            admit,
            lines: Bucket::new(rate, rate * 10.0),
            events: Bucket::new(6.0 / 60.0, 6.0),
            dropped: Dropped::default(),
            refused_from: None,
            reported: Instant::now(),
            total: Dropped::default(),
            metrics_sent: Dropped::default(),
        }
    }

    fn event(&mut self, class: RouterClass, host: &str, message: &str) -> Option<(EventKind, String)> {
        let ev = match class {
            RouterClass::WanDown => Some((EventKind::RouterWanDown, format!("router {host} says: {message}"))),
            RouterClass::WanUp => Some((EventKind::RouterWanUp, format!("router {host} says: {message}"))),
            RouterClass::Reboot => Some((EventKind::RouterReboot, format!("router {host} says: {message}"))),
            RouterClass::DnsFailure => Some((EventKind::RouterDnsFailure, format!("router {host} says: {message}"))),
            RouterClass::WifiAssoc => {
                let now = Instant::now();
                self.wifi.push_back(now);
                while self.wifi.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60)) {
                    self.wifi.pop_front();
                }
                let calm = self.storm_reported.is_none_or(|t| now.duration_since(t) > Duration::from_secs(600));
                if self.wifi.len() as u32 > self.storm_per_min && calm {
                    self.storm_reported = Some(now);
                    Some((
                        EventKind::WifiStorm,
                        format!("router {host} says: {} Wi-Fi (dis)associations in a minute", self.wifi.len()),
                    ))
                } else {
                    None
                }
            }
            RouterClass::Dhcp => None,
        };
        match ev {
            Some(e) if self.events.take() => Some(e),
            Some(_) => {
                self.dropped.events += 1;
                None
            }
            None => None,
        }
    }

    /// Whether `source` may send at all; counts it if not.
    fn allowed(&mut self, source: Option<IpAddr>) -> bool {
        if let Some(ip) = source
            && !self.admit.allows(ip)
        {
            self.dropped.refused += 1;
            self.refused_from = Some(ip.to_string());
            return false;
        }
        true
    }

    /// Whether one more line fits the rate; counts it if not.
    fn within_rate(&mut self) -> bool {
        if !self.lines.take() {
            self.dropped.rate += 1;
            return false;
        }
        true
    }

    /// Whether a new TCP connection must be closed at once: a sender not allowed, or
    /// `open` already at the cap.
    pub(super) fn refuse_connection(&mut self, ip: IpAddr, open: usize) -> bool {
        let refuse = !self.admit.allows(ip) || open >= super::syslog_tcp::MAX_CONNECTIONS;
        if refuse {
            self.dropped.connections += 1;
            self.refused_from = Some(ip.to_string());
        }
        refuse
    }

    pub(super) fn count_truncated(&mut self, lines: u64) {
        self.dropped.truncated += lines;
    }

    /// Take in the kernel's running count of datagrams dropped on our UDP socket.
    fn count_kernel_drops(&mut self, total: u64) {
        let seen = self.total.kernel + self.dropped.kernel;
        self.dropped.kernel += total.saturating_sub(seen);
    }

    /// Everything dropped since the agent started.
    fn totals(&self) -> Dropped {
        let mut t = self.total;
        t.add(&self.dropped);
        t
    }

    /// The totals, when they changed since they were last written (as context metrics, which
    /// `status` and `/metrics` show).
    fn new_totals(&mut self) -> Option<Dropped> {
        let t = self.totals();
        (t != self.metrics_sent).then(|| {
            self.metrics_sent = t;
            t
        })
    }

    /// Once a minute, if anything was dropped: what, for the events table.
    fn drop_report(&mut self, force: bool) -> Option<String> {
        if self.dropped == Dropped::default() || (!force && self.reported.elapsed() < Duration::from_secs(60)) {
            return None;
        }
        let d = std::mem::take(&mut self.dropped);
        self.total.add(&d);
        self.reported = Instant::now();
        let mut parts = Vec::new();
        let last = self.refused_from.take().unwrap_or_default();
        if d.refused > 0 {
            parts.push(format!("{} lines from senders not allowed in [syslog] allow_from (last: {last})", d.refused));
        }
        if d.rate > 0 {
            parts.push(format!("{} lines over the rate limit", d.rate));
        }
        if d.events > 0 {
            parts.push(format!("{} router events over the rate limit (kept as log lines)", d.events));
        }
        if d.truncated > 0 {
            parts.push(format!("{} lines cut to {MAX_LEN} bytes", d.truncated));
        }
        if d.kernel > 0 {
            parts.push(format!("{} datagrams dropped by the kernel (the receiver fell behind)", d.kernel));
        }
        if d.connections > 0 {
            parts.push(format!(
                "{} TCP connections closed at once (not allowed or too many; last: {last})",
                d.connections
            ));
        }
        Some(format!("syslog dropped {}", parts.join(", ")))
    }
}

/// Say what was dropped: an event for people, and the running totals as metrics.
async fn report_drops(ctx: &Ctx, event: Option<String>, totals: Option<Dropped>) {
    if let Some(detail) = event {
        tracing::warn!("{detail}");
        ctx.event(EventKind::SyslogDropped, detail).await;
    }
    let Some(total) = totals else { return };
    let ts = ctx.now();
    for (reason, n) in total.by_reason().into_iter().filter(|(_, n)| *n > 0) {
        ctx.emit(Record::Metric(crate::sample::Metric::new(ts, crate::series::SYSLOG_DROPPED, reason, n as f64))).await;
    }
}

pub(super) async fn handle(
    ctx: &Ctx,
    events: &tokio::sync::Mutex<Events>,
    source: &str,
    ip: Option<IpAddr>,
    raw: &str,
) {
    let mut raw = raw;
    if raw.len() > MAX_LEN {
        events.lock().await.count_truncated(1);
        let mut cut = MAX_LEN;
        while !raw.is_char_boundary(cut) {
            cut -= 1;
        }
        raw = &raw[..cut];
    }
    if raw.trim().is_empty() {
        return;
    }
    if !events.lock().await.allowed(ip) {
        return;
    }
    let p = parse(raw);
    // dnsmasq's query log is the household's browsing, not a router event: a classified query
    // goes to the sessions probe as a count (its channel bounds it), no query line is stored,
    // and a chatty DNS log does not use up the rate meant for the router's own lines.
    if super::sessions::is_dnsmasq_query_log(p.app.as_deref(), &p.message) {
        if let Some((domain, client)) = super::sessions::parse_dnsmasq_query(&p.message)
            && let Some(activity) = super::sessions::classify(domain)
        {
            ctx.seen(super::sessions::Seen { ts: ctx.now(), client: client.to_string(), activity });
        }
        return;
    }
    if !events.lock().await.within_rate() {
        return;
    }
    let class = classify(p.app.as_deref(), &p.message);
    let esc = |s: &str| escape_controls(s).into_owned();
    let line = SyslogLine {
        ts: ctx.now(),
        source: source.to_string(),
        facility: p.facility,
        severity: p.severity,
        host: p.host.as_deref().map(esc),
        app: p.app.as_deref().map(esc),
        message: esc(&p.message),
        class,
    };
    let host = line.host.clone().unwrap_or_else(|| source.to_string());
    let message = line.message.clone();
    ctx.emit(Record::Syslog(line)).await;
    if let Some(class) = class {
        let ev = events.lock().await.event(class, &host, &message);
        if let Some((kind, detail)) = ev {
            ctx.event(kind, detail).await;
        }
    }
}

/// Bind UDP at `listen`, or at the fallback port when the port is privileged and not ours.
async fn bind_udp(listen: SocketAddr, fallback: u16) -> std::io::Result<UdpSocket> {
    let sock = match UdpSocket::bind(listen).await {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && listen.port() < 1024 => {
            let alt = SocketAddr::new(listen.ip(), fallback);
            tracing::warn!(
                "syslog: may not bind {listen} ({e}); listening on {alt} (grant CAP_NET_BIND_SERVICE for 514)"
            );
            UdpSocket::bind(alt).await
        }
        other => other,
    }?;
    // Room for a burst (a router rebooting logs hundreds of lines at once); what still does
    // not fit is counted from the kernel's own figure.
    let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(1 << 20);
    Ok(sock)
}

/// The kernel's count of datagrams dropped on the UDP socket bound to `port`
/// (`/proc/net/udp[6]`, last column). None when it cannot be read.
pub fn kernel_udp_drops(port: u16) -> Option<u64> {
    let mut total = None;
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1).and_then(|a| a.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                *total.get_or_insert(0) += f.last().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    total
}

/// How long a listener that could not bind waits before trying again.
const REBIND_EVERY: Duration = Duration::from_secs(30);

/// `bind` until it works or the agent stops: a port held for a moment by another program (an
/// old agent still stopping, a client that happened to take it) must not leave the router's
/// log unheard until the next restart. Says so once, and again when it works.
async fn bind_retrying<T, F, Fut>(ctx: &Ctx, what: &str, mut bind: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<T>>,
{
    let mut failed = false;
    loop {
        match bind().await {
            Ok(sock) => {
                if failed {
                    tracing::info!("syslog: listening on {what} now");
                }
                return Some(sock);
            }
            Err(e) if !failed => {
                failed = true;
                tracing::warn!(
                    "syslog: cannot listen on {what}: {e}; trying again every {}",
                    humantime::format_duration(REBIND_EVERY)
                );
            }
            Err(_) => {}
        }
        if !ctx.sleep(REBIND_EVERY).await {
            return None;
        }
    }
}

pub async fn run(cfg: SyslogConfig, gateways: Vec<IpAddr>, ctx: Ctx) {
    let admit = Admit::new(&cfg.allow_from, &gateways).expect("validated in config");
    let events = std::sync::Arc::new(tokio::sync::Mutex::new(Events::new(&cfg, admit)));
    let listen: SocketAddr = cfg.listen.parse().expect("validated in config");
    let mut tasks = tokio::task::JoinSet::new();
    // The UDP socket once bound, also held by the drop reporter: the kernel's drop count lives
    // only as long as the socket, and the last count is taken at stop.
    let udp: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<UdpSocket>>> = Default::default();
    {
        let (ctx, events, udp) = (ctx.clone(), events.clone(), udp.clone());
        let fallback = cfg.fallback_port;
        tasks.spawn(async move {
            let what = format!("udp {listen}");
            let Some(sock) = bind_retrying(&ctx, &what, || bind_udp(listen, fallback)).await else { return };
            let sock = udp.get_or_init(|| std::sync::Arc::new(sock)).clone();
            tracing::info!("syslog: receiving on udp {}", sock.local_addr().map(|a| a.to_string()).unwrap_or_default());
            // The largest datagram there is: a long line is cut to MAX_LEN and counted,
            // never cut silently by a short buffer.
            let mut buf = vec![0u8; 65_536];
            loop {
                let mut stop = ctx.stop.clone();
                tokio::select! {
                    r = sock.recv_from(&mut buf) => match r {
                        Ok((n, from)) => {
                            let text = String::from_utf8_lossy(&buf[..n]);
                            for line in text.lines() {
                                handle(&ctx, &events, &from.ip().to_string(), Some(from.ip()), line).await;
                            }
                        }
                        Err(e) => tracing::debug!("syslog recv: {e}"),
                    },
                    _ = stop.changed() => return,
                }
            }
        });
    }
    if cfg.tcp {
        let (ctx, events) = (ctx.clone(), events.clone());
        let idle = cfg.tcp_idle;
        tasks.spawn(async move {
            let what = format!("tcp {listen}");
            let Some(l) = bind_retrying(&ctx, &what, || TcpListener::bind(listen)).await else { return };
            tracing::info!("syslog: receiving on {what}");
            super::syslog_tcp::serve(l, idle, ctx, events).await
        });
    }
    {
        // Drop totals are written every 10 s (metrics) and said once a minute (an event), even
        // when the flood has stopped.
        let (ctx, events) = (ctx.clone(), events.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            let mut stop = ctx.stop.clone();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => {}
                }
                let last = *stop.borrow();
                let mut ev = events.lock().await;
                let udp_port = udp.get().and_then(|s| s.local_addr().ok()).map(|a| a.port());
                if let Some(n) = udp_port.and_then(kernel_udp_drops) {
                    ev.count_kernel_drops(n);
                }
                let event = ev.drop_report(last);
                let totals = ev.new_totals();
                drop(ev);
                report_drops(&ctx, event, totals).await;
                if last {
                    return;
                }
            }
        });
    }
    for file in cfg.files.clone() {
        let (ctx, events) = (ctx.clone(), events.clone());
        tasks.spawn(async move { follow(file, ctx, events).await });
    }
    while tasks.join_next().await.is_some() {}
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
                handle(&ctx, &events, &source, None, &line).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port held by another socket at start: the listener waits and binds once it is free,
    /// and gives up only when the agent stops.
    #[test]
    fn a_listener_whose_port_is_taken_binds_once_it_is_free() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        let (out, _rx) = tokio::sync::mpsc::channel(8);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let ctx = Ctx::new(crate::clock::WallClock::system(), out, stop_rx, "unused.db".into());
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        let mut holder = Some(holder);
        let mut tries = 0;
        let bound = rt.block_on(bind_retrying(&ctx, "tcp", || {
            tries += 1;
            let r = std::net::TcpListener::bind(addr);
            // Freed after the second refusal.
            if tries == 2 {
                holder = None;
            }
            std::future::ready(r)
        }));
        assert_eq!(bound.unwrap().local_addr().unwrap(), addr);
        assert_eq!(tries, 3);
        assert!(holder.is_none());

        // Still taken when the agent stops: no listener, and no endless wait.
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        stop.send(true).unwrap();
        let bound = rt.block_on(bind_retrying(&ctx, "tcp", || std::future::ready(std::net::TcpListener::bind(addr))));
        assert!(bound.is_none());
    }

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
            assert_eq!(classify(p.app.as_deref(), &p.message).map(RouterClass::as_str), want, "{raw}");
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

    #[test]
    fn only_allowed_senders_are_admitted() {
        let gw: IpAddr = "192.168.12.1".parse().unwrap();
        let a = Admit::new(&["gateway".into()], &[gw]).unwrap();
        assert!(a.allows(gw));
        assert!(a.allows("::ffff:192.168.12.1".parse().unwrap()), "v4-mapped on a dual-stack socket");
        assert!(!a.allows("192.168.12.7".parse().unwrap()));
        assert!(!a.allows("203.0.113.5".parse().unwrap()));
        let lan = Admit::new(&["lan".into(), "100.64.0.0/10".into()], &[]).unwrap();
        for ok in
            ["10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.1.1", "127.0.0.1", "fd00::1", "fe80::1", "100.64.1.1"]
        {
            assert!(lan.allows(ok.parse().unwrap()), "{ok}");
        }
        for bad in ["8.8.8.8", "203.0.113.5", "2001:db8::1", "172.32.0.1"] {
            assert!(!lan.allows(bad.parse().unwrap()), "{bad}");
        }
        let e = Admit::new(&["routr".into()], &[]).unwrap_err();
        assert_eq!(e.input, "routr", "{e}");
        assert!(Admit::new(&["10.0.0.0/33".into()], &[]).is_err());
    }

    #[test]
    fn control_bytes_are_escaped() {
        assert_eq!(escape_controls("plain\ttext"), "plain\ttext");
        assert_eq!(escape_controls("a\u{1b}[2Jb\0c"), "a\\x1b[2Jb\\x00c");
    }
}
