//! Weather at the house, so the report can say whether rain goes with loss: Open-Meteo (no key)
//! by default, OpenWeather when a key file is configured. The key is read from its file at each
//! poll, never logged and never stored (errors name what failed, not the URL).

use std::time::Duration;

use serde_json::Value;

use super::ProbeError;
use super::http::{agent, get};
use super::{Ctx, blocking};
use crate::config::probes::{WeatherConfig, WeatherProvider};
use crate::sample::Metric;
use crate::series;

/// Current conditions in metric units; None where the provider gave nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Conditions {
    pub temp_c: Option<f64>,
    pub humidity_pct: Option<f64>,
    pub precip_mm_h: Option<f64>,
    pub wind_kmh: Option<f64>,
    pub pressure_hpa: Option<f64>,
    /// WMO weather code (Open-Meteo) or OpenWeather condition id.
    pub condition: Option<f64>,
}

pub fn parse_open_meteo(body: &[u8]) -> Result<Conditions, ProbeError> {
    let v: Value = serde_json::from_slice(body)?;
    if let Some(reason) = v.get("reason").and_then(Value::as_str) {
        return Err(ProbeError::Provider(reason.to_string()));
    }
    let c = v.get("current").ok_or("no `current` in the answer")?;
    let f = |k: &str| c.get(k).and_then(Value::as_f64);
    Ok(Conditions {
        temp_c: f("temperature_2m"),
        humidity_pct: f("relative_humidity_2m"),
        precip_mm_h: f("precipitation"),
        wind_kmh: f("wind_speed_10m"),
        pressure_hpa: f("surface_pressure"),
        condition: f("weather_code"),
    })
}

pub fn parse_openweather(body: &[u8]) -> Result<Conditions, ProbeError> {
    let v: Value = serde_json::from_slice(body)?;
    // OpenWeather reports errors as {"cod": 401, "message": "..."} (cod may be a string).
    let cod = v.get("cod").and_then(|c| c.as_i64().or_else(|| c.as_str().and_then(|s| s.parse().ok())));
    if cod.is_some_and(|c| c != 200) {
        return Err(ProbeError::Provider(cod.unwrap_or_default().to_string()));
    }
    let main = v.get("main").ok_or("no `main` in the answer")?;
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64);
    Ok(Conditions {
        temp_c: main.get("temp").and_then(Value::as_f64),
        humidity_pct: main.get("humidity").and_then(Value::as_f64),
        // No "rain" object means no rain in the last hour.
        precip_mm_h: Some(f("/rain/1h").unwrap_or(0.0) + f("/snow/1h").unwrap_or(0.0)),
        wind_kmh: f("/wind/speed").map(|ms| ms * 3.6),
        pressure_hpa: main.get("pressure").and_then(Value::as_f64),
        condition: f("/weather/0/id"),
    })
}

fn read_key(cfg: &WeatherConfig) -> Result<String, ProbeError> {
    let path = cfg.api_key_file.as_ref().ok_or(ProbeError::Missing("no api_key_file"))?;
    let key = std::fs::read_to_string(path).map_err(|e| ProbeError::KeyFile { path: path.clone(), kind: e.kind() })?;
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!("API key file {} is readable by others; chmod 600 it", path.display());
        }
    }
    Ok(key.trim().to_string())
}

/// The request URL. Holds the key for OpenWeather: never log or store it.
fn url(cfg: &WeatherConfig, key: Option<&str>) -> String {
    let (lat, lon) = (cfg.latitude.unwrap_or_default(), cfg.longitude.unwrap_or_default());
    match key {
        None => format!(
            "{}/v1/forecast?latitude={lat}&longitude={lon}&current=temperature_2m,relative_humidity_2m,precipitation,weather_code,wind_speed_10m,surface_pressure",
            cfg.url.as_deref().unwrap_or("https://api.open-meteo.com")
        ),
        Some(k) => format!(
            "{}/data/2.5/weather?lat={lat}&lon={lon}&units=metric&appid={k}",
            cfg.url.as_deref().unwrap_or("https://api.openweathermap.org")
        ),
    }
}

pub async fn poll(cfg: &WeatherConfig) -> Result<Conditions, ProbeError> {
    let openweather = match cfg.provider {
        Some(WeatherProvider::Openweather) => true,
        Some(WeatherProvider::OpenMeteo) => false,
        None => cfg.api_key_file.is_some(),
    };
    let key = if openweather { Some(read_key(cfg)?) } else { None };
    let (a, u) = (agent(cfg.timeout), url(cfg, key.as_deref()));
    let f = blocking(cfg.timeout + Duration::from_secs(1), move || get(&a, &u, 1 << 20)).await??;
    if f.status != 200 {
        return Err(ProbeError::Status(f.status));
    }
    if openweather { parse_openweather(&f.body) } else { parse_open_meteo(&f.body) }
}

pub async fn run(cfg: WeatherConfig, ctx: Ctx) {
    ctx.every(Duration::from_secs(5), cfg.interval, || async {
        let ts = ctx.now();
        match poll(&cfg).await {
            Ok(c) => {
                for (key, v) in [
                    (series::TEMP, c.temp_c),
                    (series::HUMIDITY, c.humidity_pct),
                    (series::PRECIP, c.precip_mm_h),
                    (series::WIND, c.wind_kmh),
                    (series::PRESSURE, c.pressure_hpa),
                    (series::CONDITION, c.condition),
                ] {
                    if let Some(v) = v {
                        ctx.metric(Metric::new(ts, key, "here", v)).await;
                    }
                }
            }
            Err(why) => ctx.metric(Metric::failed(ts, series::WEATHER_POLL, "here", why)).await,
        }
    })
    .await;
}
