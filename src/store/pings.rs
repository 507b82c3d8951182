//! Raw pings, compactly: one row per target per minute (`pings`), holding that minute's pings
//! in a small blob. A ping costs about 4-5 bytes instead of a 23-byte row, and a flush touches
//! one or two leaf pages instead of a page per ~40 pings: the SD card sees fewer bytes.
//!
//! The blob (version 1) is a version byte, then per ping, oldest first (by time, then seq):
//!
//! | field | encoding |
//! |---|---|
//! | time | zigzag varint of the change in the gap between pings (ms); the first gap is from the minute's start |
//! | seq | zigzag varint of the change from the previous ping's seq (the first from 0) |
//! | result | varint: answered `zigzag(rtt_us - previous answered rtt_us) << 1`; lost `fail << 2 \| said_by << 1 \| 1` |
//! | said by | when flagged: varint length + the address as text (who sent the ICMP error) |
//!
//! Every reader decodes through here; no SQL outside this file sees the blob.

use std::collections::BTreeMap;

use integer_encoding::VarInt;
use rusqlite::{Connection, OptionalExtension, params};

use crate::calendar::{MINUTE_MS, minute_of};
use crate::sample::WallMs;

const VERSION: u8 = 1;

/// Row ids: the minute's number times this, plus the target id. One B-tree, clustered by time
/// and appended at its right edge; a table b-tree keeps a minute's blob on its leaf page (an
/// index b-tree, as WITHOUT ROWID would make, spills blobs over ~230 bytes to overflow pages).
const TARGETS_PER_MINUTE: i64 = 1 << 20;

/// The row id of (`minute`, `target`); also the lower bound of a minute with target 0.
pub fn key(minute: WallMs, target: i64) -> i64 {
    let k = minute.div_euclid(MINUTE_MS) as i128 * TARGETS_PER_MINUTE as i128 + target as i128;
    k.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The id range `[lo, hi)` of the blocks that can hold pings sent in `[since, until)`.
fn keys(since: WallMs, until: WallMs) -> (i64, i64) {
    (key(minute_of(since), 0), key(minute_of(until.saturating_add(MINUTE_MS - 1)), 0))
}

/// The newest ping's time, as SQL (reads only the newest minute's blocks).
pub const LAST_TS_SQL: &str = "(SELECT max(last_ts) FROM pings WHERE id >= ((SELECT max(id) FROM pings) >> 20) << 20)";

/// One ping as stored: exactly what the old one-row-per-ping table held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// Send time, ms since the Unix epoch.
    pub ts: WallMs,
    pub seq: u16,
    /// Round trip in microseconds; None when lost.
    pub rtt_us: Option<u32>,
    /// Why it was lost (`sample::Failure::code`); None when answered (or lost for no recorded reason).
    pub fail: Option<i64>,
    /// Who said so, for an ICMP error.
    pub err_from: Option<String>,
}

/// A blob that does not decode: named by its row, so a report says which minute is damaged.
#[derive(Debug, thiserror::Error)]
#[error("pings of target {target} at minute {minute}: {what}")]
pub struct BadBlock {
    pub minute: WallMs,
    pub target: i64,
    pub what: &'static str,
}

fn put<V: VarInt>(out: &mut Vec<u8>, v: V) {
    let mut buf = [0u8; 10];
    let n = v.encode_var(&mut buf);
    out.extend_from_slice(&buf[..n]);
}

/// Encode one minute's pings (sorted by time then seq; all in the minute starting at `minute`).
pub fn encode(minute: WallMs, pings: &[Ping]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + pings.len() * 5);
    out.push(VERSION);
    let (mut prev_ts, mut prev_gap, mut prev_seq, mut prev_rtt) = (minute, 0i64, 0i64, 0i64);
    for p in pings {
        let gap = p.ts - prev_ts;
        put(&mut out, gap - prev_gap);
        (prev_ts, prev_gap) = (p.ts, gap);
        put(&mut out, p.seq as i64 - prev_seq);
        prev_seq = p.seq as i64;
        match p.rtt_us {
            Some(rtt) => {
                let d = rtt as i64 - prev_rtt;
                prev_rtt = rtt as i64;
                // zigzag by hand: the low bit says "answered".
                let zz = ((d << 1) ^ (d >> 63)) as u64;
                put(&mut out, zz << 1);
            }
            None => {
                let fail = p.fail.unwrap_or(0).clamp(0, 1 << 40) as u64;
                let from = p.err_from.as_deref();
                put(&mut out, (fail << 2) | (u64::from(from.is_some()) << 1) | 1);
                if let Some(from) = from {
                    put(&mut out, from.len() as u64);
                    out.extend_from_slice(from.as_bytes());
                }
            }
        }
    }
    out
}

/// Decode a blob written by [`encode`].
pub fn decode(minute: WallMs, target: i64, blob: &[u8]) -> Result<Vec<Ping>, BadBlock> {
    let bad = |what| BadBlock { minute, target, what };
    let (&version, mut rest) = blob.split_first().ok_or(bad("empty"))?;
    if version != VERSION {
        return Err(bad("unknown version"));
    }
    fn take<V: VarInt>(rest: &mut &[u8]) -> Option<V> {
        let (v, n) = V::decode_var(rest)?;
        *rest = &rest[n..];
        Some(v)
    }
    let mut pings = Vec::with_capacity(blob.len() / 4);
    let (mut prev_ts, mut prev_gap, mut prev_seq, mut prev_rtt) = (minute, 0i64, 0i64, 0i64);
    while !rest.is_empty() {
        let dgap: i64 = take(&mut rest).ok_or(bad("truncated time"))?;
        let gap = prev_gap.checked_add(dgap).ok_or(bad("time out of range"))?;
        let ts = prev_ts.checked_add(gap).ok_or(bad("time out of range"))?;
        (prev_ts, prev_gap) = (ts, gap);
        let dseq: i64 = take(&mut rest).ok_or(bad("truncated seq"))?;
        let seq = u16::try_from(prev_seq + dseq).map_err(|_| bad("seq out of range"))?;
        prev_seq = seq as i64;
        let v: u64 = take(&mut rest).ok_or(bad("truncated result"))?;
        let ping = if v & 1 == 0 {
            let zz = v >> 1;
            let d = (zz >> 1) as i64 ^ -((zz & 1) as i64);
            let rtt = u32::try_from(prev_rtt + d).map_err(|_| bad("rtt out of range"))?;
            prev_rtt = rtt as i64;
            Ping { ts, seq, rtt_us: Some(rtt), fail: None, err_from: None }
        } else {
            let fail = (v >> 2) as i64;
            let err_from = if v & 2 != 0 {
                let len: u64 = take(&mut rest).ok_or(bad("truncated address"))?;
                let len = usize::try_from(len).ok().filter(|&l| l <= rest.len()).ok_or(bad("truncated address"))?;
                let text = std::str::from_utf8(&rest[..len]).map_err(|_| bad("address is not text"))?;
                rest = &rest[len..];
                Some(text.to_string())
            } else {
                None
            };
            Ping { ts, seq, rtt_us: None, fail: (fail != 0).then_some(fail), err_from }
        };
        pings.push(ping);
    }
    Ok(pings)
}

/// Add `new` to what the store holds for `target`, one block per minute. A ping already stored
/// (same time and seq) is kept as it was. Returns the minutes written.
pub fn merge(conn: &Connection, target: i64, mut new: Vec<Ping>) -> rusqlite::Result<Vec<WallMs>> {
    new.sort_by_key(|p| (p.ts, p.seq));
    let mut minutes = Vec::new();
    for group in new.chunk_by(|a, b| minute_of(a.ts) == minute_of(b.ts)) {
        let minute = minute_of(group[0].ts);
        let mut all = read_block(conn, minute, target)?;
        all.extend(group.iter().cloned());
        // Stable: an old ping sorts before a new one with the same key and wins the dedup.
        all.sort_by_key(|p| (p.ts, p.seq));
        all.dedup_by_key(|p| (p.ts, p.seq));
        write_block(conn, minute, target, &all)?;
        minutes.push(minute);
    }
    Ok(minutes)
}

/// One stored block, decoded (empty when there is none).
fn read_block(conn: &Connection, minute: WallMs, target: i64) -> rusqlite::Result<Vec<Ping>> {
    let blob: Option<Vec<u8>> = conn
        .prepare_cached("SELECT data FROM pings WHERE id = ?1")?
        .query_row([key(minute, target)], |r| r.get(0))
        .optional()?;
    match blob {
        None => Ok(Vec::new()),
        Some(b) => decode(minute, target, &b).map_err(to_sql),
    }
}

/// Store `pings` as the block of (`minute`, `target`), or delete the block when there are none.
fn write_block(conn: &Connection, minute: WallMs, target: i64, pings: &[Ping]) -> rusqlite::Result<()> {
    if pings.is_empty() {
        conn.prepare_cached("DELETE FROM pings WHERE id = ?1")?.execute([key(minute, target)])?;
        return Ok(());
    }
    let last = pings.iter().map(|p| p.ts).max().unwrap_or(minute);
    conn.prepare_cached(
        "INSERT OR REPLACE INTO pings (id, ts, target, n, last_ts, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![key(minute, target), minute, target, pings.len() as i64, last, encode(minute, pings)])?;
    Ok(())
}

fn to_sql(e: BadBlock) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Blob, Box::new(e))
}

/// Every ping in `[since, until)` (of one target, or all), by (time, target, seq), passed to `f`
/// a block at a time: memory stays at one block whatever the range.
pub fn for_each(
    conn: &Connection,
    since: WallMs,
    until: WallMs,
    target: Option<i64>,
    mut f: impl FnMut(i64, &[Ping]) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    // A block is keyed by its minute's start, so the first minute may start before `since`.
    let mut stmt = conn.prepare_cached(
        "SELECT ts, target, data FROM pings WHERE id >= ?1 AND id < ?2 AND (?3 IS NULL OR target = ?3) ORDER BY id",
    )?;
    let (lo, hi) = keys(since, until);
    let mut rows = stmt.query(params![lo, hi, target])?;
    while let Some(row) = rows.next()? {
        let (minute, target, blob): (WallMs, i64, Vec<u8>) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let mut pings = decode(minute, target, &blob).map_err(to_sql)?;
        pings.retain(|p| p.ts >= since && p.ts < until);
        if !pings.is_empty() {
            f(target, &pings)?;
        }
    }
    Ok(())
}

/// Write every ping in `[since, until)` one row each, as the old `samples` table had them
/// (ts, target, seq, rtt_us, fail, err_from), with `insert` (an INSERT of those six values):
/// for tools that cannot read the blobs.
pub fn unpack_into(
    conn: &Connection,
    insert: &mut rusqlite::CachedStatement,
    since: WallMs,
    until: WallMs,
) -> rusqlite::Result<()> {
    for_each(conn, since, until, None, |target, pings| {
        for p in pings {
            insert.execute(params![p.ts, target, p.seq, p.rtt_us, p.fail, p.err_from])?;
        }
        Ok(())
    })
}

/// Every ping in `[since, until)`, as (target, ping), ordered by time, then target, then seq.
pub fn read(
    conn: &Connection,
    since: WallMs,
    until: WallMs,
    target: Option<i64>,
) -> rusqlite::Result<Vec<(i64, Ping)>> {
    let mut out = Vec::new();
    // Blocks come minute by minute; within a minute the targets interleave by time.
    let mut minute: Vec<(i64, Ping)> = Vec::new();
    let mut current = None;
    for_each(conn, since, until, target, |t, pings| {
        let m = minute_of(pings[0].ts);
        if current != Some(m) {
            minute.sort_by_key(|(t, p)| (p.ts, *t, p.seq));
            out.append(&mut minute);
            current = Some(m);
        }
        minute.extend(pings.iter().map(|p| (t, p.clone())));
        Ok(())
    })?;
    minute.sort_by_key(|(t, p)| (p.ts, *t, p.seq));
    out.append(&mut minute);
    Ok(out)
}

/// The newest ping's time.
pub fn last_ts(conn: &Connection) -> rusqlite::Result<Option<WallMs>> {
    conn.query_row(&format!("SELECT {LAST_TS_SQL}"), [], |r| r.get(0))
}

/// Delete the blocks whose every ping is older than `cutoff`. Returns the pings deleted.
pub fn expire(conn: &Connection, cutoff: WallMs) -> rusqlite::Result<i64> {
    conn.prepare("DELETE FROM pings WHERE id < ?1 RETURNING n")?
        .query_map([key(minute_of(cutoff), 0)], |r| r.get::<_, i64>(0))?
        .sum()
}

/// The start of the first minute at or after `from`'s minute that holds pings (by row id: the
/// `ts` column has no index of its own).
pub fn next_minute(conn: &Connection, from: WallMs) -> rusqlite::Result<Option<WallMs>> {
    conn.prepare_cached("SELECT ts FROM pings WHERE id >= ?1 ORDER BY id LIMIT 1")?
        .query_row([key(minute_of(from), 0)], |r| r.get(0))
        .optional()
}

/// How many pings are stored.
pub fn count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT coalesce(sum(n), 0) FROM pings", [], |r| r.get(0))
}

/// Move the pings `moved` picks from the minutes `[lo, hi]` by `delta` ms (a clock step at boot).
/// A ping whose new place is taken stays where it was (as `UPDATE OR IGNORE` did). Returns every
/// minute changed.
pub fn shift(
    conn: &Connection,
    delta: i64,
    lo: WallMs,
    hi: WallMs,
    moved: impl Fn(i64, &Ping) -> bool,
) -> rusqlite::Result<Vec<WallMs>> {
    let mut blocks: BTreeMap<(WallMs, i64), Vec<Ping>> = BTreeMap::new();
    {
        let mut stmt = conn.prepare_cached("SELECT ts, target, data FROM pings WHERE id >= ?1 AND id < ?2")?;
        let (lo, hi) = keys(lo, hi.saturating_add(1));
        let mut rows = stmt.query(params![lo, hi])?;
        while let Some(row) = rows.next()? {
            let (minute, target, blob): (WallMs, i64, Vec<u8>) = (row.get(0)?, row.get(1)?, row.get(2)?);
            blocks.insert((minute, target), decode(minute, target, &blob).map_err(to_sql)?);
        }
    }
    let mut leaving: Vec<(i64, Ping)> = Vec::new();
    let mut touched = std::collections::BTreeSet::new();
    for ((minute, target), pings) in blocks.iter_mut() {
        let before = pings.len();
        pings.retain(|p| {
            if moved(*target, p) {
                leaving.push((*target, p.clone()));
                false
            } else {
                true
            }
        });
        if pings.len() != before {
            touched.insert((*minute, *target));
        }
    }
    if leaving.is_empty() {
        return Ok(Vec::new());
    }
    // Destinations outside the range just read are read now.
    for (target, p) in &leaving {
        let key = (minute_of(p.ts + delta), *target);
        if let std::collections::btree_map::Entry::Vacant(e) = blocks.entry(key) {
            e.insert(read_block(conn, key.0, key.1)?);
        }
    }
    for (target, mut p) in leaving {
        let from = (minute_of(p.ts), target);
        let to = (minute_of(p.ts + delta), target);
        let taken = blocks[&to].iter().any(|q| q.ts == p.ts + delta && q.seq == p.seq);
        let key = if taken {
            from
        } else {
            p.ts += delta;
            to
        };
        let block = blocks.get_mut(&key).expect("read above");
        block.push(p);
        block.sort_by_key(|q| (q.ts, q.seq));
        touched.insert(key);
    }
    for key in &touched {
        write_block(conn, key.0, key.1, &blocks[key])?;
    }
    let mut minutes: Vec<WallMs> = touched.iter().map(|k| k.0).collect();
    minutes.dedup();
    Ok(minutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(ts: WallMs, seq: u16, rtt: u32) -> Ping {
        Ping { ts, seq, rtt_us: Some(rtt), fail: None, err_from: None }
    }

    #[test]
    fn a_minute_round_trips_exactly() {
        let minute = 1_700_000_040_000;
        let mut pings: Vec<Ping> = (0..60u16)
            .map(|i| answered(minute + i as i64 * 1000 + 3, 65_500 + i % 36, 20_000 + (i as u32 * 977) % 9000))
            .collect();
        let lost = |p: &mut Ping, fail: Option<i64>, from: Option<&str>| {
            (p.rtt_us, p.fail, p.err_from) = (None, fail, from.map(String::from));
        };
        lost(&mut pings[7], Some(1), None);
        lost(&mut pings[8], Some(11), Some("192.0.2.1"));
        lost(&mut pings[9], Some(13), Some("2001:db8::1"));
        lost(&mut pings[10], None, None);
        pings[11].rtt_us = Some(0);
        pings[12].rtt_us = Some(u32::MAX);
        pings.sort_by_key(|p| (p.ts, p.seq));
        let blob = encode(minute, &pings);
        assert_eq!(decode(minute, 1, &blob).unwrap(), pings);
        // The point of it: a few bytes a ping, not 23.
        assert!(blob.len() < pings.len() * 7, "{} bytes for {} pings", blob.len(), pings.len());
    }

    #[test]
    fn steady_pings_cost_about_four_bytes() {
        let minute = 1_700_000_040_000;
        let pings: Vec<Ping> = (0..60u16)
            .map(|i| answered(minute + i as i64 * 1000 + (i as i64 * 7) % 13, i, 18_000 + (i as u32 * 3_331) % 4_000))
            .collect();
        let blob = encode(minute, &pings);
        assert!(blob.len() <= 60 * 5, "{} bytes", blob.len());
        assert_eq!(decode(minute, 1, &blob).unwrap(), pings);
    }

    #[test]
    fn damage_is_an_error_naming_the_block_never_a_panic() {
        let minute = 60_000;
        let blob = encode(minute, &[answered(61_000, 1, 5_000), answered(62_000, 2, 6_000)]);
        for cut in 0..blob.len() {
            let _ = decode(minute, 3, &blob[..cut]);
        }
        let e = decode(minute, 3, &[]).unwrap_err().to_string();
        assert!(e.contains("target 3") && e.contains("60000"), "{e}");
        assert!(decode(minute, 3, &[9, 1, 2]).is_err());
        assert!(decode(minute, 3, &[1, 0xff, 0xff, 0xff]).is_err());
        // Random bytes: errors or pings, never a panic.
        let mut x = 12345u64;
        for _ in 0..2000 {
            let bytes: Vec<u8> = std::iter::once(1)
                .chain((0..20).map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                }))
                .collect();
            let _ = decode(minute, 3, &bytes);
        }
    }
}
