//! Every context series the agent writes, by (probe, name, unit), once: probes write through
//! these keys and the report, the dashboard, /metrics and the OLED read through them, so a
//! renamed series cannot leave a reader looking for the old name.

/// The key of a series in the `series` table (its subject, e.g. "5g" or a URL, is separate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Series {
    pub probe: &'static str,
    pub name: &'static str,
    pub unit: &'static str,
}

const fn s(probe: &'static str, name: &'static str, unit: &'static str) -> Series {
    Series { probe, name, unit }
}

// DNS: per name@server.
pub const DNS_LATENCY: Series = s("dns", "latency_ms", "ms");
pub const DNS_RCODE: Series = s("dns", "rcode", "code");

// HTTP(S): per URL.
pub const HTTP_TTFB: Series = s("http", "ttfb_ms", "ms");
pub const HTTP_TOTAL: Series = s("http", "total_ms", "ms");
pub const HTTP_STATUS: Series = s("http", "status", "code");
pub const HTTP_BYTES: Series = s("http", "bytes", "B");

// Speed tests: per server URL.
pub const DOWN_MBPS: Series = s("bandwidth", "down_mbps", "Mbit/s");
pub const UP_MBPS: Series = s("bandwidth", "up_mbps", "Mbit/s");
pub const IDLE_MS: Series = s("bandwidth", "idle_ms", "ms");
pub const LOADED_DOWN_MS: Series = s("bandwidth", "loaded_down_ms", "ms");
pub const LOADED_UP_MS: Series = s("bandwidth", "loaded_up_ms", "ms");
pub const BUFFERBLOAT_MS: Series = s("bandwidth", "bufferbloat_ms", "ms");
pub const RPM: Series = s("bandwidth", "rpm", "RPM");
pub const SPEED_TEST_BYTES: Series = s("bandwidth", "bytes", "B");
pub const SPEED_TEST_NOTES: Series = s("bandwidth", "notes", "");

// The gateway: per radio ("5g", "4g"), uptime and poll failures for "gateway".
pub const RSRP: Series = s("gateway", "rsrp_dbm", "dBm");
pub const RSRQ: Series = s("gateway", "rsrq_db", "dB");
pub const RSSI: Series = s("gateway", "rssi_dbm", "dBm");
pub const SINR: Series = s("gateway", "sinr_db", "dB");
pub const BARS: Series = s("gateway", "bars", "bars");
/// The value is the number of bands; the note lists them ("n41,n71").
pub const BANDS: Series = s("gateway", "bands", "count");
pub const CELL_ID: Series = s("gateway", "cid", "id");
pub const NODE_ID: Series = s("gateway", "node_id", "id");
pub const GATEWAY_UPTIME: Series = s("gateway", "uptime_s", "s");
pub const GATEWAY_POLL: Series = s("gateway", "poll", "");

// Weather: subject "here".
pub const TEMP: Series = s("weather", "temp_c", "C");
pub const HUMIDITY: Series = s("weather", "humidity_pct", "%");
pub const PRECIP: Series = s("weather", "precip_mm_h", "mm/h");
pub const WIND: Series = s("weather", "wind_kmh", "km/h");
pub const PRESSURE: Series = s("weather", "pressure_hpa", "hPa");
pub const CONDITION: Series = s("weather", "condition", "code");
pub const WEATHER_POLL: Series = s("weather", "poll", "");

// The LAN and the router's log.
pub const DEVICES: Series = s("devices", "neighbours", "count");
pub const SYSLOG_DROPPED: Series = s("syslog", "dropped_lines", "lines");
/// LAN clients in a session of each kind (from DNS query logs; subject "lan"), and the DNS
/// queries seen in the interval (subject: the source), so "none" is told from "not watched".
pub const STREAMING: Series = s("sessions", "streaming_clients", "clients");
pub const GAMING: Series = s("sessions", "gaming_clients", "clients");
pub const CALLS: Series = s("sessions", "video_call_clients", "clients");
pub const UPDATES: Series = s("sessions", "update_clients", "clients");
pub const DNS_QUERIES_SEEN: Series = s("sessions", "queries_seen", "queries");

// The Pi itself: subject "pi".
pub const CPU: Series = s("system", "cpu_pct", "%");
pub const LOAD1: Series = s("system", "load1", "");
pub const MEM_USED: Series = s("system", "mem_used_pct", "%");
pub const DISK_FREE: Series = s("system", "disk_free_mb", "MB");
pub const SOC_TEMP: Series = s("system", "temp_c", "C");
pub const UNDER_VOLTAGE_NOW: Series = s("system", "under_voltage_now", "flag");
pub const THROTTLED_NOW: Series = s("system", "throttled_now", "flag");
pub const UNDER_VOLTAGE_SINCE_BOOT: Series = s("system", "under_voltage_since_boot", "flag");
pub const THROTTLED_SINCE_BOOT: Series = s("system", "throttled_since_boot", "flag");
pub const SYSTEM_POLL: Series = s("system", "poll", "");

// The hour-ahead outlook: subject "outlook", each minute.
pub const TROUBLE_P60: Series = s("detect", "trouble_p60", "p");
pub const TROUBLE: Series = s("detect", "trouble", "");

#[cfg(test)]
mod tests {
    /// Every key is one row of the `series` table: no two share (probe, name).
    #[test]
    fn every_series_key_is_unique() {
        let src = include_str!("series.rs");
        let mut seen = std::collections::HashSet::new();
        for line in src.lines().filter(|l| l.starts_with("pub const ") && l.contains("= s(")) {
            let args: Vec<&str> = line.split('"').collect();
            assert!(seen.insert((args[1], args[3])), "{line}");
        }
        assert!(seen.len() > 40, "{} keys read", seen.len());
    }
}
