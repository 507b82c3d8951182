//! Every part of the agent that runs beside its main loop (context probes, detection, the
//! panel, the dashboard, notifications, the weekly report) is a `Service`: started with what it
//! needs, stopped by `stop()`, which returns once it has ended. The agent stops them in order:
//! the ones that produce records before the writer's last flush, the readers after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

pub trait Service: Send {
    /// For the logs.
    fn name(&self) -> &'static str;
    /// Stop and wait for the end (each service bounds its own wait).
    fn stop(self: Box<Self>);
}

/// A thread that runs until its flag is set: the body checks the flag between turns.
pub struct FlagThread {
    name: &'static str,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl FlagThread {
    pub fn spawn(name: &'static str, body: impl FnOnce(&AtomicBool) + Send + 'static) -> FlagThread {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("wanwatch-{name}"))
            .spawn(move || body(&flag))
            .unwrap_or_else(|e| panic!("spawning the {name} thread: {e}"));
        FlagThread { name, stop, thread }
    }

    /// Set the flag and wait for the thread.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
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
        let turns = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let t = turns.clone();
        let s = FlagThread::spawn("test", move |stop| {
            while !stop.load(Ordering::SeqCst) {
                t.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        while turns.load(Ordering::SeqCst) < 3 {
            std::thread::yield_now();
        }
        let boxed: Box<dyn Service> = Box::new(s);
        assert_eq!(boxed.name(), "test");
        boxed.stop();
        let after = turns.load(Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(turns.load(Ordering::SeqCst), after, "still running after stop()");
    }
}
