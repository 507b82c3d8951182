//! ICMP echo to each target: one socket per address family shared by all targets (see
//! [`super::icmp`] for what counts as an answer and how the RTT is timed), one task per ping
//! interval sending to all of that interval's targets on one tick (a millisecond apart), every
//! ping in flight waited for on its own deadline so a slow reply never delays the next ping.
//!
//! Replies are matched by (host, sequence), so a reply that arrives after the timeout is
//! dropped, never counted against a later ping: a late reply is one lost ping, not two.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::icmp::{Pinger, Sent, SockKind, kinds_to_try};
use crate::config::PingTarget;
use crate::sample::{Failure, Sample};

/// 16 bytes: small enough to be cheap on a metered 5G plan, large enough to carry a marker.
const PAYLOAD: &[u8; 16] = b"wanwatch-probe\0\0";

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error(
        "cannot open an ICMP socket for {family} ({err}).\n\
         wanwatch needs permission to ping. Either:\n  \
         - allow unprivileged ping for your group: sudo sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"\n    \
         (make it permanent in /etc/sysctl.d/); or\n  \
         - give the binary the capability: sudo setcap cap_net_raw+ep \"$(command -v wanwatch)\"; or\n  \
         - run it as root / under the packaged systemd unit (AmbientCapabilities=CAP_NET_RAW)."
    )]
    Permission { family: &'static str, err: io::Error },
    #[error("cannot open an ICMP socket for {family}: {err}")]
    Socket { family: &'static str, err: io::Error },
}

/// The sockets: one per address family in use.
pub struct Sockets {
    v4: Option<Pinger>,
    v6: Option<Pinger>,
}

impl Sockets {
    /// Open the sockets `targets` need: an unprivileged ping socket where the system allows
    /// one, else a raw socket. Must run inside a tokio runtime.
    pub fn open(targets: &[PingTarget]) -> Result<Sockets, PingError> {
        let open = |v6: bool| {
            let family = if v6 { "IPv6" } else { "IPv4" };
            let mut last = None;
            for kind in kinds_to_try() {
                match Pinger::open(v6, kind) {
                    Ok(p) => {
                        tracing::debug!(family, kind = kind.as_str(), "ICMP socket open");
                        return Ok(p);
                    }
                    Err(e) => last = Some(e),
                }
            }
            let source = last.unwrap_or_else(|| io::Error::other("no socket kind to try"));
            Err(match source.kind() {
                io::ErrorKind::PermissionDenied => PingError::Permission { family, err: source },
                _ => PingError::Socket { family, err: source },
            })
        };
        let v4 = targets.iter().any(|t| t.target.addr.is_ipv4()).then(|| open(false)).transpose()?;
        let v6 = targets.iter().any(|t| t.target.addr.is_ipv6()).then(|| open(true)).transpose()?;
        Ok(Sockets { v4, v6 })
    }

    fn pinger(&self, addr: IpAddr) -> &Pinger {
        let p = if addr.is_ipv4() { &self.v4 } else { &self.v6 };
        p.as_ref().expect("socket opened for every family in use")
    }

    /// The kind of socket in use per family (for `doctor` and logs).
    pub fn kinds(&self) -> Vec<(&'static str, SockKind)> {
        [("IPv4", &self.v4), ("IPv6", &self.v6)]
            .into_iter()
            .filter_map(|(f, p)| Some((f, p.as_ref()?.kind())))
            .collect()
    }
}

/// A ping on its way: whose it is and when it is given up.
struct InFlight {
    slot: usize,
    seq: u16,
    sent: Sent,
    deadline: tokio::time::Instant,
}

/// Ping every target of `group` (with its index in the agent's list) on one tick every
/// `interval`, the first at once, until `stop` turns true, then wait for the
/// pings still in flight. Samples go to `out` with `ts` left for the agent to stamp from `mono`.
///
/// Every ping in flight is waited for on its own deadline, so a slow reply never delays the
/// next ping; the answers come on one queue to this one task (a task per ping cost a spawn,
/// a oneshot channel and a timer each, for the few pings of a tick).
pub async fn run_group(
    group: Vec<(usize, PingTarget)>,
    sockets: &Sockets,
    interval: Duration,
    out: mpsc::Sender<Sample>,
    mut stop: watch::Receiver<bool>,
) {
    let mut group: Vec<_> = group
        .into_iter()
        .map(|(index, t)| {
            let pinger = sockets.pinger(t.target.addr).clone();
            let scope = t.iface.as_deref().map(scope_id).unwrap_or(0);
            (index, t, pinger, scope, rand::random::<u16>())
        })
        .collect();
    let (queue, mut answers) = mpsc::unbounded_channel();
    // Sent in order with one timeout per target: mostly in deadline order, not always
    // (targets may have different timeouts), so the earliest is looked for, not assumed.
    let mut in_flight: Vec<InFlight> = Vec::new();
    // The kernel's timer, not tokio's: one wake-up per tick instead of two (ticker.rs).
    let mut ticks = super::ticker::Ticker::new(Duration::ZERO, interval);
    let mut stopping = *stop.borrow();
    // One timer for the earliest deadline, moved only when that deadline changes (a new timer
    // every turn was a registration and a removal in tokio's wheel per reply).
    let give_up = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(give_up);
    let mut landed = Vec::new();
    loop {
        let next_deadline = in_flight.iter().map(|f| f.deadline).min();
        if stopping && next_deadline.is_none() {
            break;
        }
        if let Some(d) = next_deadline.filter(|d| *d != give_up.deadline()) {
            give_up.as_mut().reset(d);
        }
        tokio::select! {
            Some((key, answer)) = answers.recv() => {
                let (addr, seq): (IpAddr, u16) = key;
                if let Some(i) = in_flight.iter().position(|f| f.seq == seq && group[f.slot].1.target.addr == addr) {
                    let f = in_flight.swap_remove(i);
                    landed.push((f.slot, f.seq, f.sent, f.sent.landed(answer).result));
                }
            }
            _ = ticks.tick(), if !stopping => {
                let gap = send_gap(group.len());
                for (slot, (_, t, pinger, scope, seq)) in group.iter_mut().enumerate() {
                    if slot > 0 {
                        // Blocking on purpose: a nanosleep costs no CPU and no trip through the
                        // runtime, where a timer per target would be a wake-up each, which is
                        // what the shared tick saves. Replies landing meanwhile keep the
                        // kernel's receive time, so no RTT reads long for the wait.
                        std::thread::sleep(gap);
                    }
                    *seq = seq.wrapping_add(1);
                    let (sent, ok) = pinger.send_queued(t.target.addr, *scope, *seq, PAYLOAD, &queue);
                    if ok {
                        let deadline = tokio::time::Instant::from_std(sent.mono) + t.timeout;
                        in_flight.push(InFlight { slot, seq: *seq, sent, deadline });
                    } else {
                        landed.push((slot, *seq, sent, Err(Failure::SendError)));
                    }
                }
            }
            _ = &mut give_up, if next_deadline.is_some() => {
                let now = tokio::time::Instant::now();
                in_flight.retain(|f| {
                    if f.deadline > now {
                        return true;
                    }
                    // A reply after this is dropped: a late reply is one lost ping, not two.
                    let (_, t, pinger, ..) = &group[f.slot];
                    pinger.forget(t.target.addr, f.seq);
                    landed.push((f.slot, f.seq, f.sent, Err(Failure::Timeout)));
                    false
                });
            }
            // Changed, or the agent gone: either way, no more pings.
            _ = stop.changed(), if !stopping => stopping = true,
        }
        for (slot, seq, sent, rtt) in landed.drain(..) {
            let _ = out.send(Sample { target: group[slot].0, ts: 0, mono: sent.mono, seq, rtt }).await;
        }
    }
}

/// The pause between the sends of one tick: a millisecond, so that no ping queues behind the
/// one before it on the way out (one 84-byte packet takes 0.67 ms at 1 Mbit/s), and at most
/// 10 ms a tick in all, however many targets share it.
pub fn send_gap(targets: usize) -> Duration {
    let gaps = targets.saturating_sub(1).max(1) as u32;
    Duration::from_millis(1).min(Duration::from_millis(10) / gaps)
}

fn scope_id(iface: &str) -> u32 {
    let Ok(name) = std::ffi::CString::new(iface) else {
        return 0;
    };
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) }
}

/// An anchor whose pings go unanswered gets a TCP check at most this often.
pub const TCP_RECHECK: Duration = Duration::from_secs(5);

/// A TCP check back: (target index, when it started, reachable).
pub type TcpResult = (usize, std::time::Instant, bool);

/// The TCP fallback checks of the targets that have one: at most one running per target, and
/// at most one every [`TCP_RECHECK`]; results come back on a channel.
pub struct TcpChecks {
    targets: Vec<(IpAddr, Option<u16>)>,
    started: Vec<Option<std::time::Instant>>,
    running: Vec<bool>,
    tx: mpsc::Sender<TcpResult>,
}

impl TcpChecks {
    pub fn new(targets: &[PingTarget]) -> (TcpChecks, mpsc::Receiver<TcpResult>) {
        let (tx, rx) = mpsc::channel(64);
        let n = targets.len();
        let targets = targets.iter().map(|t| (t.target.addr, t.tcp_port)).collect();
        (TcpChecks { targets, started: vec![None; n], running: vec![false; n], tx }, rx)
    }

    /// The targets with a fallback.
    pub fn with_fallback(&self) -> impl Iterator<Item = usize> + '_ {
        self.targets.iter().enumerate().filter(|(_, (_, p))| p.is_some()).map(|(i, _)| i)
    }

    /// A ping to target `i` was lost: check it over TCP if it has a fallback and one is due.
    pub fn lost(&mut self, i: usize) {
        let (addr, Some(port)) = self.targets[i] else { return };
        if self.running[i] || self.started[i].is_some_and(|t| t.elapsed() < TCP_RECHECK) {
            return;
        }
        let (started, tx) = (std::time::Instant::now(), self.tx.clone());
        (self.running[i], self.started[i]) = (true, Some(started));
        tokio::spawn(async move {
            let ok = tcp_reachable(addr, port, TCP_RECHECK / 2).await;
            let _ = tx.send((i, started, ok)).await;
        });
    }

    /// Target `i`'s check came back.
    pub fn done(&mut self, i: usize) {
        self.running[i] = false;
    }
}

/// The TCP fallback for an anchor whose pings go unanswered: a connect that is answered, or
/// refused by the host itself (a RST comes from the host, so it is there), means only ICMP is
/// filtered. A timeout or an ICMP error ("no route") means it is not reachable.
pub async fn tcp_reachable(addr: IpAddr, port: u16, timeout: Duration) -> bool {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((addr, port))).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => e.kind() == io::ErrorKind::ConnectionRefused,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A millisecond between the sends of a tick, and never more than 10 ms a tick in all.
    #[test]
    fn the_gap_between_sends_is_a_millisecond_within_a_10_ms_budget() {
        for n in [1, 2, 4, 11] {
            assert_eq!(send_gap(n), Duration::from_millis(1), "{n} targets");
        }
        for n in [12, 30, 200] {
            let all = send_gap(n) * (n as u32 - 1);
            assert!(all <= Duration::from_millis(10) && send_gap(n) < Duration::from_millis(1), "{n} targets: {all:?}");
        }
    }
}
