//! OKX v5 REST, without the HTTP client: request URLs, which endpoint
//! serves which range, page planning for a backfill, and response decoding.
//!
//! Pagination as documented for both candle endpoints:
//! - `after=<ts>` returns records **earlier** (older) than `ts`;
//! - `before=<ts>` returns records **newer** than `ts`; alone, it returns
//!   the latest data;
//! - rows come newest first, at most `limit` of them.
//!
//! So a backfill walks backwards from the newest candle with `after` only,
//! and [`merge_pages`] puts the rows in ascending order.

use ohlcv_domain::{Candle, Interval, SeriesKey, Symbol};

use super::wire::{CandleRow, Instrument, RestResponse};
use super::{bar, candle_from_row, decode_error, inst_id, symbol_from_inst_id};
use crate::source::ExchangeError;

/// Recent candles: holds only the latest [`RECENT_ROWS`] rows per bar.
pub const CANDLES_PATH: &str = "/api/v5/market/candles";

/// Older candles, "from recent years". Documented rate limit: 20 requests
/// per 2 s per IP (the recent endpoint allows 40).
pub const HISTORY_CANDLES_PATH: &str = "/api/v5/market/history-candles";

/// The instrument list; queried with `instType=SWAP`.
pub const INSTRUMENTS_PATH: &str = "/api/v5/public/instruments";

/// How many of the latest rows [`CANDLES_PATH`] can return ("the latest
/// 1,440 data entries").
pub const RECENT_ROWS: i64 = 1440;

/// Rows kept in reserve when deciding that a page is still within the
/// latest [`RECENT_ROWS`]: the bars that can close between planning and
/// sending the last request, plus clock skew, must not push a page off the
/// end of the recent endpoint.
const RECENT_MARGIN: i64 = 40;

/// Largest `limit` the docs allow today, for both candle endpoints (300;
/// `history-candles` was documented with 100 before).
pub const MAX_LIMIT: i64 = 300;

/// Rows asked for per page. 100 is the default and was the documented
/// maximum of `history-candles` in older docs; staying at it keeps pages
/// valid whichever limit the exchange enforces (EXCHANGES.md).
pub const PAGE_LIMIT: i64 = 100;
const _: () = assert!(0 < PAGE_LIMIT && PAGE_LIMIT <= MAX_LIMIT);

/// OKX codes that mean "slow down": 50011 "Rate limit reached" / "Too
/// Many Requests" and 50013 "Systems are busy" (both documented with HTTP
/// 429 as well).
const RATE_LIMITED_CODES: [&str; 2] = ["50011", "50013"];

/// OKX codes for a passing server fault, with the HTTP status the error
/// code table documents for them: 50001 "Service temporarily unavailable"
/// (503), 50004 "API endpoint request timeout" (400), 50026 "System error"
/// (500). Reported as [`ExchangeError::Http`] so they are retried, unlike a
/// rejection.
const TRANSIENT_CODES: [(&str, u16); 3] = [("50001", 503), ("50004", 400), ("50026", 500)];

/// How long to back off after [`RATE_LIMITED_CODE`]: the candle endpoints'
/// rate limits count requests per 2-second window.
const RATE_LIMIT_BACKOFF: std::time::Duration = std::time::Duration::from_secs(2);

/// Which candle endpoint a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// [`CANDLES_PATH`]: the latest [`RECENT_ROWS`] rows.
    Candles,
    /// [`HISTORY_CANDLES_PATH`]: everything older.
    HistoryCandles,
}

impl Endpoint {
    /// The documented path.
    pub const fn path(self) -> &'static str {
        match self {
            Endpoint::Candles => CANDLES_PATH,
            Endpoint::HistoryCandles => HISTORY_CANDLES_PATH,
        }
    }

    /// The endpoint that holds the candle opening at `oldest` when the
    /// current candle opens at `now_open`: the recent one while `oldest` is
    /// within the latest [`RECENT_ROWS`] (less a safety margin), the history
    /// one otherwise. The docs do not say whether `history-candles` also
    /// returns the latest rows, so recent pages never rely on it.
    pub fn serving(interval: Interval, oldest: i64, now_open: i64) -> Endpoint {
        let rows_back = (now_open - oldest).div_euclid(interval.duration_ms());
        if rows_back < RECENT_ROWS - RECENT_MARGIN {
            Endpoint::Candles
        } else {
            Endpoint::HistoryCandles
        }
    }
}

/// One candle request: the rows with open time **earlier than** `after`,
/// newest first, at most `limit` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Where to send it.
    pub endpoint: Endpoint,
    /// Instrument, e.g. `BTC-USDT-SWAP`.
    pub inst_id: String,
    /// Bar name, e.g. `1m`, `1Dutc`.
    pub bar: &'static str,
    /// Exclusive upper bound on open times (UTC ms).
    pub after: i64,
    /// Rows wanted, 1..=[`PAGE_LIMIT`].
    pub limit: i64,
    /// Oldest open time this page is meant to cover; rows below it belong
    /// to the next page (or lie before the range) and are dropped by
    /// [`merge_pages`].
    pub oldest: i64,
}

impl PageRequest {
    /// The full URL under `rest_url` (e.g. [`super::REST_URL`]).
    /// Every value is `A-Z`, `0-9`, `-` or a number, so none needs
    /// percent-encoding.
    pub fn url(&self, rest_url: &str) -> String {
        format!(
            "{}{}?instId={}&bar={}&after={}&limit={}",
            rest_url.trim_end_matches('/'),
            self.endpoint.path(),
            self.inst_id,
            self.bar,
            self.after,
            self.limit
        )
    }
}

/// The instrument-list URL for perpetual swaps under `rest_url`.
pub fn instruments_url(rest_url: &str) -> String {
    format!(
        "{}{INSTRUMENTS_PATH}?instType=SWAP",
        rest_url.trim_end_matches('/')
    )
}

/// The requests that fetch every candle of `symbol`/`interval` opening in
/// `from..=to` (UTC ms) as seen at wall time `now`, newest page first.
///
/// `to` is clamped to the candle forming at `now`; both ends are aligned to
/// the interval (a `from` inside a candle includes that candle). Each page
/// asks for the candles just below the previous page with `after`, so the
/// plan is a pure function of its inputs: running it twice asks for the
/// same rows, and [`merge_pages`] makes the result independent of any
/// overlap or gap in the exchange's answers.
///
/// # Errors
/// [`ExchangeError::Rejected`] when OKX has no bar for `interval` or no
/// swap for `symbol`.
pub fn plan_pages(
    symbol: &Symbol,
    interval: Interval,
    from: i64,
    to: i64,
    now: i64,
) -> Result<Vec<PageRequest>, ExchangeError> {
    let bar = bar(interval).ok_or_else(|| {
        ExchangeError::Rejected(format!("OKX has no bar for interval {interval}"))
    })?;
    let inst_id = inst_id(symbol)?;
    let step = interval.duration_ms();
    let now_open = interval.align(now);
    let first = interval.align(from);
    let mut newest = interval.align(to).min(now_open);
    let mut pages = Vec::new();
    while newest >= first {
        let limit = ((newest - first) / step + 1).min(PAGE_LIMIT);
        let oldest = newest - (limit - 1) * step;
        pages.push(PageRequest {
            endpoint: Endpoint::serving(interval, oldest, now_open),
            inst_id: inst_id.clone(),
            bar,
            after: newest + step,
            limit,
            oldest,
        });
        newest = oldest - step;
    }
    Ok(pages)
}

/// Decodes one candle response body into candles of `key`, oldest first.
///
/// # Errors
/// - [`ExchangeError::RateLimited`] for OKX codes 50011 and 50013;
/// - [`ExchangeError::Http`] (retryable) for the transient server faults
///   50001, 50004 and 50026;
/// - [`ExchangeError::Rejected`] with OKX's code and `msg` for any other
///   `code` other than `"0"`;
/// - [`ExchangeError::Decode`] when the body or a row does not match the
///   documented format (naming the field).
pub fn decode_candles(body: &str, key: &SeriesKey) -> Result<Vec<Candle>, ExchangeError> {
    let response: RestResponse<CandleRow> = parse(body)?;
    check_code(&response)?;
    let mut candles = response
        .data
        .iter()
        .map(|row| candle_from_row(key, row))
        .collect::<Result<Vec<_>, _>>()?;
    // Newest first on the wire; a stable sort keeps equal open times in
    // arrival order for `merge_pages` to settle.
    candles.reverse();
    candles.sort_by_key(|c| c.open_time);
    Ok(candles)
}

/// Puts the decoded pages of a plan together: the candles opening in
/// `from..=to` (aligned like [`plan_pages`]), ascending, one per open time.
/// When two pages hold the same candle, a closed copy wins over an open
/// one, otherwise the later page's copy. Merging the same pages again gives
/// the same result.
pub fn merge_pages(
    pages: impl IntoIterator<Item = Vec<Candle>>,
    interval: Interval,
    from: i64,
    to: i64,
) -> Vec<Candle> {
    let (first, last) = (interval.align(from), interval.align(to));
    let mut all: Vec<Candle> = pages
        .into_iter()
        .flatten()
        .filter(|c| (first..=last).contains(&c.open_time))
        .collect();
    all.sort_by_key(|c| c.open_time);
    let mut merged: Vec<Candle> = Vec::with_capacity(all.len());
    for candle in all {
        match merged.last_mut() {
            Some(prev) if prev.open_time == candle.open_time => {
                if candle.closed || !prev.closed {
                    *prev = candle;
                }
            }
            _ => merged.push(candle),
        }
    }
    merged
}

/// Decodes the instrument list into our symbols: live linear perpetual
/// swaps (`instType` `SWAP`, `ctType` `linear`, `state` `live`; inverse
/// swaps such as `BTC-USD-SWAP` are margined in the base coin, a different
/// market from the USDT-margined ones the other exchanges list) whose instId maps to a symbol,
/// sorted and without duplicates. Instruments in any other state
/// (`suspend`, `preopen`, `test`, …) and instIds with an unknown quote are
/// left out, not errors: the list legitimately holds them.
///
/// # Errors
/// As [`decode_candles`], for the envelope.
pub fn decode_instruments(body: &str) -> Result<Vec<Symbol>, ExchangeError> {
    let response: RestResponse<Instrument> = parse(body)?;
    check_code(&response)?;
    let mut symbols: Vec<Symbol> = response
        .data
        .iter()
        .filter(|i| i.inst_type == "SWAP" && i.ct_type == "linear" && i.state == "live")
        .filter_map(|i| symbol_from_inst_id(&i.inst_id).ok())
        .collect();
    symbols.sort();
    symbols.dedup();
    Ok(symbols)
}

fn parse<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, ExchangeError> {
    serde_json::from_str(body).map_err(|e| decode_error(e.to_string(), body))
}

fn check_code<T>(response: &RestResponse<T>) -> Result<(), ExchangeError> {
    let code = response.code.as_str();
    if code == "0" {
        return Ok(());
    }
    if RATE_LIMITED_CODES.contains(&code) {
        return Err(ExchangeError::RateLimited {
            retry_after: RATE_LIMIT_BACKOFF,
        });
    }
    let reason = format!("OKX code {code}: {}", response.msg);
    match TRANSIENT_CODES.iter().find(|(c, _)| *c == code) {
        Some(&(_, status)) => Err(ExchangeError::Http {
            status,
            body: reason,
        }),
        None => Err(ExchangeError::Rejected(reason)),
    }
}

#[cfg(test)]
mod tests {
    use ohlcv_domain::ExchangeId;

    use super::*;

    const CANDLES: &str = include_str!("test_data/candles.json");
    const HISTORY: &str = include_str!("test_data/history_candles.json");
    const INSTRUMENTS: &str = include_str!("test_data/instruments.json");

    const MIN: i64 = 60_000;
    /// 2024-01-03T10:17:00Z, a minute boundary.
    const T: i64 = 1_704_277_020_000;

    fn btc() -> Symbol {
        Symbol::new("BTCUSDT").unwrap()
    }

    fn key() -> SeriesKey {
        SeriesKey::new(ExchangeId::OkxFutures, btc(), Interval::M1)
    }

    #[test]
    fn documented_candles_decode_oldest_first_with_confirm_and_vol_ccy() {
        for (body, first_closed) in [(CANDLES, true), (HISTORY, true)] {
            let candles = decode_candles(body, &key()).unwrap();
            assert_eq!(candles.len(), 2);
            // Both documented rows share ts 1597026383085; newest first on
            // the wire, so the second row is the older one.
            let older = &candles[0];
            assert_eq!(older.open_time, 1_597_026_383_085);
            assert_eq!(
                (older.open, older.high, older.low, older.close),
                (3.731, 3.799, 3.494, 3.72)
            );
            assert_eq!(older.volume, 67_632_347.243_997_22);
            assert_eq!(older.closed, first_closed);
            let newer = &candles[1];
            assert_eq!(
                (newer.open, newer.high, newer.low, newer.close),
                (3.721, 3.743, 3.677, 3.708)
            );
            assert_eq!(newer.volume, 22_698_348.048_284_91);
        }
        // Only the recent endpoint's example has a forming candle.
        assert!(!decode_candles(CANDLES, &key()).unwrap()[1].closed);
        assert!(decode_candles(HISTORY, &key()).unwrap()[1].closed);
    }

    #[test]
    fn error_codes_become_errors_with_the_message() {
        let body = r#"{"code":"51001","msg":"Instrument ID does not exist","data":[]}"#;
        let err = decode_candles(body, &key()).unwrap_err();
        assert!(
            matches!(&err, ExchangeError::Rejected(m) if m.contains("51001") && m.contains("does not exist")),
            "{err}"
        );
        assert!(!err.is_retryable());
        let body = r#"{"code":"50011","msg":"Too Many Requests"}"#;
        assert!(matches!(
            decode_candles(body, &key()),
            Err(ExchangeError::RateLimited { .. })
        ));
        for garbage in [
            "",
            "[]",
            "{",
            r#"{"code":0}"#,
            r#"{"code":"0","data":[[1]]}"#,
        ] {
            assert!(
                matches!(
                    decode_candles(garbage, &key()),
                    Err(ExchangeError::Decode { .. })
                ),
                "{garbage:?}"
            );
        }
        let body = r#"{"code":"0","msg":"","data":[["1","2","3","1","2","5","x","7","1"]]}"#;
        let err = decode_candles(body, &key()).unwrap_err();
        assert!(err.to_string().contains("volCcy"), "{err}");
    }

    #[test]
    fn urls_follow_the_docs() {
        let pages = plan_pages(&btc(), Interval::H6, T - 86_400_000, T, T).unwrap();
        assert_eq!(
            pages[0].url("https://www.okx.com/"),
            format!(
                "https://www.okx.com/api/v5/market/candles?instId=BTC-USDT-SWAP&bar=6Hutc&after={}&limit=5",
                Interval::H6.align(T) + 6 * 3_600_000
            )
        );
        assert_eq!(
            instruments_url("http://127.0.0.1:9"),
            "http://127.0.0.1:9/api/v5/public/instruments?instType=SWAP"
        );
    }

    #[test]
    fn pages_walk_backwards_and_pick_the_endpoint() {
        // 250 minutes ending at T, asked at T: three pages, newest first.
        let pages = plan_pages(&btc(), Interval::M1, T - 249 * MIN, T, T).unwrap();
        let shape: Vec<_> = pages.iter().map(|p| (p.after, p.limit, p.oldest)).collect();
        assert_eq!(
            shape,
            [
                (T + MIN, 100, T - 99 * MIN),
                (T - 99 * MIN, 100, T - 199 * MIN),
                (T - 199 * MIN, 50, T - 249 * MIN),
            ]
        );
        assert!(pages.iter().all(|p| p.endpoint == Endpoint::Candles));
        assert_eq!(
            plan_pages(&btc(), Interval::M1, T - 249 * MIN, T, T).unwrap(),
            pages,
            "planning is deterministic"
        );

        // A day of minutes ending two days ago: all history.
        let old = T - 2 * 86_400_000;
        let pages = plan_pages(&btc(), Interval::M1, old - 1439 * MIN, old, T).unwrap();
        assert_eq!(pages.len(), 15);
        assert_eq!(pages.iter().map(|p| p.limit).sum::<i64>(), 1440);
        assert!(pages.iter().all(|p| p.endpoint == Endpoint::HistoryCandles));

        // Straddling the 1440-row boundary: recent first, then history.
        let pages = plan_pages(&btc(), Interval::M1, T - 2000 * MIN, T, T).unwrap();
        assert_eq!(pages[0].endpoint, Endpoint::Candles);
        assert_eq!(pages.last().unwrap().endpoint, Endpoint::HistoryCandles);

        // `to` in the future is clamped; unaligned ends include their candle.
        let pages = plan_pages(&btc(), Interval::M1, T + 5, T + 3600 * MIN, T + 30).unwrap();
        assert_eq!(pages.len(), 1);
        assert_eq!((pages[0].after, pages[0].limit), (T + MIN, 1));
        // An empty or inverted range asks for nothing.
        assert!(plan_pages(&btc(), Interval::M1, T, T - MIN, T)
            .unwrap()
            .is_empty());
        // A symbol OKX cannot name is refused up front.
        assert!(plan_pages(&Symbol::new("BTCEUR").unwrap(), Interval::M1, T, T, T).is_err());
    }

    fn candle(open_time: i64, closed: bool, close: f64) -> Candle {
        Candle {
            key: key(),
            open_time,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close,
            volume: 1.0,
            closed,
        }
    }

    #[test]
    fn merging_sorts_trims_dedups_and_is_idempotent() {
        let page1 = vec![candle(T - MIN, true, 1.0), candle(T, false, 1.5)];
        let page2 = vec![
            candle(T - 3 * MIN, true, 1.0),
            candle(T - 2 * MIN, true, 1.0),
            candle(T - MIN, false, 9.0),
        ];
        let merged = merge_pages([page1.clone(), page2.clone()], Interval::M1, T - 2 * MIN, T);
        let times: Vec<_> = merged.iter().map(|c| c.open_time).collect();
        assert_eq!(times, [T - 2 * MIN, T - MIN, T]);
        assert!(
            merged[1].closed && merged[1].close == 1.0,
            "closed copy wins"
        );
        assert!(!merged[2].closed);
        let again = merge_pages([merged.clone(), page1, page2], Interval::M1, T - 2 * MIN, T);
        assert_eq!(again, merged);
    }

    #[test]
    fn instruments_keep_live_swaps_only() {
        // The documented example is a SPOT instrument: not ours.
        assert_eq!(
            decode_instruments(INSTRUMENTS).unwrap(),
            Vec::<Symbol>::new()
        );
        // The same payload as a live and a suspended swap.
        let swap = INSTRUMENTS
            .replace(r#""instType": "SPOT""#, r#""instType": "SWAP""#)
            .replace(r#""instId": "BTC-USDT""#, r#""instId": "BTC-USDT-SWAP""#)
            .replace(r#""ctType": """#, r#""ctType": "linear""#);
        assert_eq!(decode_instruments(&swap).unwrap(), [btc()]);
        let inverse = swap.replace(r#""ctType": "linear""#, r#""ctType": "inverse""#);
        assert!(decode_instruments(&inverse).unwrap().is_empty());
        let suspended = swap.replace(r#""state": "live""#, r#""state": "suspend""#);
        assert!(decode_instruments(&suspended).unwrap().is_empty());
        let err = decode_instruments(r#"{"code":"50001","msg":"Service temporarily unavailable"}"#)
            .unwrap_err();
        assert!(
            matches!(&err, ExchangeError::Http { status: 503, body } if body.contains("50001")),
            "{err}"
        );
        assert!(err.is_retryable());
    }
}
