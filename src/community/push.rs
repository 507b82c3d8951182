//! Pushing: every complete hour not yet accepted by the receiver, oldest first, in one request
//! per [`MAX_HOURS_PER_REQUEST`]. The database is the queue: what to send is worked out from
//! it, and only a watermark (the end of the last hour the receiver accepted) is kept, in
//! `community.json` next to the database, written atomically after each accepted request. A
//! receiver that is down for a day gets that day when it is back; nothing is lost and nothing
//! sent twice (a resend after a crash between the POST and the watermark repeats the same
//! samples, which a TSDB stores once).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::labels;
use super::remote_write::{self, PushError, TimeSeries, WriteRequest};
use super::rollup::{Identity, hour_series};
use crate::calendar::{DAY_MS, HOUR_MS};
use crate::config::outputs::CommunityConfig;
use crate::sample::WallMs;
use crate::service::{FlagThread, Stop};
use crate::store::Store;

/// The state file's name, next to the database.
pub const STATE_FILE: &str = "community.json";
/// On opting in, the past week is sent once; never more.
pub const BACKFILL_MS: i64 = 7 * DAY_MS;
/// An hour is pushed this long after it ended.
pub const SETTLE_MS: i64 = 5 * 60_000;
/// Hours per remote-write request.
pub const MAX_HOURS_PER_REQUEST: usize = 24;
/// After a failed push, try again this soon (or at the next interval, if sooner).
const RETRY: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// This install's random id: 16 letters from g to z (no digits and no hex letters, so it
    /// can never read as a number, an address or a MAC).
    pub install: String,
    /// The end of the last hour the receiver accepted.
    pub pushed_until: Option<WallMs>,
}

pub fn state_path(db: &Path) -> PathBuf {
    crate::store::folder_of(db).join(STATE_FILE)
}

fn new_install_id() -> String {
    (0..16).map(|_| (b'g' + rand::random_range(0..20u8)) as char).collect()
}

/// The state, made (with a new id) when there is none or it is unreadable.
pub fn load_state(path: &Path) -> State {
    match crate::jsonfile::load::<State>(path, "wanwatch's community state") {
        Ok(s) if s.install.len() == 16 && s.install.bytes().all(|b| (b'g'..=b'z').contains(&b)) => s,
        Ok(_) | Err(_) => State { install: new_install_id(), pushed_until: None },
    }
}

/// A new random id from now on (the old one's data stays on the server under the old id).
pub fn rotate_id(path: &Path) -> std::io::Result<State> {
    let mut s = load_state(path);
    s.install = new_install_id();
    crate::jsonfile::save(&s, path)?;
    Ok(s)
}

/// What a push did.
#[derive(Debug, Default, PartialEq)]
pub struct Pushed {
    pub hours: usize,
    pub series: usize,
    pub samples: usize,
    /// Series left out because a label failed the privacy check (should be none).
    pub dropped: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CommunityError {
    #[error("community sharing is off; set [community] enabled = true (see README, \"Community\")")]
    NotEnabled,
    #[error(transparent)]
    Push(#[from] PushError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot read the bearer token file {}: {kind}", path.display())]
    Token { path: PathBuf, kind: std::io::ErrorKind },
    #[error("cannot save {}: {err}", path.display())]
    State { path: PathBuf, err: std::io::Error },
}

pub fn token(cfg: &CommunityConfig) -> Result<Option<String>, CommunityError> {
    cfg.bearer_token_file
        .as_ref()
        .map(|p| {
            std::fs::read_to_string(p)
                .map(|t| t.trim().to_string())
                .map_err(|e| CommunityError::Token { path: p.clone(), kind: e.kind() })
        })
        .transpose()
}

/// The local hour of day of `ts`.
fn local_hour(ts: WallMs) -> u32 {
    (crate::calendar::hour_of_week(ts, crate::calendar::local_offset_s(ts)) % 24) as u32
}

/// Push every complete hour since the watermark (at most a week back), as of `now`.
pub fn push_pending(cfg: &CommunityConfig, db: &Path, now: WallMs) -> Result<Pushed, CommunityError> {
    if !cfg.enabled {
        return Err(CommunityError::NotEnabled);
    }
    let path = state_path(db);
    let mut state = load_state(&path);
    let token = token(cfg)?;
    let store = Store::open_read_only(db)?;
    let id = Identity { region: cfg.region.clone(), carrier: cfg.carrier.clone(), install: state.install.clone() };
    // An hour is sent once its last minutes are surely in the database (the writer flushes every
    // minute), and never again.
    let last_complete = (now - SETTLE_MS).div_euclid(HOUR_MS) * HOUR_MS;
    let floor = last_complete - BACKFILL_MS;
    let mut from = state.pushed_until.unwrap_or(floor).max(floor);
    let mut pushed = Pushed::default();
    while from < last_complete {
        let until = (from + MAX_HOURS_PER_REQUEST as i64 * HOUR_MS).min(last_complete);
        // Same labels, one series with its samples in time order.
        let mut by_labels: BTreeMap<Vec<(String, String)>, TimeSeries> = BTreeMap::new();
        let mut hours = 0;
        for h in (from..until).step_by(HOUR_MS as usize) {
            let series = hour_series(&store, &id, h, local_hour(h))?;
            hours += usize::from(!series.is_empty());
            for ts in series {
                if !ts.labels.iter().all(|l| labels::safe(&l.name, &l.value)) {
                    tracing::warn!("community: a series failed the privacy check and was not sent: {:?}", ts.labels);
                    pushed.dropped += 1;
                    continue;
                }
                let key: Vec<(String, String)> = ts.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
                match by_labels.get_mut(&key) {
                    Some(s) => s.samples.extend(ts.samples),
                    None => {
                        by_labels.insert(key, ts);
                    }
                }
            }
        }
        let req = WriteRequest { timeseries: by_labels.into_values().collect() };
        if !req.timeseries.is_empty() {
            remote_write::send(&cfg.remote_write_url, token.as_deref(), &req, Duration::from_secs(30))?;
            pushed.series += req.timeseries.len();
            pushed.samples += req.timeseries.iter().map(|t| t.samples.len()).sum::<usize>();
        }
        pushed.hours += hours;
        state.pushed_until = Some(until);
        crate::jsonfile::save(&state, &path).map_err(|err| CommunityError::State { path: path.clone(), err })?;
        from = until;
    }
    Ok(pushed)
}

/// The agent's pusher: a push soon after start, then every `push_interval`; a failed one is
/// tried again within [`RETRY`].
pub fn spawn(cfg: CommunityConfig, db: PathBuf, now: crate::clock::WallClock) -> Option<FlagThread> {
    if !cfg.enabled {
        return None;
    }
    Some(FlagThread::spawn("community", move |stop: &Stop| {
        let mut next = Instant::now() + Duration::from_secs(30);
        loop {
            if stop.wait_until(next) {
                return;
            }
            next = Instant::now() + cfg.push_interval;
            match push_pending(&cfg, &db, now.now()) {
                Ok(p) if p.samples > 0 => {
                    tracing::info!(hours = p.hours, samples = p.samples, "community: pushed");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("community: {e}");
                    next = next.min(Instant::now() + RETRY);
                }
            }
        }
    }))
}
