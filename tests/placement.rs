//! Placement mode through the command: a gateway on loopback answers as a T-Mobile KVD21 does,
//! with a signal that depends on where "the household" has put it; `wanwatch placement --spot`
//! records each spot and `--list` ranks them. The panel's page and the dashboard read the same.

mod bed;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// The KVD21's answer with this 5G SINR/RSRP (the 4G numbers stay as they are).
fn answer(sinr_5g: Option<f64>, rsrp_5g: f64) -> String {
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gateway/tmobile_kvd21.json"),
    )
    .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&fixture).unwrap();
    match sinr_5g {
        Some(s) => {
            v["signal"]["5g"]["sinr"] = s.into();
            v["signal"]["5g"]["rsrp"] = rsrp_5g.into();
        }
        // No 5G at this spot: the gateway sends its "no signal" value.
        None => {
            v["signal"]["5g"]["sinr"] = (-32768).into();
            v["signal"]["5g"]["rsrp"] = (-32768).into();
        }
    }
    v.to_string()
}

fn wanwatch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wanwatch")).args(args).output().unwrap()
}

#[test]
fn spots_are_recorded_from_the_gateway_and_ranked_best_first() {
    // The signal at the spot the gateway is at now; the server reads it at every request, and
    // adds a little wobble to RSRP so spreads are real (SINR stays put, so two spots tie on it).
    let now: Arc<Mutex<(Option<f64>, f64)>> = Arc::new(Mutex::new((None, 0.0)));
    let (served, count) = (now.clone(), Arc::new(Mutex::new(0u32)));
    let gateway = bed::http::Server::start("127.0.0.1:0", None, move |r| {
        if !r.target.starts_with("/TMI/v1/gateway") {
            return bed::http::Reply::text(404, "not here");
        }
        let mut n = count.lock().unwrap();
        *n += 1;
        let wobble = [0.0, 1.0, -1.0][*n as usize % 3];
        let (sinr, rsrp) = *served.lock().unwrap();
        bed::http::Reply::json(200, &answer(sinr, rsrp + wobble))
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("w.toml");
    // kind "auto": the command finds the T-Mobile API by itself, as on a household's network.
    std::fs::write(&cfg, format!("[gateway_api]\nurl = \"{}\"\n", gateway.url())).unwrap();
    let db = dir.path().join("w.db");
    let (cfg_s, db_s) = (cfg.to_str().unwrap(), db.to_str().unwrap());
    for (spot, signal) in [
        ("hall", (Some(4.0), -104.0)),
        ("kitchen-window", (Some(21.0), -88.0)),
        ("basement", (None, 0.0)),
        ("upstairs", (Some(21.0), -95.0)),
    ] {
        *now.lock().unwrap() = signal;
        let o = wanwatch(&["placement", "--config", cfg_s, "--db", db_s, "--spot", spot, "--for", "3s"]);
        assert!(o.status.success(), "{spot}: {}", String::from_utf8_lossy(&o.stderr));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("readings kept"), "{err}");
    }

    let o = wanwatch(&["placement", "--config", cfg_s, "--db", db_s, "--list", "--format", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let spots: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let order: Vec<&str> = spots.iter().map(|s| s["spot"].as_str().unwrap()).collect();
    // kitchen-window and upstairs tie on SINR; the window's RSRP is stronger. The basement has
    // LTE only (its 4G SINR of 7 would beat the hall's 5G, but 5G ranks first).
    assert_eq!(order, ["kitchen-window", "upstairs", "hall", "basement"]);
    let window = &spots[0];
    assert_eq!(window["sinr_db_median"].as_f64(), Some(21.0));
    let rsrp = window["rsrp_dbm_median"].as_f64().unwrap();
    assert!((-89.0..=-87.0).contains(&rsrp), "{rsrp}");
    assert_eq!(window["radio"], "5g");
    // 3 s at one reading a second: 3 or 4 readings, whatever the machine's load.
    let n = window["samples"].as_u64().unwrap();
    assert!((2..=4).contains(&n), "{n} samples");
    assert_eq!(spots[3]["radio"], "4g");
    assert_eq!(spots[3]["sinr_db_median"].as_f64(), Some(7.0));

    let o = wanwatch(&["placement", "--config", cfg_s, "--db", db_s, "--list"]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.lines().nth(1).is_some_and(|l| l.contains("kitchen-window")), "{text}");

    // The dashboard shows the same ranking.
    let store = wanwatch::store::Store::open_read_only(&db).unwrap();
    let page = wanwatch::web::dashboard::render(&store, bed::wall_ms()).unwrap();
    let at = |s: &str| page.find(s).unwrap_or_else(|| panic!("{s} not on the dashboard"));
    assert!(at("kitchen-window") < at("upstairs") && at("upstairs") < at("hall") && at("hall") < at("basement"));

    // A gateway that is not there: a clear error, nothing recorded.
    drop(gateway);
    std::fs::write(&cfg, "[gateway_api]\nurl = \"http://127.0.0.1:9\"\ntimeout = \"1s\"\n").unwrap();
    let o = wanwatch(&["placement", "--config", cfg_s, "--db", db_s, "--spot", "garage", "--for", "2s"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no gateway API answered"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn while_a_spot_is_recorded_the_panel_shows_it_and_the_led_follows_the_signal() {
    use wanwatch::store::placement::Row;
    let dir = tempfile::tempdir().unwrap();
    let store = wanwatch::store::Store::open(&dir.path().join("w.db"), 1 << 20).unwrap();
    let now = bed::wall_ms();
    let row = |ts: i64, sinr: f64| Row {
        ts,
        spot: "desk".into(),
        radio: "5g".into(),
        sinr_db: Some(sinr),
        rsrp_dbm: Some(-90.0),
        rsrq_db: None,
        bands: "n41".into(),
    };
    store.add_placement(&[row(now - 2000, 3.0), row(now - 1000, 22.0)]).unwrap();
    let snap = wanwatch::display::Snapshot::from_store(&store, now, None).unwrap();
    let p = snap.placement.as_ref().expect("a spot is being recorded");
    // The newest reading, large; the LED at its fastest for a strong signal.
    assert_eq!((p.spot.as_str(), p.sinr_db_median, p.samples), ("desk", Some(22.0), 2));
    assert_eq!(wanwatch::display::screens::rotation(&snap), [wanwatch::display::Page::Placement]);
    let fast = wanwatch::panel::pattern(Some(&snap), false);
    assert_eq!(fast, wanwatch::led::Pattern::Signal(wanwatch::placement::blink_ms(Some(22.0))));
    // Ten seconds later nobody is recording: back to the usual pages.
    let later = wanwatch::display::Snapshot::from_store(&store, now + 10_000, None).unwrap();
    assert!(later.placement.is_none());
    assert!(wanwatch::display::screens::rotation(&later).len() > 1);
}
