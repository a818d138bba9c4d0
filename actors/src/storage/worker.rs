//! The storage thread itself: its loop, its timers and its requests.

use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};
use ohlcv_domain::{Candle, ErrorChain, SeriesKey};
use ohlcv_storage::{
    merge_overlay, CandleQuery, CandleQueue, Database, SeriesSummary, StorageError,
};
use tokio::sync::oneshot;

use super::handle::{StorageHandle, StorageStats};
use super::{CANDLE_CHANNEL_CAPACITY, REQUEST_CHANNEL_CAPACITY};
use crate::lifecycle::{ChildId, CpuMeter, Heartbeat, HeartbeatSink, LifeGuard};
use crate::HEARTBEAT_INTERVAL;

/// First retry delay after a failed write; doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
/// Longest wait between retries of a failing write: a database that comes
/// back is used within half a minute, and a dead one is not hammered.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// How long shutdown keeps retrying a failing write before giving up; a
/// process manager typically waits 10 s or more between SIGTERM and SIGKILL.
const SHUTDOWN_FLUSH_DEADLINE: Duration = Duration::from_secs(8);
/// Candle updates handled before the loop checks its timers again, so that
/// a flood cannot postpone a batch write indefinitely.
const DRAIN_BURST: usize = 4_096;

/// What the storage thread does with its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageSettings {
    /// How often the queue is written.
    pub batch_interval: Duration,
    /// Candles kept per series.
    pub max_records: u64,
}

pub(super) enum Request {
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
    Stats {
        reply: oneshot::Sender<StorageStats>,
    },
    Flush {
        reply: oneshot::Sender<Result<usize, StorageError>>,
    },
    Clear {
        reply: oneshot::Sender<Result<(), StorageError>>,
    },
    Reconfigure {
        settings: StorageSettings,
        reply: oneshot::Sender<()>,
    },
    Shutdown {
        reply: oneshot::Sender<Result<usize, StorageError>>,
    },
}

/// The channels and queue of the storage actor. Created once per process
/// and kept by the supervisor, so that a restarted storage thread picks up
/// exactly where the previous one stopped.
#[derive(Clone)]
pub struct StorageChannels {
    handle: StorageHandle,
    candles: Receiver<Candle>,
    requests: Receiver<Request>,
    queue: Arc<Mutex<CandleQueue>>,
    stats: Arc<Mutex<StorageStats>>,
}

impl Default for StorageChannels {
    fn default() -> Self {
        StorageChannels::new()
    }
}

impl StorageChannels {
    /// Fresh, empty channels and queue.
    pub fn new() -> Self {
        let (candle_tx, candles) = bounded(CANDLE_CHANNEL_CAPACITY);
        let (request_tx, requests) = bounded(REQUEST_CHANNEL_CAPACITY);
        StorageChannels {
            handle: StorageHandle {
                candles: candle_tx,
                requests: request_tx,
            },
            candles,
            requests,
            queue: Arc::default(),
            stats: Arc::default(),
        }
    }

    /// The handle other actors use.
    pub fn handle(&self) -> StorageHandle {
        self.handle.clone()
    }
}

/// Starts the storage thread on `channels` with an opened database.
///
/// # Errors
/// The OS error if the thread cannot be created.
pub fn spawn_storage(
    db: Database,
    channels: &StorageChannels,
    settings: StorageSettings,
    heartbeats: HeartbeatSink,
    guard: LifeGuard,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let worker = Worker {
        db,
        candles: channels.candles.clone(),
        requests: channels.requests.clone(),
        queue: channels.queue.clone(),
        stats: channels.stats.clone(),
        settings,
        heartbeats,
        next_flush: Instant::now() + settings.batch_interval,
        next_heartbeat: Instant::now(),
        retry_delay: None,
        cpu: CpuMeter::default(),
        guard,
    };
    std::thread::Builder::new()
        .name("storage".into())
        .spawn(move || worker.run())
}

struct Worker {
    db: Database,
    candles: Receiver<Candle>,
    requests: Receiver<Request>,
    queue: Arc<Mutex<CandleQueue>>,
    stats: Arc<Mutex<StorageStats>>,
    settings: StorageSettings,
    heartbeats: HeartbeatSink,
    next_flush: Instant,
    next_heartbeat: Instant,
    /// Set while writes fail: the delay before the next attempt.
    retry_delay: Option<Duration>,
    cpu: CpuMeter,
    guard: LifeGuard,
}

impl Worker {
    fn run(mut self) {
        tracing::info!(path = %self.db.path().display(), "storage started");
        loop {
            let deadline = self.next_flush.min(self.next_heartbeat);
            let timeout = deadline.saturating_duration_since(Instant::now());
            crossbeam_channel::select! {
                recv(self.candles) -> candle => match candle {
                    Ok(candle) => self.accept(candle),
                    // Every handle is gone: nobody can ask for a shutdown,
                    // so flush and end.
                    Err(_) => { let _ = self.flush_for_shutdown(); return; }
                },
                recv(self.requests) -> request => match request {
                    Ok(request) => if self.handle(request).is_break() { return },
                    Err(_) => { let _ = self.flush_for_shutdown(); return; }
                },
                default(timeout) => {}
            }
            let now = Instant::now();
            if now >= self.next_flush {
                let _ = self.flush();
            }
            if now >= self.next_heartbeat {
                self.heartbeat();
            }
        }
    }

    /// Queues `first` and whatever else is waiting, up to a burst.
    fn accept(&mut self, first: Candle) {
        let mut queue = lock(&self.queue);
        queue.push(first);
        for candle in self.candles.try_iter().take(DRAIN_BURST) {
            queue.push(candle);
        }
    }

    /// Answers one request; breaks after a shutdown.
    fn handle(&mut self, request: Request) -> ControlFlow<()> {
        match request {
            Request::Candles { key, query, reply } => {
                // Reads see every update sent before them.
                self.drain_channel();
                let _ = reply.send(self.read_candles(&key, &query));
            }
            Request::LastOpenTime { key, reply } => {
                self.drain_channel();
                let queued = lock(&self.queue).last_open_time(&key);
                let result = self
                    .db
                    .get_last_timestamp(&key)
                    .map(|stored| stored.max(queued));
                let _ = reply.send(result);
            }
            Request::Series { reply } => {
                self.drain_channel();
                let _ = reply.send(self.series());
            }
            Request::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            Request::Flush { reply } => {
                self.drain_channel();
                let _ = reply.send(self.flush());
            }
            Request::Clear { reply } => {
                self.drain_channel();
                lock(&self.queue).clear();
                let _ = reply.send(self.db.clear());
            }
            Request::Reconfigure { settings, reply } => {
                self.settings = settings;
                self.next_flush = self
                    .next_flush
                    .min(Instant::now() + settings.batch_interval);
                let _ = reply.send(());
            }
            Request::Shutdown { reply } => {
                let _ = reply.send(self.flush_for_shutdown());
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    fn read_candles(
        &self,
        key: &SeriesKey,
        query: &CandleQuery,
    ) -> Result<Vec<Candle>, StorageError> {
        let stored = self.db.get_candles(key, query)?;
        let queued = lock(&self.queue).range(key, query);
        Ok(merge_overlay(stored, queued, query))
    }

    /// Stored series with their queued candles counted in: queued candles
    /// newer than the newest stored one are new rows (older queued ones
    /// update stored rows), and series that exist only in the queue.
    fn series(&self) -> Result<Vec<SeriesSummary>, StorageError> {
        let mut series = self.db.series()?;
        let queue = lock(&self.queue);
        let everything = CandleQuery {
            from: Some(i64::MIN),
            to: None,
            limit: usize::MAX,
        };
        for summary in &mut series {
            let newer = CandleQuery {
                from: Some(summary.last.saturating_add(1)),
                ..everything
            };
            let queued = queue.range(&summary.key, &newer);
            if let Some(last) = queued.last() {
                summary.count += queued.len() as u64;
                summary.last = last.open_time;
            }
        }
        for key in queue.keys() {
            if series.iter().any(|s| &s.key == key) {
                continue;
            }
            let all = queue.range(key, &everything);
            if let (Some(first), Some(last)) = (all.first(), all.last()) {
                series.push(SeriesSummary {
                    key: key.clone(),
                    count: all.len() as u64,
                    first: first.open_time,
                    last: last.open_time,
                });
            }
        }
        series.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(series)
    }

    fn stats(&self) -> StorageStats {
        let mut stats = lock(&self.stats).clone();
        stats.queued = lock(&self.queue).len();
        stats.db_size_bytes = self.db.size_on_disk().unwrap_or(0);
        stats
    }

    fn drain_channel(&mut self) {
        let mut queue = lock(&self.queue);
        for candle in self.candles.try_iter() {
            queue.push(candle);
        }
    }

    /// Writes the queue in one transaction, then applies retention to the
    /// series written. On failure the batch goes back into the queue (newer
    /// updates that arrived meanwhile win) and a retry is scheduled.
    fn flush(&mut self) -> Result<usize, StorageError> {
        let batch = lock(&self.queue).take_all();
        if batch.is_empty() {
            self.schedule_next_flush();
            return Ok(0);
        }
        let started = Instant::now();
        // A panic while writing must not lose the batch: put it back in the
        // shared queue, then let the thread die so the supervisor restarts
        // it on the same queue.
        let written =
            match std::panic::catch_unwind(AssertUnwindSafe(|| self.db.insert_batch(&batch))) {
                Ok(written) => written,
                Err(panic) => {
                    lock(&self.queue).restore(batch);
                    std::panic::resume_unwind(panic);
                }
            };
        match written {
            Ok(rows) => {
                let deleted = self.apply_retention(&batch);
                let mut stats = lock(&self.stats);
                stats.flushes += 1;
                stats.rows_written += rows as u64;
                stats.rows_deleted += deleted;
                stats.last_error = None;
                stats.last_flush_ms = started.elapsed().as_secs_f64() * 1000.0;
                drop(stats);
                if self.retry_delay.take().is_some() {
                    tracing::info!(rows, success = true, "storage writes recovered");
                }
                self.schedule_next_flush();
                Ok(rows)
            }
            Err(error) => {
                let queued = batch.len();
                lock(&self.queue).restore(batch);
                let delay = self
                    .retry_delay
                    .map_or(FIRST_RETRY_DELAY, |d| (d * 2).min(MAX_RETRY_DELAY));
                self.retry_delay = Some(delay);
                self.next_flush = Instant::now() + delay;
                let mut stats = lock(&self.stats);
                stats.failed_flushes += 1;
                stats.last_error = Some(ErrorChain(&error).to_string());
                drop(stats);
                tracing::warn!(error = %ErrorChain(&error), retryable = error.is_retryable(), queued, retry_in_ms = delay.as_millis() as u64,
                    "storage write failed; keeping the batch");
                Err(error)
            }
        }
    }

    fn apply_retention(&mut self, batch: &[Candle]) -> u64 {
        let mut series: Vec<&SeriesKey> = batch.iter().map(|c| &c.key).collect();
        series.sort();
        series.dedup();
        let mut deleted = 0;
        for key in series {
            match self.db.cleanup(key, self.settings.max_records) {
                Ok(n) => deleted += n,
                // Retention is retried on the next write of the series.
                Err(error) => {
                    tracing::warn!(error = %ErrorChain(&error), series = %key, "retention failed")
                }
            }
        }
        deleted
    }

    fn flush_for_shutdown(&mut self) -> Result<usize, StorageError> {
        self.drain_channel();
        let deadline = Instant::now() + SHUTDOWN_FLUSH_DEADLINE;
        let mut total = 0;
        loop {
            match self.flush() {
                Ok(rows) => {
                    total += rows;
                    if lock(&self.queue).is_empty() {
                        tracing::info!(rows = total, success = true, "storage flushed");
                        return Ok(total);
                    }
                }
                Err(error) if Instant::now() >= deadline => {
                    self.rescue(&error);
                    return Err(error);
                }
                Err(_) => {
                    let wait = self
                        .next_flush
                        .min(deadline)
                        .saturating_duration_since(Instant::now());
                    std::thread::park_timeout(wait);
                }
            }
        }
    }

    /// The database refused the final write: put the queue in the rescue
    /// file, imported at the next start, rather than lose it.
    fn rescue(&mut self, error: &StorageError) {
        let candles = lock(&self.queue).take_all();
        match ohlcv_storage::rescue::write(self.db.path(), &candles) {
            Ok(path) => tracing::error!(
                error = %ErrorChain(error),
                candles = candles.len(),
                file = %path.display(),
                "database refused the final write; candles kept in the rescue file, imported at the next start"
            ),
            Err(rescue_error) => {
                tracing::error!(
                    error = %ErrorChain(error),
                    rescue_error = %ErrorChain(&rescue_error),
                    lost = candles.len(),
                    "candles lost: neither the database nor the rescue file could be written"
                );
                lock(&self.queue).restore(candles);
            }
        }
    }

    fn schedule_next_flush(&mut self) {
        self.next_flush = Instant::now() + self.settings.batch_interval;
    }

    fn heartbeat(&mut self) {
        self.next_heartbeat = Instant::now() + HEARTBEAT_INTERVAL;
        let stats = self.stats();
        let mut metrics = match serde_json::to_value(&stats) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        metrics.insert("cpuUser".into(), format!("{:.2}", self.cpu.sample()).into());
        metrics.insert("timestamp".into(), ohlcv_domain::time::now_ms().into());
        self.heartbeats.send(Heartbeat {
            child: ChildId::Storage,
            generation: self.guard.generation(),
            metrics,
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The queue and counters stay consistent at every await-free step, so
    // a panic elsewhere while holding the lock leaves them usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
