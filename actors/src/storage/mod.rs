//! The storage actor: one dedicated thread that owns the SQLite connection.
//!
//! Candle updates arrive on a bounded channel and wait in a latest-wins
//! queue ([`CandleQueue`](ohlcv_storage::CandleQueue)); every `batch_interval` the queue is written in
//! one transaction, and leaves the queue only once committed. A failed
//! write (locked, busy or failing database) keeps the batch and retries
//! with backoff: nothing is dropped. Memory stays bounded through a long
//! outage: past [`MAX_QUEUED_CANDLES`] the closed candles move to the
//! rescue file (append-only, fsynced) and are written back as soon as the
//! database takes writes again. Reads (`/ohlcv`) merge the queue over the
//! database, so the newest candles are never missing; they are answered by
//! [reader threads](readers) on read-only connections, so a read never waits
//! for a write nor a write for a read. On shutdown
//! everything queued is flushed, or rescued, before the thread ends.
//!
//! Both channels and the queue outlive the thread: if it dies, the
//! supervisor starts a new one on the same channels and queue, and what was
//! waiting is still there.

mod checkpoints;
mod handle;
mod readers;
mod worker;

#[cfg(test)]
pub(crate) mod tests;

pub use checkpoints::CHECKPOINT_INTERVAL;
pub use handle::{CandleSink, FlushOutcome, StorageHandle, StorageRequestError, StorageStats};
pub use readers::READER_THREADS;
pub use worker::{spawn_storage, StorageChannels, StorageSettings};

/// Batches of candle updates the channel holds before senders are told it
/// is full. The channel carries batches (`Vec<Candle>`, one per message a
/// datasource handles, at most [`MAX_SINK_BATCH`] candles each), so it
/// holds at most 262,144 candles (some 21 MB), and a flood of small
/// batches (a few updates per WebSocket frame) fills it after 1,024
/// messages: several seconds of traffic, far longer than a batch write
/// takes, so a full channel means the storage thread is stuck and senders
/// keep their updates themselves (see [`CandleSink`]).
pub const CANDLE_CHANNEL_CAPACITY: usize = 1_024;

/// Most candles in one batch of the candle channel: a history chunk of
/// thousands of candles goes as several batches, so the channel's bound
/// ([`CANDLE_CHANNEL_CAPACITY`] batches) bounds its memory too.
pub const MAX_SINK_BATCH: usize = 256;

/// Requests (reads, flushes, admin) the channel holds; beyond this a caller
/// is answered "busy" at once rather than queued behind a stuck thread.
pub const REQUEST_CHANNEL_CAPACITY: usize = 1_024;

/// Distinct candles the storage queue holds before it writes early (a
/// healthy database) or moves its closed candles to the rescue file (a
/// failing one). About 150 bytes each: some 30 MiB, a day of one-minute
/// candles for 140 series.
pub const MAX_QUEUED_CANDLES: usize = 200_000;

/// Distinct candles a datasource keeps for a stuck storage thread before
/// moving the closed ones to the rescue file (see [`CandleSink`]).
pub const MAX_SINK_OVERFLOW: usize = 50_000;
