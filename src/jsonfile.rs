//! Small state files next to the database (a fitted forest, the notification queue), written
//! atomically: a temporary file renamed over the old one, so a power cut leaves the old file or
//! the new one, never half of either.

use std::path::{Path, PathBuf};

use serde::Serialize;

pub fn save<T: Serialize>(value: &T, path: &Path) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let json = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

/// Why a state file could not be read back (the caller starts afresh and says so).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: {err}", path.display())]
    Read { path: PathBuf, err: std::io::Error },
    #[error("{}: not {what} ({err})", path.display())]
    Parse { path: PathBuf, what: &'static str, err: serde_json::Error },
}

/// Read a file `save` wrote; `what` names its content for the error ("a saved forest").
pub fn load<T: serde::de::DeserializeOwned>(path: &Path, what: &'static str) -> Result<T, LoadError> {
    let bytes = std::fs::read(path).map_err(|err| LoadError::Read { path: path.to_path_buf(), err })?;
    serde_json::from_slice(&bytes).map_err(|err| LoadError::Parse { path: path.to_path_buf(), what, err })
}
