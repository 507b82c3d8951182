//! Detectors: what the samples mean. For now the connection state machine (outages by plain
//! rules); the learned detectors join it here.

pub mod state;
