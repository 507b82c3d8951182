//! wanwatch: a home-internet watchdog for a Raspberry Pi.
//!
//! One record type flows through the whole program:
//!
//! ```text
//! probe/ (ping, ...) --Sample--> agent --Record--> store/writer --SQLite--> status, export
//!                                  |
//!                                  +--> detect/ (state machine: up, degraded, LAN/WAN down)
//! ```
//!
//! * [`sample`]: the records ([`sample::Sample`], [`sample::Record`]).
//! * [`config`]: the TOML file and the command line, merged and validated.
//! * [`clock`]: wall time derived from the monotonic clock, robust to the Pi's boot-time jumps.
//! * [`probe`]: measurements, each on its own schedule.
//! * [`detect`]: what the measurements mean.
//! * [`store`]: the SQLite file: schema, batched writer, rollups, retention, queries, export.
//! * [`agent`]: `wanwatch run`, wiring the above together.
//! * [`status`]: the `wanwatch status` screen.
//! * [`display`]: the OLED's pages, drawn on any embedded-graphics target.

pub mod agent;
pub mod calendar;
pub mod clock;
pub mod community;
pub mod config;
pub mod detect;
pub mod display;
pub mod doctor;
pub mod hw;
pub mod input;
pub mod jsonfile;
pub mod led;
pub mod logging;
pub mod notify;
pub mod panel;
pub mod placement;
pub mod probe;
pub mod replay;
pub mod report;
pub mod sample;
pub mod series;
pub mod service;
pub mod setup;
pub mod stats;
pub mod status;
pub mod store;
pub mod web;
