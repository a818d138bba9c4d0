//! The side of the storage actor that other actors hold.

use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use ohlcv_domain::{Candle, SeriesKey};
use ohlcv_storage::rescue::RescueFile;
use ohlcv_storage::{
    CandleQuery, CandleQueue, Hole, SeriesCompleteness, SeriesSummary, StorageError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::readers::Read;
use super::worker::{Request, StorageSettings};
use super::{MAX_SINK_BATCH, MAX_SINK_OVERFLOW};

/// How a shutdown of the storage thread ended: what the exit code of the
/// process reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushOutcome {
    /// Every queued candle is in the database.
    Saved {
        /// Rows written by the final flush.
        rows: usize,
    },
    /// The database refused; the candles are in the rescue file, written
    /// into the database at the next start.
    Rescued {
        /// Candles put in the rescue file.
        candles: usize,
    },
    /// Neither the database nor the rescue file took them.
    Lost {
        /// Candles that will be gone when the process exits.
        candles: usize,
    },
}

/// Why a request to the storage thread got no answer from the database.
#[derive(Debug, thiserror::Error)]
pub enum StorageRequestError {
    /// The request channel is full: the thread is far behind.
    #[error("storage is busy; try again")]
    Busy,
    /// The thread is not running (restarting, or shut down).
    #[error("storage is not running")]
    Gone,
    /// The database answered with an error.
    #[error(transparent)]
    Failed(#[from] StorageError),
}

/// Counters of the storage thread, for `/status` and `worker_metrics`
/// (inside [`StorageMetrics`](crate::metrics::StorageMetrics), hence its
/// camelCase keys).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageStats {
    /// Candle updates waiting to be written.
    pub queued: usize,
    /// Successful batch writes since start.
    pub flushes: u64,
    /// Candle rows written since start.
    pub rows_written: u64,
    /// Batch writes that failed (and were retried).
    pub failed_flushes: u64,
    /// The last write error, if the last write failed.
    pub last_error: Option<String>,
    /// Duration of the last successful write, in milliseconds.
    pub last_flush_ms: f64,
    /// Candles deleted by `max_records` retention since start.
    pub rows_deleted: u64,
    /// Database file size including WAL, in bytes.
    pub db_size_bytes: u64,
    /// Closed candles moved to the rescue file while the database failed
    /// (the queue had reached its bound), since start.
    pub spilled: u64,
    /// Candles written back from the rescue file since start.
    pub replayed: u64,
    /// WAL checkpoints that copied pages into the main file since start,
    /// run by the checkpoint thread off the write path.
    pub checkpoints: u64,
}

/// The handle to the storage thread that every other actor holds. Cheap to
/// clone; stays valid across restarts of the thread.
#[derive(Clone)]
pub struct StorageHandle {
    pub(super) candles: Sender<Vec<Candle>>,
    pub(super) requests: Sender<Request>,
    pub(super) reads: Sender<Read>,
    pub(super) rescue: RescueFile,
}

impl StorageHandle {
    /// Queues a candle update without waiting (a batch of one; see
    /// [`StorageHandle::try_submit_batch`]).
    ///
    /// # Errors
    /// Gives the candle back when the channel is full or the thread is gone,
    /// so the caller can keep it (see [`CandleSink`]).
    pub fn try_submit(&self, candle: Candle) -> Result<(), Candle> {
        self.try_submit_batch(vec![candle])
            .map_err(|mut batch| batch.pop().expect("the batch of one given back"))
    }

    /// Queues a batch of candle updates, in order, without waiting: one
    /// channel send for the whole batch, which the storage thread queues
    /// as if each update had been sent on its own (a later update of a
    /// candle wins). An empty batch is sent as well (and costs a slot);
    /// callers skip it.
    ///
    /// # Errors
    /// Gives the batch back, untouched, when the channel is full or the
    /// thread is gone, so the caller can keep it (see [`CandleSink`]).
    pub fn try_submit_batch(&self, batch: Vec<Candle>) -> Result<(), Vec<Candle>> {
        self.candles.try_send(batch).map_err(|e| match e {
            TrySendError::Full(b) | TrySendError::Disconnected(b) => b,
        })
    }

    /// Candles of `key` matching `query`, queued updates included.
    /// Answered by a reader thread: never waits for a batch write.
    ///
    /// # Errors
    /// [`StorageRequestError`].
    pub async fn candles(
        &self,
        key: SeriesKey,
        query: CandleQuery,
    ) -> Result<Vec<Candle>, StorageRequestError> {
        Ok(self
            .read(|reply| Read::Candles { key, query, reply })
            .await??)
    }

    /// Open time of the newest candle of `key`, queued updates included.
    ///
    /// # Errors
    /// [`StorageRequestError`].
    pub async fn last_open_time(&self, key: SeriesKey) -> Result<Option<i64>, StorageRequestError> {
        Ok(self
            .read(|reply| Read::LastOpenTime { key, reply })
            .await??)
    }

    /// The series present, with counts and time ranges.
    ///
    /// # Errors
    /// [`StorageRequestError`].
    pub async fn series(&self) -> Result<Vec<SeriesSummary>, StorageRequestError> {
        Ok(self.read(|reply| Read::Series { reply }).await??)
    }

    /// The ranges of open times missing between the oldest and the newest
    /// candle of `key`, oldest first, at most `limit`, without the ranges
    /// recorded as exchange holes: what gap filling should fetch over REST
    /// ([`ohlcv_storage::Database::holes`]).
    ///
    /// Candles still queued count as present (holes are split around
    /// them), without writing them before their batch is due.
    ///
    /// # Errors
    /// [`StorageRequestError`] when the database cannot be read: ask again
    /// later.
    pub async fn holes(
        &self,
        key: SeriesKey,
        limit: usize,
    ) -> Result<Vec<Hole>, StorageRequestError> {
        Ok(self
            .read(|reply| Read::Holes { key, limit, reply })
            .await??)
    }

    /// Records that the exchange has no candles of `key` from `from` to
    /// `to` (open times, inclusive), so [`StorageHandle::holes`] stops
    /// reporting them. Recording a range again, or one overlapping it,
    /// keeps one record.
    ///
    /// # Errors
    /// [`StorageRequestError`]; `Failed` with
    /// [`StorageError::InvalidHole`] when `from > to`.
    pub async fn record_exchange_hole(
        &self,
        key: SeriesKey,
        from: i64,
        to: i64,
    ) -> Result<(), StorageRequestError> {
        Ok(self
            .ask(|reply| Request::RecordExchangeHole {
                key,
                from,
                to,
                reply,
            })
            .await??)
    }

    /// How complete every stored series is now (expected, stored and
    /// missing candles, exchange holes, age of the newest closed candle),
    /// sorted by key. Queued candles are written first and so counted, as
    /// for [`StorageHandle::holes`].
    ///
    /// # Errors
    /// [`StorageRequestError`]; `Failed` also when the queued candles
    /// could not be written.
    pub async fn completeness(&self) -> Result<Vec<SeriesCompleteness>, StorageRequestError> {
        Ok(self.ask(|reply| Request::Completeness { reply }).await??)
    }

    /// The thread's counters.
    ///
    /// # Errors
    /// [`StorageRequestError::Busy`] or [`StorageRequestError::Gone`].
    pub async fn stats(&self) -> Result<StorageStats, StorageRequestError> {
        self.ask(|reply| Request::Stats { reply }).await
    }

    /// Writes everything queued now; answers the number of rows written.
    ///
    /// # Errors
    /// [`StorageRequestError`]; on a failed write the queue is kept.
    pub async fn flush(&self) -> Result<usize, StorageRequestError> {
        Ok(self.ask(|reply| Request::Flush { reply }).await??)
    }

    /// Deletes every stored and queued candle, keeping the schema.
    ///
    /// # Errors
    /// [`StorageRequestError`].
    pub async fn clear(&self) -> Result<(), StorageRequestError> {
        Ok(self.ask(|reply| Request::Clear { reply }).await??)
    }

    /// Applies new batch and retention settings.
    ///
    /// # Errors
    /// [`StorageRequestError::Busy`] or [`StorageRequestError::Gone`].
    pub async fn reconfigure(&self, settings: StorageSettings) -> Result<(), StorageRequestError> {
        self.ask(|reply| Request::Reconfigure { settings, reply })
            .await
    }

    /// Drains every candle sent so far, writes the queue (retrying a
    /// refusing database until `deadline`, then using the rescue file),
    /// checkpoints the WAL and ends the thread.
    ///
    /// # Errors
    /// [`StorageRequestError::Busy`] or [`StorageRequestError::Gone`]; the
    /// caller should then rescue the queue itself
    /// ([`super::StorageChannels::rescue_everything`]).
    pub async fn shutdown(&self, deadline: Instant) -> Result<FlushOutcome, StorageRequestError> {
        self.ask(|reply| Request::Shutdown { deadline, reply })
            .await
    }

    /// Blocks the storage thread for `duration`, as a stuck disk or a
    /// runaway query would. For tests of stall handling only: no route or
    /// command of the API reaches it.
    #[doc(hidden)]
    pub fn freeze(&self, duration: Duration) {
        let _ = self.requests.try_send(Request::Freeze { duration });
    }

    /// Asks the storage thread.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, StorageRequestError> {
        ask_on(&self.requests, make).await
    }

    /// Asks a reader thread.
    async fn read<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Read,
    ) -> Result<T, StorageRequestError> {
        ask_on(&self.reads, make).await
    }
}

/// Sends the request `make` builds on `channel` and waits for its reply:
/// a full channel is "busy" at once, a dropped reply "gone".
async fn ask_on<R, T>(
    channel: &Sender<R>,
    make: impl FnOnce(oneshot::Sender<T>) -> R,
) -> Result<T, StorageRequestError> {
    let (reply, answer) = oneshot::channel();
    channel.try_send(make(reply)).map_err(|e| match e {
        TrySendError::Full(_) => StorageRequestError::Busy,
        TrySendError::Disconnected(_) => StorageRequestError::Gone,
    })?;
    answer.await.map_err(|_| StorageRequestError::Gone)
}

/// A datasource's way to hand candles to storage without ever blocking its
/// thread and without losing any.
///
/// Updates are collected with [`submit`](CandleSink::submit) and handed
/// over in one channel send per batch by [`flush`](CandleSink::flush),
/// which the datasource calls at the end of every message it handles (a
/// batch of stream items, a history chunk): a send per update cost more
/// than the rest of the ingest path. No update waits beyond the message
/// that produced it, and a batch never exceeds [`MAX_SINK_BATCH`]
/// candles (`submit` flushes a full one at once).
///
/// When the channel is full, updates wait in a local latest-wins queue
/// (bounded by the number of distinct candles, not by the update rate) and
/// are retried on the next flush or [`retry`](CandleSink::retry); while any
/// wait there, newer batches join them rather than overtaking them. Past
/// [`MAX_SINK_OVERFLOW`] candles (the storage thread has been stuck for
/// long), the closed ones go to the rescue file, written into the
/// database once it is back.
pub struct CandleSink {
    handle: StorageHandle,
    /// Updates submitted since the last flush, in order.
    batch: Vec<Candle>,
    overflow: CandleQueue,
    overflow_limit: usize,
    overflowed: u64,
    spilled: u64,
}

impl CandleSink {
    /// A sink writing through `handle`.
    pub fn new(handle: StorageHandle) -> Self {
        CandleSink {
            handle,
            batch: Vec::new(),
            overflow: CandleQueue::default(),
            overflow_limit: MAX_SINK_OVERFLOW,
            overflowed: 0,
            spilled: 0,
        }
    }

    /// Spills past `limit` kept candles instead of [`MAX_SINK_OVERFLOW`]
    /// (tests reach the bound without millions of candles).
    pub fn with_overflow_limit(mut self, limit: usize) -> Self {
        self.overflow_limit = limit;
        self
    }

    /// Adds `candle` to the current batch; the batch goes to storage at the
    /// next [`flush`](CandleSink::flush), or now if it is full.
    pub fn submit(&mut self, candle: Candle) {
        self.batch.push(candle);
        if self.batch.len() >= MAX_SINK_BATCH {
            self.flush();
        }
    }

    /// Hands the current batch to storage, or keeps it until there is
    /// room. Call it at the end of every message that submitted updates.
    pub fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        if !self.overflow.is_empty() {
            self.retry();
        }
        if self.overflow.is_empty() {
            if let Err(batch) = self.handle.try_submit_batch(batch) {
                self.keep(batch);
            }
        } else {
            // Keep order per candle: a newer update must not overtake an
            // older one still waiting here.
            self.keep(batch);
        }
    }

    /// Moves kept updates to the channel, in batches, while it has room.
    pub fn retry(&mut self) {
        if self.overflow.is_empty() || self.handle.candles.is_full() {
            return;
        }
        let kept = self.overflow.take_all();
        let mut batches = chunks(kept);
        while let Some(batch) = batches.next() {
            if let Err(refused) = self.handle.try_submit_batch(batch) {
                // Nothing was pushed since the take: putting back the
                // refused and the rest restores the queue as it was.
                self.overflow.push_batch(refused);
                for rest in batches {
                    self.overflow.push_batch(rest);
                }
                return;
            }
        }
    }

    /// Updates waiting locally for room in the channel (not counting the
    /// current batch, which goes at the next flush).
    pub fn pending(&self) -> usize {
        self.overflow.len()
    }

    /// Times an update had to wait locally since start.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// Hands every kept update (and the current batch) over, waiting up to
    /// `timeout` in total for room, and puts what still does not fit in the
    /// rescue file. Only for a stopping datasource, whose thread has
    /// nothing else to do; answers how many updates are lost (neither
    /// handed over nor rescued).
    pub fn drain_blocking(&mut self, timeout: Duration) -> usize {
        let deadline = std::time::Instant::now() + timeout;
        // The current batch is newer than anything kept: behind it.
        self.overflow.push_batch(std::mem::take(&mut self.batch));
        let mut batches = chunks(self.overflow.take_all());
        while let Some(batch) = batches.next() {
            if let Err(refused) = self.handle.candles.send_deadline(batch, deadline) {
                self.overflow.push_batch(refused.into_inner());
                for rest in batches {
                    self.overflow.push_batch(rest);
                }
                break;
            }
        }
        let left = self.overflow.take_all();
        if left.is_empty() {
            return 0;
        }
        if let Err(error) = self.handle.rescue.append(&left) {
            tracing::error!(error = %ohlcv_domain::ErrorChain(&error), lost = left.len(), "updates of a stopping datasource could not be kept");
            return left.len();
        }
        0
    }

    /// Candles this sink moved to the rescue file since start.
    pub fn spilled(&self) -> u64 {
        self.spilled
    }

    fn keep(&mut self, batch: Vec<Candle>) {
        self.overflowed += batch.len() as u64;
        self.overflow.push_batch(batch);
        if self.overflow.len() >= self.overflow_limit {
            let closed = self.overflow.take_closed();
            match self.handle.rescue.append(&closed) {
                Ok(()) => self.spilled += closed.len() as u64,
                Err(error) => {
                    tracing::error!(error = %ohlcv_domain::ErrorChain(&error), kept = self.overflow.len() + closed.len(),
                        "storage stuck and the rescue file refused; keeping updates in memory");
                    self.overflow.restore(closed);
                }
            }
        }
    }
}

/// `candles` cut into batches of at most [`MAX_SINK_BATCH`], in order.
fn chunks(candles: Vec<Candle>) -> impl Iterator<Item = Vec<Candle>> {
    let mut rest = candles.into_iter().peekable();
    std::iter::from_fn(move || {
        rest.peek()?;
        Some(rest.by_ref().take(MAX_SINK_BATCH).collect())
    })
}
