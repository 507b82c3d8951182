//! `wanwatch config`: the configuration in effect, every section, as a TOML file the agent
//! would read back to the same settings (secrets redacted).

use std::time::Duration;

use toml::{Table, Value};

use super::Config;

/// Durations are written as they are read: "1s", "5m", "1h 30m".
fn dur(d: Duration) -> Value {
    Value::String(humantime::format_duration(d).to_string())
}

/// Keys whose values are never printed.
const SECRET_KEYS: [&str; 3] = ["token", "password", "api_key"];
/// Keys whose values are URLs that may carry a secret in the path (an ntfy topic is a
/// capability) or in user:password@.
const SECRET_URLS: [(&str, &str); 2] = [("ntfy", "url"), ("webhook", "url")];

impl Config {
    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        let mut root = Table::new();
        root.insert("db".into(), Value::String(self.db.display().to_string()));

        let mut ping = Table::new();
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                let mut v = Table::new();
                v.insert("addr".into(), Value::String(t.target.addr.to_string()));
                if let Some(i) = &t.iface {
                    v.insert("iface".into(), Value::String(i.clone()));
                }
                v.insert("name".into(), Value::String(t.target.name.clone()));
                v.insert("role".into(), Value::String(t.target.role.as_str().into()));
                v.insert("interval".into(), dur(t.interval));
                v.insert("timeout".into(), dur(t.timeout));
                if let Some(p) = t.tcp_port {
                    v.insert("tcp_port".into(), Value::Integer(i64::from(p)));
                }
                Value::Table(v)
            })
            .collect();
        // Explicit targets stand for themselves: no gateway discovery, no default anchors.
        ping.insert("gateway".into(), Value::String("none".into()));
        ping.insert("anchors".into(), Value::Array(Vec::new()));
        ping.insert("target".into(), Value::Array(targets));
        root.insert("ping".into(), Value::Table(ping));

        let s = &self.state;
        let mut state = Table::new();
        state.insert("down_after".into(), Value::Integer(i64::from(s.down_after)));
        state.insert("window".into(), dur(s.window));
        state.insert("degraded_loss".into(), Value::Float(s.degraded_loss));
        state.insert("degraded_rtt_ms".into(), Value::Float(s.degraded_rtt_ms));
        root.insert("state".into(), Value::Table(state));

        let st = &self.store;
        let mut store = Table::new();
        store.insert("flush_interval".into(), dur(st.flush_interval));
        store.insert("raw_retention_days".into(), Value::Integer(i64::from(st.raw_retention_days)));
        store.insert("rollup_retention_days".into(), Value::Integer(i64::from(st.rollup_retention_days)));
        // The file's "MB" are MiB (`max_db_mb = 4096` is 4 GiB).
        store.insert("max_db_mb".into(), Value::Integer((st.max_db_bytes >> 20) as i64));
        store.insert("journal_size_limit_mb".into(), Value::Integer((st.journal_size_limit_bytes >> 20) as i64));
        root.insert("store".into(), Value::Table(store));

        let p = &self.probes;
        let sections: [(&str, Result<Table, toml::ser::Error>); 16] = [
            ("dns", Table::try_from(&p.dns)),
            ("http", Table::try_from(&p.http)),
            ("bandwidth", Table::try_from(&p.bandwidth)),
            ("gateway_api", Table::try_from(&p.gateway_api)),
            ("weather", Table::try_from(&p.weather)),
            ("syslog", Table::try_from(&p.syslog)),
            ("devices", Table::try_from(&p.devices)),
            ("system", Table::try_from(&p.system)),
            ("sessions", Table::try_from(&p.sessions)),
            ("display", Table::try_from(&self.display)),
            ("led", Table::try_from(&self.led)),
            ("detect", Table::try_from(&self.detect)),
            ("report", Table::try_from(&self.report)),
            ("web", Table::try_from(&self.web)),
            ("notify", Table::try_from(&self.notify)),
            ("community", Table::try_from(&self.community)),
        ];
        for (name, t) in sections {
            // Every section is plain data; a failure here is a bug worth seeing, not a panic.
            let t = t.unwrap_or_else(|e| {
                let mut t = Table::new();
                t.insert("error".into(), Value::String(e.to_string()));
                t
            });
            root.insert(name.into(), Value::Table(t));
        }
        redact(&mut root, "");
        let mut out = format!("# wanwatch configuration in effect (source: {})\n", self.source);
        out.push_str(&toml::to_string_pretty(&root).unwrap_or_else(|e| format!("# cannot print: {e}\n")));
        out
    }
}

fn redact(t: &mut Table, section: &str) {
    for (k, v) in t.iter_mut() {
        match v {
            Value::Table(inner) => redact(inner, k),
            Value::String(s) if SECRET_KEYS.contains(&k.as_str()) => *s = "(redacted)".into(),
            Value::String(s) if SECRET_URLS.contains(&(section, k.as_str())) => {
                // Keep scheme and host so a person can see where it goes.
                let cut = s.find("://").map(|i| i + 3).unwrap_or(0);
                let host_end = s[cut..].find('/').map(|i| cut + i).unwrap_or(s.len());
                let host = s[cut..host_end].rsplit('@').next().unwrap_or_default().to_string();
                *s = format!("{}{host}/(redacted)", &s[..cut]);
            }
            _ => {}
        }
    }
}
