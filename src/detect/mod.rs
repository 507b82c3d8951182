//! Detectors: what the samples mean. The connection state machine finds outages by plain rules;
//! the pipeline learns this household's normal and flags what departs from it.
//!
//! Flow of one step: `features` (robust normalisation, windows) -> `models` (ONNX forecaster,
//! autoencoder, classifier via tract) + `forest` (Extended Isolation Forest) -> `calibrate`
//! (each score to a surprise on this link's own history) -> `pipeline` (ensemble, rules,
//! prediction, explanation) -> `alarm` (hysteresis: one event per incident). `baseline` holds the
//! rolling z-scores: the 24 h one every detector is compared with, the week one the ensemble
//! stands on; `live` runs it all in the agent.

pub mod alarm;
pub mod baseline;
pub mod calibrate;
pub mod degrade;
pub mod features;
pub mod forest;
pub mod live;
pub mod models;
pub mod outlook;
pub mod pipeline;
pub mod rules;
pub mod shift;
pub mod state;
