//! [`Database`]: the SQLite candle store: opening (with refusal of files that
//! are not ours), schema creation and migration, batch upserts, queries and
//! retention.
//!
//! # Physical layout (schema version [`SCHEMA_VERSION`])
//!
//! ```sql
//! series(id INTEGER PRIMARY KEY, exchange, symbol, interval, UNIQUE(exchange, symbol, interval))
//! candles(series_id, open_time, open, high, low, close, volume, closed,
//!         PRIMARY KEY (series_id, open_time)) WITHOUT ROWID
//! exchange_holes(series_id, from_time, to_time, recorded_at,
//!         PRIMARY KEY (series_id, from_time)) WITHOUT ROWID
//! VIEW ohlcv(exchange, symbol, interval, timestamp, open, high, low, close, volume, closed)
//! ```
//!
//! Candles are clustered by `(series_id, open_time)`, so every query of one
//! series is a single range scan, and each row carries an 8-byte id instead of
//! three strings. `exchange_holes` holds the ranges of open times (inclusive)
//! that the exchange itself has no candles for, so that integrity checks
//! ([`Database::holes`]) stop asking for them; its rows go with their
//! series' candles (`clear`, and retention for ranges older than the oldest
//! candle kept). The `ohlcv` view keeps the seed's table shape, so the seed's
//! queries (and any tool written against it) keep working read-only.
//!
//! # Migration from version 1
//!
//! Version 1 had no `exchange_holes`; opening such a file creates the table
//! and sets `user_version` to 2, in one transaction. A version 1 build then
//! refuses the file as newer instead of as foreign.
//!
//! # Files we refuse
//!
//! `database_path` is user input. Before anything is written (not even
//! switching the journal mode), the file is inspected through a read-only
//! connection. It is refused, and left byte-for-byte untouched, if it is not
//! SQLite, carries another application's `application_id`, has a
//! `user_version` newer than this build, or holds tables, views, indexes or
//! triggers that are neither ours nor the seed's.
//!
//! # Migration from the seed
//!
//! The seed (Node.js) wrote one `ohlcv` table at `user_version` 0. Its rows are
//! moved into `series`/`candles` in one transaction, then the table is dropped
//! and the view created. Rows that do not parse into domain types (unknown
//! exchange, invalid symbol or interval, NULL or non-numeric values) cannot be
//! served, but data is never thrown away: they are moved to a table
//! `ohlcv_rejected` (the seed's columns, unchanged) and counted in a `warn`
//! log, so an operator can inspect or repair them. Rows read back later that
//! do not parse (only possible if another program wrote to the file) make the
//! read fail with [`StorageError::BadRow`] naming the row; nothing panics.
//!
//! # Threading
//!
//! A `Database` owns one connection and is meant to live on the single
//! storage thread (it is `Send`, not `Sync`). It is the only writer; other
//! processes may read concurrently thanks to WAL mode.

use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ohlcv_domain::{Candle, SeriesKey};
use rusqlite::{
    params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior,
};
use tracing::{info, warn};

use crate::error::StorageError;
use crate::query::CandleQuery;

/// Version of the physical layout this build reads and writes, stored in
/// `PRAGMA user_version`. Version 0 is the seed's single-table layout.
pub const SCHEMA_VERSION: i64 = 2;

/// `PRAGMA application_id` marking a file as an ohlcv-collector database
/// (`'OHLC'` in ASCII), so we can tell our files from other applications'.
pub const APPLICATION_ID: i64 = 0x4F48_4C43;

/// How long SQLite waits for a lock held by another connection before
/// failing with `SQLITE_BUSY`.
///
/// Short on purpose: the storage thread must go back to draining its queue
/// (reads must stay answered, updates must keep being coalesced) rather
/// than sit on a lock. A busy error is retryable; the caller keeps its queue
/// and retries with backoff. 250 ms still rides out the brief locks of a
/// concurrent reader's checkpoint or a backup tool's page copy.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_millis(250);

/// Page cache of the writing connection, in KiB (`PRAGMA cache_size`
/// takes a negative number for KiB). A batch of 60,000 new candles over
/// 1,000 series dirties some 8 MB of pages on a 1M-row table and some
/// 20 MB on a 10M-row one (the new rows, the last leaf of every series,
/// rebalanced siblings, their parents); SQLite's default 2 MB cache spills them to the WAL
/// mid-transaction and reads them back. The cache only grows as pages are
/// used, so a small database never takes this much.
const PAGE_CACHE_KIB: i64 = 32 * 1024;

/// Bytes of the database file SQLite maps into memory (`PRAGMA
/// mmap_size`): pages are read straight from the OS page cache, without a
/// read call and a copy each. Measured on a 1M-row table, 60,000 new
/// candles went from 166 ms to 113 ms. Address space only: the pages are
/// the kernel's file cache, shared and reclaimable, not the process's
/// heap. 1 GiB covers some 15 million candles; beyond it SQLite reads the
/// rest as before.
const MMAP_BYTES: i64 = 1 << 30;

/// WAL pages after which a commit of the writer checkpoints by itself
/// (`PRAGMA wal_autocheckpoint`; SQLite's default is 1,000, about 4 MB,
/// which a 60,000-candle batch on a 10M-row table exceeds every time).
/// Checkpoints are the [`Checkpointer`](crate::Checkpointer)'s job, on
/// its own thread; this is the safety net should it fall behind or stop:
/// 64 MiB of WAL.
pub const AUTO_CHECKPOINT_PAGES: i64 = 16_384;

/// Bytes the `-wal` file is cut back to when SQLite restarts it after a
/// complete checkpoint (`PRAGMA journal_size_limit`): without it the file
/// keeps the size of its largest batch forever.
const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// Page cache of a reader connection ([`Database::open_reader`]), in KiB.
/// A read of the last 1,000 candles touches a few dozen pages, and mapped
/// pages ([`MMAP_BYTES`]) bypass this cache anyway: the interior pages of
/// the tree are what it keeps.
const READER_PAGE_CACHE_KIB: i64 = 4 * 1024;

/// Columns of the seed's `ohlcv` table, which the view reproduces.
const SEED_COLUMNS: [&str; 10] = [
    "exchange",
    "symbol",
    "interval",
    "timestamp",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "closed",
];

/// Table holding seed rows that could not be migrated (see the module docs).
const REJECTED_TABLE: &str = "ohlcv_rejected";

/// The tables of the current layout. `IF NOT EXISTS` lets the same script
/// repair a file of ours that lost an object.
const TABLES_SQL: &str = "
CREATE TABLE IF NOT EXISTS series (
    id       INTEGER PRIMARY KEY,
    exchange TEXT NOT NULL,
    symbol   TEXT NOT NULL,
    interval TEXT NOT NULL,
    UNIQUE (exchange, symbol, interval)
);
CREATE TABLE IF NOT EXISTS candles (
    series_id INTEGER NOT NULL,
    open_time INTEGER NOT NULL,
    open      REAL NOT NULL,
    high      REAL NOT NULL,
    low       REAL NOT NULL,
    close     REAL NOT NULL,
    volume    REAL NOT NULL,
    closed    INTEGER NOT NULL,
    PRIMARY KEY (series_id, open_time)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS exchange_holes (
    series_id   INTEGER NOT NULL,
    from_time   INTEGER NOT NULL,
    to_time     INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (series_id, from_time)
) WITHOUT ROWID;
";

/// The seed-compatible view. Created after the tables and, when migrating,
/// after the seed's table of the same name is dropped.
const VIEW_SQL: &str = "
CREATE VIEW IF NOT EXISTS ohlcv AS
SELECT s.exchange  AS exchange,
       s.symbol    AS symbol,
       s.interval  AS interval,
       c.open_time AS timestamp,
       c.open      AS open,
       c.high      AS high,
       c.low       AS low,
       c.close     AS close,
       c.volume    AS volume,
       c.closed    AS closed
FROM candles AS c JOIN series AS s ON s.id = c.series_id;
";

/// The one write statement: latest write of a candle wins, except that a
/// stored closed candle is final and never goes back to open (a late,
/// stale write of its open state, e.g. by a storage thread that was
/// blocked mid-batch and replaced, cannot undo it).
const UPSERT_SQL: &str = "
INSERT INTO candles (series_id, open_time, open, high, low, close, volume, closed)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT (series_id, open_time) DO UPDATE SET
    open = excluded.open,
    high = excluded.high,
    low = excluded.low,
    close = excluded.close,
    volume = excluded.volume,
    closed = excluded.closed
WHERE excluded.closed OR NOT candles.closed";

const SELECT_SERIES_ID_SQL: &str =
    "SELECT id FROM series WHERE exchange = ?1 AND symbol = ?2 AND interval = ?3";

/// One series in the database, as listed to users (`/databaseSymbols`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesSummary {
    /// The series.
    pub key: SeriesKey,
    /// Number of stored candles.
    pub count: u64,
    /// Open time of the oldest stored candle, UTC ms.
    pub first: i64,
    /// Open time of the newest stored candle, UTC ms.
    pub last: i64,
}

/// A range of missing open times of one series, both ends inclusive, in
/// steps of the series' interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hole {
    /// First missing open time, UTC ms.
    pub from: i64,
    /// Last missing open time, UTC ms.
    pub to: i64,
}

/// How complete one stored series is, as `/completeness` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesCompleteness {
    /// The series.
    pub key: SeriesKey,
    /// Open time of the oldest stored candle, UTC ms.
    pub first_open_time: i64,
    /// Open time of the newest stored candle, UTC ms.
    pub last_open_time: i64,
    /// Candles from the oldest to the newest stored one, both included.
    pub expected: u64,
    /// Candles stored.
    pub stored: u64,
    /// Candles neither stored nor inside a recorded exchange hole: what
    /// gap filling still has to fetch.
    pub missing: u64,
    /// Ranges recorded as exchange holes (the exchange has no candles
    /// there).
    pub exchange_holes: u64,
    /// Open times inside those ranges, between the oldest and the newest
    /// stored candle.
    pub exchange_hole_candles: u64,
    /// Open time of the newest closed candle; `None` if none is closed.
    pub newest_closed_open_time: Option<i64>,
    /// Milliseconds from that candle's close time (open time plus the
    /// interval) to the `now_ms` asked about: how far behind the series is.
    pub newest_closed_age_ms: Option<i64>,
}

/// The open times of series `?1`, oldest first, from which
/// [`Database::holes`] takes the gaps: one range scan of the primary key,
/// in its order, so no sort and no temporary table.
///
/// The previous open time is carried in Rust rather than with SQL's
/// `LAG(open_time) OVER (ORDER BY open_time)`: same scan, same answer, but
/// the window function's per-row machinery made it eight times slower
/// (release build, one series of 1M one-minute candles: 500 ms with
/// `LAG`, 60 ms without).
const HOLES_SQL: &str = "SELECT open_time FROM candles WHERE series_id = ?1 ORDER BY open_time";

/// The SQLite candle store. See the module docs for layout and policies.
#[derive(Debug)]
pub struct Database {
    /// The one connection; never shared with another thread.
    conn: Connection,
    /// Where the database lives, for `size_on_disk` and error messages.
    path: PathBuf,
    /// `series.id` of every series this connection has seen, so a batch of
    /// candles costs one upsert each and no string lookups. Only filled with
    /// ids that are committed (see `insert_batch`), emptied by `clear`.
    series_ids: HashMap<SeriesKey, i64>,
}

/// What an inspected file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// A new or empty SQLite file: create the schema.
    Empty,
    /// The seed's single `ohlcv` table: migrate.
    Seed,
    /// Our current layout; `complete` is false when an object is missing
    /// and must be recreated.
    Current { complete: bool },
    /// Our layout of an older version (`from`), upgraded by creating what
    /// it lacks.
    Older { from: i64 },
}

impl Database {
    /// Opens (creating if needed) the database at `path`, bringing its schema
    /// to [`SCHEMA_VERSION`].
    ///
    /// Creates missing parent directories. Sets WAL journaling with
    /// `synchronous=NORMAL` (durable across process crashes, at most the
    /// last transactions lost on power loss, and readers never block the
    /// writer) and a short busy timeout.
    ///
    /// # Errors
    /// - [`StorageError::Foreign`] when the file is not SQLite, belongs to
    ///   another application or holds objects we do not know; the file is
    ///   left untouched.
    /// - [`StorageError::NewerSchema`] when a newer build wrote the file; left
    ///   untouched too.
    /// - [`StorageError::Io`] when the directory cannot be created.
    /// - [`StorageError::Sqlite`] for SQLite failures, retryable when the file
    ///   is locked by another process.
    pub fn open(path: &Path) -> Result<Database, StorageError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)
                .map_err(StorageError::io("create the database directory", parent))?;
        }
        let layout = match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                return Err(StorageError::Foreign {
                    reason: format!("{} is a directory, not a database file", path.display()),
                })
            }
            Ok(_) => inspect_read_only(path)?,
            Err(e) if e.kind() == ErrorKind::NotFound => Layout::Empty,
            Err(e) => return Err(StorageError::io("inspect the database file", path)(e)),
        };

        // Only now, with the file known to be ours, the seed's or empty, is
        // anything written to it.
        // No SQLITE_OPEN_URI: `database_path` is a file name, never a URI.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(StorageError::sqlite("open"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(StorageError::sqlite("open: set busy_timeout"))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(StorageError::sqlite("open: enable WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Some file systems (network shares) cannot hold the shared-memory
            // index WAL needs; SQLite then keeps its rollback journal. Still
            // correct, only slower and with readers blocking the writer.
            warn!(path = %path.display(), journal_mode = %mode, "WAL mode unavailable, using the rollback journal");
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(StorageError::sqlite("open: set synchronous"))?;
        conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)
            .map_err(StorageError::sqlite("open: set cache_size"))?;
        conn.pragma_update(None, "mmap_size", MMAP_BYTES)
            .map_err(StorageError::sqlite("open: set mmap_size"))?;
        conn.pragma_update(None, "wal_autocheckpoint", AUTO_CHECKPOINT_PAGES)
            .map_err(StorageError::sqlite("open: set wal_autocheckpoint"))?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(StorageError::sqlite("open: set journal_size_limit"))?;

        let mut db = Database {
            conn,
            path: path.to_path_buf(),
            series_ids: HashMap::new(),
        };
        if layout != (Layout::Current { complete: true }) {
            db.prepare_schema()?;
        }
        Ok(db)
    }

    /// A read-only connection to the database at `path`, which
    /// [`Database::open`] has already created: what reader threads answer
    /// `/ohlcv`, `/databaseSymbols` and the datasources' lookups with, so
    /// that a read never waits for a batch write (WAL lets readers go on
    /// while the writer commits) and the writer never waits for a read.
    ///
    /// Only the read methods work on it; a write answers `SQLITE_READONLY`.
    /// It keeps no series-id cache (a `clear` on the writer could make it
    /// wrong): a series is looked up by its unique index on every read.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`] when the file does not exist or cannot be
    /// opened.
    pub fn open_reader(path: &Path) -> Result<Database, StorageError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(StorageError::sqlite("open a reader"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(StorageError::sqlite("open a reader: set busy_timeout"))?;
        conn.pragma_update(None, "cache_size", -READER_PAGE_CACHE_KIB)
            .map_err(StorageError::sqlite("open a reader: set cache_size"))?;
        conn.pragma_update(None, "mmap_size", MMAP_BYTES)
            .map_err(StorageError::sqlite("open a reader: set mmap_size"))?;
        Ok(Database {
            conn,
            path: path.to_path_buf(),
            series_ids: HashMap::new(),
        })
    }

    /// Creates, migrates or repairs the schema in one immediate transaction.
    ///
    /// Inspects the file again under the write lock: another process may
    /// have changed it since the read-only inspection.
    fn prepare_schema(&mut self) -> Result<(), StorageError> {
        const OP: &str = "open: prepare the schema";
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StorageError::sqlite(OP))?;
        match inspect(&tx, &self.path)? {
            Layout::Empty => {
                create_schema(&tx).map_err(StorageError::sqlite(OP))?;
                info!(path = %self.path.display(), version = SCHEMA_VERSION, "created a new candle database");
            }
            Layout::Seed => {
                let (migrated, rejected) = migrate_from_seed(&tx)?;
                if rejected > 0 {
                    warn!(
                        path = %self.path.display(),
                        migrated,
                        rejected,
                        table = REJECTED_TABLE,
                        "seed rows that do not parse were kept aside, not migrated"
                    );
                }
                info!(path = %self.path.display(), migrated, rejected, version = SCHEMA_VERSION, "migrated the seed database");
            }
            Layout::Older { from } => {
                create_schema(&tx).map_err(StorageError::sqlite(OP))?;
                info!(path = %self.path.display(), from, version = SCHEMA_VERSION, "upgraded the candle database");
            }
            Layout::Current { complete } => {
                if !complete {
                    warn!(path = %self.path.display(), "recreating missing schema objects");
                    create_schema(&tx).map_err(StorageError::sqlite(OP))?;
                }
            }
        }
        tx.commit().map_err(StorageError::sqlite(OP))
    }

    /// Stores one candle (upsert: the latest write wins).
    ///
    /// # Errors
    /// [`StorageError::InvalidCandle`] for a non-finite price or volume;
    /// [`StorageError::Sqlite`] otherwise, retryable when the file is locked.
    pub fn insert(&mut self, candle: &Candle) -> Result<(), StorageError> {
        storable(candle).map_err(|reason| StorageError::InvalidCandle {
            key: candle.key.clone(),
            open_time: candle.open_time,
            reason,
        })?;
        self.insert_batch(std::slice::from_ref(candle)).map(|_| ())
    }

    /// Stores `candles` in one transaction with a cached prepared upsert; a
    /// later candle of the same series and open time (in this batch or
    /// stored earlier) replaces the earlier one, unless the stored one is
    /// closed and the later one open: a closed candle is final.
    ///
    /// A candle with a non-finite price or volume cannot be stored
    /// faithfully and is skipped with a `warn` log rather than failing the
    /// batch: retrying would never succeed, and the rest of the batch must
    /// not be held hostage by it. Returns the number of candles written.
    ///
    /// Either the whole batch is written or none of it.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`], retryable when the file is locked or the
    /// disk is full; the caller should keep the batch and retry.
    pub fn insert_batch(&mut self, candles: &[Candle]) -> Result<usize, StorageError> {
        const OP: &str = "insert_batch";
        if candles.is_empty() {
            return Ok(0);
        }
        let sql = StorageError::sqlite;
        // IMMEDIATE takes the write lock up front, so a busy database fails
        // here, before any work, and never mid-batch with SQLITE_BUSY_SNAPSHOT.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(OP))?;
        // Ids of series created by this transaction; cached only after the
        // commit, or a rolled-back batch would leave ids that do not exist.
        let mut new_ids: HashMap<SeriesKey, i64> = HashMap::new();
        let mut rows: Vec<(i64, &Candle)> = Vec::with_capacity(candles.len());
        for candle in candles {
            if let Err(reason) = storable(candle) {
                warn!(series = %candle.key, open_time = candle.open_time, %reason, "skipping a candle that cannot be stored");
                continue;
            }
            let cached = self
                .series_ids
                .get(&candle.key)
                .or_else(|| new_ids.get(&candle.key))
                .copied();
            let series_id = match cached {
                Some(id) => id,
                None => {
                    let id = ensure_series(&tx, &candle.key).map_err(sql(OP))?;
                    new_ids.insert(candle.key.clone(), id);
                    id
                }
            };
            rows.push((series_id, candle));
        }
        // In primary-key order, each B-tree page is visited once per batch
        // instead of once per candle that lands on it: updates arrive
        // interleaved by series, and written in that order a batch over
        // 1000 series re-reads the same leaf pages a thousand times. The
        // sort is stable, so a later update of the same candle still wins.
        rows.sort_by_key(|(series_id, candle)| (*series_id, candle.open_time));
        {
            let mut upsert = tx.prepare_cached(UPSERT_SQL).map_err(sql(OP))?;
            for (series_id, candle) in &rows {
                upsert
                    .execute(params![
                        series_id,
                        candle.open_time,
                        candle.open,
                        candle.high,
                        candle.low,
                        candle.close,
                        candle.volume,
                        candle.closed,
                    ])
                    .map_err(sql(OP))?;
            }
        }
        let written = rows.len();
        tx.commit().map_err(sql(OP))?;
        self.series_ids.extend(new_ids);
        Ok(written)
    }

    /// The stored candles of `key` selected by `query`, ascending by open
    /// time (see [`CandleQuery`] for the limit semantics). An unknown series
    /// or an empty window gives an empty result.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`] on a read failure; [`StorageError::BadRow`]
    /// for a row that does not parse.
    pub fn get_candles(
        &self,
        key: &SeriesKey,
        query: &CandleQuery,
    ) -> Result<Vec<Candle>, StorageError> {
        const OP: &str = "get_candles";
        let Some((lo, hi)) = query.bounds() else {
            return Ok(Vec::new());
        };
        let Some(series_id) = self.series_id(key)? else {
            return Ok(Vec::new());
        };
        // Both statements are range scans of the primary key; the latest
        // `limit` are read newest-first so SQLite stops after `limit` rows.
        let newest_first = query.from.is_none();
        let mut stmt = self
            .conn
            .prepare_cached(select_candles_sql(newest_first))
            .map_err(StorageError::sqlite(OP))?;
        let mut rows = stmt
            .query(params![series_id, lo, hi, query.sql_limit()])
            .map_err(StorageError::sqlite(OP))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(StorageError::sqlite(OP))? {
            out.push(candle_from_row(key, row)?);
        }
        if newest_first {
            out.reverse();
        }
        Ok(out)
    }

    /// Open time of the newest stored candle of `key`, where gap filling
    /// resumes; `None` when the series has no candles.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`] on a read failure.
    pub fn get_last_timestamp(&self, key: &SeriesKey) -> Result<Option<i64>, StorageError> {
        const OP: &str = "get_last_timestamp";
        let Some(series_id) = self.series_id(key)? else {
            return Ok(None);
        };
        self.conn
            .prepare_cached("SELECT MAX(open_time) FROM candles WHERE series_id = ?1")
            .and_then(|mut stmt| stmt.query_row([series_id], |row| row.get(0)))
            .map_err(StorageError::sqlite(OP))
    }

    /// Number of stored candles of `key`.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`] on a read failure.
    pub fn get_count(&self, key: &SeriesKey) -> Result<u64, StorageError> {
        const OP: &str = "get_count";
        let Some(series_id) = self.series_id(key)? else {
            return Ok(0);
        };
        let count: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM candles WHERE series_id = ?1")
            .and_then(|mut stmt| stmt.query_row([series_id], |row| row.get(0)))
            .map_err(StorageError::sqlite(OP))?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    /// Enforces `max_records`: deletes all but the newest `max_records`
    /// candles of `key`, returning how many were deleted. Exchange holes
    /// wholly older than the oldest candle kept go with them: integrity
    /// checks never look there again.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`], retryable when the file is locked.
    pub fn cleanup(&mut self, key: &SeriesKey, max_records: u64) -> Result<u64, StorageError> {
        const OP: &str = "cleanup";
        let Some(series_id) = self.series_id(key)? else {
            return Ok(0);
        };
        // The (max_records + 1)-th newest open time and everything older go;
        // with fewer rows the subquery is NULL and nothing matches.
        let keep = i64::try_from(max_records).unwrap_or(i64::MAX);
        let deleted = self
            .conn
            .prepare_cached(
                "DELETE FROM candles WHERE series_id = ?1 AND open_time <= (
                     SELECT open_time FROM candles WHERE series_id = ?1
                     ORDER BY open_time DESC LIMIT 1 OFFSET ?2)",
            )
            .and_then(|mut stmt| stmt.execute(params![series_id, keep]))
            .map_err(StorageError::sqlite(OP))?;
        if deleted > 0 {
            self.conn
                .prepare_cached(
                    "DELETE FROM exchange_holes WHERE series_id = ?1 AND to_time < (
                         SELECT MIN(open_time) FROM candles WHERE series_id = ?1)",
                )
                .and_then(|mut stmt| stmt.execute([series_id]))
                .map_err(StorageError::sqlite(OP))?;
        }
        Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
    }

    /// Every series holding at least one candle, with its count and time
    /// span, sorted by key (exchange, symbol, interval).
    ///
    /// # Errors
    /// [`StorageError::Sqlite`] on a read failure; [`StorageError::BadRow`]
    /// naming a series whose stored strings do not parse.
    pub fn series(&self) -> Result<Vec<SeriesSummary>, StorageError> {
        let mut out: Vec<SeriesSummary> = self
            .series_with_ids()?
            .into_iter()
            .map(|(_, summary)| summary)
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// [`Database::series`] with each series' id, unsorted.
    fn series_with_ids(&self) -> Result<Vec<(i64, SeriesSummary)>, StorageError> {
        const OP: &str = "series";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT s.id, s.exchange, s.symbol, s.interval,
                        COUNT(*), MIN(c.open_time), MAX(c.open_time)
                 FROM series AS s JOIN candles AS c ON c.series_id = s.id
                 GROUP BY s.id",
            )
            .map_err(StorageError::sqlite(OP))?;
        let mut rows = stmt.query([]).map_err(StorageError::sqlite(OP))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(StorageError::sqlite(OP))? {
            let id: i64 = row.get(0).map_err(|e| bad_row("series row".into(), &e))?;
            let what = || format!("series id {id}");
            let text = |i: usize| -> Result<String, StorageError> {
                row.get(i).map_err(|e| bad_row(what(), &e))
            };
            let key = parse_key(&text(1)?, &text(2)?, &text(3)?).map_err(|reason| {
                StorageError::BadRow {
                    row: what(),
                    reason,
                }
            })?;
            let count: i64 = row.get(4).map_err(|e| bad_row(what(), &e))?;
            out.push((
                id,
                SeriesSummary {
                    key,
                    count: u64::try_from(count).unwrap_or_default(),
                    first: row.get(5).map_err(|e| bad_row(what(), &e))?,
                    last: row.get(6).map_err(|e| bad_row(what(), &e))?,
                },
            ));
        }
        Ok(out)
    }

    /// The ranges of open times missing between the oldest and the newest
    /// stored candle of `key`, oldest first, at most `limit`; ranges
    /// recorded as exchange holes ([`Database::record_exchange_hole`]) are
    /// left out, so a hole the exchange itself has is fetched only once.
    ///
    /// Open times are counted in steps of the interval from the candle
    /// before each gap. One pass over the series' primary-key range,
    /// stopping once `limit` holes are found: a million-candle series is
    /// read in about 60 ms (release build).
    /// An unknown series, or `limit == 0`, has no holes.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`] on a read failure.
    pub fn holes(&self, key: &SeriesKey, limit: usize) -> Result<Vec<Hole>, StorageError> {
        self.holes_among(key, limit, &[])
    }

    /// [`Database::holes`] as if the candles opening at `queued` (sorted,
    /// ascending) were stored too: the storage thread's queue, about to be
    /// written. They can extend the series at either end and fill holes.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`] on a read failure.
    pub fn holes_among(
        &self,
        key: &SeriesKey,
        limit: usize,
        queued: &[i64],
    ) -> Result<Vec<Hole>, StorageError> {
        const OP: &str = "holes";
        let sql = StorageError::sqlite;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let series_id = self.series_id(key)?;
        let step = key.interval.duration_ms();
        let known = match series_id {
            Some(id) => self.exchange_holes_of(id)?,
            None => Vec::new(),
        };
        let mut known = known.iter().peekable();
        let mut stmt = match series_id {
            Some(_) => Some(self.conn.prepare_cached(HOLES_SQL).map_err(sql(OP))?),
            None => None,
        };
        let mut rows = match (stmt.as_mut(), series_id) {
            (Some(stmt), Some(id)) => Some(stmt.query([id]).map_err(sql(OP))?),
            _ => None,
        };
        let mut next_stored = || -> Result<Option<i64>, StorageError> {
            let Some(rows) = rows.as_mut() else {
                return Ok(None);
            };
            match rows.next().map_err(sql(OP))? {
                Some(row) => Ok(Some(row.get(0).map_err(sql(OP))?)),
                None => Ok(None),
            }
        };
        let mut queued = queued.iter().copied().peekable();
        let mut stored = next_stored()?;
        let mut out = Vec::new();
        let mut prev: Option<i64> = None;
        loop {
            // The next open time of the two sorted sequences, once each.
            let open_time = match (stored, queued.peek().copied()) {
                (None, None) => break,
                (Some(s), Some(q)) if q < s => {
                    queued.next();
                    q
                }
                (Some(s), Some(q)) => {
                    if q == s {
                        queued.next();
                    }
                    stored = next_stored()?;
                    s
                }
                (Some(s), None) => {
                    stored = next_stored()?;
                    s
                }
                (None, Some(q)) => {
                    queued.next();
                    q
                }
            };
            let Some(before) = prev.replace(open_time) else {
                continue;
            };
            if open_time - before <= step {
                continue;
            }
            // On the grid of the candle before the gap, up to the last
            // open time before the next candle.
            let gap = Hole {
                from: before + step,
                to: before + (open_time - before - 1) / step * step,
            };
            // Known holes ending before this gap cannot touch later gaps.
            while known.next_if(|k| k.to < gap.from).is_some() {}
            let mut cursor = gap.from;
            for k in known.clone() {
                if k.from > gap.to || cursor > gap.to {
                    break;
                }
                let before = (k.from - step).min(gap.to);
                if before >= cursor {
                    out.push(Hole {
                        from: cursor,
                        to: before,
                    });
                }
                cursor = cursor.max(k.to.saturating_add(step));
            }
            if cursor <= gap.to {
                out.push(Hole {
                    from: cursor,
                    to: gap.to,
                });
            }
            if out.len() >= limit {
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    /// Records that the exchange has no candles of `key` from `from` to
    /// `to` (open times, inclusive): REST answered nothing there, so
    /// [`Database::holes`] stops reporting the range and nothing fetches it
    /// again.
    ///
    /// Idempotent: a range overlapping or adjacent to recorded ones (within
    /// one interval) is merged with them into one row, keeping the earliest
    /// `recorded_at`; a range already covered changes nothing. The series
    /// is created if its candles are not written yet.
    ///
    /// # Errors
    /// [`StorageError::InvalidHole`] when `from > to`;
    /// [`StorageError::Sqlite`] otherwise, retryable when the file is locked.
    pub fn record_exchange_hole(
        &mut self,
        key: &SeriesKey,
        from: i64,
        to: i64,
    ) -> Result<(), StorageError> {
        const OP: &str = "record_exchange_hole";
        let sql = StorageError::sqlite;
        if from > to {
            return Err(StorageError::InvalidHole {
                key: key.clone(),
                from,
                to,
                reason: "from is after to".into(),
            });
        }
        let step = key.interval.duration_ms();
        let cached = self.series_ids.get(key).copied();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(OP))?;
        let series_id = match cached {
            Some(id) => id,
            None => ensure_series(&tx, key).map_err(sql(OP))?,
        };
        let touching: Vec<(i64, i64, i64)> = tx
            .prepare_cached(
                "SELECT from_time, to_time, recorded_at FROM exchange_holes
                 WHERE series_id = ?1 AND from_time <= ?3 AND to_time >= ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_map(
                    params![
                        series_id,
                        from.saturating_sub(step),
                        to.saturating_add(step)
                    ],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )?
                .collect()
            })
            .map_err(sql(OP))?;
        let covered = touching.iter().any(|(f, t, _)| *f <= from && *t >= to);
        if !covered {
            let merged_from = touching.iter().map(|h| h.0).fold(from, i64::min);
            let merged_to = touching.iter().map(|h| h.1).fold(to, i64::max);
            let recorded_at = touching
                .iter()
                .map(|h| h.2)
                .fold(ohlcv_domain::time::now_ms(), i64::min);
            tx.prepare_cached(
                "DELETE FROM exchange_holes
                 WHERE series_id = ?1 AND from_time <= ?3 AND to_time >= ?2",
            )
            .and_then(|mut stmt| stmt.execute(params![series_id, merged_from, merged_to]))
            .map_err(sql(OP))?;
            tx.prepare_cached(
                "INSERT INTO exchange_holes (series_id, from_time, to_time, recorded_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![series_id, merged_from, merged_to, recorded_at])
            })
            .map_err(sql(OP))?;
        }
        tx.commit().map_err(sql(OP))?;
        self.series_ids.insert(key.clone(), series_id);
        Ok(())
    }

    /// How complete every stored series is, sorted by key: candles expected
    /// between its oldest and newest stored candle, stored, missing
    /// (neither stored nor a recorded exchange hole), and how old its
    /// newest closed candle is at `now_ms`.
    ///
    /// Costs what [`Database::series`] costs (one pass counting the
    /// candles) plus one primary-key lookup per series.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`] on a read failure; [`StorageError::BadRow`]
    /// naming a series whose stored strings do not parse.
    pub fn completeness(&self, now_ms: i64) -> Result<Vec<SeriesCompleteness>, StorageError> {
        const OP: &str = "completeness";
        let sql = StorageError::sqlite;
        let mut holes: HashMap<i64, Vec<Hole>> = HashMap::new();
        {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT series_id, from_time, to_time FROM exchange_holes")
                .map_err(sql(OP))?;
            let mut rows = stmt.query([]).map_err(sql(OP))?;
            while let Some(row) = rows.next().map_err(sql(OP))? {
                let id: i64 = row.get(0).map_err(sql(OP))?;
                holes.entry(id).or_default().push(Hole {
                    from: row.get(1).map_err(sql(OP))?,
                    to: row.get(2).map_err(sql(OP))?,
                });
            }
        }
        let mut newest_closed = self
            .conn
            .prepare_cached(
                "SELECT open_time FROM candles WHERE series_id = ?1 AND closed
                 ORDER BY open_time DESC LIMIT 1",
            )
            .map_err(sql(OP))?;
        let mut out = Vec::new();
        for (id, summary) in self.series_with_ids()? {
            let step = summary.key.interval.duration_ms();
            let slots = |from: i64, to: i64| -> u64 {
                u64::try_from((to - from) / step + 1).unwrap_or_default()
            };
            let expected = slots(summary.first, summary.last);
            let recorded = holes.remove(&id).unwrap_or_default();
            let hole_candles: u64 = recorded
                .iter()
                .filter_map(|h| {
                    let (lo, hi) = (h.from.max(summary.first), h.to.min(summary.last));
                    (lo <= hi).then(|| slots(lo, hi))
                })
                .sum();
            let newest: Option<i64> = newest_closed
                .query_row([id], |row| row.get(0))
                .optional()
                .map_err(sql(OP))?;
            out.push(SeriesCompleteness {
                first_open_time: summary.first,
                last_open_time: summary.last,
                expected,
                stored: summary.count,
                missing: expected
                    .saturating_sub(summary.count)
                    .saturating_sub(hole_candles),
                exchange_holes: recorded.len() as u64,
                exchange_hole_candles: hole_candles,
                newest_closed_open_time: newest,
                newest_closed_age_ms: newest.map(|t| now_ms - (t + step)),
                key: summary.key,
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The recorded exchange holes of a series, oldest first.
    fn exchange_holes_of(&self, series_id: i64) -> Result<Vec<Hole>, StorageError> {
        self.conn
            .prepare_cached(
                "SELECT from_time, to_time FROM exchange_holes WHERE series_id = ?1
                 ORDER BY from_time",
            )
            .and_then(|mut stmt| {
                stmt.query_map([series_id], |row| {
                    Ok(Hole {
                        from: row.get(0)?,
                        to: row.get(1)?,
                    })
                })?
                .collect()
            })
            .map_err(StorageError::sqlite("read the exchange holes"))
    }

    /// Bytes the database occupies: the main file plus its `-wal` and
    /// `-shm` companions (the WAL can be much larger than the main file
    /// between checkpoints, so leaving it out would under-report).
    ///
    /// # Errors
    /// [`StorageError::Io`] when a file exists but its size cannot be read.
    pub fn size_on_disk(&self) -> Result<u64, StorageError> {
        let mut total = 0;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = self.path.clone().into_os_string();
            name.push(suffix);
            let file = PathBuf::from(name);
            match fs::metadata(&file) {
                Ok(meta) => total += meta.len(),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("read the size of", file)(e)),
            }
        }
        Ok(total)
    }

    /// Moves everything in the `-wal` file into the main file and truncates
    /// the WAL, so that the main file alone holds every committed candle
    /// (copying `ohlcv.db` after a clean exit is then a complete backup).
    /// Called at shutdown, after the last write.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`] when the checkpoint fails or another
    /// connection (a reader) keeps it from completing.
    pub fn checkpoint(&mut self) -> Result<(), StorageError> {
        const OP: &str = "checkpoint the WAL";
        let busy = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                row.get::<_, i64>(0)
            })
            .map_err(StorageError::sqlite(OP))?;
        if busy != 0 {
            return Err(StorageError::Sqlite {
                op: OP,
                source: rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some("another connection kept the checkpoint from completing".into()),
                ),
            });
        }
        Ok(())
    }

    /// Deletes every candle, series and exchange hole (and any rows kept
    /// aside by the seed migration) in one transaction, keeping the schema, then gives the
    /// disk space back (VACUUM, then a truncating WAL checkpoint).
    ///
    /// Reclaiming space is best effort: once the deletion is committed the
    /// database is empty as promised, so a VACUUM or checkpoint that cannot
    /// run (a reader holds the file) is only logged; the space is reused by
    /// later writes anyway.
    ///
    /// # Errors
    /// [`StorageError::Sqlite`] when the deletion fails (nothing was deleted).
    pub fn clear(&mut self) -> Result<(), StorageError> {
        const OP: &str = "clear";
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StorageError::sqlite(OP))?;
        tx.execute_batch(&format!(
            "DELETE FROM candles; DELETE FROM exchange_holes; DELETE FROM series;
             DROP TABLE IF EXISTS {REJECTED_TABLE};"
        ))
        .map_err(StorageError::sqlite(OP))?;
        tx.commit().map_err(StorageError::sqlite(OP))?;
        self.series_ids.clear();

        if let Err(error) = self.conn.execute_batch("VACUUM") {
            warn!(path = %self.path.display(), %error, "VACUUM after clear failed; space will be reused later");
        }
        match self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                row.get::<_, i64>(0)
            }) {
            Ok(0) => {}
            Ok(_) => {
                warn!(path = %self.path.display(), "WAL checkpoint after clear was blocked by a reader")
            }
            Err(error) => {
                warn!(path = %self.path.display(), %error, "WAL checkpoint after clear failed")
            }
        }
        Ok(())
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id of `key`'s series: from the cache, else from the table, `None`
    /// if the series was never written.
    fn series_id(&self, key: &SeriesKey) -> Result<Option<i64>, StorageError> {
        if let Some(id) = self.series_ids.get(key) {
            return Ok(Some(*id));
        }
        self.conn
            .prepare_cached(SELECT_SERIES_ID_SQL)
            .and_then(|mut stmt| stmt.query_row(key_params(key), |row| row.get(0)).optional())
            .map_err(StorageError::sqlite("look up a series"))
    }
}

/// The window query of `get_candles` (columns in `candle_from_row` order),
/// oldest-first or newest-first. Whole literals so `prepare_cached` keeps
/// one compiled statement per direction.
fn select_candles_sql(newest_first: bool) -> &'static str {
    if newest_first {
        "SELECT open_time, open, high, low, close, volume, closed FROM candles
         WHERE series_id = ?1 AND open_time BETWEEN ?2 AND ?3
         ORDER BY open_time DESC LIMIT ?4"
    } else {
        "SELECT open_time, open, high, low, close, volume, closed FROM candles
         WHERE series_id = ?1 AND open_time BETWEEN ?2 AND ?3
         ORDER BY open_time ASC LIMIT ?4"
    }
}

/// The three strings identifying a series in the `series` table.
fn key_params(key: &SeriesKey) -> [&str; 3] {
    [
        key.exchange.as_str(),
        key.symbol.as_str(),
        key.interval.as_str(),
    ]
}

/// The id of `key`'s series, creating the row if it does not exist.
fn ensure_series(conn: &Connection, key: &SeriesKey) -> rusqlite::Result<i64> {
    let existing: Option<i64> = conn
        .prepare_cached(SELECT_SERIES_ID_SQL)?
        .query_row(key_params(key), |row| row.get(0))
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    conn.prepare_cached("INSERT INTO series (exchange, symbol, interval) VALUES (?1, ?2, ?3)")?
        .execute(key_params(key))?;
    Ok(conn.last_insert_rowid())
}

/// Why `candle` cannot be stored faithfully, if it cannot: SQLite turns NaN
/// into NULL (rejected by `NOT NULL`) and infinities would poison every
/// JSON answer later.
fn storable(candle: &Candle) -> Result<(), String> {
    for (field, value) in [
        ("open", candle.open),
        ("high", candle.high),
        ("low", candle.low),
        ("close", candle.close),
        ("volume", candle.volume),
    ] {
        if !value.is_finite() {
            return Err(format!("{field} is {value}"));
        }
    }
    Ok(())
}

/// Parses the stored strings of a series into a key, or says why not.
fn parse_key(exchange: &str, symbol: &str, interval: &str) -> Result<SeriesKey, String> {
    Ok(SeriesKey::new(
        exchange.parse().map_err(|e| format!("{e}"))?,
        symbol.parse().map_err(|e| format!("{e}"))?,
        interval.parse().map_err(|e| format!("{e}"))?,
    ))
}

/// A column of a row that does not convert to the expected type.
fn bad_row(row: String, error: &rusqlite::Error) -> StorageError {
    StorageError::BadRow {
        row,
        reason: error.to_string(),
    }
}

/// Reads a row of `select_candles_sql` into a candle of `key`.
fn candle_from_row(key: &SeriesKey, row: &Row<'_>) -> Result<Candle, StorageError> {
    let open_time: i64 = row
        .get(0)
        .map_err(|e| bad_row(format!("candles of {key}"), &e))?;
    let what = || format!("candle {key} at open_time {open_time}");
    let price =
        |i: usize| -> Result<f64, StorageError> { row.get(i).map_err(|e| bad_row(what(), &e)) };
    Ok(Candle {
        key: key.clone(),
        open_time,
        open: price(1)?,
        high: price(2)?,
        low: price(3)?,
        close: price(4)?,
        volume: price(5)?,
        closed: row.get(6).map_err(|e| bad_row(what(), &e))?,
    })
}

/// Creates every object of the current layout and marks the file as ours.
/// Runs inside the caller's transaction (both pragmas are transactional).
fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(TABLES_SQL)?;
    conn.execute_batch(VIEW_SQL)?;
    conn.pragma_update(None, "application_id", APPLICATION_ID)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
}

/// Opens `path` read-only and inspects it, so that a refused file is never
/// written to (not even by switching journal modes or by a checkpoint when
/// the connection closes).
///
/// When no `-wal` or `-journal` file exists, the database is entirely in the
/// main file and is opened with `immutable=1`: SQLite then takes no locks and
/// creates no `-wal`/`-shm` side files, which a plain read-only open of a
/// WAL-mode file would leave behind. Otherwise (a writer may be active, or a
/// hot journal must be read) a normal read-only connection is used. Either
/// way the decision taken later is re-checked under the write lock.
fn inspect_read_only(path: &Path) -> Result<Layout, StorageError> {
    const OP: &str = "open: inspect the file";
    let side_file_exists = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        Path::new(&name).exists()
    };
    let read_only = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let immutable_uri = (!side_file_exists("-wal") && !side_file_exists("-journal"))
        .then(|| immutable_uri(path))
        .flatten();
    let conn = match immutable_uri {
        Some(uri) => Connection::open_with_flags(uri, read_only | OpenFlags::SQLITE_OPEN_URI),
        None => Connection::open_with_flags(path, read_only),
    }
    .map_err(StorageError::sqlite(OP))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(StorageError::sqlite(OP))?;
    inspect(&conn, path)
}

/// `file:` URI opening `path` with `immutable=1`, or `None` where building
/// one is not straightforward (non-Unix path syntax, non-UTF-8 paths).
fn immutable_uri(path: &Path) -> Option<String> {
    if !cfg!(unix) {
        return None;
    }
    let text = path.to_str()?;
    let mut uri = String::from("file:");
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"/._-~".contains(&byte) {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    Some(uri)
}

/// Classifies the file behind `conn`, refusing anything we must not touch.
fn inspect(conn: &Connection, path: &Path) -> Result<Layout, StorageError> {
    const OP: &str = "open: inspect the file";
    let foreign = |why: String| StorageError::Foreign {
        reason: format!("{} {why}", path.display()),
    };
    let pragma = |name: &str| -> Result<i64, StorageError> {
        conn.pragma_query_value(None, name, |row| row.get(0))
            .map_err(|e| match e.sqlite_error_code() {
                Some(ErrorCode::NotADatabase) => foreign("is not an SQLite database".into()),
                _ => StorageError::Sqlite { op: OP, source: e },
            })
    };
    let app_id = pragma("application_id")?;
    let version = pragma("user_version")?;
    if app_id != 0 && app_id != APPLICATION_ID {
        return Err(foreign(format!(
            "belongs to another application (application_id {app_id:#010x}, ours is {APPLICATION_ID:#010x})"
        )));
    }
    if version > SCHEMA_VERSION && app_id == APPLICATION_ID {
        return Err(StorageError::NewerSchema {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }

    let objects = schema_objects(conn).map_err(StorageError::sqlite(OP))?;
    let unknown = |allowed: &[(&str, &str)]| {
        objects
            .iter()
            .find(|(kind, name, _)| !allowed.contains(&(kind.as_str(), name.as_str())))
            .map(|(kind, name, _)| {
                foreign(format!(
                    "holds {kind} {name:?}, which ohlcv-collector does not know"
                ))
            })
    };

    match version {
        0 if objects.is_empty() => Ok(Layout::Empty),
        0 => {
            if let Some(err) = unknown(&[("table", "ohlcv"), ("index", "idx_lookup")]) {
                return Err(err);
            }
            if !objects
                .iter()
                .any(|(kind, name, _)| kind == "table" && name == "ohlcv")
            {
                return Err(foreign("holds an index but no ohlcv table".into()));
            }
            if objects.iter().any(|(_, _, table)| table != "ohlcv") {
                return Err(foreign("has an idx_lookup index on another table".into()));
            }
            let mut columns = table_columns(conn, "ohlcv").map_err(StorageError::sqlite(OP))?;
            columns.sort();
            let mut expected: Vec<String> = SEED_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
            expected.sort();
            if columns != expected {
                return Err(foreign(format!(
                    "has an ohlcv table with columns {columns:?}, not the seed's {SEED_COLUMNS:?}"
                )));
            }
            Ok(Layout::Seed)
        }
        1..=SCHEMA_VERSION if app_id == APPLICATION_ID => {
            let required = [
                ("table", "series"),
                ("table", "candles"),
                ("table", "exchange_holes"),
                ("view", "ohlcv"),
            ];
            let mut allowed = required.to_vec();
            allowed.push(("table", REJECTED_TABLE));
            if let Some(err) = unknown(&allowed) {
                return Err(err);
            }
            if version < SCHEMA_VERSION {
                return Ok(Layout::Older { from: version });
            }
            let complete = required
                .iter()
                .all(|(kind, name)| objects.iter().any(|(k, n, _)| k == kind && n == name));
            Ok(Layout::Current { complete })
        }
        _ => Err(foreign(format!(
            "has user_version {version} without the ohlcv-collector application_id"
        ))),
    }
}

/// `(type, name, tbl_name)` of every schema object but SQLite's own
/// (`sqlite_autoindex_*`, `sqlite_sequence`, `sqlite_stat*`).
fn schema_objects(conn: &Connection) -> rusqlite::Result<Vec<(String, String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT type, name, tbl_name FROM sqlite_master
         WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    rows.collect()
}

/// Column names of `table`.
fn table_columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let rows = stmt.query_map([table], |row| row.get(0))?;
    rows.collect()
}

/// Moves the seed's rows into the current layout; returns (migrated,
/// rejected) row counts. Runs inside the caller's transaction, so a failure
/// leaves the seed's file as it was.
fn migrate_from_seed(conn: &Connection) -> Result<(u64, u64), StorageError> {
    const OP: &str = "open: migrate the seed database";
    let sql = StorageError::sqlite;
    conn.execute_batch(TABLES_SQL).map_err(sql(OP))?;

    // Series whose strings parse; the rest stay behind and are rejected.
    // `typeof` guards: the seed's columns had no NOT NULL and no strict types.
    let mut distinct = conn
        .prepare(
            "SELECT DISTINCT exchange, symbol, interval FROM ohlcv
             WHERE typeof(exchange) = 'text' AND typeof(symbol) = 'text'
               AND typeof(interval) = 'text'",
        )
        .map_err(sql(OP))?;
    let series: Vec<(String, String, String)> = distinct
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .and_then(|rows| rows.collect())
        .map_err(sql(OP))?;
    drop(distinct);
    for (exchange, symbol, interval) in &series {
        match parse_key(exchange, symbol, interval) {
            Ok(_) => {
                conn.execute(
                    "INSERT INTO series (exchange, symbol, interval) VALUES (?1, ?2, ?3)",
                    [exchange, symbol, interval],
                )
                .map_err(sql(OP))?;
            }
            Err(reason) => {
                warn!(exchange = %exchange, symbol = %symbol, interval = %interval, %reason, "seed series does not parse; its rows are kept aside");
            }
        }
    }

    let total: i64 = conn
        .query_row("SELECT COUNT(*) FROM ohlcv", [], |row| row.get(0))
        .map_err(sql(OP))?;
    // A finite number: NaN is not storable in SQLite, infinities are excluded
    // by the bound. `closed` was written as 0/1 by the seed.
    let migrated = conn
        .execute(
            "INSERT INTO candles (series_id, open_time, open, high, low, close, volume, closed)
             SELECT s.id, o.timestamp, o.open, o.high, o.low, o.close, o.volume, o.closed != 0
             FROM ohlcv AS o
             JOIN series AS s
               ON s.exchange = o.exchange AND s.symbol = o.symbol AND s.interval = o.interval
             WHERE typeof(o.timestamp) = 'integer' AND typeof(o.closed) = 'integer'
               AND typeof(o.open) IN ('integer', 'real') AND abs(o.open) <= 1.7976931348623157e308
               AND typeof(o.high) IN ('integer', 'real') AND abs(o.high) <= 1.7976931348623157e308
               AND typeof(o.low) IN ('integer', 'real') AND abs(o.low) <= 1.7976931348623157e308
               AND typeof(o.close) IN ('integer', 'real') AND abs(o.close) <= 1.7976931348623157e308
               AND typeof(o.volume) IN ('integer', 'real') AND abs(o.volume) <= 1.7976931348623157e308",
            [],
        )
        .map_err(sql(OP))?;
    let migrated = u64::try_from(migrated).unwrap_or(u64::MAX);
    let total = u64::try_from(total).unwrap_or_default();

    let mut rejected = 0;
    if migrated < total {
        conn.execute_batch(&format!(
            "CREATE TABLE {REJECTED_TABLE} (
                 exchange TEXT, symbol TEXT, interval TEXT, timestamp INTEGER,
                 open REAL, high REAL, low REAL, close REAL, volume REAL, closed INTEGER
             )"
        ))
        .map_err(sql(OP))?;
        let kept = conn
            .execute(
                &format!(
                    "INSERT INTO {REJECTED_TABLE}
             SELECT o.exchange, o.symbol, o.interval, o.timestamp,
                    o.open, o.high, o.low, o.close, o.volume, o.closed
             FROM ohlcv AS o
             WHERE NOT EXISTS (
                 SELECT 1 FROM candles AS c JOIN series AS s ON s.id = c.series_id
                 WHERE s.exchange = o.exchange AND s.symbol = o.symbol
                   AND s.interval = o.interval AND c.open_time = o.timestamp
                   AND typeof(o.timestamp) = 'integer'
             )"
                ),
                [],
            )
            .map_err(sql(OP))?;
        rejected = u64::try_from(kept).unwrap_or(u64::MAX);
    }

    conn.execute_batch("DROP INDEX IF EXISTS idx_lookup; DROP TABLE ohlcv;")
        .map_err(sql(OP))?;
    create_schema(conn).map_err(sql(OP))?;
    Ok((migrated, rejected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ohlcv_domain::{ExchangeId, Interval, Symbol};
    use std::time::Instant;

    const M: i64 = 60_000;

    /// One row of the seed's `ohlcv` table, column by column.
    type SeedRow = (String, String, String, i64, f64, f64, f64, f64, f64, i64);

    fn key(exchange: ExchangeId, symbol: &str, interval: Interval) -> SeriesKey {
        SeriesKey::new(
            exchange,
            Symbol::new(symbol).expect("valid test symbol"),
            interval,
        )
    }

    fn btc() -> SeriesKey {
        key(ExchangeId::BinanceFutures, "BTCUSDT", Interval::M1)
    }

    fn candle(key: &SeriesKey, minute: i64, close: f64) -> Candle {
        Candle {
            key: key.clone(),
            open_time: minute * M,
            open: 10.0,
            high: 100.0,
            low: 1.0,
            close,
            volume: 2.5,
            closed: true,
        }
    }

    fn minutes(candles: &[Candle]) -> Vec<i64> {
        candles.iter().map(|c| c.open_time / M).collect()
    }

    fn q(from: Option<i64>, to: Option<i64>, limit: usize) -> CandleQuery {
        CandleQuery {
            from: from.map(|m| m * M),
            to: to.map(|m| m * M),
            limit,
        }
    }

    fn all() -> CandleQuery {
        q(None, None, usize::MAX)
    }

    fn fresh() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::open(&dir.path().join("ohlcv.db")).expect("open");
        (dir, db)
    }

    /// Every file in `dir` with its bytes, to prove a refused file (and its
    /// directory) was left exactly as it was.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| {
                let path = e.expect("entry").path();
                let bytes = fs::read(&path).expect("read");
                (path, bytes)
            })
            .collect();
        files.sort();
        files
    }

    /// A file in the seed's layout, written the way the Node.js backend did.
    fn create_seed_db(path: &Path, rows: &[(&str, &str, &str, i64, f64, i64)]) {
        let conn = Connection::open(path).expect("open seed");
        conn.execute_batch(
            "CREATE TABLE ohlcv (
               exchange TEXT, symbol TEXT, interval TEXT, timestamp INTEGER,
               open REAL, high REAL, low REAL, close REAL, volume REAL, closed INTEGER,
               PRIMARY KEY (exchange, symbol, interval, timestamp));
             CREATE INDEX idx_lookup ON ohlcv(exchange, symbol, interval, timestamp);",
        )
        .expect("seed schema");
        for (exchange, symbol, interval, ts, close, closed) in rows {
            conn.execute(
                "INSERT INTO ohlcv VALUES (?1, ?2, ?3, ?4, 1.0, 2.0, 0.5, ?5, 7.0, ?6)",
                params![exchange, symbol, interval, ts, close, closed],
            )
            .expect("seed row");
        }
    }

    fn pragma_i64(db: &Database, name: &str) -> i64 {
        db.conn
            .pragma_query_value(None, name, |row| row.get(0))
            .expect("pragma")
    }

    fn object_names(db: &Database) -> Vec<(String, String)> {
        schema_objects(&db.conn)
            .expect("objects")
            .into_iter()
            .map(|(kind, name, _)| (kind, name))
            .collect()
    }

    /// Stores closed 1m candles of `k` at each of `minutes`.
    fn store(db: &mut Database, k: &SeriesKey, minutes: impl IntoIterator<Item = i64>) {
        let batch: Vec<Candle> = minutes.into_iter().map(|m| candle(k, m, 1.0)).collect();
        db.insert_batch(&batch).expect("insert");
    }

    /// A hole from minute `from` to minute `to`.
    fn h(from: i64, to: i64) -> Hole {
        Hole {
            from: from * M,
            to: to * M,
        }
    }

    #[test]
    fn holes_are_the_gaps_between_the_first_and_last_candle() {
        let (_dir, mut db) = fresh();
        let k = btc();
        assert_eq!(db.holes(&k, 10).expect("unknown series"), vec![]);
        store(&mut db, &k, 0..5);
        assert_eq!(db.holes(&k, 10).expect("none"), vec![]);

        // One missing just after the first, one just before the last, and
        // a longer one in between.
        let (_dir, mut db) = fresh();
        store(&mut db, &k, [0, 2, 3, 7, 8, 9, 11]);
        let cases: &[(usize, Vec<Hole>)] = &[
            (10, vec![h(1, 1), h(4, 6), h(10, 10)]),
            (2, vec![h(1, 1), h(4, 6)]),
            (1, vec![h(1, 1)]),
            (0, vec![]),
        ];
        for (limit, want) in cases {
            assert_eq!(&db.holes(&k, *limit).expect("holes"), want, "limit {limit}");
        }
        // Other series and intervals are separate.
        let eth = key(ExchangeId::BinanceFutures, "ETHUSDT", Interval::M1);
        store(&mut db, &eth, [0, 1]);
        assert_eq!(db.holes(&eth, 10).expect("eth"), vec![]);
        let hourly = key(ExchangeId::BinanceFutures, "BTCUSDT", Interval::H1);
        store(&mut db, &hourly, [0, 60, 240]);
        assert_eq!(db.holes(&hourly, 10).expect("1h"), vec![h(120, 180)]);
    }

    #[test]
    fn queued_candles_count_as_stored_anywhere_in_the_series() {
        let (_dir, mut db) = fresh();
        let k = btc();
        let minutes = |ms: &[i64]| ms.iter().map(|m| m * 60_000).collect::<Vec<i64>>();
        // Nothing stored yet: the queue alone has holes.
        assert_eq!(
            db.holes_among(&k, 10, &minutes(&[0, 1, 4]))
                .expect("queue only"),
            vec![h(2, 3)]
        );
        store(&mut db, &k, [5, 6, 9]);
        // Queued before, inside and after the stored range, and one that
        // is stored too.
        assert_eq!(
            db.holes_among(&k, 10, &minutes(&[0, 3, 6, 8, 12]))
                .expect("merged"),
            vec![h(1, 2), h(4, 4), h(7, 7), h(10, 11)]
        );
        assert_eq!(db.holes(&k, 10).expect("stored only"), vec![h(7, 8)]);
    }

    #[test]
    fn the_holes_query_walks_the_primary_key_without_sorting() {
        let (_dir, db) = fresh();
        let plan: Vec<String> = db
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {HOLES_SQL}"))
            .expect("explain")
            .query_map([1], |row| row.get(3))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        let plan = plan.join("; ");
        assert!(plan.contains("USING PRIMARY KEY (series_id=?)"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    #[test]
    fn recorded_exchange_holes_are_left_out_and_recorded_once() {
        let (_dir, mut db) = fresh();
        let k = btc();
        store(&mut db, &k, [0, 10, 20, 30]);
        assert_eq!(
            db.holes(&k, 10).expect("holes"),
            vec![h(1, 9), h(11, 19), h(21, 29)]
        );

        // All of one gap, a middle part of another, the start of a third.
        db.record_exchange_hole(&k, M, 9 * M).expect("record");
        db.record_exchange_hole(&k, 13 * M, 15 * M).expect("record");
        db.record_exchange_hole(&k, 21 * M, 22 * M).expect("record");
        let want = vec![h(11, 12), h(16, 19), h(23, 29)];
        assert_eq!(db.holes(&k, 10).expect("holes"), want);
        assert_eq!(db.holes(&k, 2).expect("holes"), want[..2].to_vec());

        // The same range again, a covered one, an overlapping and an
        // adjacent one: merged, never duplicated.
        let count = |db: &Database| -> i64 {
            db.conn
                .query_row("SELECT COUNT(*) FROM exchange_holes", [], |r| r.get(0))
                .expect("count")
        };
        db.record_exchange_hole(&k, M, 9 * M).expect("same");
        db.record_exchange_hole(&k, 2 * M, 3 * M).expect("covered");
        assert_eq!(count(&db), 3);
        db.record_exchange_hole(&k, 14 * M, 17 * M)
            .expect("overlapping");
        db.record_exchange_hole(&k, 18 * M, 19 * M)
            .expect("adjacent");
        assert_eq!(count(&db), 3);
        assert_eq!(db.holes(&k, 10).expect("holes"), vec![h(11, 12), h(23, 29)]);
        let err = db
            .record_exchange_hole(&k, 5 * M, 4 * M)
            .expect_err("empty");
        assert!(matches!(err, StorageError::InvalidHole { .. }), "{err}");

        // A hole recorded before any candle of its series is written.
        let eth = key(ExchangeId::BinanceFutures, "ETHUSDT", Interval::M1);
        db.record_exchange_hole(&eth, 2 * M, 3 * M)
            .expect("new series");
        store(&mut db, &eth, [0, 1, 4]);
        assert_eq!(db.holes(&eth, 10).expect("holes"), vec![]);

        // Persistent, and gone with everything else on clear.
        let path = db.path().to_path_buf();
        drop(db);
        let mut db = Database::open(&path).expect("reopen");
        assert_eq!(db.holes(&k, 10).expect("holes"), vec![h(11, 12), h(23, 29)]);
        db.clear().expect("clear");
        assert_eq!(count(&db), 0);
        store(&mut db, &k, [0, 10]);
        assert_eq!(db.holes(&k, 10).expect("holes"), vec![h(1, 9)]);
    }

    #[test]
    fn retention_drops_exchange_holes_older_than_the_oldest_candle() {
        let (_dir, mut db) = fresh();
        let k = btc();
        store(&mut db, &k, [0, 5, 10, 11, 20]);
        db.record_exchange_hole(&k, M, 4 * M).expect("record");
        db.record_exchange_hole(&k, 6 * M, 9 * M).expect("record");
        db.record_exchange_hole(&k, 12 * M, 19 * M).expect("record");
        assert_eq!(db.cleanup(&k, 3).expect("cleanup"), 2);
        let left: Vec<i64> = db
            .conn
            .prepare("SELECT from_time FROM exchange_holes ORDER BY from_time")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(left, vec![12 * M]);
    }

    #[test]
    fn completeness_counts_expected_stored_missing_and_the_newest_closed_age() {
        let (_dir, mut db) = fresh();
        assert_eq!(db.completeness(0).expect("empty"), vec![]);
        let k = btc();
        // Minutes 0..=20: 1..=3 missing, 10..=12 an exchange hole, 20 open.
        store(
            &mut db,
            &k,
            (0..20).filter(|m| !(1..=3).contains(m) && !(10..=12).contains(m)),
        );
        let mut open = candle(&k, 20, 1.0);
        open.closed = false;
        db.insert(&open).expect("open candle");
        db.record_exchange_hole(&k, 10 * M, 12 * M).expect("record");
        // Reaching past the stored range: only the part inside counts.
        db.record_exchange_hole(&k, 25 * M, 30 * M).expect("record");
        let eth = key(ExchangeId::BinanceFutures, "ETHUSDT", Interval::M1);
        let mut only_open = candle(&eth, 7, 1.0);
        only_open.closed = false;
        db.insert(&only_open).expect("eth");

        let now = 21 * M + 500;
        let got = db.completeness(now).expect("completeness");
        assert_eq!(
            got,
            vec![
                SeriesCompleteness {
                    key: k.clone(),
                    first_open_time: 0,
                    last_open_time: 20 * M,
                    expected: 21,
                    stored: 15,
                    missing: 3,
                    exchange_holes: 2,
                    exchange_hole_candles: 3,
                    newest_closed_open_time: Some(19 * M),
                    newest_closed_age_ms: Some(now - 20 * M),
                },
                SeriesCompleteness {
                    key: eth,
                    first_open_time: 7 * M,
                    last_open_time: 7 * M,
                    expected: 1,
                    stored: 1,
                    missing: 0,
                    exchange_holes: 0,
                    exchange_hole_candles: 0,
                    newest_closed_open_time: None,
                    newest_closed_age_ms: None,
                },
            ]
        );
        // The missing count agrees with the holes.
        let missing: i64 = db
            .holes(&k, 100)
            .expect("holes")
            .iter()
            .map(|h| (h.to - h.from) / M + 1)
            .sum();
        assert_eq!(missing, 3);
    }

    #[test]
    fn a_version_1_database_gets_the_exchange_holes_table() {
        let (dir, mut db) = fresh();
        store(&mut db, &btc(), [0, 2]);
        db.conn
            .execute_batch("DROP TABLE exchange_holes; PRAGMA user_version = 1;")
            .expect("downgrade");
        drop(db);
        let mut db = Database::open(&dir.path().join("ohlcv.db")).expect("upgrade");
        assert_eq!(pragma_i64(&db, "user_version"), SCHEMA_VERSION);
        db.record_exchange_hole(&btc(), M, M).expect("record");
        assert_eq!(db.holes(&btc(), 10).expect("holes"), vec![]);
        assert_eq!(db.get_count(&btc()).expect("count"), 2);
    }

    #[test]
    fn a_reader_sees_committed_candles_refuses_writes_and_creates_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ohlcv.db");
        assert!(Database::open_reader(&path).is_err(), "no file, no reader");
        assert!(!path.exists(), "a reader creates nothing");

        let mut writer = Database::open(&path).expect("open");
        let mut reader = Database::open_reader(&path).expect("reader");
        assert_eq!(reader.get_candles(&btc(), &all()).expect("read"), vec![]);
        // Written after the reader opened (and after it looked the series
        // up): the next read sees it.
        writer
            .insert_batch(&[candle(&btc(), 0, 1.0)])
            .expect("write");
        assert_eq!(reader.get_candles(&btc(), &all()).expect("read").len(), 1);
        assert_eq!(reader.series().expect("series").len(), 1);

        let refused = reader.insert_batch(&[candle(&btc(), 1, 2.0)]).unwrap_err();
        let message = ohlcv_domain::ErrorChain(&refused).to_string();
        assert!(message.contains("readonly"), "{message}");
        assert_eq!(pragma_i64(&reader, "mmap_size"), MMAP_BYTES);
    }

    #[test]
    fn creates_parent_directories_and_a_marked_wal_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/c/ohlcv.db");
        let db = Database::open(&path).expect("open");
        assert_eq!(db.path(), path);
        assert!(path.is_file());
        let mode: String = db
            .conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .expect("journal_mode");
        assert_eq!(mode, "wal");
        assert_eq!(pragma_i64(&db, "synchronous"), 1, "NORMAL");
        assert_eq!(pragma_i64(&db, "cache_size"), -PAGE_CACHE_KIB);
        assert_eq!(pragma_i64(&db, "mmap_size"), MMAP_BYTES);
        assert_eq!(pragma_i64(&db, "wal_autocheckpoint"), AUTO_CHECKPOINT_PAGES);
        assert_eq!(pragma_i64(&db, "journal_size_limit"), WAL_SIZE_LIMIT);
        assert_eq!(pragma_i64(&db, "application_id"), APPLICATION_ID);
        assert_eq!(pragma_i64(&db, "user_version"), SCHEMA_VERSION);
        assert_eq!(
            object_names(&db),
            vec![
                ("table".into(), "candles".into()),
                ("table".into(), "exchange_holes".into()),
                ("view".into(), "ohlcv".into()),
                ("table".into(), "series".into()),
            ]
        );
    }

    #[test]
    fn round_trips_and_persists_across_reopen() {
        let (dir, mut db) = fresh();
        let k = btc();
        let mut open = candle(&k, 3, 42.5);
        open.closed = false;
        let batch = vec![candle(&k, 1, 40.0), candle(&k, 2, 41.0), open];
        assert_eq!(db.insert_batch(&batch).expect("insert"), 3);
        assert_eq!(db.get_candles(&k, &all()).expect("read"), batch);
        drop(db);

        let db = Database::open(&dir.path().join("ohlcv.db")).expect("reopen");
        assert!(db.series_ids.is_empty(), "cache starts empty");
        assert_eq!(db.get_candles(&k, &all()).expect("read"), batch);
        assert_eq!(db.get_last_timestamp(&k).expect("last"), Some(3 * M));
        assert_eq!(db.get_count(&k).expect("count"), 3);
    }

    #[test]
    fn latest_write_wins() {
        let (_dir, mut db) = fresh();
        let k = btc();
        let mut first = candle(&k, 1, 10.0);
        first.closed = false;
        db.insert(&first).expect("insert");
        db.insert(&candle(&k, 1, 11.0)).expect("update");
        // Within one batch the later duplicate wins too.
        db.insert_batch(&[candle(&k, 2, 1.0), candle(&k, 2, 2.0)])
            .expect("batch");
        let got = db.get_candles(&k, &all()).expect("read");
        assert_eq!(got, vec![candle(&k, 1, 11.0), candle(&k, 2, 2.0)]);
        assert_eq!(db.get_count(&k).expect("count"), 2);
    }

    #[test]
    fn an_interleaved_batch_is_stored_in_key_order_with_the_latest_update_winning() {
        let (_dir, mut db) = fresh();
        let (b, e) = (btc(), key(ExchangeId::Simulated, "ETHUSDT", Interval::M1));
        // Arrival order: series interleaved, open times out of order, and
        // updates of one candle far apart; the batch is written sorted by
        // key, and the sort must not let an earlier update overtake a
        // later one.
        let mut batch = Vec::new();
        for round in 0..20 {
            for minute in [3, 1, 2] {
                batch.push(candle(&b, minute, f64::from(round)));
                batch.push(candle(&e, minute, f64::from(100 + round)));
            }
        }
        assert_eq!(db.insert_batch(&batch).expect("batch"), batch.len());
        let latest =
            |k: &SeriesKey, close: f64| (1..=3).map(|m| candle(k, m, close)).collect::<Vec<_>>();
        assert_eq!(db.get_candles(&b, &all()).expect("read"), latest(&b, 19.0));
        assert_eq!(db.get_candles(&e, &all()).expect("read"), latest(&e, 119.0));
    }

    #[test]
    fn queries_follow_candle_query_semantics() {
        let (_dir, mut db) = fresh();
        let k = btc();
        let other = key(ExchangeId::BinanceFutures, "BTCUSDT", Interval::M5);
        let batch: Vec<Candle> = (1..=10).map(|m| candle(&k, m, m as f64)).collect();
        db.insert_batch(&batch).expect("insert");
        db.insert(&candle(&other, 5, 1.0)).expect("other series");

        let cases: &[(CandleQuery, Vec<i64>)] = &[
            (q(None, None, 3), vec![8, 9, 10]),
            (q(None, Some(5), 2), vec![4, 5]),
            (q(None, Some(0), 5), vec![]),
            (q(Some(3), None, 2), vec![3, 4]),
            (q(Some(3), Some(4), 10), vec![3, 4]),
            (q(Some(5), Some(5), 10), vec![5]),
            (q(None, None, 100), (1..=10).collect()),
            (q(None, None, usize::MAX), (1..=10).collect()),
            (q(None, None, 0), vec![]),
            (q(Some(6), Some(5), 10), vec![]),
            (q(Some(11), None, 10), vec![]),
        ];
        for (query, want) in cases {
            assert_eq!(
                &minutes(&db.get_candles(&k, query).expect("read")),
                want,
                "{query:?}"
            );
        }
        let unknown = key(ExchangeId::OkxFutures, "ETHUSDT", Interval::H1);
        assert!(db.get_candles(&unknown, &all()).expect("read").is_empty());
        assert_eq!(db.get_last_timestamp(&unknown).expect("last"), None);
        assert_eq!(db.get_count(&unknown).expect("count"), 0);
    }

    #[test]
    fn cleanup_keeps_the_newest_records() {
        let (_dir, mut db) = fresh();
        let k = btc();
        let other = key(ExchangeId::BybitFutures, "BTCUSDT", Interval::M1);
        let batch: Vec<Candle> = (1..=10).map(|m| candle(&k, m, 1.0)).collect();
        db.insert_batch(&batch).expect("insert");
        db.insert(&candle(&other, 1, 1.0)).expect("other");

        assert_eq!(db.cleanup(&k, 100).expect("cleanup"), 0);
        assert_eq!(db.cleanup(&k, 10).expect("cleanup"), 0);
        assert_eq!(db.cleanup(&k, 3).expect("cleanup"), 7);
        assert_eq!(
            minutes(&db.get_candles(&k, &all()).expect("read")),
            vec![8, 9, 10]
        );
        assert_eq!(
            db.get_count(&other).expect("count"),
            1,
            "other series untouched"
        );
        assert_eq!(db.cleanup(&k, u64::MAX).expect("cleanup"), 0);
        assert_eq!(db.cleanup(&k, 0).expect("cleanup"), 3);
        assert_eq!(db.get_count(&k).expect("count"), 0);
        let unknown = key(ExchangeId::OkxFutures, "ETHUSDT", Interval::H1);
        assert_eq!(db.cleanup(&unknown, 0).expect("cleanup"), 0);
    }

    #[test]
    fn series_summaries_are_sorted_and_skip_empty_series() {
        let (_dir, mut db) = fresh();
        let a = key(ExchangeId::OkxFutures, "ETHUSDT", Interval::M1);
        let b = key(ExchangeId::BinanceFutures, "ETHUSDT", Interval::H1);
        let c = key(ExchangeId::BinanceFutures, "BTCUSDT", Interval::M1);
        let empty = key(ExchangeId::Simulated, "BTCUSDT", Interval::M1);
        db.insert_batch(&[
            candle(&a, 5, 1.0),
            candle(&b, 60, 1.0),
            candle(&b, 120, 1.0),
            candle(&c, 1, 1.0),
            candle(&c, 3, 1.0),
            candle(&c, 2, 1.0),
            candle(&empty, 1, 1.0),
        ])
        .expect("insert");
        db.cleanup(&empty, 0).expect("cleanup");
        let summaries = db.series().expect("series");
        assert_eq!(
            summaries,
            vec![
                SeriesSummary {
                    key: c,
                    count: 3,
                    first: M,
                    last: 3 * M
                },
                SeriesSummary {
                    key: b,
                    count: 2,
                    first: 60 * M,
                    last: 120 * M
                },
                SeriesSummary {
                    key: a,
                    count: 1,
                    first: 5 * M,
                    last: 5 * M
                },
            ]
        );
    }

    #[test]
    fn size_on_disk_counts_the_files_and_clear_gives_space_back() {
        let (dir, mut db) = fresh();
        let k = btc();
        let batch: Vec<Candle> = (0..20_000).map(|m| candle(&k, m, 1.0)).collect();
        db.insert_batch(&batch).expect("insert");
        let full = db.size_on_disk().expect("size");
        assert!(full > 100_000, "{full} bytes");

        db.clear().expect("clear");
        assert!(db.series().expect("series").is_empty());
        assert_eq!(db.get_count(&k).expect("count"), 0);
        assert!(db.get_candles(&k, &all()).expect("read").is_empty());
        let cleared = db.size_on_disk().expect("size");
        assert!(cleared > 0);
        assert!(
            cleared < full / 4,
            "{cleared} bytes after clear, {full} before"
        );
        let wal = dir.path().join("ohlcv.db-wal");
        assert_eq!(fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
        // The schema is kept: writing works again, with a fresh series id.
        db.insert(&candle(&k, 1, 1.0)).expect("insert after clear");
        assert_eq!(db.get_count(&k).expect("count"), 1);
        assert_eq!(pragma_i64(&db, "user_version"), SCHEMA_VERSION);
    }

    #[test]
    fn a_stored_closed_candle_never_goes_back_to_open() {
        let (_dir, mut db) = fresh();
        let k = btc();
        let mut closed = candle(&k, 1, 2.0);
        closed.closed = true;
        db.insert_batch(&[closed.clone()]).expect("closed");
        let mut stale = candle(&k, 1, 1.0);
        stale.closed = false;
        db.insert_batch(&[stale]).expect("stale open write");
        assert_eq!(
            db.get_candles(&k, &all()).expect("read"),
            vec![closed.clone()]
        );
        // A corrected closed candle still replaces it.
        let mut corrected = closed;
        corrected.close = 2.5;
        db.insert_batch(&[corrected.clone()]).expect("corrected");
        assert_eq!(db.get_candles(&k, &all()).expect("read"), vec![corrected]);
    }

    #[test]
    fn after_a_checkpoint_the_main_file_alone_holds_every_candle() {
        let (dir, mut db) = fresh();
        let k = btc();
        let batch: Vec<Candle> = (0..500).map(|m| candle(&k, m, 1.0)).collect();
        db.insert_batch(&batch).expect("insert");
        let wal = dir.path().join("ohlcv.db-wal");
        assert!(
            fs::metadata(&wal).expect("wal").len() > 0,
            "writes go to the WAL first"
        );

        db.checkpoint().expect("checkpoint");
        assert_eq!(fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
        // A copy of the main file, without its WAL, is a complete backup.
        let copy = dir.path().join("copy.db");
        fs::copy(dir.path().join("ohlcv.db"), &copy).expect("copy");
        let copied = Database::open(&copy).expect("open the copy");
        assert_eq!(copied.get_candles(&k, &all()).expect("read"), batch);
    }

    #[test]
    fn non_finite_candles_are_refused_or_skipped() {
        let (_dir, mut db) = fresh();
        let k = btc();
        let mut bad = candle(&k, 1, 1.0);
        bad.high = f64::NAN;
        let err = db.insert(&bad).expect_err("NaN refused");
        assert!(matches!(err, StorageError::InvalidCandle { .. }), "{err}");
        assert!(!err.is_retryable());
        bad.volume = f64::INFINITY;
        let written = db
            .insert_batch(&[candle(&k, 0, 1.0), bad, candle(&k, 2, 1.0)])
            .expect("batch");
        assert_eq!(written, 2);
        assert_eq!(
            minutes(&db.get_candles(&k, &all()).expect("read")),
            vec![0, 2]
        );
        assert_eq!(db.insert_batch(&[]).expect("empty"), 0);
    }

    #[test]
    fn the_ohlcv_view_answers_the_seeds_query() {
        let (_dir, mut db) = fresh();
        let k = btc();
        let mut open = candle(&k, 2, 5.0);
        open.closed = false;
        db.insert_batch(&[open, candle(&k, 1, 4.0)])
            .expect("insert");
        db.insert(&candle(
            &key(ExchangeId::OkxFutures, "BTCUSDT", Interval::M1),
            1,
            9.0,
        ))
        .expect("other");

        let mut stmt = db
            .conn
            .prepare(
                "SELECT * FROM ohlcv WHERE exchange=? AND symbol=? AND interval=? ORDER BY timestamp",
            )
            .expect("prepare");
        let names: Vec<&str> = stmt.column_names().collect();
        assert_eq!(names, SEED_COLUMNS);
        let rows: Vec<SeedRow> = stmt
            .query_map(["binance_futures", "BTCUSDT", "1m"], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        let s = |x: &str| x.to_owned();
        assert_eq!(
            rows,
            vec![
                (
                    s("binance_futures"),
                    s("BTCUSDT"),
                    s("1m"),
                    M,
                    10.0,
                    100.0,
                    1.0,
                    4.0,
                    2.5,
                    1
                ),
                (
                    s("binance_futures"),
                    s("BTCUSDT"),
                    s("1m"),
                    2 * M,
                    10.0,
                    100.0,
                    1.0,
                    5.0,
                    2.5,
                    0
                ),
            ]
        );
    }

    #[test]
    fn migrates_a_seed_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ohlcv.db");
        create_seed_db(
            &path,
            &[
                ("binance_futures", "BTCUSDT", "1m", 2 * M, 2.0, 1),
                ("binance_futures", "BTCUSDT", "1m", M, 1.0, 1),
                ("binance_futures", "BTCUSDT", "1m", 3 * M, 3.0, 0),
                ("bybit_futures", "ETHUSDT", "1h", 0, 9.0, 1),
            ],
        );
        let mut db = Database::open(&path).expect("migrate");
        assert_eq!(pragma_i64(&db, "user_version"), SCHEMA_VERSION);
        assert_eq!(pragma_i64(&db, "application_id"), APPLICATION_ID);
        assert_eq!(
            object_names(&db),
            vec![
                ("table".into(), "candles".into()),
                ("table".into(), "exchange_holes".into()),
                ("view".into(), "ohlcv".into()),
                ("table".into(), "series".into()),
            ],
            "the seed's table and index are gone, the view replaces them"
        );

        let k = btc();
        let got = db.get_candles(&k, &all()).expect("read");
        assert_eq!(minutes(&got), vec![1, 2, 3]);
        assert_eq!(
            got[2],
            Candle {
                key: k.clone(),
                open_time: 3 * M,
                open: 1.0,
                high: 2.0,
                low: 0.5,
                close: 3.0,
                volume: 7.0,
                closed: false,
            }
        );
        let timestamps: Vec<i64> = db
            .conn
            .prepare(
                "SELECT * FROM ohlcv WHERE exchange=? AND symbol=? AND interval=? ORDER BY timestamp",
            )
            .expect("prepare")
            .query_map(["binance_futures", "BTCUSDT", "1m"], |r| r.get(3))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(timestamps, vec![M, 2 * M, 3 * M]);
        assert_eq!(db.series().expect("series").len(), 2);

        // New writes land next to the migrated rows; reopening is a no-op.
        db.insert(&candle(&k, 4, 4.0)).expect("insert");
        drop(db);
        let db = Database::open(&path).expect("reopen");
        assert_eq!(db.get_count(&k).expect("count"), 4);
    }

    #[test]
    fn seed_rows_that_do_not_parse_are_kept_aside_not_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ohlcv.db");
        create_seed_db(
            &path,
            &[
                ("binance_futures", "BTCUSDT", "1m", M, 1.0, 1),
                ("kraken", "BTCUSDT", "1m", M, 1.0, 1),
                ("binance_futures", "BTC/USDT", "1m", M, 1.0, 1),
                ("binance_futures", "BTCUSDT", "1M", M, 1.0, 1),
            ],
        );
        let conn = Connection::open(&path).expect("open seed");
        conn.execute(
            "INSERT INTO ohlcv VALUES ('binance_futures', 'BTCUSDT', '1m', 120000, 'abc', 2, 0.5, 1, 7, 1)",
            [],
        )
        .expect("text price");
        conn.execute(
            "INSERT INTO ohlcv VALUES ('binance_futures', 'BTCUSDT', '1m', 180000, 1, 2, 0.5, 1, NULL, 1)",
            [],
        )
        .expect("null volume");
        drop(conn);

        let db = Database::open(&path).expect("migrate");
        assert_eq!(
            minutes(&db.get_candles(&btc(), &all()).expect("read")),
            vec![1]
        );
        let rejected: i64 = db
            .conn
            .query_row("SELECT COUNT(*) FROM ohlcv_rejected", [], |r| r.get(0))
            .expect("rejected table");
        assert_eq!(rejected, 5);
        let exchanges: Vec<String> = db
            .conn
            .prepare("SELECT exchange || '/' || symbol || '/' || interval || '/' || timestamp FROM ohlcv_rejected ORDER BY 1")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            exchanges,
            vec![
                "binance_futures/BTC/USDT/1m/60000",
                "binance_futures/BTCUSDT/1M/60000",
                "binance_futures/BTCUSDT/1m/120000",
                "binance_futures/BTCUSDT/1m/180000",
                "kraken/BTCUSDT/1m/60000",
            ]
        );
        drop(db);
        // A database holding the rejected table is still ours.
        let mut db = Database::open(&path).expect("reopen");
        db.clear().expect("clear");
        assert!(!object_names(&db).iter().any(|(_, n)| n == REJECTED_TABLE));
    }

    #[test]
    fn an_empty_existing_file_gets_the_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ohlcv.db");
        fs::write(&path, b"").expect("touch");
        let db = Database::open(&path).expect("open");
        assert_eq!(pragma_i64(&db, "user_version"), SCHEMA_VERSION);
    }

    #[test]
    fn a_file_of_ours_missing_an_object_is_repaired() {
        let (dir, db) = fresh();
        db.conn.execute_batch("DROP VIEW ohlcv").expect("drop view");
        drop(db);
        let db = Database::open(&dir.path().join("ohlcv.db")).expect("reopen");
        assert!(object_names(&db).contains(&("view".into(), "ohlcv".into())));
    }

    /// Opens `path`, expecting a refusal, and checks nothing in its directory
    /// changed.
    fn assert_refused(path: &Path) -> StorageError {
        let dir = path.parent().expect("parent");
        let before = snapshot(dir);
        let err = Database::open(path).expect_err("must be refused");
        assert_eq!(snapshot(dir), before, "refused file was modified: {err}");
        assert!(!err.is_retryable(), "{err}");
        err
    }

    #[test]
    fn refuses_a_newer_schema_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ohlcv.db");
        drop(Database::open(&path).expect("create"));
        let conn = Connection::open(&path).expect("open");
        conn.pragma_update(None, "user_version", 99).expect("bump");
        drop(conn);
        let err = assert_refused(&path);
        assert!(
            matches!(
                err,
                StorageError::NewerSchema {
                    found: 99,
                    supported: SCHEMA_VERSION
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("99"), "{err}");
    }

    #[test]
    fn refuses_another_applications_database_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("other.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch("PRAGMA application_id = 1234; CREATE TABLE ohlcv (x)")
            .expect("foreign");
        drop(conn);
        let err = assert_refused(&path);
        assert!(err.to_string().contains("another application"), "{err}");
    }

    #[test]
    fn refuses_unknown_tables_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A plain database of someone else's.
        let path = dir.path().join("users.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
            .expect("users");
        drop(conn);
        let err = assert_refused(&path);
        assert!(matches!(err, StorageError::Foreign { .. }), "{err}");
        assert!(err.to_string().contains("\"users\""), "{err}");

        // A seed database with an extra table.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("seed.db");
        create_seed_db(&path, &[("binance_futures", "BTCUSDT", "1m", M, 1.0, 1)]);
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch("CREATE TABLE notes (t TEXT)")
            .expect("notes");
        drop(conn);
        let err = assert_refused(&path);
        assert!(err.to_string().contains("\"notes\""), "{err}");

        // A table named ohlcv that is not the seed's.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lookalike.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch("CREATE TABLE ohlcv (ts INTEGER, price REAL)")
            .expect("lookalike");
        drop(conn);
        let err = assert_refused(&path);
        assert!(err.to_string().contains("columns"), "{err}");

        // Our own layout with an extra table.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ours.db");
        let db = Database::open(&path).expect("create");
        db.conn
            .execute_batch("CREATE TABLE extra (x)")
            .expect("extra");
        drop(db);
        let err = assert_refused(&path);
        assert!(err.to_string().contains("\"extra\""), "{err}");
    }

    #[test]
    fn refuses_a_live_wal_database_without_touching_its_main_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("live.db");
        let owner = Connection::open(&path).expect("open");
        owner
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE users (x); INSERT INTO users VALUES (1);",
            )
            .expect("live");
        let main_before = fs::read(&path).expect("read");
        let wal_before = fs::read(dir.path().join("live.db-wal")).expect("read wal");
        let err = Database::open(&path).expect_err("refused");
        assert!(err.to_string().contains("\"users\""), "{err}");
        assert_eq!(fs::read(&path).expect("read"), main_before);
        assert_eq!(
            fs::read(dir.path().join("live.db-wal")).expect("read wal"),
            wal_before
        );
        let n: i64 = owner
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
            .expect("owner still works");
        assert_eq!(n, 1);
    }

    #[test]
    fn paths_with_uri_special_characters_are_plain_file_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("we ird?#%&=.db");
        drop(Database::open(&path).expect("create"));
        let mut db = Database::open(&path).expect("reopen through the immutable inspection");
        db.insert(&candle(&btc(), 1, 1.0)).expect("insert");
        assert!(path.is_file());
        let relative_uri_lookalike = dir.path().join("file:x.db?mode=memory");
        drop(Database::open(&relative_uri_lookalike).expect("create"));
        assert!(relative_uri_lookalike.is_file());
    }

    #[test]
    fn refuses_a_file_that_is_not_sqlite_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        fs::write(&path, "{\"port\": 3000, \"note\": \"definitely not a database, but long enough to have a header\"}\n".repeat(20))
            .expect("write");
        let err = assert_refused(&path);
        assert!(matches!(err, StorageError::Foreign { .. }), "{err}");
        assert!(err.to_string().contains("not an SQLite database"), "{err}");

        let err = Database::open(dir.path()).expect_err("a directory");
        assert!(err.to_string().contains("directory"), "{err}");
    }

    #[test]
    fn a_locked_database_fails_fast_with_a_retryable_error() {
        let (dir, mut db) = fresh();
        let k = btc();
        let other = Connection::open(dir.path().join("ohlcv.db")).expect("second connection");
        other
            .execute_batch("BEGIN IMMEDIATE")
            .expect("take the write lock");

        let started = Instant::now();
        let err = db.insert(&candle(&k, 1, 1.0)).expect_err("locked");
        assert!(err.is_retryable(), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited {:?}",
            started.elapsed()
        );
        let message = ohlcv_domain::ErrorChain(&err).to_string();
        assert!(message.starts_with("insert_batch: "), "{message}");
        assert_eq!(
            message.matches("database is locked").count(),
            1,
            "{message}"
        );
        // Reads still work under WAL while another connection writes.
        assert_eq!(db.get_count(&k).expect("count"), 0);

        other.execute_batch("COMMIT").expect("release");
        db.insert(&candle(&k, 1, 1.0))
            .expect("succeeds after release");
        assert_eq!(db.get_count(&k).expect("count"), 1);
    }

    #[test]
    fn a_failed_batch_does_not_cache_uncommitted_series_ids() {
        let (dir, mut db) = fresh();
        let k = btc();
        let other = Connection::open(dir.path().join("ohlcv.db")).expect("second connection");
        // Let the batch start, then make it fail at the first upsert via a
        // trigger, so the series row it created is rolled back.
        other
            .execute_batch(
                "CREATE TRIGGER main.fail BEFORE INSERT ON candles \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .expect("trigger");
        let err = db.insert(&candle(&k, 1, 1.0)).expect_err("injected");
        assert!(!err.is_retryable(), "{err}");
        assert!(db.series_ids.is_empty());
        other
            .execute_batch("DROP TRIGGER main.fail")
            .expect("drop trigger");
        db.insert(&candle(&k, 1, 1.0)).expect("insert");
        assert_eq!(db.get_count(&k).expect("count"), 1);
    }

    #[test]
    fn rows_that_do_not_parse_are_reported_not_panicked_on() {
        let (_dir, mut db) = fresh();
        db.insert(&candle(&btc(), 1, 1.0)).expect("insert");
        db.conn
            .execute_batch(
                "INSERT INTO series (id, exchange, symbol, interval) VALUES (99, 'kraken', 'BTCUSDT', '1m');
                 INSERT INTO candles VALUES (99, 60000, 1, 2, 0.5, 1, 1, 1);
                 INSERT INTO candles VALUES (1, 120000, 'abc', 2, 0.5, 1, 1, 1);",
            )
            .expect("tamper");
        let err = db.series().expect_err("bad series");
        assert!(matches!(err, StorageError::BadRow { .. }), "{err}");
        assert!(err.to_string().contains("series id 99"), "{err}");
        assert!(err.to_string().contains("kraken"), "{err}");

        let err = db.get_candles(&btc(), &all()).expect_err("bad price");
        assert!(
            err.to_string()
                .contains("binance_futures/BTCUSDT/1m at open_time 120000"),
            "{err}"
        );
    }
}
