//! The Pi's hardware: the only module that names rppal. Everything else sees embedded-hal
//! traits, so it runs unchanged against fakes on any machine.

use rppal::gpio::{Gpio, OutputPin};
use rppal::i2c::I2c;

/// The I2C bus `bus` (/dev/i2c-N), with a hint when it is not there.
pub fn open_i2c(bus: u8) -> Result<I2c, String> {
    I2c::with_bus(bus).map_err(|e| {
        format!("cannot open /dev/i2c-{bus} ({e}): enable I2C (dtparam=i2c_arm=on in config.txt) and check the user is in group i2c")
    })
}

/// GPIO `pin` (BCM numbering) as an output.
pub fn open_led(pin: u8) -> Result<OutputPin, String> {
    let gpio = Gpio::new().map_err(|e| format!("cannot open GPIO ({e}): check /dev/gpiomem and the gpio group"))?;
    let pin = gpio.get(pin).map_err(|e| format!("cannot use GPIO {pin}: {e}"))?;
    Ok(pin.into_output_low())
}
