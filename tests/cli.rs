//! The command line as a user meets it: bad input gives a clear error and a non-zero exit,
//! never a panic; exports stream and survive `| head`.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod bed;

use bed::can_ping;

/// Run wanwatch; `run` gets `--probes none` so no test ever talks to a real DNS or web server.
fn wanwatch(args: &[&str]) -> Output {
    let mut args: Vec<&str> = args.to_vec();
    if args.first() == Some(&"run") && !args.contains(&"--probes") {
        args.splice(1..1, ["--probes", "none"]);
    }
    Command::new(env!("CARGO_BIN_EXE_wanwatch")).args(&args).stdin(Stdio::null()).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A database with a few seconds of loopback samples, written by the real agent.
fn recorded_db(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("w.db");
    let o = wanwatch(&[
        "run",
        "--db",
        db.to_str().unwrap(),
        "--gateway",
        "none",
        "--target",
        "127.0.0.1",
        "--interval",
        "20ms",
        "--flush-interval",
        "200ms",
        "--for",
        "2s",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    db
}

#[test]
fn malformed_config_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[ping]\ninterval = \"1s\"\ntimeout = \"soon\"\n").unwrap();
    let o = wanwatch(&["run", "--config", cfg.to_str().unwrap(), "--db", dir.path().join("x.db").to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("bad.toml") && e.contains("line 3") && e.contains("soon"), "unclear error:\n{e}");
    assert!(!e.contains("panicked"), "{e}");
    assert!(!dir.path().join("x.db").exists(), "a broken config must not create a database");
}

#[test]
fn missing_config_file_is_an_error() {
    let o = wanwatch(&["run", "--config", "/nonexistent/wanwatch.toml", "--for", "1s"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot read config file /nonexistent/wanwatch.toml"), "{}", stderr(&o));
}

#[test]
fn bad_flag_values_are_errors() {
    let o = wanwatch(&["run", "--interval", "1ms", "--for", "1s", "--db", "/tmp/never.db"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--interval"), "{}", stderr(&o));
    let o = wanwatch(&["run", "--gateway", "my-router", "--for", "1s", "--db", "/tmp/never.db"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("my-router"), "{}", stderr(&o));
}

#[test]
fn unwritable_database_path_is_a_clear_error() {
    let o = wanwatch(&[
        "run",
        "--db",
        "/nonexistent-dir/w.db",
        "--gateway",
        "none",
        "--target",
        "127.0.0.1",
        "--for",
        "1s",
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("cannot open database /nonexistent-dir/w.db"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn corrupt_database_is_reported_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    for args in [
        vec![
            "run",
            "--probes",
            "none",
            "--db",
            db.to_str().unwrap(),
            "--gateway",
            "none",
            "--target",
            "127.0.0.1",
            "--for",
            "1s",
        ],
        vec!["status", "--db", db.to_str().unwrap()],
        vec!["export", "--db", db.to_str().unwrap(), "--table", "samples"],
    ] {
        let o = wanwatch(&args);
        assert!(!o.status.success(), "{args:?} should fail");
        let e = stderr(&o);
        assert!(e.contains("not a wanwatch SQLite database or is corrupt"), "{args:?}: {e}");
        assert!(!e.contains("panicked"), "{e}");
    }
    assert_eq!(std::fs::read(&db).unwrap(), garbage, "the corrupt file must not be modified");
}

#[test]
fn status_on_a_missing_database_says_so() {
    let o = wanwatch(&["status", "--db", "/tmp/definitely-not-here.db"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
}

#[test]
fn export_csv_and_jsonl_and_time_filters() {
    if !can_ping("export_csv_and_jsonl_and_time_filters") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = recorded_db(dir.path());
    let db = db.to_str().unwrap();

    let o = wanwatch(&["export", "--db", db, "--table", "samples", "--format", "csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("time,ts_ms,target,addr,seq,rtt_ms,lost"));
    let rows: Vec<&str> = lines.collect();
    assert!(rows.len() >= 50, "only {} samples in 2 s at 20 ms", rows.len());
    assert!(rows.iter().all(|r| r.contains(",127.0.0.1,")));

    let o = wanwatch(&["export", "--db", db, "--table", "minutes", "--format", "jsonl"]);
    let text = String::from_utf8(o.stdout).unwrap();
    let total: u64 =
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["sent"].as_u64().unwrap()).sum();
    assert_eq!(total as usize, rows.len(), "rollups must count every sample");

    let o = wanwatch(&["export", "--db", db, "--table", "samples", "--until", "2000-01-01"]);
    assert_eq!(String::from_utf8(o.stdout).unwrap().lines().count(), 1, "only the header before 2000");
    let o = wanwatch(&["export", "--db", db, "--table", "events", "--since", "1h", "--format", "jsonl"]);
    let kinds: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("agent_start"));
    assert_eq!(kinds.last().map(String::as_str), Some("agent_stop"));

    let o = wanwatch(&["export", "--db", db, "--table", "samples", "--since", "last tuesday"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--since") && stderr(&o).contains("last tuesday"), "{}", stderr(&o));
}

#[test]
fn export_into_a_closed_pipe_exits_quietly() {
    if !can_ping("export_into_a_closed_pipe_exits_quietly") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = recorded_db(dir.path());
    // Make the export big enough that it cannot fit in the pipe buffer.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
         INSERT INTO samples (ts, target, seq, rtt_us) SELECT i, 1, i % 65536, 1000 FROM n;",
    )
    .unwrap();
    for format in ["csv", "jsonl"] {
        // `wanwatch export | head -n 3`
        let mut child = Command::new(env!("CARGO_BIN_EXE_wanwatch"))
            .args(["export", "--db", db.to_str().unwrap(), "--table", "samples", "--format", format])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        for _ in 0..3 {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
        }
        drop(out);
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{format}: export into a closed pipe failed: {err}");
        assert!(!err.contains("panicked"), "{format}: {err}");
    }
}

#[test]
fn sqlite_export_is_a_consistent_copy_while_the_agent_writes() {
    if !can_ping("sqlite_export_is_a_consistent_copy_while_the_agent_writes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let mut agent = bed::loopback_agent(&db)
        .args(["--target", "::1"])
        .args(["--interval", "10ms", "--flush-interval", "100ms", "--for", "6s"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for i in 0..3 {
        let copy = dir.path().join(format!("copy{i}.db"));
        let o =
            wanwatch(&["export", "--db", db.to_str().unwrap(), "--format", "sqlite", "--out", copy.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let c = rusqlite::Connection::open(&copy).unwrap();
        let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
        let n: i64 = c.query_row("SELECT count(*) FROM samples", [], |r| r.get(0)).unwrap();
        assert!(n > 0, "copy {i} has no samples");
        std::thread::sleep(std::time::Duration::from_millis(700));
    }
    // Refuses to overwrite.
    let copy0 = dir.path().join("copy0.db");
    let o = wanwatch(&["export", "--db", db.to_str().unwrap(), "--format", "sqlite", "--out", copy0.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("already exists"));
    assert!(agent.wait().unwrap().success());
}

#[test]
fn config_subcommand_prints_the_effective_targets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, "[ping]\ngateway = \"192.0.2.1\"\nanchors = [\"198.51.100.7\"]\ninterval = \"5s\"\n").unwrap();
    let o = wanwatch(&["config", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("target gateway (192.0.2.1) role=gateway interval=5s"), "{out}");
    assert!(out.contains("target 198.51.100.7 role=anchor"), "{out}");
}

#[test]
fn without_oled_or_led_the_agent_runs_headless_with_one_warning_each() {
    if !can_ping("without_oled_or_led_the_agent_runs_headless_with_one_warning_each") {
        return;
    }
    if std::path::Path::new("/dev/i2c-1").exists() {
        eprintln!("SKIP without_oled...: this machine has an I2C bus");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let o =
        wanwatch(&["run", "--db", db.to_str().unwrap(), "--gateway", "none", "--target", "127.0.0.1", "--for", "3s"]);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert_eq!(e.matches("running headless").count(), 1, "{e}");
    assert_eq!(e.matches("no status LED").count(), 1, "{e}");
    assert!(!e.contains("panicked"));
}

#[test]
fn doctor_says_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, "[ping]\ngateway = \"none\"\nanchors = [\"127.0.0.1\"]\n").unwrap();
    let db = dir.path().join("w.db");
    let o = wanwatch(&["doctor", "--config", cfg.to_str().unwrap(), "--db", db.to_str().unwrap(), "--offline"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    for name in ["ICMP", "database", "I2C", "GPIO", "clock"] {
        assert!(out.lines().any(|l| l.contains(name)), "doctor does not check {name}:\n{out}");
    }
    assert!(out.contains("will be created"), "{out}");
    if !std::path::Path::new("/dev/i2c-1").exists() {
        assert!(out.contains("dtparam=i2c_arm=on"), "the I2C line should say how to enable it:\n{out}");
    }
    // A corrupt database is a FAIL and a non-zero exit.
    std::fs::write(&db, vec![7u8; 4096]).unwrap();
    let o = wanwatch(&["doctor", "--config", cfg.to_str().unwrap(), "--db", db.to_str().unwrap(), "--offline"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(!o.status.success());
    assert!(out.lines().any(|l| l.starts_with("FAIL") && l.contains("database") && l.contains("corrupt")), "{out}");
}
