//! ICMP echo on our own sockets: what a reply *is*, and when it arrived.
//!
//! Why not a ping crate: two things decide whether a stored sample is true, and none of the
//! crates gives them to us.
//! * **An ICMP error is not a reply.** A router whose WAN is down answers our echo with
//!   *Destination Unreachable*; that is a lost ping with a reason and a witness (the router's
//!   address), never an RTT. On a raw socket errors arrive as ICMP packets quoting our echo; on
//!   an unprivileged ping socket (`SOCK_DGRAM`) they arrive on the socket's error queue
//!   (`IP_RECVERR`), as iputils' `ping` reads them.
//! * **The RTT is the wire's, not the scheduler's.** The send time is taken just before
//!   `sendto`; the receive time is the kernel's (`SO_TIMESTAMPNS`), so time this process spends
//!   descheduled before it reads the reply is not taken off (or added to) the RTT.
//!
//! Parsing is pure (`parse_*`), so every packet shape is unit-tested without a socket.

use std::collections::HashMap;
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use crate::sample::{Failure, IcmpError};

/// How the socket was opened: an unprivileged ping socket (the kernel picks our identifier and
/// hands us only our own replies) or a raw socket (root / CAP_NET_RAW: we filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockKind {
    Dgram,
    Raw,
}

impl SockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SockKind::Dgram => "ping socket",
            SockKind::Raw => "raw socket",
        }
    }
}

/// Which kinds to try, in order. `WANWATCH_ICMP_SOCKET=dgram|raw` forces one (the tests run
/// both paths on the same machine); the default prefers the unprivileged ping socket.
pub fn kinds_to_try() -> Vec<SockKind> {
    match std::env::var("WANWATCH_ICMP_SOCKET").as_deref() {
        Ok("dgram") => vec![SockKind::Dgram],
        Ok("raw") => vec![SockKind::Raw],
        _ => vec![SockKind::Dgram, SockKind::Raw],
    }
}

/// What came back for one of our echo requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// An echo reply from `from`.
    Reply { from: IpAddr, ident: u16, seq: u16 },
    /// An ICMP error quoting our echo to `target`, sent by `router`.
    Error { target: IpAddr, ident: u16, seq: u16, router: IpAddr, error: IcmpError },
    /// The kernel could not deliver our echo to `target` (no ARP/neighbour answer, ...).
    Local { target: IpAddr, seq: u16 },
}

// ICMP types.
const V4_ECHO_REPLY: u8 = 0;
const V4_UNREACH: u8 = 3;
const V4_ECHO: u8 = 8;
const V4_TIME_EXCEEDED: u8 = 11;
const V4_PARAM: u8 = 12;
const V6_UNREACH: u8 = 1;
const V6_TOO_BIG: u8 = 2;
const V6_TIME_EXCEEDED: u8 = 3;
const V6_PARAM: u8 = 4;
const V6_ECHO: u8 = 128;
const V6_ECHO_REPLY: u8 = 129;

/// The error an ICMP (v4) type/code pair means; None for types that are not errors about our
/// echo (source quench, redirects).
pub fn icmp4_error(kind: u8, code: u8) -> Option<IcmpError> {
    Some(match (kind, code) {
        (V4_UNREACH, 0 | 6 | 11) => IcmpError::NetUnreachable,
        (V4_UNREACH, 1 | 7 | 12) => IcmpError::HostUnreachable,
        (V4_UNREACH, 2) => IcmpError::ProtocolUnreachable,
        (V4_UNREACH, 3) => IcmpError::PortUnreachable,
        (V4_UNREACH, 4) => IcmpError::TooBig,
        (V4_UNREACH, 9 | 10 | 13 | 14 | 15) => IcmpError::Prohibited,
        (V4_UNREACH, _) => IcmpError::Unreachable,
        (V4_TIME_EXCEEDED, _) => IcmpError::TtlExceeded,
        (V4_PARAM, _) => IcmpError::ParameterProblem,
        _ => return None,
    })
}

/// The same for ICMPv6 (types 1-4).
pub fn icmp6_error(kind: u8, code: u8) -> Option<IcmpError> {
    Some(match (kind, code) {
        (V6_UNREACH, 0) => IcmpError::NetUnreachable,
        (V6_UNREACH, 1 | 5 | 6) => IcmpError::Prohibited,
        (V6_UNREACH, 3) => IcmpError::HostUnreachable,
        (V6_UNREACH, 4) => IcmpError::PortUnreachable,
        (V6_UNREACH, _) => IcmpError::Unreachable,
        (V6_TOO_BIG, _) => IcmpError::TooBig,
        (V6_TIME_EXCEEDED, _) => IcmpError::TtlExceeded,
        (V6_PARAM, _) => IcmpError::ParameterProblem,
        _ => return None,
    })
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// An echo request (or the quoted start of one): identifier and sequence.
fn echo_header(b: &[u8], echo_type: u8) -> Option<(u16, u16)> {
    (b.len() >= 8 && b[0] == echo_type).then(|| (be16(b, 4).unwrap_or(0), be16(b, 6).unwrap_or(0)))
}

/// A packet read from an IPv4 raw socket (the IP header included). `from` is the sender.
pub fn parse_v4_raw(pkt: &[u8]) -> Option<Heard> {
    let ihl = usize::from(*pkt.first()? & 0x0f) * 4;
    if pkt.len() < 20 || ihl < 20 || pkt[9] != 1 {
        return None;
    }
    let from = IpAddr::V4(Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]));
    parse_v4_icmp(pkt.get(ihl..)?, from)
}

/// An ICMP (v4) message without its IP header, as a ping socket returns it.
pub fn parse_v4_icmp(icmp: &[u8], from: IpAddr) -> Option<Heard> {
    let (&kind, &code) = (icmp.first()?, icmp.get(1)?);
    if kind == V4_ECHO_REPLY {
        let (ident, seq) = echo_header(icmp, V4_ECHO_REPLY)?;
        return Some(Heard::Reply { from, ident, seq });
    }
    let error = icmp4_error(kind, code)?;
    // The quoted datagram: its IP header, then at least 8 bytes of our echo request.
    let inner = icmp.get(8..)?;
    let ihl = usize::from(*inner.first()? & 0x0f) * 4;
    if inner.len() < ihl + 8 || ihl < 20 || inner[9] != 1 {
        return None;
    }
    let target = IpAddr::V4(Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]));
    let (ident, seq) = echo_header(&inner[ihl..], V4_ECHO)?;
    Some(Heard::Error { target, ident, seq, router: from, error })
}

/// An ICMPv6 message (raw and ping sockets alike return it without the IPv6 header).
pub fn parse_v6_icmp(icmp: &[u8], from: IpAddr) -> Option<Heard> {
    let (&kind, &code) = (icmp.first()?, icmp.get(1)?);
    if kind == V6_ECHO_REPLY {
        let (ident, seq) = echo_header(icmp, V6_ECHO_REPLY)?;
        return Some(Heard::Reply { from, ident, seq });
    }
    let error = icmp6_error(kind, code)?;
    // The quoted packet: a 40-byte IPv6 header (next header ICMPv6), then our echo request.
    let inner = icmp.get(8..)?;
    if inner.len() < 48 || inner[0] >> 4 != 6 || inner[6] != 58 {
        return None;
    }
    let dst: [u8; 16] = inner[24..40].try_into().ok()?;
    let (ident, seq) = echo_header(&inner[40..], V6_ECHO)?;
    Some(Heard::Error { target: IpAddr::V6(Ipv6Addr::from(dst)), ident, seq, router: from, error })
}

/// What `recvmsg(MSG_ERRQUEUE)` on a ping socket returned: `ee` the `sock_extended_err` bytes
/// (with the offender's address after them), `data` the quoted echo header, `target` the
/// address our echo was for.
pub fn parse_errqueue(ee: &[u8], data: &[u8], target: IpAddr) -> Option<Heard> {
    const ORIGIN_LOCAL: u8 = 1;
    const ORIGIN_ICMP: u8 = 2;
    const ORIGIN_ICMP6: u8 = 3;
    let (origin, kind, code) = (*ee.get(4)?, *ee.get(5)?, *ee.get(6)?);
    let echo = if target.is_ipv4() { V4_ECHO } else { V6_ECHO };
    let (ident, seq) = echo_header(data, echo)?;
    let error = match origin {
        ORIGIN_LOCAL => return Some(Heard::Local { target, seq }),
        ORIGIN_ICMP => icmp4_error(kind, code)?,
        ORIGIN_ICMP6 => icmp6_error(kind, code)?,
        _ => return None,
    };
    // SO_EE_OFFENDER: a sockaddr right after the 16-byte sock_extended_err.
    let router = sockaddr_ip(ee.get(16..)?).unwrap_or(target);
    Some(Heard::Error { target, ident, seq, router, error })
}

/// The address in a raw `sockaddr_in` / `sockaddr_in6`.
pub(crate) fn sockaddr_ip(b: &[u8]) -> Option<IpAddr> {
    let family = i32::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
    if family == libc::AF_INET {
        let a: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(a)))
    } else if family == libc::AF_INET6 {
        let a: [u8; 16] = b.get(8..24)?.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(a)))
    } else {
        None
    }
}

/// An echo request with the internet checksum filled in (the kernel recomputes it for ICMPv6
/// and for ping sockets; a raw IPv4 socket sends what we give it).
pub fn echo_request(v6: bool, ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(8 + payload.len());
    p.extend_from_slice(&[if v6 { V6_ECHO } else { V4_ECHO }, 0, 0, 0]);
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(payload);
    if !v6 {
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The RTT to store: the kernel's receive stamp minus our send stamp (both CLOCK_REALTIME),
/// unless a clock step between them makes it impossible, when the monotonic userspace RTT
/// (never shorter than the true one) stands instead.
pub fn choose_rtt(send_ns: i128, kernel_rx_ns: Option<i128>, user: Duration) -> Duration {
    let user_ns = user.as_nanos() as i128;
    match kernel_rx_ns.map(|rx| rx - send_ns) {
        // The kernel saw the reply before we read it: 0 < kernel RTT <= user RTT (+1 ms for a
        // slewing clock's drift).
        Some(k) if k > 0 && k <= user_ns + 1_000_000 => Duration::from_nanos(k as u64),
        _ => user,
    }
}

pub fn realtime_ns() -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// What a waiting ping is told.
#[derive(Debug)]
pub enum Answer {
    Reply {
        kernel_ns: Option<i128>,
        at: Instant,
    },
    /// Also timed: a path probe's hop RTT is the time its ICMP error took to come back.
    Failed {
        failure: Failure,
        kernel_ns: Option<i128>,
        at: Instant,
    },
}

/// One echo on its way: [`Flight::wait`] for what comes back.
pub struct Flight {
    pinger: Pinger,
    addr: IpAddr,
    seq: u16,
    sent: Sent,
    rx: Option<oneshot::Receiver<Answer>>,
}

/// What came back for a [`Flight`], with the round trip of an ICMP error too (a hop's RTT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Landed {
    pub result: Result<u32, Failure>,
    /// Microseconds until the answer came, reply or error; None on a timeout or send error.
    pub rtt_us: Option<u32>,
}

impl Flight {
    /// Wait up to `timeout` for the reply or error.
    pub async fn wait(mut self, timeout: Duration) -> Landed {
        let Some(rx) = self.rx.take() else {
            return Landed { result: Err(Failure::SendError), rtt_us: None };
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => self.sent.landed(answer),
            _ => {
                // A reply after this is dropped: a late reply is one lost ping, not two.
                self.pinger.forget(self.addr, self.seq);
                Landed { result: Err(Failure::Timeout), rtt_us: None }
            }
        }
    }
}

/// When an echo left: the monotonic instant (outage timing) and the realtime clock (against the
/// kernel's receive stamp).
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub mono: Instant,
    send_ns: i128,
}

impl Sent {
    /// The result and round trip of what came back for this echo.
    pub fn landed(&self, answer: Answer) -> Landed {
        let micros = |kernel_ns: Option<i128>, at: Instant| {
            let rtt = choose_rtt(self.send_ns, kernel_ns, at.saturating_duration_since(self.mono));
            rtt.as_micros().min(u128::from(u32::MAX)) as u32
        };
        match answer {
            Answer::Reply { kernel_ns, at } => {
                let us = micros(kernel_ns, at);
                Landed { result: Ok(us), rtt_us: Some(us) }
            }
            Answer::Failed { failure, kernel_ns, at } => {
                let timed = matches!(failure, Failure::Icmp { .. }).then(|| micros(kernel_ns, at));
                Landed { result: Err(failure), rtt_us: timed }
            }
        }
    }
}

/// Where the answers to the pings sent with [`Pinger::send_queued`] go: (target, sequence) and
/// what came back.
pub type Queue = tokio::sync::mpsc::UnboundedSender<((IpAddr, u16), Answer)>;

/// Who waits for an echo's answer: one task for one ping ([`Flight`]), or a task that keeps
/// many in flight and reads their answers off one queue.
enum Waiter {
    Once(oneshot::Sender<Answer>),
    Queue(Queue),
}

impl Waiter {
    fn tell(self, key: (IpAddr, u16), answer: Answer) {
        match self {
            Waiter::Once(tx) => {
                let _ = tx.send(answer);
            }
            Waiter::Queue(q) => {
                let _ = q.send((key, answer));
            }
        }
    }
}

/// A fast hasher: the keys are our own (target, sequence), nothing an attacker picks, and
/// SipHash was ~500 instructions of every ping's ~17k (an insert and a remove).
type Pending = Mutex<HashMap<(IpAddr, u16), Waiter, foldhash::fast::RandomState>>;

/// One ICMP socket (one address family) shared by every target of that family, with the task
/// that reads it. Cheap to clone; the reader stops when the last clone is dropped.
#[derive(Clone)]
pub struct Pinger(Arc<Shared>);

struct Shared {
    fd: Arc<AsyncFd<Socket>>,
    demux: Arc<Demux>,
    reader: tokio::task::JoinHandle<()>,
}

/// Who is waiting for what comes in on one socket, and how to tell: replies and errors are
/// matched to the ping that asked by (target, sequence).
struct Demux {
    v6: bool,
    kind: SockKind,
    ident: u16,
    pending: Pending,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Pinger {
    /// Open a socket of `kind`. Must run inside a tokio runtime.
    pub fn open(v6: bool, kind: SockKind) -> io::Result<Pinger> {
        let (domain, proto) = if v6 { (Domain::IPV6, Protocol::ICMPV6) } else { (Domain::IPV4, Protocol::ICMPV4) };
        let ty = if kind == SockKind::Dgram { Type::DGRAM } else { Type::RAW };
        let sock = Socket::new(domain, ty, Some(proto))?;
        sock.set_nonblocking(true)?;
        // Best effort: without kernel stamps the RTT falls back to userspace time (a little
        // long under load, never short), and emulators (qemu-user) may not pass these on.
        if let Err(e) = setsockopt_int(&sock, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1) {
            tracing::warn!("no kernel receive timestamps on the ICMP socket ({e}); RTTs are timed in userspace");
        }
        let ident = match kind {
            SockKind::Dgram => {
                // Errors about our echoes come on the error queue only when asked for.
                if v6 {
                    setsockopt_int(&sock, libc::SOL_IPV6, libc::IPV6_RECVERR, 1)?;
                } else {
                    setsockopt_int(&sock, libc::SOL_IP, libc::IP_RECVERR, 1)?;
                }
                // Binding picks our identifier (the "port" of a ping socket).
                let any: SocketAddr =
                    if v6 { (Ipv6Addr::UNSPECIFIED, 0).into() } else { (Ipv4Addr::UNSPECIFIED, 0).into() };
                sock.bind(&any.into())?;
                sock.local_addr()?.as_socket().map(|a| a.port()).unwrap_or(0)
            }
            SockKind::Raw => {
                if v6 {
                    // Only echo replies and errors, not every neighbour advertisement.
                    // (The parser ignores the rest anyway; the filter only saves wake-ups.)
                    if let Err(e) =
                        set_icmp6_filter(&sock, &[V6_ECHO_REPLY, V6_UNREACH, V6_TOO_BIG, V6_TIME_EXCEEDED, V6_PARAM])
                    {
                        tracing::debug!("no ICMPv6 filter ({e})");
                    }
                }
                rand::random()
            }
        };
        // SAFETY: `sock` owns its descriptor and the AsyncFd owns `sock`: the fd stays open and
        // the same for the AsyncFd's whole life.
        let fd = unsafe { AsyncFd::register_with_interest(sock, Interest::READABLE | Interest::ERROR) }
            .map_err(io::Error::from)?;
        let fd = Arc::new(fd);
        let demux = Arc::new(Demux { v6, kind, ident, pending: Pending::default() });
        let reader = tokio::spawn(read_loop(fd.clone(), demux.clone()));
        Ok(Pinger(Arc::new(Shared { fd, demux, reader })))
    }

    pub fn kind(&self) -> SockKind {
        self.0.demux.kind
    }

    /// Send one echo now, with `ttl` as its TTL / hop limit if given (a path probe: the router
    /// where it runs out answers "time exceeded"). The TTL is a socket option, so a socket sent
    /// on with a TTL must be used by one task only (the path probe opens its own).
    pub fn send(&self, addr: IpAddr, scope_id: u32, seq: u16, payload: &[u8], ttl: Option<u8>) -> Flight {
        let (tx, rx) = oneshot::channel();
        let (sent, ok) = self.send_for(addr, scope_id, seq, payload, ttl, Waiter::Once(tx));
        Flight { pinger: self.clone(), addr, seq, sent, rx: ok.then_some(rx) }
    }

    /// Send one echo now; what comes back goes to `queue`, until [`Pinger::forget`] gives up on
    /// it. Also returns whether it was sent (a send error is the ping's result).
    pub fn send_queued(&self, addr: IpAddr, scope_id: u32, seq: u16, payload: &[u8], queue: &Queue) -> (Sent, bool) {
        self.send_for(addr, scope_id, seq, payload, None, Waiter::Queue(queue.clone()))
    }

    fn send_for(
        &self,
        addr: IpAddr,
        scope_id: u32,
        seq: u16,
        payload: &[u8],
        ttl: Option<u8>,
        waiter: Waiter,
    ) -> (Sent, bool) {
        let d = &self.0.demux;
        d.pending.lock().unwrap_or_else(|e| e.into_inner()).insert((addr, seq), waiter);
        let packet = echo_request(d.v6, d.ident, seq, payload);
        let dest: SockAddr = match addr {
            IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, 0, 0, scope_id)).into(),
            IpAddr::V4(a) => SocketAddr::from((a, 0)).into(),
        };
        let sock = self.0.fd.get_ref();
        let set_ttl = match ttl {
            Some(t) if d.v6 => sock.set_unicast_hops_v6(u32::from(t)),
            Some(t) => sock.set_ttl_v4(u32::from(t)),
            None => Ok(()),
        };
        let sent = Sent { send_ns: realtime_ns(), mono: Instant::now() };
        if let Err(e) = set_ttl.and_then(|()| self.send_to(&packet, &dest)) {
            self.forget(addr, seq);
            tracing::debug!(%addr, error = %e, "ping not sent");
            return (sent, false);
        }
        (sent, true)
    }

    /// `sendto`, past errors that were not this send's. The socket is shared, and an ICMP
    /// error that came back for an earlier echo (to any target) is pending on it: the kernel
    /// returns that error from the next send instead of sending (the echo is not sent). The
    /// error's details wait on the error queue, so the errors queued there go to their pings
    /// and the send is tried again; a send that fails with nothing queued failed itself (no
    /// route, say), and one retry tells that apart on a raw socket, which has no queue.
    fn send_to(&self, packet: &[u8], dest: &SockAddr) -> io::Result<usize> {
        let sock = self.0.fd.get_ref();
        let mut result = sock.send_to(packet, dest);
        for _ in 0..4 {
            let Err(e) = &result else { break };
            if e.kind() == io::ErrorKind::WouldBlock {
                break;
            }
            let queued = self.0.demux.drain_errors(sock.as_raw_fd());
            tracing::trace!(error = %e, queued, "send met a pending socket error; sending again");
            result = sock.send_to(packet, dest);
            if queued == 0 {
                break;
            }
        }
        result
    }

    /// Stop waiting for the answer to (addr, seq): one that comes later is dropped.
    pub fn forget(&self, addr: IpAddr, seq: u16) {
        self.0.demux.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&(addr, seq));
    }
}

pub fn setsockopt_int(sock: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: passing a valid pointer to an int and its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// ICMP6_FILTER: a 256-bit block list; pass only `types`.
fn set_icmp6_filter(sock: &Socket, types: &[u8]) -> io::Result<()> {
    const ICMP6_FILTER: i32 = 1;
    let mut filter = [u32::MAX; 8];
    for &t in types {
        filter[usize::from(t) >> 5] &= !(1u32 << (t & 31));
    }
    // SAFETY: passing a valid pointer to the 32-byte filter and its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            filter.as_ptr().cast(),
            size_of::<[u32; 8]>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Read everything the socket has (replies, then the error queue) whenever it is readable or
/// has an error queued, and hand each answer to the ping waiting for it.
async fn read_loop(fd: Arc<AsyncFd<Socket>>, demux: Arc<Demux>) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok(mut guard) = fd.ready(Interest::READABLE | Interest::ERROR).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let raw = fd.get_ref().as_raw_fd();
        // The error queue only when epoll says it holds something (EPOLLERR): an empty read
        // of it after every reply was a third recvmsg per ping.
        let errors = demux.kind == SockKind::Dgram && guard.ready().is_error();
        loop {
            match recv(raw, &mut buf, false) {
                Ok(msg) => demux.deliver(&msg, &buf[..msg.len], false),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // A pending socket error (ECONNREFUSED, ...) on a plain read: it is cleared
                    // by reading it; the error queue holds the details.
                    tracing::debug!(error = %e, "ICMP socket read");
                }
            }
        }
        if errors {
            demux.drain_errors(raw);
        }
        guard.clear_ready();
    }
}

impl Demux {
    /// Everything on the error queue (datagram sockets) to the pings it answers; how many
    /// errors there were.
    fn drain_errors(&self, raw: i32) -> usize {
        if self.kind != SockKind::Dgram {
            return 0;
        }
        let mut buf = [0u8; 1500];
        let mut n = 0;
        loop {
            match recv(raw, &mut buf, true) {
                Ok(msg) => {
                    n += 1;
                    self.deliver(&msg, &buf[..msg.len], true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return n,
            }
        }
    }

    /// One message read off the socket (or its error queue) to the ping it answers, if any.
    fn deliver(&self, msg: &Msg, data: &[u8], from_errqueue: bool) {
        let at = Instant::now();
        let heard = if from_errqueue {
            msg.from.and_then(|target| parse_errqueue(&msg.ee, data, target))
        } else {
            match (self.v6, self.kind, msg.from) {
                (false, SockKind::Raw, _) => parse_v4_raw(data),
                (false, SockKind::Dgram, Some(from)) => parse_v4_icmp(data, from),
                (true, _, Some(from)) => parse_v6_icmp(data, from),
                _ => None,
            }
        };
        let Some(heard) = heard else { return };
        let (key, answer) = match heard {
            // A raw socket sees every process's pings: only ours count.
            Heard::Reply { ident: i, .. } | Heard::Error { ident: i, .. }
                if self.kind == SockKind::Raw && i != self.ident =>
            {
                return;
            }
            Heard::Reply { from, seq, .. } => ((from, seq), Answer::Reply { kernel_ns: msg.kernel_ns, at }),
            Heard::Error { target, seq, router, error, .. } => {
                let failure = Failure::Icmp { error, router };
                ((target, seq), Answer::Failed { failure, kernel_ns: msg.kernel_ns, at })
            }
            Heard::Local { target, seq } => {
                ((target, seq), Answer::Failed { failure: Failure::SendError, kernel_ns: None, at })
            }
        };
        let waiting = self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        if let Some(w) = waiting {
            w.tell(key, answer);
        }
    }
}

pub struct Msg {
    pub len: usize,
    pub from: Option<IpAddr>,
    /// The port in the address (from the error queue: the port our datagram was sent to).
    pub port: Option<u16>,
    pub kernel_ns: Option<i128>,
    /// The sock_extended_err and offender address (error queue only).
    pub ee: Vec<u8>,
}

/// One `recvmsg`, with the kernel's receive timestamp and, from the error queue, the extended
/// error. Public for the test bed's responder, which times requests by the same stamp.
pub fn recv(fd: i32, buf: &mut [u8], errqueue: bool) -> io::Result<Msg> {
    let mut name = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut control = [0u64; 64];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the call.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_name = name.as_mut_ptr().cast();
    hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr().cast();
    hdr.msg_controllen = size_of::<[u64; 64]>() as _;
    let flags = libc::MSG_DONTWAIT | if errqueue { libc::MSG_ERRQUEUE } else { 0 };
    // SAFETY: `hdr` points at valid buffers of the sizes given.
    let n = unsafe { libc::recvmsg(fd, &mut hdr, flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = (n as usize).min(buf.len());
    // SAFETY: the kernel wrote `msg_namelen` bytes of a sockaddr into `name`.
    let name_bytes = unsafe { std::slice::from_raw_parts(name.as_ptr().cast::<u8>(), hdr.msg_namelen as usize) };
    let from = sockaddr_ip(name_bytes);
    // sin_port / sin6_port: right after the family, in network order.
    let port = (name_bytes.len() >= 4).then(|| u16::from_be_bytes([name_bytes[2], name_bytes[3]]));
    let mut kernel_ns = None;
    let mut ee = Vec::new();
    // SAFETY: walking the control messages the kernel wrote, with the libc macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&hdr);
        while !c.is_null() {
            let (level, ty) = ((*c).cmsg_level, (*c).cmsg_type);
            let data = libc::CMSG_DATA(c);
            let len = (*c).cmsg_len as usize - (data as usize - c as usize);
            if level == libc::SOL_SOCKET && ty == libc::SCM_TIMESTAMPNS && len >= size_of::<libc::timespec>() {
                let ts = std::ptr::read_unaligned(data.cast::<libc::timespec>());
                kernel_ns = Some(i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec));
            } else if (level == libc::SOL_IP && ty == libc::IP_RECVERR)
                || (level == libc::SOL_IPV6 && ty == libc::IPV6_RECVERR)
            {
                ee = std::slice::from_raw_parts(data, len).to_vec();
            }
            c = libc::CMSG_NXTHDR(&hdr, c);
        }
    }
    Ok(Msg { len, from, port, kernel_ns, ee })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_header(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h
    }

    #[test]
    fn a_v4_echo_reply_is_a_reply() {
        let mut pkt = v4_header([1, 1, 1, 1], [10, 0, 0, 2]);
        let mut echo = echo_request(false, 0x1234, 7, b"x");
        echo[0] = V4_ECHO_REPLY;
        pkt.extend(echo);
        assert_eq!(parse_v4_raw(&pkt), Some(Heard::Reply { from: "1.1.1.1".parse().unwrap(), ident: 0x1234, seq: 7 }));
    }

    #[test]
    fn a_v4_unreachable_quoting_our_echo_is_an_error_from_the_router() {
        // The router 192.168.12.1 says "network unreachable" about our echo to 1.1.1.1.
        let mut pkt = v4_header([192, 168, 12, 1], [192, 168, 12, 50]);
        pkt.extend([V4_UNREACH, 0, 0, 0, 0, 0, 0, 0]);
        pkt.extend(v4_header([192, 168, 12, 50], [1, 1, 1, 1]));
        pkt.extend(&echo_request(false, 0x1234, 9, b"")[..8]);
        assert_eq!(
            parse_v4_raw(&pkt),
            Some(Heard::Error {
                target: "1.1.1.1".parse().unwrap(),
                ident: 0x1234,
                seq: 9,
                router: "192.168.12.1".parse().unwrap(),
                error: IcmpError::NetUnreachable,
            })
        );
    }

    #[test]
    fn every_v4_error_type_is_a_loss_and_other_types_are_ignored() {
        assert_eq!(icmp4_error(3, 13), Some(IcmpError::Prohibited));
        assert_eq!(icmp4_error(3, 1), Some(IcmpError::HostUnreachable));
        assert_eq!(icmp4_error(3, 5), Some(IcmpError::Unreachable));
        assert_eq!(icmp4_error(11, 0), Some(IcmpError::TtlExceeded));
        assert_eq!(icmp4_error(12, 0), Some(IcmpError::ParameterProblem));
        assert_eq!(icmp4_error(5, 0), None, "a redirect is not an answer");
        assert_eq!(icmp4_error(8, 0), None, "our own echo request seen on a raw socket");
    }

    #[test]
    fn a_v6_error_quoting_our_echo_is_an_error() {
        let mut pkt = vec![V6_UNREACH, 1, 0, 0, 0, 0, 0, 0];
        let mut ip6 = vec![0x60, 0, 0, 0, 0, 16, 58, 64];
        ip6.extend(Ipv6Addr::LOCALHOST.octets());
        ip6.extend("2606:4700::1111".parse::<Ipv6Addr>().unwrap().octets());
        pkt.extend(ip6);
        pkt.extend(echo_request(true, 5, 6, b"abc"));
        let router: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(
            parse_v6_icmp(&pkt, router),
            Some(Heard::Error {
                target: "2606:4700::1111".parse().unwrap(),
                ident: 5,
                seq: 6,
                router,
                error: IcmpError::Prohibited,
            })
        );
        assert_eq!(icmp6_error(V6_TIME_EXCEEDED, 0), Some(IcmpError::TtlExceeded));
        assert_eq!(icmp6_error(V6_TOO_BIG, 0), Some(IcmpError::TooBig));
        assert_eq!(icmp6_error(135, 0), None, "neighbour solicitation");
    }

    #[test]
    fn truncated_and_foreign_packets_are_not_answers() {
        assert_eq!(parse_v4_raw(&[]), None);
        assert_eq!(parse_v4_raw(&[0x45; 10]), None);
        // An unreachable quoting a UDP datagram, not our echo.
        let mut pkt = v4_header([10, 0, 0, 1], [10, 0, 0, 2]);
        pkt.extend([V4_UNREACH, 3, 0, 0, 0, 0, 0, 0]);
        let mut udp = v4_header([10, 0, 0, 2], [1, 1, 1, 1]);
        udp[9] = 17;
        pkt.extend(udp);
        pkt.extend([0u8; 8]);
        assert_eq!(parse_v4_raw(&pkt), None);
        assert_eq!(parse_v6_icmp(&[V6_UNREACH, 0, 0, 0], "::1".parse().unwrap()), None);
    }

    #[test]
    fn the_error_queue_names_the_router_and_the_reason() {
        // sock_extended_err: errno, origin ICMP, type 3 code 13, pad, info, data; then the
        // offender's sockaddr_in.
        let mut ee = vec![113, 0, 0, 0, 2, 3, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        ee.extend((libc::AF_INET as u16).to_ne_bytes());
        ee.extend([0, 0, 192, 168, 12, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        let data = echo_request(false, 44, 45, b"");
        let target: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(
            parse_errqueue(&ee, &data, target),
            Some(Heard::Error {
                target,
                ident: 44,
                seq: 45,
                router: "192.168.12.1".parse().unwrap(),
                error: IcmpError::Prohibited
            })
        );
        // A local error (no ARP answer): the echo never left.
        ee[4] = 1;
        assert_eq!(parse_errqueue(&ee, &data, target), Some(Heard::Local { target, seq: 45 }));
    }

    #[test]
    fn the_kernel_rtt_stands_unless_a_clock_step_makes_it_impossible() {
        let user = Duration::from_micros(1500);
        assert_eq!(choose_rtt(1_000_000, Some(2_000_000), user), Duration::from_millis(1));
        // The clock stepped back between send and receive.
        assert_eq!(choose_rtt(1_000_000, Some(500_000), user), user);
        // Stepped forward by a minute.
        assert_eq!(choose_rtt(0, Some(60_000_000_000), user), user);
        assert_eq!(choose_rtt(0, None, user), user);
    }

    #[test]
    fn the_checksum_of_an_echo_request_verifies() {
        let p = echo_request(false, 0xbeef, 0x0102, b"wanwatch-probe\0\0");
        assert_eq!(checksum(&p), 0);
    }
}
