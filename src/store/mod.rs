//! The SQLite database: one file holds every sample, rollup, outage and event.
//!
//! WAL mode so `status` and `export` read while the agent writes; batched transactions and a
//! clustered samples table so an SD card sees few page writes; schema versioned with
//! `PRAGMA user_version`.

pub mod export;
pub mod lock;
pub mod pings;
pub mod placement;
pub mod query;
pub mod read;
pub mod retention;
pub mod rollup;
mod schema;
pub mod shm;
pub mod writer;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

pub use schema::SCHEMA_VERSION;

/// The SQLite error is said in each message and not chained as a `source` as well: `{:#}` would
/// print it two or three times over ("file is not a database: ... file is not a database").
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {err}")]
    Open { path: PathBuf, err: rusqlite::Error },
    #[error(
        "database {path} is not a wanwatch SQLite database or is corrupt ({err}); \
         move it aside and wanwatch will start a new one"
    )]
    Corrupt { path: PathBuf, err: rusqlite::Error },
    #[error("database {path} has schema version {found}, newer than this wanwatch knows ({known}); upgrade wanwatch")]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error("database {path}: {op}: {err}")]
    Sql { path: PathBuf, op: &'static str, err: rusqlite::Error },
    #[error(
        "{path} is another application's SQLite database (tables: {tables}); wanwatch will not add \
         its own tables to it: pass --db with a new file"
    )]
    Foreign { path: PathBuf, tables: String },
    #[error(
        "database {path} is on a read-only file system: the agent cannot record there (status, \
         export and report still read it); remount it read-write or pass another --db"
    )]
    ReadOnly { path: PathBuf },
    #[error("database {path} does not exist (has `wanwatch run` written it yet? pass --db)")]
    Missing { path: PathBuf },
}

/// The folder a file is in: "." for a bare file name (whose `parent()` is "").
pub(crate) fn folder_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// A path as a C string, for libc calls.
pub(crate) fn c_path(path: &Path) -> std::io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

/// The file system holding `path` (or, for a file not made yet, its folder): statvfs(3).
pub(crate) fn fs_stats(path: &Path) -> Option<libc::statvfs> {
    let probe = if path.exists() { path } else { folder_of(path) };
    let c = c_path(probe).ok()?;
    // SAFETY: a valid path and a zeroed struct for the kernel to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0).then_some(st)
}

/// Is that file system mounted read-only?
fn on_read_only_fs(path: &Path) -> bool {
    fs_stats(path).is_some_and(|st| st.f_flag & libc::ST_RDONLY != 0)
}

/// An open, migrated database.
pub struct Store {
    conn: Connection,
    pub path: PathBuf,
}

impl Store {
    /// Open (creating if needed) for the agent: WAL, migrations applied.
    pub fn open(path: &Path, journal_size_limit: u64) -> Result<Store, StoreError> {
        if on_read_only_fs(path) {
            return Err(StoreError::ReadOnly { path: path.to_path_buf() });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|err| StoreError::Open { path: path.to_path_buf(), err })?;
        let store = Store { conn, path: path.to_path_buf() };
        schema::refuse_foreign(&store)?;
        store.configure(journal_size_limit)?;
        schema::migrate(&store)?;
        schema::convert_samples(&store, None)?;
        Ok(store)
    }

    /// A new database with the schema an older wanwatch (`version`) made, no conversions run:
    /// for the tests of migrations.
    #[doc(hidden)]
    pub fn create_at_version(path: &Path, version: i64) -> Result<Store, StoreError> {
        let conn = Connection::open(path).map_err(|err| StoreError::Open { path: path.to_path_buf(), err })?;
        let store = Store { conn, path: path.to_path_buf() };
        store.configure(1 << 20)?;
        schema::migrate_to(&store, version)?;
        Ok(store)
    }

    /// Open an existing database read-only, for `status` and `export`.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing { path: path.to_path_buf() });
        }
        // On a read-only file system SQLite cannot make the WAL's shared-memory file, and a
        // healthy database would read as broken: nothing can write it there, so it is opened
        // as immutable.
        let conn = if on_read_only_fs(path) {
            let uri =
                format!("file:{}?immutable=1", path.display().to_string().replace('?', "%3f").replace('#', "%23"));
            Connection::open_with_flags(
                uri,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
            )
        } else {
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        }
        .map_err(|err| StoreError::Open { path: path.to_path_buf(), err })?;
        let store = Store { conn, path: path.to_path_buf() };
        store.conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| store.sql("busy_timeout", e))?;
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|err| StoreError::Corrupt { path: path.to_path_buf(), err })?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path: path.to_path_buf(), found: version, known: SCHEMA_VERSION });
        }
        if version == 0 {
            return Err(StoreError::Corrupt { path: path.to_path_buf(), err: rusqlite::Error::InvalidQuery });
        }
        Ok(store)
    }

    fn configure(&self, journal_size_limit: u64) -> Result<(), StoreError> {
        // The first statement is where a non-database file shows itself.
        let pages: i64 = self
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(|err| StoreError::Corrupt { path: self.path.clone(), err })?;
        if pages == 0 {
            // A new file. Must come before WAL mode and the first table: lets the size cap hand
            // pages back to the filesystem.
            // 1 KiB pages: a flush appends a few pages to the WAL, and smaller pages mean fewer
            // bytes written to the SD card per flush (measured: about 4x less than 4 KiB).
            self.conn
                .execute_batch("PRAGMA page_size = 1024; PRAGMA auto_vacuum = INCREMENTAL;")
                .map_err(|e| self.sql("page_size", e))?;
        }
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|err| StoreError::Corrupt { path: self.path.clone(), err })?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(db = %self.path.display(), mode, "WAL mode not available, using {mode}");
        }
        self.conn
            .execute_batch(&format!(
                // NORMAL is safe in WAL mode: a crash loses at most the last transactions, never
                // consistency, and commits need no fsync (the SD card thanks us).
                "PRAGMA synchronous = NORMAL;
                 PRAGMA journal_size_limit = {journal_size_limit};
                 PRAGMA foreign_keys = ON;
                 PRAGMA temp_store = MEMORY;"
            ))
            .map_err(|e| self.sql("configure", e))?;
        self.conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| self.sql("busy_timeout", e))?;
        Ok(())
    }

    pub(crate) fn sql(&self, op: &'static str, source: rusqlite::Error) -> StoreError {
        StoreError::Sql { path: self.path.clone(), op, err: source }
    }

    /// Bytes the database occupies (not counting free pages, which SQLite reuses).
    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        let (pages, free, size): (i64, i64, i64) = self
            .conn
            .query_row(
                "SELECT (SELECT page_count FROM pragma_page_count), (SELECT freelist_count FROM pragma_freelist_count), (SELECT page_size FROM pragma_page_size)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| self.sql("page count", e))?;
        Ok(((pages - free) * size) as u64)
    }

    /// Add one target's pings straight to the store, in one transaction, rollups untouched: for
    /// tests and benchmarks that fill a database faster than the agent would.
    pub fn insert_pings(&self, target: i64, pings: Vec<pings::Ping>) -> Result<(), StoreError> {
        let write = || -> rusqlite::Result<()> {
            let tx = self.conn.unchecked_transaction()?;
            pings::merge(&self.conn, target, pings)?;
            tx.commit()
        };
        write().map_err(|e| self.sql("insert pings", e))
    }

    /// `PRAGMA integrity_check`, "ok" when healthy.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(|e| self.sql("integrity_check", e))
    }
}
