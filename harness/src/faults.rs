//! Faults the harness causes from outside the collector: another process
//! holding the database's write lock, and a file-size limit that makes
//! the disk look full.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use crate::HarnessError;

/// How long taking the lock may wait for a write of the collector in
/// progress (its batches take milliseconds).
const LOCK_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The write lock of a SQLite database, held by this process as another
/// program (a backup tool, an `sqlite3` shell) would hold it.
///
/// In WAL mode readers never block and are never blocked; `BEGIN
/// EXCLUSIVE` takes the one write lock, so every write of the collector
/// fails with `SQLITE_BUSY` after its busy timeout until it is released.
pub struct DatabaseLock {
    connection: Connection,
    path: PathBuf,
}

impl DatabaseLock {
    /// Opens the database at `path` and takes its write lock.
    ///
    /// # Errors
    /// [`HarnessError::Database`] when the file cannot be opened or locked.
    pub fn acquire(path: &Path) -> Result<DatabaseLock, HarnessError> {
        let connection = Connection::open(path).map_err(HarnessError::database(path))?;
        connection
            .busy_timeout(LOCK_BUSY_TIMEOUT)
            .map_err(HarnessError::database(path))?;
        connection
            .execute_batch("BEGIN EXCLUSIVE")
            .map_err(HarnessError::database(path))?;
        Ok(DatabaseLock {
            connection,
            path: path.to_path_buf(),
        })
    }

    /// Ends the transaction (nothing was written) and closes the file.
    ///
    /// # Errors
    /// [`HarnessError::Database`] when the rollback fails.
    pub fn release(self) -> Result<(), HarnessError> {
        self.connection
            .execute_batch("ROLLBACK")
            .map_err(HarnessError::database(&self.path))
    }
}

/// A lowered `RLIMIT_FSIZE` soft limit on another process, restored by
/// [`FileSizeLimit::restore`] (or on drop).
///
/// `RLIMIT_FSIZE` caps the offset any write of the process may reach in
/// any regular file: a write past it fails with `EFBIG`, which SQLite
/// reports as "database or disk is full", as on a full disk. The kernel
/// also sends `SIGXFSZ`, whose default action kills the process: a
/// collector meant to survive a full disk has to ignore it.
///
/// Unlike a full disk, the limit also refuses rewrites of space a file
/// already has past the offset; that is what makes it bite at once: SQLite
/// appends to its WAL from the start again after each checkpoint, and a
/// checkpoint rewrites database pages in place, so a limit just above the
/// files' current sizes may not be reached for a long time.
pub struct FileSizeLimit {
    pid: libc::pid_t,
    previous: libc::rlimit,
    restored: bool,
}

impl FileSizeLimit {
    /// Sets the soft `RLIMIT_FSIZE` of process `pid` to `bytes` (the hard
    /// limit is kept).
    ///
    /// # Errors
    /// [`HarnessError::Io`] when the limit cannot be read or set (no such
    /// process, or not ours).
    pub fn set(pid: u32, bytes: u64) -> Result<FileSizeLimit, HarnessError> {
        let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
        let previous = prlimit(pid, None)?;
        let limit = libc::rlimit {
            rlim_cur: bytes.min(previous.rlim_max),
            rlim_max: previous.rlim_max,
        };
        prlimit(pid, Some(&limit))?;
        Ok(FileSizeLimit {
            pid,
            previous,
            restored: false,
        })
    }

    /// Puts the previous limit back.
    ///
    /// # Errors
    /// [`HarnessError::Io`] when it cannot (the process is gone).
    pub fn restore(mut self) -> Result<(), HarnessError> {
        self.restored = true;
        prlimit(self.pid, Some(&self.previous)).map(|_| ())
    }
}

impl Drop for FileSizeLimit {
    fn drop(&mut self) {
        if !self.restored {
            let _ = prlimit(self.pid, Some(&self.previous));
        }
    }
}

/// `prlimit(2)` on `RLIMIT_FSIZE` of `pid`: sets `new` if given, answers
/// the limit before.
fn prlimit(pid: libc::pid_t, new: Option<&libc::rlimit>) -> Result<libc::rlimit, HarnessError> {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let new_ptr = new.map_or(std::ptr::null(), |limit| limit as *const libc::rlimit);
    // SAFETY: both pointers are valid for the call (`new_ptr` may be null,
    // which prlimit(2) allows) and the kernel writes only `old`.
    let result = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, new_ptr, &mut old) };
    if result == 0 {
        Ok(old)
    } else {
        Err(HarnessError::Io {
            what: format!("prlimit(RLIMIT_FSIZE) on process {pid}"),
            source: std::io::Error::last_os_error(),
        })
    }
}

/// Sizes in bytes of the database file and of its `-wal` (0 when absent).
///
/// # Errors
/// [`HarnessError::Io`] when the database file cannot be read.
pub fn database_sizes(path: &Path) -> Result<(u64, u64), HarnessError> {
    let main = std::fs::metadata(path)
        .map_err(HarnessError::io(format!(
            "reading the size of {}",
            path.display()
        )))?
        .len();
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = std::fs::metadata(PathBuf::from(wal)).map_or(0, |m| m.len());
    Ok((main, wal))
}
