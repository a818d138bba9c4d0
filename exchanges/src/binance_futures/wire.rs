//! Binance USDT-M futures payloads exactly as documented, as serde types.
//!
//! Only the shapes live here; what they mean for our candles is decided in
//! one conversion per payload ([`super::rest`] for REST rows, [`super::ws`]
//! for stream events). Unknown fields are ignored: Binance adds fields over
//! time, and a new one must not stop collection. Prices and volumes stay
//! strings, as sent, until that conversion parses them.

use std::fmt;

use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// One row of `GET /fapi/v1/klines`: a 12-element array, times as numbers,
/// prices and volumes as strings. Rows come oldest first; there is no closed
/// flag (a row whose close time has not passed is still forming).
///
/// ```json
/// [
///   1499040000000,      // Open time
///   "0.01634790",       // Open
///   "0.80000000",       // High
///   "0.01575800",       // Low
///   "0.01577100",       // Close
///   "148976.11427815",  // Volume
///   1499644799999,      // Close time
///   "2434.19055334",    // Quote asset volume
///   308,                // Number of trades
///   "1756.87402397",    // Taker buy base asset volume
///   "28.46694368",      // Taker buy quote asset volume
///   "17928899.62484339" // Ignore.
/// ]
/// ```
///
/// Docs: <https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Kline-Candlestick-Data>
///
/// Decoding names the element that did not match (`open (index 1): …`).
/// The 12th element ("Ignore") must be present but may hold anything;
/// elements after it are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KlineRow {
    /// Open time, UTC ms.
    pub open_time: i64,
    /// Open price.
    pub open: String,
    /// High price.
    pub high: String,
    /// Low price.
    pub low: String,
    /// Close price.
    pub close: String,
    /// Volume in the base asset.
    pub volume: String,
    /// Close time, UTC ms: the last millisecond of the candle.
    pub close_time: i64,
    /// Volume in the quote asset.
    pub quote_volume: String,
    /// Number of trades.
    pub trades: u64,
    /// Taker buy volume in the base asset.
    pub taker_buy_base_volume: String,
    /// Taker buy volume in the quote asset.
    pub taker_buy_quote_volume: String,
}

impl<'de> Deserialize<'de> for KlineRow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(KlineRowVisitor)
    }
}

struct KlineRowVisitor;

/// The next element of a kline row, with an error naming it.
fn element<'de, A, T>(seq: &mut A, index: usize, field: &str) -> Result<T, A::Error>
where
    A: SeqAccess<'de>,
    T: Deserialize<'de>,
{
    seq.next_element::<T>()
        .map_err(|e| de::Error::custom(format_args!("{field} (index {index}): {e}")))?
        .ok_or_else(|| {
            de::Error::custom(format_args!(
                "kline row ends before {field} (index {index})"
            ))
        })
}

impl<'de> Visitor<'de> for KlineRowVisitor {
    type Value = KlineRow;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a 12-element kline row")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KlineRow, A::Error> {
        let row = KlineRow {
            open_time: element(&mut seq, 0, "open time")?,
            open: element(&mut seq, 1, "open")?,
            high: element(&mut seq, 2, "high")?,
            low: element(&mut seq, 3, "low")?,
            close: element(&mut seq, 4, "close")?,
            volume: element(&mut seq, 5, "volume")?,
            close_time: element(&mut seq, 6, "close time")?,
            quote_volume: element(&mut seq, 7, "quote asset volume")?,
            trades: element(&mut seq, 8, "number of trades")?,
            taker_buy_base_volume: element(&mut seq, 9, "taker buy base asset volume")?,
            taker_buy_quote_volume: element(&mut seq, 10, "taker buy quote asset volume")?,
        };
        element::<A, IgnoredAny>(&mut seq, 11, "ignore")?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(row)
    }
}

/// The part of `GET /fapi/v1/exchangeInfo` we read: the symbol list.
///
/// ```json
/// {
///   "exchangeFilters": [],
///   "rateLimits": [ … ],
///   "serverTime": 1565613908500,
///   "assets": [ … ],
///   "symbols": [
///     {
///       "symbol": "BLZUSDT",
///       "pair": "BLZUSDT",
///       "contractType": "PERPETUAL",
///       "deliveryDate": 4133404800000,
///       "onboardDate": 1598252400000,
///       "status": "TRADING",
///       "baseAsset": "BLZ",
///       "quoteAsset": "USDT",
///       "marginAsset": "USDT",
///       …
///     }
///   ]
/// }
/// ```
///
/// Docs: <https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Exchange-Information>
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExchangeInfo {
    /// Every listed contract, whatever its type or status.
    pub symbols: Vec<SymbolInfo>,
}

/// One contract of [`ExchangeInfo`], only the fields we need.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymbolInfo {
    /// The contract's symbol (`BTCUSDT`; delivery contracts carry a date,
    /// `BTCUSDT_250627`).
    pub symbol: String,
    /// `PERPETUAL` for the perpetuals we collect; a string, not an enum, so
    /// a contract type added later does not break decoding.
    pub contract_type: String,
    /// `TRADING` while the contract trades.
    pub status: String,
    /// The quote asset (`USDT`).
    pub quote_asset: String,
}

/// The body of a failed REST request: a code and a message. "Codes are
/// universal, but messages can vary."
///
/// ```json
/// {
///   "code": -1121,
///   "msg": "Invalid symbol."
/// }
/// ```
///
/// Docs: <https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code>
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    /// Error code, negative (`-1121` invalid symbol, `-1003` too many
    /// requests, …).
    pub code: i64,
    /// Human-readable reason.
    pub msg: String,
}

/// A kline event of the stream `<symbol>@kline_<interval>`, pushed every
/// 250 ms while the candle changes.
///
/// ```json
/// {
///   "e": "kline",         // Event type
///   "E": 1638747660000,   // Event time
///   "s": "BTCUSDT",       // Symbol
///   "k": {
///     "t": 1638747660000, // Kline start time
///     "T": 1638747719999, // Kline close time
///     "s": "BTCUSDT",     // Symbol
///     "i": "1m",          // Interval
///     "f": 100,           // First trade ID
///     "L": 200,           // Last trade ID
///     "o": "0.0010",      // Open price
///     "c": "0.0020",      // Close price
///     "h": "0.0025",      // High price
///     "l": "0.0015",      // Low price
///     "v": "1000",        // Base asset volume
///     "n": 100,           // Number of trades
///     "x": false,         // Is this kline closed?
///     "q": "1.0000",      // Quote asset volume
///     "V": "500",         // Taker buy base asset volume
///     "Q": "0.500",       // Taker buy quote asset volume
///     "B": "123456"       // Ignore
///   }
/// }
/// ```
///
/// Docs: <https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/Kline-Candlestick-Streams>
///
/// The text fields are `S`: owned `String`s by default, or `&str` slices of
/// the frame on the live hot path, which saves a dozen allocations per frame
/// (borrowing works for strings without escapes, which that path checks).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(bound(deserialize = "S: Deserialize<'de>"))]
pub struct KlineEvent<S = String> {
    /// Event type, `kline`.
    #[serde(rename = "e")]
    pub event_type: S,
    /// Event time, UTC ms.
    #[serde(rename = "E")]
    pub event_time: i64,
    /// Symbol, upper case.
    #[serde(rename = "s")]
    pub symbol: S,
    /// The candle.
    #[serde(rename = "k")]
    pub kline: StreamKline<S>,
}

/// The `k` object of a [`KlineEvent`]. The fields we do not use (trade ids,
/// trade count, quote and taker volumes) are optional, so their absence
/// cannot stop collection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(bound(deserialize = "S: Deserialize<'de>"))]
pub struct StreamKline<S = String> {
    /// Kline start (open) time, UTC ms.
    #[serde(rename = "t")]
    pub start_time: i64,
    /// Kline close time, UTC ms: the last millisecond of the candle.
    #[serde(rename = "T")]
    pub close_time: i64,
    /// Symbol, upper case.
    #[serde(rename = "s")]
    pub symbol: S,
    /// Interval name (`1m`).
    #[serde(rename = "i")]
    pub interval: S,
    /// First trade id.
    #[serde(rename = "f", default)]
    pub first_trade_id: Option<i64>,
    /// Last trade id.
    #[serde(rename = "L", default)]
    pub last_trade_id: Option<i64>,
    /// Open price.
    #[serde(rename = "o")]
    pub open: S,
    /// Close (latest) price.
    #[serde(rename = "c")]
    pub close: S,
    /// High price.
    #[serde(rename = "h")]
    pub high: S,
    /// Low price.
    #[serde(rename = "l")]
    pub low: S,
    /// Volume in the base asset.
    #[serde(rename = "v")]
    pub volume: S,
    /// Number of trades.
    #[serde(rename = "n", default)]
    pub trades: Option<u64>,
    /// Whether the candle is closed (final).
    #[serde(rename = "x")]
    pub closed: bool,
    /// Volume in the quote asset.
    #[serde(rename = "q", default)]
    pub quote_volume: Option<S>,
    /// Taker buy volume in the base asset.
    #[serde(rename = "V", default)]
    pub taker_buy_base_volume: Option<S>,
    /// Taker buy volume in the quote asset.
    #[serde(rename = "Q", default)]
    pub taker_buy_quote_volume: Option<S>,
}

/// The wrapper of every event on a combined-stream connection
/// (`/market/stream?streams=…`): the stream name and the raw event.
///
/// ```json
/// {"stream":"<streamName>","data":<rawPayload>}
/// ```
///
/// Docs: <https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams>
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Combined<T, S = String> {
    /// The stream the event belongs to (`btcusdt@kline_1m`).
    pub stream: S,
    /// The event, as a raw stream would send it.
    pub data: T,
}

/// What a [`StreamRequest`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamMethod {
    /// Start the listed streams on this connection.
    Subscribe,
    /// Stop the listed streams.
    Unsubscribe,
}

/// A live subscribe/unsubscribe request sent on a stream connection.
///
/// ```json
/// {
///   "method": "SUBSCRIBE",
///   "params": ["btcusdt@aggTrade", "btcusdt@depth"],
///   "id": 1
/// }
/// ```
///
/// `id` is an unsigned integer identifying the request; the answer carries
/// it back.
///
/// Docs: <https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/Live-Subscribing-Unsubscribing-to-streams>
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRequest {
    /// Subscribe or unsubscribe.
    pub method: StreamMethod,
    /// Stream names.
    pub params: Vec<String>,
    /// Request id, echoed by the answer.
    pub id: u64,
}

/// The answer to a successful [`StreamRequest`].
///
/// ```json
/// {"result": null, "id": 1}
/// ```
///
/// `result` is `null` for SUBSCRIBE and UNSUBSCRIBE (LIST_SUBSCRIPTIONS
/// answers a list here, which we never ask for).
///
/// Docs: <https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/Live-Subscribing-Unsubscribing-to-streams>
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StreamAck {
    /// `null` on success.
    pub result: Option<Vec<String>>,
    /// The id of the request answered.
    pub id: u64,
}

/// An error answer on a stream connection.
///
/// ```json
/// {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"}
/// ```
///
/// The documented examples carry no `id`; it is accepted when present (the
/// docs do not say whether the server echoes it), so an error can be tied to
/// its request when it does.
///
/// Docs: <https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/Live-Subscribing-Unsubscribing-to-streams>
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StreamError {
    /// Error code (0, 1, 2, … in the documented table).
    pub code: i64,
    /// Human-readable reason.
    pub msg: String,
    /// The id of the failed request, when the server sends it.
    #[serde(default)]
    pub id: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const KLINES: &str = include_str!("test_data/klines.json");
    const EXCHANGE_INFO: &str = include_str!("test_data/exchange_info.json");
    const KLINE_EVENT: &str = include_str!("test_data/kline_event.json");
    const API_ERROR: &str = include_str!("test_data/api_error.json");
    const SUBSCRIBE: &str = include_str!("test_data/subscribe_request.json");
    const UNSUBSCRIBE: &str = include_str!("test_data/unsubscribe_request.json");
    const ACK: &str = include_str!("test_data/subscribe_ack.json");
    const ERROR: &str = include_str!("test_data/stream_error.json");

    #[test]
    fn documented_kline_row_decodes_field_by_field() {
        let rows: Vec<KlineRow> = serde_json::from_str(KLINES).unwrap();
        assert_eq!(
            rows,
            vec![KlineRow {
                open_time: 1_499_040_000_000,
                open: "0.01634790".into(),
                high: "0.80000000".into(),
                low: "0.01575800".into(),
                close: "0.01577100".into(),
                volume: "148976.11427815".into(),
                close_time: 1_499_644_799_999,
                quote_volume: "2434.19055334".into(),
                trades: 308,
                taker_buy_base_volume: "1756.87402397".into(),
                taker_buy_quote_volume: "28.46694368".into(),
            }]
        );
    }

    #[test]
    fn bad_kline_rows_name_the_element() {
        let cases = [
            (r#"[["x"]]"#, "open time (index 0)"),
            (r#"[[1, 2]]"#, "open (index 1)"),
            (r#"[[1, "1", "1", "1", "1"]]"#, "before volume (index 5)"),
            (
                r#"[[1,"1","1","1","1","1",2,"1",-3,"1","1","0"]]"#,
                "number of trades (index 8)",
            ),
            (
                r#"[[1,"1","1","1","1","1",2,"1",3,"1","1"]]"#,
                "before ignore (index 11)",
            ),
            (r#"[{"t": 1}]"#, "12-element kline row"),
        ];
        for (json, expected) in cases {
            let err = serde_json::from_str::<Vec<KlineRow>>(json).unwrap_err();
            assert!(err.to_string().contains(expected), "{json}: {err}");
        }
        // Extra trailing elements are tolerated.
        let longer = r#"[[1,"1","1","1","1","1",2,"1",3,"1","1","0","new"]]"#;
        assert_eq!(
            serde_json::from_str::<Vec<KlineRow>>(longer).unwrap().len(),
            1
        );
    }

    #[test]
    fn documented_exchange_info_yields_its_symbol() {
        let info: ExchangeInfo = serde_json::from_str(EXCHANGE_INFO).unwrap();
        assert_eq!(
            info.symbols,
            vec![SymbolInfo {
                symbol: "BLZUSDT".into(),
                contract_type: "PERPETUAL".into(),
                status: "TRADING".into(),
                quote_asset: "USDT".into(),
            }]
        );
    }

    #[test]
    fn documented_api_error_decodes() {
        let err: ApiError = serde_json::from_str(API_ERROR).unwrap();
        assert_eq!(
            err,
            ApiError {
                code: -1121,
                msg: "Invalid symbol.".into()
            }
        );
    }

    #[test]
    fn documented_kline_event_decodes() {
        let event: KlineEvent = serde_json::from_str(KLINE_EVENT).unwrap();
        assert_eq!(event.event_type, "kline");
        assert_eq!(event.event_time, 1_638_747_660_000);
        assert_eq!(event.symbol, "BTCUSDT");
        let k = event.kline;
        assert_eq!(
            (k.start_time, k.close_time),
            (1_638_747_660_000, 1_638_747_719_999)
        );
        assert_eq!((k.symbol.as_str(), k.interval.as_str()), ("BTCUSDT", "1m"));
        assert_eq!((k.first_trade_id, k.last_trade_id), (Some(100), Some(200)));
        assert_eq!(
            [&k.open, &k.close, &k.high, &k.low, &k.volume],
            ["0.0010", "0.0020", "0.0025", "0.0015", "1000"]
        );
        assert_eq!(k.trades, Some(100));
        assert!(!k.closed);
        assert_eq!(k.quote_volume.as_deref(), Some("1.0000"));
        assert_eq!(k.taker_buy_base_volume.as_deref(), Some("500"));
        assert_eq!(k.taker_buy_quote_volume.as_deref(), Some("0.500"));
    }

    #[test]
    fn documented_requests_round_trip() {
        let sub: StreamRequest = serde_json::from_str(SUBSCRIBE).unwrap();
        assert_eq!(
            sub,
            StreamRequest {
                method: StreamMethod::Subscribe,
                params: vec!["btcusdt@aggTrade".into(), "btcusdt@depth".into()],
                id: 1,
            }
        );
        let unsub: StreamRequest = serde_json::from_str(UNSUBSCRIBE).unwrap();
        assert_eq!(unsub.method, StreamMethod::Unsubscribe);
        assert_eq!(
            (unsub.params.as_slice(), unsub.id),
            (&["btcusdt@depth".to_owned()][..], 312)
        );
        for (req, doc) in [(sub, SUBSCRIBE), (unsub, UNSUBSCRIBE)] {
            let ours: serde_json::Value = serde_json::to_value(&req).unwrap();
            let theirs: serde_json::Value = serde_json::from_str(doc).unwrap();
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn documented_answers_decode() {
        let ack: StreamAck = serde_json::from_str(ACK).unwrap();
        assert_eq!(
            ack,
            StreamAck {
                result: None,
                id: 1
            }
        );
        let err: StreamError = serde_json::from_str(ERROR).unwrap();
        assert_eq!(err.code, 2);
        assert_eq!(
            err.msg,
            "Invalid request: request ID must be an unsigned integer"
        );
        assert_eq!(err.id, None);
    }

    #[test]
    fn combined_wrapper_carries_the_stream_name() {
        let framed = format!(r#"{{"stream":"btcusdt@kline_1m","data":{KLINE_EVENT}}}"#);
        let c: Combined<KlineEvent> = serde_json::from_str(&framed).unwrap();
        assert_eq!(c.stream, "btcusdt@kline_1m");
        assert_eq!(c.data.kline.interval, "1m");
    }
}
