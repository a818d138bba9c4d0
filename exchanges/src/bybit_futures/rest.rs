//! Bybit v5 REST, without the HTTP client: request URLs, backfill page
//! planning, the instruments cursor as a step machine, and decoding of
//! response bodies into candles and symbols.
//!
//! A backfill of `from..=to` is: [`plan_pages`], one GET of [`kline_url`]
//! per page, [`decode_klines`] on each body, then [`merge_pages`]. Listing
//! the symbols is: [`InstrumentsPager::next_url`], GET, [`InstrumentsPager::step`]
//! with the body, until `next_url` is `None`.

use ohlcv_domain::{Candle, Interval, SeriesKey, Symbol};

use super::wire::{Envelope, InstrumentsResult, KlineResult, KlineRow, RetCode};
use super::{decode_error, decode_json, interval_name, symbol_name, to_candle, WireCandle};
use crate::source::ExchangeError;

/// Path of "Get Kline" (<https://bybit-exchange.github.io/docs/v5/market/kline>).
pub const KLINE_PATH: &str = "/v5/market/kline";

/// Path of "Get Instruments Info"
/// (<https://bybit-exchange.github.io/docs/v5/market/instrument>).
pub const INSTRUMENTS_PATH: &str = "/v5/market/instruments-info";

/// The product type of every request: USDT/USDC contracts.
pub const CATEGORY: &str = "linear";

/// Most rows one kline request returns: "limit … [1, 1000]. Default: 200"
/// (<https://bybit-exchange.github.io/docs/v5/market/kline>). Pages use the
/// maximum, so a 10,000-candle backfill is ten requests.
pub const MAX_KLINE_LIMIT: u32 = 1_000;

/// Instruments per page: "limit … [1, 1000]. Default: 500"
/// (<https://bybit-exchange.github.io/docs/v5/market/instrument>); with
/// the maximum, today's 500-odd linear symbols fit in one or two pages.
pub const INSTRUMENTS_PAGE_LIMIT: u32 = 1_000;

/// Most instrument pages one listing follows: at 1,000 a page that is
/// 50,000 instruments, far above Bybit's listing, so reaching it means the
/// cursor is not converging and the listing is abandoned rather than
/// looping.
pub const MAX_INSTRUMENT_PAGES: u32 = 50;

/// Most candles one planned backfill may span (100 pages, about 10 MB of
/// candles); the datasource asks for at most 10,000 at a time, so a larger
/// range is a bug and is refused instead of allocated.
pub const MAX_BACKFILL_CANDLES: i64 = 100_000;

/// One kline request: candles opening in `start..=end`, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KlinePage {
    /// Open time of the page's first candle, aligned (UTC ms).
    pub start: i64,
    /// Open time of the page's last candle, aligned (UTC ms).
    pub end: i64,
    /// How many candles the page spans, `1..=MAX_KLINE_LIMIT`.
    pub limit: u32,
}

/// The kline request of `page` for `symbol`/`interval`, on `rest_url`
/// (scheme and host, optionally a path prefix; a trailing `/` is ignored).
///
/// # Errors
/// [`ExchangeError::Rejected`] for an interval Bybit does not serve.
pub fn kline_url(
    rest_url: &str,
    symbol: &Symbol,
    interval: Interval,
    page: KlinePage,
) -> Result<String, ExchangeError> {
    let name = interval_name(interval).ok_or_else(|| {
        ExchangeError::Rejected(format!("bybit_futures has no {interval} candles"))
    })?;
    Ok(format!(
        "{}{KLINE_PATH}?category={CATEGORY}&symbol={}&interval={name}&start={}&end={}&limit={}",
        rest_url.trim_end_matches('/'),
        symbol_name(symbol),
        page.start,
        page.end,
        page.limit,
    ))
}

/// The pages covering every candle whose open time lies in `from..=to`,
/// oldest page first, each at most `limit` candles.
///
/// Each page's `start` is aligned to the interval: Bybit returns the
/// candle that contains `start`, so an unaligned `start` would fetch a
/// candle opening before `from`. Nothing exists before the Unix epoch.
/// The docs do not say whether `end` is compared with a candle's start or
/// its end; a page's `end` is its last candle's open time, which is right
/// under either reading.
///
/// # Errors
/// [`ExchangeError::Rejected`] when `from > to`, `limit` is outside
/// `1..=MAX_KLINE_LIMIT`, or the range spans more than
/// [`MAX_BACKFILL_CANDLES`].
pub fn plan_pages(
    interval: Interval,
    from: i64,
    to: i64,
    limit: u32,
) -> Result<Vec<KlinePage>, ExchangeError> {
    if from > to {
        return Err(ExchangeError::Rejected(format!(
            "backfill from {from} is after to {to}"
        )));
    }
    if !(1..=MAX_KLINE_LIMIT).contains(&limit) {
        return Err(ExchangeError::Rejected(format!(
            "kline limit {limit} is outside 1..={MAX_KLINE_LIMIT}"
        )));
    }
    let d = interval.duration_ms();
    let from = from.max(0);
    if to < from {
        return Ok(Vec::new());
    }
    let aligned = interval.align(from);
    let first = if aligned < from {
        match aligned.checked_add(d) {
            Some(t) => t,
            None => return Ok(Vec::new()),
        }
    } else {
        aligned
    };
    let last = interval.align(to);
    if last < first {
        return Ok(Vec::new());
    }
    let count = (last - first) / d + 1;
    if count > MAX_BACKFILL_CANDLES {
        return Err(ExchangeError::Rejected(format!(
            "backfill of {interval} from {from} to {to} spans {count} candles; \
             at most {MAX_BACKFILL_CANDLES} per request"
        )));
    }
    let per_page = i64::from(limit);
    let pages = (0..count)
        .step_by(per_page as usize)
        .map(|i| {
            let n = per_page.min(count - i);
            KlinePage {
                start: first + i * d,
                end: first + (i + n - 1) * d,
                // n ≤ limit ≤ 1000, so this cannot truncate.
                limit: n as u32,
            }
        })
        .collect();
    Ok(pages)
}

/// Decodes a kline response body into `key`'s candles, oldest first.
///
/// Bybit lists rows newest first; they are put in ascending order here.
/// A candle is closed once its end has passed at `now` (UTC ms): REST has
/// no closed flag, and the last close is the last traded price while the
/// candle is still forming.
///
/// # Errors
/// [`ExchangeError::Rejected`] with `retMsg` when `retCode` is not 0
/// (but [`ExchangeError::RateLimited`] for a rate-limit code and
/// [`ExchangeError::Connect`] for a server failure, both retryable);
/// [`ExchangeError::Decode`] naming the field for anything that is not the
/// documented shape (a row of fewer than six fields, a non-numeric price,
/// a symbol other than `key`'s).
pub fn decode_klines(body: &str, key: &SeriesKey, now: i64) -> Result<Vec<Candle>, ExchangeError> {
    let result: KlineResult = decode_result(body, "kline response")?;
    if let Some(symbol) = &result.symbol {
        if symbol != symbol_name(&key.symbol) {
            return Err(decode_error(
                format!(
                    "result.symbol: {symbol:?} was not requested ({})",
                    key.symbol
                ),
                body,
            ));
        }
    }
    let d = key.interval.duration_ms();
    let mut candles = result
        .list
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let at = format!("result.list[{i}]");
            let wire = row_fields(row, &at, body)?;
            let closed = wire.start.saturating_add(d) <= now;
            to_candle(key, wire, closed, &at)
        })
        .collect::<Result<Vec<_>, _>>()?;
    candles.sort_by_key(|c| c.open_time);
    candles.dedup_by_key(|c| c.open_time);
    Ok(candles)
}

/// The fields of one REST row, named for errors.
fn row_fields<'a>(
    row: &'a KlineRow,
    at: &str,
    body: &str,
) -> Result<WireCandle<'a>, ExchangeError> {
    const NAMES: [&str; 6] = ["startTime", "open", "high", "low", "close", "volume"];
    if row.0.len() < NAMES.len() {
        return Err(decode_error(
            format!(
                "{at}: {} fields, expected [startTime, open, high, low, close, volume, turnover]",
                row.0.len()
            ),
            body,
        ));
    }
    let start = row.0[0].parse::<i64>().map_err(|_| {
        decode_error(
            format!("{at}.startTime: {:?} is not a time in ms", row.0[0]),
            body,
        )
    })?;
    Ok(WireCandle {
        start,
        open: &row.0[1],
        high: &row.0[2],
        low: &row.0[3],
        close: &row.0[4],
        volume: &row.0[5],
    })
}

/// Candles of several pages as one series: oldest first, one candle per
/// open time (the one from the later page wins, being the fresher), and
/// only those opening in `from..=to`. Idempotent: merging a merged series
/// again changes nothing, so a page fetched twice is harmless.
pub fn merge_pages<I>(pages: I, from: i64, to: i64) -> Vec<Candle>
where
    I: IntoIterator<Item = Vec<Candle>>,
{
    let mut all: Vec<Candle> = pages
        .into_iter()
        .flatten()
        .filter(|c| (from..=to).contains(&c.open_time))
        .collect();
    // Stable sort: equal open times keep fetch order; keep the last one.
    all.sort_by_key(|c| c.open_time);
    let mut merged: Vec<Candle> = Vec::with_capacity(all.len());
    for candle in all {
        match merged.last_mut() {
            Some(prev) if prev.open_time == candle.open_time => *prev = candle,
            _ => merged.push(candle),
        }
    }
    merged
}

/// The instruments request for the page at `cursor` (`None`: the first).
///
/// The cursor is sent as Bybit returned it: the docs' example cursor
/// (`first%3DBIOUSDT%26last%3DBIOUSDT`) is already percent-encoded, and
/// the docs say only to "use the nextPageCursor token". Characters that
/// are not URL-safe (none in the example) are percent-encoded.
pub fn instruments_url(rest_url: &str, cursor: Option<&str>) -> String {
    let mut url = format!(
        "{}{INSTRUMENTS_PATH}?category={CATEGORY}&limit={INSTRUMENTS_PAGE_LIMIT}",
        rest_url.trim_end_matches('/')
    );
    if let Some(cursor) = cursor {
        url.push_str("&cursor=");
        for b in cursor.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~%".contains(&b) {
                url.push(char::from(b));
            } else {
                url.push_str(&format!("%{b:02X}"));
            }
        }
    }
    url
}

/// One decoded instruments page.
#[derive(Debug, Clone, PartialEq)]
pub struct InstrumentsPage {
    /// Trading USDT perpetuals on the page.
    pub symbols: Vec<Symbol>,
    /// Trading USDT perpetuals whose name is not a symbol like `BTCUSDT`,
    /// for the log; collection goes on without them.
    pub skipped: Vec<String>,
    /// The cursor of the next page, `None` on the last.
    pub next_cursor: Option<String>,
}

/// Decodes an instruments response body. Kept: `contractType`
/// `LinearPerpetual`, `status` `Trading`, `quoteCoin` `USDT` — what the
/// collector's symbols (`BTCUSDT`) name. USDC perpetuals, dated futures and
/// pre-launch contracts are left out.
///
/// # Errors
/// As [`decode_klines`] for a non-zero `retCode`;
/// [`ExchangeError::Decode`] naming the field when the body is not the
/// documented shape.
pub fn decode_instruments(body: &str) -> Result<InstrumentsPage, ExchangeError> {
    let result: InstrumentsResult = decode_result(body, "instruments response")?;
    let mut page = InstrumentsPage {
        symbols: Vec::new(),
        skipped: Vec::new(),
        next_cursor: result.next_page_cursor.filter(|c| !c.is_empty()),
    };
    for instrument in result.list {
        if instrument.contract_type != "LinearPerpetual"
            || instrument.status != "Trading"
            || instrument.quote_coin != "USDT"
        {
            continue;
        }
        match Symbol::new(&instrument.symbol) {
            Ok(symbol) => page.symbols.push(symbol),
            Err(_) => page.skipped.push(instrument.symbol),
        }
    }
    Ok(page)
}

/// The instruments listing as a step machine: ask [`next_url`](Self::next_url),
/// fetch it, hand the body to [`step`](Self::step), until `next_url` is
/// `None`; then [`into_symbols`](Self::into_symbols). No I/O inside, so
/// paging is tested without a network.
#[derive(Debug, Clone, Default)]
pub struct InstrumentsPager {
    cursor: Option<String>,
    pages: u32,
    done: bool,
    symbols: Vec<Symbol>,
    skipped: Vec<String>,
}

impl InstrumentsPager {
    /// A listing that starts at the first page.
    pub fn new() -> Self {
        Self::default()
    }

    /// The URL of the next page, or `None` once the listing is complete.
    pub fn next_url(&self, rest_url: &str) -> Option<String> {
        (!self.done).then(|| instruments_url(rest_url, self.cursor.as_deref()))
    }

    /// Takes the body of the page [`next_url`](Self::next_url) named.
    ///
    /// # Errors
    /// What [`decode_instruments`] returns; [`ExchangeError::Decode`] when
    /// the next cursor repeats the current one or the listing exceeds
    /// [`MAX_INSTRUMENT_PAGES`] (it would never end). After an error the
    /// pager is done: a listing is retried from the start.
    pub fn step(&mut self, body: &str) -> Result<(), ExchangeError> {
        if self.done {
            return Ok(());
        }
        let page = decode_instruments(body).inspect_err(|_| self.done = true)?;
        self.pages += 1;
        self.symbols.extend(page.symbols);
        self.skipped.extend(page.skipped);
        match page.next_cursor {
            None => self.done = true,
            Some(next) if Some(&next) == self.cursor.as_ref() => {
                self.done = true;
                return Err(decode_error(
                    format!("result.nextPageCursor: {next:?} repeats the current page's cursor"),
                    body,
                ));
            }
            Some(_) if self.pages >= MAX_INSTRUMENT_PAGES => {
                self.done = true;
                return Err(decode_error(
                    format!("result.nextPageCursor: still set after {MAX_INSTRUMENT_PAGES} pages"),
                    body,
                ));
            }
            Some(next) => self.cursor = Some(next),
        }
        Ok(())
    }

    /// Names skipped so far (see [`InstrumentsPage::skipped`]).
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// The symbols listed, sorted, without duplicates (a symbol can appear
    /// on two pages when the listing changes while it is paged).
    pub fn into_symbols(mut self) -> Vec<Symbol> {
        self.symbols.sort();
        self.symbols.dedup();
        self.symbols
    }
}

/// `retCode`s meaning "slow down": 10006 "Too many visits. Exceeded the API
/// Rate Limit." and 10018 "Exceeded the IP Rate Limit."
/// (<https://bybit-exchange.github.io/docs/v5/error>).
const RATE_LIMIT_CODES: [i64; 2] = [10_006, 10_018];

/// `retCode`s of a failing server, worth retrying: 10000 "Server Timeout"
/// and 10016 "Server error." (<https://bybit-exchange.github.io/docs/v5/error>).
const SERVER_ERROR_CODES: [i64; 2] = [10_000, 10_016];

/// How long to wait after a rate-limit `retCode`: the limit is "based on
/// the rolling time window per second"
/// (<https://bybit-exchange.github.io/docs/v5/rate-limit>), and the body
/// carries no reset time (the `X-Bapi-Limit-Reset-Timestamp` header does;
/// the HTTP client may wait for that instead).
pub const RATE_LIMIT_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

/// The error for a non-zero `retCode`: rate limits and server failures are
/// retryable, anything else (bad symbol, bad parameter) is a rejection.
fn ret_code_error(envelope: &Envelope, what: &str) -> ExchangeError {
    let message = format!(
        "{what}: retCode {}: {}",
        envelope.ret_code, envelope.ret_msg
    );
    let code = match &envelope.ret_code {
        RetCode::Number(n) => Some(*n),
        RetCode::Text(s) => s.trim().parse().ok(),
    };
    match code {
        Some(c) if RATE_LIMIT_CODES.contains(&c) => ExchangeError::RateLimited {
            retry_after: RATE_LIMIT_BACKOFF,
        },
        Some(c) if SERVER_ERROR_CODES.contains(&c) => ExchangeError::Connect(message),
        _ => ExchangeError::Rejected(message),
    }
}

/// Decodes the envelope, refuses a non-zero `retCode`, then decodes
/// `result` as `T`, naming the path of a bad field.
fn decode_result<T: serde::de::DeserializeOwned>(
    body: &str,
    what: &str,
) -> Result<T, ExchangeError> {
    let envelope: Envelope = decode_json(body, what)?;
    if !envelope.ret_code.is_ok() {
        return Err(ret_code_error(&envelope, what));
    }
    serde_path_to_error::deserialize(envelope.result)
        .map_err(|e| decode_error(format!("{what}: result.{}: {}", e.path(), e.inner()), body))
}

#[cfg(test)]
mod tests {
    use ohlcv_domain::Interval;

    use super::super::series_key;
    use super::*;

    const KLINE: &str = include_str!("test_data/kline.json");
    const INSTRUMENTS: &str = include_str!("test_data/instruments_linear.json");
    const PRELISTING: &str = include_str!("test_data/instruments_prelisting.json");

    fn key(symbol: &str, interval: Interval) -> SeriesKey {
        series_key(Symbol::new(symbol).unwrap(), interval)
    }

    #[test]
    fn builds_documented_urls() {
        let page = KlinePage {
            start: 1_670_601_600_000,
            end: 1_670_608_800_000,
            limit: 3,
        };
        let btc = Symbol::new("BTCUSDT").unwrap();
        assert_eq!(
            kline_url("https://api.bybit.com/", &btc, Interval::H1, page).unwrap(),
            "https://api.bybit.com/v5/market/kline?category=linear&symbol=BTCUSDT\
             &interval=60&start=1670601600000&end=1670608800000&limit=3"
        );
        assert_eq!(
            instruments_url("http://127.0.0.1:9", None),
            "http://127.0.0.1:9/v5/market/instruments-info?category=linear&limit=1000"
        );
        assert_eq!(
            instruments_url("http://h", Some("first%3DBIOUSDT%26last%3DBIOUSDT")),
            "http://h/v5/market/instruments-info?category=linear&limit=1000\
             &cursor=first%3DBIOUSDT%26last%3DBIOUSDT"
        );
        assert_eq!(
            instruments_url("http://h", Some("a=b&c d")),
            "http://h/v5/market/instruments-info?category=linear&limit=1000&cursor=a%3Db%26c%20d"
        );
    }

    #[test]
    fn decodes_the_documented_kline_response_oldest_first() {
        // The docs' example is BTCUSD, interval 60, three hourly rows.
        let key = key("BTCUSD", Interval::H1);
        let now = 1_670_610_000_000; // 20 minutes into the newest candle
        let candles = decode_klines(KLINE, &key, now).unwrap();
        let rows: Vec<_> = candles
            .iter()
            .map(|c| {
                (
                    c.open_time,
                    c.open,
                    c.high,
                    c.low,
                    c.close,
                    c.volume,
                    c.closed,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (
                    1_670_601_600_000,
                    17086.5,
                    17088.0,
                    16978.0,
                    17071.5,
                    6356.0,
                    true
                ),
                (
                    1_670_605_200_000,
                    17071.5,
                    17071.5,
                    17061.0,
                    17071.0,
                    4177.0,
                    true
                ),
                (
                    1_670_608_800_000,
                    17071.0,
                    17073.0,
                    17027.0,
                    17055.5,
                    268611.0,
                    false
                ),
            ]
        );
        assert!(candles.iter().all(|c| c.key == key));
        // Exactly at its end the newest candle is closed.
        let later = decode_klines(KLINE, &key, 1_670_612_400_000).unwrap();
        assert!(later.iter().all(|c| c.closed));
    }

    #[test]
    fn kline_errors_name_the_field_and_never_panic() {
        let key = key("BTCUSDT", Interval::M1);
        let cases = [
            (
                r#"{"retCode":10001,"retMsg":"params error","result":{}}"#,
                "params error",
            ),
            (
                r#"{"retCode":"10001","retMsg":"bad","result":{}}"#,
                "retCode \"10001\": bad",
            ),
            (
                r#"{"retCode":0,"retMsg":"OK","result":{"list":[["60000","1","1","1"]]}}"#,
                "result.list[0]: 4 fields",
            ),
            (
                r#"{"retCode":0,"retMsg":"OK","result":{"list":[["x","1","1","1","1","1","1"]]}}"#,
                "result.list[0].startTime",
            ),
            (
                r#"{"retCode":0,"retMsg":"OK","result":{"list":[["60000","1","1","1","z","1","1"]]}}"#,
                "result.list[0].close",
            ),
            (
                r#"{"retCode":0,"retMsg":"OK","result":{"list":[["60000",1,"1","1","1","1","1"]]}}"#,
                "result.list[0][1]",
            ),
            (
                r#"{"retCode":0,"retMsg":"OK","result":{"symbol":"ETHUSDT","list":[]}}"#,
                "result.symbol",
            ),
            (r#"{"retCode":0,"retMsg":"OK","result":{}}"#, "list"),
            (r#"{"retMsg":"OK"}"#, "retCode"),
            ("", "kline response"),
            ("[]", "kline response"),
        ];
        for (body, expected) in cases {
            let err = decode_klines(body, &key, 0).unwrap_err();
            assert!(
                err.to_string().contains(expected),
                "{body}: {err} lacks {expected:?}"
            );
        }
        assert!(!decode_klines(cases[0].0, &key, 0)
            .unwrap_err()
            .is_retryable());
        // Arbitrary truncations of a good body are errors, not panics.
        for end in 0..KLINE.len() {
            if KLINE.is_char_boundary(end) {
                let _ = decode_klines(&KLINE[..end], &key, 0);
            }
        }
    }

    #[test]
    fn rate_limits_and_server_failures_are_retryable() {
        let key = key("BTCUSDT", Interval::M1);
        let body = |code: &str| format!(r#"{{"retCode":{code},"retMsg":"m","result":{{}}}}"#);
        for code in ["10006", "10018", "\"10006\""] {
            assert!(matches!(
                decode_klines(&body(code), &key, 0),
                Err(ExchangeError::RateLimited { retry_after }) if retry_after == RATE_LIMIT_BACKOFF
            ));
        }
        for code in ["10000", "10016"] {
            let err = decode_klines(&body(code), &key, 0).unwrap_err();
            assert!(matches!(err, ExchangeError::Connect(_)) && err.is_retryable());
        }
        let err = decode_instruments(&body("10001")).unwrap_err();
        assert!(matches!(err, ExchangeError::Rejected(_)));
    }

    #[test]
    fn accepts_a_string_ret_code_of_zero() {
        let body = r#"{"retCode":"0","retMsg":"OK","result":{"list":[]}}"#;
        assert_eq!(
            decode_klines(body, &key("BTCUSDT", Interval::M1), 0).unwrap(),
            []
        );
    }

    #[test]
    fn plans_aligned_pages_that_cover_the_range_once() {
        let m = Interval::M1.duration_ms();
        // 2,500 minutes starting one ms after a boundary: the first candle
        // opening in range is the next boundary.
        let from = 60_000 * 1_000 + 1;
        let to = from + 2_500 * m;
        let pages = plan_pages(Interval::M1, from, to, MAX_KLINE_LIMIT).unwrap();
        assert_eq!(pages.len(), 3);
        assert_eq!(pages[0].start, 60_000 * 1_001);
        assert_eq!(pages[0].end, pages[0].start + 999 * m);
        assert_eq!(pages[1].start, pages[0].end + m);
        assert_eq!(pages[2].end, Interval::M1.align(to));
        assert_eq!(pages.iter().map(|p| p.limit).sum::<u32>(), 2_500);
        assert!(pages
            .iter()
            .all(|p| Interval::M1.is_aligned(p.start)
                && (p.end - p.start) / m + 1 == i64::from(p.limit)));

        // An aligned single candle; an empty range; before the epoch.
        assert_eq!(
            plan_pages(Interval::H1, 3_600_000, 3_600_000, 1_000).unwrap(),
            [KlinePage {
                start: 3_600_000,
                end: 3_600_000,
                limit: 1
            }]
        );
        assert_eq!(plan_pages(Interval::H1, 1, 3_599_999, 1_000).unwrap(), []);
        assert_eq!(plan_pages(Interval::M1, -10 * m, -m, 1_000).unwrap(), []);
        assert!(!plan_pages(Interval::W1, i64::MIN, i64::MAX, 1_000)
            .unwrap_err()
            .is_retryable());
        assert!(
            plan_pages(Interval::M1, i64::MAX - 1, i64::MAX, 1_000)
                .unwrap()
                .len()
                <= 1
        );

        for (from, to, limit) in [
            (1, 0, 1_000),
            (0, 1, 0),
            (0, 1, 1_001),
            (0, 200_000 * m, 1_000),
        ] {
            assert!(matches!(
                plan_pages(Interval::M1, from, to, limit),
                Err(ExchangeError::Rejected(_))
            ));
        }
    }

    #[test]
    fn merging_pages_is_ordered_deduplicated_and_idempotent() {
        let key = key("BTCUSD", Interval::H1);
        let early = decode_klines(KLINE, &key, 0).unwrap(); // all open
        let late = decode_klines(KLINE, &key, i64::MAX).unwrap(); // all closed
        let from = 1_670_605_200_000;
        let merged = merge_pages(
            [early.clone(), late.clone(), early[..1].to_vec()],
            from,
            i64::MAX,
        );
        assert_eq!(merged.len(), 2, "the first candle opens before from");
        assert!(merged.iter().all(|c| c.closed), "the later page wins");
        assert!(merged.windows(2).all(|w| w[0].open_time < w[1].open_time));
        assert_eq!(merge_pages([merged.clone()], from, i64::MAX), merged);
        assert_eq!(
            merge_pages([merged.clone(), merged.clone()], from, i64::MAX),
            merged
        );
    }

    #[test]
    fn decodes_documented_instruments_and_follows_the_cursor() {
        let page = decode_instruments(INSTRUMENTS).unwrap();
        assert_eq!(page.symbols, [Symbol::new("BTCUSDT").unwrap()]);
        assert_eq!(page.next_cursor, None);

        // Pre-launch contracts are not collected; the cursor is followed.
        let pre = decode_instruments(PRELISTING).unwrap();
        assert!(pre.symbols.is_empty());
        assert_eq!(
            pre.next_cursor.as_deref(),
            Some("first%3DBIOUSDT%26last%3DBIOUSDT")
        );

        let mut pager = InstrumentsPager::new();
        let first = pager.next_url("http://h").unwrap();
        assert!(!first.contains("cursor"));
        pager.step(PRELISTING).unwrap();
        let second = pager.next_url("http://h").unwrap();
        assert!(second.ends_with("&cursor=first%3DBIOUSDT%26last%3DBIOUSDT"));
        pager.step(INSTRUMENTS).unwrap();
        assert_eq!(pager.next_url("http://h"), None);
        assert_eq!(pager.into_symbols(), [Symbol::new("BTCUSDT").unwrap()]);
    }

    #[test]
    fn the_pager_stops_on_a_repeated_cursor_or_a_bad_page() {
        let mut pager = InstrumentsPager::new();
        pager.step(PRELISTING).unwrap();
        let err = pager.step(PRELISTING).unwrap_err();
        assert!(err.to_string().contains("nextPageCursor"), "{err}");
        assert_eq!(pager.next_url("http://h"), None);

        let mut pager = InstrumentsPager::new();
        let err = pager
            .step(r#"{"retCode":0,"retMsg":"OK","result":{"list":[{"status":"Trading"}]}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("result.list[0]"), "{err}");
        assert_eq!(pager.next_url("http://h"), None);
    }

    #[test]
    fn instruments_filter_and_skip_odd_names() {
        let body = r#"{"retCode":0,"retMsg":"OK","result":{"list":[
            {"symbol":"ETHUSDT","contractType":"LinearPerpetual","status":"Trading","quoteCoin":"USDT"},
            {"symbol":"ETHPERP","contractType":"LinearPerpetual","status":"Trading","quoteCoin":"USDC"},
            {"symbol":"BTCUSDT-27DEC24","contractType":"LinearFutures","status":"Trading","quoteCoin":"USDT"},
            {"symbol":"OLDUSDT","contractType":"LinearPerpetual","status":"Closed","quoteCoin":"USDT"},
            {"symbol":"odd-USDT","contractType":"LinearPerpetual","status":"Trading","quoteCoin":"USDT"}
        ],"nextPageCursor":""}}"#;
        let page = decode_instruments(body).unwrap();
        assert_eq!(page.symbols, [Symbol::new("ETHUSDT").unwrap()]);
        assert_eq!(page.skipped, ["odd-USDT"]);
        assert_eq!(page.next_cursor, None);
    }
}
