//! `wanwatch doctor`: checks what the agent needs and says what to fix, one line each.

use std::path::Path;

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    /// Works without it (headless, no LED, no gateway API), but worth knowing.
    Warn,
    /// The agent cannot do its job until this is fixed.
    Fail,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
}

fn check(name: &'static str, level: Level, detail: impl Into<String>) -> Check {
    Check { name, level, detail: detail.into() }
}

/// Run every check. `offline` skips the one that talks to the gateway.
pub fn run(cfg: &Config, offline: bool) -> Vec<Check> {
    let mut out = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");

    out.push(match rt.block_on(async { crate::probe::ping::Sockets::open(&cfg.targets).map(|s| s.kinds()) }) {
        Ok(kinds) => {
            let kinds: Vec<String> = kinds.iter().map(|(f, k)| format!("{f} {}", k.as_str())).collect();
            check("ICMP", Level::Ok, format!("can open ICMP sockets for every target ({})", kinds.join(", ")))
        }
        Err(e) => check("ICMP", Level::Fail, e.to_string()),
    });
    out.push(database(&cfg.db));
    out.push(wal_index(&cfg.db));

    if cfg.display.enabled {
        let bus = cfg.display.i2c_bus;
        out.push(match crate::hw::open_i2c(bus) {
            Err(e) => check("I2C", Level::Warn, format!("{e}; the agent runs headless")),
            Ok(i2c) => match crate::display::oled::Oled::new(i2c, cfg.display.address) {
                Ok(_) => check("I2C", Level::Ok, format!("SSD1306 OLED answers on /dev/i2c-{bus} at 0x{:02X}", cfg.display.address)),
                Err(e) => check(
                    "I2C",
                    Level::Warn,
                    format!(
                        "/dev/i2c-{bus} is there but nothing answers at 0x{:02X} ({e:?}): check the wiring (SDA pin 3, SCL pin 5) and `i2cdetect -y {bus}`",
                        cfg.display.address
                    ),
                ),
            },
        });
    }
    if cfg.led.enabled {
        out.push(match crate::hw::open_led(cfg.led.gpio) {
            Ok(_) => check("GPIO", Level::Ok, format!("LED pin GPIO {} is usable", cfg.led.gpio)),
            Err(e) => check("GPIO", Level::Warn, format!("{e}; no status LED")),
        });
    }
    out.push(clock());
    // Only what the configuration uses: a disabled gateway probe is not a warning.
    if !offline && cfg.probes.gateway_api.enabled {
        out.push(gateway(cfg, &rt));
    }
    out
}

fn database(path: &Path) -> Check {
    if path.exists() {
        match crate::store::Store::open_read_only(path) {
            Ok(s) => match s.quick_check() {
                Ok(ok) if ok == "ok" => {
                    let writable = nix_access(path, libc::W_OK);
                    if writable {
                        check("database", Level::Ok, format!("{} is healthy and writable", path.display()))
                    } else {
                        check("database", Level::Fail, format!("{} is not writable by this user", path.display()))
                    }
                }
                Ok(problem) => check("database", Level::Fail, format!("{}: {problem}; move it aside", path.display())),
                Err(e) => check("database", Level::Fail, format!("{}: {e}", path.display())),
            },
            Err(e) => check("database", Level::Fail, e.to_string()),
        }
    } else {
        let dir = crate::store::folder_of(path);
        if nix_access(dir, libc::W_OK) {
            check("database", Level::Ok, format!("{} will be created", path.display()))
        } else {
            check(
                "database",
                Level::Fail,
                format!("cannot create {}: {} is not writable", path.display(), dir.display()),
            )
        }
    }
}

/// Where SQLite's WAL index lives: on the card it is most of what the agent writes.
fn wal_index(db: &Path) -> Check {
    let shm = crate::store::shm::shm_path(db);
    if crate::store::shm::in_ram(&shm) || (!shm.exists() && crate::store::shm::in_ram(crate::store::folder_of(db))) {
        check("WAL index", Level::Ok, format!("{} is in RAM", shm.display()))
    } else {
        check(
            "WAL index",
            Level::Warn,
            format!(
                "{} is on disk: about 25 MB/day more written to the card at the default flush; run `sudo wanwatch shm-in-ram` \
                 before the agent starts (the packaged unit does)",
                shm.display()
            ),
        )
    }
}

fn nix_access(path: &Path, mode: libc::c_int) -> bool {
    let Ok(c) = crate::store::c_path(path) else { return false };
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), mode) == 0 }
}

/// Is the system clock synchronised (NTP)? A Pi without RTC boots with a wrong clock.
fn clock() -> Check {
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: modes = 0 only reads the kernel's clock state.
    let state = unsafe { libc::adjtimex(&mut tx) };
    let now = crate::calendar::format_time(crate::clock::WallClock::system().now());
    match state {
        libc::TIME_ERROR => check(
            "clock",
            Level::Warn,
            format!(
                "{now} UTC, not synchronised: start systemd-timesyncd (wanwatch moves early samples once it syncs)"
            ),
        ),
        s if s < 0 => check("clock", Level::Warn, format!("{now} UTC, state unknown")),
        _ => check("clock", Level::Ok, format!("{now} UTC, synchronised")),
    }
}

fn gateway(cfg: &Config, rt: &tokio::runtime::Runtime) -> Check {
    let gw = cfg.targets.iter().find(|t| t.target.role == crate::sample::Role::Gateway && t.target.addr.is_ipv4());
    let Some(gw) = gw else { return check("gateway API", Level::Warn, "no IPv4 gateway to ask") };
    let base = if cfg.probes.gateway_api.url == "auto" {
        format!("http://{}", gw.target.addr)
    } else {
        cfg.probes.gateway_api.url.clone()
    };
    match rt.block_on(crate::probe::gateway::detect(&base, cfg.probes.gateway_api.timeout)) {
        Some(kind) => check("gateway API", Level::Ok, format!("{kind:?} signal API answers at {base}")),
        None => check(
            "gateway API",
            Level::Warn,
            format!("no T-Mobile or Nokia signal API at {base}: no 5G signal data (fine for other routers)"),
        ),
    }
}

/// The report, one line per check.
pub fn render(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        let tag = match c.level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        s.push_str(&format!("{tag}  {:<12} {}\n", c.name, c.detail));
    }
    s
}
