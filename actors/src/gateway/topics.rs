//! What a WebSocket client can subscribe to, and the index that finds a
//! message's subscribers without looking at every client.
//!
//! Topics are strings:
//!
//! | topic | messages |
//! |---|---|
//! | `candles:<exchange>:<symbol>:<interval>` | `candle` updates of the matching series; each segment may be `*` |
//! | `worker_metrics` | `worker_metrics`, once a second |
//! | `system_info` | `system_info`, once a second |
//! | `logs` | `log` lines |
//! | `reload_progress` | `reload_progress` of history syncs |
//!
//! The [`TopicIndex`] keeps candle patterns by their *shape* (which of the
//! three segments are wildcards): a candle is matched by looking up, for
//! each of the at most 8 shapes that anyone subscribed with, the one
//! pattern of that shape the candle can match. The cost of matching is
//! therefore independent of the number of clients and topics; only the
//! subscribers found are touched.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use ohlcv_domain::{ExchangeId, Interval, SeriesKey, Symbol};

/// A client, as the index knows it.
pub type ClientId = u64;

/// The `*` of a topic segment.
const WILDCARD: &str = "*";

/// A candle topic: each segment a value, or `None` for `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CandlePattern {
    /// The exchange, or any.
    pub exchange: Option<ExchangeId>,
    /// The symbol, or any.
    pub symbol: Option<Symbol>,
    /// The interval, or any.
    pub interval: Option<Interval>,
}

impl CandlePattern {
    /// Which segments are given, as bits (exchange 1, symbol 2, interval 4):
    /// the pattern's shape.
    fn shape(&self) -> u8 {
        u8::from(self.exchange.is_some())
            | u8::from(self.symbol.is_some()) << 1
            | u8::from(self.interval.is_some()) << 2
    }

    /// The one pattern of `shape` that `key` matches.
    fn of_shape(key: &SeriesKey, shape: u8) -> CandlePattern {
        CandlePattern {
            exchange: (shape & 1 != 0).then_some(key.exchange),
            symbol: (shape & 2 != 0).then(|| key.symbol.clone()),
            interval: (shape & 4 != 0).then_some(key.interval),
        }
    }

    /// Whether `key` is one of the series the pattern names.
    pub fn matches(&self, key: &SeriesKey) -> bool {
        self.exchange.is_none_or(|e| e == key.exchange)
            && self.symbol.as_ref().is_none_or(|s| *s == key.symbol)
            && self.interval.is_none_or(|i| i == key.interval)
    }
}

/// A topic a client can subscribe to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Candle updates of the series matching the pattern.
    Candles(CandlePattern),
    /// Every message of one other kind.
    Other(Kind),
}

/// The message kinds besides candles, each a topic of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `worker_metrics`.
    WorkerMetrics = 0,
    /// `system_info`.
    SystemInfo = 1,
    /// `log`.
    Logs = 2,
    /// `reload_progress`.
    ReloadProgress = 3,
}

impl Kind {
    /// Every kind, in index order.
    pub const ALL: [Kind; 4] = [
        Kind::WorkerMetrics,
        Kind::SystemInfo,
        Kind::Logs,
        Kind::ReloadProgress,
    ];

    /// The topic's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::WorkerMetrics => "worker_metrics",
            Kind::SystemInfo => "system_info",
            Kind::Logs => "logs",
            Kind::ReloadProgress => "reload_progress",
        }
    }
}

/// Why a string is not a topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{topic:?} is not a topic: {why}; topics are candles:<exchange>:<symbol>:<interval> (each segment may be *), worker_metrics, system_info, logs and reload_progress")]
pub struct UnknownTopic {
    /// The string given.
    pub topic: String,
    /// What is wrong with it.
    pub why: String,
}

impl FromStr for Topic {
    type Err = UnknownTopic;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let unknown = |why: String| UnknownTopic {
            topic: text.to_owned(),
            why,
        };
        if let Some(kind) = Kind::ALL.into_iter().find(|k| k.as_str() == text) {
            return Ok(Topic::Other(kind));
        }
        let mut parts = text.split(':');
        if parts.next() != Some("candles") {
            return Err(unknown("no such topic".into()));
        }
        let segments: Vec<&str> = parts.collect();
        let [exchange, symbol, interval] = segments[..] else {
            return Err(unknown(format!(
                "a candles topic has 3 segments after `candles:`, this one {}",
                segments.len()
            )));
        };
        fn segment<T>(
            text: &str,
            parse: impl FnOnce(&str) -> Result<T, String>,
        ) -> Result<Option<T>, String> {
            if text == WILDCARD {
                Ok(None)
            } else {
                parse(text).map(Some)
            }
        }
        Ok(Topic::Candles(CandlePattern {
            exchange: segment(exchange, |t| t.parse().map_err(|e| format!("{e}")))
                .map_err(unknown)?,
            symbol: segment(symbol, |t| Symbol::new(t).map_err(|e| e.to_string()))
                .map_err(unknown)?,
            interval: segment(interval, |t| t.parse().map_err(|e| format!("{e}")))
                .map_err(unknown)?,
        }))
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Candles(p) => {
                f.write_str("candles:")?;
                match &p.exchange {
                    Some(e) => write!(f, "{e}:")?,
                    None => f.write_str("*:")?,
                }
                match &p.symbol {
                    Some(s) => write!(f, "{s}:")?,
                    None => f.write_str("*:")?,
                }
                match &p.interval {
                    Some(i) => write!(f, "{i}"),
                    None => f.write_str(WILDCARD),
                }
            }
            Topic::Other(kind) => f.write_str(kind.as_str()),
        }
    }
}

/// Subscribers by topic, for every client that subscribed at least once.
#[derive(Debug, Default)]
pub struct TopicIndex {
    /// Candle patterns and who subscribed to each.
    candles: HashMap<CandlePattern, HashSet<ClientId>>,
    /// How many patterns of each shape exist: shapes with none are not
    /// looked up at all.
    shapes: [usize; 8],
    /// Subscribers of each [`Kind`].
    kinds: [HashSet<ClientId>; 4],
}

impl TopicIndex {
    /// Adds `client` as a subscriber of `topic`; true if it was not yet.
    pub fn insert(&mut self, client: ClientId, topic: &Topic) -> bool {
        match topic {
            Topic::Candles(pattern) => {
                let subscribers = self.candles.entry(pattern.clone()).or_default();
                if subscribers.is_empty() {
                    self.shapes[usize::from(pattern.shape())] += 1;
                }
                subscribers.insert(client)
            }
            Topic::Other(kind) => self.kinds[*kind as usize].insert(client),
        }
    }

    /// Removes `client` from the subscribers of `topic`; true if it was one.
    pub fn remove(&mut self, client: ClientId, topic: &Topic) -> bool {
        match topic {
            Topic::Candles(pattern) => {
                let Some(subscribers) = self.candles.get_mut(pattern) else {
                    return false;
                };
                let removed = subscribers.remove(&client);
                if subscribers.is_empty() {
                    self.candles.remove(pattern);
                    self.shapes[usize::from(pattern.shape())] -= 1;
                }
                removed
            }
            Topic::Other(kind) => self.kinds[*kind as usize].remove(&client),
        }
    }

    /// Calls `found` with every subscriber of a candle of `key`, once per
    /// pattern it matches (a client with two matching patterns is found
    /// twice: the caller dedupes).
    pub fn candle_subscribers(&self, key: &SeriesKey, mut found: impl FnMut(ClientId)) {
        for shape in 0..8u8 {
            if self.shapes[usize::from(shape)] == 0 {
                continue;
            }
            if let Some(subscribers) = self.candles.get(&CandlePattern::of_shape(key, shape)) {
                subscribers.iter().copied().for_each(&mut found);
            }
        }
    }

    /// The subscribers of `kind`.
    pub fn kind_subscribers(&self, kind: Kind) -> &HashSet<ClientId> {
        &self.kinds[kind as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(exchange: ExchangeId, symbol: &str, interval: Interval) -> SeriesKey {
        SeriesKey::new(exchange, Symbol::new(symbol).unwrap(), interval)
    }

    fn found(index: &TopicIndex, key: &SeriesKey) -> Vec<ClientId> {
        let mut clients = Vec::new();
        index.candle_subscribers(key, |c| clients.push(c));
        clients.sort_unstable();
        clients.dedup();
        clients
    }

    #[test]
    fn topics_parse_with_wildcards_and_print_back() {
        for text in [
            "candles:binance_futures:BTCUSDT:1m",
            "candles:*:BTCUSDT:1m",
            "candles:okx_futures:*:*",
            "candles:*:*:*",
            "worker_metrics",
            "system_info",
            "logs",
            "reload_progress",
        ] {
            let topic: Topic = text.parse().unwrap();
            assert_eq!(topic.to_string(), text);
        }
    }

    #[test]
    fn a_bad_topic_is_refused_saying_why() {
        for (text, why) in [
            ("candle:x", "no such topic"),
            ("candles:binance_futures:BTCUSDT", "3 segments"),
            ("candles:nasdaq:BTCUSDT:1m", "nasdaq"),
            ("candles:*:btc/usdt:1m", "btc/usdt"),
            ("candles:*:BTCUSDT:7m", "7m"),
            ("", "no such topic"),
        ] {
            let error = text.parse::<Topic>().unwrap_err();
            assert!(error.to_string().contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn a_candle_finds_exactly_the_clients_whose_patterns_match() {
        let mut index = TopicIndex::default();
        let btc = key(ExchangeId::BinanceFutures, "BTCUSDT", Interval::M1);
        let topics = [
            (1, "candles:binance_futures:BTCUSDT:1m"),
            (2, "candles:*:BTCUSDT:1m"),
            (3, "candles:okx_futures:*:*"),
            (4, "candles:*:*:*"),
            (5, "candles:binance_futures:ETHUSDT:1m"),
            (6, "candles:binance_futures:*:5m"),
            (4, "candles:*:BTCUSDT:*"), // a second match of client 4
        ];
        for (client, topic) in topics {
            assert!(index.insert(client, &topic.parse().unwrap()));
        }
        assert_eq!(found(&index, &btc), [1, 2, 4]);
        let okx = key(ExchangeId::OkxFutures, "SOLUSDT", Interval::H1);
        assert_eq!(found(&index, &okx), [3, 4]);

        // Every pattern's verdict agrees with the index.
        for (client, topic) in topics {
            let Topic::Candles(pattern) = topic.parse().unwrap() else {
                unreachable!()
            };
            assert_eq!(pattern.matches(&btc), found(&index, &btc).contains(&client));
        }

        assert!(index.remove(4, &"candles:*:*:*".parse().unwrap()));
        assert!(!index.remove(4, &"candles:*:*:*".parse().unwrap()));
        assert_eq!(found(&index, &okx), [3]);
        assert_eq!(found(&index, &btc), [1, 2, 4]);
        assert!(index.remove(4, &"candles:*:BTCUSDT:*".parse().unwrap()));
        assert_eq!(found(&index, &btc), [1, 2]);
        assert_eq!(index.shapes.iter().sum::<usize>(), 5);
    }

    #[test]
    fn other_topics_have_their_own_subscribers() {
        let mut index = TopicIndex::default();
        let logs = Topic::Other(Kind::Logs);
        assert!(index.insert(7, &logs));
        assert!(!index.insert(7, &logs));
        assert!(index.kind_subscribers(Kind::Logs).contains(&7));
        assert!(index.kind_subscribers(Kind::WorkerMetrics).is_empty());
        assert!(index.remove(7, &logs));
        assert!(index.kind_subscribers(Kind::Logs).is_empty());
    }
}
