//! Gateway placement readings (`wanwatch placement`; the ranking is `crate::placement`).

use rusqlite::params;

use super::{Store, StoreError};
use crate::sample::WallMs;

/// One reading of one radio.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub ts: WallMs,
    pub spot: String,
    pub radio: String,
    pub sinr_db: Option<f64>,
    pub rsrp_dbm: Option<f64>,
    pub rsrq_db: Option<f64>,
    pub bands: String,
}

impl Store {
    pub fn add_placement(&self, rows: &[Row]) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.sql("placement", e))?;
        for r in rows {
            tx.execute(
                "INSERT INTO placement (ts, spot, radio, sinr_db, rsrp_dbm, rsrq_db, bands) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![r.ts, r.spot, r.radio, r.sinr_db, r.rsrp_dbm, r.rsrq_db, r.bands],
            )
            .map_err(|e| self.sql("placement", e))?;
        }
        tx.commit().map_err(|e| self.sql("placement", e))
    }

    /// Every reading since `since`, oldest first (a household tries a handful of spots for a minute each).
    pub fn placement_rows(&self, since: WallMs) -> Result<Vec<Row>, StoreError> {
        self.rows(
            "placement",
            "SELECT ts, spot, radio, sinr_db, rsrp_dbm, rsrq_db, coalesce(bands, '') FROM placement WHERE ts >= ?1 ORDER BY ts",
            [since],
            |r| {
                Ok(Row {
                    ts: r.get(0)?,
                    spot: r.get(1)?,
                    radio: r.get(2)?,
                    sinr_db: r.get(3)?,
                    rsrp_dbm: r.get(4)?,
                    rsrq_db: r.get(5)?,
                    bands: r.get(6)?,
                })
            },
        )
    }
}
