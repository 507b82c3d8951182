//! Small state files next to the database (a fitted forest, the notification queue), written
//! atomically: a temporary file renamed over the old one, so a power cut leaves the old file or
//! the new one, never half of either.

use std::path::Path;

use serde::Serialize;

pub fn save<T: Serialize>(value: &T, path: &Path) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let json = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

/// Read a file `save` wrote; `what` names its content for the error ("a saved forest").
pub fn load<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: not {what} ({e})", path.display()))
}
