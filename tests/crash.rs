//! Power-cut behaviour: `kill -9` in the middle of writing, twenty times in a row on the same
//! file, must leave a database that passes `PRAGMA integrity_check` and loses at most the batch
//! that had not been flushed yet.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

mod bed;

use bed::can_ping;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn kill_9_twenty_times_never_corrupts_and_loses_at_most_one_batch() {
    if !can_ping("kill_9_twenty_times_never_corrupts_and_loses_at_most_one_batch") {
        return;
    }
    const FLUSH_MS: i64 = 250;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let mut total_before = 0i64;
    for round in 0..20 {
        let mut agent = Command::new(env!("CARGO_BIN_EXE_wanwatch"))
            .args(["run", "--probes", "none", "--db", db.to_str().unwrap(), "--gateway", "none"])
            .args(["--target", "127.0.0.1", "--target", "::1", "--interval", "10ms", "--timeout", "100ms"])
            .args(["--flush-interval", &format!("{FLUSH_MS}ms")])
            .env("WANWATCH_LOG", "warn")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Kill at a different point of the flush cycle each round.
        let lifetime = Duration::from_millis(700 + (round * 137 % 600) as u64);
        let started = Instant::now();
        std::thread::sleep(lifetime);
        if let Some(status) = agent.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut agent.stderr.take().unwrap(), &mut err).unwrap();
            panic!("round {round}: agent exited ({status}) before the kill: {err}");
        }
        let killed_at = now_ms();
        agent.kill().unwrap(); // SIGKILL
        agent.wait().unwrap();

        let conn = Connection::open(&db).unwrap();
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok", "round {round}: database corrupt after kill -9");
        let (total, newest) =
            (wanwatch::store::pings::count(&conn).unwrap(), wanwatch::store::pings::last_ts(&conn).unwrap());
        let newest = newest.expect("samples written");
        // What may be lost: the batch since the last flush, plus the pings still waiting for
        // their answers (timeout 100 ms) and a little scheduling slack.
        let lost_ms = killed_at - newest;
        assert!(
            lost_ms <= FLUSH_MS + 100 + 250,
            "round {round}: newest stored sample is {lost_ms} ms older than the kill (ran {:?})",
            started.elapsed()
        );
        assert!(total > total_before, "round {round}: nothing new was stored");
        // No rollup counts a ping that is not stored; the minutes still open at the kill are
        // owed (rolled up by the next start, checked below).
        let by_minute = |sql: &str| -> std::collections::BTreeMap<i64, i64> {
            conn.prepare(sql)
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let rolled = by_minute("SELECT ts, sum(sent) FROM minutes GROUP BY ts");
        let stored = by_minute("SELECT ts, sum(n) FROM pings GROUP BY ts");
        for (minute, sent) in &rolled {
            let have = stored.get(minute).copied().unwrap_or(0);
            assert!(*sent <= have, "round {round}: the rollup of minute {minute} counts {sent} of {have} pings");
        }
        total_before = total;
    }
    // The agent recovers the crashed file, pays the rollups owed and keeps going.
    let o = bed::loopback_agent(&db).args(["--for", "1s"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let conn = Connection::open(&db).unwrap();
    let rolled: i64 = conn.query_row("SELECT coalesce(sum(sent), 0) FROM minutes", [], |r| r.get(0)).unwrap();
    assert_eq!(rolled, wanwatch::store::pings::count(&conn).unwrap(), "rollups and samples disagree after the restart");
}

/// Regression (issue 12.6): 30 s with the agent stopped read as nothing at all. A SIGSTOP'd
/// agent and the time between two runs are recorded as not measured, exported, and reported.
#[test]
fn time_the_agent_did_not_run_is_recorded_as_not_measured() {
    if !can_ping("time_the_agent_did_not_run_is_recorded_as_not_measured") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let run = |secs: &str| {
        Command::new(env!("CARGO_BIN_EXE_wanwatch"))
            .args(["run", "--probes", "none", "--db", db.to_str().unwrap(), "--gateway", "none"])
            .args(["--target", "127.0.0.1", "--interval", "200ms", "--flush-interval", "500ms", "--for", secs])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let agent = run("14s");
    std::thread::sleep(Duration::from_secs(3));
    let pid = agent.id() as i32;
    let stopped_at = now_ms();
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_secs(7));
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let stopped_ms = now_ms() - stopped_at;
    let out = agent.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first_end = now_ms();
    std::thread::sleep(Duration::from_secs(3));
    let second_start = now_ms();
    let out = run("3s").wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let c = Connection::open(&db).unwrap();
    let rows: Vec<(String, i64, i64)> = c
        .prepare("SELECT kind, start_ts, end_ts FROM blind ORDER BY start_ts")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (kind, a, b) = &rows[0];
    assert_eq!(kind, "stalled");
    // The stall is the SIGSTOP (7 s) give or take the loop's 1 s turn.
    assert!((b - a - stopped_ms).abs() <= 1500, "stall {} ms for a {stopped_ms} ms stop", b - a);
    assert!((a - stopped_at).abs() <= 1500, "stall starts at {a}, stopped at {stopped_at}");
    let (kind, a, b) = &rows[1];
    assert_eq!(kind, "not_running");
    assert!(*a <= first_end && *a >= first_end - 2000, "from the first run's last write: {a} vs {first_end}");
    assert!(*b >= second_start && *b <= second_start + 3000, "to the second run's start: {b} vs {second_start}");

    // Exported, and the report counts measured time only.
    let ex = Command::new(env!("CARGO_BIN_EXE_wanwatch"))
        .args(["export", "--db", db.to_str().unwrap(), "--table", "blind", "--format", "jsonl"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ex.stdout).lines().count(), 2);
    let rep = Command::new(env!("CARGO_BIN_EXE_wanwatch"))
        .args(["report", "--db", db.to_str().unwrap(), "--since", "10m", "--format", "md"])
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&rep.stdout);
    assert!(rep.status.success(), "{}", String::from_utf8_lossy(&rep.stderr));
    assert!(md.contains("not measured") && md.contains("2 stretches"), "{md}");
}
