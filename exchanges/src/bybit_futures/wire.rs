//! Bybit v5 payloads exactly as documented, as serde types. Nothing here
//! interprets them: [`rest`](super::rest) and [`ws`](super::ws) do, through
//! the one conversion [`to_candle`](super::to_candle).
//!
//! Unknown fields are ignored everywhere (no `deny_unknown_fields`): Bybit
//! adds fields to its payloads over time, and a new one must not stop
//! collection.

use serde::{Deserialize, Serialize};

/// The envelope of every v5 REST response.
///
/// ```json
/// {"retCode": 0, "retMsg": "OK", "result": {…}, "retExtInfo": {}, "time": 1672025956592}
/// ```
/// <https://bybit-exchange.github.io/docs/v5/market/kline>. `result` is
/// kept raw (`serde_json::Value`) because on an error it need not have the
/// success shape; it is decoded only once `retCode` is 0.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// 0 on success.
    pub ret_code: RetCode,
    /// `OK`, or why the request failed.
    #[serde(default)]
    pub ret_msg: String,
    /// The endpoint's payload.
    #[serde(default)]
    pub result: serde_json::Value,
    /// Server time, UTC ms.
    #[serde(default)]
    pub time: Option<i64>,
}

/// `retCode`: a number in the docs, but it has been seen as a string, so
/// both are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RetCode {
    /// As documented: `"retCode": 0`.
    Number(i64),
    /// As sometimes seen: `"retCode": "0"`.
    Text(String),
}

impl RetCode {
    /// Whether the request succeeded (code 0).
    pub fn is_ok(&self) -> bool {
        match self {
            RetCode::Number(n) => *n == 0,
            RetCode::Text(s) => s.trim() == "0",
        }
    }
}

impl std::fmt::Display for RetCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetCode::Number(n) => write!(f, "{n}"),
            RetCode::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// `result` of `GET /v5/market/kline?category=linear`.
///
/// ```json
/// {"symbol": "BTCUSD", "category": "inverse",
///  "list": [["1670608800000", "17071", "17073", "17027", "17055.5", "268611", "15.74462667"], …]}
/// ```
/// <https://bybit-exchange.github.io/docs/v5/market/kline>: `list` is
/// "sort in reverse by startTime" (newest first). The docs' only example
/// is for `category=inverse`; linear rows have the same seven fields.
#[derive(Debug, Clone, Deserialize)]
pub struct KlineResult {
    /// Symbol name.
    #[serde(default)]
    pub symbol: Option<String>,
    /// Product type (`linear`).
    #[serde(default)]
    pub category: Option<String>,
    /// The candles, newest first.
    pub list: Vec<KlineRow>,
}

/// One REST kline row: seven strings, `[startTime, openPrice, highPrice,
/// lowPrice, closePrice, volume, turnover]`.
///
/// ```json
/// ["1670608800000", "17071", "17073", "17027", "17055.5", "268611", "15.74462667"]
/// ```
/// <https://bybit-exchange.github.io/docs/v5/market/kline>. `volume` is
/// "Trade volume" (for USDT contracts, the base coin); `turnover` is in the
/// quote coin and unused here. Kept as a list so a short or long row is a
/// named decode error, not a serde failure of the whole page.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct KlineRow(pub Vec<String>);

/// `result` of `GET /v5/market/instruments-info?category=linear`.
///
/// ```json
/// {"category": "linear",
///  "list": [{"symbol": "BTCUSDT", "contractType": "LinearPerpetual", "status": "Trading",
///            "baseCoin": "BTC", "quoteCoin": "USDT", …}],
///  "nextPageCursor": ""}
/// ```
/// <https://bybit-exchange.github.io/docs/v5/market/instrument>: "There
/// are now more than 500 linear symbols … you will need to use cursor for
/// pagination". An empty `nextPageCursor` ends the listing.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstrumentsResult {
    /// Product type.
    #[serde(default)]
    pub category: Option<String>,
    /// One page of instruments.
    pub list: Vec<Instrument>,
    /// The `cursor` for the next page; empty (or absent) on the last page.
    #[serde(default)]
    pub next_page_cursor: Option<String>,
}

/// One linear instrument; only the fields we use.
///
/// ```json
/// {"symbol": "BTCUSDT", "contractType": "LinearPerpetual", "status": "Trading",
///  "baseCoin": "BTC", "quoteCoin": "USDT", "settleCoin": "USDT", …}
/// ```
/// <https://bybit-exchange.github.io/docs/v5/market/instrument>.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instrument {
    /// Symbol name (`BTCUSDT`).
    pub symbol: String,
    /// `LinearPerpetual`, or `LinearFutures` for dated contracts.
    #[serde(default)]
    pub contract_type: String,
    /// `Trading`, `PreLaunch`, …
    #[serde(default)]
    pub status: String,
    /// Quote coin (`USDT`).
    #[serde(default)]
    pub quote_coin: String,
}

/// A push of topic `kline.{interval}.{symbol}` on `/v5/public/linear`.
///
/// ```json
/// {"topic": "kline.5.BTCUSDT",
///  "data": [{"start": 1672324800000, "end": 1672325099999, "interval": "5",
///            "open": "16649.5", "close": "16677", "high": "16677", "low": "16608",
///            "volume": "2.081", "turnover": "34666.4005", "confirm": false,
///            "timestamp": 1672324988882}],
///  "ts": 1672324988882, "type": "snapshot"}
/// ```
/// <https://bybit-exchange.github.io/docs/v5/websocket/public/kline>:
/// "Push frequency: 1-60s"; "If confirm=true, this means that the candle
/// has closed."
///
/// The text fields are `S`: owned `String`s by default, or `&str` slices of
/// the frame on the live hot path (frames without escapes), which saves the
/// allocations.
#[derive(Debug, Clone, Deserialize)]
#[serde(bound(deserialize = "S: Deserialize<'de>"))]
pub struct KlinePush<S = String> {
    /// `kline.{interval}.{symbol}`.
    pub topic: S,
    /// Data type: `snapshot`.
    #[serde(rename = "type", default)]
    pub kind: Option<S>,
    /// When the system generated the data, UTC ms.
    #[serde(default)]
    pub ts: Option<i64>,
    /// The candle updates.
    pub data: Vec<WsKline<S>>,
}

/// One candle of a [`KlinePush`]: times are numbers, prices strings.
///
/// See [`KlinePush`] for the raw example and link.
#[derive(Debug, Clone, Deserialize)]
#[serde(bound(deserialize = "S: Deserialize<'de>"))]
pub struct WsKline<S = String> {
    /// Start (open) time, UTC ms.
    pub start: i64,
    /// End time, UTC ms: `start + interval - 1` in the example.
    pub end: i64,
    /// Bybit's interval name (`5`).
    pub interval: S,
    /// Open price.
    pub open: S,
    /// Close (last) price.
    pub close: S,
    /// Highest price.
    pub high: S,
    /// Lowest price.
    pub low: S,
    /// Trade volume (base coin for USDT contracts).
    pub volume: S,
    /// Turnover (quote coin); unused.
    #[serde(default)]
    pub turnover: Option<S>,
    /// Whether the candle has closed.
    pub confirm: bool,
    /// Time of the last matched order in the candle, UTC ms.
    #[serde(default)]
    pub timestamp: Option<i64>,
}

/// A request on the public WebSocket: subscribe (or ping, with no `args`).
///
/// ```json
/// {"req_id": "test", "op": "subscribe", "args": ["orderbook.1.BTCUSDT", "publicTrade.BTCUSDT"]}
/// {"req_id": "100001", "op": "ping"}
/// ```
/// <https://bybit-exchange.github.io/docs/v5/ws/connect>; `req_id` is
/// optional and echoed in the response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Optional id echoed in the reply.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub req_id: Option<String>,
    /// `subscribe`, `unsubscribe` or `ping`.
    pub op: String,
    /// Topics, for (un)subscribe.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub args: Vec<String>,
}

/// The reply to a request on the public linear WebSocket: the subscribe
/// acknowledgement and, with `op` `ping` and `ret_msg` `pong`, the pong.
///
/// ```json
/// {"success": true, "ret_msg": "", "conn_id": "3cd84cb1-4d06-4a05-930a-2efe5fc70f0f", "req_id": "", "op": "subscribe"}
/// {"success": true, "ret_msg": "pong", "conn_id": "465772b1-7630-4fdc-a492-e003e6f0f260", "req_id": "", "op": "ping"}
/// ```
/// <https://bybit-exchange.github.io/docs/v5/ws/connect> (the
/// "Linear/Inverse" examples). Option and spread channels answer a ping
/// with `{"args": ["1672916271846"], "op": "pong"}` instead; that shape is
/// accepted too. The docs show no failed subscription: a failure is taken
/// to be `"success": false` with the reason in `ret_msg`.
#[derive(Debug, Clone, Deserialize)]
pub struct OpResponse {
    /// Whether the request succeeded; absent in the option-style pong.
    #[serde(default)]
    pub success: Option<bool>,
    /// Empty, `pong`, or the reason of a failure.
    #[serde(default)]
    pub ret_msg: String,
    /// The request's operation (`subscribe`, `ping`, or `pong`).
    pub op: String,
    /// The connection id.
    #[serde(default)]
    pub conn_id: Option<String>,
    /// The request's `req_id`, empty when none was sent.
    #[serde(default)]
    pub req_id: Option<String>,
}
