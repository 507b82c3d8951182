//! `/setup`: the settings form. Everything else the server answers is read-only; this is the one
//! page that changes something, so it asks for more than a LAN address:
//!
//! - the six-digit PIN shown on the OLED (or by `wanwatch setup-pin`), rate-limited and changed
//!   after every save ([`crate::setup::pin`]);
//! - a one-time token from the form itself (a page on another site cannot read it, so it cannot
//!   make the browser post the form: CSRF);
//! - a POST of at most [`MAX_FORM`] bytes.
//!
//! A save is checked as the file would be at start and written atomically
//! ([`crate::setup::save`]); then the agent is told to restart itself on the new file
//! (`applied`), which stops and flushes everything first, so no measurement is lost.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::setup::pin::{self, Attempts, Verdict};
use crate::setup::{self, FIELDS, Settings, SetupError};

/// The largest form accepted.
pub const MAX_FORM: usize = 16 * 1024;
/// A form's token is good for this long.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Tokens kept at most (the oldest go first): a few open browser tabs.
const MAX_TOKENS: usize = 32;
/// Time for the answer to reach the browser before the agent restarts.
const APPLY_AFTER: Duration = Duration::from_millis(500);

/// What the page needs: the file it edits, the PIN, the tokens it handed out, and how to tell
/// the agent to apply a save.
pub struct Setup {
    pub config: PathBuf,
    pub pin_file: PathBuf,
    /// Base URL of the geocoder for postcodes (Open-Meteo's; `[weather] url` in tests).
    pub geocoder: String,
    tokens: Mutex<VecDeque<(String, Instant)>>,
    attempts: Mutex<Attempts>,
    applied: Arc<tokio::sync::Notify>,
}

/// A page to send back: status and HTML.
pub type Page = (u16, String);

impl Setup {
    /// Make sure a PIN exists (the OLED and `wanwatch setup-pin` read it from `pin_file`).
    pub fn new(config: PathBuf, pin_file: PathBuf, geocoder: String, applied: Arc<tokio::sync::Notify>) -> Setup {
        if let Err(e) = pin::read_or_create(&pin_file) {
            tracing::warn!("set-up page: cannot write the PIN to {}: {e}", pin_file.display());
        }
        Setup { config, pin_file, geocoder, tokens: Mutex::default(), attempts: Mutex::default(), applied }
    }

    fn new_token(&self) -> String {
        let token = format!("{:032x}", rand::random::<u128>());
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|(_, at)| at.elapsed() < TOKEN_LIFETIME);
        if tokens.len() >= MAX_TOKENS {
            tokens.pop_front();
        }
        tokens.push_back((token.clone(), Instant::now()));
        token
    }

    /// Take `token` if it was handed out and is still good (each one works once).
    fn take_token(&self, token: &str) -> bool {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        match tokens.iter().position(|(t, at)| pin::matches(token, t) && at.elapsed() < TOKEN_LIFETIME) {
            Some(i) => {
                tokens.remove(i);
                true
            }
            None => false,
        }
    }

    /// GET: the form with the file's current settings.
    pub fn get(&self) -> Page {
        match setup::load(&self.config) {
            Ok(doc) => (200, self.form(&Settings::of(&doc), None)),
            Err(e) => (500, self.form(&Settings::default(), Some(Err(e.to_string())))),
        }
    }

    /// POST: check the token, then the PIN, then save.
    pub fn post(&self, body: &[u8]) -> Page {
        let mut s = Settings::default();
        let (mut token, mut guess) = (String::new(), String::new());
        for (k, v) in form_urlencoded::parse(body) {
            match k.as_ref() {
                "csrf" => token = v.into_owned(),
                "pin" => guess = v.into_owned(),
                f => s.set(f, v.into_owned()),
            }
        }
        if !self.take_token(&token) {
            return (
                403,
                self.form(
                    &s,
                    Some(Err(
                        "this form has expired or did not come from this page; it was not saved. Enter the PIN again."
                            .into(),
                    )),
                ),
            );
        }
        let Some(current) = pin::read(&self.pin_file) else {
            return (
                503,
                self.form(&s, Some(Err(format!("no PIN in {}; is the agent running?", self.pin_file.display())))),
            );
        };
        let verdict = self.attempts.lock().unwrap_or_else(|e| e.into_inner()).judge(&guess, &current, Instant::now());
        match verdict {
            Verdict::Wait(d) => {
                let msg = format!("too many wrong PINs; try again in {} s", d.as_secs().max(1));
                return (429, self.form(&s, Some(Err(msg))));
            }
            Verdict::Wrong => {
                let failures = self.attempts.lock().unwrap_or_else(|e| e.into_inner()).failures;
                tracing::warn!(failures, "set-up page: wrong PIN");
                if failures >= pin::ROTATE_AFTER_FAILURES {
                    self.rotate();
                }
                return (
                    403,
                    self.form(
                        &s,
                        Some(Err(
                            "wrong PIN: it is on the display's address page, or run `wanwatch setup-pin` over ssh"
                                .into(),
                        )),
                    ),
                );
            }
            Verdict::Right => {}
        }
        match setup::save(&self.config, &s, &self.geocoder) {
            Ok(saved) => {
                self.rotate();
                tracing::info!("set-up page: settings saved to {}; applying", self.config.display());
                let applied = self.applied.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(APPLY_AFTER);
                    applied.notify_one();
                });
                let msg = "Saved. wanwatch is applying the new settings; this page works again in a few seconds. The PIN has changed.";
                (200, self.form(&saved.settings, Some(Ok(msg.into()))))
            }
            Err(e @ (SetupError::Field { .. } | SetupError::Invalid(_))) => {
                (400, self.form(&s, Some(Err(e.to_string()))))
            }
            Err(e) => (500, self.form(&s, Some(Err(e.to_string())))),
        }
    }

    fn rotate(&self) {
        match pin::rotate(&self.pin_file) {
            Ok(_) => self.attempts.lock().unwrap_or_else(|e| e.into_inner()).failures = 0,
            Err(e) => tracing::warn!("set-up page: cannot change the PIN in {}: {e}", self.pin_file.display()),
        }
    }

    fn form(&self, s: &Settings, message: Option<Result<String, String>>) -> String {
        let token = self.new_token();
        let esc = crate::report::render::esc;
        let message = match message {
            Some(Ok(m)) => format!("<p id=\"message\" class=\"ok\">{}</p>", esc(&m)),
            Some(Err(m)) => format!("<p id=\"message\" class=\"error\">{}</p>", esc(&m)),
            None => String::new(),
        };
        let mut rows = String::new();
        for f in FIELDS {
            let (label, hint) = describe(f);
            let v = esc(s.get(f));
            let choices: &[&str] = match f {
                "gateway_kind" => &["auto", "tmobile", "nokia"],
                "community" => &["off", "on"],
                _ => &[],
            };
            let input = if !choices.is_empty() {
                let opts: String = choices
                    .iter()
                    .map(|k| format!("<option{}>{k}</option>", if s.get(f) == *k { " selected" } else { "" }))
                    .collect();
                format!("<select id=\"{f}\" name=\"{f}\">{opts}</select>")
            } else {
                format!("<input id=\"{f}\" name=\"{f}\" value=\"{v}\" size=\"40\">")
            };
            rows.push_str(&format!("<p><label for=\"{f}\">{label}</label><br>{input}<br><small>{hint}</small></p>\n"));
        }
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
             <title>wanwatch set-up</title><style>body{{font-family:sans-serif;max-width:40em;margin:1em auto;padding:0 1em}}\
             .error{{color:#b00020}}.ok{{color:#1b5e20}}small{{color:#555}}</style></head><body>\
             <h1>wanwatch set-up</h1>{message}\
             <form method=\"post\" action=\"/setup\">\n{rows}\
             <p><label for=\"pin\">PIN (on the display's address page, or <code>wanwatch setup-pin</code> over ssh)</label><br>\
             <input id=\"pin\" name=\"pin\" inputmode=\"numeric\" autocomplete=\"off\" maxlength=\"6\" size=\"8\"></p>\
             <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
             <p><button id=\"save\" type=\"submit\">Save</button></p></form>\
             <p><small>Saved to {}; comments and other settings in the file are kept. <a href=\"/\">Dashboard</a></small></p>\
             </body></html>",
            esc(&self.config.display().to_string())
        )
    }
}

/// A field's label and hint.
fn describe(field: &str) -> (&'static str, &'static str) {
    match field {
        "location" => (
            "Location, for the weather",
            "a postcode or place, or coordinates like 51.5, -0.1; kept to about 10 km; empty: no weather",
        ),
        "plan_down_mbps" => {
            ("Plan download speed (Mbit/s)", "what the ISP advertises; speed tests are compared with it")
        }
        "plan_up_mbps" => ("Plan upload speed (Mbit/s)", ""),
        "ntfy_url" => ("ntfy topic URL", "alerts to your phone, e.g. https://ntfy.sh/our-house-internet"),
        "webhook_url" => ("Webhook URL", "a JSON POST per alert"),
        "mqtt" => ("MQTT broker", "host or host:port (Home Assistant discovery)"),
        "gateway_kind" => ("Gateway", "auto finds T-Mobile and Nokia gateways by themselves"),
        "anchors" => ("Internet anchors", "addresses to ping, separated by spaces; empty: the built-in ones"),
        "community" => (
            "Share with the community (off unless you turn it on)",
            "sends, once an hour: pings sent and lost, median and 95th-percentile latency, minutes measured, \
             outage minutes by kind, speed-test means, the 5G band and a SINR bucket, labelled with the region \
             and carrier below, 5G/LTE, a random id and the hour of day. Never an address, device, site or exact place.",
        ),
        "community_url" => (
            "Community server (remote-write URL)",
            "e.g. https://community.example.org/insert/0/prometheus/api/v1/write",
        ),
        "community_region" => ("Your region", "coarse: a 3-digit postcode prefix or a district, never a full postcode"),
        "community_carrier" => ("Your internet provider", "e.g. T-Mobile"),
        _ => ("", ""),
    }
}
