//! The rescue file: where queued candles go when the database refuses the
//! final write at shutdown, and where they come back from at the next start.
//!
//! A process that must exit while its database is locked or failing would
//! otherwise lose every candle still queued. Instead they are appended, one
//! JSON object per line, to `<database>.rescue.jsonl` (fsynced), and
//! [`import`] writes them into the database before anything else runs at the
//! next start. A line that cannot be read back is never dropped silently:
//! the file is then kept, renamed `…rescue.jsonl.rejected`, for a human.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use ohlcv_domain::Candle;

use crate::{Database, StorageError};

/// The rescue file of the database at `database`.
pub fn path_for(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_os_string();
    name.push(".rescue.jsonl");
    PathBuf::from(name)
}

/// Appends `candles` to the rescue file of `database` and fsyncs it.
///
/// # Errors
/// The I/O error if the file cannot be written; the caller then has
/// nowhere left to put the candles and must say so.
pub fn write(database: &Path, candles: &[Candle]) -> Result<PathBuf, StorageError> {
    let path = path_for(database);
    let io = |source| StorageError::Io {
        op: "write the rescue file",
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    let mut text = String::new();
    for candle in candles {
        // A candle of plain fields and validated strings always serialises.
        text.push_str(&serde_json::to_string(candle).unwrap_or_default());
        text.push('\n');
    }
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(path)
}

/// What [`import`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Candles written into the database.
    pub candles: usize,
    /// Lines that could not be read; non-zero means the file was kept as
    /// `…rescue.jsonl.rejected`.
    pub rejected_lines: usize,
}

/// Writes the candles of the rescue file of `db` into it, in one
/// transaction, then removes the file. Without a rescue file, does nothing.
///
/// # Errors
/// [`StorageError`] if the file cannot be read or the write fails; the file
/// is then left in place for the next attempt.
pub fn import(db: &mut Database) -> Result<Imported, StorageError> {
    let path = path_for(db.path());
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Imported::default()),
        Err(source) => {
            return Err(StorageError::Io {
                op: "open the rescue file",
                path,
                source,
            })
        }
    };
    let mut candles = Vec::new();
    let mut rejected_lines = 0;
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
            Ok(candle) if candle.validate().is_ok() => candles.push(candle),
            _ => rejected_lines += 1,
        }
    }
    let written = db.insert_batch(&candles)?;
    let done = if rejected_lines == 0 {
        fs::remove_file(&path)
    } else {
        let mut kept = path.as_os_str().to_os_string();
        kept.push(".rejected");
        fs::rename(&path, PathBuf::from(kept))
    };
    done.map_err(|source| StorageError::Io {
        op: "retire the rescue file",
        path,
        source,
    })?;
    Ok(Imported {
        candles: written,
        rejected_lines,
    })
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
        write(&path, &batch[..2]).unwrap();
        write(&path, &batch[2..]).unwrap();
        assert!(path_for(&path).exists());

        let mut db = Database::open(&path).unwrap();
        let imported = import(&mut db).unwrap();
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
        assert_eq!(
            import(&mut db).unwrap(),
            Imported::default(),
            "nothing left to import"
        );
    }

    #[test]
    fn unreadable_lines_keep_the_file_for_a_human() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ohlcv.db");
        write(&path, &[candle(0)]).unwrap();
        let mut file = OpenOptions::new()
            .append(true)
            .open(path_for(&path))
            .unwrap();
        file.write_all(b"{\"not\": \"a candle\"}\n").unwrap();
        drop(file);

        let mut db = Database::open(&path).unwrap();
        let imported = import(&mut db).unwrap();
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
}
