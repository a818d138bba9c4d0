//! The rescue file: where candles go when the database cannot take them,
//! and where they come back from.
//!
//! A process that must exit while its database is locked or failing would
//! otherwise lose every candle still queued, and one that keeps running
//! through a long outage would otherwise grow its queue without bound.
//! Instead closed candles are appended, one JSON object per line, to
//! `<database>.rescue.jsonl` (fsynced), and [`RescueFile::replay_into`]
//! writes them into the database as soon as it takes writes again: at the
//! next start, and after a failing database recovers. A line that cannot be
//! read back is never dropped silently: the file is then kept, renamed
//! `…rescue.jsonl.rejected`, for a human.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ohlcv_domain::Candle;

use crate::{Database, StorageError};

/// Candles written per transaction when a rescue file is replayed, so that
/// replaying a large file needs no more memory than one batch.
const REPLAY_CHUNK: usize = 10_000;

/// The rescue file of database `database`.
pub fn path_for(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_os_string();
    name.push(".rescue.jsonl");
    PathBuf::from(name)
}

/// The rescue file of one database, shared by everyone who may put candles
/// into it (the storage thread, datasources whose hand-over is full, the
/// supervisor at shutdown). Cheap to clone; appends and replays are
/// serialised, so a replay never misses a line appended meanwhile.
#[derive(Clone, Debug)]
pub struct RescueFile {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// Held while appending or replaying.
    lock: Mutex<()>,
    /// Whether the file may hold candles not yet replayed.
    pending: AtomicBool,
}

impl RescueFile {
    /// The rescue file of the database at `database`; pending if a previous
    /// run left one.
    pub fn for_database(database: &Path) -> Self {
        let path = path_for(database);
        let pending = path.exists();
        RescueFile {
            inner: Arc::new(Inner {
                path,
                lock: Mutex::new(()),
                pending: AtomicBool::new(pending),
            }),
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether candles wait in the file for [`RescueFile::replay_into`].
    pub fn is_pending(&self) -> bool {
        self.inner.pending.load(Ordering::Acquire)
    }

    /// Appends `candles` and fsyncs the file: when this answers `Ok`, they
    /// survive a crash of the process and of the machine.
    ///
    /// All or nothing: on failure (a full disk, a file-size limit) the file
    /// is cut back to what it held before, so no half-written line is left,
    /// and a file created by this call is removed.
    ///
    /// # Errors
    /// The I/O error; the caller still holds the candles and must keep them
    /// or say they are lost.
    pub fn append(&self, candles: &[Candle]) -> Result<(), StorageError> {
        if candles.is_empty() {
            return Ok(());
        }
        let _held = self.lock();
        let path = &self.inner.path;
        let io = |source| StorageError::Io {
            op: "write the rescue file",
            path: path.clone(),
            source,
        };
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let before = file.metadata().map_err(io)?.len();
        let mut text = String::with_capacity(candles.len() * 160);
        for candle in candles {
            // A candle of plain fields and validated strings always serialises.
            text.push_str(&serde_json::to_string(candle).unwrap_or_default());
            text.push('\n');
        }
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(source) = written {
            if existed {
                let _ = file.set_len(before).and_then(|()| file.sync_all());
            } else {
                drop(file);
                let _ = fs::remove_file(path);
            }
            return Err(io(source));
        }
        self.inner.pending.store(true, Ordering::Release);
        Ok(())
    }

    /// Writes the candles of the file into `db`, a chunk per transaction,
    /// then removes the file. Without a file, does nothing.
    ///
    /// Upserts make a replay idempotent: one cut short (the database fails
    /// again midway) leaves the file in place and is simply done again.
    ///
    /// # Errors
    /// [`StorageError`] if the file cannot be read or a write fails; the file
    /// is then left in place for the next attempt.
    pub fn replay_into(&self, db: &mut Database) -> Result<Imported, StorageError> {
        let _held = self.lock();
        let path = &self.inner.path;
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.inner.pending.store(false, Ordering::Release);
                return Ok(Imported::default());
            }
            Err(source) => {
                return Err(StorageError::Io {
                    op: "open the rescue file",
                    path: path.clone(),
                    source,
                })
            }
        };
        let mut imported = Imported::default();
        let mut chunk = Vec::with_capacity(REPLAY_CHUNK);
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|source| StorageError::Io {
                op: "read the rescue file",
                path: path.clone(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Candle>(&line) {
                Ok(candle) if candle.validate().is_ok() => chunk.push(candle),
                _ => imported.rejected_lines += 1,
            }
            if chunk.len() == REPLAY_CHUNK {
                imported.candles += db.insert_batch(&chunk)?;
                chunk.clear();
            }
        }
        imported.candles += db.insert_batch(&chunk)?;
        let done = if imported.rejected_lines == 0 {
            fs::remove_file(path)
        } else {
            let mut kept = path.as_os_str().to_os_string();
            kept.push(".rejected");
            fs::rename(path, PathBuf::from(kept))
        };
        done.map_err(|source| StorageError::Io {
            op: "retire the rescue file",
            path: path.clone(),
            source,
        })?;
        self.inner.pending.store(false, Ordering::Release);
        Ok(imported)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// What [`RescueFile::replay_into`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Candles written into the database.
    pub candles: usize,
    /// Lines that could not be read; non-zero means the file was kept as
    /// `…rescue.jsonl.rejected`.
    pub rejected_lines: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CandleQuery;
    use ohlcv_domain::{ExchangeId, Interval, SeriesKey, Symbol};

    fn candle(minute: i64) -> Candle {
        Candle {
            key: SeriesKey::new(
                ExchangeId::Simulated,
                Symbol::new("BTCUSDT").unwrap(),
                Interval::M1,
            ),
            open_time: 1_704_067_200_000 + minute * 60_000,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close: 1.5,
            volume: 3.0,
            closed: minute < 2,
        }
    }

    #[test]
    fn rescued_candles_come_back_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ohlcv.db");
        let batch: Vec<_> = (0..3).map(candle).collect();
        let rescue = RescueFile::for_database(&path);
        assert!(!rescue.is_pending());
        rescue.append(&batch[..2]).unwrap();
        rescue.append(&batch[2..]).unwrap();
        assert!(path_for(&path).exists());
        assert!(
            RescueFile::for_database(&path).is_pending(),
            "a new run sees the file"
        );

        let mut db = Database::open(&path).unwrap();
        let imported = rescue.replay_into(&mut db).unwrap();
        assert_eq!(
            imported,
            Imported {
                candles: 3,
                rejected_lines: 0
            }
        );
        assert!(
            !path_for(&path).exists(),
            "the file is retired once imported"
        );
        let all = CandleQuery {
            from: None,
            to: None,
            limit: 10,
        };
        assert_eq!(db.get_candles(&batch[0].key, &all).unwrap(), batch);
        assert!(!rescue.is_pending());
        assert_eq!(
            rescue.replay_into(&mut db).unwrap(),
            Imported::default(),
            "nothing left to import"
        );
    }

    #[test]
    fn unreadable_lines_keep_the_file_for_a_human() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ohlcv.db");
        let rescue = RescueFile::for_database(&path);
        rescue.append(&[candle(0)]).unwrap();
        let mut file = OpenOptions::new()
            .append(true)
            .open(path_for(&path))
            .unwrap();
        file.write_all(b"{\"not\": \"a candle\"}\n").unwrap();
        drop(file);

        let mut db = Database::open(&path).unwrap();
        let imported = rescue.replay_into(&mut db).unwrap();
        assert_eq!(
            imported,
            Imported {
                candles: 1,
                rejected_lines: 1
            }
        );
        assert!(!path_for(&path).exists());
        let mut kept = path_for(&path).into_os_string();
        kept.push(".rejected");
        assert!(PathBuf::from(kept).exists());
    }

    #[test]
    fn a_failed_append_is_an_error_and_leaves_nothing_pending() {
        // /dev/full fails every write with ENOSPC, as a full disk does.
        let full = RescueFile {
            inner: Arc::new(Inner {
                path: PathBuf::from("/dev/full"),
                lock: Mutex::new(()),
                pending: AtomicBool::new(false),
            }),
        };
        let error = full
            .append(&[candle(1)])
            .expect_err("a full device refuses");
        assert!(error.to_string().contains("rescue file"), "{error}");
        assert!(!full.is_pending());
    }

    #[test]
    fn a_replay_larger_than_a_chunk_writes_every_candle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ohlcv.db");
        let rescue = RescueFile::for_database(&path);
        let batch: Vec<_> = (0..(REPLAY_CHUNK as i64 + 5)).map(candle).collect();
        rescue.append(&batch).unwrap();
        let mut db = Database::open(&path).unwrap();
        let imported = rescue.replay_into(&mut db).unwrap();
        assert_eq!(imported.candles, batch.len());
        let all = CandleQuery {
            from: None,
            to: None,
            limit: usize::MAX,
        };
        assert_eq!(
            db.get_candles(&batch[0].key, &all).unwrap().len(),
            batch.len()
        );
    }
}
