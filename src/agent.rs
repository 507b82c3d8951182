//! `wanwatch run`: probes -> state machine -> store, until told to stop.
//!
//! Everything stateful lives on one task: samples arrive on a channel, are stamped with wall
//! time from the monotonic clock, judged by the state machine and handed to the writer thread.
//! Everything else is a `Service` beside it, started here and stopped in order.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::clock::{Adjustment, WallClock};
use crate::config::Config;
use crate::detect::live::{Live, MinuteBuilder, Sink};
use crate::detect::state::{Mark, StateMachine};
use crate::probe::ContextThread;
use crate::probe::path;
use crate::probe::ping::{self, Sockets};
use crate::sample::{
    Blind, BlindKind, EventKind, Failure, IcmpError, LinkState, OutageKind, PathReason, Record, Role, Sample, Target,
    WallMs,
};
use crate::service::Service;
use crate::store::Store;
use crate::store::writer::{Writer, WriterReport};

/// A gap this long between two turns of the once-a-second housekeeping is a blind spot.
const STALL: Duration = Duration::from_secs(5);
/// The housekeeping (watchdog, clock check, stall check) runs this often, on the turn of a
/// ping sample that finds it due; its own timer fires only when no sample came for
/// `HOUSEKEEPING_QUIET` (long ping intervals, or pings stuck), well inside `STALL`.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);
const HOUSEKEEPING_QUIET: Duration = Duration::from_secs(2);
/// A loss episode's witnesses: ICMP errors from this long before it was called.
const LOSS_LOOKBACK_MS: i64 = 10_000;

/// What a run did, for logs and tests.
#[derive(Debug, Default)]
pub struct RunReport {
    pub samples: u64,
    pub writer: WriterReport,
    /// The set-up page saved new settings: run again on the file as it is now.
    pub restart: bool,
}

/// Run the agent until `run_for` elapses or SIGINT/SIGTERM arrives. Must be called inside a
/// tokio runtime (a current-thread one is enough and the smallest).
pub async fn run(cfg: Config, run_for: Option<Duration>) -> anyhow::Result<RunReport> {
    let mut agent = Agent::start(&cfg)?;
    let (ctx_tx, ctx_rx) = mpsc::channel(1024);
    let ctx_tx_paths = ctx_tx.clone();
    // Producers first (their records go through the writer), readers of the database after.
    let producers = agent.start_producers(&cfg, ctx_tx);
    let readers = agent.start_readers(&cfg);
    let (samples, mut pings) = agent.start_pings(&cfg);
    agent.start_tracer(&mut pings, ctx_tx_paths);

    // systemd (Type=notify): ready once everything is started; the watchdog is fed from the
    // main loop, so a wedged loop gets the service restarted.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let tcp = agent.tcp_results.take().expect("taken once");
    let mut inputs = Inputs { samples, context: ctx_rx, tcp };
    agent.main_loop(&mut inputs, run_for).await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    agent.shutdown(inputs, pings, producers, readers).await
}

/// The channels the main loop reads: ping results, and finished records (context probes,
/// detection).
struct Inputs {
    samples: mpsc::Receiver<Sample>,
    context: mpsc::Receiver<Record>,
    /// TCP fallback checks back.
    tcp: mpsc::Receiver<ping::TcpResult>,
}

/// The running agent's state, owned by the main loop's task.
struct Agent {
    clock: WallClock,
    writer: Writer,
    sockets: Arc<Sockets>,
    targets: Vec<Target>,
    sm: StateMachine,
    /// Closed minutes for detection, when it runs.
    minutes: MinuteBuilder,
    live: Option<Live>,
    /// Asks the path prober to look where it broke (outages, loss episodes).
    tracer: Option<mpsc::Sender<path::Ask>>,
    /// Per target, the last ICMP error its pings got: (error, router, the ping's send time).
    heard_errors: Vec<Option<(IcmpError, std::net::IpAddr, WallMs)>>,
    /// The TCP fallback for anchors whose pings may be filtered, and its results until the
    /// main loop takes them.
    tcp: ping::TcpChecks,
    tcp_results: Option<mpsc::Receiver<ping::TcpResult>>,
    /// Turned true at shutdown: the ping tasks stop sending.
    stop_pings: watch::Sender<bool>,
    report: RunReport,
    /// The set-up page saved the file: stop cleanly so the caller starts again on it.
    applied: Arc<tokio::sync::Notify>,
    _lock: crate::store::lock::AgentLock,
}

impl Agent {
    /// Sockets, the database and its writer, and the run's first records.
    fn start(cfg: &Config) -> anyhow::Result<Agent> {
        // Open the sockets before anything is written, so a permission problem is the first and
        // only thing the user sees (and no empty database is left behind).
        let sockets = Arc::new(Sockets::open(&cfg.targets)?);
        // One writer per database; held until the agent is dropped.
        let lock = crate::store::lock::AgentLock::acquire(&cfg.db)?;
        let store = Store::open(&cfg.db, cfg.store.journal_size_limit_bytes)?;
        let previous_write = store.last_write_ts()?;
        let targets: Vec<Target> = cfg.targets.iter().map(|t| t.target.clone()).collect();
        let clock = WallClock::run();
        let writer = Writer::spawn(store, &targets, cfg.store.clone(), clock.clone())
            .with_context(|| format!("preparing database {}", cfg.db.display()))?;
        let names: Vec<String> = targets.iter().map(ToString::to_string).collect();
        tracing::info!(db = %cfg.db.display(), config = %cfg.source, targets = %names.join(", "), "wanwatch running");
        if let Some(last) = previous_write {
            // From the last run's last write to now nothing was measured. (A clock still wrong
            // at boot makes this empty for now; the run's shift moves its end when NTP sets it.)
            let (end, detail) = (clock.now().max(last), "wanwatch was not running".into());
            writer.send(Record::Blind(Blind { start: last, end, kind: BlindKind::NotRunning, detail }));
        }
        let detail = format!("wanwatch {} pinging {}", env!("CARGO_PKG_VERSION"), names.join(", "));
        writer.send(Record::Event { ts: clock.now(), kind: EventKind::AgentStart, detail });
        let mut sm = StateMachine::new(cfg.state.clone(), &targets);
        let (tcp, tcp_rx) = ping::TcpChecks::new(&cfg.targets);
        for i in tcp.with_fallback() {
            sm.set_tcp_fallback(i);
        }
        Ok(Agent {
            sm,
            tcp,
            tcp_results: Some(tcp_rx),
            minutes: MinuteBuilder::new(targets.len()),
            live: None,
            tracer: None,
            heard_errors: vec![None; targets.len()],
            stop_pings: watch::channel(false).0,
            report: RunReport::default(),
            applied: Arc::new(tokio::sync::Notify::new()),
            clock,
            writer,
            sockets,
            targets,
            _lock: lock,
        })
    }

    /// The services that add records: context probes and detection.
    fn start_producers(&mut self, cfg: &Config, out: mpsc::Sender<Record>) -> Vec<Box<dyn Service>> {
        let mut services: Vec<Box<dyn Service>> = Vec::new();
        if cfg.detect.enabled {
            let tx = out.clone();
            let sink: Sink = Box::new(move |r| {
                let _ = tx.blocking_send(r);
            });
            let offset = crate::calendar::local_offset_s(self.clock.now());
            let live = Live::spawn(&cfg.detect, &self.targets, &cfg.db, offset, self.clock.clone(), sink);
            self.live = Some(live);
        }
        services.push(Box::new(ContextThread::spawn(cfg, self.clock.clone(), out)));
        services
    }

    /// The services that read the database: the panel, the dashboard, notifications and the
    /// weekly report. A dashboard port in use is a warning, not a dead agent.
    fn start_readers(&self, cfg: &Config) -> Vec<Box<dyn Service>> {
        let mut services: Vec<Box<dyn Service>> = Vec::new();
        if cfg.display.enabled || cfg.led.enabled {
            let gateway = cfg.targets.iter().find(|t| t.target.role == Role::Gateway).map(|t| t.target.addr);
            let panel = crate::panel::Panel {
                display: cfg.display.clone(),
                led: cfg.led.clone(),
                db: cfg.db.clone(),
                now: self.clock.clone(),
                gateway,
                stale_after: cfg.store.flush_interval * 2 + Duration::from_secs(60),
            };
            services.push(Box::new(panel.spawn()));
        }
        let plan = crate::report::Plan::of(&cfg.report);
        if cfg.web.enabled {
            // The set-up page edits the file the agent was started from; with built-in defaults
            // there is none, and the page says so.
            let setup = cfg.file.clone().map(|file| {
                let geocoder = cfg.probes.weather.url.clone().unwrap_or_else(|| crate::setup::GEOCODER.into());
                let pin = crate::setup::pin::path_for(&cfg.db);
                crate::web::setup::Setup::new(file, pin, geocoder, self.applied.clone())
            });
            let community = Some(cfg.community.clone());
            match crate::web::Web::spawn(&cfg.web.listen, cfg.db.clone(), plan, self.clock.clone(), setup, community) {
                Ok(w) => services.push(Box::new(w)),
                Err(e) => {
                    tracing::warn!("{e}; carrying on without the dashboard");
                    let ts = self.clock.now();
                    self.writer.send(Record::Event { ts, kind: EventKind::WebError, detail: e.to_string() });
                }
            }
        }
        if let Some(n) = crate::notify::Notifier::spawn(cfg.notify.clone(), cfg.db.clone(), self.clock.clone()) {
            services.push(Box::new(n));
        }
        // Off unless the household opted in: then hourly rollups to the community's receiver.
        if let Some(p) = crate::community::push::spawn(cfg.community.clone(), cfg.db.clone(), self.clock.clone()) {
            services.push(Box::new(p));
        }
        if cfg.report.weekly {
            let dir =
                cfg.report.dir.clone().unwrap_or_else(|| cfg.db.parent().unwrap_or(Path::new(".")).join("reports"));
            services.push(Box::new(crate::report::weekly::spawn(cfg.db.clone(), dir, plan, self.clock.clone())));
        }
        services
    }

    /// One task per ping interval on the shared sockets: the targets that share an interval
    /// are pinged on one tick, a millisecond apart, as fping does (10 ms apart there). Each
    /// tick is a wake-up of the whole process; with the 4 default targets spread over the
    /// second instead, the agent took 2.99x fping's CPU per ping under qemu-user against 2.14x
    /// ticking together (issue 16). Sent back to back, the anchors read 0.14-0.2 ms above
    /// ping's RTTs at the same moment (the RTT-under-load test), as each packet queued behind
    /// the one before; the gap is what `ping::run_group` pauses between sends. A send right after
    /// another's ICMP error meets that error pending on the shared socket: `Pinger::send_to`
    /// takes it to its ping and sends again.
    fn start_pings(&self, cfg: &Config) -> (mpsc::Receiver<Sample>, JoinSet<()>) {
        let (tx, rx) = mpsc::channel(1024);
        let stop_rx = self.stop_pings.subscribe();
        let mut pings = JoinSet::new();
        let mut groups: Vec<(Duration, Vec<(usize, crate::config::PingTarget)>)> = Vec::new();
        for (i, t) in cfg.targets.iter().enumerate() {
            match groups.iter_mut().find(|(every, _)| *every == t.interval) {
                Some((_, g)) => g.push((i, t.clone())),
                None => groups.push((t.interval, vec![(i, t.clone())])),
            }
        }
        for (interval, group) in groups {
            let (tx, stop, sockets) = (tx.clone(), stop_rx.clone(), self.sockets.clone());
            pings.spawn(async move { ping::run_group(group, &sockets, interval, tx, stop).await });
        }
        (rx, pings)
    }

    /// The path prober, on the ping tasks' set (it stops with them): the anchors, hourly and
    /// when asked.
    fn start_tracer(&mut self, pings: &mut JoinSet<()>, out: mpsc::Sender<Record>) {
        let anchors: Vec<_> = self.targets.iter().filter(|t| t.role == Role::Anchor).map(|t| t.addr).collect();
        let (tx, rx) = mpsc::channel(8);
        let tracer = path::Tracer::new(anchors, self.clock.clone(), out);
        let stop = self.stop_pings.subscribe();
        pings.spawn(tracer.run(rx, stop));
        self.tracer = Some(tx);
    }

    /// Samples in, stamped, judged and stored; once a second the clock, the watchdog and the
    /// loop's own health; until the deadline or a signal.
    async fn main_loop(&mut self, inputs: &mut Inputs, run_for: Option<Duration>) {
        let watchdog = sd_notify::watchdog_enabled().is_some();
        // The housekeeping rides on the samples' turns: a timer of its own was one wake-up of
        // the whole process a second in five (issue 16). Its timer is pushed back at every
        // turn, so it fires only when the samples stop coming.
        let quiet = tokio::time::sleep(HOUSEKEEPING_QUIET);
        tokio::pin!(quiet);
        // The loop's last turn: a turn that comes much later than a second means the process
        // did not run in between (SIGSTOP, starved, suspended), and that time was not measured.
        let mut last_turn = (Instant::now(), self.clock.now());
        // Polled only with `--for`.
        let end = tokio::time::sleep(run_for.unwrap_or_default());
        tokio::pin!(end);
        // A signal or new settings, told once on a oneshot: polling the signal streams and the
        // Notify themselves at every turn cost more than the sample the turn was for.
        let applied = self.applied.clone();
        let (stop_tx, stop) = tokio::sync::oneshot::channel();
        let watcher = tokio::spawn(async move {
            let why = tokio::select! {
                sig = shutdown_signal() => Stop::Signal(sig),
                () = applied.notified() => Stop::Restart,
            };
            let _ = stop_tx.send(why);
        });
        tokio::pin!(stop);
        loop {
            let mut due = false;
            tokio::select! {
                Some(s) = inputs.samples.recv() => {
                    self.handle(s);
                    // A little early rather than a tick late: samples at 1 Hz come about a
                    // second apart, some a hair under it.
                    due = last_turn.0.elapsed() + HOUSEKEEPING_EVERY / 10 >= HOUSEKEEPING_EVERY;
                }
                Some(r) = inputs.context.recv() => self.writer.send(r),
                Some((i, at, ok)) = inputs.tcp.recv() => self.on_tcp(i, at, ok),
                _ = &mut quiet => due = true,
                () = &mut end, if run_for.is_some() => break,
                why = &mut stop => {
                    match why {
                        Ok(Stop::Signal(sig)) => tracing::info!("{sig}: stopping"),
                        Ok(Stop::Restart) => {
                            tracing::info!("new settings from the set-up page: restarting on them");
                            self.report.restart = true;
                        }
                        Err(_) => tracing::warn!("the signal watcher ended: stopping"),
                    }
                    break;
                }
            }
            if due {
                quiet.as_mut().reset(tokio::time::Instant::now() + HOUSEKEEPING_QUIET);
                // Far inside any sensible WatchdogSec, and only while the writer lives.
                if watchdog && self.writer.is_alive() {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                if let Some(adj) = self.clock.check() {
                    self.on_clock_adjustment(adj);
                }
                last_turn = self.note_stall(last_turn);
            }
        }
        watcher.abort();
    }

    /// One ping result: stamp it, let the state machine judge it, feed detection, store it.
    fn handle(&mut self, mut s: Sample) {
        s.ts = self.clock.wall_at(s.mono);
        if let Err(Failure::Icmp { error, router }) = s.rtt {
            self.heard_errors[s.target] = Some((error, router, s.ts));
        }
        let records = self.sm.observe(&s);
        if s.rtt.is_err() {
            self.tcp.lost(s.target);
        }
        if let Some(live) = &self.live {
            for minute in self.minutes.add(&s) {
                live.send(minute);
            }
        }
        self.writer.send(Record::Sample(s));
        for r in records {
            self.ask_where(&r);
            self.writer.send(r);
        }
        self.report.samples += 1;
    }

    /// An outage or a loss episode starting: the path prober looks where it broke.
    fn ask_where(&self, r: &Record) {
        let ask = match *r {
            Record::OutageStart { start, kind } => {
                let v6 = match kind {
                    OutageKind::Ipv4 => Some(false),
                    OutageKind::Ipv6 => Some(true),
                    OutageKind::Lan | OutageKind::Wan => None,
                };
                let witnesses = self.witnesses(start);
                path::Ask { reason: PathReason::Outage, outage_start: Some(start), v6, witnesses }
            }
            Record::State { state: LinkState::Degraded, since } => {
                let witnesses = self.witnesses(since - LOSS_LOOKBACK_MS);
                path::Ask { reason: PathReason::Loss, outage_start: None, v6: None, witnesses }
            }
            _ => return,
        };
        if let Some(t) = &self.tracer {
            // Full means a probe is already running and queued: it answers this one too.
            let _ = t.try_send(ask);
        }
    }

    /// A TCP check came back: "ICMP filtered" or "down" for the state machine to settle.
    fn on_tcp(&mut self, i: usize, started: Instant, ok: bool) {
        self.tcp.done(i);
        let at = Mark { wall: self.clock.wall_at(started), mono: started };
        for r in self.sm.tcp(i, at, ok) {
            self.ask_where(&r);
            self.writer.send(r);
        }
    }

    /// The routers that answered the anchors' pings with an ICMP error since `since` (this
    /// incident's, not an earlier one's).
    fn witnesses(&self, since: WallMs) -> Vec<(std::net::IpAddr, IcmpError, std::net::IpAddr)> {
        self.targets
            .iter()
            .zip(&self.heard_errors)
            .filter(|(t, _)| t.role == Role::Anchor)
            .filter_map(|(t, h)| h.filter(|(.., ts)| *ts >= since).map(|(e, r, _)| (t.addr, e, r)))
            .collect()
    }

    /// A turn much later than a second is a stretch nothing was measured.
    fn note_stall(&self, last: (Instant, WallMs)) -> (Instant, WallMs) {
        let turn = (Instant::now(), self.clock.now());
        let idle = turn.0.saturating_duration_since(last.0);
        if idle > STALL {
            let shown = humantime::format_duration(Duration::from_millis(idle.as_millis() as u64));
            tracing::warn!("wanwatch did not run for {shown}; recorded as not measured");
            self.writer.send(Record::Blind(Blind {
                start: last.1,
                end: turn.1,
                kind: BlindKind::Stalled,
                detail: format!("the agent did not run for {} ms (stopped, starved or suspended)", idle.as_millis()),
            }));
        }
        turn
    }

    /// Stop sending pings and collect the answers still in flight; stop the producers while
    /// taking their last records; close the state machine; flush; then stop the readers.
    async fn shutdown(
        mut self,
        mut inputs: Inputs,
        mut pings: JoinSet<()>,
        producers: Vec<Box<dyn Service>>,
        readers: Vec<Box<dyn Service>>,
    ) -> anyhow::Result<RunReport> {
        let _ = self.stop_pings.send(true);
        while let Some(s) = inputs.samples.recv().await {
            self.handle(s);
        }
        while pings.join_next().await.is_some() {}
        // The producers stop on a blocking thread while their last records are taken here, so
        // none of them waits on a full channel. Detection runs the minutes it has once its
        // input closes and closes its open events.
        let mut producers = producers;
        producers.extend(self.live.take().map(|l| Box::new(l) as Box<dyn Service>));
        let stopping = tokio::task::spawn_blocking(move || {
            for s in producers {
                tracing::debug!("stopping {}", s.name());
                s.stop();
            }
        });
        tokio::pin!(stopping);
        loop {
            tokio::select! {
                Some(r) = inputs.context.recv() => self.writer.send(r),
                _ = &mut stopping => break,
            }
        }
        while let Ok(r) = inputs.context.try_recv() {
            self.writer.send(r);
        }
        for r in self.sm.finish(self.clock.now(), Instant::now()) {
            self.writer.send(r);
        }
        self.writer.send(Record::Event {
            ts: self.clock.now(),
            kind: EventKind::AgentStop,
            detail: "clean shutdown".into(),
        });
        self.report.writer = self.writer.shutdown();
        for s in readers {
            tracing::debug!("stopping {}", s.name());
            s.stop();
        }
        tracing::info!(samples = self.report.samples, flushes = self.report.writer.flushes, "wanwatch stopped");
        Ok(self.report)
    }

    /// The system clock moved: slew, or step this run's times (and everything stamped so far
    /// when it happens early in the run: the boot-time NTP step).
    fn on_clock_adjustment(&mut self, adj: Adjustment) {
        let detail = match adj {
            Adjustment::Slewing { delta_ms } => format!("system clock moved {delta_ms} ms; slewing toward it"),
            Adjustment::Stepped { delta_ms, rewrite_run: true } => {
                self.writer.send(Record::ShiftRun { delta_ms });
                self.sm.shift(delta_ms);
                self.minutes.shift(delta_ms);
                format!("system clock set by {delta_ms} ms early in the run; this run's times were moved with it")
            }
            Adjustment::Stepped { delta_ms, rewrite_run: false } => format!("system clock stepped {delta_ms} ms"),
        };
        tracing::warn!("{detail}");
        self.writer.send(Record::Event { ts: self.clock.now(), kind: EventKind::ClockStep, detail });
    }
}
/// Why the main loop stops before its deadline.
enum Stop {
    Signal(&'static str),
    Restart,
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
