//! Every part of the agent that runs beside its main loop (context probes, detection, the
//! panel, the dashboard, notifications, the weekly report) is a `Service`: started with what it
//! needs, stopped by `stop()`, which returns once it has ended. The agent stops them in order:
//! the ones that produce records before the writer's last flush, the readers after it.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub trait Service: Send {
    /// For the logs.
    fn name(&self) -> &'static str;
    /// Stop and wait for the end (each service bounds its own wait).
    fn stop(self: Box<Self>);
}

/// The stop signal of a [`FlagThread`]: checked between turns, and waited on instead of
/// sleeping, so a thread with nothing to do sleeps until its next deadline and still stops at once.
#[derive(Default)]
pub struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    pub fn is_set(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleep for `d` or until stopped; true when stopped.
    pub fn wait(&self, d: Duration) -> bool {
        let guard = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self.wake.wait_timeout_while(guard, d, |stopped| !*stopped).unwrap_or_else(|p| p.into_inner());
        *guard
    }

    /// Sleep until `deadline` or until stopped; true when stopped.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        self.wait(deadline.saturating_duration_since(Instant::now()))
    }

    fn set(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_all();
    }
}

/// A thread that runs until stopped: the body checks (or waits on) its [`Stop`] between turns.
pub struct FlagThread {
    name: &'static str,
    stop: Arc<Stop>,
    thread: JoinHandle<()>,
}

impl FlagThread {
    pub fn spawn(name: &'static str, body: impl FnOnce(&Stop) + Send + 'static) -> FlagThread {
        let stop = Arc::new(Stop::default());
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("wanwatch-{name}"))
            .spawn(move || body(&flag))
            .unwrap_or_else(|e| panic!("spawning the {name} thread: {e}"));
        FlagThread { name, stop, thread }
    }

    /// Stop the thread and wait for it.
    pub fn stop(self) {
        self.stop.set();
        if self.thread.join().is_err() {
            tracing::error!("the {} thread panicked", self.name);
        }
    }
}

impl Service for FlagThread {
    fn name(&self) -> &'static str {
        self.name
    }

    fn stop(self: Box<Self>) {
        FlagThread::stop(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_thread_runs_until_stopped() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let turns = Arc::new(AtomicU32::new(0));
        let t = turns.clone();
        let s = FlagThread::spawn("test", move |stop| {
            while !stop.is_set() {
                t.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        while turns.load(Ordering::SeqCst) < 3 {
            std::thread::yield_now();
        }
        let boxed: Box<dyn Service> = Box::new(s);
        assert_eq!(boxed.name(), "test");
        boxed.stop();
        let after = turns.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(turns.load(Ordering::SeqCst), after, "still running after stop()");
    }

    /// A thread asleep until a far deadline stops at once: waiting is how the side threads idle.
    #[test]
    fn a_long_wait_ends_when_stopped() {
        let s = FlagThread::spawn("sleeper", |stop| while !stop.wait(Duration::from_secs(3600)) {});
        std::thread::sleep(Duration::from_millis(20));
        let t = Instant::now();
        s.stop();
        // Generous: what matters is "not an hour".
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}
