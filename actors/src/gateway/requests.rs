//! The HTTP API over the WebSocket: `{"type":"request","id":…,"method":…,
//! "params":{…}}`, answered with the same `id`.
//!
//! Each method runs the very function behind its HTTP route (the
//! `*_value` functions of [`super::http`]), so both paths validate the
//! same way, answer the same data and fail with the same codes; an error
//! also carries the HTTP status the route would have answered.
//!
//! | method | params | HTTP route |
//! |---|---|---|
//! | `ohlcv` | `exchange`, `symbol`, `interval`, `from?`, `to?`, `limit?` | `GET /ohlcv/…` |
//! | `status` | | `GET /status` |
//! | `config` | | `GET /config` |
//! | `setConfig` | `config` | `POST /config` |
//! | `exchanges` | | `GET /exchanges` |
//! | `exchangeSymbols` | `exchange` | `GET /exchangeSymbols/{exchange}` |
//! | `setSymbols` | `exchange`, `symbols` | `POST /exchangeSymbols` |
//! | `toggleExchange` | `exchange`, `enabled?` | `POST /toggleExchange` |
//! | `restart` | | `POST /restart` |
//! | `deleteDatabase` | | `POST /deleteDatabase` |
//! | `databaseSymbols` | | `GET /databaseSymbols` |
//! | `completeness` | `exchange?`, `symbol?`, `interval?` | `GET /completeness` |
//!
//! The mutating methods need what the mutating routes need: the
//! `api_token` when one is set, presented when the WebSocket connected;
//! without one, a loopback peer.
//!
//! An array answer longer than [`CHUNK_ITEMS`] is sent in several
//! responses (`chunk` 0, 1, …, the final one `last: true`), each queued on
//! its own, so other messages to the client pass between them.

use serde_json::{Map, Value};

use super::encoding::{Encoding, Frame};
use super::errors::ApiError;
use super::http::{
    authorize, completeness_value, config_value, delete_value, exchange_symbols_value,
    exchanges_value, ohlcv_rows, restart_value, series_value, set_config_value, set_symbols_value,
    status_value, toggle_value, CompletenessParams, OhlcvParams,
};
use super::protocol::{Reply, ReplyError};
use super::ws::Credential;
use super::GatewayDeps;

/// Items of an array answer per response frame. 1000 candles are about
/// 100 KB of JSON: small enough that a frame never holds back the live
/// updates for long, large enough that a chart's history is a few frames.
pub const CHUNK_ITEMS: usize = 1000;

/// How a WebSocket client presents the token, for the `unauthorized`
/// message.
pub(crate) const WS_TOKEN_HINT: &str =
    "connect with the header `Authorization: Bearer <api_token>` or to `/ws?token=<api_token>`";

/// The methods of a `request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Candles of one series.
    Ohlcv,
    /// The supervisor's status report.
    Status,
    /// The running config.
    Config,
    /// Replace the config.
    SetConfig,
    /// The config's exchanges.
    Exchanges,
    /// The symbols an exchange lists.
    ExchangeSymbols,
    /// Set an exchange's symbols.
    SetSymbols,
    /// Enable, disable or toggle an exchange.
    ToggleExchange,
    /// Re-read the config file and restart the datasources.
    Restart,
    /// Delete every stored candle.
    DeleteDatabase,
    /// The series stored.
    DatabaseSymbols,
    /// How complete each stored series is.
    Completeness,
}

impl Method {
    /// Every method, as the error for an unknown one lists them.
    pub const ALL: [Method; 12] = [
        Method::Ohlcv,
        Method::Status,
        Method::Config,
        Method::SetConfig,
        Method::Exchanges,
        Method::ExchangeSymbols,
        Method::SetSymbols,
        Method::ToggleExchange,
        Method::Restart,
        Method::DeleteDatabase,
        Method::DatabaseSymbols,
        Method::Completeness,
    ];

    /// The method's name in a request.
    pub const fn name(self) -> &'static str {
        match self {
            Method::Ohlcv => "ohlcv",
            Method::Status => "status",
            Method::Config => "config",
            Method::SetConfig => "setConfig",
            Method::Exchanges => "exchanges",
            Method::ExchangeSymbols => "exchangeSymbols",
            Method::SetSymbols => "setSymbols",
            Method::ToggleExchange => "toggleExchange",
            Method::Restart => "restart",
            Method::DeleteDatabase => "deleteDatabase",
            Method::DatabaseSymbols => "databaseSymbols",
            Method::Completeness => "completeness",
        }
    }

    /// Whether the method changes anything (and so needs the token).
    pub const fn mutates(self) -> bool {
        matches!(
            self,
            Method::SetConfig
                | Method::SetSymbols
                | Method::ToggleExchange
                | Method::Restart
                | Method::DeleteDatabase
        )
    }

    /// The parameters the method takes.
    const fn params(self) -> &'static [&'static str] {
        match self {
            Method::Ohlcv => &["exchange", "symbol", "interval", "from", "to", "limit"],
            Method::SetConfig => &["config"],
            Method::ExchangeSymbols => &["exchange"],
            Method::SetSymbols => &["exchange", "symbols"],
            Method::ToggleExchange => &["exchange", "enabled"],
            Method::Completeness => &["exchange", "symbol", "interval"],
            Method::Status
            | Method::Config
            | Method::Exchanges
            | Method::Restart
            | Method::DeleteDatabase
            | Method::DatabaseSymbols => &[],
        }
    }

    /// The method called `name`.
    ///
    /// # Errors
    /// 400 `unknown_method`, listing the methods.
    pub fn parse(name: &str) -> Result<Method, ApiError> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                ApiError::bad_request(
                    "unknown_method",
                    format!("unknown method {name:?}; methods: {}", names.join(", ")),
                )
            })
    }
}

/// Runs `method` with `params` for the client of `credential`.
///
/// # Errors
/// What the HTTP route would answer, and 400 `bad_request` for params that
/// are not an object of the method's parameters.
pub(crate) async fn call(
    deps: &GatewayDeps,
    credential: &Credential,
    method: Method,
    params: Value,
) -> Result<Value, ApiError> {
    let params = params_object(method, params)?;
    if method.mutates() {
        let what = format!("the {} request", method.name());
        authorize(
            deps,
            credential.token.as_deref(),
            credential.peer,
            &what,
            WS_TOKEN_HINT,
        )
        .await?;
    }
    match method {
        Method::Ohlcv => {
            let series = [
                required_text(&params, "exchange")?,
                required_text(&params, "symbol")?,
                required_text(&params, "interval")?,
            ];
            let query = OhlcvParams {
                from: optional_text(&params, "from")?,
                to: optional_text(&params, "to")?,
                limit: optional_text(&params, "limit")?,
            };
            let series = [series[0].as_str(), series[1].as_str(), series[2].as_str()];
            let rows = ohlcv_rows(deps, series, &query).await?;
            Ok(serde_json::to_value(rows).unwrap_or(Value::Null))
        }
        Method::Status => status_value(deps).await,
        Method::Config => config_value(deps).await,
        Method::SetConfig => match params.get("config") {
            Some(config) => set_config_value(deps, config.clone()).await,
            None => Err(ApiError::bad_request(
                "bad_request",
                "params.config: missing; send the whole new config",
            )),
        },
        Method::Exchanges => exchanges_value(deps).await,
        Method::ExchangeSymbols => {
            exchange_symbols_value(deps, &required_text(&params, "exchange")?).await
        }
        Method::SetSymbols => set_symbols_value(deps, &Value::Object(params)).await,
        Method::ToggleExchange => toggle_value(deps, &Value::Object(params)).await,
        Method::Restart => restart_value(deps).await,
        Method::DeleteDatabase => delete_value(deps).await,
        Method::DatabaseSymbols => series_value(deps).await,
        Method::Completeness => {
            let filter = CompletenessParams {
                exchange: optional_text(&params, "exchange")?,
                symbol: optional_text(&params, "symbol")?,
                interval: optional_text(&params, "interval")?,
            };
            completeness_value(deps, &filter).await
        }
    }
}

/// The frames answering request `id` with `outcome`: one, or one per
/// [`CHUNK_ITEMS`] of a long array.
pub(crate) fn reply_frames(
    encoding: Encoding,
    id: &Value,
    outcome: Result<Value, ApiError>,
) -> Vec<Frame> {
    let replies: Vec<Result<Frame, _>> = match &outcome {
        Ok(Value::Array(items)) if items.len() > CHUNK_ITEMS => {
            let chunks = items.len().div_ceil(CHUNK_ITEMS);
            items
                .chunks(CHUNK_ITEMS)
                .enumerate()
                .map(|(i, chunk)| {
                    encoding.encode(&Reply::Response {
                        id,
                        data: &Value::Array(chunk.to_vec()),
                        chunk: Some(i),
                        last: Some(i + 1 == chunks),
                    })
                })
                .collect()
        }
        Ok(data) => vec![encoding.encode(&Reply::Response {
            id,
            data,
            chunk: None,
            last: None,
        })],
        Err(error) => vec![encoding.encode(&error_reply(id, error))],
    };
    replies
        .into_iter()
        .filter_map(|frame| match frame {
            Ok(frame) => Some(frame),
            Err(error) => {
                tracing::error!(%error, "answer not sent");
                None
            }
        })
        .collect()
}

/// The `error` answer to `id`.
pub(crate) fn error_reply<'a>(id: &'a Value, error: &ApiError) -> Reply<'a> {
    Reply::Error {
        id,
        error: ReplyError {
            code: error.code().to_owned(),
            message: error.message().to_owned(),
            status: actix_web::ResponseError::status_code(error).as_u16(),
        },
    }
}

/// The params as an object with only the method's keys; absent or `null`
/// is an empty object.
fn params_object(method: Method, params: Value) -> Result<Map<String, Value>, ApiError> {
    let object = match params {
        Value::Null => Map::new(),
        Value::Object(object) => object,
        other => {
            return Err(ApiError::bad_request(
                "bad_request",
                format!("params: expected an object, got {other}"),
            ))
        }
    };
    let allowed = method.params();
    if let Some(key) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
        let expected = if allowed.is_empty() {
            "none".to_owned()
        } else {
            allowed.join(", ")
        };
        return Err(ApiError::bad_request(
            "bad_request",
            format!(
                "params.{key}: unknown parameter of {}; expected {expected}",
                method.name()
            ),
        ));
    }
    Ok(object)
}

/// A parameter that must be given, as text.
fn required_text(params: &Map<String, Value>, key: &str) -> Result<String, ApiError> {
    optional_text(params, key)?
        .ok_or_else(|| ApiError::bad_request("bad_request", format!("params.{key}: missing")))
}

/// A parameter given as a string or a number, as the text the HTTP route
/// would have in its URL; `null` or absent is none. The route's own
/// validation then judges the text.
fn optional_text(params: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(ApiError::bad_request(
            "bad_request",
            format!("params.{key}: expected a string or a number, got {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(frame: &Frame) -> Value {
        match frame {
            Frame::Text(text) => serde_json::from_str(text).unwrap(),
            Frame::Binary(bytes) => rmp_serde::from_slice(bytes).unwrap(),
        }
    }

    #[test]
    fn every_method_name_parses_back_and_unknown_ones_are_listed() {
        for method in Method::ALL {
            assert_eq!(Method::parse(method.name()).unwrap(), method);
        }
        let error = Method::parse("dropTables").unwrap_err();
        assert_eq!(error.code(), "unknown_method");
        assert!(error.message().contains("setSymbols"), "{error}");
    }

    #[test]
    fn long_arrays_are_answered_in_chunks_and_the_rest_whole() {
        let id = json!("history-1");
        let items: Vec<Value> = (0..2500).map(Value::from).collect();
        let frames = reply_frames(Encoding::MessagePack, &id, Ok(Value::Array(items)));
        let replies: Vec<Value> = frames.iter().map(parse).collect();
        assert_eq!(replies.len(), 3);
        let mut all = Vec::new();
        for (i, reply) in replies.iter().enumerate() {
            assert_eq!(reply["type"], "response");
            assert_eq!(reply["id"], id);
            assert_eq!(reply["chunk"], i);
            assert_eq!(reply["last"], i == 2);
            all.extend(reply["data"].as_array().unwrap().iter().cloned());
        }
        assert_eq!(all, (0..2500).map(Value::from).collect::<Vec<_>>());

        let whole = reply_frames(Encoding::Json, &json!(1), Ok(json!({"a": 1})));
        assert_eq!(
            parse(&whole[0]),
            json!({"type":"response","id":1,"data":{"a":1}})
        );
        let failed = reply_frames(
            Encoding::Json,
            &json!(2),
            Err(ApiError::bad_request("bad_limit", "limit: no")),
        );
        assert_eq!(
            parse(&failed[0]),
            json!({"type":"error","id":2,"error":{"code":"bad_limit","message":"limit: no","status":400}})
        );
    }

    #[test]
    fn params_must_be_the_methods_own() {
        assert!(params_object(Method::Status, Value::Null)
            .unwrap()
            .is_empty());
        let error = params_object(Method::Status, json!({"x": 1})).unwrap_err();
        assert!(error.message().contains("params.x"), "{error}");
        let error = params_object(Method::Ohlcv, json!([1])).unwrap_err();
        assert!(error.message().contains("expected an object"), "{error}");
        let params = params_object(Method::Ohlcv, json!({"limit": 5, "from": "10"})).unwrap();
        assert_eq!(
            optional_text(&params, "limit").unwrap().as_deref(),
            Some("5")
        );
        assert_eq!(
            optional_text(&params, "from").unwrap().as_deref(),
            Some("10")
        );
        assert!(required_text(&params, "exchange").is_err());
    }
}
