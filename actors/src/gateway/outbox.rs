//! One client's queue of frames to send: bounded, with candle updates
//! coalesced.
//!
//! Publishers (datasources, the monitor, the log layer) push into the
//! outbox from their own threads and never wait: the client's session
//! drains it at the pace its socket takes. What it holds:
//!
//! - **candle updates**, one per candle (series and open time): a newer
//!   update of the same candle replaces the older in place, so a client
//!   that cannot keep up gets the latest state of every candle and loses
//!   nothing else, closes included;
//! - **other messages** (logs, metrics, answers) in order, up to
//!   [`MAX_QUEUED_BYTES`].
//!
//! A client that falls further behind than that, or holds more than
//! [`MAX_PENDING_CANDLES`] different candles, has *overflowed*: its queue
//! is emptied at once (so it holds no memory) and its session closes it
//! with `1013 try again later`. Reconnecting and re-reading the range it
//! shows is then cheaper for everyone than a growing backlog.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use indexmap::IndexMap;
use tokio::sync::Notify;

use super::encoding::{Encoding, Frame};
use super::shared::SharedMessage;

/// Bytes of messages other than candle updates a client may have waiting.
/// About a minute of logs and metrics, or a few large answers: a client
/// further behind is not reading.
pub const MAX_QUEUED_BYTES: usize = 8 * 1024 * 1024;

/// Different candles a client may have waiting. Coalescing bounds this by
/// the series it subscribed to; beyond it, it has not read for many
/// intervals.
pub const MAX_PENDING_CANDLES: usize = 65_536;

/// A candle, as the outbox coalesces updates: the series' small id (see
/// [`super::broadcast`]) and the open time.
pub type CandleSlot = (u32, i64);

/// A message waiting in order.
#[derive(Debug)]
pub enum Queued {
    /// A broadcast message, encoded once for every client.
    Shared(Arc<SharedMessage>),
    /// A frame for this client only (an answer, a history line).
    Own(Frame),
}

/// What the session takes out in one go.
#[derive(Debug, Default)]
pub struct Drained {
    /// Messages, oldest first.
    pub messages: Vec<Queued>,
    /// Why the client overflowed, if it did: close it.
    pub overflowed: Option<String>,
}

#[derive(Debug, Default)]
struct Pending {
    candles: IndexMap<CandleSlot, Arc<SharedMessage>>,
    messages: VecDeque<Queued>,
    queued_bytes: usize,
    overflowed: Option<String>,
    /// Updates replaced by newer ones of the same candle, since start.
    coalesced: u64,
}

/// One client's outbox. Shared by the publishers and the session.
#[derive(Debug)]
pub struct Outbox {
    encoding: Encoding,
    pending: Mutex<Pending>,
    ready: Notify,
}

impl Outbox {
    /// An empty outbox for a client of `encoding`.
    pub fn new(encoding: Encoding) -> Self {
        Outbox {
            encoding,
            pending: Mutex::default(),
            ready: Notify::new(),
        }
    }

    /// The client's encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Resolves once something was pushed since the last wait (or the
    /// client overflowed).
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Wakes the session as if something was pushed: it has more to drain.
    pub fn wake(&self) {
        self.ready.notify_one();
    }

    /// Queues the latest update of the candle `slot`, replacing an older
    /// one still waiting.
    pub fn push_candle(&self, slot: CandleSlot, message: Arc<SharedMessage>) {
        let mut pending = self.lock();
        if pending.overflowed.is_some() {
            return;
        }
        if pending.candles.insert(slot, message).is_some() {
            pending.coalesced += 1;
        } else if pending.candles.len() > MAX_PENDING_CANDLES {
            overflow(
                &mut pending,
                format!("more than {MAX_PENDING_CANDLES} candle updates waiting"),
            );
        }
        drop(pending);
        self.ready.notify_one();
    }

    /// Queues a broadcast message.
    pub fn push_shared(&self, message: Arc<SharedMessage>) {
        let len = message.len(self.encoding);
        self.push(Queued::Shared(message), len);
    }

    /// Queues a frame for this client alone.
    pub fn push_own(&self, frame: Frame) {
        let len = frame.len();
        self.push(Queued::Own(frame), len);
    }

    fn push(&self, queued: Queued, len: usize) {
        let mut pending = self.lock();
        if pending.overflowed.is_some() {
            return;
        }
        pending.queued_bytes += len;
        pending.messages.push_back(queued);
        if pending.queued_bytes > MAX_QUEUED_BYTES {
            overflow(
                &mut pending,
                format!("more than {MAX_QUEUED_BYTES} bytes of messages waiting"),
            );
        }
        drop(pending);
        self.ready.notify_one();
    }

    /// Takes up to `max` messages in order, and tells whether the client
    /// overflowed.
    pub fn take_messages(&self, max: usize) -> Drained {
        let mut pending = self.lock();
        let n = max.min(pending.messages.len());
        let messages: Vec<Queued> = pending.messages.drain(..n).collect();
        let taken: usize = messages
            .iter()
            .map(|q| match q {
                Queued::Shared(m) => m.len(self.encoding),
                Queued::Own(frame) => frame.len(),
            })
            .sum();
        pending.queued_bytes = pending.queued_bytes.saturating_sub(taken);
        Drained {
            messages,
            overflowed: pending.overflowed.clone(),
        }
    }

    /// Takes every waiting candle update, oldest candle first.
    pub fn take_candles(&self) -> Vec<Arc<SharedMessage>> {
        let mut pending = self.lock();
        std::mem::take(&mut pending.candles).into_values().collect()
    }

    /// Whether messages (not candles) are waiting.
    pub fn has_messages(&self) -> bool {
        !self.lock().messages.is_empty()
    }

    /// Whether candle updates are waiting.
    pub fn has_candles(&self) -> bool {
        !self.lock().candles.is_empty()
    }

    /// Updates replaced by newer ones of the same candle before the client
    /// took them.
    pub fn coalesced(&self) -> u64 {
        self.lock().coalesced
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Every change leaves the queue valid, so a panic elsewhere while
        // holding the lock does not make it unusable.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Marks the client overflowed and frees what it held.
fn overflow(pending: &mut Pending, why: String) {
    pending.candles = IndexMap::new();
    pending.messages = VecDeque::new();
    pending.queued_bytes = 0;
    pending.overflowed = Some(why);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::protocol::{CandleMessage, LogMessage, ServerMessage};
    use ohlcv_domain::{ExchangeId, Interval, Symbol};

    fn update(t: i64, close: f64) -> Arc<SharedMessage> {
        let message = CandleMessage {
            exchange: ExchangeId::Simulated,
            symbol: Symbol::new("BTCUSDT").unwrap(),
            interval: Interval::M1,
            t,
            o: 1.0,
            h: 2.0,
            l: 0.5,
            c: close,
            v: 3.0,
            closed: false,
        };
        Arc::new(SharedMessage::candle(&message, true, false).unwrap())
    }

    fn log(text: &str) -> Arc<SharedMessage> {
        let message = ServerMessage::Log(LogMessage {
            message: text.into(),
            kind: "info".into(),
            timestamp: String::new(),
        });
        Arc::new(SharedMessage::new(&message, true, false).unwrap())
    }

    fn close_of(message: &SharedMessage) -> f64 {
        let Some(Frame::Text(text)) = message.frame(Encoding::Json) else {
            panic!("no JSON")
        };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value["data"]["c"].as_f64().unwrap()
    }

    #[test]
    fn updates_of_one_candle_coalesce_and_other_candles_keep_their_order() {
        let outbox = Outbox::new(Encoding::Json);
        outbox.push_candle((1, 0), update(0, 10.0));
        outbox.push_candle((1, 60_000), update(60_000, 20.0));
        outbox.push_candle((1, 0), update(0, 11.0)); // the close of the first
        outbox.push_candle((1, 60_000), update(60_000, 21.0));
        assert_eq!(outbox.coalesced(), 2);
        let closes: Vec<f64> = outbox.take_candles().iter().map(|m| close_of(m)).collect();
        assert_eq!(closes, [11.0, 21.0]);
        assert!(!outbox.has_candles());
    }

    #[test]
    fn a_client_that_falls_too_far_behind_overflows_and_holds_nothing() {
        let outbox = Outbox::new(Encoding::Json);
        let line = log(&"x".repeat(64 * 1024));
        let fits = MAX_QUEUED_BYTES / line.len(Encoding::Json);
        for _ in 0..fits {
            outbox.push_shared(line.clone());
        }
        let first = outbox.take_messages(2);
        assert_eq!(first.messages.len(), 2);
        assert!(first.overflowed.is_none());
        drop(first);
        for _ in 0..3 {
            outbox.push_shared(line.clone());
        }
        outbox.push_candle((1, 0), update(0, 1.0));
        let drained = outbox.take_messages(usize::MAX);
        assert!(drained.messages.is_empty());
        assert!(
            drained.overflowed.as_deref().unwrap().contains("bytes"),
            "{:?}",
            drained.overflowed
        );
        assert!(outbox.take_candles().is_empty());
        assert_eq!(
            Arc::strong_count(&line),
            1,
            "the queue let go of every copy"
        );
    }

    #[test]
    fn too_many_different_candles_overflow() {
        let outbox = Outbox::new(Encoding::Json);
        let message = update(0, 1.0);
        for t in 0..=MAX_PENDING_CANDLES as i64 {
            outbox.push_candle((1, t), message.clone());
        }
        assert!(outbox.take_messages(1).overflowed.is_some());
    }
}
