//! The Pi itself: CPU, load, memory, free disk, temperature and the firmware's throttling flags,
//! so a hot or under-powered Pi is not mistaken for a bad ISP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sysinfo::{Disks, MemoryRefreshKind, RefreshKind, System};

use super::{Ctx, blocking};
use crate::config::probes::SystemConfig;
use crate::sample::Metric;
use crate::series::{self, Series};

/// The firmware's `get_throttled` word, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub under_voltage_now: bool,
    pub throttled_now: bool,
    pub under_voltage_since_boot: bool,
    pub throttled_since_boot: bool,
    pub raw: u32,
}

/// Parse `/sys/devices/platform/soc/soc:firmware/get_throttled` (hex, e.g. "50005") or
/// `vcgencmd get_throttled` output ("throttled=0x50005").
pub fn parse_throttled(text: &str) -> Option<Throttled> {
    let t = text.trim();
    let t = t.strip_prefix("throttled=").unwrap_or(t);
    let raw = u32::from_str_radix(t.trim_start_matches("0x"), 16).ok()?;
    Some(Throttled {
        under_voltage_now: raw & 0x1 != 0,
        throttled_now: raw & 0x4 != 0,
        under_voltage_since_boot: raw & 0x10000 != 0,
        throttled_since_boot: raw & 0x40000 != 0,
        raw,
    })
}

/// SoC temperature in °C from a thermal zone (millidegrees in sysfs).
pub fn read_temp(sysfs: &Path) -> Option<f64> {
    let t = std::fs::read_to_string(sysfs.join("class/thermal/thermal_zone0/temp")).ok()?;
    t.trim().parse::<f64>().ok().map(|m| m / 1000.0)
}

pub struct Readings {
    pub metrics: Vec<(Series, f64)>,
}

/// One reading of everything. Blocking (sysinfo samples the CPU twice).
pub fn read(sys: &mut System, sysfs: &Path, db: &Path) -> Readings {
    let mut m = Vec::new();
    sys.refresh_cpu_usage();
    std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
    sys.refresh_cpu_usage();
    sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
    m.push((series::CPU, sys.global_cpu_usage() as f64));
    if let Ok(load) = System::load_average() {
        m.push((series::LOAD1, load.one));
    }
    if sys.total_memory() > 0 {
        m.push((series::MEM_USED, sys.used_memory() as f64 / sys.total_memory() as f64 * 100.0));
    }
    // Free space where the database lives: the longest mount point that contains it.
    let db_dir = std::fs::canonicalize(crate::store::folder_of(db)).unwrap_or_else(|_| PathBuf::from("/"));
    let disks = Disks::new_with_refreshed_list();
    if let Some(d) = disks
        .as_ref()
        .map(|d| &d[..])
        .unwrap_or_default()
        .iter()
        .filter(|d| db_dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
    {
        m.push((series::DISK_FREE, d.available_space() as f64 / 1e6));
    }
    if let Some(t) = read_temp(sysfs) {
        m.push((series::SOC_TEMP, t));
    }
    let throttled = std::fs::read_to_string(sysfs.join("devices/platform/soc/soc:firmware/get_throttled")).ok();
    if let Some(t) = throttled.as_deref().and_then(parse_throttled) {
        m.push((series::UNDER_VOLTAGE_NOW, t.under_voltage_now as u8 as f64));
        m.push((series::THROTTLED_NOW, t.throttled_now as u8 as f64));
        m.push((series::UNDER_VOLTAGE_SINCE_BOOT, t.under_voltage_since_boot as u8 as f64));
        m.push((series::THROTTLED_SINCE_BOOT, t.throttled_since_boot as u8 as f64));
    }
    Readings { metrics: m }
}

pub async fn run(cfg: SystemConfig, db: PathBuf, ctx: Ctx) {
    let sys = match System::new_with_specifics(RefreshKind::nothing()) {
        Ok(s) => std::sync::Arc::new(std::sync::Mutex::new(s)),
        Err(e) => {
            tracing::warn!("system probe off: {e}");
            return;
        }
    };
    ctx.every(Duration::from_secs(2), cfg.interval, || async {
        let (sys, sysfs, db) = (sys.clone(), cfg.sysfs.clone(), db.clone());
        let result = blocking(Duration::from_secs(10), move || {
            let mut s = sys.lock().unwrap_or_else(|e| e.into_inner());
            read(&mut s, &sysfs, &db)
        })
        .await;
        let ts = ctx.now();
        match result {
            Ok(r) => {
                for (key, v) in r.metrics {
                    ctx.metric(Metric::new(ts, key, "pi", v)).await;
                }
            }
            Err(why) => ctx.metric(Metric::failed(ts, series::SYSTEM_POLL, "pi", why)).await,
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_flags() {
        let t = parse_throttled("50005\n").unwrap();
        assert!(t.under_voltage_now && t.throttled_now && t.under_voltage_since_boot && t.throttled_since_boot);
        let t = parse_throttled("10000").unwrap();
        assert!(!t.under_voltage_now && !t.throttled_now && t.under_voltage_since_boot && !t.throttled_since_boot);
        let t = parse_throttled("throttled=0x0").unwrap();
        assert!(!t.under_voltage_now && !t.throttled_since_boot);
        assert_eq!(parse_throttled("not hex"), None);
    }

    #[test]
    fn reads_a_fixture_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let zone = dir.path().join("class/thermal/thermal_zone0");
        std::fs::create_dir_all(&zone).unwrap();
        std::fs::write(zone.join("temp"), "61835\n").unwrap();
        let fw = dir.path().join("devices/platform/soc/soc:firmware");
        std::fs::create_dir_all(&fw).unwrap();
        std::fs::write(fw.join("get_throttled"), "50000\n").unwrap();
        let mut sys = System::new().unwrap();
        let r = read(&mut sys, dir.path(), &dir.path().join("w.db"));
        let get = |key: Series| r.metrics.iter().find(|m| m.0 == key).map(|m| m.1);
        assert_eq!(get(series::SOC_TEMP), Some(61.835));
        assert_eq!(get(series::UNDER_VOLTAGE_SINCE_BOOT), Some(1.0));
        assert_eq!(get(series::UNDER_VOLTAGE_NOW), Some(0.0));
        assert!(get(series::CPU).is_some_and(|c| (0.0..=100.0).contains(&c)));
        assert!(get(series::MEM_USED).is_some_and(|c| c > 0.0 && c <= 100.0));
        assert!(get(series::DISK_FREE).is_some_and(|c| c > 0.0));
    }
}
