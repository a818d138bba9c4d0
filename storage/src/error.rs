//! [`StorageError`]: everything that can go wrong in the candle store, and
//! whether the caller should keep its data and try again.
//!
//! A variant that wraps another error keeps it as its `#[source]` and out
//! of its own message; print a `StorageError` with [`ErrorChain`] so that
//! the reason appears, once.

use std::path::PathBuf;

#[cfg(doc)]
use ohlcv_domain::ErrorChain;
use ohlcv_domain::SeriesKey;
use rusqlite::ErrorCode;

/// An error of the storage layer.
///
/// The storage thread decides what to do with a failed write from
/// [`StorageError::is_retryable`]: a retryable error means "the database is
/// busy or temporarily failing, keep the queued candles and try again later";
/// anything else is a fault that retrying will not fix.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// SQLite refused or failed an operation. `op` says what we were doing,
    /// so a log line reads "insert_batch: database is locked" instead of
    /// a bare SQLite message. The message is `op` alone; the SQLite error
    /// is the source, printed after it by [`ErrorChain`].
    #[error("{op}")]
    Sqlite {
        /// The operation that failed (`"insert_batch"`, `"open: enable WAL"`, …).
        op: &'static str,
        /// The SQLite error, with its result code.
        #[source]
        source: rusqlite::Error,
    },

    /// A file-system operation around the database failed (creating its
    /// directory, reading its size). The OS error is the source, printed
    /// after the message by [`ErrorChain`].
    #[error("{op} {}", path.display())]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },

    /// The file was written by a newer build of the collector. It is left
    /// untouched: migrating it down could lose data the newer build relies on.
    #[error(
        "the database has schema version {found}, newer than version {supported} which this \
         build supports; it was left untouched (upgrade the collector or choose another \
         database_path)"
    )]
    NewerSchema {
        /// `PRAGMA user_version` of the file.
        found: i64,
        /// [`crate::SCHEMA_VERSION`] of this build.
        supported: i64,
    },

    /// The file is not a collector database (not SQLite at all, another
    /// application's database, or one holding tables we do not know). It is
    /// left byte-for-byte untouched, because `database_path` pointing at the
    /// wrong file must never damage that file.
    #[error("{reason}; it was left untouched (choose another database_path)")]
    Foreign {
        /// What gave the file away, naming the path and the offending object.
        reason: String,
    },

    /// A row in the database cannot be turned into domain types (an unknown
    /// exchange string, an invalid symbol, a wrongly typed column). Only
    /// possible if something other than this crate wrote to the file.
    #[error("stored row {row} cannot be read: {reason}")]
    BadRow {
        /// Which row: table and identifying values.
        row: String,
        /// Why it does not parse.
        reason: String,
    },

    /// A candle that cannot be stored faithfully (a NaN or infinite price
    /// would be stored as NULL or read back as garbage), refused before
    /// touching the database.
    #[error("candle {key} at {open_time} cannot be stored: {reason}")]
    InvalidCandle {
        /// The candle's series.
        key: SeriesKey,
        /// The candle's open time, UTC ms.
        open_time: i64,
        /// Which field is wrong.
        reason: String,
    },

    /// An exchange hole that cannot be recorded: its range is empty
    /// (`from` after `to`), refused before touching the database.
    #[error("exchange hole {key} from {from} to {to} cannot be recorded: {reason}")]
    InvalidHole {
        /// The hole's series.
        key: SeriesKey,
        /// First missing open time, UTC ms.
        from: i64,
        /// Last missing open time, UTC ms.
        to: i64,
        /// What is wrong with the range.
        reason: String,
    },
}

impl StorageError {
    /// Whether the failed operation may succeed if retried later with the
    /// same data.
    ///
    /// True for a busy or locked database (another connection holds the write
    /// lock), a full disk and SQLite I/O errors: all conditions that an
    /// operator or time can clear. The storage thread keeps its queue and
    /// retries with backoff on these. False for everything else (schema
    /// refusals, bad rows, constraint violations, misuse), where retrying
    /// would only repeat the failure.
    pub fn is_retryable(&self) -> bool {
        match self {
            StorageError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(
                    ErrorCode::DatabaseBusy
                        | ErrorCode::DatabaseLocked
                        | ErrorCode::DiskFull
                        | ErrorCode::SystemIoFailure
                )
            ),
            StorageError::Io { .. }
            | StorageError::NewerSchema { .. }
            | StorageError::Foreign { .. }
            | StorageError::BadRow { .. }
            | StorageError::InvalidCandle { .. }
            | StorageError::InvalidHole { .. } => false,
        }
    }

    /// Builds a closure that wraps a rusqlite error with the operation name,
    /// for `map_err(StorageError::sqlite("…"))`.
    pub(crate) fn sqlite(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StorageError {
        move |source| StorageError::Sqlite { op, source }
    }

    /// Builds a closure that wraps an I/O error with the operation and path.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> StorageError {
        let path = path.into();
        move |source| StorageError::Io { op, path, source }
    }
}

#[cfg(test)]
mod tests {
    use ohlcv_domain::ErrorChain;

    use super::*;

    fn sqlite_failure(code: i32) -> StorageError {
        StorageError::Sqlite {
            op: "test",
            source: rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None),
        }
    }

    #[test]
    fn busy_locked_full_and_ioerr_are_retryable_the_rest_are_not() {
        use rusqlite::ffi;
        for code in [
            ffi::SQLITE_BUSY,
            ffi::SQLITE_LOCKED,
            ffi::SQLITE_FULL,
            ffi::SQLITE_IOERR,
            ffi::SQLITE_IOERR_WRITE,
            ffi::SQLITE_BUSY_SNAPSHOT,
        ] {
            assert!(sqlite_failure(code).is_retryable(), "code {code}");
        }
        for code in [
            ffi::SQLITE_CONSTRAINT,
            ffi::SQLITE_CORRUPT,
            ffi::SQLITE_NOTADB,
            ffi::SQLITE_READONLY,
            ffi::SQLITE_CANTOPEN,
        ] {
            assert!(!sqlite_failure(code).is_retryable(), "code {code}");
        }
        assert!(!StorageError::NewerSchema {
            found: 2,
            supported: 1
        }
        .is_retryable());
        assert!(!StorageError::Foreign { reason: "x".into() }.is_retryable());
        let not_sqlite = StorageError::Sqlite {
            op: "test",
            source: rusqlite::Error::QueryReturnedNoRows,
        };
        assert!(!not_sqlite.is_retryable());
    }

    #[test]
    fn each_cause_is_printed_once() {
        // A directory that cannot be created: its parent is a file.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let error = crate::Database::open(&file.join("sub/ohlcv.db")).unwrap_err();
        let StorageError::Io { source, .. } = &error else {
            panic!("{error:?}");
        };
        let os = source.to_string();
        let rendered = ErrorChain(&error).to_string();
        assert!(
            rendered.starts_with("create the database directory "),
            "{rendered}"
        );
        assert_eq!(rendered.matches(&os).count(), 1, "{rendered}");

        // rusqlite repeats its SQLite error as its source: said once.
        let busy = ErrorChain(&sqlite_failure(rusqlite::ffi::SQLITE_BUSY)).to_string();
        assert!(busy.starts_with("test: "), "{busy}");
        assert_eq!(busy.matches("database is locked").count(), 1, "{busy}");
    }

    #[test]
    fn messages_keep_the_operation_context() {
        let e = sqlite_failure(rusqlite::ffi::SQLITE_BUSY);
        assert_eq!(e.to_string(), "test");
    }
}
