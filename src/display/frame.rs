//! A 128x64 one-bit frame buffer: the headless stand-in for the OLED, and what golden images are
//! compared against.

use std::convert::Infallible;

use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;

pub const WIDTH: usize = 128;
pub const HEIGHT: usize = 64;

#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub pixels: Vec<bool>,
}

impl Default for Frame {
    fn default() -> Self {
        Frame { pixels: vec![false; WIDTH * HEIGHT] }
    }
}

impl std::fmt::Debug for Frame {
    /// ASCII art, so a failing comparison shows the picture.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for y in 0..HEIGHT {
            let row: String = (0..WIDTH).map(|x| if self.get(x, y) { '#' } else { '.' }).collect();
            writeln!(f, "{row}")?;
        }
        Ok(())
    }
}

impl Frame {
    pub fn get(&self, x: usize, y: usize) -> bool {
        self.pixels[y * WIDTH + x]
    }

    pub fn set(&mut self, x: usize, y: usize, on: bool) {
        if x < WIDTH && y < HEIGHT {
            self.pixels[y * WIDTH + x] = on;
        }
    }

    pub fn lit(&self) -> usize {
        self.pixels.iter().filter(|p| **p).count()
    }

    /// The SSD1306's memory layout: 8 pages of 128 columns, one byte per column per page, bit 0
    /// at the top.
    pub fn to_gddram(&self) -> Vec<u8> {
        let mut out = vec![0u8; WIDTH * HEIGHT / 8];
        for page in 0..HEIGHT / 8 {
            for x in 0..WIDTH {
                let mut b = 0u8;
                for bit in 0..8 {
                    if self.get(x, page * 8 + bit) {
                        b |= 1 << bit;
                    }
                }
                out[page * WIDTH + x] = b;
            }
        }
        out
    }

    pub fn from_gddram(ram: &[u8]) -> Frame {
        let mut f = Frame::default();
        for (i, b) in ram.iter().enumerate().take(WIDTH * HEIGHT / 8) {
            let (page, x) = (i / WIDTH, i % WIDTH);
            for bit in 0..8 {
                f.set(x, page * 8 + bit, b & (1 << bit) != 0);
            }
        }
        f
    }

    /// Shift the whole picture (burn-in care), filling with black.
    pub fn shifted(&self, dx: i32, dy: i32) -> Frame {
        let mut f = Frame::default();
        for y in 0..HEIGHT as i32 {
            for x in 0..WIDTH as i32 {
                let (sx, sy) = (x - dx, y - dy);
                if (0..WIDTH as i32).contains(&sx) && (0..HEIGHT as i32).contains(&sy) {
                    f.set(x as usize, y as usize, self.get(sx as usize, sy as usize));
                }
            }
        }
        f
    }
}

impl OriginDimensions for Frame {
    fn size(&self) -> Size {
        Size::new(WIDTH as u32, HEIGHT as u32)
    }
}

impl DrawTarget for Frame {
    type Color = BinaryColor;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(p, c) in pixels {
            if p.x >= 0 && p.y >= 0 {
                self.set(p.x as usize, p.y as usize, c.is_on());
            }
        }
        Ok(())
    }
}
