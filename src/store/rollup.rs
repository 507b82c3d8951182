//! One-minute rollups: what a year of history is kept as once raw samples expire.

use std::collections::BTreeSet;

use rusqlite::{Connection, params};

use crate::calendar::MINUTE_MS;
use crate::sample::WallMs;
use crate::stats::quantile_sorted as quantile;

/// Statistics of one target over one minute. RTTs in microseconds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stats {
    pub sent: u32,
    pub lost: u32,
    pub min: Option<u32>,
    pub mean: Option<u32>,
    pub median: Option<u32>,
    pub p95: Option<u32>,
    pub max: Option<u32>,
    /// Mean absolute difference of successive answered RTTs (RFC 3550's idea, unsmoothed).
    pub jitter: Option<u32>,
}

/// Stats of probe results in send order: `Some(rtt)` answered, `None` lost.
pub fn stats(results: &[Option<u32>]) -> Stats {
    let rtts: Vec<u32> = results.iter().flatten().copied().collect();
    let jitter = (rtts.len() >= 2).then(|| {
        let sum: u64 = rtts.windows(2).map(|w| w[0].abs_diff(w[1]) as u64).sum();
        (sum as f64 / (rtts.len() - 1) as f64).round() as u32
    });
    let mut sorted = rtts.clone();
    sorted.sort_unstable();
    let mean = (!rtts.is_empty())
        .then(|| (rtts.iter().map(|&r| r as u64).sum::<u64>() as f64 / rtts.len() as f64).round() as u32);
    Stats {
        sent: results.len() as u32,
        lost: (results.len() - rtts.len()) as u32,
        min: sorted.first().copied(),
        mean,
        median: quantile(&sorted, 0.5).map(|v| v.round() as u32),
        p95: quantile(&sorted, 0.95).map(|v| v.round() as u32),
        max: sorted.last().copied(),
        jitter,
    }
}

/// Recompute the rollup rows of the given minutes from the raw samples (replacing what was
/// there, deleting rows of minutes that no longer have samples). Run inside the writer's
/// transaction.
pub fn recompute(conn: &Connection, minutes: &BTreeSet<WallMs>) -> rusqlite::Result<()> {
    let mut delete = conn.prepare_cached("DELETE FROM minutes WHERE ts = ?1")?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO minutes (ts, target, sent, lost, min_us, mean_us, median_us, p95_us, max_us, jitter_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for &minute in minutes {
        delete.execute([minute])?;
        // One block per target, its pings in send order (time, then seq).
        super::pings::for_each(conn, minute, minute + MINUTE_MS, None, |target, pings| {
            let results: Vec<Option<u32>> = pings.iter().map(|p| p.rtt_us).collect();
            let s = stats(&results);
            insert.execute(params![minute, target, s.sent, s.lost, s.min, s.mean, s.median, s.p95, s.max, s.jitter])?;
            Ok(())
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_a_minute() {
        // 10 answered pings 10..=19 ms with one lost in the middle.
        let mut r: Vec<Option<u32>> = (10..20).map(|ms| Some(ms * 1000)).collect();
        r.insert(5, None);
        let s = stats(&r);
        assert_eq!((s.sent, s.lost), (11, 1));
        assert_eq!((s.min, s.max), (Some(10_000), Some(19_000)));
        assert_eq!(s.mean, Some(14_500));
        assert_eq!(s.median, Some(14_500));
        assert_eq!(s.p95, Some(18_550)); // numpy.percentile(range(10,20), 95) * 1000
        assert_eq!(s.jitter, Some(1_000));
    }

    #[test]
    fn jitter_is_mean_absolute_successive_difference() {
        let s = stats(&[Some(10_000), Some(30_000), Some(10_000), Some(30_000)]);
        assert_eq!(s.jitter, Some(20_000));
        assert_eq!(s.median, Some(20_000));
    }

    #[test]
    fn all_lost_minute_has_no_rtt_stats() {
        let s = stats(&[None, None, None]);
        assert_eq!((s.sent, s.lost), (3, 3));
        assert_eq!((s.min, s.median, s.jitter), (None, None, None));
    }
}
