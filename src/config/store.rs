//! `[store]`: how often to write, how long to keep, how large the database may grow.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::doc::{Doc, check_flag};
use super::{ConfigError, Overrides};

pub const FLUSH_INTERVAL: Duration = Duration::from_secs(60);
const FLUSH_RANGE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(3600));
pub const RAW_RETENTION_DAYS: u32 = 90;
pub const ROLLUP_RETENTION_DAYS: u32 = 1095;
pub const MAX_DB_MB: u64 = 4096;
pub const JOURNAL_SIZE_LIMIT_MB: u64 = 16;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    #[serde(default, deserialize_with = "super::duration::de_spanned")]
    pub flush_interval: Option<Spanned<Duration>>,
    pub raw_retention_days: Option<Spanned<u32>>,
    pub rollup_retention_days: Option<Spanned<u32>>,
    pub max_db_mb: Option<Spanned<u64>>,
    pub journal_size_limit_mb: Option<Spanned<u64>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub flush_interval: Duration,
    pub raw_retention_days: u32,
    pub rollup_retention_days: u32,
    pub max_db_bytes: u64,
    pub journal_size_limit_bytes: u64,
}

impl StoreConfig {
    pub fn from_raw(st: &RawStore, over: &Overrides, doc: &Doc) -> Result<StoreConfig, ConfigError> {
        let mut flush_interval =
            doc.duration_in(&st.flush_interval, "store.flush_interval", FLUSH_INTERVAL, FLUSH_RANGE)?;
        if let Some(f) = over.flush_interval {
            check_flag("--flush-interval", f, FLUSH_RANGE)?;
            flush_interval = f;
        }
        let raw_days =
            doc.number_in(&st.raw_retention_days, "store.raw_retention_days", RAW_RETENTION_DAYS, (1, 3650))?;
        let rollup_days =
            doc.number_in(&st.rollup_retention_days, "store.rollup_retention_days", ROLLUP_RETENTION_DAYS, (1, 36500))?;
        if rollup_days < raw_days {
            let at = st.rollup_retention_days.as_ref().expect("set, since it differs from the default");
            return Err(doc.invalid(at, "store.rollup_retention_days", format!(
                "must be at least store.raw_retention_days ({raw_days}): rollups are what remains after raw samples expire"
            )));
        }
        let journal =
            doc.number_in(&st.journal_size_limit_mb, "store.journal_size_limit_mb", JOURNAL_SIZE_LIMIT_MB, (1, 1024))?;
        Ok(StoreConfig {
            flush_interval,
            raw_retention_days: raw_days,
            rollup_retention_days: rollup_days,
            max_db_bytes: doc.number_in(&st.max_db_mb, "store.max_db_mb", MAX_DB_MB, (16, 1 << 20))? << 20,
            journal_size_limit_bytes: journal << 20,
        })
    }
}
