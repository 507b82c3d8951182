//! `[display]` and `[led]`: the OLED and the status LED.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::doc::Doc;

/// The OLED on the Pi's I2C bus.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisplayConfig {
    pub enabled: bool,
    /// /dev/i2c-N.
    pub i2c_bus: u8,
    /// 0x3C on most SSD1306 boards (TOML takes `0x3C`), 0x3D on some.
    pub address: u8,
    /// Seconds each page stays up.
    pub page_seconds: u64,
    /// Local hours the screen is off (burn-in care); equal hours: never off.
    pub off_from_hour: u8,
    pub off_until_hour: u8,
    /// Minutes between one-pixel moves of the picture.
    pub shift_every_min: u32,
    /// Dim after this many minutes without a change of link state.
    pub dim_after_min: u32,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        DisplayConfig {
            enabled: true,
            i2c_bus: 1,
            address: 0x3C,
            page_seconds: 8,
            off_from_hour: 23,
            off_until_hour: 7,
            shift_every_min: 5,
            dim_after_min: 10,
        }
    }
}

/// The status LED on a GPIO pin.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedConfig {
    pub enabled: bool,
    /// BCM pin number.
    pub gpio: u8,
}

impl Default for LedConfig {
    fn default() -> Self {
        LedConfig { enabled: true, gpio: 17 }
    }
}

impl DisplayConfig {
    pub fn validate(&self, doc: &Doc) -> Result<(), ConfigError> {
        for (key, h) in [("off_from_hour", self.off_from_hour), ("off_until_hour", self.off_until_hour)] {
            if h > 23 {
                return Err(doc.bad("display", key, "hours are 0-23"));
            }
        }
        Ok(())
    }
}

impl LedConfig {
    pub fn validate(&self, doc: &Doc) -> Result<(), ConfigError> {
        if self.gpio > 27 {
            return Err(doc.bad("led", "gpio", "the Pi's header has GPIO 0-27"));
        }
        Ok(())
    }
}
