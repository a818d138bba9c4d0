//! Binance USDT-M futures REST, without the HTTP client: request URLs, page
//! planning over the row limit, request weights, and decoding of the
//! responses into candles and symbols.
//!
//! A backfill of `from..=to` is a loop the networking step drives:
//! [`KlinesPage::first`], fetch [`KlinesPage::url`], [`decode_klines`], then
//! [`KlinesPage::next`] with what came back, until it says `None`.

use std::time::Duration;

use ohlcv_domain::{Candle, Interval, SeriesKey, Symbol};

use super::wire::{ApiError, ExchangeInfo, KlineRow};
use super::{decode_error, interval_name, parse_decimal, rest_symbol, truncated, EXCHANGE};
use crate::source::ExchangeError;

/// Path of the klines endpoint.
///
/// Docs: <https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Kline-Candlestick-Data>
pub const KLINES_PATH: &str = "/fapi/v1/klines";

/// Path of the exchange information endpoint (weight 1).
///
/// Docs: <https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Exchange-Information>
pub const EXCHANGE_INFO_PATH: &str = "/fapi/v1/exchangeInfo";

/// Most rows one klines request may ask for ("Default 500; max 1500").
pub const MAX_KLINES_LIMIT: u16 = 1500;

/// The only contract type we collect.
pub const PERPETUAL: &str = "PERPETUAL";

/// The status of a contract that trades.
pub const TRADING: &str = "TRADING";

/// The quote asset of the contracts we collect.
pub const QUOTE_ASSET: &str = "USDT";

/// Wait after a 429 (too many requests) that came without a usable
/// `Retry-After` header: one minute, the window the `REQUEST_WEIGHT` limit
/// is counted over.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// Wait after a 418 (IP banned) without a usable `Retry-After` header: the
/// shortest ban Binance documents is two minutes; the header, when sent,
/// gives the real length.
const DEFAULT_BAN_WAIT: Duration = Duration::from_secs(120);

/// `rest_url` + `path`, without a doubled slash when the configured base
/// ends with one.
fn endpoint(rest_url: &str, path: &str) -> String {
    format!("{}{path}", rest_url.trim_end_matches('/'))
}

/// URL of `GET /fapi/v1/exchangeInfo` on `rest_url` (the config's
/// `rest_url`, or [`super::REST_URL`]).
pub fn exchange_info_url(rest_url: &str) -> String {
    endpoint(rest_url, EXCHANGE_INFO_PATH)
}

/// Request weight of a klines call asking for `limit` rows, from the
/// documented table: `[1,100)` → 1, `[100,500)` → 2, `[500,1000]` → 5,
/// `> 1000` → 10. The limiter of the networking step charges this against
/// the `REQUEST_WEIGHT` budget.
pub const fn klines_weight(limit: u16) -> u32 {
    match limit {
        0..=99 => 1,
        100..=499 => 2,
        500..=1000 => 5,
        _ => 10,
    }
}

/// One klines request of a backfill: open times `start_time..=end_time`, at
/// most `limit` rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KlinesPage {
    /// The series asked for.
    pub key: SeriesKey,
    /// `startTime`: the earliest open time wanted, UTC ms.
    pub start_time: i64,
    /// `endTime`: the latest open time wanted (the backfill's `to`), UTC ms.
    pub end_time: i64,
    /// `limit`: 1 to [`MAX_KLINES_LIMIT`], no more than the candles left in
    /// the range, so a short range costs a light request.
    pub limit: u16,
    /// Binance's name of the interval.
    interval_name: &'static str,
}

impl KlinesPage {
    /// The first page of a backfill of the candles opening in `from..=to`
    /// (UTC ms), or `None` when no candle opens in that range.
    ///
    /// # Errors
    /// [`ExchangeError::Rejected`] when Binance has no such interval.
    pub fn first(
        symbol: &Symbol,
        interval: Interval,
        from: i64,
        to: i64,
    ) -> Result<Option<KlinesPage>, ExchangeError> {
        let name = interval_name(interval).ok_or_else(|| {
            ExchangeError::Rejected(format!("binance_futures has no {interval} candles"))
        })?;
        let key = SeriesKey::new(EXCHANGE, symbol.clone(), interval);
        Ok(Self::starting(key, name, from, to))
    }

    /// The page of `key` starting at the first open time at or after
    /// `from`, or `None` when that is after `to`.
    fn starting(key: SeriesKey, interval_name: &'static str, from: i64, to: i64) -> Option<Self> {
        let d = key.interval.duration_ms();
        // Binance has no candle before the epoch, and aligning a time near
        // i64::MIN would overflow.
        let from = from.max(0);
        let aligned = key.interval.align(from);
        let start_time = if aligned < from {
            aligned.checked_add(d)?
        } else {
            aligned
        };
        if start_time > to {
            return None;
        }
        // Candles left in start_time..=to, in i128 so no range overflows.
        let left = (i128::from(to) - i128::from(start_time)) / i128::from(d) + 1;
        let limit = left.min(i128::from(MAX_KLINES_LIMIT)) as u16;
        Some(KlinesPage {
            key,
            start_time,
            end_time: to,
            limit,
            interval_name,
        })
    }

    /// The page after this one, given how many rows this one returned and
    /// the open time of its last (latest) row; `None` when the range is
    /// done. The next page starts one interval after that last open time, so
    /// no candle is fetched twice; a page returning fewer rows than its
    /// limit has exhausted the range (Binance fills a page up to the limit),
    /// and so has an empty one.
    pub fn next(&self, rows: usize, last_open_time: Option<i64>) -> Option<KlinesPage> {
        let last = last_open_time?;
        if rows < usize::from(self.limit) {
            return None;
        }
        // Never step backwards, even on a payload out of range: every page
        // starts later than the one before, so the loop ends.
        let after = last.max(self.start_time).checked_add(1)?;
        Self::starting(self.key.clone(), self.interval_name, after, self.end_time)
    }

    /// The request weight of this page ([`klines_weight`]).
    pub fn weight(&self) -> u32 {
        klines_weight(self.limit)
    }

    /// The URL of this page on `rest_url`:
    /// `{rest_url}/fapi/v1/klines?symbol=BTCUSDT&interval=1m&startTime=…&endTime=…&limit=…`.
    /// Symbols are `A-Z0-9` and interval names `0-9a-z`, so nothing needs
    /// escaping.
    pub fn url(&self, rest_url: &str) -> String {
        format!(
            "{}?symbol={}&interval={}&startTime={}&endTime={}&limit={}",
            endpoint(rest_url, KLINES_PATH),
            rest_symbol(&self.key.symbol),
            self.interval_name,
            self.start_time,
            self.end_time,
            self.limit,
        )
    }
}

/// The one conversion of a REST kline row into our candle of `key`: closed
/// once its close time has passed at `now_ms` (REST rows carry no closed
/// flag; the row still forming has a close time in the future).
///
/// # Errors
/// [`ExchangeError::Decode`] naming the price or volume that is not a
/// finite non-negative decimal.
pub fn candle_from_row(
    row: &KlineRow,
    key: &SeriesKey,
    now_ms: i64,
) -> Result<Candle, ExchangeError> {
    Ok(Candle {
        key: key.clone(),
        open_time: row.open_time,
        open: parse_decimal("open", &row.open)?,
        high: parse_decimal("high", &row.high)?,
        low: parse_decimal("low", &row.low)?,
        close: parse_decimal("close", &row.close)?,
        volume: parse_decimal("volume", &row.volume)?,
        closed: row.close_time < now_ms,
    })
}

/// Decodes a klines response `body` for the series `key` into candles,
/// oldest first, as Binance sends them.
///
/// # Errors
/// [`ExchangeError::Decode`] with the element (`open (index 1)`) or field
/// that did not match and the start of the body.
pub fn decode_klines(
    body: &str,
    key: &SeriesKey,
    now_ms: i64,
) -> Result<Vec<Candle>, ExchangeError> {
    let rows: Vec<KlineRow> = serde_json::from_str(body)
        .map_err(|e| decode_error(format!("klines response: {e}"), body))?;
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            candle_from_row(row, key, now_ms).map_err(|e| match e {
                ExchangeError::Decode { reason, .. } => {
                    decode_error(format!("klines row {i}: {reason}"), body)
                }
                other => other,
            })
        })
        .collect()
}

/// The error for a REST response with a non-success `status`, its
/// `Retry-After` header (seconds), if any, and its `body`:
/// - 429 (rate limited) and 418 (IP banned, after repeated 429s) become
///   [`ExchangeError::RateLimited`], waiting as long as `Retry-After` says
///   (a minute, or two for a ban, when it says nothing usable);
/// - 400 with a documented error body (`{"code":-1121,"msg":"Invalid
///   symbol."}`) becomes [`ExchangeError::Rejected`]: the same request
///   will fail again;
/// - anything else (403 from the firewall, 5xx, an unknown body) becomes
///   [`ExchangeError::Http`], which is retried.
///
/// The `Retry-After` semantics are from Binance's spot "LIMITS" docs; the
/// futures pages retrieved only list the 418/429 codes.
pub fn http_error(status: u16, retry_after: Option<&str>, body: &str) -> ExchangeError {
    let header = retry_after
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    match status {
        429 => ExchangeError::RateLimited {
            retry_after: header.unwrap_or(DEFAULT_RATE_LIMIT_WAIT),
        },
        418 => ExchangeError::RateLimited {
            retry_after: header.unwrap_or(DEFAULT_BAN_WAIT),
        },
        400 => match serde_json::from_str::<ApiError>(body) {
            Ok(e) => {
                ExchangeError::Rejected(format!("binance_futures error {}: {}", e.code, e.msg))
            }
            Err(_) => http(status, body),
        },
        _ => http(status, body),
    }
}

/// An [`ExchangeError::Http`] keeping the start of the body for the log.
fn http(status: u16, body: &str) -> ExchangeError {
    ExchangeError::Http {
        status,
        body: truncated(body),
    }
}

/// Decodes an exchangeInfo response `body` into the symbols we can collect:
/// `PERPETUAL` contracts, `TRADING`, quoted in `USDT`, sorted. A listed
/// symbol that is not a valid [`Symbol`] (Binance lists some with non-ASCII
/// names) is left out rather than failing the whole list.
///
/// # Errors
/// [`ExchangeError::Decode`] when the body is not the documented shape.
pub fn decode_symbols(body: &str) -> Result<Vec<Symbol>, ExchangeError> {
    let info: ExchangeInfo = serde_json::from_str(body)
        .map_err(|e| decode_error(format!("exchangeInfo response: {e}"), body))?;
    let mut symbols: Vec<Symbol> = info
        .symbols
        .iter()
        .filter(|s| {
            s.contract_type == PERPETUAL && s.status == TRADING && s.quote_asset == QUOTE_ASSET
        })
        .filter_map(|s| Symbol::new(&s.symbol).ok())
        .collect();
    symbols.sort();
    symbols.dedup();
    Ok(symbols)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KLINES: &str = include_str!("test_data/klines.json");
    const EXCHANGE_INFO: &str = include_str!("test_data/exchange_info.json");
    const API_ERROR: &str = include_str!("test_data/api_error.json");
    const MIN: i64 = 60_000;

    fn btc() -> Symbol {
        Symbol::new("BTCUSDT").unwrap()
    }

    fn key(interval: Interval) -> SeriesKey {
        SeriesKey::new(EXCHANGE, btc(), interval)
    }

    #[test]
    fn documented_row_becomes_a_candle() {
        // The documented row opens 2017-07-03 and closes a week later: a 1w
        // candle of Binance's (Monday-aligned) calendar.
        let k = key(Interval::W1);
        let candles = decode_klines(KLINES, &k, 1_700_000_000_000).unwrap();
        assert_eq!(
            candles,
            vec![Candle {
                key: k.clone(),
                open_time: 1_499_040_000_000,
                open: 0.0163479,
                high: 0.8,
                low: 0.015758,
                close: 0.015771,
                volume: 148_976.114_278_15,
                closed: true,
            }]
        );
        assert_eq!(candles[0].validate(), Ok(()));
        assert_eq!(candles[0].next_open_time(), 1_499_644_799_999 + 1);
    }

    #[test]
    fn closed_is_whether_the_close_time_has_passed() {
        let k = key(Interval::W1);
        let close_time = 1_499_644_799_999;
        for (now, closed) in [
            (close_time - 1, false),
            (close_time, false),
            (close_time + 1, true),
        ] {
            let c = decode_klines(KLINES, &k, now).unwrap();
            assert_eq!(c[0].closed, closed, "now = {now}");
        }
    }

    #[test]
    fn bad_bodies_are_errors_naming_the_field_never_panics() {
        let k = key(Interval::M1);
        let cases = [
            ("", "klines response"),
            (
                "{\"code\":-1121,\"msg\":\"Invalid symbol.\"}",
                "klines response",
            ),
            (
                "[[1,\"x\",\"1\",\"1\",\"1\",\"1\",2,\"1\",3,\"1\",\"1\",\"0\"]]",
                "row 0: open",
            ),
            (
                "[[1,\"1\",\"1\",\"1\",\"1\",\"-5\",2,\"1\",3,\"1\",\"1\",\"0\"]]",
                "row 0: volume",
            ),
            (
                "[[1,\"1\",\"1\",\"1\",\"1\",\"1\",2,\"1\",3,\"1\",\"1\",\"0\"],[1]]",
                "open (index 1)",
            ),
            ("[[1.5,\"1\"]]", "open time (index 0)"),
        ];
        for (body, expected) in cases {
            match decode_klines(body, &k, 0) {
                Err(e @ ExchangeError::Decode { .. }) => {
                    assert!(e.to_string().contains(expected), "{body}: {e}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        assert_eq!(decode_klines("[]", &k, 0).unwrap(), vec![]);
    }

    #[test]
    fn urls_carry_the_documented_parameters() {
        assert_eq!(
            exchange_info_url("https://fapi.binance.com"),
            "https://fapi.binance.com/fapi/v1/exchangeInfo"
        );
        let page = KlinesPage::first(&btc(), Interval::M1, 0, 10 * MIN)
            .unwrap()
            .unwrap();
        assert_eq!(
            page.url("http://127.0.0.1:8080/"),
            "http://127.0.0.1:8080/fapi/v1/klines?symbol=BTCUSDT&interval=1m&startTime=0&endTime=600000&limit=11"
        );
    }

    #[test]
    fn weights_follow_the_documented_table() {
        let table = [
            (1, 1),
            (99, 1),
            (100, 2),
            (499, 2),
            (500, 5),
            (1000, 5),
            (1001, 10),
            (1500, 10),
        ];
        for (limit, weight) in table {
            assert_eq!(klines_weight(limit), weight, "limit {limit}");
        }
    }

    #[test]
    fn pages_cover_a_range_ascending_1500_at_a_time() {
        // 4000 one-minute candles starting mid-candle: the first open time is
        // the next boundary.
        let from = 30_000;
        let to = 4000 * MIN;
        let mut page = KlinesPage::first(&btc(), Interval::M1, from, to).unwrap();
        let mut seen = Vec::new();
        while let Some(p) = page {
            assert!(p.limit <= MAX_KLINES_LIMIT);
            seen.push((p.start_time, p.limit));
            // A full page: the exchange returned `limit` rows.
            let last = p.start_time + (i64::from(p.limit) - 1) * MIN;
            page = p.next(usize::from(p.limit), Some(last));
        }
        assert_eq!(
            seen,
            vec![(MIN, 1500), (1501 * MIN, 1500), (3001 * MIN, 1000)]
        );
    }

    #[test]
    fn paging_stops_on_short_or_empty_pages_and_never_goes_back() {
        let p = KlinesPage::first(&btc(), Interval::M1, 0, 5000 * MIN)
            .unwrap()
            .unwrap();
        assert_eq!(p.next(0, None), None);
        assert_eq!(p.next(10, Some(9 * MIN)), None);
        // A gap (maintenance): the page was full but ended later than
        // start + limit candles; the next page starts after its last row.
        let n = p.next(1500, Some(2000 * MIN)).unwrap();
        assert_eq!((n.start_time, n.limit), (2001 * MIN, 1500));
        // A bogus last open time before the page start still moves forwards.
        let n = p.next(1500, Some(-5 * MIN)).unwrap();
        assert!(n.start_time > p.start_time);
        // Ranges without a candle, and extreme inputs.
        assert_eq!(
            KlinesPage::first(&btc(), Interval::M1, 1, MIN - 1).unwrap(),
            None
        );
        assert_eq!(
            KlinesPage::first(&btc(), Interval::M1, 10, 0).unwrap(),
            None
        );
        assert_eq!(
            KlinesPage::first(&btc(), Interval::M1, i64::MAX, i64::MAX).unwrap(),
            None
        );
        let wide = KlinesPage::first(&btc(), Interval::M1, i64::MIN, i64::MAX)
            .unwrap()
            .unwrap();
        assert_eq!(wide.limit, MAX_KLINES_LIMIT);
        assert_eq!(wide.next(1500, Some(i64::MAX)), None);
    }

    #[test]
    fn http_errors_map_to_retryable_or_rejected() {
        let rejected = http_error(400, None, API_ERROR);
        assert_eq!(
            rejected.to_string(),
            "rejected by the exchange: binance_futures error -1121: Invalid symbol."
        );
        assert!(!rejected.is_retryable());
        let wait = |e: ExchangeError| match e {
            ExchangeError::RateLimited { retry_after } => retry_after,
            other => panic!("{other:?}"),
        };
        assert_eq!(wait(http_error(429, Some("7"), "")), Duration::from_secs(7));
        assert_eq!(
            wait(http_error(429, Some("soon"), "")),
            DEFAULT_RATE_LIMIT_WAIT
        );
        assert_eq!(wait(http_error(418, None, "")), DEFAULT_BAN_WAIT);
        assert_eq!(
            wait(http_error(418, Some(" 3600 "), "")),
            Duration::from_secs(3600)
        );
        for (status, body) in [(400, "<html>"), (403, API_ERROR), (502, "bad gateway")] {
            let e = http_error(status, None, body);
            assert!(e.is_retryable(), "{status}");
            assert!(matches!(e, ExchangeError::Http { status: s, .. } if s == status));
        }
        let long = "x".repeat(10_000);
        match http_error(500, None, &long) {
            ExchangeError::Http { body, .. } => assert!(body.len() < 1000),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn symbols_are_trading_usdt_perpetuals() {
        assert_eq!(
            decode_symbols(EXCHANGE_INFO).unwrap(),
            vec![Symbol::new("BLZUSDT").unwrap()]
        );
        // Not from the docs: one entry per way a contract is left out.
        let body = r#"{"symbols":[
            {"symbol":"ETHUSDT","contractType":"PERPETUAL","status":"TRADING","quoteAsset":"USDT"},
            {"symbol":"BTCUSDT_250627","contractType":"CURRENT_QUARTER","status":"TRADING","quoteAsset":"USDT"},
            {"symbol":"OLDUSDT","contractType":"PERPETUAL","status":"SETTLING","quoteAsset":"USDT"},
            {"symbol":"BTCUSDC","contractType":"PERPETUAL","status":"TRADING","quoteAsset":"USDC"},
            {"symbol":"币安人生USDT","contractType":"PERPETUAL","status":"TRADING","quoteAsset":"USDT"},
            {"symbol":"BTCUSDT","contractType":"PERPETUAL","status":"TRADING","quoteAsset":"USDT"}
        ]}"#;
        assert_eq!(
            decode_symbols(body).unwrap(),
            vec![btc(), Symbol::new("ETHUSDT").unwrap()]
        );
        let err = decode_symbols(r#"{"symbols":[{"symbol":"X"}]}"#).unwrap_err();
        assert!(err.to_string().contains("contractType"), "{err}");
    }
}
