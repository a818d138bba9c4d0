//! [`Checkpointer`]: WAL checkpoints off the commit path.
//!
//! SQLite copies the WAL back into the main file (a checkpoint) by itself
//! at the end of the commit that grows the WAL past `wal_autocheckpoint`
//! pages, on the writing thread, inside the timed write. On a 10M-row
//! table that was 40–60 ms of every 60,000-candle batch. The writer keeps
//! only a far-off automatic checkpoint as a safety net
//! ([`AUTO_CHECKPOINT_PAGES`](crate::database::AUTO_CHECKPOINT_PAGES)),
//! and a connection of its own, on a thread of its own, runs passive
//! checkpoints on a timer: they never wait for the writer or a reader, and
//! the writer never waits for them.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::database::BUSY_TIMEOUT;
use crate::error::StorageError;

/// A connection that only checkpoints the WAL of a database that
/// [`Database::open`](crate::Database::open) created (checkpointing needs
/// a read-write connection; it never writes a row).
#[derive(Debug)]
pub struct Checkpointer {
    conn: Connection,
    path: PathBuf,
}

/// What one passive checkpoint found and did, in WAL frames (pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WalProgress {
    /// Frames in the WAL.
    pub frames: u64,
    /// Frames now copied into the main file; fewer than `frames` while a
    /// reader still uses older ones or the writer is mid-commit (the next
    /// checkpoint goes on from there).
    pub checkpointed: u64,
}

impl Checkpointer {
    /// Opens a checkpointing connection to the database at `path`.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`] when the file does not exist or cannot be
    /// opened read-write.
    pub fn open(path: &Path) -> Result<Checkpointer, StorageError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(StorageError::sqlite("open the checkpointer"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(StorageError::sqlite(
                "open the checkpointer: set busy_timeout",
            ))?;
        Ok(Checkpointer {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Copies as much of the WAL into the main file as it can without
    /// waiting for anyone (`PRAGMA wal_checkpoint(PASSIVE)`).
    ///
    /// # Errors
    /// [`StorageError::Sqlite`] when the checkpoint fails (a full disk, a
    /// failing file).
    pub fn passive(&self) -> Result<WalProgress, StorageError> {
        let (frames, checkpointed): (i64, i64) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((row.get(1)?, row.get(2)?))
            })
            .map_err(StorageError::sqlite("checkpoint the WAL"))?;
        // -1 for both when the database is not in WAL mode: nothing to do.
        Ok(WalProgress {
            frames: u64::try_from(frames).unwrap_or(0),
            checkpointed: u64::try_from(checkpointed).unwrap_or(0),
        })
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CandleQuery, Database};
    use ohlcv_domain::{Candle, ExchangeId, Interval, SeriesKey, Symbol};

    fn candles(count: i64) -> Vec<Candle> {
        let key = SeriesKey::new(
            ExchangeId::Simulated,
            Symbol::new("BTCUSDT").unwrap(),
            Interval::M1,
        );
        (0..count)
            .map(|i| Candle {
                key: key.clone(),
                open_time: i * 60_000,
                open: 1.0 + i as f64,
                high: 2.0 + i as f64,
                low: 0.5,
                close: 1.5,
                volume: 3.0,
                closed: true,
            })
            .collect()
    }

    fn wal_len(path: &Path) -> u64 {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(PathBuf::from(wal)).map_or(0, |m| m.len())
    }

    #[test]
    fn a_passive_checkpoint_copies_what_the_writer_left_in_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ohlcv.db");
        let mut db = Database::open(&path).unwrap();
        let checkpointer = Checkpointer::open(&path).unwrap();
        // Far below the automatic threshold: the writer leaves it all in
        // the WAL.
        let written = candles(20_000);
        db.insert_batch(&written).unwrap();
        let main_before = std::fs::metadata(&path).unwrap().len();
        assert!(wal_len(&path) > 0);

        let progress = checkpointer.passive().unwrap();
        assert!(progress.frames > 0, "{progress:?}");
        assert_eq!(
            progress.checkpointed, progress.frames,
            "nobody was in the way"
        );
        assert!(std::fs::metadata(&path).unwrap().len() > main_before);
        // Nothing left to copy: a second checkpoint finds it all done.
        assert_eq!(checkpointer.passive().unwrap(), progress);
        let all = CandleQuery {
            from: None,
            to: None,
            limit: usize::MAX,
        };
        assert_eq!(db.get_candles(&written[0].key, &all).unwrap(), written);
    }

    #[test]
    fn a_checkpointer_needs_an_existing_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.db");
        assert!(Checkpointer::open(&path).is_err());
        assert!(!path.exists());
    }
}
