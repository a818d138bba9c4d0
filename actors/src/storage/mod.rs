//! The storage actor: one dedicated thread that owns the SQLite connection.
//!
//! Candle updates arrive on a bounded channel and wait in a latest-wins
//! queue ([`CandleQueue`](ohlcv_storage::CandleQueue)); every `batch_interval` the queue is written in
//! one transaction. A failed write (locked, busy or failing database) puts
//! the batch back and retries with backoff: nothing is dropped. Reads
//! (`/ohlcv`) merge the queue over the database, so the newest candles are
//! never missing. On shutdown everything queued is flushed before the
//! thread ends.
//!
//! Both channels and the queue outlive the thread: if it dies, the
//! supervisor starts a new one on the same channels and queue, and what was
//! waiting is still there.

mod handle;
mod worker;

pub use handle::{CandleSink, StorageHandle, StorageRequestError, StorageStats};
pub use worker::{spawn_storage, StorageChannels, StorageSettings};

/// Candle updates the channel holds before senders are told it is full.
/// At a flood of 10,000 updates a second that is over six seconds of
/// traffic, far longer than a batch write takes, so a full channel means
/// the storage thread is stuck and senders keep their updates themselves
/// (see [`CandleSink`]).
pub const CANDLE_CHANNEL_CAPACITY: usize = 65_536;

/// Requests (reads, flushes, admin) the channel holds; beyond this a caller
/// is answered "busy" at once rather than queued behind a stuck thread.
pub const REQUEST_CHANNEL_CAPACITY: usize = 1_024;
