//! The Pi's hardware: the only module that names rppal. Everything else sees embedded-hal
//! traits, so it runs unchanged against fakes on any machine.

use rppal::gpio::{Gpio, OutputPin};
use rppal::i2c::I2c;

/// What is missing, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum HwError {
    #[error(
        "cannot open /dev/i2c-{bus} ({err}): enable I2C (dtparam=i2c_arm=on in config.txt) and check the user is in group i2c"
    )]
    I2c { bus: u8, err: rppal::i2c::Error },
    #[error("cannot open GPIO ({0}): check /dev/gpiomem and the gpio group")]
    Gpio(rppal::gpio::Error),
    #[error("cannot use GPIO {pin}: {err}")]
    Pin { pin: u8, err: rppal::gpio::Error },
    #[error("no SSD1306 answers at 0x{address:02X} ({why})")]
    NoOled { address: u8, why: String },
}

/// The I2C bus `bus` (/dev/i2c-N), with a hint when it is not there.
pub fn open_i2c(bus: u8) -> Result<I2c, HwError> {
    I2c::with_bus(bus).map_err(|err| HwError::I2c { bus, err })
}

/// GPIO `pin` (BCM numbering) as an output.
pub fn open_led(pin: u8) -> Result<OutputPin, HwError> {
    let gpio = Gpio::new().map_err(HwError::Gpio)?;
    let pin = gpio.get(pin).map_err(|err| HwError::Pin { pin, err })?;
    Ok(pin.into_output_low())
}
