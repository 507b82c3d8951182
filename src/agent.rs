//! `wanwatch run`: probes -> state machine -> store, until told to stop.
//!
//! Everything stateful lives on one task: samples arrive on a channel, are stamped with wall
//! time from the monotonic clock, judged by the state machine and handed to the writer thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use crate::clock::{self, Adjustment, Clock};
use crate::config::Config;
use crate::detect::state::StateMachine;
use crate::probe::ping::{self, Sockets};
use crate::sample::{Blind, BlindKind, EventKind, Record, Target};
use crate::store::Store;
use crate::store::writer::{Writer, WriterReport};

/// A gap this long between two turns of the once-a-second loop is a blind spot.
const STALL: Duration = Duration::from_secs(5);

/// What a run did, for logs and tests.
#[derive(Debug, Default)]
pub struct RunReport {
    pub samples: u64,
    pub writer: WriterReport,
}

/// Run the agent until `run_for` elapses or SIGINT/SIGTERM arrives. Must be called inside a
/// tokio runtime (a current-thread one is enough and the smallest).
pub async fn run(cfg: Config, run_for: Option<Duration>) -> anyhow::Result<RunReport> {
    // Open the sockets before anything is written, so a permission problem is the first and
    // only thing the user sees (and no empty database is left behind).
    let sockets = Arc::new(Sockets::open(&cfg.targets)?);
    // One writer per database; held until this function returns.
    let _lock = crate::store::lock::AgentLock::acquire(&cfg.db)?;
    let store = Store::open(&cfg.db, cfg.store.journal_size_limit_bytes)?;
    let previous_write = store.last_write_ts()?;
    let targets: Vec<Target> = cfg.targets.iter().map(|t| t.target.clone()).collect();

    let clock = Arc::new(std::sync::Mutex::new(Clock::new()));
    // Wall time from the agent's clock, for every thread that stamps or judges time.
    let wall_fn: clock::WallFn = {
        let clock = clock.clone();
        Arc::new(move || clock.lock().map(|c| c.now()).unwrap_or_else(|_| clock::system_wall_ms()))
    };
    let boxed = |f: &clock::WallFn| -> Box<dyn Fn() -> i64 + Send> {
        let f = f.clone();
        Box::new(move || f())
    };
    let writer = Writer::spawn(store, &targets, cfg.store.clone(), boxed(&wall_fn))
        .with_context(|| format!("preparing database {}", cfg.db.display()))?;
    let wall = || wall_fn();
    let names: Vec<String> = targets.iter().map(ToString::to_string).collect();
    tracing::info!(db = %cfg.db.display(), config = %cfg.source, targets = %names.join(", "), "wanwatch running");
    if let Some(last) = previous_write {
        // From the last run's last write to now nothing was measured. (A clock still wrong
        // at boot makes this empty for now; the run's shift moves its end when NTP sets it.)
        writer.send(Record::Blind(Blind {
            start: last,
            end: wall().max(last),
            kind: BlindKind::NotRunning,
            detail: "wanwatch was not running".into(),
        }));
    }
    writer.send(Record::Event {
        ts: wall(),
        kind: EventKind::AgentStart,
        detail: format!("wanwatch {} pinging {}", env!("CARGO_PKG_VERSION"), names.join(", ")),
    });

    let (tx, mut rx) = mpsc::channel(1024);
    let (stop_tx, stop_rx) = watch::channel(false);
    // Context probes send finished records; they go to the store as they are.
    let (ctx_tx, mut ctx_rx) = mpsc::channel(1024);
    let ctx_tx_detect = ctx_tx.clone();
    let ctx = crate::probe::Ctx::new(clock.clone(), ctx_tx, stop_rx.clone(), cfg.db.clone());
    let context = crate::probe::ContextThread::spawn(&cfg, ctx);
    // The OLED and LED, if there are any, on their own thread.
    let panel_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let panel = (cfg.display.enabled || cfg.led.enabled).then(|| {
        crate::panel::Panel {
            display: cfg.display.clone(),
            led: cfg.led.clone(),
            db: cfg.db.clone(),
            now: boxed(&wall_fn),
            gateway: cfg.targets.iter().find(|t| t.target.role == crate::sample::Role::Gateway).map(|t| t.target.addr),
            stale_after: cfg.store.flush_interval * 2 + Duration::from_secs(60),
        }
        .spawn(panel_stop.clone())
    });
    // The LAN dashboard and Prometheus endpoint; a port in use is a warning, not a dead agent.
    let plan = crate::report::Plan { down_mbps: cfg.report.plan_down_mbps, up_mbps: cfg.report.plan_up_mbps };
    let web = if cfg.web.enabled {
        match crate::web::Web::spawn(&cfg.web.listen, cfg.db.clone(), plan, wall_fn.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("{e}; carrying on without the dashboard");
                writer.send(Record::Event { ts: wall(), kind: EventKind::WebError, detail: e.to_string() });
                None
            }
        }
    } else {
        None
    };
    // Last week's report, written once the week is over.
    let weekly = cfg.report.weekly.then(|| {
        let dir = cfg
            .report
            .dir
            .clone()
            .unwrap_or_else(|| cfg.db.parent().unwrap_or(std::path::Path::new(".")).join("reports"));
        crate::report::weekly::spawn(cfg.db.clone(), dir, plan, wall_fn.clone(), panel_stop.clone())
    });
    // Notifications, if a destination is configured: they read what the writer stored.
    let notifier = crate::notify::Notifier::spawn(cfg.notify.clone(), cfg.db.clone(), wall_fn.clone());
    // The learned detectors, on their own thread, fed one closed minute at a time.
    let live = cfg.detect.enabled.then(|| {
        let tx = ctx_tx_detect.clone();
        let sink: crate::detect::live::Sink = Box::new(move |r| {
            let _ = tx.blocking_send(r);
        });
        let offset = crate::calendar::local_offset_s(wall());
        crate::detect::live::Live::spawn(&cfg.detect, &targets, &cfg.db, offset, wall_fn.clone(), sink)
    });
    drop(ctx_tx_detect);
    // A RefCell: the sample handler fills it, a clock step early in the run moves it.
    let minutes = std::cell::RefCell::new(crate::detect::live::MinuteBuilder::new(targets.len()));
    let mut probes = tokio::task::JoinSet::new();
    let n = cfg.targets.len() as u32;
    for (i, t) in cfg.targets.iter().enumerate() {
        // Spread the targets over one interval so the pings do not leave in a burst.
        let offset = t.interval * i as u32 / n;
        let (t, tx, stop, sockets) = (t.clone(), tx.clone(), stop_rx.clone(), sockets.clone());
        probes.spawn(async move { ping::run_target(i, t, &sockets, offset, tx, stop).await });
    }
    drop(tx);

    // systemd (Type=notify): ready once everything is started; the watchdog is fed from the
    // main loop below, so a wedged loop gets the service restarted.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled().is_some();

    let mut sm = StateMachine::new(cfg.state.clone(), targets.iter().map(|t| t.role).collect());
    let mut report = RunReport::default();
    let mut clock_check = tokio::time::interval(Duration::from_secs(1));
    // The loop's last turn: a turn that comes much later than a second means the process did
    // not run in between (SIGSTOP, starved, suspended), and that time was not measured.
    let mut last_turn = (Instant::now(), wall());
    let deadline = run_for.map(|d| tokio::time::Instant::now() + d);
    let stop_signal = shutdown_signal();
    tokio::pin!(stop_signal);

    let mut handle = |s: crate::sample::Sample, writer: &Writer, sm: &mut StateMachine, clock: &Clock| {
        let mut s = s;
        s.ts = clock.wall_at(s.mono);
        let records = sm.observe(&s);
        if let Some(live) = &live {
            for (minute, values) in minutes.borrow_mut().add(&s) {
                live.send(minute, values);
            }
        }
        writer.send(Record::Sample(s));
        for r in records {
            writer.send(r);
        }
        report.samples += 1;
    };

    loop {
        tokio::select! {
            Some(s) = rx.recv() => {
                let c = clock.lock().expect("clock lock").clone();
                handle(s, &writer, &mut sm, &c);
            }
            Some(r) = ctx_rx.recv() => writer.send(r),
            _ = clock_check.tick() => {
                // Once a second: far inside any sensible WatchdogSec, and only while the writer lives.
                if watchdog && writer.is_alive() {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                let adj = clock.lock().expect("clock lock").check(Instant::now(), clock::system_wall_ms());
                if let Some(adj) = adj {
                    if let Adjustment::Stepped { delta_ms, rewrite_run: true } = adj {
                        minutes.borrow_mut().shift(delta_ms);
                    }
                    on_clock_adjustment(adj, &writer, &mut sm, wall());
                }
                let turn = (Instant::now(), wall());
                let idle = turn.0.saturating_duration_since(last_turn.0);
                if idle > STALL {
                    tracing::warn!("wanwatch did not run for {}; recorded as not measured", humantime::format_duration(Duration::from_millis(idle.as_millis() as u64)));
                    writer.send(Record::Blind(Blind {
                        start: last_turn.1,
                        end: turn.1,
                        kind: BlindKind::Stalled,
                        detail: format!("the agent did not run for {} ms (stopped, starved or suspended)", idle.as_millis()),
                    }));
                }
                last_turn = turn;
            }
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => break,
            sig = &mut stop_signal => {
                tracing::info!("{sig}: stopping");
                break;
            }
        }
    }

    // Stop sending, collect the answers to pings still in flight, then flush everything.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let _ = stop_tx.send(true);
    loop {
        tokio::select! {
            Some(s) = rx.recv() => {
                let c = clock.lock().expect("clock lock").clone();
                handle(s, &writer, &mut sm, &c);
            }
            else => break,
        }
    }
    while probes.join_next().await.is_some() {}
    // Context probes stop at their next await (on their own thread); their last words (a final
    // drop count, say) are taken in meanwhile, so none of them waits on a full channel.
    let grace = Instant::now() + Duration::from_secs(4);
    while !context.is_finished() && Instant::now() < grace {
        tokio::select! {
            Some(r) = ctx_rx.recv() => writer.send(r),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    if let Some(live) = live {
        // Runs the minutes it has; its last events land in ctx_rx, drained next.
        live.stop();
    }
    while let Ok(r) = ctx_rx.try_recv() {
        writer.send(r);
    }
    for r in sm.finish(wall(), Instant::now()) {
        writer.send(r);
    }
    writer.send(Record::Event { ts: wall(), kind: EventKind::AgentStop, detail: "clean shutdown".into() });
    report.writer = writer.shutdown();
    panel_stop.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(p) = panel {
        let _ = p.join();
    }
    if let Some(w) = web {
        w.stop();
    }
    if let Some(n) = notifier {
        n.stop();
    }
    if let Some(w) = weekly {
        let _ = w.join();
    }
    tracing::info!(samples = report.samples, flushes = report.writer.flushes, "wanwatch stopped");
    Ok(report)
}

fn on_clock_adjustment(adj: Adjustment, writer: &Writer, sm: &mut StateMachine, now: i64) {
    let detail = match adj {
        Adjustment::Slewing { delta_ms } => {
            format!("system clock moved {delta_ms} ms; slewing toward it")
        }
        Adjustment::Stepped { delta_ms, rewrite_run: true } => {
            writer.send(Record::ShiftRun { delta_ms });
            sm.shift(delta_ms);
            format!("system clock set by {delta_ms} ms early in the run; this run's times were moved with it")
        }
        Adjustment::Stepped { delta_ms, rewrite_run: false } => format!("system clock stepped {delta_ms} ms"),
    };
    tracing::warn!("{detail}");
    writer.send(Record::Event { ts: now, kind: EventKind::ClockStep, detail });
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
