//! The set-up page, end to end: a real agent, a real browser (headless Chromium driven over
//! WebDriver by chromedriver), the real file. Fill the form, submit, see the setting in effect
//! (the weather probe asks for the new place); a wrong PIN, a missing token, too many guesses and
//! a source outside the LAN change nothing.

mod bed;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use bed::{free_port, http_client as http};

const FILE: &str = "# the kitchen Pi\n\
[ping]\n\
gateway = \"none\"\n\
# loopback, for the test\n\
anchors = [\"127.0.0.1\"]\n\
\n\
[report]\n\
weekly = false # no Monday report in a test\n";

fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn setup_pin(db: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_wanwatch"))
        .args(["setup-pin", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "setup-pin: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// A geocoder and weather service on loopback (Open-Meteo's two paths); remembers the queries.
fn weather_server(seen: Arc<Mutex<Vec<String>>>) -> bed::http::Server {
    bed::http::Server::start("127.0.0.1:0", None, move |r| {
        seen.lock().unwrap().push(r.target.clone());
        if r.target.starts_with("/v1/search") {
            bed::http::Reply::json(
                200,
                r#"{"results":[{"name":"London","latitude":51.50101,"longitude":-0.14156,"country_code":"GB"}]}"#,
            )
        } else {
            bed::http::Reply::json(
                200,
                r#"{"current":{"temperature_2m":11.5,"precipitation":0.0,"wind_speed_10m":9.0}}"#,
            )
        }
    })
}

struct Agent {
    child: Child,
    port: u16,
    cfg: PathBuf,
    db: PathBuf,
}

impl Agent {
    fn start(dir: &Path, extra: &str, listen: &str, netns: Option<&str>) -> Agent {
        let port = free_port();
        let cfg = dir.join("wanwatch.toml");
        std::fs::write(&cfg, format!("{FILE}\n[web]\nlisten = \"{listen}:{port}\"\n{extra}")).unwrap();
        let db = dir.join("w.db");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_wanwatch")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_wanwatch")),
        };
        let child = cmd
            .args(["run", "--config", cfg.to_str().unwrap(), "--db", db.to_str().unwrap(), "--probes", "weather"])
            .args(["--flush-interval", "500ms", "--for", "120s"])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Agent { child, port, cfg, db }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn stop(self) -> String {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let o = self.child.wait_with_output().unwrap();
        assert!(o.status.success(), "agent failed: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    }
}

/// chromedriver and one headless Chromium session.
struct Browser {
    driver: Child,
    base: String,
    session: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    fn start() -> Option<Browser> {
        let driver_bin = ["chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok())?;
        let chromium = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))?;
        let chromium = String::from_utf8(Command::new("which").arg(chromium).output().ok()?.stdout).ok()?;
        let port = free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let base = format!("http://127.0.0.1:{port}");
        wait_for(20, "chromedriver", || http().get(&format!("{base}/status")).call().ok());
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": chromium.trim(),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        }}}});
        let mut b = Browser { driver, base, session: String::new() };
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_string();
        Some(b)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let agent = http();
        let post = |b: Value| agent.post(&url).header("Content-Type", "application/json").send(b.to_string()).unwrap();
        let mut r = match (method, body) {
            ("POST", Some(b)) => post(b),
            ("POST", None) => post(json!({})),
            ("DELETE", _) => agent.delete(&url).call().unwrap(),
            _ => agent.get(&url).call().unwrap(),
        };
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        v["value"].clone()
    }

    fn s(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    fn open(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({"url": url})));
    }

    fn find(&self, css: &str) -> String {
        let v = self.call("POST", &self.s("/element"), Some(json!({"using": "css selector", "value": css})));
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_string()
    }

    fn fill(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call("POST", &self.s(&format!("/element/{e}/clear")), None);
        self.call("POST", &self.s(&format!("/element/{e}/value")), Some(json!({"text": text})));
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.call("POST", &self.s(&format!("/element/{e}/click")), None);
    }

    fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.call("GET", &self.s(&format!("/element/{e}/text")), None).as_str().unwrap_or_default().to_string()
    }

    fn run(&self, script: &str) {
        self.call("POST", &self.s("/execute/sync"), Some(json!({"script": script, "args": []})));
    }

    /// Submit the form and wait for the answer page (a new page has no #marker).
    fn submit(&self) -> String {
        self.run("document.body.insertAdjacentHTML('beforeend', '<i id=marker></i>')");
        self.click("#save");
        wait_for(20, "the answer page", || {
            let v = self.call("POST", &self.s("/elements"), Some(json!({"using": "css selector", "value": "#marker"})));
            v.as_array().is_some_and(|a| a.is_empty()).then_some(())
        });
        self.text("#message")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http().delete(&format!("{}/session/{}", self.base, self.session)).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A POST of `form` (url-encoded pairs) with a fresh token taken from the page, unless `token`
/// is false. Returns the status.
fn post(agent: &Agent, form: &[(&str, &str)], token: bool) -> u16 {
    let mut pairs: Vec<(String, String)> = form.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    if token {
        let page = http().get(&agent.url("/setup")).call().unwrap().body_mut().read_to_string().unwrap();
        let t = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
        pairs.push(("csrf".into(), t));
    }
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    http()
        .post(&agent.url("/setup"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(body)
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn the_setup_page_in_a_browser_needs_the_pin_and_the_token_and_applies_what_it_saves() {
    if !bed::can_ping("the_setup_page_in_a_browser_needs_the_pin_and_the_token_and_applies_what_it_saves") {
        return;
    }
    let Some(browser) = Browser::start() else {
        eprintln!(
            "SKIP the_setup_page_in_a_browser...: no chromium and chromedriver here (apt install chromium chromium-driver)"
        );
        return;
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let weather = weather_server(seen.clone());
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path(), &format!("[weather]\nurl = \"{}\"\n", weather.url()), "127.0.0.1", None);
    wait_for(20, "the set-up page", || http().get(&agent.url("/setup")).call().ok().filter(|r| r.status() == 200));
    let pin = setup_pin(&agent.db);
    assert_eq!(pin.len(), 6);
    let before = std::fs::read_to_string(&agent.cfg).unwrap();

    // The form shows what the file says.
    browser.open(&agent.url("/setup"));
    let anchors =
        browser.call("GET", &browser.s(&format!("/element/{}/property/value", browser.find("#anchors"))), None);
    assert_eq!(anchors, "127.0.0.1");

    // A wrong PIN: refused, nothing written.
    let wrong = if pin == "000000" { "111111" } else { "000000" };
    browser.fill("#location", "SW1A 1AA");
    browser.fill("#pin", wrong);
    let msg = browser.submit();
    assert!(msg.contains("wrong PIN"), "{msg}");
    assert_eq!(std::fs::read_to_string(&agent.cfg).unwrap(), before);

    // The right PIN but no token (as a forged form from another site would be): refused.
    browser.fill("#location", "SW1A 1AA");
    browser.fill("#pin", &pin);
    browser.run("document.querySelector('input[name=csrf]').remove()");
    let msg = browser.submit();
    assert!(msg.contains("expired or did not come from this page"), "{msg}");
    assert_eq!(std::fs::read_to_string(&agent.cfg).unwrap(), before);

    // The right PIN with the form's token: saved, and the agent runs on it.
    browser.fill("#location", "SW1A 1AA");
    browser.fill("#plan_down_mbps", "245");
    browser.fill("#pin", &pin);
    let msg = browser.submit();
    assert!(msg.starts_with("Saved"), "{msg}");
    let after = std::fs::read_to_string(&agent.cfg).unwrap();
    for kept in ["# the kitchen Pi", "# loopback, for the test", "# no Monday report in a test"] {
        assert!(after.contains(kept), "comment {kept:?} lost:\n{after}");
    }
    assert!(after.contains("latitude = 51.5") && after.contains("longitude = -0.1"), "{after}");
    assert!(after.contains("plan_down_mbps = 245"), "{after}");
    // In effect: the restarted agent asks the weather service for the (coarse) new place.
    wait_for(30, "a weather poll for the new place", || {
        seen.lock().unwrap().iter().any(|t| t.contains("/v1/forecast") && t.contains("latitude=51.5")).then_some(())
    });
    // The PIN was used, so it changed.
    let new_pin = wait_for(10, "a new PIN", || Some(setup_pin(&agent.db)).filter(|p| *p != pin));
    wait_for(20, "the page back after the restart", || {
        http().get(&agent.url("/setup")).call().ok().filter(|r| r.status() == 200)
    });

    // Guessing is rate-limited: 5 wrong guesses, then even the right PIN waits.
    let wrong = if new_pin == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        assert_eq!(post(&agent, &[("pin", wrong), ("location", "")], true), 403);
    }
    assert_eq!(post(&agent, &[("pin", new_pin.as_str()), ("location", "")], true), 429);
    // And a form without a token is refused before the PIN is looked at.
    assert_eq!(post(&agent, &[("pin", new_pin.as_str())], false), 403);
    assert!(std::fs::read_to_string(&agent.cfg).unwrap().contains("latitude = 51.5"));
    let log = agent.stop();
    assert!(log.contains("restarting on them"), "{log}");
    drop(weather);
}

#[test]
fn the_setup_page_refuses_a_source_outside_the_lan() {
    if !bed::skip_unless_root("the_setup_page_refuses_a_source_outside_the_lan") {
        return;
    }
    // The agent in the bed's LAN namespace (198.18.1.2, not a private address); the client in
    // the gateway's namespace (198.18.1.1): to the agent a source outside the home network.
    let bed = bed::Bed::new("steady.toml");
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path(), "", "0.0.0.0", Some(&bed.lan));
    let before = std::fs::read_to_string(&agent.cfg).unwrap();
    // Up (asked from inside its namespace, on loopback, which is allowed).
    let port = agent.port;
    let inside = {
        let lan = bed.lan.clone();
        move |path: &'static str| {
            let lan = lan.clone();
            std::thread::spawn(move || {
                bed::enter_netns(&lan);
                http().get(&format!("http://127.0.0.1:{port}{path}")).call().ok().map(|r| r.status().as_u16())
            })
            .join()
            .unwrap()
        }
    };
    wait_for(20, "the page, from the LAN side", || inside("/setup").filter(|s| *s == 200));
    let pin = setup_pin(&agent.db);
    let (gw, guess) = (bed.gw.clone(), pin.clone());
    let (page, posted) = std::thread::spawn(move || {
        bed::enter_netns(&gw);
        let url = format!("http://{}:{port}/setup", bed::LAN_ADDR);
        let page = http()
            .get(&url)
            .call()
            .map(|mut r| (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default()));
        // The server answers 403 and closes without reading a byte, so a client still sending
        // its form may see the connection go (broken pipe) instead of the answer: either way,
        // nothing was served.
        let form = format!("location=51.5%2C0.1&pin={guess}&csrf=0");
        let posted = http()
            .post(&url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(form)
            .map(|r| r.status().as_u16());
        (page.unwrap(), posted.ok())
    })
    .join()
    .unwrap();
    assert_eq!(page.0, 403, "{}", page.1);
    assert!(page.1.contains("home network only"), "{}", page.1);
    assert!(posted.is_none_or(|s| s == 403), "{posted:?}");
    assert_eq!(setup_pin(&agent.db), pin, "a refused form does not even count as a guess");
    assert_eq!(std::fs::read_to_string(&agent.cfg).unwrap(), before);
    agent.stop();
}
