//! Bybit v5 public linear WebSocket, without the socket: topic names,
//! how subscriptions are spread over connections and requests, the
//! keep-alive ping, and decoding of a text frame.
//!
//! A live stream is: [`plan_connections`] for the series, per connection
//! the [`subscribe_requests`], a [`ping_message`] every [`PING_INTERVAL`],
//! and [`decode_frame`] on every text frame received.

use std::time::Duration;

use ohlcv_domain::{Candle, Interval, SeriesKey, Symbol};

use super::wire::{KlinePush, OpResponse, Request};
use super::{
    decode_error, interval_from_name, interval_name, series_key, symbol_name, to_candle,
    WireCandle, EXCHANGE,
};
use crate::fast_json::typed_parse_is_exact;
use crate::source::ExchangeError;

/// How often to send `{"op":"ping"}`: "we recommend that you send the
/// ping heartbeat packet every 20 seconds to maintain the WebSocket
/// connection" (<https://bybit-exchange.github.io/docs/v5/ws/connect>).
/// The same page says a connection with no ping-pong and no data is cut
/// after 10 minutes.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// Most characters of topics one public connection may subscribe to, all
/// requests together: "for one public connection, you cannot have length
/// of "args" array over 21,000 characters"
/// (<https://bybit-exchange.github.io/docs/v5/ws/connect>, section "Public
/// channel, Args limits"). Counted as the sum of the topics' lengths, as
/// the Chinese page says ("args裡的數組元素長度總和").
pub const MAX_ARGS_CHARS_PER_CONNECTION: usize = 21_000;

/// Topics per subscribe request. The docs set no count limit for linear
/// ("No args limit for Futures and Spread for now"; spot is limited to
/// 10 per request): 10 is our choice, so that a refused request refuses few
/// series and its acknowledgement names a small, known set.
pub const ARGS_PER_REQUEST: usize = 10;

/// The kline topic of `key`: `kline.{interval}.{symbol}` (`kline.30.BTCUSDT`,
/// <https://bybit-exchange.github.io/docs/v5/websocket/public/kline>).
///
/// # Errors
/// [`ExchangeError::Rejected`] for a series of another exchange or an
/// interval Bybit does not serve.
pub fn topic(key: &SeriesKey) -> Result<String, ExchangeError> {
    if key.exchange != EXCHANGE {
        return Err(ExchangeError::Rejected(format!(
            "cannot subscribe to {key} on the {EXCHANGE} exchange"
        )));
    }
    let name = interval_name(key.interval).ok_or_else(|| {
        ExchangeError::Rejected(format!("{EXCHANGE} has no {} candles", key.interval))
    })?;
    Ok(format!("kline.{name}.{}", symbol_name(&key.symbol)))
}

/// The interval and symbol a kline topic names, or `None` for anything
/// else.
pub fn parse_topic(topic: &str) -> Option<(Interval, Symbol)> {
    let rest = topic.strip_prefix("kline.")?;
    let (interval, symbol) = rest.split_once('.')?;
    Some((interval_from_name(interval)?, Symbol::new(symbol).ok()?))
}

/// The topics of `keys`, without duplicates, split into groups that each
/// fit one connection ([`MAX_ARGS_CHARS_PER_CONNECTION`]). Hundreds of
/// series fit one connection (`kline.720.1000PEPEUSDT` is 22 characters).
///
/// # Errors
/// What [`topic`] returns for any of `keys`.
pub fn plan_connections(keys: &[SeriesKey]) -> Result<Vec<Vec<String>>, ExchangeError> {
    let mut connections: Vec<Vec<String>> = Vec::new();
    let mut used = 0;
    let mut seen = std::collections::HashSet::new();
    for key in keys {
        let topic = topic(key)?;
        if !seen.insert(topic.clone()) {
            continue;
        }
        match connections.last_mut() {
            Some(current) if used + topic.len() <= MAX_ARGS_CHARS_PER_CONNECTION => {
                used += topic.len();
                current.push(topic);
            }
            _ => {
                used = topic.len();
                connections.push(vec![topic]);
            }
        }
    }
    Ok(connections)
}

/// The subscribe requests for one connection's `topics`, at most
/// [`ARGS_PER_REQUEST`] each, as `(req_id, text frame)`. Request ids are
/// `first_req_id`, `first_req_id + 1`, … so each acknowledgement
/// ([`SubscribeAck::req_id`]) names its request.
///
/// `{"req_id":"1","op":"subscribe","args":["kline.1.BTCUSDT"]}`
pub fn subscribe_requests(topics: &[String], first_req_id: u64) -> Vec<(String, String)> {
    topics
        .chunks(ARGS_PER_REQUEST)
        .zip(first_req_id..)
        .map(|(args, id)| {
            let req_id = id.to_string();
            let request = Request {
                req_id: Some(req_id.clone()),
                op: "subscribe".to_owned(),
                args: args.to_vec(),
            };
            (req_id, to_text(&request))
        })
        .collect()
}

/// The keep-alive frame, `{"op":"ping"}`, to send every [`PING_INTERVAL`].
pub fn ping_message() -> String {
    to_text(&Request {
        req_id: None,
        op: "ping".to_owned(),
        args: Vec::new(),
    })
}

fn to_text(request: &Request) -> String {
    // A struct of strings always serialises.
    serde_json::to_string(request).unwrap_or_default()
}

/// What one text frame of the public linear WebSocket carried.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    /// Kline updates: `closed` is Bybit's `confirm`.
    Candles(Vec<Candle>),
    /// The answer to a subscribe request.
    Subscribed(SubscribeAck),
    /// The answer to a ping.
    Pong,
    /// Anything else (another topic, an unsubscribe answer): ignore it,
    /// it still shows the connection is alive.
    Unknown,
}

/// Bybit's answer to one subscribe request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeAck {
    /// The request's id; `None` when the answer carries none (or `""`).
    pub req_id: Option<String>,
    /// Whether the subscription was accepted.
    pub success: bool,
    /// Bybit's message: empty on success, the reason on failure.
    pub ret_msg: String,
}

impl SubscribeAck {
    /// `Ok` for an accepted subscription.
    ///
    /// # Errors
    /// [`ExchangeError::Rejected`] with Bybit's reason otherwise.
    pub fn check(&self) -> Result<(), ExchangeError> {
        if self.success {
            Ok(())
        } else {
            Err(ExchangeError::Rejected(format!(
                "subscribe request {} refused: {}",
                self.req_id.as_deref().unwrap_or("(no id)"),
                self.ret_msg
            )))
        }
    }
}

/// Decodes one text frame.
///
/// # Errors
/// [`ExchangeError::Decode`] naming the field when the frame is not JSON,
/// or is a kline push or an operation answer that does not match the
/// documented shape. Valid JSON of no known kind is [`WsEvent::Unknown`].
pub fn decode_frame(text: &str) -> Result<WsEvent, ExchangeError> {
    // A kline push, parsed once into its typed form. Anything else, or
    // anything this parse refuses, goes the general way below, which gives
    // the errors.
    if typed_parse_is_exact(text) {
        if let Ok(push) = serde_json::from_str::<KlinePush<&str>>(text) {
            if push.topic.starts_with("kline.") {
                return decode_push(&push, text).map(WsEvent::Candles);
            }
        }
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| decode_error(format!("websocket frame: {e}"), text))?;
    let Some(object) = value.as_object() else {
        return Ok(WsEvent::Unknown);
    };
    if let Some(topic) = object.get("topic").and_then(|t| t.as_str()) {
        if !topic.starts_with("kline.") {
            return Ok(WsEvent::Unknown);
        }
        let push: KlinePush = typed(value, "kline push", text)?;
        return decode_push(&push, text).map(WsEvent::Candles);
    }
    match object.get("op").and_then(|o| o.as_str()) {
        Some("subscribe") => {
            let answer: OpResponse = typed(value, "subscribe response", text)?;
            Ok(WsEvent::Subscribed(SubscribeAck {
                req_id: answer.req_id.filter(|id| !id.is_empty()),
                success: answer.success.unwrap_or(false),
                ret_msg: answer.ret_msg,
            }))
        }
        // Linear: {"success":true,"ret_msg":"pong","op":"ping",…};
        // option/spread: {"args":[…],"op":"pong"}.
        Some("ping") | Some("pong") => {
            let answer: OpResponse = typed(value, "pong", text)?;
            if answer.op == "pong" || answer.ret_msg == "pong" {
                Ok(WsEvent::Pong)
            } else {
                Ok(WsEvent::Unknown)
            }
        }
        _ => Ok(WsEvent::Unknown),
    }
}

fn typed<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    what: &str,
    text: &str,
) -> Result<T, ExchangeError> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| decode_error(format!("{what}: {}: {}", e.path(), e.inner()), text))
}

/// The candles of a kline push, through the one conversion.
fn decode_push<S: AsRef<str>>(
    push: &KlinePush<S>,
    text: &str,
) -> Result<Vec<Candle>, ExchangeError> {
    let (interval, symbol) = parse_topic(push.topic.as_ref()).ok_or_else(|| {
        decode_error(
            format!(
                "topic: {:?} is not kline.{{interval}}.{{symbol}}",
                push.topic.as_ref()
            ),
            text,
        )
    })?;
    let key = series_key(symbol, interval);
    let name = interval_name(interval).unwrap_or_default();
    push.data
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let at = format!("data[{i}]");
            if k.interval.as_ref() != name {
                return Err(decode_error(
                    format!(
                        "{at}.interval: {:?} differs from the topic's {name:?}",
                        k.interval.as_ref()
                    ),
                    text,
                ));
            }
            let wire = WireCandle {
                start: k.start,
                open: k.open.as_ref(),
                high: k.high.as_ref(),
                low: k.low.as_ref(),
                close: k.close.as_ref(),
                volume: k.volume.as_ref(),
            };
            to_candle(&key, wire, k.confirm, &at)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use ohlcv_domain::ExchangeId;

    use super::*;

    const KLINE: &str = include_str!("test_data/ws_kline.json");
    const SUBSCRIBE_REQUEST: &str = include_str!("test_data/ws_subscribe_request.json");
    const SUBSCRIBE_RESPONSE: &str = include_str!("test_data/ws_subscribe_response.json");
    const PING: &str = include_str!("test_data/ws_ping.json");
    const PONG: &str = include_str!("test_data/ws_pong.json");

    fn key(symbol: &str, interval: Interval) -> SeriesKey {
        series_key(Symbol::new(symbol).unwrap(), interval)
    }

    #[test]
    fn decodes_the_documented_kline_push() {
        let WsEvent::Candles(candles) = decode_frame(KLINE).unwrap() else {
            panic!("not candles");
        };
        let c = &candles[..];
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].key, key("BTCUSDT", Interval::M5));
        assert_eq!(c[0].open_time, 1_672_324_800_000);
        assert_eq!(
            (c[0].open, c[0].high, c[0].low, c[0].close, c[0].volume),
            (16649.5, 16677.0, 16608.0, 16677.0, 2.081)
        );
        assert!(!c[0].closed, "confirm is false");

        let confirmed = KLINE.replace("\"confirm\": false", "\"confirm\": true");
        let WsEvent::Candles(closed) = decode_frame(&confirmed).unwrap() else {
            panic!("not candles");
        };
        assert!(closed[0].closed);
    }

    #[test]
    fn decodes_documented_control_frames() {
        assert_eq!(
            decode_frame(SUBSCRIBE_RESPONSE).unwrap(),
            WsEvent::Subscribed(SubscribeAck {
                req_id: None,
                success: true,
                ret_msg: String::new(),
            })
        );
        assert_eq!(decode_frame(PONG).unwrap(), WsEvent::Pong);
        // The option/spread pong shape from the same page.
        assert_eq!(
            decode_frame(r#"{"args":["1672916271846"],"op":"pong"}"#).unwrap(),
            WsEvent::Pong
        );
        // Our own requests read back as the documented ones do.
        let ping: Request = serde_json::from_str(PING).unwrap();
        assert_eq!(ping.op, "ping");
        let sub: Request = serde_json::from_str(SUBSCRIBE_REQUEST).unwrap();
        assert_eq!((sub.op.as_str(), sub.args.len()), ("subscribe", 3));
    }

    #[test]
    fn a_refused_subscription_is_a_rejection() {
        // Not from the docs, which show no failure: assumed shape.
        let text = r#"{"success":false,"ret_msg":"error:handler not found,topic:kline.2.BTCUSDT","conn_id":"c","req_id":"7","op":"subscribe"}"#;
        let WsEvent::Subscribed(ack) = decode_frame(text).unwrap() else {
            panic!("not an ack");
        };
        assert_eq!(ack.req_id.as_deref(), Some("7"));
        let err = ack.check().unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("handler not found"), "{err}");
    }

    #[test]
    fn other_frames_are_unknown_and_bad_ones_name_the_field() {
        for text in [
            r#"{"topic":"publicTrade.BTCUSDT","data":[]}"#,
            r#"{"op":"unsubscribe","success":true,"ret_msg":""}"#,
            r#"{"op":"ping","success":true,"ret_msg":""}"#,
            "[]",
            "42",
            "{}",
        ] {
            assert_eq!(decode_frame(text).unwrap(), WsEvent::Unknown, "{text}");
        }
        let cases = [
            ("not json", "websocket frame"),
            (r#"{"topic":"kline.5.BTCUSDT"}"#, "missing field `data`"),
            (r#"{"topic":"kline.M.BTCUSDT","data":[]}"#, "topic"),
            (r#"{"topic":"kline.5.btc","data":[]}"#, "topic"),
            (&KLINE.replace("\"16608\"", "\"low?\""), "data[0].low"),
            (
                &KLINE.replace("\"interval\": \"5\"", "\"interval\": \"1\""),
                "data[0].interval",
            ),
            (
                &KLINE.replace("\"confirm\": false", "\"confirm\": \"no\""),
                "data[0].confirm",
            ),
            (
                &KLINE.replace("1672324800000,", "1672324800001,"),
                "not aligned",
            ),
            (r#"{"op":"subscribe","success":"yes"}"#, "success"),
        ];
        for (text, expected) in cases {
            let err = decode_frame(text).unwrap_err();
            assert!(
                err.to_string().contains(expected),
                "{text}: {err} lacks {expected:?}"
            );
        }
        for end in 0..KLINE.len() {
            let _ = decode_frame(&KLINE[..end]);
        }
    }

    #[test]
    fn topics_round_trip_and_refuse_other_exchanges() {
        for interval in Interval::ALL {
            let k = key("1000PEPEUSDT", interval);
            let t = topic(&k).unwrap();
            assert_eq!(parse_topic(&t), Some((interval, k.symbol.clone())));
        }
        assert_eq!(
            topic(&key("BTCUSDT", Interval::M30)).unwrap(),
            "kline.30.BTCUSDT"
        );
        let other = SeriesKey::new(
            ExchangeId::Simulated,
            Symbol::new("BTCUSDT").unwrap(),
            Interval::M1,
        );
        assert!(matches!(topic(&other), Err(ExchangeError::Rejected(_))));
        assert_eq!(parse_topic("orderbook.1.BTCUSDT"), None);
        assert_eq!(parse_topic("kline.5"), None);
    }

    #[test]
    fn plans_connections_within_the_args_limit_and_requests_of_ten() {
        let keys: Vec<SeriesKey> = (0..2_000)
            .map(|i| key(&format!("S{i:04}USDT"), Interval::ALL[i % 12]))
            .collect();
        let mut with_duplicates = keys.clone();
        with_duplicates.extend_from_slice(&keys[..10]);
        let connections = plan_connections(&with_duplicates).unwrap();
        assert!(connections.len() > 1);
        assert_eq!(connections.iter().map(Vec::len).sum::<usize>(), 2_000);
        for topics in &connections {
            let chars: usize = topics.iter().map(String::len).sum();
            assert!(chars <= MAX_ARGS_CHARS_PER_CONNECTION, "{chars}");
        }

        let requests = subscribe_requests(&connections[0][..25], 7);
        assert_eq!(requests.len(), 3);
        let ids: Vec<_> = requests.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["7", "8", "9"]);
        let first: Request = serde_json::from_str(&requests[0].1).unwrap();
        assert_eq!(first.op, "subscribe");
        assert_eq!(first.req_id.as_deref(), Some("7"));
        assert_eq!(first.args.len(), ARGS_PER_REQUEST);
        assert_eq!(
            subscribe_requests(&["kline.1.BTCUSDT".to_owned()], 1)[0].1,
            r#"{"req_id":"1","op":"subscribe","args":["kline.1.BTCUSDT"]}"#
        );
        assert_eq!(ping_message(), r#"{"op":"ping"}"#);
        assert_eq!(PING_INTERVAL, Duration::from_secs(20));
    }

    #[test]
    fn the_single_parse_accepts_no_frame_the_value_parse_refuses() {
        for text in [
            KLINE.replace("\"34666.4005\"", "1e400"),
            KLINE.replace("\"snapshot\"", r#""\ud800""#),
        ] {
            match decode_frame(&text) {
                Err(e @ ExchangeError::Decode { .. }) => {
                    assert!(e.to_string().contains("websocket frame"), "{text}: {e}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        // Not an object: not a push, whatever it holds.
        let listed = format!("[{KLINE}]");
        assert_eq!(decode_frame(&listed).unwrap(), WsEvent::Unknown);
    }
}
