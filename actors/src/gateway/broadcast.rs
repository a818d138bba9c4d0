//! Fan-out of server messages to the UI clients that want them.
//!
//! Every connected client is registered with its [`Outbox`]. A client that
//! never subscribed gets every message (the seed's firehose); one that did
//! gets the messages of its topics, found through the [`TopicIndex`] (a
//! candle costs at most 8 lookups, whatever the number of clients and
//! topics). A message is encoded once per encoding its receivers use and
//! shared by all of them ([`SharedMessage`]); publishing never waits for a
//! client, and a slow client only ever holds its bounded outbox.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ohlcv_domain::SeriesKey;

use super::encoding::Encoding;
use super::outbox::Outbox;
use super::protocol::ServerMessage;
use super::shared::SharedMessage;
use super::topics::{ClientId, Kind, Topic, TopicIndex};

/// Publishes server messages to the clients that want them. Cheap to clone.
#[derive(Clone, Default)]
pub struct Broadcaster {
    hub: Arc<Hub>,
}

#[derive(Default)]
struct Hub {
    registry: RwLock<Registry>,
    published: AtomicU64,
    next_client: AtomicU64,
}

#[derive(Default)]
struct Registry {
    outboxes: HashMap<ClientId, Arc<Outbox>>,
    /// Clients that never subscribed: they get everything.
    firehose: HashSet<ClientId>,
    /// What each subscribed client subscribed to.
    subscriptions: HashMap<ClientId, HashSet<Topic>>,
    index: TopicIndex,
    /// Each series' small id, the outboxes' coalescing key.
    series: HashMap<SeriesKey, u32>,
}

/// A connection refused because [`Broadcaster::register`]'s limit is
/// reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} WebSocket clients are connected, the most allowed")]
pub struct TooManyClients(pub usize);

impl Broadcaster {
    /// A broadcaster with no clients yet.
    pub fn new() -> Self {
        Broadcaster::default()
    }

    /// Registers a client of `encoding`, unless `max_clients` are
    /// registered already. It gets every message until it subscribes; it
    /// is unregistered when the returned [`Client`] drops.
    ///
    /// # Errors
    /// [`TooManyClients`] at the limit.
    pub fn register(
        &self,
        encoding: Encoding,
        max_clients: usize,
    ) -> Result<Client, TooManyClients> {
        let mut registry = self.hub.write();
        if registry.outboxes.len() >= max_clients {
            return Err(TooManyClients(registry.outboxes.len()));
        }
        let id = self.hub.next_client.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::new(encoding));
        registry.outboxes.insert(id, outbox.clone());
        registry.firehose.insert(id);
        Ok(Client {
            id,
            outbox,
            hub: self.hub.clone(),
        })
    }

    /// Sends `message` to every client that wants it. Never blocks on a
    /// client; with no receiver the message is not even encoded.
    pub fn publish(&self, message: &ServerMessage) {
        let mut registry = self.hub.read();
        if registry.outboxes.is_empty() {
            return;
        }
        let slot_series = match message {
            ServerMessage::Candle(candle) => {
                let key = SeriesKey::new(candle.exchange, candle.symbol.clone(), candle.interval);
                let id = match registry.series.get(&key) {
                    Some(id) => *id,
                    None => {
                        drop(registry);
                        let id = self.hub.series_id(key.clone());
                        registry = self.hub.read();
                        id
                    }
                };
                Some((key, id, candle.t))
            }
            _ => None,
        };
        // Subscribers matched by the index; a client with several matching
        // patterns is found once per pattern. Firehose clients are never in
        // the index, so they need no deduplication.
        let mut subscribers: Vec<ClientId> = Vec::new();
        match (&slot_series, message) {
            (Some((key, _, _)), _) => registry
                .index
                .candle_subscribers(key, |c| subscribers.push(c)),
            (None, other) => {
                if let Some(kind) = kind_of(other) {
                    subscribers.extend(registry.index.kind_subscribers(kind));
                }
            }
        }
        subscribers.sort_unstable();
        subscribers.dedup();
        let outboxes: Vec<&Arc<Outbox>> = registry
            .firehose
            .iter()
            .chain(&subscribers)
            .filter_map(|id| registry.outboxes.get(id))
            .collect();
        if outboxes.is_empty() {
            return;
        }
        let json = outboxes.iter().any(|o| o.encoding() == Encoding::Json);
        let msgpack = outboxes
            .iter()
            .any(|o| o.encoding() == Encoding::MessagePack);
        let shared = match SharedMessage::new(message, json, msgpack) {
            Ok(shared) => Arc::new(shared),
            Err(error) => {
                tracing::error!(%error, "server message not sent");
                return;
            }
        };
        for outbox in outboxes {
            match &slot_series {
                Some((_, series, open_time)) => {
                    outbox.push_candle((*series, *open_time), shared.clone())
                }
                None => outbox.push_shared(shared.clone()),
            }
        }
        self.hub.published.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of connected clients.
    pub fn clients(&self) -> usize {
        self.hub.read().outboxes.len()
    }

    /// Messages published to at least one client since start.
    pub fn published(&self) -> u64 {
        self.hub.published.load(Ordering::Relaxed)
    }
}

/// The topic kind of a message other than a candle update; `None` for the
/// answers that are never broadcast.
fn kind_of(message: &ServerMessage) -> Option<Kind> {
    Some(match message {
        ServerMessage::WorkerMetrics(_) => Kind::WorkerMetrics,
        ServerMessage::SystemInfo(_) => Kind::SystemInfo,
        ServerMessage::Log(_) => Kind::Logs,
        ServerMessage::ReloadProgress(_) => Kind::ReloadProgress,
        ServerMessage::Candle(_) | ServerMessage::CommandResult(_) | ServerMessage::Error(_) => {
            return None
        }
    })
}

impl Hub {
    fn read(&self) -> RwLockReadGuard<'_, Registry> {
        // Every change leaves the registry valid; a panic elsewhere while
        // holding the lock does not make it unusable.
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The series' id, given one now if it has none. Ids are never reused:
    /// a collector serves a few thousand series at most.
    fn series_id(&self, key: SeriesKey) -> u32 {
        let mut registry = self.write();
        let next = registry.series.len() as u32;
        *registry.series.entry(key).or_insert(next)
    }
}

/// A registered client: its outbox, and its subscriptions. Unregisters
/// the client when dropped.
pub struct Client {
    id: ClientId,
    outbox: Arc<Outbox>,
    hub: Arc<Hub>,
}

impl Client {
    /// Where the client's messages wait.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Adds `topics` to what the client receives (ending its firehose) and
    /// returns every topic it now has, sorted.
    pub fn subscribe(&self, topics: &[Topic]) -> Vec<String> {
        let mut registry = self.hub.write();
        let registry = &mut *registry;
        registry.firehose.remove(&self.id);
        let mine = registry.subscriptions.entry(self.id).or_default();
        for topic in topics {
            if mine.insert(topic.clone()) {
                registry.index.insert(self.id, topic);
            }
        }
        sorted(mine)
    }

    /// Removes `topics` from what the client receives and returns every
    /// topic it still has. A client that unsubscribes from everything
    /// receives nothing (not the firehose again).
    pub fn unsubscribe(&self, topics: &[Topic]) -> Vec<String> {
        let mut registry = self.hub.write();
        let registry = &mut *registry;
        registry.firehose.remove(&self.id);
        let mine = registry.subscriptions.entry(self.id).or_default();
        for topic in topics {
            if mine.remove(topic) {
                registry.index.remove(self.id, topic);
            }
        }
        sorted(mine)
    }
}

fn sorted(topics: &HashSet<Topic>) -> Vec<String> {
    let mut names: Vec<String> = topics.iter().map(Topic::to_string).collect();
    names.sort_unstable();
    names
}

impl Drop for Client {
    fn drop(&mut self) {
        let mut registry = self.hub.write();
        let registry = &mut *registry;
        registry.outboxes.remove(&self.id);
        registry.firehose.remove(&self.id);
        if let Some(topics) = registry.subscriptions.remove(&self.id) {
            for topic in &topics {
                registry.index.remove(self.id, topic);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::encoding::Frame;
    use crate::gateway::outbox::Queued;
    use crate::gateway::protocol::{CandleMessage, LogMessage};
    use ohlcv_domain::{ExchangeId, Interval, Symbol};

    fn log(n: usize) -> ServerMessage {
        ServerMessage::Log(LogMessage {
            message: format!("line {n}"),
            kind: "info".into(),
            timestamp: String::new(),
        })
    }

    fn candle(exchange: ExchangeId, symbol: &str, t: i64) -> ServerMessage {
        ServerMessage::Candle(CandleMessage {
            exchange,
            symbol: Symbol::new(symbol).unwrap(),
            interval: Interval::M1,
            t,
            o: 1.0,
            h: 1.0,
            l: 1.0,
            c: 1.0,
            v: 1.0,
            closed: false,
        })
    }

    fn texts(client: &Client) -> Vec<String> {
        let mut out = Vec::new();
        for queued in client.outbox().take_messages(usize::MAX).messages {
            let frame = match queued {
                Queued::Shared(m) => m.frame(client.outbox().encoding()).unwrap(),
                Queued::Own(frame) => frame,
            };
            out.push(match frame {
                Frame::Text(t) => t.to_string(),
                Frame::Binary(b) => format!("{:?}", rmp_serde::from_slice::<serde_json::Value>(&b)),
            });
        }
        for candle in client.outbox().take_candles() {
            let Some(Frame::Text(text)) = candle.frame(Encoding::Json) else {
                panic!("not JSON")
            };
            out.push(text.to_string());
        }
        out
    }

    #[test]
    fn a_client_gets_everything_until_it_subscribes_then_only_its_topics() {
        let broadcaster = Broadcaster::new();
        broadcaster.publish(&log(0)); // nobody listening: dropped, not counted
        assert_eq!(broadcaster.published(), 0);

        let firehose = broadcaster.register(Encoding::Json, 10).unwrap();
        let picky = broadcaster.register(Encoding::Json, 10).unwrap();
        let topics = picky.subscribe(&["candles:*:BTCUSDT:1m".parse().unwrap()]);
        assert_eq!(topics, ["candles:*:BTCUSDT:1m"]);

        broadcaster.publish(&log(1));
        broadcaster.publish(&candle(ExchangeId::OkxFutures, "BTCUSDT", 0));
        broadcaster.publish(&candle(ExchangeId::OkxFutures, "ETHUSDT", 0));
        assert_eq!(broadcaster.published(), 3);

        let all = texts(&firehose);
        assert_eq!(all.len(), 3, "{all:?}");
        let mine = texts(&picky);
        assert_eq!(mine.len(), 1, "{mine:?}");
        assert!(mine[0].contains("BTCUSDT"), "{mine:?}");

        let left = picky.unsubscribe(&["candles:*:BTCUSDT:1m".parse().unwrap()]);
        assert!(left.is_empty());
        broadcaster.publish(&candle(ExchangeId::OkxFutures, "BTCUSDT", 60_000));
        assert!(texts(&picky).is_empty());
    }

    #[test]
    fn clients_beyond_the_limit_are_refused_and_leaving_makes_room() {
        let broadcaster = Broadcaster::new();
        let first = broadcaster.register(Encoding::Json, 2).unwrap();
        let _second = broadcaster.register(Encoding::MessagePack, 2).unwrap();
        assert_eq!(
            broadcaster.register(Encoding::Json, 2).err(),
            Some(TooManyClients(2))
        );
        assert_eq!(broadcaster.clients(), 2);
        drop(first);
        assert_eq!(broadcaster.clients(), 1);
        assert!(broadcaster.register(Encoding::Json, 2).is_ok());
    }

    #[test]
    fn each_encoding_is_made_once_and_shared() {
        let broadcaster = Broadcaster::new();
        let a = broadcaster.register(Encoding::MessagePack, 10).unwrap();
        let b = broadcaster.register(Encoding::MessagePack, 10).unwrap();
        broadcaster.publish(&log(7));
        let take = |c: &Client| match c.outbox().take_messages(1).messages.pop() {
            Some(Queued::Shared(m)) => m,
            other => panic!("expected a shared message, got {other:?}"),
        };
        let (ma, mb) = (take(&a), take(&b));
        assert!(Arc::ptr_eq(&ma, &mb), "one encoding for both clients");
        assert!(
            ma.frame(Encoding::Json).is_none(),
            "no JSON client, no JSON"
        );
    }
}
