//! The path probe over UDP, as classic traceroute and trippy do: datagrams to high ports with
//! rising TTL on an unprivileged UDP socket. Routers answer "time exceeded", the anchor itself
//! "port unreachable"; both arrive on the socket's error queue (`IP_RECVERR`) with the router's
//! address and the port we sent to, which says which probe it was. Some carriers drop ICMP echo
//! beyond their edge but forward UDP, or the reverse: each protocol sees what the other cannot.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::icmp::{self, choose_rtt, icmp4_error, icmp6_error, realtime_ns, setsockopt_int};
use super::path::{GAP, Heard, MAX_TTL, ROUND_GAP, ROUNDS, TIMEOUT, next_limit, summarise};
use crate::sample::{Hop, IcmpError};

/// traceroute's first port: nothing listens there, so the anchor answers "port unreachable".
const BASE_PORT: u16 = 33434;
const PAYLOAD: &[u8; 16] = b"wanwatch-path\0\0\0";
const ORIGIN_ICMP: u8 = 2;
const ORIGIN_ICMP6: u8 = 3;

/// One probe in flight: its TTL, when it left (wall ns for kernel stamps, monotonic).
type Waiting = HashMap<u16, (u8, i128, Instant)>;

/// Probe the path to `target` over UDP: the same rounds and bounds as the ICMP probe.
pub async fn probe(target: IpAddr, first_limit: u8) -> io::Result<(Vec<Hop>, bool, u32)> {
    let v6 = target.is_ipv6();
    let sock = Socket::new(if v6 { Domain::IPV6 } else { Domain::IPV4 }, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_nonblocking(true)?;
    if v6 {
        setsockopt_int(&sock, libc::SOL_IPV6, libc::IPV6_RECVERR, 1)?;
    } else {
        setsockopt_int(&sock, libc::SOL_IP, libc::IP_RECVERR, 1)?;
    }
    let _ = setsockopt_int(&sock, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1);
    let any: SocketAddr = if v6 { (Ipv6Addr::UNSPECIFIED, 0).into() } else { (Ipv4Addr::UNSPECIFIED, 0).into() };
    sock.bind(&any.into())?;
    // SAFETY: `sock` owns its descriptor and the AsyncFd owns `sock`: the fd stays open and the
    // same for the AsyncFd's whole life.
    let fd = unsafe { AsyncFd::register_with_interest(sock, Interest::READABLE | Interest::ERROR) }
        .map_err(io::Error::from)?;

    let mut heard: BTreeMap<u8, Heard> = BTreeMap::new();
    let mut limit = first_limit.clamp(1, MAX_TTL);
    let mut sent = 0u32;
    for round in 0..ROUNDS {
        if round > 0 {
            tokio::time::sleep(ROUND_GAP).await;
        }
        // No deeper than where the anchor answered or a router refused (as the ICMP probe).
        let mut end = limit;
        let mut waiting = Waiting::new();
        for ttl in 1..=limit {
            drain(&fd, &mut waiting, &mut heard, &mut end, target);
            if ttl > end {
                break;
            }
            let port = BASE_PORT + u16::from(round) * u16::from(MAX_TTL) + u16::from(ttl);
            let sock = fd.get_ref();
            let set = if v6 { sock.set_unicast_hops_v6(u32::from(ttl)) } else { sock.set_ttl_v4(u32::from(ttl)) };
            let (send_ns, mono) = (realtime_ns(), Instant::now());
            let dest: SocketAddr = (target, port).into();
            heard.entry(ttl).or_default().sent += 1;
            sent += 1;
            if set.and_then(|()| sock.send_to(PAYLOAD, &dest.into())).is_ok() {
                waiting.insert(port, (ttl, send_ns, mono));
            }
            tokio::time::sleep(GAP).await;
        }
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while !waiting.is_empty() {
            match tokio::time::timeout_at(deadline, fd.ready(Interest::READABLE | Interest::ERROR)).await {
                Ok(Ok(mut guard)) => {
                    drain(&fd, &mut waiting, &mut heard, &mut end, target);
                    guard.clear_ready();
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => break,
            }
        }
        limit = next_limit(&heard, end);
    }
    Ok(summarise(heard, target, sent))
}

/// Everything the socket has: each error queued is matched to its probe by the port it quotes.
fn drain(fd: &AsyncFd<Socket>, waiting: &mut Waiting, heard: &mut BTreeMap<u8, Heard>, end: &mut u8, target: IpAddr) {
    let raw = fd.get_ref().as_raw_fd();
    let mut buf = [0u8; 512];
    loop {
        // A datagram back (something listens on that port after all) is read and dropped.
        while icmp::recv(raw, &mut buf, false).is_ok() {}
        let Ok(msg) = icmp::recv(raw, &mut buf, true) else { return };
        let at = Instant::now();
        let Some((ttl, send_ns, mono)) = msg.port.and_then(|p| waiting.remove(&p)) else { continue };
        let (origin, kind, code) = match (msg.ee.get(4), msg.ee.get(5), msg.ee.get(6)) {
            (Some(&o), Some(&k), Some(&c)) => (o, k, c),
            _ => continue,
        };
        let error = match origin {
            ORIGIN_ICMP => icmp4_error(kind, code),
            ORIGIN_ICMP6 => icmp6_error(kind, code),
            _ => None,
        };
        let Some(error) = error else { continue };
        let router = msg.ee.get(16..).and_then(icmp::sockaddr_ip).unwrap_or(target);
        let rtt = choose_rtt(send_ns, msg.kernel_ns, at.saturating_duration_since(mono));
        let rtt_us = rtt.as_micros().min(u128::from(u32::MAX)) as u32;
        let h = heard.entry(ttl).or_default();
        match error {
            IcmpError::TtlExceeded => {
                h.rtts.push(rtt_us);
                h.addr = Some(router);
            }
            // The anchor itself: nothing listens on the port, so it is reached.
            IcmpError::PortUnreachable if router == target => {
                h.rtts.push(rtt_us);
                h.addr = Some(target);
                *end = (*end).min(ttl);
            }
            other => {
                h.error = Some((other, router));
                *end = (*end).min(ttl);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_is_reached_in_one_hop_by_port_unreachable() {
        // Loopback answers "port unreachable" from itself: reached at TTL 1, no root needed.
        let (hops, reached, sent) = probe("127.0.0.1".parse().unwrap(), 4).await.unwrap();
        assert!(reached, "{hops:?}");
        assert_eq!(hops.len(), 1);
        assert_eq!(hops[0].addr, Some("127.0.0.1".parse().unwrap()));
        assert!(sent <= u32::from(MAX_TTL) * u32::from(ROUNDS));
    }
}
