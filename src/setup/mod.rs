//! Set-up from the browser: the handful of settings a household changes (where it is, what
//! the plan promises, where alerts go, the gateway, the targets) read from and written into
//! `wanwatch.toml` itself, so the file stays the one place settings live.
//!
//! The file is edited, not regenerated (`toml_edit`): comments, order and every setting the page
//! does not show survive. The result is checked by the same code that checks the file at start
//! (`config::from_str`) before it replaces the old file atomically; a setting the checks refuse
//! leaves the file as it was and the page names the field. The HTTP side (PIN, CSRF token, LAN
//! only) is `web::setup`; the PIN is [`pin`].

pub mod pin;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{DocumentMut, Item, Table, value};

use crate::config::{self, Overrides, route};

/// Coordinates are kept to this many decimals: about 10 km, a weather model's grid, not a street.
pub const COORD_DECIMALS: i32 = 1;
/// Open-Meteo's geocoder, for a postcode or a place name (no key).
pub const GEOCODER: &str = "https://geocoding-api.open-meteo.com";

/// The page's fields, as text (what the form shows and sends back).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// "51.5, -0.1", or a postcode / place to look up; empty: no weather.
    pub location: String,
    pub plan_down_mbps: String,
    pub plan_up_mbps: String,
    /// A full ntfy topic URL.
    pub ntfy_url: String,
    pub webhook_url: String,
    /// host or host:port.
    pub mqtt: String,
    /// auto, tmobile or nokia.
    pub gateway_kind: String,
    /// Anchors, separated by spaces or commas; empty: the built-in ones.
    pub anchors: String,
    /// Community sharing: "off" or "on", and where and as what.
    pub community: String,
    pub community_url: String,
    pub community_region: String,
    pub community_carrier: String,
}

/// The form's field names, in the order the page shows them.
pub const FIELDS: [&str; 12] = [
    "location",
    "plan_down_mbps",
    "plan_up_mbps",
    "ntfy_url",
    "webhook_url",
    "mqtt",
    "gateway_kind",
    "anchors",
    "community",
    "community_url",
    "community_region",
    "community_carrier",
];

impl Settings {
    pub fn get(&self, field: &str) -> &str {
        match field {
            "location" => &self.location,
            "plan_down_mbps" => &self.plan_down_mbps,
            "plan_up_mbps" => &self.plan_up_mbps,
            "ntfy_url" => &self.ntfy_url,
            "webhook_url" => &self.webhook_url,
            "mqtt" => &self.mqtt,
            "gateway_kind" => &self.gateway_kind,
            "anchors" => &self.anchors,
            "community" => &self.community,
            "community_url" => &self.community_url,
            "community_region" => &self.community_region,
            "community_carrier" => &self.community_carrier,
            _ => "",
        }
    }

    /// Set a field by its form name; unknown names are ignored (the PIN and token are not settings).
    pub fn set(&mut self, field: &str, v: String) {
        let slot = match field {
            "location" => &mut self.location,
            "plan_down_mbps" => &mut self.plan_down_mbps,
            "plan_up_mbps" => &mut self.plan_up_mbps,
            "ntfy_url" => &mut self.ntfy_url,
            "webhook_url" => &mut self.webhook_url,
            "mqtt" => &mut self.mqtt,
            "gateway_kind" => &mut self.gateway_kind,
            "anchors" => &mut self.anchors,
            "community" => &mut self.community,
            "community_url" => &mut self.community_url,
            "community_region" => &mut self.community_region,
            "community_carrier" => &mut self.community_carrier,
            _ => return,
        };
        *slot = v.trim().to_string();
    }

    /// What the file says now.
    pub fn of(doc: &DocumentMut) -> Settings {
        let get = |t: &str, k: &str| doc.get(t).and_then(|t| t.get(k));
        let num = |t: &str, k: &str| get(t, k).and_then(bare);
        let text = |t: &str, k: &str| get(t, k).and_then(Item::as_str).map(str::to_string);
        let sub = |t: &str, s: &str, k: &str| {
            doc.get(t).and_then(|t| t.get(s)).and_then(|s| s.get(k)).and_then(Item::as_str).map(str::to_string)
        };
        let location = match (num("weather", "latitude"), num("weather", "longitude")) {
            (Some(lat), Some(lon)) => format!("{lat}, {lon}"),
            _ => String::new(),
        };
        let mqtt = match sub("notify", "mqtt", "host") {
            Some(h) => match doc.get("notify").and_then(|t| t.get("mqtt")).and_then(|s| s.get("port")).and_then(bare) {
                Some(p) => format!("{h}:{p}"),
                None => h,
            },
            None => String::new(),
        };
        let anchors = get("ping", "anchors")
            .and_then(Item::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        Settings {
            location,
            plan_down_mbps: num("report", "plan_down_mbps").unwrap_or_default(),
            plan_up_mbps: num("report", "plan_up_mbps").unwrap_or_default(),
            ntfy_url: sub("notify", "ntfy", "url").unwrap_or_default(),
            webhook_url: sub("notify", "webhook", "url").unwrap_or_default(),
            mqtt,
            gateway_kind: text("gateway_api", "kind").unwrap_or_else(|| "auto".into()),
            anchors,
            community: if get("community", "enabled").and_then(Item::as_bool) == Some(true) { "on" } else { "off" }
                .into(),
            community_url: text("community", "remote_write_url").unwrap_or_default(),
            community_region: text("community", "region").unwrap_or_default(),
            community_carrier: text("community", "carrier").unwrap_or_default(),
        }
    }
}

/// A value as the form shows it: without the comments and spacing around it in the file.
fn bare(item: &Item) -> Option<String> {
    let mut v = item.as_value()?.clone();
    v.decor_mut().clear();
    Some(v.to_string())
}

/// Why the page could not save: the field it is about (or none) and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{field}: {message}")]
    Field { field: &'static str, message: String },
    #[error("the settings were not saved: {0}")]
    Invalid(String),
    #[error("cannot read {}: {err}", path.display())]
    Read { path: PathBuf, err: std::io::Error },
    #[error("{} is not valid TOML, so the page will not rewrite it (fix it over ssh): {message}", path.display())]
    Broken { path: PathBuf, message: String },
    #[error("cannot write {}: {err}", path.display())]
    Write { path: PathBuf, err: std::io::Error },
}

fn bad(field: &'static str, message: impl Into<String>) -> SetupError {
    SetupError::Field { field, message: message.into() }
}

/// Read `path` for editing (a missing file is an empty one).
pub fn load(path: &Path) -> Result<DocumentMut, SetupError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(SetupError::Read { path: path.to_path_buf(), err }),
    };
    text.parse::<DocumentMut>().map_err(|e| SetupError::Broken { path: path.to_path_buf(), message: e.to_string() })
}

/// A table of `doc`, made if missing (a new table goes at the end, as a `[section]`).
fn table<'a>(doc: &'a mut DocumentMut, name: &str) -> &'a mut Table {
    let item = doc.entry(name).or_insert_with(toml_edit::table);
    if !item.is_table() {
        *item = toml_edit::table();
    }
    item.as_table_mut().expect("made a table above")
}

/// Set `key` in `[section]` to `v`, or remove it when `v` is None.
fn put(doc: &mut DocumentMut, section: &str, key: &str, v: Option<toml_edit::Value>) {
    match v {
        Some(v) => {
            // Keep the comment written above or beside the old value.
            let t = table(doc, section);
            match t.get_mut(key).and_then(Item::as_value_mut) {
                Some(old) => {
                    let decor = old.decor().clone();
                    *old = v;
                    *old.decor_mut() = decor;
                }
                None => t[key] = value(v),
            }
        }
        None => {
            if let Some(t) = doc.get_mut(section).and_then(Item::as_table_mut) {
                t.remove(key);
            }
        }
    }
}

/// Round to [`COORD_DECIMALS`].
pub fn coarse(x: f64) -> f64 {
    let k = 10f64.powi(COORD_DECIMALS);
    (x * k).round() / k
}

/// "51.51, -0.13" (or with a space between) as coordinates, if it is that.
pub fn parse_coordinates(s: &str) -> Option<(f64, f64)> {
    let mut parts = s.split([',', ' ', ';']).filter(|p| !p.is_empty());
    let (lat, lon) = (parts.next()?.parse::<f64>().ok()?, parts.next()?.parse::<f64>().ok()?);
    parts.next().is_none().then_some((lat, lon))
}

/// Look a postcode or place name up with Open-Meteo's geocoder at `base`.
pub fn geocode(base: &str, query: &str, timeout: Duration) -> Result<(f64, f64), String> {
    let q: String = url_encode(query);
    let url = format!("{}/v1/search?name={q}&count=1&format=json", base.trim_end_matches('/'));
    let f = crate::probe::http::get(&crate::probe::http::agent(timeout), &url, 1 << 16)
        .map_err(|e| format!("could not look \"{query}\" up ({e}); give coordinates instead, e.g. 51.5, -0.1"))?;
    if f.status != 200 {
        return Err(format!("the geocoder answered {}; give coordinates instead, e.g. 51.5, -0.1", f.status));
    }
    let v: serde_json::Value = serde_json::from_slice(&f.body).map_err(|e| format!("the geocoder's answer: {e}"))?;
    let first = v.get("results").and_then(|r| r.get(0)).ok_or_else(|| format!("no place called \"{query}\" found"))?;
    let lat = first.get("latitude").and_then(serde_json::Value::as_f64);
    let lon = first.get("longitude").and_then(serde_json::Value::as_f64);
    lat.zip(lon).ok_or_else(|| "the geocoder's answer has no coordinates".into())
}

fn url_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A postcode or place to (latitude, longitude), or why not.
pub type Geocoder<'a> = dyn Fn(&str) -> Result<(f64, f64), String> + 'a;

/// Write the page's settings into `doc`. `geocode` turns a postcode into coordinates.
pub fn apply(s: &Settings, doc: &mut DocumentMut, geocode: &Geocoder<'_>) -> Result<(), SetupError> {
    // Location: coordinates as given, or looked up; kept coarse either way.
    let at = match s.location.as_str() {
        "" => None,
        l => Some(match parse_coordinates(l) {
            Some(c) => c,
            None => geocode(l).map_err(|m| bad("location", m))?,
        }),
    };
    let coord = |x: Option<f64>| x.map(|x| toml_edit::Value::from(coarse(x)));
    put(doc, "weather", "latitude", coord(at.map(|a| a.0)));
    put(doc, "weather", "longitude", coord(at.map(|a| a.1)));

    for (field, key, text) in
        [("plan_down_mbps", "plan_down_mbps", &s.plan_down_mbps), ("plan_up_mbps", "plan_up_mbps", &s.plan_up_mbps)]
    {
        let v = match text.as_str() {
            "" => None,
            t => match t.parse::<f64>() {
                Ok(x) if x.is_finite() && x > 0.0 => Some(toml_edit::Value::from(x)),
                _ => return Err(bad(field, format!("\"{t}\" is not a speed in Mbit/s (e.g. 300)"))),
            },
        };
        put(doc, "report", key, v);
    }

    for (field, sub, text) in [("ntfy_url", "ntfy", &s.ntfy_url), ("webhook_url", "webhook", &s.webhook_url)] {
        if text.is_empty() {
            if let Some(n) = doc.get_mut("notify").and_then(Item::as_table_mut) {
                n.remove(sub);
            }
            continue;
        }
        if !(text.starts_with("http://") || text.starts_with("https://")) {
            return Err(bad(field, format!("\"{text}\" is not an http(s) URL")));
        }
        let notify = table(doc, "notify");
        let t = notify.entry(sub).or_insert_with(toml_edit::table);
        if !t.is_table() {
            *t = toml_edit::table();
        }
        t["url"] = value(text.as_str());
    }

    if s.mqtt.is_empty() {
        if let Some(n) = doc.get_mut("notify").and_then(Item::as_table_mut) {
            n.remove("mqtt");
        }
    } else {
        let (host, port) = match s.mqtt.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
                let p = p.parse::<u16>().map_err(|_| bad("mqtt", format!("\"{p}\" is not a port")))?;
                (h.trim_matches(['[', ']']).to_string(), Some(p))
            }
            _ => (s.mqtt.clone(), None),
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad("mqtt", format!("\"{}\" is not a broker address", s.mqtt)));
        }
        let notify = table(doc, "notify");
        let t = notify.entry("mqtt").or_insert_with(toml_edit::table);
        if !t.is_table() {
            *t = toml_edit::table();
        }
        t["host"] = value(host);
        match port {
            Some(p) => t["port"] = value(p as i64),
            None => {
                t.as_table_mut().map(|t| t.remove("port"));
            }
        }
    }

    match s.gateway_kind.as_str() {
        "" | "auto" | "tmobile" | "nokia" => {}
        k => return Err(bad("gateway_kind", format!("\"{k}\" is not one of auto, tmobile, nokia"))),
    }
    let kind = (!s.gateway_kind.is_empty() && s.gateway_kind != "auto").then(|| s.gateway_kind.as_str().into());
    put(doc, "gateway_api", "kind", kind);

    let anchors: Vec<&str> = s.anchors.split([',', ' ', '\n', '\r', '\t']).filter(|a| !a.is_empty()).collect();
    for a in &anchors {
        if a.parse::<IpAddr>().is_err() {
            return Err(bad("anchors", format!("\"{a}\" is not an IP address")));
        }
    }
    let list = (!anchors.is_empty()).then(|| toml_edit::Value::Array(anchors.iter().copied().collect()));
    put(doc, "ping", "anchors", list);

    // Community sharing: written only when the household turns it on or has set it before.
    let on = match s.community.as_str() {
        "" | "off" => false,
        "on" => true,
        v => return Err(bad("community", format!("\"{v}\" is not on or off"))),
    };
    if on || doc.get("community").is_some() {
        put(doc, "community", "enabled", Some(on.into()));
        let text = |v: &str| (!v.is_empty()).then(|| toml_edit::Value::from(v));
        put(doc, "community", "remote_write_url", text(&s.community_url));
        put(doc, "community", "region", text(&s.community_region));
        put(doc, "community", "carrier", text(&s.community_carrier));
    }
    Ok(())
}

/// What a save did.
#[derive(Debug)]
pub struct Saved {
    /// The settings as now written (the location coarse).
    pub settings: Settings,
}

/// Apply `s` to the file at `path`, check the result as the agent would at start, and replace
/// the file atomically (same permissions). Nothing is written when anything is wrong.
pub fn save(path: &Path, s: &Settings, geocoder: &str) -> Result<Saved, SetupError> {
    let mut doc = load(path)?;
    apply(s, &mut doc, &|q| geocode(geocoder, q, Duration::from_secs(10)))?;
    let text = doc.to_string();
    config::from_str(&text, path, &Overrides::default(), &route::system_gateways())
        .map_err(|e| SetupError::Invalid(e.to_string()))?;
    write_atomically(path, text.as_bytes()).map_err(|err| SetupError::Write { path: path.to_path_buf(), err })?;
    Ok(Saved { settings: Settings::of(&doc) })
}

/// Write `bytes` to a temporary file beside `path`, sync it, and rename it over `path`: a power
/// cut leaves the old file or the new one. The new file keeps the old one's mode.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = crate::store::folder_of(path).join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself reaches the card with the folder's next sync.
        std::fs::File::open(crate::store::folder_of(path))?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# wanwatch on the kitchen Pi\n\
        [ping]\n\
        # our own anchors\n\
        anchors = [\"1.1.1.1\", \"9.9.9.9\"] # two is plenty\n\
        \n\
        [report]\n\
        plan_down_mbps = 300 # the advert\n\
        \n\
        [store]\n\
        flush_interval = \"60s\"\n";

    fn no_geocoder(_: &str) -> Result<(f64, f64), String> {
        Err("offline".into())
    }

    #[test]
    fn the_file_is_read_into_the_form() {
        let doc: DocumentMut = FILE.parse().unwrap();
        let s = Settings::of(&doc);
        assert_eq!(s.anchors, "1.1.1.1, 9.9.9.9");
        assert_eq!(s.plan_down_mbps, "300");
        assert_eq!(s.gateway_kind, "auto");
        assert_eq!(s.location, "");
    }

    #[test]
    fn edits_keep_comments_and_the_settings_the_page_does_not_show() {
        let mut doc: DocumentMut = FILE.parse().unwrap();
        let mut s = Settings::of(&doc);
        s.set("location", "51.5123, -0.1276".into());
        s.set("plan_down_mbps", "245".into());
        s.set("ntfy_url", "https://ntfy.sh/our-house".into());
        s.set("mqtt", "192.168.1.10:1884".into());
        s.set("anchors", "1.1.1.1 8.8.8.8".into());
        apply(&s, &mut doc, &no_geocoder).unwrap();
        let out = doc.to_string();
        for kept in [
            "# wanwatch on the kitchen Pi",
            "# our own anchors",
            "# two is plenty",
            "# the advert",
            "flush_interval = \"60s\"",
        ] {
            assert!(out.contains(kept), "{kept} lost from:\n{out}");
        }
        assert!(out.contains("plan_down_mbps = 245.0 # the advert"), "{out}");
        assert!(out.contains("latitude = 51.5") && out.contains("longitude = -0.1"), "{out}");
        let cfg = config::from_str(&out, Path::new("w.toml"), &Overrides::default(), &[]).unwrap();
        assert_eq!(cfg.probes.weather.latitude, Some(51.5));
        assert_eq!(cfg.report.plan_down_mbps, Some(245.0));
        assert_eq!(cfg.notify.mqtt.as_ref().map(|m| (m.host.as_str(), m.port)), Some(("192.168.1.10", 1884)));
        assert_eq!(Settings::of(&doc).mqtt, "192.168.1.10:1884");
        // Cleared fields leave the file.
        let mut s = Settings::of(&doc);
        for f in ["location", "ntfy_url", "mqtt", "anchors", "plan_down_mbps"] {
            s.set(f, String::new());
        }
        apply(&s, &mut doc, &no_geocoder).unwrap();
        let cfg = config::from_str(&doc.to_string(), Path::new("w.toml"), &Overrides::default(), &[]).unwrap();
        assert_eq!((cfg.probes.weather.latitude, cfg.report.plan_down_mbps), (None, None));
        assert!(cfg.notify.ntfy.is_none() && cfg.notify.mqtt.is_none());
    }

    #[test]
    fn a_postcode_is_looked_up_and_a_bad_field_is_named() {
        let mut doc = DocumentMut::new();
        let s = Settings { location: "SW1A 1AA".into(), ..Settings::default() };
        apply(&s, &mut doc, &|q| if q == "SW1A 1AA" { Ok((51.50101, -0.14156)) } else { Err("?".into()) }).unwrap();
        assert_eq!(Settings::of(&doc).location, "51.5, -0.1");
        for (field, v) in [
            ("plan_up_mbps", "fast"),
            ("anchors", "1.1.1.1 example.com"),
            ("mqtt", "a b"),
            ("ntfy_url", "ntfy.sh/x"),
            ("gateway_kind", "huawei"),
            ("location", "Atlantis"),
        ] {
            let mut s = Settings::default();
            s.set(field, v.into());
            match apply(&s, &mut DocumentMut::new(), &no_geocoder) {
                Err(SetupError::Field { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}={v}: {other:?}"),
            }
        }
    }

    #[test]
    fn community_sharing_is_written_only_when_turned_on_and_checked_like_the_file() {
        let mut doc: DocumentMut = FILE.parse().unwrap();
        apply(&Settings::of(&doc), &mut doc, &no_geocoder).unwrap();
        assert!(!doc.to_string().contains("[community]"), "nothing about it until the household asks");
        let mut s = Settings::of(&doc);
        for (f, v) in
            [("community", "on"), ("community_url", "https://c.example/api/v1/write"), ("community_region", "98101")]
        {
            s.set(f, v.into());
        }
        apply(&s, &mut doc, &no_geocoder).unwrap();
        let e = config::from_str(&doc.to_string(), Path::new("w.toml"), &Overrides::default(), &[]).unwrap_err();
        assert!(e.to_string().contains("community.region") && e.to_string().contains("exact postcode"), "{e}");
        s.set("community_region", "981".into());
        apply(&s, &mut doc, &no_geocoder).unwrap();
        let cfg = config::from_str(&doc.to_string(), Path::new("w.toml"), &Overrides::default(), &[]).unwrap();
        assert!(cfg.community.enabled && cfg.community.region == "981");
        assert_eq!(Settings::of(&doc).community, "on");
    }

    #[test]
    fn a_save_that_the_config_checks_refuse_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wanwatch.toml");
        std::fs::write(&path, FILE).unwrap();
        // A latitude out of range passes the page's own parsing but not the config's checks.
        let s = Settings { location: "95, 10".into(), ..Settings::of(&FILE.parse().unwrap()) };
        let e = save(&path, &s, "http://127.0.0.1:9").unwrap_err();
        assert!(e.to_string().contains("latitude"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), FILE);
        let s = Settings { location: "52.2, 0.1".into(), ..s };
        save(&path, &s, "http://127.0.0.1:9").unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().starts_with("# wanwatch on the kitchen Pi"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }
}
