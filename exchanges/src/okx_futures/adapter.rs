//! The OKX v5 perpetual swap adapter: the protocol of [`super::rest`] and
//! [`super::ws`] on the shared networking of [`crate::net`].
//!
//! - REST: `candles` for the latest 1440 rows, `history-candles` beyond,
//!   100 rows a page, newest first on the wire and put in order; the
//!   instrument list with `instType=SWAP`. The budget is 16 requests per
//!   2 s, under the documented 20 of `history-candles` (40 of `candles`).
//! - Live: the business WebSocket `/ws/v5/business`, channels
//!   `candle{bar}` with UTC bars for 6 h and longer, 100 channels per
//!   subscribe request and 200 per connection, one answer per channel
//!   checked. Text `ping` after 25 s without a frame, `pong` expected: 35 s
//!   without any frame is a dead connection. A `notice` (64008, a service
//!   upgrade) opens the replacement connection at once, before OKX closes
//!   the old one.

use std::time::Duration;

use async_trait::async_trait;
use ohlcv_domain::config::ExchangeConfig;
use ohlcv_domain::time::now_ms;
use ohlcv_domain::{Candle, Interval, SeriesKey, Symbol};
use reqwest::header::HeaderMap;

use super::rest::{decode_candles, decode_instruments, instruments_url, merge_pages, plan_pages};
use super::ws::{decode_text, subscribe_messages, WsMessage, PING, PING_AFTER};
use super::{series_key, EXCHANGE, REST_URL, WS_PATH, WS_URL};
use crate::net::budget::BudgetLimits;
use crate::net::exchange::{endpoint, RealExchange, RestProtocol};
use crate::net::http::RestClient;
use crate::net::live::{ConnectionPlan, Decoded, KeepAlive, LiveProtocol, Subscribe};
use crate::source::ExchangeError;

/// What this process spends of the candle endpoints' limits.
const LIMITS: BudgetLimits = BudgetLimits {
    capacity: 16,
    window: Duration::from_secs(2),
};
/// Pause after a `429` without `Retry-After`: one rate-limit window.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(2);
/// Channels per subscribe request: about 6 kB, far under the 64 kB limit.
const CHANNELS_PER_REQUEST: usize = 100;
/// Channels per connection, so one broken connection stalls few series.
const CHANNELS_PER_CONNECTION: usize = 200;

/// Builds the adapter from its config (`rest_url`, `ws_url` bases).
///
/// # Errors
/// [`ExchangeError::Connect`] when TLS cannot be set up.
pub fn build(
    config: &ExchangeConfig,
) -> Result<std::sync::Arc<dyn crate::MarketSource>, ExchangeError> {
    let rest_url = config.rest_url.clone().unwrap_or_else(|| REST_URL.into());
    let ws_url = config.ws_url.clone().unwrap_or_else(|| WS_URL.into());
    let rest = RestClient::new(EXCHANGE, &rest_url, LIMITS, http_error, no_usage_headers)?;
    let protocol = Okx { rest_url, ws_url };
    Ok(std::sync::Arc::new(RealExchange::new(
        EXCHANGE, protocol, rest,
    )))
}

/// The error of a non-2xx answer: `429` is a rate limit (OKX code 50011),
/// other `4xx` rejections (their body names OKX's code), the rest retried.
fn http_error(status: u16, retry_after: Option<&str>, body: &str) -> ExchangeError {
    match status {
        429 => ExchangeError::RateLimited {
            retry_after: retry_after
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map_or(DEFAULT_RATE_LIMIT_WAIT, Duration::from_secs),
        },
        400..=499 => ExchangeError::Rejected(format!("okx_futures HTTP {status}: {body}")),
        _ => ExchangeError::Http {
            status,
            body: body.to_owned(),
        },
    }
}

/// OKX sends no usage headers on public endpoints.
fn no_usage_headers(_: &HeaderMap) -> Option<Duration> {
    None
}

/// The OKX protocol with the configured endpoints.
struct Okx {
    rest_url: String,
    ws_url: String,
}

#[async_trait]
impl RestProtocol for Okx {
    async fn symbols(&self, rest: &RestClient) -> Result<Vec<Symbol>, ExchangeError> {
        let body = rest.get(&instruments_url(&self.rest_url), 1).await?;
        decode_instruments(&body).inspect_err(|e| rest.note(e))
    }

    async fn candles(
        &self,
        rest: &RestClient,
        symbol: &Symbol,
        interval: Interval,
        from: i64,
        to: i64,
    ) -> Result<Vec<Candle>, ExchangeError> {
        let key = SeriesKey::new(EXCHANGE, symbol.clone(), interval);
        let mut pages = Vec::new();
        for page in plan_pages(symbol, interval, from, to, now_ms())? {
            let body = rest.get(&page.url(&self.rest_url), 1).await?;
            pages.push(decode_candles(&body, &key).inspect_err(|e| rest.note(e))?);
        }
        Ok(merge_pages(pages, interval, from, to))
    }
}

impl LiveProtocol for Okx {
    fn plan(&self, keys: &[SeriesKey]) -> Result<Vec<ConnectionPlan>, ExchangeError> {
        let url = endpoint(&self.ws_url, WS_PATH);
        keys.chunks(CHANNELS_PER_CONNECTION)
            .map(|connection| {
                let requests = connection
                    .chunks(CHANNELS_PER_REQUEST)
                    .map(|chunk| {
                        let text = subscribe_messages(chunk)?.concat();
                        Ok(Subscribe {
                            id: None,
                            text,
                            keys: chunk.to_vec(),
                            acks: chunk.len(),
                        })
                    })
                    .collect::<Result<Vec<_>, ExchangeError>>()?;
                Ok(ConnectionPlan {
                    url: url.clone(),
                    keys: connection.to_vec(),
                    requests,
                })
            })
            .collect()
    }

    fn keepalive(&self) -> KeepAlive {
        KeepAlive {
            ping: Some(PING.to_owned()),
            every: PING_AFTER,
            when_idle: true,
            dead_after: Duration::from_secs(35),
        }
    }

    fn message_spacing(&self) -> Duration {
        Duration::from_millis(100)
    }

    fn max_age(&self) -> Option<Duration> {
        None
    }

    fn decode(&self, text: &str) -> Result<Decoded, ExchangeError> {
        Ok(match decode_text(text)? {
            WsMessage::Candles(candles) => Decoded::Candles(candles),
            WsMessage::Subscribed(_) => Decoded::Ack { id: None },
            WsMessage::Error { code, msg } => Decoded::Refused {
                id: None,
                keys: refused_channel(&msg).into_iter().collect(),
                reason: format!("okx_futures error {code}: {msg}"),
            },
            WsMessage::Notice { code, msg } => Decoded::Closing(format!("notice {code}: {msg}")),
            WsMessage::Pong | WsMessage::Unknown(_) => Decoded::Other,
        })
    }
}

/// The series an error names: OKX's `msg` reads
/// `Wrong URL or channel:candle1m,instId:FOO-USDT-SWAP doesn't exist…`.
fn refused_channel(msg: &str) -> Option<SeriesKey> {
    let word = |after: &str| -> Option<&str> {
        let rest = msg.split(after).nth(1)?;
        rest.split([',', ' ']).next()
    };
    series_key(word("channel:")?, word("instId:")?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn okx() -> Okx {
        Okx {
            rest_url: "http://127.0.0.1:1".into(),
            ws_url: "ws://127.0.0.1:1".into(),
        }
    }

    fn key(symbol: &str) -> SeriesKey {
        SeriesKey::new(EXCHANGE, Symbol::new(symbol).unwrap(), Interval::M1)
    }

    #[test]
    fn the_plan_expects_one_answer_per_channel_on_the_business_path() {
        let keys: Vec<SeriesKey> = (0..250).map(|i| key(&format!("S{i}USDT"))).collect();
        let plans = okx().plan(&keys).unwrap();
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].url, "ws://127.0.0.1:1/ws/v5/business");
        let acks: Vec<usize> = plans
            .iter()
            .flat_map(|p| p.requests.iter().map(|r| r.acks))
            .collect();
        assert_eq!(acks, [100, 100, 50]);
        assert!(plans[0].requests[0].text.starts_with(
            r#"{"op":"subscribe","args":[{"channel":"candle1m","instId":"S0-USDT-SWAP"}"#
        ));
    }

    #[test]
    fn errors_name_their_channel_and_notices_ask_for_a_new_connection() {
        let refused = okx()
            .decode(r#"{"event":"error","code":"60018","msg":"Wrong URL or channel:candle1m,instId:FOO-USDT-SWAP doesn't exist. Please use the correct URL, channel and parameters referring to API document.","connId":"a4d3ae55"}"#)
            .unwrap();
        assert!(matches!(refused, Decoded::Refused { ref keys, .. } if keys == &[key("FOOUSDT")]));
        let notice = okx()
            .decode(r#"{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"a4d3ae55"}"#)
            .unwrap();
        assert!(matches!(notice, Decoded::Closing(_)));
        assert_eq!(okx().decode("pong").unwrap(), Decoded::Other);
    }
}
