//! The checkpoint thread: copies the WAL into the main file on a timer,
//! off the storage thread (see [`Checkpointer`] for why).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ohlcv_domain::ErrorChain;
use ohlcv_storage::{CandleQueue, Checkpointer, StorageError};

use super::handle::StorageStats;
use super::worker::lock;

/// How often the WAL is checkpointed. Often enough that the WAL holds at
/// most a second of writes (a batch is written whole at most every
/// 100 ms), and cheap when there is nothing to copy: one look at the WAL
/// index.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// What the checkpoint thread shares with the storage thread.
pub(super) struct CheckpointShare {
    /// Held during every checkpoint, by this thread and by the storage
    /// thread's own truncating ones (shutdown, clear), so those never find
    /// the checkpoint lock taken and give up.
    pub exclusive: Arc<Mutex<()>>,
    pub stats: Arc<Mutex<StorageStats>>,
    /// The thread ends once the storage actor's queue is gone (its
    /// channels, threads and handles all dropped).
    pub alive: Weak<Mutex<CandleQueue>>,
}

/// Starts the checkpoint thread of the database at `path`.
///
/// # Errors
/// The OS error if the thread cannot be created.
pub(super) fn spawn_checkpoints(path: PathBuf, share: CheckpointShare) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("storage-checkpoint".into())
        .spawn(move || run(&path, &share))
        .map(drop)
}

fn run(path: &std::path::Path, share: &CheckpointShare) {
    let mut checkpointer: Option<Checkpointer> = None;
    let mut failing = false;
    loop {
        // A timer, not a synchronisation: the thread has nothing else to do.
        std::thread::sleep(CHECKPOINT_INTERVAL);
        if share.alive.strong_count() == 0 {
            return;
        }
        let result = {
            let _exclusive = lock(&share.exclusive);
            checkpoint(path, &mut checkpointer)
        };
        match result {
            Ok(progress) => {
                if progress.checkpointed > 0 {
                    lock(&share.stats).checkpoints += 1;
                }
                if std::mem::take(&mut failing) {
                    tracing::info!("WAL checkpoints recovered");
                }
            }
            Err(error) => {
                // Logged once per failing stretch; the writer's automatic
                // checkpoint is the safety net meanwhile.
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %ErrorChain(&error), path = %path.display(),
                        "WAL checkpoint failed; retrying every second");
                }
                checkpointer = None;
            }
        }
    }
}

fn checkpoint(
    path: &std::path::Path,
    checkpointer: &mut Option<Checkpointer>,
) -> Result<ohlcv_storage::WalProgress, StorageError> {
    if checkpointer.is_none() {
        *checkpointer = Some(Checkpointer::open(path)?);
    }
    checkpointer
        .as_ref()
        .map_or(Ok(Default::default()), Checkpointer::passive)
}
