//! Notifications: outages, degradations, anomalies and predictions sent to ntfy, a JSON
//! webhook and MQTT (with Home Assistant discovery).
//!
//! ```text
//! database (outages, events, status) --watch--> Note --Limiter--> queue --> ntfy / webhook / mqtt
//!                                                                  |
//!                                                    <db>.notify.json (survives restarts)
//! ```
//!
//! The notifier reads what the agent already wrote instead of hooking into the agent, so what is
//! announced is exactly what is recorded, and a message that cannot go out (the internet is
//! down: exactly when it matters) waits in a queue saved next to the database and goes when the
//! link is back, even across a restart.

pub mod http;
pub mod limit;
pub mod mqtt;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::calendar::{DAY_MS, HOUR_MS, format_span};
use crate::clock::WallClock;
use crate::config::outputs::NotifyConfig;
use crate::sample::{EventKind, LinkState, OutageKind, WallMs};
use crate::service::FlagThread;
use crate::store::query::Outage;
use crate::store::read::Event;
use crate::store::{Store, StoreError};
use http::Sent;
use limit::{Limiter, Note, NoteKind};

/// How long the link must stay degraded before it is announced.
const DEGRADED_AFTER_MS: i64 = 60_000;

/// One message and the destinations still to deliver it to.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Queued {
    note: Note,
    pending: Vec<String>,
}

/// What the notifier remembers across restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    /// False until the cursors were set from the database (history is never announced).
    started: bool,
    last_event_id: i64,
    last_outage_id: i64,
    open_outages: Vec<i64>,
    last_state: String,
    /// When the link turned degraded, until that is announced or over.
    #[serde(default)]
    degraded_since: Option<WallMs>,
    limiter: Limiter,
    queue: Vec<Queued>,
    /// Level shifts waiting for the digest: (onset, detail).
    #[serde(default)]
    shifts: Vec<(WallMs, String)>,
}

/// Level shifts go out together, once the oldest waiting one is this old: a route flapping
/// between two levels all afternoon is one message.
pub const SHIFT_DIGEST_MS: i64 = 12 * HOUR_MS;

/// The state file for `db`.
pub fn state_file(db: &Path) -> PathBuf {
    PathBuf::from(format!("{}.notify.json", db.display()))
}

fn hms(ts: WallMs) -> String {
    crate::calendar::format_local_clock(ts, true)
}

/// The notifier: a thread that reads what the writer stored and sends it on.
pub struct Notifier;

impl Notifier {
    /// Start when at least one destination is configured. Stopping finishes the current
    /// attempt, saves the queue and says "offline" on MQTT.
    pub fn spawn(cfg: NotifyConfig, db: PathBuf, now: WallClock) -> Option<FlagThread> {
        if cfg.ntfy.is_none() && cfg.webhook.is_none() && cfg.mqtt.is_none() {
            return None;
        }
        Some(FlagThread::spawn("notify", move |stop| Worker::new(cfg, db, now).run(stop)))
    }
}

/// Per-destination retry timing (in memory: after a restart everything is tried at once).
struct Backoff {
    next: Option<Instant>,
    wait: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: None, wait: Duration::from_secs(2) }
    }
    fn ready(&self) -> bool {
        self.next.is_none_or(|t| Instant::now() >= t)
    }
    fn failed(&mut self) {
        self.next = Some(Instant::now() + self.wait);
        self.wait = (self.wait * 2).min(Duration::from_secs(120));
    }
    fn ok(&mut self) {
        *self = Backoff::new();
    }
}

struct Worker {
    cfg: NotifyConfig,
    db: PathBuf,
    now: WallClock,
    file: PathBuf,
    state: State,
    dirty: bool,
    mqtt: Option<mqtt::Mqtt>,
    backoff: Vec<(String, Backoff)>,
    last_figures: Option<(Instant, mqtt::Figures)>,
    /// Kept open between looks (every 2 s); dropped after an error so the next look reopens it.
    store: Option<Store>,
}

impl Worker {
    fn new(cfg: NotifyConfig, db: PathBuf, now: WallClock) -> Worker {
        let file = state_file(&db);
        let state = if file.exists() {
            crate::jsonfile::load(&file, "a wanwatch notification queue").unwrap_or_else(|e| {
                // Keep the bad file for a look; start clean rather than not at all.
                tracing::warn!("{e}; starting with an empty queue");
                let _ = std::fs::rename(&file, file.with_extension("json.bad"));
                State::default()
            })
        } else {
            State::default()
        };
        let mut dests = Vec::new();
        if cfg.ntfy.is_some() {
            dests.push("ntfy".to_string());
        }
        if cfg.webhook.is_some() {
            dests.push("webhook".to_string());
        }
        if cfg.mqtt.is_some() {
            dests.push("mqtt".to_string());
        }
        let mqtt = cfg.mqtt.as_ref().map(mqtt::Mqtt::new);
        let backoff = dests.into_iter().map(|d| (d, Backoff::new())).collect();
        Worker { cfg, db, now, file, state, dirty: false, mqtt, backoff, last_figures: None, store: None }
    }

    fn destinations(&self) -> Vec<String> {
        self.backoff.iter().map(|b| b.0.clone()).collect()
    }

    fn run(mut self, stop: &crate::service::Stop) {
        let mut next_watch = Instant::now();
        while !stop.is_set() {
            if let Some(m) = &mut self.mqtt {
                m.poll(Duration::from_millis(100));
            }
            if Instant::now() >= next_watch {
                next_watch = Instant::now() + Duration::from_secs(2);
                let store = self.store.take().or_else(|| {
                    // Not there yet: the agent's first flush creates it.
                    self.db.exists().then(|| Store::open_read_only(&self.db).ok()).flatten()
                });
                if let Some(store) = store {
                    match self.watch(&store) {
                        Ok(()) => {
                            self.publish_figures(&store);
                            self.store = Some(store);
                        }
                        Err(e) => tracing::debug!("notify: {e}"),
                    }
                }
            }
            self.deliver();
            if self.dirty {
                match crate::jsonfile::save(&self.state, &self.file) {
                    Ok(()) => self.dirty = false,
                    Err(e) => tracing::warn!("notify: saving the queue to {}: {e}", self.file.display()),
                }
            }
            if stop.wait(Duration::from_millis(200)) {
                break;
            }
        }
        if self.dirty {
            let _ = crate::jsonfile::save(&self.state, &self.file);
        }
        if let Some(m) = self.mqtt.take() {
            m.close();
        }
    }

    /// Read what is new in the database and queue the notes it makes.
    fn watch(&mut self, store: &Store) -> Result<(), StoreError> {
        let now = self.now.now();
        let notes = self.notes(store)?;
        let interval = self.cfg.min_interval.as_millis() as i64;
        let mut out: Vec<Note> = notes.into_iter().filter_map(|n| self.state.limiter.offer(n, now, interval)).collect();
        out.extend(self.state.limiter.due(now, interval));
        for note in out {
            tracing::info!(kind = %note.kind, "notify: {}", note.title);
            self.state.queue.push(Queued { note, pending: self.destinations() });
            self.dirty = true;
        }
        Ok(())
    }

    fn notes(&mut self, store: &Store) -> Result<Vec<Note>, StoreError> {
        let s = &mut self.state;
        let (link, link_since) = store.link_state()?;
        let state = link.as_str().to_string();
        if !s.started {
            // First start on this database: announce from now on, not the history.
            (s.last_event_id, s.last_outage_id) = store.newest_ids()?;
            s.last_state = state;
            s.started = true;
            self.dirty = true;
            return Ok(Vec::new());
        }
        let mut notes = Vec::new();
        for Outage { id, kind, start, end, .. } in store.outages_after(s.last_outage_id)? {
            s.last_outage_id = id;
            self.dirty = true;
            let (what, why) = match kind {
                OutageKind::Wan => ("Internet", "the gateway answers but no internet anchor does"),
                OutageKind::Lan => ("Home network", "the gateway itself stopped answering (router, Wi-Fi or cable)"),
                OutageKind::Ipv4 => {
                    ("IPv4 internet", "no IPv4 anchor answers while IPv6 ones do (IPv4-only sites fail)")
                }
                OutageKind::Ipv6 => ("IPv6 internet", "no IPv6 anchor answers while IPv4 ones do"),
            };
            notes.push(match end {
                Some(end) => Note {
                    kind: NoteKind::Outage,
                    ts: end,
                    title: format!("{what} was down for {}", format_span(end - start)),
                    body: format!("From {} to {}: {why}.", hms(start), hms(end)),
                    priority: 3,
                },
                None => {
                    s.open_outages.push(id);
                    Note {
                        kind: NoteKind::Outage,
                        ts: start,
                        title: format!("{what} down"),
                        body: format!("Since {}: {why}.", hms(start)),
                        priority: if kind == OutageKind::Wan { 4 } else { 3 },
                    }
                }
            });
        }
        let mut still_open = Vec::new();
        for id in std::mem::take(&mut s.open_outages) {
            match store.outage(id)? {
                Some(Outage { kind, start, end: Some(end), .. }) => {
                    self.dirty = true;
                    let what = match kind {
                        OutageKind::Wan => "Internet",
                        OutageKind::Lan => "Home network",
                        OutageKind::Ipv4 => "IPv4 internet",
                        OutageKind::Ipv6 => "IPv6 internet",
                    };
                    notes.push(Note {
                        kind: NoteKind::Outage,
                        ts: end,
                        title: format!("{what} back after {}", format_span(end - start)),
                        body: format!("Down from {} to {}.", hms(start), hms(end)),
                        priority: 3,
                    });
                }
                Some(Outage { end: None, .. }) => still_open.push(id),
                None => self.dirty = true, // deleted by retention
            }
        }
        s.open_outages = still_open;
        for Event { id, ts, kind, detail } in store.events_after(s.last_event_id)? {
            s.last_event_id = id;
            self.dirty = true;
            let (k, title) = match kind {
                EventKind::Anomaly => (NoteKind::Anomaly, "Unusual internet behaviour"),
                EventKind::Prediction => (NoteKind::Prediction, "Degradation predicted"),
                EventKind::GatewayReboot => (NoteKind::Gateway, "Gateway rebooted"),
                EventKind::Degradation => (NoteKind::Degradation, "Connection degraded"),
                EventKind::LevelShift => {
                    s.shifts.push((ts, detail));
                    continue;
                }
                _ => continue,
            };
            notes.push(Note { kind: k, ts, title: title.into(), body: detail, priority: 3 });
        }
        // Degraded is announced once it has lasted a minute: the first lost pings of an outage
        // make the link "degraded" for a second or two, and that is not news of its own.
        if state != s.last_state {
            s.degraded_since = (link == LinkState::Degraded).then(|| link_since.unwrap_or_else(|| self.now.now()));
            s.last_state = state;
            self.dirty = true;
        }
        if s.shifts.first().is_some_and(|(t, _)| self.now.now() - t >= SHIFT_DIGEST_MS) {
            let shifts = std::mem::take(&mut s.shifts);
            let body = shifts.iter().map(|(_, d)| d.as_str()).collect::<Vec<_>>().join("\n");
            notes.push(Note {
                kind: NoteKind::LevelShift,
                ts: shifts[0].0,
                title: format!(
                    "Latency level changed ({} time{})",
                    shifts.len(),
                    if shifts.len() == 1 { "" } else { "s" }
                ),
                body,
                priority: 2,
            });
            self.dirty = true;
        }
        if let Some(since) = s.degraded_since
            && self.now.now() - since >= DEGRADED_AFTER_MS
        {
            notes.push(Note {
                kind: NoteKind::Degraded,
                ts: since,
                title: "Internet degraded".into(),
                body: format!("Loss or latency above the configured limits since {}.", hms(since)),
                priority: 3,
            });
            s.degraded_since = None;
            self.dirty = true;
        }
        Ok(notes)
    }

    /// Try each queued message on each destination still owed it, oldest first; a destination
    /// that fails waits (backoff) and keeps its order.
    fn deliver(&mut self) {
        let now = self.now.now();
        let max_age = self.cfg.max_age.as_millis() as i64;
        let before = self.state.queue.len();
        self.state.queue.retain(|q| {
            let keep = now - q.note.ts <= max_age || now < q.note.ts;
            if !keep {
                tracing::warn!(
                    "notify: giving up on \"{}\" after {}: {}",
                    q.note.title,
                    format_span(now - q.note.ts),
                    q.pending.join(", ")
                );
            }
            keep
        });
        self.dirty |= self.state.queue.len() != before;
        for (dest, backoff) in &mut self.backoff {
            if !backoff.ready() {
                continue;
            }
            for q in self.state.queue.iter_mut().filter(|q| q.pending.contains(dest)) {
                let sent = match dest.as_str() {
                    "ntfy" => http::ntfy(self.cfg.ntfy.as_ref().expect("configured"), &q.note),
                    "webhook" => http::webhook(self.cfg.webhook.as_ref().expect("configured"), &q.note),
                    _ => match &self.mqtt {
                        Some(m) if m.send(&q.note) => Sent::Ok,
                        _ => Sent::Retry("broker not connected".into()),
                    },
                };
                match sent {
                    Sent::Ok => {
                        backoff.ok();
                        q.pending.retain(|d| d != dest);
                        self.dirty = true;
                    }
                    Sent::Refused(why) => {
                        tracing::error!("notify: {dest} refused \"{}\" ({why}); check its settings", q.note.title);
                        q.pending.retain(|d| d != dest);
                        self.dirty = true;
                    }
                    Sent::Retry(why) => {
                        tracing::debug!("notify: {dest}: {why}; will retry");
                        backoff.failed();
                        break;
                    }
                }
            }
        }
        let before = self.state.queue.len();
        self.state.queue.retain(|q| !q.pending.is_empty());
        self.dirty |= self.state.queue.len() != before;
    }

    /// MQTT sensors: on change, and at least every minute.
    fn publish_figures(&mut self, store: &Store) {
        let Some(m) = &self.mqtt else { return };
        if !m.connected() {
            self.last_figures = None;
            return;
        }
        let Ok(f) = figures(store, self.now.now()) else { return };
        let stale =
            self.last_figures.as_ref().is_none_or(|(t, old)| *old != f || t.elapsed() >= Duration::from_secs(60));
        if stale && m.figures(&f) {
            self.last_figures = Some((Instant::now(), f));
        }
    }
}

/// The link's figures for MQTT: state, the anchors' newest minute, outages in 24 h.
pub fn figures(store: &Store, now: WallMs) -> Result<mqtt::Figures, StoreError> {
    let (state, _) = store.link_state()?;
    let m = store.newest_anchor_minute(now)?;
    Ok(mqtt::Figures {
        state: state.as_str().to_string(),
        latency_ms: m.median_us.map(|u| u / 1000.0),
        loss_pct: (m.sent > 0).then(|| m.lost as f64 / m.sent as f64 * 100.0),
        outages_24h: store.count_outages_since(OutageKind::Wan, now - DAY_MS)?,
    })
}
