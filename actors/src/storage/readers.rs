//! Reader threads: the reads of the storage actor (`/ohlcv`,
//! `/databaseSymbols`, and the datasources' last-open-time and hole
//! lookups), answered on read-only WAL connections of their own.
//!
//! A read never waits for a batch write, and ingest never waits for a read:
//! WAL lets a reader go on while the storage thread commits, and the
//! storage thread no longer serves reads between its writes.
//!
//! # Nothing disappears between the queue and the commit
//!
//! A read copies what it needs of the queue first, under the queue's lock,
//! and only then reads the database. The storage thread removes a batch
//! from the queue only after its commit, so a candle missing from the copy
//! was already committed when the copy was taken, and the database read,
//! which starts later, sees it. A candle committed between the copy and
//! the read is in both; the queued copy wins the merge
//! ([`merge_overlay`]), and it is the latest update sent before the read.
//!
//! Reads see every update sent before them: under the same lock a reader
//! first moves whatever waits in the candle channel into the queue. Every
//! consumer of that channel (the storage thread, the readers, a last-resort
//! rescue) takes candles out of it only while holding the queue's lock, so
//! two updates of one candle always reach the queue in the order they were
//! sent.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Receiver;
use ohlcv_domain::{Candle, ErrorChain, SeriesKey};
use ohlcv_storage::{
    merge_overlay, CandleQuery, CandleQueue, Database, Hole, SeriesSummary, StorageError,
};
use tokio::sync::oneshot;

use super::worker::{drain_into, lock};

/// Reader threads per process. Two keep `/ohlcv` answered while the other
/// serves a long read (a full `/databaseSymbols` scan, a hole check of a
/// million-candle series), without taking more than the storage thread's
/// share of a small machine.
pub const READER_THREADS: usize = 2;

/// A read, answered by whichever reader thread is free.
pub(super) enum Read {
    Candles {
        key: SeriesKey,
        query: CandleQuery,
        reply: oneshot::Sender<Result<Vec<Candle>, StorageError>>,
    },
    LastOpenTime {
        key: SeriesKey,
        reply: oneshot::Sender<Result<Option<i64>, StorageError>>,
    },
    Series {
        reply: oneshot::Sender<Result<Vec<SeriesSummary>, StorageError>>,
    },
    Holes {
        key: SeriesKey,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<Hole>, StorageError>>,
    },
}

/// What a reader thread shares with the storage thread.
#[derive(Clone)]
pub(super) struct ReaderShare {
    pub reads: Receiver<Read>,
    pub candles: Receiver<Vec<Candle>>,
    pub queue: Arc<Mutex<CandleQueue>>,
}

/// Starts [`READER_THREADS`] readers of the database at `path`, their
/// connections opened now, next to the writer's. They live as long as the
/// process holds a [`StorageHandle`](super::StorageHandle): storage
/// restarts do not touch them.
///
/// # Errors
/// The OS error if a thread cannot be created, as an I/O error with the
/// database's error chain if a connection cannot be opened.
pub(super) fn spawn_readers(path: &Path, share: &ReaderShare) -> std::io::Result<()> {
    for index in 0..READER_THREADS {
        let db = Database::open_reader(path)
            .map_err(|error| std::io::Error::other(ErrorChain(&error).to_string()))?;
        let reader = Reader {
            path: path.to_path_buf(),
            db: Some(db),
            share: share.clone(),
        };
        std::thread::Builder::new()
            .name(format!("storage-reader-{index}"))
            .spawn(move || reader.run())?;
    }
    Ok(())
}

struct Reader {
    path: PathBuf,
    /// Closed by a failed read and opened again by the next one (the file
    /// may have been replaced or repaired meanwhile).
    db: Option<Database>,
    share: ReaderShare,
}

impl Reader {
    fn run(mut self) {
        while let Ok(read) = self.share.reads.recv() {
            // A bug in one read must not take the reader down with it: the
            // asker sees its reply dropped ("storage is not running") and
            // the next read is answered.
            if catch_unwind(AssertUnwindSafe(|| self.answer(read))).is_err() {
                tracing::error!("a storage read panicked; the reader goes on");
                self.db = None;
            }
        }
    }

    fn answer(&mut self, read: Read) {
        match read {
            Read::Candles { key, query, reply } => {
                let queued = self.queued(|queue| queue.range(&key, &query));
                let result = self
                    .with_db(|db| db.get_candles(&key, &query))
                    .map(|stored| merge_overlay(stored, queued, &query));
                let _ = reply.send(result);
            }
            Read::LastOpenTime { key, reply } => {
                let queued = self.queued(|queue| queue.last_open_time(&key));
                let result = self
                    .with_db(|db| db.get_last_timestamp(&key))
                    .map(|stored| stored.max(queued));
                let _ = reply.send(result);
            }
            Read::Series { reply } => {
                let queued = self.queued(|queue| {
                    queue
                        .keys()
                        .map(|key| (key.clone(), queue.open_times(key)))
                        .collect::<Vec<_>>()
                });
                let result = self
                    .with_db(Database::series)
                    .map(|stored| with_queued(stored, queued));
                let _ = reply.send(result);
            }
            Read::Holes { key, limit, reply } => {
                // Queued candles count as present, without writing them
                // early: `batch_interval` stays the user's.
                let queued = self.queued(|queue| queue.open_times(&key));
                let result = self.with_db(|db| db.holes_among(&key, limit, &queued));
                let _ = reply.send(result);
            }
        }
    }

    /// What `copy` takes of the queue, once every update sent so far is in
    /// it (see the module docs).
    fn queued<T>(&self, copy: impl FnOnce(&CandleQueue) -> T) -> T {
        let mut queue = lock(&self.share.queue);
        drain_into(&mut queue, &self.share.candles);
        copy(&queue)
    }

    /// Runs `read` on this reader's connection, opening it if needed; a
    /// failed read closes it, so the next one starts from a fresh open.
    fn with_db<T>(
        &mut self,
        read: impl FnOnce(&Database) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let db = match self.db.take() {
            Some(db) => db,
            None => Database::open_reader(&self.path).inspect_err(|error| {
                tracing::warn!(error = %ErrorChain(error), path = %self.path.display(),
                    "storage reader cannot open the database");
            })?,
        };
        let result = read(&db);
        if result.is_ok() {
            self.db = Some(db);
        }
        result
    }
}

/// Stored series with their queued candles counted in: queued candles
/// newer than the newest stored one are new rows (older queued ones update
/// stored rows, or were committed since the queue was copied), and series
/// that exist only in the queue. `queued` holds each queued series' open
/// times, ascending.
fn with_queued(
    mut series: Vec<SeriesSummary>,
    queued: Vec<(SeriesKey, Vec<i64>)>,
) -> Vec<SeriesSummary> {
    for (key, open_times) in queued {
        match series.iter_mut().find(|s| s.key == key) {
            Some(summary) => {
                let newer = open_times.partition_point(|&t| t <= summary.last);
                let added = &open_times[newer..];
                if let Some(&last) = added.last() {
                    summary.count += added.len() as u64;
                    summary.last = last;
                }
            }
            None => {
                if let (Some(&first), Some(&last)) = (open_times.first(), open_times.last()) {
                    series.push(SeriesSummary {
                        key,
                        count: open_times.len() as u64,
                        first,
                        last,
                    });
                }
            }
        }
    }
    series.sort_by(|a, b| a.key.cmp(&b.key));
    series
}

#[cfg(test)]
mod tests {
    use super::*;
    use ohlcv_domain::{ExchangeId, Interval, Symbol};

    fn key(symbol: &str) -> SeriesKey {
        SeriesKey::new(
            ExchangeId::Simulated,
            Symbol::new(symbol).unwrap(),
            Interval::M1,
        )
    }

    #[test]
    fn queued_candles_add_to_stored_series_only_past_their_newest_row() {
        let stored = vec![SeriesSummary {
            key: key("BTCUSDT"),
            count: 3,
            first: 0,
            last: 120_000,
        }];
        let queued = vec![
            // 60 000 and 120 000 update stored rows; 180 000 is new.
            (key("BTCUSDT"), vec![60_000, 120_000, 180_000]),
            (key("ETHUSDT"), vec![0, 60_000]),
        ];
        let series = with_queued(stored, queued);
        assert_eq!(
            series,
            vec![
                SeriesSummary {
                    key: key("BTCUSDT"),
                    count: 4,
                    first: 0,
                    last: 180_000,
                },
                SeriesSummary {
                    key: key("ETHUSDT"),
                    count: 2,
                    first: 0,
                    last: 60_000,
                },
            ]
        );
    }
}
