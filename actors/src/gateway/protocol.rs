//! The WebSocket messages of seed 004, as JSON text frames.
//!
//! Every server message is `{"type": "...", "data": {...}}` with the seed's
//! type names (`candle`, `worker_metrics`, `system_info`, `reload_progress`,
//! `log`) and field names, so a client written against the seed works
//! unchanged. Two additions, which such a client ignores: `command_result`
//! answers a client command, and `error` reports a frame that could not be
//! understood.

use std::collections::BTreeMap;

use ohlcv_domain::Candle;
use serde::{Deserialize, Serialize};

use crate::lifecycle::ChildId;
use crate::metrics::WorkerMetrics;

/// A message from the server to UI clients.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum ServerMessage {
    /// A live candle update.
    Candle(CandleMessage),
    /// Per-worker metrics, keyed by worker name (`simulated`, `storage`, …).
    WorkerMetrics(BTreeMap<ChildId, WorkerMetrics>),
    /// Host and process metrics.
    SystemInfo(serde_json::Value),
    /// Progress of a datasource's history sync after a start or reload.
    ReloadProgress(ReloadProgress),
    /// A log line.
    Log(LogMessage),
    /// The answer to a client `command`.
    CommandResult(CommandResult),
    /// A client frame that could not be understood.
    Error(ErrorBody),
}

/// A candle as the seed's `candle` message carries it, plus its open time.
///
/// ```json
/// {"exchange":"simulated","symbol":"BTCUSDT","interval":"1m","t":1704277020000,
///  "o":50000.0,"h":50100.0,"l":49900.0,"c":50050.0,"v":100.5,"closed":true}
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CandleMessage {
    /// Exchange id.
    pub exchange: ohlcv_domain::ExchangeId,
    /// Normalised symbol.
    pub symbol: ohlcv_domain::Symbol,
    /// Interval name.
    pub interval: ohlcv_domain::Interval,
    /// Open time, UTC ms.
    pub t: i64,
    /// Open.
    pub o: f64,
    /// High.
    pub h: f64,
    /// Low.
    pub l: f64,
    /// Close.
    pub c: f64,
    /// Volume.
    pub v: f64,
    /// Whether the candle is final.
    pub closed: bool,
}

impl From<&Candle> for CandleMessage {
    fn from(c: &Candle) -> Self {
        CandleMessage {
            exchange: c.key.exchange,
            symbol: c.key.symbol.clone(),
            interval: c.key.interval,
            t: c.open_time,
            o: c.open,
            h: c.high,
            l: c.low,
            c: c.close,
            v: c.volume,
            closed: c.closed,
        }
    }
}

/// The seed's `reload_progress` payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReloadProgress {
    /// Which exchange is syncing.
    pub exchange: ohlcv_domain::ExchangeId,
    /// `connecting`, `backfilling`, `streaming` or `error`.
    pub status: String,
    /// Human-readable step, e.g. `Checking BTCUSDT 1m... (1/10)`.
    pub message: String,
    /// Percent done, 0 to 100.
    pub progress: u8,
}

/// The seed's `log` payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogMessage {
    /// The log line.
    pub message: String,
    /// `info`, `success`, `warn` or `error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339 UTC time, e.g. `2025-01-01T00:00:00.000Z`.
    pub timestamp: String,
}

/// The answer to a client command.
#[derive(Debug, Clone, Serialize)]
pub struct CommandResult {
    /// The command answered (`status`, `list`, …).
    pub command: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// What it returned, or the error.
    pub result: serde_json::Value,
}

/// An error, as in every HTTP error body: `{"code": "...", "message": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code (`bad_request`, `unknown_exchange`, …).
    pub code: String,
    /// What went wrong, for humans.
    pub message: String,
}

/// A message from a UI client.
///
/// The seed's `{"type":"command","data":"status"}`, and the additions of
/// this gateway: `subscribe`/`unsubscribe` (topics, see
/// [`super::topics`]) and `request` (the HTTP API's methods, see
/// [`super::requests`]), each with an `id` that its answer repeats.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Run a seed command.
    Command {
        /// The command's name.
        data: String,
    },
    /// Receive the messages of these topics (on top of those already
    /// subscribed). The first `subscribe` ends the firehose of everything.
    Subscribe {
        /// Repeated in the answer.
        id: serde_json::Value,
        /// Topics such as `candles:*:BTCUSDT:1m`.
        topics: Vec<String>,
    },
    /// Stop receiving the messages of these topics.
    Unsubscribe {
        /// Repeated in the answer.
        id: serde_json::Value,
        /// Topics subscribed before.
        topics: Vec<String>,
    },
    /// Call one method of the API.
    Request {
        /// Repeated in the answer.
        id: serde_json::Value,
        /// `ohlcv`, `status`, … (see [`super::requests::Method`]).
        method: String,
        /// The method's parameters, an object; absent means none.
        #[serde(default)]
        params: serde_json::Value,
    },
}

/// The answer to a client's `subscribe`, `unsubscribe` or `request`,
/// correlated by the `id` it sent.
///
/// ```json
/// {"type":"response","id":7,"data":[...],"chunk":0,"last":false}
/// {"type":"error","id":7,"error":{"code":"bad_limit","message":"...","status":400}}
/// ```
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply<'a> {
    /// It worked; `data` is what the HTTP route would answer. An array
    /// answer too long for one frame comes in parts numbered by `chunk`,
    /// the final one with `last: true`; a whole answer has neither field.
    Response {
        /// The request's `id`.
        id: &'a serde_json::Value,
        /// The answer, or one part of it.
        data: &'a serde_json::Value,
        /// Which part this is, from 0.
        #[serde(skip_serializing_if = "Option::is_none")]
        chunk: Option<usize>,
        /// Whether this is the final part.
        #[serde(skip_serializing_if = "Option::is_none")]
        last: Option<bool>,
    },
    /// It failed, with the HTTP API's error code and status.
    Error {
        /// The request's `id` (`null` if it had none the server could read).
        id: &'a serde_json::Value,
        /// What went wrong.
        error: ReplyError,
    },
}

/// The error of a [`Reply::Error`]: the HTTP error body plus its status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReplyError {
    /// Stable machine-readable code, as in HTTP error bodies.
    pub code: String,
    /// What went wrong, for humans.
    pub message: String,
    /// The HTTP status the same request over HTTP gets.
    pub status: u16,
}

/// The client commands of seed 004.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Supervisor children and their states.
    Status,
    /// Series stored in the database.
    List,
    /// Re-read the config file and restart the datasources.
    Reload,
    /// Empty the log history that new clients receive.
    Clear,
    /// List the commands.
    Help,
}

impl Command {
    /// Every command with a one-line description, for `help`.
    pub const HELP: [(&'static str, &'static str); 5] = [
        (
            "status",
            "supervisor children, their states and restart counts",
        ),
        (
            "list",
            "series stored in the database with counts and time ranges",
        ),
        (
            "reload",
            "re-read the config file and restart the datasources (needs the api_token when one is set)",
        ),
        (
            "clear",
            "empty the log history sent to newly connected clients",
        ),
        ("help", "this list"),
    ];

    /// Parses a command name.
    pub fn parse(name: &str) -> Option<Command> {
        Some(match name.trim() {
            "status" => Command::Status,
            "list" => Command::List,
            "reload" => Command::Reload,
            "clear" => Command::Clear,
            "help" => Command::Help,
            _ => return None,
        })
    }
}

/// Formats UTC milliseconds as RFC 3339 with milliseconds (`…T00:00:00.000Z`)
/// without pulling in a date library for one format.
pub fn rfc3339_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (h, m, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    // Civil-from-days, Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{d:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ohlcv_domain::{ExchangeId, Interval, SeriesKey, Symbol};

    #[test]
    fn candle_message_has_the_seed_shape_plus_t() {
        let candle = Candle {
            key: SeriesKey::new(
                ExchangeId::Simulated,
                Symbol::new("BTCUSDT").unwrap(),
                Interval::M1,
            ),
            open_time: 1_704_277_020_000,
            open: 50000.0,
            high: 50100.0,
            low: 49900.0,
            close: 50050.0,
            volume: 100.5,
            closed: true,
        };
        let json = serde_json::to_value(ServerMessage::Candle((&candle).into())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type":"candle","data":{"exchange":"simulated","symbol":"BTCUSDT",
                "interval":"1m","t":1_704_277_020_000_i64,"o":50000.0,"h":50100.0,"l":49900.0,
                "c":50050.0,"v":100.5,"closed":true}})
        );
    }

    #[test]
    fn worker_metrics_are_keyed_by_worker_with_the_seed_fields_on_top() {
        let monitor = crate::metrics::MonitorMetrics {
            common: crate::metrics::CommonMetrics {
                cpu_user: "15.20".into(),
                heap_used: 52_428_800,
                timestamp: 1_234_567_890,
            },
            watched: 3,
            clients: 1,
        };
        let data = BTreeMap::from([(ChildId::Monitor, WorkerMetrics::Monitor(monitor))]);
        let json = serde_json::to_value(ServerMessage::WorkerMetrics(data)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type":"worker_metrics","data":{"monitor":{"cpuUser":"15.20",
                "heapUsed":52_428_800,"timestamp":1_234_567_890,"watched":3,"clients":1}}})
        );
    }

    #[test]
    fn client_commands_parse_as_the_seed_sends_them() {
        let msg: ClientMessage =
            serde_json::from_str(r#"{"type":"command","data":"status"}"#).unwrap();
        let ClientMessage::Command { data } = msg else {
            panic!("not a command: {msg:?}")
        };
        assert_eq!(Command::parse(&data), Some(Command::Status));
        assert_eq!(Command::parse("rm -rf"), None);
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"subscribe"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"launch"}"#).is_err());
    }

    #[test]
    fn timestamps_format_as_rfc3339_utc() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_704_277_062_123), "2024-01-03T10:17:42.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
