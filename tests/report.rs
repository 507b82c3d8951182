//! `wanwatch report` on a real database with known truths (tests/household): the summary, the
//! outage table, the effects it must find (rain triples loss) and must not invent, the week's
//! best times, self-containment, Markdown, errors, and the weekly report the agent writes.

mod household;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use household::{HOUR, START};

fn wanwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wanwatch")).args(args).env("TZ", "UTC").output().unwrap()
}

/// `wanwatch report --db DB --since A --until B EXTRA...`
fn report(db: &Path, since: &str, until: &str, extra: &[&str]) -> Output {
    let mut args = vec!["report", "--db", db.to_str().unwrap(), "--since", since, "--until", until];
    args.extend_from_slice(extra);
    wanwatch(&args)
}

fn db_with_two_weeks(dir: &Path) -> (PathBuf, household::Truth) {
    let db = dir.join("wanwatch.db");
    let truth = household::write(&db, START, 14);
    (db, truth)
}

#[test]
fn html_report_tells_the_story_the_data_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (db, truth) = db_with_two_weeks(dir.path());
    let out = dir.path().join("report.html");
    let r = report(&db, "2026-11-09", "2026-11-23", &["--out", out.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let html = std::fs::read_to_string(&out).unwrap();
    std::fs::copy(&out, std::env::temp_dir().join("wanwatch-report-test.html")).unwrap();

    // Self-contained: no scripts, stylesheets, images or fonts fetched from anywhere.
    for needle in ["<script", "<link", "<img", "src=", "@import", "url("] {
        assert!(!html.contains(needle), "report refers to something outside itself: {needle}");
    }
    assert!(html.matches("<svg").count() >= 7, "timeline, two heatmaps, effects, two scatters, reliability");

    // The summary in one sentence, with the numbers the fixture put in.
    let downtime: i64 = truth.wan_outages.iter().map(|(s, e)| e - s).sum();
    let expect = format!(
        "the internet was down {} times for {} in total",
        truth.wan_outages.len(),
        wanwatch::calendar::format_span(downtime)
    );
    assert!(html.contains(&expect), "headline missing `{expect}`");
    // Outage table: every outage, with what the gateway, weather and router were doing.
    assert!(html.contains("Outages (8)"));
    let first = wanwatch::calendar::format_local_minute(truth.wan_outages[0].0);
    let row = html.split("<tr>").find(|r| r.contains(&first)).expect("first outage listed");
    assert!(
        row.contains("internet") && row.contains("rain ") && row.contains("SINR") && row.contains("wan_down"),
        "{row}"
    );
    assert!(html.contains("gateway uptime fell"), "the reboot next to outage 2");

    // The rain effect: loss about 3x, interval above 1, with counts.
    let rain = html.split("<p>").find(|p| p.starts_with("rain over 1 mm/h:")).expect("rain sentence");
    assert!(rain.contains("packet loss 2.") || rain.contains("packet loss 3."), "{rain}");
    assert!(rain.contains("x higher (95% interval"), "{rain}");
    assert!(rain.contains(&format!("in {} separate hours", truth.rainy_hours)), "{rain}");
    // Wind did nothing in the fixture: no effect claimed.
    let wind = html.split("<p>").find(|p| p.starts_with("wind over 30 km/h")).expect("wind sentence");
    assert!(wind.contains("too little data") || wind.contains("no clear difference"), "{wind}");
    // Signal goes with loss (rain costs SINR): a negative rank correlation.
    let sinr = html.split("<p>").find(|p| p.starts_with("SINR vs loss")).expect("sinr sentence");
    let rho: f64 = sinr.split("rho ").nth(1).unwrap()[..5].trim().parse().unwrap();
    assert!(rho < -0.05, "{sinr}");
    // Evenings are the worst times, never the best.
    let best = html.split("<p>").find(|p| p.starts_with("Best times")).expect("best times");
    for h in ["19:00", "20:00", "21:00"] {
        assert!(!best.contains(h), "{best}");
    }
    let worst = html.split("<p>").find(|p| p.starts_with("Worst times")).expect("worst times");
    assert!(worst.contains("19:00") || worst.contains("20:00"), "{worst}");
    // Detector output and speed tests.
    assert!(html.contains("3.1x its usual 31.0"));
    // The level shift: a purple line on the timeline, its own table and the flagged list.
    assert_eq!(html.matches("stroke=\"#6C40AA\"").count(), 1, "one level-shift line on the timeline");
    assert!(html.contains("Level shifts of the baseline latency (1)"));
    assert!(html.matches("went from 31.0 ms to 38.5 ms").count() >= 2, "level-shift table and flagged list");
    // The outlook said 0.6 through the evening and 0.05 otherwise: a figure, and a table row
    // for each of the two bins.
    assert!(html.contains("Hour-ahead outlook: predicted vs what happened"), "reliability diagram");
    let rel = html.split("How good were the hour-ahead warnings?").nth(1).unwrap();
    assert!(rel.contains("<td>60-70%</td>") && rel.contains("<td>0-10%</td>"), "{}", &rel[..rel.len().min(2000)]);
    assert!(html.contains(&format!("Speed tests ({})", truth.speed_tests)));
    assert!(html.contains("n41") && html.contains("n71"), "band table");
}

#[test]
fn markdown_report_is_the_same_story_without_figures() {
    let dir = tempfile::tempdir().unwrap();
    let (db, truth) = db_with_two_weeks(dir.path());
    let r = report(&db, "2026-11-09", "2026-11-23", &["--format", "md"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let md = String::from_utf8(r.stdout).unwrap();
    assert!(md.starts_with("# Internet connection report, 2026-11-09 00:00 to 2026-11-23 00:00"), "{}", &md[..100]);
    assert!(!md.contains("<svg") && !md.contains("<table"));
    assert!(md.contains(&format!("the internet was down {} times", truth.wan_outages.len())));
    assert!(md.contains("| start | end | duration | kind | gateway | weather | router log |"));
    assert_eq!(md.lines().filter(|l| l.contains("| internet |")).count(), truth.wan_outages.len());
}

#[test]
fn report_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.db");
    let r = wanwatch(&["report", "--db", missing.to_str().unwrap()]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("nope.db") && err.contains("does not exist"), "{err}");
    let (db, _) = db_with_two_weeks(dir.path());
    let r = wanwatch(&["report", "--db", db.to_str().unwrap(), "--since", "last tuesday"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("--since") && err.contains("last tuesday"), "{err}");
    let r = report(&db, "2026-11-20", "2026-11-10", &[]);
    assert!(String::from_utf8_lossy(&r.stderr).contains("--until must be after --since"));
}

#[test]
fn an_empty_period_still_makes_a_readable_report() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = db_with_two_weeks(dir.path());
    let r = report(&db, "2025-01-01", "2025-01-08", &["--format", "md"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let md = String::from_utf8(r.stdout).unwrap();
    assert!(md.contains("No outages in this period."));
    assert!(md.contains("Best times for high-bandwidth activities: not enough data yet"));
}

#[test]
fn weekly_report_is_written_once_for_last_week() {
    let dir = tempfile::tempdir().unwrap();
    let now = wanwatch::clock::WallClock::system().now();
    let (since, until) = wanwatch::report::weekly::last_week(now);
    let db = dir.path().join("wanwatch.db");
    household::write(&db, since - 2 * 86_400_000, 10);
    let reports = dir.path().join("reports");
    let plan = wanwatch::report::Plan { down_mbps: Some(300.0), up_mbps: Some(40.0) };
    let path = wanwatch::report::weekly::write_if_due(&db, &reports, now, plan).unwrap().expect("written");
    assert_eq!(path, wanwatch::report::weekly::file_for(&reports, since));
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(html.contains(&wanwatch::calendar::format_local_minute(until)), "covers up to this Monday");
    assert!(html.contains("against a plan of 300 Mbit/s"));
    assert!(wanwatch::report::weekly::write_if_due(&db, &reports, now + HOUR, plan).unwrap().is_none(), "only once");
    // No data that week: nothing written.
    let empty = dir.path().join("empty.db");
    household::write(&empty, since - 30 * 86_400_000, 2);
    assert!(wanwatch::report::weekly::write_if_due(&empty, &dir.path().join("r2"), now, plan).unwrap().is_none());
}

#[test]
fn monthly_service_report_counts_measured_time_outages_by_kind_and_speed_against_the_plan() {
    use wanwatch::report::sla;
    let dir = tempfile::tempdir().unwrap();
    let (since, until) = sla::month_range("2026-11").unwrap();
    let db = dir.path().join("wanwatch.db");
    // Two days either side of November, so the month's edges clip.
    let truth = household::write(&db, since - 2 * 86_400_000, 34);
    let plan = wanwatch::report::Plan { down_mbps: Some(300.0), up_mbps: Some(40.0) };
    let store = wanwatch::store::Store::open_read_only(&db).unwrap();
    let s = sla::build(&store, "2026-11", plan).unwrap();
    let inside: Vec<&(i64, i64)> = truth.wan_outages.iter().filter(|(a, b)| *a < until && *b > since).collect();
    let downtime: i64 = inside.iter().map(|(a, b)| (*b).min(until) - (*a).max(since)).sum();
    assert!(!inside.is_empty(), "the fixture has outages in November");
    assert_eq!(s.summary.wan_outages, inside.len());
    assert_eq!(s.summary.downtime_ms, downtime);
    let wan = s.by_kind.iter().find(|k| k.0 == wanwatch::sample::OutageKind::Wan).unwrap();
    assert_eq!((wan.1, wan.2), (inside.len(), downtime));
    // Availability over measured time only: the month's minutes, less the outages.
    let measured = s.summary.measured_ms as f64;
    let expect = 1.0 - downtime as f64 / measured;
    assert!((s.summary.uptime.unwrap() - expect).abs() < 1e-9);
    // Evenings and the other hours share the measured minutes and the downtime.
    assert_eq!(s.evening.measured_minutes + s.other.measured_minutes, s.summary.measured_minutes);
    assert!(s.evening.measured_minutes > 0 && s.other.measured_minutes > s.evening.measured_minutes);
    // The fixture's outages carry no path probe: said so, not guessed.
    assert_eq!(s.by_cause.len(), 1, "{:?}", s.by_cause);
    assert!(s.by_cause[0].0.starts_with("not located"));
    assert!(s.hours_below_half <= s.hours_below_plan && s.hours_below_plan <= s.tested_hours);
    let html = sla::html(&s);
    assert!(html.contains(&format!("Internet availability <b>{:.3}%</b>", expect * 100.0)), "headline");
    assert!(html.contains("Plan: 300 Mbit/s down, 40 up"));
    // The agent writes it once, on the 1st, next to the database.
    let reports = dir.path().join("reports");
    let now = until + 3 * HOUR;
    let path = sla::write_if_due(&db, &reports, now, plan).unwrap().expect("written");
    assert_eq!(path, sla::file_for(&reports, "2026-11"));
    assert!(sla::write_if_due(&db, &reports, now + HOUR, plan).unwrap().is_none(), "only once");
}
