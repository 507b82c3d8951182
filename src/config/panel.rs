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

pub const DISPLAY_I2C_BUS: u8 = 1;
pub const DISPLAY_ADDRESS: u8 = 0x3C;
pub const DISPLAY_PAGE_SECONDS: u64 = 8;
pub const DISPLAY_OFF_FROM_HOUR: u8 = 23;
pub const DISPLAY_OFF_UNTIL_HOUR: u8 = 7;
pub const DISPLAY_SHIFT_EVERY_MIN: u32 = 5;
pub const DISPLAY_DIM_AFTER_MIN: u32 = 10;

impl Default for DisplayConfig {
    fn default() -> Self {
        DisplayConfig {
            enabled: true,
            i2c_bus: DISPLAY_I2C_BUS,
            address: DISPLAY_ADDRESS,
            page_seconds: DISPLAY_PAGE_SECONDS,
            off_from_hour: DISPLAY_OFF_FROM_HOUR,
            off_until_hour: DISPLAY_OFF_UNTIL_HOUR,
            shift_every_min: DISPLAY_SHIFT_EVERY_MIN,
            dim_after_min: DISPLAY_DIM_AFTER_MIN,
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

pub const LED_GPIO: u8 = 17;

impl Default for LedConfig {
    fn default() -> Self {
        LedConfig { enabled: true, gpio: LED_GPIO }
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
