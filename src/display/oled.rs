//! The SSD1306 128x64 OLED over I2C: the only user of the `ssd1306` crate. Generic over the
//! embedded-hal I2C trait, so the Pi hands it rppal's bus and the tests a fake one.

use display_interface::DisplayError;
use ssd1306::mode::BufferedGraphicsMode;
use ssd1306::prelude::*;
use ssd1306::{I2CDisplayInterface, Ssd1306};

use super::frame::{Frame, HEIGHT, WIDTH};

pub struct Oled<I2C> {
    dev: Ssd1306<I2CInterface<I2C>, DisplaySize128x64, BufferedGraphicsMode<DisplaySize128x64>>,
    on: bool,
    dim: bool,
}

impl<I2C: embedded_hal::i2c::I2c> Oled<I2C> {
    /// Initialise the panel at `address` (0x3C on most boards, 0x3D on some).
    pub fn new(i2c: I2C, address: u8) -> Result<Oled<I2C>, DisplayError> {
        let iface = I2CDisplayInterface::new_custom_address(i2c, address);
        let mut dev = Ssd1306::new(iface, DisplaySize128x64, DisplayRotation::Rotate0).into_buffered_graphics_mode();
        dev.init()?;
        Ok(Oled { dev, on: true, dim: false })
    }

    /// Send a whole frame.
    pub fn show(&mut self, frame: &Frame) -> Result<(), DisplayError> {
        if !self.on {
            self.dev.set_display_on(true)?;
            self.on = true;
        }
        for y in 0..HEIGHT {
            for x in 0..WIDTH {
                self.dev.set_pixel(x as u32, y as u32, frame.get(x, y));
            }
        }
        self.dev.flush()
    }

    /// Screen off (night) or on.
    pub fn set_on(&mut self, on: bool) -> Result<(), DisplayError> {
        if on != self.on {
            self.dev.set_display_on(on)?;
            self.on = on;
        }
        Ok(())
    }

    pub fn set_dim(&mut self, dim: bool) -> Result<(), DisplayError> {
        if dim != self.dim {
            self.dev.set_brightness(if dim { Brightness::DIMMEST } else { Brightness::NORMAL })?;
            self.dim = dim;
        }
        Ok(())
    }

    /// Give the bus back (the tests read what was sent).
    pub fn release(self) -> I2C {
        self.dev.release().release()
    }
}
