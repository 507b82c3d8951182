//! ICMP echo with `surge-ping`: one socket per address family shared by all targets, one task
//! per target sending on its own interval, every ping in flight awaited on its own so a slow
//! reply never delays the next ping.
//!
//! The RTT is surge-ping's: from just after `sendto` returns to the moment its receive task
//! reads the reply off the socket. Replies are matched by (host, sequence), so a reply that
//! arrives after the timeout is dropped, never counted against a later ping: a late reply is
//! one lost ping, not two.

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use surge_ping::{Client, ICMP, PingIdentifier, PingSequence, SurgeError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::config::PingTarget;
use crate::sample::{Failure, Sample};

/// 16 bytes: small enough to be cheap on a metered 5G plan, large enough to carry a marker.
const PAYLOAD: &[u8; 16] = b"wanwatch-probe\0\0";

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error(
        "cannot open an ICMP socket for {family} ({source}).\n\
         wanwatch needs permission to ping. Either:\n  \
         - allow unprivileged ping for your group: sudo sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"\n    \
         (make it permanent in /etc/sysctl.d/); or\n  \
         - give the binary the capability: sudo setcap cap_net_raw+ep \"$(command -v wanwatch)\"; or\n  \
         - run it as root / under the packaged systemd unit (AmbientCapabilities=CAP_NET_RAW)."
    )]
    Permission { family: &'static str, source: io::Error },
    #[error("cannot open an ICMP socket for {family}: {source}")]
    Socket { family: &'static str, source: io::Error },
}

/// The sockets: one per address family in use.
pub struct Sockets {
    v4: Option<Client>,
    v6: Option<Client>,
}

impl Sockets {
    /// Open the sockets `targets` need. Must run inside a tokio runtime.
    pub fn open(targets: &[PingTarget]) -> Result<Sockets, PingError> {
        let open = |kind: ICMP, family: &'static str| {
            let cfg = surge_ping::Config::builder().kind(kind).build();
            Client::new(&cfg).map_err(|source| match source.kind() {
                io::ErrorKind::PermissionDenied => PingError::Permission { family, source },
                _ => PingError::Socket { family, source },
            })
        };
        let v4 = targets.iter().any(|t| t.target.addr.is_ipv4()).then(|| open(ICMP::V4, "IPv4")).transpose()?;
        let v6 = targets.iter().any(|t| t.target.addr.is_ipv6()).then(|| open(ICMP::V6, "IPv6")).transpose()?;
        Ok(Sockets { v4, v6 })
    }

    fn client(&self, addr: IpAddr) -> &Client {
        let c = if addr.is_ipv4() { &self.v4 } else { &self.v6 };
        c.as_ref().expect("socket opened for every family in use")
    }
}

/// Ping `t` (index `index` in the agent's list) every interval until `stop` turns true, then
/// wait for the pings still in flight. Samples go to `out` with `ts` left for the agent to
/// stamp from `mono`.
pub async fn run_target(
    index: usize,
    t: PingTarget,
    sockets: &Sockets,
    start_delay: Duration,
    out: mpsc::Sender<Sample>,
    mut stop: watch::Receiver<bool>,
) {
    let client = sockets.client(t.target.addr).clone();

    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + start_delay, t.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut in_flight = JoinSet::new();
    let mut seq: u16 = rand::random();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        seq = seq.wrapping_add(1);
        let (client, out, t) = (client.clone(), out.clone(), t.clone());
        in_flight.spawn(async move {
            let mut p = client.pinger(t.target.addr, PingIdentifier(std::process::id() as u16)).await;
            p.timeout(t.timeout);
            if let Some(iface) = &t.iface {
                p.scope_id(scope_id(iface));
            }
            let mono = Instant::now();
            let rtt = match p.ping(PingSequence(seq), PAYLOAD).await {
                Ok((_, rtt)) => Ok(rtt.as_micros().min(u32::MAX as u128) as u32),
                Err(SurgeError::Timeout { .. }) => Err(Failure::Timeout),
                Err(e) => {
                    tracing::debug!(target = %t.target, error = %e, "ping not sent");
                    Err(Failure::SendError)
                }
            };
            let _ = out.send(Sample { target: index, ts: 0, mono, seq, rtt }).await;
        });
        // Reap finished pings so the set stays small.
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

fn scope_id(iface: &str) -> u32 {
    let Ok(name) = std::ffi::CString::new(iface) else {
        return 0;
    };
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) }
}
