//! The Bybit v5 linear adapter: the protocol of [`super::rest`] and
//! [`super::ws`] on the shared networking of [`crate::net`].
//!
//! - REST: `GET /v5/market/kline` (`category=linear`) in pages of 1000,
//!   newest first on the wire and put in order; the instrument list is
//!   cursor-paginated. The budget is 300 requests per 5 s of the
//!   documented 600 per IP; `X-Bapi-Limit-Status` at 1 pauses every request
//!   until `X-Bapi-Limit-Reset-Timestamp`, and a rate-limit `retCode` in a
//!   200 answer pauses the budget like a `429`.
//! - Live: `/v5/public/linear`, topics `kline.{interval}.{symbol}`, at
//!   most 21,000 characters of topics per connection, 10 topics per
//!   request, every answer checked (`success`). `{"op":"ping"}` every 20 s,
//!   and 45 s without any frame is a dead connection.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use ohlcv_domain::config::ExchangeConfig;
use ohlcv_domain::time::now_ms;
use ohlcv_domain::{Candle, Interval, SeriesKey, Symbol};
use reqwest::header::HeaderMap;

use super::rest::{
    decode_klines, kline_url, merge_pages, plan_pages, InstrumentsPager, MAX_KLINE_LIMIT,
};
use super::ws::{
    decode_frame, parse_topic, ping_message, plan_connections, subscribe_requests, topic, WsEvent,
    PING_INTERVAL,
};
use super::{EXCHANGE, REST_URL, WS_PATH, WS_URL};
use crate::net::budget::BudgetLimits;
use crate::net::exchange::{endpoint, RealExchange, RestProtocol};
use crate::net::http::RestClient;
use crate::net::live::{ConnectionPlan, Decoded, KeepAlive, LiveProtocol, Subscribe};
use crate::source::ExchangeError;

/// What this process spends of the documented 600 requests per 5 s.
const LIMITS: BudgetLimits = BudgetLimits {
    capacity: 300,
    window: Duration::from_secs(5),
};
/// Pause after a `429`/`403` without `Retry-After`: Bybit's IP ban for
/// exceeding the limit lasts "at least 10 minutes" only when repeated; one
/// window is what a single excess costs.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(5);

/// Builds the adapter from its config (`rest_url`, `ws_url` bases).
///
/// # Errors
/// [`ExchangeError::Connect`] when TLS cannot be set up.
pub fn build(
    config: &ExchangeConfig,
) -> Result<std::sync::Arc<dyn crate::MarketSource>, ExchangeError> {
    let rest_url = config.rest_url.clone().unwrap_or_else(|| REST_URL.into());
    let ws_url = config.ws_url.clone().unwrap_or_else(|| WS_URL.into());
    let rest = RestClient::new(EXCHANGE, &rest_url, LIMITS, http_error, limit_status)?;
    let protocol = Bybit { rest_url, ws_url };
    Ok(std::sync::Arc::new(RealExchange::new(
        EXCHANGE, protocol, rest,
    )))
}

/// The error of a non-2xx answer: `429` and `403` (Bybit's "access too
/// frequent") are rate limits, other `4xx` rejections, the rest retried.
fn http_error(status: u16, retry_after: Option<&str>, body: &str) -> ExchangeError {
    match status {
        429 | 403 => ExchangeError::RateLimited {
            retry_after: retry_after
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map_or(DEFAULT_RATE_LIMIT_WAIT, Duration::from_secs),
        },
        400..=499 => ExchangeError::Rejected(format!("bybit_futures HTTP {status}: {body}")),
        _ => ExchangeError::Http {
            status,
            body: body.to_owned(),
        },
    }
}

/// Pauses until the reset time when the current window has one request
/// left (`X-Bapi-Limit-Status`).
fn limit_status(headers: &HeaderMap) -> Option<Duration> {
    let header =
        |name: &str| -> Option<i64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    let remaining = header("x-bapi-limit-status")?;
    if remaining > 1 {
        return None;
    }
    let reset = header("x-bapi-limit-reset-timestamp")?;
    let wait = (reset - now_ms()).clamp(0, 10_000);
    Some(Duration::from_millis(wait as u64))
}

/// The Bybit protocol with the configured endpoints.
struct Bybit {
    rest_url: String,
    ws_url: String,
}

#[async_trait]
impl RestProtocol for Bybit {
    async fn symbols(&self, rest: &RestClient) -> Result<Vec<Symbol>, ExchangeError> {
        let mut pager = InstrumentsPager::new();
        while let Some(url) = pager.next_url(&self.rest_url) {
            let body = rest.get(&url, 1).await?;
            pager.step(&body).inspect_err(|e| rest.note(e))?;
        }
        Ok(pager.into_symbols())
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
        for page in plan_pages(interval, from, to, MAX_KLINE_LIMIT)? {
            let body = rest
                .get(&kline_url(&self.rest_url, symbol, interval, page)?, 1)
                .await?;
            pages.push(decode_klines(&body, &key, now_ms()).inspect_err(|e| rest.note(e))?);
        }
        Ok(merge_pages(pages, from, to))
    }
}

impl LiveProtocol for Bybit {
    fn plan(&self, keys: &[SeriesKey]) -> Result<Vec<ConnectionPlan>, ExchangeError> {
        let mut by_topic: HashMap<String, SeriesKey> = HashMap::with_capacity(keys.len());
        for key in keys {
            by_topic.insert(topic(key)?, key.clone());
        }
        let url = endpoint(&self.ws_url, WS_PATH);
        Ok(plan_connections(keys)?
            .into_iter()
            .map(|topics| {
                let requests = subscribe_requests(&topics, 1)
                    .into_iter()
                    .zip(topics.chunks(super::ws::ARGS_PER_REQUEST))
                    .map(|((id, text), topics)| Subscribe {
                        id: Some(id),
                        text,
                        keys: topics
                            .iter()
                            .filter_map(|t| by_topic.get(t).cloned())
                            .collect(),
                        acks: 1,
                    })
                    .collect();
                ConnectionPlan {
                    url: url.clone(),
                    keys: topics
                        .iter()
                        .filter_map(|t| by_topic.get(t).cloned())
                        .collect(),
                    requests,
                }
            })
            .collect())
    }

    fn keepalive(&self) -> KeepAlive {
        KeepAlive {
            ping: Some(ping_message()),
            every: PING_INTERVAL,
            when_idle: false,
            dead_after: Duration::from_secs(45),
        }
    }

    fn message_spacing(&self) -> Duration {
        Duration::from_millis(100)
    }

    fn max_age(&self) -> Option<Duration> {
        None
    }

    fn decode(&self, text: &str) -> Result<Decoded, ExchangeError> {
        Ok(match decode_frame(text)? {
            WsEvent::Candles(candles) => Decoded::Candles(candles),
            WsEvent::Subscribed(ack) if ack.success => Decoded::Ack { id: ack.req_id },
            WsEvent::Subscribed(ack) => Decoded::Refused {
                keys: refused_topic(&ack.ret_msg).into_iter().collect(),
                id: ack.req_id,
                reason: format!("bybit_futures refused the subscription: {}", ack.ret_msg),
            },
            WsEvent::Pong | WsEvent::Unknown => Decoded::Other,
        })
    }
}

/// The series a refusal names: Bybit's `ret_msg` reads
/// `error:handler not found,topic:kline.1.FOOUSDT`.
fn refused_topic(ret_msg: &str) -> Option<SeriesKey> {
    let topic = ret_msg.split("topic:").nth(1)?;
    let topic = topic.split([',', ' ']).next()?;
    let (interval, symbol) = parse_topic(topic)?;
    Some(SeriesKey::new(EXCHANGE, symbol, interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bybit() -> Bybit {
        Bybit {
            rest_url: "http://127.0.0.1:1".into(),
            ws_url: "ws://127.0.0.1:1".into(),
        }
    }

    fn key(symbol: &str) -> SeriesKey {
        SeriesKey::new(EXCHANGE, Symbol::new(symbol).unwrap(), Interval::M1)
    }

    #[test]
    fn the_plan_sends_ten_topics_per_request_on_the_linear_path() {
        let keys: Vec<SeriesKey> = (0..25).map(|i| key(&format!("S{i}USDT"))).collect();
        let plans = bybit().plan(&keys).unwrap();
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].url, "ws://127.0.0.1:1/v5/public/linear");
        let sizes: Vec<usize> = plans[0].requests.iter().map(|r| r.keys.len()).collect();
        assert_eq!(sizes, [10, 10, 5]);
        assert_eq!(plans[0].requests[2].id.as_deref(), Some("3"));
    }

    #[test]
    fn a_refusal_names_its_topic() {
        let decoded = bybit()
            .decode(
                r#"{"success":false,"ret_msg":"error:handler not found,topic:kline.1.FOOUSDT","conn_id":"c","req_id":"2","op":"subscribe"}"#,
            )
            .unwrap();
        assert_eq!(
            decoded,
            Decoded::Refused {
                id: Some("2".into()),
                keys: vec![key("FOOUSDT")],
                reason: "bybit_futures refused the subscription: error:handler not found,topic:kline.1.FOOUSDT".into(),
            }
        );
        assert_eq!(refused_topic("something else"), None);
    }

    #[test]
    fn rate_limit_statuses_and_headers_pause_the_budget() {
        assert!(matches!(
            http_error(429, Some("7"), ""),
            ExchangeError::RateLimited { retry_after } if retry_after == Duration::from_secs(7)
        ));
        assert!(!http_error(400, None, "bad").is_retryable());
        let mut headers = HeaderMap::new();
        headers.insert("x-bapi-limit-status", "50".parse().unwrap());
        assert_eq!(limit_status(&headers), None);
        headers.insert("x-bapi-limit-status", "1".parse().unwrap());
        headers.insert(
            "x-bapi-limit-reset-timestamp",
            (now_ms() + 2_000).to_string().parse().unwrap(),
        );
        let pause = limit_status(&headers).unwrap();
        assert!(pause <= Duration::from_secs(2) && pause > Duration::from_secs(1));
    }
}
