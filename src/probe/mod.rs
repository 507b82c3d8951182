//! Probes: futures that measure on their own schedule and send [`crate::sample::Sample`]s on a
//! channel until told to stop. They know nothing of the store or the display.

pub mod ping;
