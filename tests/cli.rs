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
        // Issue 13.7: said once, not three times over.
        assert!(e.matches("not a database").count() <= 1, "{args:?} repeats itself: {e}");
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
    assert_eq!(lines.next(), Some("time,ts_ms,target,addr,seq,rtt_ms,lost,said_by"));
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
    let store = wanwatch::store::Store::open(&db, 1 << 20).unwrap();
    let pings = (1..=200_000i64)
        .map(|i| wanwatch::store::pings::Ping {
            ts: i,
            seq: (i % 65536) as u16,
            rtt_us: Some(1000),
            fail: None,
            err_from: None,
        })
        .collect();
    store.insert_pings(1, pings).unwrap();
    drop(store);
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

/// Regression (issue 12.10): `config` printed Rust debug output, omitted most sections and
/// panicked in `| head`. Now: TOML, every section, secrets redacted, and it reads back to the
/// same configuration.
#[test]
fn config_prints_every_section_as_toml_that_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("w.toml");
    std::fs::write(
        &cfg,
        "[ping]\ngateway = \"192.0.2.1\"\nanchors = [\"198.51.100.7\"]\ninterval = \"5s\"\n\
         [weather]\nlatitude = 41.9\nlongitude = -87.6\n\
         [notify.ntfy]\nurl = \"https://ntfy.example/family-secret-topic\"\ntoken = \"tk_supersecret\"\n\
         [notify.mqtt]\nhost = \"127.0.0.1\"\npassword = \"hunter2\"\n",
    )
    .unwrap();
    let o = wanwatch(&["config", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let parsed: toml::Table = toml::from_str(&out).unwrap_or_else(|e| panic!("not TOML ({e}):\n{out}"));
    for section in [
        "ping",
        "state",
        "store",
        "dns",
        "http",
        "bandwidth",
        "gateway_api",
        "weather",
        "syslog",
        "devices",
        "system",
        "display",
        "led",
        "detect",
        "report",
        "web",
        "notify",
    ] {
        assert!(parsed.contains_key(section), "no [{section}] in:\n{out}");
    }
    assert!(!out.contains("StateConfig {") && !out.contains("Duration"), "debug output:\n{out}");
    for secret in ["tk_supersecret", "hunter2", "family-secret-topic"] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
    }
    assert!(out.contains("ntfy.example"), "where alerts go is still shown:\n{out}");
    assert!(out.contains("interval = \"5s\""), "{out}");

    // Read back (without the redacted secrets): the same configuration, printed the same.
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, "[ping]\ngateway = \"192.0.2.1\"\nanchors = [\"198.51.100.7\"]\ninterval = \"5s\"\n")
        .unwrap();
    let first = wanwatch(&["config", "--config", plain.to_str().unwrap()]);
    let printed = dir.path().join("printed.toml");
    std::fs::write(&printed, &first.stdout).unwrap();
    let second = wanwatch(&["config", "--config", printed.to_str().unwrap()]);
    assert!(second.status.success(), "{}", stderr(&second));
    let body = |o: &Output| String::from_utf8_lossy(&o.stdout).lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&first), body(&second));

    // Into a closed pipe: quiet success, no panic.
    let mut child = Command::new(env!("CARGO_BIN_EXE_wanwatch"))
        .args(["config", "--config", plain.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success() && !stderr(&o).contains("panicked"), "{}", stderr(&o));
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

/// Regression (issue 12.3): two agents on one database both wrote, recording every outage
/// twice. The second is refused, naming the first's PID; readers keep working beside it.
#[test]
fn a_second_agent_on_the_same_database_is_refused() {
    if !can_ping("a_second_agent_on_the_same_database_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let first = Command::new(env!("CARGO_BIN_EXE_wanwatch"))
        .args(["run", "--probes", "none", "--db", db.to_str().unwrap(), "--gateway", "none"])
        .args(["--target", "127.0.0.1", "--interval", "100ms", "--flush-interval", "200ms", "--for", "8s"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let second =
        wanwatch(&["run", "--db", db.to_str().unwrap(), "--gateway", "none", "--target", "127.0.0.1", "--for", "3s"]);
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    let err = stderr(&second);
    assert!(err.contains(&format!("PID {}", first.id())), "the first agent's PID is named: {err}");
    // Readers beside the running agent.
    let st = wanwatch(&["status", "--db", db.to_str().unwrap()]);
    assert!(st.status.success(), "{}", stderr(&st));
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.contains(&format!("Agent: running (PID {}", first.id())), "{text}");
    let ex = wanwatch(&["export", "--db", db.to_str().unwrap(), "--table", "samples"]);
    assert!(ex.status.success(), "{}", stderr(&ex));
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let c = rusqlite::Connection::open(&db).unwrap();
    let starts: i64 = c.query_row("SELECT count(*) FROM events WHERE kind = 'agent_start'", [], |r| r.get(0)).unwrap();
    assert_eq!(starts, 1, "only the first agent wrote");
}

/// Regression (issue 12.4): after a stop `status` said "running" and kept counting "UP since".
#[test]
fn status_after_a_stop_says_stopped_and_last_known() {
    if !can_ping("status_after_a_stop_says_stopped_and_last_known") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = recorded_db(dir.path());
    let st = wanwatch(&["status", "--db", db.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.contains("Agent: STOPPED since") && text.contains("stopped cleanly"), "{text}");
    assert!(text.contains("UP (last known, as of"), "{text}");
    assert!(!text.contains("running"), "{text}");

    // Killed (no clean stop): said so.
    let db2 = dir.path().join("killed.db");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_wanwatch"))
        .args(["run", "--probes", "none", "--db", db2.to_str().unwrap(), "--gateway", "none"])
        .args(["--target", "127.0.0.1", "--interval", "100ms", "--flush-interval", "200ms"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    agent.kill().unwrap();
    agent.wait().unwrap();
    let st = wanwatch(&["status", "--db", db2.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.contains("Agent: STOPPED since") && text.contains("no clean stop recorded"), "{text}");
}

/// Regression (issue 12.9): colour codes in a pipe and in the journal ("[blob data]").
#[test]
fn the_log_has_no_colour_off_a_terminal_and_journal_priorities_under_systemd() {
    if !can_ping("the_log_has_no_colour_off_a_terminal_and_journal_priorities_under_systemd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let args = ["run", "--probes", "none", "--db", db.to_str().unwrap(), "--gateway", "none", "--target", "127.0.0.1"];
    let piped = Command::new(env!("CARGO_BIN_EXE_wanwatch")).args(args).args(["--for", "1s"]).output().unwrap();
    let log = String::from_utf8_lossy(&piped.stderr);
    assert!(piped.status.success(), "{log}");
    assert!(log.contains("wanwatch running") && !log.contains('\x1b'), "{log:?}");

    // The journal: stderr is a stream whose device:inode JOURNAL_STREAM names.
    let f2 = std::fs::File::create(dir.path().join("journal2")).unwrap();
    let (dev2, ino2) = (
        std::os::unix::fs::MetadataExt::dev(&f2.metadata().unwrap()),
        std::os::unix::fs::MetadataExt::ino(&f2.metadata().unwrap()),
    );
    let status = Command::new(env!("CARGO_BIN_EXE_wanwatch"))
        .args(args)
        .args(["--for", "1s"])
        .env("JOURNAL_STREAM", format!("{dev2}:{ino2}"))
        .env("WANWATCH_LOG", "debug")
        .stderr(f2)
        .status()
        .unwrap();
    assert!(status.success());
    let log = std::fs::read_to_string(dir.path().join("journal2")).unwrap();
    assert!(!log.contains('\x1b'), "{log:?}");
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with('<')).collect();
    assert!(lines.iter().any(|l| l.starts_with("<6>") && l.contains("wanwatch running")), "{log}");
    assert!(lines.iter().any(|l| l.starts_with("<7>")), "debug lines carry priority 7: {log}");
    // No timestamp of our own: the journal stamps lines.
    assert!(!lines[0][3..].starts_with("20"), "{log}");
    // A stream that is not the journal's (the variable inherited, the stream not) stays plain.
    let inherited = Command::new(env!("CARGO_BIN_EXE_wanwatch"))
        .args(args)
        .args(["--for", "1s"])
        .env("JOURNAL_STREAM", format!("{dev2}:{ino2}"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&inherited.stderr);
    assert!(!log.lines().any(|l| l.starts_with("<6>")), "{log}");
}

/// Regression (issue 12.10): reversed or overflowing time ranges gave an empty export, the
/// missing-table error listed four of six tables, `--out` was ignored for csv/jsonl, `replay
/// --help` named a path outside the project, and `doctor` checked what was switched off.
#[test]
fn export_and_doctor_say_exactly_what_is_wrong() {
    if !can_ping("export_and_doctor_say_exactly_what_is_wrong") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = recorded_db(dir.path());
    let db = db.to_str().unwrap();
    let o = wanwatch(&["export", "--db", db, "--table", "samples", "--since", "1h", "--until", "2h"]);
    assert!(
        !o.status.success() && stderr(&o).contains("--until") && stderr(&o).contains("must be after"),
        "{}",
        stderr(&o)
    );
    let o = wanwatch(&["export", "--db", db, "--table", "samples", "--since", "100000000y"]);
    assert!(!o.status.success() && stderr(&o).contains("--since"), "{}", stderr(&o));
    let o = wanwatch(&["export", "--db", db]);
    let e = stderr(&o);
    assert!(!o.status.success());
    for t in ["samples", "minutes", "outages", "events", "metrics", "syslog"] {
        assert!(e.contains(t), "the --table error does not list {t}: {e}");
    }
    // --out is honoured for csv and jsonl, and never overwrites.
    let out = dir.path().join("samples.jsonl");
    let o =
        wanwatch(&["export", "--db", db, "--table", "samples", "--format", "jsonl", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "with --out nothing goes to stdout");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.lines().count() >= 20, "{text}");
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(first.get("said_by").is_some(), "the ICMP error's sender is a column: {first}");
    let o = wanwatch(&["export", "--db", db, "--table", "samples", "--out", out.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("already exists"), "{}", stderr(&o));

    let help = Command::new(env!("CARGO_BIN_EXE_wanwatch")).args(["replay", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Usage") && !help.contains("../"), "{help}");

    // Doctor checks only what the configuration uses.
    let cfg = dir.path().join("off.toml");
    std::fs::write(
        &cfg,
        "[ping]\ngateway = \"none\"\nanchors = [\"127.0.0.1\"]\n[gateway_api]\nenabled = false\n[display]\nenabled = false\n[led]\nenabled = false\n",
    )
    .unwrap();
    let o = wanwatch(&["doctor", "--config", cfg.to_str().unwrap(), "--db", db]);
    let out = String::from_utf8_lossy(&o.stdout);
    for off in ["gateway API", "I2C", "GPIO"] {
        assert!(!out.contains(off), "doctor checked the disabled {off}:\n{out}");
    }
    assert!(out.contains("ICMP") && out.contains("database"), "{out}");
}

/// Issue 13.7: pointed at another application's SQLite file, `run` added its tables to it.
#[test]
fn another_applications_database_is_refused_and_left_alone() {
    if !can_ping("another_applications_database_is_refused_and_left_alone") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("photos.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE albums (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO albums (name) VALUES ('summer');",
    )
    .unwrap();
    drop(c);
    let before = std::fs::read(&db).unwrap();
    let o =
        wanwatch(&["run", "--db", db.to_str().unwrap(), "--gateway", "none", "--target", "127.0.0.1", "--for", "1s"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("another application's SQLite database") && e.contains("albums"), "{e}");
    assert!(std::fs::read(&db).unwrap() == before, "the file was changed");
}

/// The packaged unit's `wanwatch shm-in-ram`: SQLite's WAL index for the database sits on a RAM
/// file system (its page writes never reach the card), and the agent and other processes still
/// share it: a reader in another process sees each flush while the agent writes.
#[test]
fn the_wal_index_in_ram_is_shared_by_the_agent_and_readers() {
    use wanwatch::store::shm;
    if !bed::skip_unless_root("the_wal_index_in_ram_is_shared_by_the_agent_and_readers") {
        return;
    }
    if !shm::in_ram(Path::new(shm::RAM_DIR)) {
        eprintln!("SKIP: {} is not a tmpfs here", shm::RAM_DIR);
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    if shm::in_ram(dir.path()) {
        eprintln!("SKIP: the test folder is itself on a tmpfs");
        return;
    }
    let db = dir.path().join("w.db");
    let o = wanwatch(&["shm-in-ram", "--db", db.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let source = out.split_once('(').and_then(|(_, s)| s.strip_suffix(")\n")).expect(&out).to_string();
    // Unmounted however the test ends.
    struct Mounted<'a>(&'a Path, std::path::PathBuf);
    impl Drop for Mounted<'_> {
        fn drop(&mut self) {
            let _ = shm::release(self.0, &self.1);
        }
    }
    let _mounted = Mounted(&db, source.into());
    assert!(shm::in_ram(&shm::shm_path(&db)));
    let again = wanwatch(&["shm-in-ram", "--db", db.to_str().unwrap()]);
    assert!(again.status.success() && String::from_utf8_lossy(&again.stdout).contains("already in RAM"));
    let doctor = wanwatch(&["doctor", "--db", db.to_str().unwrap(), "--offline"]);
    let said = String::from_utf8_lossy(&doctor.stdout).into_owned();
    assert!(said.lines().any(|l| l.contains("WAL index") && l.contains("is in RAM")), "{said}");

    let mut agent = bed::loopback_agent(&db)
        .args(["--interval", "10ms", "--flush-interval", "200ms", "--for", "5s"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let count = || {
        let c = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        wanwatch::store::pings::count(&c).unwrap()
    };
    let first = count();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let second = count();
    assert!(first > 0 && second > first, "a reader in another process saw {first} then {second} pings");
    assert!(std::fs::metadata(_mounted.1.as_path()).unwrap().len() > 0, "SQLite never mapped the RAM index");
    assert!(agent.wait().unwrap().success());
    let c = rusqlite::Connection::open(&db).unwrap();
    let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");

    // Never slid under a connection that has the index open: that would split it in two.
    let busy = dir.path().join("busy.db");
    let open = rusqlite::Connection::open(&busy).unwrap();
    open.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
    let refused = wanwatch(&["shm-in-ram", "--db", busy.to_str().unwrap()]);
    assert!(!refused.status.success(), "mounted under an open connection");
    assert!(stderr(&refused).contains("is open in another program"), "{}", stderr(&refused));
    assert!(!shm::in_ram(&shm::shm_path(&busy)));
    let doctor = wanwatch(&["doctor", "--db", busy.to_str().unwrap(), "--offline"]);
    let said = String::from_utf8_lossy(&doctor.stdout).into_owned();
    assert!(said.lines().any(|l| l.contains("WAL index") && l.contains("shm-in-ram")), "{said}");
}
