//! OKX v5 payloads exactly as documented: serde types and nothing else.
//!
//! Every type carries a raw example copied from the documentation and the
//! link it came from; the same examples sit verbatim in `test_data/*.json`.
//! Unknown fields are ignored on purpose (OKX adds fields to these payloads
//! without notice, e.g. `instIdCode`, `upcChg`); normalisation into our
//! [`Candle`](ohlcv_domain::Candle) happens once, in
//! [`super::candle_from_row`].

use serde::{Deserialize, Serialize};

/// Position of each field in a candle row, as documented:
/// `[ts,o,h,l,c,vol,volCcy,volCcyQuote,confirm]`. Decode errors name the
/// field by this table.
pub const ROW_FIELDS: [&str; 9] = [
    "ts",
    "o",
    "h",
    "l",
    "c",
    "vol",
    "volCcy",
    "volCcyQuote",
    "confirm",
];

/// One candle row of REST `candles`/`history-candles` or of the WebSocket
/// `candle{bar}` push: nine strings in [`ROW_FIELDS`] order.
///
/// - `ts`: open time, Unix milliseconds;
/// - `vol`: for derivatives (SWAP) the number of **contracts**; for
///   SPOT/MARGIN the base currency;
/// - `volCcy`: for derivatives (SWAP) the quantity in **base currency**;
///   for SPOT/MARGIN the quote currency;
/// - `volCcyQuote`: quantity in quote currency (USDT for `BTC-USDT-SWAP`,
///   USD for `BTC-USD-SWAP`);
/// - `confirm`: `"0"` uncompleted, `"1"` completed.
///
/// Kept as a plain list rather than a 9-tuple so that a short or long row
/// is reported by field name instead of as a generic serde error (older
/// versions of the docs showed 7- and 8-field rows).
///
/// ```json
/// ["1597026383085","3.721","3.743","3.677","3.708","8422410","22698348.04828491","12698348.04828491","0"]
/// ```
/// <https://www.okx.com/docs-v5/en/#order-book-trading-market-data-get-candlesticks>
pub type CandleRow = Vec<String>;

/// The envelope of every OKX v5 REST response. `code` is `"0"` on success;
/// otherwise `msg` says why and `data` is usually empty.
///
/// Used for `GET /api/v5/market/candles` and
/// `GET /api/v5/market/history-candles` (`data`: rows newest first) and for
/// `GET /api/v5/public/instruments` (`data`: [`Instrument`]s).
///
/// ```json
/// {"code":"0","msg":"","data":[["1597026383085","3.721","3.743","3.677","3.708","8422410","22698348.04828491","12698348.04828491","0"],
///                             ["1597026383085","3.731","3.799","3.494","3.72","24912403","67632347.24399722","37632347.24399722","1"]]}
/// ```
/// (The documented example gives both rows the same `ts`; real responses
/// have one row per bar.)
/// <https://www.okx.com/docs-v5/en/#order-book-trading-market-data-get-candlesticks>,
/// <https://www.okx.com/docs-v5/en/#order-book-trading-market-data-get-candlesticks-history>
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RestResponse<T> {
    /// `"0"` on success, an OKX error code otherwise.
    pub code: String,
    /// Empty on success, the reason otherwise.
    #[serde(default)]
    pub msg: String,
    /// The payload; absent or empty on error.
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
}

/// One instrument of `GET /api/v5/public/instruments?instType=SWAP`; only
/// the fields the collector reads (all documented as strings, `""` when not
/// applicable).
///
/// ```json
/// {"instType":"SPOT","instId":"BTC-USDT","ctType":"","ctVal":"","ctValCcy":"",
///  "settleCcy":"","state":"live","baseCcy":"BTC","quoteCcy":"USDT", "...": "..."}
/// ```
/// (The docs show only a SPOT example; for SWAP `baseCcy`/`quoteCcy` are
/// documented as not applicable and `ctType`, `ctVal`, `ctValCcy`,
/// `settleCcy` are filled instead.)
/// <https://www.okx.com/docs-v5/en/#public-data-rest-api-get-instruments>
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Instrument {
    /// `SPOT`, `MARGIN`, `SWAP`, `FUTURES`, `OPTION` or `EVENTS`.
    pub inst_type: String,
    /// Instrument ID, e.g. `BTC-USDT-SWAP`.
    pub inst_id: String,
    /// `linear` or `inverse` (FUTURES/SWAP only).
    pub ct_type: String,
    /// Face value of one contract: base currency for linear contracts
    /// (0.01 BTC for `BTC-USDT-SWAP`), USD for inverse ones.
    pub ct_val: String,
    /// Contract value currency (FUTURES/SWAP/OPTION only).
    pub ct_val_ccy: String,
    /// Settlement and margin currency (FUTURES/SWAP/OPTION only).
    pub settle_ccy: String,
    /// `live`, `suspend`, `rebase`, `post_only`, `preopen`, `test`, …
    pub state: String,
}

/// One channel of a WebSocket subscription, in requests and in replies.
///
/// ```json
/// {"channel":"candle1m","instId":"BTC-USDT-SWAP"}
/// ```
/// <https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-candlesticks-channel>
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelArg {
    /// Channel name, `candle` followed by the bar (`candle1m`, `candle1Dutc`).
    pub channel: String,
    /// Instrument ID, e.g. `BTC-USDT-SWAP`.
    #[serde(rename = "instId")]
    pub inst_id: String,
}

/// A subscribe request, sent as a text frame to `/ws/v5/business`. The
/// optional client `id` is left out: replies are matched by `arg`.
///
/// ```json
/// {"op":"subscribe","args":[{"channel":"candle1m","instId":"BTC-USDT-SWAP"}]}
/// ```
/// <https://www.okx.com/docs-v5/en/#overview-websocket-subscribe>
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeRequest {
    /// `subscribe` (or `unsubscribe`).
    pub op: String,
    /// The channels; their total length may not exceed 64 KB.
    pub args: Vec<ChannelArg>,
}

/// A WebSocket event message: a subscribe acknowledgement, an error, or a
/// notice.
///
/// ```json
/// {"id":"1512","event":"subscribe","arg":{"channel":"candle1D","instId":"BTC-USDT"},"connId":"a4d3ae55"}
/// {"id":"1512","event":"error","code":"60012","msg":"Invalid request: …","connId":"a4d3ae55"}
/// {"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"a4d3ae55"}
/// ```
/// <https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-candlesticks-channel>,
/// <https://www.okx.com/docs-v5/en/#overview-websocket-notification>
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsEvent {
    /// `subscribe`, `unsubscribe`, `error`, `notice`, …
    pub event: String,
    /// The channel the event is about (acknowledgements).
    #[serde(default)]
    pub arg: Option<ChannelArg>,
    /// Error or notice code (`60012`, `64008`).
    #[serde(default)]
    pub code: Option<String>,
    /// Error or notice text.
    #[serde(default)]
    pub msg: Option<String>,
    /// The connection's ID, for OKX support.
    #[serde(default)]
    pub conn_id: Option<String>,
}

/// A push of the `candle{bar}` channel: one or more rows for `arg`.
///
/// ```json
/// {"arg":{"channel":"candle1D","instId":"BTC-USDT"},
///  "data":[["1597026383085","8533.02","8553.74","8527.17","8548.26","45247","529.5858061","5529.5858061","0"]]}
/// ```
/// <https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-candlesticks-channel>
///
/// The row fields are `S`: owned `String`s by default, or `&str` slices of
/// the frame on the live hot path (frames without escapes).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(bound(deserialize = "S: Deserialize<'de>"))]
pub struct CandlePush<S = String> {
    /// Which channel and instrument the rows belong to.
    pub arg: ChannelArg,
    /// The rows, in [`ROW_FIELDS`] order.
    pub data: Vec<Vec<S>>,
}
