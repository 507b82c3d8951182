//! A periodic tick from the kernel (timerfd), for the ping loops.
//!
//! tokio's timer wheel keeps a deadline more than 64 ms away in a coarser slot and wakes the
//! runtime once when that slot comes up, to move it to the 1 ms level, then again at the
//! deadline: two wake-ups per ping sent (seen with strace, a wake ~30 ms before every send).
//! A timerfd is armed once with the interval and wakes the runtime only when a ping is due,
//! on CLOCK_MONOTONIC like tokio's Instant (a wall-clock step does not move it). Should the
//! kernel refuse one, the ticker falls back to tokio's interval and says so once.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

pub enum Ticker {
    Kernel { fd: AsyncFd<OwnedFd>, every: Duration },
    Tokio(tokio::time::Interval),
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as libc::c_long }
}

impl Ticker {
    /// First tick after `first` (at once if zero), then every `every`. Must be called within a
    /// tokio runtime.
    pub fn new(first: Duration, every: Duration) -> Ticker {
        Ticker::kernel(first, every).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no timerfd; ticking on tokio's timer");
            Ticker::tokio(first, every)
        })
    }

    fn tokio(first: Duration, every: Duration) -> Ticker {
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ticker::Tokio(i)
    }

    fn kernel(first: Duration, every: Duration) -> io::Result<Ticker> {
        // SAFETY: plain syscalls; the descriptor is owned by the OwnedFd from here on.
        let raw = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // A zero it_value disarms a timerfd: "at once" is one nanosecond.
        let first = first.max(Duration::from_nanos(1));
        let spec = libc::itimerspec { it_interval: timespec(every), it_value: timespec(first) };
        // SAFETY: a valid timerfd and itimerspec; the old value is not asked for.
        if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and the same for
        // the AsyncFd's whole life.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)? };
        Ok(Ticker::Kernel { fd, every })
    }

    /// Wait for the next tick. Ticks missed while the task was not polled (a stalled process)
    /// come as one, not as a burst: the loop sends one ping, not a catch-up volley.
    pub async fn tick(&mut self) {
        let (fd, every) = match self {
            Ticker::Tokio(i) => {
                i.tick().await;
                return;
            }
            Ticker::Kernel { fd, every } => (fd, *every),
        };
        let failed = loop {
            let mut guard = match fd.readable().await {
                Ok(g) => g,
                Err(e) => break e,
            };
            let mut expirations = [0u8; 8];
            // SAFETY: reading 8 bytes into an 8-byte buffer from a valid timerfd.
            let n = unsafe { libc::read(fd.get_ref().as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
            if n == 8 {
                // One read takes every expiration: nothing more until the next, so no empty read
                // then (tokio keeps readiness set if an event came in between).
                guard.clear_ready();
                return;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock {
                break err;
            }
            guard.clear_ready();
        };
        tracing::warn!(error = %failed, "timerfd failed; ticking on tokio's timer");
        *self = Ticker::tokio(Duration::ZERO, every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ticks_come_at_the_interval_and_missed_ones_come_as_one() {
        let start = std::time::Instant::now();
        let mut t = Ticker::new(Duration::ZERO, Duration::from_millis(20));
        assert!(matches!(t, Ticker::Kernel { .. }), "no timerfd");
        for _ in 0..3 {
            t.tick().await;
        }
        // Three ticks: at 0, 20 and 40 ms; never sooner.
        assert!(start.elapsed() >= Duration::from_millis(40), "{:?}", start.elapsed());
        // Not polled for five intervals: the missed ticks come as one, then one an interval on
        // (a burst would give all three at once).
        std::thread::sleep(Duration::from_millis(100));
        let stalled = std::time::Instant::now();
        for _ in 0..3 {
            t.tick().await;
        }
        assert!(stalled.elapsed() >= Duration::from_millis(19), "a burst: {:?}", stalled.elapsed());
    }
}
