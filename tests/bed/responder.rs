//! The scripted ICMP echo responder of the fake WAN: raw sockets bound to each anchor address
//! inside the WAN namespace (whose kernel echo is off), replies scheduled with the scenario's
//! delay, jitter, loss and outage windows.
//!
//! A reply's delay runs from the request's arrival as the kernel stamped it (`SO_TIMESTAMPNS`),
//! not from when this thread got round to reading it: on a loaded machine the responder's own
//! wake-up would otherwise be added to the delay, more for a client whose sends land while the
//! responder is busy (one that pings two anchors 1 ms apart, say) than for one whose do not.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use wanwatch::probe::icmp;

use super::scenario::Scenario;

#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub requests: u64,
    pub replies: u64,
    pub dropped_loss: u64,
    pub dropped_outage: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    replies: AtomicU64,
    dropped_loss: AtomicU64,
    dropped_outage: AtomicU64,
}

pub struct Responder {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    pub fn start(netns: &str, scenario: &Scenario, started: Instant) -> Responder {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (ns, sc, st, ct) = (netns.to_string(), scenario.clone(), stop.clone(), counters.clone());
        let thread = std::thread::spawn(move || {
            super::enter_netns(&ns);
            realtime_priority();
            let socks: Vec<(Socket, usize)> =
                sc.anchor.iter().enumerate().map(|(i, a)| (bind_raw(a.addr), i)).collect();
            ready_tx.send(()).unwrap();
            serve(&socks, &sc, started, &st, &ct);
        });
        ready_rx.recv_timeout(Duration::from_secs(5)).expect("responder ready");
        Responder { stop, counters, thread: Some(thread) }
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            requests: c.requests.load(Ordering::SeqCst),
            replies: c.replies.load(Ordering::SeqCst),
            dropped_loss: c.dropped_loss.load(Ordering::SeqCst),
            dropped_outage: c.dropped_outage.load(Ordering::SeqCst),
        }
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The fake WAN stands for routers with CPUs of their own, so the load a test puts on this
/// machine (to load the agent) must not delay the replies: the responder thread runs at a
/// real-time priority, above the load and the clients it answers. Best effort: without it
/// (no CAP_SYS_NICE) the replies carry this machine's scheduling delay, for every client alike.
fn realtime_priority() {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: pid 0 is this thread; `param` is a valid sched_param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        eprintln!(
            "responder: no real-time priority ({}); replies share the machine's load",
            std::io::Error::last_os_error()
        );
    }
}

fn bind_raw(addr: IpAddr) -> Socket {
    let (domain, proto) = match addr {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let s = Socket::new(domain, Type::RAW, Some(proto)).expect("raw socket (root needed)");
    // Bound to one anchor address, the socket sees only pings to it and replies from it.
    s.bind(&SocketAddr::new(addr, 0).into()).expect("bind anchor address");
    s.set_nonblocking(true).unwrap();
    icmp::setsockopt_int(&s, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1).expect("SO_TIMESTAMPNS");
    s
}

/// One request off the socket (the agent's own `recvmsg`): its length, who sent it, and when
/// it arrived (the kernel's receive stamp, on the realtime clock, turned into an `Instant`).
fn recv_stamped(sock: &Socket, buf: &mut [u8]) -> std::io::Result<(usize, SockAddr, Instant)> {
    let msg = icmp::recv(sock.as_raw_fd(), buf, false)?;
    let from = msg.from.ok_or_else(|| std::io::Error::other("no sender address"))?;
    let now = Instant::now();
    let ago = msg.kernel_ns.map_or(0, |k| (icmp::realtime_ns() - k).max(0) as u64);
    let arrived = now.checked_sub(Duration::from_nanos(ago)).unwrap_or(now);
    Ok((msg.len, SocketAddr::new(from, 0).into(), arrived))
}

struct Pending {
    due: Instant,
    sock: usize,
    to: SockAddr,
    packet: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        self.due == o.due
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.due.cmp(&o.due)
    }
}

fn serve(socks: &[(Socket, usize)], sc: &Scenario, started: Instant, stop: &AtomicBool, c: &Counters) {
    let mut queue: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let wait = queue
            .peek()
            .map(|Reverse(p)| p.due.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(20))
            .min(Duration::from_millis(20));
        let mut fds: Vec<libc::pollfd> =
            socks.iter().map(|(s, _)| libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
        let ts = libc::timespec { tv_sec: wait.as_secs() as _, tv_nsec: wait.subsec_nanos() as _ };
        unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as _, &ts, std::ptr::null()) };

        for (i, (sock, anchor)) in socks.iter().enumerate() {
            while let Ok((n, from, arrived)) = recv_stamped(sock, &mut buf) {
                let data = &buf[..n];
                let a = &sc.anchor[*anchor];
                let Some(reply) = echo_reply(data, a.addr.is_ipv4()) else {
                    continue;
                };
                c.requests.fetch_add(1, Ordering::SeqCst);
                let t = arrived.duration_since(started).as_secs_f64();
                if sc.outage.iter().any(|w| t >= w.start_s && t < w.end_s) {
                    c.dropped_outage.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                if a.loss > 0.0 && rand::random::<f64>() < a.loss {
                    c.dropped_loss.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let jitter = (rand::random::<f64>() * 2.0 - 1.0) * a.jitter_ms;
                let delay = Duration::from_secs_f64(((a.delay_ms + jitter).max(0.0)) / 1000.0);
                queue.push(Reverse(Pending { due: arrived + delay, sock: i, to: from, packet: reply }));
            }
        }

        let now = Instant::now();
        while queue.peek().is_some_and(|Reverse(p)| p.due <= now) {
            let Reverse(p) = queue.pop().unwrap();
            if socks[p.sock].0.send_to(&p.packet, &p.to).is_ok() {
                c.replies.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// The echo reply for an echo request, or None for anything else. IPv4 raw sockets deliver
/// the IP header; IPv6 ones deliver only the ICMPv6 message (and the kernel checksums replies).
fn echo_reply(data: &[u8], v4: bool) -> Option<Vec<u8>> {
    if v4 {
        let ihl = (*data.first()? & 0x0f) as usize * 4;
        let icmp = data.get(ihl..)?;
        if icmp.len() < 8 || icmp[0] != 8 || icmp[1] != 0 {
            return None;
        }
        let mut r = icmp.to_vec();
        r[0] = 0;
        r[2] = 0;
        r[3] = 0;
        let sum = checksum(&r);
        r[2..4].copy_from_slice(&sum.to_be_bytes());
        Some(r)
    } else {
        if data.len() < 8 || data[0] != 128 || data[1] != 0 {
            return None;
        }
        let mut r = data.to_vec();
        r[0] = 129;
        r[2] = 0;
        r[3] = 0;
        Some(r)
    }
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32).sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
