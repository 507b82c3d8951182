//! SQLite's WAL index (`<db>-shm`) in RAM instead of on the SD card.
//!
//! The index is scratch memory that every connection maps and rewrites at each commit: its
//! header page and a few hash-table pages. On a disk file those dirty pages are written back too,
//! and they were most of the agent's writes (measured: 34 of 40 KB per minute's commit went to
//! 4 KiB pages, 20 of them the index's). Its content is rebuilt from the WAL whenever no
//! connection has it open, so it never needs to survive a power cut.
//!
//! [`keep_in_ram`] bind-mounts a tmpfs file over `<db>-shm` in the host's mount namespace
//! (the packaged unit runs `wanwatch shm-in-ram` as root before the agent starts). Every SQLite
//! on the machine still opens the same path, so the agent, `wanwatch export` over ssh and a
//! stock `sqlite3` all share one index, as SQLite's locking needs; nothing is compiled
//! differently (SQLITE_SHM_DIRECTORY would split the index between builds and corrupt).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// statfs(2)'s f_type for tmpfs and ramfs.
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// Where the RAM copies live: a tmpfs every Linux has.
pub const RAM_DIR: &str = "/dev/shm";

#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: io::Error },
    #[error("{dir} is not a tmpfs (a RAM file system), so the index would still be written to disk")]
    NotRam { dir: PathBuf },
    #[error(
        "{shm} is open in another program (a running agent, export or sqlite3): moving the index \
         under it would split it; stop them, then run this again"
    )]
    InUse { shm: PathBuf },
    #[error("mounting {source_file} over {shm} needs root (CAP_SYS_ADMIN): {err}")]
    Mount { source_file: PathBuf, shm: PathBuf, err: io::Error },
}

/// What [`keep_in_ram`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It was already in RAM (mounted before, or the database itself is on a tmpfs).
    Already,
    /// Now mounted from this RAM file.
    Mounted(PathBuf),
}

/// The WAL index's path for `db`: SQLite's own naming.
pub fn shm_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-shm");
    PathBuf::from(s)
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ShmError + '_ {
    move |err| ShmError::Io { path: path.to_path_buf(), err }
}

fn fs_type(path: &Path) -> io::Result<i64> {
    let c = super::c_path(path)?;
    // SAFETY: a valid C path and a zeroed struct for the kernel to fill.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64)
}

/// Is `path` on a RAM file system?
pub fn in_ram(path: &Path) -> bool {
    fs_type(path).is_ok_and(|t| t == TMPFS_MAGIC || t == RAMFS_MAGIC)
}

/// Does any process hold an SQLite lock on this index? SQLite keeps a shared lock on the
/// "dead man switch" byte (offset 128) for as long as a connection has the index open.
fn in_use(file: &File) -> io::Result<bool> {
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = 120;
    lock.l_len = 9;
    // SAFETY: a valid descriptor and lock description; F_GETLK only reads and fills it.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}

/// Put `db`'s WAL index in RAM, in `ram_dir` (a tmpfs; [`RAM_DIR`] on the appliance): an empty
/// `<db>-shm` is made if missing, owned like the database's folder, and a RAM file bind-mounted
/// over it. Idempotent; refuses while any connection has the index open.
pub fn keep_in_ram(db: &Path, ram_dir: &Path) -> Result<Outcome, ShmError> {
    let shm = shm_path(db);
    let folder = super::folder_of(db);
    let owner = std::fs::metadata(folder).map_err(io_err(folder))?;
    if shm.exists() && in_ram(&shm) {
        return Ok(Outcome::Already);
    }
    if !in_ram(ram_dir) {
        return Err(ShmError::NotRam { dir: ram_dir.to_path_buf() });
    }
    let make = |path: &Path| -> Result<File, ShmError> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io_err(path))?;
        std::os::unix::fs::fchown(&f, Some(owner.uid()), Some(owner.gid())).map_err(io_err(path))?;
        Ok(f)
    };
    let target = make(&shm)?;
    if in_use(&target).map_err(io_err(&shm))? {
        return Err(ShmError::InUse { shm });
    }
    // Named by the database's folder and name, so two databases never share one.
    let meta = target.metadata().map_err(io_err(&shm))?;
    let source = ram_dir.join(format!("wanwatch-{:x}-{:x}.shm", meta.dev(), meta.ino()));
    let ram = make(&source)?;
    ram.set_len(0).map_err(io_err(&source))?;
    let (src, dst) = (super::c_path(&source).map_err(io_err(&source))?, super::c_path(&shm).map_err(io_err(&shm))?);
    // SAFETY: valid C strings; a plain bind mount with no data.
    let rc = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        let _ = std::fs::remove_file(&source);
        return Err(ShmError::Mount { source_file: source, shm, err });
    }
    Ok(Outcome::Mounted(source))
}

/// Undo [`keep_in_ram`] (for tests): unmount and remove the RAM file.
pub fn release(db: &Path, source: &Path) -> io::Result<()> {
    let dst = super::c_path(&shm_path(db))?;
    // SAFETY: a valid C path.
    if unsafe { libc::umount2(dst.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error());
    }
    std::fs::remove_file(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_named_as_sqlite_names_it() {
        assert_eq!(
            shm_path(Path::new("/var/lib/wanwatch/wanwatch.db")),
            Path::new("/var/lib/wanwatch/wanwatch.db-shm")
        );
    }

    #[test]
    fn a_disk_folder_is_not_ram() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        if in_ram(dir.path()) {
            eprintln!("skipped: the build folder is itself on a tmpfs");
            return;
        }
        let err = keep_in_ram(&dir.path().join("w.db"), dir.path()).unwrap_err();
        assert!(matches!(err, ShmError::NotRam { .. }), "{err}");
    }
}
