//! Fan-out of server messages to every connected UI client.
//!
//! A message is serialised once and shared (`Arc<str>`) by all clients. Each
//! client reads from its own position in a bounded ring
//! ([`tokio::sync::broadcast`]): a client that falls more than
//! [`CLIENT_QUEUE_CAPACITY`] messages behind loses the oldest ones and is
//! told so, and publishing never waits for anyone. So a slow client can
//! neither slow the collector nor grow its memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::broadcast;

use super::protocol::ServerMessage;

/// Messages a client may fall behind before it loses the oldest. At a flood
/// of candle updates this is about a second of traffic; a browser that is
/// further behind is better served by re-reading `/ohlcv` than by a backlog.
pub const CLIENT_QUEUE_CAPACITY: usize = 4096;

/// Publishes server messages to every subscribed client. Cheap to clone.
#[derive(Clone)]
pub struct Broadcaster {
    sender: broadcast::Sender<Arc<str>>,
    published: Arc<AtomicU64>,
}

impl Default for Broadcaster {
    fn default() -> Self {
        Broadcaster::new()
    }
}

impl Broadcaster {
    /// A broadcaster with no clients yet.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(CLIENT_QUEUE_CAPACITY);
        Broadcaster {
            sender,
            published: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sends `message` to every client. Never blocks; with no client
    /// connected the message is not even serialised.
    pub fn publish(&self, message: &ServerMessage) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        match serde_json::to_string(message) {
            Ok(text) => {
                // An error only means every client left meanwhile.
                let _ = self.sender.send(Arc::from(text));
                self.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => tracing::error!(%error, "server message not serialisable"),
        }
    }

    /// A new client's receiving end, starting with the next message.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.sender.subscribe()
    }

    /// Number of connected clients.
    pub fn clients(&self) -> usize {
        self.sender.receiver_count()
    }

    /// Messages published since start.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::protocol::LogMessage;

    fn log(n: usize) -> ServerMessage {
        ServerMessage::Log(LogMessage {
            message: format!("line {n}"),
            kind: "info".into(),
            timestamp: String::new(),
        })
    }

    #[test]
    fn a_lagging_client_loses_the_oldest_and_publishing_never_blocks() {
        let broadcaster = Broadcaster::new();
        broadcaster.publish(&log(0)); // nobody listening: dropped, not counted
        assert_eq!(broadcaster.published(), 0);

        let mut slow = broadcaster.subscribe();
        for n in 0..CLIENT_QUEUE_CAPACITY + 10 {
            broadcaster.publish(&log(n));
        }
        match slow.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(missed)) => assert_eq!(missed, 10),
            other => panic!("expected a lag report, got {other:?}"),
        }
        let next = slow.try_recv().unwrap();
        assert!(next.contains("line 10"), "{next}");
    }
}
