//! The storage thread itself: its loop, its timers and its requests.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Select, TryRecvError};
use ohlcv_domain::{Candle, ErrorChain, SeriesKey};
use ohlcv_storage::rescue::RescueFile;
use ohlcv_storage::{CandleQueue, Database, SeriesCompleteness, StorageError};
use tokio::sync::oneshot;

use super::checkpoints::{spawn_checkpoints, CheckpointShare};
use super::handle::{FlushOutcome, StorageHandle, StorageStats};
use super::readers::{spawn_readers, Read, ReaderShare};
#[cfg(doc)]
use super::MAX_QUEUED_CANDLES;
use super::{CANDLE_CHANNEL_CAPACITY, REQUEST_CHANNEL_CAPACITY};
use crate::lifecycle::{ChildId, CpuMeter, Heartbeat, HeartbeatSink, LifeGuard};
use crate::metrics::{CommonMetrics, StorageMetrics, WorkerMetrics};
use crate::HEARTBEAT_INTERVAL;

/// First retry delay after a failed write; doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
/// Longest wait between retries of a failing write: a database that comes
/// back is used within half a minute, and a dead one is not hammered.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
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
    /// Distinct candles the queue holds before it writes early or, while
    /// the database fails, spills to the rescue file; normally
    /// [`MAX_QUEUED_CANDLES`].
    pub max_queued: usize,
}

/// What the storage thread itself does on request: writes, and the
/// requests that must see the queue written ([reads](Read) go to the
/// reader threads).
pub(super) enum Request {
    RecordExchangeHole {
        key: SeriesKey,
        from: i64,
        to: i64,
        reply: oneshot::Sender<Result<(), StorageError>>,
    },
    Completeness {
        reply: oneshot::Sender<Result<Vec<SeriesCompleteness>, StorageError>>,
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
        deadline: Instant,
        reply: oneshot::Sender<FlushOutcome>,
    },
    Freeze {
        duration: Duration,
    },
}

/// The channels and queue of the storage actor. Created once per process
/// and kept by the supervisor, so that a restarted storage thread picks up
/// exactly where the previous one stopped.
#[derive(Clone)]
pub struct StorageChannels {
    handle: StorageHandle,
    candles: Receiver<Vec<Candle>>,
    requests: Receiver<Request>,
    reads: Receiver<Read>,
    queue: Arc<Mutex<CandleQueue>>,
    stats: Arc<Mutex<StorageStats>>,
    /// Held during every WAL checkpoint (see [`CheckpointShare`]).
    checkpoint_lock: Arc<Mutex<()>>,
    /// Set once the reader and checkpoint threads run: the first storage
    /// thread starts them, its restarts reuse them.
    readers_started: Arc<AtomicBool>,
}

impl StorageChannels {
    /// Fresh, empty channels and queue, spilling into `rescue` (the rescue
    /// file of the database the storage thread writes).
    pub fn new(rescue: RescueFile) -> Self {
        let (candle_tx, candles) = bounded(CANDLE_CHANNEL_CAPACITY);
        let (request_tx, requests) = bounded(REQUEST_CHANNEL_CAPACITY);
        let (read_tx, reads) = bounded(REQUEST_CHANNEL_CAPACITY);
        StorageChannels {
            handle: StorageHandle {
                candles: candle_tx,
                requests: request_tx,
                reads: read_tx,
                rescue,
            },
            candles,
            requests,
            reads,
            queue: Arc::default(),
            stats: Arc::default(),
            checkpoint_lock: Arc::default(),
            readers_started: Arc::default(),
        }
    }

    /// The handle other actors use.
    pub fn handle(&self) -> StorageHandle {
        self.handle.clone()
    }

    /// Puts every candle still waiting (in the channel and in the queue)
    /// into the rescue file, without the storage thread.
    ///
    /// The last resort of a shutdown whose storage thread did not answer in
    /// time (blocked, dead, or still restarting): the queue keeps every
    /// candle until its write commits, so nothing the thread may be writing
    /// right now is missing here. A candle both committed by that thread
    /// and rescued is simply written twice, to the same value.
    pub fn rescue_everything(&self) -> FlushOutcome {
        let mut queue = lock(&self.queue);
        drain_into(&mut queue, &self.candles);
        rescue_queue(&mut queue, &self.handle.rescue)
    }

    /// Starts the reader and checkpoint threads on the database at
    /// `path`, unless they already run.
    fn start_readers(&self, path: &std::path::Path) -> std::io::Result<()> {
        if self.readers_started.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let share = ReaderShare {
            reads: self.reads.clone(),
            candles: self.candles.clone(),
            queue: self.queue.clone(),
        };
        let checkpoints = CheckpointShare {
            exclusive: self.checkpoint_lock.clone(),
            stats: self.stats.clone(),
            alive: Arc::downgrade(&self.queue),
        };
        spawn_readers(path, &share)
            .and_then(|()| spawn_checkpoints(path.to_path_buf(), checkpoints))
            .inspect_err(|_| {
                self.readers_started.store(false, Ordering::Release);
            })
    }
}

/// Starts the storage thread on `channels` with an opened database, and
/// the first time the [reader threads](super::readers) too.
///
/// Once `retired` is set (the supervisor gave up on a blocked thread and
/// started another on the same channels) the thread ends as soon as it
/// wakes up, leaving the queue to its successor.
///
/// # Errors
/// The OS error if a thread cannot be created.
pub fn spawn_storage(
    db: Database,
    channels: &StorageChannels,
    settings: StorageSettings,
    heartbeats: HeartbeatSink,
    guard: LifeGuard,
    retired: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    channels.start_readers(db.path())?;
    let worker = Worker {
        db,
        candles: channels.candles.clone(),
        requests: channels.requests.clone(),
        queue: channels.queue.clone(),
        stats: channels.stats.clone(),
        checkpoint_lock: channels.checkpoint_lock.clone(),
        rescue: channels.handle.rescue.clone(),
        retired,
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
    candles: Receiver<Vec<Candle>>,
    requests: Receiver<Request>,
    queue: Arc<Mutex<CandleQueue>>,
    stats: Arc<Mutex<StorageStats>>,
    checkpoint_lock: Arc<Mutex<()>>,
    rescue: RescueFile,
    retired: Arc<AtomicBool>,
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
            if self.retired.load(Ordering::Acquire) {
                tracing::warn!(
                    "retired storage thread woke up; leaving the queue to its successor"
                );
                return;
            }
            let deadline = self.next_flush.min(self.next_heartbeat);
            let timeout = deadline.saturating_duration_since(Instant::now());
            // Only wait for readiness here: candles are taken out of their
            // channel under the queue's lock (`accept`), as the readers do,
            // so that updates of one candle reach the queue in order.
            let mut ready = Select::new();
            let candles = ready.recv(&self.candles);
            ready.recv(&self.requests);
            let flow = match ready.ready_timeout(timeout) {
                Ok(index) if index == candles => self.accept(),
                Ok(_) => match self.requests.try_recv() {
                    Ok(request) => self.handle(request),
                    Err(TryRecvError::Empty) => ControlFlow::Continue(()),
                    // Every handle is gone, as in `accept`.
                    Err(TryRecvError::Disconnected) => {
                        self.shut_down(Instant::now() + HEARTBEAT_INTERVAL);
                        ControlFlow::Break(())
                    }
                },
                Err(_) => ControlFlow::Continue(()),
            };
            if flow.is_break() {
                return;
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

    /// Queues what waits in the candle channel, up to a burst of candles
    /// (a reader may have taken it already). Breaks when every handle is
    /// gone: nobody can ask for a shutdown any more, so the thread flushes
    /// and ends.
    fn accept(&mut self) -> ControlFlow<()> {
        let mut queue = lock(&self.queue);
        let mut taken = 0;
        while taken < DRAIN_BURST {
            match self.candles.try_recv() {
                Ok(batch) => {
                    taken += batch.len();
                    queue.push_batch(batch);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    drop(queue);
                    self.shut_down(Instant::now() + HEARTBEAT_INTERVAL);
                    return ControlFlow::Break(());
                }
            }
        }
        drop(queue);
        self.keep_queue_bounded();
        ControlFlow::Continue(())
    }

    /// Keeps the queue under `max_queued`: while the database takes
    /// writes, by writing now rather than at the next batch; while it
    /// fails, by [spilling](Self::spill_if_over_bound).
    fn keep_queue_bounded(&mut self) {
        if lock(&self.queue).len() < self.settings.max_queued {
            return;
        }
        if self.retry_delay.is_none() {
            let _ = self.flush();
        } else {
            self.spill_if_over_bound();
        }
    }

    /// While the database fails and the queue is at its bound, moves the
    /// closed candles to the rescue file, written back when the database
    /// recovers. Only if even the rescue file refuses does the queue keep
    /// growing: nothing is dropped while there is memory.
    fn spill_if_over_bound(&mut self) {
        let mut queue = lock(&self.queue);
        if queue.len() < self.settings.max_queued {
            return;
        }
        let closed = queue.take_closed();
        match self.rescue.append(&closed) {
            Ok(()) => {
                drop(queue);
                lock(&self.stats).spilled += closed.len() as u64;
                tracing::warn!(candles = closed.len(), file = %self.rescue.path().display(),
                    "database still failing; closed candles moved to the rescue file until it recovers");
            }
            Err(error) => {
                for candle in closed {
                    queue.push(candle);
                }
                tracing::error!(error = %ErrorChain(&error), queued = queue.len(),
                    "database failing and the rescue file refused; the queue keeps growing");
            }
        }
    }

    /// Answers one request; breaks after a shutdown.
    fn handle(&mut self, request: Request) -> ControlFlow<()> {
        match request {
            Request::RecordExchangeHole {
                key,
                from,
                to,
                reply,
            } => {
                let _ = reply.send(self.db.record_exchange_hole(&key, from, to));
            }
            Request::Completeness { reply } => {
                let result = self
                    .write_queue_first()
                    .and_then(|()| self.db.completeness(ohlcv_domain::time::now_ms()));
                let _ = reply.send(result);
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
                let _exclusive = lock(&self.checkpoint_lock);
                let _ = reply.send(self.db.clear());
            }
            Request::Reconfigure { settings, reply } => {
                self.settings = settings;
                self.next_flush = self
                    .next_flush
                    .min(Instant::now() + settings.batch_interval);
                let _ = reply.send(());
            }
            Request::Shutdown { deadline, reply } => {
                let _ = reply.send(self.shut_down(deadline));
                return ControlFlow::Break(());
            }
            Request::Freeze { duration } => {
                tracing::warn!(
                    ms = duration.as_millis() as u64,
                    "storage thread frozen on request"
                );
                std::thread::sleep(duration);
            }
        }
        ControlFlow::Continue(())
    }

    /// Writes every candle sent so far (and any rescued ones) before a
    /// user's `/completeness`, so that the database alone answers it
    /// (counting queued candles by merge would need a second implementation
    /// of the database's counts). Nothing to write, nothing is written.
    ///
    /// # Errors
    /// The failed write's error (the batch stays queued, the retry
    /// schedule goes on as for any write): answering from the database
    /// alone would count the queued candles as missing. Only a user's
    /// `/completeness` does this; the datasources' hole checks subtract the
    /// queue instead ([`Database::holes_among`]), so they never move a
    /// write forward.
    fn write_queue_first(&mut self) -> Result<(), StorageError> {
        self.drain_channel();
        if lock(&self.queue).is_empty() && !self.rescue.is_pending() {
            return Ok(());
        }
        self.flush().map(|_| ())
    }

    fn stats(&self) -> StorageStats {
        let mut stats = lock(&self.stats).clone();
        stats.queued = lock(&self.queue).len();
        stats.db_size_bytes = self.db.size_on_disk().unwrap_or(0);
        stats
    }

    fn drain_channel(&mut self) {
        drain_into(&mut lock(&self.queue), &self.candles);
    }

    /// Writes the queue in one transaction, then applies retention to the
    /// series written; candles a failing database left in the rescue file
    /// go first (they are older). The batch leaves the queue only once it
    /// is committed: on failure it is simply still there, and a retry is
    /// scheduled.
    fn flush(&mut self) -> Result<usize, StorageError> {
        let started = Instant::now();
        let result = self.replay_rescue().and_then(|replayed| {
            let batch = lock(&self.queue).snapshot();
            if batch.is_empty() {
                return Ok((replayed, batch));
            }
            // A panic while writing leaves the queue untouched; the thread
            // dies and the supervisor restarts it on the same queue.
            let rows = self.db.insert_batch(&batch)?;
            lock(&self.queue).remove_written(&batch);
            Ok((replayed + rows, batch))
        });
        match result {
            Ok((rows, batch)) => {
                let deleted = self.apply_retention(&batch);
                let mut stats = lock(&self.stats);
                if rows > 0 {
                    stats.flushes += 1;
                    stats.rows_written += rows as u64;
                    stats.last_flush_ms = started.elapsed().as_secs_f64() * 1000.0;
                }
                stats.rows_deleted += deleted;
                stats.last_error = None;
                drop(stats);
                if self.retry_delay.take().is_some() {
                    tracing::info!(rows, success = true, "storage writes recovered");
                }
                self.schedule_next_flush();
                Ok(rows)
            }
            Err(error) => {
                let queued = lock(&self.queue).len();
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
                self.spill_if_over_bound();
                Err(error)
            }
        }
    }

    /// Writes back the candles a failing database sent to the rescue file.
    fn replay_rescue(&mut self) -> Result<usize, StorageError> {
        if !self.rescue.is_pending() {
            return Ok(0);
        }
        let imported = self.rescue.replay_into(&mut self.db)?;
        lock(&self.stats).replayed += imported.candles as u64;
        tracing::info!(
            candles = imported.candles,
            rejected_lines = imported.rejected_lines,
            "candles of the rescue file written back"
        );
        Ok(imported.candles)
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

    /// The last work of the thread: writes everything queued, retrying a
    /// failing database until `deadline`, then puts whatever is left in the
    /// rescue file, and checkpoints the WAL so the main database file alone
    /// holds every candle.
    fn shut_down(&mut self, deadline: Instant) -> FlushOutcome {
        self.drain_channel();
        let mut total = 0;
        let outcome = loop {
            match self.flush() {
                Ok(rows) => {
                    total += rows;
                    if lock(&self.queue).is_empty() {
                        tracing::info!(rows = total, success = true, "storage flushed");
                        break FlushOutcome::Saved { rows: total };
                    }
                }
                Err(error) if Instant::now() >= deadline => {
                    tracing::error!(error = %ErrorChain(&error), "database refused the final write");
                    break rescue_queue(&mut lock(&self.queue), &self.rescue);
                }
                Err(_) => {
                    let wait = self
                        .next_flush
                        .min(deadline)
                        .saturating_duration_since(Instant::now());
                    std::thread::park_timeout(wait);
                }
            }
        };
        let checkpointed = {
            let _exclusive = lock(&self.checkpoint_lock);
            self.db.checkpoint()
        };
        if let Err(error) = checkpointed {
            tracing::warn!(error = %ErrorChain(&error), "WAL not checkpointed at shutdown; ohlcv.db needs its -wal file");
        }
        outcome
    }

    fn schedule_next_flush(&mut self) {
        self.next_flush = Instant::now() + self.settings.batch_interval;
    }

    fn heartbeat(&mut self) {
        self.next_heartbeat = Instant::now() + HEARTBEAT_INTERVAL;
        let metrics = StorageMetrics {
            common: CommonMetrics::now(self.cpu.sample()),
            stats: self.stats(),
        };
        self.heartbeats.send(Heartbeat {
            child: ChildId::Storage,
            generation: self.guard.generation(),
            metrics: WorkerMetrics::Storage(metrics),
        });
    }
}

/// Moves everything in `queue` to the rescue file; on failure the queue
/// keeps it, and the outcome says how many candles are lost if the process
/// now exits.
fn rescue_queue(queue: &mut CandleQueue, rescue: &RescueFile) -> FlushOutcome {
    let candles = queue.take_all();
    if candles.is_empty() {
        return FlushOutcome::Saved { rows: 0 };
    }
    match rescue.append(&candles) {
        Ok(()) => {
            tracing::error!(candles = candles.len(), file = %rescue.path().display(),
                "candles kept in the rescue file, written at the next start");
            FlushOutcome::Rescued {
                candles: candles.len(),
            }
        }
        Err(error) => {
            tracing::error!(error = %ErrorChain(&error), lost = candles.len(),
                "candles lost: neither the database nor the rescue file could be written");
            let lost = candles.len();
            queue.restore(candles);
            FlushOutcome::Lost { candles: lost }
        }
    }
}

/// Moves every batch of candles waiting in `candles` into `queue`. Callers hold the
/// queue's lock (they pass its guard), which is what keeps the updates of
/// one candle in order (see [the readers](super::readers)).
pub(super) fn drain_into(queue: &mut CandleQueue, candles: &Receiver<Vec<Candle>>) {
    for batch in candles.try_iter() {
        queue.push_batch(batch);
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The queue and counters stay consistent at every await-free step, so
    // a panic elsewhere while holding the lock leaves them usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
