//! OKX v5 business WebSocket (`/ws/v5/business`), without the socket:
//! channel names, subscribe messages, keep-alive constants and decoding of
//! one text frame.
//!
//! Keep-alive as documented: the server cuts a connection when nothing was
//! pushed for 30 s; the client sets a timer of N < 30 s on every message
//! received, sends the text `ping` when it fires and expects the text
//! `pong` within N seconds, else reconnects.

use std::time::Duration;

use ohlcv_domain::{Candle, Interval, SeriesKey};

use super::wire::{CandlePush, ChannelArg, SubscribeRequest, WsEvent};
use super::{bar, candle_from_row, decode_error, inst_id, series_key};
use crate::fast_json::typed_parse_is_exact;
use crate::source::ExchangeError;

/// The text frame to send when the connection has been quiet.
pub const PING: &str = "ping";

/// The server's text reply to [`PING`].
pub const PONG: &str = "pong";

/// Quiet time after which the server closes the connection (documented).
pub const SERVER_IDLE_CUTOFF: Duration = Duration::from_secs(30);

/// Send [`PING`] after this long without any message: under the 30 s
/// [`SERVER_IDLE_CUTOFF`] with room for one round trip.
pub const PING_AFTER: Duration = Duration::from_secs(25);

/// Reconnect when no [`PONG`] (or any other message) arrived this long
/// after a ping: by then the server's 30 s cut-off has passed as well.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(5);
const _: () =
    assert!(PING_AFTER.as_secs() + PONG_TIMEOUT.as_secs() <= SERVER_IDLE_CUTOFF.as_secs());

/// Documented limit on the total length of the channels in one subscribe
/// request: 64 KB. [`subscribe_messages`] splits larger sets.
pub const MAX_SUBSCRIBE_BYTES: usize = 64 * 1024;

/// Documented limit on `subscribe`/`unsubscribe`/`login` requests per
/// connection and hour; a reconnect starts a new count.
pub const MAX_SUBSCRIBE_REQUESTS_PER_HOUR: u32 = 480;

/// Documented limit on new connections per second and IP.
pub const MAX_CONNECTS_PER_SECOND: u32 = 3;

/// The candle channel for `interval`: `candle` + its [`bar`] (`candle1m`,
/// `candle1H`, `candle6Hutc`, `candle1Dutc`), or `None` when OKX has no such
/// bar.
pub fn channel(interval: Interval) -> Option<String> {
    bar(interval).map(|b| format!("candle{b}"))
}

/// The subscribe requests (JSON text frames) for `keys`, each within
/// [`MAX_SUBSCRIBE_BYTES`], in `keys` order.
///
/// # Errors
/// [`ExchangeError::Rejected`] naming the series when OKX has no bar for
/// its interval or no swap for its symbol.
pub fn subscribe_messages(keys: &[SeriesKey]) -> Result<Vec<String>, ExchangeError> {
    let mut messages = Vec::new();
    let mut args: Vec<ChannelArg> = Vec::new();
    let mut bytes = 0;
    for key in keys {
        let arg = ChannelArg {
            channel: channel(key.interval).ok_or_else(|| {
                ExchangeError::Rejected(format!("{key}: OKX has no bar for {}", key.interval))
            })?,
            inst_id: inst_id(&key.symbol)?,
        };
        // `{"channel":"…","instId":"…"}` plus a separating comma.
        let len = arg.channel.len() + arg.inst_id.len() + 27;
        if !args.is_empty() && bytes + len > MAX_SUBSCRIBE_BYTES {
            messages.push(subscribe_text(std::mem::take(&mut args)));
            bytes = 0;
        }
        bytes += len;
        args.push(arg);
    }
    if !args.is_empty() {
        messages.push(subscribe_text(args));
    }
    Ok(messages)
}

fn subscribe_text(args: Vec<ChannelArg>) -> String {
    let request = SubscribeRequest {
        op: "subscribe".to_owned(),
        args,
    };
    // Serialising plain strings cannot fail.
    serde_json::to_string(&request).unwrap_or_default()
}

/// What one text frame from the business WebSocket says.
#[derive(Debug, Clone, PartialEq)]
pub enum WsMessage {
    /// Candle updates (open or closed) of one series.
    Candles(Vec<Candle>),
    /// A subscription was accepted.
    Subscribed(ChannelArg),
    /// A request was refused (`event: error`), e.g. code `60012`.
    Error {
        /// OKX error code.
        code: String,
        /// OKX's reason.
        msg: String,
    },
    /// A notice, e.g. code `64008`: the connection will close for a service
    /// upgrade in about 60 s; open a new one. The docs say notices are sent
    /// on `/ws/v5/public` and `/ws/v5/private` "for now", not on
    /// `/ws/v5/business`; it is decoded anyway in case that changes.
    Notice {
        /// OKX notice code.
        code: String,
        /// OKX's text.
        msg: String,
    },
    /// The reply to [`PING`].
    Pong,
    /// Anything else (unsubscribe acknowledgements, connection-count
    /// events, future message types), kept for the log.
    Unknown(String),
}

/// Decodes one text frame.
///
/// # Errors
/// [`ExchangeError::Decode`] when the frame is not JSON, or is a candle
/// push with an unknown channel, a non-swap instId or a bad row (naming the
/// field). Never panics on any input.
pub fn decode_text(text: &str) -> Result<WsMessage, ExchangeError> {
    if text == PONG {
        return Ok(WsMessage::Pong);
    }
    // A candle push, parsed once into its typed form. Anything else (an
    // `event` key makes it an event whatever else it holds), or anything
    // this parse refuses, goes the general way below, which gives the
    // errors.
    if !text.contains("\"event\"") && typed_parse_is_exact(text) {
        if let Ok(push) = serde_json::from_str::<CandlePush<&str>>(text) {
            return candles_of_push(&push).map(WsMessage::Candles);
        }
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| decode_error(e.to_string(), text))?;
    if value.get("event").is_some() {
        let event: WsEvent =
            serde_json::from_value(value).map_err(|e| decode_error(e.to_string(), text))?;
        let code = event.code.unwrap_or_default();
        let msg = event.msg.unwrap_or_default();
        return Ok(match (event.event.as_str(), event.arg) {
            ("subscribe", Some(arg)) => WsMessage::Subscribed(arg),
            ("error", _) => WsMessage::Error { code, msg },
            ("notice", _) => WsMessage::Notice { code, msg },
            _ => WsMessage::Unknown(text.to_owned()),
        });
    }
    if value.get("arg").is_some() && value.get("data").is_some() {
        let push: CandlePush =
            serde_json::from_value(value).map_err(|e| decode_error(e.to_string(), text))?;
        return candles_of_push(&push).map(WsMessage::Candles);
    }
    Ok(WsMessage::Unknown(text.to_owned()))
}

/// The candles of a candle push, through the one conversion.
fn candles_of_push<S: AsRef<str> + std::fmt::Debug>(
    push: &CandlePush<S>,
) -> Result<Vec<Candle>, ExchangeError> {
    let key = series_key(&push.arg.channel, &push.arg.inst_id)?;
    push.data
        .iter()
        .map(|row| candle_from_row(&key, row))
        .collect()
}

#[cfg(test)]
mod tests {
    use ohlcv_domain::{ExchangeId, Symbol};

    use super::*;

    const PUSH: &str = include_str!("test_data/ws_candle_push.json");
    const SUBSCRIBE: &str = include_str!("test_data/ws_subscribe_request.json");
    const SUBSCRIBED: &str = include_str!("test_data/ws_subscribe_ok.json");
    const REFUSED: &str = include_str!("test_data/ws_subscribe_error.json");
    const NOTICE: &str = include_str!("test_data/ws_notice.json");

    fn key(symbol: &str, interval: Interval) -> SeriesKey {
        SeriesKey::new(
            ExchangeId::OkxFutures,
            Symbol::new(symbol).unwrap(),
            interval,
        )
    }

    #[test]
    fn channel_names() {
        let table = [
            (Interval::M1, "candle1m"),
            (Interval::M30, "candle30m"),
            (Interval::H1, "candle1H"),
            (Interval::H4, "candle4H"),
            (Interval::H6, "candle6Hutc"),
            (Interval::H12, "candle12Hutc"),
            (Interval::D1, "candle1Dutc"),
            (Interval::W1, "candle1Wutc"),
        ];
        for (interval, name) in table {
            assert_eq!(channel(interval).as_deref(), Some(name));
        }
    }

    #[test]
    fn subscribe_message_matches_the_documented_shape() {
        let messages = subscribe_messages(&[key("BTCUSDT", Interval::M1)]).unwrap();
        assert_eq!(
            messages,
            [r#"{"op":"subscribe","args":[{"channel":"candle1m","instId":"BTC-USDT-SWAP"}]}"#]
        );
        // The documented request (with its optional id) has the same shape.
        let documented: SubscribeRequest = serde_json::from_str(SUBSCRIBE).unwrap();
        assert_eq!(documented.op, "subscribe");
        assert_eq!(documented.args[0].channel, "candle1D");
        assert_eq!(documented.args[0].inst_id, "BTC-USDT");
    }

    #[test]
    fn large_subscriptions_are_split_under_the_size_limit() {
        let keys: Vec<_> = (0..3000)
            .map(|i| key(&format!("C{i}USDT"), Interval::M1))
            .collect();
        let messages = subscribe_messages(&keys).unwrap();
        assert!(messages.len() > 1);
        assert!(messages.iter().all(|m| m.len() <= MAX_SUBSCRIBE_BYTES + 64));
        let total: usize = messages
            .iter()
            .map(|m| {
                serde_json::from_str::<SubscribeRequest>(m)
                    .unwrap()
                    .args
                    .len()
            })
            .sum();
        assert_eq!(total, keys.len());
        assert!(subscribe_messages(&[key("BTCEUR", Interval::M1)]).is_err());
        assert!(subscribe_messages(&[]).unwrap().is_empty());
    }

    #[test]
    fn documented_push_decodes_once_on_a_utc_channel() {
        // Verbatim, the example is a spot instrument on the UTC+8 `candle1D`
        // channel, neither of which we subscribe to: refused, by name.
        let err = decode_text(PUSH).unwrap_err();
        assert!(err.to_string().contains("candle1D"), "{err}");
        let ours = PUSH
            .replace(r#""candle1D""#, r#""candle1Dutc""#)
            .replace(r#""BTC-USDT""#, r#""BTC-USDT-SWAP""#);
        let WsMessage::Candles(candles) = decode_text(&ours).unwrap() else {
            panic!("not a candle update");
        };
        assert_eq!(candles.len(), 1);
        let c = &candles[0];
        assert_eq!(c.key, key("BTCUSDT", Interval::D1));
        assert_eq!(c.open_time, 1_597_026_383_085);
        assert_eq!(
            (c.open, c.high, c.low, c.close),
            (8533.02, 8553.74, 8527.17, 8548.26)
        );
        assert_eq!(c.volume, 529.585_806_1, "volCcy, not vol");
        assert!(!c.closed);
        let closed = ours.replace(r#""0""#, r#""1""#);
        let WsMessage::Candles(candles) = decode_text(&closed).unwrap() else {
            panic!("not a candle update");
        };
        assert!(candles[0].closed);
    }

    #[test]
    fn events_pong_and_unknown_frames() {
        assert_eq!(
            decode_text(SUBSCRIBED).unwrap(),
            WsMessage::Subscribed(ChannelArg {
                channel: "candle1D".into(),
                inst_id: "BTC-USDT".into()
            })
        );
        let WsMessage::Error { code, msg } = decode_text(REFUSED).unwrap() else {
            panic!("not an error");
        };
        assert_eq!(code, "60012");
        assert!(msg.starts_with("Invalid request"));
        assert_eq!(
            decode_text(NOTICE).unwrap(),
            WsMessage::Notice {
                code: "64008".into(),
                msg: "The connection will soon be closed for a service upgrade. Please reconnect."
                    .into()
            }
        );
        assert_eq!(decode_text(PONG).unwrap(), WsMessage::Pong);
        let unsub = r#"{"event":"unsubscribe","arg":{"channel":"candle1m","instId":"BTC-USDT-SWAP"},"connId":"x"}"#;
        assert!(matches!(decode_text(unsub).unwrap(), WsMessage::Unknown(_)));
        assert!(matches!(decode_text("{}").unwrap(), WsMessage::Unknown(_)));
        for bad in [
            "",
            "ping ",
            "{",
            r#"{"event":1}"#,
            r#"{"arg":{"channel":"candle1m","instId":"BTC-USDT-SWAP"},"data":[["1"]]}"#,
            r#"{"arg":{"channel":"candle1m"},"data":[]}"#,
        ] {
            assert!(
                matches!(decode_text(bad), Err(ExchangeError::Decode { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_single_parse_accepts_no_frame_the_value_parse_refuses() {
        let push = PUSH
            .replace("\"candle1D\"", "\"candle1m\"")
            .replace("\"BTC-USDT\"", "\"BTC-USDT-SWAP\"");
        assert!(matches!(decode_text(&push), Ok(WsMessage::Candles(_))));
        let ignored = |value: &str| push.replacen('{', &format!(r#"{{"extra":{value},"#), 1);
        for text in [ignored("1e400"), ignored(r#""\ud800""#)] {
            assert!(
                matches!(decode_text(&text), Err(ExchangeError::Decode { .. })),
                "{text}"
            );
        }
        // An `event` key makes any frame an event.
        let event = ignored(r#""notice""#).replace("\"extra\"", "\"event\"");
        assert!(
            matches!(decode_text(&event), Ok(WsMessage::Notice { .. })),
            "{event}"
        );
    }
}
