//! What the OLED shows. Screens are drawn on any embedded-graphics `DrawTarget`, so the same
//! code draws into the SSD1306 on the Pi ([`oled`]) and into a [`frame::Frame`] in tests (golden
//! PNGs). The screens only read a [`snapshot::Snapshot`]: the display never talks to a probe.

pub mod burnin;
pub mod frame;
pub mod oled;
pub mod screens;
pub mod snapshot;

pub use screens::Page;
pub use snapshot::Snapshot;
