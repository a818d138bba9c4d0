//! Binance USDT-M futures market streams, without the socket: stream names,
//! the routed URL, subscription planning within the documented limits, and
//! decoding of text frames.
//!
//! Klines belong to the routed `/market` endpoint
//! (`wss://fstream.binance.com/market/...`). A connection without a routed
//! path only receives `/public` streams: it opens, accepts the subscription
//! and then stays silent for klines, so the networking step must use
//! [`market_stream_url`] and still watch for silence.
//!
//! Docs: <https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams>

use std::collections::BTreeSet;
use std::time::Duration;

use ohlcv_domain::{Candle, SeriesKey};
use serde_json::Value;

use super::wire::{Combined, KlineEvent, StreamAck, StreamError, StreamMethod, StreamRequest};
use super::{
    decode_error, interval_from_name, interval_name, parse_decimal, stream_symbol,
    symbol_from_wire, EXCHANGE,
};
use crate::fast_json::typed_parse_is_exact;
use crate::source::ExchangeError;

/// The routed path of regular market data, klines included ("Market
/// (regular market data): wss://fstream.binance.com/market").
pub const MARKET_PATH: &str = "/market";

/// "A single connection can listen to a maximum of 200 streams."
pub const MAX_STREAMS_PER_CONNECTION: usize = 200;

/// "WebSocket connections have a limit of 10 incoming messages per second";
/// a connection beyond it is disconnected, and repeated disconnects can ban
/// the IP.
pub const MAX_MESSAGES_PER_SECOND: u32 = 10;

/// Streams named in one SUBSCRIBE message. The docs state no per-message
/// limit; 50 keeps a message near 1 kB, well inside the frame sizes other
/// clients report as safe, and 200 streams take four messages.
pub const STREAMS_PER_MESSAGE: usize = 50;

/// Time between two subscribe messages on one connection: 5 per second,
/// half the documented limit, because the docs do not say whether our pong
/// frames count against it too.
pub const MESSAGE_SPACING: Duration = Duration::from_millis(200);

/// The combined-stream URL of the `/market` endpoint on `ws_url` (the
/// config's `ws_url`, or [`super::WS_URL`]): `{ws_url}/market/stream`.
/// Streams are then added with SUBSCRIBE messages; combined mode wraps
/// every event with its stream name.
pub fn market_stream_url(ws_url: &str) -> String {
    format!("{}{MARKET_PATH}/stream", ws_url.trim_end_matches('/'))
}

/// The kline stream of a series, `btcusdt@kline_1m` (symbol lower case);
/// `None` when Binance has no such interval.
pub fn stream_name(key: &SeriesKey) -> Option<String> {
    let interval = interval_name(key.interval)?;
    Some(format!("{}@kline_{interval}", stream_symbol(&key.symbol)))
}

/// One message of a [`ConnectionPlan`], to send `after` the connection
/// opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMessage {
    /// Delay from the connection's opening.
    pub after: Duration,
    /// The request to send, serialised with `serde_json`.
    pub request: StreamRequest,
}

/// The streams of one connection and the SUBSCRIBE messages that start
/// them, paced under [`MAX_MESSAGES_PER_SECOND`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionPlan {
    /// The stream names, at most [`MAX_STREAMS_PER_CONNECTION`].
    pub streams: Vec<String>,
    /// The messages, [`STREAMS_PER_MESSAGE`] streams each,
    /// [`MESSAGE_SPACING`] apart, the first at once.
    pub messages: Vec<PlannedMessage>,
}

/// Splits `subscriptions` into connections of at most 200 streams, each
/// with its paced SUBSCRIBE messages. Duplicates are subscribed once;
/// request ids count up from `first_id` across the plan, so an answer names
/// one request. The order is the streams' name order, so the same
/// subscriptions give the same plan.
///
/// # Errors
/// [`ExchangeError::Rejected`] for a series of another exchange or an
/// interval Binance does not have.
pub fn plan_subscriptions(
    subscriptions: &[SeriesKey],
    first_id: u64,
) -> Result<Vec<ConnectionPlan>, ExchangeError> {
    let mut names = BTreeSet::new();
    for key in subscriptions {
        if key.exchange != EXCHANGE {
            return Err(ExchangeError::Rejected(format!(
                "{key} is not a binance_futures series"
            )));
        }
        let name = stream_name(key).ok_or_else(|| {
            ExchangeError::Rejected(format!("binance_futures has no {} candles", key.interval))
        })?;
        names.insert(name);
    }
    let names: Vec<String> = names.into_iter().collect();
    let mut id = first_id;
    let plans = names
        .chunks(MAX_STREAMS_PER_CONNECTION)
        .map(|streams| {
            let messages = streams
                .chunks(STREAMS_PER_MESSAGE)
                .zip(0u32..)
                .map(|(batch, i)| {
                    let request = StreamRequest {
                        method: StreamMethod::Subscribe,
                        params: batch.to_vec(),
                        id,
                    };
                    id = id.wrapping_add(1);
                    PlannedMessage {
                        after: MESSAGE_SPACING * i,
                        request,
                    }
                })
                .collect();
            ConnectionPlan {
                streams: streams.to_vec(),
                messages,
            }
        })
        .collect();
    Ok(plans)
}

/// An UNSUBSCRIBE request for `streams`.
pub fn unsubscribe_request(streams: Vec<String>, id: u64) -> StreamRequest {
    StreamRequest {
        method: StreamMethod::Unsubscribe,
        params: streams,
        id,
    }
}

/// What a text frame of a market-stream connection carried.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A kline update: the open candle as it changes, or the final one with
    /// `closed: true`.
    Candle(Candle),
    /// The server accepted the request with this id.
    Ack {
        /// The id of the request answered.
        id: u64,
    },
    /// The server refused a request.
    Error(StreamError),
}

/// The one conversion of a stream kline event into our candle; `closed`
/// is the event's `k.x`.
///
/// # Errors
/// [`ExchangeError::Decode`] naming the field (`k.s`, `k.i`, `k.o`, …) that
/// we cannot use.
pub fn candle_from_event<S: AsRef<str>>(
    event: &KlineEvent<S>,
    raw: &str,
) -> Result<Candle, ExchangeError> {
    let k = &event.kline;
    let symbol = symbol_from_wire(k.symbol.as_ref(), "k.s")?;
    let interval = interval_from_name(k.interval.as_ref()).ok_or_else(|| {
        decode_error(
            format!(
                "k.i {:?} is not an interval we collect",
                k.interval.as_ref()
            ),
            raw,
        )
    })?;
    let field = |name: &str, text: &str| {
        parse_decimal(name, text).map_err(|e| match e {
            ExchangeError::Decode { reason, .. } => decode_error(reason, raw),
            other => other,
        })
    };
    Ok(Candle {
        key: SeriesKey::new(EXCHANGE, symbol, interval),
        open_time: k.start_time,
        open: field("k.o", k.open.as_ref())?,
        high: field("k.h", k.high.as_ref())?,
        low: field("k.l", k.low.as_ref())?,
        close: field("k.c", k.close.as_ref())?,
        volume: field("k.v", k.volume.as_ref())?,
        closed: k.closed,
    })
}

/// Decodes one text frame: a kline event (raw, or wrapped by a combined
/// stream), the answer to a request, or an error answer.
///
/// # Errors
/// [`ExchangeError::Decode`] with the reason and the start of the frame
/// for anything else: not JSON, an event other than `kline`, a missing or
/// malformed field.
pub fn decode_frame(text: &str) -> Result<Frame, ExchangeError> {
    // The frame of every kline on a combined stream, parsed once into its
    // typed form. Anything else, or anything this parse refuses, goes the
    // general way below, which gives the errors.
    if !text.contains('[') && typed_parse_is_exact(text) {
        if let Ok(combined) = serde_json::from_str::<Combined<KlineEvent<&str>, &str>>(text) {
            if combined.data.event_type == "kline" {
                return candle_from_event(&combined.data, text).map(Frame::Candle);
            }
        }
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| decode_error(format!("frame: {e}"), text))?;
    let Value::Object(object) = &value else {
        return Err(decode_error("frame is not a JSON object", text));
    };
    if object.contains_key("stream") && object.contains_key("data") {
        let combined: Combined<Value> = serde_json::from_value(value)
            .map_err(|e| decode_error(format!("combined frame: {e}"), text))?;
        return decode_event(combined.data, text);
    }
    if object.contains_key("result") {
        let ack: StreamAck = serde_json::from_value(value)
            .map_err(|e| decode_error(format!("answer: {e}"), text))?;
        return Ok(Frame::Ack { id: ack.id });
    }
    if object.contains_key("code") {
        let error: StreamError = serde_json::from_value(value)
            .map_err(|e| decode_error(format!("error answer: {e}"), text))?;
        return Ok(Frame::Error(error));
    }
    decode_event(value, text)
}

/// Decodes a raw stream event (the `data` of a combined frame).
fn decode_event(data: Value, raw: &str) -> Result<Frame, ExchangeError> {
    match data.get("e").and_then(Value::as_str) {
        Some("kline") => {}
        Some(other) => return Err(decode_error(format!("e: unexpected event {other:?}"), raw)),
        None => return Err(decode_error("e: missing event type", raw)),
    }
    let event: KlineEvent =
        serde_json::from_value(data).map_err(|e| decode_error(format!("kline event: {e}"), raw))?;
    candle_from_event(&event, raw).map(Frame::Candle)
}

#[cfg(test)]
mod tests {
    use ohlcv_domain::{ExchangeId, Interval, Symbol};

    use super::*;

    const KLINE_EVENT: &str = include_str!("test_data/kline_event.json");
    const ACK: &str = include_str!("test_data/subscribe_ack.json");
    const ERROR: &str = include_str!("test_data/stream_error.json");

    fn key(symbol: &str, interval: Interval) -> SeriesKey {
        SeriesKey::new(EXCHANGE, Symbol::new(symbol).unwrap(), interval)
    }

    fn documented_candle() -> Candle {
        Candle {
            key: key("BTCUSDT", Interval::M1),
            open_time: 1_638_747_660_000,
            open: 0.001,
            high: 0.0025,
            low: 0.0015,
            close: 0.002,
            volume: 1000.0,
            closed: false,
        }
    }

    #[test]
    fn urls_and_stream_names() {
        assert_eq!(
            market_stream_url("wss://fstream.binance.com"),
            "wss://fstream.binance.com/market/stream"
        );
        assert_eq!(
            market_stream_url("ws://127.0.0.1:9000/"),
            "ws://127.0.0.1:9000/market/stream"
        );
        assert_eq!(
            stream_name(&key("BTCUSDT", Interval::M1)).as_deref(),
            Some("btcusdt@kline_1m")
        );
        assert_eq!(
            stream_name(&key("1000PEPEUSDT", Interval::W1)).as_deref(),
            Some("1000pepeusdt@kline_1w")
        );
    }

    #[test]
    fn documented_event_decodes_raw_and_combined() {
        // The documented example's candle has a low above its open; we
        // decode what was sent, and the datasource's validation refuses it.
        let expected = documented_candle();
        assert_eq!(
            decode_frame(KLINE_EVENT).unwrap(),
            Frame::Candle(expected.clone())
        );
        let combined = format!(r#"{{"stream":"btcusdt@kline_1m","data":{KLINE_EVENT}}}"#);
        assert_eq!(decode_frame(&combined).unwrap(), Frame::Candle(expected));
        let closed = KLINE_EVENT.replace("\"x\": false", "\"x\": true");
        match decode_frame(&closed).unwrap() {
            Frame::Candle(c) => assert!(c.closed),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn documented_answers_decode() {
        assert_eq!(decode_frame(ACK).unwrap(), Frame::Ack { id: 1 });
        assert_eq!(
            decode_frame(ERROR).unwrap(),
            Frame::Error(StreamError {
                code: 2,
                msg: "Invalid request: request ID must be an unsigned integer".into(),
                id: None,
            })
        );
    }

    #[test]
    fn bad_frames_are_errors_naming_the_field_never_panics() {
        let cases = [
            (String::new(), "frame"),
            ("[1]".to_owned(), "not a JSON object"),
            ("{}".to_owned(), "e: missing"),
            (
                r#"{"e":"aggTrade"}"#.to_owned(),
                "unexpected event \"aggTrade\"",
            ),
            (
                KLINE_EVENT.replace("\"x\": false,", ""),
                "missing field `x`",
            ),
            (KLINE_EVENT.replace("\"1m\"", "\"8h\""), "k.i \"8h\""),
            (
                KLINE_EVENT.replace("\"i\": \"1m\"", "\"i\": 1"),
                "kline event",
            ),
            (KLINE_EVENT.replace("\"0.0025\"", "\"high\""), "k.h"),
            (KLINE_EVENT.replace("\"1000\"", "\"-1\""), "k.v"),
            (
                KLINE_EVENT.replace(
                    "\"s\": \"BTCUSDT\",\n    \"i\"",
                    "\"s\": \"btc/usdt\",\n    \"i\"",
                ),
                "k.s",
            ),
            (r#"{"stream":"x","data":[]}"#.to_owned(), "e: missing"),
            (r#"{"result":null}"#.to_owned(), "missing field `id`"),
            (r#"{"code":"x","msg":"m"}"#.to_owned(), "error answer"),
        ];
        for (text, expected) in cases {
            match decode_frame(&text) {
                Err(e @ ExchangeError::Decode { .. }) => {
                    assert!(e.to_string().contains(expected), "{text}: {e}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn plans_respect_connection_and_message_limits() {
        // 450 distinct series plus duplicates: 3 connections (200, 200, 50).
        let symbols: Vec<String> = (0..150).map(|i| format!("S{i:03}USDT")).collect();
        let mut keys = Vec::new();
        for s in &symbols {
            for interval in [Interval::M1, Interval::H1, Interval::D1] {
                keys.push(key(s, interval));
            }
        }
        keys.extend(keys.clone());
        let plans = plan_subscriptions(&keys, 7).unwrap();
        let sizes: Vec<usize> = plans.iter().map(|p| p.streams.len()).collect();
        assert_eq!(sizes, vec![200, 200, 50]);

        let mut ids = Vec::new();
        let mut all = BTreeSet::new();
        for plan in &plans {
            let mut subscribed = Vec::new();
            for (i, m) in plan.messages.iter().enumerate() {
                assert_eq!(m.request.method, StreamMethod::Subscribe);
                assert!(m.request.params.len() <= STREAMS_PER_MESSAGE);
                assert_eq!(m.after, MESSAGE_SPACING * i as u32);
                subscribed.extend(m.request.params.iter().cloned());
                ids.push(m.request.id);
            }
            assert_eq!(subscribed, plan.streams);
            // Within any one second, fewer messages than the limit.
            let per_second = plan
                .messages
                .iter()
                .filter(|m| m.after < Duration::from_secs(1))
                .count();
            assert!(per_second < MAX_MESSAGES_PER_SECOND as usize);
            all.extend(plan.streams.iter().cloned());
        }
        assert_eq!(all.len(), 450);
        assert_eq!(ids, (7..7 + 9).collect::<Vec<u64>>());
        assert!(all.contains("s000usdt@kline_1m"));
        assert_eq!(plan_subscriptions(&[], 1).unwrap(), vec![]);
    }

    #[test]
    fn plans_refuse_series_of_other_exchanges() {
        let foreign = SeriesKey::new(
            ExchangeId::Simulated,
            Symbol::new("BTCUSDT").unwrap(),
            Interval::M1,
        );
        assert!(matches!(
            plan_subscriptions(&[foreign], 1),
            Err(ExchangeError::Rejected(_))
        ));
        let req = unsubscribe_request(vec!["btcusdt@kline_1m".into()], 9);
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"method":"UNSUBSCRIBE","params":["btcusdt@kline_1m"],"id":9}"#
        );
    }

    #[test]
    fn the_single_parse_accepts_no_frame_the_value_parse_refuses() {
        let combined = |event: &str| format!(r#"{{"stream":"btcusdt@kline_1m","data":{event}}}"#);
        let cases = [
            // Ignored fields the typed parse alone would skip unchecked.
            (
                combined(&KLINE_EVENT.replace("\"123456\"", "1e400")),
                "number out of range",
            ),
            (
                combined(&KLINE_EVENT.replace("\"123456\"", r#""\ud800""#)),
                "frame: unexpected end of hex escape",
            ),
            // A struct from a JSON array, which serde would accept.
            (
                r#"{"stream":"x","data":["kline",1,"BTCUSDT",{}]}"#.to_owned(),
                "e: missing",
            ),
            (
                format!(r#"["btcusdt@kline_1m",{KLINE_EVENT}]"#),
                "not a JSON object",
            ),
        ];
        for (text, expected) in cases {
            match decode_frame(&text) {
                Err(e @ ExchangeError::Decode { .. }) => {
                    assert!(e.to_string().contains(expected), "{text}: {e}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
