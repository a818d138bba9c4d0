//! The Binance USDT-M futures adapter: the protocol of [`super::rest`] and
//! [`super::ws`] on the shared networking of [`crate::net`].
//!
//! - REST: `GET /fapi/v1/klines` paged oldest first, 1500 rows a page
//!   (weight 10), and `GET /fapi/v1/exchangeInfo` for the listing. The
//!   budget is 1800 of the documented 2400 request weight per minute, and
//!   a `X-MBX-USED-WEIGHT-1M` at 90 % of 2400 (other clients of the same
//!   IP count too) pauses every request until the next minute.
//! - Live: the routed `/market/stream` endpoint with the streams named in
//!   its query, at most 200 per connection, so no message is sent but
//!   keep-alive (the limit is 10 incoming messages a second). Binance
//!   pings every 3
//!   minutes and tungstenite answers; after 30 s without a frame we ping
//!   too, and 60 s without any frame is a dead connection. A connection is
//!   replaced after 23 h 50 min, before Binance closes it at 24 h.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use ohlcv_domain::time::now_ms;
use ohlcv_domain::{Candle, Interval, SeriesKey, Symbol};
use reqwest::header::HeaderMap;

use super::rest::{decode_klines, decode_symbols, exchange_info_url, http_error, KlinesPage};
use super::ws::{decode_frame, market_stream_url, plan_subscriptions, stream_name, Frame};
use super::{EXCHANGE, REST_URL, WS_URL};
use crate::net::budget::BudgetLimits;
use crate::net::exchange::{until_next_minute, RealExchange, RestProtocol};
use crate::net::http::RestClient;
use crate::net::live::{ConnectionPlan, Decoded, KeepAlive, LiveProtocol};
use crate::source::ExchangeError;
use ohlcv_domain::config::ExchangeConfig;

/// The documented `REQUEST_WEIGHT` limit per minute.
const WEIGHT_LIMIT: u32 = 2400;
/// What this process spends of it.
const LIMITS: BudgetLimits = BudgetLimits {
    capacity: 1800,
    window: Duration::from_secs(60),
};
/// Weight of `GET /fapi/v1/exchangeInfo`.
const EXCHANGE_INFO_WEIGHT: u32 = 1;

/// Builds the adapter from its config (`rest_url`, `ws_url` bases).
///
/// # Errors
/// [`ExchangeError::Connect`] when TLS cannot be set up.
pub fn build(
    config: &ExchangeConfig,
) -> Result<std::sync::Arc<dyn crate::MarketSource>, ExchangeError> {
    let rest_url = config.rest_url.clone().unwrap_or_else(|| REST_URL.into());
    let ws_url = config.ws_url.clone().unwrap_or_else(|| WS_URL.into());
    let rest = RestClient::new(EXCHANGE, &rest_url, LIMITS, http_error, used_weight)?;
    let protocol = Binance { rest_url, ws_url };
    Ok(std::sync::Arc::new(RealExchange::new(
        EXCHANGE, protocol, rest,
    )))
}

/// Pauses until the next minute when Binance reports 90 % of the weight
/// limit used.
fn used_weight(headers: &HeaderMap) -> Option<Duration> {
    let used: u32 = headers
        .get("x-mbx-used-weight-1m")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (used >= WEIGHT_LIMIT * 9 / 10).then(until_next_minute)
}

/// The Binance protocol with the configured endpoints.
struct Binance {
    rest_url: String,
    ws_url: String,
}

#[async_trait]
impl RestProtocol for Binance {
    async fn symbols(&self, rest: &RestClient) -> Result<Vec<Symbol>, ExchangeError> {
        let body = rest
            .get(&exchange_info_url(&self.rest_url), EXCHANGE_INFO_WEIGHT)
            .await?;
        decode_symbols(&body)
    }

    async fn candles(
        &self,
        rest: &RestClient,
        symbol: &Symbol,
        interval: Interval,
        from: i64,
        to: i64,
    ) -> Result<Vec<Candle>, ExchangeError> {
        let mut candles: Vec<Candle> = Vec::new();
        let mut page = KlinesPage::first(symbol, interval, from, to)?;
        while let Some(current) = page {
            let body = rest
                .get(&current.url(&self.rest_url), current.weight())
                .await?;
            let rows = decode_klines(&body, &current.key, now_ms())?;
            page = current.next(rows.len(), rows.last().map(|c| c.open_time));
            candles.extend(rows);
        }
        candles.sort_by_key(|c| c.open_time);
        candles.dedup_by_key(|c| c.open_time);
        Ok(candles)
    }
}

impl LiveProtocol for Binance {
    /// Streams are named in the URL (`/market/stream?streams=a/b/…`), up
    /// to 200 per connection: the connection starts with every stream and
    /// sends no message at all, so the 10-messages-per-second limit and
    /// SUBSCRIBE answers do not arise. (Binance does not check stream names:
    /// a symbol it does not list stays silent, and its REST requests are
    /// refused with -1121, which stops the series.)
    fn plan(&self, keys: &[SeriesKey]) -> Result<Vec<ConnectionPlan>, ExchangeError> {
        let by_stream: HashMap<String, &SeriesKey> = keys
            .iter()
            .filter_map(|k| stream_name(k).map(|name| (name, k)))
            .collect();
        let url = market_stream_url(&self.ws_url);
        Ok(plan_subscriptions(keys, 1)?
            .into_iter()
            .map(|connection| ConnectionPlan {
                url: format!("{url}?streams={}", connection.streams.join("/")),
                keys: connection
                    .streams
                    .iter()
                    .filter_map(|s| by_stream.get(s).map(|k| (*k).clone()))
                    .collect(),
                requests: Vec::new(),
            })
            .collect())
    }

    fn keepalive(&self) -> KeepAlive {
        KeepAlive {
            ping: None,
            every: Duration::from_secs(30),
            when_idle: true,
            dead_after: Duration::from_secs(60),
        }
    }

    fn message_spacing(&self) -> Duration {
        super::ws::MESSAGE_SPACING
    }

    fn max_age(&self) -> Option<Duration> {
        Some(Duration::from_secs(24 * 3600 - 10 * 60))
    }

    fn decode(&self, text: &str) -> Result<Decoded, ExchangeError> {
        Ok(match decode_frame(text)? {
            Frame::Candle(candle) => Decoded::Candles(vec![candle]),
            Frame::Ack { id } => Decoded::Ack {
                id: Some(id.to_string()),
            },
            Frame::Error(error) => Decoded::Refused {
                id: error.id.map(|id| id.to_string()),
                keys: streams_named(&error.msg),
                reason: format!("binance_futures error {}: {}", error.code, error.msg),
            },
        })
    }
}

/// The series whose kline streams an error message names
/// (`Invalid request: unknown stream ethusdt@kline_1m`); none when it
/// names none, as Binance's documented errors do.
fn streams_named(msg: &str) -> Vec<SeriesKey> {
    msg.split([' ', ',', '/'])
        .filter_map(|word| {
            let (symbol, interval) = word.split_once("@kline_")?;
            let symbol = Symbol::new(&symbol.to_ascii_uppercase()).ok()?;
            let interval = super::interval_from_name(interval)?;
            Some(SeriesKey::new(EXCHANGE, symbol, interval))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ohlcv_domain::ExchangeId;

    fn key(symbol: &str, interval: Interval) -> SeriesKey {
        SeriesKey::new(
            ExchangeId::BinanceFutures,
            Symbol::new(symbol).unwrap(),
            interval,
        )
    }

    #[test]
    fn the_plan_names_the_streams_in_the_routed_market_path() {
        let binance = Binance {
            rest_url: "http://127.0.0.1:1".into(),
            ws_url: "ws://127.0.0.1:1/".into(),
        };
        let keys: Vec<SeriesKey> = (0..120)
            .map(|i| key(&format!("S{i}USDT"), Interval::M1))
            .chain((0..120).map(|i| key(&format!("S{i}USDT"), Interval::M5)))
            .collect();
        let plans = binance.plan(&keys).unwrap();
        assert_eq!(plans.len(), 2, "240 streams take two connections");
        let planned: usize = plans.iter().map(|p| p.keys.len()).sum();
        assert_eq!(planned, 240);
        assert_eq!(plans[0].keys.len(), 200);
        assert!(plans[0].url.starts_with(
            "ws://127.0.0.1:1/market/stream?streams=s0usdt@kline_1m/s0usdt@kline_5m/"
        ));
        assert_eq!(plans[0].url.matches('@').count(), 200);
        assert!(plans.iter().all(|p| p.requests.is_empty()));
    }

    #[test]
    fn answers_and_errors_decode_to_acks_and_refusals() {
        let binance = Binance {
            rest_url: String::new(),
            ws_url: String::new(),
        };
        assert_eq!(
            binance.decode(r#"{"result":null,"id":7}"#).unwrap(),
            Decoded::Ack {
                id: Some("7".into())
            }
        );
        let refused = binance
            .decode(r#"{"code":2,"msg":"Invalid request","id":3}"#)
            .unwrap();
        assert!(matches!(refused, Decoded::Refused { id: Some(ref id), .. } if id == "3"));
        assert_eq!(
            streams_named("Invalid request: unknown stream ethusdt@kline_1m,x@kline_9q"),
            vec![key("ETHUSDT", Interval::M1)]
        );
        assert!(binance.decode("{not json").is_err());
    }

    #[test]
    fn a_used_weight_near_the_limit_pauses_until_the_next_minute() {
        let mut headers = HeaderMap::new();
        headers.insert("x-mbx-used-weight-1m", "100".parse().unwrap());
        assert_eq!(used_weight(&headers), None);
        headers.insert("x-mbx-used-weight-1m", "2200".parse().unwrap());
        let pause = used_weight(&headers).unwrap();
        assert!(pause <= Duration::from_secs(60));
        assert_eq!(used_weight(&HeaderMap::new()), None);
    }
}
