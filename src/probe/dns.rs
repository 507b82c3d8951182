//! DNS: how long names take to resolve, through the Pi's own resolver and directly against
//! configured servers over UDP (hickory-proto builds and parses the messages), with the
//! response code and the kind of failure.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;

use super::{Ctx, blocking};
use crate::config::probes::{DnsConfig, parse_server};
use crate::sample::Metric;
use crate::series;

/// The result of one lookup.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    pub latency_ms: Option<f64>,
    /// DNS response code (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, ...), when a response came.
    pub rcode: Option<u16>,
    pub answers: usize,
    /// Why there is no usable answer: timeout, send-error, bad-reply, nxdomain, servfail, ...
    pub failure: Option<String>,
}

pub async fn run(cfg: DnsConfig, ctx: Ctx) {
    ctx.every(Duration::from_secs(2), cfg.interval, || async {
        for server in &cfg.servers {
            for name in &cfg.names {
                let lookup = if server == "system" {
                    system_lookup(name, cfg.timeout).await
                } else {
                    match parse_server(server) {
                        Some(addr) => udp_lookup(name, addr, cfg.timeout).await,
                        None => continue,
                    }
                };
                record(&ctx, &format!("{name}@{server}"), &lookup).await;
            }
        }
    })
    .await;
}

async fn record(ctx: &Ctx, subject: &str, l: &Lookup) {
    let ts = ctx.now();
    let m = match (l.latency_ms, &l.failure) {
        (Some(ms), None) => Metric::new(ts, series::DNS_LATENCY, subject, ms),
        (ms, Some(why)) => {
            Metric { value: ms, note: Some(why.clone()), ..Metric::new(ts, series::DNS_LATENCY, subject, 0.0) }
        }
        (None, None) => Metric::failed(ts, series::DNS_LATENCY, subject, "no answer"),
    };
    ctx.metric(m).await;
    if let Some(rcode) = l.rcode {
        ctx.metric(Metric::new(ts, series::DNS_RCODE, subject, rcode as f64)).await;
    }
}

/// Resolve with the system resolver (getaddrinfo), as every application on the Pi does.
pub async fn system_lookup(name: &str, timeout: Duration) -> Lookup {
    let host = format!("{name}:0");
    let started = Instant::now();
    let result = blocking(timeout, move || host.to_socket_addrs().map(|a| a.count())).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(Ok(n)) if n > 0 => Lookup { latency_ms: Some(ms), rcode: Some(0), answers: n, failure: None },
        Ok(Ok(_)) => Lookup { latency_ms: Some(ms), rcode: Some(0), answers: 0, failure: Some("no addresses".into()) },
        // getaddrinfo does not say which rcode; its message does ("Name or service not known").
        Ok(Err(e)) => Lookup { latency_ms: Some(ms), rcode: None, answers: 0, failure: Some(format!("resolver: {e}")) },
        Err(why) => Lookup { latency_ms: None, rcode: None, answers: 0, failure: Some(why.to_string()) },
    }
}

/// Ask `server` directly for `name`'s A records over UDP.
pub async fn udp_lookup(name: &str, server: SocketAddr, timeout: Duration) -> Lookup {
    let fail = |why: String| Lookup { latency_ms: None, rcode: None, answers: 0, failure: Some(why) };
    let Ok(qname) = Name::from_ascii(name) else { return fail(format!("bad name `{name}`")) };
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(qname, RecordType::A));
    let id = msg.metadata.id;
    let Ok(bytes) = msg.to_vec() else { return fail("cannot encode query".into()) };
    let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
    let sock = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => return fail(format!("send-error: {e}")),
    };
    let started = Instant::now();
    if let Err(e) = sock.send_to(&bytes, server).await {
        return fail(format!("send-error: {e}"));
    }
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let recv = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await;
        let (n, from) = match recv {
            Err(_) => return fail("timeout".into()),
            Ok(Err(e)) => return fail(format!("recv-error: {e}")),
            Ok(Ok(x)) => x,
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        // Ignore stray datagrams: only the server's answer to our id counts.
        if from != server {
            continue;
        }
        let reply = match Message::from_vec(&buf[..n]) {
            Ok(m) => m,
            Err(_) => {
                return Lookup { latency_ms: Some(ms), rcode: None, answers: 0, failure: Some("bad-reply".into()) };
            }
        };
        if reply.metadata.id != id {
            continue;
        }
        let rcode = reply.metadata.response_code;
        let failure = match rcode {
            ResponseCode::NoError => None,
            ResponseCode::NXDomain => Some("nxdomain".to_string()),
            ResponseCode::ServFail => Some("servfail".to_string()),
            ResponseCode::Refused => Some("refused".to_string()),
            other => Some(format!("rcode {}", u16::from(other))),
        };
        return Lookup { latency_ms: Some(ms), rcode: Some(u16::from(rcode)), answers: reply.answers.len(), failure };
    }
}
