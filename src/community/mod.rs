//! Community aggregation, opt-in (`[community] enabled = true`): this home's hourly rollups,
//! anonymised, pushed to a Prometheus remote-write receiver the community runs (VictoriaMetrics,
//! Mimir, Thanos receive, Prometheus), and "your area vs others" asked back of the same engine
//! with PromQL. The engine is the distributed part; nothing here collects for others.
//!
//! What is sent, and nothing else ([`rollup`]): per local hour, pings sent and lost, the median
//! and 95th-percentile latency, minutes measured, outage minutes by kind, speed-test and
//! loaded-latency means, and the 5G band and SINR bucket. Labels: the household's coarse
//! `region`, `carrier`, `tech`, a random `install` id (rotatable) and the local `hour`; every
//! value passes [`labels::safe`] (never an address, host name, MAC, cell id or long number).

pub mod labels;
pub mod push;
pub mod query;
pub mod remote_write;
pub mod rollup;
