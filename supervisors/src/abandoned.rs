//! Threads the supervisor gave up on.
//!
//! A child whose thread is blocked (a stalled datasource, monitor or
//! storage thread) cannot be joined or stopped: its replacement starts on a
//! new thread while the old one stays until it wakes up. Each such thread
//! is counted here until it really ends, so that `/status` shows them and
//! the supervisor refuses to start yet another incarnation of a child while
//! [`MAX_ABANDONED_PER_CHILD`] of its threads are still stuck: a child that
//! keeps stalling then waits on the slow retry schedule instead of costing
//! a thread every time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use actix::ArbiterHandle;
use ohlcv_actors::lifecycle::ChildId;

/// Stuck threads of one child beyond which it is not started again until
/// one of them ends.
pub const MAX_ABANDONED_PER_CHILD: usize = 2;

/// The abandoned threads, by child.
#[derive(Default)]
pub(crate) struct AbandonedThreads {
    /// Arbiter threads: each holds a [`Counted`] token in a future that
    /// its runtime drops when the thread finally ends.
    arbiters: BTreeMap<ChildId, Arc<AtomicUsize>>,
    /// Plain threads, asked whether they have finished.
    threads: Vec<(ChildId, JoinHandle<()>)>,
}

impl AbandonedThreads {
    /// Counts the thread of `arbiter` until it ends. Call before stopping it.
    pub(crate) fn arbiter(&mut self, child: ChildId, arbiter: &ArbiterHandle) {
        self.tracker(child).track(arbiter);
    }

    /// What counts an arbiter thread of `child` later, from a future that
    /// cannot reach the supervisor (a stop that times out).
    pub(crate) fn tracker(&mut self, child: ChildId) -> ArbiterTracker {
        ArbiterTracker(self.arbiters.entry(child).or_default().clone())
    }

    /// Counts `thread` until it ends.
    pub(crate) fn thread(&mut self, child: ChildId, thread: JoinHandle<()>) {
        self.threads.push((child, thread));
    }

    /// Threads of `child` that have not ended yet.
    pub(crate) fn of(&mut self, child: ChildId) -> usize {
        self.threads.retain(|(_, t)| !t.is_finished());
        let threads = self.threads.iter().filter(|(c, _)| *c == child).count();
        let arbiters = self
            .arbiters
            .get(&child)
            .map_or(0, |count| count.load(Ordering::Acquire));
        threads + arbiters
    }

    /// Threads of every child that have not ended yet.
    pub(crate) fn total(&mut self) -> usize {
        self.threads.retain(|(_, t)| !t.is_finished());
        self.threads.len()
            + self
                .arbiters
                .values()
                .map(|count| count.load(Ordering::Acquire))
                .sum::<usize>()
    }
}

/// Counts abandoned arbiter threads of one child.
pub(crate) struct ArbiterTracker(Arc<AtomicUsize>);

impl ArbiterTracker {
    /// Counts the thread of `arbiter` until it ends. Call before stopping it.
    pub(crate) fn track(&self, arbiter: &ArbiterHandle) {
        self.0.fetch_add(1, Ordering::AcqRel);
        let token = Counted(self.0.clone());
        // The future never completes: it is dropped, with its token, when
        // the arbiter's runtime is torn down at the end of the thread. If
        // the arbiter is already gone, the future (and token) drop now.
        arbiter.spawn(async move {
            let _token = token;
            std::future::pending::<()>().await;
        });
    }
}

/// Keeps one abandoned thread counted while alive.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
