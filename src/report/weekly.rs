//! Last week's report, written by the agent into the state directory once the week is over,
//! so the evidence is already there when the household calls the ISP.

use std::path::{Path, PathBuf};

use super::{Plan, build, render};
use crate::calendar::{HOUR_MS, WEEK_MS, hour_of_week};
use crate::sample::WallMs;
use crate::store::Store;

/// The most recent complete week, Monday 00:00 to Monday 00:00 local time, before `now`.
pub fn last_week(now: WallMs) -> (WallMs, WallMs) {
    let offset = crate::calendar::local_offset_s(now);
    let into_week_ms = hour_of_week(now, offset) as i64 * HOUR_MS + (now + offset * 1000).rem_euclid(HOUR_MS);
    let this_monday = now - into_week_ms;
    (this_monday - WEEK_MS, this_monday)
}

/// `dir/wanwatch-week-2026-11-16.html`, named for the week's Monday.
pub fn file_for(dir: &Path, since: WallMs) -> PathBuf {
    dir.join(format!("wanwatch-week-{}.html", crate::calendar::format_local_date(since)))
}

/// Write last week's report unless it exists or the database has nothing from that week.
/// Returns the file written, if any. Written to a temporary name and renamed, so a reader
/// never sees half a report.
pub fn write_if_due(db: &Path, dir: &Path, now: WallMs, plan: Plan) -> anyhow::Result<Option<PathBuf>> {
    use anyhow::Context;
    let (since, until) = last_week(now);
    let path = file_for(dir, since);
    if path.exists() {
        return Ok(None);
    }
    let store = Store::open_read_only(db)?;
    if !store.any_minutes(since, until)? {
        return Ok(None);
    }
    let report = build(&store, since, until, plan, &|_| {})?;
    let html = render::html(&report, &|_| {})?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("html.tmp");
    std::fs::write(&tmp, html).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(Some(path))
}

/// Check every ten minutes (and half a minute after start) until stopped; failures are logged,
/// never fatal. Asleep in between.
pub fn spawn(db: PathBuf, dir: PathBuf, plan: Plan, now: crate::clock::WallClock) -> crate::service::FlagThread {
    crate::service::FlagThread::spawn("weekly-report", move |stop| {
        // Give the agent's first flush a moment, so a fresh database exists.
        let mut next = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !stop.wait_until(next) {
            next += std::time::Duration::from_secs(600);
            match write_if_due(&db, &dir, now.now(), plan) {
                Ok(Some(path)) => tracing::info!("wrote last week's report to {}", path.display()),
                Ok(None) => {}
                Err(e) => tracing::warn!("weekly report: {e:#}"),
            }
            // And on the 1st, last month's service report.
            match super::sla::write_if_due(&db, &dir, now.now(), plan) {
                Ok(Some(path)) => tracing::info!("wrote last month's service report to {}", path.display()),
                Ok(None) => {}
                Err(e) => tracing::warn!("monthly report: {e:#}"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_week_is_monday_to_monday() {
        let (since, until) = last_week(crate::clock::WallClock::system().now());
        assert_eq!(until - since, WEEK_MS);
        let off = crate::calendar::local_offset_s(until);
        assert_eq!(hour_of_week(until, off), 0);
        assert_eq!((until + off * 1000) % HOUR_MS, 0);
    }
}
